//! The set a test writes to, behind one interface: the in-process fake by default, or the
//! real replica set that `MABEL_TEST_URI` names (`make test-real`).
//!
//! A test body injects its faults the same way on both sides. The server's own admin
//! commands (`configureFailPoint` with `failCommand`, `replSetFreeze`, `replSetStepDown`)
//! go through the driver to one member by address, which the fake answers as mongod does;
//! killing, starting and pausing a member are the fake's own controls, or Compose on a real
//! set (`real.rs`). A test that needs what only the fake can do (an election at an exact
//! moment, a write applied and its reply lost) asks `fake_only`, which prints
//! `skipped: <test>: <reason>` against a real set.
//!
//! On a real set the members are the hosts of `MABEL_TEST_URI` in order, the i-th being
//! Compose service `mongo<i+1>`, and each test writes to a database of its own.

use std::time::{Duration, Instant};

use bson::{doc, Bson, Document};
use mongodb::sync::Client;

use super::mabel::Mabel;
use super::real::RealSet;
use mabel_sim::ReplicaSet;

/// Where the test's mabel writes.
pub enum Target {
    Fake(ReplicaSet),
    Real(RealSet),
}

/// The environment variable that points the tests at a real set.
pub const TEST_URI: &str = "MABEL_TEST_URI";

/// A simulated set, which elects by itself on a 200 ms election timeout, for a test that
/// cannot run against a real one; `None`, after saying so, when `MABEL_TEST_URI` names a real
/// set. `test` is the test's name, `reason` why.
pub fn fake_only(test: &str, reason: &str) -> Option<ReplicaSet> {
    runs_here(test, reason).then(ReplicaSet::start)
}

/// Whether the test runs: no real set is named, or else it says why it is skipped.
fn runs_here(test: &str, reason: &str) -> bool {
    if std::env::var_os(TEST_URI).is_some() {
        println!("skipped: {test}: {reason}");
        return false;
    }
    true
}

impl Target {
    /// The real set `MABEL_TEST_URI` names, else a fresh fake.
    pub fn start() -> Target {
        match std::env::var(TEST_URI) {
            Ok(uri) => Target::Real(RealSet::connect(&uri)),
            Err(_) => Target::Fake(ReplicaSet::start()),
        }
    }

    pub fn uri(&self) -> String {
        match self {
            Target::Fake(set) => set.uri(),
            Target::Real(set) => set.uri().to_string(),
        }
    }

    /// The database this test's breaths go to: `mabel` in the fake, one of the test's own
    /// on a real set, so that tests never see each other's breaths.
    pub fn db(&self) -> &str {
        match self {
            Target::Fake(_) => "mabel",
            Target::Real(set) => set.db(),
        }
    }

    /// Starts `mabel <args> --db <db> --uri <uri>`.
    pub fn mabel(&self, args: &[&str]) -> Mabel {
        self.mabel_with("", args)
    }

    /// The same, with `uri_options` (`&option=value...`) added to the set's URI.
    pub fn mabel_with(&self, uri_options: &str, args: &[&str]) -> Mabel {
        let args = [args, &["--db", self.db()]].concat();
        Mabel::start(&format!("{}{uri_options}", self.uri()), &args)
    }

    /// `mabel audit --json` on `<db>.breaths`: its exit code and its report.
    pub fn audit(&self) -> (Option<i32>, serde_json::Value) {
        super::mabel::audit_in(&self.uri(), self.db())
    }

    /// The documents of `<db>.breaths`.
    pub fn breaths(&self) -> Vec<Document> {
        self.documents(self.db(), "breaths")
    }

    pub fn documents(&self, db: &str, coll: &str) -> Vec<Document> {
        match self {
            Target::Fake(set) => set.documents(db, coll),
            Target::Real(set) => set.documents(db, coll),
        }
    }

    /// The members' `host:port`, in order.
    pub fn hosts(&self) -> Vec<String> {
        match self {
            Target::Fake(set) => set.hosts(),
            Target::Real(set) => set.hosts(),
        }
    }

    /// Insert commands the members received, where the fake can count them; `None` on a real
    /// set.
    pub fn insert_count(&self) -> Option<u64> {
        match self {
            Target::Fake(set) => Some(set.insert_count()),
            Target::Real(_) => None,
        }
    }

    /// The member whose `hello` says it is the writable primary, asked of each in turn.
    pub fn primary(&self) -> Option<usize> {
        self.hosts().iter().position(|host| {
            let hello = admin(host)
                .database("admin")
                .run_command(doc! { "hello": 1 })
                .run();
            hello.is_ok_and(|h| h.get_bool("isWritablePrimary") == Ok(true))
        })
    }

    /// Waits (a watchdog, not a timing) for a writable primary and returns it.
    pub fn wait_for_primary(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(primary) = self.primary() {
                return primary;
            }
            assert!(Instant::now() < deadline, "no primary within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Like a crash: the member's process dies with its connections. Either set elects a new
    /// primary by itself: a real one in about 10 s, the simulated one in about 0.2 s.
    pub fn kill(&self, member: usize) {
        match self {
            Target::Fake(set) => set.kill(member),
            Target::Real(set) => set.compose.kill(member),
        }
    }

    /// Starts a killed member again.
    pub fn start_member(&self, member: usize) {
        match self {
            Target::Fake(set) => set.revive(member),
            Target::Real(set) => set.compose.start(member),
        }
    }

    /// The member accepts connections and reads requests but answers nothing.
    pub fn pause(&self, member: usize) {
        match self {
            Target::Fake(set) => set.hang(member),
            Target::Real(set) => set.compose.pause(member),
        }
    }

    pub fn unpause(&self, member: usize) {
        match self {
            Target::Fake(set) => set.unhang(member),
            Target::Real(set) => set.compose.unpause(member),
        }
    }

    /// Runs an admin command on `member` alone, from a client that gives `app_name` in its
    /// handshake, and returns the server's answer.
    pub fn run_command(
        &self,
        member: usize,
        command: Document,
        app_name: &str,
    ) -> mongodb::error::Result<Document> {
        let host = &self.hosts()[member];
        let uri = format!(
            "mongodb://{host}/?directConnection=true&serverSelectionTimeoutMS=5000&appName={app_name}"
        );
        let client = Client::with_uri_str(uri).expect("a direct client of one member");
        client.database("admin").run_command(command).run()
    }

    /// Sets a fail point on `member`; it is turned off when the guard drops.
    pub fn fail_point(&self, member: usize, fail_point: FailPoint) -> FailPointGuard {
        let host = self.hosts()[member].clone();
        let reply = command(&host, fail_point.command.clone());
        let count = times_entered(&reply);
        FailPointGuard {
            host,
            name: fail_point.name,
            count_before: count,
        }
    }

    /// Stops `member` fetching the oplog until the guard drops: `stopReplProducer`, as the
    /// server's jstests stop replication (`stopServerReplication` in write_concern_util.js).
    /// The fake's member stops copying too.
    pub fn stop_replication(&self, member: usize) -> FailPointGuard {
        self.fail_point(member, FailPoint::named("stopReplProducer", Mode::AlwaysOn))
    }

    /// Hands the primary over to `to` as a person would with admin commands: `to` is
    /// unfrozen, every other secondary frozen for 30 s, and the primary asked to step down
    /// for 30 s (with a handoff). Returns the old primary once `to` has won.
    pub fn step_down_to(&self, to: usize, limit: Duration) -> usize {
        let hosts = self.hosts();
        let old = self.wait_for_primary(limit);
        assert_ne!(old, to, "member {to} is the primary already");
        command(&hosts[to], doc! { "replSetFreeze": 0 });
        for (member, host) in hosts.iter().enumerate() {
            if member != to && member != old {
                command(host, doc! { "replSetFreeze": 30 });
            }
        }
        let step_down = doc! { "replSetStepDown": 30, "secondaryCatchUpPeriodSecs": 10 };
        command(&hosts[old], step_down);
        let deadline = Instant::now() + limit;
        while self.primary() != Some(to) {
            assert!(
                Instant::now() < deadline,
                "member {to} did not win within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        old
    }
}

/// A `configureFailPoint` command, built the way the driver's own test helper builds one
/// (mongo-rust-driver `src/test/util/fail_point.rs`).
pub struct FailPoint {
    name: String,
    command: Document,
}

/// How often a fail point fires.
pub enum Mode {
    AlwaysOn,
    Times(i32),
    /// Lets the first `n` pass, then fires every time.
    Skip(i32),
}

impl FailPoint {
    /// `failCommand` for the commands named.
    pub fn fail_command(commands: &[&str], mode: Mode) -> FailPoint {
        let mut fail_point = FailPoint::named("failCommand", mode);
        fail_point.set("failCommands", commands.to_vec());
        fail_point
    }

    /// Any fail point, such as `stopReplProducer`.
    pub fn named(name: &str, mode: Mode) -> FailPoint {
        let mode = match mode {
            Mode::AlwaysOn => Bson::from("alwaysOn"),
            Mode::Times(n) => Bson::from(doc! { "times": n }),
            Mode::Skip(n) => Bson::from(doc! { "skip": n }),
        };
        FailPoint {
            name: name.to_string(),
            command: doc! { "configureFailPoint": name, "mode": mode, "data": {} },
        }
    }

    /// The command fails with `code`, not run.
    pub fn error_code(mut self, code: i32) -> FailPoint {
        self.set("errorCode", code);
        self
    }

    /// The connection closes before the command runs: the client sees a network error.
    pub fn close_connection(mut self) -> FailPoint {
        self.set("closeConnection", true);
        self
    }

    /// The command waits `block` before anything else.
    pub fn block(mut self, block: Duration) -> FailPoint {
        self.set("blockConnection", true);
        self.set("blockTimeMS", block.as_millis() as i64);
        self
    }

    /// These labels replace the server's own (`[]` for none).
    pub fn error_labels(mut self, labels: &[&str]) -> FailPoint {
        self.set("errorLabels", labels.to_vec());
        self
    }

    /// The write happens, then the reply carries this error instead of waiting for the
    /// write concern.
    pub fn write_concern_error(mut self, error: Document) -> FailPoint {
        self.set("writeConcernError", error);
        self
    }

    /// Only connections whose handshake gave this application name.
    pub fn app_name(mut self, name: &str) -> FailPoint {
        self.set("appName", name);
        self
    }

    /// Any other field of the fail point's data.
    pub fn with(mut self, field: &str, value: impl Into<Bson>) -> FailPoint {
        self.set(field, value);
        self
    }

    fn set(&mut self, field: &str, value: impl Into<Bson>) {
        if let Ok(data) = self.command.get_document_mut("data") {
            data.insert(field, value.into());
        }
    }
}

/// Turns its fail point off on the same member when dropped.
#[must_use = "the fail point is turned off when the guard drops"]
pub struct FailPointGuard {
    host: String,
    name: String,
    count_before: i64,
}

impl FailPointGuard {
    /// How often the fail point fired since it was set: the `count` of turning it off.
    pub fn times_entered(&self) -> i64 {
        let off = doc! { "configureFailPoint": &self.name, "mode": "off" };
        times_entered(&command(&self.host, off)) - self.count_before
    }
}

impl Drop for FailPointGuard {
    fn drop(&mut self) {
        let off = doc! { "configureFailPoint": &self.name, "mode": "off" };
        // As the driver's guard does, a failure to turn it off is said, not raised.
        let done = admin(&self.host).database("admin").run_command(off).run();
        if let Err(e) = done {
            eprintln!(
                "failed disabling fail point {} on {}: {e}",
                self.name, self.host
            );
        }
    }
}

/// The `count` of a `configureFailPoint` reply, however the number is typed.
fn times_entered(reply: &Document) -> i64 {
    match reply.get("count") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(f)) => *f as i64,
        _ => panic!("configureFailPoint replied without a count: {reply}"),
    }
}

/// A client of one member alone, whatever its role.
fn admin(host: &str) -> Client {
    let uri = format!("mongodb://{host}/?directConnection=true&serverSelectionTimeoutMS=5000");
    Client::with_uri_str(uri).expect("a direct client of one member")
}

/// Runs an admin command on `host`; panics with the server's answer if it fails.
fn command(host: &str, command: Document) -> Document {
    let reply = admin(host)
        .database("admin")
        .run_command(command.clone())
        .run();
    reply.unwrap_or_else(|e| panic!("{command} on {host}: {e}"))
}
