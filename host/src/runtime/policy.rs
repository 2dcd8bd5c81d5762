//! The error policy, as a task applies it: what happens to a record that a
//! source cannot decode, an operator fails on, or a sink cannot write.

use super::RunError;
use super::task::Task;
use crate::codec::format_gate;
use crate::io::batch::Reject;
use crate::metrics::Metrics;
use crate::operators::FailureKind;
use crate::operators::failure::Incident;
use crate::pipeline::{ErrorPolicy, SourceKind};
use crate::record::{Origin, Record};

impl Task<'_> {
    /// Whether records of source `s` arrive as raw bytes not yet held to
    /// its formats (Kafka).
    pub(super) fn needs_format_check(&self, s: u16) -> bool {
        self.env.topo.pipeline.sources[s as usize].kind == SourceKind::Kafka
    }

    /// Holds raw records of source `s` to its formats through the format
    /// gate, and takes their timestamps from the value when the source says
    /// so (after decoding, as Kafka Streams' timestamp extractor). Bad records go to the error policy; under `fail` the run is cut
    /// at the first one, whose incident is returned to end the run after
    /// the records before it are processed.
    pub(super) fn check_formats(
        &mut self,
        s: u16,
        records: &mut Vec<Record>,
        origins: &mut Vec<Origin>,
    ) -> Result<Option<Incident>, RunError> {
        let source = &self.env.topo.pipeline.sources[s as usize];
        let (key_format, value_format) = (source.key_format, source.value_format);
        let extract = &source.extract;
        let bad: Vec<(usize, String)> = records
            .iter_mut()
            .enumerate()
            .filter_map(|(i, r)| {
                let prechecked = r.value_is_json;
                format_gate::admit(r, key_format, value_format, prechecked)
                    .and_then(|()| {
                        // A timestamp taken from the value (validation
                        // refuses a key field on Kafka).
                        if extract.is_empty() {
                            return Ok(());
                        }
                        extract.apply(r, key_format).map_err(|e| e.to_string())
                    })
                    .err()
                    .map(|e| (i, e))
            })
            .collect();
        if bad.is_empty() {
            return Ok(None);
        }
        let policy = self.env.topo.pipeline.error_policy;
        let operator = format!("source {}", source.name);
        if policy == ErrorPolicy::Fail {
            let (first, reason) = &bad[0];
            let incident = self.incident(&operator, origins[*first], FailureKind::Decode, reason);
            records.truncate(*first);
            origins.truncate(*first);
            return Ok(Some(incident));
        }
        let mut kept = Vec::with_capacity(records.len() - bad.len());
        let mut kept_origins = Vec::with_capacity(kept.capacity());
        let mut bad = bad.into_iter().peekable();
        for (i, (record, origin)) in std::mem::take(records)
            .into_iter()
            .zip(std::mem::take(origins))
            .enumerate()
        {
            match bad.next_if(|(b, _)| *b == i) {
                Some((_, reason)) => self.rejected(Reject {
                    origin,
                    kind: FailureKind::Decode,
                    record,
                    reason,
                })?,
                None => {
                    kept.push(record);
                    kept_origins.push(origin);
                }
            }
        }
        *records = kept;
        *origins = kept_origins;
        Ok(None)
    }

    /// Input that is not a record goes to the pipeline's policy.
    pub(super) fn rejected(&mut self, reject: Reject) -> Result<(), RunError> {
        if reject.kind == FailureKind::Decode {
            Metrics::add(&self.env.metrics.rejected_lines, 1);
        }
        let source = &self.env.topo.pipeline.sources[reject.origin.source as usize];
        let incident = self.incident(
            &format!("source {}", source.name),
            reject.origin,
            reject.kind,
            &reject.reason,
        );
        self.apply_policy(self.env.topo.pipeline.error_policy, incident, reject.record)
    }

    /// A record sink `s` cannot write: never dead-lettered when `s` is the
    /// dead-letter sink itself (nowhere left to put it).
    pub(super) fn refused_by_sink(
        &mut self,
        s: usize,
        incident: Incident,
        record: Record,
    ) -> Result<(), RunError> {
        let pipeline = &self.env.topo.pipeline;
        match pipeline.error_policy {
            _ if pipeline.dead_letter == Some(s) => Err(self.fatal(incident)),
            ErrorPolicy::Fail => Err(self.fatal(incident)),
            policy => self.apply_policy(policy, incident, record),
        }
    }

    /// Applies `policy` to a failed record: `skip` counts it, `dead-letter`
    /// writes it with headers saying why, `fail` stops the run.
    pub(super) fn apply_policy(
        &mut self,
        policy: ErrorPolicy,
        incident: Incident,
        record: Record,
    ) -> Result<(), RunError> {
        match policy {
            ErrorPolicy::Fail => Err(self.fatal(incident)),
            ErrorPolicy::Skip => {
                tracing::warn!("skipped: {incident}");
                Metrics::add(&self.env.metrics.skipped, 1);
                Ok(())
            }
            ErrorPolicy::DeadLetter => {
                tracing::debug!("dead-lettered: {incident}");
                let dlq = self
                    .env
                    .topo
                    .pipeline
                    .dead_letter
                    .expect("validation requires a dead-letter sink for this policy");
                let origin = incident.origin;
                let record = incident.dead_letter(record);
                let sink = self.sinks[dlq]
                    .as_mut()
                    .expect("every task writes the dead-letter sink");
                if let Err(reason) = sink.accept(&record, origin) {
                    // The dead-letter sink writes whatever it gets: only its
                    // medium can refuse, and then nothing is left to try.
                    let name = &self.env.topo.pipeline.sinks[dlq].name;
                    let incident = self.incident(name, origin, FailureKind::Encode, &reason);
                    return Err(self.fatal(incident));
                }
                Ok(())
            }
        }
    }

    pub(super) fn incident(
        &self,
        operator: &str,
        origin: Origin,
        kind: FailureKind,
        reason: &str,
    ) -> Incident {
        Incident {
            operator: operator.to_string(),
            source: self.source_name(origin),
            origin,
            kind,
            reason: reason.to_string(),
            version: None,
        }
    }

    /// The run's error for a record that stops it, naming where it is.
    pub(super) fn fatal(&self, incident: Incident) -> RunError {
        RunError::Record {
            location: self.location(incident.origin),
            incident: Box::new(incident),
        }
    }

    /// Where the records `inputs` of a batch with `origins` are: one
    /// location, or the first and last.
    pub(super) fn locations(&self, inputs: std::ops::Range<u32>, origins: &[Origin]) -> String {
        let at = |i: u32| origins.get(i as usize).map(|&o| self.location(o));
        match (at(inputs.start), at(inputs.end.saturating_sub(1))) {
            (Some(first), Some(last)) if inputs.len() > 1 => {
                format!("one of the records from {first} to {last}")
            }
            (Some(first), _) => format!("the record at {first}"),
            _ => "a record of the batch".to_string(),
        }
    }

    /// Where an input record is: `file:line`, or topic, partition and offset.
    pub(super) fn location(&self, origin: Origin) -> String {
        let label = &self.env.source_labels[origin.source as usize];
        let kind = self
            .env
            .topo
            .pipeline
            .sources
            .get(origin.source as usize)
            .map_or(SourceKind::Kafka, |s| s.kind);
        match kind {
            SourceKind::Kafka => format!(
                "{label} partition {} offset {}",
                origin.partition, origin.offset
            ),
            SourceKind::File | SourceKind::Stdin => format!("{label}:{}", origin.offset),
        }
    }

    /// The source a record came from: a source's name, or, for a record
    /// read back from a repartition topic (an origin past the sources), the
    /// repartition step that wrote it.
    fn source_name(&self, origin: Origin) -> String {
        let p = &self.env.topo.pipeline;
        match p.sources.get(origin.source as usize) {
            Some(s) => s.name.clone(),
            None => {
                let internal = origin.source as usize - p.sources.len();
                self.env
                    .repartition_topics
                    .get(internal)
                    .map_or_else(String::new, |r| {
                        format!("repartition {}", p.steps[r.step].name)
                    })
            }
        }
    }
}
