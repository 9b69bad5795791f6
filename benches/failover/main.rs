//! `cargo bench --bench failover` (`make bench-failover`): how long a writer takes to write
//! again after the primary fails, and what it lost or doubled on the way. Three writers, each
//! writing a breath every 20 ms (short, so that waiting for the next breath is a small part of
//! the overhead):
//!
//! - **mabel**: the release binary with its defaults and `--interval 0.02`. A breath counts as
//!   confirmed when its `wrote` line is read from mabel's stdout.
//! - **seed**: the seed's final loop, written here with the same driver: the `_id` made on the
//!   client, `w: 1` (the seed's `safe=True`), `retryWrites=false`, every error PyMongo raises as `AutoReconnect` (network,
//!   pool cleared, no server selected, not primary, node recovering) followed by a 5 s sleep
//!   and another try, up to 60 tries; a duplicate key counts as written. Every other client
//!   option is the driver's default.
//! - **bare**: the driver with its default options, one `insert_one` per breath and no loop
//!   of its own: a failed insert is a lost breath, and the writer goes on to the next one.
//!
//! Every repetition starts a fresh simulated set (`sim/`, member 0 primary), which elects,
//! steps down and recovers by itself on mongod's timers, and against which the driver
//! streams (awaitable `hello`), as against a 4.4+ server. The repetition waits for the
//! writer's first write and 1 s plus a random 0-0.5 s of healthy writes, breaks the set at the
//! instant `failure`, and lets it recover with no help: `writable` is the instant the set's
//! next primary began to take writes (its event log says so). The repetition ends after the
//! writer's third write confirmed at or after `writable`. For that repetition:
//!
//! - **overhead** = the first write confirmed at or after `writable`, minus `writable`: what
//!   the client adds on top of what the set took to recover;
//! - **stall** = that write minus the last one confirmed before `writable`: the gap Mabel
//!   feels;
//! - **lost** = breaths the writer took and finished with (confirmed or given up) that are
//!   not stored; **doubled** = stored documents beyond one per breath (same time and oxygen).
//!
//! The scenarios (what happens at `failure`), on mongod's timers scaled to a 1 s election
//! timeout (heartbeats every 200 ms, a silent member given up on after 1 s) unless the name
//! says otherwise: the overhead does not depend on the timeout, and 1 s keeps the run to
//! minutes; one scenario runs on mongod's own 10 s to show the whole of a real failover.
//!
//! - kill: member 0 dies like a crashed process (port and connections closed); a secondary
//!   stands when its election timer fires;
//! - step-down: `replSetStepDown` on member 0, which hands over to a caught-up secondary at
//!   once (the election handoff) and keeps its connections, so writes meet "not writable
//!   primary";
//! - crash after a write: the next insert is applied, then member 0 dies before replying;
//!   `failure` is the instant it died;
//! - hang: member 0 keeps its sockets open and reads every request, `hello` included, but
//!   answers nothing; the others elect after an election timeout. A client is stuck on the
//!   silent member until its monitor gives up on it (mabel: `connectTimeoutMS` 2 s plus its
//!   0.5 s heartbeat), which the target for this scenario, the stall, bounds;
//! - partition: member 0 is cut off from the other members while the writers still reach
//!   it; it steps down an election timeout after it last heard from them, and they elect one
//!   of their own. When the writer stops the partition heals and member 0 rolls back what only
//!   it had: the writes it acknowledged with `w: 1` are lost;
//! - both secondaries down: members 1 and 2 die and stay down 2 s; the lone primary steps
//!   down when it has heard from neither for an election timeout, and the set has no primary
//!   until they return and one is elected (often member 0 again: its data is the newest).
//!
//! The repetitions run in concurrent lanes, each with its own set, pulling jobs from one
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

use mabel_sim::{ReplicaSet, Timers};
use writers::{BreathId, Event, Writer, COLL, DB, WRITERS};

/// Healthy writing between the first write and the failure, plus up to `JITTER`.
const HEALTHY: Duration = Duration::from_secs(1);
const JITTER: Duration = Duration::from_millis(500);
/// How long both secondaries stay down.
const SECONDARIES_DOWN: Duration = Duration::from_secs(2);
/// Writes to see at or after the new primary takes writes before a repetition ends.
const AFTER: usize = 3;
/// Watchdogs: for the first write, for recovery after the failure, for the whole run.
const START_LIMIT: Duration = Duration::from_secs(20);
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
const RUN_LIMIT: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Kill,
    StepDown,
    CrashAfterWrite,
    Hang,
    Partition,
    SecondariesDown,
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    fault: Fault,
    /// The set's election timeout; its other timers scale with it, as mongod's would.
    election_timeout: Duration,
}

const SHORT: Duration = Duration::from_secs(1);

const SCENARIOS: [Scenario; 7] = [
    Scenario {
        name: "kill",
        fault: Fault::Kill,
        election_timeout: SHORT,
    },
    Scenario {
        name: "kill, mongod's 10 s election timeout",
        fault: Fault::Kill,
        election_timeout: Duration::from_secs(10),
    },
    Scenario {
        name: "step-down",
        fault: Fault::StepDown,
        election_timeout: SHORT,
    },
    Scenario {
        name: "write applied then crash",
        fault: Fault::CrashAfterWrite,
        election_timeout: SHORT,
    },
    Scenario {
        name: "hang",
        fault: Fault::Hang,
        election_timeout: SHORT,
    },
    Scenario {
        name: "partition",
        fault: Fault::Partition,
        election_timeout: SHORT,
    },
    Scenario {
        name: "both secondaries down 2 s",
        fault: Fault::SecondariesDown,
        election_timeout: SHORT,
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
    /// Confirmed between `failure` and `writable`: writes that landed before the failure but
    /// were reported after it, or (in the partition) that the cut-off primary took alone.
    late: usize,
    /// From the failure to the next primary taking writes, as it happened.
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
    let recovery = match s.fault {
        Fault::SecondariesDown => SECONDARIES_DOWN + s.election_timeout * 2,
        _ => s.election_timeout * 2,
    };
    HEALTHY + recovery + Duration::from_secs(3)
}

// ---------------------------------------------------------------------------------------
// One repetition.

fn run(job: Job) -> Rep {
    let scenario = SCENARIOS[job.scenario];
    let began = Instant::now();
    let set = common::sim_set(Timers::with_election_timeout(scenario.election_timeout));
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
        outage: Duration::ZERO,
        note: None,
        took: Duration::ZERO,
    };

    let first = wait_for(&rx, &mut events, began + START_LIMIT, |_, wrote| wrote >= 1);
    let (failure, writable) = if first {
        thread::sleep(HEALTHY + JITTER.mul_f64(rand::random()));
        let failure = match break_set(&set, scenario.fault) {
            Some(failure) => failure,
            None => {
                rep.note = Some("the armed crash never happened".to_string());
                began
            }
        };
        let writable = common::next_writable_primary(&set, failure, failure + RECOVERY_LIMIT);
        let writable = writable.unwrap_or_else(|| {
            rep.note
                .get_or_insert("the set never took writes again".to_string());
            failure
        });
        rep.outage = writable.saturating_duration_since(failure);
        let recovered = wait_for(&rx, &mut events, writable + RECOVERY_LIMIT, |events, _| {
            wrote_since(events, writable).count() >= AFTER
        });
        if !recovered && rep.note.is_none() {
            rep.note = Some(format!(
                "fewer than {AFTER} writes within {} s of the new primary",
                RECOVERY_LIMIT.as_secs()
            ));
        }
        (failure, writable)
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
        // Let member 0 roll back and catch up, so that the count below is the set's.
        let limit = Instant::now() + RECOVERY_LIMIT;
        while set.status()[0].role != Some(mabel_sim::Role::Secondary) && Instant::now() < limit {
            thread::sleep(Duration::from_millis(10));
        }
    }

    if first {
        let confirmed: Vec<Instant> = events
            .iter()
            .filter_map(|e| match e {
                Event::Wrote { at, .. } => Some(*at),
                _ => None,
            })
            .collect();
        let before = confirmed.iter().filter(|&&at| at < writable).max();
        let after = confirmed.iter().filter(|&&at| at >= writable).min();
        if let (Some(&before), Some(&after)) = (before, after) {
            rep.overhead = Some(after - writable);
            rep.stall = Some(after - before);
        }
        rep.late = confirmed
            .iter()
            .filter(|&&at| at >= failure && at < writable)
            .count();
    }
    let accounts = account(&events, &set.committed(DB, COLL));
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
        Fault::StepDown => step_down(set),
        Fault::Hang => set.hang(0),
        Fault::Partition => set.isolate(0),
        Fault::SecondariesDown => {
            set.kill(1);
            set.kill(2);
            thread::sleep(SECONDARIES_DOWN);
            set.revive(1);
            set.revive(2);
        }
        Fault::CrashAfterWrite => {
            set.crash_after_next_write();
            let limit = Instant::now() + Duration::from_secs(5);
            while set.status()[0].role.is_some() {
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

/// `replSetStepDown` on member 0, as a person would run it: the primary waits for a
/// secondary to catch up, steps down and hands over to it.
fn step_down(set: &ReplicaSet) {
    let uri = format!("mongodb://{}/?directConnection=true", set.hosts()[0]);
    let client = mongodb::sync::Client::with_uri_str(uri).expect("a client of member 0");
    let command = bson::doc! { "replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 5 };
    if let Err(error) = client.database("admin").run_command(command).run() {
        eprintln!("failover: replSetStepDown: {error}");
    }
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
