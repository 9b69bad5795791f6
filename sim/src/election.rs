//! Elections by term, as protocol version 1 holds them, and every way a primary stops being
//! one.
//!
//! A secondary's election timer fires an election timeout (plus a random offset of up to
//! 15 %) after it last heard from a primary of its term. It stands if it can: SECONDARY, not
//! frozen, with an entry applied, and believing a majority of the set up, itself included
//! (`topology_coordinator.cpp`, `_getMyUnelectableReason`). A voter grants its vote to a
//! candidate for a term newer than its own, in which it has not voted, whose newest entry is
//! no older than its own (`src/mongo/db/repl/README.md`, "Voter Perspective"); the dry run and
//! the real round ask the same members a moment apart, so here they are one. With a majority
//! the candidate takes the term and becomes PRIMARY at once, but takes writes only after it
//! has caught up with the newest member it reaches (catch-up), applied that and written its
//! "new primary" no-op (drain); then it is writable (README "Transitioning to PRIMARY"). A
//! candidate that loses waits another election timeout.
//!
//! A primary steps down when it learns of a newer term (a heartbeat, a vote request), when it
//! has heard from no majority for an election timeout (the liveness timeout,
//! `checkMemberTimeouts`), on `replSetStepDown`, or when a test says so. Stepping down
//! interrupts what it was doing: see `write_concern` and `primary`.

use std::time::Instant;

use bson::oid::ObjectId;

use crate::cluster::{Phase, Role, State};
use crate::events::{Event, Kind};
use crate::oplog::Op;
use crate::replication::MAJORITY;

/// Why a primary stepped down, as the event says it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepDown {
    /// It heard from no majority for an election timeout.
    CannotSeeMajority,
    /// A heartbeat or a vote request carried a newer term.
    NewerTerm,
    /// `replSetStepDown`.
    Command,
    /// A test's or a person's control.
    Told,
}

impl StepDown {
    fn reason(self) -> &'static str {
        match self {
            StepDown::CannotSeeMajority => "it can't see a majority of the set",
            StepDown::NewerTerm => "it heard of a newer term",
            StepDown::Command => "replSetStepDown",
            StepDown::Told => "told to",
        }
    }
}

/// As a real primary's: 0x7fffffff then the term as a big-endian int64, so that electionIds
/// compare by term (`OID::initFromTermNumber` in `src/mongo/bson/oid.cpp`).
pub fn election_id(term: i64) -> ObjectId {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    bytes[4..].copy_from_slice(&term.to_be_bytes());
    ObjectId::from_bytes(bytes)
}

impl State {
    /// Puts `member`'s election off by an election timeout and a random offset, if it is a
    /// secondary of a set that elects by itself.
    pub fn arm_election_timer(&mut self, member: usize, now: Instant) {
        let Some(timeout) = self.timers.election_timeout else {
            return;
        };
        if self.members[member].role != Role::Secondary {
            self.members[member].election_at = None;
            return;
        }
        let offset = self.jitter(timeout.mul_f64(self.timers.election_offset_fraction));
        self.members[member].election_at = Some(now + timeout + offset);
    }

    /// Whether `member` may stand now: SECONDARY, not frozen, with an entry applied, and
    /// believing a majority up.
    pub fn electable(&self, member: usize, now: Instant) -> bool {
        let m = &self.members[member];
        m.role == Role::Secondary
            && self.can_act(member)
            && m.frozen_until.is_none_or(|t| t <= now)
            && m.replica.last().is_some()
            && self.seen_up(member) >= MAJORITY
    }

    /// The members that would vote for `candidate` in `term`: those it reaches now, with
    /// their config loaded, of an older term, that have not voted in `term`, whose newest
    /// entry is no newer than its own.
    fn voters(&self, candidate: usize, term: i64) -> Vec<usize> {
        let mine = self.members[candidate].replica.last();
        (0..self.members.len())
            .filter(|&v| v != candidate && self.linked(candidate, v))
            .filter(|&v| {
                let voter = &self.members[v];
                voter.role != Role::Startup
                    && voter.term < term
                    && voter.voted_in < term
                    && voter.replica.last() <= mine
            })
            .collect()
    }

    /// Whether `candidate` would win an election now, timers or not.
    pub fn can_win(&self, candidate: usize) -> bool {
        if !self.can_act(candidate) {
            return false;
        }
        let term = self.term().max(self.members[candidate].term) + 1;
        1 + self.voters(candidate, term).len() >= MAJORITY
    }

    /// `member`'s election timer fired: it stands if it can, and waits another timeout if it
    /// cannot or loses.
    pub fn election_timer_fired(&mut self, member: usize, now: Instant) {
        self.members[member].election_at = None;
        if !self.electable(member, now) || !self.stand(member, now) {
            self.arm_election_timer(member, now);
        }
    }

    /// `candidate` asks for votes for the term after its own; returns whether it won.
    pub fn stand(&mut self, candidate: usize, now: Instant) -> bool {
        let term = self.members[candidate].term + 1;
        let voters = self.voters(candidate, term);
        let votes = 1 + voters.len();
        if votes < MAJORITY {
            let lost = Kind::Lost { term, votes };
            self.events.push(Event::new(candidate, lost));
            return false;
        }
        for voter in voters {
            self.members[voter].voted_in = term;
            self.learn_term(voter, term, now);
        }
        let m = &mut self.members[candidate];
        m.term = term;
        m.voted_in = term;
        self.events
            .push(Event::new(candidate, Kind::Elected { term }));
        self.set_role(candidate, Role::Primary(Phase::CatchUp), now);
        self.restart_heartbeats(candidate, now);
        true
    }

    /// Makes `candidate` primary in a new term at once if it can win, as a test's `elect`
    /// asks: it catches up, drains and becomes writable in the same instant. Returns whether
    /// it did.
    pub fn elect(&mut self, candidate: usize) -> bool {
        let now = Instant::now();
        self.advance(now);
        if !self.can_win(candidate) {
            return false;
        }
        // Stand for the newest term anyone has, even if the candidate has not heard of it.
        let newest = self.term();
        self.members[candidate].term = newest;
        if !self.stand(candidate, now) {
            return false;
        }
        self.catch_up(candidate, now);
        self.finish_drain(candidate, now);
        self.advance(now);
        true
    }

    /// A primary-elect fetches what the members it reaches hold beyond its newest entry,
    /// then drains. Fetching is instant here (a primary-elect ignores its lag), so catch-up
    /// ends in one step, and `catchUpTimeoutMillis` never comes into play.
    pub fn catch_up(&mut self, member: usize, now: Instant) {
        self.sync(member, now, true);
        self.start_drain(member, now);
    }

    /// Drain: the member applies what it fetched. Catch-up and drain are one mode of the
    /// server's (`kLeaderElect`): `topologyVersion` moved when the member became PRIMARY, and
    /// does not move again until drain ends.
    fn start_drain(&mut self, member: usize, now: Instant) {
        let term = self.members[member].term;
        let m = &mut self.members[member];
        m.role = Role::Primary(Phase::Drain);
        m.role_since = now;
        let drain = Role::Primary(Phase::Drain);
        self.events.push(Event::role(member, drain, term));
    }

    /// Drain ends: the "new primary" no-op is written, so that the new term can commit, the
    /// config term is bumped by a reconfig, and the primary takes writes. The no-op comes
    /// after what was drained and just before the member becomes writable
    /// (`signalDrainComplete` -> `logTransitionToPrimaryToOplog`, then
    /// `completeTransitionToPrimary`; selfdriving-facts.md §2 "Drain, then writable").
    pub fn finish_drain(&mut self, member: usize, now: Instant) {
        if self.members[member].role == Role::Primary(Phase::CatchUp) {
            self.start_drain(member, now);
        }
        let term = self.members[member].term;
        self.log(member, term, Op::Noop);
        self.members[member].topology.counter += 1;
        self.set_role(member, Role::Primary(Phase::Writable), now);
    }

    /// `member` stops being primary, for `why`: what it was doing is interrupted, and it is
    /// a secondary again, whose election timer runs.
    pub fn step_down(&mut self, member: usize, why: StepDown, now: Instant) {
        if !self.members[member].role.is_primary() {
            return;
        }
        let m = &mut self.members[member];
        m.step_downs += 1;
        // Once when writes stop, once at SECONDARY
        // (`jstests/replsets/awaitable_hello_stepdown_stepup.js`). A `replSetStepDown` stopped
        // writes, and moved the counter, when it began (`stepdown::hand_over`).
        if !m.stepping_down {
            m.topology.counter += 1;
        }
        let reason = why.reason();
        self.events
            .push(Event::new(member, Kind::SteppedDown { reason }));
        self.set_role(member, Role::Secondary, now);
    }

    /// When the liveness timeout of primary `member` fires: an election timeout after the
    /// last answer from the member it heard from last, for a set of three.
    pub fn liveness_deadline(&self, member: usize) -> Option<Instant> {
        let timeout = self.timers.election_timeout?;
        let m = &self.members[member];
        if !m.role.is_primary() || !self.can_act(member) {
            return None;
        }
        let heard = (0..self.members.len())
            .filter(|&o| o != member)
            .filter_map(|o| m.peers[o].heard)
            .max()
            .unwrap_or(m.role_since);
        Some(heard.max(m.role_since) + timeout)
    }
}
