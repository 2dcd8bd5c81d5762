//! Exactly-once on one machine: an embedded run of file sources into file
//! sinks that asks for `processing-guarantee: exactly-once` checkpoints,
//! and a killed run resumes from its last checkpoint with the output and
//! state of a run that was never interrupted.
//!
//! Each checkpoint is a consistent cut (`checkpoint.rs`: sources paused,
//! workers idle, every task's stores flushed, every sink's bytes written)
//! persisted in one atomic write to the process's state database
//! ([`RocksDbStores::commit`]): the stores' changes since the last one, and
//! a [`CheckpointRecord`] of every source's position (with a CRC-32 of what
//! it read) and every sink's length. Sink bytes are written before the
//! checkpoint that counts them; nothing reaches the database between two
//! checkpoints. So a run killed at any moment (SIGKILL) leaves the state
//! and the positions of its last checkpoint and sinks at least as long as
//! it says. With `state.fsync: true` the sinks' files and the database's
//! log are synced before the run goes on, which makes a checkpoint survive
//! a power loss too; without it, only the process being killed.
//!
//! The next run resumes: it checks each input is the file it read (same
//! file, at least as long, same CRC-32 over the part read: an input that
//! only grew resumes), cuts each sink back to its checkpointed length, and
//! starts each source at its checkpointed line. A run that read all of its
//! input marks its last checkpoint complete, and the next run starts fresh.
//! `weir run --from-scratch` discards a checkpoint.
//!
//! A replay makes what the run it replaces made: records without a
//! timestamp take the first run's start time (kept in the record), keyless
//! records go to a partition by their line number, and plugins are assumed
//! deterministic. What would make a replay differ (several sources merged
//! by time, records re-keyed across partitions in process) keeps a
//! pipeline from exactly-once (`pipeline::guarantee`).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::RunError;
use super::checkpoint::{Cut, SourcePosition};
use crate::io::batch::Batch;
use crate::io::source::Position;
use crate::operators::TaskId;
use crate::pipeline::guarantee::{self, Guarantee};
use crate::pipeline::{Pipeline, SourceKind};
use crate::state::{OpenTask, RocksDbStores, StateMode};

/// The key of the [`CheckpointRecord`] in the state database.
const RECORD_KEY: &str = "checkpoint";
/// The version of the record's layout; a record of another is refused.
const RECORD_FORMAT: u32 = 1;

/// What a checkpoint says besides the stores' contents.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRecord {
    pub format: u32,
    /// Numbered from 1 over the runs it continues.
    pub id: u64,
    /// The run read all of its input: the next one starts fresh.
    pub complete: bool,
    /// When it was written (ms since the Unix epoch; for messages).
    pub written_ms: i64,
    /// When the first run of the series started: the timestamp of records
    /// that have none, in every run that continues it.
    pub first_run_ms: i64,
    pub partitions: u32,
    pub sources: Vec<SourceAt>,
    pub sinks: Vec<SinkAt>,
}

/// Where a file source had read to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceAt {
    pub name: String,
    pub path: PathBuf,
    /// Bytes, lines and the bytes' CRC-32.
    #[serde(flatten)]
    pub read: Position,
    pub finished: bool,
    /// The file's device and inode when the run started.
    pub device: u64,
    pub inode: u64,
}

/// How long a file sink was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkAt {
    pub name: String,
    pub path: PathBuf,
    pub length: u64,
}

/// A file source: its name, path, and the file's identity (device,
/// inode) when the run started.
#[derive(Debug, Clone)]
struct InputFile {
    name: String,
    path: PathBuf,
    identity: (u64, u64),
}

/// Whether `p` runs exactly-once: it asks for it and every sink can have
/// it (validation refuses a file that asks where one cannot).
pub fn applies(p: &Pipeline) -> bool {
    p.processing_guarantee == Guarantee::ExactlyOnce
        && guarantee::of(p)
            .iter()
            .all(|g| g.guarantee == Guarantee::ExactlyOnce)
}

/// An exactly-once run's checkpoints: where it starts, and how it writes
/// each checkpoint.
pub struct ExactlyOnce {
    /// The stores, in one database with the checkpoints.
    pub stores: RocksDbStores,
    /// Holds the database open for the whole run.
    _open: OpenTask,
    /// Where each source starts, by index (the beginning, for a fresh run).
    pub starts: Vec<Position>,
    /// Each sink's length to cut it back to and append from, by index;
    /// `None` for a fresh run (sinks open by their `mode`).
    pub sink_lengths: Option<Vec<u64>>,
    pub first_run_ms: i64,
    /// The id of the next checkpoint record, counted on from the run it
    /// resumes.
    next_id: AtomicU64,
    /// What the run says at its start: resuming, or starting fresh.
    pub note: String,
    sources: Vec<InputFile>,
    sinks: Vec<(String, PathBuf)>,
    partitions: u32,
    fsync: bool,
}

impl ExactlyOnce {
    /// Opens the state database of `p` and decides how the run starts:
    /// from its last checkpoint when the previous run was interrupted
    /// (unless `from_scratch`), else fresh (the database emptied). Refuses,
    /// with the reason, a checkpoint the pipeline or its inputs no longer
    /// match. `now_ms` is the wall-clock time.
    pub fn start(p: &Pipeline, from_scratch: bool, now_ms: i64) -> Result<ExactlyOnce, RunError> {
        let dir = p.state.resolved_dir(p.application_id()).ok_or_else(|| {
            RunError::Setup(format!(
                "{}: no state directory for the checkpoints of `processing-guarantee: exactly-once`: set `state.dir` (or pass --state-dir), or HOME or XDG_STATE_HOME",
                p.file.display()
            ))
        })?;
        let open = |mode| {
            let stores = RocksDbStores::new(dir.clone(), p.application_id(), &p.state, mode)
                .in_one_database();
            let held = stores
                .open_process()
                .map_err(|e| RunError::Setup(e.to_string()))?;
            Ok::<_, RunError>((stores, held))
        };
        let (stores, held) = open(StateMode::Keep)?;
        let last = read_record(&stores)?;
        let sources = file_sources(p)?;
        let sinks: Vec<(String, PathBuf)> = p
            .sinks
            .iter()
            .map(|s| {
                let path = s.path.clone().expect("validated: file sinks have a path");
                (s.name.clone(), path)
            })
            .collect();
        let fresh = match &last {
            None => Some(format!(
                "exactly-once: checkpoints every {}; starting fresh",
                every(p)
            )),
            Some(r) if r.complete => Some(format!(
                "exactly-once: the last run read all of its input (checkpoint {}, {}); starting fresh",
                r.id,
                when(r.written_ms)
            )),
            Some(r) if from_scratch => Some(format!(
                "exactly-once: discarding checkpoint {} of an interrupted run ({}), as --from-scratch asks; starting fresh",
                r.id,
                when(r.written_ms)
            )),
            Some(_) => None,
        };
        let (stores, held, resumed, note) = match fresh {
            Some(note) => {
                // Emptied under the lock the fresh provider takes again.
                drop((held, stores));
                let (stores, held) = open(StateMode::Fresh)?;
                (stores, held, None, note)
            }
            None => {
                let record = last.expect("no record starts fresh");
                check_resume(p, &record, &sources, &sinks)?;
                let note = resume_note(&record);
                (stores, held, Some(record), note)
            }
        };
        Ok(ExactlyOnce {
            stores,
            _open: held,
            starts: match &resumed {
                Some(r) => r.sources.iter().map(|s| s.read).collect(),
                None => vec![Position::default(); sources.len()],
            },
            sink_lengths: resumed
                .as_ref()
                .map(|r| r.sinks.iter().map(|s| s.length).collect()),
            first_run_ms: resumed.as_ref().map_or(now_ms, |r| r.first_run_ms),
            next_id: AtomicU64::new(resumed.as_ref().map_or(1, |r| r.id + 1)),
            note,
            sources,
            sinks,
            partitions: p.partitions,
            fsync: p.state.fsync,
        })
    }

    /// What task `task` held at the checkpoint this run resumes from
    /// (nothing for a fresh run: its database was emptied).
    pub fn held(&self, task: TaskId) -> Result<Vec<Batch>, String> {
        match self
            .stores
            .checkpoint_record(&held_key(task))
            .map_err(|e| e.to_string())?
        {
            Some(bytes) => super::held::decode(&bytes).map_err(|e| {
                format!(
                    "task {task}: what it held at the checkpoint in {} cannot be read ({e}); run with --from-scratch to start over",
                    self.stores.dir().display()
                )
            }),
            None => Ok(Vec::new()),
        }
    }

    /// Saves with the next checkpoint what task `task` holds (none: it
    /// holds nothing any more).
    pub fn hold(&self, task: TaskId, batches: &[Batch]) {
        let bytes = (!batches.is_empty()).then(|| super::held::encode(batches));
        self.stores.queue_checkpoint_record(&held_key(task), bytes);
    }

    /// The partition times task `task` kept at the checkpoint the run
    /// resumes from (see `event_time.rs`), if it kept any.
    pub fn partition_times(&self, task: TaskId) -> Result<Option<Vec<u8>>, String> {
        self.stores
            .checkpoint_record(&partition_times_key(task))
            .map_err(|e| e.to_string())
    }

    /// Queues `task`'s partition times for the checkpoint being taken.
    pub fn keep_partition_times(&self, task: TaskId, times: Vec<u8>) {
        self.stores
            .queue_checkpoint_record(&partition_times_key(task), Some(times));
    }

    /// Whether sinks sync their files at each checkpoint.
    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// Writes checkpoint `cut` (taken while the run is paused for it).
    pub fn persist(&self, cut: &Cut) -> Result<(), String> {
        let sinks: Vec<u64> = cut
            .sinks
            .iter()
            .map(|s| s.expect("every sink of an exactly-once run is a file"))
            .collect();
        self.write(false, &cut.sources, &sinks)
    }

    /// Marks the run complete once it read all of its input and every sink
    /// wrote all of its output: `ends` are where the sources stopped, and
    /// the sinks' lengths are their files' now. Writes the state the tasks
    /// flushed as they finished.
    pub fn complete(&self, ends: &[Position]) -> Result<(), String> {
        let mut lengths = Vec::new();
        for (_, path) in &self.sinks {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if self.fsync {
                file.sync_all()
                    .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
            }
            let length = file
                .metadata()
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .len();
            lengths.push(length);
        }
        let ends: Vec<SourcePosition> = ends
            .iter()
            .map(|&read| SourcePosition {
                read,
                finished: true,
            })
            .collect();
        self.write(true, &ends, &lengths)
    }

    /// Writes the next checkpoint record, with the state queued since the
    /// last one.
    fn write(
        &self,
        complete: bool,
        sources: &[SourcePosition],
        sinks: &[u64],
    ) -> Result<(), String> {
        let record = CheckpointRecord {
            format: RECORD_FORMAT,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            complete,
            written_ms: crate::clock::Clock::now_ms(&crate::clock::SystemClock),
            first_run_ms: self.first_run_ms,
            partitions: self.partitions,
            sources: self
                .sources
                .iter()
                .zip(sources)
                .map(|(input, at)| SourceAt {
                    name: input.name.clone(),
                    path: input.path.clone(),
                    read: at.read,
                    finished: at.finished,
                    device: input.identity.0,
                    inode: input.identity.1,
                })
                .collect(),
            sinks: self
                .sinks
                .iter()
                .zip(sinks)
                .map(|((name, path), &length)| SinkAt {
                    name: name.clone(),
                    path: path.clone(),
                    length,
                })
                .collect(),
        };
        let text = serde_json::to_vec(&record).expect("a checkpoint record serializes");
        self.stores
            .commit(&[(RECORD_KEY, &text)], self.fsync)
            .map_err(|e| e.to_string())
    }
}

/// Where the records task `task` held at a checkpoint are kept.
fn held_key(task: TaskId) -> String {
    format!("held/{task}")
}

fn partition_times_key(task: TaskId) -> String {
    format!("partition-times/{task}")
}

/// How often `p` checkpoints, for people.
fn every(p: &Pipeline) -> String {
    humantime::format_duration(p.state.checkpoint_interval).to_string()
}

/// A wall-clock time for people, in UTC.
fn when(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

fn read_record(stores: &RocksDbStores) -> Result<Option<CheckpointRecord>, RunError> {
    let Some(bytes) = stores
        .checkpoint_record(RECORD_KEY)
        .map_err(|e| RunError::Setup(e.to_string()))?
    else {
        return Ok(None);
    };
    let record: CheckpointRecord = serde_json::from_slice(&bytes).map_err(|e| {
        RunError::Setup(format!(
            "the checkpoint in {} cannot be read ({e}); run with --from-scratch to start over",
            stores.dir().display()
        ))
    })?;
    if record.format != RECORD_FORMAT {
        return Err(RunError::Setup(format!(
            "the checkpoint in {} is of format {} (this weir reads {RECORD_FORMAT}); run with --from-scratch to start over",
            stores.dir().display(),
            record.format
        )));
    }
    Ok(Some(record))
}

/// Each file source's name, path and file identity (device, inode).
fn file_sources(p: &Pipeline) -> Result<Vec<InputFile>, RunError> {
    p.sources
        .iter()
        .map(|s| {
            debug_assert_eq!(s.kind, SourceKind::File);
            let path = s.path.clone().expect("validated: file sources have a path");
            let meta = std::fs::metadata(&path).map_err(|error| {
                RunError::Source(crate::io::source::SourceError::Io {
                    name: s.name.clone(),
                    what: path.display().to_string(),
                    error,
                })
            })?;
            Ok(InputFile {
                name: s.name.clone(),
                path,
                identity: (meta.dev(), meta.ino()),
            })
        })
        .collect()
}

/// Refuses to resume from `record` when the pipeline's endpoints are not
/// those it was taken for, or an input changed in the part already read.
fn check_resume(
    p: &Pipeline,
    record: &CheckpointRecord,
    sources: &[InputFile],
    sinks: &[(String, PathBuf)],
) -> Result<(), RunError> {
    let refuse = |why: String| {
        Err(RunError::Setup(format!(
            "cannot resume from checkpoint {} of the interrupted run ({}): {why}; run with --from-scratch to discard the checkpoint and start over",
            record.id,
            when(record.written_ms)
        )))
    };
    if record.partitions != p.partitions {
        return refuse(format!(
            "the pipeline now has {} partitions, the checkpoint's state and positions are of {}",
            p.partitions, record.partitions
        ));
    }
    let sources_were = record.sources.iter().map(|s| (&*s.name, &*s.path));
    let sources_are = sources.iter().map(|i| (&*i.name, &*i.path));
    if let Some(why) = other_endpoints(("reads", "reading"), sources_were, sources_are) {
        return refuse(why);
    }
    let sinks_were = record.sinks.iter().map(|s| (&*s.name, &*s.path));
    let sinks_are = sinks.iter().map(|(n, path)| (&**n, &**path));
    if let Some(why) = other_endpoints(("writes", "writing"), sinks_were, sinks_are) {
        return refuse(why);
    }
    for (at, input) in record.sources.iter().zip(sources) {
        if let Some(why) = input_changed(at, &input.path, input.identity) {
            return refuse(format!("source `{}`: {why}", input.name));
        }
    }
    for at in &record.sinks {
        let length = std::fs::metadata(&at.path).map(|m| m.len()).unwrap_or(0);
        if length < at.length {
            return refuse(format!(
                "sink `{}`: {} has {length} bytes, fewer than the {} the checkpoint counts: something else changed it",
                at.name,
                at.path.display(),
                at.length
            ));
        }
    }
    Ok(())
}

/// Why the pipeline's sources or sinks (`verb`: what it does with them,
/// and its participle) are not those a checkpoint was taken with, by name
/// and path, if not.
fn other_endpoints<'a>(
    (verb, doing): (&str, &str),
    were: impl Iterator<Item = (&'a str, &'a Path)>,
    are: impl Iterator<Item = (&'a str, &'a Path)>,
) -> Option<String> {
    let (were, are): (Vec<_>, Vec<_>) = (were.collect(), are.collect());
    if were == are {
        return None;
    }
    let names = |v: &[(&str, &Path)]| {
        v.iter()
            .map(|(n, path)| format!("`{n}` ({})", path.display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "the pipeline now {verb} {}, the checkpoint was taken {doing} {}",
        names(&are),
        names(&were)
    ))
}

/// Why input `path` is not what the checkpoint read, if it is not: another
/// file now, shorter, or different in the part read. `None`: the same, or
/// grown.
fn input_changed(at: &SourceAt, path: &Path, identity: (u64, u64)) -> Option<String> {
    let shown = path.display();
    if identity != (at.device, at.inode) {
        return Some(format!(
            "{shown} is another file than the one the checkpoint read (replaced, rotated or rewritten since: inode {} then, {} now)",
            at.inode, identity.1
        ));
    }
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => return Some(format!("cannot read {shown}: {e}")),
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    if length < at.read.bytes {
        return Some(format!(
            "{shown} has {length} bytes, fewer than the {} already read (truncated or rewritten)",
            at.read.bytes
        ));
    }
    let mut crc = crc32fast::Hasher::new();
    let mut left = at.read.bytes;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                crc.update(&buf[..n]);
                left -= n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Some(format!("cannot read {shown}: {e}")),
        }
    }
    if crc.finalize() != at.read.crc {
        return Some(format!(
            "{shown} changed in its first {} bytes, the part already read (line {} and before): rewritten since",
            at.read.bytes, at.read.lines
        ));
    }
    None
}

/// `resuming from checkpoint 12 (…): source `orders` at line 1234; sink
/// `out` cut back to 4567 bytes`.
fn resume_note(record: &CheckpointRecord) -> String {
    let sources: Vec<String> = record
        .sources
        .iter()
        .map(|s| match s.finished {
            true => format!(
                "source `{}` read to its end ({} lines)",
                s.name, s.read.lines
            ),
            false => format!("source `{}` after line {}", s.name, s.read.lines),
        })
        .collect();
    let sinks: Vec<String> = record
        .sinks
        .iter()
        .map(|s| format!("sink `{}` from byte {}", s.name, s.length))
        .collect();
    format!(
        "exactly-once: resuming the interrupted run from checkpoint {} ({}): {}; {} (--from-scratch starts over)",
        record.id,
        when(record.written_ms),
        sources.join(", "),
        sinks.join(", ")
    )
}
