//! Keeps records whose JSON value satisfies a condition on one field.
//!
//! ```yaml
//! config: { field: amount, op: gt, value: 100 }      # also: gte lt lte eq ne exists missing
//! config: { field: customer.country, op: eq, value: "DE" }
//! ```
//! Numbers compare numerically, strings lexically; `eq`/`ne` compare any JSON
//! value. A value that is not a JSON object is poison.

use serde::Deserialize;
use serde_json::Value;
use weir_sdk::json;
use weir_sdk::{Config, Error, Filter, Record};

#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Op {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Ne,
    Exists,
    Missing,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    field: json::Path,
    op: Op,
    #[serde(default)]
    value: Value,
}

pub struct JsonFilter {
    field: json::Path,
    op: Op,
    value: Value,
    /// The wanted value as a number, for the ordering ops on numbers.
    threshold: Option<f64>,
}

impl Filter for JsonFilter {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        let needs_value = !matches!(s.op, Op::Exists | Op::Missing);
        if needs_value && s.value.is_null() && !matches!(s.op, Op::Eq | Op::Ne) {
            return Err(format!("op `{:?}` needs a `value`", s.op).to_lowercase());
        }
        if matches!(s.op, Op::Gt | Op::Gte | Op::Lt | Op::Lte)
            && !(s.value.is_number() || s.value.is_string())
        {
            return Err("ordering ops need a number or string `value`".into());
        }
        let ordering = !matches!(s.op, Op::Eq | Op::Ne | Op::Exists | Op::Missing);
        let threshold = s.value.as_f64().filter(|_| ordering);
        Ok(JsonFilter {
            field: s.field,
            op: s.op,
            value: s.value,
            threshold,
        })
    }

    fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
        let value = record
            .value()
            .ok_or_else(|| Error::poison("tombstone has no JSON value"))?;
        let Some(raw) = self.field.find(value)? else {
            return Ok(self.op == Op::Missing || self.op == Op::Ne);
        };
        if let Op::Exists | Op::Missing = self.op {
            return Ok(self.op == Op::Exists);
        }
        if let Some(want) = self.threshold {
            // The common case, numeric thresholds, without building a Value;
            // integers (most fields) skip the float parser.
            let found = match raw.parse::<i64>() {
                Ok(int) => int as f64,
                Err(_) => match raw.parse::<f64>() {
                    Ok(float) => float,
                    Err(_) => return Ok(false),
                },
            };
            return Ok(ordered(self.op, found.partial_cmp(&want)));
        }
        let found: Value = serde_json::from_str(raw)?;
        Ok(match self.op {
            Op::Eq => found == self.value,
            Op::Ne => found != self.value,
            op => match (&found, &self.value) {
                (Value::String(a), Value::String(b)) => {
                    ordered(op, Some(a.as_str().cmp(b.as_str())))
                }
                _ => false,
            },
        })
    }
}

/// Whether `cmp` (found vs wanted) satisfies an ordering op.
fn ordered(op: Op, cmp: Option<std::cmp::Ordering>) -> bool {
    let Some(cmp) = cmp else { return false };
    match op {
        Op::Gt => cmp.is_gt(),
        Op::Gte => cmp.is_ge(),
        Op::Lt => cmp.is_lt(),
        Op::Lte => cmp.is_le(),
        _ => false,
    }
}

weir_sdk::export_filter!(JsonFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::{Outcome, TestRecord, run_filter};

    fn kept(config: &str, values: &[&str]) -> Vec<bool> {
        let inputs: Vec<_> = values.iter().map(|v| TestRecord::new().value(*v)).collect();
        run_filter::<JsonFilter>(config, &inputs)
            .unwrap()
            .iter()
            .map(|o| match o {
                Outcome::Records(r) => !r.is_empty(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn compares_numbers_strings_and_paths() {
        let vals = [
            r#"{"amount": 150}"#,
            r#"{"amount": 50}"#,
            r#"{"other": 1}"#,
            r#"{"amount": "x"}"#,
        ];
        assert_eq!(
            kept(r#"{"field":"amount","op":"gt","value":100}"#, &vals),
            [true, false, false, false]
        );
        assert_eq!(
            kept(r#"{"field":"amount","op":"exists"}"#, &vals),
            [true, true, false, true]
        );
        assert_eq!(
            kept(
                r#"{"field":"c.n","op":"eq","value":"DE"}"#,
                &[r#"{"c":{"n":"DE"}}"#, r#"{"c":{"n":"FR"}}"#]
            ),
            [true, false]
        );
    }

    #[test]
    fn bad_json_is_poison_and_bad_config_is_refused() {
        let out = run_filter::<JsonFilter>(
            r#"{"field":"a","op":"exists"}"#,
            &[TestRecord::new().value("nope")],
        )
        .unwrap();
        assert!(
            matches!(&out[0], Outcome::Poison(m) if m.contains("not a JSON object")),
            "{out:?}"
        );
        let err = run_filter::<JsonFilter>(r#"{"field":"a","op":"between"}"#, &[]).unwrap_err();
        assert!(err.contains("unknown variant `between`"), "{err}");
    }
}
