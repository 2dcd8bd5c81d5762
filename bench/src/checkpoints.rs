//! What exactly-once checkpoints cost on the embedded stateful benchmark
//! (issue 15): the same group-by and count as `stateful`, with
//! `partitions: 1` (what exactly-once asks of a re-key), run at-least-once
//! and exactly-once with checkpoints every 1 s, 10 s and 60 s, alternating
//! round by round; then the time a killed run takes to resume.
//!
//! ```sh
//! cargo run --release -p weir-bench -- checkpoints --records 5000000 --keys 100000
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use weir::{Cut, Pipeline, RunOptions, Topology};

use super::{cpu_time, median};

#[derive(clap::Args)]
pub struct Checkpoints {
    #[arg(long, default_value_t = 5_000_000)]
    records: usize,
    /// Distinct group-by keys.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Checkpoint intervals to compare with an at-least-once run.
    #[arg(long, value_delimiter = ',', default_value = "1s,10s,60s")]
    intervals: Vec<humantime::Duration>,
}

/// One configuration's rounds.
#[derive(Default)]
struct Rounds {
    cpus: Vec<f64>,
    walls: Vec<f64>,
    checkpoints: Vec<u64>,
    pauses: Vec<Duration>,
}

pub fn checkpoints(o: &Checkpoints) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("events.jsonl");
    super::stateful::write_events(&input, o.records, o.keys)?;
    let size = std::fs::metadata(&input)?.len();
    let pipeline = |guarantee: &str, interval: &str| {
        format!(
            "
name: checkpoints-bench
partitions: 1
processing-guarantee: {guarantee}
state: {{ dir: {state}, checkpoint-interval: {interval} }}
sources:
  events: {{ kind: file, path: {input}, format: json, timestamp: {{ field: ts, unit: ms }} }}
steps:
  - {{ name: by-category, kind: group-by, key: {{ field: category }} }}
  - {{ name: stats, kind: aggregate, id: stats, aggregations: {{ n: count }} }}
sinks:
  out: {{ kind: file, path: {output} }}
",
            state = dir.path().join("state").display(),
            input = input.display(),
            output = dir.path().join("out.jsonl").display(),
        )
    };
    let mut configs: Vec<(String, String)> =
        vec![("at-least-once".into(), pipeline("at-least-once", "5s"))];
    for interval in &o.intervals {
        configs.push((
            format!("exactly-once, every {interval}"),
            pipeline("exactly-once", &interval.to_string()),
        ));
    }
    println!(
        "group-by field then count, partitions 1: {} records ({:.1} MB), {} keys, {} cores, median of {} rounds (configurations alternating)",
        o.records,
        size as f64 / 1e6,
        o.keys,
        std::thread::available_parallelism().map_or(1, |p| p.get()),
        o.rounds
    );
    let mut results: Vec<Rounds> = configs.iter().map(|_| Rounds::default()).collect();
    for _ in 0..o.rounds {
        for ((_, text), result) in configs.iter().zip(&mut results) {
            let topo = topology(dir.path(), text)?;
            let pauses: Arc<Mutex<Vec<Duration>>> = Arc::default();
            let seen = pauses.clone();
            let cpu0 = cpu_time();
            let t = Instant::now();
            let report = weir::run(
                &topo,
                RunOptions {
                    on_checkpoint: Some(Arc::new(move |cut: &Cut| {
                        seen.lock().unwrap().push(cut.pause);
                    })),
                    ..RunOptions::default()
                },
            )
            .context("run")?;
            result.walls.push(t.elapsed().as_secs_f64());
            result.cpus.push((cpu_time() - cpu0).as_secs_f64());
            if report.counts.records_out != o.records as u64 {
                bail!(
                    "{} updates out of {} records",
                    report.counts.records_out,
                    o.records
                );
            }
            result.checkpoints.push(report.checkpoints);
            result.pauses.extend(pauses.lock().unwrap().iter().copied());
        }
    }
    let base = o.records as f64 / median(results[0].cpus.clone());
    println!(
        "| run | wall s | CPU s | records per CPU-second | vs at-least-once | checkpoints per run | pause per checkpoint, median / max ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for ((name, _), r) in configs.iter().zip(&results) {
        let (wall, cpu) = (median(r.walls.clone()), median(r.cpus.clone()));
        let rate = o.records as f64 / cpu;
        let pauses: Vec<f64> = r.pauses.iter().map(|p| p.as_secs_f64() * 1e3).collect();
        let pause = match pauses.is_empty() {
            true => "-".to_string(),
            false => format!(
                "{:.1} / {:.1}",
                median(pauses.clone()),
                pauses.iter().copied().fold(0.0, f64::max)
            ),
        };
        println!(
            "| {name} | {wall:.2} | {cpu:.2} | {rate:.0} | {:.2}x | {:.0} | {pause} |",
            rate / base,
            median(r.checkpoints.iter().map(|&c| c as f64).collect()),
        );
    }
    resume(o, dir.path(), &pipeline("exactly-once", "1s"))
}

/// A run stopped halfway (its last checkpoint kept, as after a kill), then
/// the run that resumes it: how long until it reads again (the state
/// database opened, the input's part already read checked) and to its end.
fn resume(o: &Checkpoints, dir: &std::path::Path, text: &str) -> Result<()> {
    let topo = topology(dir, text)?;
    let t = Instant::now();
    weir::run(&topo, RunOptions::default()).context("a full run")?;
    let full = t.elapsed();
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(full / 2);
            stop.store(true, Ordering::Relaxed);
        })
    };
    let topo = topology(dir, text)?;
    let interrupted = weir::run(
        &topo,
        RunOptions {
            stop: Some(stop),
            ..RunOptions::default()
        },
    )
    .context("the interrupted run")?;
    stopper.join().unwrap();
    let announced: Arc<Mutex<Option<(Instant, String)>>> = Arc::default();
    let heard = announced.clone();
    let topo = topology(dir, text)?;
    let t = Instant::now();
    let resumed = weir::run(
        &topo,
        RunOptions {
            announce: Some(Arc::new(move |note: &str| {
                *heard.lock().unwrap() = Some((Instant::now(), note.to_string()));
            })),
            ..RunOptions::default()
        },
    )
    .context("the resumed run")?;
    let total = t.elapsed();
    let (at, note) = announced.lock().unwrap().take().context("no start note")?;
    if !note.contains("resuming") {
        bail!("the run did not resume: {note}");
    }
    println!(
        "resume (checkpoints every 1s): a full run {:.2} s; stopped after {} of {} records; the resumed run started reading after {:.0} ms (state database opened, the part already read checked) and ended after {:.2} s with {} records in",
        full.as_secs_f64(),
        interrupted.counts.records_in,
        o.records,
        (at - t).as_secs_f64() * 1e3,
        total.as_secs_f64(),
        resumed.counts.records_in
    );
    println!("  {note}");
    Ok(())
}

fn topology(dir: &std::path::Path, text: &str) -> Result<Topology> {
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, text)?;
    let spec = Pipeline::load(&file).map_err(anyhow::Error::msg)?;
    Topology::build(spec, None).map_err(anyhow::Error::msg)
}
