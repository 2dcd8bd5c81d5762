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

use bytes::Bytes;

use super::failure::{Failure, FailureKind};
use super::operator::{Operator, OperatorError};
use super::plugin_step::{Emitted, StepOutput};
use crate::codec::extract::FieldPath;
use crate::record::Record;

/// Keys records by a field of their value, or passes them on as they are.
pub struct GroupBy {
    field: Option<FieldPath>,
    ports: Vec<String>,
}

impl GroupBy {
    /// By `field`, or by the existing key (`None`).
    pub fn new(field: Option<FieldPath>) -> Self {
        GroupBy {
            field,
            ports: vec!["out".to_string()],
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
