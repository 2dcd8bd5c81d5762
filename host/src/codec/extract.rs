//! Where a record's key and timestamp come from when the medium does not
//! carry them: fields of its JSON value, as a source names them.
//!
//! ```yaml
//! key: { field: customer.id }            # a dotted path into the value
//! timestamp: { field: ts, unit: ms }     # ms | s | rfc3339, never guessed
//! ```
//!
//! This is the one place that reads a key or a timestamp out of a value
//! (Kafka Streams' `TimestampExtractor` is the model); a field that is
//! missing or does not parse makes the record a bad one under the error
//! policy, never a default.

use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;

use super::Format;
use super::json_syntax::Scanner;
use super::jsonl;
use crate::record::Record;

/// A dotted path to a field of a JSON object (`customer.id`), split once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    parts: Vec<String>,
}

impl FieldPath {
    /// `None` when a part is empty (`a..b`, `.a`, ``).
    pub fn parse(text: &str) -> Option<FieldPath> {
        let parts: Vec<String> = text.split('.').map(str::to_string).collect();
        parts.iter().all(|p| !p.is_empty()).then(|| FieldPath {
            text: text.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The span of the field's value in `json`; `None` when it is absent
    /// (or an object on the way is not one). `Err` when `json` is not a
    /// JSON object.
    fn find(&self, json: &[u8]) -> Result<Option<Range<usize>>, String> {
        let mut at = 0..json.len();
        let mut s = Scanner::new(json);
        s.skip_ws();
        if s.peek() != Some(b'{') {
            return Err("the value is not a JSON object".into());
        }
        for part in &self.parts {
            match member(&json[at.clone()], part)? {
                Some(inner) => at = at.start + inner.start..at.start + inner.end,
                None => return Ok(None),
            }
        }
        Ok(Some(at))
    }
}

impl FieldPath {
    /// The span of the field's value in the JSON document `json`, or what
    /// is wrong (`is missing`, `cannot be read: ...`), for a message that
    /// names the field.
    pub(crate) fn locate(&self, json: &[u8]) -> Result<Range<usize>, String> {
        match self.find(json) {
            Ok(Some(span)) => Ok(span),
            Ok(None) => Err("is missing".into()),
            Err(e) => Err(format!("cannot be read: {e}")),
        }
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The span of member `name`'s value in the object `json` (`None` when it
/// has no such member or is not an object).
fn member(json: &[u8], name: &str) -> Result<Option<Range<usize>>, String> {
    let bad = |e: super::json_syntax::SyntaxError| format!("the value is not JSON: {e}");
    let mut s = Scanner::new(json);
    s.skip_ws();
    if !s.eat(b'{') {
        return Ok(None);
    }
    s.skip_ws();
    if s.eat(b'}') {
        return Ok(None);
    }
    loop {
        s.skip_ws();
        let (span, escaped) = s.string().map_err(bad)?;
        let matches = if escaped {
            serde_json::from_slice::<String>(&json[span.start - 1..span.end + 1])
                .is_ok_and(|n| n == name)
        } else {
            &json[span] == name.as_bytes()
        };
        s.skip_ws();
        if !s.eat(b':') {
            return Err(bad(s.error("expected `:`")));
        }
        s.skip_ws();
        let value = s.value().map_err(bad)?;
        if matches {
            return Ok(Some(value));
        }
        s.skip_ws();
        if s.eat(b'}') {
            return Ok(None);
        }
        if !s.eat(b',') {
            return Err(bad(s.error("expected `,` or `}`")));
        }
    }
}

/// How a timestamp field is written. Stated in the pipeline file: a number
/// could be seconds or milliseconds, and guessing would be wrong for some.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TimeUnit {
    /// An integer number of milliseconds since the epoch.
    #[serde(rename = "ms")]
    Millis,
    /// A number of seconds since the epoch (a fraction keeps milliseconds).
    #[serde(rename = "s")]
    Seconds,
    /// An RFC 3339 string with its offset (`2026-11-30T06:00:00Z`, `...+01:00`).
    #[serde(rename = "rfc3339")]
    Rfc3339,
}

impl TimeUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Millis => "ms",
            TimeUnit::Seconds => "s",
            TimeUnit::Rfc3339 => "rfc3339",
        }
    }

    /// A field's JSON text as epoch milliseconds, or why it is not one.
    fn millis(self, raw: &[u8]) -> Result<i64, String> {
        let text = String::from_utf8_lossy(raw);
        match self {
            TimeUnit::Millis => jsonl::parse_millis(raw)
                .ok_or_else(|| format!("must be an integer number of milliseconds, got {text}")),
            TimeUnit::Seconds => seconds_to_millis(raw)
                .ok_or_else(|| format!("must be a number of seconds, got {text}")),
            TimeUnit::Rfc3339 => serde_json::from_slice::<String>(raw)
                .ok()
                .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_millisecond())
                .ok_or_else(|| {
                    format!("must be an RFC 3339 time string with an offset, got {text}")
                }),
        }
    }
}

/// Seconds (an integer, or a decimal fraction) as milliseconds.
fn seconds_to_millis(raw: &[u8]) -> Option<i64> {
    if let Some(s) = jsonl::parse_millis(raw) {
        return s.checked_mul(1000);
    }
    let n: f64 = std::str::from_utf8(raw).ok()?.parse().ok()?;
    let ms = (n * 1000.0).round();
    (ms.is_finite() && ms.abs() < i64::MAX as f64).then_some(ms as i64)
}

/// `timestamp: { field, unit }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampField {
    pub field: FieldPath,
    pub unit: TimeUnit,
}

/// What a source takes from its records' values: the key, the timestamp,
/// both or neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extract {
    pub key: Option<FieldPath>,
    pub timestamp: Option<TimestampField>,
}

/// Why a record's key or timestamp could not be taken from its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} field `{field}` {problem}")]
pub struct ExtractError {
    /// `key` or `timestamp`.
    pub what: &'static str,
    pub field: String,
    pub problem: String,
}

impl Extract {
    /// Whether it takes anything (the usual case is not).
    pub fn is_empty(&self) -> bool {
        self.key.is_none() && self.timestamp.is_none()
    }

    /// Sets `record`'s key (in `key_format`) and timestamp from its value's
    /// fields, replacing what it had.
    pub fn apply(&self, record: &mut Record, key_format: Format) -> Result<(), ExtractError> {
        if let Some(path) = &self.key {
            let raw = self.field(record.value.as_ref(), path, "key")?;
            let value = record.value.as_ref().expect("found in the value");
            let bytes = key_bytes(value, raw, key_format).map_err(|problem| ExtractError {
                what: "key",
                field: path.to_string(),
                problem,
            })?;
            record.key = Some(bytes);
        }
        if let Some(ts) = &self.timestamp {
            let raw = self.field(record.value.as_ref(), &ts.field, "timestamp")?;
            let value = record.value.as_ref().expect("found in the value");
            record.timestamp = ts
                .unit
                .millis(&value[raw])
                .map_err(|problem| ExtractError {
                    what: "timestamp",
                    field: ts.field.to_string(),
                    problem: format!("(unit `{}`) {problem}", ts.unit.as_str()),
                })?;
        }
        Ok(())
    }

    fn field(
        &self,
        value: Option<&Bytes>,
        path: &FieldPath,
        what: &'static str,
    ) -> Result<Range<usize>, ExtractError> {
        let error = |problem: &str| ExtractError {
            what,
            field: path.to_string(),
            problem: problem.to_string(),
        };
        let Some(value) = value else {
            return Err(error("is missing: the record has no value"));
        };
        match path.locate(value) {
            Ok(span) if &value[span.clone()] != b"null" => Ok(span),
            Ok(_) => Err(error("is null")),
            Err(problem) => Err(error(&problem)),
        }
    }
}

/// A key field's JSON value as key bytes in `format`: `json` takes it as it
/// is, `string` a string's text or a number's digits, `bytes` a base64
/// string's content.
fn key_bytes(value: &Bytes, raw: Range<usize>, format: Format) -> Result<Bytes, String> {
    let text = &value[raw.clone()];
    if format == Format::String && matches!(text.first(), Some(b'-' | b'0'..=b'9')) {
        return Ok(value.slice(raw));
    }
    jsonl::field_bytes(value, text, format, "the key")
        .map_err(|e| e.0.trim_start_matches("the key ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &str) -> Record {
        Record {
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            timestamp: 99,
            ..Record::default()
        }
    }

    fn both(key: &str, ts: &str, unit: TimeUnit) -> Extract {
        Extract {
            key: FieldPath::parse(key),
            timestamp: Some(TimestampField {
                field: FieldPath::parse(ts).unwrap(),
                unit,
            }),
        }
    }

    #[test]
    fn takes_key_and_timestamp_from_dotted_fields() {
        let mut r = record(
            r#"{"n":{"x":1},"customer":{"na\u006de":"x","id":"c-1"},"at":{"ms":1700000000123}}"#,
        );
        both("customer.id", "at.ms", TimeUnit::Millis)
            .apply(&mut r, Format::String)
            .unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"c-1"[..]));
        assert_eq!(r.timestamp, 1_700_000_000_123);

        let mut r = record(r#"{"u": 42, "t": 1700000000.5}"#);
        both("u", "t", TimeUnit::Seconds)
            .apply(&mut r, Format::String)
            .unwrap();
        assert_eq!(
            (r.key.as_deref(), r.timestamp),
            (Some(&b"42"[..]), 1_700_000_000_500)
        );

        let mut r = record(r#"{"u": {"a": 1}, "t": "2023-11-14T22:13:20+01:00"}"#);
        both("u", "t", TimeUnit::Rfc3339)
            .apply(&mut r, Format::Json)
            .unwrap();
        assert_eq!(
            (r.key.as_deref(), r.timestamp),
            (Some(&br#"{"a": 1}"#[..]), 1_699_996_400_000)
        );
    }

    #[test]
    fn a_missing_or_unparseable_field_is_an_error_naming_it() {
        let cases = [
            (r#"{"t": 5}"#, TimeUnit::Millis, "key field `u` is missing"),
            (
                r#"{"u": null, "t": 5}"#,
                TimeUnit::Millis,
                "key field `u` is null",
            ),
            (r#"{"u": [1], "t": 5}"#, TimeUnit::Millis, "key field `u`"),
            (
                r#"{"u": "a"}"#,
                TimeUnit::Millis,
                "timestamp field `t` is missing",
            ),
            (
                r#"{"u": "a", "t": "5"}"#,
                TimeUnit::Millis,
                "timestamp field `t` (unit `ms`) must be an integer number of milliseconds, got \"5\"",
            ),
            (r#"{"u": "a", "t": 1.5}"#, TimeUnit::Millis, "(unit `ms`)"),
            (
                r#"{"u": "a", "t": 1700000000}"#,
                TimeUnit::Rfc3339,
                "(unit `rfc3339`) must be an RFC 3339",
            ),
            (
                r#"{"u": "a", "t": "2023-11-14 22:13:20"}"#,
                TimeUnit::Rfc3339,
                "(unit `rfc3339`)",
            ),
            (r#"[1]"#, TimeUnit::Millis, "is not a JSON object"),
        ];
        for (value, unit, error) in cases {
            let mut r = record(value);
            let got = both("u", "t", unit)
                .apply(&mut r, Format::String)
                .unwrap_err()
                .to_string();
            assert!(got.contains(error), "{value}: {got}");
        }
        assert_eq!(FieldPath::parse("a..b"), None);
        assert_eq!(FieldPath::parse(""), None);
    }
}
