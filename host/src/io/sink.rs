//! Embedded sinks: JSON-lines files and stdout, plus in-memory capture for
//! the topology test driver. Partition tasks encode records themselves (in
//! parallel); a sink only writes the encoded bytes, in the order it gets them.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crossbeam_channel::Receiver;

use super::ack::Ack;

/// Encoded JSON lines from one task, ready to write.
#[derive(Debug, Default)]
pub struct SinkChunk {
    pub bytes: Vec<u8>,
    pub records: u64,
    /// Input batches whose outputs are in this chunk (one hold each),
    /// released once it is written and flushed.
    pub acks: Vec<Arc<Ack>>,
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

/// Writes everything received until every task has hung up; returns the
/// number of records written.
pub fn run(name: &str, output: &SinkOutput, chunks: Receiver<SinkChunk>) -> Result<u64, SinkError> {
    let err = |what: String| {
        move |error| SinkError {
            sink: name.to_string(),
            what,
            error,
        }
    };
    let mut writer: Box<dyn Write> = match output {
        SinkOutput::File(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(err(dir.display().to_string()))?;
            }
            // Chunks come in hundreds of KiB already: a buffer in between
            // would only copy every byte once more.
            let file = std::fs::File::create(path).map_err(err(path.display().to_string()))?;
            Box::new(file)
        }
        SinkOutput::Stdout => Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout(),
        )),
        SinkOutput::Capture(buf) => Box::new(CaptureWriter(buf.clone())),
    };
    let what = match output {
        SinkOutput::File(p) => p.display().to_string(),
        SinkOutput::Stdout => "stdout".into(),
        SinkOutput::Capture(_) => "capture".into(),
    };
    let mut written = 0;
    while let Ok(chunk) = chunks.recv() {
        writer.write_all(&chunk.bytes).map_err(err(what.clone()))?;
        written += chunk.records;
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
