//! Whether any member of the set has answered yet, and what the driver heard instead.
//!
//! A set that is not there is the first thing a new user meets: the compose set not started,
//! a URI pointing at the wrong host or naming the wrong set. The driver then says nothing
//! until server selection times out, and then all of its topology. mabel says so once, in one
//! line, after `--retry-wait`: no member of the set answers at these hosts, and what each
//! said instead (refused, timed out, a member of another set), and how to start one.
//!
//! It also lets a first Ctrl-C stop at once while no member has answered: no insert can have
//! been sent before a member answered (the driver selects a server only from the replies of
//! its monitors), so the breath in flight is certainly not stored. The monitors' events reach
//! mabel from a task of their own, possibly late, so mabel also notes when the driver starts
//! sending an insert (command events come before the message goes out, on the operation's own
//! task): only when neither has happened is the breath sure to be nowhere.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use log::warn;

use crate::wording;

/// What mabel has heard from the set so far; clones share it.
#[derive(Clone, Default)]
pub struct Contact {
    heard: Arc<(Mutex<Heard>, Condvar)>,
}

#[derive(Default)]
struct Heard {
    /// A member has answered a monitor's `hello`.
    answered: bool,
    /// An insert has been sent, or is about to be.
    sent: bool,
    /// The last failure of each member's monitor, in a few words, by address.
    failures: BTreeMap<String, String>,
}

impl Contact {
    /// A member's monitor heard from it.
    pub fn answered(&self) {
        self.lock().answered = true;
        self.heard.1.notify_all();
    }

    /// A member's monitor could not reach it.
    pub fn failed(&self, address: String, error: &mongodb::error::Error) {
        let reason = wording::reason(&error.to_string());
        self.lock().failures.insert(address, reason);
    }

    /// A server answered at `address`, but not as a member of the set `want`: a URI with the
    /// wrong `replicaSet`, or a server of no set at all. The driver sends it nothing.
    pub fn of_another_set(&self, address: String, want: &str, answered_for: Option<&str>) {
        let reason = match answered_for {
            Some(other) => format!("a member of set {other:?}, not {want:?}"),
            None => format!("a server of no set, not of {want:?}"),
        };
        self.lock().failures.insert(address, reason);
    }

    /// The driver is about to send an insert.
    pub fn sending(&self) {
        self.lock().sent = true;
    }

    /// Whether no breath can have reached the set: no member has answered, and no insert
    /// has been sent.
    pub fn nothing_sent(&self) -> bool {
        let heard = self.lock();
        !heard.answered && !heard.sent
    }

    /// Says, once, if no member has answered `wait` from now: which hosts were tried, what
    /// they said, and how to start a set. On a thread of its own, so that nothing waits.
    pub fn say_if_silent(&self, hosts: Vec<String>, wait: Duration) {
        let contact = self.clone();
        let watch = move || {
            if contact.wait_for_answer(wait) {
                return;
            }
            let failures = contact.lock().failures.clone();
            warn!("{}", silence(&hosts, &failures));
        };
        if let Err(error) = thread::Builder::new().name("contact".into()).spawn(watch) {
            warn!("couldn't watch for the set's first answer: {error}");
        }
    }

    /// Waits at most `wait` for a member to answer; whether one has.
    fn wait_for_answer(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut heard = self.lock();
        while !heard.answered {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            heard = self
                .heard
                .1
                .wait_timeout(heard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, Heard> {
        self.heard.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The line for a set that does not answer: `no member of the set answers at a:1, b:2 (all 2:
/// connection refused); ...`.
fn silence(hosts: &[String], failures: &BTreeMap<String, String>) -> String {
    let said: Vec<&String> = hosts.iter().filter_map(|h| failures.get(h)).collect();
    let why = match said.first() {
        None => String::new(),
        Some(first) if said.len() == hosts.len() && said.iter().all(|s| s == first) => {
            match hosts.len() {
                1 => format!(" ({first})"),
                n => format!(" (all {n}: {first})"),
            }
        }
        Some(_) => {
            let each: Vec<String> = hosts
                .iter()
                .filter_map(|h| Some(format!("{h} {}", failures.get(h)?)))
                .collect();
            format!(" ({})", each.join(", "))
        }
    };
    format!(
        "no member of the set answers at {}{why}; start one with `make up` or `make run`, or \
         point --uri or MONGODB_URI at one that runs",
        hosts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_names_the_hosts_and_says_one_reason_once() {
        let hosts = vec!["a:1".to_string(), "b:2".to_string()];
        let mut failures = BTreeMap::new();
        assert!(silence(&hosts, &failures)
            .starts_with("no member of the set answers at a:1, b:2; start one with `make up`"));
        failures.insert("a:1".to_string(), "connection refused".to_string());
        failures.insert("b:2".to_string(), "connection refused".to_string());
        assert!(silence(&hosts, &failures)
            .starts_with("no member of the set answers at a:1, b:2 (all 2: connection refused); "));
        failures.insert("b:2".to_string(), "timed out".to_string());
        assert!(silence(&hosts, &failures).contains("(a:1 connection refused, b:2 timed out)"));
    }

    #[test]
    fn nothing_is_sent_until_a_member_answers_or_an_insert_goes() {
        let contact = Contact::default();
        assert!(contact.nothing_sent());
        assert!(!contact.wait_for_answer(Duration::from_millis(10)));
        contact.sending();
        assert!(!contact.nothing_sent());
        let contact = Contact::default();
        contact.of_another_set("a:1".to_string(), "rs0", Some("other"));
        assert!(
            contact.nothing_sent(),
            "a server of another set is sent nothing"
        );
        assert!(silence(&["a:1".to_string()], &contact.lock().failures)
            .contains(" at a:1 (a member of set \"other\", not \"rs0\"); "));
        contact.answered();
        assert!(!contact.nothing_sent());
        assert!(contact.wait_for_answer(Duration::from_secs(60)));
    }
}
