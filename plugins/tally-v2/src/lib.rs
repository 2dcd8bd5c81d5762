//! Version 2 of the tally plugin (see `tally`): its accumulator is
//! `{"count": COUNT, "total": SUM, "v": 2}`. It upgrades version 1's
//! `{"n", "sum"}` and downgrades its own back to it, so a swap to it keeps
//! the step's state and can be rolled back after it wrote state. It merges
//! two accumulators (session windows), as version 1 does.

#[path = "../../tally/src/shared.rs"]
mod shared;

use shared::{Counted, Settings, Tally};
use weir_sdk::{Capability, Config, Error, JsonAggregator, Record};

pub struct TallyV2(Settings);

impl JsonAggregator for TallyV2 {
    type State = Counted;
    const STATE_VERSION: u32 = 2;
    const UPGRADES_FROM: &'static [u32] = &[1];
    const DOWNGRADES_TO: &'static [u32] = &[1];
    const CAPABILITIES: &'static [Capability] = &[Capability::Merge];

    fn init(config: Config) -> Result<Self, String> {
        Settings::read(config).map(TallyV2)
    }

    fn add(
        &mut self,
        _key: &[u8],
        state: Option<Counted>,
        record: &Record<'_>,
    ) -> Result<Option<Counted>, Error> {
        Ok(Some(Counted::add(state, self.0.input(record)?, 2)))
    }

    fn merge(
        &mut self,
        _key: &[u8],
        left: Counted,
        right: Counted,
    ) -> Result<Option<Counted>, Error> {
        Ok(Some(Counted::merge(left, right, 2)))
    }

    fn upgrade(
        &mut self,
        _from: u32,
        _key: &[u8],
        old: serde_json::Value,
    ) -> Result<Option<Counted>, Error> {
        Counted::upgrade(old, 2).map(Some)
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
