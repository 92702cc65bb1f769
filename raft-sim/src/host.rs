//! The host loop of each simulated node (persist, send, apply, advance, with disk latency), and
//! the safety checks made as it runs.

use raft_core::{HardState, Index, NodeId, ReadState, Role, Status, Storage, Term};

use crate::sim::{Action, CommittedEntry, Sim, SimNode};
use crate::storage::{hash_bytes, mix, SimStorage, FNV_OFFSET};
use crate::trace::EventKind;

/// A `Ready` taken and being written to disk.
pub(crate) struct PendingIo {
    pub(crate) hard_state: Option<HardState>,
    pub(crate) entries: Vec<CommittedEntry>,
    pub(crate) after_persist: Vec<(NodeId, Vec<u8>)>,
    pub(crate) committed: Vec<CommittedEntry>,
    pub(crate) read_states: Vec<ReadState>,
}

pub(crate) struct Host {
    pub(crate) node: Option<Box<SimNode>>,
    /// The disk while the node is down.
    pub(crate) disk: Option<SimStorage>,
    pub(crate) io: Option<PendingIo>,
    pub(crate) incarnation: u64,
    /// The state machine: every committed entry applied, in order.
    pub(crate) applied: Vec<CommittedEntry>,
    pub(crate) seen_role: (Role, Term),
    pub(crate) seen_commit: Index,
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
        let deferred = self.cfg.async_leader_persist && rd.can_defer_sync();
        let io = PendingIo {
            hard_state: rd.hard_state,
            entries,
            after_persist,
            committed,
            read_states: rd.read_states.to_vec(),
        };
        let leader = node.role() == Role::Leader;
        if let Some(err) = broken {
            self.fail(format!("n{id} could not read a committed entry: {err}"));
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

    /// Writes a `Ready` to the disk, sends what waited for it, applies, and advances: synced
    /// (everything written so far is durable), or not (a leader's deferred sync).
    fn complete_io(&mut self, id: NodeId, io: PendingIo, synced: bool) {
        let k = self.slot(id);
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
}
