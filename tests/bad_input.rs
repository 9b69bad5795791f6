//! Bad input stops mabel before it connects: one clear line on stderr, exit 2, no panic.

use std::process::{Command, Output};

fn mabel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mabel"))
        .args(args)
        .env_remove("MONGODB_URI")
        .output()
        .expect("the mabel binary runs")
}

fn assert_refused(args: &[&str], mentions: &str) {
    let output = mabel(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert!(stderr.contains(mentions), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?}");
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
fn a_malformed_uri_in_the_environment_is_refused_too() {
    let output = Command::new(env!("CARGO_BIN_EXE_mabel"))
        .arg("run")
        .env("MONGODB_URI", "nonsense")
        .output()
        .expect("the mabel binary runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--uri"));
}

#[test]
fn bad_numbers_are_refused_naming_the_flag() {
    assert_refused(&["run", "--interval", "0"], "--interval");
    assert_refused(&["run", "--interval", "-1"], "--interval");
    assert_refused(&["run", "--interval", "soon"], "--interval");
    assert_refused(&["run", "--retry-wait", "0"], "--retry-wait");
    assert_refused(&["run", "--attempts", "0"], "--attempts");
    assert_refused(&["run", "--attempts", "-3"], "--attempts");
    assert_refused(&["run", "--count", "0"], "--count");
    assert_refused(&["run", "--write-concern", "0"], "--write-concern");
}

#[test]
fn unknown_flags_and_commands_are_refused() {
    assert_refused(&["run", "--intervl", "1"], "--intervl");
    assert_refused(&["fly"], "fly");
    assert_refused(&["run", "--interval"], "--interval");
}

#[test]
fn help_is_not_an_error() {
    let output = mabel(&["run", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("--retry-wait"), "{stdout}");
}
