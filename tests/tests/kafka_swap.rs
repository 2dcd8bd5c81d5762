//! Issue 12, items 4 and 6 (Kafka): a swap made on one member of a Kafka
//! application reaches every member through the control topic, a member
//! started after the swap runs the new version from its first record, and
//! a restarted member still runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use weir::{RunControl, RunOptions};
use weir_tests::kafka::{self, Cleanup, Rec, Settings, WeirProcess};
use weir_tests::plugin_with_section;

const PARTITIONS: i32 = 4;

/// A Kafka application of its own: input and output topics of
/// [`PARTITIONS`] partitions, and a pipeline tagging each record with the
/// enricher (`version: v1`); its topics (and its control topic) are
/// deleted when dropped.
struct App {
    input: String,
    output: String,
    control_topic: String,
    fixture: weir_tests::Fixture,
    _cleanup: Cleanup,
}

impl App {
    fn new(prefix: &str) -> App {
        App::with(
            prefix,
            "plugins:
  enrich: { path: '{plugin:enricher}' }
steps:
  - { name: tag, kind: map, plugin: enrich, config: { set: { version: v1 } } }
",
            &[],
        )
    }

    /// An application whose pipeline reads `in` and writes `out` through
    /// `steps` (the pipeline file's `plugins` and `steps`, and any other
    /// top-level settings); `internal` names the topics it creates itself
    /// (changelogs), by the part after the application id, to delete with
    /// the others. With `dead_letters`, failed records go to that topic
    /// (sink `rejected`).
    fn with(prefix: &str, steps: &str, internal: &[&str]) -> App {
        App::with_dead_letters(prefix, steps, internal, None)
    }

    fn with_dead_letters(
        prefix: &str,
        steps: &str,
        internal: &[&str],
        dead_letters: Option<&str>,
    ) -> App {
        let (input, output, app) = (
            kafka::unique(&format!("{prefix}-in")),
            kafka::unique(&format!("{prefix}-out")),
            kafka::unique(&format!("{prefix}-app")),
        );
        let control_topic = format!("{app}-weir-control");
        let mut topics = vec![input.clone(), output.clone(), control_topic.clone()];
        topics.extend(internal.iter().map(|t| format!("{app}-{t}")));
        topics.extend(dead_letters.map(str::to_string));
        let cleanup = Cleanup::topics(&topics.iter().map(String::as_str).collect::<Vec<_>>());
        kafka::create_topic(&input, PARTITIONS);
        kafka::create_topic(&output, PARTITIONS);
        let rejected = match dead_letters {
            Some(topic) => {
                kafka::create_topic(topic, PARTITIONS);
                format!("  rejected: {{ kind: kafka, topic: {topic} }}\n")
            }
            None => String::new(),
        };
        let body = format!(
            "sources:
  in: {{ kind: kafka, topic: {input} }}
{steps}sinks:
  out: {{ kind: kafka, topic: {output} }}
{rejected}"
        );
        let fixture = kafka::pipeline(&app, &Settings::default(), &body);
        App {
            input,
            output,
            control_topic,
            fixture,
            _cleanup: cleanup,
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Keeps writing numbered records to `topic` until dropped.
struct Feeder {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feeder {
    /// Numbered from `first` on.
    fn start(topic: &str, first: u64) -> Feeder {
        let (stop, sent) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(first)),
        );
        let thread = {
            let (topic, stop, sent) = (topic.to_string(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let from = sent.load(Ordering::SeqCst);
                    let batch: Vec<Rec> = (from..from + 20)
                        .map(|n| Rec::new(&format!("k{}", n % 16), &json!({ "n": n }).to_string()))
                        .collect();
                    kafka::produce(&topic, &batch);
                    sent.fetch_add(20, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                }
            })
        };
        Feeder {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Stops writing; returns the number after the last record written.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The output topic's end offsets now.
fn ends(topic: &str) -> BTreeMap<i32, i64> {
    kafka::end_offsets(topic)
}

#[test]
fn a_swap_on_one_member_reaches_every_member_and_later_and_restarted_ones() {
    let App {
        input,
        output,
        control_topic,
        fixture,
        _cleanup,
    } = App::new("swap");

    // Member A: this process, through the library.
    let control = RunControl::new();
    let stop_a = Arc::new(AtomicBool::new(false));
    let a = {
        let topo = fixture.topology();
        let options = RunOptions {
            control: Some(control.clone()),
            stop: Some(stop_a.clone()),
            ..RunOptions::default()
        };
        std::thread::spawn(move || weir::run(&topo, options))
    };
    let feeder = Feeder::start(&input, 0);
    wait_until(
        "member A writes outputs",
        || ends(&output).values().sum::<i64>() > 100,
        String::new,
    );

    // Member B: a `weir run` process in the same group.
    let mut b = WeirProcess::start(&fixture, "b.log");
    wait_until(
        "member B owns two partitions",
        || b.assigned(&input).len() == 2,
        || b.log_text(),
    );
    let b_partitions = b.assigned(&input);
    std::thread::sleep(Duration::from_secs(2));
    b.assert_running();

    // The swap, on A, while records flow, to a component of 18 MiB (as
    // large as a Python component), which compression does not shrink.
    let mut noise = Vec::with_capacity(18 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while noise.len() < 18 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    let report = control
        .swap(
            "tag",
            Some(plugin_with_section("enricher", &noise)),
            Some(json!({ "set": { "version": "v2" } })),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log_text()));
    assert_eq!(report.version, 2);
    wait_until(
        "member B applies the swap made on A",
        || b.log_text().contains("applied the swap made by"),
        || b.log_text(),
    );
    // Both switched: from here on, every output is v2. A member's tasks
    // cut over at their next batch boundary, and what v1 processed before
    // may still be on its way to the broker: let it land first.
    std::thread::sleep(Duration::from_secs(1));
    let switched = ends(&output);
    std::thread::sleep(Duration::from_secs(2));

    // Member C, started after the swap.
    let mut c = WeirProcess::start(&fixture, "c.log");
    wait_until(
        "member C owns partitions",
        || !c.assigned(&input).is_empty(),
        || c.log_text(),
    );
    std::thread::sleep(Duration::from_secs(3));
    c.assert_running();

    // B stopped and started again.
    b.stop();
    let mut b2 = WeirProcess::start(&fixture, "b2.log");
    wait_until(
        "restarted member B owns partitions",
        || !b2.assigned(&input).is_empty(),
        || b2.log_text(),
    );
    std::thread::sleep(Duration::from_secs(3));
    b2.assert_running();

    let sent = feeder.finish();
    let outputs = kafka::consume(
        &output,
        sent as usize,
        Duration::from_secs(90),
        Duration::from_secs(3),
    );
    stop_a.store(true, Ordering::SeqCst);
    a.join()
        .unwrap()
        .unwrap_or_else(|e| panic!("member A: {e}"));
    let c_log = c.stop();
    let b2_log = b2.stop();

    // C and the restarted B restored the swap before their tasks started.
    for log in [&c_log, &b2_log] {
        kafka_log_has(log, "running the swapped version recorded in topic");
    }

    // Each input exactly one output, from one version; per partition the
    // versions only move forward; after both switched, only v2.
    let by_partition = check_outputs(&outputs, &switched, "v2", sent);
    // Every partition, B's as A's, ran both versions.
    for p in 0..PARTITIONS {
        let versions = &by_partition[&p];
        assert!(
            versions.contains_key("v1") && versions.contains_key("v2"),
            "partition {p} (B owned {b_partitions:?}): {versions:?}"
        );
    }

    // The control topic, as weir created it.
    let configs = kafka::topic_configs(&control_topic);
    kafka_log_has(&configs, "cleanup.policy=compact");
    kafka_log_has(&configs, "max.message.bytes=67108864");

    // The pipeline file changed since the swap: a member started now runs
    // the file's version, says it dropped the swap, and removes the record.
    let file = fixture.pipeline_path();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("version: v1 }", "version: v1b }")).unwrap();
    let before = ends(&output);
    let d = WeirProcess::start(&fixture, "d.log");
    let feeder = Feeder::start(&input, sent);
    std::thread::sleep(Duration::from_secs(2));
    let sent_d = feeder.finish();
    let later: Vec<_> = kafka::consume(
        &output,
        sent_d as usize,
        Duration::from_secs(90),
        Duration::from_secs(3),
    )
    .into_iter()
    .filter(|r| r.offset >= before[&r.partition])
    .collect();
    let d_log = d.stop();
    assert_eq!(later.len() as u64, sent_d - sent, "{d_log}");
    for r in &later {
        assert_eq!(r.rec.json()["version"], "v1b", "{d_log}");
    }
    let dropped: Vec<&str> = d_log.lines().filter(|l| l.contains("dropped")).collect();
    assert_eq!(dropped.len(), 1, "{d_log}");
    kafka_log_has(dropped[0], "step `tag`: dropped swapped version 2");
    kafka_log_has(dropped[0], "v1b");
    let control_messages = kafka::consume(
        &control_topic,
        2,
        Duration::from_secs(30),
        Duration::from_secs(1),
    );
    let last = control_messages.last().unwrap();
    assert_eq!(last.rec.key.as_deref(), Some("tag"));
    assert_eq!(last.rec.value, None, "a tombstone removes the record");
}

/// Each of the `sent` inputs came out exactly once, tagged by one version;
/// per partition the versions only move forward, and from offset
/// `switched[partition]` on every output is `last`. Records per version,
/// per partition.
fn check_outputs(
    outputs: &[kafka::Read],
    switched: &BTreeMap<i32, i64>,
    last_version: &str,
    sent: u64,
) -> BTreeMap<i32, BTreeMap<String, u64>> {
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<i32, String> = BTreeMap::new();
    let mut by_partition: BTreeMap<i32, BTreeMap<String, u64>> = BTreeMap::new();
    let mut sorted = outputs.to_vec();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in &sorted {
        let value = r.rec.json();
        let n = value["n"].as_u64().expect("n");
        assert!(seen.insert(n), "record {n} came out twice");
        let version = value["version"].as_str().expect("version").to_string();
        if let Some(before) = last.get(&r.partition) {
            assert!(
                version >= *before,
                "partition {}: record {n} by {version} after one by {before}",
                r.partition
            );
        }
        if r.offset >= switched[&r.partition] {
            assert_eq!(
                version, last_version,
                "partition {} offset {}: record {n} by {version} after every member switched",
                r.partition, r.offset
            );
        }
        *by_partition
            .entry(r.partition)
            .or_default()
            .entry(version.clone())
            .or_default() += 1;
        last.insert(r.partition, version);
    }
    assert_eq!(seen.len() as u64, sent, "every input produces an output");
    by_partition
}

fn kafka_log_has(log: &str, needle: &str) {
    assert!(log.contains(needle), "expected `{needle}` in:\n{log}");
}

/// `weir swap` of `fixture`'s pipeline, step `tag`, with `args`.
fn weir_swap(fixture: &weir_tests::Fixture, token: &std::path::Path, args: &[&str]) -> String {
    weir_swap_step(fixture, token, "tag", args)
}

#[test]
fn weir_swap_on_the_pipeline_file_swaps_both_weir_run_members_v1_v2_v3() {
    let App {
        input,
        output,
        control_topic: _,
        fixture,
        _cleanup,
    } = App::new("cli-swap");
    let token = weir_tests::admin::token_file(&fixture, "kafka-s3cret", 0o600);
    let args = ["--admin-token-file", token.to_str().unwrap()];
    let mut a = WeirProcess::start_with(&fixture, "a.log", &args);
    let mut b = WeirProcess::start_with(&fixture, "b.log", &args);
    let feeder = Feeder::start(&input, 0);
    wait_until(
        "the two members share the partitions",
        || a.assigned(&input).len() == 2 && b.assigned(&input).len() == 2,
        || a.log_text() + &b.log_text(),
    );
    wait_until(
        "outputs flow",
        || ends(&output).values().sum::<i64>() > 200,
        || a.log_text() + &b.log_text(),
    );
    let applied = || {
        a.log_text().matches("applied the swap made by").count()
            + b.log_text().matches("applied the swap made by").count()
    };

    // v2: a config-only swap, made on one member through its admin API.
    std::fs::write(fixture.path("v2.yaml"), "set: { version: v2 }\n").unwrap();
    let said = weir_swap(
        &fixture,
        &token,
        &["--config", fixture.path("v2.yaml").to_str().unwrap()],
    );
    kafka_log_has(&said, "runs in 2 processes");
    kafka_log_has(&said, "step tag: v1 -> v2 (sha ");
    wait_until(
        "the other member applies v2",
        || applied() == 1,
        || a.log_text() + &b.log_text(),
    );
    std::thread::sleep(Duration::from_secs(1));

    // v3: another component and config.
    let component = fixture.path("enricher-v3.wasm");
    std::fs::write(&component, weir_tests::plugin_variant("enricher", "v3")).unwrap();
    std::fs::write(fixture.path("v3.json"), r#"{"set": {"version": "v3"}}"#).unwrap();
    let said = weir_swap(
        &fixture,
        &token,
        &[
            component.to_str().unwrap(),
            "--config",
            fixture.path("v3.json").to_str().unwrap(),
        ],
    );
    kafka_log_has(&said, "step tag: v2 -> v3 (sha ");
    wait_until(
        "the other member applies v3",
        || applied() == 2,
        || a.log_text() + &b.log_text(),
    );
    // As above: v2's last outputs land before the cut is read.
    std::thread::sleep(Duration::from_secs(1));
    let switched = ends(&output);
    std::thread::sleep(Duration::from_secs(2));
    a.assert_running();
    b.assert_running();

    // `weir status` of the pipeline asks both: each runs v3.
    let status = weir_tests::weir(&[
        "status",
        fixture.pipeline_path().to_str().unwrap(),
        "--admin-token-file",
        token.to_str().unwrap(),
    ]);
    assert!(status.status.success(), "{}", weir_tests::stderr(&status));
    let table = weir_tests::stdout(&status);
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("tag: v3 (sha "))
            .count(),
        2,
        "{table}"
    );

    let sent = feeder.finish();
    let outputs = kafka::consume(
        &output,
        sent as usize,
        Duration::from_secs(90),
        Duration::from_secs(3),
    );
    let (a_log, b_log) = (a.stop(), b.stop());
    let by_partition = check_outputs(&outputs, &switched, "v3", sent);
    // Every partition, whichever member owned it, ran all three versions.
    for p in 0..PARTITIONS {
        assert_eq!(
            by_partition[&p]
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["v1", "v2", "v3"],
            "partition {p}\n{a_log}\n{b_log}"
        );
    }
}

/// `weir swap` of `fixture`'s pipeline, step `step`, with `args`: what
/// it said.
fn weir_swap_step(
    fixture: &weir_tests::Fixture,
    token: &std::path::Path,
    step: &str,
    args: &[&str],
) -> String {
    let out = weir_tests::admin::weir_swap(fixture, token, step, args);
    assert!(out.status.success(), "{}", weir_tests::stderr(&out));
    weir_tests::stderr(&out) + &weir_tests::stdout(&out)
}

/// A `weir run` member of `fixture`'s application with the admin token
/// `token`, its state in `state-<name>`, its log in `<name>.log`.
fn member(fixture: &weir_tests::Fixture, token: &std::path::Path, name: &str) -> WeirProcess {
    let state = fixture.path(&format!("state-{name}"));
    let args = [
        "--admin-token-file",
        token.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    WeirProcess::start_with(fixture, &format!("{name}.log"), &args)
}

/// Members `a` and `b` of the application, sharing its partitions, and
/// records flowing through them (at least 300 out).
fn two_members_at_work(
    fixture: &weir_tests::Fixture,
    token: &std::path::Path,
    input: &str,
    output: &str,
) -> (WeirProcess, WeirProcess, Feeder) {
    let (a, b) = (member(fixture, token, "a"), member(fixture, token, "b"));
    wait_until(
        "the two members share the partitions",
        || a.assigned(input).len() == 2 && b.assigned(input).len() == 2,
        || a.log_text() + &b.log_text(),
    );
    let feeder = Feeder::start(input, 0);
    wait_until(
        "records flow",
        || ends(output).values().sum::<i64>() > 300,
        || a.log_text() + &b.log_text(),
    );
    (a, b, feeder)
}

/// Issue 14, item 5 on Kafka: an aggregate step swapped, while records
/// flow, from `tally` (state version 1, `{"n", "sum"}`) to `tally-v2`
/// (state version 2, `{"count", "total", "v": 2}`, upgrading 1) keeps
/// every key's totals on both members, and a member restarted after the
/// swap (its state restored from the changelog, keys of both versions)
/// goes on from them.
#[test]
fn an_aggregate_swapped_to_a_version_that_upgrades_keeps_its_totals_on_every_member() {
    let App {
        input,
        output,
        control_topic: _,
        fixture,
        _cleanup,
    } = App::with(
        "agg-swap",
        "plugins:
  tally: { path: '{plugin:tally}' }
steps:
  - { name: by-key, kind: group-by }
  - { name: totals, id: totals, kind: aggregate, plugin: tally }
",
        &["totals-changelog"],
    );
    let token = weir_tests::admin::token_file(&fixture, "kafka-s3cret", 0o600);
    let (mut a, b, feeder) = two_members_at_work(&fixture, &token, &input, &output);
    let component = weir_tests::plugin("tally-v2");
    let said = weir_swap_step(&fixture, &token, "totals", &[component.to_str().unwrap()]);
    kafka_log_has(&said, "runs in 2 processes");
    kafka_log_has(&said, "step totals: v1 -> v2 (sha ");
    wait_until(
        "the other member applies the swap",
        || {
            a.log_text().contains("applied the swap made by")
                || b.log_text().contains("applied the swap made by")
        },
        || a.log_text() + &b.log_text(),
    );
    std::thread::sleep(Duration::from_secs(2));
    // B stopped, and started again on an empty state directory: its
    // tasks restore their stores from the changelog.
    b.stop();
    let mut b2 = member(&fixture, &token, "b2");
    wait_until(
        "the restarted member owns partitions again",
        || b2.assigned(&input).len() == 2,
        || a.log_text() + &b2.log_text(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let sent = feeder.finish();
    let outputs = kafka::consume(
        &output,
        sent as usize,
        Duration::from_secs(90),
        Duration::from_secs(3),
    );
    a.assert_running();
    b2.assert_running();
    let (a_log, b2_log) = (a.stop(), b2.stop());
    kafka_log_has(&b2_log, "running the swapped version recorded in topic");

    // Per key, in offset order: the j-th total counts the key's first j
    // records and sums their `n`; version 1's shape, then version 2's.
    let versions = check_tallies(&outputs, &BTreeSet::new(), sent, &(a_log + &b2_log));
    for (key, versions) in &versions {
        assert_eq!(versions, &[1, 2], "key {key}");
    }
}

/// Checks the `tally` totals of the `sent` inputs (`n` = 0..sent, keyed
/// `k{n % 16}`) but the `dead` ones, read back from the output in offset
/// order per key: the j-th total of a key counts its first j records that
/// were not dead-lettered and sums their `n`, whichever state version
/// wrote it. Returns the state versions each key's totals went through.
fn check_tallies(
    outputs: &[kafka::Read],
    dead: &BTreeSet<u64>,
    sent: u64,
    logs: &str,
) -> BTreeMap<String, Vec<u64>> {
    let mut sorted = outputs.to_vec();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    if sorted
        .iter()
        .any(|r| r.rec.key.as_deref().is_some_and(|k| k.starts_with('{')))
    {
        // A key's sessions are keyed apart, so its results spread over
        // partitions: in the order of their time (a session's end), then
        // of their counts (records of one millisecond), tombstones first.
        sorted.sort_by_key(|r| {
            let count = r.rec.value.as_ref().map(|_| {
                let v = r.rec.json();
                v.get("count")
                    .or(v.get("n"))
                    .and_then(|c| c.as_u64())
                    .unwrap_or(0)
            });
            (r.rec.timestamp, count)
        });
    }
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    let mut totals: BTreeMap<String, (u64, u64, Vec<u64>)> = BTreeMap::new();
    for r in &sorted {
        let key = r.rec.key.clone().expect("a key");
        // A session's key is windowed; a session merged into a longer one
        // leaves a tombstone.
        let key = match key.starts_with('{') {
            true => serde_json::from_str::<serde_json::Value>(&key).expect("a windowed key")["key"]
                .as_str()
                .expect("a record key")
                .to_string(),
            false => key,
        };
        if r.rec.value.is_none() {
            continue;
        }
        let value = r.rec.json();
        let (count, sum, v) = match value.get("v") {
            Some(v) => (&value["count"], &value["total"], v.as_u64().unwrap()),
            None => (&value["n"], &value["sum"], 1),
        };
        let k: u64 = key[1..].parse().unwrap();
        // The key's next record that was not dead-lettered.
        let at = next.entry(key.clone()).or_insert(0);
        let mut n = k + 16 * *at;
        while dead.contains(&n) {
            *at += 1;
            n = k + 16 * *at;
        }
        *at += 1;
        let (seen, total, versions) = totals.entry(key.clone()).or_default();
        *seen += 1;
        *total += n;
        assert_eq!(
            (count.as_u64(), sum.as_u64()),
            (Some(*seen), Some(*total)),
            "key {key}, total number {seen}: {value}\n{logs}"
        );
        if versions.last() != Some(&v) {
            versions.push(v);
        }
    }
    assert_eq!(
        totals.values().map(|t| t.0).sum::<u64>() + dead.len() as u64,
        sent
    );
    totals.into_iter().map(|(k, t)| (k, t.2)).collect()
}

/// Issue 14, item 5 on Kafka: a rollback trial of an aggregate swapped to
/// a version that writes another state version. The member that made the
/// swap rolls it back (it failed too many records) and converts the keys
/// its tasks wrote on trial back through the tried plugin's downgrade; the
/// other member applies the rollback from the control topic and converts
/// its stores back the same way. Every key's totals go on, on both. A
/// trial of a version without a downgrade is refused on Kafka.
#[test]
fn an_aggregate_rolled_back_on_kafka_converts_its_state_back_on_every_member() {
    rolled_back_on_kafka(
        "  - { name: totals, id: totals, kind: aggregate, plugin: tally }",
        "accumulators downgraded from state version 2 to 1",
    );
}

/// The same over session windows (an hour of gap: each key's records are
/// one session, whose totals go on as a key's do): every member converts
/// its windows back with the tried plugin's downgrade.
#[test]
fn a_windowed_aggregate_rolled_back_on_kafka_converts_its_windows_back_on_every_member() {
    rolled_back_on_kafka(
        "  - { name: totals, id: totals, kind: aggregate, plugin: tally, window: { session: 1h } }",
        "accumulators converted from state version 2 to 1",
    );
}

/// Runs the rollback trial above with `step` as the aggregate, each
/// member saying `downgraded` when it converted its state back.
fn rolled_back_on_kafka(step: &str, downgraded: &str) {
    let rejected_topic = kafka::unique("agg-rollback-rejected");
    let App {
        input,
        output,
        control_topic: _,
        fixture,
        _cleanup,
    } = App::with_dead_letters(
        "agg-rollback",
        &format!(
            "error-policy: dead-letter
dead-letter: rejected
plugins:
  tally: {{ path: '{{plugin:tally}}' }}
steps:
  - {{ name: by-key, kind: group-by }}
{step}
"
        ),
        &["totals-changelog"],
        Some(&rejected_topic),
    );
    let token = weir_tests::admin::token_file(&fixture, "kafka-s3cret", 0o600);
    let (mut a, mut b, feeder) = two_members_at_work(&fixture, &token, &input, &output);
    let poison = fixture.path("poison.json");
    std::fs::write(&poison, r#"{"poison-every": 3}"#).unwrap();
    let trial = [
        "--config",
        poison.to_str().unwrap(),
        "--rollback-after",
        "60",
        "--rollback-above",
        "0.1",
    ];
    // No downgrade (tally-v3): refused before anything changes.
    let v3 = weir_tests::plugin("tally-v3");
    let mut args = vec![v3.to_str().unwrap()];
    args.extend_from_slice(&trial);
    let refused = weir_tests::admin::weir_swap(&fixture, &token, "totals", &args);
    assert!(!refused.status.success());
    kafka_log_has(
        &weir_tests::stderr(&refused),
        "on Kafka the other members run the tried version too",
    );
    // With a downgrade (tally-v2): swapped, failing every third record,
    // rolled back.
    let v2 = weir_tests::plugin("tally-v2");
    let mut args = vec![v2.to_str().unwrap()];
    args.extend_from_slice(&trial);
    let said = weir_swap_step(&fixture, &token, "totals", &args);
    kafka_log_has(&said, "step totals: v1 -> v2 (sha ");
    let logs = || a.log_text() + &b.log_text();
    wait_until(
        "the swap is rolled back on the member that made it",
        || logs().contains("rolling back"),
        logs,
    );
    wait_until(
        "the other member applies the rollback",
        || logs().matches("applied the swap made by").count() >= 2,
        logs,
    );
    std::thread::sleep(Duration::from_secs(2));
    let sent = feeder.finish();
    let dead_read = kafka::consume(
        &rejected_topic,
        1,
        Duration::from_secs(30),
        Duration::from_secs(3),
    );
    let dead: BTreeSet<u64> = dead_read
        .iter()
        .map(|r| r.rec.json()["n"].as_u64().expect("n"))
        .collect();
    let outputs = kafka::consume(
        &output,
        (sent as usize).saturating_sub(dead.len()),
        Duration::from_secs(90),
        Duration::from_secs(3),
    );
    a.assert_running();
    b.assert_running();
    let (a_log, b_log) = (a.stop(), b.stop());
    // Both members converted their stores back: the one that made the swap
    // the keys it wrote on trial, the other every key of version 2.
    kafka_log_has(&a_log, downgraded);
    kafka_log_has(&b_log, downgraded);
    let all = a_log + &b_log;
    assert!(!dead.is_empty(), "the tried version failed records\n{all}");
    let versions = check_tallies(&outputs, &dead, sent, &all);
    // Every key ends in version 1's shape.
    for (key, versions) in &versions {
        assert_eq!(versions.last(), Some(&1), "key {key}: {versions:?}");
    }
}
