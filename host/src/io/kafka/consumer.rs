//! The group consumer behind every Kafka source of a pipeline: its client
//! context (rebalance callbacks, per-partition lag) and the conversion of a
//! Kafka message into a [`Record`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use super::{KafkaError, Role, client_config};
use crate::io::jsonl;
use crate::record::{Header, Record};
use crate::spec::{Format, KafkaSettings};

/// What the runtime does when the group takes partitions away: finish and
/// commit them while the consumer still owns them.
pub trait OnRevoke: Send + Sync + 'static {
    fn revoke(&self, consumer: &BaseConsumer<GroupContext<Self>>, partitions: &TopicPartitionList)
    where
        Self: Sized;
}

/// The consumer's context: rebalance callbacks and lag statistics.
pub struct GroupContext<R: OnRevoke> {
    pub on_revoke: R,
    /// Consumer lag per (topic, partition) from librdkafka's statistics.
    pub lag: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
}

impl<R: OnRevoke> ClientContext for GroupContext<R> {
    fn stats(&self, statistics: Statistics) {
        let mut lag = self.lag.lock().unwrap_or_else(|p| p.into_inner());
        lag.clear();
        for (name, topic) in &statistics.topics {
            for (&partition, p) in &topic.partitions {
                if partition >= 0 && p.desired && p.consumer_lag >= 0 {
                    lag.insert((name.clone(), partition), p.consumer_lag);
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
    lag: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
) -> Result<BaseConsumer<GroupContext<R>>, KafkaError> {
    client_config(settings, bootstrap, Role::Consumer)
        .create_with_context(GroupContext { on_revoke, lag })
        .map_err(|source| KafkaError::Client {
            role: "consumer",
            source,
        })
}

/// A Kafka message as a record, and whether its key and value match the
/// source's formats (the record is returned either way, for the
/// dead-letter sink).
pub fn to_record(
    message: &BorrowedMessage<'_>,
    key_format: Format,
    value_format: Format,
    now_ms: i64,
) -> (Record, Result<(), String>) {
    let key = message.key().map(Bytes::copy_from_slice);
    let value = message.payload().map(Bytes::copy_from_slice);
    let headers = message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    name: h.key.to_string(),
                    value: h.value.map(Bytes::copy_from_slice),
                })
                .collect()
        })
        .unwrap_or_default();
    let record = Record {
        key,
        value,
        timestamp: message.timestamp().to_millis().unwrap_or(now_ms),
        headers,
    };
    let check = |bytes: &Option<Bytes>, format, what| match bytes {
        Some(b) => jsonl::check_format(b, format, what).map_err(|e| e.0),
        None => Ok(()),
    };
    let verdict = check(&record.key, key_format, "key")
        .and_then(|()| check(&record.value, value_format, "value"));
    (record, verdict)
}
