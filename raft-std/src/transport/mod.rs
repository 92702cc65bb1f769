//! TCP between the members of one cluster: opaque byte frames, one connection per pair.
//!
//! The transport never looks inside a frame; the node layer puts its own kind byte first. It
//! gives each peer a bounded send queue and a writer thread, and calls a [`Deliver`] callback
//! for every frame received. [`Transport::send`] never blocks: when the peer is not connected
//! or its queue is full the frame is dropped and the caller is told, so that it can report the
//! peer unreachable to the Raft core (which retransmits on its own).
//!
//! # Wire protocol (version 1)
//!
//! **Who dials whom.** There is exactly one TCP connection per pair of members, used in both
//! directions. The member with the lower id dials the higher one, and redials after a failure
//! or a disconnect, waiting between attempts with exponential backoff and jitter
//! ([`TransportOptions::backoff_min`] to [`TransportOptions::backoff_max`]). The higher id
//! only accepts. `TCP_NODELAY` is set on every connection.
//!
//! **Handshake.** The dialer speaks first, with a 30-byte hello (integers little-endian):
//!
//! ```text
//! offset  size  field
//!      0     4  magic       b"TKRF"
//!      4     2  version     u16, 1
//!      6     8  cluster_id  u64, shared by every member
//!     14     8  from        u64, the sender's node id
//!     22     8  to          u64, the node id the sender means to reach
//! ```
//!
//! The acceptor refuses the connection unless the magic and version match, the cluster id is
//! its own, `to` is its own id, and `from` is a peer at that moment (see
//! [Membership](#membership)) with a lower id. If it accepts it answers with its own hello
//! (same layout, `from` and `to` swapped), and the dialer checks that answer the same way:
//! right magic, version and cluster, addressed to it, and from the node it dialed (which
//! catches two members whose addresses were swapped).
//!
//! **Refusal.** A refused connection gets no answer: it is closed, logged with
//! `tracing::warn!` (remote address and reason), counted in [`TransportStats::refused`], and
//! nothing from it is delivered. Refused are: a wrong magic (any garbage), another version, a
//! foreign cluster id, an unknown node id, a hello from a higher id (wrong direction), a hello
//! addressed to another node, and a hello not complete within
//! [`TransportOptions::handshake_timeout`] (the deadline is for the whole hello, so a stranger
//! cannot hold a slot by trickling bytes). At most [`TransportOptions::max_unauthenticated`]
//! accepted connections may be in their handshake at once; beyond that a new one is refused at
//! once. An authenticated connection from a peer that already has one replaces the old one
//! (the peer restarted).
//!
//! The handshake keeps out strangers and misconfigured members, not attackers: nothing is
//! encrypted or signed, and anyone who knows the cluster id can pose as a member. Run the
//! cluster on a private network, or inside a tunnel that authenticates the hosts.
//!
//! **Frames.** After the handshake each direction is a sequence of frames:
//!
//! ```text
//! len u32 LE | payload (len bytes)
//! ```
//!
//! with `1 <= len <= max_frame_bytes`. A header announcing 0 or more than
//! [`TransportOptions::max_frame_bytes`] is logged, counted in [`TransportStats::oversized`],
//! and closes the connection (the dialer reconnects later); no buffer is allocated for it.
//!
//! # Membership
//!
//! The set of peers changes while the transport runs, as the cluster's membership does:
//! [`Transport::add_peer`], [`Transport::remove_peer`] and [`Transport::set_peers`], callable
//! from any thread. A transport may start with no peers at all (a node joining a cluster). The
//! wire protocol does not change: the lower id of a pair dials, and a hello is checked against
//! the peers at the moment it arrives, so the acceptor takes one from a peer added a moment
//! ago, and refuses one from a removed peer like a stranger's (logged, counted in
//! [`TransportStats::refused`]). Until both members of a pair know each other the dialer is
//! refused and backs off, so a pair connects within about [`TransportOptions::backoff_max`]
//! of the later of the two additions.
//!
//! Removing a peer closes its connection (counted in [`TransportStats::disconnects`]), drops
//! its queue, and from then on [`Transport::send`] to it fails with [`SendError::UnknownPeer`]
//! and its frames are not delivered (except one its reader may be handing over at that very
//! moment). Its threads are woken and finish on their own; `remove_peer` does not wait for
//! them, and they end at once, except one in a TCP connect, which ends within
//! [`TransportOptions::connect_timeout`]. A peer added again starts afresh, and one added
//! with a new address is replaced: its connection is closed, and the dialer (whichever side
//! that is) connects again.
//!
//! # Threads and memory
//!
//! One accept thread; one thread per peer that dials (if this id is the lower) and then writes
//! everything queued for the peer through a buffer, flushing when the queue is empty, so that
//! a single frame goes out at once and a burst in few system calls; one reader thread per live
//! connection, which is also the thread that ran the acceptor's side of the handshake; and at
//! most `max_unauthenticated` handshake threads. A connection's threads hold at most one
//! frame of `max_frame_bytes` being read, and each peer's queue at most
//! [`TransportOptions::queue_frames`] frames and [`TransportOptions::queue_bytes`] bytes,
//! counting the batch its writer is writing. Frames queued for a connection that dies are
//! dropped.
//!
//! [`Transport::shutdown`] (or dropping the transport) closes every socket, which wakes the
//! blocked readers and writers, interrupts backoff waits, and joins every thread, those of
//! peers added later and of peers removed included. The only
//! wait it cannot cut short is a TCP connect in progress, which ends within
//! [`TransportOptions::connect_timeout`] (at once against a host that is up and refuses).

mod accept;
mod backoff;
mod frame;
mod handshake;
mod options;
mod peer;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft_core::NodeId;

use peer::Peer;

pub use options::TransportOptions;

/// Why a [`Transport`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The listening address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address given.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The options or the peer list are invalid; the message says which and why.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// A thread could not be spawned (the process is out of threads or memory).
    #[error("cannot start a transport thread")]
    Spawn(#[source] io::Error),
}

/// Why [`Transport::send`] did not queue a frame. In every case the frame is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The destination is not a peer now: never added, or removed.
    #[error("not a peer of this transport")]
    UnknownPeer,
    /// There is no live connection to the peer (it is down, or not yet connected).
    #[error("peer not connected")]
    NotConnected,
    /// The peer's send queue is at its bound (it reads slower than this node sends).
    #[error("send queue to the peer is full")]
    QueueFull,
    /// The frame is empty or longer than [`TransportOptions::max_frame_bytes`]: the wire
    /// cannot carry it.
    #[error("frame is empty or larger than max_frame_bytes")]
    TooLarge,
}

/// Counters since the transport started.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct TransportStats {
    /// Frames written to a connection (counted when written to its buffer, so a frame lost
    /// when the connection then fails is counted too).
    pub frames_sent: u64,
    /// Frames received and delivered.
    pub frames_received: u64,
    /// Frames refused by [`Transport::send`] with [`SendError::QueueFull`].
    pub dropped_queue_full: u64,
    /// Frames refused by [`Transport::send`] with [`SendError::NotConnected`].
    pub dropped_not_connected: u64,
    /// Connections refused in the handshake, by either side, or for too many handshakes.
    pub refused: u64,
    /// Connections closed because a frame header announced 0 or too many bytes.
    pub oversized: u64,
    /// Connections authenticated (both directions of the handshake passed).
    pub connects: u64,
    /// Authenticated connections lost: closed by the peer, failed, replaced by a newer one, or
    /// closed because the peer was removed or moved to another address.
    pub disconnects: u64,
}

/// What to do with a received frame, given the peer it came from. Called on the connection's
/// reader thread, one frame after another; it must not block for long (it holds up that peer),
/// and must not call [`Transport::shutdown`].
pub type Deliver = Box<dyn Fn(NodeId, Vec<u8>) + Send + Sync>;

/// The running transport. See the [module docs](self) for the protocol and the threads.
pub struct Transport {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    /// Invariant: `Some` until `stop`. Peer threads and connection threads are in `inner`.
    accept: Option<JoinHandle<()>>,
}

impl Transport {
    /// Binds `listen` and starts the accept thread and one dialer/writer thread per peer.
    /// `peers` are the other members (not this node), each with its address; only the
    /// addresses of higher ids are dialed. It may be empty, and can be changed later (see
    /// [Membership](self#membership)).
    ///
    /// Errors if `listen` cannot be bound, if the options are invalid, or if `id` is 0 or a
    /// peer has id 0, this node's id, or is listed twice.
    pub fn start(
        id: NodeId,
        cluster_id: u64,
        listen: SocketAddr,
        peers: &[(NodeId, SocketAddr)],
        options: TransportOptions,
        deliver: Deliver,
    ) -> Result<Transport, TransportError> {
        check_members(id, peers)?;
        options.check().map_err(TransportError::Config)?;
        let listener = TcpListener::bind(listen).map_err(|source| TransportError::Bind {
            addr: listen,
            source,
        })?;
        Self::start_inner(id, cluster_id, listener, listen, peers, options, deliver)
    }

    /// Like [`Transport::start`], on a listener the caller has already bound (so that a test
    /// or a supervisor can pick the port first, or hand over an inherited socket). The
    /// listener is switched to blocking mode.
    pub fn start_with_listener(
        id: NodeId,
        cluster_id: u64,
        listener: TcpListener,
        peers: &[(NodeId, SocketAddr)],
        options: TransportOptions,
        deliver: Deliver,
    ) -> Result<Transport, TransportError> {
        check_members(id, peers)?;
        options.check().map_err(TransportError::Config)?;
        let unknown = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        let addr = listener.local_addr().unwrap_or(unknown);
        Self::start_inner(id, cluster_id, listener, addr, peers, options, deliver)
    }

    fn start_inner(
        id: NodeId,
        cluster_id: u64,
        listener: TcpListener,
        listen: SocketAddr,
        peers: &[(NodeId, SocketAddr)],
        options: TransportOptions,
        deliver: Deliver,
    ) -> Result<Transport, TransportError> {
        let bind_err = |source| TransportError::Bind {
            addr: listen,
            source,
        };
        let local_addr = listener.local_addr().map_err(bind_err)?;
        listener.set_nonblocking(false).map_err(bind_err)?;
        let inner = Arc::new(Inner {
            id,
            cluster_id,
            peers: Mutex::new(Peers::default()),
            options,
            deliver,
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop_wake: Condvar::new(),
            counters: Counters::default(),
            pending: Mutex::new(Pending::default()),
            conn_threads: Mutex::new(Vec::new()),
        });
        // From here on a failure drops `transport`, which stops whatever was started.
        let mut transport = Transport {
            inner: inner.clone(),
            local_addr,
            accept: None,
        };
        // The peers first: a hello may be waiting in the backlog of a listener bound before,
        // and must find its sender a peer.
        transport.set_peers(peers)?;
        let accept_inner = inner.clone();
        let accept = std::thread::Builder::new()
            .name(format!("tickraft-accept-{id}"))
            .spawn(move || accept::run(&accept_inner, &listener))
            .map_err(TransportError::Spawn)?;
        transport.accept = Some(accept);
        Ok(transport)
    }

    /// Makes `id` a peer at `addr`: from now on frames can be sent to it, and its hello is
    /// accepted; this side dials it if this node's id is the lower. If it is a peer already at
    /// another address, its connection is closed and made again, at the new address if this
    /// side dials. Does nothing if it is a peer at `addr` already.
    ///
    /// Errors, changing nothing, if `id` is 0 or this node's id, or if its thread cannot be
    /// spawned.
    pub fn add_peer(&self, id: NodeId, addr: SocketAddr) -> Result<(), TransportError> {
        check_members(self.inner.id, &[(id, addr)])?;
        lock(&self.inner.peers).add(&self.inner, id, addr)
    }

    /// Makes `id` a stranger: closes its connection, drops its queue, and stops its threads
    /// (without waiting for them: see [Membership](self#membership)). From now on
    /// [`send`](Transport::send) to it fails with [`SendError::UnknownPeer`] and its hello is
    /// refused. Does nothing if it is not a peer.
    pub fn remove_peer(&self, id: NodeId) {
        lock(&self.inner.peers).remove(&self.inner, id);
    }

    /// Adds, removes and moves peers so that they are exactly `peers` (this node not among
    /// them), as [`add_peer`](Transport::add_peer) and [`remove_peer`](Transport::remove_peer)
    /// do. Peers already there at the same address are left alone, so calling it with the
    /// current set only takes a lock and compares: it can follow every membership change.
    ///
    /// Errors, changing nothing, if an id is 0 or this node's, or is listed twice. If a thread
    /// cannot be spawned it returns [`TransportError::Spawn`] and keeps the changes made until
    /// then ([`peers`](Transport::peers) tells which).
    pub fn set_peers(&self, peers: &[(NodeId, SocketAddr)]) -> Result<(), TransportError> {
        check_members(self.inner.id, peers)?;
        let mut table = lock(&self.inner.peers);
        let gone: Vec<NodeId> = table
            .live
            .keys()
            .filter(|id| !peers.iter().any(|(p, _)| p == *id))
            .copied()
            .collect();
        for id in gone {
            table.remove(&self.inner, id);
        }
        for &(id, addr) in peers {
            table.add(&self.inner, id, addr)?;
        }
        Ok(())
    }

    /// The peers now, with their addresses, by id.
    pub fn peers(&self) -> Vec<(NodeId, SocketAddr)> {
        let mut peers: Vec<(NodeId, SocketAddr)> = lock(&self.inner.peers)
            .live
            .values()
            .map(|l| (l.peer.id, l.peer.addr))
            .collect();
        peers.sort_unstable_by_key(|&(id, _)| id);
        peers
    }

    /// Copies `frame` into `to`'s bounded send queue; never blocks on the network.
    ///
    /// Fails, dropping the frame, with [`SendError::NotConnected`] when there is no live
    /// connection to the peer, [`SendError::QueueFull`] when its queue is at its bound,
    /// [`SendError::TooLarge`] for an empty frame or one over `max_frame_bytes`, and
    /// [`SendError::UnknownPeer`]. The caller then tells the Raft core that the peer is
    /// unreachable; Raft retransmits on its own.
    pub fn send(&self, to: NodeId, frame: &[u8]) -> Result<(), SendError> {
        self.send_vec(to, frame.to_vec())
    }

    /// [`send`](Transport::send) of a frame the caller built as a `Vec`, which is queued as it
    /// is: no copy.
    pub fn send_vec(&self, to: NodeId, frame: Vec<u8>) -> Result<(), SendError> {
        // A peer removed after this lookup refuses the frame itself, with the same error.
        match self.inner.peer(to) {
            Some(peer) => peer.enqueue(&self.inner, frame),
            None => Err(SendError::UnknownPeer),
        }
    }

    /// Whether there is an authenticated connection to `peer` now (false for a non-peer).
    pub fn is_connected(&self, peer: NodeId) -> bool {
        self.inner.peer(peer).is_some_and(|p| p.is_connected())
    }

    /// The address the transport listens on (with the port chosen, if port 0 was given).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters so far.
    pub fn stats(&self) -> TransportStats {
        self.inner.counters.snapshot()
    }

    /// Closes every connection and joins every thread. Dropping the transport does the same.
    pub fn shutdown(self) {
        drop(self);
    }

    fn stop(&mut self) {
        let inner = &self.inner;
        {
            // Set under the lock that `Inner::pause` waits with, so no waiter misses it.
            let _g = lock(&inner.stop_lock);
            inner.stopping.store(true, Ordering::SeqCst);
        }
        inner.stop_wake.notify_all();
        // `accept()` cannot be interrupted in std; a connection of our own wakes it, and it
        // sees `stopping`. If even this fails the listener is broken and accept has failed too.
        if self.accept.is_some() {
            let wake = TcpStream::connect_timeout(&wake_addr(self.local_addr), WAKE_TIMEOUT);
            if let Err(e) = wake {
                tracing::debug!(error = %e, "transport: could not wake the accept thread");
            }
        }
        for s in lock(&inner.pending).streams.values() {
            // Errors only mean the socket is closed already.
            let _ = s.shutdown(Shutdown::Both);
        }
        // No peer can be added from here on: `add_peer` needs a `&Transport`, and this runs
        // from `drop`, which holds the only one.
        let peers = std::mem::take(&mut *lock(&inner.peers));
        for l in peers.live.values() {
            l.peer.stop();
        }
        let peer_threads = peers.live.into_values().map(|l| l.thread);
        let threads = self.accept.take().into_iter().chain(peer_threads);
        for t in threads.chain(peers.retired) {
            // A thread that panicked has nothing left to clean up; carry on joining the rest.
            let _ = t.join();
        }
        // Only the threads just joined spawn connection threads, so this list is final.
        let conns = std::mem::take(&mut *lock(&inner.conn_threads));
        for t in conns {
            let _ = t.join();
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("id", &self.inner.id)
            .field("local_addr", &self.local_addr)
            .field("peers", &lock(&self.inner.peers).live.len())
            .finish_non_exhaustive()
    }
}

/// How long `stop` tries to connect to its own listener to wake the accept thread.
const WAKE_TIMEOUT: Duration = Duration::from_millis(500);

fn check_members(id: NodeId, peers: &[(NodeId, SocketAddr)]) -> Result<(), TransportError> {
    let bad = |m: String| Err(TransportError::Config(m));
    if id.is_none() {
        return bad("this node's id is 0, which is reserved".into());
    }
    let mut seen = std::collections::HashSet::new();
    for &(peer, addr) in peers {
        if peer.is_none() {
            return bad(format!("peer at {addr} has id 0, which is reserved"));
        }
        if peer == id {
            return bad(format!("peer {peer} at {addr} is this node"));
        }
        if !seen.insert(peer) {
            return bad(format!("peer {peer} is listed twice"));
        }
    }
    Ok(())
}

/// Where to connect to reach a listener bound to `addr`: the loopback address of the same
/// family if it was bound to the unspecified address.
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// What every thread of one transport shares.
struct Inner {
    id: NodeId,
    cluster_id: u64,
    /// Taken before a peer's `state` lock, never after.
    peers: Mutex<Peers>,
    options: TransportOptions,
    deliver: Deliver,
    /// Set once, by `Transport::stop`, under `stop_lock`.
    stopping: AtomicBool,
    stop_lock: Mutex<()>,
    stop_wake: Condvar,
    counters: Counters,
    pending: Mutex<Pending>,
    /// Handshake and reader threads, joined by `Transport::stop`; finished ones are dropped
    /// whenever one is added, so the list is as long as the live connections.
    conn_threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The peers now, and the threads of those that left.
#[derive(Default)]
struct Peers {
    /// Invariant: never contains this node's id or id 0 (`check_members` runs before every
    /// change).
    live: HashMap<NodeId, Live>,
    /// Threads of removed (or moved) peers, which finish on their own; finished ones are
    /// dropped whenever a peer leaves, so the list holds only those still finishing, and
    /// `Transport::stop` joins them.
    retired: Vec<JoinHandle<()>>,
}

/// A peer and its dialer/writer thread.
struct Live {
    peer: Arc<Peer>,
    thread: JoinHandle<()>,
}

impl Peers {
    /// `Transport::add_peer`, once the id is checked.
    fn add(
        &mut self,
        inner: &Arc<Inner>,
        id: NodeId,
        addr: SocketAddr,
    ) -> Result<(), TransportError> {
        let old_addr = self.live.get(&id).map(|l| l.peer.addr);
        if old_addr == Some(addr) {
            return Ok(());
        }
        // A new address makes a new peer, rather than changing the old one's under its
        // threads: the old one is retired like a removed peer, the new one starts afresh.
        let peer = Arc::new(Peer::new(inner.id, id, addr));
        let (i, p) = (inner.clone(), peer.clone());
        let thread = std::thread::Builder::new()
            .name(format!("tickraft-peer-{}-{id}", inner.id))
            .spawn(move || peer::run(&i, &p))
            .map_err(TransportError::Spawn)?;
        let node = inner.id.0;
        match self.live.insert(id, Live { peer, thread }) {
            Some(old) => {
                let (peer, old_addr) = (id.0, old.peer.addr);
                tracing::info!(node, peer, old = %old_addr, new = %addr, "transport: peer moved");
                self.retire(inner, old, "the peer moved to another address");
            }
            None => tracing::info!(node, peer = id.0, %addr, "transport: peer added"),
        }
        Ok(())
    }

    /// `Transport::remove_peer`.
    fn remove(&mut self, inner: &Inner, id: NodeId) {
        if let Some(old) = self.live.remove(&id) {
            tracing::info!(node = inner.id.0, peer = id.0, "transport: peer removed");
            self.retire(inner, old, "the peer was removed");
        }
    }

    fn retire(&mut self, inner: &Inner, old: Live, why: &str) {
        old.peer.retire(inner, why);
        self.retired.retain(|t| !t.is_finished());
        self.retired.push(old.thread);
    }
}

/// Accepted connections still in their handshake, so that `stop` can close them.
#[derive(Default)]
struct Pending {
    last_slot: u64,
    /// Invariant: at most `max_unauthenticated` entries.
    streams: HashMap<u64, Arc<TcpStream>>,
}

impl Inner {
    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The peer `id`, if it is one now.
    fn peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        lock(&self.peers).live.get(&id).map(|l| l.peer.clone())
    }

    /// Waits `d`, or less if the transport stops; returns false if it did.
    fn pause(&self, d: Duration) -> bool {
        let end = deadline_after(d);
        let mut g = lock(&self.stop_lock);
        loop {
            if self.is_stopping() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            g = match self.stop_wake.wait_timeout(g, end - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Spawns a handshake or reader thread that `stop` will join.
    fn spawn_conn_thread<F>(&self, name: String, f: F) -> io::Result<()>
    where
        F: FnOnce() + Send + 'static,
    {
        let t = std::thread::Builder::new().name(name).spawn(f)?;
        let mut threads = lock(&self.conn_threads);
        threads.retain(|t| !t.is_finished());
        threads.push(t);
        Ok(())
    }

    fn refuse(&self, remote: SocketAddr, reason: &dyn fmt::Display) {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        let node = self.id.0;
        tracing::warn!(node, peer_addr = %remote, %reason, "transport: refused connection");
    }
}

#[derive(Default)]
struct Counters {
    frames_sent: AtomicU64,
    frames_received: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_not_connected: AtomicU64,
    refused: AtomicU64,
    oversized: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            frames_sent: get(&self.frames_sent),
            frames_received: get(&self.frames_received),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_not_connected: get(&self.dropped_not_connected),
            refused: get(&self.refused),
            oversized: get(&self.oversized),
            connects: get(&self.connects),
            disconnects: get(&self.disconnects),
        }
    }
}

/// `now + d`, or an hour from now if that overflows (a timeout of centuries is a mistake).
fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(3600)))
        .unwrap_or(now)
}

/// Locks, recovering from poisoning: the transport's locks guard queues and socket handles,
/// which a panicking holder cannot leave in a state worse than a dropped frame. (This is
/// `crate::sync::lock` for std's mutex; that module switches to loom's types under `cfg(loom)`,
/// which the transport, with its real sockets, must not use.)
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `Condvar::wait`, recovering from poisoning as [`lock`] does.
fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|p| p.into_inner())
}

/// Socket options of every member connection: no Nagle delay (frames are flushed in batches
/// already), and a bound on how long a vanished peer (power loss, a cut cable: no reset ever
/// arrives) looks connected. Keepalive probes an idle connection after 5 s; `TCP_USER_TIMEOUT`
/// fails a connection whose sent data stays unacknowledged for 10 s, which keepalive alone does
/// not do while frames keep being sent. The connection then closes and the dialer redials.
pub(super) fn tune(stream: &std::net::TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(5))
        .with_interval(std::time::Duration::from_secs(1))
        .with_retries(5);
    sock.set_tcp_keepalive(&keepalive)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    sock.set_tcp_user_timeout(Some(std::time::Duration::from_secs(10)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    #[test]
    fn member_lists_are_checked() {
        assert!(check_members(NodeId(1), &[(NodeId(2), addr(1)), (NodeId(3), addr(2))]).is_ok());
        assert!(check_members(NodeId(0), &[]).is_err());
        assert!(check_members(NodeId(1), &[(NodeId(0), addr(1))]).is_err());
        assert!(check_members(NodeId(1), &[(NodeId(1), addr(1))]).is_err());
        assert!(check_members(NodeId(1), &[(NodeId(2), addr(1)), (NodeId(2), addr(2))]).is_err());
    }

    #[test]
    fn wake_address_of_an_unspecified_bind_is_loopback() {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 7000);
        assert_eq!(wake_addr(any), addr(7000));
        let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 7000);
        assert_eq!(wake_addr(any6).ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(wake_addr(addr(9)), addr(9));
    }

    /// Polls `cond` until it holds, for at most 10 s.
    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Redials wait a minute: only a removal can end a peer thread's wait in time.
    fn slow_redial(id: u64, peers: &[(NodeId, SocketAddr)]) -> Transport {
        let o = TransportOptions {
            backoff_min: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60),
            ..TransportOptions::default()
        };
        let deliver: Deliver = Box::new(|_, _| {});
        Transport::start(NodeId(id), 7, addr(0), peers, o, deliver).expect("start")
    }

    /// Whether every thread of a peer that left, and every connection thread, has finished.
    fn left_no_threads(t: &Transport) -> bool {
        let retired_done = lock(&t.inner.peers).retired.iter().all(|t| t.is_finished());
        retired_done && lock(&t.inner.conn_threads).iter().all(|t| t.is_finished())
    }

    #[test]
    fn threads_of_removed_peers_finish_before_shutdown() {
        // Node 5 waits for node 3 to dial it, and backs off from node 7, which is down.
        let down = {
            let l = std::net::TcpListener::bind(addr(0)).expect("bind");
            l.local_addr().expect("addr")
        };
        let t = slow_redial(5, &[(NodeId(3), down), (NodeId(7), down)]);
        std::thread::sleep(Duration::from_millis(50));
        t.remove_peer(NodeId(3));
        t.remove_peer(NodeId(7));
        assert!(lock(&t.inner.peers).live.is_empty());
        eventually("the removed peers' threads to finish", || {
            left_no_threads(&t)
        });

        // Connected peers: the writers and the readers on both sides.
        let t1 = slow_redial(1, &[]);
        let t2 = slow_redial(2, &[(NodeId(1), t1.local_addr())]);
        t1.add_peer(NodeId(2), t2.local_addr()).expect("add");
        eventually("connected", || {
            t1.is_connected(NodeId(2)) && t2.is_connected(NodeId(1))
        });
        // Connected before the dialer's reader is spawned, so wait for it too.
        eventually("the readers to run", || {
            !left_no_threads(&t1) && !left_no_threads(&t2)
        });
        t1.remove_peer(NodeId(2));
        t2.remove_peer(NodeId(1));
        eventually("node 1's threads to finish", || left_no_threads(&t1));
        eventually("node 2's threads to finish", || left_no_threads(&t2));
    }

    #[test]
    fn member_sockets_bound_how_long_a_vanished_peer_looks_connected() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let s = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        super::tune(&s).expect("tune");
        let sock = socket2::SockRef::from(&s);
        assert!(s.nodelay().expect("nodelay"));
        assert!(sock.keepalive().expect("keepalive"));
        #[cfg(target_os = "linux")]
        assert_eq!(
            sock.tcp_user_timeout().expect("user timeout"),
            Some(std::time::Duration::from_secs(10))
        );
    }
}
