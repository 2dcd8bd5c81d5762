//! weir: a Kafka-native stream processor whose per-record logic runs as
//! sandboxed WebAssembly components.
//!
//! Modules, one per concern: [`pipeline`] (the pipeline file), [`limits`]
//! (what a plugin instance may use), [`plugin`] (the Wasm engine),
//! [`operators`] (the operator trait, plugin steps, failures), [`codec`]
//! (JSON checking, JSON lines, the partitioner, the format gate), [`io`]
//! (sources and sinks, Kafka, offset tracking), [`runtime`] (sub-topologies,
//! tasks, workers, commits), [`clock`], [`metrics`], [`testing`] (the
//! topology test driver), [`scaffold`] (new plugin crates).

pub mod clock;
pub mod codec;
pub mod io;
pub mod limits;
pub mod metrics;
pub mod operators;
pub mod pipeline;
pub mod plugin;
pub mod record;
pub mod runtime;
pub mod scaffold;
pub mod testing;
