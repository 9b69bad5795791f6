//! Elections by term, as protocol version 1 holds them, and the ways a primary stops being one.
//!
//! A candidate wins with the votes of a majority, its own included, from members it reaches
//! whose newest entry is no newer than its own ("The candidate node must be at least as up to
//! date as a majority of voting members", `src/mongo/db/repl/README.md`, "Candidate
//! Perspective"). It then catches up from the newest member it reaches, takes the next term
//! and writes its "new primary" no-op ("Transitioning to PRIMARY").
//!
//! The old primary steps down at once if it hears of the new term, that is if it reaches the
//! winner. Cut off, it goes on acting as primary of its own term until it reaches a member
//! again or notices it cannot see a majority (the liveness timeout, about
//! electionTimeoutMillis after it last heard from one; `topology_coordinator.cpp`,
//! `checkMemberTimeouts`): two members claim to be primary meanwhile, and clients tell the
//! stale one by its smaller `electionId`.
//!
//! Nothing times out by itself: a test calls `elect` where a real set's election timeout
//! would fire, and `notice_isolation` where the old primary's would.

use std::time::Instant;

use bson::oid::ObjectId;

use crate::cluster::State;
use crate::oplog::Op;
use crate::replication::MAJORITY;

/// As a real primary's: 0x7fffffff then the term as a big-endian int64, so that electionIds
/// compare by term (`OID::initFromTermNumber` in `src/mongo/bson/oid.cpp`).
pub fn election_id(term: i64) -> ObjectId {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    bytes[4..].copy_from_slice(&term.to_be_bytes());
    ObjectId::from_bytes(bytes)
}

impl State {
    /// Whether `candidate` would win an election now.
    pub fn can_win(&self, candidate: usize) -> bool {
        let member = &self.members[candidate];
        if !member.up || member.hung {
            return false;
        }
        let mine = self.replica(candidate).last();
        let voters = (0..self.members.len())
            .filter(|&v| self.linked(candidate, v) && self.replica(v).last() <= mine)
            .count();
        1 + voters >= MAJORITY
    }

    /// Makes `candidate` primary in a new term if it can win; returns whether it did.
    pub fn elect(&mut self, candidate: usize) -> bool {
        self.replicate();
        if !self.can_win(candidate) {
            return false;
        }
        self.sync(candidate, Instant::now(), true);
        if let Some(old) = self.primary.filter(|&p| p != candidate) {
            if self.members[old].up && !self.linked(candidate, old) {
                self.replica_mut(old).stale_term = Some(self.term);
            }
        }
        self.term += 1;
        self.primary = Some(candidate);
        self.replica_mut(candidate).stale_term = None;
        self.log(candidate, self.term, Op::NewPrimary);
        self.replicate();
        true
    }

    /// `member` notices it reaches no majority: if it acts as primary, it steps down.
    /// Returns whether it did.
    pub fn notice_isolation(&mut self, member: usize) -> bool {
        let reached = (0..self.members.len())
            .filter(|&m| self.linked(member, m))
            .count();
        if 1 + reached >= MAJORITY || self.writable_term(member).is_none() {
            return false;
        }
        self.stand_down(member);
        true
    }

    /// `member` stops acting as primary, of the newest term or of an earlier one.
    pub fn stand_down(&mut self, member: usize) {
        if self.primary == Some(member) {
            self.primary = None;
        }
        self.replica_mut(member).stale_term = None;
    }
}
