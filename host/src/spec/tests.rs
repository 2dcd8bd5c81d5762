use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Pipeline, SpecError> {
    Pipeline::parse(Path::new("/nonexistent/p.yaml"), text)
}

fn errors(text: &str) -> Vec<String> {
    parse(text)
        .unwrap_err()
        .0
        .iter()
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn malformed_yaml_names_line_and_column() {
    let e = errors("sources:\n  a: { kind: file, path: x\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("/nonexistent/p.yaml:"), "{e:?}");
}

#[test]
fn unknown_step_kind_is_reported_where_written() {
    let e = errors(
        "sources:\n  a: { kind: stdin }\nplugins: {}\nsteps:\n  - name: s\n    kind: flter\n    plugin: p\nsinks:\n  o: { kind: stdout }\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("/nonexistent/p.yaml:6:"), "{e:?}");
    assert!(e[0].contains("flter"), "{e:?}");
}

#[test]
fn every_semantic_problem_is_reported_with_its_line() {
    let text = "\
sources:
  a: { kind: file }
plugins:
  p: { path: missing.wasm, sha256: abc }
steps:
  - name: s
    kind: map
    plugin: q
    from: nowhere
  - name: s
    kind: map
    plugin: p
sinks:
  o: { kind: stdout, from: s }
";
    let e = errors(text);
    let lines: Vec<&str> = e.iter().map(|s| s.split(':').nth(1).unwrap()).collect();
    assert!(e.iter().any(|m| m.contains("needs a `path`")), "{e:#?}");
    assert!(
        e.iter()
            .any(|m| m.contains("missing.wasm") && m.contains("not found")),
        "{e:#?}"
    );
    assert!(e.iter().any(|m| m.contains("64 hex digits")), "{e:#?}");
    assert!(e.iter().any(|m| m.contains("plugin `q`")), "{e:#?}");
    assert!(e.iter().any(|m| m.contains("`nowhere`")), "{e:#?}");
    assert!(
        e.iter().any(|m| m.contains("already defined on line 6")),
        "{e:#?}"
    );
    assert!(
        lines.contains(&"2")
            && lines.contains(&"4")
            && lines.contains(&"8")
            && lines.contains(&"9"),
        "{e:#?}"
    );
}

#[test]
fn linear_pipeline_defaults_wire_previous_step_and_last_step() {
    let dir = std::env::temp_dir();
    let plugin = dir.join("weir-spec-test-plugin.wasm");
    std::fs::write(&plugin, b"x").unwrap();
    let text = format!(
        "\
partitions: 3
error-policy: dead-letter
dead-letter: dlq
sources:
  in: {{ kind: file, path: in.jsonl }}
plugins:
  p: {{ path: {} }}
steps:
  - {{ name: a, kind: filter, plugin: p, config: {{ field: x }}, limits: {{ memory: 32MiB, time-per-batch: 1s }} }}
  - {{ name: b, kind: branch, plugin: p, error-policy: skip }}
sinks:
  out: {{ kind: stdout, from: b.left }}
  dlq: {{ kind: file, path: dlq.jsonl }}
",
        plugin.display()
    );
    let p = Pipeline::parse(&dir.join("p.yaml"), &text).unwrap();
    assert_eq!(p.partitions, 3);
    assert_eq!(p.steps[0].inputs[0].node, Node::Source(0));
    assert_eq!(p.steps[1].inputs[0].node, Node::Step(0));
    assert_eq!(p.steps[0].config_json, r#"{"field":"x"}"#);
    assert_eq!(p.steps[0].limits.max_memory_bytes, 32 << 20);
    assert_eq!(p.steps[0].limits.max_batch_millis, 1000);
    assert_eq!(p.steps[1].error_policy, ErrorPolicy::Skip);
    assert_eq!(p.steps[0].error_policy, ErrorPolicy::DeadLetter);
    let out = p.sinks.iter().find(|s| s.name == "out").unwrap();
    assert_eq!(out.inputs[0].port.as_deref(), Some("left"));
    let dlq = p.sinks.iter().position(|s| s.name == "dlq").unwrap();
    assert_eq!(p.dead_letter, Some(dlq));
    assert!(p.sinks[dlq].inputs.is_empty());
    assert_eq!(
        p.sources[0].path.as_deref(),
        Some(dir.join("in.jsonl").as_path())
    );
}

#[test]
fn cycles_and_dangling_outputs_are_errors() {
    let e = errors(
        "sources:\n  a: { kind: stdin }\nplugins: {}\nsteps:\n  - { name: x, kind: map, plugin: p, from: y }\n  - { name: y, kind: map, plugin: p, from: x }\n  - { name: z, kind: map, plugin: p, from: a }\nsinks:\n  o: { kind: stdout, from: x }\n",
    );
    assert!(e.iter().any(|m| m.contains("cycle")), "{e:#?}");
    assert!(e.iter().any(|m| m.contains("`z` goes nowhere")), "{e:#?}");
}
