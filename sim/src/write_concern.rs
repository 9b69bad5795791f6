//! Write concern as a 7.0 primary honours it: the reply to a write waits until enough members
//! hold the member's newest entry, and says so with a `writeConcernError` when it cannot.
//!
//! Sources: the write concern reference (docs.mongodb.com, "Write Concern"), the
//! read-write-concern specification's writeConcernError examples, and
//! `replication_coordinator_impl.cpp` (`_awaitReplication`, which wakes every waiter with
//! PrimarySteppedDown when the node steps down).
//!
//! What is awaited is the member's newest entry when the command finishes, whether or not
//! the command wrote: the server's `LastOpFixer` (`src/mongo/db/ops/write_ops_exec.cpp`)
//! moves the client's last OpTime to the system's for a write that failed or changed nothing,
//! so a duplicate key or a retry answered from the retryable-write table waits like a write.
//!
//! Limits: tag sets are not implemented (any `w` string but "majority" waits as "majority"),
//! and the `NoWritesPerformed` label,
//! which the server adds beside `RetryableWriteError` when the connection's last OpTime did
//! not move (`src/mongo/db/error_labels.cpp`), is never added.

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use bson::{doc, Bson, Document};

use crate::cluster::{Shared, State};
use crate::commands::{integer, is_current, respond, Outcome};
use crate::errors;
use crate::fail_command::{self, Passed};
use crate::oplog::OpTime;
use crate::wire::Request;

/// How often a waiting write lets replication move (lag is measured against the clock).
const POLL: Duration = Duration::from_millis(10);

/// What a write asked for.
pub struct Concern {
    w: W,
    /// None: wait as long as it takes (no `wtimeout`, or 0).
    wtimeout: Option<Duration>,
}

enum W {
    Members(i64),
    Majority,
}

/// Why a write stopped waiting early.
pub enum Unmet {
    /// The reply gets this `writeConcernError`.
    Error(Document),
    /// The member died while the write waited.
    Gone,
}

impl Concern {
    /// The command's `writeConcern`, or with none the server default: `{w: "majority"}`
    /// since 5.0 for a set whose members all vote and bear data.
    pub fn of(body: &Document) -> Concern {
        let Ok(concern) = body.get_document("writeConcern") else {
            return Concern {
                w: W::Majority,
                wtimeout: None,
            };
        };
        // `w` takes a fraction and drops it (`safeNumberLong` in `deserializeWriteConcernW`).
        let w = match concern.get("w").and_then(truncated) {
            Some(n) => W::Members(n),
            None => W::Majority,
        };
        let wtimeout = concern
            .get("wtimeout")
            .and_then(integer)
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(ms as u64));
        Concern { w, wtimeout }
    }

    /// Whether the entry `target` (its place in the oplog and its OpTime) satisfies this
    /// concern on `member`.
    fn met(&self, state: &State, member: usize, target: Option<(usize, OpTime)>) -> bool {
        let Some((index, optime)) = target else {
            return true;
        };
        let replica = state.replica(member);
        match self.w {
            W::Members(n) if n <= 1 => true,
            W::Members(n) => {
                let holders = (0..state.members.len())
                    .filter(|&m| state.replica(m).holds(index, optime))
                    .count();
                holders as i64 >= n
            }
            W::Majority => replica.holds(index, optime) && replica.committed > index,
        }
    }
}

/// Holds a write on `member`, primary in `term`, until its newest entry (when the write
/// finished) satisfies `concern`, the wtimeout expires, or the member stops being primary in
/// that term: checked first, as `_awaitReplication` does, so that a member that steps down,
/// rolls back and catches up does not take the new primary's entries for its own.
/// `alive` says whether the member is still the one that took the write.
pub fn wait<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    member: usize,
    term: i64,
    concern: &Concern,
    alive: impl Fn(&State) -> bool,
) -> (MutexGuard<'a, State>, Result<(), Unmet>) {
    if let W::Members(n) = concern.w {
        if n > state.members.len() as i64 {
            let error = error(
                100,
                "UnsatisfiableWriteConcern",
                "Not enough data-bearing nodes",
            );
            return (state, Err(Unmet::Error(error)));
        }
    }
    // `w: 1` waits for no other member, so nothing the set does afterwards can fail it
    // (`_awaitReplication_inlock` fails a waiter with PrimarySteppedDown only when it needs
    // other members).
    if matches!(concern.w, W::Members(n) if n <= 1) {
        return (state, Ok(()));
    }
    let oplog = &state.replica(member).oplog;
    let target = oplog.len().checked_sub(1).map(|i| (i, oplog[i].optime));
    let deadline = concern.wtimeout.map(|t| Instant::now() + t);
    loop {
        if !alive(&state) {
            return (state, Err(Unmet::Gone));
        }
        if state.writable_term(member) != Some(term) {
            let error = stepped_down(&mut state);
            return (state, Err(Unmet::Error(error)));
        }
        if concern.met(&state, member, target) {
            return (state, Ok(()));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| d <= now) {
            let mut error = error(
                64,
                "WriteConcernTimeout",
                "waiting for replication timed out",
            );
            error.insert("errInfo", doc! { "wtimeout": true });
            return (state, Err(Unmet::Error(error)));
        }
        let pause = deadline.map_or(POLL, |d| (d - now).min(POLL));
        state = shared.wait(state, pause);
        shared.settle(&mut state);
    }
}

/// Sends `reply` to a write command once its write concern is met, or with the
/// `writeConcernError` that says why it was not (labelled retryable when the command carried a
/// `txnNumber`). `Outcome::Gone` if the member died meanwhile.
#[allow(clippy::too_many_arguments)]
pub fn respond_when_met(
    shared: &Shared,
    state: MutexGuard<'_, State>,
    member: usize,
    incarnation: u64,
    term: i64,
    request: &Request,
    mut reply: Document,
    passed: &Passed,
) -> Outcome {
    let retryable = request.body.get_i64("txnNumber").is_ok();
    let mut state = state;
    // A `failCommand` with `writeConcernError` takes the place of the wait
    // (`_waitForWriteConcern` in service_entry_point_common.cpp appends it and returns).
    if let Some(data) = fail_command::write_concern_failure(&mut state, request, passed) {
        let error = data
            .get_document("writeConcernError")
            .cloned()
            .unwrap_or_default();
        errors::add_write_concern_error(&mut reply, error, retryable);
        if let Ok(labels) = data.get_array("errorLabels") {
            let ok = reply.remove("ok");
            reply.remove("errorLabels");
            if !labels.is_empty() {
                reply.insert("errorLabels", labels.clone());
            }
            reply.extend(ok.map(|ok| ("ok".to_string(), ok)));
        }
        return respond(&state, member, reply);
    }
    let concern = Concern::of(&request.body);
    let alive = |state: &State| is_current(state, member, incarnation);
    let (state, waited) = wait(shared, state, member, term, &concern, alive);
    match waited {
        Ok(()) => {}
        Err(Unmet::Gone) => return Outcome::Gone,
        Err(Unmet::Error(error)) => errors::add_write_concern_error(&mut reply, error, retryable),
    }
    respond(&state, member, reply)
}

/// What a write waiting for its concern gets when its primary steps down. Two things race to
/// end the wait: the step-down wakes every waiter with PrimarySteppedDown, and the thread that
/// kills user operations to take the replication state lock interrupts it with
/// InterruptedDueToReplStateChange; `jstests/replsets/write_concern_after_stepdown.js`
/// accepts either. A seeded coin decides here.
fn stepped_down(state: &mut State) -> Document {
    match state.coin() {
        true => error(
            189,
            "PrimarySteppedDown",
            "Primary stepped down while waiting for replication",
        ),
        false => error(
            11602,
            "InterruptedDueToReplStateChange",
            "operation was interrupted because of a replication state change",
        ),
    }
}

fn error(code: i32, code_name: &str, errmsg: &str) -> Document {
    doc! { "code": code, "codeName": code_name, "errmsg": errmsg }
}

fn truncated(value: &Bson) -> Option<i64> {
    integer(value).or_else(|| value.as_f64().map(|f| f as i64))
}
