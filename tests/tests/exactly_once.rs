//! Exactly-once on one machine: a pipeline of file sources into file sinks
//! that asks for `processing-guarantee: exactly-once`, killed (SIGKILL) at
//! random moments and run again each time, ends with the output and state
//! of a run that was never interrupted; inputs changed under a checkpoint
//! are refused; a run that read all of its input is followed by a fresh one.
//!
//! The kill loops kill each pipeline `WEIR_KILLS` times (10 by default) at
//! moments drawn from `WEIR_KILL_SEED` (printed; random by default):
//! `WEIR_KILLS=200 cargo test --release -p weir-tests --test exactly_once`
//! runs them longer.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use weir_tests::{Fixture, cache_dir, weir_bin};

/// A small deterministic generator (xorshift64*): the kill moments and the
/// inputs come from a seed a failing run prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    let seed = std::env::var("WEIR_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("WEIR_KILL_SEED={seed}");
    seed
}

fn kills() -> usize {
    std::env::var("WEIR_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// `n` JSON events: users, amounts, timestamps a little out of order, and
/// every 997th line not JSON (for the dead-letter sink).
fn events(n: usize, rng: &mut Rng) -> String {
    let mut out = String::with_capacity(n * 64);
    for i in 0..n {
        if i % 997 == 500 {
            out.push_str("not json at all\n");
            continue;
        }
        let ts = 1_700_000_000_000u64 + i as u64 * 10 - rng.below(50);
        out.push_str(&format!(
            "{{\"user\":\"u{}\",\"amount\":{},\"ts\":{ts},\"seq\":{i}}}\n",
            rng.below(20_000),
            rng.below(1000)
        ));
    }
    out
}

/// `events` running backwards in time, with every 1009th line's `ts`
/// renamed: records without a time, for a source that gives them their
/// partition's, which is then the first record's time all along; a
/// resumed run that lost it would give them the time of its own first
/// record, later in the file and earlier in time.
fn some_without_time(events: &str) -> String {
    let mut out = String::with_capacity(events.len());
    for (i, line) in events.lines().enumerate() {
        let line = match line.split_once("\"ts\":") {
            Some((head, tail)) => {
                let (ts, rest) = tail.split_at(tail.find(',').unwrap_or(tail.len()));
                let ts: i64 = ts.parse().unwrap();
                let name = if i % 1009 == 700 { "no_ts" } else { "ts" };
                format!("{head}\"{name}\":{}{rest}", 3_400_000_000_000 - ts)
            }
            None => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn weir(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(weir_bin());
    c.args(args)
        .current_dir(dir)
        .env("WEIR_CACHE_DIR", cache_dir());
    c
}

fn run_to_end(dir: &Path, args: &[&str]) -> Output {
    let out = weir(dir, args).output().expect("cannot run weir");
    assert!(
        out.status.success(),
        "weir {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every store entry of the pipeline in `dir`, sorted.
fn state(dir: &Path) -> Vec<String> {
    let out = run_to_end(dir, &["state", "dump", "pipeline.yaml"]);
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// The dead-letter sink's records with the timestamp of lines that are not
/// JSON left out, after checking it is one for all of them: they have no
/// time of their own and take the first run's start, which a resumed run
/// keeps (and which differs from the reference run's). Late records keep
/// their own.
fn first_run_time(text: &str) -> String {
    let mut times = std::collections::BTreeSet::new();
    let mut out = String::new();
    for line in text.lines() {
        let mut v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        if v["headers"]["weir.error.kind"] != "late" {
            times.insert(v["timestamp"].to_string());
            v.as_object_mut().unwrap().remove("timestamp");
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    assert!(times.len() <= 1, "dead letters of several times: {times:?}");
    out
}

fn sorted(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// A sink's records grouped by key, each key's in the order written;
/// records without a key by the partition they went to (by line number),
/// each partition's in order.
fn by_key(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let key = match &v["key"] {
            serde_json::Value::Null => {
                format!("no key, partition {}", v["headers"]["weir.error.partition"])
            }
            key => key.to_string(),
        };
        keys.entry(key).or_default().push(line.to_string());
    }
    keys
}

/// The pipeline in `pipeline` over `input`, run once without a stop (the
/// reference) and once killed `kills()` times and resumed to its end: the
/// sinks (`outputs`) hold the same records, in the same order per key
/// (byte for byte when `identical`), and the stores the same state.
fn killed_and_resumed_matches_uninterrupted(pipeline: &str, outputs: &[&str], identical: bool) {
    let mut rng = Rng(seed());
    let mut input = events(400_000, &mut rng);
    if pipeline.contains("on-invalid: partition-time") {
        input = some_without_time(&input);
    }
    // A pipeline of two sources reads the events split between two files
    // (odd and even lines: the same span of time, merged by timestamp).
    let (odd, even): (Vec<&str>, Vec<&str>) = {
        let lines: Vec<(usize, &str)> = input.lines().enumerate().collect();
        let (o, e): (Vec<_>, Vec<_>) = lines.into_iter().partition(|(i, _)| i % 2 == 1);
        (
            o.into_iter().map(|(_, l)| l).collect(),
            e.into_iter().map(|(_, l)| l).collect(),
        )
    };
    let (odd, even) = (odd.join("\n") + "\n", even.join("\n") + "\n");
    let files = [
        ("in.jsonl", input.as_str()),
        ("odd.jsonl", odd.as_str()),
        ("even.jsonl", even.as_str()),
    ];
    let reference = Fixture::new(pipeline, &files);
    let started = Instant::now();
    let out = run_to_end(reference.dir.path(), &["run", "pipeline.yaml"]);
    let full = started.elapsed();
    assert!(
        stderr(&out).contains("delivery: exactly-once into"),
        "{}",
        stderr(&out)
    );

    let killed = Fixture::new(pipeline, &files);
    let (mut resumed, mut kills_done) = (0, 0);
    for i in 0..kills() {
        let mut child = weir(killed.dir.path(), &["run", "pipeline.yaml"])
            // The checkpoint thread's debug line says when a checkpoint
            // is on disk.
            .env("RUST_LOG", "weir::runtime::checkpoint=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run weir");
        let (checkpointed, said) = watch_checkpoints(child.stderr.take().unwrap());
        // Every other kill comes after the run's first checkpoint, so some
        // restarts resume whatever the machine's speed (a loaded machine
        // can spend the whole of a random wait starting up); the others at
        // any moment, start-up included.
        let mut span = full.as_millis() as u64;
        if i % 2 == 1 {
            let _ = checkpointed.recv_timeout(Duration::from_secs(60));
            span /= 2;
        }
        let wait = Duration::from_millis(rng.below(span + 50));
        std::thread::sleep(wait);
        if child.try_wait().unwrap().is_none() {
            child.kill().expect("SIGKILL");
            kills_done += 1;
        }
        child.wait().unwrap();
        let said = said.join().unwrap();
        if said.contains("resuming the interrupted run") {
            resumed += 1;
        }
        assert!(
            !said.contains("error"),
            "a killed run's restart failed: {said}"
        );
    }
    let last = run_to_end(killed.dir.path(), &["run", "pipeline.yaml"]);
    eprintln!(
        "{kills_done} kills, {resumed} resumes; the last run: {}",
        stderr(&last)
    );
    assert!(
        kills() < 4 || resumed > 0,
        "no run resumed from a checkpoint in {kills_done} kills"
    );

    for name in outputs {
        let want = std::fs::read_to_string(reference.path(name)).unwrap();
        let got = std::fs::read_to_string(killed.path(name)).unwrap();
        let (want, got) = match *name == "rejected.jsonl" {
            true => (first_run_time(&want), first_run_time(&got)),
            false => (want, got),
        };
        // Dead letters of two sources interleave as their batches come; a
        // batch's lines that are not records are dead-lettered before its
        // late records, so batch bounds (a resumed run's first batch starts
        // where it resumed) order the two kinds.
        let several_kinds = pipeline.contains("from: [") || pipeline.contains("late: dead-letter");
        let (want, got) = match *name == "rejected.jsonl" && several_kinds {
            true => (sorted(&want), sorted(&got)),
            false => (want, got),
        };
        if identical {
            assert!(
                want == got,
                "{name} differs from the uninterrupted run's ({} and {} bytes)",
                got.len(),
                want.len()
            );
        } else {
            let (got, want) = (by_key(&got), by_key(&want));
            assert_eq!(got.len(), want.len(), "{name}: another number of keys");
            for (key, records) in &want {
                assert!(
                    got.get(key) == Some(records),
                    "{name}, key {key}: other records, or in another order:\n{:?}\nwanted\n{records:?}",
                    got.get(key)
                );
            }
        }
    }
    if pipeline.contains("kind: aggregate") {
        assert_eq!(state(killed.dir.path()), state(reference.dir.path()));
    }
}

const STATEFUL: &str = "
name: totals
partitions: 1
processing-guarantee: exactly-once
error-policy: dead-letter
dead-letter: rejected
# A write cache smaller than the state: full before the interval is up, it
# asks for early checkpoints.
state: { dir: state, checkpoint-interval: 50ms, cache: 1MiB }
sources:
  in:
    kind: file
    path: in.jsonl
    format: json
    timestamp: { field: ts, unit: ms }
steps:
  - { name: by-user, kind: group-by, key: { field: user } }
  - name: totals
    kind: aggregate
    id: totals
    aggregations: { n: count, total: { sum: amount }, avg: { avg: amount } }
sinks:
  out: { kind: file, path: out.jsonl, from: totals }
  rejected: { kind: file, path: rejected.jsonl }
";

#[test]
fn a_stateful_pipeline_killed_at_random_moments_ends_as_an_uninterrupted_run() {
    killed_and_resumed_matches_uninterrupted(STATEFUL, &["out.jsonl", "rejected.jsonl"], true);
}

/// Counts and sums per user in one-second windows with 20 ms of grace
/// (the events are up to 50 ms out of order: some come late), one final
/// result per window, the windows left open closed at the end of the
/// input; windows expire a segment at a time as the run goes.
const WINDOWED: &str = "
name: windows
partitions: 1
processing-guarantee: exactly-once
error-policy: dead-letter
dead-letter: rejected
state: { dir: state, checkpoint-interval: 50ms, cache: 1MiB }
sources:
  in:
    kind: file
    path: in.jsonl
    format: json
    timestamp: { field: ts, unit: ms }
steps:
  - { name: by-user, kind: group-by, key: { field: user } }
  - name: per-second
    kind: aggregate
    id: per-second
    window: { tumbling: 1s, grace: 20ms, late: dead-letter, end-of-input: close-windows }
    emit: final
    aggregations: { n: count, total: { sum: amount } }
sinks:
  out: { kind: file, path: out.jsonl, from: per-second }
  rejected: { kind: file, path: rejected.jsonl }
";

#[test]
fn a_windowed_pipeline_killed_at_random_moments_ends_as_an_uninterrupted_run() {
    // No final result lost or repeated: the windows' state, stream time and
    // what was emitted are in each checkpoint with the sink's length.
    killed_and_resumed_matches_uninterrupted(WINDOWED, &["out.jsonl", "rejected.jsonl"], true);
}

#[test]
fn a_pipeline_timed_by_an_extractor_plugin_killed_at_random_moments_ends_as_an_uninterrupted_run() {
    // The partition times records without a time take are in each
    // checkpoint (the aggregate's updates carry their records' times).
    let pipeline = STATEFUL
        .replace(
            "    timestamp: { field: ts, unit: ms }\n",
            "    timestamp: { plugin: order-time, config: { fields: [ts] }, on-invalid: partition-time }\n",
        )
        .replace(
            "sources:\n",
            "plugins:\n  order-time: { path: '{plugin:order_time}' }\nsources:\n",
        );
    assert!(pipeline.contains("plugin: order-time"), "{pipeline}");
    killed_and_resumed_matches_uninterrupted(&pipeline, &["out.jsonl", "rejected.jsonl"], true);
}

#[test]
fn a_stateful_pipeline_re_keyed_across_partitions_killed_at_random_moments_ends_as_an_uninterrupted_run()
 {
    // Re-keyed records reach each key from three upstream tasks; they are
    // taken in the order of their input lines, whichever task sent them.
    let pipeline = STATEFUL.replace("partitions: 1", "partitions: 3");
    killed_and_resumed_matches_uninterrupted(&pipeline, &["out.jsonl", "rejected.jsonl"], false);
}

#[test]
fn two_sources_merged_by_time_killed_at_random_moments_end_as_an_uninterrupted_run() {
    // What the merge holds back at a checkpoint (records of one file
    // waiting for the other's) is saved with it.
    let pipeline = STATEFUL
        .replace(
            "  in:\n    kind: file\n    path: in.jsonl",
            "  odd:\n    kind: file\n    path: odd.jsonl\n    format: json\n    timestamp: { field: ts, unit: ms }\n  even:\n    kind: file\n    path: even.jsonl",
        )
        .replace(
            "kind: group-by, key: { field: user } }",
            "kind: group-by, key: { field: user }, from: [odd, even] }",
        );
    assert!(pipeline.contains("from: [odd, even]"), "{pipeline}");
    killed_and_resumed_matches_uninterrupted(&pipeline, &["out.jsonl", "rejected.jsonl"], true);
}

#[test]
fn a_stateless_pipeline_over_partitions_killed_at_random_moments_ends_as_an_uninterrupted_run() {
    let pipeline = "
name: big-orders
partitions: 3
processing-guarantee: exactly-once
error-policy: dead-letter
dead-letter: rejected
state: { dir: state, checkpoint-interval: 50ms, fsync: true }
sources:
  in:
    kind: file
    path: in.jsonl
    format: json
    key: { field: user }
    timestamp: { field: ts, unit: ms }
plugins:
  filter: { path: '{plugin:json-filter}' }
steps:
  - { name: big, kind: filter, plugin: filter, config: { field: amount, op: gte, value: 300 } }
sinks:
  out: { kind: file, path: out.jsonl }
  rejected: { kind: file, path: rejected.jsonl }
";
    killed_and_resumed_matches_uninterrupted(pipeline, &["out.jsonl", "rejected.jsonl"], false);
}

/// Reads a run's stderr to its end on a thread, which returns it; the
/// receiver hears once the run has taken its first checkpoint.
fn watch_checkpoints(
    stderr: std::process::ChildStderr,
) -> (
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<String>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut said = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("checkpoint taken") {
                let _ = tx.send(());
            } else {
                said.push_str(&line);
                said.push('\n');
            }
        }
        said
    });
    (rx, reader)
}

/// Runs the stateful pipeline in `f` and kills it once it has written a
/// checkpoint (its output has grown well past a checkpoint's worth: at
/// 50 ms between checkpoints, 15 MB of output is several).
fn interrupt(f: &Fixture) {
    let mut child = weir(f.dir.path(), &["run", "pipeline.yaml", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = f.path("out.jsonl");
    // The run starts fresh: what an earlier run wrote is not this one's.
    let _ = std::fs::remove_file(&out);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < 15_000_000 {
        assert!(Instant::now() < deadline, "the run wrote nothing");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn input(f: &Fixture) -> PathBuf {
    f.path("in.jsonl")
}

#[test]
fn an_input_changed_under_a_checkpoint_is_refused_and_one_that_grew_resumes() {
    let mut rng = Rng(7);
    let text = events(600_000, &mut rng);
    let more = events(1000, &mut rng);
    let f = Fixture::new(STATEFUL, &[("in.jsonl", &text)]);
    let reference = Fixture::new(STATEFUL, &[("in.jsonl", &(text.clone() + &more))]);
    run_to_end(reference.dir.path(), &["run", "pipeline.yaml"]);

    // Rewritten in place, in the part already read: refused.
    interrupt(&f);
    let original = std::fs::read(input(&f)).unwrap();
    let mut changed = original.clone();
    changed[2] = b'X';
    {
        use std::io::{Seek, Write};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(input(&f))
            .unwrap();
        file.seek(std::io::SeekFrom::Start(0)).unwrap();
        file.write_all(&changed[..10]).unwrap();
    }
    let out = weir(f.dir.path(), &["run", "pipeline.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains("cannot resume from checkpoint")
            && said.contains("in.jsonl changed in its first")
            && said.contains("--from-scratch"),
        "{said}"
    );
    // Truncated: refused.
    std::fs::OpenOptions::new()
        .write(true)
        .open(input(&f))
        .unwrap()
        .set_len(100)
        .unwrap();
    let said = stderr(
        &weir(f.dir.path(), &["run", "pipeline.yaml"])
            .output()
            .unwrap(),
    );
    assert!(said.contains("has 100 bytes, fewer than the"), "{said}");
    // Replaced by another file (rotated): refused, whatever it holds.
    let other = f.path("in.jsonl.new");
    std::fs::write(&other, &original).unwrap();
    std::fs::rename(&other, input(&f)).unwrap();
    let said = stderr(
        &weir(f.dir.path(), &["run", "pipeline.yaml"])
            .output()
            .unwrap(),
    );
    assert!(
        said.contains("is another file than the one the checkpoint read"),
        "{said}"
    );

    // Started over, killed again, then the input grows: the run resumes and
    // ends as one over the whole input.
    let said = stderr(&run_to_end(
        f.dir.path(),
        &["run", "pipeline.yaml", "--from-scratch"],
    ));
    assert!(said.contains("discarding checkpoint"), "{said}");
    std::fs::remove_file(f.path("out.jsonl")).unwrap();
    let said = stderr(&run_to_end(f.dir.path(), &["run", "pipeline.yaml"]));
    assert!(
        said.contains("the last run read all of its input") && said.contains("starting fresh"),
        "a completed run is followed by a fresh one: {said}"
    );
    interrupt(&f);
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(input(&f))
            .unwrap();
        file.write_all(more.as_bytes()).unwrap();
    }
    let said = stderr(&run_to_end(f.dir.path(), &["run", "pipeline.yaml"]));
    assert!(said.contains("resuming the interrupted run"), "{said}");
    let read = |f: &Fixture, name: &str| std::fs::read_to_string(f.path(name)).unwrap();
    assert!(
        read(&f, "out.jsonl") == read(&reference, "out.jsonl"),
        "out.jsonl differs from a run over the whole input"
    );
    assert!(
        first_run_time(&read(&f, "rejected.jsonl"))
            == first_run_time(&read(&reference, "rejected.jsonl")),
        "rejected.jsonl differs from a run over the whole input"
    );
    assert_eq!(state(f.dir.path()), state(reference.dir.path()));
}

#[test]
fn from_scratch_discards_an_interrupted_runs_checkpoint_and_weir_test_never_checkpoints() {
    let mut rng = Rng(11);
    let f = Fixture::new(STATEFUL, &[("in.jsonl", &events(600_000, &mut rng))]);
    let reference = Fixture::new(
        STATEFUL,
        &[("in.jsonl", &std::fs::read_to_string(input(&f)).unwrap())],
    );
    run_to_end(reference.dir.path(), &["run", "pipeline.yaml"]);
    interrupt(&f);
    let said = stderr(&run_to_end(
        f.dir.path(),
        &["run", "pipeline.yaml", "--from-scratch"],
    ));
    assert!(
        said.contains("discarding checkpoint") && said.contains("as --from-scratch asks"),
        "{said}"
    );
    assert!(
        std::fs::read(f.path("out.jsonl")).unwrap()
            == std::fs::read(reference.path("out.jsonl")).unwrap()
    );

    // The test driver runs fixtures, never checkpoints.
    let t = Fixture::new(
        &STATEFUL.replace("state: { dir: state,", "state: { dir: test-state,"),
        &[
            ("in.jsonl", ""),
            (
                "tests/pipeline/one/input/in.jsonl",
                "{\"value\":{\"user\":\"a\",\"amount\":5,\"ts\":1000}}\n",
            ),
        ],
    );
    // --bless runs the case and writes what it made as expected.
    let out = weir(t.dir.path(), &["test", "pipeline.yaml", "--bless"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let made = std::fs::read_to_string(t.path("tests/pipeline/one/expected/out.jsonl")).unwrap();
    assert!(made.contains("\"total\":5"), "{made}");
    assert!(
        !t.path("test-state").exists(),
        "weir test wrote a checkpoint"
    );
}

#[test]
fn the_examples_kill_and_resume_script_ends_as_an_uninterrupted_run() {
    let script = weir_tests::repo().join("examples/exactly-once/kill-and-resume");
    let out = Command::new(&script)
        .env("WEIR", weir_bin())
        .env("RECORDS", "600000")
        .env("KILLS", "3")
        .env("WEIR_CACHE_DIR", cache_dir())
        .output()
        .expect("cannot run the example's script");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("dead letters and state as the uninterrupted run"),
        "{said}{}",
        stderr(&out)
    );
}

#[test]
fn a_run_stopped_by_ctrl_c_keeps_its_checkpoint_and_the_topology_says_exactly_once() {
    let mut rng = Rng(13);
    let f = Fixture::new(STATEFUL, &[("in.jsonl", &events(600_000, &mut rng))]);
    let topology = run_to_end(
        f.dir.path(),
        &["validate", "pipeline.yaml", "--print-topology"],
    );
    let shown = String::from_utf8_lossy(&topology.stdout);
    assert!(
        shown.contains("exactly-once: sink out is file out.jsonl (checkpointed with the sources' positions and the state every 50ms"),
        "{shown}"
    );
    let mut child = weir(f.dir.path(), &["run", "pipeline.yaml", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while std::fs::metadata(f.path("out.jsonl")).map_or(0, |m| m.len()) < 15_000_000 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended too soon"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "a run stopped by SIGINT says so: {status}"
    );
    let said = stderr(&run_to_end(f.dir.path(), &["run", "pipeline.yaml"]));
    assert!(said.contains("resuming the interrupted run"), "{said}");
}
