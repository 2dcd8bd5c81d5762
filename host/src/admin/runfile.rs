//! The run file: how the CLI finds a running pipeline's admin API.
//!
//! `weir run PIPELINE` writes `.weir/<file stem>.<pid>.run` beside the
//! pipeline file (JSON: pipeline name, pid, admin URL: `http://127.0.0.1:40113`, or
//! `https://...` when the API speaks TLS), readable by
//! its owner only, and removes it when the run ends. The pid is in the
//! name so that several processes of one pipeline (on Kafka) each have
//! their own. A run file whose process is gone (after a crash or a kill)
//! is stale: it is ignored, and the next `weir run` of that pipeline
//! removes it.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AdminError, AdminUrl};

/// What a run file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The pipeline's name.
    pub pipeline: String,
    pub pid: u32,
    /// Where its admin API answers, from this machine. (Run files from
    /// before TLS hold a bare `IP:PORT`, read as `http://`.)
    pub admin: AdminUrl,
}

/// The folder of `pipeline_file`'s run files: `.weir` beside it.
pub fn run_dir(pipeline_file: &Path) -> PathBuf {
    match pipeline_file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(".weir"),
        _ => PathBuf::from(".weir"),
    }
}

/// The stem every run file of `pipeline_file` starts with.
fn stem(pipeline_file: &Path) -> String {
    pipeline_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".to_string())
}

/// A run file of `pipeline_file`, and the pid its name carries.
fn run_files(pipeline_file: &Path) -> Vec<(PathBuf, u32)> {
    let prefix = format!("{}.", stem(pipeline_file));
    let Ok(entries) = std::fs::read_dir(run_dir(pipeline_file)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix(&prefix)?
                .strip_suffix(".run")?
                .parse()
                .ok()?;
            Some((entry.path(), pid))
        })
        .collect()
}

/// Whether process `pid` exists (Linux: it has a `/proc` entry).
fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The runs of `pipeline_file` whose process is alive, from their run
/// files; stale and unreadable ones are left out.
pub fn live_runs(pipeline_file: &Path) -> Vec<RunInfo> {
    let mut runs: Vec<RunInfo> = run_files(pipeline_file)
        .into_iter()
        .filter(|(_, pid)| alive(*pid))
        .filter_map(|(path, _)| serde_json::from_slice(&std::fs::read(path).ok()?).ok())
        .collect();
    runs.sort_by_key(|r| r.pid);
    runs
}

/// This process's run file; dropping it removes it.
#[derive(Debug)]
pub struct RunFile {
    path: PathBuf,
}

impl RunFile {
    /// Writes `info` as `pipeline_file`'s run file for this process
    /// (owner-only, complete before it appears), and removes the stale
    /// run files of that pipeline.
    pub fn write(pipeline_file: &Path, info: &RunInfo) -> Result<RunFile, AdminError> {
        for (stale, pid) in run_files(pipeline_file) {
            if !alive(pid) {
                let _ = std::fs::remove_file(stale);
            }
        }
        let dir = run_dir(pipeline_file);
        let path = dir.join(format!("{}.{}.run", stem(pipeline_file), info.pid));
        let failed = |cause| AdminError::RunFile {
            path: path.clone(),
            cause,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(failed)?;
        let partial = path.with_extension("run.partial");
        let _ = std::fs::remove_file(&partial);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(failed)?;
        let text = serde_json::to_string_pretty(info).expect("a run file serialises");
        file.write_all(format!("{text}\n").as_bytes())
            .map_err(failed)?;
        std::fs::rename(&partial, &path).map_err(failed)?;
        Ok(RunFile { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_run_file_is_owner_only_found_while_alive_and_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("orders.yaml");
        // A stale one from a process that is gone (pid beyond pid_max).
        std::fs::create_dir_all(run_dir(&pipeline)).unwrap();
        let stale = run_dir(&pipeline).join("orders.4194305.run");
        std::fs::write(
            &stale,
            r#"{"pipeline":"orders","pid":4194305,"admin":"127.0.0.1:1"}"#,
        )
        .unwrap();
        assert_eq!(live_runs(&pipeline), vec![]);
        let info = RunInfo {
            pipeline: "orders".into(),
            pid: std::process::id(),
            admin: "https://127.0.0.1:7070".parse().unwrap(),
        };
        let file = RunFile::write(&pipeline, &info).unwrap();
        assert!(!stale.exists(), "the stale run file is removed");
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(live_runs(&pipeline), vec![info.clone()]);
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(
            text.contains(r#""admin": "https://127.0.0.1:7070""#),
            "{text}"
        );
        // Another pipeline in the same folder has none.
        assert_eq!(live_runs(&dir.path().join("other.yaml")), vec![]);
        let path = file.path().to_path_buf();
        drop(file);
        assert!(!path.exists());
        assert_eq!(live_runs(&pipeline), vec![]);
    }
}
