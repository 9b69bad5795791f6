//! Hundreds of breaths through a seeded random schedule of failures of every kind the
//! simulated set can play, then `mabel audit` (the real binary) on what was stored: nothing
//! lost, nothing doubled, and exactly the breaths mabel confirmed.
//!
//! The schedule is replayable: `MABEL_CHAOS_SEED=<n> cargo test --test randomized_failover`.
//! Without it the seed is random, and printed with the figures (and on failure). Thread
//! timing is not replayed, only the faults, their order and their delays.
//!
//! The driver's own retry is on or off at random (`retryWrites`), so that both its retry and
//! mabel's (with its duplicate-key proof of an earlier attempt) meet the failures.
//!
//! The schedule holds faults only, never an election: the set elects, steps down and
//! recovers by itself on a 200 ms election timeout, as a real one does on 10 s. At most one
//! member is down, hung or cut off at a time, but for one fault that takes both secondaries
//! away for longer than the election timeout, so that the lone primary steps down and the set
//! has no primary until they return. A partition heals after a random while, sometimes before
//! the cut-off primary has noticed it is alone, so that two members act as primary for a
//! moment. One secondary at a time may lag. Each run prints its faults and the elections the
//! set held.
//!
//! With the defaults nothing is lost. A second test runs the same kind of schedule with
//! `--write-concern 1`: the breaths a cut-off primary acknowledged are rolled back when it
//! rejoins, and the audit counts them lost.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::support::mabel::{assert_stored_exactly_once, Mabel, Outcome};
use crate::support::target::fake_only;
use mabel_sim::{Kind, ReplicaSet};

const BREATHS: usize = 300;
/// Hung members cost about 2.5 s each (until the driver's monitor times out), so few of them.
const SCHEDULE: &[(Fault, usize)] = &[
    (Fault::KillPrimary, 5),
    (Fault::StepDown, 5),
    (Fault::CrashAfterWrite, 3),
    (Fault::DropReply, 3),
    (Fault::FailWrite, 3),
    (Fault::KillSecondary, 3),
    (Fault::HangPrimary, 2),
    (Fault::Partition, 3),
    (Fault::Lag, 3),
    (Fault::SecondariesDown, 2),
];
/// Retryable codes a primary may answer a write with: not writable primary, interrupted by
/// a state change, shutting down, stepped down.
const CODES: &[i32] = &[10107, 11602, 91, 189];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillPrimary,
    StepDown,
    CrashAfterWrite,
    DropReply,
    FailWrite,
    KillSecondary,
    HangPrimary,
    /// The primary is cut off from the others, who elect one of their own.
    Partition,
    /// A secondary copies each write a while after the primary wrote it.
    Lag,
    /// Both secondaries are killed for longer than the election timeout: the lone primary
    /// steps down, and there is no primary until they return.
    SecondariesDown,
}

impl Fault {
    /// Takes a member away, so any member already away comes back first.
    fn takes_a_member(self) -> bool {
        matches!(
            self,
            Fault::KillPrimary
                | Fault::CrashAfterWrite
                | Fault::KillSecondary
                | Fault::HangPrimary
                | Fault::Partition
                | Fault::SecondariesDown
        )
    }
}

/// A member taken away, how, and when it comes back.
struct Away {
    member: usize,
    how: How,
    until: Instant,
}

#[derive(Clone, Copy, PartialEq)]
enum How {
    Killed,
    Hung,
}

/// What a run did, for the assertions and the figures.
struct Run {
    seed: u64,
    retry_writes: bool,
    set: ReplicaSet,
    outcome: Outcome,
    injected: BTreeMap<Fault, usize>,
    elections: usize,
    elapsed: Duration,
    report: Value,
    audit_code: Option<i32>,
}

/// Prints the seed if the test fails, so the schedule can be replayed.
struct Replay(u64);

impl Drop for Replay {
    fn drop(&mut self) {
        if thread::panicking() {
            say(&format!(
                "randomized failover failed; replay with MABEL_CHAOS_SEED={}",
                self.0
            ));
        }
    }
}

/// Straight to stderr, past the test harness's capture, so the figures show on success too.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
fn random_failures_lose_nothing_and_double_nothing() {
    let test = "randomized_failover::random_failures_lose_nothing_and_double_nothing";
    let Some(run) = run(test, &[]) else {
        return;
    };
    let outcome = &run.outcome;
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let written = outcome.confirmed();
    assert_eq!(written.len(), BREATHS);
    assert_stored_exactly_once(outcome, &run.set.committed("mabel", "breaths"));
    assert_eq!(run.audit_code, Some(0), "{}", run.report);
    assert_eq!(run.report["lost"], 0);
    assert_eq!(run.report["doubled"], 0);
    assert_eq!(run.report["foreign"], 0);
    assert_eq!(run.report["breaths"], written.len());
    assert_eq!(run.report["documents"], written.len());
    assert!(run.injected.values().sum::<usize>() >= 20);
}

#[test]
fn with_w1_partitions_lose_breaths_and_the_audit_counts_them() {
    let test = "randomized_failover::with_w1_partitions_lose_breaths_and_the_audit_counts_them";
    let Some(run) = run(test, &["--write-concern", "1"]) else {
        return;
    };
    let outcome = &run.outcome;
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let confirmed: Vec<ObjectId> = outcome.confirmed().iter().map(|c| c.id).collect();
    let stored = run.set.committed("mabel", "breaths");
    let stored_ids: HashSet<ObjectId> = stored
        .iter()
        .map(|d| d.get_object_id("_id").expect("an ObjectId _id"))
        .collect();
    let lost: Vec<ObjectId> = confirmed
        .iter()
        .copied()
        .filter(|id| !stored_ids.contains(id))
        .collect();
    let rolled_back: HashSet<ObjectId> = run
        .set
        .rolled_back("mabel", "breaths")
        .iter()
        .map(|d| d.get_object_id("_id").expect("an ObjectId _id"))
        .collect();
    assert!(!lost.is_empty(), "w: 1 lost nothing through partitions");
    assert!(
        lost.iter().all(|id| rolled_back.contains(id)),
        "every breath lost was rolled back"
    );
    // The audit sees a breath lost once a later one is stored; mabel's ids grow.
    let last_stored = stored_ids.iter().max().copied();
    let seen = lost.iter().filter(|&&id| Some(id) < last_stored).count();
    assert!(seen > 0);
    assert_eq!(run.audit_code, Some(1), "{}", run.report);
    assert_eq!(run.report["lost"], seen);
    assert_eq!(run.report["doubled"], 0);
}

/// Runs mabel with `args` through a random schedule of faults and audits what is stored;
/// `None` against a real set, where `test` is skipped.
fn run(test: &str, args: &[&str]) -> Option<Run> {
    let seed = match std::env::var("MABEL_CHAOS_SEED") {
        Ok(seed) => seed.parse().expect("MABEL_CHAOS_SEED is a number"),
        Err(_) => rand::random(),
    };
    let _replay = Replay(seed);
    say(&format!("randomized failover {args:?}: seed {seed}"));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults: Vec<Fault> = SCHEDULE
        .iter()
        .flat_map(|&(fault, n)| std::iter::repeat_n(fault, n))
        .collect();
    faults.shuffle(&mut rng);

    let retry_writes = rng.gen_bool(0.5);
    let reason = "kills, hangs and cuts off members at chosen moments";
    let set = fake_only(test, reason)?;
    let election_timeout = set
        .timers()
        .election_timeout
        .expect("a set that elects by itself");
    let uri = format!("{}&retryWrites={retry_writes}", set.uri());
    let count = BREATHS.to_string();
    let mabel_args = [&["run", "--interval", "0.02", "--count", &count][..], args].concat();
    let mut mabel = Mabel::start(&uri, &mabel_args);
    let began = Instant::now();
    let mut confirmed = 5;
    mabel.wait_for_breaths(confirmed, Duration::from_secs(30));
    let mut away: Vec<Away> = Vec::new();
    let mut injected: BTreeMap<Fault, usize> = BTreeMap::new();

    for fault in faults {
        if fault.takes_a_member() || away.iter().any(|a| a.until <= Instant::now()) {
            bring_back(&set, std::mem::take(&mut away));
        }
        let primary = set.wait_for_primary(Duration::from_secs(30));
        let others: Vec<usize> = (0..3).filter(|&m| m != primary).collect();
        let back = Instant::now() + Duration::from_millis(rng.gen_range(500..3000));
        let mut gone = |member, how| {
            away.push(Away {
                member,
                how,
                until: back,
            })
        };
        match fault {
            Fault::KillPrimary => {
                set.kill(primary);
                gone(primary, How::Killed);
            }
            Fault::StepDown => set.step_down(),
            Fault::CrashAfterWrite => {
                set.crash_after_next_write();
                wait_until(
                    || set.status()[primary].role.is_none(),
                    "the primary to crash on a write",
                );
                gone(primary, How::Killed);
            }
            Fault::DropReply => set.drop_next_reply(),
            Fault::FailWrite => set.fail_next_write(*CODES.choose(&mut rng).unwrap()),
            Fault::KillSecondary => {
                let member = *others.choose(&mut rng).unwrap();
                set.kill(member);
                gone(member, How::Killed);
            }
            Fault::HangPrimary => {
                set.hang(primary);
                gone(primary, How::Hung);
            }
            Fault::Partition => {
                set.isolate(primary);
                // Healed after a random while: sometimes before the cut-off primary notices
                // it is alone, sometimes after the others have elected one of their own.
                let alone = election_timeout.mul_f64(rng.gen_range(0.5..3.0));
                thread::sleep(alone);
                set.heal();
            }
            Fault::Lag => {
                let member = *others.choose(&mut rng).unwrap();
                let other = others.iter().copied().find(|&m| m != member).unwrap();
                set.set_lag(other, Duration::ZERO);
                set.set_lag(member, Duration::from_millis(rng.gen_range(20..200)));
            }
            Fault::SecondariesDown => {
                for &member in &others {
                    set.kill(member);
                }
                let down = election_timeout.mul_f64(rng.gen_range(1.5..4.0));
                thread::sleep(down);
                for &member in &others {
                    set.revive(member);
                }
            }
        }
        *injected.entry(fault).or_default() += 1;
        confirmed = (confirmed + rng.gen_range(4..=12)).min(BREATHS);
        mabel.wait_for_breaths(confirmed, Duration::from_secs(60));
    }
    bring_back(&set, away);
    let outcome = mabel.finish(Duration::from_secs(90));
    let elapsed = began.elapsed();
    // The audit reads "majority" from the primary if it knows one yet, else from a
    // secondary, and its two passes may go to different members: with a secondary still
    // lagging, they would see two commit points.
    for member in 0..3 {
        set.set_lag(member, Duration::ZERO);
    }

    let (audit_exit, report) = crate::support::mabel::audit(&set.uri());
    let elections = set
        .events()
        .iter()
        .filter(|e| matches!(e.kind, Kind::Elected { .. }))
        .count();
    let run = Run {
        seed,
        retry_writes,
        set,
        outcome,
        injected,
        elections,
        elapsed,
        report,
        audit_code: audit_exit,
    };
    run.say_figures(args);
    Some(run)
}

impl Run {
    fn say_figures(&self, args: &[&str]) {
        let written = self.outcome.confirmed();
        let incidents = self
            .outcome
            .stdout
            .iter()
            .filter(|l| l.starts_with("incident: "))
            .count();
        let already = written.iter().filter(|c| c.already_written).count();
        let total: usize = self.injected.values().sum();
        let report = &self.report;
        say(&format!(
            "randomized failover {args:?}: seed {}, retryWrites={}, \
             {total} failures injected {:?}, {} elections, \
             {} breaths written in {:.1} s, {incidents} incidents, {already} already written, \
             {} rolled back; audit: {} breaths, {} lost, {} doubled, {} foreign",
            self.seed,
            self.retry_writes,
            self.injected,
            self.elections,
            written.len(),
            self.elapsed.as_secs_f64(),
            self.set.rolled_back("mabel", "breaths").len(),
            report["breaths"],
            report["lost"],
            report["doubled"],
            report["foreign"],
        ));
    }
}

/// Revives or unhangs the members that are away.
fn bring_back(set: &ReplicaSet, away: Vec<Away>) {
    for Away { member, how, .. } in away {
        match how {
            How::Killed => set.revive(member),
            How::Hung => set.unhang(member),
        }
    }
}

fn wait_until(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}
