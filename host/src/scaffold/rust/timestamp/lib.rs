//! A weir timestamp extractor: each record's event time, read from its
//! JSON value, for a source's `timestamp: { plugin: ... }`. Windows,
//! stream time and the merge of several sources then follow the time the
//! order was placed, not the time it arrived.
//!
//! It reads the first of the fields named in its config that the value
//! has, as milliseconds since the epoch: services that name the field
//! differently share one clock. A record without any of them has no valid
//! time (a poison error): the source's `on-invalid` decides what becomes
//! of it (the error policy, or the partition's time so far).
//!
//! An extractor keeps no state and is called with batches of records: it
//! returns one time per record, and never changes the record.

use serde::Deserialize;
use weir_sdk::{Config, Error, Record, TimestampExtractor};

pub struct Plugin {
    fields: Vec<String>,
}

/// The source's `timestamp: { config: ... }` block.
#[derive(Deserialize)]
struct Settings {
    fields: Vec<String>,
}

impl TimestampExtractor for Plugin {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        if s.fields.is_empty() {
            return Err("`fields` names no field to read the time from".into());
        }
        Ok(Plugin { fields: s.fields })
    }

    fn extract(&mut self, record: &Record<'_>) -> Result<i64, Error> {
        let value: serde_json::Value = record.value_json()?;
        for field in &self.fields {
            match value.get(field) {
                None | Some(serde_json::Value::Null) => continue,
                Some(time) => {
                    return time.as_i64().ok_or_else(|| {
                        Error::poison(format!("`{field}` is not milliseconds: {time}"))
                    });
                }
            }
        }
        Err(Error::poison(format!(
            "no time: none of the fields {:?} is present",
            self.fields
        )))
    }
}

weir_sdk::export_timestamp_extractor!(Plugin);

#[cfg(test)]
mod tests {
    use weir_sdk::testing::{TestRecord, TimeOutcome, run_extractor};

    use super::Plugin;

    #[test]
    fn the_first_field_present_gives_the_time() {
        let order = |json: &str| TestRecord::new().key("o-1").value(json);
        let got = run_extractor::<Plugin>(
            r#"{"fields": ["placedAt", "createdAt"]}"#,
            &[
                order(r#"{"placedAt": 1700000000000, "createdAt": 5}"#),
                order(r#"{"placedAt": null, "createdAt": 1700000001000}"#),
                order(r#"{"amount": 3}"#),
                order(r#"{"placedAt": "yesterday"}"#),
            ],
        )
        .unwrap();
        assert_eq!(got[0], TimeOutcome::Time(1_700_000_000_000));
        assert_eq!(got[1], TimeOutcome::Time(1_700_000_001_000));
        assert!(matches!(&got[2], TimeOutcome::Poison(_)), "{:?}", got[2]);
        assert!(matches!(&got[3], TimeOutcome::Poison(_)), "{:?}", got[3]);
    }
}
