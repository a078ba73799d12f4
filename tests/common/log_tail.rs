//! The tail of a child process's log, printed when a test fails while the process lives (shared
//! by `tests/process.rs` and the API suite's `instance` module).

#![allow(dead_code)]

use std::path::Path;

/// Prints the last `lines` lines of `log`, headed by `what`.
pub fn print_tail(what: &str, log: &Path, lines: usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    println!(
        "--- last lines of {what} ({}) ---\n{}",
        log.display(),
        tail.join("\n")
    );
}
