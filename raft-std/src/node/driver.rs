//! The node thread: the event loop of raft-core's crate docs, with a real log, real sockets and
//! real clients.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft_core::{
    ConfChange, Config, ConfigEntry, EntryKind, Index, Membership, NodeId, ProposeError, ReadError,
    Role, SnapshotMeta, Storage, Term, TransferError,
};

use super::disk::Disk;
use super::frame::{self, AdminOp, Frame, Outcome};
use super::members::{self, Book};
use super::{
    identity, AdminError, MemberInfo, MemberRole, Metrics, NodeConfig, NodeStatus, RequestError,
    StartError,
};
use crate::snapshot::{SnapshotStore, SnapshotWriter};
use crate::state_machine::{SnapshotView, StateMachine};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sync::{Inbox, Refused, Slot, Taken};
use crate::transport::{SendError, Transport};
use crate::wal::{SyncHandle, Wal};

/// The protocol core as this crate runs it: up to 9 members, 64 appends in flight per follower,
/// and buffers sized for group commits of thousands of commands.
pub(crate) type CoreNode =
    raft_core::Node<Disk, 9, 64, 4096, { 2 * 1024 * 1024 }, { 4 * 1024 * 1024 }, 1024>;

/// The largest single append the leader builds; a larger entry goes alone.
const MAX_APPEND_BYTES: usize = 256 * 1024;
/// Peer frames queued for the node thread before more are dropped (Raft retransmits), in
/// count and in bytes.
const MAX_QUEUED_MESSAGES: usize = 65536;
const MAX_QUEUED_MESSAGE_BYTES: usize = 64 << 20;

type Answer = Result<Vec<u8>, RequestError>;
type AnswerSlot = crate::sync::Arc<Slot<Answer>>;
type AdminAnswer = Result<Index, AdminError>;

/// What a request's slot holds when the node goes away without answering it.
pub(crate) trait Unanswered: Send + 'static {
    fn shutdown() -> Self;
}

impl Unanswered for Answer {
    fn shutdown() -> Self {
        Err(RequestError::Shutdown)
    }
}

impl Unanswered for AdminAnswer {
    fn shutdown() -> Self {
        Err(AdminError::Shutdown)
    }
}

/// The node's end of a request's slot. Every request is answered exactly once: explicitly, or
/// with `Shutdown` when its responder is dropped unanswered (the node stopping, or its thread
/// panicking), so that no waiter, blocking or async, is left hanging.
pub(crate) struct Responder<T: Unanswered = Answer>(crate::sync::Arc<Slot<T>>);

/// [`Responder`] for membership changes, transfers and snapshots.
pub(crate) type AdminResponder = Responder<AdminAnswer>;

impl<T: Unanswered> Responder<T> {
    fn fill(&self, answer: T) -> bool {
        self.0.fill(answer)
    }
}

impl<T: Unanswered> Drop for Responder<T> {
    fn drop(&mut self) {
        self.0.fill(T::shutdown());
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
    Admin {
        op: AdminOp,
        slot: AdminResponder,
        deadline: Instant,
    },
    Snapshot {
        slot: AdminResponder,
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

    fn submit_admin(
        &self,
        make: impl FnOnce(AdminResponder, Instant) -> Request,
    ) -> Result<Index, AdminError> {
        let slot = Slot::new();
        let deadline = Instant::now() + self.request_timeout;
        let request = make(Responder(slot.clone()), deadline);
        match self.inbox.push_request(request) {
            Ok(()) => slot
                .wait(Some(deadline + Duration::from_secs(60)))
                .unwrap_or(Err(AdminError::Timeout)),
            Err(Refused::Full(_)) => Err(AdminError::Busy),
            Err(Refused::Shutdown(_)) => Err(AdminError::Shutdown),
        }
    }

    pub(crate) fn admin(&self, op: AdminOp) -> Result<Index, AdminError> {
        self.submit_admin(|slot, deadline| Request::Admin { op, slot, deadline })
    }

    pub(crate) fn snapshot(&self) -> Result<Index, AdminError> {
        self.submit_admin(|slot, _| Request::Snapshot { slot })
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

/// What recovery found on disk, for the node thread.
struct Recovered {
    disk: Disk,
    /// The state machine restored from the snapshot, at this index (0: no snapshot).
    applied: Index,
    book: Book,
    /// The founding voters (empty for a node that joins).
    bootstrap: Vec<NodeId>,
}

/// Validates the configuration, recovers the snapshot and the log, binds the transport and
/// spawns the thread.
pub(crate) fn start<M: StateMachine>(
    config: NodeConfig,
    mut sm: M,
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
    let (snaps, latest) = SnapshotStore::open(&config.data_dir.join("snap"))?;
    let mut book: Book = config.members.iter().copied().collect();
    let mut meta = None;
    if let Some(info) = &latest {
        let Some((membership, snap_book)) = members::decode_meta(&info.meta) else {
            return Err(StartError::Config(format!(
                "snapshot {} has metadata this node cannot read",
                info.path.display()
            )));
        };
        book.extend(snap_book);
        meta = Some(SnapshotMeta {
            index: info.index,
            term: info.term,
            membership,
            len: info.file_len,
        });
        let mut data = snaps.read_data()?;
        sm.restore(&mut data).map_err(|e| {
            StartError::Config(format!(
                "the state machine refused snapshot {}: {e}",
                info.path.display()
            ))
        })?;
        tracing::info!(
            id = config.id.0,
            index = info.index.0,
            term = info.term.0,
            bytes = info.file_len,
            "restored the snapshot"
        );
    }
    let (wal, recovery) = Wal::open(
        &config.data_dir.join("wal"),
        config.wal.clone(),
        latest.as_ref().map(|i| (i.index, i.term)),
    )?;
    tracing::info!(
        id = config.id.0,
        entries = recovery.entries,
        segments = recovery.segments,
        term = recovery.hard_state.term.0,
        commit = recovery.hard_state.commit.0,
        "recovered the log"
    );
    // Addresses from the configuration entries after the snapshot, oldest first.
    let mut i = wal.first_index();
    while i <= wal.last_index() {
        if let Ok(e) = wal.entry(i) {
            if e.kind == EntryKind::Config {
                learn_addresses(&mut book, e.data);
            }
        }
        i = i.next();
    }
    let applied = latest.as_ref().map_or(Index(0), |i| i.index);
    let last_index = wal.last_index();
    let recovered = Recovered {
        disk: Disk { wal, snaps, meta },
        applied,
        book: book.clone(),
        bootstrap: if config.join {
            Vec::new()
        } else {
            members.clone()
        },
    };

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
                applied_index: applied,
                last_index,
                // Until the thread publishes the configuration it recovered.
                members: if config.join {
                    Vec::new()
                } else {
                    members.clone()
                },
                membership: Vec::new(),
                snapshot_index: applied,
                first_index: applied.next(),
            },
            Metrics::default(),
        )),
        max_command_bytes: config.max_command_bytes,
        request_timeout: config.request_timeout,
        inbox_dropped: std::sync::atomic::AtomicU64::new(0),
        durable: Mutex::new(None),
        syncs: Default::default(),
    });

    // Everyone known for now; the node narrows this to its configuration once it runs.
    let peers: Vec<(NodeId, SocketAddr)> = book
        .iter()
        .map(|(&id, &a)| (id, a))
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
            run(config, recovered, transport, sm, thread_shared, tx)
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

/// Takes the addresses a configuration entry carries into `book`.
fn learn_addresses(book: &mut Book, data: &[u8]) {
    if let Ok(c) = ConfigEntry::decode(data) {
        if let Some(b) = members::decode_book(c.context) {
            book.extend(b);
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
    if c.snapshot_chunk_bytes == 0 || c.snapshot_chunk_bytes > 2 << 20 {
        return bad("snapshot_chunk_bytes must be 1 byte to 2 MiB".into());
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
    /// A configuration change asked of this node.
    Admin {
        slot: AdminResponder,
        deadline: Instant,
    },
    /// A configuration change a follower forwarded.
    RemoteAdmin {
        peer: NodeId,
        id: u64,
        expires: Instant,
    },
}

/// Who waits for an admin request's outcome.
enum AdminWaiter {
    Local(AdminResponder),
    Remote { peer: NodeId, id: u64 },
}

/// A leadership transfer under way on this (leading) node.
struct TransferWait {
    to: NodeId,
    waiter: AdminWaiter,
    deadline: Instant,
}

/// A snapshot written by the state machine, being made durable by a thread of its own.
struct SnapshotJob {
    meta: SnapshotMeta,
    started: Instant,
    /// How long the state machine took to write it (the node thread's share).
    written: Duration,
    rx: std::sync::mpsc::Receiver<Result<crate::snapshot::Committed, String>>,
    thread: JoinHandle<()>,
}

/// What is left of a snapshot once the node thread has done its part.
enum SnapshotWork {
    /// Written and sealed: only the sync and rename remain.
    Sealed(crate::snapshot::Sealed),
    /// A frozen view of the state, still to be written into the file.
    View(crate::snapshot::SnapshotFile, Box<dyn SnapshotView>),
}

impl SnapshotWork {
    /// Writes what is left to write, seals, syncs and renames the file.
    fn finish(self) -> Result<crate::snapshot::Committed, String> {
        let sealed = match self {
            SnapshotWork::Sealed(s) => s,
            SnapshotWork::View(mut file, mut view) => {
                view.write_to(&mut file)
                    .map_err(|e| format!("the state machine failed: {e}"))?;
                file.seal().map_err(|e| e.to_string())?
            }
        };
        sealed.commit().map_err(|e| e.to_string())
    }
}

/// An admin request forwarded to the leader, awaiting its reply.
struct AdminForwarded {
    op: AdminOp,
    slot: AdminResponder,
    deadline: Instant,
    to: NodeId,
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

    /// Every member's address this node has heard of.
    book: Book,
    /// The peers the transport was last given.
    transport_peers: Vec<(NodeId, SocketAddr)>,
    /// The members named at start, reachable while this node has no configuration yet.
    seeds: Vec<(NodeId, SocketAddr)>,
    /// Admin requests waiting for a leader.
    admin_unsent: VecDeque<(AdminOp, AdminResponder, Instant)>,
    /// Admin requests forwarded to the leader, by request id.
    admin_forwarded: HashMap<u64, AdminForwarded>,
    transfers: Vec<TransferWait>,
    /// The index of the latest snapshot, of the last one started, the one being made durable,
    /// and the rules for taking the next.
    last_snapshot: Index,
    snapshot_started: Index,
    snapshot_job: Option<SnapshotJob>,
    snapshot_entries: u64,
    snapshot_bytes: u64,
    log_keep_entries: u64,
    /// The configuration last published in the status.
    published_membership: Membership,
    failed: bool,
    /// The leader's deferred syncs go to the sync thread (see `handle_ready`).
    sync_tx: Option<std::sync::mpsc::Sender<(SyncHandle, Index, Term)>>,
    sync_thread: Option<JoinHandle<()>>,
}

fn run<M: StateMachine>(
    config: NodeConfig,
    recovered: Recovered,
    transport: Transport,
    sm: M,
    shared: Arc<Shared>,
    started: std::sync::mpsc::Sender<Result<(), StartError>>,
) {
    let Recovered {
        disk,
        applied,
        book,
        bootstrap,
    } = recovered;
    let last_snapshot = applied;
    let mut core_config = Config::new(config.id, &bootstrap);
    core_config.applied = applied;
    core_config.max_snapshot_chunk = config.snapshot_chunk_bytes;
    core_config.read_lease = config.read_lease;
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
    let core = match CoreNode::new(&core_config, disk) {
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
        applied,
        last_leader: None,
        last_term: Term(0),
        metrics: Metrics::default(),
        book,
        transport_peers: Vec::new(),
        seeds: config.members.clone(),
        admin_unsent: VecDeque::new(),
        admin_forwarded: HashMap::new(),
        transfers: Vec::new(),
        last_snapshot,
        snapshot_started: last_snapshot,
        snapshot_job: None,
        snapshot_entries: config.snapshot_entries,
        snapshot_bytes: config.snapshot_bytes,
        log_keep_entries: config.log_keep_entries,
        published_membership: Membership::empty(),
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
    d.sync_peers();
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
            + self.admin_unsent.len()
            + self.admin_forwarded.len()
            + self.transfers.len()
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
            self.flush_admin();
            while self.core.has_ready() && !self.failed {
                self.handle_ready();
            }
            self.sync_peers();
            self.maybe_snapshot(false);
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
                Request::Admin { slot, .. } | Request::Snapshot { slot } => {
                    slot.fill(Err(AdminError::Shutdown));
                }
            }
        }
        for (_, p) in std::mem::take(&mut self.proposed) {
            match p.waiter {
                // Its entry may still commit: the outcome is unknown.
                Waiter::Local(u) => {
                    u.slot.fill(Err(RequestError::Timeout));
                }
                Waiter::Admin { slot, .. } => {
                    slot.fill(Err(AdminError::Timeout));
                }
                Waiter::Remote { .. } | Waiter::RemoteAdmin { .. } => {}
            }
        }
        for (_, slot, _) in self.admin_unsent.drain(..) {
            slot.fill(Err(AdminError::Shutdown));
        }
        for (_, f) in self.admin_forwarded.drain() {
            f.slot.fill(Err(AdminError::Timeout));
        }
        for t in self.transfers.drain(..) {
            if let AdminWaiter::Local(slot) = t.waiter {
                slot.fill(Err(AdminError::Timeout));
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
        self.finish_snapshot_job(true);
        if let Err(e) = self.core.storage_mut().wal.sync() {
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
            Request::Admin { op, slot, deadline } => {
                self.admin_unsent.push_back((op, slot, deadline));
            }
            Request::Snapshot { slot } => {
                let r = self.maybe_snapshot(true).ok_or_else(|| {
                    AdminError::Retry("nothing applied yet, or a snapshot failed".into())
                });
                slot.fill(r);
            }
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
            } => {
                if self.admin_forwarded.contains_key(&id) {
                    self.handle_admin_reply(id, outcome, response);
                } else {
                    self.handle_forward_reply(id, outcome, response);
                }
            }
            Frame::Admin { id, op } => {
                if self.pending() >= self.max_pending {
                    self.reply(from, id, Outcome::Busy, b"");
                } else if self.core.role() != Role::Leader {
                    // The follower sends it again, to whoever leads.
                    self.reply(from, id, Outcome::Retry, b"");
                } else {
                    let waiter = AdminWaiter::Remote { peer: from, id };
                    let deadline = Instant::now() + self.request_timeout;
                    if let Err((waiter, e)) = self.execute_admin(op, waiter, deadline) {
                        self.answer_admin(waiter, Err(e));
                    }
                }
            }
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
            Outcome::Retry | Outcome::Busy | Outcome::TryLater => self.unsent.push_back(f.unsent),
            // Only admin requests are refused for good; a proposal never is.
            Outcome::Invalid => {
                f.unsent.slot.fill(Err(RequestError::Busy));
            }
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
        let lost = || Err(AdminError::Retry("lost to a change of leader".into()));
        match w {
            Waiter::Local(u) => self.unsent.push_back(u),
            Waiter::Remote { peer, id, .. } => self.reply(peer, id, Outcome::Retry, b""),
            Waiter::Admin { slot, .. } => self.answer_admin(AdminWaiter::Local(slot), lost()),
            Waiter::RemoteAdmin { peer, id, .. } => {
                self.answer_admin(AdminWaiter::Remote { peer, id }, lost());
            }
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

    /// Carries out a membership change or transfer on the leader (callers check that this node
    /// leads). On failure the waiter comes back with the error, for the caller to answer.
    fn execute_admin(
        &mut self,
        op: AdminOp,
        waiter: AdminWaiter,
        deadline: Instant,
    ) -> Result<(), (AdminWaiter, AdminError)> {
        if self.core.role() != Role::Leader {
            return Err((
                waiter,
                AdminError::Retry("this node is not the leader".into()),
            ));
        }
        let membership = self.core.membership().clone();
        let committed = self.core.status().commit;
        let (change, new_addr) = match op {
            AdminOp::AddLearner(id, addr) => {
                if membership.contains(id) {
                    return match self.book.get(&id) {
                        // Asked again (a joining node retries): done already.
                        Some(known) if *known == addr => {
                            self.answer_admin(waiter, Ok(committed));
                            Ok(())
                        }
                        Some(known) => {
                            let why = format!(
                                "node {id} is already a member, at {known}; remove it first to move it"
                            );
                            Err((waiter, AdminError::Invalid(why)))
                        }
                        None => {
                            self.answer_admin(waiter, Ok(committed));
                            Ok(())
                        }
                    };
                }
                (ConfChange::AddLearner(id), Some((id, addr)))
            }
            AdminOp::Promote(id) => match membership.get(id) {
                Some(m) if m.voter => {
                    self.answer_admin(waiter, Ok(committed));
                    return Ok(());
                }
                Some(_) => (ConfChange::AddVoter(id), None),
                None => {
                    let why = format!("node {id} is not a member; add it as a learner first");
                    return Err((waiter, AdminError::Invalid(why)));
                }
            },
            AdminOp::Remove(id) => {
                // Not a member, or already on its way out (an outgoing voter of the joint
                // configuration, which the leader leaves by itself): done.
                if membership.get(id).is_none_or(|m| !m.voter && m.outgoing) {
                    self.answer_admin(waiter, Ok(committed));
                    return Ok(());
                }
                (ConfChange::Remove(id), None)
            }
            AdminOp::Transfer(to) => {
                if to == self.id {
                    self.answer_admin(waiter, Ok(committed));
                    return Ok(());
                }
                return match self.core.transfer_leadership(to) {
                    Ok(()) => {
                        self.transfers.push(TransferWait {
                            to,
                            waiter,
                            deadline,
                        });
                        Ok(())
                    }
                    Err(e @ TransferError::NotVoter(_)) => {
                        Err((waiter, AdminError::Invalid(e.to_string())))
                    }
                    Err(e) => Err((waiter, AdminError::Retry(e.to_string()))),
                };
            }
        };
        let target = match membership.apply(&[change]) {
            Ok(t) => t,
            Err(e) => return Err((waiter, AdminError::Invalid(e.to_string()))),
        };
        let mut book = self.book.clone();
        if let Some((id, addr)) = new_addr {
            book.insert(id, addr);
        }
        book.retain(|id, _| target.contains(*id));
        match self
            .core
            .propose_conf_change(&[change], &members::encode_book(&book))
        {
            Ok(index) => {
                tracing::info!(
                    id = self.id.0,
                    index = index.0,
                    ?change,
                    "proposed a membership change"
                );
                if let Some((id, addr)) = new_addr {
                    self.book.insert(id, addr);
                }
                let waiter = match waiter {
                    AdminWaiter::Local(slot) => Waiter::Admin { slot, deadline },
                    AdminWaiter::Remote { peer, id } => Waiter::RemoteAdmin {
                        peer,
                        id,
                        expires: Instant::now() + 2 * self.request_timeout,
                    },
                };
                self.insert_proposed(index, waiter);
                Ok(())
            }
            Err(e @ (ProposeError::InvalidConfChange(_) | ProposeError::TooLarge { .. })) => {
                Err((waiter, AdminError::Invalid(e.to_string())))
            }
            Err(e) => Err((waiter, AdminError::Retry(e.to_string()))),
        }
    }

    fn answer_admin(&mut self, waiter: AdminWaiter, answer: AdminAnswer) {
        match waiter {
            AdminWaiter::Local(slot) => {
                slot.fill(answer);
            }
            AdminWaiter::Remote { peer, id } => {
                let (outcome, body) = match answer {
                    Ok(index) => (Outcome::Applied, index.0.to_le_bytes().to_vec()),
                    Err(AdminError::Invalid(why)) => (Outcome::Invalid, why.into_bytes()),
                    Err(AdminError::Retry(why)) => (Outcome::TryLater, why.into_bytes()),
                    Err(AdminError::Busy) => (Outcome::Busy, Vec::new()),
                    Err(e) => (Outcome::TryLater, e.to_string().into_bytes()),
                };
                self.reply(peer, id, outcome, &body);
            }
        }
    }

    fn handle_admin_reply(&mut self, id: u64, outcome: Outcome, response: &[u8]) {
        let Some(f) = self.admin_forwarded.remove(&id) else {
            return;
        };
        let why = || String::from_utf8_lossy(response).into_owned();
        match outcome {
            Outcome::Applied => {
                let index = response
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes)
                    .unwrap_or(0);
                f.slot.fill(Ok(Index(index)));
            }
            // The receiver does not lead: send it again, to whoever does.
            Outcome::Retry | Outcome::Busy => {
                self.admin_unsent.push_back((f.op, f.slot, f.deadline));
            }
            Outcome::TryLater => {
                f.slot.fill(Err(AdminError::Retry(why())));
            }
            Outcome::Invalid | Outcome::TooLarge => {
                f.slot.fill(Err(AdminError::Invalid(why())));
            }
        }
    }

    /// Hands waiting admin requests to the core (on the leader) or to the leader.
    fn flush_admin(&mut self) {
        if self.admin_unsent.is_empty() {
            return;
        }
        let leader = self.core.leader();
        let is_leader = self.core.role() == Role::Leader;
        let mut keep = VecDeque::new();
        while let Some((op, slot, deadline)) = self.admin_unsent.pop_front() {
            if is_leader {
                if let Err((w, e)) = self.execute_admin(op, AdminWaiter::Local(slot), deadline) {
                    self.answer_admin(w, Err(e));
                }
            } else if let Some(leader) = leader {
                let id = self.next_forward_id;
                self.next_forward_id += 1;
                match self
                    .transport
                    .send_vec(leader, frame::encode_admin(id, &op))
                {
                    Ok(()) => {
                        self.admin_forwarded.insert(
                            id,
                            AdminForwarded {
                                op,
                                slot,
                                deadline,
                                to: leader,
                            },
                        );
                    }
                    Err(_) => keep.push_back((op, slot, deadline)),
                }
            } else {
                keep.push_back((op, slot, deadline));
            }
        }
        self.admin_unsent = keep;
    }

    /// Answers the transfers that completed (the target leads) or aborted (this node still
    /// leads and the core gave up).
    fn check_transfers(&mut self) {
        if self.transfers.is_empty() {
            return;
        }
        let status = self.core.status();
        let now = Instant::now();
        for t in std::mem::take(&mut self.transfers) {
            let answer = if status.leader == Some(t.to) {
                Some(Ok(Index(0)))
            } else if status.role == Role::Leader && status.transferee != Some(t.to) {
                Some(Err(AdminError::Retry(format!(
                    "the transfer to {} did not complete within an election timeout",
                    t.to
                ))))
            } else if t.deadline <= now {
                Some(Err(AdminError::Timeout))
            } else {
                None
            };
            match answer {
                Some(a) => self.answer_admin(t.waiter, a),
                None => self.transfers.push(t),
            }
        }
    }

    /// Gives the transport the members of the configuration in effect (or, before this node
    /// has one, the members it was started with).
    fn sync_peers(&mut self) {
        let m = self.core.membership();
        let mut want: Vec<(NodeId, SocketAddr)> = if m.is_empty() {
            self.seeds.clone()
        } else {
            m.members()
                .iter()
                .filter_map(|x| self.book.get(&x.id).map(|a| (x.id, *a)))
                .collect()
        };
        want.retain(|(id, _)| *id != self.id);
        want.sort();
        if want != self.transport_peers {
            tracing::info!(id = self.id.0, peers = ?want, "peers changed");
            if let Err(e) = self.transport.set_peers(&want) {
                tracing::warn!(id = self.id.0, error = %e, "could not update the peers");
            }
            self.transport_peers = want;
        }
    }

    /// Takes a snapshot if the log has grown past the configured bounds (or if `force`), and
    /// compacts the log below it once it is durable.
    ///
    /// The state machine writes the snapshot on this thread (into the page cache); the fsync,
    /// rename and directory fsync run on a thread of their own, and the snapshot becomes the
    /// latest (and the log is compacted) when that reports back. A forced snapshot (the
    /// operator's `snapshot()`) is made durable before this returns, and returns its index (or
    /// that of the latest, if it covers everything applied).
    fn maybe_snapshot(&mut self, force: bool) -> Option<Index> {
        self.finish_snapshot_job(force);
        if self.snapshot_job.is_some() {
            return None;
        }
        let applied = self.applied;
        let since_from = self.last_snapshot.max(self.snapshot_started);
        if applied <= since_from {
            return (force && self.last_snapshot > Index(0)).then_some(self.last_snapshot);
        }
        if !force {
            let by_count =
                self.snapshot_entries > 0 && applied.0 - since_from.0 >= self.snapshot_entries;
            let by_bytes = self.snapshot_bytes > 0
                && self.core.storage().wal.bytes_held() >= self.snapshot_bytes;
            if !by_count && !by_bytes {
                return None;
            }
        }
        let meta = self.core.snapshot_point()?;
        let mut book = self.book.clone();
        book.retain(|id, _| meta.membership.contains(*id));
        let encoded = members::encode_meta(&meta.membership, &book);
        let started = Instant::now();
        let Driver { core, sm, .. } = self;
        // A state machine that can freeze its state is written on the snapshot thread too.
        let view = if force { None } else { sm.snapshot_view() };
        let work = core
            .storage_mut()
            .snaps
            .create(meta.index, meta.term, &encoded)
            .map(SnapshotWriter::detach)
            .map_err(|e| e.to_string())
            .and_then(|mut file| match view {
                Some(view) => Ok(SnapshotWork::View(file, view)),
                None => {
                    sm.snapshot(&mut file)
                        .map_err(|e| format!("the state machine failed: {e}"))?;
                    file.seal()
                        .map(SnapshotWork::Sealed)
                        .map_err(|e| e.to_string())
                }
            });
        // Retried only after as many entries again, not on every turn of the loop.
        self.snapshot_started = applied;
        let work = match work {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(id = self.id.0, index = meta.index.0, error = %e, "snapshot failed");
                return None;
            }
        };
        let written = started.elapsed();
        if force {
            let committed = work.finish();
            self.adopt_snapshot(meta.clone(), committed, started, written);
            return (self.last_snapshot == meta.index).then_some(meta.index);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("tickraft-snap-{}", self.id.0))
            .spawn(move || {
                let _ = tx.send(work.finish());
                // Wake the node thread; if its inbox is full it is awake anyway.
                let _ = shared.inbox.push_message(Incoming::Synced, 0);
            });
        match spawned {
            Ok(thread) => {
                self.snapshot_job = Some(SnapshotJob {
                    meta,
                    started,
                    written,
                    rx,
                    thread,
                });
            }
            Err(e) => {
                tracing::error!(id = self.id.0, error = %e, "cannot spawn the snapshot thread")
            }
        }
        None
    }

    /// Takes the outcome of the snapshot being made durable off-thread, if it is in (or, with
    /// `block`, waits for it).
    fn finish_snapshot_job(&mut self, block: bool) {
        let Some(job) = &self.snapshot_job else {
            return;
        };
        let outcome = if block {
            job.rx.recv().ok()
        } else {
            match job.rx.try_recv() {
                Ok(r) => Some(r),
                Err(std::sync::mpsc::TryRecvError::Empty) => return,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
            }
        };
        let Some(job) = self.snapshot_job.take() else {
            return;
        };
        if job.thread.join().is_err() {
            tracing::error!(id = self.id.0, "the snapshot thread panicked");
        }
        match outcome {
            Some(committed) => self.adopt_snapshot(job.meta, committed, job.started, job.written),
            None => tracing::error!(id = self.id.0, "the snapshot thread ended without a word"),
        }
    }

    /// Makes a durable snapshot the latest, and compacts the log below it (keeping
    /// `log_keep_entries`).
    fn adopt_snapshot(
        &mut self,
        meta: SnapshotMeta,
        committed: Result<crate::snapshot::Committed, String>,
        started: Instant,
        written: Duration,
    ) {
        let disk = self.core.storage_mut();
        let adopted = committed.map(|c| disk.snaps.adopt(c));
        let info = match adopted {
            Ok(Ok(info)) => info,
            Ok(Err(crate::snapshot::SnapshotError::Stale { latest, .. })) => {
                tracing::info!(
                    id = self.id.0,
                    index = meta.index.0,
                    latest = latest.0,
                    "a snapshot from the leader overtook this one; it is dropped"
                );
                return;
            }
            Ok(Err(e)) => {
                tracing::error!(id = self.id.0, index = meta.index.0, error = %e, "snapshot failed");
                return;
            }
            Err(e) => {
                tracing::error!(id = self.id.0, index = meta.index.0, error = %e, "snapshot failed");
                return;
            }
        };
        disk.meta = Some(SnapshotMeta {
            len: info.file_len,
            ..meta.clone()
        });
        let keep = Index(meta.index.0.saturating_sub(self.log_keep_entries));
        if keep >= disk.wal.first_index() {
            if let Ok(term) = disk.wal.term(keep) {
                if let Err(e) = disk.wal.compact(keep, term) {
                    tracing::error!(id = self.id.0, error = %e, "log compaction failed");
                }
            }
        }
        self.last_snapshot = meta.index;
        self.metrics.snapshots_taken += 1;
        tracing::info!(
            id = self.id.0,
            index = meta.index.0,
            bytes = info.file_len,
            write_millis = written.as_millis() as u64,
            total_millis = started.elapsed().as_millis() as u64,
            compacted_through = keep.0,
            "took a snapshot"
        );
    }

    /// Notices a change of leader or term: proposals waiting for a leader can go now, and
    /// reads the old leader never confirmed are asked again.
    fn observe_leadership(&mut self) {
        self.check_transfers();
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
        // Admin requests forwarded to another leader than the one known now may get no answer.
        // They are idempotent (a change already made answers at once), so they go to the new
        // leader; a transfer that ends with its target leading did what it was asked.
        if let Some(now) = leader {
            let stranded: Vec<u64> = self
                .admin_forwarded
                .iter()
                .filter(|(_, f)| f.to != now)
                .map(|(&id, _)| id)
                .collect();
            for id in stranded {
                if let Some(f) = self.admin_forwarded.remove(&id) {
                    if matches!(f.op, AdminOp::Transfer(to) if to == now) {
                        f.slot.fill(Ok(Index(0)));
                    } else {
                        self.admin_unsent.push_back((f.op, f.slot, f.deadline));
                    }
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
            Waiter::Admin { slot, deadline } if *deadline <= now => {
                slot.fill(Err(AdminError::Timeout));
                false
            }
            Waiter::Remote { expires, .. } | Waiter::RemoteAdmin { expires, .. } => *expires > now,
            Waiter::Local(_) | Waiter::Admin { .. } => true,
        });
        self.admin_unsent.retain(|(_, slot, deadline)| {
            let expired = *deadline <= now;
            if expired {
                slot.fill(Err(AdminError::NoLeader));
            }
            !expired
        });
        self.admin_forwarded.retain(|_, f| {
            let expired = f.deadline <= now;
            if expired {
                f.slot.fill(Err(AdminError::Timeout));
            }
            !expired
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
            book,
            ..
        } = self;
        let mut unreachable: Vec<NodeId> = Vec::new();
        let mut lost: Vec<Waiter> = Vec::new();
        let mut failure: Option<String> = None;
        let mut installed: Option<(Index, Book)> = None;
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
            // 2. A snapshot chunk from the leader: write it, and install the snapshot when it
            // is the last (the log is discarded and the state machine restored from it).
            if let Some(chunk) = rd.snapshot {
                match install_chunk(rd.storage, sm, &chunk) {
                    Ok(Some(b)) => installed = Some((chunk.index, b)),
                    Ok(None) => {}
                    Err(e) => failure = Some(format!("installing snapshot {}: {e}", chunk.index)),
                }
            }
            // Persist hard state and entries: buffered into the log here, synced below.
            if let Some(hs) = rd.hard_state {
                rd.storage.wal.set_hard_state(hs);
            }
            for e in rd.entries.iter() {
                if e.kind == EntryKind::Config {
                    learn_addresses(book, e.data);
                }
            }
            if failure.is_none() {
                if let Err(e) = rd.storage.wal.append(rd.entries) {
                    failure = Some(e.to_string());
                }
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
                            let remote = |peer: NodeId, reply: Vec<u8>, metrics: &mut Metrics| {
                                if transport.send_vec(peer, reply).is_err() {
                                    metrics.messages_dropped += 1;
                                }
                            };
                            match p.waiter {
                                Waiter::Local(u) => {
                                    u.slot.fill(Ok(response));
                                }
                                Waiter::Remote { peer, id, .. } => {
                                    // Answered now, like local clients, not after the sync.
                                    let reply =
                                        frame::encode_reply(id, Outcome::Applied, &response);
                                    remote(peer, reply, metrics);
                                }
                                Waiter::Admin { slot, .. } => {
                                    slot.fill(Ok(entry.index));
                                }
                                Waiter::RemoteAdmin { peer, id, .. } => {
                                    let index = entry.index.0.to_le_bytes();
                                    let reply = frame::encode_reply(id, Outcome::Applied, &index);
                                    remote(peer, reply, metrics);
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
                match rd.storage.wal.write() {
                    Ok(Some(handle)) => {
                        if let (Some(tx), Some((index, term))) = (sync_tx.as_ref(), last) {
                            deferred = tx.send((handle, index, term)).is_ok();
                        }
                    }
                    Ok(None) => {}
                    Err(e) => failure = Some(e.to_string()),
                }
            }
            // Make step 2 durable: one write and one fdatasync for the whole batch.
            if failure.is_none()
                && !deferred
                && (rd.must_sync() || !rd.persisted_messages.is_empty())
            {
                match rd.storage.wal.sync() {
                    Ok(stats) => {
                        if stats.synced {
                            metrics.fsyncs += 1;
                            let us = stats.duration.as_micros() as u64;
                            metrics.fsync_micros_total += us;
                            metrics.fsync_micros_max = metrics.fsync_micros_max.max(us);
                        }
                        metrics.wal_bytes += stats.bytes;
                    }
                    Err(e) => failure = Some(e.to_string()),
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
            // A snapshot that cannot be installed stops the node the same way; on restart the
            // partial transfer is discarded and the leader sends the snapshot again.
            tracing::error!(id = self.id.0, error = %e, "the storage failed; the node stops");
            self.failed = true;
            self.shared.inbox.shutdown();
            return;
        }
        if let Some((index, b)) = installed {
            self.book.extend(b);
            self.applied = index;
            self.last_snapshot = index;
            self.metrics.snapshots_installed += 1;
            tracing::info!(
                id = self.id.0,
                index = index.0,
                "installed a snapshot from the leader"
            );
            // Whatever this node had proposed is covered by the snapshot or gone: unknown.
            for (_, p) in std::mem::take(&mut self.proposed) {
                match p.waiter {
                    Waiter::Local(u) => {
                        u.slot.fill(Err(RequestError::Timeout));
                    }
                    Waiter::Admin { slot, .. } => {
                        slot.fill(Err(AdminError::Timeout));
                    }
                    Waiter::Remote { .. } | Waiter::RemoteAdmin { .. } => {}
                }
            }
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
        m.snapshots_sent = c.snapshots_sent;
        m.lease_reads = c.lease_reads;
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
        status.first_index = s.first_index;
        status.snapshot_index = self.last_snapshot;
        let membership = self.core.membership();
        if *membership != self.published_membership {
            status.members = membership
                .members()
                .iter()
                .filter(|m| m.voter || m.outgoing)
                .map(|m| m.id)
                .collect();
            status.membership = membership
                .members()
                .iter()
                .map(|m| MemberInfo {
                    id: m.id,
                    addr: self.book.get(&m.id).copied(),
                    role: match (m.voter, m.outgoing, membership.is_joint()) {
                        (true, true, _) | (true, false, false) => MemberRole::Voter,
                        (true, false, true) => MemberRole::Joining,
                        (false, true, _) => MemberRole::Leaving,
                        (false, false, _) => MemberRole::Learner,
                    },
                })
                .collect();
            self.published_membership = membership.clone();
        }
        p.1 = m;
    }
}

/// Writes a received snapshot chunk; on the last one verifies the whole file, makes it the
/// latest snapshot, resets the log to it and restores the state machine from it. Returns the
/// snapshot's address book once installed.
fn install_chunk<M: StateMachine>(
    disk: &mut Disk,
    sm: &mut M,
    chunk: &raft_core::SnapshotChunk<'_>,
) -> Result<Option<Book>, String> {
    let s = |e: crate::snapshot::SnapshotError| e.to_string();
    if chunk.offset == 0 {
        disk.snaps.receive(chunk.index, chunk.term).map_err(s)?;
    }
    disk.snaps
        .write_chunk(chunk.offset, chunk.data)
        .map_err(s)?;
    if !chunk.is_last() {
        return Ok(None);
    }
    let info = disk.snaps.finish_receive().map_err(s)?;
    let (membership, book) =
        members::decode_meta(&info.meta).ok_or("the snapshot's metadata does not decode")?;
    if &membership != chunk.membership {
        return Err("the snapshot's configuration is not the one the leader announced".into());
    }
    disk.wal
        .reset(chunk.index, chunk.term)
        .map_err(|e| e.to_string())?;
    disk.meta = Some(SnapshotMeta {
        index: chunk.index,
        term: chunk.term,
        membership,
        len: info.file_len,
    });
    let mut data = disk.snaps.read_data().map_err(s)?;
    sm.restore(&mut data)
        .map_err(|e| format!("the state machine refused it: {e}"))?;
    Ok(Some(book))
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
