//! Reading fetched messages in batches, from a queue of weir's own.
//!
//! rdkafka's `BaseConsumer::poll` hands over one message per call, each
//! wrapped in a reference-counted event, with clock reads and a queue visit
//! per message: on a busy consumer that was a third of the consumer thread.
//! librdkafka can instead forward each partition's fetch queue to a queue
//! the application owns and hand over up to a whole batch per call
//! (`rd_kafka_consume_batch_queue`). The consumer's own queue then carries
//! only events (rebalances, statistics, errors, commit results), which
//! rdkafka's `poll` still serves.
//!
//! Forwarding is set as partitions are assigned, before the assignment
//! starts fetching, so every message of a partition comes through one
//! queue, in offset order. When partitions are revoked, librdkafka stops
//! their fetchers, undoes the forwarding, and drops their messages still
//! queued (they are read again by the next owner from the committed
//! offset).
//!
//! This and the producer (which produces by topic handle) are the two
//! places that use librdkafka's C API directly.

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError as ClientError;
use rdkafka::message::BorrowedMessage;

/// Where assigned partitions forward their messages: set while a
/// [`FetchQueue`] exists, null otherwise (then messages stay on the
/// consumer's own queue and `poll` returns them). Forwarding must be set on
/// every assignment: librdkafka undoes it when a partition is revoked.
#[derive(Default)]
pub struct ForwardTarget(AtomicPtr<rd::rd_kafka_queue_t>);

impl ForwardTarget {
    /// Forwards the fetch queue of each of `partitions` to the fetch queue.
    /// Called as partitions are assigned, before fetching starts.
    pub fn forward<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        partitions: &TopicPartitionList,
    ) {
        let target = self.0.load(Ordering::Acquire);
        if target.is_null() {
            return;
        }
        let client = consumer.client().native_ptr();
        for e in partitions.elements() {
            let Ok(topic) = CString::new(e.topic()) else {
                continue;
            };
            // SAFETY: `client` is the live consumer's handle; the returned
            // queue handle is released right away (forwarding is a property
            // of the partition's queue, not of the handle).
            unsafe {
                let queue = rd::rd_kafka_queue_get_partition(client, topic.as_ptr(), e.partition());
                match NonNull::new(queue) {
                    Some(queue) => {
                        rd::rd_kafka_queue_forward(queue.as_ptr(), target);
                        rd::rd_kafka_queue_destroy(queue.as_ptr());
                    }
                    // Only when librdkafka cannot create the partition;
                    // left unforwarded, it delivers through `poll`.
                    None => tracing::warn!(
                        topic = e.topic(),
                        partition = e.partition(),
                        "cannot forward the partition's messages; reading them one at a time"
                    ),
                }
            }
        }
    }
}

/// The queue every assigned partition forwards to, read in batches.
pub struct FetchQueue<'c> {
    queue: NonNull<rd::rd_kafka_queue_t>,
    target: &'c ForwardTarget,
    slots: Vec<*mut rd::rd_kafka_message_t>,
}

impl<'c> FetchQueue<'c> {
    /// Creates the queue and makes it the target of later assignments.
    /// Partitions already assigned keep delivering through `poll`.
    pub fn new<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        target: &'c ForwardTarget,
    ) -> Result<Self, String> {
        // SAFETY: the consumer's handle is live; the queue is destroyed in
        // `drop`, which the borrow of `target` (inside the consumer's
        // context) orders before the consumer's own destruction.
        let queue = unsafe { rd::rd_kafka_queue_new(consumer.client().native_ptr()) };
        let queue = NonNull::new(queue).ok_or("librdkafka could not create a queue")?;
        target.0.store(queue.as_ptr(), Ordering::Release);
        Ok(FetchQueue {
            queue,
            target,
            slots: Vec::new(),
        })
    }

    /// Hands up to `max` messages to `each`, waiting up to `timeout` for the
    /// first; returns how many there were.
    pub fn consume(
        &mut self,
        timeout: Duration,
        max: usize,
        mut each: impl FnMut(&Fetched<'_>),
    ) -> usize {
        self.slots.resize(max, ptr::null_mut());
        let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `slots` has room for `max` pointers; librdkafka fills the
        // first `n` with messages that are ours until destroyed below.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                self.slots.as_mut_ptr(),
                max,
            )
        };
        let n = n.max(0) as usize;
        for &message in &self.slots[..n] {
            // SAFETY: a message librdkafka handed over, destroyed once,
            // after the last use of its borrow.
            unsafe {
                each(&Fetched(&*message));
                rd::rd_kafka_message_destroy(message);
            }
        }
        n
    }
}

impl Drop for FetchQueue<'_> {
    fn drop(&mut self) {
        self.target.0.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: created in `new`, destroyed once. Partitions still
        // forwarding to it drop their messages from now on; they stop
        // forwarding when the consumer closes.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// One consumed message (or a consumer error about a partition), borrowed
/// from librdkafka.
pub struct Fetched<'m>(&'m rd::rd_kafka_message_t);

impl<'m> Fetched<'m> {
    /// A message `poll` returned (from a partition that could not be
    /// forwarded), read the same way.
    pub fn of(message: &'m BorrowedMessage<'_>) -> Self {
        // SAFETY: a borrowed message is live while borrowed.
        Fetched(unsafe { &*message.ptr() })
    }

    /// Set when this is an error about the partition rather than a message.
    pub fn error(&self) -> Option<ClientError> {
        let code = self.0.err;
        (code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| {
            if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF {
                ClientError::PartitionEOF(self.0.partition)
            } else {
                ClientError::MessageConsumption(code.into())
            }
        })
    }

    /// The topic's name, as bytes (empty for an error message that names
    /// no topic).
    pub fn topic(&self) -> &'m [u8] {
        if self.0.rkt.is_null() {
            return &[];
        }
        // SAFETY: a consumed message's topic handle, checked above, lives as
        // long as it does and names the topic with a NUL-terminated string.
        unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.0.rkt)).to_bytes() }
    }

    pub fn partition(&self) -> i32 {
        self.0.partition
    }

    pub fn offset(&self) -> i64 {
        self.0.offset
    }

    pub fn key(&self) -> Option<&'m [u8]> {
        // SAFETY: librdkafka's key pointer and length describe one buffer.
        unsafe { slice(self.0.key, self.0.key_len) }
    }

    pub fn value(&self) -> Option<&'m [u8]> {
        // SAFETY: librdkafka's payload pointer and length describe one buffer.
        unsafe { slice(self.0.payload, self.0.len) }
    }

    /// The record's timestamp in milliseconds, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a live message.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.0, &mut kind) };
        (ts != -1 && kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
            .then_some(ts)
    }

    /// Calls `each` with every header's name and value, in order. Names
    /// need not be UTF-8 on the wire: they are handed over as bytes (up to
    /// a NUL byte, if one has any: librdkafka gives names as C strings).
    pub fn headers(&self, mut each: impl FnMut(&[u8], Option<&[u8]>)) {
        let mut headers = ptr::null_mut();
        // SAFETY: a live message; the headers belong to it.
        let found = unsafe { rd::rd_kafka_message_headers(self.0, &mut headers) };
        if found != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return;
        }
        for index in 0.. {
            let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) =
                (ptr::null(), ptr::null(), 0);
            // SAFETY: `headers` is the message's; librdkafka sets the
            // pointers to a NUL-terminated name and a value buffer.
            let got = unsafe {
                rd::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
            };
            if got != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                break;
            }
            // SAFETY: as above.
            let (name, value) = unsafe { (CStr::from_ptr(name).to_bytes(), slice(value, size)) };
            each(name, value);
        }
    }
}

/// # Safety
/// `data` is null or points to `len` readable bytes.
unsafe fn slice<'a>(data: *const c_void, len: usize) -> Option<&'a [u8]> {
    (!data.is_null()).then(|| unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}
