//! Time windows (tumbling and hopping) folded by an aggregator plugin:
//! Kafka Streams' `windowedBy(TimeWindows...).aggregate(init, aggregator)`
//! with the plugin as the aggregator, called once per batch.
//!
//! A record's windows depend only on its time and on stream time, never on
//! what the plugin answers, so a batch is planned first: stream time at
//! each record, each record's open windows (the others are skipped and
//! counted, and a record with none open is late, as with built-in folds).
//! Each (window, key) is then one group of the plugin's `add` call, with
//! the window's stored accumulator and its records in order; a record in
//! several hopping windows is in several groups (each group sees a copy
//! of it). What comes back is stored, emitted per record and window in
//! that order (`emit: changes`), or, for `emit: final`, stream time is
//! replayed record by record to emit the windows each one closes: a window
//! closed at a record takes no later record of the batch (it would be
//! late), so the value stored after the batch is the one it closed with.
//!
//! The store holds, per window, the largest timestamp folded in, the
//! plugin's state version and its accumulator, as a plugin aggregate's
//! store does. A swap across state versions converts every window at
//! once (`state_versions.rs`), so a window whose stored accumulator is of
//! another state version (one that did not convert, or a pipeline
//! restarted with other code over the same state) fails its records
//! (kind `state`).

use std::collections::HashMap;

use bytes::Bytes;

use super::fold_graph::{Value, failure_in_batch, fold_batch};
use super::time_windows::TimeWindows;
use super::time_windows::{report_late, window_key};
use super::{Shared, WindowFold, WindowedAggregate, Windows};
use crate::operators::aggregate::{split_versioned, versioned};
use crate::operators::failure::{Failure, FailureKind};
use crate::operators::operator::OperatorError;
use crate::operators::plugin_aggregator::{AggregateOutput, Group};
use crate::operators::plugin_step::{Dropped, StepOutput};
use crate::pipeline::Emit;
use crate::record::Record;

/// One record in one of its open windows: an input of the plugin call.
struct Entry {
    /// The record's index in the batch.
    input: u32,
    /// Its window's group.
    group: usize,
}

/// One window of one key in the batch.
struct WindowGroup {
    start: i64,
    key: Bytes,
    /// Its entries, in batch order.
    entries: Vec<u32>,
}

/// Stream time at each record of a batch folded by a plugin, and whether
/// the record is folded: one without a key, or without a value (a plugin
/// is given values, as a plugin aggregate without windows is), is dropped
/// and counted here; a tombstone still moves stream time.
pub(super) fn stream_times(
    s: &mut Shared,
    records: &[Record],
    out: &mut StepOutput,
) -> Vec<(i64, bool)> {
    let mut times = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let input = i as u32;
        if record.key.is_none() {
            out.dropped.push(Dropped {
                input,
                reason: "a null key",
            });
            times.push((s.stream_time, false));
            continue;
        }
        s.stream_time = s.stream_time.max(record.timestamp);
        if record.value.is_none() {
            out.dropped.push(Dropped {
                input,
                reason: "a null value (a tombstone)",
            });
        }
        times.push((s.stream_time, record.value.is_some()));
    }
    times
}

/// Why records whose window's accumulator is of state version `version`
/// fail when the running plugin writes `current`.
pub(super) fn version_mismatch(version: u32, current: u32) -> String {
    format!(
        "the window's stored accumulator is of state version {version}, and the running plugin writes version {current}; a windowed plugin step cannot convert it yet: reset the step's state"
    )
}

/// A stored window's accumulator, as the running plugin (writing state
/// version `current`) reads it.
pub(super) fn stored_value(stored: &[u8], current: u32) -> Value {
    match split_versioned(stored) {
        Some((_, version, acc)) if version == current => {
            Value::Ok(Some(Bytes::copy_from_slice(acc)))
        }
        Some((_, version, _)) => Value::Failed {
            kind: FailureKind::State,
            reason: version_mismatch(version, current),
        },
        None => Value::Failed {
            kind: FailureKind::State,
            reason: "the window's stored value has no state version: it was not written by an aggregator plugin; reset the step's state".into(),
        },
    }
}

impl WindowedAggregate {
    /// Folds a batch into its windows with the step's plugin.
    pub(super) fn plugin_batch(
        &mut self,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let s = &mut self.shared;
        match &mut self.windows {
            Windows::Time(windows) => time_batch(windows, s, records, out),
            Windows::Session(sessions) => fold_batch(sessions, s, records, out),
            Windows::Sliding(sliding) => fold_batch(sliding, s, records, out),
        }
    }
}

/// Folds a batch into its time windows with the step's plugin.
fn time_batch(
    windows: &mut TimeWindows,
    s: &mut Shared,
    records: &[Record],
    out: &mut StepOutput,
) -> Result<(), OperatorError> {
    let size_ms = windows.size_ms();
    // 1. The plan: stream time at each record, and its open windows.
    let stream_times = stream_times(s, records, out);
    let reached = s.stream_time;
    let mut entries: Vec<Entry> = Vec::new();
    let mut groups: Vec<WindowGroup> = Vec::new();
    let mut group_of: HashMap<(i64, &[u8]), usize> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        let input = i as u32;
        let (stream_time, folded) = stream_times[i];
        let (Some(key), true) = (&record.key, folded) else {
            continue;
        };
        s.stream_time = stream_time;
        let ts = record.timestamp;
        let close = s.stream_time.saturating_sub(s.window.grace_ms);
        let (mut late, mut open) = (None, false);
        for start in windows.starts(ts) {
            let end = start + size_ms;
            if end <= close {
                late.get_or_insert((start, end));
                out.late_windows += 1;
                continue;
            }
            open = true;
            let group = *group_of.entry((start, key.as_ref())).or_insert_with(|| {
                groups.push(WindowGroup {
                    start,
                    key: key.clone(),
                    entries: Vec::new(),
                });
                groups.len() - 1
            });
            groups[group].entries.push(entries.len() as u32);
            entries.push(Entry { input, group });
        }
        if !open && let Some(window) = late {
            report_late(out, s, input, ts, window);
        }
    }
    // 2. One plugin call: each window's accumulator and its records.
    let WindowFold::Plugin(plugin) = &mut s.fold else {
        unreachable!("called for a plugin fold")
    };
    let current = plugin.formats().current;
    // Each window's stored timestamp and accumulator, and whether the
    // running plugin reads it.
    let mut stored: Vec<(i64, Option<Bytes>, bool)> = Vec::with_capacity(groups.len());
    let mut failures: Vec<Failure> = Vec::new();
    let mut calls: Vec<Group<'_>> = Vec::with_capacity(groups.len());
    for g in &groups {
        let read = match s.store.get(&window_key(g.start, &g.key))? {
            None => (i64::MIN, None, true),
            Some(value) => {
                let (ts, version, acc) = split_versioned(&value).ok_or_else(|| {
                    OperatorError::internal(
                        "a window's value without its timestamp and state version",
                    )
                })?;
                if version != current {
                    failures.extend(g.entries.iter().map(|&e| Failure {
                        input: entries[e as usize].input,
                        kind: FailureKind::State,
                        reason: version_mismatch(version, current),
                    }));
                    stored.push((ts, None, false));
                    continue;
                }
                (ts, Some(value.slice_ref(acc)), true)
            }
        };
        stored.push(read);
    }
    // Each entry a copy of its record (keys and values are shared).
    let copies: Vec<Record> = entries
        .iter()
        .map(|e| records[e.input as usize].clone())
        .collect();
    for (g, (_, acc, readable)) in groups.iter().zip(&stored) {
        if *readable {
            calls.push(Group {
                key: &g.key,
                accumulator: acc.as_deref(),
                inputs: &g.entries,
            });
        }
    }
    let mut results = AggregateOutput::default();
    if !calls.is_empty()
        && let Err(e) = plugin.add(&copies, &calls, &mut results)
    {
        out.clear();
        let inputs: Vec<u32> = entries.iter().map(|e| e.input).collect();
        return Err(failure_in_batch(e, plugin, &inputs));
    }
    // 3. Each entry's accumulator after it, each window's last.
    let mut after: Vec<Option<(i64, Option<Bytes>)>> = vec![None; entries.len()];
    let mut last: Vec<Option<(i64, Option<Bytes>)>> = vec![None; groups.len()];
    let mut running: Vec<i64> = stored.iter().map(|(ts, ..)| *ts).collect();
    for update in &results.updates {
        let e = &entries[update.input as usize];
        let record = &records[e.input as usize];
        running[e.group] = running[e.group].max(record.timestamp);
        let state = (running[e.group], update.accumulator.clone());
        after[update.input as usize] = Some(state.clone());
        last[e.group] = Some(state);
    }
    for ((g, state), (_, had, _)) in groups.iter().zip(&last).zip(&stored) {
        let Some((ts, acc)) = state else { continue };
        let at = window_key(g.start, &g.key);
        // An open window made or removed: one more or one fewer to
        // emit at its close.
        if s.emit == Emit::Final {
            match (had, acc) {
                (None, Some(_)) => s.pending_changed(1),
                (Some(_), None) => s.pending_changed(-1),
                _ => {}
            }
        }
        match acc {
            Some(acc) => s.store.put(&at, versioned(*ts, current, acc))?,
            None => s.store.delete(&at)?,
        }
    }
    // A record fails once, whichever of its windows found it out.
    failures.extend(results.failures.into_iter().map(|f| Failure {
        input: entries[f.input as usize].input,
        ..f
    }));
    failures.sort_by_key(|f| f.input);
    failures.dedup_by_key(|f| f.input);
    out.failures.append(&mut failures);
    // 4. Results: every update (`changes`), or the windows each record
    // closes (`final`).
    if s.emit != Emit::Final {
        for (e, state) in entries.iter().zip(after) {
            let Some((ts, acc)) = state else { continue };
            let g = &groups[e.group];
            let record = &records[e.input as usize];
            s.emit(
                out,
                e.input,
                &g.key,
                (g.start, g.start + size_ms),
                acc,
                ts,
                record,
            );
        }
        s.stream_time = reached;
        return Ok(());
    }
    for (i, (t, _)) in stream_times.into_iter().enumerate() {
        s.stream_time = t;
        windows.emit_closed(s, None, i as u32, out)?;
    }
    s.stream_time = reached;
    Ok(())
}
