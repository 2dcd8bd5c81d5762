//! A trap in words a person can act on, for a dead-letter reason.
//!
//! wasmtime reports a trap with its Wasm backtrace (700 to 1,100 characters
//! of `<wasm function 80>` frames), and a Rust panic as "`unreachable`
//! instruction executed", its message printed on stderr beforehand; a
//! Rust plugin that runs out of stack overflows its shadow stack in linear
//! memory, which traps as an "out of bounds memory access". The reason says
//! instead what happened: the panic's message and place, "stack overflow",
//! or the trap itself; the backtrace goes to the debug log.

use wasmtime::{Trap, WasmBacktrace};

/// Innermost frames looked at to recognise a runaway recursion.
const RECURSION_FRAMES: usize = 16;

/// Why a call trapped, in one line. `stderr` is what the call printed on
/// stderr (its end).
pub fn trap_reason(e: &wasmtime::Error, stderr: &str) -> String {
    let trap = e.downcast_ref::<Trap>().copied();
    match trap {
        Some(Trap::StackOverflow) => "stack overflow".to_string(),
        Some(Trap::MemoryOutOfBounds) if in_runaway_recursion(e) => {
            "stack overflow (an out-of-bounds memory access in a runaway recursion: \
             the plugin's stack ran past the start of its memory)"
                .to_string()
        }
        Some(Trap::UnreachableCodeReached) => match rust_panic(stderr) {
            Some(panic) => panic,
            None => with_stderr(Trap::UnreachableCodeReached.to_string(), stderr),
        },
        Some(trap) => trap.to_string(),
        None => without_backtrace(e),
    }
}

/// Whether the innermost frames of the trap's backtrace are a recursion
/// (one to three functions calling each other over and over).
fn in_runaway_recursion(e: &wasmtime::Error) -> bool {
    let Some(bt) = e.downcast_ref::<WasmBacktrace>() else {
        return false;
    };
    let frames = bt.frames();
    if frames.len() < RECURSION_FRAMES {
        return false;
    }
    let mut functions: Vec<u32> = frames[..RECURSION_FRAMES]
        .iter()
        .map(|f| f.func_index())
        .collect();
    functions.sort_unstable();
    functions.dedup();
    functions.len() <= 3
}

/// A Rust panic as std's hook prints it:
/// `thread '<unnamed>' (1) panicked at src/lib.rs:7:9:\nmessage\nnote: ...`
/// becomes `panicked at src/lib.rs:7:9: message`.
fn rust_panic(stderr: &str) -> Option<String> {
    let start = stderr.rfind("panicked at ")?;
    let rest = &stderr[start..];
    let (place, message) = rest.split_once(":\n")?;
    let message = message
        .split("\nnote: ")
        .next()
        .unwrap_or(message)
        .trim_end();
    Some(format!("{place}: {}", one_line(message)))
}

/// The trap, and the last line the call printed on stderr (a panic in
/// another language says why there).
fn with_stderr(trap: String, stderr: &str) -> String {
    match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => format!("{trap}; its last line on stderr: {}", one_line(line)),
        None => trap,
    }
}

/// What went wrong underneath the backtrace, e.g. a host function's error.
fn without_backtrace(e: &wasmtime::Error) -> String {
    one_line(&e.root_cause().to_string())
}

/// At most 500 characters of `text`, control characters escaped.
fn one_line(text: &str) -> String {
    let text = super::log_gate::escape_controls(text.trim());
    match text.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_panic_message_is_read_from_stderr() {
        let stderr = "\nthread '<unnamed>' (1) panicked at misbehave/src/lib.rs:144:28:\n\
                      misbehave: panic on purpose\n\
                      note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            rust_panic(stderr).unwrap(),
            "panicked at misbehave/src/lib.rs:144:28: misbehave: panic on purpose"
        );
        let multi = "thread 'x' panicked at a.rs:1:2:\nfirst\nsecond\n";
        assert_eq!(
            rust_panic(multi).unwrap(),
            "panicked at a.rs:1:2: first\\nsecond"
        );
        assert_eq!(rust_panic("just some output\n"), None);
    }

    #[test]
    fn another_trap_keeps_the_last_stderr_line() {
        assert_eq!(
            with_stderr("t".into(), "a\npanic: boom\n\n"),
            "t; its last line on stderr: panic: boom"
        );
        assert_eq!(with_stderr("t".into(), ""), "t");
    }
}
