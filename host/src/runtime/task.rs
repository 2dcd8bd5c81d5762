//! A partition task: owns one instance of every step and pushes each batch
//! from its sources through the topology to the sinks, applying the error
//! policy to every record that fails. One task per partition, as in Kafka
//! Streams, so Kafka partitions map onto tasks directly.

use crossbeam_channel::{Receiver, Sender};

use super::RunError;
use super::topology::{Target, Topology};
use crate::io::jsonl;
use crate::io::sink::SinkChunk;
use crate::io::source::{Reject, SourceBatch};
use crate::metrics::Metrics;
use crate::operators::failure::Incident;
use crate::operators::{FailureKind, PluginStep, StepOutput};
use crate::record::{Origin, Record};
use crate::spec::ErrorPolicy;

/// Encoded sink bytes are handed over once they reach this size.
const SINK_CHUNK: usize = 256 << 10;

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
        let later = |o: &Origin| o.source == cut.source && o.offset >= cut.offset;
        if !self.marks.iter().any(|(_, o)| later(o)) {
            return;
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
    sinks: Vec<SinkBuffer>,
    metrics: &'t Metrics,
    /// What each source reads (a path, or `stdin`), for error messages.
    source_labels: &'t [String],
    restarts_seen: u64,
}

impl<'t> Task<'t> {
    pub fn new(
        topo: &'t Topology,
        steps: Vec<PluginStep>,
        sink_txs: Vec<Sender<SinkChunk>>,
        metrics: &'t Metrics,
        source_labels: &'t [String],
    ) -> Self {
        let scratch = steps.iter().map(|_| StepOutput::default()).collect();
        Task {
            topo,
            steps,
            scratch,
            sinks: sink_txs
                .into_iter()
                .map(|tx| SinkBuffer {
                    tx,
                    chunk: SinkChunk::default(),
                    marks: Vec::new(),
                })
                .collect(),
            metrics,
            source_labels,
            restarts_seen: 0,
        }
    }

    /// Processes batches until the sources are done, then hands over what
    /// is left for the sinks. A stopped run stops its sources; the tasks
    /// still finish what was read, since those records are sound.
    pub fn run(mut self, batches: Receiver<SourceBatch>) -> Result<(), RunError> {
        let result = self.run_inner(&batches);
        if let Err(RunError::Record { incident, .. }) = &result {
            // Under `fail`, nothing derived from the bad record or later
            // ones may be written, whichever branch produced it.
            for sink in &mut self.sinks {
                sink.take_back_from(incident.origin);
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
        while let Ok(batch) = batches.recv() {
            for reject in batch.rejects {
                self.rejected_line(reject)?;
            }
            let targets = self.topo.source_routes[batch.source as usize].clone();
            self.deliver(&targets, batch.records, batch.origins)?;
            self.note_restarts();
            // Only between batches: a batch that fails can still take back
            // its outputs.
            let idle = batches.is_empty();
            for s in 0..self.sinks.len() {
                if idle || self.sinks[s].chunk.bytes.len() >= SINK_CHUNK {
                    self.hand_over(s)?;
                }
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
            let buf = &mut self.sinks[s].chunk;
            if is_dead_letter {
                jsonl::encode_lossless(record, sink.key_format, sink.value_format, &mut buf.bytes);
            } else if let Err(e) =
                jsonl::encode(record, sink.key_format, sink.value_format, &mut buf.bytes)
            {
                let incident = self.incident(&sink.name, *origin, FailureKind::Encode, &e.0);
                match self.topo.pipeline.error_policy {
                    ErrorPolicy::Fail => return Err(self.fatal(incident)),
                    policy => self.tolerate(policy, incident, record.clone())?,
                }
                continue;
            }
            let buf = &mut self.sinks[s];
            buf.chunk.records += 1;
            buf.marks.push((buf.chunk.bytes.len(), *origin));
        }
        Ok(())
    }

    fn hand_over(&mut self, s: usize) -> Result<(), RunError> {
        let sink = &mut self.sinks[s];
        sink.marks.clear();
        let chunk = std::mem::take(&mut sink.chunk);
        if chunk.records == 0 {
            return Ok(());
        }
        let n = chunk.records;
        sink.tx.send(chunk).map_err(|_| RunError::SinkGone {
            sink: self.topo.pipeline.sinks[s].name.clone(),
        })?;
        let counter = if self.topo.pipeline.dead_letter == Some(s) {
            &self.metrics.dead_lettered
        } else {
            &self.metrics.records_out
        };
        Metrics::add(counter, n);
        Ok(())
    }

    fn rejected_line(&mut self, reject: Reject) -> Result<(), RunError> {
        Metrics::add(&self.metrics.rejected_lines, 1);
        let source = &self.topo.pipeline.sources[reject.origin.source as usize];
        let incident = self.incident(
            &format!("source {}", source.name),
            reject.origin,
            FailureKind::Decode,
            &reject.reason,
        );
        let record = Record {
            value: Some(reject.raw),
            timestamp: crate::io::source::now_ms(),
            ..Record::default()
        };
        self.tolerate(self.topo.pipeline.error_policy, incident, record)
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
        let location = format!(
            "{}:{}",
            self.source_labels[incident.origin.source as usize], incident.origin.offset
        );
        RunError::Record {
            incident: Box::new(incident),
            location,
        }
    }
}
