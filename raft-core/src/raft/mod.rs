//! The protocol state machine, split by concern: this file holds the state and the dispatch of
//! inputs; `election` the follower/candidate side of voting and the role changes; `replication`
//! the append path on both sides; `read` ReadIndex.

mod election;
mod membership;
mod read;
mod replication;
mod snapshot;
mod transfer;

pub(crate) use membership::ConfigState;
#[cfg(test)]
pub(crate) use membership::PENDING_CONFIGS;

use crate::config::Config;
use crate::error::{ConfigError, StepError};
use crate::log::RaftLog;
use crate::membership::{ConfigEntry, Membership, MembershipError, MAX_MEMBERS};
use crate::message::{Body, EntryKind, Message, ENTRY_OVERHEAD, MAX_HEADER_LEN};
use crate::outbox::{Class, Outbox};
use crate::rand::Rng;
use crate::read_index::{ReadQueue, ReadState};
use crate::storage::{HardState, Storage};
use crate::tracker::Tracker;
use crate::types::{Index, NodeId, Term};

/// A node's role (Raft §5.1, plus the pre-vote phase of thesis §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks whether it could win an election, without raising its term.
    PreCandidate,
    /// Campaigns for votes in a new term.
    Candidate,
    /// Leads its term.
    Leader,
}

impl Role {
    /// Lower-case name, for traces and status lines.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// Monotonic counts of what a node has seen and done; for operators and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Elections (pre-vote or real) this node started.
    pub campaigns: u64,
    /// Times this node became leader.
    pub became_leader: u64,
    /// Messages not sent because the outbox was full (a leader's appends are retried instead,
    /// and counted in `appends_deferred`).
    pub messages_dropped: u64,
    /// Appends a leader postponed because the outbox was full.
    pub appends_deferred: u64,
    /// Received messages that broke the protocol (see [`StepError::Malformed`]).
    pub malformed: u64,
    /// Received messages from non-members or addressed elsewhere.
    pub misaddressed: u64,
    /// Received messages from an older term, ignored.
    pub stale: u64,
    /// Vote requests ignored because a leader was heard from recently (check-quorum lease).
    pub votes_ignored: u64,
    /// Proposals refused with `Busy`.
    pub proposals_busy: u64,
    /// Appends a follower could not take in full because its unstable log was full.
    pub appends_truncated: u64,
    /// Times the leader could not serve a peer because the entries it needs were compacted
    /// and the storage had no snapshot to send instead.
    pub compacted_peers: u64,
    /// Snapshots this leader sent to the end (acknowledged as installed).
    pub snapshots_sent: u64,
    /// Snapshot chunks this leader sent.
    pub snapshot_chunks_sent: u64,
    /// Snapshots this node received and installed.
    pub snapshots_installed: u64,
    /// Snapshot chunks refused: damaged (CRC), out of order, or with no room to hold them.
    pub snapshot_chunks_refused: u64,
    /// Leadership transfers this leader started, and those that timed out.
    pub transfers_started: u64,
    /// Leadership transfers that did not complete within an election timeout.
    pub transfers_aborted: u64,
    /// Reads served from the leader's lease, without a heartbeat round.
    pub lease_reads: u64,
    /// Append entries refused because they carried a configuration this node cannot hold.
    pub configs_refused: u64,
}

/// The whole protocol state. `Node` is the public handle around it.
pub(crate) struct Raft<
    S,
    const P: usize,
    const W: usize,
    const E: usize,
    const B: usize,
    const O: usize,
    const R: usize,
> {
    pub(crate) id: NodeId,
    pub(crate) role: Role,
    pub(crate) term: Term,
    pub(crate) vote: NodeId,
    pub(crate) leader: NodeId,
    pub(crate) log: RaftLog<S, E, B>,
    /// Committed entries handed to the host and advanced past.
    pub(crate) applied: Index,
    pub(crate) tracker: Tracker<P, W>,
    pub(crate) outbox: Outbox<O>,
    pub(crate) reads: ReadQueue<R>,
    pub(crate) read_states: heapless::Vec<ReadState, R>,
    /// The hard state the host last persisted (or loaded from storage).
    pub(crate) persisted: HardState,
    /// The highest index of this node's log known durable. Below the stable index when the host
    /// wrote entries with `advance_unsynced` and has not yet reported them with `persisted`.
    /// Read through `durable_index`, which also bounds it by the stable index (a truncated log).
    pub(crate) durable: Index,
    /// A new leader could not append its no-op for lack of room; retried on advance.
    pub(crate) noop_pending: bool,
    /// The configurations in effect and pending.
    pub(crate) config: ConfigState,
    /// On the leader: the voter it is handing over to, and for how many ticks.
    pub(crate) lead_transferee: NodeId,
    pub(crate) transfer_elapsed: u32,
    /// On the leader: it sent `TimeoutNow` in this term. The target may campaign whenever the
    /// message arrives, even after the transfer was aborted, and voters grant a transfer's
    /// votes within any lease; so the lease proves nothing for the rest of the term.
    pub(crate) handed_over: bool,
    /// On a follower: the snapshot being received, and whether a chunk of it waits in the
    /// outbox for the host.
    pub(crate) snap_recv: Option<snapshot::Receiving>,
    pub(crate) chunk_queued: Option<snapshot::Chunk>,
    /// The last chunk was received: the host installs the snapshot with the next `Ready`.
    pub(crate) install_queued: bool,
    /// Ticks since the node started; the leader's lease is measured on it.
    pub(crate) clock: u64,
    /// With `read_lease`: the leader may serve reads without a round until this tick.
    pub(crate) lease_until: u64,
    /// With `read_lease`: when recent heartbeat rounds went out, (round, tick), newest last.
    pub(crate) rounds_sent: heapless::Deque<(u64, u64), 8>,

    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) randomized_timeout: u32,
    pub(crate) rng: Rng,

    pub(crate) election_ticks: u32,
    pub(crate) heartbeat_ticks: u32,
    pub(crate) pre_vote: bool,
    pub(crate) check_quorum: bool,
    pub(crate) max_append_bytes: usize,
    pub(crate) max_entry_bytes: usize,
    pub(crate) max_uncommitted: u64,
    pub(crate) max_snapshot_chunk: usize,
    pub(crate) max_learner_lag: u64,
    pub(crate) read_lease: bool,

    pub(crate) counters: Counters,
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
    /// The highest index known durable in this node's log: what a leader counts as its own
    /// copy. Bounded by the stable index, which drops when the log is truncated.
    pub(crate) fn durable_index(&self) -> Index {
        self.durable.min(self.log.stable_index())
    }

    pub(crate) fn new(config: &Config<'_>, storage: S) -> Result<Self, ConfigError> {
        if config.id.is_none() {
            return Err(ConfigError::ZeroId);
        }
        if P > MAX_MEMBERS {
            return Err(ConfigError::TooManyPeers {
                requested: P,
                capacity: MAX_MEMBERS,
            });
        }
        if config.voters.len() > P {
            return Err(ConfigError::TooManyPeers {
                requested: config.voters.len(),
                capacity: P,
            });
        }
        let bootstrap = Membership::with_voters(config.voters).map_err(|e| match e {
            MembershipError::InvalidId(id) => ConfigError::InvalidVoter(id),
            _ => ConfigError::TooManyPeers {
                requested: config.voters.len(),
                capacity: P,
            },
        })?;
        if !bootstrap.is_empty() && !bootstrap.contains(config.id) {
            return Err(ConfigError::SelfNotVoter);
        }
        if config.heartbeat_ticks == 0
            || config.election_ticks <= config.heartbeat_ticks
            || config.election_ticks > u32::MAX / 2
        {
            return Err(ConfigError::InvalidTicks);
        }
        if config.max_append_bytes > O.saturating_sub(16)
            || config.max_append_bytes < MAX_HEADER_LEN + ENTRY_OVERHEAD
        {
            return Err(ConfigError::AppendLimitInvalid);
        }
        if config.max_entry_bytes + MAX_HEADER_LEN + ENTRY_OVERHEAD > config.max_append_bytes
            || config.max_entry_bytes > B
            || E == 0
        {
            return Err(ConfigError::EntryLimitTooLarge);
        }
        if config.max_snapshot_chunk == 0
            || config.max_snapshot_chunk + snapshot::MAX_CHUNK_HEADER > O.saturating_sub(16)
        {
            return Err(ConfigError::SnapshotChunkInvalid);
        }
        if config.read_lease && !config.check_quorum {
            return Err(ConfigError::LeaseNeedsCheckQuorum);
        }
        let hs = storage.hard_state();
        let last = storage.last_index();
        let snap = storage.snapshot();
        let snap_index = snap.as_ref().map_or(Index::ZERO, |s| s.index);
        let commit = hs.commit.max(snap_index);
        let applied = config.applied.max(snap_index);
        if commit > last
            || storage.term(last).is_err()
            || applied > commit
            || snap
                .as_ref()
                .is_some_and(|s| storage.term(s.index) != Ok(s.term) || s.membership.len() > P)
        {
            return Err(ConfigError::InvalidStorage);
        }
        // The configuration: the snapshot's (or the bootstrap voters), then every
        // configuration entry in the log after it.
        let mut configs = match snap {
            Some(s) => ConfigState::new(s.index, s.membership),
            None => ConfigState::new(Index::ZERO, bootstrap),
        };
        let mut i = storage.first_index().max(configs.committed.0.next());
        while i <= last {
            let entry = storage.entry(i).map_err(|_| ConfigError::InvalidStorage)?;
            if entry.kind == EntryKind::Config {
                let c = ConfigEntry::decode(entry.data).map_err(|_| ConfigError::InvalidStorage)?;
                if c.membership.len() > P {
                    return Err(ConfigError::InvalidStorage);
                }
                if i <= commit {
                    configs.committed = (i, c.membership);
                } else if configs.pending.is_full() {
                    return Err(ConfigError::InvalidStorage);
                } else {
                    let _ = configs.pending.push_back((i, c.membership));
                }
            }
            i = i.next();
        }
        let seed = config.seed ^ config.id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut raft = Raft {
            id: config.id,
            role: Role::Follower,
            term: hs.term,
            vote: hs.vote,
            leader: NodeId::NONE,
            log: RaftLog::new(storage, commit),
            applied,
            tracker: Tracker::new(),
            outbox: Outbox::new(),
            reads: ReadQueue::new(),
            read_states: heapless::Vec::new(),
            persisted: hs,
            durable: last,
            noop_pending: false,
            config: configs,
            lead_transferee: NodeId::NONE,
            transfer_elapsed: 0,
            handed_over: false,
            snap_recv: None,
            chunk_queued: None,
            install_queued: false,
            clock: 0,
            lease_until: 0,
            rounds_sent: heapless::Deque::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: config.election_ticks,
            rng: Rng::new(seed),
            election_ticks: config.election_ticks,
            heartbeat_ticks: config.heartbeat_ticks,
            pre_vote: config.pre_vote,
            check_quorum: config.check_quorum,
            max_append_bytes: config.max_append_bytes,
            max_entry_bytes: config.max_entry_bytes,
            max_uncommitted: config.max_uncommitted_entries,
            max_snapshot_chunk: config.max_snapshot_chunk,
            max_learner_lag: config.max_learner_lag,
            read_lease: config.read_lease,
            counters: Counters::default(),
        };
        raft.apply_membership();
        raft.reset_timers();
        Ok(raft)
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit,
        }
    }

    pub(crate) fn reset_timers(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_timeout = self.election_ticks + self.rng.below(self.election_ticks);
    }

    pub(crate) fn is_voter(&self) -> bool {
        self.tracker.is_voter(self.id)
    }

    /// Queues a message in this node's current term.
    pub(crate) fn send(&mut self, to: NodeId, body: Body<'_>) {
        self.send_in_term(to, self.term, body);
    }

    /// Queues a message with an explicit term (pre-vote requests and grants name a future term).
    pub(crate) fn send_in_term(&mut self, to: NodeId, term: Term, body: Body<'_>) {
        let class = if self.role == Role::Leader {
            Class::Now
        } else {
            Class::AfterPersist
        };
        let msg = Message {
            from: self.id,
            to,
            term,
            body,
        };
        if self.outbox.push(to, class, |buf| msg.encode(buf)).is_err() {
            self.counters.messages_dropped += 1;
        }
    }

    /// One tick of the logical clock.
    pub(crate) fn tick(&mut self) {
        self.clock += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed = self.election_elapsed.saturating_add(1);
            if self.is_voter() && self.election_elapsed >= self.randomized_timeout {
                self.hup();
            }
        }
    }

    /// Handles one received message.
    pub(crate) fn step(&mut self, m: &Message<'_>) -> Result<(), StepError> {
        if m.to != self.id {
            self.counters.misaddressed += 1;
            return Err(StepError::WrongRecipient(m.to));
        }
        // A node hears from members only, with one exception: a leader that does not know it
        // yet is in the configuration (it is being added) may reach it with appends, heartbeats
        // and snapshots. Nothing else from a non-member counts: a removed node cannot disrupt
        // the cluster with its votes.
        let from_leader = matches!(
            m.body,
            Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. }
        );
        if m.from == self.id || m.from.is_none() || (!self.tracker.contains(m.from) && !from_leader)
        {
            self.counters.misaddressed += 1;
            return Err(StepError::UnknownSender(m.from));
        }
        if let Body::Append {
            prev_index,
            prev_term,
            ..
        } = m.body
        {
            if !append_is_well_formed(m.term, prev_index, prev_term, &m.entries()) {
                self.counters.malformed += 1;
                return Err(StepError::Malformed);
            }
        }
        if let Body::Snapshot {
            index,
            term,
            offset,
            membership,
            ..
        } = m.body
        {
            // The log must be able to go on after the snapshot.
            if index.0 == u64::MAX {
                self.counters.malformed += 1;
                return Err(StepError::Malformed);
            }
            // Like an append's structure, checked before the sender's term is adopted, so that
            // a refused chunk changes nothing: a snapshot of a term the sender has not reached,
            // or (on a first chunk) a configuration this node cannot hold.
            if term > m.term {
                self.counters.malformed += 1;
                return Err(StepError::Malformed);
            }
            if offset == 0 && Membership::decode(membership).map_or(true, |(c, _)| c.len() > P) {
                self.counters.configs_refused += 1;
                return Err(StepError::Malformed);
            }
        }

        if m.term > self.term {
            match m.body {
                // A pre-vote names the term the sender would campaign in; granting it changes
                // nothing here. A granted pre-vote echoes that future term.
                Body::PreVote { .. } => {}
                Body::PreVoteResponse { reject: false } => {}
                _ => {
                    // A candidate the leader handed over to may unseat it within its lease.
                    let vote_request = matches!(
                        m.body,
                        Body::Vote {
                            transfer: false,
                            ..
                        }
                    );
                    if vote_request && self.in_leader_lease() {
                        self.counters.votes_ignored += 1;
                        return Ok(());
                    }
                    let leader = match m.body {
                        Body::Append { .. } | Body::Heartbeat { .. } => m.from,
                        _ => NodeId::NONE,
                    };
                    self.become_follower(m.term, leader);
                }
            }
        } else if m.term < self.term {
            self.counters.stale += 1;
            match m.body {
                // A leader of an older term, cut off for a while: tell it the new term so it
                // steps down (Figure 2: "reply false if term < currentTerm"). With pre-vote and
                // check-quorum this is also what keeps it from being stranded: its followers'
                // pre-votes would never raise their terms to reach it.
                Body::Append { .. } | Body::Heartbeat { .. } => {
                    self.send(
                        m.from,
                        Body::AppendResponse {
                            index: Index::ZERO,
                            reject: None,
                        },
                    );
                }
                Body::PreVote { .. } => {
                    self.send(m.from, Body::PreVoteResponse { reject: true });
                }
                _ => {}
            }
            return Ok(());
        }

        match m.body {
            Body::PreVote {
                last_index,
                last_term,
            } => {
                if m.term > self.term && self.in_leader_lease() {
                    self.counters.votes_ignored += 1;
                    return Ok(());
                }
                self.handle_vote_request(m, true, last_index, last_term);
            }
            Body::Vote {
                last_index,
                last_term,
                ..
            } => {
                self.handle_vote_request(m, false, last_index, last_term);
            }
            Body::PreVoteResponse { reject } => self.handle_vote_response(m, true, reject),
            Body::VoteResponse { reject } => self.handle_vote_response(m, false, reject),
            Body::Append {
                prev_index,
                prev_term,
                commit,
                ..
            } => {
                if !self.accept_leader(m.from) {
                    return Err(StepError::Malformed);
                }
                self.handle_append(m.from, prev_index, prev_term, commit, m.entries())?;
            }
            Body::Heartbeat { commit, round } => {
                if !self.accept_leader(m.from) {
                    return Err(StepError::Malformed);
                }
                self.log.commit_to(commit);
                self.send(m.from, Body::HeartbeatResponse { round });
            }
            Body::AppendResponse { index, reject } => {
                if self.role == Role::Leader {
                    self.handle_append_response(m.from, index, reject)?;
                }
            }
            Body::HeartbeatResponse { round } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(m.from, round);
                }
            }
            Body::ReadIndex { context } => {
                if self.role == Role::Leader {
                    self.handle_read_request(context, m.from);
                }
            }
            Body::ReadIndexResponse { context, index } => {
                // Only from the leader of our term: anyone else's answer proves nothing.
                if self.role == Role::Leader || m.from != self.leader {
                    self.counters.stale += 1;
                } else if self.read_states.push(ReadState { context, index }).is_err() {
                    self.counters.messages_dropped += 1;
                }
            }
            Body::Snapshot {
                index,
                term,
                len,
                offset,
                membership,
                crc,
                data,
            } => {
                if !self.accept_leader(m.from) {
                    return Err(StepError::Malformed);
                }
                let chunk = snapshot::Incoming {
                    index,
                    term,
                    len,
                    offset,
                    membership,
                    crc,
                    data,
                };
                self.handle_snapshot(m.from, chunk);
            }
            Body::SnapshotResponse { index, next } => {
                if self.role == Role::Leader {
                    self.handle_snapshot_response(m.from, index, next);
                }
            }
            Body::TimeoutNow => {
                // Only from the leader of our term.
                if self.role == Role::Leader || m.from != self.leader {
                    self.counters.stale += 1;
                } else {
                    self.handle_timeout_now();
                }
            }
        }
        Ok(())
    }

    /// An append or heartbeat arrived in our term: `from` leads it. Returns false if that
    /// contradicts what we know (we lead it ourselves, or another node does): a broken or
    /// hostile peer, since election safety allows one leader per term.
    fn accept_leader(&mut self, from: NodeId) -> bool {
        if self.role == Role::Leader || (!self.leader.is_none() && self.leader != from) {
            self.counters.malformed += 1;
            return false;
        }
        if self.role != Role::Follower {
            self.become_follower(self.term, from);
        }
        self.leader = from;
        self.election_elapsed = 0;
        true
    }

    /// With check-quorum, a follower that heard from its leader less than an election timeout
    /// ago refuses to help unseat it (thesis §4.2.3); this is what keeps a removed or
    /// partitioned node from disrupting a healthy cluster.
    ///
    /// With `read_lease`, a node that has just started counts as in a lease too, for one
    /// election timeout: it may have answered a leader's heartbeat round just before it
    /// stopped, and that leader's lease (which rests on its voters refusing votes for an election
    /// timeout) must not end early because the voter forgot.
    fn in_leader_lease(&self) -> bool {
        self.check_quorum
            && ((!self.leader.is_none() && self.election_elapsed < self.election_ticks)
                || (self.read_lease && self.clock < u64::from(self.election_ticks)))
    }
}

/// Structural checks on an append that the decoder cannot make: terms and indices consistent
/// with each other and with the sender's term.
fn append_is_well_formed(
    term: Term,
    prev_index: Index,
    prev_term: Term,
    entries: &crate::message::EntryList<'_>,
) -> bool {
    if prev_term > term || (prev_index == Index::ZERO && prev_term != Term::ZERO) {
        return false;
    }
    if prev_index.0.checked_add(entries.len() as u64).is_none() {
        return false;
    }
    // Entry terms never decrease, start at `prev_term` or later, are never 0 and never exceed
    // the leader's term.
    entries.terms_within(prev_term.max(Term(1)), term)
}
