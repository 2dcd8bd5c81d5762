//! Keyed state on Kafka: what ties a run's stores to their changelog
//! topics. Tasks seal their changelog records at every commit barrier
//! (`io/kafka/changelog.rs` says how that orders the commit); a task given
//! up records in its `.checkpoint` where its local state is up to; a task
//! assigned restores its stores from their changelogs first, on a thread
//! of its own, while its input partitions wait and other tasks go on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::io::ack::Ack;
use crate::io::kafka::changelog::KafkaChangelogs;
use crate::io::kafka::restore::{self, Restored};
use crate::operators::TaskId;
use crate::pipeline::KafkaSettings;
use crate::state::RocksDbStores;

/// How long giving up a task waits for its changelog records to be
/// acknowledged before it leaves its checkpoint as it was.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Changelog records a running task sends between two checkpoints
/// (Kafka Streams' `OFFSET_DELTA_THRESHOLD_FOR_CHECKPOINT`).
pub const CHECKPOINT_DELTA: u64 = 10_000;

/// The stores of a run on Kafka and their changelogs.
pub struct KafkaState {
    pub stores: RocksDbStores,
    pub changelogs: Arc<KafkaChangelogs>,
    /// By sub-topology: each stateful step's store and changelog topic.
    pub stores_of: BTreeMap<u16, Vec<(String, String)>>,
    pub settings: KafkaSettings,
    pub bootstrap: String,
    /// The restores under way.
    pub restoring: Arc<RestoreBoard>,
}

/// The restores under way and how far each got (changelog records done
/// and to do), for the live progress.
#[derive(Debug, Default)]
pub struct RestoreBoard(Mutex<BTreeMap<(TaskId, String), (u64, u64)>>);

impl RestoreBoard {
    pub(super) fn set(&self, task: TaskId, store: &str, done: u64, total: u64) {
        let mut board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        board.insert((task, store.to_string()), (done, total));
    }

    pub(super) fn clear(&self, task: TaskId, store: &str) {
        let mut board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        board.remove(&(task, store.to_string()));
    }

    /// How many stores are being restored, and their changelog records
    /// done and to do in all; `None` when none is.
    pub fn now(&self) -> Option<(usize, u64, u64)> {
        let board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if board.is_empty() {
            return None;
        }
        let (done, total) = board
            .values()
            .fold((0, 0), |(d, t), (done, total)| (d + done, t + total));
        Some((board.len(), done, total))
    }
}

/// A restore under way.
pub struct Restoring {
    /// Tells this restore from an earlier one of the same task.
    pub number: u64,
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Numbers restores.
static RESTORES: AtomicU64 = AtomicU64::new(0);

/// How a task's restore ended, for the consumer thread.
pub struct RestoreDone {
    pub task: TaskId,
    /// The [`Restoring::number`] of the restore.
    pub number: u64,
    /// `Err`: the restore failed (the run stops: the task cannot run on
    /// state it does not have).
    pub outcome: Result<bool, String>,
}

impl KafkaState {
    /// Whether the tasks of sub-topology `sub` keep state.
    pub fn is_stateful(&self, sub: u16) -> bool {
        self.stores_of.contains_key(&sub)
    }

    /// Ends the task's group of changelog records (see
    /// [`KafkaChangelogs::seal`]); `batches` are done once it is
    /// acknowledged.
    pub fn seal(&self, task: TaskId, batches: Vec<Arc<Ack>>) {
        self.changelogs.seal(task, batches);
    }

    /// Records in the task's `.checkpoint` that its stores hold their
    /// changelogs up to their end offsets, once everything the task sent is
    /// acknowledged. Called when the task is given up, after its input
    /// offsets are committed and before another owner can write.
    pub fn checkpoint(&self, task: TaskId) -> Result<(), String> {
        if !self.is_stateful(task.subtopology) {
            return Ok(());
        }
        self.changelogs.wait_delivered(task, DELIVERY_TIMEOUT)?;
        self.write_checkpoint(task)?;
        self.changelogs.forget(task);
        Ok(())
    }

    /// [`KafkaState::checkpoint`] while the task goes on, when it has sent
    /// at least [`CHECKPOINT_DELTA`] changelog records since its last one
    /// (as Kafka Streams checkpoints at a commit past 10,000 records), so
    /// a restore after a crash reads little more than that. Called after
    /// a commit. Safe while the task writes: a store writes RocksDB before
    /// it sends the changelog records, so every record below an end offset
    /// is in the store.
    pub fn maybe_checkpoint(&self, task: TaskId) -> Result<(), String> {
        if !self.is_stateful(task.subtopology) {
            return Ok(());
        }
        // Counted from what is acknowledged: the end offsets then cover it
        // (records still in flight wait for a later commit).
        let covered = self.changelogs.acknowledged_since_checkpoint(task);
        if covered < CHECKPOINT_DELTA {
            return Ok(());
        }
        self.write_checkpoint(task)?;
        self.changelogs.checkpointed(task, covered);
        Ok(())
    }

    fn write_checkpoint(&self, task: TaskId) -> Result<(), String> {
        let stores = &self.stores_of[&task.subtopology];
        let names: Vec<String> = stores.iter().map(|(store, _)| store.clone()).collect();
        let ends = self.changelogs.end_offsets(task, &names)?;
        let ends: Vec<(&str, u64)> = ends.iter().map(|(s, o)| (s.as_str(), *o)).collect();
        self.stores
            .write_checkpoint(task, &ends)
            .map_err(|e| e.to_string())
    }

    /// Starts restoring `task`'s stores on a thread of its own; `done`
    /// hears when it ends.
    pub fn start_restore(&self, task: TaskId, done: Sender<RestoreDone>) -> Restoring {
        let cancel = Arc::new(AtomicBool::new(false));
        let stores = self.stores.clone();
        let topics = self
            .stores_of
            .get(&task.subtopology)
            .cloned()
            .unwrap_or_default();
        let settings = self.settings.clone();
        let bootstrap = self.bootstrap.clone();
        let flag = cancel.clone();
        let board = self.restoring.clone();
        let number = RESTORES.fetch_add(1, Ordering::Relaxed);
        let sender = done.clone();
        let thread = std::thread::Builder::new()
            .name(format!("restore-{task}"))
            .spawn(move || {
                let outcome =
                    restore_task(&stores, &settings, &bootstrap, task, &topics, &flag, &board);
                let _ = sender.send(RestoreDone {
                    task,
                    number,
                    outcome,
                });
            });
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                // Reported as a failed restore by a thread that ends at once.
                let message = format!("cannot start the restore thread of task {task}: {e}");
                std::thread::spawn(move || {
                    let _ = done.send(RestoreDone {
                        task,
                        number,
                        outcome: Err(message),
                    });
                })
            }
        };
        Restoring {
            number,
            cancel,
            thread,
        }
    }
}

impl Restoring {
    /// Stops the restore (its progress is recorded) and waits for its thread.
    pub fn cancel(self) {
        self.cancel.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Restores every store of `task`, one after the other; `Ok(false)` when
/// cancelled.
fn restore_task(
    stores: &RocksDbStores,
    settings: &KafkaSettings,
    bootstrap: &str,
    task: TaskId,
    topics: &[(String, String)],
    cancel: &AtomicBool,
    board: &RestoreBoard,
) -> Result<bool, String> {
    for (store, topic) in topics {
        let started = Instant::now();
        let restorer = stores.restorer(task, store).map_err(|e| e.to_string())?;
        let from = restorer.start_offset();
        let progress = |done: u64, total: u64| {
            board.set(task, store, done, total);
            tracing::info!(task = %task, store = %store, "restoring: {done} of {total} changelog records");
        };
        let outcome = restore::restore(
            settings,
            bootstrap,
            topic,
            task.partition,
            restorer,
            cancel,
            progress,
        )
        .map_err(|e| format!("task {task}, store `{store}`: {e}"));
        board.clear(task, store);
        let outcome = outcome?;
        match outcome {
            Restored::Cancelled => return Ok(false),
            Restored::Complete(_, 0) => {}
            Restored::Complete(end, records) => tracing::info!(
                task = %task,
                store = %store,
                "restored {records} changelog records ({} to {end}) in {:.2}s",
                from.map_or("from the start".to_string(), |f| format!("from offset {f}")),
                started.elapsed().as_secs_f64()
            ),
        }
    }
    Ok(true)
}
