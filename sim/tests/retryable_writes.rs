//! The retryable-writes specification's tests that use the server's `onPrimaryTransactionalWrite`
//! fail point (`source/retryable-writes/tests/unified/insertOne.yml`, `insertMany.yml`), run
//! with the real driver: a write committed whose connection then closes is retried and answered
//! from the session's record, never written twice; one that failed before its commit is
//! written by the retry; one that never commits is an error and leaves nothing.

use bson::{doc, Document};
use mongodb::sync::Collection;

use crate::driver::{breaths, COLL, DB};
use mabel_sim::ReplicaSet;

fn fail_point(set: &ReplicaSet, mode: bson::Bson, data: Document) {
    crate::driver::direct(set, 0)
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "onPrimaryTransactionalWrite",
            "mode": mode,
            "data": data,
        })
        .run()
        .expect("configureFailPoint");
}

fn ids(set: &ReplicaSet) -> Vec<i32> {
    set.documents(DB, COLL)
        .iter()
        .map(|d| d.get_i32("_id").expect("an int _id"))
        .collect()
}

fn seeded(set: &ReplicaSet, ids: &[i32]) -> Collection<Document> {
    let coll = breaths(&set.uri());
    let docs: Vec<Document> = ids
        .iter()
        .map(|&id| doc! { "_id": id, "x": id * 11 })
        .collect();
    coll.insert_many(docs).run().expect("initial data");
    coll
}

#[test]
fn insert_one_is_committed_on_the_first_attempt_and_not_written_again() {
    let set = ReplicaSet::start();
    let coll = seeded(&set, &[1, 2]);
    fail_point(&set, doc! { "times": 1 }.into(), doc! {});
    let before = set.insert_count();
    coll.insert_one(doc! { "_id": 3, "x": 33 })
        .run()
        .expect("retried");
    assert_eq!(set.insert_count() - before, 2, "the attempt and its retry");
    assert_eq!(ids(&set), [1, 2, 3]);
}

#[test]
fn insert_one_is_not_committed_on_the_first_attempt_and_the_retry_writes_it() {
    let set = ReplicaSet::start();
    let coll = seeded(&set, &[1, 2]);
    fail_point(
        &set,
        doc! { "times": 1 }.into(),
        doc! { "failBeforeCommitExceptionCode": 1 },
    );
    coll.insert_one(doc! { "_id": 3, "x": 33 })
        .run()
        .expect("retried");
    assert_eq!(ids(&set), [1, 2, 3]);
}

#[test]
fn insert_one_never_committed_is_an_error_and_leaves_nothing() {
    let set = ReplicaSet::start();
    let coll = seeded(&set, &[1, 2]);
    fail_point(
        &set,
        doc! { "times": 2 }.into(),
        doc! { "failBeforeCommitExceptionCode": 1 },
    );
    coll.insert_one(doc! { "_id": 3, "x": 33 })
        .run()
        .expect_err("both attempts fail");
    assert_eq!(ids(&set), [1, 2]);
}

#[test]
fn insert_many_succeeds_after_one_network_error_ordered_or_not() {
    for ordered in [true, false] {
        let set = ReplicaSet::start();
        let coll = seeded(&set, &[1]);
        fail_point(&set, doc! { "times": 1 }.into(), doc! {});
        coll.insert_many([doc! { "_id": 2, "x": 22 }, doc! { "_id": 3, "x": 33 }])
            .ordered(ordered)
            .run()
            .expect("retried");
        assert_eq!(ids(&set), [1, 2, 3], "ordered: {ordered}");
    }
}

#[test]
fn insert_many_fails_after_multiple_network_errors_and_leaves_nothing() {
    let set = ReplicaSet::start();
    let coll = seeded(&set, &[1]);
    fail_point(
        &set,
        "alwaysOn".into(),
        doc! { "failBeforeCommitExceptionCode": 1 },
    );
    let docs = [2, 3, 4].map(|id| doc! { "_id": id, "x": id * 11 });
    coll.insert_many(docs).run().expect_err("never committed");
    assert_eq!(ids(&set), [1]);
}
