//! Version 2 of the tally plugin (see `tally`): its accumulator is
//! `{"count": COUNT, "total": SUM, "v": 2}`. It upgrades version 1's
//! `{"n", "sum"}` and downgrades its own back to it, so a swap to it keeps
//! the step's state and can be rolled back after it wrote state.

#[path = "../../tally/src/shared.rs"]
mod shared;

use serde::{Deserialize, Serialize};
use shared::{Settings, Tally};
use weir_sdk::{Config, Error, JsonAggregator, Record};

/// Version 2's accumulator.
#[derive(Debug, Serialize, Deserialize)]
pub struct Counted {
    pub count: u64,
    pub total: u64,
    pub v: u32,
}

pub struct TallyV2(Settings);

impl JsonAggregator for TallyV2 {
    type State = Counted;
    const STATE_VERSION: u32 = 2;
    const UPGRADES_FROM: &'static [u32] = &[1];
    const DOWNGRADES_TO: &'static [u32] = &[1];

    fn init(config: Config) -> Result<Self, String> {
        Settings::read(config).map(TallyV2)
    }

    fn add(
        &mut self,
        _key: &[u8],
        state: Option<Counted>,
        record: &Record<'_>,
    ) -> Result<Option<Counted>, Error> {
        let n = self.0.input(record)?;
        let c = state.unwrap_or(Counted {
            count: 0,
            total: 0,
            v: 2,
        });
        Ok(Some(Counted {
            count: c.count + 1,
            total: c.total + n,
            v: 2,
        }))
    }

    fn upgrade(
        &mut self,
        _from: u32,
        _key: &[u8],
        old: serde_json::Value,
    ) -> Result<Option<Counted>, Error> {
        let old: Tally = serde_json::from_value(old)
            .map_err(|e| Error::poison(format!("not a version 1 tally: {e}")))?;
        Ok(Some(Counted {
            count: old.n,
            total: old.sum,
            v: 2,
        }))
    }

    fn downgrade(
        &mut self,
        _to: u32,
        _key: &[u8],
        state: Counted,
    ) -> Result<Option<serde_json::Value>, Error> {
        let old = Tally {
            n: state.count,
            sum: state.total,
        };
        serde_json::to_value(old)
            .map(Some)
            .map_err(|e| Error::failed(e.to_string()))
    }
}

weir_sdk::export_json_aggregator!(TallyV2);
