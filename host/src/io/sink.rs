//! Embedded sinks: files and stdout of lines, plus in-memory capture for
//! the topology test driver. Tasks encode records themselves (in parallel,
//! see `runtime::sinks`); a sink only writes the encoded bytes, in the order
//! it gets them, and notes its length at a checkpoint's mark.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::Receiver;

use super::ack::Ack;
use crate::pipeline::SinkMode;

/// Encoded JSON lines from one task, ready to write.
#[derive(Debug, Default)]
pub struct SinkChunk {
    pub bytes: Vec<u8>,
    pub records: u64,
    /// Input batches whose outputs are in this chunk (one hold each),
    /// released once it is written and flushed.
    pub acks: Vec<Arc<Ack>>,
    /// A checkpoint's mark: once everything before it is written and
    /// flushed, the writer notes its length here.
    pub mark: Option<Arc<SinkMark>>,
}

/// Where a sink's writer notes how many bytes it had written at a
/// checkpoint, and tells the checkpoint so.
pub struct SinkMark {
    bytes: OnceLock<u64>,
    on_written: Box<dyn Fn() + Send + Sync>,
}

impl SinkMark {
    pub fn new(on_written: impl Fn() + Send + Sync + 'static) -> SinkMark {
        SinkMark {
            bytes: OnceLock::new(),
            on_written: Box::new(on_written),
        }
    }

    /// The sink's length at the mark, once written.
    pub fn written(&self) -> Option<u64> {
        self.bytes.get().copied()
    }

    fn reached(&self, bytes: u64) {
        let _ = self.bytes.set(bytes);
        (self.on_written)();
    }
}

impl std::fmt::Debug for SinkMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkMark")
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// Where a sink writes at run time; `weir test` swaps in [`SinkOutput::Capture`].
#[derive(Debug, Clone)]
pub enum SinkOutput {
    File(PathBuf),
    Stdout,
    Capture(Arc<Mutex<Vec<u8>>>),
}

#[derive(Debug, thiserror::Error)]
#[error("sink `{sink}`: cannot write {what}: {error}")]
pub struct SinkError {
    pub sink: String,
    pub what: String,
    pub error: std::io::Error,
}

/// A sink's output, opened (created, emptied or appended to) and not yet
/// written to.
pub struct OpenedSink {
    writer: Box<dyn Write + Send>,
    what: String,
    /// Bytes already in the file (an appended file): a checkpoint's mark
    /// notes the file's length, not this run's share of it.
    start: u64,
    /// The file, synced to disk at each checkpoint's mark (`state.fsync`).
    sync: Option<std::fs::File>,
}

impl OpenedSink {
    /// Syncs the file to disk at each checkpoint's mark, before the
    /// checkpoint counts its bytes (a file sink only).
    pub fn synced_at_marks(
        mut self,
        name: &str,
        file: &std::path::Path,
    ) -> Result<OpenedSink, SinkError> {
        let opened = std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .map_err(|error| SinkError {
                sink: name.to_string(),
                what: file.display().to_string(),
                error,
            })?;
        self.sync = Some(opened);
        Ok(self)
    }
}

impl SinkOutput {
    /// Opens sink `name`'s output: a file (and its folder) is created, or
    /// emptied or appended to by `mode`. A run opens its sinks once every
    /// plugin has started and every source has opened, and before the
    /// first input byte is read: a run that cannot start leaves existing
    /// files as they were, and an unwritable sink fails before stdin is
    /// consumed.
    pub fn open(&self, name: &str, mode: SinkMode) -> Result<OpenedSink, SinkError> {
        let err = |what: String| {
            move |error| SinkError {
                sink: name.to_string(),
                what,
                error,
            }
        };
        Ok(match self {
            SinkOutput::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(err(dir.display().to_string()))?;
                }
                let what = path.display().to_string();
                let mut options = std::fs::OpenOptions::new();
                match mode {
                    SinkMode::Truncate => options.write(true).create(true).truncate(true),
                    SinkMode::Append => options.append(true).create(true),
                };
                let file = options.open(path).map_err(err(what.clone()))?;
                let start = match mode {
                    SinkMode::Truncate => 0,
                    SinkMode::Append => file.metadata().map_err(err(what.clone()))?.len(),
                };
                // Chunks come in hundreds of KiB already: a buffer in between
                // would only copy every byte once more.
                OpenedSink {
                    writer: Box::new(file),
                    what,
                    start,
                    sync: None,
                }
            }
            SinkOutput::Stdout => OpenedSink {
                writer: Box::new(std::io::BufWriter::with_capacity(
                    1 << 16,
                    std::io::stdout(),
                )),
                what: "stdout".into(),
                start: 0,
                sync: None,
            },
            SinkOutput::Capture(buf) => OpenedSink {
                writer: Box::new(CaptureWriter(buf.clone())),
                what: "capture".into(),
                start: 0,
                sync: None,
            },
        })
    }

    /// Opens a file sink to continue an interrupted exactly-once run: cut
    /// back to `length`, the bytes its last checkpoint counts (those after
    /// it were written after the checkpoint, and the run writes them
    /// again), and appended to from there.
    pub fn open_at(&self, name: &str, length: u64) -> Result<OpenedSink, SinkError> {
        let SinkOutput::File(path) = self else {
            unreachable!("only file sinks resume");
        };
        let what = path.display().to_string();
        let err = |error| SinkError {
            sink: name.to_string(),
            what: what.clone(),
            error,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(err)?;
        file.set_len(length).map_err(err)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(OpenedSink {
            writer: Box::new(file),
            what: what.clone(),
            start: length,
            sync: None,
        })
    }
}

/// Writes everything received until every task has hung up; returns the
/// number of records written.
pub fn run(name: &str, output: OpenedSink, chunks: Receiver<SinkChunk>) -> Result<u64, SinkError> {
    let OpenedSink {
        mut writer,
        what,
        start,
        sync,
    } = output;
    let err = |what: String| {
        move |error| SinkError {
            sink: name.to_string(),
            what,
            error,
        }
    };
    let (mut written, mut bytes) = (0, start);
    while let Ok(chunk) = chunks.recv() {
        writer.write_all(&chunk.bytes).map_err(err(what.clone()))?;
        written += chunk.records;
        bytes += chunk.bytes.len() as u64;
        if let Some(mark) = &chunk.mark {
            writer.flush().map_err(err(what.clone()))?;
            if let Some(file) = &sync {
                file.sync_data().map_err(err(what.clone()))?;
            }
            mark.reached(bytes);
        }
        if !chunk.acks.is_empty() {
            // Its input offsets are committed after this: out of our buffer first.
            writer.flush().map_err(err(what.clone()))?;
            for ack in &chunk.acks {
                ack.release();
            }
        } else if chunks.is_empty() {
            // Nothing queued: let a reader of a live stream see it now.
            writer.flush().map_err(err(what.clone()))?;
        }
    }
    writer.flush().map_err(err(what))?;
    Ok(written)
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
