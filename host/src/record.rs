//! The record every part of the runtime passes around.
//!
//! Bytes are reference-counted slices: forwarding a record through a filter,
//! fanning it out to several sinks, or taking it apart from a plugin's result
//! buffer never copies key or value bytes.

use bytes::Bytes;

/// One Kafka-shaped record: optional key, optional value (none is a
/// tombstone), event time in ms, and headers.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
    pub headers: Vec<Header>,
    /// The value is known to be JSON text; only [`crate::codec::format_gate`]
    /// sets it (where the record came in, or where an operator handed the
    /// value back unchanged or extended). A `json` sink then need not check
    /// all of it again. Bookkeeping, not content: equality ignores it.
    pub value_is_json: bool,
    /// For an update of a table (a `table: true` source, and what a
    /// group-by makes of its updates): the key's value before this update,
    /// which a table aggregation subtracts before it adds `value` (Kafka
    /// Streams' `Change.oldValue`). `None` for stream records, and for a
    /// table key seen for the first time. Never written to sinks.
    pub old_value: Option<Bytes>,
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.value == other.value
            && self.timestamp == other.timestamp
            && self.headers == other.headers
            && self.old_value == other.old_value
    }
}

impl Eq for Record {}

/// A record header; Kafka allows repeated names and null values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Option<Bytes>,
}

impl Record {
    /// The value of the first header called `name`, if it has one.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_ref())
    }

    /// Adds a header with a text value.
    pub fn push_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push(Header {
            name: name.to_string(),
            value: Some(Bytes::from(value.into())),
        });
    }

    /// Approximate bytes the record occupies on the wire, for size limits.
    pub fn size(&self) -> usize {
        let field = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        field(&self.key)
            + field(&self.value)
            + 8
            + self
                .headers
                .iter()
                .map(|h| h.name.len() + field(&h.value))
                .sum::<usize>()
    }
}

/// Where a record came from, so an error can name the source, partition and
/// offset (the line number, for a file source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Index of the source in the pipeline.
    pub source: u16,
    pub partition: u32,
    pub offset: u64,
}

impl Origin {
    /// Whether this is `cut` or a later record of its source partition
    /// (what the `fail` policy takes back).
    pub fn is_at_or_after(&self, cut: Origin) -> bool {
        self.source == cut.source && self.partition == cut.partition && self.offset >= cut.offset
    }
}
