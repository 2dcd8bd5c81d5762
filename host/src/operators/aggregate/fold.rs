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
        let timestamp = match accumulator {
            Some(a) => ts.max(i64::from_le_bytes(a[..TS].try_into().expect("8 bytes"))),
            None => ts,
        };
        next.extend_from_slice(&timestamp.to_le_bytes());
        // What a failed fold left behind.
        values.clear();
        if values.capacity() < VALUES_CHUNK / 16 {
            values.reserve(VALUES_CHUNK);
        }
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
