//! OP_MSG framing: turns bytes from a socket into a command and a reply document back
//! into bytes.
//!
//! The `mongodb` 3.x driver only ever sends OP_MSG (opcode 2013): it declares OP_QUERY in its
//! header enum but never builds one, and it only compresses when the server advertises a
//! compressor, which the fake never does. Any other opcode therefore makes the fake hang up,
//! where a real server would answer a legacy OP_QUERY hello.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicI32, Ordering};

use bson::{Bson, Document, RawDocumentBuf};

const OP_MSG: i32 = 2013;
const HEADER_LEN: usize = 16;
const CHECKSUM_PRESENT: u32 = 1;
const MORE_TO_COME: u32 = 1 << 1;
const EXHAUST_ALLOWED: u32 = 1 << 16;
/// The limit the fake advertises in `hello`; a larger message is a protocol error.
pub const MAX_MESSAGE_SIZE: usize = 48_000_000;

/// One command as the server sees it: the kind-0 body plus any kind-1 document sequences.
#[derive(Debug)]
pub struct Request {
    pub request_id: i32,
    /// The client asked for no reply (fire-and-forget).
    pub more_to_come: bool,
    /// The client takes a stream of replies to this one request (awaitable `hello`).
    pub exhaust_allowed: bool,
    pub body: Document,
    pub sequences: Vec<(String, Vec<RawDocumentBuf>)>,
}

impl Request {
    /// The command name is the first key of the body, as on the server.
    pub fn name(&self) -> &str {
        self.body.keys().next().map(String::as_str).unwrap_or("")
    }

    /// The documents of an array argument, whether it came as a kind-1 sequence (how the
    /// driver sends an insert's `documents`) or inline in the body.
    pub fn documents(&self, field: &str) -> Option<Vec<RawDocumentBuf>> {
        if let Some((_, docs)) = self.sequences.iter().find(|(name, _)| name == field) {
            return Some(docs.clone());
        }
        let array = self.body.get_array(field).ok()?;
        array
            .iter()
            .map(|value| match value {
                Bson::Document(doc) => Some(crate::store::encode(doc)),
                _ => None,
            })
            .collect()
    }
}

/// Reads one request. `Ok(None)` means the peer closed the connection cleanly between
/// messages; malformed input is an `InvalidData` error, after which the caller hangs up.
pub fn read_request(stream: &mut impl Read) -> io::Result<Option<Request>> {
    let mut header = [0u8; HEADER_LEN];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = le_i32(&header[0..4]);
    let request_id = le_i32(&header[4..8]);
    let op_code = le_i32(&header[12..16]);
    let length = usize::try_from(length).map_err(|_| invalid("negative message length"))?;
    if !(HEADER_LEN + 5..=MAX_MESSAGE_SIZE).contains(&length) {
        return Err(invalid("message length out of range"));
    }
    let mut payload = vec![0u8; length - HEADER_LEN];
    stream.read_exact(&mut payload)?;
    if op_code != OP_MSG {
        return Err(invalid("only OP_MSG is understood"));
    }
    parse_op_msg(request_id, &payload).map(Some)
}

fn parse_op_msg(request_id: i32, payload: &[u8]) -> io::Result<Request> {
    let flags = u32::from_le_bytes(payload[0..4].try_into().expect("4 bytes"));
    let mut end = payload.len();
    if flags & CHECKSUM_PRESENT != 0 {
        // The CRC-32C is not verified: the connection is loopback.
        end = end
            .checked_sub(4)
            .ok_or_else(|| invalid("missing checksum"))?;
    }
    let mut pos = 4;
    let mut body = None;
    let mut sequences = Vec::new();
    while pos < end {
        let kind = payload[pos];
        pos += 1;
        match kind {
            0 => {
                let doc = take_document(payload, &mut pos, end)?;
                if body.is_some() {
                    return Err(invalid("two kind-0 sections"));
                }
                body = Some(
                    doc.to_document()
                        .map_err(|_| invalid("bad body document"))?,
                );
            }
            1 => {
                let size = read_len(payload, pos, end)?;
                let section_end = pos + size;
                let mut cursor = pos + 4;
                let name_len = payload[cursor..section_end]
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| invalid("unterminated sequence name"))?;
                let name = std::str::from_utf8(&payload[cursor..cursor + name_len])
                    .map_err(|_| invalid("sequence name is not UTF-8"))?
                    .to_string();
                cursor += name_len + 1;
                let mut docs = Vec::new();
                while cursor < section_end {
                    docs.push(take_document(payload, &mut cursor, section_end)?);
                }
                sequences.push((name, docs));
                pos = section_end;
            }
            _ => return Err(invalid("unknown section kind")),
        }
    }
    Ok(Request {
        request_id,
        more_to_come: flags & MORE_TO_COME != 0,
        exhaust_allowed: flags & EXHAUST_ALLOWED != 0,
        body: body.ok_or_else(|| invalid("no kind-0 section"))?,
        sequences,
    })
}

/// Reads a length-prefixed BSON document starting at `*pos`, not past `end`.
fn take_document(payload: &[u8], pos: &mut usize, end: usize) -> io::Result<RawDocumentBuf> {
    let len = read_len(payload, *pos, end)?;
    let bytes = payload[*pos..*pos + len].to_vec();
    *pos += len;
    RawDocumentBuf::from_bytes(bytes).map_err(|_| invalid("bad document"))
}

/// Reads the i32 length at `pos` and checks that it fits before `end`.
fn read_len(payload: &[u8], pos: usize, end: usize) -> io::Result<usize> {
    if pos + 4 > end {
        return Err(invalid("truncated length"));
    }
    let len = usize::try_from(le_i32(&payload[pos..pos + 4])).map_err(|_| invalid("bad length"))?;
    if len < 5 || pos + len > end {
        return Err(invalid("length past end of message"));
    }
    Ok(len)
}

/// Writes an OP_MSG reply with one kind-0 section in a single `write_all`, so a reply is
/// either fully sent or the connection is broken. With `more_to_come`, more replies to the
/// same request follow, each in response to the one before (OP_MSG specification, "exhaust").
/// Returns the reply's own request id.
pub fn write_reply(
    stream: &mut impl Write,
    response_to: i32,
    body: &RawDocumentBuf,
    more_to_come: bool,
) -> io::Result<i32> {
    static NEXT_REQUEST_ID: AtomicI32 = AtomicI32::new(1);
    let body = body.as_bytes();
    let total = HEADER_LEN + 4 + 1 + body.len();
    let request_id = NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed);
    let flags = if more_to_come { MORE_TO_COME } else { 0 };
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as i32).to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&response_to.to_le_bytes());
    out.extend_from_slice(&OP_MSG.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.push(0);
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()?;
    Ok(request_id)
}

fn le_i32(bytes: &[u8]) -> i32 {
    i32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}
