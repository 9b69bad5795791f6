//! The `insert` command as a 7.0 primary runs it: an internal batch at a time
//! (`internalInsertMaxBatchSize`, 64 by default), each checked against the member still being
//! writable, with the fail points that act between and inside batches, then the write concern.
//!
//! From `src/mongo/db/ops/write_ops_exec.cpp` (`performInserts`, `insertBatchAndHandleErrors`,
//! `handleError`) and `transaction_participant.cpp`:
//! - A step-down kills an insert that has taken a write lock (one that has run a batch): the
//!   whole command fails with a top-level InterruptedDueToReplStateChange, though its earlier
//!   batches stay written ("These have always failed the whole batch").
//! - One parked before its first batch holds no lock and is not killed; when it goes on, the
//!   member is no longer writable and each document it still has (the first, if ordered)
//!   gets PrimarySteppedDown (189, "Not primary while writing to <ns>") as a write error.
//! - `hangDuringBatchInsert` (data `nss`) holds an insert before each batch, before any lock;
//!   `hangWithLockDuringBatchInsert` holds it after the lock and the can-write check, before
//!   the write (`jstests/replsets/no_disconnect_on_stepdown.js`). Both let go when turned off;
//!   a step-down that kills the insert ends the wait only when their data sets
//!   `shouldCheckForInterrupt` or `shouldContinueOnInterrupt` (`hold`).
//! - `onPrimaryTransactionalWrite` fires on a retryable write once per batch, inside its
//!   storage transaction: with `closeConnection` (the default) the connection is closed and
//!   the write commits, so the client never hears of it; with `failBeforeCommitExceptionCode`
//!   the batch is not written, and a batch of several documents is tried again one at a time,
//!   the fail point met by each (the retryable-writes specification's `insertOne` and
//!   `insertMany` tests).

use std::sync::MutexGuard;
use std::time::Duration;

use bson::{Bson, Document};

use crate::cluster::{Shared, State};
use crate::commands::{integer, is_current, respond, write_target, Outcome};
use crate::errors;
use crate::fail_command::Passed;
use crate::primary::Insert;
use crate::query::to_bson;
use crate::wire::Request;
use crate::write_concern;

/// `insert`, with the retryable-write history, the armed faults and the write concern.
pub fn insert<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    member: usize,
    incarnation: u64,
    request: &Request,
    passed: &Passed,
) -> Outcome {
    let txn_number = request.body.get_i64("txnNumber").ok();
    let (term, ns) = match write_target(&state, member, request, "insert") {
        Ok(target) => target,
        // An unacknowledged (w: 0) write cannot be refused with a reply, so a server that
        // is not primary closes the connection instead.
        Err(_) if request.more_to_come && state.writable_term(member).is_none() => {
            return Outcome::HangUp
        }
        Err(refusal) => return respond(&state, member, refusal),
    };
    let Some(docs) = request.documents("documents") else {
        let message = "BSON field 'insert.documents' is missing but a required field";
        return respond(&state, member, errors::command_error(40414, message, false));
    };
    let ordered = request.body.get_bool("ordered").unwrap_or(true);

    let reply = if let Some(code) = state.faults.fail_next_write.take() {
        let first_id = to_bson(docs.first().and_then(|d| d.get("_id").ok().flatten()));
        let failed = errors::injected_write_failure(code, &ns, first_id, txn_number.is_some());
        if failed.get_f64("ok") == Ok(0.0) {
            return respond(&state, member, failed);
        }
        // A write error, as from a real write: it waits for its write concern like one.
        failed
    } else {
        let session = lsid(&request.body).zip(txn_number);
        let retryable = session.is_some();
        let mut insert = match state.begin_insert(member, &ns, docs, ordered, session) {
            Ok(insert) => insert,
            Err(refusal) => return respond(&state, member, refusal),
        };
        let step_downs = state.members[member].step_downs;
        let batch = state.members[member].insert_batch_size;
        let mut locked = false;
        let mut closed = false;
        while !insert.is_done() {
            // Before the batch's lock: a step-down kills the insert here only if an earlier
            // batch took a write lock.
            let held = "hangDuringBatchInsert";
            state = match hold(
                shared,
                state,
                member,
                incarnation,
                held,
                &ns,
                step_downs,
                locked,
            ) {
                Held::Released(state) => state,
                Held::Interrupted(state) => {
                    return respond(&state, member, errors::interrupted(retryable))
                }
                Held::Gone => return Outcome::Gone,
            };
            let killed = state.members[member].step_downs != step_downs;
            if killed && locked {
                return respond(&state, member, errors::interrupted(retryable));
            }
            if state.writable_term(member) != Some(term) {
                // `assertCanWrite_inlock` in `acquireCollection` (write_ops_exec.cpp, r7.0)
                // throws PrimarySteppedDown; `insertBatchAndHandleErrors` then tries each
                // document alone, meets the same check, and `handleError` records it as that
                // document's write error (an ordered insert stops at the first). Not 10107,
                // which is what a write refused before it runs gets.
                let message = format!("Not primary while writing to {ns}");
                insert.refuse_rest(189, &message);
                break;
            }
            let hung = "hangWithLockDuringBatchInsert";
            state = match hold(
                shared,
                state,
                member,
                incarnation,
                hung,
                &ns,
                step_downs,
                true,
            ) {
                Held::Released(state) => state,
                Held::Interrupted(state) => {
                    return respond(&state, member, errors::interrupted(retryable))
                }
                Held::Gone => return Outcome::Gone,
            };
            locked = true;
            if state.members[member].step_downs != step_downs {
                return respond(&state, member, errors::interrupted(retryable));
            }
            closed |= run_batch(&mut state, member, term, &mut insert, batch, retryable);
        }
        shared.settle(&mut state);
        if closed {
            return Outcome::HangUp;
        }
        let faults = &mut state.faults;
        if std::mem::take(&mut faults.crash_after_next_write) {
            return Outcome::Crash;
        }
        if std::mem::take(&mut faults.drop_next_reply) {
            return Outcome::HangUp;
        }
        insert.reply()
    };
    write_concern::respond_when_met(
        shared,
        state,
        member,
        incarnation,
        term,
        request,
        reply,
        passed,
    )
}

/// Runs the next batch of `insert`, meeting `onPrimaryTransactionalWrite` if it is a retryable
/// write. Returns whether the fail point closed the connection.
fn run_batch(
    state: &mut State,
    member: usize,
    term: i64,
    insert: &mut Insert,
    batch: usize,
    retryable: bool,
) -> bool {
    let Some(data) = on_primary_transactional_write(state, member, retryable) else {
        state.insert_batch(member, term, insert, batch);
        return false;
    };
    let mut closed = closes(&data);
    let Some(code) = fails_with(&data) else {
        state.insert_batch(member, term, insert, batch);
        return closed;
    };
    let size = insert.left().min(batch);
    if size == 1 {
        insert.refuse_next(code, failpoint_message(insert));
        return closed;
    }
    // The batch is not written; each of its documents is tried on its own.
    for _ in 0..size {
        if insert.is_done() {
            break;
        }
        match on_primary_transactional_write(state, member, retryable) {
            Some(data) => {
                closed |= closes(&data);
                match fails_with(&data) {
                    Some(code) => insert.refuse_next(code, failpoint_message(insert)),
                    None => state.insert_batch(member, term, insert, 1),
                }
            }
            None => state.insert_batch(member, term, insert, 1),
        }
    }
    closed
}

fn on_primary_transactional_write(
    state: &mut State,
    member: usize,
    retryable: bool,
) -> Option<Document> {
    let fail_points = &mut state.members[member].fail_points;
    retryable
        .then(|| fail_points.enter("onPrimaryTransactionalWrite", |_| true))
        .flatten()
}

/// `closeConnection`, true unless set false.
fn closes(data: &Document) -> bool {
    data.get_bool("closeConnection").unwrap_or(true)
}

fn fails_with(data: &Document) -> Option<i32> {
    integer(data.get("failBeforeCommitExceptionCode")?).map(|n| n as i32)
}

fn failpoint_message(insert: &Insert) -> String {
    let (lsid, txn_number) = insert.session_name();
    format!(
        "Failing write for {lsid}:{txn_number} due to failpoint. The write must not be reflected."
    )
}

/// How a fail point that held an insert let it go.
enum Held<'a> {
    /// Turned off (or never set), or interrupted with `shouldContinueOnInterrupt`: the insert
    /// goes on, and a killed one fails at its next lock.
    Released(MutexGuard<'a, State>),
    /// Killed while held with `shouldCheckForInterrupt`: the insert fails whole with 11602.
    Interrupted(MutexGuard<'a, State>),
    /// The member died meanwhile.
    Gone,
}

/// A fail point that holds an insert into `ns` (or any namespace, without `nss`) while it is
/// set, met once per batch, as `CurOpFailpointHelpers::waitWhileFailPointEnabled`
/// (`src/mongo/db/curop_failpoint_helpers.cpp`) holds it: it waits until the fail point is
/// turned off, whatever happens meanwhile, unless its data asks it to heed an interrupt:
/// `shouldCheckForInterrupt` throws it (the insert fails with InterruptedDueToReplStateChange),
/// `shouldContinueOnInterrupt` only stops the wait. The step-down after `step_downs` kills the
/// insert only if it has taken a write lock (`killable`): an earlier batch did, or it is held
/// under its lock.
#[allow(clippy::too_many_arguments)]
fn hold<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    member: usize,
    incarnation: u64,
    name: &str,
    ns: &str,
    step_downs: u64,
    killable: bool,
) -> Held<'a> {
    let fired = state.members[member].fail_points.enter(name, |data| {
        data.get_str("nss").is_err() || data.get_str("nss") == Ok(ns)
    });
    let Some(data) = fired else {
        return Held::Released(state);
    };
    // `booleanSafe`: a bool, or a number other than 0.
    let flag = |field: &str| match data.get(field) {
        Some(Bson::Boolean(b)) => *b,
        Some(other) => integer(other).is_some_and(|n| n != 0),
        None => false,
    };
    let check_for_interrupt = flag("shouldCheckForInterrupt");
    let continue_on_interrupt = flag("shouldContinueOnInterrupt");
    loop {
        if !is_current(&state, member, incarnation) {
            return Held::Gone;
        }
        let m = &state.members[member];
        if !m.fail_points.is_set(name) {
            return Held::Released(state);
        }
        if killable && m.step_downs != step_downs {
            if continue_on_interrupt {
                return Held::Released(state);
            }
            if check_for_interrupt {
                return Held::Interrupted(state);
            }
        }
        state = shared.wait(state, Duration::from_millis(10));
    }
}

/// The bytes of `lsid.id`, the key of the retryable-write history.
fn lsid(body: &Document) -> Option<Vec<u8>> {
    match body.get_document("lsid").ok()?.get("id")? {
        Bson::Binary(binary) => Some(binary.bytes.clone()),
        _ => None,
    }
}
