//! The failure `w: 1` cannot survive: the primary is cut off from the other members while
//! mabel still reaches it, the others elect a new primary, and when the old one rejoins it
//! rolls back every write only it had (MongoDB manual, "Rollbacks During Replica Set
//! Failover"). The schedule reads as MongoDB's own rollback tests do
//! (`jstests/replsets/libs/rollback_test.js`): stop replication to and from the primary, let
//! the others elect another (the simulated set does so by itself, as a real one would, and
//! the old primary steps down when it has heard from no majority for an election timeout),
//! heal, watch the rollback.
//!
//! With `--write-concern 1` mabel confirms breaths that are then rolled back, and the audit
//! says so. With the defaults (`w: "majority"`) nothing it confirms can be rolled back,
//! whether the driver retries or not, with or without a `wtimeoutMS`, and with a reply lost
//! on the way back from the cut-off primary.

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::Document;
use serde_json::Value;

use crate::support::mabel::{assert_stored_exactly_once, Mabel, Outcome};
use crate::support::target::fake_only;
use mabel_sim::{ReplicaSet, Role, Timers};

const WATCHDOG: Duration = Duration::from_secs(90);
const BREATHS: usize = 60;

/// How the test plays the partition, beyond the schedule every case shares.
#[derive(Clone, Copy, Default)]
struct Play {
    /// The first write the cut-off primary takes loses its reply.
    drop_a_reply: bool,
    /// The set's election timeout: about how long the old primary is the only one before
    /// it steps down and the others elect a new one.
    alone: Duration,
}

/// mabel writes through member 0, which is cut off; the others elect one of their own; the
/// set heals. Returns the set (healed) and how mabel ended; `None` against a real set, where
/// `test` is skipped.
fn partition(
    test: &str,
    uri_options: &str,
    args: &[&str],
    play: Play,
) -> Option<(ReplicaSet, Outcome)> {
    let reason = "cuts a member off from the others while mabel still reaches it";
    fake_only(&format!("partition::{test}"), reason)?;
    let set = ReplicaSet::with_timers(Timers::with_election_timeout(play.alone));
    let uri = format!("{}{uri_options}", set.uri());
    let count = BREATHS.to_string();
    let run = [&["run", "--interval", "0.05", "--count", &count][..], args].concat();
    let mut mabel = Mabel::start(&uri, &run);
    mabel.wait_for_breaths(5, Duration::from_secs(30));

    set.isolate(0);
    if play.drop_a_reply {
        set.drop_next_reply();
    }
    let deadline = Instant::now() + WATCHDOG;
    while set.writable_primary().is_none_or(|p| p == 0)
        || set.status()[0].role != Some(Role::Secondary)
    {
        assert!(
            Instant::now() < deadline,
            "no new primary: {:#?}",
            set.events()
        );
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_secs(1));
    set.heal();
    let outcome = mabel.finish(WATCHDOG);
    assert_ne!(set.primary(), Some(0));
    Some((set, outcome))
}

fn audit(set: &ReplicaSet) -> (Option<i32>, Value) {
    crate::support::mabel::audit(&set.uri())
}

fn ids(docs: &[Document]) -> HashSet<ObjectId> {
    docs.iter()
        .map(|d| d.get_object_id("_id").expect("an ObjectId _id"))
        .collect()
}

/// Nothing lost, nothing doubled: every confirmed breath stored once, on every member, and
/// the audit agrees. Breaths rolled back were written again. Returns the audit's report.
fn assert_nothing_lost(set: &ReplicaSet, outcome: &Outcome) -> Value {
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(outcome.confirmed().len(), BREATHS, "{outcome:#?}");
    let stored = set.committed("mabel", "breaths");
    assert_stored_exactly_once(outcome, &stored);
    for member in 0..3 {
        assert_eq!(set.documents_on(member, "mabel", "breaths"), stored);
    }
    let rolled_back = ids(&set.rolled_back("mabel", "breaths"));
    assert!(
        rolled_back.is_subset(&ids(&stored)),
        "a rolled-back breath was not written again"
    );
    let (code, report) = audit(set);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        (report["lost"].as_u64(), report["doubled"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(report["breaths"], BREATHS);
    report
}

#[test]
fn with_w1_the_breaths_the_cut_off_primary_acknowledged_are_rolled_back() {
    let play = Play {
        alone: Duration::from_secs(1),
        ..Play::default()
    };
    let Some((set, outcome)) = partition(
        "with_w1_the_breaths_the_cut_off_primary_acknowledged_are_rolled_back",
        "",
        &["--write-concern", "1"],
        play,
    ) else {
        return;
    };

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let confirmed: HashSet<ObjectId> = outcome.confirmed().iter().map(|c| c.id).collect();
    let rolled_back = ids(&set.rolled_back("mabel", "breaths"));
    let stored = ids(&set.committed("mabel", "breaths"));
    assert!(!rolled_back.is_empty(), "nothing was rolled back");
    assert!(
        rolled_back.is_subset(&confirmed),
        "mabel confirmed every breath rolled back"
    );
    assert!(rolled_back.is_disjoint(&stored));
    assert_eq!(
        &stored | &rolled_back,
        confirmed,
        "what is stored is what mabel confirmed, less what was rolled back"
    );

    let (code, report) = audit(&set);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["lost"], rolled_back.len());
    assert_eq!(report["doubled"], 0);
    let text = crate::support::mabel::command()
        .args(["audit", "--uri", &set.uri()])
        .output()
        .expect("mabel audit runs");
    eprintln!(
        "w: 1 through a partition: {} breaths confirmed, {} rolled back; mabel audit says:\n{}",
        confirmed.len(),
        rolled_back.len(),
        String::from_utf8_lossy(&text.stdout),
    );
}

#[test]
fn with_the_defaults_nothing_confirmed_is_rolled_back() {
    let play = Play {
        alone: Duration::from_secs(1),
        ..Play::default()
    };
    let Some((set, outcome)) = partition(
        "with_the_defaults_nothing_confirmed_is_rolled_back",
        "",
        &[],
        play,
    ) else {
        return;
    };
    let report = assert_nothing_lost(&set, &outcome);

    // The breath that waited on the cut-off primary until it stepped down: its first
    // attempt was rolled back, and it was written again on the new primary.
    let rolled_back = ids(&set.rolled_back("mabel", "breaths"));
    assert_eq!(rolled_back.len(), 1, "{outcome:#?}");
    let waited = rolled_back.iter().next().expect("one breath");
    let incident = outcome
        .stdout
        .iter()
        .find(|l| l.starts_with(&format!("incident: breath {waited} waited")))
        .unwrap_or_else(|| panic!("no incident line for {waited}: {outcome:#?}"));
    assert!(incident.contains(" -> "), "{incident}");
    let done = outcome.stdout.last().expect("a summary line");
    eprintln!(
        "defaults through a partition:\n{incident}\n{done}\n1 breath rolled back and written \
         again; audit: {} breaths, {} lost, {} doubled",
        report["breaths"], report["lost"], report["doubled"]
    );
}

#[test]
fn without_the_drivers_retry_a_lost_reply_on_the_cut_off_primary_loses_nothing() {
    let play = Play {
        drop_a_reply: true,
        alone: Duration::from_secs(1),
    };
    let Some((set, outcome)) = partition(
        "without_the_drivers_retry_a_lost_reply_on_the_cut_off_primary_loses_nothing",
        "&retryWrites=false",
        &[],
        play,
    ) else {
        return;
    };
    assert_nothing_lost(&set, &outcome);
}

#[test]
fn with_a_wtimeout_a_lost_reply_on_the_cut_off_primary_loses_nothing() {
    // Long enough alone for the write concern to time out, and for mabel's own retry to
    // meet its breath's `_id` on the cut-off primary.
    let play = Play {
        drop_a_reply: true,
        alone: Duration::from_millis(2500),
    };
    let Some((set, outcome)) = partition(
        "with_a_wtimeout_a_lost_reply_on_the_cut_off_primary_loses_nothing",
        "&wtimeoutMS=500",
        &[],
        play,
    ) else {
        return;
    };
    assert_nothing_lost(&set, &outcome);
}
