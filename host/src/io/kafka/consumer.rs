//! The group consumer behind every Kafka source of a pipeline: its client
//! context (rebalance callbacks, per-partition lag) and the conversion of a
//! Kafka message into a [`Record`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use super::fetch::{Fetched, ForwardTarget};
use super::offsets::{CommitStrategy, Committable, PartitionKey};
use super::producer::OLD_VALUE_HEADER;
use super::purge::{Purge, Purger};
use super::{KafkaError, Role, client_config};
use crate::codec::{Format, format_gate};
use crate::pipeline::KafkaSettings;
use crate::record::{Header, Record};

/// What the runtime does when the group moves partitions: on revoke,
/// finish them and commit through `commit` while the consumer still owns
/// them. Partitions are named by source index (`PartitionKey`), never by an
/// rdkafka type.
pub trait RebalanceListener: Send + Sync + 'static {
    fn assigned(&self, partitions: &[PartitionKey]);
    fn revoked(&self, partitions: &[PartitionKey], commit: &dyn CommitStrategy);
}

/// Where a partition's consumption stands, from librdkafka's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Records in the partition not yet committed by this application.
    pub lag: i64,
    /// The offset after the last record handed to weir.
    pub position: i64,
}

/// Per (topic, partition), shared with the progress display.
pub type GroupProgress = Arc<Mutex<BTreeMap<(String, i32), PartitionProgress>>>;

/// The consumer's context: rebalance callbacks and lag statistics.
pub struct GroupContext<L: RebalanceListener> {
    pub listener: L,
    pub progress: GroupProgress,
    /// Where assigned partitions' messages go (see [`super::fetch`]).
    pub forward: ForwardTarget,
    /// Each topic read, by index: the sources', then the internal
    /// (repartition) topics'.
    pub topics: Vec<String>,
    /// How many of `topics` are internal (at the end of the list).
    pub internal: usize,
    /// Deletes committed records of internal topics (when there are any).
    pub purger: Option<Purger>,
}

impl<L: RebalanceListener> GroupContext<L> {
    /// `partitions` as source partitions (topics weir reads only).
    fn keys(&self, partitions: &TopicPartitionList) -> Vec<PartitionKey> {
        partitions
            .elements()
            .iter()
            .filter_map(|e| {
                let source = source_of(&self.topics, e.topic().as_bytes())?;
                Some((source, e.partition()))
            })
            .collect()
    }
}

/// The index of `topic` among those read (validation allows one source
/// per topic; internal topics are named by the application).
pub fn source_of(topics: &[String], topic: &[u8]) -> Option<u16> {
    topics
        .iter()
        .position(|t| t.as_bytes() == topic)
        .map(|i| i as u16)
}

/// Commits through the group consumer (synchronously when asked to wait),
/// unless the group already took the partitions away. Once a synchronous
/// commit is taken, the committed records of internal topics are purged
/// (an asynchronous commit's outcome is not reported for manual commits,
/// so it purges nothing).
pub struct ConsumerCommit<'c, C: ConsumerContext> {
    pub consumer: &'c BaseConsumer<C>,
    /// Each topic read, by index (see [`GroupContext::topics`]).
    pub topics: &'c [String],
    /// How many of `topics` are internal (at the end).
    pub internal: usize,
    pub purger: Option<&'c Purger>,
}

impl<L: RebalanceListener> GroupContext<L> {
    /// Commits through `consumer`, whose context this is.
    pub fn committer<'c>(&'c self, consumer: &'c BaseConsumer<Self>) -> ConsumerCommit<'c, Self> {
        ConsumerCommit {
            consumer,
            topics: &self.topics,
            internal: self.internal,
            purger: self.purger.as_ref(),
        }
    }
}

impl<C: ConsumerContext> ConsumerCommit<'_, C> {
    /// Hands the committed offsets of internal topics to the purger.
    fn purge(&self, offsets: &[Committable]) {
        let Some(purger) = self.purger else {
            return;
        };
        let first_internal = self.topics.len() - self.internal;
        let committed: Purge = offsets
            .iter()
            .filter(|c| c.partition.0 as usize >= first_internal && c.offset > 0)
            .map(|c| {
                let (topic, partition) = c.partition;
                ((self.topics[topic as usize].clone(), partition), c.offset)
            })
            .collect();
        purger.purge(committed);
    }
}

impl<C: ConsumerContext> CommitStrategy for ConsumerCommit<'_, C> {
    fn commit(&self, offsets: &[Committable], wait: bool) -> Result<(), KafkaError> {
        let (consumer, topics) = (self.consumer, self.topics);
        if offsets.is_empty() || consumer.assignment_lost() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for c in offsets {
            let (source, partition) = c.partition;
            tpl.add_partition_offset(
                &topics[source as usize],
                partition,
                Offset::Offset(c.offset),
            )
            .map_err(|e| KafkaError::Commit(e.to_string()))?;
        }
        let mode = if wait {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        consumer
            .commit(&tpl, mode)
            .map_err(|e| KafkaError::Commit(e.to_string()))?;
        if wait {
            self.purge(offsets);
        }
        Ok(())
    }
}

impl<L: RebalanceListener> ClientContext for GroupContext<L> {
    fn stats(&self, statistics: Statistics) {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        progress.clear();
        for (name, topic) in &statistics.topics {
            for (&partition, p) in &topic.partitions {
                if partition >= 0 && p.desired && p.consumer_lag >= 0 {
                    let state = PartitionProgress {
                        lag: p.consumer_lag,
                        position: p.app_offset,
                    };
                    progress.insert((name.clone(), partition), state);
                }
            }
        }
    }
}

impl<L: RebalanceListener> ConsumerContext for GroupContext<L> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions revoked");
                let commit = self.committer(consumer);
                self.listener.revoked(&self.keys(partitions), &commit);
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions assigned");
                self.forward.forward(consumer, partitions);
                self.listener.assigned(&self.keys(partitions));
            }
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
    }
}

/// `orders[0,1] payments[2]`.
pub fn describe(partitions: &TopicPartitionList) -> String {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for e in partitions.elements() {
        by_topic
            .entry(e.topic().to_string())
            .or_default()
            .push(e.partition());
    }
    by_topic
        .iter()
        .map(|(t, ps)| {
            let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{t}[{}]", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Creates the group consumer (not yet subscribed).
pub fn create<L: RebalanceListener>(
    settings: &KafkaSettings,
    bootstrap: &str,
    topics: Vec<String>,
    internal: usize,
    listener: L,
    progress: GroupProgress,
) -> Result<BaseConsumer<GroupContext<L>>, KafkaError> {
    let purger = match internal {
        0 => None,
        _ => Some(Purger::start(settings, bootstrap)?),
    };
    client_config(settings, bootstrap, Role::Consumer)
        .create_with_context(GroupContext {
            listener,
            progress,
            forward: ForwardTarget::default(),
            topics,
            internal,
            purger,
        })
        .map_err(|source| KafkaError::Client {
            role: "consumer",
            source,
        })
}

/// Copies message bytes into shared blocks: one allocation per block
/// rather than two per record, and the records' `Bytes` are slices of it.
#[derive(Default)]
pub struct Arena {
    block: BytesMut,
}

impl Arena {
    const BLOCK: usize = 16 << 10;

    pub fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if self.block.capacity() - self.block.len() < bytes.len() {
            self.block = BytesMut::with_capacity(Self::BLOCK.max(bytes.len()));
        }
        self.block.extend_from_slice(bytes);
        self.block.split().freeze()
    }
}

/// A Kafka message as a record. A `json` value is checked here, while its
/// bytes are still in this core's cache, and marked as known JSON when it
/// passes; one that fails stays unmarked, and the task checks it again and
/// reports it with its topic, partition and offset.
pub fn to_record(
    message: &Fetched<'_>,
    value_format: Format,
    arena: &mut Arena,
    now_ms: i64,
) -> Record {
    let mut headers = Vec::new();
    message.headers(|name, value| {
        headers.push(Header {
            name: String::from_utf8_lossy(name).into_owned(),
            value: value.map(|v| arena.copy(v)),
        })
    });
    // A table update from a repartition topic: its old value.
    let old_value = match headers.iter().position(|h| h.name == OLD_VALUE_HEADER) {
        Some(at) => headers.remove(at).value,
        None => None,
    };
    let value = message.value();
    Record {
        key: message.key().map(|k| arena.copy(k)),
        value: value.map(|v| arena.copy(v)),
        timestamp: message.timestamp().unwrap_or(now_ms),
        headers,
        value_is_json: format_gate::precheck(value, value_format),
        old_value,
    }
}
