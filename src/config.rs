//! Turns the raw flags and `MONGODB_URI` into settings the rest of the program can trust.
//!
//! Every check on user input happens here, once, so that a bad value stops the program before
//! it connects to anything, with a message that names the flag.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{cli, spool, wording};

/// Where mabel writes when neither `--uri` nor `MONGODB_URI` says otherwise: the three-member
/// set that `docker-compose.yml` starts.
pub const DEFAULT_URI: &str =
    "mongodb://127.0.0.1:27017,127.0.0.1:27018,127.0.0.1:27019/?replicaSet=rs0";

/// Everything `mabel run` needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub uri: String,
    /// Where the URI came from, for messages about it: `--uri`, `MONGODB_URI`, or the
    /// default.
    pub uri_from: &'static str,
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
    pub uri_from: &'static str,
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
        let value = wording::cut(&format!("{:?}", self.value));
        write!(f, "{} {value}: {}", self.flag, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// `env_uri` is the value of `MONGODB_URI`, passed in so tests need not touch the
    /// environment.
    pub fn from_args(args: cli::Run, env_uri: Option<String>) -> Result<Settings, ConfigError> {
        let (uri, uri_from) = uri(args.uri, env_uri)?;
        let (db, collection) = names(args.db, args.collection)?;
        Ok(Settings {
            uri,
            uri_from,
            db,
            collection,
            interval: seconds("--interval", &args.interval)?,
            attempts: match args.attempts {
                0 => return Err(ConfigError::new("--attempts", "0", "must be at least 1")),
                n => n,
            },
            retry_wait: seconds("--retry-wait", &args.retry_wait)?,
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
        let (uri, uri_from) = uri(args.uri, env_uri)?;
        let (db, collection) = names(args.db, args.collection)?;
        Ok(AuditSettings {
            uri,
            uri_from,
            db,
            collection,
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

/// `--uri`, else `MONGODB_URI`, else the compose set, and which it was. The driver checks
/// the rest when the client is built.
fn uri(
    flag: Option<String>,
    env_uri: Option<String>,
) -> Result<(String, &'static str), ConfigError> {
    let (uri, from) = match (flag, env_uri) {
        (Some(uri), _) => (uri, "--uri"),
        (None, Some(uri)) => (uri, "MONGODB_URI"),
        (None, None) => (DEFAULT_URI.to_string(), "the default URI"),
    };
    if uri.trim().is_empty() {
        return Err(ConfigError::new(from, &uri, "must not be empty"));
    }
    Ok((uri, from))
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

/// The longest `--interval` or `--retry-wait`: a year. Longer ones would be added to the
/// clock (a sleep's end, the driver's server selection deadline) past what `Instant` holds.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A positive number of seconds, as typed; sub-second values are what keep tests fast.
fn seconds(flag: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let problem = "must be a number of seconds greater than zero";
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(flag, text, problem))?;
    if value.is_nan() || value <= 0.0 {
        return Err(ConfigError::new(flag, text, problem));
    }
    if value > MAX_SECONDS {
        let problem = "is too large a number of seconds: at most 31536000, a year";
        return Err(ConfigError::new(flag, text, problem));
    }
    Ok(Duration::from_secs_f64(value))
}

/// The database and collection names, checked as the server would refuse them
/// (https://www.mongodb.com/docs/manual/reference/limits/#naming-restrictions): better to
/// say so before connecting, naming the flag.
fn names(db: String, collection: String) -> Result<(String, String), ConfigError> {
    if db.is_empty() || db.contains(['/', '\\', '.', ' ', '"', '$', '\0']) {
        let problem = "must be a database name: not empty, and none of / \\ . space \" $ or NUL";
        return Err(ConfigError::new("--db", db, problem));
    }
    if db.len() >= 64 {
        return Err(ConfigError::new(
            "--db",
            db,
            "must be shorter than 64 bytes",
        ));
    }
    if collection.is_empty() || collection.contains(['$', '\0']) {
        let problem = "must be a collection name: not empty, and no $ or NUL";
        return Err(ConfigError::new("--collection", collection, problem));
    }
    if collection.starts_with("system.") {
        let problem = "must not begin with system., which the server keeps for itself";
        return Err(ConfigError::new("--collection", collection, problem));
    }
    if db.len() + 1 + collection.len() > 255 {
        let problem = "must be shorter: with the database name, at most 255 bytes";
        return Err(ConfigError::new("--collection", collection, problem));
    }
    Ok((db, collection))
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

/// `majority`, or a number of members: at least one, for `w: 0` asks for no acknowledgement
/// and so could confirm no breath, and at most the 50 members a replica set can have.
fn wait_for(value: &str) -> Result<WaitFor, ConfigError> {
    let flag = "--write-concern";
    if value == "majority" {
        return Ok(WaitFor::Majority);
    }
    if !value.chars().all(|c| c.is_ascii_digit()) || value.is_empty() {
        let problem = "must be \"majority\" or a number of members";
        return Err(ConfigError::new(flag, value, problem));
    }
    match value.parse::<u32>() {
        Ok(0) => {
            let problem = "must be at least 1: 0 asks for no acknowledgement, so no breath \
                           could be confirmed";
            Err(ConfigError::new(flag, value, problem))
        }
        Ok(n) if n <= 50 => Ok(WaitFor::Members(n)),
        _ => {
            let problem = "must be at most 50, the most members a replica set can have";
            Err(ConfigError::new(flag, value, problem))
        }
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
            (&["--interval", "soon"][..], "--interval"),
            (&["--retry-wait", "inf"][..], "--retry-wait"),
            (&["--retry-wait", "1e300"][..], "--retry-wait"),
            (&["--write-concern", "51"][..], "--write-concern"),
            (&["--write-concern", "99999999999"][..], "--write-concern"),
            (&["--db", "a.b"][..], "--db"),
            (&["--collection", "system.views"][..], "--collection"),
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
    fn messages_echo_what_was_typed_cut_short() {
        let err = parse(&["--interval", "1e309"], None).unwrap_err();
        assert_eq!(
            err,
            "--interval \"1e309\": is too large a number of seconds: at most 31536000, a year"
        );
        let err = parse(&["--write-concern", "99999999999"], None).unwrap_err();
        assert!(err.contains("at most 50"), "{err}");
        let long = "y".repeat(100_000);
        let err = parse(&["--collection", &format!("${long}")], None).unwrap_err();
        assert!(err.len() < 300, "{}", err.len());
    }

    #[test]
    fn the_uri_is_named_by_where_it_came_from() {
        assert_eq!(parse(&[], None).unwrap().uri_from, "the default URI");
        assert_eq!(
            parse(&[], Some("mongodb://e/")).unwrap().uri_from,
            "MONGODB_URI"
        );
        let err = parse(&[], Some("")).unwrap_err();
        assert!(err.starts_with("MONGODB_URI \"\": "), "{err}");
        let s = parse(&["--uri", "mongodb://f/"], Some("")).unwrap();
        assert_eq!((s.uri.as_str(), s.uri_from), ("mongodb://f/", "--uri"));
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
