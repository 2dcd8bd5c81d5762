//! Session windows folded by an aggregator plugin: Kafka Streams'
//! `windowedBy(SessionWindows...).aggregate(init, aggregator, merger)` with
//! the plugin's `add` as the aggregator and its `merge` as the merger.
//!
//! Which sessions a record finds, merges and makes depends only on times,
//! so a batch is planned first, record by record in batch order, against
//! the store as it was before the batch and what the plan has changed
//! since (per key, the stored sessions merged away and the sessions
//! made). Each record's new accumulator is a value of a [`FoldGraph`]: the
//! sessions it bridges merged in the order found (end, then start), then
//! the record added, exactly as the built-in folds do it. The graph is
//! computed in as few plugin calls as its dependencies allow (one, for
//! records in time order), then the plan is applied record by record, as
//! the built-in path would have: sessions merged away deleted (and
//! emitted as tombstones, `emit: changes`), the new session stored and
//! emitted, stream time replayed so `emit: final` emits what each record
//! closes.
//!
//! The plan assumes every fold succeeds. When one does not (a failed
//! record, which changes nothing, or an accumulator the plugin removed,
//! which deletes its session), the plan holds up to that record, and the
//! rest of the batch is planned again from there; values already computed
//! are reused (see [`FoldGraph`]).
//!
//! Sessions are stored as built-in sessions are, the value being the
//! session's end, the plugin's state version and its accumulator.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::fold_graph::{BatchPlan, FoldGraph, NONE, Value, ValueId, plugin_version};
use super::plugin_windows::stored_value;
use super::session_windows::{SessionWindows, horizon, pending_key, session_key};
use super::{Shared, push_late};
use crate::operators::aggregate::versioned;
use crate::operators::failure::{Failure, FailureKind};
use crate::operators::operator::OperatorError;
use crate::operators::plugin_step::StepOutput;
use crate::pipeline::Emit;
use crate::record::Record;

/// A session as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Planned {
    start: i64,
    end: i64,
    /// Its accumulator.
    value: ValueId,
    /// Whether it is in the store (else the batch made it).
    stored: bool,
}

/// What a record does to its key's sessions.
pub(super) enum Op {
    /// It is late: its session `[start, end]` has closed.
    Late { start: i64, end: i64 },
    /// It failed, and changed nothing.
    Failed { kind: FailureKind, reason: String },
    /// It merges `found` (in order) into a session `[start, end]` with it,
    /// whose accumulator is `value`.
    Fold {
        found: Vec<Planned>,
        start: i64,
        end: i64,
        value: ValueId,
    },
}

/// What the plan has changed of one key's sessions.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyChanges {
    /// Stored sessions merged away, by bounds.
    gone: HashSet<(i64, i64)>,
    /// Sessions the batch made and still has.
    made: Vec<Planned>,
}

/// The store as the plan sees it: what changed, and the store's time.
#[derive(Debug, Clone)]
pub(super) struct Overlay {
    keys: HashMap<Bytes, KeyChanges>,
    store_time: i64,
}

impl Overlay {
    /// `key`'s `found` sessions replaced by `made` (`None`: by nothing,
    /// the plugin removed its accumulator) ending at `end`.
    fn replace(&mut self, key: &Bytes, found: &[Planned], made: Option<Planned>, end: i64) {
        let changes = self.keys.entry(key.clone()).or_default();
        for f in found {
            if f.stored {
                changes.gone.insert((f.start, f.end));
            } else {
                changes
                    .made
                    .retain(|m| (m.start, m.end) != (f.start, f.end));
            }
        }
        changes.made.extend(made);
        self.store_time = self.store_time.max(end);
    }
}

impl BatchPlan for SessionWindows {
    type Op = Op;
    type Overlay = Overlay;

    fn plan(
        &self,
        s: &mut Shared,
        graph: &mut FoldGraph,
        overlay: &mut Overlay,
        input: u32,
        record: &Record,
        key: &Bytes,
    ) -> Result<Op, OperatorError> {
        let current = plugin_version(s);
        let ts = record.timestamp;
        let (earliest_end, latest_start) = (
            ts.saturating_sub(self.gap_ms),
            ts.saturating_add(self.gap_ms),
        );
        let changes = overlay.keys.get(key);
        let mut found: Vec<Planned> = Vec::new();
        for f in self.find(s, overlay.store_time, key, earliest_end, latest_start)? {
            if changes.is_some_and(|c| c.gone.contains(&(f.start, f.end))) {
                continue;
            }
            let value = graph.stored(&f.stored, || stored_value(&f.acc, current));
            found.push(Planned {
                start: f.start,
                end: f.end,
                value,
                stored: true,
            });
        }
        let shown_from = earliest_end.max(horizon(overlay.store_time, s.window.retention_ms));
        if let Some(c) = changes {
            found.extend(
                c.made
                    .iter()
                    .filter(|m| m.end >= shown_from && m.start <= latest_start),
            );
        }
        found.sort_by_key(|f| (f.end, f.start));
        let (mut start, mut end) = (ts, ts);
        for f in &found {
            start = start.min(f.start);
            end = end.max(f.end);
        }
        let close = s
            .stream_time
            .saturating_sub(s.window.grace_ms)
            .saturating_sub(self.gap_ms);
        if end < close {
            return Ok(Op::Late { start, end });
        }
        let mut acc = found.first().map_or(NONE, |f| f.value);
        for f in found.iter().skip(1) {
            acc = graph.merge(acc, f.value, input);
        }
        let value = graph.add(acc, input);
        let made = Planned {
            start,
            end,
            value,
            stored: false,
        };
        overlay.replace(key, &found, Some(made), end);
        Ok(Op::Fold {
            found,
            start,
            end,
            value,
        })
    }

    fn values(op: &Op, into: &mut Vec<ValueId>) {
        if let Op::Fold { value, .. } = op {
            into.push(*value);
        }
    }

    fn keep(
        op: Op,
        graph: &FoldGraph,
        kept: &mut Overlay,
        key: &Bytes,
    ) -> Result<(Op, bool), OperatorError> {
        let Op::Fold {
            found,
            start,
            end,
            value,
        } = op
        else {
            return Ok((op, false));
        };
        let made = Planned {
            start,
            end,
            value,
            stored: false,
        };
        let fold = |found| Op::Fold {
            found,
            start,
            end,
            value,
        };
        match graph.value(value) {
            Value::Ok(Some(_)) => {
                kept.replace(key, &found, Some(made), end);
                Ok((fold(found), false))
            }
            Value::Ok(None) => {
                kept.replace(key, &found, None, end);
                Ok((fold(found), true))
            }
            Value::Failed { kind, reason } => Ok((
                Op::Failed {
                    kind: *kind,
                    reason: reason.clone(),
                },
                true,
            )),
            Value::Pending => Err(OperatorError::internal(
                "a session's fold was planned and not computed",
            )),
        }
    }

    fn overlay(&self) -> Overlay {
        Overlay {
            keys: HashMap::new(),
            store_time: self.store_time,
        }
    }

    fn apply(
        &mut self,
        s: &mut Shared,
        graph: &FoldGraph,
        input: u32,
        record: &Record,
        op: Op,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        match op {
            Op::Late { start, end } => {
                self.report_late(s, input, record.timestamp, start, end, out);
            }
            Op::Failed { kind, reason } => out.failures.push(Failure {
                input,
                kind,
                reason,
            }),
            Op::Fold {
                found,
                start,
                end,
                value,
            } => {
                let Value::Ok(acc) = graph.value(value) else {
                    unreachable!("kept folds succeeded")
                };
                let key = record.key.as_ref().expect("a folded record has a key");
                let current = plugin_version(s);
                let acc = acc.clone();
                self.apply_fold(
                    s,
                    input,
                    record,
                    key,
                    &found,
                    (start, end),
                    acc,
                    current,
                    out,
                )?;
            }
        }
        Ok(())
    }

    fn emit_closed(
        &mut self,
        s: &mut Shared,
        input: u32,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        SessionWindows::emit_closed(self, s, None, input, out)
    }
}

impl SessionWindows {
    /// Stores and emits what record `input` did: the sessions it merged
    /// deleted, and its session `made` with accumulator `acc` (`None`: the
    /// plugin removed it).
    #[allow(clippy::too_many_arguments)]
    fn apply_fold(
        &mut self,
        s: &mut Shared,
        input: u32,
        record: &Record,
        key: &Bytes,
        found: &[Planned],
        made: (i64, i64),
        acc: Option<Bytes>,
        current: u32,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let ts = record.timestamp;
        let (start, end) = made;
        let merged = made != (ts, ts);
        for f in found {
            if !merged && acc.is_some() {
                // A session of exactly this record's time: replaced below.
                break;
            }
            s.store
                .delete(&session_key(self.segment_of(s, f.end), key, f.start, f.end))?;
            if s.emit == Emit::Final {
                let pending = pending_key(key, f.start, f.end);
                s.pending_delete(&pending)?;
                s.store.delete(&pending)?;
            } else if merged {
                s.emit(out, input, key, (f.start, f.end), None, f.end, record);
            }
        }
        self.store_time = self.store_time.max(end);
        match acc {
            Some(acc) => {
                let at = session_key(self.segment_of(s, end), key, start, end);
                s.store.put(&at, versioned(end, current, &acc))?;
                if s.emit == Emit::Final {
                    let pending = pending_key(key, start, end);
                    s.pending_put(&pending)?;
                    s.store.put(&pending, Bytes::new())?;
                } else {
                    s.emit(out, input, key, made, Some(acc), end, record);
                }
            }
            None if s.emit != Emit::Final => {
                s.emit(out, input, key, made, None, end, record);
            }
            None => {}
        }
        Ok(())
    }

    /// Reports record `input` late: its session `[start, end]` has closed.
    pub(super) fn report_late(
        &self,
        s: &Shared,
        input: u32,
        ts: i64,
        start: i64,
        end: i64,
        out: &mut StepOutput,
    ) {
        out.late_windows += 1;
        push_late(
            out,
            s,
            input,
            ts,
            format!("session [{start},{end}]"),
            end.saturating_add(self.gap_ms)
                .saturating_add(s.window.grace_ms),
            format!(
                "{} ms of gap and {} ms of grace",
                self.gap_ms, s.window.grace_ms
            ),
        );
    }
}
