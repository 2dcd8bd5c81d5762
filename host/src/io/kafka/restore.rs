//! Reading a store's changelog partition back into the store: from where
//! the task's `.checkpoint` says its local state is up to (or from the
//! start) to the partition's end as it is when the restore begins. The
//! runtime runs it on a thread of its own per task (see
//! `runtime/state.rs`), with the task's input partitions paused meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::fetch::{FetchQueue, ForwardTarget};
use super::{KafkaError, REQUEST_TIMEOUT, Role, client_config};
use crate::pipeline::KafkaSettings;
use crate::state::restore::Restorer;

/// Records taken from the fetch queue between two looks at `cancel`.
const BATCH: usize = 16_384;
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How a restore ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The store holds the changelog up to this offset, its end when the
    /// restore began (records restored: the second).
    Complete(u64, u64),
    /// `cancel` was set (the task was revoked): what was applied is
    /// recorded, and a later restore resumes from there.
    Cancelled,
}

/// Restores `restorer`'s store from partition `partition` of `topic`.
/// `progress` hears (records restored, records to restore) now and then.
pub fn restore(
    settings: &KafkaSettings,
    bootstrap: &str,
    topic: &str,
    partition: u32,
    mut restorer: Restorer,
    cancel: &AtomicBool,
    mut progress: impl FnMut(u64, u64),
) -> Result<Restored, KafkaError> {
    let failed = |e: String| {
        KafkaError::Consumer(format!(
            "restoring from changelog `{topic}` partition {partition}: {e}"
        ))
    };
    let consumer: BaseConsumer = client_config(settings, bootstrap, Role::Admin)
        .set(
            "client.id",
            format!("{}-restore-{topic}-{partition}", settings.application_id),
        )
        // Not a group member: it reads one partition by assignment and
        // commits nothing (librdkafka wants a group id all the same).
        .set("group.id", format!("{}-restore", settings.application_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // `max.partition.fetch.bytes` stays at librdkafka's 1 MiB: it hands
        // a fetch's records over only once it has decoded all of them, so a
        // restore reading 8 MiB fetches waited 100-260 ms for its first
        // records and finished later (measured, 1M-key store).
        //
        // As the group consumer: librdkafka stops fetching a partition whose
        // prefetch queue is full for a whole second by default, and a
        // restore fills it at once.
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .map_err(|source| KafkaError::Client {
            role: "restore consumer",
            source,
        })?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition as i32, REQUEST_TIMEOUT)
        .map_err(|e| failed(e.to_string()))?;
    let (low, high) = (low.max(0) as u64, high.max(0) as u64);
    // A checkpoint below what compaction or retention left starts at the
    // first record there is.
    let start = restorer.start_offset().unwrap_or(0).max(low);
    if start >= high {
        restorer.finish().map_err(|e| failed(e.to_string()))?;
        return Ok(Restored::Complete(high, 0));
    }
    let total = high - start;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition as i32, Offset::Offset(start as i64))
        .map_err(|e| failed(e.to_string()))?;
    // Read in batches from a queue of our own (see `fetch.rs`), not one
    // `poll` per record: measured on a 1M-record restore, the per-record
    // poll's clock reads and queue visits were a large part of it.
    let target = ForwardTarget::default();
    let mut queue = FetchQueue::new(&consumer, &target).map_err(failed)?;
    target.forward(&consumer, &tpl);
    consumer.assign(&tpl).map_err(|e| failed(e.to_string()))?;
    let mut restored = 0u64;
    let mut last_report = Instant::now();
    let mut stalled_since = Instant::now();
    let mut next = start;
    while next < high {
        if cancel.load(Ordering::Relaxed) {
            restorer.finish().map_err(|e| failed(e.to_string()))?;
            return Ok(Restored::Cancelled);
        }
        let mut error = None;
        let mut taken = 0;
        while taken < BATCH && next < high && error.is_none() {
            let got = queue.consume(Duration::from_millis(100), BATCH - taken, |m| {
                if error.is_some() {
                    return;
                }
                if let Some(e) = m.error() {
                    if !matches!(e, rdkafka::error::KafkaError::PartitionEOF(_)) {
                        error = Some(e.to_string());
                    }
                    return;
                }
                let offset = m.offset().max(0) as u64;
                if offset >= high {
                    next = next.max(high);
                    return;
                }
                next = offset + 1;
                // Stores never log a keyless record; nothing to apply.
                let Some(key) = m.key() else { return };
                match restorer.push(key, m.value(), offset) {
                    Ok(()) => restored += 1,
                    Err(e) => error = Some(e.to_string()),
                }
            });
            if got == 0 {
                break;
            }
            taken += got;
        }
        if let Some(e) = error {
            return Err(failed(e));
        }
        if taken == 0 {
            if stalled_since.elapsed() > REQUEST_TIMEOUT {
                return Err(failed(format!(
                    "no records for {}s at offset {next} of {high}",
                    REQUEST_TIMEOUT.as_secs()
                )));
            }
            continue;
        }
        stalled_since = Instant::now();
        if last_report.elapsed() >= PROGRESS_EVERY {
            progress(restored, total);
            last_report = Instant::now();
        }
    }
    restorer.finish().map_err(|e| failed(e.to_string()))?;
    Ok(Restored::Complete(high, restored))
}
