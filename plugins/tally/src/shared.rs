//! What every version of the tally plugin shares: its input, its config,
//! and version 1's accumulator (which later versions upgrade from).
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
