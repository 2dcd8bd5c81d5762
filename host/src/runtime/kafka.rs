//! Feeding tasks from the group consumer, and committing offsets
//! at-least-once.
//!
//! One consumer thread reads every assigned partition (see
//! [`crate::io::kafka::source`]), gathers each partition's records into
//! batches and hands them to the task of that partition number: partition
//! `p` of every input topic of a sub-topology meets in its task `<sub>_p`
//! (co-partitioned, as in Kafka Streams), hosted by worker `p % threads`.
//! The topics read are the sources' and the repartition topics' (see
//! [`super::repartition`]): partition `p` of a repartition topic feeds task
//! `<sub>_p` of the sub-topology after the repartition. Each batch carries an [`Ack`];
//! the [`OffsetTracker`] commits an offset only when the batches before it
//! are fully processed and everything they produced is acknowledged.
//!
//! The commit protocol on Kafka, every `commit-interval`: a commit barrier
//! goes to every task (operators checkpoint, sinks hand over what they
//! hold), then what the tracker frees is committed through the consumer.
//! When the group revokes partitions, their batches are finished and their
//! offsets committed (synchronously) before the consumer lets go of them,
//! and their tasks are closed; the next owner resumes from there.
//!
//! With keyed state (`super::state`): a batch that changed a store is done
//! only once the store's changelog records are acknowledged, a task given
//! up writes its state checkpoint after its offsets are committed, and a
//! task assigned restores its stores first, its partitions paused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender};

use super::RunError;
use super::message::{CommitBarrier, TaskMessage, WorkerMessage};
use super::repartition::RepartitionTopic;
use super::state::{KafkaState, RestoreDone, Restoring};
use super::topology::Topology;
use super::worker::{Flow, WorkerInbox};
use crate::clock::Clock;
use crate::io::ack::Ack;
use crate::io::batch::{Batch, InputId};
use crate::io::kafka::consumer::{GroupProgress, RebalanceListener};
use crate::io::kafka::offsets::{CommitStrategy, Committable, OffsetTracker, PartitionKey};
use crate::io::kafka::producer::KafkaProducer;
use crate::io::kafka::source::{self, Fetch, KafkaReader, ReadTopic};
use crate::operators::TaskId;
use crate::pipeline::KafkaSettings;
use crate::record::Origin;

/// How long a revoke or a shutdown waits for outputs to be acknowledged
/// before committing what is done (the rest is read again by the next
/// owner: at-least-once).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the consumer waits for messages when nothing is buffered:
/// also the longest a rebalance event waits to be served, since the wait
/// is on weir's message queue, not on the consumer's event queue.
const POLL: Duration = Duration::from_millis(20);
/// How long records read may wait for more to fill a batch: librdkafka
/// hands messages over one at a time as its fetcher decodes them, and a
/// batch cut at every momentary gap would be a handful of records (Wasm
/// calls and commits are per batch).
const LINGER: Duration = Duration::from_millis(5);
/// How long a commit waits for the tasks to reach its barrier; past it,
/// what is acknowledged is still committed (acks make that safe).
const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the consumer thread needs.
pub struct KafkaFeeder<'a> {
    pub settings: &'a KafkaSettings,
    pub bootstrap: &'a str,
    pub topo: &'a Topology,
    /// Read after the sources' topics, in this order.
    pub repartitions: &'a [RepartitionTopic],
    pub batch_size: usize,
    pub workers: Vec<WorkerInbox>,
    pub stop: Arc<AtomicBool>,
    /// Set when a thread of the run failed.
    pub failed: Arc<AtomicBool>,
    /// Worker and sink threads still running.
    pub alive: Arc<AtomicUsize>,
    pub records_in: &'a AtomicU64,
    /// Lag and position per (topic, partition), for progress.
    pub progress: GroupProgress,
    /// The run's producer, when it writes Kafka sinks: its delivery
    /// failures end the run.
    pub producer: Option<&'a KafkaProducer>,
    pub clock: &'a dyn Clock,
    /// Counts what is sent to workers.
    pub flow: Arc<Flow>,
    /// Where the offsets committed when the consumer stopped are left (the
    /// run's report says where each partition stopped).
    pub committed: &'a Mutex<Vec<Committable>>,
    /// Set from a revoke until the next assignment: swaps are refused
    /// meanwhile (see [`super::control::RunControl::swap_with`]).
    pub rebalancing: Arc<AtomicBool>,
    /// The stores and their changelogs, when the topology keeps state.
    pub state: Option<Arc<KafkaState>>,
}

/// The batches being gathered, and the book of those handed over. Shared
/// by the poll loop and the rebalance listener (which runs inside `read`,
/// on the same thread).
struct PartitionFeed {
    workers: Vec<WorkerInbox>,
    /// By topic index (a [`PartitionKey`]'s first half): the input its
    /// records are, and the sub-topology whose tasks read it.
    inputs: Vec<(InputId, u16)>,
    pending: BTreeMap<PartitionKey, (Batch, i64)>,
    offsets: OffsetTracker,
    /// Partitions assigned, by task: a task lives while any is.
    assigned: BTreeMap<TaskId, Vec<PartitionKey>>,
    batch_size: usize,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    alive: Arc<AtomicUsize>,
    /// Partitions revoked since the poll loop last routed what it read:
    /// records of theirs it read before the revoke belong to the next owner.
    revoked: Vec<PartitionKey>,
    /// Set when a revoke could not finish (for the poll loop to report).
    error: Option<RunError>,
    flow: Arc<Flow>,
    state: Option<Arc<KafkaState>>,
    /// Tasks restoring their stores: their partitions' records wait in
    /// `pending` (and the partitions are paused) until the restore is done.
    restoring: BTreeMap<TaskId, Restoring>,
    /// Partitions to pause, and to resume, at the poll loop's next turn
    /// (the consumer is busy calling the listener when they are found).
    to_pause: Vec<PartitionKey>,
    to_resume: Vec<PartitionKey>,
    restores_done: (Sender<RestoreDone>, Receiver<RestoreDone>),
}

impl PartitionFeed {
    /// The task that reads partition `key`.
    fn task_of(&self, key: PartitionKey) -> TaskId {
        TaskId {
            subtopology: self.inputs.get(key.0 as usize).map_or(0, |i| i.1),
            partition: key.1 as u32,
        }
    }

    /// The input of the topic `key` is a partition of.
    fn input_of(&self, key: PartitionKey) -> InputId {
        self.inputs
            .get(key.0 as usize)
            .map_or(InputId::Source(key.0), |i| i.0)
    }

    fn inbox(&self, task: TaskId) -> Option<&WorkerInbox> {
        let n = self.workers.len();
        (n > 0).then(|| &self.workers[task.partition as usize % n])
    }

    /// Hands a partition's gathered records to its task (waits while the
    /// worker's queue is full: that is the backpressure on the consumer).
    fn flush(&mut self, key: PartitionKey) -> Result<(), RunError> {
        if self.restoring.contains_key(&self.task_of(key)) {
            // Its task is restoring its state: the records wait here.
            return Ok(());
        }
        let Some((batch, next)) = self.pending.remove(&key) else {
            return Ok(());
        };
        if batch.records.is_empty() || !self.offsets.accepts(key) {
            return Ok(());
        }
        let task = self.task_of(key);
        let Some(inbox) = self.inbox(task) else {
            return Err(RunError::Stopped);
        };
        let ack = Ack::new();
        let mut batch = batch;
        batch.ack = Some(ack.clone());
        let mut message = WorkerMessage::Task(task, TaskMessage::Batch(batch));
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        self.flow.sending();
        let outcome = loop {
            match inbox
                .external
                .send_timeout(message, Duration::from_millis(100))
            {
                Ok(()) => {
                    self.offsets.handed_over(key, next, ack);
                    return Ok(());
                }
                Err(SendTimeoutError::Timeout(back)) => {
                    if self.stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        // Not processed: read again by whoever resumes.
                        break Ok(());
                    }
                    message = back;
                }
                // The worker stopped on an error; the run reports that.
                Err(SendTimeoutError::Disconnected(_)) => break Err(RunError::Stopped),
            }
        };
        // Nothing after an unsent batch may be handed over or committed.
        self.flow.settled();
        self.offsets.halt(key);
        outcome
    }

    /// Takes note of restores that ended: a restored task's partitions
    /// are resumed; a failed restore stops the run.
    fn serve_restores(&mut self) -> Result<(), RunError> {
        while let Ok(done) = self.restores_done.1.try_recv() {
            match done.outcome {
                Err(e) => return Err(RunError::Setup(format!("cannot restore state: {e}"))),
                // Cancelled: the task was given up meanwhile.
                Ok(false) => {}
                Ok(true) => {
                    let current = self.restoring.get(&done.task).map(|r| r.number);
                    if current == Some(done.number)
                        && let Some(restoring) = self.restoring.remove(&done.task)
                    {
                        // Ended: joined at once.
                        restoring.cancel();
                        tracing::info!(task = %done.task, "state restored; processing");
                        let keys = self.assigned.get(&done.task).cloned().unwrap_or_default();
                        self.to_resume.extend(keys);
                    }
                }
            }
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), RunError> {
        let keys: Vec<_> = self.pending.keys().copied().collect();
        for key in keys {
            self.flush(key)?;
        }
        Ok(())
    }

    /// Waits until the batches of `keys` are done, a worker or sink is gone
    /// for good, or the drain timeout passes. After a failure nothing more
    /// is waited for: what is done is committed, the rest is read again.
    fn drain(&self, keys: &[PartitionKey]) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !self.failed.load(Ordering::Relaxed) && self.offsets.busy(keys) {
            if self.alive.load(Ordering::Relaxed) == 0 || Instant::now() > deadline {
                tracing::warn!(
                    "stopped waiting for outputs to be acknowledged; uncommitted records will be read again"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// With stores: a batch that changed one is done only once the store
    /// is flushed and its changelog records acknowledged, and a commit
    /// barrier may reach a task before batches already queued for it
    /// (barriers go first). So barriers go out again until the batches of
    /// `keys` are done (or the drain timeout passes).
    fn drain_state(&self, keys: &[PartitionKey]) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            commit_barrier(&self.workers);
            if !self.offsets.busy(keys)
                || self.failed.load(Ordering::Relaxed)
                || self.alive.load(Ordering::Relaxed) == 0
                || Instant::now() > deadline
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Finishes `keys`, commits them synchronously, forgets them, and
    /// closes the tasks that no longer read anything here. Returns what it
    /// committed.
    fn finish(
        &mut self,
        commit: &dyn CommitStrategy,
        keys: &[PartitionKey],
    ) -> Result<Vec<Committable>, RunError> {
        for &key in keys {
            if let Err(e) = self.flush(key) {
                // A worker is gone; still commit what the others finished.
                tracing::debug!("not handed over: {e}");
            }
        }
        if self.state.is_some() {
            self.drain_state(keys);
        }
        self.drain(keys);
        let offsets = self.offsets.committable(Some(keys));
        let result = commit
            .commit(&offsets, true)
            .map(|()| offsets)
            .map_err(RunError::Kafka);
        self.offsets.forget(keys);
        // What a restoring task's partitions read meanwhile belongs to the
        // next owner.
        self.pending.retain(|k, _| !keys.contains(k));
        for &key in keys {
            let task = self.task_of(key);
            let Some(held) = self.assigned.get_mut(&task) else {
                continue;
            };
            held.retain(|k| *k != key);
            if held.is_empty() {
                self.assigned.remove(&task);
                if let Some(restoring) = self.restoring.remove(&task) {
                    // Its progress is recorded: a later restore resumes.
                    restoring.cancel();
                } else if let Some(state) = &self.state
                    && result.is_ok()
                    && let Err(e) = state.checkpoint(task)
                {
                    // The next restore of the task starts from its older
                    // checkpoint: more to read, nothing lost.
                    tracing::warn!(task = %task, "state checkpoint not written: {e}");
                }
                if let Some(inbox) = self.inbox(task) {
                    let _ = self.flow.send(
                        &inbox.internal,
                        WorkerMessage::Task(task, TaskMessage::Revoked),
                    );
                }
            }
        }
        result
    }
}

/// The rebalance listener: the partition feed behind a lock (the poll loop
/// and the rebalance callback, inside `read`, share it).
struct GroupListener {
    state: Mutex<PartitionFeed>,
    /// Set from a revoke until the next assignment (the range assignor
    /// revokes every partition, then assigns).
    rebalancing: Arc<AtomicBool>,
}

impl GroupListener {
    fn lock(&self) -> std::sync::MutexGuard<'_, PartitionFeed> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RebalanceListener for GroupListener {
    fn assigned(&self, partitions: &[PartitionKey]) {
        let mut routing = self.lock();
        self.rebalancing.store(false, Ordering::Release);
        for &key in partitions {
            let task = routing.task_of(key);
            let held = routing.assigned.entry(task).or_default();
            let new_task = held.is_empty();
            held.push(key);
            if new_task && let Some(inbox) = routing.inbox(task) {
                // Created on the worker before its first batch arrives.
                let _ = routing.flow.send(
                    &inbox.internal,
                    WorkerMessage::Task(task, TaskMessage::Assigned),
                );
            }
            if let Some(state) = routing.state.clone()
                && state.is_stateful(task.subtopology)
            {
                if new_task {
                    let done = routing.restores_done.0.clone();
                    let restoring = state.start_restore(task, done);
                    routing.restoring.insert(task, restoring);
                }
                if routing.restoring.contains_key(&task) {
                    routing.to_pause.push(key);
                }
            }
        }
    }

    fn revoked(&self, partitions: &[PartitionKey], commit: &dyn CommitStrategy) {
        self.rebalancing.store(true, Ordering::Release);
        let mut routing = self.lock();
        if let Err(e) = routing.finish(commit, partitions) {
            tracing::error!("while giving up partitions: {e}");
            routing.error.get_or_insert(e);
        }
        routing.revoked.extend_from_slice(partitions);
    }
}

/// Polls, routes and commits until stopped (or a task fails), then finishes
/// and commits what was read, and leaves the group.
pub fn run_consumer(mut f: KafkaFeeder<'_>) -> Result<(), RunError> {
    let p = &f.topo.pipeline;
    let mut read: Vec<ReadTopic> = p.sources.iter().map(ReadTopic::source).collect();
    let mut inputs: Vec<(InputId, u16)> = (0..p.sources.len())
        .map(|s| {
            let input = InputId::Source(s as u16);
            (input, f.topo.subtopology_reading(input))
        })
        .collect();
    for r in f.repartitions {
        read.push(ReadTopic {
            name: r.topic.clone(),
            // Whatever reached the repartition; a JSON value is marked
            // as such when it is one (see `format_gate::precheck`).
            value_format: crate::codec::Format::Json,
            internal: true,
        });
        let input = InputId::Repartition(r.step as u16);
        inputs.push((input, f.topo.subtopology_reading(input)));
    }
    let router = GroupListener {
        state: Mutex::new(PartitionFeed {
            workers: std::mem::take(&mut f.workers),
            inputs,
            pending: BTreeMap::new(),
            offsets: OffsetTracker::default(),
            assigned: BTreeMap::new(),
            batch_size: f.batch_size,
            stop: f.stop.clone(),
            failed: f.failed.clone(),
            alive: f.alive.clone(),
            revoked: Vec::new(),
            error: None,
            flow: f.flow.clone(),
            state: f.state.clone(),
            restoring: BTreeMap::new(),
            to_pause: Vec::new(),
            to_resume: Vec::new(),
            restores_done: crossbeam_channel::unbounded(),
        }),
        rebalancing: f.rebalancing.clone(),
    };
    source::with_source(
        f.settings,
        f.bootstrap,
        &read,
        router,
        f.progress.clone(),
        |reader| {
            let result = poll_loop(reader, &f);
            // Finish what was read and commit it while still in the group.
            let router = reader.listener();
            let keys = router.lock().offsets.keys();
            let finished = router.lock().finish(&*reader, &keys);
            // No more batches: workers end when their queues are empty.
            router.lock().workers.clear();
            let finished = finished.map(|committed| {
                *f.committed.lock().unwrap_or_else(|p| p.into_inner()) = committed;
            });
            match (result, finished) {
                (Err(RunError::Stopped), Err(e)) => Err(e),
                (Err(e), _) => Err(e),
                (Ok(()), finished) => finished,
            }
        },
    )?
}

fn poll_loop(
    reader: &mut KafkaReader<'_, GroupListener>,
    f: &KafkaFeeder<'_>,
) -> Result<(), RunError> {
    let interval = Duration::from_millis(f.settings.commit_interval_ms);
    let mut last_commit = Instant::now();
    // When the oldest record not yet handed to a task was read.
    let mut buffered: Option<Instant> = None;
    let mut read: Vec<Fetch> = Vec::new();
    loop {
        if f.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let timeout = match buffered {
            Some(since) => LINGER.saturating_sub(since.elapsed()),
            None => POLL,
        };
        reader.read(timeout, f.clock.now_ms(), &mut read)?;
        let mut routing = reader.listener().lock();
        if let Some(e) = routing.error.take() {
            return Err(e);
        }
        routing.serve_restores()?;
        if !routing.to_pause.is_empty() {
            reader.pause(&std::mem::take(&mut routing.to_pause))?;
        }
        if !routing.to_resume.is_empty() {
            let resumed = std::mem::take(&mut routing.to_resume);
            reader.resume(&resumed)?;
            for key in resumed {
                routing.flush(key)?;
            }
        }
        if !routing.revoked.is_empty() {
            let revoked = std::mem::take(&mut routing.revoked);
            read.retain(|r| !revoked.contains(&r.partition));
        }
        if !read.is_empty() {
            buffered.get_or_insert_with(Instant::now);
            // Records in are the sources': what a repartition topic gives
            // back was counted when its source read it.
            let sources = f.topo.pipeline.sources.len() as u16;
            let from_sources = read.iter().filter(|r| r.partition.0 < sources).count();
            f.records_in
                .fetch_add(from_sources as u64, Ordering::Relaxed);
        }
        for fetch in read.drain(..) {
            let batch_size = routing.batch_size;
            let key = fetch.partition;
            let input = routing.input_of(key);
            let (batch, next) = routing.pending.entry(key).or_insert_with(|| {
                let mut b = Batch::new(input, batch_size);
                // A source's records are held to its formats; a
                // repartition topic's were, before they were written.
                b.needs_format_check = matches!(input, InputId::Source(_));
                (b, 0)
            });
            *next = fetch.offset + 1;
            batch.records.push(fetch.record);
            batch.origins.push(Origin {
                source: key.0,
                partition: key.1 as u32,
                offset: fetch.offset as u64,
            });
            if batch.records.len() >= batch_size {
                routing.flush(key)?;
            }
        }
        if buffered.is_some_and(|since| since.elapsed() >= LINGER) {
            routing.flush_all()?;
            buffered = None;
        }
        if last_commit.elapsed() >= interval {
            if let Some(failure) = f.producer.and_then(KafkaProducer::failure) {
                return Err(RunError::Delivery(failure));
            }
            routing.flush_all()?;
            buffered = None;
            let workers = routing.workers.clone();
            drop(routing);
            commit_barrier(&workers);
            let offsets = reader.listener().lock().offsets.committable(None);
            // With repartition topics, synchronously, as Kafka Streams
            // commits: their records below a commit the broker took are
            // then purged. A synchronous commit the group refuses (a
            // rebalance under way) is not the end of the run: the revoke
            // commits what is done, or the next interval does.
            let sync = !f.repartitions.is_empty();
            match reader.commit(&offsets, sync) {
                Err(e) if sync => tracing::warn!("{e}; committed again at the next interval"),
                result => result?,
            }
            if let Some(state) = &f.state {
                let routing = reader.listener().lock();
                let running: Vec<TaskId> = routing
                    .assigned
                    .keys()
                    .filter(|task| !routing.restoring.contains_key(task))
                    .copied()
                    .collect();
                drop(routing);
                for task in running {
                    if let Err(e) = state.maybe_checkpoint(task) {
                        tracing::warn!(task = %task, "state checkpoint not written: {e}");
                    }
                }
            }
            last_commit = Instant::now();
        }
    }
}

/// Sends a commit barrier to every task and waits (bounded) until all have
/// checkpointed their operators and handed over what their sinks hold.
fn commit_barrier(workers: &[WorkerInbox]) {
    let internal: Vec<_> = workers.iter().map(|w| w.internal.clone()).collect();
    let barrier = CommitBarrier::to_all(&internal);
    match barrier.wait(BARRIER_TIMEOUT) {
        Ok(true) => {}
        Ok(false) => tracing::debug!("commit barrier timed out; committing what is acknowledged"),
        Err(e) => tracing::warn!("a task could not checkpoint: {e}"),
    }
}
