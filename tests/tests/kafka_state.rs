//! Issue 13, items 7 and 10: aggregations on Kafka keep their state in
//! RocksDB, log it to `<application-id>-<id>-changelog`, and get it back
//! after a restart, a lost state directory and a SIGKILL.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use weir_tests::kafka::{self, Cleanup, Rec, Settings, WeirProcess};

const WAIT: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(2);
const USERS: usize = 7;

/// Records `from..to`, keyed by order number (so a group-by on `user`
/// moves them), each for user `u<i % USERS>` with amount `i`.
fn events(from: usize, to: usize) -> Vec<Rec> {
    (from..to)
        .map(|i| {
            Rec::new(
                &format!("order-{i}"),
                &format!(r#"{{"user":"u{}","amount":{i}}}"#, i % USERS),
            )
        })
        .collect()
}

/// Each user's count and sum over records `0..n`.
fn expected(n: usize) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let e = out.entry(format!("u{}", i % USERS)).or_insert((0, 0));
        e.0 += 1;
        e.1 += i as u64;
    }
    out
}

fn body(input: &str, output: &str) -> String {
    format!(
        "sources:
  in: {{ kind: kafka, topic: {input}, value-format: json }}
steps:
  - {{ name: by-user, kind: group-by, key: {{ field: user }} }}
  - {{ name: totals, id: totals, kind: aggregate, aggregations: {{ n: count, total: {{ sum: amount }} }} }}
sinks:
  out: {{ kind: kafka, topic: {output}, key-format: string, value-format: json, from: totals }}
"
    )
}

/// Each user's latest update on the output topic (one partition per key,
/// so the last read is the latest).
fn latest(output: &str, want: usize, weir: &WeirProcess) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for r in weir.consume(output, want, WAIT, SETTLE) {
        let v = r.rec.json();
        out.insert(
            r.rec.key.clone().expect("a key"),
            (v["n"].as_u64().unwrap(), v["total"].as_u64().unwrap()),
        );
    }
    out
}

fn start(fixture: &weir_tests::Fixture, log: &str, state: &Path) -> WeirProcess {
    WeirProcess::start_with(fixture, log, &["--state-dir", state.to_str().unwrap()])
}

#[test]
fn aggregates_on_kafka_survive_restarts_lost_state_and_sigkill() {
    let (input, output, app) = (
        kafka::unique("st-in"),
        kafka::unique("st-out"),
        kafka::unique("st-app"),
    );
    let changelog = format!("{app}-totals-changelog");
    let repartition = format!("{app}-totals-repartition");
    let _cleanup = Cleanup::topics(&[&input, &output, &changelog, &repartition]);
    kafka::create_topic(&input, 2);
    kafka::create_topic(&output, 2);
    let fixture = kafka::pipeline(&app, &Settings::default(), &body(&input, &output));
    let (dir_a, dir_b) = (fixture.path("state-a"), fixture.path("state-b"));

    // 1. A first run counts and logs its state.
    kafka::produce(&input, &events(0, 300));
    let weir = start(&fixture, "run1.log", &dir_a);
    assert_eq!(
        latest(&output, 300, &weir),
        expected(300),
        "{}",
        weir.log_text()
    );
    weir.stop();
    assert_eq!(kafka::partitions(&changelog), 2);
    let configs = kafka::topic_configs(&changelog);
    assert!(configs.contains("cleanup.policy=compact"), "{configs}");
    for task in ["1_0", "1_1"] {
        let checkpoint = std::fs::read_to_string(dir_a.join(task).join(".checkpoint")).unwrap();
        assert!(checkpoint.contains("\"totals\""), "{checkpoint}");
    }

    // 2. Restarted on its own state: it goes on from where it was.
    kafka::produce(&input, &events(300, 500));
    let weir = start(&fixture, "run2.log", &dir_a);
    assert_eq!(
        latest(&output, 500, &weir),
        expected(500),
        "{}",
        weir.log_text()
    );
    weir.stop();

    // 3. Its state directory lost (another machine): restored from the
    // changelog, to the same values.
    kafka::produce(&input, &events(500, 600));
    let weir = start(&fixture, "run3.log", &dir_b);
    assert_eq!(
        latest(&output, 600, &weir),
        expected(600),
        "{}",
        weir.log_text()
    );
    let log = weir.stop();
    assert!(log.contains("restored"), "{log}");

    // 4. SIGKILL once the work is committed (RocksDB's write-ahead log is
    // off, so what the memtables held is gone): restored from the
    // checkpoint on, to the same values.
    kafka::produce(&input, &events(600, 700));
    let weir = start(&fixture, "run4.log", &dir_b);
    assert_eq!(
        latest(&output, 700, &weir),
        expected(700),
        "{}",
        weir.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    weir.kill();
    kafka::produce(&input, &events(700, 800));
    let weir = start(&fixture, "run5.log", &dir_b);
    assert_eq!(
        latest(&output, 800, &weir),
        expected(800),
        "{}",
        weir.log_text()
    );
    weir.stop();
}
