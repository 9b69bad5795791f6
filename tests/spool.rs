//! The spool: no measured breath is lost, not to an outage past the retry deadline, not to a
//! SIGKILL of mabel itself, not to a full disk budget; and a spool that cannot be trusted
//! stops mabel with one clear line.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::mabel::{assert_stored_exactly_once, Mabel, Outcome};
use crate::support::spool_file::{waiting_in, Scratch};
use crate::support::target::{fake_only, Target};
use bson::oid::ObjectId;
use bson::Document;
use chrono::Utc;
use mabel_sim::ReplicaSet;
use serde_json::Value;

const WATCHDOG: Duration = Duration::from_secs(90);
const HEADER: usize = 8;
const RECORD: usize = 33;

fn kill_every_member(set: &ReplicaSet) {
    for member in 0..3 {
        set.kill(member);
    }
}

/// Starts every member again; the set elects one of them by itself.
fn revive_every_member(set: &ReplicaSet) {
    for member in 0..3 {
        set.revive(member);
    }
}

fn args<'a>(spool: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let spool = spool.to_str().expect("a UTF-8 path");
    [&["run", "--spool", spool][..], extra].concat()
}

/// With every member down, runs mabel until `n` breaths wait in the spool, then SIGKILLs
/// it; the set is left down. Returns the waiting `_id`s.
fn spool_up_breaths(set: &ReplicaSet, spool: &Path, n: usize) -> Vec<ObjectId> {
    kill_every_member(set);
    let extra = [
        "--interval",
        "0.02",
        "--retry-wait",
        "0.2",
        "--attempts",
        "2",
    ];
    let mut mabel = Mabel::start(&set.uri(), &args(spool, &extra));
    let deadline = Instant::now() + Duration::from_secs(30);
    while waiting_in(spool).len() < n {
        assert!(
            Instant::now() < deadline,
            "{n} breaths never waited: {mabel:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let outcome = mabel.kill();
    assert!(outcome.confirmed().is_empty(), "{outcome:#?}");
    waiting_in(spool)
}

/// Every `_id` stored, in order; panics if one is stored twice or one breath (time and
/// oxygen) under two `_id`s.
fn stored_once(stored: &[Document]) -> Vec<ObjectId> {
    let mut ids = HashSet::new();
    let mut breaths = HashSet::new();
    for doc in stored {
        let id = doc.get_object_id("_id").expect("an ObjectId _id");
        let time = doc.get_datetime("time").expect("a date").timestamp_millis();
        let oxygen = doc.get_f64("oxygen").expect("a double").to_bits();
        assert!(ids.insert(id), "{id} stored twice");
        assert!(breaths.insert((time, oxygen)), "{id}'s breath stored twice");
    }
    stored
        .iter()
        .filter_map(|d| d.get_object_id("_id").ok())
        .collect()
}

fn assert_in_time_order(stored: &[Document]) {
    let times: Vec<i64> = stored
        .iter()
        .map(|d| d.get_datetime("time").expect("a date").timestamp_millis())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "stored out of order: {times:?}"
    );
}

/// `mabel audit --json` on the set: what the real audit finds, lost and doubled included.
fn audit(set: &ReplicaSet) -> Value {
    crate::support::mabel::audit(&set.uri()).1
}

/// The audit finds exactly `breaths` breaths, none lost, none doubled, nothing foreign.
fn assert_audit_clean(set: &ReplicaSet, breaths: usize) -> Value {
    let report = audit(set);
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["doubled"], 0, "{report}");
    assert_eq!(report["foreign"], 0, "{report}");
    assert_eq!(report["breaths"], breaths, "{report}");
    assert_eq!(report["documents"], breaths, "{report}");
    report
}

fn last_line(outcome: &Outcome) -> &str {
    outcome.stderr.lines().last().unwrap_or_default()
}

#[test]
fn killed_mid_retry_and_restarted_every_spooled_breath_is_stored_once() {
    let Some(set) = fake_only(
        "spool::killed_mid_retry_and_restarted_every_spooled_breath_is_stored_once",
        "kills the primary between applying a write and replying",
    ) else {
        return;
    };
    let dir = Scratch::new("spool-killed");
    let spool = dir.spool();
    let extra = [
        "--interval",
        "0.05",
        "--retry-wait",
        "0.3",
        "--attempts",
        "100",
    ];
    let mut first = Mabel::start(&set.uri(), &args(&spool, &extra));
    first.wait_for_breaths(5, Duration::from_secs(30));

    // The next write lands and the primary dies before it can say so; the other two members
    // are already gone. mabel retries that breath while it keeps measuring into the spool.
    set.kill(1);
    set.kill(2);
    set.crash_after_next_write();
    let deadline = Instant::now() + Duration::from_secs(10);
    while set.primary().is_some() {
        assert!(Instant::now() < deadline, "no write reached the primary");
        thread::sleep(Duration::from_millis(10));
    }
    let landed = set.documents("mabel", "breaths").len();
    thread::sleep(Duration::from_millis(1500));
    let first = first.kill();
    let spooled = waiting_in(&spool);

    let stored = set.documents("mabel", "breaths");
    assert_eq!(
        stored.len(),
        landed,
        "a write got through with no member up"
    );
    let in_limbo = stored_once(&stored)[landed - 1];
    assert_eq!(
        spooled.first(),
        Some(&in_limbo),
        "the breath that landed unconfirmed waits first"
    );
    assert!(spooled.len() >= 10, "measuring stopped: {spooled:?}");

    revive_every_member(&set);
    let second = Mabel::start(
        &set.uri(),
        &args(&spool, &["--interval", "0.05", "--count", "3"]),
    );
    let second = second.finish(WATCHDOG);
    assert_eq!(second.code, Some(0), "{second:#?}");

    // Written first, oldest first; the one that had landed is recognised by its own `_id`.
    let replayed: Vec<ObjectId> = second.confirmed().iter().map(|c| c.id).collect();
    assert_eq!(replayed[..spooled.len()], spooled[..]);
    let limbo = &second.confirmed()[0];
    assert!(limbo.already_written && limbo.attempts == 1, "{limbo:?}");

    let stored = set.documents("mabel", "breaths");
    let ids = stored_once(&stored);
    assert_in_time_order(&stored);
    let measured: Vec<ObjectId> = first
        .confirmed()
        .iter()
        .map(|c| c.id)
        .chain(spooled.iter().copied())
        .chain(second.confirmed()[spooled.len()..].iter().map(|c| c.id))
        .collect();
    assert_eq!(ids, measured, "stored is not exactly what was measured");
    assert!(waiting_in(&spool).is_empty());
    let report = assert_audit_clean(&set, measured.len());
    assert_eq!(report["processes"], 2, "{report}");
    eprintln!(
        "killed mid-retry: measured {} (first run {} written + {} spooled, second run {}); \
         audit: {} breaths from {} processes, {} lost, {} doubled",
        measured.len(),
        first.confirmed().len(),
        spooled.len(),
        second.confirmed().len() - spooled.len(),
        report["breaths"],
        report["processes"],
        report["lost"],
        report["doubled"],
    );
}

#[test]
fn an_outage_past_the_deadline_loses_nothing_and_keeps_the_order() {
    let Some(set) = fake_only(
        "spool::an_outage_past_the_deadline_loses_nothing_and_keeps_the_order",
        "needs every member down at once",
    ) else {
        return;
    };
    let dir = Scratch::new("spool-outage");
    let spool = dir.spool();
    let extra = [
        "--interval",
        "0.05",
        "--count",
        "80",
        "--retry-wait",
        "0.2",
        "--attempts",
        "3",
    ];
    let mut mabel = Mabel::start(&set.uri(), &args(&spool, &extra));
    mabel.wait_for_breaths(5, Duration::from_secs(30));
    let down = Utc::now();
    kill_every_member(&set);
    thread::sleep(Duration::from_millis(2500));
    revive_every_member(&set);
    let up = Utc::now();
    let outcome = mabel.finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let gave_up = outcome.stderr.matches("Waiting: ").count();
    assert!(gave_up >= 2, "the policy never gave up: {}", outcome.stderr);
    let confirmed = outcome.confirmed();
    assert_eq!(confirmed.len(), 80, "{outcome:#?}");
    let stored = set.documents("mabel", "breaths");
    assert_stored_exactly_once(&outcome, &stored);
    assert_eq!(stored.len(), 80);
    assert_in_time_order(&stored);
    let printed: Vec<ObjectId> = confirmed.iter().map(|c| c.id).collect();
    assert_eq!(stored_once(&stored), printed, "written out of order");

    let during = stored
        .iter()
        .filter_map(|d| d.get_datetime("time").ok())
        .filter(|t| (down..up).contains(&t.to_chrono()))
        .count();
    assert!(during >= 20, "only {during} breaths measured in the outage");
    assert!(waiting_in(&spool).is_empty());
    let report = assert_audit_clean(&set, 80);
    eprintln!(
        "outage of {:.1} s past a {:.1} s deadline ({gave_up} give-ups): measured 80, \
         {during} during the outage; audit: {} breaths, {} lost, {} doubled",
        (up - down).as_seconds_f64(),
        0.6,
        report["breaths"],
        report["lost"],
        report["doubled"],
    );
}

#[test]
fn a_signal_in_an_outage_leaves_the_waiting_breaths_for_the_next_run() {
    let Some(set) = fake_only(
        "spool::a_signal_in_an_outage_leaves_the_waiting_breaths_for_the_next_run",
        "needs every member down at once",
    ) else {
        return;
    };
    let dir = Scratch::new("spool-signal");
    let spool = dir.spool();
    let extra = [
        "--interval",
        "0.05",
        "--retry-wait",
        "0.2",
        "--attempts",
        "3",
    ];
    let mut first = Mabel::start(&set.uri(), &args(&spool, &extra));
    first.wait_for_breaths(3, Duration::from_secs(30));
    kill_every_member(&set);
    thread::sleep(Duration::from_millis(1000));
    first.signal("TERM");
    let first = first.finish(WATCHDOG);

    assert_eq!(first.code, Some(0), "{first:#?}");
    let summary = first.stdout.last().map(String::as_str).unwrap_or_default();
    assert!(summary.starts_with("stopped by SIGTERM: "), "{first:#?}");
    let waiting = waiting_in(&spool);
    assert!(waiting.len() >= 10, "{waiting:?}");
    assert!(
        first.stderr.contains(&format!(
            "{} breaths wait in spool {}",
            waiting.len(),
            spool.display()
        )),
        "{}",
        first.stderr
    );

    revive_every_member(&set);
    let second = Mabel::start(
        &set.uri(),
        &args(&spool, &["--interval", "0.05", "--count", "2"]),
    )
    .finish(WATCHDOG);
    assert_eq!(second.code, Some(0), "{second:#?}");
    let ids = stored_once(&set.documents("mabel", "breaths"));
    let expected: Vec<ObjectId> = first
        .confirmed()
        .iter()
        .map(|c| c.id)
        .chain(waiting.iter().copied())
        .chain(second.confirmed()[waiting.len()..].iter().map(|c| c.id))
        .collect();
    assert_eq!(ids, expected);
    assert_audit_clean(&set, expected.len());
}

#[test]
fn a_torn_last_record_is_skipped_with_a_warning() {
    let Some(set) = fake_only(
        "spool::a_torn_last_record_is_skipped_with_a_warning",
        "spools breaths while every member is down",
    ) else {
        return;
    };
    let dir = Scratch::new("spool-torn");
    let spool = dir.spool();
    let waiting = spool_up_breaths(&set, &spool, 5);
    // A power cut in the middle of appending the last record.
    let len = fs::metadata(&spool).expect("the spool exists").len();
    let file = fs::OpenOptions::new().write(true).open(&spool).unwrap();
    file.set_len(len - 13).unwrap();
    drop(file);
    let torn_at = len - RECORD as u64;

    revive_every_member(&set);
    let outcome = Mabel::start(
        &set.uri(),
        &args(&spool, &["--interval", "0.05", "--count", "1"]),
    )
    .finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(
        outcome
            .stderr
            .contains(&format!("skipped the torn last record at byte {torn_at}")),
        "{}",
        outcome.stderr
    );
    let stored = set.documents("mabel", "breaths");
    let ids = stored_once(&stored);
    let kept = &waiting[..waiting.len() - 1];
    assert_eq!(ids[..kept.len()], kept[..], "{outcome:#?}");
    assert_eq!(ids.len(), kept.len() + 1, "{outcome:#?}");
    assert!(!ids.contains(&waiting[waiting.len() - 1]));
}

#[test]
fn a_damaged_record_in_the_middle_stops_mabel_and_names_its_offset() {
    let Some(set) = fake_only(
        "spool::a_damaged_record_in_the_middle_stops_mabel_and_names_its_offset",
        "spools breaths while every member is down",
    ) else {
        return;
    };
    let dir = Scratch::new("spool-damaged");
    let spool = dir.spool();
    spool_up_breaths(&set, &spool, 5);
    let mut bytes = fs::read(&spool).unwrap();
    let offset = HEADER + RECORD;
    bytes[offset + 20] ^= 0x40;
    fs::write(&spool, &bytes).unwrap();

    revive_every_member(&set);
    let outcome = Mabel::start(
        &set.uri(),
        &args(&spool, &["--interval", "0.05", "--count", "1"]),
    )
    .finish(WATCHDOG);

    assert_eq!(outcome.code, Some(2), "{outcome:#?}");
    assert_eq!(outcome.stderr.lines().count(), 1, "{}", outcome.stderr);
    let line = last_line(&outcome);
    assert!(line.starts_with("error: spool "), "{line}");
    assert!(
        line.contains(&format!("damaged at byte {offset}")),
        "{line}"
    );
    assert!(outcome.stdout.is_empty(), "{outcome:#?}");
    assert!(set.documents("mabel", "breaths").is_empty());
    assert_eq!(
        fs::read(&spool).unwrap(),
        bytes,
        "the damaged spool was touched"
    );
}

#[test]
fn a_second_mabel_on_the_same_spool_is_refused() {
    let target = Target::start();
    let dir = Scratch::new("spool-two");
    let spool = dir.spool();
    let mut first = target.mabel(&args(&spool, &["--interval", "0.05", "--count", "30"]));
    first.wait_for_breaths(3, Duration::from_secs(30));

    let second = target
        .mabel(&args(&spool, &["--interval", "0.05", "--count", "5"]))
        .finish(WATCHDOG);
    assert_eq!(second.code, Some(2), "{second:#?}");
    assert_eq!(second.stderr.lines().count(), 1, "{}", second.stderr);
    assert!(
        last_line(&second).contains("is in use by another mabel"),
        "{}",
        second.stderr
    );
    assert!(second.stdout.is_empty());

    let first = first.finish(WATCHDOG);
    assert_eq!(first.code, Some(0), "{first:#?}");
    let stored = target.breaths();
    assert_stored_exactly_once(&first, &stored);
    assert_eq!(stored.len(), 30);
}

#[test]
fn a_full_spool_stops_mabel_and_names_the_breath_it_could_not_keep() {
    let Some(set) = fake_only(
        "spool::a_full_spool_stops_mabel_and_names_the_breath_it_could_not_keep",
        "spools breaths while every member is down",
    ) else {
        return;
    };
    let dir = Scratch::new("spool-full");
    let spool = dir.spool();
    kill_every_member(&set);
    let max = (HEADER + 5 * RECORD).to_string();
    let extra = [
        "--interval",
        "0.02",
        "--retry-wait",
        "0.2",
        "--attempts",
        "2",
        "--spool-max-bytes",
        &max,
    ];
    let outcome = Mabel::start(&set.uri(), &args(&spool, &extra)).finish(WATCHDOG);

    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    let line = last_line(&outcome);
    assert!(line.starts_with("error: spool "), "{line}");
    assert!(line.contains("is full: 5 breaths wait in it"), "{line}");
    let refused: ObjectId = line
        .split("breath ")
        .nth(1)
        .and_then(|rest| rest.get(..24))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("the line names no breath: {line}"));
    assert!(line.contains(" oxygen ") && line.ends_with("could not be kept"));
    let waiting = waiting_in(&spool);
    assert_eq!(waiting.len(), 5);

    revive_every_member(&set);
    let outcome = Mabel::start(
        &set.uri(),
        &args(&spool, &["--interval", "0.05", "--count", "1"]),
    )
    .finish(WATCHDOG);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let ids = stored_once(&set.documents("mabel", "breaths"));
    assert_eq!(ids[..5], waiting[..]);
    assert_eq!(ids.len(), 6);
    assert!(!ids.contains(&refused));
}

/// Runs `mabel` with no set behind `--uri`: for flags and spools refused before connecting.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let output = crate::support::mabel::command()
        .args(args)
        .output()
        .expect("the mabel binary runs");
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    (output.status.code(), stderr)
}

#[test]
fn bad_spool_flags_and_unusable_spools_are_refused_before_anything_is_tried() {
    let (code, stderr) = refused(&["run", "--spool-max-bytes", "1000000"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--spool-max-bytes") && stderr.contains("needs --spool"));

    let (code, stderr) = refused(&["run", "--spool", "s", "--spool-max-bytes", "40"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--spool-max-bytes"), "{stderr}");

    let dir = Scratch::new("spool-unusable");
    let nowhere = dir.0.join("no/such/dir/spool");
    let (code, stderr) = refused(&["run", "--spool", nowhere.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("couldn't open it"), "{stderr}");

    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let stranger = dir.0.join("Cargo.toml");
    fs::copy(manifest, &stranger).unwrap();
    let (code, stderr) = refused(&["run", "--spool", stranger.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("is not a mabel spool"), "{stderr}");
    assert_eq!(fs::read(&stranger).unwrap(), fs::read(manifest).unwrap());

    let (code, stderr) = refused(&["run", "--spool", "/dev/zero"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("is not a mabel spool"), "{stderr}");
}
