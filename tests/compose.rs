//! The Compose side of the real-set controls and of the Makefile, checked without Docker: a
//! stub `COMPOSE` records how it is called and plays a set whose primary is mongo2.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::support::real::Compose;

/// A directory of the test's own with the stub in it; removed when dropped.
pub struct Stub {
    dir: PathBuf,
}

impl Stub {
    pub fn new(test: &str, engine_answers: bool) -> Stub {
        let dir = std::env::temp_dir().join(format!("mabel-compose-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("make the stub's directory");
        let ps = if engine_answers {
            "exit 0"
        } else {
            "echo 'Cannot connect' >&2; exit 1"
        };
        let script = format!(
            "#!/bin/sh\n\
             echo \"$*\" >> '{log}'\n\
             case \"$*\" in\n\
             ps*) {ps} ;;\n\
             *'exec -T mongo2 '*isWritablePrimary*) echo true ;;\n\
             *isWritablePrimary*) echo false ;;\n\
             esac\n",
            log = dir.join("calls").display(),
        );
        let stub = dir.join("compose");
        fs::write(&stub, script).expect("write the stub");
        fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).expect("make it runnable");
        Stub { dir }
    }

    pub fn program(&self) -> String {
        self.dir.join("compose").display().to_string()
    }

    /// Each call, one line of arguments.
    pub fn calls(&self) -> Vec<String> {
        let calls = fs::read_to_string(self.dir.join("calls")).unwrap_or_default();
        calls.lines().map(str::to_string).collect()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `make -s <target> COMPOSE=<compose>` in the project, outside any make running this test,
/// with `DATA` where no simulator runs, so that the targets act on Compose.
fn make(target: &str, compose: &str) -> Output {
    let no_simulator = concat!(env!("CARGO_TARGET_TMPDIR"), "/compose-no-simulator");
    Command::new("make")
        .args(["-s", "-C", env!("CARGO_MANIFEST_DIR"), target])
        .arg(format!("COMPOSE={compose}"))
        .arg(format!("DATA={no_simulator}"))
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("make runs")
}

fn members_only(calls: &[String]) {
    assert!(
        calls
            .iter()
            .all(|call| !call.split_whitespace().any(|word| word == "net")),
        "the namespace holder was touched: {calls:?}"
    );
}

#[test]
fn the_controls_kill_start_and_pause_members_by_service_name() {
    let stub = Stub::new("controls", true);
    let compose = Compose::new(&stub.program());
    compose.kill(0);
    compose.start(0);
    compose.pause(2);
    compose.unpause(2);
    assert_eq!(
        stub.calls(),
        [
            "kill mongo1",
            "start mongo1",
            "pause mongo3",
            "unpause mongo3"
        ]
    );
}

#[test]
fn make_failover_kills_the_primary_and_revive_starts_the_members() {
    let stub = Stub::new("failover", true);
    let failover = make("failover", &stub.program());
    assert!(failover.status.success(), "{failover:?}");
    let calls = stub.calls();
    assert_eq!(
        calls.last().map(String::as_str),
        Some("kill mongo2"),
        "{calls:?}"
    );

    let revive = make("revive", &stub.program());
    assert!(revive.status.success(), "{revive:?}");
    let calls = stub.calls();
    assert_eq!(
        calls.last().map(String::as_str),
        Some("start mongo1 mongo2 mongo3")
    );
    members_only(&calls);
}

#[test]
fn make_up_starts_the_set_and_waits_for_its_primary() {
    let stub = Stub::new("up", true);
    let up = make("up", &stub.program());
    assert!(up.status.success(), "{up:?}");
    assert!(
        String::from_utf8_lossy(&up.stdout).contains("primary: mongo2"),
        "{up:?}"
    );
    assert!(
        stub.calls().contains(&"up -d".to_string()),
        "{:?}",
        stub.calls()
    );
}

/// The first line make prints for a recipe that stops early.
fn first_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr.lines().next().unwrap_or_default().to_string()
}

#[test]
fn make_says_in_one_line_when_compose_or_an_engine_is_missing() {
    // (`up`, as `run`, would start the simulator instead: tests/simulator.rs.)
    let none = make("status", "");
    assert!(!none.status.success());
    let line = first_error_line(&none);
    assert!(line.starts_with("make: Docker Compose not found"), "{line}");
    assert!(line.contains("docker-compose"), "{line}");

    let stub = Stub::new("no-engine", false);
    let dead = make("failover", &stub.program());
    assert!(!dead.status.success());
    let line = first_error_line(&dead);
    assert!(line.contains("no Docker engine answers"), "{line}");
    assert_eq!(stub.calls(), ["ps"], "nothing else is tried");
}

#[test]
fn make_partition_and_heal_say_in_one_line_that_the_compose_set_cannot() {
    let stub = Stub::new("partition", true);
    for target in ["partition", "heal"] {
        let output = make(target, &stub.program());
        assert!(!output.status.success(), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = first_error_line(&output);
        assert!(
            line.starts_with("make: the compose set cannot cut its primary off"),
            "{line}"
        );
        assert!(
            line.contains(&format!("{target} works on the simulator")),
            "{line}"
        );
        assert_eq!(
            stderr
                .lines()
                .filter(|l| !l.starts_with("make: ***"))
                .count(),
            1
        );
    }
    assert_eq!(stub.calls(), Vec::<String>::new(), "Compose is not called");
}
