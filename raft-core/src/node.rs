//! [`Node`]: the public handle, and the only way in and out of the protocol.

use crate::config::Config;
use crate::error::{CampaignError, ConfigError, ProposeError, ReadError, StepError, TransferError};
use crate::membership::{ConfChange, Membership};
use crate::message::{Entry, EntryKind, Message};
use crate::outbox::Class;
use crate::raft::{Counters, Raft, Role};
use crate::ready::{Entries, Ready, SnapshotChunk};
use crate::storage::{HardState, SnapshotMeta, Storage};
use crate::tracker::ProgressState;
use crate::types::{Index, NodeId, Term};

/// A Raft node: the protocol for one member, with no I/O, no clock and no allocation.
///
/// Inputs: [`tick`](Node::tick), [`step`](Node::step), [`propose`](Node::propose),
/// [`campaign`](Node::campaign), [`read_index`](Node::read_index). Output:
/// [`ready`](Node::ready), acknowledged with [`advance`](Node::advance). Getters:
/// [`status`](Node::status), [`counters`](Node::counters), [`progress`](Node::progress).
///
/// The capacities are compile-time, and every one of them is a hard bound (the README's
/// "Memory bounds" table lists the defaults and what exceeding each one does):
///
/// - `PEERS`: members, this node included;
/// - `INFLIGHT`: appends in flight to one follower;
/// - `LOG_ENTRIES` / `LOG_BYTES`: entries and payload bytes not yet persisted by the host;
/// - `OUTBOX_BYTES`: encoded messages waiting in one `Ready`;
/// - `READS`: pending ReadIndex requests, and read states per `Ready`.
pub struct Node<
    S,
    const PEERS: usize = 7,
    const INFLIGHT: usize = 16,
    const LOG_ENTRIES: usize = 256,
    const LOG_BYTES: usize = { 16 * 1024 },
    const OUTBOX_BYTES: usize = { 32 * 1024 },
    const READS: usize = 16,
> {
    raft: Raft<S, PEERS, INFLIGHT, LOG_ENTRIES, LOG_BYTES, OUTBOX_BYTES, READS>,
    taken: Option<Taken>,
}

/// What the last `ready()` handed out, so `advance()` retires exactly that.
#[derive(Clone, Copy, Debug)]
struct Taken {
    hard_state: Option<HardState>,
    hard_state_must_sync: bool,
    outbox_after_persist: usize,
    last: Option<(Index, Term)>,
    commit: Index,
    outbox_len: usize,
    outbox_count: usize,
    read_states: usize,
    /// A snapshot chunk was handed out; `install` if it was the last.
    chunk: bool,
    install: Option<Index>,
}

/// A snapshot of a node's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// Its vote in `term`.
    pub vote: NodeId,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    /// Highest index known committed.
    pub commit: Index,
    /// Highest index handed to the host to apply and advanced past.
    pub applied: Index,
    /// Last index in its log (persisted or not).
    pub last_index: Index,
    /// Term of that entry.
    pub last_term: Term,
    /// Highest index the host has persisted.
    pub stable_index: Index,
    /// The first index of the log (entries before it were compacted into a snapshot).
    pub first_index: Index,
    /// During a leadership transfer, its target.
    pub transferee: Option<NodeId>,
}

/// The leader's view of one member's replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PeerProgress {
    /// Highest index known to match.
    pub matched: Index,
    /// Next index to send.
    pub next: Index,
    /// Probe or Replicate.
    pub state: ProgressState,
    /// Appends in flight.
    pub inflight: usize,
    /// Heard from in the current check-quorum period.
    pub recent_active: bool,
}

impl<
        S: Storage,
        const P: usize,
        const W: usize,
        const E: usize,
        const B: usize,
        const O: usize,
        const R: usize,
    > Node<S, P, W, E, B, O, R>
{
    /// Creates a node, restoring term, vote, commit index and log from `storage`.
    pub fn new(config: &Config<'_>, storage: S) -> Result<Self, ConfigError> {
        Ok(Node {
            raft: Raft::new(config, storage)?,
            taken: None,
        })
    }

    // ----- inputs -----

    /// Advances the logical clock by one tick. Call it at a fixed interval; elections and
    /// heartbeats are counted in ticks.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Decodes and handles a message received from a peer. Bytes that are not a message, or a
    /// message that is not for this node, are refused with an error and change nothing.
    pub fn step(&mut self, bytes: &[u8]) -> Result<(), StepError> {
        let m = Message::decode(bytes).map_err(|e| {
            self.raft.counters.malformed += 1;
            StepError::Decode(e)
        })?;
        self.raft.step(&m)
    }

    /// Handles an already decoded message.
    pub fn step_message(&mut self, m: &Message<'_>) -> Result<(), StepError> {
        self.raft.step(m)
    }

    /// Proposes `data` for the replicated log and returns the index it will have if committed.
    /// The entry goes out to followers with the next `ready()`, batched with every other
    /// proposal since the last one. A later committed entry at that index with another term
    /// means the proposal was lost to a leader change.
    pub fn propose(&mut self, data: &[u8]) -> Result<Index, ProposeError> {
        let checked = self.admit(data.len());
        let r = &mut self.raft;
        let appended = checked.and_then(|()| {
            r.log
                .append(r.term, EntryKind::Normal, data)
                .map_err(|_| ProposeError::Busy)
        });
        if appended == Err(ProposeError::Busy) {
            r.counters.proposals_busy += 1;
        }
        appended
    }

    /// Proposes a configuration change (thesis §4.3) with `context`, bytes for the host that
    /// travel in the config entry (raft-std puts the members' addresses there), and returns the
    /// entry's index. Adding or removing a learner takes one entry; any change of voters goes
    /// through the joint configuration, and the leader appends the entry that leaves it by
    /// itself once the first is committed. Refused with
    /// [`ProposeError::ConfChangePending`] while a change is in flight, and with
    /// [`ProposeError::NotCaughtUp`] for a learner to promote that lags. The new
    /// configuration takes effect as soon as it is in the log.
    pub fn propose_conf_change(
        &mut self,
        changes: &[ConfChange],
        context: &[u8],
    ) -> Result<Index, ProposeError> {
        self.admit(0)?;
        self.raft.propose_conf_change(changes, context)
    }

    /// Hands leadership over to voter `to` (thesis §3.10). Proposals are refused with
    /// [`ProposeError::Transferring`] until it completes (this node sees the new leader's
    /// term and steps down) or aborts (after an election timeout).
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        self.raft.transfer_leadership(to)
    }

    /// Whether a proposal of `len` bytes would be accepted now (leader, size, room).
    pub fn can_propose(&self, len: usize) -> bool {
        self.admit(len).is_ok()
    }

    /// The checks `propose` makes before appending: one place, so that `can_propose` answers
    /// exactly what `propose` would do.
    fn admit(&self, len: usize) -> Result<(), ProposeError> {
        let r = &self.raft;
        if r.role != Role::Leader {
            let leader = (!r.leader.is_none()).then_some(r.leader);
            return Err(ProposeError::NotLeader { leader });
        }
        if !r.lead_transferee.is_none() {
            return Err(ProposeError::Transferring);
        }
        if len > r.max_entry_bytes {
            return Err(ProposeError::TooLarge {
                len,
                max: r.max_entry_bytes,
            });
        }
        let uncommitted = r.log.last_index().0 - r.log.commit.0;
        if uncommitted >= r.max_uncommitted || !r.log.can_append(len) {
            return Err(ProposeError::Busy);
        }
        Ok(())
    }

    /// Starts an election now (with a pre-vote round first if configured), as if the election
    /// timer had fired. Like the timer, it does nothing while a snapshot just received waits
    /// for the host to install it (until the next `advance`).
    pub fn campaign(&mut self) -> Result<(), CampaignError> {
        if self.raft.role == Role::Leader {
            return Err(CampaignError::AlreadyLeader);
        }
        if !self.raft.is_voter() {
            return Err(CampaignError::NotVoter);
        }
        if self.raft.term_exhausted() {
            return Err(CampaignError::TermExhausted);
        }
        self.raft.hup();
        Ok(())
    }

    /// Requests a linearizable read (ReadIndex). When the leader has confirmed its leadership
    /// with a quorum, a [`ReadState`](crate::ReadState) with this `context` appears in a
    /// `Ready`; serve the read once the state machine has applied its index. A follower
    /// forwards the request to its leader. If leadership changes meanwhile the request is
    /// dropped: time out and retry.
    pub fn read_index(&mut self, context: u64) -> Result<(), ReadError> {
        self.raft.read_index(context)
    }

    /// The host could not deliver to `peer` (its send queue is full, or its connection is
    /// down). A leader stops streaming appends to it and probes instead, one append at a time,
    /// until it answers: no window of appends piles up for a member that is not reading them.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        self.raft.report_unreachable(peer);
    }

    // ----- outputs -----

    /// Whether `ready()` has anything for the host.
    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        r.hard_state() != r.persisted
            || !r.log.unstable.is_empty()
            || r.outbox.len() > 0
            || r.log.commit > r.applied
            || !r.read_states.is_empty()
            || (r.role == Role::Leader
                && (r.has_sendable()
                    || r.reads_to_assign()
                    || r.noop_pending
                    || (r.config.current().is_joint() && r.can_leave_joint())))
    }

    /// What the host must do now; see [`Ready`] for the order. Borrowing, not copying: the
    /// entries and messages are views into the node. Call [`advance`](Node::advance) after.
    pub fn ready(&mut self) -> Ready<'_, S> {
        let r = &mut self.raft;
        r.config.commit_to(r.log.commit);
        if r.role == Role::Leader {
            r.maybe_append_noop();
            r.maybe_leave_joint();
            r.broadcast_append();
            r.assign_reads();
        }
        let hs = r.hard_state();
        let hard_state = (hs != r.persisted).then_some(hs);
        r.log.handed_out();
        let unstable = r.log.unstable.view();
        let last = (unstable.len() > 0).then(|| {
            let i = unstable.last_index();
            (i, r.log.unstable.term(i).unwrap_or(Term::ZERO))
        });
        let hard_state_must_sync =
            hard_state.is_some_and(|h| h.term != r.persisted.term || h.vote != r.persisted.vote);
        let install = r.install_queued;
        let must_sync = last.is_some() || hard_state_must_sync || r.chunk_queued.is_some();
        let outbox_len = r.outbox.len();
        let snapshot = r.chunk_queued.and_then(|c| {
            let data = r.outbox.iter(outbox_len, Class::Chunk).iter().next()?.bytes;
            let membership = match &r.snap_recv {
                Some(recv) if !install => &recv.membership,
                _ => &r.config.committed.1,
            };
            Some(SnapshotChunk {
                index: c.index,
                term: c.term,
                len: c.len,
                offset: c.offset,
                data,
                membership,
            })
        });
        self.taken = Some(Taken {
            hard_state,
            hard_state_must_sync,
            outbox_after_persist: r.outbox.iter(r.outbox.len(), Class::AfterPersist).len(),
            last,
            commit: r.log.commit,
            outbox_len: r.outbox.len(),
            outbox_count: r.outbox.count(),
            read_states: r.read_states.len(),
            chunk: snapshot.is_some(),
            install: (install && snapshot.is_some()).then_some(r.log.commit),
        });
        // Nothing is applied in a Ready that installs a snapshot: the snapshot covers it.
        let applied = if install { r.log.commit } else { r.applied };
        Ready {
            messages: r.outbox.iter(outbox_len, Class::Now),
            persisted_messages: r.outbox.iter(outbox_len, Class::AfterPersist),
            storage: &mut r.log.storage,
            hard_state,
            entries: Entries { view: unstable },
            read_states: &r.read_states,
            snapshot,
            unstable,
            applied,
            commit: r.log.commit,
            must_sync,
            hard_state_must_sync,
        }
    }

    /// The host has done everything the last `Ready` asked. Inputs that arrived between
    /// `ready()` and `advance()` are kept for the next `Ready`.
    pub fn advance(&mut self) {
        self.finish(true);
    }

    /// Like [`advance`](Node::advance), for a `Ready` whose entries the host has written
    /// (readable through the storage) but whose sync is still under way, so that the node goes
    /// on working while the disk does (thesis §10.2.1). Allowed only when
    /// [`Ready::can_defer_sync`] said so; otherwise it acts as `advance`. The leader does not
    /// count its own copy of those entries until the host reports them durable with
    /// [`persisted`](Node::persisted). A later `advance` (after a sync that covers everything
    /// written before it) counts everything.
    pub fn advance_unsynced(&mut self) {
        let deferrable = self
            .taken
            .is_some_and(|t| t.outbox_after_persist == 0 && !t.hard_state_must_sync);
        self.finish(!deferrable);
    }

    /// The host's sync made the log durable through `index`, whose entry had `term` when it
    /// was written. Stale reports (the entry was since replaced) are ignored.
    pub fn persisted(&mut self, index: Index, term: Term) {
        let r = &mut self.raft;
        if index <= r.durable || r.log.term(index) != Some(term) {
            return;
        }
        r.durable = index;
        if r.role == Role::Leader {
            r.leader_persisted();
        }
    }

    fn finish(&mut self, synced: bool) {
        let Some(t) = self.taken.take() else { return };
        let r = &mut self.raft;
        if let Some(hs) = t.hard_state {
            r.persisted = hs;
        }
        if let Some((index, term)) = t.last {
            r.log.stable_to(index, term);
        }
        if let Some(index) = t.install {
            // The host installed the snapshot: its storage answers for it now.
            r.log.installed();
            r.install_queued = false;
            r.durable = r.durable.max(index);
            r.counters.snapshots_installed += 1;
        }
        if t.chunk {
            r.chunk_queued = None;
        }
        if synced {
            // The sync covered everything written so far.
            r.durable = r.log.stable_index();
        }
        if t.commit > r.applied {
            r.applied = t.commit;
        }
        r.config.commit_to(r.log.commit);
        r.outbox.drain(t.outbox_len, t.outbox_count);
        // Keep the read states confirmed after the `Ready` was taken, at the front.
        let n = t.read_states.min(r.read_states.len());
        r.read_states.rotate_left(n);
        r.read_states.truncate(r.read_states.len() - n);
        if r.role == Role::Leader {
            r.leader_persisted();
            r.maybe_append_noop();
            r.release_reads();
        }
    }

    // ----- getters -----

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.raft.id
    }

    /// A snapshot of the node's state.
    pub fn status(&self) -> Status {
        let r = &self.raft;
        Status {
            id: r.id,
            role: r.role,
            term: r.term,
            vote: r.vote,
            leader: (!r.leader.is_none()).then_some(r.leader),
            commit: r.log.commit,
            applied: r.applied,
            last_index: r.log.last_index(),
            last_term: r.log.last_term(),
            stable_index: r.log.stable_index(),
            first_index: r.log.first_index(),
            transferee: (!r.lead_transferee.is_none()).then_some(r.lead_transferee),
        }
    }

    /// The configuration in effect: the latest in this node's log, committed or not.
    pub fn membership(&self) -> &Membership {
        self.raft.config.current()
    }

    /// The latest committed configuration this node knows, and the index of its entry (0 for
    /// the bootstrap voters).
    pub fn committed_membership(&self) -> (Index, &Membership) {
        let (i, m) = &self.raft.config.committed;
        (*i, m)
    }

    /// Whether a configuration change could be proposed now (this node leads, has committed
    /// an entry of its term, and no change is in flight).
    pub fn can_change_config(&self) -> bool {
        self.raft.can_change_config()
    }

    /// What a snapshot of the host's state machine taken now (after `advance`, with
    /// everything handed out applied) covers: the applied index, its term, and the
    /// configuration there. `None` when nothing is applied yet, or a committed configuration
    /// entry is not applied yet (apply further and ask again). The host fills in `len` once
    /// the snapshot is written, makes it its storage's [`Storage::snapshot`], and may then
    /// compact its log through `index`.
    pub fn snapshot_point(&self) -> Option<SnapshotMeta> {
        let r = &self.raft;
        if r.applied == Index::ZERO || self.taken.is_some() {
            return None;
        }
        let term = r.log.term(r.applied)?;
        let membership = r.membership_at_applied()?.clone();
        Some(SnapshotMeta {
            index: r.applied,
            term,
            membership,
            len: 0,
        })
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.raft.role
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.raft.term
    }

    /// The leader this node knows, if any.
    pub fn leader(&self) -> Option<NodeId> {
        (!self.raft.leader.is_none()).then_some(self.raft.leader)
    }

    /// What this node has counted.
    pub fn counters(&self) -> Counters {
        self.raft.counters
    }

    /// On the leader: its view of member `id`.
    pub fn progress(&self, id: NodeId) -> Option<PeerProgress> {
        if self.raft.role != Role::Leader {
            return None;
        }
        self.raft.tracker.get(id).map(|p| PeerProgress {
            matched: p.matched,
            next: p.next,
            state: p.state,
            inflight: p.inflights.len(),
            recent_active: p.recent_active,
        })
    }

    /// The term of the entry at `index` in this node's log (persisted or not), if held.
    pub fn log_term(&self, index: Index) -> Option<Term> {
        self.raft.log.term(index)
    }

    /// The entry at `index` in this node's log (persisted or not), if held.
    pub fn log_entry(&self, index: Index) -> Option<Entry<'_>> {
        self.raft.log.entry(index)
    }

    /// The host's storage.
    pub fn storage(&self) -> &S {
        &self.raft.log.storage
    }

    /// The host's storage, for maintenance such as compacting applied entries. Do not write
    /// log entries or hard state here other than through a `Ready`.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.raft.log.storage
    }

    /// Consumes the node and returns its storage: what survives a crash.
    pub fn into_storage(self) -> S {
        self.raft.log.storage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    /// The memory a node takes is its capacities plus a small constant: the README's "Memory
    /// bounds" table quotes these sizes.
    #[test]
    fn size_is_bounded_by_the_capacities() {
        const META: usize = 24;
        // The configurations a node keeps: the committed one, the pending ones, and the one a
        // snapshot being received carries.
        const CONFIGS: usize =
            (crate::raft::PENDING_CONFIGS + 2) * (core::mem::size_of::<Membership>() + 8);
        fn bound(p: usize, w: usize, e: usize, b: usize, o: usize, r: usize) -> usize {
            b + e * META + o + p * (w * 8 + 160) + r * 48 + CONFIGS + 1024
        }
        assert!(core::mem::size_of::<Membership>() <= 16 * crate::MAX_MEMBERS + 16);
        let core = core::mem::size_of::<Node<MemStorage<1, 1>>>();
        assert!(
            core <= bound(7, 16, 256, 16 * 1024, 32 * 1024, 16),
            "{core}"
        );
        let small = core::mem::size_of::<Node<MemStorage<1, 1>, 3, 4, 32, 2048, 4096, 4>>();
        assert!(small <= bound(3, 4, 32, 2048, 4096, 4), "{small}");
        let storage = core::mem::size_of::<MemStorage>();
        assert!(storage <= 64 * 1024 + 1024 * META + 128, "{storage}");
    }
}
