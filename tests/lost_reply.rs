//! The seed's duplicate trick: the write lands, its reply is lost, and the retry meets the
//! breath's own `_id`; or, with the driver's retry, the server knows the retry for one.

use std::time::Duration;

use crate::support::mabel::{assert_stored_exactly_once, Mabel};
use crate::support::target::{fake_only, FailPoint, Mode, Target};

const WATCHDOG: Duration = Duration::from_secs(60);

/// Without the driver's retry the write carries no `txnNumber`, and the server's fail point
/// for a reply lost after the write (`onPrimaryTransactionalWrite`) acts on retryable writes
/// only; failCommand's `closeConnection` closes the connection before the write runs. So
/// this one needs the simulated set's own control.
#[test]
fn without_the_drivers_retry_the_duplicate_id_proves_the_write() {
    let test = "lost_reply::without_the_drivers_retry_the_duplicate_id_proves_the_write";
    let Some(set) = fake_only(test, "needs a write applied and then its reply lost") else {
        return;
    };
    let uri = format!("{}&retryWrites=false", set.uri());
    let mut mabel = Mabel::start(&uri, &["run", "--interval", "0.05", "--count", "12"]);
    mabel.wait_for_breaths(4, Duration::from_secs(30));
    set.drop_next_reply();
    let outcome = mabel.finish(WATCHDOG);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let confirmed = outcome.confirmed();
    assert_eq!(confirmed.len(), 12);
    let already: Vec<_> = confirmed.iter().filter(|c| c.already_written).collect();
    assert_eq!(already.len(), 1, "{outcome:#?}");
    assert!(already[0].attempts >= 2);
    let stored = set.documents("mabel", "breaths");
    assert_eq!(stored.len(), 12);
    assert_stored_exactly_once(&outcome, &stored);
}

#[test]
fn with_the_drivers_retry_the_server_recognises_the_retry() {
    let target = Target::start();
    let primary = target.wait_for_primary(WATCHDOG);
    let mut mabel = target.mabel(&["run", "--interval", "0.05", "--count", "12"]);
    mabel.wait_for_breaths(4, Duration::from_secs(30));
    // The next write commits, then its connection closes before the reply.
    let lost = FailPoint::named("onPrimaryTransactionalWrite", Mode::Times(1));
    let guard = target.fail_point(primary, lost);
    let outcome = mabel.finish(WATCHDOG);
    assert_eq!(guard.times_entered(), 1);

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let confirmed = outcome.confirmed();
    assert_eq!(confirmed.len(), 12);
    assert!(confirmed.iter().all(|c| !c.already_written), "{outcome:#?}");
    let stored = target.breaths();
    assert_eq!(stored.len(), 12);
    assert_stored_exactly_once(&outcome, &stored);
    // One insert was sent twice (the driver's retry), none more; only the simulated set
    // counts them.
    if let Some(inserts) = target.insert_count() {
        assert_eq!(inserts, 13);
    }
}
