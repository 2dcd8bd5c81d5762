//! Sources and sinks: where records come from and go to.
//!
//! The embedded default reads JSON-lines files or stdin and writes JSON-lines
//! files or stdout, so a pipeline runs on one machine with nothing else
//! installed. Kafka sources and sinks plug in beside these.

pub mod ack;
pub mod batch;
pub mod kafka;
pub mod sink;
pub mod source;
