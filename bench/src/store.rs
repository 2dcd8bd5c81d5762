//! `weir-bench store`: what a keyed count costs in the host's RocksDB
//! stores alone (no runtime, no I/O): for each update, `get` the key's
//! count, add one, `put` it back; a `flush` (what a commit does) every
//! `--commit-every` updates. Keys are drawn uniformly from `--keys` with a
//! fixed-seed xorshift. Reports updates per second of wall time and per
//! CPU-second (the whole process: RocksDB's background flushes and
//! compactions count), and checks that the counts add up.

use std::time::Instant;

use anyhow::{Result, ensure};
use bytes::Bytes;
use weir::{RocksDbStores, StateMode, StateSettings, StoreProvider, StoreSpec, TaskId};

use crate::cpu_time;

#[derive(clap::Args)]
pub struct Store {
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Updates (read, add one, write: one `update`) per round.
    #[arg(long, default_value_t = 5_000_000)]
    updates: usize,
    /// Updates between two flushes (a commit's worth).
    #[arg(long, default_value_t = 100_000)]
    commit_every: usize,
    /// The write cache, bytes (the pipeline file's `state.cache`).
    #[arg(long, default_value_t = 64 << 20)]
    cache: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

pub fn store(options: &Store) -> Result<()> {
    let keys: Vec<Bytes> = (0..options.keys)
        .map(|i| Bytes::from(format!("user-{i:07}")))
        .collect();
    let settings = StateSettings {
        cache_bytes: options.cache,
        ..StateSettings::default()
    };
    println!(
        "{} updates over {} keys, a flush every {}, cache {} bytes, block cache {}, write buffer {}",
        options.updates,
        options.keys,
        options.commit_every,
        settings.cache_bytes,
        settings.block_cache_bytes,
        settings.write_buffer_bytes
    );
    println!(
        "| round | wall s | CPU s | updates/s | updates per CPU-second |\n|---|---:|---:|---:|---:|"
    );
    // The floor on this machine: the same loop on a bare std HashMap.
    {
        let mut map: std::collections::HashMap<Bytes, Bytes> = Default::default();
        let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
        let (wall, cpu) = (Instant::now(), cpu_time());
        for _ in 0..options.updates {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = &keys[(rng % keys.len() as u64) as usize];
            let count = map
                .get(key)
                .map_or(0, |v| u64::from_le_bytes(v[..].try_into().unwrap()));
            map.insert(
                key.clone(),
                Bytes::copy_from_slice(&(count + 1).to_le_bytes()),
            );
        }
        let (wall, cpu) = (
            wall.elapsed().as_secs_f64(),
            (cpu_time() - cpu).as_secs_f64(),
        );
        let n = options.updates as f64;
        println!(
            "| std HashMap, no store | {wall:.2} | {cpu:.2} | {:.0} | {:.0} |",
            n / wall,
            n / cpu
        );
    }
    for round in 1..=options.rounds {
        let dir = tempfile::tempdir()?;
        let provider = RocksDbStores::new(
            dir.path().to_path_buf(),
            "bench",
            &settings,
            StateMode::Fresh,
        );
        let task = TaskId {
            subtopology: 0,
            partition: 0,
        };
        let spec = StoreSpec::key_value("counts", "");
        let mut store = provider.open(task, &spec)?;
        let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
        let (wall, cpu) = (Instant::now(), cpu_time());
        for i in 0..options.updates {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = &keys[(rng % keys.len() as u64) as usize];
            // Read and write in one step, as the aggregate step does.
            store.update(key, &mut |old, new| {
                let count = old.map_or(0, |v| u64::from_le_bytes(v.try_into().expect("8 bytes")));
                new.extend_from_slice(&(count + 1).to_le_bytes());
                true
            })?;
            if (i + 1) % options.commit_every == 0 {
                store.flush()?;
            }
        }
        store.flush()?;
        let (wall, cpu) = (
            wall.elapsed().as_secs_f64(),
            (cpu_time() - cpu).as_secs_f64(),
        );
        let total: u64 = store
            .entries()?
            .iter()
            .map(|(_, v)| u64::from_le_bytes(v[..].try_into().unwrap()))
            .sum();
        ensure!(total == options.updates as u64, "counts add up to {total}");
        let n = options.updates as f64;
        println!(
            "| {round} | {wall:.2} | {cpu:.2} | {:.0} | {:.0} |",
            n / wall,
            n / cpu
        );
    }
    Ok(())
}
