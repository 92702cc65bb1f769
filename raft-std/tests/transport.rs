//! The TCP transport over real sockets on 127.0.0.1: members exchanging frames, restarts,
//! strangers refused, bounded queues, peers added, removed and moved at runtime, prompt
//! shutdown.
//!
//! Written for a loaded two-core machine: every wait polls for a condition with a generous
//! deadline, and no assertion depends on how long something took, except that a shutdown
//! interrupts a backoff wait much longer than the deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use raft_std::transport::{Deliver, SendError, Transport, TransportOptions, TransportStats};
use raft_std::NodeId;

const CLUSTER: u64 = 0x7e57_c105;
const PATIENCE: Duration = Duration::from_secs(10);

/// Frames received by one transport, in order.
#[derive(Default)]
struct Inbox {
    frames: Mutex<Vec<(NodeId, Vec<u8>)>>,
    arrived: Condvar,
}

impl Inbox {
    fn new() -> Arc<Inbox> {
        Arc::new(Inbox::default())
    }

    fn deliver(self: &Arc<Self>) -> Deliver {
        let inbox = self.clone();
        Box::new(move |from, frame| {
            inbox.frames.lock().expect("inbox lock").push((from, frame));
            inbox.arrived.notify_all();
        })
    }

    /// Waits until `done` holds for the frames received so far.
    fn wait_until(&self, what: &str, done: impl Fn(&[(NodeId, Vec<u8>)]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        let mut frames = self.frames.lock().expect("inbox lock");
        while !done(&frames) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for {what}; got {} frames",
                frames.len()
            );
            frames = self
                .arrived
                .wait_timeout(frames, deadline - now)
                .expect("inbox lock")
                .0;
        }
    }

    fn wait_for(&self, from: u64, payload: &[u8]) {
        let what = format!("{:?} from node {from}", String::from_utf8_lossy(payload));
        self.wait_until(&what, |frames| {
            frames
                .iter()
                .any(|(f, p)| *f == NodeId(from) && p == payload)
        });
    }

    fn senders(&self) -> Vec<NodeId> {
        self.frames
            .lock()
            .expect("inbox lock")
            .iter()
            .map(|(f, _)| *f)
            .collect()
    }
}

/// Polls `cond` until it holds or the deadline passes.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

fn local_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

fn addr_of(l: &TcpListener) -> SocketAddr {
    l.local_addr().expect("local_addr")
}

/// Short backoff so that reconnections in tests are quick.
fn options() -> TransportOptions {
    let mut o = TransportOptions::default();
    o.backoff_min = Duration::from_millis(10);
    o.backoff_max = Duration::from_millis(200);
    o
}

/// A running member.
struct Member {
    id: u64,
    transport: Transport,
    inbox: Arc<Inbox>,
}

impl Member {
    fn start(
        id: u64,
        listener: TcpListener,
        members: &[(u64, SocketAddr)],
        options: TransportOptions,
    ) -> Member {
        let peers: Vec<(NodeId, SocketAddr)> = members
            .iter()
            .filter(|(m, _)| *m != id)
            .map(|&(m, a)| (NodeId(m), a))
            .collect();
        let inbox = Inbox::new();
        let transport = Transport::start_with_listener(
            NodeId(id),
            CLUSTER,
            listener,
            &peers,
            options,
            inbox.deliver(),
        )
        .expect("transport starts");
        Member {
            id,
            transport,
            inbox,
        }
    }

    /// Sends until the frame is queued (the connection may still be coming up).
    fn send_eventually(&self, to: u64, payload: &[u8]) {
        let what = format!("node {} to queue a frame for node {to}", self.id);
        eventually(&what, || self.transport.send(NodeId(to), payload).is_ok());
    }

    fn stats(&self) -> TransportStats {
        self.transport.stats()
    }

    fn addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// Makes `other` a peer of this member, at its listening address.
    fn add(&self, other: &Member) {
        self.transport
            .add_peer(NodeId(other.id), other.addr())
            .expect("add_peer");
    }

    /// Frames received from `from` so far.
    fn received_from(&self, from: u64) -> usize {
        self.inbox
            .senders()
            .iter()
            .filter(|f| **f == NodeId(from))
            .count()
    }
}

/// Both members send one frame to the other and wait for the other's.
fn exchange(a: &Member, b: &Member, what: &str) {
    let (ab, ba) = (
        format!("{what}: {} to {}", a.id, b.id),
        format!("{what}: {} to {}", b.id, a.id),
    );
    a.send_eventually(b.id, ab.as_bytes());
    b.send_eventually(a.id, ba.as_bytes());
    b.inbox.wait_for(a.id, ab.as_bytes());
    a.inbox.wait_for(b.id, ba.as_bytes());
}

/// Starts members with the given ids, each on a port of its own.
fn cluster(ids: &[u64], options: TransportOptions) -> Vec<Member> {
    let listeners: Vec<TcpListener> = ids.iter().map(|_| local_listener()).collect();
    let members: Vec<(u64, SocketAddr)> = ids
        .iter()
        .zip(&listeners)
        .map(|(&id, l)| (id, addr_of(l)))
        .collect();
    ids.iter()
        .zip(listeners)
        .map(|(&id, l)| Member::start(id, l, &members, options.clone()))
        .collect()
}

fn wait_all_connected(members: &[Member]) {
    for a in members {
        for b in members {
            if a.id != b.id {
                let what = format!("node {} connected to node {}", a.id, b.id);
                eventually(&what, || a.transport.is_connected(NodeId(b.id)));
            }
        }
    }
}

fn hello(cluster_id: u64, from: u64, to: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(30);
    b.extend_from_slice(b"TKRF");
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&cluster_id.to_le_bytes());
    b.extend_from_slice(&from.to_le_bytes());
    b.extend_from_slice(&to.to_le_bytes());
    b
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    s
}

/// Whether the other side closed `s`: a read returns end-of-file or a reset, not data and not
/// a timeout.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// Reads the acceptor's answer to a valid hello.
fn read_answer(s: &mut TcpStream) -> Vec<u8> {
    let mut b = vec![0u8; 30];
    s.read_exact(&mut b)
        .expect("the acceptor answers a valid hello");
    b
}

#[test]
fn transport_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Transport>();
}

#[test]
fn three_members_exchange_frames_both_ways() {
    let members = cluster(&[1, 2, 3], options());
    wait_all_connected(&members);
    for a in &members {
        for b in &members {
            if a.id != b.id {
                a.send_eventually(b.id, format!("{} to {}", a.id, b.id).as_bytes());
            }
        }
    }
    for b in &members {
        for a in &members {
            if a.id != b.id {
                b.inbox
                    .wait_for(a.id, format!("{} to {}", a.id, b.id).as_bytes());
            }
        }
    }

    // A burst each way between the lowest and highest ids arrives complete and in order.
    let (low, high) = (&members[0], &members[2]);
    for i in 0u32..2000 {
        low.send_eventually(3, &i.to_le_bytes());
        high.send_eventually(1, &(i + 1_000_000).to_le_bytes());
    }
    let burst_from = |inbox: &Inbox, from: u64| -> Vec<u32> {
        let frames = inbox.frames.lock().expect("inbox lock");
        frames
            .iter()
            .filter(|(f, p)| *f == NodeId(from) && p.len() == 4)
            .map(|(_, p)| u32::from_le_bytes([p[0], p[1], p[2], p[3]]))
            .collect()
    };
    high.inbox.wait_until("the burst from node 1", |f| {
        f.iter()
            .filter(|(n, p)| *n == NodeId(1) && p.len() == 4)
            .count()
            == 2000
    });
    low.inbox.wait_until("the burst from node 3", |f| {
        f.iter()
            .filter(|(n, p)| *n == NodeId(3) && p.len() == 4)
            .count()
            == 2000
    });
    assert_eq!(burst_from(&high.inbox, 1), (0..2000).collect::<Vec<u32>>());
    assert_eq!(
        burst_from(&low.inbox, 3),
        (1_000_000..1_002_000).collect::<Vec<u32>>()
    );

    let s = low.stats();
    assert!(s.frames_sent >= 2002 && s.frames_received >= 2002, "{s:?}");
    assert_eq!((s.refused, s.oversized), (0, 0), "{s:?}");
    for m in members {
        m.transport.shutdown();
    }
}

#[test]
fn restarted_peers_are_reconnected() {
    let listeners = [local_listener(), local_listener(), local_listener()];
    let addrs: Vec<(u64, SocketAddr)> = (1..=3).zip(listeners.iter().map(addr_of)).collect();
    let mut members: Vec<Option<Member>> = listeners
        .into_iter()
        .zip(1..=3)
        .map(|(l, id)| Some(Member::start(id, l, &addrs, options())))
        .collect();
    for m in members.iter().flatten() {
        for p in members.iter().flatten() {
            if m.id != p.id {
                eventually("all connected", || m.transport.is_connected(NodeId(p.id)));
            }
        }
    }

    // Restart node 3 (it only accepts), then node 1 (it only dials); each time the others
    // notice, refuse to queue for it, and then reconnect to its new incarnation.
    for restarted in [3u64, 1] {
        let i = (restarted - 1) as usize;
        let old = members[i].take().expect("running");
        old.transport.shutdown();
        let others: Vec<u64> = (1..=3).filter(|&id| id != restarted).collect();
        for &o in &others {
            let m = members[(o - 1) as usize].as_ref().expect("running");
            eventually("the peer seen down", || {
                !m.transport.is_connected(NodeId(restarted))
            });
            let r = m.transport.send(NodeId(restarted), b"lost");
            // It is down, so nothing can have reconnected to it.
            assert_eq!(r, Err(SendError::NotConnected));
            assert!(m.stats().disconnects >= 1);
        }
        // Same address again; the old sockets may linger in TIME_WAIT, which std's
        // SO_REUSEADDR allows.
        let addr = addrs[i].1;
        let mut listener = None;
        eventually("the address to be free again", || {
            listener = TcpListener::bind(addr).ok();
            listener.is_some()
        });
        let new = Member::start(restarted, listener.expect("bound"), &addrs, options());
        for &o in &others {
            let m = members[(o - 1) as usize].as_ref().expect("running");
            let msg = format!("{o} to restarted {restarted}");
            m.send_eventually(restarted, msg.as_bytes());
            new.inbox.wait_for(o, msg.as_bytes());
            let back = format!("restarted {restarted} to {o}");
            new.send_eventually(o, back.as_bytes());
            m.inbox.wait_for(restarted, back.as_bytes());
        }
        members[i] = Some(new);
    }
}

#[test]
fn a_new_connection_from_a_peer_replaces_the_old_one() {
    let l2 = local_listener();
    let addr2 = addr_of(&l2);
    let l1 = local_listener();
    let addr1 = addr_of(&l1);
    let members = [(1, addr1), (2, addr2)];
    let n2 = Member::start(2, l2, &members, options());

    // An earlier incarnation of node 1, played by hand: it shakes hands and then goes quiet.
    let mut ghost = connect(addr2);
    ghost.write_all(&hello(CLUSTER, 1, 2)).expect("write hello");
    assert_eq!(read_answer(&mut ghost), hello(CLUSTER, 2, 1));
    eventually("node 2 connected to the ghost", || {
        n2.transport.is_connected(NodeId(1))
    });
    n2.send_eventually(1, b"to the ghost");
    let mut frame = [0u8; 16];
    ghost
        .read_exact(&mut frame)
        .expect("the ghost receives a frame");
    assert_eq!(&frame[..4], &12u32.to_le_bytes());
    assert_eq!(&frame[4..], b"to the ghost");

    // The real node 1 comes up: its connection replaces the ghost's, which is closed.
    let n1 = Member::start(1, l1, &members, options());
    assert!(closed_by_peer(&mut ghost), "the old connection is closed");
    n1.send_eventually(2, b"hello from the new 1");
    n2.inbox.wait_for(1, b"hello from the new 1");
    n2.send_eventually(1, b"welcome back");
    n1.inbox.wait_for(2, b"welcome back");
    let s = n2.stats();
    assert!(s.connects >= 2 && s.disconnects >= 1, "{s:?}");
}

#[test]
fn strangers_are_refused_while_members_keep_talking() {
    // Members 2, 3 and 4 run; member 1 is configured but absent, so that a stranger can
    // pretend to be it without disturbing a real connection (nobody dials the lowest id).
    let mut o = options();
    o.handshake_timeout = Duration::from_millis(300);
    o.max_frame_bytes = 1 << 20;
    let ids = [1u64, 2, 3, 4];
    let listeners: Vec<TcpListener> = ids.iter().map(|_| local_listener()).collect();
    let addrs: Vec<(u64, SocketAddr)> = ids
        .iter()
        .copied()
        .zip(listeners.iter().map(addr_of))
        .collect();
    let mut running: Vec<Member> = ids
        .iter()
        .zip(listeners)
        .filter(|(&id, _)| id != 1)
        .map(|(&id, l)| Member::start(id, l, &addrs, o.clone()))
        .collect();
    wait_all_connected(&running);
    let target = &running[1];
    assert_eq!(target.id, 3);
    let addr3 = target.transport.local_addr();

    let mut refused = Vec::new();
    for (what, bytes) in [
        ("a foreign cluster id", hello(CLUSTER + 1, 1, 3)),
        ("an unknown node id", hello(CLUSTER, 7, 3)),
        (
            "a higher id dialing (wrong direction)",
            hello(CLUSTER, 4, 3),
        ),
        ("a hello for another node", hello(CLUSTER, 1, 2)),
        ("another protocol version", {
            let mut h = hello(CLUSTER, 1, 3);
            h[4] = 2;
            h
        }),
        (
            "random bytes",
            (0..200u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
    ] {
        let mut s = connect(addr3);
        // The acceptor may close before reading everything; a failed write is fine.
        let _ = s.write_all(&bytes);
        refused.push((what, s));
    }
    // A stranger that says nothing times out.
    refused.push(("a silent connection", connect(addr3)));
    for (what, s) in &mut refused {
        assert!(closed_by_peer(s), "{what}: connection not closed");
    }
    eventually("seven refusals counted", || target.stats().refused == 7);

    // A valid hello, then a frame header announcing too much, or nothing.
    for len in [(1u32 << 20) + 1, u32::MAX, 0] {
        let mut s = connect(addr3);
        s.write_all(&hello(CLUSTER, 1, 3)).expect("write hello");
        assert_eq!(read_answer(&mut s), hello(CLUSTER, 3, 1));
        s.write_all(&len.to_le_bytes()).expect("write header");
        let _ = s.write_all(&[0u8; 64]);
        assert!(closed_by_peer(&mut s), "len {len}: connection not closed");
    }
    eventually("three oversized frames counted", || {
        target.stats().oversized == 3
    });
    let s = target.stats();
    assert_eq!(s.refused, 7, "{s:?}");

    // Nothing from a stranger was delivered, and the members still talk both ways.
    assert!(target
        .inbox
        .senders()
        .iter()
        .all(|f| *f == NodeId(2) || *f == NodeId(4)));
    for (a, b) in [(2u64, 3u64), (3, 2), (3, 4), (4, 3), (2, 4), (4, 2)] {
        let from = running.iter().find(|m| m.id == a).expect("member");
        from.send_eventually(b, format!("after strangers {a} to {b}").as_bytes());
    }
    for (a, b) in [(2u64, 3u64), (3, 2), (3, 4), (4, 3), (2, 4), (4, 2)] {
        let to = running.iter().find(|m| m.id == b).expect("member");
        to.inbox
            .wait_for(a, format!("after strangers {a} to {b}").as_bytes());
    }
    for m in running.drain(..) {
        m.transport.shutdown();
    }
}

#[test]
fn too_many_handshakes_at_once_are_refused_at_once() {
    let mut o = options();
    // Long enough that only the limit, not the timeout, can explain a quick close.
    o.handshake_timeout = Duration::from_secs(60);
    o.max_unauthenticated = 2;
    let l1 = local_listener();
    let l2 = local_listener();
    let members = [(1, addr_of(&l1)), (2, addr_of(&l2))];
    let n2 = Member::start(2, l2, &members, o.clone());
    let addr2 = n2.transport.local_addr();

    // Two silent strangers take both slots (the accept thread admits connections in order).
    let silent: Vec<TcpStream> = (0..2).map(|_| connect(addr2)).collect();
    let mut third = connect(addr2);
    assert!(
        closed_by_peer(&mut third),
        "the connection beyond the limit is closed"
    );
    eventually("the refusal counted", || n2.stats().refused == 1);
    // When the strangers leave, their slots free up and a member gets in.
    drop(silent);
    let n1 = Member::start(1, l1, &members, o);
    n1.send_eventually(2, b"let in");
    n2.inbox.wait_for(1, b"let in");
}

#[test]
fn dialer_refuses_an_answer_from_the_wrong_node() {
    // Node 1 believes node 2 is at this address, but node 5 answers there (addresses swapped).
    let impostor = local_listener();
    let addr = addr_of(&impostor);
    let answered = thread::spawn(move || {
        let (mut s, _) = impostor.accept().expect("accept");
        let mut h = [0u8; 30];
        s.read_exact(&mut h).expect("read hello");
        assert_eq!(&h[..], &hello(CLUSTER, 1, 2)[..]);
        s.write_all(&hello(CLUSTER, 5, 1)).expect("answer");
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
        closed_by_peer(&mut s)
    });
    let inbox = Inbox::new();
    let n1 = Transport::start(
        NodeId(1),
        CLUSTER,
        "127.0.0.1:0".parse().expect("addr"),
        &[(NodeId(2), addr)],
        options(),
        inbox.deliver(),
    )
    .expect("start");
    assert!(
        answered.join().expect("impostor thread"),
        "the dialer hangs up"
    );
    eventually("the refusal counted", || n1.stats().refused >= 1);
    assert!(!n1.is_connected(NodeId(2)));
    assert_eq!(n1.send(NodeId(2), b"x"), Err(SendError::NotConnected));
}

/// Sends 64 KiB frames to a peer that completed the handshake and never reads, until the
/// queue stays full; returns how many were taken until then, and how many of 1000 more.
fn fill_queue(options: TransportOptions) -> (u64, u64, TransportStats) {
    let sink = local_listener();
    let addr = addr_of(&sink);
    let (keep_tx, keep_rx) = mpsc::channel();
    let sink_thread = thread::spawn(move || {
        let (mut s, _) = sink.accept().expect("accept");
        let mut h = [0u8; 30];
        s.read_exact(&mut h).expect("read hello");
        s.write_all(&hello(CLUSTER, 2, 1)).expect("answer");
        // Keep the socket open, unread, until the test is done.
        let _ = keep_rx.recv();
        drop(s);
    });
    let n1 = Transport::start(
        NodeId(1),
        CLUSTER,
        "127.0.0.1:0".parse().expect("addr"),
        &[(NodeId(2), addr)],
        options,
        Inbox::new().deliver(),
    )
    .expect("start");
    eventually("connected to the sink", || n1.is_connected(NodeId(2)));
    let frame = vec![0xabu8; 64 << 10];
    // Send until the queue has stayed full for 200 tries in a row, a millisecond apart: by
    // then the writer is blocked on the full socket (a descheduled writer only delays this).
    let mut before = 0u64;
    let mut full_in_a_row = 0;
    let deadline = Instant::now() + PATIENCE;
    while full_in_a_row < 200 {
        match n1.send(NodeId(2), &frame) {
            Ok(()) => {
                before += 1;
                full_in_a_row = 0;
            }
            Err(SendError::QueueFull) => {
                full_in_a_row += 1;
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the queue never stayed full ({before} frames taken)"
        );
    }
    let mut after = 0u64;
    for _ in 0..1000 {
        match n1.send(NodeId(2), &frame) {
            Ok(()) => after += 1,
            Err(SendError::QueueFull) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let stats = n1.stats();
    // Shutdown must not hang on the writer blocked in a write to the full socket.
    n1.shutdown();
    keep_tx.send(()).expect("sink waiting");
    sink_thread.join().expect("sink thread");
    (before, after, stats)
}

#[test]
fn a_peer_that_stops_reading_fills_the_queue_and_no_more() {
    // Bound by frames: 32 queued (with the writer's batch) plus what the kernel buffers.
    let mut o = options();
    o.max_frame_bytes = 64 << 10;
    o.queue_frames = 32;
    o.queue_bytes = 64 << 20;
    let (before, after, stats) = fill_queue(o);
    // The kernel's socket buffers hold a few MiB at most; the queue itself holds 32 frames.
    assert!(
        before < 32 + 1024,
        "{before} frames taken before the queue was full"
    );
    assert!(after <= 32, "{after} frames taken after the queue was full");
    assert!(stats.dropped_queue_full >= 1000 - after, "{stats:?}");

    // Bound by bytes: 8 frames of 64 KiB.
    let mut o = options();
    o.max_frame_bytes = 64 << 10;
    o.queue_frames = 4096;
    o.queue_bytes = 8 * (64 << 10);
    let (before, after, _) = fill_queue(o);
    assert!(
        before < 8 + 1024,
        "{before} frames taken before the queue was full"
    );
    assert!(after <= 8, "{after} frames taken after the queue was full");
}

#[test]
fn sends_that_cannot_go_are_refused() {
    // Nothing listens at node 2's address.
    let down = addr_of(&local_listener());
    let mut o = options();
    o.max_frame_bytes = 1000;
    o.queue_bytes = 1000;
    let n1 = Transport::start(
        NodeId(1),
        CLUSTER,
        "127.0.0.1:0".parse().expect("addr"),
        &[(NodeId(2), down)],
        o,
        Inbox::new().deliver(),
    )
    .expect("start");
    assert_eq!(n1.send(NodeId(2), b"hello"), Err(SendError::NotConnected));
    assert_eq!(n1.send(NodeId(9), b"hello"), Err(SendError::UnknownPeer));
    assert_eq!(n1.send(NodeId(2), b""), Err(SendError::TooLarge));
    assert_eq!(n1.send(NodeId(2), &[0u8; 1001]), Err(SendError::TooLarge));
    assert!(!n1.is_connected(NodeId(2)) && !n1.is_connected(NodeId(9)));
    assert_eq!(n1.stats().dropped_not_connected, 1);
}

#[test]
fn start_refuses_bad_members_and_busy_addresses() {
    let here: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let other = addr_of(&local_listener());
    let start = |id: u64, peers: &[(u64, SocketAddr)], listen: SocketAddr| {
        let peers: Vec<(NodeId, SocketAddr)> = peers.iter().map(|&(i, a)| (NodeId(i), a)).collect();
        Transport::start(
            NodeId(id),
            CLUSTER,
            listen,
            &peers,
            options(),
            Inbox::new().deliver(),
        )
    };
    assert!(start(1, &[(0, other)], here).is_err());
    assert!(start(1, &[(1, other)], here).is_err());
    assert!(start(1, &[(2, other), (2, other)], here).is_err());
    assert!(start(0, &[(2, other)], here).is_err());
    let busy = local_listener();
    let e = start(1, &[(2, other)], addr_of(&busy)).expect_err("address in use");
    assert!(e.to_string().contains(&addr_of(&busy).to_string()), "{e}");
}

#[test]
fn shutdown_is_prompt_while_peers_are_unreachable() {
    // Node 2 waits for node 1 to dial it and backs off from node 3, which is down; a stranger
    // sits silent in its handshake. Every wait is far longer than the deadline below.
    let mut o = options();
    o.backoff_min = Duration::from_secs(60);
    o.backoff_max = Duration::from_secs(120);
    o.handshake_timeout = Duration::from_secs(60);
    let down1 = addr_of(&local_listener());
    let down3 = addr_of(&local_listener());
    let n2 = Transport::start(
        NodeId(2),
        CLUSTER,
        "127.0.0.1:0".parse().expect("addr"),
        &[(NodeId(1), down1), (NodeId(3), down3)],
        o,
        Inbox::new().deliver(),
    )
    .expect("start");
    let mut stranger = connect(n2.local_addr());
    // Give the dialer time to fail once and start its backoff wait (not required to pass).
    thread::sleep(Duration::from_millis(100));

    let (done_tx, done_rx) = mpsc::channel();
    let started = Instant::now();
    thread::spawn(move || {
        n2.shutdown();
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("shutdown finished well before any backoff or handshake timeout");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        closed_by_peer(&mut stranger),
        "the stranger's connection is closed"
    );
}

#[test]
fn members_started_with_no_peers_connect_once_added_in_either_order() {
    for lower_added_last in [false, true] {
        let n1 = Member::start(1, local_listener(), &[], options());
        let n2 = Member::start(2, local_listener(), &[], options());
        assert!(n1.transport.peers().is_empty() && n2.transport.peers().is_empty());
        assert_eq!(
            n1.transport.send(NodeId(2), b"x"),
            Err(SendError::UnknownPeer)
        );
        assert_eq!(
            n2.transport.send(NodeId(1), b"x"),
            Err(SendError::UnknownPeer)
        );
        if lower_added_last {
            // Node 1 dials node 2 at once, and is refused as a stranger until node 2 adds it;
            // its next redial is let in.
            n1.add(&n2);
            eventually("node 2 to refuse node 1", || n2.stats().refused >= 1);
            assert!(!n1.transport.is_connected(NodeId(2)));
            n2.add(&n1);
        } else {
            // Node 2 waits for a dial that comes as soon as node 1 knows it.
            n2.add(&n1);
            n1.add(&n2);
        }
        exchange(&n1, &n2, "added at runtime");
        assert_eq!(n1.transport.peers(), vec![(NodeId(2), n2.addr())]);
        assert_eq!(n2.transport.peers(), vec![(NodeId(1), n1.addr())]);
        // Adding a peer again at the same address changes nothing.
        n1.add(&n2);
        n2.add(&n1);
        assert_eq!((n1.stats().disconnects, n2.stats().disconnects), (0, 0));
        exchange(&n1, &n2, "after adding again");
    }
}

#[test]
fn a_removed_peer_is_unknown_and_refused_like_a_stranger() {
    let members = cluster(&[1, 2], options());
    wait_all_connected(&members);
    let (n1, n2) = (&members[0], &members[1]);
    exchange(n1, n2, "before the removal");
    let from_1_before = n2.received_from(1);

    // Node 2 removes node 1 (which dials it, and keeps redialing: it still counts 2 a peer).
    n2.transport.remove_peer(NodeId(1));
    assert_eq!(
        n2.transport.send(NodeId(1), b"x"),
        Err(SendError::UnknownPeer)
    );
    assert!(!n2.transport.is_connected(NodeId(1)));
    assert!(n2.transport.peers().is_empty());
    eventually("node 1 to see the connection closed", || {
        !n1.transport.is_connected(NodeId(2))
    });
    assert!(n2.stats().disconnects >= 1);
    // Its redials are refused and counted; none gets through.
    eventually("two of node 1's redials refused", || {
        n2.stats().refused >= 2
    });
    assert_eq!(
        n1.transport.send(NodeId(2), b"x"),
        Err(SendError::NotConnected)
    );
    // A hello from node 1 played by hand is refused the same way: no answer, closed.
    let refused = n2.stats().refused;
    let mut s = connect(n2.addr());
    s.write_all(&hello(CLUSTER, 1, 2)).expect("write hello");
    assert!(closed_by_peer(&mut s), "a removed peer's hello is refused");
    eventually("the hand-played hello refused", || {
        n2.stats().refused > refused
    });
    assert!(!n2.transport.is_connected(NodeId(1)));
    assert_eq!(
        n2.received_from(1),
        from_1_before,
        "nothing delivered from node 1"
    );

    // Node 1 removes node 2 in turn: sends to it are refused as unknown too.
    n1.transport.remove_peer(NodeId(2));
    assert_eq!(
        n1.transport.send(NodeId(2), b"x"),
        Err(SendError::UnknownPeer)
    );
    assert!(n1.transport.peers().is_empty());
}

#[test]
fn a_peer_added_again_after_removal_reconnects() {
    let members = cluster(&[1, 2], options());
    wait_all_connected(&members);
    let (n1, n2) = (&members[0], &members[1]);
    exchange(n1, n2, "at first");

    // The acceptor removes the dialer and adds it back: the dialer's next redial is let in.
    n2.transport.remove_peer(NodeId(1));
    eventually("node 1 to see the connection closed", || {
        !n1.transport.is_connected(NodeId(2))
    });
    n2.add(n1);
    exchange(n1, n2, "node 1 added again");

    // The dialer removes the acceptor and adds it back: it dials again.
    n1.transport.remove_peer(NodeId(2));
    assert_eq!(
        n1.transport.send(NodeId(2), b"x"),
        Err(SendError::UnknownPeer)
    );
    eventually("node 2 to see the connection closed", || {
        !n2.transport.is_connected(NodeId(1))
    });
    n1.add(n2);
    exchange(n1, n2, "node 2 added again");
    let s = n2.stats();
    assert!(s.connects >= 3 && s.disconnects >= 2, "{s:?}");
}

#[test]
fn an_address_change_reconnects_to_the_new_listener() {
    let members = cluster(&[1, 2], options());
    wait_all_connected(&members);
    let (n1, old2) = (&members[0], &members[1]);
    exchange(n1, old2, "before the move");

    // Node 2 moves to a new address (a new process there, knowing node 1), and node 1 is
    // told: it closes the connection to the old address and dials the new one.
    let new2 = Member::start(2, local_listener(), &[(1, n1.addr())], options());
    n1.transport
        .add_peer(NodeId(2), new2.addr())
        .expect("add_peer with the new address");
    assert_eq!(n1.transport.peers(), vec![(NodeId(2), new2.addr())]);
    eventually("the old node 2 to see the connection closed", || {
        !old2.transport.is_connected(NodeId(1))
    });
    exchange(n1, &new2, "after the move");
    assert_eq!(
        old2.received_from(1),
        1,
        "nothing more reached the old address"
    );

    // On the accepting side a new address for the dialer also closes the connection (the
    // address is not dialed from there, but the peer is presumed to have moved); node 1
    // redials, and its hello is accepted whatever its address.
    let connects = new2.stats().connects;
    let n1_disconnects = n1.stats().disconnects;
    let elsewhere = addr_of(&local_listener());
    new2.transport
        .add_peer(NodeId(1), elsewhere)
        .expect("add_peer with another address");
    assert_eq!(new2.transport.peers(), vec![(NodeId(1), elsewhere)]);
    // Until node 1 sees the connection closed it may queue frames on it, which are lost.
    eventually("node 1 to see the connection closed", || {
        n1.stats().disconnects > n1_disconnects
    });
    exchange(n1, &new2, "after node 1 moved");
    let s = new2.stats();
    assert!(s.connects > connects && s.disconnects >= 1, "{s:?}");
}

#[test]
fn add_peer_refuses_this_node_and_id_zero() {
    let n1 = Member::start(1, local_listener(), &[], options());
    let somewhere = addr_of(&local_listener());
    assert!(n1.transport.add_peer(NodeId(1), somewhere).is_err());
    assert!(n1.transport.add_peer(NodeId(0), somewhere).is_err());
    assert!(n1.transport.peers().is_empty());
    assert_eq!(
        n1.transport.send(NodeId(0), b"x"),
        Err(SendError::UnknownPeer)
    );
}

#[test]
fn set_peers_reaches_the_given_set_and_changes_nothing_when_it_is_there() {
    let n1 = Member::start(1, local_listener(), &[], options());
    let n2 = Member::start(2, local_listener(), &[(1, n1.addr())], options());
    let down3 = addr_of(&local_listener());
    let set = [(NodeId(2), n2.addr()), (NodeId(3), down3)];
    n1.transport.set_peers(&set).expect("set_peers");
    assert_eq!(n1.transport.peers(), set.to_vec());
    exchange(&n1, &n2, "after set_peers");

    // A list with this node, id 0, or an id twice is refused and changes nothing.
    let somewhere = addr_of(&local_listener());
    for bad in [
        vec![(NodeId(2), n2.addr()), (NodeId(1), somewhere)],
        vec![(NodeId(0), somewhere)],
        vec![(NodeId(4), somewhere), (NodeId(4), somewhere)],
    ] {
        assert!(n1.transport.set_peers(&bad).is_err(), "{bad:?}");
        assert_eq!(n1.transport.peers(), set.to_vec());
    }

    // The same set again, in any order, leaves the connection alone.
    let before = (n1.stats(), n2.stats());
    for _ in 0..100 {
        n1.transport
            .set_peers(&[set[1], set[0]])
            .expect("set_peers");
    }
    let after = (n1.stats(), n2.stats());
    assert_eq!(
        (after.0.connects, after.0.disconnects, after.1.disconnects),
        (
            before.0.connects,
            before.0.disconnects,
            before.1.disconnects
        )
    );
    assert!(n1.transport.is_connected(NodeId(2)));
    exchange(&n1, &n2, "after the same set again");

    // Node 2 leaves the set and node 4 joins it.
    let down4 = addr_of(&local_listener());
    n1.transport
        .set_peers(&[(NodeId(4), down4), (NodeId(3), down3)])
        .expect("set_peers");
    assert_eq!(
        n1.transport.peers(),
        vec![(NodeId(3), down3), (NodeId(4), down4)]
    );
    assert_eq!(
        n1.transport.send(NodeId(2), b"x"),
        Err(SendError::UnknownPeer)
    );
    assert_eq!(
        n1.transport.send(NodeId(4), b"x"),
        Err(SendError::NotConnected)
    );
    eventually("node 2 to see the connection closed", || {
        !n2.transport.is_connected(NodeId(1))
    });
    n1.transport.set_peers(&[]).expect("no peers");
    assert!(n1.transport.peers().is_empty());
}

#[test]
fn shutdown_is_prompt_after_peers_were_added_and_removed() {
    // Every wait is a minute: a thread that shutdown (or a removal) failed to wake would
    // hold it up far past the deadline below.
    let mut o = options();
    o.backoff_min = Duration::from_secs(60);
    o.backoff_max = Duration::from_secs(60);
    o.handshake_timeout = Duration::from_secs(60);
    // Node 5 knows node 2 from the start, since node 2 dials it with no second chance within
    // the test (node 5 never dials node 2, so the address it has for it does not matter).
    let n5 = Member::start(
        5,
        local_listener(),
        &[(2, addr_of(&local_listener()))],
        o.clone(),
    );
    let n2 = Member::start(2, local_listener(), &[], o);
    let down = || addr_of(&local_listener());
    // Node 2 waits for node 1, backs off from 3 and 4 (down), and is connected to 5.
    for (id, addr) in [(1, down()), (3, down()), (4, down()), (5, n5.addr())] {
        n2.transport.add_peer(NodeId(id), addr).expect("add_peer");
    }
    n2.send_eventually(5, b"connected");
    n5.inbox.wait_for(2, b"connected");
    // Removed, added again, and moved while backing off.
    n2.transport.remove_peer(NodeId(3));
    n2.transport.add_peer(NodeId(3), down()).expect("add again");
    n2.transport.add_peer(NodeId(4), down()).expect("move");
    n2.transport.remove_peer(NodeId(1));
    let mut stranger = connect(n2.addr());
    thread::sleep(Duration::from_millis(100));

    let (done_tx, done_rx) = mpsc::channel();
    let started = Instant::now();
    let Member { transport, .. } = n2;
    thread::spawn(move || {
        transport.shutdown();
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("shutdown finished well before any backoff or handshake timeout");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        closed_by_peer(&mut stranger),
        "the stranger's connection is closed"
    );
    eventually("node 5 to see node 2 gone", || {
        !n5.transport.is_connected(NodeId(2))
    });
}
