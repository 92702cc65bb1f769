//! The leader's and candidate's view of the other members: replication progress and votes.

mod inflights;
mod progress;

pub(crate) use progress::Progress;
pub use progress::ProgressState;

use crate::quorum::{self, VoteResult};
use crate::types::{Index, NodeId};

/// Every member's progress, this node's own included. Membership is fixed for now, so all
/// members vote.
#[derive(Clone, Debug)]
pub(crate) struct Tracker<const P: usize, const W: usize> {
    pub(crate) peers: heapless::Vec<Progress<W>, P>,
}

impl<const P: usize, const W: usize> Tracker<P, W> {
    pub(crate) const fn new() -> Self {
        Tracker {
            peers: heapless::Vec::new(),
        }
    }

    pub(crate) fn get(&self, id: NodeId) -> Option<&Progress<W>> {
        self.peers.iter().find(|p| p.id == id)
    }

    pub(crate) fn get_mut(&mut self, id: NodeId) -> Option<&mut Progress<W>> {
        self.peers.iter_mut().find(|p| p.id == id)
    }

    pub(crate) fn contains(&self, id: NodeId) -> bool {
        self.get(id).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// The highest index a majority of voters has matched.
    pub(crate) fn committed(&self) -> Index {
        let mut m = [0u64; P];
        for (slot, p) in m.iter_mut().zip(self.peers.iter()) {
            *slot = p.matched.0;
        }
        Index(quorum::majority_value(&mut m[..self.peers.len()]))
    }

    pub(crate) fn reset_votes(&mut self) {
        for p in self.peers.iter_mut() {
            p.vote = None;
        }
    }

    pub(crate) fn record_vote(&mut self, id: NodeId, granted: bool) {
        if let Some(p) = self.get_mut(id) {
            // Only the first answer counts: a duplicated or replayed response cannot flip it.
            if p.vote.is_none() {
                p.vote = Some(granted);
            }
        }
    }

    pub(crate) fn vote_result(&self) -> VoteResult {
        let granted = self.peers.iter().filter(|p| p.vote == Some(true)).count();
        let rejected = self.peers.iter().filter(|p| p.vote == Some(false)).count();
        quorum::vote_result(granted, rejected, self.peers.len())
    }

    /// Whether a quorum (counting `self_id`) was active this period; clears the flags.
    pub(crate) fn quorum_active(&mut self, self_id: NodeId) -> bool {
        let active = self
            .peers
            .iter()
            .filter(|p| p.id == self_id || p.recent_active)
            .count();
        for p in self.peers.iter_mut() {
            p.recent_active = p.id == self_id;
        }
        active >= quorum::majority(self.peers.len())
    }

    /// The highest read round a quorum has acknowledged.
    pub(crate) fn read_round_acked(&self) -> u64 {
        let mut m = [0u64; P];
        for (slot, p) in m.iter_mut().zip(self.peers.iter()) {
            *slot = p.read_round;
        }
        quorum::majority_value(&mut m[..self.peers.len()])
    }
}
