//! Log replication (Raft §5.3): the follower's side of AppendEntries, and the leader's
//! progress tracking, flow control and commit rule (§5.4.2).

use super::{Raft, Role};
use crate::error::StepError;
use crate::message::{
    encode_entry, encode_header, entry_wire_len, Body, EntryKind, EntryList, Message, RejectHint,
    MAX_HEADER_LEN,
};
use crate::outbox::Class;
use crate::storage::Storage;
use crate::tracker::ProgressState;
use crate::types::{Index, NodeId, Term};

impl<
        S: Storage,
        const P: usize,
        const W: usize,
        const E: usize,
        const B: usize,
        const O: usize,
        const R: usize,
    > Raft<S, P, W, E, B, O, R>
{
    // ----- follower side -----

    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        commit: Index,
        entries: EntryList<'_>,
    ) -> Result<(), StepError> {
        if self.install_queued {
            // The host has yet to install the snapshot just received: entries after it wait,
            // so that the `Ready` that installs it carries none. (Only an append delayed in
            // the network arrives here; the leader sends none until the install is
            // acknowledged, and sends these again.)
            self.counters.stale += 1;
            return Ok(());
        }
        if prev_index < self.log.commit {
            // Everything up to our commit index matches any leader's log: say so, and the
            // leader resumes from there.
            let index = self.log.commit;
            self.send(
                from,
                Body::AppendResponse {
                    index,
                    reject: None,
                },
            );
            return Ok(());
        }
        if !self.log.matches(prev_index, prev_term) {
            let hint = if prev_index > self.log.last_index() {
                RejectHint {
                    index: self.log.last_index().next(),
                    term: Term::ZERO,
                }
            } else {
                let term = self.log.term(prev_index).unwrap_or(Term::ZERO);
                RejectHint {
                    index: self.log.first_of_term(prev_index),
                    term,
                }
            };
            self.send(
                from,
                Body::AppendResponse {
                    index: prev_index,
                    reject: Some(hint),
                },
            );
            return Ok(());
        }
        let mut last_new = prev_index;
        for e in entries.iter() {
            match self.log.term(e.index) {
                Some(t) if t == e.term => {
                    last_new = e.index;
                    continue;
                }
                Some(_) => {
                    if e.index <= self.log.commit {
                        // A leader may never contradict a committed entry.
                        self.counters.malformed += 1;
                        return Err(StepError::Malformed);
                    }
                    self.truncate_configs(e.index);
                    self.log.truncate_from(e.index);
                }
                None => {}
            }
            if !self.log.can_append(e.data.len()) {
                // Unstable log full: take what fits, acknowledge it, and the leader sends the
                // rest after we persist.
                self.counters.appends_truncated += 1;
                break;
            }
            if e.kind == EntryKind::Config {
                // Configurations take effect when appended. One this node cannot hold (it does
                // not decode or fit, or too many are uncommitted) stops the append here; the
                // leader sends it again once the commit index has moved.
                self.config
                    .commit_to(commit.min(last_new).max(self.log.commit));
                if self.adopt_config_entry(e.index, e.data).is_err() {
                    self.counters.configs_refused += 1;
                    break;
                }
            }
            if self.log.append(e.term, e.kind, e.data).is_err() {
                // Checked above.
                self.counters.appends_truncated += 1;
                break;
            }
            last_new = e.index;
        }
        self.log.commit_to(commit.min(last_new));
        self.config.commit_to(self.log.commit);
        self.send(
            from,
            Body::AppendResponse {
                index: last_new,
                reject: None,
            },
        );
        Ok(())
    }

    // ----- leader side -----

    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if !self.lead_transferee.is_none() {
            self.transfer_elapsed += 1;
            if self.transfer_elapsed >= self.election_ticks {
                // Thesis §3.10: a transfer that does not complete within an election timeout
                // is aborted, and the leader takes proposals again.
                self.lead_transferee = NodeId::NONE;
                self.counters.transfers_aborted += 1;
            }
        }
        if self.election_elapsed >= self.election_ticks {
            self.election_elapsed = 0;
            if self.check_quorum && !self.tracker.quorum_active(self.id) {
                let term = self.term;
                self.become_follower(term, NodeId::NONE);
                return;
            }
        }
        if self.heartbeat_elapsed >= self.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    pub(crate) fn broadcast_heartbeat(&mut self) {
        if self.read_lease {
            // Every heartbeat is a round, so that its answers renew the lease.
            self.start_lease_round();
        }
        for k in 0..self.tracker.len() {
            let p = &self.tracker.peers[k];
            if p.id == self.id {
                continue;
            }
            let (to, commit) = (p.id, p.matched.min(self.log.commit));
            let round = self.reads.round;
            self.send(to, Body::Heartbeat { commit, round });
        }
    }

    /// Sends appends to every member that can take them.
    pub(crate) fn broadcast_append(&mut self) {
        for k in 0..self.tracker.len() {
            let id = self.tracker.peers[k].id;
            if id != self.id {
                self.maybe_send_append(id);
            }
        }
    }

    /// Whether some member could be sent an append now.
    pub(crate) fn has_sendable(&self) -> bool {
        let last = self.log.last_index();
        self.tracker.peers.iter().any(|p| {
            p.id != self.id
                && !p.paused()
                && (p.state == ProgressState::Snapshot
                    || p.next <= last
                    || (p.state == ProgressState::Probe && !p.probe_sent))
        })
    }

    /// Sends `to` the next append if its progress allows one. Returns whether it sent.
    pub(crate) fn maybe_send_append(&mut self, to: NodeId) -> bool {
        self.send_append(to, false)
    }

    /// Like `maybe_send_append`, but with `allow_empty` an append goes out even when there is
    /// nothing new to send: it asks a follower in Replicate whether it holds `next - 1`, and a
    /// refusal starts backtracking (appends were lost).
    fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let last = self.log.last_index();
        let Some(p) = self.tracker.get(to) else {
            return false;
        };
        if p.paused() {
            return false;
        }
        if p.state == ProgressState::Snapshot {
            return self.send_snapshot_chunk(to);
        }
        if self.needs_snapshot(p.next) {
            // Its next entry is compacted: only the snapshot can help.
            if let Some(p) = self.tracker.get_mut(to) {
                p.become_snapshot(Index::ZERO, 0);
            }
            return self.send_snapshot_chunk(to);
        }
        let probe = p.state == ProgressState::Probe;
        let next = p.next;
        // In Replicate with nothing new there is nothing to say (heartbeats carry the commit);
        // a probe goes out even when empty, to find the match point.
        if !probe && next > last && !allow_empty {
            return false;
        }
        let prev_index = next.prev();
        let Some(prev_term) = self.log.term(prev_index) else {
            // Compacted below this member's needs: only a snapshot can help.
            self.counters.compacted_peers += 1;
            return false;
        };
        // How many entries fit in one message and in the outbox.
        if self.outbox.room() < MAX_HEADER_LEN {
            self.counters.appends_deferred += 1;
            return false;
        }
        let room = self.outbox.room() - MAX_HEADER_LEN;
        let budget = self
            .max_append_bytes
            .saturating_sub(MAX_HEADER_LEN)
            .min(room);
        let mut used = 0usize;
        let mut hi = prev_index;
        while hi < last {
            let Some(e) = self.log.entry(hi.next()) else {
                break;
            };
            let len = entry_wire_len(e.data.len());
            if used + len > budget {
                // An entry larger than one append allows (written under a larger
                // `max_entry_bytes`) still goes out, alone, rather than stall this member.
                if used == 0 && len <= room {
                    hi = hi.next();
                }
                break;
            }
            used += len;
            hi = hi.next();
        }
        if hi == prev_index && next <= last && !probe {
            // The next entry does not fit in what the outbox has left: retry after the host
            // takes the current Ready.
            self.counters.appends_deferred += 1;
            return false;
        }
        let header = Message {
            from: self.id,
            to,
            term: self.term,
            body: Body::Append {
                prev_index,
                prev_term,
                commit: self.log.commit,
                entries: EntryList::EMPTY,
            },
        };
        let count = (hi.0 - prev_index.0) as u32;
        let log = &self.log;
        let sent = self.outbox.push(to, Class::Now, |buf| {
            let mut n = encode_header(&header, count, buf)?;
            let mut i = prev_index.next();
            while i <= hi {
                // Read above; the log does not change while we encode.
                let Some(e) = log.entry(i) else {
                    return Err(crate::error::EncodeError::BufferFull);
                };
                n += encode_entry(&e, &mut buf[n..])?;
                i = i.next();
            }
            Ok(n)
        });
        if sent.is_err() {
            self.counters.appends_deferred += 1;
            return false;
        }
        let Some(p) = self.tracker.get_mut(to) else {
            return false;
        };
        match p.state {
            ProgressState::Replicate => {
                if hi > prev_index {
                    p.next = hi.next();
                    p.inflights.add(hi);
                }
            }
            ProgressState::Probe => p.probe_sent = true,
            ProgressState::Snapshot => {}
        }
        true
    }

    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        index: Index,
        reject: Option<RejectHint>,
    ) -> Result<(), StepError> {
        let last = self.log.last_index();
        if index > last {
            // Acknowledges entries we never had: a confused or hostile peer.
            self.counters.malformed += 1;
            return Err(StepError::Malformed);
        }
        let Some(p) = self.tracker.get_mut(from) else {
            return Ok(());
        };
        p.recent_active = true;
        match reject {
            None => {
                if p.maybe_update(index) {
                    match p.state {
                        ProgressState::Probe => p.become_replicate(),
                        ProgressState::Replicate => p.inflights.free_le(index),
                        ProgressState::Snapshot => {
                            // It caught up by other means (it held the entries already).
                            if p.matched >= p.snap_index {
                                p.become_probe();
                                p.next = p.matched.next();
                            }
                        }
                    }
                    if self.maybe_commit() {
                        self.on_commit_advanced();
                    }
                } else if p.state == ProgressState::Probe
                    && index == p.matched
                    && p.next == index.next()
                {
                    // The probe found the follower where we already knew it matched: after a
                    // snapshot `matched` is set to the snapshot's index before the probe goes
                    // out, so this answer moves nothing and yet confirms the match point.
                    // Without this the member stays in Probe until a new entry is appended
                    // (and a learner is never caught up enough to promote in an idle cluster).
                    p.become_replicate();
                } else if p.state == ProgressState::Replicate {
                    p.inflights.free_le(index);
                }
                self.maybe_send_append(from);
                self.maybe_send_timeout_now(from);
            }
            Some(hint) => {
                // Fast backtracking: skip a whole term of the follower's log at a time.
                let next = if hint.term == Term::ZERO {
                    hint.index
                } else {
                    match self.log.last_of_term(hint.term, index) {
                        Some(i) => i.next(),
                        None => hint.index,
                    }
                };
                let Some(p) = self.tracker.get_mut(from) else {
                    return Ok(());
                };
                if p.maybe_decrease(index, next) {
                    self.maybe_send_append(from);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        let last = self.log.last_index();
        let Some(p) = self.tracker.get_mut(from) else {
            return;
        };
        p.recent_active = true;
        if round > p.read_round && round <= self.reads.round {
            p.read_round = round;
        }
        if p.state == ProgressState::Snapshot {
            self.snapshot_heartbeat(from);
            self.renew_lease();
            self.release_reads();
            return;
        }
        p.probe_sent = false;
        // The peer is alive; if the window is full an acknowledgement may have been lost.
        if p.state == ProgressState::Replicate && p.inflights.full() {
            p.inflights.free_first();
        }
        // Behind at the previous heartbeat answer already, and no acknowledgement since: for a
        // whole heartbeat interval the appends in flight went unanswered, so they were probably
        // lost. Ask about `next - 1`: a refusal starts backtracking, an acceptance catches
        // `matched` up. (This is the only recovery needed: an append or answer lost in
        // Replicate is always followed by heartbeat answers, or the member is unreachable.)
        let behind = p.matched < last;
        let stalled = p.state == ProgressState::Replicate
            && behind
            && p.behind_at_heartbeat == Some(p.matched);
        p.behind_at_heartbeat = behind.then_some(p.matched);
        if p.matched < last {
            self.send_append(from, stalled);
        }
        self.renew_lease();
        self.release_reads();
    }

    pub(crate) fn report_unreachable(&mut self, peer: NodeId) {
        if self.role != Role::Leader || peer == self.id {
            return;
        }
        if let Some(p) = self.tracker.get_mut(peer) {
            if p.state == ProgressState::Replicate {
                p.become_probe();
                p.next = p.matched.next();
            }
        }
    }

    /// Raft §5.4.2: advance the commit index to what a majority holds, but only by counting
    /// replicas of an entry of the current term.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let mci = self.tracker.committed().min(self.log.last_index());
        if mci > self.log.commit && self.log.term(mci) == Some(self.term) {
            self.log.commit = mci;
            self.config.commit_to(mci);
            true
        } else {
            false
        }
    }

    pub(crate) fn on_commit_advanced(&mut self) {
        // Reads queued before the first commit of this term can be served now.
        if self.role == Role::Leader {
            self.assign_reads();
            self.maybe_step_down_removed();
        }
    }

    /// The host made the log durable through `durable_index`: count the leader's own copy.
    pub(crate) fn leader_persisted(&mut self) {
        let stable = self.durable_index();
        let id = self.id;
        if let Some(p) = self.tracker.get_mut(id) {
            if stable > p.matched {
                p.matched = stable;
            }
        }
        if self.maybe_commit() {
            self.on_commit_advanced();
        }
    }
}
