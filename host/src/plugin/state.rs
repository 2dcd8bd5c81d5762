//! What each plugin instance's store holds: an empty WASI context, its
//! resource table, its memory limiter, the step's log gate and what the
//! current call wrote to stderr.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::log_gate::LogGate;
use super::stdio::{LogStream, StderrTail};

pub struct HostState {
    /// Every line the plugin logs or prints passes it.
    pub log: Arc<LogGate>,
    pub stderr_tail: Arc<StderrTail>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
}

impl HostState {
    /// A WASI context that grants nothing: no preopened directories, no
    /// environment, no arguments, no network, no stdin. Stdout and stderr go
    /// to the host's log under the step's name, through its log gate.
    pub fn new(log: Arc<LogGate>, max_memory_bytes: usize) -> Self {
        let stderr_tail = Arc::new(StderrTail::default());
        let wasi = WasiCtx::builder()
            .stdout(LogStream::stdout(log.clone()))
            .stderr(LogStream::stderr(log.clone(), stderr_tail.clone()))
            .allow_blocking_current_thread(true)
            .build();
        HostState {
            log,
            stderr_tail,
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_memory_bytes,
                exceeded: false,
                refused: None,
            },
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps one instance's linear memory and remembers that it refused a growth,
/// so the trap that follows is reported as a memory limit, not a crash.
pub struct MemoryLimiter {
    pub max_memory_bytes: usize,
    pub exceeded: bool,
    /// The size it refused, when that was the memory's initial size (it
    /// had none before): the component cannot start under this limit.
    pub refused: Option<usize>,
}

const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.exceeded = true;
            if current == 0 {
                self.refused = Some(desired);
            }
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (wanted {desired})",
                self.max_memory_bytes
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
