//! What a member answers to each command, given its role at that instant.
//!
//! Implemented: `hello`/`isMaster`, `insert`, `find`, `getMore`, `killCursors`,
//! `listIndexes`, `createIndexes` (single-field, or compound and not unique), `ping`,
//! `endSessions`, `buildInfo`, and the test commands `configureFailPoint` (`failpoint.rs`),
//! `replSetStepDown` and `replSetFreeze` (`stepdown.rs`).
//! Every other command gets CommandNotFound, which a real server would not say for real
//! commands such as `aggregate`, `count`, `update` or `delete`.
//! `readConcern`, `writeConcern`, `maxTimeMS`, `comment` and `hint` are accepted and ignored.

use std::sync::Arc;
use std::sync::MutexGuard;
use std::time::Duration;

use bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime, Document, RawDocumentBuf};

use super::cluster::{Shared, State};
use super::errors;
use super::fail_command;
use super::failpoint;
use super::query::{to_bson, Query};
use super::stepdown;
use super::store::{encode, History};
use super::wire::{Request, MAX_MESSAGE_SIZE};

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
    loop {
        if !is_current(&state, member, incarnation) {
            return Outcome::Gone;
        }
        if !state.members[member].hung {
            break;
        }
        state = shared.wait(state, Duration::from_secs(1));
    }
    if shared.log {
        let role = if state.primary == Some(member) {
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
            let outcome = insert(state, member, request);
            return fail_command::after_write(shared, member, request, &passed, outcome);
        }
        "find" => return find(shared, state, member, incarnation, request),
        "getMore" => get_more(&mut state, member, request),
        "killCursors" => kill_cursors(&mut state, member, request),
        "listIndexes" => list_indexes(&mut state, member, request),
        "createIndexes" => create_indexes(&mut state, member, request),
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

fn is_current(state: &State, member: usize, incarnation: u64) -> bool {
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
/// passes; here `primary` disappears the moment the primary is killed or steps down.
fn hello(
    state: &State,
    set_name: &str,
    member: usize,
    connection_id: i32,
    request: &Request,
) -> RawDocumentBuf {
    let is_primary = state.primary == Some(member);
    let mut reply = doc! { "hosts": state.hosts(), "setName": set_name, "setVersion": 1 };
    if request.name() == "hello" {
        reply.insert("isWritablePrimary", is_primary);
    } else {
        reply.insert("ismaster", is_primary);
    }
    reply.insert("secondary", !is_primary);
    if let Some(primary) = state.primary {
        reply.insert("primary", state.host(primary));
    }
    reply.insert("me", state.host(member));
    if is_primary {
        reply.insert("electionId", state.election_id());
    }
    let op_time = doc! { "ts": state.last_op(), "t": state.term };
    let write_date = DateTime::from_millis(i64::from(state.last_op().time) * 1000);
    reply.insert(
        "lastWrite",
        doc! {
            "opTime": op_time.clone(),
            "lastWriteDate": write_date,
            "majorityOpTime": op_time,
            "majorityWriteDate": write_date,
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

/// `insert`, with the retryable-write history and the armed faults.
fn insert(mut state: MutexGuard<'_, State>, member: usize, request: &Request) -> Outcome {
    let txn_number = request.body.get_i64("txnNumber").ok();
    let done = |state: &State, reply: Document| Outcome::Reply(finish(state, raw(reply)));
    if state.primary != Some(member) {
        // An unacknowledged (w: 0) write cannot be refused with a reply, so a server that
        // is not primary closes the connection instead.
        if request.more_to_come {
            return Outcome::HangUp;
        }
        return done(&state, errors::not_primary(txn_number.is_some()));
    }
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
    let reply = match session
        .as_ref()
        .map(|(lsid, txn)| state.store.history(lsid, *txn))
    {
        Some(History::Executed(mut reply)) => {
            // The server reports which statements it did not execute again.
            let n = reply.get_i32("n").unwrap_or(0);
            reply.insert("retriedStmtIds", (0..n).collect::<Vec<i32>>());
            reply
        }
        Some(History::TooOld { newest }) => {
            let txn = txn_number.unwrap_or_default();
            let message = format!(
                "Retryable write with txnNumber {txn} is prohibited on session because a newer \
                 retryable write with txnNumber {newest} has already started on this session."
            );
            return done(&state, errors::command_error(225, &message, false));
        }
        Some(History::New) | None => {
            let mut reply = state.store.insert_batch(&ns, docs, ordered);
            reply.insert("ok", 1.0);
            if reply.get_i32("n").unwrap_or(0) > 0 {
                state.tick();
            }
            if let Some((lsid, txn)) = session {
                state.store.remember(lsid, txn, reply.clone());
            }
            reply
        }
    };

    let faults = &mut state.faults;
    if std::mem::take(&mut faults.crash_after_next_write) {
        Outcome::Crash
    } else if std::mem::take(&mut faults.drop_next_reply) {
        Outcome::HangUp
    } else {
        done(&state, reply)
    }
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
    let snapshot = state.store.snapshot(&ns);
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

fn list_indexes(state: &mut State, member: usize, request: &Request) -> RawDocumentBuf {
    if !readable(state, member, request) {
        return raw(errors::not_primary_no_secondary_ok());
    }
    let Some(ns) = namespace(request, "listIndexes") else {
        return raw(errors::invalid_namespace());
    };
    let Some(indexes) = state.store.indexes(&ns) else {
        return raw(errors::command_error(
            26,
            &format!("ns does not exist: {ns}"),
            false,
        ));
    };
    let specs = indexes.iter().map(|i| Arc::new(raw(i.spec()))).collect();
    cursor_reply(
        state.members[member]
            .cursors
            .open(&ns, specs, None, None, false),
    )
}

/// Single-field indexes, and compound ones that are not unique (mabel's `{time: 1, _id: 1}`);
/// the requested `name` is ignored in favour of the server's default, `<field>_<direction>`
/// joined by `_`.
///
/// The reply is mongod 7.0's `CreateIndexesReply`, fields in its IDL order
/// (src/mongo/db/create_indexes.idl): `numIndexesBefore`, `numIndexesAfter`,
/// `createdCollectionAutomatically`, `commitQuorum`, `note`. As in
/// src/mongo/db/commands/create_indexes_cmd.cpp, a replica-set member builds in two phases
/// with the default commit quorum `"votingMembers"` and says so in every reply; when every
/// index already exists it returns early, without `createdCollectionAutomatically`.
fn create_indexes(state: &mut State, member: usize, request: &Request) -> RawDocumentBuf {
    if state.primary != Some(member) {
        return raw(errors::not_primary(false));
    }
    let Some(ns) = namespace(request, "createIndexes") else {
        return raw(errors::invalid_namespace());
    };
    let existed = state.store.indexes(&ns).map(<[_]>::len);
    let specs = request
        .body
        .get_array("indexes")
        .cloned()
        .unwrap_or_default();
    let mut created = 0;
    for spec in specs.iter().filter_map(Bson::as_document) {
        let unique = spec.get_bool("unique").unwrap_or(false);
        let key: Option<Vec<(String, i32)>> = spec.get_document("key").ok().and_then(|k| {
            k.iter()
                .map(|(f, d)| Some((f.clone(), direction(d)?)))
                .collect()
        });
        let (field, direction) = match key.as_deref() {
            Some([(field, direction)]) => (field.as_str(), *direction),
            Some(compound @ [_, _, ..]) if !unique => {
                created += usize::from(state.store.create_compound_index(&ns, compound));
                continue;
            }
            _ => {
                let message = "the fake replica set supports only single-field indexes and \
                               compound indexes that are not unique";
                return raw(errors::command_error(2, message, false));
            }
        };
        match state.store.create_index(&ns, field, direction, unique) {
            Ok(new) => created += usize::from(new),
            Err(dup) => {
                let mut reply = errors::command_error(
                    11000,
                    &format!("Index build failed: {}", dup.message()),
                    false,
                );
                reply.insert("keyPattern", doc! { field: direction });
                reply.insert("keyValue", doc! { field: dup.value });
                return raw(reply);
            }
        }
    }
    let after = state.store.indexes(&ns).map(<[_]>::len).unwrap_or(1);
    // A new collection has its `_id` index before the build counts.
    let before = existed.unwrap_or(1);
    let mut reply = doc! {
        "numIndexesBefore": before as i32,
        "numIndexesAfter": after as i32,
    };
    if existed.is_none() || created > 0 {
        state.tick();
        reply.insert("createdCollectionAutomatically", existed.is_none());
    }
    reply.insert("commitQuorum", "votingMembers");
    if after == before {
        reply.insert("note", "all indexes already exist");
    } else if created < specs.len() {
        reply.insert("note", "index already exists");
    }
    reply.insert("ok", 1.0);
    raw(reply)
}

/// 1 or -1, however the number is typed.
fn direction(value: &Bson) -> Option<i32> {
    let n = match value {
        Bson::Int32(n) => i64::from(*n),
        Bson::Int64(n) => *n,
        Bson::Double(f) => *f as i64,
        _ => return None,
    };
    match n {
        1 => Some(1),
        -1 => Some(-1),
        _ => None,
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
fn readable(state: &State, member: usize, request: &Request) -> bool {
    if state.primary == Some(member) {
        return true;
    }
    let mode = request
        .body
        .get_document("$readPreference")
        .and_then(|rp| rp.get_str("mode"));
    matches!(mode, Ok(mode) if mode != "primary")
}

/// `db.collection` from `$db` and the command's collection argument.
fn namespace(request: &Request, command: &str) -> Option<String> {
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

fn cursor_reply(cursor: RawDocumentBuf) -> RawDocumentBuf {
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
