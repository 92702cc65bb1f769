//! What the server needs from a node, so that it can be tested without one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use raft_std::{Index, Metrics, NodeHandle, RequestError, Role, StateMachine};

use crate::store::{KeyCount, KvStore};

/// The store's reply to a request, once the node has it: RESP bytes for the client. Boxed so
/// that [`Backend`] stays object-safe; the allocation is small beside the request's own.
pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, RequestError>> + Send + 'a>>;

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
}

/// A real node: its handle, and the key count of the store it was started with.
#[derive(Clone, Debug)]
pub struct RaftBackend {
    handle: NodeHandle,
    keys: KeyCount,
}

impl RaftBackend {
    /// Serves `handle`'s node, whose store reports its size through `keys`.
    pub fn new(handle: NodeHandle, keys: KeyCount) -> Self {
        RaftBackend { handle, keys }
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
        }
    }

    fn metrics(&self) -> Metrics {
        self.handle.metrics()
    }

    fn key_count(&self) -> u64 {
        self.keys.get()
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
}
