//! Catching up: a backlog left in the spool by a long outage is written in batches, and the
//! spool's promise holds through them: every breath stored once, whatever is killed, dropped
//! or refused on the way.
//!
//! Each test writes its backlog straight into a spool file (`support::spool_file`), then
//! runs `mabel run --spool FILE --count 0`, which measures nothing and exits once the spool is
//! empty.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{doc, Document};

use crate::support::mabel::{assert_stored_exactly_once, Confirmed, Mabel, Outcome};
use crate::support::spool_file::{self, waiting_in, Scratch, Spooled};
use crate::support::target::{FailPoint, Mode, Target};
use mabel_sim::{ReplicaSet, Role};

const DB: &str = "mabel";
const COLL: &str = "breaths";
const WATCHDOG: Duration = Duration::from_secs(120);

/// Starts `mabel run --spool SPOOL --count 0 EXTRA...`: write the backlog, then exit.
fn drain(set: &ReplicaSet, spool: &Path, extra: &[&str]) -> Mabel {
    let spool = spool.to_str().expect("a UTF-8 path");
    let args = [&["run", "--spool", spool, "--count", "0"][..], extra].concat();
    Mabel::start(&set.uri(), &args)
}

/// The set holds each breath of `backlog` once, exactly as measured, and nothing else.
fn assert_backlog_stored(set: &ReplicaSet, backlog: &[Spooled]) {
    let stored = set.documents(DB, COLL);
    let by_id: HashMap<ObjectId, &Document> = stored
        .iter()
        .map(|d| (d.get_object_id("_id").expect("an ObjectId _id"), d))
        .collect();
    assert_eq!(by_id.len(), stored.len(), "a breath is stored twice");
    assert_eq!(stored.len(), backlog.len(), "stored a different number");
    for breath in backlog {
        assert_eq!(
            by_id.get(&breath.id).copied(),
            Some(&breath.to_document()),
            "breath {} is not stored as measured",
            breath.id
        );
    }
}

/// Every `wrote` line names a breath of the backlog with its own time and oxygen.
fn assert_confirmed_from(confirmed: &[Confirmed], backlog: &[Spooled]) {
    let by_id: HashMap<ObjectId, &Spooled> = backlog.iter().map(|b| (b.id, b)).collect();
    for c in confirmed {
        let breath = by_id
            .get(&c.id)
            .unwrap_or_else(|| panic!("{} confirmed but never spooled", c.id));
        let time = bson::DateTime::from_millis(breath.time)
            .to_chrono()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        assert_eq!(c.time, time, "{} confirmed with another time", c.id);
        assert!((c.oxygen - breath.oxygen).abs() < 0.0001, "{}", c.id);
    }
}

/// `mabel audit --json` finds exactly `breaths` breaths, none lost, none doubled.
fn assert_audit_clean(set: &ReplicaSet, breaths: usize) {
    let (code, report) = crate::support::mabel::audit(&set.uri());
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["doubled"], 0, "{report}");
    assert_eq!(report["foreign"], 0, "{report}");
    assert_eq!(report["breaths"], breaths, "{report}");
}

/// Waits until the set has received `n` insert commands. The fake's count, not mabel's
/// output: the test reads the output far more slowly than mabel writes it.
fn wait_for_inserts(set: &ReplicaSet, n: u64) {
    let deadline = Instant::now() + WATCHDOG;
    while set.insert_count() < n {
        assert!(Instant::now() < deadline, "fewer than {n} inserts came");
        thread::sleep(Duration::from_millis(5));
    }
}

fn finished(mabel: Mabel) -> Outcome {
    let outcome = mabel.finish(WATCHDOG);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    outcome
}

#[test]
fn a_backlog_goes_in_batches_and_one_at_a_time_with_batch_1() {
    let set = ReplicaSet::start();
    let dir = Scratch::new("catchup-batches");
    let backlog = spool_file::backlog(2_400);
    let spool = dir.spool();
    spool_file::write(&spool, &backlog);

    let outcome = finished(drain(&set, &spool, &["--batch", "500"]));
    assert_eq!(set.insert_count(), 5, "2,400 breaths in batches of 500");
    assert_stored_exactly_once(&outcome, &set.documents(DB, COLL));
    assert_backlog_stored(&set, &backlog);
    assert_eq!(
        outcome.confirmed().len(),
        backlog.len(),
        "one line a breath"
    );
    assert_confirmed_from(&outcome.confirmed(), &backlog);
    assert!(
        waiting_in(&spool).is_empty(),
        "the spool still holds breaths"
    );

    // The same backlog, one breath per insert, slow enough to be caught catching up.
    let set = ReplicaSet::start();
    let dir = Scratch::new("catchup-one-at-a-time");
    let backlog = spool_file::backlog(400);
    let spool = dir.spool();
    spool_file::write(&spool, &backlog);
    set.set_write_latency(Duration::from_millis(5));
    let outcome = finished(drain(&set, &spool, &["--batch", "1"]));
    assert_eq!(set.insert_count(), 400, "one insert a breath");
    assert_stored_exactly_once(&outcome, &set.documents(DB, COLL));
    assert_backlog_stored(&set, &backlog);
    assert!(
        outcome.stderr.lines().any(|l| l.contains("catching up:")),
        "two seconds of draining and not a word: {}",
        outcome.stderr
    );
}

#[test]
fn breaths_already_stored_count_once_and_the_rest_are_written() {
    let set = ReplicaSet::start();
    let dir = Scratch::new("catchup-some-stored");
    let backlog = spool_file::backlog(60);
    let spool = dir.spool();
    spool_file::write(&spool, &backlog);
    // As if an earlier run had written these and died before marking them in the spool: a
    // run of them inside the first batch, and one alone in the second.
    let landed: HashSet<ObjectId> = backlog[5..15]
        .iter()
        .chain(&backlog[40..41])
        .map(|b| {
            set.insert_direct(DB, COLL, b.to_document());
            b.id
        })
        .collect();

    let outcome = finished(drain(&set, &spool, &["--batch", "25"]));
    assert_backlog_stored(&set, &backlog);
    assert_stored_exactly_once(&outcome, &set.documents(DB, COLL));
    let confirmed = outcome.confirmed();
    assert_confirmed_from(&confirmed, &backlog);
    assert_eq!(confirmed.len(), backlog.len(), "each breath once");
    let already: HashSet<ObjectId> = confirmed
        .iter()
        .filter(|c| c.already_written)
        .map(|c| c.id)
        .collect();
    assert_eq!(already, landed, "(already written) is said of those, only");
    assert!(waiting_in(&spool).is_empty());
    assert_audit_clean(&set, backlog.len());
}

/// The refusal comes from the store itself, breath by breath, as a validator's would: a
/// unique index on `oxygen` and a backlog in which one breath repeats an earlier one's
/// oxygen. In an unordered batch the server writes every other breath and refuses that one.
#[test]
fn a_batch_refused_for_good_stops_mabel_naming_the_breath() {
    let set = ReplicaSet::start();
    let dir = Scratch::new("catchup-refused");
    let mut backlog = spool_file::backlog(80);
    backlog[33].oxygen = backlog[30].oxygen;
    let refused = backlog[33].id;
    let spool = dir.spool();
    spool_file::write(&spool, &backlog);
    set.add_unique_index(DB, COLL, "oxygen");

    let outcome = drain(&set, &spool, &["--batch", "20"]).finish(WATCHDOG);
    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    assert_eq!(outcome.unconfirmed(), Some(refused), "{}", outcome.stderr);
    let stored = set.documents(DB, COLL);
    assert_stored_exactly_once(&outcome, &stored);
    assert_confirmed_from(&outcome.confirmed(), &backlog);
    let ids: HashSet<ObjectId> = stored
        .iter()
        .filter_map(|d| d.get_object_id("_id").ok())
        .collect();
    assert!(!ids.contains(&refused), "the refused breath is stored");
    assert!(
        backlog[..33].iter().all(|b| ids.contains(&b.id)),
        "a breath before the refused one is missing"
    );
    assert_eq!(
        waiting_in(&spool).first(),
        Some(&refused),
        "the refused breath waits first for the next run"
    );
}

#[test]
fn killed_mid_backlog_with_a_batch_in_limbo_then_restarted_nothing_lost_or_doubled() {
    // Scripted: the lone primary must still be primary when the next batch reaches it, where
    // a set that acts by itself would have it step down an election timeout after the others
    // died.
    let set = ReplicaSet::scripted();
    let dir = Scratch::new("catchup-killed");
    let backlog = spool_file::backlog(10_000);
    let spool = dir.spool();
    spool_file::write(&spool, &backlog);
    // Slow enough that the test can act between batches: 100 batches of 50 ms.
    set.set_write_latency(Duration::from_millis(50));
    let extra = ["--batch", "100", "--retry-wait", "0.3", "--attempts", "100"];
    let mut first = drain(&set, &spool, &extra);

    // A batch is applied and its reply lost; the driver retries it on the same primary,
    // which answers from its retryable-write history.
    wait_for_inserts(&set, 10);
    set.drop_next_reply();
    // Then a batch is applied and the primary dies before it replies, with no other member
    // up: mabel is killed while that batch is in limbo.
    wait_for_inserts(&set, 20);
    set.kill(1);
    set.kill(2);
    set.crash_after_next_write();
    let deadline = Instant::now() + Duration::from_secs(10);
    while set.primary().is_some() {
        assert!(Instant::now() < deadline, "no batch reached the primary");
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(500));
    let first = first.kill();
    assert_confirmed_from(&first.confirmed(), &backlog);
    let confirmed_first: HashSet<ObjectId> = first.confirmed().iter().map(|c| c.id).collect();
    let stored: HashSet<ObjectId> = set
        .documents(DB, COLL)
        .iter()
        .filter_map(|d| d.get_object_id("_id").ok())
        .collect();
    let in_limbo: HashSet<ObjectId> = stored.difference(&confirmed_first).copied().collect();
    assert!(!in_limbo.is_empty(), "no batch was applied unanswered");
    let waiting: HashSet<ObjectId> = waiting_in(&spool).into_iter().collect();
    assert!(
        in_limbo.is_subset(&waiting),
        "a breath applied but never confirmed is no longer in the spool"
    );
    assert!(
        backlog
            .iter()
            .all(|b| stored.contains(&b.id) || waiting.contains(&b.id)),
        "a breath neither stored nor waiting"
    );

    for member in 0..3 {
        set.revive(member);
    }
    // Members vote once they have recovered.
    for member in 0..3 {
        set.wait_for_role(member, Role::Secondary, WATCHDOG);
    }
    set.elect(1);
    set.set_write_latency(Duration::ZERO);
    let second = finished(drain(&set, &spool, &extra));
    assert_confirmed_from(&second.confirmed(), &backlog);
    assert_backlog_stored(&set, &backlog);
    assert!(waiting_in(&spool).is_empty());

    // Every breath was confirmed by one run or the other; those the second run met
    // already stored include the whole batch in limbo.
    let confirmed: HashSet<ObjectId> = first
        .confirmed()
        .iter()
        .chain(&second.confirmed())
        .map(|c| c.id)
        .collect();
    assert_eq!(
        confirmed.len(),
        backlog.len(),
        "a breath was never confirmed"
    );
    let already: HashSet<ObjectId> = second
        .confirmed()
        .iter()
        .filter(|c| c.already_written)
        .map(|c| c.id)
        .collect();
    assert!(
        in_limbo.is_subset(&already),
        "a breath of the batch in limbo was not met as already written"
    );
    assert_audit_clean(&set, backlog.len());
}

/// `jstests/replsets/no_disconnect_on_stepdown.js`, on a backlog: the primary applies a batch
/// of breaths a few at a time (`internalInsertMaxBatchSize`), and a step-down kills the insert
/// part-way, some of its breaths written; the reply is a top-level 11602. Every breath of the
/// batch is stored once, whoever retries it: the driver, with the same `txnNumber`, or mabel,
/// whose second attempt meets the `_id`s already there.
#[test]
fn a_step_down_that_cuts_a_batch_part_way_stores_every_breath_once() {
    for retry_writes in [true, false] {
        let target = Target::start();
        let primary = target.wait_for_primary(WATCHDOG);
        let dir = Scratch::new(&format!("catchup-cut-{retry_writes}"));
        let backlog = spool_file::backlog(1_000);
        let spool = dir.spool();
        spool_file::write(&spool, &backlog);
        let small = doc! { "setParameter": 1, "internalInsertMaxBatchSize": 50 };
        target
            .run_command(primary, small, "test")
            .expect("setParameter");
        // The second internal batch waits, the first one written, until the step-down.
        let held = FailPoint::named("hangDuringBatchInsert", Mode::Skip(1))
            .with("shouldCheckForInterrupt", true);
        let guard = target.fail_point(primary, held);

        let uri = format!("{}&retryWrites={retry_writes}", target.uri());
        let spool_arg = spool.to_str().expect("a UTF-8 path");
        let args = [
            "run",
            "--spool",
            spool_arg,
            "--count",
            "0",
            "--db",
            target.db(),
        ];
        let mabel = Mabel::start(&uri, &args);
        let deadline = Instant::now() + WATCHDOG;
        while target.breaths().len() < 50 {
            assert!(
                Instant::now() < deadline,
                "the first internal batch never landed"
            );
            thread::sleep(Duration::from_millis(10));
        }
        let step_down = doc! { "replSetStepDown": 10, "force": true };
        target
            .run_command(primary, step_down, "test")
            .expect("replSetStepDown");
        drop(guard);
        let outcome = finished(mabel);

        let stored = target.breaths();
        assert_stored_exactly_once(&outcome, &stored);
        assert_eq!(stored.len(), backlog.len(), "retryWrites={retry_writes}");
        assert_confirmed_from(&outcome.confirmed(), &backlog);
        assert_eq!(outcome.confirmed().len(), backlog.len());
        if !retry_writes {
            let already = outcome
                .confirmed()
                .iter()
                .filter(|c| c.already_written)
                .count();
            assert_eq!(
                already, 50,
                "the first internal batch, met again: {outcome:#?}"
            );
        }
        assert!(waiting_in(&spool).is_empty());
    }
}
