//! One member's data: collections with their unique indexes, and the retryable-write
//! history that lets a primary answer a retry of a write it already has.
//!
//! Only oplog entries change it (`apply`), so each document carries the timestamp of the
//! entry that inserted it, and a read at the majority commit point is the prefix of each
//! collection written up to it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bson::{doc, oid::ObjectId, Bson, Document, RawBson, RawDocumentBuf, Timestamp};

use crate::collections::Kind;
use crate::errors;
use crate::oplog::{Entry, Op, Statement};
use crate::query::{index_key, lookup, to_bson};

#[derive(Default)]
pub struct Store {
    collections: HashMap<String, Collection>,
    /// `lsid.id` bytes -> the session's newest `txnNumber` and the statements of it that
    /// were executed. As on the server, a statement that failed (a duplicate key) leaves no
    /// trace and runs again on a retry, and only the newest `txnNumber` is kept.
    sessions: HashMap<Vec<u8>, (i64, HashSet<i32>)>,
    /// Two-phase index builds this member has started, and when.
    pub builds: HashMap<u64, Instant>,
}

pub struct Collection {
    pub uuid: bson::Uuid,
    pub kind: Kind,
    docs: Vec<Arc<RawDocumentBuf>>,
    /// The timestamp of the entry that inserted each document, ascending.
    stamps: Vec<Timestamp>,
    /// The bytes of its documents, which a capped collection keeps under its size.
    bytes: i64,
    /// Index 0 is `_id_`, except on a time-series collection or a view, which have none.
    indexes: Vec<Index>,
}

/// An index on one field, or on several when it is not unique; only unique ones keep keys.
/// An array value is one key, not one key per element as on a real (multikey) index.
pub struct Index {
    pub name: String,
    pub field: String,
    pub direction: i32,
    /// The fields after the first of a compound key, such as `_id` in `{time: 1, _id: 1}`.
    pub rest: Vec<(String, i32)>,
    pub unique: bool,
    /// The two-phase build it is still part of; `None` once it is ready.
    pub building: Option<u64>,
    keys: HashSet<Vec<u8>>,
}

/// A unique index refused a document.
#[derive(Clone, Debug)]
pub struct DuplicateKey {
    pub ns: String,
    pub index: String,
    pub field: String,
    pub direction: i32,
    pub value: Bson,
}

impl DuplicateKey {
    pub fn message(&self) -> String {
        errors::duplicate_key_message(&self.ns, &self.index, &self.field, &self.value)
    }

    pub fn write_error(&self, position: usize) -> Document {
        errors::duplicate_key_entry(
            position,
            &self.ns,
            &self.index,
            &self.field,
            self.direction,
            self.value.clone(),
        )
    }
}

/// What the history says about a retryable write.
pub enum History {
    /// Never seen: execute it.
    New,
    /// Seen: these statements were executed and are not executed again.
    Executed(HashSet<i32>),
    /// The session has moved on to a newer `txnNumber`.
    TooOld { newest: i64 },
}

impl Collection {
    /// A new collection of `kind`: with its `_id` index, unless it is a view or time-series,
    /// which gets the index on its `metaField` and `timeField` that 6.3+ creates by itself
    /// (https://www.mongodb.com/docs/manual/core/timeseries/timeseries-secondary-index/).
    fn new(uuid: bson::Uuid, kind: Kind) -> Collection {
        let indexes = match &kind {
            Kind::Regular | Kind::Capped { .. } => vec![Index::new("_id", 1, true)],
            Kind::TimeSeries(ts) => match &ts.meta_field {
                Some(meta) => {
                    let mut index = Index::new(meta, 1, false);
                    index.rest = vec![(ts.time_field.clone(), 1)];
                    index.name = format!("{meta}_1_{}_1", ts.time_field);
                    vec![index]
                }
                None => Vec::new(),
            },
            Kind::View { .. } => Vec::new(),
        };
        Collection {
            uuid,
            kind,
            docs: Vec::new(),
            stamps: Vec::new(),
            bytes: 0,
            indexes,
        }
    }

    /// Whether every unique index would take `doc`.
    fn check(&self, ns: &str, doc: &RawDocumentBuf) -> Result<(), Box<DuplicateKey>> {
        for index in self
            .indexes
            .iter()
            .filter(|i| i.unique && i.building.is_none())
        {
            let value = lookup(doc, &index.field);
            if index.keys.contains(&index_key(value)) {
                return Err(Box::new(DuplicateKey {
                    ns: ns.to_string(),
                    index: index.name.clone(),
                    field: index.field.clone(),
                    direction: index.direction,
                    value: to_bson(value),
                }));
            }
        }
        Ok(())
    }

    /// Adds a document `check` accepted; a capped collection then deletes its oldest
    /// documents until it holds no more than `max` of them and `size` bytes.
    fn insert(&mut self, doc: Arc<RawDocumentBuf>, ts: Timestamp) {
        for index in self.indexes.iter_mut().filter(|i| i.unique) {
            index.keys.insert(index_key(lookup(&doc, &index.field)));
        }
        self.bytes += doc.as_bytes().len() as i64;
        self.docs.push(doc);
        self.stamps.push(ts);
        let Kind::Capped { size, max } = self.kind else {
            return;
        };
        let mut over = 0;
        let mut bytes = self.bytes;
        while over < self.docs.len()
            && ((max > 0 && (self.docs.len() - over) as i64 > max) || bytes > size)
        {
            bytes -= self.docs[over].as_bytes().len() as i64;
            over += 1;
        }
        for gone in self.docs.drain(..over) {
            for index in self.indexes.iter_mut().filter(|i| i.unique) {
                index.keys.remove(&index_key(lookup(&gone, &index.field)));
            }
        }
        self.stamps.drain(..over);
        self.bytes = bytes;
    }

    /// Why this collection takes no `doc` at all, whatever its indexes say: the code and
    /// message of the write error.
    fn refusal(&self, ns: &str, doc: &RawDocumentBuf) -> Option<(i32, String)> {
        match &self.kind {
            Kind::Regular => None,
            Kind::View { .. } => Some((166, errors::view_message(ns))),
            Kind::Capped { size, .. } => (doc.as_bytes().len() as i64 > *size)
                .then(|| (2, "object to insert exceeds cappedMaxSize".to_string())),
            Kind::TimeSeries(ts) => {
                let time = lookup(doc, &ts.time_field);
                (!matches!(time, Some(bson::RawBsonRef::DateTime(_)))).then(|| {
                    let message = format!(
                        "'{}' must be present and contain a valid BSON UTC datetime value",
                        ts.time_field
                    );
                    (2, message)
                })
            }
        }
    }
}

impl Index {
    fn new(field: &str, direction: i32, unique: bool) -> Index {
        let name = Index::default_name(&[(field.to_string(), direction)]);
        Index {
            name,
            field: field.to_string(),
            direction,
            rest: Vec::new(),
            unique,
            building: None,
            keys: HashSet::new(),
        }
    }

    /// The name the server gives an index it was not given one for (`_id_` for `_id`): each
    /// `<field>_<direction>` joined by `_`, so `{time: 1, _id: 1}` is `time_1__id_1`.
    pub fn default_name(key: &[(String, i32)]) -> String {
        if let [(field, 1)] = key {
            if field == "_id" {
                return "_id_".to_string();
            }
        }
        key.iter()
            .map(|(field, direction)| format!("{field}_{direction}"))
            .collect::<Vec<_>>()
            .join("_")
    }

    /// Its key, every field with its direction.
    pub fn key(&self) -> Vec<(String, i32)> {
        let first = (self.field.clone(), self.direction);
        std::iter::once(first)
            .chain(self.rest.iter().cloned())
            .collect()
    }

    /// The entry `listIndexes` returns, ready or still building.
    pub fn spec(&self) -> Document {
        let mut key = doc! { self.field.as_str(): self.direction };
        for (field, direction) in &self.rest {
            key.insert(field.as_str(), *direction);
        }
        let mut spec = doc! {
            "v": 2,
            "key": key,
            "name": self.name.as_str(),
        };
        if self.unique && self.field != "_id" {
            spec.insert("unique", true);
        }
        spec
    }
}

impl Store {
    /// Whether `doc` would be taken, as `insert` checks it before logging it.
    pub fn check(&self, ns: &str, doc: &RawDocumentBuf) -> Result<(), Box<DuplicateKey>> {
        match self.collections.get(ns) {
            Some(collection) => collection.check(ns, doc),
            None => Ok(()),
        }
    }

    /// Why the namespace takes no `doc` whatever its indexes say (a view, a time-series
    /// measurement without its time, a document larger than a capped collection): the code
    /// and message of the write error.
    pub fn refusal(&self, ns: &str, doc: &RawDocumentBuf) -> Option<(i32, String)> {
        self.collections.get(ns)?.refusal(ns, doc)
    }

    /// The collection or view `ns`, if it exists.
    pub fn collection(&self, ns: &str) -> Option<&Collection> {
        self.collections.get(ns)
    }

    /// The collections and views of database `db`, by their names in it.
    pub fn collections_in(&self, db: &str) -> Vec<(&str, &Collection)> {
        self.collections
            .iter()
            .filter_map(|(ns, c)| Some((ns.strip_prefix(db)?.strip_prefix('.')?, c)))
            .collect()
    }

    /// Applies an oplog entry. Entries come from a primary that checked them against the
    /// same data, so none can fail here.
    pub fn apply(&mut self, entry: &Entry) {
        match &entry.op {
            Op::Insert { ns, doc, statement } => {
                self.created(ns).insert(Arc::clone(doc), entry.optime.ts);
                if let Some(statement) = statement {
                    self.record(statement);
                }
            }
            Op::Create { ns, uuid, kind } => {
                self.collections
                    .entry(ns.clone())
                    .or_insert_with(|| Collection::new(*uuid, kind.clone()));
            }
            // The primary checked the index against its documents before it logged it; a
            // member applying the entry builds it as told.
            Op::CreateIndex {
                ns,
                key,
                unique,
                name,
            } => self.add_index(ns, key, *unique, name.as_deref(), None),
            Op::StartIndexBuild {
                ns,
                key,
                unique,
                name,
                build,
            } => {
                self.add_index(ns, key, *unique, name.as_deref(), Some(*build));
                self.builds.insert(*build, Instant::now());
            }
            Op::CommitIndexBuild { ns, build } => {
                if let Some(c) = self.collections.get_mut(ns) {
                    for index in c.indexes.iter_mut().filter(|i| i.building == Some(*build)) {
                        index.building = None;
                    }
                }
                self.builds.remove(build);
            }
            Op::AbortIndexBuild { ns, build } => {
                if let Some(c) = self.collections.get_mut(ns) {
                    c.indexes.retain(|i| i.building != Some(*build));
                }
                self.builds.remove(build);
            }
            Op::Noop => {}
        }
    }

    /// The collection's UUID, if it exists.
    pub fn uuid(&self, ns: &str) -> Option<bson::Uuid> {
        self.collections.get(ns).map(|c| c.uuid)
    }

    /// How many documents the collection holds (0 if it does not exist).
    pub fn count(&self, ns: &str) -> usize {
        self.collections.get(ns).map_or(0, |c| c.docs.len())
    }

    /// The data a member has after applying `entries` from the start.
    pub fn rebuild(entries: &[Arc<Entry>]) -> Store {
        let mut store = Store::default();
        for entry in entries {
            store.apply(entry);
        }
        store
    }

    /// The collection, created by the `Create` entry the primary logs before the first
    /// write into it.
    fn created(&mut self, ns: &str) -> &mut Collection {
        self.collections
            .entry(ns.to_string())
            .or_insert_with(|| Collection::new(bson::Uuid::new(), Kind::Regular))
    }

    fn record(&mut self, statement: &Statement) {
        let session = self
            .sessions
            .entry(statement.lsid.clone())
            .or_insert_with(|| (statement.txn_number, HashSet::new()));
        if session.0 < statement.txn_number {
            *session = (statement.txn_number, HashSet::new());
        }
        session.1.insert(statement.stmt_id);
    }

    /// Whether the collection has an index on exactly `key`, ready or still building.
    pub fn has_index(&self, ns: &str, key: &[(String, i32)]) -> bool {
        self.indexes(ns)
            .is_some_and(|indexes| indexes.iter().any(|i| i.key() == key))
    }

    /// The first document a unique index on `field` would find a duplicate of, if any.
    pub fn duplicate_for(
        &self,
        ns: &str,
        field: &str,
        direction: i32,
        unique: bool,
    ) -> Option<Box<DuplicateKey>> {
        let collection = self.collections.get(ns).filter(|_| unique)?;
        let mut keys = HashSet::new();
        let duplicate = collection
            .docs
            .iter()
            .find(|doc| !keys.insert(index_key(lookup(doc, field))))?;
        let value = lookup(duplicate, field);
        Some(Box::new(DuplicateKey {
            ns: ns.to_string(),
            index: Index::new(field, direction, true).name,
            field: field.to_string(),
            direction,
            value: to_bson(value),
        }))
    }

    /// Adds an index on `key`, named `name` or as the server names it by default, unless the
    /// collection has one on that key already; `build` is the two-phase build it is part of.
    /// The caller has checked it against the documents.
    pub fn add_index(
        &mut self,
        ns: &str,
        key: &[(String, i32)],
        unique: bool,
        name: Option<&str>,
        build: Option<u64>,
    ) {
        if self.has_index(ns, key) {
            return;
        }
        let collection = self.created(ns);
        let (first, rest) = key.split_first().expect("a key of at least one field");
        let mut index = Index::new(&first.0, first.1, unique);
        index.rest = rest.to_vec();
        index.name = name.map_or_else(|| Index::default_name(key), str::to_string);
        index.building = build;
        if unique {
            for doc in &collection.docs {
                index.keys.insert(index_key(lookup(doc, &first.0)));
            }
        }
        collection.indexes.push(index);
    }

    pub fn indexes(&self, ns: &str) -> Option<&[Index]> {
        self.collections.get(ns).map(|c| c.indexes.as_slice())
    }

    /// The documents in insertion order, cheap to take (reference counts only) so a query
    /// can filter and sort them without holding the cluster lock. With `upto`, only those
    /// written at or before that timestamp: a read at a commit point.
    pub fn snapshot(&self, ns: &str, upto: Option<Timestamp>) -> Vec<Arc<RawDocumentBuf>> {
        let Some(collection) = self.collections.get(ns) else {
            return Vec::new();
        };
        let end = match upto {
            Some(upto) => collection
                .stamps
                .partition_point(|ts| (ts.time, ts.increment) <= (upto.time, upto.increment)),
            None => collection.docs.len(),
        };
        collection.docs[..end].to_vec()
    }

    pub fn history(&self, lsid: &[u8], txn_number: i64) -> History {
        match self.sessions.get(lsid) {
            Some((newest, _)) if *newest > txn_number => History::TooOld { newest: *newest },
            Some((newest, done)) if *newest == txn_number => History::Executed(done.clone()),
            _ => History::New,
        }
    }
}

/// Encodes a document element by element: `RawDocumentBuf::from_document` goes through serde
/// and renders every ObjectId as hex and back, which dominates seeding a million documents.
pub fn encode(doc: &Document) -> RawDocumentBuf {
    let mut out = RawDocumentBuf::new();
    for (key, value) in doc {
        out.append(
            key,
            RawBson::try_from(value.clone()).expect("a document encodable as BSON"),
        );
    }
    out
}

/// The server stores `_id` as the first field, generating an ObjectId when it is missing.
pub fn with_id_first(doc: RawDocumentBuf) -> RawDocumentBuf {
    let first_is_id = doc
        .iter()
        .next()
        .and_then(Result::ok)
        .is_some_and(|(key, _)| key == "_id");
    if first_is_id {
        return doc;
    }
    let mut out = RawDocumentBuf::new();
    match doc.get("_id").ok().flatten() {
        Some(id) => out.append_ref("_id", id),
        None => out.append("_id", ObjectId::new()),
    }
    for (key, value) in doc.iter().flatten() {
        if key != "_id" {
            out.append_ref(key, value);
        }
    }
    out
}
