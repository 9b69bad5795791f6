//! `cargo bench --bench catchup` (`make bench-catchup`): how fast mabel writes the backlog an
//! outage left in its spool, once the set is back.
//!
//! A backlog of a minute, an hour and a day of breaths (60, 3,600 and 86,400) is written
//! straight into a spool file (`tests/support/spool_file.rs`, the format `src/spool.rs`
//! documents). Every member of a fresh simulated set (which elects by itself, on a 200 ms
//! election timeout) is killed, the release `mabel run --spool FILE --count 0` is started on it
//! and left a second to find nothing, then the members are revived; the set's return is the
//! moment the primary it elects takes writes. mabel exits once the spool is empty.
//! Each case runs with the set answering every insert at once and 5 ms after applying it (the
//! replication and journal a real `w: "majority", j: true` waits for), with mabel's batches
//! (its default `--batch`) and, as the baseline, one breath per insert (`--batch 1`) on the
//! minute and the hour; a day at 5 ms one at a time would take over 7 minutes.
//!
//! For each case, the median over the repetitions of:
//! - **catch-up**: from the set's return to mabel's exit with an empty spool (mabel's exit is
//!   polled every 20 ms);
//! - **finding the primary**: from the set's return to the first `wrote` line, part of the
//!   catch-up (the driver streams, so it hears of the new primary at once);
//! - **inserts**: insert commands the set received (`insert_count`);
//! - **breaths a second**: the backlog over the catch-up.
//!
//! Every run is checked: exit 0, the spool empty, every breath of the backlog stored once
//! with its own time and oxygen and confirmed by one `wrote` line. The benchmark stops with
//! an error at the first run that fails this, and then writes no results.
//!
//! Target: a day's backlog in at most 5 s at 5 ms per insert.
//!
//! Environment: `CATCHUP_REPS` (default 3).

#[path = "../tests/support/mabel.rs"]
#[allow(dead_code)]
mod mabel;
#[path = "../tests/support/spool_file.rs"]
#[allow(dead_code)]
mod spool_file;

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use mabel::{assert_stored_exactly_once, Mabel};
use mabel_sim::Timers;
use spool_file::{waiting_in, Spooled};

const BACKLOGS: [(usize, &str); 3] = [(60, "a minute"), (3_600, "an hour"), (86_400, "a day")];
const LATENCIES_MS: [u64; 2] = [0, 5];
/// One breath per insert is measured on backlogs up to this size.
const ONE_AT_A_TIME_UP_TO: usize = 3_600;
const TARGET: Duration = Duration::from_secs(5);
/// How long mabel is left facing a set with no member up before the set returns.
const OUTAGE: Duration = Duration::from_secs(1);
const WATCHDOG: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, PartialEq)]
enum Writer {
    Batched,
    OneAtATime,
}

impl Writer {
    fn name(self) -> &'static str {
        match self {
            Writer::Batched => "batches (default --batch)",
            Writer::OneAtATime => "one at a time (--batch 1)",
        }
    }
}

struct Case {
    breaths: usize,
    latency_ms: u64,
    writer: Writer,
}

struct Run {
    catch_up: Duration,
    first_write: Duration,
    inserts: u64,
}

fn main() {
    let reps = std::env::var("CATCHUP_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_usize)
        .max(1);
    let mut cases = Vec::new();
    for (breaths, _) in BACKLOGS {
        for latency_ms in LATENCIES_MS {
            for writer in [Writer::Batched, Writer::OneAtATime] {
                if writer == Writer::Batched || breaths <= ONE_AT_A_TIME_UP_TO {
                    cases.push(Case {
                        breaths,
                        latency_ms,
                        writer,
                    });
                }
            }
        }
    }
    let dir = scratch();
    eprintln!("catchup: {} cases x {reps} repetitions", cases.len());
    let mut results = Vec::new();
    for case in &cases {
        let mut runs: Vec<Run> = (0..reps).map(|_| run(case, &dir)).collect();
        runs.sort_by_key(|r| r.catch_up);
        let median = runs.swap_remove(runs.len() / 2);
        eprintln!(
            "  {} breaths, {} ms, {}: {} s ({} inserts)",
            case.breaths,
            case.latency_ms,
            case.writer.name(),
            common::secs(median.catch_up),
            median.inserts
        );
        results.push(median);
    }
    let _ = fs::remove_dir_all(&dir);
    let report = report(&cases, &results, reps);
    println!("{report}");
    common::write_section("catchup", &report);
    draw(&cases, &results);
}

/// One run of one case; panics, ending the benchmark, if anything was lost or doubled.
fn run(case: &Case, dir: &Path) -> Run {
    let set = common::sim_set(Timers::fast());
    let backlog = spool_file::backlog(case.breaths);
    let spool = dir.join(format!("spool-{}", case.breaths));
    spool_file::write(&spool, &backlog);
    set.set_write_latency(Duration::from_millis(case.latency_ms));
    for member in 0..3 {
        set.kill(member);
    }
    let spool_arg = spool.to_str().expect("a UTF-8 path");
    let mut args = vec!["run", "--spool", spool_arg, "--count", "0"];
    if case.writer == Writer::OneAtATime {
        args.extend(["--batch", "1"]);
    }
    let mut mabel = Mabel::start(&common::plain_uri(&set, ""), &args);
    thread::sleep(OUTAGE);
    let revived = Instant::now();
    for member in 0..3 {
        set.revive(member);
    }
    let back = common::next_writable_primary(&set, revived, revived + WATCHDOG)
        .expect("the set elects a primary");
    mabel.wait_for_breaths(1, WATCHDOG);
    let first_write = back.elapsed();
    let outcome = mabel.finish(WATCHDOG);
    let catch_up = back.elapsed();

    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    assert!(waiting_in(&spool).is_empty(), "the spool is not empty");
    let stored = set.documents("mabel", "breaths");
    assert_stored_exactly_once(&outcome, &stored);
    assert_eq!(
        outcome.confirmed().len(),
        backlog.len(),
        "one wrote line a breath"
    );
    assert_all_stored(&backlog, &stored);
    let _ = fs::remove_file(&spool);
    Run {
        catch_up,
        first_write,
        inserts: set.insert_count(),
    }
}

fn assert_all_stored(backlog: &[Spooled], stored: &[bson::Document]) {
    let by_id: HashMap<ObjectId, &bson::Document> = stored
        .iter()
        .filter_map(|d| Some((d.get_object_id("_id").ok()?, d)))
        .collect();
    assert_eq!(stored.len(), backlog.len(), "stored a different number");
    for breath in backlog {
        assert_eq!(
            by_id.get(&breath.id).copied(),
            Some(&breath.to_document()),
            "breath {} not stored as spooled",
            breath.id
        );
    }
}

fn report(cases: &[Case], results: &[Run], reps: usize) -> String {
    let mut out = common::section_heading("Catch-up", "make bench-catchup");
    out.push_str(&format!(
        "- load average when it ended: {}\n- {reps} runs per case, median by catch-up time\n\n",
        common::load_average()
    ));
    out.push_str(
        "A backlog waits in the spool while no member is up; the clock starts when the set \
         returns (members revived, and the primary they elect taking writes) and stops when \
         mabel, run with `--count 0`, exits with its spool empty. *Finding the primary* is the \
         part before the first breath is written. Every breath was checked stored \
         once.\n\n",
    );
    out.push_str(
        "| backlog | ms per insert | writer | catch-up s | finding the primary s \
         | inserts | breaths a second |\n|---|---|---|---|---|---|---|\n",
    );
    for (case, run) in cases.iter().zip(results) {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            common::thousands(case.breaths as u64),
            case.latency_ms,
            case.writer.name(),
            common::secs(run.catch_up),
            common::secs(run.first_write),
            common::thousands(run.inserts),
            common::thousands((case.breaths as f64 / run.catch_up.as_secs_f64()) as u64)
        ));
    }
    let day = cases
        .iter()
        .zip(results)
        .find(|(c, _)| c.breaths == 86_400 && c.latency_ms == 5 && c.writer == Writer::Batched);
    if let Some((_, run)) = day {
        out.push_str(&format!(
            "\nTarget: a day's backlog at 5 ms per insert in at most {} s: {} s, {} (one at a \
             time it would need at least 86,400 x 5 ms = 432 s).\n",
            common::secs(TARGET),
            common::secs(run.catch_up),
            if run.catch_up <= TARGET {
                "met"
            } else {
                "MISSED"
            }
        ));
    }
    out.push_str("\n![catch-up time per backlog](catchup.svg)\n");
    out
}

fn draw(cases: &[Case], results: &[Run]) {
    let mut series = Vec::new();
    for writer in [Writer::Batched, Writer::OneAtATime] {
        for latency_ms in LATENCIES_MS {
            let points: Vec<(f64, f64)> = cases
                .iter()
                .zip(results)
                .filter(|(c, _)| c.writer == writer && c.latency_ms == latency_ms)
                .map(|(c, r)| (c.breaths as f64, r.catch_up.as_secs_f64()))
                .collect();
            let label = format!("{}, {latency_ms} ms per insert", writer.name());
            series.push((label, points));
        }
    }
    common::chart::lines(
        "catchup",
        &common::chart::Lines {
            title: "Catch-up: from the set's return to an empty spool",
            x_label: "breaths waiting in the spool (a minute, an hour, a day)",
            y_label: "seconds",
            series,
            target: Some((
                TARGET.as_secs_f64(),
                "target for a day at 5 ms: 5 s".to_string(),
            )),
        },
    );
}

/// A directory of this run's own under the target directory, on the disk a spool would use.
fn scratch() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join(format!("bench-catchup-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}
