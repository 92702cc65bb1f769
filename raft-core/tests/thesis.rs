//! Claims of Ongaro's thesis ("Consensus: Bridging Theory and Practice", 2014) beyond the
//! paper, one test per claim, named by section: joint consensus (§4.3), leadership transfer
//! (§3.10), lease reads (§6.4.1), and chunked snapshots (§5.3, with this crate's CRC and
//! ordering checks). Nodes are driven by hand through the Ready contract over a small storage
//! that keeps a snapshot beside a [`MemStorage`] log.

use raft_core::{
    crc32c, Body, ConfChange, Config, ConfigEntry, Entry, EntryKind, HardState, Index, MemStorage,
    Membership, Message, Node, NodeId, ProgressState, ProposeError, ReadState, Role, SnapshotMeta,
    StepError, Storage, StorageError, Term,
};

const IDS3: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
const IDS5: [NodeId; 5] = [NodeId(1), NodeId(2), NodeId(3), NodeId(4), NodeId(5)];

// ----- a storage with a snapshot, and a host for it -----

/// A [`MemStorage`] log plus the latest snapshot (its metadata and bytes) and the snapshot
/// being received.
#[derive(Default)]
struct SnapStore {
    log: MemStorage,
    snap: Option<(SnapshotMeta, Vec<u8>)>,
    incoming: Vec<u8>,
}

impl Storage for SnapStore {
    fn hard_state(&self) -> HardState {
        self.log.hard_state()
    }
    fn first_index(&self) -> Index {
        self.log.first_index()
    }
    fn last_index(&self) -> Index {
        self.log.last_index()
    }
    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.log.term(index)
    }
    fn entry(&self, index: Index) -> Result<Entry<'_>, StorageError> {
        self.log.entry(index)
    }
    fn snapshot(&self) -> Option<SnapshotMeta> {
        self.snap.as_ref().map(|(m, _)| m.clone())
    }
    fn read_snapshot(
        &self,
        index: Index,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StorageError> {
        let (m, data) = self.snap.as_ref().ok_or(StorageError::Unavailable)?;
        if m.index != index {
            return Err(StorageError::SnapshotReplaced);
        }
        let rest = &data[offset as usize..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

type TestNode = Node<SnapStore>;

fn new_node(
    id: u64,
    voters: &[NodeId],
    store: SnapStore,
    tweak: impl FnOnce(&mut Config<'_>),
) -> TestNode {
    let mut cfg = Config::new(NodeId(id), voters);
    cfg.seed = 5;
    cfg.pre_vote = false;
    tweak(&mut cfg);
    Node::new(&cfg, store).expect("valid config and storage")
}

/// A message copied out of a `Ready`.
#[derive(Clone, Debug)]
struct Wire {
    to: NodeId,
    bytes: Vec<u8>,
}

impl Wire {
    fn msg(&self) -> Message<'_> {
        Message::decode(&self.bytes).expect("nodes send well-formed messages")
    }
}

/// What one `Ready` asked for.
#[derive(Default, Debug)]
struct Out {
    messages: Vec<Wire>,
    read_states: Vec<ReadState>,
    /// (offset, bytes, last) of a snapshot chunk.
    chunk: Option<(u64, usize, bool)>,
}

/// Does a node's Ready duties, writing and installing snapshot chunks.
fn process(node: &mut TestNode) -> Out {
    let mut out = Out::default();
    if !node.has_ready() {
        return out;
    }
    {
        let rd = node.ready();
        let mut msgs: Vec<Wire> = rd
            .messages
            .iter()
            .map(|m| Wire {
                to: m.to,
                bytes: m.bytes.to_vec(),
            })
            .collect();
        if let Some(c) = rd.snapshot {
            if c.is_last() {
                assert!(rd.entries.is_empty() && rd.committed_entries().next().is_none());
            }
            let s = &mut *rd.storage;
            if c.offset == 0 {
                s.incoming.clear();
            }
            assert_eq!(
                s.incoming.len() as u64,
                c.offset,
                "chunks are handed out in order"
            );
            s.incoming.extend_from_slice(c.data);
            out.chunk = Some((c.offset, c.data.len(), c.is_last()));
            if c.is_last() {
                s.log.install(c.index, c.term);
                s.snap = Some((c.meta(), std::mem::take(&mut s.incoming)));
            }
        }
        if let Some(hs) = rd.hard_state {
            rd.storage.log.set_hard_state(hs);
        }
        rd.storage.log.append(rd.entries).expect("room");
        msgs.extend(rd.persisted_messages.iter().map(|m| Wire {
            to: m.to,
            bytes: m.bytes.to_vec(),
        }));
        for e in rd.committed_entries() {
            e.expect("committed entries are readable");
        }
        out.read_states = rd.read_states.to_vec();
        out.messages = msgs;
    }
    node.advance();
    out
}

fn encode(m: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = m.encode(&mut buf).expect("fits");
    buf.truncate(n);
    buf
}

fn deliver(node: &mut TestNode, m: &Message<'_>) -> Result<(), StepError> {
    node.step(&encode(m))
}

fn msg(from: u64, to: u64, term: u64, body: Body<'_>) -> Message<'_> {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    }
}

/// Nodes `1..=n` and the messages between them; messages to `down` nodes are lost.
struct Cluster {
    nodes: Vec<TestNode>,
    net: Vec<Wire>,
    down: Vec<NodeId>,
    /// Every message delivered.
    delivered: Vec<Wire>,
}

impl Cluster {
    fn new(n: u64, tweak: impl Fn(&mut Config<'_>)) -> Cluster {
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let nodes = (1..=n)
            .map(|id| new_node(id, &ids, SnapStore::default(), &tweak))
            .collect();
        Cluster {
            nodes,
            net: Vec::new(),
            down: Vec::new(),
            delivered: Vec::new(),
        }
    }

    fn node(&mut self, id: u64) -> &mut TestNode {
        &mut self.nodes[id as usize - 1]
    }

    fn settle(&mut self) {
        for _ in 0..200 {
            for k in 0..self.nodes.len() {
                let out = process(&mut self.nodes[k]);
                self.net.extend(out.messages);
            }
            if self.net.is_empty() && !self.nodes.iter().any(Node::has_ready) {
                return;
            }
            for w in std::mem::take(&mut self.net) {
                if self.down.contains(&w.to) {
                    continue;
                }
                let _ = self.nodes[w.to.0 as usize - 1].step(&w.bytes);
                self.delivered.push(w);
            }
        }
        panic!("the cluster did not settle");
    }

    /// Ticks every live node once and settles.
    fn tick(&mut self) {
        for k in 0..self.nodes.len() {
            if !self.down.contains(&NodeId(k as u64 + 1)) {
                self.nodes[k].tick();
            }
        }
        self.settle();
    }
}

/// Three nodes; node 1 campaigns and wins, and the cluster settles.
fn led_by_node_1(tweak: impl Fn(&mut Config<'_>)) -> Cluster {
    let mut c = Cluster::new(3, tweak);
    c.node(1).campaign().expect("a follower may campaign");
    c.settle();
    assert_eq!(c.node(1).role(), Role::Leader);
    c
}

/// A storage whose log holds one config entry at index 1 (term 1, committed) putting
/// `membership` in effect.
fn store_with_config(membership: &Membership) -> SnapStore {
    let mut buf = [0u8; 256];
    let n = ConfigEntry {
        membership: membership.clone(),
        context: b"",
    }
    .encode(&mut buf)
    .expect("fits");
    let mut s = SnapStore::default();
    s.log
        .append([Entry {
            index: Index(1),
            term: Term(1),
            kind: EntryKind::Config,
            data: &buf[..n],
        }])
        .expect("room");
    s.log.set_hard_state(HardState {
        term: Term(1),
        vote: NodeId(0),
        commit: Index(1),
    });
    s
}

/// Old voters {1, 2, 3}, new voters {1, 4, 5}: joint.
fn joint_123_145() -> Membership {
    Membership::with_voters(&IDS3)
        .expect("valid")
        .apply(&[
            ConfChange::AddVoter(NodeId(4)),
            ConfChange::AddVoter(NodeId(5)),
            ConfChange::Remove(NodeId(2)),
            ConfChange::Remove(NodeId(3)),
        ])
        .expect("valid change")
}

const GRANT: Body<'static> = Body::VoteResponse { reject: false };

fn ack(index: u64) -> Body<'static> {
    Body::AppendResponse {
        index: Index(index),
        reject: None,
    }
}

// ----- §4.3 joint consensus -----

#[test]
fn s4_3_joint_configuration_needs_both_majorities_to_elect() {
    let joint = joint_123_145();
    assert!(joint.is_joint());
    let mut node = new_node(1, &IDS5, store_with_config(&joint), |_| {});
    assert_eq!(node.membership(), &joint);
    node.campaign().expect("a voter may campaign");
    let out = process(&mut node);
    let asked: Vec<NodeId> = out.messages.iter().map(|w| w.to).collect();
    assert_eq!(asked, &IDS5[1..], "votes are asked of both halves");
    // A majority of the old voters ({1, 2}) is not enough...
    deliver(&mut node, &msg(2, 1, 2, GRANT)).expect("accepted");
    deliver(&mut node, &msg(3, 1, 2, GRANT)).expect("accepted");
    assert_eq!(
        node.role(),
        Role::Candidate,
        "old majority alone elected it"
    );
    // ... until the new voters give theirs ({1, 4}).
    deliver(&mut node, &msg(4, 1, 2, GRANT)).expect("accepted");
    assert_eq!(node.role(), Role::Leader);
}

#[test]
fn s4_3_joint_configuration_needs_both_majorities_to_commit_and_is_left_by_the_leader() {
    let mut node = new_node(1, &IDS5, store_with_config(&joint_123_145()), |_| {});
    node.campaign().expect("a voter may campaign");
    process(&mut node);
    for from in [2, 4] {
        deliver(&mut node, &msg(from, 1, 2, GRANT)).expect("accepted");
    }
    assert_eq!(node.role(), Role::Leader);
    process(&mut node); // the no-op at 2, persisted
    assert_eq!(node.status().commit, Index(1));
    // The old voters hold it: a majority of {1, 2, 3}, none of {1, 4, 5} but the leader.
    for from in [2, 3] {
        deliver(&mut node, &msg(from, 1, 2, ack(2))).expect("accepted");
    }
    assert_eq!(
        node.status().commit,
        Index(1),
        "committed by the old majority alone"
    );
    deliver(&mut node, &msg(5, 1, 2, ack(2))).expect("accepted");
    assert_eq!(node.status().commit, Index(2), "both majorities hold it");
    // The joint configuration is committed: the leader appends the new one by itself.
    process(&mut node);
    let m = node.membership();
    assert!(!m.is_joint());
    assert_eq!(
        m.voters().collect::<Vec<_>>(),
        [NodeId(1), NodeId(4), NodeId(5)]
    );
    assert_eq!(
        node.log_entry(Index(3)).map(|e| e.kind),
        Some(EntryKind::Config)
    );
    // Once that commits (by the new voters alone), 2 and 3 are gone.
    for from in [4, 5] {
        deliver(&mut node, &msg(from, 1, 2, ack(3))).expect("accepted");
    }
    assert_eq!(node.committed_membership().0, Index(3));
    assert!(!node.committed_membership().1.contains(NodeId(2)));
    assert_eq!(
        deliver(&mut node, &msg(2, 1, 2, ack(3))),
        Err(StepError::UnknownSender(NodeId(2)))
    );
    // A voter change while a change is in flight is refused.
    let mut c = led_by_node_1(|_| {});
    c.node(1).propose(b"x").expect("leader accepts");
    c.settle();
    c.node(1)
        .propose_conf_change(&[ConfChange::AddVoter(NodeId(4))], b"")
        .expect("first change");
    assert_eq!(
        c.node(1)
            .propose_conf_change(&[ConfChange::AddLearner(NodeId(5))], b""),
        Err(ProposeError::ConfChangePending)
    );
}

// ----- §3.10 leadership transfer -----

#[test]
fn s3_10_transfer_sends_timeout_now_and_the_target_wins_despite_leases() {
    let mut c = led_by_node_1(|_| {});
    c.node(1).propose(b"x").expect("leader accepts");
    c.settle();
    c.delivered.clear();
    c.node(1)
        .transfer_leadership(NodeId(2))
        .expect("2 is a voter");
    assert_eq!(c.node(1).status().transferee, Some(NodeId(2)));
    assert_eq!(c.node(1).propose(b"y"), Err(ProposeError::Transferring));
    c.settle();
    assert_eq!(c.node(2).role(), Role::Leader);
    assert_eq!(c.node(1).role(), Role::Follower);
    let bodies: Vec<&'static str> = c.delivered.iter().map(|w| w.msg().body.name()).collect();
    assert!(bodies.contains(&"TimeoutNow"), "{bodies:?}");
    // Node 3 had just heard from leader 1 (its lease holds) and still granted: the request
    // said it was a transfer.
    let to3 = c
        .delivered
        .iter()
        .find(|w| w.to == NodeId(3) && matches!(w.msg().body, Body::Vote { .. }))
        .expect("2 asked 3");
    assert!(matches!(to3.msg().body, Body::Vote { transfer: true, .. }));
    assert_eq!(c.node(3).counters().votes_ignored, 0);
}

#[test]
fn s3_10_transfer_that_cannot_complete_aborts_after_an_election_timeout() {
    let mut c = led_by_node_1(|_| {});
    c.down = vec![NodeId(2)];
    c.node(1)
        .transfer_leadership(NodeId(2))
        .expect("2 is a voter");
    for tick in 0..9 {
        c.tick();
        assert_eq!(
            c.node(1).propose(b"y"),
            Err(ProposeError::Transferring),
            "tick {tick}"
        );
    }
    c.tick();
    let st = c.node(1).status();
    assert_eq!((st.role, st.transferee), (Role::Leader, None));
    assert_eq!(c.node(1).counters().transfers_aborted, 1);
    c.node(1)
        .propose(b"y")
        .expect("proposals again after the abort");
}

// ----- §6.4.1 lease reads -----

#[test]
fn s6_4_1_lease_reads_need_no_round_and_stop_once_timeout_now_was_sent() {
    // With leases, voters refuse votes for their first election timeout: let it pass (just
    // short of any node's own election timer, which is at least that long).
    let mut c = Cluster::new(3, |cfg| cfg.read_lease = true);
    for id in 1..=3 {
        for _ in 0..9 {
            c.node(id).tick();
        }
    }
    c.node(1).campaign().expect("a follower may campaign");
    c.settle();
    assert_ne!(
        c.node(1).role(),
        Role::Leader,
        "elected within the voters' boot lease"
    );
    for id in 1..=3 {
        c.node(id).tick();
    }
    c.settle();
    if c.node(1).role() != Role::Leader {
        c.node(1).campaign().expect("a follower may campaign");
        c.settle();
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    c.tick();
    c.tick();
    // Served at once: in the next Ready, with no message sent for it.
    c.node(1).read_index(7).expect("leader reads");
    let out = process(c.node(1));
    assert_eq!(out.read_states.len(), 1, "{out:?}");
    assert!(
        out.messages.is_empty(),
        "a lease read sent {:?}",
        out.messages
    );
    assert_eq!(c.node(1).counters().lease_reads, 1);
    // A transfer whose TimeoutNow is lost, aborted: the target may still campaign whenever the
    // message turns up, so the lease is void for the rest of the term.
    c.down = vec![NodeId(2)];
    c.node(1)
        .transfer_leadership(NodeId(2))
        .expect("2 is a voter");
    for _ in 0..10 {
        c.tick();
    }
    assert_eq!(c.node(1).status().transferee, None, "aborted");
    assert_eq!(c.node(1).role(), Role::Leader);
    c.node(1).read_index(8).expect("leader reads");
    let out = process(c.node(1));
    assert!(out.read_states.is_empty(), "served from a void lease");
    assert_eq!(c.node(1).counters().lease_reads, 1);
    // ReadIndex still works: a heartbeat round with node 3 confirms it.
    c.settle();
    c.tick();
    assert_eq!(c.node(1).counters().lease_reads, 1);
}

// ----- §5.3 snapshots: chunks checked and in order -----

fn chunk<'a>(members: &'a [u8], offset: u64, data: &'a [u8], crc: u32) -> Message<'a> {
    msg(
        1,
        2,
        1,
        Body::Snapshot {
            index: Index(9),
            term: Term(1),
            len: 8,
            offset,
            membership: members,
            data,
            crc,
        },
    )
}

fn snapshot_answer(out: &Out) -> Option<u64> {
    out.messages.iter().find_map(|w| match w.msg().body {
        Body::SnapshotResponse { next, .. } => Some(next),
        _ => None,
    })
}

#[test]
fn s5_3_snapshot_chunks_damaged_or_out_of_order_are_refused() {
    let mut node = new_node(2, &IDS3, SnapStore::default(), |_| {});
    let mut members = [0u8; Membership::MAX_ENCODED_LEN];
    let m = Membership::with_voters(&IDS3).expect("valid");
    let k = m.encode(&mut members).expect("fits");
    let members = &members[..k];
    let (a, b) = (b"abcd", b"efgh");
    // Damaged on the way: refused, and asked for again from the start.
    deliver(&mut node, &chunk(members, 0, a, crc32c(a) ^ 1)).expect("stepped");
    assert_eq!(node.counters().snapshot_chunks_refused, 1);
    let out = process(&mut node);
    assert!(out.chunk.is_none());
    assert_eq!(snapshot_answer(&out), Some(0));
    // The first chunk: handed to the host.
    deliver(&mut node, &chunk(members, 0, a, crc32c(a))).expect("stepped");
    let out = process(&mut node);
    assert_eq!(out.chunk, Some((0, 4, false)));
    assert_eq!(snapshot_answer(&out), Some(4));
    // A chunk past a gap: refused, the follower says where it is.
    deliver(&mut node, &chunk(members, 6, b"gh", crc32c(b"gh"))).expect("stepped");
    assert_eq!(node.counters().snapshot_chunks_refused, 2);
    let out = process(&mut node);
    assert!(out.chunk.is_none());
    assert_eq!(snapshot_answer(&out), Some(4));
    // The last chunk: installed.
    deliver(&mut node, &chunk(members, 4, b, crc32c(b))).expect("stepped");
    let out = process(&mut node);
    assert_eq!(out.chunk, Some((4, 4, true)));
    assert_eq!(snapshot_answer(&out), Some(8));
    let st = node.status();
    assert_eq!(node.counters().snapshots_installed, 1);
    assert_eq!(
        (st.commit, st.first_index, st.last_index),
        (Index(9), Index(10), Index(9))
    );
    assert_eq!(
        node.storage().snap.as_ref().map(|(_, d)| &d[..]),
        Some(&b"abcdefgh"[..])
    );
    assert_eq!(node.membership(), &m);
}

#[test]
fn s5_3_after_installing_the_follower_replicates_normally_even_with_nothing_new() {
    // Leader 1 snapshots at its last index (its no-op) and compacts; follower 2 has nothing.
    let mut c = Cluster::new(3, |_| {});
    c.down = vec![NodeId(2)];
    c.node(1).campaign().expect("may campaign");
    c.settle();
    assert_eq!(c.node(1).role(), Role::Leader);
    let mut meta = c.node(1).snapshot_point().expect("applied the no-op");
    let data = vec![7u8; 10_000];
    meta.len = data.len() as u64;
    let at = meta.index;
    let s = c.node(1).storage_mut();
    s.snap = Some((meta, data));
    s.log.compact(at).expect("held");
    c.down.clear();
    for _ in 0..5 {
        c.tick();
    }
    assert_eq!(c.node(2).counters().snapshots_installed, 1);
    assert_eq!(c.node(2).status().commit, at);
    let p = c.node(1).progress(NodeId(2)).expect("tracked");
    assert_eq!(p.matched, at);
    assert_eq!(
        p.state,
        ProgressState::Replicate,
        "the probe after the snapshot confirmed the match point"
    );
}

#[test]
fn s6_4_1_with_leases_a_restarted_voter_refuses_votes_for_an_election_timeout() {
    // A voter that answered the leader's round, then restarted, must not help elect another
    // leader while that lease may still hold: it refuses votes until its own clock has run an
    // election timeout.
    let vote = |from: u64, term: u64| {
        msg(
            from,
            2,
            term,
            Body::Vote {
                last_index: Index(10),
                last_term: Term(9),
                transfer: false,
            },
        )
    };
    let granted = |node: &mut TestNode| {
        let out = process(node);
        out.messages
            .iter()
            .any(|w| matches!(w.msg().body, Body::VoteResponse { reject: false }))
    };
    let mut n = new_node(2, &IDS3, SnapStore::default(), |cfg| cfg.read_lease = true);
    deliver(&mut n, &vote(3, 5)).expect("well-formed");
    assert!(!granted(&mut n), "voted within the boot lease");
    assert_eq!(n.term(), Term(0), "the term moved");
    for _ in 0..10 {
        n.tick();
    }
    deliver(&mut n, &vote(3, 5)).expect("well-formed");
    assert!(granted(&mut n), "refused after an election timeout");
    // Without leases nothing waits.
    let mut n = new_node(2, &IDS3, SnapStore::default(), |_| {});
    deliver(&mut n, &vote(3, 5)).expect("well-formed");
    assert!(granted(&mut n));
}

#[test]
fn s5_3_an_append_arriving_before_the_install_is_done_waits_for_it() {
    // The last chunk is in; before the host takes the `Ready` that installs it, an append
    // delayed in the network arrives that would continue the snapshot. It is not taken then
    // (the installing `Ready` carries no entries), and is taken once it comes again.
    let mut node = new_node(2, &IDS3, SnapStore::default(), |_| {});
    let mut members = [0u8; Membership::MAX_ENCODED_LEN];
    let m = Membership::with_voters(&IDS3).expect("valid");
    let k = m.encode(&mut members).expect("fits");
    let members = &members[..k];
    let data = b"abcdefgh";
    deliver(&mut node, &chunk(members, 0, data, crc32c(data))).expect("stepped");
    let entry = [Entry {
        index: Index(0),
        term: Term(1),
        kind: EntryKind::Normal,
        data: b"after",
    }];
    let append = msg(
        1,
        2,
        1,
        Body::Append {
            prev_index: Index(9),
            prev_term: Term(1),
            commit: Index(9),
            entries: raft_core::EntryList::from_slice(&entry),
        },
    );
    deliver(&mut node, &append).expect("stepped");
    let out = process(&mut node);
    assert_eq!(out.chunk, Some((0, 8, true)), "{out:?}");
    assert_eq!(node.status().last_index, Index(9));
    deliver(&mut node, &append).expect("stepped");
    process(&mut node);
    assert_eq!(node.status().last_index, Index(10));
    assert_eq!(
        node.log_entry(Index(10)).map(|e| e.data),
        Some(&b"after"[..])
    );
}

#[test]
fn s5_3_no_election_while_a_received_snapshot_waits_to_be_installed() {
    // Elected in that window, the node would append its no-op into the `Ready` that installs
    // the snapshot; the election waits for the install instead.
    let mut node = new_node(2, &IDS3, SnapStore::default(), |_| {});
    let mut members = [0u8; Membership::MAX_ENCODED_LEN];
    let m = Membership::with_voters(&IDS3).expect("valid");
    let k = m.encode(&mut members).expect("fits");
    let data = b"abcdefgh";
    deliver(&mut node, &chunk(&members[..k], 0, data, crc32c(data))).expect("stepped");
    node.campaign().expect("a follower may campaign");
    for _ in 0..40 {
        node.tick();
    }
    assert_eq!(node.role(), Role::Follower);
    let out = process(&mut node);
    assert_eq!(out.chunk, Some((0, 8, true)));
    // Installed, it campaigns as any follower does.
    node.campaign().expect("a follower may campaign");
    assert_ne!(node.role(), Role::Follower);
}

#[test]
fn a_snapshot_at_the_last_possible_index_is_refused() {
    // The log could not go on after it.
    let mut node = new_node(2, &IDS3, SnapStore::default(), |_| {});
    let mut members = [0u8; Membership::MAX_ENCODED_LEN];
    let k = Membership::with_voters(&IDS3)
        .expect("valid")
        .encode(&mut members)
        .expect("fits");
    let data = b"x";
    let m = msg(
        1,
        2,
        1,
        Body::Snapshot {
            index: Index(u64::MAX),
            term: Term(1),
            len: 1,
            offset: 0,
            membership: &members[..k],
            data,
            crc: crc32c(data),
        },
    );
    let before = node.status();
    assert_eq!(deliver(&mut node, &m), Err(StepError::Malformed));
    assert_eq!(node.status(), before);
}
