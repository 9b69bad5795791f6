//! The `failCommand` fail point: what it does to a command that it names, before the command
//! runs and after a write, so that a test fails, drops, holds up or spoils the write concern
//! of a command the same way in the fake and in a real set (`configureFailPoint` sets it:
//! `failpoint.rs`).
//!
//! What the server does, from mongodb/mongo (master, read for 7.0 behaviour):
//! - `src/mongo/db/commands.cpp` `evaluateFailCommandFailPoint`: before the command runs (and
//!   before the not-primary check), a `failCommand` naming it (or an alias) activates only if
//!   it sets `closeConnection`, `blockConnection` or `errorCode`; `appName` filters by the
//!   handshake's application name; `configureFailPoint` is never failed. `errorLabels` given
//!   replace the labels the server would add; then the block, then the close, then the error
//!   `{code, errmsg: "Failing command via 'failCommand' failpoint"}`.
//! - `src/mongo/db/service_entry_point_common.cpp` `_waitForWriteConcern`: for a command with
//!   write concern that ran, a `failCommand` with `writeConcernError` (and none of the above)
//!   is entered after the write: the reply gains that `writeConcernError` as given, and no
//!   write-concern wait happens. The server then labels the reply itself
//!   (`src/mongo/db/error_labels.cpp`): `RetryableWriteError` when the command carried a
//!   `txnNumber` and the code is retryable, unless the fail point's `errorLabels` replace it.
//!   `NoWritesPerformed` never appears here: the op times it compares are not taken yet when
//!   an `errorCode` fires, and a write that ran moved them.
//!
//! `namespace`, `threadName`, `failInternalCommands` and `errorExtraInfo` are ignored.
//! `writeConcernError` and the `errorLabels` of a fail point that only blocks reach the write
//! commands the fake has, `insert`, `create` and `createIndexes`.

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use bson::{Bson, Document};

use crate::cluster::{Shared, State};
use crate::commands::integer;
use crate::commands::{finish, raw, Outcome};
use crate::errors;
use crate::failpoint::error;
use crate::hello;
use crate::wire::Request;

const FAILPOINT_MESSAGE: &str = "Failing command via 'failCommand' failpoint";

/// What the `failCommand` check before a command left for after it.
pub struct Passed {
    pub member: usize,
    was_primary: bool,
    connection_id: i32,
    /// `errorLabels` of a fail point that blocked the command and let it run.
    labels: Option<Vec<Bson>>,
}

/// The `failCommand` check a command meets before anything else it does. `Err` is what the
/// connection does instead of running the command.
pub fn before_command<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    member: usize,
    incarnation: u64,
    connection_id: i32,
    request: &Request,
) -> Result<(MutexGuard<'a, State>, Passed), Outcome> {
    let name = request.name().to_string();
    if matches!(name.as_str(), "hello" | "isMaster" | "ismaster") {
        let app = request
            .body
            .get_document("client")
            .and_then(|c| c.get_document("application"))
            .and_then(|a| a.get_str("name"));
        if let Ok(app) = app {
            let fail_points = &mut state.members[member].fail_points;
            fail_points.app_names.insert(connection_id, app.to_string());
        }
    }
    let mut passed = Passed {
        member,
        was_primary: state.writable_term(member).is_some(),
        connection_id,
        labels: None,
    };
    let fail_points = &mut state.members[member].fail_points;
    let app = fail_points.app_names.get(&connection_id).cloned();
    let fired = fail_points.enter("failCommand", |data| {
        applies(data, &name, app.as_deref())
            && (flag(data, "closeConnection")
                || flag(data, "blockConnection")
                || data.get("errorCode").and_then(number).is_some())
    });
    let Some(data) = fired else {
        return Ok((state, passed));
    };
    passed.labels = data.get_array("errorLabels").ok().cloned();
    if flag(&data, "blockConnection") {
        let block = match data.get("blockTimeMS").and_then(number) {
            Some(ms) if ms >= 0 => Duration::from_millis(ms as u64),
            Some(_) => {
                return Err(reply(
                    &state,
                    &passed,
                    invalid("'blockTimeMS' must be non-negative"),
                ))
            }
            None => {
                let message = "must specify 'blockTimeMS' when 'blockConnection' is true";
                return Err(reply(&state, &passed, invalid(message)));
            }
        };
        state = sleep(shared, state, member, incarnation, block)?;
    }
    if flag(&data, "closeConnection") {
        return Err(Outcome::HangUp);
    }
    if let Some(code) = data.get("errorCode").and_then(number) {
        let retryable_write = request.body.contains_key("txnNumber");
        let failed = errors::command_error(code as i32, FAILPOINT_MESSAGE, retryable_write);
        return Err(reply(&state, &passed, failed));
    }
    Ok((state, passed))
}

/// The `failCommand` check of a write command that ran and is about to wait for its write
/// concern: the data of a `writeConcernError` fail point that fired, and the reply is to get
/// that error instead of the wait (`write_concern::respond_when_met`).
pub fn write_concern_failure(
    state: &mut State,
    request: &Request,
    passed: &Passed,
) -> Option<Document> {
    if !passed.was_primary || request.more_to_come {
        return None;
    }
    let name = request.name().to_string();
    let fail_points = &mut state.members[passed.member].fail_points;
    let app = fail_points.app_names.get(&passed.connection_id).cloned();
    fail_points.enter("failCommand", |data| {
        applies(data, &name, app.as_deref()) && data.contains_key("writeConcernError")
    })
}

/// The `failCommand` check after a write command: a `writeConcernError` fail point adds its
/// error to the reply of one that failed before it waited for its write concern (one that
/// got so far met it in `write_concern_failure`), and `errorLabels` replace the labels of an
/// error reply.
pub fn after_write(
    shared: &Shared,
    member: usize,
    request: &Request,
    passed: &Passed,
    outcome: Outcome,
) -> Outcome {
    let Outcome::Reply(reply) = outcome else {
        return outcome;
    };
    let mut reply: Document = reply
        .to_document()
        .expect("the fake's own reply is valid BSON");
    let mut state = shared.lock();
    let name = request.name().to_string();
    let mut labels = passed.labels.clone();
    if passed.was_primary && !request.more_to_come {
        let fail_points = &mut state.members[member].fail_points;
        let app = fail_points.app_names.get(&passed.connection_id).cloned();
        let fired = fail_points.enter("failCommand", |data| {
            applies(data, &name, app.as_deref())
                && data.contains_key("writeConcernError")
                && reply.get_f64("ok") == Ok(0.0)
                && !reply.contains_key("writeConcernError")
        });
        if let Some(data) = fired {
            let wce = data.get("writeConcernError").cloned().unwrap_or(Bson::Null);
            let code = wce
                .as_document()
                .and_then(|w| w.get("code"))
                .and_then(number);
            let retryable = code.is_some_and(|c| {
                request.body.contains_key("txnNumber") && errors::is_retryable_write_code(c as i32)
            });
            let metadata = strip_metadata(&mut reply);
            reply.insert("writeConcernError", wce);
            if retryable && !reply.contains_key("errorLabels") {
                reply.insert("errorLabels", vec![errors::RETRYABLE_WRITE_ERROR]);
            }
            let not_primary = code.is_some_and(|c| errors::is_not_primary_error(c as i32));
            if not_primary && !reply.contains_key("topologyVersion") {
                let version = state.members[member].topology;
                reply.insert("topologyVersion", hello::topology_version(version));
            }
            reply.extend(metadata);
            if let Ok(given) = data.get_array("errorLabels") {
                labels = Some(given.clone());
            }
        }
    }
    let failed = reply.get_f64("ok") == Ok(0.0) || reply.contains_key("writeConcernError");
    if let (Some(labels), true) = (labels, failed) {
        let metadata = strip_metadata(&mut reply);
        reply.remove("errorLabels");
        if !labels.is_empty() {
            reply.insert("errorLabels", labels);
        }
        reply.extend(metadata);
    }
    Outcome::Reply(raw(reply))
}

/// Whether a `failCommand`'s data names this command (aliases included) and connection.
fn applies(data: &Document, command: &str, app: Option<&str>) -> bool {
    if command == "configureFailPoint" {
        return false;
    }
    if let Ok(wanted) = data.get_str("appName") {
        if app != Some(wanted) {
            return false;
        }
    }
    let aliases: &[&str] = match command {
        "hello" | "isMaster" | "ismaster" => &["hello", "isMaster", "ismaster"],
        "buildInfo" | "buildinfo" => &["buildInfo", "buildinfo"],
        other => &[other][..],
    };
    let named = data.get_array("failCommands").map(|names| {
        names
            .iter()
            .any(|n| n.as_str().is_some_and(|n| aliases.contains(&n)))
    });
    named.unwrap_or(false)
}

/// Holds the command for `block`, the lock released; a member killed meanwhile never answers.
fn sleep<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    member: usize,
    incarnation: u64,
    block: Duration,
) -> Result<MutexGuard<'a, State>, Outcome> {
    let deadline = Instant::now() + block;
    loop {
        let m = &state.members[member];
        if state.shutting_down || !m.up || m.incarnation != incarnation {
            return Err(Outcome::Gone);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(state);
        }
        state = shared.wait(state, deadline - now);
    }
}

fn reply(state: &State, passed: &Passed, mut failed: Document) -> Outcome {
    if let Some(labels) = &passed.labels {
        failed.remove("errorLabels");
        if !labels.is_empty() {
            failed.insert("errorLabels", labels.clone());
        }
    }
    Outcome::Reply(finish(state, passed.member, raw(failed)))
}

/// Takes `$clusterTime` and `operationTime` off a finished reply, to be put back last.
fn strip_metadata(reply: &mut Document) -> Document {
    let mut metadata = Document::new();
    for key in ["$clusterTime", "operationTime"] {
        if let Some(value) = reply.remove(key) {
            metadata.insert(key, value);
        }
    }
    metadata
}

/// A number as `safeNumberInt`/`getIntField` read the fail point's data: a fraction dropped.
fn number(value: &Bson) -> Option<i64> {
    integer(value).or_else(|| value.as_f64().map(|f| f as i64))
}

fn flag(data: &Document, field: &str) -> bool {
    data.get_bool(field).unwrap_or(false)
}

fn invalid(message: &str) -> Document {
    error(72, "InvalidOptions", message)
}
