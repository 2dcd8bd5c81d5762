//! A large component for the swap benchmark (`weir-bench swap`): a map
//! step carrying an 8 MiB lookup table in its data segment, so the
//! component is several MB, like a plugin with a model or a big dictionary.
//! Each record's key is hashed into the table and the 32-bit entry found
//! there is added to its JSON value; every byte of the table can be read,
//! so the compiler cannot drop it.
//!
//! ```yaml
//! config:
//!   field: bucket          # where the table's entry goes (default `bucket`)
//!   set: { version: 2 }    # constant fields, as the enricher's `set`
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use weir_sdk::json::Patch;
use weir_sdk::{Config, Error, Map, Output, Record};

static TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/table.bin"));

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    field: Option<String>,
    #[serde(default)]
    set: BTreeMap<String, serde_json::Value>,
}

pub struct BigTable {
    field: String,
    patch: Patch,
}

/// The table's 32-bit entry for `key` (FNV-1a, then the entry it lands on).
pub fn lookup(key: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    let entries = TABLE.len() / 4;
    let i = (h % entries as u64) as usize * 4;
    u32::from_le_bytes(TABLE[i..i + 4].try_into().expect("4 bytes"))
}

impl Map for BigTable {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = if config.is_null() {
            Settings::default()
        } else {
            config.parse()?
        };
        let mut patch = Patch::new();
        for (name, value) in &s.set {
            patch.set(name, value).map_err(|e| e.to_string())?;
        }
        Ok(BigTable {
            field: s.field.unwrap_or_else(|| "bucket".into()),
            patch,
        })
    }

    fn map<'a>(&mut self, record: &Record<'a>) -> Result<Output<'a>, Error> {
        let value = record
            .value()
            .ok_or_else(|| Error::poison("tombstone has no JSON value"))?;
        let entry = lookup(record.key().unwrap_or_default()).to_string();
        let patched = self
            .patch
            .apply(value, &[(self.field.as_str(), entry.as_str())])?;
        Ok(Output::from_record(record).with_value(Some(patched)))
    }
}

weir_sdk::export_map!(BigTable);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::{TestRecord, run_map};

    #[test]
    fn adds_the_keys_table_entry_and_the_set_fields() {
        let input = TestRecord::new().key("c1").value(r#"{"a":1}"#);
        let out = run_map::<BigTable>(r#"{"set":{"v":2}}"#, &[input]).unwrap();
        let expected = serde_json::json!({"a":1,"v":2,"bucket":lookup(b"c1")});
        assert_eq!(out[0].records()[0].value_json(), expected);
        assert_ne!(lookup(b"c1"), lookup(b"c2"));
    }
}
