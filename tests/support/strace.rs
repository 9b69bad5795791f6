//! Real failing system calls, for the spool's tests of a failing disk: mabel run under
//! `strace` with a fault injected into the calls that touch one path (`-P`), such as an
//! `fdatasync` that fails with EIO, as a dying disk's would.
//!
//! A test that needs strace and cannot run it says so, `skipped: <test>: <reason>`, and
//! returns; CI installs strace (`.ci/run`) and sets `MABEL_NEED_STRACE`, under which a
//! strace that cannot run fails the test instead.

use std::path::Path;
use std::process::{Command, Stdio};

use super::mabel;

/// `mabel <args>` under strace, with `inject` (`fdatasync:error=EIO:when=1`) applied to the
/// calls on `path` alone, and those calls logged to `log`. `None`, after saying why, if
/// strace cannot run here.
pub fn mabel_under(test: &str, path: &Path, inject: &str, log: &Path) -> Option<Command> {
    if let Err(reason) = runs() {
        if std::env::var_os("MABEL_NEED_STRACE").is_some() {
            panic!("{test}: strace cannot run, and MABEL_NEED_STRACE says it must: {reason}");
        }
        println!("skipped: {test}: strace cannot run here: {reason}");
        return None;
    }
    let syscall = inject.split(':').next().unwrap_or(inject);
    let mabel = mabel::command();
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-qq", "-o"])
        .arg(log)
        .arg("-P")
        .arg(path)
        .args(["-e", &format!("trace={syscall}")])
        .args(["-e", &format!("inject={inject}")])
        .arg("--")
        .arg(mabel.get_program())
        .env_remove("MONGODB_URI")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    Some(strace)
}

/// Whether strace can trace a process here: it is installed, and ptrace is allowed.
fn runs() -> Result<(), String> {
    let output = Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "true"])
        .output()
        .map_err(|e| format!("strace: {e}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&output.stderr).trim().to_string()),
    }
}
