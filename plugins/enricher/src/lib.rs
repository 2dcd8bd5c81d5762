//! Adds fields to each JSON object value (a map step).
//!
//! ```yaml
//! config:
//!   set: { source: web, version: 2 }   # constant fields, replacing existing ones
//!   key-field: customer_id             # copy the record key (as a string) into this field
//!   timestamp-field: ts                # copy the event timestamp into this field
//!   drop: [internal_note]              # remove fields
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use weir_sdk::json::Patch;
use weir_sdk::{Config, Error, Map, Output, Record};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    #[serde(default)]
    set: BTreeMap<String, serde_json::Value>,
    key_field: Option<String>,
    timestamp_field: Option<String>,
    #[serde(default)]
    drop: Vec<String>,
}

pub struct Enricher {
    /// The constant changes, serialized once at init.
    patch: Patch,
    key_field: Option<String>,
    timestamp_field: Option<String>,
}

impl Map for Enricher {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = if config.is_null() {
            Settings::default()
        } else {
            config.parse()?
        };
        let mut patch = Patch::new();
        for name in &s.drop {
            patch.remove(name);
        }
        for (name, value) in &s.set {
            patch.set(name, value).map_err(|e| e.to_string())?;
        }
        Ok(Enricher {
            patch,
            key_field: s.key_field,
            timestamp_field: s.timestamp_field,
        })
    }

    fn map<'a>(&mut self, record: &Record<'a>) -> Result<Output<'a>, Error> {
        let value = record
            .value()
            .ok_or_else(|| Error::poison("tombstone has no JSON value"))?;
        let key = match &self.key_field {
            Some(field) => Some((field, json_string(record.key_str()?)?)),
            None => None,
        };
        let timestamp = self
            .timestamp_field
            .as_ref()
            .map(|field| (field, record.timestamp().to_string()));
        let extra: Vec<(&str, &str)> = key
            .iter()
            .chain(timestamp.iter())
            .map(|(f, v)| (f.as_str(), v.as_str()))
            .collect();
        let patched = self.patch.apply(value, &extra)?;
        Ok(Output::from_record(record).with_value(Some(patched)))
    }
}

fn json_string(s: &str) -> Result<String, Error> {
    serde_json::to_string(s).map_err(|e| Error::failed(e.to_string()))
}

weir_sdk::export_map!(Enricher);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::{TestRecord, run_map};

    #[test]
    fn sets_copies_and_drops_fields() {
        let cfg =
            r#"{"set":{"source":"web"},"key-field":"id","timestamp-field":"ts","drop":["secret"]}"#;
        let input = TestRecord::new()
            .key("c1")
            .value(r#"{"a":1,"secret":"x"}"#)
            .timestamp(42)
            .header("h", "v");
        let out = run_map::<Enricher>(cfg, std::slice::from_ref(&input)).unwrap();
        let rec = &out[0].records()[0];
        assert_eq!(
            rec.value_json(),
            serde_json::json!({"a":1,"source":"web","id":"c1","ts":42})
        );
        assert_eq!(
            (&rec.key, rec.timestamp, &rec.headers),
            (&input.key, 42, &input.headers)
        );
    }
}
