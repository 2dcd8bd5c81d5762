//! A test plugin that misbehaves on purpose, so tests can check that the
//! host's limits and sandbox hold. Records whose value equals `trigger` set
//! it off; every other record is forwarded unchanged.
//!
//! ```yaml
//! config: { mode: loop, trigger: boom }
//! ```
//! Modes: `loop` (spin forever), `alloc` (allocate without end), `panic`,
//! `stack-overflow` (recurse without end), `poison` / `fail` (report an
//! error), `big-output` (emit one value of `size` bytes, default 16 MiB),
//! `fan-out` (emit `count` records whose values are `size` bytes),
//! `log` (write `message` `count` times through the log import, stdout and
//! stderr), `ports-change` (declare port `out` before the wall-clock time
//! `switch-at` (Unix ms) and `late` after it; a triggering record waits for
//! that time, then panics, so the replacement instance declares `late`),
//! `read-file` (try to read `path`, default `/etc/passwd`), `read-env` (list
//! the environment), `stdout` (print to stdout and stderr), `bad-json`
//! (append a member without a value to a JSON object value, so the output
//! starts exactly like the input). `read-file`, `read-env` and `stdout` emit
//! what they managed to read as the record's value. With `every: true`
//! every record sets it off; with `contains: true` every record whose value
//! contains `trigger` does (`{ mode: poison, trigger: "7}", contains: true }`
//! fails the tenth of `{"n": ...}` records whose `n` ends in 7).

use serde::Deserialize;
use weir_sdk::{Config, Emitter, Error, Output, Record, StepKind, Transform};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    Loop,
    Alloc,
    Panic,
    Poison,
    Fail,
    BigOutput,
    ReadFile,
    ReadEnv,
    Stdout,
    BadJson,
    StackOverflow,
    FanOut,
    Log,
    PortsChange,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    mode: Mode,
    #[serde(default = "default_trigger")]
    trigger: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    every: bool,
    #[serde(default)]
    contains: bool,
    #[serde(default = "default_size")]
    size: usize,
    #[serde(default = "default_count")]
    count: usize,
    #[serde(default = "default_message")]
    message: String,
    #[serde(default)]
    switch_at: u64,
}

fn default_size() -> usize {
    16 << 20
}

fn default_count() -> usize {
    1
}

fn default_message() -> String {
    "misbehave says hello".into()
}

/// Wall-clock time in Unix milliseconds (WASI's clock; the host's time).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Recurses until the stack runs out; the frame is kept large and live so
/// the compiler can neither shrink it nor turn the recursion into a loop.
#[inline(never)]
#[allow(unconditional_recursion)] // the point: it must not return
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 512]);
    recurse(depth + 1).wrapping_add(frame[(depth % 512) as usize])
}

fn default_trigger() -> String {
    "boom".into()
}

fn default_path() -> String {
    "/etc/passwd".into()
}

pub struct Misbehave(Settings);

impl Transform for Misbehave {
    // Forwards, emits one record, or fails: the rules of a flat-map step.
    const KINDS: &'static [StepKind] = &[StepKind::FlatMap];

    fn init(config: Config) -> Result<Self, String> {
        config.parse().map(Misbehave)
    }

    fn ports(&self) -> Vec<String> {
        let late = matches!(self.0.mode, Mode::PortsChange) && now_ms() >= self.0.switch_at;
        vec![if late { "late" } else { "out" }.to_string()]
    }

    fn process<'a>(&mut self, record: &Record<'a>, out: &mut Emitter<'_, 'a>) -> Result<(), Error> {
        // A JSON trigger (`bad-json`): the value holds it as a member name.
        let contains = self.0.contains || matches!(self.0.mode, Mode::BadJson);
        let triggered = self.0.every
            || match record.value() {
                Some(v) if contains => v
                    .windows(self.0.trigger.len())
                    .any(|w| w == self.0.trigger.as_bytes()),
                value => value == Some(self.0.trigger.as_bytes()),
            };
        if !triggered {
            out.forward(0);
            return Ok(());
        }
        let reply = |text: String| Output::from_record(record).with_value(Some(text));
        match self.0.mode {
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Alloc => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Panic => panic!("misbehave: panic on purpose"),
            Mode::Poison => return Err(Error::poison("misbehave: poison on purpose")),
            Mode::Fail => return Err(Error::failed("misbehave: failure on purpose")),
            Mode::StackOverflow => {
                std::hint::black_box(recurse(0));
            }
            Mode::BigOutput => out.emit(0, &reply("x".repeat(self.0.size))),
            Mode::FanOut => {
                let each = Output::from_record(record).with_value(Some(vec![b'x'; self.0.size]));
                for _ in 0..self.0.count {
                    out.emit(0, &each);
                }
            }
            Mode::Log => {
                for _ in 0..self.0.count {
                    weir_sdk::log::info(&self.0.message);
                    println!("{}", self.0.message);
                    eprintln!("{}", self.0.message);
                }
                out.forward(0);
            }
            Mode::PortsChange => {
                while now_ms() < self.0.switch_at {
                    std::hint::spin_loop();
                }
                panic!("misbehave: panic after the ports changed");
            }
            Mode::ReadFile => {
                let text = match std::fs::read_to_string(&self.0.path) {
                    Ok(content) => format!("read {} bytes: {content}", content.len()),
                    Err(e) => format!("error: {e}"),
                };
                out.emit(0, &reply(text));
            }
            Mode::ReadEnv => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                out.emit(0, &reply(format!("env: [{}]", vars.join(","))));
            }
            Mode::BadJson => {
                let value = record.value().unwrap_or_default();
                let end = value
                    .iter()
                    .rposition(|&c| c == b'}')
                    .unwrap_or(value.len());
                let broken = [&value[..end], b",\"broken\":}"].concat();
                out.emit(0, &Output::from_record(record).with_value(Some(broken)));
            }
            Mode::Stdout => {
                weir_sdk::log::info("misbehave says hello through the log import");
                println!("misbehave says hello on stdout");
                eprintln!("misbehave says hello on stderr");
                out.forward(0);
            }
        }
        Ok(())
    }
}

weir_sdk::export_transform!(Misbehave);
