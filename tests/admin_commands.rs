//! The admin commands tests use to inject faults, checked for the server's answers: against
//! the fake in `make test`, and against a real set in `make test-real`, where the same
//! assertions show the fake answers as mongod does.

use bson::doc;
use mongodb::error::{Error, ErrorKind};

use crate::support::target::{FailPoint, Mode, Target};

/// The code, code name and message of a command error.
fn refusal(result: mongodb::error::Result<bson::Document>) -> (i32, String, String) {
    let error: Error = result.expect_err("the command fails");
    match *error.kind {
        ErrorKind::Command(e) => (e.code, e.code_name, e.message),
        other => panic!("not a command error: {other:?}"),
    }
}

#[test]
fn fail_command_fails_the_named_command_as_often_as_asked_and_counts() {
    let target = Target::start();
    let member = target.wait_for_primary(std::time::Duration::from_secs(30));
    let app = "fail-command-test";
    let guard = target.fail_point(
        member,
        FailPoint::fail_command(&["ping"], Mode::Times(2))
            .error_code(2)
            .app_name(app),
    );
    for _ in 0..2 {
        let (code, name, message) = refusal(target.run_command(member, doc! { "ping": 1 }, app));
        assert_eq!((code, name.as_str()), (2, "BadValue"));
        assert_eq!(message, "Failing command via 'failCommand' failpoint");
    }
    target
        .run_command(member, doc! { "ping": 1 }, app)
        .expect("a third ping passes");
    // Another application's connection is not touched.
    let other = FailPoint::fail_command(&["ping"], Mode::AlwaysOn).error_code(2);
    let other = target.fail_point(member, other.app_name("someone-else"));
    target
        .run_command(member, doc! { "ping": 1 }, app)
        .expect("a ping from another application passes");
    assert_eq!(other.times_entered(), 0);
    assert_eq!(guard.times_entered(), 2);
}

#[test]
fn configure_fail_point_refuses_what_mongod_refuses() {
    let target = Target::start();
    let member = 0;
    let app = "configure-test";
    let bogus = doc! { "configureFailPoint": "failCommand", "mode": "bogus" };
    let (code, _, message) = refusal(target.run_command(member, bogus, app));
    assert_eq!((code, message.as_str()), (2, "unknown mode: bogus"));

    let unknown = doc! { "configureFailPoint": "noSuchFailPoint", "mode": "off" };
    let (code, name, message) = refusal(target.run_command(member, unknown, app));
    assert_eq!((code, name.as_str()), (266, "FailPointSetFailed"));
    assert_eq!(message, "noSuchFailPoint not found");

    let no_mode = doc! { "configureFailPoint": "failCommand" };
    let (code, _, _) = refusal(target.run_command(member, no_mode, app));
    assert_eq!(code, 20);

    let negative = doc! { "configureFailPoint": "failCommand", "mode": { "times": -1 } };
    let (code, _, message) = refusal(target.run_command(member, negative, app));
    assert_eq!(
        (code, message.as_str()),
        (2, "'times' option to 'mode' must be positive")
    );

    let off = doc! { "configureFailPoint": "failCommand", "mode": "off" };
    let reply = target
        .run_command(member, off, app)
        .expect("off is accepted");
    assert!(reply.get_i32("count").is_ok(), "{reply}");

    // The fail point that stops replication is known too (setting it panics otherwise).
    let primary = target.wait_for_primary(std::time::Duration::from_secs(30));
    drop(target.stop_replication((primary + 1) % 3));
}

#[test]
fn freeze_and_step_down_answer_by_role() {
    let target = Target::start();
    let primary = target.wait_for_primary(std::time::Duration::from_secs(30));
    let secondary = (primary + 1) % 3;
    let app = "role-test";

    let (code, name, _) = refusal(target.run_command(primary, doc! { "replSetFreeze": 10 }, app));
    assert_eq!((code, name.as_str()), (95, "NotSecondary"));

    let step_down = doc! { "replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 1 };
    let (code, _, message) = refusal(target.run_command(secondary, step_down, app));
    assert_eq!(
        (code, message.as_str()),
        (10107, "not primary so can't step down")
    );

    let too_short = doc! { "replSetStepDown": 5, "secondaryCatchUpPeriodSecs": 10 };
    let (code, _, _) = refusal(target.run_command(primary, too_short, app));
    assert_eq!(code, 2);

    let once = doc! { "replSetFreeze": 1 };
    let reply = target
        .run_command(secondary, once, app)
        .expect("a secondary freezes");
    assert_eq!(
        reply.get_str("warning"),
        Ok("you really want to freeze for only 1 second?")
    );
    let thaw = target
        .run_command(secondary, doc! { "replSetFreeze": 0 }, app)
        .expect("a secondary unfreezes");
    assert_eq!(thaw.get_str("info"), Ok("unfreezing"));
}

#[test]
fn a_step_down_hands_the_primary_to_the_member_asked_for() {
    let target = Target::start();
    let limit = std::time::Duration::from_secs(60);
    let first = target.wait_for_primary(limit);
    let to = (first + 2) % 3;
    let old = target.step_down_to(to, limit);
    assert_eq!(old, first);
    assert_eq!(target.primary(), Some(to));
}
