//! The sockets of a member: an accept loop, one blocking thread per connection, and the
//! mechanics of killing a member (everything closed, like a crashed process) and reviving it
//! on the same port.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::{Listener, Member, Role, Shared, State, TopologyVersion, INSERT_BATCH_SIZE};
use crate::commands::{self, Outcome};
use crate::events::Event;
use crate::heartbeat::Peer;
use crate::hello;
use crate::wire::{self, Request};

/// How often an idle accept loop checks whether it should stop.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// Starts accepting on `listener` for `member` and marks the member up.
pub fn start(shared: &Arc<Shared>, member: usize, listener: TcpListener) {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let stop = Arc::new(AtomicBool::new(false));
    let mut state = shared.lock();
    let incarnation = state.members[member].incarnation;
    let thread = {
        let shared = Arc::clone(shared);
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name(format!("fake-rs-m{member}-accept"))
            .spawn(move || accept_loop(shared, member, incarnation, listener, stop))
            .expect("spawn accept thread")
    };
    let m = &mut state.members[member];
    m.up = true;
    m.hung = false;
    m.listener = Some(Listener { stop, thread });
}

/// Closes the listening socket and shuts down every connection of `member`. Returns once
/// the port is closed, so a `revive` may follow at once.
pub fn kill(shared: &Shared, member: usize) {
    let listener = {
        let mut state = shared.lock();
        let m = &mut state.members[member];
        if !m.up {
            return;
        }
        m.up = false;
        m.hung = false;
        m.incarnation += 1;
        m.step_downs += 1;
        m.stepping_down = false;
        m.election_at = None;
        m.close_connections();
        m.listener.take()
    };
    shared.changed.notify_all();
    if let Some(listener) = listener {
        listener.stop.store(true, Ordering::SeqCst);
        let _ = listener.thread.join();
    }
}

/// Listens again on the member's old port. The port was closed by `kill`; server-side
/// sockets left in TIME_WAIT do not block the bind because std sets SO_REUSEADDR on Unix.
/// Another process may have grabbed the port in between, so binding is retried briefly.
pub fn revive(shared: &Arc<Shared>, member: usize) {
    let port = {
        let state = shared.lock();
        if state.members[member].up {
            return;
        }
        state.members[member].port
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let listener = loop {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => break listener,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("cannot listen on 127.0.0.1:{port} again: {e}"),
        }
    };
    start(shared, member, listener);
    shared.lock().restart(member, Instant::now());
    shared.changed.notify_all();
}

impl Member {
    /// Closes every client connection, and with them their cursors.
    pub fn close_connections(&mut self) {
        for (_, socket) in self.sockets.drain() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        self.cursors.clear();
    }
}

impl State {
    /// A new process of `member` on the data it left: no fail point set, not frozen, knowing
    /// nothing of the others yet nor of the commit point, in STARTUP on its way to SECONDARY
    /// (`clock`), with a new `topologyVersion.processId`. Its term and its vote are on disk.
    fn restart(&mut self, member: usize, now: Instant) {
        let count = self.members.len();
        let m = &mut self.members[member];
        m.fail_points = Default::default();
        m.insert_batch_size = INSERT_BATCH_SIZE;
        m.frozen_until = None;
        m.topology = TopologyVersion::new();
        m.replica.committed = 0;
        m.replica.catching_up = Some(0);
        m.peers = (0..count).map(|_| Peer::unknown(now)).collect();
        m.role = Role::Startup;
        m.role_since = now;
        self.events.push(Event::role(member, Role::Startup, m.term));
    }
}

/// Stops every member and waits for every thread the set started.
pub fn shutdown(shared: &Shared) {
    let members = {
        let mut state = shared.lock();
        state.shutting_down = true;
        state.members.len()
    };
    shared.changed.notify_all();
    for member in 0..members {
        kill(shared, member);
    }
    let threads = std::mem::take(&mut *shared.threads.lock().unwrap_or_else(|p| p.into_inner()));
    for thread in threads {
        let _ = thread.join();
    }
}

fn accept_loop(
    shared: Arc<Shared>,
    member: usize,
    incarnation: u64,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => adopt(&shared, member, incarnation, stream),
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Registers a fresh connection (so `kill` can close it) and gives it a thread.
fn adopt(shared: &Arc<Shared>, member: usize, incarnation: u64, stream: TcpStream) {
    static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);
    // Accepted sockets must block: each connection has its own thread.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let Ok(registered) = stream.try_clone() else {
        return;
    };
    let socket = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    let connection_id = {
        let mut state = shared.lock();
        let m = &state.members[member];
        if state.shutting_down || !m.up || m.incarnation != incarnation {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        state.members[member].sockets.insert(socket, registered);
        state.next_connection_id()
    };
    let thread = {
        let shared = Arc::clone(shared);
        thread::Builder::new()
            .name(format!("fake-rs-m{member}-conn"))
            .spawn(move || serve(shared, member, incarnation, socket, connection_id, stream))
    };
    let Ok(thread) = thread else {
        return;
    };
    shared.track(thread);
}

/// Answers requests until the peer leaves, the member dies, or a fault hangs up. A streamed
/// `hello` is answered again and again on its own, each reply in response to the last.
fn serve(
    shared: Arc<Shared>,
    member: usize,
    incarnation: u64,
    socket: u64,
    connection_id: i32,
    mut stream: TcpStream,
) {
    let mut streaming: Option<(Request, i32)> = None;
    loop {
        let (request, response_to) = match streaming.take() {
            Some(next) => next,
            None => match wire::read_request(&mut stream) {
                Ok(Some(request)) => {
                    let id = request.request_id;
                    (request, id)
                }
                _ => break,
            },
        };
        let outcome = commands::handle(&shared, member, incarnation, connection_id, &request);
        if request.name() == "insert" {
            // Outside the lock: heartbeats and the other connections carry on meanwhile.
            let latency = shared.lock().write_latency;
            if !latency.is_zero() {
                thread::sleep(latency);
            }
        }
        match outcome {
            Outcome::Reply(reply) => {
                if !request.more_to_come
                    && wire::write_reply(&mut stream, response_to, &reply, false).is_err()
                {
                    break;
                }
            }
            Outcome::Stream(reply) => {
                let Ok(sent) = wire::write_reply(&mut stream, response_to, &reply, true) else {
                    break;
                };
                streaming = hello::next_in_stream(&request, &reply).map(|next| (next, sent));
                if streaming.is_none() {
                    break;
                }
            }
            Outcome::HangUp | Outcome::Gone => break,
            Outcome::Crash => {
                kill(&shared, member);
                break;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    shared.lock().members[member].sockets.remove(&socket);
}
