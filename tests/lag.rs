//! Replication lag, seen through the real binary: with its defaults mabel confirms a breath
//! only once a majority holds it, and `mabel audit`, which reads with read concern
//! "majority", does not count a breath only the primary holds.

use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::support::mabel::{assert_stored_exactly_once, Mabel};
use crate::support::target::fake_only;
use mabel_sim::ReplicaSet;

/// Why these tests are skipped against a real set (`make test-real`).
const FAKE_ONLY: &str = "sets a member's replication lag";

const WATCHDOG: Duration = Duration::from_secs(60);
const FOREVER: Duration = Duration::from_secs(3600);

fn audit(set: &ReplicaSet) -> Value {
    crate::support::mabel::audit(&set.uri()).1
}

#[test]
fn a_breath_is_confirmed_only_once_a_majority_holds_it() {
    let Some(set) = fake_only(
        "lag::a_breath_is_confirmed_only_once_a_majority_holds_it",
        FAKE_ONLY,
    ) else {
        return;
    };
    set.set_lag(1, FOREVER);
    set.set_lag(2, FOREVER);
    let mut mabel = Mabel::start(&set.uri(), &["run", "--interval", "0.05", "--count", "5"]);

    // The first breath is on the primary and waits there: no secondary copies it.
    let deadline = std::time::Instant::now() + WATCHDOG;
    while set.documents_on(0, "mabel", "breaths").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no breath arrived");
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(mabel.confirmed_after(Duration::from_millis(500)), 0);
    assert!(set.committed("mabel", "breaths").is_empty());

    // One secondary catching up is a majority: the breath is confirmed, then the rest.
    set.set_lag(2, Duration::from_millis(100));
    let outcome = mabel.finish(WATCHDOG);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(outcome.confirmed().len(), 5);
    assert_stored_exactly_once(&outcome, &set.committed("mabel", "breaths"));
    assert!(set.documents_on(1, "mabel", "breaths").is_empty());
}

#[test]
fn the_audit_does_not_count_a_breath_only_the_primary_holds() {
    let Some(set) = fake_only(
        "lag::the_audit_does_not_count_a_breath_only_the_primary_holds",
        FAKE_ONLY,
    ) else {
        return;
    };
    let first = Mabel::start(&set.uri(), &["run", "--interval", "0.05", "--count", "5"]);
    let first = first.finish(WATCHDOG);
    assert_eq!(first.code, Some(0), "{first:#?}");

    set.set_lag(1, FOREVER);
    set.set_lag(2, FOREVER);
    let args = [
        "run",
        "--interval",
        "0.05",
        "--count",
        "5",
        "--write-concern",
        "1",
    ];
    let second = Mabel::start(&set.uri(), &args).finish(WATCHDOG);
    assert_eq!(second.confirmed().len(), 5, "{second:#?}");
    assert_eq!(set.documents("mabel", "breaths").len(), 10);

    let report = audit(&set);
    assert_eq!(report["breaths"], 5, "{report}");
    assert_eq!(report["lost"], 0);

    // Caught up, both secondaries agree with the primary, whichever the audit reads.
    set.set_lag(1, Duration::ZERO);
    set.set_lag(2, Duration::ZERO);
    let report = audit(&set);
    assert_eq!(report["breaths"], 10, "{report}");
}

/// Both passes of an audit read one member. With one secondary lagging and the other not, the
/// two hold different majority snapshots; passes that each picked a member of their own would
/// count the breaths of one and the writers (from the `_id` pass) of the other.
#[test]
fn both_passes_of_an_audit_read_the_same_member() {
    let Some(set) = fake_only(
        "lag::both_passes_of_an_audit_read_the_same_member",
        FAKE_ONLY,
    ) else {
        return;
    };
    let run = || {
        let args = ["run", "--interval", "0.02", "--count", "5"];
        let outcome = Mabel::start(&set.uri(), &args).finish(WATCHDOG);
        assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    };
    run();
    // Member 1 stops copying; member 2 and the primary make the majority for the next five.
    set.set_lag(1, FOREVER);
    run();
    let uri = format!("{}&readPreference=secondary", set.uri());
    for _ in 0..12 {
        let (_, report) = crate::support::mabel::audit(&uri);
        let seen = (report["processes"].as_u64(), report["breaths"].as_u64());
        assert!(
            seen == (Some(1), Some(5)) || seen == (Some(2), Some(10)),
            "the passes read different members: {report}"
        );
    }
}
