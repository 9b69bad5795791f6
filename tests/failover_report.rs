//! The failover report of `mabel run`: an incident line after each breath that needed more
//! than one attempt or was the first to reach a new primary, and a summary at the end.

use std::time::Duration;

use crate::support::mabel::{assert_stored_exactly_once, Mabel, Outcome};
use crate::support::target::{fake_only, Target};

const WATCHDOG: Duration = Duration::from_secs(90);

fn incidents(outcome: &Outcome) -> Vec<&str> {
    outcome
        .stdout
        .iter()
        .map(String::as_str)
        .filter(|line| line.starts_with("incident: "))
        .collect()
}

/// Each incident line follows the `wrote` line of the breath it is about.
fn assert_incidents_follow_their_breaths(outcome: &Outcome) {
    for pair in outcome.stdout.windows(2) {
        if let Some(rest) = pair[1].strip_prefix("incident: breath ") {
            let id = &rest[..24];
            assert!(
                pair[0].starts_with(&format!("wrote {id} ")),
                "{pair:?} in {outcome:#?}"
            );
        }
    }
}

#[test]
fn a_healthy_run_has_no_incident_and_a_summary() {
    let target = Target::start();
    let mabel = target.mabel(&["run", "--interval", "0.02", "--count", "10"]);
    let outcome = mabel.finish(WATCHDOG);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(incidents(&outcome).is_empty(), "{outcome:#?}");
    let last = outcome.stdout.last().unwrap();
    assert!(
        last.starts_with("done: 10 breaths written, 0 incidents, longest wait "),
        "{last}"
    );
    assert!(last.ends_with(", 0 already written"), "{last}");
}

#[test]
fn a_stepdown_the_drivers_retry_hides_is_still_an_incident() {
    let target = Target::start();
    let hosts = target.hosts();
    let to = (target.wait_for_primary(WATCHDOG) + 2) % 3;
    let mut mabel = target.mabel(&["run", "--interval", "0.05", "--count", "20"]);
    mabel.wait_for_breaths(5, Duration::from_secs(30));
    let old = target.step_down_to(to, WATCHDOG);
    let outcome = mabel.finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_stored_exactly_once(&outcome, &target.breaths());
    let incidents = incidents(&outcome);
    assert_eq!(incidents.len(), 1, "{outcome:#?}");
    let moved = format!(
        "primary {} -> {}, already written: no",
        hosts[old], hosts[to]
    );
    assert!(incidents[0].ends_with(&moved), "{}", incidents[0]);
    assert_incidents_follow_their_breaths(&outcome);
    let summary = outcome.stdout.last().unwrap();
    assert!(
        summary.starts_with("done: 20 breaths written, 1 incident, longest wait "),
        "{summary}"
    );
}

#[test]
fn a_write_that_landed_before_the_crash_is_reported_already_written() {
    let Some(set) = fake_only(
        "failover_report::a_write_that_landed_before_the_crash_is_reported_already_written",
        "kills the primary between applying a write and replying",
    ) else {
        return;
    };
    let hosts = set.hosts();
    let uri = format!("{}&retryWrites=false", set.uri());
    let mut mabel = Mabel::start(&uri, &["run", "--interval", "0.05", "--count", "10"]);
    mabel.wait_for_breaths(3, Duration::from_secs(30));
    set.crash_after_next_write();
    let outcome = mabel.finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_stored_exactly_once(&outcome, &set.documents("mabel", "breaths"));
    let incidents = incidents(&outcome);
    assert_eq!(incidents.len(), 1, "{outcome:#?}");
    let line = incidents[0];
    let new = set.wait_for_primary(WATCHDOG);
    let moved = format!(
        "primary {} -> {}, already written: yes",
        hosts[0], hosts[new]
    );
    assert!(line.ends_with(&moved), "{line}");
    let waited: f64 = line
        .split(" waited ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("the line says how long");
    // It waited for the set to elect another primary: an election timeout at least, less
    // the heartbeat interval the last heartbeat may have come before the crash.
    let timers = set.timers();
    let election = timers
        .election_timeout
        .expect("a set that elects by itself");
    let least = (election - timers.heartbeat_interval).as_secs_f64();
    assert!(waited >= least, "{line}");
    assert_incidents_follow_their_breaths(&outcome);
    assert!(outcome
        .stdout
        .last()
        .unwrap()
        .ends_with("1 already written"));
}
