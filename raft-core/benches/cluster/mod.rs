//! A three-node cluster in one thread, driven the way the crate docs' event loop drives one, for
//! the throughput benchmark (`benches/throughput.rs`) and the allocation test (`tests/alloc.rs`).
//! One copy, included by both.
//!
//! - The network is one preallocated byte buffer per node holding length-prefixed frames; it is
//!   cleared, never freed, so after warm-up nothing allocates.
//! - Every `Ready` is handled as the contract says: send `messages`, persist hard state and
//!   entries into the node's [`MemStorage`], send `persisted_messages`, apply committed entries,
//!   `advance`. Once a storage is half full, its applied prefix is compacted (on the leader,
//!   only what every follower holds), so it never fills.
//! - "N in flight": the leader keeps N proposals outstanding, proposed and not yet committed.
//!   What is counted is committed entries applied at the leader.
//! - The clock ticks once every [`ROUNDS_PER_TICK`] rounds, so heartbeats and check-quorum run
//!   as they would under a real timer, rarely compared with the entries.
//!
//! A round: for each node in id order, deliver its inbox, top up the leader's proposals, handle
//! its `Ready`. With the leader first, a follower acknowledges an append in the round it is
//! sent, and the leader commits it at the start of the next.
#![allow(dead_code)] // each including target uses a different part

use raft_core::{Config, EntryKind, MemStorage, Node, NodeId, Role, Storage};

/// Members.
pub(crate) const PEERS: usize = 3;
/// Appends in flight per follower (`INFLIGHT`).
pub(crate) const INFLIGHT_APPENDS: usize = 32;
/// Unstable (not yet persisted) entries and bytes: one Ready's worth of proposals and more.
/// Small buffers are faster: the rings are walked through, so their size is cache footprint.
pub(crate) const LOG_ENTRIES: usize = 512;
/// See [`LOG_ENTRIES`].
pub(crate) const LOG_BYTES: usize = 16 * 1024;
/// Encoded messages per Ready.
pub(crate) const OUTBOX_BYTES: usize = 64 * 1024;
/// Pending reads (none are used here).
pub(crate) const READS: usize = 4;
/// Entries and payload bytes the storage holds between compactions.
pub(crate) const STORE_ENTRIES: usize = 1024;
/// See [`STORE_ENTRIES`].
pub(crate) const STORE_BYTES: usize = 32 * 1024;
/// The most bytes in one append: 256 entries of 16 bytes and their framing fit in one.
pub(crate) const MAX_APPEND_BYTES: usize = 16 * 1024;
/// Entries in a node's storage that trigger compaction of its applied prefix.
pub(crate) const COMPACT_AT: usize = STORE_ENTRIES / 2;
/// Payload of every proposal.
pub(crate) const ENTRY_BYTES: usize = 16;
/// Rounds between two ticks of every node's clock.
pub(crate) const ROUNDS_PER_TICK: u64 = 1000;
/// Capacity of each node's inbox; a round never comes near it.
const INBOX_BYTES: usize = 1 << 20;

/// The storage of each node.
pub(crate) type Store = MemStorage<STORE_ENTRIES, STORE_BYTES>;
/// The node type under test.
pub(crate) type BenchNode =
    Node<Store, PEERS, INFLIGHT_APPENDS, LOG_ENTRIES, LOG_BYTES, OUTBOX_BYTES, READS>;

const IDS: [NodeId; PEERS] = [NodeId(1), NodeId(2), NodeId(3)];

/// A node's replicated state machine: how many normal entries it applied and an order-sensitive
/// checksum of them, so that the nodes can be compared. Cheap on purpose (a rotate and an xor per
/// 8 bytes), so that the benchmark measures replication rather than the state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Normal entries applied.
    pub(crate) count: u64,
    /// Checksum of the payloads, in order.
    pub(crate) sum: u64,
}

impl Applied {
    fn apply(&mut self, data: &[u8]) {
        let mut h = self.sum.rotate_left(5) ^ data.len() as u64;
        for word in data.chunks(8) {
            let mut w = [0u8; 8];
            w[..word.len()].copy_from_slice(word);
            h = h.rotate_left(9) ^ u64::from_le_bytes(w);
        }
        self.sum = h;
        self.count += 1;
    }
}

/// Length-prefixed frames for one node, in a buffer allocated once.
struct Inbox {
    buf: Vec<u8>,
}

impl Inbox {
    fn new() -> Self {
        Inbox {
            buf: Vec::with_capacity(INBOX_BYTES),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("a message is far below 4 GiB");
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(bytes);
    }
}

/// The cluster. Build it with [`Cluster::new`], then [`Cluster::elect`] and [`Cluster::run`].
pub(crate) struct Cluster {
    nodes: Vec<Box<BenchNode>>,
    inboxes: Vec<Inbox>,
    applied: [Applied; PEERS],
    leader: usize,
    proposals: u64,
    rounds: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    /// Three fresh nodes and an empty network.
    pub(crate) fn new() -> Self {
        let nodes = IDS
            .iter()
            .map(|&id| {
                let mut cfg = Config::new(id, &IDS);
                cfg.seed = 7;
                cfg.max_append_bytes = MAX_APPEND_BYTES;
                Box::new(BenchNode::new(&cfg, Store::new()).expect("valid config"))
            })
            .collect();
        Cluster {
            nodes,
            inboxes: (0..PEERS).map(|_| Inbox::new()).collect(),
            applied: [Applied::default(); PEERS],
            leader: 0,
            proposals: 0,
            rounds: 0,
        }
    }

    /// Makes node 1 leader and runs until its no-op is committed and applied everywhere.
    pub(crate) fn elect(&mut self) {
        self.nodes[0]
            .campaign()
            .expect("node 1 is a follower voter");
        for _ in 0..100 {
            self.round(0);
            let n = &self.nodes[0];
            let s = n.status();
            if n.role() == Role::Leader && s.commit == s.last_index && s.applied == s.commit {
                self.leader = 0;
                return;
            }
        }
        panic!("no leader after 100 rounds");
    }

    /// Runs until the leader has applied `entries` more normal entries, keeping `inflight`
    /// proposals outstanding.
    pub(crate) fn run(&mut self, entries: u64, inflight: u64) {
        let target = self.applied[self.leader].count + entries;
        while self.applied[self.leader].count < target {
            self.round(inflight);
        }
    }

    /// Runs without proposing, ticking every round so heartbeats carry the commit index to the
    /// followers, until every proposal is applied on every node.
    pub(crate) fn drain(&mut self) {
        for _ in 0..1000 {
            if self.applied.iter().all(|a| a.count == self.proposals) {
                return;
            }
            for n in self.nodes.iter_mut() {
                n.tick();
            }
            self.round(0);
        }
        panic!("proposals not applied everywhere: {:?}", self.applied);
    }

    /// What each node applied.
    pub(crate) fn applied(&self) -> [Applied; PEERS] {
        self.applied
    }

    /// Proposals accepted so far.
    pub(crate) fn proposals(&self) -> u64 {
        self.proposals
    }

    /// Rounds run so far.
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds
    }

    /// The leader, as a node.
    pub(crate) fn leader(&self) -> &BenchNode {
        &self.nodes[self.leader]
    }

    /// One round: every node takes its messages and hands out its Ready, in id order.
    fn round(&mut self, inflight: u64) {
        self.rounds += 1;
        if self.rounds.is_multiple_of(ROUNDS_PER_TICK) {
            for n in self.nodes.iter_mut() {
                n.tick();
            }
        }
        for k in 0..PEERS {
            self.deliver(k);
            if k == self.leader {
                self.top_up(inflight);
            }
            self.handle_ready(k);
        }
    }

    fn deliver(&mut self, k: usize) {
        let node = &mut self.nodes[k];
        let inbox = &mut self.inboxes[k].buf;
        let mut rest = &inbox[..];
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let (bytes, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
            node.step(bytes).expect("well-formed message from a member");
            rest = tail;
        }
        inbox.clear();
    }

    /// Proposes until `inflight` proposals are uncommitted at the leader.
    fn top_up(&mut self, inflight: u64) {
        let node = &mut self.nodes[self.leader];
        if node.role() != Role::Leader {
            return;
        }
        let s = node.status();
        let mut outstanding = s.last_index.0 - s.commit.0;
        while outstanding < inflight {
            let mut data = [0u8; ENTRY_BYTES];
            data[..8].copy_from_slice(&self.proposals.to_le_bytes());
            data[8..].copy_from_slice(&(!self.proposals).to_le_bytes());
            if node.propose(&data).is_err() {
                // Backpressure (Busy): retry next round.
                break;
            }
            self.proposals += 1;
            outstanding += 1;
        }
    }

    /// The Ready duties, in the contract's order, then compaction of the applied prefix.
    fn handle_ready(&mut self, k: usize) {
        let node = &mut self.nodes[k];
        if !node.has_ready() {
            return;
        }
        let inboxes = &mut self.inboxes;
        let applied = &mut self.applied[k];
        let rd = node.ready();
        // 1. The leader's appends may go out before its own write.
        for m in rd.messages {
            inboxes[index_of(m.to)].push(m.bytes);
        }
        // 2. Persist hard state and entries.
        if let Some(hs) = rd.hard_state {
            rd.storage.set_hard_state(hs);
        }
        rd.storage.append(rd.entries).expect("storage has room");
        // 3. Votes and acknowledgements only after persisting.
        for m in rd.persisted_messages {
            inboxes[index_of(m.to)].push(m.bytes);
        }
        // 4. Apply committed entries.
        for entry in rd.committed_entries() {
            let entry = entry.expect("storage holds what it was given");
            if entry.kind == EntryKind::Normal {
                applied.apply(entry.data);
            }
        }
        // 5. Advance.
        node.advance();
        // Once the log is half full, compact what is applied here and, on the leader, held by
        // every follower (without snapshots a follower can only catch up from the log).
        if node.storage().len() < COMPACT_AT {
            return;
        }
        let mut upto = node.status().applied;
        if node.role() == Role::Leader {
            for id in IDS {
                if let Some(p) = node.progress(id) {
                    upto = upto.min(p.matched);
                }
            }
        }
        if upto >= node.storage().first_index() {
            node.storage_mut()
                .compact(upto)
                .expect("applied entries are held");
        }
    }
}

fn index_of(id: NodeId) -> usize {
    id.0 as usize - 1
}
