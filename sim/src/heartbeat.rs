//! Heartbeats: how members learn of each other. Every member asks every other one how it is
//! each `heartbeatIntervalMillis`; an answer carries the other's state and term (a request's
//! term is not taken from it: `processHeartbeat`), so a term spreads
//! with the first answer, and a primary that hears of a newer term steps down. A member asked
//! by a primary it did not know as one asks it back at once, so a new primary is known within
//! a round trip (`replication_coordinator_impl_heartbeat.cpp`).
//!
//! A member whose port refuses the connection is marked down at once (the heartbeat and its
//! retries fail in a moment); one that accepts and never answers (hung, or on the far side of
//! a partition, where packets are dropped) only after `heartbeatTimeoutSecs`
//! (`topology_coordinator.cpp`, `processHeartbeatResponse`: failures are retried at once
//! until the retries or the timeout run out, then the target is marked down). A secondary
//! names as `primary` the member it last heard say so, until it marks that member down.
//!
//! What a heartbeat tells also re-arms the election timer: an answer from the primary of the
//! member's own term puts it off by another election timeout (`_handleHeartbeatResponse`).
//! A hung member sends nothing and processes nothing until it is unhung.

use std::time::Instant;

use crate::cluster::{Role, State};
use crate::election::StepDown;

/// What one member knows of another.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Marked up by the last heartbeat answer, down when one failed.
    pub up: bool,
    /// When it last answered a heartbeat.
    pub heard: Option<Instant>,
    /// Its role and term as it last said.
    pub role: Option<Role>,
    pub term: i64,
    /// When the next heartbeat to it goes.
    pub next: Instant,
    /// A heartbeat to it is waiting for an answer, since then.
    pub asked: Option<Instant>,
}

impl Peer {
    /// A peer just heard from, as every member of a newly started set is.
    pub fn heard_now(now: Instant) -> Peer {
        Peer {
            up: true,
            heard: Some(now),
            role: Some(Role::Secondary),
            term: 1,
            next: now,
            asked: None,
        }
    }
}

impl Peer {
    /// A peer a restarted member has not heard from yet.
    pub fn unknown(now: Instant) -> Peer {
        Peer {
            up: false,
            heard: None,
            role: None,
            term: 0,
            next: now,
            asked: None,
        }
    }
}

/// How a heartbeat from one member to another ends.
enum Answer {
    Heard,
    Refused,
    Silent,
}

impl State {
    /// Every member asks every other one now, and learns what it can.
    pub fn start_heartbeats(&mut self, now: Instant) {
        for member in 0..self.members.len() {
            self.restart_heartbeats(member, now);
        }
        self.exchange_heartbeats(now);
    }

    /// `member` sends its next heartbeats at once: on winning an election, on starting, on
    /// a partition healing.
    pub fn restart_heartbeats(&mut self, member: usize, now: Instant) {
        for peer in &mut self.members[member].peers {
            peer.next = now;
        }
    }

    /// The earliest moment a heartbeat is due, is answered, or gives up waiting.
    pub fn next_heartbeat(&self) -> Option<Instant> {
        (0..self.members.len())
            .filter(|&m| self.beats(m))
            .flat_map(|m| {
                (0..self.members.len())
                    .filter(move |&o| o != m)
                    .map(move |o| self.heartbeat_due(m, o))
            })
            .min()
    }

    fn heartbeat_due(&self, member: usize, other: usize) -> Instant {
        let peer = &self.members[member].peers[other];
        match peer.asked {
            None => peer.next,
            // Waiting on a member that answers again (unhung, healed) or died meanwhile (the
            // connection is reset): settled now.
            Some(asked) if !matches!(self.answer(member, other), Answer::Silent) => asked,
            Some(asked) => asked + self.timers.heartbeat_timeout,
        }
    }

    /// Whether `member`'s process runs: up and not hung.
    pub fn can_act(&self, member: usize) -> bool {
        let m = &self.members[member];
        m.up && !m.hung
    }

    /// Whether it sends heartbeats: running, with its config loaded.
    fn beats(&self, member: usize) -> bool {
        self.can_act(member) && self.members[member].role != Role::Startup
    }

    /// Sends the heartbeats due by `now`, and completes those whose answer has come, in
    /// order of their due time. Returns whether anything changed.
    pub fn exchange_heartbeats(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for member in 0..self.members.len() {
            if !self.beats(member) {
                continue;
            }
            for other in 0..self.members.len() {
                if other != member {
                    changed |= self.heartbeat(member, other, now);
                }
            }
        }
        changed
    }

    fn heartbeat(&mut self, member: usize, other: usize, now: Instant) -> bool {
        if self.heartbeat_due(member, other) > now {
            return false;
        }
        match self.answer(member, other) {
            Answer::Heard => self.hear(member, other, now),
            Answer::Refused => self.mark_down(member, other, now),
            Answer::Silent => {
                let timeout = self.timers.heartbeat_timeout;
                let peer = &mut self.members[member].peers[other];
                match peer.asked {
                    None => {
                        peer.asked = Some(now);
                        false
                    }
                    Some(asked) if now >= asked + timeout => self.mark_down(member, other, now),
                    Some(_) => false,
                }
            }
        }
    }

    fn answer(&self, member: usize, other: usize) -> Answer {
        let (m, o) = (&self.members[member], &self.members[other]);
        if m.replica.isolated || o.replica.isolated || (o.up && o.hung) {
            Answer::Silent
        } else if !o.up || o.role == Role::Startup {
            // Refused, or answered with an error by a member without its config yet.
            Answer::Refused
        } else {
            Answer::Heard
        }
    }

    /// `member` hears from `other`. Returns whether what it knows changed.
    fn hear(&mut self, member: usize, other: usize, now: Instant) -> bool {
        let interval = self.timers.heartbeat_interval;
        let (role, term) = {
            let o = &self.members[other];
            (o.role, o.term)
        };
        let peer = &mut self.members[member].peers[other];
        let news = !peer.up || peer.role != Some(role) || peer.term != term;
        *peer = Peer {
            up: true,
            heard: Some(now),
            role: Some(role),
            term,
            next: now + interval,
            asked: None,
        };
        let news = news | self.learn_term(member, term, now);
        // A primary the other did not know of as one: the other asks it back at once.
        let (asker_role, asker_term) = (self.members[member].role, self.members[member].term);
        let known = &self.members[other].peers[member];
        if asker_role.is_primary() && !(known.role == Some(asker_role) && known.term == asker_term)
        {
            self.members[other].peers[member].next = now;
        }
        let m = &self.members[member];
        if role.is_primary() && term == m.term && m.role == Role::Secondary {
            self.arm_election_timer(member, now);
        }
        news
    }

    /// `member` hears of `term`: a newer one becomes its own, and a primary of an older one
    /// steps down (`TopologyCoordinator::updateTerm`, `kTriggerStepDown`).
    /// Returns whether it was newer.
    pub fn learn_term(&mut self, member: usize, term: i64, now: Instant) -> bool {
        if term <= self.members[member].term {
            return false;
        }
        self.members[member].term = term;
        if self.members[member].role.is_primary() {
            self.step_down(member, StepDown::NewerTerm, now);
        }
        true
    }

    fn mark_down(&mut self, member: usize, other: usize, now: Instant) -> bool {
        let interval = self.timers.heartbeat_interval;
        let peer = &mut self.members[member].peers[other];
        let was_up = peer.up;
        peer.up = false;
        peer.asked = None;
        peer.next = now + interval;
        was_up
    }

    /// The member `member` would name as primary in `hello`: itself if it is one, else
    /// the member it last heard say so, of its own term or a newer one, until it marks that
    /// member down.
    pub fn known_primary(&self, member: usize) -> Option<usize> {
        let m = &self.members[member];
        if m.role.is_primary() {
            return Some(member);
        }
        (0..self.members.len())
            .filter(|&o| o != member)
            .filter(|&o| {
                let peer = &m.peers[o];
                peer.up && peer.role.is_some_and(Role::is_primary) && peer.term >= m.term
            })
            .max_by_key(|&o| m.peers[o].term)
    }

    /// How many members `member` believes up, itself included.
    pub fn seen_up(&self, member: usize) -> usize {
        let peers = &self.members[member].peers;
        1 + (0..peers.len())
            .filter(|&o| o != member && peers[o].up)
            .count()
    }
}
