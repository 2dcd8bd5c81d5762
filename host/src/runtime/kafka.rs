//! Feeding partition tasks from the group consumer, and committing offsets
//! at-least-once.
//!
//! One consumer thread reads every assigned partition (in batches, from the
//! queue the partitions forward to: see [`crate::io::kafka::fetch`]), gathers each
//! partition's records into batches and hands them to the task that owns
//! that partition number (`partition % tasks`, so partition `p` of every
//! input topic meets in one task, as Kafka Streams co-partitions). Each batch
//! carries an [`Ack`]; an offset is committed only when the batches before
//! it are fully processed and everything they produced is acknowledged.
//! When the group revokes partitions, their batches are finished and their
//! offsets committed before the consumer lets go of them; the next owner
//! resumes from there.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::RunError;
use crate::io::ack::Ack;
use crate::io::kafka::KafkaError;
use crate::io::kafka::consumer::{self, Arena, GroupContext, GroupProgress, OnRevoke};
use crate::io::kafka::fetch::{FetchQueue, Fetched};
use crate::io::kafka::producer::KafkaProducer;
use crate::io::source::SourceBatch;
use crate::record::{Origin, Record};
use crate::spec::{Format, KafkaSettings, Source};

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

/// What the feeding thread needs.
pub struct Feed<'a> {
    pub settings: &'a KafkaSettings,
    pub bootstrap: &'a str,
    pub sources: &'a [Source],
    pub batch_size: usize,
    pub tasks: Vec<Sender<SourceBatch>>,
    pub stop: Arc<AtomicBool>,
    /// Set when a thread of the run failed.
    pub failed: Arc<AtomicBool>,
    /// Task and sink threads still running.
    pub alive: Arc<AtomicUsize>,
    pub records_in: &'a AtomicU64,
    /// Lag and position per (topic, partition), for progress.
    pub progress: GroupProgress,
    /// The run's producer, when it writes Kafka sinks: its delivery
    /// failures end the run.
    pub producer: Option<&'a KafkaProducer>,
}

/// One assigned partition: the batch being gathered and the batches handed
/// to its task whose outputs are not all out yet.
struct Partition {
    pending: SourceBatch,
    /// The offset after the last record read.
    next: i64,
    in_flight: VecDeque<(i64, Arc<Ack>)>,
    /// The last offset committed (or to be committed).
    committed: i64,
    /// A batch of this partition was dropped while stopping: nothing after
    /// it may be handed over, or a commit could pass over it.
    halted: bool,
}

/// The state shared by the poll loop and the rebalance callback (which
/// runs inside `poll`, on the same thread).
struct Router {
    state: Mutex<Routing>,
}

struct Routing {
    tasks: Vec<Sender<SourceBatch>>,
    /// Each source's topic, by source index.
    source_topics: Vec<String>,
    partitions: BTreeMap<(u16, i32), Partition>,
    batch_size: usize,
    stop: Arc<AtomicBool>,
    /// Set when a thread of the run failed.
    failed: Arc<AtomicBool>,
    alive: Arc<AtomicUsize>,
    /// Partitions revoked since the poll loop last routed what it read:
    /// records of theirs it read before the revoke belong to the next owner.
    revoked: Vec<(u16, i32)>,
    /// Set when a revoke could not finish (for the poll loop to report).
    error: Option<RunError>,
}

impl Routing {
    /// An empty batch for records of `source`, with room for a full one.
    fn new_batch(&self, source: u16) -> SourceBatch {
        SourceBatch {
            source,
            unchecked: true,
            records: Vec::with_capacity(self.batch_size),
            origins: Vec::with_capacity(self.batch_size),
            ..SourceBatch::default()
        }
    }

    fn partition(&mut self, source: u16, partition: i32) -> &mut Partition {
        if !self.partitions.contains_key(&(source, partition)) {
            let fresh = self.new_batch(source);
            self.partitions.insert(
                (source, partition),
                Partition {
                    pending: fresh,
                    next: -1,
                    in_flight: VecDeque::new(),
                    committed: -1,
                    halted: false,
                },
            );
        }
        self.partitions
            .get_mut(&(source, partition))
            .expect("inserted above")
    }

    /// Hands a partition's gathered records to its task (waits while the
    /// task's queue is full: that is the backpressure on the consumer).
    fn flush(&mut self, key: (u16, i32)) -> Result<(), RunError> {
        if self
            .partitions
            .get(&key)
            .is_none_or(|p| p.pending.records.is_empty() || p.halted)
        {
            return Ok(());
        }
        let fresh = self.new_batch(key.0);
        let p = self.partitions.get_mut(&key).expect("checked above");
        let ack = Ack::new();
        let mut batch = std::mem::replace(&mut p.pending, fresh);
        batch.ack = Some(ack.clone());
        p.in_flight.push_back((p.next, ack));
        let Some(task) = self.tasks.get(key.1 as usize % self.tasks.len().max(1)) else {
            return Err(RunError::Stopped);
        };
        let mut batch = batch;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let outcome = loop {
            match task.send_timeout(batch, Duration::from_millis(100)) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(back)) => {
                    if self.stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        // Not processed: read again by whoever resumes.
                        break Ok(());
                    }
                    batch = back;
                }
                // The task stopped on an error; the run reports that.
                Err(SendTimeoutError::Disconnected(_)) => break Err(RunError::Stopped),
            }
        };
        // The batch was not taken: nothing will ever release its ack, and
        // nothing after it may be handed over.
        if let Some(p) = self.partitions.get_mut(&key) {
            p.in_flight.pop_back();
            p.halted = true;
        }
        outcome
    }

    fn flush_all(&mut self) -> Result<(), RunError> {
        let keys: Vec<_> = self.partitions.keys().copied().collect();
        for key in keys {
            self.flush(key)?;
        }
        Ok(())
    }

    /// Drops the finished batches of each partition and returns the offsets
    /// that can be committed now. A batch whose output failed stops its
    /// partition's commits for good (the failure itself is reported by
    /// whoever saw it: the producer, or the task).
    fn committable(&mut self, only: Option<&[(u16, i32)]>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (key, p) in &mut self.partitions {
            if only.is_some_and(|keys| !keys.contains(key)) {
                continue;
            }
            while let Some((next, ack)) = p.in_flight.front() {
                if !ack.is_done() {
                    break;
                }
                p.committed = p.committed.max(*next);
                p.in_flight.pop_front();
            }
            if p.committed >= 0 {
                tpl.add_partition_offset(
                    &self.source_topics[key.0 as usize],
                    key.1,
                    Offset::Offset(p.committed),
                )
                .expect("a valid offset");
            }
        }
        tpl
    }

    /// Waits until the batches of `keys` are done, a task or sink is gone
    /// for good, or the drain timeout passes. After a failure nothing more
    /// is waited for: what is done is committed, the rest is read again.
    fn drain(&mut self, keys: &[(u16, i32)]) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            if self.failed.load(Ordering::Relaxed) {
                return;
            }
            let busy = keys.iter().any(|k| {
                self.partitions.get(k).is_some_and(|p| {
                    p.in_flight
                        .iter()
                        .any(|(_, a)| !a.is_done() && a.failure().is_none())
                })
            });
            if !busy {
                return;
            }
            if self.alive.load(Ordering::Relaxed) == 0 || Instant::now() > deadline {
                tracing::warn!(
                    "stopped waiting for outputs to be acknowledged; uncommitted records will be read again"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Finishes `keys`, commits them synchronously and forgets them.
    fn finish<C: rdkafka::consumer::ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        keys: &[(u16, i32)],
    ) -> Result<(), RunError> {
        for &key in keys {
            if let Err(e) = self.flush(key) {
                // A task is gone; still commit what the others finished.
                tracing::debug!("not handed over: {e}");
            }
        }
        self.drain(keys);
        let tpl = self.committable(Some(keys));
        let result = if tpl.count() > 0 && !consumer.assignment_lost() {
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| RunError::Kafka(KafkaError::Commit(e.to_string())))
        } else {
            Ok(())
        };
        for key in keys {
            self.partitions.remove(key);
        }
        result
    }
}

impl OnRevoke for Router {
    fn revoke(&self, consumer: &BaseConsumer<GroupContext<Self>>, partitions: &TopicPartitionList) {
        let mut routing = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<(u16, i32)> = partitions
            .elements()
            .iter()
            .filter_map(|e| {
                Some((
                    source_of(&routing.source_topics, e.topic().as_bytes())?,
                    e.partition(),
                ))
            })
            .collect();
        if let Err(e) = routing.finish(consumer, &keys) {
            tracing::error!("while giving up partitions: {e}");
            routing.error.get_or_insert(e);
        }
        routing.revoked.extend(keys);
    }
}

/// Polls, routes and commits until stopped (or a task fails), then finishes
/// and commits what was read, and leaves the group.
pub fn feed(mut f: Feed<'_>) -> Result<(), RunError> {
    let source_topics: Vec<String> = f
        .sources
        .iter()
        .map(|s| s.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default())
        .collect();
    let subscription: Vec<&str> = source_topics.iter().map(String::as_str).collect();
    let router = Router {
        state: Mutex::new(Routing {
            tasks: std::mem::take(&mut f.tasks),
            source_topics: source_topics.clone(),
            partitions: BTreeMap::new(),
            batch_size: f.batch_size,
            stop: f.stop.clone(),
            failed: f.failed.clone(),
            alive: f.alive.clone(),
            revoked: Vec::new(),
            error: None,
        }),
    };
    let consumer = consumer::create(f.settings, f.bootstrap, router, f.progress.clone())?;
    // Before subscribing: every partition assigned from now on forwards
    // its messages to this queue.
    let mut fetch =
        FetchQueue::new(&consumer, &consumer.context().forward).map_err(KafkaError::Consumer)?;
    consumer
        .subscribe(&subscription)
        .map_err(|e| KafkaError::Consumer(format!("cannot subscribe: {e}")))?;
    let result = poll_loop(&consumer, &mut fetch, &f);
    let lock = || {
        consumer
            .context()
            .on_revoke
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    };
    // Finish what was read and commit it while still in the group.
    let keys: Vec<_> = lock().partitions.keys().copied().collect();
    let finished = lock().finish(&consumer, &keys);
    // No more batches: tasks end when their queues are empty.
    lock().tasks.clear();
    consumer.unsubscribe();
    drop(fetch);
    drop(consumer);
    match (result, finished) {
        (Err(RunError::Stopped), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
        (Ok(()), finished) => finished,
    }
}

/// Messages taken from the consumer between two visits to the routing
/// state (which the rebalance callback inside `poll` also needs).
const READ_AHEAD: usize = 512;

fn poll_loop(
    consumer: &BaseConsumer<GroupContext<Router>>,
    fetch: &mut FetchQueue<'_>,
    f: &Feed<'_>,
) -> Result<(), RunError> {
    let router = &consumer.context().on_revoke;
    let topics: Vec<String> = router
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .source_topics
        .clone();
    let formats: Vec<Format> = f.sources.iter().map(|s| s.value_format).collect();
    let interval = Duration::from_millis(f.settings.commit_interval_ms);
    let mut last_commit = Instant::now();
    // When the oldest record not yet handed to a task was read.
    let mut buffered: Option<Instant> = None;
    let mut arena = Arena::default();
    let mut read: Vec<(u16, i32, i64, Record)> = Vec::with_capacity(READ_AHEAD);
    loop {
        if f.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let timeout = match buffered {
            Some(since) => LINGER.saturating_sub(since.elapsed()),
            None => POLL,
        };
        let mut failure = None;
        // A fetched message as a routed record (`None` for an error).
        let mut keep = |m: &Fetched<'_>, failure: &mut Option<_>| {
            let source = take(m, &topics, failure)?;
            let record = consumer::to_record(m, formats[source as usize], &mut arena);
            Some((source, m.partition(), m.offset(), record))
        };
        // Messages, a batch at a time, from the queue every assigned
        // partition forwards to (waiting only for the first).
        fetch.consume(timeout, READ_AHEAD, |m| {
            read.extend(keep(m, &mut failure));
        });
        // Events: rebalances (the revoke callback runs in here), statistics
        // and errors; and messages of any partition that could not be
        // forwarded. (`poll` also answers `None` after serving an event
        // itself, so a rebalance queued behind statistics runs next turn:
        // at most `POLL` later.)
        while let Some(polled) = consumer.poll(Duration::ZERO) {
            match polled {
                Ok(message) => read.extend(keep(&Fetched::of(&message), &mut failure)),
                Err(e) => note_error(e, &mut failure),
            }
            if read.len() >= READ_AHEAD {
                break;
            }
        }
        if let Some(e) = failure {
            return Err(RunError::Kafka(KafkaError::Consumer(e.to_string())));
        }
        let mut routing = router.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = routing.error.take() {
            return Err(e);
        }
        if !routing.revoked.is_empty() {
            let revoked = std::mem::take(&mut routing.revoked);
            read.retain(|(s, p, _, _)| !revoked.contains(&(*s, *p)));
        }
        if !read.is_empty() {
            buffered.get_or_insert_with(Instant::now);
            f.records_in.fetch_add(read.len() as u64, Ordering::Relaxed);
        }
        for (source, partition, offset, record) in read.drain(..) {
            let batch_size = routing.batch_size;
            let p = routing.partition(source, partition);
            p.next = offset + 1;
            p.pending.records.push(record);
            p.pending.origins.push(Origin {
                source,
                partition: partition as u32,
                offset: offset as u64,
            });
            if p.pending.records.len() >= batch_size {
                routing.flush((source, partition))?;
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
            let tpl = routing.committable(None);
            if tpl.count() > 0 {
                consumer
                    .commit(&tpl, CommitMode::Async)
                    .map_err(|e| RunError::Kafka(KafkaError::Commit(e.to_string())))?;
            }
            last_commit = Instant::now();
        }
    }
}

/// The source a fetched message belongs to, or `None` when it is not a
/// record (a consumer error, noted in `failure` when fatal).
fn take(
    m: &Fetched<'_>,
    topics: &[String],
    failure: &mut Option<rdkafka::error::KafkaError>,
) -> Option<u16> {
    if let Some(e) = m.error() {
        note_error(e, failure);
        return None;
    }
    // The consumer only gets the topics it subscribed to.
    if topics.len() == 1 {
        Some(0)
    } else {
        source_of(topics, m.topic())
    }
}

/// The source reading `topic` (validation allows one source per topic).
fn source_of(topics: &[String], topic: &[u8]) -> Option<u16> {
    topics
        .iter()
        .position(|t| t.as_bytes() == topic)
        .map(|i| i as u16)
}

/// A consumer error: ends the run when fatal, else is logged (librdkafka
/// retries by itself).
fn note_error(e: rdkafka::error::KafkaError, failure: &mut Option<rdkafka::error::KafkaError>) {
    if fatal(&e) {
        failure.get_or_insert(e);
    } else if !matches!(e, rdkafka::error::KafkaError::PartitionEOF(_)) {
        tracing::warn!("Kafka consumer: {e}");
    }
}

/// Consumer errors that will not go away by themselves: the run stops
/// rather than warn forever.
fn fatal(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(e, rdkafka::error::KafkaError::MessageConsumptionFatal(_))
        || matches!(
            e.rdkafka_error_code(),
            Some(
                Code::Fatal
                    | Code::TopicAuthorizationFailed
                    | Code::GroupAuthorizationFailed
                    | Code::ClusterAuthorizationFailed
                    | Code::SaslAuthenticationFailed
            )
        )
}
