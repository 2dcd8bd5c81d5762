//! Plugin stdout and stderr, turned into host log lines.
//!
//! A sandboxed plugin inherits no stdio: what it prints is split into lines
//! and logged at debug level (stdout) or warn level (stderr) with the
//! operator's name, through the step's [`LogGate`] (bounded, escaped), so a
//! chatty plugin cannot corrupt a pipeline writing its records to stdout
//! nor flood the log. The end of what a call printed on stderr is kept
//! whatever the gate lets through ([`StderrTail`]): a Rust panic's message
//! is there, and it becomes the reason of the record that trapped.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use super::log_gate::{LogGate, LogLevel, MAX_LINE};

/// What the current call wrote to stderr, its last [`StderrTail::KEEP`]
/// bytes; cleared when a call starts.
#[derive(Default)]
pub struct StderrTail(Mutex<Vec<u8>>);

impl StderrTail {
    const KEEP: usize = 4096;

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The text kept, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn push(&self, bytes: &[u8]) {
        let mut tail = self.lock();
        let bytes = &bytes[bytes.len().saturating_sub(Self::KEEP)..];
        let excess = (tail.len() + bytes.len()).saturating_sub(Self::KEEP);
        tail.drain(..excess);
        tail.extend_from_slice(bytes);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone)]
pub struct LogStream {
    gate: Arc<LogGate>,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
    /// Set for stderr.
    tail: Option<Arc<StderrTail>>,
}

impl LogStream {
    pub fn stdout(gate: Arc<LogGate>) -> Self {
        LogStream {
            gate,
            stream: "stdout",
            pending: Arc::default(),
            tail: None,
        }
    }

    pub fn stderr(gate: Arc<LogGate>, tail: Arc<StderrTail>) -> Self {
        LogStream {
            gate,
            stream: "stderr",
            pending: Arc::default(),
            tail: Some(tail),
        }
    }

    fn write_bytes(&self, mut bytes: &[u8]) {
        if let Some(tail) = &self.tail {
            tail.push(bytes);
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        while !bytes.is_empty() {
            let room = MAX_LINE - pending.len();
            match bytes.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => {
                    pending.extend_from_slice(&bytes[..i]);
                    bytes = &bytes[i + 1..];
                    self.emit(&mut pending);
                }
                None => {
                    let n = room.min(bytes.len());
                    pending.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if pending.len() == MAX_LINE {
                        self.emit(&mut pending);
                    }
                }
            }
        }
    }

    fn emit(&self, line: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(line);
        let level = if self.tail.is_some() {
            LogLevel::Warn
        } else {
            LogLevel::Debug
        };
        self.gate.write(level, Some(self.stream), &text);
        line.clear();
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(1 << 16)
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
