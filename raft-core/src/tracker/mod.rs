//! The leader's and candidate's view of the other members: replication progress and votes.

mod inflights;
mod progress;

pub(crate) use progress::Progress;
pub use progress::ProgressState;

use crate::quorum::{self, VoteResult};
use crate::types::{Index, NodeId};

/// Every member's progress, this node's own included (when it is a member): voters of the
/// incoming and, during a joint change, the outgoing configuration, and learners. Decisions
/// (commit, elections, check-quorum, read rounds) need a majority of the incoming voters and,
/// when joint, a majority of the outgoing voters too.
#[derive(Clone, Debug)]
pub(crate) struct Tracker<const P: usize, const W: usize> {
    pub(crate) peers: heapless::Vec<Progress<W>, P>,
    pub(crate) joint: bool,
}

/// The two halves of a (possibly joint) configuration.
#[derive(Clone, Copy)]
enum Half {
    Incoming,
    Outgoing,
}

impl Half {
    fn votes<const W: usize>(self, p: &Progress<W>) -> bool {
        match self {
            Half::Incoming => p.voter,
            Half::Outgoing => p.outgoing,
        }
    }
}

impl<const P: usize, const W: usize> Tracker<P, W> {
    pub(crate) const fn new() -> Self {
        Tracker {
            peers: heapless::Vec::new(),
            joint: false,
        }
    }

    /// The halves whose majorities decide: the incoming voters, and the outgoing ones when
    /// joint.
    fn halves(&self) -> &'static [Half] {
        if self.joint {
            &[Half::Incoming, Half::Outgoing]
        } else {
            &[Half::Incoming]
        }
    }

    /// The largest value a majority of `half`'s voters is at or above.
    fn majority_of(&self, half: Half, value: impl Fn(&Progress<W>) -> u64) -> u64 {
        let mut m = [0u64; P];
        let mut n = 0;
        for p in self.peers.iter().filter(|p| half.votes(p)) {
            m[n] = value(p);
            n += 1;
        }
        if n == 0 {
            // No voters in this half: it agrees to anything (never the case for the incoming
            // half of a valid configuration).
            return u64::MAX;
        }
        quorum::majority_value(&mut m[..n])
    }

    /// The lowest of the halves' majority values.
    fn joint_majority(&self, value: impl Fn(&Progress<W>) -> u64 + Copy) -> u64 {
        self.halves()
            .iter()
            .map(|&h| self.majority_of(h, value))
            .min()
            .unwrap_or(0)
    }

    /// Whether `id` votes in either half.
    pub(crate) fn is_voter(&self, id: NodeId) -> bool {
        self.get(id).is_some_and(|p| p.voter || p.outgoing)
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

    /// The highest index a majority of voters (of both halves, when joint) has matched.
    pub(crate) fn committed(&self) -> Index {
        Index(self.joint_majority(|p| p.matched.0))
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

    /// Won when won in every half, lost when lost in any.
    pub(crate) fn vote_result(&self) -> VoteResult {
        let mut result = VoteResult::Won;
        for &h in self.halves() {
            let voters = self.peers.iter().filter(|p| h.votes(p));
            let (mut n, mut granted, mut rejected) = (0, 0, 0);
            for p in voters {
                n += 1;
                match p.vote {
                    Some(true) => granted += 1,
                    Some(false) => rejected += 1,
                    None => {}
                }
            }
            if n == 0 {
                continue;
            }
            match quorum::vote_result(granted, rejected, n) {
                VoteResult::Lost => return VoteResult::Lost,
                VoteResult::Pending => result = VoteResult::Pending,
                VoteResult::Won => {}
            }
        }
        result
    }

    /// Whether a quorum (counting `self_id`) was active this period; clears the flags.
    pub(crate) fn quorum_active(&mut self, self_id: NodeId) -> bool {
        let active = self.joint_majority(|p| u64::from(p.id == self_id || p.recent_active));
        for p in self.peers.iter_mut() {
            p.recent_active = p.id == self_id;
        }
        active >= 1
    }

    /// The highest read round a quorum has acknowledged.
    pub(crate) fn read_round_acked(&self) -> u64 {
        self.joint_majority(|p| p.read_round)
    }
}
