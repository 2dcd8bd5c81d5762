//! One line of a file, stdin or stdout endpoint in the [`LineFormat`] the
//! pipeline file names: a whole record (the [`jsonl`] envelope), or a plain
//! value (`json`: the line is a JSON document; `text`: the line is text).
//!
//! A plain line has no key and no timestamp of its own: a source takes them
//! from fields of the value ([`super::extract`]) or goes without (no key;
//! the time the line was read). A plain sink writes the value alone.

use bytes::Bytes;

use super::jsonl::{self, CodecError};
use super::{Format, LineFormat, format_gate, json_syntax};
use crate::record::Record;

/// Decodes one line (without its newline) of a source in `format`. `line`
/// must be a slice of `chunk`, so values are taken without copying.
#[inline]
pub fn decode(
    format: LineFormat,
    chunk: &Bytes,
    line: &[u8],
    key_format: Format,
    value_format: Format,
    now_ms: i64,
) -> Result<Record, CodecError> {
    match format {
        LineFormat::Envelope => jsonl::decode(chunk, line, key_format, value_format, now_ms),
        LineFormat::Json => {
            json_syntax::check(line).map_err(|e| {
                CodecError(format!(
                    "not a JSON value (format `json`): {} at column {}",
                    e.what,
                    e.offset + 1
                ))
            })?;
            Ok(plain(chunk, line, value_format, now_ms))
        }
        LineFormat::Text => {
            jsonl::check_format(line, Format::String, "the line")?;
            Ok(plain(chunk, line, value_format, now_ms))
        }
    }
}

/// A record whose value is the line (already checked against its format).
fn plain(chunk: &Bytes, line: &[u8], value_format: Format, now_ms: i64) -> Record {
    let mut record = Record {
        value: Some(chunk.slice_ref(line)),
        timestamp: now_ms,
        ..Record::default()
    };
    format_gate::admit_decoded(&mut record, value_format);
    record
}

/// Appends `record` as one line (with its newline) in `format` to `out`. On
/// error `out` is left as it was. A plain line holds the value alone: the
/// key, timestamp and headers are not written.
pub fn encode(
    format: LineFormat,
    record: &Record,
    key_format: Format,
    value_format: Format,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    match format {
        LineFormat::Envelope => jsonl::encode(record, key_format, value_format, out),
        LineFormat::Json => {
            let Some(value) = record.value.as_deref() else {
                // A tombstone: JSON's word for nothing.
                out.extend_from_slice(b"null\n");
                return Ok(());
            };
            if !format_gate::known_json(record, Format::Json) {
                jsonl::check_format(value, Format::Json, "value")?;
            }
            // Raw CR and LF in valid JSON are whitespace between tokens:
            // blanking them keeps the document on its line.
            out.extend(
                value
                    .iter()
                    .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
            );
            out.push(b'\n');
            Ok(())
        }
        LineFormat::Text => {
            let Some(value) = record.value.as_deref() else {
                return Err(CodecError(
                    "a record without a value (a tombstone) has no text line (format `text`)"
                        .into(),
                ));
            };
            jsonl::check_format(value, Format::String, "value")?;
            if memchr::memchr2(b'\n', b'\r', value).is_some() {
                return Err(CodecError(
                    "value has a line break and cannot be one text line (format `text`)".into(),
                ));
            }
            out.extend_from_slice(value);
            out.push(b'\n');
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(format: LineFormat, line: &str, value_format: Format) -> Result<Record, CodecError> {
        let chunk = Bytes::copy_from_slice(line.as_bytes());
        decode(
            format,
            &chunk,
            &chunk.clone(),
            Format::String,
            value_format,
            7,
        )
    }

    #[test]
    fn plain_lines_are_the_value() {
        // A plain event may have `key` and `value` fields: they stay in the value.
        let line = r#"{"key":"k","value":1,"email":"a@b.c"}"#;
        let r = dec(LineFormat::Json, line, Format::Json).unwrap();
        assert_eq!(
            (r.key, r.value.as_deref(), r.timestamp, r.value_is_json),
            (None, Some(line.as_bytes()), 7, true)
        );
        let r = dec(LineFormat::Text, "plain words, {not json", Format::String).unwrap();
        assert_eq!(r.value.as_deref(), Some(&b"plain words, {not json"[..]));
        assert!(!r.value_is_json);
        let e = dec(LineFormat::Json, r#"{"a":1"#, Format::Json).unwrap_err();
        assert!(e.0.contains("not a JSON value (format `json`)"), "{e}");
        let chunk = Bytes::from_static(b"\xff\xfe");
        let e = decode(
            LineFormat::Text,
            &chunk,
            &chunk.clone(),
            Format::String,
            Format::String,
            0,
        );
        assert!(e.unwrap_err().0.contains("not UTF-8"));
    }

    #[test]
    fn plain_sinks_write_the_value_alone() {
        let record = Record {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"{\"a\":\n1}")),
            timestamp: 5,
            ..Record::default()
        };
        let mut out = Vec::new();
        encode(
            LineFormat::Json,
            &record,
            Format::String,
            Format::Json,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"{\"a\": 1}\n");
        let text = Record {
            value: Some(Bytes::from_static(b"two\nlines")),
            ..Record::default()
        };
        let mut out = b"kept".to_vec();
        assert!(
            encode(
                LineFormat::Text,
                &text,
                Format::String,
                Format::String,
                &mut out
            )
            .is_err()
        );
        assert!(
            encode(
                LineFormat::Text,
                &Record::default(),
                Format::String,
                Format::String,
                &mut out
            )
            .is_err()
        );
        assert_eq!(out, b"kept");
        let bad = Record {
            value: Some(Bytes::from_static(b"{oops")),
            ..Record::default()
        };
        assert!(
            encode(
                LineFormat::Json,
                &bad,
                Format::String,
                Format::Json,
                &mut out
            )
            .is_err()
        );
        assert_eq!(out, b"kept");
    }
}
