//! Forwards every record unchanged: the baseline for measuring what the Wasm
//! boundary itself costs.

use weir_sdk::{Config, Error, Filter, Record};

pub struct Noop;

impl Filter for Noop {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Noop)
    }

    fn keep(&mut self, _record: &Record<'_>) -> Result<bool, Error> {
        Ok(true)
    }
}

weir_sdk::export_filter!(Noop);
