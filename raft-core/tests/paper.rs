//! The claims of the Raft paper (Ongaro and Ousterhout, "In Search of an Understandable
//! Consensus Algorithm", 2014), one test per claim, named by section, exercising raft-core
//! through its public API only: single nodes fed crafted messages, or a few nodes driven by hand
//! through the Ready contract of the crate docs, over [`MemStorage`].
//!
//! The tests at the end check the Ready contract itself: which messages may go out before the
//! host persists, and that entries are handed out once.

use std::collections::BTreeSet;

use raft_core::message::{ENTRY_OVERHEAD, MAX_HEADER_LEN};
use raft_core::{
    Body, Config, Entry, EntryKind, EntryList, HardState, Index, MemStorage, Message, Node, NodeId,
    Outgoing, ProgressState, RejectHint, Role, StepError, Storage, Term,
};

type TestNode = Node<MemStorage>;

const IDS3: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
const IDS5: [NodeId; 5] = [NodeId(1), NodeId(2), NodeId(3), NodeId(4), NodeId(5)];
const IDS7: [NodeId; 7] = [
    NodeId(1),
    NodeId(2),
    NodeId(3),
    NodeId(4),
    NodeId(5),
    NodeId(6),
    NodeId(7),
];

// ----- building logs, nodes and messages -----

const fn byte_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
}

static BYTES: [u8; 256] = byte_table();

/// A one-byte payload naming the entry's index and term, so that logs compare by content and not
/// only by terms (one byte keeps every entry small enough for the one-entry appends of the
/// Figure 8 test).
fn payload(index: u64, term: u64) -> &'static [u8] {
    let b = ((index * 10 + term) % 256) as usize;
    &BYTES[b..b + 1]
}

fn entry(index: u64, term: u64) -> Entry<'static> {
    Entry {
        index: Index(index),
        term: Term(term),
        kind: EntryKind::Normal,
        data: payload(index, term),
    }
}

/// Entries at `first ..` with the given terms.
fn entries(first: u64, terms: &[u64]) -> Vec<Entry<'static>> {
    terms
        .iter()
        .enumerate()
        .map(|(k, &t)| entry(first + k as u64, t))
        .collect()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: NodeId(vote),
        commit: Index(commit),
    }
}

/// A storage holding `terms[k]` at index `k + 1`, and `hs`.
fn storage(terms: &[u64], hs: HardState) -> MemStorage {
    let mut s = MemStorage::new();
    s.append(entries(1, terms).iter().copied())
        .expect("test logs fit");
    s.set_hard_state(hs);
    s
}

fn new_node(
    id: u64,
    voters: &[NodeId],
    storage: MemStorage,
    tweak: impl FnOnce(&mut Config<'_>),
) -> TestNode {
    let mut cfg = Config::new(NodeId(id), voters);
    cfg.seed = 11;
    tweak(&mut cfg);
    Node::new(&cfg, storage).expect("valid config and storage")
}

fn msg(from: u64, to: u64, term: u64, body: Body<'_>) -> Message<'_> {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    }
}

fn append<'a>(
    from: u64,
    to: u64,
    term: u64,
    (prev_index, prev_term): (u64, u64),
    commit: u64,
    entries: &'a [Entry<'a>],
) -> Message<'a> {
    msg(
        from,
        to,
        term,
        Body::Append {
            prev_index: Index(prev_index),
            prev_term: Term(prev_term),
            commit: Index(commit),
            entries: EntryList::from_slice(entries),
        },
    )
}

fn vote(last_index: u64, last_term: u64) -> Body<'static> {
    Body::Vote {
        last_index: Index(last_index),
        last_term: Term(last_term),
        transfer: false,
    }
}

fn pre_vote(last_index: u64, last_term: u64) -> Body<'static> {
    Body::PreVote {
        last_index: Index(last_index),
        last_term: Term(last_term),
    }
}

fn hint(index: u64, term: u64) -> RejectHint {
    RejectHint {
        index: Index(index),
        term: Term(term),
    }
}

const GRANT: Body<'static> = Body::VoteResponse { reject: false };
const REFUSE: Body<'static> = Body::VoteResponse { reject: true };

/// A successful AppendResponse: the follower matches the leader through `index`.
fn ack(index: u64) -> Body<'static> {
    Body::AppendResponse {
        index: Index(index),
        reject: None,
    }
}

/// Sends `m` to `node` over the wire: encoded, then stepped as bytes.
fn deliver(node: &mut TestNode, m: &Message<'_>) {
    let mut buf = vec![0u8; 64 * 1024];
    let n = m.encode(&mut buf).expect("test message fits");
    node.step(&buf[..n])
        .unwrap_or_else(|e| panic!("{:?} refused {m:?}: {e:?}", node.id()));
}

// ----- the Ready duties, recorded -----

/// An entry copied out of a `Ready`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OwnedEntry {
    index: u64,
    term: u64,
    kind: EntryKind,
    data: Vec<u8>,
}

fn owned(e: Entry<'_>) -> OwnedEntry {
    OwnedEntry {
        index: e.index.0,
        term: e.term.0,
        kind: e.kind,
        data: e.data.to_vec(),
    }
}

fn noop(index: u64, term: u64) -> OwnedEntry {
    OwnedEntry {
        index,
        term,
        kind: EntryKind::Noop,
        data: Vec::new(),
    }
}

/// A message copied out of a `Ready`.
#[derive(Clone, Debug)]
struct Wire {
    to: NodeId,
    bytes: Vec<u8>,
}

impl Wire {
    fn of(o: Outgoing<'_>) -> Wire {
        Wire {
            to: o.to,
            bytes: o.bytes.to_vec(),
        }
    }

    /// The message; its recipient must be the one the `Ready` named.
    fn msg(&self) -> Message<'_> {
        let m = Message::decode(&self.bytes).expect("a node sends well-formed messages");
        assert_eq!(m.to, self.to, "Outgoing::to disagrees with the message");
        m
    }
}

/// What one `Ready` asked of the host, recorded after the host did it.
#[derive(Debug, Default)]
struct Out {
    hard_state: Option<HardState>,
    entries: Vec<OwnedEntry>,
    messages: Vec<Wire>,
    persisted: Vec<Wire>,
    committed: Vec<OwnedEntry>,
}

impl Out {
    fn messages(&self) -> Vec<Message<'_>> {
        self.messages.iter().map(Wire::msg).collect()
    }

    fn persisted(&self) -> Vec<Message<'_>> {
        self.persisted.iter().map(Wire::msg).collect()
    }

    /// Every message, in send order (the `Ready` ones first).
    fn all(&self) -> Vec<Message<'_>> {
        let mut v = self.messages();
        v.extend(self.persisted());
        v
    }

    /// The one message this `Ready` sent in either class.
    fn only(&self) -> Message<'_> {
        let all = self.all();
        assert_eq!(all.len(), 1, "expected exactly one message, got {all:?}");
        all[0]
    }

    /// The one message this `Ready` sent, which must be among the `persisted_messages`.
    fn only_persisted(&self) -> Message<'_> {
        assert!(
            self.messages.is_empty(),
            "expected nothing before persisting, got {:?}",
            self.messages()
        );
        self.only()
    }

    fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.persisted.is_empty()
            && self.committed.is_empty()
    }
}

/// Does the duties of the node's `Ready` in the documented order (send, persist, send what
/// waited for persistence, apply, advance), recording each; an empty `Out` if it has none.
fn process(node: &mut TestNode) -> Out {
    let mut out = Out::default();
    if !node.has_ready() {
        return out;
    }
    {
        let rd = node.ready();
        out.messages = rd.messages.iter().map(Wire::of).collect();
        out.hard_state = rd.hard_state;
        out.entries = rd.entries.iter().map(owned).collect();
        if let Some(hs) = rd.hard_state {
            rd.storage.set_hard_state(hs);
        }
        rd.storage.append(rd.entries).expect("storage has room");
        out.persisted = rd.persisted_messages.iter().map(Wire::of).collect();
        out.committed = rd
            .committed_entries()
            .map(|e| owned(e.expect("storage holds what it was given")))
            .collect();
    }
    node.advance();
    out
}

/// Entries `1 ..= last_index` of a storage.
fn stored_log(s: &MemStorage) -> Vec<OwnedEntry> {
    (1..=s.last_index().0)
        .map(|i| owned(s.entry(Index(i)).expect("held")))
        .collect()
}

/// Nodes with ids `1 ..= n` and a network between them, driven through the Ready contract.
struct Cluster {
    nodes: Vec<TestNode>,
    /// Committed entries each node handed out, across all its `Ready`s.
    applied: Vec<Vec<OwnedEntry>>,
    net: Vec<Wire>,
    /// Every message delivered so far.
    delivered: Vec<Wire>,
    /// Messages to these nodes are dropped.
    down: Vec<NodeId>,
}

impl Cluster {
    fn new(nodes: Vec<TestNode>) -> Cluster {
        for (k, n) in nodes.iter().enumerate() {
            assert_eq!(n.id(), NodeId(k as u64 + 1));
        }
        let applied = vec![Vec::new(); nodes.len()];
        Cluster {
            nodes,
            applied,
            net: Vec::new(),
            delivered: Vec::new(),
            down: Vec::new(),
        }
    }

    fn node(&mut self, id: u64) -> &mut TestNode {
        &mut self.nodes[id as usize - 1]
    }

    /// Does every node's Ready and queues what it sends. Checks on the way that nothing which
    /// promises persisted state (a granted vote, an acknowledgement of entries) is handed out
    /// to be sent before persisting.
    fn process_all(&mut self) {
        for k in 0..self.nodes.len() {
            let out = process(&mut self.nodes[k]);
            for m in out.messages() {
                let promise = matches!(m.body, Body::VoteResponse { reject: false })
                    || matches!(
                        m.body,
                        Body::AppendResponse {
                            reject: None,
                            index
                        } if index > Index::ZERO
                    );
                assert!(!promise, "{m:?} was in Ready::messages");
            }
            self.applied[k].extend(out.committed.iter().cloned());
            self.net.extend(out.messages);
            self.net.extend(out.persisted);
        }
    }

    /// Delivers every queued message, in order.
    fn deliver_all(&mut self) {
        for w in std::mem::take(&mut self.net) {
            if self.down.contains(&w.to) {
                continue;
            }
            let node = &mut self.nodes[w.to.0 as usize - 1];
            node.step(&w.bytes)
                .unwrap_or_else(|e| panic!("{:?} refused {:?}: {e:?}", w.to, w.msg()));
            self.delivered.push(w);
        }
    }

    /// Processes and delivers until no node has anything to do and nothing is in flight.
    fn settle(&mut self) {
        for _ in 0..100 {
            self.process_all();
            if self.net.is_empty() && !self.nodes.iter().any(Node::has_ready) {
                return;
            }
            self.deliver_all();
        }
        panic!("the cluster did not settle in 100 rounds");
    }
}

/// Node 1 of three, in `role` and term 3. Pre-vote is on for the follower and the pre-candidate,
/// off for the others (which campaign with a real vote). With check-quorum off, a leader too obeys
/// a higher-term vote request (the check-quorum lease is tested in §5.2).
fn node_in_role(role: Role, check_quorum: bool) -> TestNode {
    let (pre_vote, term) = match role {
        Role::Follower | Role::PreCandidate => (true, 3),
        Role::Candidate | Role::Leader => (false, 2),
    };
    let mut node = new_node(1, &IDS3, storage(&[], hard_state(term, 0, 0)), |c| {
        c.pre_vote = pre_vote;
        c.check_quorum = check_quorum;
    });
    if role != Role::Follower {
        node.campaign().expect("a follower may campaign");
    }
    process(&mut node);
    if role == Role::Leader {
        deliver(&mut node, &msg(2, 1, 3, GRANT));
        process(&mut node);
    }
    assert_eq!(node.role(), role);
    assert_eq!(node.term(), Term(3));
    assert!(!node.has_ready());
    node
}

const ROLES: [Role; 4] = [
    Role::Follower,
    Role::PreCandidate,
    Role::Candidate,
    Role::Leader,
];

// ----- §5.1 terms -----

#[test]
fn s5_1_higher_term_makes_node_follower_and_adopts_term() {
    let bodies: [Body<'static>; 9] = [
        Body::Append {
            prev_index: Index(0),
            prev_term: Term(0),
            commit: Index(0),
            entries: EntryList::EMPTY,
        },
        Body::Heartbeat {
            commit: Index(0),
            round: 0,
        },
        ack(0),
        Body::HeartbeatResponse { round: 0 },
        vote(9, 4),
        REFUSE,
        Body::PreVoteResponse { reject: true },
        Body::ReadIndex { context: 7 },
        Body::ReadIndexResponse {
            context: 7,
            index: Index(0),
        },
    ];
    for role in ROLES {
        for body in bodies {
            let mut node = node_in_role(role, false);
            deliver(&mut node, &msg(2, 1, 5, body));
            let what = format!("{role:?} stepping {}", body.name());
            assert_eq!(node.role(), Role::Follower, "{what}");
            assert_eq!(node.term(), Term(5), "{what}");
            let from_leader = matches!(body, Body::Append { .. } | Body::Heartbeat { .. });
            let expect_leader = from_leader.then_some(NodeId(2));
            assert_eq!(node.leader(), expect_leader, "{what}");
            // The new term (and a vote cast in it) must be persisted; nothing else was voted.
            let granted = matches!(body, Body::Vote { .. });
            let out = process(&mut node);
            let hs = out.hard_state.expect("a new term is persisted");
            assert_eq!(hs.term, Term(5), "{what}");
            assert_eq!(hs.vote, NodeId(if granted { 2 } else { 0 }), "{what}");
            for m in out.all() {
                assert_eq!(m.term, Term(5), "{what}: answer {m:?}");
            }
        }
    }
}

#[test]
fn s5_1_stale_term_message_is_ignored() {
    let stale_entries = entries(1, &[2]);
    let bodies: [Body<'_>; 10] = [
        Body::Append {
            prev_index: Index(0),
            prev_term: Term(0),
            commit: Index(1),
            entries: EntryList::from_slice(&stale_entries),
        },
        Body::Heartbeat {
            commit: Index(5),
            round: 1,
        },
        ack(1),
        Body::HeartbeatResponse { round: 1 },
        vote(9, 2),
        GRANT,
        pre_vote(9, 2),
        Body::PreVoteResponse { reject: false },
        Body::ReadIndex { context: 7 },
        Body::ReadIndexResponse {
            context: 7,
            index: Index(1),
        },
    ];
    for (role, check_quorum) in ROLES.into_iter().flat_map(|r| [(r, true), (r, false)]) {
        // Pre-vote is on for these two roles (see `node_in_role`).
        let pre_vote = matches!(role, Role::Follower | Role::PreCandidate);
        for body in bodies {
            let mut node = node_in_role(role, check_quorum);
            let before = node.status();
            let stale_before = node.counters().stale;
            deliver(&mut node, &msg(2, 1, 2, body));
            let what = format!(
                "{role:?} (check-quorum {check_quorum}) stepping a stale {}",
                body.name()
            );
            assert_eq!(node.status(), before, "{what}");
            assert_eq!(node.counters().stale, stale_before + 1, "{what}");
            let out = process(&mut node);
            assert!(out.hard_state.is_none(), "{what}");
            assert!(out.entries.is_empty(), "{what}");
            assert!(out.committed.is_empty(), "{what}");
            let answer = match body {
                // The stale leader learns the newer term and steps down. Only promised with
                // pre-vote or check-quorum (the defaults), which otherwise could leave it
                // stranded; with neither, as in etcd, the node stays silent and the stale leader
                // steps down on the new leader's first append or heartbeat instead.
                Body::Append { .. } | Body::Heartbeat { .. } if !pre_vote && !check_quorum => {
                    continue;
                }
                Body::Append { .. } | Body::Heartbeat { .. } => Some(ack(0)),
                Body::PreVote { .. } => Some(Body::PreVoteResponse { reject: true }),
                _ => None,
            };
            match answer {
                Some(body) => assert_eq!(out.only(), msg(1, 2, 3, body), "{what}"),
                None => assert!(out.all().is_empty(), "{what}: {:?}", out.all()),
            }
        }
    }
}

#[test]
fn s5_1_stale_leader_steps_down_when_answered_in_a_newer_term() {
    // Node 1 leads term 1; node 2 has since moved on to term 5.
    let mut leader = new_node(1, &IDS3, MemStorage::new(), |c| c.pre_vote = false);
    leader.campaign().expect("follower may campaign");
    process(&mut leader);
    deliver(&mut leader, &msg(3, 1, 1, GRANT));
    assert_eq!(leader.role(), Role::Leader);
    let mut newer = new_node(2, &IDS3, storage(&[], hard_state(5, 0, 0)), |_| {});

    let out = process(&mut leader);
    let to_newer: Vec<&Wire> = out.messages.iter().filter(|w| w.to == NodeId(2)).collect();
    assert_eq!(to_newer.len(), 1);
    newer.step(&to_newer[0].bytes).expect("well-formed");
    let answer = process(&mut newer);
    assert!(
        answer.hard_state.is_none(),
        "the stale append changed nothing"
    );
    assert_eq!(newer.status().last_index, Index(0));
    let m = answer.only();
    assert_eq!(m, msg(2, 1, 5, ack(0)));
    leader
        .step(&answer.persisted[0].bytes)
        .expect("well-formed");
    assert_eq!(leader.role(), Role::Follower);
    assert_eq!(leader.term(), Term(5));
    assert_eq!(leader.leader(), None);

    // The same for a heartbeat.
    let mut leader = new_node(1, &IDS3, MemStorage::new(), |c| c.pre_vote = false);
    leader.campaign().expect("follower may campaign");
    process(&mut leader);
    deliver(&mut leader, &msg(3, 1, 1, GRANT));
    process(&mut leader);
    leader.tick();
    let out = process(&mut leader);
    let hb = out
        .messages
        .iter()
        .find(|w| w.to == NodeId(2) && matches!(w.msg().body, Body::Heartbeat { .. }))
        .expect("a leader heartbeats every heartbeat_ticks");
    newer.step(&hb.bytes).expect("well-formed");
    let answer = process(&mut newer);
    assert_eq!(answer.only().term, Term(5));
    leader
        .step(&answer.persisted[0].bytes)
        .expect("well-formed");
    assert_eq!(leader.role(), Role::Follower);
    assert_eq!(leader.term(), Term(5));
}

// ----- §5.2 leader election -----

#[test]
fn s5_2_election_timeouts_cover_the_whole_range() {
    for election_ticks in [3u32, 10] {
        let mut seen = BTreeSet::new();
        for seed in 0..300u64 {
            let mut node = new_node(1, &IDS3, MemStorage::new(), |c| {
                c.seed = seed;
                c.election_ticks = election_ticks;
            });
            // The first timeout, then those of two pre-votes that nobody answered: each is
            // drawn anew.
            for round in 1..=3u64 {
                let mut ticks = 0u32;
                while node.counters().campaigns < round {
                    assert!(ticks < 10 * election_ticks, "seed {seed}: no campaign");
                    node.tick();
                    ticks += 1;
                }
                assert_eq!(node.role(), Role::PreCandidate, "seed {seed}");
                assert_eq!(
                    node.term(),
                    Term(0),
                    "seed {seed}: pre-vote raised the term"
                );
                assert!(
                    (election_ticks..2 * election_ticks).contains(&ticks),
                    "seed {seed} round {round}: timeout {ticks} outside [{election_ticks}, {})",
                    2 * election_ticks
                );
                seen.insert(ticks);
            }
        }
        let all: BTreeSet<u32> = (election_ticks..2 * election_ticks).collect();
        assert_eq!(seen, all, "election_ticks {election_ticks}");
    }

    // Without pre-vote, the timeout starts a real election in a new term.
    let mut node = new_node(1, &IDS3, MemStorage::new(), |c| c.pre_vote = false);
    let mut ticks = 0;
    while node.role() == Role::Follower {
        node.tick();
        ticks += 1;
    }
    assert!((10..20).contains(&ticks));
    assert_eq!(node.role(), Role::Candidate);
    assert_eq!(node.term(), Term(1));
}

#[test]
fn s5_2_follower_hearing_from_leader_does_not_start_an_election() {
    let mut node = new_node(2, &IDS3, MemStorage::new(), |_| {});
    for _ in 0..100 {
        node.tick();
        let hb = msg(
            1,
            2,
            1,
            Body::Heartbeat {
                commit: Index(0),
                round: 0,
            },
        );
        deliver(&mut node, &hb);
        process(&mut node);
    }
    assert_eq!(node.role(), Role::Follower);
    assert_eq!(node.counters().campaigns, 0);
    assert_eq!(node.leader(), Some(NodeId(1)));
    // Silence, and it campaigns after one randomized election timeout.
    let mut ticks = 0;
    while node.counters().campaigns == 0 {
        assert!(ticks < 20, "no campaign within two election timeouts");
        node.tick();
        ticks += 1;
    }
    assert!(ticks >= 10, "campaigned after {ticks} ticks");
}

#[test]
fn s5_2_candidate_steps_down_for_leader_of_same_or_higher_term() {
    let heartbeat = Body::Heartbeat {
        commit: Index(0),
        round: 0,
    };
    let empty_append = Body::Append {
        prev_index: Index(0),
        prev_term: Term(0),
        commit: Index(0),
        entries: EntryList::EMPTY,
    };
    for role in [Role::PreCandidate, Role::Candidate] {
        for body in [empty_append, heartbeat] {
            for term in [3, 4] {
                let mut node = node_in_role(role, true);
                let vote_before = node.status().vote;
                deliver(&mut node, &msg(2, 1, term, body));
                let what = format!("{role:?} stepping {} of term {term}", body.name());
                assert_eq!(node.role(), Role::Follower, "{what}");
                assert_eq!(node.term(), Term(term), "{what}");
                assert_eq!(node.leader(), Some(NodeId(2)), "{what}");
                // A vote cast in the same term stands.
                let vote = if term == 3 { vote_before } else { NodeId(0) };
                assert_eq!(node.status().vote, vote, "{what}");
                // It answers the leader as a follower does.
                let out = process(&mut node);
                let m = out.only_persisted();
                let want = match body {
                    Body::Append { .. } => ack(0),
                    _ => Body::HeartbeatResponse { round: 0 },
                };
                assert_eq!(m, msg(1, 2, term, want), "{what}");
            }
        }
    }
}

#[test]
fn s5_2_votes_are_granted_at_most_once_per_term() {
    let mut node = new_node(1, &IDS3, storage(&[], hard_state(1, 0, 0)), |_| {});

    deliver(&mut node, &msg(2, 1, 2, vote(0, 0)));
    let out = process(&mut node);
    assert_eq!(out.hard_state, Some(hard_state(2, 2, 0)));
    assert_eq!(out.only_persisted(), msg(1, 2, 2, GRANT));

    // A second candidate in the same term is refused.
    deliver(&mut node, &msg(3, 1, 2, vote(5, 1)));
    let out = process(&mut node);
    assert_eq!(out.hard_state, None);
    assert_eq!(out.only_persisted(), msg(1, 3, 2, REFUSE));

    // The same candidate asking again (its answer was lost) gets the vote again.
    deliver(&mut node, &msg(2, 1, 2, vote(0, 0)));
    let out = process(&mut node);
    assert_eq!(out.hard_state, None);
    assert_eq!(out.only_persisted(), msg(1, 2, 2, GRANT));

    // The vote is durable: after a restart from storage, the second candidate is still refused.
    let mut node = new_node(1, &IDS3, node.into_storage(), |_| {});
    assert_eq!(node.status().vote, NodeId(2));
    deliver(&mut node, &msg(3, 1, 2, vote(5, 1)));
    assert_eq!(process(&mut node).only_persisted(), msg(1, 3, 2, REFUSE));

    // A new term brings a new vote.
    deliver(&mut node, &msg(3, 1, 3, vote(5, 1)));
    let out = process(&mut node);
    assert_eq!(out.hard_state, Some(hard_state(3, 3, 0)));
    assert_eq!(out.only_persisted(), msg(1, 3, 3, GRANT));
}

#[test]
fn s5_2_candidate_with_majority_of_votes_becomes_leader_and_appends_noop() {
    // Node 1 has two entries from term 1 and campaigns in term 2, among five.
    let mut node = new_node(1, &IDS5, storage(&[1, 1], hard_state(1, 0, 0)), |c| {
        c.pre_vote = false;
    });
    node.campaign().expect("follower may campaign");
    assert_eq!(node.role(), Role::Candidate);
    let out = process(&mut node);
    assert_eq!(out.hard_state, Some(hard_state(2, 1, 0)));
    assert!(out.messages.is_empty(), "vote requests wait for the vote");
    let requests = out.persisted();
    let to: Vec<NodeId> = requests.iter().map(|m| m.to).collect();
    assert_eq!(to, [NodeId(2), NodeId(3), NodeId(4), NodeId(5)]);
    for m in &requests {
        assert_eq!(m.from, NodeId(1));
        assert_eq!(m.term, Term(2));
        assert_eq!(m.body, vote(2, 1));
    }

    deliver(&mut node, &msg(2, 1, 2, GRANT));
    assert_eq!(node.role(), Role::Candidate, "two of five is no majority");
    // A duplicated grant is not a second vote.
    deliver(&mut node, &msg(2, 1, 2, GRANT));
    assert_eq!(node.role(), Role::Candidate, "a duplicate counted twice");
    deliver(&mut node, &msg(3, 1, 2, GRANT));
    assert_eq!(node.role(), Role::Leader);
    assert_eq!(node.leader(), Some(NodeId(1)));
    assert_eq!(node.term(), Term(2));
    assert_eq!(node.counters().became_leader, 1);

    // Its first Ready carries the no-op of its term, and appends of it to every follower.
    let out = process(&mut node);
    assert_eq!(out.entries, [noop(3, 2)]);
    assert!(out.persisted.is_empty());
    let appends = out.messages();
    assert_eq!(appends.len(), 4);
    for (m, to) in appends.iter().zip(2u64..) {
        assert_eq!(m.to, NodeId(to));
        assert_eq!(m.term, Term(2));
        let Body::Append {
            prev_index,
            prev_term,
            ..
        } = m.body
        else {
            panic!("expected an append, got {m:?}");
        };
        assert_eq!((prev_index, prev_term), (Index(2), Term(1)));
        let sent: Vec<OwnedEntry> = m.entries().iter().map(owned).collect();
        assert_eq!(sent, [noop(3, 2)]);
    }
    assert_eq!(node.log_term(Index(3)), Some(Term(2)));
}

#[test]
fn s5_2_candidate_with_majority_of_rejections_becomes_follower() {
    // A real election: the term stays raised, the vote for itself stands.
    let mut node = new_node(1, &IDS5, MemStorage::new(), |c| c.pre_vote = false);
    node.campaign().expect("follower may campaign");
    process(&mut node);
    deliver(&mut node, &msg(2, 1, 1, REFUSE));
    deliver(&mut node, &msg(3, 1, 1, REFUSE));
    assert_eq!(
        node.role(),
        Role::Candidate,
        "two refusals of five decide nothing"
    );
    deliver(&mut node, &msg(4, 1, 1, REFUSE));
    assert_eq!(node.role(), Role::Follower);
    assert_eq!(node.term(), Term(1));
    assert_eq!(node.status().vote, NodeId(1));
    assert_eq!(node.leader(), None);

    // A pre-vote: the term was never raised.
    let mut node = new_node(1, &IDS5, MemStorage::new(), |_| {});
    node.campaign().expect("follower may campaign");
    assert_eq!(node.role(), Role::PreCandidate);
    process(&mut node);
    let refuse = Body::PreVoteResponse { reject: true };
    deliver(&mut node, &msg(2, 1, 0, refuse));
    deliver(&mut node, &msg(3, 1, 0, refuse));
    assert_eq!(node.role(), Role::PreCandidate);
    deliver(&mut node, &msg(5, 1, 0, refuse));
    assert_eq!(node.role(), Role::Follower);
    assert_eq!(node.term(), Term(0));
    assert_eq!(process(&mut node).hard_state, None);
}

#[test]
fn s5_2_pre_vote_does_not_raise_the_voters_term_or_bind_its_vote() {
    let mut voter = new_node(2, &IDS3, storage(&[1], hard_state(1, 0, 1)), |_| {});
    let before = voter.status();
    deliver(&mut voter, &msg(1, 2, 2, pre_vote(1, 1)));
    assert_eq!(voter.status(), before);
    let out = process(&mut voter);
    // The grant echoes the term the pre-candidate would campaign in...
    assert_eq!(
        out.only_persisted(),
        msg(2, 1, 2, Body::PreVoteResponse { reject: false })
    );
    // ...but the voter stays in its term, with no vote cast and nothing to persist.
    assert_eq!(out.hard_state, None);
    assert_eq!(voter.term(), Term(1));
    assert_eq!(voter.status().vote, NodeId(0));
    // So it is still free to vote for another candidate in that term.
    deliver(&mut voter, &msg(3, 2, 2, vote(1, 1)));
    let out = process(&mut voter);
    assert_eq!(out.only_persisted(), msg(2, 3, 2, GRANT));
    assert_eq!(out.hard_state, Some(hard_state(2, 3, 1)));
}

#[test]
fn s5_2_pre_candidate_raises_its_term_only_after_winning_the_pre_vote() {
    let nodes = IDS3
        .iter()
        .map(|id| new_node(id.0, &IDS3, storage(&[], hard_state(4, 0, 0)), |_| {}))
        .collect();
    let mut c = Cluster::new(nodes);
    c.node(1).campaign().expect("follower may campaign");
    assert_eq!(c.node(1).role(), Role::PreCandidate);
    assert_eq!(c.node(1).term(), Term(4));
    let out = process(c.node(1));
    assert_eq!(out.hard_state, None, "a pre-vote changes nothing durable");
    let requests = out.persisted();
    assert_eq!(requests.len(), 2);
    for m in &requests {
        assert_eq!(
            m.term,
            Term(5),
            "a pre-vote names the term it would campaign in"
        );
        assert_eq!(m.body, pre_vote(0, 0));
    }

    // Node 2 grants; its term does not move.
    c.node(2).step(&out.persisted[0].bytes).expect("ok");
    let answer = process(c.node(2));
    assert_eq!(answer.hard_state, None);
    assert_eq!(c.node(2).term(), Term(4));
    assert_eq!(
        answer.only_persisted(),
        msg(2, 1, 5, Body::PreVoteResponse { reject: false })
    );

    // With that grant the pre-candidate has a majority: now it raises its term and campaigns.
    c.node(1).step(&answer.persisted[0].bytes).expect("ok");
    assert_eq!(c.node(1).role(), Role::Candidate);
    assert_eq!(c.node(1).term(), Term(5));
    let out = process(c.node(1));
    assert_eq!(out.hard_state, Some(hard_state(5, 1, 0)));
    for m in out.persisted() {
        assert_eq!((m.term, m.body), (Term(5), vote(0, 0)));
    }
    c.net.extend(out.persisted);
    c.settle();
    assert_eq!(c.node(1).role(), Role::Leader);
    for id in 1..=3 {
        assert_eq!(c.node(id).term(), Term(5));
        assert_eq!(c.node(id).leader(), Some(NodeId(1)));
    }
    // The pre-vote round did not raise anybody's term past the one election.
    assert_eq!(c.node(3).storage().hard_state().term, Term(5));
}

#[test]
fn s5_2_check_quorum_follower_ignores_higher_term_vote_while_it_hears_a_leader() {
    for pre in [false, true] {
        let mut node = new_node(2, &IDS3, MemStorage::new(), |_| {});
        deliver(&mut node, &append(1, 2, 1, (0, 0), 0, &entries(1, &[1])));
        process(&mut node);
        assert_eq!(node.leader(), Some(NodeId(1)));
        let before = node.status();

        let request = if pre { pre_vote(9, 1) } else { vote(9, 1) };
        deliver(&mut node, &msg(3, 2, 2, request));
        assert_eq!(node.status(), before, "pre-vote {pre}");
        assert_eq!(node.counters().votes_ignored, 1);
        assert!(
            process(&mut node).is_empty(),
            "no answer, nothing to persist"
        );

        // An election timeout without word from the leader ends the lease: now it grants.
        for _ in 0..10 {
            node.tick();
        }
        process(&mut node);
        deliver(&mut node, &msg(3, 2, 2, request));
        let out = process(&mut node);
        let answers: Vec<Body<'_>> = out
            .persisted()
            .iter()
            .filter(|m| m.to == NodeId(3))
            .map(|m| m.body)
            .collect();
        let grant = if pre {
            Body::PreVoteResponse { reject: false }
        } else {
            GRANT
        };
        assert_eq!(answers, [grant], "pre-vote {pre}");
    }
}

#[test]
fn s5_2_without_check_quorum_follower_grants_higher_term_vote_despite_its_leader() {
    let mut node = new_node(2, &IDS3, MemStorage::new(), |c| c.check_quorum = false);
    deliver(&mut node, &append(1, 2, 1, (0, 0), 0, &entries(1, &[1])));
    process(&mut node);
    assert_eq!(node.leader(), Some(NodeId(1)));
    deliver(&mut node, &msg(3, 2, 2, vote(9, 1)));
    assert_eq!(node.term(), Term(2));
    assert_eq!(node.leader(), None);
    assert_eq!(node.counters().votes_ignored, 0);
    let out = process(&mut node);
    assert_eq!(out.hard_state, Some(hard_state(2, 3, 0)));
    assert_eq!(out.only_persisted(), msg(2, 3, 2, GRANT));
}

#[test]
fn s5_2_granting_a_vote_restarts_the_election_timer_and_refusing_does_not() {
    // Node 2 in term 1; a twin with the same configuration and storage draws the same
    // randomized timeout, which tells the test what it is.
    let make = |vote| {
        new_node(2, &IDS3, storage(&[], hard_state(1, vote, 0)), |c| {
            c.pre_vote = false;
        })
    };
    for voted_before in [0, 3] {
        let mut twin = make(voted_before);
        let mut timeout = 0;
        while twin.role() == Role::Follower {
            twin.tick();
            timeout += 1;
        }
        let mut node = make(voted_before);
        for _ in 0..timeout - 1 {
            node.tick();
        }
        // A vote request of the node's own term, so that no term change resets anything.
        deliver(&mut node, &msg(1, 2, 1, vote(0, 0)));
        let out = process(&mut node);
        let granted = out.only_persisted().body == GRANT;
        assert_eq!(granted, voted_before == 0);
        node.tick();
        if granted {
            // The count started again: a whole timeout passes before it campaigns.
            for _ in 0..timeout - 2 {
                node.tick();
            }
            assert_eq!(
                node.role(),
                Role::Follower,
                "the grant did not restart the timer"
            );
            node.tick();
        }
        assert_eq!(node.role(), Role::Candidate, "voted before: {voted_before}");
    }
}

#[test]
fn s5_2_split_vote_candidate_times_out_and_campaigns_in_a_new_term() {
    let mut node = new_node(1, &IDS5, MemStorage::new(), |c| c.pre_vote = false);
    node.campaign().expect("follower may campaign");
    process(&mut node);
    // Two of five: neither won nor lost.
    deliver(&mut node, &msg(2, 1, 1, GRANT));
    deliver(&mut node, &msg(3, 1, 1, REFUSE));
    deliver(&mut node, &msg(4, 1, 1, REFUSE));
    assert_eq!(node.role(), Role::Candidate);
    let mut ticks = 0;
    while node.term() == Term(1) {
        assert!(ticks < 20, "the candidate did not time out");
        node.tick();
        ticks += 1;
    }
    assert!(ticks >= 10, "timed out after {ticks} ticks");
    assert_eq!((node.role(), node.term()), (Role::Candidate, Term(2)));
    let out = process(&mut node);
    assert_eq!(out.hard_state, Some(hard_state(2, 1, 0)));
    let requests = out.persisted();
    assert_eq!(requests.len(), 4);
    assert!(requests
        .iter()
        .all(|m| m.term == Term(2) && m.body == vote(0, 0)));
    // The old term's votes do not count in the new one.
    deliver(&mut node, &msg(3, 1, 2, GRANT));
    assert_eq!(node.role(), Role::Candidate);
    deliver(&mut node, &msg(4, 1, 2, GRANT));
    assert_eq!(node.role(), Role::Leader);
}

// ----- §5.3 log replication -----

#[test]
fn s5_3_leader_never_overwrites_or_deletes_its_own_entries() {
    let (mut node, _) = leader_of_three();
    node.propose(b"x").expect("leader accepts");
    process(&mut node);
    let before = node.status();
    let log = stored_log(node.storage());
    // Another node claiming to lead the same term, with a conflicting log.
    let rival = entries(1, &[1, 1, 1]);
    let m = append(2, 1, 1, (0, 0), 3, &rival);
    assert_eq!(node.step_message(&m), Err(StepError::Malformed));
    assert_eq!(node.status(), before);
    assert_eq!(node.role(), Role::Leader);
    assert!(process(&mut node).is_empty());
    assert_eq!(stored_log(node.storage()), log);
    // Rejections from followers move its view of them, never its log.
    let hint = hint(1, 0);
    let reject = Body::AppendResponse {
        index: Index(0),
        reject: Some(hint),
    };
    deliver(&mut node, &msg(3, 1, 1, reject));
    process(&mut node);
    assert_eq!(stored_log(node.storage()), log);
    assert_eq!(node.status().last_index, before.last_index);
}

#[test]
fn s5_3_leader_retries_lost_appends() {
    let nodes = IDS3
        .iter()
        .map(|id| new_node(id.0, &IDS3, MemStorage::new(), |_| {}))
        .collect();
    let mut c = Cluster::new(nodes);
    c.node(1).campaign().expect("follower may campaign");
    // Node 3 misses the election and the no-op; node 2 then misses a proposal.
    c.down = vec![NodeId(3)];
    c.settle();
    assert_eq!(c.node(1).role(), Role::Leader);
    c.down = vec![NodeId(2)];
    c.node(1).propose(b"x").expect("leader accepts");
    c.settle();
    assert_eq!(c.node(3).status().last_index, Index(0), "3 got nothing yet");
    assert_eq!(
        c.node(2).status().last_index,
        Index(1),
        "2 missed the proposal"
    );
    c.down.clear();
    // No new proposals: only the leader's own retries can bring them up to date.
    let mut ticks = 0;
    while [2, 3]
        .iter()
        .any(|&id| c.node(id).status().commit < Index(2))
    {
        assert!(ticks < 30, "lost appends were not retried");
        c.node(1).tick();
        c.settle();
        ticks += 1;
    }
    let leader = stored_log(c.node(1).storage());
    assert_eq!(leader.len(), 2);
    for id in [2, 3] {
        assert_eq!(stored_log(c.node(id).storage()), leader, "node {id}");
    }
}

/// Three fresh nodes; node 1 campaigns and wins, and the cluster settles.
fn led_by_node_1() -> Cluster {
    let nodes = IDS3
        .iter()
        .map(|id| new_node(id.0, &IDS3, MemStorage::new(), |_| {}))
        .collect();
    let mut c = Cluster::new(nodes);
    c.node(1).campaign().expect("follower may campaign");
    c.settle();
    c
}

#[test]
fn s5_3_lost_append_in_replicate_is_noticed_by_the_next_heartbeats() {
    let mut c = led_by_node_1();
    assert_eq!(c.node(1).role(), Role::Leader);
    let p = c.node(1).progress(NodeId(2)).expect("leader tracks 2");
    assert_eq!(p.state, ProgressState::Replicate);
    // Node 2 loses the append of one proposal, and nothing else is proposed after it.
    c.down = vec![NodeId(2)];
    c.node(1).propose(b"x").expect("leader accepts");
    c.settle();
    c.down.clear();
    assert_eq!(c.node(2).status().last_index, Index(1), "2 lost the append");
    // Heartbeats go out every tick. The first answer records where 2 stands; the second shows
    // no movement, so the leader asks about the entry before `next`, is refused, and resends:
    // a few ticks, well within an election timeout (10 ticks).
    let mut ticks = 0;
    while c.node(2).status().last_index < Index(2) {
        assert!(ticks < 4, "the lost append was not noticed by heartbeats");
        c.node(1).tick();
        c.settle();
        ticks += 1;
    }
    assert_eq!(
        stored_log(c.node(2).storage()),
        stored_log(c.node(1).storage())
    );
}

#[test]
fn s5_3_leader_does_not_spin_on_a_member_behind_the_compacted_prefix() {
    let mut c = led_by_node_1();
    // Node 3 misses five entries, which the leader then compacts away.
    c.down = vec![NodeId(3)];
    for k in 0..5u8 {
        c.node(1).propose(&[k]).expect("leader accepts");
        c.settle();
    }
    let applied = c.node(1).status().applied;
    c.node(1)
        .storage_mut()
        .compact(applied)
        .expect("applied entries are held");
    c.down.clear();
    for _ in 0..3 {
        c.node(1).tick();
        c.settle();
    }
    // Node 3 cannot be served without a snapshot: the leader counts it and goes quiet rather
    // than reporting work it cannot do (`settle` would panic on a Ready that never ends).
    assert!(c.node(1).counters().compacted_peers > 0);
    assert!(!c.node(1).has_ready());
    assert!(c.node(3).status().last_index < applied);
}

#[test]
fn s5_3_unreachable_follower_is_probed_not_streamed_to() {
    let mut c = led_by_node_1();
    let p = c.node(1).progress(NodeId(2)).expect("leader tracks 2");
    assert_eq!(p.state, ProgressState::Replicate);
    c.node(1).report_unreachable(NodeId(2));
    let p = c.node(1).progress(NodeId(2)).expect("leader tracks 2");
    assert_eq!(p.state, ProgressState::Probe);
    assert_eq!(p.next, p.matched.next());
    // While 2 does not answer, three rounds of proposals send it one append, not three.
    c.down = vec![NodeId(2)];
    let before = c.delivered.len();
    let mut to_2 = 0;
    for k in 0..3 {
        c.node(1).propose(&[k]).expect("leader accepts");
        c.process_all();
        to_2 += c
            .net
            .iter()
            .filter(|w| w.to == NodeId(2) && matches!(w.msg().body, Body::Append { .. }))
            .count();
        c.deliver_all();
        c.settle();
    }
    assert!(c.delivered.len() > before);
    assert_eq!(
        to_2, 1,
        "a probed follower gets one append until it answers"
    );
    // Once it answers again it is streamed to and catches up.
    c.down.clear();
    for _ in 0..3 {
        c.node(1).tick();
        c.settle();
    }
    assert_eq!(
        stored_log(c.node(2).storage()),
        stored_log(c.node(1).storage())
    );
    let p = c.node(1).progress(NodeId(2)).expect("leader tracks 2");
    assert_eq!(p.state, ProgressState::Replicate);
}

#[test]
fn s5_3_heartbeat_never_commits_entries_the_follower_is_not_known_to_match() {
    // Node 3 led term 2 and appended two entries nobody else has; nodes 1 and 2 have only
    // index 1. Node 1 wins term 3 while node 3 is away, and commits more than node 3's log holds.
    let logs: [(&[u64], u64); 3] = [(&[1], 0), (&[1], 0), (&[1, 2, 2], 3)];
    let nodes = logs
        .iter()
        .zip(1u64..)
        .map(|(&(log, vote), id)| {
            new_node(id, &IDS3, storage(log, hard_state(2, vote, 1)), |c| {
                c.pre_vote = false;
            })
        })
        .collect();
    let mut c = Cluster::new(nodes);
    c.down = vec![NodeId(3)];
    c.node(1).campaign().expect("follower may campaign");
    c.settle();
    c.node(1).propose(b"y").expect("leader accepts");
    c.settle();
    assert_eq!(c.node(1).status().commit, Index(3));
    c.down.clear();

    // Node 3 returns, and the first thing it hears is a heartbeat: the commit index it carries
    // must not make node 3 commit its own entries 2 and 3 of term 2.
    c.node(1).tick();
    let out = process(c.node(1));
    let to_3 = out
        .messages
        .iter()
        .find(|w| w.to == NodeId(3) && matches!(w.msg().body, Body::Heartbeat { .. }))
        .expect("heartbeat to node 3");
    c.node(3).step(&to_3.bytes).expect("ok");
    assert_eq!(c.node(3).term(), Term(3));
    assert_eq!(c.node(3).status().commit, Index(1));
    c.net
        .extend(out.messages.iter().filter(|w| w.to == NodeId(2)).cloned());
    c.settle();
    c.node(1).tick();
    c.settle();
    // Node 3 applied exactly the leader's entries.
    let leader = stored_log(c.node(1).storage());
    assert_eq!(stored_log(c.node(3).storage()), leader);
    assert_eq!(c.node(3).status().commit, Index(3));
    assert_eq!(c.applied[2], leader);
}

#[test]
fn s5_3_follower_rejects_append_with_mismatched_prev_and_hints_the_conflict() {
    // Follower 2 holds terms 1 1 2 2 2 at indices 1..=5; leader 1 leads term 3.
    let mut node = new_node(
        2,
        &IDS3,
        storage(&[1, 1, 2, 2, 2], hard_state(3, 0, 0)),
        |_| {},
    );
    let incoming = entries(6, &[3]);
    let cases = [
        // (prev_index, prev_term) of the probe, and the hint: the follower's term at
        // prev_index with the first index of that term, or last_index + 1 and term 0.
        ((5, 3), hint(3, 2)),
        ((4, 1), hint(3, 2)),
        ((2, 2), hint(1, 1)),
        ((8, 3), hint(6, 0)),
        ((6, 2), hint(6, 0)),
    ];
    for ((pi, pt), hint) in cases {
        let es = if pi == 5 { &incoming[..] } else { &[] };
        deliver(&mut node, &append(1, 2, 3, (pi, pt), 5, es));
        let out = process(&mut node);
        assert!(out.entries.is_empty(), "probe ({pi}, {pt}) appended");
        assert!(out.hard_state.is_none(), "probe ({pi}, {pt})");
        let want = msg(
            2,
            1,
            3,
            Body::AppendResponse {
                index: Index(pi),
                reject: Some(hint),
            },
        );
        assert_eq!(out.only_persisted(), want, "probe ({pi}, {pt})");
        assert_eq!(node.status().last_index, Index(5));
        assert_eq!(
            node.status().commit,
            Index(0),
            "a rejected append commits nothing"
        );
    }
    // A matching probe is accepted, and does not cut the entries after it.
    deliver(&mut node, &append(1, 2, 3, (3, 2), 0, &[]));
    let out = process(&mut node);
    assert_eq!(out.only_persisted().body, ack(3));
    assert_eq!(node.status().last_index, Index(5));
}

#[test]
fn s5_3_conflicting_suffix_is_truncated_and_replaced() {
    let mut node = new_node(
        2,
        &IDS3,
        storage(&[1, 1, 2, 2, 2], hard_state(3, 0, 0)),
        |_| {},
    );
    // The leader's log is 1 1 3 3; its append starts at index 2, which matches.
    let leader_log = entries(1, &[1, 1, 3, 3]);
    deliver(&mut node, &append(1, 2, 3, (1, 1), 0, &leader_log[1..]));
    let out = process(&mut node);
    // The Ready's entries start at the conflict, not at the first entry of the append.
    let want: Vec<OwnedEntry> = leader_log[2..].iter().copied().map(owned).collect();
    assert_eq!(out.entries, want);
    assert_eq!(out.only_persisted().body, ack(4));
    // Persisted into the storage, the follower's log is the leader's: the old tail is gone.
    let all: Vec<OwnedEntry> = leader_log.iter().copied().map(owned).collect();
    assert_eq!(stored_log(node.storage()), all);
    assert_eq!(node.status().last_index, Index(4));
    assert_eq!(node.status().stable_index, Index(4));

    // An append whose entries the follower already has (a delayed duplicate) cuts nothing.
    deliver(&mut node, &append(1, 2, 3, (0, 0), 0, &leader_log[..1]));
    let out = process(&mut node);
    assert!(out.entries.is_empty());
    assert_eq!(out.only_persisted().body, ack(1));
    assert_eq!(stored_log(node.storage()), all);

    // The same when the conflicting entries were not persisted yet (still in the node).
    let mut node = new_node(2, &IDS3, storage(&[1], hard_state(2, 0, 0)), |_| {});
    deliver(
        &mut node,
        &append(1, 2, 2, (1, 1), 0, &entries(2, &[2, 2, 2])),
    );
    assert_eq!(node.status().last_index, Index(4));
    // Before the host took them, node 3 became leader of term 3 with a log of 1 3.
    deliver(&mut node, &append(3, 2, 3, (1, 1), 0, &entries(2, &[3])));
    let out = process(&mut node);
    let want: Vec<OwnedEntry> = entries(2, &[3]).into_iter().map(owned).collect();
    assert_eq!(out.entries, want);
    let log: Vec<OwnedEntry> = entries(1, &[1, 3]).into_iter().map(owned).collect();
    assert_eq!(stored_log(node.storage()), log);
}

#[test]
fn s5_3_follower_commits_up_to_min_of_leader_commit_and_last_new_entry() {
    // The leader's commit index is ahead of what this append carries.
    let mut node = new_node(2, &IDS3, MemStorage::new(), |_| {});
    deliver(&mut node, &append(1, 2, 1, (0, 0), 5, &entries(1, &[1, 1])));
    assert_eq!(node.status().commit, Index(2));
    let out = process(&mut node);
    assert_eq!(out.hard_state.map(|h| h.commit), Some(Index(2)));
    let want: Vec<OwnedEntry> = entries(1, &[1, 1]).into_iter().map(owned).collect();
    assert_eq!(out.committed, want);

    // A follower with entries past the append's that are not known to match: the commit index
    // stops at the last entry the append vouched for.
    let mut node = new_node(2, &IDS3, storage(&[1, 1, 1], hard_state(2, 0, 0)), |_| {});
    deliver(&mut node, &append(1, 2, 2, (1, 1), 3, &[]));
    assert_eq!(
        node.status().commit,
        Index(1),
        "entries 2 and 3 were not checked"
    );
    process(&mut node);
    deliver(&mut node, &append(1, 2, 2, (1, 1), 3, &entries(2, &[2])));
    // Entry 2 conflicted and was replaced, taking 3 with it; 3 of term 1 is never committed.
    assert_eq!(node.status().commit, Index(2));
    assert_eq!(node.status().last_index, Index(2));
    let out = process(&mut node);
    let want: Vec<OwnedEntry> = entries(2, &[2]).into_iter().map(owned).collect();
    assert_eq!(out.committed, want);
    // A heartbeat with a lower commit index never moves it back.
    deliver(
        &mut node,
        &msg(
            1,
            2,
            2,
            Body::Heartbeat {
                commit: Index(1),
                round: 0,
            },
        ),
    );
    assert_eq!(node.status().commit, Index(2));
}

#[test]
fn s5_3_figure7_followers_converge_to_the_leaders_log() {
    let leader_log: &[u64] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    // Followers (a) to (f) of Figure 7, as nodes 2 to 7, each in the term of its last entry.
    let followers: [&[u64]; 6] = [
        &[1, 1, 1, 4, 4, 5, 5, 6, 6],
        &[1, 1, 1, 4],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        &[1, 1, 1, 4, 4, 4, 4],
        &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ];
    let mut nodes = vec![new_node(
        1,
        &IDS7,
        storage(leader_log, hard_state(7, 0, 3)),
        |c| c.pre_vote = false,
    )];
    for (k, log) in followers.iter().enumerate() {
        let term = *log.last().expect("non-empty");
        nodes.push(new_node(
            k as u64 + 2,
            &IDS7,
            storage(log, hard_state(term, 0, 3)),
            |c| c.pre_vote = false,
        ));
    }
    let mut c = Cluster::new(nodes);
    // The leader of term 8: (a), (b), (e) and (f) vote for it; (c) and (d) have logs more
    // up-to-date than its own and refuse.
    c.node(1).campaign().expect("follower may campaign");
    assert_eq!(c.node(1).term(), Term(8));
    c.settle();
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), Term(8));
    for id in [4, 5] {
        let vote = c.node(id).storage().hard_state().vote;
        assert_eq!(vote, NodeId(0), "node {id} voted for a less up-to-date log");
    }
    for id in [2, 3, 6, 7] {
        let vote = c.node(id).storage().hard_state().vote;
        assert_eq!(vote, NodeId(1), "node {id} refused");
    }
    // One heartbeat round carries the commit index.
    c.node(1).tick();
    c.settle();

    let leader = stored_log(c.node(1).storage());
    assert_eq!(leader.len(), 11);
    assert_eq!(leader[10], noop(11, 8));
    let want: Vec<OwnedEntry> = entries(1, leader_log).into_iter().map(owned).collect();
    assert_eq!(leader[..10], want[..]);
    for id in 2..=7 {
        let follower = &mut c.nodes[id - 1];
        let label = ["a", "b", "c", "d", "e", "f"][id - 2];
        assert_eq!(stored_log(follower.storage()), leader, "follower ({label})");
        assert_eq!(follower.status().last_index, Index(11), "({label})");
        assert_eq!(follower.role(), Role::Follower, "({label})");
        assert_eq!(follower.leader(), Some(NodeId(1)), "({label})");
        assert_eq!(follower.status().commit, Index(11), "({label})");
        assert_eq!(follower.storage().hard_state().term, Term(8), "({label})");
        let applied: Vec<u64> = c.applied[id - 1].iter().map(|e| e.index).collect();
        assert_eq!(applied, (1..=11).collect::<Vec<_>>(), "({label})");
    }
    assert_eq!(c.node(1).status().commit, Index(11));

    // With the rejection hints, each follower rejected one append per term of conflicting
    // entries (a log too short counts as one), not one per entry.
    let most_rejections = [1, 1, 0, 0, 2, 2];
    for (id, most) in (2..=7u64).zip(most_rejections) {
        let rejections = c
            .delivered
            .iter()
            .map(Wire::msg)
            .filter(|m| {
                m.from == NodeId(id)
                    && matches!(
                        m.body,
                        Body::AppendResponse {
                            reject: Some(_),
                            ..
                        }
                    )
            })
            .count();
        assert!(
            rejections <= most,
            "node {id} rejected {rejections} appends"
        );
    }
}

// ----- §5.4.1 election restriction -----

#[test]
fn s5_4_1_voter_refuses_candidate_whose_log_is_less_up_to_date() {
    // The voter's log ends at index 3, term 2.
    let cases = [
        // (candidate's last_index, last_term, granted)
        (10, 1, false), // lower last term, however long
        (2, 2, false),  // same last term, shorter
        (3, 2, true),   // the same
        (4, 2, true),   // same last term, longer
        (1, 3, true),   // higher last term, however short
    ];
    for (li, lt, granted) in cases {
        for pre in [false, true] {
            let what = format!("candidate ({li}, {lt}), pre-vote {pre}");
            let mut node = new_node(2, &IDS3, storage(&[1, 2, 2], hard_state(2, 0, 0)), |_| {});
            let (request, answer) = if pre {
                (pre_vote(li, lt), Body::PreVoteResponse { reject: !granted })
            } else {
                (vote(li, lt), Body::VoteResponse { reject: !granted })
            };
            deliver(&mut node, &msg(1, 2, 3, request));
            let out = process(&mut node);
            let m = out.only_persisted();
            assert_eq!((m.to, m.body), (NodeId(1), answer), "{what}");
            let (term, vote) = (node.term(), node.status().vote);
            if pre {
                assert_eq!((term, vote), (Term(2), NodeId(0)), "{what}");
            } else {
                // Refused or not, the request's term is adopted (§5.1).
                let v = if granted { NodeId(1) } else { NodeId(0) };
                assert_eq!((term, vote), (Term(3), v), "{what}");
            }
        }
    }
}

// ----- §5.4.2 committing entries from previous terms -----

#[test]
fn s5_4_2_figure8_old_term_entry_commits_only_with_a_current_term_entry() {
    // Figure 8 (c): S1 led term 2 and got index 2 to S2; S5 led term 3 with its own index 2;
    // now S1 campaigns again. Index 1 is committed everywhere.
    let logs: [(&[u64], HardState); 5] = [
        (&[1, 2], hard_state(3, 0, 1)),
        (&[1, 2], hard_state(2, 1, 1)),
        (&[1], hard_state(3, 5, 1)),
        (&[1], hard_state(3, 5, 1)),
        (&[1, 3], hard_state(3, 5, 1)),
    ];
    // One entry per append, so that index 2 can reach S3 without index 3.
    let tweak = |c: &mut Config<'_>| {
        c.pre_vote = false;
        c.check_quorum = false;
        c.max_entry_bytes = 1;
        c.max_append_bytes = MAX_HEADER_LEN + ENTRY_OVERHEAD + 1;
    };
    let configs: Vec<Config<'_>> = (1..=5u64)
        .map(|id| {
            let mut c = Config::new(NodeId(id), &IDS5);
            tweak(&mut c);
            c
        })
        .collect();
    let nodes = logs
        .iter()
        .zip(&configs)
        .map(|((log, hs), cfg)| Node::new(cfg, storage(log, *hs)).expect("valid"))
        .collect();
    let mut c = Cluster::new(nodes);
    // S4 and S5 are down for now.
    c.down = vec![NodeId(4), NodeId(5)];

    // S1 wins term 4 with the votes of S2 and S3.
    c.node(1).campaign().expect("follower may campaign");
    c.process_all();
    c.deliver_all();
    c.process_all();
    c.deliver_all();
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), Term(4));
    // Its Ready: the no-op at index 3, and a probe after index 2 to everybody.
    c.process_all();
    assert_eq!(
        c.node(1).log_entry(Index(3)).map(|e| e.kind),
        Some(EntryKind::Noop)
    );
    // S2 matches and takes the no-op; S3 lacks index 2 and is sent it alone.
    c.deliver_all();
    c.process_all();
    c.deliver_all();
    let out = process(c.node(1));
    let to_s3 = out.only();
    assert_eq!(to_s3.to, NodeId(3));
    let sent: Vec<OwnedEntry> = to_s3.entries().iter().map(owned).collect();
    assert_eq!(sent, [owned(entry(2, 2))]);
    c.node(3).step(&out.messages[0].bytes).expect("ok");
    let answer = process(c.node(3));
    assert_eq!(answer.only_persisted().body, ack(2));
    c.node(1).step(&answer.persisted[0].bytes).expect("ok");

    // Index 2 (term 2) is now on S1, S2 and S3, a majority, and the leader knows it...
    for id in 1..=3 {
        assert_eq!(c.node(id).storage().term(Index(2)), Ok(Term(2)), "S{id}");
    }
    let progress = |c: &mut Cluster, id| c.node(1).progress(NodeId(id)).expect("leader").matched;
    assert_eq!(progress(&mut c, 1), Index(3));
    assert_eq!(progress(&mut c, 2), Index(3));
    assert_eq!(progress(&mut c, 3), Index(2));
    // ...but it does not commit it by counting replicas of an entry of an earlier term.
    assert_eq!(c.node(1).status().commit, Index(1));
    // Rightly so, (d): S5 could still win term 5 with S3 and S4 and overwrite index 2.
    for id in [3, 4] {
        let copy = c.node(id).storage().clone();
        let mut restarted = Node::new(&configs[id as usize - 1], copy).expect("valid");
        deliver(&mut restarted, &msg(5, id, 5, vote(2, 3)));
        assert_eq!(
            process(&mut restarted).only_persisted().body,
            GRANT,
            "S{id} would vote for S5"
        );
    }

    // (e): once the no-op of term 4 is on a majority, index 2 commits with it.
    let out = process(c.node(1));
    let to_s3 = out.only();
    let sent: Vec<OwnedEntry> = to_s3.entries().iter().map(owned).collect();
    assert_eq!(sent, [noop(3, 4)]);
    c.net.extend(out.messages);
    c.settle();
    assert_eq!(c.node(1).status().commit, Index(3));
    let applied: Vec<OwnedEntry> = c.applied[0].clone();
    assert_eq!(
        applied,
        [owned(entry(1, 1)), owned(entry(2, 2)), noop(3, 4)]
    );
    // And S5 can no longer win: S2 and S3 refuse it.
    for id in [2, 3] {
        let copy = c.node(id).storage().clone();
        let mut restarted = Node::new(&configs[id as usize - 1], copy).expect("valid");
        deliver(&mut restarted, &msg(5, id, 5, vote(2, 3)));
        assert_eq!(
            process(&mut restarted).only_persisted().body,
            REFUSE,
            "S{id} would vote for S5"
        );
    }
}

// ----- the Ready contract -----

/// Node 1, leader of term 1 among three, its first Ready (the no-op) done.
fn leader_of_three() -> (TestNode, Out) {
    let mut node = new_node(1, &IDS3, MemStorage::new(), |c| c.pre_vote = false);
    node.campaign().expect("follower may campaign");
    process(&mut node);
    deliver(&mut node, &msg(2, 1, 1, GRANT));
    assert_eq!(node.role(), Role::Leader);
    let out = process(&mut node);
    (node, out)
}

#[test]
fn ready_follower_answers_wait_for_persistence() {
    let mut node = new_node(2, &IDS3, MemStorage::new(), |c| c.pre_vote = false);
    let requests = [
        msg(3, 2, 1, pre_vote(0, 0)),
        msg(3, 2, 1, vote(0, 0)),
        append(3, 2, 1, (0, 0), 0, &[]),
        msg(
            3,
            2,
            1,
            Body::Heartbeat {
                commit: Index(0),
                round: 0,
            },
        ),
    ];
    let es = entries(1, &[1, 1]);
    let more = [append(3, 2, 1, (0, 0), 1, &es)];
    for m in requests.iter().chain(&more) {
        deliver(&mut node, m);
        let out = process(&mut node);
        let answer = out.only_persisted();
        assert!(
            matches!(
                answer.body,
                Body::PreVoteResponse { reject: false }
                    | Body::VoteResponse { reject: false }
                    | Body::AppendResponse { reject: None, .. }
                    | Body::HeartbeatResponse { .. }
            ),
            "{answer:?}"
        );
    }
    // A candidate's vote requests wait too: they promise its persisted term and vote.
    node.campaign().expect("follower may campaign");
    let out = process(&mut node);
    assert_eq!(
        out.hard_state.map(|h| (h.term, h.vote)),
        Some((Term(2), NodeId(2)))
    );
    assert!(out.messages.is_empty());
    let requests = out.persisted();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|m| matches!(m.body, Body::Vote { .. })));
}

#[test]
fn ready_leader_appends_and_heartbeats_go_out_before_persisting() {
    let (mut node, out) = leader_of_three();
    assert!(out.persisted.is_empty());
    let appends = out.messages();
    assert_eq!(appends.len(), 2);
    assert!(appends
        .iter()
        .all(|m| matches!(m.body, Body::Append { .. })));
    node.tick();
    let out = process(&mut node);
    assert!(out.persisted.is_empty());
    let beats = out.messages();
    assert_eq!(beats.len(), 2);
    assert!(beats
        .iter()
        .all(|m| matches!(m.body, Body::Heartbeat { .. })));
    // Followers 2 and 3 match and take the no-op; a proposal then streams out at once.
    for id in [2, 3] {
        deliver(&mut node, &msg(id, 1, 1, ack(1)));
    }
    node.propose(b"x").expect("leader accepts");
    let out = process(&mut node);
    assert!(out.persisted.is_empty());
    assert_eq!(out.messages.len(), 2);
    assert_eq!(out.entries.len(), 1);
}

#[test]
fn ready_entries_are_handed_out_once() {
    // Leader: the no-op once, then each proposal once.
    let (mut node, out) = leader_of_three();
    assert_eq!(out.entries, [noop(1, 1)]);
    assert!(process(&mut node).entries.is_empty());
    node.propose(b"a").expect("leader accepts");
    let out = process(&mut node);
    assert_eq!(out.entries.len(), 1);
    assert_eq!(
        (out.entries[0].index, out.entries[0].data.as_slice()),
        (2, &b"a"[..])
    );
    node.propose(b"b").expect("leader accepts");
    let out = process(&mut node);
    assert_eq!(out.entries.len(), 1);
    assert_eq!(
        (out.entries[0].index, out.entries[0].data.as_slice()),
        (3, &b"b"[..])
    );
    assert_eq!(stored_log(node.storage()).len(), 3);

    // Follower: each append's new entries once, even when an append repeats some.
    let mut node = new_node(2, &IDS3, MemStorage::new(), |_| {});
    let log = entries(1, &[1, 1, 1]);
    deliver(&mut node, &append(1, 2, 1, (0, 0), 0, &log[..2]));
    let first: Vec<u64> = process(&mut node).entries.iter().map(|e| e.index).collect();
    assert_eq!(first, [1, 2]);
    assert!(!node.has_ready());
    deliver(&mut node, &append(1, 2, 1, (0, 0), 0, &log));
    let second: Vec<u64> = process(&mut node).entries.iter().map(|e| e.index).collect();
    assert_eq!(second, [3]);
    let all: Vec<OwnedEntry> = log.into_iter().map(owned).collect();
    assert_eq!(stored_log(node.storage()), all);
}

#[test]
fn ready_committed_entries_are_handed_out_exactly_once() {
    let nodes = IDS3
        .iter()
        .map(|id| new_node(id.0, &IDS3, MemStorage::new(), |c| c.seed = 3))
        .collect();
    let mut c = Cluster::new(nodes);
    c.node(1).campaign().expect("follower may campaign");
    c.settle();
    assert_eq!(c.node(1).role(), Role::Leader);
    for k in 0..10u8 {
        c.node(1).propose(&[k]).expect("leader accepts");
        if k % 3 == 0 {
            c.node(1).tick();
        }
        c.settle();
    }
    c.node(1).tick();
    c.settle();
    for id in 1..=3u64 {
        let commit = c.node(id).status().commit;
        assert_eq!(commit, Index(11), "node {id}");
        let applied: Vec<u64> = c.applied[id as usize - 1].iter().map(|e| e.index).collect();
        assert_eq!(applied, (1..=11).collect::<Vec<_>>(), "node {id}");
        let data: Vec<Vec<u8>> = c.applied[id as usize - 1][1..]
            .iter()
            .map(|e| e.data.clone())
            .collect();
        assert_eq!(data, (0..10u8).map(|k| vec![k]).collect::<Vec<_>>());
        assert_eq!(c.node(id).status().applied, Index(11));
        // Nothing is handed out again.
        c.node(id).tick();
        let out = process(c.node(id));
        assert!(out.committed.is_empty(), "node {id}: {:?}", out.committed);
    }
}

#[test]
fn ready_leader_counts_its_own_entry_only_after_advance() {
    // The new leader's no-op.
    let mut node = new_node(1, &IDS3, MemStorage::new(), |c| c.pre_vote = false);
    node.campaign().expect("follower may campaign");
    process(&mut node);
    deliver(&mut node, &msg(2, 1, 1, GRANT));
    {
        let rd = node.ready();
        assert_eq!(rd.entries.len(), 1);
        assert_eq!(
            rd.messages.len(),
            2,
            "appends go out before the leader's write"
        );
        rd.storage.append(rd.entries).expect("room");
    }
    deliver(&mut node, &msg(2, 1, 1, ack(1)));
    assert_eq!(node.status().commit, Index(0));
    node.advance();
    assert_eq!(node.status().commit, Index(1));
    process(&mut node);

    node.propose(b"x").expect("leader accepts");
    {
        let rd = node.ready();
        assert_eq!(rd.entries.len(), 1);
        rd.storage.append(rd.entries).expect("room");
    }
    // The follower's acknowledgement arrives before the leader has called advance: its own
    // copy does not count yet, and one of three is no majority.
    deliver(&mut node, &msg(2, 1, 1, ack(2)));
    assert_eq!(node.status().commit, Index(1));
    node.advance();
    assert_eq!(node.status().commit, Index(2));
    let out = process(&mut node);
    assert_eq!(out.committed.len(), 1);
    assert_eq!(out.committed[0].data, b"x");
}

/// Thesis §10.2.1: a leader may write its log in parallel with replicating it. With
/// `advance_unsynced`, the leader's own copy does not count until `persisted` reports it: one
/// follower's acknowledgement is not a quorum of three until then, while two followers'
/// acknowledgements are a quorum without the leader.
#[test]
fn ready_deferred_leader_sync_counts_its_copy_only_once_persisted() {
    // A leader of term 1 whose no-op (index 1) is durable, each follower acknowledging it.
    let (mut node, _) = leader_of_three();
    for f in [2, 3] {
        deliver(&mut node, &msg(f, 1, 1, ack(1)));
    }
    process(&mut node);
    assert_eq!(node.status().commit, Index(1));

    // Entry 2: written, not yet synced.
    let index = node.propose(b"x").expect("leader accepts");
    assert_eq!(index, Index(2));
    {
        let rd = node.ready();
        assert!(
            rd.can_defer_sync(),
            "a leader's batch promises nothing to anyone"
        );
        rd.storage.append(rd.entries).expect("room");
    }
    node.advance_unsynced();
    assert_eq!(node.status().stable_index, Index(2), "written");
    // One follower's acknowledgement: with the leader's unsynced copy not counted, 1 of 3.
    deliver(&mut node, &msg(2, 1, 1, ack(2)));
    process(&mut node);
    assert_eq!(
        node.status().commit,
        Index(1),
        "not a quorum without the leader's sync"
    );
    // A stale report (wrong term) changes nothing; the real one completes the quorum.
    node.persisted(Index(2), Term(7));
    assert_eq!(node.status().commit, Index(1));
    node.persisted(Index(2), Term(1));
    assert_eq!(node.status().commit, Index(2), "leader + one follower");

    // Entry 3, unsynced: both followers acknowledging is a quorum without the leader.
    node.propose(b"y").expect("leader accepts");
    {
        let rd = node.ready();
        rd.storage.append(rd.entries).expect("room");
    }
    node.advance_unsynced();
    for f in [2, 3] {
        deliver(&mut node, &msg(f, 1, 1, ack(3)));
    }
    process(&mut node);
    assert_eq!(node.status().commit, Index(3));

    // A Ready that promises something (a vote, once the leader steps down) cannot be deferred:
    // `advance_unsynced` then acts as `advance`.
    let mut follower = new_node(2, &IDS3, MemStorage::new(), |c| c.pre_vote = false);
    deliver(&mut follower, &msg(3, 2, 1, vote(0, 0)));
    {
        let rd = follower.ready();
        assert!(!rd.can_defer_sync());
        if let Some(hs) = rd.hard_state {
            rd.storage.set_hard_state(hs);
        }
    }
    follower.advance_unsynced();
    assert!(!follower.has_ready(), "finished as a synced Ready");
}
