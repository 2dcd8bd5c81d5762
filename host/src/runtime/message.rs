//! What tasks and workers are told.
//!
//! A task is driven by messages, not only by data: the batches of its
//! inputs, the end of an input, its assignment and revocation, wall-clock
//! ticks, a step swap, and commit barriers. Workers route them to the tasks
//! they host.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::control::SwapTicket;
use crate::io::batch::{Batch, InputId};
use crate::operators::TaskId;

/// One thing a task is told.
pub enum TaskMessage {
    /// Records from one of the task's inputs.
    Batch(Batch),
    /// One of the task's inputs will send nothing more (a file read to its
    /// end, or every upstream task of a repartition finished).
    EndOfInput(InputId),
    /// The task's partitions are now this process's: open what it needs.
    Assigned,
    /// The task's partitions are taken away: everything it processed is
    /// out; let go of them.
    Revoked,
    /// Wall-clock time, in ms since the epoch, from the run's clock.
    Tick(i64),
    /// Replace the running version of a step at the next batch boundary
    /// (a hot swap, see [`super::control`]).
    Swap {
        step: usize,
        replacement: super::topology::Replacement,
    },
    /// Make everything processed so far durable and passed on, then arrive
    /// at the barrier.
    Commit(Arc<CommitBarrier>),
    /// The upstream task of partition `from` processed every input line up
    /// to `through` and sent what it re-partitioned from them (`u64::MAX`:
    /// all; an exactly-once run's ordered repartitions, `merge.rs`).
    Progress {
        input: InputId,
        from: u32,
        through: u64,
    },
}

impl std::fmt::Debug for TaskMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskMessage::Batch(b) => write!(f, "Batch({:?}, {} records)", b.input, b.records.len()),
            TaskMessage::EndOfInput(i) => write!(f, "EndOfInput({i:?})"),
            TaskMessage::Assigned => f.write_str("Assigned"),
            TaskMessage::Progress {
                input,
                from,
                through,
            } => write!(f, "Progress({input:?} from {from} through {through})"),
            TaskMessage::Revoked => f.write_str("Revoked"),
            TaskMessage::Tick(t) => write!(f, "Tick({t})"),
            TaskMessage::Swap { step, .. } => write!(f, "Swap(step {step})"),
            TaskMessage::Commit(_) => f.write_str("Commit"),
        }
    }
}

/// What a worker thread is told.
#[derive(Debug)]
pub enum WorkerMessage {
    /// For one of the tasks it hosts (created on first use).
    Task(TaskId, TaskMessage),
    /// For every task it hosts (a commit barrier, a tick).
    AllTasks(BroadcastMessage),
}

/// A message every task of a worker gets.
#[derive(Debug, Clone)]
pub enum BroadcastMessage {
    Commit(Arc<CommitBarrier>),
    /// Every task hosting the step switches to the new version.
    Swap(Arc<SwapTicket>),
}

/// A commit barrier: each task arrives once it has made everything it
/// processed durable and passed on; whoever started the commit waits for
/// all of them.
#[derive(Debug)]
pub struct CommitBarrier {
    state: Mutex<BarrierState>,
    arrived: Condvar,
}

#[derive(Debug, Default)]
struct BarrierState {
    /// Arrivals still expected.
    expected: usize,
    /// The first task that could not commit, and why.
    failure: Option<String>,
}

impl CommitBarrier {
    /// A barrier nobody has arrived at; [`CommitBarrier::expect`] says how
    /// many will.
    pub fn new() -> Arc<CommitBarrier> {
        Arc::new(CommitBarrier {
            state: Mutex::new(BarrierState::default()),
            arrived: Condvar::new(),
        })
    }

    /// `n` more arrivals are expected (a worker, for the tasks it hosts).
    pub fn expect(&self, n: usize) {
        self.lock().expected += n;
    }

    /// One expected party (a worker, for all its tasks) is done; `Err`
    /// says why it could not commit.
    pub fn arrive(&self, outcome: Result<(), String>) {
        let mut state = self.lock();
        state.expected = state.expected.saturating_sub(1);
        if let Err(e) = outcome {
            state.failure.get_or_insert(e);
        }
        self.arrived.notify_all();
    }

    /// Notes why one task could not commit (its worker still arrives).
    pub fn note_failure(&self, reason: String) {
        self.lock().failure.get_or_insert(reason);
    }

    /// Waits until every expected arrival came, at most `timeout`.
    /// `Ok(false)`: timed out.
    pub fn wait(&self, timeout: Duration) -> Result<bool, String> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.expected > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            state = self
                .arrived
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        match &state.failure {
            Some(e) => Err(e.clone()),
            None => Ok(true),
        }
    }

    /// Sends a commit barrier to every worker (each arrives once all its
    /// tasks have committed). A worker already gone arrives with why.
    pub fn to_all(workers: &[crossbeam_channel::Sender<WorkerMessage>]) -> Arc<CommitBarrier> {
        let barrier = CommitBarrier::new();
        barrier.expect(workers.len());
        for w in workers {
            let message = WorkerMessage::AllTasks(BroadcastMessage::Commit(barrier.clone()));
            if w.send(message).is_err() {
                barrier.arrive(Err("a worker is gone".into()));
            }
        }
        barrier
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BarrierState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_barrier_opens_when_every_expected_task_arrived() {
        let b = CommitBarrier::new();
        b.expect(2);
        b.arrive(Ok(()));
        assert_eq!(b.wait(Duration::from_millis(10)), Ok(false));
        let other = b.clone();
        let t = std::thread::spawn(move || other.arrive(Err("disk full".into())));
        assert_eq!(b.wait(Duration::from_secs(5)), Err("disk full".into()));
        t.join().unwrap();
    }
}
