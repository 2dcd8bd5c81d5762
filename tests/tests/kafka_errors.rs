//! The producer's error paths against a real broker (see `weir_tests::kafka`
//! for where it comes from): a record too large to produce goes to the
//! error policy; a stop while the producer's queue is full ends cleanly and
//! commits nothing past what was never sent; a delivery the broker refuses
//! ends the run without committing past it. Each situation is made by a
//! setting, not by timing: a small `message.max.bytes` for the producer, a
//! small queue that a long `linger.ms` keeps full, a small
//! `max.message.bytes` on the output topic.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weir_tests::kafka::{self, Cleanup, Rec, Settings, WeirProcess};

const WAIT: Duration = Duration::from_secs(90);
const SETTLE: Duration = Duration::from_secs(2);

fn names() -> (String, String, String) {
    (
        kafka::unique("in"),
        kafka::unique("out"),
        kafka::unique("app"),
    )
}

fn order(i: usize, pad: usize) -> Rec {
    Rec::new(
        &format!("c-{i:03}"),
        &format!(r#"{{"id":{i},"pad":"{}"}}"#, "x".repeat(pad)),
    )
}

fn ids(reads: &[kafka::Read]) -> BTreeSet<i64> {
    reads
        .iter()
        .map(|r| r.rec.json()["id"].as_i64().unwrap())
        .collect()
}

fn copy_body(input: &str, output: &str) -> String {
    format!(
        "sources:\n  in: {{ kind: kafka, topic: {input} }}\nsinks:\n  out: {{ kind: kafka, topic: {output} }}\n"
    )
}

/// A value of this size passes; one of `TOO_LARGE` does not fit the
/// producer's `message.max.bytes` below.
const SMALL: usize = 10;
const TOO_LARGE: usize = 4000;
const MAX_BYTES: &str = "{ message.max.bytes: 2000 }";

/// Records 0..n, record 5 too large for the producer.
fn with_one_too_large(range: std::ops::Range<usize>) -> Vec<Rec> {
    range
        .map(|i| order(i, if i == 5 { TOO_LARGE } else { SMALL }))
        .collect()
}

#[test]
fn a_record_too_large_to_produce_is_dead_lettered_and_the_run_goes_on() {
    let (input, output, app) = names();
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 1);
    kafka::create_topic(&output, 1);
    kafka::produce(&input, &with_one_too_large(0..10));
    let body = format!(
        "error-policy: dead-letter\ndead-letter: rejected\n{}  rejected: {{ kind: file, path: rejected.jsonl }}\n",
        copy_body(&input, &output)
    );
    let fixture = kafka::pipeline(
        &app,
        &Settings {
            producer: MAX_BYTES,
            ..Settings::default()
        },
        &body,
    );
    let weir = WeirProcess::start(&fixture, "weir.log");
    weir.consume(&output, 9, WAIT, Duration::ZERO);
    // Records after it are still processed.
    kafka::produce(&input, &with_one_too_large(10..15));
    let got = weir.consume(&output, 14, WAIT, SETTLE);
    let log = weir.stop();
    assert_eq!(
        ids(&got),
        (0..15).filter(|&i| i != 5).collect(),
        "log:\n{log}"
    );
    assert_eq!(got.len(), 14, "each once: {got:?}");
    let rejected = std::fs::read_to_string(fixture.path("rejected.jsonl")).unwrap();
    let rejected: Vec<serde_json::Value> = rejected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}\nlog:\n{log}");
    let dead = &rejected[0];
    let header = |name: &str| {
        dead["headers"][name]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(dead["key"], "c-005");
    assert_eq!(dead["value"]["id"], 5, "kept as it came");
    assert_eq!(header("weir.error.kind"), "encode", "{dead}");
    assert_eq!(header("weir.error.operator"), "out", "{dead}");
    assert_eq!(
        (header("weir.error.partition"), header("weir.error.offset")),
        ("0".to_string(), "5".to_string())
    );
    assert!(
        header("weir.error.reason").contains(&format!("cannot produce to topic `{output}`"))
            && header("weir.error.reason").contains("too large"),
        "{dead}"
    );
    // Dead-lettered counts as done: a clean stop commits everything.
    assert_eq!(kafka::committed(&app, &input).get(&0), Some(&15));
}

#[test]
fn a_record_too_large_to_produce_under_fail_stops_the_run_before_it() {
    let (input, output, app) = names();
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 1);
    kafka::create_topic(&output, 1);
    kafka::produce(&input, &with_one_too_large(0..10));
    let body = format!("error-policy: fail\n{}", copy_body(&input, &output));
    let fixture = kafka::pipeline(
        &app,
        &Settings {
            producer: MAX_BYTES,
            ..Settings::default()
        },
        &body,
    );
    let (ok, log) = WeirProcess::start(&fixture, "weir.log").wait();
    assert!(!ok, "the run should fail:\n{log}");
    assert!(
        log.contains(&format!("topic `{input}` partition 0 offset 5")) && log.contains("too large"),
        "{log}"
    );
    // What came before it is out; nothing from it or after it is.
    let got = kafka::consume(&output, 5, WAIT, SETTLE);
    assert_eq!(ids(&got), (0..5).collect(), "{log}");
    let committed = kafka::committed(&app, &input);
    assert!(
        committed.get(&0).is_none_or(|&c| c <= 5),
        "committed past the record that failed: {committed:?}"
    );
}

#[test]
fn a_stop_while_the_producer_queue_is_full_ends_cleanly_and_commits_nothing_unsent() {
    let (input, output, app) = names();
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 1);
    kafka::create_topic(&output, 1);
    let total = 100;
    kafka::produce(
        &input,
        &(0..total).map(|i| order(i, SMALL)).collect::<Vec<_>>(),
    );
    // A queue of ten records that the producer holds for two minutes
    // (`linger.ms`; it must stay below the 5-minute `message.timeout.ms`)
    // unless flushed, so it fills and stays full; statistics show how full
    // it is (logged by rdkafka as `Client stats`). Batches of four: the
    // tenth record is inside a batch, so the task goes straight on to the
    // eleventh and waits for room.
    //
    // One task: a task that gives up mid-batch leaves that batch unfinished
    // for good, and the stop's drain waits for it until every task has
    // ended (or 60 s): with a second, idle task that is the full 60 s.
    let queue = 10;
    let producer = format!(
        "{{ queue.buffering.max.messages: {queue}, linger.ms: 120000, statistics.interval.ms: 100 }}"
    );
    let body = format!("batch-size: 4\n{}", copy_body(&input, &output));
    let fixture = kafka::pipeline(
        &app,
        &Settings {
            threads: 1,
            producer: &producer,
            ..Settings::default()
        },
        &body,
    );
    let mut weir = WeirProcess::start(&fixture, "weir.log");
    let full = format!("msg_cnt: {queue}, ");
    let deadline = Instant::now() + WAIT;
    while !weir.log_text().lines().any(|l| {
        l.contains("Client stats") && l.contains("client_type: \"producer\"") && l.contains(&full)
    }) {
        weir.assert_running();
        assert!(
            Instant::now() < deadline,
            "the producer queue did not fill within {WAIT:?}:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stopped while the task waits for room: the final flush sends what
    // was queued (a flush does not wait for `linger.ms`).
    let (ok, log) = weir.stop_and_wait();
    assert!(ok, "the run should stop cleanly:\n{log}");
    let finished = log
        .lines()
        .find(|l| l.starts_with("weir: interrupted by SIGINT"))
        .unwrap_or_else(|| panic!("no summary:\n{log}"));
    assert!(
        finished.contains(&format!(" {queue} out,")),
        "exactly the queued records went out: {finished}"
    );
    let got = kafka::consume(&output, queue, WAIT, SETTLE);
    assert_eq!(ids(&got), (0..queue as i64).collect(), "{log}");
    let committed = kafka::committed(&app, &input);
    assert!(
        committed.get(&0).is_none_or(|&c| c <= queue as i64),
        "committed past records that were never sent: {committed:?}"
    );

    // The same application, restarted with the producer's defaults, reads
    // what was not committed again: nothing is lost.
    let again = kafka::pipeline(
        &app,
        &Settings {
            threads: 1,
            ..Settings::default()
        },
        &copy_body(&input, &output),
    );
    let again = WeirProcess::start(&again, "again.log");
    let got = again.consume(&output, total, WAIT, SETTLE);
    let log = again.stop();
    assert_eq!(ids(&got), (0..total as i64).collect(), "{log}");
}

#[test]
fn a_delivery_the_broker_refuses_ends_the_run_without_committing_it() {
    let (input, output, app) = names();
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 1);
    // The producer takes the records (its own limit is 1 MB); the broker
    // refuses every write to this topic as too large.
    kafka::create_topic_with(&output, 1, &[("max.message.bytes", "500")]);
    kafka::produce(&input, &(0..20).map(|i| order(i, 1000)).collect::<Vec<_>>());
    let fixture = kafka::pipeline(&app, &Settings::default(), &copy_body(&input, &output));
    let started = Instant::now();
    let (ok, log) = WeirProcess::start(&fixture, "weir.log").wait();
    assert!(!ok, "the run should fail:\n{log}");
    assert!(
        log.contains(&format!("delivery to topic `{output}` partition 0 failed"))
            && log.contains("too large"),
        "{log}"
    );
    eprintln!("the run ended {:?} after it started", started.elapsed());
    assert_eq!(
        kafka::committed(&app, &input).get(&0),
        None,
        "an offset was committed although no output was delivered"
    );
    assert_eq!(kafka::end_offsets(&output).get(&0), Some(&0), "{log}");
}
