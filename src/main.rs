//! mabel writes Mabel the diving monkey's breaths to a MongoDB replica set, one a second, and
//! keeps writing through a primary failover without losing or doubling one.
//!
//! `run` below is the seed's loop: sleep, measure a breath, hand it on. Without `--spool` the
//! breath goes straight to `Writer::write`, the seed's attempt loop, which asks `retry` what
//! each result means and how hard to go on trying. With `--spool` it goes onto the spool
//! first, which a thread of its own drains through the same `Writer::write`, so that no breath
//! is lost when trying hard is not enough. `ARCHITECTURE.md` draws the whole of it.

mod audit;
mod breath;
mod cli;
mod client;
mod config;
mod contact;
mod error;
mod input;
mod output;
mod retry;
mod spool;
mod stop;
mod tally;
mod target;
#[cfg(test)]
mod test_errors;
mod wording;

use std::io::{self, Write};
use std::process::ExitCode;
use std::thread;
use std::time::Instant;

use bson::oid::ObjectId;
use bson::Document;
use log::warn;
use mongodb::sync::Collection;

use breath::Breath;
use client::LastPrimary;
use config::{AuditSettings, Settings};
use error::{Error, Failure};
use retry::{Policy, Proof, Rest};
use spool::{Drain, Spool};
use stop::Stop;
use tally::{Tally, Written};
use target::{Target, Unchecked};

fn main() -> ExitCode {
    let logging = input::environment("RUST_LOG").map(|_| init_logging());
    match logging.and_then(|()| try_main()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            output::error_line(format!("error: {error}"));
            ExitCode::from(error.exit_code())
        }
    }
}

fn try_main() -> Result<(), Error> {
    let args = input::arguments()?;
    let Some(command) = parse(&args)? else {
        return Ok(());
    };
    let env_uri = input::environment("MONGODB_URI")?;
    match command {
        cli::Command::Run(args) => {
            let settings = Settings::from_args(args, env_uri)?;
            run(&settings)
        }
        cli::Command::Audit(args) => {
            let settings = AuditSettings::from_args(args, env_uri)?;
            audit(&settings)
        }
    }
}

/// Reads the breaths back and says what it found; something lost or doubled is an error.
fn audit(settings: &AuditSettings) -> Result<(), Error> {
    let db = client::audited(settings)?;
    let report = audit::audit(&db, settings).map_err(|e| Error::CouldntRead {
        namespace: format!("{}.{}", settings.db, settings.collection),
        error: wording::describe_read(&e),
    })?;
    let printed = match settings.json {
        true => output::line(report.json()),
        false => output::text(&report.human()),
    };
    printed.map_err(Error::Print)?;
    match report.is_clean() {
        true => Ok(()),
        false => Err(Error::Found(report.verdict())),
    }
}

/// The seed's loop: sleep, measure a breath, hand it on; until `--count` breaths are
/// measured and each is written (with a spool, every breath it holds), or a signal.
fn run(settings: &Settings) -> Result<(), Error> {
    let breaths = client::breaths(settings)?;
    let spool_path = settings
        .spool
        .as_ref()
        .map(|spooling| spooling.path.clone());
    let stop = Stop::install(breaths.contact.clone(), spool_path).map_err(Error::Signals)?;
    breaths
        .contact
        .say_if_silent(breaths.hosts.clone(), settings.retry_wait);
    let policy = Policy {
        attempts: settings.attempts,
        retry_wait: settings.retry_wait,
    };
    let writer = Writer {
        target: Target::new(breaths.db, breaths.collection.clone()),
        breaths: breaths.collection,
        primary: breaths.primary,
        policy,
        stop: stop.clone(),
        tally: Tally::default(),
        last: None,
        stdout: None,
    };
    // Opened before anything is written: a spool in use or damaged stops mabel first.
    let mut breaths_to = match &settings.spool {
        None => Destination::Writer(writer),
        Some(spooling) => {
            let spool = Spool::open(&spooling.path, spooling.max_bytes).map_err(Error::BadSpool)?;
            Destination::Spool(Drain::start(spool, writer, spooling.batch)?)
        }
    };
    let mut measured = 0;
    let stopped_by = loop {
        if settings.count == Some(measured) {
            break None;
        }
        if let Some(signal) = stop.sleep(settings.interval) {
            break Some(signal);
        }
        let breath = Breath::new();
        match &mut breaths_to {
            Destination::Writer(writer) => {
                let (_, result) = writer.write(&[breath], false);
                result.map_err(Error::from)?;
            }
            Destination::Spool(spool) => spool.push(&breath)?,
        }
        measured += 1;
    };
    let writer = match breaths_to {
        Destination::Writer(writer) => writer,
        Destination::Spool(spool) => spool.finish(stopped_by)?,
    };
    writer.conclude(stopped_by)
}

/// Where each breath measured goes.
enum Destination {
    /// Straight to the writer, as in the seed: the next breath waits until it is written.
    Writer(Writer),
    /// Onto the spool, on disk, which a thread of its own drains through the same writer.
    Spool(Drain),
}

/// Writes breaths, says so on stdout, and keeps the tally of the run.
struct Writer {
    /// Looked up before the first insert (`target`).
    target: Target,
    breaths: Collection<Document>,
    primary: LastPrimary,
    policy: Policy,
    stop: Stop,
    tally: Tally,
    /// The last breath written, which a stdout that fails is told of.
    last: Option<Breath>,
    /// The first failure to print a line: nothing more is printed, and mabel stops.
    stdout: Option<io::Error>,
}

impl Writer {
    /// The seed's attempt loop, for one breath or a batch of the spool's oldest. Returns the
    /// breaths written, in the order given, whatever became of the others, and why those are
    /// not written. `sent_before` says an earlier run may have written them already.
    fn write(
        &mut self,
        batch: &[Breath],
        sent_before: bool,
    ) -> (Vec<ObjectId>, Result<(), Failure>) {
        let started = Instant::now();
        let attempts = self.policy.attempts;
        let (mut left, mut written, mut last) = (batch.to_vec(), Vec::new(), None);
        self.stop.in_flight(batch.first().map(|breath| breath.id));
        for attempt in 1..=attempts {
            let tried = Instant::now();
            let result = match self.target.check() {
                Ok(()) => self.insert(&left),
                Err(Unchecked::Failed(error)) => Err(error),
                Err(Unchecked::Unfit(unfit)) => {
                    let breath = left[0].id;
                    return (written, Err(Failure::Unfit { breath, unfit }));
                }
            };
            let (wrote, rest) = retry::judge(result, left, sent_before || attempt > 1);
            written.extend(self.say_written(&wrote, attempt, started));
            self.stop.in_flight(rest.oldest().map(|breath| breath.id));
            let error = match rest {
                // Inserted, or already written: "It worked the first time".
                Rest::Nothing => return (written, Ok(())),
                Rest::Refused {
                    breath,
                    reason,
                    error,
                } => {
                    let breath = breath.id;
                    let refused = Failure::Refused {
                        breath,
                        attempt,
                        reason,
                        error,
                    };
                    return (written, Err(refused));
                }
                Rest::Retry { breaths, error } => {
                    left = breaths;
                    error
                }
            };
            let (_, error) = last.insert((attempt, error));
            let Some(pause) = self
                .policy
                .pause(attempt, tried.elapsed(), started.elapsed())
            else {
                break;
            };
            let error = wording::describe(error);
            warn!("Warning {error} (attempt {attempt} of {attempts})");
            thread::sleep(pause);
        }
        // The seed's `else: raise Exception("Couldn't write!")`.
        let gave_up = Failure::GaveUp {
            breath: left[0].id,
            waited: started.elapsed(),
            last,
        };
        (written, Err(gave_up))
    }

    /// One attempt: every breath of the batch in one unordered insert, so that one refused
    /// breath does not hold back the others. `insert_many` even for one breath: its error keeps
    /// the write errors and the write concern error of the reply together (ARCHITECTURE.md,
    /// "What counts as proof").
    fn insert(&self, batch: &[Breath]) -> Result<(), mongodb::error::Error> {
        self.breaths
            .insert_many(batch.iter().map(Breath::to_document))
            .ordered(false)
            .run()
            .map(drop)
    }

    /// Says what an attempt wrote: the `wrote` line of each breath, in the order measured,
    /// and to the tally one group per kind of proof, which may make an incident of it. Returns
    /// the breaths written.
    fn say_written(
        &mut self,
        wrote: &[(Breath, Proof)],
        attempt: u32,
        started: Instant,
    ) -> Vec<ObjectId> {
        for (breath, proof) in wrote {
            self.say(wrote_line(breath, attempt, *proof == Proof::AlreadyWritten));
        }
        if let Some((breath, _)) = wrote.last() {
            self.last = Some(breath.clone());
        }
        let primary = self.primary.get();
        for proof in [Proof::Inserted, Proof::AlreadyWritten] {
            let ids: Vec<ObjectId> = wrote
                .iter()
                .filter(|(_, p)| *p == proof)
                .map(|(breath, _)| breath.id)
                .collect();
            let written = Written {
                attempts: attempt,
                already_written: proof == Proof::AlreadyWritten,
                waited: started.elapsed(),
            };
            if let Some(incident) = self.tally.add(&ids, &written, primary.as_ref()) {
                self.say(incident);
            }
        }
        wrote.iter().map(|(breath, _)| breath.id).collect()
    }

    /// Prints a line on stdout, unless a line has failed already. The first that fails stops
    /// mabel as a first signal does: the breath in flight is finished, and `conclude` names
    /// the last breath written.
    fn say(&mut self, line: impl std::fmt::Display) {
        if self.stdout.is_some() {
            return;
        }
        if let Err(error) = output::line(line) {
            self.stdout = Some(error);
            self.stop.stdout_failed();
        }
    }

    /// Whether stdout has failed, so that no more breaths should be written.
    fn stdout_failed(&self) -> bool {
        self.stdout.is_some()
    }

    /// Ends the run with its summary, `stopped_by` a signal or not; or, if stdout failed, with
    /// the error that names the last breath written.
    fn conclude(mut self, stopped_by: Option<&str>) -> Result<(), Error> {
        let summary = self.tally.summary(stopped_by);
        self.say(summary);
        match self.stdout {
            None => Ok(()),
            Some(error) => Err(Error::PrintBreath {
                error,
                last: self.last,
            }),
        }
    }
}

/// The `wrote` line: what a person, and the tests, read as "this breath is in the database".
fn wrote_line(breath: &Breath, attempts: u32, already_written: bool) -> String {
    format!(
        "wrote {} time {} oxygen {:.4} attempts {attempts}{}",
        breath.id,
        breath.time.format(breath::TIME_FORMAT),
        breath.oxygen,
        if already_written {
            " (already written)"
        } else {
            ""
        },
    )
}

/// Parses the command line. `--help` (or `-h`) and `--version` print their text and ask for
/// nothing more: `None`.
fn parse(args: &[String]) -> Result<Option<cli::Command>, Error> {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (name, rest) = strs.split_first().unwrap_or((&"mabel", &[]));
    if rest == ["--version"] {
        let version = format!("mabel {}", env!("CARGO_PKG_VERSION"));
        output::line(version).map_err(Error::Print)?;
        return Ok(None);
    }
    let parsed = <cli::Mabel as argh::FromArgs>::from_args(&[name], rest);
    // argh knows `--help` only; `-h` is asked for again as `--help` where argh found no value
    // that takes it.
    let parsed = match parsed {
        Err(exit) if exit.status.is_err() && rest.contains(&"-h") => {
            let helped: Vec<&str> = rest
                .iter()
                .map(|&arg| if arg == "-h" { "--help" } else { arg })
                .collect();
            <cli::Mabel as argh::FromArgs>::from_args(&[name], &helped)
        }
        parsed => parsed,
    };
    match parsed {
        Ok(mabel) => Ok(Some(mabel.command)),
        Err(exit) if exit.status.is_ok() => {
            output::text(&exit.output).map_err(Error::Print)?;
            Ok(None)
        }
        Err(exit) => {
            let message = exit.output.trim().replace('\n', " ");
            Err(Error::BadInput(wording::cut(&message)))
        }
    }
}

/// Warnings and above by default (`RUST_LOG` changes it), one line each, timestamped so a
/// failover can be read against the breaths on stdout.
fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format(|buf, record| {
            let time = chrono::Utc::now().format(breath::TIME_FORMAT);
            match record.level() {
                log::Level::Warn => writeln!(buf, "{time} {}", record.args()),
                level => writeln!(buf, "{time} {level} {}", record.args()),
            }
        })
        .init();
}
