//! What a namespace is, and the commands that make and list them: `create` and
//! `listCollections`, as a 7.0 primary answers them.
//!
//! A namespace is an ordinary collection (what the first write into a new name creates), a
//! capped one, a time-series collection or a view. Its kind is part of the `Create` oplog
//! entry, so it replicates and rolls back with the rest of the data (`store`), and it decides
//! what an insert into it does (`primary`):
//!
//! - capped: the oldest documents are deleted once the collection holds more than `max` of
//!   them or more than `size` bytes (`CollectionImpl`'s capped deletes); a document larger than
//!   `size` is refused.
//! - time-series: there is no `_id` index and no unique index of any kind, so a duplicate
//!   `_id` is inserted without error (https://www.mongodb.com/docs/manual/core/timeseries/timeseries-limitations/,
//!   SERVER-122027, SERVER-83370); every measurement needs its `timeField` as a date. Only a
//!   retry under the same `txnNumber` is recognised, from the session's record, as for any
//!   retryable write (jstests/noPassthrough/timeseries_retryable_write_restart.js).
//! - view: every document of an insert fails with 166 CommandNotSupportedOnView, "Namespace
//!   <ns> is a view, not a collection" (`catalog_raii.cpp`), as a write error: the insert path
//!   tries each document on its own and `handleError` reports it (`write_ops_exec.cpp`,
//!   `insertBatchAndHandleErrors`); `createIndexes` gets 166 "Cannot create indexes on a view".
//!
//! `create` follows `create_command.cpp` (`CmdCreate::typedRun`): its option checks, each an
//! InvalidOptions (72) with the server's words; a capped `size` rounded up to a multiple of
//! 256 and a `max` of 0 or less stored as 2^31 - 1 (`collection_options.cpp`,
//! `adjustCappedSize`, `adjustCappedMaxDocs`); time-series bucketing defaults from
//! `timeseries_options.cpp` (`validateAndSetBucketingParameters`): `granularity: "seconds"`
//! and `bucketMaxSpanSeconds: 3600` when neither is given. A `create` of a name that exists
//! with the same options succeeds, as on mongod since SERVER-60064 (DOCS-15906); with other
//! options it fails with 48 NamespaceExists. The reply is `{ok: 1}` once its write concern is
//! met.
//!
//! `listCollections` gives the entries of `list_collections.cpp`, with the driver's required
//! `info.readOnly` on each: a collection `{name, type: "collection", options, info: {readOnly,
//! uuid}, idIndex}`, a time-series collection `{name, type: "timeseries", options: {timeseries:
//! {timeField, metaField, granularity, bucketMaxSpanSeconds}}, info: {readOnly: false}}` and a
//! view `{name, type: "view", options: {viewOn, pipeline}, info: {readOnly: true}}`; `filter`
//! is matched against each entry as built, after `nameOnly` cuts it to `{name, type}`.
//!
//! Limits: `create` takes `capped`, `size`, `max`, `timeseries`, `viewOn` and `pipeline`, and
//! refuses the other options it knows (validators, collations, clustered indexes,
//! `expireAfterSeconds`, ...) with an error naming the option, which mongod would not; views
//! are read only when their pipeline is empty. A time-series collection keeps its
//! measurements as inserted, where mongod keeps buckets in `system.buckets.<name>` and
//! rebuilds each measurement on a read, in a field order of its own; `listCollections` lists
//! neither the buckets nor `system.views`.

use std::sync::{Arc, MutexGuard};

use bson::{doc, spec::BinarySubtype, Binary, Bson, Document};

use crate::cluster::{Shared, State};
use crate::commands::{self, cursor_reply, raw, readable, respond, write_target, Outcome};
use crate::errors;
use crate::fail_command::Passed;
use crate::oplog::Op;
use crate::query::Query;
use crate::store::Collection;
use crate::wire::Request;
use crate::write_concern;

/// What a namespace is, with the options it was created with, as mongod stores them.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// An ordinary collection, with its unique `_id` index.
    Regular,
    /// `size` in bytes, rounded up to a multiple of 256; `max` documents, 0 for no limit.
    Capped {
        size: i64,
        max: i64,
    },
    TimeSeries(TimeSeries),
    /// A view on `on`, a collection or view of the same database.
    View {
        on: String,
        pipeline: Vec<Bson>,
    },
}

/// The `timeseries` options after the server filled in its defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeSeries {
    pub time_field: String,
    pub meta_field: Option<String>,
    /// `"seconds"`, `"minutes"` or `"hours"`; none with custom bucketing.
    pub granularity: Option<String>,
    /// Only with custom bucketing, equal to `bucket_max_span`.
    pub bucket_rounding: Option<i64>,
    pub bucket_max_span: i64,
}

/// The most bytes a capped collection may be given (`checkAndAdjustCappedSize`).
const PETABYTE: i64 = 1 << 50;

/// The widest bucket span a time-series collection takes (`timeseries.idl`), a year.
const LONGEST_SPAN: i64 = 31_536_000;

/// The options of `create` that mongod takes and the simulated set does not.
const UNSUPPORTED: &[&str] = &[
    "autoIndexId",
    "idIndex",
    "storageEngine",
    "validator",
    "validationLevel",
    "validationAction",
    "indexOptionDefaults",
    "collation",
    "changeStreamPreAndPostImages",
    "clusteredIndex",
    "recordPreImages",
    "temp",
    "expireAfterSeconds",
    "encryptedFields",
];

/// The generic arguments any command may carry (`generic_argument.idl`).
const GENERIC: &[&str] = &[
    "writeConcern",
    "lsid",
    "txnNumber",
    "maxTimeMS",
    "comment",
    "readConcern",
    "apiVersion",
    "apiStrict",
    "apiDeprecationErrors",
];

impl Kind {
    /// The `options` of its `listCollections` entry, in `CollectionOptions::appendBSON`'s
    /// order, numbers as `appendNumber` writes them (an int32 when it fits).
    pub fn options(&self) -> Document {
        match self {
            Kind::Regular => Document::new(),
            Kind::Capped { size, max } => {
                let mut options = doc! { "capped": true, "size": number(*size) };
                if *max != 0 {
                    options.insert("max", number(*max));
                }
                options
            }
            Kind::TimeSeries(ts) => doc! { "timeseries": ts.to_document() },
            Kind::View { on, pipeline } => doc! { "viewOn": on, "pipeline": pipeline.clone() },
        }
    }

    /// The `type` of its `listCollections` entry.
    fn type_name(&self) -> &'static str {
        match self {
            Kind::Regular | Kind::Capped { .. } => "collection",
            Kind::TimeSeries(_) => "timeseries",
            Kind::View { .. } => "view",
        }
    }
}

impl TimeSeries {
    /// In `timeseries.idl`'s field order.
    fn to_document(&self) -> Document {
        let mut ts = doc! { "timeField": &self.time_field };
        if let Some(meta) = &self.meta_field {
            ts.insert("metaField", meta);
        }
        if let Some(granularity) = &self.granularity {
            ts.insert("granularity", granularity);
        }
        if let Some(rounding) = self.bucket_rounding {
            ts.insert("bucketRoundingSeconds", rounding as i32);
        }
        ts.insert("bucketMaxSpanSeconds", self.bucket_max_span as i32);
        ts
    }
}

/// `create` on `member`.
pub fn create(
    shared: &Shared,
    mut state: MutexGuard<'_, State>,
    member: usize,
    incarnation: u64,
    request: &Request,
    passed: &Passed,
) -> Outcome {
    let (term, ns) = match write_target(&state, member, request, "create") {
        Ok(target) => target,
        Err(refusal) => return respond(&state, member, refusal),
    };
    let kind = match parse(&ns, &request.body) {
        Ok(kind) => kind,
        Err(refusal) => return respond(&state, member, refusal),
    };
    match state.replica(member).store.collection(&ns) {
        None => {
            let op = Op::Create {
                ns: ns.clone(),
                uuid: bson::Uuid::new(),
                kind,
            };
            state.log(member, term, op);
        }
        Some(existing) if existing.kind == kind => {}
        Some(existing) => return respond(&state, member, exists(&ns, existing, &kind)),
    }
    let reply = doc! { "ok": 1.0 };
    write_concern::respond_when_met(
        shared,
        state,
        member,
        incarnation,
        term,
        request,
        reply,
        passed,
    )
}

/// `listCollections` on `member`: served by a secondary too, with secondaryOk.
pub fn list(state: &mut State, member: usize, request: &Request) -> bson::RawDocumentBuf {
    if let Err(refusal) = readable(state, member, request) {
        return raw(refusal);
    }
    let body = &request.body;
    let db = body.get_str("$db").unwrap_or("test");
    let name_only = body.get_bool("nameOnly").unwrap_or(false);
    let filter = match body.get("filter") {
        None | Some(Bson::Null) => Document::new(),
        Some(Bson::Document(filter)) => filter.clone(),
        Some(_) => {
            let message = "BSON field 'listCollections.filter' is the wrong type, expected \
                           type 'object'";
            return raw(errors::command_error(14, message, false));
        }
    };
    let query = match Query::parse(&doc! { "filter": filter }) {
        Ok(query) => query,
        Err((code, message)) => return raw(errors::command_error(code, &message, false)),
    };
    let batch_size = body
        .get_document("cursor")
        .ok()
        .and_then(|c| c.get("batchSize"))
        .and_then(commands::integer)
        .and_then(|n| usize::try_from(n).ok());
    let mut collections = state.replica(member).store.collections_in(db);
    // Collections, then views, each by name: a real server lists in catalog order, which
    // clients must not depend on.
    collections.sort_by_key(|(name, c)| (matches!(c.kind, Kind::View { .. }), name.to_string()));
    let entries = collections
        .into_iter()
        .map(|(name, collection)| {
            let mut entry = entry(name, collection);
            if name_only {
                entry = doc! { "name": name, "type": collection.kind.type_name() };
            }
            Arc::new(raw(entry))
        })
        .collect();
    let results = query.run(entries);
    let ns = format!("{db}.$cmd.listCollections");
    let cursor = state.members[member]
        .cursors
        .open(&ns, results, None, batch_size, false);
    cursor_reply(cursor)
}

/// The `listCollections` entry of the collection or view `name`.
fn entry(name: &str, collection: &Collection) -> Document {
    let kind = &collection.kind;
    let mut entry = doc! {
        "name": name,
        "type": kind.type_name(),
        "options": kind.options(),
    };
    match kind {
        Kind::Regular | Kind::Capped { .. } => {
            let uuid = Binary {
                subtype: BinarySubtype::Uuid,
                bytes: collection.uuid.bytes().to_vec(),
            };
            entry.insert("info", doc! { "readOnly": false, "uuid": uuid });
            entry.insert(
                "idIndex",
                doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
            );
        }
        Kind::TimeSeries(_) => {
            entry.insert("info", doc! { "readOnly": false });
        }
        Kind::View { .. } => {
            entry.insert("info", doc! { "readOnly": true });
        }
    }
    entry
}

/// The 48 NamespaceExists of a `create` whose options differ from those `ns` has
/// (`checkCollectionOptions`; for time-series, `checkIfNamespaceExists`'s words).
fn exists(ns: &str, existing: &Collection, asked: &Kind) -> Document {
    let db = ns.split_once('.').map_or(ns, |(db, _)| db);
    let message = match (&existing.kind, asked) {
        (Kind::TimeSeries(_), _) => format!("A timeseries collection already exists. NS: {ns}"),
        (Kind::View { .. }, Kind::TimeSeries(_)) => format!("A view already exists. NS: {ns}"),
        (_, Kind::TimeSeries(_)) => format!("Collection {ns} already exists."),
        (Kind::View { on, pipeline }, asked) => {
            let (new_on, new_pipeline) = match asked {
                Kind::View { on, pipeline } => (on.as_str(), pipeline.as_slice()),
                _ => ("", &[][..]),
            };
            if on != new_on {
                format!("namespace {ns} already exists, but is a view on {db}.{on} rather than {db}.{new_on}")
            } else {
                format!(
                    "namespace {ns} already exists, but with pipeline {} rather than {}",
                    errors::shell_repr(&Bson::Array(pipeline.clone())),
                    errors::shell_repr(&Bson::Array(new_pipeline.to_vec())),
                )
            }
        }
        (kind, _) => {
            let mut options = doc! { "uuid": Binary {
                subtype: BinarySubtype::Uuid,
                bytes: existing.uuid.bytes().to_vec(),
            } };
            options.extend(kind.options());
            format!(
                "namespace {ns} already exists, but with different options: {}",
                errors::shell_repr(&Bson::Document(options))
            )
        }
    };
    errors::command_error(48, &message, false)
}

/// The kind a `create` command asks for, with the server's defaults, or its refusal.
fn parse(ns: &str, body: &Document) -> Result<Kind, Document> {
    for field in body.keys().skip(1) {
        if field.starts_with('$') || GENERIC.contains(&field.as_str()) {
            continue;
        }
        if UNSUPPORTED.contains(&field.as_str()) {
            let message = format!(
                "the simulated replica set does not support the '{field}' option of create"
            );
            return Err(errors::command_error(2, &message, false));
        }
        if !["capped", "size", "max", "timeseries", "viewOn", "pipeline"].contains(&field.as_str())
        {
            let message = format!("BSON field 'create.{field}' is an unknown field.");
            return Err(errors::command_error(40415, &message, false));
        }
    }
    let capped = body.get("capped").is_some_and(truthy);
    let size = body
        .get("size")
        .map(|v| integer("create.size", v))
        .transpose()?;
    let max = body
        .get("max")
        .map(|v| integer("create.max", v))
        .transpose()?;
    if capped && size.is_none() {
        return Err(invalid(
            "the 'size' field is required when 'capped' is true",
        ));
    }
    if (size.is_some() || max.is_some()) && !capped {
        return Err(invalid(
            "the 'capped' field needs to be true when either the 'size' or 'max' fields are present",
        ));
    }
    let view_on = match body.get("viewOn") {
        None => None,
        Some(Bson::String(on)) => Some(on.clone()),
        Some(other) => return Err(wrong_type("create.viewOn", other, "string")),
    };
    let pipeline = match body.get("pipeline") {
        None => None,
        Some(Bson::Array(stages)) if stages.iter().all(|s| s.as_document().is_some()) => {
            Some(stages.clone())
        }
        Some(other) => return Err(wrong_type("create.pipeline", other, "array")),
    };
    if pipeline.is_some() && view_on.is_none() {
        return Err(invalid("'pipeline' requires 'viewOn' to also be specified"));
    }
    if let Some(timeseries) = body.get("timeseries") {
        let Bson::Document(timeseries) = timeseries else {
            return Err(wrong_type("create.timeseries", timeseries, "object"));
        };
        // The 'capped' option defaults to false, and is accepted unless it is set to true.
        for field in ["capped", "size", "max", "viewOn", "pipeline"] {
            let set = match field {
                "capped" => capped,
                _ => body.contains_key(field),
            };
            if set {
                let message = format!("{ns}: 'timeseries' is not allowed with '{field}'");
                return Err(invalid(&message));
            }
        }
        return time_series(ns, timeseries).map(Kind::TimeSeries);
    }
    if let Some(on) = view_on {
        if on.is_empty() {
            return Err(errors::command_error(
                2,
                "'viewOn' cannot be empty.'",
                false,
            ));
        }
        let pipeline = pipeline.unwrap_or_default();
        return Ok(Kind::View { on, pipeline });
    }
    if capped {
        let size = size.unwrap_or_default();
        if size < 0 {
            return Err(errors::command_error(2, "size has to be >= 0", false));
        }
        if size > PETABYTE {
            return Err(errors::command_error(2, "size cannot exceed 1 PB", false));
        }
        let max = match max {
            Some(max) if max >= 1 << 31 => {
                let message = "max in a capped collection has to be < 2^31 or not set";
                return Err(errors::command_error(2, message, false));
            }
            Some(max) if max <= 0 => 0x7fff_ffff,
            Some(max) => max,
            None => 0,
        };
        let size = (size + 0xff) & !0xff;
        return Ok(Kind::Capped { size, max });
    }
    Ok(Kind::Regular)
}

/// The `timeseries` options, checked as `typedRun` and the IDL parser check them, with the
/// bucketing defaults `validateAndSetBucketingParameters` fills in.
fn time_series(ns: &str, options: &Document) -> Result<TimeSeries, Document> {
    let context = "create.timeseries";
    for field in options.keys() {
        let known = [
            "timeField",
            "metaField",
            "granularity",
            "bucketRoundingSeconds",
            "bucketMaxSpanSeconds",
        ];
        if !known.contains(&field.as_str()) {
            let message = format!("BSON field '{context}.{field}' is an unknown field.");
            return Err(errors::command_error(40415, &message, false));
        }
    }
    let string = |field: &str| -> Result<Option<String>, Document> {
        match options.get(field) {
            None => Ok(None),
            Some(Bson::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong_type(&format!("{context}.{field}"), other, "string")),
        }
    };
    let Some(time_field) = string("timeField")? else {
        let message = format!("BSON field '{context}.timeField' is missing but a required field");
        return Err(errors::command_error(40414, &message, false));
    };
    let meta_field = string("metaField")?;
    let granularity = string("granularity")?;
    if let Some(g) = &granularity {
        if !["seconds", "minutes", "hours"].contains(&g.as_str()) {
            let message = format!(
                "Enumeration value '{g}' for field '{context}.granularity' is not a valid value."
            );
            return Err(errors::command_error(2, &message, false));
        }
    }
    let seconds = |field: &str| -> Result<Option<i64>, Document> {
        let Some(value) = options.get(field) else {
            return Ok(None);
        };
        let path = format!("{context}.{field}");
        let n = integer(&path, value)?;
        if !(1..=LONGEST_SPAN).contains(&n) {
            let bound = if n < 1 { ">= 1" } else { "<= 31536000" };
            let message = format!("BSON field '{path}' value must be {bound}, actual value '{n}'");
            return Err(errors::command_error(2, &message, false));
        }
        Ok(Some(n))
    };
    let rounding = seconds("bucketRoundingSeconds")?;
    let max_span = seconds("bucketMaxSpanSeconds")?;

    let top_level =
        |field: &str| format!("{ns}: '{field}' must be a top-level field and not contain a '.'");
    if time_field.contains('.') {
        return Err(invalid(&top_level("timeField")));
    }
    // A BSON string may hold a NUL, a field name cannot, and these fields become the keys of
    // the buckets' index and validator. r7.0's `timeseries.idl` types both plain `string`, and
    // no NUL check in `create`'s path was found, so what mongod does with one is not known
    // here; the fake, which cannot encode such keys, refuses the name with the InvalidOptions
    // of the checks around this one.
    for (field, name) in [
        ("timeField", Some(&time_field)),
        ("metaField", meta_field.as_ref()),
    ] {
        if name.is_some_and(|name| name.contains('\0')) {
            let message = format!("{ns}: '{field}' must not contain a null byte");
            return Err(invalid(&message));
        }
    }
    if let Some(meta) = &meta_field {
        if meta == "_id" {
            return Err(invalid("'metaField' cannot be \"_id\""));
        }
        if *meta == time_field {
            return Err(invalid("'metaField' cannot be the same as 'timeField'"));
        }
        if meta.contains('.') {
            return Err(invalid(&top_level("metaField")));
        }
    }

    let from_granularity = match granularity.as_deref().unwrap_or("seconds") {
        "minutes" => 86_400,
        "hours" => 2_592_000,
        _ => 3_600,
    };
    let not_configurable = || {
        invalid(&format!(
            "Timeseries 'bucketMaxSpanSeconds' is not configurable to a value other than the \
             default of {from_granularity} for the provided granularity"
        ))
    };
    let (granularity, bucket_rounding, bucket_max_span) =
        match (granularity, rounding, max_span) {
            (Some(_), _, Some(span)) if span != from_granularity => return Err(not_configurable()),
            (Some(_), Some(_), _) => {
                return Err(invalid(
                    "Timeseries 'bucketRoundingSeconds' is not configurable alongside the \
                 granularity parameter",
                ))
            }
            (Some(g), None, _) => (Some(g), None, from_granularity),
            (None, None, None) => (Some("seconds".to_string()), None, from_granularity),
            (None, rounding, span) if rounding != span => return Err(invalid(
                "Timeseries 'bucketRoundingSeconds' needs to be equal to 'bucketMaxSpanSeconds'",
            )),
            (None, rounding, span) => (None, rounding, span.unwrap_or(from_granularity)),
        };
    Ok(TimeSeries {
        time_field,
        meta_field,
        granularity,
        bucket_rounding,
        bucket_max_span,
    })
}

/// `capped` as the IDL's `safeBool` reads it: a bool, or a number other than 0.
fn truthy(value: &Bson) -> bool {
    match value {
        Bson::Boolean(b) => *b,
        Bson::Int32(n) => *n != 0,
        Bson::Int64(n) => *n != 0,
        Bson::Double(f) => *f != 0.0,
        _ => false,
    }
}

/// A whole number, however it is typed (`safeInt64`).
fn integer(path: &str, value: &Bson) -> Result<i64, Document> {
    commands::integer(value).ok_or_else(|| wrong_type(path, value, "[long, int, decimal, double]"))
}

/// An int32 when it fits, as `appendNumber(long long)` writes it.
fn number(n: i64) -> Bson {
    match i32::try_from(n) {
        Ok(n) => Bson::Int32(n),
        Err(_) => Bson::Int64(n),
    }
}

fn invalid(message: &str) -> Document {
    errors::command_error(72, message, false)
}

/// The IDL parser's TypeMismatch.
fn wrong_type(path: &str, value: &Bson, expected: &str) -> Document {
    let message = format!(
        "BSON field '{path}' is the wrong type '{}', expected type '{expected}'",
        type_name(value)
    );
    errors::command_error(14, &message, false)
}

/// The server's name for a value's BSON type (`typeName`).
fn type_name(value: &Bson) -> &'static str {
    match value {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        Bson::Binary(_) => "binData",
        Bson::ObjectId(_) => "objectId",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::Null => "null",
        Bson::Int32(_) => "int",
        Bson::Int64(_) => "long",
        Bson::Timestamp(_) => "timestamp",
        Bson::Decimal128(_) => "decimal",
        _ => "other",
    }
}
