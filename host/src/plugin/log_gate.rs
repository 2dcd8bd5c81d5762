//! What a step's plugin instances may write to the host log.
//!
//! Plugins log through the `host::log` import, stdout and stderr. Without a
//! bound a plugin logging per record floods the host log (1,000 records
//! once made 112 MB of it), and a message with a newline could print a
//! line that looks like the host's own. So every line a plugin writes
//! passes one [`LogGate`] per step, shared by the step's instances in every
//! task: it is rate- and size-limited by a token bucket (the step's
//! `log-lines-per-second` and `log-bytes-per-second`, with a burst of up to
//! one second's allowance), lines over it are counted and dropped (the
//! first drop is said at once, the count at the end of the run), and
//! control characters are escaped so a line stays one line.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::limits::Limits;

/// Longest line written: a longer message (or stdout text without a
/// newline) is cut there.
pub const MAX_LINE: usize = 4096;

/// The level of a plugin's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The log budget of one step and what it dropped.
pub struct LogGate {
    step: Arc<str>,
    lines_per_second: f64,
    bytes_per_second: f64,
    bucket: Mutex<Bucket>,
    dropped_lines: AtomicU64,
    dropped_bytes: AtomicU64,
}

/// Allowance left, refilled continuously up to one second's worth.
struct Bucket {
    lines: f64,
    bytes: f64,
    refilled: Instant,
    /// The first drop since the counts were last taken was said.
    said: bool,
}

impl LogGate {
    /// The gate of step `step`, with the log limits of `limits`.
    pub fn new(step: Arc<str>, limits: &Limits) -> Arc<LogGate> {
        let lines_per_second = f64::from(limits.log_lines_per_second.max(1));
        let bytes_per_second = limits.log_bytes_per_second.max(1) as f64;
        Arc::new(LogGate {
            step,
            lines_per_second,
            bytes_per_second,
            bucket: Mutex::new(Bucket {
                lines: lines_per_second,
                bytes: bytes_per_second,
                refilled: Instant::now(),
                said: false,
            }),
            dropped_lines: AtomicU64::new(0),
            dropped_bytes: AtomicU64::new(0),
        })
    }

    /// The step whose plugins write through this gate.
    pub fn step(&self) -> &Arc<str> {
        &self.step
    }

    /// Writes one line from the plugin at `level` (`stream`: `stdout` or
    /// `stderr` for printed text, `None` for the log import), if the log
    /// shows that level and the step's budget allows it. `text` is cut to
    /// [`MAX_LINE`] bytes and its control characters are escaped.
    pub fn write(&self, level: LogLevel, stream: Option<&'static str>, text: &str) {
        if !enabled(level) {
            return;
        }
        let text = cut(text);
        if !self.admit(text.len(), Instant::now()) {
            return;
        }
        let text = escape_controls(&text);
        let step = &*self.step;
        macro_rules! event {
            ($level:ident) => {
                match stream {
                    Some(stream) => tracing::$level!(operator = step, stream, "{text}"),
                    None => tracing::$level!(operator = step, "{text}"),
                }
            };
        }
        match level {
            LogLevel::Trace => event!(trace),
            LogLevel::Debug => event!(debug),
            LogLevel::Info => event!(info),
            LogLevel::Warn => event!(warn),
            LogLevel::Error => event!(error),
        }
    }

    /// Whether a line of `len` bytes may be written at `now`; one that may
    /// not is counted, and the first one is said.
    fn admit(&self, len: usize, now: Instant) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.refilled = now;
        b.lines = (b.lines + elapsed * self.lines_per_second).min(self.lines_per_second);
        b.bytes = (b.bytes + elapsed * self.bytes_per_second).min(self.bytes_per_second);
        // A line longer than a second's bytes costs all of them, not forever.
        let cost = (len as f64).min(self.bytes_per_second);
        if b.lines >= 1.0 && b.bytes >= cost {
            b.lines -= 1.0;
            b.bytes -= cost;
            return true;
        }
        self.dropped_lines.fetch_add(1, Ordering::Relaxed);
        self.dropped_bytes.fetch_add(len as u64, Ordering::Relaxed);
        if !std::mem::replace(&mut b.said, true) {
            drop(b);
            tracing::warn!(
                step = &*self.step,
                "plugin logs more than {} lines or {} bytes per second; lines over that are dropped \
                 and counted at the end of the run (limits `log-lines-per-second`, `log-bytes-per-second`)",
                self.lines_per_second,
                self.bytes_per_second
            );
        }
        false
    }

    /// Lines and bytes dropped since the last call; counting starts again.
    pub fn take_dropped(&self) -> (u64, u64) {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        b.said = false;
        (
            self.dropped_lines.swap(0, Ordering::Relaxed),
            self.dropped_bytes.swap(0, Ordering::Relaxed),
        )
    }
}

fn enabled(level: LogLevel) -> bool {
    match level {
        LogLevel::Trace => tracing::enabled!(tracing::Level::TRACE),
        LogLevel::Debug => tracing::enabled!(tracing::Level::DEBUG),
        LogLevel::Info => tracing::enabled!(tracing::Level::INFO),
        LogLevel::Warn => tracing::enabled!(tracing::Level::WARN),
        LogLevel::Error => tracing::enabled!(tracing::Level::ERROR),
    }
}

/// `text` cut to [`MAX_LINE`] bytes at a character boundary, saying so.
fn cut(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_LINE {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… ({} more bytes cut)",
        &text[..end],
        text.len() - end
    ))
}

/// `text` with its control characters written as escapes (`\n`, `\r`,
/// `\t`, `\u{1b}`), so a plugin's line stays one line in the host log and
/// can neither start a line of its own nor send terminal escapes.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "{}", c.escape_unicode());
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn gate(lines: u32, bytes: usize) -> Arc<LogGate> {
        let limits = Limits {
            log_lines_per_second: lines,
            log_bytes_per_second: bytes,
            ..Limits::default()
        };
        LogGate::new("s".into(), &limits)
    }

    #[test]
    fn a_burst_of_one_seconds_lines_passes_then_the_rate_holds() {
        let g = gate(10, 1 << 20);
        let t0 = Instant::now();
        let passed = (0..100).filter(|_| g.admit(10, t0)).count();
        assert_eq!(passed, 10);
        // Half a second later, half a second's lines are allowed again.
        let t1 = t0 + Duration::from_millis(500);
        let passed = (0..100).filter(|_| g.admit(10, t1)).count();
        assert_eq!(passed, 5);
        assert_eq!(g.take_dropped(), (185, 1850));
        assert_eq!(g.take_dropped(), (0, 0), "counting starts again");
    }

    #[test]
    fn bytes_are_limited_as_well_as_lines() {
        let g = gate(1000, 100);
        let t0 = Instant::now();
        assert!(g.admit(60, t0));
        assert!(!g.admit(60, t0), "only 40 bytes left");
        assert!(g.admit(40, t0));
        // A line longer than a second's bytes passes once they are all there.
        let t1 = t0 + Duration::from_secs(1);
        assert!(g.admit(500, t1));
        assert!(!g.admit(1, t1));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain text"), "plain text");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\nb\r\tc\u{1b}[31m"),
            "a\\nb\\r\\tc\\u{1b}[31m"
        );
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let text = "é".repeat(MAX_LINE);
        let cut = cut(&text);
        assert!(cut.len() < MAX_LINE + 40, "{}", cut.len());
        assert!(cut.ends_with(&format!("… ({} more bytes cut)", MAX_LINE)));
    }
}
