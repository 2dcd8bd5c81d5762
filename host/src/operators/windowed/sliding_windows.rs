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

const WINDOW: u8 = 5;
const PENDING: u8 = 6;

/// A window not yet emitted (`emit: final`); Kafka Streams serializes a
/// time window's key as the record key, then its start.
fn pending_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
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
    store_time: i64,
    /// Windows starting before it were dropped (a segment boundary).
    expired_before: i64,
}

/// What a record does to its key's windows (the state of Kafka Streams'
/// `processReverse` and `processEarly`).
struct Scan {
    start_times: HashSet<i64>,
    left: Option<Bytes>,
    right: Option<Bytes>,
    left_created: bool,
    right_created: bool,
    previous: Option<i64>,
}

/// The record being processed, for the window updates it makes.
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

    fn segment_of(&self, s: &Shared, start: i64) -> i64 {
        start.div_euclid(segment_ms(s.window.retention_ms))
    }

    fn window_key(&self, s: &Shared, key: &[u8], start: i64) -> Vec<u8> {
        let mut k = keyed_prefix(WINDOW, self.segment_of(s, start), key);
        k.extend_from_slice(&sortable(start));
        k
    }

    /// `key`'s windows starting in `[from, to]`, by start, ascending.
    fn fetch(
        &self,
        s: &mut Shared,
        key: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Bytes)>, OperatorError> {
        let horizon = self
            .store_time
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
            &mut |_, start, v| {
                found.push((from_sortable(start), Bytes::copy_from_slice(v)));
            },
        )?;
        Ok(found)
    }

    /// Writes window `start` of `key` with accumulator `acc` (and, with
    /// `emit: final`, marks it pending).
    fn put(
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

    /// Kafka Streams' `updateWindowAndForward`: folds the record into window
    /// `start` (whose accumulator is `acc`, `None` for a new one) if the
    /// window is still open, else counts it skipped. `false`: the record
    /// could not be folded (a failure was written).
    fn update(
        &mut self,
        s: &mut Shared,
        r: &Current<'_>,
        start: i64,
        acc: Option<&[u8]>,
        out: &mut StepOutput,
    ) -> Result<bool, OperatorError> {
        let end = start + self.td;
        let close = s.stream_time.saturating_sub(s.window.grace_ms);
        if end < close {
            out.late_windows += 1;
            return Ok(true);
        }
        s.next.clear();
        let folded =
            match s
                .fold
                .builtin()
                .add(acc, r.value, r.record.timestamp, &mut s.next, &mut s.values)
            {
                Ok(folded) => folded,
                Err(reason) => {
                    out.failures.push(Failure {
                        input: r.input,
                        kind: FailureKind::Field,
                        reason,
                    });
                    return Ok(false);
                }
            };
        let next = Bytes::copy_from_slice(&s.next);
        self.put(s, r.key, start, next)?;
        if s.emit != Emit::Final {
            s.emit(
                out,
                r.input,
                r.key,
                (start, end),
                Some(folded.value),
                folded.timestamp,
                r.record,
            );
        }
        Ok(true)
    }

    /// Kafka Streams' `createCurrentRecordRightWindow`: the record's right
    /// window starts with the aggregate of the window found after it (the
    /// records there are the ones after this record), without this record.
    fn create_right_window(
        &mut self,
        s: &mut Shared,
        r: &Current<'_>,
        right: Bytes,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let start = r.record.timestamp + 1;
        let timestamp = acc_time(&right)?;
        let shown = split_stored(&right)
            .map(|(_, state)| s.fold.builtin().shown(state))
            .expect("checked by acc_time")
            .map_err(OperatorError::internal)?;
        self.put(s, r.key, start, right)?;
        if s.emit != Emit::Final {
            s.emit(
                out,
                r.input,
                r.key,
                (start, start + self.td),
                Some(shown),
                timestamp,
                r.record,
            );
        }
        Ok(())
    }

    /// Folds one record (with a key and a value) into its key's windows.
    pub(super) fn add(
        &mut self,
        s: &mut Shared,
        input: u32,
        record: &Record,
        key: &Bytes,
        value: &Bytes,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let ts = record.timestamp;
        let close = s.stream_time.saturating_sub(s.window.grace_ms);
        if ts.saturating_add(self.td) < close {
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
            return Ok(());
        }
        let r = Current {
            input,
            record,
            key,
            value,
        };
        if ts < self.td {
            return self.add_early(s, &r, out);
        }
        let mut scan = Scan {
            start_times: HashSet::new(),
            left: None,
            right: None,
            left_created: false,
            right_created: false,
            previous: None,
        };
        let windows = self.fetch(s, key, (ts - 2 * self.td).max(0), ts + 1)?;
        for (start, acc) in windows.into_iter().rev() {
            scan.start_times.insert(start);
            let end = start + self.td;
            let max_ts = acc_time(&acc)?;
            if start == ts + 1 {
                scan.right_created = true;
            } else if end > ts {
                if scan.right.is_none() {
                    scan.right = Some(acc.clone());
                }
                if !self.update(s, &r, start, Some(&acc[..]), out)? {
                    return Ok(());
                }
            } else if end == ts {
                scan.left_created = true;
                if !self.update(s, &r, start, Some(&acc[..]), out)? {
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
        self.create_windows(s, &r, scan, out)
    }

    /// Kafka Streams' `createWindows`: the previous record's right window,
    /// this record's left window, and its right window, as needed.
    fn create_windows(
        &mut self,
        s: &mut Shared,
        r: &Current<'_>,
        scan: Scan,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let ts = r.record.timestamp;
        if let Some(previous) = scan.previous {
            let start = previous + 1;
            if !scan.start_times.contains(&start)
                && start + self.td >= ts
                && !self.update(s, r, start, None, out)?
            {
                return Ok(());
            }
        }
        if !scan.left_created {
            let left_not_empty = scan.previous.is_some_and(|p| ts - self.td <= p);
            let acc = match (&scan.left, left_not_empty) {
                // The window before, as the start of this one, with this
                // record's time.
                (Some(left), true) => {
                    let mut acc = left.to_vec();
                    acc[..8].copy_from_slice(&ts.to_le_bytes());
                    Some(acc)
                }
                _ => None,
            };
            if !self.update(s, r, ts - self.td, acc.as_deref(), out)? {
                return Ok(());
            }
        }
        if !scan.right_created
            && let Some(right) = scan.right
            && acc_time(&right)? > ts
        {
            self.create_right_window(s, r, right, out)?;
        }
        Ok(())
    }

    /// Kafka Streams' `processEarly`: a record before `td`, whose windows
    /// share `[0, td]`.
    fn add_early(
        &mut self,
        s: &mut Shared,
        r: &Current<'_>,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let ts = r.record.timestamp;
        let mut combined: Option<Bytes> = None;
        let mut right: Option<Bytes> = None;
        let mut right_created = false;
        let mut start_times = HashSet::new();
        let mut previous = None;
        for (start, acc) in self.fetch(s, r.key, 0, ts + 1)? {
            start_times.insert(start);
            let max_ts = acc_time(&acc)?;
            if start == 0 {
                if max_ts < ts {
                    previous = Some(max_ts);
                }
                combined = Some(acc);
            } else if start <= ts {
                right = Some(acc.clone());
                if !self.update(s, r, start, Some(&acc[..]), out)? {
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
            && acc_time(c)? > ts
        {
            right = Some(c.clone());
        }
        if !right_created
            && let Some(right) = right
            && acc_time(&right)? > ts
        {
            self.create_right_window(s, r, right, out)?;
        }
        if let Some(previous) = previous
            && !start_times.contains(&(previous + 1))
            && !self.update(s, r, previous + 1, None, out)?
        {
            return Ok(());
        }
        self.update(s, r, 0, combined.as_deref(), out)?;
        Ok(())
    }

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
