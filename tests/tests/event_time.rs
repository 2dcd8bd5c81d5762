//! Event time from a timestamp extractor plugin (issue 16, item 1): a
//! source's `timestamp: { plugin }` gives each record its time before the
//! task merges its inputs, so windows see it; a record without a valid time
//! goes to the error policy with the reason, or takes its partition's time
//! when the source says `on-invalid: partition-time` (also for a plain
//! timestamp field).

use weir_tests::{Fixture, stderr, weir};

/// Orders whose time is in `order.placedAt` (RFC 3339) or `createdAt`
/// (epoch milliseconds), one-minute windows from 10:00 UTC; the record's
/// own timestamp (`timestamp` in the envelope) is the time it reached the
/// topic, an hour later, and must not be used.
fn orders(lines: &[(&str, &str)]) -> String {
    lines
        .iter()
        .map(|(key, value)| {
            format!("{{\"key\":\"{key}\",\"value\":{value},\"timestamp\":1796036400000}}\n")
        })
        .collect()
}

fn pipeline(on_invalid: &str, policy: &str) -> String {
    format!(
        "
partitions: 1
error-policy: {policy}
dead-letter: rejected
state: {{ dir: state }}
plugins:
  order-time: {{ path: '{{plugin:order_time}}' }}
sources:
  orders:
    kind: file
    path: orders.jsonl
    timestamp:
      plugin: order-time
      config: {{ fields: [order.placedAt, createdAt] }}
      on-invalid: {on_invalid}
steps:
  - {{ name: by-customer, kind: group-by }}
  - name: per-minute
    kind: aggregate
    id: per-minute
    window: {{ tumbling: 1m, end-of-input: close-windows }}
    emit: final
    aggregations: {{ orders: count }}
sinks:
  out: {{ kind: file, path: out.jsonl, key-format: json }}
  rejected: {{ kind: file, path: rejected.jsonl }}
"
    )
}

/// 10:00:00Z = 1764496800000.
const T0: i64 = 1_796_032_800_000;

fn input() -> String {
    orders(&[
        ("a", r#"{"order":{"placedAt":"2026-11-30T10:00:10Z"}}"#),
        // The same minute from the other field, as epoch milliseconds.
        ("a", &format!(r#"{{"createdAt":{}}}"#, T0 + 50_000)),
        // The next minute, in another offset.
        ("a", r#"{"order":{"placedAt":"2026-11-30T11:01:05+01:00"}}"#),
        // No time at all.
        ("a", r#"{"amount":3}"#),
        // Out of order, back in the first minute: still open (no grace
        // is needed: the window closes at 10:01:00, stream time is 10:01:05).
        ("b", &format!(r#"{{"createdAt":{}}}"#, T0 + 1_000)),
    ])
}

fn windows(f: &Fixture) -> Vec<(String, i64, i64)> {
    std::fs::read_to_string(f.path("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                format!(
                    "{}/{}",
                    v["key"]["key"].as_str().unwrap(),
                    v["key"]["start"]
                ),
                v["value"]["orders"].as_i64().unwrap(),
                v["timestamp"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn run(f: &Fixture) -> std::process::Output {
    let p = f.pipeline_path();
    weir(&["run", p.to_str().unwrap()])
}

#[test]
fn windows_follow_the_time_the_plugin_extracts_and_a_record_without_one_is_dead_lettered() {
    let f = Fixture::new(
        &pipeline("error-policy", "dead-letter"),
        &[("orders.jsonl", &input())],
    );
    let out = run(&f);
    assert!(out.status.success(), "{}", stderr(&out));
    // b's record (10:00:01) was in order for its own key but behind
    // stream time: the window 10:00-10:01 closed at 10:01:00 < 10:01:05,
    // so it is late and dropped, as Kafka Streams would; a's two records
    // of the first minute count together.
    assert_eq!(
        windows(&f),
        vec![
            (format!("a/{T0}"), 2, T0 + 50_000),
            (format!("a/{}", T0 + 60_000), 1, T0 + 65_000),
        ]
    );
    let rejected = std::fs::read_to_string(f.path("rejected.jsonl")).unwrap();
    let rejected: Vec<serde_json::Value> = rejected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let headers = &rejected[0]["headers"];
    assert_eq!(headers["weir.error.kind"], "timestamp");
    assert_eq!(headers["weir.error.operator"], "source orders");
    assert_eq!(headers["weir.error.offset"], "4");
    let reason = headers["weir.error.reason"].as_str().unwrap();
    assert!(
        reason.contains("no order time: none of `order.placedAt`, `createdAt` is present"),
        "{reason}"
    );
    assert_eq!(rejected[0]["value"]["amount"], 3);
    assert!(stderr(&out).contains("1 record late"), "{}", stderr(&out));
}

#[test]
fn on_invalid_partition_time_gives_a_record_the_largest_time_its_partition_saw() {
    let f = Fixture::new(
        &pipeline("partition-time", "dead-letter"),
        &[(
            "orders.jsonl",
            &orders(&[
                // First of its partition and invalid: no time to give it.
                ("a", r#"{"amount":1}"#),
                ("a", r#"{"order":{"placedAt":"2026-11-30T10:00:10Z"}}"#),
                ("a", r#"{"order":{"placedAt":"2026-11-30T10:01:30Z"}}"#),
                // Takes 10:01:30 (the partition's time), not its own
                // envelope timestamp nor an earlier record's.
                ("a", r#"{"createdAt":"soon"}"#),
                ("a", &format!(r#"{{"createdAt":{}}}"#, T0 + 5_000)),
            ]),
        )],
    );
    let out = run(&f);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        windows(&f),
        vec![
            (format!("a/{T0}"), 1, T0 + 10_000),
            (format!("a/{}", T0 + 60_000), 2, T0 + 90_000),
        ]
    );
    let said = stderr(&out);
    assert!(
        said.contains("1 record given their partition's time"),
        "{said}"
    );
    let rejected = std::fs::read_to_string(f.path("rejected.jsonl")).unwrap();
    assert_eq!(rejected.lines().count(), 1, "{rejected}");
    assert!(
        rejected.contains("its partition has no time yet to give it (on-invalid: partition-time)"),
        "{rejected}"
    );
}

#[test]
fn under_fail_a_record_without_a_time_stops_the_run_after_the_records_before_it() {
    let f = Fixture::new(
        &pipeline("error-policy", "fail").replace("dead-letter: rejected\n", ""),
        &[("orders.jsonl", &input())],
    );
    let out = run(&f);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains("stopped by the `fail` error policy")
            && said.contains("source orders")
            && said.contains("no order time"),
        "{said}"
    );
    assert!(said.contains("orders.jsonl:4"), "{said}");
    assert!(said.contains("partition 0 offset 4 (timestamp)"), "{said}");
}

#[test]
fn a_timestamp_field_can_fall_back_on_the_partition_time_too() {
    let f = Fixture::new(
        "
partitions: 1
state: { dir: state }
sources:
  in:
    kind: file
    path: in.jsonl
    format: json
    key: { field: user }
    timestamp: { field: ts, unit: ms, on-invalid: partition-time }
steps:
  - { name: by-user, kind: group-by }
  - name: per-second
    kind: aggregate
    id: per-second
    window: { tumbling: 1s }
    emit: changes
    aggregations: { n: count }
sinks:
  out: { kind: file, path: out.jsonl, key-format: json }
",
        &[(
            "in.jsonl",
            "{\"user\":\"u\",\"ts\":1000}\n{\"user\":\"u\",\"ts\":2500}\n{\"user\":\"u\",\"ts\":\"later\"}\n{\"user\":\"u\"}\n{\"user\":\"u\",\"ts\":-5}\n",
        )],
    );
    let out = run(&f);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<(i64, i64)> = std::fs::read_to_string(f.path("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["key"]["start"].as_i64().unwrap(),
                v["value"]["n"].as_i64().unwrap(),
            )
        })
        .collect();
    // The three without a valid time (a string, none, negative) fall in
    // the window of 2500, the partition's time.
    assert_eq!(
        got,
        vec![(1000, 1), (2000, 1), (2000, 2), (2000, 3), (2000, 4)]
    );
    assert!(
        stderr(&out).contains("3 records given their partition's time"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validation_names_what_is_wrong_with_a_timestamp_plugin() {
    let base = pipeline("error-policy", "dead-letter");
    let cases = [
        (
            base.replace("plugin: order-time\n", "plugin: order-tme\n"),
            "timestamp plugin `order-tme` is not in `plugins` (known: order-time)",
        ),
        (
            base.replace(
                "plugin: order-time\n",
                "plugin: order-time\n      field: ts\n",
            ),
            "`timestamp` takes a `field` (with its `unit`) or a `plugin`",
        ),
        (
            base.replace("{plugin:order_time}", "{plugin:json_filter}"),
            "is a component of world `weir:plugin/transformer@0.2.0`, not a timestamp extractor",
        ),
        (
            base.replace("fields: [order.placedAt, createdAt]", "fields: []"),
            "names no field",
        ),
        (
            base.replace("on-invalid: error-policy", "on-invalid: guess"),
            "partition-time",
        ),
    ];
    for (text, want) in cases {
        let f = Fixture::new(&text, &[("orders.jsonl", "")]);
        let p = f.pipeline_path();
        let out = weir(&["validate", p.to_str().unwrap()]);
        assert!(!out.status.success(), "validated: {text}");
        assert!(
            stderr(&out).contains(want),
            "want {want:?} in {}",
            stderr(&out)
        );
    }
}

#[test]
fn plugin_inspect_names_the_world_and_kind() {
    let path = weir_tests::plugin("order_time");
    let out = weir(&["plugin", "inspect", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = weir_tests::stdout(&out);
    assert!(
        said.contains("world:    weir:plugin/timestamp-extractor@0.2.0")
            && said.contains("kinds:    timestamp")
            && said.contains("runnable: yes"),
        "{said}"
    );
}

/// A broken extractor is a broken plugin, not bad data: the record that
/// broke it goes to the error policy with the fault's kind (never to
/// `on-invalid`), the instance is replaced, and every other record of the
/// batch keeps its time.
#[test]
fn a_trapping_or_runaway_extractor_fails_only_its_record_and_the_run_goes_on() {
    for (mode, kind) in [
        ("panic", "trap"),
        ("loop", "timeout"),
        ("fail", "failed"),
        ("negative", "timestamp"),
    ] {
        let f = Fixture::new(
            &format!(
                "
partitions: 1
error-policy: dead-letter
dead-letter: rejected
plugins:
  bad: {{ path: '{{plugin:time_misbehave}}' }}
sources:
  in:
    kind: file
    path: in.jsonl
    format: json
    key: {{ field: k }}
    timestamp: {{ plugin: bad, config: {{ mode: {mode}, trigger: boom }}, on-invalid: error-policy }}
sinks:
  out: {{ kind: file, path: out.jsonl }}
  rejected: {{ kind: file, path: rejected.jsonl }}
"
            )
            .replace("{mode}", mode),
            &[(
                "in.jsonl",
                "{\"k\":\"a\",\"t\":1000}\n{\"k\":\"a\",\"t\":2000,\"x\":\"boom\"}\n{\"k\":\"a\",\"t\":3000}\n",
            )],
        );
        let out = run(&f);
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let times: Vec<i64> = std::fs::read_to_string(f.path("out.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(times, vec![1000, 3000], "{mode}");
        let rejected = std::fs::read_to_string(f.path("rejected.jsonl")).unwrap();
        assert_eq!(rejected.lines().count(), 1, "{mode}: {rejected}");
        assert!(
            rejected.contains(&format!("\"weir.error.kind\":\"{kind}\"")),
            "{mode}: {rejected}"
        );
        if kind != "timestamp" {
            assert!(
                !stderr(&out).contains("0 instance restarts"),
                "{mode}: {}",
                stderr(&out)
            );
        }
    }
}
