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
