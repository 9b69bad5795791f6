//! A fake three-member MongoDB replica set that the real `mongodb` driver talks to over TCP on
//! 127.0.0.1, so failover handling can be tested without a mongod.
//!
//! Each member speaks OP_MSG on its own ephemeral port and answers as a MongoDB 7.0 member
//! would: `hello` with set name, hosts, primary and electionId; `insert` with unique-index
//! errors, retryable-write history and write concern; `find`/`getMore` for readers, with
//! read concern. Tests steer it: kill, revive, hang, step down and elect members, cut one
//! off from the others, slow its replication, or arm a fault for the next write; or, as on a
//! real set, through `configureFailPoint` (`failpoint.rs`, `fail_command.rs`),
//! `replSetFreeze` and `replSetStepDown` (`stepdown.rs`).
//!
//! Each member has its own oplog and data and replicates as mongod does (see `replication`,
//! `election`, `write_concern`): secondaries copy from a member they reach, the commit point
//! follows the majority, `w: "majority"` (the default) waits for it, a primary cut off from
//! the others goes on taking writes until it notices or rejoins, and a member that rejoins
//! with writes the new primary never saw rolls them back.
//!
//! Beyond what each file notes:
//! - Elections and step-downs happen only when a test calls for them (`elect`,
//!   `notice_isolation`, `heal`), or after a `replSetStepDown` as the server's handoff and
//!   election timeout would have it (`stepdown.rs`); a killed, hung or cut-off primary is
//!   never replaced on its own. With no lag and no partition, replication is instant, so a
//!   test that sets neither sees one consistent set.
//! - No authentication, TLS, compression, transactions, or streaming heartbeats.
//!
//! Set `FAKE_RS_LOG=1` to print every command each member receives to stderr.

mod cluster;
mod commands;
mod cursor;
mod election;
mod errors;
mod fail_command;
mod failpoint;
mod indexes;
mod member;
mod oplog;
mod primary;
mod query;
mod replication;
mod stepdown;
mod store;
mod wire;
mod write_concern;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bson::{Document, RawDocumentBuf};

use cluster::{Shared, SET_NAME};

/// Three members of a set whose name no other fake shares. Dropping it closes every port and
/// joins every thread.
pub struct ReplicaSet {
    shared: Arc<Shared>,
    hosts: Vec<String>,
}

impl ReplicaSet {
    /// Starts three members with member 0 primary and the others secondaries.
    ///
    /// Every fake listens on 127.0.0.1, and the port of a killed member can be taken at once
    /// by another fake, in this process or another one. A driver that reconnects there and
    /// finds a primary of its set name follows it: that primary's host list replaces the
    /// set's, and writes land in the other fake. So each fake gets a set name of its own.
    pub fn start() -> ReplicaSet {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        ReplicaSet::start_named(&format!("{SET_NAME}-{}-{n}", std::process::id()))
    }

    /// The same, with a set name of the caller's choosing.
    pub fn start_named(set_name: &str) -> ReplicaSet {
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
        ReplicaSet { shared, hosts }
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

    /// The primary of the newest term. A member cut off before that election may still
    /// act as primary of an earlier one.
    pub fn primary(&self) -> Option<usize> {
        self.shared.lock().primary
    }

    /// Like a crashed process: the port and every connection close, nothing answers. If it
    /// was the primary, there is no primary until `elect`. Its oplog and data survive.
    pub fn kill(&self, member: usize) {
        member::kill(&self.shared, member);
    }

    /// Listens again on the same port, as a secondary, with its own data: it catches up, or
    /// rolls back what the others never saw and then catches up.
    pub fn revive(&self, member: usize) {
        member::revive(&self.shared, member);
        self.settle();
    }

    /// The primary becomes a secondary; connections stay open as on 4.2+. There is no
    /// primary until `elect`.
    pub fn step_down(&self) {
        self.shared.step_down();
    }

    /// `member` wins an election: it catches up from the members it reaches, becomes
    /// primary in a higher term (so a larger electionId) and writes its "new primary" no-op.
    /// The old primary steps down if it reaches the winner; cut off, it goes on acting as
    /// primary of its term until `notice_isolation` or `heal`. Panics if the member cannot
    /// win: down, hung, or without the votes of a majority (itself and the members it
    /// reaches whose newest entry is not newer than its own).
    pub fn elect(&self, member: usize) {
        assert!(
            self.shared.elect(member),
            "member {member} cannot win an election"
        );
    }

    /// Whether `elect(member)` would succeed now.
    pub fn can_elect(&self, member: usize) -> bool {
        let mut state = self.shared.lock();
        state.replicate();
        state.can_win(member)
    }

    /// Elects `member` from a background thread after `delay`, while the test carries on.
    /// Nothing happens if the set is dropped first or the member cannot win by then.
    pub fn elect_after(&self, member: usize, delay: Duration) {
        self.shared.elect_after(member, delay);
    }

    /// Stops replication to and from `member` (its heartbeats and oplog fetching), while
    /// clients still reach it: a network partition with the member alone on its side. A
    /// primary cut off goes on taking writes; those waiting for a majority wait.
    pub fn isolate(&self, member: usize) {
        self.shared.lock().replica_mut(member).isolated = true;
        self.shared.changed.notify_all();
    }

    /// A member cut off notices it reaches no majority, as after electionTimeoutMillis
    /// (10 s) without heartbeats: if it acts as primary it steps down, and writes waiting
    /// for their concern there get PrimarySteppedDown. Panics if it reaches a majority.
    pub fn notice_isolation(&self, member: usize) {
        let mut state = self.shared.lock();
        let reached = (0..state.members.len())
            .filter(|&m| state.linked(member, m))
            .count();
        assert!(reached == 0, "member {member} is not cut off");
        state.notice_isolation(member);
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Ends every partition. A member that acted as primary of an earlier term hears of the
    /// newer one and steps down; a member that holds writes the primary's history does not
    /// rolls them back (`rolled_back` keeps them); then all catch up.
    pub fn heal(&self) {
        let mut state = self.shared.lock();
        for member in &mut state.members {
            member.replica.isolated = false;
        }
        drop(state);
        self.settle();
    }

    /// `member` copies each entry `lag` after the primary wrote it (none by default). A
    /// primary-elect catches up regardless, before it takes writes.
    pub fn set_lag(&self, member: usize, lag: Duration) {
        self.shared.lock().replica_mut(member).lag = lag;
        self.settle();
    }

    /// The documents of `db.coll` that members rolled back, in the order they left.
    pub fn rolled_back(&self, db: &str, coll: &str) -> Vec<Document> {
        let state = self.shared.lock();
        let docs = state.rolled_back.get(&format!("{db}.{coll}"));
        docs.map(|docs| to_documents(docs)).unwrap_or_default()
    }

    fn settle(&self) {
        let mut state = self.shared.lock();
        self.shared.settle(&mut state);
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

    /// Every insert is answered `latency` after it was handled, on top of its write
    /// concern: what a real set adds beyond replication, the journal's flush and the network,
    /// a few milliseconds. The write is applied at once; only the reply waits, on its own
    /// connection, so heartbeats and other connections are answered meanwhile.
    pub fn set_write_latency(&self, latency: Duration) {
        self.shared.lock().write_latency = latency;
    }

    /// The next insert a primary accepts is applied, then its connection closes with no
    /// reply, before it waits for its write concern.
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

    /// An extra unique index `<field>_1` on a top-level field, built by the primary and
    /// replicated. Panics if there is no primary, or if its documents already break the
    /// index, as the server's index build would fail.
    pub fn add_unique_index(&self, db: &str, coll: &str, field: &str) {
        let ns = format!("{db}.{coll}");
        let mut state = self.shared.lock();
        let primary = state.primary.expect("add_unique_index needs a primary");
        let term = state.term;
        let key = [(field.to_string(), 1)];
        if let Err(dup) = state.create_index(primary, term, &ns, &key, true) {
            panic!("cannot build unique index: {}", dup.message());
        }
        self.shared.settle(&mut state);
    }

    /// Seeds a document without the wire, as if inserted through the primary (and
    /// replicated as any write): `_id` is generated when missing and moved first. Panics if
    /// there is no primary, or with the server's E11000 message if a unique index refuses it.
    pub fn insert_direct(&self, db: &str, coll: &str, doc: Document) {
        let ns = format!("{db}.{coll}");
        let mut state = self.shared.lock();
        let primary = state.primary.expect("insert_direct needs a primary");
        let term = state.term;
        let reply = state
            .insert(primary, term, &ns, vec![store::encode(&doc)], true, None)
            .expect("an insert without a session is not refused");
        self.shared.settle(&mut state);
        if let Ok(errors) = reply.get_array("writeErrors") {
            panic!("insert_direct: {errors:?}");
        }
    }

    /// The documents of the primary of the newest term, in insertion order; with no primary,
    /// those of the member with the newest entry, dead or alive. That is all a client
    /// reading "local" from the primary would see, majority-committed or not: a breath
    /// acknowledged but at risk shows here until it is rolled back.
    pub fn documents(&self, db: &str, coll: &str) -> Vec<Document> {
        let mut state = self.shared.lock();
        self.shared.settle(&mut state);
        let member = state.newest_member();
        to_documents(&state.replica(member).read(&format!("{db}.{coll}"), false))
    }

    /// The documents `member` holds ("local"), committed or not.
    pub fn documents_on(&self, member: usize, db: &str, coll: &str) -> Vec<Document> {
        let mut state = self.shared.lock();
        self.shared.settle(&mut state);
        to_documents(&state.replica(member).read(&format!("{db}.{coll}"), false))
    }

    /// The majority-committed documents, which no failover can roll back: what a read with
    /// read concern "majority" sees on the member that knows the newest commit point.
    pub fn committed(&self, db: &str, coll: &str) -> Vec<Document> {
        let mut state = self.shared.lock();
        self.shared.settle(&mut state);
        to_documents(&state.committed_documents(&format!("{db}.{coll}")))
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

impl Drop for ReplicaSet {
    fn drop(&mut self) {
        member::shutdown(&self.shared);
    }
}

fn to_documents(docs: &[Arc<RawDocumentBuf>]) -> Vec<Document> {
    docs.iter()
        .map(|doc| doc.to_document().expect("stored documents are valid BSON"))
        .collect()
}
