//! Standard output and standard error, written so that a closed pipe or a full disk is an
//! error mabel can act on, not a panic.
//!
//! `println!` panics when stdout cannot be written (`mabel run | head -2`, `mabel run >
//! /dev/full`), and `eprintln!` when stderr cannot. Each line here is written and flushed at
//! once, so that a `wrote` line is out before the next breath is measured, and a failure is
//! returned: a `wrote` line that cannot be written stops mabel as a first signal does
//! (`main`). A line that cannot reach stderr is let go: there is nowhere left to say so.

use std::fmt::Display;
use std::io::{self, Write};

/// Writes `text` and a newline to stdout, flushed.
pub fn line(text: impl Display) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Writes `text` as it is to stdout, flushed: a report or a help text that ends its own lines.
pub fn text(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes `text` and a newline to stderr, if it can.
pub fn error_line(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}
