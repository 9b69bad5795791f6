//! Awaitable and streamed `hello`, spoken over a raw socket, so that what the server does is
//! seen without the driver in between: a `hello` carrying the member's own `topologyVersion`
//! waits for a change or `maxAwaitTimeMS`; with `exhaustAllowed` the replies keep coming on
//! their own, each in response to the last; a step-down answers at once with a newer counter.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bson::{doc, Document};

use mabel_sim::ReplicaSet;

const MORE_TO_COME: u32 = 1 << 1;
const EXHAUST_ALLOWED: u32 = 1 << 16;

/// One OP_MSG reply: its request id, what it responds to, its flags and its body.
struct Reply {
    id: i32,
    response_to: i32,
    flags: u32,
    body: Document,
}

fn send(stream: &mut TcpStream, id: i32, flags: u32, body: &Document) {
    let bytes = bson::to_vec(body).expect("encode");
    let len = 16 + 4 + 1 + bytes.len();
    let mut message = Vec::with_capacity(len);
    message.extend_from_slice(&(len as i32).to_le_bytes());
    message.extend_from_slice(&id.to_le_bytes());
    message.extend_from_slice(&0i32.to_le_bytes());
    message.extend_from_slice(&2013i32.to_le_bytes());
    message.extend_from_slice(&flags.to_le_bytes());
    message.push(0);
    message.extend_from_slice(&bytes);
    stream.write_all(&message).expect("send");
}

fn receive(stream: &mut TcpStream) -> Reply {
    let mut header = [0u8; 16];
    stream.read_exact(&mut header).expect("a reply header");
    let word = |i: usize| i32::from_le_bytes(header[i..i + 4].try_into().unwrap());
    let mut rest = vec![0u8; word(0) as usize - 16];
    stream.read_exact(&mut rest).expect("a reply");
    let flags = u32::from_le_bytes(rest[..4].try_into().unwrap());
    let body = bson::from_slice(&rest[5..]).expect("a body");
    Reply {
        id: word(4),
        response_to: word(8),
        flags,
        body,
    }
}

fn connect(set: &ReplicaSet, member: usize) -> TcpStream {
    let stream = TcpStream::connect(&set.hosts()[member]).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    stream
}

fn awaitable(version: &Document, max_await_ms: i64) -> Document {
    doc! {
        "hello": 1,
        "topologyVersion": version.clone(),
        "maxAwaitTimeMS": max_await_ms,
        "$db": "admin",
    }
}

fn version(reply: &Reply) -> Document {
    reply
        .body
        .get_document("topologyVersion")
        .expect("topologyVersion")
        .clone()
}

#[test]
fn a_hello_with_the_current_topology_version_waits_and_one_with_an_old_one_does_not() {
    let set = ReplicaSet::start();
    let mut stream = connect(&set, 1);
    send(&mut stream, 1, 0, &doc! { "hello": 1, "$db": "admin" });
    let current = version(&receive(&mut stream));

    let asked = Instant::now();
    send(&mut stream, 2, 0, &awaitable(&current, 400));
    let reply = receive(&mut stream);
    assert!(
        asked.elapsed() >= Duration::from_millis(350),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(version(&reply), current, "nothing changed");
    assert_eq!(
        reply.flags & MORE_TO_COME,
        0,
        "no stream without exhaustAllowed"
    );

    // From the process before a restart: another processId, the same counter (0 here, so a
    // lower one would be refused as negative, 31372).
    let mut older = current.clone();
    older.insert("processId", bson::oid::ObjectId::new());
    let asked = Instant::now();
    send(&mut stream, 3, 0, &awaitable(&older, 10_000));
    let answered = receive(&mut stream);
    assert!(asked.elapsed() < Duration::from_secs(5), "answered at once");
    assert_eq!(version(&answered), current, "with the current version");
}

#[test]
fn an_exhaust_hello_streams_and_a_step_down_is_answered_at_once() {
    let set = ReplicaSet::start();
    let mut stream = connect(&set, 0);
    send(&mut stream, 1, 0, &doc! { "hello": 1, "$db": "admin" });
    let current = version(&receive(&mut stream));

    send(&mut stream, 7, EXHAUST_ALLOWED, &awaitable(&current, 300));
    let first = receive(&mut stream);
    assert_eq!(first.response_to, 7);
    assert_ne!(first.flags & MORE_TO_COME, 0, "moreToCome");
    let second = receive(&mut stream);
    assert_eq!(
        second.response_to, first.id,
        "each reply answers the one before"
    );
    assert_ne!(second.flags & MORE_TO_COME, 0);
    assert_eq!(version(&second), current);

    // Another stream that waits up to 10 s: a step-down answers it at once.
    let mut stream = connect(&set, 0);
    send(
        &mut stream,
        9,
        EXHAUST_ALLOWED,
        &awaitable(&current, 10_000),
    );
    let waited = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    set.step_down();
    let changed = receive(&mut stream);
    assert!(
        waited.elapsed() < Duration::from_secs(5),
        "{:?}",
        waited.elapsed()
    );
    assert_eq!(changed.response_to, 9);
    let counter = |v: &Document| v.get_i64("counter").unwrap();
    assert!(counter(&version(&changed)) > counter(&current));
    assert_eq!(changed.body.get_bool("isWritablePrimary"), Ok(false));
}

/// `jstests/replsets/awaitable_hello_stepdown_stepup.js`: stepping up moves the counter three
/// times (PRIMARY in drain, the config-term reconfig, writable), stepping down twice (writes
/// stop, SECONDARY).
#[test]
fn step_up_moves_the_counter_by_three_and_step_down_by_two() {
    let set = ReplicaSet::scripted();
    let counter = || {
        let mut stream = connect(&set, 1);
        send(&mut stream, 1, 0, &doc! { "hello": 1, "$db": "admin" });
        version(&receive(&mut stream)).get_i64("counter").unwrap()
    };
    let before = counter();
    set.elect(1);
    assert_eq!(counter(), before + 3);
    set.step_down();
    assert_eq!(counter(), before + 5);
}

/// One command on `stream`, and its reply.
fn command(stream: &mut TcpStream, id: i32, body: Document) -> Document {
    send(stream, id, 0, &body);
    receive(stream).body
}

/// `ReplicationCoordinatorImpl::stepDown`, `jstests/replsets/stepdown_long_wait_time.js`:
/// a `replSetStepDown` stops writes as it starts waiting for a secondary (still PRIMARY,
/// `isWritablePrimary: false`, `secondary: false`, the counter moved once), kills a write
/// waiting for its write concern, and, when none catches up in time, fails with 262 and
/// takes writes again, the counter moved once more.
#[test]
fn a_step_down_stops_writes_while_it_waits_and_a_failed_one_takes_them_again() {
    let set = ReplicaSet::with_timers(mabel_sim::Timers::with_election_timeout(
        Duration::from_secs(60),
    ));
    set.set_lag(1, Duration::from_secs(60));
    set.set_lag(2, Duration::from_secs(60));
    let host = set.hosts()[0].clone();
    let mut client = connect(&set, 0);
    let hello = doc! { "hello": 1, "$db": "admin" };
    let before = command(&mut client, 1, hello.clone());
    let counter = |reply: &Document| {
        let version = reply.get_document("topologyVersion").unwrap();
        version.get_i64("counter").unwrap()
    };
    let insert = |id: i32, w: Document| {
        doc! {
            "insert": "c", "documents": [{ "_id": id }], "writeConcern": w, "$db": "test",
        }
    };
    let ok = command(&mut client, 2, insert(1, doc! { "w": 1 }));
    assert_eq!(ok.get_f64("ok"), Ok(1.0), "{ok}");

    // A majority write that waits for the lagging secondaries.
    let mut waiting = connect(&set, 0);
    let majority = doc! { "w": "majority", "wtimeout": 30_000 };
    send(&mut waiting, 3, 0, &insert(2, majority));
    std::thread::sleep(Duration::from_millis(100));

    let mut stepping = connect(&set, 0);
    let step_down = doc! {
        "replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 1, "$db": "admin",
    };
    send(&mut stepping, 4, 0, &step_down);
    let started = Instant::now();
    let killed = receive(&mut waiting).body;
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "the waiting write is killed as the step-down starts: {:?}",
        started.elapsed()
    );
    assert!(
        killed.get_f64("ok") == Ok(0.0) || killed.contains_key("writeConcernError"),
        "{killed}"
    );

    let during = command(&mut client, 5, hello.clone());
    assert_eq!(during.get_bool("isWritablePrimary"), Ok(false), "{during}");
    assert_eq!(during.get_bool("secondary"), Ok(false), "{during}");
    assert_eq!(during.get_str("primary"), Ok(host.as_str()), "{during}");
    assert_eq!(counter(&during), counter(&before) + 1);
    let refused = command(&mut client, 6, insert(3, doc! { "w": 1 }));
    assert_eq!(refused.get_i32("code"), Ok(10107), "{refused}");
    let role = set.status()[0].role;
    assert_eq!(
        role,
        Some(mabel_sim::Role::Primary(mabel_sim::Phase::Writable))
    );

    let failed = receive(&mut stepping).body;
    assert_eq!(failed.get_i32("code"), Ok(262), "{failed}");
    let after = command(&mut client, 8, hello);
    assert_eq!(after.get_bool("isWritablePrimary"), Ok(true), "{after}");
    assert_eq!(counter(&after), counter(&before) + 2);
    let ok = command(&mut client, 9, insert(4, doc! { "w": 1 }));
    assert_eq!(ok.get_f64("ok"), Ok(1.0), "{ok}");
}

/// `replication_info.cpp` `CmdHello::run`: an exhaust `hello` whose `topologyVersion` is
/// another process's is answered at once and streams on from the current one; one that is not awaitable fails
/// with 51756; a negative counter with 31372 (`awaitable_hello.js`).
#[test]
fn an_exhaust_hello_with_an_old_topology_version_streams_and_bad_ones_fail() {
    let set = ReplicaSet::start();
    let mut stream = connect(&set, 1);
    send(&mut stream, 1, 0, &doc! { "hello": 1, "$db": "admin" });
    let current = version(&receive(&mut stream));

    let mut foreign = current.clone();
    foreign.insert("processId", bson::oid::ObjectId::new());
    let asked = Instant::now();
    send(&mut stream, 2, EXHAUST_ALLOWED, &awaitable(&foreign, 300));
    let first = receive(&mut stream);
    assert!(asked.elapsed() < Duration::from_millis(250), "at once");
    assert_ne!(first.flags & MORE_TO_COME, 0, "moreToCome");
    assert_eq!(version(&first), current);
    let second = receive(&mut stream);
    assert_eq!(second.response_to, first.id);
    assert!(
        asked.elapsed() >= Duration::from_millis(250),
        "the next one waits on the current version: {:?}",
        asked.elapsed()
    );

    let mut stream = connect(&set, 1);
    send(
        &mut stream,
        3,
        EXHAUST_ALLOWED,
        &doc! { "hello": 1, "$db": "admin" },
    );
    let refused = receive(&mut stream);
    assert_eq!(refused.body.get_i32("code"), Ok(51756), "{}", refused.body);
    assert_eq!(refused.flags & MORE_TO_COME, 0);

    let mut negative = current.clone();
    negative.insert("counter", -1i64);
    send(&mut stream, 4, 0, &awaitable(&negative, 0));
    let refused = receive(&mut stream);
    assert_eq!(refused.body.get_i32("code"), Ok(31372), "{}", refused.body);
}
