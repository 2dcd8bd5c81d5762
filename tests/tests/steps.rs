//! Every step kind, through real plugins built from source.

use std::collections::{BTreeSet, HashMap};

use serde_json::json;
use weir::partition_for;
use weir_tests::{Fixture, line, lines};

fn orders() -> String {
    lines(&[
        line(
            "c1",
            json!({"id": 1, "amount": 250, "type": "OrderCreated", "customer": "alice", "items": [{"sku": "a"}, {"sku": "b"}]}),
        ),
        line(
            "c2",
            json!({"id": 2, "amount": 20, "type": "PaymentRequested", "customer": "bob", "items": []}),
        ),
        line(
            "c3",
            json!({"id": 3, "amount": 120, "type": "Refund", "customer": "carol", "items": [{"sku": "c"}]}),
        ),
    ])
}

#[test]
fn filter_then_map() {
    let f = Fixture::new(
        "
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  filter: { path: '{plugin:json-filter}' }
  enrich: { path: '{plugin:enricher}' }
steps:
  - { name: big, kind: filter, plugin: filter, config: { field: amount, op: gte, value: 100 } }
  - { name: tag, kind: map, plugin: enrich, config: { set: { big: true }, key-field: k, drop: [items] } }
sinks:
  out: { kind: stdout }
",
        &[("in.jsonl", &orders())],
    );
    let (result, out) = f.run();
    let report = result.unwrap();
    assert_eq!(report.counts.records_in, 3);
    assert_eq!(report.counts.records_out, 2);
    let recs = out.records("out");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["key"], "c1");
    assert_eq!(recs[0]["timestamp"], 1000);
    assert_eq!(
        recs[0]["value"],
        json!({"id": 1, "amount": 250, "type": "OrderCreated", "customer": "alice", "big": true, "k": "c1"})
    );
    assert_eq!(recs[1]["value"]["id"], 3);
}

#[test]
fn flat_map_splits_and_select_key_rekeys() {
    let f = Fixture::new(
        "
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  split: { path: '{plugin:splitter}' }
  rekey: { path: '{plugin:key-selector}' }
steps:
  - { name: items, kind: flat-map, plugin: split, config: { field: items, keep: [id] } }
  - { name: by-item, kind: select-key, plugin: rekey, config: { field: sku } }
sinks:
  out: { kind: stdout }
",
        &[("in.jsonl", &orders())],
    );
    let (result, out) = f.run();
    result.unwrap();
    let recs = out.records("out");
    let values: Vec<_> = recs.iter().map(|r| r["value"].clone()).collect();
    assert_eq!(
        values,
        [
            json!({"sku": "a", "id": 1}),
            json!({"sku": "b", "id": 1}),
            json!({"sku": "c", "id": 3})
        ]
    );
    let keys: Vec<_> = recs.iter().map(|r| r["key"].clone()).collect();
    assert_eq!(keys, [json!("a"), json!("b"), json!("c")]);

    let g = Fixture::new(
        "
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  rekey: { path: '{plugin:key-selector}' }
steps:
  - { name: by-customer, kind: select-key, plugin: rekey, config: { field: customer } }
sinks:
  out: { kind: stdout }
",
        &[("in.jsonl", &orders())],
    );
    let (result, out) = g.run();
    result.unwrap();
    let keys: Vec<_> = out
        .records("out")
        .iter()
        .map(|r| r["key"].clone())
        .collect();
    assert_eq!(keys, [json!("alice"), json!("bob"), json!("carol")]);
    assert_eq!(
        out.values("out")[0]["items"][0]["sku"],
        "a",
        "value unchanged"
    );
}

#[test]
fn branch_routes_to_two_sinks_and_a_default() {
    let f = Fixture::new(
        "
sources:
  commands: { kind: file, path: in.jsonl }
plugins:
  router: { path: '{plugin:router}' }
steps:
  - name: route
    kind: branch
    plugin: router
    config: { field: type, routes: { OrderCreated: orders, PaymentRequested: payments }, default: other }
sinks:
  orders: { kind: file, path: orders.jsonl, from: route.orders }
  payments: { kind: file, path: payments.jsonl, from: route.payments }
  other: { kind: file, path: other.jsonl, from: route.other }
",
        &[("in.jsonl", &orders())],
    );
    let (result, out) = f.run();
    result.unwrap();
    let ids = |sink: &str| {
        out.values(sink)
            .iter()
            .map(|v| v["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("orders"), [1]);
    assert_eq!(ids("payments"), [2]);
    assert_eq!(ids("other"), [3]);
}

#[test]
fn partitions_split_by_key_and_keep_per_key_order() {
    // Even records are objects and pass the filter; odd ones are JSON
    // arrays, which json-filter calls poison, so they are dead-lettered
    // with a `weir.error.partition` header naming the partition task that
    // handled them.
    let input: Vec<String> = (0..2000)
        .map(|i| {
            let value = if i % 2 == 0 {
                json!({"seq": i})
            } else {
                json!([i])
            };
            line(&format!("k{}", i % 37), value)
        })
        .collect();
    let f = Fixture::new(
        "
partitions: 4
batch-size: 64
error-policy: dead-letter
dead-letter: rejected
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  filter: { path: '{plugin:json-filter}' }
steps:
  - { name: objects, kind: filter, plugin: filter, config: { field: seq, op: gte, value: 0 } }
sinks:
  out: { kind: stdout, from: objects }
  rejected: { kind: file, path: rejected.jsonl }
",
        &[("in.jsonl", &lines(&input))],
    );
    let (result, out) = f.run();
    let counts = result.unwrap().counts;
    assert_eq!(
        (counts.records_in, counts.records_out, counts.dead_lettered),
        (2000, 1000, 1000)
    );

    // Each key's records come out in input order, on both sinks.
    let in_order = |sink: &str, seq: fn(&serde_json::Value) -> i64| {
        let mut last: HashMap<String, i64> = HashMap::new();
        for r in out.records(sink) {
            let key = r["key"].as_str().unwrap().to_string();
            let seq = seq(&r["value"]);
            if let Some(prev) = last.insert(key.clone(), seq) {
                assert!(prev < seq, "{sink}: key {key}: {seq} after {prev}");
            }
        }
    };
    in_order("out", |v| v["seq"].as_i64().unwrap());
    in_order("rejected", |v| v[0].as_i64().unwrap());
    assert_eq!(out.records("out").len(), 1000);

    // Each key was handled by one partition task, the one Kafka's murmur2
    // picks, and the keys were spread over more than one task.
    let rejected = out.records("rejected");
    assert_eq!(rejected.len(), 1000);
    let mut partition_of: HashMap<String, u32> = HashMap::new();
    for r in &rejected {
        let key = r["key"].as_str().unwrap().to_string();
        let partition: u32 = header(r, "weir.error.partition")
            .unwrap_or_else(|| panic!("no partition header: {r}"))
            .parse()
            .unwrap();
        assert_eq!(
            partition,
            partition_for(key.as_bytes(), 4),
            "key {key} was not handled by its murmur2 partition"
        );
        let first = *partition_of.entry(key.clone()).or_insert(partition);
        assert_eq!(first, partition, "key {key} moved between partitions");
    }
    assert_eq!(partition_of.len(), 37, "every key was dead-lettered");
    let used: BTreeSet<u32> = partition_of.values().copied().collect();
    assert!(
        used.len() > 1,
        "all records went through one partition task: {used:?}"
    );
}

/// A header of a record read back from a JSON-lines sink (an object, or a
/// list of `[name, value]` pairs when names repeat).
fn header<'a>(record: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    let headers = &record["headers"];
    match headers {
        serde_json::Value::Object(map) => map.get(name).and_then(|v| v.as_str()),
        serde_json::Value::Array(pairs) => pairs
            .iter()
            .find(|p| p[0] == name)
            .and_then(|p| p[1].as_str()),
        _ => None,
    }
}

#[test]
fn a_step_can_merge_two_inputs() {
    let f = Fixture::new(
        "
sources:
  a: { kind: file, path: a.jsonl }
  b: { kind: file, path: b.jsonl }
plugins:
  enrich: { path: '{plugin:enricher}' }
steps:
  - { name: tag, kind: map, plugin: enrich, from: [a, b], config: { set: { merged: true } } }
sinks:
  out: { kind: stdout }
",
        &[
            ("a.jsonl", &lines(&[line("x", json!({"from": "a"}))])),
            ("b.jsonl", &lines(&[line("y", json!({"from": "b"}))])),
        ],
    );
    let (result, out) = f.run();
    result.unwrap();
    let mut froms: Vec<_> = out
        .values("out")
        .iter()
        .map(|v| v["from"].as_str().unwrap().to_string())
        .collect();
    froms.sort();
    assert_eq!(froms, ["a", "b"]);
    assert!(out.values("out").iter().all(|v| v["merged"] == true));
}

#[test]
fn two_file_sources_are_merged_in_timestamp_order_and_the_run_repeats() {
    // Interleaved timestamps, equal ones across the sources, in batches
    // smaller than the files: the task takes the lowest head timestamp
    // next, `a` (listed first) winning ties, and waits for a file that has
    // not sent yet rather than going on without it.
    let at = |key: &str, ts: i64| {
        serde_json::json!({"key": key, "value": {"ts": ts}, "timestamp": ts}).to_string()
    };
    let a: Vec<String> = [1, 4, 4, 9, 10, 15, 20, 21]
        .iter()
        .map(|&t| at("a", t))
        .collect();
    let b: Vec<String> = [2, 3, 4, 8, 16, 22, 30]
        .iter()
        .map(|&t| at("b", t))
        .collect();
    let text = "
partitions: 1
batch-size: 2
sources:
  a: { kind: file, path: a.jsonl }
  b: { kind: file, path: b.jsonl }
sinks:
  out: { kind: stdout, from: [a, b] }
";
    let files = [("a.jsonl", lines(&a)), ("b.jsonl", lines(&b))];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    let run = || {
        let f = Fixture::new(text, &files);
        let (result, out) = f.run();
        result.unwrap();
        out.records("out")
            .iter()
            .map(|r| {
                format!(
                    "{}{}",
                    r["key"].as_str().unwrap(),
                    r["timestamp"].as_i64().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(
        first,
        [
            "a1", "b2", "b3", "a4", "a4", "b4", "b8", "a9", "a10", "a15", "b16", "a20", "a21",
            "b22", "b30"
        ]
    );
    for _ in 0..5 {
        assert_eq!(run(), first, "the same files give the same order");
    }
}

/// Issue 11, item 1: blank lines are not records; the run report counts
/// them per source. Keys and timestamps come from (dotted) fields.
#[test]
fn blank_lines_are_counted_per_source_and_fields_give_key_and_timestamp() {
    let f = Fixture::new(
        "
partitions: 4
sources:
  plain:
    kind: file
    path: plain.jsonl
    format: json
    key: { field: customer.id }
    timestamp: { field: at, unit: rfc3339 }
  enveloped: { kind: file, path: enveloped.jsonl }
plugins:
  noop: { path: '{plugin:noop}' }
steps:
  - { name: pass, kind: filter, plugin: noop, from: [plain, enveloped] }
sinks:
  out: { kind: stdout }
",
        &[
            (
                "plain.jsonl",
                "\n{\"customer\":{\"id\":\"alice\"},\"at\":\"2023-11-14T22:13:20Z\"}\n  \n\t\n{\"customer\":{\"id\":\"bob\"},\"at\":\"2023-11-14T23:13:20+01:00\"}\n",
            ),
            ("enveloped.jsonl", &lines(&[line("c", json!(1))])),
        ],
    );
    let (result, captured) = f.run();
    let report = result.unwrap();
    let blank: Vec<(&str, u64)> = report
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s.blank_lines))
        .collect();
    assert_eq!(blank, [("enveloped", 0), ("plain", 3)]);
    let records = captured.records("out");
    for name in ["alice", "bob"] {
        let r = records.iter().find(|r| r["key"] == name).unwrap();
        assert_eq!(r["timestamp"], 1_700_000_000_000i64);
    }
}
