//! A windowed `aggregate` (Kafka Streams' `windowedBy(TimeWindows)` then
//! `count`, `aggregate` or `reduce`): folds each record into every window
//! of its key it falls in, on event time, as `KStreamWindowAggregate` does.
//!
//! - **Stream time** is the largest timestamp the step has seen in its
//!   task (records with a key; Kafka Streams' `observedStreamTime`). It is
//!   kept in the step's store, so a restarted task goes on from it; the
//!   wall clock never closes a window.
//! - **Windows** (`TimeWindows`): of `size` starting every `advance` from
//!   the epoch, each including its start and excluding its end. A window
//!   closes when stream time reaches its end plus the grace period.
//! - **Late records**: a window a record falls in that has closed is
//!   skipped (counted, as Kafka Streams' `dropped-records`); a record all
//!   of whose windows have closed is late, and is dropped or dead-lettered
//!   as the step says (never a failure: late records do not stop a run).
//! - **Emit**: `changes` emits every window's new value at each record (as
//!   Kafka Streams with caches off); `final` emits each window once, when
//!   it closes, in the order of their ends, then keys (as
//!   `suppress(untilWindowCloses)`), read back from the store: the store is
//!   the buffer of pending results, so a restart neither loses nor repeats
//!   one beyond what the run's checkpoints allow.
//!
//! The store (a [`SortedStore`]) keys each window by its start first (see
//! [`window_key`]), so the windows that close are a range at its front and
//! expired ones are dropped a segment at a time with one range delete.
//! Values are the fold's accumulators (the window's largest timestamp,
//! then its state), as in a key-value aggregate.

use bytes::{Bytes, BytesMut};

use super::aggregate::Fold;
use super::failure::{Failure, FailureKind};
use super::operator::{Operator, OperatorError, StoreKind, StoreSpec};
use super::plugin_step::{Dropped, Emitted, Late, StepOutput};
use crate::codec::format_gate;
use crate::pipeline::{Emit, EndOfInput, WindowKind, Windowing};
use crate::record::Record;
use crate::state::SortedStore;

/// The first byte of a stored window's key.
const WINDOW: u8 = 1;
/// The first byte of the step's own entries (stream time, what it emitted).
const META: u8 = 0;
const STREAM_TIME: &[u8] = b"\0stream-time";
const EMITTED_THROUGH: &[u8] = b"\0emitted-through";

/// Kafka Streams' smallest segment of a window store (`segmentInterval`
/// is the retention's half, at least a minute).
const MIN_SEGMENT_MS: i64 = 60_000;

/// A timestamp as 8 bytes that sort as the numbers do (sign bit flipped,
/// big-endian).
fn sortable(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn from_sortable(bytes: &[u8]) -> i64 {
    (u64::from_be_bytes(bytes.try_into().expect("8 bytes")) ^ (1 << 63)) as i64
}

/// The store key of `key`'s window starting at `start`: the start first,
/// so windows sort by time, then by key.
pub fn window_key(start: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(WINDOW);
    k.extend_from_slice(&sortable(start));
    k.extend_from_slice(key);
    k
}

/// The first store key of windows starting at `start` or later.
fn windows_from(start: i64) -> Vec<u8> {
    window_key(start, &[])
}

/// A stored window's start and record key.
pub fn split_window_key(stored: &[u8]) -> Option<(i64, &[u8])> {
    match stored {
        [WINDOW, rest @ ..] if rest.len() >= 8 => Some((from_sortable(&rest[..8]), &rest[8..])),
        _ => None,
    }
}

/// The windowed key downstream: `{"key":"k1","start":0,"end":60000}` (the
/// record's key as a JSON string, the window's bounds in milliseconds). A
/// key that is not UTF-8 text is written `{"base64":"..."}`, as envelope
/// headers write such bytes.
pub fn windowed_json_key(key: &[u8], start: i64, end: i64) -> Bytes {
    use base64::Engine as _;
    let mut out = Vec::with_capacity(key.len() + 48);
    out.extend_from_slice(b"{\"key\":");
    match std::str::from_utf8(key) {
        Ok(text) => serde_json::to_writer(&mut out, text).expect("a string serializes"),
        Err(_) => {
            out.extend_from_slice(b"{\"base64\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(key)
                    .as_bytes(),
            );
            out.extend_from_slice(b"\"}");
        }
    }
    out.extend_from_slice(format!(",\"start\":{start},\"end\":{end}}}").as_bytes());
    out.into()
}

/// The starts of the time windows of `size_ms` every `advance_ms` that hold
/// `ts`, in order (Kafka Streams' `TimeWindows.windowsFor`: none starts
/// before the epoch).
fn windows_for(size_ms: i64, advance_ms: i64, ts: i64) -> impl Iterator<Item = i64> {
    let first =
        (ts.saturating_sub(size_ms).saturating_add(advance_ms)).max(0) / advance_ms * advance_ms;
    (0..)
        .map(move |i| first + i * advance_ms)
        .take_while(move |start| *start <= ts)
}

/// One task's instance of a windowed `aggregate` step.
pub struct WindowedAggregate {
    id: String,
    fold: Fold,
    size_ms: i64,
    advance_ms: i64,
    window: Windowing,
    emit: Emit,
    store: Box<dyn SortedStore>,
    ports: Vec<String>,
    /// Read from the store at the first batch.
    loaded: bool,
    /// The largest timestamp seen (`i64::MIN`: none yet).
    stream_time: i64,
    /// `emit: final`: windows closed by this stream time were emitted.
    emitted_through: i64,
    /// Windows starting before it were dropped (a segment boundary).
    expired_before: i64,
    values: BytesMut,
    next: Vec<u8>,
}

impl WindowedAggregate {
    pub fn new(
        id: &str,
        fold: Fold,
        window: Windowing,
        emit: Emit,
        store: Box<dyn SortedStore>,
    ) -> Self {
        let WindowKind::Time {
            size_ms,
            advance_ms,
        } = window.windows;
        WindowedAggregate {
            id: id.to_string(),
            fold,
            size_ms,
            advance_ms,
            window,
            emit,
            store,
            ports: vec!["out".to_string()],
            loaded: false,
            stream_time: i64::MIN,
            emitted_through: i64::MIN,
            expired_before: i64::MIN,
            values: BytesMut::new(),
            next: Vec::new(),
        }
    }

    /// The spec of its store.
    pub fn store_spec(id: &str, holds: &str) -> StoreSpec {
        StoreSpec {
            name: id.to_string(),
            kind: StoreKind::Window,
            holds: holds.to_string(),
        }
    }

    fn load(&mut self) -> Result<(), OperatorError> {
        if self.loaded {
            return Ok(());
        }
        let read = |store: &mut Box<dyn SortedStore>, key| -> Result<i64, OperatorError> {
            Ok(match store.get(key)? {
                Some(v) if v.len() == 8 => i64::from_le_bytes(v[..].try_into().expect("8 bytes")),
                Some(v) => {
                    return Err(OperatorError::internal(format!(
                        "a stored time of {} bytes (8 expected)",
                        v.len()
                    )));
                }
                None => i64::MIN,
            })
        };
        self.stream_time = read(&mut self.store, STREAM_TIME)?;
        self.emitted_through = read(&mut self.store, EMITTED_THROUGH)?;
        self.loaded = true;
        Ok(())
    }

    /// The stream time at which windows close (stream time less grace).
    fn close_time(&self) -> i64 {
        self.stream_time.saturating_sub(self.window.grace_ms)
    }

    /// Folds one record with a key into its windows.
    fn add(
        &mut self,
        input: u32,
        record: &Record,
        key: &Bytes,
        value: &Bytes,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let ts = record.timestamp;
        let close = self.close_time();
        let mut late = None;
        let mut folded_any = false;
        for start in windows_for(self.size_ms, self.advance_ms, ts) {
            let end = start + self.size_ms;
            if end <= close {
                late.get_or_insert((start, end));
                out.late_windows += 1;
                continue;
            }
            let stored = window_key(start, key);
            let old = self.store.get(&stored)?;
            self.next.clear();
            let folded =
                match self
                    .fold
                    .add(old.as_deref(), value, ts, &mut self.next, &mut self.values)
                {
                    Ok(folded) => folded,
                    Err(reason) => {
                        // The record's value cannot be folded: it fails once,
                        // whichever window found it out.
                        out.failures.push(Failure {
                            input,
                            kind: FailureKind::Field,
                            reason,
                        });
                        return Ok(());
                    }
                };
            self.store
                .put(&stored, Bytes::copy_from_slice(&self.next))?;
            folded_any = true;
            if self.emit != Emit::Final {
                self.emit_window(
                    out,
                    input,
                    key,
                    start,
                    folded.value,
                    folded.timestamp,
                    record,
                );
            }
        }
        if !folded_any && let Some((start, end)) = late {
            out.late.push(Late {
                input,
                reason: format!(
                    "late: its window [{start},{end}) closed when stream time reached {} (its end plus {} ms of grace); stream time is {}, {} ms after the record's timestamp {ts}",
                    end.saturating_add(self.window.grace_ms),
                    self.window.grace_ms,
                    self.stream_time,
                    self.stream_time.saturating_sub(ts),
                ),
            });
        }
        Ok(())
    }

    /// Emits `value` as `key`'s result for the window starting at `start`.
    #[allow(clippy::too_many_arguments)]
    fn emit_window(
        &self,
        out: &mut StepOutput,
        input: u32,
        key: &[u8],
        start: i64,
        value: Bytes,
        timestamp: i64,
        from: &Record,
    ) {
        let mut emitted = Record {
            key: Some(windowed_json_key(key, start, start + self.size_ms)),
            value: Some(value),
            timestamp,
            headers: from.headers.clone(),
            value_is_json: false,
            old_value: None,
        };
        format_gate::host_written(&mut emitted, self.fold.writes_json(), from);
        out.emitted.push(Emitted {
            input,
            port: 0,
            record: Some(emitted),
        });
    }

    /// `emit: final`: emits every window that closed by `close` and was not
    /// emitted yet, in order of start (so of end), then key.
    fn emit_closed(
        &mut self,
        close: i64,
        input: u32,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        if self.emit != Emit::Final || close <= self.emitted_through {
            return Ok(());
        }
        // Windows ending by `close` start by `close - size`; those ending by
        // `emitted_through` were emitted.
        let from = match self.emitted_through {
            i64::MIN => windows_from(i64::MIN),
            through => windows_from(through.saturating_sub(self.size_ms).saturating_add(1)),
        };
        let to = windows_from(close.saturating_sub(self.size_ms).saturating_add(1));
        let mut found = Vec::new();
        self.store.range(&from, &to, &mut |k, v| {
            found.push((k.to_vec(), Bytes::copy_from_slice(v)));
            true
        })?;
        let no_record = Record {
            key: None,
            value: None,
            timestamp: 0,
            headers: Vec::new(),
            value_is_json: false,
            old_value: None,
        };
        for (k, stored) in found {
            let (start, key) = split_window_key(&k)
                .ok_or_else(|| OperatorError::internal("a window's key without its start"))?;
            let (timestamp, acc) = super::aggregate::split_stored(&stored)
                .ok_or_else(|| OperatorError::internal("a window's value without its timestamp"))?;
            let value = self.fold.shown(acc).map_err(OperatorError::internal)?;
            self.emit_window(out, input, key, start, value, timestamp, &no_record);
        }
        self.emitted_through = close;
        self.store.put(
            EMITTED_THROUGH,
            Bytes::copy_from_slice(&close.to_le_bytes()),
        )?;
        Ok(())
    }

    /// Drops the segments of windows whose retention ended: windows that
    /// start before stream time less the retention, rounded down to a
    /// segment boundary (so a whole segment goes at once).
    fn expire(&mut self) -> Result<(), OperatorError> {
        let segment = (self.window.retention_ms / 2).max(MIN_SEGMENT_MS);
        let horizon = self
            .stream_time
            .saturating_sub(self.window.retention_ms)
            .saturating_add(1);
        let cutoff = horizon.div_euclid(segment) * segment;
        if cutoff <= self.expired_before {
            return Ok(());
        }
        // From the front of the windows, not from the last cutoff: a store
        // restored from its changelog gets expired windows back.
        self.store
            .delete_range(&windows_from(i64::MIN), &windows_from(cutoff))?;
        self.expired_before = cutoff;
        Ok(())
    }
}

impl Operator for WindowedAggregate {
    fn process_batch(
        &mut self,
        _input: usize,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        out.clear();
        self.load()?;
        let before = self.stream_time;
        let empty = Bytes::new();
        for (i, record) in records.iter().enumerate() {
            let input = i as u32;
            let Some(key) = &record.key else {
                out.dropped.push(Dropped {
                    input,
                    reason: "a null key",
                });
                continue;
            };
            // Kafka Streams' windowed count counts tombstones; a fold that
            // reads values cannot take one.
            let value = match &record.value {
                Some(value) => value,
                None if !self.fold.reads_values() => &empty,
                None => {
                    self.stream_time = self.stream_time.max(record.timestamp);
                    out.dropped.push(Dropped {
                        input,
                        reason: "a null value (a tombstone)",
                    });
                    continue;
                }
            };
            self.stream_time = self.stream_time.max(record.timestamp);
            self.add(input, record, key, value, out)?;
            let close = self.close_time();
            self.emit_closed(close, input, out)?;
        }
        if self.stream_time != before {
            self.store.put(
                STREAM_TIME,
                Bytes::copy_from_slice(&self.stream_time.to_le_bytes()),
            )?;
            self.expire()?;
        }
        Ok(())
    }

    fn ports(&self) -> &[String] {
        &self.ports
    }

    fn stores(&self) -> Vec<StoreSpec> {
        vec![Self::store_spec(&self.id, "")]
    }

    /// `end-of-input: close-windows` closes every window left open.
    fn on_end_of_input(&mut self, out: &mut StepOutput) -> Result<(), OperatorError> {
        out.clear();
        if self.window.end_of_input != EndOfInput::CloseWindows {
            return Ok(());
        }
        self.load()?;
        self.emit_closed(i64::MAX, 0, out)
    }

    fn checkpoint(&mut self) -> Result<(), OperatorError> {
        self.store.flush().map_err(OperatorError::from)
    }

    fn close(&mut self) {
        if let Err(e) = self.store.flush() {
            tracing::warn!("{e}");
        }
    }
}

/// Whether a stored key is one of the step's own entries (its stream time,
/// what it emitted), not a window's.
pub fn is_meta_key(stored: &[u8]) -> bool {
    stored.first() == Some(&META)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{AggOp, Aggregation, Late as LatePolicy};
    use crate::state::MemorySortedStore;

    fn count_windows(size: i64, advance: i64, grace: i64, emit: Emit) -> WindowedAggregate {
        let fold = Fold::of(&Aggregation::Builtin(vec![("n".into(), AggOp::Count)])).unwrap();
        let window = Windowing {
            windows: WindowKind::Time {
                size_ms: size,
                advance_ms: advance,
            },
            grace_ms: grace,
            retention_ms: size + grace,
            late: LatePolicy::Drop,
            end_of_input: EndOfInput::CloseWindows,
        };
        WindowedAggregate::new("w", fold, window, emit, Box::<MemorySortedStore>::default())
    }

    fn rec(key: &str, ts: i64) -> Record {
        Record {
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::from_static(b"{}")),
            timestamp: ts,
            headers: Vec::new(),
            value_is_json: true,
            old_value: None,
        }
    }

    fn shown(out: &StepOutput) -> Vec<String> {
        out.emitted
            .iter()
            .map(|e| {
                let r = e.record.as_ref().unwrap();
                format!(
                    "{} {} @{}",
                    String::from_utf8_lossy(r.key.as_deref().unwrap()),
                    String::from_utf8_lossy(r.value.as_deref().unwrap()),
                    r.timestamp
                )
            })
            .collect()
    }

    #[test]
    fn windows_for_follows_kafka_streams() {
        let all = |s, a, t| windows_for(s, a, t).collect::<Vec<_>>();
        assert_eq!(all(10, 10, 0), vec![0]);
        assert_eq!(all(10, 10, 9), vec![0]);
        assert_eq!(all(10, 10, 10), vec![10]);
        assert_eq!(all(10, 5, 12), vec![5, 10]);
        assert_eq!(all(10, 3, 4), vec![0, 3]);
        assert_eq!(all(10, 3, 25), vec![18, 21, 24]);
        assert_eq!(all(10, 10, -1), Vec::<i64>::new());
    }

    #[test]
    fn tumbling_windows_take_records_until_end_plus_grace() {
        let mut w = count_windows(10, 10, 5, Emit::EveryUpdate);
        let mut out = StepOutput::default();
        let batch = [
            rec("a", 0),
            rec("a", 9),
            rec("a", 14), // stream time 14: [0,10) closes at 15
            rec("a", 3),  // in grace
            rec("a", 15), // [0,10) closes
            rec("a", 2),  // late
        ];
        w.process_batch(0, &batch, &mut out).unwrap();
        assert_eq!(
            shown(&out),
            vec![
                r#"{"key":"a","start":0,"end":10} {"n":1} @0"#,
                r#"{"key":"a","start":0,"end":10} {"n":2} @9"#,
                r#"{"key":"a","start":10,"end":20} {"n":1} @14"#,
                r#"{"key":"a","start":0,"end":10} {"n":3} @9"#,
                r#"{"key":"a","start":10,"end":20} {"n":2} @15"#,
            ]
        );
        assert_eq!(out.late.len(), 1);
        assert_eq!(out.late[0].input, 5);
        assert!(
            out.late[0].reason.contains("[0,10)"),
            "{}",
            out.late[0].reason
        );
        assert_eq!(out.late_windows, 1);
    }

    #[test]
    fn emit_final_gives_one_result_per_window_when_it_closes() {
        let mut w = count_windows(10, 5, 0, Emit::Final);
        let mut out = StepOutput::default();
        let batch = [rec("b", 1), rec("a", 2), rec("a", 7), rec("a", 11)];
        w.process_batch(0, &batch, &mut out).unwrap();
        // At 11, [0,10) closed; [5,15) and [10,20) are open.
        assert_eq!(
            shown(&out),
            vec![
                r#"{"key":"a","start":0,"end":10} {"n":2} @7"#,
                r#"{"key":"b","start":0,"end":10} {"n":1} @1"#,
            ]
        );
        assert_eq!(out.emitted[0].input, 3);
        out.clear();
        w.on_end_of_input(&mut out).unwrap();
        assert_eq!(
            shown(&out),
            vec![
                r#"{"key":"a","start":5,"end":15} {"n":2} @11"#,
                r#"{"key":"a","start":10,"end":20} {"n":1} @11"#,
            ]
        );
    }
}
