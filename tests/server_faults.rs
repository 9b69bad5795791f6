//! Faults injected through the server's own `failCommand` fail point, so that each test runs
//! against the fake in `make test` and against a real set in `make test-real`: a connection
//! dropped before the write, a write held up, and a write whose write concern failed.

use std::time::Duration;

use crate::support::mabel::{assert_stored_exactly_once, Mabel, Outcome};
use crate::support::target::{FailPoint, Mode, Target};
use bson::doc;

const WATCHDOG: Duration = Duration::from_secs(90);

/// Runs mabel for `count` breaths with `fail_point` set on the primary, for mabel's own
/// connections only, after the first few breaths; returns how mabel ended and how often the
/// fail point fired.
fn run_with(
    target: &Target,
    uri_options: &str,
    count: usize,
    fail_point: FailPoint,
) -> (Outcome, i64) {
    let primary = target.wait_for_primary(WATCHDOG);
    let uri = format!("{}{uri_options}", target.uri());
    let count = count.to_string();
    let args = [
        "run",
        "--interval",
        "0.05",
        "--count",
        &count,
        "--db",
        target.db(),
    ];
    let mut mabel = Mabel::start(&uri, &args);
    mabel.wait_for_breaths(3, Duration::from_secs(30));
    let guard = target.fail_point(primary, fail_point.app_name("mabel"));
    let outcome = mabel.finish(WATCHDOG);
    (outcome, guard.times_entered())
}

fn assert_all_stored_once(target: &Target, outcome: &Outcome, count: usize) {
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(outcome.confirmed().len(), count, "{outcome:#?}");
    let stored = target.breaths();
    assert_stored_exactly_once(outcome, &stored);
    assert_eq!(stored.len(), count);
}

#[test]
fn a_connection_dropped_before_the_write_is_retried_and_stored_once() {
    for retry_writes in [true, false] {
        let target = Target::start();
        let drop_it = FailPoint::fail_command(&["insert"], Mode::Times(1)).close_connection();
        let options = format!("&retryWrites={retry_writes}");
        let (outcome, fired) = run_with(&target, &options, 12, drop_it);

        assert_eq!(fired, 1, "retryWrites={retry_writes}");
        assert_all_stored_once(&target, &outcome, 12);
        // The write never ran, so no retry can meet it already written.
        assert!(
            outcome.confirmed().iter().all(|c| !c.already_written),
            "{outcome:#?}"
        );
        if !retry_writes {
            let retried = outcome
                .confirmed()
                .iter()
                .filter(|c| c.attempts == 2)
                .count();
            assert_eq!(
                retried, 1,
                "mabel's own loop resent the breath: {outcome:#?}"
            );
        }
    }
}

#[test]
fn a_write_held_up_is_waited_for_and_counted_once() {
    let target = Target::start();
    let hold =
        FailPoint::fail_command(&["insert"], Mode::Times(1)).block(Duration::from_millis(700));
    let (outcome, fired) = run_with(&target, "", 10, hold);

    assert_eq!(fired, 1);
    assert_all_stored_once(&target, &outcome, 10);
    assert!(
        outcome.confirmed().iter().all(|c| c.attempts == 1),
        "{outcome:#?}"
    );
}

#[test]
fn a_write_whose_write_concern_failed_is_not_taken_for_confirmed() {
    for retry_writes in [true, false] {
        let target = Target::start();
        let timed_out = doc! {
            "code": 64,
            "codeName": "WriteConcernFailed",
            "errmsg": "waiting for replication timed out",
            "errInfo": { "wtimeout": true },
        };
        let fail =
            FailPoint::fail_command(&["insert"], Mode::Times(1)).write_concern_error(timed_out);
        let options = format!("&retryWrites={retry_writes}");
        let (outcome, fired) = run_with(&target, &options, 10, fail);

        assert_eq!(fired, 1, "retryWrites={retry_writes}");
        assert_all_stored_once(&target, &outcome, 10);
        // The write landed with the failed reply: mabel tried again instead of trusting it,
        // and the retry found the breath already there.
        let retried: Vec<_> = outcome
            .confirmed()
            .into_iter()
            .filter(|c| c.attempts > 1)
            .collect();
        assert_eq!(retried.len(), 1, "retryWrites={retry_writes}: {outcome:#?}");
        assert!(retried[0].already_written, "{outcome:#?}");
    }
}

#[test]
fn the_servers_labels_decide_whether_the_driver_retries_by_itself() {
    // Labelled RetryableWriteError by the server (the write carried a txnNumber), the error
    // is retried inside the driver and mabel never sees it; with the labels emptied, mabel's
    // own loop makes the second attempt.
    for labels in [None, Some(&[][..])] {
        let target = Target::start();
        let mut refuse = FailPoint::fail_command(&["insert"], Mode::Times(1)).error_code(10107);
        if let Some(labels) = labels {
            refuse = refuse.error_labels(labels);
        }
        let (outcome, fired) = run_with(&target, "", 8, refuse);

        assert_eq!(fired, 1);
        assert_all_stored_once(&target, &outcome, 8);
        let retried = outcome
            .confirmed()
            .iter()
            .filter(|c| c.attempts > 1)
            .count();
        let expected = if labels.is_some() { 1 } else { 0 };
        assert_eq!(retried, expected, "labels {labels:?}: {outcome:#?}");
    }
}
