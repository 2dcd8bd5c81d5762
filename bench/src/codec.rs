//! `weir-bench codec`: what the host pays per record to read and write the
//! JSON-lines form and to check `json` values, with serde_json's skipping
//! beside weir's checker for comparison.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use weir::Format;
use weir::bench::{json_syntax, jsonl};

use crate::records;

/// Nanoseconds per item of `f` over `items`, the fastest of `rounds`: on a
/// shared virtual machine interference only ever adds time, so the minimum
/// is the steadiest figure for comparing two pieces of code.
fn ns_per<T>(items: &[T], rounds: usize, mut f: impl FnMut(&T)) -> f64 {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for item in items {
                f(item);
            }
            t.elapsed().as_nanos() as f64 / items.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

pub fn codec(n: usize, rounds: usize) -> anyhow::Result<()> {
    // As a plugin's new values arrive at a sink: not known to be JSON.
    let records: Vec<_> = records(n)
        .into_iter()
        .map(|mut r| {
            r.value_is_json = false;
            r
        })
        .collect();
    let values: Vec<Bytes> = records.iter().filter_map(|r| r.value.clone()).collect();
    let mut lines = Vec::new();
    for r in &records {
        jsonl::encode(r, Format::String, Format::Json, &mut lines)?;
    }
    let chunk = Bytes::from(lines);
    let spans: Vec<&[u8]> = chunk
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = Vec::with_capacity(chunk.len() + 1024);

    println!(
        "{n} records, values {} bytes, lines {} bytes, fastest of {rounds}\n",
        values[0].len(),
        spans[0].len()
    );
    println!("| work | ns per record |\n|---|---:|");
    let rows = [
        (
            "check a value: serde_json IgnoredAny + str::from_utf8",
            ns_per(&values, rounds, |v| {
                black_box(std::str::from_utf8(v).is_ok());
                black_box(serde_json::from_slice::<serde::de::IgnoredAny>(v).is_ok());
            }),
        ),
        (
            "check a value: weir's json_syntax::check",
            ns_per(&values, rounds, |v| {
                black_box(json_syntax::check(v).is_ok());
            }),
        ),
        (
            "decode a JSON line into a record (jsonl::decode)",
            ns_per(&spans, rounds, |line| {
                black_box(jsonl::decode(&chunk, line, Format::String, Format::Json, 0).is_ok());
            }),
        ),
        (
            "encode a record as a JSON line, value checked (jsonl::encode)",
            ns_per(&records, rounds, |r| {
                if out.len() > 1 << 20 {
                    out.clear();
                }
                black_box(jsonl::encode(r, Format::String, Format::Json, &mut out).is_ok());
            }),
        ),
    ];
    for (work, ns) in rows {
        println!("| {work} | {ns:.1} |");
    }
    Ok(())
}
