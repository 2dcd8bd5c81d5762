//! Splits a JSON array field into one record per element (a flat-map step).
//!
//! ```yaml
//! config: { field: items, keep: [order_id] }
//! ```
//! Each output value is the element; with `keep`, those parent fields are
//! copied into each element (which must then be an object). A record whose
//! field is missing or empty yields nothing.

use serde::Deserialize;
use weir_sdk::json::Object;
use weir_sdk::{Config, Error, FlatMap, Output, Record};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    field: String,
    #[serde(default)]
    keep: Vec<String>,
}

pub struct Splitter(Settings);

impl FlatMap for Splitter {
    fn init(config: Config) -> Result<Self, String> {
        config.parse().map(Splitter)
    }

    fn flat_map<'a>(
        &mut self,
        record: &Record<'a>,
        out: &mut Vec<Output<'a>>,
    ) -> Result<(), Error> {
        let value = record
            .value()
            .ok_or_else(|| Error::poison("tombstone has no JSON value"))?;
        let object = Object::parse(value)?;
        let Some(raw) = object.raw(&self.0.field) else {
            return Ok(());
        };
        let elements: Vec<&serde_json::value::RawValue> = serde_json::from_str(raw)
            .map_err(|e| Error::poison(format!("field `{}` is not an array: {e}", self.0.field)))?;
        for element in elements {
            let bytes = if self.0.keep.is_empty() {
                element.get().as_bytes().to_vec()
            } else {
                let mut item = Object::parse(element.get().as_bytes())?;
                for name in &self.0.keep {
                    if let Some(v) = object.raw(name) {
                        item.set_raw(name, v.to_string());
                    }
                }
                item.to_vec()
            };
            out.push(Output::from_record(record).with_value(Some(bytes)));
        }
        Ok(())
    }
}

weir_sdk::export_flat_map!(Splitter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::{TestRecord, run_flat_map};

    #[test]
    fn one_record_per_element_with_parent_fields() {
        let input = TestRecord::new()
            .key("o1")
            .value(r#"{"order_id":7,"items":[{"sku":"a"},{"sku":"b"}]}"#);
        let out =
            run_flat_map::<Splitter>(r#"{"field":"items","keep":["order_id"]}"#, &[input]).unwrap();
        let values: Vec<_> = out[0].records().iter().map(|r| r.value_json()).collect();
        assert_eq!(
            values,
            [
                serde_json::json!({"sku":"a","order_id":7}),
                serde_json::json!({"sku":"b","order_id":7})
            ]
        );
        let empty =
            run_flat_map::<Splitter>(r#"{"field":"items"}"#, &[TestRecord::new().value("{}")])
                .unwrap();
        assert!(empty[0].records().is_empty());
    }
}
