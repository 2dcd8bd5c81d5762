//! A timestamp extractor (the seed's `OrderTimestampExtractor`): an
//! order's event time is when it was placed, not when it reached Kafka.
//!
//! ```yaml
//! sources:
//!   orders:
//!     timestamp:
//!       plugin: order-time
//!       config: { fields: [order.placedAt, createdAt] }   # the first present wins
//!       on-invalid: partition-time                         # or error-policy (the default)
//! ```
//!
//! Each field may hold an RFC 3339 time with an offset
//! (`"2026-11-30T10:15:00.250+01:00"`) or milliseconds since the epoch (a
//! number or a string of digits): orders written by several services
//! rarely agree on one form, which is what a plain `timestamp: { field }`
//! cannot take. A record with none of the fields, or with one that does
//! not parse, has no valid time (poison, naming the fields): the source's
//! `on-invalid` decides what happens to it.

use serde::Deserialize;
use weir_sdk::json;
use weir_sdk::{Config, Error, Record, TimestampExtractor};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    fields: Vec<String>,
}

pub struct OrderTime {
    fields: Vec<json::Path>,
}

impl TimestampExtractor for OrderTime {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        if s.fields.is_empty() {
            return Err("`fields` names no field to read the order's time from".into());
        }
        Ok(OrderTime {
            fields: s.fields.iter().map(|f| json::Path::new(f)).collect(),
        })
    }

    fn extract(&mut self, record: &Record<'_>) -> Result<i64, Error> {
        let value = record
            .value()
            .ok_or_else(|| Error::poison("the record has no value, so no order time"))?;
        for field in &self.fields {
            match field.find(value)? {
                None | Some("null") => continue,
                Some(raw) => {
                    return parse_time(raw).map_err(|problem| {
                        Error::poison(format!("order time field `{field}` {problem}"))
                    });
                }
            }
        }
        Err(Error::poison(format!(
            "no order time: none of {} is present",
            self.fields
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// A raw JSON value as milliseconds since the epoch: a number, or a string
/// holding digits or an RFC 3339 time with an offset.
fn parse_time(raw: &str) -> Result<i64, String> {
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(ms);
    }
    let text: String = serde_json::from_str(raw)
        .map_err(|_| format!("is neither a number nor a string: {raw}"))?;
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("is not an RFC 3339 time with an offset ({text:?}: {e})"))
}

weir_sdk::export_timestamp_extractor!(OrderTime);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::{TestRecord, TimeOutcome, run_extractor};

    fn order(json: &str) -> TestRecord {
        TestRecord::new().key("o1").value(json)
    }

    #[test]
    fn the_first_present_field_gives_the_time_in_either_form() {
        let config = r#"{"fields": ["order.placedAt", "createdAt"]}"#;
        let got = run_extractor::<OrderTime>(
            config,
            &[
                order(r#"{"order":{"placedAt":"2026-11-30T10:15:00.250+01:00"},"createdAt":5}"#),
                order(r#"{"order":{"placedAt":null},"createdAt":1796030100000}"#),
                order(r#"{"createdAt":"1796030100001"}"#),
                order(r#"{"amount":3}"#),
                order(r#"{"createdAt":"yesterday"}"#),
            ],
        )
        .unwrap();
        assert_eq!(got[0], TimeOutcome::Time(1_796_030_100_250));
        assert_eq!(got[1], TimeOutcome::Time(1_796_030_100_000));
        assert_eq!(got[2], TimeOutcome::Time(1_796_030_100_001));
        assert!(
            matches!(&got[3], TimeOutcome::Poison(m) if m.contains("`order.placedAt`, `createdAt`")),
            "{got:?}"
        );
        assert!(
            matches!(&got[4], TimeOutcome::Poison(m) if m.contains("`createdAt` is not an RFC 3339")),
            "{got:?}"
        );
    }

    #[test]
    fn a_config_without_fields_is_refused() {
        let err = run_extractor::<OrderTime>(r#"{"fields": []}"#, &[]).unwrap_err();
        assert!(err.contains("names no field"), "{err}");
    }
}
