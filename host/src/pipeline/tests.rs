use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Pipeline, PipelineError> {
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
  - {{ name: a, kind: filter, plugin: p, config: {{ field: x }}, limits: {{ memory: 32MiB, time-per-batch: 1s, log-lines-per-second: 10, log-bytes-per-second: 1KiB }} }}
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
    assert_eq!(p.steps[0].limits.log_lines_per_second, 10);
    assert_eq!(p.steps[0].limits.log_bytes_per_second, 1024);
    assert_eq!(p.steps[1].limits.log_lines_per_second, 100, "the default");
    assert_eq!(p.steps[1].limits.log_bytes_per_second, 64 << 10);
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

#[test]
fn kafka_sources_and_sinks_are_checked_where_written() {
    let text = "\
partitions: 2
kafka:
  application-id: bad/id
  threads: 0
  commit-interval: soon
  properties: { linger.ms: 5, nested: { no: 1 } }
  consumer-properties: { enable.auto.commit: true }
sources:
  a: { kind: kafka }
  b: { kind: kafka, topic: 'not ok', path: x.jsonl }
  c: { kind: file, path: c.jsonl, topic: t }
sinks:
  o: { kind: kafka, topic: out, from: a, create: { partitions: 0 } }
";
    let e = errors(text);
    let has = |line: &str, text: &str| {
        e.iter()
            .any(|m| m.contains(&format!("p.yaml:{line}:")) && m.contains(text))
    };
    assert!(
        has("1", "Kafka sources have their topic's partitions"),
        "{e:#?}"
    );
    assert!(has("3", "application-id"), "{e:#?}");
    assert!(has("4", "kafka.threads"), "{e:#?}");
    assert!(has("5", "commit-interval"), "{e:#?}");
    assert!(has("6", "property `nested`"), "{e:#?}");
    assert!(has("7", "`enable.auto.commit` is set by weir"), "{e:#?}");
    assert!(has("9", "Kafka source `a` needs a `topic`"), "{e:#?}");
    assert!(has("10", "not a valid topic name"), "{e:#?}");
    assert!(has("10", "takes no `path`"), "{e:#?}");
    assert!(has("11", "file source `c` takes no `topic`"), "{e:#?}");
    assert!(has("11", "not both"), "{e:#?}");
    assert!(has("13", "create.partitions"), "{e:#?}");
    let twice = errors(
        "sources:\n  a: { kind: kafka, topic: t }\n  b: { kind: kafka, topic: t }\nsinks:\n  o: { kind: stdout, from: a }\n  p: { kind: stdout, from: b }\n",
    );
    assert!(
        twice
            .iter()
            .any(|m| m.contains("reads topic `t`, as source `a` does")),
        "{twice:#?}"
    );
}

#[test]
fn kafka_settings_have_defaults_and_pass_properties_as_text() {
    let p = parse(
        "\
name: orders
kafka:
  consumer-properties: { session.timeout.ms: 6000, check.crcs: true }
sources:
  in: { kind: kafka, topic: orders, create: { partitions: 3, config: { retention.ms: 1000 } } }
sinks:
  out: { kind: kafka, topic: orders-out }
",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let k = p.kafka.as_ref().unwrap();
    assert_eq!(k.application_id, "orders");
    assert_eq!(k.bootstrap, None, "taken from $KAFKA_BOOTSTRAP at run time");
    assert_eq!(k.commit_interval_ms, 1000);
    assert_eq!(
        k.consumer_properties,
        [
            ("check.crcs".to_string(), "true".to_string()),
            ("session.timeout.ms".to_string(), "6000".to_string())
        ]
    );
    assert!(p.reads_kafka());
    let topic = p.sources[0].topic.as_ref().unwrap();
    let create = topic.create.as_ref().unwrap();
    assert_eq!(
        (
            topic.name.as_str(),
            create.partitions,
            create.replication_factor
        ),
        ("orders", 3, 1)
    );
    assert_eq!(
        create.config,
        [("retention.ms".to_string(), "1000".to_string())]
    );
    assert_eq!(p.sinks[0].topic.as_ref().unwrap().create, None);
}

#[test]
fn a_repartition_step_runs_in_the_host_and_plugin_steps_need_a_plugin() {
    let text = "\
sources:
  a: { kind: stdin }
plugins:
  p: { path: p.wasm }
steps:
  - { name: r, kind: repartition, plugin: p }
  - { name: m, kind: map }
  - { name: c, kind: repartition, config: { x: 1 } }
sinks:
  o: { kind: stdout }
";
    let e = errors(text);
    assert!(
        e.iter()
            .any(|m| m.contains(":6:") && m.contains("runs in the host and takes no `plugin`")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains(":7:") && m.contains("`m` needs a `plugin`")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains(":8:") && m.contains("takes no `config` or `limits`")),
        "{e:#?}"
    );
}

#[test]
fn units_are_read_by_their_crates_and_misreadings_are_reported_where_written() {
    let p = parse(
        "\
kafka:
  commit-interval: 90s
sources:
  in: { kind: kafka, topic: orders }
sinks:
  out: { kind: kafka, topic: orders-out }
",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.kafka.as_ref().unwrap().commit_interval_ms, 90_000);
    let e = errors(
        "\
kafka:
  commit-interval: 2M
sources:
  in: { kind: stdin }
plugins: {}
steps:
  - { name: s, kind: map, plugin: p, limits: { memory: 64 parsecs, time-per-batch: 1h, output-per-record: 0.5MiB, log-lines-per-second: lots } }
sinks:
  out: { kind: stdout }
",
    );
    let at = |prefix: &str, text: &str| {
        e.iter()
            .any(|m| m.starts_with(&format!("/nonexistent/p.yaml:{prefix}")) && m.contains(text))
    };
    assert!(
        at(
            "2:20:",
            "`kafka.commit-interval`: `2M`: `M` is not accepted as a unit of time"
        ),
        "{e:#?}"
    );
    assert!(
        at(
            "7:",
            "step `s`: `memory`: `64 parsecs` is not a size such as"
        ),
        "{e:#?}"
    );
    assert!(
        at(
            "7:",
            "step `s`: `log-lines-per-second`: `lots` is not a whole number"
        ),
        "{e:#?}"
    );
    assert!(
        !e.iter()
            .any(|m| m.contains("time-per-batch") || m.contains("output-per-record")),
        "1h and 0.5MiB are fine: {e:#?}"
    );
}

#[test]
fn memory_limits_outside_what_wasm_can_have_and_directory_plugins_are_named() {
    let dir = std::env::temp_dir();
    let text = format!(
        "\
sources:
  a: {{ kind: stdin }}
plugins:
  p: {{ path: {} }}
steps:
  - {{ name: s, kind: map, plugin: p, limits: {{ memory: 1B }} }}
  - {{ name: t, kind: map, plugin: p, limits: {{ memory: 5GiB }} }}
sinks:
  o: {{ kind: stdout }}
",
        dir.display()
    );
    let e = errors(&text);
    assert!(
        e.iter()
            .any(|m| m.contains(":4:") && m.contains("is a directory")),
        "{e:#?}"
    );
    for (line, bytes) in [(6, "1 bytes"), (7, "5368709120 bytes")] {
        assert!(
            e.iter().any(|m| m.contains(&format!(":{line}:"))
                && m.contains("`memory` must be between 64KiB")
                && m.contains(bytes)),
            "{e:#?}"
        );
    }
}

#[test]
fn formats_key_and_timestamp_fields_and_sink_modes_are_read() {
    let p = parse(
        "
sources:
  a:
    kind: stdin
    format: text
  b: { kind: file, path: b.jsonl, format: json, key: { field: c.id }, timestamp: { field: ts, unit: rfc3339 } }
sinks:
  o: { kind: file, path: out/o.jsonl, mode: append, from: [a, b] }
  v: { kind: stdout, format: json, from: b }
",
    )
    .unwrap();
    assert_eq!(
        (p.sources[0].format, p.sources[0].value_format),
        (LineFormat::Text, Format::String)
    );
    assert!(p.sources[0].extract.is_empty());
    let b = &p.sources[1];
    assert_eq!(b.format, LineFormat::Json);
    assert_eq!(b.extract.key.as_ref().map(|k| k.as_str()), Some("c.id"));
    assert_eq!(
        b.extract.timestamp.as_ref().map(|t| t.unit),
        Some(crate::codec::extract::TimeUnit::Rfc3339)
    );
    assert_eq!(p.sinks[0].mode, SinkMode::Append);
    assert_eq!(
        p.sinks[0].path.as_deref(),
        Some(Path::new("/nonexistent/out/o.jsonl"))
    );
    assert_eq!(
        (p.sinks[1].format, p.sinks[1].mode),
        (LineFormat::Json, SinkMode::Truncate)
    );
    // The default is the envelope, so earlier pipelines read as before.
    let e = parse("sources:\n  a: { kind: stdin }\nsinks:\n  o: { kind: stdout }\n").unwrap();
    assert_eq!(
        (e.sources[0].format, e.sinks[0].format),
        (LineFormat::Envelope, LineFormat::Envelope)
    );
    let bad = errors(
        "sources:\n  a: { kind: stdin, format: json, key: { field: 'a..b' } }\nsinks:\n  o: { kind: stdout }\n",
    );
    assert!(bad[0].contains("dotted path"), "{bad:?}");
}

#[test]
fn overrides_replace_endpoints_by_the_file_rules() {
    let text = "
kafka: { bootstrap: x:1 }
sources:
  a: { kind: kafka, topic: a }
  b: { kind: kafka, topic: b }
sinks:
  o: { kind: kafka, topic: o, from: [a, b] }
";
    let with = |inputs: &[(&str, &str)], outputs: &[(&str, &str)]| {
        let places = |all: &[(&str, &str)]| {
            all.iter()
                .map(|(n, p)| (n.to_string(), Place::parse(p)))
                .collect()
        };
        parse(text).unwrap().with_overrides(&Overrides {
            inputs: places(inputs),
            outputs: places(outputs),
            state_dir: None,
        })
    };
    let e = with(&[("a", "a.jsonl")], &[]).unwrap_err();
    assert!(e.0.contains("Kafka source(s) a but not b"), "{e}");
    let e = with(&[("a", "-"), ("b", "-")], &[]).unwrap_err();
    assert!(e.0.contains("would all read stdin"), "{e}");
    let e = with(&[("a", "x"), ("a", "y")], &[]).unwrap_err();
    assert!(e.0.contains("replaced twice"), "{e}");
    let e = with(&[], &[("x", "-")]).unwrap_err();
    assert!(e.0.contains("no sink `x` (its sinks: o)"), "{e}");
    // Kafka sources all replaced, the Kafka sink kept: still a Kafka
    // pipeline's sink (any sink can follow embedded sources).
    let p = with(&[("a", "a.jsonl"), ("b", "-")], &[]).unwrap();
    assert_eq!(p.sources[0].kind, SourceKind::File);
    assert_eq!(p.sources[1].kind, SourceKind::Stdin);
    assert!(!p.reads_kafka() && p.kafka.is_some());
    let p = with(&[("a", "a.jsonl"), ("b", "-")], &[("o", "-")]).unwrap();
    assert_eq!(
        (p.sinks[0].kind, p.kafka.is_none()),
        (SinkKind::Stdout, true)
    );
}

/// Issue 11, item 7: every problem of shape in one report, each at its
/// line and column with a hint.
#[test]
fn every_schema_problem_is_reported_at_once_with_a_hint() {
    let text = "\
name: orders
partitons: 2
batch-size: lots
sources:
  orders:
    kind: file path
    path: orders.jsonl
plugins:
  p: { path: p.wasm, sha: abc }
steps:
  - name: big
    kind: filter
    plugn: p
    limits: { memroy: 1MiB }
  - kind: mapp
sinks:
  out:
  kind: stdout
";
    assert_eq!(
        errors(text),
        [
            "/nonexistent/p.yaml:2:1: unknown top-level field `partitons`; did you mean `partitions`?",
            "/nonexistent/p.yaml:3:13: `batch-size` must be a whole number, 0 or more, not text `lots`",
            "/nonexistent/p.yaml:6:11: source `orders`: `kind` is `file path`, not one of file | stdin | kafka; did you mean `file`?",
            "/nonexistent/p.yaml:9:22: plugin `p` has no field `sha`; did you mean `sha256`?",
            "/nonexistent/p.yaml:13:5: step `big` has no field `plugn`; did you mean `plugin`?",
            "/nonexistent/p.yaml:14:15: step `big`, `limits` has no field `memroy`; did you mean `memory`?",
            "/nonexistent/p.yaml:15:5: step 2 needs `name` (text)",
            "/nonexistent/p.yaml:15:11: step 2: `kind` is `mapp`, not one of filter | map | flat-map | branch | select-key | repartition | group-by | aggregate; did you mean `map`?",
            "/nonexistent/p.yaml:17:3: sink `out` is empty: it must be a mapping with kind, path, topic, create, from, key-format, value-format, format, mode, windowed-key; if `kind` below belongs to it, indent it under `out`",
            "/nonexistent/p.yaml:18:9: sink `kind` must be a mapping with kind, path, topic, create, from, key-format, value-format, format, mode, windowed-key, not text `stdout`; `kind` is a field of a sink: indent it under `out`",
        ]
    );
}

#[test]
fn a_section_left_empty_and_a_wrong_type_say_what_they_expect() {
    assert_eq!(
        errors("name: x\nsources: 5\nplugins:\nsteps: { a: 1 }\n"),
        [
            "/nonexistent/p.yaml:2:10: `sources` must be a mapping of source names to sources, not the number 5",
            "/nonexistent/p.yaml:3:1: `plugins` is empty: it must be a mapping of plugin names to plugins",
            "/nonexistent/p.yaml:4:8: `steps` must be a list of steps, not a mapping",
        ]
    );
    assert_eq!(
        errors("sources:\norders:\n  kind: stdin\n"),
        [
            "/nonexistent/p.yaml:1:1: `sources` is empty: it must be a mapping of source names to sources",
            "/nonexistent/p.yaml:2:1: unknown top-level field `orders`; `sources` above is empty: if `orders` belongs to it, indent it under `sources`",
        ]
    );
}

#[test]
fn a_line_indented_wrongly_in_block_style_is_named_as_such() {
    let e = errors("steps:\n  - name: a\n    kind: map\n   plugin: p\n");
    assert_eq!(
        e,
        [
            "/nonexistent/p.yaml:4:4: while parsing a block collection, did not find expected '-' indicator; \
          check this line's indentation: the fields of one mapping start in one column, and a field's own \
          fields are indented further than it"
        ]
    );
}

/// Issue 11, item 8: the engine's pool holds so many instances; a pipeline
/// that needs more is refused at `partitions`, saying which limit and why.
#[test]
fn partitions_times_plugin_steps_beyond_the_instance_pool_are_refused_at_partitions() {
    let pipeline = |steps: usize| {
        let mut text = String::from(
            "partitions: 1024\nsources:\n  a: { kind: stdin }\nplugins:\n  p: { path: p.wasm }\nsteps:\n",
        );
        for i in 0..steps {
            text.push_str(&format!("  - {{ name: s{i}, kind: map, plugin: p }}\n"));
        }
        text.push_str("  - { name: r, kind: repartition }\nsinks:\n  o: { kind: stdout }\n");
        text
    };
    let e = errors(&pipeline(7));
    assert!(
        e.contains(
            &"/nonexistent/p.yaml:1:13: `partitions: 1024` with 7 plugin steps needs 8200 plugin instances \
              (one per step per partition and one per step, and as many again for one step during a hot swap), more than the 8128 one process can hold: each \
              instance reserves address space for 2 memories of 4 GiB (so that bounds checks cost nothing), \
              and the engine reserves at most 64 TiB; use fewer partitions or plugin steps"
                .to_string()
        ),
        "{e:#?}"
    );
    let e = errors(&pipeline(6));
    assert!(!e.iter().any(|m| m.contains("plugin instances")), "{e:#?}");
}

/// On Kafka a process hosts up to 128 tasks: the same pool limit applies to
/// the plugin steps, said at the first step.
#[test]
fn plugin_steps_beyond_the_instance_pool_on_kafka_are_refused() {
    let pipeline = |steps: usize| {
        let mut text = String::from(
            "sources:\n  a: { kind: kafka, topic: t }\nplugins:\n  p: { path: p.wasm }\nsteps:\n",
        );
        for i in 0..steps {
            text.push_str(&format!("  - {{ name: s{i}, kind: map, plugin: p }}\n"));
        }
        text.push_str("sinks:\n  o: { kind: stdout }\n");
        text
    };
    let e = errors(&pipeline(63));
    assert!(
        e.iter().any(|m| m.starts_with(
            "/nonexistent/p.yaml:6:13: 63 plugin steps need up to 8256 plugin instances on Kafka, where a process hosts up to 128 tasks"
        ) && m.ends_with("use fewer plugin steps")),
        "{e:#?}"
    );
    let e = errors(&pipeline(62));
    assert!(!e.iter().any(|m| m.contains("plugin instances")), "{e:#?}");
}

/// Issue 12, item 3: output provenance is off unless the file asks for it,
/// and a value it does not know is refused where it is written.
#[test]
fn provenance_is_off_by_default_and_its_value_is_checked_where_written() {
    let body = "sources:\n  a: { kind: stdin }\nsinks:\n  o: { kind: stdout }\n";
    assert_eq!(parse(body).unwrap().provenance, Provenance::Off);
    let on = parse(&format!("provenance: header\n{body}")).unwrap();
    assert_eq!(on.provenance, Provenance::Header);
    let off = parse(&format!("provenance: off\n{body}")).unwrap();
    assert_eq!(off.provenance, Provenance::Off);
    assert_eq!(
        errors(&format!("name: x\nprovenance: headers\n{body}")),
        [
            "/nonexistent/p.yaml:2:13: `provenance` is `headers`, not one of off | header; did you mean `header`?"
        ]
    );
}

#[test]
fn step_ids_must_name_topics_and_be_unique() {
    let e = errors(
        "sources:\n  a: { kind: stdin }\nsteps:\n  - { name: r1, kind: repartition, id: by-user }\n  - { name: r2, kind: repartition, id: by-user }\n  - { name: r3, kind: repartition, id: 'by user' }\nsinks:\n  o: { kind: stdout }\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains(":5:") && e[0].contains("also the id of step `r1`"),
        "{e:?}"
    );
    assert!(e[1].contains(":6:") && e[1].contains("a-z, A-Z"), "{e:?}");
    let ok = parse(
        "sources:\n  a: { kind: stdin }\nsteps:\n  - { name: r1, kind: repartition, id: by-user.v2_x }\nsinks:\n  o: { kind: stdout }\n",
    )
    .unwrap();
    assert_eq!(ok.steps[0].id.as_deref(), Some("by-user.v2_x"));
}

const STATS: &str = "\
sources:
  e: { kind: stdin, format: json, key: { field: user } }
steps:
  - { name: by-cat, kind: group-by, key: { field: cat.name } }
  - name: stats
    kind: aggregate
    id: cat-stats
    aggregations: { n: count, total: { sum: amount }, avg: { avg: amount }, lo: { min: amount }, hi: { max: amount } }
sinks:
  o: { kind: stdout }
";

#[test]
fn group_by_and_aggregate_read_like_the_kafka_streams_dsl() {
    let p = parse(STATS).unwrap();
    let path = |s: &str| FieldPath::parse(s).unwrap();
    assert_eq!(
        p.steps[0].group_key,
        Some(GroupKey::Field(path("cat.name")))
    );
    assert!(p.steps[0].repartitions, "a new key moves records");
    assert_eq!(p.steps[1].id.as_deref(), Some("cat-stats"));
    assert_eq!(
        p.steps[1].aggregation,
        Some(Aggregation::Builtin(vec![
            ("n".into(), AggOp::Count),
            ("total".into(), AggOp::Sum(path("amount"))),
            ("avg".into(), AggOp::Avg(path("amount"))),
            ("lo".into(), AggOp::Min(path("amount"))),
            ("hi".into(), AggOp::Max(path("amount"))),
        ]))
    );
    let reduce = STATS.replace(
        "aggregations: { n: count, total: { sum: amount }, avg: { avg: amount }, lo: { min: amount }, hi: { max: amount } }",
        "reduce: latest",
    );
    assert_eq!(
        parse(&reduce).unwrap().steps[1].aggregation,
        Some(Aggregation::Reduce(Reduce::Latest))
    );
}

#[test]
fn group_by_the_existing_key_repartitions_only_after_a_key_changing_step() {
    let plugins = format!(
        "plugins:\n  p: {{ path: {}/Cargo.toml }}\n",
        env!("CARGO_MANIFEST_DIR")
    );
    let pipeline = |before: &str| {
        format!(
            "sources:\n  e: {{ kind: stdin }}\n{plugins}steps:\n{before}  - {{ name: g, kind: group-by }}\n  - {{ name: a, kind: aggregate, id: a, aggregations: {{ n: count }} }}\nsinks:\n  o: {{ kind: stdout }}\n"
        )
    };
    let repartitions = |before: &str| {
        let p = parse(&pipeline(before)).unwrap();
        p.steps.iter().find(|s| s.name == "g").unwrap().repartitions
    };
    assert!(!repartitions(""));
    assert!(!repartitions("  - { name: f, kind: filter, plugin: p }\n"));
    assert!(repartitions("  - { name: m, kind: map, plugin: p }\n"));
    assert!(!repartitions(
        "  - { name: m, kind: map, plugin: p, keeps-key: true }\n"
    ));
    assert!(repartitions(
        "  - { name: k, kind: select-key, plugin: p }\n  - { name: f, kind: filter, plugin: p }\n"
    ));
    // A repartition after the key change puts records where their keys are.
    assert!(!repartitions(
        "  - { name: k, kind: select-key, plugin: p }\n  - { name: r, kind: repartition }\n"
    ));
}

#[test]
fn stateful_steps_say_what_is_wrong_where_it_is_written() {
    let e = errors(
        "\
sources:
  e: { kind: stdin }
steps:
  - { name: m, kind: group-by, key: { field: 'a..b' } }
  - { name: s, kind: aggregate, aggregations: { n: { count: x }, t: total, u: { sum: y }, v: { avg: '' } } }
  - { name: r, kind: aggregate, id: r, reduce: { avg: x }, aggregations: { n: count } }
  - { name: f, kind: repartition, from: m, reduce: latest }
sinks:
  o: { kind: stdout, from: [s, r, f] }
",
    );
    let want = [
        ":4:46: step `m`: `a..b` is not a field path",
        ":5:13: step `s` needs an `id`",
        ":5:52: step `s`: `count` takes no field",
        ":5:69: step `s`: an aggregation `total` is not one weir knows; use count | sum | min | max | avg",
        ":5:94: step `s`: `` is not a field path",
        ":6:13: aggregate step `r` must read exactly one `group-by` step",
        ":6:48: step `r` needs exactly one of `aggregations` (built-in), `reduce` or `plugin` (an aggregator); it has `aggregations` and `reduce`",
        ":7:41: step `f` reads group-by step `m`; a group-by feeds `aggregate` steps only",
        ":7:52: step `f`: `reduce` belongs to an `aggregate` step, and this is a `repartition` step",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for w in want {
        assert!(e.iter().any(|e| e.contains(w)), "no `{w}` in {e:#?}");
    }
}

/// Issue 13, item 3: on Kafka a repartition writes a topic named by its id.
#[test]
fn a_repartition_on_kafka_needs_an_id_naming_its_topic() {
    let text = |id: &str| {
        format!(
            "name: shop\nkafka: {{ application-id: orders, internal-replication-factor: 3 }}\nsources:\n  a: {{ kind: kafka, topic: in }}\nsteps:\n  - {{ name: by-user, kind: repartition{id} }}\nsinks:\n  o: {{ kind: stdout }}\n"
        )
    };
    assert_eq!(
        errors(&text("")),
        [
            "/nonexistent/p.yaml:6:13: step `by-user`: a `repartition` on Kafka needs an `id`: it names the repartition topic (with `id: by-user` weir creates topic `orders-by-user-repartition`)"
        ]
    );
    let ok = parse(&text(", id: users")).unwrap();
    assert_eq!(
        ok.repartition_topic_of(0).as_deref(),
        Some("orders-users-repartition")
    );
    assert_eq!(ok.kafka.unwrap().internal_replication_factor, Some(3));
    // Embedded: records move in process, no id needed, no topic.
    let embedded = parse(
        "sources:\n  a: { kind: stdin }\nsteps:\n  - { name: r, kind: repartition }\nsinks:\n  o: { kind: stdout }\n",
    )
    .unwrap();
    assert_eq!(embedded.repartition_topic_of(0), None);
}

/// Issue 13, item 6: `state:` says where the stores live and bounds their
/// memory; a stateful pipeline without it keeps state under its
/// application id, which must then be a plain directory name.
#[test]
fn the_state_section_sets_the_directory_and_memory_bounds() {
    let stateful = |name: &str, state: &str| {
        format!(
            "name: {name}\n{state}sources:\n  e: {{ kind: stdin }}\nsteps:\n  - {{ name: g, kind: group-by }}\n  - {{ name: c, id: c, kind: aggregate, aggregations: {{ n: count }} }}\nsinks:\n  o: {{ kind: stdout, from: c }}\n"
        )
    };
    let p = parse(&stateful(
        "shop",
        "state: { dir: st, cache: 1MiB, block-cache: 2MiB, write-buffer: 3MiB }\n",
    ))
    .unwrap();
    assert_eq!(p.state.dir.as_deref(), Some(Path::new("/nonexistent/st")));
    assert_eq!(
        (
            p.state.cache_bytes,
            p.state.block_cache_bytes,
            p.state.write_buffer_bytes
        ),
        (1 << 20, 2 << 20, 3 << 20)
    );
    assert_eq!(p.application_id(), "shop");
    assert!(p.is_stateful());
    let p = parse(&stateful("shop", "")).unwrap();
    assert_eq!(p.state.dir, None);
    assert_eq!(
        p.state.cache_bytes,
        crate::state::StateSettings::default().cache_bytes
    );

    let e = errors(&stateful("'my shop'", ""));
    assert!(
        e.iter()
            .any(|e| e.contains("application id `my shop`, which is not a plain directory name")),
        "{e:#?}"
    );
    // With a directory of its own, any name will do.
    parse(&stateful("'my shop'", "state: { dir: st }\n")).unwrap();
    let e = errors(&stateful(
        "shop",
        "state:\n  cache: 0\n  block-cache: lots\n  write-buffer: 1MiB\n",
    ));
    let want = [
        ":3:10: `state.cache` must be above zero",
        ":4:16: `state.block-cache`: `lots` is not a size",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for w in want {
        assert!(e.iter().any(|e| e.contains(w)), "no `{w}` in {e:#?}");
    }
    let e = errors(&stateful("shop", "state: { dirr: x }\n"));
    assert!(
        e.iter()
            .any(|e| e.contains(":2:10: `state` has no field `dirr`; did you mean `dir`?")),
        "{e:#?}"
    );
}

#[test]
fn a_table_source_is_read_through_a_table_step_named_after_it() {
    let p = parse(
        "\
sources:
  users: { kind: stdin, table: true }
steps:
  - { name: by-country, kind: group-by, key: { field: country } }
  - { name: per-country, kind: aggregate, id: per-country, aggregations: { n: count, t: { sum: age } } }
sinks:
  o: { kind: stdout }
  rows: { kind: stdout, from: users }
",
    )
    .unwrap();
    assert!(p.sources[0].table);
    let table = &p.steps[2];
    assert_eq!(
        (table.name.as_str(), table.kind, table.id.as_deref()),
        ("users", StepKind::Table, Some("users"))
    );
    assert_eq!(table.inputs[0].node, Node::Source(0));
    // The group-by and the sink that name `users` read its table step.
    assert_eq!(p.steps[0].inputs[0].node, Node::Step(2));
    assert_eq!(p.sinks[1].inputs[0].node, Node::Step(2));
    assert!(p.steps[0].on_table && p.steps[1].on_table);
    assert!(p.steps[0].repartitions);
    assert!(p.is_stateful());
    // `kind: table` is not for files to write.
    let e = errors(
        "sources:\n  e: { kind: stdin }\nsteps:\n  - { name: t, kind: table }\nsinks:\n  o: { kind: stdout }\n",
    );
    assert!(
        e[0].contains("`kind` is `table`, not one of filter"),
        "{e:?}"
    );
}

#[test]
fn a_table_refuses_what_cannot_be_undone_and_steps_it_cannot_feed() {
    let plugins = format!(
        "plugins:\n  p: {{ path: {}/Cargo.toml }}\n",
        env!("CARGO_MANIFEST_DIR")
    );
    let e = errors(&format!(
        "\
sources:
  users: {{ kind: stdin, table: true }}
{plugins}steps:
  - {{ name: g, kind: group-by, key: {{ field: country }} }}
  - {{ name: a, kind: aggregate, id: a, aggregations: {{ n: count, lo: {{ min: age }}, hi: {{ max: age }} }} }}
  - {{ name: g2, kind: group-by, from: users }}
  - {{ name: b, kind: aggregate, id: b, reduce: latest }}
  - {{ name: f, kind: filter, plugin: p, from: users }}
  - {{ name: g3, kind: group-by, plugin: p, from: users }}
  - {{ name: c, kind: aggregate, id: users, reduce: {{ sum: age }} }}
sinks:
  o: {{ kind: stdout, from: [a, b, f, c] }}
"
    ));
    let want = [
        ":7:13: step `a` aggregates a table, and `lo: { min: age }` cannot be undone when a row changes or is deleted",
        ":7:13: step `a` aggregates a table, and `hi: { max: age }` cannot be undone",
        ":9:13: step `b` aggregates a table, and `reduce: latest` cannot be undone",
        ":10:47: step `f` reads table `users`: a table's updates go to a `group-by` (a table aggregation) or to sinks; a `filter` step on a table is not supported yet",
        ":11:13: group-by `g3` groups table `users` by a plugin's key, which is not supported yet",
        ":2:10: table source `users` keeps its rows in store `users`, and step `c` (line 12) has that id",
    ];
    for w in want {
        assert!(e.iter().any(|m| m.contains(w)), "missing {w:?} in {e:#?}");
    }
    assert_eq!(e.len(), want.len(), "{e:#?}");
}

#[test]
fn step_names_starting_with_weir_dot_are_refused() {
    let e = errors(
        "sources:\n  a: { kind: stdin }\nsteps:\n  - { name: weir.store/x, kind: group-by }\nsinks:\n  o: { kind: stdout }\n",
    );
    assert!(
        e.iter().any(
            |m| m.starts_with("/nonexistent/p.yaml:4:") && m.contains("`weir.` are weir's own")
        ),
        "{e:?}"
    );
}

#[test]
fn exactly_once_is_refused_at_each_sink_that_cannot_have_it_with_the_reason() {
    let text = "\
processing-guarantee: exactly-once
sources:
  a: { kind: stdin }
sinks:
  o: { kind: stdout }
  f: { kind: file, path: out.jsonl }
";
    let e = errors(text);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("/nonexistent/p.yaml:5:")
            && e[0].contains("sink `o` cannot be exactly-once, which `processing-guarantee` on line 1 asks for: what is printed cannot be taken back"),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("/nonexistent/p.yaml:6:")
            && e[1].contains("source a is stdin, which cannot be read again after a crash"),
        "{e:#?}"
    );
    // At-least-once, said or not, is what every sink gets.
    let p = parse(&text.replace("exactly-once", "at-least-once")).unwrap();
    assert_eq!(p.processing_guarantee, guarantee::Guarantee::AtLeastOnce);
    let all = guarantee::of(&p);
    assert!(
        all.iter()
            .all(|g| g.guarantee == guarantee::Guarantee::AtLeastOnce)
    );
    assert_eq!(
        guarantee::summary(&p),
        "delivery: at-least-once into f (source a is stdin, which cannot be read again after a crash); at-least-once into o (what is printed cannot be taken back)"
    );
}

#[test]
fn endpoints_given_on_the_command_line_are_held_to_the_files_guarantee() {
    // Files into a file: exactly-once, checkpointed; the overrides are
    // checked again, as their endpoints may lose it.
    let p = parse(
        "processing-guarantee: exactly-once\nsources:\n  a: { kind: file, path: in.jsonl }\nsinks:\n  o: { kind: file, path: out.jsonl }\n",
    )
    .unwrap();
    assert_eq!(
        guarantee::summary(&p),
        "delivery: exactly-once into o (checkpointed with the sources' positions and the state every 5s; a killed run resumes from its last checkpoint)"
    );
    let elsewhere = |input: &str, output: &str| {
        p.clone().with_overrides(&Overrides {
            inputs: vec![("a".into(), Place::parse(input))],
            outputs: vec![("o".into(), Place::parse(output))],
            state_dir: None,
        })
    };
    assert!(elsewhere("other.jsonl", "other-out.jsonl").is_ok());
    let e = elsewhere("other.jsonl", "-").unwrap_err();
    assert!(
        e.0.contains("`processing-guarantee: exactly-once`, and with these endpoints sink o cannot have it: what is printed cannot be taken back"),
        "{e}"
    );
    let e = elsewhere("-", "out.jsonl").unwrap_err();
    assert!(
        e.0.contains(
            "sink o cannot have it: source a is stdin, which cannot be read again after a crash"
        ),
        "{e}"
    );
}

#[test]
fn exactly_once_is_refused_where_a_resumed_run_could_differ() {
    let text = "\
processing-guarantee: exactly-once
partitions: 2
sources:
  a: { kind: file, path: a.jsonl }
steps:
  - { name: by-user, kind: group-by, key: { field: user } }
  - { name: counts, kind: aggregate, id: counts, aggregations: { n: count } }
sinks:
  f: { kind: file, path: out.jsonl, from: counts }
";
    // One source re-keyed across partitions: taken in input-line order.
    let p = parse(text).unwrap();
    assert_eq!(
        guarantee::of(&p)[0].guarantee,
        guarantee::Guarantee::ExactlyOnce
    );
    // Several sources are merged by timestamp, which a replay repeats; but
    // re-keyed across partitions their records have no one line order.
    let two = text
        .replace(
            "  a: { kind: file, path: a.jsonl }",
            "  a: { kind: file, path: a.jsonl }\n  b: { kind: file, path: b.jsonl }",
        )
        .replace(
            "key: { field: user } }",
            "key: { field: user }, from: [a, b] }",
        );
    let e = errors(&two);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("sink `f` cannot be exactly-once")
            && e[0].contains("step `by-user` re-keys the records of 2 sources across 2 partitions")
            && e[0].contains("exactly-once needs one source or `partitions: 1`"),
        "{e:#?}"
    );
    let p =
        parse(&two.replace("partitions: 2", "partitions: 1")).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        guarantee::of(&p)[0].guarantee,
        guarantee::Guarantee::ExactlyOnce
    );
    // Without asking, a file sink says what a crash does and how to ask.
    let p = parse(
        &text
            .replace("processing-guarantee: exactly-once\n", "")
            .replace("partitions: 2", "partitions: 1"),
    )
    .unwrap();
    assert!(
        guarantee::summary(&p).contains("a killed run starts over and writes it again (`processing-guarantee: exactly-once` resumes it where it stopped)"),
        "{}",
        guarantee::summary(&p)
    );
}
