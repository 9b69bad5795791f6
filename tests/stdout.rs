//! A stdout that cannot be written, a closed pipe (`mabel run | head -2`) or a full disk
//! (`mabel run > /dev/full`), stops mabel as a first signal does: the breath in flight is
//! finished, the breaths behind it stay in the spool, and mabel exits 4 with one line naming
//! the last breath written. No panic, and nothing lost: what the spool kept, the next run
//! writes.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bson::oid::ObjectId;

use crate::support::mabel::{audit, command, Mabel, Outcome, Stdout};
use crate::support::spool_file::Scratch;
use crate::support::target::Target;

const WATCHDOG: Duration = Duration::from_secs(60);

fn run(target: &Target, spool: Option<&Path>, stdout: Stdout, extra: &[&str]) -> Outcome {
    let mut mabel = command();
    mabel
        .args(["run", "--interval", "0.05", "--db", target.db(), "--uri"])
        .arg(target.uri())
        .args(extra);
    if let Some(spool) = spool {
        mabel.arg("--spool").arg(spool);
    }
    Mabel::spawn_to(mabel, stdout).finish(WATCHDOG)
}

/// Exit 4, no panic, and one `error:` line, the last, naming the last breath written.
fn last_written(outcome: &Outcome, why: &str) -> ObjectId {
    let last = outcome.the_error_line(4);
    let prefix = format!(
        "error: couldn't print to stdout: {why}; mabel stopped, and the last breath it wrote is "
    );
    let named = last
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{last:?} does not name the last breath written"));
    assert!(
        named.contains(" time ") && named.contains(" oxygen "),
        "{named}"
    );
    named[..24].parse().expect("an ObjectId")
}

/// The stored breaths, each once, end with `last`; the breaths printed are among them.
fn assert_stored_up_to(target: &Target, outcome: &Outcome, last: ObjectId) {
    let stored: Vec<ObjectId> = target
        .breaths()
        .iter()
        .map(|d| d.get_object_id("_id").expect("an ObjectId"))
        .collect();
    let mut unique = stored.clone();
    unique.dedup();
    assert_eq!(unique, stored, "a breath stored twice");
    assert_eq!(stored.last(), Some(&last), "{stored:?}");
    for printed in outcome.confirmed() {
        assert!(
            stored.contains(&printed.id),
            "{} printed, not stored",
            printed.id
        );
    }
}

/// What the spool kept the next run writes: then every breath is stored, once, and the audit
/// finds nothing lost.
fn assert_the_next_run_loses_nothing(target: &Target, spool: &Path) {
    let outcome = run(target, Some(spool), Stdout::Read, &["--count", "0"]);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    if let Target::Fake(set) = target {
        let (code, report) = audit(&set.uri());
        assert_eq!(code, Some(0), "{report}");
        assert_eq!(
            (&report["lost"], &report["doubled"]),
            (&0.into(), &0.into())
        );
    }
}

#[test]
fn a_closed_pipe_stops_mabel_naming_the_last_breath_written() {
    for spooled in [false, true] {
        let target = Target::start();
        let dir = Scratch::new("stdout-pipe");
        let spool = spooled.then(|| dir.spool());
        let outcome = run(&target, spool.as_deref(), Stdout::ClosedAfter(2), &[]);

        let last = last_written(&outcome, "Broken pipe (os error 32)");
        assert_eq!(outcome.confirmed().len(), 2, "{outcome:#?}");
        assert_stored_up_to(&target, &outcome, last);
        if let Some(spool) = spool {
            assert_the_next_run_loses_nothing(&target, &spool);
        }
    }
}

#[test]
fn a_full_disk_stops_mabel_after_the_first_breath() {
    for spooled in [false, true] {
        let target = Target::start();
        let dir = Scratch::new("stdout-full");
        let spool = spooled.then(|| dir.spool());
        let full = File::create("/dev/full").expect("/dev/full");
        let outcome = run(
            &target,
            spool.as_deref(),
            Stdout::To(Stdio::from(full)),
            &[],
        );

        let last = last_written(&outcome, "No space left on device (os error 28)");
        assert_stored_up_to(&target, &outcome, last);
        assert_eq!(target.breaths().len(), 1, "spool: {spooled}");
        if let Some(spool) = spool {
            assert_the_next_run_loses_nothing(&target, &spool);
        }
    }
}
