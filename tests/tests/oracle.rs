//! The differential suite (issue 13, item 10): weir's group-by and built-in
//! aggregations against Kafka Streams on the same generated input.
//!
//! For each seed, tests/oracle/generate.py writes an input; every case (each
//! aggregation, grouped by the existing key and re-keyed by a field) runs in
//! the Kafka Streams oracle (tests/oracle, all cases in one JVM) and in
//! `weir run` twice: with one partition, compared record for record, and
//! with four, compared per key (tests/src/oracle.rs). `ORACLE_SEEDS=N` and
//! `ORACLE_RECORDS=N` run more (tests/oracle/README.md); needs Java 17+,
//! Maven and Python 3 (scripts/setup installs them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_tests::oracle::{self, PerKey};
use weir_tests::{cache_dir, repo, weir_bin};

/// The group-by fields, one per scalar type (generate.py): a seed re-keys by
/// `GROUP_FIELDS[seed % 5]`, so every type is covered by every 5 seeds.
const GROUP_FIELDS: [&str; 5] = ["category", "region", "vip", "score", "user.id"];

/// Key pools: few keys (long runs per key), some, many (mostly first updates).
const KEY_POOLS: [u32; 3] = [5, 50, 500];

/// How many failing runs are shown in full: the first of each kind of case
/// (op, grouping, partitions), up to this many; the others are counted.
const SHOWN_FAILURES: usize = 12;

/// A weir run of 2,000 records takes well under a second; one that takes
/// this long hangs, and is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Every aggregation, as an oracle topology without its `group_by`.
fn ops() -> Vec<(&'static str, Value)> {
    vec![
        ("count", json!({"op": "count"})),
        ("sum-int", json!({"op": "sum", "field": "amount"})),
        ("sum-mixed", json!({"op": "sum", "field": "qty"})),
        ("sum-float", json!({"op": "sum", "field": "price"})),
        ("min", json!({"op": "min", "field": "price"})),
        ("max", json!({"op": "max", "field": "amount"})),
        // Ties of 3 and 3.0: the earlier one wins, and is emitted as read.
        ("min-mixed", json!({"op": "min", "field": "qty"})),
        ("max-mixed", json!({"op": "max", "field": "qty"})),
        ("avg", json!({"op": "avg", "field": "amount"})),
        (
            "reduce-sum",
            json!({"op": "reduce", "field": "amount", "reducer": "sum"}),
        ),
        (
            "reduce-max",
            json!({"op": "reduce", "field": "price", "reducer": "max"}),
        ),
        ("latest", json!({"op": "latest"})),
        (
            "several",
            json!({"aggregations": {
                "event_count": "count",
                "total_qty": {"sum": "qty"},
                "avg_price": {"avg": "price"},
                "low": {"min": "amount"},
                "high": {"max": "price"},
            }}),
        ),
    ]
}

/// Windowed aggregations (`TimeWindows`, `SessionWindows`, grace, emit
/// changes or final),
/// as oracle topologies without `group_by`. Sizes, advances and graces are
/// multiples of the windowed input's 500 ms grid (`--round-ms 500`), so
/// records fall exactly on window starts, ends and grace edges.
fn window_ops() -> Vec<(&'static str, Value)> {
    vec![
        (
            "tumbling-count",
            json!({"op": "count", "window": {"size": 5000}}),
        ),
        (
            "tumbling-several-final",
            json!({"aggregations": {
                "n": "count",
                "total": {"sum": "amount"},
                "avg_price": {"avg": "price"},
                "low": {"min": "qty"},
            }, "window": {"size": 5000, "grace": 2000}, "emit": "final"}),
        ),
        (
            "hopping-sum",
            json!({"op": "sum", "field": "amount",
                   "window": {"size": 10000, "advance": 3000, "grace": 1000}}),
        ),
        (
            "hopping-count-final",
            json!({"op": "count", "window": {"size": 10000, "advance": 2500}, "emit": "final"}),
        ),
        (
            "tumbling-reduce-max-final",
            json!({"op": "reduce", "field": "price", "reducer": "max",
                   "window": {"size": 4000, "grace": 1500}, "emit": "final"}),
        ),
        (
            "hopping-latest",
            json!({"op": "latest", "window": {"size": 6000, "advance": 2000, "grace": 500}}),
        ),
        (
            "sliding-count",
            json!({"op": "count", "window": {"difference": 3000, "grace": 1000}}),
        ),
        (
            "sliding-several-final",
            json!({"aggregations": {
                "n": "count",
                "total": {"sum": "amount"},
                "avg_price": {"avg": "price"},
                "high": {"max": "qty"},
            }, "window": {"difference": 2000, "grace": 2000}, "emit": "final"}),
        ),
        (
            "sliding-latest",
            json!({"op": "latest", "window": {"difference": 1500}}),
        ),
        (
            "session-count",
            json!({"op": "count", "window": {"gap": 3000}}),
        ),
        (
            "session-sum-kept-longer",
            json!({"op": "sum", "field": "amount",
                   "window": {"gap": 3000, "grace": 1000, "retention": 4001}}),
        ),
        (
            "session-avg-final-kept-longer",
            json!({"op": "avg", "field": "price",
                   "window": {"gap": 2000, "retention": 60000}, "emit": "final"}),
        ),
        (
            "session-several-final",
            json!({"aggregations": {
                "n": "count",
                "total": {"sum": "qty"},
                "avg_amount": {"avg": "amount"},
                "low": {"min": "price"},
                "high": {"max": "qty"},
            }, "window": {"gap": 2000, "grace": 1000}, "emit": "final"}),
        ),
        (
            "session-reduce-sum",
            json!({"op": "reduce", "field": "amount", "reducer": "sum",
                   "window": {"gap": 2500, "grace": 500}}),
        ),
        (
            "session-latest-final",
            json!({"op": "latest", "window": {"gap": 1500}, "emit": "final"}),
        ),
        // The time from a field of the value (`at`), through weir's
        // timestamp extractor plugin and Kafka Streams' TimestampExtractor;
        // records without one take the partition's time. They read the
        // input with the times moved into the values (`with_time_field`).
        (
            "extracted-tumbling-sum-final",
            json!({"op": "sum", "field": "amount", "time_field": "at",
                   "window": {"size": 5000, "grace": 1000}, "emit": "final"}),
        ),
        (
            "extracted-session-count",
            json!({"op": "count", "time_field": "at", "window": {"gap": 2000}}),
        ),
    ]
}

/// The input `from` with each record's time moved into its value's field
/// `at` (every 17th record has none, and JSON values that are not objects
/// have nowhere to put it), and its own timestamp replaced by its line
/// number: a case that used the record's timestamp instead of the field's
/// would see other windows altogether.
fn with_time_field(from: &Path, to: &Path) {
    let mut out = String::new();
    for (i, line) in std::fs::read_to_string(from).unwrap().lines().enumerate() {
        let mut record: Value = serde_json::from_str(line).unwrap();
        let time = record["timestamp"].clone();
        if let Some(value) = record["value"].as_object_mut()
            && i % 17 != 16
        {
            value.insert("at".into(), time);
        }
        record["timestamp"] = Value::from(i as i64);
        out.push_str(&record.to_string());
        out.push('\n');
    }
    std::fs::write(to, out).unwrap();
}

/// What a table can aggregate (each takes a row's old value out of its
/// group), as oracle topologies without `group_by`.
fn table_ops() -> Vec<(&'static str, Value)> {
    vec![
        ("count", json!({"op": "count"})),
        ("sum-int", json!({"op": "sum", "field": "amount"})),
        ("sum-mixed", json!({"op": "sum", "field": "qty"})),
        ("sum-float", json!({"op": "sum", "field": "price"})),
        ("avg", json!({"op": "avg", "field": "amount"})),
        (
            "reduce-sum",
            json!({"op": "reduce", "field": "amount", "reducer": "sum"}),
        ),
        (
            "several",
            json!({"aggregations": {
                "rows": "count",
                "total_qty": {"sum": "qty"},
                "avg_price": {"avg": "price"},
            }}),
        ),
    ]
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// One oracle case and its weir runs.
struct Case {
    label: String,
    /// The kind of case, without the seed: `sum-int by key`, `count by field`.
    kind: String,
    dir: PathBuf,
    topology: Value,
    input: PathBuf,
    /// What the run with four partitions can check per key; `None`: only
    /// the run with one partition compares (a windowed case: stream time,
    /// and so which records are late, depends on how records are spread).
    per_key: Option<PerKey>,
}

impl Case {
    fn oracle_output(&self) -> PathBuf {
        self.dir.join("oracle.jsonl")
    }
}

/// A weir run of a case: which case, how many partitions.
struct Run<'a> {
    case: &'a Case,
    partitions: u32,
}

impl Run<'_> {
    /// Writes the pipeline, runs `weir run` and compares its output with the
    /// oracle's; the error says what differs or why weir failed.
    fn check(&self) -> Result<(), String> {
        let case = self.case;
        let dir = case.dir.join(format!("p{}", self.partitions));
        std::fs::create_dir_all(&dir).unwrap();
        let (pipeline, output) = (dir.join("pipeline.yaml"), dir.join("out.jsonl"));
        let late = dir.join("late.jsonl");
        let windowed = case.topology.get("window").is_some();
        let files = oracle::RunFiles {
            input: &case.input,
            output: &output,
            late: windowed.then_some(late.as_path()),
        };
        // Its own state directory (the default, `$XDG_STATE_HOME/weir/<app>`),
        // so runs side by side never share, or lock, one.
        let state = dir.join("state");
        let yaml = oracle::weir_pipeline(&case.topology, &files, self.partitions)?;
        std::fs::write(&pipeline, yaml).unwrap();
        let log = dir.join("weir.log");
        let mut child = Command::new(weir_bin())
            .args(["run", "--quiet"])
            .arg(&pipeline)
            .env("WEIR_CACHE_DIR", cache_dir())
            .env("XDG_STATE_HOME", &state)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot run weir");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > RUN_TIMEOUT {
                child.kill().unwrap();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The state is not needed to explain a difference, and 1,100 runs' worth is not small.
        let _ = std::fs::remove_dir_all(&state);
        let failed = match status {
            Some(s) if s.success() => None,
            Some(s) => Some(s.to_string()),
            None => Some(format!("killed after {}", secs(RUN_TIMEOUT))),
        };
        if let Some(why) = failed {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "weir run {} failed ({why}):\n{}",
                pipeline.display(),
                log.trim_end()
            ));
        }
        let expected = oracle::read_records(&case.oracle_output())?;
        if expected.is_empty() {
            // Two empty outputs would compare equal and prove nothing.
            return Err(format!(
                "the oracle emitted nothing for {}",
                case.oracle_output().display()
            ));
        }
        let actual = oracle::read_records(&output)?;
        let compared = match case.per_key {
            _ if self.partitions == 1 => oracle::compare_records(&expected, &actual),
            Some(per_key) => oracle::compare_per_key(&expected, &actual, per_key),
            None => unreachable!("windowed cases run on one partition"),
        };
        let compared = compared
            .map_err(|d| d.to_string())
            .and_then(|()| match windowed {
                true => oracle::compare_late(
                    &case.topology,
                    &case.input,
                    &late,
                    &oracle_dropped(&case.oracle_output()),
                ),
                false => Ok(()),
            });
        if compared.is_ok() {
            std::fs::remove_dir_all(&dir).unwrap(); // disk: only failing runs keep their files
        }
        compared.map_err(|d| {
            format!(
                "{d}\n  (oracle {}, weir {})",
                case.oracle_output().display(),
                output.display()
            )
        })
    }
}

/// What the oracle wrote of a windowed case's dropped records: the file
/// next to its output.
fn oracle_dropped(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".dropped");
    PathBuf::from(name)
}

/// Which kind of input and cases a differential suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suite {
    Streams,
    Tables,
    Windows,
}

/// Starts generate.py writing the input of `seed` to `path` (the seeds' inputs
/// are generated side by side). A table's input deletes more, and deletes
/// rows that never were. A windowed input has its timestamps on a 500 ms
/// grid, records up to 8 s late (past the windows' graces), and no
/// tombstones (Kafka Streams' windowed aggregations give them to the
/// aggregator, which cannot add a null).
fn generate(seed: u64, records: u64, keys: u32, suite: Suite, path: &Path) -> std::process::Child {
    let deletes: &[&str] = match suite {
        Suite::Tables => &["--tombstones", "0.15", "--ghosts", "0.03"],
        Suite::Windows => &[
            "--tombstones",
            "0",
            "--round-ms",
            "500",
            "--late-ms",
            "8000",
        ],
        Suite::Streams => &[],
    };
    Command::new("python3")
        .arg(repo().join("tests/oracle/generate.py"))
        .args([
            "--seed",
            &seed.to_string(),
            "--records",
            &records.to_string(),
        ])
        .args(["--keys", &keys.to_string()])
        .args(deletes)
        .stdout(std::fs::File::create(path).unwrap())
        .spawn()
        .expect("cannot run python3 (the generator needs Python 3)")
}

/// Runs every case of the manifest in one oracle JVM.
fn run_oracle(manifest: &Path) {
    let out = Command::new(repo().join("tests/oracle/run"))
        .arg("--manifest")
        .arg(manifest)
        .output()
        .expect("cannot run tests/oracle/run");
    assert!(
        out.status.success(),
        "the Kafka Streams oracle failed ({}); it needs Java 17+ and Maven (scripts/setup installs them):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn weir_aggregates_like_kafka_streams() {
    differential(Suite::Streams);
}

/// Windowed aggregations: tumbling and hopping windows, with and without
/// grace, emitting every change or only final results, against
/// `windowedBy(TimeWindows)` (and `suppress(untilWindowCloses)`); outputs
/// record for record, and which records were late (dead-lettered by weir;
/// Kafka Streams' `dropped-records` rose by each of the record's windows).
#[test]
fn weir_windows_like_kafka_streams() {
    differential(Suite::Windows);
}

/// Tables (`table: true` sources) and their aggregations: rows updated,
/// moved between groups and deleted (also rows that never were), counts
/// that reach zero, against `builder.table()` → `groupBy` → `aggregate`
/// with a subtractor.
#[test]
fn weir_aggregates_tables_like_kafka_streams() {
    differential(Suite::Tables);
}

/// One suite.
fn differential(suite: Suite) {
    let table = suite == Suite::Tables;
    let seeds = env_number("ORACLE_SEEDS", 25);
    let records = env_number("ORACLE_RECORDS", 2000);
    let tmp = tempfile::Builder::new()
        .prefix(match suite {
            Suite::Tables => "weir-oracle-table-",
            Suite::Windows => "weir-oracle-window-",
            Suite::Streams => "weir-oracle-",
        })
        .tempdir()
        .unwrap();
    let root = tmp.path();

    let started = Instant::now();
    let input = |seed: u64| root.join(format!("in-{seed}.jsonl"));
    let generators: Vec<_> = (1..=seeds)
        .map(|seed| {
            let keys = KEY_POOLS[seed as usize % KEY_POOLS.len()];
            generate(seed, records, keys, suite, &input(seed))
        })
        .collect();
    for mut g in generators {
        assert!(g.wait().unwrap().success(), "generate.py failed");
    }
    let mut cases = Vec::new();
    for seed in 1..=seeds {
        let input = input(seed);
        let field = GROUP_FIELDS[seed as usize % GROUP_FIELDS.len()];
        let ops = match suite {
            Suite::Streams => ops(),
            Suite::Tables => table_ops(),
            Suite::Windows => window_ops(),
        };
        let extracted = root.join(format!("in-{seed}-at.jsonl"));
        if suite == Suite::Windows {
            with_time_field(&input, &extracted);
        }
        for (op, base) in ops {
            let input = match base.get("time_field") {
                Some(_) => extracted.clone(),
                None => input.clone(),
            };
            for group_by in [None, Some(field)] {
                let mut topology = base.clone();
                topology["group_by"] = group_by.map_or(Value::Null, Value::from);
                if table {
                    topology["table"] = Value::Bool(true);
                }
                let order_dependent = matches!(op, "reduce-sum" | "reduce-max" | "latest");
                let per_key = match group_by {
                    _ if suite == Suite::Windows => None,
                    // A key's records stay in one partition, in input order.
                    None => Some(PerKey::Sequences),
                    // Re-keyed records of a key come from four upstream partitions.
                    Some(_) if order_dependent => Some(PerKey::Counts),
                    Some(_) => Some(PerKey::Finals),
                };
                let label = format!("seed {seed} {op} by {}", group_by.unwrap_or("key"));
                let kind = format!("{op} by {}", group_by.map_or("key", |_| "field"));
                let dir = root.join(format!("{seed}-{op}-{}", group_by.unwrap_or("key")));
                std::fs::create_dir_all(&dir).unwrap();
                let topology = oracle::oracle_topology(&topology).unwrap();
                cases.push(Case {
                    label,
                    kind,
                    dir,
                    topology,
                    input: input.clone(),
                    per_key,
                });
            }
        }
    }
    let mut manifest = String::new();
    for case in &cases {
        let topology = case.dir.join("topology.json");
        std::fs::write(&topology, case.topology.to_string()).unwrap();
        manifest += &format!(
            "{} {} {}\n",
            topology.display(),
            case.input.display(),
            case.oracle_output().display()
        );
    }
    let manifest_path = root.join("manifest");
    std::fs::write(&manifest_path, manifest).unwrap();
    let generated = started.elapsed();

    let started = Instant::now();
    run_oracle(&manifest_path);
    let oracle_time = started.elapsed();

    // Every case with one partition and (unless windowed) with four, on a
    // few threads.
    let runs: Vec<Run> = cases
        .iter()
        .flat_map(|case| {
            let partitions: &[u32] = match case.per_key {
                Some(_) => &[1, 4],
                None => &[1],
            };
            partitions
                .iter()
                .map(move |&partitions| Run { case, partitions })
        })
        .collect();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(why) = run.check() {
                        failures.lock().unwrap().push((run, why));
                    }
                }
            });
        }
    });
    let weir_time = started.elapsed();
    println!(
        "differential suite{}: {seeds} seeds x {records} records, {} cases, {} weir runs; \
         generator {}, oracle JVM {}, weir {} ({workers} at a time)",
        match suite {
            Suite::Tables => " (tables)",
            Suite::Windows => " (windows)",
            Suite::Streams => "",
        },
        cases.len(),
        runs.len(),
        secs(generated),
        secs(oracle_time),
        secs(weir_time)
    );
    let mut failures = failures.into_inner().unwrap();
    if failures.is_empty() {
        return;
    }
    // In case order, whichever thread ran them; then per kind of case.
    let index = |r: &Run| runs.iter().position(|x| std::ptr::eq(x, r)).unwrap();
    failures.sort_by_key(|(r, _)| index(r));
    let mut tally: BTreeMap<(String, u32), usize> = BTreeMap::new();
    let mut shown = Vec::new();
    for (run, why) in &failures {
        let n = tally
            .entry((run.case.kind.clone(), run.partitions))
            .or_default();
        if *n == 0 && shown.len() < SHOWN_FAILURES {
            shown.push(format!(
                "{} partitions {}: {why}",
                run.case.label, run.partitions
            ));
        }
        *n += 1;
    }
    let tally: Vec<String> = tally
        .iter()
        .map(|((kind, p), n)| format!("  {kind}, {p} partition(s): {n} of {seeds} seeds"))
        .collect();
    let kept = tmp.keep();
    panic!(
        "{} of {} weir runs differ from Kafka Streams or failed; files kept in {}\n\
         by kind of case:\n{}\n\nthe first of each kind:\n\n{}",
        failures.len(),
        runs.len(),
        kept.display(),
        tally.join("\n"),
        shown.join("\n\n")
    );
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
