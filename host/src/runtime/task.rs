//! A partition task: owns one instance of every step and pushes each batch
//! from its sources through the topology to the sinks, applying the error
//! policy to every record that fails. One task per partition, as in Kafka
//! Streams, so Kafka partitions map onto tasks directly.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crossbeam_channel::{Receiver, Sender};

use super::RunError;
use super::topology::{Target, Topology};
use crate::io::ack::Ack;
use crate::io::jsonl;
use crate::io::kafka::producer::{KafkaProducer, SendError};
use crate::io::sink::SinkChunk;
use crate::io::source::{Reject, SourceBatch};
use crate::metrics::Metrics;
use crate::operators::failure::Incident;
use crate::operators::{FailureKind, PluginStep, StepOutput};
use crate::record::{Origin, Record};
use crate::spec::{ErrorPolicy, Format, SourceKind};

/// Encoded sink bytes are handed over once they reach this size.
const SINK_CHUNK: usize = 256 << 10;

/// Where a task sends what reaches one sink.
#[derive(Clone)]
pub enum SinkPort<'t> {
    /// JSON lines, encoded here and written by the sink's own thread.
    Lines(Sender<SinkChunk>),
    /// A Kafka topic, through the pipeline's producer.
    Kafka {
        producer: &'t KafkaProducer,
        topic: &'t str,
    },
}

enum SinkState<'t> {
    Lines(SinkBuffer),
    Kafka {
        producer: &'t KafkaProducer,
        topic: &'t str,
    },
}

struct SinkBuffer {
    tx: Sender<SinkChunk>,
    chunk: SinkChunk,
    /// Per record in `chunk`: where its line ends, and where it came from,
    /// so the `fail` policy can take back what later records produced.
    marks: Vec<(usize, Origin)>,
}

impl SinkBuffer {
    /// Drops the records that came from `cut` or later in its source partition.
    fn take_back_from(&mut self, cut: Origin) {
        let later = |o: &Origin| {
            o.source == cut.source && o.partition == cut.partition && o.offset >= cut.offset
        };
        if !self.marks.iter().any(|(_, o)| later(o)) {
            return;
        }
        // Those batches lost outputs: their offsets must not be committed.
        for ack in std::mem::take(&mut self.chunk.acks) {
            ack.fail("outputs taken back by the `fail` policy".into());
            ack.release();
        }
        let mut kept = SinkChunk::default();
        let mut start = 0;
        for (end, origin) in self.marks.drain(..) {
            if !later(&origin) {
                kept.bytes.extend_from_slice(&self.chunk.bytes[start..end]);
                kept.records += 1;
            }
            start = end;
        }
        self.chunk = kept;
    }
}

pub struct Task<'t> {
    topo: &'t Topology,
    steps: Vec<PluginStep>,
    scratch: Vec<StepOutput>,
    sinks: Vec<SinkState<'t>>,
    metrics: &'t Metrics,
    /// What each source reads (a path, `stdin`, a topic), for error messages.
    source_labels: &'t [String],
    restarts_seen: u64,
    /// The batch being processed: every output holds it until it is out.
    ack: Arc<Ack>,
    /// Whether `ack` is tracked for commits (outputs to files then flush).
    tracked: bool,
    stop: &'t AtomicBool,
}

impl<'t> Task<'t> {
    pub fn new(
        topo: &'t Topology,
        steps: Vec<PluginStep>,
        sinks: Vec<SinkPort<'t>>,
        metrics: &'t Metrics,
        source_labels: &'t [String],
        stop: &'t AtomicBool,
    ) -> Self {
        let scratch = steps.iter().map(|_| StepOutput::default()).collect();
        Task {
            topo,
            steps,
            scratch,
            sinks: sinks
                .into_iter()
                .map(|port| match port {
                    SinkPort::Lines(tx) => SinkState::Lines(SinkBuffer {
                        tx,
                        chunk: SinkChunk::default(),
                        marks: Vec::new(),
                    }),
                    SinkPort::Kafka { producer, topic } => SinkState::Kafka { producer, topic },
                })
                .collect(),
            metrics,
            source_labels,
            restarts_seen: 0,
            ack: Ack::new(),
            tracked: false,
            stop,
        }
    }

    /// Processes batches until the sources are done, then hands over what
    /// is left for the sinks. A stopped run stops its sources; the tasks
    /// still finish what was read, since those records are sound.
    pub fn run(mut self, batches: Receiver<SourceBatch>) -> Result<(), RunError> {
        let result = self.run_inner(&batches);
        if let Err(RunError::Record { incident, .. }) = &result {
            // Under `fail`, nothing derived from the bad record or later
            // ones may be written, whichever branch produced it. (Kafka
            // sinks got nothing past it: a failed batch's later records are
            // never passed on, and its offsets are never committed.)
            for sink in &mut self.sinks {
                if let SinkState::Lines(buffer) = sink {
                    buffer.take_back_from(incident.origin);
                }
            }
        }
        for s in 0..self.sinks.len() {
            let handed = self.hand_over(s);
            if result.is_ok() {
                handed?;
            }
        }
        result
    }

    fn run_inner(&mut self, batches: &Receiver<SourceBatch>) -> Result<(), RunError> {
        while let Ok(mut batch) = batches.recv() {
            (self.ack, self.tracked) = match batch.ack.take() {
                Some(ack) => (ack, true),
                None if self.tracked => (Ack::new(), false),
                None => (self.ack.clone(), false),
            };
            for reject in std::mem::take(&mut batch.rejects) {
                self.rejected(reject)?;
            }
            let bad = if batch.unchecked {
                self.check_formats(&mut batch)?
            } else {
                None
            };
            let targets = self.topo.source_routes[batch.source as usize].clone();
            self.deliver(&targets, batch.records, batch.origins)?;
            self.note_restarts();
            if let Some(incident) = bad {
                return Err(self.fatal(incident));
            }
            // Only between batches: a batch that fails can still take back
            // its outputs.
            let idle = batches.is_empty();
            for s in 0..self.sinks.len() {
                let due = match &self.sinks[s] {
                    // Outputs whose inputs' offsets wait on them go out
                    // with every batch: a quiet sink must not hold commits.
                    SinkState::Lines(b) => {
                        b.chunk.bytes.len() >= SINK_CHUNK || !b.chunk.acks.is_empty()
                    }
                    SinkState::Kafka { .. } => false,
                };
                if idle || due {
                    self.hand_over(s)?;
                }
            }
            if self.tracked {
                // Processed: what is left of the batch is its outputs' holds.
                self.ack.release();
            }
        }
        Ok(())
    }

    fn note_restarts(&mut self) {
        let total: u64 = self.steps.iter().map(PluginStep::restarts).sum();
        Metrics::add(&self.metrics.restarts, total - self.restarts_seen);
        self.restarts_seen = total;
    }

    fn deliver(
        &mut self,
        targets: &[Target],
        records: Vec<Record>,
        origins: Vec<Origin>,
    ) -> Result<(), RunError> {
        if records.is_empty() {
            return Ok(());
        }
        let Some((last, rest)) = targets.split_last() else {
            return Ok(());
        };
        for t in rest {
            self.deliver_one(*t, records.clone(), origins.clone())?;
        }
        self.deliver_one(*last, records, origins)
    }

    fn deliver_one(
        &mut self,
        target: Target,
        records: Vec<Record>,
        origins: Vec<Origin>,
    ) -> Result<(), RunError> {
        match target {
            Target::Sink(s) => self.write(s, &records, &origins),
            Target::Step(j) => self.step(j, records, origins),
        }
    }

    fn step(
        &mut self,
        j: usize,
        mut records: Vec<Record>,
        origins: Vec<Origin>,
    ) -> Result<(), RunError> {
        let mut out = std::mem::take(&mut self.scratch[j]);
        self.steps[j]
            .process(&records, &mut out)
            .map_err(RunError::Start)?;
        let step = &self.topo.pipeline.steps[j];
        let mut cutoff = usize::MAX;
        let mut fatal = None;
        for f in &out.failures {
            let incident = self.incident(&step.name, origins[f.input as usize], f.kind, &f.reason);
            if step.error_policy == ErrorPolicy::Fail {
                cutoff = f.input as usize;
                fatal = Some(incident);
                break;
            }
            self.tolerate(
                step.error_policy,
                incident,
                records[f.input as usize].clone(),
            )?;
        }
        let ports = self.topo.step_ports[j].len();
        let mut by_port: Vec<(Vec<Record>, Vec<Origin>)> =
            (0..ports).map(|_| (Vec::new(), Vec::new())).collect();
        for e in out.emitted.drain(..) {
            if e.input as usize >= cutoff {
                break;
            }
            let (recs, origs) = &mut by_port[e.port as usize];
            recs.push(
                e.record
                    .unwrap_or_else(|| std::mem::take(&mut records[e.input as usize])),
            );
            origs.push(origins[e.input as usize]);
        }
        self.scratch[j] = out;
        for (p, (recs, origs)) in by_port.into_iter().enumerate() {
            let targets = self.topo.step_routes[j][p].clone();
            self.deliver(&targets, recs, origs)?;
        }
        match fatal {
            Some(incident) => Err(self.fatal(incident)),
            None => Ok(()),
        }
    }

    fn write(&mut self, s: usize, records: &[Record], origins: &[Origin]) -> Result<(), RunError> {
        let sink = &self.topo.pipeline.sinks[s];
        let is_dead_letter = self.topo.pipeline.dead_letter == Some(s);
        for (record, origin) in records.iter().zip(origins) {
            let result = match &mut self.sinks[s] {
                SinkState::Lines(buffer) => {
                    let bytes = &mut buffer.chunk.bytes;
                    if is_dead_letter {
                        jsonl::encode_lossless(record, sink.key_format, sink.value_format, bytes);
                        Ok(())
                    } else {
                        jsonl::encode(record, sink.key_format, sink.value_format, bytes)
                            .map_err(|e| e.0)
                    }
                }
                SinkState::Kafka { producer, topic } => {
                    // Records go to Kafka as bytes; the dead-letter topic
                    // takes them whatever they hold.
                    let checked = if is_dead_letter {
                        Ok(())
                    } else {
                        check_record(record, sink.key_format, sink.value_format)
                    };
                    match checked {
                        Ok(()) => match producer.send(topic, record, &self.ack, self.stop) {
                            Ok(()) => Ok(()),
                            Err(SendError::Stopped) => return Err(RunError::Stopped),
                            Err(e @ SendError::Producer { .. }) => {
                                return Err(RunError::Delivery(e.to_string()));
                            }
                            Err(e @ SendError::Record { .. }) => Err(e.to_string()),
                        },
                        Err(e) => Err(e),
                    }
                }
            };
            if let Err(reason) = result {
                let incident = self.incident(&sink.name, *origin, FailureKind::Encode, &reason);
                match self.topo.pipeline.error_policy {
                    // Nowhere left to put it: never dead-letter a record the
                    // dead-letter sink itself refused.
                    _ if is_dead_letter => return Err(self.fatal(incident)),
                    ErrorPolicy::Fail => return Err(self.fatal(incident)),
                    policy => self.tolerate(policy, incident, record.clone())?,
                }
                continue;
            }
            match &mut self.sinks[s] {
                SinkState::Lines(buffer) => {
                    buffer.chunk.records += 1;
                    buffer.marks.push((buffer.chunk.bytes.len(), *origin));
                    let acks = &mut buffer.chunk.acks;
                    if self.tracked && !acks.last().is_some_and(|a| Arc::ptr_eq(a, &self.ack)) {
                        self.ack.hold();
                        acks.push(self.ack.clone());
                    }
                }
                SinkState::Kafka { .. } => Metrics::add(self.counter(s), 1),
            }
        }
        Ok(())
    }

    /// The counter that records written to sink `s` go to.
    fn counter(&self, s: usize) -> &'t std::sync::atomic::AtomicU64 {
        if self.topo.pipeline.dead_letter == Some(s) {
            &self.metrics.dead_lettered
        } else {
            &self.metrics.records_out
        }
    }

    fn hand_over(&mut self, s: usize) -> Result<(), RunError> {
        let SinkState::Lines(sink) = &mut self.sinks[s] else {
            return Ok(());
        };
        sink.marks.clear();
        let chunk = std::mem::take(&mut sink.chunk);
        if chunk.records == 0 {
            for ack in &chunk.acks {
                ack.release();
            }
            return Ok(());
        }
        let n = chunk.records;
        sink.tx.send(chunk).map_err(|_| RunError::SinkGone {
            sink: self.topo.pipeline.sinks[s].name.clone(),
        })?;
        Metrics::add(self.counter(s), n);
        Ok(())
    }

    /// Checks records read as raw bytes (Kafka) against their source's
    /// formats, here in the tasks rather than on the one consumer thread.
    /// Bad records go to the error policy; under `fail` the batch is cut at
    /// the first one, whose incident is returned to end the run after the
    /// records before it are processed.
    fn check_formats(&mut self, batch: &mut SourceBatch) -> Result<Option<Incident>, RunError> {
        let source = &self.topo.pipeline.sources[batch.source as usize];
        let (key_format, value_format) = (source.key_format, source.value_format);
        let bad: Vec<(usize, String)> = batch
            .records
            .iter_mut()
            .enumerate()
            .filter_map(|(i, r)| match check_record(r, key_format, value_format) {
                Ok(()) => {
                    r.mark_value_checked(value_format);
                    None
                }
                Err(e) => Some((i, e)),
            })
            .collect();
        if bad.is_empty() {
            return Ok(None);
        }
        let policy = self.topo.pipeline.error_policy;
        let operator = format!("source {}", source.name);
        if policy == ErrorPolicy::Fail {
            let (first, reason) = &bad[0];
            let incident = self.incident(
                &operator,
                batch.origins[*first],
                FailureKind::Decode,
                reason,
            );
            batch.records.truncate(*first);
            batch.origins.truncate(*first);
            return Ok(Some(incident));
        }
        let mut records = Vec::with_capacity(batch.records.len() - bad.len());
        let mut origins = Vec::with_capacity(records.capacity());
        let mut bad = bad.into_iter().peekable();
        for (i, (record, origin)) in std::mem::take(&mut batch.records)
            .into_iter()
            .zip(std::mem::take(&mut batch.origins))
            .enumerate()
        {
            match bad.next_if(|(b, _)| *b == i) {
                Some((_, reason)) => self.rejected(Reject {
                    origin,
                    record,
                    reason,
                })?,
                None => {
                    records.push(record);
                    origins.push(origin);
                }
            }
        }
        batch.records = records;
        batch.origins = origins;
        Ok(None)
    }

    fn rejected(&mut self, reject: Reject) -> Result<(), RunError> {
        Metrics::add(&self.metrics.rejected_lines, 1);
        let source = &self.topo.pipeline.sources[reject.origin.source as usize];
        let incident = self.incident(
            &format!("source {}", source.name),
            reject.origin,
            FailureKind::Decode,
            &reject.reason,
        );
        self.tolerate(self.topo.pipeline.error_policy, incident, reject.record)
    }

    /// Applies `skip` or `dead-letter` to a failed record.
    fn tolerate(
        &mut self,
        policy: ErrorPolicy,
        incident: Incident,
        record: Record,
    ) -> Result<(), RunError> {
        match policy {
            ErrorPolicy::Fail => Err(self.fatal(incident)),
            ErrorPolicy::Skip => {
                tracing::warn!("skipped: {incident}");
                Metrics::add(&self.metrics.skipped, 1);
                Ok(())
            }
            ErrorPolicy::DeadLetter => {
                tracing::debug!("dead-lettered: {incident}");
                let dlq = self
                    .topo
                    .pipeline
                    .dead_letter
                    .expect("validation requires a dead-letter sink for this policy");
                let origin = incident.origin;
                let record = incident.dead_letter(record);
                self.write(dlq, std::slice::from_ref(&record), &[origin])
            }
        }
    }

    fn incident(
        &self,
        operator: &str,
        origin: Origin,
        kind: FailureKind,
        reason: &str,
    ) -> Incident {
        Incident {
            operator: operator.to_string(),
            source: self.topo.pipeline.sources[origin.source as usize]
                .name
                .clone(),
            origin,
            kind,
            reason: reason.to_string(),
        }
    }

    fn fatal(&self, incident: Incident) -> RunError {
        let origin = incident.origin;
        let label = &self.source_labels[origin.source as usize];
        let location = match self.topo.pipeline.sources[origin.source as usize].kind {
            SourceKind::Kafka => {
                format!(
                    "{label} partition {} offset {}",
                    origin.partition, origin.offset
                )
            }
            SourceKind::File | SourceKind::Stdin => format!("{label}:{}", origin.offset),
        };
        RunError::Record {
            incident: Box::new(incident),
            location,
        }
    }
}

/// Checks a record's key and value against a Kafka sink's formats (a file
/// sink's encoder checks them as it writes).
fn check_record(record: &Record, key_format: Format, value_format: Format) -> Result<(), String> {
    if let Some(key) = &record.key {
        jsonl::check_format(key, key_format, "key").map_err(|e| e.0)?;
    }
    if let Some(value) = &record.value
        && !(record.value_is_json && value_format == Format::Json)
    {
        jsonl::check_format(value, value_format, "value").map_err(|e| e.0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_back_cuts_only_the_failed_partition_and_blocks_its_commits() {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let at = |partition, offset| Origin {
            source: 0,
            partition,
            offset,
        };
        let ack = Ack::new();
        ack.hold();
        let mut buffer = SinkBuffer {
            tx,
            chunk: SinkChunk {
                bytes: b"a\nb\nc\n".to_vec(),
                records: 3,
                acks: vec![ack.clone()],
            },
            marks: vec![(2, at(4, 200)), (4, at(0, 100)), (6, at(0, 101))],
        };
        ack.release();
        buffer.take_back_from(at(0, 101));
        assert_eq!(buffer.chunk.bytes, b"a\nb\n", "partition 4's record stays");
        assert_eq!(buffer.chunk.records, 2);
        assert!(buffer.chunk.acks.is_empty());
        assert!(!ack.is_done(), "the batch lost outputs: never committed");
    }
}
