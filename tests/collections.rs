//! The collection breaths go to is looked up before the first breath reaches it: a
//! time-series collection, which keeps no unique `_id`, and a view, which takes no writes, are
//! refused with exit 2 and nothing sent; a capped one is written to with one warning. With no
//! member answering at start, the look-up waits for one, and is never skipped.

use std::time::Duration;

use mongodb::options::TimeseriesOptions;
use mongodb::sync::{Client, Database};

use crate::support::mabel::{audit, Mabel, Outcome};
use crate::support::target::{fake_only, Target};

const WATCHDOG: Duration = Duration::from_secs(60);

fn database(target: &Target) -> Database {
    Client::with_uri_str(target.uri())
        .expect("a client")
        .database(target.db())
}

fn time_series(db: &Database) {
    let options = TimeseriesOptions::builder().time_field("time").build();
    db.create_collection("breaths")
        .timeseries(options)
        .run()
        .expect("a time-series collection");
}

/// Exit 2 and one line saying why, and that a regular collection is what to give; nothing
/// written.
fn assert_refused(outcome: &Outcome, why: &str) {
    assert_eq!(outcome.code, Some(2), "{outcome:#?}");
    let errors: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{outcome:#?}");
    assert!(errors[0].contains(why), "{}", errors[0]);
    assert!(
        errors[0].contains(
            "give --collection a regular collection (mabel creates one if the name is free)"
        ),
        "{}",
        errors[0]
    );
    assert!(outcome.confirmed().is_empty(), "{outcome:#?}");
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
}

#[test]
fn a_time_series_collection_is_refused_before_any_breath_is_sent() {
    let target = Target::start();
    target.wait_for_primary(WATCHDOG);
    time_series(&database(&target));
    let before = target.insert_count();
    let outcome = target
        .mabel(&["run", "--interval", "0.05", "--count", "3"])
        .finish(WATCHDOG);

    assert_refused(
        &outcome,
        "is a time-series collection, which keeps no unique _id: a breath sent again after a \
         failover could be stored twice and no error would say so",
    );
    assert_eq!(target.insert_count(), before, "an insert was sent");
    assert!(target.breaths().is_empty());
}

#[test]
fn a_view_is_refused_the_same_way() {
    let target = Target::start();
    target.wait_for_primary(WATCHDOG);
    let db = database(&target);
    db.create_collection("breaths")
        .view_on("elsewhere".to_string())
        .run()
        .expect("a view");
    let outcome = target
        .mabel(&["run", "--interval", "0.05", "--count", "3"])
        .finish(WATCHDOG);

    let on = format!(
        "is a view on {}.elsewhere, which takes no writes",
        target.db()
    );
    assert_refused(&outcome, &on);
    assert!(target.documents(target.db(), "elsewhere").is_empty());
}

#[test]
fn a_capped_collection_gets_one_warning_and_every_breath() {
    let target = Target::start();
    target.wait_for_primary(WATCHDOG);
    database(&target)
        .create_collection("breaths")
        .capped(true)
        .size(100_000)
        .max(5)
        .run()
        .expect("a capped collection");
    let outcome = target
        .mabel(&["run", "--interval", "0.05", "--count", "8"])
        .finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    assert_eq!(outcome.confirmed().len(), 8);
    let warnings: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.contains("capped"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", outcome.stderr);
    assert!(
        warnings[0].contains(
            "is a capped collection: the server deletes the oldest breaths once it holds 100096 \
             bytes or 5 documents, with no error to say so"
        ),
        "{}",
        warnings[0]
    );
    // The warning's point: three breaths confirmed and gone, and the audit none the wiser.
    let stored = target.breaths();
    assert_eq!(stored.len(), 5);
    let confirmed: Vec<_> = outcome.confirmed().iter().map(|c| c.id).collect();
    let kept: Vec<_> = stored
        .iter()
        .map(|d| d.get_object_id("_id").unwrap())
        .collect();
    assert_eq!(kept, confirmed[3..]);
    if let Target::Fake(set) = &target {
        let (code, report) = audit(&set.uri());
        assert_eq!(code, Some(0), "{report}");
        assert_eq!(
            (&report["lost"], &report["documents"]),
            (&0.into(), &5.into())
        );
    }
}

/// With every member down at start, mabel measures its first breath and waits; the look-up is
/// made once a member answers, before any insert, and refuses the time-series collection.
#[test]
fn with_no_member_at_start_the_look_up_waits_and_is_not_skipped() {
    let Some(set) = fake_only(
        "collections::with_no_member_at_start_the_look_up_waits_and_is_not_skipped",
        "needs every member down at once",
    ) else {
        return;
    };
    let db = Client::with_uri_str(set.uri())
        .expect("a client")
        .database("mabel");
    time_series(&db);
    for member in 0..3 {
        set.kill(member);
    }
    let before = set.insert_count();
    let args = [
        "run",
        "--interval",
        "0.05",
        "--retry-wait",
        "0.3",
        "--count",
        "3",
    ];
    let mut mabel = Mabel::start(&set.uri(), &args);
    mabel.wait_for_stderr("Warning", WATCHDOG);
    for member in 0..3 {
        set.revive(member);
    }
    let outcome = mabel.finish(WATCHDOG);

    assert_refused(&outcome, "is a time-series collection");
    assert_eq!(set.insert_count(), before, "an insert was sent");
    assert!(set.documents("mabel", "breaths").is_empty());
}
