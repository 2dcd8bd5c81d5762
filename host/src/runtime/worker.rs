//! Worker threads: each hosts many tasks and feeds them their messages.
//!
//! A worker reads two queues. The external one is bounded and carries
//! batches from sources (the backpressure on them); the internal one is
//! unbounded and carries what tasks send each other (re-partitioned
//! records, ends of input) and control (assignment, revocation, commit
//! barriers), and is always served first. A worker never blocks on
//! another worker, or on itself when it hosts both ends of a repartition:
//! only sources wait, so the run cannot deadlock however tasks are spread
//! over threads. Sources also wait while re-partitioned records pile up
//! (see [`Flow`]), which bounds the internal queues.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, select_biased};

use super::RunError;
use super::control::SwapOrder;
use super::message::{BroadcastMessage, TaskMessage, WorkerMessage};
use super::task::{Task, TaskEnv, TaskState};
use crate::io::batch::InputId;
use crate::operators::TaskId;

/// How often tasks get a wall-clock tick.
const TICK: Duration = Duration::from_millis(100);

/// Records in internal queues past which sources wait.
const INTERNAL_LIMIT: usize = 1 << 16;

/// The amount of re-partitioned work in flight, which sources wait on.
#[derive(Debug, Default)]
pub struct Flow {
    /// Messages sent to workers and not yet handled (what a checkpoint
    /// waits to drain).
    in_flight: AtomicI64,
    /// Records tasks held at the last checkpoint (see
    /// [`super::checkpoint::Cut::held_records`]).
    pub held: AtomicUsize,
    internal_records: AtomicUsize,
    lock: Mutex<()>,
    drained: Condvar,
}

impl Flow {
    /// Sends `message` to a worker, counted until the worker handled it.
    pub fn send(
        &self,
        to: &Sender<WorkerMessage>,
        message: WorkerMessage,
    ) -> Result<(), crossbeam_channel::SendError<WorkerMessage>> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        to.send(message).inspect_err(|_| self.settled())
    }

    /// Counts a message about to be sent some other way (a bounded send
    /// with a deadline); [`Flow::settled`] takes it back if it was not.
    pub fn sending(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A counted message was handled by its worker, or was not sent after
    /// all.
    pub fn settled(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Messages sent to workers and not yet handled.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Re-partitioned records were queued.
    pub fn queued(&self, n: usize) {
        self.internal_records.fetch_add(n, Ordering::AcqRel);
    }

    /// Re-partitioned records were taken.
    pub fn taken(&self, n: usize) {
        let before = self.internal_records.fetch_sub(n, Ordering::AcqRel);
        if before >= INTERNAL_LIMIT && before - n < INTERNAL_LIMIT {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.drained.notify_all();
        }
    }

    /// A source waits here before it hands over a batch.
    pub fn admit(&self) {
        if self.internal_records.load(Ordering::Acquire) < INTERNAL_LIMIT {
            return;
        }
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        while self.internal_records.load(Ordering::Acquire) >= INTERNAL_LIMIT {
            guard = self
                .drained
                .wait_timeout(guard, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The two queues of one worker, as others hold them.
#[derive(Clone)]
pub struct WorkerInbox {
    pub external: Sender<WorkerMessage>,
    pub internal: Sender<WorkerMessage>,
}

/// Makes the tasks a worker hosts.
pub type TaskFactory<'t> = dyn Fn(TaskId) -> Result<Task<'t>, RunError> + Sync + 't;

pub struct Worker<'t> {
    pub index: usize,
    pub env: &'t TaskEnv<'t>,
    pub make_task: &'t TaskFactory<'t>,
    pub external: Receiver<WorkerMessage>,
    pub internal: Receiver<WorkerMessage>,
    pub flow: &'t Flow,
}

impl<'t> Worker<'t> {
    /// Serves messages until its sources are gone and every task it hosts
    /// has finished.
    pub fn run(self) -> Result<(), RunError> {
        let mut tasks: BTreeMap<TaskId, Task<'t>> = BTreeMap::new();
        let result = self.serve(&mut tasks);
        if result.is_err() {
            // What the other tasks processed still goes out.
            for task in tasks.values_mut() {
                if let Err(e) = task.flush_sinks() {
                    tracing::debug!("while stopping: {e}");
                }
                task.close();
            }
        }
        result
    }

    fn serve(&self, tasks: &mut BTreeMap<TaskId, Task<'t>>) -> Result<(), RunError> {
        let mut sources_done = false;
        let mut next_tick = Instant::now() + TICK;
        loop {
            if sources_done && tasks.is_empty() {
                return Ok(());
            }
            let wake = tasks
                .values()
                .filter_map(Task::wake_at)
                .min()
                .map_or(next_tick, |w| w.min(next_tick));
            let timeout = wake.saturating_duration_since(Instant::now());
            let message = match self.internal.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) if sources_done => {
                    match self.internal.recv_timeout(timeout) {
                        Ok(m) => Some(m),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    }
                }
                Err(_) => select_biased! {
                    recv(self.internal) -> m => m.ok(),
                    recv(self.external) -> m => match m {
                        Ok(m) => Some(m),
                        Err(_) => {
                            // Every source is done: their inputs end for
                            // every task here (they said so already, unless
                            // one stopped on an error).
                            sources_done = true;
                            self.end_sources(tasks)?;
                            None
                        }
                    },
                    default(timeout) => None,
                },
            };
            if let Some(message) = message {
                self.dispatch(tasks, message)?;
            }
            // Ticks: every task on the interval, and a task whose wait for
            // an idle input ran out at once.
            let now = Instant::now();
            let tick = now >= next_tick;
            if tick {
                next_tick = now + TICK;
            }
            let due: Vec<TaskId> = tasks
                .iter()
                .filter(|(_, t)| tick || t.wake_at().is_some_and(|w| w <= now))
                .map(|(id, _)| *id)
                .collect();
            if !due.is_empty() {
                let wall = self.env.clock.now_ms();
                for id in due {
                    self.deliver(tasks, id, TaskMessage::Tick(wall))?;
                }
            }
        }
    }

    /// Every source is done: their inputs end for the tasks here, and so
    /// do repartition topics on Kafka (read by the same consumer, which
    /// stopped). A task a late batch re-created after its partitions were
    /// revoked ends this way too.
    fn end_sources(&self, tasks: &mut BTreeMap<TaskId, Task<'t>>) -> Result<(), RunError> {
        let topo = self.env.topo;
        let from_topics = !self.env.repartition_topics.is_empty();
        let ids: Vec<TaskId> = tasks.keys().copied().collect();
        for id in ids {
            for input in &topo.subtopologies[id.subtopology as usize].inputs {
                let consumed = match input {
                    InputId::Source(_) => true,
                    InputId::Repartition(_) => from_topics,
                };
                if consumed && tasks.contains_key(&id) {
                    self.deliver(tasks, id, TaskMessage::EndOfInput(*input))?;
                }
            }
        }
        Ok(())
    }

    fn dispatch(
        &self,
        tasks: &mut BTreeMap<TaskId, Task<'t>>,
        message: WorkerMessage,
    ) -> Result<(), RunError> {
        match message {
            WorkerMessage::Task(id, message) => {
                let result = self.deliver(tasks, id, message);
                self.flow.settled();
                result
            }
            WorkerMessage::AllTasks(BroadcastMessage::Commit(barrier)) => {
                let ids: Vec<TaskId> = tasks.keys().copied().collect();
                let mut result = Ok(());
                for id in ids {
                    if let Err(e) = self.deliver(tasks, id, TaskMessage::Commit(barrier.clone())) {
                        barrier.note_failure(e.to_string());
                        result = Err(e);
                        break;
                    }
                }
                barrier.arrive(Ok(()));
                result
            }
            // The ticket arrives when it is dropped, at the end of this.
            WorkerMessage::AllTasks(BroadcastMessage::Swap(ticket)) => {
                self.swap(tasks, ticket.order())
            }
        }
    }

    /// Every task here that hosts the step starts the new version and
    /// switches to it between two batches (the tasks' queued batches wait
    /// behind this message, so none is split).
    fn swap(
        &self,
        tasks: &mut BTreeMap<TaskId, Task<'t>>,
        order: &SwapOrder,
    ) -> Result<(), RunError> {
        order.taken();
        let hosting: Vec<TaskId> = tasks
            .iter()
            .filter(|(_, t)| t.operators.get(order.step).is_some_and(Option::is_some))
            .map(|(id, _)| *id)
            .collect();
        for id in hosting {
            let started = Instant::now();
            let switched = self
                .env
                .topo
                .start_step(order.step, &order.version)
                .map_err(RunError::Start)
                .and_then(|started| {
                    let message = TaskMessage::Swap {
                        step: order.step,
                        replacement: order.version.replacement(started),
                    };
                    self.deliver(tasks, id, message)
                });
            match switched {
                Ok(()) => order.switched(started.elapsed()),
                Err(e) => {
                    order.failed(id.to_string(), e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Hands `message` to task `id`, creating the task on first use.
    fn deliver(
        &self,
        tasks: &mut BTreeMap<TaskId, Task<'t>>,
        id: TaskId,
        message: TaskMessage,
    ) -> Result<(), RunError> {
        let revoked = matches!(message, TaskMessage::Revoked);
        let task = match tasks.entry(id) {
            Entry::Occupied(task) => task.into_mut(),
            Entry::Vacant(_) if revoked => return Ok(()),
            Entry::Vacant(slot) => {
                let mut task = (self.make_task)(id)?;
                task.handle(TaskMessage::Assigned, false)?;
                tracing::debug!(worker = self.index, task = %id, "task started");
                let task = slot.insert(task);
                if matches!(message, TaskMessage::Assigned) {
                    return Ok(());
                }
                task
            }
        };
        // Re-partitioned records moved in process (on Kafka they come
        // from a repartition topic, through the consumer, uncounted).
        let in_process = self.env.repartition_topics.is_empty();
        let internal_records = match &message {
            TaskMessage::Batch(b) if in_process && matches!(b.input, InputId::Repartition(_)) => {
                b.records.len()
            }
            _ => 0,
        };
        let idle = self.internal.is_empty() && self.external.is_empty();
        let state = task.handle(message, idle);
        if internal_records > 0 {
            self.flow.taken(internal_records);
        }
        let finished = state? == TaskState::Finished;
        if finished || revoked {
            let mut task = tasks.remove(&id).expect("present");
            // A finished task closed its operators itself.
            if !finished {
                task.close();
            }
            tracing::debug!(worker = self.index, task = %id, "task ended");
        }
        Ok(())
    }
}
