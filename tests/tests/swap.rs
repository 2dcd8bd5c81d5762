//! Issue 12, items 3 and 6 (embedded): hot-swapping a step of a running
//! pipeline through the in-process [`RunControl`], while records flow.
//!
//! The source is a FIFO the test writes to, so the run lasts as long as
//! the test wants; closing the writer ends it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir::{RefusedAt, Rollback, SwapCause, SwapError, SwapOptions, TrialOutcome, TrialStatus};
use weir_tests::live::{Feeder, Live, feed, parse, settle, wait_for_trial, wait_until};
use weir_tests::swap::enricher_variant;
use weir_tests::{Fixture, plugin};

const PIPELINE: &str = "\
partitions: 2
sources:
  in: { kind: file, path: in.fifo }
plugins:
  enrich: { path: '{plugin:enricher}' }
  odd: { path: '{plugin:misbehave}' }
steps:
  - { name: tag, kind: map, plugin: enrich, config: { set: { version: v1 } } }
  - { name: pass, kind: flat-map, plugin: odd, config: { mode: ports-change, switch-at: 99999999999999 } }
sinks:
  out: { kind: stdout }
";

/// Every input came out exactly once, each from one version, versions
/// only moving forward per partition (of 2).
fn check_outputs(outputs: &[Value], fed: usize) -> BTreeMap<String, u64> {
    weir_tests::swap::check_outputs(outputs, fed, 2)
}

#[test]
fn a_map_step_swapped_v1_v2_v3_v4_while_records_flow_processes_each_record_once() {
    let live = Live::of(PIPELINE);
    live.feed(100);
    live.drain();
    // A feeder keeps records flowing through every swap.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (writer, fed, stop) = (live.writer.clone(), live.fed.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                feed(&writer, &fed, 7);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let v1 = live.control.status()[0].current().unwrap().digest.clone();
    let mut reports = Vec::new();
    for (version, component) in [
        ("v2", None),
        ("v3", None),
        ("v4", Some(enricher_variant("v4"))),
    ] {
        let config = json!({ "set": { "version": version } });
        let report = live
            .control
            .swap("tag", component, Some(config))
            .unwrap_or_else(|e| panic!("{e}"));
        // Some records meet each version before the next swap.
        let after = live.outputs().len();
        wait_until("records flow after the swap", || {
            live.outputs().len() > after + 50
        });
        reports.push(report);
    }
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    live.feed(10);
    live.drain();
    let status = live.control.status();
    let fed = live.fed.load(Ordering::SeqCst);
    let outputs = live.finish();
    let by_version = check_outputs(&outputs, fed);
    assert_eq!(
        by_version.keys().collect::<Vec<_>>(),
        ["v1", "v2", "v3", "v4"],
        "every version processed records"
    );

    // Both tasks switched each time; config-only swaps keep the digest.
    assert_eq!(
        reports
            .iter()
            .map(|r| (r.version, r.tasks))
            .collect::<Vec<_>>(),
        [(2, 2), (3, 2), (4, 2)]
    );
    assert_eq!(reports[0].digest, v1);
    assert_eq!(reports[1].digest, v1);
    assert_ne!(reports[2].digest, v1);
    assert_eq!(reports[2].previous_digest, v1);
    assert!(reports.iter().all(|r| r.slowest_task <= r.cutover));
    // Each worker took its message: how long it waited is part of the cutover.
    assert!(
        reports
            .iter()
            .all(|r| r.queued > Duration::ZERO && r.queued <= r.cutover),
        "{reports:?}"
    );

    // Status counts, per version, exactly the records each one emitted.
    let tag = &status[0];
    assert_eq!((tag.name.as_str(), tag.kind), ("tag", "map"));
    let versions: Vec<(u32, String, u64)> = tag
        .versions
        .iter()
        .map(|v| {
            (
                v.number,
                v.config["set"]["version"].as_str().unwrap().to_string(),
                v.records,
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            (1, "v1".to_string(), by_version["v1"]),
            (2, "v2".to_string(), by_version["v2"]),
            (3, "v3".to_string(), by_version["v3"]),
            (4, "v4".to_string(), by_version["v4"]),
        ]
    );
    assert_eq!(tag.current().unwrap().digest, reports[2].digest);
    assert!(tag.versions[1].cutover.is_some() && tag.versions[0].cutover.is_none());
    // The step that was not swapped still runs its first version.
    assert_eq!(status[1].versions.len(), 1);
    assert_eq!(status[1].versions[0].records, fed as u64);
}

#[test]
fn refused_swaps_leave_v1_running_with_nothing_lost_and_say_why() {
    let live = Live::of(PIPELINE);
    live.feed(50);
    let refused = |step: &str, component: Option<Vec<u8>>, config: Option<Value>| {
        let e = live
            .control
            .swap(step, component, config)
            .expect_err("refused");
        live.feed(20);
        e
    };
    let stage = |e: &SwapError| match e {
        SwapError::Refused { stage, .. } => *stage,
        other => panic!("not refused by a check: {other}"),
    };

    let e = refused("tag", Some(b"not a component".to_vec()), None);
    assert_eq!(stage(&e), RefusedAt::Component, "{e}");
    assert!(e.to_string().contains("not a WebAssembly component"), "{e}");

    let wrong_world = std::fs::read(plugin("wrong-world")).unwrap();
    let e = refused("tag", Some(wrong_world), None);
    assert_eq!(stage(&e), RefusedAt::Component, "{e}");
    assert!(e.to_string().contains("component of another world"), "{e}");

    let router = std::fs::read(plugin("router")).unwrap();
    let e = refused("tag", Some(router), None);
    assert_eq!(stage(&e), RefusedAt::Kind, "{e}");
    assert!(e.to_string().contains("is a map step"), "{e}");

    let e = refused(
        "tag",
        None,
        Some(json!({ "set": { "version": "v2" }, "bogus": 1 })),
    );
    assert_eq!(stage(&e), RefusedAt::Init, "{e}");
    assert!(e.to_string().contains("bogus"), "{e}");

    // The same plugin, configured to declare port `late` instead of `out`.
    let e = refused(
        "pass",
        None,
        Some(json!({ "mode": "ports-change", "switch-at": 0 })),
    );
    assert_eq!(stage(&e), RefusedAt::Ports, "{e}");
    assert!(e.to_string().contains("late"), "{e}");

    assert_eq!(
        live.control.swap("nope", None, None),
        Err(SwapError::UnknownStep("nope".into()))
    );

    live.drain();
    let status = live.control.status();
    let fed = live.fed.load(Ordering::SeqCst);
    let control = live.control.clone();
    let outputs = live.finish();
    let by_version = check_outputs(&outputs, fed);
    assert_eq!(by_version.keys().collect::<Vec<_>>(), ["v1"]);
    // Once the run ended there is nothing to swap; its status stays.
    assert_eq!(control.swap("tag", None, None), Err(SwapError::NotRunning));
    assert_eq!(control.status(), status);
    for step in &status {
        assert_eq!(step.versions.len(), 1, "{}: {:?}", step.name, step.versions);
        assert_eq!(step.versions[0].records, fed as u64);
    }
}

#[test]
fn a_swap_asked_for_during_another_is_refused_as_busy() {
    let live = Live::of(PIPELINE);
    live.feed(50);
    let control = live.control.clone();
    // A component with new bytes is compiled: the swap takes a while.
    let tag = format!("{:?}", Instant::now());
    let slow = std::thread::spawn(move || {
        let (component, config) = (
            enricher_variant(&tag),
            json!({ "set": { "version": "v2" } }),
        );
        loop {
            match control.swap("tag", Some(component.clone()), Some(config.clone())) {
                Err(SwapError::Busy) => continue,
                other => return other,
            }
        }
    });
    // Config-only swaps that keep everything, asked for again and again
    // while the slow one is under way: one of them meets it.
    let mut busy = 0;
    while !slow.is_finished() {
        match live.control.swap("tag", None, None) {
            Err(SwapError::Busy) => busy += 1,
            // A gap between swaps, so the slow one gets its turn.
            Ok(_) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("{e}"),
        }
    }
    let report = slow.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert!(busy > 0, "no swap was refused as busy");
    assert_eq!(report.tasks, 2);
    live.feed(50);
    live.drain();
    let fed = live.fed.load(Ordering::SeqCst);
    let outputs = live.finish();
    let by_version = check_outputs(&outputs, fed);
    assert!(by_version.contains_key("v2"), "{by_version:?}");
}

/// A pipeline whose first step can be swapped to a failing version:
/// `check` forwards every record (nothing sets its trigger off) until a
/// swap configures it to fail; failures are dead-lettered to `rejected`.
const ROLLBACK_PIPELINE: &str = "\
partitions: 2
error-policy: dead-letter
dead-letter: rejected
sources:
  in: { kind: file, path: in.fifo }
plugins:
  odd: { path: '{plugin:misbehave}' }
  enrich: { path: '{plugin:enricher}' }
steps:
  - { name: check, kind: flat-map, plugin: odd, config: { mode: poison, trigger: never } }
  - { name: tag, kind: map, plugin: enrich, config: { set: { version: v1 } } }
sinks:
  out: { kind: stdout }
  rejected: { kind: file, path: rejected.jsonl }
";

/// A record's headers as (name, value) pairs, in order, from the object or
/// the list of pairs a JSON-lines sink writes.
fn headers(record: &Value) -> Vec<(String, Option<String>)> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    match &record["headers"] {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Value::Array(pairs) => pairs
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_string(), text(&p[1])))
            .collect(),
        _ => Vec::new(),
    }
}

fn header(record: &Value, name: &str) -> Option<String> {
    headers(record)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v)
}

/// Every input has exactly one outcome: an output or a dead letter.
/// Returns the numbers dead-lettered.
fn one_outcome_each(outputs: &[Value], rejected: &[Value], fed: usize) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    for o in outputs {
        let n = o["value"]["n"].as_u64().expect("n");
        assert!(seen.insert(n), "record {n} came out twice");
    }
    let mut dead = BTreeSet::new();
    for r in rejected {
        let n = r["value"]["n"].as_u64().expect("n");
        assert!(
            seen.insert(n),
            "record {n} came out and was dead-lettered, or twice"
        );
        dead.insert(n);
    }
    assert_eq!(seen.len(), fed, "every input has an outcome");
    dead
}

/// Waits until version 2 of step 0 was rolled back and records flow
/// through the version that came back; the trial's outcome and reason.
fn until_rolled_back(live: &Live) -> (TrialOutcome, String) {
    let outcome = wait_for_trial(live, 0, 2);
    let TrialOutcome::RolledBack { reason } = &outcome else {
        panic!("not rolled back: {outcome:?}");
    };
    let reason = reason.clone();
    let after = live.outputs().len();
    wait_until("records flow after the rollback", || {
        live.outputs().len() > after + 50
    });
    (outcome, reason)
}

#[test]
fn a_version_that_traps_on_every_record_is_rolled_back_and_every_record_has_one_outcome() {
    let live = Live::of(ROLLBACK_PIPELINE);
    live.feed(100);
    settle(&live);
    let v1 = live.control.status()[0].versions[0].clone();
    let feeder = Feeder::start(&live);
    let rollback = Rollback {
        records: 20,
        max_failure_rate: 0.25,
    };
    let report = live
        .control
        .swap_with(
            "check",
            None,
            Some(json!({ "mode": "panic", "every": true })),
            SwapOptions {
                rollback: Some(rollback),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.version, report.rollback), (2, Some(rollback)));
    let (outcome, reason) = until_rolled_back(&live);
    assert!(reason.contains("version 2 failed"), "{reason}");
    drop(feeder);
    live.feed(20);
    settle(&live);
    let status = live.control.status();
    let fed = live.fed.load(Ordering::SeqCst);
    let (outputs, rejected) = live.finish_all();
    let dead = one_outcome_each(&outputs, &rejected, fed);

    // Version 3 is version 1 again, brought back by a rollback.
    let check = &status[0].versions;
    assert_eq!(check.len(), 3, "{check:?}");
    let (tried, back) = (&check[1], &check[2]);
    assert_eq!(tried.cause, SwapCause::Swap);
    assert_eq!(
        tried.trial,
        Some(TrialStatus {
            rollback,
            outcome: outcome.clone()
        })
    );
    assert_eq!(
        back.cause,
        SwapCause::Rollback {
            from: 2,
            restores: 1,
            reason: reason.clone()
        }
    );
    assert_eq!(
        (back.number, &back.digest, &back.config),
        (3, &v1.digest, &v1.config)
    );
    assert!(back.trial.is_none());
    // Every record version 2 saw, it failed; those were dead-lettered,
    // saying which version failed them. More than the trial allowed, and
    // nothing else was.
    assert_eq!(tried.failures, tried.records);
    assert!(tried.failures as f64 > 0.25 * 20.0, "{tried:?}");
    assert_eq!(dead.len() as u64, tried.failures);
    for r in &rejected {
        assert_eq!(header(r, "weir.error.kind").as_deref(), Some("trap"), "{r}");
        assert_eq!(header(r, "weir.error.operator").as_deref(), Some("check"));
        assert_eq!(header(r, "weir.error.version").as_deref(), Some("2"));
        assert_eq!(
            header(r, "weir.error.digest"),
            Some(format!("sha256:{}", tried.digest))
        );
    }
    assert_eq!(
        check.iter().map(|v| v.records).sum::<u64>(),
        fed as u64,
        "each record was processed by exactly one version of `check`"
    );
    assert_eq!(back.failures + check[0].failures, 0);
}

#[test]
fn a_version_failing_under_the_threshold_is_kept_and_its_failures_go_to_the_policy() {
    let live = Live::of(ROLLBACK_PIPELINE);
    live.feed(20);
    settle(&live);
    let feeder = Feeder::start(&live);
    // Fails the records whose `n` ends in 7: a tenth.
    let rollback = Rollback {
        records: 200,
        max_failure_rate: 0.3,
    };
    live.control
        .swap_with(
            "check",
            None,
            Some(json!({ "mode": "poison", "trigger": "7}", "contains": true })),
            SwapOptions {
                rollback: Some(rollback),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wait_for_trial(&live, 0, 2), TrialOutcome::Kept);
    drop(feeder);
    live.feed(30);
    settle(&live);
    let status = live.control.status();
    let fed = live.fed.load(Ordering::SeqCst);
    let (outputs, rejected) = live.finish_all();
    let dead = one_outcome_each(&outputs, &rejected, fed);
    let check = &status[0].versions;
    assert_eq!(check.len(), 2, "kept: no version came after it");
    assert!(check[1].records >= 200, "{:?}", check[1]);
    assert_eq!(check[1].failures, dead.len() as u64);
    assert!(dead.iter().all(|n| n % 10 == 7), "{dead:?}");
    assert!(!dead.is_empty());
    for r in &rejected {
        assert_eq!(header(r, "weir.error.kind").as_deref(), Some("poison"));
        assert_eq!(header(r, "weir.error.version").as_deref(), Some("2"));
    }
}

#[test]
fn without_rollback_a_failing_version_is_kept_and_a_swap_during_a_trial_ends_it() {
    let live = Live::of(ROLLBACK_PIPELINE);
    live.feed(20);
    settle(&live);
    // A trial that would take far more records than the test feeds.
    let long = SwapOptions {
        rollback: Some(Rollback {
            records: 1_000_000,
            max_failure_rate: 0.5,
        }),
    };
    live.control
        .swap_with("check", None, None, long)
        .unwrap_or_else(|e| panic!("{e}"));
    // A refused swap changes nothing: the trial goes on.
    let bad = live
        .control
        .swap("check", None, Some(json!({ "mode": "nope" })));
    assert!(matches!(bad, Err(SwapError::Refused { .. })), "{bad:?}");
    assert_eq!(
        live.control.status()[0].versions[1]
            .trial
            .as_ref()
            .unwrap()
            .outcome,
        TrialOutcome::Running
    );
    live.control
        .swap(
            "check",
            None,
            Some(json!({ "mode": "panic", "every": true })),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    live.feed(40);
    settle(&live);
    let status = live.control.status();
    let fed = live.fed.load(Ordering::SeqCst);
    let (outputs, rejected) = live.finish_all();
    let dead = one_outcome_each(&outputs, &rejected, fed);
    let check = &status[0].versions;
    assert_eq!(check.len(), 3, "{check:?}");
    assert_eq!(
        check[1].trial.as_ref().unwrap().outcome,
        TrialOutcome::Superseded
    );
    // Version 3 failed every record, and nothing rolled it back.
    assert!(check[2].trial.is_none());
    assert_eq!((check[2].records, check[2].failures), (40, 40));
    assert_eq!(dead.len(), 40);
    assert!(dead.iter().all(|&n| n >= 20));
}

#[test]
fn rollback_options_are_checked_before_anything_changes() {
    let live = Live::of(ROLLBACK_PIPELINE);
    let with = |records, max_failure_rate| SwapOptions {
        rollback: Some(Rollback {
            records,
            max_failure_rate,
        }),
    };
    for (options, says) in [
        (with(0, 0.1), "`records` must be 1 or more"),
        (
            with(10, 1.0),
            "`max_failure_rate` must be at least 0 and below 1",
        ),
        (with(10, -0.1), "below 1"),
        (with(10, f64::NAN), "below 1"),
    ] {
        let e = live
            .control
            .swap_with("check", None, None, options)
            .expect_err("refused");
        assert!(matches!(e, SwapError::InvalidOptions { .. }), "{e:?}");
        assert!(e.to_string().contains(says), "{e}");
        assert!(e.to_string().starts_with("step `check`: rollback: "), "{e}");
    }
    assert_eq!(live.control.status()[0].versions.len(), 1);
    live.feed(10);
    settle(&live);
    let fed = live.fed.load(Ordering::SeqCst);
    let (outputs, rejected) = live.finish_all();
    one_outcome_each(&outputs, &rejected, fed);
}

/// Records through a map, a filter, a branch and a flat-map plugin step,
/// carrying headers of every sort: repeated names, a null, raw bytes.
fn provenance_fixture(setting: &str) -> Fixture {
    let pipeline = format!(
        "\
partitions: 2
{setting}
sources:
  in: {{ kind: file, path: in.jsonl }}
plugins:
  enrich: {{ path: '{{plugin:enricher}}' }}
  filter: {{ path: '{{plugin:json-filter}}' }}
  router: {{ path: '{{plugin:router}}' }}
  splitter: {{ path: '{{plugin:splitter}}' }}
steps:
  - {{ name: tag, kind: map, plugin: enrich, config: {{ set: {{ seen: true }} }} }}
  - {{ name: big, kind: filter, plugin: filter, config: {{ field: n, op: gte, value: 2 }} }}
  - {{ name: route, kind: branch, plugin: router, config: {{ field: type, routes: {{ a: as, b: bs }} }} }}
  - {{ name: split, kind: flat-map, plugin: splitter, from: route.bs, config: {{ field: items, keep: [n] }} }}
sinks:
  as: {{ kind: file, path: as.jsonl, from: route.as }}
  pieces: {{ kind: file, path: pieces.jsonl, from: split }}
"
    );
    let input: String = (1..=8)
        .map(|n| {
            let value = json!({ "n": n, "type": if n % 2 == 0 { "b" } else { "a" }, "items": [{ "i": 1 }, { "i": 2 }] });
            json!({
                "key": format!("k{n}"),
                "value": value,
                "timestamp": 1000,
                "headers": [["trace", format!("t-{n}")], ["trace", null], ["raw", { "base64": "AP8K" }]],
            })
            .to_string()
                + "\n"
        })
        .collect();
    Fixture::new(&pipeline, &[("in.jsonl", &input)])
}

/// Each output's headers: the input's three, byte for byte (as the sink
/// wrote them), then what weir added.
fn added_headers(outputs: &[Value]) -> Vec<Vec<(String, Option<String>)>> {
    outputs
        .iter()
        .map(|o| {
            let n = o["value"]["n"].as_u64().unwrap();
            let written = o["headers"].as_array().expect("headers as a list");
            assert_eq!(
                written[..3],
                json!([["trace", format!("t-{n}")], ["trace", null], ["raw", { "base64": "AP8K" }]])
                    .as_array()
                    .unwrap()[..],
                "{o}"
            );
            headers(o)[3..].to_vec()
        })
        .collect()
}

#[test]
fn without_provenance_headers_pass_through_every_plugin_step_unchanged() {
    for setting in ["", "provenance: off"] {
        let fixture = provenance_fixture(setting);
        let (result, captured) = fixture.run();
        result.unwrap_or_else(|e| panic!("{e}"));
        let (as_, split) = (captured.records("as"), captured.records("pieces"));
        assert_eq!(as_.len(), 3, "n = 3, 5, 7");
        assert_eq!(split.len(), 8, "n = 2, 4, 6, 8, two items each");
        for added in added_headers(&as_).into_iter().chain(added_headers(&split)) {
            assert!(added.is_empty(), "{setting:?}: headers added: {added:?}");
        }
    }
}

#[test]
fn with_provenance_each_plugin_step_a_record_passed_names_its_digest_and_version() {
    let fixture = provenance_fixture("provenance: header");
    let topo = fixture.topology();
    let digest = |i: usize| topo.plugins[i].sha256().to_string();
    let (result, captured) = fixture.run();
    result.unwrap_or_else(|e| panic!("{e}"));
    let stamp = |step: &str, plugin: usize| {
        (
            weir::PROVENANCE_HEADER.to_string(),
            Some(format!("{step}=sha256:{}@v1", digest(plugin))),
        )
    };
    for added in added_headers(&captured.records("as")) {
        assert_eq!(added, [stamp("tag", 0), stamp("big", 1), stamp("route", 2)]);
    }
    let split = captured.records("pieces");
    assert_eq!(split.len(), 8);
    for added in added_headers(&split) {
        assert_eq!(
            added,
            [
                stamp("tag", 0),
                stamp("big", 1),
                stamp("route", 2),
                stamp("split", 3)
            ]
        );
    }
}

#[test]
fn with_provenance_each_output_names_the_version_that_processed_it_across_swaps() {
    let live =
        Live::of(&PIPELINE.replace("partitions: 2\n", "partitions: 2\nprovenance: header\n"));
    live.feed(50);
    live.drain();
    let feeder = Feeder::start(&live);
    let mut digests = vec![live.control.status()[0].versions[0].digest.clone()];
    for (version, component) in [("v2", None), ("v3", Some(enricher_variant("v3")))] {
        let config = json!({ "set": { "version": version } });
        let report = live
            .control
            .swap("tag", component, Some(config))
            .unwrap_or_else(|e| panic!("{e}"));
        digests.push(report.digest);
        let after = live.outputs().len();
        wait_until("records flow after the swap", || {
            live.outputs().len() > after + 30
        });
    }
    drop(feeder);
    live.feed(10);
    live.drain();
    let pass = live.control.status()[1].versions[0].digest.clone();
    let fed = live.fed.load(Ordering::SeqCst);
    let outputs = live.finish();
    let by_version = check_outputs(&outputs, fed);
    assert_eq!(by_version.len(), 3, "{by_version:?}");
    assert_ne!(digests[2], digests[1]);
    for o in &outputs {
        let stamps: Vec<(String, String, u32)> = headers(o)
            .iter()
            .filter(|(name, _)| name == weir::PROVENANCE_HEADER)
            .map(|(_, v)| {
                let (step, digest, number) =
                    weir::parse_provenance(v.as_deref().unwrap()).expect("a provenance header");
                (step.to_string(), digest.to_string(), number)
            })
            .collect();
        // The version its content says processed it.
        let tagged: u32 = o["value"]["version"].as_str().unwrap()[1..]
            .parse()
            .unwrap();
        assert_eq!(
            stamps,
            [
                (
                    "tag".to_string(),
                    digests[tagged as usize - 1].clone(),
                    tagged
                ),
                ("pass".to_string(), pass.clone(), 1),
            ],
            "{o}"
        );
    }
}

/// [`ROLLBACK_PIPELINE`] under `fail`, with no dead-letter sink; `check`
/// starts with `config`.
fn fail_pipeline(config: &str) -> String {
    ROLLBACK_PIPELINE
        .replace("error-policy: dead-letter\ndead-letter: rejected\n", "")
        .replace("  rejected: { kind: file, path: rejected.jsonl }\n", "")
        .replace("{ mode: poison, trigger: never }", config)
}

fn trap_with_rollback(live: &Live, max_failure_rate: f64) -> Result<weir::SwapReport, SwapError> {
    live.control.swap_with(
        "check",
        None,
        Some(json!({ "mode": "panic", "every": true })),
        SwapOptions {
            rollback: Some(Rollback {
                records: 20,
                max_failure_rate,
            }),
        },
    )
}

#[test]
fn under_fail_the_first_failure_on_trial_rolls_back_and_the_old_version_processes_the_batch() {
    let live = Live::of(&fail_pipeline("{ mode: poison, trigger: never }"));
    live.feed(50);
    live.drain();
    // `fail` tolerates no failure: a rate above 0 is refused, not ignored.
    let e = trap_with_rollback(&live, 0.1).expect_err("refused");
    assert!(matches!(e, SwapError::InvalidOptions { .. }), "{e}");
    assert!(
        e.to_string().contains("`max_failure_rate` must be 0"),
        "{e}"
    );
    let feeder = Feeder::start(&live);
    trap_with_rollback(&live, 0.0).unwrap_or_else(|e| panic!("{e}"));
    let (_, reason) = until_rolled_back(&live);
    assert!(reason.contains("error-policy fail"), "{reason}");
    drop(feeder);
    live.feed(10);
    live.drain();
    let status = live.control.status();
    let fed = live.fed.load(Ordering::SeqCst);
    // The run did not stop: every record came out once, none failed.
    let outputs = live.finish();
    let (outputs, rejected) = (outputs, Vec::new());
    one_outcome_each(&outputs, &rejected, fed);
    let check = &status[0].versions;
    assert_eq!(check.len(), 3, "{check:?}");
    assert!(check[1].failures >= 1, "{:?}", check[1]);
    assert_eq!(
        check[2].cause,
        SwapCause::Rollback {
            from: 2,
            restores: 1,
            reason: reason.clone()
        }
    );
}

#[test]
fn under_fail_a_record_the_old_version_fails_too_stops_the_run_as_fail_says() {
    // Version 1 fails the record whose `n` is 13; version 2 fails them all.
    let live = Live::of(&fail_pipeline(
        "{ mode: poison, trigger: '\"n\":13}', contains: true }",
    ));
    live.feed(10);
    live.drain();
    trap_with_rollback(&live, 0.0).unwrap_or_else(|e| panic!("{e}"));
    live.feed(10);
    let outcome = wait_for_trial(&live, 0, 2);
    assert!(
        matches!(outcome, TrialOutcome::RolledBack { .. }),
        "{outcome:?}"
    );
    live.writer.lock().unwrap().take();
    let e = live.run.join().unwrap().expect_err("the run stops");
    let text = e.to_string();
    assert!(
        text.contains("stopped by the `fail` error policy"),
        "{text}"
    );
    assert!(text.contains("in.fifo:14"), "{text}");
    let outputs = parse(&live.out);
    let ns: BTreeSet<u64> = outputs
        .iter()
        .map(|o| o["value"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns.len(), outputs.len(), "nothing came out twice");
    assert!(!ns.contains(&13));
    assert!((0..10).all(|n| ns.contains(&n)), "{ns:?}");
}
