//! One breath: the document the seed writes every second.
//!
//! The `_id` is made here, on the client, before any attempt to write, so that every retry
//! sends the same document and a duplicate-key error can prove an earlier attempt landed.
//!
//! The ids are mabel's own rather than `ObjectId::new()`'s, so that a missing one means a
//! missing breath: five random bytes chosen once per process, and a counter that only breaths
//! advance. `mabel audit` reads each process's breaths in `_id` order and counts every skipped
//! counter as a breath lost. The bson crate's counter would not do: it is shared by all the
//! code in the process that makes an ObjectId, the driver included.

use std::sync::{Mutex, OnceLock, PoisonError};

use bson::oid::ObjectId;
use bson::{doc, Document};
use chrono::{DateTime, Utc};

#[derive(Clone, Debug, PartialEq)]
pub struct Breath {
    pub id: ObjectId,
    pub time: DateTime<Utc>,
    pub oxygen: f64,
}

impl Breath {
    /// Measures a breath now. The oxygen is random, as in the seed's test rig.
    pub fn new() -> Breath {
        Breath::at(Utc::now(), rand::random())
    }

    /// A breath taken at `time`. BSON keeps milliseconds, so the time is cut to milliseconds
    /// here and the breath in memory is exactly the breath in the database.
    pub fn at(time: DateTime<Utc>, oxygen: f64) -> Breath {
        let time = bson::DateTime::from_chrono(time).to_chrono();
        let seconds = time.timestamp().clamp(0, i64::from(u32::MAX)) as u32;
        let id = IDS
            .get_or_init(|| Mutex::new(Ids::random()))
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next(seconds);
        Breath { id, time, oxygen }
    }

    /// The breath as a message names it: `<_id> time <time> oxygen <oxygen>`, enough to find
    /// it, or to write it by hand, when it could not be kept.
    pub fn named(&self) -> String {
        format!(
            "{} time {} oxygen {}",
            self.id,
            self.time.format(TIME_FORMAT),
            self.oxygen
        )
    }

    pub fn to_document(&self) -> Document {
        doc! {
            "_id": self.id,
            "time": bson::DateTime::from_chrono(self.time),
            "oxygen": self.oxygen,
        }
    }
}

/// How mabel prints every time, a breath's or a log line's: RFC 3339 in UTC, to the
/// millisecond, so that lines from mabel, its audit and the simulator sort together.
pub const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// The counter of an ObjectId has three bytes.
pub const COUNTER_MODULUS: u32 = 1 << 24;

/// An id's process bytes (five, random per process) and its counter (three), which only this
/// process's breaths advance: the audit reads a counter skipped as a breath lost.
pub fn process_and_counter(id: &ObjectId) -> ([u8; 5], u32) {
    let [_, _, _, _, p0, p1, p2, p3, p4, high, middle, low] = id.bytes();
    (
        [p0, p1, p2, p3, p4],
        u32::from_be_bytes([0, high, middle, low]),
    )
}

static IDS: OnceLock<Mutex<Ids>> = OnceLock::new();

/// The breath ids of this process.
struct Ids {
    process: [u8; 5],
    /// The counter of the next id, below `COUNTER_MODULUS`.
    next: u32,
    /// The seconds of the last id.
    seconds: u32,
}

impl Ids {
    /// Random process bytes and a random first counter, as `ObjectId::new()` would choose.
    fn random() -> Ids {
        Ids {
            process: rand::random(),
            next: rand::random::<u32>() % COUNTER_MODULUS,
            seconds: 0,
        }
    }

    /// The id of a breath taken at `seconds` since the epoch. Ids sort in the order they are
    /// made, which is what lets the audit expect consecutive counters in `_id` order: the
    /// seconds never go back (a clock stepped back keeps the last id's seconds), and when the
    /// counter wraps to 0 they move on by at least one.
    fn next(&mut self, seconds: u32) -> ObjectId {
        let counter = self.next;
        let floor = match counter {
            0 => self.seconds.saturating_add(1),
            _ => self.seconds,
        };
        self.seconds = seconds.max(floor);
        self.next = (counter + 1) % COUNTER_MODULUS;
        let [_, high, middle, low] = counter.to_be_bytes();
        ObjectId::from_parts(self.seconds, self.process, [high, middle, low])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_the_seeds_shape() {
        let breath = Breath::new();
        let doc = breath.to_document();
        let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        assert_eq!(keys, ["_id", "time", "oxygen"]);
        assert_eq!(doc.get_object_id("_id").unwrap(), breath.id);
        assert_eq!(doc.get_datetime("time").unwrap().to_chrono(), breath.time);
        let oxygen = doc.get_f64("oxygen").unwrap();
        assert!((0.0..1.0).contains(&oxygen));
    }

    #[test]
    fn every_breath_has_its_own_id() {
        assert_ne!(Breath::new().id, Breath::new().id);
    }

    #[test]
    fn time_is_kept_to_the_millisecond() {
        let time = DateTime::parse_from_rfc3339("2026-11-25T16:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let breath = Breath::at(time, 0.5);
        assert_eq!(breath.time.timestamp_subsec_nanos(), 123_000_000);
    }

    fn counter(id: &ObjectId) -> u32 {
        process_and_counter(id).1
    }

    fn process(id: &ObjectId) -> [u8; 5] {
        process_and_counter(id).0
    }

    fn ids(next: u32) -> Ids {
        Ids {
            process: [1, 2, 3, 4, 5],
            next,
            seconds: 0,
        }
    }

    #[test]
    fn one_process_counts_up_by_one_under_fixed_process_bytes() {
        let mut ids = ids(41);
        let made: Vec<ObjectId> = (0..3).map(|i| ids.next(1_000 + i)).collect();
        assert_eq!(made.iter().map(counter).collect::<Vec<_>>(), [41, 42, 43]);
        assert!(made.iter().all(|id| process(id) == [1, 2, 3, 4, 5]));
        assert_eq!(made[2].timestamp().timestamp_millis(), 1_002_000);
    }

    #[test]
    fn ids_keep_their_order_across_a_wrap_and_a_clock_stepped_back() {
        let mut ids = ids(COUNTER_MODULUS - 2);
        let made = [
            ids.next(1_000),
            ids.next(1_000),
            ids.next(1_000), // counter 0, in the same second
            ids.next(990),   // the clock went back ten seconds
            ids.next(1_002),
        ];
        let counters: Vec<u32> = made.iter().map(counter).collect();
        assert_eq!(
            counters,
            [COUNTER_MODULUS - 2, COUNTER_MODULUS - 1, 0, 1, 2]
        );
        assert!(made.windows(2).all(|pair| pair[0] < pair[1]), "{made:?}");
        assert_eq!(made[2].timestamp().timestamp_millis(), 1_001_000);
        assert_eq!(made[4].timestamp().timestamp_millis(), 1_002_000);
    }
}
