//! The data every member shares: collections with their unique indexes, and the
//! retryable-write history that lets a new primary answer a retry of a write it already has.
//!
//! One store stands in for replication: a write applied on the primary is instantly on every
//! member, dead or alive. So there is no replication lag, `w: "majority"` and `j: true` are
//! always satisfied the moment the primary applies a write, and a member that was killed and
//! revived never rolls back writes it acknowledged with `w: 1`, as a real one can.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bson::{doc, oid::ObjectId, Bson, Document, RawBson, RawDocumentBuf};

use super::errors;
use super::query::{index_key, lookup, to_bson};

#[derive(Default)]
pub struct Store {
    collections: HashMap<String, Collection>,
    /// `lsid.id` bytes -> the session's latest retryable write. Like the server, only the
    /// newest `txnNumber` of a session is remembered. Unlike the server, which records
    /// executed statements and re-runs failed ones on a retry, the whole first reply is kept
    /// and replayed, write errors included. Only replies of executed inserts are kept: a
    /// refusal (not primary, injected failure) leaves no trace, so its retry runs afresh.
    sessions: HashMap<Vec<u8>, (i64, Document)>,
}

pub struct Collection {
    docs: Vec<Arc<RawDocumentBuf>>,
    /// Index 0 is always `_id_`.
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
    keys: HashSet<Vec<u8>>,
}

/// A unique index refused a document.
#[derive(Debug)]
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
    /// Already executed: answer with the reply it got then.
    Executed(Document),
    /// The session has moved on to a newer `txnNumber`.
    TooOld { newest: i64 },
}

impl Collection {
    fn new() -> Collection {
        Collection {
            docs: Vec::new(),
            indexes: vec![Index::new("_id", 1, true)],
        }
    }

    /// Checks every unique index before touching any, so a refused document leaves no keys.
    fn insert(&mut self, ns: &str, doc: RawDocumentBuf) -> Result<(), Box<DuplicateKey>> {
        let mut keys = Vec::new();
        for (position, index) in self.indexes.iter().enumerate().filter(|(_, i)| i.unique) {
            let value = lookup(&doc, &index.field);
            let key = index_key(value);
            if index.keys.contains(&key) {
                return Err(Box::new(DuplicateKey {
                    ns: ns.to_string(),
                    index: index.name.clone(),
                    field: index.field.clone(),
                    direction: index.direction,
                    value: to_bson(value),
                }));
            }
            keys.push((position, key));
        }
        for (position, key) in keys {
            self.indexes[position].keys.insert(key);
        }
        self.docs.push(Arc::new(doc));
        Ok(())
    }
}

impl Index {
    fn new(field: &str, direction: i32, unique: bool) -> Index {
        let name = if field == "_id" {
            "_id_".to_string()
        } else {
            format!("{field}_{direction}")
        };
        Index {
            name,
            field: field.to_string(),
            direction,
            rest: Vec::new(),
            unique,
            keys: HashSet::new(),
        }
    }

    /// The entry `listIndexes` returns.
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
    /// Inserts a batch as the `insert` command does: stops at the first error when
    /// `ordered`, otherwise tries every document. Returns the reply body without `ok`.
    pub fn insert_batch(&mut self, ns: &str, docs: Vec<RawDocumentBuf>, ordered: bool) -> Document {
        let collection = self
            .collections
            .entry(ns.to_string())
            .or_insert_with(Collection::new);
        let mut n = 0;
        let mut write_errors = Vec::new();
        for (position, doc) in docs.into_iter().enumerate() {
            match collection.insert(ns, with_id_first(doc)) {
                Ok(()) => n += 1,
                Err(dup) => {
                    write_errors.push(dup.write_error(position));
                    if ordered {
                        break;
                    }
                }
            }
        }
        let mut reply = doc! { "n": n };
        if !write_errors.is_empty() {
            reply.insert("writeErrors", write_errors);
        }
        reply
    }

    pub fn insert_one(&mut self, ns: &str, doc: RawDocumentBuf) -> Result<(), Box<DuplicateKey>> {
        let collection = self
            .collections
            .entry(ns.to_string())
            .or_insert_with(Collection::new);
        collection.insert(ns, with_id_first(doc))
    }

    /// Adds a single-field index. A unique index over existing duplicates fails, as the
    /// server's index build does. Returns whether the index is new.
    pub fn create_index(
        &mut self,
        ns: &str,
        field: &str,
        direction: i32,
        unique: bool,
    ) -> Result<bool, Box<DuplicateKey>> {
        let collection = self
            .collections
            .entry(ns.to_string())
            .or_insert_with(Collection::new);
        let mut index = Index::new(field, direction, unique);
        if collection.indexes.iter().any(|i| i.name == index.name) {
            return Ok(false);
        }
        if unique {
            for doc in &collection.docs {
                let value = lookup(doc, field);
                if !index.keys.insert(index_key(value)) {
                    return Err(Box::new(DuplicateKey {
                        ns: ns.to_string(),
                        index: index.name,
                        field: field.to_string(),
                        direction,
                        value: to_bson(value),
                    }));
                }
            }
        }
        collection.indexes.push(index);
        Ok(true)
    }

    /// Adds a non-unique index on several fields, named as the server names it: each
    /// `<field>_<direction>` joined by `_`, so `{time: 1, _id: 1}` is `time_1__id_1`.
    /// Returns whether the index is new.
    pub fn create_compound_index(&mut self, ns: &str, key: &[(String, i32)]) -> bool {
        let collection = self
            .collections
            .entry(ns.to_string())
            .or_insert_with(Collection::new);
        let name = key
            .iter()
            .map(|(field, direction)| format!("{field}_{direction}"))
            .collect::<Vec<_>>()
            .join("_");
        if collection.indexes.iter().any(|i| i.name == name) {
            return false;
        }
        let (first, rest) = key.split_first().expect("a key of at least one field");
        let mut index = Index::new(&first.0, first.1, false);
        index.name = name;
        index.rest = rest.to_vec();
        collection.indexes.push(index);
        true
    }

    pub fn indexes(&self, ns: &str) -> Option<&[Index]> {
        self.collections.get(ns).map(|c| c.indexes.as_slice())
    }

    /// The documents in insertion order, cheap to take (reference counts only) so a query
    /// can filter and sort them without holding the cluster lock.
    pub fn snapshot(&self, ns: &str) -> Vec<Arc<RawDocumentBuf>> {
        self.collections
            .get(ns)
            .map(|c| c.docs.clone())
            .unwrap_or_default()
    }

    pub fn documents(&self, ns: &str) -> Vec<Document> {
        self.snapshot(ns)
            .iter()
            .map(|doc| doc.to_document().expect("stored documents are valid BSON"))
            .collect()
    }

    pub fn history(&self, lsid: &[u8], txn_number: i64) -> History {
        match self.sessions.get(lsid) {
            Some((newest, _)) if *newest > txn_number => History::TooOld { newest: *newest },
            Some((newest, reply)) if *newest == txn_number => History::Executed(reply.clone()),
            _ => History::New,
        }
    }

    pub fn remember(&mut self, lsid: Vec<u8>, txn_number: i64, reply: Document) {
        self.sessions.insert(lsid, (txn_number, reply));
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
fn with_id_first(doc: RawDocumentBuf) -> RawDocumentBuf {
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
