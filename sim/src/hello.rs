//! `hello` (and the legacy `isMaster`): what a member says it is, which is all the driver's
//! monitoring goes by, and the awaitable form that lets the driver hear of a change within a
//! round trip instead of at its next poll.
//!
//! The reply is a 7.0 replica-set member's (`topology_coordinator.cpp`, `fillHelloForReplSet`;
//! `hello_response.cpp`, `addToBSON`; `replication_info.cpp`): `topologyVersion` first, then
//! the set's hosts and name, its role, the primary it knows of, its `electionId` when it is
//! primary, and its last write. A primary that is still catching up or draining says
//! `isWritablePrimary: false` and `secondary: true` and names itself as `primary`
//! (`jstests/replsets/awaitable_hello_stepdown_stepup.js`); a member in STARTUP2, RECOVERING
//! or ROLLBACK says `secondary: false`, and so does a primary whose `replSetStepDown` waits
//! for a secondary (still naming itself `primary`).
//!
//! Awaitable `hello` (the server-monitoring specification, "Awaitable hello Protocol";
//! `jstests/noPassthrough/awaitable_hello.js`): a request with `topologyVersion` and
//! `maxAwaitTimeMS` whose `topologyVersion` is the member's own is held until the member's
//! changes or `maxAwaitTimeMS` passes; one from another process or with an older counter is
//! answered at once. With the `exhaustAllowed` flag the reply, held or not, carries `moreToCome` and the
//! member goes on replying on the same connection, each reply held the same way, until the
//! connection closes (the server streams; the specification says it MAY).

use std::time::{Duration, Instant};

use bson::{doc, Bson, DateTime, Document, RawDocumentBuf, Timestamp};

use crate::cluster::{Role, Shared, State, TopologyVersion};
use crate::commands::{is_current, raw, Outcome};
use crate::election::election_id;
use crate::errors;
use crate::oplog::OpTime;
use crate::wire::{Request, MAX_MESSAGE_SIZE};

/// `hello`, `isMaster` or `ismaster`, held while its `topologyVersion` is current.
pub fn hello<'a>(
    shared: &'a Shared,
    mut state: std::sync::MutexGuard<'a, State>,
    member: usize,
    incarnation: u64,
    connection_id: i32,
    request: &Request,
) -> Outcome {
    let awaited = match awaited(
        &request.body,
        request.exhaust_allowed,
        state.members[member].topology,
    ) {
        Ok(awaited) => awaited,
        Err(refusal) => return Outcome::Reply(raw(refusal)),
    };
    if let Awaited::Hold(seen, wait) = awaited {
        let deadline = Instant::now().checked_add(wait);
        loop {
            if !is_current(&state, member, incarnation) {
                return Outcome::Gone;
            }
            let m = &state.members[member];
            let now = Instant::now();
            let over = deadline.is_some_and(|d| now >= d);
            // A hung process answers nothing, however long the wait was meant to be.
            if !m.hung && (m.topology != seen || over) {
                break;
            }
            let left = match deadline {
                Some(d) if !m.hung => (d - now).min(Duration::from_secs(1)),
                _ => Duration::from_secs(1),
            };
            state = shared.wait(state, left);
        }
    }
    let reply = reply(&state, &shared.set_name, member, connection_id, request);
    // With `exhaustAllowed` the reply streams whether it waited or not: one to an old or
    // another process's `topologyVersion` is sent at once and the stream goes on from the
    // current one (`replication_info.cpp`: `if (opCtx->isExhaust())` ...
    // `setNextInvocation`, with the current `topologyVersion` in place of the client's).
    match awaited != Awaited::Plain && request.exhaust_allowed {
        true => Outcome::Stream(reply),
        false => Outcome::Reply(reply),
    }
}

/// What a `hello` asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Awaited {
    /// No `topologyVersion`: answered at once, and never streamed.
    Plain,
    /// Awaitable, with an old or another process's `topologyVersion`: answered at once.
    Now,
    /// Awaitable with the member's own `topologyVersion`: held until it changes or the wait
    /// is over.
    Hold(TopologyVersion, Duration),
}

/// The `topologyVersion` a request awaits a change of, and for how long. The checks, in
/// the server's order (`replication_info.cpp` `CmdHello::run`; `awaitable_hello.js`), before
/// `awaitHelloResponse` compares versions (`replication_coordinator_impl.cpp`).
fn awaited(body: &Document, exhaust: bool, mine: TopologyVersion) -> Result<Awaited, Document> {
    let version = body.get_document("topologyVersion").ok();
    let max_await = body.get("maxAwaitTimeMS").and_then(whole);
    let awaitable = match (version, max_await) {
        (None, None) => None,
        (Some(version), Some(max_await)) => Some((version, max_await)),
        (Some(_), None) => {
            let message = "A request with a 'topologyVersion' must include 'maxAwaitTimeMS'";
            return Err(errors::command_error(31368, message, false));
        }
        (None, Some(_)) => {
            let message = "A request with 'maxAwaitTimeMS' must include a 'topologyVersion'";
            return Err(errors::command_error(31368, message, false));
        }
    };
    let counter = awaitable.and_then(|(version, _)| version.get("counter").and_then(whole));
    if counter.is_some_and(|c| c < 0) {
        let message = "topologyVersion must have a non-negative counter";
        return Err(errors::command_error(31372, message, false));
    }
    if awaitable.is_some_and(|(_, max_await)| max_await < 0) {
        let message = "'maxAwaitTimeMS' must be a non-negative integer";
        return Err(errors::command_error(31373, message, false));
    }
    // An exhaust `hello` must be awaitable: the driver sets `exhaustAllowed` only then.
    if exhaust && awaitable.is_none() {
        let message = "An isMaster or hello request with exhaust must specify 'maxAwaitTimeMS'";
        return Err(errors::command_error(51756, message, false));
    }
    let Some((version, max_await)) = awaitable else {
        return Ok(Awaited::Plain);
    };
    let (Ok(process_id), Some(counter)) = (version.get_object_id("processId"), counter) else {
        return Ok(Awaited::Now);
    };
    if process_id != mine.process_id || counter < mine.counter {
        return Ok(Awaited::Now);
    }
    if counter > mine.counter {
        let message = format!(
            "Received a topology version with the same process ID and a higher counter than \
             the current topology version. Current: {{ processId: {}, counter: {} }}, \
             received: {{ processId: {process_id}, counter: {counter} }}",
            mine.process_id, mine.counter
        );
        return Err(errors::command_error(31382, &message, false));
    }
    let wait = Duration::from_millis(max_await as u64);
    Ok(Awaited::Hold(mine, wait))
}

/// The request the member answers next on a streaming connection: the same, awaiting a
/// change of the `topologyVersion` it was just sent.
pub fn next_in_stream(request: &Request, sent: &RawDocumentBuf) -> Option<Request> {
    let version = sent.get_document("topologyVersion").ok()?;
    let version = version.to_raw_document_buf().to_document().ok()?;
    let mut body = request.body.clone();
    body.insert("topologyVersion", version);
    Some(Request {
        request_id: request.request_id,
        more_to_come: false,
        exhaust_allowed: true,
        body,
        sequences: Vec::new(),
    })
}

/// The reply itself, in the server's field order (`replication_info.cpp`, then
/// `HelloResponse::addToBSON`).
fn reply(
    state: &State,
    set_name: &str,
    member: usize,
    connection_id: i32,
    request: &Request,
) -> RawDocumentBuf {
    let m = &state.members[member];
    let primary_field = if request.name() == "hello" {
        "isWritablePrimary"
    } else {
        "ismaster"
    };
    let mut reply = Document::new();
    if request.body.get_bool("helloOk") == Ok(true) {
        reply.insert("helloOk", true);
    }
    reply.insert("topologyVersion", topology_version(m.topology));
    if m.role == Role::Startup {
        // Its config is not loaded yet: no set name, no hosts.
        reply.insert(primary_field, false);
        reply.insert("secondary", false);
        reply.insert("info", "Does not have a valid replica set config");
        reply.insert("isreplicaset", true);
    } else {
        let writable = state.writable_term(member).is_some();
        // A primary whose `replSetStepDown` waits for a secondary says neither
        // (`stepdown::hand_over`; selfdriving-facts.md §3 "When the counter moves").
        let secondary =
            matches!(m.role, Role::Secondary | Role::Primary(_)) && !writable && !m.stepping_down;
        reply.insert("hosts", state.hosts());
        reply.insert("setName", set_name);
        reply.insert("setVersion", 1);
        reply.insert(primary_field, writable);
        reply.insert("secondary", secondary);
        if let Some(primary) = state.known_primary(member) {
            reply.insert("primary", state.host(primary));
        }
        reply.insert("me", state.host(member));
        if m.role.is_primary() {
            reply.insert("electionId", election_id(m.term));
        }
        reply.insert("lastWrite", last_write(state, member));
    }
    reply.insert("maxBsonObjectSize", 16 * 1024 * 1024);
    reply.insert("maxMessageSizeBytes", MAX_MESSAGE_SIZE as i32);
    reply.insert("maxWriteBatchSize", 100_000);
    reply.insert("localTime", DateTime::now());
    reply.insert("logicalSessionTimeoutMinutes", 30);
    reply.insert("connectionId", connection_id);
    reply.insert("minWireVersion", 0);
    reply.insert("maxWireVersion", 21);
    reply.insert("readOnly", false);
    reply.insert("ok", 1.0);
    raw(reply)
}

/// `{opTime, lastWriteDate, majorityOpTime, majorityWriteDate}`, the majority pair only once
/// the member has a committed snapshot (a restarted member learns one from the others).
fn last_write(state: &State, member: usize) -> Document {
    let replica = state.replica(member);
    let (last, date) = op_time(replica.last());
    let mut last_write = doc! { "opTime": last, "lastWriteDate": date };
    if replica.committed > 0 {
        let (majority, date) = op_time(replica.commit_point());
        last_write.insert("majorityOpTime", majority);
        last_write.insert("majorityWriteDate", date);
    }
    last_write
}

pub fn topology_version(version: TopologyVersion) -> Document {
    doc! { "processId": version.process_id, "counter": version.counter }
}

/// `{ts, t}` and its wall-clock date, for `lastWrite`; the null OpTime before any write.
fn op_time(optime: Option<OpTime>) -> (Document, DateTime) {
    let (ts, t) = optime.map_or(
        (
            Timestamp {
                time: 0,
                increment: 0,
            },
            -1,
        ),
        |o| (o.ts, o.term),
    );
    let date = DateTime::from_millis(i64::from(ts.time) * 1000);
    (doc! { "ts": ts, "t": t }, date)
}

fn whole(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(f) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    }
}
