//! Leadership transfer (thesis §3.10): the leader stops taking proposals, brings the target's
//! log up to date, and sends it `TimeoutNow`; the target campaigns at once, and its vote
//! requests say so, so that voters grant them within the old leader's lease. A transfer that
//! has not completed within an election timeout is aborted.

use super::{Raft, Role};
use crate::error::TransferError;
use crate::message::Body;
use crate::storage::Storage;
use crate::types::NodeId;

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
    pub(crate) fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            let leader = (!self.leader.is_none()).then_some(self.leader);
            return Err(TransferError::NotLeader { leader });
        }
        if to == self.id || !self.tracker.is_voter(to) {
            return Err(TransferError::NotVoter(to));
        }
        if !self.lead_transferee.is_none() {
            return Err(TransferError::InProgress);
        }
        self.lead_transferee = to;
        self.transfer_elapsed = 0;
        self.counters.transfers_started += 1;
        if !self.maybe_send_timeout_now(to) {
            // Catch it up first; its acknowledgements send TimeoutNow once it matches.
            self.maybe_send_append(to);
        }
        Ok(())
    }

    /// Sends `TimeoutNow` to `to` if a transfer to it is under way and its log matches ours.
    pub(crate) fn maybe_send_timeout_now(&mut self, to: NodeId) -> bool {
        if self.role != Role::Leader || self.lead_transferee != to {
            return false;
        }
        let last = self.log.last_index();
        if self.tracker.get(to).is_some_and(|p| p.matched == last) {
            self.send(to, Body::TimeoutNow);
            self.handed_over = true;
            return true;
        }
        false
    }

    /// The leader handed over to this node.
    pub(crate) fn handle_timeout_now(&mut self) {
        if self.is_voter() && !self.term_exhausted() && !self.install_queued {
            self.counters.campaigns += 1;
            self.become_candidate(true);
        }
    }
}
