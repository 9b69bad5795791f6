//! The commands a person gives the set, one a line, on stdin or through the control socket:
//! read whole before anything is done, so that an unknown command or member changes nothing,
//! then carried out with the library's controls.

use std::fmt;
use std::time::Duration;

use mabel_sim::{HandOver, ReplicaSet};

/// The simulator always runs three members, 0, 1 and 2, in the order of `--ports`.
pub const MEMBERS: usize = 3;

/// What `help` prints, and `--help` after the flags.
pub const COMMANDS: &str = "\
commands:
  kill N|primary      the member's process dies: its port closes (revive starts it again)
  revive N|all        a killed member starts again, on its own data
  hang N|primary      the member accepts connections but answers nothing (unhang)
  unhang N|all        a hung member answers again
  isolate N|primary   the member is cut off from the other two; clients still reach it
  heal N|all          the member reaches the others again
  stepdown            the primary steps down and hands over, as rs.stepDown(10, 5)
  lag N MS            the member copies each write MS milliseconds after the primary
  status              each member's state, term and last applied write
  quit                stops the set; its data is gone
members are 0, 1 and 2, in the order of --ports";

/// The member a command acts on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Who {
    Member(usize),
    /// The primary of the newest term, whether it takes writes yet or not.
    Primary,
    All,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Kill(Who),
    Revive(Who),
    Hang(Who),
    Unhang(Who),
    Isolate(Who),
    Heal(Who),
    StepDown,
    Lag { member: usize, lag: Duration },
    Status,
    Quit,
    Help,
}

/// Why a line is no command.
#[derive(Clone, Debug, PartialEq)]
pub enum CommandError {
    Unknown(String),
    Usage(&'static str),
    NoMember(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(word) => write!(
                f,
                "unknown command {word:?}: the commands are kill, revive, hang, unhang, \
                 isolate, heal, stepdown, lag, status, quit (help says more)"
            ),
            CommandError::Usage(usage) => write!(f, "usage: {usage}"),
            CommandError::NoMember(word) => {
                write!(f, "no member {word}: the members are 0, 1 and 2")
            }
        }
    }
}

/// Why the set did not do what it was told; nothing changed.
#[derive(Clone, Debug, PartialEq)]
pub enum Refused {
    NoPrimary,
    Down(String),
    HandOver(HandOver),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NoPrimary => f.write_str("the set has no primary now"),
            Refused::Down(member) => write!(f, "{member} is down (revive it first)"),
            Refused::HandOver(why) => write!(f, "{why}"),
        }
    }
}

impl Command {
    /// Reads one line: `kill 1`, `revive all`, `lag 2 500`, ...
    pub fn parse(line: &str) -> Result<Command, CommandError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&name, rest)) = words.split_first() else {
            return Err(CommandError::Usage(
                "a command, e.g. status (help lists them)",
            ));
        };
        let primary_or = |usage| one_of(rest, Who::Primary, "primary", usage);
        let all_or = |usage| one_of(rest, Who::All, "all", usage);
        let alone = |command: Command, usage| match rest {
            [] => Ok(command),
            _ => Err(CommandError::Usage(usage)),
        };
        match name {
            "kill" => primary_or("kill N|primary").map(Command::Kill),
            "revive" => all_or("revive N|all").map(Command::Revive),
            "hang" => primary_or("hang N|primary").map(Command::Hang),
            "unhang" => all_or("unhang N|all").map(Command::Unhang),
            "isolate" => primary_or("isolate N|primary").map(Command::Isolate),
            "heal" => all_or("heal N|all").map(Command::Heal),
            "stepdown" => alone(Command::StepDown, "stepdown"),
            "lag" => match rest {
                [member, ms] => {
                    let member = member_number(member, "lag N MS")?;
                    let ms: u64 = ms.parse().map_err(|_| CommandError::Usage("lag N MS"))?;
                    let lag = Duration::from_millis(ms);
                    Ok(Command::Lag { member, lag })
                }
                _ => Err(CommandError::Usage("lag N MS")),
            },
            "status" => alone(Command::Status, "status"),
            "quit" => alone(Command::Quit, "quit"),
            "help" => alone(Command::Help, "help"),
            other => Err(CommandError::Unknown(other.to_string())),
        }
    }

    /// Carries the command out on `set` and says what it did, in one line or a few.
    pub fn run(&self, set: &ReplicaSet) -> Result<String, Refused> {
        let hosts = set.hosts();
        let name = |m: usize| format!("member {m} ({})", hosts[m]);
        let up = |m: usize| set.status()[m].role.is_some();
        match *self {
            Command::Kill(who) => {
                let m = one(set, who)?;
                if !up(m) {
                    return Ok(format!("{} is down already", name(m)));
                }
                set.kill(m);
                Ok(format!("killed {}{}", name(m), the_primary(who)))
            }
            Command::Revive(who) => each(who, "every member is up already", |m| {
                (!up(m)).then(|| {
                    set.revive(m);
                    format!("started {} again", name(m))
                })
            }),
            Command::Hang(who) => {
                let m = one(set, who)?;
                if !up(m) {
                    return Err(Refused::Down(name(m)));
                }
                set.hang(m);
                Ok(format!(
                    "hung {}{}: it answers nothing",
                    name(m),
                    the_primary(who)
                ))
            }
            Command::Unhang(who) => each(who, "no member is hung", |m| {
                set.status()[m].hung.then(|| {
                    set.unhang(m);
                    format!("{} answers again", name(m))
                })
            }),
            Command::Isolate(who) => {
                let m = one(set, who)?;
                if !up(m) {
                    return Err(Refused::Down(name(m)));
                }
                set.isolate(m);
                Ok(format!(
                    "isolated {}{}: cut off from the others, clients still reach it",
                    name(m),
                    the_primary(who)
                ))
            }
            Command::Heal(who) => each(who, "no member is cut off", |m| {
                set.status()[m].isolated.then(|| {
                    set.heal_member(m);
                    format!("{} reaches the others again", name(m))
                })
            }),
            Command::StepDown => {
                let step_down = Duration::from_secs(10);
                let m = set
                    .hand_over(step_down, Duration::from_secs(5))
                    .map_err(Refused::HandOver)?;
                Ok(format!(
                    "{} stepped down and handed over; it may not stand again for 10 s",
                    name(m)
                ))
            }
            Command::Lag { member, lag } => {
                set.set_lag(member, lag);
                Ok(format!(
                    "{} copies each write {} ms after the primary",
                    name(member),
                    lag.as_millis()
                ))
            }
            Command::Status => Ok(crate::lines::status(set)),
            Command::Quit => Ok("stopping the simulated set; its data is gone".to_string()),
            Command::Help => Ok(COMMANDS.to_string()),
        }
    }
}

/// `N` or the word that stands for `special`, alone after the command.
fn one_of(
    rest: &[&str],
    special: Who,
    word: &str,
    usage: &'static str,
) -> Result<Who, CommandError> {
    match rest {
        [w] if *w == word => Ok(special),
        [n] => member_number(n, usage).map(Who::Member),
        _ => Err(CommandError::Usage(usage)),
    }
}

/// A member's number; a word that is no number gets the command's usage.
fn member_number(word: &str, usage: &'static str) -> Result<usize, CommandError> {
    let number: usize = word.parse().map_err(|_| CommandError::Usage(usage))?;
    if number >= MEMBERS {
        return Err(CommandError::NoMember(word.to_string()));
    }
    Ok(number)
}

/// The member `who` names now.
fn one(set: &ReplicaSet, who: Who) -> Result<usize, Refused> {
    match who {
        Who::Member(m) => Ok(m),
        Who::Primary | Who::All => set.primary().ok_or(Refused::NoPrimary),
    }
}

fn the_primary(who: Who) -> &'static str {
    match who {
        Who::Primary => ", the primary",
        _ => "",
    }
}

/// Does `act` to each member `who` names, which says what it did or `None` when it had
/// nothing to do; `nothing` when no member had.
fn each(who: Who, nothing: &str, act: impl Fn(usize) -> Option<String>) -> Result<String, Refused> {
    let members = match who {
        Who::Member(m) => vec![m],
        Who::Primary | Who::All => (0..MEMBERS).collect(),
    };
    let done: Vec<String> = members.into_iter().filter_map(act).collect();
    if done.is_empty() {
        return Ok(nothing.to_string());
    }
    Ok(done.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_a_member_the_primary_or_all_as_each_allows() {
        assert_eq!(Command::parse("kill 1"), Ok(Command::Kill(Who::Member(1))));
        assert_eq!(
            Command::parse("  kill   primary "),
            Ok(Command::Kill(Who::Primary))
        );
        assert_eq!(Command::parse("revive all"), Ok(Command::Revive(Who::All)));
        assert_eq!(
            Command::parse("lag 2 500"),
            Ok(Command::Lag {
                member: 2,
                lag: Duration::from_millis(500)
            })
        );
        assert_eq!(
            Command::parse("kill all"),
            Err(CommandError::Usage("kill N|primary"))
        );
        assert_eq!(
            Command::parse("revive primary"),
            Err(CommandError::Usage("revive N|all"))
        );
        assert_eq!(
            Command::parse("kill 3"),
            Err(CommandError::NoMember("3".into()))
        );
        assert_eq!(
            Command::parse("kill"),
            Err(CommandError::Usage("kill N|primary"))
        );
        assert_eq!(
            Command::parse("status now"),
            Err(CommandError::Usage("status"))
        );
        assert_eq!(
            Command::parse("lag 1 soon"),
            Err(CommandError::Usage("lag N MS"))
        );
        assert_eq!(
            Command::parse("explode"),
            Err(CommandError::Unknown("explode".into()))
        );
    }
}
