//! Counts and sums the field `n` of each key's records: an aggregator at
//! state version 1, whose accumulator is `{"n": COUNT, "sum": SUM}`; it
//! merges two tallies (session windows that grow together).
//! `tally-v2` and `tally-v3` are later versions of it that store their
//! state in another shape: what stateful hot swaps migrate.
//!
//! Config (optional): `{"poison-every": K}` makes every record whose `n`
//! is a multiple of K poison (to put a swap's rollback trial to work).

pub mod shared;

pub use shared::{Settings, Tally};
use weir_sdk::{Capability, Config, Error, JsonAggregator, Record};

pub struct TallyV1(Settings);

impl JsonAggregator for TallyV1 {
    type State = Tally;
    /// Session windows that grow together add up their tallies.
    const CAPABILITIES: &'static [Capability] = &[Capability::Merge];

    fn init(config: Config) -> Result<Self, String> {
        Settings::read(config).map(TallyV1)
    }

    fn add(
        &mut self,
        _key: &[u8],
        state: Option<Tally>,
        record: &Record<'_>,
    ) -> Result<Option<Tally>, Error> {
        let n = self.0.input(record)?;
        let t = state.unwrap_or(Tally { n: 0, sum: 0 });
        Ok(Some(Tally {
            n: t.n + 1,
            sum: t.sum + n,
        }))
    }

    fn merge(&mut self, _key: &[u8], left: Tally, right: Tally) -> Result<Option<Tally>, Error> {
        Ok(Some(Tally {
            n: left.n + right.n,
            sum: left.sum + right.sum,
        }))
    }
}

weir_sdk::export_json_aggregator!(TallyV1);
