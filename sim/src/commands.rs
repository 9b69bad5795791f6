//! What a member answers to each command, given its role at that instant.
//!
//! Implemented: `hello`/`isMaster`, `insert`, `find`, `getMore`, `killCursors`,
//! `listIndexes` and `createIndexes` (`indexes.rs`: single-field, or compound and not
//! unique), `ping`, `endSessions`, `buildInfo`, and the test commands `configureFailPoint`
//! (`failpoint.rs`), `replSetStepDown` and `replSetFreeze` (`stepdown.rs`).
//! Every other command gets CommandNotFound, which a real server would not say for real
//! commands such as `aggregate`, `count`, `update` or `delete`.
//! `readConcern` is honoured by `find` ("majority" reads at the member's commit point,
//! anything else reads all it holds) and `writeConcern` by `insert` (see `write_concern`);
//! `maxTimeMS`, `comment` and `hint` are accepted and ignored.

use std::sync::Arc;
use std::sync::MutexGuard;
use std::time::Duration;

use bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime, Document, RawDocumentBuf, Timestamp};

use crate::cluster::{Shared, State};
use crate::election::election_id;
use crate::errors;
use crate::fail_command;
use crate::failpoint;
use crate::indexes;
use crate::oplog::OpTime;
use crate::query::{to_bson, Query};
use crate::stepdown;
use crate::store::encode;
use crate::wire::{Request, MAX_MESSAGE_SIZE};
use crate::write_concern::{self, Concern, Unmet};

/// What the connection thread does after a command.
pub enum Outcome {
    Reply(RawDocumentBuf),
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
    let term_when_read = state.writable_term(member);
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
    let writes = matches!(name.as_str(), "insert" | "createIndexes");
    if held && writes && term_when_read.is_some() && state.writable_term(member) != term_when_read {
        let retryable = request.body.get_i64("txnNumber").is_ok();
        let message = "operation was interrupted because of a replication state change";
        let reply = errors::command_error(11602, message, retryable);
        return Outcome::Reply(finish(&state, raw(reply)));
    }
    if shared.log {
        let role = if state.writable_term(member).is_some() {
            "primary"
        } else {
            "secondary"
        };
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
            hello(&state, &shared.set_name, member, connection_id, request)
        }
        "insert" => {
            let outcome = insert(shared, state, member, incarnation, request);
            return fail_command::after_write(shared, member, request, &passed, outcome);
        }
        "find" => return find(shared, state, member, incarnation, request),
        "getMore" => get_more(&mut state, member, request),
        "killCursors" => kill_cursors(&mut state, member, request),
        "listIndexes" => indexes::list(&mut state, member, request),
        "createIndexes" => indexes::create(&mut state, member, request),
        "ping" | "endSessions" => raw(doc! { "ok": 1.0 }),
        "configureFailPoint" => raw(failpoint::configure(&mut state, member, request)),
        "replSetStepDown" => return stepdown::step_down(shared, state, member, request),
        "replSetFreeze" => raw(stepdown::freeze(&mut state, member, request)),
        "buildInfo" | "buildinfo" => raw(build_info()),
        other => raw(errors::command_error(
            59,
            &format!("no such command: '{other}'"),
            false,
        )),
    };
    Outcome::Reply(finish(&state, reply))
}

pub fn is_current(state: &State, member: usize, incarnation: u64) -> bool {
    let m = &state.members[member];
    !state.shutting_down && m.up && m.incarnation == incarnation
}

/// The handshake and heartbeat reply of a 7.0 replica-set member.
///
/// `topologyVersion` is deliberately absent: with it the driver switches to streaming
/// heartbeats (awaitable hello with `moreToCome`), which the fake does not implement. The
/// driver then polls every `heartbeatFrequencyMS` instead. For the same reason error replies
/// carry no `topologyVersion` either.
///
/// A real secondary keeps naming a crashed primary in `primary` until an election timeout
/// passes; here `primary` disappears the moment the primary is killed or steps down. Every
/// member but a stale primary names the primary of the newest term; a stale one names
/// itself, with the electionId of its own term.
fn hello(
    state: &State,
    set_name: &str,
    member: usize,
    connection_id: i32,
    request: &Request,
) -> RawDocumentBuf {
    let term = state.writable_term(member);
    let is_primary = term.is_some();
    let mut reply = doc! { "hosts": state.hosts(), "setName": set_name, "setVersion": 1 };
    if request.name() == "hello" {
        reply.insert("isWritablePrimary", is_primary);
    } else {
        reply.insert("ismaster", is_primary);
    }
    reply.insert("secondary", !is_primary);
    let primary = if is_primary {
        Some(member)
    } else {
        state.primary
    };
    if let Some(primary) = primary {
        reply.insert("primary", state.host(primary));
    }
    reply.insert("me", state.host(member));
    if let Some(term) = term {
        reply.insert("electionId", election_id(term));
    }
    let replica = state.replica(member);
    let (last_op_time, write_date) = op_time(replica.last());
    let (majority_op_time, majority_write_date) = op_time(replica.commit_point());
    reply.insert(
        "lastWrite",
        doc! {
            "opTime": last_op_time,
            "lastWriteDate": write_date,
            "majorityOpTime": majority_op_time,
            "majorityWriteDate": majority_write_date,
        },
    );
    if request.body.get_bool("helloOk") == Ok(true) {
        reply.insert("helloOk", true);
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

/// `insert`, with the retryable-write history, the armed faults and the write concern.
fn insert(
    shared: &Shared,
    mut state: MutexGuard<'_, State>,
    member: usize,
    incarnation: u64,
    request: &Request,
) -> Outcome {
    let txn_number = request.body.get_i64("txnNumber").ok();
    let done = |state: &State, reply: Document| Outcome::Reply(finish(state, raw(reply)));
    let Some(term) = state.writable_term(member) else {
        // An unacknowledged (w: 0) write cannot be refused with a reply, so a server that
        // is not primary closes the connection instead.
        if request.more_to_come {
            return Outcome::HangUp;
        }
        return done(&state, errors::not_primary(txn_number.is_some()));
    };
    let Some(ns) = namespace(request, "insert") else {
        return done(&state, errors::invalid_namespace());
    };
    let Some(docs) = request.documents("documents") else {
        let message = "BSON field 'insert.documents' is missing but a required field";
        return done(&state, errors::command_error(40414, message, false));
    };
    let ordered = request.body.get_bool("ordered").unwrap_or(true);

    if let Some(code) = state.faults.fail_next_write.take() {
        let first_id = to_bson(docs.first().and_then(|d| d.get("_id").ok().flatten()));
        return done(
            &state,
            errors::injected_write_failure(code, &ns, first_id, txn_number.is_some()),
        );
    }

    let session = lsid(&request.body).zip(txn_number);
    let mut reply = match state.insert(member, term, &ns, docs, ordered, session) {
        Ok(reply) => reply,
        Err(refusal) => return done(&state, refusal),
    };
    shared.settle(&mut state);

    let faults = &mut state.faults;
    if std::mem::take(&mut faults.crash_after_next_write) {
        return Outcome::Crash;
    }
    if std::mem::take(&mut faults.drop_next_reply) {
        return Outcome::HangUp;
    }
    let concern = Concern::of(&request.body);
    let alive = |state: &State| is_current(state, member, incarnation);
    let (state, waited) = write_concern::wait(shared, state, member, term, &concern, alive);
    match waited {
        Ok(()) => {}
        Err(Unmet::Gone) => return Outcome::Gone,
        Err(Unmet::Error(error)) => {
            errors::add_write_concern_error(&mut reply, error, txn_number.is_some())
        }
    }
    done(&state, reply)
}

/// `find`. The query runs outside the lock on a snapshot, so a big sort does not stall
/// heartbeats; the cursor is registered afterwards if the member is still the same one.
fn find(
    shared: &Shared,
    state: MutexGuard<'_, State>,
    member: usize,
    incarnation: u64,
    request: &Request,
) -> Outcome {
    let done = |state: &State, reply: Document| Outcome::Reply(finish(state, raw(reply)));
    if !readable(&state, member, request) {
        return done(&state, errors::not_primary_no_secondary_ok());
    }
    let Some(ns) = namespace(request, "find") else {
        return done(&state, errors::invalid_namespace());
    };
    let query = match Query::parse(&request.body) {
        Ok(query) => query,
        Err((code, message)) => return done(&state, errors::command_error(code, &message, false)),
    };
    let majority = request
        .body
        .get_document("readConcern")
        .and_then(|rc| rc.get_str("level"))
        == Ok("majority");
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
    Outcome::Reply(finish(&state, cursor_reply(cursor)))
}

/// Served by whichever member holds the cursor, whatever its role now: reads on a member
/// that stepped down keep working, as on 4.2+.
fn get_more(state: &mut State, member: usize, request: &Request) -> RawDocumentBuf {
    let Ok(id) = request.body.get_i64("getMore") else {
        return raw(errors::command_error(14, "cursor id must be a long", false));
    };
    let batch_size = match request.body.get("batchSize") {
        Some(Bson::Int32(n)) => usize::try_from(*n).ok(),
        Some(Bson::Int64(n)) => usize::try_from(*n).ok(),
        _ => None,
    };
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
pub fn readable(state: &State, member: usize, request: &Request) -> bool {
    if state.writable_term(member).is_some() {
        return true;
    }
    let mode = request
        .body
        .get_document("$readPreference")
        .and_then(|rp| rp.get_str("mode"));
    matches!(mode, Ok(mode) if mode != "primary")
}

/// `db.collection` from `$db` and the command's collection argument.
pub fn namespace(request: &Request, command: &str) -> Option<String> {
    let collection = request.body.get_str(command).ok()?;
    let db = request.body.get_str("$db").unwrap_or("test");
    Some(format!("{db}.{collection}"))
}

/// The bytes of `lsid.id`, the key of the retryable-write history.
fn lsid(body: &Document) -> Option<Vec<u8>> {
    match body.get_document("lsid").ok()?.get("id")? {
        Bson::Binary(binary) => Some(binary.bytes.clone()),
        _ => None,
    }
}

/// `{ts, t}` and its wall-clock date, for `hello`'s `lastWrite`; the null OpTime before
/// any write.
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

pub fn cursor_reply(cursor: RawDocumentBuf) -> RawDocumentBuf {
    let mut reply = RawDocumentBuf::new();
    reply.append("cursor", cursor);
    reply.append("ok", 1.0);
    reply
}

/// Adds the cluster time gossip every replica-set member attaches to every reply (with the
/// all-zero signature of a deployment without keyfile auth).
pub fn finish(state: &State, mut reply: RawDocumentBuf) -> RawDocumentBuf {
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
