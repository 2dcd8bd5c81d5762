//! Windowed `aggregate` steps (Kafka Streams' `windowedBy(...)` then
//! `count`, `aggregate` or `reduce`), on event time: time windows
//! (tumbling and hopping, [`time_windows`]), session windows
//! ([`session_windows`]) and sliding windows ([`sliding_windows`]).
//!
//! What every kind shares lives here, in [`WindowedAggregate`]:
//!
//! - **Stream time** is the largest timestamp the step has seen in its
//!   task (records with a key; Kafka Streams' `observedStreamTime`). It is
//!   kept in the step's store, so a restarted task goes on from it; the
//!   wall clock never closes a window.
//! - **Late records**: a window a record falls in that has closed is
//!   skipped (counted, as Kafka Streams' `dropped-records`); a record none
//!   of whose windows is open is late, and is dropped or dead-lettered as
//!   the step says (never a failure: late records do not stop a run).
//! - **Emit**: `changes` emits every window's new value at each record (as
//!   Kafka Streams with caches off); `final` emits each window once, when
//!   it closes, in the order of their ends, then keys (as
//!   `suppress(untilWindowCloses)`), read back from the store: the store is
//!   the buffer of pending results, so a restart neither loses nor repeats
//!   one beyond what the run's checkpoints allow.
//! - **Folds**: a built-in fold runs record by record; an aggregator
//!   plugin a batch at a time, planned first from times alone and then
//!   called as few times as the plan's dependencies allow
//!   ([`plugin_windows`] for time windows, [`plugin_sessions`] and
//!   [`plugin_sliding`] over a [`fold_graph::FoldGraph`]).
//! - **Expiry**: windows are kept for the step's retention, in segments of
//!   time dropped whole with one range delete (see `state/sorted_store.rs`).
//!
//! A window store is a [`SortedStore`]: each kind lays out its keys so
//! that what it reads together is a range. Values are the fold's
//! accumulators (a timestamp, then the fold's state), as in a key-value
//! aggregate. The step's own entries begin with [`META`].

mod fold_graph;
mod plugin_sessions;
mod plugin_sliding;
mod plugin_windows;
mod session_windows;
mod sliding_windows;
mod state_versions;
mod time_windows;

use bytes::{Bytes, BytesMut};

use super::aggregate::Fold;
use std::sync::Arc;

use super::operator::{AtEnd, Operator, OperatorError, StoreKind, StoreSpec};
use super::plugin_aggregator::PluginAggregator;
use super::plugin_step::{Dropped, Emitted, StepOutput};
use super::versioned::{NextPlugin, VersionCounters};
use crate::codec::format_gate;
use crate::pipeline::{Emit, EndOfInput, WindowKind, Windowing};
use crate::record::Record;
use crate::state::SortedStore;

/// The first byte of the step's own entries (stream time, what it emitted).
const META: u8 = 0;
const STREAM_TIME: &[u8] = b"\0stream-time";

/// Kafka Streams' smallest segment of a window or session store
/// (`segmentInterval` is the retention's half, at least a minute).
const MIN_SEGMENT_MS: i64 = 60_000;

/// How long a segment of a store with `retention_ms` is.
fn segment_ms(retention_ms: i64) -> i64 {
    (retention_ms / 2).max(MIN_SEGMENT_MS)
}

/// The first time kept by a store with `retention_ms` at `stream_time`:
/// the retention's horizon rounded down to a segment boundary, so times
/// before it go a whole segment at once.
fn expiry_cutoff(stream_time: i64, retention_ms: i64) -> i64 {
    let segment = segment_ms(retention_ms);
    let horizon = stream_time.saturating_sub(retention_ms).saturating_add(1);
    horizon.div_euclid(segment) * segment
}

/// A timestamp as 8 bytes that sort as the numbers do (sign bit flipped,
/// big-endian).
fn sortable(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn from_sortable(bytes: &[u8]) -> i64 {
    (u64::from_be_bytes(bytes.try_into().expect("8 bytes")) ^ (1 << 63)) as i64
}

/// The prefix of the store keys of `key`'s windows in `segment`, for the
/// kinds that read a key's windows together (sessions, sliding windows):
/// `[tag][segment][key length][key]`, then each window's times, so a key's
/// windows in a segment are one range.
fn keyed_prefix(tag: u8, segment: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(13 + key.len() + 16);
    k.push(tag);
    k.extend_from_slice(&sortable(segment));
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// What [`scan_keyed`] calls for each window: its store key, its times
/// (what follows the prefix) and its value.
type EachKeyed<'a> = dyn FnMut(&[u8], &[u8], &[u8]) + 'a;

/// Calls `each` with the store key, the times (what follows the prefix)
/// and the value of `key`'s windows under `tag` in `segments` whose first
/// time is `from` or later (and, with `to`, before it), in key order.
fn scan_keyed(
    s: &mut Shared,
    tag: u8,
    key: &[u8],
    segments: std::ops::RangeInclusive<i64>,
    from: i64,
    to: Option<i64>,
    each: &mut EachKeyed<'_>,
) -> Result<(), OperatorError> {
    for segment in segments {
        let prefix = keyed_prefix(tag, segment, key);
        let lo = [&prefix[..], &sortable(from)].concat();
        let hi = match to {
            Some(to) => [&prefix[..], &sortable(to)].concat(),
            None => after_prefix(&prefix),
        };
        s.store.range(&lo, &hi, &mut |k, v| {
            each(k, &k[prefix.len()..], v);
            true
        })?;
    }
    Ok(())
}

/// Deletes the store's keys under `tag` whose first time (`[tag][time]`:
/// a window's start, or a segment) is before `before`: what expiry drops,
/// from the front, not from the last cutoff (a store restored from its
/// changelog gets expired windows back).
fn delete_before(s: &mut Shared, tag: u8, before: i64) -> Result<(), OperatorError> {
    let bound = |t: i64| [&[tag][..], &sortable(t)].concat();
    s.store
        .delete_range(&bound(i64::MIN), &bound(before))
        .map_err(OperatorError::from)
}

/// The first key after every key that starts with `prefix`.
fn after_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    while let Some(last) = k.pop() {
        if last < u8::MAX {
            k.push(last + 1);
            return k;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// A window's entry in the pending index under `tag` (`emit: final`): its
/// end, then its key as Kafka Streams serializes it for `suppress` (the
/// record key, then `times` big-endian), so windows ending together come
/// out in the same order as there.
fn pending_key(tag: u8, end: i64, key: &[u8], times: &[i64]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len() + 8 * times.len());
    k.push(tag);
    k.extend_from_slice(&sortable(end));
    k.extend_from_slice(key);
    for t in times {
        k.extend_from_slice(&t.to_be_bytes());
    }
    k
}

/// The pending index's entries under `tag` of windows ending by `close`,
/// in order (the caller emits and deletes them).
///
/// The index is read only when something is due (`close` at or past the
/// earliest end pending, [`PendingScan::due`]), and from where the last
/// read stopped: a window pending now ends no earlier than the close it
/// was written at (else it was late), and closes only grow, so entries
/// before the last read's close were all emitted. Both matter: emitted
/// entries are deleted, and a read from the front steps over every
/// deletion of the run (RocksDB's tombstones), at each record.
fn pending_through(s: &mut Shared, tag: u8, close: i64) -> Result<Vec<Vec<u8>>, OperatorError> {
    let mut pending = Vec::new();
    if close < s.pending_scan.due {
        return Ok(pending);
    }
    let from = [&[tag][..], &sortable(s.pending_scan.read_from)].concat();
    let mut due = i64::MAX;
    s.store.range(&from, &[tag + 1], &mut |k, _| {
        let end = from_sortable(&k[1..9]);
        if end > close {
            due = end;
            return false;
        }
        pending.push(k.to_vec());
        true
    })?;
    s.pending_scan = PendingScan {
        read_from: close,
        due,
    };
    Ok(pending)
}

/// Where the pending index of sessions and sliding windows is read from
/// (see [`pending_through`]).
#[derive(Debug, Clone, Copy)]
struct PendingScan {
    /// Entries ending before it were emitted.
    read_from: i64,
    /// No entry ends before it: the earliest end pending when last read,
    /// or a window's end pending since (`i64::MIN`: not read yet).
    due: i64,
}

impl Default for PendingScan {
    fn default() -> Self {
        PendingScan {
            read_from: i64::MIN,
            due: i64::MIN,
        }
    }
}

/// Emits the pending window of `key` over `window`, whose accumulator is
/// stored under `stored`, at `timestamp` (`None`: its accumulator's), and
/// removes its `pending` entry.
#[allow(clippy::too_many_arguments)]
fn emit_pending(
    s: &mut Shared,
    out: &mut StepOutput,
    input: u32,
    key: &[u8],
    window: (i64, i64),
    stored: &[u8],
    timestamp: Option<i64>,
    pending: &[u8],
) -> Result<(), OperatorError> {
    let value = s
        .store
        .get(stored)?
        .ok_or_else(|| OperatorError::internal("a pending window not in the store"))?;
    let (acc_time, shown) = s.shown(&value)?;
    s.pending_changed(-1);
    s.emit(
        out,
        input,
        key,
        window,
        Some(shown),
        timestamp.unwrap_or(acc_time),
        &Record::default(),
    );
    s.store.delete(pending).map_err(OperatorError::from)
}

/// Reports the record `input` (at `ts`) late: its `window` (as the reason
/// writes it) closed when stream time reached `closed_at`, its end plus
/// `margin` (the grace, and for a session the gap).
fn push_late(
    out: &mut StepOutput,
    s: &Shared,
    input: u32,
    ts: i64,
    window: String,
    closed_at: i64,
    margin: String,
) {
    out.late.push(super::plugin_step::Late {
        input,
        reason: format!(
            "late: its {window} closed when stream time reached {closed_at} (its end plus {margin}); stream time is {}, {} ms after the record's timestamp {ts}",
            s.stream_time,
            s.stream_time.saturating_sub(ts),
        ),
    });
}

/// The spec of a windowed step's store.
pub fn store_spec(id: &str, holds: &str) -> StoreSpec {
    StoreSpec {
        name: id.to_string(),
        kind: StoreKind::Window,
        holds: holds.to_string(),
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

/// A stored key as `weir state` and `weir test` show it: a window's
/// windowed key, or `None` for the step's own entries (its stream time,
/// the sessions it has still to emit).
pub fn shown_key(window: &Windowing, stored: &[u8]) -> Option<Result<Bytes, String>> {
    if stored.first() == Some(&META)
        || session_windows::is_pending(stored)
        || sliding_windows::is_pending(stored)
    {
        return None;
    }
    let split = match window.windows {
        WindowKind::Time { size_ms, .. } => time_windows::split_window_key(stored)
            .map(|(start, key)| (key, start, start.saturating_add(size_ms))),
        WindowKind::Session { .. } => session_windows::split_stored_key(stored),
        WindowKind::Sliding { difference_ms } => sliding_windows::split_stored_key(stored)
            .map(|(key, start)| (key, start, start.saturating_add(difference_ms))),
    };
    Some(
        split
            .map(|(key, start, end)| windowed_json_key(key, start, end))
            .ok_or_else(|| "a window's key without its bounds".to_string()),
    )
}

/// A time read from the store (`i64::MIN` when absent).
fn read_time(store: &mut dyn SortedStore, key: &[u8]) -> Result<i64, OperatorError> {
    match store.get(key)? {
        Some(v) if v.len() == 8 => Ok(i64::from_le_bytes(v[..].try_into().expect("8 bytes"))),
        Some(v) => Err(OperatorError::internal(format!(
            "a stored time of {} bytes (8 expected)",
            v.len()
        ))),
        None => Ok(i64::MIN),
    }
}

fn write_time(store: &mut dyn SortedStore, key: &[u8], time: i64) -> Result<(), OperatorError> {
    store
        .put(key, Bytes::copy_from_slice(&time.to_le_bytes()))
        .map_err(OperatorError::from)
}

/// How a windowed step folds its records.
pub enum WindowFold {
    /// A built-in fold, record by record.
    Builtin(Fold),
    /// An aggregator plugin, a batch at a time (`plugin_windows.rs`,
    /// `plugin_sessions.rs`, `plugin_sliding.rs`); its accumulators are
    /// stored with the plugin's state version.
    Plugin(Box<PluginAggregator>),
}

/// What every kind of window works with: the fold, the settings, the
/// store, stream time, and buffers reused from record to record.
pub(crate) struct Shared {
    fold: WindowFold,
    window: Windowing,
    emit: Emit,
    store: Box<dyn SortedStore>,
    /// The largest timestamp seen (`i64::MIN`: none yet).
    stream_time: i64,
    /// Where a fold writes the values it emits (see [`Fold::add`]).
    values: BytesMut,
    /// Where a fold writes the next accumulator.
    next: Vec<u8>,
    /// With `max-pending`: how many windows await their final result
    /// (counted at the first batch, then kept up to date).
    pending: Option<u64>,
    /// Where the pending index of sessions and sliding windows is read.
    pending_scan: PendingScan,
}

impl WindowFold {
    /// The built-in fold, on the built-in path (a plugin's batches take
    /// `plugin_batch`).
    fn builtin(&self) -> &Fold {
        match self {
            WindowFold::Builtin(fold) => fold,
            WindowFold::Plugin(_) => unreachable!("a plugin fold takes the plugin path"),
        }
    }
}

impl Shared {
    /// Whether windows awaiting their result are counted (`max-pending`).
    fn counts_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The pending index gets `entry` (before it is written): counted
    /// unless it was there already (a window updated again), and due no
    /// later than its end.
    fn pending_put(&mut self, entry: &[u8]) -> Result<(), OperatorError> {
        let end = from_sortable(&entry[1..9]);
        self.pending_scan.due = self.pending_scan.due.min(end);
        if self.counts_pending() && self.store.get(entry)?.is_none() {
            self.pending = self.pending.map(|n| n + 1);
        }
        Ok(())
    }

    /// The pending index loses `entry` (before it is deleted), if it had it.
    fn pending_delete(&mut self, entry: &[u8]) -> Result<(), OperatorError> {
        if self.counts_pending() && self.store.get(entry)?.is_some() {
            self.pending = self.pending.map(|n| n.saturating_sub(1));
        }
        Ok(())
    }

    /// `n` windows more (or fewer) await their result.
    fn pending_changed(&mut self, by: i64) {
        self.pending = self.pending.map(|n| n.saturating_add_signed(by));
    }

    /// More windows awaiting their result than `max-pending` allows stop
    /// the run, as Kafka Streams' suppression buffer `shutDownWhenFull`.
    fn check_pending(&self, id: &str) -> Result<(), OperatorError> {
        match (self.pending, self.window.max_pending) {
            (Some(n), Some(max)) if n > max => Err(OperatorError::internal(format!(
                "aggregate `{id}`: {n} windows await their final result in this task, more than `max-pending: {max}` allows (as Kafka Streams' suppress with shutDownWhenFull); raise the bound, or shorten the windows or their grace"
            ))),
            _ => Ok(()),
        }
    }

    /// A stored window's result timestamp and the value emitted for it.
    fn shown(&self, stored: &[u8]) -> Result<(i64, Bytes), OperatorError> {
        match &self.fold {
            WindowFold::Builtin(fold) => {
                let (timestamp, acc) = super::aggregate::split_stored(stored).ok_or_else(|| {
                    OperatorError::internal("a window's value without its timestamp")
                })?;
                let value = fold.shown(acc).map_err(OperatorError::internal)?;
                Ok((timestamp, value))
            }
            WindowFold::Plugin(_) => {
                let (timestamp, _, acc) =
                    super::aggregate::split_versioned(stored).ok_or_else(|| {
                        OperatorError::internal(
                            "a window's value without its timestamp and state version",
                        )
                    })?;
                Ok((timestamp, Bytes::copy_from_slice(acc)))
            }
        }
    }

    /// Emits `value` (`None`: a tombstone, a session merged into another)
    /// as `key`'s result for `window` (its start and end), at `timestamp`,
    /// with `from`'s headers.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        out: &mut StepOutput,
        input: u32,
        key: &[u8],
        window: (i64, i64),
        value: Option<Bytes>,
        timestamp: i64,
        from: &Record,
    ) {
        let mut emitted = Record {
            key: Some(windowed_json_key(key, window.0, window.1)),
            value,
            timestamp,
            headers: from.headers.clone(),
            value_is_json: false,
            old_value: None,
        };
        // A plugin's accumulator is checked where it leaves, as any
        // plugin output.
        let vouched = matches!(&self.fold, WindowFold::Builtin(fold) if fold.writes_json());
        format_gate::host_written(&mut emitted, vouched, from);
        out.emitted.push(Emitted {
            input,
            port: 0,
            record: Some(emitted),
        });
    }
}

/// The kinds of window, each with what it keeps of its own.
enum Windows {
    Time(time_windows::TimeWindows),
    Session(session_windows::SessionWindows),
    Sliding(sliding_windows::SlidingWindows),
}

/// One task's instance of a windowed `aggregate` step.
pub struct WindowedAggregate {
    id: String,
    shared: Shared,
    windows: Windows,
    ports: Vec<String>,
    /// Stream time (and what each kind keeps) read from the store at the
    /// first batch.
    loaded: bool,
    /// The counters and trial of the plugin version it runs (a plugin
    /// fold's; see [`VersionCounters::may_write_state`]).
    counters: Option<Arc<VersionCounters>>,
    /// Whether windows of older state versions are to be upgraded before
    /// the next batch (a task's first, or the first after a swap;
    /// `state_versions.rs`).
    upgrades_due: bool,
}

impl WindowedAggregate {
    pub fn new(
        id: &str,
        fold: WindowFold,
        window: Windowing,
        emit: Emit,
        store: Box<dyn SortedStore>,
    ) -> Self {
        let windows = match window.windows {
            WindowKind::Time {
                size_ms,
                advance_ms,
            } => Windows::Time(time_windows::TimeWindows::new(size_ms, advance_ms)),
            WindowKind::Session { gap_ms } => {
                Windows::Session(session_windows::SessionWindows::new(gap_ms))
            }
            WindowKind::Sliding { difference_ms } => {
                Windows::Sliding(sliding_windows::SlidingWindows::new(difference_ms))
            }
        };
        WindowedAggregate {
            id: id.to_string(),
            shared: Shared {
                fold,
                window,
                emit,
                store,
                stream_time: i64::MIN,
                values: BytesMut::new(),
                next: Vec::new(),
                pending: None,
                pending_scan: PendingScan::default(),
            },
            windows,
            ports: vec!["out".to_string()],
            loaded: false,
            counters: None,
            upgrades_due: true,
        }
    }

    /// Its plugin version's counters, which say when it is on trial.
    pub fn with_counters(mut self, counters: Arc<VersionCounters>) -> Self {
        self.counters = Some(counters);
        self
    }

    fn load(&mut self) -> Result<(), OperatorError> {
        if self.loaded {
            return Ok(());
        }
        let s = &mut self.shared;
        s.stream_time = read_time(&mut *s.store, STREAM_TIME)?;
        match &mut self.windows {
            Windows::Time(w) => w.load(s)?,
            Windows::Session(w) => w.load(s),
            Windows::Sliding(w) => w.load(s),
        }
        if s.window.max_pending.is_some() && s.emit == Emit::Final {
            // Counted once from the store (a restarted task's are there).
            self.count_pending()?;
        }
        self.loaded = true;
        Ok(())
    }

    /// Counts the windows awaiting their final result from the store.
    fn count_pending(&mut self) -> Result<(), OperatorError> {
        let (from, to) = match &self.windows {
            Windows::Time(w) => w.pending_range(),
            Windows::Session(_) => session_windows::pending_range(),
            Windows::Sliding(_) => sliding_windows::pending_range(),
        };
        let mut n = 0u64;
        self.shared.store.range(&from, &to, &mut |_, _| {
            n += 1;
            true
        })?;
        self.shared.pending = Some(n);
        Ok(())
    }

    /// Emits what stream time has closed (`emit: final`).
    fn emit_closed(&mut self, input: u32, out: &mut StepOutput) -> Result<(), OperatorError> {
        if self.shared.emit != Emit::Final {
            return Ok(());
        }
        match &mut self.windows {
            Windows::Time(w) => w.emit_closed(&mut self.shared, None, input, out),
            Windows::Session(w) => w.emit_closed(&mut self.shared, None, input, out),
            Windows::Sliding(w) => w.emit_closed(&mut self.shared, None, input, out),
        }
    }

    /// Folds a batch record by record with the built-in fold.
    fn builtin_batch(
        &mut self,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
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
            let s = &mut self.shared;
            let sliding = matches!(self.windows, Windows::Sliding(_));
            // Kafka Streams' time and session windows give a tombstone to
            // the aggregator (their `count` counts it; a fold that reads
            // values cannot take one); its sliding windows drop it before
            // it counts for stream time.
            if !(sliding && record.value.is_none()) {
                s.stream_time = s.stream_time.max(record.timestamp);
            }
            let value = match &record.value {
                Some(value) => value,
                None if !sliding && !s.fold.builtin().reads_values() => &empty,
                None => {
                    out.dropped.push(Dropped {
                        input,
                        reason: "a null value (a tombstone)",
                    });
                    continue;
                }
            };
            match &mut self.windows {
                Windows::Time(w) => w.add(s, input, record, key, value, out)?,
                Windows::Session(w) => w.add(s, input, record, key, value, out)?,
                Windows::Sliding(w) => w.add(s, input, record, key, value, out)?,
            }
            self.emit_closed(input, out)?;
        }
        Ok(())
    }

    /// Stream time moved on: it is kept, and windows past the retention
    /// expire.
    fn stream_time_moved(&mut self) -> Result<(), OperatorError> {
        let s = &mut self.shared;
        write_time(&mut *s.store, STREAM_TIME, s.stream_time)?;
        let cutoff = expiry_cutoff(s.stream_time, s.window.retention_ms);
        match &mut self.windows {
            Windows::Time(w) => w.expire(s, cutoff),
            Windows::Session(w) => w.expire(s, cutoff),
            Windows::Sliding(w) => w.expire(s, cutoff),
        }
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
        if let Some(counters) = &self.counters
            && !counters.may_write_state()
        {
            return Err(OperatorError::rolling_back(&self.id));
        }
        self.load()?;
        self.upgrade_old_windows()?;
        let before = self.shared.stream_time;
        match self.shared.fold {
            WindowFold::Plugin(_) => self.plugin_batch(records, out)?,
            WindowFold::Builtin(_) => self.builtin_batch(records, out)?,
        }
        if self.shared.stream_time != before {
            self.stream_time_moved()?;
        }
        self.shared.check_pending(&self.id)
    }

    fn ports(&self) -> &[String] {
        &self.ports
    }

    fn stores(&self) -> Vec<StoreSpec> {
        vec![store_spec(&self.id, "")]
    }

    /// A `weir test` case may first advance stream time (windows it
    /// closes are emitted as a record then would close them); then
    /// `end-of-input: close-windows` (the step's, or the case's) closes
    /// every window left open.
    fn on_end_of_input(
        &mut self,
        at_end: &AtEnd,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        out.clear();
        self.load()?;
        self.upgrade_old_windows()?;
        if let Some(t) = at_end.advance_stream_time_to
            && t > self.shared.stream_time
        {
            self.shared.stream_time = t;
            // Emitted before they expire, as a record's batch does.
            self.emit_closed(0, out)?;
            self.stream_time_moved()?;
        }
        let close = at_end
            .close_windows
            .unwrap_or(self.shared.window.end_of_input == EndOfInput::CloseWindows);
        if !close || self.shared.emit != Emit::Final {
            return Ok(());
        }
        let s = &mut self.shared;
        match &mut self.windows {
            Windows::Time(w) => w.emit_closed(s, Some(i64::MAX), 0, out),
            Windows::Session(w) => w.emit_closed(s, Some(i64::MAX), 0, out),
            Windows::Sliding(w) => w.emit_closed(s, Some(i64::MAX), 0, out),
        }
    }

    fn checkpoint(&mut self) -> Result<(), OperatorError> {
        self.shared.store.flush().map_err(OperatorError::from)
    }

    fn restarts(&self) -> u64 {
        match &self.shared.fold {
            WindowFold::Plugin(p) => p.restarts(),
            WindowFold::Builtin(_) => 0,
        }
    }

    fn swap_plugin(&mut self, next: NextPlugin) -> Result<(), OperatorError> {
        self.swap_aggregator(next.aggregator)?;
        self.counters = Some(next.counters);
        Ok(())
    }

    fn close(&mut self) {
        if let Err(e) = self.shared.store.flush() {
            tracing::warn!("{e}");
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::pipeline::{AggOp, Aggregation, Late};
    use crate::state::MemoryStore;

    /// A windowed count (`n`) of `windows` over a store in memory.
    pub fn count(windows: WindowKind, grace_ms: i64, emit: Emit) -> WindowedAggregate {
        let fold = Fold::of(&Aggregation::Builtin(vec![("n".into(), AggOp::Count)])).unwrap();
        let window = Windowing {
            windows,
            grace_ms,
            retention_ms: windows.span_ms().saturating_add(grace_ms),
            late: Late::Drop,
            end_of_input: EndOfInput::CloseWindows,
            max_pending: None,
        };
        WindowedAggregate::new(
            "w",
            WindowFold::Builtin(fold),
            window,
            emit,
            Box::<MemoryStore>::default(),
        )
    }

    pub fn rec(key: &str, ts: i64) -> Record {
        Record {
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::from_static(b"{}")),
            timestamp: ts,
            headers: Vec::new(),
            value_is_json: true,
            old_value: None,
        }
    }

    /// Each output as `KEY VALUE @TIMESTAMP` (`null` for a tombstone).
    pub fn shown(out: &StepOutput) -> Vec<String> {
        out.emitted
            .iter()
            .map(|e| {
                let r = e.record.as_ref().unwrap();
                format!(
                    "{} {} @{}",
                    String::from_utf8_lossy(r.key.as_deref().unwrap()),
                    r.value
                        .as_deref()
                        .map_or("null".into(), String::from_utf8_lossy),
                    r.timestamp
                )
            })
            .collect()
    }
}
