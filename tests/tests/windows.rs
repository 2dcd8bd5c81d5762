//! Windowed aggregations on the embedded runtime (issue 16): what the
//! differential suite (`oracle.rs`) does not show, that windows expire and
//! state stays flat over a long input, and what validation refuses.

use weir_tests::{Fixture, stderr, weir};

/// `keys` keys, one record each per second, over `seconds` seconds.
fn per_second(keys: usize, seconds: usize) -> String {
    let mut out = String::new();
    for s in 0..seconds {
        for k in 0..keys {
            let ts = 1_700_000_000_000i64 + (s * 1000 + k) as i64;
            out.push_str(&format!(
                "{{\"key\":\"k{k}\",\"value\":{{\"amount\":{s}}},\"timestamp\":{ts}}}\n"
            ));
        }
    }
    out
}

const WINDOWED: &str = "
partitions: 1
state: { dir: state }
sources:
  in: { kind: file, path: in.jsonl }
steps:
  - { name: by-key, kind: group-by }
  - name: per-second
    kind: aggregate
    id: per-second
    window: { tumbling: 1s }
    emit: final
    aggregations: { n: count, total: { sum: amount } }
sinks:
  out: { kind: file, path: out.jsonl }
";

/// The windows a run left in its store (`weir state dump`, one line each).
fn windows_kept(seconds: usize) -> (usize, usize) {
    let f = Fixture::new(WINDOWED, &[("in.jsonl", &per_second(50, seconds))]);
    let pipeline = f.pipeline_path();
    let pipeline = pipeline.to_str().unwrap();
    let out = weir(&["run", pipeline]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = std::fs::read_to_string(f.path("out.jsonl")).unwrap();
    let dump = weir(&["state", "dump", pipeline]);
    assert!(dump.status.success(), "{}", stderr(&dump));
    let kept = String::from_utf8_lossy(&dump.stdout).lines().count();
    (results.lines().count(), kept)
}

#[test]
fn windows_expire_a_segment_at_a_time_so_state_stays_flat() {
    // One-second windows kept for their size (no grace): segments of a
    // minute, so a store keeps at most about 61 windows per key, however
    // long the input. 300 and 900 windows per key (50 keys).
    let (results_300, kept_300) = windows_kept(300);
    let (results_900, kept_900) = windows_kept(900);
    // Every window but the last (still open) was emitted once.
    assert_eq!(results_300, 50 * 299);
    assert_eq!(results_900, 50 * 899);
    for kept in [kept_300, kept_900] {
        assert!(
            kept <= 50 * 61,
            "{kept} windows kept: more than a segment and a window per key"
        );
        assert!(kept >= 50, "{kept} windows kept: fewer than the open ones");
    }
    assert!(
        kept_900 <= kept_300 + 50 * 60,
        "state grew with the input: {kept_300} windows after 300 s, {kept_900} after 900 s"
    );
}

#[test]
fn validation_says_what_is_wrong_with_a_window() {
    let cases = [
        (
            "window: { hopping: 1m, advance: 2m }",
            "is longer than the window",
        ),
        ("window: { hopping: 1m }", "hopping windows need `advance`"),
        (
            "window: { tumbling: 1m, advance: 10s }",
            "take no `advance`",
        ),
        (
            "window: { tumbling: 1m, session: 5m }",
            "one of `tumbling`, `hopping`, `session` or `sliding`",
        ),
        ("window: { grace: 5m }", "needs its kind and size"),
        ("window: { tumbling: 0s }", "must be above zero"),
        (
            "window: { tumbling: 1m, grace: 1m, retention: 90s }",
            "shorter than the window and its grace",
        ),
        (
            "window: { tumbling: 1m, late: dead-letter }",
            "no `dead-letter` sink is named",
        ),
        ("emit: final", "this step has no `window`"),
    ];
    for (fields, said) in cases {
        let pipeline = format!(
            "
partitions: 1
sources:
  in: {{ kind: file, path: in.jsonl }}
steps:
  - {{ name: by-key, kind: group-by }}
  - name: counts
    kind: aggregate
    id: counts
    {fields}
    aggregations: {{ n: count }}
sinks:
  out: {{ kind: file, path: out.jsonl }}
"
        );
        let f = Fixture::new(&pipeline, &[("in.jsonl", "")]);
        let out = weir(&["validate", f.pipeline_path().to_str().unwrap()]);
        assert!(!out.status.success(), "{fields}: accepted");
        let text = stderr(&out);
        assert!(text.contains(said), "{fields}: {text}");
        assert!(
            text.contains("pipeline.yaml:"),
            "{fields}: no file and line: {text}"
        );
    }
}

/// `weir test` cases say which end of input applies (`case.yaml`'s
/// `end-of-input`, else the pipeline's) and may advance stream time with
/// no record (`advance-stream-time-to`), closing the windows it passes.
#[test]
fn weir_test_cases_choose_the_end_of_input_and_advance_stream_time() {
    let pipeline = "
partitions: 1
sources:
  in: { kind: file, path: in.jsonl }
steps:
  - { name: by-key, kind: group-by }
  - name: per-10s
    kind: aggregate
    id: per-10s
    window: { tumbling: 10s }
    emit: final
    aggregations: { n: count }
sinks:
  out: { kind: file, path: out.jsonl, key-format: json }
";
    let input = "{\"key\":\"a\",\"value\":{},\"timestamp\":1000}\n{\"key\":\"a\",\"value\":{},\"timestamp\":12000}\n{\"key\":\"a\",\"value\":{},\"timestamp\":25000}\n";
    let result = |start: i64, n: u64| {
        format!(
            "{{\"key\":{{\"key\":\"a\",\"start\":{start},\"end\":{}}},\"value\":{{\"n\":{n}}}}}\n",
            start + 10_000
        )
    };
    let two = result(0, 1) + &result(10_000, 1);
    let three = two.clone() + &result(20_000, 1);
    let cases: [(&str, Option<&str>, &str); 5] = [
        // The pipeline keeps the last window open, as Kafka Streams.
        ("as-the-pipeline-says", None, &two),
        ("closed", Some("end-of-input: close-windows\n"), &three),
        // Stream time 29.999 s: [20 s, 30 s) is still open.
        (
            "advanced-short",
            Some("advance-stream-time-to: 29999\n"),
            &two,
        ),
        (
            "advanced-past",
            Some("advance-stream-time-to: 1970-01-01T00:00:30Z\n"),
            &three,
        ),
        // What a case expects is what is checked: this one fails.
        ("expects-too-much", None, &three),
    ];
    let mut files: Vec<(String, String)> = vec![("in.jsonl".into(), String::new())];
    for (name, settings, expected) in &cases {
        files.push((format!("tests/{name}/input/in.jsonl"), input.to_string()));
        files.push((
            format!("tests/{name}/expected/out.jsonl"),
            expected.to_string(),
        ));
        if let Some(s) = settings {
            files.push((format!("tests/{name}/case.yaml"), s.to_string()));
        }
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let f = Fixture::new(pipeline, &files);
    let p = f.pipeline_path();
    let out = weir(&["test", p.to_str().unwrap()]);
    let said = weir_tests::stdout(&out) + &stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for (name, ..) in &cases[..4] {
        assert!(
            said.lines().any(|l| l.contains(name) && l.contains("ok")),
            "{name} should pass: {said}"
        );
    }
    assert!(
        said.lines()
            .any(|l| l.contains("expects-too-much") && l.contains("FAIL")),
        "{said}"
    );

    // A case file weir cannot read names itself.
    std::fs::write(
        f.path("tests/closed/case.yaml"),
        "end-of-input: close-everything\n",
    )
    .unwrap();
    let out = weir(&["test", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("case.yaml") && stderr(&out).contains("close-windows"),
        "{}",
        stderr(&out)
    );
}

/// `windowed-key: kafka-streams` is for Kafka sinks fed by windowed
/// aggregates of one form.
#[test]
fn validation_says_where_a_kafka_streams_windowed_key_cannot_be_written() {
    let base = "
name: wk
sources:
  in: { kind: kafka, topic: in, value-format: json }
steps:
  - { name: by-user, kind: group-by, key: { field: user } }
  - { name: per-minute, id: per-minute, kind: aggregate, window: { tumbling: 1m }, aggregations: { n: count } }
sinks:
  out: { kind: kafka, topic: out, from: per-minute, windowed-key: kafka-streams }
";
    let cases = [
        (
            base.replace("from: per-minute, windowed", "from: by-user, windowed"),
            "whose keys a step may change",
        ),
        (
            base.replace(
                "  out: { kind: kafka, topic: out,",
                "  out: { kind: file, path: out.jsonl,",
            ),
            "is for Kafka sinks",
        ),
        (
            base.replace("windowed-key: kafka-streams", "windowed-key: java"),
            "kafka-streams",
        ),
    ];
    for (text, want) in cases {
        let f = Fixture::new(&text, &[]);
        let p = f.pipeline_path();
        let out = weir(&["validate", p.to_str().unwrap()]);
        assert!(!out.status.success(), "validated: {text}");
        assert!(
            stderr(&out).contains(want),
            "want {want:?}: {}",
            stderr(&out)
        );
    }
    let f = Fixture::new(base, &[]);
    let p = f.pipeline_path();
    let out = weir(&["validate", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `n` records of a few keys with integer `n` fields, times a little out
/// of order with some far behind (late for some or all of their windows).
fn tally_input(records: usize) -> String {
    let mut out = String::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..records {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let behind = if x.is_multiple_of(23) {
            9_000
        } else {
            (x % 700) as i64
        };
        let ts = 1_000_000 + i as i64 * 150 - behind;
        out.push_str(&format!(
            "{{\"key\":\"k{}\",\"value\":{{\"n\":{}}},\"timestamp\":{ts}}}\n",
            x % 5,
            x % 100
        ));
    }
    out
}

/// Runs `window` over `input` folded by the `tally` plugin and by the
/// built-in `count` and `sum`, with `emit`, and checks that both give the
/// same results record for record and reject the same records.
fn plugin_folds_as_built_ins(window: &str, emit: &str, input: &str) {
    let pipeline = |fold: &str| {
        format!(
            "
partitions: 1
error-policy: dead-letter
dead-letter: rejected
plugins:
  tally: {{ path: '{{plugin:tally}}' }}
sources:
  in: {{ kind: file, path: in.jsonl }}
steps:
  - {{ name: by-key, kind: group-by }}
  - name: windows
    kind: aggregate
    id: windows
    window: {window}
    emit: {emit}
{fold}
sinks:
  out: {{ kind: file, path: out.jsonl }}
  rejected: {{ kind: file, path: rejected.jsonl }}
"
        )
    };
    let run = |fold: &str| {
        let f = Fixture::new(&pipeline(fold), &[("in.jsonl", input)]);
        let p = f.pipeline_path();
        let out = weir(&["run", p.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let read = |name: &str| std::fs::read_to_string(f.path(name)).unwrap_or_default();
        (read("out.jsonl"), read("rejected.jsonl"), stderr(&out))
    };
    let (plugin, plugin_late, plugin_said) = run("    plugin: tally");
    let (builtin, builtin_late, _) = run("    aggregations: { n: count, sum: { sum: n } }");
    let label = format!("{window}, emit {emit}");
    assert!(plugin.lines().count() > 100, "{label}: {plugin_said}");
    if plugin.lines().count() != builtin.lines().count() {
        let p: std::collections::BTreeSet<&str> = plugin.lines().collect();
        let b: std::collections::BTreeSet<&str> = builtin.lines().collect();
        let only_p: Vec<_> = p.difference(&b).take(5).collect();
        let only_b: Vec<_> = b.difference(&p).take(5).collect();
        panic!("{label}: only the plugin's: {only_p:#?}\nonly the built-in's: {only_b:#?}");
    }
    for (i, (p, b)) in plugin.lines().zip(builtin.lines()).enumerate() {
        let (p, b): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(p).unwrap(),
            serde_json::from_str(b).unwrap(),
        );
        assert_eq!(p, b, "{label}: result {i}");
    }
    // The same records rejected (the reasons differ: a record the
    // built-in `sum` cannot add is one the plugin refuses).
    let rejected = |lines: &str| -> Vec<(String, serde_json::Value)> {
        lines
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let kind = v["headers"]["weir.error.kind"].as_str().unwrap_or("?");
                let kind = if kind == "late" { "late" } else { "failed" };
                (kind.to_string(), v["value"].clone())
            })
            .collect()
    };
    assert_eq!(
        rejected(&plugin_late),
        rejected(&builtin_late),
        "{label}: rejected records"
    );
    assert!(plugin_said.contains("late"), "{label}: {plugin_said}");
}

/// The same windows folded by an aggregator plugin (`tally`: a count and
/// a sum as `{"n", "sum"}`) and by the built-in `count` and `sum` (which
/// the differential suite holds to Kafka Streams) give the same results,
/// record for record: tumbling and hopping windows, every update or the
/// final ones, with records late for some or all of their windows.
#[test]
fn a_plugin_folds_time_windows_as_the_built_in_aggregations_do() {
    let input = tally_input(3000);
    for window in [
        "{ tumbling: 2s, grace: 500ms, late: dead-letter }",
        "{ hopping: 3s, advance: 1s, grace: 200ms, late: dead-letter, end-of-input: close-windows }",
    ] {
        for emit in ["changes", "final"] {
            plugin_folds_as_built_ins(window, emit, &input);
        }
    }
}

/// `input` with every 13th record's `n` replaced by text: a value the
/// built-in `sum` cannot add and the `tally` plugin refuses as poison.
fn poisoned(input: &str) -> String {
    let mut poisoned = String::new();
    for (i, line) in input.lines().enumerate() {
        if i % 13 == 5 {
            let at = line.find("\"n\":").unwrap() + 4;
            let end = at + line[at..].find('}').unwrap();
            poisoned.push_str(&format!("{}\"x\"{}\n", &line[..at], &line[end..]));
        } else {
            poisoned.push_str(line);
            poisoned.push('\n');
        }
    }
    poisoned
}

/// Session windows folded by the `tally` plugin (its `add`, and its
/// `merge` when a record bridges sessions) give what the built-in `count`
/// and `sum` give, record for record: sessions that merge, late records,
/// both emit policies; and with records neither can fold (a value the
/// built-in `sum` cannot add, which the plugin refuses as poison), which
/// fail alone and change nothing, in the middle of sessions that grow
/// and merge around them.
#[test]
fn a_plugin_folds_sessions_as_the_built_in_aggregations_do() {
    let input = tally_input(3000);
    let poisoned = poisoned(&input);
    for window in [
        "{ session: 400ms, grace: 300ms, late: dead-letter }",
        "{ session: 1s, grace: 1s, late: dead-letter, end-of-input: close-windows }",
    ] {
        for emit in ["changes", "final"] {
            plugin_folds_as_built_ins(window, emit, &input);
            plugin_folds_as_built_ins(window, emit, &poisoned);
        }
    }
}

/// Sliding windows folded by the `tally` plugin give what the built-in
/// `count` and `sum` give, record for record: windows made where records
/// are, left windows that start from the window before, right windows
/// copied from the records after (out-of-order records), late records,
/// both emit policies; and with records neither can fold, which fail
/// alone and change none of their windows.
#[test]
fn a_plugin_folds_sliding_windows_as_the_built_in_aggregations_do() {
    let input = tally_input(3000);
    let poisoned = poisoned(&input);
    for window in [
        "{ sliding: 400ms, grace: 300ms, late: dead-letter }",
        "{ sliding: 1s, grace: 1s, late: dead-letter, end-of-input: close-windows }",
    ] {
        for emit in ["changes", "final"] {
            plugin_folds_as_built_ins(window, emit, &input);
            plugin_folds_as_built_ins(window, emit, &poisoned);
        }
    }
}

/// `max-pending` bounds the windows awaiting their final result in a
/// task: one more stops the run with the count and the bound (Kafka
/// Streams' suppression buffer with `shutDownWhenFull`); under it the run
/// is as without it. Time windows count the windows not yet emitted,
/// sessions and sliding windows their pending index.
#[test]
fn max_pending_stops_a_run_whose_windows_await_more_results_than_it_allows() {
    // 40 keys, one record each per second for 10 s: with 1 s windows and
    // 5 s of grace, about 6 windows per key are open at a time (240).
    let input = per_second(40, 10);
    for (window, enough) in [
        ("tumbling: 1s, grace: 5s", 300),
        ("session: 500ms, grace: 5s", 300),
        ("sliding: 500ms, grace: 5s", 600),
    ] {
        let run = |max: u64| {
            let pipeline = WINDOWED.replace(
                "window: { tumbling: 1s }",
                &format!("window: {{ {window}, max-pending: {max} }}"),
            );
            assert!(pipeline.contains("max-pending"), "{pipeline}");
            let f = Fixture::new(&pipeline, &[("in.jsonl", &input)]);
            let p = f.pipeline_path();
            let out = weir(&["run", p.to_str().unwrap()]);
            let results = std::fs::read_to_string(f.path("out.jsonl")).unwrap_or_default();
            (out, results.lines().count())
        };
        let (out, results) = run(enough);
        assert!(out.status.success(), "{window}: {}", stderr(&out));
        assert!(results > 0, "{window}");
        let (out, _) = run(100);
        assert!(!out.status.success(), "{window}: ran with max-pending: 100");
        let said = stderr(&out);
        assert!(
            said.contains(
                "await their final result in this task, more than `max-pending: 100` allows"
            ),
            "{window}: {said}"
        );
    }
    // Only for `emit: final`.
    let pipeline = WINDOWED
        .replace(
            "window: { tumbling: 1s }",
            "window: { tumbling: 1s, max-pending: 10 }",
        )
        .replace("emit: final", "emit: changes");
    let f = Fixture::new(&pipeline, &[("in.jsonl", "")]);
    let p = f.pipeline_path();
    let out = weir(&["validate", p.to_str().unwrap()]);
    assert!(
        !out.status.success() && stderr(&out).contains("say `emit: final`"),
        "{}",
        stderr(&out)
    );
}

/// In session windows over a plugin, a record the plugin traps on fails
/// alone and changes nothing (the sessions after it are planned again
/// without it); an accumulator the plugin removes deletes its session
/// (tombstones for the sessions it merged and for itself), and the next
/// record of the key starts afresh; sessions merge through the plugin's
/// `merge`.
#[test]
fn sessions_over_a_plugin_survive_a_trap_and_a_removed_accumulator() {
    let (got, rejected, said) = misbehaving_windows(
        "{ session: 500ms, grace: 10s }",
        &[
            ("1", 1000),
            ("2", 1200),
            ("panic", 1100),
            ("remove", 1300),
            ("3", 1400),
            ("4", 1250),
        ],
    );
    assert_eq!(
        got,
        [
            r#"[1000,1000] {"count":1,"sum":1}"#,
            r#"[1000,1000] null"#,
            r#"[1000,1200] {"count":2,"sum":3}"#,
            // The trap at 1100 changed nothing; `remove` at 1300 removes
            // the session it would have grown.
            r#"[1000,1200] null"#,
            r#"[1000,1300] null"#,
            r#"[1400,1400] {"count":1,"sum":3}"#,
            r#"[1400,1400] null"#,
            r#"[1250,1400] {"count":2,"sum":7}"#,
        ]
    );
    assert_eq!(rejected.lines().count(), 1, "{rejected}");
    assert!(
        rejected.contains("\"weir.error.kind\":\"trap\"") && rejected.contains("\"panic\""),
        "{rejected}"
    );
    assert!(!said.contains("0 instance restarts"), "{said}");
}

/// In sliding windows over a plugin, a record the plugin traps on fails
/// alone and changes none of its windows; accumulators the plugin removes
/// delete their windows (tombstones), and the windows planned after them
/// are planned again without them.
#[test]
fn sliding_windows_over_a_plugin_survive_a_trap_and_removed_accumulators() {
    let (got, rejected, _) = misbehaving_windows(
        "{ sliding: 500ms, grace: 10s }",
        &[
            ("1", 1000),
            ("2", 1200),
            ("panic", 1100),
            ("3", 1300),
            ("remove", 1150),
            ("4", 1400),
        ],
    );
    assert_eq!(
        got,
        [
            r#"[500,1000] {"count":1,"sum":1}"#,
            // 1200: the right window of 1000, then its own left window
            // (from the window before it).
            r#"[1001,1501] {"count":1,"sum":2}"#,
            r#"[700,1200] {"count":2,"sum":3}"#,
            // The trap at 1100 changed nothing.
            r#"[1001,1501] {"count":2,"sum":5}"#,
            r#"[1201,1701] {"count":1,"sum":3}"#,
            r#"[800,1300] {"count":3,"sum":6}"#,
            // 1150 removes every window it falls in, and its left window;
            // its right window copies [1001,1501] as it was before it.
            r#"[1001,1501] null"#,
            r#"[800,1300] null"#,
            r#"[700,1200] null"#,
            r#"[650,1150] null"#,
            r#"[1151,1651] {"count":2,"sum":5}"#,
            // 1400 finds what is left.
            r#"[1201,1701] {"count":2,"sum":7}"#,
            r#"[1151,1651] {"count":3,"sum":9}"#,
            r#"[1001,1501] {"count":1,"sum":4}"#,
            r#"[900,1400] {"count":2,"sum":5}"#,
        ]
    );
    assert_eq!(rejected.lines().count(), 1, "{rejected}");
}

/// Runs key `a`'s `records` (value, timestamp) through `window` folded by
/// the `agg-misbehave` plugin: each result as `[START,END] VALUE`, the
/// dead-lettered records, and what the run said.
fn misbehaving_windows(window: &str, records: &[(&str, i64)]) -> (Vec<String>, String, String) {
    let input: String = records
        .iter()
        .map(|(v, ts)| format!("{{\"key\":\"a\",\"value\":\"{v}\",\"timestamp\":{ts}}}\n"))
        .collect();
    let f = Fixture::new(
        &format!(
            "
partitions: 1
error-policy: dead-letter
dead-letter: rejected
plugins:
  bad: {{ path: '{{plugin:agg_misbehave}}' }}
sources:
  in: {{ kind: file, path: in.jsonl, value-format: string }}
steps:
  - {{ name: by-key, kind: group-by }}
  - name: windows
    kind: aggregate
    id: windows
    plugin: bad
    window: {window}
sinks:
  out: {{ kind: file, path: out.jsonl, key-format: json, value-format: json }}
  rejected: {{ kind: file, path: rejected.jsonl }}
"
        ),
        &[("in.jsonl", &input)],
    );
    let p = f.pipeline_path();
    let out = weir(&["run", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<String> = std::fs::read_to_string(f.path("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("[{},{}] {}", v["key"]["start"], v["key"]["end"], v["value"])
        })
        .collect();
    let rejected = std::fs::read_to_string(f.path("rejected.jsonl")).unwrap_or_default();
    (got, rejected, stderr(&out))
}

/// A plugin that traps on a record in hopping windows fails that record
/// once (to the error policy, kind `trap`), whichever of its windows found
/// it out; every window goes on from its last good accumulator, and the
/// instance is replaced.
#[test]
fn a_trapping_plugin_in_hopping_windows_fails_only_its_record_once() {
    let f = Fixture::new(
        "
partitions: 1
error-policy: dead-letter
dead-letter: rejected
plugins:
  bad: { path: '{plugin:agg_misbehave}' }
sources:
  in: { kind: file, path: in.jsonl, value-format: string }
steps:
  - { name: by-key, kind: group-by }
  - name: windows
    kind: aggregate
    id: windows
    plugin: bad
    window: { hopping: 2s, advance: 1s }
sinks:
  out: { kind: file, path: out.jsonl, key-format: json, value-format: json }
  rejected: { kind: file, path: rejected.jsonl }
",
        &[(
            "in.jsonl",
            "{\"key\":\"a\",\"value\":\"1\",\"timestamp\":1100}\n\
             {\"key\":\"a\",\"value\":\"2\",\"timestamp\":1200}\n\
             {\"key\":\"a\",\"value\":\"panic\",\"timestamp\":1300}\n\
             {\"key\":\"a\",\"value\":\"3\",\"timestamp\":1400}\n",
        )],
    );
    let p = f.pipeline_path();
    let out = weir(&["run", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<(i64, serde_json::Value)> = std::fs::read_to_string(f.path("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["key"]["start"].as_i64().unwrap(), v["value"].clone())
        })
        .collect();
    let tally = |count: u64, sum: i64| serde_json::json!({ "count": count, "sum": sum });
    assert_eq!(
        got,
        vec![
            (0, tally(1, 1)),
            (1000, tally(1, 1)),
            (0, tally(2, 3)),
            (1000, tally(2, 3)),
            (0, tally(3, 6)),
            (1000, tally(3, 6)),
        ]
    );
    let rejected = std::fs::read_to_string(f.path("rejected.jsonl")).unwrap();
    assert_eq!(rejected.lines().count(), 1, "{rejected}");
    assert!(
        rejected.contains("\"weir.error.kind\":\"trap\""),
        "{rejected}"
    );
    assert!(
        !stderr(&out).contains("0 instance restarts"),
        "{}",
        stderr(&out)
    );
}
