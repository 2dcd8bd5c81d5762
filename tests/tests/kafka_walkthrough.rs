//! The README's Kafka walk-through, run as written (its `weir run` lines,
//! in order) on a broker with Kafka's stock 7-day retention checked every
//! second, at a slow user's pace: the sample orders carry timestamps from
//! 2023, so unless the example's topics say they keep their records, the
//! broker deletes them between the steps and the walk-through prints
//! nothing. Needs Java, as every Kafka test does; the broker is its own
//! (about 15 s to start), so the shared one keeps its settings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::kafka::OwnBroker;
use weir_tests::{cache_dir, repo, weir_bin};

/// How long a user may take between two commands: several retention checks.
const PAUSE: Duration = Duration::from_secs(4);
const WAIT: Duration = Duration::from_secs(60);

/// The `weir` command lines of the README's "Running on Kafka" section,
/// without their comments, as arguments after `target/release/weir`.
fn walkthrough() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("\n## Running on Kafka")
        .nth(1)
        .expect("README has a `Running on Kafka` section");
    let section = section.split("\n## ").next().unwrap();
    assert!(
        section.contains("export $(scripts/kafka env)"),
        "the walk-through no longer takes the broker from scripts/kafka env:\n{section}"
    );
    let commands: Vec<Vec<String>> = section
        .lines()
        .filter_map(|l| l.trim().strip_prefix("target/release/weir "))
        .map(|l| {
            let command = l.split('#').next().unwrap();
            command.split_whitespace().map(String::from).collect()
        })
        .collect();
    assert!(commands.len() >= 3, "{commands:?}");
    commands
}

/// What `scripts/kafka env` prints for this broker, as `(name, value)`.
fn kafka_env(broker: &OwnBroker) -> (String, String) {
    let out = broker.script().arg("env").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let (name, value) = text.trim().split_once('=').expect("NAME=value");
    assert_eq!(value, broker.bootstrap);
    (name.to_string(), value.to_string())
}

/// The order ids the example's pipeline keeps: orders over 100.
fn large_orders() -> BTreeSet<i64> {
    let text = std::fs::read_to_string(repo().join("examples/kafka-orders/orders.jsonl")).unwrap();
    text.lines()
        .filter_map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            let amount = r["value"]["amount"].as_f64()?;
            (amount > 100.0).then(|| r["value"]["order_id"].as_i64().unwrap())
        })
        .collect()
}

/// Fails if the broker has deleted records of the example's topics.
fn assert_kept(broker: &OwnBroker, after: &str) {
    for topic in ["orders", "orders-large", "orders-dead-letter"] {
        let marks = broker.watermarks(topic);
        assert!(
            marks.values().all(|(start, _)| *start == 0),
            "{PAUSE:?} after {after}, the broker had deleted records of topic {topic} \
             (start and end offsets by partition: {marks:?}): its retention took them"
        );
    }
}

struct Run {
    child: Child,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl Run {
    fn start(args: &[String], env: &(String, String), logs: &Path, n: usize) -> Run {
        let out = logs.join(format!("{n}.out"));
        let err = logs.join(format!("{n}.err"));
        let child = Command::new(weir_bin())
            .args(args)
            .current_dir(repo())
            .env(&env.0, &env.1)
            .env("WEIR_CACHE_DIR", cache_dir())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("cannot start weir");
        Run { child, out, err }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits (bounded) for the process to end; fails unless it exited
    /// with `code` (0 finished, 130 stopped by Ctrl-C).
    fn finish(mut self, what: &str, code: i32) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert_eq!(
                    status.code(),
                    Some(code),
                    "{what}: {status}\n{}",
                    self.stderr()
                );
                return self.stdout();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{what} did not end within {WAIT:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ctrl-C, as the README says, then [`Run::finish`]: exit status 130.
    fn interrupt(self, what: &str) -> String {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(status.success());
        self.finish(what, 130)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_readme_kafka_walkthrough_works_on_a_stock_broker_at_any_pace() {
    let broker = OwnBroker::start(&[
        "log.retention.ms=604800000",
        "log.retention.check.interval.ms=1000",
        // The first check comes 30 s after start otherwise.
        "log.initial.task.delay.ms=0",
    ]);
    let env = kafka_env(&broker);
    let logs = tempfile::tempdir().unwrap();
    let commands = walkthrough();
    let want = large_orders();
    assert!(!want.is_empty());
    let mut shown = None;
    for (n, args) in commands.iter().enumerate() {
        let what = format!("`weir {}`", args.join(" "));
        let run = Run::start(args, &env, logs.path(), n);
        let pipeline = args.last().unwrap();
        if pipeline.ends_with("load.yaml") {
            run.finish(&what, 0);
        } else if pipeline.ends_with("pipeline.yaml") {
            // Caught up: the application has committed every input record.
            let deadline = Instant::now() + WAIT;
            loop {
                let end: BTreeMap<i32, i64> = broker
                    .watermarks("orders")
                    .into_iter()
                    .map(|(p, (_, high))| (p, high))
                    .collect();
                let committed = broker.committed("kafka-orders", "orders");
                let written: i64 = end.values().sum();
                if written > 0
                    && end
                        .iter()
                        .all(|(p, o)| *o == 0 || committed.get(p) == Some(o))
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what} did not catch up within {WAIT:?}: end offsets {end:?}, committed {committed:?}\n{}",
                    run.stderr()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            run.interrupt(&what);
        } else if pipeline.ends_with("show.yaml") {
            // It prints until stopped: wait for the large orders, then a
            // little more for any extra, then Ctrl-C.
            let deadline = Instant::now() + Duration::from_secs(30);
            while run.stdout().lines().count() < want.len() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            std::thread::sleep(Duration::from_secs(2));
            shown = Some(run.interrupt(&what));
        } else {
            panic!("the walk-through has a step this test does not know: {what}");
        }
        // A user reads the output and types the next command.
        std::thread::sleep(PAUSE);
        assert_kept(&broker, &what);
    }
    let shown = shown.expect("the walk-through shows topic orders-large");
    let ids: Vec<i64> = shown
        .lines()
        .map(|l| {
            let r: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(r["value"]["tier"], "large", "{l}");
            r["value"]["order_id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(
        ids.len(),
        want.len(),
        "show.yaml printed {} records, expected the {} large orders:\n{shown}",
        ids.len(),
        want.len()
    );
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), want, "{shown}");
}
