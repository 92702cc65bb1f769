//! tikv/raft-rs (crate `raft` 0.7, protobuf codec) in the harness shape of tickraft's
//! `raft-core/benches/throughput.rs`, for a side-by-side figure on the same machine:
//!
//! - three `RawNode<MemStorage>` in one thread; the network is one preallocated byte buffer per
//!   node of length-prefixed frames, each message encoded with protobuf when sent and decoded
//!   when received (as tickraft's messages are encoded and decoded);
//! - each Ready handled in raft-rs's documented order: send `messages`, persist entries and hard
//!   state into the `MemStorage`, send `persisted_messages`, apply committed entries,
//!   `advance`, then the `LightReady` (commit index, messages, committed entries) and
//!   `advance_apply`;
//! - "N in flight": the leader keeps N proposals proposed and not yet committed; counted are
//!   committed entries applied at the leader;
//! - clocks tick every 1000 rounds; the applied prefix is compacted once half of 4096 entries;
//! - 16-byte entries; `max_size_per_msg` 16 KiB and 32 appends in flight per follower, as in
//!   tickraft's harness; pre-vote and check-quorum on, as in tickraft; everything else default.
//!
//! Before each measurement, a counting allocator reports heap allocations per committed entry
//! over 100k entries (counting is off while criterion measures).
//!
//! Run: `cargo bench --manifest-path examples/bench-raft-rs/Cargo.toml`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use protobuf::Message as _;
use raft::eraftpb::{EntryType, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole, Storage};
use slog::{o, Discard, Logger};

const PEERS: usize = 3;
const ENTRY_BYTES: usize = 16;
const ROUNDS_PER_TICK: u64 = 1000;
const COMPACT_AT: u64 = 4096 / 2;
const INBOX_BYTES: usize = 1 << 20;
const BATCH: u64 = 10_000;

/// Counts allocations and reallocations while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Cluster {
    nodes: Vec<RawNode<MemStorage>>,
    inboxes: Vec<Vec<u8>>,
    applied: [u64; PEERS],
    leader: usize,
    rounds: u64,
    proposals: u64,
}

impl Cluster {
    /// `skip_bcast_commit`: piggyback the commit index on the next append, as tickraft does,
    /// instead of raft-rs's default of broadcasting it in extra appends as soon as it moves.
    fn new(skip_bcast_commit: bool) -> Self {
        let logger = Logger::root(Discard, o!());
        let nodes = (1..=PEERS as u64)
            .map(|id| {
                let cfg = Config {
                    id,
                    election_tick: 10,
                    heartbeat_tick: 1,
                    max_size_per_msg: 16 * 1024,
                    max_inflight_msgs: 32,
                    pre_vote: true,
                    check_quorum: true,
                    ..Default::default()
                };
                let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
                let mut node = RawNode::new(&cfg, storage, &logger).expect("valid config");
                node.skip_bcast_commit(skip_bcast_commit);
                node
            })
            .collect();
        Cluster {
            nodes,
            inboxes: (0..PEERS)
                .map(|_| Vec::with_capacity(INBOX_BYTES))
                .collect(),
            applied: [0; PEERS],
            leader: 0,
            rounds: 0,
            proposals: 0,
        }
    }

    fn elect(&mut self) {
        self.nodes[0].campaign().expect("campaign");
        for _ in 0..100 {
            self.round(0);
            let r = &self.nodes[0].raft;
            if r.state == StateRole::Leader && r.raft_log.committed == r.raft_log.last_index() {
                return;
            }
        }
        panic!("no leader");
    }

    fn run(&mut self, entries: u64, inflight: u64) {
        let target = self.applied[self.leader] + entries;
        while self.applied[self.leader] < target {
            self.round(inflight);
        }
    }

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
        let inbox = &mut self.inboxes[k];
        let mut rest = &inbox[..];
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let (bytes, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
            let m = Message::parse_from_bytes(bytes).expect("well-formed message");
            node.step(m).expect("step");
            rest = tail;
        }
        inbox.clear();
    }

    fn top_up(&mut self, inflight: u64) {
        let node = &mut self.nodes[self.leader];
        if node.raft.state != StateRole::Leader {
            return;
        }
        let log = &node.raft.raft_log;
        let mut outstanding = log.last_index() - log.committed;
        while outstanding < inflight {
            let mut data = [0u8; ENTRY_BYTES];
            data[..8].copy_from_slice(&self.proposals.to_le_bytes());
            data[8..].copy_from_slice(&(!self.proposals).to_le_bytes());
            if node.propose(vec![], data.to_vec()).is_err() {
                break;
            }
            self.proposals += 1;
            outstanding += 1;
        }
    }

    fn handle_ready(&mut self, k: usize) {
        let node = &mut self.nodes[k];
        if !node.has_ready() {
            return;
        }
        let inboxes = &mut self.inboxes;
        let applied = &mut self.applied[k];
        let mut rd = node.ready();
        for m in rd.take_messages() {
            send(inboxes, &m);
        }
        let store = node.raft.raft_log.store.clone();
        if !rd.entries().is_empty() {
            store.wl().append(rd.entries()).expect("append");
        }
        if let Some(hs) = rd.hs() {
            store.wl().set_hardstate(hs.clone());
        }
        for m in rd.take_persisted_messages() {
            send(inboxes, &m);
        }
        apply(applied, &rd.take_committed_entries());
        let mut light = node.advance(rd);
        if let Some(commit) = light.commit_index() {
            store.wl().mut_hard_state().set_commit(commit);
        }
        for m in light.take_messages() {
            send(inboxes, &m);
        }
        apply(applied, &light.take_committed_entries());
        node.advance_apply();
        let first = store.first_index().expect("first");
        let last = store.last_index().expect("last");
        if last + 1 - first < COMPACT_AT {
            return;
        }
        let mut upto = node.raft.raft_log.applied;
        if node.raft.state == StateRole::Leader {
            for (_, p) in node.raft.prs().iter() {
                upto = upto.min(p.matched);
            }
        }
        store.wl().compact(upto).expect("compact");
    }
}

fn send(inboxes: &mut [Vec<u8>], m: &Message) {
    let inbox = &mut inboxes[m.to as usize - 1];
    let len = m.compute_size();
    inbox.extend_from_slice(&len.to_le_bytes());
    m.write_to_vec(inbox).expect("encode");
}

fn apply(applied: &mut u64, entries: &[raft::eraftpb::Entry]) {
    for e in entries {
        // The leader's empty entry of each term is not a proposal.
        if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
            *applied += 1;
        }
    }
}

fn throughput(c: &mut Criterion) {
    for (name, skip) in [("raft-rs", false), ("raft-rs-skip-bcast-commit", true)] {
        for inflight in [1u64, 256] {
            bench(c, name, skip, inflight);
        }
    }
}

fn bench(c: &mut Criterion, name: &str, skip_bcast_commit: bool, inflight: u64) {
    {
        let mut group = c.benchmark_group(format!("{name}/inflight_{inflight}"));
        group.throughput(Throughput::Elements(BATCH));
        let mut cluster = Cluster::new(skip_bcast_commit);
        cluster.elect();
        cluster.run(10 * BATCH, inflight);
        let before = (
            ALLOCATIONS.load(Ordering::Relaxed),
            cluster.applied[cluster.leader],
        );
        COUNTING.store(true, Ordering::Relaxed);
        cluster.run(10 * BATCH, inflight);
        COUNTING.store(false, Ordering::Relaxed);
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before.0;
        let entries = cluster.applied[cluster.leader] - before.1;
        eprintln!(
            "{name}, {inflight} in flight: {:.2} allocations/entry ({allocations} for {entries} \
             entries)",
            allocations as f64 / entries as f64
        );
        group.bench_function("commit_16B", |b| b.iter(|| cluster.run(BATCH, inflight)));
        group.finish();
        eprintln!(
            "{name}, {inflight} in flight: {} proposals, {} rounds",
            cluster.proposals, cluster.rounds
        );
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
