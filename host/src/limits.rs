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
