//! Keyed state on Kafka, weir against Kafka Streams (issue 13, item 11):
//! count and sum per key, the record re-keyed by a JSON field first, over
//! one preloaded input topic, each contestant alone, under the same
//! emission rule (every update is emitted: Kafka Streams with
//! `statestore.cache.max.bytes=0`, weir as it always does), measured from
//! outside as `kafka compare` measures (see `kafka.rs`).
//!
//! With `--restore`, each contestant is then stopped, its local state
//! deleted, and started again on the same application: it restores its
//! store from the changelog, and the time from its first restore starting
//! to its last ending is reported (each says when: weir in its log, the
//! Kafka Streams peer through a restore listener).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::kafka::{self, Measured, Run};

/// The loaded input's value `i`: a ~150-byte JSON object whose `user` is
/// one of `keys`.
fn value(i: usize, keys: usize) -> String {
    format!(
        r#"{{"id":{i},"user":"u-{:07}","amount":{},"country":"DE","channel":"web","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#,
        i % keys,
        (i * 7919) % 1000
    )
}

/// `weir-bench kafka stateful`'s options.
#[derive(clap::Args)]
pub struct Stateful {
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:19092")]
    pub bootstrap: String,
    #[arg(long, default_value_t = 5_000_000)]
    pub records: usize,
    /// Distinct users (keys of the store).
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// The Kafka Streams peer (bench/kafka-streams/build prints it).
    #[arg(long)]
    pub ks_jar: std::path::PathBuf,
    /// Processing threads of each contestant.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Only these runs, comma-separated: weir, kafka-streams.
    #[arg(long)]
    pub only: Option<String>,
    /// Then measure each one's restore from its changelog.
    #[arg(long)]
    pub restore: bool,
    /// The broker's pid, to report its CPU time beside each run.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

/// A contestant's restore: records restored and seconds from the first
/// restore's start to the last one's end.
struct Restore {
    records: u64,
    seconds: f64,
}

pub fn stateful(c: &Stateful) -> Result<()> {
    let input = format!("bench-state-input-{}-{}", c.records, c.keys);
    kafka::load_values(&c.bootstrap, &input, c.records, |i| value(i, c.keys))?;
    let run_id = std::process::id();
    let dir = tempfile::tempdir()?;
    let commit_ms = 1000;
    let run = Run {
        bootstrap: &c.bootstrap,
        broker: c.broker_pid,
        records: c.records,
    };
    let mut results: Vec<(Measured, u64, Option<Restore>)> = Vec::new();
    for name in ["weir", "kafka-streams"] {
        if !kafka::selected(c.only.as_deref(), name) {
            continue;
        }
        let output = format!("bench-state-out-{name}-{run_id}");
        let app = format!("bench-state-{name}-{run_id}");
        let state = dir.path().join(format!("{name}-state"));
        let contest = kafka::Contest {
            bootstrap: &c.bootstrap,
            input: &input,
            output: &output,
            app: &app,
            threads: c.threads,
            commit_ms,
            state: &state,
        };
        let command = |log_name: &str| -> Result<(Command, std::path::PathBuf)> {
            let log = dir.path().join(log_name);
            let cmd = match name {
                "weir" => kafka::weir_command(
                    &contest,
                    &dir.path().join("pipeline.yaml"),
                    &weir_pipeline(c, &input, &output, &app, commit_ms),
                )?,
                _ => kafka::kafka_streams_command(
                    &c.ks_jar,
                    &contest,
                    "count-sum",
                    &["statestore.cache.max.bytes=0"],
                ),
            };
            Ok((cmd, log))
        };
        println!("running {name} ...");
        let (cmd, log) = command(&format!("{name}.log"))?;
        let m = kafka::measure_run(&run, name, cmd, &output, c.records as i64, &log)
            .with_context(|| kafka::log_tail(&log))?;
        let on_disk = kafka::du(&state);
        println!(
            "  {:.2} s, {:.0} records/s, {:.0} per CPU-second, peak RSS {} MiB, state on disk {:.1} MiB",
            m.wall,
            m.rate(),
            m.per_cpu(),
            m.rss >> 20,
            on_disk as f64 / (1 << 20) as f64
        );
        let restore = if c.restore {
            std::fs::remove_dir_all(&state)
                .with_context(|| format!("deleting {}", state.display()))?;
            let (cmd, log) = command(&format!("{name}-restore.log"))?;
            let r = measure_restore(name, cmd, &log).with_context(|| kafka::log_tail(&log))?;
            println!(
                "  restored {} changelog records in {:.2} s ({:.0} per second)",
                r.records,
                r.seconds,
                r.records as f64 / r.seconds
            );
            Some(r)
        } else {
            None
        };
        for topic in [
            output.clone(),
            format!("{app}-totals-repartition"),
            format!("{app}-totals-changelog"),
        ] {
            kafka::delete_topic(&c.bootstrap, &topic)?;
        }
        results.push((m, on_disk, restore));
    }
    print_table(c, &results);
    Ok(())
}

fn weir_pipeline(c: &Stateful, input: &str, output: &str, app: &str, commit_ms: u64) -> String {
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
  - {{ name: by-user, kind: group-by, key: {{ field: user }} }}
  - {{ name: totals, id: totals, kind: aggregate, aggregations: {{ n: count, total: {{ sum: amount }} }} }}
sinks:
  out: {{ kind: kafka, topic: {output}, key-format: string, value-format: json }}
",
        bootstrap = c.bootstrap,
        threads = c.threads,
    )
}

/// Starts `command` on an application whose state is gone, waits until it
/// has restored its stores, stops it.
fn measure_restore(name: &str, mut command: Command, log: &Path) -> Result<Restore> {
    let file = std::fs::File::create(log)?;
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let result = loop {
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited early ({status})");
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("{name} did not restore within 15 minutes"));
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let done = match name {
            "weir" => weir_restore(&text),
            _ => kafka_streams_restore(&text),
        };
        if let Some(r) = done {
            break Ok(r);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    kafka::stop(&mut child)?;
    result
}

/// weir's restore, once every task with state has logged `restored N
/// changelog records (...) in S s` at time T: from the earliest T - S to
/// the latest T. Every task has logged once its line count stops growing
/// and weir says it is processing (the summary's progress) — here, once
/// `PARTITIONS` (4) tasks have.
fn weir_restore(log: &str) -> Option<Restore> {
    let mut spans = Vec::new();
    let mut records = 0;
    for line in log.lines().filter(|l| l.contains(" restored ")) {
        let at = humantime::parse_rfc3339(line.split_whitespace().next()?).ok()?;
        let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
        let n: u64 = line
            .split(" restored ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let secs: f64 = line
            .rsplit(" in ")
            .next()?
            .split('s')
            .next()?
            .parse()
            .ok()?;
        records += n;
        spans.push((at - secs, at));
    }
    restore_span(&spans, records)
}

/// The Kafka Streams peer's restore listener lines (`restore-start
/// EPOCH_MS` and `restore-end EPOCH_MS RECORDS`), once `PARTITIONS` ended.
fn kafka_streams_restore(log: &str) -> Option<Restore> {
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    let mut records = 0;
    for line in log.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("restore-start") => starts.push(words.next()?.parse::<f64>().ok()? / 1000.0),
            Some("restore-end") => {
                ends.push(words.next()?.parse::<f64>().ok()? / 1000.0);
                records += words.next()?.parse::<u64>().ok()?;
            }
            _ => {}
        }
    }
    let first = starts.iter().copied().reduce(f64::min)?;
    let spans: Vec<(f64, f64)> = ends.iter().map(|&e| (first, e)).collect();
    restore_span(&spans, records)
}

/// Every task's restore is in `spans` (start, end): the whole span.
fn restore_span(spans: &[(f64, f64)], records: u64) -> Option<Restore> {
    if spans.len() < 4 {
        return None;
    }
    let start = spans.iter().map(|s| s.0).reduce(f64::min)?;
    let end = spans.iter().map(|s| s.1).reduce(f64::max)?;
    Some(Restore {
        records,
        seconds: end - start,
    })
}

fn print_table(c: &Stateful, results: &[(Measured, u64, Option<Restore>)]) {
    println!();
    println!(
        "{} input records, {} keys, 4 partitions, {} threads each, at-least-once, commit every 1 s, every update emitted ({} output records each), {} cores",
        c.records,
        c.keys,
        c.threads,
        c.records,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "| run | seconds | records/s | CPU s | records per CPU-second | peak RSS MiB | state on disk MiB | broker CPU s | restore s | restored records |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (m, disk, restore) in results {
        println!(
            "| {} | {:.2} | {:.0} | {:.2} | {:.0} | {} | {:.1} | {} | {} | {} |",
            m.name,
            m.wall,
            m.rate(),
            m.cpu,
            m.per_cpu(),
            m.rss >> 20,
            *disk as f64 / (1 << 20) as f64,
            m.broker_cpu.map_or("-".to_string(), |b| format!("{b:.2}")),
            restore
                .as_ref()
                .map_or("-".to_string(), |r| format!("{:.2}", r.seconds)),
            restore
                .as_ref()
                .map_or("-".to_string(), |r| r.records.to_string()),
        );
    }
    let find = |n: &str| results.iter().find(|r| r.0.name == n);
    if let (Some(w), Some(k)) = (find("weir"), find("kafka-streams")) {
        println!();
        println!(
            "weir / Kafka Streams: {:.2}x records per CPU-second, {:.2}x records/s, {:.2}x peak RSS",
            w.0.per_cpu() / k.0.per_cpu(),
            w.0.rate() / k.0.rate(),
            w.0.rss as f64 / k.0.rss as f64
        );
        if let (Some(wr), Some(kr)) = (&w.2, &k.2) {
            println!(
                "restore: weir {:.2} s, Kafka Streams {:.2} s: weir {:.2}x faster",
                wr.seconds,
                kr.seconds,
                kr.seconds / wr.seconds
            );
        }
    }
}
