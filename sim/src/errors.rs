//! Error replies shaped the way a MongoDB 7.0 mongod shapes them, because the driver decides
//! what to retry and which server to distrust from exactly these fields.
//!
//! Two shapes exist. A failure of the whole command is `{ok: 0, errmsg, code, codeName}` with
//! `errorLabels` when the server wants the write retried. A failure of one document of a
//! write is an entry of `writeErrors` inside an `ok: 1` reply, and those entries carry
//! `index`, `code`, `errmsg` and the error's extra info, but never `codeName`.
//! The `errmsg` texts are representative, not byte-for-byte copies of the server's.

use bson::{doc, Bson, Document};

/// Codes after which a 4.4+ server labels a write `RetryableWriteError` (if it carried a
/// `txnNumber`): the list from the retryable-writes specification.
const RETRYABLE_WRITE_CODES: [i32; 12] = [
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

pub const RETRYABLE_WRITE_ERROR: &str = "RetryableWriteError";

/// Whether a 4.4+ server labels a retryable write that failed with `code`.
pub fn is_retryable_write_code(code: i32) -> bool {
    RETRYABLE_WRITE_CODES.contains(&code)
}

/// The server's name for a code; `None` for codes the fake does not know.
pub fn code_name(code: i32) -> Option<&'static str> {
    Some(match code {
        1 => "InternalError",
        2 => "BadValue",
        6 => "HostUnreachable",
        7 => "HostNotFound",
        9 => "FailedToParse",
        11 => "UserNotFound",
        13 => "Unauthorized",
        14 => "TypeMismatch",
        18 => "AuthenticationFailed",
        26 => "NamespaceNotFound",
        43 => "CursorNotFound",
        50 => "MaxTimeMSExpired",
        59 => "CommandNotFound",
        // Named WriteConcernFailed before the server renamed it (specifications b643abf).
        64 => "WriteConcernTimeout",
        73 => "InvalidNamespace",
        89 => "NetworkTimeout",
        91 => "ShutdownInProgress",
        112 => "WriteConflict",
        121 => "DocumentValidationFailure",
        189 => "PrimarySteppedDown",
        225 => "TransactionTooOld",
        251 => "NoSuchTransaction",
        262 => "ExceededTimeLimit",
        9001 => "SocketException",
        10058 => "LegacyNotPrimary",
        10107 => "NotWritablePrimary",
        48 => "NamespaceExists",
        72 => "InvalidOptions",
        85 => "IndexOptionsConflict",
        86 => "IndexKeySpecsConflict",
        276 => "IndexBuildAborted",
        278 => "UnsatisfiableCommitQuorum",
        285 => "IndexBuildAlreadyInProgress",
        165 => "ViewDepthLimitExceeded",
        166 => "CommandNotSupportedOnView",
        11000 => "DuplicateKey",
        11600 => "InterruptedAtShutdown",
        11601 => "Interrupted",
        11602 => "InterruptedDueToReplStateChange",
        13435 => "NotPrimaryNoSecondaryOk",
        13436 => "NotPrimaryOrSecondary",
        _ => return None,
    })
}

/// A message in the spirit of the server's for codes a test is likely to inject.
fn default_message(code: i32) -> String {
    match code {
        2 => "bad value".into(),
        6 => "Error connecting to host".into(),
        7 => "Could not find host matching read preference".into(),
        13 => "command insert requires authentication".into(),
        18 => "Authentication failed.".into(),
        89 => "Socket operation timed out".into(),
        91 => "The server is in quiesce mode and will shut down".into(),
        189 => "Primary stepped down while waiting for replication".into(),
        262 => "operation exceeded time limit".into(),
        9001 => "socket exception".into(),
        10107 => "not primary".into(),
        11600 => "interrupted at shutdown".into(),
        11602 => "operation was interrupted because of a replication state change".into(),
        13435 => "not primary and secondaryOk=false".into(),
        13436 => "node is not in primary or recovering state".into(),
        _ => format!("error {code}"),
    }
}

/// `{ok: 0, errmsg, code, codeName}`, labelled retryable when the server would.
///
/// A code the fake does not know gets codeName `Location<code>`, which is what the server
/// reports for assertion ids that have no registered name.
pub fn command_error(code: i32, errmsg: &str, is_retryable_write: bool) -> Document {
    let name = code_name(code)
        .map(str::to_string)
        .unwrap_or_else(|| format!("Location{code}"));
    let mut reply = doc! { "ok": 0.0, "errmsg": errmsg, "code": code, "codeName": name };
    if is_retryable_write && RETRYABLE_WRITE_CODES.contains(&code) {
        reply.insert("errorLabels", vec![RETRYABLE_WRITE_ERROR]);
    }
    reply
}

/// The command's collection argument is not a string.
pub fn invalid_namespace() -> Document {
    command_error(73, "collection name must be a string", false)
}

/// What a secondary answers to a write. Like 4.4+, it is labelled retryable only when the
/// command carried a `txnNumber`; `commands::finish` attaches `topologyVersion`.
pub fn not_primary(has_txn_number: bool) -> Document {
    command_error(10107, "not primary", has_txn_number)
}

/// What a secondary answers to a read that does not allow secondaries.
pub fn not_primary_no_secondary_ok() -> Document {
    command_error(13435, "not primary and secondaryOk=false", false)
}

/// What a member in STARTUP, STARTUP2, RECOVERING or ROLLBACK answers to a read that allows
/// secondaries (`service_entry_point_common.cpp`, the dispatch checks).
pub fn not_primary_or_secondary(recovering: bool) -> Document {
    let message = match recovering {
        true => "node is recovering",
        false => "node is not in primary or recovering state",
    };
    command_error(13436, message, false)
}

/// What a command that needs a collection says of a view (`catalog_raii.cpp`): code 166,
/// CommandNotSupportedOnView.
pub fn view_message(ns: &str) -> String {
    format!("Namespace {ns} is a view, not a collection")
}

/// What an operation killed by a step-down gets (`InterruptedDueToReplStateChange`).
pub fn interrupted(is_retryable_write: bool) -> Document {
    let message = "operation was interrupted because of a replication state change";
    command_error(11602, message, is_retryable_write)
}

/// A command that ran past its `maxTimeMS`.
pub fn max_time_expired() -> Document {
    command_error(50, "operation exceeded time limit", false)
}

/// The codes of the server's NotPrimaryError category (`src/mongo/base/error_codes.yml`):
/// replies with one carry `topologyVersion`.
pub fn is_not_primary_error(code: i32) -> bool {
    matches!(code, 10107 | 11602 | 13435 | 13436 | 189 | 10058)
}

/// The reply to an insert that `fail_next_write(code)` made fail before anything was
/// written. `first_id` is the `_id` of the batch's first document.
pub fn injected_write_failure(
    code: i32,
    ns: &str,
    first_id: Bson,
    has_txn_number: bool,
) -> Document {
    match code {
        11000 => {
            let entry = duplicate_key_entry(0, ns, "_id_", "_id", 1, first_id);
            doc! { "n": 0, "writeErrors": [entry], "ok": 1.0 }
        }
        121 => {
            let entry = doc! {
                "index": 0,
                "code": 121,
                "errmsg": "Document failed validation",
                "errInfo": {
                    "failingDocumentId": first_id,
                    "details": {
                        "operatorName": "$expr",
                        "specifiedAs": { "$expr": false },
                        "reason": "expression did not match",
                        "expressionResult": false,
                    },
                },
            };
            doc! { "n": 0, "writeErrors": [entry], "ok": 1.0 }
        }
        _ => command_error(code, &default_message(code), has_txn_number),
    }
}

/// One `writeErrors` entry for a unique index violation, with the `keyPattern` and
/// `keyValue` a 4.4+ server adds.
pub fn duplicate_key_entry(
    index: usize,
    ns: &str,
    index_name: &str,
    field: &str,
    direction: i32,
    value: Bson,
) -> Document {
    doc! {
        "index": index as i32,
        "code": 11000,
        "errmsg": duplicate_key_message(ns, index_name, field, &value),
        "keyPattern": { field: direction },
        "keyValue": { field: value },
    }
}

/// `E11000 duplicate key error collection: db.coll index: _id_ dup key: { _id: ... }`
pub fn duplicate_key_message(ns: &str, index_name: &str, field: &str, value: &Bson) -> String {
    let value = shell_repr(value);
    format!(
        "E11000 duplicate key error collection: {ns} index: {index_name} \
         dup key: {{ {field}: {value} }}"
    )
}

/// Renders a value the way the server prints it inside an error message.
pub fn shell_repr(value: &Bson) -> String {
    match value {
        Bson::Binary(b) if b.subtype == bson::spec::BinarySubtype::Uuid => {
            match <[u8; 16]>::try_from(b.bytes.as_slice()) {
                Ok(bytes) => format!("UUID(\"{}\")", bson::Uuid::from_bytes(bytes)),
                Err(_) => value.to_string(),
            }
        }
        Bson::Array(values) => {
            let values: Vec<String> = values.iter().map(shell_repr).collect();
            format!("[ {} ]", values.join(", "))
        }
        Bson::ObjectId(oid) => format!("ObjectId('{}')", oid.to_hex()),
        Bson::String(s) => format!("{s:?}"),
        Bson::Int32(n) => n.to_string(),
        Bson::Int64(n) => n.to_string(),
        Bson::Double(f) => format!("{f:?}"),
        Bson::Boolean(b) => b.to_string(),
        Bson::Null | Bson::Undefined => "null".into(),
        Bson::DateTime(d) => format!("new Date({})", d.timestamp_millis()),
        Bson::Document(d) => {
            let fields: Vec<String> = d
                .iter()
                .map(|(k, v)| format!("{k}: {}", shell_repr(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        other => other.to_string(),
    }
}

/// Attaches a `writeConcernError` to an `ok: 1` reply, with the `RetryableWriteError` label
/// on the reply's top level when the command carried a `txnNumber` and the code is
/// retryable (`src/mongo/db/error_labels.cpp`): so 189 is labelled, 64 never.
pub fn add_write_concern_error(reply: &mut Document, error: Document, has_txn_number: bool) {
    let code = error.get_i32("code").unwrap_or_default();
    let ok = reply.remove("ok").unwrap_or(Bson::Double(1.0));
    reply.insert("writeConcernError", error);
    if has_txn_number && RETRYABLE_WRITE_CODES.contains(&code) {
        reply.insert("errorLabels", vec![RETRYABLE_WRITE_ERROR]);
    }
    reply.insert("ok", ok);
}
