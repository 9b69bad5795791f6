//! The Makefile run as a person runs it, on the simulator: each test in a scratch directory
//! of its own (`DATA`), on ports no other test uses, with the binaries `cargo test` built
//! (`PROFILE=dev`) and a `COMPOSE` that finds no engine, so that the simulator's targets run
//! even on a machine with Docker. A simulator a test leaves running is stopped when its
//! `Make` is dropped.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;

use super::spool_file::Scratch;

/// A scratch directory, three ports and an election timeout for one test's `make` calls.
pub struct Make {
    pub scratch: Scratch,
    pub ports: [u16; 3],
    election_timeout: String,
    compose: String,
}

impl Make {
    /// `test` names the scratch directory; `election_timeout` is the simulator's.
    pub fn new(test: &str, election_timeout: &str) -> Make {
        Make {
            scratch: Scratch::new(test),
            ports: free_ports(),
            election_timeout: election_timeout.to_string(),
            compose: "false".to_string(),
        }
    }

    /// The same, with Compose played by `compose` (a stub), engine and all.
    pub fn with_compose(mut self, compose: &str) -> Make {
        self.compose = compose.to_string();
        self
    }

    /// `make -s <target> <vars>` with this test's variables, outside any make running it.
    pub fn command(&self, target: &str, vars: &[&str]) -> Command {
        let ports = self.ports.map(|p| p.to_string()).join(",");
        let mut command = Command::new("make");
        // What cargo sets for a test and not for a shell: the `cargo build` in the recipes
        // would otherwise find its dependencies' build scripts dirty (ring's reads
        // CARGO_MANIFEST_DIR) and rebuild them, and the next `cargo test` back again.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_by_cargo = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_BIN_EXE_"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                || ["CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE"].contains(&name.as_ref());
            if set_by_cargo {
                command.env_remove(name.as_ref());
            }
        }
        command
            .args(["-s", "-C", env!("CARGO_MANIFEST_DIR"), target])
            .arg(format!("DATA={}", self.scratch.0.display()))
            .arg(format!(
                "DEMO_LOG={}",
                self.scratch.0.join("demo.log").display()
            ))
            .arg(format!("PORTS={ports}"))
            .arg(format!("ELECTION_TIMEOUT={}", self.election_timeout))
            .arg(format!("COMPOSE={}", self.compose))
            .arg("PROFILE=dev")
            .args(vars)
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .env_remove("MONGODB_URI")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, target: &str, vars: &[&str]) -> Output {
        self.command(target, vars).output().expect("make runs")
    }

    /// Starts `make <target>` with its output piped, as in a terminal of its own: in a
    /// process group of its own too, so that `stop_group` ends what it started (its shell,
    /// mabel) and not only make.
    pub fn spawn(&self, target: &str, vars: &[&str]) -> Child {
        self.command(target, vars)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("make starts")
    }

    /// The simulator's URI, as mabel's is for `make run`.
    pub fn uri(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("mongodb://{}/?replicaSet=rs0", hosts.join(","))
    }

    /// The pid in the simulator's pid file, if there is one.
    pub fn sim_pid(&self) -> Option<u32> {
        let pid = fs::read_to_string(self.scratch.0.join("sim.pid")).ok()?;
        pid.trim().parse().ok()
    }

    pub fn sim_log(&self) -> String {
        fs::read_to_string(self.scratch.0.join("sim.log")).unwrap_or_default()
    }

    pub fn socket(&self) -> PathBuf {
        self.scratch.0.join("sim.sock")
    }
}

impl Drop for Make {
    fn drop(&mut self) {
        if self.sim_pid().is_some_and(running) {
            let _ = self.run("sim-down", &[]);
        }
    }
}

/// Ends every process in the group of `child`, which `Make::spawn` started as its leader,
/// as Ctrl-C in its terminal would, and waits for `child`.
pub fn stop_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.wait();
}

/// Whether process `pid` runs: it exists and is no zombie (where nothing reaps orphans, an
/// exited simulator stays one).
pub fn running(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"));
    match stat {
        // `pid (comm) S ...`: the state follows the command's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) if PathBuf::from("/proc/self").exists() => false,
        Err(_) => Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success()),
    }
}

/// Three ports free now, below the range the system hands out for port 0, so that no other
/// test's simulated set or connection takes one meanwhile, and never the same twice in this
/// process.
fn free_ports() -> [u16; 3] {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    static PICKING: Mutex<()> = Mutex::new(());
    let _picking = PICKING.lock().unwrap_or_else(|p| p.into_inner());
    let start = std::process::id() % 12_000;
    let mut ports = Vec::new();
    while ports.len() < 3 {
        let n = u32::from(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = 20_000 + ((start + n) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    [ports[0], ports[1], ports[2]]
}
