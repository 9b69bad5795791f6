//! How writes travel between members, and when they count as committed.
//!
//! Each member holds its own oplog and the data built from it. A secondary copies from a
//! member it can reach whose newest entry is newer than its own (the oplog fetcher's sync
//! source), as soon as the primary wrote an entry plus the lag a test set. If the source's
//! history does not contain its own newest entry it has diverged: it rolls back to the
//! common point first, and the documents it drops are kept for tests to compare with what a
//! client was told (`src/mongo/db/repl/README.md`, "Oplog Fetching", "Rollback: Recover To
//! A Timestamp").
//!
//! The commit point is the newest entry of the primary's own term that a majority (2 of 3)
//! holds, with everything before it; a secondary learns it from the members it reaches,
//! and only takes it if it is on its own history or in the term of its own newest entry
//! (README "Commit Point Propagation"; `topology_coordinator.cpp`, the majority predicate).
//! A member counts as holding an entry the moment it copies it: the journal is instant, so
//! `j: true` changes nothing and lastDurable is lastApplied.
//!
//! A member that finds its history diverged enters ROLLBACK: its data is rolled back at once
//! (what it drops is kept for tests) and it copies nothing until its rollback is over
//! (`clock`).
//!
//! `replicate` runs on the set's clock and before every command and control, and does what
//! the elapsed time allows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{RawDocumentBuf, Timestamp};

use crate::cluster::{Phase, Role, State};
use crate::events::{Event, Kind};
use crate::oplog::{common_point, Entry, Op, OpTime};
use crate::store::Store;

/// Votes to win an election, and members to hold an entry to commit it, in a set of three
/// (`election` counts votes with it too).
pub const MAJORITY: usize = 2;

/// One member's copy of the set's data and what it knows of replication.
#[derive(Default)]
pub struct Replica {
    pub oplog: Vec<Arc<Entry>>,
    pub store: Store,
    /// How many entries of `oplog` this member knows to be majority committed.
    pub committed: usize,
    /// How long after the primary wrote an entry this member copies it.
    pub lag: Duration,
    /// Cut off from the other members; clients still reach it.
    pub isolated: bool,
    /// Back from being down, hung or cut off and not yet holding all the primary holds: the
    /// writes copied since. Only for the `CaughtUp` event; replication ignores it.
    pub catching_up: Option<usize>,
}

/// Documents rolled back, by namespace, in the order they left.
pub type RolledBack = HashMap<String, Vec<Arc<RawDocumentBuf>>>;

impl Replica {
    pub fn last(&self) -> Option<OpTime> {
        self.oplog.last().map(|e| e.optime)
    }

    /// Whether this member holds the entry at `index`: with the same OpTime there, it holds
    /// the same history up to it.
    pub fn holds(&self, index: usize, optime: OpTime) -> bool {
        self.oplog.get(index).is_some_and(|e| e.optime == optime)
    }

    pub fn commit_point(&self) -> Option<OpTime> {
        self.committed.checked_sub(1).map(|i| self.oplog[i].optime)
    }

    pub fn append(&mut self, entry: Arc<Entry>) {
        self.store.apply(&entry);
        self.oplog.push(entry);
    }

    /// What a read sees: with read concern "majority" the data at the commit point, which
    /// no failover can roll back; otherwise ("local") all this member holds.
    pub fn read(&self, ns: &str, majority: bool) -> Vec<Arc<RawDocumentBuf>> {
        let upto = majority.then(|| {
            self.commit_point().map_or(
                Timestamp {
                    time: 0,
                    increment: 0,
                },
                |o| o.ts,
            )
        });
        self.store.snapshot(ns, upto)
    }
}

impl State {
    pub fn replica(&self, member: usize) -> &Replica {
        &self.members[member].replica
    }

    pub fn replica_mut(&mut self, member: usize) -> &mut Replica {
        &mut self.members[member].replica
    }

    /// Whether `a` and `b` exchange heartbeats and oplog entries: both up, neither hung
    /// (a hung process answers no heartbeat) nor cut off.
    pub fn linked(&self, a: usize, b: usize) -> bool {
        a != b
            && [a, b].iter().all(|&m| {
                let member = &self.members[m];
                member.up && !member.hung && !member.replica.isolated
            })
    }

    /// Writes `op` into the oplog of `member`, primary in `term`, and applies it there.
    pub fn log(&mut self, member: usize, term: i64, op: Op) -> OpTime {
        let optime = OpTime {
            term,
            ts: self.tick(),
        };
        let entry = Entry {
            optime,
            op,
            written: Instant::now(),
        };
        self.replica_mut(member).append(Arc::new(entry));
        optime
    }

    /// Lets replication do what it can by now. Returns whether anything moved, so that
    /// writes waiting for their concern can be woken.
    pub fn replicate(&mut self, now: Instant) -> bool {
        let mut moved = false;
        loop {
            let mut pass = false;
            for member in 0..self.members.len() {
                pass |= self.sync(member, now, false);
            }
            for member in 0..self.members.len() {
                pass |= self.advance_commit_point(member);
            }
            if !pass {
                self.note_caught_up();
                return moved;
            }
            moved = true;
        }
    }

    /// Copies to `member` what its sync source has and it lacks, or rolls back if its
    /// history diverged; `catch_up` ignores the lag, as a primary-elect fetches what it can
    /// before it takes writes. Returns whether the member's oplog changed.
    pub fn sync(&mut self, member: usize, now: Instant, catch_up: bool) -> bool {
        let m = &self.members[member];
        // `stopReplProducer` stops the oplog fetcher (`jstests/libs/write_concern_util.js`,
        // `stopServerReplication`).
        let stopped = m.fail_points.is_set("stopReplProducer");
        let fetches = match m.role {
            Role::Startup2 | Role::Recovering | Role::Secondary => !catch_up,
            Role::Primary(Phase::CatchUp) => catch_up,
            Role::Startup | Role::Rollback | Role::Primary(_) => false,
        };
        if !self.can_act(member) || stopped || !fetches {
            return false;
        }
        let mine = self.replica(member).last();
        let source = (0..self.members.len())
            .filter(|&s| self.linked(member, s))
            .max_by_key(|&s| self.replica(s).last())
            .filter(|&s| self.replica(s).last() > mine);
        let Some(source) = source else {
            return false;
        };
        let (common, due) = {
            let ours = &self.replica(member).oplog;
            let theirs = &self.replica(source).oplog;
            let common = common_point(ours, theirs);
            let lag = if catch_up {
                Duration::ZERO
            } else {
                self.replica(member).lag
            };
            let due: Vec<Arc<Entry>> = theirs[common..]
                .iter()
                .take_while(|e| e.written + lag <= now)
                .take_while(|e| !self.holds_at_commit(member, &e.op, now))
                .cloned()
                .collect();
            (common, due)
        };
        if common < self.replica(member).oplog.len() {
            self.roll_back(member, common, now);
            return true;
        }
        let copied = !due.is_empty();
        let replica = self.replica_mut(member);
        for entry in due {
            if let (Some(writes), Op::Insert { .. }) = (&mut replica.catching_up, &entry.op) {
                *writes += 1;
            }
            replica.append(entry);
        }
        copied
    }

    /// Says so of each member back from an absence that now holds the newest entry of the
    /// writable primary it reaches; one elected meanwhile caught up as it was elected.
    fn note_caught_up(&mut self) {
        let primary = self.writable_primary();
        for member in 0..self.members.len() {
            let Some(writes) = self.replica(member).catching_up else {
                continue;
            };
            let role = self.members[member].role;
            if role.is_primary() {
                self.replica_mut(member).catching_up = None;
                continue;
            }
            let caught_up = primary.is_some_and(|p| {
                self.linked(member, p) && self.replica(member).last() >= self.replica(p).last()
            });
            if role == Role::Secondary && self.can_act(member) && caught_up {
                self.replica_mut(member).catching_up = None;
                let event = Event::new(member, Kind::CaughtUp { writes });
                self.events.push(event);
            }
        }
    }

    /// Truncates `member`'s oplog to `common` entries and rebuilds its data from what is
    /// left, retryable-write records included (`jstests/replsets/rollback_transaction_table.js`),
    /// in ROLLBACK, which kills user operations as a step-down does.
    fn roll_back(&mut self, member: usize, common: usize, now: Instant) {
        let replica = self.replica_mut(member);
        assert!(
            common >= replica.committed,
            "member {member} would roll back majority-committed entries"
        );
        let gone = replica.oplog.split_off(common);
        replica.store = Store::rebuild(&replica.oplog);
        let writes = gone
            .iter()
            .filter(|e| matches!(e.op, Op::Insert { .. }))
            .count();
        self.events
            .push(Event::new(member, Kind::RolledBack { writes }));
        // ROLLBACK kills user operations and closes the clients' connections, the driver's
        // included (`_performPostMemberStateUpdateAction`, `closeConnections`).
        self.members[member].step_downs += 1;
        self.members[member].close_connections();
        self.set_role(member, Role::Rollback, now);
        for entry in gone {
            if let Op::Insert { ns, doc, .. } = &entry.op {
                self.rolled_back
                    .entry(ns.clone())
                    .or_default()
                    .push(Arc::clone(doc));
            }
        }
    }

    /// Moves `member`'s commit point: as primary, to the newest entry of its term that a
    /// majority holds; otherwise to what the members it reaches know, where that is on its
    /// own history. Returns whether it moved.
    fn advance_commit_point(&mut self, member: usize) -> bool {
        let replica = self.replica(member);
        let committed = match self.leader_term(member) {
            Some(term) => (replica.committed..replica.oplog.len())
                .rev()
                .take_while(|&i| replica.oplog[i].optime.term == term)
                .find(|&i| {
                    let optime = replica.oplog[i].optime;
                    let holders = (0..self.members.len())
                        .filter(|&m| self.replica(m).holds(i, optime))
                        .count();
                    holders >= MAJORITY
                })
                .map(|i| i + 1),
            None => {
                let learned = (0..self.members.len())
                    .filter(|&s| self.linked(member, s))
                    .filter_map(|s| {
                        let source = self.replica(s);
                        source.commit_point().map(|point| (point, source.committed))
                    })
                    .max();
                learned.and_then(|(point, count)| {
                    if replica.holds(count - 1, point) {
                        Some(count)
                    } else {
                        // Behind it in the same term: all it holds is on that history.
                        let last = replica.last()?;
                        (last.term == point.term && last < point).then_some(replica.oplog.len())
                    }
                })
            }
        };
        match committed {
            Some(committed) if committed > replica.committed => {
                self.replica_mut(member).committed = committed;
                true
            }
            _ => false,
        }
    }

    /// The data that outlives any failover: the majority-committed documents as the member
    /// with the newest commit point knows them. Commit points lie on one history, so no
    /// member knows of a committed document this leaves out.
    pub fn committed_documents(&self, ns: &str) -> Vec<Arc<RawDocumentBuf>> {
        let newest = (0..self.members.len())
            .max_by_key(|&m| self.replica(m).commit_point())
            .expect("a set has members");
        self.replica(newest).read(ns, true)
    }

    /// The member whose data `FakeReplicaSet::documents` shows: the primary of the newest
    /// term, or with none the member with the newest entry (alive or not: its data is on disk).
    pub fn newest_member(&self) -> usize {
        self.primary().unwrap_or_else(|| {
            (0..self.members.len())
                .max_by_key(|&m| self.replica(m).last())
                .expect("a set has members")
        })
    }
}
