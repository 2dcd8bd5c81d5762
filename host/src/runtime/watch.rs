//! `weir run --watch`, for development: when the plugin file of a step
//! changes (a rebuild), the step is swapped to it through the run's
//! [`RunControl`], as `weir swap` would.
//!
//! Each plugin file's folder is watched (a build tool may replace the file
//! rather than write it in place), and the events for the file are
//! debounced: a build writes a file several times. The file is then read
//! only once its size and modification time have held still for a while,
//! and swapped to only when its bytes differ from the version each step
//! runs. A refused swap (a half-written file, a broken build, another
//! kind or other ports) leaves the running version in place, is reported
//! with the reason, and the watch goes on: the next build is tried again.
//!
//! Plugins whose pipeline entry pins a `sha256` are not watched: the pin
//! says that exactly that file must run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use sha2::{Digest as _, Sha256};

use super::Topology;
use super::control::{RunControl, SwapError};

/// Events for a file are gathered until none came for this long.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// A file counts as complete once its size and modification time held
/// still for this long.
const SETTLE: Duration = Duration::from_millis(300);
/// How long a file may keep changing before this round gives up on it
/// (its next change starts another).
const SETTLE_AT_MOST: Duration = Duration::from_secs(60);
/// How long a swap refused as busy (another swap under way) is retried.
const BUSY_AT_MOST: Duration = Duration::from_secs(30);

/// What the watch reports, one line each (`weir run` prints them).
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// The pipeline has no plugin step: nothing to watch.
    NothingToWatch,
    /// `file` is watched for `steps`.
    Watching { file: PathBuf, steps: Vec<String> },
    /// `file` is not watched: its pipeline entry pins its sha256.
    Pinned { file: PathBuf, steps: Vec<String> },
    /// `step` now runs the new contents of `file`.
    Swapped {
        step: String,
        file: PathBuf,
        from: String,
        to: String,
        prepare: Duration,
        cutover: Duration,
    },
    /// The new contents of `file` were refused for `step`, which keeps its
    /// version.
    Refused {
        step: String,
        file: PathBuf,
        reason: String,
    },
    /// `file` changed but could not be read, or never held still.
    Unreadable { file: PathBuf, reason: String },
    /// The file watcher itself reported an error.
    WatchFailed(String),
}

impl std::fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |d: &str| d[..12.min(d.len())].to_string();
        match self {
            WatchEvent::NothingToWatch => {
                f.write_str("the pipeline has no plugin step, so there is nothing to watch")
            }
            WatchEvent::Watching { file, steps } => {
                write!(f, "watching {} (step {})", file.display(), names(steps))
            }
            WatchEvent::Pinned { file, steps } => write!(
                f,
                "not watching {} (step {}): the pipeline file pins its sha256",
                file.display(),
                names(steps)
            ),
            WatchEvent::Swapped {
                step,
                file,
                from,
                to,
                prepare,
                cutover,
            } => write!(
                f,
                "step `{step}` swapped to the new {}: {} -> {} (prepared in {prepare:.1?}, cut over in {cutover:.1?})",
                file.display(),
                short(from),
                short(to),
            ),
            WatchEvent::Refused { step, file, reason } => write!(
                f,
                "step `{step}` keeps its version: the new {} was refused: {reason}",
                file.display()
            ),
            WatchEvent::Unreadable { file, reason } => {
                write!(f, "cannot read the new {}: {reason}", file.display())
            }
            WatchEvent::WatchFailed(reason) => write!(f, "the file watch failed: {reason}"),
        }
    }
}

fn names(steps: &[String]) -> String {
    steps
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the watch could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}: {cause}", path.display())]
pub struct WatchError {
    path: PathBuf,
    cause: String,
}

/// A running watch; dropping it stops it.
pub struct PluginWatch {
    /// Dropping it stops the file watch and closes the channel, which ends
    /// the thread.
    _debouncer: Option<Debouncer<notify::RecommendedWatcher>>,
}

/// One watched plugin file: the steps that run it.
struct Watched {
    /// As the pipeline file resolved it (messages name it so).
    file: PathBuf,
    steps: Vec<String>,
}

/// Starts watching the plugin files of `topo`'s steps, swapping them
/// through `control` (the one the run was given), and reporting to
/// `report` (from the watch's own thread).
pub fn watch_plugins(
    topo: &Topology,
    control: Arc<RunControl>,
    report: impl Fn(WatchEvent) + Send + 'static,
) -> Result<PluginWatch, WatchError> {
    // Watched files by the path events name them by: the canonical folder
    // joined with the file name.
    let mut files: BTreeMap<PathBuf, Watched> = BTreeMap::new();
    let mut folders = BTreeSet::new();
    let mut plugin_steps = 0;
    for (i, entry) in topo.pipeline.plugins.iter().enumerate() {
        let steps: Vec<String> = topo
            .pipeline
            .steps
            .iter()
            .filter(|s| s.plugin == Some(i))
            .map(|s| s.name.clone())
            .collect();
        if steps.is_empty() {
            continue;
        }
        plugin_steps += steps.len();
        if entry.sha256.is_some() {
            report(WatchEvent::Pinned {
                file: entry.path.clone(),
                steps,
            });
            continue;
        }
        let failed = |cause: String| WatchError {
            path: entry.path.clone(),
            cause,
        };
        let name = entry
            .path
            .file_name()
            .ok_or_else(|| failed("not a file name".into()))?;
        let folder = match entry.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let folder = folder
            .canonicalize()
            .map_err(|e| failed(format!("its folder: {e}")))?;
        report(WatchEvent::Watching {
            file: entry.path.clone(),
            steps: steps.clone(),
        });
        files.insert(
            folder.join(name),
            Watched {
                file: entry.path.clone(),
                steps,
            },
        );
        folders.insert(folder);
    }
    if plugin_steps == 0 {
        report(WatchEvent::NothingToWatch);
    }
    if files.is_empty() {
        return Ok(PluginWatch { _debouncer: None });
    }
    let (tx, rx) = std::sync::mpsc::channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(DEBOUNCE, tx).map_err(|e| WatchError {
        path: folders.first().cloned().unwrap_or_default(),
        cause: e.to_string(),
    })?;
    for folder in &folders {
        debouncer
            .watcher()
            .watch(folder, RecursiveMode::NonRecursive)
            .map_err(|e| WatchError {
                path: folder.clone(),
                cause: e.to_string(),
            })?;
    }
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || serve(&files, &control, &rx, &report))
        .map_err(|e| WatchError {
            path: folders.first().cloned().unwrap_or_default(),
            cause: e.to_string(),
        })?;
    Ok(PluginWatch {
        _debouncer: Some(debouncer),
    })
}

/// Until the watch is dropped: each debounced change of a watched file
/// swapped to.
fn serve(
    files: &BTreeMap<PathBuf, Watched>,
    control: &RunControl,
    rx: &Receiver<DebounceEventResult>,
    report: &impl Fn(WatchEvent),
) {
    loop {
        let events = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(events)) => events,
            Ok(Err(e)) => {
                report(WatchEvent::WatchFailed(e.to_string()));
                continue;
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let changed: BTreeSet<&PathBuf> = events
            .iter()
            .filter_map(|e| files.get_key_value(&e.path).map(|(k, _)| k))
            .collect();
        for path in changed {
            changed_file(path, &files[path], control, report);
        }
    }
}

/// `path` changed: once complete, every step running another version of
/// it is swapped to it.
fn changed_file(
    path: &Path,
    watched: &Watched,
    control: &RunControl,
    report: &impl Fn(WatchEvent),
) {
    let unreadable = |reason: String| {
        report(WatchEvent::Unreadable {
            file: watched.file.clone(),
            reason,
        })
    };
    let bytes = match settled(path) {
        Ok(Some(bytes)) => bytes,
        // Removed (a build tool replacing it): its return is another event.
        Ok(None) => return,
        Err(reason) => return unreadable(reason),
    };
    let digest = hex::encode(Sha256::digest(&bytes));
    let running: BTreeMap<String, String> = control
        .status()
        .into_iter()
        .filter_map(|s| Some((s.name.clone(), s.current()?.digest.clone())))
        .collect();
    for step in &watched.steps {
        if running.get(step) == Some(&digest) {
            continue;
        }
        let started = Instant::now();
        let result = loop {
            match control.swap(step, Some(bytes.clone()), None) {
                Err(SwapError::Busy) if started.elapsed() < BUSY_AT_MOST => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => break other,
            }
        };
        match result {
            Ok(done) => report(WatchEvent::Swapped {
                step: step.clone(),
                file: watched.file.clone(),
                from: done.previous_digest,
                to: done.digest,
                prepare: done.prepare,
                cutover: done.cutover,
            }),
            // The run is ending.
            Err(SwapError::NotRunning) => return,
            Err(e) => report(WatchEvent::Refused {
                step: step.clone(),
                file: watched.file.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// The size and modification time of `path`; none when it is gone.
fn stamp(path: &Path) -> Result<Option<(u64, SystemTime)>, String> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.len(), m.modified().map_err(|e| e.to_string())?))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The bytes of `path` once its size and modification time held still
/// for [`SETTLE`] and did not move while it was read; none when it is
/// gone.
fn settled(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let started = Instant::now();
    let mut last = stamp(path)?;
    while started.elapsed() < SETTLE_AT_MOST {
        std::thread::sleep(SETTLE);
        let now = stamp(path)?;
        if now != last {
            last = now;
            continue;
        }
        let Some(before) = now else {
            return Ok(None);
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if stamp(path)? == Some(before) && bytes.len() as u64 == before.0 {
            return Ok(Some(bytes));
        }
        last = stamp(path)?;
    }
    Err(format!(
        "it kept changing for {} s",
        SETTLE_AT_MOST.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_once_it_holds_still() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, b"first").unwrap();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                for part in 0..4 {
                    std::thread::sleep(Duration::from_millis(100));
                    let mut all = std::fs::read(&path).unwrap();
                    all.extend_from_slice(format!("-{part}").as_bytes());
                    std::fs::write(&path, all).unwrap();
                }
            })
        };
        let bytes = settled(&path).unwrap().unwrap();
        writer.join().unwrap();
        assert_eq!(bytes, b"first-0-1-2-3");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(settled(&path).unwrap(), None);
    }

    #[test]
    fn a_swap_line_names_the_step_the_digests_and_the_times() {
        let line = WatchEvent::Swapped {
            step: "tag".into(),
            file: "plugins/enricher.wasm".into(),
            from: "0123456789abcdef".into(),
            to: "fedcba9876543210".into(),
            prepare: Duration::from_micros(120_250),
            cutover: Duration::from_micros(2_340),
        }
        .to_string();
        assert_eq!(
            line,
            "step `tag` swapped to the new plugins/enricher.wasm: 0123456789ab -> fedcba987654 \
             (prepared in 120.2ms, cut over in 2.3ms)"
        );
    }
}
