//! Writes the plugin's lookup table: `TABLE_BYTES` pseudo-random bytes from
//! a fixed seed, so every build carries the same table and the same digest.

use std::io::Write;

/// 8 MiB: with the code, a component of about 8.6 MB.
const TABLE_BYTES: usize = 8 << 20;

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let mut table = Vec::with_capacity(TABLE_BYTES);
    // xorshift64*: random enough that no compressor or optimiser folds it.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while table.len() < TABLE_BYTES {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        table.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    std::fs::File::create(out.join("table.bin"))
        .and_then(|mut f| f.write_all(&table))
        .expect("write the table");
    println!("cargo::rerun-if-changed=build.rs");
}
