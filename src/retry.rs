//! The retry policy: what an attempt's result means for each breath it carried, how long to
//! pause before the next attempt, and when to stop. `main`'s attempt loop asks; this module
//! judges and times, and does no I/O and no wording.
//!
//! It keeps the seed's budget (sixty attempts five seconds apart) and its trick (a duplicate
//! `_id` on a retry proves an earlier attempt landed), and adds what a decade of failovers
//! taught: a refused command is not retried; a duplicate `_id` is proof only in a reply that
//! also met the write concern, for on a primary cut off from the majority the copy it met can
//! be rolled back; the driver already waits for a primary, so only an attempt that failed
//! without waiting is followed by a pause; and an overloaded server is waited out like a
//! missing primary, under the same deadline and with the same growing pause.
//! `ARCHITECTURE.md` tells the whole of it.
//!
//! An attempt may carry many breaths (the spool's backlog, in one unordered insert), and its
//! reply can write some and not others, so the judgement is given breath by breath.

use std::collections::HashSet;
use std::time::Duration;

use mongodb::error::{Error, ErrorKind, InsertManyError};

/// Server error codes that mean "no writable primary here right now": not writable primary
/// (10107, 13435, 10058), node is recovering (11600, 11602, 13436, 189, 91), and the
/// network-shaped failures of the retryable-writes specification (6, 7, 89, 262, 9001).
const TRANSIENT_CODES: &[i32] = &[
    10107, 13435, 10058, 11600, 11602, 13436, 189, 91, 6, 7, 89, 262, 9001,
];

/// The labels of the client-backpressure specification, which servers from 8.2 on put on
/// work they refuse under load (and the driver on its own failed connection handshakes): the
/// server is overloaded, and the command is safe to send again. The driver retries an error
/// with both itself, at most `maxAdaptiveRetries` (2) more times, then returns it.
const OVERLOADED: &[&str] = &["SystemOverloadedError", "RetryableError"];

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

/// How the reply to an attempt shows a breath written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Proof {
    /// This attempt inserted it.
    Inserted,
    /// Its own `_id`, in a reply that met the write concern: an earlier attempt, or an
    /// earlier run, landed.
    AlreadyWritten,
}

/// What becomes of the breaths an attempt did not write.
#[derive(Debug)]
pub enum Rest<T> {
    /// Every breath is written.
    Nothing,
    /// A primary may be back soon: try these again.
    Retry { breaths: Vec<T>, error: Error },
    /// Trying again cannot help this breath, and may hide a real problem.
    Refused {
        breath: T,
        reason: &'static str,
        error: Error,
    },
}

impl<T> Rest<T> {
    /// The oldest breath not written, if any.
    pub fn oldest(&self) -> Option<&T> {
        match self {
            Rest::Nothing => None,
            Rest::Retry { breaths, .. } => breaths.first(),
            Rest::Refused { breath, .. } => Some(breath),
        }
    }
}

/// Judges the result of inserting `batch` (`Ok`: every breath inserted). Returns the breaths
/// written, in the order sent, with what proves each, and what becomes of the rest: the first
/// breath refused, if one is, else those to try again. `sent_before` says whether they may
/// have been sent already, by an earlier attempt or by an earlier run that left them in the
/// spool: a duplicate `_id` on a breath never sent before cannot be mabel's own write.
pub fn judge<T>(
    result: Result<(), Error>,
    batch: Vec<T>,
    sent_before: bool,
) -> (Vec<(T, Proof)>, Rest<T>) {
    let Err(error) = result else {
        let written = batch.into_iter().map(|b| (b, Proof::Inserted)).collect();
        return (written, Rest::Nothing);
    };
    let (mut written, mut retry, mut refused) = (Vec::new(), Vec::new(), None);
    for (i, breath) in batch.into_iter().enumerate() {
        match verdict(&error, i, sent_before) {
            Verdict::Written(proof) => written.push((breath, proof)),
            Verdict::Retry => retry.push(breath),
            Verdict::Refused(reason) => {
                refused.get_or_insert((breath, reason));
            }
        }
    }
    let rest = match refused {
        Some((breath, reason)) => Rest::Refused {
            breath,
            reason,
            error,
        },
        None if retry.is_empty() => Rest::Nothing,
        None => Rest::Retry {
            breaths: retry,
            error,
        },
    };
    (written, rest)
}

/// What a failed attempt means for one breath it carried.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict {
    /// The attempt failed for other breaths only, or this one was written before.
    Written(Proof),
    Retry,
    Refused(&'static str),
}

/// The verdict on breath `i` of a failed attempt.
fn verdict(error: &Error, i: usize, sent_before: bool) -> Verdict {
    match &*error.kind {
        ErrorKind::InsertMany(reply) if reply.write_concern_error.is_none() => {
            each(reply, i, sent_before)
        }
        _ => whole(error),
    }
}

/// An error that speaks for the whole attempt: the reply never came, the command was refused,
/// or the write concern was not met, which leaves every breath of the attempt unproven.
fn whole(error: &Error) -> Verdict {
    if labelled_retryable(error.labels()) {
        return Verdict::Retry;
    }
    match &*error.kind {
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => Verdict::Retry,
        ErrorKind::ServerSelection { .. } => Verdict::Retry,
        ErrorKind::Command(e) if TRANSIENT_CODES.contains(&e.code) => Verdict::Retry,
        ErrorKind::Command(_) => Verdict::Refused("the server refused the command"),
        ErrorKind::InsertMany(InsertManyError {
            write_concern_error: Some(e),
            ..
        }) if TRANSIENT_CODES.contains(&e.code) || e.code == WRITE_CONCERN_TIMEOUT => {
            Verdict::Retry
        }
        ErrorKind::InsertMany(_) => Verdict::Refused("the write concern cannot be met"),
        ErrorKind::Authentication { .. } => Verdict::Refused("authentication failed"),
        _ => Verdict::Refused("not a failure that waiting can mend"),
    }
}

/// Whether the labels say to send the command again: the server's `RetryableWriteError`, or
/// either overload label.
fn labelled_retryable(labels: &HashSet<String>) -> bool {
    labels.contains("RetryableWriteError") || OVERLOADED.iter().any(|l| labels.contains(*l))
}

/// The verdict for breath `i` of a reply that met the write concern: inserted unless a
/// write error names it.
fn each(reply: &InsertManyError, i: usize, sent_before: bool) -> Verdict {
    let errors = reply.write_errors.as_deref().unwrap_or_default();
    let Some(e) = errors.iter().find(|e| e.index == i) else {
        return Verdict::Written(Proof::Inserted);
    };
    match e.code {
        DUPLICATE_KEY if !on_id_index(&e.message) => {
            Verdict::Refused("duplicate key on an index other than _id")
        }
        DUPLICATE_KEY if !sent_before => {
            Verdict::Refused("duplicate _id on a breath never sent before")
        }
        DUPLICATE_KEY => Verdict::Written(Proof::AlreadyWritten),
        code if TRANSIENT_CODES.contains(&code) => Verdict::Retry,
        _ => Verdict::Refused("the server refused the write"),
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
    use crate::test_errors::{command_error, io_error, reply};

    const DUP_ID: &str = "E11000 duplicate key error collection: mabel.breaths index: _id_ \
                          dup key: { _id: ObjectId('6564f1a2b3c4d5e6f7a8b9c0') }";
    const DUP_TIME: &str = "E11000 duplicate key error collection: mabel.breaths index: time_1 \
                            dup key: { time: new Date(1) }";

    /// What `judge` makes of an attempt at breaths `0..n`, one letter a breath in the order
    /// sent: `i` inserted, `a` already written, `r` to retry, `x` refused, `-` none of these
    /// (a refusal ends the attempts, and leaves the others as they are).
    fn fates(result: Result<(), Error>, n: usize, sent_before: bool) -> String {
        let (written, rest) = judge(result, (0..n).collect(), sent_before);
        let order: Vec<usize> = written.iter().map(|&(i, _)| i).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        let mut fates = vec!['-'; n];
        for (i, proof) in written {
            fates[i] = match proof {
                Proof::Inserted => 'i',
                Proof::AlreadyWritten => 'a',
            };
        }
        match rest {
            Rest::Nothing => {}
            Rest::Retry { breaths, .. } => breaths.into_iter().for_each(|i| fates[i] = 'r'),
            Rest::Refused { breath, .. } => fates[breath] = 'x',
        }
        fates.into_iter().collect()
    }

    #[test]
    fn ok_means_every_breath_inserted() {
        assert_eq!(fates(Ok(()), 3, false), "iii");
        assert_eq!(fates(Ok(()), 1, true), "i");
    }

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
            assert_eq!(fates(Err(error.clone()), 1, false), "r", "{error}");
        }
    }

    #[test]
    fn an_overloaded_server_is_waited_out() {
        let labelled =
            |labels: &[&str]| labelled_retryable(&labels.iter().map(|l| l.to_string()).collect());
        assert!(labelled(&["SystemOverloadedError", "RetryableError"]));
        assert!(labelled(&["SystemOverloadedError"]));
        assert!(labelled(&["RetryableError"]));
        assert!(labelled(&["RetryableWriteError"]));
        assert!(!labelled(&["NoWritesPerformed"]));
        // Unlabelled, the code itself (462, IngressRequestRateLimitExceeded) is not retried.
        assert_eq!(fates(Err(command_error(462)), 1, false), "x");
    }

    #[test]
    fn command_errors_are_never_retried() {
        for error in [
            reply(&[(0, 121, "Document failed validation")], None),
            command_error(13),
            command_error(2),
            reply(&[], Some(100)),
        ] {
            assert_eq!(fates(Err(error.clone()), 1, true), "x", "{error}");
        }
    }

    #[test]
    fn a_duplicate_id_proves_a_breath_sent_before_written_only_with_the_write_concern_met() {
        let proof = || Err(reply(&[(0, 11000, DUP_ID)], None));
        assert_eq!(fates(proof(), 1, true), "a");
        assert_eq!(fates(proof(), 1, false), "x");
        assert_eq!(
            fates(Err(reply(&[(0, 11000, DUP_TIME)], None)), 1, true),
            "x"
        );

        // Met on a primary cut off from the majority: the copy met may yet be rolled back.
        for code in [64, 189, 11602] {
            let held = reply(&[(0, 11000, DUP_ID)], Some(code));
            assert_eq!(fates(Err(held), 1, true), "r", "{code}");
        }
    }

    #[test]
    fn a_batch_is_judged_breath_by_breath() {
        let error = reply(&[(1, 11000, DUP_ID), (3, 10107, "not primary")], None);
        assert_eq!(fates(Err(error), 5, true), "iairi");
        let error = reply(&[(0, 11000, DUP_ID), (1, 11000, DUP_ID)], None);
        assert_eq!(fates(Err(error), 2, true), "aa", "nothing left to write");

        // The first breath refused is named; the attempts end there.
        let refused = reply(
            &[(1, 10107, "not primary"), (2, 121, "x"), (4, 121, "x")],
            None,
        );
        assert_eq!(fates(Err(refused), 5, true), "i-xi-");

        // With the write concern unmet nothing in the batch is proven, inserted or met.
        let error = reply(&[(1, 11000, DUP_ID)], Some(64));
        assert_eq!(fates(Err(error), 3, true), "rrr");
        assert_eq!(fates(Err(io_error()), 2, true), "rr");
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
        let (mut attempt, mut waited) = (1, took);
        while let Some(pause) = policy.pause(attempt, took, waited) {
            attempt += 1;
            waited += pause + took;
        }
        (attempt, waited)
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
