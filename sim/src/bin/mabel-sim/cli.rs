//! The command line, read by hand: `mabel-sim [FLAGS]` runs a set, `mabel-sim ctl` talks to
//! one that runs, `mabel-sim stamp` puts times on lines. std has no argument parser, and
//! four flags do not earn a dependency.

use std::path::PathBuf;
use std::time::Duration;

use crate::command::{Command, COMMANDS};
use crate::error::Error;

/// Where the control socket is unless `--control` says otherwise: beside mabel's spool, in
/// the `data/` the Makefile uses.
pub const CONTROL: &str = "data/sim.sock";

/// What `--help` prints.
pub fn usage() -> String {
    format!(
        "\
mabel-sim: a simulated three-member MongoDB 7.0 replica set (not MongoDB), on 127.0.0.1

usage:
  mabel-sim [--ports 27017,27018,27019] [--set rs0] [--election-timeout 10s] [--control PATH]
      runs the set until `quit` or Ctrl-C, printing a line for each thing that happens to it
      and taking commands, one a line, on stdin and on the control socket ({CONTROL})
  mabel-sim ctl [--control PATH] COMMAND...
      sends one command to a running simulator and prints its answer
  mabel-sim stamp LABEL
      copies stdin to stdout, each line after the UTC time it arrived (or the one it starts
      with) and LABEL, so that mabel's lines sort beside the simulator's

--election-timeout is mongod's electionTimeoutMillis (10s by default; e.g. 2s, 500ms), and
every replication timer scales with it: heartbeats go five times per election timeout, and a
member that does not answer is given up on after one.

{COMMANDS}"
    )
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Args {
    Simulate(Options),
    /// The command is checked here, so that a bad one is refused before any simulator is
    /// asked; it is sent as the words given.
    Ctl {
        control: PathBuf,
        line: String,
    },
    Stamp {
        label: String,
    },
    Help,
}

/// How to run the set.
#[derive(Debug, PartialEq)]
pub struct Options {
    pub ports: [u16; 3],
    pub set: String,
    pub election_timeout: Duration,
    pub control: PathBuf,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            ports: [27017, 27018, 27019],
            set: "rs0".to_string(),
            election_timeout: Duration::from_secs(10),
            control: PathBuf::from(CONTROL),
        }
    }
}

/// Reads the arguments after the program's name.
pub fn parse(args: &[String]) -> Result<Args, Error> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Args::Help);
    }
    match args.first().map(String::as_str) {
        Some("ctl") => parse_ctl(&args[1..]),
        Some("stamp") => match &args[1..] {
            [label] if !label.starts_with('-') => Ok(Args::Stamp {
                label: label.clone(),
            }),
            _ => Err(Error::Usage("stamp takes one LABEL".into())),
        },
        _ => parse_simulate(args).map(Args::Simulate),
    }
}

fn parse_simulate(args: &[String]) -> Result<Options, Error> {
    let mut options = Options::default();
    let mut flags = Flags::new(args);
    while let Some((flag, value)) = flags.next()? {
        match flag {
            Flag::Ports => options.ports = ports(&value)?,
            Flag::Set if value.is_empty() => {
                return Err(Error::Usage("--set: the set needs a name".into()))
            }
            Flag::Set => options.set = value,
            Flag::ElectionTimeout => options.election_timeout = election_timeout(&value)?,
            Flag::Control => options.control = control(&value)?,
        }
    }
    Ok(options)
}

fn parse_ctl(args: &[String]) -> Result<Args, Error> {
    let (control, words) = match args {
        [flag] if flag == "--control" => {
            return Err(Error::Usage("--control needs a value".into()))
        }
        [flag, path, words @ ..] if flag == "--control" => (control(path)?, words),
        [flag, words @ ..] if flag.starts_with("--control=") => {
            (control(&flag["--control=".len()..])?, words)
        }
        words => (PathBuf::from(CONTROL), words),
    };
    match words.first() {
        None => return Err(Error::Usage("ctl needs a COMMAND, e.g. status".into())),
        Some(flag) if flag.starts_with('-') => {
            return Err(Error::Usage(format!("unknown argument {flag}")))
        }
        Some(_) => {}
    }
    let line = words.join(" ");
    Command::parse(&line).map_err(Error::Command)?;
    Ok(Args::Ctl { control, line })
}

/// The flags of a run, each with its value, as `--flag value` or `--flag=value`.
struct Flags<'a> {
    args: std::slice::Iter<'a, String>,
}

#[derive(Clone, Copy)]
enum Flag {
    Ports,
    Set,
    ElectionTimeout,
    Control,
}

const FLAGS: [(&str, Flag); 4] = [
    ("--ports", Flag::Ports),
    ("--set", Flag::Set),
    ("--election-timeout", Flag::ElectionTimeout),
    ("--control", Flag::Control),
];

impl<'a> Flags<'a> {
    fn new(args: &'a [String]) -> Flags<'a> {
        Flags { args: args.iter() }
    }

    fn next(&mut self) -> Result<Option<(Flag, String)>, Error> {
        let Some(arg) = self.args.next() else {
            return Ok(None);
        };
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        let Some(&(name, flag)) = FLAGS.iter().find(|(f, _)| *f == name) else {
            return Err(Error::Usage(format!("unknown argument {arg}")));
        };
        let value = match inline {
            Some(value) => value,
            None => self
                .args
                .next()
                .cloned()
                .ok_or_else(|| Error::Usage(format!("{name} needs a value")))?,
        };
        Ok(Some((flag, value)))
    }
}

/// Three different ports, comma-separated; 0 lets the system choose one.
fn ports(value: &str) -> Result<[u16; 3], Error> {
    let bad = || {
        Error::Usage(format!(
            "--ports {value}: give three different ports, e.g. 27017,27018,27019"
        ))
    };
    let ports: Vec<u16> = value
        .split(',')
        .map(|p| p.trim().parse::<u16>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let ports: [u16; 3] = ports.try_into().map_err(|_| bad())?;
    let distinct = ports
        .iter()
        .enumerate()
        .all(|(i, p)| *p == 0 || !ports[..i].contains(p));
    if !distinct {
        return Err(bad());
    }
    Ok(ports)
}

/// The shortest election timeout taken: below it the clock would spin on heartbeats.
const SHORTEST: Duration = Duration::from_millis(100);

/// A number with `s` or `ms`: `10s`, `1.5s`, `500ms`.
fn election_timeout(value: &str) -> Result<Duration, Error> {
    let bad = || {
        Error::Usage(format!(
            "--election-timeout {value}: give a duration of at least 100ms, e.g. 10s, 2s or 500ms"
        ))
    };
    let (number, scale) = if let Some(ms) = value.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = value.strip_suffix('s') {
        (s, 1.0)
    } else {
        return Err(bad());
    };
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = number * scale;
    if !seconds.is_finite() || seconds > 3600.0 {
        return Err(bad());
    }
    let timeout = Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
    if timeout < SHORTEST {
        return Err(bad());
    }
    Ok(timeout)
}

fn control(value: &str) -> Result<PathBuf, Error> {
    if value.is_empty() {
        return Err(Error::Usage("--control needs a path".into()));
    }
    Ok(PathBuf::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_take_a_value_after_them_or_after_an_equals_sign() {
        let Ok(Args::Simulate(options)) = parse(&args(
            "--ports 1,2,3 --set lab --election-timeout=500ms --control x.sock",
        )) else {
            panic!("not parsed");
        };
        assert_eq!(options.ports, [1, 2, 3]);
        assert_eq!(options.set, "lab");
        assert_eq!(options.election_timeout, Duration::from_millis(500));
        assert_eq!(options.control, PathBuf::from("x.sock"));
        let default = parse(&[]);
        assert!(
            matches!(&default, Ok(Args::Simulate(o)) if *o == Options::default()),
            "{default:?}"
        );
    }

    #[test]
    fn a_bad_value_names_its_flag() {
        for (line, flag) in [
            ("--ports 1,2", "--ports"),
            ("--ports 1,1,2", "--ports"),
            ("--ports a,b,c", "--ports"),
            ("--election-timeout 10", "--election-timeout"),
            ("--election-timeout 10ms", "--election-timeout"),
            ("--election-timeout -1s", "--election-timeout"),
            ("--election-timeout 1e9s", "--election-timeout"),
            ("--set", "--set"),
            ("--bogus", "--bogus"),
        ] {
            let error = parse(&args(line)).expect_err(line).to_string();
            assert!(error.contains(flag), "{line}: {error}");
        }
    }

    #[test]
    fn ctl_reads_its_command_and_refuses_an_unknown_one() {
        let parsed = parse(&args("ctl --control s.sock kill 1"));
        let Ok(Args::Ctl { control, line }) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(control, PathBuf::from("s.sock"));
        assert_eq!(line, "kill 1");
        assert!(parse(&args("ctl frobnicate")).is_err());
        assert!(parse(&args("ctl kill 3")).is_err());
        assert!(parse(&args("ctl")).is_err());
        assert!(parse(&args("ctl --control")).is_err());
        assert!(parse(&args("ctl --verbose status")).is_err());
    }
}
