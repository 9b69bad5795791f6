//! Checks the fake's elections and rollbacks against the real `mongodb` driver: who can win,
//! two members claiming to be primary and the driver following the newer term, and a
//! rejoining member rolling back what it alone acknowledged; so that tests of mabel built on
//! them can trust what they show.

use std::time::{Duration, Instant};

use bson::{doc, Document};

use crate::driver::{
    breath, breaths, client, direct, ids, majority_within, write_concern_code, COLL, DB,
};
use mabel_sim::ReplicaSet;

const LONG: Duration = Duration::from_secs(3600);

#[test]
fn only_a_member_a_majority_reaches_and_that_is_up_to_date_can_win() {
    let set = ReplicaSet::scripted();
    set.set_lag(2, LONG);
    breaths(&set.uri())
        .insert_one(breath())
        .run()
        .expect("0 and 1 hold it");
    set.kill(0);
    assert!(!set.can_elect(2), "1 is newer and refuses its vote");
    assert!(set.can_elect(1));
    set.elect(1);
    assert_eq!(set.documents(DB, COLL).len(), 1);
    assert!(set.documents_on(2, DB, COLL).is_empty());

    set.revive(0);
    set.isolate(0);
    assert!(!set.can_elect(0), "alone it has one vote");
}

#[test]
fn two_primaries_for_a_while_and_the_driver_follows_the_newer_term() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&set.uri());
    coll.insert_one(breath()).run().expect("warm-up");
    set.isolate(0);
    set.elect(1);

    let hello = |member: usize| -> Document {
        direct(&set, member)
            .database("admin")
            .run_command(doc! { "hello": 1 })
            .run()
            .expect("hello")
    };
    let (old, new) = (hello(0), hello(1));
    assert_eq!(old.get_bool("isWritablePrimary"), Ok(true));
    assert_eq!(new.get_bool("isWritablePrimary"), Ok(true));
    let (old_id, new_id) = (
        old.get_object_id("electionId").unwrap(),
        new.get_object_id("electionId").unwrap(),
    );
    assert_eq!(&old_id.bytes()[..4], &[0x7f, 0xff, 0xff, 0xff]);
    assert!(old_id < new_id, "{old_id} {new_id}");
    assert_eq!(old.get_i32("setVersion"), Ok(1));

    // The client that knew 0 as primary drops it once its heartbeats meet the newer term;
    // until then a write may still reach 0 and time out there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let doc = loop {
        let doc = breath();
        match coll
            .insert_one(&doc)
            .write_concern(majority_within(500))
            .run()
        {
            Ok(_) => break doc,
            Err(err) if write_concern_code(&err) == Some(64) => {}
            Err(err) => panic!("{err:?}"),
        }
        assert!(Instant::now() < deadline, "the driver never left member 0");
    };
    let id = doc.get_object_id("_id").unwrap();
    assert!(ids(&set.committed(DB, COLL)).contains(&id));
    assert!(!ids(&set.documents_on(0, DB, COLL)).contains(&id));
}

#[test]
fn a_rejoining_primary_rolls_back_what_it_alone_acknowledged_and_its_retry_records() {
    let set = ReplicaSet::scripted();
    breaths(&set.uri())
        .insert_one(breath())
        .run()
        .expect("warm-up");
    set.isolate(0);

    // A retryable w: 1 write acknowledged by the cut-off primary alone.
    let client = client(&set.uri());
    let mut session = client.start_session().run().expect("session");
    let lost = breath();
    let command = doc! {
        "insert": COLL,
        "documents": [lost.clone()],
        "txnNumber": 7_i64,
        "writeConcern": { "w": 1 },
    };
    let reply = client
        .database(DB)
        .run_command(command.clone())
        .session(&mut session)
        .run()
        .expect("acknowledged");
    assert_eq!(reply.get_i32("n"), Ok(1));

    set.elect(1);
    set.heal();
    assert_eq!(
        ids(&set.rolled_back(DB, COLL)),
        ids(std::slice::from_ref(&lost))
    );
    for member in 0..3 {
        assert_eq!(
            set.documents_on(member, DB, COLL).len(),
            1,
            "member {member}"
        );
    }

    // The record of txnNumber 7 left with the write: the same command on the new primary
    // executes it afresh rather than answering it as a retry. The first try may still meet
    // member 0, now a secondary, which refuses it and so points the driver to member 1.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let sent = client
            .database(DB)
            .run_command(command.clone())
            .session(&mut session)
            .run();
        match sent {
            Ok(reply) => break reply,
            Err(err) if Instant::now() < deadline => eprintln!("retrying after {err}"),
            Err(err) => panic!("{err:?}"),
        }
    };
    assert_eq!(reply.get_i32("n"), Ok(1));
    assert!(!reply.contains_key("retriedStmtIds"), "{reply}");
    assert_eq!(set.committed(DB, COLL).len(), 2);
}
