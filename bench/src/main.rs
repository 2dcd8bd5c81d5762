//! `weir-bench`: measures what the README and bench/README.md report.
//!
//! * `boundary` — nanoseconds per record for a plugin call at several batch
//!   sizes, for the no-op plugin (pure boundary cost) and the JSON filter,
//!   both for the raw packed call and through the host's step (packing
//!   records, unpacking results).
//! * `codec` — nanoseconds per record for the host's JSON-lines decoding and
//!   encoding and its JSON check, beside serde_json's.
//! * `e2e` — file → filter → map → file through `weir`'s runtime over N
//!   records: wall time, CPU time, records per second and per CPU-second.
//!
//! * `swap` — hot-swapping a step of a pipeline running at full speed: the
//!   time a task spends on the swap, the extra gap in the output, latency
//!   before, during and after (see `swap.rs`).
//! * `store` — a keyed count in the host's RocksDB stores alone: updates
//!   per CPU-second (see `store.rs`).
//!
//! Plugins must be built first (`scripts/build-plugins`).

mod checkpoints;
mod codec;
mod kafka;
mod kafka_state;
mod kafka_windows;
mod stateful;
mod store;
mod swap;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use weir::{
    EngineSettings, Limits, Pipeline, PluginEngine, PluginStep, Record, RunOptions, StepKind,
    StepOutput, Topology,
};
use weir_sdk::runtime::{FilterOp, MapOp};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per-record cost of crossing the Wasm boundary.
    Boundary {
        /// Records processed per measurement.
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        /// Measurements per configuration; the median is reported.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Only this plugin (`noop`, `json_filter` or `enricher`).
        #[arg(long)]
        plugin: Option<String>,
        /// Batch sizes to measure.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64, 256, 1024])]
        batches: Vec<usize>,
    },
    /// Per-record cost of the host's JSON-lines codec and JSON checks.
    Codec {
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        #[arg(long, default_value_t = 25)]
        rounds: usize,
    },
    /// Hot-swapping a step while the pipeline runs at full speed.
    Swap(swap::Swap),
    /// A keyed count in the host's RocksDB stores, without the runtime.
    Store(store::Store),
    /// Kafka: the side-by-side comparison with Kafka Streams and its helpers.
    Kafka {
        #[command(subcommand)]
        command: KafkaCommand,
    },
    /// Keyed state: group-by a field, aggregate, every update to a file.
    Stateful(stateful::Stateful),
    /// Exactly-once checkpoints on the stateful benchmark: their cost at
    /// several intervals, and the time to resume a stopped run.
    Checkpoints(checkpoints::Checkpoints),
    /// End-to-end file → filter → map → file throughput.
    E2e {
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        /// Partition tasks (cores to use).
        #[arg(long, default_value_t = 2)]
        partitions: u32,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// `json`: json-filter then enricher (the real work); `noop`: the
        /// no-op plugin in both steps (the runtime and I/O ceiling).
        #[arg(long, default_value = "json")]
        steps: String,
        /// Records per plugin call.
        #[arg(long, default_value_t = 1024)]
        batch_size: usize,
        /// Take a consistent cut this often, in ms (the embedded
        /// checkpoint); the pause per cut is reported.
        #[arg(long)]
        checkpoint_ms: Option<u64>,
    },
}

#[derive(Subcommand)]
enum KafkaCommand {
    /// Loads the input topic, runs the raw ceiling, weir and Kafka Streams
    /// each alone on it, and prints the table.
    Compare(kafka::Compare),
    /// Keyed state: count and sum per key after a re-key, weir against
    /// Kafka Streams, and (`--restore`) each one's restore from its
    /// changelog.
    Stateful(kafka_state::Stateful),
    /// Windows: a tumbling count and a hopping sum per key with final
    /// results, weir against Kafka Streams, with their state's size.
    Windows(kafka_windows::Windows),
    /// Fills a topic with the benchmark's records.
    Load {
        #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:19092")]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 5_000_000)]
        records: usize,
    },
    /// The raw ceiling: consume and produce with no processing, until SIGTERM.
    Passthrough {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        input: String,
        #[arg(long)]
        output: String,
        #[arg(long)]
        group: String,
    },
    /// The yardstick for the ceiling: a plain consume-then-produce loop with
    /// weir's client settings, until SIGTERM.
    Plain(kafka::Plain),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Kafka { command } => match command {
            KafkaCommand::Compare(options) => kafka::compare(&options),
            KafkaCommand::Stateful(options) => kafka_state::stateful(&options),
            KafkaCommand::Windows(options) => kafka_windows::windows(&options),
            KafkaCommand::Load {
                bootstrap,
                topic,
                records,
            } => kafka::load(&bootstrap, &topic, records),
            KafkaCommand::Passthrough {
                bootstrap,
                input,
                output,
                group,
            } => kafka::passthrough(&bootstrap, &input, &output, &group),
            KafkaCommand::Plain(options) => kafka::plain(&options),
        },
        Command::Boundary {
            records,
            rounds,
            plugin,
            batches,
        } => boundary(records, rounds, plugin.as_deref(), &batches),
        Command::Codec { records, rounds } => codec::codec(records, rounds),
        Command::Swap(options) => swap::swap(&options),
        Command::Stateful(options) => stateful::stateful(&options),
        Command::Checkpoints(options) => checkpoints::checkpoints(&options),
        Command::Store(options) => store::store(&options),
        Command::E2e {
            records,
            partitions,
            rounds,
            steps,
            batch_size,
            checkpoint_ms,
        } => e2e(
            records,
            partitions,
            rounds,
            &steps,
            batch_size,
            checkpoint_ms.map(Duration::from_millis),
        ),
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn plugin_path(name: &str) -> Result<PathBuf> {
    let p = repo()
        .join("plugins/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    if !p.is_file() {
        bail!("{} not found: run scripts/build-plugins first", p.display());
    }
    Ok(p)
}

/// A ~100-byte JSON object value; `amount` spreads over 0..1000.
fn value(i: usize) -> String {
    let v = format!(
        r#"{{"id":{i},"customer":"c-{:05}","amount":{},"country":"DE","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#,
        i % 50_000,
        (i * 7919) % 1000
    );
    v
}

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: Some(Bytes::from(format!("c-{:05}", i % 50_000))),
            value: Some(Bytes::from(value(i))),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: Vec::new(),
            value_is_json: true,
            old_value: None,
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn boundary(total: usize, rounds: usize, only: Option<&str>, batches: &[usize]) -> Result<()> {
    let engine = PluginEngine::new(&EngineSettings {
        cache_dir: None,
        ..EngineSettings::default()
    })
    .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let avg_value = (0..1000).map(|i| value(i).len()).sum::<usize>() / 1000;
    println!(
        "value size: {avg_value} bytes on average; {total} records per measurement, median of {rounds}"
    );
    println!();
    println!(
        "| plugin | batch | native ns/record | packed Wasm call ns/record | through host step ns/record |"
    );
    println!("|---|---:|---:|---:|---:|");
    let cases = [
        ("noop", "null", StepKind::Filter),
        (
            "json_filter",
            r#"{"field":"amount","op":"gt","value":500}"#,
            StepKind::Filter,
        ),
        ("enricher", r#"{"set":{"checked":true}}"#, StepKind::Map),
    ];
    for (name, config, kind) in cases {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let plugin = Arc::new(engine.load(&plugin_path(name)?, None)?);
        for &batch in batches {
            let recs = records(batch);
            // Packed call alone.
            let mut instance = plugin
                .instantiate(
                    weir::LogGate::new("bench".into(), &Limits::default()),
                    config,
                    &Limits::default(),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut packed = Vec::new();
            weir_packed::put_u32(&mut packed, batch as u32);
            for r in &recs {
                weir_packed::put_record(
                    &mut packed,
                    r.timestamp,
                    r.key.as_deref(),
                    r.value.as_deref(),
                    std::iter::empty(),
                );
            }
            let calls = (total / batch).max(1);
            // The same plugin code compiled natively, same packed batch.
            let native = match name {
                "noop" => native_ns::<FilterOp<noop::Noop>>(config, &packed, calls, batch, rounds)?,
                "json_filter" => native_ns::<FilterOp<json_filter::JsonFilter>>(
                    config, &packed, calls, batch, rounds,
                )?,
                _ => native_ns::<MapOp<enricher::Enricher>>(config, &packed, calls, batch, rounds)?,
            };
            let mut raw = Vec::new();
            for _ in 0..rounds {
                let t = Instant::now();
                for _ in 0..calls {
                    std::hint::black_box(
                        instance
                            .process(&packed)
                            .map_err(|e| anyhow::anyhow!("{e}"))?,
                    );
                }
                raw.push(t.elapsed().as_nanos() as f64 / (calls * batch) as f64);
            }
            // Through the host's step: records in, emitted records out.
            let mut step = PluginStep::start(
                weir::LogGate::new("bench".into(), &Limits::default()),
                kind,
                plugin.clone(),
                config.into(),
                Limits::default(),
            )?;
            let mut out = StepOutput::default();
            let mut hosted = Vec::new();
            for _ in 0..rounds {
                let t = Instant::now();
                for _ in 0..calls {
                    step.process(&recs, &mut out)?;
                    std::hint::black_box(&out);
                }
                hosted.push(t.elapsed().as_nanos() as f64 / (calls * batch) as f64);
            }
            println!(
                "| {name} | {batch} | {:.1} | {:.1} | {:.1} |",
                median(native),
                median(raw),
                median(hosted)
            );
        }
    }
    Ok(())
}

/// ns per record of the plugin's own code compiled natively, same packed batch.
fn native_ns<O: weir_sdk::runtime::Operator>(
    config: &str,
    packed: &[u8],
    calls: usize,
    batch: usize,
    rounds: usize,
) -> Result<Vec<f64>> {
    weir_sdk::runtime::init::<O>(config.into()).map_err(anyhow::Error::msg)?;
    let mut native = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(weir_sdk::runtime::process::<O>(packed));
        }
        native.push(t.elapsed().as_nanos() as f64 / (calls * batch) as f64);
    }
    Ok(native)
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn e2e(
    n: usize,
    partitions: u32,
    rounds: usize,
    steps: &str,
    batch_size: usize,
    checkpoint: Option<Duration>,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.jsonl");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input)?);
        for i in 0..n {
            writeln!(
                w,
                r#"{{"key":"c-{:05}","value":{},"timestamp":{}}}"#,
                i % 50_000,
                value(i),
                1_700_000_000_000u64 + i as u64
            )?;
        }
    }
    let size = std::fs::metadata(&input)?.len();
    let pipeline = format!(
        "
partitions: {partitions}
batch-size: {batch_size}
error-policy: fail
sources:
  in: {{ kind: file, path: {input} }}
plugins:
  filter: {{ path: {filter} }}
  enrich: {{ path: {enrich} }}
steps:
{steps}
sinks:
  out: {{ kind: file, path: {output} }}
",
        input = input.display(),
        output = dir.path().join("out.jsonl").display(),
        filter = plugin_path(if steps == "noop" {
            "noop"
        } else {
            "json_filter"
        })?
        .display(),
        enrich = plugin_path(if steps == "noop" { "noop" } else { "enricher" })?.display(),
        steps = if steps == "noop" {
            "  - { name: keep, kind: filter, plugin: filter }\n  - { name: tag, kind: filter, plugin: enrich }"
        } else {
            "  - { name: keep, kind: filter, plugin: filter, config: { field: amount, op: gte, value: 100 } }\n  - { name: tag, kind: map, plugin: enrich, config: { set: { checked: true } } }"
        },
    );
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(&file, &pipeline)?;
    println!(
        "steps: {steps}; {n} records ({:.1} MB, {:.0} bytes per line), batch {batch_size}, {partitions} partitions, {} cores, median of {rounds}",
        size as f64 / 1e6,
        size as f64 / n as f64,
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut out_count = 0;
    for _ in 0..rounds {
        // Truncating the last round's output would free its pages inside
        // the measured run.
        let _ = std::fs::remove_file(dir.path().join("out.jsonl"));
        let spec = Pipeline::load(&file).map_err(anyhow::Error::msg)?;
        let topo = Topology::build(spec, None).map_err(anyhow::Error::msg)?;
        let cpu0 = cpu_time();
        let t = Instant::now();
        let options = RunOptions {
            checkpoint_interval: checkpoint,
            ..RunOptions::default()
        };
        let report = weir::run(&topo, options).context("run")?;
        if report.checkpoints > 0 {
            println!(
                "{} checkpoints, sources paused {:.2} ms each on average",
                report.checkpoints,
                report.checkpoint_pause.as_secs_f64() * 1e3 / report.checkpoints as f64
            );
        }
        walls.push(t.elapsed().as_secs_f64());
        cpus.push((cpu_time() - cpu0).as_secs_f64());
        out_count = report.counts.records_out;
        if report.counts.records_in != n as u64 {
            bail!("read {} of {n}", report.counts.records_in);
        }
    }
    // The median is the typical run; the best CPU time is the steadiest
    // figure on a shared virtual machine, where interference only adds.
    let best_cpu = cpus.iter().copied().fold(f64::INFINITY, f64::min);
    let each: Vec<String> = cpus
        .iter()
        .map(|c| format!("{:.0}k", n as f64 / c / 1e3))
        .collect();
    println!("records per CPU-second, round by round: {}", each.join(" "));
    let wall = median(walls);
    let cpu = median(cpus);
    println!();
    println!(
        "| records | out | wall s | CPU s | records/s | records per CPU-second | best CPU s | best records per CPU-second |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {n} | {out_count} | {wall:.2} | {cpu:.2} | {:.0} | {:.0} | {best_cpu:.2} | {:.0} |",
        n as f64 / wall,
        n as f64 / cpu,
        n as f64 / best_cpu
    );
    Ok(())
}
