//! What the server needs from a node, so that it can be tested without one.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use raft_std::{AdminError, Index, Metrics, NodeHandle, RequestError, Role, StateMachine};

use crate::command::Admin;
use crate::limits::MAX_ADMIN_IN_FLIGHT;
use crate::store::{KeyCount, KvStore};

/// The store's reply to a request, once the node has it: RESP bytes for the client. Boxed so
/// that [`Backend`] stays object-safe; the allocation is small beside the request's own.
pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, RequestError>> + Send + 'a>>;

/// The node's answer to an [`Admin`] request: the index of the configuration entry or of the
/// snapshot, or `None` for a leadership transfer, which has none.
pub type AdminReply<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Index>, AdminError>> + Send + 'a>>;

/// The node as the RESP server sees it. Implemented by [`RaftBackend`] (a real node) and
/// [`LocalBackend`] (a store in this process, for tests and `serve-local`).
///
/// The server awaits the replies on its connection tasks, so a backend must not block: it
/// hands the request over and resolves the future when the answer arrives.
pub trait Backend: Send + Sync + 'static {
    /// Replicates an encoded command and resolves to the store's reply
    /// ([`NodeHandle::propose_async`]).
    fn propose<'a>(&'a self, command: &'a [u8]) -> Reply<'a>;

    /// Runs an encoded query linearizably and resolves to the store's reply
    /// ([`NodeHandle::read_async`]).
    fn read<'a>(&'a self, query: &'a [u8]) -> Reply<'a>;

    /// The node's Raft state, for `INFO raft`.
    fn status(&self) -> RaftStatus;

    /// The node's counters, for `INFO stats`.
    fn metrics(&self) -> Metrics;

    /// Keys in this member's store as applied so far, for `INFO keyspace`.
    fn key_count(&self) -> u64;

    /// Carries out a membership change, leadership transfer or snapshot (`RAFT.*`). The node's
    /// calls for these block, so a backend runs them off the server's workers.
    fn admin(&self, request: Admin) -> AdminReply<'_>;
}

/// The fields of `INFO raft`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    /// This node.
    pub node_id: u64,
    /// `leader`, `follower` or `candidate` (a pre-candidate counts as a candidate).
    pub role: &'static str,
    /// The current term.
    pub term: u64,
    /// The known leader, or 0.
    pub leader_id: u64,
    /// Highest index known committed.
    pub commit_index: u64,
    /// Highest index applied to the store.
    pub applied_index: u64,
    /// The voting members.
    pub members: Vec<u64>,
    /// Every member with its address and role, for `RAFT.MEMBERS` and `INFO membership`.
    pub membership: Vec<Member>,
    /// The first index still in the log (older entries are in the snapshot).
    pub first_index: u64,
    /// The last index in the log.
    pub last_index: u64,
    /// The index of the latest snapshot, or 0.
    pub snapshot_index: u64,
}

/// One member of the configuration, as `RAFT.MEMBERS` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: u64,
    /// Its Raft address, if this node knows it.
    pub addr: Option<SocketAddr>,
    /// `voter`, `learner`, or during a change `joining` (a voter of the new configuration
    /// only) or `leaving` (of the old one only).
    pub role: &'static str,
}

/// A real node: its handle, and the key count of the store it was started with.
#[derive(Clone, Debug)]
pub struct RaftBackend {
    handle: NodeHandle,
    keys: KeyCount,
    /// Admin requests with the node now. Invariant: at most [`MAX_ADMIN_IN_FLIGHT`]; counted
    /// by an [`InFlight`] that lives as long as the blocking call.
    admin_in_flight: Arc<AtomicUsize>,
}

impl RaftBackend {
    /// Serves `handle`'s node, whose store reports its size through `keys`.
    pub fn new(handle: NodeHandle, keys: KeyCount) -> Self {
        RaftBackend {
            handle,
            keys,
            admin_in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// One admin request counted against [`MAX_ADMIN_IN_FLIGHT`] until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn try_new(count: &Arc<AtomicUsize>) -> Option<InFlight> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_ADMIN_IN_FLIGHT).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(Arc::clone(count)))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Calls the node's blocking admin API for `request`.
fn admin_blocking(handle: &NodeHandle, request: Admin) -> Result<Option<Index>, AdminError> {
    match request {
        Admin::AddLearner { id, addr } => handle.add_learner(id, addr).map(Some),
        Admin::Promote(id) => handle.promote(id).map(Some),
        Admin::Remove(id) => handle.remove(id).map(Some),
        Admin::Transfer(id) => handle.transfer_leadership(id).map(|()| None),
        Admin::Snapshot => handle.snapshot().map(Some),
    }
}

impl Backend for RaftBackend {
    fn propose<'a>(&'a self, command: &'a [u8]) -> Reply<'a> {
        Box::pin(self.handle.propose_async(command))
    }

    fn read<'a>(&'a self, query: &'a [u8]) -> Reply<'a> {
        Box::pin(self.handle.read_async(query))
    }

    fn status(&self) -> RaftStatus {
        let s = self.handle.status();
        RaftStatus {
            node_id: s.id.get(),
            role: match s.role {
                Role::Leader => "leader",
                Role::Follower => "follower",
                Role::Candidate | Role::PreCandidate => "candidate",
            },
            term: s.term.get(),
            leader_id: s.leader.map_or(0, |l| l.get()),
            commit_index: s.commit_index.get(),
            applied_index: s.applied_index.get(),
            members: s.members.iter().map(|m| m.get()).collect(),
            membership: s
                .membership
                .iter()
                .map(|m| Member {
                    id: m.id.get(),
                    addr: m.addr,
                    role: m.role.name(),
                })
                .collect(),
            first_index: s.first_index.get(),
            last_index: s.last_index.get(),
            snapshot_index: s.snapshot_index.get(),
        }
    }

    fn metrics(&self) -> Metrics {
        self.handle.metrics()
    }

    fn key_count(&self) -> u64 {
        self.keys.get()
    }

    fn admin(&self, request: Admin) -> AdminReply<'_> {
        let in_flight = InFlight::try_new(&self.admin_in_flight);
        let handle = self.handle.clone();
        Box::pin(async move {
            let Some(in_flight) = in_flight else {
                return Err(AdminError::Busy);
            };
            // Spawned at the first poll, so inside the server's runtime. The call goes on to
            // its end (at most about the request timeout) even if the client goes away.
            let call = tokio::task::spawn_blocking(move || {
                let _in_flight = in_flight;
                admin_blocking(&handle, request)
            });
            match call.await {
                Ok(result) => result,
                Err(e) if e.is_cancelled() => Err(AdminError::Shutdown),
                Err(e) => {
                    // raft-std's calls do not panic; if one did, its outcome is unknown.
                    tracing::error!(error = %e, ?request, "an admin request panicked");
                    Err(AdminError::Timeout)
                }
            }
        })
    }
}

/// A store in this process that applies every command at once: a single node that is always
/// leader. For tests, and for trying clients against the RESP layer (`serve-local`).
#[derive(Debug)]
pub struct LocalBackend {
    store: Mutex<KvStore>,
    applied: AtomicU64,
    reads: AtomicU64,
    keys: KeyCount,
}

impl LocalBackend {
    /// An empty store.
    pub fn new() -> Self {
        let store = KvStore::new();
        let keys = store.key_count();
        LocalBackend {
            store: Mutex::new(store),
            applied: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            keys,
        }
    }
}

impl Default for LocalBackend {
    fn default() -> Self {
        LocalBackend::new()
    }
}

impl Backend for LocalBackend {
    // Both answer at once, before the future is even polled: the store is in memory and a
    // lock held for one command never waits long.
    fn propose<'a>(&'a self, command: &'a [u8]) -> Reply<'a> {
        // A poisoned lock means `apply` panicked, which the store never does on any input;
        // carrying on with the state it left is what a restarted node would do anyway.
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let index = self.applied.fetch_add(1, Ordering::Relaxed) + 1;
        Box::pin(std::future::ready(Ok(store.apply(Index(index), command))))
    }

    fn read<'a>(&'a self, query: &'a [u8]) -> Reply<'a> {
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        self.reads.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::ready(Ok(store.query(query))))
    }

    fn status(&self) -> RaftStatus {
        let applied = self.applied.load(Ordering::Relaxed);
        RaftStatus {
            node_id: 1,
            role: "leader",
            term: 1,
            leader_id: 1,
            commit_index: applied,
            applied_index: applied,
            members: vec![1],
            membership: vec![Member {
                id: 1,
                addr: None,
                role: "voter",
            }],
            first_index: 1,
            last_index: applied,
            snapshot_index: 0,
        }
    }

    fn metrics(&self) -> Metrics {
        let mut m = Metrics::default();
        m.proposals = self.applied.load(Ordering::Relaxed);
        m.applied = m.proposals;
        m.reads = self.reads.load(Ordering::Relaxed);
        m
    }

    fn key_count(&self) -> u64 {
        self.keys.get()
    }

    fn admin(&self, _request: Admin) -> AdminReply<'_> {
        Box::pin(std::future::ready(Err(AdminError::Invalid(
            "this server is not replicated (serve-local): it has no Raft members or log".into(),
        ))))
    }
}
