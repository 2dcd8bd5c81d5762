//! weir: a Kafka-native stream processor whose per-record logic runs as
//! sandboxed WebAssembly components.
//!
//! Modules, one per concern: [`spec`] (the pipeline file), [`limits`] (what
//! a plugin instance may use), [`plugin`] (the Wasm engine), [`operators`]
//! (steps and error policies), [`io`] (sources and sinks), [`runtime`]
//! (partition tasks and the run loop), [`testing`] (the topology test
//! driver), [`scaffold`] (new plugin crates).

pub mod clock;
pub mod codec;
pub mod io;
pub mod limits;
pub mod metrics;
pub mod operators;
pub mod plugin;
pub mod record;
pub mod runtime;
pub mod scaffold;
pub mod spec;
pub mod testing;
