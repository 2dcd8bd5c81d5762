//! A pass-through operator built against weir's plugin contract 0.1.0 (the
//! frozen `wit/weir.wit` next to this crate), without the SDK: the shape of
//! every plugin built before the contract asked for step kinds. It works as
//! that contract says (forwards every record on port 0); the host must still
//! refuse it, because it cannot say which step kinds it implements.

wit_bindgen::generate!({
    world: "transformer",
    path: "wit",
});

use exports::weir::plugin::transform::Guest;

struct OldContract;

impl Guest for OldContract {
    fn init(_config: String) -> Result<Vec<String>, String> {
        // Uses the host import too, as SDK-built plugins do: the component
        // then imports `weir:plugin/host@0.1.0`, which this host no longer
        // provides, and must still be told how to rebuild.
        weir::plugin::host::log(weir::plugin::host::LogLevel::Info, "old contract");
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

export!(OldContract);
