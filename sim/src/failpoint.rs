//! `configureFailPoint`, answered as a 7.0 mongod started with `--setParameter
//! enableTestCommands=1` answers it, so that a test injects its faults the same way into the
//! fake and into a real set (see `target.rs`); what `failCommand` does is `fail_command.rs`.
//!
//! What the server does, from mongodb/mongo (master, read for 7.0 behaviour):
//! - `src/mongo/util/fail_point.cpp`: the modes `off`, `alwaysOn`, `{times: n}`, `{skip: n}`,
//!   `{activationProbability: p}`; a fail point is "entered" only when its predicate matches
//!   and its mode fires, and `timesEntered` counts those entries over the process's life.
//!   `configureFailPoint` replies `{count: <timesEntered before this call>, ok: 1}`
//!   (`src/mongo/db/commands/fail_point_cmd.cpp`); errors use the codes of `parseBSON`.
//!
//! The simulated set knows `failCommand`, `stopReplProducer` (while set, the member copies
//! nothing from its sync source: `replication`), and `hangDuringBatchInsert`,
//! `hangWithLockDuringBatchInsert` and `onPrimaryTransactionalWrite`, which act on an insert's
//! batches (`insert`). Any other name is "not found", where a real server knows hundreds.

use std::collections::HashMap;

use bson::{doc, Bson, Document};

use crate::cluster::State;
use crate::commands::integer;
use crate::wire::Request;

const KNOWN: [&str; 5] = [
    "failCommand",
    "stopReplProducer",
    "hangDuringBatchInsert",
    "hangWithLockDuringBatchInsert",
    "onPrimaryTransactionalWrite",
];

/// The fail points of one member (one mongod process): a restart clears them.
#[derive(Default)]
pub struct FailPoints {
    points: HashMap<String, FailPoint>,
    /// The `client.application.name` each connection gave in its handshake, for `appName`.
    pub app_names: HashMap<i32, String>,
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

impl FailPoints {
    /// Whether `name` is set to fire (for fail points that pause work while set, such as
    /// `stopReplProducer`).
    pub fn is_set(&self, name: &str) -> bool {
        self.points.get(name).is_some_and(|p| p.mode != Mode::Off)
    }

    /// Enters `name` if `matches` accepts its data and its mode fires, as
    /// `FailPoint::_slowShouldFailOpenBlock` does; returns the data when it fired.
    pub fn enter(&mut self, name: &str, matches: impl Fn(&Document) -> bool) -> Option<Document> {
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
                let Some(p) = p.as_f64().or_else(|| integer(p).map(|n| n as f64)) else {
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
    let Some(n) = integer(value) else {
        let message = format!("Expected field \"{field}\" to have numeric type");
        return Err(error(14, "TypeMismatch", &message));
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

/// An error with the server's code name, for codes `errors::code_name` does not know.
pub fn error(code: i32, code_name: &str, errmsg: &str) -> Document {
    doc! { "ok": 0.0, "errmsg": errmsg, "code": code, "codeName": code_name }
}
