//! Plugin stdout and stderr, turned into host log lines.
//!
//! A sandboxed plugin inherits no stdio: what it prints is split into lines
//! and logged at debug level (stdout) or warn level (stderr) with the
//! operator's name, so a chatty plugin cannot corrupt a pipeline writing its
//! records to stdout.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Longest line kept; a plugin printing without newlines is cut into pieces.
const MAX_LINE: usize = 4096;

#[derive(Clone)]
pub struct LogStream {
    operator: Arc<str>,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl LogStream {
    pub fn new(operator: Arc<str>, stream: &'static str) -> Self {
        LogStream {
            operator,
            stream,
            pending: Arc::default(),
        }
    }

    fn write_bytes(&self, mut bytes: &[u8]) {
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
        let op = &*self.operator;
        if self.stream == "stderr" {
            tracing::warn!(operator = op, stream = self.stream, "{text}");
        } else {
            tracing::debug!(operator = op, stream = self.stream, "{text}");
        }
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
