//! The index `mabel audit` reads a year of breaths by, `{time: 1, _id: 1}`: `mabel run`
//! creates it once the collection is looked up, beside its breathing, and a set that cannot
//! build it, or takes long to, is no reason to stop breathing or to wait.

use std::thread;
use std::time::Duration;

use bson::{doc, Document};
use mongodb::sync::{Client, Collection};

use crate::support::mabel::{assert_stored_exactly_once, Mabel};
use crate::support::spool_file::Scratch;
use crate::support::target::{FailPoint, Mode, Target};
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
    // Long enough for the index to be built before mabel ends.
    let args = ["run", "--interval", "0.2", "--count", "3"];
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

/// With no member up at start there is nothing to say about the index yet: mabel builds it
/// once a member answers, and says nothing of it meanwhile.
#[test]
fn the_index_waits_for_a_member_to_answer() {
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
        "0.2",
        "--count",
        "12",
        "--retry-wait",
        "0.3",
        "--attempts",
        "100",
    ];
    let mabel = Mabel::start(&set.uri(), &args);
    // Long enough for an index build that did not wait to give up on finding a primary; and
    // breaths measured after, for the one that waited to be built before mabel ends.
    thread::sleep(Duration::from_millis(1500));
    for member in 0..3 {
        set.revive(member);
    }
    let outcome = mabel.finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(!outcome.stderr.contains("index"), "{}", outcome.stderr);
    let stored = set.documents("mabel", "breaths");
    assert_eq!(stored.len(), 12);
    assert_stored_exactly_once(&outcome, &stored);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while indexes(&set).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "{:?}", indexes(&set));
        thread::sleep(Duration::from_millis(20));
    }
}

/// A member that answers and will not build the index (no right to, say) is worth one
/// warning, and breathing goes on.
#[test]
fn an_index_the_set_refuses_is_a_warning_and_breathing_goes_on() {
    let target = Target::start();
    let primary = target.wait_for_primary(WATCHDOG);
    let refuse = FailPoint::fail_command(&["createIndexes"], Mode::Times(1)).error_code(13);
    let _refused = target.fail_point(primary, refuse.app_name("mabel"));
    let outcome = target
        .mabel(&["run", "--interval", "0.05", "--count", "3"])
        .finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    let warnings: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.contains("index"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", outcome.stderr);
    assert!(
        warnings[0].contains("couldn't create the index mabel audit sorts by"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].len() < 250, "{}", warnings[0]);
    assert_stored_exactly_once(&outcome, &target.breaths());
}

/// A collection that already holds breaths gets a two-phase build, which the default commit
/// quorum, every voting member, could never commit with a member down: mabel asks a majority,
/// and breathes meanwhile.
#[test]
fn a_member_down_does_not_hold_up_breathing_or_the_index() {
    let set = ReplicaSet::start();
    for second in 0..3 {
        let time = bson::DateTime::from_millis(1_795_000_000_000 + second * 1000);
        let doc = doc! { "_id": bson::oid::ObjectId::new(), "time": time, "oxygen": 0.5 };
        set.insert_direct("mabel", "breaths", doc);
    }
    set.kill(2);
    let args = ["run", "--interval", "0.2", "--count", "5"];
    let outcome = Mabel::start(&set.uri(), &args).finish(WATCHDOG);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(outcome.confirmed().len(), 5);
    assert!(!outcome.stderr.contains("index"), "{}", outcome.stderr);
    let names: Vec<String> = indexes(&set).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["_id_", "time_1__id_1"]);
    // Built, not only begun: an index still building is marked so only when asked.
    let database = Client::with_uri_str(set.uri())
        .expect("client")
        .database("mabel");
    let building = || {
        let command = doc! { "listIndexes": "breaths", "includeBuildUUIDs": true };
        let reply = database.run_command(command).run().expect("listIndexes");
        let batch = reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"));
        batch.expect("a first batch").iter().any(|entry| {
            entry
                .as_document()
                .is_some_and(|e| e.contains_key("buildUUID"))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while building() {
        assert!(
            std::time::Instant::now() < deadline,
            "the build never committed"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// However long the build takes, the breaths go on: a createIndexes held for a minute does
/// not hold the first breath.
#[test]
fn breathing_never_waits_for_the_index() {
    let target = Target::start();
    let primary = target.wait_for_primary(WATCHDOG);
    let held =
        FailPoint::fail_command(&["createIndexes"], Mode::Times(1)).block(Duration::from_secs(60));
    let _guard = target.fail_point(primary, held);
    let mut mabel = target.mabel(&["run", "--interval", "0.05", "--count", "5"]);
    mabel.wait_for_breaths(5, Duration::from_secs(30));
    let outcome = mabel.finish(WATCHDOG);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_stored_exactly_once(&outcome, &target.breaths());
    let (code, report) = target.audit();
    assert_eq!(code, Some(0), "{report}");
}
