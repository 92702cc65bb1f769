//! Elections: timeouts, pre-vote and vote rounds, and the role changes they cause (Raft §5.2,
//! §5.4.1; thesis §9.6 for pre-vote).

use super::{Raft, Role};
use crate::message::{Body, EntryKind, Message};
use crate::quorum::VoteResult;
use crate::storage::Storage;
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
    /// The election timer fired, or the host asked for an election.
    pub(crate) fn hup(&mut self) {
        // Not while a snapshot just received waits for the host to install it: the `Ready`
        // that installs it carries no entries (a new leader's no-op would be one).
        if self.role == Role::Leader
            || !self.is_voter()
            || self.term_exhausted()
            || self.install_queued
        {
            return;
        }
        // A node whose log still has committed entries to apply could lead with a state
        // machine behind its log; that is allowed in Raft, and the host applies before serving.
        self.counters.campaigns += 1;
        if self.pre_vote {
            self.become_pre_candidate();
        } else {
            self.become_candidate(false);
        }
    }

    /// Whether the term cannot be raised for another election. No run of honest elections gets
    /// here (it takes 2^64 of them), but one message from a hostile or broken peer can, and
    /// campaigning would then wrap the term back to 0 (or panic in a debug build).
    pub(crate) fn term_exhausted(&self) -> bool {
        self.term.0 == u64::MAX
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: NodeId) {
        if term > self.term {
            self.term = term;
            self.vote = NodeId::NONE;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.noop_pending = false;
        self.lead_transferee = NodeId::NONE;
        self.lease_until = 0;
        self.tracker.reset_votes();
        self.reads.clear();
        self.reset_timers();
    }

    fn become_pre_candidate(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = NodeId::NONE;
        self.tracker.reset_votes();
        self.reset_timers();
        self.request_votes(true, false);
    }

    /// Campaigns in the next term; `transfer` when the leader handed over to this node.
    pub(crate) fn become_candidate(&mut self, transfer: bool) {
        // No overflow: `hup` does not campaign at the largest term, and a pre-candidate's term
        // only changes by becoming a follower.
        self.term = Term(self.term.0 + 1);
        self.vote = self.id;
        self.role = Role::Candidate;
        self.leader = NodeId::NONE;
        self.tracker.reset_votes();
        self.reset_timers();
        self.request_votes(false, transfer);
    }

    fn request_votes(&mut self, pre: bool, transfer: bool) {
        let id = self.id;
        self.tracker.record_vote(id, true);
        if self.tracker.vote_result() == VoteResult::Won {
            // A single-voter cluster wins on its own vote.
            return self.won(pre);
        }
        let term = if pre {
            Term(self.term.0 + 1)
        } else {
            self.term
        };
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let body = if pre {
            Body::PreVote {
                last_index,
                last_term,
            }
        } else {
            Body::Vote {
                last_index,
                last_term,
                transfer,
            }
        };
        for k in 0..self.tracker.len() {
            let to = self.tracker.peers[k].id;
            if to != id {
                self.send_in_term(to, term, body);
            }
        }
    }

    fn won(&mut self, pre: bool) {
        if pre {
            self.become_candidate(false);
        } else {
            self.become_leader();
        }
    }

    pub(crate) fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = self.id;
        self.counters.became_leader += 1;
        self.reset_timers();
        self.reads.clear();
        self.lead_transferee = NodeId::NONE;
        self.handed_over = false;
        self.lease_until = 0;
        self.rounds_sent.clear();
        let last = self.log.last_index();
        // Only what is durable counts as the leader's own copy (entries written with
        // `advance_unsynced` may still be in flight to the disk).
        let stable = self.durable_index();
        let id = self.id;
        for p in self.tracker.peers.iter_mut() {
            p.reset(last);
            if p.id == id {
                p.matched = stable;
            }
        }
        self.noop_pending = true;
        self.maybe_append_noop();
    }

    /// Appends the new leader's no-op (Raft §5.4.2, §8): committing it commits everything
    /// before it, and tells the leader what is committed.
    pub(crate) fn maybe_append_noop(&mut self) {
        if self.noop_pending && self.log.append(self.term, EntryKind::Noop, &[]).is_ok() {
            self.noop_pending = false;
        }
    }

    pub(crate) fn handle_vote_request(
        &mut self,
        m: &Message<'_>,
        pre: bool,
        last_index: Index,
        last_term: Term,
    ) {
        // Raft §5.2: one vote per term, first come first served; a pre-vote for a later term
        // binds nothing. §5.4.1: only for a log at least as up-to-date as ours.
        let can_vote = self.vote == m.from
            || (self.vote.is_none() && self.leader.is_none())
            || (pre && m.term > self.term);
        let granted = can_vote && self.log.is_up_to_date(last_index, last_term);
        let body = |reject| {
            if pre {
                Body::PreVoteResponse { reject }
            } else {
                Body::VoteResponse { reject }
            }
        };
        if granted {
            if !pre {
                self.vote = m.from;
                self.election_elapsed = 0;
            }
            self.send_in_term(m.from, m.term, body(false));
        } else {
            self.send(m.from, body(true));
        }
    }

    pub(crate) fn handle_vote_response(&mut self, m: &Message<'_>, pre: bool, reject: bool) {
        let expected = if pre {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        if self.role != expected {
            return;
        }
        // Grants of a pre-vote echo the requested term, rejections carry the voter's own.
        let term = if pre && !reject {
            Term(self.term.0 + 1)
        } else {
            self.term
        };
        if m.term != term {
            self.counters.stale += 1;
            return;
        }
        self.tracker.record_vote(m.from, !reject);
        match self.tracker.vote_result() {
            VoteResult::Won => self.won(pre),
            VoteResult::Lost => self.become_follower(self.term, NodeId::NONE),
            VoteResult::Pending => {}
        }
    }
}
