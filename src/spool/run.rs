//! Running with a spool: measuring never waits for the database.
//!
//! Without a spool mabel is the seed: it measures a breath, writes it, and only then measures
//! the next, so a breath waiting for a new primary holds up the next measurement and one the
//! policy gives up on stops mabel. With a spool the two part ways. The calling thread measures
//! a breath every interval and puts it on the spool; a writer thread writes the oldest breath
//! on the spool with the retry policy and marks it done. When the policy gives up, the writer
//! says how many breaths wait and starts again on the same breath, so breaths reach the
//! database in the order they were measured, late but whole.
//!
//! A first SIGINT or SIGTERM stops the measuring; the writer finishes the breath in flight, as
//! without a spool, and leaves the others waiting in the spool for the next run.

use std::panic;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bson::oid::ObjectId;
use log::warn;

use super::{Error, Spool, Waiting};
use crate::breath::Breath;
use crate::retry::Failure;
use crate::stop::Stop;

/// Why a run with a spool ended early.
#[derive(Debug)]
pub enum Stopped {
    /// The spool could not take a breath or record one written.
    Spool(Error),
    /// The server refused breath `id` in a way retrying cannot mend.
    Refused { id: ObjectId, failure: Failure },
}

/// What the writer does once it has written the breath in hand.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Waits for the next breath.
    Measuring,
    /// Writes every breath left, then ends: `--count` breaths were measured.
    Draining,
    /// Ends: a signal asked mabel to stop.
    Stopping,
}

/// What the measuring thread and the writer share.
struct Shared {
    state: Mutex<State>,
    /// Signalled when a breath is pushed or the phase changes.
    changed: Condvar,
}

struct State {
    spool: Spool,
    phase: Phase,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self, phase: Phase) {
        self.lock().phase = phase;
        self.changed.notify_one();
    }

    /// Waits for the next breath to write; `None` when the writer should end.
    fn next(&self) -> Option<Waiting> {
        let mut state = self.lock();
        loop {
            match (state.phase, state.spool.oldest()) {
                (Phase::Stopping, _) => return None,
                (_, Some(waiting)) => return Some(waiting.clone()),
                (Phase::Draining, None) => return None,
                (Phase::Measuring, None) => {}
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Measures a breath every `interval` onto the spool while a writer thread calls
/// `write(&mut writer, breath, sent_before)` for each spooled breath, oldest first; `write`
/// retries, and says on stdout what it wrote. With `count`, stops measuring after `count`
/// breaths and ends once every breath on the spool is written. Hands `writer` back with the
/// signal that stopped the run, if one did.
pub fn run<W: Send + 'static>(
    spool: Spool,
    interval: Duration,
    count: Option<u64>,
    stop: &Stop,
    writer: W,
    write: fn(&mut W, &Breath, bool) -> Result<(), Failure>,
) -> Result<(W, Option<&'static str>), Stopped> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            spool,
            phase: Phase::Measuring,
        }),
        changed: Condvar::new(),
    });
    let thread = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || write_oldest_first(&shared, writer, write))
    };
    let mut measured = 0;
    let stopped_by = loop {
        if count == Some(measured) {
            break None;
        }
        if let Some(signal) = stop.sleep(interval) {
            break Some(signal);
        }
        if thread.is_finished() {
            return join(thread).map(|writer| (writer, None));
        }
        let breath = Breath::new();
        shared.lock().spool.push(&breath).map_err(Stopped::Spool)?;
        shared.changed.notify_one();
        measured += 1;
    };
    shared.enter(match stopped_by {
        Some(_) => Phase::Stopping,
        None => Phase::Draining,
    });
    let writer = join(thread)?;
    let state = shared.lock();
    if state.spool.waiting() > 0 {
        warn!(
            "{} breaths wait in spool {}; the next run on it writes them first",
            state.spool.waiting(),
            state.spool.path().display()
        );
    }
    Ok((writer, stopped_by))
}

/// The writer: each breath in turn until it is written, however many times the retry policy
/// gives up on it.
fn write_oldest_first<W>(
    shared: &Shared,
    mut writer: W,
    write: fn(&mut W, &Breath, bool) -> Result<(), Failure>,
) -> Result<W, Stopped> {
    let mut gave_up_on = None;
    while let Some(Waiting {
        breath,
        sent_before,
    }) = shared.next()
    {
        let sent_before = sent_before || gave_up_on == Some(breath.id);
        match write(&mut writer, &breath, sent_before) {
            Ok(()) => shared
                .lock()
                .spool
                .done(breath.id)
                .map_err(Stopped::Spool)?,
            Err(failure @ Failure::GaveUp { .. }) => {
                let waiting = shared.lock().spool.waiting();
                warn!(
                    "Waiting: {waiting} breaths in the spool; breath {} (the oldest): \
                     {failure}; trying it again",
                    breath.id
                );
                gave_up_on = Some(breath.id);
            }
            Err(failure) => {
                return Err(Stopped::Refused {
                    id: breath.id,
                    failure,
                })
            }
        }
    }
    Ok(writer)
}

fn join<W>(thread: JoinHandle<Result<W, Stopped>>) -> Result<W, Stopped> {
    thread
        .join()
        .unwrap_or_else(|panic| panic::resume_unwind(panic))
}
