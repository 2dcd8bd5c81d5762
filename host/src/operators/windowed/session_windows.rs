//! Session windows (Kafka Streams' `SessionWindows`, as
//! `KStreamSessionWindowAggregate` runs them): a key's records at most
//! `gap` apart make one session, from its first record's time to its last's
//! (both included). A record starts a session of its own, or joins the
//! sessions of its key that end no earlier than `gap` before it and start
//! no later than `gap` after it: those are merged (their accumulators
//! through [`Fold::merge`], in order of end, then start), each emitted as a
//! tombstone (`emit: changes`), and the merged session with the record in
//! it takes their place. A session closes when stream time passes its end
//! plus gap plus grace; a record whose merged session would end before
//! that is late. Results take the session's end as their timestamp.
//!
//! Keys:
//! - sessions: `[3][segment of end][key length][key][end][start]`, so a
//!   key's sessions in a segment are one range, in the order Kafka Streams
//!   finds them, and a segment (of end times) is dropped whole;
//! - with `emit: final`, the sessions not yet emitted:
//!   `[4][end][key][start]`, in the order `suppress(untilWindowCloses)`
//!   emits them (end, then key), removed once emitted.
//!
//! [`Fold::merge`]: crate::operators::aggregate::Fold::merge

use bytes::Bytes;

use super::{
    Shared, delete_before, emit_pending, from_sortable, keyed_prefix, pending_through, scan_keyed,
    segment_ms, sortable,
};
use crate::operators::failure::{Failure, FailureKind};
use crate::operators::operator::OperatorError;
use crate::operators::plugin_step::StepOutput;
use crate::pipeline::Emit;
use crate::record::Record;

pub(super) const SESSION: u8 = 3;
const PENDING: u8 = 4;

/// A session's store key (`segment` of its end).
pub(super) fn session_key(segment: i64, key: &[u8], start: i64, end: i64) -> Vec<u8> {
    let mut k = keyed_prefix(SESSION, segment, key);
    k.extend_from_slice(&sortable(end));
    k.extend_from_slice(&sortable(start));
    k
}

/// A session not yet emitted (`emit: final`); Kafka Streams serializes a
/// session's key as the record key, its end, then its start.
pub(super) fn pending_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
    super::pending_key(PENDING, end, key, &[end, start])
}

/// The store range of the pending sessions.
pub(super) fn pending_range() -> (Vec<u8>, Vec<u8>) {
    (vec![PENDING], vec![PENDING + 1])
}

/// Whether a stored key is a pending session's (`emit: final`).
pub(super) fn is_pending(stored: &[u8]) -> bool {
    stored.first() == Some(&PENDING)
}

/// The record key, start and end of a stored session's key or of a pending
/// one.
pub(super) fn split_stored_key(stored: &[u8]) -> Option<(&[u8], i64, i64)> {
    match *stored.first()? {
        SESSION => {
            let len = u32::from_be_bytes(stored.get(9..13)?.try_into().ok()?) as usize;
            let key = stored.get(13..13 + len)?;
            let times = stored.get(13 + len..)?;
            (times.len() == 16)
                .then(|| (key, from_sortable(&times[8..]), from_sortable(&times[..8])))
        }
        PENDING if stored.len() >= 25 => {
            let end = from_sortable(&stored[1..9]);
            let start = &stored[stored.len() - 8..];
            let start = i64::from_be_bytes(start.try_into().expect("8 bytes"));
            Some((&stored[9..stored.len() - 16], start, end))
        }
        _ => None,
    }
}

/// Session windows, and what they keep beyond the shared state.
pub(super) struct SessionWindows {
    pub(super) gap_ms: i64,
    /// The largest end of a session written: the store's own stream time,
    /// which (as in Kafka Streams' session stores) a record's own time
    /// reaches only once its session is written.
    pub(super) store_time: i64,
    /// Sessions ending before it were dropped (a segment boundary).
    expired_before: i64,
}

/// A session found for a record: its store key, bounds and accumulator.
pub(super) struct Found {
    pub stored: Vec<u8>,
    pub start: i64,
    pub end: i64,
    pub acc: Bytes,
}

/// The first end of a session a store at `store_time` shows.
pub(super) fn horizon(store_time: i64, retention_ms: i64) -> i64 {
    store_time.saturating_sub(retention_ms).saturating_add(1)
}

impl SessionWindows {
    pub(super) fn new(gap_ms: i64) -> Self {
        SessionWindows {
            gap_ms,
            store_time: i64::MIN,
            expired_before: i64::MIN,
        }
    }

    /// After a restart: the step's stream time is as far as any session
    /// written went.
    pub(super) fn load(&mut self, s: &Shared) {
        self.store_time = s.stream_time;
    }

    pub(super) fn segment_of(&self, s: &Shared, end: i64) -> i64 {
        end.div_euclid(segment_ms(s.window.retention_ms))
    }

    /// `key`'s sessions that end at or after `earliest_end` and start at or
    /// before `latest_start`, in order of end, then start, when the store's
    /// time is `store_time`. Sessions past the retention (ending before the
    /// store's time less the retention, plus one) are not found even while
    /// their segment is kept, as Kafka Streams' session stores hide them: a
    /// record after a closed session starts a new one.
    pub(super) fn find(
        &self,
        s: &mut Shared,
        store_time: i64,
        key: &[u8],
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<Found>, OperatorError> {
        let horizon = horizon(store_time, s.window.retention_ms);
        let earliest_end = earliest_end.max(horizon);
        let first = self
            .segment_of(s, earliest_end)
            .max(self.segment_of(s, self.expired_before));
        // No session ends after stream time (its end is a record's time).
        let last = self.segment_of(s, s.stream_time);
        let mut found = Vec::new();
        let segments = first..=last;
        scan_keyed(
            s,
            SESSION,
            key,
            segments,
            earliest_end,
            None,
            &mut |k, times, v| {
                let (end, start) = (from_sortable(&times[..8]), from_sortable(&times[8..]));
                if start <= latest_start {
                    found.push(Found {
                        stored: k.to_vec(),
                        start,
                        end,
                        acc: Bytes::copy_from_slice(v),
                    });
                }
            },
        )?;
        Ok(found)
    }

    /// Folds one record (with a key) into its session, merging the
    /// sessions it bridges.
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
        let close = s
            .stream_time
            .saturating_sub(s.window.grace_ms)
            .saturating_sub(self.gap_ms);
        let found = self.find(
            s,
            self.store_time,
            key,
            ts.saturating_sub(self.gap_ms),
            ts.saturating_add(self.gap_ms),
        )?;
        let (mut start, mut end) = (ts, ts);
        for f in &found {
            start = start.min(f.start);
            end = end.max(f.end);
        }
        if end < close {
            self.report_late(s, input, ts, start, end, out);
            return Ok(());
        }
        let fail = |out: &mut StepOutput, reason: String| {
            out.failures.push(Failure {
                input,
                kind: FailureKind::Field,
                reason,
            });
        };
        // The sessions' accumulators merged in the order found, then the
        // record folded in.
        let mut acc: Option<Vec<u8>> = None;
        for f in &found {
            acc = Some(match acc {
                None => f.acc.to_vec(),
                Some(earlier) => {
                    s.next.clear();
                    if let Err(reason) =
                        s.fold
                            .builtin()
                            .merge(&earlier, &f.acc, &mut s.next, &mut s.values)
                    {
                        fail(out, reason);
                        return Ok(());
                    }
                    std::mem::take(&mut s.next)
                }
            });
        }
        s.next.clear();
        let folded =
            match s
                .fold
                .builtin()
                .add(acc.as_deref(), value, ts, &mut s.next, &mut s.values)
            {
                Ok(folded) => folded,
                Err(reason) => {
                    fail(out, reason);
                    return Ok(());
                }
            };
        let merged = (start, end) != (ts, ts);
        for f in &found {
            if !merged {
                // A session of exactly this record's time: replaced below.
                break;
            }
            s.store.delete(&f.stored)?;
            if s.emit == Emit::Final {
                let pending = pending_key(key, f.start, f.end);
                s.pending_delete(&pending)?;
                s.store.delete(&pending)?;
            } else {
                s.emit(out, input, key, (f.start, f.end), None, f.end, record);
            }
        }
        let segment = self.segment_of(s, end);
        self.store_time = self.store_time.max(end);
        s.store.put(
            &session_key(segment, key, start, end),
            Bytes::copy_from_slice(&s.next),
        )?;
        if s.emit == Emit::Final {
            let pending = pending_key(key, start, end);
            s.pending_put(&pending)?;
            s.store.put(&pending, Bytes::new())?;
        } else {
            s.emit(
                out,
                input,
                key,
                (start, end),
                Some(folded.value),
                end,
                record,
            );
        }
        Ok(())
    }

    /// Emits every session closed by stream time (or by `until`, when
    /// given) and not emitted yet, in order of end, then key, then start.
    pub(super) fn emit_closed(
        &mut self,
        s: &mut Shared,
        until: Option<i64>,
        input: u32,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let close = until.unwrap_or_else(|| {
            s.stream_time
                .saturating_sub(s.window.grace_ms)
                .saturating_sub(self.gap_ms)
        });
        for p in pending_through(s, PENDING, close)? {
            let (key, start, end) = split_stored_key(&p).ok_or_else(|| {
                OperatorError::internal("a pending session's key without its bounds")
            })?;
            let stored = session_key(self.segment_of(s, end), key, start, end);
            // A session's result takes its end as its timestamp.
            emit_pending(s, out, input, key, (start, end), &stored, Some(end), &p)?;
        }
        Ok(())
    }

    /// Drops the sessions that end before `cutoff` (a segment boundary).
    pub(super) fn expire(&mut self, s: &mut Shared, cutoff: i64) -> Result<(), OperatorError> {
        if cutoff <= self.expired_before {
            return Ok(());
        }
        delete_before(s, SESSION, self.segment_of(s, cutoff))?;
        self.expired_before = cutoff;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{count, rec, shown};
    use crate::operators::plugin_step::StepOutput;
    use crate::operators::{AtEnd, Operator};
    use crate::pipeline::{Emit, WindowKind};

    #[test]
    fn a_record_between_two_sessions_merges_them() {
        let mut w = count(WindowKind::Session { gap_ms: 5 }, 10, Emit::EveryUpdate);
        let mut out = StepOutput::default();
        let batch = [
            rec("a", 0),
            rec("a", 10),
            rec("a", 5),
            rec("b", 30),
            rec("a", 2),
        ];
        w.process_batch(0, &batch, &mut out).unwrap();
        assert_eq!(
            shown(&out),
            vec![
                r#"{"key":"a","start":0,"end":0} {"n":1} @0"#,
                r#"{"key":"a","start":10,"end":10} {"n":1} @10"#,
                // 5 is within 5 of both: they merge.
                r#"{"key":"a","start":0,"end":0} null @0"#,
                r#"{"key":"a","start":10,"end":10} null @10"#,
                r#"{"key":"a","start":0,"end":10} {"n":3} @10"#,
                r#"{"key":"b","start":30,"end":30} {"n":1} @30"#,
            ]
        );
        // At 30, [0,10] has closed (at 10 plus 5 of gap and 10 of grace)
        // and is past its retention: 2 starts a session of its own, which
        // is late.
        assert_eq!(out.late.len(), 1);
        assert!(
            out.late[0].reason.contains("[2,2]"),
            "{}",
            out.late[0].reason
        );
    }

    #[test]
    fn emit_final_writes_each_session_once_it_closes() {
        let mut w = count(WindowKind::Session { gap_ms: 5 }, 2, Emit::Final);
        let mut out = StepOutput::default();
        let batch = [
            rec("a", 0),
            rec("b", 3),
            rec("a", 4),
            rec("a", 11),
            rec("b", 12),
        ];
        w.process_batch(0, &batch, &mut out).unwrap();
        // At 11: a's [0,4] closes at 4 + 5 + 2 = 11; b's [3,3] at 10.
        assert_eq!(
            shown(&out),
            vec![
                r#"{"key":"b","start":3,"end":3} {"n":1} @3"#,
                r#"{"key":"a","start":0,"end":4} {"n":2} @4"#,
            ]
        );
        out.clear();
        w.on_end_of_input(&AtEnd::default(), &mut out).unwrap();
        assert_eq!(
            shown(&out),
            vec![
                r#"{"key":"a","start":11,"end":11} {"n":1} @11"#,
                r#"{"key":"b","start":12,"end":12} {"n":1} @12"#,
            ]
        );
    }
}
