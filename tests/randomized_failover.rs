//! Hundreds of breaths through a seeded random schedule of failures of every kind the fake
//! can play, then `mabel audit` (the real binary) on what was stored: nothing lost, nothing
//! doubled, and exactly the breaths mabel confirmed.
//!
//! The schedule is replayable: `MABEL_CHAOS_SEED=<n> cargo test --test randomized_failover`.
//! Without it the seed is random, and printed with the figures (and on failure). Thread
//! timing is not replayed, only the faults, their order and their delays.
//!
//! The driver's own retry is on or off at random (`retryWrites`), so that both its retry and
//! mabel's (with its duplicate-key proof of an earlier attempt) meet the failures.
//!
//! Like a real three-member set, at most one member is down or hung at a time, so a majority
//! could always elect a primary; one is elected after each fault that leaves none.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use support::mabel::{assert_stored_exactly_once, Mabel};
use support::target::fake_only;
use support::FakeReplicaSet;

const BREATHS: usize = 300;
/// Hung members cost 2.5 to 7.5 s each (until a heartbeat times out), so few of them.
const SCHEDULE: &[(Fault, usize)] = &[
    (Fault::KillPrimary, 5),
    (Fault::StepDown, 5),
    (Fault::CrashAfterWrite, 3),
    (Fault::DropReply, 3),
    (Fault::FailWrite, 3),
    (Fault::KillSecondary, 3),
    (Fault::HangPrimary, 2),
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
}

impl Fault {
    /// Takes a member away, so any member already away comes back first.
    fn takes_a_member(self) -> bool {
        matches!(
            self,
            Fault::KillPrimary | Fault::CrashAfterWrite | Fault::KillSecondary | Fault::HangPrimary
        )
    }
}

/// A member taken away, and when it comes back.
struct Away {
    member: usize,
    hung: bool,
    until: Instant,
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
    let seed = match std::env::var("MABEL_CHAOS_SEED") {
        Ok(seed) => seed.parse().expect("MABEL_CHAOS_SEED is a number"),
        Err(_) => rand::random(),
    };
    let _replay = Replay(seed);
    say(&format!("randomized failover: seed {seed}"));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults: Vec<Fault> = SCHEDULE
        .iter()
        .flat_map(|&(fault, n)| std::iter::repeat_n(fault, n))
        .collect();
    faults.shuffle(&mut rng);

    let retry_writes = rng.gen_bool(0.5);
    let Some(set) = fake_only(
        "randomized_failover::random_failures_lose_nothing_and_double_nothing",
        "kills, hangs and elects members at chosen moments",
    ) else {
        return;
    };
    let uri = format!("{}&retryWrites={retry_writes}", set.uri());
    let count = BREATHS.to_string();
    let mut mabel = Mabel::start(&uri, &["run", "--interval", "0.02", "--count", &count]);
    let began = Instant::now();
    let mut confirmed = 5;
    mabel.wait_for_breaths(confirmed, Duration::from_secs(30));
    let mut away: Option<Away> = None;
    let mut injected: BTreeMap<Fault, usize> = BTreeMap::new();

    for fault in faults {
        if away
            .as_ref()
            .is_some_and(|a| fault.takes_a_member() || a.until <= Instant::now())
        {
            bring_back(&set, away.take());
        }
        let primary = set.primary().expect("a primary between faults");
        let others: Vec<usize> = (0..3).filter(|&m| m != primary).collect();
        let pause = Duration::from_millis(rng.gen_range(0..1000));
        let back = Instant::now() + Duration::from_millis(rng.gen_range(500..3000));
        match fault {
            Fault::KillPrimary => {
                set.kill(primary);
                away = Some(Away {
                    member: primary,
                    hung: false,
                    until: back,
                });
            }
            Fault::StepDown => set.step_down(),
            Fault::CrashAfterWrite => {
                set.crash_after_next_write();
                wait_until(
                    || set.primary().is_none(),
                    "the primary to crash on a write",
                );
                away = Some(Away {
                    member: primary,
                    hung: false,
                    until: back,
                });
            }
            Fault::DropReply => set.drop_next_reply(),
            Fault::FailWrite => set.fail_next_write(*CODES.choose(&mut rng).unwrap()),
            Fault::KillSecondary => {
                let member = *others.choose(&mut rng).unwrap();
                set.kill(member);
                away = Some(Away {
                    member,
                    hung: false,
                    until: back,
                });
            }
            Fault::HangPrimary => {
                set.hang(primary);
                set.step_down();
                away = Some(Away {
                    member: primary,
                    hung: true,
                    until: back,
                });
            }
        }
        *injected.entry(fault).or_default() += 1;
        if set.primary().is_none() {
            thread::sleep(pause);
            let eligible: Vec<usize> = others
                .iter()
                .copied()
                .filter(|&m| away.as_ref().is_none_or(|a| a.member != m))
                .collect();
            set.elect(*eligible.choose(&mut rng).unwrap());
        }
        confirmed = (confirmed + rng.gen_range(4..=12)).min(BREATHS);
        mabel.wait_for_breaths(confirmed, Duration::from_secs(60));
    }
    bring_back(&set, away.take());
    let outcome = mabel.finish(Duration::from_secs(90));
    let elapsed = began.elapsed();

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let written = outcome.confirmed();
    assert_eq!(written.len(), BREATHS);
    assert_stored_exactly_once(&outcome, &set.documents("mabel", "breaths"));

    let audit = support::mabel::command()
        .args(["audit", "--json", "--uri", &set.uri()])
        .output()
        .expect("mabel audit runs");
    let stdout = String::from_utf8_lossy(&audit.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let incidents = outcome
        .stdout
        .iter()
        .filter(|l| l.starts_with("incident: "))
        .count();
    let already = written.iter().filter(|c| c.already_written).count();
    let total: usize = injected.values().sum();
    say(&format!(
        "randomized failover: seed {seed}, retryWrites={retry_writes}, \
         {total} failures injected {injected:?}, \
         {} breaths written in {:.1} s, {incidents} incidents, {already} already written; \
         audit: {} breaths, {} lost, {} doubled, {} foreign",
        written.len(),
        elapsed.as_secs_f64(),
        report["breaths"],
        report["lost"],
        report["doubled"],
        report["foreign"],
    ));
    assert_eq!(audit.status.code(), Some(0), "{report}");
    assert_eq!(report["lost"], 0);
    assert_eq!(report["doubled"], 0);
    assert_eq!(report["foreign"], 0);
    assert_eq!(report["breaths"], written.len());
    assert_eq!(report["documents"], written.len());
    assert!(total >= 20);
}

/// Revives or unhangs the member that is away, if one is.
fn bring_back(set: &FakeReplicaSet, away: Option<Away>) {
    match away {
        Some(Away {
            member, hung: true, ..
        }) => set.unhang(member),
        Some(Away { member, .. }) => set.revive(member),
        None => {}
    }
}

fn wait_until(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}
