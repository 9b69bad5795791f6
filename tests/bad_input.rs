//! Bad input stops mabel before it connects: one clear line on stderr, exit 2, no panic. And
//! the questions a person asks a command line (`--version`, `-h`) get answers.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output};

fn mabel_with(args: &[&OsStr], env_uri: Option<&OsStr>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mabel"));
    command
        .args(args)
        .env_remove("MONGODB_URI")
        .env_remove("RUST_LOG");
    if let Some(uri) = env_uri {
        command.env("MONGODB_URI", uri);
    }
    command.output().expect("the mabel binary runs")
}

fn mabel(args: &[&str]) -> Output {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    mabel_with(&args, None)
}

/// Exit 2, one `error:` line that mentions `mentions` and is not too long to read, nothing on
/// stdout, no panic.
fn assert_refused_output(output: &Output, what: &str, mentions: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
    assert!(stderr.starts_with("error: "), "{what}: {stderr}");
    assert!(stderr.contains(mentions), "{what}: {stderr}");
    assert!(
        stderr.len() < 400,
        "{what}: {} bytes: {stderr}",
        stderr.len()
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(output.stdout.is_empty(), "{what}");
}

fn assert_refused(args: &[&str], mentions: &str) {
    assert_refused_output(&mabel(args), &format!("{args:?}"), mentions);
}

#[test]
fn malformed_uris_are_refused() {
    assert_refused(&["run", "--uri", "mongo://localhost"], "--uri");
    assert_refused(&["run", "--uri", "mongodb://"], "--uri");
    assert_refused(&["run", "--uri", "mongodb://a:99999/"], "--uri");
    assert_refused(
        &["run", "--uri", "mongodb://a/?w=bogus&journal=maybe"],
        "--uri",
    );
}

#[test]
fn a_bad_uri_in_the_environment_is_named_as_such() {
    for (uri, mentions) in [
        ("nonsense", "MONGODB_URI: "),
        ("", "MONGODB_URI \"\": must not be empty"),
        (
            "mongodb://a/?w=0",
            "MONGODB_URI: w=0 asks for no acknowledgement",
        ),
    ] {
        let output = mabel_with(&[OsStr::new("run")], Some(OsStr::new(uri)));
        assert_refused_output(&output, uri, mentions);
        assert!(!String::from_utf8_lossy(&output.stderr).contains("--uri"));
    }
}

#[test]
fn w_0_is_refused_for_what_it_means_not_for_a_j_never_set() {
    let output = mabel(&["run", "--uri", "mongodb://a/?w=0"]);
    assert_refused_output(&output, "w=0", "w=0 asks for no acknowledgement");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("j=true"));
}

#[test]
fn bytes_that_are_not_utf8_are_refused_naming_where() {
    let bad = OsStr::from_bytes(b"m\xe9bel");
    let run = OsStr::new("run");
    let output = mabel_with(&[run, OsStr::new("--db"), bad], None);
    assert_refused_output(
        &output,
        "an argument",
        "argument 3 is not valid UTF-8: \"m\\xE9bel\"",
    );
    let output = mabel_with(&[run, bad], None);
    assert_refused_output(&output, "a flag", "argument 2 is not valid UTF-8");
    let output = mabel_with(&[run], Some(bad));
    assert_refused_output(
        &output,
        "MONGODB_URI",
        "MONGODB_URI is not valid UTF-8: \"m\\xE9bel\"",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_mabel"))
        .arg("run")
        .env("RUST_LOG", bad)
        .output()
        .expect("the mabel binary runs");
    assert_refused_output(&output, "RUST_LOG", "RUST_LOG is not valid UTF-8");
}

#[test]
fn a_mongodb_srv_name_that_does_not_resolve_is_said_in_one_readable_line() {
    let output = mabel(&["run", "--uri", "mongodb+srv://nowhere.invalid/"]);
    assert_refused_output(&output, "srv", "--uri: couldn't resolve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for debug in ["Query {", "Name(\"", "query_type"] {
        assert!(!stderr.contains(debug), "{stderr}");
    }
}

#[test]
fn a_huge_argument_is_echoed_cut_short() {
    let huge = "x".repeat(100_000);
    for args in [
        &["run", "--interval", &huge][..],
        &["run", "--collection", &format!("${huge}")][..],
        &["run", "--db", &huge][..],
        &["run", &format!("--{huge}")][..],
        &["run", "--uri", &format!("mongodb://{huge}:99999/")][..],
    ] {
        assert_refused(args, "more characters)");
    }
}

#[test]
fn bad_numbers_are_refused_naming_the_flag() {
    assert_refused(&["run", "--interval", "0"], "--interval");
    assert_refused(&["run", "--interval", "-1"], "--interval");
    assert_refused(&["run", "--interval", "soon"], "--interval \"soon\"");
    assert_refused(
        &["run", "--interval", "1e309"],
        "--interval \"1e309\": is too large a number of seconds",
    );
    // Past a year, the clock could not hold the sleep's end.
    assert_refused(
        &["run", "--interval", "1e19"],
        "--interval \"1e19\": is too large a number of seconds: at most 31536000, a year",
    );
    assert_refused(&["run", "--retry-wait", "31536001"], "--retry-wait");
    assert_refused(&["run", "--retry-wait", "0"], "--retry-wait");
    assert_refused(&["run", "--attempts", "0"], "--attempts");
    assert_refused(&["run", "--attempts", "-3"], "--attempts");
    assert_refused(&["run", "--count", "0"], "--count");
    assert_refused(
        &["run", "--write-concern", "0"],
        "--write-concern \"0\": must be at least 1",
    );
    assert_refused(
        &["run", "--write-concern", "99999999999"],
        "--write-concern \"99999999999\": must be at most 50",
    );
    assert_refused(
        &["run", "--write-concern", "most"],
        "\"majority\" or a number",
    );
}

#[test]
fn unknown_flags_and_commands_are_refused() {
    assert_refused(&["run", "--intervl", "1"], "--intervl");
    assert_refused(&["fly"], "fly");
    assert_refused(&["run", "--interval"], "--interval");
}

#[test]
fn help_is_not_an_error_and_h_is_help() {
    for args in [&["run", "--help"][..], &["run", "-h"], &["-h"], &["--help"]] {
        let output = mabel(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("Usage:"), "{args:?}: {stdout}");
        assert!(output.stderr.is_empty(), "{args:?}");
    }
    let stdout = String::from_utf8_lossy(&mabel(&["run", "-h"]).stdout).into_owned();
    assert!(stdout.contains("--retry-wait"), "{stdout}");
    // A value that happens to be `-h` is a value.
    assert_refused(&["run", "--interval", "-h"], "--interval \"-h\"");
}

#[test]
fn version_prints_the_version() {
    let output = mabel(&["--version"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout, format!("mabel {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_stdout_or_stderr_that_cannot_be_written_is_no_panic() {
    let full = || std::fs::File::create("/dev/full").expect("/dev/full");
    let help = Command::new(env!("CARGO_BIN_EXE_mabel"))
        .arg("--help")
        .stdout(full())
        .output()
        .expect("the mabel binary runs");
    assert_eq!(help.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&help.stderr);
    assert_eq!(
        stderr,
        "error: couldn't print to stdout: No space left on device (os error 28)\n"
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_mabel"))
        .args(["run", "--interval", "0"])
        .stderr(full())
        .output()
        .expect("the mabel binary runs");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}
