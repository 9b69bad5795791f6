//! The set acting by itself, on its own timers (a 200 ms election timeout): a dead or cut-off
//! primary is replaced, a primary that hears from no majority steps down and its waiting
//! writes fail, a restarted member passes through STARTUP2 and RECOVERING and says when it
//! has caught up, a step-down hands over, and the members' knowledge of one another comes
//! from heartbeats, as on a real set.

use std::time::{Duration, Instant};

use bson::doc;
use mongodb::error::ErrorKind;
use mongodb::options::ReadPreference;
use mongodb::options::SelectionCriteria;

use crate::driver::{breath, breaths, direct, w1, wait_for, within, write_concern_code, COLL, DB};
use mabel_sim::{HandOver, Kind, Phase, ReplicaSet, Role, Timers};

const WATCHDOG: Duration = Duration::from_secs(20);

/// When the first event matching `what` happened.
fn when(set: &ReplicaSet, what: impl Fn(usize, &Kind) -> bool) -> Option<Instant> {
    set.events()
        .into_iter()
        .find(|e| what(e.member, &e.kind))
        .map(|e| e.at)
}

/// Waits for a writable primary other than `old`, and returns it.
fn wait_for_another_primary(set: &ReplicaSet, old: usize) -> usize {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        match set.writable_primary() {
            Some(primary) if primary != old => return primary,
            _ => assert!(
                Instant::now() < deadline,
                "no other primary: {:#?}",
                set.events()
            ),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn hello(set: &ReplicaSet, member: usize) -> bson::Document {
    direct(set, member)
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .run()
        .expect("hello")
}

#[test]
fn a_killed_primary_is_replaced_no_sooner_than_an_election_timeout() {
    let set = ReplicaSet::start();
    let timers = set.timers();
    let timeout = timers
        .election_timeout
        .expect("a set that elects by itself");
    breaths(&set.uri())
        .insert_one(breath())
        .run()
        .expect("write");
    set.kill(0);
    let primary = set.wait_for_primary(WATCHDOG);
    assert_ne!(primary, 0);

    let killed = when(&set, |m, k| m == 0 && *k == Kind::Control("was killed")).unwrap();
    let elected = when(&set, |_, k| matches!(k, Kind::Elected { term: 2 })).unwrap();
    // The last heartbeat from the primary came at most one interval before it died, and the
    // election timer runs a whole timeout from it; half a timeout leaves room for a set's
    // clock that a busy machine runs late (it fires timers at their due time, and judges a
    // heartbeat due before the kill by what it finds when it runs).
    let waited = elected - killed;
    assert!(waited >= timeout / 2, "elected {waited:?} after the kill");
    let writable = when(&set, |m, k| {
        m == primary
            && matches!(
                k,
                Kind::Role {
                    role: Role::Primary(Phase::Writable),
                    ..
                }
            )
    })
    .unwrap();
    assert!(
        writable >= elected,
        "takes writes only after catch-up and drain"
    );
    // The driver follows it, and the write lands there.
    breaths(&set.uri())
        .insert_one(breath())
        .run()
        .expect("written to the new primary");
    assert_eq!(set.documents_on(primary, DB, COLL).len(), 2);
}

#[test]
fn a_primary_that_hears_from_no_majority_steps_down_and_fails_its_waiting_writes() {
    let set = ReplicaSet::start();
    breaths(&set.uri())
        .insert_one(breath())
        .run()
        .expect("write");
    set.kill(1);
    set.kill(2);
    let started = Instant::now();
    // No wtimeout: only the step-down ends the wait.
    let coll = direct(&set, 0)
        .database(DB)
        .collection::<bson::Document>(COLL);
    // The step-down comes about an election timeout after the kills; a primary that never
    // steps down would keep the insert waiting for good, so it gets a time limit.
    let waiting = coll.clone();
    let err = within("an insert waiting for a majority", move || {
        waiting.insert_one(breath()).run()
    })
    .expect_err("never majority-committed");
    let code = write_concern_code(&err).expect("a write concern error");
    assert!([189, 11602].contains(&code), "{err}");
    let timeout = set.timers().election_timeout.unwrap();
    assert!(started.elapsed() >= timeout / 2, "{:?}", started.elapsed());
    assert_eq!(set.status()[0].role, Some(Role::Secondary));
    assert_eq!(set.primary(), None);

    // Later writes are refused with NotWritablePrimary, and the connection stays open.
    let err = coll.insert_one(breath()).run().expect_err("not primary");
    let ErrorKind::Command(e) = &*err.kind else {
        panic!("expected a command error, got {err:?}");
    };
    assert_eq!((e.code, e.message.as_str()), (10107, "not primary"));

    // A member comes back: the two elect one, and the old primary, ahead in data, can win.
    set.revive(1);
    let primary = set.wait_for_primary(WATCHDOG);
    assert!([0, 1].contains(&primary));
    breaths(&set.uri())
        .insert_one(breath())
        .run()
        .expect("written once a majority is back");
}

#[test]
fn a_cut_off_primary_steps_down_by_itself_while_the_others_elect_and_rolls_back_on_return() {
    let set = ReplicaSet::start();
    breaths(&set.uri())
        .insert_one(breath())
        .run()
        .expect("write");
    set.isolate(0);
    // Acknowledged by the cut-off primary alone.
    let coll = direct(&set, 0)
        .database(DB)
        .collection::<bson::Document>(COLL);
    coll.insert_one(breath())
        .write_concern(w1())
        .run()
        .expect("w: 1 on the cut-off primary");
    wait_for_another_primary(&set, 0);
    set.wait_for_role(0, Role::Secondary, WATCHDOG);
    let stepped_down = set.events().into_iter().any(|e| {
        e.member == 0
            && e.kind
                == Kind::SteppedDown {
                    reason: "it can't see a majority of the set",
                }
    });
    assert!(stepped_down, "{:#?}", set.events());

    set.heal();
    set.wait_for_role(0, Role::Secondary, WATCHDOG);
    assert_eq!(set.rolled_back(DB, COLL).len(), 1);
    let rolled_back = set
        .events()
        .into_iter()
        .any(|e| e.member == 0 && e.kind == Kind::RolledBack { writes: 1 });
    assert!(rolled_back, "{:#?}", set.events());
    assert_eq!(set.documents_on(0, DB, COLL).len(), 1);
}

#[test]
fn a_restarted_member_is_not_a_secondary_until_it_has_recovered() {
    let set = ReplicaSet::start();
    breaths(&set.uri())
        .insert_one(breath())
        .run()
        .expect("write");
    set.kill(2);
    set.revive(2);
    let reply = hello(&set, 2);
    assert_eq!(
        reply.get_str("info"),
        Ok("Does not have a valid replica set config")
    );
    assert!(!reply.contains_key("setName"), "{reply}");
    set.wait_for_role(2, Role::Recovering, WATCHDOG);
    let reply = hello(&set, 2);
    assert_eq!(reply.get_bool("secondary"), Ok(false));
    let read = direct(&set, 2)
        .database(DB)
        .collection::<bson::Document>(COLL)
        .find(doc! {})
        .selection_criteria(SelectionCriteria::ReadPreference(
            ReadPreference::SecondaryPreferred {
                options: Default::default(),
            },
        ))
        .run()
        .map(|_| ());
    let err = read.expect_err("RECOVERING serves no reads");
    let ErrorKind::Command(e) = &*err.kind else {
        panic!("expected a command error, got {err:?}");
    };
    assert_eq!((e.code, e.message.as_str()), (13436, "node is recovering"));
    set.wait_for_role(2, Role::Secondary, WATCHDOG);
    assert_eq!(hello(&set, 2).get_bool("secondary"), Ok(true));

    let states: Vec<Role> = set
        .events()
        .into_iter()
        .filter(|e| e.member == 2)
        .filter_map(|e| match e.kind {
            Kind::Role { role, .. } => Some(role),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            Role::Startup,
            Role::Startup2,
            Role::Recovering,
            Role::Secondary
        ]
    );
}

#[test]
fn a_secondary_forgets_a_dead_primary_at_once_and_a_hung_one_only_after_the_heartbeat_timeout() {
    // Elections far off, heartbeats quick, and a long heartbeat timeout.
    let set = ReplicaSet::with_timers(Timers {
        election_timeout: Some(Duration::from_secs(60)),
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_secs(3),
        ..Timers::fast()
    });
    let timers = set.timers();
    let primary = set.hosts()[0].clone();
    assert_eq!(hello(&set, 1).get_str("primary"), Ok(primary.as_str()));

    set.hang(0);
    std::thread::sleep(timers.heartbeat_interval * 2);
    assert_eq!(
        hello(&set, 1).get_str("primary"),
        Ok(primary.as_str()),
        "a silent member is not marked down before the heartbeat timeout"
    );
    set.kill(0);
    std::thread::sleep(timers.heartbeat_interval * 2);
    assert!(
        !hello(&set, 1).contains_key("primary"),
        "a refusing member is marked down by the next heartbeat"
    );
}

/// The `CaughtUp` events so far, by member.
fn caught_up(set: &ReplicaSet) -> Vec<(usize, usize)> {
    set.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            Kind::CaughtUp { writes } => Some((e.member, writes)),
            _ => None,
        })
        .collect()
}

/// How long after the primary a returning member copies each write, in the test of when it
/// says it caught up: several times what it takes to be a SECONDARY again.
const LAG: Duration = Duration::from_secs(3);

#[test]
fn a_member_back_from_an_absence_says_when_it_has_caught_up_and_what_it_copied() {
    let set = ReplicaSet::start();
    let coll = breaths(&set.uri());
    coll.insert_one(breath()).run().expect("write");
    set.kill(2);
    for _ in 0..3 {
        coll.insert_one(breath())
            .run()
            .expect("written by two members");
    }
    assert_eq!(caught_up(&set), [], "nobody is back yet");
    let primary_holds = set.documents_on(0, DB, COLL);
    assert_eq!(primary_holds.len(), 4);
    // Copying each write well after it was written, it is a SECONDARY (STARTUP to SECONDARY
    // takes 600 ms) long before it holds the three it missed: it must not say it has caught
    // up until it holds everything.
    set.set_lag(2, LAG);
    set.revive(2);
    set.wait_for_role(2, Role::Secondary, WATCHDOG);
    let deadline = Instant::now() + LAG + WATCHDOG;
    let mut behind_as_secondary = false;
    loop {
        // Events first: a member's documents only grow, so any it holds now it held when
        // the event was taken.
        let said = caught_up(&set);
        let holds = set.documents_on(2, DB, COLL);
        if !said.is_empty() {
            assert!(
                holds.len() >= primary_holds.len(),
                "member 2 said it caught up ({said:?}) holding {} of the primary's {} documents",
                holds.len(),
                primary_holds.len()
            );
            assert_eq!(holds, primary_holds, "caught up: {said:?}");
            break;
        }
        behind_as_secondary |= holds.len() < primary_holds.len();
        assert!(
            Instant::now() < deadline,
            "member 2 never said it caught up: {:#?}",
            set.events()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        behind_as_secondary,
        "member 2 held everything as soon as it was a SECONDARY: the lag tested nothing"
    );
    assert_eq!(caught_up(&set), [(2, 3)]);
    assert_eq!(set.documents_on(2, DB, COLL).len(), 4);
    set.set_lag(2, Duration::ZERO);

    // Cut off, it falls behind again; healed, it copies what it missed, and says so once.
    set.isolate(1);
    coll.insert_one(breath()).run().expect("written by 0 and 2");
    set.heal();
    wait_for(|| caught_up(&set).len() == 2, "member 1 to catch up");
    assert_eq!(caught_up(&set), [(2, 3), (1, 1)]);
    coll.insert_one(breath()).run().expect("write");
    assert_eq!(
        caught_up(&set).len(),
        2,
        "an up-to-date member says nothing"
    );
}

#[test]
fn hand_over_steps_the_primary_down_and_a_caught_up_secondary_takes_over_at_once() {
    // Elections by timer a minute off: only the handoff can elect.
    let set = ReplicaSet::with_timers(Timers::with_election_timeout(Duration::from_secs(60)));
    breaths(&set.uri())
        .insert_one(breath())
        .run()
        .expect("write");
    let step_down = Duration::from_secs(10);
    let old = set
        .hand_over(step_down, Duration::from_secs(5))
        .expect("a caught-up secondary");
    assert_eq!(old, 0);
    let new = set.wait_for_primary(Duration::from_secs(5));
    assert_ne!(new, 0);
    let reason = set.events().into_iter().find_map(|e| match e.kind {
        Kind::SteppedDown { reason } if e.member == 0 => Some(reason),
        _ => None,
    });
    assert_eq!(reason, Some("replSetStepDown"));

    // With no secondary to hand over to, the primary stays.
    set.kill(if new == 1 { 2 } else { 1 });
    set.set_lag(0, Duration::from_secs(60));
    breaths(&set.uri())
        .insert_one(breath())
        .write_concern(w1())
        .run()
        .expect("w: 1");
    let refused = set.hand_over(step_down, Duration::from_millis(300));
    assert_eq!(
        refused,
        Err(HandOver::NoneCaughtUp(Duration::from_millis(300)))
    );
    assert_eq!(set.writable_primary(), Some(new));
}

/// `replSetStepDown` sent through the driver to member 0, from another thread.
fn step_down_command(
    set: &ReplicaSet,
    body: bson::Document,
) -> crate::driver::Call<bson::Document> {
    let client = direct(set, 0);
    crate::driver::call("replSetStepDown", move || {
        match client.database("admin").run_command(body).run() {
            Ok(reply) => reply,
            Err(e) => match *e.kind {
                ErrorKind::Command(c) => doc! { "ok": 0.0, "code": c.code },
                other => panic!("{other:?}"),
            },
        }
    })
}

/// `TopologyCoordinator::tryToStartStepDown`: with `force` and a catch-up period, the primary
/// waits that period for a secondary (`forceNow = force && now >= waitUntil`), then steps down
/// anyway; one that steps down for another reason while it waits fails the command with 189.
#[test]
fn a_forced_step_down_waits_out_its_catch_up_period_and_another_step_down_fails_it() {
    let set = ReplicaSet::with_timers(Timers::with_election_timeout(Duration::from_secs(60)));
    set.set_lag(1, Duration::from_secs(60));
    set.set_lag(2, Duration::from_secs(60));
    breaths(&set.uri())
        .insert_one(breath())
        .write_concern(w1())
        .run()
        .expect("w: 1");
    let started = Instant::now();
    let forced = doc! { "replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 1, "force": true };
    let reply = step_down_command(&set, forced).result();
    assert_eq!(reply.get_f64("ok"), Ok(1.0), "{reply}");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(set.status()[0].role, Some(Role::Secondary));

    set.elect(0);
    let waiting = step_down_command(
        &set,
        doc! { "replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 5 },
    );
    std::thread::sleep(Duration::from_millis(300));
    set.step_down();
    let reply = waiting.result();
    assert_eq!(reply.get_i32("code"), Ok(189), "{reply}");
}

/// `CmdReplSetFreeze` reads its seconds with `numberInt`: 2^32 + 1 is 1, with its warning.
/// `CmdReplSetStepDown` converts its seconds to milliseconds and fails with 15
/// DurationOverflow when they do not fit, instead of taking the member down with it.
#[test]
fn huge_freeze_and_step_down_periods_are_read_as_the_server_reads_them() {
    let set = ReplicaSet::start();
    let admin = direct(&set, 1).database("admin");
    let reply = admin
        .run_command(doc! { "replSetFreeze": 4_294_967_297i64 })
        .run()
        .expect("frozen");
    assert_eq!(
        reply.get_str("warning"),
        Ok("you really want to freeze for only 1 second?"),
        "{reply}"
    );
    admin
        .run_command(doc! { "replSetFreeze": i64::MAX })
        .run()
        .expect("numberInt makes it -1");
    for secs in [i64::MAX, i64::MAX / 1000] {
        let reply = step_down_command(&set, doc! { "replSetStepDown": secs, "force": true });
        assert_eq!(reply.result().get_i32("code"), Ok(15), "{secs}");
    }
    assert_eq!(set.writable_primary(), Some(0));
}

/// After an election the new primary drains, and writes its "new primary" no-op only when
/// drain ends, just before it takes writes (`logTransitionToPrimaryToOplog` after drain);
/// while it drains it is a leader, so `replSetFreeze` is refused
/// (`prepareFreezeResponse`: only a follower may freeze).
#[test]
fn a_draining_primary_writes_its_no_op_at_drain_end_and_refuses_to_freeze() {
    let timers = Timers {
        drain: Duration::from_millis(1500),
        ..Timers::fast()
    };
    let set = ReplicaSet::with_timers(timers);
    let entries = set.status()[1].entries;
    set.kill(0);
    let deadline = Instant::now() + WATCHDOG;
    let new = loop {
        let draining = (1..3).find(|&m| set.status()[m].role == Some(Role::Primary(Phase::Drain)));
        if let Some(m) = draining {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no draining primary: {:#?}",
            set.events()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        set.status()[new].entries,
        entries,
        "no no-op while draining"
    );
    let refused = direct(&set, new)
        .database("admin")
        .run_command(doc! { "replSetFreeze": 10 })
        .run()
        .expect_err("a leader cannot freeze");
    assert!(
        matches!(&*refused.kind, ErrorKind::Command(c) if c.code == 95),
        "{refused:?}"
    );
    set.wait_for_role(new, Role::Primary(Phase::Writable), Duration::from_secs(5));
    assert_eq!(
        set.status()[new].entries,
        entries + 1,
        "the no-op, at drain end"
    );
}
