use serde::Deserialize;
use weir_packed::{HeaderIter, RecordView};

use crate::Error;

/// One input record, read in place from the batch the host sent: key, value
/// and header bytes borrow from it, nothing is copied.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    view: RecordView<'a>,
}

impl<'a> Record<'a> {
    pub(crate) fn new(view: RecordView<'a>) -> Self {
        Record { view }
    }

    pub(crate) fn view(&self) -> &RecordView<'a> {
        &self.view
    }

    /// The key bytes; `None` when the record has no key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.view.key
    }

    /// The value bytes; `None` for a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.view.value
    }

    /// Event time in milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.view.timestamp
    }

    /// All headers in order as `(name, value)`; a header value can be null.
    pub fn headers(&self) -> HeaderIter<'a> {
        self.view.headers()
    }

    /// The value of the first header called `name`, if it has one.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.view.headers.get(name).flatten()
    }

    /// The key as UTF-8; a missing or non-UTF-8 key is a poison error.
    pub fn key_str(&self) -> Result<&'a str, Error> {
        let key = self
            .key()
            .ok_or_else(|| Error::poison("record has no key"))?;
        Ok(std::str::from_utf8(key)?)
    }

    /// The value as UTF-8; a tombstone or non-UTF-8 value is a poison error.
    pub fn value_str(&self) -> Result<&'a str, Error> {
        Ok(std::str::from_utf8(self.value_bytes()?)?)
    }

    /// The value parsed as JSON into `T` (which may borrow from the record);
    /// a tombstone or invalid JSON is a poison error.
    pub fn value_json<T: Deserialize<'a>>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(self.value_bytes()?)?)
    }

    /// The key parsed as JSON into `T`; a missing key or invalid JSON is a poison error.
    pub fn key_json<T: Deserialize<'a>>(&self) -> Result<T, Error> {
        let key = self
            .key()
            .ok_or_else(|| Error::poison("record has no key"))?;
        Ok(serde_json::from_slice(key)?)
    }

    fn value_bytes(&self) -> Result<&'a [u8], Error> {
        self.value()
            .ok_or_else(|| Error::poison("record has no value (tombstone)"))
    }
}
