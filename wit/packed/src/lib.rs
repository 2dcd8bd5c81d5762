//! The packed layout of weir's WIT contract (`wit/README.md`).
//!
//! Records cross the Wasm boundary as one `list<u8>` per batch (groups of
//! records with their accumulators for the aggregator world) because a typed
//! `list<record>` costs ten to thirty times more per record to lift and lower.
//! This crate is the one Rust implementation of that layout: the host encodes
//! batches and decodes results with it, the Rust guest SDK does the opposite,
//! so both sides cannot drift apart. It has no dependencies and does not
//! allocate when reading: every view borrows from the buffer it came from.

#![no_std]
extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

/// Length marker for an absent key, value or header value (a Kafka null).
pub const ABSENT: u32 = u32::MAX;

/// Result tag: zero or more new records, each on a port.
pub const TAG_EMIT: u8 = 0;
/// Result tag: the input record, unchanged, on one port.
pub const TAG_FORWARD: u8 = 1;
/// Result tag: the record cannot be processed (bad data); the error policy decides.
pub const TAG_POISON: u8 = 2;
/// Result tag: the operator itself failed on this record (a bug or a broken state).
pub const TAG_FAILED: u8 = 3;
/// Aggregate result tag: the accumulator after the record (or none: removed).
/// `POISON` and `FAILED` keep their values from `process` results.
pub const TAG_ACCUMULATOR: u8 = 0;

/// Timestamp-extractor result tag: the record's time, an `i64` of
/// milliseconds since the epoch. `POISON` and `FAILED` keep their values
/// from `process` results.
pub const TAG_TIME: u8 = 0;

/// A malformed buffer: where it broke and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset in the buffer where decoding stopped.
    pub offset: usize,
    /// What the decoder was reading.
    pub expected: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed packed buffer at byte {}: expected {}",
            self.offset, self.expected
        )
    }
}

impl core::error::Error for DecodeError {}

/// A record read in place from a packed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key bytes, `None` for a record without a key.
    pub key: Option<&'a [u8]>,
    /// The value bytes, `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// The headers, still packed; iterate them with [`RecordView::headers`].
    pub headers: HeadersView<'a>,
}

impl<'a> RecordView<'a> {
    /// The record's headers in order, name first.
    pub fn headers(&self) -> HeaderIter<'a> {
        self.headers.iter()
    }
}

/// The packed header section of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadersView<'a> {
    count: u32,
    bytes: &'a [u8],
}

impl<'a> HeadersView<'a> {
    /// How many headers the record carries.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the record carries no header.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The headers in order.
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter {
            reader: Reader::new(self.bytes),
            left: self.count,
        }
    }

    /// The value of the first header with this name.
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// Iterator over the headers of a [`RecordView`]; yields `(name, value)`.
pub struct HeaderIter<'a> {
    reader: Reader<'a>,
    left: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The section was validated when the record was read, so this cannot fail.
        let name = self.reader.bytes("header name").ok()?;
        let value = self.reader.optional_bytes("header value").ok()?;
        Some((name, value))
    }
}

/// A cursor over a packed buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the first byte of `buf`.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether every byte has been consumed.
    #[inline]
    pub fn is_at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    #[inline]
    fn take(&mut self, n: usize, expected: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(DecodeError {
                offset: self.pos,
                expected,
            }),
        }
    }

    /// Reads one byte.
    #[inline]
    pub fn u8(&mut self, expected: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, expected)?[0])
    }

    /// Reads a little-endian `u32`.
    #[inline]
    pub fn u32(&mut self, expected: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, expected)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a little-endian `i64`.
    #[inline]
    pub fn i64(&mut self, expected: &'static str) -> Result<i64, DecodeError> {
        let b = self.take(8, expected)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    /// Reads a `u32` length and that many bytes.
    #[inline]
    pub fn bytes(&mut self, expected: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(expected)?;
        if len == ABSENT {
            return Err(DecodeError {
                offset: self.pos - 4,
                expected,
            });
        }
        self.take(len as usize, expected)
    }

    /// Reads a `u32` length (or [`ABSENT`]) and that many bytes.
    #[inline]
    pub fn optional_bytes(
        &mut self,
        expected: &'static str,
    ) -> Result<Option<&'a [u8]>, DecodeError> {
        let len = self.u32(expected)?;
        if len == ABSENT {
            Ok(None)
        } else {
            self.take(len as usize, expected).map(Some)
        }
    }

    /// Reads one packed record.
    #[inline]
    pub fn record(&mut self) -> Result<RecordView<'a>, DecodeError> {
        let timestamp = self.i64("record timestamp")?;
        let key = self.optional_bytes("record key")?;
        let value = self.optional_bytes("record value")?;
        let count = self.u32("header count")?;
        let start = self.pos;
        for _ in 0..count {
            self.bytes("header name")?;
            self.optional_bytes("header value")?;
        }
        Ok(RecordView {
            timestamp,
            key,
            value,
            headers: HeadersView {
                count,
                bytes: &self.buf[start..self.pos],
            },
        })
    }

    /// Reads one per-record result of a `process` call.
    #[inline]
    pub fn result(&mut self) -> Result<ResultView<'a>, DecodeError> {
        match self.u8("result tag")? {
            TAG_EMIT => {
                let count = self.u32("emitted record count")?;
                let start = self.pos;
                for _ in 0..count {
                    self.u32("output port")?;
                    self.record()?;
                }
                Ok(ResultView::Emit(Emitted {
                    count,
                    bytes: &self.buf[start..self.pos],
                }))
            }
            TAG_FORWARD => Ok(ResultView::Forward(self.u32("forward port")?)),
            TAG_POISON => Ok(ResultView::Poison(self.text("poison message")?)),
            TAG_FAILED => Ok(ResultView::Failed(self.text("failure message")?)),
            _ => Err(DecodeError {
                offset: self.pos - 1,
                expected: "result tag 0..=3",
            }),
        }
    }

    /// Reads one group of an `add` or `subtract` batch: the key, its
    /// accumulator (or none) and at least one record, all validated.
    pub fn group(&mut self) -> Result<GroupView<'a>, DecodeError> {
        let key = self.bytes("group key")?;
        let accumulator = self.optional_bytes("group accumulator")?;
        let at = self.pos;
        let count = self.u32("group record count")?;
        if count == 0 {
            return Err(DecodeError {
                offset: at,
                expected: "at least one record in a group",
            });
        }
        let start = self.pos;
        for _ in 0..count {
            self.record()?;
        }
        Ok(GroupView {
            key,
            accumulator,
            records: RecordsView {
                count,
                bytes: &self.buf[start..self.pos],
            },
        })
    }

    /// Reads one pair of a `merge` batch.
    pub fn pair(&mut self) -> Result<PairView<'a>, DecodeError> {
        Ok(PairView {
            key: self.bytes("pair key")?,
            left: self.bytes("left accumulator")?,
            right: self.bytes("right accumulator")?,
        })
    }

    /// Reads one stored accumulator of an `upgrade` or `downgrade` batch.
    pub fn stored(&mut self) -> Result<StoredView<'a>, DecodeError> {
        Ok(StoredView {
            key: self.bytes("stored key")?,
            accumulator: self.bytes("stored accumulator")?,
        })
    }

    /// Reads one per-record result of an `add`, `subtract` or `merge` call.
    #[inline]
    pub fn aggregate_result(&mut self) -> Result<AggregateResultView<'a>, DecodeError> {
        match self.u8("result tag")? {
            TAG_ACCUMULATOR => Ok(AggregateResultView::Accumulator(
                self.optional_bytes("accumulator")?,
            )),
            TAG_POISON => Ok(AggregateResultView::Poison(self.text("poison message")?)),
            TAG_FAILED => Ok(AggregateResultView::Failed(self.text("failure message")?)),
            _ => Err(DecodeError {
                offset: self.pos - 1,
                expected: "aggregate result tag 0, 2 or 3",
            }),
        }
    }

    /// Reads one per-record result of a timestamp extractor's `extract`.
    #[inline]
    pub fn time_result(&mut self) -> Result<TimeResultView<'a>, DecodeError> {
        match self.u8("result tag")? {
            TAG_TIME => Ok(TimeResultView::Time(self.i64("timestamp")?)),
            TAG_POISON => Ok(TimeResultView::Poison(self.text("poison message")?)),
            TAG_FAILED => Ok(TimeResultView::Failed(self.text("failure message")?)),
            _ => Err(DecodeError {
                offset: self.pos - 1,
                expected: "timestamp result tag 0, 2 or 3",
            }),
        }
    }

    fn text(&mut self, expected: &'static str) -> Result<&'a str, DecodeError> {
        let offset = self.pos;
        let b = self.bytes(expected)?;
        core::str::from_utf8(b).map_err(|_| DecodeError { offset, expected })
    }
}

/// Reads the `results` of a `process` call for a batch of a known number of
/// records, holding the buffer to the framing rules: a count equal to the
/// batch's, exactly that many results, and no byte after the last one.
#[derive(Debug, Clone)]
pub struct ResultsReader<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> ResultsReader<'a> {
    /// Starts reading `buf`, the results for a batch of `records` records.
    pub fn new(buf: &'a [u8], records: usize) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(buf);
        if reader.u32("result count")? as usize != records {
            return Err(DecodeError {
                offset: 0,
                expected: "one result per input record",
            });
        }
        Ok(ResultsReader {
            reader,
            left: records,
        })
    }

    /// The next record's result; `None` after the last one.
    pub fn next_result(&mut self) -> Option<Result<ResultView<'a>, DecodeError>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.reader.result())
    }

    /// The next result of an `add`, `subtract` or `merge` call (the same
    /// framing as `process` results); `None` after the last one.
    pub fn next_aggregate_result(
        &mut self,
    ) -> Option<Result<AggregateResultView<'a>, DecodeError>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.reader.aggregate_result())
    }

    /// The next result of an `extract` call (the same framing as
    /// `process` results); `None` after the last one.
    pub fn next_time_result(&mut self) -> Option<Result<TimeResultView<'a>, DecodeError>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.reader.time_result())
    }

    /// Checks that every result was read and nothing follows the last one.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.left != 0 {
            return Err(DecodeError {
                offset: self.reader.position(),
                expected: "every result read before the end",
            });
        }
        if !self.reader.is_at_end() {
            return Err(DecodeError {
                offset: self.reader.position(),
                expected: "end of result",
            });
        }
        Ok(())
    }
}

/// The outcome a plugin reported for one input record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultView<'a> {
    /// New records, each on a port.
    Emit(Emitted<'a>),
    /// The input record, unchanged, on this port.
    Forward(u32),
    /// The record is bad data.
    Poison(&'a str),
    /// The operator failed on this record.
    Failed(&'a str),
}

/// One key's part of an `add` or `subtract` batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupView<'a> {
    /// The key the records were grouped by.
    pub key: &'a [u8],
    /// The key's accumulator before the group's first record; `None` when
    /// the key has none yet.
    pub accumulator: Option<&'a [u8]>,
    /// The key's records in order (at least one).
    pub records: RecordsView<'a>,
}

/// A stored accumulator and its key, for `upgrade` and `downgrade`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredView<'a> {
    pub key: &'a [u8],
    pub accumulator: &'a [u8],
}

/// Two accumulators of one key, for `merge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairView<'a> {
    pub key: &'a [u8],
    pub left: &'a [u8],
    pub right: &'a [u8],
}

/// Packed records of a group, validated when the group was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsView<'a> {
    count: u32,
    bytes: &'a [u8],
}

impl<'a> RecordsView<'a> {
    /// How many records there are.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there is none (never, in a well-formed group).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records in order.
    pub fn iter(&self) -> impl Iterator<Item = RecordView<'a>> + 'a {
        let mut reader = Reader::new(self.bytes);
        // Validated when the group was read, so the unwrap cannot fire.
        (0..self.count).map(move |_| reader.record().expect("validated"))
    }
}

/// The outcome an aggregator reported for one record (or one merged pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateResultView<'a> {
    /// The key's accumulator after the record; `None` removes it (the key
    /// has no accumulator any more, and downstream sees a tombstone).
    Accumulator(Option<&'a [u8]>),
    /// The record is bad data; the accumulator stays as it was.
    Poison(&'a str),
    /// The operator failed on this record; the accumulator stays as it was.
    Failed(&'a str),
}

/// What a timestamp extractor said about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeResultView<'a> {
    /// The record's time (negative: invalid, as in Kafka Streams).
    Time(i64),
    /// The record has no valid time.
    Poison(&'a str),
    /// The operator failed on this record.
    Failed(&'a str),
}

/// The records of an [`ResultView::Emit`], still packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitted<'a> {
    count: u32,
    bytes: &'a [u8],
}

impl<'a> Emitted<'a> {
    /// How many records were emitted.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether nothing was emitted (the record was dropped).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The emitted `(port, record)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, RecordView<'a>)> + 'a {
        let mut reader = Reader::new(self.bytes);
        // Validated when the result was read, so the unwraps cannot fire.
        (0..self.count).map(move |_| {
            let port = reader.u32("output port").expect("validated");
            let record = reader.record().expect("validated");
            (port, record)
        })
    }
}

/// Appends a little-endian `u32`.
#[inline]
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends optional bytes with their length (or [`ABSENT`]).
#[inline]
pub fn put_optional_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_u32(out, len_u32(b.len()));
            out.extend_from_slice(b);
        }
        None => put_u32(out, ABSENT),
    }
}

#[inline]
fn len_u32(len: usize) -> u32 {
    // A field of 4 GiB cannot exist inside a 32-bit linear memory; the host
    // caps record sizes far below that.
    assert!(len < ABSENT as usize, "packed field larger than 4 GiB");
    len as u32
}

/// Appends one packed record.
#[inline]
pub fn put_record<'h>(
    out: &mut Vec<u8>,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl ExactSizeIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
) {
    out.extend_from_slice(&timestamp.to_le_bytes());
    put_optional_bytes(out, key);
    put_optional_bytes(out, value);
    put_u32(out, len_u32(headers.len()));
    for (name, value) in headers {
        put_optional_bytes(out, Some(name));
        put_optional_bytes(out, value);
    }
}

/// Appends a record view as it is (its header section is copied in one piece).
#[inline]
pub fn put_record_view(out: &mut Vec<u8>, r: &RecordView<'_>) {
    out.extend_from_slice(&r.timestamp.to_le_bytes());
    put_optional_bytes(out, r.key);
    put_optional_bytes(out, r.value);
    put_u32(out, r.headers.count);
    out.extend_from_slice(r.headers.bytes);
}

/// Appends the head of a group (`add`, `subtract`): its key, its
/// accumulator and how many records follow; the records themselves
/// (at least one, written with [`put_record`]) must come next.
#[inline]
pub fn put_group_head(out: &mut Vec<u8>, key: &[u8], accumulator: Option<&[u8]>, records: u32) {
    put_optional_bytes(out, Some(key));
    put_optional_bytes(out, accumulator);
    put_u32(out, records);
}

/// Appends one pair of a `merge` batch.
#[inline]
pub fn put_pair(out: &mut Vec<u8>, key: &[u8], left: &[u8], right: &[u8]) {
    put_optional_bytes(out, Some(key));
    put_optional_bytes(out, Some(left));
    put_optional_bytes(out, Some(right));
}

/// Appends one stored accumulator of an `upgrade` or `downgrade` batch.
#[inline]
pub fn put_stored(out: &mut Vec<u8>, key: &[u8], accumulator: &[u8]) {
    put_optional_bytes(out, Some(key));
    put_optional_bytes(out, Some(accumulator));
}

/// Appends a [`TAG_ACCUMULATOR`] result; `None` removes the key's accumulator.
#[inline]
pub fn put_accumulator(out: &mut Vec<u8>, accumulator: Option<&[u8]>) {
    out.push(TAG_ACCUMULATOR);
    put_optional_bytes(out, accumulator);
}

/// Appends a [`TAG_TIME`] result.
#[inline]
pub fn put_time(out: &mut Vec<u8>, timestamp: i64) {
    out.push(TAG_TIME);
    out.extend_from_slice(&timestamp.to_le_bytes());
}

/// Appends a [`TAG_FORWARD`] result.
#[inline]
pub fn put_forward(out: &mut Vec<u8>, port: u32) {
    out.push(TAG_FORWARD);
    put_u32(out, port);
}

/// Appends a [`TAG_POISON`] or [`TAG_FAILED`] result.
pub fn put_error(out: &mut Vec<u8>, poison: bool, message: &str) {
    out.push(if poison { TAG_POISON } else { TAG_FAILED });
    put_optional_bytes(out, Some(message.as_bytes()));
}

/// Writes one [`TAG_EMIT`] result whose record count is patched in at the end,
/// so the records can be appended as they are produced.
pub struct EmitWriter<'o> {
    out: &'o mut Vec<u8>,
    count_at: usize,
    count: u32,
}

impl<'o> EmitWriter<'o> {
    /// Starts an emit result at the end of `out`.
    pub fn begin(out: &'o mut Vec<u8>) -> Self {
        out.push(TAG_EMIT);
        let count_at = out.len();
        put_u32(out, 0);
        EmitWriter {
            out,
            count_at,
            count: 0,
        }
    }

    /// Appends the port of the next record; the record itself must follow.
    pub fn port(&mut self, port: u32) -> &mut Vec<u8> {
        self.count += 1;
        put_u32(self.out, port);
        self.out
    }

    /// How many records have been emitted so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Patches the record count in.
    pub fn finish(self) {
        self.out[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_le_bytes());
    }

    /// Takes back everything written since [`EmitWriter::begin`].
    pub fn abandon(self) {
        self.out.truncate(self.count_at - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn record_round_trip_keeps_absent_and_empty_apart() {
        let mut buf = Vec::new();
        let headers: [(&[u8], Option<&[u8]>); 2] = [(b"trace", Some(b"abc")), (b"null", None)];
        put_record(&mut buf, -5, Some(b""), None, headers.iter().copied());
        put_record(&mut buf, 7, None, Some(b"v"), core::iter::empty());
        let mut r = Reader::new(&buf);
        let a = r.record().unwrap();
        assert_eq!(a.timestamp, -5);
        assert_eq!(a.key, Some(&b""[..]));
        assert_eq!(a.value, None);
        let hs: Vec<_> = a.headers().collect();
        assert_eq!(hs, headers.to_vec());
        assert_eq!(a.headers.get("null"), Some(None));
        let b = r.record().unwrap();
        assert_eq!(
            (b.key, b.value, b.headers.len()),
            (None, Some(&b"v"[..]), 0)
        );
        assert!(r.is_at_end());

        let mut copy = Vec::new();
        put_record_view(&mut copy, &a);
        assert_eq!(Reader::new(&copy).record().unwrap(), a);
    }

    #[test]
    fn results_round_trip() {
        let mut buf = Vec::new();
        let mut w = EmitWriter::begin(&mut buf);
        put_record(w.port(2), 1, Some(b"k"), Some(b"v"), core::iter::empty());
        put_record(w.port(0), 2, None, None, core::iter::empty());
        w.finish();
        put_forward(&mut buf, 1);
        put_error(&mut buf, true, "bad json");
        put_error(&mut buf, false, "bug");
        let w = EmitWriter::begin(&mut buf);
        w.abandon();

        let mut r = Reader::new(&buf);
        match r.result().unwrap() {
            ResultView::Emit(e) => {
                let got: Vec<_> = e.iter().map(|(p, rec)| (p, rec.timestamp)).collect();
                assert_eq!(got, vec![(2, 1), (0, 2)]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.result().unwrap(), ResultView::Forward(1));
        assert_eq!(r.result().unwrap(), ResultView::Poison("bad json"));
        assert_eq!(r.result().unwrap(), ResultView::Failed("bug"));
        assert!(r.is_at_end());
    }

    #[test]
    fn groups_and_aggregate_results_round_trip() {
        let mut buf = Vec::new();
        put_u32(&mut buf, 2);
        put_group_head(&mut buf, b"a", None, 2);
        put_record(&mut buf, 1, Some(b"a"), Some(b"1"), core::iter::empty());
        put_record(&mut buf, 2, Some(b"a"), None, core::iter::empty());
        put_group_head(&mut buf, b"", Some(b""), 1);
        put_record(&mut buf, 3, Some(b""), Some(b"3"), core::iter::empty());
        let mut r = Reader::new(&buf);
        assert_eq!(r.u32("count").unwrap(), 2);
        let a = r.group().unwrap();
        assert_eq!(
            (a.key, a.accumulator, a.records.len()),
            (&b"a"[..], None, 2)
        );
        let ts: Vec<_> = a.records.iter().map(|x| (x.timestamp, x.value)).collect();
        assert_eq!(ts, vec![(1, Some(&b"1"[..])), (2, None)]);
        let b = r.group().unwrap();
        assert_eq!((b.key, b.accumulator), (&b""[..], Some(&b""[..])));
        assert!(r.is_at_end());

        let mut out = Vec::new();
        put_u32(&mut out, 4);
        put_accumulator(&mut out, Some(b"{}"));
        put_accumulator(&mut out, None);
        put_error(&mut out, true, "bad");
        put_error(&mut out, false, "bug");
        let mut results = ResultsReader::new(&out, 4).unwrap();
        let got: Vec<_> = core::iter::from_fn(|| results.next_aggregate_result())
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            got,
            vec![
                AggregateResultView::Accumulator(Some(b"{}")),
                AggregateResultView::Accumulator(None),
                AggregateResultView::Poison("bad"),
                AggregateResultView::Failed("bug"),
            ]
        );
        results.finish().unwrap();

        let mut pairs = Vec::new();
        put_pair(&mut pairs, b"k", b"l", b"r");
        let pair = Reader::new(&pairs).pair().unwrap();
        assert_eq!(
            (pair.key, pair.left, pair.right),
            (&b"k"[..], &b"l"[..], &b"r"[..])
        );
    }

    #[test]
    fn a_group_needs_a_key_and_a_record() {
        let mut absent_key = Vec::new();
        put_u32(&mut absent_key, ABSENT);
        assert_eq!(
            Reader::new(&absent_key).group().unwrap_err().expected,
            "group key"
        );
        let mut empty = Vec::new();
        put_group_head(&mut empty, b"k", None, 0);
        assert_eq!(
            Reader::new(&empty).group().unwrap_err(),
            DecodeError {
                offset: 9,
                expected: "at least one record in a group"
            }
        );
        // Tag 1 (FORWARD) means nothing to an aggregator.
        assert_eq!(
            Reader::new(&[1u8, 0, 0, 0, 0])
                .aggregate_result()
                .unwrap_err()
                .offset,
            0
        );
    }

    #[test]
    fn truncated_and_bad_input_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        put_record(
            &mut buf,
            1,
            Some(b"key"),
            Some(b"value"),
            core::iter::empty(),
        );
        for cut in 0..buf.len() {
            assert!(Reader::new(&buf[..cut]).record().is_err(), "cut at {cut}");
        }
        let err = Reader::new(&[9u8]).result().unwrap_err();
        assert_eq!(err.offset, 0);
        let mut huge = Vec::new();
        huge.extend_from_slice(&0i64.to_le_bytes());
        put_u32(&mut huge, u32::MAX - 1);
        assert!(Reader::new(&huge).record().is_err());
    }

    #[test]
    fn time_results_round_trip_and_refuse_other_tags() {
        let mut buf = Vec::new();
        put_u32(&mut buf, 3);
        put_time(&mut buf, -1);
        put_error(&mut buf, true, "no order time");
        put_time(&mut buf, 1_700_000_000_123);
        let mut r = ResultsReader::new(&buf, 3).unwrap();
        assert_eq!(r.next_time_result(), Some(Ok(TimeResultView::Time(-1))));
        assert_eq!(
            r.next_time_result(),
            Some(Ok(TimeResultView::Poison("no order time")))
        );
        assert_eq!(
            r.next_time_result(),
            Some(Ok(TimeResultView::Time(1_700_000_000_123)))
        );
        assert_eq!(r.next_time_result(), None);
        r.finish().unwrap();
        // FORWARD has no meaning here; a cut timestamp is malformed.
        assert!(
            Reader::new(&[TAG_FORWARD, 0, 0, 0, 0])
                .time_result()
                .is_err()
        );
        assert!(Reader::new(&[TAG_TIME, 1, 2, 3]).time_result().is_err());
    }
}
