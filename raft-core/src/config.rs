//! Runtime configuration. Capacities are compile-time parameters of [`Node`](crate::Node);
//! everything here is checked against them by `Node::new`.

use crate::types::{Index, NodeId};

/// How a node behaves. Build one with [`Config::new`] and adjust fields.
#[derive(Clone, Copy, Debug)]
pub struct Config<'a> {
    /// This node's id (not 0).
    pub id: NodeId,
    /// Every voting member, this node included. Membership changes are not supported yet, so
    /// this list is the membership for the node's whole life, and must be the same on every node.
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
    /// machine is itself durable); committed entries after it are handed out again. Default 0.
    pub applied: Index,
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
        }
    }
}
