//! The resource limits of one step's plugin instances.
//!
//! A module of its own so that the pipeline file model ([`crate::pipeline`]),
//! which reads them from `limits:`, and the plugin engine
//! ([`crate::plugin`]), which enforces them, both depend on it rather than
//! the model depending on the engine.

/// Per-operator resource limits; the pipeline file can set each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory an instance may grow to.
    pub max_memory_bytes: usize,
    /// Wall-clock time one call (`init` or one batch) may take.
    pub max_batch_millis: u64,
    /// Bytes of output one input record may produce (see
    /// [`crate::record::Record::size`] for how they are counted).
    pub max_output_bytes: usize,
    /// Lines a step's plugin instances may write to the host log per
    /// second, together (log import, stdout and stderr); more are dropped
    /// and counted. A burst of one second's allowance is let through.
    pub log_lines_per_second: u32,
    /// Bytes of those lines per second, likewise.
    pub log_bytes_per_second: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 64 << 20,
            max_batch_millis: 2000,
            max_output_bytes: 1 << 20,
            log_lines_per_second: 100,
            log_bytes_per_second: 64 << 10,
        }
    }
}

/// How many plugin instances one process can hold at once, and why.
///
/// The engine keeps every instance's linear memory in a pool reserved when
/// it starts. Each memory slot reserves [`MEMORY_SLOT_BYTES`] of address
/// space (not of RAM): 4 GiB, all a 32-bit Wasm memory can address, so the
/// compiled code needs no bounds checks, plus a guard region. The pool may
/// reserve [`POOL_ADDRESS_SPACE`], so it holds [`MAX_INSTANCES`]
/// instances. A pipeline needs one instance per plugin step per task, plus
/// one per step (see [`instances_needed`]); validation refuses a pipeline
/// that needs more, rather than the engine failing to start.
pub mod pool {
    /// Address space of one memory slot: a 4 GiB reservation and a 32 MiB
    /// guard (wasmtime's defaults on 64-bit hosts, set explicitly by the
    /// engine from these numbers).
    pub const MEMORY_RESERVATION: u64 = 4 << 30;
    pub const MEMORY_GUARD: u64 = 32 << 20;
    pub const MEMORY_SLOT_BYTES: u64 = MEMORY_RESERVATION + MEMORY_GUARD;
    /// Core memories one instance may have (a Rust component has one).
    pub const MEMORIES_PER_INSTANCE: u64 = 2;
    /// Half of the 128 TiB a Linux x86-64 process can address; the rest is
    /// for the heap, thread stacks and compiled code.
    pub const POOL_ADDRESS_SPACE: u64 = 64 << 40;
    /// 8128.
    pub const MAX_INSTANCES: u64 = POOL_ADDRESS_SPACE / (MEMORY_SLOT_BYTES * MEMORIES_PER_INSTANCE);

    /// Tasks one process hosts at most on Kafka, where the consumer group
    /// assigns partitions at run time (more processes share more).
    pub const MAX_KAFKA_TASKS: u64 = 128;

    /// Instances alive at once: each task holds one instance of each of
    /// its plugin steps (a broken one is dropped before its replacement
    /// starts), and each step one more (the instance started to check it,
    /// or asked its kinds, while the tasks start). A hot swap
    /// ([`crate::runtime::control`]) runs two generations of one step at
    /// once: the new version's checking instance, then in every task the
    /// new instance starts before the old one closes. Swaps are serialised,
    /// so that is one more generation of one step, not of every step.
    pub fn instances_needed(plugin_steps: u64, tasks: u64) -> u64 {
        if plugin_steps == 0 {
            return 0;
        }
        (plugin_steps + 1) * (tasks + 1)
    }
}
