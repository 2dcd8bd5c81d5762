//! A weir plugin for `flat-map` steps: it splits each string value into
//! one record per word.
//!
//! A flat-map turns each record into zero or more records (an empty value
//! here gives none); each output starts as a copy of its input, so key,
//! timestamp and headers carry over unless changed.

use weir_sdk::{Config, Error, FlatMap, Output, Record};

pub struct Plugin;

impl FlatMap for Plugin {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Plugin)
    }

    fn flat_map<'a>(
        &mut self,
        record: &Record<'a>,
        out: &mut Vec<Output<'a>>,
    ) -> Result<(), Error> {
        // A tombstone or a value that is not UTF-8 is a poison error: the
        // step's error policy decides what becomes of the record.
        for word in record.value_str()?.split_whitespace() {
            out.push(Output::from_record(record).with_value(Some(word)));
        }
        Ok(())
    }
}

weir_sdk::export_flat_map!(Plugin);

#[cfg(test)]
mod tests {
    use weir_sdk::testing::{Outcome, TestRecord, run_flat_map};

    use super::Plugin;

    #[test]
    fn one_record_per_word() {
        let inputs = [
            TestRecord::new().key("s-1").value("to be or"),
            TestRecord::new().key("s-2").value("   "),
            TestRecord::new().key("s-3"),
        ];
        let out = run_flat_map::<Plugin>("null", &inputs).unwrap();
        let words = out[0].records();
        let values: Vec<_> = words.iter().map(|r| r.value.clone().unwrap()).collect();
        assert_eq!(values, [b"to", b"be", b"or"]);
        assert!(
            words.iter().all(|r| r.key == inputs[0].key),
            "the key stays"
        );
        assert_eq!(out[1].records(), [], "a flat-map may emit nothing");
        assert!(matches!(out[2], Outcome::Poison(_)), "{:?}", out[2]);
    }
}
