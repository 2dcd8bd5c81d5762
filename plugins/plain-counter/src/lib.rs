//! Counts each key's records: an aggregator of world `aggregator` alone,
//! bound with `wit-bindgen` (no SDK), as a component built before the
//! `accumulator-versions` interface existed. Its accumulator is the count
//! as JSON text (`3`). The host runs it at state version 1, so a swap to
//! `tally-v2`'s kind of code (upgrading from 1) keeps its state.

wit_bindgen::generate!({
    world: "aggregator",
    path: "../../wit",
});

use exports::weir::plugin::aggregate::{Capability, Guest};
use weir_packed::{Reader, put_accumulator, put_error, put_u32};

struct PlainCounter;

impl Guest for PlainCounter {
    fn capabilities() -> Vec<Capability> {
        Vec::new()
    }

    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn add(groups: Vec<u8>) -> Vec<u8> {
        each_record(&groups, |accumulator, out| {
            let Some(n) = accumulator.map_or(Some(0), |acc| {
                std::str::from_utf8(acc)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
            }) else {
                put_error(out, false, "the stored count is not a number");
                return None;
            };
            let n = n + 1;
            put_accumulator(out, Some(n.to_string().as_bytes()));
            Some(n.to_string().into_bytes())
        })
    }

    fn subtract(groups: Vec<u8>) -> Vec<u8> {
        failed_all(&groups)
    }

    fn merge(pairs: Vec<u8>) -> Vec<u8> {
        let mut reader = Reader::new(&pairs);
        let count = reader.u32("pair count").expect("a batch");
        let mut out = Vec::new();
        put_u32(&mut out, count);
        for _ in 0..count {
            put_error(&mut out, false, "merge is not implemented");
        }
        out
    }
}

/// `FAILED` for every record of a batch of groups.
fn failed_all(groups: &[u8]) -> Vec<u8> {
    each_record(groups, |_, out| {
        put_error(out, false, "not implemented");
        None
    })
}

/// One result per record of a batch of groups, in order: `result` writes
/// it from the key's accumulator so far and returns the accumulator
/// after it (`None`: the record failed, the accumulator stays).
fn each_record(
    groups: &[u8],
    mut result: impl FnMut(Option<&[u8]>, &mut Vec<u8>) -> Option<Vec<u8>>,
) -> Vec<u8> {
    let mut reader = Reader::new(groups);
    let count = reader.u32("group count").expect("a batch");
    let mut out = Vec::new();
    put_u32(&mut out, 0);
    let mut results = 0u32;
    for _ in 0..count {
        let group = reader.group().expect("a group");
        let mut accumulator = group.accumulator.map(<[u8]>::to_vec);
        for _ in group.records.iter() {
            results += 1;
            if let Some(next) = result(accumulator.as_deref(), &mut out) {
                accumulator = Some(next);
            }
        }
    }
    out[..4].copy_from_slice(&results.to_le_bytes());
    out
}

// The export names (`weir:plugin/aggregate@0.2.0#add`) are not valid
// linker symbols natively; the component is built for wasm32 only.
#[cfg(target_arch = "wasm32")]
export!(PlainCounter);
