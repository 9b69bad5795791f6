//! Stopping on SIGINT or SIGTERM without abandoning a breath.
//!
//! The first signal asks the loop to stop measuring: the breath in flight is finished (within
//! the retry policy, which may take minutes through a failover) and mabel ends with a summary
//! and exit 0. A second signal is a person who will not wait: mabel exits at once, with
//! 128 + the signal's number as shells do (130 for SIGINT, 143 for SIGTERM), and names the
//! breath in flight, which may or may not be stored.
//!
//! A thread waits for the signals (std has no signal API; signal-hook's iterator keeps the
//! handler itself async-signal-safe) and wakes the loop's sleep between breaths at once.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The loop's side of the signal thread.
#[derive(Clone)]
pub struct Stop {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    signalled: Condvar,
}

#[derive(Default)]
struct State {
    /// The first signal received, if any.
    signal: Option<i32>,
    /// The breath being written, if any.
    in_flight: Option<ObjectId>,
}

impl Stop {
    /// Takes over SIGINT and SIGTERM for the rest of the process.
    pub fn install() -> io::Result<Stop> {
        let stop = Stop {
            shared: Arc::default(),
        };
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let shared = Arc::clone(&stop.shared);
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    shared.receive(signal);
                }
            })?;
        Ok(stop)
    }

    /// Sleeps for `duration`, or less if a stop is asked for. Returns the name of the signal
    /// that asked, if one has.
    pub fn sleep(&self, duration: Duration) -> Option<&'static str> {
        let deadline = Instant::now() + duration;
        let mut state = self.shared.lock();
        while state.signal.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .shared
                .signalled
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.signal.map(name)
    }

    /// Tells the signal thread which breath a second signal would abandon.
    pub fn in_flight(&self, breath: Option<ObjectId>) {
        self.shared.lock().in_flight = breath;
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn receive(&self, signal: i32) {
        let mut state = self.lock();
        match state.signal {
            None => {
                state.signal = Some(signal);
                self.signalled.notify_all();
                if state.in_flight.is_some() {
                    eprintln!(
                        "{}: finishing the breath in flight, then stopping (again to stop now)",
                        name(signal)
                    );
                }
            }
            Some(_) => {
                match state.in_flight {
                    Some(id) => eprintln!(
                        "error: stopped by a second {}: breath {id} was not confirmed and may \
                         or may not be stored",
                        name(signal)
                    ),
                    None => eprintln!("error: stopped by a second {}", name(signal)),
                }
                std::process::exit(128 + signal);
            }
        }
    }
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_signal_cuts_the_sleep_short() {
        let stop = Stop {
            shared: Arc::default(),
        };
        assert_eq!(stop.sleep(Duration::from_millis(10)), None);
        let shared = Arc::clone(&stop.shared);
        let signaller = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            shared.receive(SIGTERM);
        });
        let began = Instant::now();
        assert_eq!(stop.sleep(Duration::from_secs(60)), Some("SIGTERM"));
        assert!(began.elapsed() < Duration::from_secs(10));
        signaller.join().unwrap();
        assert_eq!(stop.sleep(Duration::from_secs(60)), Some("SIGTERM"));
    }
}
