//! The seed's happy path: a healthy set, every breath written at the first attempt.

mod support;

use std::time::Duration;

use support::mabel::{assert_stored_exactly_once, Mabel};
use support::FakeReplicaSet;

#[test]
fn a_healthy_set_gets_every_breath_once_at_the_first_attempt() {
    let set = FakeReplicaSet::start();
    let mabel = Mabel::start(&set.uri(), &["run", "--interval", "0.02", "--count", "25"]);
    let outcome = mabel.finish(Duration::from_secs(60));

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let confirmed = outcome.confirmed();
    assert_eq!(confirmed.len(), 25);
    assert!(confirmed
        .iter()
        .all(|c| c.attempts == 1 && !c.already_written));
    assert!(!outcome.stderr.contains("Warning"), "{}", outcome.stderr);
    let stored = set.documents("mabel", "breaths");
    assert_eq!(stored.len(), 25);
    assert_stored_exactly_once(&outcome, &stored);
    assert_eq!(set.insert_count(), 25, "no write was sent twice");
}

#[test]
fn db_and_collection_flags_choose_where_breaths_go() {
    let set = FakeReplicaSet::start();
    let args = ["run", "--interval", "0.02", "--count", "3"];
    let mabel = Mabel::start(
        &set.uri(),
        &[&args[..], &["--db", "lab", "--collection", "mabel"]].concat(),
    );
    let outcome = mabel.finish(Duration::from_secs(60));

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(set.documents("mabel", "breaths").is_empty());
    assert_stored_exactly_once(&outcome, &set.documents("lab", "mabel"));
    assert_eq!(set.documents("lab", "mabel").len(), 3);
}
