//! How a driver error reads to a person: one line, in the seed's words where they fit.
//!
//! The driver's own `Display` adds empty fields, prints write errors with `Debug`, explains a
//! server selection timeout with a dump of its whole topology, and a failed DNS lookup with
//! the resolver's `Debug` of its query. What a person watching a failover wants is the seed's
//! warning: each member and what it is now, and when they all say the same, that once
//! (`all 3 members: connection refused`). `run` (its warnings, and why it gave up) and
//! `audit` (why it could not read) both say it here, and so does every message that echoes
//! what a person typed, cut to a readable length.

use std::collections::BTreeMap;

use mongodb::error::{Error, ErrorKind};

/// How much of a value a message echoes before it cuts the rest.
const ECHOED: usize = 100;

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
        ErrorKind::ServerSelection { message, .. } => {
            let wanted = match message.contains("ReadPreference(Primary)") {
                true => "no writable primary",
                false => "no member answers",
            };
            match servers_seen(message) {
                Some(servers) => format!("{wanted}: {servers}"),
                None => message.clone(),
            }
        }
        ErrorKind::DnsResolve { message, .. } => format!("couldn't resolve {}", dns(message)),
        ErrorKind::Io(error) => reason(&error.to_string()),
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

/// What a failed connection to a member says, in a few words: `I/O error: Connection refused
/// (os error 111)` is `connection refused`, a name that does not resolve is `no such host`.
pub fn reason(error: &str) -> String {
    let error = error.split(", labels:").next().unwrap_or(error);
    let error = error.strip_prefix("Kind: ").unwrap_or(error);
    let error = error.strip_prefix("I/O error: ").unwrap_or(error);
    let error = match error.rfind(" (os error ") {
        Some(at) if error.ends_with(')') => &error[..at],
        _ => error,
    };
    if error.contains("failed to lookup address") || error.contains("Name or service not known") {
        return "no such host".to_string();
    }
    let mut chars = error.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `1 breath`, `2 breaths`.
pub fn count(n: impl Into<u64>, what: &str) -> String {
    match n.into() {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// A message with each word longer than about 100 characters cut short, as a value a person
/// typed (or pasted) is echoed: `--db` given a megabyte would otherwise be a megabyte of
/// error.
pub fn cut(message: &str) -> String {
    message
        .split(' ')
        .map(|word| match word.char_indices().nth(ECHOED) {
            Some((at, _)) => {
                let left = word.chars().count() - ECHOED;
                format!("{}... ({left} more characters)", &word[..at])
            }
            None => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Each member named in a server selection timeout, and what the driver took it for, in
/// address order: `127.0.0.1:27017 connection refused, 127.0.0.1:27018 secondary`, or, when
/// they all say the same, `all 3 members: connection refused`. `None` if the message's shape
/// is not the expected one.
fn servers_seen(message: &str) -> Option<String> {
    let servers: BTreeMap<&str, String> = message
        .split("{ Address: ")
        .skip(1)
        .filter_map(|server| {
            let (address, rest) = server.split_once(", Type: ")?;
            let kind = rest.split([',', ' ']).next()?;
            let state = match rest.split_once("Error: ") {
                Some((_, error)) => reason(error.trim_end_matches([' ', '}', ']'])),
                None => member_kind(kind).to_string(),
            };
            Some((address, state))
        })
        .collect();
    let first = servers.values().next()?;
    if servers.len() > 1 && servers.values().all(|state| state == first) {
        return Some(format!("all {} members: {first}", servers.len()));
    }
    let each: Vec<String> = servers
        .iter()
        .map(|(address, state)| format!("{address} {state}"))
        .collect();
    Some(each.join(", "))
}

/// What the driver's name for a member's type means.
fn member_kind(kind: &str) -> &str {
    match kind {
        "RsPrimary" => "primary",
        "RsSecondary" => "secondary",
        "RsArbiter" => "arbiter",
        "RsOther" => "neither primary nor secondary (recovering, or starting)",
        "RsGhost" => "not in a replica set yet",
        "Standalone" => "standalone, not in a replica set",
        "Mongos" => "mongos",
        "Unknown" => "not heard from yet",
        other => other,
    }
}

/// A resolver's error without its `Debug` output: `no records found for Query { name:
/// Name("_mongodb._tcp.x."), query_type: SRV, .. }` is `no SRV record for _mongodb._tcp.x`.
fn dns(message: &str) -> String {
    let message = message.strip_prefix("DNS error: ").unwrap_or(message);
    let name = message
        .split_once("name: Name(\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(name, _)| name.trim_end_matches('.'));
    let kind = message
        .split_once("query_type: ")
        .and_then(|(_, rest)| rest.split([',', ' ', '}']).next());
    match (name, kind) {
        (Some(name), Some(kind)) if message.starts_with("no records found") => {
            format!("{name}: no {kind} record")
        }
        (Some(name), _) => format!("{name}: {}", message.split(" for ").next().unwrap_or("")),
        _ => message.to_string(),
    }
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
        assert_eq!(describe(&io_error()), "connection reset");
    }

    const REFUSED: &str = "Error: Kind: I/O error: Connection refused (os error 111), labels: \
                           {}, source: None, server response: None }";

    #[test]
    fn server_selection_timeouts_read_like_the_seeds_warnings() {
        let message = format!(
            "Server selection timeout: None of the available servers suitable for criteria \
             ReadPreference(Primary). Topology: {{ Type: ReplicaSetNoPrimary, Set Name: rs0, \
             Max Set Version: 1, Servers: [ {{ Address: 127.0.0.1:39135, Type: RsSecondary, \
             Average RTT: 1.66ms, Replica Set Name: rs0 }}, {{ Address: 127.0.0.1:33517, Type: \
             Unknown, {REFUSED} ] }}"
        );
        assert_eq!(
            servers_seen(&message).unwrap(),
            "127.0.0.1:33517 connection refused, 127.0.0.1:39135 secondary"
        );
        assert_eq!(servers_seen("something else"), None);
    }

    #[test]
    fn members_that_say_the_same_are_said_once() {
        let servers: Vec<String> = (1..=3)
            .map(|i| format!("{{ Address: 127.0.0.1:2701{i}, Type: Unknown, {REFUSED}"))
            .collect();
        let message = format!("Topology: {{ Servers: [ {} ] }}", servers.join(", "));
        assert_eq!(
            servers_seen(&message).unwrap(),
            "all 3 members: connection refused"
        );
    }

    #[test]
    fn a_resolvers_debug_output_is_not_shown() {
        let message = "DNS error: no records found for Query { name: \
                       Name(\"_mongodb._tcp.nowhere.invalid.\"), query_type: SRV, query_class: \
                       IN }";
        assert_eq!(dns(message), "_mongodb._tcp.nowhere.invalid: no SRV record");
        assert_eq!(dns("request timed out"), "request timed out");
    }

    #[test]
    fn reasons_are_a_few_words() {
        assert_eq!(
            reason("I/O error: Connection refused (os error 111)"),
            "connection refused"
        );
        assert_eq!(
            reason("Kind: I/O error: failed to lookup address information: Name or service not known, labels: {}"),
            "no such host"
        );
    }

    #[test]
    fn counts_and_cuts() {
        assert_eq!(count(1u32, "attempt"), "1 attempt");
        assert_eq!(count(0u32, "breath"), "0 breaths");
        assert_eq!(cut("--db abc"), "--db abc");
        let long = "x".repeat(250);
        assert_eq!(
            cut(&format!("--db {long}")),
            format!("--db {}... (150 more characters)", "x".repeat(100))
        );
    }
}
