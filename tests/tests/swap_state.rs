//! Issue 14, item 5 (embedded): hot swaps of an aggregate step keep its
//! stored accumulators, while records flow. The `tally` plugins count and
//! sum each key's `n`: version 1 stores `{"n", "sum"}`, `tally-v2` stores
//! `{"count", "total", "v": 2}` (upgrading from 1, downgrading to 1),
//! `tally-v3` stores `{"count", "total", "v": 3}` (upgrading from 1, no
//! downgrade).
//!
//! Every test checks the one thing a lost or doubled state would break:
//! the j-th result of a key counts exactly the key's first j records that
//! were not dead-lettered, and sums their `n`, whichever versions wrote
//! it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use weir::{RefusedAt, Rollback, SwapError, SwapOptions, TrialOutcome};
use weir_tests::live::{Feeder, Live, settle, wait_for_trial, wait_until};
use weir_tests::{plugin, weir};

const PIPELINE: &str = "\
partitions: 2
state: { dir: state }                # the fixture's own, not the default one other tests share
error-policy: dead-letter
dead-letter: rejected
sources:
  in: { kind: file, path: in.fifo }
plugins:
  tally: { path: '{plugin:tally}' }
steps:
  - { name: by-key, kind: group-by }
  - { name: totals, id: totals, kind: aggregate, plugin: tally }
sinks:
  out: { kind: stdout }
  rejected: { kind: file, path: rejected.jsonl }
";

fn component(name: &str) -> Vec<u8> {
    std::fs::read(plugin(name)).expect("a built plugin")
}

/// A result's count and sum, whichever version wrote it, and its state
/// version (1 has no `v`).
fn tally(value: &Value) -> (u64, u64, u64) {
    match value.get("v") {
        Some(v) => (
            value["count"].as_u64().expect("count"),
            value["total"].as_u64().expect("total"),
            v.as_u64().expect("v"),
        ),
        None => (
            value["n"].as_u64().expect("n"),
            value["sum"].as_u64().expect("sum"),
            1,
        ),
    }
}

/// Checks every key's results against its records that were not
/// dead-lettered, in order (see the file's comment); returns the state
/// versions each key's results went through, in order, without repeats.
fn check_totals(outputs: &[Value], rejected: &[Value], fed: usize) -> BTreeMap<String, Vec<u64>> {
    check_keyed_totals(outputs, rejected, fed, |n| format!("k{}", n % 16))
}

/// As [`check_totals`], record `n` keyed `key_of(n)`.
fn check_keyed_totals(
    outputs: &[Value],
    rejected: &[Value],
    fed: usize,
    key_of: impl Fn(u64) -> String,
) -> BTreeMap<String, Vec<u64>> {
    let dead: BTreeSet<u64> = rejected
        .iter()
        .map(|r| r["value"]["n"].as_u64().expect("n"))
        .collect();
    let mut expected: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for n in (0..fed as u64).filter(|n| !dead.contains(n)) {
        let runs = expected.entry(key_of(n)).or_default();
        let (count, sum) = runs.last().copied().unwrap_or((0, 0));
        runs.push((count + 1, sum + n));
    }
    let mut got: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for o in outputs {
        let key = o["key"].as_str().expect("key").to_string();
        let (count, sum, v) = tally(&o["value"]);
        got.entry(key.clone()).or_default().push((count, sum));
        let seen = versions.entry(key).or_default();
        if seen.last() != Some(&v) {
            seen.push(v);
        }
    }
    assert_eq!(got, expected, "every key's totals, in order");
    versions
}

#[test]
fn swaps_to_the_same_state_version_and_to_one_that_upgrades_keep_every_total_under_load() {
    let live = Live::of(PIPELINE);
    live.feed(200);
    settle(&live);
    let feeder = Feeder::start(&live);
    // Same component, another config: the same state version, used as is.
    let same = live
        .control
        .swap(
            "totals",
            None,
            Some(json!({ "poison-every": 1_000_000_000 })),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(same.version, 2);
    let at = live.outputs().len();
    wait_until("records flow on version 2", || {
        live.outputs().len() > at + 100
    });
    // Version 3 stores another shape and upgrades each key's accumulator
    // when it is next read.
    let upgraded = live
        .control
        .swap("totals", Some(component("tally-v2")), Some(Value::Null))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(upgraded.version, 3);
    let states: Vec<Option<u32>> = live.control.status()[1]
        .versions
        .iter()
        .map(|v| v.state_version)
        .collect();
    assert_eq!(states, [Some(1), Some(1), Some(2)]);
    let at = live.outputs().len();
    wait_until("records flow on version 3", || {
        live.outputs().len() > at + 200
    });
    drop(feeder);
    live.feed(50);
    settle(&live);
    let fed = live.fed.load(std::sync::atomic::Ordering::SeqCst);
    let (outputs, rejected) = live.finish_all();
    assert!(rejected.is_empty(), "{rejected:?}");
    let versions = check_totals(&outputs, &rejected, fed);
    assert_eq!(versions.len(), 16);
    for (key, v) in &versions {
        assert_eq!(v, &[1, 2], "key {key}: version 1 results, then version 2's");
    }
}

#[test]
fn keys_are_upgraded_when_next_read_and_a_swap_that_cannot_read_the_store_is_refused() {
    let live = Live::of(PIPELINE);
    live.feed(160);
    settle(&live);
    live.control
        .swap("totals", Some(component("tally-v3")), None)
        .unwrap_or_else(|e| panic!("{e}"));
    // Only k3 is read after the swap: the other keys keep version 1.
    live.feed_key("k3", 5);
    settle(&live);
    // Back to version 1, which cannot read version 3's accumulators, and
    // version 3 has no downgrade: refused.
    let refused = live
        .control
        .swap("totals", Some(component("tally")), None)
        .unwrap_err();
    let SwapError::Refused { stage, reason, .. } = &refused else {
        panic!("{refused:?}");
    };
    assert_eq!(*stage, RefusedAt::State);
    assert!(
        reason.contains("may hold accumulators of state version 3")
            && reason.contains("reads state version 1"),
        "{reason}"
    );
    // Nor can a rollback trial be asked of an aggregate under `fail` (not
    // this pipeline's policy, so this one is taken): see the next tests.
    assert_eq!(live.control.status()[1].versions.len(), 2);
    let (outputs, rejected, fixture) = live.finish_keeping();
    let key_of = |n: u64| format!("k{}", if n < 160 { n % 16 } else { 3 });
    check_keyed_totals(&outputs, &rejected, 165, key_of);
    // `weir state dump` shows each key's state version.
    let pipeline = fixture.pipeline_path().display().to_string();
    let dump = weir(&["state", "dump", &pipeline]);
    assert!(dump.status.success(), "{dump:?}");
    let text = String::from_utf8(dump.stdout).unwrap();
    let mut by_key: BTreeMap<String, u64> = BTreeMap::new();
    for l in text.lines() {
        let entry: Value = serde_json::from_str(l).unwrap();
        by_key.insert(
            entry["key"].as_str().unwrap().to_string(),
            entry["state_version"].as_u64().expect("state_version"),
        );
    }
    assert_eq!(by_key.len(), 16, "{text}");
    for (key, version) in &by_key {
        let expected = if key == "k3" { 3 } else { 1 };
        assert_eq!(*version, expected, "key {key}: {text}");
    }
    let k3: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["key"] == "k3")
        .collect();
    // k3's ten records before the swap and five after: n = 3, 19, ..., 147,
    // then 160..164.
    let sum: u64 = (0..10).map(|t| 3 + 16 * t).sum::<u64>() + (160..165).sum::<u64>();
    assert_eq!(k3[0]["value"], json!({"count": 15, "total": sum, "v": 3}));
}

#[test]
fn a_swap_back_to_older_code_converts_the_state_back_through_the_newer_codes_downgrade() {
    let live = Live::of(PIPELINE);
    live.feed(160);
    settle(&live);
    let feeder = Feeder::start(&live);
    live.control
        .swap("totals", Some(component("tally-v2")), None)
        .unwrap_or_else(|e| panic!("{e}"));
    let at = live.outputs().len();
    wait_until("records flow on version 2", || {
        live.outputs().len() > at + 100
    });
    // Version 1 cannot read version 2's accumulators, but version 2
    // downgrades them: every task converts its store back at the cutover.
    let report = live
        .control
        .swap("totals", Some(component("tally")), None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.version, 3);
    let at = live.outputs().len();
    wait_until("records flow on version 3", || {
        live.outputs().len() > at + 100
    });
    drop(feeder);
    live.feed(20);
    settle(&live);
    let fed = live.fed.load(std::sync::atomic::Ordering::SeqCst);
    let (outputs, rejected, fixture) = live.finish_keeping();
    let versions = check_totals(&outputs, &rejected, fed);
    assert!(versions.values().all(|v| v == &[1, 2, 1]), "{versions:?}");
    let pipeline = fixture.pipeline_path().display().to_string();
    let dump = weir(&["state", "dump", &pipeline]);
    let text = String::from_utf8(dump.stdout).unwrap();
    assert_eq!(text.lines().count(), 16, "{text}");
    assert!(
        text.lines().all(|l| l.contains("\"state_version\":1")),
        "{text}"
    );
}

/// Swaps `totals` to `component`, poisoning every third record, on a trial
/// of 30 records that allows 10% of them to fail: it is rolled back.
fn failing_trial(live: &Live, component_name: &str) -> weir::SwapReport {
    live.control
        .swap_with(
            "totals",
            Some(component(component_name)),
            Some(json!({ "poison-every": 3 })),
            SwapOptions {
                rollback: Some(Rollback {
                    records: 30,
                    max_failure_rate: 0.1,
                }),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What a rollback trial of an aggregate swap came to.
struct Trial {
    outcome: TrialOutcome,
    status: Vec<weir::StepStatus>,
    rejected: Vec<Value>,
    /// Per key, the state versions of its totals, in order (their counts
    /// and sums checked, see [`check_totals`]).
    versions: BTreeMap<String, Vec<u64>>,
}

/// Runs `tally` over 200 records, then, while records flow, swaps it to
/// `component_name` on a [`failing_trial`], and goes on until 200 more
/// records came out after the trial ended.
fn failing_trial_run(component_name: &str) -> Trial {
    failing_trial_run_of(PIPELINE, component_name)
}

/// As [`failing_trial_run`], over `pipeline` (windowed results are keyed
/// by their record key, see [`unwindowed`]).
fn failing_trial_run_of(pipeline: &str, component_name: &str) -> Trial {
    let live = Live::of(pipeline);
    live.feed(200);
    settle(&live);
    let feeder = Feeder::start(&live);
    failing_trial(&live, component_name);
    let outcome = wait_for_trial(&live, 1, 2);
    let at = live.outputs().len();
    wait_until("records flow after the trial", || {
        live.outputs().len() > at + 200
    });
    drop(feeder);
    live.feed(50);
    settle(&live);
    let status = live.control.status();
    let fed = live.fed.load(std::sync::atomic::Ordering::SeqCst);
    let (outputs, rejected) = live.finish_all();
    let outputs = match pipeline.contains("window:") {
        true => unwindowed(&outputs, window_of(pipeline)),
        false => outputs,
    };
    let versions = check_totals(&outputs, &rejected, fed);
    Trial {
        outcome,
        status,
        rejected,
        versions,
    }
}

#[test]
fn a_version_that_downgrades_is_rolled_back_after_it_wrote_state_and_the_totals_carry_on() {
    rolled_back_and_carried_on(failing_trial_run("tally-v2"));
}

/// Checks that `trial` was rolled back after its version failed records,
/// and that every key's totals went on in version 1's shape, some through
/// version 2's (converted back by its downgrade).
fn rolled_back_and_carried_on(trial: Trial) {
    let Trial {
        outcome,
        status,
        rejected,
        versions,
    } = trial;
    assert!(
        matches!(&outcome, TrialOutcome::RolledBack { .. }),
        "{outcome:?}"
    );
    let tried = &status[1].versions[1];
    assert!(tried.failures > 0 && tried.records > 0, "{tried:?}");
    assert_eq!(rejected.len() as u64, tried.failures);
    // Every key ends on version 1's shape; the keys version 2 wrote were
    // converted back, and went on counting from there.
    assert!(
        versions.values().all(|v| v.last() == Some(&1)),
        "{versions:?}"
    );
    assert!(
        versions.values().any(|v| v == &[1, 2, 1]),
        "version 2 wrote some keys on trial: {versions:?}"
    );
}

#[test]
fn a_version_without_a_downgrade_that_wrote_state_is_not_rolled_back_and_says_why() {
    let Trial {
        outcome,
        status,
        rejected,
        versions,
    } = failing_trial_run("tally-v3");
    let TrialOutcome::RollbackRefused { reason } = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        reason.contains("version 2 already wrote accumulators the previous version cannot read")
            && reason.contains("exports no downgrade to 1"),
        "{reason}"
    );
    // Version 2 stays: no rollback version was made.
    assert_eq!(status[1].versions.len(), 2, "{:?}", status[1].versions);
    assert!(versions.values().all(|v| v == &[1, 3]), "{versions:?}");
    // Its poisoned records were dead-lettered, each once.
    assert_eq!(rejected.len() as u64, status[1].versions[1].failures);
}

#[test]
fn an_aggregate_under_fail_cannot_be_put_on_trial() {
    let live = Live::of(&PIPELINE.replace("error-policy: dead-letter", "error-policy: fail"));
    live.feed(20);
    settle(&live);
    let refused = failing_trial_result(&live);
    let SwapError::InvalidOptions { reason, .. } = &refused else {
        panic!("{refused:?}");
    };
    assert!(reason.contains("cannot be put on trial"), "{reason}");
    live.feed(20);
    settle(&live);
    let (outputs, rejected) = live.finish_all();
    check_totals(&outputs, &rejected, 40);
}

fn failing_trial_result(live: &Live) -> SwapError {
    live.control
        .swap_with(
            "totals",
            Some(component("tally-v2")),
            None,
            SwapOptions {
                rollback: Some(Rollback {
                    records: 30,
                    max_failure_rate: 0.0,
                }),
            },
        )
        .unwrap_err()
}

#[test]
fn an_aggregator_without_versions_runs_at_state_version_1_and_a_failed_upgrade_keeps_the_stored_state()
 {
    // `plain-counter` exports `aggregate` alone (world `aggregator`), as
    // components built before `accumulator-versions` do: its count, `2`,
    // is stored at state version 1.
    let live = Live::of(&PIPELINE.replace("{plugin:tally}", "{plugin:plain-counter}"));
    live.feed(32);
    settle(&live);
    let status = live.control.status();
    assert_eq!(status[1].versions[0].state_version, Some(1));
    // tally-v2 upgrades from 1, but a count is no `{"n", "sum"}`: each
    // key's record fails (poison, dead-lettered) and its count stays.
    live.control
        .swap("totals", Some(component("tally-v2")), None)
        .unwrap_or_else(|e| panic!("{e}"));
    live.feed(16);
    settle(&live);
    assert_eq!(live.rejected().len(), 16);
    for r in live.rejected() {
        let reason = r["headers"]["weir.error.reason"]
            .as_str()
            .unwrap_or_default();
        assert!(
            reason.contains(
                "upgrading the key's stored accumulator from state version 1: not a version 1 tally"
            ),
            "{r}"
        );
        assert_eq!(r["headers"]["weir.error.kind"], "poison", "{r}");
    }
    // Back to the plain counter (tally-v2 downgrades to 1, and wrote
    // nothing): every key counts on from 2.
    live.control
        .swap("totals", Some(component("plain-counter")), None)
        .unwrap_or_else(|e| panic!("{e}"));
    live.feed(16);
    settle(&live);
    let (outputs, rejected) = live.finish_all();
    assert_eq!(rejected.len(), 16);
    let last: BTreeMap<String, Value> = outputs
        .iter()
        .map(|o| (o["key"].as_str().unwrap().to_string(), o["value"].clone()))
        .collect();
    assert_eq!(last.len(), 16);
    assert!(last.values().all(|v| v == &json!(3)), "{last:?}");
}

/// [`PIPELINE`] with its aggregate over `window`s. Every record is at
/// time 1000, so each key has one window ([`window_of`]), and its results
/// are the key's running totals, as without windows.
fn windowed_pipeline(window: &str) -> String {
    let pipeline = PIPELINE.replace(
        "  - { name: totals, id: totals, kind: aggregate, plugin: tally }",
        &format!(
            "  - {{ name: totals, id: totals, kind: aggregate, plugin: tally, window: {window} }}"
        ),
    );
    assert!(pipeline.contains("window:"));
    pipeline
}

/// The one window of each key in [`windowed_pipeline`]: `[0, 60000)` of
/// one-minute tumbling windows, `[0, 60000]` of sliding windows of a
/// minute (a record before the time difference is in the window at the
/// epoch), `[1000, 1000]` of sessions.
fn window_of(pipeline: &str) -> (i64, i64) {
    match pipeline.contains("session") {
        true => (1000, 1000),
        false => (0, 60000),
    }
}

/// Windowed results keyed by their record key, each checked to be of the
/// window `bounds`.
fn unwindowed(outputs: &[Value], bounds: (i64, i64)) -> Vec<Value> {
    outputs
        .iter()
        .map(|o| {
            let windowed: Value = match &o["key"] {
                Value::String(text) => serde_json::from_str(text).expect("a windowed key"),
                key => key.clone(),
            };
            assert_eq!(
                (&windowed["start"], &windowed["end"]),
                (&json!(bounds.0), &json!(bounds.1))
            );
            json!({ "key": windowed["key"], "value": o["value"] })
        })
        .collect()
}

/// The plugin of a windowed aggregate swaps while records flow: to code
/// of the same state version (another config), to code that upgrades its
/// windows' accumulators (every window converted before its first
/// batch), and back to code that reads only the older version (every
/// window converted back by the newer code's downgrade at the cutover);
/// every window's totals carry on through all three, in time, session
/// and sliding windows.
#[test]
fn a_windowed_plugin_step_swaps_across_state_versions_and_its_windows_carry_on() {
    for window in ["{ tumbling: 1m }", "{ session: 1m }", "{ sliding: 1m }"] {
        swaps_across_state_versions(&windowed_pipeline(window));
    }
}

fn swaps_across_state_versions(pipeline: &str) {
    let live = Live::of(pipeline);
    live.feed(200);
    settle(&live);
    let feeder = Feeder::start(&live);
    let swap = |component_name: Option<&str>, config: Value| {
        let report = live
            .control
            .swap("totals", component_name.map(component), Some(config))
            .unwrap_or_else(|e| panic!("{e}"));
        let at = live.outputs().len();
        wait_until("records flow on the new version", || {
            live.outputs().len() > at + 100
        });
        report.version
    };
    assert_eq!(swap(None, json!({ "poison-every": 1_000_000_000 })), 2);
    assert_eq!(swap(Some("tally-v2"), Value::Null), 3);
    assert_eq!(swap(Some("tally"), Value::Null), 4);
    drop(feeder);
    live.feed(20);
    settle(&live);
    let fed = live.fed.load(std::sync::atomic::Ordering::SeqCst);
    let (outputs, rejected) = live.finish_all();
    assert!(rejected.is_empty(), "{rejected:?}");
    let versions = check_totals(&unwindowed(&outputs, window_of(pipeline)), &rejected, fed);
    assert_eq!(versions.len(), 16);
    assert!(
        versions.values().all(|v| v == &[1, 2, 1]),
        "{pipeline}: {versions:?}"
    );
}

/// A failing trial of a windowed plugin step that upgraded every window
/// is rolled back: its downgrade converts them back, and the totals carry
/// on from there.
#[test]
fn a_windowed_plugin_steps_failing_trial_is_rolled_back_and_its_windows_converted_back() {
    rolled_back_and_carried_on(failing_trial_run_of(
        &windowed_pipeline("{ session: 1m }"),
        "tally-v2",
    ));
}
