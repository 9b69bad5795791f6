//! `mabel audit` against sets with known contents: what a clean run leaves, a hole and a
//! double put there on purpose, windows, documents that are not breaths, bad input and a set
//! that cannot be reached.

use std::time::Duration;

use bson::oid::ObjectId;
use bson::{doc, Document};
use serde_json::Value;

use crate::support::target::{fake_only, Target};
use mabel_sim::ReplicaSet;

/// Minute-aligned, so the timeline's cells are predictable.
const START: i64 = 1_795_000_020_000;

struct Audit {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Audit {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

fn audit(uri: &str, args: &[&str]) -> Audit {
    let output = crate::support::mabel::command()
        .arg("audit")
        .args(["--uri", uri])
        .args(args)
        .output()
        .expect("the mabel binary runs");
    Audit {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A breath of process `p` with counter `c`, taken `second` seconds after `START`.
fn breath(p: u8, c: u32, second: i64, oxygen: f64) -> Document {
    let time = START + second * 1000;
    let [_, high, middle, low] = c.to_be_bytes();
    let id = ObjectId::from_parts((time / 1000) as u32, [p; 5], [high, middle, low]);
    doc! { "_id": id, "time": bson::DateTime::from_millis(time), "oxygen": oxygen }
}

fn at(second: i64) -> String {
    bson::DateTime::from_millis(START + second * 1000)
        .try_to_rfc3339_string()
        .unwrap()
}

/// Process 1 breathes once a second for counters 100..=120, seconds 0..=20; counters 105,
/// 110 and 111 were built and never stored, and breath 115 is stored again under an id of
/// process 2.
/// `None`, after saying so, against a real set: the fake stores documents without the wire.
fn seeded(test: &str) -> Option<ReplicaSet> {
    let set = fake_only(test, "seeds breaths with chosen ids and times")?;
    for c in 100..=120 {
        if ![105, 110, 111].contains(&c) {
            let second = i64::from(c - 100);
            set.insert_direct("mabel", "breaths", breath(1, c, second, c as f64 / 1000.0));
        }
    }
    set.insert_direct("mabel", "breaths", breath(2, 7, 15, 0.115));
    Some(set)
}

#[test]
fn a_known_hole_and_double_are_reported_and_exit_1() {
    let Some(set) = seeded("audit::a_known_hole_and_double_are_reported_and_exit_1") else {
        return;
    };
    let audit = audit(&set.uri(), &["--json"]);
    assert_eq!(audit.code, Some(1), "{}", audit.stderr);
    let report = audit.json();
    assert_eq!(report["lost"], 3);
    assert_eq!(report["doubled"], 1);
    assert_eq!(report["breaths"], 18);
    assert_eq!(report["documents"], 19);
    assert_eq!(report["processes"], 2);
    assert_eq!(report["foreign"], 0);
    assert_eq!(report["first"], "2026-11-18T11:07:00.000Z");
    assert_eq!(report["span_seconds"], 20.0);
    assert_eq!(report["longest_gaps"][0]["seconds"], 3.0);
    assert_eq!(
        report["longest_gaps"][0]["start"],
        "2026-11-18T11:07:09.000Z"
    );
    assert_eq!(report["timeline"]["cells"], "x");
    assert_eq!(
        audit.stderr.trim(),
        "error: the audit found 3 breaths lost, 1 doubled"
    );
}

#[test]
fn the_human_report_has_figures_gaps_and_a_timeline() {
    let Some(set) = seeded("audit::the_human_report_has_figures_gaps_and_a_timeline") else {
        return;
    };
    let audit = audit(&set.uri(), &[]);
    assert_eq!(audit.code, Some(1), "{}", audit.stderr);
    let out = &audit.stdout;
    for expected in [
        "mabel.breaths, all breaths\n",
        "breaths       18 from 2 processes, 2026-11-18T11:07:00.000Z to 2026-11-18T11:07:20.000Z",
        "lost          3\n",
        "doubled       1\n",
        "longest gaps    3.000 s  after 2026-11-18T11:07:09.000Z\n",
        "  2026-11-18 11:07Z  x\n",
        "3 breaths lost, 1 doubled\n",
    ] {
        assert!(out.contains(expected), "{expected:?} not in\n{out}");
    }
}

#[test]
fn windows_leave_out_what_is_outside_and_holes_at_their_edges() {
    let Some(set) = seeded("audit::windows_leave_out_what_is_outside_and_holes_at_their_edges")
    else {
        return;
    };
    let uri = set.uri();
    let window = |since: i64, until: i64| {
        let audit = audit(
            &uri,
            &["--json", "--since", &at(since), "--until", &at(until)],
        );
        let report = audit.json();
        (
            audit.code,
            report["breaths"].as_u64().unwrap(),
            report["lost"].as_u64().unwrap(),
            report["doubled"].as_u64().unwrap(),
        )
    };
    // 106..=109 and 112..=119: the hole at 105 is at the edge, 110 and 111 are inside.
    assert_eq!(window(6, 20), (Some(1), 12, 2, 1));
    // 100..=109: one lost, the double is outside.
    assert_eq!(window(0, 10), (Some(1), 9, 1, 0));
    // 106..=109: nothing wrong inside.
    assert_eq!(window(6, 10), (Some(0), 4, 0, 0));
    // Only --since: 112..=120.
    let audit = audit(&uri, &["--json", "--since", &at(12)]);
    assert_eq!(audit.json()["breaths"], 9);
    assert_eq!(audit.json()["since"], "2026-11-18T11:07:12.000Z");
    assert_eq!(audit.json()["until"], Value::Null);
}

#[test]
fn a_clean_run_audits_clean() {
    let target = Target::start();
    let mabel = target.mabel(&["run", "--interval", "0.02", "--count", "20"]);
    let outcome = mabel.finish(Duration::from_secs(60));
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");

    let audit = audit(&target.uri(), &["--json", "--db", target.db()]);
    assert_eq!(audit.code, Some(0), "{}", audit.stderr);
    assert!(audit.stderr.is_empty(), "{}", audit.stderr);
    let report = audit.json();
    assert_eq!(report["breaths"], 20);
    assert_eq!(report["lost"], 0);
    assert_eq!(report["doubled"], 0);
    assert_eq!(report["processes"], 1);
    let first = outcome.confirmed()[0].time.clone();
    assert_eq!(report["first"], Value::String(first));
}

#[test]
fn documents_that_are_not_breaths_are_counted_apart() {
    let Some(set) = fake_only(
        "audit::documents_that_are_not_breaths_are_counted_apart",
        "seeds documents without the wire",
    ) else {
        return;
    };
    set.insert_direct("mabel", "breaths", breath(1, 1, 0, 0.5));
    set.insert_direct("mabel", "breaths", breath(1, 2, 1, 0.6));
    set.insert_direct(
        "mabel",
        "breaths",
        doc! { "_id": "a note", "text": "hello" },
    );
    set.insert_direct("mabel", "breaths", doc! { "oxygen": 0.5 });
    set.insert_direct(
        "mabel",
        "breaths",
        doc! { "time": bson::DateTime::from_millis(START), "oxygen": 1 },
    );
    let audit = audit(&set.uri(), &["--json"]);
    assert_eq!(audit.code, Some(0), "{}", audit.stderr);
    let report = audit.json();
    assert_eq!(
        (&report["breaths"], &report["foreign"], &report["documents"]),
        (&Value::from(2), &Value::from(3), &Value::from(5))
    );
}

#[test]
fn an_empty_collection_is_nothing_lost() {
    let target = Target::start();
    let audit = audit(
        &target.uri(),
        &["--db", target.db(), "--collection", "nothing"],
    );
    assert_eq!(audit.code, Some(0), "{}", audit.stderr);
    assert!(audit.stdout.contains("no breaths"), "{}", audit.stdout);
}

#[test]
fn bad_times_are_refused_naming_the_flag() {
    for (args, flag) in [
        (&["--since", "yesterday"][..], "--since"),
        (&["--until", "2026-11-25 16:00"][..], "--until"),
        (
            &[
                "--since",
                "2026-11-25T16:00:00Z",
                "--until",
                "2026-11-25T15:00:00Z",
            ][..],
            "--until",
        ),
    ] {
        let audit = audit("mongodb://127.0.0.1:1/", args);
        assert_eq!(audit.code, Some(2), "{args:?}: {}", audit.stderr);
        assert_eq!(audit.stderr.lines().count(), 1, "{}", audit.stderr);
        assert!(
            audit.stderr.starts_with(&format!("error: {flag} ")),
            "{args:?}: {}",
            audit.stderr
        );
        assert!(audit.stdout.is_empty());
    }
    let audit = audit("mongo://nowhere", &[]);
    assert_eq!(audit.code, Some(2), "{}", audit.stderr);
    assert!(audit.stderr.starts_with("error: --uri"), "{}", audit.stderr);
}

#[test]
fn a_set_that_cannot_be_reached_is_exit_3_with_one_line() {
    let Some(set) = fake_only(
        "audit::a_set_that_cannot_be_reached_is_exit_3_with_one_line",
        "needs every member down at once",
    ) else {
        return;
    };
    for member in 0..3 {
        set.kill(member);
    }
    let uri = format!("{}&serverSelectionTimeoutMS=300", set.uri());
    let audit = audit(&uri, &[]);
    assert_eq!(audit.code, Some(3), "{}", audit.stderr);
    assert_eq!(audit.stderr.lines().count(), 1, "{}", audit.stderr);
    assert!(
        audit
            .stderr
            .starts_with("error: couldn't read mabel.breaths: no member to read from: "),
        "{}",
        audit.stderr
    );
    assert!(audit.stdout.is_empty(), "{}", audit.stdout);
}
