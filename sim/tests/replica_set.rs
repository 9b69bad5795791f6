//! Checks the fake replica set in `support` against the real `mongodb` driver, so tests built
//! on the fake can trust what it says about failover, duplicates and reads.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::IndexOptions;
use mongodb::sync::{Client, Collection};
use mongodb::IndexModel;

use mabel_sim::{ReplicaSet, Role};

const DB: &str = "mabel";
const COLL: &str = "breaths";

fn breaths(uri: &str) -> Collection<Document> {
    Client::with_uri_str(uri)
        .expect("client")
        .database(DB)
        .collection(COLL)
}

fn breath(n: i32) -> Document {
    doc! { "_id": ObjectId::new(), "n": n, "time": DateTime::now() }
}

/// Inserts through `runCommand`, which hands back the server's reply untouched.
fn raw_insert(set: &ReplicaSet, doc: &Document) -> Document {
    let client = Client::with_uri_str(set.uri()).expect("client");
    let command = doc! { "insert": COLL, "documents": [doc.clone()] };
    client
        .database(DB)
        .run_command(command)
        .run()
        .expect("ok: 1 reply")
}

fn first_write_error(reply: &Document) -> Document {
    reply.get_array("writeErrors").expect("writeErrors")[0]
        .as_document()
        .unwrap()
        .clone()
}

#[test]
fn insert_one_lands_in_documents() {
    let set = ReplicaSet::scripted();
    let doc = breath(1);
    breaths(&set.uri()).insert_one(&doc).run().expect("insert");
    assert_eq!(set.documents(DB, COLL), vec![doc]);
    assert_eq!(set.insert_count(), 1);
}

#[test]
fn hello_looks_like_a_replica_set_member() {
    let set = ReplicaSet::scripted();
    let client = Client::with_uri_str(set.uri()).expect("client");
    let reply = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .run()
        .expect("hello");
    assert_eq!(reply.get_str("setName"), Ok(set.set_name()));
    assert_eq!(reply.get_bool("isWritablePrimary"), Ok(true));
    assert_eq!(reply.get_str("primary"), Ok(set.hosts()[0].as_str()));
    assert_eq!(reply.get_array("hosts").map(Vec::len), Ok(3));
    assert!(reply.get_object_id("electionId").is_ok());
    assert_eq!(reply.get_i32("maxWireVersion"), Ok(21));
    let version = reply
        .get_document("topologyVersion")
        .expect("topologyVersion");
    assert!(version.get_object_id("processId").is_ok());
    assert!(version.get_i64("counter").is_ok());
    assert_eq!(
        reply.keys().next().map(String::as_str),
        Some("topologyVersion")
    );
    assert_eq!(reply.get_f64("ok"), Ok(1.0));
}

#[test]
fn duplicate_id_is_a_write_error_with_key_pattern() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&set.uri());
    let doc = breath(1);
    coll.insert_one(&doc).run().expect("first insert");

    let err = coll.insert_one(&doc).run().expect_err("duplicate");
    let ErrorKind::Write(WriteFailure::WriteError(write_error)) = *err.kind else {
        panic!("expected a write error, got {err:?}");
    };
    assert_eq!(write_error.code, 11000);
    assert_eq!(
        write_error.code_name, None,
        "servers omit codeName in writeErrors"
    );
    let id = doc.get_object_id("_id").unwrap();
    let expected = format!(
        "E11000 duplicate key error collection: mabel.breaths index: _id_ dup key: {{ _id: \
         ObjectId('{id}') }}"
    );
    assert_eq!(write_error.message, expected);

    // The driver's error keeps no keyPattern/keyValue (insert_one and insert_many both
    // rebuild the error without the raw reply); a raw command shows what the server sent.
    let reply = raw_insert(&set, &doc);
    let entry = first_write_error(&reply);
    assert_eq!(entry.get_document("keyPattern"), Ok(&doc! { "_id": 1 }));
    assert_eq!(entry.get_document("keyValue"), Ok(&doc! { "_id": id }));
    assert!(!entry.contains_key("codeName"));
    assert_eq!(set.documents(DB, COLL).len(), 1);
}

#[test]
fn extra_unique_index_names_its_field() {
    let set = ReplicaSet::scripted();
    set.add_unique_index(DB, COLL, "n");
    let coll = breaths(&set.uri());
    coll.insert_one(breath(7)).run().expect("first");
    let reply = raw_insert(&set, &breath(7));
    let entry = first_write_error(&reply);
    assert_eq!(entry.get_i32("code"), Ok(11000));
    assert_eq!(entry.get_document("keyPattern"), Ok(&doc! { "n": 1 }));
    assert!(entry
        .get_str("errmsg")
        .unwrap()
        .contains("index: n_1 dup key: { n: 7 }"));
}

#[test]
fn indexes_created_through_the_driver_are_enforced() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&set.uri());
    let unique = IndexOptions::builder().unique(true).build();
    let model = IndexModel::builder()
        .keys(doc! { "n": 1 })
        .options(unique)
        .build();
    coll.create_index(model).run().expect("createIndexes");
    assert_eq!(
        coll.list_index_names().run().expect("listIndexes"),
        ["_id_", "n_1"]
    );

    coll.insert_one(breath(3)).run().expect("first");
    let err = coll.insert_one(breath(3)).run().expect_err("same n");
    let ErrorKind::Write(WriteFailure::WriteError(write_error)) = *err.kind else {
        panic!("expected a write error, got {err:?}");
    };
    assert!(write_error.message.contains("index: n_1 dup key: { n: 3 }"));
}

/// A reply without the gossip every reply carries, to compare whole.
fn without_gossip(mut reply: Document) -> Document {
    reply.remove("$clusterTime");
    reply.remove("operationTime");
    reply
}

#[test]
fn the_time_index_is_built_and_listed_as_mongod_does() {
    let set = ReplicaSet::scripted();
    let db = Client::with_uri_str(set.uri())
        .expect("client")
        .database(DB);
    let create = |coll: &str| {
        let index = doc! { "key": { "time": 1, "_id": 1 }, "name": "time_1__id_1" };
        let command = doc! { "createIndexes": coll, "indexes": [index] };
        without_gossip(db.run_command(command).run().expect("createIndexes"))
    };
    assert_eq!(
        create(COLL),
        doc! {
            "numIndexesBefore": 1,
            "numIndexesAfter": 2,
            "createdCollectionAutomatically": true,
            "commitQuorum": "votingMembers",
            "ok": 1.0,
        }
    );
    assert_eq!(
        create(COLL),
        doc! {
            "numIndexesBefore": 2,
            "numIndexesAfter": 2,
            "note": "all indexes already exist",
            "ok": 1.0,
        }
    );
    let specs: Vec<Document> = breaths(&set.uri())
        .list_indexes()
        .run()
        .expect("listIndexes")
        .map(|spec| bson::to_document(&spec.expect("a spec")).expect("a document"))
        .collect();
    let names: Vec<&str> = specs
        .iter()
        .filter_map(|s| s.get_str("name").ok())
        .collect();
    assert_eq!(names, ["_id_", "time_1__id_1"]);
    assert_eq!(
        specs[1].get_document("key"),
        Ok(&doc! { "time": 1, "_id": 1 })
    );

    // On a collection that already holds documents, the build does not create it.
    raw_insert(&set, &breath(1));
    db.collection::<Document>("other")
        .insert_one(breath(2))
        .run()
        .expect("insert");
    let reply = create("other");
    assert_eq!(reply.get_bool("createdCollectionAutomatically"), Ok(false));
    assert_eq!(reply.get_i32("numIndexesAfter"), Ok(2));

    // A compound unique index is beyond the fake, and it says so rather than pretend.
    let unique = doc! { "key": { "time": 1, "n": 1 }, "name": "time_1_n_1", "unique": true };
    let command = doc! { "createIndexes": COLL, "indexes": [unique] };
    assert!(db.run_command(command).run().is_err());
}

#[test]
fn a_write_latency_holds_the_reply_and_nothing_else() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&set.uri());
    coll.insert_one(breath(0))
        .run()
        .expect("a connection is up");
    set.set_write_latency(Duration::from_secs(4));
    let doc = breath(1);
    let (done, finished) = std::sync::mpsc::channel();
    let writer = {
        let (coll, doc) = (coll.clone(), doc.clone());
        std::thread::spawn(move || {
            let result = coll.insert_one(doc).run().map(|_| ());
            let _ = done.send(());
            result
        })
    };

    // Applied at once, as on a primary that then waits for its secondaries and the journal.
    let deadline = Instant::now() + Duration::from_secs(3);
    while set.documents(DB, COLL).len() < 2 {
        assert!(Instant::now() < deadline, "the insert was never applied");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Another client meets every member and reads while the reply still waits.
    let other = Client::with_uri_str(set.uri()).expect("client");
    other
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .run()
        .expect("ping");
    let found = breaths(&set.uri()).find_one(doc! { "n": 1 }).run();
    assert_eq!(found.expect("find"), Some(doc));
    assert!(
        finished.try_recv().is_err(),
        "the insert was answered before the others"
    );
    writer
        .join()
        .expect("no panic")
        .expect("the insert succeeds");
}

#[test]
fn kill_then_elect_retries_onto_the_new_primary_once() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&set.uri());
    coll.insert_one(breath(1)).run().expect("warm-up");

    set.kill(0);
    set.elect(1);
    let start = Instant::now();
    let doc = breath(2);
    coll.insert_one(&doc).run().expect("insert after failover");
    println!("insert across kill(0)+elect(1) took {:?}", start.elapsed());

    let docs = set.documents(DB, COLL);
    assert_eq!(docs.iter().filter(|d| **d == doc).count(), 1);
    assert_eq!(docs.len(), 2);
    assert_eq!(set.primary(), Some(1));
}

#[test]
fn step_down_then_delayed_election() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&set.uri());
    coll.insert_one(breath(1)).run().expect("warm-up");

    set.step_down();
    set.elect_after(2, Duration::from_millis(1500));
    let start = Instant::now();
    coll.insert_one(breath(2))
        .run()
        .expect("insert once member 2 is elected");
    let took = start.elapsed();
    println!("insert across step_down + election after 1.5 s took {took:?}");

    assert!(
        took >= Duration::from_millis(1500),
        "cannot succeed before the election"
    );
    assert_eq!(set.primary(), Some(2));
    assert_eq!(set.documents(DB, COLL).len(), 2);
    // Applied by the new primary, after one refusal by the stepped-down member if the driver
    // sent it there before it heard of the step-down (it streams, so it often has heard).
    assert!(
        [2, 3].contains(&set.insert_count()),
        "{}",
        set.insert_count()
    );
}

#[test]
fn dropped_reply_is_retried_and_lands_once() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&set.uri());
    set.drop_next_reply();
    coll.insert_one(breath(1))
        .run()
        .expect("the retry gets the remembered reply");
    assert_eq!(set.documents(DB, COLL).len(), 1);
    assert_eq!(set.insert_count(), 2);
}

#[test]
fn dropped_reply_without_retry_is_an_io_error_but_stored() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&format!("{}&retryWrites=false", set.uri()));
    set.drop_next_reply();
    let err = coll.insert_one(breath(1)).run().expect_err("no reply");
    println!(
        "dropped reply, retryWrites=false: {:?}, labels {:?}",
        err.kind,
        err.labels()
    );
    assert!(matches!(*err.kind, ErrorKind::Io(_)), "got {err:?}");
    assert_eq!(set.documents(DB, COLL).len(), 1);
    assert_eq!(set.insert_count(), 1);
}

#[test]
fn crash_after_write_then_elect_lands_once() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&set.uri());
    coll.insert_one(breath(1)).run().expect("warm-up");
    set.crash_after_next_write();
    set.elect_after(1, Duration::from_millis(300));
    coll.insert_one(breath(2))
        .run()
        .expect("retried on the new primary");
    assert_eq!(set.documents(DB, COLL).len(), 2);
    assert_eq!(set.primary(), Some(1));
    assert!(
        TcpStream::connect(&set.hosts()[0]).is_err(),
        "member 0 is dead"
    );
}

#[test]
fn failed_validation_is_a_write_error_and_stores_nothing() {
    let set = ReplicaSet::scripted();
    set.fail_next_write(121);
    let err = breaths(&set.uri())
        .insert_one(breath(1))
        .run()
        .expect_err("validation");
    let ErrorKind::Write(WriteFailure::WriteError(write_error)) = *err.kind else {
        panic!("expected a write error, got {err:?}");
    };
    assert_eq!(write_error.code, 121);
    assert_eq!(write_error.message, "Document failed validation");
    assert!(write_error
        .details
        .unwrap()
        .contains_key("failingDocumentId"));
    assert!(set.documents(DB, COLL).is_empty());
    assert_eq!(set.insert_count(), 1, "write errors are not retried");
}

#[test]
fn injected_command_errors_follow_the_retry_rules() {
    let set = ReplicaSet::scripted();
    let coll = breaths(&set.uri());

    // Retryable and labelled: the driver retries once by itself.
    set.fail_next_write(91);
    coll.insert_one(breath(1))
        .run()
        .expect("retried after ShutdownInProgress");
    assert_eq!(set.insert_count(), 2);

    // Not retryable: surfaces as a command error after one attempt.
    set.fail_next_write(13);
    let err = coll.insert_one(breath(2)).run().expect_err("unauthorized");
    let ErrorKind::Command(command_error) = *err.kind else {
        panic!("expected a command error, got {err:?}");
    };
    assert_eq!(
        (command_error.code, command_error.code_name.as_str()),
        (13, "Unauthorized")
    );
    assert_eq!(set.insert_count(), 3);
    assert_eq!(set.documents(DB, COLL).len(), 1);
}

#[test]
fn find_sorts_and_pages_through_get_more() {
    let set = ReplicaSet::scripted();
    let base = DateTime::now().timestamp_millis();
    // Times go backwards, with pairs sharing a time so the _id tie-break matters.
    for n in 0..1000 {
        let time = DateTime::from_millis(base - i64::from(n / 2) * 1000);
        set.insert_direct(
            DB,
            COLL,
            doc! { "_id": ObjectId::new(), "n": n, "time": time, "extra": "x" },
        );
    }
    let coll = breaths(&set.uri());
    let cursor = coll
        .find(doc! { "n": { "$gte": 0 } })
        .sort(doc! { "time": 1, "_id": 1 })
        .projection(doc! { "n": 1, "time": 1 })
        .batch_size(7)
        .run()
        .expect("find");
    let got: Vec<Document> = cursor.map(|d| d.expect("document")).collect();

    assert_eq!(got.len(), 1000);
    for pair in got.windows(2) {
        let key = |d: &Document| {
            (
                d.get_datetime("time").unwrap().timestamp_millis(),
                d.get_object_id("_id").unwrap(),
            )
        };
        assert!(key(&pair[0]) < key(&pair[1]), "out of order: {pair:?}");
    }
    assert!(got
        .iter()
        .all(|d| !d.contains_key("extra") && d.contains_key("_id")));
    // 7 in the first batch, then 993 more seven at a time.
    assert_eq!(set.command_count("getMore"), 142);

    let tail: Vec<Document> = coll
        .find(doc! { "n": { "$lt": 10 } })
        .sort(doc! { "n": -1 })
        .limit(3)
        .run()
        .expect("find")
        .map(|d| d.unwrap())
        .collect();
    let ns: Vec<i32> = tail.iter().map(|d| d.get_i32("n").unwrap()).collect();
    assert_eq!(ns, vec![9, 8, 7]);
}

#[test]
fn kill_closes_the_port_and_revive_reopens_it() {
    let set = ReplicaSet::scripted();
    let host = set.hosts()[1].clone();
    // Leave a server-closed connection behind, so the port has sockets in TIME_WAIT.
    let held = TcpStream::connect(&host).expect("connect");
    set.kill(1);
    assert!(
        TcpStream::connect(&host).is_err(),
        "killed member must refuse connections"
    );
    drop(held);
    set.revive(1);
    TcpStream::connect(&host).expect("revived member accepts again");

    // A new process, in STARTUP2 and then RECOVERING: not a secondary yet.
    let client = Client::with_uri_str(format!("mongodb://{host}/?directConnection=true")).unwrap();
    let hello = || {
        client
            .database("admin")
            .run_command(doc! { "hello": 1 })
            .run()
            .expect("hello")
    };
    let reply = hello();
    assert_eq!(reply.get_bool("secondary"), Ok(false));
    assert_eq!(reply.get_bool("isWritablePrimary"), Ok(false));
    // Then a secondary again, which the driver can read from.
    set.wait_for_role(1, Role::Secondary, Duration::from_secs(10));
    assert_eq!(hello().get_bool("secondary"), Ok(true));
}

#[test]
fn dropping_the_set_closes_every_port() {
    let set = ReplicaSet::scripted();
    breaths(&set.uri())
        .insert_one(breath(1))
        .run()
        .expect("insert");
    let hosts = set.hosts();
    drop(set);
    for host in hosts {
        assert!(TcpStream::connect(&host).is_err(), "{host} still open");
    }
}

#[test]
fn hung_primary_eventually_fails_the_insert() {
    let set = ReplicaSet::scripted();
    let uri = format!(
        "{}&connectTimeoutMS=2000&serverSelectionTimeoutMS=5000",
        set.uri()
    );
    let coll = breaths(&uri);
    coll.insert_one(breath(1)).run().expect("warm-up");

    set.hang(0);
    let start = Instant::now();
    let result = coll.insert_one(breath(2)).run();
    let took = start.elapsed();
    match &result {
        Ok(_) => println!("hung primary: insert unexpectedly succeeded after {took:?}"),
        Err(err) => println!(
            "hung primary: {:?} (labels {:?}) after {took:?}",
            err.kind,
            err.labels()
        ),
    }
    assert!(result.is_err());

    // The member had read the insert; once it answers again it applies it, although the
    // driver already reported a failure.
    set.unhang(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while set.documents(DB, COLL).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(set.documents(DB, COLL).len(), 2);
}

#[test]
fn the_set_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ReplicaSet>();
}
