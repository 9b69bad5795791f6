//! Server-side cursors: a query's result is computed once and handed out in batches, so a
//! `getMore` costs only the documents it returns, even over millions of documents.
//!
//! Cursors live on the member that ran the query, like on a real server, and die with it.
//! Unlike a real server, a cursor id is 0 as soon as the last document has been sent (a real
//! plan may only notice the end on the next `getMore`), and idle cursors never time out.

use std::collections::HashMap;
use std::sync::Arc;

use bson::RawDocumentBuf;

use crate::query::Projection;

/// The most documents in a first batch when the client does not say, as on the server.
const DEFAULT_FIRST_BATCH: usize = 101;
/// A batch stops growing before it would pass this many bytes (at least one document).
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

pub struct Cursor {
    ns: String,
    results: Vec<Arc<RawDocumentBuf>>,
    next: usize,
    projection: Option<Projection>,
}

/// The open cursors of one member.
#[derive(Default)]
pub struct Cursors {
    open: HashMap<i64, Cursor>,
    counter: u64,
}

impl Cursors {
    /// Answers `find`: sends the first batch and keeps a cursor if anything is left.
    /// Returns the `cursor` sub-document of the reply.
    pub fn open(
        &mut self,
        ns: &str,
        results: Vec<Arc<RawDocumentBuf>>,
        projection: Option<Projection>,
        batch_size: Option<usize>,
        single_batch: bool,
    ) -> RawDocumentBuf {
        let mut cursor = Cursor {
            ns: ns.to_string(),
            results,
            next: 0,
            projection,
        };
        let batch = cursor.take_batch(Some(batch_size.unwrap_or(DEFAULT_FIRST_BATCH)));
        let id = if cursor.is_exhausted() || single_batch {
            0
        } else {
            let id = self.new_id();
            self.open.insert(id, cursor);
            id
        };
        cursor_document("firstBatch", &batch, id, ns)
    }

    /// Answers `getMore`; `None` means the cursor is unknown here (CursorNotFound).
    pub fn get_more(&mut self, id: i64, batch_size: Option<usize>) -> Option<RawDocumentBuf> {
        let cursor = self.open.get_mut(&id)?;
        let batch = cursor.take_batch(batch_size.filter(|&n| n > 0));
        let ns = cursor.ns.clone();
        let id = if cursor.is_exhausted() {
            self.open.remove(&id);
            0
        } else {
            id
        };
        Some(cursor_document("nextBatch", &batch, id, &ns))
    }

    /// Answers `killCursors`: which of `ids` were open here.
    pub fn kill(&mut self, ids: &[i64]) -> (Vec<i64>, Vec<i64>) {
        ids.iter().partition(|id| self.open.remove(id).is_some())
    }

    pub fn clear(&mut self) {
        self.open.clear();
    }

    /// Cursor ids look random and are never 0 or negative, like the server's.
    fn new_id(&mut self) -> i64 {
        loop {
            self.counter += 1;
            let mut x = self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x ^= x >> 31;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x ^= x >> 29;
            let id = (x >> 1) as i64;
            if id != 0 && !self.open.contains_key(&id) {
                return id;
            }
        }
    }
}

impl Cursor {
    fn is_exhausted(&self) -> bool {
        self.next >= self.results.len()
    }

    fn take_batch(&mut self, max_docs: Option<usize>) -> Vec<RawDocumentBuf> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while self.next < self.results.len() && max_docs.is_none_or(|max| batch.len() < max) {
            let stored = &self.results[self.next];
            let doc = match &self.projection {
                Some(projection) => projection.apply(stored),
                None => RawDocumentBuf::clone(stored),
            };
            if !batch.is_empty() && bytes + doc.as_bytes().len() > MAX_BATCH_BYTES {
                break;
            }
            bytes += doc.as_bytes().len();
            batch.push(doc);
            self.next += 1;
        }
        batch
    }
}

/// Builds `{<field>: [docs...], id, ns}` directly as bytes: going through `Document` would
/// parse and re-encode every document of every batch.
fn cursor_document(field: &str, docs: &[RawDocumentBuf], id: i64, ns: &str) -> RawDocumentBuf {
    let mut array = vec![0u8; 4];
    for (i, doc) in docs.iter().enumerate() {
        array.push(0x03);
        array.extend_from_slice(i.to_string().as_bytes());
        array.push(0);
        array.extend_from_slice(doc.as_bytes());
    }
    array.push(0);
    patch_length(&mut array);

    let mut out = vec![0u8; 4];
    out.push(0x04);
    out.extend_from_slice(field.as_bytes());
    out.push(0);
    out.extend_from_slice(&array);
    out.push(0x12);
    out.extend_from_slice(b"id\0");
    out.extend_from_slice(&id.to_le_bytes());
    out.push(0x02);
    out.extend_from_slice(b"ns\0");
    out.extend_from_slice(&(ns.len() as i32 + 1).to_le_bytes());
    out.extend_from_slice(ns.as_bytes());
    out.push(0);
    out.push(0);
    patch_length(&mut out);
    RawDocumentBuf::from_bytes(out).expect("well-formed cursor document")
}

fn patch_length(bytes: &mut [u8]) {
    let len = bytes.len() as i32;
    bytes[0..4].copy_from_slice(&len.to_le_bytes());
}
