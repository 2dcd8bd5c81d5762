//! The JSON-lines form of a record, used by file and stdin sources, file and
//! stdout sinks, and `weir test` fixtures:
//!
//! ```json
//! {"key": "c1", "value": {"amount": 120}, "timestamp": 1700000000000, "headers": {"trace": "abc"}}
//! ```
//!
//! `key` and `value` are written in the stream's format: `json` embeds any
//! JSON value, `string` a JSON string, `bytes` a base64 string. A missing or
//! `null` key means no key; a missing or `null` value is a tombstone. A
//! missing timestamp is the time the line is read (as a Kafka producer's
//! create time). Headers are an object of UTF-8 strings (or `null`), or a
//! list of `[name, value]` pairs when names repeat; a value that is not
//! UTF-8 is written as `{"base64": "..."}`.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;

use super::json_syntax::{self, Scanner, SyntaxError};

use super::Format;
use super::format_gate;
use crate::record::{Header, Record};

/// Why a line or a record could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

/// The spans of a line's members, each a checked JSON value: `None` when
/// absent, `Some(None)` when `null`.
#[derive(Default)]
struct Line<'a> {
    key: Option<Option<&'a [u8]>>,
    value: Option<Option<&'a [u8]>>,
    timestamp: Option<Option<&'a [u8]>>,
    headers: Option<Option<&'a [u8]>>,
}

const FIELDS: &str = "expected one of `key`, `value`, `timestamp`, `headers`";

impl<'a> Line<'a> {
    /// Parses the envelope and checks every member's value in one pass
    /// (the line is most of what a file source does per record).
    fn parse(line: &'a [u8]) -> Result<Self, CodecError> {
        let bad = |e: SyntaxError| {
            CodecError(format!(
                "not a JSON record: {} at column {}",
                e.what,
                e.offset + 1
            ))
        };
        let mut s = Scanner::new(line);
        let mut parsed = Line::default();
        s.skip_ws();
        if !s.eat(b'{') {
            return Err(bad(s.error("expected `{`")));
        }
        s.skip_ws();
        if !s.eat(b'}') {
            loop {
                s.skip_ws();
                let (name, escaped) = s.string().map_err(bad)?;
                let name: Cow<'_, [u8]> = if escaped {
                    let text = &line[name.start - 1..name.end + 1];
                    serde_json::from_slice::<String>(text)
                        .map(|n| Cow::Owned(n.into_bytes()))
                        .map_err(|e| CodecError(format!("not a JSON record: {e}")))?
                } else {
                    Cow::Borrowed(&line[name])
                };
                s.skip_ws();
                if !s.eat(b':') {
                    return Err(bad(s.error("expected `:`")));
                }
                s.skip_ws();
                let value = &line[s.value().map_err(bad)?];
                let slot = match &*name {
                    b"key" => &mut parsed.key,
                    b"value" => &mut parsed.value,
                    b"timestamp" => &mut parsed.timestamp,
                    b"headers" => &mut parsed.headers,
                    other => {
                        return Err(CodecError(format!(
                            "not a JSON record: unknown field `{}`, {FIELDS}",
                            String::from_utf8_lossy(other)
                        )));
                    }
                };
                if slot.is_some() {
                    return Err(CodecError(format!(
                        "not a JSON record: duplicate field `{}`",
                        String::from_utf8_lossy(&name)
                    )));
                }
                // Seen, even when `null` (the same as a missing member).
                *slot = Some(Some(value).filter(|v| *v != b"null"));
                s.skip_ws();
                if s.eat(b'}') {
                    break;
                }
                if !s.eat(b',') {
                    return Err(bad(s.error("expected `,` or `}`")));
                }
            }
        }
        s.skip_ws();
        if !s.at_end() {
            return Err(bad(s.error("trailing characters after the record")));
        }
        Ok(parsed)
    }
}

/// Decodes one line (without its newline). `line` must be a slice of
/// `chunk`, so JSON-format keys and values are taken without copying.
pub fn decode(
    chunk: &Bytes,
    line: &[u8],
    key_format: Format,
    value_format: Format,
    now_ms: i64,
) -> Result<Record, CodecError> {
    let parsed = Line::parse(line)?;
    let key = parsed
        .key
        .flatten()
        .map(|raw| field_bytes(chunk, raw, key_format, "key"))
        .transpose()?;
    let value = parsed
        .value
        .flatten()
        .map(|raw| field_bytes(chunk, raw, value_format, "value"))
        .transpose()?;
    let headers = match parsed.headers.flatten() {
        Some(raw) => decode_headers(raw)?,
        None => Vec::new(),
    };
    let timestamp = match parsed.timestamp.flatten() {
        None => now_ms,
        Some(raw) => parse_millis(raw).ok_or_else(|| {
            CodecError(format!(
                "timestamp must be an integer number of milliseconds since the epoch, got {}",
                String::from_utf8_lossy(raw)
            ))
        })?,
    };
    let mut record = Record {
        key,
        value,
        timestamp,
        headers,
        value_is_json: false,
        old_value: None,
    };
    // Every member's value was checked as JSON by the envelope's parse.
    format_gate::admit_decoded(&mut record, value_format);
    Ok(record)
}

/// A timestamp's JSON number as an integer; `None` when it is not one (a
/// fraction, an exponent) or does not fit. Epoch milliseconds have 13
/// digits: eight are converted at once.
// Inlined into `decode` as when it was its only caller.
#[inline(always)]
pub(crate) fn parse_millis(raw: &[u8]) -> Option<i64> {
    let (negative, digits) = match raw.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, raw),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        // Longer ones may overflow: the standard parser checks.
        return std::str::from_utf8(raw).ok()?.parse().ok();
    }
    let (head, tail) = digits.split_at(digits.len().saturating_sub(8));
    let mut n = head.iter().fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
    if tail.len() == 8 {
        n = n * 100_000_000 + eight_digits(tail.try_into().expect("eight bytes"));
    } else {
        n = tail.iter().fold(n, |n, &d| n * 10 + i64::from(d - b'0'));
    }
    Some(if negative { -n } else { n })
}

/// Eight ASCII digits as a number, a few multiplications for all of them
/// (Lemire's SWAR method: pairs, then pairs of pairs).
fn eight_digits(digits: [u8; 8]) -> i64 {
    const MASK: u64 = 0x0000_00ff_0000_00ff;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let v = u64::from_le_bytes(digits).wrapping_sub(0x3030_3030_3030_3030);
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let v = (v & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2))
        >> 32;
    v as i64
}

/// A member's value (already checked JSON) as key or value bytes (`what`)
/// in `format`.
pub(crate) fn field_bytes(
    chunk: &Bytes,
    raw: &[u8],
    format: Format,
    what: &str,
) -> Result<Bytes, CodecError> {
    match format {
        Format::Json => Ok(slice_or_copy(chunk, raw)),
        Format::String => {
            // A string without escapes is its own content, taken without a copy.
            let plain = raw
                .strip_prefix(b"\"")
                .and_then(|t| t.strip_suffix(b"\""))
                .filter(|inner| memchr::memchr(b'\\', inner).is_none());
            if let Some(inner) = plain {
                return Ok(slice_or_copy(chunk, inner));
            }
            match serde_json::from_slice::<String>(raw) {
                Ok(s) => Ok(Bytes::from(s)),
                Err(_) => Err(CodecError(format!(
                    "{what} must be a JSON string (format `string`), got {}",
                    String::from_utf8_lossy(raw)
                ))),
            }
        }
        Format::Bytes => {
            let s: Cow<'_, str> = serde_json::from_slice(raw).map_err(|_| {
                CodecError(format!(
                    "{what} must be a base64 string (format `bytes`), got {}",
                    String::from_utf8_lossy(raw)
                ))
            })?;
            BASE64
                .decode(s.as_bytes())
                .map(Bytes::from)
                .map_err(|e| CodecError(format!("{what} is not valid base64: {e}")))
        }
    }
}

fn slice_or_copy(chunk: &Bytes, part: &[u8]) -> Bytes {
    let base = chunk.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if p >= base && p + part.len() <= base + chunk.len() {
        chunk.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderValue<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Base64 { base64: String },
}

/// Headers in the order written: `{"name": value, ...}` or `[["name", value], ...]`.
struct OrderedHeaders<'a>(Vec<(Cow<'a, str>, Option<HeaderValue<'a>>)>);

impl<'de: 'a, 'a> Deserialize<'de> for OrderedHeaders<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = OrderedHeaders<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object or a list of [name, value] pairs")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(OrderedHeaders(out))
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<Self::Value, S::Error> {
                let mut out = Vec::new();
                while let Some(pair) = seq.next_element()? {
                    out.push(pair);
                }
                Ok(OrderedHeaders(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

fn decode_headers(raw: &[u8]) -> Result<Vec<Header>, CodecError> {
    let parsed: OrderedHeaders<'_> = serde_json::from_slice(raw).map_err(|e| {
        CodecError(format!(
            "headers must be an object or a list of [name, value] pairs whose values are strings, null or {{\"base64\": \"...\"}}: {e}"
        ))
    })?;
    parsed
        .0
        .into_iter()
        .map(|(name, v)| {
            let value = match v {
                None => None,
                Some(HeaderValue::Text(t)) => Some(Bytes::from(t.into_owned())),
                Some(HeaderValue::Base64 { base64 }) => {
                    Some(Bytes::from(BASE64.decode(base64.as_bytes()).map_err(
                        |e| CodecError(format!("header `{name}` is not valid base64: {e}")),
                    )?))
                }
            };
            Ok(Header {
                name: name.into_owned(),
                value,
            })
        })
        .collect()
}

/// Appends `record` as one JSON line (with its newline) to `out`. On error
/// `out` is left as it was.
pub fn encode(
    record: &Record,
    key_format: Format,
    value_format: Format,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let mark = out.len();
    let result = encode_inner(record, key_format, value_format, out);
    if result.is_err() {
        out.truncate(mark);
    }
    result
}

/// Like [`encode`], but never fails: a key or value that does not fit its
/// format is written as a string (or base64 when it is not UTF-8). For the
/// dead-letter sink, whose records are by nature the ones that did not fit.
pub fn encode_lossless(
    record: &Record,
    key_format: Format,
    value_format: Format,
    out: &mut Vec<u8>,
) {
    if encode(record, key_format, value_format, out).is_ok() {
        return;
    }
    let fit = |bytes: Option<&[u8]>, format: Format| {
        let mut scratch = Vec::new();
        if encode_field(bytes, format, "", false, &mut scratch).is_ok() {
            format
        } else if bytes.is_some_and(|b| std::str::from_utf8(b).is_ok()) {
            Format::String
        } else {
            Format::Bytes
        }
    };
    let key = fit(record.key.as_deref(), key_format);
    let value = fit(record.value.as_deref(), value_format);
    encode(record, key, value, out).expect("string and base64 fit any bytes");
}

fn encode_inner(
    record: &Record,
    key_format: Format,
    value_format: Format,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    out.extend_from_slice(b"{\"key\":");
    encode_field(record.key.as_deref(), key_format, "key", false, out)?;
    out.extend_from_slice(b",\"value\":");
    encode_field(
        record.value.as_deref(),
        value_format,
        "value",
        format_gate::known_json(record, value_format),
        out,
    )?;
    out.extend_from_slice(b",\"timestamp\":");
    out.extend_from_slice(itoa::Buffer::new().format(record.timestamp).as_bytes());
    if !record.headers.is_empty() {
        out.extend_from_slice(b",\"headers\":");
        encode_headers(&record.headers, out);
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// Writes a key or value (`what`) in `format`; `known_json` skips the JSON
/// check of bytes already known to be JSON.
fn encode_field(
    bytes: Option<&[u8]>,
    format: Format,
    what: &str,
    known_json: bool,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let Some(bytes) = bytes else {
        out.extend_from_slice(b"null");
        return Ok(());
    };
    match format {
        Format::Json => {
            if !known_json {
                check_format(bytes, format, what)?;
            }
            if memchr::memchr2(b'\n', b'\r', bytes).is_some() {
                // Valid JSON has raw CR and LF only as whitespace between
                // tokens (never inside strings), so blanking them keeps the
                // value byte for byte otherwise and the record on one line.
                out.extend(
                    bytes
                        .iter()
                        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
                );
            } else {
                out.extend_from_slice(bytes);
            }
        }
        Format::String => {
            let s = text(bytes, what)?;
            serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
        }
        Format::Bytes => {
            out.push(b'"');
            out.extend_from_slice(BASE64.encode(bytes).as_bytes());
            out.push(b'"');
        }
    }
    Ok(())
}

/// Checks that raw key or value bytes (`what`) are what `format` says:
/// UTF-8 JSON text, UTF-8 text, or anything. Where records enter from or
/// leave to a binary medium (Kafka), this is the whole of decoding and
/// encoding.
pub fn check_format(bytes: &[u8], format: Format, what: &str) -> Result<(), CodecError> {
    match format {
        Format::Json => {
            json_syntax::check(bytes)
                .map_err(|e| CodecError(format!("{what} is not JSON (format `json`): {e}")))?;
        }
        Format::String => {
            text(bytes, what)?;
        }
        Format::Bytes => {}
    }
    Ok(())
}

/// Bytes of a `string`-format key or value (`what`) as text.
fn text<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, CodecError> {
    std::str::from_utf8(bytes)
        .map_err(|e| CodecError(format!("{what} is not UTF-8 (format `string`): {e}")))
}

fn encode_headers(headers: &[Header], out: &mut Vec<u8>) {
    let unique = headers
        .iter()
        .enumerate()
        .all(|(i, h)| headers[..i].iter().all(|o| o.name != h.name));
    let value = |v: &Option<Bytes>, out: &mut Vec<u8>| match v {
        None => out.extend_from_slice(b"null"),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => serde_json::to_writer(&mut *out, s).expect("Vec write"),
            Err(_) => {
                out.extend_from_slice(b"{\"base64\":\"");
                out.extend_from_slice(BASE64.encode(b).as_bytes());
                out.extend_from_slice(b"\"}");
            }
        },
    };
    out.push(if unique { b'{' } else { b'[' });
    for (i, h) in headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if !unique {
            out.push(b'[');
        }
        serde_json::to_writer(&mut *out, &h.name).expect("Vec write");
        out.push(if unique { b':' } else { b',' });
        value(&h.value, out);
        if !unique {
            out.push(b']');
        }
    }
    out.push(if unique { b'}' } else { b']' });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(line: &str, k: Format, v: Format) -> Result<Record, CodecError> {
        let chunk = Bytes::copy_from_slice(line.as_bytes());
        decode(&chunk, &chunk.clone(), k, v, 99)
    }

    fn enc(r: &Record, k: Format, v: Format) -> String {
        let mut out = Vec::new();
        encode(r, k, v, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn round_trips_every_format() {
        let line = r#"{"key":"c\"1","value":{"a":[1,2]},"timestamp":5,"headers":{"h":"v","n":null,"b":{"base64":"/w=="}}}"#;
        let r = dec(line, Format::String, Format::Json).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"c\"1"[..]));
        assert_eq!(r.value.as_deref(), Some(&br#"{"a":[1,2]}"#[..]));
        assert_eq!(r.headers[1].value, None);
        assert_eq!(r.headers[2].value.as_deref(), Some(&[0xffu8][..]));
        assert_eq!(format!("{line}\n"), enc(&r, Format::String, Format::Json));

        let b = dec(
            r#"{"key":"AAE=","value":"aGk="}"#,
            Format::Bytes,
            Format::Bytes,
        )
        .unwrap();
        assert_eq!(
            (b.key.as_deref(), b.value.as_deref(), b.timestamp),
            (Some(&[0u8, 1][..]), Some(&b"hi"[..]), 99)
        );
        assert_eq!(
            enc(&b, Format::Bytes, Format::Bytes),
            "{\"key\":\"AAE=\",\"value\":\"aGk=\",\"timestamp\":99}\n"
        );
    }

    #[test]
    fn timestamps_parse_like_the_standard_parser() {
        for text in [
            "0",
            "-0",
            "7",
            "-12",
            "1700000000000",
            "-1700000000000",
            "12345678",
            "99999999",
            "100000000",
            "123456789012345678",
            "-123456789012345678",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "1.5",
            "1e3",
            "-",
            "",
        ] {
            assert_eq!(
                parse_millis(text.as_bytes()),
                text.parse::<i64>().ok(),
                "{text}"
            );
        }
        for i in 0..200_000i64 {
            let n = (i * 7_919_993_337) % 10i64.pow(1 + (i % 18) as u32);
            assert_eq!(parse_millis(n.to_string().as_bytes()), Some(n));
        }
    }

    #[test]
    fn the_envelope_is_parsed_strictly() {
        let (k, v) = (Format::String, Format::Json);
        // Whitespace, escaped member names, nulls as absent members.
        let r = dec(
            " { \"k\\u0065y\" : \"a\" , \"value\" : [1, {\"b\": null}] , \"headers\": null, \"timestamp\": -5 } ",
            k,
            v,
        )
        .unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"a"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"[1, {\"b\": null}]"[..]));
        assert_eq!((r.timestamp, r.headers.len()), (-5, 0));
        let r = dec(r#"{"key":null,"value":null,"timestamp":null}"#, k, v).unwrap();
        assert_eq!((r.key, r.value, r.timestamp), (None, None, 99));
        for (line, error) in [
            (r#"{"key":"a","key":"b"}"#, "duplicate field `key`"),
            (r#"{"key":null,"key":"b"}"#, "duplicate field `key`"),
            (
                r#"{"valu\u0065":null,"value":1}"#,
                "duplicate field `value`",
            ),
            (r#"{"timestamp":1.5}"#, "timestamp must be an integer"),
            (r#"{"timestamp":"5"}"#, "timestamp must be an integer"),
            (
                r#"{"value":{"a":1,}}"#,
                "expected a member name (a string) at column 17",
            ),
            (
                r#"{"value":1} x"#,
                "trailing characters after the record at column 13",
            ),
            (r#"{"value":1"#, "expected `,` or `}` at column 11"),
            ("[1]", "expected `{` at column 1"),
            (
                "{\"value\":\"\u{1}\"}",
                "control character in a string at column 11",
            ),
        ] {
            let got = dec(line, k, v).unwrap_err().0;
            assert!(got.contains(error), "{line}: {got}");
        }
    }

    #[test]
    fn tombstones_repeated_headers_and_errors() {
        let r = dec(
            r#"{"key":"k","headers":[["a","1"],["a","2"]]}"#,
            Format::String,
            Format::Json,
        )
        .unwrap();
        assert_eq!(r.value, None);
        assert_eq!(
            enc(&r, Format::String, Format::Json),
            "{\"key\":\"k\",\"value\":null,\"timestamp\":99,\"headers\":[[\"a\",\"1\"],[\"a\",\"2\"]]}\n"
        );
        assert!(
            dec("{\"key\":1}", Format::String, Format::Json)
                .unwrap_err()
                .0
                .contains("JSON string")
        );
        assert!(
            dec("{\"vlaue\":1}", Format::String, Format::Json)
                .unwrap_err()
                .0
                .contains("unknown field")
        );
        assert!(
            dec("nope", Format::String, Format::Json)
                .unwrap_err()
                .0
                .contains("not a JSON record")
        );
        let bad = Record {
            value: Some(Bytes::from_static(b"{oops")),
            ..Record::default()
        };
        let mut out = b"keep".to_vec();
        assert!(encode(&bad, Format::String, Format::Json, &mut out).is_err());
        assert_eq!(out, b"keep");
        // Pretty-printed JSON stays byte for byte (big numbers, key order)
        // but on one line.
        let pretty = Record {
            value: Some(Bytes::from_static(
                b"{\r\n \"b\": 12345678901234567890123,\n \"a\": 1\n}",
            )),
            ..Record::default()
        };
        assert_eq!(
            enc(&pretty, Format::String, Format::Json),
            "{\"key\":null,\"value\":{   \"b\": 12345678901234567890123,  \"a\": 1 },\"timestamp\":0}\n"
        );
        for bad in [&b"{\"a\":\"x\ny\"}"[..], b"\"\xff\""] {
            let r = Record {
                value: Some(Bytes::copy_from_slice(bad)),
                ..Record::default()
            };
            assert!(
                encode(&r, Format::String, Format::Json, &mut Vec::new()).is_err(),
                "{bad:?}"
            );
        }
    }
}
