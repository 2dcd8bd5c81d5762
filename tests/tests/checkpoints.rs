//! Consistent cuts of an embedded run: at every checkpoint, the output file's
//! length holds exactly the outputs of the input lines read before the
//! sources' positions, whatever the partitions and threads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use weir::{Cut, RunOptions};
use weir_tests::{Fixture, line, lines};

const N: usize = 300_000;

fn kept(seq: usize) -> bool {
    seq % 500 >= 100
}

/// Outputs (by `seq`, with their count) in `text`, which must be whole lines.
fn seqs(text: &str) -> BTreeMap<i64, usize> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        *out.entry(v["value"]["seq"].as_i64().unwrap()).or_default() += 1;
    }
    out
}

#[test]
fn every_cut_holds_exactly_the_outputs_of_the_input_before_it() {
    let input: Vec<String> = (0..N)
        .map(|i| {
            line(
                &format!("k{}", i % 997),
                json!({"seq": i, "amount": i % 500}),
            )
        })
        .collect();
    let f = Fixture::new(
        "
partitions: 3
threads: 2
batch-size: 256
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  filter: { path: '{plugin:json-filter}' }
steps:
  - { name: big, kind: filter, plugin: filter, config: { field: amount, op: gte, value: 100 } }
sinks:
  out: { kind: file, path: out.jsonl }
",
        &[("in.jsonl", &lines(&input))],
    );
    let topo = f.topology();
    let cuts: Arc<Mutex<Vec<Cut>>> = Arc::default();
    let seen = cuts.clone();
    let options = RunOptions {
        checkpoint_interval: Some(Duration::from_millis(10)),
        on_checkpoint: Some(Arc::new(move |cut: &Cut| {
            seen.lock().unwrap().push(cut.clone())
        })),
        ..RunOptions::default()
    };
    let report = weir::run(&topo, options).unwrap_or_else(|e| panic!("{e}"));
    let cuts = cuts.lock().unwrap().clone();
    assert_eq!(report.checkpoints, cuts.len() as u64);
    assert!(
        cuts.len() >= 2,
        "the run should have taken several checkpoints, took {}",
        cuts.len()
    );
    let out = std::fs::read_to_string(f.path("out.jsonl")).unwrap();
    assert_eq!(seqs(&out).len(), (0..N).filter(|&i| kept(i)).count());
    let mut last = 0;
    for cut in &cuts {
        let at = cut.sources[0];
        let len = cut.sinks[0].expect("a file sink has a length") as usize;
        assert!(len >= last, "sink lengths only grow");
        last = len;
        assert!(
            len == 0 || out.as_bytes()[len - 1] == b'\n',
            "cut {} ends inside a line",
            cut.id
        );
        // Line `n` (1-based) holds seq n-1.
        let expected: BTreeMap<i64, usize> = (0..at.read.lines as usize)
            .filter(|&i| kept(i))
            .map(|i| (i as i64, 1))
            .collect();
        let got = seqs(&out[..len]);
        assert_eq!(
            got.len(),
            expected.len(),
            "cut {} at line {}: {} outputs in the first {len} bytes",
            cut.id,
            at.read.lines,
            got.len()
        );
        assert_eq!(got, expected, "cut {} at line {}", cut.id, at.read.lines);
        assert_eq!(cut.held_records, 0, "one input per task: nothing held");
    }
}
