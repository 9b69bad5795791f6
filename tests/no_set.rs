//! A set that is not there: nothing listens at the URI's hosts. Within one `--retry-wait`
//! mabel says so in one line, naming the hosts and how to start a set; its warnings after that
//! are short; nothing is said of the index; and a first Ctrl-C stops at once, saying that the
//! breath in flight was not stored, which is certain, since no member ever answered.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::support::mabel::Mabel;
use crate::support::spool_file::{waiting_in, Scratch};
use mabel_sim::ReplicaSet;

const WATCHDOG: Duration = Duration::from_secs(30);

/// Three ports of 127.0.0.1 on which nothing listens (none did a moment ago).
fn hosts_of_no_set() -> Vec<String> {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| format!("127.0.0.1:{}", l.local_addr().expect("bound").port()))
        .collect()
}

fn uri(hosts: &[String]) -> String {
    format!("mongodb://{}/?replicaSet=nowhere", hosts.join(","))
}

#[test]
fn one_line_says_no_member_answers_and_a_first_ctrl_c_stops_at_once() {
    let hosts = hosts_of_no_set();
    let args = ["run", "--retry-wait", "0.5", "--interval", "0.1"];
    let mut mabel = Mabel::start(&uri(&hosts), &args);

    let (line, at) = mabel.wait_for_stderr("no member of the set answers", WATCHDOG);
    assert!(at < Duration::from_millis(1500), "said after {at:?}");
    let expected = format!(
        "no member of the set answers at {} (all 3: connection refused); start one with `make \
         up` or `make run`, or point --uri or MONGODB_URI at one that runs",
        hosts.join(", ")
    );
    assert!(line.ends_with(&expected), "{line}");
    for _ in 0..2 {
        let (warning, _) = mabel.wait_for_stderr("Warning", WATCHDOG);
        assert!(
            warning
                .contains("Warning no member answers: all 3 members: connection refused (attempt "),
            "{warning}"
        );
        assert!(
            warning.len() < 120,
            "{} characters: {warning}",
            warning.len()
        );
    }

    let signalled = Instant::now();
    mabel.signal("INT");
    let outcome = mabel.finish(WATCHDOG);
    assert!(signalled.elapsed() < Duration::from_secs(1), "{outcome:#?}");
    assert_eq!(outcome.code, Some(130), "{outcome:#?}");
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    let last = outcome.stderr.lines().last().unwrap_or_default();
    let rest = last
        .strip_prefix("error: stopped by SIGINT before any member of the set answered: breath ")
        .unwrap_or_else(|| panic!("{last:?}"));
    assert!(rest.ends_with(" was not stored"), "{last}");
    assert_eq!(
        outcome
            .stderr
            .matches("no member of the set answers")
            .count(),
        1
    );
    assert!(!outcome.stderr.contains("index"), "{}", outcome.stderr);
    assert!(outcome.stdout.is_empty(), "{outcome:#?}");
}

/// What mabel says when it gives up on one attempt, or one breath fills its spool: in the
/// singular.
#[test]
fn one_of_a_thing_is_said_as_one() {
    let hosts = hosts_of_no_set();
    let args = [
        "run",
        "--retry-wait",
        "0.2",
        "--attempts",
        "1",
        "--interval",
        "0.05",
    ];
    let outcome = Mabel::start(&uri(&hosts), &args).finish(WATCHDOG);
    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    let last = outcome.stderr.lines().last().unwrap_or_default();
    assert!(last.contains(": gave up after 1 attempt in 0."), "{last}");

    let dir = Scratch::new("no-set-singular");
    let spool = dir.spool();
    let spooled = [
        "run",
        "--spool",
        spool.to_str().expect("a UTF-8 path"),
        "--spool-max-bytes",
        "41",
        "--retry-wait",
        "0.2",
        "--attempts",
        "1",
        "--interval",
        "0.3",
    ];
    let outcome = Mabel::start(&uri(&hosts), &spooled).finish(WATCHDOG);
    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    assert!(
        outcome
            .stderr
            .contains("Waiting: 1 breath in the spool; breath "),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains(": gave up after 1 attempt in 0."),
        "{}",
        outcome.stderr
    );
    let last = outcome.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(" is full: 1 breath waits in it and --spool-max-bytes is 41; "),
        "{last}"
    );
}

/// With a spool, the breath a first Ctrl-C leaves unsent is not lost: mabel says it waits in
/// the spool, and it does, with those measured behind it. Meanwhile, a spool given up on
/// again and again, with nothing written, is said to wait, never to be catching up.
#[test]
fn a_first_ctrl_c_with_a_spool_says_the_breath_waits_there() {
    let hosts = hosts_of_no_set();
    let dir = Scratch::new("no-set-ctrl-c-spool");
    let spool = dir.spool();
    let path = spool.to_str().expect("a UTF-8 path");
    let args = [
        "run",
        "--spool",
        path,
        "--retry-wait",
        "0.2",
        "--attempts",
        "1",
        "--interval",
        "0.1",
    ];
    let mut mabel = Mabel::start(&uri(&hosts), &args);
    mabel.wait_for_stderr("Waiting: ", WATCHDOG);
    // Past the second after which a backlog that drains is reported.
    std::thread::sleep(Duration::from_millis(1500));
    mabel.signal("INT");
    let outcome = mabel.finish(WATCHDOG);
    assert_eq!(outcome.code, Some(130), "{outcome:#?}");
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    let last = outcome.stderr.lines().last().unwrap_or_default();
    let rest = last
        .strip_prefix("error: stopped by SIGINT before any member of the set answered: breath ")
        .unwrap_or_else(|| panic!("{last:?}"));
    let (id, kept) = rest.split_once(' ').unwrap_or_else(|| panic!("{last:?}"));
    assert_eq!(
        kept,
        format!(
            "was not stored; it waits in spool {path}, with the breaths behind it, for the next run"
        ),
        "{last}"
    );
    assert!(
        !outcome.stderr.contains("catching up"),
        "{}",
        outcome.stderr
    );
    let waiting = waiting_in(&spool);
    assert!(waiting.len() > 1, "{waiting:?}");
    assert_eq!(waiting[0].to_hex(), id, "the oldest is the one in flight");
}

/// A set that answers under another name (a URI with the wrong `replicaSet`): the driver sends
/// it nothing, so mabel says so in its one line, naming the set that did answer, and a first
/// Ctrl-C stops at once, as for no set at all.
#[test]
fn a_set_of_another_name_is_named_and_a_first_ctrl_c_stops_at_once() {
    let set = ReplicaSet::start();
    let hosts = set.hosts();
    let name = set.uri();
    let name = name
        .split("replicaSet=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("the set's name in its URI");
    let uri = format!("mongodb://{}/?replicaSet=wrong", hosts.join(","));
    let args = ["run", "--retry-wait", "0.5", "--interval", "0.1"];
    let mut mabel = Mabel::start(&uri, &args);

    let (line, _) = mabel.wait_for_stderr("no member of the set answers", WATCHDOG);
    let expected = format!(
        "no member of the set answers at {} (all 3: a member of set \"{name}\", not \"wrong\"); ",
        hosts.join(", ")
    );
    assert!(line.contains(&expected), "{line}");

    let signalled = Instant::now();
    mabel.signal("INT");
    let outcome = mabel.finish(WATCHDOG);
    assert!(signalled.elapsed() < Duration::from_secs(1), "{outcome:#?}");
    assert_eq!(outcome.code, Some(130), "{outcome:#?}");
    let last = outcome.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: stopped by SIGINT before any member of the set answered: "),
        "{last}"
    );
    assert!(set.documents("mabel", "breaths").is_empty());
}
