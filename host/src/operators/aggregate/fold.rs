//! The folds weir computes in the host, with no plugin call: named
//! built-in aggregations (`count`, `sum`, `min`, `max`, `avg`) and
//! reductions (`latest`, or the newest value with one field replaced by
//! its running `sum`, `min` or `max`).
//!
//! A fold turns a key's accumulator and one record into the next
//! accumulator and the value emitted downstream. Accumulators are bytes the
//! host stores; each starts with the largest record timestamp folded into
//! it (the result's timestamp, as in Kafka Streams). After it:
//!
//! - aggregations: per aggregation in order, `count` an i64, `sum` / `min` /
//!   `max` a [`Number`], `avg` a [`Number`] sum and an i64 count;
//! - reductions: the value last emitted (the newest record's value, with the
//!   reduced field set).

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::number::Number;
use crate::codec::extract::FieldPath;
use crate::pipeline::{AggOp, Aggregation, Reduce};

/// Bytes of the timestamp at the start of an accumulator.
const TS: usize = 8;

/// One record folded in: the value to emit and its timestamp (the
/// accumulator to store went to the caller's buffer).
pub struct Folded {
    pub value: Bytes,
    pub timestamp: i64,
}

/// Bytes an emitted-values buffer takes at a time (see [`Fold::add`]).
const VALUES_CHUNK: usize = 64 << 10;

/// A built-in fold, ready to run.
#[derive(Debug, Clone)]
pub enum Fold {
    Aggregations {
        ops: Vec<AggOp>,
        /// `"name":` of each output field, JSON-escaped once.
        labels: Vec<Vec<u8>>,
    },
    Reduce(Reduce),
}

impl Fold {
    /// The fold of a built-in aggregation (`None` for a plugin's).
    pub fn of(aggregation: &Aggregation) -> Option<Fold> {
        match aggregation {
            Aggregation::Builtin(named) => Some(Fold::Aggregations {
                ops: named.iter().map(|(_, op)| op.clone()).collect(),
                labels: named
                    .iter()
                    .map(|(name, _)| {
                        let mut label = serde_json::to_vec(name).expect("a string serializes");
                        label.push(b':');
                        label
                    })
                    .collect(),
            }),
            Aggregation::Reduce(r) => Some(Fold::Reduce(r.clone())),
            Aggregation::Plugin => None,
        }
    }

    /// Whether it reads a record's value (a count does not, and so counts
    /// a tombstone, as Kafka Streams' windowed `count` does).
    pub fn reads_values(&self) -> bool {
        match self {
            Fold::Aggregations { ops, .. } => ops.iter().any(|op| !matches!(op, AggOp::Count)),
            Fold::Reduce(_) => true,
        }
    }

    /// Whether every value it emits is JSON it wrote itself (a reduction
    /// emits the input's value, or the input's with a number replaced).
    pub fn writes_json(&self) -> bool {
        matches!(self, Fold::Aggregations { .. })
    }

    /// Folds `value` (a JSON document) with timestamp `ts` into
    /// `accumulator` (`None`: the key's first record), writing the next
    /// accumulator to `next` (empty). A value the fold writes itself goes
    /// to `values`, from which it is split off: records emitted one after
    /// the other share its chunks instead of taking an allocation each.
    /// `Err` says what is wrong with the record; `next` must then be
    /// ignored (the key's accumulator stays as it was).
    pub fn add(
        &self,
        accumulator: Option<&[u8]>,
        value: &Bytes,
        ts: i64,
        next: &mut Vec<u8>,
        values: &mut BytesMut,
    ) -> Result<Folded, String> {
        let accumulator = accumulator.filter(|a| a.len() >= TS);
        let timestamp = begin(accumulator, ts, next, values);
        match self {
            Fold::Aggregations { ops, labels } => {
                let mut state = accumulator.map(|a| &a[TS..]);
                values.put_u8(b'{');
                for (n, (op, label)) in ops.iter().zip(labels).enumerate() {
                    if n > 0 {
                        values.put_u8(b',');
                    }
                    values.put_slice(label);
                    let shown = step(op, &mut state, value, next)?;
                    shown.write_json(values);
                }
                values.put_u8(b'}');
                Ok(Folded {
                    value: values.split().freeze(),
                    timestamp,
                })
            }
            Fold::Reduce(reduce) => {
                let emitted = match (reduce, accumulator) {
                    (Reduce::Latest, _) | (_, None) => {
                        if let Some(path) = reduce.field() {
                            // The field must hold a number from the start.
                            number_at(value, path)?;
                        }
                        value.clone()
                    }
                    (Reduce::Sum(path) | Reduce::Min(path) | Reduce::Max(path), Some(a)) => {
                        let old = &a[TS..];
                        let (new_span, new) = number_at(value, path)?;
                        let (old_span, old_n) = number_at(old, path)
                            .map_err(|e| format!("(in the stored value) {e}"))?;
                        values.put_slice(&value[..new_span.start]);
                        match reduce {
                            Reduce::Sum(_) => old_n.add(new)?.write_json(values),
                            Reduce::Min(_) if new.compare(old_n).is_lt() => {
                                values.put_slice(&value[new_span.clone()])
                            }
                            Reduce::Max(_) if new.compare(old_n).is_gt() => {
                                values.put_slice(&value[new_span.clone()])
                            }
                            _ => values.put_slice(&old[old_span]),
                        }
                        values.put_slice(&value[new_span.end..]);
                        values.split().freeze()
                    }
                };
                next.extend_from_slice(&emitted);
                Ok(Folded {
                    value: emitted,
                    timestamp,
                })
            }
        }
    }
}

impl Fold {
    /// Merges two accumulators of the same key (two sessions a record
    /// bridges, Kafka Streams' session `Merger`): `earlier`'s then
    /// `later`'s, into `next` (empty), the merged value to `values` (as
    /// [`Fold::add`]). Counts and sums add, a minimum or maximum keeps the
    /// winner (`earlier`'s on a tie), an average adds sums and counts; a
    /// reduction reduces `later`'s value into `earlier`'s, as Kafka Streams
    /// merges with the reducer.
    pub fn merge(
        &self,
        earlier: &[u8],
        later: &[u8],
        next: &mut Vec<u8>,
        values: &mut BytesMut,
    ) -> Result<Folded, String> {
        let short = || "a stored accumulator is too short".to_string();
        let later_ts = i64::from_le_bytes(
            later
                .get(..TS)
                .ok_or_else(short)?
                .try_into()
                .expect("8 bytes"),
        );
        let Fold::Aggregations { ops, labels } = self else {
            let value = Bytes::copy_from_slice(&later[TS..]);
            return self.add(Some(earlier), &value, later_ts, next, values);
        };
        if earlier.len() < TS {
            return Err(short());
        }
        let timestamp = begin(Some(earlier), later_ts, next, values);
        let (mut a, mut b) = (&earlier[TS..], &later[TS..]);
        values.put_u8(b'{');
        for (n, (op, label)) in ops.iter().zip(labels).enumerate() {
            if n > 0 {
                values.put_u8(b',');
            }
            values.put_slice(label);
            let shown = merge_step(op, &mut a, &mut b, next).ok_or_else(short)??;
            shown.write_json(values);
        }
        values.put_u8(b'}');
        Ok(Folded {
            value: values.split().freeze(),
            timestamp,
        })
    }
}

/// One aggregation of [`Fold::merge`]: reads its part of both states
/// (advancing them), writes the merged state to `next`, and returns the
/// number to show; `None` when a state is too short.
fn merge_step(
    op: &AggOp,
    a: &mut &[u8],
    b: &mut &[u8],
    next: &mut Vec<u8>,
) -> Option<Result<Number, String>> {
    fn take<'s>(s: &mut &'s [u8], n: usize) -> Option<&'s [u8]> {
        let (head, rest) = s.split_at_checked(n)?;
        *s = rest;
        Some(head)
    }
    let int = |bytes: &[u8]| i64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    let number = |s: &mut &[u8]| take(s, Number::ENCODED).and_then(Number::decode);
    Some(match op {
        AggOp::Count => {
            let count = int(take(a, 8)?) + int(take(b, 8)?);
            next.extend_from_slice(&count.to_le_bytes());
            Ok(Number::Int(count))
        }
        AggOp::Sum(_) | AggOp::Min(_) | AggOp::Max(_) => {
            let (x, y) = (number(a)?, number(b)?);
            let merged = match op {
                AggOp::Sum(_) => x.add(y),
                AggOp::Min(_) if y.compare(x).is_lt() => Ok(y),
                AggOp::Max(_) if y.compare(x).is_gt() => Ok(y),
                _ => Ok(x),
            };
            if let Ok(n) = merged {
                n.encode(next);
            }
            merged
        }
        AggOp::Avg(_) => {
            let (sa, ca) = (number(a)?, int(take(a, 8)?));
            let (sb, cb) = (number(b)?, int(take(b, 8)?));
            let count = ca + cb;
            sa.add(sb).map(|sum| {
                sum.encode(next);
                next.extend_from_slice(&count.to_le_bytes());
                Number::Float(sum.as_f64() / count as f64)
            })
        }
    })
}

/// What every fold does first: the result's timestamp (the larger of `ts`
/// and the accumulator's, or `ts` for a new one) written to `next`, and
/// `values` emptied of what a failed fold left behind, with room for more.
fn begin(accumulator: Option<&[u8]>, ts: i64, next: &mut Vec<u8>, values: &mut BytesMut) -> i64 {
    let timestamp = match accumulator {
        Some(a) => ts.max(i64::from_le_bytes(a[..TS].try_into().expect("8 bytes"))),
        None => ts,
    };
    next.extend_from_slice(&timestamp.to_le_bytes());
    values.clear();
    if values.capacity() < VALUES_CHUNK / 16 {
        values.reserve(VALUES_CHUNK);
    }
    timestamp
}

/// A table update folded (see [`Fold::change`]).
pub struct Changed {
    /// The next accumulator's value and timestamp (the accumulator went to
    /// the caller's buffer); `None`: the accumulator stays as it was.
    pub folded: Option<Folded>,
    /// Why the new value could not be added; the update goes to the error
    /// policy (its old value was still taken out: the row no longer holds
    /// it).
    pub failure: Option<String>,
}

/// Which value of a table update a fold could not read.
enum Side {
    /// The old one: it failed when it was new, so it was never added.
    Old,
    New(String),
}

impl Fold {
    /// Folds an update of a table's row into its group's `accumulator`
    /// (Kafka Streams' `KTableAggregate` and `KTableReduce`): `old`, the
    /// row's previous value, is taken out when there is an accumulator to
    /// take it from, then `new` is added. The next accumulator goes to
    /// `next` (empty), the emitted value to `values` (as [`Fold::add`]).
    /// The result's timestamp is the larger of `ts` and the accumulator's,
    /// or `ts` for a new accumulator. A count that reaches zero stays a
    /// zero (as in Kafka Streams); an average of nothing shows `null`.
    ///
    /// An old value the fold cannot read was never added (the update that
    /// brought it failed), so it is not taken out; a new value it cannot
    /// read is the update's failure, and the old one is still taken out.
    /// Only folds that can be undone reach here (validation refuses `min`,
    /// `max` and `latest` on tables).
    pub fn change(
        &self,
        accumulator: Option<&[u8]>,
        old: Option<&[u8]>,
        new: Option<&Bytes>,
        ts: i64,
        next: &mut Vec<u8>,
        values: &mut BytesMut,
    ) -> Changed {
        let accumulator = accumulator.filter(|a| a.len() >= TS);
        // Nothing was added yet, so there is nothing to take out.
        let mut old = old.filter(|_| accumulator.is_some());
        let mut new = new;
        let mut failure = None;
        let start = next.len();
        while old.is_some() || new.is_some() {
            next.truncate(start);
            match self.try_change(accumulator, old, new, ts, next, values) {
                Ok(folded) => {
                    return Changed {
                        folded: Some(folded),
                        failure,
                    };
                }
                Err(Side::Old) => old = None,
                Err(Side::New(reason)) => {
                    failure = Some(reason);
                    new = None;
                }
            }
        }
        Changed {
            folded: None,
            failure,
        }
    }

    fn try_change(
        &self,
        accumulator: Option<&[u8]>,
        old: Option<&[u8]>,
        new: Option<&Bytes>,
        ts: i64,
        next: &mut Vec<u8>,
        values: &mut BytesMut,
    ) -> Result<Folded, Side> {
        let timestamp = begin(accumulator, ts, next, values);
        let state = accumulator.map(|a| &a[TS..]);
        let value = match self {
            Fold::Aggregations { ops, labels } => {
                let mut state = state;
                values.put_u8(b'{');
                for (n, (op, label)) in ops.iter().zip(labels).enumerate() {
                    if n > 0 {
                        values.put_u8(b',');
                    }
                    values.put_slice(label);
                    let new = new.map(|n| &n[..]);
                    match change_step(op, &mut state, old, new, next)? {
                        Some(shown) => shown.write_json(values),
                        None => values.put_slice(b"null"),
                    }
                }
                values.put_u8(b'}');
                values.split().freeze()
            }
            Fold::Reduce(Reduce::Sum(path)) => {
                let value = reduce_change(path, state, old, new, values)?;
                next.extend_from_slice(&value);
                value
            }
            Fold::Reduce(r) => {
                return Err(Side::New(format!(
                    "a `{}` reduction cannot be undone on a table",
                    r.word()
                )));
            }
        };
        Ok(Folded { value, timestamp })
    }
}

/// One aggregation of a table update: takes `old` out of its part of the
/// state (advancing `state`) when both are there, adds `new`, writes the
/// new state to `next`, and returns the number to show (`None`: `null`).
fn change_step(
    op: &AggOp,
    state: &mut Option<&[u8]>,
    old: Option<&[u8]>,
    new: Option<&[u8]>,
    next: &mut Vec<u8>,
) -> Result<Option<Number>, Side> {
    let had = state.is_some();
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = state.as_mut()?;
        let (head, rest) = s.split_at_checked(n)?;
        *s = rest;
        Some(head)
    };
    let int = |b: &[u8]| i64::from_le_bytes(b.try_into().expect("8 bytes"));
    let old = old.filter(|_| had);
    // A running sum with `old`'s field taken out and `new`'s added.
    let sum = |sum: Option<Number>, path: &FieldPath| -> Result<Option<Number>, Side> {
        let mut sum = sum;
        if let (Some(o), Some(s)) = (old, sum) {
            let (_, o) = number_at(o, path).map_err(|_| Side::Old)?;
            sum = Some(s.sub(o).map_err(Side::New)?);
        }
        if let Some(n) = new {
            let (_, n) = number_at(n, path).map_err(Side::New)?;
            sum = Some(match sum {
                Some(s) => s.add(n).map_err(Side::New)?,
                None => n,
            });
        }
        Ok(sum)
    };
    let count = |c: i64| c - i64::from(old.is_some()) + i64::from(new.is_some());
    match op {
        AggOp::Count => {
            let c = count(take(8).map_or(0, int));
            next.extend_from_slice(&c.to_le_bytes());
            Ok(Some(Number::Int(c)))
        }
        AggOp::Sum(path) => {
            let s = sum(take(Number::ENCODED).and_then(Number::decode), path)?
                .ok_or_else(|| Side::New("nothing to sum".into()))?;
            s.encode(next);
            Ok(Some(s))
        }
        AggOp::Avg(path) => {
            let s = sum(take(Number::ENCODED).and_then(Number::decode), path)?
                .ok_or_else(|| Side::New("nothing to average".into()))?;
            let c = count(take(8).map_or(0, int));
            s.encode(next);
            next.extend_from_slice(&c.to_le_bytes());
            Ok((c != 0).then(|| Number::Float(s.as_f64() / c as f64)))
        }
        AggOp::Min(_) | AggOp::Max(_) => Err(Side::New(
            "`min` and `max` cannot be undone on a table".into(),
        )),
    }
}

/// A reduction's running sum over a table update: the stored value (the
/// one last emitted) with `old`'s field taken out, then the new value with
/// the field set to that plus its own (the new value as it is when there
/// was nothing before).
fn reduce_change(
    path: &FieldPath,
    stored: Option<&[u8]>,
    old: Option<&[u8]>,
    new: Option<&Bytes>,
    values: &mut BytesMut,
) -> Result<Bytes, Side> {
    let in_store = |e: String| Side::New(format!("(in the stored value) {e}"));
    let mut taken_out = None;
    if let (Some(s), Some(o)) = (stored, old) {
        let (_, o) = number_at(o, path).map_err(|_| Side::Old)?;
        let (span, n) = number_at(s, path).map_err(in_store)?;
        let mut v = Vec::with_capacity(s.len() + 8);
        v.extend_from_slice(&s[..span.start]);
        n.sub(o).map_err(Side::New)?.write_json(&mut v);
        v.extend_from_slice(&s[span.end..]);
        taken_out = Some(v);
    }
    let before = taken_out.as_deref().or(stored);
    match (new, before) {
        (Some(n), None) => {
            number_at(n, path).map_err(Side::New)?;
            Ok(n.clone())
        }
        (Some(n), Some(b)) => {
            let (span, add) = number_at(n, path).map_err(Side::New)?;
            let (_, total) = number_at(b, path).map_err(in_store)?;
            values.put_slice(&n[..span.start]);
            total.add(add).map_err(Side::New)?.write_json(values);
            values.put_slice(&n[span.end..]);
            Ok(values.split().freeze())
        }
        (None, Some(b)) => Ok(Bytes::copy_from_slice(b)),
        (None, None) => Err(Side::New("nothing to reduce".into())),
    }
}

impl Fold {
    /// The value an accumulator (after its timestamp) stands for: what the
    /// fold emitted when it stored it (`weir test` shows stores this way).
    pub fn shown(&self, state: &[u8]) -> Result<Bytes, String> {
        let Fold::Aggregations { ops, labels } = self else {
            // A reduction stores the value it emitted.
            return Ok(Bytes::copy_from_slice(state));
        };
        let corrupt = || format!("a stored accumulator of {} bytes is too short", state.len());
        let mut rest = state;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let (head, tail) = rest.split_at_checked(n).ok_or_else(corrupt)?;
            rest = tail;
            Ok(head)
        };
        let int = |b: &[u8]| i64::from_le_bytes(b.try_into().expect("8 bytes"));
        let mut out = vec![b'{'];
        for (n, (op, label)) in ops.iter().zip(labels).enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(label);
            let shown = match op {
                AggOp::Count => Number::Int(int(take(8)?)),
                AggOp::Sum(_) | AggOp::Min(_) | AggOp::Max(_) => {
                    Number::decode(take(Number::ENCODED)?).ok_or_else(corrupt)?
                }
                AggOp::Avg(_) => {
                    let sum = Number::decode(take(Number::ENCODED)?).ok_or_else(corrupt)?;
                    Number::Float(sum.as_f64() / int(take(8)?) as f64)
                }
            };
            shown.write_json(&mut out);
        }
        out.push(b'}');
        Ok(Bytes::from(out))
    }
}

impl Reduce {
    /// The reduction's word in a pipeline file.
    pub fn word(&self) -> &'static str {
        match self {
            Reduce::Latest => "latest",
            Reduce::Sum(_) => "sum",
            Reduce::Min(_) => "min",
            Reduce::Max(_) => "max",
        }
    }

    /// The field a reduction reads, if any.
    pub fn field(&self) -> Option<&FieldPath> {
        match self {
            Reduce::Latest => None,
            Reduce::Sum(f) | Reduce::Min(f) | Reduce::Max(f) => Some(f),
        }
    }
}

/// One aggregation: reads its part of the old state (advancing `state`),
/// writes its new state to `next`, and returns the number to show.
fn step(
    op: &AggOp,
    state: &mut Option<&[u8]>,
    value: &[u8],
    next: &mut Vec<u8>,
) -> Result<Number, String> {
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = state.as_mut()?;
        let (head, rest) = s.split_at_checked(n)?;
        *s = rest;
        Some(head)
    };
    match op {
        AggOp::Count => {
            let old = take(8).map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
            let count = old + 1;
            next.extend_from_slice(&count.to_le_bytes());
            Ok(Number::Int(count))
        }
        AggOp::Sum(path) | AggOp::Min(path) | AggOp::Max(path) => {
            let old = take(Number::ENCODED).and_then(Number::decode);
            let (_, new) = number_at(value, path)?;
            let result = match (op, old) {
                (_, None) => new,
                (AggOp::Sum(_), Some(old)) => old.add(new)?,
                (AggOp::Min(_), Some(old)) if new.compare(old).is_lt() => new,
                (AggOp::Max(_), Some(old)) if new.compare(old).is_gt() => new,
                (_, Some(old)) => old,
            };
            result.encode(next);
            Ok(result)
        }
        AggOp::Avg(path) => {
            let old_sum = take(Number::ENCODED).and_then(Number::decode);
            let old_count =
                take(8).map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
            let (_, new) = number_at(value, path)?;
            let sum = match old_sum {
                Some(old) => old.add(new)?,
                None => new,
            };
            let count = old_count + 1;
            sum.encode(next);
            next.extend_from_slice(&count.to_le_bytes());
            Ok(Number::Float(sum.as_f64() / count as f64))
        }
    }
}

/// The number field `path` of the JSON document `value` holds, and where.
fn number_at(value: &[u8], path: &FieldPath) -> Result<(Range<usize>, Number), String> {
    let span = path
        .locate(value)
        .map_err(|problem| format!("field `{path}` {problem}"))?;
    let n = Number::parse(&value[span.clone()]).map_err(|e| format!("field `{path}` {e}"))?;
    Ok((span, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> FieldPath {
        FieldPath::parse(p).unwrap()
    }

    fn run(fold: &Fold, inputs: &[(&str, i64)]) -> Vec<(String, i64)> {
        let mut acc: Option<Vec<u8>> = None;
        let mut out = Vec::new();
        let mut values = BytesMut::new();
        for (v, ts) in inputs {
            let mut next = Vec::new();
            let folded = fold
                .add(
                    acc.as_deref(),
                    &Bytes::copy_from_slice(v.as_bytes()),
                    *ts,
                    &mut next,
                    &mut values,
                )
                .unwrap();
            out.push((
                String::from_utf8(folded.value.to_vec()).unwrap(),
                folded.timestamp,
            ));
            // What the store shows for the key is what was emitted.
            assert_eq!(fold.shown(&next[TS..]), Ok(folded.value));
            acc = Some(next);
        }
        out
    }

    #[test]
    fn aggregations_compute_by_hand_expected_values_in_declared_order() {
        let fold = Fold::of(&Aggregation::Builtin(vec![
            ("event_count".into(), AggOp::Count),
            ("total_amount".into(), AggOp::Sum(path("amount"))),
            ("avg_amount".into(), AggOp::Avg(path("amount"))),
            ("low".into(), AggOp::Min(path("amount"))),
            ("high".into(), AggOp::Max(path("amount"))),
        ]))
        .unwrap();
        let out = run(
            &fold,
            &[
                (r#"{"amount": 100}"#, 10),
                (r#"{"amount": 50}"#, 30),
                (r#"{"amount": 100.5}"#, 20),
            ],
        );
        assert_eq!(
            out,
            vec![
                (r#"{"event_count":1,"total_amount":100,"avg_amount":100.0,"low":100,"high":100}"#.into(), 10),
                (r#"{"event_count":2,"total_amount":150,"avg_amount":75.0,"low":50,"high":100}"#.into(), 30),
                // A late record keeps the largest timestamp; a float makes the sum a float.
                (r#"{"event_count":3,"total_amount":250.5,"avg_amount":83.5,"low":50,"high":100.5}"#.into(), 30),
            ]
        );
    }

    #[test]
    fn a_bad_field_is_an_error_naming_it() {
        let fold = Fold::of(&Aggregation::Builtin(vec![(
            "t".into(),
            AggOp::Sum(path("a.b")),
        )]))
        .unwrap();
        // One record into `acc`: the next accumulator, or the error.
        let once = |fold: &Fold, acc: Option<&[u8]>, v: &str| {
            let mut next = Vec::new();
            let value = Bytes::copy_from_slice(v.as_bytes());
            fold.add(acc, &value, 0, &mut next, &mut BytesMut::new())
                .map(|_| next)
        };
        let bad = |v: &str| once(&fold, None, v).err().unwrap();
        assert_eq!(bad(r#"{"a": {}}"#), "field `a.b` is missing");
        assert_eq!(
            bad(r#"{"a": {"b": "7"}}"#),
            "field `a.b` is a string (\"7\"), not a number"
        );
        let max = Fold::of(&Aggregation::Builtin(vec![(
            "t".into(),
            AggOp::Sum(path("n")),
        )]))
        .unwrap();
        let first = once(&max, None, &format!(r#"{{"n": {}}}"#, i64::MAX)).unwrap();
        let e = once(&max, Some(&first), r#"{"n": 1}"#).err().unwrap();
        assert!(e.contains("overflows"), "{e}");
    }

    /// Folds table updates `(old, new, ts)` one after the other: each
    /// result's value (`None`: unchanged) and timestamp, and its failure.
    fn run_table(
        fold: &Fold,
        updates: &[(Option<&str>, Option<&str>, i64)],
    ) -> Vec<(Option<String>, i64, Option<String>)> {
        let mut acc: Option<Vec<u8>> = None;
        let mut out = Vec::new();
        let mut values = BytesMut::new();
        for (old, new, ts) in updates {
            let mut next = Vec::new();
            let new = new.map(|n| Bytes::copy_from_slice(n.as_bytes()));
            let c = fold.change(
                acc.as_deref(),
                old.map(str::as_bytes),
                new.as_ref(),
                *ts,
                &mut next,
                &mut values,
            );
            let shown = c.folded.map(|f| {
                assert_eq!(fold.shown(&next[TS..]), Ok(f.value.clone()));
                acc = Some(next);
                (String::from_utf8(f.value.to_vec()).unwrap(), f.timestamp)
            });
            out.push((
                shown.as_ref().map(|s| s.0.clone()),
                shown.map_or(0, |s| s.1),
                c.failure,
            ));
        }
        out
    }

    #[test]
    fn a_table_update_takes_the_old_value_out_before_it_adds_the_new_one() {
        let fold = Fold::of(&Aggregation::Builtin(vec![
            ("n".into(), AggOp::Count),
            ("t".into(), AggOp::Sum(path("a"))),
            ("m".into(), AggOp::Avg(path("a"))),
        ]))
        .unwrap();
        let v = |a: &str| format!(r#"{{"a": {a}}}"#);
        let (v10, v4, v2_5) = (v("10"), v("4"), v("2.5"));
        let some = |s: &str| Some(s.to_string());
        let out = run_table(
            &fold,
            &[
                (None, Some(&v10), 100),
                (None, Some(&v4), 90),
                // A row changes: 10 out, 2.5 in; the timestamp stays the largest.
                (Some(&v10), Some(&v2_5), 95),
                (Some(&v4), None, 120),
                (Some(&v2_5), None, 130),
                // A new value without the field fails; its old one still leaves.
                (None, Some(&v10), 140),
                (Some(&v10), Some(r#"{"b": 1}"#), 150),
                // An old value without the field was never added.
                (Some(r#"{"b": 1}"#), Some(&v4), 160),
            ],
        );
        let missing = "field `a` is missing".to_string();
        assert_eq!(
            out,
            vec![
                (some(r#"{"n":1,"t":10,"m":10.0}"#), 100, None),
                (some(r#"{"n":2,"t":14,"m":7.0}"#), 100, None),
                (some(r#"{"n":2,"t":6.5,"m":3.25}"#), 100, None),
                (some(r#"{"n":1,"t":2.5,"m":2.5}"#), 120, None),
                // A count that reaches zero stays, as Kafka Streams'; an average of nothing is null.
                (some(r#"{"n":0,"t":0.0,"m":null}"#), 130, None),
                (some(r#"{"n":1,"t":10.0,"m":10.0}"#), 140, None),
                (some(r#"{"n":0,"t":0.0,"m":null}"#), 150, Some(missing)),
                (some(r#"{"n":1,"t":4.0,"m":4.0}"#), 160, None),
            ]
        );
        // The first update of a group with only an old value: nothing to take it from.
        assert_eq!(
            run_table(&fold, &[(Some(&v10), None, 5)]),
            vec![(None, 0, None)]
        );
    }

    #[test]
    fn a_table_reduction_keeps_the_newest_row_with_the_running_sum() {
        let fold = Fold::of(&Aggregation::Reduce(Reduce::Sum(path("n")))).unwrap();
        let some = |s: &str| Some(s.to_string());
        let (a, b, c) = (
            r#"{"n": 5, "x": "a"}"#,
            r#"{"n": 2, "x": "b"}"#,
            r#"{"n": 1, "x": "c"}"#,
        );
        let out = run_table(
            &fold,
            &[
                (None, Some(a), 1),
                (None, Some(b), 2),
                // a becomes c: 7 - 5 + 1, shown on the newest row.
                (Some(a), Some(c), 3),
                // b leaves: the last row stays, its sum less 2.
                (Some(b), None, 4),
            ],
        );
        assert_eq!(
            out,
            vec![
                (some(a), 1, None),
                (some(r#"{"n": 7, "x": "b"}"#), 2, None),
                (some(r#"{"n": 3, "x": "c"}"#), 3, None),
                (some(r#"{"n": 1, "x": "c"}"#), 4, None),
            ]
        );
    }

    #[test]
    fn reductions_keep_the_newest_value_with_the_reduced_field() {
        let sum = Fold::of(&Aggregation::Reduce(Reduce::Sum(path("n")))).unwrap();
        let out = run(
            &sum,
            &[
                (r#"{"n": 1, "x": "a"}"#, 5),
                (r#"{"n": 2, "x": "b"}"#, 4),
                (r#"{"x": "c", "n": 0.5}"#, 9),
            ],
        );
        assert_eq!(
            out,
            vec![
                (r#"{"n": 1, "x": "a"}"#.into(), 5),
                (r#"{"n": 3, "x": "b"}"#.into(), 5),
                (r#"{"x": "c", "n": 3.5}"#.into(), 9),
            ]
        );
        let min = Fold::of(&Aggregation::Reduce(Reduce::Min(path("n")))).unwrap();
        let out = run(
            &min,
            &[
                (r#"{"n": 2.0}"#, 1),
                (r#"{"n": 2}"#, 1),
                (r#"{"n": -1}"#, 1),
            ],
        );
        // A tie keeps the earlier number as it was written.
        let values: Vec<&str> = out.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(
            values,
            vec![r#"{"n": 2.0}"#, r#"{"n": 2.0}"#, r#"{"n": -1}"#]
        );
        let latest = Fold::of(&Aggregation::Reduce(Reduce::Latest)).unwrap();
        let out = run(&latest, &[(r#"{"a":1}"#, 3), (r#"[2]"#, 1)]);
        assert_eq!(out, vec![(r#"{"a":1}"#.into(), 3), ("[2]".into(), 3)]);
    }
}
