//! The real `mongodb` driver set up as the tests of the fake's replication use it: a client
//! for the set or for one member alone, a breath, write concerns, what a failed insert
//! says about its write concern, and a time limit on calls that would otherwise block for
//! good when the behaviour under test breaks.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, WriteConcern};
use mongodb::sync::{Client, Collection};

use mabel_sim::ReplicaSet;

pub const DB: &str = "mabel";
pub const COLL: &str = "breaths";

pub fn client(uri: &str) -> Client {
    Client::with_uri_str(uri).expect("client")
}

pub fn breaths(uri: &str) -> Collection<Document> {
    client(uri).database(DB).collection(COLL)
}

/// A client that talks to `member` alone, whatever its role.
pub fn direct(set: &ReplicaSet, member: usize) -> Client {
    let uri = format!(
        "mongodb://{}/?directConnection=true&retryWrites=false&heartbeatFrequencyMS=500",
        set.hosts()[member]
    );
    client(&uri)
}

pub fn breath() -> Document {
    doc! { "_id": ObjectId::new() }
}

pub fn majority_within(ms: u64) -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .w_timeout(Duration::from_millis(ms))
        .build()
}

pub fn w1() -> WriteConcern {
    WriteConcern::builder().w(Acknowledgment::Nodes(1)).build()
}

/// The `writeConcernError` code of an insert's error, if it has one.
pub fn write_concern_code(err: &mongodb::error::Error) -> Option<i32> {
    match &*err.kind {
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => Some(e.code),
        ErrorKind::InsertMany(e) => e.write_concern_error.as_ref().map(|e| e.code),
        _ => None,
    }
}

pub fn ids(docs: &[Document]) -> Vec<ObjectId> {
    docs.iter()
        .map(|d| d.get_object_id("_id").expect("an ObjectId _id"))
        .collect()
}

pub fn wait_for(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// How long `Call::result` waits: many times what any call given a limit takes when the set
/// behaves, so that only one that would never return fails.
pub const RETURNS_WITHIN: Duration = Duration::from_secs(10);

/// A blocking driver call running on a thread of its own, so that a test can act on the set
/// while it waits (a step-down, a revive) and then take its result with a time limit.
pub struct Call<T> {
    what: String,
    result: mpsc::Receiver<T>,
}

/// Starts `call` on a thread of its own; `what` names it in the failure if it never returns.
pub fn call<T: Send + 'static>(what: &str, call: impl FnOnce() -> T + Send + 'static) -> Call<T> {
    let (send, result) = mpsc::channel();
    thread::spawn(move || {
        // The receiver is gone only once the test has failed for want of this result.
        let _ = send.send(call());
    });
    Call {
        what: what.to_string(),
        result,
    }
}

impl<T> Call<T> {
    /// Its result, or a failure naming the call if it has not returned within
    /// `RETURNS_WITHIN` (the thread is left blocked; the test is over).
    #[track_caller]
    pub fn result(self) -> T {
        match self.result.recv_timeout(RETURNS_WITHIN) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => {
                panic!("{} did not return within {RETURNS_WITHIN:?}", self.what)
            }
            Err(RecvTimeoutError::Disconnected) => panic!("{} panicked", self.what),
        }
    }
}

/// Runs `call` and returns its result, or fails naming it if it has not returned within
/// `RETURNS_WITHIN`.
#[track_caller]
pub fn within<T: Send + 'static>(what: &str, call: impl FnOnce() -> T + Send + 'static) -> T {
    self::call(what, call).result()
}

/// The documents of a cursor reply's first batch (`listCollections`, `listIndexes`, `find`).
pub fn first_batch(reply: &Document) -> Vec<Document> {
    let batch = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("a first batch");
    batch
        .iter()
        .filter_map(|e| e.as_document().cloned())
        .collect()
}
