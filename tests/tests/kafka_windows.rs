//! Issue 16 on Kafka: a windowed aggregate with `emit: final` keeps its
//! windows and stream time in RocksDB, logs them to a `compact,delete`
//! changelog, and after a SIGKILL mid-window and a restart on another state
//! directory (restored from the changelog) loses no final result.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_tests::kafka::{self, Cleanup, Rec, Settings};

const WAIT: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(2);
const USERS: i64 = 3;
const WINDOW_MS: i64 = 10_000;

/// Records `from..to`: record `i` is user `u<i % USERS>`'s, amount `i`, at
/// `base + i` seconds (ten records of each user per window... of all users).
fn events(base: i64, from: i64, to: i64) -> Vec<Rec> {
    (from..to)
        .map(|i| {
            let mut r = Rec::new(
                &format!("order-{i}"),
                &format!(r#"{{"user":"u{}","amount":{i}}}"#, i % USERS),
            );
            r.timestamp = base + i * 1000;
            r
        })
        .collect()
}

/// Each (user, window start) of records `0..n` whose window is closed by
/// stream time `base + (n - 1)` seconds: its count and sum.
fn closed_windows(base: i64, n: i64) -> BTreeMap<(String, i64), (u64, u64)> {
    let stream_time = base + (n - 1) * 1000;
    let mut out = BTreeMap::new();
    for i in 0..n {
        let ts = base + i * 1000;
        let start = ts - ts.rem_euclid(WINDOW_MS);
        if start + WINDOW_MS > stream_time {
            continue;
        }
        let e = out
            .entry((format!("u{}", i % USERS), start))
            .or_insert((0, 0));
        e.0 += 1;
        e.1 += i as u64;
    }
    out
}

#[test]
fn final_window_results_on_kafka_survive_a_sigkill_mid_window_and_a_lost_state_directory() {
    let (input, output, app) = (
        kafka::unique("win-in"),
        kafka::unique("win-out"),
        kafka::unique("win-app"),
    );
    let changelog = format!("{app}-per-window-changelog");
    let repartition = format!("{app}-per-window-repartition");
    let _cleanup = Cleanup::topics(&[&input, &output, &changelog, &repartition]);
    // One partition in: every task's stream time follows the records' order.
    kafka::create_topic(&input, 1);
    kafka::create_topic(&output, 2);
    let body = format!(
        "sources:
  in: {{ kind: kafka, topic: {input}, value-format: json }}
steps:
  - {{ name: by-user, kind: group-by, key: {{ field: user }} }}
  - name: per-window
    id: per-window
    kind: aggregate
    window: {{ tumbling: 10s }}
    emit: final
    aggregations: {{ n: count, total: {{ sum: amount }} }}
sinks:
  out: {{ kind: kafka, topic: {output}, key-format: string, value-format: json, from: per-window }}
"
    );
    let fixture = kafka::pipeline(&app, &Settings::default(), &body);
    let base = (kafka::now_ms() / WINDOW_MS) * WINDOW_MS;
    let start = |log: &str, state: &str| {
        let dir = fixture.path(state);
        kafka::WeirProcess::start_with(&fixture, log, &["--state-dir", dir.to_str().unwrap()])
    };
    let results = |want: usize, weir: &kafka::WeirProcess| {
        let mut seen: BTreeMap<(String, i64), Vec<(u64, u64)>> = BTreeMap::new();
        for r in weir.consume(&output, want, WAIT, SETTLE) {
            let key: serde_json::Value =
                serde_json::from_str(r.rec.key.as_deref().expect("a key")).unwrap();
            let start = key["start"].as_i64().unwrap();
            assert_eq!(key["end"].as_i64().unwrap(), start + WINDOW_MS, "{key}");
            let v = r.rec.json();
            seen.entry((key["key"].as_str().unwrap().to_string(), start))
                .or_default()
                .push((v["n"].as_u64().unwrap(), v["total"].as_u64().unwrap()));
        }
        seen
    };

    // 1. 35 records: the windows of seconds 0-9, 10-19 and 20-29 close
    // (stream time 34 s); 30-39 is open, with five records in it.
    kafka::produce(&input, &events(base, 0, 35));
    let weir = start("run1.log", "state-a");
    let want = closed_windows(base, 35);
    let seen = results(want.len(), &weir);
    for (window, values) in &seen {
        assert_eq!(
            values,
            &vec![want[window]],
            "{window:?}: {}",
            weir.log_text()
        );
    }
    assert_eq!(seen.len(), want.len());
    let configs = kafka::topic_configs(&changelog);
    assert!(
        configs.contains("cleanup.policy=compact,delete"),
        "{configs}"
    );
    assert!(configs.contains("retention.ms=86410000"), "{configs}");
    // 2. SIGKILL mid-window, once the work is committed.
    std::thread::sleep(Duration::from_secs(2));
    weir.kill();

    // 3. Restarted on an empty state directory: the open window comes back
    // from the changelog, with the stream time, and closes with all of its
    // records when later ones come.
    kafka::produce(&input, &events(base, 35, 60));
    let weir = start("run2.log", "state-b");
    let want = closed_windows(base, 60);
    let seen = results(want.len(), &weir);
    let log = weir.stop();
    assert!(log.contains("restored"), "{log}");
    for (window, expected) in &want {
        let got = seen.get(window).unwrap_or_else(|| {
            panic!("no final result for {window:?} (lost across the kill):\n{log}")
        });
        // At least once: a result emitted again after the kill is the same.
        assert!(
            got.iter().all(|v| v == expected),
            "{window:?}: {got:?}, expected {expected:?}"
        );
    }
    assert!(
        seen.keys().all(|w| want.contains_key(w)),
        "a result for a window still open: {seen:?}"
    );
}

/// A timestamp extractor plugin on a Kafka source: each order's time is
/// in its value (`at`, epoch milliseconds), while the Kafka timestamps say
/// the opposite order; orders without a time take their topic partition's
/// (`on-invalid: partition-time`). Final counts per 10-second window follow
/// the values' times.
#[test]
fn an_extractor_plugin_times_a_kafka_source_and_gives_timeless_records_the_partition_time() {
    let (input, output, app) = (
        kafka::unique("ext-in"),
        kafka::unique("ext-out"),
        kafka::unique("ext-app"),
    );
    let changelog = format!("{app}-per-window-changelog");
    let repartition = format!("{app}-per-window-repartition");
    let _cleanup = Cleanup::topics(&[&input, &output, &changelog, &repartition]);
    kafka::create_topic(&input, 1);
    kafka::create_topic(&output, 1);
    let plugin = weir_tests::plugin("order_time");
    let body = format!(
        "plugins:
  order-time: {{ path: '{}' }}
sources:
  in:
    kind: kafka
    topic: {input}
    value-format: json
    timestamp: {{ plugin: order-time, config: {{ fields: [at] }}, on-invalid: partition-time }}
steps:
  - {{ name: by-user, kind: group-by, key: {{ field: user }} }}
  - name: per-window
    id: per-window
    kind: aggregate
    window: {{ tumbling: 10s }}
    emit: final
    aggregations: {{ n: count }}
sinks:
  out: {{ kind: kafka, topic: {output}, key-format: json, value-format: json, from: per-window }}
",
        plugin.display()
    );
    let fixture = kafka::pipeline(&app, &Settings::default(), &body);
    let base = (kafka::now_ms() / WINDOW_MS) * WINDOW_MS;
    // Seconds 1, 2, (none: partition time 2), 5, 12, (none: 12), 13, 25:
    // window 0-9 holds 4, window 10-19 holds 3; 25 closes both.
    let times = [
        Some(1),
        Some(2),
        None,
        Some(5),
        Some(12),
        None,
        Some(13),
        Some(25),
    ];
    let records: Vec<Rec> = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let at = t.map_or(String::new(), |s| format!(r#","at":{}"#, base + s * 1000));
            let mut r = Rec::new(&format!("o{i}"), &format!(r#"{{"user":"u"{at}}}"#));
            // Kafka timestamps running backwards, a minute apart: windows
            // by them would hold one record each.
            r.timestamp = base - i as i64 * 60_000;
            r
        })
        .collect();
    kafka::produce(&input, &records);
    let weir = kafka::WeirProcess::start(&fixture, "run.log");
    let got: Vec<(i64, u64)> = weir
        .consume(&output, 2, WAIT, SETTLE)
        .iter()
        .map(|r| {
            let key: serde_json::Value =
                serde_json::from_str(r.rec.key.as_deref().expect("a key")).unwrap();
            (
                key["start"].as_i64().unwrap() - base,
                r.rec.json()["n"].as_u64().unwrap(),
            )
        })
        .collect();
    let log = weir.stop();
    assert_eq!(got, vec![(0, 4), (10_000, 3)], "{log}");
}

/// The keys of `reads`, decoded by Kafka Streams' own `WindowedSerdes`
/// (the oracle's `--windowed-keys`), as weir's JSON windowed keys.
fn decoded_by_kafka_streams(reads: &[kafka::Read], form: &str, size_ms: i64) -> Vec<String> {
    use std::io::Write;
    let oracle = weir_tests::repo().join("tests/oracle/run");
    let mut child = std::process::Command::new(oracle)
        .args(["--windowed-keys", form, &size_ms.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run the oracle");
    let mut stdin = child.stdin.take().unwrap();
    for r in reads {
        let key = r.raw_key.as_deref().expect("a key");
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(stdin, "{hex}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the oracle failed to decode the keys");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `windowed-key: kafka-streams`: a Java consumer reads the results' keys
/// with Kafka Streams' `WindowedSerdes` (time windows: key and start;
/// sessions: key, end and start), checked by decoding them with Kafka
/// Streams itself.
#[test]
fn windowed_keys_in_kafka_streams_form_decode_with_its_windowed_serdes() {
    let (input, app) = (kafka::unique("wk-in"), kafka::unique("wk-app"));
    let (time_out, session_out) = (kafka::unique("wk-time"), kafka::unique("wk-session"));
    let topics: Vec<String> = ["tumbling", "sessions"]
        .iter()
        .map(|id| format!("{app}-{id}-changelog"))
        .chain([
            format!("{app}-by-user-repartition"),
            input.clone(),
            time_out.clone(),
            session_out.clone(),
        ])
        .collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let _cleanup = Cleanup::topics(&names);
    kafka::create_topic(&input, 1);
    kafka::create_topic(&time_out, 1);
    kafka::create_topic(&session_out, 1);
    let body = format!(
        "sources:
  in: {{ kind: kafka, topic: {input}, value-format: json }}
steps:
  - {{ name: by-user, id: by-user, kind: group-by, key: {{ field: user }} }}
  - name: tumbling
    id: tumbling
    kind: aggregate
    window: {{ tumbling: 10s }}
    emit: final
    aggregations: {{ n: count }}
  - name: sessions
    id: sessions
    from: by-user
    kind: aggregate
    window: {{ session: 5s }}
    emit: final
    aggregations: {{ n: count }}
sinks:
  time-keys: {{ kind: kafka, topic: {time_out}, value-format: json, from: tumbling, windowed-key: kafka-streams }}
  session-keys: {{ kind: kafka, topic: {session_out}, value-format: json, from: sessions, windowed-key: kafka-streams }}
"
    );
    let fixture = kafka::pipeline(&app, &Settings::default(), &body);
    let base = (kafka::now_ms() / WINDOW_MS) * WINDOW_MS;
    // ann at 1 s and 3 s (one session [1 s, 3 s], window [0, 10 s)), then
    // 30 s closes both.
    let records: Vec<Rec> = [(1, "ann"), (3, "ann"), (30, "ann")]
        .iter()
        .map(|&(s, user)| {
            let mut r = Rec::new(user, &format!(r#"{{"user":"{user}"}}"#));
            r.timestamp = base + s * 1000;
            r
        })
        .collect();
    kafka::produce(&input, &records);
    let weir = kafka::WeirProcess::start(&fixture, "run.log");
    let time_keys = weir.consume(&time_out, 1, WAIT, SETTLE);
    let session_keys = weir.consume(&session_out, 1, WAIT, SETTLE);
    weir.stop();
    assert_eq!(
        decoded_by_kafka_streams(&time_keys, "time", WINDOW_MS),
        vec![format!(
            r#"{{"key":"ann","start":{base},"end":{}}}"#,
            base + WINDOW_MS
        )]
    );
    assert_eq!(
        decoded_by_kafka_streams(&session_keys, "session", 0),
        vec![format!(
            r#"{{"key":"ann","start":{},"end":{}}}"#,
            base + 1000,
            base + 3000
        )]
    );
}
