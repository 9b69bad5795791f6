//! A fake three-member MongoDB replica set that the real `mongodb` driver talks to over TCP on
//! 127.0.0.1, so failover handling can be tested without a mongod.
//!
//! Each member speaks OP_MSG on its own ephemeral port and answers as a MongoDB 7.0 member
//! would: `hello` with set name, hosts, primary and electionId; `insert` with unique-index
//! errors and retryable-write history; `find`/`getMore` for readers. Tests steer it: kill,
//! revive, hang, step down and elect members, or arm a fault for the next write; or, as on a
//! real set, through `configureFailPoint` (`failpoint.rs`, `fail_command.rs`),
//! `replSetFreeze` and `replSetStepDown` (`stepdown.rs`).
//!
//! What it cannot imitate, beyond what each file notes:
//! - Replication is one shared store. A write is on every member the instant the primary
//!   applies it; there is no lag, no rollback of a revived member's `w: 1` writes, and
//!   `w: "majority"`/`j: true` are always satisfied (write concern is accepted and ignored).
//! - Elections happen only when a test calls `elect`, or after a `replSetStepDown` as the
//!   server's handoff and election timeout would have it (`stepdown.rs`); a killed or hung
//!   primary is never replaced on its own.
//! - No authentication, TLS, compression, transactions, or streaming heartbeats.
//!
//! Include it from an integration test with `mod support;`, or from a bench with
//! `#[path = "../tests/support/mod.rs"] mod support;`. Set `FAKE_RS_LOG=1` to print every
//! command each member receives to stderr.

#![allow(dead_code)]

// Runs the `mabel` binary for the end-to-end tests; separate from the fake itself.
pub mod mabel;
// Spool files with a backlog in them, for the catch-up tests and benchmark.
pub mod spool_file;
// The fake or a real set behind one interface, and the real side of it.
pub mod real;
pub mod target;

mod cluster;
mod commands;
mod cursor;
mod errors;
mod fail_command;
mod failpoint;
mod member;
mod query;
mod stepdown;
mod store;
mod wire;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bson::Document;

use cluster::{Shared, SET_NAME};

/// Three members of a set whose name no other fake shares. Dropping it closes every port and
/// joins every thread.
pub struct FakeReplicaSet {
    shared: Arc<Shared>,
    hosts: Vec<String>,
}

impl FakeReplicaSet {
    /// Starts three members with member 0 primary and the others secondaries.
    ///
    /// Every fake listens on 127.0.0.1, and the port of a killed member can be taken at once
    /// by another fake, in this process or another one. A driver that reconnects there and
    /// finds a primary of its set name follows it: that primary's host list replaces the
    /// set's, and writes land in the other fake. So each fake gets a set name of its own.
    pub fn start() -> FakeReplicaSet {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        FakeReplicaSet::start_named(&format!("{SET_NAME}-{}-{n}", std::process::id()))
    }

    /// The same, with a set name of the caller's choosing.
    pub fn start_named(set_name: &str) -> FakeReplicaSet {
        let listeners: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("bound address").port())
            .collect();
        let shared = Arc::new(Shared::new(&ports, set_name));
        for (member, listener) in listeners.into_iter().enumerate() {
            member::start(&shared, member, listener);
        }
        let hosts = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        FakeReplicaSet { shared, hosts }
    }

    /// A URI with all three seeds and fast (500 ms) heartbeats so failover tests are quick.
    pub fn uri(&self) -> String {
        format!(
            "mongodb://{}/?replicaSet={}&heartbeatFrequencyMS=500",
            self.hosts.join(","),
            self.shared.set_name
        )
    }

    pub fn set_name(&self) -> &str {
        &self.shared.set_name
    }

    pub fn hosts(&self) -> Vec<String> {
        self.hosts.clone()
    }

    pub fn primary(&self) -> Option<usize> {
        self.shared.lock().primary
    }

    /// Like a crashed process: the port and every connection close, nothing answers. If it
    /// was the primary, there is no primary until `elect`.
    pub fn kill(&self, member: usize) {
        member::kill(&self.shared, member);
    }

    /// Listens again on the same port, as a secondary, with the shared data intact.
    pub fn revive(&self, member: usize) {
        member::revive(&self.shared, member);
    }

    /// The primary becomes a secondary; connections stay open as on 4.2+. There is no
    /// primary until `elect`.
    pub fn step_down(&self) {
        self.shared.step_down();
    }

    /// `member` becomes primary with a higher term (so a larger electionId); any other
    /// primary becomes a secondary. Panics if the member is killed.
    pub fn elect(&self, member: usize) {
        assert!(
            self.shared.elect(member),
            "member {member} is down and cannot win an election"
        );
    }

    /// Elects `member` from a background thread after `delay`, while the test carries on.
    /// Nothing happens if the set is dropped first or the member is down by then.
    pub fn elect_after(&self, member: usize, delay: Duration) {
        self.shared.elect_after(member, delay);
    }

    /// The member keeps accepting connections and reading requests but answers nothing,
    /// `hello` included, until `unhang` or `kill`.
    pub fn hang(&self, member: usize) {
        self.shared.lock().members[member].hung = true;
    }

    /// Requests held by `hang` are then answered, late, on whatever connections survive.
    pub fn unhang(&self, member: usize) {
        self.shared.lock().members[member].hung = false;
        self.shared.changed.notify_all();
    }

    /// Every insert is answered `latency` after it was handled, standing for what a real
    /// primary waits for before it acknowledges a write with `w: "majority", j: true`: a
    /// majority's replication and the journal's flush, a few milliseconds on a real set. The
    /// write is applied at once; only the reply waits, on its own connection, so heartbeats
    /// and other connections are answered meanwhile.
    pub fn set_write_latency(&self, latency: Duration) {
        self.shared.lock().write_latency = latency;
    }

    /// The next insert the primary accepts is applied, then its connection closes with no
    /// reply.
    pub fn drop_next_reply(&self) {
        self.shared.lock().faults.drop_next_reply = true;
    }

    /// The next insert the primary accepts is applied, then the primary is killed (as by
    /// `kill`) before it replies.
    pub fn crash_after_next_write(&self) {
        self.shared.lock().faults.crash_after_next_write = true;
    }

    /// The next insert the primary accepts is not applied and fails with `code`, shaped as
    /// the server shapes it: 121 and 11000 as a write error in an `ok: 1` reply, anything
    /// else as a command error, labelled `RetryableWriteError` when the code is retryable
    /// and the command carried a `txnNumber`.
    pub fn fail_next_write(&self, code: i32) {
        self.shared.lock().faults.fail_next_write = Some(code);
    }

    /// An extra unique index `<field>_1` on a top-level field. Panics if the stored documents
    /// already break it, as the server's index build would fail.
    pub fn add_unique_index(&self, db: &str, coll: &str, field: &str) {
        let ns = format!("{db}.{coll}");
        let built = self.shared.lock().store.create_index(&ns, field, 1, true);
        if let Err(dup) = built {
            panic!("cannot build unique index: {}", dup.message());
        }
    }

    /// Seeds a document without the wire, as if inserted through the primary: `_id` is
    /// generated when missing and moved first. Panics with the server's E11000 message if a
    /// unique index refuses it.
    pub fn insert_direct(&self, db: &str, coll: &str, doc: Document) {
        let ns = format!("{db}.{coll}");
        let inserted = {
            let mut state = self.shared.lock();
            let inserted = state.store.insert_one(&ns, store::encode(&doc));
            state.tick();
            inserted
        };
        if let Err(dup) = inserted {
            panic!("insert_direct: {}", dup.message());
        }
    }

    /// The stored documents in insertion order.
    pub fn documents(&self, db: &str, coll: &str) -> Vec<Document> {
        self.shared.lock().store.documents(&format!("{db}.{coll}"))
    }

    /// Insert commands received by all members, answered or not, retries and refusals
    /// included: the way to assert how many attempts the driver made.
    pub fn insert_count(&self) -> u64 {
        self.shared.lock().insert_count
    }

    /// How many commands named `name` all members received (`"getMore"`, `"hello"`, ...).
    pub fn command_count(&self, name: &str) -> u64 {
        self.shared
            .lock()
            .command_counts
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FakeReplicaSet {
    fn drop(&mut self) {
        member::shutdown(&self.shared);
    }
}
