//! # raft-core: Raft with no I/O, no clock and no heap
//!
//! A [`Node`] is one member's protocol state machine. It never allocates, never blocks and
//! never reads a clock or a random source of its own: the host feeds it inputs and carries out
//! what it asks. Every buffer has a capacity fixed at compile time (see [`Node`]), and
//! exceeding one is an error the host sees ([`ProposeError::Busy`], ...), never a panic and
//! never a silently lost proposal.
//!
//! ## The contract
//!
//! **Inputs.** Call [`Node::tick`] at a fixed interval (elections and heartbeats are counted in
//! ticks). Hand every message received from a peer to [`Node::step`] (plain bytes in; bytes
//! that are not a valid message are refused with an error and change nothing). Submit client
//! commands with [`Node::propose`] on the leader and reads with [`Node::read_index`].
//!
//! **Output.** After inputs, if [`Node::has_ready`], take a [`Ready`] with [`Node::ready`] and do
//! its duties in this order:
//!
//! 1. **Send** [`Ready::messages`]. These are the leader's appends and heartbeats; a leader may
//!    send them before its own write because it counts its own copy of an entry only once
//!    persisted (thesis §10.2.1).
//! 2. **Persist** [`Ready::hard_state`] (term, vote, commit) and append [`Ready::entries`] to
//!    the log, truncating where the first of them starts. Make both durable
//!    ([`Ready::must_sync`] says whether an fsync is needed).
//! 3. **Send** [`Ready::persisted_messages`], only now: votes and acknowledgements promise the
//!    state persisted in step 2 (a follower or candidate must never send one first).
//! 4. **Apply** [`Ready::committed_entries`] to the state machine in order (skip
//!    [`EntryKind::Noop`] entries), and serve each of [`Ready::read_states`] once applied
//!    through its index. This step may also come before the write of step 2 is durable
//!    (once the entries are readable from the storage or the `Ready`): committed entries are
//!    durable on a quorum already, so answering their clients need not wait for this node's
//!    next fsync. raft-std does this.
//! 5. **Advance**: drop the `Ready` and call [`Node::advance`].
//!
//! A leader's host may also sync off its event loop (thesis §10.2.1). When
//! [`Ready::can_defer_sync`] (nothing in the `Ready` promises durability to anyone), write the
//! entries so that the storage can read them, start the sync, and call
//! [`Node::advance_unsynced`] instead of `advance`; when the sync completes, report it with
//! [`Node::persisted`]. The leader counts its own copy of those entries only then. A later
//! `advance` means a sync covered everything written before it.
//!
//! The node is deterministic: the same configuration (including [`Config::seed`]) and the
//! same sequence of inputs produce the same outputs, bit for bit.
//!
//! ## The event loop
//!
//! A three-node cluster in one process, with the network as a queue of byte vectors. A real
//! host replaces the queue by sockets and [`MemStorage`] by a durable log; the loop stays the
//! same.
//!
//! ```
//! use raft_core::{Config, EntryKind, MemStorage, Node, NodeId, Role};
//!
//! let ids = [NodeId(1), NodeId(2), NodeId(3)];
//! let mut nodes: Vec<Node<MemStorage>> = ids
//!     .iter()
//!     .map(|&id| {
//!         let mut cfg = Config::new(id, &ids);
//!         cfg.seed = 7;
//!         Node::new(&cfg, MemStorage::new()).expect("valid config")
//!     })
//!     .collect();
//! let mut network: Vec<(NodeId, Vec<u8>)> = Vec::new();
//! let mut applied: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
//! let mut proposed = false;
//!
//! for _ in 0..200 {
//!     // Inputs: the clock, the network, the clients.
//!     for node in nodes.iter_mut() {
//!         node.tick();
//!     }
//!     for (to, bytes) in std::mem::take(&mut network) {
//!         let node = &mut nodes[to.0 as usize - 1];
//!         node.step(&bytes).expect("well-formed message from a member");
//!     }
//!     if !proposed {
//!         if let Some(leader) = nodes.iter_mut().find(|n| n.role() == Role::Leader) {
//!             leader.propose(b"x=1").expect("leader accepts");
//!             proposed = true;
//!         }
//!     }
//!     // Outputs: the Ready duties, in order.
//!     for (k, node) in nodes.iter_mut().enumerate() {
//!         if !node.has_ready() {
//!             continue;
//!         }
//!         let rd = node.ready();
//!         // 1. The leader's appends may go out before its own write.
//!         for m in rd.messages {
//!             network.push((m.to, m.bytes.to_vec()));
//!         }
//!         // 2. Persist hard state and entries (a real host fsyncs here).
//!         if let Some(hs) = rd.hard_state {
//!             rd.storage.set_hard_state(hs);
//!         }
//!         rd.storage.append(rd.entries).expect("storage has room");
//!         // 3. Votes and acknowledgements only after persisting.
//!         for m in rd.persisted_messages {
//!             network.push((m.to, m.bytes.to_vec()));
//!         }
//!         // 4. Apply committed entries.
//!         for entry in rd.committed_entries() {
//!             let entry = entry.expect("storage holds what it was given");
//!             if entry.kind == EntryKind::Normal {
//!                 applied[k].push(entry.data.to_vec());
//!             }
//!         }
//!         // 5. Advance.
//!         node.advance();
//!     }
//! }
//! assert!(applied.iter().all(|a| a == &[b"x=1".to_vec()]));
//! ```
//!
//! ## Protocol
//!
//! Raft as in the paper (§5), with from the thesis: pre-vote (§9.6) and check-quorum (§6.2),
//! both on by default; a no-op entry from each new leader (§8); commitment only by counting
//! replicas of current-term entries (§5.4.2); rejection hints for fast log backtracking;
//! Probe/Replicate flow control with a bounded window of appends in flight per follower;
//! batching of all proposals since the last `Ready` into one append per follower; ReadIndex
//! (§6.4).
//!
//! ## Wire format
//!
//! See [`message`]: one version byte, a postcard header, then the entries of an append back to
//! back. Decoding never panics and borrows entry payloads from the input.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod config;
mod crc;
mod error;
mod log;
pub mod membership;
pub mod message;
mod node;
mod outbox;
mod quorum;
mod raft;
mod rand;
mod read_index;
mod ready;
mod storage;
mod tracker;
mod types;
mod wire;

pub use config::Config;
pub use crc::crc32c;
pub use error::{
    CampaignError, ConfigError, DecodeError, EncodeError, ProposeError, ReadError, StepError,
    StorageError, TransferError,
};
pub use membership::{ConfChange, ConfigEntry, Member, Membership, MembershipError, MAX_MEMBERS};
pub use message::{Body, Entry, EntryKind, EntryList, Message, RejectHint};
pub use node::{Node, PeerProgress, Status};
pub use outbox::{MessageIter, Messages, Outgoing};
pub use raft::{Counters, Role};
pub use read_index::ReadState;
pub use ready::{CommittedEntries, Entries, EntriesIter, Ready, SnapshotChunk};
pub use storage::{HardState, MemStorage, SnapshotMeta, Storage};
pub use tracker::ProgressState;
pub use types::{Index, NodeId, Term};

/// The node type a C or Python host uses: default capacities over a [`MemStorage`] with room
/// for 1024 entries and 64 KiB of payload.
pub type DefaultNode = Node<MemStorage>;
