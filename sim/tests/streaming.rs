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

    let mut older = current.clone();
    older.insert("counter", current.get_i64("counter").unwrap() - 1);
    let asked = Instant::now();
    send(&mut stream, 3, 0, &awaitable(&older, 10_000));
    receive(&mut stream);
    assert!(asked.elapsed() < Duration::from_secs(5), "answered at once");
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
