//! The host loop of each simulated node (persist, send, apply, advance, with disk latency;
//! snapshot chunks written and installed; snapshots taken and the log compacted), and the
//! safety checks made as it runs.

use raft_core::{
    ConfigEntry, EntryKind, HardState, Index, Membership, NodeId, ReadState, Role, SnapshotMeta,
    Status, Storage, Term,
};

use crate::sim::{Action, CommittedEntry, Sim, SimNode};
use crate::state::StateMachine;
use crate::storage::{SimSnapshot, SimStorage};
use crate::trace::EventKind;

/// A snapshot chunk handed out by a `Ready`.
pub(crate) struct Chunk {
    pub(crate) meta: SnapshotMeta,
    pub(crate) offset: u64,
    pub(crate) data: Vec<u8>,
    pub(crate) last: bool,
}

/// A `Ready` taken and being written to disk.
pub(crate) struct PendingIo {
    pub(crate) hard_state: Option<HardState>,
    pub(crate) entries: Vec<CommittedEntry>,
    pub(crate) after_persist: Vec<(NodeId, Vec<u8>)>,
    pub(crate) committed: Vec<CommittedEntry>,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) chunk: Option<Chunk>,
}

pub(crate) struct Host {
    pub(crate) node: Option<Box<SimNode>>,
    /// The disk while the node is down.
    pub(crate) disk: Option<SimStorage>,
    pub(crate) io: Option<PendingIo>,
    pub(crate) incarnation: u64,
    /// A founding member (started with the bootstrap voters); others start empty and wait to
    /// be added.
    pub(crate) founder: bool,
    /// The state machine.
    pub(crate) sm: StateMachine,
    /// The snapshot index the state machine was last restored from (0: started empty).
    pub(crate) restored: Index,
    /// The entries applied since then, in order.
    pub(crate) applied: Vec<CommittedEntry>,
    pub(crate) seen_role: (Role, Term),
    pub(crate) seen_commit: Index,
    pub(crate) seen_membership: Membership,
}

impl Host {
    pub(crate) fn new(disk: SimStorage, founder: bool) -> Self {
        Host {
            node: None,
            disk: Some(disk),
            io: None,
            incarnation: 0,
            founder,
            sm: StateMachine::default(),
            restored: Index::ZERO,
            applied: Vec::new(),
            seen_role: (Role::Follower, Term::ZERO),
            seen_commit: Index::ZERO,
            seen_membership: Membership::empty(),
        }
    }
}

impl Sim {
    /// Observes the node after an input, checks what can be checked, and starts a disk write if
    /// it has a `Ready` and none is under way.
    pub(crate) fn after_input(&mut self, id: NodeId) {
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.as_ref() else {
            return;
        };
        let st = node.status();
        if *node.membership() != self.hosts[k].seen_membership {
            let membership = node.membership().clone();
            self.hosts[k].seen_membership = membership.clone();
            self.record(EventKind::Membership {
                node: id,
                membership: Box::new(membership),
            });
        }
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
        // Leader completeness (§5.4): the new leader holds every committed entry, in its log
        // or, for the compacted prefix, in its snapshot (whose history must be the committed
        // one: same prefix hash at the compacted point).
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.as_ref() else {
            return;
        };
        let disk = node.storage();
        let compacted = disk.compacted();
        let mut lacking = None;
        if compacted > Index::ZERO {
            if let Some(&(term, hash)) = self.committed.get(compacted.0 as usize - 1) {
                if disk.prefix_hash(compacted) != Some(hash)
                    || node.log_term(compacted) != Some(term)
                {
                    lacking = Some((compacted, term, None));
                }
            }
        }
        if lacking.is_none() {
            for (i, &(term, _)) in self.committed.iter().enumerate().skip(compacted.0 as usize) {
                // Only entries committed in an earlier term bind this leader: a leader elected
                // late in an old term (its votes were delayed) may lack what a later one
                // committed meanwhile.
                if self.committed_in.get(i).is_some_and(|&t| t >= st.term) {
                    continue;
                }
                let index = Index(i as u64 + 1);
                let have = node.log_term(index);
                if have != Some(term) {
                    lacking = Some((index, term, have));
                    break;
                }
            }
        }
        if let Some((index, term, have)) = lacking {
            self.fail(format!(
                "leader n{id} of term {} lacks committed entry {index} (term {term}, has {have:?})",
                st.term
            ));
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
        let entries: Vec<CommittedEntry> = rd.entries.iter().map(own).collect();
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
        let chunk = rd.snapshot.map(|c| Chunk {
            meta: c.meta(),
            offset: c.offset,
            data: c.data.to_vec(),
            last: c.is_last(),
        });
        let deferred = self.cfg.async_leader_persist && rd.can_defer_sync() && chunk.is_none();
        let io = PendingIo {
            hard_state: rd.hard_state,
            entries,
            after_persist,
            committed,
            read_states: rd.read_states.to_vec(),
            chunk,
        };
        let leader = node.role() == Role::Leader;
        if let Some(err) = broken {
            self.fail(format!("n{id} could not read a committed entry: {err}"));
            return;
        }
        if io
            .chunk
            .as_ref()
            .is_some_and(|c| c.last && (!io.entries.is_empty() || !io.committed.is_empty()))
        {
            // The Ready contract: a Ready that installs a snapshot has no entries and no
            // committed entries (the snapshot stands for them).
            self.fail(format!(
                "n{id}'s Ready installs a snapshot but also hands out {} entries and {} committed entries",
                io.entries.len(),
                io.committed.len()
            ));
            return;
        }
        if deferred && leader {
            // Written now (to the page cache: readable, not durable), advanced at once; the
            // sync reports back later, and a crash before it loses the write.
            for (to, bytes) in now {
                self.send(id, to, bytes);
            }
            let last = io.entries.last().map(|e| (e.index, e.term));
            self.complete_io(id, io, false);
            if let Some((index, term)) = last {
                let latency = self.rng.range(self.cfg.disk_min_us, self.cfg.disk_max_us);
                let incarnation = self.hosts[k].incarnation;
                self.schedule(
                    latency,
                    Action::SyncDone {
                        node: id,
                        incarnation,
                        index,
                        term,
                    },
                );
            }
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

    pub(crate) fn finish_io(&mut self, id: NodeId) {
        let k = self.slot(id);
        let Some(io) = self.hosts[k].io.take() else {
            return;
        };
        self.complete_io(id, io, true);
    }

    /// Writes a snapshot chunk into the incoming buffer, and installs the snapshot when it is
    /// the last: the disk's log is replaced by it and the state machine restored from it.
    fn write_chunk(&mut self, id: NodeId, c: Chunk) -> Result<(), String> {
        let k = self.slot(id);
        let node = self.hosts[k].node.as_mut().ok_or("down")?;
        let disk = node.storage_mut();
        let m = &c.meta;
        disk.write_chunk(m.index, m.term, m.len, c.offset, &c.data)
            .map_err(|e| {
                format!(
                    "n{id} was handed chunk {}+{} of snapshot {} that does not continue what it wrote: {e}",
                    c.offset,
                    c.data.len(),
                    m.index
                )
            })?;
        if !c.last {
            return Ok(());
        }
        let bytes = disk
            .received()
            .ok_or("a last chunk left the snapshot incomplete")?;
        let sm = StateMachine::decode(bytes).map_err(|e| format!("n{id} received {e}"))?;
        if (sm.index, sm.term) != (m.index, m.term) {
            return Err(format!(
                "n{id} received a snapshot of ({}, {}) described as ({}, {})",
                sm.index, sm.term, m.index, m.term
            ));
        }
        disk.install(c.meta.clone(), sm.hash)
            .map_err(|e| format!("n{id} could not install snapshot {}: {e}", m.index))?;
        self.restore(id, sm);
        self.register_point(id, sm.index, sm.term, sm.hash);
        self.record(EventKind::Install {
            node: id,
            index: sm.index,
            term: sm.term,
        });
        Ok(())
    }

    /// Restores node `id`'s state machine to `sm` (from a snapshot), checking state machine
    /// safety: it is the state every node had after applying through its index.
    pub(crate) fn restore(&mut self, id: NodeId, sm: StateMachine) {
        let k = self.slot(id);
        let h = &mut self.hosts[k];
        h.sm = sm;
        h.restored = sm.index;
        h.applied.clear();
        if sm.index == Index::ZERO {
            return;
        }
        if let Some(&(term, hash)) = self.committed.get(sm.index.0 as usize - 1) {
            if (term, hash) != (sm.term, sm.hash) {
                self.fail(format!(
                    "n{id} restored a state at {} (term {}, hash {:#x}) that differs from the one applied there (term {term}, hash {hash:#x})",
                    sm.index, sm.term, sm.hash
                ));
            }
        }
    }

    /// Log matching for a point a snapshot stands for: (index, term) names one history.
    fn register_point(&mut self, id: NodeId, index: Index, term: Term, hash: u64) {
        match self.log_registry.get(&(index, term)) {
            Some(&h) if h != hash => self.fail(format!(
                "log matching: n{id}'s snapshot holds a different history up to ({index}, {term})"
            )),
            Some(_) => {}
            None => {
                self.log_registry.insert((index, term), hash);
            }
        }
    }

    /// Writes a `Ready` to the disk, sends what waited for it, applies, and advances: synced
    /// (everything written so far is durable), or not (a leader's deferred sync).
    fn complete_io(&mut self, id: NodeId, mut io: PendingIo, synced: bool) {
        let k = self.slot(id);
        if let Some(c) = io.chunk.take() {
            if let Err(e) = self.write_chunk(id, c) {
                self.fail(e);
                return;
            }
        }
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
            if synced {
                node.storage_mut().mark_durable();
                node.advance();
            } else {
                node.advance_unsynced();
            }
        }
        self.maybe_snapshot(id);
    }

    fn apply(&mut self, id: NodeId, e: CommittedEntry) {
        let k = self.slot(id);
        let expect = self.hosts[k].sm.index.next();
        if e.index != expect {
            self.fail(format!(
                "n{id} applied {} out of order (expected {expect})",
                e.index
            ));
            return;
        }
        self.hosts[k].sm.apply(e.index, e.term, e.kind, &e.data);
        let hash = self.hosts[k].sm.hash;
        let i = e.index.0 as usize - 1;
        // State machine safety (§5.4.3): every node applies the same entry at each index, and
        // so has the same state after it.
        if let Some(&(term, h)) = self.committed.get(i) {
            if term != e.term || h != hash {
                self.fail(format!(
                    "n{id} applied ({}, {}) where ({}, {term}) was applied before",
                    e.index, e.term, e.index
                ));
                return;
            }
        } else if i == self.committed.len() {
            let term = self.hosts[k].node.as_ref().map_or(e.term, |n| n.term());
            self.committed.push((e.term, hash));
            self.committed_in.push(term);
            self.committed_entries.push(e.clone());
            if e.kind == EntryKind::Config {
                match ConfigEntry::decode(&e.data) {
                    Ok(c) => self.cluster_config = c.membership,
                    Err(err) => {
                        self.fail(format!("n{id} applied an undecodable config entry: {err}"));
                        return;
                    }
                }
            }
            if let Some(data) = self.proposals.remove(&(e.index, e.term)) {
                if data == e.data {
                    self.acked.push(e.clone());
                }
            }
        } else {
            self.fail(format!(
                "n{id} applied {} but only {} entries are known committed",
                e.index,
                self.committed.len()
            ));
            return;
        }
        self.hosts[k].applied.push(e);
    }

    /// With `SimConfig::snapshot_every`, takes a snapshot once that many entries were applied
    /// since the last one.
    fn maybe_snapshot(&mut self, id: NodeId) {
        let Some(every) = self.cfg.snapshot_every else {
            return;
        };
        let k = self.slot(id);
        let Some(node) = self.hosts[k].node.as_ref() else {
            return;
        };
        let last = node.storage().snapshot().map_or(0, |m| m.index.0);
        if self.hosts[k].sm.index.0 >= last + every.max(1) {
            self.take_snapshot(id);
        }
    }

    /// Snapshots node `id`'s state machine at the point the node names, saves it, and compacts
    /// the log through it. Returns the index, or `None` if the node cannot name a point now.
    pub(crate) fn take_snapshot(&mut self, id: NodeId) -> Option<Index> {
        let k = self.slot(id);
        let sm = self.hosts[k].sm;
        let size = self.cfg.snapshot_bytes;
        if self.hosts[k].io.is_some() {
            return None;
        }
        let node = self.hosts[k].node.as_mut()?;
        let mut meta = node.snapshot_point()?;
        if (meta.index, meta.term) != (sm.index, sm.term) {
            self.fail(format!(
                "n{id}'s snapshot point ({}, {}) is not what its state machine applied ({}, {})",
                meta.index, meta.term, sm.index, sm.term
            ));
            return None;
        }
        let data = sm.encode(size);
        meta.len = data.len() as u64;
        let (index, term, len) = (meta.index, meta.term, meta.len);
        let disk = node.storage_mut();
        let saved = disk
            .save_snapshot(SimSnapshot { meta, data })
            .and_then(|()| disk.compact(index));
        if let Err(e) = saved {
            self.fail(format!("n{id} could not save a snapshot at {index}: {e}"));
            return None;
        }
        self.record(EventKind::Snapshot {
            node: id,
            index,
            term,
            len,
        });
        Some(index)
    }
}
