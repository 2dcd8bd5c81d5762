//! A weir plugin for `aggregate` steps: per key, it counts the records and
//! sums one integer field of their JSON values, named in the step's config.
//!
//! An aggregator folds each record into its key's accumulator and returns
//! the accumulator after it. It keeps no state itself: the host stores each
//! key's accumulator, hands it back with the key's next records, and emits
//! every new one downstream, so the totals survive restarts. An `Err` fails
//! only that record, and the key's next record starts from the accumulator
//! before it.
//!
//! When `Totals` changes shape, raise `STATE_VERSION` and convert the older
//! accumulators in `upgrade` (`UPGRADES_FROM`), so a hot swap to the new
//! code keeps every key's totals.

use serde::{Deserialize, Serialize};
use weir_sdk::{Config, Error, JsonAggregator, Record};

pub struct Plugin {
    field: String,
}

/// The step's `config:` block.
#[derive(Deserialize)]
struct Settings {
    field: String,
}

/// The accumulator, stored (and emitted) as JSON.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    orders: u64,
    total: i64,
}

impl JsonAggregator for Plugin {
    type State = Totals;

    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        Ok(Plugin { field: s.field })
    }

    fn add(
        &mut self,
        _key: &[u8],
        state: Option<Totals>,
        record: &Record<'_>,
    ) -> Result<Option<Totals>, Error> {
        // A value without the field as an integer is a poison error: the
        // step's error policy decides what becomes of the record.
        let value: serde_json::Value = record.value_json()?;
        let amount = value
            .get(&self.field)
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| Error::poison(format!("`{}` is not an integer", self.field)))?;
        let mut totals = state.unwrap_or_default();
        totals.orders += 1;
        totals.total = totals
            .total
            .checked_add(amount)
            .ok_or_else(|| Error::poison("the total overflows"))?;
        Ok(Some(totals))
    }
}

weir_sdk::export_json_aggregator!(Plugin);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_sdk::testing::{AggregateOutcome, TestGroup, TestRecord, run_json_aggregator};

    use super::Plugin;

    #[test]
    fn totals_grow_per_key_and_a_bad_record_changes_nothing() {
        let order = |amount: serde_json::Value| TestRecord::new().json(&json!({"amount": amount}));
        let groups = [
            TestGroup::new("c-7")
                .record(order(json!(20)))
                .record(order(json!("twelve")))
                .record(order(json!(12))),
            // A key whose accumulator the host already has.
            TestGroup::new("c-9")
                .accumulator(r#"{"orders":4,"total":100}"#)
                .record(order(json!(5))),
        ];
        let out = run_json_aggregator::<Plugin>(r#"{"field": "amount"}"#, &groups).unwrap();
        assert_eq!(out[0].json(), Some(json!({"orders": 1, "total": 20})));
        assert!(matches!(out[1], AggregateOutcome::Poison(_)), "{:?}", out[1]);
        assert_eq!(out[2].json(), Some(json!({"orders": 2, "total": 32})));
        assert_eq!(out[3].json(), Some(json!({"orders": 5, "total": 105})));
    }
}
