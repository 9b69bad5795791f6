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
//! When more than one breath waits (after an outage, or a crash), the writer sends the oldest
//! in batches of up to `--batch` through the same attempt loop, and says once a second how
//! the catching up goes. In steady state a batch is the one breath just measured.
//!
//! A first SIGINT or SIGTERM stops the measuring; the writer finishes the breath in flight, as
//! without a spool, and leaves the others waiting in the spool for the next run.

use std::panic;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use log::warn;

use super::{Error, Spool, Waiting};
use crate::breath::Breath;
use crate::error::Failure;
use crate::stop::Stop;

/// Why a run with a spool ended early.
#[derive(Debug)]
pub enum Stopped {
    /// The spool could not take a breath or record one written.
    Spool(Error),
    /// The server refused a breath in a way retrying cannot mend.
    Refused(Failure),
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

    /// Waits for the next breaths to write, at most `most`; `None` when the writer should end.
    fn next(&self, most: usize) -> Option<Vec<Waiting>> {
        let mut state = self.lock();
        loop {
            if state.phase == Phase::Stopping {
                return None;
            }
            let batch = state.spool.oldest(most);
            match (state.phase, batch.is_empty()) {
                (_, false) => return Some(batch),
                (Phase::Draining, true) => return None,
                _ => {}
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// What the writer thread calls: writes a batch of breaths, oldest first, taking each out of
/// the batch once it is in the database (see `Writer::write` in `main`).
pub type Write<W> = fn(&mut W, &[Breath], bool) -> (Vec<ObjectId>, Result<(), Failure>);

/// Measures a breath every `interval` onto the spool while a writer thread calls
/// `write(&mut writer, batch, sent_before)` with the oldest spooled breaths, at most `batch`
/// at a time; `write` retries, and says on stdout what it wrote. With `count`, stops
/// measuring after `count` breaths and ends once every breath on the spool is written. Hands
/// `writer` back with the signal that stopped the run, if one did.
pub fn run<W: Send + 'static>(
    spool: Spool,
    interval: Duration,
    count: Option<u64>,
    batch: usize,
    stop: &Stop,
    writer: W,
    write: Write<W>,
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
        thread::spawn(move || write_oldest_first(&shared, writer, write, batch))
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

/// The writer: the oldest breaths, a batch at a time, until each is written, however many
/// times the retry policy gives up on them.
fn write_oldest_first<W>(
    shared: &Shared,
    mut writer: W,
    write: Write<W>,
    most: usize,
) -> Result<W, Stopped> {
    let mut catching_up = CatchingUp::default();
    while let Some(batch) = shared.next(most) {
        let sent_before = batch.iter().any(|w| w.sent_before);
        let breaths: Vec<Breath> = batch.into_iter().map(|w| w.breath).collect();
        let (written, result) = write(&mut writer, &breaths, sent_before);
        let waiting = {
            let mut state = shared.lock();
            state.spool.done(&written).map_err(Stopped::Spool)?;
            state.spool.waiting()
        };
        catching_up.wrote(written.len(), waiting);
        match result {
            Ok(()) => {}
            Err(failure @ Failure::GaveUp { .. }) => warn!(
                "Waiting: {waiting} breaths in the spool; breath {} (the oldest): {failure}; \
                 trying it again",
                failure.breath()
            ),
            Err(failure) => return Err(Stopped::Refused(failure)),
        }
    }
    Ok(writer)
}

/// Tells a person watching a backlog drain how it goes: once a second while it lasts, and
/// once when it is gone. A backlog gone within its first second is not worth a line.
#[derive(Default)]
struct CatchingUp {
    /// When the backlog began to drain, and how many of it are written.
    since: Option<(Instant, usize)>,
    said: Option<Instant>,
}

impl CatchingUp {
    fn wrote(&mut self, written: usize, waiting: usize) {
        let now = Instant::now();
        let (since, so_far) = self.since.get_or_insert((now, 0));
        *so_far += written;
        let (since, so_far) = (*since, *so_far);
        if waiting <= 1 {
            if self.said.is_some() {
                let took = now.duration_since(since).as_secs_f64();
                warn!("caught up: {so_far} breaths written in {took:.1} s");
            }
            *self = CatchingUp::default();
        } else if now.duration_since(self.said.unwrap_or(since)) >= Duration::from_secs(1) {
            warn!("catching up: {so_far} breaths written, {waiting} left");
            self.said = Some(now);
        }
    }
}

fn join<W>(thread: JoinHandle<Result<W, Stopped>>) -> Result<W, Stopped> {
    thread
        .join()
        .unwrap_or_else(|panic| panic::resume_unwind(panic))
}
