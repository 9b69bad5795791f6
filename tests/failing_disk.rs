//! A failing disk under the spool, made with real failing system calls (`strace`'s fault
//! injection on the spool's own file): a write or an `fdatasync` that fails stops mabel with
//! exit 1 and one line naming the breath that could not be kept, with its time and oxygen, as
//! a full spool does; a failed flush is never tried again as if the data were safe; and
//! nothing is lost that mabel said it kept.

use std::fs;
use std::path::Path;
use std::time::Duration;

use bson::oid::ObjectId;

use crate::support::mabel::{assert_stored_exactly_once, audit, Mabel, Outcome};
use crate::support::spool_file::Scratch;
use crate::support::strace;
use mabel_sim::ReplicaSet;

const WATCHDOG: Duration = Duration::from_secs(60);

/// `mabel run --spool <spool>` under strace, `inject` applied to the calls on `path`; the
/// strace log, and how mabel ended. `None` if strace cannot run here.
fn run_failing(
    test: &str,
    set: &ReplicaSet,
    dir: &Scratch,
    path: &Path,
    inject: &str,
    extra: &[&str],
) -> Option<(String, Outcome)> {
    let log = dir.0.join("strace.log");
    let mut command = strace::mabel_under(test, path, inject, &log)?;
    command
        .args(["run", "--interval", "0.05", "--uri"])
        .arg(set.uri())
        .arg("--spool")
        .arg(dir.spool())
        .args(extra);
    let outcome = Mabel::spawn(command).finish(WATCHDOG);
    Some((fs::read_to_string(&log).unwrap_or_default(), outcome))
}

/// Exit 1, no panic, and one `error:` line, the last, about the spool: `why`, then the breath
/// named with its time and oxygen. Returns that breath.
fn named_breath(outcome: &Outcome, why: &str) -> ObjectId {
    let last = outcome.the_error_line(1);
    let (_, after) = last
        .split_once(why)
        .unwrap_or_else(|| panic!("{last:?} does not say {why:?}"));
    let named = after
        .strip_prefix("; breath ")
        .unwrap_or_else(|| panic!("{last:?} does not name the breath"));
    let id: ObjectId = named[..24].parse().expect("an ObjectId");
    assert!(named[24..].starts_with(" time 20"), "{named}");
    assert!(named.contains(" oxygen 0."), "{named}");
    id
}

/// Every breath confirmed is stored once, and the named breath, not kept, is not stored.
fn assert_not_kept(set: &ReplicaSet, outcome: &Outcome, breath: ObjectId) {
    assert!(
        outcome.stderr.contains("could not be kept"),
        "{}",
        outcome.stderr
    );
    let stored = set.documents("mabel", "breaths");
    assert_stored_exactly_once(outcome, &stored);
    let ids: Vec<ObjectId> = stored
        .iter()
        .map(|d| d.get_object_id("_id").unwrap())
        .collect();
    assert!(
        !ids.contains(&breath),
        "{breath} was not kept but is stored"
    );
    assert!(outcome.confirmed().iter().all(|c| c.id != breath));
}

#[test]
fn a_failed_fdatasync_stops_mabel_naming_the_breath_and_is_not_tried_again() {
    let test =
        "failing_disk::a_failed_fdatasync_stops_mabel_naming_the_breath_and_is_not_tried_again";
    let set = ReplicaSet::start();
    let dir = Scratch::new("fdatasync-eio");
    let inject = "fdatasync:error=EIO:when=1";
    let Some((log, outcome)) = run_failing(test, &set, &dir, &dir.spool(), inject, &[]) else {
        return;
    };

    let why = "couldn't flush it to disk: Input/output error (os error 5)";
    let breath = named_breath(&outcome, why);
    assert_not_kept(&set, &outcome, breath);
    // One flush, the one that failed: none after it took its place.
    let flushes: Vec<&str> = log.lines().filter(|l| l.contains("fdatasync(")).collect();
    assert_eq!(flushes.len(), 1, "{log}");
    assert!(flushes[0].contains("EIO"), "{log}");
}

#[test]
fn a_failed_write_to_the_spool_stops_mabel_naming_the_breath() {
    let test = "failing_disk::a_failed_write_to_the_spool_stops_mabel_naming_the_breath";
    let set = ReplicaSet::start();
    let dir = Scratch::new("write-enospc");
    let inject = "write:error=ENOSPC:when=1";
    let Some((log, outcome)) = run_failing(test, &set, &dir, &dir.spool(), inject, &[]) else {
        return;
    };

    let why = "couldn't write to it: No space left on device (os error 28)";
    let breath = named_breath(&outcome, why);
    assert!(
        log.contains("ENOSPC (No space left on device) (INJECTED)"),
        "{log}"
    );
    assert_not_kept(&set, &outcome, breath);
}

/// A rewrite whose `rename` fails leaves the old file whole: mabel stops, and the next run on
/// the spool writes what it holds, each breath once.
#[test]
fn a_failed_rewrite_stops_mabel_and_the_next_run_loses_nothing() {
    let test = "failing_disk::a_failed_rewrite_stops_mabel_and_the_next_run_loses_nothing";
    let set = ReplicaSet::start();
    let dir = Scratch::new("rename-eio");
    let mut tmp = dir.spool().into_os_string();
    tmp.push(".tmp");
    // The first rename gives the new spool its header; the second is the first rewrite.
    let inject = "rename:error=EIO:when=2";
    let small = ["--spool-max-bytes", "140"];
    let Some((log, outcome)) = run_failing(test, &set, &dir, tmp.as_ref(), inject, &small) else {
        return;
    };

    // Rewritten as breaths are marked written, or as one is put on: either way the spool
    // stops, naming the breath, kept in the database or not kept at all.
    let why = "couldn't rewrite it: Input/output error (os error 5)";
    let breath = named_breath(&outcome, why);
    assert!(log.contains("EIO (Input/output error) (INJECTED)"), "{log}");
    let first = set.documents("mabel", "breaths");
    assert_stored_exactly_once(&outcome, &first);

    let spool = dir.spool();
    let args = ["run", "--spool", spool.to_str().unwrap(), "--count", "0"];
    let next = Mabel::start(&set.uri(), &args).finish(WATCHDOG);
    assert_eq!(next.code, Some(0), "{next:#?}");
    let stored = set.documents("mabel", "breaths");
    let ids: Vec<ObjectId> = stored
        .iter()
        .map(|d| d.get_object_id("_id").unwrap())
        .collect();
    let marked = outcome
        .stderr
        .contains("is in the database but not marked written");
    if marked {
        let again = next.confirmed().into_iter().find(|c| c.id == breath);
        assert!(again.is_some_and(|c| c.already_written), "{next:#?}");
    }
    assert_eq!(ids.contains(&breath), marked, "{breath}");
    let (code, report) = audit(&set.uri());
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        (&report["lost"], &report["doubled"]),
        (&0.into(), &0.into())
    );
}
