//! A component of the current contract that declares no step kind: `kinds`
//! returns an empty list, which the contract forbids (`wit/README.md`). The
//! host must refuse it when it loads it, before any step is started. Its
//! `init` and `process` are correct (a pass-through), so nothing else could
//! be the reason.

wit_bindgen::generate!({
    world: "transformer",
    path: "../../wit",
});

use exports::weir::plugin::transform::{Guest, StepKind};

struct NoKinds;

impl Guest for NoKinds {
    fn kinds() -> Vec<StepKind> {
        Vec::new()
    }

    fn init(_config: String) -> Result<Vec<String>, String> {
        Ok(vec!["out".to_string()])
    }

    fn process(batch: Vec<u8>) -> Vec<u8> {
        // `count:u32` then one FORWARD (tag 1, port 0) per record.
        let count = batch.get(..4).map_or([0; 4], |b| [b[0], b[1], b[2], b[3]]);
        let n = u32::from_le_bytes(count) as usize;
        let mut out = Vec::with_capacity(4 + 5 * n);
        out.extend_from_slice(&count);
        for _ in 0..n {
            out.extend_from_slice(&[1, 0, 0, 0, 0]);
        }
        out
    }
}

export!(NoKinds);
