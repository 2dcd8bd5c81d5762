//! `weir run PIPELINE --input NAME=PATH|- --output NAME=PATH|-`: sources and
//! sinks pointed elsewhere from the command line, so one pipeline file
//! reads a file one day and stdin the next; `--state-dir DIR` does the same
//! for the state directory.
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
    /// `--state-dir`: where stateful steps keep their stores, instead of
    /// `state.dir` (relative to the current folder).
    pub state_dir: Option<PathBuf>,
}

/// A replacement the pipeline cannot take: a usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OverrideError(pub String);

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty() && self.outputs.is_empty() && self.state_dir.is_none()
    }
}

impl Pipeline {
    /// This pipeline with its sources and sinks replaced as `overrides`
    /// says, checked by the rules a pipeline file is held to.
    pub fn with_overrides(mut self, overrides: &Overrides) -> Result<Pipeline, OverrideError> {
        let source_names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
        let sources: Vec<usize> = (0..overrides.inputs.len())
            .map(|i| replaced("--input", "source", &overrides.inputs, i, &source_names))
            .collect::<Result<_, _>>()?;
        let sink_names: Vec<&str> = self.sinks.iter().map(|s| s.name.as_str()).collect();
        let sinks: Vec<usize> = (0..overrides.outputs.len())
            .map(|i| replaced("--output", "sink", &overrides.outputs, i, &sink_names))
            .collect::<Result<_, _>>()?;
        let mut replaced_kafka = Vec::new();
        for (&at, (name, place)) in sources.iter().zip(&overrides.inputs) {
            let source = &mut self.sources[at];
            if source.kind == SourceKind::Kafka {
                replaced_kafka.push(name.as_str());
            }
            (source.kind, source.path) = match place {
                Place::Path(path) => (SourceKind::File, Some(path.clone())),
                Place::Stdio => (SourceKind::Stdin, None),
            };
            source.topic = None;
        }
        for (&at, (_, place)) in sinks.iter().zip(&overrides.outputs) {
            let sink = &mut self.sinks[at];
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
        if let Some(dir) = &overrides.state_dir {
            self.state.dir = Some(dir.clone());
        }
        if self.processing_guarantee == super::guarantee::Guarantee::ExactlyOnce
            && let Some(g) = super::guarantee::of(&self)
                .into_iter()
                .find(|g| g.guarantee != super::guarantee::Guarantee::ExactlyOnce)
        {
            return Err(OverrideError(format!(
                "the pipeline asks for `processing-guarantee: exactly-once`, and with these endpoints sink {} cannot have it: {}",
                self.sinks[g.sink].name, g.why
            )));
        }
        Ok(self)
    }
}

/// Where among `names` (a pipeline's sources or sinks) the `i`th of
/// `given` (`flag NAME=...` on the command line) points: each may be
/// replaced once, and only one the pipeline has.
fn replaced(
    flag: &str,
    noun: &str,
    given: &[(String, Place)],
    i: usize,
    names: &[&str],
) -> Result<usize, OverrideError> {
    let name = &given[i].0;
    if given[..i].iter().any(|(n, _)| n == name) {
        return Err(OverrideError(format!(
            "{flag} {name}: {noun} `{name}` is replaced twice"
        )));
    }
    names.iter().position(|n| n == name).ok_or_else(|| {
        OverrideError(format!(
            "{flag} {name}=...: the pipeline has no {noun} `{name}` (its {noun}s: {})",
            names.join(", ")
        ))
    })
}
