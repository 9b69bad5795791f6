//! The seed's story and its harder cousins: the primary dies, steps down, hangs, or takes
//! every member with it, and each confirmed breath must still be stored exactly once.

use std::thread;
use std::time::Duration;

use crate::support::mabel::{assert_stored_exactly_once, Mabel, Outcome};
use crate::support::target::{fake_only, Target};
use mabel_sim::ReplicaSet;

const WATCHDOG: Duration = Duration::from_secs(90);

/// Starts mabel for `count` breaths at a short interval, waits for `before` of them, breaks
/// the set with `fault`, and returns how mabel ended.
fn run_through(
    set: &ReplicaSet,
    extra: &[&str],
    count: &str,
    before: usize,
    fault: impl FnOnce(&ReplicaSet),
) -> Outcome {
    let args = [&["run", "--interval", "0.05", "--count", count][..], extra].concat();
    let mut mabel = Mabel::start(&set.uri(), &args);
    mabel.wait_for_breaths(before, Duration::from_secs(30));
    fault(set);
    mabel.finish(WATCHDOG)
}

fn assert_all_written(set: &ReplicaSet, outcome: &Outcome, count: usize) {
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(outcome.confirmed().len(), count, "{outcome:#?}");
    let stored = set.documents("mabel", "breaths");
    assert_stored_exactly_once(outcome, &stored);
    assert_eq!(stored.len(), count);
}

#[test]
fn primary_killed_then_a_new_one_elected() {
    let Some(set) = fake_only(
        "failover::primary_killed_then_a_new_one_elected",
        "elects a chosen member 1.5 s after the kill",
    ) else {
        return;
    };
    let outcome = run_through(&set, &[], "30", 5, |set| {
        set.kill(0);
        set.elect_after(1, Duration::from_millis(1500));
    });
    assert_all_written(&set, &outcome, 30);
    assert_eq!(set.primary(), Some(1));
}

#[test]
fn primary_killed_with_the_drivers_own_retry_off() {
    let Some(set) = fake_only(
        "failover::primary_killed_with_the_drivers_own_retry_off",
        "elects a chosen member 1.5 s after the kill",
    ) else {
        return;
    };
    let mut mabel = Mabel::start(
        &format!("{}&retryWrites=false", set.uri()),
        &["run", "--interval", "0.05", "--count", "30"],
    );
    mabel.wait_for_breaths(5, Duration::from_secs(30));
    set.kill(0);
    set.elect_after(1, Duration::from_millis(1500));
    let outcome = mabel.finish(WATCHDOG);

    assert_all_written(&set, &outcome, 30);
    assert!(
        outcome.confirmed().iter().any(|c| c.attempts > 1),
        "with the driver's retry off, mabel's own loop must have retried: {outcome:#?}"
    );
    assert!(outcome.stderr.contains("Warning"), "{}", outcome.stderr);
}

#[test]
fn primary_steps_down_and_another_is_elected() {
    let target = Target::start();
    let to = (target.wait_for_primary(WATCHDOG) + 2) % 3;
    let mut mabel = target.mabel(&["run", "--interval", "0.05", "--count", "30"]);
    mabel.wait_for_breaths(5, Duration::from_secs(30));
    target.step_down_to(to, WATCHDOG);
    let outcome = mabel.finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(outcome.confirmed().len(), 30, "{outcome:#?}");
    let stored = target.breaths();
    assert_stored_exactly_once(&outcome, &stored);
    assert_eq!(stored.len(), 30);
    assert_eq!(target.primary(), Some(to));
}

#[test]
fn write_applied_then_primary_crashed_is_not_doubled() {
    for retry_writes in ["true", "false"] {
        let Some(set) = fake_only(
            "failover::write_applied_then_primary_crashed_is_not_doubled",
            "kills the primary between applying a write and replying",
        ) else {
            return;
        };
        let uri = format!("{}&retryWrites={retry_writes}", set.uri());
        let mut mabel = Mabel::start(&uri, &["run", "--interval", "0.05", "--count", "20"]);
        mabel.wait_for_breaths(5, Duration::from_secs(30));
        set.crash_after_next_write();
        set.elect_after(1, Duration::from_secs(1));
        let outcome = mabel.finish(WATCHDOG);

        assert_all_written(&set, &outcome, 20);
        assert!(set.primary() == Some(1), "retryWrites={retry_writes}");
        if retry_writes == "false" {
            let already: Vec<_> = outcome
                .confirmed()
                .into_iter()
                .filter(|c| c.already_written)
                .collect();
            assert_eq!(already.len(), 1, "{outcome:#?}");
        }
    }
}

#[test]
fn hung_primary_is_left_behind() {
    let Some(set) = fake_only(
        "failover::hung_primary_is_left_behind",
        "elects a chosen member 1 s after the primary hangs",
    ) else {
        return;
    };
    let outcome = run_through(&set, &[], "20", 5, |set| {
        set.hang(0);
        set.elect_after(1, Duration::from_secs(1));
    });
    assert_all_written(&set, &outcome, 20);
}

#[test]
fn every_member_down_for_less_than_the_deadline() {
    let Some(set) = fake_only(
        "failover::every_member_down_for_less_than_the_deadline",
        "needs every member down and back within 2 s",
    ) else {
        return;
    };
    let extra = ["--retry-wait", "0.5", "--attempts", "20"];
    let outcome = run_through(&set, &extra, "20", 5, |set| {
        for member in 0..3 {
            set.kill(member);
        }
        thread::sleep(Duration::from_secs(2));
        for member in 0..3 {
            set.revive(member);
        }
        set.elect(2);
    });
    assert_all_written(&set, &outcome, 20);
    assert!(outcome.stderr.contains("Warning"), "{}", outcome.stderr);
}

#[test]
fn every_member_down_past_the_deadline_gives_up_with_a_clear_line() {
    let Some(set) = fake_only(
        "failover::every_member_down_past_the_deadline_gives_up_with_a_clear_line",
        "needs every member down at once",
    ) else {
        return;
    };
    let extra = ["--retry-wait", "0.3", "--attempts", "4"];
    let outcome = run_through(&set, &extra, "1000", 5, |set| {
        for member in 0..3 {
            set.kill(member);
        }
    });

    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    let last = outcome.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: couldn't write breath "), "{last}");
    assert!(last.contains("gave up after 4 attempts"), "{last}");
    let lost = outcome.unconfirmed().expect("the line names the breath");
    let stored = set.documents("mabel", "breaths");
    assert_stored_exactly_once(&outcome, &stored);
    assert!(stored.iter().all(|d| d.get_object_id("_id") != Ok(lost)));
    assert_eq!(
        outcome.stderr.matches("Warning").count(),
        3,
        "{}",
        outcome.stderr
    );
}

#[test]
fn a_set_unreachable_at_start_up_is_waited_for() {
    let Some(set) = fake_only(
        "failover::a_set_unreachable_at_start_up_is_waited_for",
        "needs every member down at once, then a chosen primary",
    ) else {
        return;
    };
    for member in 0..3 {
        set.kill(member);
    }
    let mut mabel = Mabel::start(
        &set.uri(),
        &[
            "run",
            "--interval",
            "0.05",
            "--count",
            "5",
            "--retry-wait",
            "0.5",
        ],
    );
    thread::sleep(Duration::from_secs(2));
    for member in 0..3 {
        set.revive(member);
    }
    set.elect(0);
    mabel.wait_for_breaths(5, Duration::from_secs(30));
    let outcome = mabel.finish(WATCHDOG);
    assert_all_written(&set, &outcome, 5);
    assert!(outcome.stderr.contains("Warning"), "{}", outcome.stderr);
}
