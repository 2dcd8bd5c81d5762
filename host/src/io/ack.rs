//! Acknowledgement of everything produced from one batch of input records.
//!
//! At-least-once means a consumed offset is committed only once every record
//! derived from the records before it is safely out: acknowledged by the
//! broker for a Kafka sink, written for a file sink. Each source batch gets
//! one [`Ack`]; its task holds it while it processes the batch,
//! and every output taken on by a sink holds it until it is out. When the
//! count reaches zero the batch is done and its offsets can be committed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The outstanding work of one input batch.
#[derive(Debug)]
pub struct Ack {
    /// Holders: the processing task plus each output not yet out.
    pending: AtomicUsize,
    /// Why an output could not be delivered; such a batch never completes.
    failure: OnceLock<String>,
    /// Acks holding on until this one is done (see [`Ack::then_release`]).
    dependents: Mutex<Vec<Arc<Ack>>>,
}

impl Ack {
    /// A new ack, held once by whoever processes the batch.
    pub fn new() -> Arc<Ack> {
        Arc::new(Ack {
            pending: AtomicUsize::new(1),
            failure: OnceLock::new(),
            dependents: Mutex::new(Vec::new()),
        })
    }

    /// Takes one more hold (an output on its way out).
    pub fn hold(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// Releases one hold (processing finished, or an output is out). The
    /// last one releases the dependents' holds too.
    pub fn release(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let dependents = std::mem::take(&mut *self.lock_dependents());
            for dependent in dependents {
                if let Some(reason) = self.failure() {
                    dependent.fail(reason.to_string());
                }
                dependent.release();
            }
        }
    }

    /// Makes `dependents` (each holding one hold taken for this) wait for
    /// this ack: when it is done, each gets its hold released; when an
    /// output of this one failed, each fails the same way. A task's state
    /// changes use it: the batches that changed a store are done only once
    /// the store's changelog records are acknowledged. Call while holding a
    /// hold of this ack (so it cannot finish meanwhile).
    pub fn then_release(&self, dependents: Vec<Arc<Ack>>) {
        self.lock_dependents().extend(dependents);
    }

    fn lock_dependents(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Ack>>> {
        self.dependents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that an output failed; the batch will not count as done.
    pub fn fail(&self, reason: String) {
        let _ = self.failure.set(reason);
    }

    /// Whether everything from the batch is out.
    pub fn is_done(&self) -> bool {
        // Count first: a failure is recorded before its release, so a zero
        // count read first means any failure is visible now.
        self.pending.load(Ordering::Acquire) == 0 && self.failure.get().is_none()
    }

    /// Why an output of the batch failed, if one did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_only_when_every_hold_is_released_and_nothing_failed() {
        let ack = Ack::new();
        ack.hold();
        ack.release();
        assert!(!ack.is_done(), "the processing hold is still there");
        ack.release();
        assert!(ack.is_done());

        let failed = Ack::new();
        failed.fail("broker said no".into());
        failed.release();
        assert!(!failed.is_done());
        assert_eq!(failed.failure(), Some("broker said no"));
    }

    #[test]
    fn dependents_are_released_when_the_ack_they_wait_for_is_done() {
        let batch = Ack::new();
        batch.hold();
        batch.release();
        let changelog = Ack::new();
        changelog.hold(); // a changelog record on its way
        changelog.then_release(vec![batch.clone()]);
        changelog.release(); // sealed
        assert!(!batch.is_done(), "the record is not acknowledged yet");
        changelog.release(); // acknowledged
        assert!(batch.is_done());

        let batch = Ack::new();
        batch.hold();
        batch.release();
        let changelog = Ack::new();
        changelog.then_release(vec![batch.clone()]);
        changelog.fail("no leader".into());
        changelog.release();
        assert!(!batch.is_done());
        assert_eq!(batch.failure(), Some("no leader"));
    }
}
