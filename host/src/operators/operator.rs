//! The operator trait: what a task asks of every step it runs.
//!
//! In the shape of Arroyo's operators: only [`Operator::process_batch`] is
//! required; assignment, revocation, timers, checkpoints and closing have
//! defaults, so a stateless step implements one method and a stateful one
//! (aggregations, windows, joins) adds what it needs. An operator declares the
//! stores it needs before it runs, so the host can open, restore and
//! checkpoint them (the host owns all state; an operator keeps none it cannot
//! lose).
//!
//! Counters (records in and out, errors, time) are kept by the task around
//! every call, so each operator gets them without writing any.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::plugin_step::StepOutput;
use crate::record::Record;

/// Which partition of which sub-topology a task runs (Kafka Streams' task
/// id, e.g. `0_3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub subtopology: u16,
    pub partition: u32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// A store an operator needs; the host opens it for each task before the
/// first batch and checkpoints it with the task's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// Unique within the pipeline; also names the changelog.
    pub name: String,
    pub kind: StoreKind,
    /// What the store holds (its step's
    /// [`StoreFormat`](crate::upgrade_check::StoreFormat) as text): a store
    /// that holds something else is refused. Empty: not checked (a reader
    /// such as `weir state`).
    pub holds: String,
}

impl StoreSpec {
    /// A key-value store named `id` (an aggregate's, a table's) holding
    /// `holds` (empty: whatever it holds).
    pub fn key_value(id: &str, holds: &str) -> StoreSpec {
        StoreSpec {
            name: id.to_string(),
            kind: StoreKind::KeyValue,
            holds: holds.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    KeyValue,
    Window,
    Session,
}

/// The two clocks a timer can follow, as in Kafka Streams' punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    /// The task's stream time: the largest record timestamp it has seen.
    /// Fires inline, when a batch moves stream time past the next due time.
    Stream,
    /// Wall-clock time, from the run's clock (which `weir test` can drive).
    WallClock,
}

/// How often an operator wants [`Operator::on_timer`]; `None` is never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedule {
    pub stream_interval_ms: Option<i64>,
    pub wall_clock_interval_ms: Option<i64>,
}

/// Whose fault an operator error is, which decides what the host does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The data is bad: the record goes to the error policy. (Per-record
    /// failures travel in [`StepOutput::failures`]; this class is for an
    /// operator that can only say so for a whole call.)
    BadRecord,
    /// Something outside weir failed (a broker, a disk); `retryable` errors
    /// are tried again before they stop the run.
    External { retryable: bool },
    /// A bug or a broken plugin: the run stops.
    Internal,
    /// The run is stopping (Ctrl-C, SIGTERM) and cut the call short: the
    /// batch is not processed, and nobody is at fault.
    Interrupted,
    /// The step's version is being rolled back and the batch would write
    /// state the version coming back cannot read: nothing was processed,
    /// and the task holds the batch for that version.
    RollingBack,
}

/// An operator could not process a batch or handle an event.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OperatorError {
    pub class: ErrorClass,
    pub message: String,
    /// The input records (indices in the batch) that led to the error,
    /// when some did: the task names where they came from.
    pub inputs: Option<std::ops::Range<u32>>,
}

/// A store that cannot be read or written stops the run: the disk (or the
/// broker behind a changelog) failed, not the record.
impl From<crate::state::StateError> for OperatorError {
    fn from(e: crate::state::StateError) -> Self {
        OperatorError {
            class: ErrorClass::External { retryable: false },
            message: e.to_string(),
            inputs: None,
        }
    }
}

impl OperatorError {
    pub fn internal(message: impl Into<String>) -> Self {
        OperatorError {
            class: ErrorClass::Internal,
            message: message.into(),
            inputs: None,
        }
    }

    /// Aggregate `id` may not write state: its version is being rolled
    /// back (the task holds the batch for the version that comes back).
    pub fn rolling_back(id: &str) -> Self {
        OperatorError {
            class: ErrorClass::RollingBack,
            message: format!("aggregate `{id}`: its version is being rolled back"),
            inputs: None,
        }
    }
}

/// One step of a topology, as a task runs it.
pub trait Operator: Send {
    /// Processes `records`, which arrived on the operator's input number
    /// `input` (a step's `from:` list, in order: a join tells its sides
    /// apart by it). Every record ends up with outputs, no output, or a
    /// failure in `out`, in input order.
    fn process_batch(
        &mut self,
        input: usize,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError>;

    /// Output port names; outputs in [`StepOutput`] refer to them by index.
    fn ports(&self) -> &[String];

    /// The stores this operator needs.
    fn stores(&self) -> Vec<StoreSpec> {
        Vec::new()
    }

    /// When [`Operator::on_timer`] is due.
    fn schedule(&self) -> Schedule {
        Schedule::default()
    }

    /// The task was assigned: open what belongs to its partition.
    fn on_assign(&mut self, _task: TaskId) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The task is being revoked: everything it processed is out and its
    /// offsets are about to be committed; let go of its partition.
    fn on_revoke(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    /// A timer of [`Operator::schedule`] is due at `now` (ms, on the clock
    /// `kind` says). Records emitted go downstream like batch outputs.
    fn on_timer(
        &mut self,
        _kind: TimeKind,
        _now: i64,
        _out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// A commit barrier: make everything processed so far durable (the
    /// task's offsets or checkpoint will say it is).
    fn checkpoint(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Every input of the task has ended (file sources; a Kafka topic
    /// never ends): records emitted go downstream like batch outputs, and
    /// are reported against the last record processed. A windowed
    /// aggregate closes its windows here when its step (or `at_end`) asks.
    fn on_end_of_input(
        &mut self,
        _at_end: &AtEnd,
        _out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The run is over for this task.
    fn close(&mut self) {}

    /// How many times the operator replaced a broken instance of itself.
    fn restarts(&self) -> u64 {
        0
    }

    /// The version of its step this operator runs, for a plugin step (see
    /// [`super::versioned`]); `None` for a step weir runs itself.
    fn version(&self) -> Option<&super::versioned::VersionTag> {
        None
    }

    /// That version's counters and trial, shared by every task.
    fn version_counters(&self) -> Option<&std::sync::Arc<super::versioned::VersionCounters>> {
        None
    }

    /// A hot swap of a stateful step: runs `next`'s plugin from the next
    /// batch on, keeping the operator's state (its stores). Only an
    /// operator with an aggregator plugin takes one.
    fn swap_plugin(&mut self, _next: super::versioned::NextPlugin) -> Result<(), OperatorError> {
        Err(OperatorError::internal(
            "this step keeps no plugin state: it is swapped whole",
        ))
    }
}

/// Per-operator, per-task counters that status and metrics read while the
/// run goes on.
#[derive(Debug, Default)]
pub struct OperatorCounters {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    /// Records that failed (whatever the policy then did with them).
    pub errors: AtomicU64,
    /// Time spent inside the operator.
    pub busy_nanos: AtomicU64,
}

impl OperatorCounters {
    /// Adds one call's figures.
    pub fn add(&self, records_in: usize, out: &StepOutput, busy: Duration) {
        let add = |c: &AtomicU64, n: u64| c.fetch_add(n, Ordering::Relaxed);
        add(&self.records_in, records_in as u64);
        add(&self.records_out, out.emitted.len() as u64);
        add(&self.errors, out.failures.len() as u64);
        add(&self.busy_nanos, busy.as_nanos() as u64);
    }
}

/// What a run asks of its operators when a task's input ends, beyond what
/// their steps say: a `weir test` case's `case.yaml`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtEnd {
    /// Close every open window (`Some(true)`), keep them open
    /// (`Some(false)`), or as each step's `end-of-input` says (`None`).
    pub close_windows: Option<bool>,
    /// First advance stream time to this, with no record: windows it
    /// closes are emitted (and expire) as if a record had come then.
    pub advance_stream_time_to: Option<i64>,
}
