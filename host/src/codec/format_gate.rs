//! The format gate: every rule about when a record's value is known to be
//! JSON, in one place.
//!
//! Checking a JSON value costs about as much as the rest of a hop through
//! weir, so it is checked once where it comes in and the result travels with
//! the record ([`Record::value_is_json`]). The gate has three doors:
//! - [`admit`]: a record entering the topology (a JSON line already parsed,
//!   or raw Kafka bytes) is held to its source's formats and marked;
//! - [`carry`]: an operator's output keeps the mark only when its value is
//!   the input's, byte for byte, or the input object with members appended
//!   (checked in the appended part alone);
//! - [`host_written`]: a value the host wrote itself as JSON (a built-in
//!   aggregation's result) is marked;
//! - [`release`]: a record leaving to a binary medium (Kafka) is held to its
//!   sink's formats, skipping a value already known to be JSON. The
//!   JSON-lines encoder asks [`known_json`] for the same decision.

use super::Format;
use super::json_syntax;
use super::jsonl;
use crate::record::Record;

/// Marks a record whose key and value a decoder has just checked against
/// the source's formats (a JSON line's envelope parse checks every member).
pub fn admit_decoded(record: &mut Record, value_format: Format) {
    record.value_is_json = record.value.is_some() && value_format == Format::Json;
}

/// Holds a record's raw key and value to a source's formats and marks a JSON
/// value as known. `already_checked_value` says the value's bytes were
/// checked on the way in (the Kafka consumer checks a `json` value while its
/// bytes are in cache).
pub fn admit(
    record: &mut Record,
    key_format: Format,
    value_format: Format,
    already_checked_value: bool,
) -> Result<(), String> {
    if let Some(key) = &record.key {
        jsonl::check_format(key, key_format, "key").map_err(|e| e.0)?;
    }
    if let Some(value) = &record.value
        && !already_checked_value
    {
        jsonl::check_format(value, value_format, "value").map_err(|e| e.0)?;
    }
    admit_decoded(record, value_format);
    Ok(())
}

/// Marks a record whose value the host has just written as JSON text
/// (`written_json`), or derived from a known-JSON input by replacing a
/// number with a number (`from`, a reduction's result).
pub fn host_written(record: &mut Record, written_json: bool, from: &Record) {
    record.value_is_json = record.value.is_some() && (written_json || from.value_is_json);
}

/// Marks `emitted` as known JSON when the operator handed back the input's
/// value unchanged or the input object with members appended.
pub fn carry(input: &Record, emitted: &mut Record) {
    emitted.value_is_json = match (
        input.value_is_json,
        input.value.as_deref(),
        emitted.value.as_deref(),
    ) {
        (true, Some(before), Some(after)) => {
            before == after || json_syntax::extends_object(before, after)
        }
        _ => false,
    };
}

/// Checks a `json` value early, on a consumer thread while its bytes are in
/// cache: `true` marks it known. One that fails stays unmarked, and
/// [`admit`] checks it again and reports it with where it came from.
pub fn precheck(value: Option<&[u8]>, value_format: Format) -> bool {
    value_format == Format::Json && value.is_some_and(|v| json_syntax::check(v).is_ok())
}

/// Whether a `format` value needs no check: it is known to be JSON.
pub fn known_json(record: &Record, format: Format) -> bool {
    record.value_is_json && format == Format::Json
}

/// Holds a record leaving to Kafka to the sink's formats (a JSON-lines sink's
/// encoder checks as it writes).
pub fn release(record: &Record, key_format: Format, value_format: Format) -> Result<(), String> {
    if let Some(key) = &record.key {
        jsonl::check_format(key, key_format, "key").map_err(|e| e.0)?;
    }
    if let Some(value) = &record.value
        && !known_json(record, value_format)
    {
        jsonl::check_format(value, value_format, "value").map_err(|e| e.0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record(value: &str) -> Record {
        Record {
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            ..Record::default()
        }
    }

    #[test]
    fn admitted_json_is_known_and_released_without_a_check() {
        let mut r = record(r#"{"a":1}"#);
        admit(&mut r, Format::String, Format::Json, false).unwrap();
        assert!(r.value_is_json);
        assert!(release(&r, Format::String, Format::Json).is_ok());
        let mut bad = record("{");
        assert!(admit(&mut bad, Format::String, Format::Json, false).is_err());
        assert!(!bad.value_is_json);
        // A string-format value is never "known JSON".
        let mut text = record("{");
        admit(&mut text, Format::String, Format::String, false).unwrap();
        assert!(!text.value_is_json);
    }

    #[test]
    fn only_unchanged_or_extended_objects_carry_the_mark() {
        let mut input = record(r#"{"a":1}"#);
        input.value_is_json = true;
        let mut same = record(r#"{"a":1}"#);
        carry(&input, &mut same);
        assert!(same.value_is_json);
        let mut extended = record(r#"{"a":1,"b":2}"#);
        carry(&input, &mut extended);
        assert!(extended.value_is_json);
        let mut broken = record(r#"{"a":1,"b":}"#);
        carry(&input, &mut broken);
        assert!(!broken.value_is_json);
        assert!(release(&broken, Format::String, Format::Json).is_err());
        let mut other = record(r#"{"z":1}"#);
        carry(&input, &mut other);
        assert!(!other.value_is_json);
    }
}
