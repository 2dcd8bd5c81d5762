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

use std::fmt;
use std::ops::RangeInclusive;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
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

/// A JSON object's fields in the order written, values untouched (a
/// `serde_json` map would sort them), so a blessed line reads as the
/// sink wrote it.
struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fields, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

impl Fields {
    fn get(&self, name: &str) -> Option<&RawValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| &**v)
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    fn set(&mut self, name: &str, value: Box<RawValue>) {
        if let Some(slot) = self.0.iter_mut().find(|(n, _)| n == name) {
            slot.1 = value;
        }
    }

    fn render(&self) -> String {
        let body: Vec<String> = self
            .0
            .iter()
            .map(|(n, v)| format!("{}:{}", Value::String(n.clone()), v.get()))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

/// The sink's output as it is to be written to the expected file; the run
/// took place within `run` (ms since the epoch). A line that is not a JSON
/// object is kept as it is (the comparison reports it).
pub(super) fn expected_text(actual: &str, bless: Bless, run: &RangeInclusive<i64>) -> String {
    if bless == Bless::All {
        return actual.to_string();
    }
    let mut out = String::with_capacity(actual.len());
    for line in actual.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Fields>(line) {
            Ok(record) => out.push_str(&portable(record, run)),
            Err(_) => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn portable(mut record: Fields, run: &RangeInclusive<i64>) -> String {
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
            record.set("value", raw_json(&value));
        }
    }
    if let Some(raw) = record.get("headers") {
        match without_partition(raw) {
            Some(kept) => record.set("headers", kept),
            None => record.remove("headers"),
        }
    }
    record.render()
}

fn raw_json(value: &Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).expect("rendered JSON is JSON")
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

/// Headers less the partition one, in their order; `None` when nothing
/// is left. Headers of another shape are kept as they are.
fn without_partition(headers: &RawValue) -> Option<Box<RawValue>> {
    if let Ok(mut fields) = serde_json::from_str::<Fields>(headers.get()) {
        fields.remove(PARTITION_HEADER);
        let text = fields.render();
        return (!fields.0.is_empty())
            .then(|| RawValue::from_string(text).expect("rendered JSON is JSON"));
    }
    match serde_json::from_str::<Value>(headers.get()) {
        Ok(Value::Array(pairs)) => {
            let pairs: Vec<Value> = pairs
                .into_iter()
                .filter(|p| p.get(0).and_then(Value::as_str) != Some(PARTITION_HEADER))
                .collect();
            (!pairs.is_empty()).then(|| raw_json(&Value::Array(pairs)))
        }
        _ => Some(headers.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_out_the_partition_header_and_read_time_stamps_and_keeps_the_order() {
        let actual = concat!(
            r#"{"key":"a","value":{"z":1,"a":2},"timestamp":1700000000000,"headers":{"weir.error.reason":"r","weir.error.kind":"poison","weir.error.partition":"1","weir.error.offset":"6"}}"#,
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
                r#"{"key":"a","value":{"z":1,"a":2},"timestamp":1700000000000,"headers":{"weir.error.reason":"r","weir.error.kind":"poison","weir.error.offset":"6"}}"#,
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
