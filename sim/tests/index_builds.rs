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
    assert_eq!(again.get_str("commitQuorum"), Ok("votingMembers"));
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
