//! Group-by and built-in aggregations on the embedded runtime, against
//! expectations computed by hand (the Kafka Streams oracle checks them on
//! generated input in `oracle.rs`).

use serde_json::{Value, json};
use weir_tests::{Fixture, repo, stderr, weir};

fn record(key: Option<&str>, value: Value, ts: i64) -> String {
    json!({"key": key, "value": value, "timestamp": ts}).to_string()
}

/// `(key, value, timestamp)` of each record a sink received.
fn triples(records: &[Value]) -> Vec<(Value, Value, i64)> {
    records
        .iter()
        .map(|r| {
            (
                r["key"].clone(),
                r["value"].clone(),
                r["timestamp"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn aggregations_emit_every_update_with_the_largest_timestamp() {
    let input = [
        record(Some("u1"), json!({"cat": "books", "amount": 10}), 100),
        record(Some("u2"), json!({"cat": "games", "amount": 5}), 200),
        record(Some("u3"), json!({"cat": "books", "amount": 2.5}), 150),
        record(Some("u1"), json!({"cat": "books", "amount": -4}), 300),
        record(Some("u2"), json!({"cat": 7, "amount": 1}), 50),
    ]
    .join("\n");
    let f = Fixture::new(
        "\
partitions: 1
sources:
  in: { kind: file, path: in.jsonl }
steps:
  - { name: by-cat, kind: group-by, key: { field: cat } }
  - name: stats
    kind: aggregate
    id: stats
    aggregations: { n: count, total: { sum: amount }, mean: { avg: amount }, lo: { min: amount }, hi: { max: amount } }
sinks:
  out: { kind: file, path: out.jsonl }
",
        &[("in.jsonl", &input)],
    );
    let (result, captured) = f.run();
    result.unwrap();
    let row = |n: i64, total: Value, mean: f64, lo: Value, hi: Value| json!({"n": n, "total": total, "mean": mean, "lo": lo, "hi": hi});
    assert_eq!(
        triples(&captured.records("out")),
        vec![
            (
                json!("books"),
                row(1, json!(10), 10.0, json!(10), json!(10)),
                100
            ),
            (
                json!("games"),
                row(1, json!(5), 5.0, json!(5), json!(5)),
                200
            ),
            // A float makes the sum one.
            (
                json!("books"),
                row(2, json!(12.5), 6.25, json!(2.5), json!(10)),
                150
            ),
            (
                json!("books"),
                row(3, json!(8.5), 8.5 / 3.0, json!(-4), json!(10)),
                300
            ),
            // A number field becomes its JSON text as the key.
            (json!("7"), row(1, json!(1), 1.0, json!(1), json!(1)), 50),
        ]
    );
}

#[test]
fn null_keys_and_tombstones_are_dropped_and_counted_bad_fields_go_to_the_policy() {
    let input = [
        record(Some("a"), json!({"n": 1}), 10),
        record(None, json!({"n": 2}), 20),
        record(Some("a"), Value::Null, 30),
        record(Some("a"), json!({"n": "3"}), 40),
        record(Some("b"), json!({"n": 4}), 50),
        record(Some("a"), json!({"n": 5}), 60),
    ]
    .join("\n");
    let f = Fixture::new(
        "\
partitions: 1
error-policy: dead-letter
dead-letter: dlq
sources:
  in: { kind: file, path: in.jsonl }
steps:
  - { name: g, kind: group-by }
  - { name: sums, kind: aggregate, id: sums, reduce: { sum: n } }
sinks:
  out: { kind: file, path: out.jsonl, from: sums }
  dlq: { kind: file, path: dlq.jsonl }
",
        &[("in.jsonl", &input)],
    );
    let out = weir(&["run", f.pipeline_path().to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(f.path(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert_eq!(
        triples(&read("out.jsonl")),
        vec![
            (json!("a"), json!({"n": 1}), 10),
            (json!("b"), json!({"n": 4}), 50),
            (json!("a"), json!({"n": 6}), 60),
        ]
    );
    let dlq = read("dlq.jsonl");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0]["headers"]["weir.error.kind"], "field");
    assert_eq!(
        dlq[0]["headers"]["weir.error.reason"],
        "aggregate `sums`: field `n` is a string (\"3\"), not a number"
    );
    assert_eq!(dlq[0]["headers"]["weir.error.offset"], "4");
    assert!(
        err.contains("2 records dropped (null key or value, as Kafka Streams drops them)"),
        "{err}"
    );
    assert!(
        err.contains("step `sums` dropped a record with a null key (as Kafka Streams does), at "),
        "{err}"
    );
}

#[test]
fn group_by_key_keeps_partitions_and_group_by_field_moves_records_to_their_key() {
    // 4 partitions keyed by user; counted by user (no move) and by
    // country (a move): the final count of each key is the same whatever
    // task ran it.
    let mut input = Vec::new();
    let mut by_user = std::collections::BTreeMap::<String, i64>::new();
    let mut by_country = std::collections::BTreeMap::<String, i64>::new();
    for i in 0..400 {
        let user = format!("u{}", (i * 7) % 23);
        let country = ["de", "fr", "jp", "br", "ca"][(i * 3) % 5];
        *by_user.entry(user.clone()).or_default() += 1;
        *by_country.entry(country.to_string()).or_default() += 1;
        input.push(record(Some(&user), json!({"country": country}), i as i64));
    }
    let f = Fixture::new(
        "\
partitions: 4
sources:
  in: { kind: file, path: in.jsonl }
steps:
  - { name: users, kind: group-by, from: in }
  - { name: per-user, kind: aggregate, id: per-user, aggregations: { n: count } }
  - { name: countries, kind: group-by, key: { field: country }, from: in }
  - { name: per-country, kind: aggregate, id: per-country, aggregations: { n: count } }
sinks:
  user-counts: { kind: file, path: users.jsonl, from: per-user }
  country-counts: { kind: file, path: countries.jsonl, from: per-country }
",
        &[("in.jsonl", &weir_tests::lines(&input))],
    );
    let topo = f.topology();
    assert!(!topo.pipeline.steps[0].repartitions);
    assert!(topo.pipeline.steps[2].repartitions);
    let (result, captured) = f.run();
    result.unwrap();
    let finals = |sink: &str| {
        let mut last = std::collections::BTreeMap::<String, i64>::new();
        let mut seen = std::collections::BTreeMap::<String, i64>::new();
        for r in captured.records(sink) {
            let key = r["key"].as_str().unwrap().to_string();
            let n = r["value"]["n"].as_i64().unwrap();
            // Each key's counts go up by one, in order: its records met in one task.
            let before = seen.insert(key.clone(), n).unwrap_or(0);
            assert_eq!(n, before + 1, "{sink}: {key} counted {before} then {n}");
            last.insert(key, n);
        }
        last
    };
    assert_eq!(finals("user-counts"), by_user);
    assert_eq!(finals("country-counts"), by_country);
}

#[test]
fn the_examples_pass_their_fixtures() {
    // Each on the embedded default and between Kafka topics (the test
    // driver stands in for the broker), with the same store contents.
    for example in [
        "category-stats",
        "clicks-per-user",
        "event-sourcing",
        "users-per-country",
        "order-totals",
        "hourly-revenue",
    ] {
        for file in ["pipeline.yaml", "kafka.yaml"] {
            let pipeline = repo().join(format!("examples/{example}/{file}"));
            let out = weir(&["test", pipeline.to_str().unwrap()]);
            assert!(out.status.success(), "{example}/{file}: {}", stderr(&out));
        }
        let store = |stem: &str| {
            let dir = repo().join(format!(
                "examples/{example}/tests/{stem}/basic/expected/stores"
            ));
            let mut lines: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .flat_map(|f| {
                    let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
                    text.lines().map(String::from).collect::<Vec<_>>()
                })
                .collect();
            lines.sort();
            lines
        };
        assert_eq!(store("pipeline"), store("kafka"), "{example}");
    }
}

/// Copies `from` (a folder) to `to`, recursively.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Issue 13, item 9: `weir test` checks what a store holds at the end of a
/// case when the case has `expected/stores/<id>.jsonl`, by key.
#[test]
fn weir_test_checks_expected_store_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let example = tmp.path().join("category-stats");
    copy_tree(&repo().join("examples/category-stats"), &example);
    let pipeline = example.join("pipeline.yaml");
    let stores = example.join("tests/pipeline/basic/expected/stores/category-stats.jsonl");
    let text = std::fs::read_to_string(&stores).unwrap();
    // The same contents in another order still pass.
    let reversed: Vec<&str> = text.lines().rev().collect();
    std::fs::write(&stores, reversed.join("\n")).unwrap();
    let out = weir(&["test", pipeline.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // One count wrong: the case fails naming the store and the key's line.
    std::fs::write(
        &stores,
        text.replace(
            "\"event_count\":6,\"total_amount\":570",
            "\"event_count\":7,\"total_amount\":570",
        ),
    )
    .unwrap();
    let out = weir(&["test", pipeline.to_str().unwrap()]);
    let report = weir_tests::stdout(&out) + &stderr(&out);
    assert!(!out.status.success(), "{report}");
    weir_tests::assert_contains(&report, "store `category-stats` differs (compared by key)");
    weir_tests::assert_contains(&report, "\"event_count\":7");
    weir_tests::assert_contains(&report, "garden");

    // A key the store does not hold fails too.
    std::fs::write(
        &stores,
        format!("{text}{{\"key\":\"toys\",\"value\":{{\"event_count\":1}}}}\n"),
    )
    .unwrap();
    let out = weir(&["test", pipeline.to_str().unwrap()]);
    assert!(!out.status.success());
    weir_tests::assert_contains(&weir_tests::stdout(&out), "toys");
}

/// Three records: `a` (n 1), `b` (n 2), `a` (n 3), at 10, 20 and 30.
fn a_b_a() -> String {
    [
        record(Some("a"), json!({"n": 1}), 10),
        record(Some("b"), json!({"n": 2}), 20),
        record(Some("a"), json!({"n": 3}), 30),
    ]
    .join("\n")
}

/// Issue 13, item 6: the stores live in RocksDB under the state directory,
/// one locked directory per task; an embedded run starts from empty state
/// each time (it re-reads its input, so it never counts a record twice).
#[test]
fn state_lives_under_the_state_directory_locked_and_fresh_per_embedded_run() {
    let input = a_b_a();
    let f = Fixture::new(
        "\
name: counts
partitions: 2
sources:
  in: { kind: file, path: in.jsonl }
steps:
  - { name: g, kind: group-by }
  - { name: c, kind: aggregate, id: per-key, aggregations: { n: count, total: { sum: n } } }
sinks:
  out: { kind: file, path: out.jsonl, from: c }
",
        &[("in.jsonl", &input)],
    );
    let state = f.path("st");
    let run = || {
        let out = weir(&[
            "run",
            f.pipeline_path().to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = std::fs::read_to_string(f.path("out.jsonl")).unwrap();
        let mut last = std::collections::BTreeMap::new();
        for l in text.lines() {
            let r: Value = serde_json::from_str(l).unwrap();
            last.insert(r["key"].as_str().unwrap().to_string(), r["value"].clone());
        }
        last
    };
    let want = std::collections::BTreeMap::from([
        ("a".to_string(), json!({"n": 2, "total": 4})),
        ("b".to_string(), json!({"n": 1, "total": 2})),
    ]);
    assert_eq!(run(), want);
    // Both tasks' directories, each marked as this application's.
    for task in ["0_0", "0_1"] {
        let marker = std::fs::read_to_string(state.join(task).join(".weir-state")).unwrap();
        assert!(marker.contains("counts"), "{marker}");
        assert!(state.join(task).join("rocksdb").is_dir());
    }
    // A second run counts from empty state again, not on top of the first.
    assert_eq!(run(), want);

    // While a process holds a task's state, another cannot use it.
    let mut holder = std::process::Command::new(weir_tests::weir_bin())
        .args(["run", "--quiet", f.pipeline_path().to_str().unwrap()])
        .args(["--input", "in=-", "--output", "out=-"])
        .args(["--state-dir", state.to_str().unwrap()])
        .env("WEIR_CACHE_DIR", weir_tests::cache_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = holder.stdin.take().unwrap();
    use std::io::{BufRead as _, Write as _};
    // Both keys, so both tasks open their stores; their updates coming out
    // says they have.
    writeln!(stdin, "{}", record(Some("a"), json!({"n": 1}), 10)).unwrap();
    writeln!(stdin, "{}", record(Some("b"), json!({"n": 1}), 10)).unwrap();
    stdin.flush().unwrap();
    let mut updates = std::io::BufReader::new(holder.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        updates.next().expect("an update").unwrap();
    }
    let out = weir(&[
        "run",
        f.pipeline_path().to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let refused = stderr(&out);
    weir_tests::assert_contains(&refused, "is in use: another process holds its lock");
    drop(stdin);
    let held = holder.wait_with_output().unwrap();
    assert!(held.status.success(), "{}", stderr(&held));
}

/// Issue 14, item 3: `weir state list|dump|reset` show and reset a stopped
/// pipeline's stores, step by step; a running pipeline's are refused (its
/// tasks are locked).
#[test]
fn weir_state_lists_dumps_and_resets_a_stopped_pipelines_stores() {
    let input = a_b_a();
    let f = Fixture::new(
        "\
name: inspected
partitions: 2
sources:
  in: { kind: file, path: in.jsonl }
steps:
  - { name: g, id: g, kind: group-by }
  - { name: c, kind: aggregate, id: per-key, aggregations: { n: count, total: { sum: n } } }
  - { name: l, kind: aggregate, id: newest, from: g, reduce: latest }
sinks:
  out: { kind: file, path: out.jsonl, from: [c, l] }
",
        &[("in.jsonl", &input)],
    );
    let pipeline = f.pipeline_path();
    let pipeline = pipeline.to_str().unwrap();
    let state = f.path("st");
    let state = state.to_str().unwrap();
    let state_cmd = |args: &[&str]| {
        let mut all = vec!["state"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[pipeline, "--state-dir", state]);
        weir(&all)
    };
    let ok = |out: std::process::Output| {
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let out = weir(&["run", pipeline, "--state-dir", state]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The run's summary counts them: two steps' stores in two tasks.
    let said = stderr(&out);
    assert!(
        said.contains(&format!("weir: state: 4 stores in {state}, about ")),
        "{said}"
    );

    // Each step's store in both tasks (in the pipeline's step order), the
    // two keys between them.
    let listed = ok(state_cmd(&["list"]));
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let steps: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        steps,
        vec![
            ("per-key", "0_0"),
            ("newest", "0_0"),
            ("per-key", "0_1"),
            ("newest", "0_1"),
        ],
        "{listed}"
    );
    for step in ["per-key", "newest"] {
        let keys: u64 = rows
            .iter()
            .filter(|r| r[0] == step)
            .map(|r| r[2].parse::<u64>().unwrap())
            .sum();
        assert_eq!(keys, 2, "{listed}");
    }
    // On the embedded default nothing is restored from a changelog.
    assert!(rows.iter().all(|r| r[4] == "-"), "{listed}");

    let dumped = ok(state_cmd(&["dump", "--step", "per-key"]));
    let mut lines: Vec<Value> = dumped
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.sort_by_key(|v| v["key"].as_str().unwrap().to_string());
    for v in &mut lines {
        let task = v.as_object_mut().unwrap().remove("task").unwrap();
        assert!(task == "0_0" || task == "0_1", "{dumped}");
    }
    assert_eq!(
        lines,
        vec![
            json!({"step": "per-key", "key": "a", "value": {"n": 2, "total": 4}, "timestamp": 30}),
            json!({"step": "per-key", "key": "b", "value": {"n": 1, "total": 2}, "timestamp": 20}),
        ]
    );
    let newest = ok(state_cmd(&["dump", "--step", "newest"]));
    assert!(
        newest.contains(r#""key":"a","value":{"n":3},"timestamp":30"#),
        "{newest}"
    );

    // An unknown step is named with the ones there are.
    let out = state_cmd(&["dump", "--step", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no stateful step has id `nope` (the pipeline's: per-key, newest)"),
        "{}",
        stderr(&out)
    );

    // Resetting one step keeps the other's store.
    let reset = ok(state_cmd(&["reset", "--step", "per-key"]));
    assert_eq!(
        reset.matches("removed store `per-key` of task").count(),
        2,
        "{reset}"
    );
    let listed = ok(state_cmd(&["list"]));
    assert!(!listed.contains("per-key"), "{listed}");
    assert!(listed.contains("newest"), "{listed}");
    // Resetting all removes every task's folder.
    let reset = ok(state_cmd(&["reset"]));
    assert_eq!(reset.matches("removed task").count(), 2, "{reset}");
    let listed = ok(state_cmd(&["list"]));
    assert!(listed.contains("no stores"), "{listed}");

    // On Kafka the changelogs keep the state: a reset says so, and takes
    // --local to remove this machine's copy only.
    let kafka = repo().join("examples/category-stats/kafka.yaml");
    let out = weir(&[
        "state",
        "reset",
        kafka.to_str().unwrap(),
        "--state-dir",
        state,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("category-stats-category-stats-changelog")
            && stderr(&out).contains("--local"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn two_aggregates_of_one_group_by_run_in_one_sub_topology() {
    let input = [
        record(Some("a"), json!({"c": "x", "n": 1}), 1),
        record(Some("b"), json!({"c": "y", "n": 2}), 2),
        record(Some("c"), json!({"c": "x", "n": 4}), 3),
    ]
    .join("\n");
    let f = Fixture::new(
        "\
partitions: 2
sources:
  in: { kind: file, path: in.jsonl }
steps:
  - { name: g, kind: group-by, key: { field: c } }
  - { name: counts, kind: aggregate, id: counts, from: g, aggregations: { n: count } }
  - { name: sums, kind: aggregate, id: sums, from: g, aggregations: { s: { sum: n } } }
sinks:
  o1: { kind: file, path: o1.jsonl, from: counts }
  o2: { kind: file, path: o2.jsonl, from: sums }
",
        &[("in.jsonl", &input)],
    );
    let (result, captured) = f.run();
    result.unwrap();
    let mut counts = triples(&captured.records("o1"));
    let mut sums = triples(&captured.records("o2"));
    counts.sort_by_key(|t| t.2);
    sums.sort_by_key(|t| t.2);
    assert_eq!(
        counts,
        vec![
            (json!("x"), json!({"n": 1}), 1),
            (json!("y"), json!({"n": 1}), 2),
            (json!("x"), json!({"n": 2}), 3),
        ]
    );
    assert_eq!(
        sums,
        vec![
            (json!("x"), json!({"s": 1}), 1),
            (json!("y"), json!({"s": 2}), 2),
            (json!("x"), json!({"s": 5}), 3),
        ]
    );
}

/// `weir validate --against OLD NEW`: per stateful step, whether the
/// change keeps its state, starts it empty, or is refused (exit 1).
#[test]
fn weir_validate_against_an_old_file_says_what_happens_to_each_store() {
    let old = repo().join("examples/category-stats/pipeline.yaml");
    let text = std::fs::read_to_string(&old).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::copy(
            repo().join("examples/category-stats/events.jsonl"),
            dir.path().join("events.jsonl"),
        )
        .unwrap();
        path
    };
    let check = |new: &std::path::Path| {
        weir(&[
            "validate",
            new.to_str().unwrap(),
            "--against",
            old.to_str().unwrap(),
        ])
    };

    let same = write("same.yaml", &text.replace("avg_amount", "mean_amount"));
    let out = check(&same);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = weir_tests::stdout(&out);
    assert!(
        said.contains("keeps    category-stats (step `category-stats`): its state carries on"),
        "{said}"
    );

    let rekeyed = write(
        "rekeyed.yaml",
        &text.replace(
            "key: { field: category }          # re-keys",
            "key: { field: user }  # re-keys",
        ),
    );
    let out = check(&rekeyed);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = weir_tests::stdout(&out);
    assert!(said.contains("refused  category-stats (step `category-stats`): its keys change from field category to field user"), "{said}");

    let new_id = write(
        "new-id.yaml",
        &text.replace("id: category-stats ", "id: category-stats-v2 "),
    );
    let out = check(&new_id);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = weir_tests::stdout(&out);
    assert!(
        said.contains(
            "resets   category-stats-v2 (step `category-stats`): a new id: the step starts empty"
        ),
        "{said}"
    );
    assert!(
        said.contains("dropped  category-stats (step `category-stats`)"),
        "{said}"
    );
}
