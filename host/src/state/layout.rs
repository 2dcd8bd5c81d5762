//! Where a run's state lives on disk and who may use it.
//!
//! ```text
//! <state-dir>/                 default: $XDG_STATE_HOME/weir/<application-id>
//!   <task-id>/                 one per task, e.g. `1_3` (sub-topology 1, partition 3)
//!     .lock                    locked while a process has the task's stores open
//!     .weir-state              marker: application id and state format version
//!     .checkpoint              changelog offsets per store (Kafka; checkpoint.rs)
//!     rocksdb/                 one RocksDB database, one column family per store
//!   embedded/                  instead, for an embedded exactly-once run: its
//!     .lock, .weir-state       one database, a column family per task and store
//!     .checkpoint              (`0_1/counts`) and one for the run's checkpoint
//!     rocksdb/
//! ```
//!
//! The lock keeps two processes (two `weir run`s pointed at one state
//! directory, or an old process that has not let go yet) from sharing a
//! task's state; Kafka Streams locks its task directories the same way.
//! The marker keeps weir from reading, or worse wiping, a directory that is
//! not its own: another application's, one written by a newer weir, or
//! something that is not weir state at all.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The version of a task directory's layout and encoding, written in its
/// marker; bumped by any incompatible change. A weir refuses (with
/// [`StateMode::Keep`]) a directory of any other version: a newer one it
/// cannot read, an older one until a migration exists.
pub const STATE_FORMAT: u32 = 1;

const LOCK_FILE: &str = ".lock";
const MARKER_FILE: &str = ".weir-state";
/// Where a fresh start moves a task's old state before deleting it, so a
/// process killed while deleting leaves a directory the next run can use:
/// removed whole when found.
const WIPING_DIR: &str = ".wiping";
pub(crate) const ROCKSDB_DIR: &str = "rocksdb";

/// The folder of an embedded exactly-once run's one database (every task's
/// stores and the run's checkpoint; see `rocksdb_stores.rs`).
pub(crate) const PROCESS_DIR: &str = "embedded";

/// The default state directory of `application_id`:
/// `$XDG_STATE_HOME/weir/<application-id>` (the XDG base directory
/// specification's place for state that should survive a restart but is
/// not worth a backup, which is what a store restorable from its changelog
/// is), else `$HOME/.local/state/weir/<application-id>` (the
/// specification's default). `None` when neither variable is set.
pub fn default_state_dir(application_id: &str) -> Option<PathBuf> {
    default_state_dir_from(
        std::env::var_os("XDG_STATE_HOME"),
        std::env::var_os("HOME"),
        application_id,
    )
}

fn default_state_dir_from(
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
    application_id: &str,
) -> Option<PathBuf> {
    // The specification: a relative (or empty) value is invalid and ignored.
    let base = xdg_state_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            home.filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("state"))
        })?;
    Some(base.join("weir").join(application_id))
}

/// What a provider does with a task directory it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateMode {
    /// Start from empty state: the task directory's contents are removed
    /// when the task is first opened (after its lock is taken and its
    /// marker checked, so another application's directory is never
    /// wiped). The embedded default, whose runs re-read their input from
    /// the start, uses it so a run never counts its input twice.
    Fresh,
    /// Keep what is there (Kafka: the stores continue from their
    /// checkpoint and changelog).
    Keep,
}

/// A task directory, locked and checked: the stores of the task may use
/// it until this is dropped.
#[derive(Debug)]
pub(crate) struct TaskDir {
    path: PathBuf,
    /// Held (`flock`) until dropped; the file itself stays, so there is
    /// no race between removing a lock file and another process taking it.
    _lock: File,
}

impl TaskDir {
    /// Locks `<state_dir>/<name>/` (creating it; `name` is a task id, or
    /// [`PROCESS_DIR`]) and checks its marker; with [`StateMode::Fresh`]
    /// also empties it. Errors name the path.
    pub(crate) fn open(
        state_dir: &Path,
        name: &str,
        application_id: &str,
        mode: StateMode,
    ) -> Result<TaskDir, String> {
        let path = state_dir.join(name);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create the state directory {}: {e}", path.display()))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(format!(
                    "the state directory {} is in use: another process holds its lock {} \
                     (two weir processes cannot share a task's state; give each its own state directory)",
                    path.display(),
                    lock_path.display()
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", lock_path.display()));
            }
        }
        let dir = TaskDir { path, _lock: lock };
        dir.finish_wiping()?;
        dir.check_marker(application_id, mode)?;
        if mode == StateMode::Fresh {
            dir.wipe()?;
        }
        dir.write_marker(application_id)?;
        Ok(dir)
    }

    /// The task directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Where the task's RocksDB database lives.
    pub(crate) fn rocksdb_path(&self) -> PathBuf {
        self.path.join(ROCKSDB_DIR)
    }

    fn check_marker(&self, application_id: &str, mode: StateMode) -> Result<(), String> {
        let marker_path = self.path.join(MARKER_FILE);
        let text = match std::fs::read_to_string(&marker_path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Without a marker the directory must be empty but for our
                // lock and the marker's temporary file: a crash between
                // creating it and writing the marker (found killing runs a
                // few milliseconds in) leaves just those, and the marker is
                // written again over its temporary file. Anything else is
                // not ours to use or wipe.
                let marker_tmp = format!("{MARKER_FILE}.tmp");
                let others = self
                    .entries()?
                    .into_iter()
                    .filter(|name| name != LOCK_FILE && *name != marker_tmp)
                    .collect::<Vec<_>>();
                if others.is_empty() {
                    return Ok(());
                }
                return Err(format!(
                    "{} is not a weir state directory (it has no {MARKER_FILE} marker but holds {}): \
                     weir neither uses nor removes it; point the state directory elsewhere",
                    self.path.display(),
                    others.join(", ")
                ));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", marker_path.display())),
        };
        let marker: Marker = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not a weir state marker ({e}); weir neither uses nor removes {}",
                marker_path.display(),
                self.path.display()
            )
        })?;
        if marker.application_id != application_id {
            return Err(format!(
                "{} holds the state of application `{}`, not `{application_id}` ({}): \
                 weir neither uses nor removes it; point the state directory elsewhere",
                self.path.display(),
                marker.application_id,
                marker_path.display()
            ));
        }
        // A fresh start throws the contents away, whatever their format.
        if mode == StateMode::Keep && marker.format != STATE_FORMAT {
            let which = if marker.format > STATE_FORMAT {
                "a newer weir"
            } else {
                "an older weir whose format this one cannot read"
            };
            return Err(format!(
                "{} was written by {which} (state format {}; this weir reads format {STATE_FORMAT}): {}",
                self.path.display(),
                marker.format,
                marker_path.display()
            ));
        }
        Ok(())
    }

    fn write_marker(&self, application_id: &str) -> Result<(), String> {
        let marker = Marker {
            application_id: application_id.to_string(),
            format: STATE_FORMAT,
        };
        let text = serde_json::to_string(&marker).expect("a marker serializes") + "\n";
        let marker_path = self.path.join(MARKER_FILE);
        if std::fs::read_to_string(&marker_path).is_ok_and(|old| old == text) {
            return Ok(());
        }
        write_atomically(&marker_path, text.as_bytes())
    }

    /// Removes everything but the lock file (which this process holds) and
    /// the marker (it stays the same): each entry is first moved into
    /// [`WIPING_DIR`], the checkpoint first, so a process killed at any
    /// point leaves a marked directory whose state is whole or gone (a
    /// store without its checkpoint is restored in full), never a database
    /// half deleted; then that folder is removed.
    fn wipe(&self) -> Result<(), String> {
        let wiping = self.path.join(WIPING_DIR);
        std::fs::create_dir_all(&wiping)
            .map_err(|e| format!("cannot create {} (a fresh start): {e}", wiping.display()))?;
        let mut names: Vec<String> = self
            .entries()?
            .into_iter()
            .filter(|n| n != LOCK_FILE && n != MARKER_FILE && n != WIPING_DIR)
            .collect();
        names.sort_by_key(|n| n != super::checkpoint::CHECKPOINT_FILE);
        for name in names {
            let (from, to) = (self.path.join(&name), wiping.join(&name));
            std::fs::rename(&from, &to).map_err(|e| {
                format!("cannot move {} aside (a fresh start): {e}", from.display())
            })?;
        }
        self.finish_wiping()
    }

    /// Removes what a fresh start moved aside ([`WIPING_DIR`]), if anything.
    fn finish_wiping(&self) -> Result<(), String> {
        let wiping = self.path.join(WIPING_DIR);
        match std::fs::remove_dir_all(&wiping) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!(
                "cannot remove {} (a fresh start): {e}",
                wiping.display()
            )),
        }
    }

    fn entries(&self) -> Result<Vec<String>, String> {
        let read = std::fs::read_dir(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let mut names = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
}

/// The marker file's contents.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Marker {
    application_id: String,
    format: u32,
}

/// Writes `path` so that a reader (or a crash) sees either the old
/// contents or the new, never a part: a temporary file beside it, synced,
/// then renamed over it.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // The rename itself is durable once the directory is synced.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::operators::TaskId;

    const TASK: TaskId = TaskId {
        subtopology: 1,
        partition: 3,
    };

    #[test]
    fn the_default_directory_follows_xdg_then_home() {
        let app = "orders";
        assert_eq!(
            default_state_dir_from(Some("/xdg".into()), Some("/home/u".into()), app),
            Some(PathBuf::from("/xdg/weir/orders"))
        );
        // A relative XDG_STATE_HOME is invalid by the specification.
        assert_eq!(
            default_state_dir_from(Some("rel".into()), Some("/home/u".into()), app),
            Some(PathBuf::from("/home/u/.local/state/weir/orders"))
        );
        assert_eq!(
            default_state_dir_from(None, Some("/home/u".into()), app),
            Some(PathBuf::from("/home/u/.local/state/weir/orders"))
        );
        assert_eq!(default_state_dir_from(None, None, app), None);
    }

    #[test]
    fn a_task_directory_is_locked_while_open() {
        let tmp = tempfile::tempdir().unwrap();
        let first = TaskDir::open(tmp.path(), &TASK.to_string(), "app", StateMode::Keep).unwrap();
        assert_eq!(first.path(), tmp.path().join("1_3"));
        let err = TaskDir::open(tmp.path(), &TASK.to_string(), "app", StateMode::Keep).unwrap_err();
        assert!(
            err.contains(&tmp.path().join("1_3").display().to_string()),
            "{err}"
        );
        assert!(err.contains("another process holds its lock"), "{err}");
        drop(first);
        TaskDir::open(tmp.path(), &TASK.to_string(), "app", StateMode::Keep).unwrap();
    }

    #[test]
    fn another_applications_directory_is_refused_even_for_a_fresh_start() {
        let tmp = tempfile::tempdir().unwrap();
        drop(TaskDir::open(tmp.path(), &TASK.to_string(), "billing", StateMode::Keep).unwrap());
        std::fs::write(tmp.path().join("1_3/precious"), b"x").unwrap();
        for mode in [StateMode::Keep, StateMode::Fresh] {
            let err = TaskDir::open(tmp.path(), &TASK.to_string(), "orders", mode).unwrap_err();
            assert!(err.contains("application `billing`, not `orders`"), "{err}");
            assert!(
                err.contains(&tmp.path().join("1_3").display().to_string()),
                "{err}"
            );
        }
        assert!(tmp.path().join("1_3/precious").exists());
    }

    #[test]
    fn a_directory_without_a_marker_is_refused_unless_empty() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("1_3")).unwrap();
        std::fs::write(tmp.path().join("1_3/notes.txt"), b"x").unwrap();
        // The temporary file of a marker a killed run was writing is ours.
        std::fs::create_dir_all(tmp.path().join("0_0")).unwrap();
        std::fs::write(tmp.path().join("0_0/.weir-state.tmp"), b"{\"appl").unwrap();
        TaskDir::open(tmp.path(), "0_0", "app", StateMode::Keep).unwrap();
        assert!(tmp.path().join("0_0/.weir-state").exists());
        let err =
            TaskDir::open(tmp.path(), &TASK.to_string(), "app", StateMode::Fresh).unwrap_err();
        assert!(err.contains("is not a weir state directory"), "{err}");
        assert!(err.contains("notes.txt"), "{err}");
        assert!(tmp.path().join("1_3/notes.txt").exists());
    }

    #[test]
    fn a_newer_format_is_refused_but_a_fresh_start_replaces_it() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("1_3")).unwrap();
        let marker = tmp.path().join("1_3").join(MARKER_FILE);
        std::fs::write(&marker, r#"{"application-id":"app","format":99}"#).unwrap();
        let err = TaskDir::open(tmp.path(), &TASK.to_string(), "app", StateMode::Keep).unwrap_err();
        assert!(err.contains("a newer weir (state format 99"), "{err}");
        drop(TaskDir::open(tmp.path(), &TASK.to_string(), "app", StateMode::Fresh).unwrap());
        TaskDir::open(tmp.path(), &TASK.to_string(), "app", StateMode::Keep).unwrap();
    }

    #[test]
    fn a_fresh_start_empties_the_directory_and_keep_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        drop(TaskDir::open(tmp.path(), &TASK.to_string(), "app", StateMode::Keep).unwrap());
        std::fs::write(tmp.path().join("1_3/.checkpoint"), b"{}").unwrap();
        drop(TaskDir::open(tmp.path(), &TASK.to_string(), "app", StateMode::Keep).unwrap());
        assert!(tmp.path().join("1_3/.checkpoint").exists());
        drop(TaskDir::open(tmp.path(), &TASK.to_string(), "app", StateMode::Fresh).unwrap());
        assert!(!tmp.path().join("1_3/.checkpoint").exists());
        assert!(tmp.path().join("1_3").join(MARKER_FILE).exists());
    }
}
