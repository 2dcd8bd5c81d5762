//! An operator tagged with the version of its step it runs, counting the
//! records that version processed and failed (a hot swap's per-version
//! counters, which a rollback trial judges).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use super::{Operator, OperatorError, Schedule, StepOutput, StoreSpec, TaskId, TimeKind};
use crate::record::Record;

/// Which version of its step an operator runs: what dead-letter headers
/// and provenance headers name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTag {
    /// 1 for the pipeline file's, then one more per swap (or rollback).
    pub number: u32,
    /// SHA-256 of its component, in hex.
    pub digest: Arc<str>,
}

/// A version's counters, shared by its operators in every task.
#[derive(Debug, Default)]
pub struct VersionCounters {
    /// Records it processed (each batch once it succeeded).
    pub records: AtomicU64,
    /// Of those, records that failed (whatever the policy then did).
    pub failures: AtomicU64,
    /// Where its rollback trial stands, as the tasks must know it: see
    /// [`VersionCounters::claim_rollback`].
    trial: AtomicU8,
    /// Set before any task runs it: on trial, the state it writes could
    /// not be read by the version a rollback would bring back, nor be
    /// converted back (see [`VersionCounters::may_write_state`]).
    irreversible_writes: AtomicBool,
    /// It wrote state while `irreversible_writes` (or a task is about to).
    wrote_state: AtomicBool,
}

const NO_TRIAL: u8 = 0;
const ON_TRIAL: u8 = 1;
const ROLLING_BACK: u8 = 2;

impl VersionCounters {
    /// The version goes on trial (before any task runs it).
    pub fn start_trial(&self) {
        self.trial.store(ON_TRIAL, Ordering::Release);
    }

    /// A task's record failed under `fail` on this version: whether the
    /// version is on trial, and so is rolled back now (the task then holds
    /// the record for the version that comes back instead of stopping the
    /// run). Whoever decides first, a task here or the control thread in
    /// [`VersionCounters::keep`], decides.
    pub fn claim_rollback(&self) -> bool {
        match self.trial.compare_exchange(
            ON_TRIAL,
            ROLLING_BACK,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => true,
            Err(state) => state == ROLLING_BACK,
        }
    }

    /// The trial passed: whether the version is kept (`false`: a task
    /// claimed a rollback first).
    pub fn keep(&self) -> bool {
        self.trial
            .compare_exchange(ON_TRIAL, NO_TRIAL, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The version is being rolled back.
    pub fn roll_back(&self) {
        self.trial.store(ROLLING_BACK, Ordering::SeqCst);
    }

    /// On trial, the state this version writes cannot be undone by a
    /// rollback: called before any task runs it.
    pub fn make_writes_irreversible(&self) {
        self.irreversible_writes.store(true, Ordering::Release);
    }

    /// Whether a task may write this version's state now. While it is on
    /// trial with irreversible writes, the first write ends the chance of
    /// a rollback: a task notes the write, then looks whether a rollback
    /// began, and the control thread begins the rollback, then looks
    /// whether a write was noted ([`VersionCounters::wrote_state`]), both
    /// sequentially consistent, so one of them always sees the other. A
    /// task told no holds the batch for the version that comes back.
    pub fn may_write_state(&self) -> bool {
        if !self.irreversible_writes.load(Ordering::Acquire) || !self.on_trial() {
            return true;
        }
        self.wrote_state.store(true, Ordering::SeqCst);
        self.trial.load(Ordering::SeqCst) != ROLLING_BACK
    }

    /// Whether a task wrote (or was about to write) state that a rollback
    /// could not undo. Read after [`VersionCounters::roll_back`].
    pub fn wrote_state(&self) -> bool {
        self.wrote_state.load(Ordering::SeqCst)
    }

    /// Whether the version is being rolled back.
    pub fn rolling_back(&self) -> bool {
        self.trial.load(Ordering::Acquire) == ROLLING_BACK
    }

    /// The rollback could not happen: the version stays, with no trial.
    pub fn end_trial(&self) {
        self.trial.store(NO_TRIAL, Ordering::Release);
    }

    /// Whether the version is on trial or being rolled back.
    pub fn on_trial(&self) -> bool {
        self.trial.load(Ordering::Relaxed) != NO_TRIAL
    }
}

/// A new version's aggregator for a stateful step's running operator,
/// which keeps its store ([`Operator::swap_plugin`]).
pub struct NextPlugin {
    pub aggregator: Box<super::PluginAggregator>,
    pub tag: VersionTag,
    pub counters: Arc<VersionCounters>,
}

/// Forwards every call to the operator it wraps; adds the records of each
/// batch, and those that failed, to its version's counters, shared by that
/// version in every task. One relaxed add per batch (two when some failed):
/// the cost of a rollback trial is paid whether one is asked for or not,
/// and is not measurable next to a plugin call.
pub struct Versioned {
    inner: Box<dyn Operator>,
    counters: Arc<VersionCounters>,
    tag: VersionTag,
}

impl Versioned {
    pub fn new(inner: Box<dyn Operator>, tag: VersionTag, counters: Arc<VersionCounters>) -> Self {
        Versioned {
            inner,
            counters,
            tag,
        }
    }
}

impl Operator for Versioned {
    fn process_batch(
        &mut self,
        input: usize,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        // Counted once it succeeded: a retried batch counts once. Failures
        // first, so a reader that sees the records sees their failures.
        self.inner.process_batch(input, records, out)?;
        if !out.failures.is_empty() {
            self.counters
                .failures
                .fetch_add(out.failures.len() as u64, Ordering::Relaxed);
        }
        self.counters
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn version(&self) -> Option<&VersionTag> {
        Some(&self.tag)
    }
    fn version_counters(&self) -> Option<&Arc<VersionCounters>> {
        Some(&self.counters)
    }
    fn ports(&self) -> &[String] {
        self.inner.ports()
    }
    fn stores(&self) -> Vec<StoreSpec> {
        self.inner.stores()
    }
    fn schedule(&self) -> Schedule {
        self.inner.schedule()
    }
    fn on_assign(&mut self, task: TaskId) -> Result<(), OperatorError> {
        self.inner.on_assign(task)
    }
    fn on_revoke(&mut self) -> Result<(), OperatorError> {
        self.inner.on_revoke()
    }
    fn on_timer(
        &mut self,
        kind: TimeKind,
        now: i64,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        self.inner.on_timer(kind, now, out)
    }
    fn checkpoint(&mut self) -> Result<(), OperatorError> {
        self.inner.checkpoint()
    }
    fn on_end_of_input(
        &mut self,
        at_end: &super::AtEnd,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        self.inner.on_end_of_input(at_end, out)
    }
    fn close(&mut self) {
        self.inner.close()
    }
    fn restarts(&self) -> u64 {
        self.inner.restarts()
    }
    fn swap_plugin(&mut self, next: NextPlugin) -> Result<(), OperatorError> {
        let (tag, counters) = (next.tag.clone(), next.counters.clone());
        self.inner.swap_plugin(next)?;
        self.tag = tag;
        self.counters = counters;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_writes_are_guarded_only_on_a_trial_whose_writes_cannot_be_undone() {
        // Not on trial, or undoable writes: always allowed, never noted.
        let c = VersionCounters::default();
        assert!(c.may_write_state());
        c.start_trial();
        assert!(c.may_write_state() && !c.wrote_state());

        // Irreversible writes on trial: the first write is noted, and a
        // rollback that begins later sees it.
        let c = VersionCounters::default();
        c.make_writes_irreversible();
        c.start_trial();
        assert!(c.may_write_state());
        c.roll_back();
        assert!(c.wrote_state());

        // A rollback that began first: the task may not write (it holds
        // its batch), and the rollback may go ahead only if nothing was
        // written before, which it tells from `wrote_state` having been
        // false when it began.
        let c = VersionCounters::default();
        c.make_writes_irreversible();
        c.start_trial();
        c.roll_back();
        assert!(!c.may_write_state());

        // Once the trial is over (kept, or the rollback refused), writes
        // go on.
        c.end_trial();
        assert!(c.may_write_state());
    }
}
