//! Issue 13, items 7 and 10: aggregations on Kafka keep their state in
//! RocksDB, log it to `<application-id>-<id>-changelog`, and get it back
//! after a restart, a lost state directory and a SIGKILL.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use weir_tests::kafka::{self, Cleanup, Rec, Settings, WeirProcess};

const WAIT: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(2);
const USERS: usize = 7;

/// Records `from..to`, keyed by order number (so a group-by on `user`
/// moves them), each for user `u<i % USERS>` with amount `i`.
fn events(from: usize, to: usize) -> Vec<Rec> {
    events_of(from, to, USERS)
}

/// [`events`] over `users` users.
fn events_of(from: usize, to: usize, users: usize) -> Vec<Rec> {
    (from..to)
        .map(|i| {
            Rec::new(
                &format!("order-{i}"),
                &format!(r#"{{"user":"u{}","amount":{i}}}"#, i % users),
            )
        })
        .collect()
}

/// Each user's count and sum over records `0..n`.
fn expected(n: usize) -> BTreeMap<String, (u64, u64)> {
    expected_of(n, USERS)
}

/// [`expected`] over `users` users.
fn expected_of(n: usize, users: usize) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let e = out.entry(format!("u{}", i % users)).or_insert((0, 0));
        e.0 += 1;
        e.1 += i as u64;
    }
    out
}

fn body(input: &str, output: &str) -> String {
    format!(
        "sources:
  in: {{ kind: kafka, topic: {input}, value-format: json }}
steps:
  - {{ name: by-user, kind: group-by, key: {{ field: user }} }}
  - {{ name: totals, id: totals, kind: aggregate, aggregations: {{ n: count, total: {{ sum: amount }} }} }}
sinks:
  out: {{ kind: kafka, topic: {output}, key-format: string, value-format: json, from: totals }}
"
    )
}

/// Each user's latest update on the output topic (one partition per key,
/// so the last read is the latest).
fn latest(output: &str, want: usize, weir: &WeirProcess) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for r in weir.consume(output, want, WAIT, SETTLE) {
        let v = r.rec.json();
        out.insert(
            r.rec.key.clone().expect("a key"),
            (v["n"].as_u64().unwrap(), v["total"].as_u64().unwrap()),
        );
    }
    out
}

/// One test's topics (input, output and the internal ones weir makes),
/// deleted when it ends.
struct Topics {
    input: String,
    output: String,
    app: String,
    changelog: String,
    _cleanup: Cleanup,
}

impl Topics {
    /// Input and output topics with these partition counts, names starting
    /// with `prefix`.
    fn new(prefix: &str, input_partitions: i32, output_partitions: i32) -> Topics {
        let (input, output, app) = (
            kafka::unique(&format!("{prefix}-in")),
            kafka::unique(&format!("{prefix}-out")),
            kafka::unique(&format!("{prefix}-app")),
        );
        let changelog = format!("{app}-totals-changelog");
        let repartition = format!("{app}-totals-repartition");
        let _cleanup = Cleanup::topics(&[&input, &output, &changelog, &repartition]);
        kafka::create_topic(&input, input_partitions);
        kafka::create_topic(&output, output_partitions);
        Topics {
            input,
            output,
            app,
            changelog,
            _cleanup,
        }
    }

    fn fixture(&self) -> weir_tests::Fixture {
        self.fixture_with("")
    }

    /// [`Topics::fixture`] with more top-level sections (`state:`).
    fn fixture_with(&self, more: &str) -> weir_tests::Fixture {
        let body = body(&self.input, &self.output) + more;
        kafka::pipeline(&self.app, &Settings::default(), &body)
    }
}

fn start(fixture: &weir_tests::Fixture, log: &str, state: &Path) -> WeirProcess {
    WeirProcess::start_with(fixture, log, &["--state-dir", state.to_str().unwrap()])
}

#[test]
fn aggregates_on_kafka_survive_restarts_lost_state_and_sigkill() {
    let topics = Topics::new("st", 2, 2);
    let (input, output, changelog) = (&topics.input, &topics.output, &topics.changelog);
    let fixture = topics.fixture();
    let (dir_a, dir_b) = (fixture.path("state-a"), fixture.path("state-b"));

    // 1. A first run counts and logs its state.
    kafka::produce(input, &events(0, 300));
    let weir = start(&fixture, "run1.log", &dir_a);
    assert_eq!(
        latest(output, 300, &weir),
        expected(300),
        "{}",
        weir.log_text()
    );
    weir.stop();
    assert_eq!(kafka::partitions(changelog), 2);
    let configs = kafka::topic_configs(changelog);
    assert!(configs.contains("cleanup.policy=compact"), "{configs}");
    for task in ["1_0", "1_1"] {
        let checkpoint = std::fs::read_to_string(dir_a.join(task).join(".checkpoint")).unwrap();
        assert!(checkpoint.contains("\"totals\""), "{checkpoint}");
    }

    // 2. Restarted on its own state: it goes on from where it was.
    kafka::produce(input, &events(300, 500));
    let weir = start(&fixture, "run2.log", &dir_a);
    assert_eq!(
        latest(output, 500, &weir),
        expected(500),
        "{}",
        weir.log_text()
    );
    weir.stop();

    // 3. Its state directory lost (another machine): restored from the
    // changelog, to the same values.
    kafka::produce(input, &events(500, 600));
    let weir = start(&fixture, "run3.log", &dir_b);
    assert_eq!(
        latest(output, 600, &weir),
        expected(600),
        "{}",
        weir.log_text()
    );
    let log = weir.stop();
    assert!(log.contains("restored"), "{log}");

    // 4. SIGKILL once the work is committed (RocksDB's write-ahead log is
    // off, so what the memtables held is gone): restored from the
    // checkpoint on, to the same values.
    kafka::produce(input, &events(600, 700));
    let weir = start(&fixture, "run4.log", &dir_b);
    assert_eq!(
        latest(output, 700, &weir),
        expected(700),
        "{}",
        weir.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    weir.kill();
    kafka::produce(input, &events(700, 800));
    let weir = start(&fixture, "run5.log", &dir_b);
    assert_eq!(
        latest(output, 800, &weir),
        expected(800),
        "{}",
        weir.log_text()
    );
    weir.stop();
}

/// A running task checkpoints its state every 10,000 changelog records or
/// so (as Kafka Streams does), so a restore after SIGKILL starts there,
/// not at the changelog's beginning (RocksDB's write-ahead log is off: the
/// checkpoint flushed what it claims to disk).
#[test]
fn a_restore_after_sigkill_starts_from_the_last_checkpoint() {
    let topics = Topics::new("ck", 2, 2);
    let (input, output) = (&topics.input, &topics.output);
    let fixture = topics.fixture();
    let state = fixture.path("state");
    // Every record a key of its own: one changelog record each.
    let (n, users) = (24_000, 24_000);
    kafka::produce(input, &events_of(0, n, users));
    let weir = start(&fixture, "run1.log", &state);
    assert_eq!(
        latest(output, n, &weir),
        expected_of(n, users),
        "{}",
        weir.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    weir.kill();
    for task in ["1_0", "1_1"] {
        let text = std::fs::read_to_string(state.join(task).join(".checkpoint")).unwrap();
        let checkpoint: serde_json::Value = serde_json::from_str(&text).unwrap();
        let offset = checkpoint["offsets"]["totals"].as_u64().unwrap_or(0);
        assert!(
            offset >= 5_000,
            "task {task} checkpointed at {offset}: {text}"
        );
    }
    kafka::produce(input, &events_of(n, n + 100, users));
    let weir = start(&fixture, "run2.log", &state);
    assert_eq!(
        latest(output, n + 100, &weir),
        expected_of(n + 100, users),
        "{}",
        weir.log_text()
    );
    // Restored from the checkpoint on (nothing at all when the checkpoint
    // was taken at the changelog's end), never from the start.
    let log = weir.stop();
    assert!(log.contains("state restored"), "{log}");
    assert!(!log.contains("from the start"), "{log}");
}

/// The changelog offset `task`'s checkpoint records for the store, if any.
fn checkpointed(state: &Path, task: &str) -> Option<u64> {
    let text = std::fs::read_to_string(state.join(task).join(".checkpoint")).ok()?;
    let checkpoint: serde_json::Value = serde_json::from_str(&text).ok()?;
    checkpoint["offsets"]["totals"].as_u64()
}

/// A restore killed midway resumes from the progress it recorded: a
/// process restoring a large store (in 64 KiB chunks, each recorded in the
/// task's checkpoint once ingested) is SIGKILLed as soon as a checkpoint
/// shows a partial restore; restarted on the same directory, that task
/// restores from there on, not from the start, and its state is whole.
#[test]
fn a_restore_killed_midway_resumes_where_it_was() {
    let topics = Topics::new("ri", 2, 2);
    let (input, output, changelog) = (&topics.input, &topics.output, &topics.changelog);
    let fixture = topics.fixture_with("state: { write-buffer: 64KiB }\n");
    // Every record a user of its own: one changelog record each.
    let (n, users) = (100_000, 100_000);
    kafka::produce(input, &events_of(0, n, users));
    let weir = start(&fixture, "fill.log", &fixture.path("state-a"));
    let filled = std::time::Instant::now();
    while kafka::end_offsets(output).values().sum::<i64>() < n as i64 {
        assert!(filled.elapsed() < WAIT, "{}", weir.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    weir.stop();
    let ends = kafka::end_offsets(changelog);
    assert!(ends.values().sum::<i64>() >= users as i64, "{ends:?}");

    // Restores into an empty directory until one is caught midway (one
    // chunk is about 1,500 records, so a task records progress about 30
    // times; a restore that ends first is simply tried again).
    let state = fixture.path("state-b");
    let mut caught = None;
    for attempt in 0..5 {
        let _ = std::fs::remove_dir_all(&state);
        let weir = start(&fixture, &format!("restore-{attempt}.log"), &state);
        let started = std::time::Instant::now();
        loop {
            caught = [("1_0", 0), ("1_1", 1)].into_iter().find_map(|(task, p)| {
                let at = checkpointed(&state, task)?;
                (at > 0 && (at as i64) < ends[&p]).then_some((task, at))
            });
            if caught.is_some() {
                weir.kill();
                break;
            }
            if weir.log_text().matches(" restored ").count() == 2 || started.elapsed() > WAIT {
                weir.stop();
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if caught.is_some() {
            break;
        }
    }
    let (task, at) = caught.expect("a restore caught midway in five attempts");

    let weir = start(&fixture, "resumed.log", &state);
    // One more record for users spread over the whole store: each count is
    // 2 and each sum the user's first amount plus 1.
    let sample: Vec<usize> = (0..users).step_by(users / 500).collect();
    let more: Vec<Rec> = sample
        .iter()
        .map(|u| {
            Rec::new(
                &format!("again-{u}"),
                &format!(r#"{{"user":"u{u}","amount":1}}"#),
            )
        })
        .collect();
    kafka::produce(input, &more);
    let got = latest(output, n + sample.len(), &weir);
    let log = weir.stop();
    for u in &sample {
        assert_eq!(
            got[&format!("u{u}")],
            (2, *u as u64 + 1),
            "user u{u}\n{log}"
        );
    }
    let line = log
        .lines()
        .find(|l| l.contains(" restored ") && l.contains(&format!("task={task}")))
        .unwrap_or_else(|| panic!("no restore of task {task} in\n{log}"));
    let from: u64 = line
        .split("from offset ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|offset| offset.parse().ok())
        .unwrap_or_else(|| panic!("task {task} restored from the start: {line}"));
    assert!(from >= at, "{line} (checkpointed at {at} before the kill)");
}

/// Two processes in one group share the tasks of both sub-topologies;
/// every user's aggregate is what one process alone computes, while
/// tasks move between them and restore their state.
#[test]
fn two_processes_share_the_aggregation_and_agree_with_one() {
    let topics = Topics::new("tp", 4, 2);
    let (input, output) = (&topics.input, &topics.output);
    let fixture = topics.fixture();
    kafka::produce(input, &events(0, 1_000));
    let first = start(&fixture, "first.log", &fixture.path("state-1"));
    // The second joins while the first works: tasks move to it.
    std::thread::sleep(Duration::from_millis(1500));
    kafka::produce(input, &events(1_000, 2_000));
    let second = start(&fixture, "second.log", &fixture.path("state-2"));
    std::thread::sleep(Duration::from_secs(3));
    kafka::produce(input, &events(2_000, 3_000));
    let got = latest(output, 3_000, &first);
    let logs = || format!("{}\n{}", first.log_text(), second.log_text());
    assert_eq!(got, expected(3_000), "{}", logs());
    assert!(
        second.log_text().contains("state restored"),
        "the second process took over tasks:\n{}",
        logs()
    );
    // A revoke waits for the batches that changed a store until their
    // changelog records are acknowledged, never for its timeout.
    assert!(
        !logs().contains("stopped waiting for outputs"),
        "{}",
        logs()
    );
    first.stop();
    second.stop();
}

/// A changelog topic with another partition count than the store's tasks
/// cannot hold their state: refused, naming the topic and why.
#[test]
fn a_changelog_with_the_wrong_partition_count_is_refused() {
    let topics = Topics::new("cw", 3, 1);
    let changelog = &topics.changelog;
    kafka::create_topic(changelog, 2);
    let fixture = topics.fixture();
    let (ok, log) = WeirProcess::start(&fixture, "refused.log").wait();
    assert!(!ok, "{log}");
    assert!(
        log.contains(&format!(
            "changelog topic `{changelog}` (the store of step `totals`) has 2 partitions, but needs 3 (as many as topic {}-totals-repartition, which sub-topology 1 reads)",
            topics.app
        )),
        "{log}"
    );
}

/// Issue 14, item 1: a table on Kafka. Users (keyed by id) are counted per
/// country; the process then loses its state directory, restores the
/// table's rows and the counts from their changelogs, and goes on with
/// rows that move country and rows that are deleted: moving a row takes it
/// out of its old country, which needs the restored row (the old value
/// crosses the repartition topic with the new one), and no internal header
/// reaches the output.
#[test]
fn a_table_on_kafka_keeps_its_rows_across_a_lost_state_directory() {
    let (input, output, app) = (
        kafka::unique("tb-in"),
        kafka::unique("tb-out"),
        kafka::unique("tb-app"),
    );
    let _cleanup = Cleanup::topics(&[
        &input,
        &output,
        &format!("{app}-users-changelog"),
        &format!("{app}-per-country-changelog"),
        &format!("{app}-per-country-repartition"),
    ]);
    kafka::create_topic(&input, 2);
    kafka::create_topic(&output, 2);
    let body = format!(
        "sources:
  users: {{ kind: kafka, topic: {input}, key-format: string, value-format: json, table: true }}
steps:
  - {{ name: by-country, kind: group-by, key: {{ field: country }} }}
  - {{ name: per-country, id: per-country, kind: aggregate, aggregations: {{ n: count }} }}
sinks:
  out: {{ kind: kafka, topic: {output}, key-format: string, value-format: json }}
"
    );
    let fixture = kafka::pipeline(&app, &Settings::default(), &body);
    let row = |user: usize, country: &str| {
        Rec::new(
            &format!("u{user}"),
            &format!(r#"{{"country":"{country}"}}"#),
        )
    };
    // Every user's country, and each country's expected count.
    let mut countries: BTreeMap<usize, String> = BTreeMap::new();
    let counts = |countries: &BTreeMap<usize, String>| {
        let mut out: BTreeMap<String, u64> = ["c0", "c1", "c2", "c3", "c4", "moved"]
            .into_iter()
            .map(|c| (c.to_string(), 0))
            .collect();
        for c in countries.values() {
            *out.get_mut(c).unwrap() += 1;
        }
        out
    };
    let latest = |want: usize, weir: &WeirProcess| {
        let mut out = BTreeMap::new();
        for r in weir.consume(&output, want, WAIT, SETTLE) {
            assert!(r.rec.headers.is_empty(), "{:?}", r.rec.headers);
            out.insert(
                r.rec.key.clone().unwrap(),
                r.rec.json()["n"].as_u64().unwrap(),
            );
        }
        out
    };

    let first: Vec<Rec> = (0..50)
        .map(|u| {
            countries.insert(u, format!("c{}", u % 5));
            row(u, &format!("c{}", u % 5))
        })
        .collect();
    kafka::produce(&input, &first);
    let weir = start(&fixture, "run1.log", &fixture.path("state-a"));
    let mut want = counts(&countries);
    want.remove("moved");
    assert_eq!(latest(50, &weir), want, "{}", weir.log_text());
    weir.stop();

    // Another state directory: everything comes back from the changelogs.
    let mut second: Vec<Rec> = (0..10)
        .map(|u| {
            countries.insert(u, "moved".into());
            row(u, "moved")
        })
        .collect();
    for u in 10..20 {
        countries.remove(&u);
        second.push(Rec {
            value: None,
            ..row(u, "")
        });
    }
    // A delete of a row that never was changes nothing.
    second.push(Rec {
        value: None,
        ..row(999, "")
    });
    kafka::produce(&input, &second);
    let weir = start(&fixture, "run2.log", &fixture.path("state-b"));
    // 50 first counts, then 2 per move (out of the old country, into
    // `moved`) and 1 per delete.
    assert_eq!(latest(80, &weir), counts(&countries), "{}", weir.log_text());
    let log = weir.stop();
    assert!(log.contains("restored"), "{log}");
}

/// Issue 14, item 4: a run whose stored state was made by another
/// aggregation under the same id refuses to start, naming the step and the
/// remedy; the same file again runs on.
#[test]
fn a_run_whose_stored_state_does_not_match_its_step_is_refused() {
    let topics = Topics::new("mm", 2, 2);
    let (input, output) = (&topics.input, &topics.output);
    let fixture = topics.fixture();
    let state = fixture.path("state");
    kafka::produce(input, &events(0, 50));
    let weir = start(&fixture, "run1.log", &state);
    assert_eq!(
        latest(output, 50, &weir),
        expected(50),
        "{}",
        weir.log_text()
    );
    weir.stop();

    // `totals` now averages where it summed: refused, with this machine's
    // state folder and on a machine without one (whose tasks would restore
    // the summed state from the changelog): the control topic records
    // what each store of the application holds.
    let changed = body(input, output).replace("{ sum: amount }", "{ avg: amount }");
    let other = kafka::pipeline(&topics.app, &Settings::default(), &changed);
    for (log_name, dir) in [
        ("run2.log", &state),
        ("run2b.log", &fixture.path("elsewhere")),
    ] {
        let weir = start(&other, log_name, dir);
        let (ok, log) = weir.wait();
        assert!(!ok, "{log}");
        assert!(
            log.contains("store `totals`: the application's stores of that id hold aggregations count, sum(amount) of records, keyed by field user")
                && log.contains(&format!("{}-weir-control", topics.app))
                && log.contains("and its step now stores aggregations count, avg(amount) of records")
                && log.contains("give the step a new `id`"),
            "{log}"
        );
    }
    // Nothing was written over: the original file goes on from its state.
    kafka::produce(input, &events(50, 60));
    let weir = start(&fixture, "run3.log", &state);
    assert_eq!(
        latest(output, 60, &weir),
        expected(60),
        "{}",
        weir.log_text()
    );
    weir.stop();
    // Once reset (changelogs and what the control topic records), the
    // changed step starts from empty state.
    let reset = weir_tests::weir(&[
        "state",
        "reset",
        other.pipeline_path().to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--changelogs",
    ]);
    assert!(reset.status.success(), "{}", weir_tests::stderr(&reset));
    let mut weir = start(&other, "run4.log", &state);
    std::thread::sleep(std::time::Duration::from_secs(5));
    weir.assert_running();
    let log = weir.stop();
    assert!(
        !log.contains("the application's stores of that id hold"),
        "{log}"
    );
}

/// Issue 14, item 3: `weir state reset --changelogs` deletes the changelog
/// topics and this machine's stores, so the next run starts empty; it is
/// refused while a process of the application runs.
#[test]
fn a_reset_with_changelogs_starts_the_next_run_empty_and_waits_for_the_group_to_be_empty() {
    let topics = Topics::new("rs", 2, 2);
    let (input, output, changelog) = (&topics.input, &topics.output, &topics.changelog);
    let fixture = topics.fixture();
    let state = fixture.path("state");
    let pipeline = fixture.pipeline_path();
    let reset = || {
        weir_tests::weir(&[
            "state",
            "reset",
            pipeline.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--changelogs",
        ])
    };
    kafka::produce(input, &events(0, 70));
    let weir = start(&fixture, "run1.log", &state);
    assert_eq!(
        latest(output, 70, &weir),
        expected(70),
        "{}",
        weir.log_text()
    );
    let out = reset();
    assert!(!out.status.success());
    let said = weir_tests::stderr(&out);
    assert!(
        said.contains(&format!(
            "the application's consumer group `{}` has 1 member(s)",
            topics.app
        )) && said.contains("stop every process of the application first"),
        "{said}"
    );
    weir.stop();
    assert_eq!(kafka::partitions(changelog), 2);

    let out = reset();
    assert!(out.status.success(), "{}", weir_tests::stderr(&out));
    let said = weir_tests::stdout(&out);
    assert!(
        said.contains(&format!("deleted topic {changelog}")),
        "{said}"
    );
    assert!(!state.join("1_0").exists(), "{said}");

    // Only what comes after the reset is counted.
    kafka::produce(input, &events(70, 140));
    let weir = start(&fixture, "run2.log", &state);
    let mut want = BTreeMap::new();
    for i in 70..140usize {
        let e = want.entry(format!("u{}", i % USERS)).or_insert((0, 0));
        e.0 += 1;
        e.1 += i as u64;
    }
    assert_eq!(latest(output, 140, &weir), want, "{}", weir.log_text());
    weir.stop();
}
