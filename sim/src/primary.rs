//! How a primary executes writes: it checks each against its own data, then logs and applies
//! it, so that secondaries can apply the same entries. For `insert`, a retryable write's
//! statements already executed are answered from the session's record instead of being
//! executed twice.
//!
//! As on the server, the record lives in the member's data and is derived from the oplog
//! entries (`lsid`, `txnNumber`, `stmtId`), so it travels to secondaries with them and leaves
//! with them on rollback. A statement that failed leaves no record and runs again on a retry.
//! A retried statement counts in `n` and is listed in `retriedStmtIds`
//! (`src/mongo/db/ops/write_ops_exec.cpp`, `performInserts`).
//!
//! An insert runs an internal batch at a time, so that a step-down can cut it part-way, as it
//! does on the server (`commands::insert`).

use std::collections::HashSet;
use std::sync::Arc;

use bson::{doc, Document, RawDocumentBuf};

use crate::cluster::State;
use crate::collections::Kind;
use crate::errors;
use crate::oplog::{Op, Statement};
use crate::store::{with_id_first, DuplicateKey, History};

/// A retryable write's session: `lsid.id` bytes and `txnNumber`.
pub type Session = (Vec<u8>, i64);

/// An insert under way on a primary, run an internal batch at a time as the server runs it
/// (`internalInsertMaxBatchSize` documents, `performInserts`): what the session's record says
/// was executed already, and the reply so far.
pub struct Insert {
    ns: String,
    docs: Vec<RawDocumentBuf>,
    ordered: bool,
    session: Option<Session>,
    executed: HashSet<i32>,
    next: usize,
    n: i32,
    retried: Vec<i32>,
    write_errors: Vec<Document>,
    stopped: bool,
}

impl Insert {
    /// Every document was tried, or an ordered insert stopped at an error.
    pub fn is_done(&self) -> bool {
        self.stopped || self.next >= self.docs.len()
    }

    /// How many documents are still to be tried.
    pub fn left(&self) -> usize {
        self.docs.len() - self.next
    }

    /// The next document fails with `code`, as a write error; an ordered insert stops there.
    pub fn refuse_next(&mut self, code: i32, errmsg: String) {
        if self.is_done() {
            return;
        }
        let index = self.next as i32;
        self.write_errors
            .push(doc! { "index": index, "code": code, "errmsg": errmsg });
        self.next += 1;
        self.stopped = self.ordered;
    }

    /// The document at `position`, just taken, fails with `code`, as a write error; an
    /// ordered insert stops there.
    fn refuse_next_at(&mut self, position: usize, code: i32, errmsg: String) {
        let index = position as i32;
        self.write_errors
            .push(doc! { "index": index, "code": code, "errmsg": errmsg });
        self.stopped = self.ordered;
    }

    /// Every document still to be tried fails with `code` (only the next, if ordered).
    pub fn refuse_rest(&mut self, code: i32, errmsg: &str) {
        while !self.is_done() {
            self.refuse_next(code, errmsg.to_string());
        }
    }

    /// The session's id and `txnNumber`, as a message names them.
    pub fn session_name(&self) -> (String, i64) {
        let Some((lsid, txn_number)) = &self.session else {
            return (String::new(), 0);
        };
        let id = <[u8; 16]>::try_from(lsid.as_slice())
            .map(|bytes| bson::Uuid::from_bytes(bytes).to_string())
            .unwrap_or_default();
        (id, *txn_number)
    }

    /// `{n, writeErrors, retriedStmtIds, ok: 1}`.
    pub fn reply(self) -> Document {
        let mut reply = doc! { "n": self.n };
        if !self.write_errors.is_empty() {
            reply.insert("writeErrors", self.write_errors);
        }
        if !self.retried.is_empty() {
            reply.insert("retriedStmtIds", self.retried);
        }
        reply.insert("ok", 1.0);
        reply
    }
}

impl State {
    /// Executes a whole insert on `member`, primary in `term`. Returns the reply body (with
    /// `ok: 1`), or the command error that refuses it.
    pub fn insert(
        &mut self,
        member: usize,
        term: i64,
        ns: &str,
        docs: Vec<RawDocumentBuf>,
        ordered: bool,
        session: Option<Session>,
    ) -> Result<Document, Document> {
        let mut insert = self.begin_insert(member, ns, docs, ordered, session)?;
        while !insert.is_done() {
            self.insert_batch(member, term, &mut insert, usize::MAX);
        }
        Ok(insert.reply())
    }

    /// An insert on `member`, checked against the session's record: a retry of a newer
    /// `txnNumber` is refused.
    pub fn begin_insert(
        &self,
        member: usize,
        ns: &str,
        docs: Vec<RawDocumentBuf>,
        ordered: bool,
        session: Option<Session>,
    ) -> Result<Insert, Document> {
        let executed = match &session {
            None => HashSet::new(),
            Some((lsid, txn)) => match self.replica(member).store.history(lsid, *txn) {
                History::New => HashSet::new(),
                History::Executed(executed) => executed,
                History::TooOld { newest } => {
                    let message = format!(
                        "Retryable write with txnNumber {txn} is prohibited on session because \
                         a newer retryable write with txnNumber {newest} has already started \
                         on this session."
                    );
                    return Err(errors::command_error(225, &message, false));
                }
            },
        };
        Ok(Insert {
            ns: ns.to_string(),
            docs,
            ordered,
            session,
            executed,
            next: 0,
            n: 0,
            retried: Vec::new(),
            write_errors: Vec::new(),
            stopped: false,
        })
    }

    /// Executes the next `most` documents of `insert` on `member`, primary in `term`.
    pub fn insert_batch(&mut self, member: usize, term: i64, insert: &mut Insert, most: usize) {
        let end = insert.next.saturating_add(most).min(insert.docs.len());
        let ns = insert.ns.clone();
        for position in insert.next..end {
            insert.next = position + 1;
            let stmt_id = position as i32;
            if insert.executed.contains(&stmt_id) {
                insert.n += 1;
                insert.retried.push(stmt_id);
                continue;
            }
            let doc = with_id_first(insert.docs[position].clone());
            self.ensure_collection(member, term, &ns);
            if let Some((code, errmsg)) = self.replica(member).store.refusal(&ns, &doc) {
                insert.refuse_next_at(position, code, errmsg);
                if insert.stopped {
                    return;
                }
                continue;
            }
            if let Err(dup) = self.replica(member).store.check(&ns, &doc) {
                insert.write_errors.push(dup.write_error(position));
                if insert.ordered {
                    insert.stopped = true;
                    return;
                }
                continue;
            }
            let statement = insert.session.as_ref().map(|(lsid, txn_number)| Statement {
                lsid: lsid.clone(),
                txn_number: *txn_number,
                stmt_id,
            });
            let op = Op::Insert {
                ns: ns.clone(),
                doc: Arc::new(doc),
                statement,
            };
            self.log(member, term, op);
            insert.n += 1;
        }
    }

    /// Logs the creation of `ns` on `member`, primary in `term`, unless it exists: the first
    /// write into a collection creates it.
    pub fn ensure_collection(&mut self, member: usize, term: i64, ns: &str) {
        if self.replica(member).store.uuid(ns).is_none() {
            let uuid = bson::Uuid::new();
            self.log(
                member,
                term,
                Op::Create {
                    ns: ns.to_string(),
                    uuid,
                    kind: Kind::Regular,
                },
            );
        }
    }

    /// Builds an index in one step on `member`, primary in `term`, and logs it if it is new:
    /// on one field, or on several when it is not unique. Returns whether it is new.
    pub fn create_index(
        &mut self,
        member: usize,
        term: i64,
        ns: &str,
        key: &[(String, i32)],
        unique: bool,
    ) -> Result<bool, Box<DuplicateKey>> {
        let store = &self.replica(member).store;
        if store.has_index(ns, key) {
            return Ok(false);
        }
        if let Some(duplicate) = store.duplicate_for(ns, &key[0].0, key[0].1, unique) {
            return Err(duplicate);
        }
        self.ensure_collection(member, term, ns);
        // The one check against the documents: members apply the entry without another.
        let op = Op::CreateIndex {
            ns: ns.to_string(),
            key: key.to_vec(),
            unique,
            name: None,
        };
        self.log(member, term, op);
        Ok(true)
    }
}
