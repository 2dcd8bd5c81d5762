//! The topology test driver (`weir test`): feeds fixture files to the
//! sources, captures every sink, and compares each with its expected file.
//!
//! A case is a folder with `input/<source>.jsonl` for every source and
//! `expected/<sink>.jsonl` for the sinks that should receive records (a sink
//! without an expected file must receive nothing), and optionally
//! `expected/stores/<id>.jsonl`, what a stateful step's store holds at the
//! end (one `{"key", "value", "timestamp"}` line per key; each case starts
//! from empty state in a directory of its own). Each pipeline file finds
//! its own cases (module `cases`); records compare as JSON, a field left out
//! of an expected record not compared at any depth (`compare`); `--bless`
//! writes what the sinks got without the run's own details (`bless`).

mod bless;
mod cases;
mod compare;

pub use bless::Bless;
pub use cases::{CASE_FILE, Case, CaseSettings, discover, for_pipeline};

use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::clock::{Clock, SystemClock};
use crate::io::sink::SinkOutput;
use crate::io::source::SourceInput;
use crate::operators::AtEnd;
use crate::operators::aggregate;
use crate::operators::{StoreSpec, TaskId};
use crate::runtime::{self, RunOptions, Topology};
use crate::state::{RocksDbStores, StateMode, StoreProvider, inspect};

/// How one sink compared.
#[derive(Debug, Clone)]
pub struct SinkResult {
    pub sink: String,
    /// `None` when it matched; otherwise a readable diff.
    pub diff: Option<String>,
}

/// How one case went.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: Case,
    /// The run itself failed (for example under the `fail` policy).
    pub run_error: Option<String>,
    /// Whether sinks were compared in order (one partition, one source).
    pub ordered: bool,
    pub sinks: Vec<SinkResult>,
    /// The stores whose contents the case checks (`expected/stores/`).
    pub stores: Vec<SinkResult>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.run_error.is_none()
            && self
                .sinks
                .iter()
                .chain(&self.stores)
                .all(|s| s.diff.is_none())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("no test cases in {}: expected input/<source>.jsonl files there or in its subfolders", .0.display())]
    NoCases(PathBuf),
    #[error("no test cases for {}: expected {}/<case>/input/<source>.jsonl", pipeline.display(), own.display())]
    NoCasesFor { pipeline: PathBuf, own: PathBuf },
    #[error(
        "{} holds cases directly, but its folder holds several pipeline files ({}), so they are no one's: \
         move each pipeline's cases to tests/<file stem>/<case>/ (this one's: {}/<case>/)",
        tests.display(), pipelines.join(", "), own.display()
    )]
    SharedCases {
        tests: PathBuf,
        pipelines: Vec<String>,
        own: PathBuf,
    },
    #[error(
        "{} is a case directly in tests/, beside the pipeline folder {}: \
         move it into the folder of the pipeline it tests (tests/<file stem>/)",
        stray.display(), own.display()
    )]
    MixedLayout { stray: PathBuf, own: PathBuf },
    #[error("case `{case}`: no input file for source `{source_name}` (expected {})", path.display())]
    MissingInput {
        case: String,
        source_name: String,
        path: PathBuf,
    },
    #[error("{}: {error}", path.display())]
    BadCaseFile { path: PathBuf, error: String },
    #[error("cannot read {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}:{line}: not a JSON record: {error}", path.display())]
    BadExpected {
        path: PathBuf,
        line: usize,
        error: String,
    },
}

/// Runs one case; with `bless`, writes what the sinks got as the new
/// expected files instead of comparing.
pub fn run_case(
    topo: &Topology,
    case: &Case,
    bless: Option<Bless>,
) -> Result<CaseResult, DriverError> {
    let p = &topo.pipeline;
    // Fixtures are envelope lines whatever the sources' and sinks' `format`.
    // Cases test the pipeline file as written: swaps made while it ran
    // elsewhere do not apply.
    let settings = case.settings()?;
    let mut options = RunOptions {
        fixtures: true,
        ignore_swap_records: true,
        at_end: AtEnd {
            close_windows: settings
                .end_of_input
                .map(|e| e == crate::pipeline::EndOfInput::CloseWindows),
            advance_stream_time_to: settings.advance_stream_time_to,
        },
        ..RunOptions::default()
    };
    for s in &p.sources {
        let path = case.dir.join("input").join(format!("{}.jsonl", s.name));
        if !path.is_file() {
            return Err(DriverError::MissingInput {
                case: case.name.clone(),
                source_name: s.name.clone(),
                path,
            });
        }
        options
            .inputs
            .insert(s.name.clone(), SourceInput::File(path));
    }
    let captures: Vec<Arc<Mutex<Vec<u8>>>> = p.sinks.iter().map(|_| Arc::default()).collect();
    for (s, buf) in p.sinks.iter().zip(&captures) {
        options
            .outputs
            .insert(s.name.clone(), SinkOutput::Capture(buf.clone()));
    }
    // A stateful pipeline keeps its state in a directory of the case's
    // own, starting empty (as Kafka Streams' test driver does), read back
    // after the run to compare with the expected store contents.
    let state = if p.is_stateful() {
        let dir = tempfile::tempdir().map_err(|error| DriverError::Io {
            path: std::env::temp_dir(),
            error,
        })?;
        let stores: Arc<dyn StoreProvider> = Arc::new(RocksDbStores::new(
            dir.path().to_path_buf(),
            p.application_id(),
            &p.state,
            StateMode::Fresh,
        ));
        options.stores = Some(stores.clone());
        Some((dir, stores))
    } else {
        None
    };
    // The run's own wall-clock span: a timestamp within it is a detail of
    // this run (see `bless`).
    let started = SystemClock.now_ms();
    let run_error = runtime::run(topo, options).err().map(|e| e.to_string());
    let run_span = started..=SystemClock.now_ms();
    // Order is only defined within one partition of one source.
    let ordered = p.partitions == 1 && p.sources.len() == 1;
    let mut sinks = Vec::new();
    for (s, buf) in p.sinks.iter().zip(&captures) {
        let actual_text =
            String::from_utf8_lossy(&buf.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        let path = case.dir.join("expected").join(format!("{}.jsonl", s.name));
        let what = format!("sink `{}`", s.name);
        sinks.push(check(
            &s.name,
            &what,
            &path,
            &actual_text,
            ordered,
            bless,
            &run_span,
        )?);
    }
    let mut stores = Vec::new();
    if let Some(state) = &state {
        for (id, contents) in store_contents(topo, state.1.as_ref()) {
            let path = case
                .dir
                .join("expected")
                .join("stores")
                .join(format!("{id}.jsonl"));
            let what = format!("store `{id}`");
            let actual_text = match contents {
                Ok(text) => text,
                Err(e) => {
                    stores.push(SinkResult {
                        sink: id,
                        diff: Some(format!("cannot read the store: {e}")),
                    });
                    continue;
                }
            };
            // A store's contents are compared only where the case has
            // them: its own expected file says it wants them checked.
            if bless.is_none() && !path.exists() {
                continue;
            }
            // Keys are unique, so the store compares as a set, whatever
            // order the expected file lists them in.
            stores.push(check(
                &id,
                &what,
                &path,
                &actual_text,
                false,
                bless,
                &run_span,
            )?);
        }
    }
    Ok(CaseResult {
        case: case.clone(),
        run_error,
        ordered,
        sinks,
        stores,
    })
}

/// Compares one output (a sink's records, a store's contents, as JSON
/// lines) with its expected file (none: nothing expected); with `bless`,
/// writes it as the expected file instead (only if there is something to
/// write or a file to replace).
fn check(
    name: &str,
    what: &str,
    path: &Path,
    actual_text: &str,
    ordered: bool,
    bless: Option<Bless>,
    run_span: &RangeInclusive<i64>,
) -> Result<SinkResult, DriverError> {
    let result = |diff| SinkResult {
        sink: name.to_string(),
        diff,
    };
    if let Some(bless) = bless {
        if !actual_text.is_empty() || path.exists() {
            write_file(path, &bless::expected_text(actual_text, bless, run_span))?;
        }
        return Ok(result(None));
    }
    let expected_text = if path.exists() {
        std::fs::read_to_string(path).map_err(|error| DriverError::Io {
            path: path.to_path_buf(),
            error,
        })?
    } else {
        String::new()
    };
    let expected = parse_lines(path, &expected_text)?;
    let actual = match parse_lines(Path::new("(actual output)"), actual_text) {
        Ok(a) => a,
        Err(e) => {
            return Ok(result(Some(format!(
                "the {what}'s output is not JSON lines: {e}\n{actual_text}"
            ))));
        }
    };
    Ok(result(compare::compare(&expected, &actual, ordered).map(
        |d| {
            let mut out = String::new();
            let _ = writeln!(out, "--- expected {}", path.display());
            let _ = writeln!(out, "+++ actual {what}");
            out + &d
        },
    )))
}

/// Each store's contents after a case, by store id: one JSON line per key
/// (`{"key", "value", "timestamp"}`, the value as the step last emitted
/// it), over every task of the step, in key order.
fn store_contents(
    topo: &Topology,
    stores: &dyn StoreProvider,
) -> Vec<(String, Result<String, String>)> {
    let p = &topo.pipeline;
    let mut out = Vec::new();
    for (j, step) in p.steps.iter().enumerate() {
        let Some(id) = step.id.as_ref().filter(|_| step.kind.has_store()) else {
            continue;
        };
        let mut lines = Vec::new();
        let mut read = || -> Result<(), String> {
            for partition in 0..p.partitions {
                let task = TaskId {
                    subtopology: topo.subtopology_of_step(j),
                    partition,
                };
                let entries = match step.window {
                    Some(_) => stores
                        .open_sorted(task, &crate::operators::windowed::store_spec(id, ""))
                        .and_then(|mut s| s.entries()),
                    None => stores
                        .open(task, &StoreSpec::key_value(id, ""))
                        .and_then(|mut s| s.entries()),
                }
                .map_err(|e| e.to_string())?;
                for (key, stored) in entries {
                    let shown = aggregate::shown_entry(
                        step.aggregation.as_ref(),
                        step.window.as_ref(),
                        &key,
                        &stored,
                    )
                    .map_err(|e| format!("key {}: {e}", String::from_utf8_lossy(&key)))?;
                    if let Some((key, shown)) = shown {
                        lines.push((key, shown.value, shown.timestamp));
                    }
                }
            }
            Ok(())
        };
        let read = read();
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        let text = read.map(|()| {
            lines
                .iter()
                .map(|(key, value, timestamp)| {
                    format!("{{{}}}\n", inspect::entry_fields(key, value, *timestamp))
                })
                .collect()
        });
        out.push((id.clone(), text));
    }
    out
}

fn write_file(path: &Path, text: &str) -> Result<(), DriverError> {
    let io = |error| DriverError::Io {
        path: path.to_path_buf(),
        error,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

fn parse_lines(path: &Path, text: &str) -> Result<Vec<compare::Record>, DriverError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map(compare::normalize)
                .map_err(|e| DriverError::BadExpected {
                    path: path.to_path_buf(),
                    line: i + 1,
                    error: e.to_string(),
                })
        })
        .collect()
}

/// Renders results for the terminal; returns whether all passed.
pub fn report(results: &[CaseResult]) -> (String, bool) {
    let mut out = String::new();
    let mut all = true;
    for r in results {
        if r.passed() {
            let _ = writeln!(out, "ok   {}", r.case.name);
            continue;
        }
        all = false;
        let _ = writeln!(out, "FAIL {}", r.case.name);
        if let Some(e) = &r.run_error {
            let _ = writeln!(out, "  the run failed: {e}");
        }
        let order = if r.ordered {
            ""
        } else {
            " (compared as a multiset)"
        };
        let sinks = r.sinks.iter().map(|s| (s, "sink", order));
        let stores = r.stores.iter().map(|s| (s, "store", " (compared by key)"));
        for (s, what, order) in sinks.chain(stores) {
            if let Some(d) = &s.diff {
                let _ = writeln!(out, "  {what} `{}` differs{order}:", s.sink);
                for line in d.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }
    let passed = results.iter().filter(|r| r.passed()).count();
    let _ = writeln!(out, "{passed} passed, {} failed", results.len() - passed);
    (out, all)
}
