//! `replSetStepDown` and `replSetFreeze`, the admin commands a test sends to move the primary
//! on purpose, answered as a 7.0 mongod answers them, so that one test body steps a primary
//! down the same way in the fake and in a real set.
//!
//! From mongodb/mongo `src/mongo/db/repl/repl_set_commands.cpp` (argument checks),
//! `replication_coordinator_impl.cpp` `stepDown` (10107 "not primary so can't step down"; the
//! old primary may not stand again for the step-down period; without `force`, an election
//! handoff: `replSetStepUp` is sent at once to a caught-up secondary, which refuses if it is
//! frozen) and `topology_coordinator.cpp` `prepareFreezeResponse` (95 NotSecondary on a
//! primary, `info: "unfreezing"` for 0, a warning for 1 second). Connections stay open, as on
//! 4.2+.
//!
//! Where no handoff happens (a forced step-down, or the chosen secondary is frozen), the
//! secondaries stand for election when their election timers fire (`election`); on a
//! scripted set, which has none, nobody does. A secondary is caught up when it holds the
//! primary's newest entry, so the non-forced catch-up wait fails when none does within the
//! catch-up period (one that lags, or is cut off, or none answering).

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use bson::{doc, Bson, Document};

use crate::cluster::{Shared, State};
use crate::commands::{respond, Outcome};
use crate::election::StepDown;
use crate::failpoint::error;
use crate::wire::Request;

/// `{replSetStepDown: <secs>, secondaryCatchUpPeriodSecs, force}`.
pub fn step_down(
    shared: &Shared,
    state: MutexGuard<'_, State>,
    member: usize,
    request: &Request,
) -> Outcome {
    let body = &request.body;
    let force = truthy(body.get("force"));
    let (step_down_secs, catch_up_secs) = match periods(body, force) {
        Ok(periods) => periods,
        Err(reply) => return respond(&state, member, reply),
    };
    let periods = (
        Duration::from_secs(step_down_secs),
        Duration::from_secs(catch_up_secs),
    );
    match hand_over(shared, state, member, periods, force) {
        (state, Ok(())) => respond(&state, member, doc! { "ok": 1.0 }),
        (state, Err(HandOver::NoneCaughtUp(_))) => {
            let when = bson::DateTime::now()
                .try_to_rfc3339_string()
                .unwrap_or_default();
            let message = format!(
                "No electable secondaries caught up as of {when}. Please use the \
                 replSetStepDown command with the argument {{force: true}} to force node \
                 to step down."
            );
            respond(&state, member, error(262, "ExceededTimeLimit", &message))
        }
        (state, Err(HandOver::NotPrimary)) => respond(&state, member, not_primary()),
    }
}

/// Why a step-down without `force` did not happen.
#[derive(Clone, Debug, PartialEq)]
pub enum HandOver {
    /// The member is no writable primary.
    NotPrimary,
    /// No secondary held the primary's newest write within the catch-up period.
    NoneCaughtUp(Duration),
}

impl std::fmt::Display for HandOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandOver::NotPrimary => f.write_str("no writable primary to step down"),
            HandOver::NoneCaughtUp(period) => write!(
                f,
                "no secondary caught up with the primary within {} s, so it stays primary",
                period.as_secs_f64()
            ),
        }
    }
}

/// What `replSetStepDown` does once its arguments are checked: without `force`, waits up to
/// the catch-up period for a secondary that holds the primary's newest entry; then steps
/// `member` down, keeps it from standing for the step-down period, and, without `force`,
/// hands over: the caught-up secondary stands at once (`replSetStepUp`).
pub fn hand_over<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    member: usize,
    (step_down, catch_up): (Duration, Duration),
    force: bool,
) -> (MutexGuard<'a, State>, Result<(), HandOver>) {
    if state.writable_term(member).is_none() {
        return (state, Err(HandOver::NotPrimary));
    }
    if !force {
        let deadline = Instant::now() + catch_up;
        while caught_up(&state, member).is_none() {
            let now = Instant::now();
            if now >= deadline || state.shutting_down {
                return (state, Err(HandOver::NoneCaughtUp(catch_up)));
            }
            state = shared.wait(state, deadline - now);
            shared.settle(&mut state);
        }
        // The wait let go of the lock: the member may have stepped down meanwhile.
        if state.writable_term(member).is_none() {
            return (state, Err(HandOver::NotPrimary));
        }
    }
    let now = Instant::now();
    state.step_down(member, StepDown::Command, now);
    state.members[member].frozen_until = Some(now + step_down);
    if !force {
        // The handoff: `replSetStepUp`, a real election without the timer or a dry run.
        if let Some(candidate) = caught_up(&state, member).filter(|&c| state.electable(c, now)) {
            state.stand(candidate, now);
        }
    }
    shared.changed.notify_all();
    (state, Ok(()))
}

fn not_primary() -> Document {
    error(
        10107,
        "NotWritablePrimary",
        "not primary so can't step down",
    )
}

/// `{replSetFreeze: <secs>}`: the member will not stand for election for `secs`; 0 unfreezes.
pub fn freeze(state: &mut State, member: usize, request: &Request) -> Document {
    if state.writable_term(member).is_some() {
        let message = "Cannot freeze node when primary or running for election, state: Primary";
        return error(95, "NotSecondary", message);
    }
    let secs = request
        .body
        .iter()
        .next()
        .and_then(|(_, v)| whole(v))
        .unwrap_or(0);
    let mut reply = Document::new();
    let now = Instant::now();
    let m = &mut state.members[member];
    if secs == 0 {
        m.frozen_until = None;
        reply.insert("info", "unfreezing");
    } else {
        if secs == 1 {
            reply.insert("warning", "you really want to freeze for only 1 second?");
        }
        let until = now + Duration::from_secs(secs.max(0) as u64);
        m.frozen_until = Some(m.frozen_until.map_or(until, |t| t.max(until)));
    }
    reply.insert("ok", 1.0);
    reply
}

/// The step-down and catch-up periods, checked as the command checks them.
fn periods(body: &Document, force: bool) -> Result<(u64, u64), Document> {
    let bad = |message: &str| error(2, "BadValue", message);
    let first = body.iter().next().and_then(|(_, v)| whole(v)).unwrap_or(0);
    let step_down = match first {
        0 => 60,
        n if n < 0 => return Err(bad("stepdown period must be a positive integer")),
        n => n,
    };
    let catch_up = match body.get("secondaryCatchUpPeriodSecs") {
        None => {
            if force {
                0
            } else {
                10
            }
        }
        Some(value) => whole(value).ok_or_else(|| {
            let message = "Expected field \"secondaryCatchUpPeriodSecs\" to have numeric type";
            error(14, "TypeMismatch", message)
        })?,
    };
    if catch_up < 0 {
        return Err(bad(
            "secondaryCatchUpPeriodSecs period must be a positive or absent",
        ));
    }
    if step_down < catch_up {
        return Err(bad(
            "stepdown period must be longer than secondaryCatchUpPeriodSecs",
        ));
    }
    Ok((step_down as u64, catch_up as u64))
}

/// The handoff candidate: the lowest-numbered other member the primary reaches that holds
/// its newest entry.
fn caught_up(state: &State, primary: usize) -> Option<usize> {
    let newest = state.replica(primary).last();
    (0..state.members.len())
        .find(|&m| state.linked(primary, m) && state.replica(m).last() >= newest)
}

fn truthy(value: Option<&Bson>) -> bool {
    match value {
        None | Some(Bson::Null) | Some(Bson::Undefined) => false,
        Some(Bson::Boolean(b)) => *b,
        Some(Bson::Int32(n)) => *n != 0,
        Some(Bson::Int64(n)) => *n != 0,
        Some(Bson::Double(f)) => *f != 0.0,
        Some(_) => true,
    }
}

fn whole(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(f) => Some(*f as i64),
        _ => None,
    }
}
