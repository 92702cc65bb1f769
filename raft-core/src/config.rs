//! Runtime configuration. Capacities are compile-time parameters of [`Node`](crate::Node);
//! everything here is checked against them by `Node::new`.

use crate::types::{Index, NodeId};

/// How a node behaves. Build one with [`Config::new`] and adjust fields.
#[derive(Clone, Copy, Debug)]
pub struct Config<'a> {
    /// This node's id (not 0).
    pub id: NodeId,
    /// The voters a new cluster starts with, this node included, the same on every founding
    /// member. Used only until the log or a snapshot holds a configuration (membership
    /// changes are log entries; see [`membership`](crate::membership)). Empty for a node that
    /// joins an existing cluster: it waits, not voting, until a leader adds it.
    pub voters: &'a [NodeId],
    /// A follower that hears nothing from a leader for a random number of ticks in
    /// `[election_ticks, 2 * election_ticks)` starts an election (Raft §5.2). Default 10.
    pub election_ticks: u32,
    /// A leader sends heartbeats every `heartbeat_ticks`. Default 1; must be below
    /// `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Seeds the election-timeout generator. Give each node a different seed (the node mixes in
    /// its id, so the same seed everywhere also works).
    pub seed: u64,
    /// Run a pre-vote round before raising the term (thesis §9.6), so that a node cut off from
    /// the cluster cannot disrupt it on return. Default on.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down; and
    /// followers that heard from a leader within one ignore vote requests (thesis §6.2, §4.2.3).
    /// Default on.
    pub check_quorum: bool,
    /// The most bytes of one append message on the wire. Default 8 KiB.
    pub max_append_bytes: usize,
    /// The largest payload `propose` accepts. Default 4 KiB.
    pub max_entry_bytes: usize,
    /// The most entries the leader lets stand uncommitted before `propose` answers `Busy`.
    /// Default 4096.
    pub max_uncommitted_entries: u64,
    /// Entries the host's state machine has already applied (on restart of a host whose state
    /// machine is itself durable); committed entries after it are handed out again. At least
    /// the storage's snapshot index (the host restores its state machine from the snapshot
    /// before creating the node). Default 0.
    pub applied: Index,
    /// The most snapshot bytes in one message. Must fit the outbox with its header. Default
    /// 16 KiB.
    pub max_snapshot_chunk: usize,
    /// A learner is promoted to voter only once its log lags the leader's by at most this many
    /// entries (and it replicates normally, not by snapshot). Default 1000.
    pub max_learner_lag: u64,
    /// Serve linearizable reads from the leader's lease, without a heartbeat round (thesis
    /// §6.4.1). Needs `check_quorum`. Default off.
    ///
    /// The lease rests on a clock assumption: every member's ticks run at the same rate,
    /// within one tick per election timeout. A leader whose heartbeat round sent at tick `t`
    /// was answered by a quorum knows that those members refuse votes (check-quorum) until
    /// `election_ticks` after they got it, so no other leader can exist before
    /// `t + election_ticks`; it serves reads until `t + election_ticks - 2`, two ticks of
    /// margin. A member that restarts refuses votes for its first election timeout, so that
    /// forgetting it heard from the leader cannot cut the lease short. A paused process or a
    /// clock that runs slow breaks this; ReadIndex does not depend on clocks at all.
    pub read_lease: bool,
}

impl<'a> Config<'a> {
    /// A configuration with the defaults above.
    pub const fn new(id: NodeId, voters: &'a [NodeId]) -> Self {
        Config {
            id,
            voters,
            election_ticks: 10,
            heartbeat_ticks: 1,
            seed: 0,
            pre_vote: true,
            check_quorum: true,
            max_append_bytes: 8 * 1024,
            max_entry_bytes: 4 * 1024,
            max_uncommitted_entries: 4096,
            applied: Index(0),
            max_snapshot_chunk: 16 * 1024,
            max_learner_lag: 1000,
            read_lease: false,
        }
    }
}
