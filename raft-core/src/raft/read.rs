//! ReadIndex on the leader and its forwarding from followers (thesis §6.4).

use super::{Raft, Role};
use crate::error::ReadError;
use crate::message::Body;
use crate::read_index::ReadState;
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
    pub(crate) fn read_index(&mut self, context: u64) -> Result<(), ReadError> {
        if self.role == Role::Leader {
            if self.lease_valid() {
                let index = self.log.commit;
                if self.read_states.push(ReadState { context, index }).is_err() {
                    return Err(ReadError::Busy);
                }
                self.counters.lease_reads += 1;
                return Ok(());
            }
            if !self.reads.push(context, self.id) {
                return Err(ReadError::Busy);
            }
            return Ok(());
        }
        if self.leader.is_none() {
            return Err(ReadError::NoLeader);
        }
        let leader = self.leader;
        self.send(leader, Body::ReadIndex { context });
        Ok(())
    }

    pub(crate) fn handle_read_request(&mut self, context: u64, from: NodeId) {
        if self.lease_valid() {
            let index = self.log.commit;
            self.counters.lease_reads += 1;
            self.send(from, Body::ReadIndexResponse { context, index });
            return;
        }
        if !self.reads.push(context, from) {
            // The follower's host times out and retries.
            self.counters.messages_dropped += 1;
        }
    }

    /// Whether the leader has committed an entry of its own term, which makes its commit index
    /// at least that of every earlier leader (thesis §6.4 step 1).
    pub(crate) fn committed_in_term(&self) -> bool {
        self.log.term(self.log.commit) == Some(self.term)
    }

    /// Whether unassigned reads could start a round now.
    pub(crate) fn reads_to_assign(&self) -> bool {
        self.role == Role::Leader && self.reads.unassigned > 0 && self.committed_in_term()
    }

    /// Starts a heartbeat round for every read that has none yet.
    pub(crate) fn assign_reads(&mut self) {
        if !self.reads_to_assign() {
            return;
        }
        let Some(round) = self.reads.assign(self.log.commit) else {
            return;
        };
        let id = self.id;
        if let Some(p) = self.tracker.get_mut(id) {
            p.read_round = round;
        }
        if self.tracker.len() > 1 {
            self.broadcast_heartbeat();
        }
        self.release_reads();
    }

    /// Hands out every read whose round a quorum acknowledged.
    pub(crate) fn release_reads(&mut self) {
        if self.reads.pending.is_empty() {
            // The usual case on every `advance` and heartbeat answer: skip the quorum sort.
            return;
        }
        let acked = self.tracker.read_round_acked();
        loop {
            if self.read_states.is_full() {
                // Held until the host takes the current read states.
                return;
            }
            let Some(r) = self.reads.pop_confirmed(acked) else {
                return;
            };
            if r.from == self.id {
                // Room checked above.
                let _ = self.read_states.push(ReadState {
                    context: r.context,
                    index: r.index,
                });
            } else {
                self.send(
                    r.from,
                    Body::ReadIndexResponse {
                        context: r.context,
                        index: r.index,
                    },
                );
            }
        }
    }

    /// With `read_lease`: whether the leader's lease covers a read now. Not during a transfer
    /// (the target may be elected within the lease), nor after one sent `TimeoutNow` in this
    /// term (the target may still campaign when it arrives, aborted transfer or not), and only
    /// once an entry of this term is committed (so the commit index is at least every earlier
    /// leader's).
    pub(crate) fn lease_valid(&self) -> bool {
        self.read_lease
            && self.role == Role::Leader
            && self.lead_transferee.is_none()
            && !self.handed_over
            && self.clock < self.lease_until
            && self.committed_in_term()
    }

    /// With `read_lease`: a heartbeat goes out as a new round, remembered with the tick it
    /// left at.
    pub(crate) fn start_lease_round(&mut self) {
        self.reads.round += 1;
        let round = self.reads.round;
        let id = self.id;
        if let Some(p) = self.tracker.get_mut(id) {
            p.read_round = round;
        }
        if self.rounds_sent.is_full() {
            self.rounds_sent.pop_front();
        }
        let _ = self.rounds_sent.push_back((round, self.clock));
    }

    /// With `read_lease`: the newest round a quorum answered extends the lease to an election
    /// timeout after it left, less two ticks of margin (see `Config::read_lease`).
    pub(crate) fn renew_lease(&mut self) {
        if !self.read_lease || self.role != Role::Leader {
            return;
        }
        let acked = self.tracker.read_round_acked();
        let sent = self
            .rounds_sent
            .iter()
            .rev()
            .find(|(round, _)| *round <= acked)
            .map(|(_, at)| *at);
        if let Some(at) = sent {
            let until = at + u64::from(self.election_ticks.saturating_sub(2));
            if until > self.lease_until {
                self.lease_until = until;
            }
        }
    }
}
