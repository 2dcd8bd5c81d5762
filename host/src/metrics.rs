//! Counters a run keeps, shared by its threads; progress display and the
//! final report read them.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Records read from all sources (decoded lines).
    pub records_in: AtomicU64,
    /// Input lines that were not valid records.
    pub rejected_lines: AtomicU64,
    /// Records written to sinks other than the dead-letter sink.
    pub records_out: AtomicU64,
    /// Records sent to the dead-letter sink.
    pub dead_lettered: AtomicU64,
    /// Records skipped by the `skip` policy.
    pub skipped: AtomicU64,
    /// Plugin instances replaced after a trap, timeout or memory bomb.
    pub restarts: AtomicU64,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub records_in: u64,
    pub rejected_lines: u64,
    pub records_out: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    pub restarts: u64,
}

impl Metrics {
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            records_in: get(&self.records_in),
            rejected_lines: get(&self.rejected_lines),
            records_out: get(&self.records_out),
            dead_lettered: get(&self.dead_lettered),
            skipped: get(&self.skipped),
            restarts: get(&self.restarts),
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
