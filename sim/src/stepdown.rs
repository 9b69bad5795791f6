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
    let periods = match periods(body, force) {
        Ok(periods) => periods,
        Err(reply) => return respond(&state, member, reply),
    };
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
        (state, Err(HandOver::SteppedDown)) => {
            // `TopologyCoordinator::tryToStartStepDown`.
            let message = "While waiting for secondaries to catch up before stepping down, \
                           this node decided to step down for other reasons";
            respond(&state, member, error(189, "PrimarySteppedDown", message))
        }
        (state, Err(HandOver::NotPrimary)) => respond(&state, member, not_primary()),
    }
}

/// Why a step-down did not happen.
#[derive(Clone, Debug, PartialEq)]
pub enum HandOver {
    /// The member is no writable primary.
    NotPrimary,
    /// No secondary held the primary's newest write within the catch-up period.
    NoneCaughtUp(Duration),
    /// While it waited, the member stepped down for another reason (a newer term, no
    /// majority in sight) or died.
    SteppedDown,
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
            HandOver::SteppedDown => {
                f.write_str("the primary stepped down for another reason while it waited")
            }
        }
    }
}

/// What `replSetStepDown` does once its arguments are checked, as
/// `ReplicationCoordinatorImpl::stepDown` does it:
///
/// - At once the member stops taking writes, still PRIMARY: `autoGetRstlEnterStepDown` moves
///   `topologyVersion` and `hello` says `isWritablePrimary: false`, `secondary: false`, with
///   `primary` still itself (selfdriving-facts.md §3 "When the counter moves"), and taking the
///   RSTL kills the writes in flight (§4, `_killConflictingOpsOnStepUpAndStepDown`). Writes
///   sent meanwhile get 10107 while `replSetGetStatus` still says PRIMARY
///   (`jstests/replsets/stepdown_long_wait_time.js`).
/// - Then it waits, up to the catch-up period from the start, for a secondary that holds its
///   newest entry (`tryToStartStepDown`, `isSafeToStepDown`). With `force` it steps down
///   anyway once the period is over (`_canCompleteStepDownAttempt`: `forceNow = force && now >=
///   waitUntil`); the period is checked only after one attempt, so 0 still gets one.
/// - Without one in time it fails with 262 and takes writes again: `onExitGuard` runs
///   `abortFn` and `_updateMemberStateFromTopologyCoordinator`, which moves `topologyVersion`
///   once more. If it stepped down meanwhile for another reason, 189 (`tryToStartStepDown`).
/// - Otherwise it steps down (`topologyVersion` moves at SECONDARY), may not stand until the
///   step-down period from the start is over (`_stepDownUntil = stepDownUntil`, computed from
///   `startTime`), and, without `force`, hands over: the caught-up secondary stands at once
///   (`_performElectionHandoff`, `replSetStepUp`).
pub fn hand_over<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    member: usize,
    (step_down, catch_up): (Duration, Duration),
    force: bool,
) -> (MutexGuard<'a, State>, Result<(), HandOver>) {
    let Some(term) = state.writable_term(member) else {
        return (state, Err(HandOver::NotPrimary));
    };
    let start = Instant::now();
    let wait_until = later(start, catch_up);
    let step_down_until = later(start, step_down);
    let incarnation = state.members[member].incarnation;
    {
        let m = &mut state.members[member];
        m.stepping_down = true;
        m.step_downs += 1;
        m.topology.counter += 1;
    }
    shared.changed.notify_all();
    loop {
        shared.settle(&mut state);
        let m = &state.members[member];
        if !m.up || m.incarnation != incarnation || state.leader_term(member) != Some(term) {
            return (state, Err(HandOver::SteppedDown));
        }
        let now = Instant::now();
        if (force && now >= wait_until) || caught_up(&state, member).is_some() {
            break;
        }
        if now >= wait_until || state.shutting_down {
            let m = &mut state.members[member];
            m.stepping_down = false;
            m.topology.counter += 1;
            shared.changed.notify_all();
            return (state, Err(HandOver::NoneCaughtUp(catch_up)));
        }
        state = shared.wait(state, wait_until - now);
    }
    let now = Instant::now();
    state.step_down(member, StepDown::Command, now);
    state.members[member].frozen_until = Some(step_down_until);
    if !force {
        // The handoff: `replSetStepUp`, a real election without the timer or a dry run.
        if let Some(candidate) = caught_up(&state, member).filter(|&c| state.electable(c, now)) {
            state.stand(candidate, now);
        }
    }
    shared.changed.notify_all();
    (state, Ok(()))
}

/// `start + period`, or as late as can be: a period too long for the clock never ends.
fn later(start: Instant, period: Duration) -> Instant {
    start
        .checked_add(period)
        .or_else(|| start.checked_add(FOREVER))
        .unwrap_or(start)
}

/// What stands in for a period the monotonic clock cannot hold: about a thousand years.
const FOREVER: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

fn not_primary() -> Document {
    error(
        10107,
        "NotWritablePrimary",
        "not primary so can't step down",
    )
}

/// `{replSetFreeze: <secs>}`: the member will not stand for election for `secs`; 0 unfreezes.
/// `TopologyCoordinator::prepareFreezeResponse` refuses unless the member is a follower, so a
/// primary in catch-up or drain is refused too; `CmdReplSetFreeze` reads the seconds with
/// `BSONElement::numberInt`.
pub fn freeze(state: &mut State, member: usize, request: &Request) -> Document {
    if state.members[member].role.is_primary() {
        let message = "Cannot freeze node when primary or running for election, state: Primary";
        return error(95, "NotSecondary", message);
    }
    let secs = request.body.iter().next().map_or(0, |(_, v)| number_int(v));
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
        // `_stepDownUntil = max(_stepDownUntil, now + Seconds(secs))`: a negative period
        // lies in the past and changes nothing.
        let until = later(now, Duration::from_secs(secs.max(0) as u64));
        m.frozen_until = Some(m.frozen_until.map_or(until, |t| t.max(until)));
    }
    reply.insert("ok", 1.0);
    reply
}

/// The step-down and catch-up periods, checked as `CmdReplSetStepDown` checks them
/// (`repl_set_commands.cpp`): the first element read with `numberLong`, then both periods
/// passed to `stepDown` as `Seconds` converted to `Milliseconds`, and added to the wall clock.
/// A period too large for either fails with 15 DurationOverflow (`duration.h`:
/// `duration_cast` and `Duration::operator+=` `uassert` on overflow) rather than wrapping.
fn periods(body: &Document, force: bool) -> Result<(Duration, Duration), Document> {
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
    let overflow = |message: String| error(15, "DurationOverflow", &message);
    let (Some(step_down_ms), Some(_)) = (step_down.checked_mul(1000), catch_up.checked_mul(1000))
    else {
        return Err(overflow(
            "Overflow casting from a lower-precision duration to a higher-precision duration"
                .to_string(),
        ));
    };
    let now_ms = bson::DateTime::now().timestamp_millis();
    if now_ms.checked_add(step_down_ms).is_none() {
        return Err(overflow(format!(
            "Overflow while adding {step_down_ms}ms to {now_ms}ms"
        )));
    }
    Ok((
        Duration::from_secs(step_down as u64),
        Duration::from_secs(catch_up as u64),
    ))
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

/// `BSONElement::numberInt`: an int64 is truncated to its low 32 bits, a double cast (out of
/// range it is undefined in C++; here it saturates), a bool is 0 or 1, anything else 0.
fn number_int(value: &Bson) -> i32 {
    match value {
        Bson::Int32(n) => *n,
        Bson::Int64(n) => *n as i32,
        Bson::Double(f) => *f as i32,
        Bson::Boolean(b) => i32::from(*b),
        _ => 0,
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
