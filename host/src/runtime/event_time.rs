//! The event time a task gives its sources' records when the decoder
//! cannot: a source's timestamp extractor plugin (`timestamp: { plugin }`,
//! Kafka Streams' `TimestampExtractor`), or a timestamp field whose source
//! says `on-invalid: partition-time` (which needs the partition's history).
//!
//! It runs on each batch as it reaches the task, before the task merges
//! its inputs by time (Kafka Streams extracts as records enter a
//! partition's queue), so the merge, stream time and windows all see the
//! extracted time. A record without a valid time (the plugin says so, or
//! gives a negative time, as Kafka Streams has it; a field is missing or
//! unreadable) takes its partition's time when the source says
//! `on-invalid: partition-time` and the partition has one (the largest
//! valid time seen there so far, Kafka Streams'
//! `UsePartitionTimeOnInvalidTimestamp`); otherwise it goes to the error
//! policy with the reason. A plugin that breaks (a trap, a timeout) on a
//! record sends that record to the error policy, as a step's would.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::topology::Topology;
use crate::codec::Format;
use crate::codec::extract::Extract;
use crate::operators::OperatorError;
use crate::operators::failure::{Failure, FailureKind};
use crate::operators::plugin_step::{PluginStep, StartError, StepOutput, plugin_failure};
use crate::pipeline::{OnInvalid, TimeFrom};
use crate::record::{Origin, Record};

/// What gives one source's records their time in this task.
enum Extractor {
    /// Only its timestamp field is set.
    Field(Extract),
    Plugin(Box<PluginStep>),
}

struct SourceTime {
    extractor: Extractor,
    on_invalid: OnInvalid,
}

/// A source partition: (source index, partition).
pub(super) type SourcePartition = (u16, u32);

/// The event times of one task's sources.
#[derive(Default)]
pub(super) struct EventTimes {
    /// By source index; `None` where the decoder gave the time.
    sources: Vec<Option<SourceTime>>,
    /// The largest valid time seen so far in each source partition.
    partition_times: BTreeMap<SourcePartition, i64>,
    out: StepOutput,
}

/// What stamping one batch found.
#[derive(Debug, Default)]
pub(super) struct Stamped {
    /// Records without a valid time, in order: to the error policy.
    pub invalid: Vec<Failure>,
    /// Records given their partition's time.
    pub from_partition: u64,
}

impl EventTimes {
    /// The extractors of task `partition`'s sources among `sources` (the
    /// first task gets the plugin instances started while checking).
    pub(super) fn start(
        topo: &Topology,
        sources: impl Iterator<Item = u16>,
    ) -> Result<EventTimes, StartError> {
        let mut times = EventTimes::default();
        for s in sources {
            let Some(event_time) = &topo.pipeline.sources[s as usize].event_time else {
                continue;
            };
            let extractor = match &event_time.from {
                TimeFrom::Field(field) => Extractor::Field(Extract {
                    key: None,
                    timestamp: Some(field.clone()),
                }),
                TimeFrom::Plugin { .. } => {
                    Extractor::Plugin(Box::new(topo.start_extractor(s as usize)?))
                }
            };
            if times.sources.len() <= s as usize {
                times.sources.resize_with(s as usize + 1, || None);
            }
            times.sources[s as usize] = Some(SourceTime {
                extractor,
                on_invalid: event_time.on_invalid,
            });
        }
        Ok(times)
    }

    /// Whether the task gives source `s`'s records their time.
    pub(super) fn applies(&self, s: u16) -> bool {
        self.sources.get(s as usize).is_some_and(Option::is_some)
    }

    /// Gives each of `records` (of source `s`, from `origins`) its time;
    /// those that get none are returned, in order, and keep theirs. An
    /// error: the plugin no longer starts, or the run is stopping.
    pub(super) fn stamp(
        &mut self,
        s: u16,
        records: &mut [Record],
        origins: &[Origin],
    ) -> Result<Stamped, OperatorError> {
        let source = self.sources[s as usize]
            .as_mut()
            .expect("called for a source it applies to");
        // Each record's time, or why it has none.
        let mut times: Vec<Result<i64, Failure>> = Vec::with_capacity(records.len());
        match &mut source.extractor {
            Extractor::Field(field) => {
                for (i, r) in records.iter_mut().enumerate() {
                    times.push(field_time(field, r).map_err(|reason| Failure {
                        input: i as u32,
                        kind: FailureKind::Timestamp,
                        reason,
                    }));
                }
            }
            Extractor::Plugin(plugin) => {
                plugin.process(records, &mut self.out).map_err(|e| {
                    let culprit = e.culprit().cloned();
                    plugin_failure(e, culprit.as_ref(), false)
                })?;
                times.extend((0..records.len()).map(|_| Ok(i64::MIN)));
                for e in self.out.emitted.drain(..) {
                    let time = e.record.expect("an extractor re-stamps").timestamp;
                    times[e.input as usize] = Ok(time);
                }
                for f in self.out.failures.drain(..) {
                    let i = f.input as usize;
                    times[i] = Err(f);
                }
            }
        }
        let mut stamped = Stamped::default();
        for ((record, origin), time) in records.iter_mut().zip(origins).zip(times) {
            let at = (origin.source, origin.partition);
            match time {
                Ok(t) => {
                    record.timestamp = t;
                    let seen = self.partition_times.entry(at).or_insert(t);
                    *seen = (*seen).max(t);
                }
                Err(f) => match self.partition_times.get(&at) {
                    Some(&t)
                        if f.kind == FailureKind::Timestamp
                            && source.on_invalid == OnInvalid::PartitionTime =>
                    {
                        record.timestamp = t;
                        stamped.from_partition += 1;
                    }
                    None if f.kind == FailureKind::Timestamp
                        && source.on_invalid == OnInvalid::PartitionTime =>
                    {
                        stamped.invalid.push(Failure {
                            reason: format!(
                                "{}, and its partition has no time yet to give it (on-invalid: partition-time)",
                                f.reason
                            ),
                            ..f
                        });
                    }
                    _ => stamped.invalid.push(f),
                },
            }
        }
        Ok(stamped)
    }

    /// The partition times, for a checkpoint.
    pub(super) fn partition_times(&self) -> Vec<u8> {
        let times: Vec<PartitionTime> = self
            .partition_times
            .iter()
            .map(|(&(source, partition), &time)| PartitionTime {
                source,
                partition,
                time,
            })
            .collect();
        serde_json::to_vec(&times).expect("partition times serialize")
    }

    /// Goes on from the partition times a checkpoint kept.
    pub(super) fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let times: Vec<PartitionTime> = serde_json::from_slice(bytes)
            .map_err(|e| format!("the partition times it kept cannot be read ({e})"))?;
        self.partition_times = times
            .into_iter()
            .map(|t| ((t.source, t.partition), t.time))
            .collect();
        Ok(())
    }

    /// Whether it keeps partition times (only then are they checkpointed).
    pub(super) fn is_empty(&self) -> bool {
        self.sources.iter().all(Option::is_none)
    }

    /// How many times its plugins' instances were replaced.
    pub(super) fn restarts(&self) -> u64 {
        self.sources
            .iter()
            .flatten()
            .map(|s| match &s.extractor {
                Extractor::Plugin(p) => p.restarts(),
                Extractor::Field(_) => 0,
            })
            .sum()
    }
}

#[derive(Serialize, Deserialize)]
struct PartitionTime {
    source: u16,
    partition: u32,
    time: i64,
}

/// A record's time from a field of its value (read as the decoder reads
/// it); negative is invalid, as a Kafka Streams extractor's would be.
fn field_time(field: &Extract, record: &mut Record) -> Result<i64, String> {
    field
        .apply(record, Format::Json)
        .map_err(|e| e.to_string())?;
    match record.timestamp {
        t if t < 0 => Err(format!(
            "timestamp field `{}` is negative ({t} ms), which is invalid",
            field.timestamp.as_ref().expect("a timestamp field").field
        )),
        t => Ok(t),
    }
}
