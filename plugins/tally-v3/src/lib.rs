//! Version 3 of the tally plugin (see `tally`): its accumulator is
//! `{"count": COUNT, "total": SUM, "v": 3}`. It upgrades version 1's
//! `{"n", "sum"}` but exports no downgrade, so once it wrote state a
//! rollback to version 1 is refused. It merges two accumulators (session
//! windows), as versions 1 and 2 do.

#[path = "../../tally/src/shared.rs"]
mod shared;

use shared::{Counted, Settings};
use weir_sdk::{Capability, Config, Error, JsonAggregator, Record};

pub struct TallyV3(Settings);

impl JsonAggregator for TallyV3 {
    type State = Counted;
    const STATE_VERSION: u32 = 3;
    const UPGRADES_FROM: &'static [u32] = &[1];
    const CAPABILITIES: &'static [Capability] = &[Capability::Merge];

    fn init(config: Config) -> Result<Self, String> {
        Settings::read(config).map(TallyV3)
    }

    fn add(
        &mut self,
        _key: &[u8],
        state: Option<Counted>,
        record: &Record<'_>,
    ) -> Result<Option<Counted>, Error> {
        Ok(Some(Counted::add(state, self.0.input(record)?, 3)))
    }

    fn merge(
        &mut self,
        _key: &[u8],
        left: Counted,
        right: Counted,
    ) -> Result<Option<Counted>, Error> {
        Ok(Some(Counted::merge(left, right, 3)))
    }

    fn upgrade(
        &mut self,
        _from: u32,
        _key: &[u8],
        old: serde_json::Value,
    ) -> Result<Option<Counted>, Error> {
        Counted::upgrade(old, 3).map(Some)
    }
}

weir_sdk::export_json_aggregator!(TallyV3);
