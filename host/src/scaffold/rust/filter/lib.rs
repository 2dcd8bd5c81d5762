//! A weir plugin for `filter` steps: it keeps the records whose JSON value
//! has the field named in the step's config, and drops the rest.
//!
//! A filter keeps or drops each record; a kept record goes on unchanged (to
//! change records, write a map or a flat-map).

use weir_sdk::{Config, Error, Filter, Record};

pub struct Plugin {
    field: String,
}

/// The step's `config:` block.
#[derive(serde::Deserialize)]
struct Settings {
    field: String,
}

impl Filter for Plugin {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        Ok(Plugin { field: s.field })
    }

    fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
        // A value that is not JSON is a poison error: the step's error
        // policy decides what becomes of the record.
        let value: serde_json::Value = record.value_json()?;
        Ok(value.get(&self.field).is_some())
    }
}

weir_sdk::export_filter!(Plugin);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_sdk::testing::{Outcome, TestRecord, run_filter};

    use super::Plugin;

    #[test]
    fn keeps_records_that_have_the_field() {
        let inputs = [
            TestRecord::new().json(&json!({"user": "u-1", "email": "ada@example.com"})),
            TestRecord::new().json(&json!({"user": "u-2"})),
            TestRecord::new().value("not JSON"),
        ];
        let out = run_filter::<Plugin>(r#"{"field": "email"}"#, &inputs).unwrap();
        assert_eq!(out[0].records(), [inputs[0].clone()]);
        assert_eq!(out[1].records(), []);
        assert!(matches!(out[2], Outcome::Poison(_)), "{:?}", out[2]);
    }

    #[test]
    fn a_config_without_field_is_refused() {
        assert!(run_filter::<Plugin>("{}", &[]).is_err());
    }
}
