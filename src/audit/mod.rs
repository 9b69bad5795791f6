//! `mabel audit`: reads the breaths back and says whether any was lost or doubled, so that
//! "losing nothing, doubling nothing" is something a person can check, not only a promise.
//!
//! Two passes over streaming cursors (`passes`), each keeping the same small state however
//! many breaths there are:
//!
//! - By `_id`, for breaths lost. A breath's id is its seconds, five bytes fixed per writing
//!   process and a counter that only breaths advance (see `breath`), so in `_id` order each
//!   process's breaths come with counters one after another. A counter skipped is a breath
//!   built and never stored. Only the last counter of each process is kept. Nothing beyond a
//!   process's first and last breath in the window can show, so neither can a breath lost
//!   as its writer stopped: mabel names that one itself when it gives up.
//! - By `time`, then `_id`, for breaths doubled: two documents with the same time and oxygen
//!   are one breath stored twice. This pass also gives the count, the span, the longest gaps
//!   and the `timeline`.
//!
//! A document that is not a breath (its `_id` no ObjectId, no `time` date or no `oxygen`
//! double) is counted as foreign and otherwise left alone. `report` puts what the passes
//! found into words, for a person or as JSON.

mod passes;
mod report;
mod timeline;

pub use report::Report;

use std::sync::Arc;

use bson::{doc, Document, RawDocumentBuf};
use mongodb::error::Error;
use mongodb::options::{ReadPreference, SelectionCriteria, ServerAddress};
use mongodb::sync::Database;
use mongodb::IndexModel;

use crate::config::AuditSettings;
use passes::{ById, ByTime};
use timeline::Timeline;

/// Documents per batch: about half a megabyte of breaths, so memory stays flat whatever the
/// server's own batch size (16 MB) would be.
const BATCH: u32 = 10_000;
/// Milliseconds in a minute, the smallest cell of the timeline.
const MINUTE: i64 = 60_000;

/// Reads the breaths of `settings`' collection in its window and reports on them.
/// Both passes read one member, the one the read preference picks first: two members can
/// hold different majority snapshots (one lags), and passes that each read another would
/// count the writers of one snapshot and the breaths of the other.
pub fn audit(db: &Database, settings: &AuditSettings) -> Result<Report, Error> {
    let breaths = db.collection::<RawDocumentBuf>(&settings.collection);
    let member = one_member(db)?;
    let filter = window(settings);
    let mut by_id = ById::default();
    let mut cursor = breaths
        .find(filter.clone())
        .sort(doc! { "_id": 1 })
        .selection_criteria(member.clone())
        .batch_size(BATCH)
        .run()?;
    while cursor.advance()? {
        by_id.see(cursor.current());
    }

    let mut by_time = ByTime::new(Timeline::spanning(by_id.earliest, by_id.latest));
    let mut cursor = breaths
        .find(filter)
        .sort(time_order())
        .selection_criteria(member)
        .batch_size(BATCH)
        .allow_disk_use(true)
        .run()?;
    while cursor.advance()? {
        by_time.see(cursor.current());
    }
    Ok(Report::new(settings, by_id, by_time))
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
fn time_order() -> Document {
    doc! { "time": 1, "_id": 1 }
}

/// The index that serves the audit's time-ordered pass.
pub fn index() -> IndexModel {
    IndexModel::builder().keys(time_order()).build()
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
