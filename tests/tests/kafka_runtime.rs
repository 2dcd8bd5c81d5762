//! The runtime's guarantees where they meet Kafka: under the `fail` policy,
//! nothing derived from a bad record or the records after it reaches any
//! Kafka sink, whichever branch of a fan-out it went down.

use std::time::Duration;

use weir_tests::Fixture;
use weir_tests::kafka::{self, Cleanup, Rec, WeirProcess};

const WAIT: Duration = Duration::from_secs(90);
const SETTLE: Duration = Duration::from_secs(3);

fn values(topic: &str, want: usize) -> Vec<String> {
    kafka::consume(topic, want, WAIT, SETTLE)
        .into_iter()
        .map(|r| r.rec.value.clone().unwrap_or_default())
        .collect()
}

#[test]
fn fail_lets_no_branch_produce_past_the_bad_record() {
    let (input, copies, judged, app) = (
        kafka::unique("in"),
        kafka::unique("copies"),
        kafka::unique("judged"),
        kafka::unique("app"),
    );
    let _cleanup = Cleanup::topics(&[&input, &copies, &judged]);
    kafka::create_topic(&input, 1);
    kafka::create_topic(&copies, 1);
    kafka::create_topic(&judged, 1);
    let sent: Vec<Rec> = ["ok-1", "ok-2", "boom", "ok-4", "ok-5"]
        .iter()
        .map(|v| Rec::new("k", v))
        .collect();
    kafka::produce(&input, &sent);
    // `copy` is visited first and sees the whole batch before `judge`
    // fails on its third record: its Kafka sink must still get only what
    // came before the bad record.
    let text = format!(
        "name: {app}
error-policy: fail
kafka:
  bootstrap: {}
  commit-interval: 200ms
sources:
  in: {{ kind: kafka, topic: {input}, value-format: string }}
plugins:
  noop: {{ path: '{{plugin:noop}}' }}
  bad: {{ path: '{{plugin:misbehave}}' }}
steps:
  - {{ name: copy, kind: filter, plugin: noop, from: in }}
  - {{ name: judge, kind: flat-map, plugin: bad, from: in, config: {{ mode: poison, trigger: boom }} }}
sinks:
  copies: {{ kind: kafka, topic: {copies}, from: copy, value-format: string }}
  judged: {{ kind: kafka, topic: {judged}, from: judge, value-format: string }}
",
        kafka::bootstrap()
    );
    let fixture = Fixture::new(&text, &[]);
    let (ok, log) = WeirProcess::start(&fixture, "fail.log").wait();
    assert!(!ok, "the run should fail:\n{log}");
    assert!(
        log.contains(&format!("topic `{input}` partition 0 offset 2")),
        "{log}"
    );
    assert_eq!(values(&copies, 2), ["ok-1", "ok-2"], "{log}");
    assert_eq!(values(&judged, 2), ["ok-1", "ok-2"], "{log}");
}

/// Issue 11, item 5: the first SIGINT interrupts a plugin call stuck in a
/// loop (two-minute limit) at once; what was processed before is written
/// and committed, the stuck batch and the one behind it are not: their
/// offsets stay uncommitted, so the next start reads them again.
#[test]
fn an_interrupted_run_commits_what_it_processed_and_nothing_after() {
    use std::time::Instant;

    let (input, output, app) = (
        kafka::unique("in"),
        kafka::unique("out"),
        kafka::unique("app"),
    );
    let _cleanup = Cleanup::topics(&[&input, &output]);
    kafka::create_topic(&input, 1);
    kafka::create_topic(&output, 1);
    let sent: Vec<Rec> = ["ok-0", "ok-1", "ok-2", "boom", "ok-4", "ok-5"]
        .iter()
        .map(|v| Rec::new("k", v))
        .collect();
    kafka::produce(&input, &sent);
    let text = format!(
        "name: {app}
batch-size: 2
kafka:
  bootstrap: {}
  commit-interval: 200ms
sources:
  in: {{ kind: kafka, topic: {input}, value-format: string }}
plugins:
  bad: {{ path: '{{plugin:misbehave}}' }}
steps:
  - {{ name: judge, kind: flat-map, plugin: bad, config: {{ mode: loop, trigger: boom }}, limits: {{ time-per-batch: 120s }} }}
sinks:
  out: {{ kind: kafka, topic: {output}, value-format: string }}
",
        kafka::bootstrap()
    );
    let fixture = Fixture::new(&text, &[]);
    let weir = WeirProcess::start(&fixture, "interrupted.log");
    // The first batch is out and committed; the second is stuck.
    assert_eq!(values(&output, 2), ["ok-0", "ok-1"], "{}", weir.log_text());
    let deadline = Instant::now() + WAIT;
    while kafka::committed(&app, &input).get(&0) != Some(&2) {
        assert!(
            Instant::now() < deadline,
            "offset 2 never committed:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped = Instant::now();
    let log = weir.stop();
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "took {:?}:\n{log}",
        stopped.elapsed()
    );
    assert!(
        log.contains(&format!(
            "stopped with offsets committed (the next to read): {input}[0] at 2"
        )),
        "{log}"
    );
    assert!(
        log.contains("4 not processed (from Kafka: not committed"),
        "{log}"
    );
    assert_eq!(kafka::committed(&app, &input).get(&0), Some(&2));
    assert_eq!(values(&output, 2), ["ok-0", "ok-1"], "{log}");
    for word in ["trapped", "time limit", "fresh instance"] {
        assert!(!log.contains(word), "`{word}` reported:\n{log}");
    }
}
