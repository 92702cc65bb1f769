//! Hostile input can never panic or corrupt a node.
//!
//! - `Message::decode` over arbitrary bytes and over edited valid encodings: never panics, and
//!   whatever decodes re-encodes to bytes that decode to an equal message.
//! - Well-formed messages with hostile contents (wrong terms, strangers, self as sender,
//!   indices far ahead, stale and impossible responses, entries of any term, snapshot chunks
//!   damaged, out of order or complete, transfer votes and `TimeoutNow`), and arbitrary
//!   bytes, stepped into a follower, a pre-candidate, a candidate and the leader of a live
//!   three-node cluster, interleaved with ticks, Ready cycles, real traffic (lost, duplicated,
//!   replayed, edited) and restarts: the checks of `support/hostile_cluster.rs` hold after
//!   every input.
//!
//! The default case counts keep this to a few seconds in a debug build; for a soak, raise them:
//! `PROPTEST_CASES=20000 cargo test -p raft-core --release --test hostile`.
//! libFuzzer targets for the same properties live in `raft-core/fuzz/`.

#[path = "support/hostile_cluster.rs"]
mod cluster;

use cluster::{
    encode, mutate, BodySel, Cluster, EntrySel, Hostile, IndexSel, MembersSel, Mutation, Op,
    PeerSel, Scenario, TermSel, SCENARIOS,
};
use proptest::collection::vec;
use proptest::prelude::*;
use raft_core::{
    Body, DecodeError, Entry, EntryKind, EntryList, Index, Message, NodeId, RejectHint, Storage,
    Term,
};

/// `cases` unless `PROPTEST_CASES` says otherwise, from a fixed seed unless `PROPTEST_RNG_SEED`
/// names another, so that CI runs the same cases every time and a soak can explore new ones.
/// Failures print their shrunk input and become named regression tests in this file, so nothing
/// is written next to it.
fn cases(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(0x7ac5_2af7);
    }
    c
}

// ----- the codec -----

/// A message that owns its payloads, so a strategy can produce it.
#[derive(Clone, Debug)]
struct OwnedMsg {
    from: u64,
    to: u64,
    term: u64,
    body: OwnedBody,
}

#[derive(Clone, Debug)]
enum OwnedBody {
    PreVote(u64, u64),
    PreVoteResponse(bool),
    Vote(u64, u64, bool),
    VoteResponse(bool),
    Append {
        prev_index: u64,
        prev_term: u64,
        commit: u64,
        entries: Vec<(u64, bool, Vec<u8>)>,
    },
    AppendResponse(u64, Option<(u64, u64)>),
    Heartbeat(u64, u64),
    HeartbeatResponse(u64),
    ReadIndex(u64),
    ReadIndexResponse(u64, u64),
    /// index and term (made at least 1), offset, extra bytes past the chunk's end, voter ids,
    /// data, crc.
    Snapshot(u64, u64, u64, u64, Vec<u64>, Vec<u8>, u32),
    SnapshotResponse(u64, u64),
    TimeoutNow,
}

impl OwnedMsg {
    fn encode(&self) -> Vec<u8> {
        let entries: Vec<Entry<'_>> = match &self.body {
            OwnedBody::Append { entries, .. } => entries
                .iter()
                .map(|(term, noop, data)| Entry {
                    index: Index(0),
                    term: Term(*term),
                    kind: if *noop {
                        EntryKind::Noop
                    } else {
                        EntryKind::Normal
                    },
                    data,
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut members = [0u8; raft_core::Membership::MAX_ENCODED_LEN];
        let members_len = match &self.body {
            OwnedBody::Snapshot(_, _, _, _, ids, ..) => {
                let ids: Vec<NodeId> = ids.iter().map(|&i| NodeId(i)).collect();
                raft_core::Membership::with_voters(&ids)
                    .expect("distinct non-zero ids")
                    .encode(&mut members)
                    .expect("fits")
            }
            _ => 0,
        };
        let body = match self.body {
            OwnedBody::PreVote(i, t) => Body::PreVote {
                last_index: Index(i),
                last_term: Term(t),
            },
            OwnedBody::PreVoteResponse(reject) => Body::PreVoteResponse { reject },
            OwnedBody::Vote(i, t, transfer) => Body::Vote {
                last_index: Index(i),
                last_term: Term(t),
                transfer,
            },
            OwnedBody::VoteResponse(reject) => Body::VoteResponse { reject },
            OwnedBody::Append {
                prev_index,
                prev_term,
                commit,
                ..
            } => Body::Append {
                prev_index: Index(prev_index),
                prev_term: Term(prev_term),
                commit: Index(commit),
                entries: EntryList::from_slice(&entries),
            },
            OwnedBody::AppendResponse(index, reject) => Body::AppendResponse {
                index: Index(index),
                reject: reject.map(|(i, t)| RejectHint {
                    index: Index(i),
                    term: Term(t),
                }),
            },
            OwnedBody::Heartbeat(commit, round) => Body::Heartbeat {
                commit: Index(commit),
                round,
            },
            OwnedBody::HeartbeatResponse(round) => Body::HeartbeatResponse { round },
            OwnedBody::ReadIndex(context) => Body::ReadIndex { context },
            OwnedBody::ReadIndexResponse(context, index) => Body::ReadIndexResponse {
                context,
                index: Index(index),
            },
            OwnedBody::Snapshot(index, term, offset, extra, _, ref data, crc) => {
                let offset = offset.min(u64::MAX - data.len() as u64 - 1);
                Body::Snapshot {
                    index: Index(index.max(1)),
                    term: Term(term.max(1)),
                    len: (offset + data.len() as u64).saturating_add(extra),
                    offset,
                    membership: &members[..members_len],
                    data,
                    crc,
                }
            }
            OwnedBody::SnapshotResponse(index, next) => Body::SnapshotResponse {
                index: Index(index),
                next,
            },
            OwnedBody::TimeoutNow => Body::TimeoutNow,
        };
        let m = Message {
            from: NodeId(self.from),
            to: NodeId(self.to),
            term: Term(self.term),
            body,
        };
        let bytes = encode(&m);
        // Every valid message survives its own encoding.
        let d = Message::decode(&bytes).expect("an encoded message decodes");
        assert_eq!(d, m);
        assert_same(&d, &m);
        bytes
    }
}

/// Numbers with their edges well represented.
fn num() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        3 => 0..20u64,
        1 => 127..130u64,
        3 => any::<u64>(),
    ]
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..12),
        1 => vec(any::<u8>(), 120..140),
    ]
}

fn owned_body() -> impl Strategy<Value = OwnedBody> {
    prop_oneof![
        1 => (num(), num()).prop_map(|(i, t)| OwnedBody::PreVote(i, t)),
        1 => any::<bool>().prop_map(OwnedBody::PreVoteResponse),
        1 => (num(), num(), any::<bool>()).prop_map(|(i, t, x)| OwnedBody::Vote(i, t, x)),
        1 => any::<bool>().prop_map(OwnedBody::VoteResponse),
        3 => (num(), num(), num(), vec((num(), any::<bool>(), payload()), 0..5)).prop_map(
            |(prev_index, prev_term, commit, entries)| OwnedBody::Append {
                prev_index,
                prev_term,
                commit,
                entries,
            }
        ),
        1 => (num(), proptest::option::of((num(), num())))
            .prop_map(|(i, r)| OwnedBody::AppendResponse(i, r)),
        1 => (num(), num()).prop_map(|(c, r)| OwnedBody::Heartbeat(c, r)),
        1 => num().prop_map(OwnedBody::HeartbeatResponse),
        1 => num().prop_map(OwnedBody::ReadIndex),
        1 => (num(), num()).prop_map(|(c, i)| OwnedBody::ReadIndexResponse(c, i)),
        2 => (
            (num(), num(), num(), num()),
            proptest::sample::subsequence((1..20u64).collect::<Vec<_>>(), 0..5),
            payload(),
            any::<u32>(),
        )
            .prop_map(|((i, t, o, x), ids, data, crc)| OwnedBody::Snapshot(i, t, o, x, ids, data, crc)),
        1 => (num(), num()).prop_map(|(i, n)| OwnedBody::SnapshotResponse(i, n)),
        1 => Just(OwnedBody::TimeoutNow),
    ]
}

fn owned_msg() -> impl Strategy<Value = OwnedMsg> {
    (num(), num(), num(), owned_body()).prop_map(|(from, to, term, body)| OwnedMsg {
        from,
        to,
        term,
        body,
    })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(pos, bit)| Mutation::Flip { pos, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(pos, byte)| Mutation::Set { pos, byte }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(pos, byte)| Mutation::Insert { pos, byte }),
        1 => any::<usize>().prop_map(|pos| Mutation::Remove { pos }),
        1 => any::<usize>().prop_map(|len| Mutation::Truncate { len }),
    ]
}

/// Raw bytes, half of them past the version check.
fn raw_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..48),
        vec(any::<u8>(), 0..48).prop_map(|mut v| {
            v.insert(0, raft_core::message::WIRE_VERSION);
            v
        }),
    ]
}

/// Field by field, and entry by entry through the iterators, so that a wrong `PartialEq` cannot
/// hide a difference.
fn assert_same(a: &Message<'_>, b: &Message<'_>) {
    assert_eq!((a.from, a.to, a.term), (b.from, b.to, b.term));
    assert_eq!(a.body.name(), b.body.name());
    let ea: Vec<Entry<'_>> = a.entries().iter().collect();
    let eb: Vec<Entry<'_>> = b.entries().iter().collect();
    assert_eq!(ea, eb);
    assert_eq!(a.entries().len(), ea.len());
}

/// Whatever decodes re-encodes to bytes that decode to an equal message, and re-encoding that
/// gives the same bytes again.
fn assert_roundtrip(m: &Message<'_>) {
    let bytes = encode(m);
    let d = Message::decode(&bytes).expect("a re-encoded message decodes");
    assert_eq!(&d, m);
    assert_same(&d, m);
    assert_eq!(encode(&d), bytes, "encoding is not a fixpoint");
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in raw_bytes()) {
        if let Ok(m) = Message::decode(&bytes) {
            assert_roundtrip(&m);
        }
    }

    #[test]
    fn decode_never_panics_on_edited_messages(
        msg in owned_msg(),
        edits in vec(mutation(), 1..4),
    ) {
        let mut bytes = msg.encode();
        for m in edits {
            mutate(&mut bytes, m);
        }
        if let Ok(m) = Message::decode(&bytes) {
            assert_roundtrip(&m);
        }
    }

    #[test]
    fn every_prefix_of_a_message_is_refused(msg in owned_msg()) {
        let bytes = msg.encode();
        for cut in 0..bytes.len() {
            prop_assert!(Message::decode(&bytes[..cut]).is_err(), "prefix {}", cut);
        }
    }
}

/// postcard accepts over-long varints (`0x80 0x00` for 0); a decoded message holding one in an
/// entry must still equal its canonical re-encoding. Found by `decode_never_panics_on_edited_messages`.
#[test]
fn non_canonical_entry_encoding_equals_its_reencoding() {
    // Version, from 1, to 2, term 3, Append (variant 4) prev 0/0, commit 0, one entry:
    // term 1 as `0x81 0x00`, Normal, one byte of data.
    let bytes = [1, 1, 2, 3, 4, 0, 0, 0, 1, 0x81, 0x00, 0, 1, 7];
    let m = Message::decode(&bytes).expect("postcard reads over-long varints");
    let e: Vec<Entry<'_>> = m.entries().iter().collect();
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].index, e[0].term, e[0].data),
        (Index(1), Term(1), &[7u8][..])
    );
    assert_roundtrip(&m);
    // And equality is about the entries, not how they are held.
    let built = [Entry {
        index: Index(1),
        term: Term(1),
        kind: EntryKind::Normal,
        data: &[7],
    }];
    let other = Message {
        body: Body::Append {
            prev_index: Index(0),
            prev_term: Term(0),
            commit: Index(0),
            entries: EntryList::from_slice(&built),
        },
        ..m
    };
    assert_eq!(m, other);
    let differ = [Entry {
        data: &[8],
        ..built[0]
    }];
    let other = Message {
        body: Body::Append {
            prev_index: Index(0),
            prev_term: Term(0),
            commit: Index(0),
            entries: EntryList::from_slice(&differ),
        },
        ..m
    };
    assert_ne!(m, other);
}

#[test]
fn decode_refuses_the_obvious() {
    assert_eq!(Message::decode(&[]), Err(DecodeError::Empty));
    assert_eq!(
        Message::decode(&[0]),
        Err(DecodeError::UnsupportedVersion(0))
    );
    assert_eq!(Message::decode(&[1]), Err(DecodeError::Malformed));
    // An append claiming u32::MAX entries with none behind it.
    assert_eq!(
        Message::decode(&[1, 1, 2, 3, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        Err(DecodeError::Malformed)
    );
}

// ----- nodes -----

fn term_sel() -> impl Strategy<Value = TermSel> {
    prop_oneof![
        5 => Just(TermSel::Current),
        3 => (1..3u8).prop_map(TermSel::Ahead),
        2 => (1..3u8).prop_map(TermSel::Behind),
        1 => Just(TermSel::Zero),
        1 => Just(TermSel::Max),
        1 => any::<u64>().prop_map(TermSel::Raw),
    ]
}

fn index_sel() -> impl Strategy<Value = IndexSel> {
    prop_oneof![
        // The recipient's last and commit index exactly: appends that match, acks that count.
        3 => Just(IndexSel::Last(0)),
        2 => Just(IndexSel::Commit(0)),
        4 => (-3..=3i8).prop_map(IndexSel::Last),
        3 => (-3..=3i8).prop_map(IndexSel::Commit),
        1 => (50..=127i8).prop_map(IndexSel::Last),
        1 => Just(IndexSel::Zero),
        1 => Just(IndexSel::Max),
        1 => any::<u64>().prop_map(IndexSel::Raw),
    ]
}

fn sender() -> impl Strategy<Value = PeerSel> {
    prop_oneof![
        12 => any::<u8>().prop_map(PeerSel::Member),
        1 => Just(PeerSel::Recipient),
        1 => Just(PeerSel::Nobody),
        1 => num().prop_map(PeerSel::Stranger),
    ]
}

fn recipient() -> impl Strategy<Value = PeerSel> {
    prop_oneof![
        14 => Just(PeerSel::Recipient),
        1 => any::<u8>().prop_map(PeerSel::Member),
        1 => Just(PeerSel::Nobody),
        1 => num().prop_map(PeerSel::Stranger),
    ]
}

fn entry_sel() -> impl Strategy<Value = EntrySel> {
    (
        prop_oneof![3 => Just(None), 1 => term_sel().prop_map(Some)],
        proptest::bool::weighted(0.1),
        prop_oneof![
            20 => vec(any::<u8>(), 0..8),
            // Beyond `max_entry_bytes`, and beyond the unstable log.
            1 => vec(any::<u8>(), 4000..20000),
        ],
    )
        .prop_map(|(term, noop, data)| EntrySel { term, noop, data })
}

fn body_sel() -> impl Strategy<Value = BodySel> {
    let round = || prop_oneof![3 => 0..4u64, 1 => any::<u64>()];
    prop_oneof![
        2 => (index_sel(), term_sel())
            .prop_map(|(last_index, last_term)| BodySel::PreVote { last_index, last_term }),
        2 => any::<bool>().prop_map(|reject| BodySel::PreVoteResponse { reject }),
        2 => (index_sel(), term_sel(), proptest::bool::weighted(0.3))
            .prop_map(|(last_index, last_term, transfer)| BodySel::Vote {
                last_index,
                last_term,
                transfer,
            }),
        2 => any::<bool>().prop_map(|reject| BodySel::VoteResponse { reject }),
        6 => (
            index_sel(),
            prop_oneof![2 => Just(None), 1 => term_sel().prop_map(Some)],
            index_sel(),
            vec(entry_sel(), 0..4),
        )
            .prop_map(|(prev_index, prev_term, commit, entries)| BodySel::Append {
                prev_index,
                prev_term,
                commit,
                entries,
            }),
        4 => (index_sel(), proptest::option::of((index_sel(), term_sel())))
            .prop_map(|(index, reject)| BodySel::AppendResponse { index, reject }),
        2 => (index_sel(), round())
            .prop_map(|(commit, round)| BodySel::Heartbeat { commit, round }),
        2 => round().prop_map(|round| BodySel::HeartbeatResponse { round }),
        1 => any::<u64>().prop_map(|context| BodySel::ReadIndex { context }),
        1 => (any::<u64>(), index_sel())
            .prop_map(|(context, index)| BodySel::ReadIndexResponse { context, index }),
        3 => snapshot_sel(),
        1 => (index_sel(), prop_oneof![2 => 0..64u64, 1 => any::<u64>()])
            .prop_map(|(index, next)| BodySel::SnapshotResponse { index, next }),
        1 => Just(BodySel::TimeoutNow),
    ]
}

/// Snapshot chunks: mostly small ones that start at 0 or continue at small offsets, so that a
/// few in a row complete a snapshot and it gets installed; sometimes anything at all.
fn snapshot_sel() -> impl Strategy<Value = BodySel> {
    (
        (index_sel(), term_sel()),
        prop_oneof![3 => Just(0u64), 2 => 1..16u64, 1 => any::<u64>()],
        prop_oneof![2 => Just(0u64), 2 => 1..16u64, 1 => any::<u64>()],
        any::<u8>().prop_map(MembersSel),
        vec(any::<u8>(), 0..16),
        proptest::bool::weighted(0.85),
    )
        .prop_map(|((index, term), offset, extra, members, data, good_crc)| {
            BodySel::Snapshot {
                index,
                term,
                offset,
                extra,
                members,
                data,
                good_crc,
            }
        })
}

fn hostile() -> impl Strategy<Value = Hostile> {
    (sender(), recipient(), term_sel(), body_sel(), any::<bool>()).prop_map(
        |(from, to, term, body, decoded)| Hostile {
            from,
            to,
            term,
            body,
            decoded,
        },
    )
}

/// Which node an op acts on, counted from the target: mostly the target itself.
fn which() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 1 => 1..3usize]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => which().prop_map(Op::Tick),
        4 => which().prop_map(Op::Ready),
        1 => (which(), hostile()).prop_map(|(n, h)| Op::ReadyThenStep(n, h)),
        5 => (proptest::bool::weighted(0.1), proptest::bool::weighted(0.1))
            .prop_map(|(drop, duplicate)| Op::Deliver { drop, duplicate }),
        8 => (Just(0usize), hostile()).prop_map(|(n, h)| Op::Step(n, h)),
        1 => (which(), hostile()).prop_map(|(n, h)| Op::Step(n, h)),
        1 => (which(), raw_bytes()).prop_map(|(n, b)| Op::Bytes(n, b)),
        2 => (any::<usize>(), vec(mutation(), 1..3))
            .prop_map(|(pick, edits)| Op::Mutate { pick, edits }),
        2 => any::<usize>().prop_map(Op::Replay),
        3 => (which(), vec(any::<u8>(), 0..8)).prop_map(|(n, d)| Op::Propose(n, d)),
        1 => (which(), any::<u64>()).prop_map(|(n, c)| Op::ReadIndex(n, c)),
        1 => which().prop_map(Op::Campaign),
        1 => which().prop_map(Op::Restart),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    proptest::sample::select(&SCENARIOS[..])
}

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn hostile_messages_never_break_a_node(
        scenario in scenario(),
        seed in 0..64u64,
        ops in vec(op(), 1..120),
    ) {
        let mut c = Cluster::with_target(scenario, seed);
        for op in &ops {
            c.apply(op);
        }
    }

    #[test]
    fn arbitrary_bytes_never_break_a_node(
        scenario in scenario(),
        seed in 0..64u64,
        ops in vec(
            prop_oneof![
                4 => (which(), raw_bytes()).prop_map(|(n, b)| Op::Bytes(n, b)),
                3 => (any::<usize>(), vec(mutation(), 1..4))
                    .prop_map(|(pick, edits)| Op::Mutate { pick, edits }),
                2 => which().prop_map(Op::Tick),
                2 => which().prop_map(Op::Ready),
                2 => Just(Op::Deliver { drop: false, duplicate: false }),
            ],
            1..80,
        ),
    ) {
        let mut c = Cluster::with_target(scenario, seed);
        for op in &ops {
            c.apply(op);
        }
    }
}

/// Each scenario puts its target in the role it names, so that the properties above really
/// cover every role.
#[test]
fn scenarios_reach_their_roles() {
    use raft_core::Role;
    let want = [
        (Scenario::Follower, Role::Follower),
        (Scenario::PreCandidate, Role::PreCandidate),
        (Scenario::Candidate, Role::Candidate),
        (Scenario::Leader, Role::Leader),
    ];
    for seed in 0..8 {
        for (s, role) in want {
            let mut c = Cluster::with_target(s, seed);
            assert_eq!(c.target_status().role, role, "{s:?} seed {seed}");
            assert!(c.target_status().commit >= Index(3), "{s:?} seed {seed}");
        }
    }
}

/// Found by `hostile_messages_never_break_a_node`: one message with the largest term, then an
/// election. Campaigning computed `term + 1`, which panicked in a debug build and wrapped the
/// term to 0 in a release build (after which the node could vote twice in a term).
#[test]
fn largest_term_cannot_wrap_on_campaign() {
    use raft_core::{CampaignError, Role};
    let mut c = Cluster::with_target(Scenario::Follower, 0);
    let from = cluster::IDS
        .iter()
        .copied()
        .find(|&id| id != c.target_status().id);
    let poison = Message {
        from: from.expect("three members"),
        to: c.target_status().id,
        term: Term(u64::MAX),
        body: Body::VoteResponse { reject: false },
    };
    c.apply(&Op::Bytes(0, encode(&poison)));
    assert_eq!(c.target_status().term, Term(u64::MAX));
    let campaigns = c.target_counters().campaigns;
    let target = c.target_index();
    assert_eq!(c.node(target).campaign(), Err(CampaignError::TermExhausted));
    // The election timer fires many times over; the node stays a follower in the last term.
    for _ in 0..100 {
        c.apply(&Op::Tick(0));
        c.apply(&Op::Ready(0));
    }
    let st = c.target_status();
    assert_eq!((st.term, st.role), (Term(u64::MAX), Role::Follower));
    assert_eq!(c.target_counters().campaigns, campaigns);
}

/// A leader that equivocates within a term, between a `ready()` and its `advance()`: the Ready
/// handed out entry 5 of term t+2; before `advance`, an append of the same term rewrites entry
/// 4 and a new entry 5 of that same term. The host persisted the old entries; the node must not
/// take the new ones for persisted just because the last (index, term) is the same.
#[test]
fn overwrite_between_ready_and_advance_is_not_taken_for_persisted() {
    let mut c = Cluster::with_target(Scenario::Follower, 0);
    let leader = PeerSel::Member(u8::try_from((c.target_index() + 1) % 3).expect("small"));
    let append = |term, prev_index, commit, data: &[&[u8]]| Hostile {
        from: leader,
        to: PeerSel::Recipient,
        term,
        body: BodySel::Append {
            prev_index,
            prev_term: None,
            commit,
            entries: data
                .iter()
                .map(|d| EntrySel {
                    term: None,
                    noop: false,
                    data: d.to_vec(),
                })
                .collect(),
        },
        decoded: false,
    };
    let st = c.target_status();
    assert_eq!((st.last_index, st.commit), (Index(3), Index(3)));
    // 4 in term t+1, persisted.
    c.apply(&Op::Step(
        0,
        append(
            TermSel::Ahead(1),
            IndexSel::Last(0),
            IndexSel::Commit(0),
            &[b"a"],
        ),
    ));
    c.apply(&Op::Ready(0));
    // 5 in term t+2, handed out; then, before `advance`, 4 and 5 again in term t+2, committed.
    c.apply(&Op::Step(
        0,
        append(
            TermSel::Ahead(1),
            IndexSel::Last(0),
            IndexSel::Commit(0),
            &[b"b"],
        ),
    ));
    let rewrite = append(
        TermSel::Current,
        IndexSel::Commit(0),
        IndexSel::Last(0),
        &[b"x", b"y"],
    );
    c.apply(&Op::ReadyThenStep(0, rewrite));
    // The harness checks that committed entries 4 and 5 stay (t+2, "x") and (t+2, "y"), in
    // the node's log and in what the next Readys hand out.
    let st = c.target_status();
    assert_eq!((st.last_index, st.commit), (Index(5), Index(5)));
    for _ in 0..3 {
        c.apply(&Op::Ready(0));
    }
    let target = c.target_index();
    let node = c.node(target);
    assert_eq!(node.log_entry(Index(4)).map(|e| e.data), Some(&b"x"[..]));
    assert_eq!(
        node.storage().entry(Index(4)).map(|e| e.data),
        Ok(&b"x"[..])
    );
    assert_eq!(
        node.storage().entry(Index(5)).map(|e| e.data),
        Ok(&b"y"[..])
    );
}

/// Found by `hostile_messages_never_break_a_node`: a snapshot chunk from a later term whose
/// own term is beyond the sender's was refused only after the node had adopted the sender's
/// term and leader, so an error changed the node. It is now refused before, like a malformed
/// append.
#[test]
fn refused_snapshot_chunk_from_a_later_term_changes_nothing() {
    let mut c = Cluster::with_target(Scenario::Follower, 0);
    let other = u8::try_from((c.target_index() + 1) % 3).expect("small");
    let before = c.target_status();
    c.apply(&Op::Step(
        0,
        Hostile {
            from: PeerSel::Member(other),
            to: PeerSel::Recipient,
            term: TermSel::Ahead(1),
            body: BodySel::Snapshot {
                index: IndexSel::Last(0),
                term: TermSel::Max,
                offset: 0,
                extra: 0,
                members: MembersSel(7),
                data: b"x".to_vec(),
                good_crc: true,
            },
            decoded: false,
        },
    ));
    assert_eq!(c.target_status(), before);
    assert_eq!(c.target_counters().malformed, 1);
}
