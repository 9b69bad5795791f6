//! The spool's writer: a thread that writes the oldest breaths on the spool, so that measuring
//! never waits for the database.
//!
//! Without a spool mabel is the seed: `main` measures a breath, writes it, and only then
//! measures the next, so a breath waiting for a new primary holds up the next measurement,
//! and one the policy gives up on stops mabel. With a spool the two part ways: `main` still
//! measures a breath every interval, and puts it on the spool; this thread writes the oldest
//! breaths through the same `Writer::write` and marks them done. When the policy gives up, it
//! says how many breaths wait and starts again on the same breath, so breaths reach the
//! database in the order they were measured, late but whole.
//!
//! The thread is there because a sync insert can block for seconds (a hung primary, an
//! election), and the spool promises measuring on time. The driver runs threads of its own
//! (monitors, the connection pool); mabel adds this one with `--spool`, and no other.
//!
//! When more than one breath waits (after an outage, or a crash), the writer sends the oldest
//! in batches of up to `--batch`, and says once a second how the catching up goes. In steady
//! state a batch is the one breath just measured.
//!
//! A first SIGINT or SIGTERM stops the measuring; the writer finishes the batch in flight, as
//! without a spool, and leaves the others waiting in the spool for the next run. So does a
//! `wrote` line that cannot be written: the writer marks the batch it wrote, and ends.

use std::panic;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::warn;

use super::{Pending, Spool};
use crate::breath::Breath;
use crate::error::{Error, Failure};
use crate::wording::count;
use crate::Writer;

/// A spool, and the thread that writes its oldest breaths.
pub struct Drain {
    handoff: Arc<Handoff>,
    writer: JoinHandle<Writer>,
}

/// What the writer does once the spool is empty.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Waits for the next breath measured.
    KeepingUp,
    /// Ends: `--count` breaths were measured, and every breath is written.
    Draining,
    /// Ends once the batch in hand is written, empty or not: a signal asked mabel to stop.
    Stopping,
}

/// Where `main` leaves breaths for the writer thread.
struct Handoff {
    held: Mutex<Held>,
    /// Signalled when a breath is pushed or the phase changes.
    changed: Condvar,
}

/// What the lock holds.
struct Held {
    spool: Spool,
    phase: Phase,
    /// Why the writer ended early, until `main` hears of it.
    failed: Option<Error>,
}

impl Drain {
    /// Starts a thread that writes the breaths on `spool` through `writer`, oldest first, at
    /// most `batch` at a time, and waits for more.
    pub fn start(spool: Spool, writer: Writer, batch: usize) -> Result<Drain, Error> {
        let handoff = Arc::new(Handoff {
            held: Mutex::new(Held {
                spool,
                phase: Phase::KeepingUp,
                failed: None,
            }),
            changed: Condvar::new(),
        });
        let writer = {
            let handoff = Arc::clone(&handoff);
            thread::Builder::new()
                .name("spool".into())
                .spawn(move || {
                    let mut writer = writer;
                    if let Err(error) = write_oldest_first(&handoff, &mut writer, batch) {
                        handoff.lock().failed = Some(error);
                    }
                    writer
                })
                .map_err(Error::SpoolThread)?
        };
        Ok(Drain { handoff, writer })
    }

    /// Puts a breath on the spool, on disk, for the writer. Fails if the spool cannot keep
    /// it, or the writer has ended early: a breath refused, or the spool not written to.
    pub fn push(&self, breath: &Breath) -> Result<(), Error> {
        let mut held = self.handoff.lock();
        if let Some(error) = held.failed.take() {
            return Err(error);
        }
        held.spool.push(breath).map_err(Error::Spool)?;
        self.handoff.changed.notify_one();
        Ok(())
    }

    /// Stops the writer once every breath is written, or, after the signal `stopped_by`, once
    /// the batch in hand is, and hands the writer back.
    pub fn finish(self, stopped_by: Option<&str>) -> Result<Writer, Error> {
        self.handoff.lock().phase = match stopped_by {
            Some(_) => Phase::Stopping,
            None => Phase::Draining,
        };
        self.handoff.changed.notify_one();
        let writer = self
            .writer
            .join()
            .unwrap_or_else(|panic| panic::resume_unwind(panic));
        let mut held = self.handoff.lock();
        if let Some(error) = held.failed.take() {
            return Err(error);
        }
        let waiting = held.spool.waiting();
        if waiting > 0 {
            warn!(
                "{} {} in spool {}; the next run on it writes them first",
                count(waiting as u64, "breath"),
                if waiting == 1 { "waits" } else { "wait" },
                held.spool.path().display()
            );
        }
        Ok(writer)
    }
}

impl Handoff {
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the next breaths to write, at most `most`; `None` when the writer should end.
    fn next(&self, most: usize) -> Option<Vec<Pending>> {
        let mut held = self.lock();
        loop {
            if held.phase == Phase::Stopping {
                return None;
            }
            let batch = held.spool.oldest(most);
            match (held.phase, batch.is_empty()) {
                (_, false) => return Some(batch),
                (Phase::Draining, true) => return None,
                _ => {}
            }
            held = self
                .changed
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The writer: the oldest breaths, a batch at a time, until each is written, however many
/// times the retry policy gives up on them.
fn write_oldest_first(handoff: &Handoff, writer: &mut Writer, most: usize) -> Result<(), Error> {
    let mut catching_up = CatchingUp::default();
    while let Some(batch) = handoff.next(most) {
        let sent_before = batch.iter().any(|p| p.sent_before);
        let breaths: Vec<Breath> = batch.into_iter().map(|p| p.breath).collect();
        let (written, result) = writer.write(&breaths, sent_before);
        let waiting = {
            let mut held = handoff.lock();
            held.spool.done(&written).map_err(Error::Spool)?;
            held.spool.waiting()
        };
        // A batch given up on is no progress: the `Waiting` line below says so.
        if !written.is_empty() {
            catching_up.wrote(written.len(), waiting);
        }
        if writer.stdout_failed() {
            return Ok(());
        }
        match result {
            Ok(()) => {}
            Err(failure @ Failure::GaveUp { .. }) => warn!(
                "Waiting: {} in the spool; breath {} (the oldest): {failure}; trying it again",
                count(waiting as u64, "breath"),
                failure.breath()
            ),
            Err(failure) => return Err(Error::from(failure)),
        }
    }
    Ok(())
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
                let so_far = count(so_far as u64, "breath");
                warn!("caught up: {so_far} written in {took:.1} s");
            }
            *self = CatchingUp::default();
        } else if now.duration_since(self.said.unwrap_or(since)) >= Duration::from_secs(1) {
            let so_far = count(so_far as u64, "breath");
            warn!("catching up: {so_far} written, {waiting} left");
            self.said = Some(now);
        }
    }
}
