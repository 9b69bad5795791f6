//! Stopping on SIGINT or SIGTERM without abandoning a breath.
//!
//! The first signal asks the loop to stop measuring: the breath in flight is finished (within
//! the retry policy, which may take minutes through a failover) and mabel ends with a summary
//! and exit 0. A second signal is a person who will not wait: mabel exits at once, with
//! 128 + the signal's number as shells do (130 for SIGINT, 143 for SIGTERM), and names the
//! breath in flight, which may or may not be stored.
//!
//! While no member of the set has ever answered, a first signal stops at once too: the breath
//! in flight cannot have been sent (`contact`), so nothing is lost by not waiting for a set
//! that is not there, and mabel says the breath was not stored, which is then certain; with a
//! spool, that it waits there for the next run, as do the breaths behind it.
//!
//! A `wrote` line that cannot be written (a closed pipe, a full disk) stops the measuring as a
//! first signal does (`stdout_failed`), so that the breath in flight is finished and those
//! behind it stay in the spool.
//!
//! A thread waits for the signals (std has no signal API; signal-hook's iterator keeps the
//! handler itself async-signal-safe) and wakes the loop's sleep between breaths at once.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::contact::Contact;
use crate::output::error_line;

/// The loop's side of the signal thread.
#[derive(Clone)]
pub struct Stop {
    watch: Arc<Watch>,
}

/// What the signal thread and the loop both see, and a condvar that wakes the loop's sleep
/// when a signal comes.
#[derive(Default)]
struct Watch {
    seen: Mutex<Seen>,
    signalled: Condvar,
    /// Whether any breath can have reached the set yet.
    contact: Contact,
    /// The spool the breaths wait in, if any.
    spool: Option<PathBuf>,
}

/// What a signal needs to know, and what the loop needs to know of signals.
#[derive(Default)]
struct Seen {
    /// The first signal received, if any.
    signal: Option<i32>,
    /// A `wrote` line could not be written.
    stdout_failed: bool,
    /// The breath being written, if any.
    in_flight: Option<ObjectId>,
}

impl Stop {
    /// Takes over SIGINT and SIGTERM for the rest of the process.
    pub fn install(contact: Contact, spool: Option<PathBuf>) -> io::Result<Stop> {
        let stop = Stop {
            watch: Arc::new(Watch {
                contact,
                spool,
                ..Watch::default()
            }),
        };
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let watch = Arc::clone(&stop.watch);
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    watch.receive(signal);
                }
            })?;
        Ok(stop)
    }

    /// Sleeps for `duration`, or less if a stop is asked for. Returns the name of the signal
    /// that asked, if one has, or `stdout` if a `wrote` line could not be written.
    pub fn sleep(&self, duration: Duration) -> Option<&'static str> {
        let deadline = Instant::now() + duration;
        let mut seen = self.watch.lock();
        while seen.signal.is_none() && !seen.stdout_failed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            seen = self
                .watch
                .signalled
                .wait_timeout(seen, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        match seen.stdout_failed {
            true => seen.signal.map(name).or(Some("stdout")),
            false => seen.signal.map(name),
        }
    }

    /// Stops the measuring as a first signal would: stdout can no longer be written.
    pub fn stdout_failed(&self) {
        self.watch.lock().stdout_failed = true;
        self.watch.signalled.notify_all();
    }

    /// Tells the signal thread which breath a second signal would abandon.
    pub fn in_flight(&self, breath: Option<ObjectId>) {
        self.watch.lock().in_flight = breath;
    }
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn receive(&self, signal: i32) {
        let mut seen = self.lock();
        match (seen.signal, seen.in_flight) {
            (None, Some(id)) if self.contact.nothing_sent() => {
                let kept = match &self.spool {
                    Some(path) => format!(
                        "; it waits in spool {}, with the breaths behind it, for the next run",
                        path.display()
                    ),
                    None => String::new(),
                };
                error_line(format!(
                    "error: stopped by {} before any member of the set answered: breath {id} \
                     was not stored{kept}",
                    name(signal)
                ));
                std::process::exit(128 + signal);
            }
            (None, in_flight) => {
                seen.signal = Some(signal);
                self.signalled.notify_all();
                if in_flight.is_some() {
                    error_line(format!(
                        "{}: finishing the breath in flight, then stopping (again to stop now)",
                        name(signal)
                    ));
                }
            }
            (Some(_), in_flight) => {
                match in_flight {
                    Some(id) => error_line(format!(
                        "error: stopped by a second {}: breath {id} was not confirmed and may \
                         or may not be stored",
                        name(signal)
                    )),
                    None => error_line(format!("error: stopped by a second {}", name(signal))),
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
            watch: Arc::default(),
        };
        assert_eq!(stop.sleep(Duration::from_millis(10)), None);
        let watch = Arc::clone(&stop.watch);
        let signaller = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            watch.receive(SIGTERM);
        });
        let began = Instant::now();
        assert_eq!(stop.sleep(Duration::from_secs(60)), Some("SIGTERM"));
        assert!(began.elapsed() < Duration::from_secs(10));
        signaller.join().unwrap();
        assert_eq!(stop.sleep(Duration::from_secs(60)), Some("SIGTERM"));
    }
}
