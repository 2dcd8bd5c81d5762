//! Kafka Streams' binary windowed keys, for Kafka sinks that write them
//! (`windowed-key: kafka-streams`) so Java consumers read the results with
//! `WindowedSerdes`: the inner key's bytes, then the window's start
//! (`timeWindowedSerdeFrom`, `WindowKeySchema.toBinary`), or the session's
//! end then its start (`sessionWindowedSerdeFrom`,
//! `SessionKeySchema.toBinary`), each a big-endian `long`.
//!
//! A windowed aggregate emits its keys as weir's JSON
//! (`{"key": ..., "start": ..., "end": ...}`, the inner key as text or
//! `{"base64": ...}`; see `operators/windowed`); this reads that back, so
//! the steps between the aggregate and the sink see one form.

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;

use crate::pipeline::WindowedKey;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonWindowedKey {
    key: InnerKey,
    start: i64,
    end: i64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InnerKey {
    Text(String),
    Binary { base64: String },
}

/// `json_key` (a windowed key as weir writes it) in Kafka Streams' binary
/// `form`; an error says why the key is not a windowed one.
pub fn kafka_streams_key(json_key: &[u8], form: WindowedKey) -> Result<Bytes, String> {
    let parsed: JsonWindowedKey = serde_json::from_slice(json_key).map_err(|e| {
        format!(
            "the key is not a windowed key ({{\"key\", \"start\", \"end\"}}) to write in Kafka Streams' form: {e}: {}",
            String::from_utf8_lossy(json_key)
        )
    })?;
    let inner = match parsed.key {
        InnerKey::Text(text) => text.into_bytes(),
        InnerKey::Binary { base64 } => base64::engine::general_purpose::STANDARD
            .decode(base64)
            .map_err(|e| format!("the windowed key's base64 inner key does not decode: {e}"))?,
    };
    let mut out = Vec::with_capacity(inner.len() + 16);
    out.extend_from_slice(&inner);
    match form {
        WindowedKey::Time => out.extend_from_slice(&parsed.start.to_be_bytes()),
        WindowedKey::Session => {
            out.extend_from_slice(&parsed.end.to_be_bytes());
            out.extend_from_slice(&parsed.start.to_be_bytes());
        }
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::windowed::windowed_json_key;

    #[test]
    fn time_and_session_keys_are_the_inner_key_then_big_endian_times() {
        let json = windowed_json_key(b"north", 0x0102, 0x0304);
        let time = kafka_streams_key(&json, WindowedKey::Time).unwrap();
        assert_eq!(&time[..], b"north\0\0\0\0\0\0\x01\x02");
        let session = kafka_streams_key(&json, WindowedKey::Session).unwrap();
        assert_eq!(
            &session[..],
            b"north\0\0\0\0\0\0\x03\x04\0\0\0\0\0\0\x01\x02"
        );
        // A key that is not text comes back from its base64.
        let json = windowed_json_key(&[0xff, 0x00], -1, 5);
        let time = kafka_streams_key(&json, WindowedKey::Time).unwrap();
        assert_eq!(
            &time[..],
            &[0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn a_key_that_is_not_windowed_is_refused_with_the_key() {
        let e = kafka_streams_key(b"north", WindowedKey::Time).unwrap_err();
        assert!(
            e.contains("not a windowed key") && e.contains("north"),
            "{e}"
        );
    }
}
