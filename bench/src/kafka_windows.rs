//! Windows on Kafka, weir against Kafka Streams (issue 16, item 10): a
//! 1-minute tumbling count per key and a 10-minute hopping sum advancing by
//! 1 minute, both with 5 s of grace and both emitting each window's result
//! once, when it closes (Kafka Streams' `suppress(untilWindowCloses)`,
//! weir's `emit: final`), over one preloaded input topic keyed by user,
//! time-ordered with some disorder; each contestant alone on it, measured
//! from outside as `kafka compare` measures (see `kafka.rs`), with its
//! state directory's size sampled through the run.
//!
//! The input ends with one record per partition an hour after the rest:
//! it closes every window of the other records in every task, so both
//! contestants write the same, known number of results.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::kafka::{self, Loaded, Measured, PARTITIONS, Run};

/// `weir-bench kafka windows`'s options.
#[derive(clap::Args)]
pub struct Windows {
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:19092")]
    pub bootstrap: String,
    #[arg(long, default_value_t = 5_000_000)]
    pub records: usize,
    /// Distinct users (keys).
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// The event time the records span, in minutes (20: 250k records a
    /// minute, 2.5 per key per minute on average at 100k keys).
    #[arg(long, default_value_t = 20)]
    pub minutes: i64,
    /// The Kafka Streams peer (bench/kafka-streams/build prints it).
    #[arg(long)]
    pub ks_jar: std::path::PathBuf,
    /// Processing threads of each contestant.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Only these runs, comma-separated: weir, kafka-streams.
    #[arg(long)]
    pub only: Option<String>,
    /// Only these pipelines, comma-separated: tumbling-count, hopping-sum.
    #[arg(long)]
    pub pipelines: Option<String>,
    /// Rounds, each running every contestant once, alternating.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// The broker's pid, to report its CPU time beside each run.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

/// How far back a disordered record goes, at most (within the grace: no
/// record is late).
const DISORDER_MS: i64 = 3_000;

/// A pipeline of the benchmark: its windows and what it aggregates.
#[derive(Clone, Copy)]
struct Pipeline {
    name: &'static str,
    size_ms: i64,
    advance_ms: i64,
}

const PIPELINES: [Pipeline; 2] = [
    Pipeline {
        name: "tumbling-count",
        size_ms: 60_000,
        advance_ms: 60_000,
    },
    Pipeline {
        name: "hopping-sum",
        size_ms: 600_000,
        advance_ms: 60_000,
    },
];

/// Record `i` of the input: its user, amount and time.
fn record(c: &Windows, base: i64, i: usize) -> (usize, i64, i64) {
    let step_us = c.minutes * 60_000_000 / c.records as i64;
    let user = (splitmix64(i as u64) % c.keys as u64) as usize;
    // One record in five a little late (up to 3 s), the rest in order.
    let back = if i.is_multiple_of(5) {
        (i as i64 * 7919) % DISORDER_MS
    } else {
        0
    };
    (
        user,
        (i as i64 * 7919) % 1000,
        base + i as i64 * step_us / 1000 - back,
    )
}

/// A well-mixed hash of `x` (splitmix64's finalizer): users drawn at
/// random, each record's independent of its neighbours'.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn user_key(user: usize) -> String {
    format!("u-{user:07}")
}

/// How many results a pipeline writes: the distinct windows of each user
/// (every one closes, see the module's documentation).
fn expected_results(c: &Windows, base: i64, p: Pipeline) -> u64 {
    let mut spans: HashMap<usize, Vec<(i64, i64)>> = HashMap::with_capacity(c.keys);
    for i in 0..c.records {
        let (user, _, ts) = record(c, base, i);
        // The windows holding `ts`, as indices of their starts.
        let last = ts.div_euclid(p.advance_ms);
        let first = (ts - p.size_ms).div_euclid(p.advance_ms) + 1;
        spans.entry(user).or_default().push((first, last));
    }
    let mut total = 0;
    for list in spans.values_mut() {
        list.sort_unstable();
        let mut covered_to = i64::MIN;
        for &(first, last) in list.iter() {
            let from = first.max(covered_to + 1);
            if last >= from {
                total += (last - from + 1) as u64;
            }
            covered_to = covered_to.max(last);
        }
    }
    total
}

/// The state directory's size through a run, sampled every 250 ms.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, u64)>>,
}

impl Sampler {
    fn start(dir: std::path::PathBuf) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                samples.push((started.elapsed().as_secs_f64(), kafka::du(&dir)));
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// One contestant's run of one pipeline.
struct Result1 {
    pipeline: &'static str,
    round: usize,
    measured: Measured,
    results: u64,
    /// The state directory's size at a quarter, half, three quarters and
    /// the end of the run, and its peak.
    state: [u64; 4],
    peak_state: u64,
}

pub fn windows(c: &Windows) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    // The records end an hour before now (the broker keeps a week), on a
    // minute boundary so that runs of the same size share an input.
    let base = (now - (c.minutes + 60) * 60_000).div_euclid(3_600_000) * 3_600_000;
    let input = format!(
        "bench-windows-input-{}-{}-{}-{base}",
        c.records, c.keys, c.minutes
    );
    let total = c.records + PARTITIONS as usize;
    let end = base + c.minutes * 60_000 + 3_600_000;
    kafka::load_records(&c.bootstrap, &input, total, |i| {
        if i >= c.records {
            // One record per partition past every window: they close.
            let p = (i - c.records) as i32;
            return Loaded {
                key: format!("closer-{p}"),
                value: r#"{"amount":0}"#.to_string(),
                timestamp: end,
                partition: Some(p),
            };
        }
        let (user, amount, ts) = record(c, base, i);
        Loaded {
            key: user_key(user),
            value: format!(
                r#"{{"user":"{}","amount":{amount},"channel":"web","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#,
                user_key(user)
            ),
            timestamp: ts,
            partition: None,
        }
    })?;
    let run_id = std::process::id();
    let dir = tempfile::tempdir()?;
    let commit_ms = 1000;
    let run = Run {
        bootstrap: &c.bootstrap,
        broker: c.broker_pid,
        records: total,
    };
    let mut all = Vec::new();
    for p in PIPELINES {
        if !kafka::selected(c.pipelines.as_deref(), p.name) {
            continue;
        }
        let want = expected_results(c, base, p);
        println!("{}: {want} windows to write", p.name);
        for round in 1..=c.rounds {
            for name in ["weir", "kafka-streams"] {
                if !kafka::selected(c.only.as_deref(), name) {
                    continue;
                }
                let tag = format!("{name}-{}-{round}-{run_id}", p.name);
                let output = format!("bench-windows-out-{tag}");
                let app = format!("bench-windows-{tag}");
                let state = dir.path().join(format!("{tag}-state"));
                let log = dir.path().join(format!("{tag}.log"));
                let contest = kafka::Contest {
                    bootstrap: &c.bootstrap,
                    input: &input,
                    output: &output,
                    app: &app,
                    threads: c.threads,
                    commit_ms,
                    state: &state,
                };
                let cmd = match name {
                    "weir" => kafka::weir_command(
                        &contest,
                        &dir.path().join(format!("{tag}.yaml")),
                        &weir_pipeline(c, p, &input, &output, &app, commit_ms),
                    )?,
                    _ => kafka::kafka_streams_command(&c.ks_jar, &contest, p.name, &[]),
                };
                println!("{} round {round}: running {name} ...", p.name);
                std::fs::create_dir_all(&state)?;
                let sampler = Sampler::start(state.clone());
                let measured = kafka::measure_run(&run, name, cmd, &output, want as i64, &log)
                    .with_context(|| kafka::log_tail(&log));
                let samples = sampler.finish();
                let measured = measured?;
                let at = |share: f64| {
                    let last = samples.last().map_or(0.0, |s| s.0);
                    samples
                        .iter()
                        .find(|s| s.0 >= last * share)
                        .map_or(0, |s| s.1)
                };
                let r = Result1 {
                    pipeline: p.name,
                    round,
                    results: want,
                    state: [at(0.25), at(0.5), at(0.75), kafka::du(&state)],
                    peak_state: samples.iter().map(|s| s.1).max().unwrap_or(0),
                    measured,
                };
                println!(
                    "  {:.2} s, {:.0} records in per CPU-second, peak RSS {} MiB, state {} MiB at the end (peak {} MiB)",
                    r.measured.wall,
                    r.measured.per_cpu(),
                    r.measured.rss >> 20,
                    r.state[3] >> 20,
                    r.peak_state >> 20
                );
                for topic in [
                    output.clone(),
                    format!("{app}-per-window-changelog"),
                    format!("{app}-per-window-repartition"),
                    format!("{app}-final-store-changelog"),
                ] {
                    let _ = kafka::delete_topic(&c.bootstrap, &topic);
                }
                let _ = std::fs::remove_dir_all(&state);
                all.push(r);
            }
        }
    }
    print_table(c, &all);
    Ok(())
}

fn weir_pipeline(
    c: &Windows,
    p: Pipeline,
    input: &str,
    output: &str,
    app: &str,
    commit_ms: u64,
) -> String {
    let (window, aggregations) = match p.name {
        "tumbling-count" => ("{ tumbling: 1m, grace: 5s }", "{ n: count }"),
        _ => (
            "{ hopping: 10m, advance: 1m, grace: 5s }",
            "{ total: { sum: amount } }",
        ),
    };
    format!(
        "name: {app}
batch-size: 1024
kafka:
  bootstrap: {bootstrap}
  threads: {threads}
  commit-interval: {commit_ms}ms
sources:
  in: {{ kind: kafka, topic: {input}, value-format: json }}
steps:
  - {{ name: per-key, kind: group-by }}
  - name: per-window
    id: per-window
    kind: aggregate
    window: {window}
    emit: final
    aggregations: {aggregations}
sinks:
  out: {{ kind: kafka, topic: {output}, key-format: string, value-format: json }}
",
        bootstrap = c.bootstrap,
        threads = c.threads,
    )
}

fn print_table(c: &Windows, all: &[Result1]) {
    let mib = |b: u64| format!("{:.1}", b as f64 / (1 << 20) as f64);
    println!();
    println!(
        "{} input records over {} minutes of event time, {} keys, {} partitions, {} threads each, at-least-once, commit every 1 s, grace 5 s, each window's result once when it closes, {} cores",
        c.records,
        c.minutes,
        c.keys,
        PARTITIONS,
        c.threads,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "| pipeline | round | run | seconds | records in per CPU-second | results out per CPU-second | peak RSS MiB | state MiB at 1/4, 1/2, 3/4, end | peak state MiB | broker CPU s |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---|---:|---:|");
    for r in all {
        let m = &r.measured;
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.0} | {} | {} | {} | {} |",
            r.pipeline,
            r.round,
            m.name,
            m.wall,
            m.per_cpu(),
            r.results as f64 / m.cpu,
            m.rss >> 20,
            r.state.map(mib).join(", "),
            mib(r.peak_state),
            m.broker_cpu.map_or("-".to_string(), |b| format!("{b:.2}")),
        );
    }
    println!();
    for p in PIPELINES {
        for round in 1..=c.rounds {
            let find = |n: &str| {
                all.iter()
                    .find(|r| r.pipeline == p.name && r.round == round && r.measured.name == n)
            };
            if let (Some(w), Some(k)) = (find("weir"), find("kafka-streams")) {
                println!(
                    "{} round {round}: weir / Kafka Streams {:.2}x records per CPU-second, {:.2}x peak RSS, {:.2}x state at the end",
                    p.name,
                    w.measured.per_cpu() / k.measured.per_cpu(),
                    w.measured.rss as f64 / k.measured.rss as f64,
                    w.state[3] as f64 / k.state[3].max(1) as f64,
                );
            }
        }
    }
}
