//! What happened to the set, in order: a member killed or revived, an election won, a
//! step-down and why, a rollback. The simulator prints each as a line beside mabel's, and
//! tests and benchmarks read when, for instance, a new primary began to take writes.

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

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.member;
        match &self.kind {
            Kind::Role { role, term } => match role {
                Role::Primary(Phase::CatchUp) => {
                    write!(f, "member {m} is primary of term {term}, catching up")
                }
                Role::Primary(Phase::Drain) => {
                    write!(f, "member {m} is primary of term {term}, draining")
                }
                Role::Primary(Phase::Writable) => {
                    write!(f, "member {m} is primary of term {term} and takes writes")
                }
                role => write!(f, "member {m} is {}", role.name()),
            },
            Kind::Elected { term } => write!(f, "member {m} won the election for term {term}"),
            Kind::Lost { term, votes } => write!(
                f,
                "member {m} stood for term {term} and lost ({votes} of 3 votes)"
            ),
            Kind::SteppedDown { reason } => write!(f, "member {m} stepped down: {reason}"),
            Kind::RolledBack { writes } => write!(
                f,
                "member {m} rolled back {writes} {} the others never had",
                if *writes == 1 { "write" } else { "writes" }
            ),
            Kind::Control(what) => write!(f, "member {m} {what}"),
        }
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
