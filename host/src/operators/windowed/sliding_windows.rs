//! Sliding windows (Kafka Streams' `SlidingWindows`, as
//! `KStreamSlidingWindowAggregate` runs them): windows of a fixed time
//! difference `td`, both ends included, that exist where records are: a
//! record at `t` has a left window `[t - td, t]` and, when later records of
//! its key fall within `td` after it, a right window `[t + 1, t + 1 + td]`.
//! A record updates every window of its key that holds it, creates its own
//! windows, and the right window of the record before it; the windows are
//! found with one backward fetch over `[t - 2 td, t + 1]` of window starts,
//! and the steps below follow Kafka Streams' `processReverse` and
//! `processEarly` (records before `td`, whose left window would start
//! before the epoch, share the window `[0, td]`) one for one, so the same
//! windows get the same updates in the same order. A window closes when
//! stream time passes its end plus grace.
//!
//! Keys:
//! - windows: `[5][segment of start][key length][key][start]`, a key's
//!   windows in a segment one range;
//! - with `emit: final`, the windows not yet emitted (written again at
//!   each update): `[6][end][key][start, big-endian]`, in the order
//!   `suppress(untilWindowCloses)` emits them.

use std::collections::HashSet;

use bytes::Bytes;

use super::{
    Shared, delete_before, emit_pending, from_sortable, keyed_prefix, pending_through, push_late,
    scan_keyed, segment_ms, sortable,
};
use crate::operators::aggregate::split_stored;
use crate::operators::failure::{Failure, FailureKind};
use crate::operators::operator::OperatorError;
use crate::operators::plugin_step::StepOutput;
use crate::pipeline::Emit;
use crate::record::Record;

pub(super) const WINDOW: u8 = 5;
const PENDING: u8 = 6;

/// A window not yet emitted (`emit: final`); Kafka Streams serializes a
/// time window's key as the record key, then its start.
pub(super) fn pending_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
    super::pending_key(PENDING, end, key, &[start])
}

/// The store range of the pending windows.
pub(super) fn pending_range() -> (Vec<u8>, Vec<u8>) {
    (vec![PENDING], vec![PENDING + 1])
}

/// Whether a stored key is a pending window's (`emit: final`).
pub(super) fn is_pending(stored: &[u8]) -> bool {
    stored.first() == Some(&PENDING)
}

/// The record key and start of a stored window (its key in the store, or
/// its pending entry).
pub(super) fn split_stored_key(stored: &[u8]) -> Option<(&[u8], i64)> {
    match *stored.first()? {
        WINDOW => {
            let len = u32::from_be_bytes(stored.get(9..13)?.try_into().ok()?) as usize;
            let key = stored.get(13..13 + len)?;
            let start = stored.get(13 + len..)?;
            (start.len() == 8).then(|| (key, from_sortable(start)))
        }
        PENDING if stored.len() >= 17 => {
            let start = &stored[stored.len() - 8..];
            let start = i64::from_be_bytes(start.try_into().expect("8 bytes"));
            Some((&stored[9..stored.len() - 8], start))
        }
        _ => None,
    }
}

/// A window's accumulator's timestamp (the largest record time in it).
fn acc_time(acc: &[u8]) -> Result<i64, OperatorError> {
    split_stored(acc)
        .map(|(ts, _)| ts)
        .ok_or_else(|| OperatorError::internal("a window's value without its timestamp"))
}

/// Sliding windows, and what they keep beyond the shared state.
pub(super) struct SlidingWindows {
    /// The time difference: every window is `[start, start + td]`.
    td: i64,
    /// The largest start of a window written: the store's own stream time
    /// (windows starting before it less the retention are not found, as
    /// Kafka Streams' window stores hide them).
    pub(super) store_time: i64,
    /// Windows starting before it were dropped (a segment boundary).
    expired_before: i64,
}

/// The record being folded by the built-in fold, for the window updates it
/// makes.
struct Current<'r> {
    input: u32,
    record: &'r Record,
    key: &'r Bytes,
    value: &'r Bytes,
}

impl SlidingWindows {
    pub(super) fn new(td: i64) -> Self {
        SlidingWindows {
            td,
            store_time: i64::MIN,
            expired_before: i64::MIN,
        }
    }

    pub(super) fn load(&mut self, s: &Shared) {
        // A window's start is at most its last record's time.
        self.store_time = s.stream_time;
    }

    /// The time difference: every window is `[start, start + td]`.
    pub(super) fn td(&self) -> i64 {
        self.td
    }

    fn segment_of(&self, s: &Shared, start: i64) -> i64 {
        start.div_euclid(segment_ms(s.window.retention_ms))
    }

    pub(super) fn window_key(&self, s: &Shared, key: &[u8], start: i64) -> Vec<u8> {
        let mut k = keyed_prefix(WINDOW, self.segment_of(s, start), key);
        k.extend_from_slice(&sortable(start));
        k
    }

    /// `key`'s windows starting in `[from, to]`, by start, ascending, with
    /// their store keys, when the store's time is `store_time` (windows
    /// starting before it less the retention, plus one, are hidden).
    pub(super) fn fetch(
        &self,
        s: &mut Shared,
        store_time: i64,
        key: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Vec<u8>, Bytes)>, OperatorError> {
        let horizon = store_time
            .saturating_sub(s.window.retention_ms)
            .saturating_add(1);
        let from = from.max(horizon);
        let mut found = Vec::new();
        if from > to {
            return Ok(found);
        }
        let segments = self.segment_of(s, from)..=self.segment_of(s, to);
        scan_keyed(
            s,
            WINDOW,
            key,
            segments,
            from,
            to.checked_add(1),
            &mut |k, start, v| {
                found.push((from_sortable(start), k.to_vec(), Bytes::copy_from_slice(v)));
            },
        )?;
        Ok(found)
    }

    /// Writes window `start` of `key` with accumulator `acc` (and, with
    /// `emit: final`, marks it pending).
    pub(super) fn put(
        &mut self,
        s: &mut Shared,
        key: &[u8],
        start: i64,
        acc: Bytes,
    ) -> Result<(), OperatorError> {
        self.store_time = self.store_time.max(start);
        s.store.put(&self.window_key(s, key, start), acc)?;
        if s.emit == Emit::Final {
            let pending = pending_key(key, start, start + self.td);
            s.pending_put(&pending)?;
            s.store.put(&pending, Bytes::new())?;
        }
        Ok(())
    }

    /// Deletes window `start` of `key` (an aggregator plugin removed its
    /// accumulator): a tombstone downstream, or nothing to emit at its
    /// close.
    pub(super) fn delete(
        &mut self,
        s: &mut Shared,
        key: &[u8],
        start: i64,
    ) -> Result<(), OperatorError> {
        self.store_time = self.store_time.max(start);
        s.store.delete(&self.window_key(s, key, start))?;
        if s.emit == Emit::Final {
            let pending = pending_key(key, start, start + self.td);
            s.pending_delete(&pending)?;
            s.store.delete(&pending)?;
        }
        Ok(())
    }

    /// Whether a record at `ts` is late: its own window `[ts - td, ts]`
    /// has closed (stream time passed its end plus grace).
    pub(super) fn is_late(&self, s: &Shared, ts: i64) -> bool {
        let close = s.stream_time.saturating_sub(s.window.grace_ms);
        ts.saturating_add(self.td) < close
    }

    /// Reports record `input` at `ts` late.
    pub(super) fn report_late(&self, s: &Shared, input: u32, ts: i64, out: &mut StepOutput) {
        out.late_windows += 1;
        push_late(
            out,
            s,
            input,
            ts,
            format!("window [{},{ts}]", ts - self.td),
            ts.saturating_add(s.window.grace_ms),
            format!("{} ms of grace", s.window.grace_ms),
        );
    }

    /// Folds one record (with a key and a value) into its key's windows
    /// with the built-in fold.
    pub(super) fn add(
        &mut self,
        s: &mut Shared,
        input: u32,
        record: &Record,
        key: &Bytes,
        value: &Bytes,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        if self.is_late(s, record.timestamp) {
            self.report_late(s, input, record.timestamp, out);
            return Ok(());
        }
        let (td, ts) = (self.td, record.timestamp);
        let close = s.stream_time.saturating_sub(s.window.grace_ms);
        let r = Current {
            input,
            record,
            key,
            value,
        };
        slide(
            &mut Folding {
                w: self,
                s,
                r: &r,
                out,
            },
            td,
            ts,
            close,
        )
    }
}

/// The steps of Kafka Streams' sliding-window algorithm, reaching one
/// key's windows through this: the built-in fold ([`Folding`]) folds and
/// writes as it goes, an aggregator plugin's planner
/// (`plugin_sliding.rs`) plans the values to compute. Both run the same
/// steps, so both find, update and create the same windows in the same
/// order.
pub(super) trait KeyWindows {
    /// A window's accumulator.
    type Acc: Clone;
    /// The key's windows starting in `[from, to]`, by start, ascending.
    fn fetch(&mut self, from: i64, to: i64) -> Result<Vec<(i64, Self::Acc)>, OperatorError>;
    /// The largest record time folded into `acc`.
    fn acc_time(&self, acc: &Self::Acc) -> Result<i64, OperatorError>;
    /// `acc` as the start of the record's left window: the same
    /// aggregate, with the record's time `ts`.
    fn restamped(&self, acc: &Self::Acc, ts: i64) -> Self::Acc;
    /// A window the record falls in has closed: counted, skipped.
    fn skipped(&mut self);
    /// Folds the record into window `start` (from `acc`; `None`: a new
    /// window). `false`: the record could not be folded, and stops.
    fn fold(&mut self, start: i64, acc: Option<&Self::Acc>) -> Result<bool, OperatorError>;
    /// Writes window `start` as `acc`, without the record (its right
    /// window, whose records are the ones after it).
    fn create_right(&mut self, start: i64, acc: Self::Acc) -> Result<(), OperatorError>;
}

/// What a record does to its key's windows (the state of Kafka Streams'
/// `processReverse`).
struct Scan<A> {
    start_times: HashSet<i64>,
    left: Option<A>,
    right: Option<A>,
    left_created: bool,
    right_created: bool,
    previous: Option<i64>,
}

/// Kafka Streams' `updateWindowAndForward`: folds the record into window
/// `start` if it is still open (its end at or after `close`), else counts
/// it skipped. `false`: the record could not be folded.
fn update<W: KeyWindows>(
    w: &mut W,
    td: i64,
    close: i64,
    start: i64,
    acc: Option<&W::Acc>,
) -> Result<bool, OperatorError> {
    if start + td < close {
        w.skipped();
        return Ok(true);
    }
    w.fold(start, acc)
}

/// Folds a record at `ts` (not late) into its key's windows of time
/// difference `td`, when windows ending before `close` have closed:
/// Kafka Streams' `processReverse`, or `processEarly` for a record before
/// `td`.
pub(super) fn slide<W: KeyWindows>(
    w: &mut W,
    td: i64,
    ts: i64,
    close: i64,
) -> Result<(), OperatorError> {
    if ts < td {
        return slide_early(w, td, ts, close);
    }
    let mut scan = Scan {
        start_times: HashSet::new(),
        left: None,
        right: None,
        left_created: false,
        right_created: false,
        previous: None,
    };
    let windows = w.fetch((ts - 2 * td).max(0), ts + 1)?;
    for (start, acc) in windows.into_iter().rev() {
        scan.start_times.insert(start);
        let end = start + td;
        let max_ts = w.acc_time(&acc)?;
        if start == ts + 1 {
            scan.right_created = true;
        } else if end > ts {
            if scan.right.is_none() {
                scan.right = Some(acc.clone());
            }
            if !update(w, td, close, start, Some(&acc))? {
                return Ok(());
            }
        } else if end == ts {
            scan.left_created = true;
            if !update(w, td, close, start, Some(&acc))? {
                return Ok(());
            }
            if max_ts < ts {
                scan.previous = Some(max_ts);
            } else {
                return Ok(());
            }
        } else {
            scan.left = Some(acc);
            scan.previous = Some(max_ts);
            break;
        }
    }
    create_windows(w, td, ts, close, scan)
}

/// Kafka Streams' `createWindows`: the previous record's right window,
/// this record's left window, and its right window, as needed.
fn create_windows<W: KeyWindows>(
    w: &mut W,
    td: i64,
    ts: i64,
    close: i64,
    scan: Scan<W::Acc>,
) -> Result<(), OperatorError> {
    if let Some(previous) = scan.previous {
        let start = previous + 1;
        if !scan.start_times.contains(&start)
            && start + td >= ts
            && !update(w, td, close, start, None)?
        {
            return Ok(());
        }
    }
    if !scan.left_created {
        let left_not_empty = scan.previous.is_some_and(|p| ts - td <= p);
        // The window before, as the start of this one, with this record's
        // time.
        let acc = match (&scan.left, left_not_empty) {
            (Some(left), true) => Some(w.restamped(left, ts)),
            _ => None,
        };
        if !update(w, td, close, ts - td, acc.as_ref())? {
            return Ok(());
        }
    }
    if !scan.right_created
        && let Some(right) = scan.right
        && w.acc_time(&right)? > ts
    {
        w.create_right(ts + 1, right)?;
    }
    Ok(())
}

/// Kafka Streams' `processEarly`: a record before `td`, whose windows
/// share `[0, td]`.
fn slide_early<W: KeyWindows>(
    w: &mut W,
    td: i64,
    ts: i64,
    close: i64,
) -> Result<(), OperatorError> {
    let mut combined: Option<W::Acc> = None;
    let mut right: Option<W::Acc> = None;
    let mut right_created = false;
    let mut start_times = HashSet::new();
    let mut previous = None;
    for (start, acc) in w.fetch(0, ts + 1)? {
        start_times.insert(start);
        let max_ts = w.acc_time(&acc)?;
        if start == 0 {
            if max_ts < ts {
                previous = Some(max_ts);
            }
            combined = Some(acc);
        } else if start <= ts {
            right = Some(acc.clone());
            if !update(w, td, close, start, Some(&acc))? {
                return Ok(());
            }
        } else if start == ts + 1 {
            right_created = true;
        } else {
            return Err(OperatorError::internal(format!(
                "a sliding window starting at {start} found for a record at {ts}"
            )));
        }
    }
    if right.is_none()
        && let Some(c) = &combined
        && w.acc_time(c)? > ts
    {
        right = Some(c.clone());
    }
    if !right_created
        && let Some(right) = right
        && w.acc_time(&right)? > ts
    {
        w.create_right(ts + 1, right)?;
    }
    if let Some(previous) = previous
        && !start_times.contains(&(previous + 1))
        && !update(w, td, close, previous + 1, None)?
    {
        return Ok(());
    }
    update(w, td, close, 0, combined.as_ref())?;
    Ok(())
}

/// The built-in fold's reach into one key's windows: folds and writes as
/// it goes.
struct Folding<'a, 'r> {
    w: &'a mut SlidingWindows,
    s: &'a mut Shared,
    r: &'a Current<'r>,
    out: &'a mut StepOutput,
}

impl KeyWindows for Folding<'_, '_> {
    type Acc = Bytes;

    fn fetch(&mut self, from: i64, to: i64) -> Result<Vec<(i64, Bytes)>, OperatorError> {
        let found = self
            .w
            .fetch(self.s, self.w.store_time, self.r.key, from, to)?;
        Ok(found
            .into_iter()
            .map(|(start, _, acc)| (start, acc))
            .collect())
    }

    fn acc_time(&self, acc: &Bytes) -> Result<i64, OperatorError> {
        acc_time(acc)
    }

    fn restamped(&self, acc: &Bytes, ts: i64) -> Bytes {
        let mut acc = acc.to_vec();
        acc[..8].copy_from_slice(&ts.to_le_bytes());
        acc.into()
    }

    fn skipped(&mut self) {
        self.out.late_windows += 1;
    }

    fn fold(&mut self, start: i64, acc: Option<&Bytes>) -> Result<bool, OperatorError> {
        let (s, r) = (&mut *self.s, self.r);
        s.next.clear();
        let folded = match s.fold.builtin().add(
            acc.map(|a| &a[..]),
            r.value,
            r.record.timestamp,
            &mut s.next,
            &mut s.values,
        ) {
            Ok(folded) => folded,
            Err(reason) => {
                self.out.failures.push(Failure {
                    input: r.input,
                    kind: FailureKind::Field,
                    reason,
                });
                return Ok(false);
            }
        };
        let next = Bytes::copy_from_slice(&s.next);
        self.write(start, next, folded.value, folded.timestamp)?;
        Ok(true)
    }

    fn create_right(&mut self, start: i64, right: Bytes) -> Result<(), OperatorError> {
        let timestamp = acc_time(&right)?;
        let shown = split_stored(&right)
            .map(|(_, state)| self.s.fold.builtin().shown(state))
            .expect("checked by acc_time")
            .map_err(OperatorError::internal)?;
        self.write(start, right, shown, timestamp)
    }
}

impl Folding<'_, '_> {
    /// Stores window `start` as `stored`, and emits it as `shown` at
    /// `timestamp` (`emit: changes`).
    fn write(
        &mut self,
        start: i64,
        stored: Bytes,
        shown: Bytes,
        timestamp: i64,
    ) -> Result<(), OperatorError> {
        let (s, r) = (&mut *self.s, self.r);
        self.w.put(s, r.key, start, stored)?;
        if s.emit != Emit::Final {
            let window = (start, start + self.w.td);
            s.emit(
                self.out,
                r.input,
                r.key,
                window,
                Some(shown),
                timestamp,
                r.record,
            );
        }
        Ok(())
    }
}

impl SlidingWindows {
    /// Emits every window closed by stream time (or by `until`) and not
    /// emitted since its last update, in order of end, then key.
    pub(super) fn emit_closed(
        &mut self,
        s: &mut Shared,
        until: Option<i64>,
        input: u32,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let close = until.unwrap_or_else(|| s.stream_time.saturating_sub(s.window.grace_ms));
        for p in pending_through(s, PENDING, close)? {
            let (key, start) = split_stored_key(&p).ok_or_else(|| {
                OperatorError::internal("a pending window's key without its start")
            })?;
            let stored = self.window_key(s, key, start);
            let window = (start, start + self.td);
            emit_pending(s, out, input, key, window, &stored, None, &p)?;
        }
        Ok(())
    }

    /// Drops the windows that start before `cutoff` (a segment boundary).
    pub(super) fn expire(&mut self, s: &mut Shared, cutoff: i64) -> Result<(), OperatorError> {
        if cutoff <= self.expired_before {
            return Ok(());
        }
        delete_before(s, WINDOW, self.segment_of(s, cutoff))?;
        self.expired_before = cutoff;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{count, rec, shown};
    use crate::operators::Operator;
    use crate::operators::plugin_step::StepOutput;
    use crate::pipeline::{Emit, WindowKind};

    #[test]
    fn windows_appear_where_records_are() {
        // Kafka Streams' SlidingWindows documentation: records at 8, 9 and
        // 11 with a time difference of 5.
        let mut w = count(
            WindowKind::Sliding { difference_ms: 5 },
            10,
            Emit::EveryUpdate,
        );
        let mut out = StepOutput::default();
        let batch = [rec("a", 8), rec("a", 9), rec("a", 11)];
        w.process_batch(0, &batch, &mut out).unwrap();
        assert_eq!(
            shown(&out),
            vec![
                r#"{"key":"a","start":3,"end":8} {"n":1} @8"#,
                // 9: the right window of 8, then its own left window.
                r#"{"key":"a","start":9,"end":14} {"n":1} @9"#,
                r#"{"key":"a","start":4,"end":9} {"n":2} @9"#,
                // 11: updates [9,14], right window of 9 ... its own left
                // window [6,11] (8, 9, 11).
                r#"{"key":"a","start":9,"end":14} {"n":2} @11"#,
                r#"{"key":"a","start":10,"end":15} {"n":1} @11"#,
                r#"{"key":"a","start":6,"end":11} {"n":3} @11"#,
            ]
        );
    }
}
