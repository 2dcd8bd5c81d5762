//! Issue 13, item 3: a `repartition` on Kafka goes through the internal
//! topic `<application-id>-<id>-repartition`, written with the Java
//! client's partitioner and read back by the same consumer group, as Kafka
//! Streams does; committed records of it are purged.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use weir_tests::kafka::{self, Cleanup, Read, Rec, Settings, WeirProcess};

const WAIT: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(3);
const CUSTOMERS: usize = 10;

/// `n` orders from `CUSTOMERS` customers, keyed by `<customer>-orders` (so
/// a customer's orders sit in one input partition, in order), each with
/// its customer and its sequence number.
fn orders(n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let customer = format!("c{}", i % CUSTOMERS);
            Rec::new(
                &format!("{customer}-orders"),
                &format!(r#"{{"customer":"{customer}","seq":{i}}}"#),
            )
        })
        .collect()
}

/// select-key by customer, then a repartition with id `customers`.
fn body(input: &str, output: &str) -> String {
    format!(
        "sources:
  in: {{ kind: kafka, topic: {input}, value-format: json }}
plugins:
  keys: {{ path: '{{plugin:key_selector}}' }}
steps:
  - {{ name: by-customer, kind: select-key, plugin: keys, config: {{ field: customer }} }}
  - {{ name: to-customer, kind: repartition, id: customers }}
sinks:
  out: {{ kind: kafka, topic: {output}, key-format: string, value-format: json, from: to-customer }}
"
    )
}

fn seq(r: &Read) -> u64 {
    r.rec.json()["seq"].as_u64().expect("a seq")
}

/// Every record arrived exactly once, under its customer's key, and each
/// customer's records in the order they were produced.
fn assert_once_in_order(got: &[Read], n: usize, log: &str) {
    let seqs: Vec<u64> = got.iter().map(seq).collect();
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(seqs.len(), n, "records out, with duplicates:\n{log}");
    assert_eq!(distinct, (0..n as u64).collect(), "{log}");
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in got {
        let key = r.rec.key.clone().expect("a key");
        assert_eq!(
            r.rec.json()["customer"].as_str(),
            Some(key.as_str()),
            "re-keyed by customer"
        );
        by_key.entry(key).or_default().push(seq(r));
    }
    assert_eq!(by_key.len(), CUSTOMERS);
    for (key, seqs) in by_key {
        assert!(seqs.is_sorted(), "{key}'s records out of order: {seqs:?}");
    }
}

/// The repartition topic as weir names it.
fn repartition_topic(app: &str) -> String {
    format!("{app}-customers-repartition")
}

#[test]
fn a_repartition_on_kafka_goes_through_its_topic_in_the_partition_of_each_new_key() {
    let (input, output, app) = (
        kafka::unique("rp-in"),
        kafka::unique("rp-out"),
        kafka::unique("rp-app"),
    );
    let internal = repartition_topic(&app);
    let _cleanup = Cleanup::topics(&[&input, &output, &internal]);
    kafka::create_topic(&input, 3);
    kafka::create_topic(&output, 2);
    let n = 600;
    kafka::produce(&input, &orders(n));
    // No commit while the test looks: nothing is purged from the
    // repartition topic before it is read here.
    let settings = Settings {
        commit_interval: "1h",
        ..Settings::default()
    };
    let fixture = kafka::pipeline(&app, &settings, &body(&input, &output));
    let weir = WeirProcess::start(&fixture, "repartition.log");
    let got = weir.consume(&output, n, WAIT, SETTLE);
    assert_once_in_order(&got, n, &weir.log_text());

    // Made by weir: as many partitions as the source topic (not the
    // sink's), kept whatever their age, deleted (not compacted).
    assert_eq!(kafka::partitions(&internal), 3);
    let configs = kafka::topic_configs(&internal);
    assert!(configs.contains("cleanup.policy=delete"), "{configs}");
    assert!(configs.contains("retention.ms=-1"), "{configs}");

    // Each record went through the partition of its new key, as Kafka's
    // Java producer would have put it.
    let through = weir.consume(&internal, n, WAIT, SETTLE);
    assert_eq!(through.len(), n, "{}", weir.log_text());
    let keys: Vec<String> = (0..CUSTOMERS).map(|c| format!("c{c}")).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let java = kafka::java_partitions(&key_refs, 3);
    assert_eq!(java.len(), CUSTOMERS);
    let placed: BTreeSet<i32> = java.values().copied().collect();
    assert!(
        placed.len() > 1,
        "the keys spread over partitions: {java:?}"
    );
    for r in &through {
        let key = r.rec.key.as_deref().expect("a key");
        assert_eq!(Some(&r.partition), java.get(key), "key {key}");
    }
    let log = weir.stop();
    assert!(log.contains("created internal topic"), "{log}");
    // Records in are the source's; what comes back from the repartition
    // topic is not counted again.
    assert!(log.contains(&format!(": {n} records in, {n} out")), "{log}");
    // Its offsets are committed like a source's.
    let committed = kafka::committed(&app, &internal);
    assert_eq!(committed.values().sum::<i64>(), n as i64, "{log}");
}

#[test]
fn committed_records_of_the_repartition_topic_are_purged() {
    let (input, output, app) = (
        kafka::unique("rp-in"),
        kafka::unique("rp-out"),
        kafka::unique("rp-app"),
    );
    let internal = repartition_topic(&app);
    let _cleanup = Cleanup::topics(&[&input, &output, &internal]);
    kafka::create_topic(&input, 2);
    kafka::create_topic(&output, 2);
    let n = 400;
    kafka::produce(&input, &orders(n));
    let fixture = kafka::pipeline(&app, &Settings::default(), &body(&input, &output));
    let weir = WeirProcess::start(&fixture, "purge.log");
    let got = weir.consume(&output, n, WAIT, SETTLE);
    assert_once_in_order(&got, n, &weir.log_text());
    // Everything written to the repartition topic was read and committed:
    // after the next commits, nothing of it is kept.
    let deadline = Instant::now() + WAIT;
    loop {
        let marks = kafka::watermarks(&internal);
        let written: i64 = marks.values().map(|(_, high)| high).sum();
        assert_eq!(written, n as i64, "{marks:?}");
        if marks.values().all(|(low, high)| low == high) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the repartition topic was not purged: {marks:?}\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    weir.stop();
}

#[test]
fn a_repartition_topic_with_another_partition_count_is_refused() {
    let (input, output, app) = (
        kafka::unique("rp-in"),
        kafka::unique("rp-out"),
        kafka::unique("rp-app"),
    );
    let internal = repartition_topic(&app);
    let _cleanup = Cleanup::topics(&[&input, &output, &internal]);
    kafka::create_topic(&input, 3);
    kafka::create_topic(&output, 1);
    kafka::create_topic(&internal, 2);
    let fixture = kafka::pipeline(&app, &Settings::default(), &body(&input, &output));
    let (ok, log) = WeirProcess::start(&fixture, "refused.log").wait();
    assert!(!ok, "{log}");
    assert!(
        log.contains(&format!(
            "topic `{internal}` (repartition step `to-customer`) has 2 partitions, but needs 3 (as many as topic {input}, which sub-topology 0 reads)"
        )),
        "{log}"
    );
}

#[test]
fn two_processes_in_one_group_share_both_sub_topologies() {
    let (input, output, app) = (
        kafka::unique("rp-in"),
        kafka::unique("rp-out"),
        kafka::unique("rp-app"),
    );
    let internal = repartition_topic(&app);
    let _cleanup = Cleanup::topics(&[&input, &output, &internal]);
    kafka::create_topic(&input, 4);
    kafka::create_topic(&output, 2);
    let fixture = kafka::pipeline(&app, &Settings::default(), &body(&input, &output));
    let mut first = WeirProcess::start(&fixture, "first.log");
    let mut second = WeirProcess::start(&fixture, "second.log");
    // The range assignor gives each member two partitions of each topic,
    // the same numbers of both (co-partitioned).
    let deadline = Instant::now() + WAIT;
    loop {
        first.assert_running();
        second.assert_running();
        let shares = [
            (first.assigned(&input), first.assigned(&internal)),
            (second.assigned(&input), second.assigned(&internal)),
        ];
        let split = shares.iter().all(|(a, b)| a.len() == 2 && a == b);
        if split {
            let mut all: Vec<i32> = shares.iter().flat_map(|(a, _)| a.clone()).collect();
            all.sort_unstable();
            assert_eq!(all, [0, 1, 2, 3]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partitions not shared: {shares:?}\n{}\n{}",
            first.log_text(),
            second.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let n = 800;
    kafka::produce(&input, &orders(n));
    let got = first.consume(&output, n, WAIT, SETTLE);
    assert_once_in_order(&got, n, &second.log_text());
    let (a, b) = (first.stop(), second.stop());
    // Each member read its two partitions of each topic to the end: both
    // processed records of both sub-topologies.
    for topic in [&input, &internal] {
        let ends = kafka::end_offsets(topic);
        assert!(ends.values().all(|&e| e > 0), "{topic}: {ends:?}");
        assert_eq!(kafka::committed(&app, topic), ends, "{topic}\n{a}\n{b}");
    }
}
