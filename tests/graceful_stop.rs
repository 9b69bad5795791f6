//! SIGINT and SIGTERM: the first stops measuring, finishes the breath in flight and ends with
//! a summary and exit 0; a second exits at once, naming the breath it abandons.

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;

use crate::support::mabel::{assert_stored_exactly_once, Mabel};
use crate::support::target::{fake_only, Target};

const WATCHDOG: Duration = Duration::from_secs(60);

#[test]
fn sigint_between_breaths_stops_with_a_summary() {
    let target = Target::start();
    let mut mabel = target.mabel(&["run", "--interval", "0.05"]);
    mabel.wait_for_breaths(10, Duration::from_secs(30));
    mabel.signal("INT");
    let outcome = mabel.finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let written = outcome.confirmed().len();
    let summary = outcome.stdout.last().unwrap();
    let expected = format!("stopped by SIGINT: {written} breaths written, 0 incidents, ");
    assert!(summary.starts_with(&expected), "{summary}");
    assert_stored_exactly_once(&outcome, &target.breaths());
    assert_eq!(target.breaths().len(), written);
}

#[test]
fn sigterm_wakes_the_sleep_between_breaths() {
    let target = Target::start();
    let mabel = target.mabel(&["run", "--interval", "60"]);
    thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    mabel.signal("TERM");
    let outcome = mabel.finish(WATCHDOG);

    assert!(signalled.elapsed() < Duration::from_secs(5), "{outcome:#?}");
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(
        outcome.stdout,
        ["stopped by SIGTERM: 0 breaths written, 0 incidents, 0 already written"]
    );
}

#[test]
fn the_breath_in_flight_is_finished_before_stopping() {
    let Some(set) = fake_only(
        "graceful_stop::the_breath_in_flight_is_finished_before_stopping",
        "needs every member back and a primary elected within mabel's 30 s deadline",
    ) else {
        return;
    };
    let args = ["run", "--interval", "0.05", "--retry-wait", "0.5"];
    let mut mabel = Mabel::start(&set.uri(), &args);
    mabel.wait_for_breaths(5, Duration::from_secs(30));
    for member in 0..3 {
        set.kill(member);
    }
    thread::sleep(Duration::from_secs(1));
    mabel.signal("INT");
    thread::sleep(Duration::from_secs(1));
    for member in 0..3 {
        set.revive(member);
    }
    let outcome = mabel.finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(
        outcome
            .stderr
            .contains("SIGINT: finishing the breath in flight"),
        "{}",
        outcome.stderr
    );
    let confirmed = outcome.confirmed();
    let last = confirmed.last().unwrap();
    assert!(last.attempts > 1, "{outcome:#?}");
    let summary = outcome.stdout.last().unwrap();
    assert!(
        summary.starts_with(&format!(
            "stopped by SIGINT: {} breaths written, 1 incident, ",
            confirmed.len()
        )),
        "{summary}"
    );
    assert_stored_exactly_once(&outcome, &set.documents("mabel", "breaths"));
}

#[test]
fn a_second_signal_exits_at_once_naming_the_breath_in_flight() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let Some(set) = fake_only(
            "graceful_stop::a_second_signal_exits_at_once_naming_the_breath_in_flight",
            "needs every member down at once",
        ) else {
            return;
        };
        let args = ["run", "--interval", "0.05", "--retry-wait", "0.5"];
        let mut mabel = Mabel::start(&set.uri(), &args);
        mabel.wait_for_breaths(3, Duration::from_secs(30));
        for member in 0..3 {
            set.kill(member);
        }
        thread::sleep(Duration::from_secs(1));
        mabel.signal(signal);
        thread::sleep(Duration::from_millis(300));
        mabel.signal(signal);
        let outcome = mabel.finish(WATCHDOG);

        assert_eq!(outcome.code, Some(code), "{outcome:#?}");
        let last = outcome.stderr.lines().last().unwrap_or_default();
        let prefix = format!("error: stopped by a second SIG{signal}: breath ");
        let id: ObjectId = last
            .strip_prefix(&prefix)
            .and_then(|rest| rest.get(..24))
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("{last:?} does not name the breath"));
        assert!(last.ends_with(" was not confirmed and may or may not be stored"));
        let confirmed: HashSet<ObjectId> = outcome.confirmed().iter().map(|c| c.id).collect();
        assert!(!confirmed.contains(&id));
        let stored = set.documents("mabel", "breaths");
        assert_stored_exactly_once(&outcome, &stored);
        assert_eq!(
            stored.len(),
            confirmed.len(),
            "no member was up to store it"
        );
    }
}
