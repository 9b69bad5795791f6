//! The seed's happy path: a healthy set, every breath written at the first attempt.

use std::time::Duration;

use crate::support::mabel::{assert_stored_exactly_once, Mabel};
use crate::support::target::Target;

#[test]
fn a_healthy_set_gets_every_breath_once_at_the_first_attempt() {
    let target = Target::start();
    let mabel = target.mabel(&["run", "--interval", "0.02", "--count", "25"]);
    let outcome = mabel.finish(Duration::from_secs(60));

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let confirmed = outcome.confirmed();
    assert_eq!(confirmed.len(), 25);
    assert!(confirmed
        .iter()
        .all(|c| c.attempts == 1 && !c.already_written));
    assert!(!outcome.stderr.contains("Warning"), "{}", outcome.stderr);
    let stored = target.breaths();
    assert_eq!(stored.len(), 25);
    assert_stored_exactly_once(&outcome, &stored);
    if let Some(inserts) = target.insert_count() {
        assert_eq!(inserts, 25, "no write was sent twice");
    }
}

#[test]
fn db_and_collection_flags_choose_where_breaths_go() {
    let target = Target::start();
    // The test's own database with a suffix, so that a real set keeps tests apart.
    let lab = format!("{}_lab", target.db());
    let args = ["run", "--interval", "0.02", "--count", "3"];
    let mabel = Mabel::start(
        &target.uri(),
        &[&args[..], &["--db", &lab, "--collection", "mabel"]].concat(),
    );
    let outcome = mabel.finish(Duration::from_secs(60));

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(target.breaths().is_empty());
    assert_stored_exactly_once(&outcome, &target.documents(&lab, "mabel"));
    assert_eq!(target.documents(&lab, "mabel").len(), 3);
}
