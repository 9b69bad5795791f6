//! The state of the whole fake set behind one lock: who is up, hung or primary, the current
//! term, each member's data and oplog, and the faults armed for the next write.
//!
//! One lock keeps every command atomic with respect to failover: a write is applied on the
//! member that is primary at that instant or not at all.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bson::Timestamp;

use crate::cursor::Cursors;
use crate::failpoint::FailPoints;
use crate::replication::{Replica, RolledBack};

pub const SET_NAME: &str = "rs0";

pub struct Shared {
    /// What every member answers as `setName`.
    pub set_name: String,
    state: Mutex<State>,
    /// Signalled whenever a member is unhung, killed, elected or steps down, replication
    /// moves, or the set shuts down, so threads parked on a hung member, a write concern or
    /// a delayed election re-check.
    pub changed: Condvar,
    /// Every thread the set started, joined on drop.
    pub threads: Mutex<Vec<JoinHandle<()>>>,
    pub log: bool,
}

pub struct State {
    pub members: Vec<Member>,
    /// The primary of the newest term. A member cut off before that election may still act
    /// as primary of an earlier one (`Replica::stale_term`).
    pub primary: Option<usize>,
    /// The newest election term; the primary's electionId is derived from it.
    pub term: i64,
    pub rolled_back: RolledBack,
    pub faults: Faults,
    pub insert_count: u64,
    /// How much later than it applies an insert the primary answers it: see
    /// `FakeReplicaSet::set_write_latency`.
    pub write_latency: Duration,
    pub command_counts: HashMap<String, u64>,
    pub shutting_down: bool,
    last_op: Timestamp,
    next_connection_id: i32,
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
    /// Set by `replSetFreeze` and `replSetStepDown`: no standing for election until then.
    pub frozen_until: Option<Instant>,
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

impl Shared {
    pub fn new(ports: &[u16], set_name: &str) -> Shared {
        let members = ports
            .iter()
            .map(|&port| Member {
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
                frozen_until: None,
            })
            .collect();
        Shared {
            set_name: set_name.to_string(),
            state: Mutex::new(State {
                members,
                primary: Some(0),
                term: 1,
                rolled_back: RolledBack::default(),
                faults: Faults::default(),
                insert_count: 0,
                write_latency: Duration::ZERO,
                command_counts: HashMap::new(),
                shutting_down: false,
                last_op: Timestamp {
                    time: unix_seconds(),
                    increment: 1,
                },
                next_connection_id: 1,
            }),
            changed: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            log: std::env::var("FAKE_RS_LOG").is_ok_and(|v| v == "1"),
        }
    }

    /// A panic on one connection thread must not wedge the whole set for the test.
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

    /// Lets replication catch up with the clock (see `replication`), waking whoever waits
    /// on it if anything moved.
    pub fn settle(&self, state: &mut State) {
        if state.replicate() {
            self.changed.notify_all();
        }
    }

    /// Makes `member` primary in a new term if it can win (see `election`); returns whether
    /// it did.
    pub fn elect(&self, member: usize) -> bool {
        let elected = self.lock().elect(member);
        self.changed.notify_all();
        elected
    }

    pub fn step_down(&self) {
        self.lock().primary = None;
        self.changed.notify_all();
    }

    /// Elects `member` after `delay` from a background thread, unless the set is dropped first.
    pub fn elect_after(self: &Arc<Self>, member: usize, delay: Duration) {
        let shared = Arc::clone(self);
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + delay;
            let mut state = shared.lock();
            loop {
                if state.shutting_down {
                    return;
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                state = shared.wait(state, deadline - now);
            }
            drop(state);
            if !shared.elect(member) {
                eprintln!("fake replica set: member {member} cannot win, elect_after did nothing");
            }
        });
        self.track(thread);
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
}

fn unix_seconds() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}
