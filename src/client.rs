//! The only place that builds the driver's client, and so the only place its timing lives.
//!
//! The driver's defaults suit an application that would rather fail fast than wait; mabel
//! would rather wait, but not blindly. Three settings make the difference:
//!
//! - `serverSelectionTimeoutMS` is `--retry-wait`: an attempt that finds no writable primary
//!   waits for one at most that long, and starts the moment the driver sees one.
//! - `heartbeatFrequencyMS=500` (the driver's minimum) and `connectTimeoutMS=2000` bound how
//!   long a hung primary, one that keeps its sockets open and never answers, can hold a write.
//!   Against a 4.4+ server the driver's monitor streams (awaitable `hello`) and waits
//!   `connectTimeoutMS` plus `heartbeatFrequencyMS` for the next reply; when that times out it
//!   clears the pool and interrupts the writes waiting there (mongodb 3.9.1
//!   `src/sdam/monitor.rs`, `src/cmap/worker.rs`): after 2.5 s here, 20 s with the defaults.
//!
//! A URI that sets `heartbeatFrequencyMS`, `connectTimeoutMS` or `w` keeps its own value.
//!
//! The client's events also tell `contact` whether any member has answered yet: a monitor's
//! heartbeat that succeeded or failed (and why), and an insert about to be sent.
//!
//! The client also remembers which member answered the last insert: that is the primary as
//! the write itself found it, which the failover report needs. It is taken from the driver's
//! command events, which the driver hands to the callback before the insert returns; its
//! topology (SDAM) events come from a task of their own, so reading them after an insert could
//! still show the primary from before it.
//!
//! `mabel audit` reads on a client with the same heartbeat and connect timeout. It reads with
//! read concern "majority", so that it counts only breaths that no failover can roll back
//! (a breath only the primary has seen is not yet safe, and counting it would hide a loss
//! the next election could make), and from the primary when there is one, else from a
//! secondary, so that an audit can run during an election. It waits at most five seconds
//! for a member to read from. The URI's `readConcernLevel`, `readPreference` and
//! `serverSelectionTimeoutMS` win. Both of the audit's passes read the member that read
//! preference picks first (see `audit`).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bson::Document;
use mongodb::event::command::CommandEvent;
use mongodb::event::sdam::SdamEvent;
use mongodb::event::EventHandler;
use mongodb::options::{
    Acknowledgment, ClientOptions, ReadConcern, ReadPreference, SelectionCriteria, ServerAddress,
    WriteConcern,
};
use mongodb::sync::{Client, Collection, Database};

use crate::config::{AuditSettings, Settings, WaitFor};
use crate::contact::Contact;
use crate::wording;

const HEARTBEAT: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const AUDIT_WAIT: Duration = Duration::from_secs(5);

/// The URI could not be turned into a client: where it came from (`--uri`,
/// `MONGODB_URI`), and why.
#[derive(Debug)]
pub struct BadUri {
    from: &'static str,
    problem: String,
}

impl BadUri {
    fn new(from: &'static str) -> impl FnOnce(mongodb::error::Error) -> BadUri {
        move |error| BadUri {
            from,
            problem: wording::describe(&error),
        }
    }
}

impl fmt::Display for BadUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.from, wording::cut(&self.problem))
    }
}

impl std::error::Error for BadUri {}

/// The member that answered the last insert, if any has.
#[derive(Clone, Debug, Default)]
pub struct LastPrimary(Arc<Mutex<Option<ServerAddress>>>);

impl LastPrimary {
    pub fn get(&self) -> Option<ServerAddress> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, address: ServerAddress) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(address);
    }
}

/// Where breaths go, on a client tuned for riding out failovers: the collection and its
/// database, the member that took the last insert, and what the set has said so far.
pub struct Breaths {
    pub collection: Collection<Document>,
    pub db: Database,
    pub primary: LastPrimary,
    pub contact: Contact,
    /// The hosts the URI names, or its `mongodb+srv` name resolved to.
    pub hosts: Vec<String>,
}

/// The collection breaths go to, and what the driver's events say about the set.
pub fn breaths(settings: &Settings) -> Result<Breaths, BadUri> {
    let mut options = run_options(settings)?;
    let hosts = options.hosts.iter().map(ToString::to_string).collect();
    let primary = LastPrimary::default();
    let contact = Contact::default();
    let (answered, sending) = (primary.clone(), contact.clone());
    options.command_event_handler = Some(EventHandler::callback(move |event| match event {
        CommandEvent::Started(event) if event.command_name == "insert" => sending.sending(),
        CommandEvent::Succeeded(event) if event.command_name == "insert" => {
            answered.set(event.connection.address)
        }
        _ => {}
    }));
    let heard = contact.clone();
    let set = options.repl_set_name.clone();
    options.sdam_event_handler = Some(EventHandler::callback(move |event| match event {
        SdamEvent::ServerHeartbeatSucceeded(event) => {
            let answered_for = event.reply.get_str("setName").ok();
            match &set {
                // The driver sends nothing to a server of another set, or of none.
                Some(want) if answered_for != Some(want.as_str()) => {
                    heard.of_another_set(event.server_address.to_string(), want, answered_for)
                }
                _ => heard.answered(),
            }
        }
        SdamEvent::ServerHeartbeatFailed(event) => {
            heard.failed(event.server_address.to_string(), &event.failure)
        }
        _ => {}
    }));
    let client = Client::with_options(options).map_err(BadUri::new(settings.uri_from))?;
    let db = client.database(&settings.db);
    Ok(Breaths {
        collection: db.collection(&settings.collection),
        db,
        primary,
        contact,
        hosts,
    })
}

/// The database `mabel audit` reads.
pub fn audited(settings: &AuditSettings) -> Result<Database, BadUri> {
    let options = audit_options(settings)?;
    let client = Client::with_options(options).map_err(BadUri::new(settings.uri_from))?;
    Ok(client.database(&settings.db))
}

/// What every client of mabel's has: its name in the server's logs, and the heartbeat and
/// connect timeout that bound a hung member.
fn options(uri: &str, from: &'static str) -> Result<ClientOptions, BadUri> {
    let mut options = ClientOptions::parse(uri).run().map_err(BadUri::new(from))?;
    options.app_name.get_or_insert_with(|| "mabel".to_string());
    options.heartbeat_freq.get_or_insert(HEARTBEAT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    Ok(options)
}

fn run_options(settings: &Settings) -> Result<ClientOptions, BadUri> {
    let mut options = options(&settings.uri, settings.uri_from)?;
    let from_uri = options.write_concern.as_ref().and_then(|wc| wc.w.as_ref());
    if from_uri == Some(&Acknowledgment::Nodes(0)) && settings.write_concern.is_none() {
        return Err(BadUri {
            from: settings.uri_from,
            problem: "w=0 asks for no acknowledgement, so no breath could be confirmed; leave \
                      w out (mabel waits for a majority) or give a number of members"
                .to_string(),
        });
    }
    options.server_selection_timeout = Some(settings.retry_wait);
    options.write_concern = Some(write_concern(
        options.write_concern.take(),
        settings.write_concern.as_ref(),
    ));
    Ok(options)
}

fn audit_options(settings: &AuditSettings) -> Result<ClientOptions, BadUri> {
    let mut options = options(&settings.uri, settings.uri_from)?;
    options.server_selection_timeout.get_or_insert(AUDIT_WAIT);
    options
        .read_concern
        .get_or_insert_with(ReadConcern::majority);
    options
        .selection_criteria
        .get_or_insert(SelectionCriteria::ReadPreference(
            ReadPreference::PrimaryPreferred {
                options: Default::default(),
            },
        ));
    Ok(options)
}

/// `w: "majority", j: true` unless told otherwise: a write acknowledged by one member can be
/// rolled back when a failover elects a member that never saw it.
fn write_concern(from_uri: Option<WriteConcern>, from_flag: Option<&WaitFor>) -> WriteConcern {
    let from_uri = from_uri.unwrap_or_default();
    let w = match from_flag {
        Some(WaitFor::Majority) => Acknowledgment::Majority,
        Some(WaitFor::Members(n)) => Acknowledgment::Nodes(*n),
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
        run_options(&settings).map_err(|e| e.to_string())
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

    fn audit_options_for(uri: &str) -> ClientOptions {
        let audit = cli::Audit::from_args(&["audit"], &["--uri", uri]).unwrap();
        audit_options(&AuditSettings::from_args(audit, None).unwrap()).unwrap()
    }

    #[test]
    fn audits_read_majority_committed_breaths_from_the_primary_if_any() {
        let options = audit_options_for("mongodb://a:1/?replicaSet=rs0");
        assert_eq!(options.read_concern, Some(ReadConcern::majority()));
        assert!(matches!(
            options.selection_criteria,
            Some(SelectionCriteria::ReadPreference(
                ReadPreference::PrimaryPreferred { .. }
            ))
        ));
        assert_eq!(options.server_selection_timeout, Some(AUDIT_WAIT));
        assert_eq!(options.heartbeat_freq, Some(HEARTBEAT));

        let uri = "mongodb://a:1/?readConcernLevel=local&serverSelectionTimeoutMS=500";
        let options = audit_options_for(uri);
        assert_eq!(options.read_concern, Some(ReadConcern::local()));
        assert_eq!(
            options.server_selection_timeout,
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn a_malformed_uri_is_refused_with_the_flag_named() {
        let err = options_for(&["--uri", "mongo://nowhere"]).unwrap_err();
        assert!(err.starts_with("--uri: "), "{err}");
    }

    #[test]
    fn w_0_is_refused_unless_the_flag_overrides_it() {
        let err = options_for(&["--uri", "mongodb://a:1/?w=0"]).unwrap_err();
        assert!(
            err.starts_with("--uri: w=0 asks for no acknowledgement"),
            "{err}"
        );
        let options = options_for(&["--uri", "mongodb://a:1/?w=0", "--write-concern", "1"]);
        let wc = options.unwrap().write_concern.unwrap();
        assert_eq!(wc.w, Some(Acknowledgment::Nodes(1)));
    }
}
