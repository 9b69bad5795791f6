//! The state of the whole set behind one lock: each member's process (up, hung, its sockets),
//! its place in the set (role, term, what it knows of the others) and its data and oplog, and
//! the faults armed for the next write.
//!
//! One lock keeps every command atomic with respect to failover: a write is applied on a
//! member that is writable primary at that instant, or not at all. The set's own timers
//! (`clock`) take the same lock.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bson::oid::ObjectId;
use bson::Timestamp;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::cursor::Cursors;
use crate::events::{Event, Events};
use crate::failpoint::FailPoints;
use crate::heartbeat::Peer;
use crate::index_builds::Build;
use crate::oplog::Op;
use crate::replication::{Replica, RolledBack};
use crate::settings::Timers;

pub const SET_NAME: &str = "rs0";

pub struct Shared {
    /// What every member answers as `setName`.
    pub set_name: String,
    state: Mutex<State>,
    /// Signalled whenever anything a waiting thread may care about changes: a member killed,
    /// unhung, elected or stepped down, replication moving, a topology version bumped, the set
    /// shutting down. Hung requests, write concerns, awaitable `hello`s and the clock re-check.
    pub changed: Condvar,
    /// Every thread the set started, joined on drop.
    pub threads: Mutex<Vec<JoinHandle<()>>>,
    pub log: bool,
}

pub struct State {
    pub members: Vec<Member>,
    pub timers: Timers,
    /// The set's random choices, seeded by `timers.seed`.
    pub rng: StdRng,
    pub rolled_back: RolledBack,
    /// Two-phase index builds, as recorded in `config.system.indexBuilds`.
    pub index_builds: Vec<Build>,
    pub faults: Faults,
    pub events: Events,
    pub insert_count: u64,
    /// How much later than it applies an insert the primary answers it: see
    /// `ReplicaSet::set_write_latency`.
    pub write_latency: Duration,
    pub command_counts: HashMap<String, u64>,
    pub shutting_down: bool,
    last_op: Timestamp,
    next_connection_id: i32,
}

/// What a member is to the set (`MemberState` in the server).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    /// Just restarted: its config is not loaded yet, and `hello` says so.
    Startup,
    Startup2,
    Recovering,
    Rollback,
    Secondary,
    Primary(Phase),
}

/// Where a primary is between winning its election and taking writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Phase {
    /// Fetching what members it heard from hold beyond its own newest entry.
    CatchUp,
    /// Applying what it fetched; writes are still refused.
    Drain,
    Writable,
}

impl Role {
    /// The name `replSetGetStatus` gives the state.
    pub fn name(self) -> &'static str {
        match self {
            Role::Startup => "STARTUP",
            Role::Startup2 => "STARTUP2",
            Role::Recovering => "RECOVERING",
            Role::Rollback => "ROLLBACK",
            Role::Secondary => "SECONDARY",
            Role::Primary(_) => "PRIMARY",
        }
    }

    pub fn is_primary(self) -> bool {
        matches!(self, Role::Primary(_))
    }

    /// Reads with secondaryOk are served: a SECONDARY, or a PRIMARY in any phase.
    pub fn serves_reads(self) -> bool {
        matches!(self, Role::Secondary | Role::Primary(_))
    }
}

/// `topologyVersion`: a new `process_id` each time the member starts, and a counter bumped
/// on each change of its role, so that an awaitable `hello` knows when to answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TopologyVersion {
    pub process_id: ObjectId,
    pub counter: i64,
}

impl TopologyVersion {
    pub fn new() -> TopologyVersion {
        TopologyVersion {
            process_id: ObjectId::new(),
            counter: 0,
        }
    }
}

pub struct Member {
    pub host: String,
    pub port: u16,
    pub up: bool,
    pub hung: bool,
    /// Bumped by every kill, so threads of a previous life know to exit.
    pub incarnation: u64,
    /// Clones of every open socket, to shut them down on kill.
    pub sockets: HashMap<u64, TcpStream>,
    pub listener: Option<Listener>,
    pub cursors: Cursors,
    pub replica: Replica,
    /// `configureFailPoint` state; a restart clears it.
    pub fail_points: FailPoints,
    /// `internalInsertMaxBatchSize`: an insert is applied this many documents at a time.
    pub insert_batch_size: usize,
    /// Set by `replSetFreeze` and `replSetStepDown`: no standing for election until then.
    pub frozen_until: Option<Instant>,
    pub role: Role,
    /// When it took its role: the phases of a restart and of a primary-elect are timed
    /// from here.
    pub role_since: Instant,
    /// Its term, as on disk; votes and heartbeats carry it.
    pub term: i64,
    /// The newest term it voted in (`local.replset.election`).
    pub voted_in: i64,
    pub topology: TopologyVersion,
    /// What it knows of each member (its own entry unused), from heartbeats.
    pub peers: Vec<Peer>,
    /// When its election timer fires, while it is an electable secondary.
    pub election_at: Option<Instant>,
    /// Bumped each time it leaves PRIMARY, so that operations it was running when it did
    /// (held inserts, index builds, write-concern waits) know they were interrupted.
    pub step_downs: u64,
    /// A `replSetStepDown` is waiting for a secondary to catch up: the member is still
    /// PRIMARY but takes no writes, and `hello` says `isWritablePrimary: false`,
    /// `secondary: false` (`ReplicationCoordinatorImpl::stepDown`: `autoGetRstlEnterStepDown`,
    /// `prepareForStepDownAttempt`; `jstests/replsets/stepdown_long_wait_time.js`). Cleared
    /// when its role changes, or when the attempt fails and it takes writes again.
    pub stepping_down: bool,
}

pub struct Listener {
    pub stop: Arc<AtomicBool>,
    pub thread: JoinHandle<()>,
}

/// One-shot faults for the next insert a primary accepts.
#[derive(Default)]
pub struct Faults {
    pub drop_next_reply: bool,
    pub crash_after_next_write: bool,
    pub fail_next_write: Option<i32>,
}

/// `internalInsertMaxBatchSize`'s default (`src/mongo/db/ops/write_ops_exec.cpp`).
pub const INSERT_BATCH_SIZE: usize = 64;

impl Shared {
    pub fn new(ports: &[u16], set_name: &str, timers: Timers) -> Shared {
        let now = Instant::now();
        let count = ports.len();
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| Member {
                host: format!("127.0.0.1:{port}"),
                port,
                up: true,
                hung: false,
                incarnation: 0,
                sockets: HashMap::new(),
                listener: None,
                cursors: Cursors::default(),
                replica: Replica::default(),
                fail_points: FailPoints::default(),
                insert_batch_size: INSERT_BATCH_SIZE,
                frozen_until: None,
                role: if i == 0 {
                    Role::Primary(Phase::Writable)
                } else {
                    Role::Secondary
                },
                role_since: now,
                term: 1,
                voted_in: 1,
                topology: TopologyVersion::new(),
                peers: (0..count).map(|_| Peer::heard_now(now)).collect(),
                election_at: None,
                step_downs: 0,
                stepping_down: false,
            })
            .collect();
        let rng = StdRng::seed_from_u64(timers.seed);
        let mut state = State {
            members,
            timers,
            rng,
            rolled_back: RolledBack::default(),
            index_builds: Vec::new(),
            faults: Faults::default(),
            events: Events::default(),
            insert_count: 0,
            write_latency: Duration::ZERO,
            command_counts: HashMap::new(),
            shutting_down: false,
            last_op: Timestamp {
                time: unix_seconds(),
                increment: 1,
            },
            next_connection_id: 1,
        };
        // As after `replSetInitiate` and the first election: every member holds both entries,
        // committed.
        for _ in ["initiating set", "new primary"] {
            state.log(0, 1, Op::Noop);
        }
        state.replicate(now);
        state.start_heartbeats(now);
        for member in 1..count {
            state.arm_election_timer(member, now);
        }
        Shared {
            set_name: set_name.to_string(),
            state: Mutex::new(state),
            changed: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            log: std::env::var("FAKE_RS_LOG").is_ok_and(|v| v == "1"),
        }
    }

    /// A panic on one connection thread must not wedge the whole set.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn wait<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        match self.changed.wait_timeout(guard, timeout) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    pub fn track(&self, thread: JoinHandle<()>) {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }

    /// Lets replication and the set's timers catch up with the clock, waking whoever waits
    /// if anything moved.
    pub fn settle(&self, state: &mut State) {
        if state.advance(Instant::now()) {
            self.changed.notify_all();
        }
    }
}

impl State {
    pub fn host(&self, member: usize) -> &str {
        &self.members[member].host
    }

    pub fn hosts(&self) -> Vec<String> {
        self.members.iter().map(|m| m.host.clone()).collect()
    }

    pub fn next_connection_id(&mut self) -> i32 {
        self.next_connection_id += 1;
        self.next_connection_id
    }

    /// The optime of the newest write; also the cluster time every reply gossips.
    pub fn last_op(&self) -> Timestamp {
        self.last_op
    }

    /// Advances the cluster clock for a write.
    pub fn tick(&mut self) -> Timestamp {
        let now = unix_seconds();
        self.last_op = if now > self.last_op.time {
            Timestamp {
                time: now,
                increment: 1,
            }
        } else {
            Timestamp {
                time: self.last_op.time,
                increment: self.last_op.increment + 1,
            }
        };
        self.last_op
    }

    /// The term `member` takes writes in, if it is a writable primary: the newest one, or
    /// an earlier one when it was cut off before another member was elected and has not
    /// heard of it yet.
    pub fn writable_term(&self, member: usize) -> Option<i64> {
        self.leader_term(member)
            .filter(|_| !self.members[member].stepping_down)
    }

    /// The term `member` is writable primary of, counting one whose `replSetStepDown` is
    /// still waiting for a secondary: it is still leader and still moves its commit point
    /// (`TopologyCoordinator`'s `kAttemptingStepDown` is a leader mode).
    pub fn leader_term(&self, member: usize) -> Option<i64> {
        let m = &self.members[member];
        (m.role == Role::Primary(Phase::Writable)).then_some(m.term)
    }

    /// The newest term any member has.
    pub fn term(&self) -> i64 {
        self.members.iter().map(|m| m.term).max().unwrap_or(0)
    }

    /// The primary of the newest term, writable or not yet. A member cut off before that
    /// election may still act as primary of an earlier one.
    pub fn primary(&self) -> Option<usize> {
        (0..self.members.len())
            .filter(|&m| self.members[m].up && self.members[m].role.is_primary())
            .max_by_key(|&m| self.members[m].term)
    }

    /// The writable primary of the newest term, if there is one.
    pub fn writable_primary(&self) -> Option<usize> {
        self.primary()
            .filter(|&p| self.writable_term(p) == Some(self.term()))
    }

    /// Moves `member` to `role` and says so: its topology version changes, and whoever waits
    /// for that (an awaitable `hello`) is told when the lock is let go. Its election timer is
    /// cancelled, and set again if it is now a secondary (`_updateMemberStateFromTopologyCoordinator`
    /// reschedules it on every transition).
    pub fn set_role(&mut self, member: usize, role: Role, now: Instant) {
        let m = &mut self.members[member];
        if m.role == role {
            return;
        }
        m.role = role;
        m.role_since = now;
        m.stepping_down = false;
        m.topology.counter += 1;
        let term = m.term;
        self.events.push(Event::role(member, role, term));
        self.arm_election_timer(member, now);
    }

    /// A random duration in `0..=most`, from the set's seeded generator.
    pub fn jitter(&mut self, most: Duration) -> Duration {
        use rand::Rng;
        most.mul_f64(self.rng.gen::<f64>())
    }

    /// A seeded coin.
    pub fn coin(&mut self) -> bool {
        use rand::Rng;
        self.rng.gen()
    }
}

pub fn unix_seconds() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}
