//! The one producer behind every Kafka sink of a pipeline.
//!
//! Partition tasks hand records straight to librdkafka; its bounded queue is
//! the backpressure (a full queue makes the task wait, so a slow broker
//! slows the consumer rather than growing memory). Each record carries the
//! [`Ack`] of the input batch it came from, released when the broker
//! acknowledges it, so offsets are committed only behind delivered output.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaError, Role, client_config};
use crate::io::ack::Ack;
use crate::record::Record;
use crate::spec::KafkaSettings;

/// Why a record was not taken by the producer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The record itself cannot be produced (too large, bad topic): the
    /// error policy decides.
    #[error("cannot produce to topic `{topic}`: {reason}")]
    Record { topic: String, reason: String },
    /// The run is stopping while the queue was full; the record's batch is
    /// not committed, so it is read again on restart.
    #[error("stopped while waiting for room in the producer queue")]
    Stopped,
    /// The producer cannot go on (fatal idempotence error, missing topic,
    /// authorization): the run stops; no record is let go.
    #[error("producing to topic `{topic}`: {reason}")]
    Producer { topic: String, reason: String },
}

/// Delivery reports: release each record's ack, remember the first failure.
struct Deliveries {
    failure: OnceLock<String>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<Ack>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Arc<Ack>) {
        if let Err((e, message)) = result {
            use rdkafka::Message as _;
            let reason = format!(
                "delivery to topic `{}` partition {} failed: {e}",
                message.topic(),
                message.partition()
            );
            tracing::error!("{reason}");
            ack.fail(reason.clone());
            let _ = self.failure.set(reason);
        }
        ack.release();
    }
}

pub struct KafkaProducer {
    inner: ThreadedProducer<Deliveries>,
}

impl KafkaProducer {
    pub fn new(settings: &KafkaSettings, bootstrap: &str) -> Result<Self, KafkaError> {
        let inner = client_config(settings, bootstrap, Role::Producer)
            .create_with_context(Deliveries {
                failure: OnceLock::new(),
            })
            .map_err(|source| KafkaError::Client {
                role: "producer",
                source,
            })?;
        Ok(KafkaProducer { inner })
    }

    /// Queues `record` for `topic`; `ack` is held until the broker answers.
    /// Waits while the queue is full, unless `stop` is set.
    pub fn send(
        &self,
        topic: &str,
        record: &Record,
        ack: &Arc<Ack>,
        stop: &AtomicBool,
    ) -> Result<(), SendError> {
        let mut base: BaseRecord<'_, [u8], [u8], Arc<Ack>> =
            BaseRecord::with_opaque_to(topic, ack.clone()).timestamp(record.timestamp);
        if let Some(key) = &record.key {
            base = base.key(&key[..]);
        }
        if let Some(value) = &record.value {
            base = base.payload(&value[..]);
        }
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for h in &record.headers {
                headers = headers.insert(KafkaHeader {
                    key: &h.name,
                    value: h.value.as_deref(),
                });
            }
            base = base.headers(headers);
        }
        ack.hold();
        loop {
            match self.inner.send(base) {
                Ok(()) => return Ok(()),
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if stop.load(Ordering::Relaxed) {
                        ack.release();
                        return Err(SendError::Stopped);
                    }
                    base = back;
                    // Serve delivery reports, which make room.
                    self.inner.poll(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    ack.release();
                    let (topic, reason) = (topic.to_string(), e.to_string());
                    // Only what is wrong with this one record goes to the
                    // error policy.
                    let about_the_record = matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidRecord
                        )
                    );
                    return Err(if about_the_record {
                        SendError::Record { topic, reason }
                    } else {
                        SendError::Producer { topic, reason }
                    });
                }
            }
        }
    }

    /// The first delivery that failed for good (after librdkafka's retries).
    pub fn failure(&self) -> Option<String> {
        self.inner.context().failure.get().cloned()
    }

    /// Waits until everything queued is acknowledged (or `timeout` passes).
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        self.inner.flush(timeout).map_err(|e| e.to_string())?;
        match self.failure() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Records queued or in flight.
    pub fn in_flight(&self) -> i32 {
        self.inner.in_flight_count()
    }
}
