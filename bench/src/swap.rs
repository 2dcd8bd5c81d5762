//! `weir-bench swap`: what hot-swapping a step costs a pipeline running at
//! full speed (issue 12, item 7).
//!
//! One run per plugin (the small enricher, the 8.6 MB `big-table`, and
//! `stateful`: `tally` in an aggregate step after a group-by, whose run
//! ends with one swap to the next state version, `tally-v2`):
//! `file source (a FIFO) → map step → file sink (a FIFO)`, started with
//! `weir::run` and a [`RunControl`]. A writer thread fills the input FIFO
//! as fast as the pipeline takes it (or at `--rate`); each record's value carries `t`, the
//! nanoseconds since the bench started, taken just before its block of
//! lines (16 KiB, about 100 records) was formatted and written. A reader
//! thread reads the output FIFO and stamps each read; a record's latency
//! is that stamp minus its `t`.
//!
//! While it runs, three series of swaps of the one step, `--swaps` each:
//!
//! * `compile`: bytes never seen before (the plugin with a custom section
//!   carrying a fresh tag, so a new SHA-256): compiled on the run's
//!   control thread, not found in the compiled cache;
//! * `cached`: alternating between the file's component and the first
//!   `compile` variant, both already in the compiled cache (a fresh cache
//!   folder per run, so nothing from earlier runs counts);
//! * `config`: the running component with a new config (nothing loaded).
//!
//! For each swap, the *swap window* runs from `--window-ms`/2 before the
//! swap was asked for to `--window-ms`/2 after it returned; the *quiet
//! window* is one of the same length that starts `--window-ms` after the
//! swap window ends, the *control window* another one `--window-ms`/2
//! after that, and the next swap is asked for `--window-ms`/2 after the
//! control window ends. The extra gap of a swap is the longest time
//! between two consecutive reads of the output in its swap window minus
//! the same in its quiet window; the same difference between the control
//! and the quiet window, where no swap happens, is the noise of the
//! measure. The swap window's longest gap is also split at the start of
//! the cutover: before it the new version is being prepared.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use weir::{Pipeline, RunControl, RunOptions, SwapReport, Topology};

use super::plugin_path;

#[derive(clap::Args)]
pub struct Swap {
    /// Swaps in each series (compile, cached, config).
    #[arg(long, default_value_t = 10)]
    swaps: usize,
    /// Length of the windows around a swap, in ms (see the module doc).
    #[arg(long, default_value_t = 200)]
    window_ms: u64,
    /// Full speed before the first swap and after the last, in ms (the
    /// first half of the time before is warm-up and not measured).
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
    /// The plugins to swap: `small` (enricher), `large` (big-table),
    /// `stateful` (an aggregate step with `tally`, whose last swap goes
    /// to the next state version, `tally-v2`).
    #[arg(long, value_delimiter = ',', default_values_t = ["small".to_string(), "large".to_string()])]
    plugins: Vec<String>,
    #[arg(long, default_value_t = 2)]
    partitions: u32,
    /// Records per plugin call (the pipeline's `batch-size`).
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Records per second the writer offers; 0 is as fast as the pipeline
    /// takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

/// What kind of swap a series makes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Series {
    Compile,
    Cached,
    Config,
    /// The aggregate step (`stateful`) only, one swap, last: to `tally-v2`
    /// (compiled into the cache before the run), a newer state version
    /// that upgrades each key's accumulator when the key is next read.
    Upgrade,
}

impl Series {
    const ALL: [Series; 4] = [
        Series::Compile,
        Series::Cached,
        Series::Config,
        Series::Upgrade,
    ];

    fn name(self) -> &'static str {
        match self {
            Series::Compile => "compile",
            Series::Cached => "cached",
            Series::Config => "config",
            Series::Upgrade => "upgrade",
        }
    }

    /// Swaps of this series in a run of `swaps` per series.
    fn count(self, swaps: usize, stateful: bool) -> usize {
        match (self, stateful) {
            (Series::Upgrade, true) => 1,
            (Series::Upgrade, false) => 0,
            _ => swaps,
        }
    }
}

/// The step a run swaps.
#[derive(Clone, Copy)]
struct Subject {
    /// The plugin's file name (without `.wasm`).
    plugin: &'static str,
    label: &'static str,
    /// An aggregate step keyed by the record key (`tally`): its output
    /// carries no `t`, so a record's latency is read from the result's
    /// timestamp, which is the latest input's `t` in ms.
    stateful: bool,
}

impl Subject {
    fn of(which: &str) -> Result<Subject> {
        let (plugin, label, stateful) = match which {
            "small" => ("enricher", "small (enricher)", false),
            "large" => ("big_table", "large (big-table)", false),
            "stateful" => ("tally", "stateful (tally aggregate)", true),
            other => bail!("unknown plugin `{other}`: small, large or stateful"),
        };
        Ok(Subject {
            plugin,
            label,
            stateful,
        })
    }

    /// The pipeline's steps.
    fn steps(&self, plugin: &Path) -> String {
        match self.stateful {
            false => format!(
                "plugins:
  step: {{ path: {} }}
steps:
  - {{ name: tag, kind: map, plugin: step, config: {{ set: {{ version: 0 }} }} }}
",
                plugin.display()
            ),
            true => format!(
                "plugins:
  step: {{ path: {} }}
steps:
  - {{ name: by-key, kind: group-by }}
  - {{ name: tag, id: totals, kind: aggregate, plugin: step }}
",
                plugin.display()
            ),
        }
    }

    /// The config of swap `i` of the `config` series.
    fn config(&self, i: usize) -> serde_json::Value {
        match self.stateful {
            false => serde_json::json!({ "set": { "version": i + 1 } }),
            true => serde_json::json!({ "poison-every": 1_000_000_000_000u64 + i as u64 }),
        }
    }
}

/// One swap as the bench saw it, times in ns since the bench started.
struct Swapped {
    series: Series,
    asked: u64,
    returned: u64,
    report: SwapReport,
}

impl Swapped {
    fn swap_window(&self, window: u64) -> (u64, u64) {
        (self.asked - window / 2, self.returned + window / 2)
    }

    /// The swap window up to the moment the cutover began (the new version
    /// was being prepared), and from then on.
    fn split_swap_window(&self, window: u64) -> [(u64, u64); 2] {
        let (start, end) = self.swap_window(window);
        let cutover = self.returned - self.report.cutover.as_nanos() as u64;
        [(start, cutover), (cutover, end)]
    }

    fn quiet_window(&self, window: u64) -> (u64, u64) {
        let (start, end) = self.swap_window(window);
        (end + window, end + window + (end - start))
    }

    fn control_window(&self, window: u64) -> (u64, u64) {
        let (start, end) = self.quiet_window(window);
        (end + window / 2, end + window / 2 + (end - start))
    }

    /// Like [`Swapped::extra_gap`] between two windows without a swap.
    fn no_swap_gap(&self, outputs: &Outputs, window: u64) -> f64 {
        ms(outputs.longest_gap(self.control_window(window)))
            - ms(outputs.longest_gap(self.quiet_window(window)))
    }

    /// The longest gap in the swap window minus the one in the quiet
    /// window, in ms.
    fn extra_gap(&self, outputs: &Outputs, window: u64) -> f64 {
        ms(outputs.longest_gap(self.swap_window(window)))
            - ms(outputs.longest_gap(self.quiet_window(window)))
    }
}

/// What the reader saw: when each read returned, and every record's
/// latency in the order they came out.
#[derive(Default)]
struct Outputs {
    /// (ns since the bench started, index of its first record in `latency`).
    reads: Vec<(u64, usize)>,
    /// Microseconds from `t` to the read that brought the record.
    latency: Vec<u32>,
}

impl Outputs {
    /// The longest time between consecutive reads that overlaps `[from, to]`.
    fn longest_gap(&self, (from, to): (u64, u64)) -> u64 {
        self.reads
            .windows(2)
            .filter(|w| w[1].0 > from && w[0].0 < to)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or(to - from)
    }

    /// Latencies of the records read in `[from, to)`.
    fn latencies(&self, (from, to): (u64, u64), into: &mut Vec<u32>) {
        let first = self.reads.partition_point(|r| r.0 < from);
        let last = self.reads.partition_point(|r| r.0 < to);
        let start = self.reads.get(first).map_or(self.latency.len(), |r| r.1);
        let end = self.reads.get(last).map_or(self.latency.len(), |r| r.1);
        into.extend_from_slice(&self.latency[start..end]);
    }
}

pub fn swap(options: &Swap) -> Result<()> {
    println!(
        "swap: {} swaps per series, windows of {} ms, {} partitions, batch {}, {}, {} cores",
        options.swaps,
        options.window_ms,
        options.partitions,
        options.batch_size,
        if options.rate == 0 {
            "input at full speed".to_string()
        } else {
            format!("input at {} records/s", options.rate)
        },
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    let mut rows = Vec::new();
    let mut latency_rows = Vec::new();
    for which in &options.plugins {
        let subject = Subject::of(which)?;
        let label = subject.label;
        let run = run_one(options, subject)?;
        let size = std::fs::metadata(plugin_path(subject.plugin)?)?.len();
        let window = options.window_ms * 1_000_000;
        for series in Series::ALL {
            let swaps: Vec<&Swapped> = run.swaps.iter().filter(|s| s.series == series).collect();
            if swaps.is_empty() {
                continue;
            }
            rows.push(series_row(
                label,
                size,
                series,
                &swaps,
                &run.outputs,
                window,
            ));
        }
        latency_rows.extend(latency_table(label, &run, window));
        for series in Series::ALL
            .into_iter()
            .filter(|s| s.count(1, subject.stateful) > 0)
        {
            let each = |f: &dyn Fn(&Swapped) -> f64| {
                let v: Vec<String> = run
                    .swaps
                    .iter()
                    .filter(|s| s.series == series)
                    .map(|s| format!("{:.1}", f(s)))
                    .collect();
                v.join(" ")
            };
            println!(
                "{label}, {} swaps, swap by swap: extra gap ms {}; no swap, control - quiet ms {}",
                series.name(),
                each(&|s| s.extra_gap(&run.outputs, window)),
                each(&|s| s.no_swap_gap(&run.outputs, window)),
            );
        }
        println!(
            "{label}: {} records in {:.1} s ({:.0} records/s), every one came out once",
            run.records,
            run.elapsed.as_secs_f64(),
            run.records as f64 / run.elapsed.as_secs_f64()
        );
    }
    println!();
    println!(
        "| plugin | MB | swaps | n | prepare ms, median (max) | task's swap handling ms, median (max) | message queued ms, median (max) | cutover ms, median (max) | longest gap in swap window ms, median | of it before the cutover, median | from the cutover on, median | in quiet window ms, median | extra gap ms, median | extra gap ms, worst | no swap: control - quiet ms, median | no swap, worst |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    println!();
    println!("End-to-end latency (writer's stamp to the read of the output):");
    println!();
    println!("| plugin | when | records | p50 ms | p99 ms | max ms |");
    println!("|---|---|---:|---:|---:|---:|");
    for r in latency_rows {
        println!("{r}");
    }
    Ok(())
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median and the largest of `v`.
fn median_max(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    (v[v.len() / 2], v[v.len() - 1])
}

fn series_row(
    label: &str,
    size: u64,
    series: Series,
    swaps: &[&Swapped],
    outputs: &Outputs,
    window: u64,
) -> String {
    let each = |f: &dyn Fn(&Swapped) -> f64| median_max(swaps.iter().map(|s| f(s)).collect());
    let prepare = each(&|s| millis(s.report.prepare));
    let task = each(&|s| millis(s.report.slowest_task));
    let cutover = each(&|s| millis(s.report.cutover));
    let queued = each(&|s| millis(s.report.queued));
    let in_swap = each(&|s| ms(outputs.longest_gap(s.swap_window(window))));
    let preparing = each(&|s| ms(outputs.longest_gap(s.split_swap_window(window)[0])));
    let switching = each(&|s| ms(outputs.longest_gap(s.split_swap_window(window)[1])));
    let in_quiet = each(&|s| ms(outputs.longest_gap(s.quiet_window(window))));
    let extra = each(&|s| s.extra_gap(outputs, window));
    let control = each(&|s| s.no_swap_gap(outputs, window));
    format!(
        "| {label} | {:.1} | {} | {} | {:.1} ({:.1}) | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        size as f64 / 1e6,
        series.name(),
        swaps.len(),
        prepare.0,
        prepare.1,
        task.0,
        task.1,
        queued.0,
        queued.1,
        cutover.0,
        cutover.1,
        in_swap.0,
        preparing.0,
        switching.0,
        in_quiet.0,
        extra.0,
        extra.1,
        control.0,
        control.1
    )
}

fn latency_table(label: &str, run: &Run, window: u64) -> Vec<String> {
    let mut rows = Vec::new();
    let mut row = |when: &str, mut v: Vec<u32>| {
        v.sort_unstable();
        let pct = |p: f64| {
            v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                .map_or(f64::NAN, |&us| us as f64 / 1e3)
        };
        rows.push(format!(
            "| {label} | {when} | {} | {:.1} | {:.1} | {:.1} |",
            v.len(),
            pct(0.5),
            pct(0.99),
            v.last().map_or(f64::NAN, |&us| us as f64 / 1e3)
        ));
    };
    let mut v = Vec::new();
    run.outputs.latencies(run.before, &mut v);
    row("before the swaps", std::mem::take(&mut v));
    for series in Series::ALL {
        if !run.swaps.iter().any(|s| s.series == series) {
            continue;
        }
        for s in run.swaps.iter().filter(|s| s.series == series) {
            run.outputs.latencies(s.swap_window(window), &mut v);
        }
        row(
            &format!("in {} swap windows", series.name()),
            std::mem::take(&mut v),
        );
    }
    for s in &run.swaps {
        run.outputs.latencies(s.quiet_window(window), &mut v);
        run.outputs.latencies(s.control_window(window), &mut v);
    }
    row(
        "between swaps (quiet and control windows)",
        std::mem::take(&mut v),
    );
    run.outputs.latencies(run.after, &mut v);
    row("after the swaps", v);
    rows
}

/// One plugin's run, measured.
struct Run {
    swaps: Vec<Swapped>,
    outputs: Outputs,
    before: (u64, u64),
    after: (u64, u64),
    records: u64,
    elapsed: Duration,
}

fn run_one(options: &Swap, subject: Subject) -> Result<Run> {
    let plugin = subject.plugin;
    let dir = tempfile::Builder::new()
        .prefix("weir-bench-swap")
        .tempdir()?;
    let input = dir.path().join("in.fifo");
    let output = dir.path().join("out.fifo");
    for fifo in [&input, &output] {
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid C string; mkfifo only reads it.
        if unsafe { libc::mkfifo(path.as_ptr(), 0o600) } != 0 {
            return Err(std::io::Error::last_os_error()).context("mkfifo");
        }
    }
    let plugin_file = plugin_path(plugin)?;
    let original = std::fs::read(&plugin_file)?;
    let pipeline = format!(
        "
partitions: {partitions}
batch-size: {batch}
error-policy: fail
state: {{ dir: {state} }}
sources:
  in: {{ kind: file, path: {input} }}
{steps}sinks:
  out: {{ kind: file, path: {output} }}
",
        partitions = options.partitions,
        batch = options.batch_size,
        state = dir.path().join("state").display(),
        input = input.display(),
        output = output.display(),
        steps = subject.steps(&plugin_file),
    );
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(&file, pipeline)?;
    let spec = Pipeline::load(&file).map_err(anyhow::Error::msg)?;
    // A fresh compiled cache: a `compile` swap compiles, whatever ran before.
    let cache = dir.path().join("cache");
    if subject.stateful {
        // The upgrade swap's component compiled into it first, so that
        // swap is a cached one (the target is for cached swaps).
        let warm = dir.path().join("warm.yaml");
        std::fs::write(
            &warm,
            format!(
                "sources:\n  in: {{ kind: stdin }}\n{}sinks:\n  out: {{ kind: stdout }}\n",
                subject.steps(&plugin_path("tally_v2")?)
            ),
        )?;
        let spec = Pipeline::load(&warm).map_err(anyhow::Error::msg)?;
        drop(Topology::build(spec, Some(cache.clone())).map_err(anyhow::Error::msg)?);
    }
    let topo = Topology::build(spec, Some(cache)).map_err(anyhow::Error::msg)?;
    let control = RunControl::new();
    let options_run = RunOptions {
        control: Some(control.clone()),
        ..RunOptions::default()
    };
    let base = Instant::now();
    let now = move || base.elapsed().as_nanos() as u64;
    let run = std::thread::spawn(move || weir::run(&topo, options_run));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, input, rate) = (stop.clone(), input.clone(), options.rate);
        let stateful = subject.stateful;
        std::thread::spawn(move || write_input(&input, &stop, rate, stateful, now))
    };
    let reader = {
        let output = output.clone();
        let stamp = if subject.stateful {
            stamp_from_timestamp
        } else {
            stamp
        };
        std::thread::spawn(move || read_output(&output, stamp, now))
    };
    let attached = Instant::now();
    while control.status().is_empty() {
        if attached.elapsed() > Duration::from_secs(60) || run.is_finished() {
            bail!("the run did not start");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = now();
    let settle = Duration::from_millis(options.settle_ms);
    std::thread::sleep(settle);
    let before = (started + settle.as_nanos() as u64 / 2, now());

    let window = Duration::from_millis(options.window_ms);
    let mut swaps = Vec::new();
    let mut variants: Vec<Vec<u8>> = Vec::new();
    let mut next = Instant::now() + window;
    let upgraded = match subject.stateful {
        true => std::fs::read(plugin_path("tally_v2")?)?,
        false => Vec::new(),
    };
    for series in Series::ALL {
        for i in 0..series.count(options.swaps, subject.stateful) {
            let (component, config) = match series {
                Series::Compile => {
                    let bytes = with_custom_section(&original, &format!("bench {plugin} {i}"));
                    if variants.is_empty() {
                        variants.push(bytes.clone());
                    }
                    (Some(bytes), None)
                }
                // The file's component and the first variant, both in the
                // compiled cache by now.
                Series::Cached => {
                    let bytes = if i % 2 == 0 { &original } else { &variants[0] };
                    (Some(bytes.clone()), None)
                }
                Series::Config => (None, Some(subject.config(i))),
                Series::Upgrade => (Some(upgraded.clone()), Some(serde_json::Value::Null)),
            };
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            let asked = now();
            let report = control
                .swap("tag", component, config)
                .with_context(|| format!("{} swap {i}", series.name()))?;
            let returned = now();
            let swapped = Swapped {
                series,
                asked,
                returned,
                report,
            };
            // The control window ends, then half a window to the next ask.
            let (_, control_end) = swapped.control_window(window.as_nanos() as u64);
            next = base + Duration::from_nanos(control_end) + window / 2;
            swaps.push(swapped);
        }
    }
    std::thread::sleep(next.saturating_duration_since(Instant::now()));
    let after_start = now();
    std::thread::sleep(settle);
    let after = (after_start, now());
    stop.store(true, Ordering::SeqCst);
    let records = writer.join().expect("writer")?;
    let report = run
        .join()
        .expect("run")
        .map_err(|e| anyhow::anyhow!("run: {e}"))?;
    let elapsed = base.elapsed();
    let outputs = reader.join().expect("reader")?;
    if report.counts.records_in != records || outputs.latency.len() as u64 != records {
        bail!(
            "wrote {records} records, the run read {} and wrote {}, the bench read {}",
            report.counts.records_in,
            report.counts.records_out,
            outputs.latency.len()
        );
    }
    Ok(Run {
        swaps,
        outputs,
        before,
        after,
        records,
        elapsed,
    })
}

/// Writes JSON lines into the FIFO at `path` until `stop`, in blocks of
/// about 16 KiB; every record of a block carries the time taken just
/// before the block was formatted. Returns the number of records written.
/// With `t_as_timestamp`, a record's timestamp is its `t` in ms (what
/// an aggregate's result carries), else one more per record.
fn write_input(
    path: &Path,
    stop: &AtomicBool,
    rate: u64,
    t_as_timestamp: bool,
    now: impl Fn() -> u64,
) -> Result<u64> {
    // Opening a FIFO for writing waits for its reader: the run's source.
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    let mut block = Vec::with_capacity(20 << 10);
    let mut n: u64 = 0;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        block.clear();
        let t = now();
        while block.len() < 16 << 10 {
            writeln!(
                block,
                r#"{{"key":"c-{:05}","value":{{"t":{t},"n":{n},"amount":{},"country":"DE","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}},"timestamp":{}}}"#,
                n % 50_000,
                (n * 7919) % 1000,
                if t_as_timestamp {
                    t / 1_000_000
                } else {
                    1_700_000_000_000u64 + n
                }
            )?;
            n += 1;
        }
        fifo.write_all(&block).context("write the input")?;
        if rate > 0 {
            let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    Ok(n)
}

/// Reads the output FIFO to its end, stamping each read; `stamp` reads
/// when a record was written.
fn read_output(
    path: &Path,
    stamp: fn(&[u8]) -> Option<u64>,
    now: impl Fn() -> u64,
) -> Result<Outputs> {
    // Opening a FIFO for reading waits for its writer: the run's sink.
    let mut fifo = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut out = Outputs::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut carry = 0;
    loop {
        let got = fifo.read(&mut buf[carry..]).context("read the output")?;
        if got == 0 {
            break;
        }
        let at = now();
        out.reads.push((at, out.latency.len()));
        let filled = carry + got;
        let mut line_start = 0;
        while let Some(end) = buf[line_start..filled].iter().position(|&b| b == b'\n') {
            let line = &buf[line_start..line_start + end];
            let t = stamp(line)
                .with_context(|| format!("no `t` in output {}", String::from_utf8_lossy(line)))?;
            out.latency
                .push((at.saturating_sub(t) / 1_000).min(u32::MAX as u64) as u32);
            line_start += end + 1;
        }
        buf.copy_within(line_start..filled, 0);
        carry = filled - line_start;
        if carry == buf.len() {
            bail!("an output line longer than {} bytes", buf.len());
        }
    }
    Ok(out)
}

/// The `t` the writer put first in a record's value.
fn stamp(line: &[u8]) -> Option<u64> {
    const FIELD: &[u8] = br#"{"t":"#;
    let at = line.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// When the records an aggregate's result folded were last written: its
/// timestamp (the latest input's `t`, in ms), in ns.
fn stamp_from_timestamp(line: &[u8]) -> Option<u64> {
    const FIELD: &[u8] = br#""timestamp":"#;
    let at = line.windows(FIELD.len()).rposition(|w| w == FIELD)? + FIELD.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    let ms: u64 = std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()?;
    Some(ms * 1_000_000)
}

/// `component` with a custom section holding `tag` appended: the same
/// component with other bytes, so another SHA-256 and a compile of its own.
fn with_custom_section(component: &[u8], tag: &str) -> Vec<u8> {
    let name = b"weir-bench";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut bytes = component.to_vec();
    bytes.push(0); // custom section id
    let mut size = payload.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        bytes.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    bytes.extend_from_slice(&payload);
    bytes
}
