//! Error policies with a poison record: fail, skip, dead-letter; nothing is
//! ever lost without a trace.

use weir::RunError;
use weir_tests::{Fixture, assert_contains};

const INPUT: &str = r#"{"key":"k1","value":"ok-1","timestamp":1}
{"key":"k2","value":"ok-2","timestamp":2}
{"key":"k3","value":"boom","timestamp":3}
{"key":"k4","value":"ok-4","timestamp":4}
{"key":"k5","value":"ok-5","timestamp":5}
"#;

fn pipeline(policy: &str, mode: &str) -> String {
    format!(
        "
error-policy: {policy}
dead-letter: dlq
sources:
  in: {{ kind: file, path: in.jsonl, value-format: string }}
plugins:
  bad: {{ path: '{{plugin:misbehave}}' }}
steps:
  - {{ name: judge, kind: flat-map, plugin: bad, config: {{ mode: {mode}, trigger: boom }} }}
sinks:
  out: {{ kind: stdout, value-format: string }}
  dlq: {{ kind: file, path: dlq.jsonl, value-format: string }}
"
    )
}

fn values(out: &weir_tests::Captured, sink: &str) -> Vec<String> {
    out.values(sink)
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn fail_stops_at_the_bad_record_and_names_it() {
    let f = Fixture::new(&pipeline("fail", "poison"), &[("in.jsonl", INPUT)]);
    let (result, out) = f.run();
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RunError::Record { .. }), "{text}");
    assert_contains(&text, "in.jsonl:3");
    assert_contains(&text, "`judge`");
    assert_contains(&text, "poison on purpose");
    assert_eq!(
        values(&out, "out"),
        ["ok-1", "ok-2"],
        "nothing after the bad record"
    );
    assert!(out.records("dlq").is_empty());
}

#[test]
fn skip_counts_and_goes_on() {
    let f = Fixture::new(&pipeline("skip", "poison"), &[("in.jsonl", INPUT)]);
    let (result, out) = f.run();
    let report = result.unwrap();
    assert_eq!(report.counts.skipped, 1);
    assert_eq!(values(&out, "out"), ["ok-1", "ok-2", "ok-4", "ok-5"]);
    assert!(out.records("dlq").is_empty());
}

#[test]
fn dead_letter_carries_the_reason_and_loses_nothing() {
    let f = Fixture::new(&pipeline("dead-letter", "poison"), &[("in.jsonl", INPUT)]);
    let (result, out) = f.run();
    let report = result.unwrap();
    assert_eq!(values(&out, "out"), ["ok-1", "ok-2", "ok-4", "ok-5"]);
    let dlq = out.records("dlq");
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert_eq!(d["key"], "k3");
    assert_eq!(d["value"], "boom");
    assert_eq!(d["timestamp"], 3);
    let h = &d["headers"];
    assert_eq!(h["weir.error.kind"], "poison");
    assert_eq!(h["weir.error.reason"], "misbehave: poison on purpose");
    assert_eq!(h["weir.error.operator"], "judge");
    assert_eq!(h["weir.error.source"], "in");
    assert_eq!(h["weir.error.partition"], "0");
    assert_eq!(h["weir.error.offset"], "3");
    let c = report.counts;
    assert_eq!(c.records_in, 5);
    assert_eq!(c.records_out + c.dead_lettered, 5, "{c:?}");
}

#[test]
fn an_operator_failure_is_retried_on_a_fresh_instance_then_dead_lettered() {
    let f = Fixture::new(&pipeline("dead-letter", "fail"), &[("in.jsonl", INPUT)]);
    let (result, out) = f.run();
    let report = result.unwrap();
    assert_eq!(values(&out, "out"), ["ok-1", "ok-2", "ok-4", "ok-5"]);
    let dlq = out.records("dlq");
    assert_eq!(dlq[0]["headers"]["weir.error.kind"], "failed");
    assert!(report.counts.restarts >= 1, "{:?}", report.counts);
}

#[test]
fn a_step_policy_overrides_the_pipeline_policy() {
    let text = pipeline("fail", "poison").replace(
        "config: { mode: poison, trigger: boom } }",
        "config: { mode: poison, trigger: boom }, error-policy: skip }",
    );
    let f = Fixture::new(&text, &[("in.jsonl", INPUT)]);
    let (result, out) = f.run();
    assert_eq!(result.unwrap().counts.skipped, 1);
    assert_eq!(values(&out, "out").len(), 4);
}

const BAD_LINES: &str = r#"{"key":"k1","value":"ok-1"}
this is not json
{"key":"k3","vaule":"typo"}
{"key":"k4","value":"ok-4"}
"#;

#[test]
fn undecodable_input_lines_follow_the_policy() {
    let f = Fixture::new(
        &pipeline("dead-letter", "poison"),
        &[("in.jsonl", BAD_LINES)],
    );
    let (result, out) = f.run();
    let report = result.unwrap();
    assert_eq!(values(&out, "out"), ["ok-1", "ok-4"]);
    let dlq = out.records("dlq");
    assert_eq!(dlq.len(), 2);
    assert_eq!(dlq[0]["value"], "this is not json");
    assert_eq!(dlq[0]["headers"]["weir.error.kind"], "decode");
    assert_eq!(dlq[0]["headers"]["weir.error.offset"], "2");
    assert!(
        dlq[1]["headers"]["weir.error.reason"]
            .as_str()
            .unwrap()
            .contains("unknown field `vaule`")
    );
    assert_eq!(report.counts.rejected_lines, 2);

    let f = Fixture::new(&pipeline("fail", "poison"), &[("in.jsonl", BAD_LINES)]);
    let (result, out) = f.run();
    let text = result.unwrap_err().to_string();
    assert_contains(&text, "in.jsonl:2");
    assert_contains(&text, "not a JSON record");
    assert_eq!(values(&out, "out"), ["ok-1"]);
}

#[test]
fn a_record_the_sink_cannot_encode_is_dead_lettered() {
    // The value is fine as a string, but the sink wants JSON.
    let text = pipeline("dead-letter", "poison").replace(
        "out: { kind: stdout, value-format: string }",
        "out: { kind: stdout, value-format: json }",
    );
    let f = Fixture::new(
        &text,
        &[("in.jsonl", "{\"key\":\"k\",\"value\":\"not json\"}\n")],
    );
    let (result, out) = f.run();
    result.unwrap();
    assert!(out.records("out").is_empty());
    let dlq = out.records("dlq");
    assert_eq!(dlq[0]["headers"]["weir.error.kind"], "encode");
    assert_eq!(dlq[0]["headers"]["weir.error.operator"], "out");
}

/// A plugin's output that starts exactly like its checked input but
/// appends broken JSON is still caught where it leaves, as is a whole new
/// value, and dead-lettered under the step's name; a value forwarded or
/// extended validly is written as it is.
#[test]
fn json_a_plugin_breaks_is_caught_at_the_sink() {
    let f = Fixture::new(
        "
error-policy: dead-letter
dead-letter: dlq
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  bad: { path: '{plugin:misbehave}' }
  enrich: { path: '{plugin:enricher}' }
steps:
  - { name: tag, kind: map, plugin: enrich, config: { set: { checked: true } } }
  - { name: judge, kind: flat-map, plugin: bad, config: { mode: bad-json, trigger: boom } }
sinks:
  out: { kind: stdout }
  dlq: { kind: file, path: dlq.jsonl }
",
        &[(
            "in.jsonl",
            "{\"key\":\"k1\",\"value\":{\"a\":1}}\n{\"key\":\"k2\",\"value\":{\"boom\":2}}\n{\"key\":\"k3\",\"value\":{ }}\n",
        )],
    );
    let (result, out) = f.run();
    result.unwrap();
    assert_eq!(
        out.values("out"),
        [
            serde_json::json!({"a": 1, "checked": true}),
            serde_json::json!({"checked": true})
        ]
    );
    let dlq = out.records("dlq");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["key"], "k2");
    assert_eq!(dlq[0]["headers"]["weir.error.kind"], "encode");
    assert_eq!(dlq[0]["value"], "{\"boom\":2,\"checked\":true,\"broken\":}");
    assert_eq!(
        dlq[0]["headers"]["weir.error.operator"], "judge",
        "the step that made the broken value, not the sink"
    );
    let reason = dlq[0]["headers"]["weir.error.reason"].as_str().unwrap();
    assert!(
        reason.starts_with("emitted a record sink `out` cannot write: "),
        "{reason}"
    );
}

#[test]
fn fail_takes_back_what_later_records_produced_on_other_branches() {
    let f = Fixture::new(
        "
error-policy: fail
sources:
  in: { kind: file, path: in.jsonl, value-format: string }
plugins:
  noop: { path: '{plugin:noop}' }
  bad: { path: '{plugin:misbehave}' }
steps:
  - { name: copy, kind: filter, plugin: noop, from: in }
  - { name: judge, kind: flat-map, plugin: bad, from: in, config: { mode: poison, trigger: boom } }
sinks:
  copies: { kind: stdout, from: copy, value-format: string }
  judged: { kind: stdout, from: judge, value-format: string }
",
        &[("in.jsonl", INPUT)],
    );
    let (result, out) = f.run();
    assert!(result.unwrap_err().to_string().contains("in.jsonl:3"));
    // `copy` ran over the whole batch before `judge` failed on record 3.
    assert_eq!(values(&out, "copies"), ["ok-1", "ok-2"]);
    assert_eq!(values(&out, "judged"), ["ok-1", "ok-2"]);
}

#[test]
fn a_bad_input_line_is_dead_lettered_even_to_a_json_sink() {
    let text = pipeline("dead-letter", "poison").replace(
        "dlq: { kind: file, path: dlq.jsonl, value-format: string }",
        "dlq: { kind: file, path: dlq.jsonl }",
    );
    let f = Fixture::new(&text, &[("in.jsonl", BAD_LINES)]);
    let (result, out) = f.run();
    result.unwrap();
    let dlq = out.records("dlq");
    assert_eq!(dlq.len(), 2);
    assert_eq!(dlq[0]["value"], "this is not json", "kept as a string");
    // A line that is JSON but not a record fits the JSON format as it is.
    assert_eq!(
        dlq[1]["value"],
        serde_json::json!({"key": "k3", "vaule": "typo"})
    );
}
