//! Kafka sources and sinks against a real Apache Kafka broker (see
//! `weir_tests::kafka` for where it comes from): records keep their keys,
//! values, headers and timestamps, plugins run between topics, the
//! dead-letter topic carries the reasons, a restarted pipeline resumes from
//! its committed offsets, and a second process takes over the partitions of
//! one that is killed, losing nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir::partition_for;
use weir_tests::Fixture;
use weir_tests::kafka::{self, Cleanup, Rec, Settings, WeirProcess};

const WAIT: Duration = Duration::from_secs(90);
const SETTLE: Duration = Duration::from_secs(2);

/// A pipeline file for the test broker (two tasks, commits every 200 ms).
fn pipeline(app: &str, body: &str) -> Fixture {
    kafka::pipeline(app, &Settings::default(), body)
}

/// Fresh input topic, output topic and application id names.
fn names() -> (String, String, String) {
    (
        kafka::unique("in"),
        kafka::unique("out"),
        kafka::unique("app"),
    )
}

/// A pipeline body that copies topic `input` to topic `output`.
fn copy_body(input: &str, output: &str) -> String {
    format!(
        "sources:\n  in: {{ kind: kafka, topic: {input} }}\nsinks:\n  out: {{ kind: kafka, topic: {output} }}\n"
    )
}

fn order(i: usize, amount: usize) -> Rec {
    Rec::new(
        &format!("c-{i:03}"),
        &format!(r#"{{"id":{i},"amount":{amount},"items":[{{"sku":"a{i}"}},{{"sku":"b{i}"}}]}}"#),
    )
}

#[test]
fn pass_through_keeps_keys_values_headers_timestamps_and_java_partitioning() {
    let (input, output, app) = names();
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 3);
    let mut sent: Vec<Rec> = (0..40)
        .map(|i| Rec {
            timestamp: kafka::now_ms() - 1000 + i as i64,
            headers: vec![
                ("trace".into(), Some(format!("t{i}"))),
                ("trace".into(), None),
            ],
            ..order(i, i)
        })
        .collect();
    sent.push(Rec {
        key: Some("gone".into()),
        value: None,
        timestamp: kafka::now_ms() - 5,
        headers: vec![],
    });
    sent.push(Rec {
        key: None,
        value: Some(r#"{"keyless":true}"#.into()),
        timestamp: kafka::now_ms() - 6,
        headers: vec![],
    });
    kafka::produce(&input, &sent);
    let fixture = pipeline(
        &app,
        &format!(
            "sources:\n  in: {{ kind: kafka, topic: {input} }}\nsinks:\n  out: {{ kind: kafka, topic: {output}, create: {{ partitions: 4 }} }}\n"
        ),
    );
    let weir = WeirProcess::start(&fixture, "weir.log");
    let got = weir.consume(&output, sent.len(), WAIT, SETTLE);
    let log = weir.stop();

    let mut expected: Vec<Rec> = sent.clone();
    let mut actual: Vec<Rec> = got.iter().map(|r| r.rec.clone()).collect();
    expected.sort();
    actual.sort();
    assert_eq!(actual, expected, "log:\n{log}");
    for r in &got {
        if let Some(key) = &r.rec.key {
            assert_eq!(
                r.partition as u32,
                partition_for(key.as_bytes(), 4),
                "key {key} is not where the Java client would put it"
            );
        }
    }
}

#[test]
fn a_missing_topic_is_a_clear_error_unless_the_pipeline_creates_it() {
    let (missing, app) = (kafka::unique("missing"), kafka::unique("app"));
    let fixture = pipeline(
        &app,
        &format!(
            "sources:\n  in: {{ kind: kafka, topic: {missing} }}\nsinks:\n  out: {{ kind: stdout }}\n"
        ),
    );
    let (ok, log) = WeirProcess::start(&fixture, "weir.log").wait();
    assert!(!ok, "{log}");
    assert!(
        log.contains(&format!(
            "topic `{missing}` (Kafka source `in`) does not exist"
        )) && log.contains("create: { partitions: N }"),
        "{log}"
    );
}

#[test]
fn plugins_filter_map_and_flat_map_between_topics() {
    let (input, output, app) = names();
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 4);
    kafka::create_topic(&output, 2);
    let sent: Vec<Rec> = (0..100).map(|i| order(i, i * 3)).collect();
    kafka::produce(&input, &sent);
    let fixture = pipeline(
        &app,
        &format!(
            r#"sources:
  in: {{ kind: kafka, topic: {input} }}
plugins:
  filter: {{ path: "{{plugin:json-filter}}" }}
  enrich: {{ path: "{{plugin:enricher}}" }}
  split: {{ path: "{{plugin:splitter}}" }}
steps:
  - {{ name: big, kind: filter, plugin: filter, config: {{ field: amount, op: gte, value: 150 }} }}
  - {{ name: tag, kind: map, plugin: enrich, config: {{ set: {{ checked: true }} }} }}
  - {{ name: items, kind: flat-map, plugin: split, config: {{ field: items, keep: [id, checked] }} }}
sinks:
  out: {{ kind: kafka, topic: {output}, value-format: json }}
"#
        ),
    );
    let weir = WeirProcess::start(&fixture, "weir.log");
    // Amounts 150..297 in steps of 3: ids 50..99, two items each.
    let got = weir.consume(&output, 100, WAIT, SETTLE);
    let log = weir.stop();
    let mut items: Vec<(i64, String)> = got
        .iter()
        .map(|r| {
            let v = r.rec.json();
            assert_eq!(v["checked"], true, "{v}");
            (
                v["id"].as_i64().unwrap(),
                v["sku"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    items.sort();
    let expected: Vec<(i64, String)> = (50..100)
        .flat_map(|i| [(i, format!("a{i}")), (i, format!("b{i}"))])
        .collect();
    assert_eq!(items, expected, "log:\n{log}");
    // Keys and timestamps follow the input record.
    for r in &got {
        let id = r.rec.json()["id"].as_i64().unwrap();
        assert_eq!(r.rec.key.as_deref(), Some(format!("c-{id:03}").as_str()));
    }
}

#[test]
fn branch_to_two_topics_and_poison_to_a_dead_letter_topic_with_reasons() {
    let input = kafka::unique("in");
    let (small, large, dlq, app) = (
        kafka::unique("small"),
        kafka::unique("large"),
        kafka::unique("dlq"),
        kafka::unique("app"),
    );
    let _cleanup = Cleanup::topics(&[&input, &small, &large, &dlq]);
    kafka::create_topic(&input, 2);
    let mut sent: Vec<Rec> = (0..30)
        .map(|i| {
            let size = if i % 3 == 0 { "large" } else { "small" };
            Rec::new(
                &format!("k{i}"),
                &format!(r#"{{"id":{i},"size":"{size}"}}"#),
            )
        })
        .collect();
    sent.push(Rec::new("bad", "this is not JSON"));
    kafka::produce(&input, &sent);
    let fixture = pipeline(
        &app,
        &format!(
            r#"error-policy: dead-letter
dead-letter: dlq
sources:
  in: {{ kind: kafka, topic: {input} }}
plugins:
  router: {{ path: "{{plugin:router}}" }}
steps:
  - {{ name: route, kind: branch, plugin: router, config: {{ field: size, routes: {{ small: small, large: large }} }} }}
sinks:
  small: {{ kind: kafka, topic: {small}, from: route.small, create: {{ partitions: 2 }} }}
  large: {{ kind: kafka, topic: {large}, from: route.large, create: {{ partitions: 2 }} }}
  dlq: {{ kind: kafka, topic: {dlq}, create: {{ partitions: 1 }} }}
"#
        ),
    );
    let weir = WeirProcess::start(&fixture, "weir.log");
    let got_large = weir.consume(&large, 10, WAIT, SETTLE);
    let got_small = weir.consume(&small, 20, WAIT, SETTLE);
    let got_dlq = weir.consume(&dlq, 1, WAIT, SETTLE);
    let log = weir.stop();
    assert_eq!(got_large.len(), 10, "log:\n{log}");
    assert_eq!(got_small.len(), 20);
    assert!(got_large.iter().all(|r| r.rec.json()["size"] == "large"));
    assert!(got_small.iter().all(|r| r.rec.json()["size"] == "small"));
    assert_eq!(got_dlq.len(), 1);
    let dead = &got_dlq[0].rec;
    assert_eq!(
        dead.value.as_deref(),
        Some("this is not JSON"),
        "kept as it came"
    );
    assert_eq!(dead.key.as_deref(), Some("bad"));
    assert_eq!(dead.header("weir.error.kind"), Some("decode"), "{dead:?}");
    assert_eq!(dead.header("weir.error.source"), Some("in"));
    let partition: i32 = dead
        .header("weir.error.partition")
        .unwrap()
        .parse()
        .unwrap();
    assert!((0..2).contains(&partition));
    assert!(dead.header("weir.error.offset").is_some());
    assert!(
        dead.header("weir.error.reason")
            .unwrap()
            .contains("not JSON"),
        "{dead:?}"
    );
}

#[test]
fn a_bad_record_under_fail_stops_the_run_and_is_not_committed_past() {
    let (input, output, app) = names();
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 1);
    kafka::create_topic(&output, 1);
    let mut sent: Vec<Rec> = (0..5).map(|i| order(i, i)).collect();
    sent.push(Rec::new("bad", "{not json"));
    sent.extend((6..11).map(|i| order(i, i)));
    kafka::produce(&input, &sent);
    let body = |policy: &str| format!("error-policy: {policy}\n{}", copy_body(&input, &output));
    let failing = pipeline(&app, &body("fail"));
    let (ok, log) = WeirProcess::start(&failing, "fail.log").wait();
    assert!(!ok, "the run should fail:\n{log}");
    assert!(
        log.contains(&format!("topic `{input}` partition 0 offset 5")) && log.contains("not JSON"),
        "{log}"
    );
    // The same application resumes at the bad record (or before it), never after.
    let skipping = pipeline(&app, &body("skip"));
    let weir = WeirProcess::start(&skipping, "skip.log");
    let got = weir.consume(&output, 10, WAIT, SETTLE);
    let log = weir.stop();
    let ids: BTreeSet<i64> = got
        .iter()
        .map(|r| r.rec.json()["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (0..5).chain(6..11).collect(), "{log}");
    assert!(log.contains("skipped") && log.contains("offset 5"), "{log}");
}

#[test]
fn memory_stays_bounded_when_the_output_is_slower_than_the_input() {
    let (input, output, app) = names();
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 4);
    kafka::create_topic(&output, 4);
    // A backlog of ~500 MB; the broker then takes weir's output at 2 MB/s.
    let pad = "x".repeat(1000);
    let backlog = 500_000;
    for chunk in (0..backlog).collect::<Vec<usize>>().chunks(50_000) {
        let recs: Vec<Rec> = chunk
            .iter()
            .map(|&i| Rec::new(&format!("k{i}"), &format!(r#"{{"id":{i},"pad":"{pad}"}}"#)))
            .collect();
        kafka::produce(&input, &recs);
    }
    kafka::throttle_producer(&format!("{app}-producer"), 2_000_000);
    let fixture = pipeline(&app, &copy_body(&input, &output));
    let mut weir = WeirProcess::start(&fixture, "weir.log");
    let mut peak = 0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        weir.assert_running();
        peak = peak.max(weir.rss());
    }
    // Lifted before stopping: a stop sends what the producer queued (up to
    // 64 MiB), which at 2 MB/s alone takes 32 s. The broker may still
    // throttle for a while after the quota is lifted (requests already
    // answered with a throttle time), and in CI other Kafka tests share the
    // cores and the broker: the stop may take longer than the usual 60 s
    // (once seen in CI). What this test checks is memory, not stop time.
    kafka::unthrottle_producer(&format!("{app}-producer"));
    let log = weir.stop_within(Duration::from_secs(180));
    let written = kafka::consume(&output, 1, WAIT, Duration::ZERO).len();
    eprintln!(
        "peak RSS {} MiB with a ~500 MB backlog and a 2 MB/s output",
        peak >> 20
    );
    assert!(written > 0, "nothing was written:\n{log}");
    assert!(
        peak < 300 << 20,
        "peak RSS {} MiB: the backlog is being buffered\n{log}",
        peak >> 20
    );
}

#[test]
fn a_restart_resumes_from_the_committed_offsets() {
    let (input, output, app) = names();
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 4);
    kafka::create_topic(&output, 4);
    let body = copy_body(&input, &output);
    let first: Vec<Rec> = (0..60).map(|i| order(i, i)).collect();
    kafka::produce(&input, &first);
    let fixture = pipeline(&app, &body);
    let weir = WeirProcess::start(&fixture, "first.log");
    weir.consume(&output, 60, WAIT, Duration::ZERO);
    weir.stop();

    let second: Vec<Rec> = (60..100).map(|i| order(i, i)).collect();
    kafka::produce(&input, &second);
    let weir = WeirProcess::start(&fixture, "second.log");
    let got = weir.consume(&output, 100, WAIT, SETTLE);
    let log = weir.stop();
    // A clean stop commits everything it wrote: nothing is read twice.
    let mut ids: Vec<i64> = got
        .iter()
        .map(|r| r.rec.json()["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..100).collect::<Vec<i64>>(), "log:\n{log}");
}

#[test]
fn a_second_process_takes_over_the_partitions_of_a_killed_one() {
    let (input, output, app) = names();
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 4);
    kafka::create_topic(&output, 4);
    let fixture = pipeline(&app, &copy_body(&input, &output));
    let mut survivor = WeirProcess::start(&fixture, "survivor.log");
    // The victim commits every 5 s, so the test can kill it between two
    // of its commits knowing that no commit comes in between (below).
    let victim_commits = Duration::from_secs(5);
    let victim_settings = Settings {
        commit_interval: "5s",
        ..Settings::default()
    };
    let victim_fixture = kafka::pipeline(&app, &victim_settings, &copy_body(&input, &output));
    let victim = WeirProcess::start(&victim_fixture, "victim.log");
    // Both have joined once each owns some of the four partitions.
    let deadline = Instant::now() + WAIT;
    while survivor.assigned(&input).is_empty()
        || victim.assigned(&input).is_empty()
        || survivor.assigned(&input).len() + victim.assigned(&input).len() != 4
    {
        assert!(
            Instant::now() < deadline,
            "the two processes did not share the partitions within {WAIT:?}:\n{}\n{}",
            survivor.log_text(),
            victim.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let victim_partitions = victim.assigned(&input);
    let before: Vec<Rec> = (0..1000).map(|i| order(i, i)).collect();
    kafka::produce(&input, &before);
    survivor.consume(&output, 1000, WAIT, Duration::ZERO);
    // The rest arrives in a stream that goes on until the victim is dead
    // (at most 100,000 records), so the victim is at work when it dies.
    let streaming = Arc::new(AtomicBool::new(true));
    let feeder = {
        let (input, streaming) = (input.clone(), streaming.clone());
        std::thread::spawn(move || {
            let mut next = 1000;
            while streaming.load(Ordering::Relaxed) && next < 101_000 {
                let recs: Vec<Rec> = (next..next + 250).map(|i| order(i, i)).collect();
                kafka::produce(&input, &recs);
                next += 250;
                std::thread::sleep(Duration::from_millis(20));
            }
            next
        })
    };
    // Where each input record is (id → partition, offset), what the
    // processes wrote, and what the victim last committed. The victim is
    // killed right after one of its commits (while the next is at least
    // half its interval away) once it has written records of the stream
    // past that commit: read, written and not committed.
    let (mut inputs, mut outputs) = (kafka::Reader::new(&input), kafka::Reader::new(&output));
    let id = |r: &kafka::Read| r.rec.json()["id"].as_i64().unwrap();
    let victims_commits = || {
        let mut c = kafka::committed(&app, &input);
        c.retain(|p, _| victim_partitions.contains(p));
        c
    };
    let mut last_commit = victims_commits();
    let mut committed_at: Option<Instant> = None;
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "the victim wrote nothing past a fresh commit within {WAIT:?}:\n{}",
            victim.log_text()
        );
        inputs.poll(Duration::from_millis(20));
        outputs.poll(Duration::from_millis(20));
        let committed = victims_commits();
        if committed != last_commit {
            committed_at = Some(Instant::now());
            last_commit = committed;
        }
        if committed_at.is_none_or(|t| t.elapsed() > victim_commits / 2) {
            continue;
        }
        let place: BTreeMap<i64, (i32, i64)> = inputs
            .got
            .iter()
            .map(|r| (id(r), (r.partition, r.offset)))
            .collect();
        let uncommitted = outputs.got.iter().any(|r| {
            id(r) >= 1000
                && place.get(&id(r)).is_some_and(|&(p, offset)| {
                    victim_partitions.contains(&p)
                        && offset >= last_commit.get(&p).copied().unwrap_or(0)
                })
        });
        if uncommitted {
            break;
        }
    }
    victim.kill();
    // The victim is gone: its last commits and writes are final.
    let committed_at_kill = kafka::committed(&app, &input);
    let written_at_kill = kafka::end_offsets(&output);
    streaming.store(false, Ordering::Relaxed);
    let total = feeder.join().expect("producer thread");
    // The survivor takes the victim's partitions once the session times out,
    // then works through them. The output can hold `total` records before
    // that (the victim's uncommitted writes count), so wait for both first.
    let input_end = kafka::end_offsets(&input);
    let deadline = Instant::now() + WAIT;
    while survivor.assigned(&input) != [0, 1, 2, 3] || kafka::committed(&app, &input) != input_end {
        assert!(
            Instant::now() < deadline,
            "the survivor did not take over and catch up within {WAIT:?}:\n{}",
            survivor.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = survivor.consume(&output, total, WAIT, SETTLE);
    survivor.assert_running();
    let now_owned = survivor.assigned(&input);
    let log = survivor.stop();
    assert_eq!(
        now_owned,
        [0, 1, 2, 3],
        "the survivor owns every partition:\n{log}"
    );
    let place: BTreeMap<i64, (i32, i64)> = kafka::consume(&input, total, WAIT, Duration::ZERO)
        .iter()
        .map(|r| (id(r), (r.partition, r.offset)))
        .collect();
    // Read by the victim and not committed when it died: input records of
    // its partitions at or past the committed offsets.
    let uncommitted = |i: &i64| {
        let (p, offset) = place[i];
        victim_partitions.contains(&p) && offset >= committed_at_kill.get(&p).copied().unwrap_or(0)
    };

    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &got {
        *seen.entry(id(r)).or_default() += 1;
    }
    let missing: BTreeSet<i64> = (0..total as i64)
        .filter(|i| !seen.contains_key(i))
        .collect();
    assert!(missing.is_empty(), "lost {missing:?}; survivor log:\n{log}");
    // What the victim had written past its commits when it died.
    let victim_wrote: BTreeSet<i64> = got
        .iter()
        .filter(|r| r.offset < written_at_kill[&r.partition])
        .map(id)
        .filter(uncommitted)
        .collect();
    let duplicates: BTreeSet<i64> = seen
        .iter()
        .filter(|&(_, &n)| n > 1)
        .map(|(&i, _)| i)
        .collect();
    eprintln!(
        "records: {total}, victim partitions {victim_partitions:?}, written past its commits when killed: {}, duplicates: {}",
        victim_wrote.len(),
        duplicates.len()
    );
    assert!(
        !victim_wrote.is_empty(),
        "the victim had no records read, written and uncommitted when killed (committed {committed_at_kill:?}, output ends {written_at_kill:?})"
    );
    // At-least-once: the survivor resumes the victim's partitions at their
    // committed offsets, so all the victim wrote past them is written again;
    // nothing else is (a clean revoke commits first), and nothing thrice.
    let not_again: Vec<&i64> = victim_wrote.difference(&duplicates).collect();
    assert!(
        not_again.is_empty(),
        "written by the victim past its commits but not again: {not_again:?}"
    );
    let outside: Vec<(i64, (i32, i64))> = duplicates
        .iter()
        .filter(|i| !uncommitted(i))
        .map(|&i| (i, place[&i]))
        .collect();
    assert!(
        outside.is_empty(),
        "duplicates outside the victim's uncommitted range (committed at kill: {committed_at_kill:?}): {outside:?}"
    );
    let thrice: Vec<(&i64, &usize)> = seen.iter().filter(|&(_, &n)| n > 2).collect();
    assert!(thrice.is_empty(), "written more than twice: {thrice:?}");
}

/// Issue 11, item 1: a Kafka source takes its records' timestamps from a
/// field of the value (after decoding, as Kafka Streams' timestamp
/// extractor); a record without the field is a bad record (skipped here).
#[test]
fn a_kafka_source_takes_timestamps_from_a_field() {
    let (input, output, app) = names();
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 2);
    // Recent seconds, so that no retention check removes the records.
    let base = kafka::now_ms() / 1000 - 100;
    let mut sent: Vec<Rec> = (0..10)
        .map(|i| {
            Rec::new(
                &format!("k{i}"),
                &format!(r#"{{"i":{i},"ts":{}}}"#, base + i),
            )
        })
        .collect();
    sent.push(Rec::new("no-ts", r#"{"i":10}"#));
    kafka::produce(&input, &sent);
    let fixture = pipeline(
        &app,
        &format!(
            "error-policy: skip\nsources:\n  in: {{ kind: kafka, topic: {input}, timestamp: {{ field: ts, unit: s }} }}\nsinks:\n  out: {{ kind: kafka, topic: {output}, create: {{ partitions: 2 }} }}\n"
        ),
    );
    let weir = WeirProcess::start(&fixture, "weir.log");
    let got = weir.consume(&output, 10, WAIT, SETTLE);
    let log = weir.stop();
    assert_eq!(got.len(), 10, "log:\n{log}");
    for r in &got {
        let i = r.rec.json()["i"].as_i64().unwrap();
        assert_eq!(r.rec.timestamp, (base + i) * 1000, "log:\n{log}");
    }
    assert!(
        log.contains("timestamp field `ts` is missing"),
        "log:\n{log}"
    );
}
