//! The one place that sees the generated WIT bindings. Everything outside
//! the plugin module works with packed bytes and [`crate::record::Record`].

wasmtime::component::bindgen!({
    world: "transformer",
    path: "../wit",
});

/// The aggregator world. Its `host` import is the transformer world's
/// interface (`weir:plugin/host@0.2.0`): one implementation, linked once.
pub mod aggregator {
    wasmtime::component::bindgen!({
        world: "aggregator",
        path: "../wit",
        with: { "weir:plugin/host": super::weir::plugin::host },
    });
}

/// The versioned aggregator world, for its `accumulator-versions` export
/// alone: a component of it is driven through [`aggregator`]'s bindings,
/// with this interface looked up beside them when the component exports it.
pub mod versioned_aggregator {
    wasmtime::component::bindgen!({
        world: "versioned-aggregator",
        path: "../wit",
        with: { "weir:plugin/host": super::weir::plugin::host },
    });
}

/// The timestamp-extractor world, sharing the transformer world's `host`.
pub mod extractor {
    wasmtime::component::bindgen!({
        world: "timestamp-extractor",
        path: "../wit",
        with: { "weir:plugin/host": super::weir::plugin::host },
    });
}

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
