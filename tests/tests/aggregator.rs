//! The aggregator world end to end on the host side: real aggregator
//! components built from source (`plugins/account-state`,
//! `plugins/agg-misbehave`), started through [`weir::PluginAggregator`] as
//! the aggregate operator starts them. Accumulators chain per key within a
//! batch, a failed record leaves its key's accumulator as it was, a trap or
//! a timeout fails only its culprit, and a component of the wrong world is
//! refused before it sees a config.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use weir::{
    AggregateOutput, Capability, EngineSettings, FailureKind, Group, Limits, LogGate, Pair, Plugin,
    PluginAggregator, PluginEngine, PluginStep, Record, StepKind, group_by_key,
};
use weir_tests::{Fixture, assert_contains, cache_dir, plugin, stderr, weir};

fn engine() -> PluginEngine {
    PluginEngine::new(&EngineSettings {
        cache_dir: Some(cache_dir()),
        ..EngineSettings::default()
    })
    .unwrap()
}

fn load(engine: &PluginEngine, name: &str) -> Arc<Plugin> {
    Arc::new(engine.load(&plugin(name), None).unwrap())
}

fn start(
    plugin: &Arc<Plugin>,
    config: &str,
    limits: Limits,
    needs: &[Capability],
) -> Result<PluginAggregator, weir::StartError> {
    let log = LogGate::new("agg".into(), &limits);
    PluginAggregator::start(log, plugin.clone(), config.into(), limits, needs)
}

fn record(key: &str, value: &str) -> Record {
    Record {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        ..Record::default()
    }
}

fn event(key: &str, e: Value) -> Record {
    record(key, &e.to_string())
}

/// Each key's group, with the accumulator `stored` has for it: what the
/// aggregate operator does with a batch.
fn groups<'a>(keyed: &'a [(Bytes, Vec<u32>)], stored: &'a [(&'a str, &'a str)]) -> Vec<Group<'a>> {
    keyed
        .iter()
        .map(|(key, inputs)| Group {
            key,
            accumulator: stored
                .iter()
                .find(|(k, _)| k.as_bytes() == key.as_ref())
                .map(|(_, a)| a.as_bytes()),
            inputs,
        })
        .collect()
}

fn add(agg: &mut PluginAggregator, records: &[Record], stored: &[(&str, &str)]) -> AggregateOutput {
    let keyed = group_by_key(records);
    let groups = groups(&keyed, stored);
    let mut out = AggregateOutput::default();
    agg.add(records, &groups, &mut out).unwrap();
    out
}

/// Each record's outcome in input order: the accumulator as JSON, `null`
/// for a removal, or `"<kind>: <reason>"` for a failure.
fn outcomes(out: &AggregateOutput, n: usize) -> Vec<Value> {
    (0..n as u32)
        .map(|i| {
            let update = out.updates.iter().find(|u| u.input == i);
            let failure = out.failures.iter().find(|f| f.input == i);
            match (update, failure) {
                (Some(u), None) => match &u.accumulator {
                    Some(a) => serde_json::from_slice(a).unwrap(),
                    None => Value::Null,
                },
                (None, Some(f)) => json!(format!("{}: {}", f.kind.as_str(), f.reason)),
                other => panic!("record {i}: {other:?}"),
            }
        })
        .collect()
}

fn account(owner: &str, balance: i64, status: &str, version: u64) -> Value {
    json!({"owner": owner, "balance": balance, "status": status, "version": version})
}

#[test]
fn accumulators_chain_per_key_within_one_batch() {
    let engine = engine();
    let plugin = load(&engine, "account-state");
    assert_eq!(plugin.world(), "weir:plugin/aggregator@0.2.0");
    assert!(plugin.capabilities().is_empty());
    let mut agg = start(&plugin, "null", Limits::default(), &[]).unwrap();
    // Two accounts interleaved; `b` already has a state in the store.
    let records = [
        event("a", json!({"type": "AccountOpened", "owner": "ann"})),
        event("b", json!({"type": "Deposited", "amount": 10})),
        event("a", json!({"type": "Deposited", "amount": 100})),
        event("b", json!({"type": "Withdrawn", "amount": 3})),
        event("a", json!({"type": "Withdrawn", "amount": 30})),
    ];
    let stored = [(
        "b",
        r#"{"owner":"bob","balance":5,"status":"open","version":4}"#,
    )];
    let out = add(&mut agg, &records, &stored);
    assert_eq!(
        outcomes(&out, records.len()),
        vec![
            account("ann", 0, "open", 1),
            account("bob", 15, "open", 5),
            account("ann", 100, "open", 2),
            account("bob", 12, "open", 6),
            account("ann", 70, "open", 3),
        ]
    );
    assert_eq!(agg.restarts(), 0);
}

#[test]
fn a_poison_record_keeps_the_previous_accumulator() {
    let engine = engine();
    let plugin = load(&engine, "account-state");
    let mut agg = start(&plugin, "null", Limits::default(), &[]).unwrap();
    let records = [
        event("a", json!({"type": "AccountOpened", "owner": "ann"})),
        event("a", json!({"type": "Withdrawn", "amount": 5})),
        event("a", json!({"type": "Deposited", "amount": 7})),
        record("a", "not json"),
        event("a", json!({"type": "Closed"})),
    ];
    let out = add(&mut agg, &records, &[]);
    let got = outcomes(&out, records.len());
    assert_eq!(got[0], account("ann", 0, "open", 1));
    assert_eq!(
        got[1],
        "poison: insufficient funds: balance 0, withdrawal 5, overdraft 0"
    );
    assert_eq!(
        got[2],
        account("ann", 7, "open", 2),
        "from the last good state"
    );
    assert!(got[3].as_str().unwrap().starts_with("poison: invalid JSON"));
    assert_eq!(got[4], account("ann", 7, "closed", 3));
    assert_eq!(agg.restarts(), 0, "poison keeps the instance");
}

#[test]
fn a_trap_fails_only_the_culprit_and_its_key_continues_from_the_last_good_accumulator() {
    let engine = engine();
    let plugin = load(&engine, "agg-misbehave");
    let mut agg = start(&plugin, "null", Limits::default(), &[]).unwrap();
    let records = [
        record("x", "1"),
        record("y", "10"),
        record("x", "2"),
        record("x", "panic"),
        record("y", "20"),
        record("x", "4"),
    ];
    let out = add(&mut agg, &records, &[("y", r#"{"count":1,"sum":100}"#)]);
    let got = outcomes(&out, records.len());
    assert_eq!(got[0], json!({"count": 1, "sum": 1}));
    assert_eq!(got[1], json!({"count": 2, "sum": 110}));
    assert_eq!(got[2], json!({"count": 2, "sum": 3}));
    let trap = got[3].as_str().unwrap();
    assert!(
        trap.starts_with("trap: plugin trapped: panicked at"),
        "{trap}"
    );
    assert_contains(trap, "agg-misbehave: panic on purpose");
    assert_eq!(got[4], json!({"count": 3, "sum": 130}));
    assert_eq!(got[5], json!({"count": 3, "sum": 7}), "x skips the culprit");
    assert!(agg.restarts() >= 1, "a fresh instance took over");

    // The replacement serves the next batch as if nothing happened.
    let out = add(
        &mut agg,
        &[record("x", "5")],
        &[("x", r#"{"count":3,"sum":7}"#)],
    );
    assert_eq!(outcomes(&out, 1), vec![json!({"count": 4, "sum": 12})]);
}

#[test]
fn time_and_memory_limits_fail_only_their_record() {
    let engine = engine();
    let plugin = load(&engine, "agg-misbehave");
    let limits = Limits {
        max_batch_millis: 200,
        max_memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let mut agg = start(&plugin, "null", limits, &[]).unwrap();
    let records = [
        record("k", "1"),
        record("k", "loop"),
        record("k", "alloc"),
        record("k", "2"),
    ];
    let out = add(&mut agg, &records, &[]);
    let kinds: Vec<_> = out.failures.iter().map(|f| (f.input, f.kind)).collect();
    assert_eq!(
        kinds,
        vec![(1, FailureKind::Timeout), (2, FailureKind::Memory)]
    );
    assert_eq!(
        outcomes(&out, 4)[3],
        json!({"count": 2, "sum": 3}),
        "the key goes on from its last good accumulator"
    );
}

#[test]
fn failed_is_retried_once_alone_and_removal_is_an_update_without_accumulator() {
    let engine = engine();
    let plugin = load(&engine, "agg-misbehave");
    let mut agg = start(&plugin, "null", Limits::default(), &[]).unwrap();
    // `flaky` fails unless it is the first record its instance sees: in the
    // batch it fails, alone on a fresh instance it succeeds. `fail` always
    // fails. `remove` removes the accumulator, and the key starts again.
    let records = [
        record("k", "1"),
        record("k", "flaky"),
        record("k", "2"),
        record("j", "fail"),
        record("j", "5"),
        record("k", "remove"),
        record("k", "3"),
    ];
    let out = add(&mut agg, &records, &[]);
    let got = outcomes(&out, records.len());
    assert_eq!(got[1], json!({"count": 2, "sum": 1}), "the retry succeeded");
    assert_eq!(got[2], json!({"count": 3, "sum": 3}));
    assert_eq!(got[3], "failed: failed on purpose");
    assert_eq!(got[4], json!({"count": 1, "sum": 5}));
    assert_eq!(got[5], Value::Null);
    assert!(
        out.updates
            .iter()
            .any(|u| u.input == 5 && u.accumulator.is_none())
    );
    assert_eq!(got[6], json!({"count": 1, "sum": 3}));
}

#[test]
fn an_oversized_accumulator_fails_its_record() {
    let engine = engine();
    let plugin = load(&engine, "agg-misbehave");
    let limits = Limits {
        max_output_bytes: 20,
        ..Limits::default()
    };
    let mut agg = start(&plugin, "null", limits, &[]).unwrap();
    // {"count":1,"sum":1} is 19 bytes; a sum of 1000000 makes it 25.
    let records = [record("k", "1"), record("k", "999999"), record("k", "2")];
    let out = add(&mut agg, &records, &[]);
    let got = outcomes(&out, 3);
    assert_eq!(
        got[1],
        "output-limit: the accumulator of 25 bytes exceeds 20 bytes"
    );
    assert_eq!(
        got[2],
        json!({"count": 2, "sum": 3}),
        "not from the oversized one"
    );
}

#[test]
fn a_transformer_is_refused_as_an_aggregator_and_the_other_way_round() {
    let engine = engine();
    let noop = load(&engine, "noop");
    let err = start(&noop, "null", Limits::default(), &[])
        .err()
        .unwrap()
        .to_string();
    assert_contains(&err, "step `agg` is an aggregate step, but its plugin");
    assert_contains(
        &err,
        "noop.wasm implements only filter (a component of world `weir:plugin/transformer@0.2.0`)",
    );

    let account = load(&engine, "account-state");
    let log = LogGate::new("m".into(), &Limits::default());
    let err = PluginStep::start(
        log,
        StepKind::Map,
        account,
        "null".into(),
        Limits::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert_contains(&err, "step `m` is a map step, but its plugin");
    assert_contains(
        &err,
        "account_state.wasm implements only aggregate (a component of world `weir:plugin/aggregator@0.2.0`)",
    );
}

#[test]
fn a_capability_the_plugin_does_not_declare_is_refused_and_merge_isolates_failures() {
    let engine = engine();
    let plugin = load(&engine, "account-state");
    let err = start(&plugin, "null", Limits::default(), &[Capability::Merge])
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "step `agg`: plugin does not implement `merge`, which this step needs (it declares: none); \
         implement it and declare it in the plugin's capabilities"
    );
    // Called anyway, the SDK answers FAILED for every pair: the host retries
    // each once and then blames the pair, never crashing.
    let mut agg = start(&plugin, "null", Limits::default(), &[]).unwrap();
    let mut out = AggregateOutput::default();
    let pairs = [Pair {
        key: b"k",
        left: br#"{"owner":"ann","balance":1,"status":"open","version":1}"#,
        right: br#"{"owner":"ann","balance":5,"status":"open","version":2}"#,
    }];
    agg.merge(&pairs, &mut out).unwrap();
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].kind, FailureKind::Failed);
    assert_eq!(
        out.failures[0].reason,
        "this aggregator does not implement merge"
    );
}

#[test]
fn a_refused_config_stops_the_step_before_any_record() {
    let engine = engine();
    let plugin = load(&engine, "account-state");
    let err = start(&plugin, r#"{"overdraft": -5}"#, Limits::default(), &[])
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "step `agg`: plugin refused its config: overdraft must not be negative, not -5"
    );
}

#[test]
fn inspect_shows_the_aggregator_world_and_its_capabilities() {
    let path = plugin("account-state");
    let out = weir(&["plugin", "inspect", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_contains(&text, "world:    weir:plugin/aggregator@0.2.0");
    assert_contains(&text, "kinds:    aggregate");
    assert_contains(&text, "capabilities: none");
    assert_contains(&text, "  weir:plugin/aggregate@0.2.0");
}

/// `weir validate` refuses an aggregator given to a transform step at the
/// step's line, naming the plugin's world, before it sees the config.
#[test]
fn validate_refuses_an_aggregator_in_a_map_step_at_its_line() {
    let f = Fixture::new(
        "
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  accounts: { path: '{plugin:account-state}' }
steps:
  - { name: state, kind: map, plugin: accounts, config: { overdraft: -1 } }
sinks:
  out: { kind: stdout }
",
        &[("in.jsonl", "")],
    );
    let path = f.pipeline_path().display().to_string();
    let out = weir(&["validate", &path]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_contains(&err, &format!("{path}:7:"));
    assert_contains(&err, "step `state` is a map step, but its plugin");
    assert_contains(
        &err,
        "implements only aggregate (a component of world `weir:plugin/aggregator@0.2.0`)",
    );
    assert!(!err.contains("overdraft"), "refused before init: {err}");
}
