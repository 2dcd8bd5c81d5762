//! The group consumer behind every Kafka source of a pipeline: its client
//! context (rebalance callbacks, per-partition lag) and the conversion of a
//! Kafka message into a [`Record`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use super::fetch::{Fetched, ForwardTarget};
use super::{KafkaError, Role, client_config};
use crate::io::json_syntax;
use crate::io::source::now_ms;
use crate::record::{Header, Record};
use crate::spec::{Format, KafkaSettings};

/// What the runtime does when the group takes partitions away: finish and
/// commit them while the consumer still owns them.
pub trait OnRevoke: Send + Sync + 'static {
    fn revoke(&self, consumer: &BaseConsumer<GroupContext<Self>>, partitions: &TopicPartitionList)
    where
        Self: Sized;
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
pub struct GroupContext<R: OnRevoke> {
    pub on_revoke: R,
    pub progress: GroupProgress,
    /// Where assigned partitions' messages go (see [`super::fetch`]).
    pub forward: ForwardTarget,
}

impl<R: OnRevoke> ClientContext for GroupContext<R> {
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

impl<R: OnRevoke> ConsumerContext for GroupContext<R> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions revoked");
                self.on_revoke.revoke(consumer, partitions);
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions assigned");
                self.forward.forward(consumer, partitions);
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
pub fn create<R: OnRevoke>(
    settings: &KafkaSettings,
    bootstrap: &str,
    on_revoke: R,
    progress: GroupProgress,
) -> Result<BaseConsumer<GroupContext<R>>, KafkaError> {
    client_config(settings, bootstrap, Role::Consumer)
        .create_with_context(GroupContext {
            on_revoke,
            progress,
            forward: ForwardTarget::default(),
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
pub fn to_record(message: &Fetched<'_>, value_format: Format, arena: &mut Arena) -> Record {
    let mut headers = Vec::new();
    message.headers(|name, value| {
        headers.push(Header {
            name: String::from_utf8_lossy(name).into_owned(),
            value: value.map(|v| arena.copy(v)),
        })
    });
    let value = message.value();
    Record {
        key: message.key().map(|k| arena.copy(k)),
        value: value.map(|v| arena.copy(v)),
        timestamp: message.timestamp().unwrap_or_else(now_ms),
        headers,
        value_is_json: value_format == Format::Json
            && value.is_some_and(|v| json_syntax::check(v).is_ok()),
    }
}
