//! Embedded sources: files (finite) and stdin (possibly endless) of lines
//! in the source's [`LineFormat`], split into partitions by key hash so
//! every core gets a share. A leading UTF-8 byte-order mark is skipped;
//! blank lines are not records, and are counted.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};

use super::batch::{Batch, InputId, Reject};
use crate::clock::Clock;
use crate::codec::LineFormat;
use crate::codec::lines;
use crate::codec::partitioner::partition_for;
use crate::pipeline::{ErrorPolicy, Source};
use crate::record::{Origin, Record};

/// Where a source's batches go: the runtime hands partition `p`'s batches
/// to the task that owns it.
pub trait PartitionOutlet {
    /// Hands over a batch of `partition` (waiting while its task is busy:
    /// that is the backpressure on the source). `false`: the task is gone.
    fn send(&self, partition: u32, batch: Batch) -> bool;

    /// Whether the run asks the source to pause at this chunk boundary for
    /// a checkpoint (it then hands over what it gathered and calls
    /// [`PartitionOutlet::pause`]).
    fn checkpoint_due(&self) -> bool {
        false
    }

    /// Everything before `at` was handed over; waits while the checkpoint
    /// is taken.
    fn pause(&self, _at: Position) {}
}

/// What a source read, when it stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTo {
    pub records: u64,
    pub position: Position,
    /// Lines with nothing but whitespace: read, not records.
    pub blank_lines: u64,
}

/// How far a source has read: whole lines only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub bytes: u64,
    pub lines: u64,
    /// CRC-32 of those bytes: a resumed run checks that its input still
    /// starts with what it read before.
    pub crc: u32,
}

/// Where a source reads from at run time; `weir test` swaps in fixture files.
#[derive(Debug, Clone)]
pub enum SourceInput {
    File(PathBuf),
    Stdin,
}

impl SourceInput {
    /// Opens the input of source `name`. A run opens every input before it
    /// creates any sink, so a missing input leaves existing outputs as
    /// they were.
    pub fn open(&self, name: &str) -> Result<OpenedInput, SourceError> {
        match self {
            SourceInput::File(path) => std::fs::File::open(path)
                .map(|file| OpenedInput::File(file, path.clone()))
                .map_err(|error| SourceError::Io {
                    name: name.to_string(),
                    what: path.display().to_string(),
                    error,
                }),
            SourceInput::Stdin => Ok(OpenedInput::Stdin),
        }
    }
}

/// A source's input, opened and not read yet.
#[derive(Debug)]
pub enum OpenedInput {
    File(std::fs::File, PathBuf),
    Stdin,
}

/// A fatal source problem: the input cannot be read, or a bad line under
/// the `fail` policy.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{name}`: cannot read {what}: {error}")]
    Io {
        name: String,
        what: String,
        error: std::io::Error,
    },
    #[error("source `{name}`: {what}:{line}: {reason}")]
    BadLine {
        name: String,
        what: String,
        line: u64,
        reason: String,
    },
}

pub struct SourceReader<'a> {
    pub index: u16,
    pub spec: &'a Source,
    /// What a line holds: the source's `format`, or the envelope for a
    /// `weir test` fixture.
    pub format: LineFormat,
    /// Where blank lines are counted as they are read.
    pub blank_lines: &'a std::sync::atomic::AtomicU64,
    pub partitions: u32,
    pub batch_size: usize,
    pub policy: ErrorPolicy,
    pub stop: Arc<AtomicBool>,
    pub counter: &'a std::sync::atomic::AtomicU64,
    /// Timestamps records that have none.
    pub clock: &'a dyn Clock,
    /// Where to start: the beginning, or where a resumed run's checkpoint
    /// says its input was read to (a file only).
    pub start: Position,
}

const CHUNK: usize = 1 << 20;

impl SourceReader<'_> {
    /// Reads `input` to the end (or until stopped), sending batches to the
    /// partition tasks. Returns how much it read.
    pub fn run(
        &self,
        input: OpenedInput,
        outputs: &dyn PartitionOutlet,
    ) -> Result<ReadTo, SourceError> {
        let (mut reader, what): (Box<dyn Read>, String) = match input {
            OpenedInput::File(mut file, path) => {
                let what = path.display().to_string();
                if self.start.bytes > 0 {
                    use std::io::Seek;
                    file.seek(std::io::SeekFrom::Start(self.start.bytes))
                        .map_err(|error| SourceError::Io {
                            name: self.spec.name.clone(),
                            what: what.clone(),
                            error,
                        })?;
                }
                (Box::new(file), what)
            }
            OpenedInput::Stdin => (
                Box::new(StoppableStdin::start(self.stop.clone())),
                "stdin".to_string(),
            ),
        };
        let mut state = Splitter {
            reader: self,
            what: &what,
            pending: (0..self.partitions).map(|_| self.new_batch()).collect(),
            line_no: self.start.lines,
            read: 0,
            blank: 0,
        };
        let mut buf = BytesMut::with_capacity(CHUNK);
        // Bytes of whole lines handed to the splitter, and their CRC.
        let mut consumed = self.start.bytes;
        let mut crc = crc32fast::Hasher::new_with_initial(self.start.crc);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            if buf.capacity() - buf.len() < CHUNK / 4 {
                buf.reserve(CHUNK);
            }
            let start = buf.len();
            buf.resize(buf.capacity(), 0);
            let requested = buf.len() - start;
            let n = match reader.read(&mut buf[start..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    buf.truncate(start);
                    continue;
                }
                Err(error) => {
                    return Err(SourceError::Io {
                        name: self.spec.name.clone(),
                        what: what.clone(),
                        error,
                    });
                }
            };
            buf.truncate(start + n);
            let eof = n == 0;
            if eof && self.stop.load(Ordering::Relaxed) {
                // Stopped (Ctrl-C), not the end of the input: a line still
                // being written is not a record yet.
                if !buf.is_empty() {
                    tracing::warn!(
                        source = %self.spec.name,
                        bytes = buf.len(),
                        "stopped while a line was incomplete; it was not read"
                    );
                }
                break;
            }
            let complete = if eof {
                buf.len()
            } else {
                match memchr::memrchr(b'\n', &buf) {
                    Some(i) => i + 1,
                    None => continue,
                }
            };
            if complete > 0 {
                let chunk = buf.split_to(complete).freeze();
                state.lines(&chunk, outputs)?;
                consumed += complete as u64;
                crc.update(&chunk);
            }
            if outputs.checkpoint_due() {
                state.flush_all(outputs);
                outputs.pause(Position {
                    bytes: consumed,
                    lines: state.line_no,
                    crc: crc.clone().finalize(),
                });
            }
            if eof {
                break;
            }
            if n < requested {
                // Caught up with a live writer (stdin, a pipe, a FIFO): pass
                // on what was read now rather than waiting for full batches.
                state.flush_all(outputs);
            }
        }
        state.flush_all(outputs);
        Ok(ReadTo {
            records: state.read,
            position: Position {
                bytes: consumed,
                lines: state.line_no,
                crc: crc.finalize(),
            },
            blank_lines: state.blank,
        })
    }

    fn new_batch(&self) -> Batch {
        Batch::new(InputId::Source(self.index), self.batch_size)
    }
}

struct Splitter<'r, 'a> {
    reader: &'r SourceReader<'a>,
    what: &'r str,
    pending: Vec<Batch>,
    line_no: u64,
    read: u64,
    blank: u64,
}

/// The UTF-8 byte-order mark some editors put at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a line is not a record.
enum Bad {
    /// The line does not decode in its format.
    Line(String),
    /// Its key or timestamp field is missing or does not parse.
    Field(String),
}

impl Splitter<'_, '_> {
    fn lines(&mut self, chunk: &Bytes, outputs: &dyn PartitionOutlet) -> Result<(), SourceError> {
        let now = self.reader.clock.now_ms();
        let spec = self.reader.spec;
        let partitions = self.reader.partitions;
        let mut rest: &[u8] = chunk;
        while !rest.is_empty() {
            let (line, next) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            rest = next;
            self.line_no += 1;
            let mut line = line.strip_suffix(b"\r").unwrap_or(line);
            if self.line_no == 1 {
                line = line.strip_prefix(BOM).unwrap_or(line);
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                self.blank += 1;
                self.reader.blank_lines.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut decoded = lines::decode(
                self.reader.format,
                chunk,
                line,
                spec.key_format,
                spec.value_format,
                now,
            );
            // Kept apart from `decoded` so the usual path moves no record.
            let mut bad_field = None;
            if !spec.extract.is_empty()
                && let Ok(record) = &mut decoded
            {
                bad_field = spec.extract.apply(record, spec.key_format).err();
            }
            let partition = match &decoded {
                Ok(Record { key: Some(k), .. }) if bad_field.is_none() => {
                    partition_for(k, partitions)
                }
                // Spread by line number, not by a counter: a resumed run
                // sends each line where the run it continues did.
                _ => (self.line_no % u64::from(partitions)) as u32,
            };
            let origin = Origin {
                source: self.reader.index,
                partition,
                offset: self.line_no,
            };
            let batch = &mut self.pending[partition as usize];
            let bad = match (decoded, bad_field) {
                (Ok(record), None) => {
                    batch.records.push(record);
                    batch.origins.push(origin);
                    self.read += 1;
                    None
                }
                (_, Some(field)) => Some(Bad::Field(field.to_string())),
                (Err(e), None) => Some(Bad::Line(e.0)),
            };
            match bad {
                None => {}
                Some(Bad::Line(reason) | Bad::Field(reason))
                    if self.reader.policy == ErrorPolicy::Fail =>
                {
                    self.flush_all(outputs);
                    return Err(SourceError::BadLine {
                        name: spec.name.clone(),
                        what: self.what.to_string(),
                        line: self.line_no,
                        reason,
                    });
                }
                Some(bad) => batch.rejects.push(Reject {
                    origin,
                    kind: crate::operators::FailureKind::Decode,
                    record: Record {
                        value: Some(chunk.slice_ref(line)),
                        timestamp: now,
                        ..Record::default()
                    },
                    reason: match bad {
                        Bad::Line(reason) => reason,
                        Bad::Field(reason) => {
                            format!("{reason} ({} line {})", self.what, self.line_no)
                        }
                    },
                }),
            }
            if batch.records.len() >= self.reader.batch_size {
                self.flush(partition as usize, outputs);
            }
        }
        Ok(())
    }

    fn flush(&mut self, partition: usize, outputs: &dyn PartitionOutlet) {
        let batch = &mut self.pending[partition];
        if batch.records.is_empty() && batch.rejects.is_empty() {
            return;
        }
        let full = std::mem::replace(batch, self.reader.new_batch());
        self.reader
            .counter
            .fetch_add(full.records.len() as u64, Ordering::Relaxed);
        // Refused means the task stopped on a fatal error; the run
        // reports that error, so nothing is lost silently here.
        let _ = outputs.send(partition as u32, full);
    }

    fn flush_all(&mut self, outputs: &dyn PartitionOutlet) {
        for p in 0..self.pending.len() {
            self.flush(p, outputs);
        }
    }
}

/// Stdin read on a helper thread, so a stopped run (Ctrl-C) ends even while
/// nothing arrives on stdin: the source sees end-of-input once stopped.
struct StoppableStdin {
    chunks: crossbeam_channel::Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    stop: Arc<AtomicBool>,
}

impl StoppableStdin {
    fn start(stop: Arc<AtomicBool>) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(4);
        // Detached: it may stay blocked in read(2) until the process exits.
        let _ = std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                loop {
                    let mut buf = vec![0u8; 64 << 10];
                    match stdin.read(&mut buf) {
                        Ok(n) => {
                            buf.truncate(n);
                            if tx.send(Ok(buf)).is_err() || n == 0 {
                                return;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            });
        StoppableStdin {
            chunks: rx,
            current: Vec::new(),
            pos: 0,
            stop,
        }
    }
}

impl Read for StoppableStdin {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.current.len() {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(0);
            }
            match self
                .chunks
                .recv_timeout(std::time::Duration::from_millis(100))
            {
                Ok(Ok(chunk)) if chunk.is_empty() => return Ok(0),
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
