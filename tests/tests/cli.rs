//! The `weir` binary: validation errors, the test driver, plugin tools and
//! the quickstart.

use std::process::Output;

use weir_tests::{Fixture, plugin, repo, weir};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

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
    assert!(
        stdout(&out).contains("ok (1 sources, 1 steps, 1 sinks, 1 partitions on 1 worker threads)"),
        "{}",
        stdout(&out)
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
        "step `big`: `kind` is `flter`, not one of filter | map | flat-map | branch | select-key | repartition; did you mean `filter`?",
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
    assert!(stdout(&out).contains("ok   case1"), "{}", stdout(&out));
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
    assert!(text.contains("FAIL case1"), "{text}");
    assert!(text.contains("sink `out` differs"), "{text}");
    assert!(
        text.contains("-{\"key\":\"a\",\"value\":{\"amount\":151}}"),
        "{text}"
    );
    assert!(
        text.contains("+{\"key\":\"a\",\"value\":{\"amount\":150}}"),
        "{text}"
    );
    assert!(text.contains("0 passed, 1 failed"), "{text}");
}

#[test]
fn plugin_inspect_describes_components() {
    let out = weir(&["plugin", "inspect", plugin("router").to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("world:    weir:plugin/transformer@0.2.0"),
        "{text}"
    );
    assert!(text.contains("kinds:    branch"), "{text}");
    assert!(text.contains("weir:plugin/transform@0.2.0"), "{text}");
    assert!(text.contains("runnable: yes"), "{text}");

    let out = weir(&["plugin", "inspect", plugin("wrong-world").to_str().unwrap()]);
    let text = stdout(&out);
    assert!(!out.status.success());
    assert!(text.contains("wasi:cli/run"), "{text}");
    assert!(text.contains("runnable: no"), "{text}");
}

#[test]
fn plugin_new_scaffolds_a_buildable_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(&[
        "plugin",
        "new",
        "my-router",
        "--kind",
        "branch",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let root = dir.path().join("my-router");
    let build =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--offline"])
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", repo().join("plugins/target"))
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
    assert!(build.status.success(), "{}", stderr(&build));
    let wasm = repo().join("plugins/target/wasm32-wasip2/release/my_router.wasm");
    let out = weir(&["plugin", "inspect", wasm.to_str().unwrap()]);
    assert!(stdout(&out).contains("runnable: yes"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("kinds:    branch\n"),
        "the export macro declares the kind: {}",
        stdout(&out)
    );
    let again = weir(&[
        "plugin",
        "new",
        "my-router",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(stderr(&again).contains("already exists"));
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
    assert!(exit.success(), "exit status {exit:?}");
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
    assert!(shown.contains("dead-lettered 0"), "{shown}");
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
    assert!(first.contains("\"value\":1"), "{first}");
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
    assert!(stderr(&out).contains("DEBUG"), "{}", stderr(&out));
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
        let mut in_list = false;
        for line in help.lines() {
            if line.ends_with(':') {
                in_list = line == "Arguments:" || line == "Options:";
                continue;
            }
            if !in_list || !line.starts_with("  ") || line.trim().is_empty() {
                continue;
            }
            // `  <NAME>  what it is`, `  -v, --verbose...  what it is`.
            let described = line
                .trim_start()
                .split_once("  ")
                .is_some_and(|(_, text)| text.trim().len() > 3);
            assert!(
                described,
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
  at-least-once: sink rejected is file out/rejected.jsonl (a rerun over the same input writes it again)
"
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
  at-least-once: sink out is Kafka topic orders-large (input offsets are committed only after the broker acknowledges what was produced from them)
  at-least-once: sink rejected is Kafka topic orders-dead-letter (input offsets are committed only after the broker acknowledges what was produced from them)
"
    );
}
