//! What a member answers to each command, given its role at that instant.
//!
//! Implemented: `hello`/`isMaster`, `insert`, `find`, `getMore`, `killCursors`,
//! `listIndexes` and `createIndexes` (`indexes.rs`: single-field, or compound and not
//! unique), `create` and `listCollections` (`collections.rs`: collections, capped and
//! time-series ones, views), `ping`, `endSessions`, `buildInfo`, and the test commands `configureFailPoint`
//! (`failpoint.rs`), `replSetStepDown` and `replSetFreeze` (`stepdown.rs`).
//! Every other command gets CommandNotFound, which a real server would not say for real
//! commands such as `aggregate`, `count`, `update` or `delete`.
//! `readConcern` is honoured by `find` ("majority" reads at the member's commit point,
//! anything else reads all it holds); `writeConcern` by `insert`, `create` and
//! `createIndexes` (see `write_concern`); `maxTimeMS` by a majority `find` waiting for a
//! snapshot and by `createIndexes`; `comment` and `hint` are accepted and ignored.

use std::sync::Arc;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use bson::{doc, spec::BinarySubtype, Binary, Bson, Document, RawDocumentBuf};

use crate::cluster::{Role, Shared, State};
use crate::collections::{self, Kind};
use crate::errors;
use crate::fail_command;
use crate::failpoint;
use crate::hello;
use crate::index_builds;
use crate::indexes;
use crate::insert;
use crate::query::Query;
use crate::stepdown;
use crate::store::encode;
use crate::wire::Request;

/// What the connection thread does after a command.
pub enum Outcome {
    Reply(RawDocumentBuf),
    /// Reply, and go on replying to the same request (a streamed `hello`).
    Stream(RawDocumentBuf),
    /// Close this connection without replying.
    HangUp,
    /// Kill the whole member without replying.
    Crash,
    /// The member died while the command waited; just go away.
    Gone,
}

pub fn handle(
    shared: &Arc<Shared>,
    member: usize,
    incarnation: u64,
    connection_id: i32,
    request: &Request,
) -> Outcome {
    let name = request.name().to_string();
    let mut state = shared.lock();
    *state.command_counts.entry(name.clone()).or_default() += 1;
    if name == "insert" {
        state.insert_count += 1;
    }
    // A hung member has read the request and never answers it.
    let step_downs_when_read = state.members[member].step_downs;
    let mut held = false;
    loop {
        if !is_current(&state, member, incarnation) {
            return Outcome::Gone;
        }
        if !state.members[member].hung {
            break;
        }
        held = true;
        state = shared.wait(state, Duration::from_secs(1));
    }
    shared.settle(&mut state);
    // A write the primary was holding when it stepped down is killed with it
    // (`jstests/replsets/stepdown_kill_other_ops.js`).
    let writes = matches!(name.as_str(), "insert" | "createIndexes" | "create");
    if held && writes && state.members[member].step_downs != step_downs_when_read {
        let retryable = request.body.get_i64("txnNumber").is_ok();
        let reply = errors::interrupted(retryable);
        return respond(&state, member, reply);
    }
    if shared.log {
        let role = state.members[member].role.name();
        eprintln!("[fake-rs {}] {role}: {name}", state.host(member));
    }
    let (mut state, passed) = match fail_command::before_command(
        shared,
        state,
        member,
        incarnation,
        connection_id,
        request,
    ) {
        Ok(passed) => passed,
        Err(outcome) => return outcome,
    };
    let reply = match name.as_str() {
        "hello" | "isMaster" | "ismaster" => {
            return hello::hello(shared, state, member, incarnation, connection_id, request)
        }
        "insert" => {
            let outcome = insert::insert(shared, state, member, incarnation, request, &passed);
            return fail_command::after_write(shared, member, request, &passed, outcome);
        }
        "find" => return find(shared, state, member, incarnation, request),
        "getMore" => get_more(&mut state, member, request),
        "killCursors" => kill_cursors(&mut state, member, request),
        "listIndexes" => indexes::list(&mut state, member, request),
        "listCollections" => collections::list(&mut state, member, request),
        "create" => {
            let outcome = collections::create(shared, state, member, incarnation, request, &passed);
            return fail_command::after_write(shared, member, request, &passed, outcome);
        }
        "createIndexes" => {
            let outcome =
                index_builds::create(shared, state, member, incarnation, request, &passed);
            return fail_command::after_write(shared, member, request, &passed, outcome);
        }
        "ping" | "endSessions" => raw(doc! { "ok": 1.0 }),
        "configureFailPoint" => raw(failpoint::configure(&mut state, member, request)),
        "replSetStepDown" => return stepdown::step_down(shared, state, member, request),
        "replSetFreeze" => raw(stepdown::freeze(&mut state, member, request)),
        "buildInfo" | "buildinfo" => raw(build_info()),
        "setParameter" => raw(set_parameter(&mut state, member, request)),
        other => raw(errors::command_error(
            59,
            &format!("no such command: '{other}'"),
            false,
        )),
    };
    Outcome::Reply(finish(&state, member, reply))
}

pub fn is_current(state: &State, member: usize, incarnation: u64) -> bool {
    let m = &state.members[member];
    !state.shutting_down && m.up && m.incarnation == incarnation
}

/// `find`. The query runs outside the lock on a snapshot, so a big sort does not stall
/// heartbeats; the cursor is registered afterwards if the member is still the same one.
fn find(
    shared: &Shared,
    mut state: MutexGuard<'_, State>,
    member: usize,
    incarnation: u64,
    request: &Request,
) -> Outcome {
    if let Err(refusal) = readable(&state, member, request) {
        return respond(&state, member, refusal);
    }
    let Some(ns) = namespace(request, "find") else {
        return respond(&state, member, errors::invalid_namespace());
    };
    let ns = match viewed(&state, member, ns) {
        Ok(ns) => ns,
        Err(refusal) => return respond(&state, member, refusal),
    };
    let query = match Query::parse(&request.body) {
        Ok(query) => query,
        Err((code, message)) => {
            return respond(&state, member, errors::command_error(code, &message, false))
        }
    };
    let majority = request
        .body
        .get_document("readConcern")
        .and_then(|rc| rc.get_str("level"))
        == Ok("majority");
    if majority {
        // No committed snapshot yet (just restarted, or rolled back): the read waits for one,
        // interruptibly (`read_concern_mongod.cpp`, `waitForReadConcernImpl`).
        let deadline = max_time(&request.body).map(|t| Instant::now() + t);
        loop {
            if !is_current(&state, member, incarnation) {
                return Outcome::Gone;
            }
            let replica = state.replica(member);
            if replica.committed > 0 || replica.oplog.is_empty() {
                break;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return respond(&state, member, errors::max_time_expired());
            }
            let left = deadline.map_or(Duration::from_secs(1), |d| d - now);
            state = shared.wait(state, left);
        }
    }
    let snapshot = state.replica(member).read(&ns, majority);
    drop(state);

    let results = query.run(snapshot);

    let mut state = shared.lock();
    if !is_current(&state, member, incarnation) {
        return Outcome::Gone;
    }
    let Query {
        projection,
        batch_size,
        single_batch,
        ..
    } = query;
    let cursor =
        state.members[member]
            .cursors
            .open(&ns, results, projection, batch_size, single_batch);
    Outcome::Reply(finish(&state, member, cursor_reply(cursor)))
}

/// The collection a `find` on `ns` reads: `ns`, or for a view the collection it is on, when
/// its pipeline is empty; the simulated set runs no pipelines.
fn viewed(state: &State, member: usize, mut ns: String) -> Result<String, Document> {
    let db = ns.split_once('.').map_or("", |(db, _)| db).to_string();
    // A view of a view of ...: mongod allows a depth of 20 (`ViewGraph::kMaxViewDepth`).
    for _ in 0..20 {
        let store = &state.replica(member).store;
        match store.collection(&ns).map(|c| &c.kind) {
            Some(Kind::View { on, pipeline }) if pipeline.is_empty() => ns = format!("{db}.{on}"),
            Some(Kind::View { .. }) => {
                let message = "the simulated replica set does not run the pipeline of a view";
                return Err(errors::command_error(2, message, false));
            }
            _ => return Ok(ns),
        }
    }
    let message = "View depth too deep or view cycle detected; maximum depth is 20";
    Err(errors::command_error(165, message, false))
}

/// Served by whichever member holds the cursor, whatever its role now: reads on a member
/// that stepped down keep working, as on 4.2+.
fn get_more(state: &mut State, member: usize, request: &Request) -> RawDocumentBuf {
    let Ok(id) = request.body.get_i64("getMore") else {
        return raw(errors::command_error(14, "cursor id must be a long", false));
    };
    let batch_size = request
        .body
        .get("batchSize")
        .and_then(integer)
        .and_then(|n| usize::try_from(n).ok());
    match state.members[member].cursors.get_more(id, batch_size) {
        Some(cursor) => cursor_reply(cursor),
        None => raw(errors::command_error(
            43,
            &format!("cursor id {id} not found"),
            false,
        )),
    }
}

fn kill_cursors(state: &mut State, member: usize, request: &Request) -> RawDocumentBuf {
    let ids: Vec<i64> = request
        .body
        .get_array("cursors")
        .map(|ids| ids.iter().filter_map(Bson::as_i64).collect())
        .unwrap_or_default();
    let (killed, not_found) = state.members[member].cursors.kill(&ids);
    raw(doc! {
        "cursorsKilled": killed,
        "cursorsNotFound": not_found,
        "cursorsAlive": [],
        "cursorsUnknown": [],
        "ok": 1.0,
    })
}

/// `setParameter`, for the one parameter the simulated set has: `internalInsertMaxBatchSize`,
/// as `jstests/replsets/no_disconnect_on_stepdown.js` sets it to cut an insert into batches.
fn set_parameter(state: &mut State, member: usize, request: &Request) -> Document {
    let size = request
        .body
        .get("internalInsertMaxBatchSize")
        .and_then(integer);
    match size {
        Some(size) if size > 0 => {
            let m = &mut state.members[member];
            let was = std::mem::replace(&mut m.insert_batch_size, size as usize);
            doc! { "was": was as i32, "ok": 1.0 }
        }
        _ => {
            let name = request.body.keys().nth(1).cloned().unwrap_or_default();
            let message = format!(
                "attempted to set unrecognized parameter [{name}], use help:true to see options "
            );
            errors::command_error(72, &message, false)
        }
    }
}

fn build_info() -> Document {
    doc! {
        "version": "7.0.0",
        "gitVersion": "0000000000000000000000000000000000000000",
        "versionArray": [7, 0, 0, 0],
        "bits": 64,
        "debug": false,
        "maxBsonObjectSize": 16 * 1024 * 1024,
        "ok": 1.0,
    }
}

/// Reads go to the primary unless `$readPreference` allows a secondary: in OP_MSG that is
/// how a client grants secondaryOk.
///
/// A writable primary serves every read. Elsewhere a read without secondaryOk gets 13435; with
/// it, a SECONDARY (or a primary not yet writable) serves it, and a member in STARTUP2,
/// RECOVERING or ROLLBACK refuses it with 13436.
pub fn readable(state: &State, member: usize, request: &Request) -> Result<(), Document> {
    if state.writable_term(member).is_some() {
        return Ok(());
    }
    let mode = request
        .body
        .get_document("$readPreference")
        .and_then(|rp| rp.get_str("mode"));
    if !matches!(mode, Ok(mode) if mode != "primary") {
        return Err(errors::not_primary_no_secondary_ok());
    }
    let role = state.members[member].role;
    match role.serves_reads() {
        true => Ok(()),
        false => Err(errors::not_primary_or_secondary(role == Role::Recovering)),
    }
}

/// The command's `maxTimeMS`, if it set one above 0.
pub fn max_time(body: &Document) -> Option<Duration> {
    let ms = integer(body.get("maxTimeMS")?)?;
    (ms > 0).then(|| Duration::from_millis(ms as u64))
}

/// A whole number however it is typed: an int32, an int64, or a double with no fraction that
/// an int64 holds, as the server's integer parsers take them (`BSONElement::
/// parseIntegerElementToLong`, behind the IDL's `safeInt64`). Where the server truncates a
/// fraction instead (`safeNumberLong`), the caller does that itself.
pub fn integer(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        // 2^63 is the first double past i64::MAX.
        Bson::Double(f) if f.fract() == 0.0 && f.abs() < -(i64::MIN as f64) => Some(*f as i64),
        _ => None,
    }
}

/// `db.collection` from `$db` and the command's collection argument.
pub fn namespace(request: &Request, command: &str) -> Option<String> {
    let collection = request.body.get_str(command).ok()?;
    let db = request.body.get_str("$db").unwrap_or("test");
    Some(format!("{db}.{collection}"))
}

/// The reply `member` sends: `doc` with what every reply carries (`finish`).
pub fn respond(state: &State, member: usize, doc: Document) -> Outcome {
    Outcome::Reply(finish(state, member, raw(doc)))
}

/// The term `member` takes writes in, and the namespace the command names; or the refusal
/// of a write command sent to a member that is not a writable primary, or that names none.
pub fn write_target(
    state: &State,
    member: usize,
    request: &Request,
    command: &str,
) -> Result<(i64, String), Document> {
    let has_txn_number = request.body.get_i64("txnNumber").is_ok();
    let term = state
        .writable_term(member)
        .ok_or_else(|| errors::not_primary(has_txn_number))?;
    let ns = namespace(request, command).ok_or_else(errors::invalid_namespace)?;
    Ok((term, ns))
}

pub fn cursor_reply(cursor: RawDocumentBuf) -> RawDocumentBuf {
    let mut reply = RawDocumentBuf::new();
    reply.append("cursor", cursor);
    reply.append("ok", 1.0);
    reply
}

/// Adds what a replica-set member attaches to every reply: `topologyVersion` to an error
/// that says it is not (or no longer) primary, whose code is in the server's NotPrimaryError
/// category, top-level or in `writeConcernError` (`service_entry_point_common.cpp`,
/// `appendErrorLabelsAndTopologyVersion`); and the cluster time gossip, with the all-zero
/// signature of a deployment without keyfile auth.
pub fn finish(state: &State, member: usize, mut reply: RawDocumentBuf) -> RawDocumentBuf {
    let code = |doc: &bson::RawDocument| doc.get_i32("code").ok();
    let failed = match reply.get_f64("ok") {
        Ok(0.0) => code(&reply),
        _ => reply.get_document("writeConcernError").ok().and_then(code),
    };
    if failed.is_some_and(errors::is_not_primary_error) {
        let version = hello::topology_version(state.members[member].topology);
        reply.append("topologyVersion", raw(version));
    }
    let time = state.last_op();
    let signature = doc! {
        "hash": Binary { subtype: BinarySubtype::Generic, bytes: vec![0; 20] },
        "keyId": 0_i64,
    };
    reply.append(
        "$clusterTime",
        raw(doc! { "clusterTime": time, "signature": signature }),
    );
    reply.append("operationTime", time);
    reply
}

pub fn raw(doc: Document) -> RawDocumentBuf {
    encode(&doc)
}
