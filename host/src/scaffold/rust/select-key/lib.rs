//! A weir plugin for `select-key` steps: it re-keys each record by the
//! JSON field named in the step's config.
//!
//! A select-key step gives each record exactly one output in which only the
//! key changed; value, timestamp and headers stay. Follow it with a
//! `repartition` step (no plugin) so that a key's records meet in one task.

use weir_sdk::{Config, Error, KeySelector, Record};

pub struct Plugin {
    field: String,
}

/// The step's `config:` block.
#[derive(serde::Deserialize)]
struct Settings {
    field: String,
}

impl KeySelector for Plugin {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        Ok(Plugin { field: s.field })
    }

    fn select_key(&mut self, record: &Record<'_>) -> Result<Option<Vec<u8>>, Error> {
        // A value that is not JSON, or lacks the field, is a poison error:
        // the step's error policy decides what becomes of the record.
        let value: serde_json::Value = record.value_json()?;
        match value.get(&self.field) {
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone().into_bytes())),
            Some(other) => Ok(Some(other.to_string().into_bytes())),
            None => Err(Error::poison(format!("field `{}` is missing", self.field))),
        }
    }
}

weir_sdk::export_key_selector!(Plugin);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_sdk::testing::{Outcome, TestRecord, run_key_selector};

    use super::Plugin;

    #[test]
    fn the_key_becomes_the_field_and_nothing_else_changes() {
        let input = TestRecord::new()
            .key("o-1")
            .timestamp(7)
            .json(&json!({"order": 1, "customer": "c-9"}));
        let missing = TestRecord::new().json(&json!({"order": 2}));
        let out = run_key_selector::<Plugin>(r#"{"field": "customer"}"#, &[input.clone(), missing])
            .unwrap();
        assert_eq!(out[0].records(), [input.key("c-9")]);
        assert!(matches!(out[1], Outcome::Poison(_)), "{:?}", out[1]);
    }
}
