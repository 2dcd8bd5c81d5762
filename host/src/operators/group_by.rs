//! `group-by` by a field, in the host: each record gets the key its value's
//! field gives (Kafka Streams' `groupBy((k, v) -> v.field)`). A string
//! field becomes the key's UTF-8 text, any other scalar its JSON text
//! (`7`, `true`, `2.5`, as a Java consumer reading the key as a string sees
//! it); a record whose field is missing, null, an object or an array fails
//! (kind `field`) and goes to the step's error policy, where Kafka Streams
//! would drop it without a word.
//!
//! A `group-by` by the existing key forwards records as they are; one by a
//! plugin is a select-key [`super::PluginStep`]. Whether the records then
//! move to their key's partition is the topology's business.
//!
//! On a table (Kafka Streams' `KTable#groupBy`) an update carries the row's
//! old value and its new one: each is grouped, and when both land in one
//! group the update goes on as one record (old and new together, so the
//! aggregation takes one out and adds the other in one step, as Kafka
//! Streams does since KIP-904); when the row moves, the old value goes to
//! its old group first (a record with only an old value), then the new
//! value to its new group. An old value whose field cannot be grouped was
//! never aggregated (it failed when it was new) and is left out; a new one
//! fails as on a stream, and the old value still leaves its group.

use bytes::Bytes;

use super::failure::{Failure, FailureKind};
use super::operator::{Operator, OperatorError};
use super::plugin_step::{Emitted, StepOutput};
use crate::codec::extract::FieldPath;
use crate::record::Record;

/// Keys records by a field of their value, or passes them on as they are.
pub struct GroupBy {
    field: Option<FieldPath>,
    /// It groups a table's updates.
    on_table: bool,
    ports: Vec<String>,
}

impl GroupBy {
    /// By `field`, or by the existing key (`None`); of records, or of a
    /// table's updates (`on_table`).
    pub fn new(field: Option<FieldPath>, on_table: bool) -> Self {
        GroupBy {
            field,
            on_table,
            ports: vec!["out".to_string()],
        }
    }

    /// A table's updates, each as one record to its group, or as an old
    /// value to the old group and the new value to the new one.
    fn table_batch(&self, records: &[Record], out: &mut StepOutput) {
        for (i, record) in records.iter().enumerate() {
            let input = i as u32;
            let Some(field) = &self.field else {
                // By the row's key: old and new are in one group.
                if record.value.is_some() || record.old_value.is_some() {
                    out.emitted.push(Emitted {
                        input,
                        port: 0,
                        record: None,
                    });
                }
                continue;
            };
            let old_key = record
                .old_value
                .as_ref()
                .and_then(|old| key_of(Some(old), field).ok());
            let new_key = record.value.as_ref().map(|new| key_of(Some(new), field));
            let grouped = |key: Bytes, value: Option<Bytes>, old_value: Option<Bytes>| Record {
                key: Some(key),
                value,
                old_value,
                ..record.clone()
            };
            match (old_key, new_key) {
                (Some(old), Some(Ok(new))) if old == new => out.emitted.push(Emitted {
                    input,
                    port: 0,
                    record: Some(grouped(new, record.value.clone(), record.old_value.clone())),
                }),
                (old, new) => {
                    if let Some(old) = old {
                        out.emitted.push(Emitted {
                            input,
                            port: 0,
                            record: Some(grouped(old, None, record.old_value.clone())),
                        });
                    }
                    match new {
                        Some(Ok(new)) => out.emitted.push(Emitted {
                            input,
                            port: 0,
                            record: Some(grouped(new, record.value.clone(), None)),
                        }),
                        Some(Err(reason)) => out.failures.push(Failure {
                            input,
                            kind: FailureKind::Field,
                            reason,
                        }),
                        None => {}
                    }
                }
            }
        }
    }
}

impl Operator for GroupBy {
    fn process_batch(
        &mut self,
        _input: usize,
        records: &[Record],
        out: &mut StepOutput,
    ) -> Result<(), OperatorError> {
        out.clear();
        if self.on_table {
            self.table_batch(records, out);
            return Ok(());
        }
        let Some(field) = &self.field else {
            out.emitted
                .extend((0..records.len() as u32).map(|input| Emitted {
                    input,
                    port: 0,
                    record: None,
                }));
            return Ok(());
        };
        for (i, record) in records.iter().enumerate() {
            match key_of(record.value.as_ref(), field) {
                Ok(key) => out.emitted.push(Emitted {
                    input: i as u32,
                    port: 0,
                    record: Some(Record {
                        key: Some(key),
                        ..record.clone()
                    }),
                }),
                Err(reason) => out.failures.push(Failure {
                    input: i as u32,
                    kind: FailureKind::Field,
                    reason,
                }),
            }
        }
        Ok(())
    }

    fn ports(&self) -> &[String] {
        &self.ports
    }
}

/// The group key `field` of `value` gives.
pub fn key_of(value: Option<&Bytes>, field: &FieldPath) -> Result<Bytes, String> {
    let Some(value) = value else {
        return Err(format!(
            "group-by field `{field}` is missing: the record has no value (a tombstone)"
        ));
    };
    let span = field
        .locate(value)
        .map_err(|problem| format!("group-by field `{field}` {problem}"))?;
    let raw = &value[span.clone()];
    match raw.first() {
        Some(b'"') if !raw.contains(&b'\\') => Ok(value.slice(span.start + 1..span.end - 1)),
        Some(b'"') => serde_json::from_slice::<String>(raw)
            .map(Bytes::from)
            .map_err(|e| format!("group-by field `{field}` is not a valid string: {e}")),
        Some(b't' | b'f') => Ok(value.slice(span)),
        Some(b'-' | b'0'..=b'9') => canonical_number(raw)
            .ok_or_else(|| format!("group-by field `{field}` is not a number JSON can hold")),
        Some(b'n') => Err(format!("group-by field `{field}` is null")),
        Some(b'{') => Err(format!(
            "group-by field `{field}` is an object, not a scalar"
        )),
        Some(b'[') => Err(format!(
            "group-by field `{field}` is an array, not a scalar"
        )),
        _ => Err(format!("group-by field `{field}` cannot be read")),
    }
}

/// A number's canonical JSON text, so `2.50` and `2.5` group together: an
/// integer's digits, a float's shortest text that reads back the same.
fn canonical_number(raw: &[u8]) -> Option<Bytes> {
    let n: serde_json::Number = serde_json::from_slice(raw).ok()?;
    Some(Bytes::from(n.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &str) -> Result<String, String> {
        key_of(
            Some(&Bytes::copy_from_slice(v.as_bytes())),
            &FieldPath::parse("c.k").unwrap(),
        )
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn scalars_become_keys_and_the_rest_fails_naming_the_field() {
        assert_eq!(key(r#"{"c": {"k": "books"}}"#).unwrap(), "books");
        assert_eq!(key(r#"{"c": {"k": "a\"b\u00e9"}}"#).unwrap(), "a\"bé");
        assert_eq!(key(r#"{"c": {"k": 7}}"#).unwrap(), "7");
        assert_eq!(key(r#"{"c": {"k": 2.50}}"#).unwrap(), "2.5");
        assert_eq!(key(r#"{"c": {"k": true}}"#).unwrap(), "true");
        assert_eq!(
            key(r#"{"c": {"k": null}}"#).unwrap_err(),
            "group-by field `c.k` is null"
        );
        assert_eq!(
            key(r#"{"c": {}}"#).unwrap_err(),
            "group-by field `c.k` is missing"
        );
        assert!(
            key(r#"{"c": {"k": [1]}}"#)
                .unwrap_err()
                .contains("an array")
        );
        assert!(
            key(r#"{"c": {"k": {}}}"#)
                .unwrap_err()
                .contains("an object")
        );
        assert!(
            key_of(None, &FieldPath::parse("k").unwrap())
                .unwrap_err()
                .contains("tombstone")
        );
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    fn update(old: Option<&str>, new: Option<&str>) -> Record {
        let bytes = |v: Option<&str>| v.map(|v| Bytes::copy_from_slice(v.as_bytes()));
        Record {
            key: Some(Bytes::from_static(b"row")),
            value: bytes(new),
            old_value: bytes(old),
            timestamp: 7,
            ..Record::default()
        }
    }

    /// (input, key, new, old) of each output, and the failures' inputs.
    type Seen = (Vec<(u32, String, Option<String>, Option<String>)>, Vec<u32>);

    fn group(by: Option<&str>, records: &[Record]) -> Seen {
        let mut g = GroupBy::new(by.map(|f| FieldPath::parse(f).unwrap()), true);
        let mut out = StepOutput::default();
        g.process_batch(0, records, &mut out).unwrap();
        let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8(b.to_vec()).unwrap());
        let emitted = out
            .emitted
            .iter()
            .map(|e| {
                let r = e.record.as_ref().unwrap_or(&records[e.input as usize]);
                (
                    e.input,
                    text(&r.key).unwrap(),
                    text(&r.value),
                    text(&r.old_value),
                )
            })
            .collect();
        (emitted, out.failures.iter().map(|f| f.input).collect())
    }

    #[test]
    fn a_row_that_moves_leaves_its_old_group_before_it_joins_the_new_one() {
        let (fr, de, bad) = (r#"{"c":"FR"}"#, r#"{"c":"DE"}"#, r#"{"c":null}"#);
        let s = |v: &str| Some(v.to_string());
        let (out, failed) = group(
            Some("c"),
            &[
                update(None, Some(fr)),
                update(Some(fr), Some(de)),
                update(Some(de), Some(r#"{"c":"DE","x":1}"#)),
                update(Some(de), None),
                update(None, None),
                update(Some(fr), Some(bad)),
                update(Some(bad), Some(fr)),
            ],
        );
        assert_eq!(
            out,
            vec![
                (0, "FR".into(), s(fr), None),
                (1, "FR".into(), None, s(fr)),
                (1, "DE".into(), s(de), None),
                // One group: old and new together.
                (2, "DE".into(), s(r#"{"c":"DE","x":1}"#), s(de)),
                (3, "DE".into(), None, s(de)),
                // A new value that cannot be grouped fails; its old one still leaves.
                (5, "FR".into(), None, s(fr)),
                // An old value that could not be grouped was never in a group.
                (6, "FR".into(), s(fr), None),
            ]
        );
        assert_eq!(failed, vec![5]);
        // By the row's key: forwarded as they are, but for a delete of nothing.
        let (out, _) = group(None, &[update(None, Some(fr)), update(None, None)]);
        assert_eq!(out, vec![(0, "row".into(), s(fr), None)]);
    }
}
