//! The seed's story and its harder cousins: the primary dies, steps down, hangs, or takes
//! every member with it, and the set recovers by itself, as a real one does; each confirmed
//! breath must still be stored exactly once.

use std::thread;
use std::time::Duration;

use crate::support::mabel::{assert_stored_exactly_once, Mabel, Outcome};
use crate::support::spool_file::{waiting_in, Scratch};
use crate::support::target::{fake_only, FailPoint, Mode, Target};

const WATCHDOG: Duration = Duration::from_secs(90);

/// Starts mabel for `count` breaths at a short interval, waits for `before` of them, breaks
/// the set with `fault`, and returns how mabel ended.
fn run_through(
    target: &Target,
    extra: &[&str],
    count: &str,
    before: usize,
    fault: impl FnOnce(&Target),
) -> Outcome {
    let args = [&["run", "--interval", "0.05", "--count", count][..], extra].concat();
    let mut mabel = target.mabel(&args);
    mabel.wait_for_breaths(before, Duration::from_secs(30));
    fault(target);
    mabel.finish(WATCHDOG)
}

fn assert_all_written(target: &Target, outcome: &Outcome, count: usize) {
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(outcome.confirmed().len(), count, "{outcome:#?}");
    let stored = target.breaths();
    assert_stored_exactly_once(outcome, &stored);
    assert_eq!(stored.len(), count);
}

#[test]
fn primary_killed_and_the_set_elects_another() {
    let target = Target::start();
    let primary = target.wait_for_primary(WATCHDOG);
    let outcome = run_through(&target, &[], "30", 5, |target| target.kill(primary));
    assert_all_written(&target, &outcome, 30);
    let now = target.wait_for_primary(WATCHDOG);
    assert_ne!(now, primary);
    target.start_member(primary);
}

/// The insert in flight when the primary dies fails, and with the driver's retry off only
/// mabel's own loop writes it again: the insert is held up so that one is in flight.
#[test]
fn primary_killed_with_the_drivers_own_retry_off() {
    let target = Target::start();
    let primary = target.wait_for_primary(WATCHDOG);
    let args = ["run", "--interval", "0.05", "--count", "30"];
    let mut mabel = target.mabel_with("&retryWrites=false", &args);
    mabel.wait_for_breaths(5, Duration::from_secs(30));
    let held = FailPoint::fail_command(&["insert"], Mode::Times(1)).block(Duration::from_secs(5));
    let guard = target.fail_point(primary, held);
    thread::sleep(Duration::from_millis(500));
    target.kill(primary);
    drop(guard);
    let outcome = mabel.finish(WATCHDOG);

    assert_all_written(&target, &outcome, 30);
    assert!(
        outcome.confirmed().iter().any(|c| c.attempts > 1),
        "with the driver's retry off, mabel's own loop must have retried: {outcome:#?}"
    );
    assert!(outcome.stderr.contains("Warning"), "{}", outcome.stderr);
    target.start_member(primary);
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
        let outcome = mabel.finish(WATCHDOG);

        let target = Target::Fake(set);
        assert_all_written(&target, &outcome, 20);
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
    let target = Target::start();
    let primary = target.wait_for_primary(WATCHDOG);
    let outcome = run_through(&target, &[], "20", 5, |target| target.pause(primary));
    assert_all_written(&target, &outcome, 20);
    target.unpause(primary);
}

#[test]
fn every_member_down_for_less_than_the_deadline() {
    let Some(set) = fake_only(
        "failover::every_member_down_for_less_than_the_deadline",
        "needs every member back and a primary elected within mabel's 10 s deadline",
    ) else {
        return;
    };
    let extra = ["--retry-wait", "0.5", "--attempts", "20"];
    let target = Target::Fake(set);
    let outcome = run_through(&target, &extra, "20", 5, |target| {
        for member in 0..3 {
            target.kill(member);
        }
        thread::sleep(Duration::from_secs(2));
        for member in 0..3 {
            target.start_member(member);
        }
    });
    assert_all_written(&target, &outcome, 20);
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
    let target = Target::Fake(set);
    let outcome = run_through(&target, &extra, "1000", 5, |target| {
        for member in 0..3 {
            target.kill(member);
        }
    });

    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    let last = outcome.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: couldn't write breath "), "{last}");
    assert!(last.contains("gave up after 4 attempts"), "{last}");
    let lost = outcome.unconfirmed().expect("the line names the breath");
    let stored = target.breaths();
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
        "needs every member back and a primary elected within mabel's 30 s wait",
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
    mabel.wait_for_breaths(5, Duration::from_secs(30));
    let outcome = mabel.finish(WATCHDOG);
    assert_all_written(&Target::Fake(set), &outcome, 5);
    assert!(outcome.stderr.contains("Warning"), "{}", outcome.stderr);
}

/// Both secondaries die and stay away longer than the election timeout: the lone primary
/// hears from no majority and steps down, its waiting write fails, and the set has no
/// primary. Without a spool mabel gives up at its deadline, naming the breath.
#[test]
fn a_lone_primary_steps_down_and_without_a_spool_mabel_gives_up() {
    let target = Target::start();
    let primary = target.wait_for_primary(WATCHDOG);
    let secondaries: Vec<usize> = (0..3).filter(|&m| m != primary).collect();
    let extra = ["--retry-wait", "0.5", "--attempts", "4"];
    let outcome = run_through(&target, &extra, "1000", 5, |target| {
        for &member in &secondaries {
            target.kill(member);
        }
    });
    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    let last = outcome.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: couldn't write breath "), "{last}");
    assert_eq!(target.primary(), None, "the lone primary stepped down");
    for member in secondaries {
        target.start_member(member);
    }
    target.wait_for_primary(WATCHDOG);
    let stored = target.breaths();
    assert_stored_exactly_once(&outcome, &stored);
    // Every breath written is stored, and the one given up on may be too: it reached the
    // lone primary, whose history the others took up again when they returned.
    assert_audit_clean(&target, stored.len());
}

/// The same with a spool: mabel goes on measuring while the set has no primary, and writes
/// every breath once the secondaries return.
#[test]
fn a_lone_primary_steps_down_and_with_a_spool_nothing_is_lost() {
    let target = Target::start();
    let primary = target.wait_for_primary(WATCHDOG);
    let secondaries: Vec<usize> = (0..3).filter(|&m| m != primary).collect();
    let dir = Scratch::new("lone-primary");
    let spool = dir.spool();
    let spool_arg = spool.to_str().expect("a UTF-8 path");
    let extra = [
        "--spool",
        spool_arg,
        "--retry-wait",
        "0.5",
        "--attempts",
        "4",
    ];
    let outcome = run_through(&target, &extra, "60", 5, |target| {
        for &member in &secondaries {
            target.kill(member);
        }
        // Long past the election timeout, and past mabel's 2 s deadline.
        thread::sleep(Duration::from_secs(3));
        assert_eq!(target.primary(), None, "the lone primary stepped down");
        for &member in &secondaries {
            target.start_member(member);
        }
    });
    assert_all_written(&target, &outcome, 60);
    assert!(outcome.stderr.contains("Waiting: "), "{}", outcome.stderr);
    assert!(
        waiting_in(&spool).is_empty(),
        "the spool still holds breaths"
    );
    assert_audit_clean(&target, 60);
}

/// `mabel audit` agrees: `breaths` stored, none lost or doubled.
fn assert_audit_clean(target: &Target, breaths: usize) {
    let (code, report) = target.audit();
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["breaths"], breaths, "{report}");
    assert_eq!(
        (report["lost"].as_u64(), report["doubled"].as_u64()),
        (Some(0), Some(0))
    );
}
