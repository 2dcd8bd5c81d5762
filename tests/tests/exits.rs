//! How `weir run` ends (issue 11, items 4 and 5): its exit status, the
//! summary line on stderr, where each source stopped, and a prompt stop on
//! the first Ctrl-C or SIGTERM even while a plugin call is stuck.

use std::io::Write;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir::{RunOptions, RunReport, SinkOutput};
use weir_tests::{Fixture, assert_contains, collect_stream, stderr, weir, weir_bin};

/// Six records, one batch of two at a time on one partition: the second
/// batch holds the trigger, so the first one is out before the plugin
/// sticks (or poisons) and the third waits behind it.
const INPUT: &str = "ok-0\nok-1\nok-2\nboom\nok-4\nok-5\n";

fn input_lines() -> String {
    INPUT
        .lines()
        .enumerate()
        .map(|(i, v)| format!("{{\"key\":\"k\",\"value\":\"{v}\",\"timestamp\":{i}}}\n"))
        .collect()
}

/// A pipeline whose `misbehave` step runs in `mode` (`loop` spins forever
/// on `boom`, with a two-minute limit per batch), reading `source`.
fn pipeline(mode: &str, policy: &str, source: &str) -> Fixture {
    Fixture::new(
        &format!(
            "
partitions: 1
batch-size: 2
error-policy: {policy}
dead-letter: dlq
sources:
  in: {source}
plugins:
  bad: {{ path: '{{plugin:misbehave}}' }}
steps:
  - name: judge
    kind: flat-map
    plugin: bad
    config: {{ mode: {mode}, trigger: boom }}
    limits: {{ time-per-batch: 120s }}
sinks:
  out: {{ kind: file, path: out.jsonl, value-format: string }}
  dlq: {{ kind: file, path: dlq.jsonl, value-format: string }}
"
        ),
        &[("in.jsonl", &input_lines())],
    )
}

const FILE: &str = "{ kind: file, path: in.jsonl, value-format: string }";
const STDIN: &str = "{ kind: stdin, value-format: string }";

/// The values a file sink holds (none when it was never written).
fn values(f: &Fixture, file: &str) -> Vec<String> {
    std::fs::read_to_string(f.path(file))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["value"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The last line of stderr: the summary.
fn summary(err: &str) -> &str {
    err.lines().last().unwrap_or("")
}

#[test]
fn a_finished_run_exits_0_and_its_summary_says_what_was_dead_lettered() {
    let f = pipeline("poison", "dead-letter", FILE);
    let out = weir(&["run", f.pipeline_path().to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let last = summary(&err);
    assert!(last.starts_with("weir: finished in "), "{err}");
    assert!(
        last.ends_with(&format!(
            ", and 1 record dead-lettered to `dlq` ({}): \
             6 records in, 5 out, 1 dead-lettered, 0 skipped, 0 instance restarts",
            f.path("dlq.jsonl").display()
        )),
        "{err}"
    );
    assert_eq!(values(&f, "dlq.jsonl"), vec!["boom"]);
    // --quiet: no summary (and no progress).
    let quiet = weir(&["run", "--quiet", f.pipeline_path().to_str().unwrap()]);
    assert_eq!(quiet.status.code(), Some(0));
    assert!(!stderr(&quiet).contains("weir: "), "{}", stderr(&quiet));
}

#[test]
fn a_failed_run_exits_1_with_its_error_and_summary() {
    let f = pipeline("poison", "fail", FILE);
    let out = weir(&["run", f.pipeline_path().to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_contains(&err, "error: stopped by the `fail` error policy");
    let last = summary(&err);
    assert!(
        last.starts_with("weir: failed after ") && last.contains("6 records in, "),
        "{err}"
    );
    // Where the source stopped, before the summary.
    assert!(
        err.contains("weir: source `in` (") && err.contains("stopped after line 6"),
        "{err}"
    );
}

#[test]
fn invalid_pipelines_and_fixtures_exit_2_and_failing_cases_1() {
    let f = pipeline("poison", "dead-letter", FILE);
    let bad = f.path("bad.yaml");
    std::fs::write(&bad, "sources:\n  in: { kind: fiel, path: in.jsonl }\n").unwrap();
    for command in ["run", "validate", "test"] {
        let out = weir(&[command, bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        assert_contains(&stderr(&out), "bad.yaml:2:");
    }
    // Usage errors are clap's: 2 as well.
    assert_eq!(weir(&["run"]).status.code(), Some(2));
    // `weir test` with no case folder: an invalid fixture setup.
    let out = weir(&["test", f.pipeline_path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A case whose output differs fails: 1. (The folder holds two pipeline
    // files, so each has its cases under `tests/<file stem>/`.)
    let case = f.path("tests/pipeline/one");
    std::fs::create_dir_all(case.join("input")).unwrap();
    std::fs::create_dir_all(case.join("expected")).unwrap();
    std::fs::write(case.join("input/in.jsonl"), input_lines()).unwrap();
    std::fs::write(case.join("expected/out.jsonl"), "{\"value\":\"other\"}\n").unwrap();
    let out = weir(&["test", f.pipeline_path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// `weir run` with stderr read as it comes (debug logs of weir's own, so
/// the test can see when tasks started).
struct Running {
    child: Child,
    err: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Running {
    fn start(f: &Fixture) -> Running {
        let mut child = Command::new(weir_bin())
            .args(["run", f.pipeline_path().to_str().unwrap()])
            .env("WEIR_CACHE_DIR", weir_tests::cache_dir())
            .env("RUST_LOG", "weir=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (err, reader) = collect_stream(child.stderr.take().unwrap());
        Running { child, err, reader }
    }

    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.err.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` within 60 s:\n{}",
                self.err.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits for the exit; returns it, how long it took
    /// and stderr.
    fn signal(mut self, signal: &str) -> (ExitStatus, Duration, String) {
        let sent = Instant::now();
        let kill = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if sent.elapsed() > Duration::from_secs(30) {
                self.child.kill().unwrap();
                panic!(
                    "weir still ran 30 s after {signal}:\n{}",
                    self.err.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = sent.elapsed();
        self.reader.join().unwrap();
        let err = self.err.lock().unwrap().clone();
        (status, took, err)
    }

    /// Sends `signal` (`INT`, `TERM`), which must stop the run of `f`
    /// within seconds with exit status `code`, as an interrupted run
    /// (`assert_interrupted_cleanly`) whose summary names the signal;
    /// returns stderr.
    fn assert_stopped_by(self, signal: &str, code: i32, f: &Fixture) -> String {
        let (status, took, err) = self.signal(signal);
        assert_eq!(status.code(), Some(code), "{err}");
        assert!(
            took < Duration::from_secs(5),
            "took {took:?} to stop:\n{err}"
        );
        assert_interrupted_cleanly(f, &err);
        assert!(
            summary(&err).starts_with(&format!("weir: interrupted by SIG{signal} after ")),
            "{err}"
        );
        err
    }
}

/// What an interrupted run must have done: the first batch out, nothing
/// dead-lettered, no trap or timeout reported, four records not processed.
fn assert_interrupted_cleanly(f: &Fixture, err: &str) {
    assert_eq!(values(f, "out.jsonl"), vec!["ok-0", "ok-1"], "{err}");
    assert!(values(f, "dlq.jsonl").is_empty(), "{err}");
    for word in ["trapped", "time limit", "fresh instance"] {
        assert!(!err.contains(word), "`{word}` reported:\n{err}");
    }
    assert!(
        summary(err).contains(
            "6 records in, 2 out, 0 dead-lettered, 0 skipped, 0 instance restarts, 4 not processed"
        ),
        "{err}"
    );
}

#[test]
fn the_first_ctrl_c_interrupts_a_stuck_plugin_call_and_exits_130() {
    let f = pipeline("loop", "dead-letter", FILE);
    let run = Running::start(&f);
    run.wait_for("task started");
    // The first batch is through and the second is spinning.
    std::thread::sleep(Duration::from_millis(1500));
    let err = run.assert_stopped_by("INT", 130, &f);
    let last = summary(&err);
    assert!(
        last.contains("(from files: read again by the next run)"),
        "{err}"
    );
    let bytes = input_lines().len();
    assert_contains(
        &err,
        &format!(
            "weir: source `in` ({}) stopped after line 6: the next unread record is at line 7, byte {bytes}",
            f.path("in.jsonl").display()
        ),
    );
}

#[test]
fn sigterm_interrupts_a_stuck_plugin_call_and_exits_143_counting_what_stdin_lost() {
    let f = pipeline("loop", "dead-letter", STDIN);
    let mut run = Running::start(&f);
    run.wait_for("task started");
    // One write: the source reads it at once and hands over all three
    // batches; stdin stays open, so only the signal ends the run.
    let mut stdin = run.child.stdin.take().unwrap();
    stdin.write_all(input_lines().as_bytes()).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let err = run.assert_stopped_by("TERM", 143, &f);
    drop(stdin);
    let last = summary(&err);
    assert!(last.contains("(from stdin: lost)"), "{err}");
    assert_contains(
        &err,
        &format!(
            "weir: source `in` (stdin) stopped after reading 6 lines ({} bytes)",
            input_lines().len()
        ),
    );
}

/// What a captured sink received.
type Captured = Arc<Mutex<Vec<u8>>>;

/// Runs `f` in process with `sinks` captured, then after a second asks it
/// to stop and interrupts the plugin call it is stuck in, as the first
/// Ctrl-C does. Returns the report, how long the run took to end after the
/// interrupt, and what each sink received.
fn run_and_interrupt<const N: usize>(
    f: &Fixture,
    sinks: [&str; N],
) -> (RunReport, Duration, [Captured; N]) {
    let topo = f.topology();
    let captured: [Captured; N] = std::array::from_fn(|_| Captured::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut options = RunOptions {
        stop: Some(stop.clone()),
        ..RunOptions::default()
    };
    for (name, buf) in sinks.iter().zip(&captured) {
        options
            .outputs
            .insert(name.to_string(), SinkOutput::Capture(buf.clone()));
    }
    let interrupter = topo.engine.interrupter();
    let (report, took) = std::thread::scope(|s| {
        let run = s.spawn(|| weir::run(&topo, options));
        std::thread::sleep(Duration::from_millis(1000));
        let interrupted_at = Instant::now();
        stop.store(true, Ordering::Relaxed);
        interrupter.interrupt();
        let report = run.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        (report, interrupted_at.elapsed())
    });
    (report, took, captured)
}

#[test]
fn an_interrupter_stops_a_stuck_call_in_process_and_the_report_counts_what_was_not_processed() {
    let f = pipeline("loop", "dead-letter", FILE);
    let (report, took, [out, dlq]) = run_and_interrupt(&f, ["out", "dlq"]);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(report.interrupted);
    assert_eq!(report.counts.records_in, 6);
    assert_eq!(report.counts.records_out, 2);
    assert_eq!(report.counts.not_processed, 4);
    assert_eq!(report.counts.dead_lettered, 0);
    assert_eq!(report.counts.restarts, 0);
    let written = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    assert_eq!(written.lines().count(), 2, "{written}");
    assert!(dlq.lock().unwrap().is_empty());
}

#[test]
fn what_an_interrupted_batch_sent_down_another_branch_is_taken_back() {
    // `copy` sees each batch before `judge` sticks on it: the stuck batch's
    // copies must not be written either.
    let f = Fixture::new(
        "
partitions: 1
batch-size: 2
sources:
  in: { kind: file, path: in.jsonl, value-format: string }
plugins:
  noop: { path: '{plugin:noop}' }
  bad: { path: '{plugin:misbehave}' }
steps:
  - { name: copy, kind: filter, plugin: noop, from: in }
  - { name: judge, kind: flat-map, plugin: bad, from: in, config: { mode: loop, trigger: boom }, limits: { time-per-batch: 120s } }
sinks:
  copies: { kind: stdout, from: copy, value-format: string }
  judged: { kind: stdout, from: judge, value-format: string }
",
        &[("in.jsonl", &input_lines())],
    );
    let (report, _, [copies, judged]) = run_and_interrupt(&f, ["copies", "judged"]);
    let values = |buf: &Captured| -> Vec<String> {
        String::from_utf8(buf.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["value"].to_string())
            .collect()
    };
    assert_eq!(values(&copies), ["\"ok-0\"", "\"ok-1\""]);
    assert_eq!(values(&judged), ["\"ok-0\"", "\"ok-1\""]);
    assert_eq!(report.counts.not_processed, 4);
}
