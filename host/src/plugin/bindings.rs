//! The one place that sees the generated WIT bindings. Everything outside
//! the plugin module works with packed bytes and [`crate::record::Record`].

wasmtime::component::bindgen!({
    world: "transformer",
    path: "../wit",
});

use self::weir::plugin::host::{Host, LogLevel};

impl Host for super::state::HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        let op = &*self.operator;
        match level {
            LogLevel::Trace => tracing::trace!(operator = op, "{message}"),
            LogLevel::Debug => tracing::debug!(operator = op, "{message}"),
            LogLevel::Info => tracing::info!(operator = op, "{message}"),
            LogLevel::Warn => tracing::warn!(operator = op, "{message}"),
            LogLevel::Error => tracing::error!(operator = op, "{message}"),
        }
    }
}
