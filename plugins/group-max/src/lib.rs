//! The largest value of a field among a group's rows, kept up to date as a
//! table's rows change, move and leave: what the built-in `max` cannot do
//! on a table (weir refuses it there), because once the largest row leaves
//! the next largest must be known. This aggregator keeps it: its
//! accumulator holds every value of the group with how many rows have it,
//! and exports `subtract`.
//!
//! ```yaml
//! sources:
//!   orders: { kind: kafka, topic: orders, value-format: json, table: true }
//! steps:
//!   - { name: by-customer, kind: group-by, key: { field: customer } }
//!   - name: largest-order
//!     id: largest-order
//!     kind: aggregate
//!     plugin: group-max
//!     config: { field: amount }      # an integer field of each row
//! ```
//!
//! Emits `{"max": 120, "rows": 3, "values": {"40": 1, "120": 2}}` (`max`
//! is `null` once the group has no rows). The cost of subtracting is the
//! accumulator's size: one entry per distinct value in the group.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weir_sdk::{Capability, Config, Error, JsonAggregator, Record};

/// A group's values, and what they make.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub max: Option<i64>,
    pub rows: u64,
    /// Each value with how many of the group's rows hold it.
    pub values: BTreeMap<i64, u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    field: String,
}

pub struct GroupMax {
    field: String,
}

impl GroupMax {
    /// The record's integer field, or why it has none (poison).
    fn value(&self, record: &Record<'_>) -> Result<i64, Error> {
        let row: serde_json::Value = record.value_json()?;
        row.get(&self.field)
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| Error::poison(format!("field `{}` is not an integer", self.field)))
    }
}

impl JsonAggregator for GroupMax {
    type State = Group;
    const CAPABILITIES: &'static [Capability] = &[Capability::Subtract];

    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        Ok(GroupMax { field: s.field })
    }

    fn add(
        &mut self,
        _key: &[u8],
        state: Option<Group>,
        record: &Record<'_>,
    ) -> Result<Option<Group>, Error> {
        let v = self.value(record)?;
        let mut g = state.unwrap_or_default();
        *g.values.entry(v).or_default() += 1;
        g.rows += 1;
        g.max = g.values.keys().next_back().copied();
        Ok(Some(g))
    }

    fn subtract(
        &mut self,
        _key: &[u8],
        state: Option<Group>,
        record: &Record<'_>,
    ) -> Result<Option<Group>, Error> {
        let v = self.value(record)?;
        let mut g = state.unwrap_or_default();
        match g.values.get_mut(&v) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                g.values.remove(&v);
            }
            None => return Err(Error::poison(format!("the group holds no row with {v}"))),
        }
        g.rows -= 1;
        g.max = g.values.keys().next_back().copied();
        Ok(Some(g))
    }
}

weir_sdk::export_json_aggregator!(GroupMax);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_sdk::Json;
    use weir_sdk::testing::{TestGroup, TestRecord, run_json_aggregator, run_subtract};

    use super::*;

    fn row(n: i64) -> TestRecord {
        TestRecord::new().json(&json!({"amount": n}))
    }

    #[test]
    fn the_max_falls_back_to_the_next_largest_when_its_row_leaves() {
        let config = r#"{"field": "amount"}"#;
        let g = TestGroup::new("c1").record(row(40)).record(row(120));
        let out = run_json_aggregator::<GroupMax>(config, &[g]).unwrap();
        let acc = out.last().unwrap().json().unwrap();
        assert_eq!((&acc["max"], &acc["rows"]), (&json!(120), &json!(2)));
        let take = |acc: &serde_json::Value, n: i64| {
            let g = TestGroup::new("c1")
                .accumulator(acc.to_string())
                .record(row(n));
            run_subtract::<Json<GroupMax>>(config, &[g]).unwrap()
        };
        let after = take(&acc, 120)[0].json().unwrap();
        assert_eq!(after, json!({"max": 40, "rows": 1, "values": {"40": 1}}));
        assert!(
            take(&after, 120)[0].json().is_none(),
            "120 is no longer in the group"
        );
        let empty = take(&after, 40)[0].json().unwrap();
        assert_eq!(empty, json!({"max": null, "rows": 0, "values": {}}));
    }
}
