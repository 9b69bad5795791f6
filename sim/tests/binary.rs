//! The `mabel-sim` program as a person uses it: its first lines, its event lines, its
//! commands on stdin and through `mabel-sim ctl`, and how it refuses what it cannot do:
//! bad arguments, a port or a control socket already taken, an unknown command or member.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mabel-sim");
const WATCHDOG: Duration = Duration::from_secs(20);

/// A control socket path of the test's own, with no file there yet.
fn socket(test: &str) -> PathBuf {
    let path =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-{}.sock", std::process::id()));
    let _ = fs::remove_file(&path);
    path
}

/// A running simulator on ports the system chooses, with a short election timeout; killed
/// when dropped.
struct Sim {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    control: PathBuf,
}

impl Sim {
    fn start(test: &str) -> Sim {
        let control = socket(test);
        Sim::start_on(&control, "0,0,0")
    }

    fn start_on(control: &Path, ports: &str) -> Sim {
        let mut child = Command::new(BIN)
            .args(["--ports", ports, "--election-timeout", "500ms", "--control"])
            .arg(control)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mabel-sim starts");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (send, lines) = mpsc::channel();
        let errors = send.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = errors.send(format!("stderr: {line}"));
            }
        });
        let stdin = child.stdin.take();
        let mut sim = Sim {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            control: control.to_path_buf(),
        };
        sim.wait_for("its status", |l| l.starts_with("member 2 ("));
        sim
    }

    /// Waits for a line that `matches`, and returns it.
    fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| matches(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line for {what}: {:#?}", self.seen),
            }
        }
    }

    fn ctl(&self, command: &str) -> Output {
        ctl(&self.control, command)
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("the simulator reads stdin");
    }

    /// Waits for the process to exit by itself.
    fn exit(mut self) -> Option<i32> {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "mabel-sim did not exit");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.control);
    }
}

fn ctl(control: &Path, command: &str) -> Output {
    Command::new(BIN)
        .arg("ctl")
        .arg("--control")
        .arg(control)
        .args(command.split_whitespace())
        .output()
        .expect("mabel-sim ctl runs")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("mabel-sim runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One line on stderr, none on stdout, exit `code`, and no panic.
fn refused_in_one_line(output: &Output, code: i32) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty(), "{output:?}");
    stderr.trim_end().to_string()
}

/// The roles `ctl status` gives, member by member.
fn roles(sim: &Sim) -> Vec<String> {
    let status = sim.ctl("status");
    assert!(status.status.success(), "{status:?}");
    text(&status.stdout)
        .lines()
        .filter(|l| l.starts_with("member "))
        .map(|l| {
            l.split(") ")
                .nth(1)
                .unwrap_or_default()
                .split(',')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn it_says_first_that_it_is_a_simulation_in_memory_then_prints_each_event_with_its_utc_time() {
    let mut sim = Sim::start("events");
    let first = sim.seen[0].clone();
    assert!(
        first.contains("simulated")
            && first.contains("not MongoDB")
            && first.contains("memory only"),
        "{first}"
    );
    let status = sim.ctl("status");
    assert!(status.status.success(), "{status:?}");
    let answer = text(&status.stdout);
    let lines: Vec<&str> = answer.lines().collect();
    assert!(
        lines[0].starts_with("simulated set rs0 (not MongoDB)"),
        "{answer}"
    );
    assert!(lines[1].starts_with("member 0 (127.0.0.1:"), "{answer}");
    assert!(
        lines[1].contains(") PRIMARY, term 1, last applied 20"),
        "{answer}"
    );
    assert!(
        lines[2].contains(") SECONDARY, term 1, last applied 20"),
        "{answer}"
    );
    assert_eq!(lines.len(), 4, "{answer}");

    let killed = sim.ctl("kill primary");
    assert!(killed.status.success(), "{killed:?}");
    assert!(
        text(&killed.stdout).starts_with("killed member 0 (127.0.0.1:"),
        "{killed:?}"
    );
    let line = sim.wait_for("the kill", |l| l.ends_with(") was killed"));
    // `2026-12-02T10:00:02.014Z sim   member 0 (127.0.0.1:...) was killed`
    let (time, rest) = line.split_at(24);
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{line}");
    assert!(rest.starts_with(" sim   member 0 (127.0.0.1:"), "{line}");
    sim.wait_for("the election, by itself", |l| {
        l.contains(" sim   member ") && l.ends_with("won the election for term 2")
    });
}

#[test]
fn commands_on_stdin_are_answered_and_an_unknown_one_changes_nothing() {
    let mut sim = Sim::start("stdin");
    let before = roles(&sim);
    sim.type_line("frobnicate");
    sim.wait_for("the refusal", |l| {
        l.starts_with("stderr: mabel-sim: unknown command \"frobnicate\"")
    });
    sim.type_line("kill 3");
    sim.wait_for("the refusal", |l| {
        l == "stderr: mabel-sim: no member 3: the members are 0, 1 and 2"
    });
    assert_eq!(roles(&sim), before);
    sim.type_line("hang 1");
    sim.wait_for("the answer", |l| l.starts_with("hung member 1 ("));
    sim.type_line("quit");
    sim.wait_for("the answer", |l| {
        l.starts_with("stopping the simulated set")
    });
    let control = sim.control.clone();
    assert_eq!(sim.exit(), Some(0));
    assert!(!control.exists(), "the socket file is gone");
}

#[test]
fn ctl_refuses_an_unknown_command_or_member_in_one_line_and_the_set_is_unchanged() {
    let sim = Sim::start("unknown");
    let before = roles(&sim);
    for (command, says) in [
        ("frobnicate", "mabel-sim: unknown command \"frobnicate\""),
        ("kill 7", "mabel-sim: no member 7"),
        ("kill all", "mabel-sim: usage: kill N|primary"),
        ("lag 1", "mabel-sim: usage: lag N MS"),
    ] {
        let line = refused_in_one_line(&sim.ctl(command), 2);
        assert!(line.starts_with(says), "{command}: {line}");
    }
    // Known, but impossible now: the simulator's own refusal.
    assert!(sim.ctl("kill 1").status.success());
    let line = refused_in_one_line(&sim.ctl("hang 1"), 1);
    assert!(
        line.contains("member 1 (127.0.0.1:") && line.contains("is down"),
        "{line}"
    );
    let after = roles(&sim);
    assert_eq!(after[0], before[0]);
    assert_eq!(after[1], "down");
}

#[test]
fn ctl_with_no_simulator_there_says_so() {
    let line = refused_in_one_line(&ctl(&socket("nobody"), "status"), 1);
    assert!(
        line.starts_with("mabel-sim: no simulator answers on "),
        "{line}"
    );
}

#[test]
fn bad_arguments_get_one_line_and_exit_2() {
    for (args, says) in [
        (&["--ports", "1,2"][..], "--ports 1,2"),
        (&["--ports", "27017,27017,27018"], "--ports"),
        (&["--election-timeout", "10"], "--election-timeout 10"),
        (&["--election-timeout", "5ms"], "--election-timeout 5ms"),
        (&["--set", ""], "--set"),
        (&["--set"], "--set needs a value"),
        (&["--verbose"], "unknown argument --verbose"),
        (&["ctl"], "ctl needs a COMMAND"),
        (&["stamp"], "stamp takes one LABEL"),
    ] {
        let line = refused_in_one_line(&run(args), 2);
        assert!(line.starts_with("mabel-sim: "), "{args:?}: {line}");
        assert!(line.contains(says), "{args:?}: {line}");
    }
    let help = run(&["--help"]);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("not MongoDB"));
}

#[test]
fn a_port_in_use_is_refused_in_one_line_with_exit_2() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("its address").port();
    let control = socket("port");
    let output = run(&[
        "--ports",
        &format!("0,{port},0"),
        "--control",
        &control.display().to_string(),
    ]);
    let line = refused_in_one_line(&output, 2);
    assert!(
        line.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{line}"
    );
    assert!(!control.exists(), "the socket it claimed is let go");
}

#[test]
fn a_control_socket_held_by_a_running_simulator_is_refused_and_a_stale_one_replaced() {
    let sim = Sim::start("held");
    let control = sim.control.display().to_string();
    let second = run(&["--ports", "0,0,0", "--control", &control]);
    let line = refused_in_one_line(&second, 2);
    assert!(
        line.contains("is held by another running simulator"),
        "{line}"
    );
    assert!(
        sim.ctl("status").status.success(),
        "the first one still answers"
    );
    drop(sim);

    // A socket file that nobody listens on, as a killed simulator leaves it.
    let stale = socket("stale");
    drop(UnixListener::bind(&stale).expect("a socket file"));
    assert!(stale.exists());
    let sim = Sim::start_on(&stale, "0,0,0");
    assert!(sim.ctl("status").status.success());
    drop(sim);

    // Anything else is not the simulator's to replace.
    let file = socket("file");
    fs::write(&file, "notes").expect("a plain file");
    let line = refused_in_one_line(
        &run(&["--ports", "0,0,0", "--control", &file.display().to_string()]),
        2,
    );
    assert!(line.contains("is not a socket"), "{line}");
    assert_eq!(fs::read_to_string(&file).ok().as_deref(), Some("notes"));
    let _ = fs::remove_file(&file);
}

#[test]
fn stamp_puts_the_time_and_a_label_before_each_line_and_keeps_a_time_a_line_has() {
    let mut child = Command::new(BIN)
        .args(["stamp", "mabel"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("mabel-sim stamp runs");
    let mut stdin = child.stdin.take().expect("piped");
    writeln!(stdin, "wrote 6b0725dd time 2026-11-25T18:15:57.975Z").expect("write");
    writeln!(
        stdin,
        "2026-11-25T18:16:04.978Z Warning no writable primary"
    )
    .expect("write");
    drop(stdin);
    let output = child.wait_with_output().expect("it ends at end of input");
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].ends_with("Z mabel wrote 6b0725dd time 2026-11-25T18:15:57.975Z"),
        "{stdout}"
    );
    assert!(
        lines[0].starts_with("20") && !lines[0].starts_with("2026-11-25T18:15"),
        "{stdout}"
    );
    assert_eq!(
        lines[1],
        "2026-11-25T18:16:04.978Z mabel Warning no writable primary"
    );
}
