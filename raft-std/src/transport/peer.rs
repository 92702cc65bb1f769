//! One peer: its send queue, its connection, the thread that dials (lower id only) and writes,
//! and the reader loop of its connection.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufReader, BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use raft_core::NodeId;

use super::backoff::Backoff;
use super::frame::{self, FrameError};
use super::handshake::{self, Hello, Refusal};
use super::{deadline_after, lock, wait, Inner, SendError};

/// User-space buffers of each connection: big enough that a burst of small frames is one
/// system call, small enough not to matter per peer.
const WRITE_BUFFER: usize = 64 << 10;
const READ_BUFFER: usize = 64 << 10;

pub(super) struct Peer {
    pub(super) id: NodeId,
    /// Fixed for the life of this value: a new address makes a new `Peer` (see `Peers::add`).
    pub(super) addr: SocketAddr,
    /// Invariant: true iff this node's id is lower than the peer's. Then this side dials it,
    /// and the acceptor never installs a connection for it (a hello from a higher id is
    /// refused); otherwise only the acceptor does.
    dials: bool,
    /// Set once, by `retire`, under the `state` lock (so that no waiter on `wake` misses it):
    /// the peer left the transport, and its threads finish as if the transport were stopping.
    removed: AtomicBool,
    state: Mutex<State>,
    /// Wakes the peer's thread: a frame queued into an empty queue, a connection installed or
    /// closed, the transport stopping.
    wake: Condvar,
}

struct State {
    queue: VecDeque<Vec<u8>>,
    /// Payload bytes in `queue`.
    queued_bytes: usize,
    /// The batch the writer took from `queue` and is writing, still counted against the
    /// bounds so that a stalled writer cannot double the memory held.
    in_flight_frames: usize,
    in_flight_bytes: usize,
    /// Invariant: `queue` is empty whenever `conn` is `None` (frames for a dead connection
    /// are dropped, and `enqueue` refuses while there is none).
    conn: Option<Conn>,
    /// Generations of `conn`, so that a reader or writer of a replaced connection cannot
    /// close its successor.
    last_generation: u64,
    /// The socket of a handshake in progress on the dialing side, so that `stop` can close it.
    dialing: Option<Arc<TcpStream>>,
}

/// One authenticated connection.
#[derive(Clone)]
pub(super) struct Conn {
    stream: Arc<TcpStream>,
    remote: SocketAddr,
    generation: u64,
}

impl Peer {
    pub(super) fn new(me: NodeId, id: NodeId, addr: SocketAddr) -> Peer {
        Peer {
            id,
            addr,
            dials: me < id,
            removed: AtomicBool::new(false),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                in_flight_frames: 0,
                in_flight_bytes: 0,
                conn: None,
                last_generation: 0,
                dialing: None,
            }),
            wake: Condvar::new(),
        }
    }

    pub(super) fn is_connected(&self) -> bool {
        lock(&self.state).conn.is_some()
    }

    /// Whether the peer's threads are to finish: the transport is stopping, or the peer was
    /// removed from it.
    fn is_done(&self, inner: &Inner) -> bool {
        inner.is_stopping() || self.removed.load(Ordering::SeqCst)
    }

    /// `Transport::send` for this peer.
    pub(super) fn enqueue(&self, inner: &Inner, frame: Vec<u8>) -> Result<(), SendError> {
        let o = &inner.options;
        let len = frame.len();
        if len == 0 || len > o.max_frame_bytes {
            return Err(SendError::TooLarge);
        }
        let mut st = lock(&self.state);
        // Checked under the lock `retire` sets it with, so nothing is queued after it ran.
        if self.removed.load(Ordering::SeqCst) {
            return Err(SendError::UnknownPeer);
        }
        if st.conn.is_none() {
            drop(st);
            inner
                .counters
                .dropped_not_connected
                .fetch_add(1, Ordering::Relaxed);
            return Err(SendError::NotConnected);
        }
        let frames = st.queue.len() + st.in_flight_frames;
        let bytes = st.queued_bytes.saturating_add(st.in_flight_bytes);
        if frames >= o.queue_frames || bytes.saturating_add(len) > o.queue_bytes {
            drop(st);
            inner
                .counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return Err(SendError::QueueFull);
        }
        let was_empty = st.queue.is_empty();
        st.queue.push_back(frame);
        st.queued_bytes += len;
        drop(st);
        // The writer only sleeps on an empty queue, and checks it under the lock first.
        if was_empty {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Makes `stream` (authenticated) the peer's connection, closing any older one. Returns
    /// `None`, closing `stream`, if the transport is stopping or the peer was removed.
    pub(super) fn install(
        &self,
        inner: &Inner,
        stream: Arc<TcpStream>,
        remote: SocketAddr,
    ) -> Option<Conn> {
        let mut st = lock(&self.state);
        if self.is_done(inner) {
            let _ = stream.shutdown(Shutdown::Both);
            return None;
        }
        let old = st.conn.take();
        let dropped = std::mem::take(&mut st.queue);
        st.queued_bytes = 0;
        st.in_flight_frames = 0;
        st.in_flight_bytes = 0;
        st.last_generation += 1;
        let conn = Conn {
            stream,
            remote,
            generation: st.last_generation,
        };
        st.conn = Some(conn.clone());
        // Counted under the lock, as in `close`.
        if old.is_some() {
            inner.counters.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        inner.counters.connects.fetch_add(1, Ordering::Relaxed);
        drop(st);
        drop(dropped);
        self.wake.notify_all();
        if let Some(old) = old {
            // Its reader and writer wake with an error and find they are no longer current.
            let _ = old.stream.shutdown(Shutdown::Both);
            tracing::info!(
                node = inner.id.0,
                peer = self.id.0,
                old = %old.remote,
                new = %remote,
                "transport: connection replaced by a newer one (peer restarted?)"
            );
        }
        tracing::info!(node = inner.id.0, peer = self.id.0, addr = %remote, "transport: connected");
        Some(conn)
    }

    /// Closes connection `generation` if it is still the current one, dropping what is queued.
    fn close(&self, inner: &Inner, generation: u64, why: &dyn fmt::Display) {
        let mut st = lock(&self.state);
        let conn = match st.conn.take() {
            Some(c) if c.generation == generation => c,
            other => {
                st.conn = other;
                return;
            }
        };
        let dropped = std::mem::take(&mut st.queue);
        st.queued_bytes = 0;
        st.in_flight_frames = 0;
        st.in_flight_bytes = 0;
        let counted = !inner.is_stopping();
        if counted {
            // Under the lock, so that whoever sees the peer disconnected sees it counted.
            inner.counters.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        drop(st);
        drop(dropped);
        let _ = conn.stream.shutdown(Shutdown::Both);
        self.wake.notify_all();
        if counted {
            tracing::info!(
                node = inner.id.0,
                peer = self.id.0,
                addr = %conn.remote,
                reason = %why,
                "transport: disconnected"
            );
        }
    }

    /// Called when the peer leaves the transport (removed, or replaced by one at a new
    /// address): refuses further sends, closes its connection (a disconnect, counted), drops
    /// its queue, and wakes its threads so that they finish. Does not wait for them.
    pub(super) fn retire(&self, inner: &Inner, why: &str) {
        let mut st = lock(&self.state);
        self.removed.store(true, Ordering::SeqCst);
        let conn = st.conn.take();
        let dialing = st.dialing.clone();
        let dropped = std::mem::take(&mut st.queue);
        st.queued_bytes = 0;
        st.in_flight_frames = 0;
        st.in_flight_bytes = 0;
        let counted = conn.is_some() && !inner.is_stopping();
        if counted {
            // Under the lock, as in `close`.
            inner.counters.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        drop(st);
        drop(dropped);
        // Its reader and writer wake with an error, or find the connection gone, and finish;
        // a dial in its handshake fails.
        if let Some(c) = &conn {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        if let Some(s) = &dialing {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.wake.notify_all();
        if let Some(conn) = conn.filter(|_| counted) {
            tracing::info!(
                node = inner.id.0,
                peer = self.id.0,
                addr = %conn.remote,
                reason = why,
                "transport: disconnected"
            );
        }
    }

    /// Called by `Transport::stop` after it set `stopping`: closes the sockets the peer's
    /// threads may be blocked on and wakes the peer thread.
    pub(super) fn stop(&self) {
        let st = lock(&self.state);
        if let Some(c) = &st.conn {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        if let Some(s) = &st.dialing {
            let _ = s.shutdown(Shutdown::Both);
        }
        drop(st);
        self.wake.notify_all();
    }

    /// Waits `d` or until the transport stops or the peer is removed; returns false if so.
    fn pause(&self, inner: &Inner, d: std::time::Duration) -> bool {
        let end = deadline_after(d);
        let mut st = lock(&self.state);
        loop {
            if self.is_done(inner) {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= end {
                return true;
            }
            st = match self.wake.wait_timeout(st, end - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// On the accepting side: waits for the acceptor to install a connection.
    fn wait_for_conn(&self, inner: &Inner) -> Option<Conn> {
        let mut st = lock(&self.state);
        loop {
            if self.is_done(inner) {
                return None;
            }
            if let Some(c) = &st.conn {
                return Some(c.clone());
            }
            st = wait(&self.wake, st);
        }
    }

    /// Dials the peer and runs the dialer's side of the handshake. `Ok(None)`: stopping, or
    /// the peer was removed.
    fn dial(&self, inner: &Inner) -> Result<Option<Conn>, DialError> {
        let o = &inner.options;
        let stream = TcpStream::connect_timeout(&self.addr, o.connect_timeout)
            .map_err(DialError::Connect)?;
        super::tune(&stream).map_err(DialError::Connect)?;
        let stream = Arc::new(stream);
        {
            let mut st = lock(&self.state);
            if self.is_done(inner) {
                return Ok(None);
            }
            st.dialing = Some(stream.clone());
        }
        let shaken = self.handshake(inner, &stream);
        lock(&self.state).dialing = None;
        shaken.map_err(DialError::Handshake)?;
        Ok(self.install(inner, stream, self.addr))
    }

    fn handshake(&self, inner: &Inner, stream: &TcpStream) -> Result<(), Refusal> {
        let deadline = deadline_after(inner.options.handshake_timeout);
        let hello = Hello::new(inner.cluster_id, inner.id, self.id);
        handshake::write_hello(stream, &hello, deadline)?;
        let answer = handshake::read_hello(stream, deadline)?;
        answer.check_answer(inner.cluster_id, inner.id, self.id)?;
        stream.set_read_timeout(None).map_err(Refusal::Io)?;
        stream.set_write_timeout(None).map_err(Refusal::Io)
    }

    /// Writes whatever is queued until the connection is closed or replaced, or the transport
    /// stops, or the peer is removed.
    fn write_loop(&self, inner: &Inner, conn: &Conn) {
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, &*conn.stream);
        let result = self.drain(inner, conn.generation, &mut out);
        // Drop unflushed bytes without writing them: the connection is gone, and a flush on
        // drop could block on a peer that stopped reading.
        let _ = out.into_parts();
        if let Err(e) = result {
            self.close(inner, conn.generation, &e);
        }
    }

    fn drain<W: Write>(&self, inner: &Inner, generation: u64, out: &mut W) -> io::Result<()> {
        let mut batch = VecDeque::new();
        let mut unflushed = false;
        loop {
            {
                let mut st = lock(&self.state);
                // The previous batch is written: it no longer counts against the bounds.
                st.in_flight_frames = 0;
                st.in_flight_bytes = 0;
                loop {
                    let current = st.conn.as_ref().map(|c| c.generation) == Some(generation);
                    if self.is_done(inner) || !current {
                        return Ok(());
                    }
                    if !st.queue.is_empty() {
                        // Swap rather than pop, so both buffers are reused and the lock is held
                        // for no longer than two pointer swaps.
                        std::mem::swap(&mut st.queue, &mut batch);
                        st.in_flight_frames = batch.len();
                        st.in_flight_bytes = st.queued_bytes;
                        st.queued_bytes = 0;
                        break;
                    }
                    if unflushed {
                        break;
                    }
                    st = wait(&self.wake, st);
                }
            }
            if batch.is_empty() {
                // Everything queued is in the buffer: send it now, never later.
                out.flush()?;
                unflushed = false;
                continue;
            }
            let n = batch.len() as u64;
            for f in batch.drain(..) {
                frame::write_frame(out, &f)?;
            }
            inner.counters.frames_sent.fetch_add(n, Ordering::Relaxed);
            unflushed = true;
        }
    }
}

#[derive(Debug)]
enum DialError {
    Connect(io::Error),
    Handshake(Refusal),
}

/// The peer's thread: on the dialing side dials, and redials with backoff; on both sides
/// writes the current connection's queue. Returns when the transport stops or the peer is
/// removed.
pub(super) fn run(inner: &Arc<Inner>, peer: &Arc<Peer>) {
    let o = &inner.options;
    let mut backoff = Backoff::new(o.backoff_min, o.backoff_max);
    loop {
        if peer.is_done(inner) {
            return;
        }
        let conn = if peer.dials {
            match peer.dial(inner) {
                Ok(Some(conn)) => {
                    backoff.reset();
                    conn
                }
                Ok(None) => return,
                Err(e) => {
                    if !peer.is_done(inner) {
                        report_dial_failure(inner, peer, &e, backoff.failures() == 0);
                    }
                    if !peer.pause(inner, backoff.next_delay()) {
                        return;
                    }
                    continue;
                }
            }
        } else {
            match peer.wait_for_conn(inner) {
                Some(conn) => conn,
                None => return,
            }
        };
        if peer.dials && !start_reader(inner, peer, &conn) {
            peer.close(inner, conn.generation, &"could not start its reader thread");
        }
        peer.write_loop(inner, &conn);
        if peer.dials && !peer.pause(inner, backoff.next_delay()) {
            return;
        }
    }
}

fn report_dial_failure(inner: &Inner, peer: &Peer, e: &DialError, first: bool) {
    let (node, to, addr) = (inner.id.0, peer.id.0, peer.addr);
    match e {
        DialError::Connect(error) if first => {
            tracing::info!(node, peer = to, %addr, %error, "transport: cannot connect, retrying");
        }
        DialError::Connect(error) => {
            tracing::debug!(node, peer = to, %addr, %error, "transport: cannot connect");
        }
        // The acceptor hung up or the socket failed: it may have refused us (another cluster,
        // another membership). Said once per outage, then quietly.
        DialError::Handshake(reason @ (Refusal::Closed | Refusal::Io(_))) if first => {
            tracing::warn!(
                node,
                peer = to,
                %addr,
                %reason,
                "transport: handshake failed, retrying"
            );
        }
        DialError::Handshake(reason @ (Refusal::Closed | Refusal::Io(_))) => {
            tracing::debug!(node, peer = to, %addr, %reason, "transport: handshake failed");
        }
        // A wrong or missing answer: this side refuses.
        DialError::Handshake(reason) => inner.refuse(addr, reason),
    }
}

/// Starts the reader of a connection this side dialed; returns false if it could not.
fn start_reader(inner: &Arc<Inner>, peer: &Arc<Peer>, conn: &Conn) -> bool {
    let (i, p, c) = (inner.clone(), peer.clone(), conn.clone());
    let name = format!("tickraft-read-{}-{}", inner.id, peer.id);
    match inner.spawn_conn_thread(name, move || read_loop(&i, &p, c)) {
        Ok(()) => true,
        Err(e) => {
            let (node, peer) = (inner.id.0, peer.id.0);
            tracing::warn!(node, peer, error = %e, "transport: cannot spawn a reader");
            false
        }
    }
}

/// Delivers every frame of `conn` until it fails or closes, or the peer is removed, then closes
/// it (also if `deliver` panics, so that a dead reader never leaves a connection that looks
/// alive).
pub(super) fn read_loop(inner: &Inner, peer: &Peer, conn: Conn) {
    struct CloseOnExit<'a> {
        inner: &'a Inner,
        peer: &'a Peer,
        generation: u64,
        why: Option<FrameError>,
    }
    impl Drop for CloseOnExit<'_> {
        fn drop(&mut self) {
            match &self.why {
                Some(why) => self.peer.close(self.inner, self.generation, why),
                None => self
                    .peer
                    .close(self.inner, self.generation, &"the reader stopped"),
            }
        }
    }
    let mut guard = CloseOnExit {
        inner,
        peer,
        generation: conn.generation,
        why: None,
    };
    let mut input = BufReader::with_capacity(READ_BUFFER, &*conn.stream);
    loop {
        match frame::read_frame(&mut input, inner.options.max_frame_bytes) {
            // Frames still in the read buffer when the peer was removed (or the transport
            // stopped) are not delivered.
            Ok(_) if peer.is_done(inner) => return,
            Ok(payload) => {
                inner
                    .counters
                    .frames_received
                    .fetch_add(1, Ordering::Relaxed);
                (inner.deliver)(peer.id, payload);
            }
            Err(e) => {
                if matches!(e, FrameError::Empty | FrameError::TooLarge { .. }) {
                    inner.counters.oversized.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        node = inner.id.0,
                        peer = peer.id.0,
                        peer_addr = %conn.remote,
                        reason = %e,
                        "transport: bad frame length, closing the connection"
                    );
                }
                guard.why = Some(e);
                return;
            }
        }
    }
}
