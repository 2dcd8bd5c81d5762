//! The `weir` binary: validation errors, the test driver, plugin tools and
//! the quickstart.

use std::process::Output;

use weir_tests::{Fixture, assert_contains, plugin, repo, stderr, stdout, weir};

fn validate(f: &Fixture) -> Output {
    weir(&["validate", f.pipeline_path().to_str().unwrap()])
}

/// Validation fails and the message names the pipeline file, the line and `needle`.
fn assert_invalid(pipeline: &str, files: &[(&str, &str)], line: Option<u32>, needle: &str) {
    let f = Fixture::new(pipeline, files);
    let out = validate(&f);
    let err = stderr(&out);
    assert!(!out.status.success(), "validation passed:\n{pipeline}");
    let expected_prefix = match line {
        Some(l) => format!("{}:{l}:", f.pipeline_path().display()),
        None => f.pipeline_path().display().to_string(),
    };
    assert!(
        err.contains(&expected_prefix),
        "expected `{expected_prefix}` in:\n{err}"
    );
    assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
}

const GOOD: &str = "
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  f: { path: '{plugin:json-filter}' }
steps:
  - { name: big, kind: filter, plugin: f, config: { field: amount, op: gt, value: 100 } }
sinks:
  out: { kind: stdout }
";

#[test]
fn a_good_pipeline_validates() {
    let out = validate(&Fixture::new(GOOD, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(
        &stdout(&out),
        "ok (1 sources, 1 steps, 1 sinks, 1 partitions on 1 worker threads)",
    );
}

#[test]
fn malformed_yaml() {
    assert_invalid(
        "sources:\n  in: { kind: file\n  path: x\n",
        &[],
        None,
        "pipeline.yaml:",
    );
}

#[test]
fn unknown_step_kind() {
    assert_invalid(
        &GOOD.replace("kind: filter", "kind: flter"),
        &[],
        Some(7),
        "step `big`: `kind` is `flter`, not one of filter | map | flat-map | branch | select-key | repartition | group-by | aggregate; did you mean `filter`?",
    );
}

#[test]
fn missing_plugin_file() {
    assert_invalid(
        "sources:\n  in: { kind: stdin }\nplugins:\n  f: { path: nowhere.wasm }\nsteps:\n  - { name: s, kind: map, plugin: f }\nsinks:\n  out: { kind: stdout }\n",
        &[],
        Some(4),
        "file not found",
    );
}

#[test]
fn sha256_mismatch() {
    let pinned = GOOD.replace(
        "'{plugin:json-filter}' }",
        &format!("'{{plugin:json-filter}}', sha256: {} }}", "0".repeat(64)),
    );
    assert_invalid(&pinned, &[], Some(5), "but the pipeline pins 0000");
}

#[test]
fn a_correct_sha256_pin_passes() {
    let bytes = std::fs::read(plugin("json-filter")).unwrap();
    let info = weir(&["plugin", "inspect", plugin("json-filter").to_str().unwrap()]);
    let sha = stdout(&info)
        .lines()
        .find_map(|l| l.strip_prefix("sha256:").map(|s| s.trim().to_string()))
        .unwrap();
    assert_eq!(sha.len(), 64);
    assert!(!bytes.is_empty());
    let pinned = GOOD.replace(
        "'{plugin:json-filter}' }",
        &format!("'{{plugin:json-filter}}', sha256: {sha} }}"),
    );
    let out = validate(&Fixture::new(&pinned, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_file_that_is_not_a_component() {
    let text = GOOD.replace("'{plugin:json-filter}'", "notes.wasm");
    assert_invalid(
        &text,
        &[("notes.wasm", "just text")],
        Some(5),
        "WebAssembly magic bytes",
    );
    let core_module = "\0asm\u{1}\0\0\0";
    assert_invalid(
        &text,
        &[("notes.wasm", core_module)],
        Some(5),
        "core WebAssembly module",
    );
}

#[test]
fn a_component_of_the_wrong_world() {
    assert_invalid(
        &GOOD.replace("json-filter", "wrong-world"),
        &[],
        Some(5),
        "component of another world",
    );
}

#[test]
fn a_refused_config() {
    assert_invalid(
        &GOOD.replace("op: gt", "op: between"),
        &[],
        Some(7),
        "refused its config",
    );
}

/// Issue 11, item 8: a `memory` limit below the component's initial memory
/// says so (it was "failed to instantiate: memory limit ... exceeded").
#[test]
fn a_memory_limit_below_the_plugins_initial_memory_is_named_as_such() {
    let text = GOOD.replace(
        "value: 100 } }",
        "value: 100 }, limits: { memory: 64KiB } }",
    );
    assert_invalid(&text, &[], Some(7), "step `big`: plugin needs ");
    assert_invalid(
        &text,
        &[],
        Some(7),
        " bytes of memory at start (its initial linear memory), more than the step's `memory` limit of 65536 bytes; raise `limits.memory` to at least ",
    );
}

/// Issue 11, item 8: the engine's pool is sized from the pipeline, so
/// `partitions: 1024` with three plugin steps validates and runs (it failed
/// at start: "failed to create memory pool mapping: mmap failed to reserve").
#[test]
fn a_thousand_partitions_of_three_plugin_steps_validate_and_run() {
    let text = "
partitions: 1024
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  f: { path: '{plugin:json-filter}' }
  e: { path: '{plugin:enricher}' }
steps:
  - { name: big, kind: filter, plugin: f, config: { field: amount, op: gt, value: 100 } }
  - { name: tag, kind: map, plugin: e, config: { set: { tier: large } } }
  - { name: tag2, kind: map, plugin: e, config: { set: { seen: true } } }
sinks:
  out: { kind: stdout }
";
    let input: String = (0..2000)
        .map(|i| {
            format!(
                "{{\"key\":\"k{i}\",\"value\":{{\"amount\":{}}}}}\n",
                i % 200
            )
        })
        .collect();
    let f = Fixture::new(text, &[("in.jsonl", &input)]);
    let out = validate(&f);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = weir(&["run", f.pipeline_path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().count(),
        990,
        "amounts 101..199 of each 200"
    );
}

#[test]
fn an_unknown_port() {
    let text = "
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  r: { path: '{plugin:router}' }
steps:
  - { name: route, kind: branch, plugin: r, config: { field: t, routes: { A: left }, default: right } }
sinks:
  a: { kind: stdout, from: route.left }
  b: { kind: stdout, from: route.middle }
";
    assert_invalid(text, &[], Some(10), "has no port `middle`");
    let unwired = text.replace("  b: { kind: stdout, from: route.middle }\n", "");
    assert_invalid(
        &unwired,
        &[],
        Some(7),
        "port `right` of branch step `route` is not wired",
    );
}

#[test]
fn test_driver_passes_and_fails_with_a_diff() {
    let input =
        "{\"key\":\"a\",\"value\":{\"amount\":150}}\n{\"key\":\"b\",\"value\":{\"amount\":50}}\n";
    let good = Fixture::new(
        GOOD,
        &[
            ("tests/case1/input/in.jsonl", input),
            (
                "tests/case1/expected/out.jsonl",
                "{\"key\":\"a\",\"value\":{\"amount\":150}}\n",
            ),
        ],
    );
    let out = weir(&["test", good.pipeline_path().to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_contains(&stdout(&out), "ok   case1");
    assert!(stdout(&out).contains("1 passed, 0 failed"));

    let bad = Fixture::new(
        GOOD,
        &[
            ("tests/case1/input/in.jsonl", input),
            (
                "tests/case1/expected/out.jsonl",
                "{\"key\":\"a\",\"value\":{\"amount\":151}}\n",
            ),
        ],
    );
    let out = weir(&["test", bad.pipeline_path().to_str().unwrap()]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert_contains(&text, "FAIL case1");
    assert_contains(&text, "sink `out` differs");
    assert_contains(&text, "-{\"key\":\"a\",\"value\":{\"amount\":151}}");
    assert_contains(&text, "+{\"key\":\"a\",\"value\":{\"amount\":150}}");
    assert_contains(&text, "0 passed, 1 failed");
}

/// Filters orders over 100 and tags them; a value that is not an object is
/// dead-lettered (with the partition it was in among its headers).
fn tagging_pipeline(partitions: u32) -> String {
    format!(
        "
partitions: {partitions}
error-policy: dead-letter
dead-letter: rejected
sources:
  in: {{ kind: file, path: in.jsonl }}
plugins:
  f: {{ path: '{{plugin:json-filter}}' }}
  e: {{ path: '{{plugin:enricher}}' }}
steps:
  - {{ name: big, kind: filter, plugin: f, config: {{ field: amount, op: gt, value: 100 }} }}
  - {{ name: tag, kind: map, plugin: e, config: {{ set: {{ tier: large }}, timestamp-field: seen_at }} }}
sinks:
  out: {{ kind: stdout, from: tag }}
  rejected: {{ kind: stdout }}
"
    )
}

#[test]
fn test_driver_leaves_out_what_an_expected_record_does_not_state_at_any_depth() {
    let input = concat!(
        r#"{"key":"a","value":{"amount":150,"order":{"id":1,"items":[{"sku":"x","qty":1},{"sku":"y","qty":2}]}},"timestamp":1000}"#,
        "\n",
        r#"{"key":"b","value":"not an object","timestamp":2000}"#,
        "\n",
    );
    // `value.amount`, `value.seen_at`, each item's `qty`, the timestamps and
    // all headers but two are left out.
    let out = r#"{"key":"a","value":{"order":{"id":1,"items":[{"sku":"x"},{"sku":"y"}]},"tier":"large"}}"#;
    let rejected =
        r#"{"key":"b","headers":{"weir.error.kind":"poison","weir.error.operator":"big"}}"#;
    let f = Fixture::new(
        &tagging_pipeline(1),
        &[
            ("tests/case1/input/in.jsonl", input),
            ("tests/case1/expected/out.jsonl", out),
            ("tests/case1/expected/rejected.jsonl", rejected),
        ],
    );
    let run = weir(&["test", f.pipeline_path().to_str().unwrap()]);
    assert!(run.status.success(), "{}{}", stdout(&run), stderr(&run));
    assert_contains(&stdout(&run), "1 passed, 0 failed");

    // What it states still counts, nested or in a header; the diff shows
    // the actual record cut to what the expected one states.
    let wrong_item = out.replace(r#"{"sku":"y"}"#, r#"{"sku":"z"}"#);
    let wrong_kind = rejected.replace("poison", "trap");
    for (sink, text) in [
        ("out", wrong_item.as_str()),
        ("rejected", wrong_kind.as_str()),
    ] {
        std::fs::write(f.path(&format!("tests/case1/expected/{sink}.jsonl")), text).unwrap();
        let run = weir(&["test", f.pipeline_path().to_str().unwrap()]);
        let report = stdout(&run);
        assert!(!run.status.success(), "{report}");
        assert_contains(&report, &format!("sink `{sink}` differs"));
        std::fs::write(f.path("tests/case1/expected/out.jsonl"), out).unwrap();
        std::fs::write(f.path("tests/case1/expected/rejected.jsonl"), rejected).unwrap();
    }
    std::fs::write(f.path("tests/case1/expected/out.jsonl"), &wrong_item).unwrap();
    let report = stdout(&weir(&["test", f.pipeline_path().to_str().unwrap()]));
    assert_contains(
        &report,
        r#"+{"key":"a","value":{"order":{"id":1,"items":[{"sku":"x"},{"sku":"y"}]},"tier":"large"}}"#,
    );
    // An array of another length differs.
    let fewer = out.replace(r#",{"sku":"y"}"#, "");
    std::fs::write(f.path("tests/case1/expected/out.jsonl"), fewer).unwrap();
    let run = weir(&["test", f.pipeline_path().to_str().unwrap()]);
    assert!(!run.status.success(), "{}", stdout(&run));
}

#[test]
fn blessed_fixtures_do_not_pin_the_partition_or_read_time() {
    // A key that is not in partition 0 of 4, so its dead-letter header
    // changes when `partitions` goes from 1 to 4.
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| weir::partition_for(k.as_bytes(), 4) != 0)
        .unwrap();
    let input = format!(
        "{}\n{}\n{}\n",
        r#"{"key":"a","value":{"amount":150},"timestamp":1000}"#,
        format_args!(r#"{{"key":"{key}","value":"not an object"}}"#),
        r#"{"key":"c","value":{"amount":300}}"#,
    );
    for (flag, survives) in [("--bless", true), ("--bless-all", false)] {
        let f = Fixture::new(
            &tagging_pipeline(1),
            &[("tests/case1/input/in.jsonl", &input)],
        );
        let pipeline = f.pipeline_path();
        let bless = weir(&["test", flag, pipeline.to_str().unwrap()]);
        assert!(bless.status.success(), "{}", stderr(&bless));
        let out = std::fs::read_to_string(f.path("tests/case1/expected/out.jsonl")).unwrap();
        let rejected =
            std::fs::read_to_string(f.path("tests/case1/expected/rejected.jsonl")).unwrap();
        let records = |text: &str| -> Vec<serde_json::Value> {
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let (out, rejected) = (records(&out), records(&rejected));
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        // A timestamp that came with the input is kept either way.
        assert_eq!(out[0]["timestamp"], 1000, "{out:?}");
        assert_eq!(rejected[0]["headers"]["weir.error.kind"], "poison");
        if survives {
            assert!(
                out[1].get("timestamp").is_none(),
                "read time pinned: {out:?}"
            );
            assert!(
                out[1]["value"].get("seen_at").is_none(),
                "read time pinned in the value: {out:?}"
            );
            assert_eq!(out[0]["value"]["seen_at"], 1000, "{out:?}");
            assert!(
                rejected[0].get("timestamp").is_none(),
                "read time pinned: {rejected:?}"
            );
            assert!(
                rejected[0]["headers"].get("weir.error.partition").is_none(),
                "partition pinned: {rejected:?}"
            );
        } else {
            assert!(out[1]["timestamp"].is_i64(), "{out:?}");
            assert_eq!(rejected[0]["headers"]["weir.error.partition"], "0");
        }
        // `--bless` passes as it is, and with four partitions and a later
        // read time; `--bless-all` pinned both, so a rerun fails.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let same = weir(&["test", pipeline.to_str().unwrap()]);
        assert_eq!(same.status.success(), survives, "{flag}: {}", stdout(&same));
        let text = std::fs::read_to_string(&pipeline).unwrap();
        std::fs::write(&pipeline, text.replace("partitions: 1", "partitions: 4")).unwrap();
        let again = weir(&["test", pipeline.to_str().unwrap()]);
        assert_eq!(
            again.status.success(),
            survives,
            "{flag}: {}{}",
            stdout(&again),
            stderr(&again)
        );
        if !survives {
            assert_contains(&stdout(&again), "weir.error.partition");
        }
    }
}

#[test]
fn each_pipeline_in_a_folder_runs_only_its_own_cases() {
    let stdin_pipeline = "
sources:
  in: { kind: stdin }
sinks:
  out: { kind: stdout }
";
    let input =
        "{\"key\":\"a\",\"value\":{\"amount\":150}}\n{\"key\":\"b\",\"value\":{\"amount\":50}}\n";
    let f = Fixture::new(
        GOOD,
        &[
            ("stdin.yaml", stdin_pipeline),
            ("in.jsonl", ""),
            ("tests/pipeline/big-only/input/in.jsonl", input),
            (
                "tests/pipeline/big-only/expected/out.jsonl",
                "{\"key\":\"a\"}\n",
            ),
            ("tests/stdin/everything/input/in.jsonl", input),
            (
                "tests/stdin/everything/expected/out.jsonl",
                "{\"key\":\"a\"}\n{\"key\":\"b\"}\n",
            ),
        ],
    );
    let run = weir(&["test", f.pipeline_path().to_str().unwrap()]);
    let report = stdout(&run);
    assert!(run.status.success(), "{report}{}", stderr(&run));
    assert_contains(&report, "ok   big-only");
    assert!(!report.contains("everything"), "{report}");
    let run = weir(&["test", f.path("stdin.yaml").to_str().unwrap()]);
    let report = stdout(&run);
    assert!(run.status.success(), "{report}{}", stderr(&run));
    assert_contains(&report, "ok   everything");
    assert!(!report.contains("big-only"), "{report}");

    // Cases straight under tests/ are no one's when two pipelines share
    // the folder: refused, naming where they go, not run for both.
    let shared = Fixture::new(
        GOOD,
        &[
            ("stdin.yaml", stdin_pipeline),
            ("tests/case1/input/in.jsonl", input),
            ("tests/case1/expected/out.jsonl", "{\"key\":\"a\"}\n"),
        ],
    );
    let run = weir(&["test", shared.path("stdin.yaml").to_str().unwrap()]);
    assert!(!run.status.success(), "{}", stdout(&run));
    assert!(
        stderr(&run).contains("pipeline.yaml, stdin.yaml") && stderr(&run).contains("tests/stdin"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn plugin_inspect_describes_components() {
    let out = weir(&["plugin", "inspect", plugin("router").to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert_contains(&text, "world:    weir:plugin/transformer@0.2.0");
    assert_contains(&text, "kinds:    branch");
    assert_contains(&text, "weir:plugin/transform@0.2.0");
    assert_contains(&text, "runnable: yes");

    let out = weir(&["plugin", "inspect", plugin("wrong-world").to_str().unwrap()]);
    let text = stdout(&out);
    assert!(!out.status.success());
    assert_contains(&text, "wasi:cli/run");
    assert_contains(&text, "runnable: no");
}

#[test]
fn quickstart_prints_transformed_records() {
    let pipeline = repo().join("examples/quickstart/pipeline.yaml");
    let out = weir(&["run", "--quiet", pipeline.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut ids: Vec<i64> = stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["value"]["tier"], "large");
            v["value"]["order_id"].as_i64().unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 3, 5, 6]);
    let test = weir(&["test", pipeline.to_str().unwrap()]);
    assert!(test.status.success(), "{}", stdout(&test));
}

#[test]
fn plugin_output_and_log_lines_go_to_the_host_log_with_the_operator_name() {
    let f = Fixture::new(
        "
sources:
  in: { kind: file, path: in.jsonl, value-format: string }
plugins:
  m: { path: '{plugin:misbehave}' }
steps:
  - { name: chatty, kind: flat-map, plugin: m, config: { mode: stdout, trigger: boom } }
sinks:
  out: { kind: stdout, value-format: string }
",
        &[("in.jsonl", "{\"key\":\"k\",\"value\":\"boom\"}\n")],
    );
    let out = weir(&["-vv", "run", "--quiet", f.pipeline_path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (log, records) = (stderr(&out), stdout(&out));
    assert_eq!(
        records.lines().count(),
        1,
        "only the record on stdout: {records}"
    );
    for line in [
        "misbehave says hello through the log import",
        "misbehave says hello on stdout",
        "misbehave says hello on stderr",
    ] {
        let found = log
            .lines()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("`{line}` not in:\n{log}"));
        assert!(found.contains("chatty"), "no operator name in `{found}`");
    }
}

/// `weir run` on a stdin → no-op → stdout pipeline, all three piped.
fn run_stdin_pipeline() -> (Fixture, std::process::Child) {
    use std::process::{Command, Stdio};
    let f = Fixture::new(
        "
sources:
  in: { kind: stdin }
plugins:
  noop: { path: '{plugin:noop}' }
steps:
  - { name: pass, kind: filter, plugin: noop }
sinks:
  out: { kind: stdout }
",
        &[],
    );
    let child = Command::new(weir_tests::weir_bin())
        .args(["run", "--quiet", f.pipeline_path().to_str().unwrap()])
        .env("WEIR_CACHE_DIR", weir_tests::cache_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (f, child)
}

#[test]
fn stdin_streams_and_ctrl_c_stops_cleanly() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Command;
    use std::time::{Duration, Instant};

    let (_f, mut child) = run_stdin_pipeline();
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..3 {
        writeln!(stdin, "{{\"key\":\"k{i}\",\"value\":{{\"n\":{i}}}}}").unwrap();
    }
    stdin.flush().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => got.push(l),
            Err(_) => panic!("waited 20 s for 3 records streamed from stdin; got {got:?}"),
        }
    }
    // stdin stays open: the run only ends because of the signal.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("weir did not stop within 20 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    assert_eq!(exit.code(), Some(130), "exit status {exit:?}");
    assert!(got[2].contains("\"n\":2"), "{got:?}");
}

/// Runs `weir run` on a pipeline whose file source is a FIFO, writing a
/// second record only once `wait_before_second` says so (given the output
/// so far); returns what appeared on stdout and stderr.
fn slow_run(
    with_terminal: bool,
    mut wait_before_second: impl FnMut(&Fixture, &str) -> bool,
) -> String {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let f = Fixture::new(
        "
sources:
  in: { kind: file, path: in.fifo }
plugins:
  noop: { path: '{plugin:noop}' }
steps:
  - { name: pass, kind: filter, plugin: noop }
sinks:
  out: { kind: file, path: out.jsonl }
",
        &[],
    );
    let fifo = f.path("in.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let weir = weir_tests::weir_bin();
    let run = format!("{} run {}", weir.display(), f.pipeline_path().display());
    let mut cmd = if with_terminal {
        // `script` gives the child a pseudo-terminal, as a person's shell would.
        let mut c = Command::new("script");
        c.args(["-qefc", &run, "/dev/null"]);
        c
    } else {
        let mut c = Command::new(&weir);
        c.args(["run", f.pipeline_path().to_str().unwrap()]);
        c
    };
    let mut child = cmd
        .env("WEIR_CACHE_DIR", weir_tests::cache_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both streams are read as they come, so the test can wait on them.
    let seen = Arc::new(Mutex::new(String::new()));
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut stream| {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    })
    .collect();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writeln!(writer, "{{\"key\":\"a\",\"value\":1}}").unwrap();
    writer.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wait_before_second(&f, &seen.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "the condition for the second record did not hold within 30 s; output:\n{}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    writeln!(writer, "{{\"key\":\"b\",\"value\":2}}").unwrap();
    drop(writer);
    let status = child.wait().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert!(status.success(), "{seen}");
    let written = std::fs::read_to_string(f.path("out.jsonl")).unwrap();
    assert_eq!(written.lines().count(), 2);
    // `script` merges the child's stdout and stderr into its own stdout.
    seen
}

#[test]
fn progress_shows_on_a_terminal_and_not_when_piped() {
    use std::time::{Duration, Instant};

    // On a terminal: the second record waits until a progress line shows
    // the first one.
    let started = Instant::now();
    let shown = slow_run(true, |_, out| out.contains("in 1 ("));
    assert_contains(&shown, "dead-lettered 0");
    let drawn_within = started.elapsed();
    // Piped: the first record is through (written to the file sink), and
    // the run then stays open as long again as the terminal run needed to
    // draw its line, plus a refresh (250 ms); nothing may be drawn.
    let mut through: Option<Instant> = None;
    let piped = slow_run(false, |f, _| {
        let written = std::fs::read_to_string(f.path("out.jsonl")).unwrap_or_default();
        if written.lines().count() < 1 {
            return false;
        }
        let since = *through.get_or_insert_with(Instant::now);
        since.elapsed() >= drawn_within + Duration::from_millis(250)
    });
    assert!(
        !piped.contains("in 1 ("),
        "progress printed while piped:\n{piped}"
    );
}

#[test]
fn a_closed_stdout_stops_the_run_with_a_clear_error() {
    use std::io::{BufRead, BufReader, Write};
    use std::time::{Duration, Instant};

    let (_f, mut child) = run_stdin_pipeline();
    let mut stdin = child.stdin.take().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "{{\"key\":\"a\",\"value\":1}}").unwrap();
    stdin.flush().unwrap();
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert_contains(&first, "\"value\":1");
    drop(reader); // like `weir run ... | head -1`
    // Keep feeding: the run must notice its sink is gone and stop by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "weir kept running after its stdout closed"
        );
        let _ = writeln!(stdin, "{{\"key\":\"b\",\"value\":2}}");
        let _ = stdin.flush();
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("sink `out`") && err.contains("Broken pipe"),
        "{err}"
    );
}

#[test]
fn every_example_passes_its_own_fixtures() {
    let examples = repo().join("examples");
    let mut tested = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        let pipeline = dir.join("pipeline.yaml");
        if !pipeline.is_file() || !dir.join("tests").is_dir() {
            continue;
        }
        let out = weir(&["test", pipeline.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}:\n{}{}",
            pipeline.display(),
            stdout(&out),
            stderr(&out)
        );
        tested += 1;
    }
    assert!(
        tested >= 2,
        "expected the quickstart and saga examples, found {tested}"
    );
}

#[test]
fn logs_carry_colour_codes_only_on_a_terminal_without_no_color() {
    let f = Fixture::new(
        "
sources:
  in: { kind: file, path: in.jsonl }
sinks:
  out: { kind: stdout }
",
        &[("in.jsonl", "")],
    );
    let pipeline = f.pipeline_path().display().to_string();
    // Piped: plain text.
    let out = weir(&["-vv", "validate", &pipeline]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(&stderr(&out), "DEBUG");
    assert!(!stderr(&out).contains('\u{1b}'), "{:?}", stderr(&out));
    // On a terminal (script(1) gives it one): colour, unless NO_COLOR.
    let on_terminal = |no_color: bool| {
        let command = format!(
            "{} -vv validate {pipeline}",
            weir_tests::weir_bin().display()
        );
        let mut c = std::process::Command::new("script");
        c.args(["-qefc", &command, "/dev/null"]);
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        let out = c.output().expect("script(1) runs");
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal(false);
    assert!(
        coloured.contains("DEBUG") && coloured.contains('\u{1b}'),
        "{coloured:?}"
    );
    let plain = on_terminal(true);
    assert!(
        plain.contains("DEBUG") && !plain.contains('\u{1b}'),
        "{plain:?}"
    );
}

#[test]
fn every_argument_and_option_says_what_it_is_for() {
    for sub in [
        &["run"][..],
        &["validate"],
        &["test"],
        &["plugin", "inspect"],
        &["plugin", "new"],
        &["completions"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let out = weir(&args);
        assert!(out.status.success(), "{sub:?}: {}", stderr(&out));
        let help = stdout(&out);
        let lines: Vec<&str> = help.lines().collect();
        let mut in_list = false;
        for (i, line) in lines.iter().enumerate() {
            if line.ends_with(':') {
                in_list = *line == "Arguments:" || *line == "Options:";
                continue;
            }
            let entry = line.trim_start();
            let indent = line.len() - entry.len();
            if !in_list || !(2..=6).contains(&indent) || !entry.starts_with(['-', '<']) {
                continue;
            }
            // `  <NAME>  what it is`, `  -v, --verbose...  what it is`, or,
            // when a subcommand has long help, the text on the next line.
            let same_line = entry
                .split_once("  ")
                .is_some_and(|(_, text)| text.trim().len() > 3);
            let next_line = lines.get(i + 1).is_some_and(|next| {
                let text = next.trim();
                next.len() - next.trim_start().len() > indent
                    && text.len() > 3
                    && !text.starts_with('[')
            });
            assert!(
                same_line || next_line,
                "`weir {}`: no description: {line:?}",
                sub.join(" ")
            );
        }
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = weir(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.contains("weir") && script.contains("validate") && script.contains("plugin"),
            "{shell}: {script}"
        );
    }
}

/// `weir run` with stdin closed (or from `stdin`), returning its output.
fn run_weir(args: &[&str], stdin: Option<std::process::Stdio>) -> Output {
    use std::process::{Command, Stdio};
    Command::new(weir_tests::weir_bin())
        .args(args)
        .env("WEIR_CACHE_DIR", weir_tests::cache_dir())
        .stdin(stdin.unwrap_or_else(Stdio::null))
        .output()
        .expect("cannot run weir")
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect()
}

/// Issue 11, item 1: plain events (not envelopes) in, with the key and the
/// timestamp taken from fields, a byte-order mark, a blank line (counted),
/// and a record whose key field is missing (dead-lettered, naming the
/// field and the line).
#[test]
fn plain_json_lines_take_key_and_timestamp_from_fields() {
    let f = Fixture::new(
        "
partitions: 3
error-policy: dead-letter
dead-letter: rejected
sources:
  events:
    kind: file
    path: events.jsonl
    format: json
    key: { field: user.id }
    timestamp: { field: ts, unit: s }
plugins:
  noop: { path: '{plugin:noop}' }
steps:
  - { name: pass, kind: filter, plugin: noop }
sinks:
  out: { kind: file, path: out/records.jsonl }
  values: { kind: file, path: out/values.jsonl, format: json, from: pass }
  rejected: { kind: file, path: out/rejected.jsonl }
",
        &[(
            "events.jsonl",
            "\u{feff}{\"user\":{\"id\":\"z\"},\"key\":\"not-the-key\",\"ts\":1700000000}\n\n{\"email\":\"a@b.c\",\"ts\":1700000001}\n{\"user\":{\"id\":\"y\"},\"ts\":1700000002.5}\n",
        )],
    );
    let out = run_weir(&["run", f.pipeline_path().to_str().unwrap()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut records = json_lines(&std::fs::read_to_string(f.path("out/records.jsonl")).unwrap());
    records.sort_by_key(|r| r["timestamp"].as_i64());
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["key"], "z");
    assert_eq!(records[0]["timestamp"], 1_700_000_000_000i64);
    // The event's own `key` field is part of its value, not its key.
    assert_eq!(records[0]["value"]["key"], "not-the-key");
    assert_eq!(records[1]["key"], "y");
    assert_eq!(records[1]["timestamp"], 1_700_000_002_500i64);
    // A plain sink writes the value alone.
    let mut values = json_lines(&std::fs::read_to_string(f.path("out/values.jsonl")).unwrap());
    values.sort_by_key(|v| v["ts"].as_f64().map(|t| t as i64));
    assert_eq!(
        values[0],
        serde_json::json!({"user":{"id":"z"},"key":"not-the-key","ts":1700000000})
    );
    let rejected = json_lines(&std::fs::read_to_string(f.path("out/rejected.jsonl")).unwrap());
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let reason = rejected[0]["headers"]["weir.error.reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("key field `user.id` is missing") && reason.contains("line 3"),
        "{reason}"
    );
    assert_eq!(rejected[0]["headers"]["weir.error.offset"], "3");
    assert_contains(&stderr(&out), "source `events`: 1 blank line(s) skipped");
}

/// Issue 11, item 1: `text` lines in and out, and the rules that keep
/// formats explicit.
#[test]
fn text_lines_and_format_rules() {
    let f = Fixture::new(
        "
sources:
  words: { kind: stdin, format: text }
plugins:
  noop: { path: '{plugin:noop}' }
steps:
  - { name: pass, kind: filter, plugin: noop }
sinks:
  out: { kind: stdout, format: text }
",
        &[],
    );
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), "hello {not json\r\n\nsecond line\n").unwrap();
    let stdin = std::fs::File::open(input.path()).unwrap();
    let out = run_weir(
        &["run", f.pipeline_path().to_str().unwrap()],
        Some(stdin.into()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello {not json\nsecond line\n");

    assert_invalid(
        "
sources:
  in: { kind: file, path: in.txt, format: text, value-format: json }
sinks:
  out: { kind: stdout }
",
        &[],
        Some(3),
        "with `format: text` each line is a text value, so `value-format` must be `string`",
    );
    assert_invalid(
        "
sources:
  in: { kind: file, path: in.txt, format: text, key: { field: user } }
sinks:
  out: { kind: stdout }
",
        &[],
        Some(3),
        "`key` and `timestamp` read fields of a JSON value, so `value-format` must be `json`",
    );
    assert_invalid(
        "
sources:
  in: { kind: file, path: in.jsonl, format: json, timestamp: { field: ts } }
sinks:
  out: { kind: stdout }
",
        &[],
        Some(3),
        "`timestamp.unit` is required: `ms`, `s` or `rfc3339`",
    );
    assert_invalid(
        "
sources:
  in: { kind: kafka, topic: t, format: json, key: { field: user } }
sinks:
  out: { kind: stdout }
",
        &[],
        Some(3),
        "takes no `format`",
    );
    assert_invalid(
        "
sources:
  in: { kind: kafka, topic: t, key: { field: user } }
sinks:
  out: { kind: stdout }
",
        &[],
        Some(3),
        "Kafka source `in` takes no `key`",
    );
    assert_invalid(
        "
error-policy: dead-letter
dead-letter: bad
sources:
  in: { kind: file, path: in.jsonl }
sinks:
  out: { kind: stdout, from: in }
  bad: { kind: file, path: bad.jsonl, format: json }
",
        &[],
        Some(8),
        "the dead-letter sink writes whole records",
    );
}

const COPY: &str = "
error-policy: dead-letter
dead-letter: rejected
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  noop: { path: '{plugin:noop}' }
steps:
  - { name: pass, kind: filter, plugin: noop }
sinks:
  out: { kind: file, path: out.jsonl }
  rejected: { kind: file, path: rejected.jsonl }
";

/// Issue 11, item 2: `--input NAME=PATH|-` and `--output NAME=PATH|-`.
#[test]
fn inputs_and_outputs_from_the_command_line() {
    let f = Fixture::new(COPY, &[("in.jsonl", "{\"key\":\"a\",\"value\":1}\n")]);
    let elsewhere = f.path("other.jsonl");
    std::fs::write(&elsewhere, "{\"key\":\"b\",\"value\":2}\n").unwrap();
    let pipeline = f.pipeline_path();
    let pipeline = pipeline.to_str().unwrap();
    // A file instead of the pipeline's, to stdout.
    let out = run_weir(
        &[
            "run",
            pipeline,
            "--input",
            &format!("in={}", elsewhere.display()),
            "--output",
            "out=-",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&stdout(&out))[0]["key"], "b");
    assert!(!f.path("out.jsonl").exists());
    // stdin instead of the file, to another file.
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), "{\"key\":\"c\",\"value\":3}\n").unwrap();
    let copy = f.path("copy.jsonl");
    let out = run_weir(
        &[
            "run",
            pipeline,
            "--input",
            "in=-",
            "--output",
            &format!("out={}", copy.display()),
        ],
        Some(std::fs::File::open(input.path()).unwrap().into()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let copied = json_lines(&std::fs::read_to_string(&copy).unwrap());
    assert_eq!(copied[0]["key"], "c");
    // An unknown name is a usage error naming the valid ones.
    let out = run_weir(&["run", pipeline, "--input", "nope=x.jsonl"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(&stderr(&out), "no source `nope` (its sources: in)");
    let out = run_weir(&["validate", pipeline, "--output", "nope=-"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(&stderr(&out), "no sink `nope` (its sinks: out, rejected)");
    let out = run_weir(&["run", pipeline, "--input", "in"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Kafka: every Kafka source replaced, or none.
    let kafka = Fixture::new(
        "
kafka: { bootstrap: 127.0.0.1:1 }
sources:
  a: { kind: kafka, topic: a }
  b: { kind: kafka, topic: b }
plugins:
  noop: { path: '{plugin:noop}' }
steps:
  - { name: pass, kind: filter, plugin: noop, from: [a, b] }
sinks:
  out: { kind: kafka, topic: out }
",
        &[
            ("a.jsonl", "{\"key\":\"k\",\"value\":1}\n"),
            ("b.jsonl", ""),
        ],
    );
    let pipeline = kafka.pipeline_path();
    let pipeline = pipeline.to_str().unwrap();
    let a = format!("a={}", kafka.path("a.jsonl").display());
    let b = format!("b={}", kafka.path("b.jsonl").display());
    let out = run_weir(&["validate", pipeline, "--input", &a], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(&stderr(&out), "replaces Kafka source(s) a but not b");
    // Every endpoint replaced: no broker needed.
    let out = run_weir(
        &[
            "run", pipeline, "--input", &a, "--input", &b, "--output", "out=-",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&stdout(&out))[0]["key"], "k");
}

/// Issue 11, item 3: a run that cannot start leaves existing outputs (the
/// dead-letter file included) as they were.
#[test]
fn a_missing_input_leaves_existing_outputs_untouched() {
    let f = Fixture::new(
        COPY,
        &[
            ("out.jsonl", "earlier output\n"),
            ("rejected.jsonl", "earlier rejects\n"),
        ],
    );
    let out = run_weir(&["run", f.pipeline_path().to_str().unwrap()], None);
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "cannot read");
    assert_eq!(
        std::fs::read_to_string(f.path("out.jsonl")).unwrap(),
        "earlier output\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("rejected.jsonl")).unwrap(),
        "earlier rejects\n"
    );
}

/// Issue 11, item 3: a sink that cannot be created fails the run before
/// any of stdin is read.
#[test]
fn an_unwritable_sink_fails_before_stdin_is_read() {
    let f = Fixture::new(
        "
sources:
  in: { kind: stdin }
plugins:
  noop: { path: '{plugin:noop}' }
steps:
  - { name: pass, kind: filter, plugin: noop }
sinks:
  out: { kind: file, path: blocked/out.jsonl }
",
        // A file where the sink's folder should be.
        &[("blocked", "")],
    );
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), "{\"key\":\"a\",\"value\":1}\n".repeat(1000)).unwrap();
    let mut ours = std::fs::File::open(input.path()).unwrap();
    let theirs = ours.try_clone().unwrap();
    let out = run_weir(
        &["run", f.pipeline_path().to_str().unwrap()],
        Some(theirs.into()),
    );
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "sink `out`");
    // The descriptor is shared with weir's stdin: nothing was read from it.
    use std::io::Seek;
    assert_eq!(ours.stream_position().unwrap(), 0);
}

/// Issue 11, item 3: `mode: append` keeps what a file held; the default
/// (`truncate`) replaces it. Sink paths are relative to the pipeline file.
#[test]
fn file_sinks_truncate_or_append() {
    let f = Fixture::new(
        &COPY.replace("path: out.jsonl", "path: out.jsonl, mode: append"),
        &[
            ("in.jsonl", "{\"key\":\"a\",\"value\":1}\n"),
            ("out.jsonl", "{\"key\":\"earlier\",\"value\":0}\n"),
            ("rejected.jsonl", "earlier rejects\n"),
        ],
    );
    // From another folder: paths are the pipeline file's.
    let out = std::process::Command::new(weir_tests::weir_bin())
        .args(["run", f.pipeline_path().to_str().unwrap()])
        .env("WEIR_CACHE_DIR", weir_tests::cache_dir())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let keys: Vec<_> = json_lines(&std::fs::read_to_string(f.path("out.jsonl")).unwrap())
        .iter()
        .map(|r| r["key"].clone())
        .collect();
    assert_eq!(keys, ["earlier", "a"]);
    assert_eq!(
        std::fs::read_to_string(f.path("rejected.jsonl")).unwrap(),
        ""
    );
    assert_invalid(
        "
sources:
  in: { kind: file, path: in.jsonl }
sinks:
  out: { kind: stdout, mode: append }
",
        &[],
        Some(5),
        "stdout sink `out` takes no `mode` (it is for file sinks)",
    );
}

/// Issue 11, item 1: the quickstart's plain-JSON pipeline (plain events in
/// and out, key and timestamp from fields).
#[test]
fn quickstart_plain_json_pipeline() {
    let out = weir(&[
        "run",
        "--quiet",
        repo()
            .join("examples/quickstart/plain.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let values = json_lines(&stdout(&out));
    assert_eq!(values.len(), 3, "{}", stdout(&out));
    assert!(
        values
            .iter()
            .all(|v| v["tier"] == "large" && v["amount"].as_f64() > Some(100.0))
    );
}

/// `weir validate --print-topology` for `example`: its first line (which
/// names the worker threads, one per core by default) and the rest.
fn printed_topology(example: &str) -> (String, String) {
    let path = repo().join("examples").join(example).join("pipeline.yaml");
    let out = weir(&["validate", "--print-topology", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let (first, rest) = text.split_once('\n').unwrap();
    (first.to_string(), rest.to_string())
}

/// Issue 11, item 9: sub-topologies, tasks, nodes, internal topics and
/// each sink's delivery guarantee, before anything runs.
#[test]
fn validate_prints_the_topology_of_a_repartitioned_pipeline() {
    let (first, topology) = printed_topology("rekey-by-customer");
    assert!(
        first.ends_with(": ok (1 sources, 3 steps, 2 sinks, 3 partitions on 2 worker threads)"),
        "{first}"
    );
    assert_eq!(
        topology,
        "\
pipeline rekey-by-customer: embedded, 3 partitions
sub-topology 0: 3 tasks (0_0, 0_1, 0_2)
  source orders: file orders.jsonl
  step by-customer: select-key, plugin keys, from orders
  step to-customer-task: repartition by key to sub-topology 1, from by-customer
sub-topology 1: 3 tasks (1_0, 1_1, 1_2)
  from repartition to-customer-task (sub-topology 0)
  step tag: map, plugin enricher, from to-customer-task
  sink out: stdout, from tag
dead letters: sink rejected (file out/rejected.jsonl), written by every task
internal topics: none (repartition to-customer-task moves records between tasks in process)
delivery:
  at-least-once: sink out is stdout (what is printed cannot be taken back)
  at-least-once: sink rejected is file out/rejected.jsonl (a killed run starts over and writes it again (`processing-guarantee: exactly-once` resumes it where it stopped))
"
    );
}

/// Issue 13, item 3: on Kafka a repartition goes through an internal
/// topic named by the step's id, which the topology lists.
#[test]
fn validate_prints_the_repartition_topic_of_a_kafka_pipeline() {
    let fixture = Fixture::new(
        "name: shop
kafka: { application-id: shop-app }
sources:
  orders: { kind: kafka, topic: orders }
plugins:
  keys: { path: '{plugin:key_selector}' }
steps:
  - { name: by-customer, kind: select-key, plugin: keys, config: { field: customer } }
  - { name: to-customer, kind: repartition, id: customers }
sinks:
  out: { kind: kafka, topic: by-customer, from: to-customer }
",
        &[],
    );
    let path = fixture.pipeline_path();
    let out = weir(&["validate", "--print-topology", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let topology = text.split_once('\n').unwrap().1;
    assert_eq!(
        topology,
        "\
pipeline shop: on Kafka, consumer group shop-app
sub-topology 0: tasks 0_P, one per partition P of topic orders, as the consumer group assigns them
  source orders: Kafka topic orders
  step by-customer: select-key, plugin keys, from orders
  step to-customer: repartition by key to sub-topology 1 through topic shop-app-customers-repartition, from by-customer
sub-topology 1: tasks 1_P, one per partition P of topic shop-app-customers-repartition, as the consumer group assigns them
  from repartition to-customer (sub-topology 0, through Kafka topic shop-app-customers-repartition)
  sink out: Kafka topic by-customer, from to-customer
internal topics:
  shop-app-customers-repartition: repartition to-customer, written by sub-topology 0, read by sub-topology 1; cleanup.policy=delete, retention.ms=-1, purged once committed; partitions: the most of sub-topology 0's input topics
delivery:
  at-least-once: sink out is Kafka topic by-customer (input offsets are committed only after the broker acknowledges what was produced from them; exactly-once needs Kafka transactions, not built yet)
"
    );
    // Without an id the step is refused, naming the topic it would create.
    let fixture = Fixture::new(
        &std::fs::read_to_string(&path)
            .unwrap()
            .replace(", id: customers", ""),
        &[],
    );
    let out = weir(&["validate", fixture.pipeline_path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert_contains(
        &stderr(&out),
        "step `to-customer`: a `repartition` on Kafka needs an `id`: it names the repartition topic (with `id: to-customer` weir creates topic `shop-app-to-customer-repartition`)",
    );
}

/// Validating a Kafka pipeline needs no broker.
#[test]
fn validate_prints_the_topology_of_a_kafka_pipeline() {
    let (_, topology) = printed_topology("kafka-orders");
    assert_eq!(
        topology,
        "\
pipeline kafka-orders: on Kafka, consumer group kafka-orders
sub-topology 0: tasks 0_P, one per partition P of topic orders, as the consumer group assigns them
  source orders: Kafka topic orders
  step big-orders: filter, plugin json-filter, from orders
  step tag: map, plugin enricher, from big-orders
  sink out: Kafka topic orders-large, from tag
dead letters: sink rejected (Kafka topic orders-dead-letter), written by every task
internal topics: none
delivery:
  at-least-once: sink out is Kafka topic orders-large (input offsets are committed only after the broker acknowledges what was produced from them; exactly-once needs Kafka transactions, not built yet)
  at-least-once: sink rejected is Kafka topic orders-dead-letter (input offsets are committed only after the broker acknowledges what was produced from them; exactly-once needs Kafka transactions, not built yet)
"
    );
}
