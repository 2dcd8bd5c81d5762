//! Sliding windows folded by an aggregator plugin: Kafka Streams'
//! `windowedBy(SlidingWindows...).aggregate(init, aggregator)` with the
//! plugin as the aggregator.
//!
//! A record updates the windows of its key that hold it, and makes its
//! own: a left window that may start from the aggregate of the window
//! before it, a right window that copies the aggregate of the records
//! after it (see `sliding_windows.rs`). Which windows those are depends
//! only on times (windows' bounds and the largest record time in each),
//! so a batch is planned first, record by record, by the same steps as the
//! built-in fold ([`slide`]), against the store as it was before the batch
//! and what the plan has written since. Each window's accumulator is a
//! value of a [`FoldGraph`]: the record added to the window's value (or to
//! none, for a new window), or a copy of another window's value. The graph
//! is computed in as few plugin calls as its dependencies allow (records in
//! time order chain into one call), then the plan is applied record by
//! record as the built-in path would have.
//!
//! A record is folded into all of its windows or none: when the plugin
//! fails it in any window, it changes nothing, and the rest of the batch is
//! planned again without it (reusing every value already computed), as
//! after a window whose accumulator the plugin removed (deleted, a
//! tombstone downstream).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::Shared;
use super::fold_graph::{BatchPlan, FoldGraph, NONE, Value, ValueId, plugin_version};
use super::plugin_windows::stored_value;
use super::sliding_windows::{KeyWindows, SlidingWindows, slide};
use crate::operators::aggregate::{split_stored, versioned};
use crate::operators::failure::{Failure, FailureKind};
use crate::operators::operator::OperatorError;
use crate::operators::plugin_step::StepOutput;
use crate::pipeline::Emit;
use crate::record::Record;

/// A window as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Planned {
    /// The largest record time folded into it (its result's timestamp).
    max_ts: i64,
    /// Its accumulator.
    value: ValueId,
}

/// A window a record writes, in the order it writes them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Write {
    start: i64,
    window: Planned,
}

/// What a record does to its key's windows.
pub(super) enum Op {
    /// It is late: its own window has closed.
    Late,
    /// It failed, and changed nothing; it fell in `skipped` closed windows.
    Failed {
        kind: FailureKind,
        reason: String,
        skipped: u64,
    },
    /// It writes `writes`, and fell in `skipped` closed windows.
    Slide { writes: Vec<Write>, skipped: u64 },
}

/// The store as the plan sees it: each key's windows written by the batch
/// (`None`: deleted), and the store's time.
#[derive(Debug, Clone)]
pub(super) struct Overlay {
    keys: HashMap<Bytes, BTreeMap<i64, Option<Planned>>>,
    store_time: i64,
}

impl Overlay {
    fn write(&mut self, key: &Bytes, start: i64, window: Option<Planned>) {
        self.keys
            .entry(key.clone())
            .or_default()
            .insert(start, window);
        self.store_time = self.store_time.max(start);
    }
}

/// The planner's reach into one key's windows, for [`slide`].
struct Planning<'a> {
    w: &'a SlidingWindows,
    s: &'a mut Shared,
    graph: &'a mut FoldGraph,
    overlay: &'a mut Overlay,
    key: &'a Bytes,
    input: u32,
    ts: i64,
    /// The state version the running plugin reads.
    current: u32,
    writes: Vec<Write>,
    skipped: u64,
}

impl Planning<'_> {
    fn write(&mut self, start: i64, window: Planned) {
        self.overlay.write(self.key, start, Some(window));
        self.writes.push(Write { start, window });
    }
}

impl KeyWindows for Planning<'_> {
    type Acc = Planned;

    fn fetch(&mut self, from: i64, to: i64) -> Result<Vec<(i64, Planned)>, OperatorError> {
        let store_time = self.overlay.store_time;
        let written = self.overlay.keys.get(self.key);
        let mut found = BTreeMap::new();
        for (start, stored, value) in self.w.fetch(self.s, store_time, self.key, from, to)? {
            if written.is_some_and(|w| w.contains_key(&start)) {
                continue;
            }
            let (max_ts, _) = split_stored(&value)
                .ok_or_else(|| OperatorError::internal("a window's value without its timestamp"))?;
            let current = self.current;
            let value = self.graph.stored(&stored, || stored_value(&value, current));
            found.insert(start, Planned { max_ts, value });
        }
        let horizon = store_time
            .saturating_sub(self.s.window.retention_ms)
            .saturating_add(1);
        if let Some(written) = written
            && from.max(horizon) <= to
        {
            for (&start, window) in written.range(from.max(horizon)..=to) {
                if let Some(window) = window {
                    found.insert(start, *window);
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    fn acc_time(&self, acc: &Planned) -> Result<i64, OperatorError> {
        Ok(acc.max_ts)
    }

    fn restamped(&self, acc: &Planned, ts: i64) -> Planned {
        Planned {
            max_ts: ts,
            value: acc.value,
        }
    }

    fn skipped(&mut self) {
        self.skipped += 1;
    }

    fn fold(&mut self, start: i64, acc: Option<&Planned>) -> Result<bool, OperatorError> {
        let window = Planned {
            max_ts: acc.map_or(self.ts, |a| a.max_ts.max(self.ts)),
            value: self.graph.add(acc.map_or(NONE, |a| a.value), self.input),
        };
        self.write(start, window);
        Ok(true)
    }

    fn create_right(&mut self, start: i64, acc: Planned) -> Result<(), OperatorError> {
        self.write(start, acc);
        Ok(())
    }
}

impl BatchPlan for SlidingWindows {
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
        let ts = record.timestamp;
        if self.is_late(s, ts) {
            return Ok(Op::Late);
        }
        let close = s.stream_time.saturating_sub(s.window.grace_ms);
        let mut planning = Planning {
            w: self,
            current: plugin_version(s),
            s,
            graph,
            overlay,
            key,
            input,
            ts,
            writes: Vec::new(),
            skipped: 0,
        };
        slide(&mut planning, self.td(), ts, close)?;
        Ok(Op::Slide {
            writes: planning.writes,
            skipped: planning.skipped,
        })
    }

    fn values(op: &Op, into: &mut Vec<ValueId>) {
        if let Op::Slide { writes, .. } = op {
            into.extend(writes.iter().map(|w| w.window.value));
        }
    }

    fn keep(
        op: Op,
        graph: &FoldGraph,
        kept: &mut Overlay,
        key: &Bytes,
    ) -> Result<(Op, bool), OperatorError> {
        let Op::Slide { writes, skipped } = op else {
            return Ok((op, false));
        };
        let failed = writes
            .iter()
            .find_map(|w| match graph.value(w.window.value) {
                Value::Failed { kind, reason } => Some((*kind, reason.clone())),
                _ => None,
            });
        if let Some((kind, reason)) = failed {
            let failed = Op::Failed {
                kind,
                reason,
                skipped,
            };
            return Ok((failed, true));
        }
        let mut removed = false;
        for w in &writes {
            match graph.value(w.window.value) {
                Value::Ok(Some(_)) => kept.write(key, w.start, Some(w.window)),
                Value::Ok(None) => {
                    kept.write(key, w.start, None);
                    removed = true;
                }
                _ => {
                    return Err(OperatorError::internal(
                        "a sliding window's fold was planned and not computed",
                    ));
                }
            }
        }
        Ok((Op::Slide { writes, skipped }, removed))
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
            Op::Late => self.report_late(s, input, record.timestamp, out),
            Op::Failed {
                kind,
                reason,
                skipped,
            } => {
                out.late_windows += skipped;
                out.failures.push(Failure {
                    input,
                    kind,
                    reason,
                });
            }
            Op::Slide { writes, skipped } => {
                out.late_windows += skipped;
                let key = record.key.as_ref().expect("a folded record has a key");
                let current = plugin_version(s);
                for w in writes {
                    let Value::Ok(acc) = graph.value(w.window.value) else {
                        unreachable!("kept folds succeeded")
                    };
                    let timestamp = w.window.max_ts;
                    match acc {
                        Some(acc) => {
                            let stored = versioned(timestamp, current, acc);
                            self.put(s, key, w.start, stored)?;
                        }
                        None => self.delete(s, key, w.start)?,
                    }
                    if s.emit != Emit::Final {
                        let window = (w.start, w.start + self.td());
                        s.emit(out, input, key, window, acc.clone(), timestamp, record);
                    }
                }
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
        SlidingWindows::emit_closed(self, s, None, input, out)
    }
}
