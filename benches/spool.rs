//! `cargo bench --bench spool` (`make bench-spool`): what `--spool` costs per breath.
//!
//! - **Disk**: the spool's own work for one breath on a healthy set is two appends of a
//!   33-byte record, each followed by `fdatasync` (the breath, then its "written" mark). This
//!   does exactly that, 2,000 times, in a file beside the target directory, so the figure is
//!   the disk's, not the fake's.
//! - **End to end**: `mabel run --interval 0.001 --count 2000` against the fake replica set,
//!   with and without `--spool`, alternately, five times each; the median wall time per
//!   breath. With a spool, measuring and writing overlap on two threads, so the difference
//!   can come out below zero: the disk figure is the cost, this one is what a user sees.

#[path = "../tests/support/mabel.rs"]
#[allow(dead_code)]
mod mabel;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mabel::Mabel;
use mabel_sim::ReplicaSet;

const BREATHS: usize = 2000;
const ROUNDS: usize = 5;
const RECORD: [u8; 33] = [0x5a; 33];

fn main() {
    let dir = scratch();
    println!("spool cost, {BREATHS} breaths, in {}", dir.display());

    let disk = disk_cost(&dir.join("disk"));
    println!(
        "  disk: two 33-byte appends + fdatasync per breath: {:.0} us per breath",
        per_breath(disk).as_secs_f64() * 1e6
    );

    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 0..ROUNDS {
        without.push(run(None));
        let spool = dir.join(format!("spool-{round}"));
        with.push(run(Some(&spool)));
    }
    for (name, times) in [
        ("without --spool", &mut without),
        ("with --spool", &mut with),
    ] {
        times.sort();
        println!(
            "  end to end, {name}: median {:.3} s, {:.0} us per breath (runs: {:?})",
            times[ROUNDS / 2].as_secs_f64(),
            per_breath(times[ROUNDS / 2]).as_secs_f64() * 1e6,
            times
                .iter()
                .map(|t| format!("{:.3}", t.as_secs_f64()))
                .collect::<Vec<_>>()
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

fn per_breath(took: Duration) -> Duration {
    took / BREATHS as u32
}

/// A directory of this run's own under the target directory, on the disk a spool would use.
fn scratch() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join(format!("bench-spool-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

fn disk_cost(path: &std::path::Path) -> Duration {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the scratch file");
    let started = Instant::now();
    for _ in 0..BREATHS * 2 {
        file.write_all(&RECORD).expect("append");
        file.sync_data().expect("fdatasync");
    }
    started.elapsed()
}

/// One run of the release binary; panics (ending the bench) if it did not write every breath.
fn run(spool: Option<&std::path::Path>) -> Duration {
    let set = ReplicaSet::start();
    let count = BREATHS.to_string();
    let mut args = vec!["run", "--interval", "0.001", "--count", &count];
    let spool = spool.map(|p| p.to_string_lossy().into_owned());
    if let Some(spool) = &spool {
        args.extend(["--spool", spool]);
    }
    let started = Instant::now();
    let outcome = Mabel::start(&set.uri(), &args).finish(Duration::from_secs(120));
    let took = started.elapsed();
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(set.documents("mabel", "breaths").len(), BREATHS);
    took
}
