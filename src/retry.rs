//! The retry policy: which failures to wait out, which mean the breath is already written,
//! which to stop on, and how long to keep trying.
//!
//! The seed retried every `AutoReconnect` five seconds apart, sixty times. This keeps the
//! seed's budget (`--attempts` x `--retry-wait`, five minutes by default) and its trick (a
//! duplicate `_id` on a retry proves an earlier attempt landed), and adds what a decade of
//! failovers taught: a command error such as a failed validation is not retried, a duplicate
//! on any other index is a real error, and the wait for a new primary ends as soon as the
//! driver sees one. That last part is the driver's server selection, which re-checks the set
//! twice a second; this module only adds a short, growing pause after an attempt that failed
//! without waiting at all, so that a member that fails every write quickly cannot use up the
//! attempts in a second.
//!
//! The module does no I/O of its own: the insert, the clock and the warning are handed in.

use std::fmt;
use std::time::{Duration, Instant};

use mongodb::error::{Error, ErrorKind, WriteFailure};

/// Server error codes that mean "no writable primary here right now": not writable primary,
/// node is recovering, and the network-shaped failures of the retryable-writes specification.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10058, // LegacyNotPrimary
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// A write concern that timed out: the write may well have happened and nothing is undone,
/// so trying again is safe and the duplicate `_id` will tell.
const WRITE_CONCERN_TIMEOUT: i32 = 64;

const DUPLICATE_KEY: i32 = 11000;

/// The first pause after an attempt that failed fast; it doubles up to `--retry-wait`.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// How hard to try for one breath.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub attempts: u32,
    pub retry_wait: Duration,
}

impl Policy {
    /// The whole budget for one breath: the seed's sixty attempts five seconds apart.
    pub fn deadline(&self) -> Duration {
        self.retry_wait.saturating_mul(self.attempts)
    }

    /// How long to pause after failed attempt number `attempt` (from 1), which took `took`.
    /// An attempt that already waited (for server selection, say) is followed at once.
    pub fn pause(&self, attempt: u32, took: Duration) -> Duration {
        let doubling = FIRST_PAUSE.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        doubling.min(self.retry_wait).saturating_sub(took)
    }
}

/// What one failed attempt means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// A primary may be back soon: try again.
    Retry,
    /// The duplicate `_id` of our own breath: an earlier attempt, or an earlier run, landed.
    AlreadyWritten,
    /// Trying again cannot help, and may hide a real problem.
    Fatal(&'static str),
}

/// Decides what a failed attempt means. `sent_before` says whether this breath may already
/// have been sent: by an earlier attempt, or by an earlier run that left it in the spool.
/// A duplicate `_id` on a breath never sent before cannot be our own write.
pub fn classify(error: &Error, sent_before: bool) -> Verdict {
    if error.contains_label("RetryableWriteError") {
        return Verdict::Retry;
    }
    match &*error.kind {
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => Verdict::Retry,
        ErrorKind::ServerSelection { .. } => Verdict::Retry,
        ErrorKind::Command(e) if TRANSIENT_CODES.contains(&e.code) => Verdict::Retry,
        ErrorKind::Write(WriteFailure::WriteConcernError(e))
            if TRANSIENT_CODES.contains(&e.code) || e.code == WRITE_CONCERN_TIMEOUT =>
        {
            Verdict::Retry
        }
        ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY => {
            if !on_id_index(&e.message) {
                Verdict::Fatal("duplicate key on an index other than _id")
            } else if !sent_before {
                Verdict::Fatal("duplicate _id on a breath never sent before")
            } else {
                Verdict::AlreadyWritten
            }
        }
        ErrorKind::Write(_) => Verdict::Fatal("the server refused the write"),
        ErrorKind::Command(_) => Verdict::Fatal("the server refused the command"),
        ErrorKind::Authentication { .. } => Verdict::Fatal("authentication failed"),
        _ => Verdict::Fatal("not a failure that waiting can mend"),
    }
}

/// The driver keeps a write error's `errmsg` but drops its `keyPattern`, so the index is read
/// from the message the server has sent since 3.0:
/// `E11000 duplicate key error collection: mabel.breaths index: _id_ dup key: { ... }`.
/// `_id_` is the name MongoDB reserves for the `_id` index.
fn on_id_index(message: &str) -> bool {
    message.contains(" index: _id_ ")
}

/// One line for a driver error: the driver's own `Display` adds empty fields and prints write
/// errors with `Debug`.
pub fn describe(error: &Error) -> String {
    let mut line = match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => {
            format!("write error {}: {}", e.code, e.message)
        }
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => {
            format!(
                "write concern error {} ({}): {}",
                e.code, e.code_name, e.message
            )
        }
        ErrorKind::ServerSelection { message, .. } => match servers_seen(message) {
            Some(servers) => format!("no writable primary: {servers}"),
            None => message.clone(),
        },
        kind => kind.to_string(),
    };
    let mut labels: Vec<&str> = error.labels().iter().map(String::as_str).collect();
    if !labels.is_empty() {
        labels.sort_unstable();
        line.push_str(&format!(" [{}]", labels.join(", ")));
    }
    line
}

/// The driver explains a server selection timeout with a dump of its whole topology; what a
/// person watching a failover wants is the seed's line: each member and what it is now.
/// `None` if the message's shape is not the expected one.
pub fn servers_seen(message: &str) -> Option<String> {
    let servers: Vec<String> = message
        .split("{ Address: ")
        .skip(1)
        .filter_map(|server| {
            let (address, rest) = server.split_once(", Type: ")?;
            let kind = rest.split([',', ' ']).next()?;
            Some(match rest.split_once("Error: Kind: ") {
                Some((_, error)) => {
                    let error = error.split(", labels:").next().unwrap_or(error);
                    format!("{address} {kind} ({error})")
                }
                None => format!("{address} {kind}"),
            })
        })
        .collect();
    (!servers.is_empty()).then(|| servers.join(", "))
}

/// A breath that is in the database.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Written {
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// The last attempt met the breath's own `_id`: an earlier one had landed.
    pub already_written: bool,
    /// From the first attempt to the confirmation.
    pub waited: Duration,
}

/// A breath that is not in the database, as far as mabel can tell.
#[derive(Debug)]
pub enum Failure {
    /// Every attempt failed with a transient error, or the deadline passed.
    GaveUp {
        attempts: u32,
        waited: Duration,
        last: Error,
    },
    /// An error that retrying cannot mend.
    Refused {
        attempt: u32,
        reason: &'static str,
        error: Error,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::GaveUp {
                attempts,
                waited,
                last,
            } => write!(
                f,
                "gave up after {attempts} attempts in {:.1} s; last error: {}",
                waited.as_secs_f64(),
                describe(last)
            ),
            Failure::Refused {
                attempt,
                reason,
                error,
            } => write!(
                f,
                "{reason} (attempt {attempt}, not retried): {}",
                describe(error)
            ),
        }
    }
}

impl std::error::Error for Failure {}

/// Time as the policy sees it; tests hand in one that never sleeps.
pub trait Clock {
    fn now(&self) -> Instant;
    fn sleep(&mut self, duration: Duration);
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration)
    }
}

/// Runs `attempt` until it succeeds, proves the breath already written, fails for good, or
/// the policy's attempts or deadline run out. `sent_before` is true for a breath that an
/// earlier run or an earlier call may have written: then even the first attempt can meet its
/// own `_id`. `warn` hears of every failed attempt that will be retried, with its number.
pub fn insert(
    policy: &Policy,
    clock: &mut impl Clock,
    sent_before: bool,
    mut attempt: impl FnMut() -> Result<(), Error>,
    mut warn: impl FnMut(u32, &Error),
) -> Result<Written, Failure> {
    let start = clock.now();
    let mut number = 0;
    loop {
        number += 1;
        let began = clock.now();
        let error = match attempt() {
            Ok(()) => return Ok(written(number, false, clock.now() - start)),
            Err(error) => error,
        };
        match classify(&error, sent_before || number > 1) {
            Verdict::AlreadyWritten => return Ok(written(number, true, clock.now() - start)),
            Verdict::Fatal(reason) => {
                return Err(Failure::Refused {
                    attempt: number,
                    reason,
                    error,
                })
            }
            Verdict::Retry => {}
        }
        let now = clock.now();
        let left = policy.deadline().saturating_sub(now - start);
        if number >= policy.attempts || left.is_zero() {
            return Err(Failure::GaveUp {
                attempts: number,
                waited: now - start,
                last: error,
            });
        }
        warn(number, &error);
        clock.sleep(policy.pause(number, now - began).min(left));
    }
}

fn written(attempts: u32, already_written: bool, waited: Duration) -> Written {
    Written {
        attempts,
        already_written,
        waited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;
    use mongodb::error::{CommandError, WriteConcernError, WriteError};
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;
    use std::io;
    use std::rc::Rc;

    /// A clock that moves only when slept, or when an attempt says it took time.
    #[derive(Clone)]
    struct FakeClock {
        now: Rc<Cell<Instant>>,
        slept: Rc<RefCell<Vec<Duration>>>,
    }

    impl FakeClock {
        fn advance(&self, by: Duration) {
            self.now.set(self.now.get() + by);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.now.get()
        }

        fn sleep(&mut self, duration: Duration) {
            self.slept.borrow_mut().push(duration);
            self.advance(duration);
        }
    }

    fn io_error() -> Error {
        ErrorKind::Io(io::Error::from(io::ErrorKind::ConnectionReset).into()).into()
    }

    fn command_error(code: i32) -> Error {
        let e: CommandError =
            bson::from_document(doc! { "code": code, "codeName": "X", "errmsg": "x" }).unwrap();
        ErrorKind::Command(e).into()
    }

    fn write_error(code: i32, errmsg: &str) -> Error {
        let e: WriteError = bson::from_document(doc! { "code": code, "errmsg": errmsg }).unwrap();
        ErrorKind::Write(WriteFailure::WriteError(e)).into()
    }

    fn write_concern_error(code: i32) -> Error {
        let e: WriteConcernError =
            bson::from_document(doc! { "code": code, "codeName": "X", "errmsg": "x" }).unwrap();
        ErrorKind::Write(WriteFailure::WriteConcernError(e)).into()
    }

    const DUP_ID: &str = "E11000 duplicate key error collection: mabel.breaths index: _id_ \
                          dup key: { _id: ObjectId('6564f1a2b3c4d5e6f7a8b9c0') }";
    const DUP_TIME: &str = "E11000 duplicate key error collection: mabel.breaths index: time_1 \
                            dup key: { time: new Date(1) }";

    #[test]
    fn transient_failures_are_retried() {
        for error in [
            io_error(),
            command_error(10107),
            command_error(11602),
            command_error(91),
            write_concern_error(64),
            write_concern_error(189),
        ] {
            assert_eq!(classify(&error, false), Verdict::Retry, "{error}");
        }
    }

    #[test]
    fn command_errors_are_never_retried() {
        for error in [
            write_error(121, "Document failed validation"),
            command_error(13),
            command_error(2),
            write_concern_error(100),
        ] {
            assert!(
                matches!(classify(&error, true), Verdict::Fatal(_)),
                "{error} was not fatal"
            );
        }
    }

    #[test]
    fn errors_are_described_on_one_line() {
        assert_eq!(
            describe(&write_error(121, "Document failed validation")),
            "write error 121: Document failed validation"
        );
        assert_eq!(
            describe(&write_concern_error(64)),
            "write concern error 64 (X): x"
        );
        assert!(describe(&io_error()).starts_with("I/O error: "));
    }

    #[test]
    fn server_selection_timeouts_read_like_the_seeds_warnings() {
        let message = "Server selection timeout: None of the available servers suitable for \
            criteria ReadPreference(Primary). Topology: { Type: ReplicaSetNoPrimary, Set Name: \
            rs0, Max Set Version: 1, Servers: [ { Address: 127.0.0.1:33517, Type: Unknown, \
            Error: Kind: I/O error: Connection refused (os error 111), labels: {}, source: \
            None, server response: None }, { Address: 127.0.0.1:39135, Type: RsSecondary, \
            Average RTT: 1.66ms, Replica Set Name: rs0 } ] }";
        assert_eq!(
            servers_seen(message).unwrap(),
            "127.0.0.1:33517 Unknown (I/O error: Connection refused (os error 111)), \
             127.0.0.1:39135 RsSecondary"
        );
        assert_eq!(servers_seen("something else"), None);
    }

    #[test]
    fn duplicate_id_on_a_breath_sent_before_is_already_written() {
        assert_eq!(
            classify(&write_error(11000, DUP_ID), true),
            Verdict::AlreadyWritten
        );
        assert!(matches!(
            classify(&write_error(11000, DUP_ID), false),
            Verdict::Fatal(_)
        ));
        assert!(matches!(
            classify(&write_error(11000, DUP_TIME), true),
            Verdict::Fatal(_)
        ));
    }

    /// Runs `insert` against a script of results (then endless I/O errors); each attempt
    /// takes `took` of fake time. Returns the result, the pauses and the warned attempts.
    fn run(
        policy: Policy,
        took: Duration,
        script: Vec<Result<(), Error>>,
    ) -> (Result<Written, Failure>, Vec<Duration>, Vec<u32>) {
        run_sent(policy, took, false, script)
    }

    /// `run` for a breath that may have been sent before, as one replayed from the spool.
    fn run_sent(
        policy: Policy,
        took: Duration,
        sent_before: bool,
        script: Vec<Result<(), Error>>,
    ) -> (Result<Written, Failure>, Vec<Duration>, Vec<u32>) {
        let mut script = VecDeque::from(script);
        let mut clock = FakeClock {
            now: Rc::new(Cell::new(Instant::now())),
            slept: Rc::default(),
        };
        let attempt_clock = clock.clone();
        let attempt = || {
            attempt_clock.advance(took);
            script.pop_front().unwrap_or_else(|| Err(io_error()))
        };
        let mut warned = Vec::new();
        let result = insert(&policy, &mut clock, sent_before, attempt, |n, _| {
            warned.push(n)
        });
        let slept = clock.slept.borrow().clone();
        (result, slept, warned)
    }

    fn policy(attempts: u32, retry_wait_ms: u64) -> Policy {
        Policy {
            attempts,
            retry_wait: Duration::from_millis(retry_wait_ms),
        }
    }

    #[test]
    fn first_success_is_one_attempt() {
        let (result, slept, warned) = run(policy(60, 5000), Duration::ZERO, vec![Ok(())]);
        let written = result.unwrap();
        assert_eq!((written.attempts, written.already_written), (1, false));
        assert!(slept.is_empty() && warned.is_empty());
    }

    #[test]
    fn duplicate_after_a_lost_reply_counts_once_as_already_written() {
        let script = vec![Err(io_error()), Err(write_error(11000, DUP_ID))];
        let (result, _, warned) = run(policy(60, 5000), Duration::ZERO, script);
        let written = result.unwrap();
        assert_eq!((written.attempts, written.already_written), (2, true));
        assert_eq!(warned, [1]);
    }

    #[test]
    fn a_breath_sent_before_may_meet_its_own_id_at_the_first_attempt() {
        let dup = || vec![Err(write_error(11000, DUP_ID))];
        let (result, _, warned) = run_sent(policy(60, 5000), Duration::ZERO, true, dup());
        let written = result.unwrap();
        assert_eq!((written.attempts, written.already_written), (1, true));
        assert!(warned.is_empty());

        let (result, _, _) = run_sent(policy(60, 5000), Duration::ZERO, false, dup());
        assert!(matches!(result, Err(Failure::Refused { attempt: 1, .. })));
    }

    #[test]
    fn a_validation_error_stops_at_once() {
        let script = vec![Err(write_error(121, "Document failed validation"))];
        let (result, slept, warned) = run(policy(60, 5000), Duration::ZERO, script);
        assert!(matches!(result, Err(Failure::Refused { attempt: 1, .. })));
        assert!(slept.is_empty() && warned.is_empty());
    }

    #[test]
    fn fast_failures_pause_briefly_and_slow_ones_not_at_all() {
        let p = policy(60, 5000);
        assert_eq!(p.pause(1, Duration::ZERO), Duration::from_millis(100));
        assert_eq!(
            p.pause(2, Duration::from_millis(50)),
            Duration::from_millis(150)
        );
        assert_eq!(p.pause(10, Duration::ZERO), Duration::from_secs(5));
        assert_eq!(p.pause(3, Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(p.pause(u32::MAX, Duration::ZERO), Duration::from_secs(5));
    }

    #[test]
    fn gives_up_after_the_seeds_sixty_attempts_in_about_five_minutes() {
        // Each attempt waits out server selection, as with every member down.
        let (result, slept, warned) = run(policy(60, 5000), Duration::from_secs(5), vec![]);
        match result {
            Err(Failure::GaveUp {
                attempts, waited, ..
            }) => {
                assert_eq!(attempts, 60);
                assert_eq!(waited, Duration::from_secs(300));
            }
            other => panic!("expected GaveUp, got {other:?}"),
        }
        assert!(slept.iter().all(|d| d.is_zero()));
        assert_eq!(warned.len(), 59);
    }

    #[test]
    fn fast_failures_still_use_about_the_whole_budget_and_never_more() {
        let (result, _, _) = run(policy(60, 5000), Duration::ZERO, vec![]);
        match result {
            Err(Failure::GaveUp {
                attempts, waited, ..
            }) => {
                assert_eq!(attempts, 60);
                assert!(waited > Duration::from_secs(270), "{waited:?}");
                assert!(waited <= Duration::from_secs(300), "{waited:?}");
            }
            other => panic!("expected GaveUp, got {other:?}"),
        }
    }

    #[test]
    fn slow_attempts_stop_at_the_deadline_not_the_count() {
        // A hung primary: every attempt takes twelve seconds.
        let (result, _, _) = run(policy(60, 5000), Duration::from_secs(12), vec![]);
        match result {
            Err(Failure::GaveUp {
                attempts, waited, ..
            }) => {
                assert_eq!(attempts, 25);
                assert_eq!(waited, Duration::from_secs(300));
            }
            other => panic!("expected GaveUp, got {other:?}"),
        }
    }
}
