//! `createIndexes` as a replica set runs it: on a collection with documents the build commits
//! only once its commit quorum has built the index, so with a member down and the default
//! quorum it never returns; `maxTimeMS` aborts it, a step-down interrupts the command but not
//! the build, and an empty collection is indexed at once. A call that should return is given
//! a time limit (`driver::within`), so that one that waits for good fails the test instead of
//! hanging it.

use std::thread;
use std::time::Duration;

use bson::{doc, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{CommitQuorum, IndexOptions};
use mongodb::sync::Client;
use mongodb::IndexModel;

use crate::driver::{breath, breaths, call, client, first_batch, wait_for, within, COLL, DB};
use mabel_sim::{ReplicaSet, Role};

const WATCHDOG: Duration = Duration::from_secs(20);

fn create(client: &Client, extra: Document) -> mongodb::error::Result<Document> {
    let mut command = doc! {
        "createIndexes": COLL,
        "indexes": [{ "key": { "time": 1, "_id": 1 }, "name": "time_1__id_1" }],
    };
    command.extend(extra);
    client.database(DB).run_command(command).run()
}

/// The names `listIndexes` gives on `member` alone.
fn index_names(set: &ReplicaSet, member: usize) -> Vec<String> {
    let reply = crate::driver::direct(set, member)
        .database(DB)
        .run_command(doc! { "listIndexes": COLL })
        .run()
        .expect("listIndexes");
    first_batch(&reply)
        .iter()
        .filter_map(|spec| spec.get_str("name").ok().map(String::from))
        .collect()
}

fn with_documents(set: &ReplicaSet) {
    breaths(&set.uri())
        .insert_one(breath())
        .run()
        .expect("a document");
}

#[test]
fn a_build_with_every_member_up_commits_and_says_its_quorum() {
    let set = ReplicaSet::start();
    with_documents(&set);
    let reply = create(&client(&set.uri()), doc! {}).expect("built");
    let fields: Vec<&str> = reply.keys().map(String::as_str).take(5).collect();
    assert_eq!(
        fields,
        [
            "numIndexesBefore",
            "numIndexesAfter",
            "createdCollectionAutomatically",
            "commitQuorum",
            "ok"
        ]
    );
    assert_eq!(reply.get_i32("numIndexesAfter"), Ok(2));
    assert_eq!(reply.get_bool("createdCollectionAutomatically"), Ok(false));
    assert_eq!(reply.get_str("commitQuorum"), Ok("votingMembers"));
    for member in 0..3 {
        wait_for(
            || index_names(&set, member).contains(&"time_1__id_1".to_string()),
            "the index on every member",
        );
    }

    let again = create(&client(&set.uri()), doc! {}).expect("nothing to do");
    assert_eq!(again.get_str("note"), Ok("all indexes already exist"));
    assert!(!again.contains_key("commitQuorum"));
    assert!(!again.contains_key("createdCollectionAutomatically"));
}

#[test]
fn with_a_member_down_the_default_quorum_waits_until_it_returns() {
    let set = ReplicaSet::start();
    with_documents(&set);
    set.kill(2);
    let uri = set.uri();
    let waiting = thread::spawn(move || create(&client(&uri), doc! {}));
    thread::sleep(Duration::from_secs(1));
    assert!(
        !waiting.is_finished(),
        "the build cannot commit without member 2"
    );
    set.revive(2);
    let reply = waiting
        .join()
        .expect("joins")
        .expect("committed once 2 built it");
    assert_eq!(reply.get_i32("numIndexesAfter"), Ok(2));
}

#[test]
fn max_time_ms_aborts_a_build_that_cannot_commit() {
    let set = ReplicaSet::start();
    with_documents(&set);
    set.kill(2);
    let err = create(&client(&set.uri()), doc! { "maxTimeMS": 300 }).expect_err("times out");
    let ErrorKind::Command(e) = &*err.kind else {
        panic!("expected a command error, got {err:?}");
    };
    assert_eq!(e.code, 50);
    assert!(
        e.message.starts_with("Index build failed: "),
        "{}",
        e.message
    );
    assert!(
        e.message
            .ends_with(":: caused by :: operation exceeded time limit"),
        "{}",
        e.message
    );
    let names = index_names(&set, 0);
    assert_eq!(names, ["_id_"], "aborted, so not listed");
}

#[test]
fn a_majority_quorum_commits_with_a_member_down_which_builds_on_return() {
    let set = ReplicaSet::start();
    with_documents(&set);
    set.kill(2);
    let model = IndexModel::builder()
        .keys(doc! { "time": 1, "_id": 1 })
        .options(
            IndexOptions::builder()
                .name("time_1__id_1".to_string())
                .build(),
        )
        .build();
    let uri = set.uri();
    within("createIndexes with a majority quorum", move || {
        breaths(&uri)
            .create_index(model)
            .commit_quorum(CommitQuorum::Majority)
            .run()
    })
    .expect("committed on two votes");
    set.revive(2);
    set.wait_for_role(2, Role::Secondary, WATCHDOG);
    wait_for(
        || index_names(&set, 2).contains(&"time_1__id_1".to_string()),
        "member 2 to build it on its return",
    );
}

#[test]
fn a_step_down_interrupts_the_command_and_the_next_primary_commits_the_build() {
    let set = ReplicaSet::start();
    with_documents(&set);
    set.kill(2);
    let uri = set.uri();
    let waiting = call("createIndexes across a step-down", move || {
        create(&client(&uri), doc! {})
    });
    wait_for(
        || index_names(&set, 1).contains(&"time_1__id_1".to_string()),
        "member 1 to start the build",
    );
    set.step_down();
    let err = waiting.result().expect_err("interrupted");
    let ErrorKind::Command(e) = &*err.kind else {
        panic!("expected a command error, got {err:?}");
    };
    assert_eq!(e.code, 11602);
    assert!(
        e.message
            .ends_with(":: caused by :: operation was interrupted"),
        "{}",
        e.message
    );
    // The build goes on: once member 2 is back and has built it, a primary commits it.
    set.revive(2);
    set.wait_for_primary(WATCHDOG);
    let uri = set.uri();
    let reply = within("createIndexes of the build under way", move || {
        create(&client(&uri), doc! {})
    })
    .expect("waits for it, then finds it");
    assert_eq!(reply.get_str("note"), Ok("all indexes already exist"));
}

#[test]
fn an_empty_collection_is_indexed_at_once_even_with_a_member_down() {
    let set = ReplicaSet::start();
    set.kill(2);
    let uri = set.uri();
    let reply = within("createIndexes on an empty collection", move || {
        create(&client(&uri), doc! {})
    })
    .expect("one step, no votes");
    assert_eq!(reply.get_bool("createdCollectionAutomatically"), Ok(true));
    assert_eq!(reply.get_str("commitQuorum"), Ok("votingMembers"));
}

/// A numeric `commitQuorum` is taken however it is typed, an int32 as the shell sends it, and
/// echoed as an int; more members than the set has is 278 UnsatisfiableCommitQuorum.
#[test]
fn a_numeric_commit_quorum_is_taken_as_an_int32_and_too_many_is_unsatisfiable() {
    let set = ReplicaSet::start();
    with_documents(&set);
    let reply = create(&client(&set.uri()), doc! { "commitQuorum": 2_i32 }).expect("quorum 2");
    assert_eq!(reply.get_i32("commitQuorum"), Ok(2));
    let index = doc! { "key": { "oxygen": 1 }, "name": "oxygen_1" };
    let command = doc! { "createIndexes": COLL, "indexes": [index], "commitQuorum": 5_i32 };
    let err = client(&set.uri())
        .database(DB)
        .run_command(command)
        .run()
        .expect_err("five members of three");
    let ErrorKind::Command(e) = &*err.kind else {
        panic!("expected a command error, got {err:?}");
    };
    assert_eq!(
        (e.code, e.code_name.as_str()),
        (278, "UnsatisfiableCommitQuorum")
    );
}

/// A given name is the index's name, listed on every member; the same key under another name
/// is 85 IndexOptionsConflict, another key under a taken name 86 IndexKeySpecsConflict.
#[test]
fn a_given_name_is_kept_and_a_second_name_or_key_for_it_conflicts() {
    let set = ReplicaSet::start();
    let db = client(&set.uri()).database(DB);
    let named = |key: Document, name: &str| {
        let index = doc! { "key": key, "name": name };
        db.run_command(doc! { "createIndexes": COLL, "indexes": [index] })
            .run()
    };
    named(doc! { "oxygen": 1 }, "by_oxygen").expect("a named index");
    for member in 0..3 {
        wait_for(
            || index_names(&set, member).contains(&"by_oxygen".to_string()),
            "the name on every member",
        );
    }
    let again = named(doc! { "oxygen": 1 }, "by_oxygen").expect("the same index");
    assert_eq!(again.get_str("note"), Ok("all indexes already exist"));
    let code = |result: mongodb::error::Result<Document>| match *result.expect_err("conflict").kind
    {
        ErrorKind::Command(ref e) => (e.code, e.code_name.clone(), e.message.clone()),
        ref other => panic!("expected a command error, got {other:?}"),
    };
    let (number, name, message) = code(named(doc! { "oxygen": 1 }, "oxygen_1"));
    assert_eq!((number, name.as_str()), (85, "IndexOptionsConflict"));
    assert_eq!(
        message,
        "Index already exists with a different name: by_oxygen"
    );
    let (number, name, _) = code(named(doc! { "time": 1 }, "by_oxygen"));
    assert_eq!((number, name.as_str()), (86, "IndexKeySpecsConflict"));
    assert_eq!(index_names(&set, 0), ["_id_", "by_oxygen"]);
}

/// A command that waited for a build of the same index, which then aborted, builds the
/// index itself rather than answer that it exists.
#[test]
fn a_command_that_waited_for_a_build_that_aborted_builds_the_index() {
    let set = ReplicaSet::start();
    with_documents(&set);
    set.kill(2);
    let uri = set.uri();
    let first = call("the build that times out", move || {
        create(&client(&uri), doc! { "maxTimeMS": 600 })
    });
    wait_for(
        || index_names(&set, 0).contains(&"time_1__id_1".to_string()),
        "the first build to start",
    );
    let uri = set.uri();
    let second = call("the command that waits for it", move || {
        create(&client(&uri), doc! { "commitQuorum": "majority" })
    });
    let err = first.result().expect_err("aborted at its maxTimeMS");
    let ErrorKind::Command(e) = &*err.kind else {
        panic!("expected a command error, got {err:?}");
    };
    assert_eq!(e.code, 50);
    let reply = second.result().expect("built by the second command");
    assert!(!reply.contains_key("note"), "{reply}");
    assert_eq!(reply.get_i32("numIndexesAfter"), Ok(2), "{reply}");
    assert_eq!(reply.get_str("commitQuorum"), Ok("majority"), "{reply}");
}

/// Documents written while a unique index builds are checked when the primary is to commit
/// it: a duplicate among them aborts the build, and the command fails with 11000.
#[test]
fn a_duplicate_written_during_a_unique_build_aborts_it_at_commit() {
    let set = ReplicaSet::start();
    with_documents(&set);
    set.kill(2);
    let uri = set.uri();
    let building = call("the unique build", move || {
        let index = doc! { "key": { "n": 1 }, "name": "n_1", "unique": true };
        let command = doc! { "createIndexes": COLL, "indexes": [index] };
        client(&uri).database(DB).run_command(command).run()
    });
    wait_for(
        || index_names(&set, 0).contains(&"n_1".to_string()),
        "the build to start",
    );
    let coll = breaths(&set.uri());
    for _ in 0..2 {
        let mut doc = breath();
        doc.insert("n", 7);
        coll.insert_one(doc).run().expect("taken while building");
    }
    set.revive(2);
    let err = building.result().expect_err("a duplicate at commit");
    let ErrorKind::Command(e) = &*err.kind else {
        panic!("expected a command error, got {err:?}");
    };
    assert_eq!(e.code, 11000, "{}", e.message);
    assert!(
        e.message.starts_with("Index build failed: "),
        "{}",
        e.message
    );
    assert!(e.message.contains("dup key: { n: 7 }"), "{}", e.message);
    assert_eq!(index_names(&set, 0), ["_id_"], "aborted, so not listed");
}
