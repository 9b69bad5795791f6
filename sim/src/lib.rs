//! A simulated three-member MongoDB replica set: not MongoDB, but members that the real
//! `mongodb` driver talks to over TCP on 127.0.0.1 and that answer, time and change state as
//! a 7.0 replica set does, so that mabel can be tested, and watched, without a mongod.
//!
//! Each member speaks OP_MSG on its own port and answers as a 7.0 member would: `hello`,
//! awaitable and streamed, with its role, the primary it knows of, `electionId` and
//! `topologyVersion` (`hello`); `insert` with unique-index errors, retryable-write history
//! and write concern (`primary`, `write_concern`); `find`/`getMore` with read concern;
//! `createIndexes` as a two-phase build (`index_builds`); `create` and `listCollections`, with
//! capped and time-series collections and views (`collections`); and the test commands
//! `configureFailPoint` (`failpoint`, `fail_command`), `replSetStepDown` and `replSetFreeze`
//! (`stepdown`).
//!
//! The set runs by itself on mongod's timers (`settings`, `clock`): members exchange
//! heartbeats (`heartbeat`), a secondary that hears from no primary for the election timeout
//! stands and wins by votes, term and how up to date it is, and a new primary catches up and
//! drains before it takes writes (`election`); a primary that hears from no majority for the
//! election timeout steps down, and a step-down interrupts the writes in progress. Each member
//! has its own oplog and data and replicates as mongod does (`replication`): the commit point
//! follows the majority, a primary cut off goes on taking writes until it steps down, and a
//! member that rejoins with writes the new primary never saw rolls them back. A restarted
//! member passes through STARTUP, STARTUP2 and RECOVERING before it is a SECONDARY again.
//!
//! Tests steer it as a person would a real set (kill, revive, hang, cut off, slow down,
//! `replSetStepDown`, fail points), or, on a set made `scripted`, elect and step down at
//! exact moments themselves. What happens is kept as events (`events`), which the
//! `mabel-sim` program (`src/bin/mabel-sim/`) prints for a person running mabel against it.
//!
//! Not modelled: authentication, TLS, compression, transactions, any command beyond those
//! above (others get CommandNotFound, where a real server would not), priority and catch-up
//! takeovers (all members have priority 1, and catch-up is instant), initial sync, tag sets,
//! arbiters, reconfiguration, an oplog that runs out, partitions other than one member cut
//! off from both others, the `NoWritesPerformed` label, time-series buckets (measurements are
//! kept as inserted) and view pipelines, the overload labels of 8.2 and later (a 7.0
//! server never sends them), sync sources (so not the faster heartbeat of a member without
//! one), and a step-down held up by an insert parked with its lock by
//! `hangWithLockDuringBatchInsert` without `shouldCheckForInterrupt`. How long a restart and an index build take are guesses from the
//! server's code, not measurements. Set `FAKE_RS_LOG=1` to print every command each member
//! receives to stderr.

mod clock;
mod cluster;
mod collections;
mod commands;
mod cursor;
mod election;
mod errors;
mod events;
mod fail_command;
mod failpoint;
mod heartbeat;
mod hello;
mod index_builds;
mod indexes;
mod insert;
mod member;
mod oplog;
mod primary;
mod query;
mod replication;
mod settings;
mod stepdown;
mod store;
mod wire;
mod write_concern;

pub use cluster::{Phase, Role};
pub use events::{Event, Kind};
pub use settings::Timers;
pub use stepdown::HandOver;

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Document, RawDocumentBuf};

use cluster::{Shared, State, SET_NAME};
use election::StepDown;

/// Three members of a set whose name no other simulated set shares. Dropping it closes every
/// port and joins every thread.
pub struct ReplicaSet {
    shared: Arc<Shared>,
    hosts: Vec<String>,
}

/// One member as `status` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberStatus {
    pub host: String,
    /// `None` when the process is not running.
    pub role: Option<Role>,
    pub hung: bool,
    pub isolated: bool,
    pub term: i64,
    /// How long after the primary wrote an entry it copies it (`set_lag`).
    pub lag: Duration,
    /// The number of entries in its oplog, and the time of the newest.
    pub entries: usize,
    pub last_write: Option<bson::Timestamp>,
}

impl ReplicaSet {
    /// Starts three members on ephemeral ports, member 0 primary and the others secondaries,
    /// that elect and step down by themselves on `Timers::fast`, a 200 ms election timeout.
    ///
    /// Every set listens on 127.0.0.1, and the port of a killed member can be taken at once
    /// by another set, in this process or another one. A driver that reconnects there and
    /// finds a primary of its set name follows it: that primary's host list replaces the
    /// set's, and writes land in the other set. So each set gets a name of its own.
    pub fn start() -> ReplicaSet {
        ReplicaSet::with_timers(Timers::fast())
    }

    /// The same, with no election or step-down but those a test asks for (`elect`,
    /// `step_down`, `notice_isolation`, `replSetStepDown`): for tests that need one at an
    /// exact moment.
    pub fn scripted() -> ReplicaSet {
        ReplicaSet::with_timers(Timers::scripted())
    }

    /// The same, on these timers.
    pub fn with_timers(timers: Timers) -> ReplicaSet {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let name = format!("{SET_NAME}-{}-{n}", std::process::id());
        ReplicaSet::start_named(&name, timers)
    }

    /// On ephemeral ports, with the set name of the caller's choosing.
    pub fn start_named(set_name: &str, timers: Timers) -> ReplicaSet {
        ReplicaSet::listen(&[0, 0, 0], set_name, timers).expect("bind ephemeral ports")
    }

    /// On the given ports of 127.0.0.1 (0 for any), as the simulator binary does; fails if
    /// one cannot be listened on, with an error that names it.
    pub fn listen(ports: &[u16], set_name: &str, timers: Timers) -> io::Result<ReplicaSet> {
        let bind = |port: u16| {
            TcpListener::bind(("127.0.0.1", port))
                .map_err(|e| io::Error::new(e.kind(), format!("127.0.0.1:{port}: {e}")))
        };
        let listeners = ports
            .iter()
            .map(|&port| bind(port))
            .collect::<io::Result<Vec<TcpListener>>>()?;
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<io::Result<Vec<u16>>>()?;
        let shared = Arc::new(Shared::new(&ports, set_name, timers));
        for (member, listener) in listeners.into_iter().enumerate() {
            member::start(&shared, member, listener);
        }
        clock::start(&shared);
        let hosts = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        Ok(ReplicaSet { shared, hosts })
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

    pub fn timers(&self) -> Timers {
        self.shared.lock().timers.clone()
    }

    /// The primary of the newest term, writable or about to be. A member cut off before
    /// that election may still act as primary of an earlier one.
    pub fn primary(&self) -> Option<usize> {
        self.state().primary()
    }

    /// The writable primary of the newest term, if there is one.
    pub fn writable_primary(&self) -> Option<usize> {
        self.state().writable_primary()
    }

    /// Waits (a watchdog, not a timing) until the set has a writable primary, and returns it.
    pub fn wait_for_primary(&self, limit: Duration) -> usize {
        self.wait_until(limit, "a writable primary", |set| set.writable_primary())
    }

    /// Waits (a watchdog) until `member` is `role`.
    pub fn wait_for_role(&self, member: usize, role: Role, limit: Duration) {
        let what = format!("member {member} to be {}", role.name());
        self.wait_until(limit, &what, |set| {
            (set.state().members[member].role == role).then_some(())
        });
    }

    fn wait_until<T>(&self, limit: Duration, what: &str, done: impl Fn(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(done) = done(self) {
                return done;
            }
            assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Like a crashed process: the port and every connection close, nothing answers. Its
    /// oplog and data survive, and so do its term and its vote.
    pub fn kill(&self, member: usize) {
        self.settle();
        member::kill(&self.shared, member);
        self.control(member, "was killed");
    }

    /// Listens again on the same port with its own data, in STARTUP2, then RECOVERING: it
    /// rolls back what the others never saw if need be, catches up, and is a SECONDARY again.
    pub fn revive(&self, member: usize) {
        if self.state().members[member].up {
            return;
        }
        self.control(member, "was started again");
        member::revive(&self.shared, member);
        self.settle();
    }

    /// The primary steps down now, as when told to, and is not frozen: connections stay
    /// open, as on 4.2+. On a scripted set there is no primary until `elect`. For the
    /// graceful step-down an administrator asks for, see `hand_over`.
    pub fn step_down(&self) {
        let mut state = self.shared.lock();
        if let Some(primary) = state.primary() {
            state.step_down(primary, StepDown::Told, Instant::now());
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// As `{replSetStepDown: step_down, secondaryCatchUpPeriodSecs: catch_up}` sent to the
    /// writable primary, what `rs.stepDown()` sends: waits up to `catch_up` for a secondary
    /// that holds the primary's newest write, steps the primary down, keeps it from standing
    /// for `step_down`, and hands over to that secondary, which stands at once. Returns the
    /// member that stepped down.
    pub fn hand_over(&self, step_down: Duration, catch_up: Duration) -> Result<usize, HandOver> {
        let state = self.state();
        let primary = state.writable_primary().ok_or(HandOver::NotPrimary)?;
        let periods = (step_down, catch_up);
        let (state, handed) = stepdown::hand_over(&self.shared, state, primary, periods, false);
        drop(state);
        handed.map(|()| primary)
    }

    /// `member` wins an election now: it catches up from the members it reaches, becomes
    /// primary in a higher term (so a larger electionId), writes its "new primary" no-op and
    /// takes writes, all at once. The old primary steps down if it reaches the winner; cut
    /// off, it goes on acting as primary of its term until it notices or hears of the new
    /// one. Panics if the member cannot win: down, hung, or without the votes of a majority
    /// (itself and the members it reaches whose newest entry is not newer than its own).
    pub fn elect(&self, member: usize) {
        assert!(
            self.shared.lock().elect(member),
            "member {member} cannot win an election"
        );
        self.shared.changed.notify_all();
    }

    /// Whether `elect(member)` would succeed now.
    pub fn can_elect(&self, member: usize) -> bool {
        self.state().can_win(member)
    }

    /// Elects `member` from a background thread after `delay`, while the test carries on.
    /// Nothing happens if the set is dropped first or the member cannot win by then.
    pub fn elect_after(&self, member: usize, delay: Duration) {
        let shared = Arc::clone(&self.shared);
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + delay;
            let mut state = shared.lock();
            while !state.shutting_down && Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                state = shared.wait(state, left);
            }
            if state.shutting_down {
                return;
            }
            if !state.elect(member) {
                eprintln!("simulated set: member {member} cannot win, elect_after did nothing");
            }
            drop(state);
            shared.changed.notify_all();
        });
        self.shared.track(thread);
    }

    /// Stops heartbeats and replication between `member` and the others, while clients still
    /// reach it: a network partition with the member alone on its side, where packets are
    /// dropped. A primary cut off goes on taking writes (those waiting for a majority wait)
    /// until it has heard from no one for an election timeout and steps down; the others
    /// elect one of their own meanwhile.
    pub fn isolate(&self, member: usize) {
        self.settle();
        self.shared.lock().members[member].replica.isolated = true;
        self.control(member, "was cut off from the others");
    }

    /// A member cut off notices at once that it reaches no majority, as its liveness timeout
    /// would after an election timeout: if it acts as primary it steps down. Panics if it
    /// reaches a majority.
    pub fn notice_isolation(&self, member: usize) {
        let mut state = self.shared.lock();
        let reached = (0..state.members.len())
            .filter(|&m| state.linked(member, m))
            .count();
        assert!(reached == 0, "member {member} is not cut off");
        state.step_down(member, StepDown::CannotSeeMajority, Instant::now());
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Ends every partition, and the members exchange heartbeats at once: a member that acted
    /// as primary of an earlier term hears of the newer one and steps down; a member that
    /// holds writes the primary's history does not rolls them back (`rolled_back` keeps
    /// them); then all catch up.
    pub fn heal(&self) {
        let cut_off: Vec<usize> = {
            let state = self.shared.lock();
            (0..state.members.len())
                .filter(|&m| state.members[m].replica.isolated)
                .collect()
        };
        self.reconnect(&cut_off);
    }

    /// Ends the partition of `member` alone, as `heal` does; nothing if it is not cut off.
    pub fn heal_member(&self, member: usize) {
        if self.shared.lock().members[member].replica.isolated {
            self.reconnect(&[member]);
        }
    }

    fn reconnect(&self, cut_off: &[usize]) {
        let mut state = self.shared.lock();
        let now = Instant::now();
        for &member in cut_off {
            let replica = &mut state.members[member].replica;
            replica.isolated = false;
            replica.catching_up = Some(0);
        }
        for member in 0..state.members.len() {
            state.restart_heartbeats(member, now);
        }
        drop(state);
        for &member in cut_off {
            self.control(member, "can reach the others again");
        }
        self.settle();
    }

    /// `member` copies each entry `lag` after the primary wrote it (none by default). A
    /// primary-elect catches up regardless, before it takes writes.
    pub fn set_lag(&self, member: usize, lag: Duration) {
        self.shared.lock().members[member].replica.lag = lag;
        self.settle();
    }

    /// The documents of `db.coll` that members rolled back, in the order they left.
    pub fn rolled_back(&self, db: &str, coll: &str) -> Vec<Document> {
        let state = self.shared.lock();
        let docs = state.rolled_back.get(&format!("{db}.{coll}"));
        docs.map(|docs| to_documents(docs)).unwrap_or_default()
    }

    /// The member keeps accepting connections and reading requests but answers nothing,
    /// `hello` and heartbeats included, and runs none of its timers, until `unhang` or
    /// `kill`: a stopped process (`docker pause`, SIGSTOP).
    pub fn hang(&self, member: usize) {
        self.settle();
        self.shared.lock().members[member].hung = true;
        self.control(member, "hangs");
    }

    /// Requests held by `hang` are then answered, late, on whatever connections survive,
    /// and the member's overdue timers fire.
    pub fn unhang(&self, member: usize) {
        let mut state = self.shared.lock();
        let m = &mut state.members[member];
        m.hung = false;
        m.replica.catching_up = Some(0);
        drop(state);
        self.control(member, "answers again");
        self.settle();
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
    /// the server shapes it: 121 and 11000 as a write error in an `ok: 1` reply, after the
    /// write concern was waited for as for any write, anything else as a command error,
    /// labelled `RetryableWriteError` when the code is retryable and the command carried a
    /// `txnNumber`.
    pub fn fail_next_write(&self, code: i32) {
        self.shared.lock().faults.fail_next_write = Some(code);
    }

    /// An extra unique index `<field>_1` on a top-level field, built by the primary and
    /// replicated. Panics if there is no writable primary, or if its documents already break
    /// the index, as the server's index build would fail.
    pub fn add_unique_index(&self, db: &str, coll: &str, field: &str) {
        let ns = format!("{db}.{coll}");
        let mut state = self.shared.lock();
        let (primary, term) = writable(&state, "add_unique_index");
        let key = [(field.to_string(), 1)];
        if let Err(dup) = state.create_index(primary, term, &ns, &key, true) {
            panic!("cannot build unique index: {}", dup.message());
        }
        self.shared.settle(&mut state);
    }

    /// Seeds a document without the wire, as if inserted through the primary (and
    /// replicated as any write): `_id` is generated when missing and moved first. Panics if
    /// there is no writable primary, or with the server's E11000 message if a unique index
    /// refuses it.
    pub fn insert_direct(&self, db: &str, coll: &str, doc: Document) {
        let ns = format!("{db}.{coll}");
        let mut state = self.shared.lock();
        let (primary, term) = writable(&state, "insert_direct");
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
        let state = self.state();
        let member = state.newest_member();
        to_documents(&state.replica(member).read(&format!("{db}.{coll}"), false))
    }

    /// The documents `member` holds ("local"), committed or not.
    pub fn documents_on(&self, member: usize, db: &str, coll: &str) -> Vec<Document> {
        let state = self.state();
        to_documents(&state.replica(member).read(&format!("{db}.{coll}"), false))
    }

    /// The majority-committed documents, which no failover can roll back: what a read with
    /// read concern "majority" sees on the member that knows the newest commit point.
    pub fn committed(&self, db: &str, coll: &str) -> Vec<Document> {
        let state = self.state();
        to_documents(&state.committed_documents(&format!("{db}.{coll}")))
    }

    /// Insert commands received by all members, answered or not, retries and refusals
    /// included: the way to assert how many attempts the driver made.
    pub fn insert_count(&self) -> u64 {
        self.shared.lock().insert_count
    }

    /// How many commands named `name` all members received (`"getMore"`, `"hello"`, ...).
    pub fn command_count(&self, name: &str) -> u64 {
        let state = self.shared.lock();
        state.command_counts.get(name).copied().unwrap_or(0)
    }

    /// Everything that has happened to the set so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.shared.lock().events.all().to_vec()
    }

    /// Every event from now on, as it happens.
    pub fn subscribe(&self) -> Receiver<Event> {
        let (send, receive) = std::sync::mpsc::channel();
        self.shared.lock().events.subscribe(send);
        receive
    }

    /// Each member's state now.
    pub fn status(&self) -> Vec<MemberStatus> {
        let state = self.state();
        state
            .members
            .iter()
            .map(|m| MemberStatus {
                host: m.host.clone(),
                role: m.up.then_some(m.role),
                hung: m.hung,
                isolated: m.replica.isolated,
                term: m.term,
                lag: m.replica.lag,
                entries: m.replica.oplog.len(),
                last_write: m.replica.last().map(|o| o.ts),
            })
            .collect()
    }

    /// The state, brought up to date with the clock.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.shared.lock();
        self.shared.settle(&mut state);
        state
    }

    /// Brings the set up to now. A control that changes a member calls it first, so that
    /// what was due before it (a heartbeat that the clock thread of a busy machine has not
    /// fired yet) happens to the set as it was, not as the control leaves it.
    fn settle(&self) {
        let mut state = self.shared.lock();
        self.shared.settle(&mut state);
    }

    /// Records what a control did, and lets the set react at once.
    fn control(&self, member: usize, what: &'static str) {
        let mut state = self.shared.lock();
        state.events.push(Event::new(member, Kind::Control(what)));
        self.shared.settle(&mut state);
        drop(state);
        self.shared.changed.notify_all();
    }
}

impl Drop for ReplicaSet {
    fn drop(&mut self) {
        member::shutdown(&self.shared);
    }
}

/// The writable primary of the newest term and that term, for a control that writes.
fn writable(state: &State, control: &str) -> (usize, i64) {
    let term = state.term();
    let primary = state
        .primary()
        .filter(|&p| state.writable_term(p) == Some(term));
    (
        primary.unwrap_or_else(|| panic!("{control} needs a writable primary")),
        term,
    )
}

fn to_documents(docs: &[Arc<RawDocumentBuf>]) -> Vec<Document> {
    docs.iter()
        .map(|doc| doc.to_document().expect("stored documents are valid BSON"))
        .collect()
}
