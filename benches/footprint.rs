//! `cargo bench --bench footprint` (`make bench-footprint`): what the release `mabel` costs
//! in memory and CPU, against the fake replica set (`tests/support`), whose own work is not
//! counted.
//!
//! - **Busy**: `mabel run --interval 0.001 --count N` for N = 1, 1,000 and 10,000. Peak RSS
//!   and CPU time (user + system) come from `wait4` on the finished process, so they cover its
//!   whole life and all its threads. CPU per breath is given both whole (start-up included)
//!   and at the margin: (CPU for 10,000 - CPU for 1,000) / 9,000. Memory must not grow with
//!   the number of breaths: 10,000 breaths' peak RSS within 1 MiB of 1,000's.
//! - **Idle**: `mabel run` with the default 1 s interval, with mabel's 0.5 s heartbeat and,
//!   for comparison, with the driver's default 10 s one (`heartbeatFrequencyMS=10000` in the
//!   URI). After a 3 s start, the process's CPU clock (`clock_getcpuclockid`, all threads) is
//!   read at the start and end of a 12 s window: CPU per second of wall time.

mod common;

#[path = "../tests/support/mabel.rs"]
#[allow(dead_code)]
mod mabel;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use mabel_sim::Timers;

const BUSY_COUNTS: [u64; 3] = [1, 1_000, 10_000];
const BUSY_INTERVAL: &str = "0.001";
const BUSY_LIMIT: Duration = Duration::from_secs(120);
const IDLE_START: Duration = Duration::from_secs(3);
const IDLE_WINDOW: Duration = Duration::from_secs(12);
const RSS_GROWTH_TARGET_KIB: i64 = 1024;

struct Busy {
    breaths: u64,
    confirmed: u64,
    stored: usize,
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: i64,
    exit: Option<i32>,
}

struct Idle {
    label: &'static str,
    cpu: Duration,
    wall: Duration,
}

fn main() {
    eprintln!("footprint: busy runs of {BUSY_COUNTS:?} breaths, then two idle runs");
    let busy: Vec<Busy> = BUSY_COUNTS.iter().map(|&n| busy(n)).collect();
    for b in &busy {
        eprintln!(
            "  {} breaths: {} s, {} KiB peak, {} ms CPU, exit {:?}",
            b.breaths,
            common::secs(b.wall),
            b.peak_rss_kib,
            b.cpu.as_millis(),
            b.exit
        );
    }
    let idle = idle_pair();
    let report = report(&busy, &idle);
    println!("{report}");
    let ok = busy
        .iter()
        .all(|b| b.exit == Some(0) && b.confirmed == b.breaths && b.stored == b.breaths as usize);
    if ok {
        common::write_section("footprint", &report);
    } else {
        eprintln!("footprint: a busy run did not write every breath; results not saved");
        std::process::exit(1);
    }
}

/// Runs mabel for `n` breaths as fast as it goes and reaps it with `wait4`.
// The child is reaped by `reap` (`wait4`), which `Child::wait` cannot do with a rusage.
#[allow(clippy::zombie_processes)]
fn busy(n: u64) -> Busy {
    let set = common::sim_set(Timers::mongod());
    let uri = common::plain_uri(&set, "");
    let started = Instant::now();
    let mut child = mabel::command()
        .args([
            "run",
            "--interval",
            BUSY_INTERVAL,
            "--count",
            &n.to_string(),
        ])
        .args(["--uri", &uri])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mabel binary starts");
    let pid = child.id() as libc::pid_t;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let lines = thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("wrote "))
            .count() as u64
    });
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let watchdog = watchdog(pid, BUSY_LIMIT);
    let (status, usage) = reap(pid);
    let wall = started.elapsed();
    drop(watchdog);
    let confirmed = lines.join().unwrap_or(0);
    let stderr = errors.join().unwrap_or_default();
    if !stderr.trim().is_empty() {
        eprintln!("mabel --count {n} said on stderr:\n{stderr}");
    }
    Busy {
        breaths: n,
        confirmed,
        stored: set.documents("mabel", "breaths").len(),
        wall,
        cpu: cpu(&usage),
        peak_rss_kib: usage.ru_maxrss,
        exit: status,
    }
}

/// Both idle runs at once (each is measured on its own CPU clock).
fn idle_pair() -> Vec<Idle> {
    let fast = thread::spawn(|| idle("mabel's defaults (heartbeat every 0.5 s)", ""));
    let slow = thread::spawn(|| {
        idle(
            "driver's default heartbeat (every 10 s)",
            "&heartbeatFrequencyMS=10000",
        )
    });
    vec![
        fast.join().expect("idle run"),
        slow.join().expect("idle run"),
    ]
}

fn idle(label: &'static str, extra: &str) -> Idle {
    let set = common::sim_set(Timers::mongod());
    let uri = common::plain_uri(&set, extra);
    let mut child = mabel::command()
        .args(["run", "--uri", &uri])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the mabel binary starts");
    let pid = child.id() as libc::pid_t;
    thread::sleep(IDLE_START);
    let (c1, t1) = (process_cpu(pid), Instant::now());
    thread::sleep(IDLE_WINDOW);
    let (c2, t2) = (process_cpu(pid), Instant::now());
    let _ = child.kill();
    let _ = child.wait();
    Idle {
        label,
        cpu: c2.saturating_sub(c1),
        wall: t2 - t1,
    }
}

/// Waits for `pid` and returns its exit code and resource usage.
fn reap(pid: libc::pid_t) -> (Option<i32>, libc::rusage) {
    // SAFETY: wait4 writes the status and the rusage it is given; zeroed values are valid.
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4 on mabel");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage)
}

/// Kills `pid` if it is still running after `limit`, unless dropped first.
fn watchdog(pid: libc::pid_t, limit: Duration) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("footprint: mabel still running after {limit:?}; killing it");
            // SAFETY: plain kill(2); the pid is our unreaped child, so it cannot be reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    tx
}

fn cpu(usage: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time used so far by every thread of process `pid`, living or finished.
fn process_cpu(pid: libc::pid_t) -> Duration {
    // SAFETY: both calls only write the out-parameters they are given.
    let mut clock: libc::clockid_t = 0;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe {
        assert_eq!(libc::clock_getcpuclockid(pid, &mut clock), 0, "cpu clock");
        assert_eq!(libc::clock_gettime(clock, &mut now), 0, "read cpu clock");
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn report(busy: &[Busy], idle: &[Idle]) -> String {
    let mut out = common::section_heading("Footprint", "make bench-footprint");
    out.push_str(&format!(
        "- load average when it ended: {}\n",
        common::load_average()
    ));
    out.push_str(&format!(
        "\nBusy: `mabel run --interval {BUSY_INTERVAL} --count N`, measured with `wait4`.\n\n"
    ));
    out.push_str("| breaths | wall s | peak RSS KiB | CPU ms | CPU per breath, whole run |\n");
    out.push_str("|---|---|---|---|---|\n");
    for b in busy {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} us |\n",
            b.breaths,
            common::secs(b.wall),
            b.peak_rss_kib,
            b.cpu.as_millis(),
            b.cpu.as_secs_f64() * 1e6 / b.breaths as f64,
        ));
    }
    let find = |n: u64| busy.iter().find(|b| b.breaths == n);
    if let (Some(k1), Some(k10)) = (find(1_000), find(10_000)) {
        let marginal = (k10.cpu.as_secs_f64() - k1.cpu.as_secs_f64()) / 9_000.0;
        let growth = k10.peak_rss_kib - k1.peak_rss_kib;
        out.push_str(&format!(
            "\n- CPU per breath at the margin, (10,000 - 1,000) / 9,000: {:.0} us\n\
             - peak RSS, 10,000 breaths minus 1,000: {growth:+} KiB (target: within \
             {RSS_GROWTH_TARGET_KIB} KiB): {}\n",
            marginal * 1e6,
            if growth.abs() <= RSS_GROWTH_TARGET_KIB {
                "met"
            } else {
                "MISSED"
            },
        ));
    }
    out.push_str(&format!(
        "\nIdle: `mabel run` at the default 1 s interval; CPU over a {} s window after a {} s \
         start, all threads, the breath written each second included.\n\n",
        IDLE_WINDOW.as_secs(),
        IDLE_START.as_secs()
    ));
    out.push_str("| client | CPU ms per s of wall time | share of one CPU |\n|---|---|---|\n");
    for i in idle {
        let per_second = i.cpu.as_secs_f64() / i.wall.as_secs_f64();
        out.push_str(&format!(
            "| {} | {:.2} | {:.2}% |\n",
            i.label,
            per_second * 1e3,
            per_second * 100.0
        ));
    }
    if let [fast, slow] = idle {
        let rate = |i: &Idle| i.cpu.as_secs_f64() / i.wall.as_secs_f64();
        out.push_str(&format!(
            "\nThe 0.5 s heartbeat (to three members) costs {:.2} ms of CPU per second more than \
             the driver's default.\n",
            (rate(fast) - rate(slow)) * 1e3
        ));
    }
    out
}
