//! weir: a Kafka-native stream processor whose per-record logic runs as
//! sandboxed WebAssembly components.
//!
//! The public interface is the facade below; the modules are the crate's
//! own, one per concern: [`pipeline`] (the pipeline file), [`limits`]
//! (what a plugin instance may use), [`plugin`] (the Wasm engine),
//! [`operators`] (the operator trait, plugin steps, failures), [`codec`]
//! (JSON checking, JSON lines, the partitioner, the format gate), [`io`]
//! (sources and sinks, Kafka, offset tracking), [`runtime`] (sub-topologies,
//! tasks, workers, commits), [`state`] (keyed state stores), [`clock`], [`metrics`], [`testing`] (the
//! topology test driver), [`scaffold`] (new plugin crates).

pub mod admin;
pub(crate) mod clock;
pub(crate) mod codec;
pub(crate) mod io;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod operators;
pub(crate) mod pipeline;
pub(crate) mod plugin;
pub(crate) mod record;
pub(crate) mod runtime;
pub mod scaffold;
pub(crate) mod state;
pub mod testing;

// The facade: what the `weir` binary, the tests and the benchmarks use.
// Everything else is the crate's own.
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::Format;
pub use codec::partitioner::partition_for;
pub use io::kafka::bootstrap as kafka_bootstrap;
pub use io::kafka::reset::{Deleted as ChangelogDeleted, delete_changelogs};
pub use io::sink::SinkOutput;
pub use io::source::SourceInput;
pub use limits::Limits;
pub use metrics::{Metrics, OperatorReport};
pub use operators::failure::{Failure, FailureKind};
pub use operators::plugin_step::StartError;
pub use operators::{
    AggregateOutput, ErrorClass, Group, Operator, OperatorError, Pair, PluginAggregator,
    PluginStep, Schedule, StepOutput, StoreKind, StoreSpec, TaskId, TimeKind, Update, group_by_key,
};
pub use pipeline::guarantee::summary as delivery_summary;
pub use pipeline::upgrade as upgrade_check;
pub use pipeline::{
    OverrideError, Overrides, Pipeline, PipelineError, Place, StepKind, read_step_config,
};
pub use plugin::{
    Capability, EngineSettings, Interrupter, LogGate, Plugin, PluginEngine, PluginInfo,
};
pub use record::{Header, Record};
pub use runtime::checkpoint::Cut;
pub use runtime::control::{
    RefusedAt, RemoteRefusal, Rollback, RunControl, StepStatus, SwapCause, SwapError, SwapOptions,
    SwapReport, TrialOutcome, TrialStatus, VersionStatus,
};
pub use runtime::provenance::{HEADER as PROVENANCE_HEADER, parse as parse_provenance};
pub use runtime::watch::{PluginWatch, WatchError, WatchEvent, watch_plugins};
pub use runtime::{
    Ending, LogsDropped, RunError, RunOptions, RunOutcome, RunReport, SourceReport, StopPosition,
    Topology, default_stores, run, run_reporting, summary_lines,
};
pub use state::inspect as state_inspect;
pub use state::{
    KeyValueStore, MemoryStore, MemoryStores, RocksDbStores, StateError, StateMode, StateSettings,
    StateSize, StoreProvider, byte_size,
};

/// Internals the micro-benchmarks measure on their own (`bench/`); not an
/// interface.
#[doc(hidden)]
pub mod bench {
    pub use crate::codec::{json_syntax, jsonl};
}
