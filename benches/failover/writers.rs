//! The three writers: mabel as a process, the seed's loop and the bare driver as threads of
//! the benchmark. Each reports what happened to every breath on one channel.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{doc, Document};
use mongodb::error::{Error, ErrorKind, WriteFailure};
use mongodb::sync::Client;

use mabel_sim::ReplicaSet;

pub const DB: &str = "mabel";
pub const COLL: &str = "breaths";
/// Between breaths, for every writer: short, so that the wait for the next breath is a small
/// part of the overhead.
const INTERVAL: Duration = Duration::from_millis(20);
/// The seed's loop: sixty tries, five seconds apart.
const SEED_TRIES: u32 = 60;
const SEED_SLEEP: Duration = Duration::from_secs(5);
/// The codes PyMongo raises as `NotPrimaryError`, a kind of `AutoReconnect`.
const NOT_PRIMARY_CODES: &[i32] = &[10058, 10107, 13435, 11600, 11602, 13436, 189, 91];
const DUPLICATE_KEY: i32 = 11000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Writer {
    Mabel,
    Seed,
    Bare,
}

pub const WRITERS: [Writer; 3] = [Writer::Mabel, Writer::Seed, Writer::Bare];

impl Writer {
    pub fn name(self) -> &'static str {
        match self {
            Writer::Mabel => "mabel",
            Writer::Seed => "seed",
            Writer::Bare => "bare driver",
        }
    }
}

/// How a breath is recognised in the store: mabel prints its `_id`; the writers here know
/// the exact time and oxygen they sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreathId {
    Id(ObjectId),
    Key(i64, u64),
}

/// What a writer reports, timestamped where it happens.
pub enum Event {
    /// The writer confirmed a breath at `at`.
    Wrote { at: Instant, breath: BreathId },
    /// The writer gave up on a breath.
    GaveUp { breath: BreathId },
    /// The writer stopped by itself.
    Ended,
}

/// The mabel processes running now, so that the run's watchdog can end them.
static MABELS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every mabel still running (they are reaped when the benchmark exits).
pub fn kill_all() {
    for &pid in MABELS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        // SAFETY: plain kill(2) on a child not reaped yet (`stop` forgets it first).
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

/// A writer at work, until `stop`.
pub enum Running {
    Process {
        child: Child,
        readers: Vec<JoinHandle<()>>,
    },
    Thread {
        stop: Arc<AtomicBool>,
        done: Receiver<()>,
    },
}

pub fn start(writer: Writer, uri: &str, tx: Sender<Event>) -> Running {
    match writer {
        Writer::Mabel => start_mabel(uri, tx),
        Writer::Seed | Writer::Bare => {
            let uri = match writer {
                // `safe=True`: acknowledged by the primary alone.
                Writer::Seed => format!("{uri}&retryWrites=false&w=1"),
                _ => uri.to_string(),
            };
            let stop = Arc::new(AtomicBool::new(false));
            let (done_tx, done) = mpsc::channel();
            let flag = Arc::clone(&stop);
            thread::spawn(move || {
                match writer {
                    Writer::Seed => seed(&uri, &flag, &tx),
                    _ => bare(&uri, &flag, &tx),
                }
                let _ = tx.send(Event::Ended);
                let _ = done_tx.send(());
            });
            Running::Thread { stop, done }
        }
    }
}

impl Running {
    /// Stops the writer and waits for it. A writer thread blocked on a member that will never
    /// answer is freed by killing the members (only a watchdog gets there).
    pub fn stop(self, set: &ReplicaSet) -> Result<(), String> {
        match self {
            Running::Process { mut child, readers } => {
                MABELS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|&pid| pid != child.id());
                let _ = child.kill();
                let _ = child.wait();
                for reader in readers {
                    let _ = reader.join();
                }
                Ok(())
            }
            Running::Thread { stop, done } => {
                stop.store(true, Ordering::SeqCst);
                if done.recv_timeout(Duration::from_secs(10)).is_ok() {
                    return Ok(());
                }
                for member in 0..3 {
                    set.kill(member);
                }
                match done.recv_timeout(Duration::from_secs(10)) {
                    Ok(()) => Err("writer stopped only when the set was killed".to_string()),
                    Err(_) => Err("writer thread did not stop; left behind".to_string()),
                }
            }
        }
    }
}

fn start_mabel(uri: &str, tx: Sender<Event>) -> Running {
    let mut child = crate::mabel::command()
        .args(["run", "--uri", uri])
        .args(["--interval", &INTERVAL.as_secs_f64().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mabel binary starts");
    MABELS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(child.id());
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_tx = tx.clone();
    let out = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let at = Instant::now();
            if let Some(id) = parse_wrote(&line) {
                let _ = out_tx.send(Event::Wrote {
                    at,
                    breath: BreathId::Id(id),
                });
            }
        }
        let _ = out_tx.send(Event::Ended);
    });
    let err = thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let given_up = line
                .split("couldn't write breath ")
                .nth(1)
                .and_then(|rest| rest.get(..24))
                .and_then(|id| id.parse().ok());
            if let Some(id) = given_up {
                let _ = tx.send(Event::GaveUp {
                    breath: BreathId::Id(id),
                });
            }
        }
    });
    Running::Process {
        child,
        readers: vec![out, err],
    }
}

/// The `_id` of a `wrote <id> time <t> oxygen <o> attempts <n>` line.
fn parse_wrote(line: &str) -> Option<ObjectId> {
    let mut words = line.split_whitespace();
    if words.next()? != "wrote" {
        return None;
    }
    words.next()?.parse().ok()
}

/// A breath as the in-process writers build it; the seed's carries its own `_id`.
fn breath(with_id: bool) -> (BreathId, Document) {
    let time = bson::DateTime::now();
    let oxygen: f64 = rand::random();
    let key = BreathId::Key(time.timestamp_millis(), oxygen.to_bits());
    let mut doc = doc! { "time": time, "oxygen": oxygen };
    if with_id {
        doc.insert("_id", ObjectId::new());
    }
    (key, doc)
}

fn client(uri: &str) -> Option<mongodb::sync::Collection<Document>> {
    let client = Client::with_uri_str(uri).ok()?;
    Some(client.database(DB).collection(COLL))
}

/// The seed's loop: catch `AutoReconnect`, sleep five seconds, try again, sixty times; a
/// duplicate key means an earlier try landed.
fn seed(uri: &str, stop: &AtomicBool, tx: &Sender<Event>) {
    let Some(breaths) = client(uri) else { return };
    while !stop.load(Ordering::SeqCst) {
        thread::sleep(INTERVAL);
        let (key, doc) = breath(true);
        let mut tries = 0;
        loop {
            tries += 1;
            match breaths.insert_one(&doc).run() {
                Ok(_) => break,
                Err(e) if is_duplicate_key(&e) => break,
                Err(e) if is_auto_reconnect(&e) && tries < SEED_TRIES => {
                    if !nap(stop, SEED_SLEEP) {
                        let _ = tx.send(Event::GaveUp { breath: key });
                        return;
                    }
                }
                // "Couldn't write!", or an exception the seed does not catch: it stops.
                Err(_) => {
                    let _ = tx.send(Event::GaveUp { breath: key });
                    return;
                }
            }
        }
        let at = Instant::now();
        let _ = tx.send(Event::Wrote { at, breath: key });
    }
}

/// One insert per breath, nothing else.
fn bare(uri: &str, stop: &AtomicBool, tx: &Sender<Event>) {
    let Some(breaths) = client(uri) else { return };
    while !stop.load(Ordering::SeqCst) {
        thread::sleep(INTERVAL);
        let (key, doc) = breath(false);
        let event = match breaths.insert_one(doc).run() {
            Ok(_) => Event::Wrote {
                at: Instant::now(),
                breath: key,
            },
            Err(_) => Event::GaveUp { breath: key },
        };
        let _ = tx.send(event);
    }
}

/// Sleeps `duration` unless told to stop first; false if told to stop.
fn nap(stop: &AtomicBool, duration: Duration) -> bool {
    let deadline = Instant::now() + duration;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// What PyMongo raises as `AutoReconnect`: network errors, a cleared pool, no server
/// selected, and the not-primary and node-is-recovering codes.
fn is_auto_reconnect(e: &Error) -> bool {
    match &*e.kind {
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::ServerSelection { .. } => true,
        ErrorKind::Command(c) => NOT_PRIMARY_CODES.contains(&c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => NOT_PRIMARY_CODES.contains(&w.code),
        _ => false,
    }
}

fn is_duplicate_key(e: &Error) -> bool {
    matches!(&*e.kind, ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY)
}
