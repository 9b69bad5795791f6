//! Runs the real `mabel` binary and reads what it says, so that tests can compare what it
//! claims to have written with what the fake replica set stored.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::Document;

/// A running `mabel`; killed if dropped before it finishes.
pub struct Mabel {
    child: Child,
    started: Instant,
    lines: Receiver<String>,
    stdout: Vec<String>,
    /// Each line of stderr as it comes, with when it came.
    stderr_lines: Receiver<(Duration, String)>,
    stderr: Option<JoinHandle<String>>,
}

/// What becomes of mabel's stdout.
pub enum Stdout {
    /// The test reads every line.
    Read,
    /// The test reads this many lines, then closes the pipe, as `mabel run | head -2` does.
    ClosedAfter(usize),
    /// Elsewhere, such as `/dev/full`.
    To(Stdio),
}

/// How a `mabel` process ended.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    pub stdout: Vec<String>,
    pub stderr: String,
}

/// One `wrote ...` line: a breath mabel says is in the database.
#[derive(Clone, Debug, PartialEq)]
pub struct Confirmed {
    pub id: ObjectId,
    pub time: String,
    pub oxygen: f64,
    pub attempts: u32,
    pub already_written: bool,
}

/// The `mabel` binary with `MONGODB_URI` and `RUST_LOG` cleared, so that the caller alone
/// decides where it connects and what it logs, and with no standard input.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mabel"));
    command
        .env_remove("MONGODB_URI")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// `mabel audit --json` on the breaths at `uri`: its exit code and its report.
pub fn audit(uri: &str) -> (Option<i32>, serde_json::Value) {
    audit_in(uri, "mabel")
}

/// The same, on the breaths of database `db`.
pub fn audit_in(uri: &str, db: &str) -> (Option<i32>, serde_json::Value) {
    let output = command()
        .args(["audit", "--json", "--uri", uri, "--db", db])
        .output()
        .expect("mabel audit runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (output.status.code(), report)
}

impl Mabel {
    /// Starts `mabel <args>` with `--uri uri`; `MONGODB_URI` and `RUST_LOG` are cleared so the
    /// test alone decides.
    pub fn start(uri: &str, args: &[&str]) -> Mabel {
        let mut command = command();
        command.args(args).args(["--uri", uri]);
        Mabel::spawn(command)
    }

    /// Starts `command` (mabel, or mabel under another program) with its stdout and stderr
    /// read by the test.
    pub fn spawn(command: Command) -> Mabel {
        Mabel::spawn_to(command, Stdout::Read)
    }

    /// The same, with stdout read only so far, or going elsewhere.
    pub fn spawn_to(mut command: Command, stdout: Stdout) -> Mabel {
        // A group of its own, so that `kill` takes mabel with it when it runs under strace,
        // which does not kill its tracee when it is killed.
        command.process_group(0);
        let (into, most) = match stdout {
            Stdout::Read => (Stdio::piped(), Some(usize::MAX)),
            Stdout::ClosedAfter(n) => (Stdio::piped(), Some(n)),
            Stdout::To(stdio) => (stdio, None),
        };
        let mut child = command
            .stdout(into)
            .stderr(Stdio::piped())
            .spawn()
            .expect("the mabel binary starts");
        let started = Instant::now();
        let stderr = child.stderr.take().expect("stderr is piped");
        let (send, lines) = mpsc::channel();
        if let (Some(stdout), Some(most)) = (child.stdout.take(), most) {
            // Reads `most` lines, then lets the pipe go, as `head` does.
            thread::spawn(move || {
                let lines = BufReader::new(stdout).lines().map_while(Result::ok);
                for line in lines.take(most) {
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let (send, stderr_lines) = mpsc::channel();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let mut stderr = BufReader::new(stderr);
            let mut line = String::new();
            while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
                let _ = send.send((started.elapsed(), line.trim_end().to_string()));
                text.push_str(&line);
                line.clear();
            }
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Mabel {
            child,
            started,
            lines,
            stdout: Vec::new(),
            stderr_lines,
            stderr: Some(stderr),
        }
    }

    /// Waits for a line on stderr that contains `text`, and returns it with how long after
    /// the start it came; panics after `limit`.
    pub fn wait_for_stderr(&mut self, text: &str, limit: Duration) -> (String, Duration) {
        let deadline = self.started + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok((at, line)) if line.contains(text) => return (line, at),
                Ok(_) => {}
                Err(_) => {
                    let outcome = self.kill();
                    panic!("no line with {text:?} on stderr within {limit:?}: {outcome:#?}")
                }
            }
        }
    }

    /// Kills mabel's process group: mabel, and whatever it runs under.
    fn kill_group(&self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
    }

    /// Waits until mabel has confirmed `n` breaths in all; panics after `limit`.
    pub fn wait_for_breaths(&mut self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while confirmed(&self.stdout).len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("mabel confirmed fewer than {n} breaths in {limit:?}: {self:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let outcome = self.kill();
                    panic!("mabel stopped before confirming {n} breaths: {outcome:?}")
                }
            }
        }
    }

    /// How many breaths mabel has confirmed after reading what it says for `wait`: to show
    /// that something holds it back.
    pub fn confirmed_after(&mut self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(_) => return confirmed(&self.stdout).len(),
            }
        }
    }

    /// Waits for mabel to exit by itself; kills it and panics after `limit`, which is a
    /// watchdog against a hung test, not a timing assertion.
    pub fn finish(mut self, limit: Duration) -> Outcome {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait on mabel") {
                return self.outcome(status.code());
            }
            if Instant::now() > deadline {
                let outcome = self.kill();
                panic!("mabel did not exit within {limit:?}: {outcome:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (`"INT"`, `"TERM"`, `"KILL"`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    pub fn kill(&mut self) -> Outcome {
        self.kill_group();
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait on mabel");
        self.outcome(status.code())
    }

    fn outcome(&mut self, code: Option<i32>) -> Outcome {
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(line);
        }
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        Outcome {
            code,
            stdout: std::mem::take(&mut self.stdout),
            stderr: stderr.unwrap_or_default(),
        }
    }
}

impl std::fmt::Debug for Mabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stdout so far: {:#?}", self.stdout)
    }
}

impl Drop for Mabel {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill_group();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Outcome {
    pub fn confirmed(&self) -> Vec<Confirmed> {
        confirmed(&self.stdout)
    }

    /// The one `error:` line mabel printed, the last on stderr, after checking that it exited
    /// with `code` and did not panic.
    pub fn the_error_line(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{self:#?}");
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        let errors = self.stderr.lines().filter(|l| l.starts_with("error: "));
        assert_eq!(errors.count(), 1, "{}", self.stderr);
        self.stderr.lines().last().unwrap_or_default()
    }

    /// The `_id` named by a "couldn't write breath <id>" line, if mabel gave up on one.
    pub fn unconfirmed(&self) -> Option<ObjectId> {
        let rest = self.stderr.split("couldn't write breath ").nth(1)?;
        rest.get(..24)?.parse().ok()
    }
}

fn confirmed(stdout: &[String]) -> Vec<Confirmed> {
    stdout.iter().filter_map(|line| parse_wrote(line)).collect()
}

/// Parses `wrote <id> time <time> oxygen <oxygen> attempts <n>[ (already written)]`.
fn parse_wrote(line: &str) -> Option<Confirmed> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["wrote", id, "time", time, "oxygen", oxygen, "attempts", attempts, rest @ ..] => {
            Some(Confirmed {
                id: id.parse().ok()?,
                time: time.to_string(),
                oxygen: oxygen.parse().ok()?,
                attempts: attempts.parse().ok()?,
                already_written: rest == ["(already", "written)"],
            })
        }
        _ => None,
    }
}

/// The heart of every test: each breath mabel confirmed is stored exactly once, with the
/// time and oxygen it printed, and nothing is stored that mabel did not build. `unconfirmed`
/// is the one breath mabel built and gave up on, which may or may not have landed.
pub fn assert_stored_exactly_once(outcome: &Outcome, stored: &[Document]) {
    let confirmed = outcome.confirmed();
    let by_id: HashMap<ObjectId, &Confirmed> = confirmed.iter().map(|c| (c.id, c)).collect();
    assert_eq!(by_id.len(), confirmed.len(), "a breath was confirmed twice");

    let mut seen_ids = HashSet::new();
    let mut seen_breaths = HashSet::new();
    for doc in stored {
        let id = doc.get_object_id("_id").expect("stored _id is an ObjectId");
        let time = doc.get_datetime("time").expect("stored time is a date");
        let oxygen = doc.get_f64("oxygen").expect("stored oxygen is a double");
        assert!(seen_ids.insert(id), "{id} stored twice");
        assert!(
            seen_breaths.insert((time.timestamp_millis(), oxygen.to_bits())),
            "breath {time} {oxygen} stored under two ids"
        );
        match by_id.get(&id) {
            Some(c) => {
                let printed = time
                    .to_chrono()
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string();
                assert_eq!(c.time, printed, "{id} stored with another time");
                assert!(
                    (c.oxygen - oxygen).abs() < 0.0001,
                    "{id} stored with other oxygen"
                );
            }
            None => assert_eq!(
                Some(id),
                outcome.unconfirmed(),
                "{id} is stored but mabel never confirmed it: {outcome:#?}"
            ),
        }
    }
    for c in &confirmed {
        assert!(
            seen_ids.contains(&c.id),
            "{} confirmed but not stored",
            c.id
        );
    }
}
