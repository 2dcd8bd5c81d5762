//! What every version of the tally plugin shares: its input, its config,
//! version 1's accumulator (which later versions upgrade from) and the
//! accumulator of versions 2 and 3.
//! Included by `tally`, `tally-v2` and `tally-v3` (`#[path]`), one file
//! rather than a crate of its own.

use serde::{Deserialize, Serialize};
use weir_sdk::{Config, Error, Record};

/// Version 1's accumulator.
#[derive(Debug, Serialize, Deserialize)]
pub struct Tally {
    pub n: u64,
    pub sum: u64,
}

/// The records this plugin reads: `{"n": N}`.
#[derive(Deserialize)]
pub struct Input {
    pub n: u64,
}

/// `{"poison-every": K}`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    #[serde(default)]
    pub poison_every: Option<u64>,
}

impl Settings {
    pub fn read(config: Config) -> Result<Self, String> {
        if config.is_null() {
            return Ok(Settings::default());
        }
        let s: Settings = config.parse()?;
        if s.poison_every == Some(0) {
            return Err("poison-every must be 1 or more".into());
        }
        Ok(s)
    }

    /// The record's `n`, or poison when the config says so.
    pub fn input(&self, record: &Record<'_>) -> Result<u64, Error> {
        let input: Input = record.value_json()?;
        if self.poison_every.is_some_and(|k| input.n.is_multiple_of(k)) {
            return Err(Error::poison(format!("{} is refused by config", input.n)));
        }
        Ok(input.n)
    }
}

/// The accumulator of versions 2 and 3: `{"count", "total", "v"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Counted {
    pub count: u64,
    pub total: u64,
    pub v: u32,
}

impl Counted {
    /// `state` after one more `n`, at state version `v`.
    pub fn add(state: Option<Counted>, n: u64, v: u32) -> Counted {
        let (count, total) = state.map_or((0, 0), |c| (c.count, c.total));
        Counted {
            count: count + 1,
            total: total + n,
            v,
        }
    }

    /// Two accumulators of one key as one (session windows that grow
    /// together), at state version `v`.
    pub fn merge(left: Counted, right: Counted, v: u32) -> Counted {
        Counted {
            count: left.count + right.count,
            total: left.total + right.total,
            v,
        }
    }

    /// Version 1's accumulator as version `v`'s.
    pub fn upgrade(old: serde_json::Value, v: u32) -> Result<Counted, Error> {
        let old: Tally = serde_json::from_value(old)
            .map_err(|e| Error::poison(format!("not a version 1 tally: {e}")))?;
        Ok(Counted {
            count: old.n,
            total: old.sum,
            v,
        })
    }
}
