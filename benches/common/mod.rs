//! What the benchmarks share: the machine they ran on, and `benches/results.md`, where each
//! benchmark keeps its own section so that running one does not erase another's figures.

#![allow(dead_code)]

pub mod chart;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Instant;

use mabel_sim::{Kind, Phase, ReplicaSet, Role, Timers};

/// A simulated set on `timers`, with a set name no other set on the machine has: other sets
/// (other lanes, tests running beside the benchmark) may take the port of a member the
/// benchmark kills, and a driver would follow a primary there that answered with the same
/// name.
pub fn sim_set(timers: Timers) -> ReplicaSet {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ReplicaSet::start_named(&format!("bench-{}-{n}", std::process::id()), timers)
}

/// The first moment after `since` at which a member began to take writes as primary, as the
/// set's events tell; waits for it until `deadline`.
pub fn next_writable_primary(
    set: &ReplicaSet,
    since: Instant,
    deadline: Instant,
) -> Option<Instant> {
    loop {
        let writable = set.events().into_iter().find(|e| {
            e.at >= since
                && matches!(
                    e.kind,
                    Kind::Role {
                        role: Role::Primary(Phase::Writable),
                        ..
                    }
                )
        });
        if let Some(event) = writable {
            return Some(event.at);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The set's three members and its name, then `extra` (`&option=value...`): no other option,
/// so each writer's own defaults apply.
pub fn plain_uri(set: &ReplicaSet, extra: &str) -> String {
    format!(
        "mongodb://{}/?replicaSet={}{extra}",
        set.hosts().join(","),
        set.set_name()
    )
}

/// One line naming the machine: logical CPUs, CPU model and memory, as the kernel reports them.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".to_string());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = field(&meminfo, "MemTotal")
        .and_then(|kb| kb.trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| format!(", {:.0} GiB RAM", kb as f64 / (1024.0 * 1024.0)))
        .unwrap_or_default();
    format!("{cpus} logical CPUs (nproc), {model}{memory}")
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|line| line.split(':').next().map(str::trim) == Some(name))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_string())
}

/// The 1, 5 and 15 minute load averages: how busy the machine was besides the benchmark.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// The current UTC time, to the minute.
pub fn now_utc() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The heading every section starts with: when, where, and how to run it again.
pub fn section_heading(title: &str, command: &str) -> String {
    format!(
        "## {title}\n\n- date: {}\n- machine: {}\n- command: `{command}`\n",
        now_utc(),
        machine()
    )
}

const RESULTS_HEADER: &str = "# Benchmark results\n\n\
Written by `make bench`; each benchmark replaces only its own section, between its \
markers, and text outside the markers stays. How each figure is measured is documented \
at the top of the benchmark's source in `benches/`.\n";

/// Replaces (or appends) the section named `name` in `benches/results.md`.
pub fn write_section(name: &str, body: &str) {
    let path = results_path();
    let old = fs::read_to_string(&path).unwrap_or_else(|_| RESULTS_HEADER.to_string());
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let section = format!("{begin}\n{}\n{end}", body.trim_end());
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{section}{}", &old[..b], &old[e + end.len()..])
        }
        _ => format!("{}\n\n{section}\n", old.trim_end()),
    };
    match fs::write(&path, new) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

fn results_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results.md")
}

/// Seconds with two decimals.
pub fn secs(d: std::time::Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// 86400 as "86,400".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
