//! The retry policy: what a failed attempt means, how long to pause after it, and when to stop
//! trying. `main`'s attempt loop asks; this module only judges and times, and does no I/O.
//!
//! The seed retried every `AutoReconnect` five seconds apart, sixty times. This keeps the
//! seed's budget (`--attempts` x `--retry-wait`, five minutes by default) and its trick (a
//! duplicate `_id` on a retry proves an earlier attempt landed), and adds what a decade of
//! failovers taught:
//!
//! - A command error such as a failed validation is not retried, and a duplicate on any index
//!   but `_id` is a real error.
//! - A duplicate `_id` proves the breath written only when the same reply also met the write
//!   concern. A write that fails still waits for its write concern (the server's
//!   `LastOpFixer`), so on a primary cut off from the majority a duplicate-key reply comes back
//!   with a `writeConcernError` too: the copy it met is on that primary alone, and the next
//!   election can roll it back. mabel inserts with `insert_many`, whose error keeps the write
//!   errors and the write concern error together; `insert_one`'s keeps only the first write
//!   error (mongodb 3.9 `src/error.rs`, `WriteFailure::from_insert_many_error`).
//! - The wait for a new primary ends as soon as the driver sees one: that is the driver's
//!   server selection, which re-checks the set twice a second. This module only adds a short,
//!   growing pause after an attempt that failed without waiting at all, so that a member that
//!   fails every write quickly cannot use up the attempts in a second.
//!
//! An attempt may carry many breaths (the spool's backlog, in one unordered insert), and its
//! reply can settle some and not others, so a verdict is given for each breath.

use std::time::Duration;

use mongodb::error::{Error, ErrorKind, InsertManyError};

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
/// so trying again is safe, and a later reply that meets the write concern will tell.
const WRITE_CONCERN_TIMEOUT: i32 = 64;

const DUPLICATE_KEY: i32 = 11000;

/// The first pause after an attempt that failed fast; it doubles up to `--retry-wait`.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// How hard to try for one breath, or one batch of them.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub attempts: u32,
    pub retry_wait: Duration,
}

impl Policy {
    /// The whole budget: the seed's sixty attempts five seconds apart.
    pub fn deadline(&self) -> Duration {
        self.retry_wait.saturating_mul(self.attempts)
    }

    /// How long to pause after failed attempt number `attempt` (from 1), which took `took`,
    /// `waited` after the first attempt began; `None` once the attempts or the deadline are
    /// spent. An attempt that already waited (for server selection, say) is followed at once.
    pub fn pause(&self, attempt: u32, took: Duration, waited: Duration) -> Option<Duration> {
        let left = self.deadline().saturating_sub(waited);
        if attempt >= self.attempts || left.is_zero() {
            return None;
        }
        let doubling = FIRST_PAUSE.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        Some(doubling.min(self.retry_wait).saturating_sub(took).min(left))
    }
}

/// What a failed attempt means for one breath it carried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// The reply shows this breath inserted: the attempt failed for others only.
    Inserted,
    /// The breath's own `_id`, in a reply that met the write concern: an earlier attempt, or
    /// an earlier run, landed.
    AlreadyWritten,
    /// A primary may be back soon: try again.
    Retry,
    /// Trying again cannot help, and may hide a real problem.
    Fatal(&'static str),
}

impl Verdict {
    /// The breath is in the database.
    pub fn is_written(self) -> bool {
        matches!(self, Verdict::Inserted | Verdict::AlreadyWritten)
    }
}

/// Judges a failed attempt at inserting `count` breaths: a verdict for each, in the order
/// sent. `sent_before` says whether these breaths may already have been sent, by an earlier
/// attempt or by an earlier run that left them in the spool: a duplicate `_id` on a breath
/// never sent before cannot be our own write.
pub fn classify(error: &Error, count: usize, sent_before: bool) -> Vec<Verdict> {
    match &*error.kind {
        ErrorKind::InsertMany(reply) if reply.write_concern_error.is_none() => {
            (0..count).map(|i| each(reply, i, sent_before)).collect()
        }
        _ => vec![whole(error); count],
    }
}

/// An error that speaks for the whole attempt: the reply never came, the command was refused,
/// or the write concern was not met, which leaves every breath of the attempt unproven.
fn whole(error: &Error) -> Verdict {
    if error.contains_label("RetryableWriteError") {
        return Verdict::Retry;
    }
    match &*error.kind {
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => Verdict::Retry,
        ErrorKind::ServerSelection { .. } => Verdict::Retry,
        ErrorKind::Command(e) if TRANSIENT_CODES.contains(&e.code) => Verdict::Retry,
        ErrorKind::Command(_) => Verdict::Fatal("the server refused the command"),
        ErrorKind::InsertMany(InsertManyError {
            write_concern_error: Some(e),
            ..
        }) if TRANSIENT_CODES.contains(&e.code) || e.code == WRITE_CONCERN_TIMEOUT => {
            Verdict::Retry
        }
        ErrorKind::InsertMany(_) => Verdict::Fatal("the write concern cannot be met"),
        ErrorKind::Authentication { .. } => Verdict::Fatal("authentication failed"),
        _ => Verdict::Fatal("not a failure that waiting can mend"),
    }
}

/// The verdict for breath `i` of a reply that met the write concern: inserted unless a
/// write error names it.
fn each(reply: &InsertManyError, i: usize, sent_before: bool) -> Verdict {
    let errors = reply.write_errors.as_deref().unwrap_or_default();
    let Some(e) = errors.iter().find(|e| e.index == i) else {
        return Verdict::Inserted;
    };
    match e.code {
        DUPLICATE_KEY if !on_id_index(&e.message) => {
            Verdict::Fatal("duplicate key on an index other than _id")
        }
        DUPLICATE_KEY if !sent_before => {
            Verdict::Fatal("duplicate _id on a breath never sent before")
        }
        DUPLICATE_KEY => Verdict::AlreadyWritten,
        code if TRANSIENT_CODES.contains(&code) => Verdict::Retry,
        _ => Verdict::Fatal("the server refused the write"),
    }
}

/// The driver keeps a write error's `errmsg` but drops its `keyPattern`, so the index is read
/// from the message the server has sent since 3.0:
/// `E11000 duplicate key error collection: mabel.breaths index: _id_ dup key: { ... }`.
/// `_id_` is the name MongoDB reserves for the `_id` index.
fn on_id_index(message: &str) -> bool {
    message.contains(" index: _id_ ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, Document};
    use mongodb::error::CommandError;
    use std::io;

    fn io_error() -> Error {
        ErrorKind::Io(io::Error::from(io::ErrorKind::ConnectionReset).into()).into()
    }

    fn command_error(code: i32) -> Error {
        let e: CommandError =
            bson::from_document(doc! { "code": code, "codeName": "X", "errmsg": "x" }).unwrap();
        ErrorKind::Command(e).into()
    }

    /// An `insert` reply as `insert_many` reports it: `writeErrors` and `writeConcernError`.
    fn reply(write_errors: &[(i32, i32, &str)], write_concern_error: Option<i32>) -> Error {
        let mut body = Document::new();
        if !write_errors.is_empty() {
            let errors: Vec<Document> = write_errors
                .iter()
                .map(|&(index, code, errmsg)| doc! { "index": index, "code": code, "errmsg": errmsg })
                .collect();
            body.insert("writeErrors", errors);
        }
        if let Some(code) = write_concern_error {
            body.insert(
                "writeConcernError",
                doc! { "code": code, "codeName": "X", "errmsg": "x" },
            );
        }
        let e: InsertManyError = bson::from_document(body).unwrap();
        ErrorKind::InsertMany(e).into()
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
            reply(&[], Some(64)),
            reply(&[], Some(189)),
        ] {
            assert_eq!(classify(&error, 1, false), [Verdict::Retry], "{error}");
        }
    }

    #[test]
    fn command_errors_are_never_retried() {
        for error in [
            reply(&[(0, 121, "Document failed validation")], None),
            command_error(13),
            command_error(2),
            reply(&[], Some(100)),
        ] {
            assert!(
                matches!(classify(&error, 1, true)[..], [Verdict::Fatal(_)]),
                "{error} was not fatal"
            );
        }
    }

    #[test]
    fn a_duplicate_id_proves_a_breath_sent_before_written_only_with_the_write_concern_met() {
        let proof = reply(&[(0, 11000, DUP_ID)], None);
        assert_eq!(classify(&proof, 1, true), [Verdict::AlreadyWritten]);
        assert!(matches!(
            classify(&proof, 1, false)[..],
            [Verdict::Fatal(_)]
        ));
        let other_index = reply(&[(0, 11000, DUP_TIME)], None);
        assert!(matches!(
            classify(&other_index, 1, true)[..],
            [Verdict::Fatal(_)]
        ));

        // Met on a primary cut off from the majority: the copy met may yet be rolled back.
        for code in [64, 189, 11602] {
            let held = reply(&[(0, 11000, DUP_ID)], Some(code));
            assert_eq!(classify(&held, 1, true), [Verdict::Retry], "{code}");
        }
    }

    #[test]
    fn a_batch_gets_a_verdict_for_each_breath() {
        let error = reply(
            &[(1, 11000, DUP_ID), (3, 121, "Document failed validation")],
            None,
        );
        let verdicts = classify(&error, 4, true);
        assert_eq!(verdicts[0], Verdict::Inserted);
        assert_eq!(verdicts[1], Verdict::AlreadyWritten);
        assert_eq!(verdicts[2], Verdict::Inserted);
        assert!(matches!(verdicts[3], Verdict::Fatal(_)));

        // With the write concern unmet nothing in the batch is proven, inserted or met.
        let error = reply(&[(1, 11000, DUP_ID)], Some(64));
        assert_eq!(classify(&error, 3, true), [Verdict::Retry; 3]);
        assert_eq!(classify(&io_error(), 2, true), [Verdict::Retry; 2]);
    }

    fn policy(attempts: u32, retry_wait_ms: u64) -> Policy {
        Policy {
            attempts,
            retry_wait: Duration::from_millis(retry_wait_ms),
        }
    }

    /// Plays the attempt loop on paper: every attempt fails after `took`. Returns how many
    /// attempts were made and how long they took in all.
    fn give_up(policy: Policy, took: Duration) -> (u32, Duration) {
        let mut waited = Duration::ZERO;
        for attempt in 1.. {
            waited += took;
            match policy.pause(attempt, took, waited) {
                Some(pause) => waited += pause,
                None => return (attempt, waited),
            }
        }
        unreachable!("the policy never gave up")
    }

    #[test]
    fn fast_failures_pause_briefly_and_slow_ones_not_at_all() {
        let p = policy(60, 5000);
        let pause =
            |attempt, took_ms| p.pause(attempt, Duration::from_millis(took_ms), Duration::ZERO);
        assert_eq!(pause(1, 0), Some(Duration::from_millis(100)));
        assert_eq!(pause(2, 50), Some(Duration::from_millis(150)));
        assert_eq!(pause(10, 0), Some(Duration::from_secs(5)));
        assert_eq!(pause(3, 5000), Some(Duration::ZERO));
        assert_eq!(pause(59, 0), Some(Duration::from_secs(5)));
        assert_eq!(pause(60, 0), None);
    }

    #[test]
    fn the_pause_never_runs_past_the_deadline() {
        let p = policy(60, 5000);
        let left = Duration::from_millis(30);
        assert_eq!(p.pause(10, Duration::ZERO, p.deadline() - left), Some(left));
        assert_eq!(p.pause(10, Duration::ZERO, p.deadline()), None);
    }

    #[test]
    fn gives_up_after_the_seeds_sixty_attempts_in_about_five_minutes() {
        // Each attempt waits out server selection, as with every member down.
        let (attempts, waited) = give_up(policy(60, 5000), Duration::from_secs(5));
        assert_eq!(attempts, 60);
        assert_eq!(waited, Duration::from_secs(300));
    }

    #[test]
    fn fast_failures_still_use_about_the_whole_budget_and_never_more() {
        let (attempts, waited) = give_up(policy(60, 5000), Duration::ZERO);
        assert_eq!(attempts, 60);
        assert!(waited > Duration::from_secs(270), "{waited:?}");
        assert!(waited <= Duration::from_secs(300), "{waited:?}");
    }

    #[test]
    fn slow_attempts_stop_at_the_deadline_not_the_count() {
        // A hung primary: every attempt takes twelve seconds.
        let (attempts, waited) = give_up(policy(60, 5000), Duration::from_secs(12));
        assert_eq!(attempts, 25);
        assert_eq!(waited, Duration::from_secs(300));
    }
}
