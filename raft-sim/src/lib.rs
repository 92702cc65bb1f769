//! # raft-sim: a deterministic simulator for raft-core
//!
//! N [`raft_core::Node`]s in one process on one virtual clock, with a network that loses,
//! delays, duplicates and reorders messages per link, partitions, and crashes that lose what a
//! node had not persisted. Disk writes take virtual time too, so a crash can land in the middle
//! of one. Everything random comes from the seed: the same seed and the same script give the
//! same run, event for event ([`Trace::hash`]).
//!
//! After every event the simulator checks the safety properties of Raft (Figure 3 of the
//! paper) and stops with a [`Violation`] naming the seed:
//!
//! - **election safety**: at most one leader per term, over the whole run;
//! - **log matching**: an (index, term) pair denotes the same entry and the same prefix on
//!   every disk (checked with prefix hashes as entries are persisted, and for the point a
//!   snapshot stands for when it is installed);
//! - **leader completeness**: a new leader holds every entry applied anywhere so far (the
//!   compacted prefix through its snapshot, whose history must be the committed one);
//! - **state machine safety**: every node applies the same entry at each index, and a state
//!   machine restored from a snapshot at `i` is exactly the state every node had after
//!   applying through `i`;
//! - **monotonic commit** and **in-order apply**, per node; and a term never goes back, nor a
//!   vote change within a term, on any disk.
//!
//! These hold with membership changing: nodes can join ([`Sim::add_node`], empty and waiting
//! to be added) and configurations change through [`Sim::propose_conf_change`]; a removed node
//! keeps running until the script crashes it. Snapshots are taken automatically
//! ([`SimConfig::snapshot_every`]) or by the script ([`Sim::snapshot`]), sent in chunks to
//! followers that need them, and installed ([`SimStorage`] says what survives a crash).
//!
//! ```
//! use raft_sim::{Sim, SimConfig};
//!
//! let mut sim = Sim::new(SimConfig::new(3, 42));
//! let leader = sim.run_until_leader(1_000_000).expect("safe").expect("elected");
//! sim.propose(leader, b"hello").expect("leader accepts");
//! assert!(sim.run_until_agreement(1_000_000).expect("safe"));
//! assert_eq!(sim.acked().len(), 1);
//! ```
#![deny(missing_docs)]

mod host;
mod net;
mod rng;
mod sim;
mod state;
mod storage;
mod trace;

pub use net::LinkConfig;
pub use rng::SimRng;
pub use sim::{CommittedEntry, Sim, SimConfig, SimNode, Violation};
pub use state::StateMachine;
pub use storage::{SimSnapshot, SimStorage, StoredEntry};
pub use trace::{DropReason, Event, EventKind, MsgSummary, Trace};
