//! Reading a store's changelog partition back into the store: from where
//! the task's `.checkpoint` says its local state is up to (or from the
//! start) to the partition's end as it is when the restore begins. The
//! runtime runs it on a thread of its own per task (see
//! `runtime/state.rs`), with the task's input partitions paused meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{KafkaError, REQUEST_TIMEOUT, Role, client_config};
use crate::pipeline::KafkaSettings;
use crate::state::changelog::ChangelogRecord;
use crate::state::restore::Restorer;

/// Records applied to the store with one write.
const APPLY_BATCH: usize = 4096;
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
    consumer.assign(&tpl).map_err(|e| failed(e.to_string()))?;
    let mut restored = 0u64;
    let mut last_report = Instant::now();
    let mut stalled_since = Instant::now();
    let mut next = start;
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(APPLY_BATCH);
    let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(APPLY_BATCH);
    let mut offsets: Vec<u64> = Vec::with_capacity(APPLY_BATCH);
    while next < high {
        if cancel.load(Ordering::Relaxed) {
            restorer.finish().map_err(|e| failed(e.to_string()))?;
            return Ok(Restored::Cancelled);
        }
        keys.clear();
        values.clear();
        offsets.clear();
        while keys.len() < APPLY_BATCH && next < high {
            let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
                break;
            };
            let message = polled.map_err(|e| failed(e.to_string()))?;
            let offset = message.offset().max(0) as u64;
            next = offset + 1;
            if offset >= high {
                break;
            }
            let Some(key) = message.key() else {
                // Stores never log a keyless record; nothing to apply.
                continue;
            };
            keys.push(key.to_vec());
            values.push(message.payload().map(<[u8]>::to_vec));
            offsets.push(offset);
        }
        if keys.is_empty() {
            if stalled_since.elapsed() > REQUEST_TIMEOUT {
                return Err(failed(format!(
                    "no records for {}s at offset {next} of {high}",
                    REQUEST_TIMEOUT.as_secs()
                )));
            }
            continue;
        }
        stalled_since = Instant::now();
        let records: Vec<ChangelogRecord<'_>> = keys
            .iter()
            .zip(&values)
            .zip(&offsets)
            .map(|((key, value), &offset)| ChangelogRecord {
                key,
                value: value.as_deref(),
                offset,
            })
            .collect();
        restorer
            .apply(&records)
            .map_err(|e| failed(e.to_string()))?;
        restored += records.len() as u64;
        if last_report.elapsed() >= PROGRESS_EVERY {
            progress(restored, total);
            last_report = Instant::now();
        }
    }
    restorer.finish().map_err(|e| failed(e.to_string()))?;
    Ok(Restored::Complete(high, restored))
}
