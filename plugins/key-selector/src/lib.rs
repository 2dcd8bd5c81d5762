//! Re-keys each record by the value of a JSON field (a select-key step).
//!
//! ```yaml
//! config: { field: customer_id }   # dotted paths reach nested fields
//! ```
//! A string field becomes the key without quotes; other JSON values become
//! their JSON text. A missing field is poison unless `missing: null-key`.

use serde::Deserialize;
use weir_sdk::json::{self, raw_to_text};
use weir_sdk::{Config, Error, KeySelector, Record};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    field: json::Path,
    #[serde(default)]
    missing: Missing,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Missing {
    #[default]
    Poison,
    NullKey,
}

pub struct FieldKey(Settings);

impl KeySelector for FieldKey {
    fn init(config: Config) -> Result<Self, String> {
        config.parse().map(FieldKey)
    }

    fn select_key(&mut self, record: &Record<'_>) -> Result<Option<Vec<u8>>, Error> {
        let value = record
            .value()
            .ok_or_else(|| Error::poison("tombstone has no JSON value"))?;
        match self.0.field.find(value)? {
            Some(raw) => Ok(Some(raw_to_text(raw)?.as_bytes().to_vec())),
            None if self.0.missing == Missing::NullKey => Ok(None),
            None => Err(Error::poison(format!(
                "field `{}` is missing",
                self.0.field
            ))),
        }
    }
}

weir_sdk::export_key_selector!(FieldKey);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::{Outcome, TestRecord, run_key_selector};

    #[test]
    fn rekeys_by_field() {
        let inputs = [
            TestRecord::new().key("old").value(r#"{"c":{"id":"x1"}}"#),
            TestRecord::new().value(r#"{"c":{"id":5}}"#),
            TestRecord::new().value(r#"{}"#),
        ];
        let out = run_key_selector::<FieldKey>(r#"{"field":"c.id"}"#, &inputs).unwrap();
        assert_eq!(out[0].records()[0].key.as_deref(), Some(&b"x1"[..]));
        assert_eq!(out[0].records()[0].value, inputs[0].value);
        assert_eq!(out[1].records()[0].key.as_deref(), Some(&b"5"[..]));
        assert!(matches!(&out[2], Outcome::Poison(m) if m.contains("missing")));
    }
}
