//! `aggregate`: folds each key's records into a value kept in the task's
//! state store and emits the new value on every update, as Kafka Streams'
//! `count`, `aggregate` and `reduce` do with record caches off. The store's
//! write cache batches writes; it never holds back an emission.
//!
//! The fold is a built-in one ([`Fold`], in the host) or an aggregator
//! plugin's ([`PluginAggregator`], one call per batch with each key's
//! accumulator and records). Either way the store holds, per key, the
//! largest timestamp folded in (the result's timestamp, 8 bytes) followed
//! by the accumulator, and a plugin sees only its accumulator.
//!
//! As in Kafka Streams, a record with no key or no value (a tombstone)
//! cannot be aggregated: it is dropped, counted and logged (the task does
//! both, naming where it came from). A record whose field cannot be folded
//! fails (kind `field`) and goes to the step's error policy; the key's
//! value stays as it was.

mod fold;
mod number;
mod plugin_table;
mod versioned_state;

pub use fold::Fold;
pub(crate) use versioned_state::{CONVERT_CHUNK, split_versioned, versioned};

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::failure::{Failure, FailureKind};
use super::operator::{Operator, OperatorError, StoreSpec};
use super::plugin_aggregator::{AggregateOutput, Group, PluginAggregator, group_by_key};
use super::plugin_step::{Dropped, Emitted, StepOutput, plugin_failure};
use super::versioned::{NextPlugin, VersionCounters};
use crate::codec::format_gate;
use crate::pipeline::Aggregation;
use crate::record::Record;
use crate::state::KeyValueStore;

/// How an aggregate step folds.
pub enum Folder {
    Builtin(Fold),
    Plugin(Box<PluginAggregator>),
}

/// One task's instance of an `aggregate` step.
pub struct Aggregate {
    /// The step's id: it names the store.
    id: String,
    folder: Folder,
    store: Box<dyn KeyValueStore>,
    ports: Vec<String>,
    /// A plugin's results, kept between batches for their buffers.
    scratch: AggregateOutput,
    /// Where a built-in fold writes the values it emits (see [`Fold::add`]).
    values: BytesMut,
    /// It aggregates a table's updates (each takes the row's old value out
    /// of its group, then adds the new one).
    on_table: bool,
    /// The counters and trial of the plugin version it runs (a plugin
    /// fold's; see [`VersionCounters::may_write_state`]).
    counters: Option<Arc<VersionCounters>>,
    /// Keys a plugin version on rollback trial wrote: what a rollback to a
    /// version that cannot read them converts back.
    written_on_trial: HashSet<Bytes>,
}

impl Aggregate {
    /// An aggregate of records (`on_table` false) or of a table's updates.
    pub fn new(id: &str, folder: Folder, store: Box<dyn KeyValueStore>, on_table: bool) -> Self {
        Aggregate {
            id: id.to_string(),
            folder,
            store,
            ports: vec!["out".to_string()],
            scratch: AggregateOutput::default(),
            values: BytesMut::new(),
            on_table,
            counters: None,
            written_on_trial: HashSet::new(),
        }
    }

    /// Its plugin version's counters, which say when it is on trial.
    pub fn with_counters(mut self, counters: Arc<VersionCounters>) -> Self {
        self.counters = Some(counters);
        self
    }
}

/// Bytes of the timestamp in front of every stored value (an aggregate's
/// accumulator, a table's row).
pub(crate) const TS: usize = 8;

/// A stored value: its timestamp (for an accumulator the largest folded
/// in, for a table's row the row's), and the rest.
pub(crate) fn split_stored(stored: &[u8]) -> Option<(i64, &[u8])> {
    let (ts, acc) = stored.split_at_checked(TS)?;
    Some((i64::from_le_bytes(ts.try_into().expect("8 bytes")), acc))
}

/// What a key's stored value stands for: the value last emitted for the
/// key and its timestamp (`weir test`'s expected store contents; Kafka
/// Streams' test driver reads a timestamped store the same way), and for a
/// plugin's accumulator the state version that wrote it. A plugin's
/// accumulator is the value it emitted, as a reduction's is, and a table's
/// row (`aggregation` `None`) is its value.
pub fn shown_stored(aggregation: Option<&Aggregation>, stored: &[u8]) -> Result<Shown, String> {
    if let Some(Aggregation::Plugin) = aggregation {
        let (timestamp, version, acc) =
            versioned_state::split_versioned(stored).ok_or_else(|| {
                format!(
                    "a stored value of {} bytes has no timestamp and state version",
                    stored.len()
                )
            })?;
        return Ok(Shown {
            value: Bytes::copy_from_slice(acc),
            timestamp,
            state_version: Some(version),
        });
    }
    let (timestamp, acc) = split_stored(stored)
        .ok_or_else(|| format!("a stored value of {} bytes has no timestamp", stored.len()))?;
    let value = match aggregation.and_then(Fold::of) {
        Some(fold) => fold.shown(acc)?,
        None => Bytes::copy_from_slice(acc),
    };
    Ok(Shown {
        value,
        timestamp,
        state_version: None,
    })
}

/// A store's entry as `weir state` and `weir test` show it: the key (a
/// window's as its windowed key, see [`windowed_json_key`]) and the
/// stored value as [`shown_stored`] reads it; `None` for a windowed step's
/// own entries (its stream time), which are not keys of records.
///
/// [`windowed_json_key`]: super::windowed::windowed_json_key
pub fn shown_entry(
    aggregation: Option<&Aggregation>,
    window: Option<&crate::pipeline::Windowing>,
    key: &[u8],
    stored: &[u8],
) -> Result<Option<(Bytes, Shown)>, String> {
    let Some(window) = window else {
        return Ok(Some((
            Bytes::copy_from_slice(key),
            shown_stored(aggregation, stored)?,
        )));
    };
    match super::windowed::shown_key(window, key) {
        None => Ok(None),
        Some(key) => Ok(Some((key?, shown_stored(aggregation, stored)?))),
    }
}

/// A stored value as [`shown_stored`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub value: Bytes,
    pub timestamp: i64,
    /// A plugin accumulator's state version.
    pub state_version: Option<u32>,
}

/// Emits a built-in fold's result for `key`, from input `record`.
fn emit_folded(
    out: &mut StepOutput,
    input: u32,
    key: &Bytes,
    folded: fold::Folded,
    record: &Record,
    fold: &Fold,
) {
    let mut emitted = Record {
        key: Some(key.clone()),
        value: Some(folded.value),
        timestamp: folded.timestamp,
        headers: record.headers.clone(),
        value_is_json: false,
        old_value: None,
    };
    format_gate::host_written(&mut emitted, fold.writes_json(), record);
    out.emitted.push(Emitted {
        input,
        port: 0,
        record: Some(emitted),
    });
}

/// Why a record cannot be aggregated, as Kafka Streams drops it.
fn unaggregatable(record: &Record) -> Option<&'static str> {
    match (&record.key, &record.value) {
        (None, _) => Some("a null key"),
        (Some(_), None) => Some("a null value (a tombstone)"),
        _ => None,
    }
}

impl Aggregate {
    fn builtin_batch(
        &mut self,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let Folder::Builtin(fold) = &self.folder else {
            unreachable!("called for a built-in fold")
        };
        for (i, record) in records.iter().enumerate() {
            let input = i as u32;
            if let Some(reason) = unaggregatable(record) {
                out.dropped.push(Dropped { input, reason });
                continue;
            }
            let (Some(key), Some(value)) = (&record.key, &record.value) else {
                unreachable!("checked above")
            };
            // The store's value is read and replaced in one step.
            let mut folded = None;
            self.store.update(key, &mut |old, next| {
                let result = fold.add(old, value, record.timestamp, next, &mut self.values);
                let ok = result.is_ok();
                folded = Some(result);
                ok
            })?;
            match folded.expect("update calls the fold") {
                Ok(folded) => emit_folded(out, input, key, folded, record, fold),
                Err(reason) => self.fail(out, input, reason),
            }
        }
        Ok(())
    }

    fn fail(&self, out: &mut StepOutput, input: u32, reason: String) {
        out.failures.push(Failure {
            input,
            kind: FailureKind::Field,
            reason: format!("aggregate `{}`: {reason}", self.id),
        });
    }

    /// A built-in fold of a table's updates, each taking the row's old
    /// value out of its group and adding the new one (see [`Fold::change`]).
    fn builtin_table_batch(
        &mut self,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        let Folder::Builtin(fold) = &self.folder else {
            unreachable!("called for a built-in fold")
        };
        for (i, record) in records.iter().enumerate() {
            let input = i as u32;
            let Some(key) = &record.key else {
                out.dropped.push(Dropped {
                    input,
                    reason: "a null key",
                });
                continue;
            };
            let (new, old) = (record.value.as_ref(), record.old_value.as_deref());
            let mut changed = None;
            let mut absent = false;
            self.store.update(key, &mut |stored, next| {
                if stored.is_none() && new.is_none() {
                    absent = true;
                    return false;
                }
                let c = fold.change(stored, old, new, record.timestamp, next, &mut self.values);
                let store_it = c.folded.is_some();
                changed = Some(c);
                store_it
            })?;
            if absent {
                // A row left a group that holds nothing (its state was
                // lost): Kafka Streams stores and forwards a null.
                out.emitted.push(Emitted {
                    input,
                    port: 0,
                    record: Some(Record {
                        key: Some(key.clone()),
                        value: None,
                        timestamp: record.timestamp,
                        headers: record.headers.clone(),
                        ..Record::default()
                    }),
                });
                continue;
            }
            let Some(changed) = changed else { continue };
            if let Some(folded) = changed.folded {
                emit_folded(out, input, key, folded, record, fold);
            }
            if let Some(reason) = changed.failure {
                self.fail(out, input, reason);
            }
        }
        Ok(())
    }

    /// One plugin call for the batch: each key's stored accumulator and
    /// its records, then every update stored and emitted in input order.
    fn plugin_batch(
        &mut self,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        for (i, record) in records.iter().enumerate() {
            if let Some(reason) = unaggregatable(record) {
                out.dropped.push(Dropped {
                    input: i as u32,
                    reason,
                });
            }
        }
        // The others, by key in first-seen order, each key's in order.
        let keyed = group_by_key(records);
        let reads = self.read_accumulators(keyed.iter().map(|(key, _)| key.as_ref()))?;
        // The running result timestamp of each group, and each input's group.
        let mut timestamps: Vec<i64> = Vec::with_capacity(keyed.len());
        let mut group_of = vec![0; records.len()];
        let mut groups: Vec<Group<'_>> = Vec::with_capacity(keyed.len());
        for (g, ((key, inputs), read)) in keyed.iter().zip(&reads).enumerate() {
            timestamps.push(read.timestamp);
            if let Some((kind, reason)) = &read.unreadable {
                out.failures.extend(inputs.iter().map(|&input| Failure {
                    input,
                    kind: *kind,
                    reason: reason.clone(),
                }));
                continue;
            }
            for &i in inputs {
                group_of[i as usize] = g;
            }
            groups.push(Group {
                key,
                accumulator: read.accumulator.as_deref(),
                inputs,
            });
        }
        let Folder::Plugin(plugin) = &mut self.folder else {
            unreachable!("called for a plugin fold")
        };
        let mut results = std::mem::take(&mut self.scratch);
        results.clear();
        if let Err(e) = plugin.add(records, &groups, &mut results) {
            self.scratch = results;
            out.clear();
            return Err(plugin_failure(e, plugin.culprit(), false));
        }
        for update in &results.updates {
            let record = &records[update.input as usize];
            let g = group_of[update.input as usize];
            let key = keyed[g].0.clone();
            timestamps[g] = timestamps[g].max(record.timestamp);
            let timestamp = timestamps[g];
            self.write_accumulator(&key, timestamp, update.accumulator.as_deref())?;
            out.emitted.push(Emitted {
                input: update.input,
                port: 0,
                record: Some(Record {
                    key: Some(key),
                    value: update.accumulator.clone(),
                    timestamp,
                    headers: record.headers.clone(),
                    value_is_json: false,
                    old_value: None,
                }),
            });
        }
        out.failures.append(&mut results.failures);
        out.failures.sort_by_key(|f| f.input);
        self.scratch = results;
        Ok(())
    }
}

impl Operator for Aggregate {
    fn process_batch(
        &mut self,
        _input: usize,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        out.clear();
        if let Some(counters) = &self.counters {
            if !counters.on_trial() && !self.written_on_trial.is_empty() {
                // The trial ended and the version stays.
                self.written_on_trial = HashSet::new();
            }
            if !counters.may_write_state() {
                return Err(OperatorError::rolling_back(&self.id));
            }
        }
        match (&self.folder, self.on_table) {
            (Folder::Builtin(_), false) => self.builtin_batch(records, out),
            (Folder::Builtin(_), true) => self.builtin_table_batch(records, out),
            (Folder::Plugin(_), false) => self.plugin_batch(records, out),
            (Folder::Plugin(_), true) => self.plugin_table_batch(records, out),
        }
    }

    fn restarts(&self) -> u64 {
        match &self.folder {
            Folder::Plugin(p) => p.restarts(),
            Folder::Builtin(_) => 0,
        }
    }

    fn ports(&self) -> &[String] {
        &self.ports
    }

    fn stores(&self) -> Vec<StoreSpec> {
        vec![StoreSpec::key_value(&self.id, "")]
    }

    fn checkpoint(&mut self) -> Result<(), OperatorError> {
        self.store.flush().map_err(OperatorError::from)
    }

    fn swap_plugin(&mut self, next: NextPlugin) -> Result<(), OperatorError> {
        self.swap_aggregator(next.aggregator)?;
        self.counters = Some(next.counters);
        Ok(())
    }

    fn close(&mut self) {
        if let Err(e) = self.store.flush() {
            tracing::warn!("{e}");
        }
    }
}
