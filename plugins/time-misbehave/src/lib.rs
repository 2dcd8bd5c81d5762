//! A test timestamp extractor that misbehaves on purpose, so tests can
//! check that the host survives a broken extractor as it does a broken
//! step. A record's time is its value's `t` field; a record whose value
//! contains `trigger` sets off `mode`:
//!
//! ```yaml
//! config: { mode: panic, trigger: boom }   # or loop, fail, negative
//! ```
//! `panic` traps, `loop` spins past the time limit, `fail` reports the
//! operator failed (retried once on a fresh instance, then the record
//! fails), `negative` returns a negative time (invalid, as in Kafka
//! Streams).

use serde::Deserialize;
use weir_sdk::{Config, Error, Record, TimestampExtractor};

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    Panic,
    Loop,
    Fail,
    Negative,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    mode: Mode,
    trigger: String,
}

pub struct TimeMisbehave {
    mode: Mode,
    trigger: String,
}

impl TimestampExtractor for TimeMisbehave {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        Ok(TimeMisbehave {
            mode: s.mode,
            trigger: s.trigger,
        })
    }

    fn extract(&mut self, record: &Record<'_>) -> Result<i64, Error> {
        let value = record.value_str()?;
        if value.contains(&self.trigger) {
            match self.mode {
                Mode::Panic => panic!("time-misbehave: panic on {value}"),
                Mode::Loop => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                Mode::Fail => return Err(Error::failed("time-misbehave: failed")),
                Mode::Negative => return Ok(-1),
            }
        }
        let v: serde_json::Value = record.value_json()?;
        v["t"]
            .as_i64()
            .ok_or_else(|| Error::poison("no `t` in the value"))
    }
}

weir_sdk::export_timestamp_extractor!(TimeMisbehave);
