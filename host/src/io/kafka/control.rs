//! The application's control topic, `<application-id>-weir-control`: where
//! the members of a Kafka application keep their hot swaps, so that every
//! member, and every member that starts later, runs the same versions, and
//! what each of its stores holds (`runtime::journal::kafka` says what the
//! messages hold).
//!
//! One partition (one order for every swap), compacted (the latest message
//! per step is kept forever, older ones go), created by weir when missing.
//! A message carries a whole component, so the topic, the producer and the
//! consumer all take messages up to [`MAX_MESSAGE_BYTES`], rather than
//! splitting a component into chunks: one message is written or not at
//! all, and compaction keeps exactly the latest swap of each step.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::topics::{self, TopicUse};
use super::{KafkaError, REQUEST_TIMEOUT, Role, client_config};
use crate::pipeline::{KafkaSettings, Topic, TopicCreate};

/// The largest control message: a component of up to 60 MiB (an 18 MB
/// Python component with room to spare) plus its record.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The control topic of application `application_id`.
pub fn topic_name(application_id: &str) -> String {
    format!("{application_id}-weir-control")
}

/// The control topic's keys of store formats: `weir.store/<store id>`
/// (step names starting with `weir.` are refused, so no swap record
/// shares them).
pub const STORE_FORMAT_PREFIX: &str = "weir.store/";

/// The control topic's key of what store `store` holds.
pub fn store_format_key(store: &str) -> String {
    format!("{STORE_FORMAT_PREFIX}{store}")
}

/// The topic as weir creates it: 1 partition, compacted, the broker's
/// default replication factor, messages up to [`MAX_MESSAGE_BYTES`].
fn topic(application_id: &str) -> Topic {
    Topic {
        name: topic_name(application_id),
        create: Some(TopicCreate {
            partitions: 1,
            // -1: the broker's `default.replication.factor`.
            replication_factor: -1,
            config: vec![
                ("cleanup.policy".into(), "compact".into()),
                ("max.message.bytes".into(), MAX_MESSAGE_BYTES.to_string()),
            ],
        }),
    }
}

/// A message of the control topic.
#[derive(Debug, Clone)]
pub struct ControlMessage {
    pub key: String,
    /// `None`: a tombstone (the step's record was removed).
    pub value: Option<Vec<u8>>,
    pub offset: i64,
}

/// Delivery reports of the control producer: the offset (or failure) of
/// the message last written.
struct Delivered {
    last: Mutex<Option<Result<i64, String>>>,
}

impl ClientContext for Delivered {}

impl ProducerContext for Delivered {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let outcome = match result {
            Ok(m) => Ok(m.offset()),
            Err((e, _)) => Err(e.to_string()),
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    }
}

/// The control topic, read from its start and written by this member.
pub struct ControlTopic {
    name: String,
    consumer: BaseConsumer,
    producer: ThreadedProducer<Delivered>,
}

impl ControlTopic {
    /// Creates the topic when it is missing and opens it, reading from the
    /// start.
    pub fn open(settings: &KafkaSettings, bootstrap: &str) -> Result<ControlTopic, KafkaError> {
        let topic = topic(&settings.application_id);
        let name = topic.name.clone();
        topics::ensure(
            settings,
            bootstrap,
            &[TopicUse {
                topic: &topic,
                user: "the application's swap records".into(),
            }],
        )?;
        let base = || {
            let mut c: ClientConfig = client_config(settings, bootstrap, Role::Admin);
            c.set("client.id", &name);
            c
        };
        let fetch = MAX_MESSAGE_BYTES + (1 << 20);
        let consumer: BaseConsumer = base()
            // Not a group member: it reads the one partition by assignment
            // and commits nothing (librdkafka wants a group id all the same).
            .set("group.id", &name)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.max.bytes", fetch.to_string())
            .set("max.partition.fetch.bytes", fetch.to_string())
            .set("receive.message.max.bytes", (fetch + (1 << 20)).to_string())
            .create()
            .map_err(|source| KafkaError::Client {
                role: "control topic consumer",
                source,
            })?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&name, 0, Offset::Beginning)
            .map_err(|e| KafkaError::Consumer(e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| KafkaError::Consumer(e.to_string()))?;
        let producer: ThreadedProducer<Delivered> = base()
            .set("enable.idempotence", "true")
            .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string())
            .set("compression.type", "zstd")
            .set("linger.ms", "0")
            .create_with_context(Delivered {
                last: Mutex::new(None),
            })
            .map_err(|source| KafkaError::Client {
                role: "control topic producer",
                source,
            })?;
        Ok(ControlTopic {
            name,
            consumer,
            producer,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every message from where reading stands to the end of the topic as
    /// it is now.
    pub fn read_to_end(&mut self) -> Result<Vec<ControlMessage>, KafkaError> {
        let failed = |e: String| KafkaError::Consumer(format!("topic `{}`: {e}", self.name));
        let (_, high) = self
            .consumer
            .fetch_watermarks(&self.name, 0, REQUEST_TIMEOUT)
            .map_err(|e| failed(e.to_string()))?;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut out = Vec::new();
        let mut next = self.position();
        while next < high {
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "read up to offset {next} of {high} within {}s",
                    REQUEST_TIMEOUT.as_secs()
                )));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    out.push(to_message(&m));
                }
                Some(Err(e)) => return Err(failed(e.to_string())),
                // Compaction leaves gaps: the end may be past the last message.
                None => next = next.max(self.position()),
            }
        }
        Ok(out)
    }

    /// The next offset the consumer reads (0 before the first message).
    fn position(&self) -> i64 {
        self.consumer
            .position()
            .ok()
            .and_then(|tpl| match tpl.find_partition(&self.name, 0)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// The messages that arrived since last asked, without waiting.
    pub fn poll(&mut self) -> Result<Vec<ControlMessage>, KafkaError> {
        let mut out = Vec::new();
        while let Some(m) = self.consumer.poll(Duration::ZERO) {
            let m = m.map_err(|e| KafkaError::Consumer(format!("topic `{}`: {e}", self.name)))?;
            out.push(to_message(&m));
        }
        Ok(out)
    }

    /// Writes a message (`None`: a tombstone) and waits until the broker
    /// has it; returns its offset.
    pub fn write(&self, key: &str, value: Option<&[u8]>) -> Result<i64, KafkaError> {
        let failed = |reason: String| KafkaError::Producer {
            topic: self.name.clone(),
            reason,
        };
        *self.last() = None;
        let mut record: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(&self.name).partition(0).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.producer
            .send(record)
            .map_err(|(e, _)| failed(e.to_string()))?;
        self.producer
            .flush(REQUEST_TIMEOUT)
            .map_err(|e| failed(e.to_string()))?;
        match self.last().take() {
            Some(Ok(offset)) => Ok(offset),
            Some(Err(reason)) => Err(failed(reason)),
            None => Err(failed("no delivery report".into())),
        }
    }

    fn last(&self) -> std::sync::MutexGuard<'_, Option<Result<i64, String>>> {
        self.producer
            .context()
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn to_message(m: &rdkafka::message::BorrowedMessage<'_>) -> ControlMessage {
    ControlMessage {
        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
        value: m.payload().map(<[u8]>::to_vec),
        offset: m.offset(),
    }
}
