//! A weir plugin for `map` steps: it sets one field of each JSON object
//! value, named with its new value in the step's config.
//!
//! A map turns each record into exactly one record; it cannot drop one or
//! emit more (write a filter or a flat-map for that). Key, timestamp and
//! headers stay as they were unless the output changes them.

use weir_sdk::json::Object;
use weir_sdk::{Config, Error, Map, Output, Record};

pub struct Plugin {
    field: String,
    value: serde_json::Value,
}

/// The step's `config:` block.
#[derive(serde::Deserialize)]
struct Settings {
    field: String,
    value: serde_json::Value,
}

impl Map for Plugin {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        Ok(Plugin {
            field: s.field,
            value: s.value,
        })
    }

    fn map<'a>(&mut self, record: &Record<'a>) -> Result<Output<'a>, Error> {
        // A value that is not a JSON object is a poison error: the step's
        // error policy decides what becomes of the record.
        let mut object = Object::parse(record.value().unwrap_or(b"null"))?;
        object.set(&self.field, &self.value)?;
        Ok(Output::from_record(record).with_value(Some(object.to_vec())))
    }
}

weir_sdk::export_map!(Plugin);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_sdk::testing::{Outcome, TestRecord, run_map};

    use super::Plugin;

    #[test]
    fn sets_the_field_and_keeps_the_rest() {
        let inputs = [
            TestRecord::new()
                .key("o-1")
                .timestamp(7)
                .json(&json!({"order": 1})),
            TestRecord::new().value("[1, 2]"),
        ];
        let config = r#"{"field": "channel", "value": "web"}"#;
        let out = run_map::<Plugin>(config, &inputs).unwrap();
        let mapped = out[0].records();
        assert_eq!(mapped.len(), 1, "a map emits exactly one record");
        let want = json!({"order": 1, "channel": "web"});
        assert_eq!(mapped[0].value_json(), want);
        assert_eq!(mapped[0].key, inputs[0].key, "the key stays");
        assert_eq!(mapped[0].timestamp, 7, "the timestamp stays");
        assert!(matches!(out[1], Outcome::Poison(_)), "{:?}", out[1]);
    }
}
