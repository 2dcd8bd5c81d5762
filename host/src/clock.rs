//! The one source of wall-clock time in a run.
//!
//! Record timestamps for input that has none, wall-clock timers and ticks all
//! read a [`Clock`], so `weir test` and tests can drive time by hand, as
//! Kafka Streams' `TopologyTestDriver.advanceWallClockTime` does.

use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch, from wherever the run gets its time.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn starting_at(ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(ms))
    }

    /// Moves time forward by `ms` (never back).
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms.max(0), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
