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
mod error;
mod retry;
mod spool;
mod stop;
mod tally;
mod wording;

use std::io::Write;
use std::process::ExitCode;
use std::thread;
use std::time::Instant;

use bson::oid::ObjectId;
use bson::Document;
use log::warn;
use mongodb::options::ServerAddress;
use mongodb::sync::Collection;

use breath::Breath;
use client::LastPrimary;
use config::{AuditSettings, Settings};
use error::{Error, Failure};
use retry::{Policy, Verdict};
use spool::Spool;
use stop::Stop;
use tally::{Tally, Written};

fn main() -> ExitCode {
    init_logging();
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn try_main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let Some(command) = parse(&args)? else {
        return Ok(());
    };
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
    let db = client::audited(settings).map_err(|e| Error::BadInput(e.to_string()))?;
    let report = audit::audit(&db, settings).map_err(|e| Error::CouldntRead {
        namespace: format!("{}.{}", settings.db, settings.collection),
        error: wording::describe_read(&e),
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
        writer.index_for_the_audit();
        let (interval, count, batch) = (settings.interval, settings.count, spooling.batch);
        let (writer, stopped_by) =
            spool::run(spool, interval, count, batch, &stop, writer, Writer::write)?;
        println!("{}", writer.tally.summary(stopped_by));
        return Ok(());
    }
    writer.index_for_the_audit();
    let stopped_by = loop {
        if let Some(signal) = stop.sleep(settings.interval) {
            break Some(signal);
        }
        let breath = Breath::new();
        writer
            .write(&mut vec![breath], false)
            .map_err(Error::CouldntWrite)?;
        if settings.count == Some(writer.tally.written()) {
            break None;
        }
    };
    println!("{}", writer.tally.summary(stopped_by));
    Ok(())
}

/// Writes breaths and keeps the tally of the run.
struct Writer {
    breaths: Collection<Document>,
    primary: LastPrimary,
    policy: Policy,
    stop: Stop,
    tally: Tally,
}

impl Writer {
    /// The seed's attempt loop, for one breath or a batch of the spool's oldest: insert, and on
    /// an error ask the policy what it means. Each breath is printed and leaves `batch` once
    /// it is in the database; on an error, what is left in `batch` is not written.
    /// `sent_before` says an earlier run may have written these breaths already.
    fn write(&mut self, batch: &mut Vec<Breath>, sent_before: bool) -> Result<(), Failure> {
        let started = Instant::now();
        let mut before = self.primary.get();
        self.stop.in_flight(batch.first().map(|breath| breath.id));
        let attempts = self.policy.attempts;
        let (made, last) = 'attempts: {
            for attempt in 1..=attempts {
                let tried = Instant::now();
                let error = match self.insert(batch) {
                    Ok(()) => {
                        let verdicts = vec![Verdict::Inserted; batch.len()];
                        self.settle(batch, &verdicts, attempt, started, &mut before);
                        return Ok(());
                    }
                    Err(error) => error,
                };
                let verdicts = retry::classify(&error, batch.len(), sent_before || attempt > 1);
                match self.settle(batch, &verdicts, attempt, started, &mut before) {
                    Some((breath, reason)) => {
                        return Err(Failure::Refused {
                            breath,
                            attempt,
                            reason,
                            error,
                        })
                    }
                    // Already written: "It worked the first time".
                    None if batch.is_empty() => return Ok(()),
                    None => {}
                }
                let Some(pause) = self
                    .policy
                    .pause(attempt, tried.elapsed(), started.elapsed())
                else {
                    break 'attempts (attempt, error);
                };
                warn!(
                    "Warning {} (attempt {attempt} of {attempts})",
                    wording::describe(&error)
                );
                thread::sleep(pause);
            }
            unreachable!("--attempts is at least 1, and the policy stops at the last attempt")
        };
        // The seed's `else: raise Exception("Couldn't write!")`.
        Err(Failure::GaveUp {
            breath: batch[0].id,
            attempts: made,
            waited: started.elapsed(),
            last,
        })
    }

    /// Creates the index `mabel audit` reads a year of breaths by, if it is missing. Breathing
    /// does not need it, so a failure (no primary yet, no right to create indexes) is only
    /// a warning.
    fn index_for_the_audit(&self) {
        if let Err(error) = self.breaths.create_index(audit::index()).run() {
            warn!(
                "couldn't create the index mabel audit sorts by, so an audit of many breaths \
                 may be slow: {}",
                wording::describe(&error)
            );
        }
    }

    /// One attempt: every breath of the batch in one unordered insert, so that one refused
    /// breath does not hold back the others. `insert_many` even for one breath: its error keeps
    /// the write errors and the write concern error of the reply together (see `retry`).
    fn insert(&self, batch: &[Breath]) -> Result<(), mongodb::error::Error> {
        self.breaths
            .insert_many(batch.iter().map(Breath::to_document))
            .ordered(false)
            .run()
            .map(drop)
    }

    /// Takes the breaths that `verdicts` say are written out of `batch`, prints each, and
    /// tells the tally, which may make an incident of them. Returns the first breath refused
    /// for good, if any, and why.
    fn settle(
        &mut self,
        batch: &mut Vec<Breath>,
        verdicts: &[Verdict],
        attempt: u32,
        started: Instant,
        before: &mut Option<ServerAddress>,
    ) -> Option<(ObjectId, &'static str)> {
        let refused = batch
            .iter()
            .zip(verdicts)
            .find_map(|(breath, verdict)| match verdict {
                Verdict::Fatal(reason) => Some((breath.id, *reason)),
                _ => None,
            });
        // Printed in the order measured; told to the tally as one group per kind of proof.
        let mut inserted = Vec::new();
        let mut already_written = Vec::new();
        for (breath, verdict) in batch.iter().zip(verdicts) {
            let group = match verdict {
                Verdict::Inserted => &mut inserted,
                Verdict::AlreadyWritten => &mut already_written,
                _ => continue,
            };
            print_written(breath, attempt, *verdict == Verdict::AlreadyWritten);
            group.push(breath.id);
        }
        let now = self.primary.get();
        for (ids, already_written) in [(inserted, false), (already_written, true)] {
            let written = Written {
                attempts: attempt,
                already_written,
                waited: started.elapsed(),
            };
            if let Some(incident) = self
                .tally
                .add(&ids, &written, before.as_ref(), now.as_ref())
            {
                println!("{incident}");
            }
            if !ids.is_empty() {
                *before = now.clone();
            }
        }
        let mut verdicts = verdicts.iter();
        batch.retain(|_| !verdicts.next().is_some_and(|v| v.is_written()));
        self.stop.in_flight(batch.first().map(|breath| breath.id));
        refused
    }
}

/// The `wrote` line: what a person, and the tests, read as "this breath is in the database".
fn print_written(breath: &Breath, attempts: u32, already_written: bool) {
    println!(
        "wrote {} time {} oxygen {:.4} attempts {attempts}{}",
        breath.id,
        breath.time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        breath.oxygen,
        if already_written {
            " (already written)"
        } else {
            ""
        },
    );
}

/// Parses the command line. `--help` prints its text and asks for nothing more: `None`.
fn parse(args: &[String]) -> Result<Option<cli::Command>, Error> {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (name, rest) = strs.split_first().unwrap_or((&"mabel", &[]));
    match <cli::Mabel as argh::FromArgs>::from_args(&[name], rest) {
        Ok(mabel) => Ok(Some(mabel.command)),
        Err(exit) if exit.status.is_ok() => {
            print!("{}", exit.output);
            Ok(None)
        }
        Err(exit) => Err(Error::BadInput(exit.output.trim().replace('\n', " "))),
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
