//! The collection breaths go to, looked up before the first breath reaches it.
//!
//! The seed's proof rests on a unique `_id`: a breath sent again after a failover meets its
//! own `_id`, and the duplicate-key error says that it had landed. A time-series collection
//! keeps no `_id` index and takes no unique index at all (the manual's "Time Series Collection
//! Limitations"; SERVER-122027, SERVER-83370): there a breath sent again is stored twice and
//! nothing says so, and only the driver's own retry, under the same `txnNumber`, is
//! recognised. A view takes no writes. mabel refuses both before any breath is sent, and says
//! what to use instead. A capped collection takes breaths but deletes the oldest once full,
//! silently; the audit, which finds a breath lost by the gap it leaves between two stored ones,
//! cannot see the oldest go. That is worth a warning, not a refusal: a user may want a
//! rolling window.
//!
//! The look-up is `listCollections` filtered by the name, which any member answers (read
//! preference primaryPreferred, so an election does not hold it up). It is made before the
//! first insert of a run, as part of the first attempt, and again at each attempt until it is
//! made: with no member answering at start, the first breath waits for it as an attempt waits
//! for a primary. Once the collection is known to be fit, the index the audit sorts by is
//! built, on a thread of its own.

use std::fmt;
use std::thread;

use bson::{doc, Bson, Document};
use log::warn;
use mongodb::options::{CommitQuorum, ReadPreference, SelectionCriteria};
use mongodb::sync::{Collection, Database};

use crate::{audit, wording};

/// The collection, and whether it was looked up yet.
pub struct Target {
    db: Database,
    collection: Collection<Document>,
    known: bool,
}

/// Why the collection cannot hold breaths safely.
#[derive(Debug)]
pub enum Unfit {
    TimeSeries {
        namespace: String,
    },
    View {
        namespace: String,
        on: String,
    },
    /// A type this mabel does not know.
    Other {
        namespace: String,
        kind: String,
    },
}

/// Why the collection is not known to be fit yet.
pub enum Unchecked {
    /// The look-up failed (no member answered, say): try again, as after a failed insert.
    Failed(mongodb::error::Error),
    Unfit(Unfit),
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let instead =
            "give --collection a regular collection (mabel creates one if the name is free)";
        match self {
            Unfit::TimeSeries { namespace } => write!(
                f,
                "{namespace} is a time-series collection, which keeps no unique _id: a breath \
                 sent again after a failover could be stored twice and no error would say so; \
                 {instead}"
            ),
            Unfit::View { namespace, on } => write!(
                f,
                "{namespace} is a view on {on}, which takes no writes; {instead}"
            ),
            Unfit::Other { namespace, kind } => write!(
                f,
                "{namespace} is a {kind}, not a collection mabel knows how to write to; {instead}"
            ),
        }
    }
}

impl Target {
    pub fn new(db: Database, collection: Collection<Document>) -> Target {
        Target {
            db,
            collection,
            known: false,
        }
    }

    /// Looks the collection up, unless that is done: fine if it is a collection or does not
    /// exist yet (the first insert creates one), with a warning if it is capped.
    pub fn check(&mut self) -> Result<(), Unchecked> {
        if self.known {
            return Ok(());
        }
        let name = self.collection.name().to_string();
        let command = doc! { "listCollections": 1, "filter": { "name": &name }, "nameOnly": false };
        let any_member = SelectionCriteria::ReadPreference(ReadPreference::PrimaryPreferred {
            options: Default::default(),
        });
        let reply = self
            .db
            .run_command(command)
            .selection_criteria(any_member)
            .run()
            .map_err(Unchecked::Failed)?;
        let namespace = format!("{}.{name}", self.db.name());
        let entry = reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .ok()
            .and_then(|batch| batch.first())
            .and_then(Bson::as_document);
        if let Some(entry) = entry {
            let options = entry.get_document("options").cloned().unwrap_or_default();
            match entry.get_str("type").unwrap_or("collection") {
                "collection" => warn_if_capped(&namespace, &options),
                "timeseries" => return Err(Unchecked::Unfit(Unfit::TimeSeries { namespace })),
                "view" => {
                    let on = options.get_str("viewOn").unwrap_or("?");
                    let on = format!("{}.{on}", self.db.name());
                    return Err(Unchecked::Unfit(Unfit::View { namespace, on }));
                }
                kind => {
                    let kind = kind.to_string();
                    return Err(Unchecked::Unfit(Unfit::Other { namespace, kind }));
                }
            }
        }
        self.known = true;
        self.index_for_the_audit();
        Ok(())
    }

    /// Creates the index `mabel audit` reads a year of breaths by, if it is missing, on a
    /// thread of its own, so that breathing never waits for it. On a collection that already
    /// holds breaths a replica set builds an index in two phases and commits it only once its
    /// commit quorum has built it; with the default quorum, every voting member, the command
    /// would not return while one is down (`create_indexes_cmd.cpp`). A majority of members
    /// suffices here, and a member that was down builds the index when it returns. Breathing
    /// does not need the index, so a failure (no primary, no right to create indexes) is only
    /// a warning.
    fn index_for_the_audit(&self) {
        let breaths = self.collection.clone();
        let build = move || {
            let built = breaths
                .create_index(audit::index())
                .commit_quorum(CommitQuorum::Majority)
                .run();
            if let Err(error) = built {
                warn!(
                    "couldn't create the index mabel audit sorts by, so an audit of many \
                     breaths may be slow: {}",
                    wording::describe(&error)
                );
            }
        };
        if let Err(error) = thread::Builder::new().name("index".into()).spawn(build) {
            warn!("couldn't create the index mabel audit sorts by: {error}");
        }
    }
}

/// One warning for a capped collection: the server deletes its oldest documents once it is
/// full, and the audit counts each deleted breath as lost.
fn warn_if_capped(namespace: &str, options: &Document) {
    if !options.get_bool("capped").unwrap_or(false) {
        return;
    }
    let number = |field| {
        options
            .get(field)
            .and_then(Bson::as_i64)
            .or_else(|| options.get_i32(field).ok().map(i64::from))
    };
    let limit = match (number("size"), number("max")) {
        (Some(size), Some(max)) if max < i64::from(i32::MAX) => {
            format!("{size} bytes or {max} documents")
        }
        (Some(size), _) => format!("{size} bytes"),
        (None, _) => "its size".to_string(),
    };
    warn!(
        "{namespace} is a capped collection: the server deletes the oldest breaths once it holds \
         {limit}, with no error to say so, and mabel audit cannot see that they were ever written"
    );
}
