//! Plugins that misbehave on purpose are stopped by their limits, the host
//! survives, and the pipeline goes on as its policy says.

use std::time::{Duration, Instant};

use weir_tests::{Fixture, assert_contains};

fn input(n: usize, bad_at: usize) -> String {
    (0..n)
        .map(|i| {
            let v = if i == bad_at {
                "boom".to_string()
            } else {
                format!("ok-{i}")
            };
            format!("{{\"key\":\"k{i}\",\"value\":\"{v}\",\"timestamp\":{i}}}\n")
        })
        .collect()
}

/// Runs misbehave in `mode` over 50 records with `boom` the 21st.
fn run_mode(mode: &str, limits: &str) -> (weir::RunReport, weir_tests::Captured) {
    run_misbehave(
        &format!("{{ mode: {mode}, trigger: boom }}"),
        limits,
        50,
        20,
    )
}

fn check(mode: &str, limits: &str, kind: &str) -> Vec<serde_json::Value> {
    let (report, dlq) = check_output(mode, limits, kind);
    assert!(
        report.counts.restarts >= 1,
        "{mode}: a fresh instance took over"
    );
    dlq
}

fn check_output(mode: &str, limits: &str, kind: &str) -> (weir::RunReport, Vec<serde_json::Value>) {
    let (report, out) = run_mode(mode, limits);
    let ok = out.values("out");
    assert_eq!(
        ok.len(),
        49,
        "{mode}: every good record of the batch gets through"
    );
    assert!(!ok.iter().any(|v| v == "boom"));
    let dlq = out.records("dlq");
    assert_eq!(dlq.len(), 1, "{mode}");
    assert_eq!(dlq[0]["key"], "k20");
    assert_eq!(
        dlq[0]["headers"]["weir.error.kind"], kind,
        "{mode}: {dlq:?}"
    );
    (report, dlq)
}

#[test]
fn an_infinite_loop_is_stopped_by_the_time_limit() {
    let started = Instant::now();
    let dlq = check("loop", "{ time-per-batch: 200ms }", "timeout");
    assert!(
        dlq[0]["headers"]["weir.error.reason"]
            .as_str()
            .unwrap()
            .contains("200 ms")
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_memory_bomb_is_stopped_by_the_memory_limit() {
    let dlq = check("alloc", "{ memory: 16MiB }", "memory");
    assert!(
        dlq[0]["headers"]["weir.error.reason"]
            .as_str()
            .unwrap()
            .contains("16777216")
    );
}

#[test]
fn a_panic_is_a_trap_not_a_crash_and_its_message_is_the_reason() {
    let dlq = check("panic", "{}", "trap");
    let reason = dlq[0]["headers"]["weir.error.reason"].as_str().unwrap();
    assert!(
        reason.starts_with("plugin trapped: panicked at misbehave/src/lib.rs:"),
        "{reason}"
    );
    assert!(
        reason.ends_with(": misbehave: panic on purpose"),
        "{reason}"
    );
    assert!(!reason.contains("backtrace"), "{reason}");
}

#[test]
fn a_stack_overflow_is_called_one() {
    let dlq = check("stack-overflow", "{}", "trap");
    let reason = dlq[0]["headers"]["weir.error.reason"].as_str().unwrap();
    assert!(
        reason.starts_with("plugin trapped: stack overflow"),
        "{reason}"
    );
    assert!(!reason.contains("wasm function"), "{reason}");
    assert_eq!(dlq[0]["headers"]["weir.error.operator"], "judge");
}

#[test]
fn oversized_output_is_refused() {
    let (report, _) = check_output(
        "big-output",
        "{ memory: 128MiB, output-per-record: 1MiB }",
        "output-limit",
    );
    assert_eq!(report.counts.restarts, 0, "the instance itself is healthy");
}

fn probe(mode: &str) -> String {
    let f = Fixture::new(
        &format!(
            "
sources:
  in: {{ kind: file, path: in.jsonl, value-format: string }}
plugins:
  bad: {{ path: '{{plugin:misbehave}}' }}
steps:
  - {{ name: snoop, kind: flat-map, plugin: bad, config: {{ mode: {mode}, trigger: boom }} }}
sinks:
  out: {{ kind: stdout, value-format: string }}
"
        ),
        &[("in.jsonl", "{\"value\":\"boom\"}\n")],
    );
    let (result, out) = f.run();
    result.unwrap();
    out.values("out")[0].as_str().unwrap().to_string()
}

#[test]
fn a_plugin_cannot_read_files() {
    let seen = probe("read-file");
    assert!(seen.starts_with("error:"), "{seen}");
    assert!(!seen.contains("root:"), "{seen}");
}

#[test]
fn a_plugin_cannot_read_the_environment() {
    // The host's own environment is not empty (PATH, HOME, the CARGO_*
    // variables cargo test sets), so an empty list means none of it
    // reached the plugin. (Setting a variable here would race with the
    // other tests of this binary, which read the environment.)
    let host_vars = std::env::vars_os().count();
    assert!(host_vars > 0, "the test needs a non-empty host environment");
    let seen = probe("read-env");
    assert_eq!(seen, "env: []");
}

#[test]
fn plugin_stdout_does_not_reach_the_output_stream() {
    let seen = probe("stdout");
    assert_eq!(
        seen, "boom",
        "the record passes; the prints went to the log"
    );
}

/// Runs misbehave with `config` and `limits` over `n` records (`boom` at
/// `bad_at`), dead-lettering to a captured sink.
fn run_misbehave(
    config: &str,
    limits: &str,
    n: usize,
    bad_at: usize,
) -> (weir::RunReport, weir_tests::Captured) {
    let f = Fixture::new(
        &format!(
            "
error-policy: dead-letter
dead-letter: dlq
sources:
  in: {{ kind: file, path: in.jsonl, value-format: string }}
plugins:
  bad: {{ path: '{{plugin:misbehave}}' }}
steps:
  - name: judge
    kind: flat-map
    plugin: bad
    config: {config}
    limits: {limits}
sinks:
  out: {{ kind: stdout, value-format: string }}
  dlq: {{ kind: stdout, value-format: string }}
"
        ),
        &[("in.jsonl", &input(n, bad_at))],
    );
    let (result, out) = f.run();
    (result.unwrap_or_else(|e| panic!("{config}: {e}")), out)
}

#[test]
fn a_value_within_the_configured_limits_passes_whatever_its_size() {
    // 140 MB: above wasmtime's default host-call budget (128 MiB), well
    // within `memory` and `output-per-record`.
    let (report, out) = run_misbehave(
        "{ mode: big-output, trigger: boom, size: 140000000 }",
        "{ memory: 1GiB, output-per-record: 300MiB }",
        50,
        20,
    );
    assert!(out.records("dlq").is_empty(), "{:?}", out.records("dlq"));
    let values = out.values("out");
    assert_eq!(values.len(), 50);
    assert_eq!(values[20].as_str().unwrap().len(), 140_000_000);
    assert_eq!(report.counts.restarts, 0);
}

#[test]
fn ten_million_outputs_over_the_limit_are_an_output_limit_not_a_trap() {
    // 10M records of 11 bytes each (key `k20`, an empty value, 8): 110 MB,
    // over `output-per-record`; the packed result (270 MB, above wasmtime's
    // default host-call budget of 128 MiB) fits `memory`.
    let (report, out) = run_misbehave(
        "{ mode: fan-out, trigger: boom, count: 10000000, size: 0 }",
        "{ memory: 1GiB, output-per-record: 100MiB, time-per-batch: 60s }",
        50,
        20,
    );
    assert_eq!(out.values("out").len(), 49);
    let dlq = out.records("dlq");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0]["key"], "k20");
    assert_eq!(dlq[0]["headers"]["weir.error.kind"], "output-limit");
    assert_eq!(dlq[0]["headers"]["weir.error.operator"], "judge");
    assert_eq!(report.counts.restarts, 0, "the instance itself is healthy");
}

#[test]
fn full_batches_of_large_outputs_under_the_limit_do_not_trap() {
    // 600 KB per record, under the default 1 MiB per record; a full batch
    // of 256 returns 154 MB, above wasmtime's default host-call budget.
    let (report, out) = run_misbehave(
        "{ mode: big-output, every: true, size: 600000 }",
        "{ memory: 1GiB, time-per-batch: 60s }",
        300,
        usize::MAX,
    );
    assert!(out.records("dlq").is_empty());
    let values = out.values("out");
    assert_eq!(values.len(), 300);
    assert!(values.iter().all(|v| v.as_str().unwrap().len() == 600_000));
    assert_eq!(
        report.counts.restarts, 0,
        "no trap, no instance restarted, no record-by-record rerun"
    );
}

/// Runs `weir run` on a misbehave pipeline over `n` records; returns its
/// stderr (the host log) and the records written to `out.jsonl`.
fn weir_run_misbehave(config: &str, limits: &str, n: usize, args: &[&str]) -> (String, usize) {
    let f = Fixture::new(
        &format!(
            "
batch-size: 16
sources:
  in: {{ kind: file, path: in.jsonl, value-format: string }}
plugins:
  bad: {{ path: '{{plugin:misbehave}}' }}
steps:
  - {{ name: chatty, kind: flat-map, plugin: bad, config: {config}, limits: {limits} }}
sinks:
  out: {{ kind: file, path: out.jsonl, value-format: string }}
"
        ),
        &[("in.jsonl", &input(n, usize::MAX))],
    );
    let path = f.pipeline_path();
    let run = weir_tests::weir(&[args, &["run", path.to_str().unwrap()]].concat());
    let stderr = weir_tests::stderr(&run);
    assert!(run.status.success(), "{stderr}");
    let out = std::fs::read_to_string(f.path("out.jsonl")).unwrap();
    (stderr, out.lines().count())
}

#[test]
fn a_plugin_log_flood_is_bounded_and_the_drops_are_counted() {
    // 1,000 records, each logging 20 lines on each of the log import
    // (info), stdout (debug) and stderr (warn): at weir's default level
    // (warn), 20,000 lines shown, unbounded.
    let (stderr, out) = weir_run_misbehave(
        "{ mode: log, every: true, count: 20, message: flood }",
        "{ log-lines-per-second: 50 }",
        1000,
        &[],
    );
    assert_eq!(out, 1000, "every record still gets through");
    let flood = stderr.lines().filter(|l| l.contains("flood")).count();
    assert!(
        (50..=200).contains(&flood),
        "a burst of 50 lines, then 50 per second: {flood} lines"
    );
    assert_eq!(
        stderr.matches("lines over that are dropped").count(),
        1,
        "the first drop is said once: {stderr}"
    );
    let dropped = stderr
        .lines()
        .find_map(|l| {
            l.split("step `chatty`: dropped ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count of dropped lines: {stderr}"));
    assert_eq!(dropped + flood, 20_000, "every line shown or counted");
}

#[test]
fn a_plugin_cannot_forge_a_host_log_line() {
    let forged = "2026-11-30T06:00:00.000000Z  INFO weir: all records committed";
    let (stderr, _) = weir_run_misbehave(
        &format!("{{ mode: log, trigger: ok-1, message: \"hello\\n{forged}\\r\" }}"),
        "{}",
        3,
        &["-v"],
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with(forged)),
        "a forged line: {stderr}"
    );
    let escaped = format!("hello\\n{forged}\\r");
    assert_eq!(
        stderr.lines().filter(|l| l.contains(&escaped)).count(),
        1,
        "the log import's message on one line: {stderr}"
    );
    // On stderr a newline ends a line: each is the host's, marked as the
    // plugin's, and the carriage return is escaped.
    let printed = format!("WARN {forged}\\r operator=\"chatty\" stream=\"stderr\"");
    assert_contains(&stderr, &printed);
}

#[test]
fn a_replacement_with_other_ports_names_the_record_that_broke_its_predecessor() {
    let switch_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 1500;
    let f = Fixture::new(
        &format!(
            "
error-policy: dead-letter
dead-letter: dlq
batch-size: 1
sources:
  in: {{ kind: file, path: in.jsonl, value-format: string }}
plugins:
  bad: {{ path: '{{plugin:misbehave}}' }}
steps:
  - {{ name: shifty, kind: flat-map, plugin: bad, config: {{ mode: ports-change, trigger: boom, switch-at: {switch_at} }}, limits: {{ time-per-batch: 20s }} }}
sinks:
  out: {{ kind: stdout, value-format: string }}
  dlq: {{ kind: stdout, value-format: string }}
"
        ),
        &[("in.jsonl", &input(10, 6))],
    );
    let (result, _) = f.run();
    let error = result.unwrap_err().to_string();
    assert_contains(&error, "declared ports [\"out\"] before and [\"late\"] now");
    assert!(
        error.contains("panicked at")
            && error.contains("on the record at ")
            && error.contains("in.jsonl:7"),
        "names the record and what it did: {error}"
    );
}
