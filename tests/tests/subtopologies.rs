//! Sub-topologies on the embedded runtime: a `repartition` step moves records
//! to the task of their (new) key's partition, through in-process queues
//! that never deadlock, however few worker threads host the tasks.

use std::collections::HashMap;

use serde_json::json;
use weir::TaskId;
use weir::partition_for;
use weir_tests::{Fixture, line, lines};

/// Orders keyed by order id; the pipeline re-keys them by customer and
/// re-partitions, so each customer's orders meet in one task.
fn orders(n: usize) -> String {
    let input: Vec<String> = (0..n)
        .map(|i| {
            line(
                &format!("order-{i}"),
                json!({"seq": i, "customer": format!("c{}", i % 101), "amount": i % 500}),
            )
        })
        .collect();
    lines(&input)
}

fn pipeline(partitions: u32, threads: u32) -> String {
    format!(
        "
partitions: {partitions}
threads: {threads}
batch-size: 64
sources:
  in: {{ kind: file, path: in.jsonl }}
plugins:
  keys: {{ path: '{{plugin:key-selector}}' }}
  filter: {{ path: '{{plugin:json-filter}}' }}
steps:
  - {{ name: by-customer, kind: select-key, plugin: keys, config: {{ field: customer }} }}
  - {{ name: rekeyed, kind: repartition }}
  - {{ name: all, kind: filter, plugin: filter, config: {{ field: amount, op: gte, value: 0 }} }}
sinks:
  out: {{ kind: stdout }}
"
    )
}

fn run_and_check(partitions: u32, threads: u32, n: usize) {
    let f = Fixture::new(&pipeline(partitions, threads), &[("in.jsonl", &orders(n))]);
    let (result, out) = f.run();
    let report = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.counts.records_out, n as u64);
    // Every record reached the task of its new key's partition, and only it.
    let mut expected: HashMap<u32, u64> = HashMap::new();
    for i in 0..n {
        let key = format!("c{}", i % 101);
        *expected
            .entry(partition_for(key.as_bytes(), partitions))
            .or_default() += 1;
    }
    let downstream: HashMap<u32, u64> = report
        .operators
        .iter()
        .filter(|o| o.step == "all")
        .map(|o| {
            assert_eq!(o.task.subtopology, 1, "`all` runs after the repartition");
            (o.task.partition, o.records_in)
        })
        .collect();
    for p in 0..partitions {
        assert_eq!(
            downstream.get(&p).copied().unwrap_or(0),
            expected.get(&p).copied().unwrap_or(0),
            "records in task 1_{p}"
        );
    }
    assert!(
        expected.len() > 1,
        "the keys must spread over partitions for this test to mean anything"
    );
    let upstream: Vec<TaskId> = report
        .operators
        .iter()
        .filter(|o| o.step == "by-customer")
        .map(|o| o.task)
        .collect();
    assert!(upstream.iter().all(|t| t.subtopology == 0));
    // A customer's orders from one upstream partition keep their order
    // through the move (as in Kafka Streams, orders from different upstream
    // partitions interleave).
    let recs = out.records("out");
    assert_eq!(recs.len(), n);
    let mut last: HashMap<(String, u32), i64> = HashMap::new();
    for r in &recs {
        let key = r["key"].as_str().unwrap().to_string();
        assert_eq!(r["value"]["customer"].as_str().unwrap(), key);
        let seq = r["value"]["seq"].as_i64().unwrap();
        let upstream = partition_for(format!("order-{seq}").as_bytes(), partitions);
        if let Some(prev) = last.insert((key.clone(), upstream), seq) {
            assert!(
                prev < seq,
                "customer {key} from partition {upstream}: {seq} after {prev}"
            );
        }
    }
}

#[test]
fn a_repartition_moves_records_to_their_new_keys_task() {
    run_and_check(4, 2, 5_000);
}

#[test]
fn one_thread_hosting_both_sides_of_a_repartition_does_not_deadlock() {
    // Eight tasks (two sub-topologies of four partitions) on one worker,
    // with enough records to fill every queue between them many times.
    run_and_check(4, 1, 200_000);
}

#[test]
fn more_partitions_than_threads_on_both_sides() {
    run_and_check(7, 3, 20_000);
}

#[test]
fn a_repartition_is_refused_on_kafka_for_now_with_a_reason() {
    let f = Fixture::new(
        "
kafka: { bootstrap: 127.0.0.1:1 }
sources:
  in: { kind: kafka, topic: orders }
steps:
  - { name: rekeyed, kind: repartition }
sinks:
  out: { kind: stdout }
",
        &[],
    );
    let err = weir::Pipeline::load(&f.pipeline_path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("repartition") && err.contains("Kafka"),
        "{err}"
    );
}
