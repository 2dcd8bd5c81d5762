//! Codecs: how records are written as bytes and read back, and the checks
//! that say bytes are what a format promises.
//!
//! [`json_syntax`] is weir's strict JSON checker, [`jsonl`] the JSON-lines
//! envelope of the embedded sources and sinks, [`partitioner`] Kafka's key
//! hash, and [`format_gate`] the one place that decides when a value is known
//! to be JSON (so it is checked once, not at every hop). [`lines`] reads and
//! writes a line in the [`LineFormat`] a file or stdio endpoint names, and
//! [`extract`] takes a record's key and timestamp from fields of its value.

pub mod extract;
pub mod format_gate;
pub mod json_syntax;
pub mod jsonl;
pub mod lines;
pub mod partitioner;
pub mod windowed_key;

use serde::Deserialize;

/// How key or value bytes appear in JSON-lines files, and what a Kafka
/// source or sink holds them to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Any JSON value, embedded as is; the bytes are its JSON text.
    Json,
    /// A JSON string; the bytes are its UTF-8.
    String,
    /// A base64 JSON string; the bytes are what it decodes to.
    Bytes,
}

/// What one line of a file, stdin or stdout endpoint holds. Chosen in the
/// pipeline file, never guessed from the data: a plain event may well have
/// `key` or `value` fields of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineFormat {
    /// A whole record: `{"key", "value", "timestamp", "headers"}` ([`jsonl`]).
    /// The default, so pipelines and fixtures written before the other
    /// formats existed read as they did.
    #[default]
    Envelope,
    /// The line is the record's value, a JSON document.
    Json,
    /// The line is the record's value, as text.
    Text,
}

impl LineFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LineFormat::Envelope => "envelope",
            LineFormat::Json => "json",
            LineFormat::Text => "text",
        }
    }
}
