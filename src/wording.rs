//! How a driver error reads to a person: one line, in the seed's words where they fit.
//!
//! The driver's own `Display` adds empty fields, prints write errors with `Debug`, and
//! explains a server selection timeout with a dump of its whole topology. What a person
//! watching a failover wants is the seed's warning: each member and what it is now. `run`
//! (its warnings, and why it gave up) and `audit` (why it could not read) both say it here.

use mongodb::error::{Error, ErrorKind};

/// One line for a failed write, or any error but a read's. A batch's write errors are summed
/// up by their first.
pub fn describe(error: &Error) -> String {
    let mut line = match &*error.kind {
        ErrorKind::InsertMany(reply) => {
            let mut parts = Vec::new();
            let errors = reply.write_errors.as_deref().unwrap_or_default();
            if let Some(e) = errors.first() {
                let more = match errors.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                parts.push(format!("write error {}: {}{more}", e.code, e.message));
            }
            if let Some(e) = &reply.write_concern_error {
                parts.push(format!(
                    "write concern error {} ({}): {}",
                    e.code, e.code_name, e.message
                ));
            }
            parts.join("; ")
        }
        ErrorKind::ServerSelection { message, .. } => match servers_seen(message) {
            Some(servers) => format!("no writable primary: {servers}"),
            None => message.clone(),
        },
        kind => kind.to_string(),
    };
    let mut labels: Vec<&str> = error.labels().iter().map(String::as_str).collect();
    if !labels.is_empty() {
        labels.sort_unstable();
        line.push_str(&format!(" [{}]", labels.join(", ")));
    }
    line
}

/// One line for a failed read. Reads may go to a secondary, so a server selection timeout
/// means no member at all could be read from.
pub fn describe_read(error: &Error) -> String {
    match &*error.kind {
        ErrorKind::ServerSelection { message, .. } => match servers_seen(message) {
            Some(servers) => format!("no member to read from: {servers}"),
            None => message.clone(),
        },
        _ => describe(error),
    }
}

/// Each member named in a server selection timeout, and what the driver took it for:
/// `127.0.0.1:27017 Unknown (I/O error: ...), 127.0.0.1:27018 RsSecondary`. `None` if the
/// message's shape is not the expected one.
fn servers_seen(message: &str) -> Option<String> {
    let servers: Vec<String> = message
        .split("{ Address: ")
        .skip(1)
        .filter_map(|server| {
            let (address, rest) = server.split_once(", Type: ")?;
            let kind = rest.split([',', ' ']).next()?;
            Some(match rest.split_once("Error: Kind: ") {
                Some((_, error)) => {
                    let error = error.split(", labels:").next().unwrap_or(error);
                    format!("{address} {kind} ({error})")
                }
                None => format!("{address} {kind}"),
            })
        })
        .collect();
    (!servers.is_empty()).then(|| servers.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_errors::{io_error, reply};

    #[test]
    fn errors_are_described_on_one_line() {
        assert_eq!(
            describe(&reply(&[(0, 121, "Document failed validation")], None)),
            "write error 121: Document failed validation"
        );
        assert_eq!(
            describe(&reply(&[(0, 11000, "dup"), (1, 11000, "dup")], Some(64))),
            "write error 11000: dup (and 1 more); write concern error 64 (X): x"
        );
        assert!(describe(&io_error()).starts_with("I/O error: "));
    }

    #[test]
    fn server_selection_timeouts_read_like_the_seeds_warnings() {
        let message = "Server selection timeout: None of the available servers suitable for \
            criteria ReadPreference(Primary). Topology: { Type: ReplicaSetNoPrimary, Set Name: \
            rs0, Max Set Version: 1, Servers: [ { Address: 127.0.0.1:33517, Type: Unknown, \
            Error: Kind: I/O error: Connection refused (os error 111), labels: {}, source: \
            None, server response: None }, { Address: 127.0.0.1:39135, Type: RsSecondary, \
            Average RTT: 1.66ms, Replica Set Name: rs0 } ] }";
        assert_eq!(
            servers_seen(message).unwrap(),
            "127.0.0.1:33517 Unknown (I/O error: Connection refused (os error 111)), \
             127.0.0.1:39135 RsSecondary"
        );
        assert_eq!(servers_seen("something else"), None);
    }
}
