//! Errors that retrying cannot mend: mabel stops at once with exit 1 and never counts a
//! breath the server refused.

use std::time::Duration;

use crate::support::mabel::{assert_stored_exactly_once, Mabel};
use crate::support::target::{fake_only, FailPoint, Mode, Target};
use bson::{doc, oid::ObjectId};

#[test]
fn a_failed_validation_is_not_retried() {
    let Some(set) = fake_only(
        "refused_writes::a_failed_validation_is_not_retried",
        "a validator's refusal is a write error, which failCommand cannot shape",
    ) else {
        return;
    };
    let mut mabel = Mabel::start(&set.uri(), &["run", "--interval", "0.05"]);
    mabel.wait_for_breaths(3, Duration::from_secs(30));
    set.fail_next_write(121);
    let outcome = mabel.finish(Duration::from_secs(30));

    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    let last = outcome.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: couldn't write breath "), "{last}");
    assert!(last.contains("write error 121"), "{last}");
    assert!(!outcome.stderr.contains("Warning"), "{}", outcome.stderr);
    let confirmed = outcome.confirmed().len() as u64;
    assert_eq!(
        set.insert_count(),
        confirmed + 1,
        "the refused write was retried"
    );
    assert_stored_exactly_once(&outcome, &set.documents("mabel", "breaths"));
}

#[test]
fn an_authorization_failure_is_not_retried() {
    let target = Target::start();
    let primary = target.wait_for_primary(Duration::from_secs(30));
    let refuse = FailPoint::fail_command(&["insert"], Mode::Times(1)).error_code(13);
    let refused = target.fail_point(primary, refuse.app_name("mabel"));
    let outcome = target
        .mabel(&["run", "--interval", "0.05"])
        .finish(Duration::from_secs(30));

    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    assert!(outcome.stderr.contains("couldn't write breath"));
    assert!(
        outcome.stderr.contains("Unauthorized"),
        "{}",
        outcome.stderr
    );
    assert_eq!(refused.times_entered(), 1);
    if let Some(inserts) = target.insert_count() {
        assert_eq!(inserts, 1);
    }
    assert!(target.breaths().is_empty());
}

#[test]
fn a_transient_code_is_retried() {
    let target = Target::start();
    let primary = target.wait_for_primary(Duration::from_secs(30));
    let interrupt = FailPoint::fail_command(&["insert"], Mode::Times(1)).error_code(11602);
    let _interrupted = target.fail_point(primary, interrupt.app_name("mabel"));
    let args = ["run", "--interval", "0.05", "--count", "3"];
    let outcome = target
        .mabel_with("&retryWrites=false", &args)
        .finish(Duration::from_secs(30));

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(outcome.confirmed()[0].attempts, 2);
    assert!(outcome.stderr.contains("Warning"), "{}", outcome.stderr);
    assert_stored_exactly_once(&outcome, &target.breaths());
}

/// A duplicate on another unique index, met on a retry, must not pass for "already
/// written": the breath is not in the database.
#[test]
fn a_duplicate_on_another_index_is_a_real_error() {
    let Some(set) = fake_only(
        "refused_writes::a_duplicate_on_another_index_is_a_real_error",
        "seeds a document and a unique index without the wire",
    ) else {
        return;
    };
    // A unique index on a field breaths lack: a missing field indexes as null, so the second
    // document without it collides, as on a real server.
    set.add_unique_index("mabel", "breaths", "sensor");
    let squatter = ObjectId::new();
    set.insert_direct(
        "mabel",
        "breaths",
        doc! { "_id": squatter, "note": "not a breath" },
    );
    // The first attempt fails transiently, so the duplicate comes on a retry.
    set.fail_next_write(10107);
    let uri = format!("{}&retryWrites=false", set.uri());
    let outcome = Mabel::start(&uri, &["run", "--interval", "0.05", "--count", "3"])
        .finish(Duration::from_secs(30));

    assert_eq!(outcome.code, Some(1), "{outcome:#?}");
    assert!(outcome.confirmed().is_empty(), "{outcome:#?}");
    let last = outcome.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("duplicate key on an index other than _id"),
        "{last}"
    );
    assert!(last.contains("sensor_1"), "{last}");
    let stored = set.documents("mabel", "breaths");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].get_object_id("_id"), Ok(squatter));
}
