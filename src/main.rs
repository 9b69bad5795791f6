//! mabel writes Mabel the diving monkey's breaths to a MongoDB replica set, one a second, and
//! keeps writing through a primary failover without losing or doubling one.
//!
//! `run` below is the seed's loop: sleep, measure a breath, try hard to write it, say so.
//! Everything that decides how hard to try lives in `retry`; with `--spool`, `spool` runs the
//! loop instead, so that no breath is lost when trying hard is not enough.

mod audit;
mod breath;
mod cli;
mod client;
mod config;
mod retry;
mod spool;
mod stop;
mod tally;

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

use bson::oid::ObjectId;
use bson::Document;
use log::warn;
use mongodb::sync::Collection;

use breath::Breath;
use client::LastPrimary;
use config::{AuditSettings, Settings};
use retry::{Policy, SystemClock};
use spool::Spool;
use stop::Stop;
use tally::Tally;

fn main() -> ExitCode {
    init_logging();
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Help) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn try_main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let command = parse(&args)?;
    match command {
        cli::Command::Run(args) => {
            let settings = Settings::from_args(args, std::env::var("MONGODB_URI").ok())
                .map_err(|e| Error::BadInput(e.to_string()))?;
            run(&settings)
        }
        cli::Command::Audit(args) => {
            let settings = AuditSettings::from_args(args, std::env::var("MONGODB_URI").ok())
                .map_err(|e| Error::BadInput(e.to_string()))?;
            audit(&settings)
        }
    }
}

/// Reads the breaths back and says what it found; something lost or doubled is an error.
fn audit(settings: &AuditSettings) -> Result<(), Error> {
    let breaths = client::audited(settings).map_err(|e| Error::BadInput(e.to_string()))?;
    let report = audit::audit(&breaths, settings).map_err(|e| Error::CouldntRead {
        namespace: format!("{}.{}", settings.db, settings.collection),
        error: audit::describe(&e),
    })?;
    match settings.json {
        true => println!("{}", report.json()),
        false => print!("{}", report.human()),
    }
    match report.is_clean() {
        true => Ok(()),
        false => Err(Error::Found(report.verdict())),
    }
}

/// The seed's loop, until `--count` breaths or a signal; with `--spool`, the spool's.
fn run(settings: &Settings) -> Result<(), Error> {
    let (breaths, primary) =
        client::breaths(settings).map_err(|e| Error::BadInput(e.to_string()))?;
    let stop = Stop::install().map_err(Error::Signals)?;
    let mut writer = Writer {
        breaths,
        primary,
        policy: Policy {
            attempts: settings.attempts,
            retry_wait: settings.retry_wait,
        },
        stop: stop.clone(),
        tally: Tally::default(),
    };
    if let Some(spooling) = &settings.spool {
        let spool = Spool::open(&spooling.path, spooling.max_bytes).map_err(Error::BadSpool)?;
        let (interval, count) = (settings.interval, settings.count);
        let (writer, stopped_by) =
            spool::run(spool, interval, count, &stop, writer, Writer::write)?;
        println!("{}", writer.tally.summary(stopped_by));
        return Ok(());
    }
    let stopped_by = loop {
        if let Some(signal) = stop.sleep(settings.interval) {
            break Some(signal);
        }
        let breath = Breath::new();
        writer
            .write(&breath, false)
            .map_err(|failure| Error::CouldntWrite {
                id: breath.id,
                failure,
            })?;
        if settings.count == Some(writer.tally.written()) {
            break None;
        }
    };
    println!("{}", writer.tally.summary(stopped_by));
    Ok(())
}

/// Writes breaths one at a time and keeps the tally of the run.
struct Writer {
    breaths: Collection<Document>,
    primary: LastPrimary,
    policy: Policy,
    stop: Stop,
    tally: Tally,
}

impl Writer {
    /// Writes one breath, trying as hard as the policy says, and once it is in prints it, and
    /// an incident line if it was one. `sent_before` is for a breath an earlier run may have
    /// written (see `retry::insert`).
    fn write(&mut self, breath: &Breath, sent_before: bool) -> Result<(), retry::Failure> {
        let before = self.primary.get();
        self.stop.in_flight(Some(breath.id));
        let attempts = self.policy.attempts;
        let written = retry::insert(
            &self.policy,
            &mut SystemClock,
            sent_before,
            || {
                self.breaths
                    .insert_one(breath.to_document())
                    .run()
                    .map(drop)
            },
            |attempt, error| {
                let error = retry::describe(error);
                warn!("Warning {error} (attempt {attempt} of {attempts})")
            },
        )?;
        self.stop.in_flight(None);
        println!(
            "wrote {} time {} oxygen {:.4} attempts {}{}",
            breath.id,
            breath.time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            breath.oxygen,
            written.attempts,
            if written.already_written {
                " (already written)"
            } else {
                ""
            },
        );
        let now = self.primary.get();
        let incident = self
            .tally
            .add(breath.id, &written, before.as_ref(), now.as_ref());
        if let Some(incident) = incident {
            println!("{incident}");
        }
        Ok(())
    }
}

/// Parses the command line; `--help` is an early exit, not an error.
fn parse(args: &[String]) -> Result<cli::Command, Error> {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (name, rest) = strs.split_first().unwrap_or((&"mabel", &[]));
    match <cli::Mabel as argh::FromArgs>::from_args(&[name], rest) {
        Ok(mabel) => Ok(mabel.command),
        Err(exit) if exit.status.is_ok() => {
            print!("{}", exit.output);
            Err(Error::Help)
        }
        Err(exit) => Err(Error::BadInput(exit.output.trim().replace('\n', " "))),
    }
}

/// Why mabel stopped early. `main` alone turns this into an exit code.
#[derive(Debug)]
enum Error {
    /// `--help` was asked for and printed.
    Help,
    /// A flag, the URI or the environment is wrong: nothing was tried.
    BadInput(String),
    /// A breath could not be written: Mabel's record is not in the database.
    CouldntWrite {
        id: ObjectId,
        failure: retry::Failure,
    },
    /// SIGINT and SIGTERM could not be taken over.
    Signals(io::Error),
    /// The spool cannot be used (locked, not a spool, damaged): nothing was tried.
    BadSpool(spool::Error),
    /// The spool could not take a breath or be written to: that breath is not kept.
    Spool(spool::Error),
    /// The audit found breaths lost or doubled.
    Found(String),
    /// The audit could not read the breaths: no member answered, or a read failed.
    CouldntRead { namespace: String, error: String },
}

impl From<spool::Stopped> for Error {
    fn from(stopped: spool::Stopped) -> Error {
        match stopped {
            spool::Stopped::Spool(error) => Error::Spool(error),
            spool::Stopped::Refused { id, failure } => Error::CouldntWrite { id, failure },
        }
    }
}

impl Error {
    fn exit_code(&self) -> u8 {
        match self {
            Error::Help => 0,
            Error::CouldntWrite { .. } | Error::Spool(_) | Error::Signals(_) | Error::Found(_) => 1,
            Error::BadInput(_) | Error::BadSpool(_) => 2,
            Error::CouldntRead { .. } => 3,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Help => Ok(()),
            Error::BadInput(message) => write!(f, "{message}"),
            Error::CouldntWrite { id, failure } => {
                write!(f, "couldn't write breath {id}: {failure}")
            }
            Error::BadSpool(error) | Error::Spool(error) => write!(f, "{error}"),
            Error::Signals(error) => write!(f, "couldn't watch for SIGINT and SIGTERM: {error}"),
            Error::Found(verdict) => write!(f, "the audit found {verdict}"),
            Error::CouldntRead { namespace, error } => {
                write!(f, "couldn't read {namespace}: {error}")
            }
        }
    }
}

/// Warnings and above by default (`RUST_LOG` changes it), one line each, timestamped so a
/// failover can be read against the breaths on stdout.
fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format(|buf, record| {
            let time = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
            match record.level() {
                log::Level::Warn => writeln!(buf, "{time} {}", record.args()),
                level => writeln!(buf, "{time} {level} {}", record.args()),
            }
        })
        .init();
}
