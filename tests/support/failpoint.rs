//! `configureFailPoint` and the `failCommand` fail point, answered as a 7.0 mongod started with
//! `--setParameter enableTestCommands=1` answers them, so that a test injects its faults the
//! same way into the fake and into a real set (see `target.rs`).
//!
//! What the server does, from mongodb/mongo (master, read for 7.0 behaviour):
//! - `src/mongo/util/fail_point.cpp`: the modes `off`, `alwaysOn`, `{times: n}`, `{skip: n}`,
//!   `{activationProbability: p}`; a fail point is "entered" only when its predicate matches
//!   and its mode fires, and `timesEntered` counts those entries over the process's life.
//!   `configureFailPoint` replies `{count: <timesEntered before this call>, ok: 1}`
//!   (`src/mongo/db/commands/fail_point_cmd.cpp`); errors use the codes of `parseBSON`.
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
//! The fake knows `failCommand` and `stopReplProducer` (accepted and recorded, for replication
//! to consult; the fake's single store replicates instantly and ignores it). Any other name
//! is "not found", where a real server knows hundreds. `namespace`, `threadName`,
//! `failInternalCommands` and `errorExtraInfo` are ignored. `writeConcernError` and the
//! `errorLabels` of a fail point that only blocks reach `insert` replies alone.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use bson::{doc, Bson, Document};

use super::cluster::{Shared, State};
use super::commands::{finish, raw, Outcome};
use super::errors;
use super::wire::Request;

const KNOWN: [&str; 2] = ["failCommand", "stopReplProducer"];
const FAILPOINT_MESSAGE: &str = "Failing command via 'failCommand' failpoint";

/// The fail points of one member (one mongod process): a restart clears them.
#[derive(Default)]
pub struct FailPoints {
    points: HashMap<String, FailPoint>,
    /// The `client.application.name` each connection gave in its handshake, for `appName`.
    app_names: HashMap<i32, String>,
}

#[derive(Default)]
struct FailPoint {
    mode: Mode,
    data: Document,
    times_entered: i64,
}

#[derive(Default, PartialEq)]
enum Mode {
    #[default]
    Off,
    AlwaysOn,
    Times(i64),
    Skip(i64),
    Probability(f64),
}

/// What the `failCommand` check before a command left for after it.
pub struct Passed {
    was_primary: bool,
    connection_id: i32,
    /// `errorLabels` of a fail point that blocked the command and let it run.
    labels: Option<Vec<Bson>>,
}

impl FailPoints {
    /// Whether `name` is set to fire (for fail points that pause work while set, such as
    /// `stopReplProducer`).
    pub fn is_set(&self, name: &str) -> bool {
        self.points.get(name).is_some_and(|p| p.mode != Mode::Off)
    }

    /// Enters `name` if `matches` accepts its data and its mode fires, as
    /// `FailPoint::_slowShouldFailOpenBlock` does; returns the data when it fired.
    fn enter(&mut self, name: &str, matches: impl Fn(&Document) -> bool) -> Option<Document> {
        let point = self.points.get_mut(name)?;
        if point.mode == Mode::Off || !matches(&point.data) {
            return None;
        }
        let fires = match &mut point.mode {
            Mode::Off => false,
            Mode::AlwaysOn => true,
            Mode::Times(left) => {
                *left -= 1;
                if *left <= 0 {
                    point.mode = Mode::Off;
                }
                true
            }
            Mode::Skip(left) => {
                *left -= 1;
                *left < 0
            }
            Mode::Probability(p) => rand::random::<f64>() < *p,
        };
        if fires {
            point.times_entered += 1;
            Some(point.data.clone())
        } else {
            None
        }
    }
}

/// `{configureFailPoint: <name>, mode, data}` on `admin`.
pub fn configure(state: &mut State, member: usize, request: &Request) -> Document {
    if request.body.get_str("$db") != Ok("admin") {
        return error(
            13,
            "Unauthorized",
            "configureFailPoint may only be run against the admin database.",
        );
    }
    let name = request
        .body
        .get_str("configureFailPoint")
        .unwrap_or_default();
    if !KNOWN.contains(&name) {
        return error(266, "FailPointSetFailed", &format!("{name} not found"));
    }
    let (mode, data) = match parse(&request.body) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let point = state.members[member]
        .fail_points
        .points
        .entry(name.to_string())
        .or_default();
    let count = point.times_entered;
    point.mode = mode;
    point.data = data;
    // appendNumber writes a small count as an int32.
    doc! { "count": count as i32, "ok": 1.0 }
}

/// The mode and data, with the codes and messages of `FailPoint::parseBSON`.
fn parse(body: &Document) -> Result<(Mode, Document), Document> {
    let bad = |message: &str| error(2, "BadValue", message);
    let mode = match body.get("mode") {
        None => {
            let message = "When setting a failpoint, you must supply a 'mode'";
            return Err(error(20, "IllegalOperation", message));
        }
        Some(Bson::String(s)) if s == "off" => Mode::Off,
        Some(Bson::String(s)) if s == "alwaysOn" => Mode::AlwaysOn,
        Some(Bson::String(s)) => return Err(bad(&format!("unknown mode: {s}"))),
        Some(Bson::Document(m)) => {
            if let Some(times) = m.get("times") {
                Mode::Times(count(times, "times")?)
            } else if let Some(skip) = m.get("skip") {
                Mode::Skip(count(skip, "skip")?)
            } else if let Some(p) = m.get("activationProbability") {
                let Some(p) = number(p) else {
                    let message = "the 'activationProbability' option to 'mode' must be a \
                                   double between 0 and 1";
                    return Err(error(14, "TypeMismatch", message));
                };
                if !(0.0..=1.0).contains(&p) {
                    let message =
                        format!("activationProbability must be between 0.0 and 1.0; found {p}");
                    return Err(bad(&message));
                }
                Mode::Probability(p)
            } else {
                return Err(bad(
                    "'mode' must be one of 'off', 'alwaysOn', '{times:n}', \
                                '{skip:n}' or '{activationProbability:p}'",
                ));
            }
        }
        Some(_) => {
            let message = "'mode' must be a string or JSON object";
            return Err(error(14, "TypeMismatch", message));
        }
    };
    let data = match body.get("data") {
        None => Document::new(),
        Some(Bson::Document(data)) => data.clone(),
        Some(_) => {
            let message = "the 'data' option must be a JSON object";
            return Err(error(14, "TypeMismatch", message));
        }
    };
    Ok((mode, data))
}

/// `times` or `skip`: a whole number from 0 to i32::MAX.
fn count(value: &Bson, field: &str) -> Result<i64, Document> {
    let n = match value {
        Bson::Int32(n) => i64::from(*n),
        Bson::Int64(n) => *n,
        Bson::Double(f) if f.fract() == 0.0 => *f as i64,
        _ => {
            let message = format!("Expected field \"{field}\" to have numeric type");
            return Err(error(14, "TypeMismatch", &message));
        }
    };
    if n < 0 {
        let message = format!("'{field}' option to 'mode' must be positive");
        return Err(error(2, "BadValue", &message));
    }
    if n > i64::from(i32::MAX) {
        let message = format!("'{field}' option to 'mode' is too large");
        return Err(error(2, "BadValue", &message));
    }
    Ok(n)
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
        was_primary: state.primary == Some(member),
        connection_id,
        labels: None,
    };
    let fail_points = &mut state.members[member].fail_points;
    let app = fail_points.app_names.get(&connection_id).cloned();
    let fired = fail_points.enter("failCommand", |data| {
        applies(data, &name, app.as_deref())
            && (flag(data, "closeConnection")
                || flag(data, "blockConnection")
                || number(data.get("errorCode").unwrap_or(&Bson::Null)).is_some())
    });
    let Some(data) = fired else {
        return Ok((state, passed));
    };
    passed.labels = data.get_array("errorLabels").ok().cloned();
    if flag(&data, "blockConnection") {
        let block = match data.get("blockTimeMS").and_then(number) {
            Some(ms) if ms >= 0.0 => Duration::from_millis(ms as u64),
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

/// The `failCommand` check after a write command ran: a `writeConcernError` fail point adds
/// its error to the reply, and `errorLabels` replace the labels of an error reply.
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
    Outcome::Reply(finish(state, raw(failed)))
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

fn flag(data: &Document, field: &str) -> bool {
    data.get_bool(field).unwrap_or(false)
}

fn number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(f) => Some(*f),
        _ => None,
    }
}

fn invalid(message: &str) -> Document {
    error(72, "InvalidOptions", message)
}

/// An error with the server's code name, for codes `errors::code_name` does not know.
pub fn error(code: i32, code_name: &str, errmsg: &str) -> Document {
    doc! { "ok": 0.0, "errmsg": errmsg, "code": code, "codeName": code_name }
}
