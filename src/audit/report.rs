//! The audit's report: what the passes found, for a person (a few lines of figures, the
//! longest gaps, the timeline) or as one JSON object, and the one-line verdict.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::passes::{ById, ByTime, Gap};
use super::timeline::{notable, Timeline};
use super::MINUTE;
use crate::breath::TIME_FORMAT;
use crate::config::AuditSettings;

/// Timeline cells per row of the report for a person.
const ROW: usize = 60;

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

impl Report {
    pub fn new(settings: &AuditSettings, by_id: ById, by_time: ByTime) -> Report {
        let usual_gap = by_time.usual_gap();
        let mut timeline = by_time.timeline;
        for &minute in by_id.lost_by_minute.keys() {
            timeline.mark_lost(minute);
        }
        Report {
            db: settings.db.clone(),
            collection: settings.collection.clone(),
            since: settings.since,
            until: settings.until,
            documents: by_id.documents,
            breaths: by_time.breaths,
            lost: by_id.lost,
            doubled: by_time.doubled,
            foreign: by_id.foreign,
            processes: by_id.last.len(),
            first: by_time.first,
            last: by_time.last,
            usual_gap,
            gaps: by_time.gaps,
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

/// A time as the `wrote` lines print it, or the bare milliseconds if it is past what a date holds.
fn time(milliseconds: i64) -> String {
    DateTime::from_timestamp_millis(milliseconds)
        .map(|t| t.format(TIME_FORMAT).to_string())
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
    use crate::audit::passes::tests::{breath, by_id, by_time};
    use bson::RawDocumentBuf;

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
        let by_id = by_id(&docs);
        assert_eq!(by_id.lost, 1);
        docs.sort_by_key(|d| d.get_datetime("time").unwrap());
        let by_time = by_time(&docs);
        let settings = AuditSettings {
            uri: String::new(),
            uri_from: "--uri",
            db: "mabel".into(),
            collection: "breaths".into(),
            since: None,
            until: None,
            json: false,
        };
        let report = Report::new(&settings, by_id, by_time);
        assert_eq!(report.timeline.render(notable(report.usual_gap)), "#.#xd");
        assert!(!report.is_clean());
    }
}
