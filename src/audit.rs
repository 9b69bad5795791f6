//! `mabel audit`: reads the breaths back and says whether any was lost or doubled, so that
//! "losing nothing, doubling nothing" is something a person can check, not only a promise.
//!
//! Two passes over streaming cursors, each keeping the same small state however many
//! breaths there are:
//!
//! - By `_id`, for breaths lost. A breath's id is its seconds, five bytes fixed per writing
//!   process and a counter that only breaths advance (see `breath`), so in `_id` order each
//!   process's breaths come with counters one after another. A counter skipped is a breath
//!   built and never stored. Only the last counter of each process is kept. Nothing beyond a
//!   process's first and last breath in the window can show, so neither can a breath lost
//!   as its writer stopped: mabel names that one itself when it gives up.
//! - By `time`, then `_id`, for breaths doubled: two documents with the same time and oxygen
//!   are one breath stored twice. This pass also gives the count, the span, the longest gaps
//!   and the timeline.
//!
//! A document that is not a breath (its `_id` no ObjectId, no `time` date or no `oxygen`
//! double) is counted as foreign and otherwise left alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use bson::oid::ObjectId;
use bson::{doc, Document, RawDocument, RawDocumentBuf};
use chrono::{DateTime, Utc};
use mongodb::error::Error;
use mongodb::options::{ReadPreference, SelectionCriteria, ServerAddress};
use mongodb::sync::Database;
use mongodb::IndexModel;

use crate::config::AuditSettings;

/// Documents per batch: about half a megabyte of breaths, so memory stays flat whatever the
/// server's own batch size (16 MB) would be.
const BATCH: u32 = 10_000;
/// The longest gaps the report lists.
const GAPS: usize = 5;
/// The most characters the timeline may take; its cells widen to fit.
const MAX_CELLS: i64 = 480;
const ROW: usize = 60;
const MINUTE: i64 = 60_000;
/// Cell widths in minutes, from one minute to a day; past that, whole days.
const WIDTHS: &[i64] = &[1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440];
const COUNTER_MODULUS: u32 = 1 << 24;
/// A counter further ahead than this is taken as out of order, not as breaths lost: a
/// process would need 97 days of breaths a second to lose that many.
const MOST_LOST: u32 = COUNTER_MODULUS / 2;
/// The usual gap is the mean of the gaps in the median bucket of a histogram with this many
/// buckets per doubling of the gap.
const BUCKETS_PER_DOUBLING: f64 = 64.0;

/// What the audit found.
#[derive(Debug)]
pub struct Report {
    pub db: String,
    pub collection: String,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Every document read, breaths or not.
    pub documents: u64,
    /// Breaths stored, each counted once however often it is stored.
    pub breaths: u64,
    pub lost: u64,
    /// Extra copies of breaths stored more than once.
    pub doubled: u64,
    pub foreign: u64,
    pub processes: usize,
    /// Times of the first and last breath, in milliseconds since the epoch.
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// The median gap between consecutive breaths, in milliseconds.
    pub usual_gap: Option<f64>,
    /// The longest gaps, longest first.
    pub gaps: Vec<Gap>,
    pub timeline: Timeline,
}

/// The time between two consecutive breaths, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gap {
    pub start: i64,
    pub length: i64,
}

/// One character per cell of time, from `start`.
#[derive(Debug, Default)]
pub struct Timeline {
    pub start: i64,
    pub cell: i64,
    cells: Vec<Cell>,
}

#[derive(Clone, Debug, Default)]
struct Cell {
    breaths: u64,
    longest_gap: i64,
    lost: bool,
    doubled: bool,
}

/// The three fields of a breath, as the audit needs them.
struct Breath {
    id: ObjectId,
    time: i64,
    oxygen: f64,
}

/// Reads the breaths of `settings`' collection in its window and reports on them.
/// Both passes read one member, the one the read preference picks first: two members can
/// hold different majority snapshots (one lags), and passes that each read another would
/// count the writers of one snapshot and the breaths of the other.
pub fn audit(db: &Database, settings: &AuditSettings) -> Result<Report, Error> {
    let breaths = db.collection::<RawDocumentBuf>(&settings.collection);
    let member = one_member(db)?;
    let filter = window(settings);
    let mut holes = Holes::default();
    let mut cursor = breaths
        .find(filter.clone())
        .sort(doc! { "_id": 1 })
        .selection_criteria(member.clone())
        .batch_size(BATCH)
        .run()?;
    while cursor.advance()? {
        holes.see(cursor.current());
    }

    let mut order = Order::new(Timeline::spanning(holes.earliest, holes.latest));
    let mut cursor = breaths
        .find(filter)
        .sort(by_time())
        .selection_criteria(member)
        .batch_size(BATCH)
        .allow_disk_use(true)
        .run()?;
    while cursor.advance()? {
        if let Some(breath) = breath(cursor.current()) {
            order.see(&breath);
        }
    }
    Ok(Report::new(settings, holes, order))
}

/// The member the read preference picks now, asked its name (`hello`'s `me`) and then
/// chosen by that name.
fn one_member(db: &Database) -> Result<SelectionCriteria, Error> {
    let picked = db
        .selection_criteria()
        .cloned()
        .unwrap_or(SelectionCriteria::ReadPreference(ReadPreference::Primary));
    let hello = db
        .run_command(doc! { "hello": 1 })
        .selection_criteria(picked.clone())
        .run()?;
    let Ok(me) = hello.get_str("me") else {
        // Not a replica-set member (a standalone has one member anyway).
        return Ok(picked);
    };
    let me = ServerAddress::parse(me)?;
    Ok(SelectionCriteria::Predicate(Arc::new(move |server| {
        server.address() == &me
    })))
}

/// The order of the audit's second pass. On a year of breaths a server sorts that only with an
/// index, so `mabel run` creates one (`index`); without it the sort spills to disk, or fails.
fn by_time() -> Document {
    doc! { "time": 1, "_id": 1 }
}

/// The index that serves the audit's time-ordered pass.
pub fn index() -> IndexModel {
    IndexModel::builder().keys(by_time()).build()
}

/// `{time: {$gte: since, $lt: until}}`, with only the bounds given.
fn window(settings: &AuditSettings) -> Document {
    let mut range = Document::new();
    if let Some(since) = settings.since {
        range.insert("$gte", bson::DateTime::from_chrono(since));
    }
    if let Some(until) = settings.until {
        range.insert("$lt", bson::DateTime::from_chrono(until));
    }
    match range.is_empty() {
        true => Document::new(),
        false => doc! { "time": range },
    }
}

fn breath(doc: &RawDocument) -> Option<Breath> {
    Some(Breath {
        id: doc.get_object_id("_id").ok()?,
        time: doc.get_datetime("time").ok()?.timestamp_millis(),
        oxygen: doc.get_f64("oxygen").ok()?,
    })
}

/// The first pass: each process's last counter, and what was skipped.
#[derive(Default)]
struct Holes {
    documents: u64,
    foreign: u64,
    /// Process bytes -> the last counter seen and its breath's time.
    last: HashMap<[u8; 5], (u32, i64)>,
    lost: u64,
    /// Breaths lost, by the minute they were due in (minutes since the epoch).
    lost_by_minute: BTreeMap<i64, u64>,
    earliest: Option<i64>,
    latest: Option<i64>,
}

impl Holes {
    fn see(&mut self, doc: &RawDocument) {
        self.documents += 1;
        let Some(breath) = breath(doc) else {
            self.foreign += 1;
            return;
        };
        self.earliest = Some(self.earliest.map_or(breath.time, |t| t.min(breath.time)));
        self.latest = Some(self.latest.map_or(breath.time, |t| t.max(breath.time)));
        let bytes = breath.id.bytes();
        let process = [bytes[4], bytes[5], bytes[6], bytes[7], bytes[8]];
        let counter = u32::from_be_bytes([0, bytes[9], bytes[10], bytes[11]]);
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

/// The second pass, in time order.
struct Order {
    breaths: u64,
    doubled: u64,
    first: Option<i64>,
    last: Option<i64>,
    /// The oxygen (as bits) of each breath seen at time `last`.
    same_time: Vec<u64>,
    gaps: Vec<Gap>,
    /// Gaps by `bucket`: how many, and their sum in milliseconds.
    histogram: Vec<(u64, i64)>,
    timeline: Timeline,
}

impl Order {
    fn new(timeline: Timeline) -> Order {
        Order {
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

    fn see(&mut self, breath: &Breath) {
        let oxygen = breath.oxygen.to_bits();
        if self.last == Some(breath.time) && self.same_time.contains(&oxygen) {
            self.doubled += 1;
            if let Some(cell) = self.timeline.at(breath.time) {
                cell.doubled = true;
            }
            return;
        }
        self.breaths += 1;
        if let Some(cell) = self.timeline.at(breath.time) {
            cell.breaths += 1;
        }
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
    fn usual_gap(&self) -> Option<f64> {
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

impl Timeline {
    /// Cells from `earliest` to `latest`, as narrow as `MAX_CELLS` allows.
    fn spanning(earliest: Option<i64>, latest: Option<i64>) -> Timeline {
        let (Some(earliest), Some(latest)) = (earliest, latest) else {
            return Timeline::default();
        };
        let minutes = (latest - earliest) / MINUTE + 1;
        let width = WIDTHS
            .iter()
            .copied()
            .find(|w| minutes / w < MAX_CELLS)
            .unwrap_or_else(|| (minutes / MAX_CELLS / 1440 + 1) * 1440);
        let cell = width * MINUTE;
        let start = earliest.div_euclid(cell) * cell;
        let count = (latest - start) / cell + 1;
        Timeline {
            start,
            cell,
            cells: vec![Cell::default(); count as usize],
        }
    }

    /// The cell of `time`; times outside (from breaths written between the passes) go to
    /// the nearest.
    fn at(&mut self, time: i64) -> Option<&mut Cell> {
        let index = self.index(time);
        self.cells.get_mut(index)
    }

    fn index(&self, time: i64) -> usize {
        let last = self.cells.len().saturating_sub(1);
        if self.cell == 0 || time < self.start {
            return 0;
        }
        (((time - self.start) / self.cell) as usize).min(last)
    }

    /// Every cell a gap spans remembers the longest gap over it.
    fn touch(&mut self, gap: Gap) {
        let (from, to) = (self.index(gap.start), self.index(gap.start + gap.length));
        for cell in self.cells.iter_mut().take(to + 1).skip(from) {
            cell.longest_gap = cell.longest_gap.max(gap.length);
        }
    }

    fn mark_lost(&mut self, minute: i64) {
        if let Some(cell) = self.at(minute * MINUTE) {
            cell.lost = true;
        }
    }

    /// `#` breaths as usual, `.` a gap longer than `gap` or no breath, `x` lost, `d` doubled.
    fn render(&self, gap: f64) -> String {
        self.cells
            .iter()
            .map(|cell| match cell {
                Cell { lost: true, .. } => 'x',
                Cell { doubled: true, .. } => 'd',
                Cell { breaths: 0, .. } => '.',
                Cell { longest_gap, .. } if *longest_gap as f64 > gap => '.',
                _ => '#',
            })
            .collect()
    }
}

/// A gap worth a `.`: more than twice the usual gap, and more than a second over it.
fn notable(usual_gap: Option<f64>) -> f64 {
    let usual = usual_gap.unwrap_or(0.0);
    (2.0 * usual).max(usual + 1000.0)
}

impl Report {
    fn new(settings: &AuditSettings, holes: Holes, order: Order) -> Report {
        let usual_gap = order.usual_gap();
        let mut timeline = order.timeline;
        for &minute in holes.lost_by_minute.keys() {
            timeline.mark_lost(minute);
        }
        Report {
            db: settings.db.clone(),
            collection: settings.collection.clone(),
            since: settings.since,
            until: settings.until,
            documents: holes.documents,
            breaths: order.breaths,
            lost: holes.lost,
            doubled: order.doubled,
            foreign: holes.foreign,
            processes: holes.last.len(),
            first: order.first,
            last: order.last,
            usual_gap,
            gaps: order.gaps,
            timeline,
        }
    }

    /// Nothing lost, nothing doubled.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.doubled == 0
    }

    /// The report for a person: a few lines of figures, the longest gaps and the timeline.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let window = match (self.since, self.until) {
            (None, None) => String::from("all breaths"),
            (since, until) => format!(
                "breaths from {} until {}",
                since.map_or("the first".into(), |t| time(t.timestamp_millis())),
                until.map_or("the last".into(), |t| time(t.timestamp_millis())),
            ),
        };
        let _ = writeln!(out, "{}.{}, {window}", self.db, self.collection);
        let (Some(first), Some(last)) = (self.first, self.last) else {
            let _ = writeln!(out, "no breaths");
            self.foreign_line(&mut out);
            return out;
        };
        let processes = match self.processes {
            1 => String::from("1 process"),
            n => format!("{n} processes"),
        };
        let _ = writeln!(
            out,
            "breaths       {} from {processes}, {} to {} ({})",
            self.breaths,
            time(first),
            time(last),
            span(last - first)
        );
        let _ = writeln!(out, "lost          {}", self.lost);
        let _ = writeln!(out, "doubled       {}", self.doubled);
        self.foreign_line(&mut out);
        if let Some(usual) = self.usual_gap {
            let _ = writeln!(out, "usual gap     {}", seconds(usual));
        }
        for (i, gap) in self.gaps.iter().enumerate() {
            let label = if i == 0 { "longest gaps" } else { "" };
            let _ = writeln!(
                out,
                "{label:<13} {:>9}  after {}",
                seconds(gap.length as f64),
                time(gap.start)
            );
        }
        let notable = notable(self.usual_gap);
        let _ = writeln!(
            out,
            "timeline      one character = {}: # as usual, . a gap over {}, x lost, d doubled",
            width(self.timeline.cell),
            seconds(notable)
        );
        let cells = self.timeline.render(notable);
        let rows = cells.as_bytes().chunks(ROW);
        for (i, row) in rows.enumerate() {
            let start = self.timeline.start + (i * ROW) as i64 * self.timeline.cell;
            let label = DateTime::from_timestamp_millis(start)
                .map(|t| t.format("%Y-%m-%d %H:%MZ").to_string())
                .unwrap_or_default();
            let _ = writeln!(out, "  {label}  {}", String::from_utf8_lossy(row));
        }
        let _ = writeln!(out, "{}", self.verdict());
        out
    }

    fn foreign_line(&self, out: &mut String) {
        if self.foreign > 0 {
            let _ = writeln!(
                out,
                "foreign       {} documents that are not breaths (no ObjectId _id, time date \
                 or oxygen double), left out",
                self.foreign
            );
        }
    }

    /// One line: what went wrong, or that nothing did.
    pub fn verdict(&self) -> String {
        match (self.lost, self.doubled) {
            (0, 0) => String::from("nothing lost, nothing doubled"),
            (1, doubled) => format!("1 breath lost, {doubled} doubled"),
            (lost, doubled) => format!("{lost} breaths lost, {doubled} doubled"),
        }
    }

    /// The report as one JSON object; times in RFC 3339, durations in seconds.
    pub fn json(&self) -> String {
        let notable = notable(self.usual_gap);
        let gaps: Vec<serde_json::Value> = self
            .gaps
            .iter()
            .map(|g| serde_json::json!({ "start": time(g.start), "seconds": g.length as f64 / 1000.0 }))
            .collect();
        serde_json::json!({
            "db": self.db,
            "collection": self.collection,
            "since": self.since.map(|t| time(t.timestamp_millis())),
            "until": self.until.map(|t| time(t.timestamp_millis())),
            "documents": self.documents,
            "breaths": self.breaths,
            "lost": self.lost,
            "doubled": self.doubled,
            "foreign": self.foreign,
            "processes": self.processes,
            "first": self.first.map(time),
            "last": self.last.map(time),
            "span_seconds": self.first.zip(self.last).map(|(f, l)| (l - f) as f64 / 1000.0),
            "usual_gap_seconds": self.usual_gap.map(|g| g.round() / 1000.0),
            "longest_gaps": gaps,
            "timeline": {
                "start": time(self.timeline.start),
                "cell_seconds": self.timeline.cell / 1000,
                "cells": self.timeline.render(notable),
            },
        })
        .to_string()
    }
}

/// A time as the `wrote` lines print it.
fn time(milliseconds: i64) -> String {
    DateTime::from_timestamp_millis(milliseconds)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| milliseconds.to_string())
}

fn seconds(milliseconds: f64) -> String {
    format!("{:.3} s", milliseconds / 1000.0)
}

/// A timeline cell's width: whole minutes, hours or days.
fn width(milliseconds: i64) -> String {
    match milliseconds / MINUTE {
        m if m % 1440 == 0 => format!("{} d", m / 1440),
        m if m % 60 == 0 => format!("{} h", m / 60),
        m => format!("{m} min"),
    }
}

/// A duration at the precision a person reads it.
fn span(milliseconds: i64) -> String {
    let s = milliseconds / 1000;
    match s {
        _ if s < 60 => format!("{:.1} s", milliseconds as f64 / 1000.0),
        _ if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        _ if s < 86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    /// A breath document of process `p` with counter `c`, taken `ms` after a minute starts.
    fn breath(p: u8, c: u32, ms: i64, oxygen: f64) -> RawDocumentBuf {
        let time = 1_795_000_020_000 + ms;
        let [_, high, middle, low] = c.to_be_bytes();
        let id = ObjectId::from_parts((time / 1000) as u32, [p; 5], [high, middle, low]);
        rawdoc! { "_id": id, "time": bson::DateTime::from_millis(time), "oxygen": oxygen }
    }

    fn holes(docs: &[RawDocumentBuf]) -> Holes {
        let mut holes = Holes::default();
        for doc in docs {
            holes.see(doc);
        }
        holes
    }

    #[test]
    fn skipped_counters_are_lost_breaths_per_process() {
        let holes = holes(&[
            breath(1, 10, 0, 0.1),
            breath(2, 500, 0, 0.2),
            breath(1, 11, 1000, 0.3),
            breath(2, 501, 1000, 0.4),
            breath(1, 14, 4000, 0.5),  // 12 and 13 lost
            breath(2, 503, 3000, 0.6), // 502 lost
        ]);
        assert_eq!(holes.lost, 3);
        assert_eq!(holes.last.len(), 2);
        assert_eq!(holes.foreign, 0);
    }

    #[test]
    fn counters_wrap_around_without_a_loss() {
        let max = COUNTER_MODULUS - 1;
        let clean = holes(&[
            breath(1, max - 1, 0, 0.1),
            breath(1, max, 10, 0.2),
            breath(1, 0, 20, 0.3),
            breath(1, 1, 30, 0.4),
        ]);
        assert_eq!(clean.lost, 0);
        let lossy = holes(&[breath(1, max, 0, 0.1), breath(1, 1, 10, 0.2)]);
        assert_eq!(lossy.lost, 1);
    }

    #[test]
    fn a_counter_out_of_order_is_not_a_loss() {
        let holes = holes(&[
            breath(1, 10, 0, 0.1),
            breath(1, 11, 1000, 0.2),
            breath(1, 5, 2000, 0.3),
            breath(1, 12, 3000, 0.4),
        ]);
        assert_eq!(holes.lost, 0);
    }

    #[test]
    fn documents_that_are_not_breaths_are_foreign() {
        let holes = holes(&[
            rawdoc! { "_id": "not an ObjectId", "time": bson::DateTime::now(), "oxygen": 0.5 },
            rawdoc! { "_id": ObjectId::new(), "oxygen": 0.5 },
            rawdoc! { "_id": ObjectId::new(), "time": bson::DateTime::now(), "oxygen": "high" },
            breath(1, 1, 0, 0.5),
        ]);
        assert_eq!((holes.documents, holes.foreign, holes.lost), (4, 3, 0));
    }

    fn order(docs: &[RawDocumentBuf]) -> Order {
        let holes = holes(docs);
        let mut order = Order::new(Timeline::spanning(holes.earliest, holes.latest));
        for doc in docs {
            order.see(&super::breath(doc).unwrap());
        }
        order
    }

    #[test]
    fn the_same_time_and_oxygen_twice_is_a_double() {
        let order = order(&[
            breath(1, 1, 0, 0.1),
            breath(1, 2, 1000, 0.2),
            breath(2, 9, 1000, 0.3), // another writer at the same millisecond
            breath(3, 7, 1000, 0.2), // breath 2 again under another id
            breath(1, 3, 2000, 0.2), // same oxygen, another time
        ]);
        assert_eq!((order.breaths, order.doubled), (4, 1));
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
        let order = order(&docs);
        let lengths: Vec<i64> = order.gaps.iter().map(|g| g.length).collect();
        assert_eq!(lengths, [7000, 3000, 1000, 1000, 1000]);
        assert_eq!(order.gaps[0].start, 1_795_000_022_000);
        assert_eq!(order.usual_gap(), Some(1000.0));
    }

    #[test]
    fn the_timeline_marks_gaps_losses_and_doubles_by_the_minute() {
        let mut docs: Vec<RawDocumentBuf> = Vec::new();
        let mut counter = 0;
        for second in 0..300 {
            if (70..100).contains(&second) {
                continue; // minute 1: a 30 s pause, nothing built
            }
            if second != 200 {
                docs.push(breath(1, counter, second * 1000, second as f64));
            } // else minute 3: built and lost
            counter += 1;
        }
        docs.push(breath(2, 0, 250_000, 250.0)); // minute 4: a double
        docs.sort_by_key(|d| d.get_object_id("_id").unwrap());
        let holes = holes(&docs);
        assert_eq!(holes.lost, 1);
        docs.sort_by_key(|d| d.get_datetime("time").unwrap());
        let order = order(&docs);
        let settings = AuditSettings {
            uri: String::new(),
            db: "mabel".into(),
            collection: "breaths".into(),
            since: None,
            until: None,
            json: false,
        };
        let report = Report::new(&settings, holes, order);
        assert_eq!(report.timeline.render(notable(report.usual_gap)), "#.#xd");
        assert!(!report.is_clean());
    }

    #[test]
    fn long_spans_get_wider_cells() {
        let day = 1440 * MINUTE;
        let timeline = Timeline::spanning(Some(0), Some(day));
        assert_eq!(timeline.cell, 5 * MINUTE);
        assert_eq!(timeline.cells.len(), 289);
        let timeline = Timeline::spanning(Some(0), Some(1000 * day));
        assert_eq!(timeline.cell, 3 * day);
    }
}
