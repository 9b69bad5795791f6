//! Turns the raw flags and `MONGODB_URI` into settings the rest of the program can trust.
//!
//! Every check on user input happens here, once, so that a bad value stops the program before
//! it connects to anything, with a message that names the flag.

use std::fmt;
use std::time::Duration;

use crate::cli;

/// Where mabel writes when neither `--uri` nor `MONGODB_URI` says otherwise: the three-member
/// set that `docker-compose.yml` starts.
pub const DEFAULT_URI: &str =
    "mongodb://localhost:27017,localhost:27018,localhost:27019/?replicaSet=rs0";

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
    pub write_concern: Option<W>,
}

/// The `w` of a write concern, as `--write-concern` accepts it.
#[derive(Clone, Debug, PartialEq)]
pub enum W {
    Majority,
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
        let uri = args
            .uri
            .or(env_uri)
            .unwrap_or_else(|| DEFAULT_URI.to_string());
        if uri.trim().is_empty() {
            return Err(ConfigError::new("--uri", &uri, "must not be empty"));
        }
        Ok(Settings {
            uri,
            db: name("--db", args.db)?,
            collection: name("--collection", args.collection)?,
            interval: seconds("--interval", args.interval)?,
            attempts: match args.attempts {
                0 => return Err(ConfigError::new("--attempts", "0", "must be at least 1")),
                n => n,
            },
            retry_wait: seconds("--retry-wait", args.retry_wait)?,
            count: match args.count {
                Some(0) => return Err(ConfigError::new("--count", "0", "must be at least 1")),
                n => n,
            },
            write_concern: args.write_concern.as_deref().map(w).transpose()?,
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

fn w(value: &str) -> Result<W, ConfigError> {
    match value {
        "majority" => Ok(W::Majority),
        _ => match value.parse::<u32>() {
            Ok(n) if n > 0 => Ok(W::Members(n)),
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
        ] {
            let err = parse(args, None).unwrap_err();
            assert!(err.starts_with(flag), "{args:?} gave {err:?}");
        }
    }

    #[test]
    fn write_concern_accepts_majority_and_member_counts() {
        let majority = parse(&["--write-concern", "majority"], None).unwrap();
        assert_eq!(majority.write_concern, Some(W::Majority));
        let two = parse(&["--write-concern", "2"], None).unwrap();
        assert_eq!(two.write_concern, Some(W::Members(2)));
    }
}
