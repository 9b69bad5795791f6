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
//! or ROLLBACK says `secondary: false`.
//!
//! Awaitable `hello` (the server-monitoring specification, "Awaitable hello Protocol";
//! `jstests/noPassthrough/awaitable_hello.js`): a request with `topologyVersion` and
//! `maxAwaitTimeMS` whose `topologyVersion` is the member's own is held until the member's
//! changes or `maxAwaitTimeMS` passes; one from another process or with an older counter is
//! answered at once. With the `exhaustAllowed` flag the reply carries `moreToCome` and the
//! member goes on replying on the same connection, each reply held the same way, until the
//! connection closes (the server streams; the specification says it MAY).

use std::time::{Duration, Instant};

use bson::{doc, Bson, DateTime, Document, RawDocumentBuf, Timestamp};

use crate::cluster::{Phase, Role, Shared, State, TopologyVersion};
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
    let awaited = match awaited(&request.body, state.members[member].topology) {
        Ok(awaited) => awaited,
        Err(refusal) => return Outcome::Reply(raw(refusal)),
    };
    if let Some((seen, wait)) = awaited {
        let deadline = Instant::now() + wait;
        loop {
            if !is_current(&state, member, incarnation) {
                return Outcome::Gone;
            }
            let m = &state.members[member];
            let now = Instant::now();
            // A hung process answers nothing, however long the wait was meant to be.
            if !m.hung && (m.topology != seen || now >= deadline) {
                break;
            }
            let left = if m.hung {
                Duration::from_secs(1)
            } else {
                deadline - now
            };
            state = shared.wait(state, left);
        }
    }
    let reply = reply(&state, &shared.set_name, member, connection_id, request);
    match awaited.is_some() && request.exhaust_allowed {
        true => Outcome::Stream(reply),
        false => Outcome::Reply(reply),
    }
}

/// The `topologyVersion` a request awaits a change of, and for how long; `None` for a plain
/// `hello`, answered at once. The checks are the server's (`awaitable_hello.js`).
fn awaited(
    body: &Document,
    mine: TopologyVersion,
) -> Result<Option<(TopologyVersion, Duration)>, Document> {
    let version = body.get_document("topologyVersion").ok();
    let max_await = body.get("maxAwaitTimeMS").and_then(whole);
    let (version, max_await) = match (version, max_await) {
        (None, None) => return Ok(None),
        (Some(version), Some(max_await)) => (version, max_await),
        (Some(_), None) => {
            let message = "A request with a 'topologyVersion' must include 'maxAwaitTimeMS'";
            return Err(errors::command_error(31368, message, false));
        }
        (None, Some(_)) => {
            let message = "A request with 'maxAwaitTimeMS' must include a 'topologyVersion'";
            return Err(errors::command_error(31368, message, false));
        }
    };
    if max_await < 0 {
        let message = "'maxAwaitTimeMS' must be a non-negative integer";
        return Err(errors::command_error(31373, message, false));
    }
    let (Ok(process_id), Some(counter)) = (
        version.get_object_id("processId"),
        version.get("counter").and_then(whole),
    ) else {
        return Ok(None);
    };
    if process_id != mine.process_id || counter < mine.counter {
        return Ok(None);
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
    Ok(Some((mine, wait)))
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
        let writable = m.role == Role::Primary(Phase::Writable);
        let secondary = matches!(m.role, Role::Secondary | Role::Primary(_)) && !writable;
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
