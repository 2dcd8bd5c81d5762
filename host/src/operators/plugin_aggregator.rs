//! An aggregator plugin for one `kind: aggregate` step in one task: packs a
//! batch's groups (each key's accumulator and its records), calls the
//! plugin once, and survives it the way [`super::PluginStep`] survives a
//! transformer.
//!
//! The host owns the state: the caller (the aggregate operator) reads each
//! key's accumulator from its store, hands it in with the key's records,
//! and stores and emits what comes back. This type keeps nothing between
//! batches but the instance.
//!
//! Isolating a culprit differs from a transform step in one way: a key's
//! records depend on each other through the accumulator, so after a fault
//! or a malformed result the records are retried one at a time **in each
//! key's order**, each from the accumulator its key had reached (the last
//! good one), and a `FAILED` record is retried once alone from the
//! accumulator before it, after which the rest of its key follows one at a
//! time again.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use weir_packed::{
    AggregateResultView, DecodeError, ResultsReader, put_group_head, put_pair, put_stored,
};

use super::contract;
use super::failure::{Failure, FailureKind};
use super::plugin_step::{Culprit, StartError, fault_failure, kind_not_implemented};
use crate::limits::Limits;
use crate::plugin::{
    AGGREGATOR_WORLD, AccumulatorFormats, Capability, Conversion, Fault, Fold, InitError, Instance,
    LogGate, Plugin,
};
use crate::record::Record;

/// One key's part of a batch: its accumulator before the batch and its
/// records, given as indices into the batch's records, in the order they
/// are folded (offset order). A group is one accumulator: a key has one
/// group per window of its in a windowed step, and one in all otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    /// The group key (every record's key).
    pub key: &'a [u8],
    /// The key's accumulator from the store; `None` when it has none.
    pub accumulator: Option<&'a [u8]>,
    /// Indices into the records given to [`PluginAggregator::add`]; at
    /// least one.
    pub inputs: &'a [u32],
}

/// A batch's records grouped by key, in the order each key first appears,
/// each key's inputs in batch order: what [`Group::inputs`] needs. Records
/// without a key or without a value (a tombstone) are left out: an
/// aggregate drops them, as Kafka Streams does, and the caller counts them.
pub fn group_by_key(records: &[Record]) -> Vec<(Bytes, Vec<u32>)> {
    let mut index: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    let mut groups: Vec<(Bytes, Vec<u32>)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let (Some(key), Some(_)) = (&r.key, &r.value) else {
            continue;
        };
        match index.get(key.as_ref()) {
            Some(&g) => groups[g].1.push(i as u32),
            None => {
                index.insert(key.as_ref(), groups.len());
                groups.push((key.clone(), vec![i as u32]));
            }
        }
    }
    groups
}

/// Two accumulators of one key to merge.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    pub key: &'a [u8],
    pub left: &'a [u8],
    pub right: &'a [u8],
}

/// A record's new accumulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Index of the record in the batch (or of the pair, for `merge`).
    pub input: u32,
    /// The key's accumulator after the record, to store and emit; `None`
    /// when the plugin removed it (delete it from the store and emit a
    /// tombstone, as Kafka Streams does for an aggregator returning null).
    pub accumulator: Option<Bytes>,
}

/// What an aggregator call produced: every input ends up in exactly one of
/// the two lists, each sorted by input. A failed record changes nothing:
/// its key's next update (if any) already starts from the accumulator it
/// had before, so the last update of a key is its accumulator after the
/// batch.
#[derive(Debug, Default)]
pub struct AggregateOutput {
    pub updates: Vec<Update>,
    pub failures: Vec<Failure>,
}

impl AggregateOutput {
    pub fn clear(&mut self) {
        self.updates.clear();
        self.failures.clear();
    }

    fn sort(&mut self) {
        self.updates.sort_by_key(|u| u.input);
        self.failures.sort_by_key(|f| f.input);
    }
}

/// What one call said about one record.
enum Said {
    Accumulator(Option<Bytes>),
    Failure(Failure),
    /// `FAILED`: the operator failed; retried before the record is blamed.
    Retry(String),
}

/// Runs one aggregate step's plugin, holding it to the aggregator contract
/// (`wit/README.md`, "The aggregator world") and surviving it.
pub struct PluginAggregator {
    name: Arc<str>,
    log: Arc<LogGate>,
    plugin: Arc<Plugin>,
    config_json: Arc<str>,
    limits: Limits,
    instance: Option<Instance>,
    batch: Vec<u8>,
    restarts: u64,
    culprit: Option<Culprit>,
}

impl PluginAggregator {
    /// Starts the step's first instance (its `init` sees the config now, so
    /// a refused config is reported before any record flows). A plugin that
    /// is not an aggregator, or lacks an optional function in `needs`, is
    /// refused first, before it sees a config. The step is named by `log`.
    pub fn start(
        log: Arc<LogGate>,
        plugin: Arc<Plugin>,
        config_json: Arc<str>,
        limits: Limits,
        needs: &[Capability],
    ) -> Result<Self, StartError> {
        let name = log.step().clone();
        if !plugin.is_aggregator() {
            return Err(kind_not_implemented(
                &name,
                "aggregate",
                &plugin,
                AGGREGATOR_WORLD,
            ));
        }
        if let Some(missing) = needs.iter().find(|c| !plugin.capabilities().contains(c)) {
            return Err(StartError::Init {
                step: name.to_string(),
                init: InitError::Missing {
                    missing: missing.as_str(),
                    declared: crate::plugin::capability_list(plugin.capabilities()),
                },
            });
        }
        let mut step = PluginAggregator {
            name,
            log,
            plugin,
            config_json,
            limits,
            instance: None,
            batch: Vec::new(),
            restarts: 0,
            culprit: None,
        };
        step.instance = Some(step.spawn()?);
        Ok(step)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times a broken instance was replaced.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The records whose fault made the instance be replaced last, while
    /// it is not replaced yet.
    pub fn culprit(&self) -> Option<&Culprit> {
        self.culprit.as_ref()
    }

    /// Folds each group's records into its accumulator with the plugin's
    /// `add`. Every record of every group ends up with an update or a
    /// failure in `out`; only a plugin that no longer starts (or a stopping
    /// run, [`StartError::Interrupted`]) is an error, after which `out` is
    /// incomplete and must be dropped.
    pub fn add(
        &mut self,
        records: &[Record],
        groups: &[Group<'_>],
        out: &mut AggregateOutput,
    ) -> Result<(), StartError> {
        self.fold(Fold::Add, records, groups, out)
    }

    /// Removes each record's contribution with the plugin's `subtract`
    /// (start the step with `needs: [Capability::Subtract]`).
    pub fn subtract(
        &mut self,
        records: &[Record],
        groups: &[Group<'_>],
        out: &mut AggregateOutput,
    ) -> Result<(), StartError> {
        self.fold(Fold::Subtract, records, groups, out)
    }

    fn fold(
        &mut self,
        fold: Fold,
        records: &[Record],
        groups: &[Group<'_>],
        out: &mut AggregateOutput,
    ) -> Result<(), StartError> {
        out.clear();
        let total: usize = groups.iter().map(|g| g.inputs.len()).sum();
        if total == 0 {
            return Ok(());
        }
        self.batch.clear();
        weir_packed::put_u32(&mut self.batch, groups.len() as u32);
        for g in groups {
            debug_assert!(!g.inputs.is_empty(), "a group has at least one record");
            put_group_head(&mut self.batch, g.key, g.accumulator, g.inputs.len() as u32);
            for &i in g.inputs {
                put_record(&mut self.batch, &records[i as usize]);
            }
        }
        let whole = span(groups);
        let result = match self.call(|i, batch| i.fold(fold, batch), whole.clone())? {
            Ok(result) => result,
            Err(fault) if total == 1 => {
                out.failures
                    .push(fault_failure(first_input(groups), &fault));
                return self.finish(out);
            }
            // Someone in the batch broke the instance: find out who.
            Err(_) => {
                self.each_alone(fold, records, groups, out)?;
                return self.finish(out);
            }
        };
        let said = match read_results(&result, total) {
            Ok(said) => said,
            Err(e) => {
                // A malformed result is the plugin's fault: forget what it
                // said and isolate the culprit.
                self.discard(whole, format!("returned a malformed result ({e})"));
                if total == 1 {
                    out.failures
                        .push(contract::malformed(first_input(groups), &e));
                } else {
                    self.each_alone(fold, records, groups, out)?;
                }
                return self.finish(out);
            }
        };
        let mut said = said.into_iter();
        for g in groups {
            let mut acc = g.accumulator.map(Bytes::copy_from_slice);
            let mut results = said.by_ref().take(g.inputs.len());
            for (j, &input) in g.inputs.iter().enumerate() {
                let raw = results.next().expect("one result per record");
                match self.judge(input, raw) {
                    Said::Accumulator(next) => {
                        out.updates.push(Update {
                            input,
                            accumulator: next.clone(),
                        });
                        acc = next;
                    }
                    Said::Failure(f) if f.kind == FailureKind::OutputLimit => {
                        // The plugin went on from an accumulator the host
                        // does not keep: redo the rest of the key.
                        out.failures.push(f);
                        let rest = &g.inputs[j + 1..];
                        self.chain(fold, records, g.key, acc, rest, out, true)?;
                        break;
                    }
                    Said::Failure(f) => out.failures.push(f),
                    Said::Retry(message) => {
                        // The instance is discarded; this record gets its
                        // one retry as the first of the rest of its key.
                        self.discard(
                            input as usize..input as usize + 1,
                            format!("failed ({message})"),
                        );
                        let rest = &g.inputs[j..];
                        self.chain(fold, records, g.key, acc, rest, out, false)?;
                        break;
                    }
                }
            }
            // Whatever the loop left unread belongs to this group.
            results.for_each(drop);
        }
        self.finish(out)
    }

    /// Sorts the output and replaces a discarded instance, so a plugin that
    /// no longer starts is reported with the batch that broke it.
    fn finish(&mut self, out: &mut AggregateOutput) -> Result<(), StartError> {
        out.sort();
        if self.instance.is_none() {
            self.replace()?;
        }
        Ok(())
    }

    /// Every group again, one record at a time in its key's order.
    fn each_alone(
        &mut self,
        fold: Fold,
        records: &[Record],
        groups: &[Group<'_>],
        out: &mut AggregateOutput,
    ) -> Result<(), StartError> {
        for g in groups {
            let acc = g.accumulator.map(Bytes::copy_from_slice);
            self.chain(fold, records, g.key, acc, g.inputs, out, true)?;
        }
        Ok(())
    }

    /// Folds `inputs` one record per call, each from the accumulator the
    /// key has reached. `retry_first` is false when the first record already
    /// returned `FAILED` once (in the batch): this call is its retry.
    #[allow(clippy::too_many_arguments)]
    fn chain(
        &mut self,
        fold: Fold,
        records: &[Record],
        key: &[u8],
        mut acc: Option<Bytes>,
        inputs: &[u32],
        out: &mut AggregateOutput,
        retry_first: bool,
    ) -> Result<(), StartError> {
        for (n, &input) in inputs.iter().enumerate() {
            let mut said = self.alone(fold, records, key, acc.as_deref(), input)?;
            if let Said::Retry(message) = &said
                && (n > 0 || retry_first)
            {
                // The operator says it failed, not the record: try once more
                // on a fresh instance before blaming the record.
                self.discard(
                    input as usize..input as usize + 1,
                    format!("failed ({message})"),
                );
                said = self.alone(fold, records, key, acc.as_deref(), input)?;
            }
            match said {
                Said::Accumulator(next) => {
                    out.updates.push(Update {
                        input,
                        accumulator: next.clone(),
                    });
                    acc = next;
                }
                Said::Failure(f) => out.failures.push(f),
                Said::Retry(message) => out.failures.push(Failure {
                    input,
                    kind: FailureKind::Failed,
                    reason: message,
                }),
            }
        }
        Ok(())
    }

    /// One record alone, in a group of its own with `acc`.
    fn alone(
        &mut self,
        fold: Fold,
        records: &[Record],
        key: &[u8],
        acc: Option<&[u8]>,
        input: u32,
    ) -> Result<Said, StartError> {
        self.batch.clear();
        weir_packed::put_u32(&mut self.batch, 1);
        put_group_head(&mut self.batch, key, acc, 1);
        put_record(&mut self.batch, &records[input as usize]);
        self.call_alone(input, |i, batch| i.fold(fold, batch))
    }

    /// Calls `f` with the packed batch of one record or pair, `input`, and
    /// says what its one result means for it.
    fn call_alone(
        &mut self,
        input: u32,
        f: impl FnOnce(&mut Instance, &[u8]) -> Result<Vec<u8>, Fault>,
    ) -> Result<Said, StartError> {
        let range = input as usize..input as usize + 1;
        let result = match self.call(f, range.clone())? {
            Ok(result) => result,
            Err(fault) => return Ok(Said::Failure(fault_failure(input, &fault))),
        };
        Ok(match read_results(&result, 1) {
            Ok(mut raw) => self.judge(input, raw.pop().expect("one result")),
            Err(e) => {
                self.discard(range, format!("returned a malformed result ({e})"));
                Said::Failure(contract::malformed(input, &e))
            }
        })
    }

    /// Merges each pair's accumulators with the plugin's `merge` (start the
    /// step with `needs: [Capability::Merge]`): one update or failure per
    /// pair, whose `input` is the pair's index.
    pub fn merge(
        &mut self,
        pairs: &[Pair<'_>],
        out: &mut AggregateOutput,
    ) -> Result<(), StartError> {
        let pack = |batch: &mut Vec<u8>, items: Range<usize>| {
            weir_packed::put_u32(batch, items.len() as u32);
            for p in &pairs[items] {
                put_pair(batch, p.key, p.left, p.right);
            }
        };
        self.each_on_its_own(pairs.len(), pack, |i, batch| i.merge(batch), out)
    }

    /// Converts stored accumulators `(key, accumulator)` with the plugin's
    /// `upgrade` (from `version`) or `downgrade` (to it): one update or
    /// failure per accumulator, whose `input` is its index. Only for a
    /// version the plugin's [`AccumulatorFormats`] name.
    pub fn convert(
        &mut self,
        way: Conversion,
        version: u32,
        accumulators: &[(&[u8], &[u8])],
        out: &mut AggregateOutput,
    ) -> Result<(), StartError> {
        let pack = |batch: &mut Vec<u8>, items: Range<usize>| {
            weir_packed::put_u32(batch, items.len() as u32);
            for (key, acc) in &accumulators[items] {
                put_stored(batch, key, acc);
            }
        };
        let call = |i: &mut Instance, batch: &[u8]| i.convert(way, version, batch);
        self.each_on_its_own(accumulators.len(), pack, call, out)
    }

    /// The accumulator versions the plugin reads and writes.
    pub fn formats(&self) -> &AccumulatorFormats {
        self.plugin
            .formats()
            .expect("checked at start: an aggregator")
    }

    /// Runs `count` items that do not depend on each other (merge pairs,
    /// stored accumulators) through `call`, packed by `pack`: one call for
    /// all of them; after a fault or a malformed result, one call each;
    /// a `FAILED` item once more alone on a fresh instance.
    fn each_on_its_own(
        &mut self,
        count: usize,
        pack: impl Fn(&mut Vec<u8>, Range<usize>),
        call: impl Fn(&mut Instance, &[u8]) -> Result<Vec<u8>, Fault>,
        out: &mut AggregateOutput,
    ) -> Result<(), StartError> {
        out.clear();
        if count == 0 {
            return Ok(());
        }
        self.batch.clear();
        pack(&mut self.batch, 0..count);
        let whole = 0..count;
        let said = match self.call(&call, whole.clone())? {
            Err(fault) if count == 1 => {
                out.failures.push(fault_failure(0, &fault));
                return self.finish(out);
            }
            Err(_) => None,
            Ok(result) => match read_results(&result, count) {
                Ok(said) => Some(said),
                Err(e) => {
                    self.discard(whole, format!("returned a malformed result ({e})"));
                    if count == 1 {
                        out.failures.push(contract::malformed(0, &e));
                        return self.finish(out);
                    }
                    None
                }
            },
        };
        let alone = |this: &mut Self, i: usize| {
            this.batch.clear();
            pack(&mut this.batch, i..i + 1);
            this.call_alone(i as u32, &call)
        };
        for i in 0..count {
            let input = i as u32;
            let said = match &said {
                Some(said) => self.judge(input, said[i].clone()),
                None => alone(self, i)?,
            };
            let said = match said {
                Said::Retry(message) => {
                    self.discard(i..i + 1, format!("failed ({message})"));
                    match alone(self, i)? {
                        Said::Retry(message) => Said::Failure(Failure {
                            input,
                            kind: FailureKind::Failed,
                            reason: message,
                        }),
                        other => other,
                    }
                }
                other => other,
            };
            match said {
                Said::Accumulator(accumulator) => out.updates.push(Update { input, accumulator }),
                Said::Failure(f) => out.failures.push(f),
                Said::Retry(_) => unreachable!("retried above"),
            }
        }
        self.finish(out)
    }

    fn judge(&self, input: u32, raw: Raw) -> Said {
        judge(input, raw, self.limits.max_output_bytes)
    }

    fn spawn(&self) -> Result<Instance, StartError> {
        self.plugin
            .instantiate(self.log.clone(), &self.config_json, &self.limits)
            .map_err(|init| StartError::Init {
                step: self.name.to_string(),
                init,
            })
    }

    /// Starts the instance that replaces a discarded one.
    fn replace(&mut self) -> Result<(), StartError> {
        self.restarts += 1;
        self.instance = Some(self.spawn()?);
        self.culprit = None;
        Ok(())
    }

    /// Discards the instance: the records `inputs` broke it by `fault`.
    fn discard(&mut self, inputs: Range<usize>, fault: String) {
        self.instance = None;
        self.culprit = Some(Culprit {
            inputs: inputs.start as u32..inputs.end as u32,
            fault,
        });
    }

    /// Runs `f` on the instance with the packed batch; a fault discards the
    /// instance. `inputs` names the records in the call, for the culprit.
    fn call(
        &mut self,
        f: impl FnOnce(&mut Instance, &[u8]) -> Result<Vec<u8>, Fault>,
        inputs: Range<usize>,
    ) -> Result<Result<Bytes, Fault>, StartError> {
        let name = self.name.clone();
        let interrupted = move || StartError::Interrupted {
            step: name.to_string(),
        };
        if self.plugin.interrupted() {
            return Err(interrupted());
        }
        if self.instance.is_none() {
            self.replace()?;
        }
        let instance = self.instance.as_mut().expect("replaced above");
        let result = f(instance, &self.batch);
        if let Err(Fault::Interrupted) = &result {
            // Not the plugin's fault, nor the record's: no restart, no
            // retry, no failure; the whole batch is left unprocessed.
            self.instance = None;
            return Err(interrupted());
        }
        if let Err(fault) = &result {
            tracing::warn!(step = %self.name, "plugin {fault}; starting a fresh instance");
            self.discard(inputs, fault.to_string());
        }
        Ok(result.map(Bytes::from))
    }
}

/// What the host concludes from one result: an accumulator larger than
/// `max_output_bytes` fails its record (the accumulator stays).
fn judge(input: u32, raw: Raw, max_output_bytes: usize) -> Said {
    match raw {
        Raw::Accumulator(acc) => {
            let size = acc.as_ref().map_or(0, Bytes::len);
            if size > max_output_bytes {
                Said::Failure(Failure {
                    input,
                    kind: FailureKind::OutputLimit,
                    reason: format!(
                        "the accumulator of {size} bytes exceeds {max_output_bytes} bytes"
                    ),
                })
            } else {
                Said::Accumulator(acc)
            }
        }
        Raw::Poison(reason) => Said::Failure(Failure {
            input,
            kind: FailureKind::Poison,
            reason,
        }),
        Raw::Failed(message) => Said::Retry(message),
    }
}

/// A result as the plugin wrote it.
#[derive(Debug, Clone)]
enum Raw {
    Accumulator(Option<Bytes>),
    Poison(String),
    Failed(String),
}

/// Reads `records` aggregate results, holding the buffer to the framing
/// rules; accumulators are slices of `result`, not copies.
fn read_results(result: &Bytes, records: usize) -> Result<Vec<Raw>, DecodeError> {
    let mut reader = ResultsReader::new(result, records)?;
    let mut out = Vec::with_capacity(records);
    while let Some(r) = reader.next_aggregate_result() {
        out.push(match r? {
            AggregateResultView::Accumulator(acc) => {
                Raw::Accumulator(acc.map(|a| result.slice_ref(a)))
            }
            AggregateResultView::Poison(m) => Raw::Poison(m.to_string()),
            AggregateResultView::Failed(m) => Raw::Failed(m.to_string()),
        });
    }
    reader.finish()?;
    Ok(out)
}

/// The indices a call's records span in the batch, for a culprit.
fn span(groups: &[Group<'_>]) -> Range<usize> {
    let inputs = || groups.iter().flat_map(|g| g.inputs).map(|&i| i as usize);
    inputs().min().unwrap_or(0)..inputs().max().map_or(0, |m| m + 1)
}

fn first_input(groups: &[Group<'_>]) -> u32 {
    groups
        .iter()
        .flat_map(|g| g.inputs)
        .copied()
        .next()
        .unwrap_or(0)
}

fn put_record(out: &mut Vec<u8>, r: &Record) {
    weir_packed::put_record(
        out,
        r.timestamp,
        r.key.as_deref(),
        r.value.as_deref(),
        r.headers
            .iter()
            .map(|h| (h.name.as_bytes(), h.value.as_deref())),
    );
}

#[cfg(test)]
mod tests {
    //! The host's verdict on every aggregator result of the golden vectors
    //! (`wit/vectors/index.json`, `aggregate.results[].host`).

    use std::path::{Path, PathBuf};

    use serde_json::Value;

    use super::*;

    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/vectors")
    }

    fn hex_file(rel: &str) -> Bytes {
        let text = std::fs::read_to_string(vectors().join(rel)).unwrap();
        let digits: String = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        Bytes::from(hex::decode(digits).unwrap_or_else(|e| panic!("{rel}: {e}")))
    }

    #[test]
    fn records_are_grouped_by_key_in_first_seen_order_without_keyless_ones() {
        let rec = |key: Option<&str>| Record {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::from_static(b"{}")),
            ..Record::default()
        };
        let records = [
            rec(Some("b")),
            rec(Some("a")),
            rec(None),
            rec(Some("b")),
            rec(Some("")),
        ];
        let groups = group_by_key(&records);
        let got: Vec<(&[u8], &[u32])> = groups
            .iter()
            .map(|(k, i)| (k.as_ref(), i.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"b"[..], &[0, 3][..]),
                (&b"a"[..], &[1][..]),
                (&b""[..], &[4][..])
            ]
        );
        // A tombstone is left out like a keyless record.
        let tombstone = Record {
            value: None,
            ..rec(Some("a"))
        };
        assert!(group_by_key(&[tombstone]).is_empty());
    }

    #[test]
    fn the_host_concludes_what_every_aggregate_vector_says() {
        let index: Value =
            serde_json::from_str(&std::fs::read_to_string(vectors().join("index.json")).unwrap())
                .unwrap();
        let results = index["aggregate"]["results"].as_array().unwrap();
        for v in results {
            let name = v["name"].as_str().unwrap();
            let bytes = hex_file(v["file"].as_str().unwrap());
            let records = v["records"].as_u64().unwrap() as usize;
            let host = &v["host"];
            if let Some(m) = host.get("malformed") {
                let e = read_results(&bytes, records).err().unwrap();
                assert_eq!(Some(e.offset as u64), m["offset"].as_u64(), "{name}");
                assert_eq!(Some(e.expected), m["expected"].as_str(), "{name}");
                let alone = contract::malformed(0, &e);
                assert_eq!(
                    alone.kind.as_str(),
                    host["alone"]["failure"]["kind"],
                    "{name}"
                );
                assert_eq!(alone.reason, host["alone"]["failure"]["reason"], "{name}");
                continue;
            }
            let raw = read_results(&bytes, records).unwrap();
            let want = host["outcomes"].as_array().unwrap();
            assert_eq!(raw.len(), want.len(), "{name}");
            for (i, (raw, want)) in raw.into_iter().zip(want).enumerate() {
                match judge(i as u32, raw, 1 << 20) {
                    Said::Accumulator(acc) => {
                        let expected = match &want["update"] {
                            Value::Null => None,
                            Value::String(s) => Some(s.as_bytes().to_vec()),
                            other => panic!("{name} {i}: {other}"),
                        };
                        assert!(want.get("update").is_some(), "{name} {i}: {want}");
                        assert_eq!(acc.map(|a| a.to_vec()), expected, "{name} {i}");
                    }
                    Said::Failure(f) => {
                        assert_eq!(f.kind.as_str(), want["failure"]["kind"], "{name} {i}");
                        assert_eq!(f.reason, want["failure"]["reason"], "{name} {i}");
                    }
                    Said::Retry(m) => assert_eq!(m, want["retry"], "{name} {i}"),
                }
            }
        }
        assert!(results.len() >= 9, "only {} vectors", results.len());
    }
}
