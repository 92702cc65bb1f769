//! A three-node cluster driven only through raft-core's public API, plus a checker of each
//! node's local safety invariants after every input, and a vocabulary of hostile inputs.
//!
//! Shared by `tests/hostile.rs` (proptest picks the inputs) and the `step` fuzz target
//! (`fuzz/fuzz_targets/step.rs`, libFuzzer picks them); both include this file by path.
//!
//! Hostile messages impersonate members, so safety *across* nodes (one leader per term, equal
//! committed prefixes) is out of reach: Raft does not tolerate Byzantine peers. What must hold
//! whatever arrives is each node's own promise to its host, checked after every input:
//!
//! - no panic;
//! - the term never decreases; within a term the vote never changes once cast;
//! - the commit index never decreases and never exceeds the last index;
//! - an entry at or below the commit index never changes while the node runs, and an entry
//!   handed to the host in `committed_entries` never changes at all, restarts included (a
//!   snapshot installed from a hostile leader replaces the log before its index; what is
//!   checked then is the log after it);
//! - a `Ready` that installs a snapshot hands out no entries and no committed entries;
//! - `step` refuses undecodable bytes, a wrong recipient, a non-member or self as sender with
//!   exactly that error, and any error leaves the node's status unchanged;
//! - the storage the node wrote through its `Ready`s is one it can restart from.
#![allow(dead_code)] // each includer uses a different subset

use std::collections::{BTreeMap, VecDeque};

use raft_core::message::{ENTRY_OVERHEAD, MAX_HEADER_LEN};
use raft_core::{
    Body, Config, Counters, Entry, EntryKind, EntryList, HardState, Index, MemStorage, Message,
    Node, NodeId, RejectHint, Role, Status, StepError, Storage, Term,
};

pub(crate) const IDS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

/// Real messages remembered for replays and mutations.
const HISTORY: usize = 32;

// ----- hostile inputs -----

/// A term named relative to the recipient's, so random messages hit the interesting cases
/// (same term, one ahead, stale) as well as the extremes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TermSel {
    Current,
    Ahead(u8),
    Behind(u8),
    Zero,
    Max,
    Raw(u64),
}

/// An index named relative to the recipient's log.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IndexSel {
    Last(i8),
    Commit(i8),
    Zero,
    Max,
    Raw(u64),
}

/// A sender or recipient.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PeerSel {
    /// The node the message is stepped into.
    Recipient,
    /// `IDS[j % 3]` (which may be the recipient).
    Member(u8),
    /// `NodeId(0)`.
    Nobody,
    /// Anything at all (mostly not a member).
    Stranger(u64),
}

#[derive(Clone, Debug)]
pub(crate) struct EntrySel {
    /// `None`: the message's term (what a real leader sends).
    pub(crate) term: Option<TermSel>,
    pub(crate) noop: bool,
    pub(crate) data: Vec<u8>,
}

#[derive(Clone, Debug)]
pub(crate) enum BodySel {
    PreVote {
        last_index: IndexSel,
        last_term: TermSel,
    },
    PreVoteResponse {
        reject: bool,
    },
    Vote {
        last_index: IndexSel,
        last_term: TermSel,
        transfer: bool,
    },
    VoteResponse {
        reject: bool,
    },
    Append {
        prev_index: IndexSel,
        /// `None`: the recipient's own term at `prev_index`, so that the append matches.
        prev_term: Option<TermSel>,
        commit: IndexSel,
        entries: Vec<EntrySel>,
    },
    AppendResponse {
        index: IndexSel,
        reject: Option<(IndexSel, TermSel)>,
    },
    Heartbeat {
        commit: IndexSel,
        round: u64,
    },
    HeartbeatResponse {
        round: u64,
    },
    ReadIndex {
        context: u64,
    },
    ReadIndexResponse {
        context: u64,
        index: IndexSel,
    },
    /// A snapshot chunk. `index` and `term` are made at least 1, and `len` at least the end
    /// of the chunk (`offset + data.len() + extra`), so that it decodes.
    Snapshot {
        index: IndexSel,
        term: TermSel,
        offset: u64,
        extra: u64,
        members: MembersSel,
        data: Vec<u8>,
        /// The CRC of `data`, or a wrong one.
        good_crc: bool,
    },
    SnapshotResponse {
        index: IndexSel,
        next: u64,
    },
    TimeoutNow,
}

/// The configuration a snapshot chunk carries: members of `IDS` only (a stranger that is a
/// member could win this node's vote, which the checker forbids), by bit: bit `j` makes
/// `IDS[j]` a member, bit `j + 3` a learner rather than a voter. A configuration with members
/// but no voter is made all voters so that it decodes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MembersSel(pub(crate) u8);

impl MembersSel {
    fn membership(self) -> raft_core::Membership {
        let voters: Vec<NodeId> = (0..3)
            .filter(|&j| self.0 & (1 << j) != 0 && self.0 & (1 << (j + 3)) == 0)
            .map(|j| IDS[j])
            .collect();
        let learners: Vec<NodeId> = (0..3)
            .filter(|&j| self.0 & (1 << j) != 0 && self.0 & (1 << (j + 3)) != 0)
            .map(|j| IDS[j])
            .collect();
        if voters.is_empty() {
            return raft_core::Membership::with_voters(&learners).expect("valid ids");
        }
        let m = raft_core::Membership::with_voters(&voters).expect("valid ids");
        let add: Vec<raft_core::ConfChange> = learners
            .iter()
            .map(|&l| raft_core::ConfChange::AddLearner(l))
            .collect();
        m.apply(&add).expect("learners are new")
    }
}

/// A well-formed message (it encodes and decodes) with hostile contents.
#[derive(Clone, Debug)]
pub(crate) struct Hostile {
    pub(crate) from: PeerSel,
    pub(crate) to: PeerSel,
    pub(crate) term: TermSel,
    pub(crate) body: BodySel,
    /// Step the decoded message (`step_message`) instead of its bytes (`step`).
    pub(crate) decoded: bool,
}

/// An edit of an encoded message.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mutation {
    Flip { pos: usize, bit: u8 },
    Set { pos: usize, byte: u8 },
    Insert { pos: usize, byte: u8 },
    Remove { pos: usize },
    Truncate { len: usize },
}

pub(crate) fn mutate(bytes: &mut Vec<u8>, m: Mutation) {
    let n = bytes.len();
    match m {
        Mutation::Flip { pos, bit } if n > 0 => bytes[pos % n] ^= 1 << (bit % 8),
        Mutation::Set { pos, byte } if n > 0 => bytes[pos % n] = byte,
        Mutation::Insert { pos, byte } => bytes.insert(pos % (n + 1), byte),
        Mutation::Remove { pos } if n > 0 => {
            bytes.remove(pos % n);
        }
        Mutation::Truncate { len } => bytes.truncate(len % (n + 1)),
        _ => {}
    }
}

/// One input to the cluster. Node numbers count from the target node: `0` is the target,
/// `1` and `2` the others (modulo 3).
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Tick(usize),
    /// A full Ready cycle: send, persist, send, apply, advance.
    Ready(usize),
    /// A Ready cycle with a hostile message stepped after persisting and before `advance`.
    ReadyThenStep(usize, Hostile),
    /// The oldest real message in flight: delivered, dropped, or delivered and kept for later.
    Deliver {
        drop: bool,
        duplicate: bool,
    },
    Step(usize, Hostile),
    Bytes(usize, Vec<u8>),
    /// A real message (in flight or past), edited, stepped into its recipient.
    Mutate {
        pick: usize,
        edits: Vec<Mutation>,
    },
    /// A past real message delivered again: duplicated, stale, reordered.
    Replay(usize),
    Propose(usize, Vec<u8>),
    ReadIndex(usize, u64),
    Campaign(usize),
    /// Crash and restart from what the node persisted.
    Restart(usize),
}

/// The role the target node is put in before the hostile inputs start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scenario {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

pub(crate) const SCENARIOS: [Scenario; 4] = [
    Scenario::Follower,
    Scenario::PreCandidate,
    Scenario::Candidate,
    Scenario::Leader,
];

// ----- the cluster -----

type Rec = (Term, EntryKind, Vec<u8>);

/// What the checker has seen of one node.
#[derive(Default)]
struct Watch {
    term: Term,
    vote: NodeId,
    commit: Index,
    /// Entries at or below the commit index, as first seen: a running node never changes them.
    committed: BTreeMap<u64, Rec>,
    /// Entries handed out by `committed_entries`, as first handed out: never change, restarts
    /// included.
    applied: BTreeMap<u64, Rec>,
    /// The index `committed_entries` must hand out next.
    next_apply: u64,
    /// The hard state the host last wrote.
    persisted: HardState,
}

pub(crate) struct Cluster {
    nodes: Vec<Option<Node<MemStorage>>>,
    watch: Vec<Watch>,
    seed: u64,
    target: usize,
    /// Real messages in flight: (recipient, bytes).
    net: VecDeque<(NodeId, Vec<u8>)>,
    history: VecDeque<(NodeId, Vec<u8>)>,
    /// Whether real messages must be accepted (while setting up, before anything hostile).
    honest: bool,
}

fn config(id: NodeId, seed: u64) -> Config<'static> {
    let mut cfg = Config::new(id, &IDS);
    cfg.seed = seed;
    cfg
}

fn index_of(id: NodeId) -> Option<usize> {
    IDS.iter().position(|&i| i == id)
}

fn same(e: &Entry<'_>, r: &Rec) -> bool {
    e.term == r.0 && e.kind == r.1 && e.data == &r.2[..]
}

fn rec(e: &Entry<'_>) -> Rec {
    (e.term, e.kind, e.data.to_vec())
}

impl Cluster {
    /// Three fresh nodes.
    pub(crate) fn new(seed: u64) -> Self {
        let nodes = IDS
            .iter()
            .map(|&id| Some(Node::new(&config(id, seed), MemStorage::new()).expect("valid config")))
            .collect();
        let mut c = Cluster {
            nodes,
            watch: (0..3)
                .map(|_| Watch {
                    next_apply: 1,
                    ..Watch::default()
                })
                .collect(),
            seed,
            target: 0,
            net: VecDeque::new(),
            history: VecDeque::new(),
            honest: true,
        };
        for k in 0..3 {
            c.check(k);
        }
        c
    }

    /// A cluster that elected a leader and committed a few entries, with its target node in
    /// the role `scenario` names, reached through the public API only.
    pub(crate) fn with_target(scenario: Scenario, seed: u64) -> Self {
        let mut c = Cluster::new(seed);
        c.settle();
        let leader = c.leader().expect("settled");
        let follower = (leader + 1 + (seed % 2) as usize) % 3;
        c.target = match scenario {
            Scenario::Leader => leader,
            Scenario::Follower => follower,
            Scenario::PreCandidate | Scenario::Candidate => {
                c.isolate_until_pre_candidate(follower);
                if scenario == Scenario::Candidate {
                    // A pre-vote grant from one peer is a majority with its own.
                    let term = c.node(follower).term();
                    let grant = Message {
                        from: IDS[leader],
                        to: IDS[follower],
                        term: Term(term.0 + 1),
                        body: Body::PreVoteResponse { reject: false },
                    };
                    let mut buf = [0u8; MAX_HEADER_LEN];
                    let n = grant.encode(&mut buf).expect("fits");
                    c.step_checked(follower, &buf[..n]).expect("grant accepted");
                    assert_eq!(c.node(follower).role(), Role::Candidate);
                }
                follower
            }
        };
        c.honest = false;
        c
    }

    /// Runs the cluster with a perfect network until it has a leader and every node applied
    /// two proposals.
    fn settle(&mut self) {
        let mut proposed = 0;
        for _ in 0..500 {
            for k in 0..3 {
                self.tick(k);
            }
            while let Some((to, bytes)) = self.net.pop_front() {
                self.deliver(to, &bytes);
            }
            if let Some(l) = self.leader() {
                while proposed < 2 && self.node(l).propose(b"settle").is_ok() {
                    proposed += 1;
                    self.check(l);
                }
            }
            for k in 0..3 {
                self.ready(k, None, true);
            }
            if proposed == 2 && self.watch.iter().all(|w| w.applied.len() >= 3) {
                return;
            }
        }
        panic!("the cluster did not settle");
    }

    /// Ticks node `k` alone, dropping what it sends, until it campaigns with a pre-vote.
    fn isolate_until_pre_candidate(&mut self, k: usize) {
        for _ in 0..100 {
            self.tick(k);
            self.ready(k, None, false);
            if self.node(k).role() == Role::PreCandidate {
                return;
            }
        }
        panic!("node {k} did not campaign");
    }

    fn leader(&self) -> Option<usize> {
        (0..3).find(|&k| {
            self.nodes[k]
                .as_ref()
                .is_some_and(|n| n.role() == Role::Leader)
        })
    }

    pub(crate) fn node(&mut self, k: usize) -> &mut Node<MemStorage> {
        self.nodes[k].as_mut().expect("node is running")
    }

    /// The node an op's relative number names.
    fn pick(&self, n: usize) -> usize {
        (self.target + n) % 3
    }

    pub(crate) fn target_index(&self) -> usize {
        self.target
    }

    pub(crate) fn target_status(&mut self) -> Status {
        let t = self.target;
        self.node(t).status()
    }

    pub(crate) fn target_counters(&mut self) -> Counters {
        let t = self.target;
        self.node(t).counters()
    }

    // ----- inputs, each followed by the checks -----

    pub(crate) fn apply(&mut self, op: &Op) {
        match op {
            Op::Tick(n) => self.tick(self.pick(*n)),
            Op::Ready(n) => self.ready(self.pick(*n), None, true),
            Op::ReadyThenStep(n, h) => {
                let k = self.pick(*n);
                self.ready(k, Some(h), true);
            }
            Op::Deliver { drop, duplicate } => {
                if let Some((to, bytes)) = self.net.pop_front() {
                    if !drop {
                        self.deliver(to, &bytes);
                    }
                    if *duplicate {
                        self.net.push_back((to, bytes));
                    }
                }
            }
            Op::Step(n, h) => {
                let k = self.pick(*n);
                self.step_hostile(k, h);
            }
            Op::Bytes(n, bytes) => {
                let k = self.pick(*n);
                let _ = self.step_checked(k, bytes);
            }
            Op::Mutate { pick, edits } => {
                let total = self.net.len() + self.history.len();
                if total == 0 {
                    return;
                }
                let i = pick % total;
                let (to, mut bytes) = if i < self.net.len() {
                    self.net[i].clone()
                } else {
                    self.history[i - self.net.len()].clone()
                };
                for &m in edits {
                    mutate(&mut bytes, m);
                }
                if let Some(k) = index_of(to) {
                    let _ = self.step_checked(k, &bytes);
                }
            }
            Op::Replay(i) => {
                if self.history.is_empty() {
                    return;
                }
                let (to, bytes) = self.history[i % self.history.len()].clone();
                if let Some(k) = index_of(to) {
                    let _ = self.step_checked(k, &bytes);
                }
            }
            Op::Propose(n, data) => {
                let k = self.pick(*n);
                if let Ok(i) = self.node(k).propose(data) {
                    let st = self.node(k).status();
                    assert_eq!(i, st.last_index, "a proposal lands at the end of the log");
                }
                self.check(k);
            }
            Op::ReadIndex(n, ctx) => {
                let k = self.pick(*n);
                let _ = self.node(k).read_index(*ctx);
                self.check(k);
            }
            Op::Campaign(n) => {
                let k = self.pick(*n);
                let _ = self.node(k).campaign();
                self.check(k);
            }
            Op::Restart(n) => self.restart(self.pick(*n)),
        }
    }

    fn tick(&mut self, k: usize) {
        self.node(k).tick();
        self.check(k);
    }

    fn deliver(&mut self, to: NodeId, bytes: &[u8]) {
        let Some(k) = index_of(to) else {
            panic!("a node sent a message to non-member {to}");
        };
        let r = self.step_checked(k, bytes);
        if self.honest {
            r.expect("an honest member's message is accepted");
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((to, bytes.to_vec()));
    }

    /// Resolves `h` against node `k`'s state, steps it in, and checks the outcome.
    pub(crate) fn step_hostile(&mut self, k: usize, h: &Hostile) {
        let bytes = self.resolve(k, h);
        if h.decoded {
            let m = Message::decode(&bytes).expect("a hostile message is well-formed");
            let before = self.node(k).status();
            let r = self.node(k).step_message(&m);
            self.check_refusal(k, &m, before, r);
        } else {
            let _ = self.step_checked(k, &bytes);
        }
    }

    /// Steps `bytes` into node `k`: whatever they are, the node must not panic, must refuse
    /// what it has to refuse with the right error, and an error must leave it unchanged.
    pub(crate) fn step_checked(&mut self, k: usize, bytes: &[u8]) -> Result<(), StepError> {
        let before = self.node(k).status();
        let had_ready = self.node(k).has_ready();
        let malformed = self.node(k).counters().malformed;
        let r = self.node(k).step(bytes);
        match Message::decode(bytes) {
            Err(e) => {
                assert_eq!(
                    r,
                    Err(StepError::Decode(e)),
                    "undecodable bytes are refused"
                );
                assert_eq!(self.node(k).counters().malformed, malformed + 1);
                assert_eq!(
                    self.node(k).has_ready(),
                    had_ready,
                    "refused bytes change nothing"
                );
                assert_eq!(
                    self.node(k).status(),
                    before,
                    "refused bytes change nothing"
                );
                self.check(k);
            }
            Ok(m) => self.check_refusal(k, &m, before, r),
        }
        r
    }

    fn check_refusal(
        &mut self,
        k: usize,
        m: &Message<'_>,
        before: Status,
        r: Result<(), StepError>,
    ) {
        let id = IDS[k];
        if m.to != id {
            assert_eq!(r, Err(StepError::WrongRecipient(m.to)), "{m:?}");
        } else if m.from == id
            || (!IDS.contains(&m.from)
                && !matches!(
                    m.body,
                    Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. }
                ))
        {
            // Appends, heartbeats and snapshots are taken from any leader (thesis §4.1: a
            // node being added does not know its leader is a member); nothing else from a
            // non-member counts.
            assert_eq!(r, Err(StepError::UnknownSender(m.from)), "{m:?}");
        }
        if r.is_err() {
            assert_eq!(
                self.node(k).status(),
                before,
                "{r:?} changed the node: {m:?}"
            );
        }
        self.check(k);
    }

    /// One Ready cycle for node `k`, in the order the crate docs give. `between`, if any, is
    /// stepped after the Ready is handled and before `advance`. With `send` false the node's
    /// messages are lost.
    fn ready(&mut self, k: usize, between: Option<&Hostile>, send: bool) {
        let before = self.node(k).status();
        let had_ready = self.node(k).has_ready();
        let w = &mut self.watch[k];
        assert_eq!(
            w.next_apply,
            before.applied.0 + 1,
            "applied tracks what was handed out"
        );
        let node = self.nodes[k].as_mut().expect("node is running");
        let rd = node.ready();
        if !had_ready {
            assert!(
                rd.hard_state.is_none()
                    && rd.entries.is_empty()
                    && rd.messages.is_empty()
                    && rd.persisted_messages.is_empty()
                    && rd.read_states.is_empty()
                    && rd.committed_entries().next().is_none(),
                "has_ready() was false but ready() has work: {rd:?}"
            );
        }
        let mut out = Vec::new();
        for m in rd.messages {
            out.push((m.to, m.bytes.to_vec()));
        }
        // A snapshot chunk: MemStorage keeps no snapshot bytes, so only the last one matters,
        // and it replaces the log (before the hard state is written).
        let installs = rd.snapshot.is_some_and(|c| c.is_last());
        if let Some(c) = rd.snapshot.filter(|c| c.is_last()) {
            assert!(
                rd.entries.is_empty() && rd.committed_entries().next().is_none(),
                "a Ready that installs a snapshot hands out entries: {rd:?}"
            );
            rd.storage.install(c.index, c.term);
        }
        if let Some(hs) = rd.hard_state {
            assert_eq!((hs.term, hs.vote), (before.term, before.vote));
            rd.storage.set_hard_state(hs);
            w.persisted = hs;
        }
        for e in rd.entries {
            // Entries at or below the commit index may still be unpersisted (they came with the
            // commit that covers them), but they are the ones committed.
            for r in [w.committed.get(&e.index.0), w.applied.get(&e.index.0)]
                .into_iter()
                .flatten()
            {
                assert!(same(&e, r), "a Ready rewrites committed entry {e:?}: {r:?}");
            }
        }
        rd.storage
            .append(rd.entries)
            .expect("the storage takes the entries a Ready hands out");
        assert!(
            rd.storage.hard_state().commit <= rd.storage.last_index(),
            "the persisted commit index is beyond the persisted log"
        );
        for m in rd.persisted_messages {
            out.push((m.to, m.bytes.to_vec()));
        }
        for e in rd.committed_entries() {
            let e = e.expect("committed entries are readable once persisted");
            assert_eq!(e.index.0, w.next_apply, "committed entries come in order");
            w.next_apply += 1;
            match w.applied.get(&e.index.0) {
                Some(r) => assert!(same(&e, r), "applied entry {} changed: {e:?}", e.index),
                None => {
                    w.applied.insert(e.index.0, rec(&e));
                }
            }
        }
        // The Ready's borrow of the node ends here.
        if send {
            for (to, bytes) in out {
                assert!(to != IDS[k], "node sent to itself");
                // Answers to a stranger that posed as a leader go nowhere.
                if IDS.contains(&to) {
                    self.net.push_back((to, bytes));
                }
            }
        }
        if let Some(h) = between {
            self.step_hostile(k, h);
        }
        self.node(k).advance();
        if installs {
            // The state machine was restored from the snapshot: applying goes on after it.
            let applied = self.node(k).status().applied;
            self.watch[k].next_apply = applied.0 + 1;
        }
        self.check(k);
    }

    fn restart(&mut self, k: usize) {
        let storage = self.nodes[k]
            .take()
            .expect("node is running")
            .into_storage();
        let hs = storage.hard_state();
        // The host's state machine is durable through what a snapshot installed (MemStorage
        // keeps only the log after it).
        let mut cfg = config(IDS[k], self.seed);
        cfg.applied = storage.first_index().prev();
        let next_apply = storage.first_index().0;
        let node =
            Node::new(&cfg, storage).expect("a node restarts from the storage its Readys wrote");
        let st = node.status();
        self.nodes[k] = Some(node);
        let w = &mut self.watch[k];
        assert_eq!(hs, w.persisted, "storage holds the last hard state written");
        assert_eq!((st.term, st.vote, st.commit), (hs.term, hs.vote, hs.commit));
        assert_eq!(st.role, Role::Follower);
        // Only what was persisted survives; an unpersisted term or vote promised nothing.
        w.term = hs.term;
        w.vote = hs.vote;
        w.commit = hs.commit;
        w.committed.split_off(&(hs.commit.0 + 1));
        w.next_apply = next_apply;
        self.check(k);
    }

    /// The invariants of node `k`, against what was seen of it before.
    pub(crate) fn check(&mut self, k: usize) {
        let node = self.nodes[k].as_ref().expect("node is running");
        let st = node.status();
        let w = &mut self.watch[k];
        assert_eq!(st.id, IDS[k]);
        assert!(st.term >= w.term, "term went back: {:?} -> {st:?}", w.term);
        if st.term == w.term && !w.vote.is_none() {
            assert_eq!(st.vote, w.vote, "vote changed within term {}", st.term);
        }
        assert!(st.vote.is_none() || IDS.contains(&st.vote), "{st:?}");
        // The leader may be a stranger: a node follows whoever leads its term, member or not
        // (thesis §4.1), and telling members from strangers is the transport's job.
        assert!(
            st.leader != Some(st.id) || st.role == Role::Leader,
            "{st:?}"
        );
        if st.role == Role::Leader {
            assert_eq!((st.leader, st.vote), (Some(st.id), st.id), "{st:?}");
        }
        assert!(
            st.commit >= w.commit,
            "commit went back: {:?} -> {st:?}",
            w.commit
        );
        assert!(st.commit <= st.last_index, "commit beyond the log: {st:?}");
        assert!(st.applied <= st.commit, "{st:?}");
        assert!(st.stable_index <= st.last_index, "{st:?}");
        assert_eq!(node.log_term(st.last_index), Some(st.last_term), "{st:?}");
        // Entries before the first index were replaced by an installed snapshot.
        for i in st.first_index.0.max(1)..=st.commit.0 {
            let e = node
                .log_entry(Index(i))
                .expect("committed entries stay readable");
            assert_eq!(e.index, Index(i));
            match w.committed.get(&i) {
                Some(r) => assert!(same(&e, r), "committed entry {i} changed: {r:?} -> {e:?}"),
                None => {
                    w.committed.insert(i, rec(&e));
                }
            }
            if let Some(r) = w.applied.get(&i) {
                assert!(same(&e, r), "applied entry {i} changed: {r:?} -> {e:?}");
            }
        }
        w.term = st.term;
        w.vote = st.vote;
        w.commit = st.commit;
    }

    // ----- resolving hostile messages -----

    /// Encodes `h` as seen from node `k`.
    fn resolve(&mut self, k: usize, h: &Hostile) -> Vec<u8> {
        let node = self.nodes[k].as_ref().expect("node is running");
        let st = node.status();
        let peer = |p: PeerSel| match p {
            PeerSel::Recipient => IDS[k],
            PeerSel::Member(j) => IDS[usize::from(j) % 3],
            PeerSel::Nobody => NodeId(0),
            PeerSel::Stranger(x) => NodeId(x),
        };
        let term_rel = |t: TermSel, base: Term| match t {
            TermSel::Current => base,
            TermSel::Ahead(d) => Term(base.0.saturating_add(u64::from(d))),
            TermSel::Behind(d) => Term(base.0.saturating_sub(u64::from(d))),
            TermSel::Zero => Term(0),
            TermSel::Max => Term(u64::MAX),
            TermSel::Raw(x) => Term(x),
        };
        let index = |i: IndexSel| {
            let rel = |base: Index, d: i8| Index(base.0.saturating_add_signed(i64::from(d)));
            match i {
                IndexSel::Last(d) => rel(st.last_index, d),
                IndexSel::Commit(d) => rel(st.commit, d),
                IndexSel::Zero => Index(0),
                IndexSel::Max => Index(u64::MAX),
                IndexSel::Raw(x) => Index(x),
            }
        };
        let term = term_rel(h.term, st.term);
        let mut members = [0u8; raft_core::Membership::MAX_ENCODED_LEN];
        let members_len = match &h.body {
            BodySel::Snapshot { members: sel, .. } => {
                sel.membership().encode(&mut members).expect("fits")
            }
            _ => 0,
        };
        let mut entries = Vec::new();
        if let BodySel::Append { entries: sel, .. } = &h.body {
            for e in sel {
                entries.push(Entry {
                    index: Index(0),
                    term: e.term.map_or(term, |t| term_rel(t, term)),
                    kind: if e.noop {
                        EntryKind::Noop
                    } else {
                        EntryKind::Normal
                    },
                    data: &e.data[..],
                });
            }
        }
        let body = match &h.body {
            BodySel::PreVote {
                last_index,
                last_term,
            } => Body::PreVote {
                last_index: index(*last_index),
                last_term: term_rel(*last_term, st.last_term),
            },
            BodySel::PreVoteResponse { reject } => Body::PreVoteResponse { reject: *reject },
            BodySel::Vote {
                last_index,
                last_term,
                transfer,
            } => Body::Vote {
                last_index: index(*last_index),
                last_term: term_rel(*last_term, st.last_term),
                transfer: *transfer,
            },
            BodySel::VoteResponse { reject } => Body::VoteResponse { reject: *reject },
            BodySel::Append {
                prev_index,
                prev_term,
                commit,
                ..
            } => {
                let prev_index = index(*prev_index);
                let prev_term = match prev_term {
                    Some(t) => term_rel(*t, st.term),
                    None => node.log_term(prev_index).unwrap_or(Term(0)),
                };
                Body::Append {
                    prev_index,
                    prev_term,
                    commit: index(*commit),
                    entries: EntryList::from_slice(&entries),
                }
            }
            BodySel::AppendResponse { index: i, reject } => Body::AppendResponse {
                index: index(*i),
                reject: reject.map(|(hi, ht)| RejectHint {
                    index: index(hi),
                    term: term_rel(ht, st.last_term),
                }),
            },
            BodySel::Heartbeat { commit, round } => Body::Heartbeat {
                commit: index(*commit),
                round: *round,
            },
            BodySel::HeartbeatResponse { round } => Body::HeartbeatResponse { round: *round },
            BodySel::ReadIndex { context } => Body::ReadIndex { context: *context },
            BodySel::ReadIndexResponse { context, index: i } => Body::ReadIndexResponse {
                context: *context,
                index: index(*i),
            },
            BodySel::Snapshot {
                index: i,
                term: t,
                offset,
                extra,
                data,
                good_crc,
                ..
            } => {
                let end = u64::MAX - data.len() as u64 - 1;
                let offset = (*offset).min(end);
                let len = (offset + data.len() as u64).saturating_add(*extra);
                let crc = raft_core::crc32c(data) ^ u32::from(!*good_crc);
                Body::Snapshot {
                    index: Index(index(*i).0.max(1)),
                    term: Term(term_rel(*t, term).0.max(1)),
                    len,
                    offset,
                    membership: &members[..members_len],
                    data,
                    crc,
                }
            }
            BodySel::SnapshotResponse { index: i, next } => Body::SnapshotResponse {
                index: index(*i),
                next: *next,
            },
            BodySel::TimeoutNow => Body::TimeoutNow,
        };
        let m = Message {
            from: peer(h.from),
            to: peer(h.to),
            term,
            body,
        };
        encode(&m)
    }
}

/// Encodes `m` into a buffer of exactly the size it needs.
pub(crate) fn encode(m: &Message<'_>) -> Vec<u8> {
    let snapshot = match m.body {
        Body::Snapshot {
            membership, data, ..
        } => membership.len() + data.len() + 32,
        _ => 0,
    };
    let room = MAX_HEADER_LEN
        + snapshot
        + m.entries()
            .iter()
            .map(|e| ENTRY_OVERHEAD + e.data.len())
            .sum::<usize>();
    let mut buf = vec![0u8; room];
    let n = m.encode(&mut buf).expect("the size bound holds");
    buf.truncate(n);
    buf
}
