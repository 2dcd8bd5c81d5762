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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 64 << 20,
            max_batch_millis: 2000,
            max_output_bytes: 1 << 20,
        }
    }
}
