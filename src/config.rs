//! Turns the raw flags and `MONGODB_URI` into settings the rest of the program can trust.
//!
//! Every check on user input happens here, once, so that a bad value stops the program before
//! it connects to anything, with a message that names the flag.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{cli, spool};

/// Where mabel writes when neither `--uri` nor `MONGODB_URI` says otherwise: the three-member
/// set that `docker-compose.yml` starts.
pub const DEFAULT_URI: &str =
    "mongodb://127.0.0.1:27017,127.0.0.1:27018,127.0.0.1:27019/?replicaSet=rs0";

/// Everything `mabel run` needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub uri: String,
    pub db: String,
    pub collection: String,
    pub interval: Duration,
    pub attempts: u32,
    pub retry_wait: Duration,
    pub count: Option<u64>,
    pub write_concern: Option<WaitFor>,
    pub spool: Option<Spooling>,
}

/// Where breaths wait for the database, with `--spool`.
#[derive(Clone, Debug, PartialEq)]
pub struct Spooling {
    pub path: PathBuf,
    pub max_bytes: u64,
    /// The most waiting breaths sent in one insert.
    pub batch: usize,
}

/// Everything `mabel audit` needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditSettings {
    pub uri: String,
    pub db: String,
    pub collection: String,
    /// Breaths taken at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Breaths taken before this time.
    pub until: Option<DateTime<Utc>>,
    pub json: bool,
}

/// Whom a write waits for before it counts (the `w` of its write concern), as
/// `--write-concern` accepts it.
#[derive(Clone, Debug, PartialEq)]
pub enum WaitFor {
    /// A majority of the set's voting members.
    Majority,
    /// This many members, the primary included.
    Members(u32),
}

/// A flag whose value cannot be used.
#[derive(Debug, PartialEq)]
pub struct ConfigError {
    flag: &'static str,
    value: String,
    problem: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: {}", self.flag, self.value, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// `env_uri` is the value of `MONGODB_URI`, passed in so tests need not touch the
    /// environment.
    pub fn from_args(args: cli::Run, env_uri: Option<String>) -> Result<Settings, ConfigError> {
        Ok(Settings {
            uri: uri(args.uri, env_uri)?,
            db: name("--db", args.db)?,
            collection: name("--collection", args.collection)?,
            interval: seconds("--interval", args.interval)?,
            attempts: match args.attempts {
                0 => return Err(ConfigError::new("--attempts", "0", "must be at least 1")),
                n => n,
            },
            retry_wait: seconds("--retry-wait", args.retry_wait)?,
            count: match args.count {
                Some(0) if args.spool.is_none() => {
                    let problem = "must be at least 1 (0 is for writing what a --spool holds)";
                    return Err(ConfigError::new("--count", "0", problem));
                }
                n => n,
            },
            write_concern: args.write_concern.as_deref().map(wait_for).transpose()?,
            spool: spooling(args.spool, args.spool_max_bytes, args.batch)?,
        })
    }
}

impl AuditSettings {
    /// `env_uri` is the value of `MONGODB_URI`, as for `Settings`.
    pub fn from_args(
        args: cli::Audit,
        env_uri: Option<String>,
    ) -> Result<AuditSettings, ConfigError> {
        let since = args
            .since
            .as_deref()
            .map(|t| time("--since", t))
            .transpose()?;
        let until = args
            .until
            .as_deref()
            .map(|t| time("--until", t))
            .transpose()?;
        if let (Some(since), Some(until)) = (since, until) {
            if until <= since {
                return Err(ConfigError::new(
                    "--until",
                    args.until.unwrap_or_default(),
                    "must be later than --since",
                ));
            }
        }
        Ok(AuditSettings {
            uri: uri(args.uri, env_uri)?,
            db: name("--db", args.db)?,
            collection: name("--collection", args.collection)?,
            since,
            until,
            json: args.json,
        })
    }
}

impl ConfigError {
    fn new(flag: &'static str, value: impl ToString, problem: &'static str) -> ConfigError {
        ConfigError {
            flag,
            value: value.to_string(),
            problem,
        }
    }
}

/// `--uri`, else `MONGODB_URI`, else the compose set. The driver checks the rest when the
/// client is built.
fn uri(flag: Option<String>, env_uri: Option<String>) -> Result<String, ConfigError> {
    let uri = flag.or(env_uri).unwrap_or_else(|| DEFAULT_URI.to_string());
    if uri.trim().is_empty() {
        return Err(ConfigError::new("--uri", &uri, "must not be empty"));
    }
    Ok(uri)
}

/// An RFC 3339 time with its offset, as breaths are stored in UTC.
fn time(flag: &'static str, value: &str) -> Result<DateTime<Utc>, ConfigError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ConfigError::new(
                flag,
                value,
                "must be an RFC 3339 time such as 2026-11-25T16:00:00Z",
            )
        })
}

/// A positive, finite number of seconds; sub-second values are what keep tests fast.
fn seconds(flag: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value <= 0.0 {
        return Err(ConfigError::new(
            flag,
            value,
            "must be a number of seconds greater than zero",
        ));
    }
    Duration::try_from_secs_f64(value)
        .map_err(|_| ConfigError::new(flag, value, "is too large a number of seconds"))
}

/// Database and collection names: the server refuses an empty one, better to say so first.
fn name(flag: &'static str, value: String) -> Result<String, ConfigError> {
    if value.is_empty() || value.contains('\0') {
        return Err(ConfigError::new(
            flag,
            value,
            "must be a non-empty name without NUL",
        ));
    }
    Ok(value)
}

fn spooling(
    path: Option<PathBuf>,
    max_bytes: Option<u64>,
    batch: Option<usize>,
) -> Result<Option<Spooling>, ConfigError> {
    let Some(path) = path else {
        return match (max_bytes, batch) {
            (Some(max), _) => Err(ConfigError::new("--spool-max-bytes", max, "needs --spool")),
            (_, Some(n)) => Err(ConfigError::new("--batch", n, "needs --spool")),
            (None, None) => Ok(None),
        };
    };
    if path.as_os_str().is_empty() {
        return Err(ConfigError::new("--spool", "", "must be a file's path"));
    }
    let max_bytes = max_bytes.unwrap_or(spool::DEFAULT_MAX_BYTES);
    if max_bytes < spool::SMALLEST {
        return Err(ConfigError::new(
            "--spool-max-bytes",
            max_bytes,
            "must be at least 41, room for one breath",
        ));
    }
    let batch = batch.unwrap_or(spool::DEFAULT_BATCH);
    if !(1..=spool::LARGEST_BATCH).contains(&batch) {
        let problem = "must be from 1 to 100000, the most a server takes in one insert";
        return Err(ConfigError::new("--batch", batch, problem));
    }
    Ok(Some(Spooling {
        path,
        max_bytes,
        batch,
    }))
}

fn wait_for(value: &str) -> Result<WaitFor, ConfigError> {
    match value {
        "majority" => Ok(WaitFor::Majority),
        _ => match value.parse::<u32>() {
            Ok(n) if n > 0 => Ok(WaitFor::Members(n)),
            _ => Err(ConfigError::new(
                "--write-concern",
                value,
                "must be \"majority\" or a number of members of at least 1",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argh::FromArgs;

    fn parse(args: &[&str], env_uri: Option<&str>) -> Result<Settings, String> {
        let run = cli::Run::from_args(&["run"], args).map_err(|e| e.output)?;
        Settings::from_args(run, env_uri.map(String::from)).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_seed() {
        let s = parse(&[], None).unwrap();
        assert_eq!(s.uri, DEFAULT_URI);
        assert_eq!((s.db.as_str(), s.collection.as_str()), ("mabel", "breaths"));
        assert_eq!(s.interval, Duration::from_secs(1));
        assert_eq!(s.attempts, 60);
        assert_eq!(s.retry_wait, Duration::from_secs(5));
        assert_eq!(s.count, None);
        assert_eq!(s.write_concern, None);
        assert_eq!(s.spool, None);
    }

    #[test]
    fn uri_flag_beats_environment_which_beats_default() {
        let env = Some("mongodb://env:1/");
        assert_eq!(parse(&[], env).unwrap().uri, "mongodb://env:1/");
        let flagged = parse(&["--uri", "mongodb://flag:1/"], env).unwrap();
        assert_eq!(flagged.uri, "mongodb://flag:1/");
    }

    #[test]
    fn decimal_seconds_are_accepted() {
        let s = parse(&["--interval", "0.2", "--retry-wait", "0.5"], None).unwrap();
        assert_eq!(s.interval, Duration::from_millis(200));
        assert_eq!(s.retry_wait, Duration::from_millis(500));
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag) in [
            (&["--interval", "0"][..], "--interval"),
            (&["--interval", "-1"][..], "--interval"),
            (&["--interval", "NaN"][..], "--interval"),
            (&["--retry-wait", "inf"][..], "--retry-wait"),
            (&["--retry-wait", "1e300"][..], "--retry-wait"),
            (&["--attempts", "0"][..], "--attempts"),
            (&["--count", "0"][..], "--count"),
            (&["--write-concern", "0"][..], "--write-concern"),
            (&["--write-concern", "most"][..], "--write-concern"),
            (&["--db", ""][..], "--db"),
            (&["--uri", " "][..], "--uri"),
            (&["--spool", ""][..], "--spool"),
            (
                &["--spool", "s", "--spool-max-bytes", "40"][..],
                "--spool-max-bytes",
            ),
            (&["--spool-max-bytes", "100000"][..], "--spool-max-bytes"),
            (&["--spool", "s", "--batch", "0"][..], "--batch"),
            (&["--spool", "s", "--batch", "100001"][..], "--batch"),
            (&["--batch", "10"][..], "--batch"),
        ] {
            let err = parse(args, None).unwrap_err();
            assert!(err.starts_with(flag), "{args:?} gave {err:?}");
        }
    }

    #[test]
    fn a_spool_takes_a_batch_size_and_a_count_of_zero() {
        let s = parse(&["--spool", "s"], None).unwrap();
        assert_eq!(s.spool.unwrap().batch, spool::DEFAULT_BATCH);
        let s = parse(&["--spool", "s", "--batch", "1", "--count", "0"], None).unwrap();
        assert_eq!((s.spool.unwrap().batch, s.count), (1, Some(0)));
    }

    fn audit(args: &[&str]) -> Result<AuditSettings, String> {
        let audit = cli::Audit::from_args(&["audit"], args).map_err(|e| e.output)?;
        AuditSettings::from_args(audit, None).map_err(|e| e.to_string())
    }

    #[test]
    fn audit_windows_are_rfc_3339_times() {
        let s = audit(&["--since", "2026-11-25T17:00:00+01:00"]).unwrap();
        assert_eq!(s.since.unwrap().to_rfc3339(), "2026-11-25T16:00:00+00:00");
        assert_eq!(s.until, None);
        for (args, flag) in [
            (&["--since", "yesterday"][..], "--since"),
            (&["--since", "2026-11-25"][..], "--since"),
            (&["--until", "2026-11-25T16:00:00"][..], "--until"),
            (
                &[
                    "--since",
                    "2026-11-25T16:00:00Z",
                    "--until",
                    "2026-11-25T16:00:00Z",
                ][..],
                "--until",
            ),
            (&["--collection", ""][..], "--collection"),
        ] {
            let err = audit(args).unwrap_err();
            assert!(err.starts_with(flag), "{args:?} gave {err:?}");
        }
    }

    #[test]
    fn the_spool_is_off_unless_asked_for_and_has_a_default_size() {
        let s = parse(&["--spool", "data/spool"], None).unwrap();
        let spooling = s.spool.unwrap();
        assert_eq!(spooling.path, PathBuf::from("data/spool"));
        assert_eq!(spooling.max_bytes, 64 << 20);
        let s = parse(&["--spool", "s", "--spool-max-bytes", "41"], None).unwrap();
        assert_eq!(s.spool.unwrap().max_bytes, spool::SMALLEST);
    }

    #[test]
    fn write_concern_accepts_majority_and_member_counts() {
        let majority = parse(&["--write-concern", "majority"], None).unwrap();
        assert_eq!(majority.write_concern, Some(WaitFor::Majority));
        let two = parse(&["--write-concern", "2"], None).unwrap();
        assert_eq!(two.write_concern, Some(WaitFor::Members(2)));
    }
}
