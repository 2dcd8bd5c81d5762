//! Operators: the steps of a topology and what happens when a record fails.
//!
//! [`plugin_step::PluginStep`] runs one step's plugin for one partition task:
//! it packs batches, holds the plugin to its step kind, and survives the
//! plugin (a trap, a timeout or a memory bomb discards the instance, a fresh
//! one takes over, and the batch is retried record by record so only the
//! culprit fails). `contract` holds one step's results to the plugin
//! contract (`wit/README.md`). [`failure`] describes a failed record for the
//! error policy and the dead-letter sink.

mod contract;
pub mod failure;
pub mod plugin_step;

pub use failure::{Failure, FailureKind};
pub use plugin_step::{PluginStep, StepOutput};
