//! What the leader knows of one follower's log (thesis §3.5 and etcd's `Progress`).

use super::inflights::Inflights;
use crate::types::{Index, NodeId};

/// How the leader sends to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgressState {
    /// The match point is unknown: send one append at a time and wait for the answer.
    Probe,
    /// The follower matches: stream appends, up to the in-flight window.
    Replicate,
    /// The follower needs entries the leader has compacted: send it the snapshot, one chunk
    /// at a time, then probe from the snapshot's index.
    Snapshot,
}

/// The leader's view of one member.
#[derive(Clone, Debug)]
pub(crate) struct Progress<const W: usize> {
    pub(crate) id: NodeId,
    /// Highest index known to match the leader's log.
    ///
    /// Invariant: `matched < next`.
    pub(crate) matched: Index,
    /// Next index to send.
    pub(crate) next: Index,
    pub(crate) state: ProgressState,
    /// In `Probe`: an append is outstanding, wait for its answer or a heartbeat response.
    pub(crate) probe_sent: bool,
    pub(crate) inflights: Inflights<W>,
    /// Heard from within the current check-quorum period.
    pub(crate) recent_active: bool,
    /// `matched` at the previous heartbeat answer if the member was behind then: still behind
    /// at the same point one heartbeat later means the appends in flight may be lost.
    pub(crate) behind_at_heartbeat: Option<Index>,
    /// Highest read round this member acknowledged.
    pub(crate) read_round: u64,
    /// Vote in the current election: `None` not yet answered.
    pub(crate) vote: Option<bool>,
    /// A voter of the incoming configuration.
    pub(crate) voter: bool,
    /// A voter of the outgoing configuration (joint changes only).
    pub(crate) outgoing: bool,
    /// In `Snapshot`: the snapshot being sent (its index and size) and the offset of the
    /// next chunk; `probe_sent` says a chunk is awaiting its answer.
    pub(crate) snap_index: Index,
    pub(crate) snap_len: u64,
    pub(crate) snap_offset: u64,
    /// In `Snapshot`: the offset outstanding at the previous heartbeat answer; still the same
    /// at the next one means the chunk or its answer was lost, and it goes out again.
    pub(crate) snap_stall: Option<u64>,
}

impl<const W: usize> Progress<W> {
    pub(crate) const fn new(id: NodeId) -> Self {
        Progress {
            id,
            matched: Index(0),
            next: Index(1),
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(),
            recent_active: false,
            behind_at_heartbeat: None,
            read_round: 0,
            vote: None,
            voter: false,
            outgoing: false,
            snap_index: Index(0),
            snap_len: 0,
            snap_offset: 0,
            snap_stall: None,
        }
    }

    /// Starts sending the snapshot at `index`, of `len` bytes, from its first byte.
    pub(crate) fn become_snapshot(&mut self, index: Index, len: u64) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.inflights.reset();
        self.snap_index = index;
        self.snap_len = len;
        self.snap_offset = 0;
        self.snap_stall = None;
    }

    /// Resets for a new leader whose last index is `last`.
    pub(crate) fn reset(&mut self, last: Index) {
        self.matched = Index(0);
        self.next = last.next();
        self.become_probe();
        self.recent_active = true;
        self.behind_at_heartbeat = None;
        self.read_round = 0;
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.inflights.reset();
        self.next = self.matched.next();
    }

    /// Whether the leader should hold further appends to this member.
    pub(crate) fn paused(&self) -> bool {
        match self.state {
            ProgressState::Probe | ProgressState::Snapshot => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
        }
    }

    /// Handles a successful append answer: returns whether `matched` moved.
    pub(crate) fn maybe_update(&mut self, index: Index) -> bool {
        let moved = index > self.matched;
        if moved {
            self.matched = index;
            self.probe_sent = false;
        }
        if self.next <= index {
            self.next = index.next();
        }
        moved
    }

    /// Handles a rejection of the append at `rejected` with the follower's hint resolved by the
    /// leader to `next`. Returns false if the rejection is stale (answers an older probe).
    pub(crate) fn maybe_decrease(&mut self, rejected: Index, next: Index) -> bool {
        match self.state {
            ProgressState::Replicate => {
                // A refusal of the append that starts right at the match point is not stale
                // even though `matched` has since caught up to it: the follower refused it
                // before it held entry `rejected` (the append overtook the one carrying that
                // entry), so the entries after `matched` were dropped. Ignoring it would leave
                // them counted in flight until the next heartbeats notice; resend from
                // `matched + 1` instead (at worst a duplicate, which the follower acknowledges).
                if rejected < self.matched {
                    return false;
                }
            }
            ProgressState::Probe => {
                if rejected != self.next.prev() {
                    return false;
                }
            }
            // A refusal of an append sent before the snapshot started.
            ProgressState::Snapshot => return false,
        }
        self.next = next
            .max(self.matched.next())
            .min(rejected.max(self.matched.next()));
        self.become_probe();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicating(matched: u64, next: u64) -> Progress<4> {
        let mut p = Progress::new(NodeId(2));
        p.matched = Index(matched);
        p.become_replicate();
        p.next = Index(next);
        p
    }

    #[test]
    fn rejection_below_the_match_point_is_stale() {
        let mut p = replicating(5, 12);
        assert!(!p.maybe_decrease(Index(4), Index(3)));
        assert_eq!((p.state, p.next), (ProgressState::Replicate, Index(12)));
    }

    #[test]
    fn rejection_at_the_match_point_resends_what_followed() {
        // Appends (prev 1, one entry) and (prev 2, nine entries) arrive in the wrong order: the
        // second is refused, the first acknowledged. Entries 3..=11 must go out again.
        let mut p = replicating(2, 12);
        assert!(p.maybe_decrease(Index(2), Index(2)));
        assert_eq!((p.state, p.next), (ProgressState::Probe, Index(3)));
    }
}
