//! The threaded node: one thread that owns the protocol core, the log and the transport.
//!
//! Requests from any number of threads go into one bounded queue ([`crate::sync`]). The node
//! thread takes everything queued at once, proposes it all, and writes the whole batch with one
//! `fdatasync`: that is the group commit, and it is why throughput grows with clients.

mod disk;
mod driver;
mod frame;
mod identity;
mod members;

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
    /// The members with their Raft addresses, this node included; the node listens on its own
    /// address. For a new cluster these are its founding voters. Once the log or a snapshot
    /// holds a configuration (after the first membership change), that configuration wins and
    /// this list only supplies addresses. With `join`, the known members of the cluster to
    /// join (any subset: the configuration and addresses arrive with the log).
    pub members: Vec<(NodeId, SocketAddr)>,
    /// Start with no configuration, waiting to be added to an existing cluster (as a learner,
    /// with [`NodeHandle::add_learner`] on a member): the node never campaigns until a
    /// configuration makes it a voter. Default false.
    pub join: bool,
    /// Take a snapshot (and compact the log) once this many entries were applied since the
    /// last one; 0: never by count. Default 100 000.
    pub snapshot_entries: u64,
    /// Take a snapshot once the log holds this many bytes; 0: never by size. Default 256 MiB.
    pub snapshot_bytes: u64,
    /// Entries kept in the log below a snapshot, so that a follower a little behind catches up
    /// from the log rather than by a whole snapshot. Default 1000.
    pub log_keep_entries: u64,
    /// The most snapshot bytes in one message to a follower. Default 1 MiB.
    pub snapshot_chunk_bytes: usize,
    /// Serve reads from the leader's lease instead of a heartbeat round (see raft-core's
    /// `Config::read_lease` for the clock assumption this rests on). Default false.
    pub read_lease: bool,
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
            join: false,
            snapshot_entries: 100_000,
            snapshot_bytes: 256 << 20,
            log_keep_entries: 1000,
            snapshot_chunk_bytes: 1 << 20,
            read_lease: false,
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

/// Why a membership change, transfer or snapshot request did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminError {
    /// No leader could be reached within the request timeout.
    NoLeader,
    /// The request reached the leader but did not complete in time; it may still take effect.
    Timeout,
    /// Not now, retry: a change is in flight, the learner has not caught up, a transfer is
    /// under way or aborted.
    Retry(String),
    /// Refused for good: the change is not valid for the current configuration.
    Invalid(String),
    /// The node's queues are full.
    Busy,
    /// The node has shut down.
    Shutdown,
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::NoLeader => f.write_str("no leader could be reached"),
            AdminError::Timeout => f.write_str("the outcome is unknown (timed out)"),
            AdminError::Retry(why) => write!(f, "not now, retry: {why}"),
            AdminError::Invalid(why) => write!(f, "refused: {why}"),
            AdminError::Busy => f.write_str("the node is busy; retry"),
            AdminError::Shutdown => f.write_str("the node has shut down"),
        }
    }
}

impl std::error::Error for AdminError {}

impl From<RequestError> for AdminError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NoLeader => AdminError::NoLeader,
            RequestError::Timeout => AdminError::Timeout,
            RequestError::Busy => AdminError::Busy,
            RequestError::Shutdown => AdminError::Shutdown,
            RequestError::TooLarge { .. } => AdminError::Invalid(e.to_string()),
        }
    }
}

/// A member's part in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberRole {
    /// Votes.
    Voter,
    /// Receives the log; does not vote.
    Learner,
    /// During a change: a voter of the new configuration only.
    Joining,
    /// During a change: a voter of the old configuration only, leaving.
    Leaving,
}

impl MemberRole {
    /// Lower-case name: voter, learner, joining, leaving.
    pub fn name(self) -> &'static str {
        match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
            MemberRole::Joining => "joining",
            MemberRole::Leaving => "leaving",
        }
    }
}

/// One member as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its id.
    pub id: NodeId,
    /// Its Raft address, if known.
    pub addr: Option<SocketAddr>,
    /// Its part in the configuration.
    pub role: MemberRole,
}

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
    /// The snapshots could not be recovered.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
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
    /// The voting members (of both halves during a change).
    pub members: Vec<NodeId>,
    /// Every member with its role and address: the configuration in effect (the latest in
    /// this node's log).
    pub membership: Vec<MemberInfo>,
    /// The index of the latest snapshot (0 if none).
    pub snapshot_index: Index,
    /// The first index still in the log.
    pub first_index: Index,
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
    /// Snapshots this node took.
    pub snapshots_taken: u64,
    /// Snapshots this node received from a leader and installed.
    pub snapshots_installed: u64,
    /// Snapshots this node sent to followers (to the end).
    pub snapshots_sent: u64,
    /// Reads this leader answered from its lease, without a heartbeat round (with
    /// [`NodeConfig::read_lease`]).
    pub lease_reads: u64,
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

    /// Adds `id`, listening at `addr`, as a learner: it receives the log (or a snapshot) but
    /// does not vote. Returns the configuration entry's index once it is committed. From a
    /// follower the request is forwarded to the leader.
    pub fn add_learner(&self, id: NodeId, addr: SocketAddr) -> Result<Index, AdminError> {
        self.shared.admin(frame::AdminOp::AddLearner(id, addr))
    }

    /// Makes learner `id` a voter, once it has caught up with the leader's log (otherwise
    /// [`AdminError::Retry`]). The change goes through the joint configuration; this returns
    /// once the first of its two entries is committed.
    pub fn promote(&self, id: NodeId) -> Result<Index, AdminError> {
        self.shared.admin(frame::AdminOp::Promote(id))
    }

    /// Removes member `id` (a voter through the joint configuration). A removed leader steps
    /// down once the change commits and hands over to an up-to-date voter.
    pub fn remove(&self, id: NodeId) -> Result<Index, AdminError> {
        self.shared.admin(frame::AdminOp::Remove(id))
    }

    /// Hands leadership to voter `to`, and returns once it leads (as far as this node can
    /// tell), or with [`AdminError::Retry`] if the transfer aborted (it did not complete
    /// within an election timeout).
    pub fn transfer_leadership(&self, to: NodeId) -> Result<(), AdminError> {
        self.shared.admin(frame::AdminOp::Transfer(to)).map(|_| ())
    }

    /// Takes a snapshot on this node now (of everything applied), compacts the log below it,
    /// and returns its index.
    pub fn snapshot(&self) -> Result<Index, AdminError> {
        self.shared.snapshot()
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
