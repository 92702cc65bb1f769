//! Membership changes (thesis §4.3): which configuration is in effect, proposing a change,
//! leaving a joint configuration, and a removed leader stepping down.
//!
//! A node uses the latest configuration in its log, committed or not (thesis §4.1). The
//! configurations beyond the commit index are kept decoded in a short queue so that a
//! truncation can fall back to the one before without scanning the log; the leader never has
//! more than one there (it proposes a change only once the previous one is committed), and a
//! follower takes appends only while the queue has room, so the queue's bound is never a
//! limit on progress.

use super::{Raft, Role};
use crate::error::ProposeError;
use crate::membership::{ConfChange, ConfigEntry, Membership, CONFIG_ENTRY_VERSION};
use crate::message::{Body, EntryKind};
use crate::storage::Storage;
use crate::tracker::{Progress, ProgressState};
use crate::types::{Index, NodeId};
use crate::wire::Writer;

/// Configuration entries beyond the commit index a node holds at once.
pub(crate) const PENDING_CONFIGS: usize = 4;

/// The configurations a node knows: the latest committed one and the newer ones in its log.
#[derive(Clone, Debug)]
pub(crate) struct ConfigState {
    /// The latest configuration at or below the commit index (from a config entry, the
    /// snapshot, or the bootstrap voters), and its index (0 for bootstrap).
    pub(crate) committed: (Index, Membership),
    /// Configuration entries beyond the commit index, oldest first.
    pub(crate) pending: heapless::Deque<(Index, Membership), PENDING_CONFIGS>,
}

impl ConfigState {
    pub(crate) fn new(index: Index, membership: Membership) -> Self {
        ConfigState {
            committed: (index, membership),
            pending: heapless::Deque::new(),
        }
    }

    /// The configuration in effect: the latest in the log.
    pub(crate) fn current(&self) -> &Membership {
        self.pending.back().map_or(&self.committed.1, |(_, m)| m)
    }

    /// The commit index reached `commit`: configurations at or below it are committed.
    pub(crate) fn commit_to(&mut self, commit: Index) {
        while self.pending.front().is_some_and(|(i, _)| *i <= commit) {
            if let Some(c) = self.pending.pop_front() {
                self.committed = c;
            }
        }
    }

    /// Entries from `index` on were truncated. Returns whether the configuration in effect
    /// changed.
    pub(crate) fn truncate_from(&mut self, index: Index) -> bool {
        let mut changed = false;
        while self.pending.back().is_some_and(|(i, _)| *i >= index) {
            self.pending.pop_back();
            changed = true;
        }
        changed
    }
}

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
    /// Rebuilds the tracker for the configuration in effect, keeping what is known of members
    /// that stay. Returns false if the configuration has more members than `P` (it was checked
    /// before being adopted, so this does not happen).
    pub(crate) fn apply_membership(&mut self) -> bool {
        let config = self.config.current();
        if config.len() > P {
            return false;
        }
        let mut next: heapless::Vec<Progress<W>, P> = heapless::Vec::new();
        let last = self.log.last_index();
        for m in config.members() {
            let mut p = match self.tracker.get(m.id) {
                Some(p) => p.clone(),
                None => {
                    let mut p = Progress::new(m.id);
                    p.next = last.next();
                    p.recent_active = true;
                    if m.id == self.id {
                        p.matched = self.durable_index();
                    }
                    p
                }
            };
            p.voter = m.voter;
            p.outgoing = m.outgoing;
            // Room: `config.len() <= P`.
            let _ = next.push(p);
        }
        self.tracker.peers = next;
        self.tracker.joint = config.is_joint();
        if !self.lead_transferee.is_none() && !self.tracker.is_voter(self.lead_transferee) {
            self.lead_transferee = NodeId::NONE;
        }
        true
    }

    /// Whether the configuration entry carried by an append at `index` can be adopted: it
    /// decodes, fits `P`, and the queue of uncommitted configurations has room.
    pub(crate) fn adopt_config_entry(&mut self, index: Index, data: &[u8]) -> Result<(), ()> {
        let entry = ConfigEntry::decode(data).map_err(|_| ())?;
        if entry.membership.len() > P {
            return Err(());
        }
        self.config
            .pending
            .push_back((index, entry.membership))
            .map_err(|_| ())?;
        self.apply_membership();
        Ok(())
    }

    /// Entries from `index` on are being truncated: fall back to the configuration before.
    pub(crate) fn truncate_configs(&mut self, index: Index) {
        if self.config.truncate_from(index) {
            self.apply_membership();
        }
    }

    /// Whether a configuration change may be proposed now: nothing in flight, and this leader
    /// has committed an entry of its term (so no configuration of an earlier term is still
    /// pending in some member's log; the bug fix of Ongaro's single-server changes).
    pub(crate) fn can_change_config(&self) -> bool {
        self.role == Role::Leader
            && self.config.pending.is_empty()
            && !self.config.current().is_joint()
            && self.committed_in_term()
    }

    pub(crate) fn propose_conf_change(
        &mut self,
        changes: &[ConfChange],
        context: &[u8],
    ) -> Result<Index, ProposeError> {
        if !self.can_change_config() {
            return Err(ProposeError::ConfChangePending);
        }
        let next = self
            .config
            .current()
            .apply(changes)
            .map_err(ProposeError::InvalidConfChange)?;
        if next.len() > P {
            return Err(ProposeError::InvalidConfChange(
                crate::membership::MembershipError::TooMany,
            ));
        }
        for c in changes {
            if let ConfChange::AddVoter(id) = *c {
                if let Some(p) = self.tracker.get(id) {
                    if !p.voter && !p.outgoing && !self.caught_up(p) {
                        return Err(ProposeError::NotCaughtUp(id));
                    }
                }
            }
        }
        self.append_config(next, context)
    }

    /// A learner is caught up when it replicates normally and lags the leader's log by at most
    /// `max_learner_lag` entries.
    fn caught_up(&self, p: &Progress<W>) -> bool {
        p.state == ProgressState::Replicate
            && p.matched.0.saturating_add(self.max_learner_lag) >= self.log.last_index().0
    }

    /// Appends a configuration entry for `membership` with the host's `context`, and puts it
    /// in effect.
    fn append_config(
        &mut self,
        membership: Membership,
        context: &[u8],
    ) -> Result<Index, ProposeError> {
        let mut head = [0u8; 1 + Membership::MAX_ENCODED_LEN];
        let mut w = Writer::new(&mut head);
        let n = (|| {
            w.byte(CONFIG_ENTRY_VERSION)?;
            membership.encode_into(&mut w)?;
            Ok::<_, crate::error::EncodeError>(w.len())
        })()
        .map_err(|_| ProposeError::Busy)?;
        let len = n + context.len();
        if len > self.max_entry_bytes {
            return Err(ProposeError::TooLarge {
                len,
                max: self.max_entry_bytes,
            });
        }
        if !self.log.can_append(len) {
            return Err(ProposeError::Busy);
        }
        let index = self
            .log
            .append_parts(self.term, EntryKind::Config, &[&head[..n], context])
            .map_err(|_| ProposeError::Busy)?;
        self.config
            .pending
            .push_back((index, membership))
            .map_err(|_| ProposeError::Busy)?;
        self.apply_membership();
        Ok(index)
    }

    /// Whether the leader should append the entry that leaves its joint configuration now.
    pub(crate) fn can_leave_joint(&self) -> bool {
        self.role == Role::Leader
            && self.config.pending.is_empty()
            && self.config.current().is_joint()
            && self.committed_in_term()
            && self.lead_transferee.is_none()
    }

    /// On the leader: once a joint configuration is committed, append the configuration that
    /// leaves it (thesis §4.3). It carries no context: the host learnt everything it needs from
    /// the entry that entered the joint configuration.
    pub(crate) fn maybe_leave_joint(&mut self) {
        if !self.can_leave_joint() {
            return;
        }
        let next = self.config.committed.1.leave_joint();
        // On failure (no room in the log) this is retried on the next `Ready`.
        let _ = self.append_config(next, &[]);
    }

    /// On the leader, after the commit index moved: a leader that is no longer a voter steps
    /// down once the configuration that removed it is committed (thesis §4.2.2), handing over
    /// to the most up-to-date voter so that the cluster need not wait for an election timeout.
    pub(crate) fn maybe_step_down_removed(&mut self) {
        if self.role != Role::Leader
            || self.tracker.is_voter(self.id)
            || !self.config.pending.is_empty()
        {
            return;
        }
        let last = self.log.last_index();
        let heir = self
            .tracker
            .peers
            .iter()
            .filter(|p| p.voter && p.id != self.id && p.matched == last)
            .map(|p| p.id)
            .next();
        if let Some(heir) = heir {
            self.send(heir, Body::TimeoutNow);
        }
        let term = self.term;
        self.become_follower(term, NodeId::NONE);
    }

    /// The configuration in effect when the host's state machine is at `applied`, if known:
    /// the committed one, unless a committed configuration entry is not yet applied.
    pub(crate) fn membership_at_applied(&self) -> Option<&Membership> {
        (self.config.committed.0 <= self.applied).then_some(&self.config.committed.1)
    }
}
