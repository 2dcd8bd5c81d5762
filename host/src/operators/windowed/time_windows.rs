//! Time windows (Kafka Streams' `TimeWindows`): windows of `size` starting
//! every `advance` from the epoch (tumbling when the two are equal), each
//! including its start and excluding its end. A record falls in every
//! window that holds its timestamp, as in `KStreamWindowAggregate`; a
//! window closes when stream time reaches its end plus the grace period.
//!
//! Keys: `[1][start][record key]`, the start first, so the windows that
//! close are a range at the front of the store, in the order `emit: final`
//! writes them (end, then key), and expired windows a range before them.

use bytes::Bytes;

use super::{Shared, delete_before, from_sortable, push_late, read_time, sortable, write_time};
use crate::operators::failure::{Failure, FailureKind};
use crate::operators::operator::OperatorError;
use crate::operators::plugin_step::StepOutput;
use crate::record::Record;

/// The first byte of a stored window's key.
pub(super) const WINDOW: u8 = 1;
const EMITTED_THROUGH: &[u8] = b"\0emitted-through";

/// The store key of `key`'s window starting at `start`.
pub(super) fn window_key(start: i64, key: &[u8]) -> Vec<u8> {
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
pub(super) fn split_window_key(stored: &[u8]) -> Option<(i64, &[u8])> {
    match stored {
        [WINDOW, rest @ ..] if rest.len() >= 8 => Some((from_sortable(&rest[..8]), &rest[8..])),
        _ => None,
    }
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

/// Reports the record `input` (at `ts`) late: every window of its had
/// closed, the latest of them `window` (start, end).
pub(super) fn report_late(
    out: &mut StepOutput,
    s: &Shared,
    input: u32,
    ts: i64,
    window: (i64, i64),
) {
    let (start, end) = window;
    push_late(
        out,
        s,
        input,
        ts,
        format!("window [{start},{end})"),
        end.saturating_add(s.window.grace_ms),
        format!("{} ms of grace", s.window.grace_ms),
    );
}

/// Time windows, and what they keep beyond the shared state.
pub(super) struct TimeWindows {
    size_ms: i64,
    advance_ms: i64,
    /// `emit: final`: windows closed by this stream time were emitted.
    emitted_through: i64,
    /// Windows starting before it were dropped (a segment boundary).
    expired_before: i64,
}

impl TimeWindows {
    pub(super) fn new(size_ms: i64, advance_ms: i64) -> Self {
        TimeWindows {
            size_ms,
            advance_ms,
            emitted_through: i64::MIN,
            expired_before: i64::MIN,
        }
    }

    /// The starts of the windows holding `ts`, in order.
    pub(super) fn starts(&self, ts: i64) -> impl Iterator<Item = i64> {
        windows_for(self.size_ms, self.advance_ms, ts)
    }

    /// The store range of the windows whose result is still to come:
    /// those not closed by the stream time emitted through.
    pub(super) fn pending_range(&self) -> (Vec<u8>, Vec<u8>) {
        let from = match self.emitted_through {
            i64::MIN => windows_from(i64::MIN),
            through => windows_from(through.saturating_sub(self.size_ms).saturating_add(1)),
        };
        (from, vec![WINDOW + 1])
    }

    pub(super) fn size_ms(&self) -> i64 {
        self.size_ms
    }

    pub(super) fn load(&mut self, s: &mut Shared) -> Result<(), OperatorError> {
        self.emitted_through = read_time(&mut *s.store, EMITTED_THROUGH)?;
        Ok(())
    }

    /// Folds one record (with a key) into its windows that are open.
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
            let old = s.store.get(&stored)?;
            if old.is_none() && s.emit == crate::pipeline::Emit::Final {
                s.pending_changed(1);
            }
            s.next.clear();
            let folded =
                match s
                    .fold
                    .builtin()
                    .add(old.as_deref(), value, ts, &mut s.next, &mut s.values)
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
            s.store.put(&stored, Bytes::copy_from_slice(&s.next))?;
            folded_any = true;
            if s.emit != crate::pipeline::Emit::Final {
                let window = (start, end);
                s.emit(
                    out,
                    input,
                    key,
                    window,
                    Some(folded.value),
                    folded.timestamp,
                    record,
                );
            }
        }
        if !folded_any && let Some(window) = late {
            report_late(out, s, input, ts, window);
        }
        Ok(())
    }

    /// Emits every window closed by stream time (or by `until`, when
    /// given) and not emitted yet, in order of start (so of end), then key.
    pub(super) fn emit_closed(
        &mut self,
        s: &mut Shared,
        until: Option<i64>,
        input: u32,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let close = until.unwrap_or_else(|| s.stream_time.saturating_sub(s.window.grace_ms));
        // Windows start on multiples of `advance`: unless `close - size`
        // reached another one since the last scan, no window closed (Kafka
        // Streams' `shouldRangeFetch`), and the store is not read.
        let closed_starts = |t: i64| t.saturating_sub(self.size_ms).div_euclid(self.advance_ms);
        if close <= self.emitted_through
            || (self.emitted_through != i64::MIN
                && closed_starts(close) == closed_starts(self.emitted_through))
        {
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
        s.store.range(&from, &to, &mut |k, v| {
            found.push((k.to_vec(), Bytes::copy_from_slice(v)));
            true
        })?;
        let no_record = Record::default();
        s.pending_changed(-(found.len() as i64));
        for (k, stored) in found {
            let (start, key) = split_window_key(&k)
                .ok_or_else(|| OperatorError::internal("a window's key without its start"))?;
            let (timestamp, value) = s.shown(&stored)?;
            let window = (start, start + self.size_ms);
            s.emit(out, input, key, window, Some(value), timestamp, &no_record);
        }
        self.emitted_through = close;
        write_time(&mut *s.store, EMITTED_THROUGH, close)
    }

    /// Drops the windows that start before `cutoff` (a segment boundary).
    pub(super) fn expire(&mut self, s: &mut Shared, cutoff: i64) -> Result<(), OperatorError> {
        if cutoff <= self.expired_before {
            return Ok(());
        }
        delete_before(s, WINDOW, cutoff)?;
        self.expired_before = cutoff;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{count, rec, shown};
    use super::*;
    use crate::operators::{AtEnd, Operator};
    use crate::pipeline::{Emit, WindowKind};

    fn count_windows(
        size: i64,
        advance: i64,
        grace: i64,
        emit: Emit,
    ) -> super::super::WindowedAggregate {
        count(
            WindowKind::Time {
                size_ms: size,
                advance_ms: advance,
            },
            grace,
            emit,
        )
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
        w.on_end_of_input(&AtEnd::default(), &mut out).unwrap();
        assert_eq!(
            shown(&out),
            vec![
                r#"{"key":"a","start":5,"end":15} {"n":2} @11"#,
                r#"{"key":"a","start":10,"end":20} {"n":1} @11"#,
            ]
        );
    }
}
