//! Keyed state on the embedded default: `group-by` a JSON field, then a
//! built-in aggregation, every update written to a file sink (issue 13's
//! target: at least 1M records per CPU-second for a count by a field with
//! 100k keys, state in the run's stores).
//!
//! ```sh
//! cargo run --release -p weir-bench -- stateful --records 5000000 --keys 100000
//! ```

use std::time::Instant;

use anyhow::{Context, Result, bail};
use weir::{Pipeline, RunOptions, Topology};

use super::{cpu_time, median};

#[derive(clap::Args)]
pub struct Stateful {
    #[arg(long, default_value_t = 2_000_000)]
    records: usize,
    /// Distinct group-by keys.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    #[arg(long, default_value_t = 2)]
    partitions: u32,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// `count`, or `count-sum` (count and sum of a field in one step).
    #[arg(long, default_value = "count")]
    aggregation: String,
}

/// Writes `records` JSON events over `keys` categories to `input`: a
/// cheap deterministic spread of keys (an LCG), so every run reads the
/// same input.
pub fn write_events(input: &std::path::Path, records: usize, keys: usize) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(input)?);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..records {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = (x >> 33) as usize % keys;
        writeln!(
            w,
            r#"{{"user":"u{}","category":"c{key}","amount":{},"ts":{}}}"#,
            i % 1000,
            (x >> 20) % 500 + 1,
            1_700_000_000_000u64 + i as u64
        )?;
    }
    w.flush()?;
    Ok(())
}

pub fn stateful(o: &Stateful) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("events.jsonl");
    write_events(&input, o.records, o.keys)?;
    let size = std::fs::metadata(&input)?.len();
    let aggregations = match o.aggregation.as_str() {
        "count" => "{ n: count }",
        "count-sum" => "{ n: count, total: { sum: amount } }",
        other => bail!("--aggregation {other}: count | count-sum"),
    };
    let pipeline = format!(
        "
partitions: {partitions}
sources:
  events: {{ kind: file, path: {input}, format: json, timestamp: {{ field: ts, unit: ms }} }}
steps:
  - {{ name: by-category, kind: group-by, key: {{ field: category }} }}
  - {{ name: stats, kind: aggregate, id: stats, aggregations: {aggregations} }}
sinks:
  out: {{ kind: file, path: {output} }}
",
        partitions = o.partitions,
        input = input.display(),
        output = dir.path().join("out.jsonl").display(),
    );
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(&file, &pipeline)?;
    println!(
        "group-by field then {}: {} records ({:.1} MB), {} keys, {} partitions, {} cores, median of {}",
        o.aggregation,
        o.records,
        size as f64 / 1e6,
        o.keys,
        o.partitions,
        std::thread::available_parallelism().map_or(1, |p| p.get()),
        o.rounds
    );
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        let _ = std::fs::remove_file(dir.path().join("out.jsonl"));
        let spec = Pipeline::load(&file).map_err(anyhow::Error::msg)?;
        let topo = Topology::build(spec, None).map_err(anyhow::Error::msg)?;
        let cpu0 = cpu_time();
        let t = Instant::now();
        let report = weir::run(&topo, RunOptions::default()).context("run")?;
        walls.push(t.elapsed().as_secs_f64());
        cpus.push((cpu_time() - cpu0).as_secs_f64());
        if report.counts.records_out != o.records as u64 {
            bail!(
                "{} updates out of {} records",
                report.counts.records_out,
                o.records
            );
        }
    }
    let each: Vec<String> = cpus
        .iter()
        .map(|c| format!("{:.0}k", o.records as f64 / c / 1e3))
        .collect();
    println!("records per CPU-second, round by round: {}", each.join(" "));
    let best = cpus.iter().copied().fold(f64::INFINITY, f64::min);
    let (wall, cpu) = (median(walls), median(cpus));
    println!("| records | keys | wall s | CPU s | records per CPU-second | best |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {wall:.2} | {cpu:.2} | {:.0} | {:.0} |",
        o.records,
        o.keys,
        o.records as f64 / cpu,
        o.records as f64 / best
    );
    Ok(())
}
