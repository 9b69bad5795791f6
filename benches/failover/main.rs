//! `cargo bench --bench failover` (`make bench-failover`): how long a writer takes to write
//! again after the primary fails, and what it lost or doubled on the way. Three writers, each
//! writing a breath every 0.1 s:
//!
//! - **mabel**: the release binary with its defaults and `--interval 0.1`. A breath counts as
//!   confirmed when its `wrote` line is read from mabel's stdout.
//! - **seed**: the seed's final loop, written here with the same driver: the `_id` made on the
//!   client, `w: 1` (the seed's `safe=True`), `retryWrites=false`, every error PyMongo raises as `AutoReconnect` (network,
//!   pool cleared, no server selected, not primary, node recovering) followed by a 5 s sleep
//!   and another try, up to 60 tries; a duplicate key counts as written. Every other client
//!   option is the driver's default.
//! - **bare**: the driver with its default options, one `insert_one` per breath and no loop
//!   of its own: a failed insert is a lost breath, and the writer goes on to the next one.
//!
//! Every repetition starts a fresh fake replica set (`tests/support`, member 0 primary) and
//! one writer, waits for the writer's first write and 1 s plus a random part of healthy
//! writes, then breaks the set at the instant `failure`, makes member 1 a writable primary at
//! the instant `elected`, and stops the writer after its third write confirmed at or after
//! `elected`. The random parts matter. The driver checks each member on a beat that starts
//! with the client (0.5 s for mabel, 10 s by default) and, while a write waits for a primary,
//! on a 0.5 s beat that starts with the failure; fixed delays would line the failure or the
//! election up with a check and flatter or penalise a writer every time. So the election comes
//! at the scenario's delay +/-0.25 s (uniform), and the failure 0-0.5 s (uniform) later than
//! 1 s into the healthy writes, or 0-10 s later for the hang, which only a client's own
//! periodic check can notice. For that repetition:
//!
//! - **overhead** = the first write confirmed at or after `elected`, minus `elected`: what the
//!   client adds on top of the election itself;
//! - **stall** = that write minus the last one confirmed before `elected`: the gap Mabel feels;
//! - **lost** = breaths the writer took and finished with (confirmed or given up) that are
//!   not stored; **doubled** = stored documents beyond one per breath (same time and oxygen).
//!
//! The scenarios (what happens at `failure`; when `elected` comes):
//!
//! - kill: member 0 is killed like a crashed process (port and connections closed);
//!   election 3 s later, and 12 s later (a real set's usual election after a crash:
//!   `electionTimeoutMillis` 10 s, then the vote);
//! - step-down: member 0 becomes a secondary and keeps its connections, so writes meet
//!   "not writable primary"; election 1.5 s later (a graceful step-down takes 1-2 s);
//! - crash after a write: the next insert is applied, then member 0 dies before replying;
//!   `failure` is the instant it died; election 3 s later;
//! - hang: member 0 keeps its sockets open and reads every request, `hello` included, but
//!   answers nothing; election 1 s later. A real set replaces a member that stops answering
//!   heartbeats only after 10-12 s; electing early isolates what the client controls, how long
//!   it stays stuck on the silent member once a new primary is there. The target for this
//!   scenario is the stall.
//! - partition: member 0 is cut off from the other members while the writers still reach
//!   it; election 10 s later (`electionTimeoutMillis`), and member 0 notices it is alone
//!   0-0.5 s after that and steps down (its own 10 s liveness timeout, started at about the
//!   same time). When the writer stops the partition heals and member 0 rolls back what only
//!   it had: the writes it acknowledged with `w: 1` are lost.
//!
//! The repetitions run in concurrent lanes, each with its own fake, pulling jobs from one
//! queue in which the writers alternate; the writers mostly wait, and the report gives the
//! CPU the whole run used. Every repetition has a watchdog, and so does the whole run.
//!
//! Environment: `BENCH_REPS` (default 10), `BENCH_LANES` (default 12), `BENCH_ONLY` (run only
//! the scenarios whose name contains this text; the results file is then left alone).

#[path = "../../tests/support/mabel.rs"]
#[allow(dead_code)]
mod mabel;

#[path = "../common/mod.rs"]
mod common;

mod report;
mod writers;

use std::collections::{HashSet, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bson::Document;

use mabel_sim::ReplicaSet;
use writers::{BreathId, Event, Writer, COLL, DB, WRITERS};

/// Healthy writing between the first write and the failure, plus up to the scenario's `spread`.
const HEALTHY: Duration = Duration::from_secs(1);
/// The spread of the election around the scenario's delay, and of most failures.
const JITTER: Duration = Duration::from_millis(500);
/// The spread of the hang: the driver's default heartbeat period.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Writes to see at or after the election before a repetition ends.
const AFTER: usize = 3;
/// Watchdogs: for the first write, for recovery after the election, for the whole run.
const START_LIMIT: Duration = Duration::from_secs(20);
const RECOVERY_LIMIT: Duration = Duration::from_secs(45);
const RUN_LIMIT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Kill,
    StepDown,
    CrashAfterWrite,
    Hang,
    Partition,
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    fault: Fault,
    election: Duration,
    /// The random part of the healthy time before the failure.
    spread: Duration,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        name: "kill, election after 3 s",
        fault: Fault::Kill,
        election: Duration::from_secs(3),
        spread: JITTER,
    },
    Scenario {
        name: "kill, election after 12 s",
        fault: Fault::Kill,
        election: Duration::from_secs(12),
        spread: JITTER,
    },
    Scenario {
        name: "step-down, election after 1.5 s",
        fault: Fault::StepDown,
        election: Duration::from_millis(1500),
        spread: JITTER,
    },
    Scenario {
        name: "write applied then crash, election after 3 s",
        fault: Fault::CrashAfterWrite,
        election: Duration::from_secs(3),
        spread: JITTER,
    },
    Scenario {
        name: "hang, election after 1 s",
        fault: Fault::Hang,
        election: Duration::from_secs(1),
        spread: DEFAULT_HEARTBEAT,
    },
    Scenario {
        name: "partition, election after 10 s",
        fault: Fault::Partition,
        election: Duration::from_secs(10),
        spread: JITTER,
    },
];

/// How a breath is recognised in the store: mabel prints its `_id`; the writers here know
/// the exact time and oxygen they sent.
#[derive(Clone, Copy)]
struct Job {
    scenario: usize,
    writer: Writer,
    rep: usize,
}

/// What one repetition measured.
struct Rep {
    job: Job,
    overhead: Option<Duration>,
    stall: Option<Duration>,
    lost: usize,
    doubled: usize,
    /// Confirmed between `failure` and `elected`: writes that landed before the failure but
    /// were reported after it. Counted as before the failure.
    late: usize,
    /// How late the bench itself woke up to hold the election: a sign of CPU contention.
    oversleep: Duration,
    /// From the failure to the election, as it happened.
    outage: Duration,
    note: Option<String>,
    took: Duration,
}

fn main() {
    let reps = env_number("BENCH_REPS", 10);
    let lanes = env_number("BENCH_LANES", 12).max(1);
    let only = std::env::var("BENCH_ONLY").ok();
    let scenarios: Vec<usize> = (0..SCENARIOS.len())
        .filter(|&s| {
            only.as_deref()
                .is_none_or(|o| SCENARIOS[s].name.contains(o))
        })
        .collect();

    // Longest scenarios first so that the lanes finish together; within a scenario the
    // writers take turns, and each repetition starts with a different one.
    let mut order = scenarios.clone();
    order.sort_by_key(|&s| std::cmp::Reverse(expected_length(SCENARIOS[s])));
    let mut queue = VecDeque::new();
    for &scenario in &order {
        for rep in 0..reps {
            for k in 0..WRITERS.len() {
                let writer = WRITERS[(rep + k) % WRITERS.len()];
                queue.push_back(Job {
                    scenario,
                    writer,
                    rep,
                });
            }
        }
    }
    let total = queue.len();
    eprintln!(
        "failover: {total} repetitions ({} scenarios x {} writers x {reps}) in {lanes} lanes",
        scenarios.len(),
        WRITERS.len()
    );

    let started = Instant::now();
    let cpu_before = cpu_time();
    let queue = Arc::new(Mutex::new(queue));
    let results = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..lanes {
        let queue = Arc::clone(&queue);
        let results = Arc::clone(&results);
        let done_tx = done_tx.clone();
        thread::spawn(move || {
            loop {
                let job = queue.lock().unwrap().pop_front();
                let Some(job) = job else { break };
                let rep = run(job);
                let mut results = results.lock().unwrap();
                results.push(rep);
                eprintln!(
                    "[{}/{total}] {}",
                    results.len(),
                    report::describe(results.last().unwrap())
                );
            }
            let _ = done_tx.send(());
        });
    }
    drop(done_tx);
    let deadline = started + RUN_LIMIT;
    let mut finished_lanes = 0;
    while finished_lanes < lanes {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => finished_lanes += 1,
            Err(_) => {
                eprintln!(
                    "failover: still running after {} s; reporting what finished",
                    RUN_LIMIT.as_secs()
                );
                writers::kill_all();
                break;
            }
        }
    }
    let wall = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let results = std::mem::take(&mut *results.lock().unwrap());
    let complete = results.len() == total;

    let report = report::report(&results, &scenarios, reps, lanes, wall, cpu);
    println!("{report}");
    if only.is_none() && complete {
        common::write_section("failover", &report);
        report::draw(&results, &scenarios);
    }
    if !complete {
        std::process::exit(1);
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A rough length of one repetition, only to order the queue.
fn expected_length(s: Scenario) -> Duration {
    match s.fault {
        Fault::Hang => Duration::from_secs(25),
        _ => s.election + Duration::from_secs(3),
    }
}

// ---------------------------------------------------------------------------------------
// One repetition.

fn run(job: Job) -> Rep {
    let scenario = SCENARIOS[job.scenario];
    let began = Instant::now();
    let set = common::fake_set();
    // No options beyond the set name: each writer brings its own (mabel its defaults).
    let uri = common::plain_uri(&set, "");
    let (tx, rx) = mpsc::channel();
    let running = writers::start(job.writer, &uri, tx);
    let mut events = Vec::new();
    let mut rep = Rep {
        job,
        overhead: None,
        stall: None,
        lost: 0,
        doubled: 0,
        late: 0,
        oversleep: Duration::ZERO,
        outage: Duration::ZERO,
        note: None,
        took: Duration::ZERO,
    };

    let first = wait_for(&rx, &mut events, began + START_LIMIT, |_, wrote| wrote >= 1);
    let (failure, elected) = if first {
        thread::sleep(HEALTHY + scenario.spread.mul_f64(rand::random()));
        let failure = match break_set(&set, scenario.fault) {
            Some(failure) => failure,
            None => {
                rep.note = Some("the armed crash never happened".to_string());
                began
            }
        };
        let election = scenario.election + JITTER.mul_f64(rand::random()) - JITTER / 2;
        sleep_until(failure + election);
        let elected = Instant::now();
        rep.oversleep = elected.saturating_duration_since(failure + election);
        rep.outage = elected - failure;
        set.elect(1);
        if scenario.fault == Fault::Partition {
            thread::sleep(JITTER.mul_f64(rand::random()));
            set.notice_isolation(0);
        }
        let recovered = wait_for(&rx, &mut events, elected + RECOVERY_LIMIT, |events, _| {
            wrote_since(events, elected).count() >= AFTER
        });
        if !recovered && rep.note.is_none() {
            rep.note = Some(format!(
                "fewer than {AFTER} writes within {} s of the election",
                RECOVERY_LIMIT.as_secs()
            ));
        }
        (failure, elected)
    } else {
        rep.note = Some(format!("no first write within {} s", START_LIMIT.as_secs()));
        (began, began)
    };

    if let Err(problem) = running.stop(&set) {
        rep.note.get_or_insert(problem);
    }
    events.extend(rx.try_iter());
    if scenario.fault == Fault::Partition {
        set.heal();
    }

    if first {
        let confirmed: Vec<Instant> = events
            .iter()
            .filter_map(|e| match e {
                Event::Wrote { at, .. } => Some(*at),
                _ => None,
            })
            .collect();
        let before = confirmed.iter().filter(|&&at| at < elected).max();
        let after = confirmed.iter().filter(|&&at| at >= elected).min();
        if let (Some(&before), Some(&after)) = (before, after) {
            rep.overhead = Some(after - elected);
            rep.stall = Some(after - before);
        }
        rep.late = confirmed
            .iter()
            .filter(|&&at| at >= failure && at < elected)
            .count();
    }
    let accounts = account(&events, &set.documents(DB, COLL));
    rep.lost = accounts.lost;
    rep.doubled = accounts.doubled;
    if accounts.unreported > 1 {
        rep.note.get_or_insert(format!(
            "{} stored documents the writer never reported",
            accounts.unreported
        ));
    }
    drop(set);
    rep.took = began.elapsed();
    rep
}

/// Breaks the set; returns the instant it broke.
fn break_set(set: &ReplicaSet, fault: Fault) -> Option<Instant> {
    let now = Instant::now();
    match fault {
        Fault::Kill => set.kill(0),
        Fault::StepDown => set.step_down(),
        Fault::Hang => set.hang(0),
        Fault::Partition => set.isolate(0),
        Fault::CrashAfterWrite => {
            set.crash_after_next_write();
            let limit = Instant::now() + Duration::from_secs(5);
            while set.primary().is_some() {
                if Instant::now() > limit {
                    return None;
                }
                thread::sleep(Duration::from_millis(1));
            }
            return Some(Instant::now());
        }
    }
    Some(now)
}

fn sleep_until(deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    thread::sleep(left);
}

fn wrote_since(events: &[Event], since: Instant) -> impl Iterator<Item = Instant> + '_ {
    events.iter().filter_map(move |e| match e {
        Event::Wrote { at, .. } if *at >= since => Some(*at),
        _ => None,
    })
}

/// Collects events until `enough(events, writes so far)`, the writer ends, or `deadline`.
fn wait_for(
    rx: &Receiver<Event>,
    events: &mut Vec<Event>,
    deadline: Instant,
    enough: impl Fn(&[Event], usize) -> bool,
) -> bool {
    loop {
        let wrote = events
            .iter()
            .filter(|e| matches!(e, Event::Wrote { .. }))
            .count();
        if enough(events, wrote) {
            return true;
        }
        if events.iter().any(|e| matches!(e, Event::Ended)) {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) => events.push(event),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// What the store says about the writer's breaths.
struct Accounts {
    /// Breaths the writer finished with (confirmed or gave up) that are not stored.
    lost: usize,
    /// Stored documents beyond one per breath (same time and oxygen).
    doubled: usize,
    /// Stored documents the writer never reported: at most the breath in flight when it was
    /// stopped.
    unreported: usize,
}

fn account(events: &[Event], stored: &[Document]) -> Accounts {
    let reported: HashSet<BreathId> = events
        .iter()
        .filter_map(|e| match e {
            Event::Wrote { breath, .. } | Event::GaveUp { breath } => Some(*breath),
            Event::Ended => None,
        })
        .collect();
    let mut found = HashSet::new();
    let mut keys = HashSet::new();
    let mut keyed = 0;
    let mut unreported = 0;
    for doc in stored {
        let id = doc.get_object_id("_id").ok().map(BreathId::Id);
        let key = match (doc.get_datetime("time"), doc.get_f64("oxygen")) {
            (Ok(time), Ok(oxygen)) => {
                Some(BreathId::Key(time.timestamp_millis(), oxygen.to_bits()))
            }
            _ => None,
        };
        if let Some(key) = key {
            keys.insert(key);
            keyed += 1;
        }
        let mine: Vec<BreathId> = [id, key]
            .into_iter()
            .flatten()
            .filter(|b| reported.contains(b))
            .collect();
        if mine.is_empty() {
            unreported += 1;
        }
        found.extend(mine);
    }
    Accounts {
        lost: reported.difference(&found).count(),
        doubled: keyed - keys.len(),
        unreported,
    }
}

/// CPU used so far by this process and by the children it has waited for (the mabels).
fn cpu_time() -> Duration {
    let usage = |who| {
        // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    usage(libc::RUSAGE_SELF) + usage(libc::RUSAGE_CHILDREN)
}
