//! The set's timers, with mongod's defaults, and the shorter ones tests and quick looks use.
//!
//! Defaults are a 7.0 replica set config's `settings` (`src/mongo/db/repl/repl_set_config.idl`,
//! `ReplSetConfigSettings`): `electionTimeoutMillis` 10,000, `heartbeatIntervalMillis` 2,000,
//! `heartbeatTimeoutSecs` 10, `catchUpTimeoutMillis` -1 (no limit), and the election timer's
//! random offset of up to `replElectionTimeoutOffsetLimitFraction` (0.15) of the timeout
//! (`replication_coordinator_impl_heartbeat.cpp`, `_getElectionOffsetUpperBound_inlock`).
//!
//! `with_election_timeout` scales every replication timer by the same factor, so that a set
//! with a 200 ms election timeout behaves as the real one would, fifty times faster:
//! heartbeats go five times per election timeout and a silent member is given up on after one
//! election timeout, as with the defaults. The phases a restarted member passes
//! through are not scaled: they are not timers of the config but how long mongod takes.

use std::time::Duration;

/// When the set acts by itself, and how fast.
#[derive(Clone, Debug, PartialEq)]
pub struct Timers {
    /// `electionTimeoutMillis`: a secondary that hears nothing from a primary for this long
    /// (plus a random offset) stands for election, and a primary that hears from no majority
    /// for this long steps down. `None`: neither ever happens by itself; elections and
    /// step-downs come only from a test's controls and the admin commands (the scripted set).
    pub election_timeout: Option<Duration>,
    /// The largest random offset added to each election timer, as a fraction of the timeout.
    pub election_offset_fraction: f64,
    /// `heartbeatIntervalMillis`: how often each member asks each other one how it is.
    pub heartbeat_interval: Duration,
    /// `heartbeatTimeoutSecs`: how long a heartbeat waits for an answer from a member that
    /// accepts it and never replies (hung, or cut off) before that member is marked down.
    pub heartbeat_timeout: Duration,
    /// `catchUpTimeoutMillis`: how long a primary-elect may catch up before it takes writes
    /// anyway; `None` is -1, no limit. Not modelled, so never read: a primary-elect fetches
    /// what it reaches in one step (`State::catch_up`), so no limit is ever reached. Kept so
    /// that the timers say what the config would.
    pub catch_up_timeout: Option<Duration>,
    /// How long a new primary stays in drain mode (`hello` says `isWritablePrimary: false`,
    /// `secondary: true`) before it takes writes: applying what it fetched, writing its
    /// "new primary" no-op and bumping the config term. Milliseconds on an idle set.
    pub drain: Duration,
    /// How long a restarted member is in STARTUP (loading its config; it already accepts
    /// connections), STARTUP2 and RECOVERING before it is SECONDARY, and how long it stays in
    /// ROLLBACK when it rolls back. No source gives figures; the server's code suggests well
    /// under two seconds for the three on an idle set (`replication_coordinator_impl.cpp`,
    /// `_startLoadLocalConfig`, `_startDataReplication`, `finishRecoveryIfEligible`).
    pub startup: Duration,
    pub startup2: Duration,
    pub recovering: Duration,
    pub rollback: Duration,
    /// How long a member takes to build an index: scanning a collection of breaths takes
    /// milliseconds.
    pub index_build: Duration,
    /// Seeds the set's random choices (election offsets, which error an interrupted write
    /// gets), so that a failing run can be replayed.
    pub seed: u64,
}

impl Timers {
    /// mongod's own timers.
    pub fn mongod() -> Timers {
        Timers {
            election_timeout: Some(Duration::from_secs(10)),
            election_offset_fraction: 0.15,
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(10),
            catch_up_timeout: None,
            drain: Duration::from_millis(5),
            startup: Duration::from_millis(300),
            startup2: Duration::from_millis(100),
            recovering: Duration::from_millis(200),
            rollback: Duration::from_millis(500),
            index_build: Duration::from_millis(20),
            seed: rand::random(),
        }
    }

    /// mongod's timers scaled so that the election timeout is `timeout`.
    pub fn with_election_timeout(timeout: Duration) -> Timers {
        let mongod = Timers::mongod();
        let factor = timeout.as_secs_f64() / 10.0;
        Timers {
            election_timeout: Some(timeout),
            heartbeat_interval: mongod.heartbeat_interval.mul_f64(factor),
            heartbeat_timeout: mongod.heartbeat_timeout.mul_f64(factor),
            ..mongod
        }
    }

    /// What tests use unless they say otherwise: a 200 ms election timeout, so that a
    /// failover takes a quarter of a second instead of ten.
    pub fn fast() -> Timers {
        Timers::with_election_timeout(Duration::from_millis(200))
    }

    /// No election or step-down by itself, for tests that need one at an exact moment;
    /// heartbeats still carry terms and states between members, fast.
    pub fn scripted() -> Timers {
        Timers {
            election_timeout: None,
            heartbeat_interval: Duration::from_millis(40),
            heartbeat_timeout: Duration::from_millis(200),
            ..Timers::mongod()
        }
    }

    /// The same timers with another seed.
    pub fn seeded(self, seed: u64) -> Timers {
        Timers { seed, ..self }
    }
}
