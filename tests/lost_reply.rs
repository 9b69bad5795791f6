//! The seed's duplicate trick: the write lands, its reply is lost, and the retry meets the
//! breath's own `_id`.

use std::time::Duration;

use crate::support::mabel::{assert_stored_exactly_once, Mabel, Outcome};
use crate::support::target::fake_only;
use mabel_sim::ReplicaSet;

/// `None`, after saying so, against a real set: there failCommand's closeConnection closes
/// the connection before the write runs, never after.
fn lose_one_reply(test: &str, retry_writes: bool) -> Option<(ReplicaSet, Outcome)> {
    let set = fake_only(test, "needs a write applied and then its reply lost")?;
    let uri = format!("{}&retryWrites={retry_writes}", set.uri());
    let mut mabel = Mabel::start(&uri, &["run", "--interval", "0.05", "--count", "12"]);
    mabel.wait_for_breaths(4, Duration::from_secs(30));
    set.drop_next_reply();
    let outcome = mabel.finish(Duration::from_secs(60));
    Some((set, outcome))
}

#[test]
fn without_the_drivers_retry_the_duplicate_id_proves_the_write() {
    let test = "lost_reply::without_the_drivers_retry_the_duplicate_id_proves_the_write";
    let Some((set, outcome)) = lose_one_reply(test, false) else {
        return;
    };

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
    let test = "lost_reply::with_the_drivers_retry_the_server_recognises_the_retry";
    let Some((set, outcome)) = lose_one_reply(test, true) else {
        return;
    };

    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(outcome.confirmed().len(), 12);
    let stored = set.documents("mabel", "breaths");
    assert_eq!(stored.len(), 12);
    assert_stored_exactly_once(&outcome, &stored);
    // One insert was sent twice (the driver's retry), none more.
    assert_eq!(set.insert_count(), 13);
}
