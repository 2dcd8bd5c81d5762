//! An operator tagged with the version of its step it runs, counting the
//! records that version processed (a hot swap's per-version counters).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Operator, OperatorError, Schedule, StepOutput, StoreSpec, TaskId, TimeKind};
use crate::record::Record;

/// Forwards every call to the operator it wraps; adds the records of each
/// batch to its version's counter, shared by that version in every task.
pub struct Versioned {
    inner: Box<dyn Operator>,
    records: Arc<AtomicU64>,
}

impl Versioned {
    pub fn new(inner: Box<dyn Operator>, records: Arc<AtomicU64>) -> Self {
        Versioned { inner, records }
    }
}

impl Operator for Versioned {
    fn process_batch(
        &mut self,
        input: usize,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        // Counted once it succeeded: a retried batch counts once.
        self.inner.process_batch(input, records, out)?;
        self.records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
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
    fn close(&mut self) {
        self.inner.close()
    }
    fn restarts(&self) -> u64 {
        self.inner.restarts()
    }
}
