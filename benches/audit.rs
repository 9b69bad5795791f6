//! How fast `mabel audit` reads, and whether its memory stays flat: the release binary audits
//! 100,000 and then 1,000,000 breaths (four simulated processes breathing once a second) in
//! the fake replica set, and each run reports breaths per second, the audit process's own
//! CPU time and its peak resident memory.
//!
//! Run with `make bench-audit` (`cargo bench --bench audit`). `AUDIT_BREATHS=n` changes the
//! larger size.
//!
//! The fake serves both passes from memory, sorting in this bench's process on the same two
//! cores, so the wall time is the audit's cost plus the fake's, on the loopback: not a
//! prediction for a real server. The CPU time is mabel's alone.

#[path = "../tests/support/mabel.rs"]
#[allow(dead_code)]
mod mabel;

use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use bson::doc;
use bson::oid::ObjectId;

use mabel_sim::ReplicaSet;

const PROCESSES: u32 = 4;
const START_SECONDS: i64 = 1_795_000_020;

fn main() {
    let sizes = [
        100_000,
        std::env::var("AUDIT_BREATHS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000),
    ];
    let set = ReplicaSet::start();
    let mut seeded = 0;
    println!("mabel audit on the fake replica set, {PROCESSES} writing processes");
    for size in sizes {
        let began = Instant::now();
        seed(&set, seeded, size);
        seeded = size;
        println!(
            "seeded {size} breaths in {:.1} s",
            began.elapsed().as_secs_f64()
        );
        audit(&set, size);
    }
}

/// Breaths `from..to`, dealt round-robin to the processes: each breathes once a second, a
/// quarter of a second after the one before.
fn seed(set: &ReplicaSet, from: u64, to: u64) {
    for n in from..to {
        let process = (n % u64::from(PROCESSES)) as u8;
        let counter = (n / u64::from(PROCESSES)) as u32 & 0xff_ffff;
        let millis = START_SECONDS * 1000 + (n as i64) * 250;
        let [_, high, middle, low] = counter.to_be_bytes();
        let id = ObjectId::from_parts((millis / 1000) as u32, [process; 5], [high, middle, low]);
        let oxygen = (n % 1000) as f64 / 1000.0;
        set.insert_direct(
            "mabel",
            "breaths",
            doc! { "_id": id, "time": bson::DateTime::from_millis(millis), "oxygen": oxygen },
        );
    }
}

fn audit(set: &ReplicaSet, size: u64) {
    let began = Instant::now();
    let mut child = mabel::command()
        .args(["audit", "--json", "--uri", &set.uri()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mabel audit starts");
    let (mut peak_kib, mut cpu) = (0, 0.0);
    while child.try_wait().expect("wait on mabel").is_none() {
        peak_kib = high_water_kib(child.id()).unwrap_or(peak_kib);
        cpu = cpu_seconds(child.id()).unwrap_or(cpu);
        thread::sleep(Duration::from_millis(5));
    }
    let seconds = began.elapsed().as_secs_f64();
    let output = child.wait_with_output().expect("mabel's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = match serde_json::from_str(&stdout) {
        Ok(report) => report,
        Err(e) => panic!("{e}: {stdout}{}", String::from_utf8_lossy(&output.stderr)),
    };
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(report["breaths"], size, "{report}");
    assert_eq!(report["processes"], PROCESSES, "{report}");
    println!(
        "audited {size} breaths in {seconds:.2} s: {:.0} breaths/s, \
         mabel's CPU {cpu:.2} s, peak RSS {:.1} MiB",
        size as f64 / seconds,
        peak_kib as f64 / 1024.0,
    );
}

/// The process's peak resident memory so far (VmHWM), sampled while it runs. The kernel's
/// own figure for a waited child (getrusage, wait4) would not do: it counts the moments
/// between the spawn and the exec, when the child still has this process's memory, the
/// fake's million documents included.
fn high_water_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User and system CPU time of the process so far, from /proc/<pid>/stat in clock ticks of
/// 1/100 s (Linux's USER_HZ on every common architecture).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
