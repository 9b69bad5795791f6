//! The audit's two passes, each fed one document at a time from its cursor: `ById` finds the
//! breaths lost, `ByTime` the breaths doubled, the gaps, and what the timeline shows.

use std::collections::{BTreeMap, HashMap};

use bson::oid::ObjectId;
use bson::RawDocument;
use chrono::DateTime;

use super::timeline::Timeline;
use super::MINUTE;
use crate::breath::{process_and_counter, COUNTER_MODULUS};

/// The longest gaps the report lists.
const GAPS: usize = 5;
/// A counter further ahead than this is taken as out of order, not as breaths lost: a
/// process would need 97 days of breaths a second to lose that many.
const MOST_LOST: u32 = COUNTER_MODULUS / 2;
/// The usual gap is the mean of the gaps in the median bucket of a histogram with this many
/// buckets per doubling of the gap.
const BUCKETS_PER_DOUBLING: f64 = 64.0;

/// The time between two consecutive breaths, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gap {
    pub start: i64,
    pub length: i64,
}

/// The three fields of a breath, as the audit needs them.
struct Breath {
    id: ObjectId,
    time: i64,
    oxygen: f64,
}

/// A time no date can hold (BSON's range is far wider than chrono's years of +-262,000) is no
/// breath mabel wrote, and its differences from others would overflow the gaps and timeline.
fn breath(doc: &RawDocument) -> Option<Breath> {
    let time = doc.get_datetime("time").ok()?.timestamp_millis();
    DateTime::from_timestamp_millis(time)?;
    Some(Breath {
        id: doc.get_object_id("_id").ok()?,
        time,
        oxygen: doc.get_f64("oxygen").ok()?,
    })
}

/// The first pass, in `_id` order: each process's last counter, and what was skipped.
#[derive(Default)]
pub struct ById {
    pub documents: u64,
    pub foreign: u64,
    /// Process bytes -> the last counter seen and its breath's time.
    pub last: HashMap<[u8; 5], (u32, i64)>,
    pub lost: u64,
    /// Breaths lost, by the minute they were due in (minutes since the epoch).
    pub lost_by_minute: BTreeMap<i64, u64>,
    pub earliest: Option<i64>,
    pub latest: Option<i64>,
}

impl ById {
    pub fn see(&mut self, doc: &RawDocument) {
        self.documents += 1;
        let Some(breath) = breath(doc) else {
            self.foreign += 1;
            return;
        };
        self.earliest = Some(self.earliest.map_or(breath.time, |t| t.min(breath.time)));
        self.latest = Some(self.latest.map_or(breath.time, |t| t.max(breath.time)));
        let (process, counter) = process_and_counter(&breath.id);
        let Some((before, before_time)) = self.last.get(&process).copied() else {
            self.last.insert(process, (counter, breath.time));
            return;
        };
        let step = counter.wrapping_sub(before) % COUNTER_MODULUS;
        if step == 0 || step >= MOST_LOST {
            return;
        }
        if step > 1 {
            let missing = u64::from(step - 1);
            self.lost += missing;
            let due = before_time + (breath.time - before_time) / 2;
            *self
                .lost_by_minute
                .entry(due.div_euclid(MINUTE))
                .or_default() += missing;
        }
        self.last.insert(process, (counter, breath.time));
    }
}

/// The second pass, in `time` then `_id` order: each breath once, and the gaps between them.
pub struct ByTime {
    pub breaths: u64,
    pub doubled: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// The oxygen (as bits) of each breath seen at time `last`.
    same_time: Vec<u64>,
    pub gaps: Vec<Gap>,
    /// Gaps by `bucket`: how many, and their sum in milliseconds.
    histogram: Vec<(u64, i64)>,
    pub timeline: Timeline,
}

impl ByTime {
    pub fn new(timeline: Timeline) -> ByTime {
        ByTime {
            breaths: 0,
            doubled: 0,
            first: None,
            last: None,
            same_time: Vec::new(),
            gaps: Vec::new(),
            histogram: Vec::new(),
            timeline,
        }
    }

    pub fn see(&mut self, doc: &RawDocument) {
        let Some(breath) = breath(doc) else {
            return;
        };
        let oxygen = breath.oxygen.to_bits();
        if self.last == Some(breath.time) && self.same_time.contains(&oxygen) {
            self.doubled += 1;
            self.timeline.mark_doubled(breath.time);
            return;
        }
        self.breaths += 1;
        self.timeline.count(breath.time);
        self.first.get_or_insert(breath.time);
        if let Some(last) = self.last.filter(|&t| t != breath.time) {
            self.same_time.clear();
            self.gap(Gap {
                start: last,
                length: breath.time - last,
            });
        }
        self.same_time.push(oxygen);
        self.last = Some(breath.time);
    }

    fn gap(&mut self, gap: Gap) {
        let bucket = bucket(gap.length);
        if self.histogram.len() <= bucket {
            self.histogram.resize(bucket + 1, (0, 0));
        }
        self.histogram[bucket].0 += 1;
        self.histogram[bucket].1 += gap.length;
        self.timeline.touch(gap);
        if self.gaps.len() < GAPS || self.gaps[GAPS - 1].length < gap.length {
            let at = self.gaps.partition_point(|g| g.length >= gap.length);
            self.gaps.insert(at, gap);
            self.gaps.truncate(GAPS);
        }
    }

    /// About the median gap: within a bucket's width (1 %) of it, and exact when the gaps
    /// around the median are all the same.
    pub fn usual_gap(&self) -> Option<f64> {
        let total: u64 = self.histogram.iter().map(|(n, _)| n).sum();
        let mut seen = 0;
        let (n, sum) = self.histogram.iter().find(|(n, _)| {
            seen += n;
            total > 0 && seen * 2 >= total
        })?;
        Some(*sum as f64 / *n as f64)
    }
}

/// Gaps of 0 ms and up in buckets a 64th of a doubling wide.
fn bucket(milliseconds: i64) -> usize {
    ((milliseconds.max(0) as f64 + 1.0).log2() * BUCKETS_PER_DOUBLING) as usize
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use bson::{rawdoc, RawDocumentBuf};

    /// A breath document of process `p` with counter `c`, taken `ms` after a minute starts.
    pub fn breath(p: u8, c: u32, ms: i64, oxygen: f64) -> RawDocumentBuf {
        let time = 1_795_000_020_000 + ms;
        let [_, high, middle, low] = c.to_be_bytes();
        let id = ObjectId::from_parts((time / 1000) as u32, [p; 5], [high, middle, low]);
        rawdoc! { "_id": id, "time": bson::DateTime::from_millis(time), "oxygen": oxygen }
    }

    /// The first pass over `docs`, given in `_id` order.
    pub fn by_id(docs: &[RawDocumentBuf]) -> ById {
        let mut by_id = ById::default();
        for doc in docs {
            by_id.see(doc);
        }
        by_id
    }

    /// The second pass over `docs`, given in time order.
    pub fn by_time(docs: &[RawDocumentBuf]) -> ByTime {
        let by_id = by_id(docs);
        let mut by_time = ByTime::new(Timeline::spanning(by_id.earliest, by_id.latest));
        for doc in docs {
            by_time.see(doc);
        }
        by_time
    }

    #[test]
    fn skipped_counters_are_lost_breaths_per_process() {
        let by_id = by_id(&[
            breath(1, 10, 0, 0.1),
            breath(2, 500, 0, 0.2),
            breath(1, 11, 1000, 0.3),
            breath(2, 501, 1000, 0.4),
            breath(1, 14, 4000, 0.5),  // 12 and 13 lost
            breath(2, 503, 3000, 0.6), // 502 lost
        ]);
        assert_eq!(by_id.lost, 3);
        assert_eq!(by_id.last.len(), 2);
        assert_eq!(by_id.foreign, 0);
    }

    #[test]
    fn counters_wrap_around_without_a_loss() {
        let max = COUNTER_MODULUS - 1;
        let clean = by_id(&[
            breath(1, max - 1, 0, 0.1),
            breath(1, max, 10, 0.2),
            breath(1, 0, 20, 0.3),
            breath(1, 1, 30, 0.4),
        ]);
        assert_eq!(clean.lost, 0);
        let lossy = by_id(&[breath(1, max, 0, 0.1), breath(1, 1, 10, 0.2)]);
        assert_eq!(lossy.lost, 1);
    }

    #[test]
    fn a_counter_out_of_order_is_not_a_loss() {
        let by_id = by_id(&[
            breath(1, 10, 0, 0.1),
            breath(1, 11, 1000, 0.2),
            breath(1, 5, 2000, 0.3),
            breath(1, 12, 3000, 0.4),
        ]);
        assert_eq!(by_id.lost, 0);
    }

    #[test]
    fn documents_that_are_not_breaths_are_foreign() {
        let by_id = by_id(&[
            rawdoc! { "_id": "not an ObjectId", "time": bson::DateTime::now(), "oxygen": 0.5 },
            rawdoc! { "_id": ObjectId::new(), "oxygen": 0.5 },
            rawdoc! { "_id": ObjectId::new(), "time": bson::DateTime::now(), "oxygen": "high" },
            breath(1, 1, 0, 0.5),
        ]);
        assert_eq!((by_id.documents, by_id.foreign, by_id.lost), (4, 3, 0));
    }

    #[test]
    fn a_time_no_date_holds_is_foreign_not_an_overflow() {
        let docs = [
            rawdoc! { "_id": ObjectId::new(), "time": bson::DateTime::MIN, "oxygen": 0.5 },
            breath(1, 1, 0, 0.5),
            rawdoc! { "_id": ObjectId::new(), "time": bson::DateTime::MAX, "oxygen": 0.5 },
        ];
        let by_id = by_id(&docs);
        assert_eq!((by_id.documents, by_id.foreign, by_id.lost), (3, 2, 0));
        let by_time = by_time(&docs);
        assert_eq!((by_time.breaths, by_time.gaps.len()), (1, 0));
    }

    #[test]
    fn the_same_time_and_oxygen_twice_is_a_double() {
        let by_time = by_time(&[
            breath(1, 1, 0, 0.1),
            breath(1, 2, 1000, 0.2),
            breath(2, 9, 1000, 0.3), // another writer at the same millisecond
            breath(3, 7, 1000, 0.2), // breath 2 again under another id
            breath(1, 3, 2000, 0.2), // same oxygen, another time
        ]);
        assert_eq!((by_time.breaths, by_time.doubled), (4, 1));
    }

    #[test]
    fn gaps_are_listed_longest_first_and_the_usual_one_is_the_median() {
        let times = [
            0, 1000, 2000, 9000, 10000, 11000, 14000, 15000, 16000, 17000,
        ];
        let docs: Vec<_> = (0..)
            .zip(times)
            .map(|(c, t)| breath(1, c, t, 0.5))
            .collect();
        let by_time = by_time(&docs);
        let lengths: Vec<i64> = by_time.gaps.iter().map(|g| g.length).collect();
        assert_eq!(lengths, [7000, 3000, 1000, 1000, 1000]);
        assert_eq!(by_time.gaps[0].start, 1_795_000_022_000);
        assert_eq!(by_time.usual_gap(), Some(1000.0));
    }
}
