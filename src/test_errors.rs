//! Driver errors made by hand, for the unit tests of what mabel makes of them (`retry`) and
//! how it words them (`wording`): the driver's own are built only from a server's replies.

use bson::{doc, Document};
use mongodb::error::{CommandError, Error, ErrorKind, InsertManyError};
use std::io;

/// A connection reset: the network-shaped failure of a member that died.
pub fn io_error() -> Error {
    ErrorKind::Io(io::Error::from(io::ErrorKind::ConnectionReset).into()).into()
}

/// A command the server refused with `code`.
pub fn command_error(code: i32) -> Error {
    let e: CommandError =
        bson::from_document(doc! { "code": code, "codeName": "X", "errmsg": "x" }).unwrap();
    ErrorKind::Command(e).into()
}

/// An `insert` reply as `insert_many` reports it: `writeErrors` as (index, code, errmsg), and
/// the code of a `writeConcernError`.
pub fn reply(write_errors: &[(i32, i32, &str)], write_concern_error: Option<i32>) -> Error {
    let mut body = Document::new();
    if !write_errors.is_empty() {
        let errors: Vec<Document> = write_errors
            .iter()
            .map(|&(index, code, errmsg)| doc! { "index": index, "code": code, "errmsg": errmsg })
            .collect();
        body.insert("writeErrors", errors);
    }
    if let Some(code) = write_concern_error {
        body.insert(
            "writeConcernError",
            doc! { "code": code, "codeName": "X", "errmsg": "x" },
        );
    }
    let e: InsertManyError = bson::from_document(body).unwrap();
    ErrorKind::InsertMany(e).into()
}
