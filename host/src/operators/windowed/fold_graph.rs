//! Plugin folds that depend on each other, computed in as few calls as
//! their dependencies allow: what session and sliding windows over an
//! aggregator plugin need.
//!
//! A session's accumulator is the `merge` of the sessions a record
//! bridges, then the record `add`ed to it; a sliding window may start from
//! another window's accumulator. Which windows a record touches depends
//! only on times, so a batch is planned host-side first, as a graph of
//! values: an accumulator read from the store (or none), the `add` of one
//! record to another value, or the `merge` of two values.
//! [`FoldGraph::evaluate`] then computes the values wanted in rounds: each
//! round makes one `merge` call for the pairs whose sides are known and
//! one `add` call for the values whose base is known, where the `add` of a
//! record to a value of the same round joins that value's group (records
//! folded one after another into one accumulator are one group, as in a
//! plain aggregate). Records in time order take one round; a record that
//! bridges sessions, or a window copied from one updated in the same
//! batch, may take more.
//!
//! Values are hash-consed (one id per distinct expression) and kept for the
//! whole batch, so when a batch is planned again after a surprise (a
//! record that failed, an accumulator the plugin removed), every value
//! that did not depend on it is reused: the plugin folds a record into a
//! given accumulator once.

use std::collections::HashMap;

use bytes::Bytes;

use super::plugin_windows::stream_times;
use super::{Shared, WindowFold};
use crate::operators::failure::FailureKind;
use crate::operators::operator::OperatorError;
use crate::operators::plugin_aggregator::{AggregateOutput, Group, Pair, PluginAggregator};
use crate::operators::plugin_step::StepOutput;
use crate::operators::plugin_step::{Culprit, StartError, plugin_failure};
use crate::pipeline::Emit;
use crate::record::Record;

/// A value of the graph.
pub(super) type ValueId = u32;

/// How a value is made.
#[derive(Debug, Clone, Copy)]
enum Expr {
    /// Given when it was made (read from the store, or none).
    Known,
    /// Record `input` folded into `base` with `add`.
    Add { base: ValueId, input: u32 },
    /// `left` and `right` merged with `merge`, for record `input` (whose
    /// key they share).
    Merge {
        left: ValueId,
        right: ValueId,
        input: u32,
    },
}

/// What a value is, once computed.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Pending,
    /// An accumulator, or none (the plugin removed it, or there was none).
    Ok(Option<Bytes>),
    /// It could not be made: the fold failed (or a value it depends on
    /// did), or a stored accumulator is unreadable.
    Failed {
        kind: FailureKind,
        reason: String,
    },
}

/// A batch's values (see the module's documentation).
pub(super) struct FoldGraph {
    exprs: Vec<Expr>,
    values: Vec<Value>,
    known: HashMap<Vec<u8>, ValueId>,
    adds: HashMap<(ValueId, u32), ValueId>,
    merges: HashMap<(ValueId, ValueId), ValueId>,
}

/// The value of no accumulator.
pub(super) const NONE: ValueId = 0;

impl FoldGraph {
    pub(super) fn new() -> Self {
        FoldGraph {
            exprs: vec![Expr::Known],
            values: vec![Value::Ok(None)],
            known: HashMap::new(),
            adds: HashMap::new(),
            merges: HashMap::new(),
        }
    }

    fn push(&mut self, expr: Expr, value: Value) -> ValueId {
        self.exprs.push(expr);
        self.values.push(value);
        (self.exprs.len() - 1) as ValueId
    }

    /// The value stored under `identity` (a store key), read by `read` the
    /// first time it is asked for.
    pub(super) fn stored(&mut self, identity: &[u8], read: impl FnOnce() -> Value) -> ValueId {
        if let Some(&id) = self.known.get(identity) {
            return id;
        }
        let id = self.push(Expr::Known, read());
        self.known.insert(identity.to_vec(), id);
        id
    }

    /// Record `input` folded into `base`.
    pub(super) fn add(&mut self, base: ValueId, input: u32) -> ValueId {
        if let Some(&id) = self.adds.get(&(base, input)) {
            return id;
        }
        let id = self.push(Expr::Add { base, input }, Value::Pending);
        self.adds.insert((base, input), id);
        id
    }

    /// `left` and `right` merged (for record `input`, whose key they
    /// share); merging with no accumulator is the other side.
    pub(super) fn merge(&mut self, left: ValueId, right: ValueId, input: u32) -> ValueId {
        if left == NONE {
            return right;
        }
        if right == NONE {
            return left;
        }
        if let Some(&id) = self.merges.get(&(left, right)) {
            return id;
        }
        let id = self.push(Expr::Merge { left, right, input }, Value::Pending);
        self.merges.insert((left, right), id);
        id
    }

    pub(super) fn value(&self, id: ValueId) -> &Value {
        &self.values[id as usize]
    }

    /// Computes every value in `wanted` (and what they depend on) with as
    /// few calls of `plugin` as their dependencies allow. Only a plugin
    /// that no longer starts is an error.
    pub(super) fn evaluate(
        &mut self,
        wanted: &[ValueId],
        plugin: &mut PluginAggregator,
        records: &[Record],
    ) -> Result<(), OperatorError> {
        let mut todo = self.pending_closure(wanted);
        while !todo.is_empty() {
            let before = todo.len();
            self.settle_without_calls(&todo);
            self.merge_round(&todo, plugin, records)?;
            self.settle_without_calls(&todo);
            self.add_round(&todo, plugin, records)?;
            todo.retain(|&id| matches!(self.values[id as usize], Value::Pending));
            if todo.len() == before {
                return Err(OperatorError::internal(
                    "a window's fold plan has a value that depends on itself",
                ));
            }
        }
        Ok(())
    }

    /// The pending values `wanted` needs, each after what it depends on.
    fn pending_closure(&self, wanted: &[ValueId]) -> Vec<ValueId> {
        let mut seen = vec![false; self.exprs.len()];
        let mut order = Vec::new();
        let mut stack: Vec<(ValueId, bool)> = wanted.iter().map(|&id| (id, false)).collect();
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                order.push(id);
                continue;
            }
            if seen[id as usize] || !matches!(self.values[id as usize], Value::Pending) {
                continue;
            }
            seen[id as usize] = true;
            stack.push((id, true));
            match self.exprs[id as usize] {
                Expr::Known => {}
                Expr::Add { base, .. } => stack.push((base, false)),
                Expr::Merge { left, right, .. } => {
                    stack.push((left, false));
                    stack.push((right, false));
                }
            }
        }
        order
    }

    /// Gives a value without a call where one is not needed: a value that
    /// depends on a failed one fails with it; a merge with no accumulator
    /// on one side is the other side.
    fn settle_without_calls(&mut self, todo: &[ValueId]) {
        // `todo` lists dependencies first, so one pass settles chains.
        for &id in todo {
            if !matches!(self.values[id as usize], Value::Pending) {
                continue;
            }
            let settled = match self.exprs[id as usize] {
                Expr::Known => None,
                Expr::Add { base, .. } => match &self.values[base as usize] {
                    failed @ Value::Failed { .. } => Some(failed.clone()),
                    _ => None,
                },
                Expr::Merge { left, right, .. } => {
                    match (&self.values[left as usize], &self.values[right as usize]) {
                        (failed @ Value::Failed { .. }, _) | (_, failed @ Value::Failed { .. }) => {
                            Some(failed.clone())
                        }
                        (Value::Ok(None), other) | (other, Value::Ok(None))
                            if !matches!(other, Value::Pending) =>
                        {
                            Some(other.clone())
                        }
                        _ => None,
                    }
                }
            };
            if let Some(value) = settled {
                self.values[id as usize] = value;
            }
        }
    }

    /// One `merge` call for every pending merge whose sides are known.
    fn merge_round(
        &mut self,
        todo: &[ValueId],
        plugin: &mut PluginAggregator,
        records: &[Record],
    ) -> Result<(), OperatorError> {
        let mut ready: Vec<(ValueId, u32, Bytes, Bytes)> = Vec::new();
        for &id in todo {
            if let (Expr::Merge { left, right, input }, Value::Pending) =
                (self.exprs[id as usize], &self.values[id as usize])
                && let (Value::Ok(Some(l)), Value::Ok(Some(r))) =
                    (&self.values[left as usize], &self.values[right as usize])
            {
                ready.push((id, input, l.clone(), r.clone()));
            }
        }
        if ready.is_empty() {
            return Ok(());
        }
        let pairs: Vec<Pair<'_>> = ready
            .iter()
            .map(|(_, input, left, right)| Pair {
                key: records[*input as usize].key.as_deref().unwrap_or_default(),
                left,
                right,
            })
            .collect();
        let mut out = AggregateOutput::default();
        if let Err(e) = plugin.merge(&pairs, &mut out) {
            let inputs: Vec<u32> = ready.iter().map(|r| r.1).collect();
            return Err(failure_in_batch(e, plugin, &inputs));
        }
        for u in out.updates {
            self.values[ready[u.input as usize].0 as usize] = Value::Ok(u.accumulator);
        }
        for f in out.failures {
            self.values[ready[f.input as usize].0 as usize] = Value::Failed {
                kind: f.kind,
                reason: format!("merging its sessions: {}", f.reason),
            };
        }
        Ok(())
    }

    /// One `add` call for every pending fold whose base is known, each
    /// with the folds into it of the same round chained on as one group.
    fn add_round(
        &mut self,
        todo: &[ValueId],
        plugin: &mut PluginAggregator,
        records: &[Record],
    ) -> Result<(), OperatorError> {
        // The pending folds into each value.
        let mut folds_into: HashMap<ValueId, Vec<ValueId>> = HashMap::new();
        let mut heads = Vec::new();
        for &id in todo {
            if let (Expr::Add { base, .. }, Value::Pending) =
                (self.exprs[id as usize], &self.values[id as usize])
            {
                match &self.values[base as usize] {
                    Value::Ok(_) => heads.push(id),
                    Value::Pending => folds_into.entry(base).or_default().push(id),
                    Value::Failed { .. } => {}
                }
            }
        }
        if heads.is_empty() {
            return Ok(());
        }
        // Each group: its base's accumulator and its values in order; each
        // member gets a copy of its record (a record may be in several).
        let mut copies: Vec<Record> = Vec::new();
        let mut members: Vec<ValueId> = Vec::new();
        let mut chains: Vec<(ValueId, std::ops::Range<usize>)> = Vec::new();
        for head in heads {
            let from = members.len();
            let mut tail = Some(head);
            while let Some(id) = tail {
                let Expr::Add { input, .. } = self.exprs[id as usize] else {
                    unreachable!("a chain holds folds")
                };
                copies.push(records[input as usize].clone());
                members.push(id);
                // A value folded into twice: the first fold chains on, the
                // others wait for the next round.
                tail = folds_into
                    .get_mut(&id)
                    .and_then(|next| (!next.is_empty()).then(|| next.remove(0)));
            }
            chains.push((head, from..members.len()));
        }
        let inputs: Vec<u32> = (0..members.len() as u32).collect();
        let bases: Vec<Option<Bytes>> = chains
            .iter()
            .map(|(head, _)| {
                let Expr::Add { base, .. } = self.exprs[*head as usize] else {
                    unreachable!("a chain starts with a fold")
                };
                match &self.values[base as usize] {
                    Value::Ok(acc) => acc.clone(),
                    _ => unreachable!("a chain's base is known"),
                }
            })
            .collect();
        let groups: Vec<Group<'_>> = chains
            .iter()
            .zip(&bases)
            .map(|((_, range), base)| Group {
                key: copies[range.start].key.as_deref().unwrap_or_default(),
                accumulator: base.as_deref(),
                inputs: &inputs[range.clone()],
            })
            .collect();
        let mut out = AggregateOutput::default();
        if let Err(e) = plugin.add(&copies, &groups, &mut out) {
            let batch: Vec<u32> = copies_inputs(&self.exprs, &members);
            return Err(failure_in_batch(e, plugin, &batch));
        }
        let mut said: Vec<Option<Value>> = vec![None; members.len()];
        for u in out.updates {
            said[u.input as usize] = Some(Value::Ok(u.accumulator));
        }
        for f in out.failures {
            said[f.input as usize] = Some(Value::Failed {
                kind: f.kind,
                reason: f.reason,
            });
        }
        // After a member fails, the plugin folds the next ones into the
        // accumulator before it, which is not what they were planned on:
        // they fail with it.
        for (_, range) in chains {
            let mut failed: Option<Value> = None;
            for m in range {
                let value = match (&failed, said[m].take()) {
                    (Some(f), _) => f.clone(),
                    (None, Some(v)) => v,
                    (None, None) => {
                        return Err(OperatorError::internal(
                            "an aggregator call left a record without a result",
                        ));
                    }
                };
                if matches!(value, Value::Failed { .. }) {
                    failed = Some(value.clone());
                }
                self.values[members[m] as usize] = value;
            }
        }
        Ok(())
    }
}

/// The batch inputs of fold values.
fn copies_inputs(exprs: &[Expr], members: &[ValueId]) -> Vec<u32> {
    members
        .iter()
        .map(|&id| match exprs[id as usize] {
            Expr::Add { input, .. } | Expr::Merge { input, .. } => input,
            Expr::Known => 0,
        })
        .collect()
}

/// A plugin that no longer starts, as the operator's error: the culprit's
/// records (indices into a call's items) named by their batch inputs
/// `inputs` (one per item).
pub(super) fn failure_in_batch(
    e: StartError,
    plugin: &PluginAggregator,
    inputs: &[u32],
) -> OperatorError {
    let culprit = plugin.culprit().and_then(|c| {
        let named = inputs.get(c.inputs.start as usize..c.inputs.end as usize)?;
        Some(Culprit {
            inputs: *named.iter().min()?..*named.iter().max()? + 1,
            fault: c.fault.clone(),
        })
    });
    plugin_failure(e, culprit.as_ref(), false)
}

/// A kind of window whose plugin folds depend on each other, folded by
/// [`fold_batch`].
pub(super) trait BatchPlan {
    /// What a record does to its key's windows.
    type Op;
    /// The store as the plan sees it: what the plan changed since the
    /// batch began.
    type Overlay: Clone;
    /// Plans record `input` (with a key and a value) at stream time,
    /// assuming every fold succeeds.
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &self,
        s: &mut Shared,
        graph: &mut FoldGraph,
        overlay: &mut Self::Overlay,
        input: u32,
        record: &Record,
        key: &Bytes,
    ) -> Result<Self::Op, OperatorError>;
    /// The values `op` needs computed.
    fn values(op: &Self::Op, into: &mut Vec<ValueId>);
    /// `op` as it happened, its values computed, written into `kept`;
    /// `true`: it surprised the plan (a failed record, a removed
    /// accumulator), which no longer holds after it.
    fn keep(
        op: Self::Op,
        graph: &FoldGraph,
        kept: &mut Self::Overlay,
        key: &Bytes,
    ) -> Result<(Self::Op, bool), OperatorError>;
    /// The overlay of an empty plan: nothing changed yet.
    fn overlay(&self) -> Self::Overlay;
    /// Stores and emits what record `input` did (`op`, kept), as the
    /// built-in path would have, at the record's stream time.
    fn apply(
        &mut self,
        s: &mut Shared,
        graph: &FoldGraph,
        input: u32,
        record: &Record,
        op: Self::Op,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError>;
    /// Emits the windows stream time has closed (`emit: final`).
    fn emit_closed(
        &mut self,
        s: &mut Shared,
        input: u32,
        out: &mut StepOutput,
    ) -> Result<(), OperatorError>;
}

/// Folds a batch into `windows` with the step's plugin: planned and
/// computed by [`plan_batch`], then applied record by record, stream time
/// replayed so `emit: final` emits what each record closes.
pub(super) fn fold_batch<P: BatchPlan>(
    windows: &mut P,
    s: &mut Shared,
    records: &[Record],
    out: &mut StepOutput,
) -> Result<(), OperatorError> {
    let stream_times = stream_times(s, records, out);
    let reached = s.stream_time;
    let mut graph = FoldGraph::new();
    let kept = windows.overlay();
    let ops = match plan_batch(windows, s, records, &stream_times, kept, &mut graph) {
        Ok(ops) => ops,
        Err(e) => {
            out.clear();
            return Err(e);
        }
    };
    for (i, op) in ops.into_iter().enumerate() {
        let Some(op) = op else { continue };
        let input = i as u32;
        s.stream_time = stream_times[i].0;
        windows.apply(s, &graph, input, &records[i], op, out)?;
        if s.emit == Emit::Final {
            windows.emit_closed(s, input, out)?;
        }
    }
    s.stream_time = reached;
    Ok(())
}

/// Plans a batch with `plan` and computes its values: the whole batch
/// planned, its values computed, the plan kept up to its first surprise,
/// and the rest planned again from there (reusing the values computed),
/// until every record is kept. `kept` is the overlay of an empty plan.
/// Returns each record's op (`None`: not folded, `stream_times`' `false`).
fn plan_batch<P: BatchPlan>(
    plan: &P,
    s: &mut Shared,
    records: &[Record],
    stream_times: &[(i64, bool)],
    mut kept: P::Overlay,
    graph: &mut FoldGraph,
) -> Result<Vec<Option<P::Op>>, OperatorError> {
    let mut fixed: Vec<Option<P::Op>> = Vec::with_capacity(records.len());
    while fixed.len() < records.len() {
        let from = fixed.len();
        let mut overlay = kept.clone();
        let mut ops = Vec::with_capacity(records.len() - from);
        for (i, record) in records.iter().enumerate().skip(from) {
            let (stream_time, folded) = stream_times[i];
            ops.push(match (&record.key, folded) {
                (Some(key), true) => {
                    s.stream_time = stream_time;
                    Some(plan.plan(s, graph, &mut overlay, i as u32, record, key)?)
                }
                _ => None,
            });
        }
        let mut wanted = Vec::new();
        for op in ops.iter().flatten() {
            P::values(op, &mut wanted);
        }
        let WindowFold::Plugin(plugin) = &mut s.fold else {
            unreachable!("planned for a plugin fold")
        };
        graph.evaluate(&wanted, plugin, records)?;
        for (i, op) in (from..).zip(ops) {
            let Some(op) = op else {
                fixed.push(None);
                continue;
            };
            let key = records[i].key.as_ref().expect("a folded record has a key");
            let (op, surprise) = P::keep(op, graph, &mut kept, key)?;
            fixed.push(Some(op));
            if surprise {
                break;
            }
        }
    }
    Ok(fixed)
}

/// The state version of accumulators the step's plugin writes.
pub(super) fn plugin_version(s: &Shared) -> u32 {
    match &s.fold {
        WindowFold::Plugin(plugin) => plugin.formats().current,
        WindowFold::Builtin(_) => unreachable!("called for a plugin fold"),
    }
}
