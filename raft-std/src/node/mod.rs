//! The threaded node: one thread that owns the protocol core, the log and the transport.
//!
//! Requests from any number of threads go into one bounded queue ([`crate::sync`]). The node
//! thread takes everything queued at once, proposes it all, and writes the whole batch with one
//! `fdatasync`: that is the group commit, and it is why throughput grows with clients.

mod driver;
mod frame;
mod identity;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raft_core::{Index, NodeId, Role, Term};

use crate::state_machine::StateMachine;
use crate::transport::{TransportError, TransportOptions};
use crate::wal::{WalError, WalOptions};

pub(crate) use driver::Shared;

/// How to run a [`Node`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeConfig {
    /// This member's id (not 0).
    pub id: NodeId,
    /// Shared by every member and checked in the transport handshake, so that a node of
    /// another cluster is refused.
    pub cluster_id: u64,
    /// Every voting member with its Raft address, this node included. The node listens on its
    /// own address.
    pub members: Vec<(NodeId, SocketAddr)>,
    /// Where the write-ahead log lives. Restarting with the same directory recovers the node.
    pub data_dir: PathBuf,
    /// The tick interval. Default 20 ms.
    pub tick: Duration,
    /// A follower starts an election after `[election_ticks, 2 * election_ticks)` ticks
    /// without a leader. Default 10 (so 200-400 ms with the default tick).
    pub election_ticks: u32,
    /// A leader heartbeats every this many ticks. Default 2.
    pub heartbeat_ticks: u32,
    /// A request that has not completed in this time fails: with
    /// [`RequestError::NoLeader`] if it never reached a leader, otherwise with
    /// [`RequestError::Timeout`]. Default 3 s.
    pub request_timeout: Duration,
    /// Requests queued at the node and not yet taken by its thread; beyond it requests fail
    /// with [`RequestError::Busy`]. Default 16384.
    pub max_queued_requests: usize,
    /// Requests the node has taken and not yet answered (proposals awaiting commit, reads
    /// awaiting confirmation); beyond it the node stops taking requests until some complete.
    /// Default 16384.
    pub max_pending_requests: usize,
    /// The largest command [`NodeHandle::propose`] accepts. Default 512 KiB; at most
    /// [`NodeConfig::MAX_COMMAND_BYTES`].
    pub max_command_bytes: usize,
    /// The write-ahead log.
    pub wal: WalOptions,
    /// The TCP transport.
    pub transport: TransportOptions,
    /// Seeds the election-timeout generator (mixed with the id by the core).
    pub seed: u64,
}

impl NodeConfig {
    /// The largest `max_command_bytes` the node's buffers are built for.
    pub const MAX_COMMAND_BYTES: usize = 1 << 20;

    /// A configuration with the defaults above.
    pub fn new(
        id: NodeId,
        cluster_id: u64,
        members: Vec<(NodeId, SocketAddr)>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        NodeConfig {
            id,
            cluster_id,
            members,
            data_dir: data_dir.into(),
            tick: Duration::from_millis(20),
            election_ticks: 10,
            heartbeat_ticks: 2,
            request_timeout: Duration::from_secs(3),
            max_queued_requests: 16384,
            max_pending_requests: 16384,
            max_command_bytes: 512 * 1024,
            wal: WalOptions::default(),
            transport: TransportOptions::default(),
            seed: 0,
        }
    }
}

/// Why a request did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// No leader could be reached within the request timeout. Nothing was done.
    NoLeader,
    /// The request reached a leader but its outcome is unknown: a write may or may not have
    /// been applied.
    Timeout,
    /// The command is larger than `max_command_bytes`.
    TooLarge {
        /// Bytes offered.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The node's queues are full: back off and retry.
    Busy,
    /// The node has shut down (or is shutting down).
    Shutdown,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NoLeader => f.write_str("no leader could be reached"),
            RequestError::Timeout => f.write_str("the outcome is unknown (timed out)"),
            RequestError::TooLarge { len, max } => {
                write!(
                    f,
                    "command of {len} bytes is larger than the maximum of {max}"
                )
            }
            RequestError::Busy => f.write_str("the node is busy; retry"),
            RequestError::Shutdown => f.write_str("the node has shut down"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The data directory belongs to another node or cluster.
    #[error("data directory {path} belongs to node {found_id} of cluster {found_cluster:#x}, not node {id} of cluster {cluster:#x}")]
    WrongIdentity {
        /// The directory.
        path: PathBuf,
        /// The node id recorded there.
        found_id: u64,
        /// The cluster id recorded there.
        found_cluster: u64,
        /// The id this node was started with.
        id: u64,
        /// The cluster id this node was started with.
        cluster: u64,
    },
    /// Another process has the data directory open.
    #[error("data directory {path} is in use by another process (tickraft.lock is held)")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The write-ahead log could not be recovered.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The transport could not start (for example, the address is in use).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The node thread could not be spawned.
    #[error("cannot spawn the node thread: {0}")]
    Thread(std::io::Error),
}

/// The node's state as last published by its thread.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Leader, follower or candidate (pre-candidates count as candidates).
    pub role: Role,
    /// The current term.
    pub term: Term,
    /// The leader this node knows, if any.
    pub leader: Option<NodeId>,
    /// Highest index known committed.
    pub commit_index: Index,
    /// Highest index applied to the state machine.
    pub applied_index: Index,
    /// Last index in the log.
    pub last_index: Index,
    /// The voting members.
    pub members: Vec<NodeId>,
}

/// Counters an operator watches; monotonic except where noted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Commands proposed to the core by this node (its own and those forwarded to it).
    pub proposals: u64,
    /// Commands forwarded from this node to the leader.
    pub forwarded: u64,
    /// Entries applied to the state machine.
    pub applied: u64,
    /// Linearizable reads served.
    pub reads: u64,
    /// `fdatasync` calls on the log.
    pub fsyncs: u64,
    /// Total time spent in them, in microseconds.
    pub fsync_micros_total: u64,
    /// The longest one, in microseconds.
    pub fsync_micros_max: u64,
    /// Bytes written to the log.
    pub wal_bytes: u64,
    /// Elections this node started (pre-vote or real).
    pub elections: u64,
    /// Times this node became leader.
    pub became_leader: u64,
    /// Messages dropped: by the core (full outbox), by a full per-peer send queue, by a full
    /// inbox, or because the peer was not connected.
    pub messages_dropped: u64,
    /// Received messages the core refused (malformed, misaddressed).
    pub messages_refused: u64,
    /// Requests that failed with `Timeout`.
    pub timeouts: u64,
}

/// A running member. Dropping it shuts it down (as [`Node::shutdown`] does).
pub struct Node {
    handle: NodeHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A cheap, cloneable handle for submitting requests from any thread.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHandle")
            .field("id", &self.shared.id)
            .finish()
    }
}

impl Node {
    /// Recovers the log from `config.data_dir` (creating it if new), binds the transport, and
    /// starts the node thread.
    pub fn start<M: StateMachine>(
        config: NodeConfig,
        state_machine: M,
    ) -> Result<Node, StartError> {
        let (shared, thread) = driver::start(config, state_machine)?;
        Ok(Node {
            handle: NodeHandle { shared },
            thread: Some(thread),
        })
    }

    /// [`start`](Node::start) from async code: the log is recovered and the thread spawned on
    /// tokio's blocking pool, so the runtime's workers are not held up.
    #[cfg(feature = "tokio")]
    pub async fn start_async<M: StateMachine>(
        config: NodeConfig,
        state_machine: M,
    ) -> Result<Node, StartError> {
        tokio::task::spawn_blocking(move || Node::start(config, state_machine))
            .await
            .map_err(|e| StartError::Thread(std::io::Error::other(e)))?
    }

    /// A handle for requests.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// The address the transport listens on.
    pub fn raft_addr(&self) -> SocketAddr {
        self.handle.shared.raft_addr
    }

    /// Stops the node: pending requests fail with [`RequestError::Shutdown`], the log is synced,
    /// connections close, and the thread is joined.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.handle.shared.shutdown();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!(id = self.handle.shared.id.0, "node thread panicked");
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

impl NodeHandle {
    /// Replicates `command` and returns the state machine's response once it is applied on
    /// this node. On a follower the command is forwarded to the leader. Blocks at most about
    /// `request_timeout`.
    pub fn propose(&self, command: &[u8]) -> Result<Vec<u8>, RequestError> {
        self.shared.propose(command)?.wait()
    }

    /// Runs `query` against the state machine, linearizably: the answer reflects every write
    /// that completed before the call. Works on followers (ReadIndex through the leader).
    pub fn read(&self, query: &[u8]) -> Result<Vec<u8>, RequestError> {
        self.shared.read(query)?.wait()
    }

    /// [`propose`](NodeHandle::propose) as a future.
    #[cfg(feature = "tokio")]
    pub async fn propose_async(&self, command: &[u8]) -> Result<Vec<u8>, RequestError> {
        let pending = self.shared.propose(command)?;
        pending.await
    }

    /// [`read`](NodeHandle::read) as a future.
    #[cfg(feature = "tokio")]
    pub async fn read_async(&self, query: &[u8]) -> Result<Vec<u8>, RequestError> {
        let pending = self.shared.read(query)?;
        pending.await
    }

    /// The node's state as last published by its thread (at most one tick old).
    pub fn status(&self) -> NodeStatus {
        self.shared.status()
    }

    /// The node's counters.
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }
}
