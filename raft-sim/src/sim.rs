//! The simulator: N nodes, one virtual clock, a faulty network, a disk per node.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;

use raft_core::{
    ConfChange, Config, EntryKind, Index, Membership, Node, NodeId, ProposeError, ReadState, Role,
    Status, Storage, Term, TransferError,
};

use crate::host::Host;
use crate::net::LinkConfig;
use crate::rng::SimRng;
use crate::state::StateMachine;
use crate::storage::SimStorage;
use crate::trace::{Event, EventKind, MsgSummary, Trace};

/// The node type the simulator runs: room for 9 members, 16 appends in flight per follower,
/// 512 unpersisted entries in 32 KiB, 64 KiB of outgoing messages per `Ready`.
pub type SimNode = Node<SimStorage, 9, 16, 512, { 32 * 1024 }, { 64 * 1024 }, 32>;

/// A simulation's setup.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Founding members, with ids `1..=nodes`: the bootstrap voters. More nodes can join
    /// later ([`Sim::add_node`]).
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
    /// A leader writes each `Ready` it may ([`raft_core::Ready::can_defer_sync`]) at once,
    /// calls `advance_unsynced`, and reports the sync with `persisted` when the disk finishes,
    /// as raft-std does; a crash before then loses the write. Default off.
    pub async_leader_persist: bool,
    /// Take a snapshot of a node's state machine once it has applied this many entries since
    /// its last one, and compact its log through it. Default `None`: never (the log grows).
    pub snapshot_every: Option<u64>,
    /// The size of a snapshot's bytes: the state machine's few bytes of state, padded with
    /// bytes derived from it (and checked on restore), so that a snapshot takes several
    /// chunks. Default 16 KiB.
    pub snapshot_bytes: usize,
    /// [`Config::max_snapshot_chunk`]. Default 4 KiB.
    pub max_snapshot_chunk: usize,
    /// [`Config::read_lease`]. Default off.
    pub read_lease: bool,
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
            async_leader_persist: false,
            snapshot_every: None,
            snapshot_bytes: 16 * 1024,
            max_snapshot_chunk: 4 * 1024,
            read_lease: false,
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

pub(crate) enum Action {
    Tick {
        node: NodeId,
        incarnation: u64,
    },
    Deliver {
        from: NodeId,
        to: NodeId,
        bytes: Vec<u8>,
        /// What the bytes say, read once when they were sent.
        msg: MsgSummary,
    },
    IoDone {
        node: NodeId,
        incarnation: u64,
    },
    /// A leader's deferred sync finished.
    SyncDone {
        node: NodeId,
        incarnation: u64,
        index: Index,
        term: Term,
    },
}

pub(crate) struct Scheduled {
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

/// A deterministic simulated cluster. Drive it with [`Sim::step`] or the `run_*` methods;
/// inject faults with [`Sim::crash`], [`Sim::partition`], [`Sim::set_link`], ...
pub struct Sim {
    pub(crate) cfg: SimConfig,
    /// Every node, founders first, in id order (`ids[k]` is `NodeId(k + 1)`).
    pub(crate) ids: Vec<NodeId>,
    /// The bootstrap voters.
    pub(crate) founders: Vec<NodeId>,
    pub(crate) hosts: Vec<Host>,
    pub(crate) queue: BinaryHeap<Reverse<Scheduled>>,
    pub(crate) seq: u64,
    pub(crate) now: u64,
    pub(crate) rng: SimRng,
    pub(crate) blocked: BTreeSet<(NodeId, NodeId)>,
    pub(crate) links: BTreeMap<(NodeId, NodeId), LinkConfig>,
    pub(crate) trace: Trace,
    // Invariant state.
    pub(crate) leaders: BTreeMap<Term, NodeId>,
    pub(crate) log_registry: BTreeMap<(Index, Term), u64>,
    /// Per committed index: its term and the state machine's hash after applying it.
    pub(crate) committed: Vec<(Term, u64)>,
    /// For each of those, the term of the node that applied it first: at least the term of
    /// the leader that committed it (the node learnt the commit from that leader or a later
    /// one). Leader completeness binds leaders of later terms only.
    pub(crate) committed_in: Vec<Term>,
    /// The configuration of the latest committed config entry applied anywhere (the bootstrap
    /// voters before any).
    pub(crate) cluster_config: Membership,
    pub(crate) committed_entries: Vec<CommittedEntry>,
    pub(crate) proposals: BTreeMap<(Index, Term), Vec<u8>>,
    pub(crate) acked: Vec<CommittedEntry>,
    pub(crate) reads: Vec<(NodeId, ReadState)>,
    pub(crate) sent: BTreeMap<&'static str, u64>,
    pub(crate) violation: Option<Violation>,
}

impl Sim {
    /// A cluster of `cfg.nodes` empty nodes.
    pub fn new(cfg: SimConfig) -> Self {
        let disks = (0..cfg.nodes).map(|_| SimStorage::new()).collect();
        Self::with_disks(cfg, disks)
    }

    /// A cluster whose nodes start from the given disks (one per node, id order): for scenarios
    /// that begin with particular logs.
    pub fn with_disks(cfg: SimConfig, mut disks: Vec<SimStorage>) -> Self {
        assert_eq!(disks.len() as u64, cfg.nodes, "one disk per node");
        // What the simulation is handed is on disk: durable.
        for d in &mut disks {
            d.mark_durable();
        }
        let ids: Vec<NodeId> = (1..=cfg.nodes).map(NodeId).collect();
        let cluster_config = Membership::with_voters(&ids).unwrap_or_default();
        let mut sim = Sim {
            founders: ids.clone(),
            cluster_config,
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
            committed_in: Vec::new(),
            committed_entries: Vec::new(),
            proposals: BTreeMap::new(),
            acked: Vec::new(),
            reads: Vec::new(),
            sent: BTreeMap::new(),
            violation: None,
        };
        for (k, disk) in disks.into_iter().enumerate() {
            let id = sim.ids[k];
            sim.hosts.push(Host::new(disk, true));
            sim.boot(id);
        }
        sim
    }

    fn node_config(&self, id: NodeId) -> Config<'_> {
        let founder = self.hosts[self.slot(id)].founder;
        let mut c = Config::new(id, if founder { &self.founders } else { &[] });
        c.election_ticks = self.cfg.election_ticks;
        c.heartbeat_ticks = self.cfg.heartbeat_ticks;
        c.pre_vote = self.cfg.pre_vote;
        c.check_quorum = self.cfg.check_quorum;
        c.seed = self.cfg.seed.wrapping_mul(31).wrapping_add(id.0);
        c.max_snapshot_chunk = self.cfg.max_snapshot_chunk;
        c.read_lease = self.cfg.read_lease;
        c
    }

    pub(crate) fn boot(&mut self, id: NodeId) {
        let k = self.slot(id);
        let Some(disk) = self.hosts[k].disk.take() else {
            return;
        };
        // Registering what the disk holds lets log matching be checked against it too.
        let first = disk.first_index();
        for (i, e) in disk.entries().iter().enumerate() {
            let key = (first.plus(i as u64), e.term);
            self.log_registry.entry(key).or_insert(e.prefix_hash);
        }
        let compacted = disk.compacted();
        if let (Ok(term), Some(hash)) = (disk.term(compacted), disk.prefix_hash(compacted)) {
            if compacted > Index::ZERO {
                self.log_registry.entry((compacted, term)).or_insert(hash);
            }
        }
        // The state machine starts from the snapshot, if there is one.
        let sm = match disk.latest_snapshot() {
            None => Ok(StateMachine::default()),
            Some(s) => StateMachine::decode(&s.data).and_then(|sm| {
                if (sm.index, sm.term) == (s.meta.index, s.meta.term) {
                    Ok(sm)
                } else {
                    Err(format!(
                        "a snapshot described as {} holds {}",
                        s.meta.index, sm.index
                    ))
                }
            }),
        };
        let sm = match sm {
            Ok(sm) => sm,
            Err(e) => {
                self.fail(format!("n{id} cannot restore its state machine: {e}"));
                return;
            }
        };
        let node = match SimNode::new(&self.node_config(id), disk) {
            Ok(n) => n,
            Err(e) => {
                self.fail(format!("n{id} cannot start from its disk: {e}"));
                return;
            }
        };
        let st = node.status();
        let membership = node.membership().clone();
        let h = &mut self.hosts[k];
        h.node = Some(Box::new(node));
        h.incarnation += 1;
        h.io = None;
        h.seen_role = (Role::Follower, st.term);
        h.seen_commit = st.commit;
        h.seen_membership = membership;
        let inc = h.incarnation;
        self.restore(id, sm);
        let phase = self.rng.range(1, self.cfg.tick_us);
        self.schedule(
            phase,
            Action::Tick {
                node: id,
                incarnation: inc,
            },
        );
    }

    pub(crate) fn slot(&self, id: NodeId) -> usize {
        id.0 as usize - 1
    }

    pub(crate) fn schedule(&mut self, delay: u64, action: Action) {
        self.seq += 1;
        let s = Scheduled {
            time: self.now + delay,
            seq: self.seq,
            action,
        };
        self.queue.push(Reverse(s));
    }

    pub(crate) fn record(&mut self, kind: EventKind) {
        self.trace.push(Event {
            time: self.now,
            kind,
        });
    }

    pub(crate) fn fail(&mut self, what: String) {
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
            Action::Deliver {
                from,
                to,
                bytes,
                msg,
            } => self.deliver(from, to, &bytes, msg),
            Action::IoDone { node, incarnation } => {
                let k = self.slot(node);
                if self.hosts[k].incarnation == incarnation && self.hosts[k].node.is_some() {
                    self.finish_io(node);
                    self.after_input(node);
                }
            }
            Action::SyncDone {
                node,
                incarnation,
                index,
                term,
            } => {
                let k = self.slot(node);
                if self.hosts[k].incarnation == incarnation {
                    if let Some(n) = self.hosts[k].node.as_mut() {
                        n.storage_mut().mark_durable_through(index, term);
                        n.persisted(index, term);
                        self.after_input(node);
                    }
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

    /// Whether every live member (of [`Sim::cluster_membership`]) has applied the same
    /// entries, through the highest commit index any of them knows, with nothing left to
    /// persist. Nodes outside the configuration (removed, or not yet added) are not asked.
    pub fn in_agreement(&self) -> bool {
        let live: Vec<&Host> = self
            .ids
            .iter()
            .filter(|&&id| self.is_member(id))
            .map(|&id| &self.hosts[self.slot(id)])
            .filter(|h| h.node.is_some())
            .collect();
        let Some(first) = live.first() else {
            return true;
        };
        let n = first.sm.index.0 as usize;
        live.iter().all(|h| {
            let st = h.node.as_ref().map(|n| n.status());
            h.sm.index.0 as usize == n
                && h.io.is_none()
                && st.is_some_and(|s| s.commit.0 as usize == n && s.last_index.0 as usize == n)
        }) && n == self.committed_entries.len()
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

    /// Proposes a configuration change at node `id` (with no context bytes). The entry is
    /// traced; it counts as committed like any other once applied.
    pub fn propose_conf_change(
        &mut self,
        id: NodeId,
        changes: &[ConfChange],
    ) -> Result<Index, ProposeError> {
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.as_mut() else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let index = node.propose_conf_change(changes, &[])?;
        let term = node.term();
        self.record(EventKind::ConfChange {
            node: id,
            index,
            term,
            changes: changes.to_vec(),
        });
        self.after_input(id);
        Ok(index)
    }

    /// Asks leader `id` to hand leadership over to `to`.
    pub fn transfer_leadership(&mut self, id: NodeId, to: NodeId) -> Result<(), TransferError> {
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.as_mut() else {
            return Err(TransferError::NotLeader { leader: None });
        };
        node.transfer_leadership(to)?;
        self.record(EventKind::Transfer { node: id, to });
        self.after_input(id);
        Ok(())
    }

    /// Starts a new node, with the next free id, an empty disk and no voters: it waits,
    /// neither voting nor campaigning, until a leader adds it ([`Sim::propose_conf_change`]).
    pub fn add_node(&mut self) -> NodeId {
        let id = NodeId(self.ids.len() as u64 + 1);
        self.ids.push(id);
        let mut disk = SimStorage::new();
        disk.mark_durable();
        self.hosts.push(Host::new(disk, false));
        self.record(EventKind::NewNode { node: id });
        self.boot(id);
        id
    }

    /// Takes a snapshot of node `id`'s state machine now (if the node can name a point: it is
    /// up, no write is under way, and its applied configuration is known) and compacts its log
    /// through it. Returns the snapshot's index.
    pub fn snapshot(&mut self, id: NodeId) -> Option<Index> {
        if !self.has_host(id) {
            return None;
        }
        self.take_snapshot(id)
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
        let mut disk = node.into_storage();
        disk.lose_unsynced();
        self.hosts[k].disk = Some(disk);
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

    /// Adds a note to the trace.
    pub fn note(&mut self, text: impl Into<String>) {
        self.record(EventKind::Note { text: text.into() });
    }

    // ----- observation -----

    /// Every node's id, founders and added nodes alike, in id order.
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

    /// The live leader of the highest term, if no live member has a higher term than it (so
    /// that a deposed leader that has not yet heard the news is not reported). Only members of
    /// [`Sim::cluster_membership`] count: a removed node is nobody's leader.
    pub fn leader(&self) -> Option<NodeId> {
        let live = self
            .ids
            .iter()
            .filter(|&&id| self.is_member(id))
            .filter_map(|&id| self.status(id));
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

    /// What node `id`'s state machine has applied since it was last restored (from a
    /// snapshot, at [`Sim::restored_from`], or empty at boot), in order (empty while down).
    pub fn applied(&self, id: NodeId) -> &[CommittedEntry] {
        &self.hosts[self.slot(id)].applied
    }

    /// Node `id`'s state machine, if up.
    pub fn state_machine(&self, id: NodeId) -> Option<StateMachine> {
        let h = &self.hosts[self.slot(id)];
        h.node.as_ref().map(|_| h.sm)
    }

    /// The snapshot index node `id`'s state machine was last restored from (0 if it started
    /// empty and applied everything itself).
    pub fn restored_from(&self, id: NodeId) -> Index {
        self.hosts[self.slot(id)].restored
    }

    /// The state every node had after applying through `index` (its term and hash), once some
    /// node has (the empty state for index 0).
    pub fn state_at(&self, index: Index) -> Option<StateMachine> {
        let Some(i) = index.0.checked_sub(1) else {
            return Some(StateMachine::default());
        };
        let i = i as usize;
        self.committed
            .get(i)
            .map(|&(term, hash)| StateMachine { index, term, hash })
    }

    /// The configuration node `id` uses (the latest in its log), if up.
    pub fn membership(&self, id: NodeId) -> Option<&Membership> {
        self.node(id).map(|n| n.membership())
    }

    /// The cluster's configuration: that of the latest committed configuration entry applied
    /// anywhere (the bootstrap voters before any).
    pub fn cluster_membership(&self) -> &Membership {
        &self.cluster_config
    }

    /// Whether `id` is a member (voter or learner) of [`Sim::cluster_membership`].
    pub fn is_member(&self, id: NodeId) -> bool {
        self.cluster_config.contains(id)
    }

    /// The bootstrap voters.
    pub fn founders(&self) -> &[NodeId] {
        &self.founders
    }

    pub(crate) fn has_host(&self, id: NodeId) -> bool {
        id.0 >= 1 && id.0 as usize <= self.hosts.len()
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
