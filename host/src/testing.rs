//! The topology test driver (`weir test`): feeds fixture files to the
//! sources, captures every sink, and compares each with its expected file.
//!
//! A case is a folder with `input/<source>.jsonl` for every source and
//! `expected/<sink>.jsonl` for the sinks that should receive records (a sink
//! without an expected file must receive nothing). `weir test` runs every
//! case under `<pipeline folder>/tests/` (or the folder given), each case
//! being either that folder itself or one of its subfolders.
//!
//! Records compare as JSON, so formatting does not matter, and a field left
//! out of an expected record (say `timestamp`) is not compared. With one
//! partition and one source the order must match; otherwise records of
//! different partitions or sources interleave freely, so each sink compares
//! as a multiset.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::io::sink::SinkOutput;
use crate::io::source::SourceInput;
use crate::runtime::{self, RunOptions, Topology};

/// One fixture folder.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
}

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
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.run_error.is_none() && self.sinks.iter().all(|s| s.diff.is_none())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("no test cases in {}: expected input/<source>.jsonl files there or in its subfolders", .0.display())]
    NoCases(PathBuf),
    #[error("case `{case}`: no input file for source `{source_name}` (expected {})", path.display())]
    MissingInput {
        case: String,
        source_name: String,
        path: PathBuf,
    },
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

/// Finds the cases in `dir`.
pub fn discover(dir: &Path) -> Result<Vec<Case>, DriverError> {
    if dir.join("input").is_dir() {
        let name = dir
            .file_name()
            .map_or("case".into(), |n| n.to_string_lossy().into_owned());
        return Ok(vec![Case {
            name,
            dir: dir.to_path_buf(),
        }]);
    }
    let entries = std::fs::read_dir(dir).map_err(|error| DriverError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let mut cases: Vec<Case> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("input").is_dir())
        .map(|p| Case {
            name: p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            dir: p,
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    if cases.is_empty() {
        return Err(DriverError::NoCases(dir.to_path_buf()));
    }
    Ok(cases)
}

/// Runs one case; with `bless`, writes what the sinks got as the new expected files.
pub fn run_case(topo: &Topology, case: &Case, bless: bool) -> Result<CaseResult, DriverError> {
    let p = &topo.pipeline;
    // Fixtures are envelope lines whatever the sources' and sinks' `format`.
    let mut options = RunOptions {
        fixtures: true,
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
    let run_error = runtime::run(topo, options).err().map(|e| e.to_string());
    // Order is only defined within one partition of one source.
    let ordered = p.partitions == 1 && p.sources.len() == 1;
    let mut sinks = Vec::new();
    for (s, buf) in p.sinks.iter().zip(&captures) {
        let actual_text =
            String::from_utf8_lossy(&buf.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        let path = case.dir.join("expected").join(format!("{}.jsonl", s.name));
        if bless {
            if !actual_text.is_empty() || path.exists() {
                write_file(&path, &actual_text)?;
            }
            sinks.push(SinkResult {
                sink: s.name.clone(),
                diff: None,
            });
            continue;
        }
        let expected_text = if path.exists() {
            std::fs::read_to_string(&path).map_err(|error| DriverError::Io {
                path: path.clone(),
                error,
            })?
        } else {
            String::new()
        };
        let expected = parse_lines(&path, &expected_text)?;
        let actual = match parse_lines(Path::new("(actual output)"), &actual_text) {
            Ok(a) => a,
            Err(e) => {
                sinks.push(SinkResult {
                    sink: s.name.clone(),
                    diff: Some(format!(
                        "the sink's output is not JSON lines: {e}\n{actual_text}"
                    )),
                });
                continue;
            }
        };
        let diff = compare(&expected, &actual, ordered).map(|d| {
            let mut out = String::new();
            let _ = writeln!(out, "--- expected {}", path.display());
            let _ = writeln!(out, "+++ actual sink `{}`", s.name);
            out + &d
        });
        sinks.push(SinkResult {
            sink: s.name.clone(),
            diff,
        });
    }
    Ok(CaseResult {
        case: case.clone(),
        run_error,
        ordered,
        sinks,
    })
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

fn parse_lines(path: &Path, text: &str) -> Result<Vec<Map<String, Value>>, DriverError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Map<String, Value>>(l).map_err(|e| DriverError::BadExpected {
                path: path.to_path_buf(),
                line: i + 1,
                error: e.to_string(),
            })
        })
        .collect()
}

/// Keeps only `fields` of a record, rendered canonically (sorted keys).
fn project(record: &Map<String, Value>, fields: &BTreeSet<String>) -> String {
    let kept: std::collections::BTreeMap<&String, &Value> =
        record.iter().filter(|(k, _)| fields.contains(*k)).collect();
    serde_json::to_string(&kept).expect("JSON values serialize")
}

fn fields_of(r: &Map<String, Value>) -> BTreeSet<String> {
    r.keys().cloned().collect()
}

/// `None` when `actual` matches `expected`, else a unified diff.
fn compare(
    expected: &[Map<String, Value>],
    actual: &[Map<String, Value>],
    ordered: bool,
) -> Option<String> {
    let (mut exp, mut act): (Vec<String>, Vec<String>) = if ordered {
        let exp: Vec<String> = expected.iter().map(|r| project(r, &fields_of(r))).collect();
        let act = actual
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let fields = expected.get(i).map_or_else(|| fields_of(r), fields_of);
                project(r, &fields)
            })
            .collect();
        (exp, act)
    } else {
        let common: BTreeSet<String> = expected
            .iter()
            .map(fields_of)
            .reduce(|a, b| a.intersection(&b).cloned().collect())
            .unwrap_or_else(|| {
                ["key", "value", "timestamp", "headers"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            });
        (
            expected.iter().map(|r| project(r, &common)).collect(),
            actual.iter().map(|r| project(r, &common)).collect(),
        )
    };
    if !ordered {
        exp.sort();
        act.sort();
    }
    if exp == act {
        return None;
    }
    let e = exp.join("\n") + "\n";
    let a = act.join("\n") + "\n";
    let diff = similar::TextDiff::from_lines(&e, &a);
    Some(diff.unified_diff().context_radius(3).to_string())
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
        for s in &r.sinks {
            if let Some(d) = &s.diff {
                let _ = writeln!(
                    out,
                    "  sink `{}` differs{}:",
                    s.sink,
                    if r.ordered {
                        ""
                    } else {
                        " (compared as a multiset)"
                    }
                );
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

/// Shortcut used by the CLI: `dir` or the pipeline's `tests/` folder.
pub fn cases_dir(topo: &Topology, dir: Option<&Path>) -> PathBuf {
    dir.map(Path::to_path_buf).unwrap_or_else(|| {
        topo.pipeline
            .file
            .parent()
            .map_or_else(|| PathBuf::from("tests"), |d| d.join("tests"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(lines: &[&str]) -> Vec<Map<String, Value>> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn absent_fields_are_not_compared_and_order_matters_when_ordered() {
        let exp = recs(&[r#"{"key":"a","value":{"x":1}}"#, r#"{"key":"b","value":2}"#]);
        let act = recs(&[
            r#"{"value":{"x":1},"key":"a","timestamp":5}"#,
            r#"{"key":"b","value":2,"timestamp":6}"#,
        ]);
        assert_eq!(compare(&exp, &act, true), None);
        let swapped = vec![act[1].clone(), act[0].clone()];
        assert!(compare(&exp, &swapped, true).is_some());
        assert_eq!(compare(&exp, &swapped, false), None);
        let diff = compare(&exp, &act[..1], true).unwrap();
        assert!(diff.contains("-{\"key\":\"b\",\"value\":2}"), "{diff}");
    }
}
