//! The Makefile's route without Docker, end to end: `make run` starts mabel-sim in the
//! background and writes to it, `make failover` in a second terminal takes mabel through the
//! seed's stages of grief, `make demo` tells the whole story and audits it, `make down`
//! leaves no process behind, and while the simulator runs the set targets act on it and never
//! on Compose. Each test has its own scratch directory and ports (`support::make`).

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Output};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::compose::Stub;
use crate::support::mabel::audit;
use crate::support::make::{running, stop_group, Make};

const WATCHDOG: Duration = Duration::from_secs(90);

/// The line `make run` and `make demo` begin with when no engine answers.
const NO_DOCKER: &str = "no Docker engine answers: running against mabel-sim, a simulated \
                         replica set (not MongoDB); start Docker for the real one";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeeded(output: &Output) -> String {
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{output:?}\n{stdout}");
    stdout
}

/// `make run` in a terminal of its own: its stdout line by line as it comes, its stderr at
/// the end.
struct Terminal {
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Terminal {
    fn open(mut child: Child) -> Terminal {
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let (send, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Terminal {
            child,
            lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
        }
    }

    fn wait_for_breaths(&mut self, n: usize) {
        let deadline = Instant::now() + WATCHDOG;
        while wrote(&self.stdout) < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(_) => panic!("fewer than {n} breaths: {:#?}", self.stdout),
            }
        }
    }

    /// Waits for make to exit: its exit code, stdout and stderr.
    fn finish(mut self) -> (Option<i32>, Vec<String>, String) {
        let deadline = Instant::now() + WATCHDOG;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait on make") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "make did not exit: {:#?}",
                self.stdout
            );
            thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(line);
        }
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        let stdout = std::mem::take(&mut self.stdout);
        (status.code(), stdout, stderr.unwrap_or_default())
    }
}

impl Drop for Terminal {
    /// A test that fails before make is done leaves no mabel behind, retrying against a set
    /// that is gone.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            stop_group(&mut self.child);
        }
    }
}

fn wrote(lines: &[String]) -> usize {
    lines.iter().filter(|l| l.starts_with("wrote ")).count()
}

/// The pid `make` printed for the simulator it started.
fn started_pid(stdout: &str) -> u32 {
    let pid = stdout
        .split("mabel-sim (pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok());
    pid.unwrap_or_else(|| panic!("no simulator started: {stdout}"))
}

/// The simulator is gone and has left nothing: no process, no pid file, no socket, and its
/// ports free.
fn assert_stopped(make: &Make, pid: u32) {
    assert!(!running(pid), "mabel-sim (pid {pid}) still runs");
    assert_eq!(make.sim_pid(), None, "the pid file is gone");
    assert!(!make.socket().exists(), "the socket file is gone");
    for port in make.ports {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is still taken"
        );
    }
}

#[test]
fn make_run_without_docker_writes_its_breaths_to_the_simulator_and_make_down_stops_it() {
    let make = Make::new("sim-run", "2s");
    let run = make.run("run", &["ARGS=--count 20 --interval 0.05"]);
    let stdout = succeeded(&run);
    assert_eq!(stdout.lines().next(), Some(NO_DOCKER), "{stdout}");
    assert_eq!(
        wrote(&stdout.lines().map(str::to_string).collect::<Vec<_>>()),
        20
    );
    assert!(stdout.contains("done: 20 breaths written"), "{stdout}");
    let (code, report) = audit(&make.uri());
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["breaths"], 20, "{report}");
    assert!(make.scratch.spool().exists(), "the spool is in DATA");

    let pid = started_pid(&stdout);
    assert!(running(pid), "the simulator stays up after mabel");
    let again = succeeded(&make.run("run", &["ARGS=--count 2 --interval 0.05"]));
    assert!(
        !again.contains("no Docker engine"),
        "the running one is used: {again}"
    );
    assert_eq!(make.sim_pid(), Some(pid));

    let down = succeeded(&make.run("down", &[]));
    assert!(
        down.contains(&format!("mabel-sim (pid {pid}) stopped")),
        "{down}"
    );
    assert_stopped(&make, pid);
}

#[test]
fn make_failover_in_a_second_terminal_takes_mabel_through_the_stages_of_grief() {
    let make = Make::new("sim-failover", "2s");
    let args = "ARGS=--count 30 --interval 0.1 --retry-wait 0.5";
    let mut first = Terminal::open(make.spawn("run", &[args]));
    first.wait_for_breaths(5);

    let failover = succeeded(&make.run("failover", &[]));
    let primary = format!("127.0.0.1:{}", make.ports[0]);
    assert!(
        failover.starts_with(&format!("killed member 0 ({primary}), the primary")),
        "{failover}"
    );
    let (code, stdout, stderr) = first.finish();
    assert_eq!(code, Some(0), "{stdout:#?}\n{stderr}");

    // wrote, Warning, wrote, and a new primary.
    assert!(stderr.contains(" Warning "), "{stderr}");
    assert!(stderr.contains("(attempt 1 of 60)"), "{stderr}");
    let incident = stdout
        .iter()
        .find(|l| l.starts_with("incident: ") && l.contains(&format!("primary {primary} -> ")));
    assert!(incident.is_some(), "{stdout:#?}");
    assert_eq!(wrote(&stdout), 30, "and carried on: {stdout:#?}");
    let (code, report) = audit(&make.uri());
    assert_eq!(
        (code, &report["lost"], &report["doubled"]),
        (Some(0), &0.into(), &0.into())
    );
    let log = make.sim_log();
    assert!(
        log.contains(&format!("member 0 ({primary}) was killed")),
        "{log}"
    );
    assert!(log.contains("won the election for term 2"), "{log}");

    let revive = succeeded(&make.run("revive", &[]));
    assert!(
        revive.starts_with(&format!("started member 0 ({primary}) again")),
        "{revive}"
    );
}

#[test]
fn make_demo_tells_the_seeds_story_on_the_simulator_and_exits_with_a_clean_audit() {
    // A 3 s election timeout leaves the breath sent after the cut time to land on the cut-off
    // primary alone, so that there is a rollback to survive.
    let make = Make::new("sim-demo", "3s");
    let started = Instant::now();
    let demo = make.run("demo", &["DEMO_PAUSE=2"]);
    let took = started.elapsed();
    let stdout = succeeded(&demo);
    assert!(took < Duration::from_secs(60), "make demo took {took:?}");
    println!("make demo with a 3 s election timeout took {took:?}");
    assert!(
        stdout.starts_with("no Docker engine answers: the demo runs on mabel-sim"),
        "{stdout}"
    );

    // The story, in time order, mabel's lines and the set's side by side.
    let story: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("== mabel and the simulated set, in time order"))
        .skip(1)
        .take_while(|l| !l.starts_with("mabel exited with"))
        .collect();
    let times: Vec<&str> = story.iter().map(|l| l.get(..24).unwrap_or(l)).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{story:#?}");
    let from = |label: &str, what: &str| {
        story
            .iter()
            .position(|l| l[24..].starts_with(label) && l.contains(what))
            .unwrap_or_else(|| panic!("no {label} line with {what:?}: {story:#?}"))
    };
    let first_breath = from(" mabel wrote ", "");
    let killed = from(" sim   ", ") was killed");
    let elected = from(" sim   ", "won the election for term 2");
    let cut = from(" sim   ", ") was cut off from the others");
    let rolled_back = from(" sim   ", "rolled back 1 write the others never had");
    let stopped = from(" mabel stopped by SIGINT", "");
    assert!(
        first_breath < killed && killed < elected && elected < cut,
        "{story:#?}"
    );
    assert!(cut < rolled_back && rolled_back < stopped, "{story:#?}");
    assert!(
        story[elected..].iter().any(|l| l.contains(" mabel wrote ")),
        "{story:#?}"
    );
    assert!(stdout.contains("mabel exited with 0"), "{stdout}");
    assert!(
        stdout.trim_end().contains("nothing lost, nothing doubled"),
        "{stdout}"
    );

    // The simulator it started for itself is gone.
    let pid = started_pid(&stdout);
    assert!(
        stdout.contains(&format!("mabel-sim (pid {pid}) stopped")),
        "{stdout}"
    );
    assert_stopped(&make, pid);
}

#[test]
fn make_down_leaves_no_process_and_a_simulator_that_cannot_start_says_why() {
    let make = Make::new("sim-down", "2s");
    // With nothing running and no engine, `make up` starts the simulator, as `make run` does.
    let up = succeeded(&make.run("up", &[]));
    assert!(
        up.starts_with(
            "no Docker engine answers: starting mabel-sim, a simulated replica set (not MongoDB)"
        ),
        "{up}"
    );
    let pid = started_pid(&up);
    assert!(running(pid));
    assert!(succeeded(&make.run("up", &[])).contains(&format!("mabel-sim is running (pid {pid})")));
    succeeded(&make.run("down", &[]));
    assert_stopped(&make, pid);
    // Nothing runs now, and no engine answers: nothing to stop, and no Compose traceback.
    let again = make.run("down", &[]);
    assert_eq!(
        succeeded(&again).trim(),
        "nothing to stop: mabel-sim is not running and no Docker engine answers"
    );
    assert_eq!(text(&again.stderr), "");

    // A port taken by something else: the simulator's one line, and nothing left running.
    let taken = TcpListener::bind(("127.0.0.1", make.ports[1])).expect("the port is free");
    let refused = make.run("sim-up", &[]);
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = text(&refused.stderr);
    let line = format!("mabel-sim: cannot listen on 127.0.0.1:{}", make.ports[1]);
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("mabel-sim"))
        .collect();
    assert!(said.len() == 1 && said[0].starts_with(&line), "{stderr}");
    assert_eq!(make.sim_pid(), None);
    drop(taken);
}

#[test]
fn while_the_simulator_runs_the_set_targets_act_on_it_and_never_on_compose() {
    // An engine that answers: the running simulator wins all the same.
    let stub = Stub::new("sim-targets", true);
    let make = Make::new("sim-targets", "1s").with_compose(&stub.program());
    let pid = started_pid(&succeeded(&make.run("sim-up", &[])));

    let status = succeeded(&make.run("status", &[]));
    assert!(
        status.starts_with("simulated set rs0 (not MongoDB)"),
        "{status}"
    );
    assert!(status.contains(") PRIMARY, term 1"), "{status}");
    let stepdown = succeeded(&make.run("stepdown", &[]));
    assert!(
        stepdown.starts_with("member 0 (") && stepdown.contains("stepped down"),
        "{stepdown}"
    );
    let partition = succeeded(&make.run("partition", &[]));
    assert!(partition.starts_with("isolated member "), "{partition}");
    assert!(partition.contains("clients still reach it"), "{partition}");
    let heal = succeeded(&make.run("heal", &[]));
    assert!(heal.contains("reaches the others again"), "{heal}");
    let failover = succeeded(&make.run("failover", &[]));
    assert!(failover.starts_with("killed member "), "{failover}");
    let revive = succeeded(&make.run("revive", &[]));
    assert!(revive.starts_with("started member "), "{revive}");
    let run = succeeded(&make.run("run", &["ARGS=--count 3 --interval 0.05", "SPOOL="]));
    assert_eq!(
        wrote(&run.lines().map(str::to_string).collect::<Vec<_>>()),
        3
    );
    succeeded(&make.run("down", &[]));

    assert_eq!(stub.calls(), Vec::<String>::new(), "Compose was called");
    assert_stopped(&make, pid);
}
