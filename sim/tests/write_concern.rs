//! Checks the fake's write concern and read concern against the real `mongodb` driver: a
//! write waits for the members it asks for, times out keeping the write, fails with
//! PrimarySteppedDown when its primary steps down, and a majority read sees only what a
//! majority holds; so that tests of mabel built on them can trust what they show.

use std::collections::HashSet;
use std::thread;
use std::time::Duration;

use bson::{doc, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ReadConcern, WriteConcern};

use crate::driver::{
    breath, breaths, client, direct, ids, majority_within, w1, wait_for, write_concern_code, COLL,
    DB,
};
use mabel_sim::{ReplicaSet, Timers};

const LONG: Duration = Duration::from_secs(3600);

#[test]
fn majority_waits_for_a_lagging_majority_and_times_out_keeping_the_write() {
    let set = ReplicaSet::scripted();
    set.set_lag(1, LONG);
    set.set_lag(2, LONG);
    let coll = breaths(&set.uri());

    let acked = breath();
    coll.insert_one(&acked)
        .write_concern(w1())
        .run()
        .expect("w: 1 needs only the primary");
    let timed_out = breath();
    let err = coll
        .insert_one(&timed_out)
        .write_concern(majority_within(200))
        .run()
        .expect_err("no secondary has it");
    let ErrorKind::Write(WriteFailure::WriteConcernError(wce)) = &*err.kind else {
        panic!("expected a write concern error, got {err:?}");
    };
    assert_eq!(
        (wce.code, wce.code_name.as_str(), wce.message.as_str()),
        (
            64,
            "WriteConcernTimeout",
            "waiting for replication timed out"
        )
    );
    assert_eq!(wce.details, Some(doc! { "wtimeout": true }));
    assert!(
        !err.contains_label("RetryableWriteError"),
        "64 is not retryable"
    );

    // The write stays on the primary, and is not committed.
    assert_eq!(
        ids(&set.documents(DB, COLL)),
        ids(&[acked.clone(), timed_out.clone()])
    );
    assert!(set.committed(DB, COLL).is_empty());
    assert!(set.documents_on(1, DB, COLL).is_empty());

    // Once one secondary catches up, a majority holds both and the next write is committed.
    set.set_lag(1, Duration::ZERO);
    coll.insert_one(breath())
        .write_concern(majority_within(5000))
        .run()
        .expect("member 1 now replicates at once");
    assert_eq!(set.committed(DB, COLL).len(), 3);
    assert_eq!(set.documents_on(2, DB, COLL).len(), 0);
}

#[test]
fn w_counts_members_and_a_short_lag_is_waited_out() {
    let set = ReplicaSet::scripted();
    set.set_lag(1, LONG);
    set.set_lag(2, Duration::from_millis(300));
    let coll = breaths(&set.uri());
    let two = WriteConcern::builder().w(Acknowledgment::Nodes(2)).build();
    coll.insert_one(breath())
        .write_concern(two)
        .run()
        .expect("member 2 copies it after 300 ms");
    assert_eq!(set.documents_on(2, DB, COLL).len(), 1);
    assert!(set.documents_on(1, DB, COLL).is_empty());

    let three = WriteConcern::builder()
        .w(Acknowledgment::Nodes(3))
        .w_timeout(Duration::from_millis(100))
        .build();
    let err = coll
        .insert_one(breath())
        .write_concern(three)
        .run()
        .expect_err("member 1 lags an hour");
    assert_eq!(write_concern_code(&err), Some(64));
}

#[test]
fn majority_reads_see_only_what_a_majority_holds() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&set.uri());
    let committed = breath();
    coll.insert_one(&committed).run().expect("default majority");
    set.set_lag(1, LONG);
    set.set_lag(2, LONG);
    coll.insert_one(breath())
        .write_concern(w1())
        .run()
        .expect("w: 1");

    let read = |level: ReadConcern| -> Vec<Document> {
        coll.find(doc! {})
            .read_concern(level)
            .run()
            .expect("find")
            .map(|d| d.expect("document"))
            .collect()
    };
    assert_eq!(ids(&read(ReadConcern::majority())), ids(&[committed]));
    assert_eq!(read(ReadConcern::local()).len(), 2);
}

#[test]
fn a_duplicate_key_on_a_cut_off_primary_still_waits_for_its_write_concern() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&set.uri());
    coll.insert_one(breath()).run().expect("warm-up");
    set.isolate(0);
    // The first attempt lands on the cut-off primary alone and times out waiting.
    let doc = breath();
    let err = coll
        .insert_one(&doc)
        .write_concern(majority_within(200))
        .run()
        .expect_err("no majority");
    assert_eq!(write_concern_code(&err), Some(64));

    // The raw reply to the same document again: a write error and a write concern error
    // together, since the duplicate waits for the primary's newest entry (LastOpFixer).
    let command = doc! {
        "insert": COLL,
        "documents": [doc.clone()],
        "writeConcern": { "w": "majority", "wtimeout": 200 },
    };
    let reply = client(&set.uri())
        .database(DB)
        .run_command(command)
        .run()
        .expect("ok: 1 reply");
    let write_errors = reply.get_array("writeErrors").expect("writeErrors");
    assert_eq!(
        write_errors[0].as_document().unwrap().get_i32("code"),
        Ok(11000)
    );
    assert_eq!(
        reply
            .get_document("writeConcernError")
            .unwrap()
            .get_i32("code"),
        Ok(64)
    );

    // insert_many keeps both; insert_one of mongodb 3.9 keeps only the write error.
    let err = coll
        .insert_many([&doc])
        .write_concern(majority_within(200))
        .run()
        .expect_err("duplicate");
    let ErrorKind::InsertMany(failure) = &*err.kind else {
        panic!("expected an insert-many error, got {err:?}");
    };
    assert_eq!(failure.write_errors.as_ref().unwrap()[0].code, 11000);
    assert_eq!(failure.write_concern_error.as_ref().unwrap().code, 64);
    let err = coll
        .insert_one(&doc)
        .write_concern(majority_within(200))
        .run()
        .expect_err("duplicate");
    assert!(
        matches!(&*err.kind, ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == 11000),
        "{err:?}"
    );
}

/// Which of the two a write gets is a race on a real server; the set's seeded coin decides
/// here, so a few seeds show both.
#[test]
fn a_stepped_down_primary_fails_waiting_writes_with_189_or_11602_labelled_when_retryable() {
    let mut codes = HashSet::new();
    for (seed, retryable) in (0..12).zip([false, true].into_iter().cycle()) {
        let set = ReplicaSet::with_timers(Timers::scripted().seeded(seed));
        breaths(&set.uri())
            .insert_one(breath())
            .run()
            .expect("warm-up");
        set.isolate(0);
        let client = direct(&set, 0);
        let waiting = thread::spawn(move || {
            let mut command = doc! { "insert": COLL, "documents": [breath()] };
            let mut session = client.start_session().run().expect("session");
            if retryable {
                command.insert("txnNumber", 1_i64);
            }
            client
                .database(DB)
                .run_command(command)
                .session(&mut session)
                .run()
                .expect("ok: 1 reply")
        });
        wait_for(|| set.documents_on(0, DB, COLL).len() == 2, "the write");
        set.notice_isolation(0);
        let reply = waiting.join().expect("the insert returns");

        let wce = reply.get_document("writeConcernError").expect("wce");
        let code = wce.get_i32("code").expect("a code");
        let (name, message) = match code {
            189 => (
                "PrimarySteppedDown",
                "Primary stepped down while waiting for replication",
            ),
            11602 => (
                "InterruptedDueToReplStateChange",
                "operation was interrupted because of a replication state change",
            ),
            other => panic!("unexpected code {other}: {reply}"),
        };
        assert_eq!(wce.get_str("codeName"), Ok(name));
        assert_eq!(wce.get_str("errmsg"), Ok(message));
        codes.insert(code);
        assert_eq!(reply.get_i32("n"), Ok(1));
        let labels = reply.get_array("errorLabels").ok();
        assert_eq!(
            labels.is_some(),
            retryable,
            "label only with a txnNumber: {reply}"
        );
        assert!(reply.contains_key("topologyVersion"), "{reply}");
        assert_eq!(set.primary(), None);
    }
    assert_eq!(codes.len(), 2, "both codes over twelve seeds: {codes:?}");
}

#[test]
fn a_write_held_while_the_primary_steps_down_is_interrupted() {
    let set = ReplicaSet::scripted();
    let coll = direct(&set, 0).database(DB).collection::<Document>(COLL);
    coll.insert_one(breath())
        .run()
        .expect("opens the connection");
    set.hang(0);
    let held = thread::spawn(move || coll.insert_one(breath()).run());
    wait_for(|| set.insert_count() == 2, "the insert to arrive");
    set.step_down();
    set.unhang(0);
    let err = held.join().expect("joins").expect_err("interrupted");
    let ErrorKind::Command(e) = &*err.kind else {
        panic!("expected a command error, got {err:?}");
    };
    assert_eq!(
        (e.code, e.code_name.as_str()),
        (11602, "InterruptedDueToReplStateChange")
    );
    assert_eq!(set.documents_on(0, DB, COLL).len(), 1);
}

/// `jstests/replsets/no_disconnect_on_stepdown.js`: an insert cut into internal batches of
/// two, held before its second by `hangDuringBatchInsert`, is killed by a step-down: the
/// reply is a top-level InterruptedDueToReplStateChange, though its first batch is written,
/// and the connection stays open.
#[test]
fn a_step_down_cuts_an_insert_part_way_and_fails_it_whole() {
    let set = ReplicaSet::start();
    let admin = direct(&set, 0).database("admin");
    let was = admin
        .run_command(doc! { "setParameter": 1, "internalInsertMaxBatchSize": 2 })
        .run()
        .expect("setParameter");
    assert_eq!(was.get_i32("was"), Ok(64));
    admin
        .run_command(doc! {
            "configureFailPoint": "hangDuringBatchInsert",
            "mode": { "skip": 1 },
            "data": { "shouldCheckForInterrupt": true },
        })
        .run()
        .expect("configureFailPoint");
    let client = direct(&set, 0);
    let docs: Vec<Document> = (0..6).map(|_| breath()).collect();
    let inserting = thread::spawn(move || {
        let command = doc! { "insert": COLL, "documents": docs, "ordered": false };
        client.database(DB).run_command(command).run()
    });
    wait_for(
        || set.documents_on(0, DB, COLL).len() == 2,
        "the first batch",
    );
    admin
        .run_command(doc! { "replSetStepDown": 60, "force": true })
        .run()
        .expect("replSetStepDown");
    let err = inserting.join().expect("joins").expect_err("killed");
    let ErrorKind::Command(e) = &*err.kind else {
        panic!("expected a command error, got {err:?}");
    };
    assert_eq!(
        (e.code, e.code_name.as_str()),
        (11602, "InterruptedDueToReplStateChange")
    );
    assert_eq!(
        set.documents_on(0, DB, COLL).len(),
        2,
        "the first batch stays"
    );
    // The same connection still answers.
    admin.run_command(doc! { "ping": 1 }).run().expect("ping");
}

/// An insert held by `hangDuringBatchInsert` before its first batch has taken no lock, so a
/// step-down does not kill it, and a fail point set without `shouldCheckForInterrupt` holds it
/// until turned off (`CurOpFailpointHelpers::waitWhileFailPointEnabled`). It then finds the
/// member no longer primary, and each document fails with PrimarySteppedDown
/// (`assertCanWrite_inlock` in write_ops_exec.cpp).
#[test]
fn an_insert_held_before_its_first_batch_outlives_a_step_down_and_each_document_gets_189() {
    let set = ReplicaSet::scripted();
    let admin = direct(&set, 0).database("admin");
    let fail_point = |mode: &str| {
        admin
            .run_command(doc! { "configureFailPoint": "hangDuringBatchInsert", "mode": mode })
            .run()
            .expect("configureFailPoint");
    };
    fail_point("alwaysOn");
    let client = direct(&set, 0);
    let inserting = thread::spawn(move || {
        let docs = vec![breath(), breath()];
        let command = doc! { "insert": COLL, "documents": docs, "ordered": false };
        client.database(DB).run_command(command).run()
    });
    wait_for(|| set.insert_count() == 1, "the insert to arrive");
    thread::sleep(Duration::from_millis(200));
    set.step_down();
    thread::sleep(Duration::from_millis(300));
    assert!(
        !inserting.is_finished(),
        "held until the fail point is turned off"
    );
    fail_point("off");
    let reply = inserting
        .join()
        .expect("joins")
        .expect("ok: 1 with write errors");
    assert_eq!(reply.get_i32("n"), Ok(0), "{reply}");
    let errors = reply.get_array("writeErrors").expect("write errors");
    assert_eq!(errors.len(), 2, "{reply}");
    for (index, error) in errors.iter().enumerate() {
        let error = error.as_document().expect("a document");
        assert_eq!(error.get_i32("index"), Ok(index as i32));
        assert_eq!(error.get_i32("code"), Ok(189), "{reply}");
        assert_eq!(
            error.get_str("errmsg"),
            Ok(format!("Not primary while writing to {DB}.{COLL}").as_str())
        );
    }
    assert!(set.documents_on(0, DB, COLL).is_empty());
}

/// A `failCommand` with `writeConcernError` takes the place of the write-concern wait of
/// every write command, `create` and `createIndexes` as well as `insert`: the reply comes at
/// once, though no majority could acknowledge the write (`_waitForWriteConcern`).
#[test]
fn a_write_concern_error_fail_point_replaces_the_wait_of_each_write_command() {
    let set = ReplicaSet::scripted();
    set.set_lag(1, LONG);
    set.set_lag(2, LONG);
    let admin = direct(&set, 0).database("admin");
    let wce = doc! { "code": 64, "codeName": "WriteConcernTimeout", "errmsg": "timed out" };
    admin
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": {
                "failCommands": ["insert", "create", "createIndexes"],
                "writeConcernError": wce,
            },
        })
        .run()
        .expect("configureFailPoint");
    let index = doc! { "key": { "oxygen": 1 }, "name": "oxygen_1" };
    for command in [
        doc! { "insert": COLL, "documents": [breath()] },
        doc! { "create": "other" },
        doc! { "createIndexes": "other", "indexes": [index] },
    ] {
        let db = direct(&set, 0).database(DB);
        let what = format!("{command}");
        let reply =
            crate::driver::within(&what, move || db.run_command(command).run()).expect("ok: 1");
        let error = reply.get_document("writeConcernError").expect("the error");
        assert_eq!(error.get_i32("code"), Ok(64), "{reply}");
    }
}
