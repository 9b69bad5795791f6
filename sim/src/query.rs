//! The slice of the query language an audit reader needs: comparison filters, sorts and
//! top-level projections, with values ordered the way the server orders BSON.
//!
//! Limits, each answered with an error or documented here rather than silently wrong:
//! field paths may be dotted through embedded documents but never through arrays (no
//! multikey matching, array sort keys are compared as whole arrays); strings compare by
//! bytes (no collation); Decimal128 compares by its bytes, not numerically; projections
//! accept only top-level fields; filter operators are `$eq $ne $gt $gte $lt $lte $in $nin`.

use std::cmp::Ordering;
use std::sync::Arc;

use bson::{Bson, Document, RawBson, RawBsonRef, RawDocument, RawDocumentBuf};

/// An error the server would answer with: code and message.
pub type QueryError = (i32, String);

/// A parsed `find`.
#[derive(Debug, Default)]
pub struct Query {
    conditions: Vec<Condition>,
    sort: Vec<(String, bool)>,
    pub projection: Option<Projection>,
    skip: usize,
    limit: Option<usize>,
    pub batch_size: Option<usize>,
    pub single_batch: bool,
}

#[derive(Debug)]
struct Condition {
    path: String,
    op: Op,
}

#[derive(Debug)]
enum Op {
    Eq(RawBson),
    Ne(RawBson),
    Gt(RawBson),
    Gte(RawBson),
    Lt(RawBson),
    Lte(RawBson),
    In(Vec<RawBson>),
    Nin(Vec<RawBson>),
}

/// Which top-level fields a result keeps.
#[derive(Debug)]
pub enum Projection {
    Include { fields: Vec<String>, id: bool },
    Exclude { fields: Vec<String> },
}

impl Query {
    /// Parses the arguments of a `find` command body.
    pub fn parse(body: &Document) -> Result<Query, QueryError> {
        let mut query = Query::default();
        if let Ok(filter) = body.get_document("filter") {
            query.conditions = parse_filter(filter)?;
        }
        if let Ok(sort) = body.get_document("sort") {
            for (field, direction) in sort {
                let ascending = match as_number(direction) {
                    Some(1.0) => true,
                    Some(-1.0) => false,
                    _ => {
                        let message =
                            format!("$sort key ordering must be 1 or -1, got {field}: {direction}");
                        return Err((2, message));
                    }
                };
                query.sort.push((field.clone(), ascending));
            }
        }
        if let Ok(projection) = body.get_document("projection") {
            query.projection = Projection::parse(projection)?;
        }
        query.skip = count_arg(body, "skip")?.unwrap_or(0);
        query.limit = count_arg(body, "limit")?.filter(|&n| n > 0);
        query.batch_size = count_arg(body, "batchSize")?;
        query.single_batch = body.get_bool("singleBatch").unwrap_or(false);
        Ok(query)
    }

    /// Runs the query over a snapshot of a collection (in insertion order) and returns the
    /// matching documents in result order, after skip and limit.
    pub fn run(&self, docs: Vec<Arc<RawDocumentBuf>>) -> Vec<Arc<RawDocumentBuf>> {
        let mut matched: Vec<Arc<RawDocumentBuf>> =
            docs.into_iter().filter(|doc| self.matches(doc)).collect();
        if !self.sort.is_empty() {
            let order = self.sort_order(&matched);
            matched = order.into_iter().map(|i| matched[i].clone()).collect();
        }
        let end = match self.limit {
            Some(limit) => self.skip.saturating_add(limit).min(matched.len()),
            None => matched.len(),
        };
        let start = self.skip.min(end);
        matched.drain(start..end).collect()
    }

    /// The positions of `docs` in sort order, ties kept in insertion order. Each document's
    /// sort keys are looked up once, not at every comparison.
    fn sort_order(&self, docs: &[Arc<RawDocumentBuf>]) -> Vec<usize> {
        let width = self.sort.len();
        let keys: Vec<Option<RawBsonRef<'_>>> = docs
            .iter()
            .flat_map(|doc| self.sort.iter().map(move |(path, _)| lookup(doc, path)))
            .collect();
        let mut order: Vec<usize> = (0..docs.len()).collect();
        order.sort_by(|&a, &b| {
            for (j, (_, ascending)) in self.sort.iter().enumerate() {
                let ord = compare(keys[a * width + j], keys[b * width + j]);
                let ord = if *ascending { ord } else { ord.reverse() };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
        order
    }

    fn matches(&self, doc: &RawDocument) -> bool {
        self.conditions
            .iter()
            .all(|c| c.matches(lookup(doc, &c.path)))
    }
}

fn parse_filter(filter: &Document) -> Result<Vec<Condition>, QueryError> {
    let mut conditions = Vec::new();
    for (path, value) in filter {
        if path.starts_with('$') {
            return Err((2, format!("unknown top level operator: {path}")));
        }
        match value {
            Bson::Document(ops) if ops.keys().next().is_some_and(|k| k.starts_with('$')) => {
                for (op, operand) in ops {
                    conditions.push(Condition {
                        path: path.clone(),
                        op: parse_op(op, operand)?,
                    });
                }
            }
            other => conditions.push(Condition {
                path: path.clone(),
                op: Op::Eq(to_raw(other)?),
            }),
        }
    }
    Ok(conditions)
}

fn parse_op(op: &str, operand: &Bson) -> Result<Op, QueryError> {
    let list = |operand: &Bson| -> Result<Vec<RawBson>, QueryError> {
        match operand {
            Bson::Array(values) => values.iter().map(to_raw).collect(),
            _ => Err((2, format!("{op} needs an array"))),
        }
    };
    Ok(match op {
        "$eq" => Op::Eq(to_raw(operand)?),
        "$ne" => Op::Ne(to_raw(operand)?),
        "$gt" => Op::Gt(to_raw(operand)?),
        "$gte" => Op::Gte(to_raw(operand)?),
        "$lt" => Op::Lt(to_raw(operand)?),
        "$lte" => Op::Lte(to_raw(operand)?),
        "$in" => Op::In(list(operand)?),
        "$nin" => Op::Nin(list(operand)?),
        _ => return Err((2, format!("unknown operator: {op}"))),
    })
}

impl Condition {
    /// Range operators only match values of the same canonical type as the operand (the
    /// server's "type bracketing"); equality to null also matches a missing field.
    fn matches(&self, value: Option<RawBsonRef<'_>>) -> bool {
        let eq =
            |operand: &RawBson| compare(value, Some(operand.as_raw_bson_ref())) == Ordering::Equal;
        let range = |operand: &RawBson, accept: fn(Ordering) -> bool| {
            let operand = Some(operand.as_raw_bson_ref());
            rank(value) == rank(operand) && accept(compare(value, operand))
        };
        match &self.op {
            Op::Eq(v) => eq(v),
            Op::Ne(v) => !eq(v),
            Op::Gt(v) => range(v, |o| o == Ordering::Greater),
            Op::Gte(v) => range(v, |o| o != Ordering::Less),
            Op::Lt(v) => range(v, |o| o == Ordering::Less),
            Op::Lte(v) => range(v, |o| o != Ordering::Greater),
            Op::In(vs) => vs.iter().any(eq),
            Op::Nin(vs) => !vs.iter().any(eq),
        }
    }
}

impl Projection {
    fn parse(spec: &Document) -> Result<Option<Projection>, QueryError> {
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        let mut id = true;
        for (field, value) in spec {
            if field.contains('.') || field.starts_with('$') || matches!(value, Bson::Document(_)) {
                return Err((
                    2,
                    format!("projection of '{field}' is not supported by the fake replica set"),
                ));
            }
            let keep = match value {
                Bson::Boolean(b) => *b,
                other => as_number(other).map(|n| n != 0.0).unwrap_or(true),
            };
            match (field.as_str(), keep) {
                ("_id", keep) => id = keep,
                (_, true) => include.push(field.clone()),
                (_, false) => exclude.push(field.clone()),
            }
        }
        match (include.is_empty(), exclude.is_empty()) {
            (false, false) => Err((
                31254,
                format!(
                    "Cannot do exclusion on field {} in inclusion projection",
                    exclude[0]
                ),
            )),
            (false, true) => Ok(Some(Projection::Include {
                fields: include,
                id,
            })),
            (true, false) => {
                if !id {
                    exclude.push("_id".into());
                }
                Ok(Some(Projection::Exclude { fields: exclude }))
            }
            (true, true) if !id => Ok(Some(Projection::Exclude {
                fields: vec!["_id".into()],
            })),
            (true, true) => Ok(None),
        }
    }

    /// Keeps the selected fields in the stored document's order, as the server does.
    pub fn apply(&self, doc: &RawDocument) -> RawDocumentBuf {
        let mut out = RawDocumentBuf::new();
        for (key, value) in doc.iter().flatten() {
            let keep = match self {
                Projection::Include { fields, id } => {
                    if key == "_id" {
                        *id
                    } else {
                        fields.iter().any(|f| f == key)
                    }
                }
                Projection::Exclude { fields } => !fields.iter().any(|f| f == key),
            };
            if keep {
                out.append_ref(key, value);
            }
        }
        out
    }
}

/// A non-negative integer argument such as `limit` or `batchSize`.
fn count_arg(body: &Document, name: &str) -> Result<Option<usize>, QueryError> {
    match body.get(name) {
        None => Ok(None),
        // `safeInt64` in find_command.idl: a whole number however it is typed.
        Some(value) => match crate::commands::integer(value) {
            Some(n) if n >= 0 => Ok(Some(n as usize)),
            // The driver turns a negative limit into singleBatch plus a positive limit.
            Some(n) if name == "limit" => Ok(Some(n.unsigned_abs() as usize)),
            _ => Err((
                2,
                format!("{name} must be a non-negative number, got {value}"),
            )),
        },
    }
}

fn as_number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(f) => Some(*f),
        _ => None,
    }
}

fn to_raw(value: &Bson) -> Result<RawBson, QueryError> {
    RawBson::try_from(value.clone()).map_err(|e| (2, format!("bad filter value: {e}")))
}

/// The value at a dotted path, following embedded documents only. A missing field is `None`.
pub fn lookup<'a>(doc: &'a RawDocument, path: &str) -> Option<RawBsonRef<'a>> {
    let mut parts = path.split('.');
    let mut value = doc.get(parts.next()?).ok()??;
    for part in parts {
        value = value.as_document()?.get(part).ok()??;
    }
    Some(value)
}

/// The server's canonical type order: values of different ranks never compare equal, and
/// all numbers share one rank. Missing fields rank as null.
fn rank(value: Option<RawBsonRef<'_>>) -> u8 {
    match value {
        Some(RawBsonRef::MinKey) => 1,
        None | Some(RawBsonRef::Null) | Some(RawBsonRef::Undefined) => 2,
        Some(
            RawBsonRef::Int32(_)
            | RawBsonRef::Int64(_)
            | RawBsonRef::Double(_)
            | RawBsonRef::Decimal128(_),
        ) => 3,
        Some(RawBsonRef::String(_) | RawBsonRef::Symbol(_)) => 4,
        Some(RawBsonRef::Document(_)) => 5,
        Some(RawBsonRef::Array(_)) => 6,
        Some(RawBsonRef::Binary(_)) => 7,
        Some(RawBsonRef::ObjectId(_)) => 8,
        Some(RawBsonRef::Boolean(_)) => 9,
        Some(RawBsonRef::DateTime(_)) => 10,
        Some(RawBsonRef::Timestamp(_)) => 11,
        Some(RawBsonRef::RegularExpression(_)) => 12,
        Some(RawBsonRef::DbPointer(_)) => 13,
        Some(RawBsonRef::JavaScriptCode(_)) => 14,
        Some(RawBsonRef::JavaScriptCodeWithScope(_)) => 15,
        Some(RawBsonRef::MaxKey) => 16,
    }
}

/// Orders two values as the server's sort does (with the limits in the module comment).
pub fn compare(a: Option<RawBsonRef<'_>>, b: Option<RawBsonRef<'_>>) -> Ordering {
    let by_rank = rank(a).cmp(&rank(b));
    if by_rank != Ordering::Equal {
        return by_rank;
    }
    let (Some(a), Some(b)) = (a, b) else {
        return Ordering::Equal;
    };
    match (a, b) {
        (RawBsonRef::Decimal128(x), RawBsonRef::Decimal128(y)) => x.bytes().cmp(&y.bytes()),
        _ if rank(Some(a)) == 3 => compare_numbers(a, b),
        (
            RawBsonRef::String(x) | RawBsonRef::Symbol(x),
            RawBsonRef::String(y) | RawBsonRef::Symbol(y),
        ) => x.as_bytes().cmp(y.as_bytes()),
        (RawBsonRef::ObjectId(x), RawBsonRef::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (RawBsonRef::Boolean(x), RawBsonRef::Boolean(y)) => x.cmp(&y),
        (RawBsonRef::DateTime(x), RawBsonRef::DateTime(y)) => {
            x.timestamp_millis().cmp(&y.timestamp_millis())
        }
        (RawBsonRef::Timestamp(x), RawBsonRef::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (RawBsonRef::Binary(x), RawBsonRef::Binary(y)) => (
            x.bytes.len(),
            u8::from(x.subtype),
            x.bytes,
        )
            .cmp(&(y.bytes.len(), u8::from(y.subtype), y.bytes)),
        (RawBsonRef::Document(x), RawBsonRef::Document(y)) => compare_elements(x, y),
        (RawBsonRef::Array(x), RawBsonRef::Array(y)) => compare_elements(
            RawDocument::from_bytes(x.as_bytes()).expect("array"),
            RawDocument::from_bytes(y.as_bytes()).expect("array"),
        ),
        _ => value_bytes(a).cmp(&value_bytes(b)),
    }
}

/// Embedded documents compare field by field: name, then value.
fn compare_elements(a: &RawDocument, b: &RawDocument) -> Ordering {
    let mut a = a.iter().flatten();
    let mut b = b.iter().flatten();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((ka, va)), Some((kb, vb))) => {
                let ord = compare(Some(va), Some(vb)).then_with(|| ka.cmp(kb));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn compare_numbers(a: RawBsonRef<'_>, b: RawBsonRef<'_>) -> Ordering {
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => {
            let (x, y) = (float(a), float(b));
            // The server orders NaN below every other number and equal to itself.
            match (x.is_nan(), y.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            }
        }
    }
}

fn integer(value: RawBsonRef<'_>) -> Option<i64> {
    match value {
        RawBsonRef::Int32(n) => Some(i64::from(n)),
        RawBsonRef::Int64(n) => Some(n),
        _ => None,
    }
}

fn float(value: RawBsonRef<'_>) -> f64 {
    match value {
        RawBsonRef::Int32(n) => f64::from(n),
        RawBsonRef::Int64(n) => n as f64,
        RawBsonRef::Double(f) => f,
        _ => f64::NAN,
    }
}

/// The key under which a unique index stores a value: equal keys exactly when the server
/// would call the values equal (1, 1.0 and NumberLong(1) collide; a missing field is null).
pub fn index_key(value: Option<RawBsonRef<'_>>) -> Vec<u8> {
    let mut key = vec![rank(value)];
    match value {
        None | Some(RawBsonRef::Null) | Some(RawBsonRef::Undefined) => {}
        Some(v @ (RawBsonRef::Int32(_) | RawBsonRef::Int64(_) | RawBsonRef::Double(_))) => {
            let f = float(v);
            match integer(v) {
                Some(n) => push_integer(&mut key, n),
                None if f.fract() == 0.0 && f.abs() < 9.2e18 => push_integer(&mut key, f as i64),
                None => {
                    key.push(b'f');
                    key.extend_from_slice(&f.to_bits().to_be_bytes());
                }
            }
        }
        Some(RawBsonRef::String(s) | RawBsonRef::Symbol(s)) => key.extend_from_slice(s.as_bytes()),
        Some(v) => key.extend_from_slice(&value_bytes(v)),
    }
    key
}

fn push_integer(key: &mut Vec<u8>, n: i64) {
    key.push(b'i');
    key.extend_from_slice(&n.to_be_bytes());
}

/// The encoded bytes of a value, as a last-resort comparison and identity.
fn value_bytes(value: RawBsonRef<'_>) -> Vec<u8> {
    let mut holder = RawDocumentBuf::new();
    holder.append_ref("", value);
    holder.into_bytes()
}

/// A value as an owned `Bson` (null when missing), for error messages and `keyValue`.
pub fn to_bson(value: Option<RawBsonRef<'_>>) -> Bson {
    value
        .and_then(|v| Bson::try_from(v).ok())
        .unwrap_or(Bson::Null)
}
