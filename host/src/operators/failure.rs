//! A record that could not be processed, and the dead-letter form of it.

use std::fmt;

use super::versioned::VersionTag;
use crate::record::{Origin, Record};

/// Header names on dead-lettered records.
pub mod headers {
    /// Why it failed, in words.
    pub const REASON: &str = "weir.error.reason";
    /// [`super::FailureKind`] as a word.
    pub const KIND: &str = "weir.error.kind";
    /// The step (or source or sink) that failed it.
    pub const OPERATOR: &str = "weir.error.operator";
    /// The source the record was read from.
    pub const SOURCE: &str = "weir.error.source";
    /// Its partition in that source.
    pub const PARTITION: &str = "weir.error.partition";
    /// Its offset there (the line number for a file source).
    pub const OFFSET: &str = "weir.error.offset";
    /// The version of the step that failed it, when a swap brought that
    /// version (2 and on; a record failed by the pipeline file's version
    /// has neither this nor [`DIGEST`]).
    pub const VERSION: &str = "weir.error.version";
    /// That version's component, `sha256:` and its digest in hex.
    pub const DIGEST: &str = "weir.error.digest";
}

/// What went wrong with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin says the data is bad.
    Poison,
    /// The plugin failed on it (twice, on two instances).
    Failed,
    /// The plugin ran past its time limit.
    Timeout,
    /// The plugin ran past its memory limit.
    Memory,
    /// The plugin trapped (a panic, an out-of-bounds access, ...).
    Trap,
    /// Its outputs were larger than the step allows.
    OutputLimit,
    /// The plugin's result broke its step kind's contract.
    Contract,
    /// The input line is not a record.
    Decode,
    /// The record cannot be written in the sink's format.
    Encode,
    /// A field a host-native step needs (a group-by key, an aggregated
    /// number) is missing or of the wrong type, or a sum overflows.
    Field,
    /// The key's stored state cannot be used by the version of the step
    /// that runs: an accumulator of a state version it neither reads nor
    /// upgrades.
    State,
    /// Every window it falls in had closed when it came (a windowed step
    /// with `late: dead-letter`).
    Late,
    /// Its source's timestamp extractor found no valid time in it (and
    /// its partition had no time to give it instead).
    Timestamp,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Poison => "poison",
            FailureKind::Failed => "failed",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Trap => "trap",
            FailureKind::OutputLimit => "output-limit",
            FailureKind::Contract => "contract",
            FailureKind::Decode => "decode",
            FailureKind::Encode => "encode",
            FailureKind::Field => "field",
            FailureKind::State => "state",
            FailureKind::Late => "late",
            FailureKind::Timestamp => "timestamp",
        }
    }
}

/// One failed record within a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Index of the record in the batch given to the step.
    pub input: u32,
    pub kind: FailureKind,
    pub reason: String,
}

/// A failure with everything needed to report it or dead-letter it.
#[derive(Debug, Clone)]
pub struct Incident {
    pub operator: String,
    pub source: String,
    pub origin: Origin,
    pub kind: FailureKind,
    pub reason: String,
    /// The version of the step that failed it, when a swap brought it.
    pub version: Option<VersionTag>,
}

impl Incident {
    /// `record` with headers saying what happened, for the dead-letter sink.
    pub fn dead_letter(&self, mut record: Record) -> Record {
        record.push_header(headers::REASON, self.reason.clone());
        record.push_header(headers::KIND, self.kind.as_str());
        record.push_header(headers::OPERATOR, self.operator.clone());
        record.push_header(headers::SOURCE, self.source.clone());
        record.push_header(headers::PARTITION, self.origin.partition.to_string());
        record.push_header(headers::OFFSET, self.origin.offset.to_string());
        if let Some(v) = &self.version {
            record.push_header(headers::VERSION, v.number.to_string());
            record.push_header(headers::DIGEST, format!("sha256:{}", v.digest));
        }
        record
    }
}

impl fmt::Display for Incident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}`{} failed on the record from source `{}` partition {} offset {} ({}): {}",
            self.operator,
            self.version
                .as_ref()
                .map(|v| format!(" (version {})", v.number))
                .unwrap_or_default(),
            self.source,
            self.origin.partition,
            self.origin.offset,
            self.kind.as_str(),
            self.reason
        )
    }
}
