//! Codecs: how records are written as bytes and read back, and the checks
//! that say bytes are what a format promises.
//!
//! [`json_syntax`] is weir's strict JSON checker, [`jsonl`] the JSON-lines
//! envelope of the embedded sources and sinks, [`partitioner`] Kafka's key
//! hash, and [`format_gate`] the one place that decides when a value is known
//! to be JSON (so it is checked once, not at every hop).

pub mod format_gate;
pub mod json_syntax;
pub mod jsonl;
pub mod partitioner;

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
