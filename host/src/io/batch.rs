//! What sources hand to tasks: records of one input partition, in order,
//! with where each came from.

use std::sync::Arc;

use super::ack::Ack;
use crate::operators::FailureKind;
use crate::record::{Origin, Record};

/// Which input of a task a batch arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputId {
    /// A source of the pipeline, by index.
    Source(u16),
    /// Records another sub-topology's tasks re-partitioned to this one,
    /// by the index of the repartition step.
    Repartition(u16),
}

/// Records for one task from one of its inputs.
#[derive(Debug)]
pub struct Batch {
    pub input: InputId,
    pub records: Vec<Record>,
    pub origins: Vec<Origin>,
    /// Input that could not be decoded (under `skip` or `dead-letter`).
    pub rejects: Vec<Reject>,
    /// Tracks everything produced from the batch, when its offsets are to
    /// be committed (Kafka sources); the task releases its hold when done.
    pub ack: Option<Arc<Ack>>,
    /// The records are raw bytes not yet held to the source's formats
    /// (Kafka): the task does that through the format gate.
    pub needs_format_check: bool,
    /// For records another task re-partitioned in process, that task's
    /// partition (an exactly-once run takes them in the order of their
    /// input lines, whichever task sent them; `merge.rs`).
    pub from: Option<u32>,
}

impl Batch {
    /// An empty batch with room for `capacity` records.
    pub fn new(input: InputId, capacity: usize) -> Batch {
        Batch {
            input,
            records: Vec::with_capacity(capacity),
            origins: Vec::with_capacity(capacity),
            rejects: Vec::new(),
            ack: None,
            needs_format_check: false,
            from: None,
        }
    }
}

#[cfg(test)]
impl Batch {
    /// Empty records with these timestamps, at offsets 0, 1, ... of
    /// partition 0 (for tests of what orders records by time).
    pub fn of_timestamps(input: InputId, timestamps: &[i64]) -> Batch {
        let mut b = Batch::new(input, timestamps.len());
        for (i, &timestamp) in timestamps.iter().enumerate() {
            b.records.push(Record {
                timestamp,
                ..Record::default()
            });
            b.origins.push(Origin {
                source: 0,
                partition: 0,
                offset: i as u64,
            });
        }
        b
    }
}

/// Input that is not a valid record: a line that is not JSON, or a Kafka
/// record whose key or value does not match the source's format.
#[derive(Debug, Clone)]
pub struct Reject {
    pub origin: Origin,
    /// What was read, as a record: a bad line is the value of a record
    /// without key; a Kafka record is kept as it came.
    pub record: Record,
    pub reason: String,
    /// [`FailureKind::Decode`] for input that is not a record;
    /// [`FailureKind::Timestamp`] for a record without a valid time.
    pub kind: FailureKind,
}
