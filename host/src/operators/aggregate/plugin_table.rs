//! An aggregator plugin over a table's updates: each update takes the
//! row's old value out of its group with the plugin's `subtract`, then
//! adds the new one with `add` (Kafka Streams' `KGroupedTable#aggregate`
//! with a subtractor).
//!
//! A batch goes to the plugin in rounds, each holding at most one update
//! per key (the first round every key's first update, and so on): one
//! `subtract` call for the round's old values, then one `add` call for its
//! new values, each from the accumulator the key reached in the round
//! before. So every update's result is emitted, as Kafka Streams emits
//! one per update, and a batch over many keys takes two calls. Results are
//! kept aside and written to the store only once every round succeeded: a
//! plugin that fails part way leaves the store as the batch found it.

use std::collections::HashMap;

use bytes::Bytes;

use super::{Aggregate, Folder};
use crate::operators::failure::Failure;
use crate::operators::operator::OperatorError;
use crate::operators::plugin_aggregator::{AggregateOutput, Group, PluginAggregator};
use crate::operators::plugin_step::{Dropped, Emitted, StepOutput, plugin_failure};
use crate::plugin::Fold;
use crate::record::Record;

/// A key's accumulator as the batch has it so far.
#[derive(Clone)]
struct Current {
    /// `None`: the key has no accumulator (never had, or the plugin
    /// removed it).
    accumulator: Option<Bytes>,
    /// The result timestamp stored with it.
    timestamp: i64,
    /// Whether the store holds (or will hold) the key: Kafka Streams'
    /// timestamp rule and "nothing to take out from" both ask.
    exists: bool,
    /// Changed by the batch: written to the store after it.
    dirty: bool,
}

/// One plugin call (`add` or `subtract`) for `inputs` of `records`, each
/// of a key of its own, from the accumulator the key has reached; their
/// updates are applied to `current` and left in `results` with the
/// failures.
fn call(
    plugin: &mut PluginAggregator,
    fold: Fold,
    records: &[Record],
    inputs: &[u32],
    current: &mut HashMap<Bytes, Current>,
    results: &mut AggregateOutput,
) -> Result<(), OperatorError> {
    results.clear();
    if inputs.is_empty() {
        return Ok(());
    }
    let key_of = |i: u32| records[i as usize].key.clone().expect("keyed above");
    let keys: Vec<Bytes> = inputs.iter().map(|&i| key_of(i)).collect();
    let alone: Vec<[u32; 1]> = inputs.iter().map(|&i| [i]).collect();
    let groups: Vec<Group<'_>> = keys
        .iter()
        .zip(&alone)
        .map(|(key, input)| Group {
            key,
            accumulator: current[key].accumulator.as_deref(),
            inputs: input,
        })
        .collect();
    let called = match fold {
        Fold::Add => plugin.add(records, &groups, results),
        Fold::Subtract => plugin.subtract(records, &groups, results),
    };
    called.map_err(|e| plugin_failure(e, plugin.culprit(), false))?;
    for update in &results.updates {
        let now = current.get_mut(&key_of(update.input)).expect("read above");
        now.accumulator = update.accumulator.clone();
    }
    Ok(())
}

impl Aggregate {
    pub(super) fn plugin_table_batch(
        &mut self,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        // Each key's updates in batch order, then the rounds they make.
        let mut rounds: Vec<Vec<u32>> = Vec::new();
        let mut seen: HashMap<&[u8], usize> = HashMap::new();
        for (i, record) in records.iter().enumerate() {
            let Some(key) = record.key.as_deref() else {
                out.dropped.push(Dropped {
                    input: i as u32,
                    reason: "a null key",
                });
                continue;
            };
            if record.value.is_none() && record.old_value.is_none() {
                continue;
            }
            let n = seen.entry(key).or_insert(0);
            if rounds.len() <= *n {
                rounds.push(Vec::new());
            }
            rounds[*n].push(i as u32);
            *n += 1;
        }
        let keys: Vec<&[u8]> = seen.keys().copied().collect();
        let reads = self.read_accumulators(keys.iter().copied())?;
        let mut current: HashMap<Bytes, Current> = HashMap::new();
        let mut failures: Vec<Failure> = Vec::new();
        for (key, read) in keys.iter().zip(reads) {
            if let Some((kind, reason)) = read.unreadable {
                // Its stored accumulator cannot be used: every update of
                // the key fails, and it stays as it is.
                for round in &mut rounds {
                    round.retain(|&i| {
                        let of_key = records[i as usize].key.as_deref() == Some(*key);
                        if of_key {
                            failures.push(Failure {
                                input: i,
                                kind,
                                reason: reason.clone(),
                            });
                        }
                        !of_key
                    });
                }
                continue;
            }
            current.insert(
                Bytes::copy_from_slice(key),
                Current {
                    exists: read.accumulator.is_some(),
                    accumulator: read.accumulator,
                    timestamp: read.timestamp,
                    dirty: false,
                },
            );
        }
        // The old values, as records the plugin subtracts.
        let olds: Vec<Record> = records
            .iter()
            .map(|r| Record {
                value: r.old_value.clone(),
                ..r.clone()
            })
            .collect();
        let mut emitted: Vec<Emitted> = Vec::new();
        for round in &rounds {
            let batch = (records, &olds[..]);
            self.table_round(batch, round, &mut current, &mut emitted, &mut failures)
                .inspect_err(|_| out.clear())?;
        }
        for (key, now) in current.iter().filter(|(_, now)| now.dirty) {
            self.write_accumulator(key, now.timestamp, now.accumulator.as_deref())?;
        }
        emitted.sort_by_key(|e| e.input);
        failures.sort_by_key(|f| f.input);
        out.emitted.append(&mut emitted);
        out.failures.append(&mut failures);
        Ok(())
    }

    /// One round: every key at most once; `subtract` for the old values
    /// of keys that have an accumulator, then `add` for the new values.
    fn table_round(
        &mut self,
        (records, olds): (&[Record], &[Record]),
        round: &[u32],
        current: &mut HashMap<Bytes, Current>,
        emitted: &mut Vec<Emitted>,
        failures: &mut Vec<Failure>,
    ) -> Result<(), OperatorError> {
        let Folder::Plugin(plugin) = &mut self.folder else {
            unreachable!("called for a plugin fold")
        };
        let key_of = |i: u32| records[i as usize].key.clone().expect("keyed above");
        let mut results = std::mem::take(&mut self.scratch);
        let subtracting: Vec<u32> = round
            .iter()
            .copied()
            .filter(|&i| {
                olds[i as usize].value.is_some() && current[&key_of(i)].accumulator.is_some()
            })
            .collect();
        let mut failed: Vec<u32> = Vec::new();
        let called = call(
            plugin,
            Fold::Subtract,
            olds,
            &subtracting,
            current,
            &mut results,
        );
        if let Err(e) = called {
            self.scratch = results;
            return Err(e);
        }
        for f in results.failures.drain(..) {
            failed.push(f.input);
            failures.push(f);
        }
        let adding: Vec<u32> = round
            .iter()
            .copied()
            .filter(|&i| records[i as usize].value.is_some() && !failed.contains(&i))
            .collect();
        let called = call(plugin, Fold::Add, records, &adding, current, &mut results);
        if let Err(e) = called {
            self.scratch = results;
            return Err(e);
        }
        let added: Vec<u32> = results.updates.iter().map(|u| u.input).collect();
        failures.append(&mut results.failures);
        self.scratch = results;
        // Each update that changed its key's accumulator emits it, with
        // Kafka Streams' timestamp: the larger of the record's and the
        // stored one when the key had an accumulator, else the record's.
        for &i in round {
            let subtracted = subtracting.contains(&i) && !failed.contains(&i);
            if !subtracted && !added.contains(&i) {
                continue;
            }
            let record = &records[i as usize];
            let key = key_of(i);
            let now = current.get_mut(&key).expect("read above");
            now.timestamp = match now.exists {
                true => now.timestamp.max(record.timestamp),
                false => record.timestamp,
            };
            now.exists = now.accumulator.is_some();
            now.dirty = true;
            emitted.push(Emitted {
                input: i,
                port: 0,
                record: Some(Record {
                    key: Some(key),
                    value: now.accumulator.clone(),
                    timestamp: now.timestamp,
                    headers: record.headers.clone(),
                    ..Record::default()
                }),
            });
        }
        Ok(())
    }
}
