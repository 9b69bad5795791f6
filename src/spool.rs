//! The spool: a file on local disk where every measured breath waits until the database has
//! it, so that neither an outage past the retry deadline nor a crash of mabel loses one.
//!
//! Without it a breath lives only in memory: the retry policy gives up on it after five
//! minutes without a primary, and a killed mabel takes the breath it was writing with it.
//! Every log shipper that promises more keeps a disk buffer; this one is kept small and
//! plain: an append-only file of fixed-size records, held by one mabel at a time, rewritten
//! with only the waiting breaths whenever it has grown mostly stale.
//!
//! # Format
//!
//! Eight bytes, `MABELSP1`, then records of 33 bytes, numbers little-endian:
//!
//! | bytes  | field |
//! |--------|-------|
//! | 0..4   | CRC-32 (IEEE, as in zlib and gzip) of bytes 4..33 |
//! | 4      | kind: 1 = this breath waits to be written, 2 = this breath is written |
//! | 5..17  | the breath's `_id` |
//! | 17..25 | its time, in milliseconds since the Unix epoch (i64) |
//! | 25..33 | its oxygen (f64) |
//!
//! The breaths waiting are those with a kind-1 record and no kind-2 record, in file order,
//! which is the order they were measured.
//!
//! # What survives what
//!
//! Every record is on disk (`fdatasync`) before `push` or `done` returns, and a breath is
//! pushed before its first attempt, so a crash or a power cut can leave at most the last
//! record half-written. A last record that is short or fails its checksum is that torn
//! append: it is skipped with a warning and every record before it is kept (a torn kind-1
//! record is a breath never sent; a torn kind-2 record leaves its breath waiting, and writing
//! it again meets its own `_id`). A record that fails its checksum anywhere else is damage
//! that no crash explains: opening stops with an error naming its byte offset, and the file
//! is left as it was.
//!
//! # Staying small
//!
//! The file is rewritten with only the waiting breaths (to `PATH.tmp`, flushed, renamed over
//! `PATH`, directory flushed: a crash leaves the old file or the new one) when it has reached
//! 64 KiB (or half of `--spool-max-bytes`, if less) and at least half of it is stale, which on
//! a healthy set means every thousand breaths or so, and whenever the next record would not
//! fit under `--spool-max-bytes`. If the
//! waiting breaths alone fill that maximum, the spool is full: `push` refuses the breath and
//! says which one, and mabel stops rather than drop it.
//!
//! # A failing disk
//!
//! A write or a flush that fails stops mabel with the breath it could not keep named, as a
//! full spool does. After a failed `fdatasync` the kernel may have dropped the pages it could
//! not write and call the next flush a success (PostgreSQL's "fsyncgate", 2018), so a spool is
//! never written again once a write or a flush has failed: every later append fails with the
//! first error, and no breath whose record may not be on disk is counted as kept.
//!
//! # One mabel per spool
//!
//! The file is locked (`File::try_lock`) while it is open; a second mabel is refused.

mod drain;

pub use drain::Drain;

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bson::oid::ObjectId;
use log::warn;

use crate::breath::Breath;
use crate::wording::count;

const MAGIC: &[u8; 8] = b"MABELSP1";
const HEADER: u64 = MAGIC.len() as u64;
const RECORD: u64 = 33;
const WAITING: u8 = 1;
const WRITTEN: u8 = 2;

/// The smallest `--spool-max-bytes`: room for one breath.
pub const SMALLEST: u64 = HEADER + RECORD;

/// The default `--spool-max-bytes`, 64 MiB: about two million breaths, twenty-three days of an
/// outage at one breath a second.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// The default `--batch`: the most waiting breaths sent in one insert. A thousand breaths make
/// an insert of about 50 KB, far under the server's limits (100,000 documents, 48 MB), so one
/// round trip carries them; a day's backlog (86,400 breaths) is 87 inserts, and marking a
/// batch written appends 33 KB with one flush. Larger batches save little more and make the
/// newest breath wait behind a longer insert, and a failed attempt repeat more.
pub const DEFAULT_BATCH: usize = 1000;

/// The most documents a server accepts in one write command (`maxWriteBatchSize`).
pub const LARGEST_BATCH: usize = 100_000;

/// Below this size (or half the maximum) the file is not rewritten just to drop stale records.
const COMPACT_AT: u64 = 64 << 10;

/// An open, locked spool and the breaths waiting in it, oldest first.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    /// The file's length: everything written to it has been appended through `file`.
    len: u64,
    max: u64,
    waiting: VecDeque<Pending>,
    /// The first write or flush that failed: what was being done, and the error.
    broken: Option<(&'static str, String)>,
}

/// A breath on the spool that the database may not have yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub breath: Breath,
    /// It was already on the spool when this run opened it, so the run that put it there may
    /// have written it: a duplicate `_id` on its first attempt means it is written.
    pub sent_before: bool,
}

/// Why the spool cannot be used, or cannot take a breath.
#[derive(Debug)]
pub enum Error {
    Io {
        path: PathBuf,
        doing: &'static str,
        error: io::Error,
    },
    /// Another process, surely another mabel, holds the lock.
    Locked { path: PathBuf },
    /// The file exists and is something else: it is not touched.
    NotASpool { path: PathBuf },
    /// A record other than the last is damaged.
    Damaged {
        path: PathBuf,
        offset: u64,
        problem: &'static str,
    },
    /// The waiting breaths fill `--spool-max-bytes`; `breath` was measured and not kept.
    Full {
        path: PathBuf,
        max: u64,
        waiting: usize,
        breath: Breath,
    },
    /// Writing or flushing `breath`'s record failed: it was measured and is not kept.
    NotKept {
        path: PathBuf,
        doing: &'static str,
        error: io::Error,
        breath: Breath,
    },
    /// Marking `breath` (and `more` others) written failed: the database has them, and the
    /// next run on the spool sends them again and meets their own `_id`.
    Unmarked {
        path: PathBuf,
        doing: &'static str,
        error: io::Error,
        breath: Breath,
        more: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, doing, error } => {
                write!(f, "spool {}: couldn't {doing}: {error}", path.display())
            }
            Error::Locked { path } => write!(
                f,
                "spool {} is in use by another mabel; each mabel needs its own spool",
                path.display()
            ),
            Error::NotASpool { path } => write!(
                f,
                "{} is not a mabel spool (a file that begins with {}); it was left untouched",
                path.display(),
                String::from_utf8_lossy(MAGIC)
            ),
            Error::Damaged {
                path,
                offset,
                problem,
            } => write!(
                f,
                "spool {} is damaged at byte {offset}: {problem}; mabel will not guess what \
                 it held, and left the file untouched",
                path.display()
            ),
            Error::Full {
                path,
                max,
                waiting,
                breath,
            } => write!(
                f,
                "spool {} is full: {} {} in it and --spool-max-bytes is {max}; breath {} \
                 could not be kept",
                path.display(),
                count(*waiting as u64, "breath"),
                if *waiting == 1 { "waits" } else { "wait" },
                breath.named(),
            ),
            Error::NotKept {
                path,
                doing,
                error,
                breath,
            } => write!(
                f,
                "spool {}: couldn't {doing}: {error}; breath {} could not be kept",
                path.display(),
                breath.named(),
            ),
            Error::Unmarked {
                path,
                doing,
                error,
                breath,
                more,
            } => {
                let more = match more {
                    0 => String::new(),
                    n => format!(" (and {})", count(*n as u64, "more")),
                };
                write!(
                    f,
                    "spool {}: couldn't {doing}: {error}; breath {}{more} is in the database \
                     but not marked written, so the next run on the spool sends it again and \
                     meets its own _id",
                    path.display(),
                    breath.named(),
                )
            }
        }
    }
}

impl Error {
    /// This failure, as the failure to keep `breath`.
    fn keeping(self, breath: &Breath) -> Error {
        match self {
            Error::Io { path, doing, error } => Error::NotKept {
                path,
                doing,
                error,
                breath: breath.clone(),
            },
            other => other,
        }
    }

    /// This failure, as the failure to mark `done` written.
    fn marking(self, done: &[Pending]) -> Error {
        match (self, done.split_first()) {
            (Error::Io { path, doing, error }, Some((first, rest))) => Error::Unmarked {
                path,
                doing,
                error,
                breath: first.breath.clone(),
                more: rest.len(),
            },
            (other, _) => other,
        }
    }
}

impl std::error::Error for Error {}

impl Spool {
    /// Opens the spool at `path`, creating it if need be, locks it, and reads back the
    /// breaths an earlier run left waiting.
    pub fn open(path: &Path, max: u64) -> Result<Spool, Error> {
        let file = open_locked(path)?;
        // A device or a pipe is no spool, and /dev/zero would never stop being read.
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(Error::NotASpool {
                path: path.to_path_buf(),
            });
        }
        let mut bytes = Vec::new();
        (&file)
            .read_to_end(&mut bytes)
            .map_err(failed(path, "read it"))?;
        let recovered = recover(path, &bytes)?;
        if let Some(offset) = recovered.torn_at {
            warn!(
                "spool {}: skipped the torn last record at byte {offset}, the trace of a write \
                 cut short; every record before it is kept",
                path.display()
            );
        }
        let waiting: VecDeque<Pending> = recovered
            .waiting
            .into_iter()
            .map(|breath| Pending {
                breath,
                sent_before: true,
            })
            .collect();
        if !waiting.is_empty() {
            warn!(
                "spool {}: {} left by an earlier run {} written first, oldest first",
                path.display(),
                count(waiting.len() as u64, "breath"),
                if waiting.len() == 1 { "is" } else { "are" },
            );
        }
        let mut spool = Spool {
            path: path.to_path_buf(),
            file,
            len: bytes.len() as u64,
            max,
            waiting,
            broken: None,
        };
        // Drop the stale and the torn now, or give a new spool its header.
        if spool.len != spool.live_len() {
            spool.compact()?;
        }
        Ok(spool)
    }

    /// Puts a breath at the end of the queue, on disk, before anyone tries to write it.
    pub fn push(&mut self, breath: &Breath) -> Result<(), Error> {
        if self.len + RECORD > self.max && self.len > self.live_len() {
            self.compact().map_err(|e| e.keeping(breath))?;
        }
        if self.live_len() + RECORD > self.max {
            return Err(Error::Full {
                path: self.path.clone(),
                max: self.max,
                waiting: self.waiting.len(),
                breath: breath.clone(),
            });
        }
        self.append(WAITING, &[breath])
            .map_err(|e| e.keeping(breath))?;
        self.waiting.push_back(Pending {
            breath: breath.clone(),
            sent_before: false,
        });
        Ok(())
    }

    /// The breaths to write next: the oldest, and after it up to `most - 1` more that, like
    /// it, may or may not have been sent before, so that one verdict on a duplicate `_id`
    /// fits the whole batch. They count as sent from now on: should this attempt fail, any
    /// of them may have landed.
    pub fn oldest(&mut self, most: usize) -> Vec<Pending> {
        let Some(sent_before) = self.waiting.front().map(|w| w.sent_before) else {
            return Vec::new();
        };
        let batch: Vec<Pending> = self
            .waiting
            .iter_mut()
            .take(most)
            .take_while(|w| w.sent_before == sent_before)
            .map(|w| {
                let handed_out = w.clone();
                w.sent_before = true;
                handed_out
            })
            .collect();
        batch
    }

    /// How many breaths wait.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database has these breaths: they no longer wait. Their marks go to disk with one
    /// flush, or the file is rewritten without them.
    pub fn done(&mut self, ids: &[ObjectId]) -> Result<(), Error> {
        let mut done = Vec::with_capacity(ids.len());
        for id in ids {
            // Written breaths are the oldest, so each is found at or near the front.
            let at = self.waiting.iter().position(|w| w.breath.id == *id);
            done.extend(at.and_then(|at| self.waiting.remove(at)));
        }
        if done.is_empty() {
            return Ok(());
        }
        let stale = self.len - self.live_len();
        if self.len >= COMPACT_AT.min(self.max / 2) && stale >= self.live_len() {
            return self.compact().map_err(|e| e.marking(&done));
        }
        // With no room for the marks, the breaths are written again after a crash and meet
        // their own `_id`; the next push makes room.
        let room = (self.max.saturating_sub(self.len) / RECORD) as usize;
        let marks: Vec<&Breath> = done.iter().take(room).map(|w| &w.breath).collect();
        self.append(WRITTEN, &marks).map_err(|e| e.marking(&done))
    }

    /// The length of a file holding only the waiting breaths.
    fn live_len(&self) -> u64 {
        HEADER + self.waiting.len() as u64 * RECORD
    }

    /// Appends a record of `kind` for each breath, then flushes them to disk once.
    fn append(&mut self, kind: u8, breaths: &[&Breath]) -> Result<(), Error> {
        if breaths.is_empty() {
            return Ok(());
        }
        self.still_whole("write to it")?;
        let bytes: Vec<u8> = breaths.iter().flat_map(|b| encode(kind, b)).collect();
        let appended = (&self.file)
            .write_all(&bytes)
            .map_err(|error| ("write to it", error))
            .and_then(|()| {
                let flushed = self.file.sync_data();
                flushed.map_err(|error| ("flush it to disk", error))
            });
        if let Err((doing, error)) = appended {
            // Take back a partial record, so that a crash now leaves no torn one before good
            // ones; nothing is written after it, whatever the kernel now says of the file.
            let _ = self.file.set_len(self.len);
            return Err(self.break_on(doing, error));
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Fails with the first failure, if a write or a flush has failed before.
    fn still_whole(&self, doing: &'static str) -> Result<(), Error> {
        match &self.broken {
            None => Ok(()),
            Some((earlier, error)) => {
                let error = io::Error::other(format!(
                    "an earlier attempt to {earlier} failed ({error}), and mabel does not write \
                     to a spool after that"
                ));
                Err(failed(&self.path, doing)(error))
            }
        }
    }

    /// Remembers a failed write or flush, so that the spool is not written again.
    fn break_on(&mut self, doing: &'static str, error: io::Error) -> Error {
        self.broken = Some((doing, error.to_string()));
        failed(&self.path, doing)(error)
    }

    /// Rewrites the file with only the waiting breaths, so that a crash at any point leaves
    /// either the old file or the new one, both whole.
    fn compact(&mut self) -> Result<(), Error> {
        self.still_whole("rewrite it")?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut bytes = Vec::with_capacity(self.live_len() as usize);
        bytes.extend_from_slice(MAGIC);
        for waiting in &self.waiting {
            bytes.extend_from_slice(&encode(WAITING, &waiting.breath));
        }
        let file = open_append(&tmp).map_err(failed(&tmp, "create it"))?;
        // Locked before it takes the spool's name, so there is no moment when the spool is
        // unlocked.
        lock(&file, &tmp)?;
        let rewrite = |file: &File| {
            file.set_len(0)?;
            (&*file).write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            sync_directory_of(&self.path)
        };
        if let Err(error) = rewrite(&file) {
            return Err(self.break_on("rewrite it", error));
        }
        self.file = file;
        self.len = bytes.len() as u64;
        Ok(())
    }
}

/// Opens and locks the spool. Between the open and the lock, the mabel holding the spool may
/// have rewritten it under the same name; then the lock is on the old file and the name is
/// opened again.
fn open_locked(path: &Path) -> Result<File, Error> {
    loop {
        let file = open_append(path).map_err(failed(path, "open it"))?;
        lock(&file, path)?;
        if still_named(&file, path).map_err(failed(path, "open it"))? {
            return Ok(file);
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

fn lock(file: &File, path: &Path) -> Result<(), Error> {
    file.try_lock().map_err(|e| match e {
        TryLockError::WouldBlock => Error::Locked {
            path: path.to_path_buf(),
        },
        TryLockError::Error(error) => Error::Io {
            path: path.to_path_buf(),
            doing: "lock it",
            error,
        },
    })
}

#[cfg(unix)]
fn still_named(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (open, named) = (file.metadata()?, fs::metadata(path)?);
    Ok((open.dev(), open.ino()) == (named.dev(), named.ino()))
}

#[cfg(not(unix))]
fn still_named(_: &File, _: &Path) -> io::Result<bool> {
    Ok(true)
}

/// A rename is durable once the directory holding it is flushed.
fn sync_directory_of(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

fn failed<'a>(path: &'a Path, doing: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |error| Error::Io {
        path: path.to_path_buf(),
        doing,
        error,
    }
}

/// What a spool file holds.
#[derive(Debug, Default, PartialEq)]
struct Recovered {
    waiting: VecDeque<Breath>,
    /// The offset of a torn last record, skipped.
    torn_at: Option<u64>,
}

fn recover(path: &Path, bytes: &[u8]) -> Result<Recovered, Error> {
    let not_a_spool = || Error::NotASpool {
        path: path.to_path_buf(),
    };
    let Some(records) = bytes.strip_prefix(MAGIC) else {
        // Empty, or made by a run that died before its first eight bytes were on disk.
        return match MAGIC.starts_with(bytes) {
            true => Ok(Recovered::default()),
            false => Err(not_a_spool()),
        };
    };
    let mut recovered = Recovered::default();
    let count = records.chunks(RECORD as usize).count();
    for (i, record) in records.chunks(RECORD as usize).enumerate() {
        let offset = HEADER + i as u64 * RECORD;
        let damaged = |problem| Error::Damaged {
            path: path.to_path_buf(),
            offset,
            problem,
        };
        match decode(record) {
            Ok((WAITING, breath)) => recovered.waiting.push_back(breath),
            Ok((WRITTEN, breath)) => {
                let waiting = &mut recovered.waiting;
                if let Some(at) = waiting.iter().position(|b| b.id == breath.id) {
                    waiting.remove(at);
                }
            }
            Ok(_) => return Err(damaged("the record there is of no known kind")),
            Err(_) if i + 1 == count => recovered.torn_at = Some(offset),
            Err(_) => {
                return Err(damaged(
                    "the record there fails its checksum, and records follow it, so no \
                     crash explains it",
                ))
            }
        }
    }
    Ok(recovered)
}

fn encode(kind: u8, breath: &Breath) -> [u8; RECORD as usize] {
    let mut record = [0; RECORD as usize];
    record[4] = kind;
    record[5..17].copy_from_slice(&breath.id.bytes());
    let millis = bson::DateTime::from_chrono(breath.time).timestamp_millis();
    record[17..25].copy_from_slice(&millis.to_le_bytes());
    record[25..33].copy_from_slice(&breath.oxygen.to_le_bytes());
    let crc = crc32(&record[4..]);
    record[..4].copy_from_slice(&crc.to_le_bytes());
    record
}

/// The record's kind and breath, or why it is not a whole record.
fn decode(record: &[u8]) -> Result<(u8, Breath), &'static str> {
    let record: &[u8; RECORD as usize] =
        record.try_into().map_err(|_| "the record is cut short")?;
    if u32::from_le_bytes(field(record, 0)) != crc32(&record[4..]) {
        return Err("the record fails its checksum");
    }
    let breath = Breath {
        id: ObjectId::from_bytes(field(record, 5)),
        time: bson::DateTime::from_millis(i64::from_le_bytes(field(record, 17))).to_chrono(),
        oxygen: f64::from_le_bytes(field(record, 25)),
    };
    Ok((record[4], breath))
}

fn field<const N: usize>(record: &[u8; RECORD as usize], at: usize) -> [u8; N] {
    let mut field = [0; N];
    field.copy_from_slice(&record[at..at + N]);
    field
}

/// CRC-32 as zlib computes it, a bit at a time: 33-byte records do not need a table.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    /// A directory of its own for one test, removed afterwards.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("mabel-{}-{test}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn spool(&self) -> PathBuf {
            self.0.join("spool")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn breaths(n: i64) -> Vec<Breath> {
        (0..n)
            .map(|i| {
                let time = Utc
                    .timestamp_millis_opt(1_795_000_000_123 + i * 1000)
                    .unwrap();
                Breath::at(time, i as f64 / 7.0)
            })
            .collect()
    }

    fn waiting(spool: &Spool) -> Vec<Breath> {
        spool.waiting.iter().map(|w| w.breath.clone()).collect()
    }

    fn record_at(i: u64) -> usize {
        (HEADER + i * RECORD) as usize
    }

    #[test]
    fn crc32_is_the_one_zlib_computes() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn a_record_keeps_the_breath_to_the_bit() {
        let breath = &breaths(3)[2];
        let record = encode(WAITING, breath);
        assert_eq!(decode(&record), Ok((WAITING, breath.clone())));
        assert_eq!(&record[5..17], &breath.id.bytes());

        let mut flipped = record;
        flipped[30] ^= 0x10;
        assert_eq!(decode(&flipped), Err("the record fails its checksum"));
        assert_eq!(decode(&record[..20]), Err("the record is cut short"));
    }

    #[test]
    fn a_new_spool_is_just_its_header() {
        let dir = Scratch::new("new");
        let spool = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(spool.waiting(), 0);
        assert_eq!(fs::read(dir.spool()).unwrap(), MAGIC);
    }

    #[test]
    fn waiting_breaths_outlive_the_run_in_order_and_may_have_been_sent() {
        let dir = Scratch::new("reopen");
        let b = breaths(4);
        let mut spool = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        for breath in &b[..3] {
            spool.push(breath).unwrap();
        }
        assert!(!spool.oldest(1)[0].sent_before);
        spool.done(&[b[0].id]).unwrap();
        drop(spool);

        let mut spool = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(waiting(&spool), &b[1..3]);
        assert!(spool.waiting.iter().all(|w| w.sent_before));
        // Reopening dropped the stale records: only the two waiting breaths remain.
        assert_eq!(spool.len, HEADER + 2 * RECORD);
        spool.push(&b[3]).unwrap();
        assert!(!spool.waiting[2].sent_before);
        spool.done(&[b[1].id]).unwrap();
        drop(spool);

        let spool = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(waiting(&spool), &b[2..4]);
    }

    #[test]
    fn batches_keep_breaths_sent_before_apart_and_are_marked_with_one_append() {
        let dir = Scratch::new("batch");
        let b = breaths(6);
        let mut spool = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        for breath in &b[..2] {
            spool.push(breath).unwrap();
        }
        drop(spool);
        let mut spool = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        for breath in &b[2..] {
            spool.push(breath).unwrap();
        }
        // The two an earlier run left may have landed; the four new ones cannot have.
        let left: Vec<Breath> = spool.oldest(10).into_iter().map(|w| w.breath).collect();
        assert_eq!(left, &b[..2]);
        let batch = spool.oldest(3);
        assert!(batch.iter().all(|w| w.sent_before));
        assert_eq!(batch.len(), 2, "still the same two, now both sent");
        spool.done(&[b[0].id, b[1].id]).unwrap();
        let batch = spool.oldest(3);
        assert_eq!(batch.len(), 3);
        assert!(batch.iter().all(|w| !w.sent_before));
        assert!(
            spool.oldest(3).iter().all(|w| w.sent_before),
            "handed out once"
        );

        let len = spool.len;
        let ids: Vec<ObjectId> = batch.iter().map(|w| w.breath.id).collect();
        spool.done(&ids).unwrap();
        assert_eq!(spool.len, len + 3 * RECORD);
        drop(spool);
        let spool = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(waiting(&spool), &b[5..]);
    }

    /// Writes three waiting breaths to a spool file and returns its bytes.
    fn three_waiting(dir: &Scratch) -> (Vec<Breath>, Vec<u8>) {
        let b = breaths(3);
        let mut spool = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        for breath in &b {
            spool.push(breath).unwrap();
        }
        drop(spool);
        (b, fs::read(dir.spool()).unwrap())
    }

    #[test]
    fn a_torn_last_record_is_skipped_and_every_other_kept() {
        let dir = Scratch::new("torn");
        let (b, bytes) = three_waiting(&dir);

        // Cut short, as by a power cut mid-append.
        let short = &bytes[..bytes.len() - 13];
        let recovered = recover(&dir.spool(), short).unwrap();
        assert_eq!(recovered.waiting, &b[..2]);
        assert_eq!(recovered.torn_at, Some(HEADER + 2 * RECORD));

        // Whole length, garbled contents.
        let mut garbled = bytes.clone();
        garbled[record_at(2) + 10] ^= 0xFF;
        let recovered = recover(&dir.spool(), &garbled).unwrap();
        assert_eq!(recovered.waiting, &b[..2]);
        assert_eq!(recovered.torn_at, Some(HEADER + 2 * RECORD));

        // Opening drops the torn record, so the next append starts on a record boundary.
        fs::write(dir.spool(), short).unwrap();
        let mut spool = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(waiting(&spool), &b[..2]);
        spool.push(&b[2]).unwrap();
        drop(spool);
        assert_eq!(fs::read(dir.spool()).unwrap(), bytes);
    }

    #[test]
    fn a_damaged_record_before_the_last_stops_the_open_and_names_its_offset() {
        let dir = Scratch::new("damaged");
        let (_, mut bytes) = three_waiting(&dir);
        bytes[record_at(1) + 20] ^= 0x01;
        fs::write(dir.spool(), &bytes).unwrap();

        let err = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap_err();
        assert!(matches!(err, Error::Damaged { offset: 41, .. }), "{err:?}");
        assert!(err.to_string().contains("at byte 41"), "{err}");
        assert_eq!(
            fs::read(dir.spool()).unwrap(),
            bytes,
            "the file was touched"
        );

        // A well-formed record of an unknown kind is damage too, even last.
        let (_, mut bytes) = three_waiting(&Scratch::new("kind"));
        let mut odd = encode(WAITING, &breaths(1)[0]);
        odd[4] = 7;
        let crc = crc32(&odd[4..]).to_le_bytes();
        odd[..4].copy_from_slice(&crc);
        bytes.extend_from_slice(&odd);
        let err = recover(&dir.spool(), &bytes).unwrap_err();
        assert!(matches!(err, Error::Damaged { offset: 107, .. }), "{err:?}");
    }

    #[test]
    fn a_file_that_is_not_a_spool_is_left_alone() {
        let dir = Scratch::new("stranger");
        fs::write(dir.spool(), "[package]\nname = \"mabel\"\n").unwrap();
        let err = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap_err();
        assert!(matches!(err, Error::NotASpool { .. }), "{err:?}");
        assert_eq!(
            fs::read(dir.spool()).unwrap(),
            b"[package]\nname = \"mabel\"\n"
        );

        // A spool whose header was cut short by a crash as it was made is simply empty.
        fs::write(dir.spool(), &MAGIC[..5]).unwrap();
        let spool = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(spool.waiting(), 0);
    }

    #[test]
    fn a_second_opener_is_refused_until_the_first_lets_go() {
        let dir = Scratch::new("locked");
        let first = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        let err = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err:?}");
        assert!(err.to_string().contains("in use by another mabel"), "{err}");
        drop(first);
        Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
    }

    #[test]
    fn the_lock_follows_the_spool_through_a_rewrite() {
        let dir = Scratch::new("relock");
        let mut spool = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap();
        let b = breaths(1);
        spool.push(&b[0]).unwrap();
        spool.compact().unwrap();
        let err = Spool::open(&dir.spool(), DEFAULT_MAX_BYTES).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    }

    #[test]
    fn a_healthy_spool_stays_small() {
        let dir = Scratch::new("healthy");
        let max = HEADER + 10 * RECORD;
        let mut spool = Spool::open(&dir.spool(), max).unwrap();
        for breath in breaths(100) {
            spool.push(&breath).unwrap();
            spool.done(&[breath.id]).unwrap();
            assert!(spool.len <= max / 2 + RECORD, "{}", spool.len);
        }
        drop(spool);
        assert!(fs::metadata(dir.spool()).unwrap().len() <= max / 2 + RECORD);
        let spool = Spool::open(&dir.spool(), max).unwrap();
        assert_eq!(spool.waiting(), 0);
    }

    #[test]
    fn a_full_spool_refuses_the_breath_and_names_it() {
        let dir = Scratch::new("full");
        let b = breaths(5);
        let max = HEADER + 3 * RECORD;
        let mut spool = Spool::open(&dir.spool(), max).unwrap();
        for breath in &b[..3] {
            spool.push(breath).unwrap();
        }
        let err = spool.push(&b[3]).unwrap_err();
        assert!(matches!(err, Error::Full { waiting: 3, .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&b[3].id.to_hex()), "{message}");
        assert!(message.contains("2026-11-18T11:06:43.123Z"), "{message}");
        assert_eq!(
            waiting(&spool),
            &b[..3],
            "the refused breath is not half-kept"
        );

        // Writing the oldest makes room, though its mark did not fit.
        spool.done(&[b[0].id]).unwrap();
        spool.push(&b[3]).unwrap();
        assert_eq!(waiting(&spool), &b[1..4]);
        assert!(spool.len <= max);
        for breath in &b[1..4] {
            spool.done(&[breath.id]).unwrap();
        }
        spool.push(&b[4]).unwrap();
        drop(spool);
        let spool = Spool::open(&dir.spool(), max).unwrap();
        assert_eq!(waiting(&spool), &b[4..]);
    }

    #[test]
    fn a_long_backlog_is_rewritten_as_it_drains() {
        let dir = Scratch::new("drain");
        let b = breaths(40);
        let max = HEADER + 100 * RECORD;
        let mut spool = Spool::open(&dir.spool(), max).unwrap();
        for breath in &b {
            spool.push(breath).unwrap();
        }
        let mut largest = 0;
        for (i, breath) in b.iter().enumerate() {
            spool.done(&[breath.id]).unwrap();
            largest = largest.max(spool.len);
            assert_eq!(spool.waiting(), b.len() - i - 1);
        }
        // Forty waiting and forty marks would be 2,648 bytes; half of it stale triggers a rewrite.
        assert!(largest < HEADER + 80 * RECORD, "{largest}");
        drop(spool);
        assert_eq!(Spool::open(&dir.spool(), max).unwrap().waiting(), 0);
    }

    #[test]
    fn a_mark_for_a_breath_not_waiting_is_ignored() {
        let b = breaths(2);
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&encode(WAITING, &b[0]));
        bytes.extend_from_slice(&encode(WRITTEN, &b[1]));
        let recovered = recover(Path::new("spool"), &bytes).unwrap();
        assert_eq!(recovered.waiting, &b[..1]);
        assert_eq!(recovered.torn_at, None);
    }
}
