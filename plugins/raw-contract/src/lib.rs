//! A test plugin that speaks weir's plugin contract without any SDK: it is
//! bound with `wit-bindgen` alone and writes its results by hand, as a
//! plugin from another language (or with a buggy SDK) would. It answers with
//! the canned results of the golden vectors (`wit/vectors/`), so tests can
//! check that the host catches every way a result can break the contract.
//!
//! ```yaml
//! config: { case: filter-emits, trigger: boom, ports: [out] }
//! ```
//!
//! `case` names a result vector of batch `one-record`; `ports` are the
//! output ports `init` declares (default `[out]`). A record whose value is
//! `trigger` (default `boom`) gets the vector's result; every other record is
//! forwarded unchanged on port 0. A batch of that one record alone gets the
//! vector's bytes exactly. In a larger batch:
//! - a well-formed case's result for the trigger record is put in its place
//!   among the forwards, so the host must fail that record alone and keep
//!   the instance;
//! - a malformed case is answered with a result count one larger than the
//!   batch, so the host must refuse the whole result, discard the instance
//!   and run every record alone on a fresh one, where the trigger record
//!   gets the vector's bytes.
//!
//! It declares every step kind: which rules apply is the step's choice.

wit_bindgen::generate!({
    world: "transformer",
    path: "../../wit",
});

use std::cell::RefCell;

use exports::weir::plugin::transform::{Guest, StepKind};
use serde::Deserialize;

mod vectors {
    include!(concat!(env!("OUT_DIR"), "/vectors.rs"));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    case: String,
    #[serde(default = "default_trigger")]
    trigger: String,
    #[serde(default = "default_ports")]
    ports: Vec<String>,
}

fn default_trigger() -> String {
    "boom".into()
}

fn default_ports() -> Vec<String> {
    vec!["out".into()]
}

/// One vector's result for a batch of one record.
struct Canned {
    bytes: Vec<u8>,
    well_formed: bool,
    trigger: Vec<u8>,
}

thread_local! {
    static CANNED: RefCell<Option<Canned>> = const { RefCell::new(None) };
}

/// The bytes of a `.hex` vector: hex pairs; whitespace and `#` comments are
/// not part of them.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.bytes().filter(|c| !c.is_ascii_whitespace()))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            u8::from_str_radix(text, 16).map_err(|e| format!("`{text}`: {e}"))
        })
        .collect()
}

/// Looks up `case` among the embedded vectors.
pub fn canned(case: &str) -> Result<(Vec<u8>, bool), String> {
    let index: serde_json::Value =
        serde_json::from_str(vectors::INDEX).map_err(|e| e.to_string())?;
    let entry = index["results"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == case))
        .ok_or_else(|| {
            let known: Vec<&str> = vectors::RESULTS.iter().map(|(n, _)| *n).collect();
            format!("unknown case `{case}`; known: {}", known.join(", "))
        })?;
    if entry["batch"] != "one-record" {
        return Err(format!(
            "case `{case}` is for batch {}, not one-record",
            entry["batch"]
        ));
    }
    let (_, hex) = vectors::RESULTS
        .iter()
        .find(|(n, _)| *n == case)
        .ok_or_else(|| format!("case `{case}` has no result file"))?;
    let bytes = parse_hex(hex).map_err(|e| format!("case `{case}`: {e}"))?;
    Ok((bytes, entry["decoded"].is_array()))
}

/// A cursor over a packed batch from the host. The host sends only
/// well-formed batches; a short one is a host bug, and the slice index
/// panic becomes a trap the host reports.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        s
    }

    fn u32(&mut self) -> u32 {
        let b = self.take(4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// A length-prefixed field; `None` for the ABSENT length.
    fn optional(&mut self) -> Option<&'a [u8]> {
        match self.u32() {
            u32::MAX => None,
            len => Some(self.take(len as usize)),
        }
    }
}

/// The value of each record of a packed batch (`None` for a tombstone).
fn values(batch: &[u8]) -> Vec<Option<&[u8]>> {
    let mut c = Cursor { buf: batch, pos: 0 };
    let count = c.u32();
    (0..count)
        .map(|_| {
            c.take(8);
            c.optional();
            let value = c.optional();
            for _ in 0..c.u32() {
                c.optional();
                c.optional();
            }
            value
        })
        .collect()
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct RawContract;

impl Guest for RawContract {
    fn kinds() -> Vec<StepKind> {
        vec![
            StepKind::Filter,
            StepKind::Map,
            StepKind::FlatMap,
            StepKind::Branch,
            StepKind::SelectKey,
        ]
    }

    fn init(config: String) -> Result<Vec<String>, String> {
        let settings: Settings =
            serde_json::from_str(&config).map_err(|e| format!("bad config: {e}"))?;
        let (bytes, well_formed) = canned(&settings.case)?;
        CANNED.with(|c| {
            *c.borrow_mut() = Some(Canned {
                bytes,
                well_formed,
                trigger: settings.trigger.into_bytes(),
            })
        });
        Ok(settings.ports)
    }

    fn process(batch: Vec<u8>) -> Vec<u8> {
        CANNED.with(|c| {
            let c = c.borrow();
            let canned = c.as_ref().expect("process before init");
            let values = values(&batch);
            let hit: Vec<bool> = values
                .iter()
                .map(|v| *v == Some(canned.trigger.as_slice()))
                .collect();
            if values.len() == 1 && hit[0] {
                return canned.bytes.clone();
            }
            let mut out = Vec::new();
            if !canned.well_formed && hit.contains(&true) {
                out.extend_from_slice(&(values.len() as u32 + 1).to_le_bytes());
                return out;
            }
            out.extend_from_slice(&(values.len() as u32).to_le_bytes());
            for hit in hit {
                if hit {
                    out.extend_from_slice(&canned.bytes[4..]);
                } else {
                    out.extend_from_slice(&[1, 0, 0, 0, 0]);
                }
            }
            out
        })
    }
}

// Natively (for the unit tests) the export names, which hold `:` and `@`,
// are not valid linker symbols; the component is built for wasm32 only.
#[cfg(target_arch = "wasm32")]
export!(RawContract);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_one_record_vector_is_embedded_and_parses() {
        let index: serde_json::Value = serde_json::from_str(vectors::INDEX).unwrap();
        let mut n = 0;
        for r in index["results"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap();
            if r["batch"] == "one-record" {
                let (bytes, well_formed) = canned(name).unwrap();
                assert_eq!(well_formed, r["decoded"].is_array(), "{name}");
                if well_formed {
                    assert_eq!(bytes[..4], 1u32.to_le_bytes(), "{name}: one result");
                }
                n += 1;
            } else {
                assert!(canned(name).is_err(), "{name}");
            }
        }
        assert!(n >= 30, "{n}");
        assert!(canned("no-such-case").unwrap_err().contains("filter-emits"));
    }

    #[test]
    fn hex_comments_and_spaces_are_not_bytes() {
        assert_eq!(
            parse_hex("01 ff # tag\n# all comment\n0a").unwrap(),
            [1, 255, 10]
        );
        assert!(parse_hex("0").is_err());
        assert!(parse_hex("zz").is_err());
    }

    #[test]
    fn values_are_found_in_a_packed_batch() {
        let mut batch = 2u32.to_le_bytes().to_vec();
        for (key, value) in [(Some(&b"k"[..]), Some(&b"boom"[..])), (None, None)] {
            batch.extend_from_slice(&1000i64.to_le_bytes());
            for f in [key, value] {
                match f {
                    Some(b) => {
                        batch.extend_from_slice(&(b.len() as u32).to_le_bytes());
                        batch.extend_from_slice(b);
                    }
                    None => batch.extend_from_slice(&u32::MAX.to_le_bytes()),
                }
            }
            batch.extend_from_slice(&1u32.to_le_bytes());
            batch.extend_from_slice(&1u32.to_le_bytes());
            batch.extend_from_slice(b"h");
            batch.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        assert_eq!(values(&batch), [Some(&b"boom"[..]), None]);
    }
}
