//! # raft-std: tickraft on an operating system
//!
//! [`raft_core`] is the protocol with no I/O. This crate gives it what a real deployment needs:
//!
//! - [`wal`]: a segmented write-ahead log on disk, each record framed with its length and a
//!   CRC32C, one `fdatasync` per batch of writes (group commit), and recovery rules that never
//!   silently drop committed data;
//! - [`transport`]: TCP between members, one connection per pair, length-prefixed frames with a
//!   maximum size, a handshake that refuses strangers, reconnection with backoff, and a bounded
//!   send queue per peer;
//! - [`Node`]: a thread that owns the core, the log and the transport, ticks on a timer, batches
//!   proposals from any number of threads, applies committed entries to the host's
//!   [`StateMachine`] and answers each proposal with the state machine's response. Reads are
//!   linearizable through ReadIndex, on followers too (or from the leader's lease, opt-in);
//!   writes made on a follower are forwarded to the leader;
//! - [`snapshot`]: snapshot files (written to a temporary file, fsynced, renamed, the directory
//!   fsynced, checked end to end by a CRC32C). The node snapshots its state machine past a
//!   configured number of applied entries or log bytes (or on request), deletes the log
//!   segments below it, streams snapshots in CRC-checked chunks to followers that need them,
//!   and restarts from the latest snapshot plus the log after it;
//! - membership changes on a running cluster: [`NodeHandle::add_learner`],
//!   [`NodeHandle::promote`], [`NodeHandle::remove`] (joint consensus underneath, with the
//!   members' addresses carried in the configuration entries and snapshots), a node started
//!   with [`NodeConfig::join`] waiting to be added, and [`NodeHandle::transfer_leadership`].
//!
//! With the `tokio` feature (off by default), `NodeHandle::propose_async` and
//! `NodeHandle::read_async` offer the same requests as futures, and `Node::start_async` starts a
//! node from async code (recovering the log on tokio's blocking pool). The futures are answered
//! by the node thread through the same slot as the blocking calls, so they need no particular
//! runtime; the tests run them on tokio.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod node;
pub mod snapshot;
mod state_machine;
pub(crate) mod sync;
pub mod transport;
pub mod wal;

pub use node::{
    AdminError, MemberInfo, MemberRole, Metrics, Node, NodeConfig, NodeHandle, NodeStatus,
    RequestError, StartError,
};
pub use raft_core::{ConfChange, Index, NodeId, Role, Term};
pub use state_machine::{SnapshotView, StateMachine};
