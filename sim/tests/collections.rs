//! `create` and `listCollections` with the real driver: capped and time-series collections and
//! views listed as a 7.0 server lists them, and what each does to an insert. A time-series
//! collection keeps no unique `_id`, so only the driver's own retry, under the same
//! `txnNumber`, is recognised; a second insert of the same breath is stored twice, silently.

use std::time::Duration;

use bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{TimeseriesGranularity, TimeseriesOptions};
use mongodb::results::CollectionType;
use mongodb::sync::Database;

use crate::driver::{client, direct, first_batch, wait_for, DB};
use mabel_sim::ReplicaSet;

fn db(set: &ReplicaSet) -> Database {
    client(&set.uri()).database(DB)
}

fn breath() -> Document {
    doc! { "_id": ObjectId::new(), "time": DateTime::now(), "oxygen": 0.5 }
}

fn time_series(db: &Database, name: &str) {
    let options = TimeseriesOptions::builder().time_field("time").build();
    db.create_collection(name)
        .timeseries(options)
        .run()
        .expect("a time-series collection");
}

/// The raw `listCollections` entries of `name` in the set's primary.
fn entries(db: &Database, name: &str) -> Vec<Document> {
    let reply = db
        .run_command(doc! { "listCollections": 1, "filter": { "name": name } })
        .run()
        .expect("listCollections");
    first_batch(&reply)
}

fn code(error: &mongodb::error::Error) -> Option<i32> {
    match &*error.kind {
        ErrorKind::Command(e) => Some(e.code),
        ErrorKind::InsertMany(e) => e.write_errors.as_ref()?.first().map(|e| e.code),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e)) => Some(e.code),
        _ => None,
    }
}

#[test]
fn each_kind_is_listed_as_the_server_lists_it() {
    let set = ReplicaSet::start();
    let db = db(&set);
    db.collection::<Document>("breaths")
        .insert_one(breath())
        .run()
        .expect("an insert creates the collection");
    db.create_collection("capped")
        .capped(true)
        .size(1000)
        .max(5)
        .run()
        .expect("a capped collection");
    time_series(&db, "series");
    db.create_collection("view")
        .view_on("breaths".to_string())
        .pipeline(vec![])
        .run()
        .expect("a view");

    let specs: Vec<_> = db
        .list_collections()
        .run()
        .expect("listCollections")
        .collect::<Result<_, _>>()
        .expect("every entry deserializes, info.readOnly included");
    let kinds: Vec<(&str, CollectionType)> = specs
        .iter()
        .map(|s| (s.name.as_str(), s.collection_type.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("breaths", CollectionType::Collection),
            ("capped", CollectionType::Collection),
            ("series", CollectionType::Timeseries),
            ("view", CollectionType::View),
        ]
    );

    let [breaths] = entries(&db, "breaths").try_into().expect("one entry");
    let keys: Vec<&str> = breaths.keys().map(String::as_str).collect();
    assert_eq!(keys, ["name", "type", "options", "info", "idIndex"]);
    assert_eq!(breaths.get_document("options"), Ok(&doc! {}));
    assert!(breaths.get_document("info").unwrap().get("uuid").is_some());

    // `size` is rounded up to a multiple of 256 (`adjustCappedSize`).
    let [capped] = entries(&db, "capped").try_into().expect("one entry");
    let options = capped.get_document("options").unwrap();
    assert_eq!(options, &doc! { "capped": true, "size": 1024, "max": 5 });

    // The bucketing defaults are filled in; there is no uuid and no _id index.
    let [series] = entries(&db, "series").try_into().expect("one entry");
    assert_eq!(
        series,
        doc! {
            "name": "series",
            "type": "timeseries",
            "options": { "timeseries": {
                "timeField": "time", "granularity": "seconds", "bucketMaxSpanSeconds": 3600,
            } },
            "info": { "readOnly": false },
        }
    );
    let ts = specs[2]
        .options
        .timeseries
        .as_ref()
        .expect("timeseries options");
    assert_eq!(ts.granularity, Some(TimeseriesGranularity::Seconds));
    assert_eq!(ts.bucket_max_span, Some(Duration::from_secs(3600)));

    let [view] = entries(&db, "view").try_into().expect("one entry");
    assert_eq!(
        view,
        doc! {
            "name": "view",
            "type": "view",
            "options": { "viewOn": "breaths", "pipeline": [] },
            "info": { "readOnly": true },
        }
    );
    assert!(entries(&db, "nothing").is_empty());

    // A filter on any field of the entry, and names alone.
    let reply = db
        .run_command(doc! { "listCollections": 1, "filter": { "type": "view" }, "nameOnly": true })
        .run()
        .expect("listCollections");
    let batch = reply
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch");
    assert_eq!(
        batch,
        Ok(&vec![doc! { "name": "view", "type": "view" }.into()])
    );
}

#[test]
fn a_time_series_collection_stores_a_second_insert_of_the_same_breath_silently() {
    let set = ReplicaSet::start();
    let db = db(&set);
    time_series(&db, "breaths");
    let breaths = db.collection::<Document>("breaths");
    let twice = breath();
    breaths.insert_one(twice.clone()).run().expect("the first");
    breaths
        .insert_one(twice.clone())
        .run()
        .expect("the same _id again, and no duplicate-key error");
    let stored = set.documents(DB, "breaths");
    assert_eq!(stored, [twice.clone(), twice]);

    // A measurement needs its time.
    let error = breaths
        .insert_one(doc! { "oxygen": 0.1 })
        .run()
        .expect_err("no time");
    assert_eq!(code(&error), Some(2), "{error}");
    // And no index on it may be unique.
    let unique = mongodb::IndexModel::builder()
        .keys(doc! { "oxygen": 1 })
        .options(
            mongodb::options::IndexOptions::builder()
                .unique(true)
                .build(),
        )
        .build();
    let error = breaths.create_index(unique).run().expect_err("unique");
    assert_eq!(code(&error), Some(72), "{error}");
}

#[test]
fn only_the_drivers_own_retry_is_recognised_on_a_time_series_collection() {
    let set = ReplicaSet::start();
    let db = db(&set);
    time_series(&db, "breaths");
    // The write commits, then its connection closes: the driver retries under the same
    // txnNumber, and the session's record answers it.
    direct(&set, 0)
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "onPrimaryTransactionalWrite",
            "mode": { "times": 1 },
            "data": {},
        })
        .run()
        .expect("configureFailPoint");
    let before = set.insert_count();
    db.collection::<Document>("breaths")
        .insert_one(breath())
        .run()
        .expect("retried by the driver");
    assert_eq!(set.insert_count() - before, 2, "the attempt and its retry");
    assert_eq!(set.documents(DB, "breaths").len(), 1);
}

#[test]
fn a_capped_collection_deletes_its_oldest_on_every_member() {
    let set = ReplicaSet::start();
    let db = db(&set);
    db.create_collection("breaths")
        .capped(true)
        .size(4096)
        .max(3)
        .run()
        .expect("a capped collection");
    let docs: Vec<Document> = (0..5).map(|i| doc! { "_id": i }).collect();
    db.collection::<Document>("breaths")
        .insert_many(docs)
        .run()
        .expect("inserted");
    let kept = [doc! { "_id": 2 }, doc! { "_id": 3 }, doc! { "_id": 4 }];
    for member in 0..3 {
        wait_for(
            || set.documents_on(member, DB, "breaths") == kept,
            "every member to keep the newest three",
        );
    }

    // And by size: 256 bytes hold seven documents of 34 bytes, not eight.
    db.create_collection("small")
        .capped(true)
        .size(200)
        .run()
        .expect("a capped collection of 256 bytes");
    let docs: Vec<Document> = (0..8)
        .map(|i| doc! { "_id": i, "pad": "0123456789" })
        .collect();
    db.collection::<Document>("small")
        .insert_many(docs)
        .run()
        .expect("inserted");
    let ids: Vec<i32> = set
        .documents(DB, "small")
        .iter()
        .map(|d| d.get_i32("_id").unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn a_view_takes_no_insert_and_no_index() {
    let set = ReplicaSet::start();
    let db = db(&set);
    db.create_collection("view")
        .view_on("breaths".to_string())
        .run()
        .expect("a view");
    let view = db.collection::<Document>("view");
    let error = view
        .insert_many([breath(), breath()])
        .ordered(false)
        .run()
        .expect_err("a view");
    let ErrorKind::InsertMany(reply) = &*error.kind else {
        panic!("not a write error: {error}");
    };
    let errors = reply.write_errors.as_deref().unwrap_or_default();
    let found: Vec<(usize, i32)> = errors.iter().map(|e| (e.index, e.code)).collect();
    assert_eq!(found, [(0, 166), (1, 166)], "each document refused");
    assert_eq!(
        errors[0].message,
        "Namespace mabel.view is a view, not a collection"
    );
    let index = mongodb::IndexModel::builder()
        .keys(doc! { "time": 1 })
        .build();
    let error = view.create_index(index).run().expect_err("a view");
    assert_eq!(code(&error), Some(166), "{error}");
    assert!(set.documents(DB, "breaths").is_empty());
}

#[test]
fn create_is_idempotent_and_refuses_other_options() {
    let set = ReplicaSet::start();
    let db = db(&set);
    time_series(&db, "series");
    time_series(&db, "series");
    let error = db
        .create_collection("series")
        .run()
        .expect_err("not time-series");
    assert_eq!(code(&error), Some(48), "{error}");
    let both = doc! {
        "create": "other", "timeseries": { "timeField": "time" }, "capped": true, "size": 1000,
    };
    let error = db
        .run_command(both)
        .run()
        .expect_err("capped and time-series");
    assert_eq!(code(&error), Some(72), "{error}");
    assert!(
        error
            .to_string()
            .contains("'timeseries' is not allowed with 'capped'"),
        "{error}"
    );

    let error = db
        .run_command(doc! { "create": "c", "capped": true })
        .run()
        .expect_err("no size");
    assert_eq!(code(&error), Some(72), "{error}");
    assert!(
        error.to_string().contains("the 'size' field is required"),
        "{error}"
    );

    // The other kinds' creations replicate with their kind.
    for member in 0..3 {
        wait_for(
            || {
                let reply = direct(&set, member)
                    .database(DB)
                    .run_command(doc! {
                        "listCollections": 1,
                        "$readPreference": { "mode": "secondaryPreferred" },
                    })
                    .run();
                reply.is_ok_and(|r| r.to_string().contains("\"timeseries\""))
            },
            "every member to list the time-series collection",
        );
    }
}

/// A time or meta field with a NUL in it cannot be a field name: `create` refuses it, and
/// the member goes on answering, `listIndexes` included.
#[test]
fn a_time_series_field_name_with_a_nul_is_refused() {
    let set = ReplicaSet::start();
    let db = db(&set);
    for timeseries in [
        doc! { "timeField": "t", "metaField": "m\u{0}x" },
        doc! { "timeField": "t\u{0}x" },
    ] {
        let error = db
            .run_command(doc! { "create": "nul", "timeseries": timeseries })
            .run()
            .expect_err("a NUL in a field name");
        assert_eq!(code(&error), Some(72), "{error}");
        assert!(error.to_string().contains("null byte"), "{error}");
    }
    let error = db
        .run_command(doc! { "listIndexes": "nul" })
        .run()
        .expect_err("no collection was created");
    assert_eq!(code(&error), Some(26), "{error}");
}
