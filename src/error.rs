//! Why mabel stopped early, and the exit code each reason gets.
//!
//! One error type for the whole program, so that `main` alone turns a reason into an exit
//! code and the one `error:` line on stderr, and a shell script can tell bad input (2) from a
//! breath not written (1) from an audit that could not read (3) from a stdout that could not
//! be written (4).

use std::fmt;
use std::io;
use std::time::Duration;

use bson::oid::ObjectId;

use crate::breath::Breath;
use crate::client::BadUri;
use crate::config::ConfigError;
use crate::spool;
use crate::target::Unfit;
use crate::wording::{count, describe};

/// Why mabel stopped early.
#[derive(Debug)]
pub enum Error {
    /// A flag, the URI or the environment is wrong: nothing was tried.
    BadInput(String),
    /// A breath could not be written: Mabel's record is not in the database.
    CouldntWrite(Failure),
    /// The collection cannot hold breaths safely: nothing was written.
    Unfit(Unfit),
    /// SIGINT and SIGTERM could not be taken over.
    Signals(io::Error),
    /// The thread that drains the spool could not be started: nothing was written.
    SpoolThread(io::Error),
    /// The spool cannot be used (locked, not a spool, damaged): nothing was tried.
    BadSpool(spool::Error),
    /// The spool could not take a breath or be written to: that breath is not kept.
    Spool(spool::Error),
    /// The audit found breaths lost or doubled.
    Found(String),
    /// The audit could not read the breaths: no member answered, or a read failed.
    CouldntRead { namespace: String, error: String },
    /// Stdout could not be written: a report or a help text is cut short.
    Print(io::Error),
    /// A `wrote` line, or the summary, could not be written: mabel stopped, and `last` is
    /// the last breath it wrote, if any.
    PrintBreath {
        error: io::Error,
        last: Option<Breath>,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::CouldntWrite(_)
            | Error::Spool(_)
            | Error::Signals(_)
            | Error::SpoolThread(_)
            | Error::Found(_) => 1,
            Error::BadInput(_) | Error::BadSpool(_) | Error::Unfit(_) => 2,
            Error::CouldntRead { .. } => 3,
            Error::Print(_) | Error::PrintBreath { .. } => 4,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Error {
        Error::BadInput(error.to_string())
    }
}

impl From<BadUri> for Error {
    fn from(error: BadUri) -> Error {
        Error::BadInput(error.to_string())
    }
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Error {
        match failure {
            Failure::Unfit { unfit, .. } => Error::Unfit(unfit),
            failure => Error::CouldntWrite(failure),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadInput(message) => write!(f, "{message}"),
            Error::CouldntWrite(failure) => {
                write!(f, "couldn't write breath {}: {failure}", failure.breath())
            }
            Error::Unfit(unfit) => write!(f, "{unfit}"),
            Error::BadSpool(error) | Error::Spool(error) => write!(f, "{error}"),
            Error::Signals(error) => write!(f, "couldn't watch for SIGINT and SIGTERM: {error}"),
            Error::SpoolThread(error) => {
                write!(f, "couldn't start writing from the spool: {error}")
            }
            Error::Found(verdict) => write!(f, "the audit found {verdict}"),
            Error::CouldntRead { namespace, error } => {
                write!(f, "couldn't read {namespace}: {error}")
            }
            Error::Print(error) => write!(f, "couldn't print to stdout: {error}"),
            Error::PrintBreath { error, last } => {
                write!(f, "couldn't print to stdout: {error}; mabel stopped")?;
                match last {
                    Some(breath) => {
                        write!(f, ", and the last breath it wrote is {}", breath.named())
                    }
                    None => write!(f, " before writing any breath"),
                }
            }
        }
    }
}

impl std::error::Error for Error {}

/// Why a breath is not in the database, as far as mabel can tell.
#[derive(Debug)]
pub enum Failure {
    /// Every attempt failed with a transient error, or the deadline passed.
    GaveUp {
        breath: ObjectId,
        waited: Duration,
        /// The number of the last attempt, and its error; none only if no attempt was
        /// allowed, which `--attempts` rules out.
        last: Option<(u32, mongodb::error::Error)>,
    },
    /// An error that retrying cannot mend.
    Refused {
        breath: ObjectId,
        attempt: u32,
        reason: &'static str,
        error: mongodb::error::Error,
    },
    /// The collection, looked up before the first insert, cannot hold breaths safely.
    Unfit { breath: ObjectId, unfit: Unfit },
}

impl Failure {
    /// The breath that is not written: the one refused, or the oldest of those given up on.
    pub fn breath(&self) -> ObjectId {
        match self {
            Failure::GaveUp { breath, .. }
            | Failure::Refused { breath, .. }
            | Failure::Unfit { breath, .. } => *breath,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::GaveUp { waited, last, .. } => {
                let attempts = last.as_ref().map_or(0, |(attempt, _)| *attempt);
                let waited = waited.as_secs_f64();
                let attempts = count(attempts, "attempt");
                write!(f, "gave up after {attempts} in {waited:.1} s")?;
                match last {
                    Some((_, error)) => write!(f, "; last error: {}", describe(error)),
                    None => Ok(()),
                }
            }
            Failure::Refused {
                attempt,
                reason,
                error,
                ..
            } => write!(
                f,
                "{reason} (attempt {attempt}, not retried): {}",
                describe(error)
            ),
            Failure::Unfit { unfit, .. } => write!(f, "{unfit}"),
        }
    }
}

impl std::error::Error for Failure {}
