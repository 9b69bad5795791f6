//! The real side of `target.rs`: a replica set named by `MABEL_TEST_URI` (the compose set in
//! `make test-real`), read through the driver and controlled through Compose.
//!
//! Nothing here has run against a real mongod yet: this machine has no Docker engine. The
//! Compose calls are checked with a stub `COMPOSE` (tests/compose.rs), and the admin commands
//! `target.rs` sends run against the fake in `make test`.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use bson::{doc, Document};
use mongodb::sync::Client;

/// A real set, and the database this test writes to (dropped when the test starts and again
/// when it passes; kept for a look when it fails).
pub struct RealSet {
    uri: String,
    client: Client,
    hosts: Vec<String>,
    db: String,
    pub compose: Compose,
}

impl RealSet {
    pub fn connect(uri: &str) -> RealSet {
        static TESTS: AtomicU32 = AtomicU32::new(0);
        let client = Client::with_uri_str(uri).expect("MABEL_TEST_URI is a usable URI");
        let hosts = seeds(uri);
        let n = TESTS.fetch_add(1, Ordering::Relaxed);
        let db = format!("mabel_test_{}_{n}", std::process::id());
        client
            .database(&db)
            .drop()
            .run()
            .unwrap_or_else(|e| panic!("the set at {uri} does not answer: {e}"));
        RealSet {
            uri: uri.to_string(),
            client,
            hosts,
            db,
            compose: Compose::from_env(),
        }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn db(&self) -> &str {
        &self.db
    }

    pub fn hosts(&self) -> Vec<String> {
        self.hosts.clone()
    }

    pub fn documents(&self, db: &str, coll: &str) -> Vec<Document> {
        let cursor = self
            .client
            .database(db)
            .collection::<Document>(coll)
            .find(doc! {})
            .run()
            .expect("find on the real set");
        cursor
            .collect::<Result<_, _>>()
            .expect("read the documents")
    }
}

impl Drop for RealSet {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.client.database(&self.db).drop().run();
        }
    }
}

/// The `host:port` seeds of a `mongodb://` URI, in order.
fn seeds(uri: &str) -> Vec<String> {
    let rest = uri.strip_prefix("mongodb://").unwrap_or(uri);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
    let hosts = rest.split(['/', '?']).next().unwrap_or_default();
    hosts.split(',').map(str::to_string).collect()
}

/// Kills, starts and pauses the members' containers through Compose: `COMPOSE` (split on
/// spaces, as the Makefile passes it), else `docker compose`, run in the project directory.
/// Member i is service `mongo<i+1>`; `net`, which holds their network, is never touched.
pub struct Compose {
    program: Vec<String>,
}

impl Compose {
    pub fn from_env() -> Compose {
        Compose::new(&std::env::var("COMPOSE").unwrap_or_else(|_| "docker compose".into()))
    }

    /// `program` is split on spaces: `docker compose`, `docker-compose`, a stub's path.
    pub fn new(program: &str) -> Compose {
        Compose {
            program: program.split_whitespace().map(str::to_string).collect(),
        }
    }

    /// SIGKILL, as a crash: the kernel closes its sockets.
    pub fn kill(&self, member: usize) {
        self.run("kill", member);
    }

    pub fn start(&self, member: usize) {
        self.run("start", member);
    }

    /// The cgroup freezer: connections are accepted and requests read, nothing answers,
    /// like a hung mongod.
    pub fn pause(&self, member: usize) {
        self.run("pause", member);
    }

    pub fn unpause(&self, member: usize) {
        self.run("unpause", member);
    }

    fn run(&self, verb: &str, member: usize) {
        let service = format!("mongo{}", member + 1);
        let (program, args) = self.program.split_first().expect("COMPOSE names a program");
        let status = Command::new(program)
            .args(args)
            .args([verb, &service])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap_or_else(|e| panic!("{program} does not run: {e}"));
        assert!(
            status.success(),
            "{:?} {verb} {service}: {status}",
            self.program
        );
    }
}
