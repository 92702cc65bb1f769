//! Linearizable reads without writing to the log: ReadIndex (thesis §6.4).
//!
//! The leader records its commit index for each request, confirms it is still leader by a
//! heartbeat round acknowledged by a quorum, and then hands the index back: the host serves
//! the read once it has applied up to that index. Requests that arrive while others wait share
//! the next round, so a burst of reads costs one heartbeat.

use crate::types::{Index, NodeId};

/// A confirmed read: serve request `context` once the state machine has applied `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadState {
    /// The id the host gave to [`Node::read_index`](crate::Node::read_index).
    pub context: u64,
    /// Wait until applied through this index, then read.
    pub index: Index,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadRequest {
    pub(crate) context: u64,
    /// Who asked: this node, or a follower that forwarded it.
    pub(crate) from: NodeId,
    pub(crate) index: Index,
    /// The heartbeat round that confirms it; 0 until assigned (the leader has not yet committed
    /// an entry of its term, or the round has not been broadcast).
    pub(crate) round: u64,
}

/// The leader's queue of reads awaiting confirmation, oldest first, rounds non-decreasing.
#[derive(Clone, Debug)]
pub(crate) struct ReadQueue<const R: usize> {
    pub(crate) pending: heapless::Deque<ReadRequest, R>,
    /// The last round handed out.
    pub(crate) round: u64,
    /// Requests in `pending` without a round yet.
    pub(crate) unassigned: usize,
}

impl<const R: usize> ReadQueue<R> {
    pub(crate) const fn new() -> Self {
        ReadQueue {
            pending: heapless::Deque::new(),
            round: 0,
            unassigned: 0,
        }
    }

    pub(crate) fn push(&mut self, context: u64, from: NodeId) -> bool {
        let ok = self
            .pending
            .push_back(ReadRequest {
                context,
                from,
                index: Index(0),
                round: 0,
            })
            .is_ok();
        if ok {
            self.unassigned += 1;
        }
        ok
    }

    /// Gives every unassigned request the next round, reading at `commit`. Returns the round
    /// to broadcast, if any request got one.
    pub(crate) fn assign(&mut self, commit: Index) -> Option<u64> {
        if self.unassigned == 0 {
            return None;
        }
        self.round += 1;
        for r in self.pending.iter_mut().filter(|r| r.round == 0) {
            r.round = self.round;
            r.index = commit;
        }
        self.unassigned = 0;
        Some(self.round)
    }

    /// Pops the oldest request if a quorum acknowledged its round.
    pub(crate) fn pop_confirmed(&mut self, acked: u64) -> Option<ReadRequest> {
        match self.pending.front() {
            Some(r) if r.round != 0 && r.round <= acked => self.pending.pop_front(),
            _ => None,
        }
    }

    /// Forgets every request (the leader stepped down: their hosts will time out and retry).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.unassigned = 0;
    }
}
