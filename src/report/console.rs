//! Writing to the terminal without letting it stop a run: `rbl train … | head -2` closes the
//! pipe after two lines, and `println!` would then panic in the middle of training. These
//! macros write a line and ignore a failed write.

use std::io::Write;

/// Writes a line to stderr; a closed or full stderr is ignored.
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// Writes a line to stdout; a closed stdout is ignored.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{args}").and_then(|_| out.flush());
}

/// Writes text as it is (no newline added) to stdout; a closed stdout is ignored.
pub fn write_stdout_text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// `eprintln!` that never panics: progress and messages on stderr.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => { $crate::report::console::write_stderr(format_args!($($arg)*)) };
}

/// `println!` that never panics: results on stdout.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::report::console::write_stdout(format_args!($($arg)*)) };
}
