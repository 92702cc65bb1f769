//! The simulator: N nodes, one virtual clock, a faulty network, a disk per node.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;

use raft_core::{
    Body, Config, EntryKind, HardState, Index, Message, Node, NodeId, ProposeError, ReadState,
    Role, Status, Storage, Term,
};

use crate::rng::SimRng;
use crate::storage::{hash_bytes, mix, SimStorage, FNV_OFFSET};
use crate::trace::{DropReason, Event, EventKind, MsgSummary, Trace};

/// The node type the simulator runs: room for 9 members, 16 appends in flight per follower,
/// 512 unpersisted entries in 32 KiB, 64 KiB of outgoing messages per `Ready`.
pub type SimNode = Node<SimStorage, 9, 16, 512, { 32 * 1024 }, { 64 * 1024 }, 32>;

/// How one direction of a link behaves. Times are virtual microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Fastest delivery.
    pub min_delay: u64,
    /// Slowest ordinary delivery; delays are uniform in between, which reorders messages.
    pub max_delay: u64,
    /// Probability that a message is held back much longer (long reordering).
    pub long_delay_chance: f64,
    /// Longest such delay.
    pub long_delay_max: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            min_delay: 500,
            max_delay: 2_000,
            long_delay_chance: 0.0,
            long_delay_max: 0,
        }
    }
}

impl LinkConfig {
    /// A lossy, reordering, duplicating link: the "unreliable network" of a Raft lab.
    pub fn unreliable(loss: f64) -> Self {
        LinkConfig {
            loss,
            duplicate: 0.02,
            min_delay: 200,
            max_delay: 5_000,
            long_delay_chance: 0.0,
            long_delay_max: 0,
        }
    }

    /// Adds long reordering: a message in `chance` is delayed up to `max` microseconds.
    pub fn with_long_delays(mut self, chance: f64, max: u64) -> Self {
        self.long_delay_chance = chance;
        self.long_delay_max = max;
        self
    }
}

/// A simulation's setup.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Members, with ids `1..=nodes`.
    pub nodes: u64,
    /// Seeds everything: node timers, network and disk decisions.
    pub seed: u64,
    /// Virtual microseconds per tick.
    pub tick_us: u64,
    /// [`Config::election_ticks`].
    pub election_ticks: u32,
    /// [`Config::heartbeat_ticks`].
    pub heartbeat_ticks: u32,
    /// [`Config::pre_vote`].
    pub pre_vote: bool,
    /// [`Config::check_quorum`].
    pub check_quorum: bool,
    /// The default for every link.
    pub link: LinkConfig,
    /// Fastest disk write (persisting a `Ready`).
    pub disk_min_us: u64,
    /// Slowest disk write. A crash during a write loses it.
    pub disk_max_us: u64,
    /// Events kept in memory (all are hashed).
    pub trace_keep: usize,
}

impl SimConfig {
    /// `nodes` members, `seed`, 10 ms ticks, election after 10-20 ticks, heartbeat every tick,
    /// a reliable network with 0.5-2 ms delays, disk writes of 0-1 ms.
    pub fn new(nodes: u64, seed: u64) -> Self {
        SimConfig {
            nodes,
            seed,
            tick_us: 10_000,
            election_ticks: 10,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            link: LinkConfig::default(),
            disk_min_us: 0,
            disk_max_us: 1_000,
            trace_keep: 20_000,
        }
    }
}

/// A committed entry as the simulation saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedEntry {
    /// Its index.
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// Its kind.
    pub kind: EntryKind,
    /// Its payload.
    pub data: Vec<u8>,
}

/// A safety invariant failed. `Display` names the seed to replay it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The run's seed.
    pub seed: u64,
    /// Virtual time of the failure.
    pub time: u64,
    /// What failed.
    pub what: String,
    /// The last events before it.
    pub recent: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invariant violated at t={}us: {}", self.time, self.what)?;
        writeln!(f, "replay with TICKRAFT_SEED={} (same test)", self.seed)?;
        writeln!(f, "last events:")?;
        for e in &self.recent {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

enum Action {
    Tick {
        node: NodeId,
        incarnation: u64,
    },
    Deliver {
        from: NodeId,
        to: NodeId,
        bytes: Vec<u8>,
    },
    IoDone {
        node: NodeId,
        incarnation: u64,
    },
}

struct Scheduled {
    time: u64,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.time, self.seq) == (o.time, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.time, self.seq).cmp(&(o.time, o.seq))
    }
}

/// A `Ready` taken and being written to disk.
struct PendingIo {
    hard_state: Option<HardState>,
    entries: Vec<CommittedEntry>,
    after_persist: Vec<(NodeId, Vec<u8>)>,
    committed: Vec<CommittedEntry>,
    read_states: Vec<ReadState>,
}

struct Host {
    node: Option<Box<SimNode>>,
    /// The disk while the node is down.
    disk: Option<SimStorage>,
    io: Option<PendingIo>,
    incarnation: u64,
    /// The state machine: every committed entry applied, in order.
    applied: Vec<CommittedEntry>,
    seen_role: (Role, Term),
    seen_commit: Index,
}

/// A deterministic simulated cluster. Drive it with [`Sim::step`] or the `run_*` methods;
/// inject faults with [`Sim::crash`], [`Sim::partition`], [`Sim::set_link`], ...
pub struct Sim {
    cfg: SimConfig,
    ids: Vec<NodeId>,
    hosts: Vec<Host>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    now: u64,
    rng: SimRng,
    blocked: BTreeSet<(NodeId, NodeId)>,
    links: BTreeMap<(NodeId, NodeId), LinkConfig>,
    trace: Trace,
    // Invariant state.
    leaders: BTreeMap<Term, NodeId>,
    log_registry: BTreeMap<(Index, Term), u64>,
    committed: Vec<(Term, u64)>,
    committed_entries: Vec<CommittedEntry>,
    proposals: BTreeMap<(Index, Term), Vec<u8>>,
    acked: Vec<CommittedEntry>,
    reads: Vec<(NodeId, ReadState)>,
    sent: BTreeMap<&'static str, u64>,
    violation: Option<Violation>,
}

impl Sim {
    /// A cluster of `cfg.nodes` empty nodes.
    pub fn new(cfg: SimConfig) -> Self {
        let disks = (0..cfg.nodes).map(|_| SimStorage::new()).collect();
        Self::with_disks(cfg, disks)
    }

    /// A cluster whose nodes start from the given disks (one per node, id order): for scenarios
    /// that begin with particular logs.
    pub fn with_disks(cfg: SimConfig, disks: Vec<SimStorage>) -> Self {
        assert_eq!(disks.len() as u64, cfg.nodes, "one disk per node");
        let ids: Vec<NodeId> = (1..=cfg.nodes).map(NodeId).collect();
        let mut sim = Sim {
            rng: SimRng::new(cfg.seed),
            trace: Trace::new(cfg.trace_keep),
            cfg,
            hosts: Vec::new(),
            ids,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            blocked: BTreeSet::new(),
            links: BTreeMap::new(),
            leaders: BTreeMap::new(),
            log_registry: BTreeMap::new(),
            committed: Vec::new(),
            committed_entries: Vec::new(),
            proposals: BTreeMap::new(),
            acked: Vec::new(),
            reads: Vec::new(),
            sent: BTreeMap::new(),
            violation: None,
        };
        for (k, disk) in disks.into_iter().enumerate() {
            let id = sim.ids[k];
            sim.hosts.push(Host {
                node: None,
                disk: Some(disk),
                io: None,
                incarnation: 0,
                applied: Vec::new(),
                seen_role: (Role::Follower, Term::ZERO),
                seen_commit: Index::ZERO,
            });
            sim.boot(id);
        }
        sim
    }

    fn node_config(&self, id: NodeId) -> Config<'_> {
        let mut c = Config::new(id, &self.ids);
        c.election_ticks = self.cfg.election_ticks;
        c.heartbeat_ticks = self.cfg.heartbeat_ticks;
        c.pre_vote = self.cfg.pre_vote;
        c.check_quorum = self.cfg.check_quorum;
        c.seed = self.cfg.seed.wrapping_mul(31).wrapping_add(id.0);
        c
    }

    fn boot(&mut self, id: NodeId) {
        let k = self.slot(id);
        let Some(disk) = self.hosts[k].disk.take() else {
            return;
        };
        // Registering what the disk holds lets log matching be checked against it too.
        for (i, e) in disk.entries().iter().enumerate() {
            let key = (Index(i as u64 + 1), e.term);
            self.log_registry.entry(key).or_insert(e.prefix_hash);
        }
        let hs = disk.hard_state();
        let node = match SimNode::new(&self.node_config(id), disk) {
            Ok(n) => n,
            Err(e) => {
                self.fail(format!("n{id} cannot start from its disk: {e}"));
                return;
            }
        };
        let h = &mut self.hosts[k];
        h.node = Some(Box::new(node));
        h.incarnation += 1;
        h.io = None;
        h.applied.clear();
        h.seen_role = (Role::Follower, hs.term);
        h.seen_commit = hs.commit;
        let inc = h.incarnation;
        let phase = self.rng.range(1, self.cfg.tick_us);
        self.schedule(
            phase,
            Action::Tick {
                node: id,
                incarnation: inc,
            },
        );
    }

    fn slot(&self, id: NodeId) -> usize {
        id.0 as usize - 1
    }

    fn schedule(&mut self, delay: u64, action: Action) {
        self.seq += 1;
        let s = Scheduled {
            time: self.now + delay,
            seq: self.seq,
            action,
        };
        self.queue.push(Reverse(s));
    }

    fn record(&mut self, kind: EventKind) {
        self.trace.push(Event {
            time: self.now,
            kind,
        });
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_some() {
            return;
        }
        let recent: Vec<String> = {
            let all: Vec<&Event> = self.trace.events().collect();
            all[all.len().saturating_sub(40)..]
                .iter()
                .map(|e| e.to_string())
                .collect()
        };
        self.violation = Some(Violation {
            seed: self.cfg.seed,
            time: self.now,
            what,
            recent,
        });
    }

    fn check(&mut self) -> Result<(), Violation> {
        match self.violation.take() {
            Some(v) => {
                self.violation = Some(v.clone());
                Err(v)
            }
            None => Ok(()),
        }
    }

    // ----- driving -----

    /// Runs the next event. Returns `Ok(false)` when nothing is scheduled (never, while a node
    /// is up: ticks reschedule themselves), `Err` when an invariant failed.
    pub fn step(&mut self) -> Result<bool, Violation> {
        self.check()?;
        let Some(Reverse(ev)) = self.queue.pop() else {
            return Ok(false);
        };
        self.now = ev.time;
        match ev.action {
            Action::Tick { node, incarnation } => {
                let k = self.slot(node);
                if self.hosts[k].incarnation == incarnation {
                    if let Some(n) = self.hosts[k].node.as_mut() {
                        n.tick();
                        let tick = self.cfg.tick_us;
                        self.schedule(tick, Action::Tick { node, incarnation });
                        self.after_input(node);
                    }
                }
            }
            Action::Deliver { from, to, bytes } => self.deliver(from, to, &bytes),
            Action::IoDone { node, incarnation } => {
                let k = self.slot(node);
                if self.hosts[k].incarnation == incarnation && self.hosts[k].node.is_some() {
                    self.finish_io(node);
                    self.after_input(node);
                }
            }
        }
        self.check()?;
        Ok(true)
    }

    /// Runs for `us` virtual microseconds.
    pub fn run_for(&mut self, us: u64) -> Result<(), Violation> {
        let until = self.now + us;
        while self.queue.peek().is_some_and(|Reverse(s)| s.time <= until) {
            self.step()?;
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// Runs for `n` ticks' worth of time.
    pub fn run_ticks(&mut self, n: u64) -> Result<(), Violation> {
        self.run_for(n * self.cfg.tick_us)
    }

    /// Runs until `done` holds (checked after every event) or `max_us` passes. Returns whether
    /// `done` held.
    pub fn run_until(
        &mut self,
        max_us: u64,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<bool, Violation> {
        let until = self.now + max_us;
        loop {
            if done(self) {
                return Ok(true);
            }
            if self.queue.peek().is_none_or(|Reverse(s)| s.time > until) {
                self.now = self.now.max(until);
                return Ok(done(self));
            }
            self.step()?;
        }
    }

    /// Runs until some live node leads with no other live node claiming a higher term, for at
    /// most `max_us`. Returns the leader.
    pub fn run_until_leader(&mut self, max_us: u64) -> Result<Option<NodeId>, Violation> {
        self.run_until(max_us, |s| s.leader().is_some())?;
        Ok(self.leader())
    }

    /// Runs until every live node has applied everything committed so far anywhere, and all
    /// of them have the same commit index, for at most `max_us`. Returns whether they agree.
    pub fn run_until_agreement(&mut self, max_us: u64) -> Result<bool, Violation> {
        self.run_until(max_us, |s| s.in_agreement())
    }

    /// Whether every live node has applied the same entries, through the highest commit index
    /// any live node knows, with nothing left to persist.
    pub fn in_agreement(&self) -> bool {
        let live: Vec<&Host> = self.hosts.iter().filter(|h| h.node.is_some()).collect();
        let Some(first) = live.first() else {
            return true;
        };
        let n = first.applied.len();
        live.iter().all(|h| {
            let st = h.node.as_ref().map(|n| n.status());
            h.applied.len() == n
                && h.io.is_none()
                && st.is_some_and(|s| s.commit.0 as usize == n && s.last_index.0 as usize == n)
        }) && n == self.committed_entries.len()
    }

    // ----- the network and the hosts -----

    fn link(&self, from: NodeId, to: NodeId) -> &LinkConfig {
        self.links.get(&(from, to)).unwrap_or(&self.cfg.link)
    }

    fn send(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        let msg = match Message::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                self.fail(format!("n{from} emitted an undecodable message: {e}"));
                return;
            }
        };
        let summary = MsgSummary::of(&msg);
        *self.sent.entry(summary.kind).or_insert(0) += 1;
        match msg.body {
            Body::VoteResponse { reject: false } | Body::PreVoteResponse { reject: false } => {
                let pre = matches!(msg.body, Body::PreVoteResponse { .. });
                self.record(EventKind::Vote {
                    node: from,
                    candidate: to,
                    term: msg.term,
                    pre,
                });
            }
            _ => {}
        }
        self.record(EventKind::Send {
            from,
            to,
            msg: summary,
        });
        if self.dropped_by_partition(from, to, summary) {
            return;
        }
        let link = self.link(from, to).clone();
        if self.rng.chance(link.loss) {
            self.record(EventKind::Drop {
                from,
                to,
                msg: summary,
                reason: DropReason::Loss,
            });
            return;
        }
        let copies = if self.rng.chance(link.duplicate) {
            2
        } else {
            1
        };
        let mut bytes = bytes;
        for c in 0..copies {
            let mut delay = self.rng.range(link.min_delay, link.max_delay);
            if self.rng.chance(link.long_delay_chance) {
                delay = self
                    .rng
                    .range(link.max_delay, link.long_delay_max.max(link.max_delay));
            }
            if c == 1 {
                self.record(EventKind::Duplicate {
                    from,
                    to,
                    msg: summary,
                });
            }
            let payload = if c + 1 == copies {
                std::mem::take(&mut bytes)
            } else {
                bytes.clone()
            };
            self.schedule(
                delay,
                Action::Deliver {
                    from,
                    to,
                    bytes: payload,
                },
            );
        }
    }

    /// Whether a partition cuts `from -> to`; if so, records the drop.
    fn dropped_by_partition(&mut self, from: NodeId, to: NodeId, msg: MsgSummary) -> bool {
        let cut = self.blocked.contains(&(from, to));
        if cut {
            let reason = DropReason::Partition;
            self.record(EventKind::Drop {
                from,
                to,
                msg,
                reason,
            });
        }
        cut
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, bytes: &[u8]) {
        let summary = Message::decode(bytes).map(|m| MsgSummary::of(&m));
        let Ok(summary) = summary else {
            self.fail("network corrupted a message".into());
            return;
        };
        if self.dropped_by_partition(from, to, summary) {
            return;
        }
        let k = self.slot(to);
        let Some(node) = self.hosts[k].node.as_mut() else {
            self.record(EventKind::Drop {
                from,
                to,
                msg: summary,
                reason: DropReason::NodeDown,
            });
            return;
        };
        if node.step(bytes).is_err() {
            self.record(EventKind::Drop {
                from,
                to,
                msg: summary,
                reason: DropReason::Refused,
            });
        }
        self.after_input(to);
    }

    /// Delivers raw bytes to a node as if `from` sent them, now, bypassing the network: for
    /// tests of hostile input. Returns the node's answer.
    pub fn inject(&mut self, to: NodeId, bytes: &[u8]) -> Option<Result<(), raft_core::StepError>> {
        let k = self.slot(to);
        let r = self.hosts[k].node.as_mut()?.step(bytes);
        self.after_input(to);
        Some(r)
    }

    /// Observes the node after an input, checks what can be checked, and starts a disk write if
    /// it has a `Ready` and none is under way.
    fn after_input(&mut self, id: NodeId) {
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.as_ref() else {
            return;
        };
        let st = node.status();
        if (st.role, st.term) != self.hosts[k].seen_role {
            if st.term < self.hosts[k].seen_role.1 {
                self.fail(format!(
                    "n{id} term went back from {} to {}",
                    self.hosts[k].seen_role.1, st.term
                ));
            }
            self.hosts[k].seen_role = (st.role, st.term);
            self.record(EventKind::Role {
                node: id,
                role: st.role,
                term: st.term,
            });
            if st.role == Role::Leader {
                self.on_new_leader(id, st);
            }
        }
        if st.commit != self.hosts[k].seen_commit {
            if st.commit < self.hosts[k].seen_commit {
                self.fail(format!(
                    "n{id} commit went back from {} to {}",
                    self.hosts[k].seen_commit, st.commit
                ));
            }
            self.hosts[k].seen_commit = st.commit;
            self.record(EventKind::Commit {
                node: id,
                index: st.commit,
            });
        }
        if st.commit > st.last_index {
            self.fail(format!(
                "n{id} commit {} beyond its last index {}",
                st.commit, st.last_index
            ));
        }
        if self.hosts[k].io.is_none() && self.hosts[k].node.as_ref().is_some_and(|n| n.has_ready())
        {
            self.start_io(id);
        }
    }

    fn on_new_leader(&mut self, id: NodeId, st: Status) {
        // Election safety (Raft §5.2): at most one leader per term, ever.
        match self.leaders.get(&st.term) {
            Some(&other) if other != id => {
                self.fail(format!(
                    "two leaders in term {}: n{other} and n{id}",
                    st.term
                ));
                return;
            }
            _ => {
                self.leaders.insert(st.term, id);
            }
        }
        // Leader completeness (§5.4): the new leader holds every committed entry.
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.as_ref() else {
            return;
        };
        for (i, &(term, _)) in self.committed.iter().enumerate() {
            let index = Index(i as u64 + 1);
            if node.log_term(index) != Some(term) {
                let have = node.log_term(index);
                self.fail(format!(
                    "leader n{id} of term {} lacks committed entry {index} (term {term}, has {have:?})",
                    st.term
                ));
                return;
            }
        }
    }

    fn start_io(&mut self, id: NodeId) {
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.as_mut() else {
            return;
        };
        let rd = node.ready();
        let now: Vec<(NodeId, Vec<u8>)> = rd
            .messages
            .iter()
            .map(|m| (m.to, m.bytes.to_vec()))
            .collect();
        let after_persist = rd
            .persisted_messages
            .iter()
            .map(|m| (m.to, m.bytes.to_vec()))
            .collect();
        let own = |e: raft_core::Entry<'_>| CommittedEntry {
            index: e.index,
            term: e.term,
            kind: e.kind,
            data: e.data.to_vec(),
        };
        let entries = rd.entries.iter().map(own).collect();
        let mut committed = Vec::new();
        let mut broken = None;
        for e in rd.committed_entries() {
            match e {
                Ok(e) => committed.push(own(e)),
                Err(err) => {
                    broken = Some(err);
                    break;
                }
            }
        }
        let io = PendingIo {
            hard_state: rd.hard_state,
            entries,
            after_persist,
            committed,
            read_states: rd.read_states.to_vec(),
        };
        if let Some(err) = broken {
            self.fail(format!("n{id} could not read a committed entry: {err}"));
            return;
        }
        self.hosts[k].io = Some(io);
        for (to, bytes) in now {
            self.send(id, to, bytes);
        }
        let latency = self.rng.range(self.cfg.disk_min_us, self.cfg.disk_max_us);
        let incarnation = self.hosts[k].incarnation;
        self.schedule(
            latency,
            Action::IoDone {
                node: id,
                incarnation,
            },
        );
    }

    fn finish_io(&mut self, id: NodeId) {
        let k = self.slot(id);
        let Some(io) = self.hosts[k].io.take() else {
            return;
        };
        let Some(node) = self.hosts[k].node.as_mut() else {
            return;
        };
        let disk = node.storage_mut();
        if let Some(hs) = io.hard_state {
            let old = disk.hard_state();
            if hs.term < old.term {
                let msg = format!("n{id} persisted term {} after {}", hs.term, old.term);
                self.fail(msg);
                return;
            }
            if hs.term == old.term && !old.vote.is_none() && hs.vote != old.vote {
                let msg = format!(
                    "n{id} voted twice in term {}: n{} then n{}",
                    hs.term, old.vote, hs.vote
                );
                self.fail(msg);
                return;
            }
            disk.set_hard_state(hs);
        }
        let n = io.entries.len();
        let first = io.entries.first().map(|e| e.index);
        if let Err(e) = disk.append(io.entries.iter().map(|e| raft_core::Entry {
            index: e.index,
            term: e.term,
            kind: e.kind,
            data: &e.data,
        })) {
            self.fail(format!("n{id} storage refused a Ready's entries: {e}"));
            return;
        }
        let last = disk.last_index();
        // Log matching (§5.3): an (index, term) pair names one entry and one prefix, everywhere.
        let mut clash = None;
        if let Some(first) = first {
            for i in first.0..=last.0 {
                let Some(e) = disk.get(Index(i)) else { break };
                let key = (Index(i), e.term);
                match self.log_registry.get(&key) {
                    Some(&h) if h != e.prefix_hash => {
                        clash = Some(key);
                        break;
                    }
                    Some(_) => {}
                    None => {
                        self.log_registry.insert(key, e.prefix_hash);
                    }
                }
            }
        }
        if let Some((i, t)) = clash {
            self.fail(format!(
                "log matching: n{id} holds a different history up to ({i}, {t})"
            ));
            return;
        }
        if n > 0 {
            self.record(EventKind::Persist {
                node: id,
                entries: n as u32,
                last_index: last,
            });
        }
        for (to, bytes) in io.after_persist {
            self.send(id, to, bytes);
        }
        for e in io.committed {
            self.apply(id, e);
        }
        for r in io.read_states {
            self.reads.push((id, r));
        }
        if let Some(node) = self.hosts[k].node.as_mut() {
            node.advance();
        }
    }

    fn apply(&mut self, id: NodeId, e: CommittedEntry) {
        let k = self.slot(id);
        let expect = Index(self.hosts[k].applied.len() as u64 + 1);
        if e.index != expect {
            self.fail(format!(
                "n{id} applied {} out of order (expected {expect})",
                e.index
            ));
            return;
        }
        let h = hash_bytes(mix(FNV_OFFSET, e.kind as u64), &e.data);
        let i = e.index.0 as usize - 1;
        // State machine safety (§5.4.3): every node applies the same entry at each index.
        if let Some(&(term, hash)) = self.committed.get(i) {
            if term != e.term || hash != h {
                self.fail(format!(
                    "n{id} applied ({}, {}) where ({}, {term}) was applied before",
                    e.index, e.term, e.index
                ));
                return;
            }
        } else {
            self.committed.push((e.term, h));
            self.committed_entries.push(e.clone());
            if let Some(data) = self.proposals.remove(&(e.index, e.term)) {
                if data == e.data {
                    self.acked.push(e.clone());
                }
            }
        }
        self.hosts[k].applied.push(e);
    }

    // ----- clients -----

    /// Proposes `data` at node `id`. On success the proposal is tracked: once an entry with
    /// its index and term is applied anywhere it counts as acknowledged to the client.
    pub fn propose(&mut self, id: NodeId, data: &[u8]) -> Result<Index, ProposeError> {
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.as_mut() else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let index = node.propose(data)?;
        let term = node.term();
        self.proposals.insert((index, term), data.to_vec());
        self.record(EventKind::Propose {
            node: id,
            index,
            term,
        });
        self.after_input(id);
        Ok(index)
    }

    /// Proposes at the current leader, if there is one.
    pub fn propose_to_leader(&mut self, data: &[u8]) -> Option<Index> {
        let leader = self.leader()?;
        self.propose(leader, data).ok()
    }

    /// Starts a ReadIndex read at node `id`; confirmed reads appear in [`Sim::reads`].
    pub fn read_index(&mut self, id: NodeId, context: u64) -> Result<(), raft_core::ReadError> {
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.as_mut() else {
            return Err(raft_core::ReadError::NoLeader);
        };
        node.read_index(context)?;
        self.after_input(id);
        Ok(())
    }

    /// Asks node `id` to campaign now.
    pub fn campaign(&mut self, id: NodeId) -> Result<(), raft_core::CampaignError> {
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.as_mut() else {
            return Err(raft_core::CampaignError::NotVoter);
        };
        node.campaign()?;
        self.after_input(id);
        Ok(())
    }

    // ----- faults -----

    /// Crashes node `id`: everything not yet persisted (including a write under way) is lost.
    pub fn crash(&mut self, id: NodeId) {
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.take() else {
            return;
        };
        self.hosts[k].disk = Some(node.into_storage());
        self.hosts[k].io = None;
        self.hosts[k].incarnation += 1;
        self.record(EventKind::Crash { node: id });
    }

    /// Restarts a crashed node from its disk. Its state machine starts empty and re-applies.
    pub fn restart(&mut self, id: NodeId) {
        let k = self.slot(id);
        if self.hosts[k].node.is_some() {
            return;
        }
        self.record(EventKind::Restart { node: id });
        self.boot(id);
    }

    /// Splits the network: nodes in different groups cannot reach each other; a node in no
    /// group is cut off from all. Replaces any earlier partition.
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        self.blocked.clear();
        let group_of = |n: NodeId| groups.iter().position(|g| g.contains(&n));
        for &a in &self.ids {
            for &b in &self.ids {
                if a != b && (group_of(a).is_none() || group_of(a) != group_of(b)) {
                    self.blocked.insert((a, b));
                }
            }
        }
        let groups = groups.iter().map(|g| g.to_vec()).collect();
        self.record(EventKind::Partition { groups });
    }

    /// Cuts node `id` off from everyone (keeping other cuts).
    pub fn isolate(&mut self, id: NodeId) {
        for &b in &self.ids {
            if b != id {
                self.blocked.insert((id, b));
                self.blocked.insert((b, id));
            }
        }
        self.record(EventKind::Partition {
            groups: vec![vec![id]],
        });
    }

    /// Cuts one direction of one link.
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// Heals every partition and cut.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.record(EventKind::Heal);
    }

    /// Sets how the link `from -> to` behaves.
    pub fn set_link(&mut self, from: NodeId, to: NodeId, link: LinkConfig) {
        self.links.insert((from, to), link);
    }

    /// Sets how every link behaves (dropping per-link settings).
    pub fn set_network(&mut self, link: LinkConfig) {
        self.links.clear();
        self.cfg.link = link;
    }

    /// Adds a note to the trace.
    pub fn note(&mut self, text: impl Into<String>) {
        self.record(EventKind::Note { text: text.into() });
    }

    // ----- observation -----

    /// Member ids.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// Virtual microseconds since the start.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }

    /// The setup.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Whether node `id` is up.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.hosts[self.slot(id)].node.is_some()
    }

    /// Node `id`, if up.
    pub fn node(&self, id: NodeId) -> Option<&SimNode> {
        self.hosts[self.slot(id)].node.as_deref()
    }

    /// Node `id`'s status, if up.
    pub fn status(&self, id: NodeId) -> Option<Status> {
        self.node(id).map(|n| n.status())
    }

    /// The live leader of the highest term, if no live node has a higher term than it (so
    /// that a deposed leader that has not yet heard the news is not reported).
    pub fn leader(&self) -> Option<NodeId> {
        let live = self
            .hosts
            .iter()
            .filter_map(|h| h.node.as_ref().map(|n| n.status()));
        let max_term = live.clone().map(|s| s.term).max()?;
        live.filter(|s| s.role == Role::Leader && s.term == max_term)
            .map(|s| s.id)
            .next()
    }

    /// Every live node that believes it leads.
    pub fn leaders(&self) -> Vec<NodeId> {
        self.hosts
            .iter()
            .filter_map(|h| h.node.as_ref())
            .filter(|n| n.role() == Role::Leader)
            .map(|n| n.id())
            .collect()
    }

    /// What node `id`'s state machine has applied, in order (empty while down).
    pub fn applied(&self, id: NodeId) -> &[CommittedEntry] {
        &self.hosts[self.slot(id)].applied
    }

    /// Every entry known committed (applied by some node), in index order.
    pub fn committed(&self) -> &[CommittedEntry] {
        &self.committed_entries
    }

    /// Client proposals whose entries were applied with the index and term they got.
    pub fn acked(&self) -> &[CommittedEntry] {
        &self.acked
    }

    /// Reads confirmed so far: (node, read state).
    pub fn reads(&self) -> &[(NodeId, ReadState)] {
        &self.reads
    }

    /// Node `id`'s disk (its own while up, the saved one while down).
    pub fn disk(&self, id: NodeId) -> Option<&SimStorage> {
        let h = &self.hosts[self.slot(id)];
        h.node.as_ref().map(|n| n.storage()).or(h.disk.as_ref())
    }

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Messages put on the network, by kind.
    pub fn messages_sent(&self) -> &BTreeMap<&'static str, u64> {
        &self.sent
    }

    /// All messages put on the network.
    pub fn total_messages(&self) -> u64 {
        self.sent.values().sum()
    }

    /// Terms that had a leader, and who.
    pub fn leaders_by_term(&self) -> &BTreeMap<Term, NodeId> {
        &self.leaders
    }
}
