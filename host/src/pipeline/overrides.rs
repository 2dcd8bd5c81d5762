//! `weir run PIPELINE --input NAME=PATH|- --output NAME=PATH|-`: sources and
//! sinks pointed elsewhere from the command line, so one pipeline file
//! reads a file one day and stdin the next.
//!
//! A replaced source becomes a file (or stdin) source, a replaced sink a
//! file (or stdout) sink; formats, key and timestamp fields and the sink's
//! `mode` stay as the file says. The result is held to the same rules as a
//! pipeline file: one source at most reads stdin, and a pipeline reads
//! Kafka topics or embedded sources, not both (so replacing a Kafka source
//! means replacing every one).

use std::path::PathBuf;

use super::{Pipeline, SinkKind, SourceKind};

/// Where `--input`/`--output` points a source or sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A file, relative to the current folder (it is the command line's).
    Path(PathBuf),
    /// `-`: stdin for a source, stdout for a sink.
    Stdio,
}

impl Place {
    /// `-` is stdin or stdout; anything else a path.
    pub fn parse(text: &str) -> Place {
        if text == "-" {
            Place::Stdio
        } else {
            Place::Path(PathBuf::from(text))
        }
    }
}

/// Sources and sinks to point elsewhere, by name, in command-line order.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub inputs: Vec<(String, Place)>,
    pub outputs: Vec<(String, Place)>,
}

/// A replacement the pipeline cannot take: a usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OverrideError(pub String);

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty() && self.outputs.is_empty()
    }
}

impl Pipeline {
    /// This pipeline with its sources and sinks replaced as `overrides`
    /// says, checked by the rules a pipeline file is held to.
    pub fn with_overrides(mut self, overrides: &Overrides) -> Result<Pipeline, OverrideError> {
        let names = |all: Vec<&str>| all.join(", ");
        let source_names = names(self.sources.iter().map(|s| s.name.as_str()).collect());
        let sink_names = names(self.sinks.iter().map(|s| s.name.as_str()).collect());
        let mut replaced_kafka = Vec::new();
        for (i, (name, place)) in overrides.inputs.iter().enumerate() {
            if overrides.inputs[..i].iter().any(|(n, _)| n == name) {
                return Err(OverrideError(format!(
                    "--input {name}: source `{name}` is replaced twice"
                )));
            }
            let Some(source) = self.sources.iter_mut().find(|s| &s.name == name) else {
                return Err(OverrideError(format!(
                    "--input {name}=...: the pipeline has no source `{name}` (its sources: {source_names})"
                )));
            };
            if source.kind == SourceKind::Kafka {
                replaced_kafka.push(name.as_str());
            }
            (source.kind, source.path) = match place {
                Place::Path(path) => (SourceKind::File, Some(path.clone())),
                Place::Stdio => (SourceKind::Stdin, None),
            };
            source.topic = None;
        }
        for (i, (name, place)) in overrides.outputs.iter().enumerate() {
            if overrides.outputs[..i].iter().any(|(n, _)| n == name) {
                return Err(OverrideError(format!(
                    "--output {name}: sink `{name}` is replaced twice"
                )));
            }
            let Some(sink) = self.sinks.iter_mut().find(|s| &s.name == name) else {
                return Err(OverrideError(format!(
                    "--output {name}=...: the pipeline has no sink `{name}` (its sinks: {sink_names})"
                )));
            };
            (sink.kind, sink.path) = match place {
                Place::Path(path) => (SinkKind::File, Some(path.clone())),
                Place::Stdio => (SinkKind::Stdout, None),
            };
            sink.topic = None;
        }
        let stdin: Vec<&str> = self
            .sources
            .iter()
            .filter(|s| s.kind == SourceKind::Stdin)
            .map(|s| s.name.as_str())
            .collect();
        if stdin.len() > 1 {
            return Err(OverrideError(format!(
                "sources {} would all read stdin; only one source can",
                stdin.join(" and ")
            )));
        }
        let kept_kafka: Vec<&str> = self
            .sources
            .iter()
            .filter(|s| s.kind == SourceKind::Kafka)
            .map(|s| s.name.as_str())
            .collect();
        if !replaced_kafka.is_empty() && !kept_kafka.is_empty() {
            return Err(OverrideError(format!(
                "--input replaces Kafka source(s) {} but not {}: a pipeline reads Kafka topics or embedded sources (files, stdin), not both; replace every Kafka source or none",
                replaced_kafka.join(", "),
                kept_kafka.join(", ")
            )));
        }
        let uses_kafka =
            !kept_kafka.is_empty() || self.sinks.iter().any(|s| s.kind == SinkKind::Kafka);
        if !uses_kafka {
            self.kafka = None;
        }
        Ok(self)
    }
}
