//! Changelog topics on Kafka: each store's flushed writes go to partition
//! `p` of `<application-id>-<id>-changelog` for task `<sub>_p`, through the
//! run's producer, and a batch of input that changed a store counts as
//! done only once those records are acknowledged.
//!
//! The commit order this gives, as in Kafka Streams: at a commit barrier a
//! task flushes its stores (the write cache goes to RocksDB and its dirty
//! entries to the changelog), then *seals* what it sent: the acks of the
//! batches processed since the previous seal are released when every
//! changelog record sent for the task until then is acknowledged. The
//! offset tracker commits an input offset only behind done batches, so
//! the input offsets are committed only after the changelog holds the
//! state they led to. The task's `.checkpoint` (where a restore starts) is
//! written when the task closes, from the changelog partitions' end
//! offsets once everything sent is acknowledged.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::producer::KafkaProducer;
use crate::io::ack::Ack;
use crate::operators::TaskId;
use crate::record::Record;
use crate::state::changelog::{Changelog, ChangelogError, ChangelogFactory};

/// The changelogs of a run's stores: topics by store name, and for each
/// task the changelog records sent since its last seal.
pub struct KafkaChangelogs {
    producer: Arc<KafkaProducer>,
    /// Store name (the step's id) → its changelog topic.
    topics: HashMap<String, String>,
    stop: Arc<AtomicBool>,
    /// Per task: the ack every changelog record sent since the last seal
    /// holds (plus one hold of its own until sealed), and the last sealed.
    groups: Mutex<HashMap<TaskId, Groups>>,
}

struct Groups {
    open: Arc<Ack>,
    /// Sealed groups, oldest first: those not yet acknowledged, and the
    /// newest one that is.
    sealed: Vec<Sealed>,
    /// Records sent since the task's checkpoint was last written.
    since_checkpoint: u64,
}

struct Sealed {
    ack: Arc<Ack>,
    /// `since_checkpoint` when it was sealed: the records it covers.
    sent: u64,
}

impl KafkaChangelogs {
    /// `topics`: each store's changelog topic (the producer has a handle
    /// for each).
    pub fn new(
        producer: Arc<KafkaProducer>,
        topics: HashMap<String, String>,
        stop: Arc<AtomicBool>,
    ) -> Arc<KafkaChangelogs> {
        Arc::new(KafkaChangelogs {
            producer,
            topics,
            stop,
            groups: Mutex::new(HashMap::new()),
        })
    }

    /// What the stores of a task send through (see
    /// [`crate::state::RocksDbStores::with_changelog`]).
    pub fn factory(self: &Arc<Self>) -> ChangelogFactory {
        let changelogs = Arc::clone(self);
        Arc::new(move |task| {
            Box::new(TaskChangelog {
                changelogs: Arc::clone(&changelogs),
                task,
            })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Groups>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ack a record sent now for `task` holds.
    fn open_group(&self, task: TaskId) -> Arc<Ack> {
        let mut groups = self.lock();
        let groups = groups.entry(task).or_insert_with(|| Groups {
            open: Ack::new(),
            sealed: Vec::new(),
            since_checkpoint: 0,
        });
        groups.since_checkpoint += 1;
        Arc::clone(&groups.open)
    }

    /// Ends `task`'s group of records sent so far: each of `batches` (each
    /// holding one hold taken for this) is released once they are all
    /// acknowledged. Call after the task's stores are flushed.
    pub fn seal(&self, task: TaskId, batches: Vec<Arc<Ack>>) {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(&task) else {
            // Nothing was ever sent for the task: its batches changed no
            // state the changelog lacks.
            for batch in batches {
                batch.release();
            }
            return;
        };
        let sealed = std::mem::replace(&mut group.open, Ack::new());
        sealed.then_release(batches);
        sealed.release();
        group.sealed.push(Sealed {
            ack: sealed,
            sent: group.since_checkpoint,
        });
        // Of the acknowledged groups only the newest says anything more.
        if let Some(newest_done) = group.sealed.iter().rposition(|s| s.ack.is_done()) {
            group.sealed.drain(..newest_done);
        }
    }

    /// Waits (at most `timeout`) until everything sealed for `task` is
    /// acknowledged; `Err` says why it is not.
    pub fn wait_delivered(&self, task: TaskId, timeout: Duration) -> Result<(), String> {
        let sealed = self
            .lock()
            .get(&task)
            .and_then(|g| g.sealed.last().map(|s| s.ack.clone()));
        let Some(sealed) = sealed else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        while !sealed.is_done() {
            if let Some(failure) = sealed.failure() {
                return Err(failure.to_string());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "changelog records of task {task} not acknowledged after {}s",
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// The end offset of each of `stores`' changelog partition of `task`
    /// (the next offset to be written): where its local state is up to once
    /// everything sent is acknowledged.
    pub fn end_offsets(
        &self,
        task: TaskId,
        stores: &[String],
    ) -> Result<Vec<(String, u64)>, String> {
        stores
            .iter()
            .map(|store| {
                let topic = self.topic(store)?;
                let end = self.producer.end_offset(topic, task.partition)?;
                Ok((store.clone(), end))
            })
            .collect()
    }

    /// How many of the records sent for `task` since its last checkpoint
    /// are acknowledged for sure: those sealed up to its newest
    /// acknowledged group. The changelog's end offsets count at least them.
    pub fn acknowledged_since_checkpoint(&self, task: TaskId) -> u64 {
        self.lock().get(&task).map_or(0, |g| {
            g.sealed
                .iter()
                .rev()
                .find(|s| s.ack.is_done())
                .map_or(0, |s| s.sent)
        })
    }

    /// Notes that `task`'s checkpoint was written, covering `covered` of
    /// the records sent since the previous one.
    pub fn checkpointed(&self, task: TaskId, covered: u64) {
        if let Some(group) = self.lock().get_mut(&task) {
            group.since_checkpoint = group.since_checkpoint.saturating_sub(covered);
            for sealed in &mut group.sealed {
                sealed.sent = sealed.sent.saturating_sub(covered);
            }
        }
    }

    /// Forgets `task` (closed): a later owner starts a new group.
    pub fn forget(&self, task: TaskId) {
        self.lock().remove(&task);
    }

    fn topic(&self, store: &str) -> Result<&str, String> {
        self.topics
            .get(store)
            .map(String::as_str)
            .ok_or_else(|| format!("store `{store}` has no changelog topic"))
    }
}

/// One task's stores' way to their changelogs.
struct TaskChangelog {
    changelogs: Arc<KafkaChangelogs>,
    task: TaskId,
}

impl Changelog for TaskChangelog {
    fn send(
        &mut self,
        store: &str,
        partition: u32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ChangelogError> {
        let changelogs = &self.changelogs;
        let topic = changelogs.topic(store)?;
        let record = Record {
            key: Some(Bytes::copy_from_slice(key)),
            value: value.map(Bytes::copy_from_slice),
            // 0: the broker's time of append (librdkafka's "now").
            timestamp: 0,
            headers: Vec::new(),
            value_is_json: false,
            old_value: None,
        };
        let group = changelogs.open_group(self.task);
        changelogs
            .producer
            .send_to(topic, partition, &record, &group, &changelogs.stop)
            .map_err(|e| Box::new(e) as ChangelogError)
    }
}
