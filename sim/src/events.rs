//! What happened to the set, in order: a member killed or revived, an election won, a
//! step-down and why, a rollback, a member caught up. The simulator prints each as a line
//! beside mabel's, and tests and benchmarks read when, for instance, a new primary began to
//! take writes.

use std::fmt;
use std::sync::mpsc::Sender;
use std::time::{Instant, SystemTime};

use crate::cluster::{Phase, Role};

/// One thing that happened, and when.
#[derive(Clone, Debug)]
pub struct Event {
    pub at: Instant,
    pub wall: SystemTime,
    pub member: usize,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// The member took a new role: `term` is its term then.
    Role { role: Role, term: i64 },
    /// It won an election in `term`.
    Elected { term: i64 },
    /// It stood in `term` and lost.
    Lost { term: i64, votes: usize },
    /// It left PRIMARY.
    SteppedDown { reason: &'static str },
    /// It threw away `writes` entries the others never had.
    RolledBack { writes: usize },
    /// Back after being down, hung or cut off, it holds all the primary holds, having copied
    /// `writes` it missed. No mongod log line says this for a secondary; it is the moment
    /// `rs.status()` would first show it with the primary's optime.
    CaughtUp { writes: usize },
    /// A person or a test did this to the member.
    Control(&'static str),
}

impl Event {
    pub fn new(member: usize, kind: Kind) -> Event {
        Event {
            at: Instant::now(),
            wall: SystemTime::now(),
            member,
            kind,
        }
    }

    pub fn role(member: usize, role: Role, term: i64) -> Event {
        Event::new(member, Kind::Role { role, term })
    }
}

/// "member 1 won the election for term 2".
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member {} {}", self.member, self.kind)
    }
}

/// What happened, without the member: "won the election for term 2", so that the simulator
/// can name the member its own way.
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Role { role, term } => match role {
                Role::Primary(Phase::CatchUp) => {
                    write!(f, "is primary of term {term}, catching up")
                }
                Role::Primary(Phase::Drain) => write!(f, "is primary of term {term}, draining"),
                Role::Primary(Phase::Writable) => {
                    write!(f, "is primary of term {term} and takes writes")
                }
                role => write!(f, "is {}", role.name()),
            },
            Kind::Elected { term } => write!(f, "won the election for term {term}"),
            Kind::Lost { term, votes } => {
                write!(f, "stood for term {term} and lost ({votes} of 3 votes)")
            }
            Kind::SteppedDown { reason } => write!(f, "stepped down: {reason}"),
            Kind::RolledBack { writes } => write!(
                f,
                "rolled back {} the others never had",
                count(*writes, "write")
            ),
            Kind::CaughtUp { writes } => write!(
                f,
                "caught up with the primary, copying {} it had missed",
                count(*writes, "write")
            ),
            Kind::Control(what) => f.write_str(what),
        }
    }
}

/// "1 write", "3 writes".
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Every event so far, and whoever wants each as it happens.
#[derive(Default)]
pub struct Events {
    all: Vec<Event>,
    subscribers: Vec<Sender<Event>>,
}

impl Events {
    pub fn push(&mut self, event: Event) {
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
        self.all.push(event);
    }

    pub fn all(&self) -> &[Event] {
        &self.all
    }

    pub fn subscribe(&mut self, subscriber: Sender<Event>) {
        self.subscribers.push(subscriber);
    }
}
