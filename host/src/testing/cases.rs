//! Where a pipeline's test cases are.
//!
//! Each pipeline file has its own cases, in `tests/<file stem>/<case>/`
//! beside it (`tests/pipeline/basic/` for `pipeline.yaml`), so several
//! pipelines can share a folder. A folder that holds one pipeline file may
//! keep its cases directly in `tests/<case>/` (the first layout); in a
//! folder with several, such cases belong to none of them and are refused
//! rather than run for each. `--cases DIR` names the cases outright: `DIR`
//! itself, or each of its subfolders, that has an `input/` folder. A
//! case's optional `case.yaml` ([`CaseSettings`]) says how it runs.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::DriverError;
use crate::pipeline::EndOfInput;

/// One fixture folder.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
}

/// Finds the cases in `dir` (`--cases DIR`): `dir` itself if it is a case,
/// else its subfolders that are.
pub fn discover(dir: &Path) -> Result<Vec<Case>, DriverError> {
    if is_case(dir) {
        return Ok(vec![case(dir)]);
    }
    let cases = case_folders(dir)?;
    if cases.is_empty() {
        return Err(DriverError::NoCases(dir.to_path_buf()));
    }
    Ok(cases)
}

/// The cases of the pipeline in `file`: `tests/<stem>/<case>/` beside it,
/// or, in a folder with no other pipeline, `tests/<case>/`.
pub fn for_pipeline(file: &Path) -> Result<Vec<Case>, DriverError> {
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tests = folder.join("tests");
    let stem = file
        .file_stem()
        .map_or_else(|| "pipeline".into(), |s| s.to_string_lossy().into_owned());
    let own = tests.join(&stem);
    let loose = if is_case(&tests) {
        vec![case(&tests)]
    } else if tests.is_dir() {
        case_folders(&tests)?
    } else {
        Vec::new()
    };
    if own.is_dir() && !is_case(&own) {
        if let Some(stray) = loose.first() {
            return Err(DriverError::MixedLayout {
                stray: stray.dir.clone(),
                own,
            });
        }
        let cases = case_folders(&own)?;
        if cases.is_empty() {
            return Err(DriverError::NoCases(own));
        }
        return Ok(cases);
    }
    if loose.is_empty() {
        return Err(DriverError::NoCasesFor {
            pipeline: file.to_path_buf(),
            own,
        });
    }
    let pipelines = pipeline_files(&folder)?;
    if pipelines.len() > 1 {
        return Err(DriverError::SharedCases {
            tests,
            pipelines,
            own,
        });
    }
    Ok(loose)
}

fn is_case(dir: &Path) -> bool {
    dir.join("input").is_dir()
}

fn case(dir: &Path) -> Case {
    Case {
        name: dir
            .file_name()
            .map_or("case".into(), |n| n.to_string_lossy().into_owned()),
        dir: dir.to_path_buf(),
    }
}

/// The subfolders of `dir` that are cases, by name.
fn case_folders(dir: &Path) -> Result<Vec<Case>, DriverError> {
    let entries = std::fs::read_dir(dir).map_err(|error| DriverError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let mut cases: Vec<Case> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_case(p))
        .map(|p| case(&p))
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// The YAML files in `folder` (each may be a pipeline), by name.
fn pipeline_files(folder: &Path) -> Result<Vec<String>, DriverError> {
    let entries = std::fs::read_dir(folder).map_err(|error| DriverError::Io {
        path: folder.to_path_buf(),
        error,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
        })
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, files: &[&str]) {
        for f in files {
            let path = root.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
    }

    fn names(cases: &[Case]) -> Vec<&str> {
        cases.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn each_pipeline_has_its_own_folder_of_cases() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(
            root,
            &[
                "pipeline.yaml",
                "stdin.yaml",
                "tests/pipeline/a/input/in.jsonl",
                "tests/pipeline/b/input/in.jsonl",
                "tests/stdin/c/input/in.jsonl",
            ],
        );
        let cases = for_pipeline(&root.join("pipeline.yaml")).unwrap();
        assert_eq!(names(&cases), ["a", "b"]);
        let cases = for_pipeline(&root.join("stdin.yaml")).unwrap();
        assert_eq!(names(&cases), ["c"]);
        assert_eq!(cases[0].dir, root.join("tests/stdin/c"));
    }

    #[test]
    fn the_first_layout_holds_for_a_folder_with_one_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(
            root,
            &["pipeline.yaml", "in.jsonl", "tests/basic/input/in.jsonl"],
        );
        let cases = for_pipeline(&root.join("pipeline.yaml")).unwrap();
        assert_eq!(names(&cases), ["basic"]);
        // A second pipeline beside it: the cases are nobody's.
        touch(root, &["stdin.yml"]);
        let err = for_pipeline(&root.join("stdin.yml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pipeline.yaml, stdin.yml"), "{err}");
        assert!(err.contains("tests/stdin"), "{err}");
        let err = for_pipeline(&root.join("pipeline.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tests/pipeline"), "{err}");
    }

    #[test]
    fn cases_beside_pipeline_folders_are_refused_and_none_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(
            root,
            &[
                "pipeline.yaml",
                "tests/pipeline/a/input/in.jsonl",
                "tests/stray/input/in.jsonl",
            ],
        );
        let err = for_pipeline(&root.join("pipeline.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tests/stray"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        touch(empty.path(), &["other.yaml"]);
        let err = for_pipeline(&empty.path().join("other.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tests/other/<case>/input"), "{err}");
    }
}

/// What a case's `case.yaml` (optional, beside `input/`) says about how it
/// runs: what happens to windows still open when its input ends, and a
/// stream time to reach then, with no record (Kafka Streams' test driver
/// would need one piped in).
///
/// ```yaml
/// end-of-input: close-windows                  # or keep-open; default: as the pipeline says
/// advance-stream-time-to: 2026-11-30T11:00:00Z # or epoch milliseconds
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaseSettings {
    pub end_of_input: Option<EndOfInput>,
    pub advance_stream_time_to: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCaseSettings {
    end_of_input: Option<EndOfInput>,
    advance_stream_time_to: Option<serde_json::Value>,
}

/// The file that holds a case's settings.
pub const CASE_FILE: &str = "case.yaml";

impl Case {
    /// The case's `case.yaml`, or the defaults when it has none. A file
    /// that does not parse is an error naming it.
    pub fn settings(&self) -> Result<CaseSettings, DriverError> {
        let path = self.dir.join(CASE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CaseSettings::default());
            }
            Err(error) => return Err(DriverError::Io { path, error }),
        };
        let bad = |error: String| DriverError::BadCaseFile {
            path: path.clone(),
            error,
        };
        let raw: RawCaseSettings = serde_saphyr::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let advance_stream_time_to = match raw.advance_stream_time_to {
            None => None,
            Some(serde_json::Value::Number(n)) => Some(n.as_i64().ok_or_else(|| {
                bad(format!(
                    "`advance-stream-time-to` must be epoch milliseconds (an integer) or an RFC 3339 time, got {n}"
                ))
            })?),
            Some(serde_json::Value::String(s)) => Some(
                s.parse::<jiff::Timestamp>()
                    .map_err(|e| {
                        bad(format!(
                            "`advance-stream-time-to` must be an RFC 3339 time with an offset or epoch milliseconds, got {s:?} ({e})"
                        ))
                    })?
                    .as_millisecond(),
            ),
            Some(other) => {
                return Err(bad(format!(
                    "`advance-stream-time-to` must be epoch milliseconds or an RFC 3339 time, got {other}"
                )));
            }
        };
        Ok(CaseSettings {
            end_of_input: raw.end_of_input,
            advance_stream_time_to,
        })
    }
}
