//! Operators: the steps of a topology and what happens when a record fails.
//!
//! [`Operator`] is what a task asks of every step. [`plugin_step::PluginStep`]
//! is the first implementation: it runs one step's plugin for one task, packs
//! batches, holds the plugin to its step kind, and survives the plugin (a
//! trap, a timeout or a memory bomb discards the instance, a fresh one takes
//! over, and the batch is retried record by record so only the culprit
//! fails). [`plugin_aggregator::PluginAggregator`] does the same for an
//! aggregator plugin (`kind: aggregate` with `plugin:`): it folds each key's
//! records into the accumulator the caller read from its store, and only the
//! culprit of a fault fails, each key continuing from its last good
//! accumulator. `contract` holds one step's results to the plugin contract
//! (`wit/README.md`). [`failure`] describes a failed record for the error
//! policy and the dead-letter sink.

pub mod aggregate;
mod contract;
pub mod failure;
pub mod group_by;
pub mod operator;
pub mod plugin_aggregator;
pub mod plugin_step;
pub mod table;
pub mod versioned;
pub mod windowed;

pub use failure::FailureKind;
pub use operator::{
    AtEnd, ErrorClass, Operator, OperatorCounters, OperatorError, Schedule, StoreKind, StoreSpec,
    TaskId, TimeKind,
};
pub use plugin_aggregator::{AggregateOutput, Group, Pair, PluginAggregator, Update, group_by_key};
pub use plugin_step::{PluginStep, StepOutput};
