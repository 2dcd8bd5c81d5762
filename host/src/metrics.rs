//! Counters a run keeps, shared by its threads; progress display and the
//! final report read them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::operators::{OperatorCounters, TaskId};

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
    /// Records a step dropped as Kafka Streams does: an aggregation's
    /// records with a null key or a null value.
    pub dropped: AtomicU64,
    /// Records a windowed step did not aggregate because every window
    /// they fall in had closed (dropped or dead-lettered as it says).
    pub late: AtomicU64,
    /// Windows windowed steps skipped for records because they had closed
    /// (Kafka Streams' `dropped-records` of its window aggregations).
    pub late_windows: AtomicU64,
    /// Records whose source could not take their time and gave them
    /// their partition's (`on-invalid: partition-time`).
    pub partition_times: AtomicU64,
    /// Plugin instances replaced after a trap, timeout or memory bomb.
    pub restarts: AtomicU64,
    /// Records read but left unprocessed because the run was interrupted
    /// (neither out, nor dead-lettered, nor skipped).
    pub not_processed: AtomicU64,
    /// Every operator of every task, with its counters.
    operators: Mutex<Vec<(String, TaskId, Arc<OperatorCounters>)>>,
}

/// One operator's counters in one task, as a run reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorReport {
    pub step: String,
    pub task: TaskId,
    pub records_in: u64,
    pub records_out: u64,
    pub errors: u64,
    pub busy: std::time::Duration,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub records_in: u64,
    pub rejected_lines: u64,
    pub records_out: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    pub dropped: u64,
    pub late: u64,
    pub late_windows: u64,
    pub partition_times: u64,
    pub restarts: u64,
    pub not_processed: u64,
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
            dropped: get(&self.dropped),
            late: get(&self.late),
            late_windows: get(&self.late_windows),
            partition_times: get(&self.partition_times),
            restarts: get(&self.restarts),
            not_processed: get(&self.not_processed),
        }
    }

    /// The counters of step `step` in task `task` (new ones when a task
    /// starts again after a rebalance: figures add up across them).
    pub fn operator(&self, step: &str, task: TaskId) -> Arc<OperatorCounters> {
        let counters = Arc::new(OperatorCounters::default());
        self.operators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((step.to_string(), task, counters.clone()));
        counters
    }

    /// Every operator's figures, summed per step and task, in step order.
    pub fn operators(&self) -> Vec<OperatorReport> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut reports: Vec<OperatorReport> = Vec::new();
        for (step, task, c) in self
            .operators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let report = match reports
                .iter_mut()
                .find(|r| &r.step == step && r.task == *task)
            {
                Some(r) => r,
                None => {
                    reports.push(OperatorReport {
                        step: step.clone(),
                        task: *task,
                        records_in: 0,
                        records_out: 0,
                        errors: 0,
                        busy: std::time::Duration::ZERO,
                    });
                    reports.last_mut().expect("pushed")
                }
            };
            report.records_in += get(&c.records_in);
            report.records_out += get(&c.records_out);
            report.errors += get(&c.errors);
            report.busy += std::time::Duration::from_nanos(get(&c.busy_nanos));
        }
        reports
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
