//! The ordered log of writes each member keeps, as `local.oplog.rs` on a real member: what
//! secondaries copy, what the commit point counts and what a rollback cuts off.
//!
//! A member's data is never changed except by applying one of these entries, so two members
//! holding the same entries hold the same data, and a member that truncates its log rebuilds
//! its data from what is left (as rollback recovers to a stable timestamp and replays,
//! `src/mongo/db/repl/README.md`, "Rollback: Recover To A Timestamp").

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bson::{RawDocumentBuf, Timestamp};

use crate::collections::Kind;

/// Where an entry sits in history: the term it was written in, then its timestamp, compared
/// in that order as the server compares OpTimes. Two members holding an entry with the same
/// OpTime at the same place hold the same history up to it: one primary per term (PV1 is
/// Raft, README "Communication"), and a primary only appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpTime {
    pub term: i64,
    pub ts: Timestamp,
}

impl Ord for OpTime {
    fn cmp(&self, other: &OpTime) -> Ordering {
        (self.term, self.ts.time, self.ts.increment).cmp(&(
            other.term,
            other.ts.time,
            other.ts.increment,
        ))
    }
}

impl PartialOrd for OpTime {
    fn partial_cmp(&self, other: &OpTime) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

pub struct Entry {
    pub optime: OpTime,
    pub op: Op,
    /// When the primary wrote it: a member with a lag copies it that much later.
    pub written: Instant,
}

pub enum Op {
    /// One inserted document, with the retryable-write statement it executed, if any: the
    /// server writes `lsid`/`txnNumber`/`stmtId` into the entry and every member derives
    /// `config.transactions` from it (README "Transaction Oplog Application").
    Insert {
        ns: String,
        doc: Arc<RawDocumentBuf>,
        statement: Option<Statement>,
    },
    /// A collection or view created, explicitly (`create`) or by the first write into it,
    /// with what it is: the oplog's `{create: <coll>, ...options}` command entry.
    Create {
        ns: String,
        uuid: bson::Uuid,
        kind: Kind,
    },
    /// An index built in one step: on an empty or new collection.
    CreateIndex {
        ns: String,
        key: Vec<(String, i32)>,
        unique: bool,
        /// The name the command gave, if any; else the server's default (`Index::default_name`).
        name: Option<String>,
    },
    /// The phases of a two-phase index build (`src/mongo/db/index_builds/README.md`): each
    /// member starts building when it applies the start, and the index is ready where the
    /// commit is applied; an abort drops it.
    StartIndexBuild {
        ns: String,
        key: Vec<(String, i32)>,
        unique: bool,
        name: Option<String>,
        build: u64,
    },
    CommitIndexBuild {
        ns: String,
        build: u64,
    },
    AbortIndexBuild {
        ns: String,
        build: u64,
    },
    /// A no-op: `{msg: "new primary"}`, which a member writes when it becomes primary so that
    /// it can commit an entry of its own term (README "Transitioning to PRIMARY"), or
    /// `{msg: "initiating set"}`, the first entry of every member's oplog.
    Noop,
}

/// A statement of a retryable write: the server remembers executed statements per session.
#[derive(Clone)]
pub struct Statement {
    pub lsid: Vec<u8>,
    pub txn_number: i64,
    pub stmt_id: i32,
}

/// How many of the first `len` entries `a` and `b` share: the common point a member that
/// diverged rolls back to. Histories agree up to a point and differ after it, so the search
/// walks back from the shorter end.
pub fn common_point(a: &[Arc<Entry>], b: &[Arc<Entry>]) -> usize {
    let mut n = a.len().min(b.len());
    while n > 0 && a[n - 1].optime != b[n - 1].optime {
        n -= 1;
    }
    n
}
