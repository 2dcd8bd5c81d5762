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
