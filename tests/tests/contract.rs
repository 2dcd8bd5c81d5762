//! The host's defences against plugins that break the contract, checked with
//! a plugin that uses no SDK (`plugins/raw-contract`) and answers with the
//! golden vectors' canned results (`wit/vectors/`): each broken result is
//! caught with the failure kind and reason the vector names, the record goes
//! to the dead-letter sink with its headers, and no other record is lost.
//! Also: step kinds declared by plugins, and components of an older contract.

use std::process::Output;

use serde_json::{Value, json};
use weir_tests::{Fixture, assert_contains, plugin, repo, stderr, weir};

fn index() -> Value {
    let text = std::fs::read_to_string(repo().join("wit/vectors/index.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn vector(name: &str) -> Value {
    index()["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
        .clone()
}

/// A record of the vectors as the JSON-lines sinks write it (string formats).
fn as_line(r: &Value) -> Value {
    let mut line = json!({"key": r["key"], "value": r["value"], "timestamp": r["timestamp"]});
    let headers = r["headers"].as_array().unwrap();
    if !headers.is_empty() {
        let map: serde_json::Map<String, Value> = headers
            .iter()
            .map(|h| (h[0].as_str().unwrap().to_string(), h[1].clone()))
            .collect();
        line["headers"] = Value::Object(map);
    }
    line
}

/// The input: eight ordinary records around the record of batch
/// `one-record`, which sets the plugin off (line 5).
fn input() -> (Vec<Value>, Value) {
    let trigger = as_line(&index()["batches"][0]["records"][0]);
    assert_eq!(index()["batches"][0]["name"], "one-record");
    let mut lines: Vec<Value> = (0..8)
        .map(|i| json!({"key": format!("k-{i}"), "value": format!("ok-{i}"), "timestamp": i}))
        .collect();
    lines.insert(4, trigger.clone());
    (lines, trigger)
}

const TRIGGER_LINE: &str = "5";

/// Runs the raw plugin with vector `name`'s result and checks everything the
/// vector says the host concludes, and that nothing else is lost.
fn check_case(name: &str) {
    let v = vector(name);
    assert_eq!(v["batch"], "one-record", "{name}");
    let ports: Vec<String> = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let limits = match v["limits"]["output-per-record"].as_u64() {
        Some(n) => format!("{{ output-per-record: {n} }}"),
        None => "{}".to_string(),
    };
    let sinks: String = ports
        .iter()
        .map(|p| {
            let from = if ports.len() == 1 {
                "s".to_string()
            } else {
                format!("s.{p}")
            };
            format!("  {p}: {{ kind: stdout, from: {from}, key-format: string, value-format: string }}\n")
        })
        .collect();
    let pipeline = format!(
        "
error-policy: dead-letter
dead-letter: dlq
partitions: 1
batch-size: 64
sources:
  in: {{ kind: file, path: in.jsonl, key-format: string, value-format: string }}
plugins:
  raw: {{ path: '{{plugin:raw-contract}}' }}
steps:
  - name: s
    kind: {kind}
    plugin: raw
    config: {{ case: {name}, trigger: boom, ports: {ports:?} }}
    limits: {limits}
sinks:
{sinks}  dlq: {{ kind: stdout, key-format: string, value-format: string }}
",
        kind = v["kind"].as_str().unwrap(),
    );
    let (lines, trigger) = input();
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let f = Fixture::new(&pipeline, &[("in.jsonl", &body)]);
    let (result, out) = f.run();
    let report = result.unwrap_or_else(|e| panic!("{name}: {e}"));

    // What each port's sink must hold: every ordinary record, forwarded on
    // port 0, and whatever the vector says became of the trigger record.
    let mut expected: Vec<Vec<Value>> = vec![Vec::new(); ports.len()];
    let ordinary: Vec<Value> = lines.iter().filter(|l| **l != trigger).cloned().collect();
    expected[0].extend(ordinary[..4].iter().cloned());
    let mut failure: Option<(String, String)> = None;
    let mut restarts_expected = false;
    if let Some(alone) = v["host"].get("alone") {
        let f = &alone["failure"];
        failure = Some((
            f["kind"].as_str().unwrap().into(),
            f["reason"].as_str().unwrap().into(),
        ));
        restarts_expected = true;
    } else {
        let outcome = &v["host"]["outcomes"][0];
        if let Some(p) = outcome["forward"].as_u64() {
            expected[p as usize].push(trigger.clone());
        } else if let Some(list) = outcome["emit"].as_array() {
            for e in list {
                expected[e["port"].as_u64().unwrap() as usize].push(as_line(&e["record"]));
            }
        } else if let Some(f) = outcome.get("failure") {
            failure = Some((
                f["kind"].as_str().unwrap().into(),
                f["reason"].as_str().unwrap().into(),
            ));
        } else {
            failure = Some(("failed".into(), outcome["retry"].as_str().unwrap().into()));
            restarts_expected = true;
        }
    }
    expected[0].extend(ordinary[4..].iter().cloned());
    for (port, want) in ports.iter().zip(&expected) {
        assert_eq!(&out.records(port), want, "{name}: sink `{port}`");
    }

    let dlq = out.records("dlq");
    match &failure {
        None => assert!(dlq.is_empty(), "{name}: {dlq:?}"),
        Some((kind, reason)) => {
            assert_eq!(dlq.len(), 1, "{name}: {dlq:?}");
            let d = &dlq[0];
            assert_eq!(d["key"], trigger["key"], "{name}");
            assert_eq!(d["value"], trigger["value"], "{name}");
            assert_eq!(d["timestamp"], trigger["timestamp"], "{name}");
            let h = &d["headers"];
            assert_eq!(h["trace"], "abc", "{name}: the record's own headers stay");
            assert_eq!(h["weir.error.kind"], kind.as_str(), "{name}");
            assert_eq!(h["weir.error.reason"], reason.as_str(), "{name}");
            assert_eq!(h["weir.error.operator"], "s", "{name}");
            assert_eq!(h["weir.error.source"], "in", "{name}");
            assert_eq!(h["weir.error.offset"], TRIGGER_LINE, "{name}");
        }
    }
    let c = report.counts;
    assert_eq!(c.records_in, 9, "{name}");
    let delivered: usize = expected.iter().map(Vec::len).sum();
    assert_eq!(c.records_out as usize, delivered, "{name}: {c:?}");
    assert_eq!(
        c.dead_lettered,
        u64::from(failure.is_some()),
        "{name}: {c:?}"
    );
    if restarts_expected {
        assert!(c.restarts >= 1, "{name}: a fresh instance took over: {c:?}");
    } else {
        assert_eq!(c.restarts, 0, "{name}: the instance is kept: {c:?}");
    }
}

#[test]
fn a_filter_that_emits() {
    check_case("filter-emits");
}

#[test]
fn a_map_that_emits_zero_or_two() {
    check_case("map-emits-zero");
    check_case("map-emits-two");
}

#[test]
fn undeclared_ports() {
    check_case("forward-to-undeclared-port");
    check_case("emit-on-undeclared-port");
}

#[test]
fn truncated_results() {
    check_case("truncated-port");
    check_case("truncated-record");
    check_case("empty");
}

#[test]
fn a_result_count_that_does_not_match() {
    check_case("count-too-large");
    check_case("count-zero");
}

#[test]
fn trailing_bytes_after_the_last_result() {
    check_case("trailing-bytes");
}

#[test]
fn a_header_name_that_is_not_utf8() {
    check_case("header-name-not-utf8");
}

#[test]
fn an_unknown_tag() {
    check_case("unknown-tag");
}

#[test]
fn a_select_key_step_may_change_only_the_key() {
    check_case("select-key-rekeys");
    check_case("select-key-changes-value");
    check_case("select-key-changes-headers");
    check_case("select-key-changes-timestamp");
}

#[test]
fn every_one_record_vector_holds_end_to_end() {
    let index = index();
    let mut n = 0;
    for v in index["results"].as_array().unwrap() {
        if v["batch"] == "one-record" {
            check_case(v["name"].as_str().unwrap());
            n += 1;
        }
    }
    assert!(n >= 30, "{n}");
}

const FLAT_MAP_AS_FILTER: &str = "
sources:
  in: { kind: file, path: in.jsonl }
plugins:
  split: { path: '{plugin:splitter}' }
steps:
  - { name: items, kind: filter, plugin: split, config: { field: items } }
sinks:
  out: { kind: stdout }
";

#[test]
fn a_step_whose_kind_the_plugin_does_not_implement_is_refused() {
    let f = Fixture::new(
        FLAT_MAP_AS_FILTER,
        &[("in.jsonl", "{\"key\":\"a\",\"value\":{\"items\":[1,2]}}\n")],
    );
    let path = f.pipeline_path().display().to_string();
    let expect = |out: &Output, what: &str| {
        let err = stderr(out);
        assert!(!out.status.success(), "{what} passed: {err}");
        assert!(err.contains(&format!("{path}:7:")), "{what}: {err}");
        assert!(
            err.contains("step `items` is a filter step, but its plugin"),
            "{what}: {err}"
        );
        assert!(
            err.contains("splitter.wasm implements only flat-map"),
            "{what}: {err}"
        );
    };
    expect(&weir(&["validate", &path]), "validate");
    let run = weir(&["run", "--quiet", &path]);
    expect(&run, "run");
    assert!(
        run.stdout.is_empty(),
        "nothing was written: {:?}",
        run.stdout
    );

    let fixed = Fixture::new(
        &FLAT_MAP_AS_FILTER.replace("kind: filter", "kind: flat-map"),
        &[],
    );
    let out = weir(&["validate", fixed.pipeline_path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_plugin_built_against_contract_0_1_is_refused_with_how_to_rebuild() {
    let f = Fixture::new(&FLAT_MAP_AS_FILTER.replace("splitter", "old-contract"), &[]);
    let out = weir(&["validate", f.pipeline_path().to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_contains(&err, &format!("{}:5:", f.pipeline_path().display()));
    assert_contains(&err, "built against weir's plugin contract 0.1.0");
    assert_contains(&err, "weir:plugin/transform@0.1.0");
    assert_contains(&err, "Rebuild it with weir-sdk 0.2.0");

    let out = weir(&[
        "plugin",
        "inspect",
        plugin("old-contract").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert_contains(&text, "world:    weir:plugin/transformer@0.1.0 (outdated)");
    assert_contains(&text, "runnable: no");
    assert!(!text.contains("kinds:"), "{text}");
    // It imports the old host interface, which this host does not provide:
    // the refusal still says how to rebuild, not which import is missing.
    assert_contains(&text, "  weir:plugin/host@0.1.0\n");
    assert_contains(&text, "Rebuild it with weir-sdk 0.2.0");
}

#[test]
fn a_plugin_that_declares_no_kind_is_refused_at_load() {
    let f = Fixture::new(&FLAT_MAP_AS_FILTER.replace("splitter", "no-kinds"), &[]);
    let out = weir(&["validate", f.pipeline_path().to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_contains(&err, &format!("{}:5:", f.pipeline_path().display()));
    assert_contains(
        &err,
        "did not say which step kinds it implements: `kinds` returned no step kind",
    );
}

#[test]
fn inspect_shows_the_kinds_a_plugin_declares() {
    for (name, kinds) in [
        ("splitter", "flat-map"),
        ("key-selector", "select-key"),
        ("raw-contract", "filter, map, flat-map, branch, select-key"),
    ] {
        let out = weir(&["plugin", "inspect", plugin(name).to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {text}");
        assert!(
            text.contains(&format!("kinds:    {kinds}\n")),
            "{name}: {text}"
        );
    }
}
