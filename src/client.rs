//! The only place that builds the driver's client, and so the only place its timing lives.
//!
//! The driver's defaults suit an application that would rather fail fast than wait; mabel
//! would rather wait, but not blindly. Three settings make the difference:
//!
//! - `serverSelectionTimeoutMS` is `--retry-wait`: an attempt that finds no writable primary
//!   waits for one at most that long, and starts the moment the driver sees one.
//! - `heartbeatFrequencyMS=500` (the driver's minimum) and `connectTimeoutMS=2000` bound how
//!   long a hung primary, one that keeps its sockets open and never answers, can hold a write:
//!   a heartbeat that times out clears the pool and fails the write in about five seconds,
//!   where the defaults (10 s, 10 s) allow about seventeen.
//!
//! A URI that sets `heartbeatFrequencyMS`, `connectTimeoutMS` or `w` keeps its own value.

use std::fmt;
use std::time::Duration;

use bson::Document;
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::sync::{Client, Collection};

use crate::config::{Settings, W};

const HEARTBEAT: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The URI could not be turned into a client.
#[derive(Debug)]
pub struct BadUri(mongodb::error::Error);

impl fmt::Display for BadUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--uri: {}", self.0.kind)
    }
}

impl std::error::Error for BadUri {}

/// The collection breaths go to, on a client tuned for riding out failovers.
pub fn breaths(settings: &Settings) -> Result<Collection<Document>, BadUri> {
    let options = options(settings)?;
    let client = Client::with_options(options).map_err(BadUri)?;
    Ok(client
        .database(&settings.db)
        .collection(&settings.collection))
}

fn options(settings: &Settings) -> Result<ClientOptions, BadUri> {
    let mut options = ClientOptions::parse(&settings.uri).run().map_err(BadUri)?;
    options.app_name.get_or_insert_with(|| "mabel".to_string());
    options.heartbeat_freq.get_or_insert(HEARTBEAT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    options.server_selection_timeout = Some(settings.retry_wait);
    options.write_concern = Some(write_concern(
        options.write_concern.take(),
        settings.write_concern.as_ref(),
    ));
    Ok(options)
}

/// `w: "majority", j: true` unless told otherwise: a write acknowledged by one member can be
/// rolled back when a failover elects a member that never saw it.
fn write_concern(from_uri: Option<WriteConcern>, from_flag: Option<&W>) -> WriteConcern {
    let from_uri = from_uri.unwrap_or_default();
    let w = match from_flag {
        Some(W::Majority) => Acknowledgment::Majority,
        Some(W::Members(n)) => Acknowledgment::Nodes(*n),
        None => from_uri.w.unwrap_or(Acknowledgment::Majority),
    };
    WriteConcern::builder()
        .w(w)
        .journal(from_uri.journal.unwrap_or(true))
        .w_timeout(from_uri.w_timeout)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli;
    use argh::FromArgs;

    fn options_for(args: &[&str]) -> Result<ClientOptions, String> {
        let run = cli::Run::from_args(&["run"], args).unwrap();
        let settings = Settings::from_args(run, None).unwrap();
        options(&settings).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_wait_for_a_majority_on_disk() {
        let options = options_for(&[]).unwrap();
        let wc = options.write_concern.unwrap();
        assert_eq!(wc.w, Some(Acknowledgment::Majority));
        assert_eq!(wc.journal, Some(true));
        assert_eq!(options.heartbeat_freq, Some(HEARTBEAT));
        assert_eq!(options.connect_timeout, Some(CONNECT_TIMEOUT));
        assert_eq!(
            options.server_selection_timeout,
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn the_uri_and_the_flag_override_the_default_w() {
        let uri = "mongodb://a:1/?replicaSet=rs0&w=1&heartbeatFrequencyMS=1000";
        let options = options_for(&["--uri", uri]).unwrap();
        assert_eq!(
            options.write_concern.unwrap().w,
            Some(Acknowledgment::Nodes(1))
        );
        assert_eq!(options.heartbeat_freq, Some(Duration::from_secs(1)));

        let options = options_for(&["--uri", uri, "--write-concern", "majority"]).unwrap();
        assert_eq!(
            options.write_concern.unwrap().w,
            Some(Acknowledgment::Majority)
        );
    }

    #[test]
    fn the_uri_can_turn_journaling_off() {
        let options = options_for(&["--uri", "mongodb://a:1/?journal=false"]).unwrap();
        assert_eq!(options.write_concern.unwrap().journal, Some(false));
    }

    #[test]
    fn a_malformed_uri_is_refused_with_the_flag_named() {
        let err = options_for(&["--uri", "mongo://nowhere"]).unwrap_err();
        assert!(err.starts_with("--uri: "), "{err}");
    }
}
