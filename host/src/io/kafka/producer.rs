//! The one producer behind every Kafka sink of a pipeline.
//!
//! Partition tasks hand records straight to librdkafka; its bounded queue is
//! the backpressure (a full queue makes the task wait, so a slow broker
//! slows the consumer rather than growing memory). Each record carries the
//! [`Ack`] of the input batch it came from, released when the broker
//! acknowledges it, so offsets are committed only behind delivered output.

use std::ffi::{CString, c_char, c_void};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::bindings as rd;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::IntoOpaque;

use super::{KafkaError, Role, client_config};
use crate::io::ack::Ack;
use crate::pipeline::KafkaSettings;
use crate::record::Record;

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

/// A sink topic's librdkafka handle, looked up once. Producing by handle
/// spares librdkafka a topic lookup under a lock, and rdkafka a C string,
/// for every record.
struct TopicHandle {
    name: String,
    ptr: NonNull<rd::rd_kafka_topic_t>,
}

// SAFETY: librdkafka topic handles are reference counted and may be used
// from any thread.
unsafe impl Send for TopicHandle {}
unsafe impl Sync for TopicHandle {}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: created by `rd_kafka_topic_new`, released once, while the
        // producer still lives (`KafkaProducer` drops its topics first).
        unsafe { rd::rd_kafka_topic_destroy(self.ptr.as_ptr()) };
    }
}

pub struct KafkaProducer {
    // Before `inner`: topic handles are released before the client.
    topics: Vec<TopicHandle>,
    inner: ThreadedProducer<Deliveries>,
}

impl KafkaProducer {
    /// The producer, with a handle for each of `topics` (the Kafka sinks').
    pub fn new(
        settings: &KafkaSettings,
        bootstrap: &str,
        topics: &[&str],
    ) -> Result<Self, KafkaError> {
        let inner: ThreadedProducer<Deliveries> =
            client_config(settings, bootstrap, Role::Producer)
                .create_with_context(Deliveries {
                    failure: OnceLock::new(),
                })
                .map_err(|source| KafkaError::Client {
                    role: "producer",
                    source,
                })?;
        let mut handles = Vec::new();
        for &name in topics {
            if handles.iter().any(|t: &TopicHandle| t.name == name) {
                continue;
            }
            let c_name = CString::new(name).map_err(|_| KafkaError::TopicHandle {
                topic: name.to_string(),
                reason: "the name holds a NUL byte".into(),
            })?;
            // SAFETY: a live client; no topic configuration (the client's
            // applies).
            let ptr = unsafe {
                rd::rd_kafka_topic_new(
                    inner.client().native_ptr(),
                    c_name.as_ptr(),
                    ptr::null_mut(),
                )
            };
            let ptr = NonNull::new(ptr).ok_or_else(|| KafkaError::TopicHandle {
                topic: name.to_string(),
                reason: "librdkafka could not create a topic handle".into(),
            })?;
            handles.push(TopicHandle {
                name: name.to_string(),
                ptr,
            });
        }
        Ok(KafkaProducer {
            topics: handles,
            inner,
        })
    }

    /// Queues a sink's `record` for `topic`, in the partition the
    /// partitioner picks (the Java client's murmur2 of the key); `ack` is
    /// held until the broker answers. Waits while the queue is full,
    /// unless `stop` is set. A table update's old value is not written.
    pub fn send(
        &self,
        topic: &str,
        record: &Record,
        ack: &Arc<Ack>,
        stop: &AtomicBool,
    ) -> Result<(), SendError> {
        self.produce_record(topic, None, record, Headers::of(record, false), ack, stop)
    }

    /// Queues a record for an internal topic (repartition, changelog), to
    /// the `partition` the runtime picked (whatever partitioner the file
    /// configures); a table update's old value travels in header
    /// [`OLD_VALUE_HEADER`].
    pub fn send_to(
        &self,
        topic: &str,
        partition: u32,
        record: &Record,
        ack: &Arc<Ack>,
        stop: &AtomicBool,
    ) -> Result<(), SendError> {
        let headers = Headers::of(record, true);
        self.produce_record(topic, Some(partition), record, headers, ack, stop)
    }

    fn produce_record(
        &self,
        topic: &str,
        partition: Option<u32>,
        record: &Record,
        headers: Headers,
        ack: &Arc<Ack>,
        stop: &AtomicBool,
    ) -> Result<(), SendError> {
        // RD_KAFKA_PARTITION_UA: the partitioner picks.
        let partition = partition.map_or(-1, |p| p as i32);
        let Some(handle) = self.topics.iter().find(|t| t.name == topic) else {
            return Err(SendError::Producer {
                topic: topic.to_string(),
                reason: "not a topic this producer was set up for".into(),
            });
        };
        ack.hold();
        // The delivery report hands this back to `Deliveries::delivery`.
        let opaque = ack.clone().into_ptr();
        loop {
            let code = produce(&self.inner, handle, partition, record, &headers, opaque);
            if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                // librdkafka owns the headers now.
                std::mem::forget(headers);
                return Ok(());
            }
            let e: RDKafkaErrorCode = code.into();
            if e == RDKafkaErrorCode::QueueFull && !stop.load(Ordering::Relaxed) {
                // The producer's own thread serves delivery reports, which
                // make room; this only waits a little before trying again.
                self.inner.poll(Duration::from_millis(5));
                continue;
            }
            // SAFETY: librdkafka did not take the message, so the opaque is
            // still ours (made by `into_ptr` above).
            drop(unsafe { Arc::<Ack>::from_ptr(opaque) });
            ack.release();
            if e == RDKafkaErrorCode::QueueFull {
                return Err(SendError::Stopped);
            }
            let (topic, reason) = (topic.to_string(), e.to_string());
            // Only what is wrong with this one record goes to the error
            // policy.
            let about_the_record = matches!(
                e,
                RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidRecord
            );
            return Err(if about_the_record {
                SendError::Record { topic, reason }
            } else {
                SendError::Producer { topic, reason }
            });
        }
    }

    /// The first delivery that failed for good (after librdkafka's retries).
    pub fn failure(&self) -> Option<String> {
        self.inner.context().failure.get().cloned()
    }

    /// The end offset (high watermark) of `topic`'s `partition`: the
    /// offset the next record written there gets.
    pub fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, String> {
        let (_, high) = self
            .inner
            .client()
            .fetch_watermarks(topic, partition as i32, super::REQUEST_TIMEOUT)
            .map_err(|e| {
                format!("cannot read the end offset of topic `{topic}` partition {partition}: {e}")
            })?;
        Ok(high.max(0) as u64)
    }

    /// Waits until everything queued is acknowledged (or `timeout` passes).
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        self.inner.flush(timeout).map_err(|e| e.to_string())?;
        match self.failure() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

/// The header a table update's old value crosses a repartition topic in
/// (the record's value is the new one); the reader puts it back into
/// [`Record::old_value`].
pub const OLD_VALUE_HEADER: &str = "weir.old-value";

/// A record's headers as librdkafka's list, or none.
struct Headers(*mut rd::rd_kafka_headers_t);

impl Headers {
    /// The record's headers, and its old value when `old_value` says so
    /// and it has one.
    fn of(record: &Record, old_value: bool) -> Headers {
        let old = record.old_value.as_ref().filter(|_| old_value);
        if record.headers.is_empty() && old.is_none() {
            return Headers(ptr::null_mut());
        }
        let named = record
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_ref()));
        let old = old.map(|v| (OLD_VALUE_HEADER, Some(v)));
        // SAFETY: a new list, filled with copies of each name and value
        // (librdkafka copies them in `rd_kafka_header_add`).
        unsafe {
            let list = rd::rd_kafka_headers_new(record.headers.len() + 1);
            for (name, value) in named.chain(old) {
                let (value, size) = match value {
                    Some(v) => (v.as_ptr().cast::<c_void>(), v.len() as isize),
                    None => (ptr::null(), 0),
                };
                rd::rd_kafka_header_add(
                    list,
                    name.as_ptr().cast::<c_char>(),
                    name.len() as isize,
                    value,
                    size,
                );
            }
            Headers(list)
        }
    }
}

impl Drop for Headers {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: ours (not handed to librdkafka, which would have
            // taken it and been forgotten).
            unsafe { rd::rd_kafka_headers_destroy(self.0) };
        }
    }
}

/// One `rd_kafka_producev` call: the record's bytes are copied by
/// librdkafka; on success it owns `headers` and `opaque`.
fn produce(
    producer: &ThreadedProducer<Deliveries>,
    topic: &TopicHandle,
    partition: i32,
    record: &Record,
    headers: &Headers,
    opaque: *mut c_void,
) -> rd::rd_kafka_resp_err_t {
    use rd::rd_kafka_vtype_t::*;
    let bytes = |b: &Option<bytes::Bytes>| match b {
        Some(b) => (b.as_ptr() as *mut c_void, b.len()),
        None => (ptr::null_mut(), 0),
    };
    let (value, value_len) = bytes(&record.value);
    let (key, key_len) = bytes(&record.key);
    // SAFETY: a live client and topic handle; key and value outlive the
    // call (librdkafka copies them: RD_KAFKA_MSG_F_COPY); each argument has
    // the C type its tag announces.
    unsafe {
        rd::rd_kafka_producev(
            producer.client().native_ptr(),
            RD_KAFKA_VTYPE_RKT,
            topic.ptr.as_ptr(),
            RD_KAFKA_VTYPE_PARTITION,
            partition,
            RD_KAFKA_VTYPE_MSGFLAGS,
            rd::RD_KAFKA_MSG_F_COPY,
            RD_KAFKA_VTYPE_VALUE,
            value,
            value_len,
            RD_KAFKA_VTYPE_KEY,
            key,
            key_len,
            RD_KAFKA_VTYPE_OPAQUE,
            opaque,
            RD_KAFKA_VTYPE_TIMESTAMP,
            record.timestamp,
            RD_KAFKA_VTYPE_HEADERS,
            headers.0,
            RD_KAFKA_VTYPE_END,
        )
    }
}
