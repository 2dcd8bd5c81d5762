//! What `weir test --bless` writes: the records the sinks got, less the
//! details of that one run, so that a blessed fixture fails only when the
//! pipeline's logic changes.
//!
//! Left out unless `--bless-all` asks for them:
//! - the `weir.error.partition` header of dead-lettered records (it follows
//!   `partitions`, which a fixture should survive);
//! - a `timestamp` that falls within the run's own wall-clock time: a record
//!   stamped when it was read (its input had none) or by a step with the
//!   time it ran, which a rerun would change; and, for the same reason, a
//!   field of the value, at any depth, whose number is a millisecond time
//!   within the run (a step that copies the timestamp into the value). An
//!   array keeps its elements, so that its length is still compared.
//!
//! As every field left out of an expected record is not compared, a
//! blessed file still pins keys, values, the other headers and the
//! timestamps that came with the input.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde_json::Value;
use serde_json::value::RawValue;

/// What `--bless` keeps of each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bless {
    /// Everything but the run's details (`--bless`).
    Portable,
    /// Everything the sink wrote (`--bless-all`).
    All,
}

/// Header that names the partition a dead-lettered record was in.
const PARTITION_HEADER: &str = "weir.error.partition";

/// Fields in the order the JSON-lines sinks write them; others follow.
const ORDER: [&str; 4] = ["key", "value", "timestamp", "headers"];

/// The sink's output as it is to be written to the expected file; the run
/// took place within `run` (ms since the epoch). A line that is not a JSON
/// object is kept as it is (the comparison reports it).
pub(super) fn expected_text(actual: &str, bless: Bless, run: &RangeInclusive<i64>) -> String {
    if bless == Bless::All {
        return actual.to_string();
    }
    let mut out = String::with_capacity(actual.len());
    for line in actual.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(line) {
            Ok(record) => out.push_str(&portable(record, run)),
            Err(_) => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn portable(mut record: BTreeMap<String, Box<RawValue>>, run: &RangeInclusive<i64>) -> String {
    let stamped_in_run = record
        .get("timestamp")
        .and_then(|t| t.get().parse::<i64>().ok())
        .is_some_and(|t| run.contains(&t));
    if stamped_in_run {
        record.remove("timestamp");
    }
    if let Some(raw) = record.get("value")
        && let Ok(mut value) = serde_json::from_str::<Value>(raw.get())
    {
        if in_run(&value, run) {
            record.remove("value");
        } else if drop_run_times(&mut value, run) {
            let text = RawValue::from_string(value.to_string()).expect("rendered JSON");
            record.insert("value".into(), text);
        }
    }
    let mut headers = None;
    if let Some(raw) = record.remove("headers") {
        headers = match serde_json::from_str::<Value>(raw.get()) {
            Ok(value) => without_partition(value),
            Err(_) => Some(raw.get().to_string()),
        };
    }
    let mut fields: Vec<(String, String)> = Vec::new();
    for name in ORDER {
        if name == "headers" {
            if let Some(h) = headers.take() {
                fields.push((name.into(), h));
            }
        } else if let Some(v) = record.remove(name) {
            fields.push((name.into(), v.get().to_string()));
        }
    }
    fields.extend(record.into_iter().map(|(n, v)| (n, v.get().to_string())));
    let body: Vec<String> = fields
        .iter()
        .map(|(n, v)| format!("{}:{v}", Value::String(n.clone())))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn in_run(value: &Value, run: &RangeInclusive<i64>) -> bool {
    value.as_i64().is_some_and(|n| run.contains(&n))
}

/// Removes the object fields, at any depth, whose value is a time within
/// the run; returns whether any was.
fn drop_run_times(value: &mut Value, run: &RangeInclusive<i64>) -> bool {
    match value {
        Value::Object(fields) => {
            let before = fields.len();
            fields.retain(|_, v| !in_run(v, run));
            let mut changed = fields.len() != before;
            for v in fields.values_mut() {
                changed |= drop_run_times(v, run);
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| drop_run_times(v, run) | changed),
        _ => false,
    }
}

/// Headers less the partition one, rendered; `None` when nothing is left.
fn without_partition(headers: Value) -> Option<String> {
    let kept = match headers {
        Value::Object(mut fields) => {
            fields.remove(PARTITION_HEADER);
            (!fields.is_empty()).then_some(Value::Object(fields))
        }
        Value::Array(pairs) => {
            let pairs: Vec<Value> = pairs
                .into_iter()
                .filter(|p| p.get(0).and_then(Value::as_str) != Some(PARTITION_HEADER))
                .collect();
            (!pairs.is_empty()).then_some(Value::Array(pairs))
        }
        other => Some(other),
    };
    kept.map(|v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_out_the_partition_header_and_read_time_stamps() {
        let actual = concat!(
            r#"{"key":"a","value":{"z":1,"a":2},"timestamp":1700000000000,"headers":{"weir.error.kind":"poison","weir.error.partition":"1"}}"#,
            "\n",
            r#"{"key":null,"value":"x","timestamp":5000,"headers":{"weir.error.partition":"0"}}"#,
            "\n",
            r#"{"key":"b","value":{"seen_at":5000,"n":5,"at":[{"t":4000},5000]},"timestamp":5000}"#,
            "\n",
        );
        let text = expected_text(actual, Bless::Portable, &(4000..=6000));
        assert_eq!(
            text,
            concat!(
                r#"{"key":"a","value":{"z":1,"a":2},"timestamp":1700000000000,"headers":{"weir.error.kind":"poison"}}"#,
                "\n",
                r#"{"key":null,"value":"x"}"#,
                "\n",
                r#"{"key":"b","value":{"at":[{},5000],"n":5}}"#,
                "\n",
            )
        );
        assert_eq!(expected_text(actual, Bless::All, &(4000..=6000)), actual);
    }

    #[test]
    fn repeated_headers_lose_only_the_partition() {
        let actual = r#"{"key":"a","value":1,"timestamp":1,"headers":[["t","1"],["t","2"],["weir.error.partition","3"]]}"#;
        let text = expected_text(actual, Bless::Portable, &(10..=20));
        assert_eq!(
            text,
            "{\"key\":\"a\",\"value\":1,\"timestamp\":1,\"headers\":[[\"t\",\"1\"],[\"t\",\"2\"]]}\n"
        );
    }
}
