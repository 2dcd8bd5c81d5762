//! The one place that sees the generated WIT bindings. Everything outside
//! the plugin module works with packed bytes and [`crate::record::Record`].

wasmtime::component::bindgen!({
    world: "transformer",
    path: "../wit",
});

use self::weir::plugin::host::{Host, LogLevel};
use super::log_gate::LogLevel as Level;

impl Host for super::state::HostState {
    /// Through the step's log gate: bounded, and escaped to one line.
    fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Trace => Level::Trace,
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        };
        self.log.write(level, None, &message);
    }
}
