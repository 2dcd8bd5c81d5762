//! Swap records: what makes a hot swap reach every instance of a pipeline
//! and survive a restart (issue 12, item 4).
//!
//! Every swap that passed its checks is recorded before any task switches
//! to it (write-ahead: a swap that cannot be recorded is refused, and the
//! old version keeps running), through the run's [`SwapJournal`]:
//!
//! - on the embedded default, on disk beside the pipeline's run files
//!   ([`disk`]: `.weir/<stem>.swaps/`);
//! - on Kafka, in the application's compacted control topic
//!   ([`kafka`]: `<application-id>-weir-control`), which every member
//!   reads at start and while it runs, so a swap made on one member
//!   reaches them all, and a member that starts later runs it too.
//!
//! At start, the run applies the latest record of each step before its
//! tasks start ([`restore`]), unless the pipeline file changed what the
//! record was made from: the file wins ([`FileEntry::changes_since`]).

pub(crate) mod disk;
pub(crate) mod kafka;

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::topology::{StepVersion, Topology};

/// The version of the record format this weir writes (the `format` field).
pub const FORMAT: u32 = 1;

/// One swap, as kept: the version a step runs since, and what the
/// pipeline file said of that step when it was made. The component's bytes
/// are kept beside it (a file on disk, the rest of the Kafka message).
///
/// JSON, for example:
///
/// ```json
/// {"format": 1, "step": "tag", "version": 2, "sha256": "5f0c…",
///  "config": {"set": {"version": "v2"}},
///  "file": {"plugin": "enrich", "path": "plugins/enricher.wasm",
///           "resolved": "/srv/orders/plugins/enricher.wasm", "sha256_pin": null,
///           "config": {"set": {"version": "v1"}}, "component_sha256": "8cf7…"},
///  "at": "2026-11-30T09:20:00.123Z",
///  "made_by": {"host": "box1", "pid": 4242, "run": "4242-1764494400123456789"}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapRecord {
    /// [`FORMAT`]; a record of another format is refused, not guessed at.
    pub format: u32,
    pub step: String,
    /// The version the swap brought (1 is the pipeline file's).
    pub version: u32,
    /// SHA-256 of the component, in hex: the kept bytes must hash to it.
    pub sha256: String,
    /// The config it runs with.
    pub config: serde_json::Value,
    /// The step's entry in the pipeline file when the swap was made.
    pub file: FileEntry,
    /// When the swap was made (RFC 3339, UTC).
    pub at: String,
    /// Which process made it.
    pub made_by: MadeBy,
}

/// A plugin step's entry in the pipeline file, as far as a swap record
/// depends on it: when any of it changes, the file wins over the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The plugin's name in the file's `plugins:` (not compared: renaming
    /// it changes nothing that runs).
    pub plugin: String,
    /// Its `path` as written, and resolved against the file's folder.
    pub path: String,
    pub resolved: PathBuf,
    /// Its `sha256` pin, if any.
    pub sha256_pin: Option<String>,
    /// The step's `config` in the file.
    pub config: serde_json::Value,
    /// SHA-256 of the component the file named then.
    pub component_sha256: String,
}

/// The process that made a swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeBy {
    pub host: String,
    pub pid: u32,
    /// Unique per run, so a member tells its own records from others'.
    pub run: String,
}

impl MadeBy {
    /// This run of this process.
    pub fn this_run() -> MadeBy {
        let pid = std::process::id();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        MadeBy {
            host,
            pid,
            run: format!("{pid}-{nanos}"),
        }
    }
}

impl std::fmt::Display for MadeBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)
    }
}

impl FileEntry {
    /// Plugin step `j`'s entry in `topo`'s pipeline file (`None` for a
    /// step weir runs itself).
    pub fn of(topo: &Topology, j: usize) -> Option<FileEntry> {
        let step = &topo.pipeline.steps[j];
        let p = step.plugin?;
        let plugin = &topo.pipeline.plugins[p];
        Some(FileEntry {
            plugin: plugin.name.clone(),
            path: plugin.written.clone(),
            resolved: plugin.path.clone(),
            sha256_pin: plugin.sha256.clone(),
            config: serde_json::from_str(&step.config_json).unwrap_or(serde_json::Value::Null),
            component_sha256: topo.plugins[p].sha256().to_string(),
        })
    }

    /// What differs in `self` (the file now) from `then` (the file when a
    /// swap was made), named as the pipeline file names it; empty when
    /// nothing that runs changed.
    pub fn changes_since(&self, then: &FileEntry) -> Vec<String> {
        let mut changed = Vec::new();
        if self.path != then.path || self.resolved != then.resolved {
            changed.push(format!(
                "plugin path {} -> {}",
                then.resolved.display(),
                self.resolved.display()
            ));
        }
        if self.sha256_pin != then.sha256_pin {
            let pin = |p: &Option<String>| p.clone().unwrap_or_else(|| "none".into());
            changed.push(format!(
                "sha256 pin {} -> {}",
                pin(&then.sha256_pin),
                pin(&self.sha256_pin)
            ));
        }
        if self.config != then.config {
            changed.push(format!("config {} -> {}", then.config, self.config));
        }
        if self.component_sha256 != then.component_sha256 {
            changed.push(format!(
                "component sha256 {} -> {}",
                short(&then.component_sha256),
                short(&self.component_sha256)
            ));
        }
        changed
    }
}

/// The first 12 hex digits of a digest, as `weir status` shows them.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

impl SwapRecord {
    /// The record of swapping plugin step `j` of `topo` to `version`.
    pub fn new(topo: &Topology, j: usize, version: &StepVersion, made_by: &MadeBy) -> SwapRecord {
        SwapRecord {
            format: FORMAT,
            step: topo.pipeline.steps[j].name.clone(),
            version: version.number,
            sha256: version.plugin.sha256().to_string(),
            config: serde_json::from_str(&version.config_json).unwrap_or(serde_json::Value::Null),
            file: FileEntry::of(topo, j).expect("only plugin steps are swapped"),
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            made_by: made_by.clone(),
        }
    }

    /// Reads a record written by [`SwapRecord::to_json`]; `origin` names
    /// where it came from in the error.
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<SwapRecord, JournalError> {
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let bad = |reason: String| JournalError::Corrupt {
            origin: origin.to_string(),
            reason,
        };
        let format: Format =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a swap record: {e}")))?;
        if format.format != FORMAT {
            return Err(bad(format!(
                "swap record format {} (this weir reads format {FORMAT})",
                format.format
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a swap record: {e}")))
    }

    /// The record as one line of JSON (no raw newline: the Kafka message
    /// puts the component after the first one).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a swap record serialises")
    }

    /// Checks that `component` is the one this record names.
    pub fn check_component(&self, component: &[u8], origin: &str) -> Result<(), JournalError> {
        let actual = hex::encode(Sha256::digest(component));
        if actual.eq_ignore_ascii_case(&self.sha256) {
            Ok(())
        } else {
            Err(JournalError::Tampered {
                origin: origin.to_string(),
                step: self.step.clone(),
                expected: self.sha256.clone(),
                actual,
            })
        }
    }
}

/// A record as read back, with its component and where it was kept.
#[derive(Debug, Clone)]
pub struct Kept {
    pub record: SwapRecord,
    pub component: Vec<u8>,
    /// Where it was read: a file, or a topic partition and offset.
    pub origin: String,
    /// Where its component was read (on disk, a file of its own).
    pub component_origin: String,
}

/// Why swap records could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("swap records: cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("swap record {origin}: {reason}")]
    Corrupt { origin: String, reason: String },
    #[error(
        "step `{step}`: the swapped component {origin} has SHA-256 {actual}, but its swap record says {expected}: it was changed or damaged; remove the record to start the pipeline file's version"
    )]
    Tampered {
        origin: String,
        step: String,
        expected: String,
        actual: String,
    },
    #[error(
        "swap record {origin}: step `{step}` cannot start its recorded version {version}: {reason}; remove the record to start the pipeline file's version"
    )]
    Unstartable {
        origin: String,
        step: String,
        version: u32,
        reason: String,
    },
    #[error("{0}")]
    Kafka(String),
    #[error(
        "store `{store}`: the application's stores of that id hold {held} ({origin}), and its step now stores {holds} under the same id: the state (its changelog, and every member's copy) was made by another version of the pipeline, and would be read as what it is not (`weir validate --against OLD NEW` says so before a run); give the step a new `id` (its state then starts empty), or remove the state with `weir state reset PIPELINE --changelogs --step {store}`"
    )]
    StoreFormat {
        store: String,
        held: String,
        holds: String,
        origin: String,
    },
}

/// Where a run keeps its swaps. Owned by the run (its control thread);
/// every swap goes through [`SwapJournal::record`] at one point, before
/// its cutover, whoever asked for it (a caller of `RunControl::swap`, a
/// rollback).
pub trait SwapJournal: Send {
    /// Where records are kept, for messages.
    fn describe(&self) -> String;
    /// This run, as its records name it.
    fn made_by(&self) -> &MadeBy;
    /// The latest record of each step, as kept when the run starts.
    fn recorded(&mut self) -> Result<Vec<Kept>, JournalError>;
    /// Removes step `step`'s record (the pipeline file won over it).
    fn forget(&mut self, step: &str) -> Result<(), JournalError>;
    /// Keeps a swap that passed its checks, before any task switches to it.
    fn record(&mut self, record: &SwapRecord, component: &[u8]) -> Result<(), JournalError>;
    /// Records other members wrote since last asked, oldest first (Kafka);
    /// this process's own are not among them.
    fn remote(&mut self) -> Result<Vec<Kept>, JournalError> {
        Ok(Vec::new())
    }
    /// Whether a recorded version that cannot start stops the run (on
    /// disk: this machine's own record) or is refused and reported while
    /// the file's version runs (Kafka: another member's record).
    fn strict(&self) -> bool;
    /// Checks what each store holds, `(store id, format)`, against what
    /// the application recorded for it, and records the ones it has not
    /// (Kafka: in the control topic, where every member, on any machine,
    /// finds it, also one whose task folder is gone and restores from the
    /// changelog). Called after [`SwapJournal::recorded`]. On disk a task's
    /// `.checkpoint` does it, so nothing is kept here.
    fn check_store_formats(&mut self, _formats: &[(String, String)]) -> Result<(), JournalError> {
        Ok(())
    }
}

/// What [`restore`] did with a recorded swap that could not start (only
/// for a journal that is not strict).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub step: usize,
    pub record: SwapRecord,
    pub reason: String,
}

/// Applies the latest recorded swap of each step to `topo` before its
/// tasks start: a record the pipeline file changed since is dropped with
/// one warning line and removed; a component that does not hash to its
/// record is an error naming where it was kept. `start` checks and starts
/// a recorded version (the same checks as a swap's).
pub fn restore(
    topo: &Topology,
    journal: &mut dyn SwapJournal,
    start: &dyn Fn(usize, &Kept) -> Result<StepVersion, String>,
) -> Result<Vec<Refusal>, JournalError> {
    let mut refusals = Vec::new();
    for kept in journal.recorded()? {
        let record = &kept.record;
        let Some((j, now)) = topo
            .pipeline
            .steps
            .iter()
            .position(|s| s.name == record.step)
            .and_then(|j| Some((j, FileEntry::of(topo, j)?)))
        else {
            tracing::warn!(
                "step `{}`: dropped swapped version {} (sha256 {}, {}): the pipeline file has no plugin step `{}` any more",
                record.step,
                record.version,
                short(&record.sha256),
                kept.origin,
                record.step
            );
            journal.forget(&record.step)?;
            continue;
        };
        let changed = now.changes_since(&record.file);
        if !changed.is_empty() {
            tracing::warn!(
                "step `{}`: dropped swapped version {} (sha256 {}, swapped {}): the pipeline file changed since ({}); running the file's version",
                record.step,
                record.version,
                short(&record.sha256),
                record.at,
                changed.join("; ")
            );
            journal.forget(&record.step)?;
            continue;
        }
        record.check_component(&kept.component, &kept.component_origin)?;
        match start(j, &kept) {
            Ok(version) => {
                // A warning, shown by default: the run does not run what
                // its pipeline file says, and the user should know why.
                tracing::warn!(
                    "step `{}`: running the swapped version recorded in {} (version {}, sha256 {}, swapped {} by {}); remove the record or change the step in the pipeline file to run the file's version",
                    record.step,
                    kept.origin,
                    version.number,
                    short(&record.sha256),
                    record.at,
                    record.made_by
                );
                topo.set_version(j, version);
            }
            Err(reason) if journal.strict() => {
                return Err(JournalError::Unstartable {
                    origin: kept.origin.clone(),
                    step: record.step.clone(),
                    version: record.version,
                    reason,
                });
            }
            Err(reason) => {
                tracing::error!(
                    "step `{}`: swapped version {} (sha256 {}, made by {}) does not start here: {reason}; this process runs the pipeline file's version",
                    record.step,
                    record.version,
                    short(&record.sha256),
                    record.made_by
                );
                refusals.push(Refusal {
                    step: j,
                    record: record.clone(),
                    reason,
                });
            }
        }
    }
    Ok(refusals)
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, then
/// renamed), readable and writable by its owner only.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), JournalError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |action, source| JournalError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| io("write", e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io("write", e))?;
    std::fs::rename(&partial, path).map_err(|e| io("write", e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> FileEntry {
        FileEntry {
            plugin: "enrich".into(),
            path: "plugins/enricher.wasm".into(),
            resolved: "/srv/p/plugins/enricher.wasm".into(),
            sha256_pin: None,
            config: json!({ "set": { "version": "v1" } }),
            component_sha256: "a".repeat(64),
        }
    }

    pub(super) fn record(component: &[u8]) -> SwapRecord {
        SwapRecord {
            format: FORMAT,
            step: "tag".into(),
            version: 2,
            sha256: hex::encode(Sha256::digest(component)),
            config: json!({ "set": { "version": "v2" } }),
            file: entry(),
            at: "2026-11-30T09:20:00.123Z".into(),
            made_by: MadeBy {
                host: "box1".into(),
                pid: 42,
                run: "42-1".into(),
            },
        }
    }

    #[test]
    fn an_unchanged_entry_keeps_the_swap_and_each_change_is_named() {
        let then = entry();
        assert!(entry().changes_since(&then).is_empty());
        // The plugin's name in the file is not what runs.
        let renamed = FileEntry {
            plugin: "tagger".into(),
            ..entry()
        };
        assert!(renamed.changes_since(&then).is_empty());
        let changed = FileEntry {
            path: "other.wasm".into(),
            resolved: "/srv/p/other.wasm".into(),
            sha256_pin: Some("b".repeat(64)),
            config: json!({}),
            component_sha256: "c".repeat(64),
            ..entry()
        };
        let changes = changed.changes_since(&then);
        assert_eq!(changes.len(), 4, "{changes:?}");
        assert!(
            changes[0].starts_with("plugin path /srv/p/plugins/enricher.wasm -> /srv/p/other.wasm")
        );
        assert!(changes[1].starts_with("sha256 pin none -> bbbb"));
        assert!(changes[2].starts_with("config {\"set\""));
        assert!(changes[3].starts_with("component sha256 aaaaaaaaaaaa -> cccccccccccc"));
    }

    #[test]
    fn a_record_reads_back_as_written_and_another_format_is_refused() {
        let r = record(b"component");
        let json = r.to_json();
        assert!(!json.contains(&b'\n'), "one line");
        assert_eq!(SwapRecord::from_json(&json, "x").unwrap(), r);
        let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        value["format"] = json!(2);
        let e = SwapRecord::from_json(value.to_string().as_bytes(), "tag.json").unwrap_err();
        assert!(e.to_string().contains("tag.json"), "{e}");
        assert!(e.to_string().contains("format 2"), "{e}");
    }

    #[test]
    fn a_component_that_does_not_hash_to_its_record_is_refused() {
        let r = record(b"component");
        assert!(r.check_component(b"component", "c.wasm").is_ok());
        let e = r.check_component(b"componenT", "c.wasm").unwrap_err();
        assert!(e.to_string().contains("c.wasm"), "{e}");
    }
}
