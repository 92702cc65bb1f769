//! The node thread: the event loop of raft-core's crate docs, with a real log, real sockets and
//! real clients.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft_core::{Config, EntryKind, Index, NodeId, ProposeError, ReadError, Role, Term};

use super::frame::{self, Frame, Outcome};
use super::{identity, Metrics, NodeConfig, NodeStatus, RequestError, StartError};
use crate::state_machine::StateMachine;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sync::{Inbox, Refused, Slot, Taken};
use crate::transport::{SendError, Transport};
use crate::wal::{SyncHandle, Wal, WalError};

/// The protocol core as this crate runs it: up to 9 members, 64 appends in flight per follower,
/// and buffers sized for group commits of thousands of commands.
pub(crate) type CoreNode =
    raft_core::Node<Wal, 9, 64, 4096, { 2 * 1024 * 1024 }, { 4 * 1024 * 1024 }, 1024>;

/// The largest single append the leader builds; a larger entry goes alone.
const MAX_APPEND_BYTES: usize = 256 * 1024;
/// Peer frames queued for the node thread before more are dropped (Raft retransmits), in
/// count and in bytes.
const MAX_QUEUED_MESSAGES: usize = 65536;
const MAX_QUEUED_MESSAGE_BYTES: usize = 64 << 20;

type Answer = Result<Vec<u8>, RequestError>;
type AnswerSlot = crate::sync::Arc<Slot<Answer>>;

/// The node's end of a request's slot. Every request is answered exactly once: explicitly, or
/// with `Shutdown` when its responder is dropped unanswered (the node stopping, or its thread
/// panicking), so that no waiter, blocking or async, is left hanging.
pub(crate) struct Responder(AnswerSlot);

impl Responder {
    fn fill(&self, answer: Answer) -> bool {
        self.0.fill(answer)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.0.fill(Err(RequestError::Shutdown));
    }
}

/// Locks the published state, recovering from poisoning (it is plain data, rewritten whole).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) enum Request {
    Propose {
        command: Vec<u8>,
        slot: Responder,
        deadline: Instant,
    },
    Read {
        query: Vec<u8>,
        slot: Responder,
        deadline: Instant,
    },
}

pub(crate) enum Incoming {
    /// A frame from a peer.
    Frame { from: NodeId, frame: Vec<u8> },
    /// The sync thread reported (in `Shared::durable`); this only wakes the node thread.
    Synced,
}

/// What the node thread and every handle share.
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) raft_addr: SocketAddr,
    inbox: Inbox<Request, Incoming>,
    published: Mutex<(NodeStatus, Metrics)>,
    max_command_bytes: usize,
    request_timeout: Duration,
    inbox_dropped: std::sync::atomic::AtomicU64,
    /// What the sync thread made durable last (or why it failed), for the node thread.
    durable: Mutex<Option<Result<(Index, Term), String>>>,
    /// The sync thread's `fdatasync`s: count, total and longest, in microseconds.
    syncs: [std::sync::atomic::AtomicU64; 3],
}

/// A request on its way: wait for it, or await it.
pub(crate) struct Pending {
    slot: AnswerSlot,
    /// The node answers every request by its deadline; this margin only guards a waiter
    /// against a node thread that died.
    give_up: Instant,
}

impl Pending {
    pub(crate) fn wait(self) -> Answer {
        self.slot
            .wait(Some(self.give_up))
            .unwrap_or(Err(RequestError::Timeout))
    }
}

impl Future for Pending {
    type Output = Answer;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        self.slot
            .poll_take(cx)
            .map(|v| v.unwrap_or(Err(RequestError::Shutdown)))
    }
}

impl Shared {
    fn submit(
        &self,
        make: impl FnOnce(Responder, Instant) -> Request,
    ) -> Result<Pending, RequestError> {
        let slot = Slot::new();
        let now = Instant::now();
        let deadline = now + self.request_timeout;
        let request = make(Responder(slot.clone()), deadline);
        match self.inbox.push_request(request) {
            Ok(()) => Ok(Pending {
                slot,
                give_up: deadline + Duration::from_secs(5),
            }),
            Err(Refused::Full(_)) => Err(RequestError::Busy),
            Err(Refused::Shutdown(_)) => Err(RequestError::Shutdown),
        }
    }

    pub(crate) fn propose(&self, command: &[u8]) -> Result<Pending, RequestError> {
        if command.len() > self.max_command_bytes {
            return Err(RequestError::TooLarge {
                len: command.len(),
                max: self.max_command_bytes,
            });
        }
        self.submit(|slot, deadline| Request::Propose {
            command: command.to_vec(),
            slot,
            deadline,
        })
    }

    pub(crate) fn read(&self, query: &[u8]) -> Result<Pending, RequestError> {
        self.submit(|slot, deadline| Request::Read {
            query: query.to_vec(),
            slot,
            deadline,
        })
    }

    pub(crate) fn status(&self) -> NodeStatus {
        lock(&self.published).0.clone()
    }

    pub(crate) fn metrics(&self) -> Metrics {
        lock(&self.published).1
    }

    pub(crate) fn shutdown(&self) {
        self.inbox.shutdown();
    }
}

/// Validates the configuration, recovers the log, binds the transport and spawns the thread.
pub(crate) fn start<M: StateMachine>(
    config: NodeConfig,
    sm: M,
) -> Result<(Arc<Shared>, JoinHandle<()>), StartError> {
    let members = check_config(&config)?;
    let own_addr = config
        .members
        .iter()
        .find(|(id, _)| *id == config.id)
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            StartError::Config(format!("node {} is not in the member list", config.id.0))
        })?;

    identity::check_or_create(&config.data_dir, config.cluster_id, config.id)?;
    let dir_lock = identity::lock(&config.data_dir)?;
    let (wal, recovery) = Wal::open(&config.data_dir.join("wal"), config.wal.clone())?;
    tracing::info!(
        id = config.id.0,
        entries = recovery.entries,
        segments = recovery.segments,
        term = recovery.hard_state.term.0,
        commit = recovery.hard_state.commit.0,
        "recovered the log"
    );

    let shared = Arc::new(Shared {
        id: config.id,
        raft_addr: own_addr,
        inbox: Inbox::new(
            config.max_queued_requests,
            MAX_QUEUED_MESSAGES,
            MAX_QUEUED_MESSAGE_BYTES,
        ),
        published: Mutex::new((
            NodeStatus {
                id: config.id,
                role: Role::Follower,
                term: recovery.hard_state.term,
                leader: None,
                commit_index: recovery.hard_state.commit,
                applied_index: Index(0),
                last_index: raft_core::Storage::last_index(&wal),
                members: members.clone(),
            },
            Metrics::default(),
        )),
        max_command_bytes: config.max_command_bytes,
        request_timeout: config.request_timeout,
        inbox_dropped: std::sync::atomic::AtomicU64::new(0),
        durable: Mutex::new(None),
        syncs: Default::default(),
    });

    let peers: Vec<(NodeId, SocketAddr)> = config
        .members
        .iter()
        .copied()
        .filter(|(id, _)| *id != config.id)
        .collect();
    let weak = Arc::downgrade(&shared);
    let transport = Transport::start(
        config.id,
        config.cluster_id,
        own_addr,
        &peers,
        config.transport.clone(),
        Box::new(move |from, frame| {
            if let Some(shared) = weak.upgrade() {
                let bytes = frame.len();
                if !shared
                    .inbox
                    .push_message(Incoming::Frame { from, frame }, bytes)
                {
                    shared
                        .inbox_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }),
    )?;

    let thread_shared = shared.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    // The core's buffers live inline in the node (no heap in raft-core), so the thread that
    // owns it gets a stack with room for it.
    let stack = 16 * std::mem::size_of::<CoreNode>() + (8 << 20);
    let thread = std::thread::Builder::new()
        .name(format!("tickraft-node-{}", config.id.0))
        .stack_size(stack)
        .spawn(move || {
            // Held until the node thread ends: the directory is this node's while it runs.
            let _dir_lock = dir_lock;
            run(config, members, wal, transport, sm, thread_shared, tx)
        })
        .map_err(StartError::Thread)?;
    // The core is built on the node thread (it lives on that thread's stack); wait for it.
    match rx.recv() {
        Ok(Ok(())) => Ok((shared, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(StartError::Config(
                "the node thread died while starting".into(),
            ))
        }
    }
}

fn check_config(c: &NodeConfig) -> Result<Vec<NodeId>, StartError> {
    let bad = |m: String| Err(StartError::Config(m));
    if c.id.0 == 0 {
        return bad("node id 0 is reserved".into());
    }
    if c.members.is_empty() || c.members.len() > 9 {
        return bad(format!("{} members; 1 to 9 are supported", c.members.len()));
    }
    let mut ids: Vec<NodeId> = c.members.iter().map(|(id, _)| *id).collect();
    ids.sort();
    if ids.windows(2).any(|w| w[0] == w[1]) || ids.first() == Some(&NodeId(0)) {
        return bad("member ids must be distinct and not 0".into());
    }
    if c.tick.is_zero() || c.heartbeat_ticks == 0 || c.heartbeat_ticks >= c.election_ticks {
        return bad("need tick > 0 and 0 < heartbeat_ticks < election_ticks".into());
    }
    if c.max_command_bytes > NodeConfig::MAX_COMMAND_BYTES {
        return bad(format!(
            "max_command_bytes {} is above the supported {}",
            c.max_command_bytes,
            NodeConfig::MAX_COMMAND_BYTES
        ));
    }
    if c.request_timeout.is_zero() || c.max_pending_requests == 0 || c.max_queued_requests == 0 {
        return bad("request_timeout and request limits must be above 0".into());
    }
    Ok(ids)
}

/// Whoever waits for a proposal to be applied.
enum Waiter {
    /// A client of this node; the command is kept so it can be proposed again if it is lost.
    Local(Unsent),
    /// A follower that forwarded it.
    Remote {
        peer: NodeId,
        id: u64,
        expires: Instant,
    },
}

struct Proposed {
    term: Term,
    waiter: Waiter,
}

/// A proposal of this node's clients not yet in the leader's log.
struct Unsent {
    command: Vec<u8>,
    slot: Responder,
    deadline: Instant,
}

/// A proposal forwarded to the leader, awaiting its reply.
struct Forwarded {
    unsent: Unsent,
    /// The leader it went to.
    to: NodeId,
}

struct ReadReq {
    query: Vec<u8>,
    slot: Responder,
    deadline: Instant,
    /// The leader confirmed it, so the outcome is "timeout", not "no leader", if it expires.
    reached_leader: bool,
}

struct Driver<M> {
    id: NodeId,
    core: CoreNode,
    sm: M,
    transport: Transport,
    shared: Arc<Shared>,
    tick: Duration,
    request_timeout: Duration,
    max_pending: usize,

    /// This node's proposals (and forwarded ones) in the log, by index.
    proposed: BTreeMap<u64, Proposed>,
    /// Proposals waiting for a leader (or for room in the core).
    unsent: VecDeque<Unsent>,
    /// Proposals forwarded to the leader, by request id.
    forwarded: HashMap<u64, Forwarded>,
    next_forward_id: u64,
    /// Reads handed to the core's ReadIndex, by context.
    reads: HashMap<u64, ReadReq>,
    /// Reads waiting to be handed to the core (no leader yet, or its queue was full).
    reads_unsent: VecDeque<ReadReq>,
    /// Reads confirmed, waiting for the state machine to reach their index.
    reads_confirmed: VecDeque<(Index, ReadReq)>,
    next_read_context: u64,

    applied: Index,
    last_leader: Option<NodeId>,
    last_term: Term,
    metrics: Metrics,
    failed: bool,
    /// The leader's deferred syncs go to the sync thread (see `handle_ready`).
    sync_tx: Option<std::sync::mpsc::Sender<(SyncHandle, Index, Term)>>,
    sync_thread: Option<JoinHandle<()>>,
}

fn run<M: StateMachine>(
    config: NodeConfig,
    members: Vec<NodeId>,
    wal: Wal,
    transport: Transport,
    sm: M,
    shared: Arc<Shared>,
    started: std::sync::mpsc::Sender<Result<(), StartError>>,
) {
    let mut core_config = Config::new(config.id, &members);
    core_config.election_ticks = config.election_ticks;
    core_config.heartbeat_ticks = config.heartbeat_ticks;
    core_config.seed = if config.seed != 0 {
        config.seed
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    };
    core_config.max_entry_bytes = config.max_command_bytes.max(1);
    // One entry of the largest size must fit in one append.
    core_config.max_append_bytes = MAX_APPEND_BYTES.max(
        core_config.max_entry_bytes
            + raft_core::message::MAX_HEADER_LEN
            + raft_core::message::ENTRY_OVERHEAD,
    );
    let core = match CoreNode::new(&core_config, wal) {
        Ok(c) => {
            let _ = started.send(Ok(()));
            c
        }
        Err(e) => {
            shared.inbox.shutdown();
            let _ = started.send(Err(StartError::Config(format!("the core refused it: {e}"))));
            return;
        }
    };
    let mut d = Driver {
        id: config.id,
        core,
        sm,
        transport,
        shared,
        tick: config.tick,
        request_timeout: config.request_timeout,
        max_pending: config.max_pending_requests,
        proposed: BTreeMap::new(),
        unsent: VecDeque::new(),
        forwarded: HashMap::new(),
        next_forward_id: 1,
        reads: HashMap::new(),
        reads_unsent: VecDeque::new(),
        reads_confirmed: VecDeque::new(),
        next_read_context: 1,
        applied: Index(0),
        last_leader: None,
        last_term: Term(0),
        metrics: Metrics::default(),
        failed: false,
        sync_tx: None,
        sync_thread: None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let shared = d.shared.clone();
    match std::thread::Builder::new()
        .name(format!("tickraft-sync-{}", config.id.0))
        .spawn(move || sync_loop(&rx, &shared))
    {
        Ok(t) => {
            d.sync_tx = Some(tx);
            d.sync_thread = Some(t);
        }
        // Without it every sync runs on the node thread, as before: slower, not less safe.
        Err(e) => tracing::warn!(error = %e, "no sync thread; syncing inline"),
    }
    d.event_loop();
}

impl<M: StateMachine> Driver<M> {
    fn pending(&self) -> usize {
        self.proposed.len()
            + self.unsent.len()
            + self.forwarded.len()
            + self.reads.len()
            + self.reads_unsent.len()
            + self.reads_confirmed.len()
    }

    fn event_loop(&mut self) {
        let mut requests = Vec::new();
        let mut messages = Vec::new();
        let mut next_tick = Instant::now() + self.tick;
        loop {
            // While too many requests are pending, leave new ones queued in the inbox (where
            // its bound answers `Busy`) and take only peer messages and ticks, which are what
            // completes pending requests.
            let room = self.pending() < self.max_pending;
            let taken = self
                .shared
                .inbox
                .take(&mut requests, &mut messages, room, Some(next_tick));
            self.take_durable();
            let now = Instant::now();
            if now >= next_tick {
                self.core.tick();
                next_tick += self.tick;
                if next_tick < now {
                    // The thread was starved for several ticks; do not replay them all at once.
                    next_tick = now + self.tick;
                }
                self.expire(now);
            }
            for m in messages.drain(..) {
                self.handle_frame(m);
            }
            for r in requests.drain(..) {
                self.handle_request(r);
            }
            self.observe_leadership();
            self.flush_unsent();
            while self.core.has_ready() && !self.failed {
                self.handle_ready();
            }
            self.publish();
            if taken == Taken::Shutdown || self.failed {
                break;
            }
        }
        self.close(&mut requests);
    }

    fn close(&mut self, requests: &mut Vec<Request>) {
        // Requests that arrived before the shutdown, and everything pending, fail now.
        let mut messages = Vec::new();
        let _ = self
            .shared
            .inbox
            .take(requests, &mut messages, true, Some(Instant::now()));
        for r in requests.drain(..) {
            match r {
                Request::Propose { slot, .. } | Request::Read { slot, .. } => {
                    slot.fill(Err(RequestError::Shutdown));
                }
            }
        }
        for (_, p) in std::mem::take(&mut self.proposed) {
            if let Waiter::Local(u) = p.waiter {
                // Its entry may still commit: the outcome is unknown.
                u.slot.fill(Err(RequestError::Timeout));
            }
        }
        for u in self.unsent.drain(..) {
            u.slot.fill(Err(RequestError::Shutdown));
        }
        for (_, f) in self.forwarded.drain() {
            f.unsent.slot.fill(Err(RequestError::Timeout));
        }
        for r in self
            .reads
            .drain()
            .map(|(_, r)| r)
            .chain(self.reads_unsent.drain(..))
            .chain(self.reads_confirmed.drain(..).map(|(_, r)| r))
        {
            r.slot.fill(Err(RequestError::Shutdown));
        }
        self.sync_tx = None;
        if let Some(t) = self.sync_thread.take() {
            let _ = t.join();
        }
        if let Err(e) = self.core.storage_mut().sync() {
            tracing::error!(id = self.id.0, error = %e, "final log sync failed");
        }
        self.publish();
        tracing::info!(id = self.id.0, "node stopped");
    }

    /// Tells the core what the sync thread made durable since the last look.
    fn take_durable(&mut self) {
        let reported = lock(&self.shared.durable).take();
        match reported {
            Some(Ok((index, term))) => self.core.persisted(index, term),
            Some(Err(e)) => {
                tracing::error!(id = self.id.0, error = %e, "the log sync failed; the node stops");
                self.failed = true;
                self.shared.inbox.shutdown();
            }
            None => {}
        }
    }

    // ----- inputs -----

    fn handle_request(&mut self, r: Request) {
        match r {
            Request::Propose {
                command,
                slot,
                deadline,
            } => self.unsent.push_back(Unsent {
                command,
                slot,
                deadline,
            }),
            Request::Read {
                query,
                slot,
                deadline,
            } => self.reads_unsent.push_back(ReadReq {
                query,
                slot,
                deadline,
                reached_leader: false,
            }),
        }
    }

    fn handle_frame(&mut self, m: Incoming) {
        let Incoming::Frame { from, frame } = m else {
            return; // A wake-up from the sync thread; `take_durable` did the work.
        };
        let frame = match Frame::decode(&frame) {
            Ok(f) => f,
            Err(_) => {
                self.metrics.messages_refused += 1;
                tracing::debug!(id = self.id.0, from = from.0, "refused an unknown frame");
                return;
            }
        };
        match frame {
            Frame::Raft(bytes) => {
                if let Err(e) = self.core.step(bytes) {
                    self.metrics.messages_refused += 1;
                    tracing::debug!(id = self.id.0, from = from.0, error = %e, "refused a message");
                }
            }
            Frame::Forward { id, command } => self.handle_forward(from, id, command),
            Frame::ForwardReply {
                id,
                outcome,
                response,
            } => self.handle_forward_reply(id, outcome, response),
        }
    }

    /// A follower forwarded a proposal: propose it if this node leads, otherwise tell it to
    /// retry (it will find the leader itself).
    fn handle_forward(&mut self, from: NodeId, id: u64, command: &[u8]) {
        if self.pending() >= self.max_pending {
            self.reply(from, id, Outcome::Busy, b"");
            return;
        }
        match self.core.propose(command) {
            Ok(index) => {
                self.metrics.proposals += 1;
                let expires = Instant::now() + 2 * self.request_timeout;
                self.insert_proposed(
                    index,
                    Waiter::Remote {
                        peer: from,
                        id,
                        expires,
                    },
                );
            }
            Err(ProposeError::NotLeader { .. }) => self.reply(from, id, Outcome::Retry, b""),
            Err(ProposeError::TooLarge { .. }) => self.reply(from, id, Outcome::TooLarge, b""),
            Err(_) => self.reply(from, id, Outcome::Busy, b""),
        }
    }

    fn handle_forward_reply(&mut self, id: u64, outcome: Outcome, response: &[u8]) {
        let Some(f) = self.forwarded.remove(&id) else {
            return; // Expired, or a duplicate.
        };
        match outcome {
            Outcome::Applied => {
                f.unsent.slot.fill(Ok(response.to_vec()));
            }
            // Not in the log: safe to send again (to whoever leads by then).
            Outcome::Retry | Outcome::Busy => self.unsent.push_back(f.unsent),
            Outcome::TooLarge => {
                let len = f.unsent.command.len();
                f.unsent
                    .slot
                    .fill(Err(RequestError::TooLarge { len, max: len }));
            }
        }
    }

    /// Records a proposal at `index`. Any of this node's proposals at or after it were
    /// overwritten (a leader appends there only after truncating), so they are lost, not
    /// committed: send them again.
    fn insert_proposed(&mut self, index: Index, waiter: Waiter) {
        for (_, p) in self.proposed.split_off(&index.0) {
            self.lost(p.waiter);
        }
        let term = self.core.term();
        self.proposed.insert(index.0, Proposed { term, waiter });
    }

    fn lost(&mut self, w: Waiter) {
        match w {
            Waiter::Local(u) => self.unsent.push_back(u),
            Waiter::Remote { peer, id, .. } => self.reply(peer, id, Outcome::Retry, b""),
        }
    }

    fn reply(&mut self, peer: NodeId, id: u64, outcome: Outcome, response: &[u8]) {
        if let Err(e) = self
            .transport
            .send_vec(peer, frame::encode_reply(id, outcome, response))
        {
            self.metrics.messages_dropped += 1;
            tracing::debug!(id = self.id.0, peer = peer.0, error = %e, "reply not sent");
        }
    }

    /// Notices a change of leader or term: proposals waiting for a leader can go now, and
    /// reads the old leader never confirmed are asked again.
    fn observe_leadership(&mut self) {
        let leader = self.core.leader();
        let term = self.core.term();
        if leader == self.last_leader && term == self.last_term {
            return;
        }
        if leader != self.last_leader {
            tracing::info!(
                id = self.id.0,
                term = term.0,
                leader = leader.map_or(0, |l| l.0),
                "leader changed"
            );
        }
        // Proposals forwarded to a leader that lost its leadership (or died) will get no
        // answer: say "unknown outcome" now rather than at their deadline, so clients move on
        // to the new leader within an election instead of a request timeout.
        if let Some(old) = self.last_leader.filter(|&old| Some(old) != leader) {
            let stranded: Vec<u64> = self
                .forwarded
                .iter()
                .filter(|(_, f)| f.to == old)
                .map(|(&id, _)| id)
                .collect();
            for id in stranded {
                if let Some(f) = self.forwarded.remove(&id) {
                    self.metrics.timeouts += 1;
                    f.unsent.slot.fill(Err(RequestError::Timeout));
                }
            }
        }
        self.last_leader = leader;
        self.last_term = term;
        // The core drops ReadIndex requests across a change of leadership: ask again.
        let stale: Vec<u64> = self.reads.keys().copied().collect();
        for ctx in stale {
            if let Some(r) = self.reads.remove(&ctx) {
                self.reads_unsent.push_back(r);
            }
        }
    }

    /// Hands waiting proposals and reads to the core (on the leader) or to the leader.
    fn flush_unsent(&mut self) {
        let leader = self.core.leader();
        let is_leader = self.core.role() == Role::Leader;
        let mut keep = VecDeque::new();
        while let Some(u) = self.unsent.pop_front() {
            if is_leader {
                match self.core.propose(&u.command) {
                    Ok(index) => {
                        self.metrics.proposals += 1;
                        self.insert_proposed(index, Waiter::Local(u));
                    }
                    Err(ProposeError::TooLarge { len, max }) => {
                        u.slot.fill(Err(RequestError::TooLarge { len, max }));
                    }
                    // Busy: the unstable log or the uncommitted window is full; keep it for
                    // after the next Ready.
                    Err(_) => keep.push_back(u),
                }
            } else if let Some(leader) = leader {
                let id = self.next_forward_id;
                self.next_forward_id += 1;
                match self
                    .transport
                    .send_vec(leader, frame::encode_forward(id, &u.command))
                {
                    Ok(()) => {
                        self.metrics.forwarded += 1;
                        self.forwarded.insert(
                            id,
                            Forwarded {
                                unsent: u,
                                to: leader,
                            },
                        );
                    }
                    Err(e) => {
                        if matches!(e, SendError::QueueFull | SendError::NotConnected) {
                            self.core.report_unreachable(leader);
                        }
                        keep.push_back(u);
                    }
                }
            } else {
                keep.push_back(u);
            }
        }
        self.unsent = keep;

        if leader.is_some() {
            let mut keep = VecDeque::new();
            while let Some(r) = self.reads_unsent.pop_front() {
                let ctx = self.next_read_context;
                match self.core.read_index(ctx) {
                    Ok(()) => {
                        self.next_read_context += 1;
                        self.reads.insert(ctx, r);
                    }
                    Err(ReadError::NoLeader | ReadError::Busy) => keep.push_back(r),
                    Err(_) => keep.push_back(r),
                }
            }
            self.reads_unsent = keep;
        }
    }

    /// Fails whatever passed its deadline.
    fn expire(&mut self, now: Instant) {
        let mut timeouts = 0;
        let mut fail = |slot: &Responder, e: RequestError| {
            if e == RequestError::Timeout {
                timeouts += 1;
            }
            slot.fill(Err(e));
        };
        self.unsent.retain(|u| {
            let expired = u.deadline <= now;
            if expired {
                fail(&u.slot, RequestError::NoLeader);
            }
            !expired
        });
        self.forwarded.retain(|_, f| {
            let expired = f.unsent.deadline <= now;
            if expired {
                fail(&f.unsent.slot, RequestError::Timeout);
            }
            !expired
        });
        self.proposed.retain(|_, p| match &p.waiter {
            Waiter::Local(u) if u.deadline <= now => {
                fail(&u.slot, RequestError::Timeout);
                false
            }
            Waiter::Remote { expires, .. } => *expires > now,
            Waiter::Local(_) => true,
        });
        self.reads.retain(|_, r| {
            let expired = r.deadline <= now;
            if expired {
                fail(&r.slot, RequestError::Timeout);
            }
            !expired
        });
        self.reads_unsent.retain(|r| {
            let expired = r.deadline <= now;
            if expired {
                let e = if r.reached_leader {
                    RequestError::Timeout
                } else {
                    RequestError::NoLeader
                };
                fail(&r.slot, e);
            }
            !expired
        });
        self.metrics.timeouts += timeouts;
        // Confirmed reads wait only for this node's own apply, which is not bounded by the
        // network; they are served as soon as it catches up.
    }

    // ----- outputs -----

    fn handle_ready(&mut self) {
        let Driver {
            core,
            sm,
            transport,
            proposed,
            reads,
            reads_confirmed,
            metrics,
            applied,
            sync_tx,
            ..
        } = self;
        let mut unreachable: Vec<NodeId> = Vec::new();
        let mut lost: Vec<Waiter> = Vec::new();
        let mut failure: Option<WalError> = None;
        let is_leader = core.role() == Role::Leader;
        let mut deferred = false;
        {
            let rd = core.ready();
            // The leader's own writes may be synced by the sync thread while this thread goes on
            // (raft-core's `advance_unsynced`): nothing in such a Ready promises durability to
            // anyone, and the leader counts its copy only once the sync reports back.
            let last = rd.entries.iter().last().map(|e| (e.index, e.term));
            // A lone entry (one client waiting) is synced here: handing it to the sync thread
            // costs two more thread wake-ups than it overlaps with.
            let defer =
                is_leader && sync_tx.is_some() && rd.can_defer_sync() && rd.entries.len() > 1;
            // 1. The leader's appends and heartbeats go out before its own write.
            for m in rd.messages.iter() {
                send_raft(transport, m.to, m.bytes, metrics, &mut unreachable);
            }
            // 2. Persist hard state and entries: buffered into the log here, synced below.
            if let Some(hs) = rd.hard_state {
                rd.storage.set_hard_state(hs);
            }
            if let Err(e) = rd.storage.append(rd.entries) {
                failure = Some(e);
            }
            if failure.is_none() {
                // 4. Apply, before the sync: committed entries are durable on a quorum
                // already, so answering their clients need not wait for this batch's fsync
                // (under load, the next batch's). The entries of this Ready are in the log's
                // memory by now, so reading them works.
                for entry in rd.committed_entries() {
                    let entry = match entry {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::error!(error = ?e, "a committed entry is unreadable");
                            break;
                        }
                    };
                    *applied = entry.index;
                    let mut response = if entry.kind == EntryKind::Normal {
                        metrics.applied += 1;
                        Some(sm.apply(entry.index, entry.data))
                    } else {
                        None
                    };
                    // Resolve every proposal up to this index: the one at it is ours if the
                    // term matches; earlier ones without an entry of theirs were lost.
                    while let Some(first) = proposed.first_key_value().map(|(&i, _)| i) {
                        if first > entry.index.0 {
                            break;
                        }
                        let Some(p) = proposed.remove(&first) else {
                            break;
                        };
                        if first == entry.index.0 && p.term == entry.term {
                            let response = response.take().unwrap_or_default();
                            match p.waiter {
                                Waiter::Local(u) => {
                                    u.slot.fill(Ok(response));
                                }
                                Waiter::Remote { peer, id, .. } => {
                                    // Answered now, like local clients, not after the sync.
                                    let reply =
                                        frame::encode_reply(id, Outcome::Applied, &response);
                                    if transport.send_vec(peer, reply).is_err() {
                                        metrics.messages_dropped += 1;
                                    }
                                }
                            }
                        } else {
                            lost.push(p.waiter);
                        }
                    }
                }
                for rs in rd.read_states {
                    if let Some(mut r) = reads.remove(&rs.context) {
                        r.reached_leader = true;
                        reads_confirmed.push_back((rs.index, r));
                    }
                }
            }
            if failure.is_none() && defer {
                match rd.storage.write() {
                    Ok(Some(handle)) => {
                        if let (Some(tx), Some((index, term))) = (sync_tx.as_ref(), last) {
                            deferred = tx.send((handle, index, term)).is_ok();
                        }
                    }
                    Ok(None) => {}
                    Err(e) => failure = Some(e),
                }
            }
            // Make step 2 durable: one write and one fdatasync for the whole batch.
            if failure.is_none()
                && !deferred
                && (rd.must_sync() || !rd.persisted_messages.is_empty())
            {
                match rd.storage.sync() {
                    Ok(stats) => {
                        if stats.synced {
                            metrics.fsyncs += 1;
                            let us = stats.duration.as_micros() as u64;
                            metrics.fsync_micros_total += us;
                            metrics.fsync_micros_max = metrics.fsync_micros_max.max(us);
                        }
                        metrics.wal_bytes += stats.bytes;
                    }
                    Err(e) => failure = Some(e),
                }
            }
            if failure.is_none() {
                // 3. Votes and acknowledgements, now that what they promise is durable.
                for m in rd.persisted_messages.iter() {
                    send_raft(transport, m.to, m.bytes, metrics, &mut unreachable);
                }
            }
        }
        if let Some(e) = failure {
            // An I/O error on the log cannot be retried safely (a failed fsync may have
            // dropped the dirty pages): stop rather than acknowledge what may not be durable.
            tracing::error!(id = self.id.0, error = %e, "the log failed; the node stops");
            self.failed = true;
            self.shared.inbox.shutdown();
            return;
        }
        if deferred {
            self.core.advance_unsynced();
        } else {
            self.core.advance();
        }
        for peer in unreachable {
            self.core.report_unreachable(peer);
        }
        for w in lost {
            self.lost(w);
        }
        self.serve_reads();
    }

    fn serve_reads(&mut self) {
        if self.reads_confirmed.is_empty() {
            return;
        }
        // Confirmed in increasing index order per leader, but not across leaders: scan.
        let applied = self.applied;
        let mut keep = VecDeque::new();
        for (index, r) in self.reads_confirmed.drain(..) {
            if index <= applied {
                self.metrics.reads += 1;
                r.slot.fill(Ok(self.sm.query(&r.query)));
            } else {
                keep.push_back((index, r));
            }
        }
        self.reads_confirmed = keep;
    }

    fn publish(&mut self) {
        let s = self.core.status();
        let c = self.core.counters();
        let t = self.transport.stats();
        let mut m = self.metrics;
        let sync = |i: usize| self.shared.syncs[i].load(std::sync::atomic::Ordering::Relaxed);
        m.fsyncs += sync(0);
        m.fsync_micros_total += sync(1);
        m.fsync_micros_max = m.fsync_micros_max.max(sync(2));
        m.elections = c.campaigns;
        m.became_leader = c.became_leader;
        m.messages_dropped = self.metrics.messages_dropped
            + c.messages_dropped
            + t.dropped_queue_full
            + t.dropped_not_connected
            + self
                .shared
                .inbox_dropped
                .load(std::sync::atomic::Ordering::Relaxed);
        let mut p = lock(&self.shared.published);
        let status = &mut p.0;
        status.role = match s.role {
            Role::PreCandidate => Role::Candidate,
            r => r,
        };
        status.term = s.term;
        status.leader = s.leader;
        status.commit_index = s.commit;
        status.applied_index = self.applied;
        status.last_index = s.last_index;
        p.1 = m;
    }
}

/// The sync thread: `fdatasync`s the leader's deferred writes, as many at once as have queued
/// (one sync covers every earlier write to its file), and reports the last one to the node
/// thread. A failed sync is reported too, and the node stops: it cannot be retried safely.
fn sync_loop(rx: &std::sync::mpsc::Receiver<(SyncHandle, Index, Term)>, shared: &Shared) {
    use std::sync::atomic::Ordering::Relaxed;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let mut result = Ok(());
        // Every distinct file of the batch (two at most: a segment rotated in between).
        for (i, (h, _, _)) in batch.iter().enumerate() {
            if batch[i + 1..]
                .iter()
                .any(|(later, _, _)| later.same_file(h))
            {
                continue;
            }
            match h.sync() {
                Ok(d) => {
                    let us = d.as_micros() as u64;
                    shared.syncs[0].fetch_add(1, Relaxed);
                    shared.syncs[1].fetch_add(us, Relaxed);
                    shared.syncs[2].fetch_max(us, Relaxed);
                }
                Err(e) => {
                    result = Err(format!("fdatasync of the log: {e}"));
                    break;
                }
            }
        }
        let Some(&(_, index, term)) = batch.last() else {
            continue;
        };
        let failed = result.is_err();
        *lock(&shared.durable) = Some(result.map(|()| (index, term)));
        // Wake the node thread; if its inbox is full it is awake anyway.
        let _ = shared.inbox.push_message(Incoming::Synced, 0);
        if failed {
            return;
        }
    }
}

fn send_raft(
    transport: &Transport,
    to: NodeId,
    bytes: &[u8],
    metrics: &mut Metrics,
    unreachable: &mut Vec<NodeId>,
) {
    match transport.send_vec(to, frame::encode_raft(bytes)) {
        Ok(()) => {}
        Err(SendError::QueueFull | SendError::NotConnected) => {
            // Counted by the transport; tell the core so it probes instead of streaming.
            if !unreachable.contains(&to) {
                unreachable.push(to);
            }
        }
        Err(e) => {
            metrics.messages_dropped += 1;
            tracing::debug!(to = to.0, error = %e, "message not sent");
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_request_dropped_unanswered_resolves_its_waiters_with_shutdown() {
        let slot = Slot::new();
        let pending = Pending {
            slot: slot.clone(),
            give_up: Instant::now() + Duration::from_secs(60),
        };
        drop(Responder(slot));
        assert_eq!(pending.wait(), Err(RequestError::Shutdown));

        // Answered first: the drop changes nothing.
        let slot = Slot::new();
        let pending = Pending {
            slot: slot.clone(),
            give_up: Instant::now() + Duration::from_secs(60),
        };
        let r = Responder(slot);
        assert!(r.fill(Ok(b"yes".to_vec())));
        drop(r);
        assert_eq!(pending.wait(), Ok(b"yes".to_vec()));
    }
}
