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

use std::collections::HashSet;
use std::sync::Arc;

use bson::{doc, Document, RawDocumentBuf};

use crate::cluster::State;
use crate::errors;
use crate::oplog::{Op, Statement};
use crate::store::{with_id_first, DuplicateKey, History};

/// A retryable write's session: `lsid.id` bytes and `txnNumber`.
pub type Session = (Vec<u8>, i64);

impl State {
    /// Executes an insert on `member`, primary in `term`. Returns the reply body (with
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
        let mut n = 0;
        let mut retried = Vec::new();
        let mut write_errors = Vec::new();
        for (position, doc) in docs.into_iter().enumerate() {
            let stmt_id = position as i32;
            if executed.contains(&stmt_id) {
                n += 1;
                retried.push(stmt_id);
                continue;
            }
            let doc = with_id_first(doc);
            if let Err(dup) = self.replica(member).store.check(ns, &doc) {
                write_errors.push(dup.write_error(position));
                if ordered {
                    break;
                }
                continue;
            }
            let statement = session.as_ref().map(|(lsid, txn_number)| Statement {
                lsid: lsid.clone(),
                txn_number: *txn_number,
                stmt_id,
            });
            let op = Op::Insert {
                ns: ns.to_string(),
                doc: Arc::new(doc),
                statement,
            };
            self.log(member, term, op);
            n += 1;
        }
        let mut reply = doc! { "n": n };
        if !write_errors.is_empty() {
            reply.insert("writeErrors", write_errors);
        }
        if !retried.is_empty() {
            reply.insert("retriedStmtIds", retried);
        }
        reply.insert("ok", 1.0);
        Ok(reply)
    }

    /// Builds an index on `member`, primary in `term`, and logs it if it is new: on one
    /// field, or on several when it is not unique. Returns whether it is new.
    pub fn create_index(
        &mut self,
        member: usize,
        term: i64,
        ns: &str,
        key: &[(String, i32)],
        unique: bool,
    ) -> Result<bool, Box<DuplicateKey>> {
        let store = &mut self.replica_mut(member).store;
        let created = store.create_any_index(ns, key, unique)?;
        if created {
            // Applying the entry here again finds the index built and changes nothing.
            let op = Op::CreateIndex {
                ns: ns.to_string(),
                key: key.to_vec(),
                unique,
            };
            self.log(member, term, op);
        }
        Ok(created)
    }
}
