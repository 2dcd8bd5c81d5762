use std::borrow::Cow;

use serde::Serialize;
use weir_packed::{EmitWriter, put_record, put_record_view};

use crate::{Error, Record};

/// One header of an [`Output`]: name and (possibly null) value.
pub type OutputHeader<'a> = (Cow<'a, [u8]>, Option<Cow<'a, [u8]>>);

/// A record an operator emits. Fields taken from the input record borrow
/// from it until the output is written, so an unchanged key or value is
/// never copied twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output<'a> {
    /// The key; `None` for no key.
    pub key: Option<Cow<'a, [u8]>>,
    /// The value; `None` for a tombstone.
    pub value: Option<Cow<'a, [u8]>>,
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Headers in order; a header value can be null.
    pub headers: Vec<OutputHeader<'a>>,
}

impl<'a> Output<'a> {
    /// A record with this key, value and timestamp and no headers.
    pub fn new(key: Option<Vec<u8>>, value: Option<Vec<u8>>, timestamp: i64) -> Self {
        Output {
            key: key.map(Cow::Owned),
            value: value.map(Cow::Owned),
            timestamp,
            headers: Vec::new(),
        }
    }

    /// A copy of `record` (borrowing its bytes) to modify with the `with_*` methods.
    pub fn from_record(record: &Record<'a>) -> Self {
        Output {
            key: record.key().map(Cow::Borrowed),
            value: record.value().map(Cow::Borrowed),
            timestamp: record.timestamp(),
            headers: record
                .headers()
                .map(|(n, v)| (Cow::Borrowed(n), v.map(Cow::Borrowed)))
                .collect(),
        }
    }

    /// Replaces the key.
    pub fn with_key(mut self, key: Option<impl Into<Vec<u8>>>) -> Self {
        self.key = key.map(|k| Cow::Owned(k.into()));
        self
    }

    /// Replaces the value.
    pub fn with_value(mut self, value: Option<impl Into<Vec<u8>>>) -> Self {
        self.value = value.map(|v| Cow::Owned(v.into()));
        self
    }

    /// Replaces the value with `value` serialized as JSON.
    pub fn with_json_value<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, Error> {
        let mut json = crate::pool::take(128);
        serde_json::to_writer(&mut json, value)
            .map_err(|e| Error::failed(format!("cannot serialize value: {e}")))?;
        self.value = Some(Cow::Owned(json));
        Ok(self)
    }

    /// Replaces the event timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Adds a header (Kafka headers may repeat a name).
    pub fn with_header(mut self, name: &str, value: Option<impl Into<Vec<u8>>>) -> Self {
        self.headers.push((
            Cow::Owned(name.as_bytes().to_vec()),
            value.map(|v| Cow::Owned(v.into())),
        ));
        self
    }

    /// Hands the bytes this output owns back for reuse once written.
    pub(crate) fn recycle(self) {
        let owned = |part: Option<Cow<'a, [u8]>>| {
            if let Some(Cow::Owned(bytes)) = part {
                crate::pool::give(bytes);
            }
        };
        owned(self.key);
        owned(self.value);
        for (name, value) in self.headers {
            owned(Some(name));
            owned(value);
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_record(
            out,
            self.timestamp,
            self.key.as_deref(),
            self.value.as_deref(),
            self.headers.iter().map(|(n, v)| (n.as_ref(), v.as_deref())),
        );
    }
}

/// Where a [`crate::Transform`] puts its outputs for one input record.
pub struct Emitter<'o, 'a> {
    writer: EmitWriter<'o>,
    input: Record<'a>,
}

impl<'o, 'a> Emitter<'o, 'a> {
    pub(crate) fn new(writer: EmitWriter<'o>, input: Record<'a>) -> Self {
        Emitter { writer, input }
    }

    /// Emits `record` on port `port` (an index into the declared ports).
    pub fn emit(&mut self, port: usize, record: &Output<'_>) {
        record.write(self.writer.port(port as u32));
    }

    /// Emits the input record unchanged on port `port`.
    pub fn forward(&mut self, port: usize) {
        put_record_view(self.writer.port(port as u32), self.input.view());
    }

    /// How many records were emitted so far for this input.
    pub fn count(&self) -> usize {
        self.writer.count() as usize
    }

    pub(crate) fn into_writer(self) -> EmitWriter<'o> {
        self.writer
    }
}
