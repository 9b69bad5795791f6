//! The index `mabel audit` reads a year of breaths by, `{time: 1, _id: 1}`: `mabel run`
//! creates it once at start, and a set that cannot build it is no reason to stop breathing.

use std::thread;
use std::time::Duration;

use bson::{doc, Document};
use mongodb::sync::{Client, Collection};

use crate::support::mabel::{assert_stored_exactly_once, Mabel};
use crate::support::spool_file::Scratch;
use mabel_sim::ReplicaSet;

const WATCHDOG: Duration = Duration::from_secs(60);

fn breaths(set: &ReplicaSet) -> Collection<Document> {
    Client::with_uri_str(set.uri())
        .expect("client")
        .database("mabel")
        .collection("breaths")
}

/// Every index on the breaths, as `listIndexes` gives them: name and key.
fn indexes(set: &ReplicaSet) -> Vec<(String, Document)> {
    breaths(set)
        .list_indexes()
        .run()
        .expect("listIndexes")
        .map(|index| {
            let index = index.expect("an index");
            let name = index.options.and_then(|o| o.name).unwrap_or_default();
            (name, index.keys)
        })
        .collect()
}

#[test]
fn mabel_run_creates_the_index_once_and_finds_it_there_the_next_time() {
    let set = ReplicaSet::start();
    let args = ["run", "--interval", "0.02", "--count", "3"];
    for _ in 0..2 {
        let outcome = Mabel::start(&set.uri(), &args).finish(WATCHDOG);
        assert_eq!(outcome.code, Some(0), "{outcome:#?}");
        assert!(!outcome.stderr.contains("index"), "{}", outcome.stderr);
    }
    assert_eq!(
        indexes(&set),
        [
            ("_id_".to_string(), doc! { "_id": 1 }),
            ("time_1__id_1".to_string(), doc! { "time": 1, "_id": 1 }),
        ]
    );
    assert_eq!(set.command_count("createIndexes"), 2);
}

#[test]
fn no_primary_to_build_the_index_is_a_warning_and_breathing_goes_on() {
    let set = ReplicaSet::start();
    let dir = Scratch::new("audit-index");
    let spool = dir.spool();
    for member in 0..3 {
        set.kill(member);
    }
    let args = [
        "run",
        "--spool",
        spool.to_str().expect("a UTF-8 path"),
        "--interval",
        "0.05",
        "--count",
        "3",
        "--retry-wait",
        "0.3",
        "--attempts",
        "100",
    ];
    let mabel = Mabel::start(&set.uri(), &args);
    // Long enough for the index build to give up on finding a primary (--retry-wait).
    thread::sleep(Duration::from_millis(1500));
    for member in 0..3 {
        set.revive(member);
    }
    set.elect(0);
    let outcome = mabel.finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(
        outcome
            .stderr
            .contains("couldn't create the index mabel audit sorts by"),
        "{}",
        outcome.stderr
    );
    let stored = set.documents("mabel", "breaths");
    assert_eq!(stored.len(), 3);
    assert_stored_exactly_once(&outcome, &stored);
    assert_eq!(indexes(&set), [("_id_".to_string(), doc! { "_id": 1 })]);
}
