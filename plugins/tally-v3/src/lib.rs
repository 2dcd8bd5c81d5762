//! Version 3 of the tally plugin (see `tally`): its accumulator is
//! `{"count": COUNT, "total": SUM, "v": 3}`. It upgrades version 1's
//! `{"n", "sum"}` but exports no downgrade, so once it wrote state a
//! rollback to version 1 is refused.

#[path = "../../tally/src/shared.rs"]
mod shared;

use serde::{Deserialize, Serialize};
use shared::{Settings, Tally};
use weir_sdk::{Config, Error, JsonAggregator, Record};

/// Version 3's accumulator.
#[derive(Debug, Serialize, Deserialize)]
pub struct Counted {
    pub count: u64,
    pub total: u64,
    pub v: u32,
}

pub struct TallyV3(Settings);

impl JsonAggregator for TallyV3 {
    type State = Counted;
    const STATE_VERSION: u32 = 3;
    const UPGRADES_FROM: &'static [u32] = &[1];

    fn init(config: Config) -> Result<Self, String> {
        Settings::read(config).map(TallyV3)
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
            v: 3,
        });
        Ok(Some(Counted {
            count: c.count + 1,
            total: c.total + n,
            v: 3,
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
            v: 3,
        }))
    }
}

weir_sdk::export_json_aggregator!(TallyV3);
