//! Spool files written directly, in the format the top of `src/spool.rs` documents, so that a
//! test or a benchmark can hand mabel a day's backlog without measuring it for a day.
//!
//! The breaths look as if one mabel process had measured them a second apart during an
//! outage: their `_id`s carry one process's five bytes and consecutive counters, which is what
//! `mabel audit` expects of breaths that were all written.

use std::fs;
use std::path::{Path, PathBuf};

use bson::oid::ObjectId;
use bson::{doc, DateTime, Document};

const MAGIC: &[u8; 8] = b"MABELSP1";
const RECORD: usize = 33;
const WAITING: u8 = 1;
const WRITTEN: u8 = 2;

/// A directory of its own for one test in one process, for a spool and its neighbours;
/// removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let name = format!("{test}-{}", std::process::id());
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("make the test's directory");
        Scratch(dir)
    }

    /// Where the test's spool goes.
    pub fn spool(&self) -> PathBuf {
        self.0.join("spool")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A breath on the spool: what mabel must store, to the bit.
#[derive(Clone, Debug, PartialEq)]
pub struct Spooled {
    pub id: ObjectId,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    pub oxygen: f64,
}

impl Spooled {
    /// The document mabel stores for this breath.
    pub fn to_document(&self) -> Document {
        doc! { "_id": self.id, "time": DateTime::from_millis(self.time), "oxygen": self.oxygen }
    }
}

/// `n` breaths a second apart, the last a second ago, as one mabel process makes them.
pub fn backlog(n: usize) -> Vec<Spooled> {
    let process: [u8; 5] = rand::random();
    // Room for `n` counters before the three bytes wrap.
    let first = rand::random::<u32>() % ((1 << 24) - n as u32);
    let start = DateTime::now().timestamp_millis() - n as i64 * 1000;
    (0..n)
        .map(|i| {
            let time = start + i as i64 * 1000;
            let [_, high, middle, low] = (first + i as u32).to_be_bytes();
            Spooled {
                id: ObjectId::from_parts((time / 1000) as u32, process, [high, middle, low]),
                time,
                oxygen: rand::random(),
            }
        })
        .collect()
}

/// Writes a spool at `path` in which every one of `breaths` waits, oldest first.
pub fn write(path: &Path, breaths: &[Spooled]) {
    let mut bytes = Vec::with_capacity(MAGIC.len() + breaths.len() * RECORD);
    bytes.extend_from_slice(MAGIC);
    for breath in breaths {
        bytes.extend_from_slice(&record(WAITING, breath));
    }
    fs::write(path, bytes).expect("write the spool file");
}

/// The `_id`s of the breaths waiting in the spool at `path`, oldest first. Checksums are
/// mabel's business; this only follows the kinds.
pub fn waiting_in(path: &Path) -> Vec<ObjectId> {
    let bytes = fs::read(path).unwrap_or_default();
    let mut waiting = Vec::new();
    for record in bytes
        .get(MAGIC.len()..)
        .unwrap_or_default()
        .chunks_exact(RECORD)
    {
        let id = ObjectId::from_bytes(record[5..17].try_into().expect("12 bytes"));
        match record[4] {
            WAITING => waiting.push(id),
            WRITTEN => waiting.retain(|w| *w != id),
            kind => panic!("record of kind {kind} in {}", path.display()),
        }
    }
    waiting
}

/// One record: CRC-32 of bytes 4..33, kind, `_id`, time (i64 ms) and oxygen (f64), numbers
/// little-endian.
fn record(kind: u8, breath: &Spooled) -> [u8; RECORD] {
    let mut record = [0; RECORD];
    record[4] = kind;
    record[5..17].copy_from_slice(&breath.id.bytes());
    record[17..25].copy_from_slice(&breath.time.to_le_bytes());
    record[25..33].copy_from_slice(&breath.oxygen.to_le_bytes());
    let crc = crc32(&record[4..]);
    record[..4].copy_from_slice(&crc.to_le_bytes());
    record
}

/// CRC-32 (IEEE) as zlib computes it.
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
