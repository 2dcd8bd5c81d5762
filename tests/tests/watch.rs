//! `weir run --watch` (issue 12, items 2 and 6): a plugin file rewritten
//! while records flow is swapped to once it is complete; a broken one is
//! refused with the reason and the run goes on with the last good version.
//!
//! The step is a filter whose file starts as `noop` (keeps every record)
//! and is overwritten with `json-filter` (same kind and port, which with
//! the step's config drops the records marked `odd`), so the output shows
//! which version processed each odd record.

use std::io::Write as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_tests::{Fixture, assert_contains, collect_stream, line, plugin, weir, weir_bin};

const PIPELINE: &str = "
partitions: 1
sources:
  in: { kind: stdin }
plugins:
  dev: { path: dev-plugin.wasm }
steps:
  - { name: pass, kind: filter, plugin: dev, config: { field: odd, op: missing } }
sinks:
  out: { kind: stdout }
";

/// `weir run --watch` fed through its stdin, its output and log read as
/// they come.
struct Watched {
    child: Child,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    fed: Arc<AtomicU64>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Watched {
    fn start(f: &Fixture) -> Watched {
        let mut child = Command::new(weir_bin())
            .args(["run", "--watch", "--admin", "off"])
            .arg(f.pipeline_path())
            .env("WEIR_CACHE_DIR", weir_tests::cache_dir())
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, _) = collect_stream(child.stdout.take().unwrap());
        let (err, _) = collect_stream(child.stderr.take().unwrap());
        let stdin = Arc::new(Mutex::new(child.stdin.take()));
        Watched {
            child,
            stdin,
            fed: Arc::default(),
            out,
            err,
        }
    }

    fn log(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Outputs so far: the `n` of each record.
    fn outputs(&self) -> Vec<u64> {
        let text = self.out.lock().unwrap().clone();
        text.lines()
            .filter(|l| l.ends_with('}'))
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
                v["value"]["n"].as_u64().unwrap()
            })
            .collect()
    }

    /// Until the log says `needle` `times` times.
    fn wait_for_log(&self, needle: &str, times: usize) {
        until(&format!("`{needle}` {times} times in the log"), || {
            self.log().matches(needle).count() >= times
        });
    }

    /// Feeds records until `done`, and then until the outputs caught up
    /// with what was fed.
    fn feed_until(&self, mut done: impl FnMut() -> bool) {
        while !done() {
            feed(&self.stdin, &self.fed, 5);
            std::thread::sleep(Duration::from_millis(10));
        }
        feed(&self.stdin, &self.fed, 20);
        let fed = self.fed.load(Ordering::SeqCst);
        until("the outputs catch up", || {
            self.outputs().last().is_some_and(|&n| n + 2 >= fed)
        });
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` more records, numbered on; odd ones marked `odd`.
fn feed(stdin: &Mutex<Option<ChildStdin>>, fed: &AtomicU64, n: u64) {
    let mut text = String::new();
    for _ in 0..n {
        let i = fed.fetch_add(1, Ordering::SeqCst);
        let value = if i % 2 == 1 {
            json!({ "n": i, "odd": true })
        } else {
            json!({ "n": i })
        };
        text.push_str(&line("k", value));
        text.push('\n');
    }
    let mut stdin = stdin.lock().unwrap();
    let w = stdin.as_mut().expect("stdin is open");
    w.write_all(text.as_bytes()).unwrap();
    w.flush().unwrap();
}

/// The sha256 `weir plugin inspect` gives built plugin `name`.
fn digest(name: &str) -> String {
    weir_tests::stdout(&weir(&[
        "plugin",
        "inspect",
        plugin(name).to_str().unwrap(),
    ]))
    .lines()
    .find_map(|l| l.strip_prefix("sha256:").map(|d| d.trim().to_string()))
    .unwrap()
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "no {what} within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Overwrites `path` in place with `bytes` in `parts` writes, a little
/// apart, as a build writing its output does.
fn write_in_parts(path: &std::path::Path, bytes: &[u8], parts: usize) {
    let mut file = std::fs::File::create(path).unwrap();
    for chunk in bytes.chunks(bytes.len().div_ceil(parts)) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The runs of consecutive odd numbers in `outputs` (sorted), as
/// (first, last) pairs.
fn odd_runs(outputs: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &n in outputs.iter().filter(|n| *n % 2 == 1) {
        match runs.last_mut() {
            Some((_, last)) if *last + 2 == n => *last = n,
            _ => runs.push((n, n)),
        }
    }
    runs
}

#[test]
fn a_rewritten_plugin_file_is_swapped_to_once_and_a_broken_one_is_refused() {
    let f = Fixture::new(PIPELINE, &[]);
    let dev = f.path("dev-plugin.wasm");
    let noop = std::fs::read(plugin("noop")).unwrap();
    let json_filter = std::fs::read(plugin("json-filter")).unwrap();
    std::fs::write(&dev, &noop).unwrap();
    let run = Watched::start(&f);
    run.wait_for_log("weir: watch: watching ", 1);
    assert_contains(&run.log(), "dev-plugin.wasm (step `pass`)");

    // v1 (noop) keeps every record.
    feed(&run.stdin, &run.fed, 40);
    until("the first 40 records out", || run.outputs().len() == 40);

    // A rebuild to json-filter, written in parts while records flow.
    let flowing = Arc::new(AtomicBool::new(true));
    let feeder = {
        let (stdin, fed, flowing) = (run.stdin.clone(), run.fed.clone(), flowing.clone());
        std::thread::spawn(move || {
            while flowing.load(Ordering::SeqCst) {
                feed(&stdin, &fed, 3);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    write_in_parts(&dev, &json_filter, 5);
    run.wait_for_log("weir: watch: step `pass` swapped to the new ", 1);
    flowing.store(false, Ordering::SeqCst);
    feeder.join().unwrap();
    run.feed_until(|| true);
    let fed_before_broken = run.fed.load(Ordering::SeqCst);

    // A broken build: refused with the reason; json-filter keeps running.
    // (On a slow machine a part of the rebuild above may have been seen
    // and refused already.)
    let refusal = "weir: watch: step `pass` keeps its version: the new ";
    let refused_before = run.log().matches(refusal).count();
    std::fs::write(&dev, b"\0asm not really").unwrap();
    run.wait_for_log(refusal, refused_before + 1);
    let log = run.log();
    assert_contains(
        &log,
        "dev-plugin.wasm was refused: step `pass`: the new version was refused (component)",
    );
    run.feed_until(|| true);

    // A later good build (noop again) is swapped to.
    let fed_before_fix = run.fed.load(Ordering::SeqCst);
    write_in_parts(&dev, &noop, 3);
    run.wait_for_log("weir: watch: step `pass` swapped to the new ", 2);
    run.feed_until(|| true);

    drop(run.stdin.lock().unwrap().take());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut run = run;
    let status = loop {
        if let Some(s) = run.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "weir run did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    let log = run.log();
    assert_eq!(status.code(), Some(0), "{log}");
    let fed = run.fed.load(Ordering::SeqCst);
    assert_contains(&log, &format!("{fed} records in, "));

    // Each swap: one line, with the digests and times.
    let swaps: Vec<&str> = log.lines().filter(|l| l.contains(" swapped to ")).collect();
    assert_eq!(swaps.len(), 2, "{log}");
    let (v1, v2) = (digest("noop"), digest("json-filter"));
    assert_contains(
        swaps[0],
        &format!(": {} -> {} (prepared in ", &v1[..12], &v2[..12]),
    );
    assert_contains(
        swaps[1],
        &format!(": {} -> {} (prepared in ", &v2[..12], &v1[..12]),
    );
    assert!(swaps[0].contains(", cut over in "), "{}", swaps[0]);

    // Nothing lost or doubled: every even record came out once, and the
    // odd ones came out exactly while noop ran: before the first swap and
    // after the second, each a single unbroken stretch.
    let mut outputs = run.outputs();
    let len = outputs.len();
    outputs.sort_unstable();
    outputs.dedup();
    assert_eq!(outputs.len(), len, "a record came out twice");
    let evens: Vec<u64> = outputs.iter().copied().filter(|n| n % 2 == 0).collect();
    assert_eq!(evens, (0..fed).step_by(2).collect::<Vec<_>>());
    let runs = odd_runs(&outputs);
    assert_eq!(runs.len(), 2, "odd records by noop: {runs:?}");
    let ((first, switched), (back, last)) = (runs[0], runs[1]);
    assert_eq!(first, 1);
    assert!(switched >= 39, "noop ran the first 40 records: {runs:?}");
    assert!(
        switched < fed_before_broken,
        "json-filter ran before the broken file: {runs:?}"
    );
    assert!(
        back >= fed_before_fix,
        "noop came back after the fix: {runs:?}"
    );
    let last_odd = if fed.is_multiple_of(2) {
        fed - 1
    } else {
        fed - 2
    };
    assert_eq!(last, last_odd, "{runs:?}");
}

#[test]
fn watch_with_no_plugin_step_says_so_and_runs() {
    let f = Fixture::new(
        "
sources:
  in: { kind: file, path: in.jsonl }
sinks:
  out: { kind: file, path: out.jsonl }
",
        &[("in.jsonl", &(line("k", json!({ "n": 1 })) + "\n"))],
    );
    let pipeline = f.pipeline_path();
    let out = weir(&["run", "--watch", pipeline.to_str().unwrap()]);
    let err = weir_tests::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_contains(
        &err,
        "weir: watch: the pipeline has no plugin step, so there is nothing to watch",
    );
    assert_contains(&err, "1 record in, 1 out");
}
