//! The set's own clock: a thread that fires each member's timers when they are due
//! (heartbeats, election timers, the liveness timeout, the phases of a primary-elect and of a
//! restarted member) and lets replication move, so that the set elects, steps down and
//! recovers by itself, as mongod does.
//!
//! Timers fire in the order they were due, each at its own due time, however late the thread
//! wakes: a machine too busy to run it for a while delays what happens, and never reorders it
//! (a heartbeat due before an election timer still puts the election off). Commands, which
//! run on their connections' threads, bring the set up to date the same way before they look
//! at it.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::{Phase, Role, Shared, State};
use crate::election::StepDown;

/// The longest the clock sleeps: replication lag is measured against it.
const TICK: Duration = Duration::from_millis(10);

/// A bound on the timers fired in one go, against a bug that would keep one due forever.
const MOST_FIRED: usize = 100_000;

/// What is due next.
#[derive(Clone, Copy, Debug)]
enum Due {
    Heartbeats,
    IndexBuilds,
    Election(usize),
    Liveness(usize),
    Phase(usize),
}

/// Starts the clock of `shared`; it stops when the set shuts down.
pub fn start(shared: &Arc<Shared>) {
    let set = Arc::clone(shared);
    let thread = thread::Builder::new()
        .name("sim-clock".into())
        .spawn(move || {
            let mut state = set.lock();
            while !state.shutting_down {
                let now = Instant::now();
                if state.advance(now) {
                    set.changed.notify_all();
                }
                let sleep = state
                    .next_due()
                    .map_or(TICK, |(at, _)| at.saturating_duration_since(now).min(TICK));
                state = set.wait(state, sleep.max(Duration::from_millis(1)));
            }
        })
        .expect("spawn the set's clock");
    shared.track(thread);
}

impl State {
    /// Fires every timer due by `now`, in order, and lets replication move. Returns whether
    /// anything changed.
    ///
    /// Replication moves up to each timer's due time before the timer fires, and up to `now`
    /// only after the last: a write copied at `now` must not count (say, as caught up for a
    /// `replSetStepDown`, or as newer for a vote) at a timer due before it was copied. A timer
    /// due before what was already replicated (a heartbeat settled by a member answering
    /// again) sees replication as it stands: it never runs backwards.
    pub fn advance(&mut self, now: Instant) -> bool {
        let mut changed = false;
        let mut replicated: Option<Instant> = None;
        for _ in 0..MOST_FIRED {
            match self.next_due() {
                Some((at, due)) if at <= now => {
                    let upto = replicated.map_or(at, |r| r.max(at));
                    changed |= self.replicate(upto);
                    replicated = Some(upto);
                    changed |= self.fire(due, at);
                }
                _ => {
                    changed |= self.replicate(now);
                    changed |= self.progress_index_builds(now);
                    return changed;
                }
            }
        }
        panic!("the set's timers keep firing: {:?}", self.next_due());
    }

    /// The earliest timer, and when it is due.
    fn next_due(&self) -> Option<(Instant, Due)> {
        let heartbeats = self.next_heartbeat().map(|at| (at, Due::Heartbeats));
        let builds = self
            .next_index_build_step()
            .map(|at| (at, Due::IndexBuilds));
        let members = (0..self.members.len()).flat_map(|m| {
            let election = self.members[m].election_at.map(|at| (at, Due::Election(m)));
            let liveness = self.liveness_deadline(m).map(|at| (at, Due::Liveness(m)));
            let phase = self.phase_ends(m).map(|at| (at, Due::Phase(m)));
            [election, liveness, phase]
        });
        heartbeats
            .into_iter()
            .chain(builds)
            .chain(members.flatten())
            .filter(|(_, due)| match due {
                Due::Heartbeats | Due::IndexBuilds => true,
                Due::Election(m) | Due::Liveness(m) | Due::Phase(m) => self.can_act(*m),
            })
            .min_by_key(|(at, _)| *at)
    }

    fn fire(&mut self, due: Due, at: Instant) -> bool {
        match due {
            Due::Heartbeats => self.exchange_heartbeats(at),
            Due::IndexBuilds => self.progress_index_builds(at),
            Due::Election(member) => {
                self.election_timer_fired(member, at);
                true
            }
            Due::Liveness(member) => {
                self.step_down(member, StepDown::CannotSeeMajority, at);
                true
            }
            Due::Phase(member) => {
                self.end_phase(member, at);
                true
            }
        }
    }

    /// When `member`'s current role ends by itself, if it does.
    fn phase_ends(&self, member: usize) -> Option<Instant> {
        let m = &self.members[member];
        let timers = &self.timers;
        match m.role {
            Role::Startup => Some(m.role_since + timers.startup),
            Role::Startup2 => Some(m.role_since + timers.startup2),
            Role::Recovering => Some(m.role_since + timers.recovering),
            Role::Rollback => Some(m.role_since + timers.rollback),
            Role::Primary(Phase::CatchUp) => Some(m.role_since),
            Role::Primary(Phase::Drain) => Some(m.role_since + timers.drain),
            Role::Secondary | Role::Primary(Phase::Writable) => None,
        }
    }

    fn end_phase(&mut self, member: usize, at: Instant) {
        match self.members[member].role {
            Role::Startup => {
                self.set_role(member, Role::Startup2, at);
                // Its config is loaded: it starts heartbeats.
                self.restart_heartbeats(member, at);
            }
            Role::Startup2 => self.set_role(member, Role::Recovering, at),
            // `RollbackImpl::_transitionFromRollbackToSecondary`.
            Role::Rollback => self.set_role(member, Role::Secondary, at),
            Role::Recovering => self.set_role(member, Role::Secondary, at),
            Role::Primary(Phase::CatchUp) => self.catch_up(member, at),
            Role::Primary(Phase::Drain) => self.finish_drain(member, at),
            Role::Secondary | Role::Primary(Phase::Writable) => {}
        }
    }
}
