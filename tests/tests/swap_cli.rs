//! Issue 12, items 2 and 6 (embedded): `weir swap` swapping a step of a
//! running `weir run` through the admin API while records flow, from
//! stdin and from a large file; `weir status` showing every version; the
//! refusals, authentication and body limit of the swap endpoint.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use weir_tests::admin::{Running, http, http_with, token_file, until};
use weir_tests::swap::{check_outputs, enricher_variant, parse_lines};
use weir_tests::{Fixture, assert_contains, collect_stream, line, plugin, stderr, stdout, weir};

const TOKEN: &str = "swap-s3cret";

/// Records from stdin tagged by `tag` (the enricher, config `version: v1`)
/// and passed on by `pass` (a flat-map that declares port `out` until
/// `switch-at`), printed to stdout.
const STDIN_PIPELINE: &str = "\
partitions: 2
batch-size: 16
sources:
  in: { kind: stdin }
plugins:
  enrich: { path: '{plugin:enricher}' }
  odd: { path: '{plugin:misbehave}' }
steps:
  - { name: tag, kind: map, plugin: enrich, config: { set: { version: v1 } } }
  - { name: pass, kind: flat-map, plugin: odd, config: { mode: ports-change, switch-at: 99999999999999 } }
sinks:
  out: { kind: stdout }
";

/// A `weir run` of [`STDIN_PIPELINE`] with a token, fed by the test.
struct Live {
    f: Fixture,
    token: PathBuf,
    run: Running,
    addr: SocketAddr,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    fed: Arc<AtomicUsize>,
    out: Arc<Mutex<String>>,
}

impl Live {
    fn start(token: Option<&str>) -> Live {
        let f = Fixture::new(STDIN_PIPELINE, &[]);
        let token_path = token_file(&f, token.unwrap_or("unused"), 0o600);
        let args: Vec<&str> = match token {
            Some(_) => vec!["--admin-token-file", token_path.to_str().unwrap()],
            None => vec![],
        };
        let mut run = Running::spawn(&f, &args, &[], Stdio::piped());
        let (out, _) = collect_stream(run.child.stdout.take().unwrap());
        let addr = run.admin(&f);
        let stdin = Arc::new(Mutex::new(run.stdin.take()));
        Live {
            f,
            token: token_path,
            run,
            addr,
            stdin,
            fed: Arc::default(),
            out,
        }
    }

    fn feed(&self, n: usize) {
        feed(&self.stdin, &self.fed, n);
    }

    /// Feeds 20 records every 2 ms until [`Feeding::finish`].
    fn keep_feeding(&self) -> Feeding {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stdin, fed, stop) = (self.stdin.clone(), self.fed.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    feed(&stdin, &fed, 20);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Feeding { stop, thread }
    }

    fn fed(&self) -> usize {
        self.fed.load(Ordering::SeqCst)
    }

    fn outputs(&self) -> Vec<Value> {
        parse_lines(&self.out.lock().unwrap())
    }

    /// Waits until every record fed came out.
    fn drain(&self) {
        let fed = self.fed();
        until("every record fed out", || {
            self.out.lock().unwrap().lines().count() >= fed
        });
    }

    /// `weir swap PIPELINE --step STEP ARGS` with the run's token.
    fn swap(&self, step: &str, args: &[&str]) -> Output {
        swap(&self.f, &self.token, step, args)
    }

    /// A file in the fixture's folder.
    fn write(&self, name: &str, content: &[u8]) -> String {
        let path = self.f.path(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    /// Ends the input; every output once the run exited 0.
    fn finish(mut self) -> Vec<Value> {
        self.stdin.lock().unwrap().take();
        self.run.stdin = None;
        let Live { run, out, .. } = self;
        let (code, err) = run.wait();
        assert_eq!(code.code(), Some(0), "{err}");
        parse_lines(&out.lock().unwrap())
    }
}

/// A thread feeding a [`Live`] run.
struct Feeding {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Feeding {
    fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
    }
}

/// Writes `n` more records `{"n": N}`, numbered on from the last, keys
/// spread over 16.
fn feed(stdin: &Mutex<Option<ChildStdin>>, fed: &AtomicUsize, n: usize) {
    let mut text = String::new();
    for _ in 0..n {
        let i = fed.fetch_add(1, Ordering::SeqCst);
        text.push_str(&line(&format!("k{}", i % 16), json!({ "n": i })));
        text.push('\n');
    }
    let mut stdin = stdin.lock().unwrap();
    let w = stdin.as_mut().expect("the input is open");
    w.write_all(text.as_bytes()).unwrap();
    w.flush().unwrap();
}

/// `weir swap` of the fixture's pipeline with the token file.
fn swap(f: &Fixture, token: &Path, step: &str, args: &[&str]) -> Output {
    weir_tests::admin::weir_swap(f, token, step, args)
}

/// The run's status as JSON.
fn status_json(addr: SocketAddr, token: &str) -> Value {
    let (code, body) = http(addr, "GET", "/v1/status", Some(token));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Step `step`'s versions in the status: (number, its config's
/// `set.version`, records, sha256).
fn versions(status: &Value, step: &str) -> Vec<(u64, String, u64, String)> {
    let step = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("no step {step} in {status}"));
    step["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["number"].as_u64().unwrap(),
                v["config"]["set"]["version"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                v["records"].as_u64().unwrap(),
                v["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits until version `number` of step `tag` processed `records`.
fn until_version_ran(addr: SocketAddr, number: usize, records: u64) {
    until(&format!("v{number} processing {records} records"), || {
        versions(&status_json(addr, TOKEN), "tag")
            .get(number - 1)
            .is_some_and(|v| v.2 >= records)
    });
}

/// The line `weir status` prints for swapped step `tag`, read back as
/// (version, records), newest first.
fn status_line_versions(table: &str) -> Vec<(u64, u64)> {
    let line = table
        .lines()
        .find(|l| l.starts_with("tag: v"))
        .unwrap_or_else(|| panic!("no line for swapped step `tag`:\n{table}"));
    line["tag: ".len()..]
        .split("; ")
        .map(|part| {
            let number = part[1..].split(' ').next().unwrap().parse().unwrap();
            let records = part
                .strip_suffix(" records")
                .or_else(|| part.strip_suffix(" record"))
                .and_then(|p| p.rsplit(' ').next())
                .unwrap_or_else(|| panic!("`{part}` in:\n{table}"))
                .parse()
                .unwrap();
            (number, records)
        })
        .collect()
}

/// `weir plugin inspect`'s sha256 of a component file.
fn digest(path: &str) -> String {
    stdout(&weir(&["plugin", "inspect", path]))
        .lines()
        .find_map(|l| l.strip_prefix("sha256:").map(|d| d.trim().to_string()))
        .unwrap()
}

/// The swap's one line, checked: `step tag: vA -> vB (...)`.
#[track_caller]
fn swapped(out: &Output, from: u32, to: u32) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    let text = stdout(out);
    assert!(
        text.starts_with(&format!("step tag: v{from} -> v{to} (sha ")),
        "{text}"
    );
    assert_contains(&text, "), prepared in ");
    assert_contains(&text, ", switched 2 tasks in ");
    text
}

#[test]
fn stdin_swapped_v1_v2_v3_with_weir_swap_while_records_flow() {
    let live = Live::start(Some(TOKEN));
    live.feed(100);
    // A feeder keeps records flowing through every swap.
    let feeder = live.keep_feeding();
    until_version_ran(live.addr, 1, 200);
    let enricher = plugin("enricher").display().to_string();
    let v1 = digest(&enricher);

    // v2: the same component, another config (YAML).
    let config = live.write("v2.yaml", b"set:\n  version: v2\n");
    let line = swapped(&live.swap("tag", &["--config", &config]), 1, 2);
    assert_contains(&line, &format!("(sha {}, same component)", &v1[..12]));
    until_version_ran(live.addr, 2, 200);

    // v3: another component (other bytes, same kind and ports), config in JSON.
    let component = live.write("enricher-v3.wasm", &enricher_variant("v3"));
    let v3 = digest(&component);
    assert_ne!(v3, v1);
    let config = live.write("v3.json", br#"{"set": {"version": "v3"}}"#);
    let line = swapped(&live.swap("tag", &[&component, "--config", &config]), 2, 3);
    assert_contains(&line, &format!("(sha {} -> {})", &v1[..12], &v3[..12]));
    until_version_ran(live.addr, 3, 200);

    feeder.finish();
    live.feed(10);
    live.drain();
    let fed = live.fed() as u64;

    // The status: every version, its digest, config and records.
    let status = status_json(live.addr, TOKEN);
    let tag = versions(&status, "tag");
    assert_eq!(
        tag.iter()
            .map(|(n, c, _, d)| (*n, c.as_str(), d.as_str()))
            .collect::<Vec<_>>(),
        [
            (1, "v1", v1.as_str()),
            (2, "v2", v1.as_str()),
            (3, "v3", v3.as_str())
        ]
    );
    assert_eq!(status["steps"][0]["version"], 3);
    assert_eq!(status["steps"][0]["sha256"], v3.as_str());
    assert!(status["steps"][0]["versions"][2]["cutover_us"].is_u64());
    assert!(status["steps"][0]["versions"][0]["cutover_us"].is_null());
    assert_eq!(versions(&status, "pass").len(), 1, "`pass` was not swapped");
    // `weir status` prints them, newest first, summing to the input.
    let out = weir(&[
        "status",
        live.f.pipeline_path().to_str().unwrap(),
        "--admin-token-file",
        live.token.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = status_line_versions(&stdout(&out));
    assert_eq!(
        printed.iter().map(|v| v.0).collect::<Vec<_>>(),
        [3, 2, 1],
        "{}",
        stdout(&out)
    );
    assert_eq!(printed.iter().map(|v| v.1).sum::<u64>(), fed);

    let outputs = live.finish();
    let by_version = check_outputs(&outputs, fed as usize, 2);
    assert_eq!(
        by_version,
        [
            ("v1".to_string(), tag[0].2),
            ("v2".to_string(), tag[1].2),
            ("v3".to_string(), tag[2].2),
        ]
        .into(),
        "each version processed what the status says"
    );
    assert!(by_version.values().all(|n| *n >= 200), "{by_version:?}");
}

#[test]
fn a_large_file_swapped_v1_v2_v3_while_it_is_read() {
    const RECORDS: usize = 300_000;
    let mut big = String::with_capacity(RECORDS * 64);
    for i in 0..RECORDS {
        big.push_str(&line(&format!("k{}", i % 16), json!({ "n": i })));
        big.push('\n');
    }
    // stdin, held open, keeps the run alive once the file is read, so
    // `weir status` can give the final counts.
    let f = Fixture::new(
        "\
partitions: 2
sources:
  big: { kind: file, path: big.jsonl }
  hold: { kind: stdin }
plugins:
  enrich: { path: '{plugin:enricher}' }
steps:
  - { name: tag, kind: map, plugin: enrich, from: big, config: { set: { version: v1 } } }
sinks:
  out: { kind: stdout, from: tag }
  held: { kind: file, path: held.jsonl, from: hold }
",
        &[("big.jsonl", &big)],
    );
    drop(big);
    let token = token_file(&f, TOKEN, 0o600);
    let mut run = Running::spawn(
        &f,
        &["--admin-token-file", token.to_str().unwrap()],
        &[],
        Stdio::piped(),
    );
    // The test reads the output at most ~50k records/s and no further than
    // `allowed`: the run, held back by its full stdout, reads the file as
    // slowly, so each swap lands while the file is read.
    let allowed = Arc::new(AtomicUsize::new(60_000));
    let fast = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(String::new()));
    let reader = {
        let stdout = run.child.stdout.take().unwrap();
        let (allowed, fast, read, out) = (allowed.clone(), fast.clone(), read.clone(), out.clone());
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                while read.load(Ordering::SeqCst) >= allowed.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let Some(line) = lines.next() else { break };
                let mut text = out.lock().unwrap();
                text.push_str(&line.unwrap());
                text.push('\n');
                let n = read.fetch_add(1, Ordering::SeqCst) + 1;
                drop(text);
                if n % 500 == 0 && !fast.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
    };
    let addr = run.admin(&f);
    let records_in = || status_json(addr, TOKEN)["records_in"].as_u64().unwrap();
    until("20000 records out", || {
        read.load(Ordering::SeqCst) >= 20_000
    });

    let config = f.path("v2.yaml");
    std::fs::write(&config, "set: { version: v2 }\n").unwrap();
    swapped(
        &swap(&f, &token, "tag", &["--config", config.to_str().unwrap()]),
        1,
        2,
    );
    assert!(records_in() < RECORDS as u64, "the file was read before v2");
    allowed.store(120_000, Ordering::SeqCst);
    until_version_ran(addr, 2, 10_000);

    let component = f.path("enricher-v3.wasm");
    std::fs::write(&component, enricher_variant("large-file")).unwrap();
    let config = f.path("v3.yaml");
    std::fs::write(&config, "set: { version: v3 }\n").unwrap();
    swapped(
        &swap(
            &f,
            &token,
            "tag",
            &[
                component.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
        ),
        2,
        3,
    );
    assert!(records_in() < RECORDS as u64, "the file was read before v3");
    fast.store(true, Ordering::SeqCst);
    allowed.store(usize::MAX, Ordering::SeqCst);
    until("every record out", || {
        read.load(Ordering::SeqCst) >= RECORDS
    });

    let out_status = weir(&[
        "status",
        f.pipeline_path().to_str().unwrap(),
        "--admin-token-file",
        token.to_str().unwrap(),
    ]);
    assert!(out_status.status.success(), "{}", stderr(&out_status));
    let printed = status_line_versions(&stdout(&out_status));
    assert_eq!(printed.iter().map(|v| v.0).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(printed.iter().map(|v| v.1).sum::<u64>(), RECORDS as u64);

    let (code, err) = run.wait();
    assert_eq!(code.code(), Some(0), "{err}");
    reader.join().unwrap();
    let outputs = parse_lines(&out.lock().unwrap());
    let by_version = check_outputs(&outputs, RECORDS, 2);
    let printed: Vec<(String, u64)> = printed
        .iter()
        .rev()
        .map(|(n, records)| (format!("v{n}"), *records))
        .collect();
    assert_eq!(
        by_version.into_iter().collect::<Vec<_>>(),
        printed,
        "each version processed what `weir status` says"
    );
    assert!(printed.iter().all(|(_, n)| *n > 0), "{printed:?}");
}

#[test]
fn refused_swaps_exit_1_with_the_reason_and_v1_keeps_running_with_nothing_lost() {
    let live = Live::start(Some(TOKEN));
    live.feed(50);
    let refused = |step: &str, args: &[&str], reasons: &[&str]| {
        let out = live.swap(step, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        for reason in reasons {
            assert_contains(&err, reason);
        }
        live.feed(20);
        err
    };
    let keeps = "the old version keeps running (the admin API at";

    let not_a_component = live.write("notes.wasm", b"not a component");
    refused(
        "tag",
        &[&not_a_component],
        &[
            "error: step `tag`: the new version was refused (component): ",
            "not a WebAssembly component",
            keeps,
            "answered 422)",
        ],
    );
    let wrong_world = plugin("wrong-world").display().to_string();
    refused(
        "tag",
        &[&wrong_world],
        &["refused (component): ", "component of another world", keeps],
    );
    let router = plugin("router").display().to_string();
    refused(
        "tag",
        &[&router],
        &["refused (kind): ", "is a map step", keeps],
    );
    let ports = live.write("ports.yaml", b"mode: ports-change\nswitch-at: 0\n");
    refused(
        "pass",
        &["--config", &ports],
        &[
            "step `pass`: the new version was refused (ports): ",
            "late",
            keeps,
        ],
    );
    let bogus = live.write("bogus.json", br#"{"set": {"version": "v2"}, "bogus": 1}"#);
    refused(
        "tag",
        &["--config", &bogus],
        &["refused (init): ", "bogus", keeps],
    );
    let enricher = plugin("enricher").display().to_string();
    refused(
        "nope",
        &[&enricher],
        &["error: the pipeline has no step `nope`", "answered 404)"],
    );

    // A config file that cannot be read is a usage error naming its line.
    let broken = live.write("broken.json", b"{\n  \"set\": {\"version\": v2}\n}\n");
    let out = live.swap("tag", &["--config", &broken]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(&stderr(&out), &format!("{broken}:2:22: not JSON: "));
    // Neither a component nor a config: usage.
    let out = live.swap("tag", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(&stderr(&out), "<PLUGIN.wasm|--config <FILE>>");

    live.drain();
    let fed = live.fed();
    let status = status_json(live.addr, TOKEN);
    for step in ["tag", "pass"] {
        let v = versions(&status, step);
        assert_eq!(v.len(), 1, "{step}: {v:?}");
        assert_eq!(v[0].2, fed as u64, "{step}");
    }
    assert!(live.outputs().len() >= fed);
    let outputs = live.finish();
    let by_version = check_outputs(&outputs, fed, 2);
    assert_eq!(by_version.keys().collect::<Vec<_>>(), ["v1"]);
}

#[test]
fn the_swap_endpoint_needs_the_token_and_refuses_a_body_over_its_limit() {
    let live = Live::start(Some(TOKEN));
    live.feed(10);
    let config = live.write("v2.yaml", b"set: { version: v2 }\n");
    let (content_type, body) =
        weir::admin::swap_body(None, Some(&json!({ "set": { "version": "v2" } })), None);
    let content_type = format!("Content-Type: {content_type}");
    let post = |token: Option<&str>| {
        http_with(
            live.addr,
            "POST",
            "/v1/steps/tag/swap",
            token,
            &[&content_type],
            &body,
        )
    };
    let (code, answer) = post(None);
    assert_eq!(code, 401, "{answer}");
    assert_contains(&answer, "needs the admin token");
    let (code, answer) = post(Some("wrong"));
    assert_eq!(code, 401, "{answer}");
    assert_contains(&answer, "wrong admin token");
    // Through the CLI: another token.
    let other = live.f.path("other.token");
    std::fs::write(&other, "other\n").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = swap(&live.f, &other, "tag", &["--config", &config]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(&stderr(&out), "error: wrong admin token (the admin API at ");
    assert_contains(&stderr(&out), "answered 401)");

    // A body announced over 64 MiB is refused before it is sent.
    let (code, answer) = http_with(
        live.addr,
        "POST",
        "/v1/steps/tag/swap",
        Some(TOKEN),
        &[
            &content_type,
            &format!("Content-Length: {}", (64 << 20) + 1),
        ],
        b"",
    );
    assert_eq!(code, 413, "{answer}");
    assert_contains(&answer, "over the admin API's limit of 64 MiB");
    // The CLI uploads nothing (it waits for the go-ahead) and says why.
    let huge = live.f.path("huge.wasm");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let out = live.swap("tag", &[huge.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(&stderr(&out), "over the admin API's limit of 64 MiB");
    assert_contains(&stderr(&out), "answered 413)");
    // A body that is not multipart.
    let (code, answer) = http_with(
        live.addr,
        "POST",
        "/v1/steps/tag/swap",
        Some(TOKEN),
        &["Content-Type: application/wasm"],
        b"\0asm",
    );
    assert_eq!(code, 400, "{answer}");
    assert_contains(&answer, "multipart/form-data");

    // With the token it swaps.
    let (code, answer) = post(Some(TOKEN));
    assert_eq!(code, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["version"], 2);
    assert_eq!(answer["tasks"], 2);
    assert_eq!(answer["digest"], answer["previous_digest"]);
    live.feed(10);
    live.drain();
    let outputs = live.finish();
    let by_version = check_outputs(&outputs, 20, 2);
    assert_eq!(by_version.values().sum::<u64>(), 20);
}

#[test]
fn with_no_token_configured_a_swap_is_refused_403() {
    let live = Live::start(None);
    live.feed(10);
    let config = live.write("v2.yaml", b"set: { version: v2 }\n");
    let out = weir(&[
        "swap",
        &live.addr.to_string(),
        "--step",
        "tag",
        "--config",
        &config,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(&stderr(&out), "no admin token is configured");
    assert_contains(&stderr(&out), "answered 403)");
    live.drain();
    let outputs = live.finish();
    let by_version = check_outputs(&outputs, 10, 2);
    assert_eq!(by_version.keys().collect::<Vec<_>>(), ["v1"]);
}

#[test]
fn a_swap_asked_for_during_another_is_refused_409() {
    let live = Live::start(Some(TOKEN));
    live.feed(10);
    // A component with bytes never seen (so not in the compiled cache) is
    // compiled: that swap takes a while.
    let tag = format!("slow-{:?}", std::time::SystemTime::now());
    let component = live.write("slow.wasm", &enricher_variant(&tag));
    let config = live.write("v-slow.yaml", b"set: { version: v9 }\n");
    let slow = {
        let (pipeline, token) = (live.f.pipeline_path(), live.token.clone());
        std::thread::spawn(move || {
            loop {
                let out = weir(&[
                    "swap",
                    pipeline.to_str().unwrap(),
                    "--step",
                    "tag",
                    &component,
                    "--config",
                    &config,
                    "--admin-token-file",
                    token.to_str().unwrap(),
                ]);
                // Met one of the quick swaps below: again.
                if !stderr(&out).contains("answered 409)") {
                    return out;
                }
            }
        })
    };
    // Config-only swaps keeping v1's tag, asked for again and again while
    // the slow one is under way: one of them meets it.
    let (content_type, body) =
        weir::admin::swap_body(None, Some(&json!({ "set": { "version": "v1" } })), None);
    let content_type = format!("Content-Type: {content_type}");
    let mut busy = 0;
    while !slow.is_finished() {
        let (code, answer) = http_with(
            live.addr,
            "POST",
            "/v1/steps/tag/swap",
            Some(TOKEN),
            &[&content_type],
            &body,
        );
        match code {
            409 => {
                assert_contains(&answer, "another swap is in progress");
                busy += 1;
            }
            // A gap between swaps, so the slow one gets its turn.
            200 => std::thread::sleep(Duration::from_millis(2)),
            _ => panic!("{code}: {answer}"),
        }
    }
    let out = slow.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(busy > 0, "no swap was refused as busy");
    live.feed(10);
    live.drain();
    let outputs = live.finish();
    let by_version = check_outputs(&outputs, 20, 2);
    assert_eq!(by_version.values().sum::<u64>(), 20);
}

#[test]
fn with_two_runs_of_a_pipeline_weir_swap_swaps_the_first_and_says_so() {
    let f = Fixture::new(STDIN_PIPELINE, &[]);
    let token = token_file(&f, TOKEN, 0o600);
    let args = ["--admin-token-file", token.to_str().unwrap()];
    let runs = [
        Running::start(&f, &args, &[]),
        Running::start(&f, &args, &[]),
    ];
    let addrs: Vec<SocketAddr> = runs.iter().map(|r| r.admin(&f)).collect();
    let mut pids: Vec<u32> = runs.iter().map(|r| r.child.id()).collect();
    pids.sort();
    let config = f.path("v2.yaml");
    std::fs::write(&config, "set: { version: v2 }\n").unwrap();
    let out = swap(&f, &token, "tag", &["--config", config.to_str().unwrap()]);
    swapped(&out, 1, 2);
    assert_contains(
        &stderr(&out),
        &format!(
            "runs in 2 processes (pids {}, {}); swapping in pid {}: on Kafka the swap \
             reaches the others through the control topic, embedded runs of the file \
             apply it when they next start",
            pids[0], pids[1], pids[0]
        ),
    );
    for (run, addr) in runs.iter().zip(addrs) {
        let swapped_here = versions(&status_json(addr, TOKEN), "tag").len() == 2;
        assert_eq!(
            swapped_here,
            run.child.id() == pids[0],
            "pid {}",
            run.child.id()
        );
    }
    for run in runs {
        let (code, err) = run.wait();
        assert_eq!(code.code(), Some(0), "{err}");
    }
}

/// Step `pass`'s versions in the status, as JSON.
fn pass_versions(addr: SocketAddr) -> Vec<Value> {
    let status = status_json(addr, TOKEN);
    status["steps"][1]["versions"].as_array().unwrap().clone()
}

#[test]
fn weir_swap_with_rollback_brings_the_old_version_back_and_loses_nothing() {
    let live = Live::start(Some(TOKEN));
    live.feed(100);
    let feeder = live.keep_feeding();
    until_version_ran(live.addr, 1, 200);

    // Options are checked: one flag without the other is a usage error,
    // and `pass` stops the run on a failure (error-policy fail, the
    // default), so its trial must tolerate none: refused, nothing changed.
    let panics = live.write("panic.yaml", b"{ mode: panic, every: true }\n");
    let out = live.swap("pass", &["--config", &panics, "--rollback-after", "50"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains(&stderr(&out), "--rollback-above <RATE>");
    let out = live.swap(
        "pass",
        &[
            "--config",
            &panics,
            "--rollback-after",
            "50",
            "--rollback-above",
            "0.2",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(&stderr(&out), "`max_failure_rate` must be 0");
    assert_contains(&stderr(&out), "answered 400");
    assert_eq!(pass_versions(live.addr).len(), 1);

    // A version that panics on every record, on trial: the first failure
    // rolls back, and the version that comes back processes the batch.
    let out = live.swap(
        "pass",
        &[
            "--config",
            &panics,
            "--rollback-after",
            "50",
            "--rollback-above",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_contains(
        &stdout(&out),
        "; on trial for its first 50 records, rolled back if more than 0% of them fail",
    );
    until("the rollback", || pass_versions(live.addr).len() == 3);
    let versions = pass_versions(live.addr);
    assert_eq!(versions[1]["trial"]["outcome"]["kind"], "rolled_back");
    assert_eq!(versions[2]["cause"]["kind"], "rollback");
    assert_eq!(versions[2]["cause"]["from"], 2);
    assert_eq!(versions[2]["config"], versions[0]["config"]);
    let out = weir(&[
        "status",
        live.f.pipeline_path().to_str().unwrap(),
        "--admin-token-file",
        live.token.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let line = table
        .lines()
        .find(|l| l.starts_with("pass: v3"))
        .unwrap_or_else(|| panic!("{table}"));
    assert_contains(line, "rolled back to after v2 failed its trial");
    assert_contains(line, ", rolled back: ");

    feeder.finish();
    live.feed(10);
    live.drain();
    let fed = live.fed();
    // Nothing lost or doubled, and the run did not stop.
    let outputs = live.finish();
    check_outputs(&outputs, fed, 2);
}
