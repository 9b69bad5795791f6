//! The command line, as argh sees it: flags, their defaults and their help text.
//!
//! Nothing here is checked beyond what argh parses; `config` turns these raw values into
//! settings and names the flag when one is wrong. Seconds are taken as text, so that a
//! message about them echoes what was typed (`1e309`), not what a float made of it (`inf`).

use std::path::PathBuf;

use argh::FromArgs;

/// Writes Mabel the diving monkey's breaths to a MongoDB replica set, and keeps writing
/// through a primary failover without losing or doubling a breath.
#[derive(FromArgs, Debug, PartialEq)]
pub struct Mabel {
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Command {
    Run(Run),
    Audit(Audit),
}

/// Measure a breath every interval and write it, retrying through failovers.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "run")]
pub struct Run {
    /// connection string (default: $MONGODB_URI, else
    /// mongodb://127.0.0.1:27017,127.0.0.1:27018,127.0.0.1:27019/?replicaSet=rs0)
    #[argh(option)]
    pub uri: Option<String>,

    /// database to write to (default: mabel)
    #[argh(option, default = "String::from(\"mabel\")")]
    pub db: String,

    /// collection to write to (default: breaths)
    #[argh(option, default = "String::from(\"breaths\")")]
    pub collection: String,

    /// seconds between breaths, decimals allowed (default: 1)
    #[argh(option, default = "String::from(\"1\")")]
    pub interval: String,

    /// attempts per breath before giving up (default: 60)
    #[argh(option, default = "60")]
    pub attempts: u32,

    /// longest wait for a writable primary between attempts, in seconds (default: 5)
    #[argh(option, default = "String::from(\"5\")")]
    pub retry_wait: String,

    /// measure this many breaths and stop once each is written, with --spool also every
    /// breath the spool held, so 0 (only with --spool) writes what it holds (default: run
    /// until stopped)
    #[argh(option)]
    pub count: Option<u64>,

    /// w of the write concern: majority or a number of members (default: the URI's w,
    /// else majority; j: true unless the URI sets journal=false)
    #[argh(option)]
    pub write_concern: Option<String>,

    /// keep every breath in this file until the database has it, so that neither an outage
    /// past the retry deadline nor a crash of mabel loses one (default: no spool)
    #[argh(option)]
    pub spool: Option<PathBuf>,

    /// the most bytes the spool may take; when the breaths waiting fill it, mabel stops
    /// (default: 67108864, 64 MiB)
    #[argh(option)]
    pub spool_max_bytes: Option<u64>,

    /// the most breaths from the spool sent in one insert when a backlog waits; 1 sends
    /// them one at a time (default: 1000)
    #[argh(option)]
    pub batch: Option<usize>,
}

/// Read the breaths back and report how many there are, their time span and longest gaps,
/// and any breath lost or doubled. Exit 0 when nothing is, 1 when something is.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "audit")]
pub struct Audit {
    /// connection string (default: $MONGODB_URI, else
    /// mongodb://127.0.0.1:27017,127.0.0.1:27018,127.0.0.1:27019/?replicaSet=rs0)
    #[argh(option)]
    pub uri: Option<String>,

    /// database to read (default: mabel)
    #[argh(option, default = "String::from(\"mabel\")")]
    pub db: String,

    /// collection to read (default: breaths)
    #[argh(option, default = "String::from(\"breaths\")")]
    pub collection: String,

    /// only breaths taken at or after this RFC 3339 time, e.g. 2026-11-25T16:00:00Z
    #[argh(option)]
    pub since: Option<String>,

    /// only breaths taken before this RFC 3339 time
    #[argh(option)]
    pub until: Option<String>,

    /// print the report as one JSON object
    #[argh(switch)]
    pub json: bool,
}
