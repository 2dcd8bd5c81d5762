//! A test aggregator that counts and sums, and misbehaves on purpose so
//! tests can check the host's sandbox around aggregators. Values are text;
//! a number is added to the sum, and these words set something off:
//! `panic` (a trap), `loop` (spins past the time limit), `alloc` (a memory
//! bomb), `poison` (a poison result), `fail` (always FAILED), `flaky`
//! (FAILED unless it is the first record this instance sees, so a retry on
//! a fresh instance succeeds), `remove` (removes the accumulator). The
//! accumulator is `{"count": n, "sum": s}` as JSON text.
//! It declares `merge` (the tallies added up, for session windows), and
//! no `subtract`.

use serde::{Deserialize, Serialize};
use weir_sdk::{Capability, Config, Error, JsonAggregator, Record};

#[derive(Serialize, Deserialize, Default)]
pub struct Tally {
    count: u64,
    sum: i64,
}

pub struct Misbehave {
    seen: u64,
}

impl JsonAggregator for Misbehave {
    type State = Tally;
    const CAPABILITIES: &'static [Capability] = &[Capability::Merge];

    fn init(_config: Config) -> Result<Self, String> {
        Ok(Misbehave { seen: 0 })
    }

    fn add(
        &mut self,
        _key: &[u8],
        state: Option<Tally>,
        record: &Record<'_>,
    ) -> Result<Option<Tally>, Error> {
        let seen = self.seen;
        self.seen += 1;
        let value = record.value_str()?;
        let n = match value {
            "panic" => panic!("agg-misbehave: panic on purpose"),
            "loop" => loop {
                std::hint::black_box(seen);
            },
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "poison" => return Err(Error::poison("poison on purpose")),
            "fail" => return Err(Error::failed("failed on purpose")),
            "flaky" if seen > 0 => return Err(Error::failed("flaky: not a fresh instance")),
            "flaky" => 0,
            "remove" => return Ok(None),
            other => other
                .parse::<i64>()
                .map_err(|_| Error::poison(format!("not a number: {other:?}")))?,
        };
        let mut t = state.unwrap_or_default();
        t.count += 1;
        t.sum += n;
        Ok(Some(t))
    }

    fn merge(&mut self, _key: &[u8], left: Tally, right: Tally) -> Result<Option<Tally>, Error> {
        Ok(Some(Tally {
            count: left.count + right.count,
            sum: left.sum + right.sum,
        }))
    }
}

weir_sdk::export_json_aggregator!(Misbehave);
