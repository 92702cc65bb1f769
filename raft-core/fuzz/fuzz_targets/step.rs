//! A three-node cluster fed fuzzer-chosen inputs: raw bytes and hostile well-formed messages
//! stepped into its nodes, interleaved with ticks, Ready cycles, real traffic (lost, duplicated,
//! replayed, edited), proposals and restarts. The harness (shared with `tests/hostile.rs`)
//! checks every node's safety invariants after each input and panics on a violation.
#![no_main]

#[path = "../../tests/support/hostile_cluster.rs"]
mod cluster;

use cluster::{
    BodySel, Cluster, EntrySel, Hostile, IndexSel, Mutation, Op, PeerSel, TermSel, SCENARIOS,
};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzzer's bytes as choices; past the end every choice is 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn done(&self) -> bool {
        self.0.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        let n = self.0.len().min(8);
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(head);
        u64::from_le_bytes(b)
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.byte() as usize % (max + 1)).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }

    fn which(&mut self) -> usize {
        // Mostly the target node.
        match self.byte() % 4 {
            0 | 1 => 0,
            n => n as usize - 1,
        }
    }

    fn term(&mut self) -> TermSel {
        match self.byte() % 8 {
            0 | 1 => TermSel::Current,
            2 => TermSel::Ahead(self.byte()),
            3 => TermSel::Ahead(1),
            4 => TermSel::Behind(self.byte()),
            5 => TermSel::Zero,
            6 => TermSel::Max,
            _ => TermSel::Raw(self.u64()),
        }
    }

    fn index(&mut self) -> IndexSel {
        match self.byte() % 8 {
            0 | 1 => IndexSel::Last(0),
            2 => IndexSel::Last(self.byte() as i8),
            3 => IndexSel::Commit(0),
            4 => IndexSel::Commit(self.byte() as i8),
            5 => IndexSel::Zero,
            6 => IndexSel::Max,
            _ => IndexSel::Raw(self.u64()),
        }
    }

    fn peer(&mut self, recipient_bias: bool) -> PeerSel {
        match self.byte() % 8 {
            0..=3 if recipient_bias => PeerSel::Recipient,
            0..=4 => PeerSel::Member(self.byte()),
            5 => PeerSel::Recipient,
            6 => PeerSel::Nobody,
            _ => PeerSel::Stranger(self.u64()),
        }
    }

    fn body(&mut self) -> BodySel {
        match self.byte() % 10 {
            0 => BodySel::PreVote {
                last_index: self.index(),
                last_term: self.term(),
            },
            1 => BodySel::PreVoteResponse {
                reject: self.byte() & 1 == 1,
            },
            2 => BodySel::Vote {
                last_index: self.index(),
                last_term: self.term(),
                transfer: self.byte() & 1 == 1,
            },
            3 => BodySel::VoteResponse {
                reject: self.byte() & 1 == 1,
            },
            4 => {
                let prev_index = self.index();
                let prev_term = (self.byte() & 1 == 1).then(|| self.term());
                let commit = self.index();
                let n = self.byte() % 4;
                let entries = (0..n)
                    .map(|_| {
                        let flags = self.byte();
                        EntrySel {
                            term: (flags & 1 == 1).then(|| self.term()),
                            noop: flags & 2 == 2,
                            data: self.bytes(16),
                        }
                    })
                    .collect();
                BodySel::Append {
                    prev_index,
                    prev_term,
                    commit,
                    entries,
                }
            }
            5 => BodySel::AppendResponse {
                index: self.index(),
                reject: (self.byte() & 1 == 1).then(|| (self.index(), self.term())),
            },
            6 => BodySel::Heartbeat {
                commit: self.index(),
                round: u64::from(self.byte() % 4),
            },
            7 => BodySel::HeartbeatResponse {
                round: u64::from(self.byte() % 4),
            },
            8 => BodySel::ReadIndex {
                context: self.u64(),
            },
            _ => BodySel::ReadIndexResponse {
                context: self.u64(),
                index: self.index(),
            },
        }
    }

    fn hostile(&mut self) -> Hostile {
        Hostile {
            from: self.peer(false),
            to: self.peer(true),
            term: self.term(),
            body: self.body(),
            decoded: self.byte() & 1 == 1,
        }
    }

    fn edit(&mut self) -> Mutation {
        let pos = self.byte() as usize;
        let byte = self.byte();
        match self.byte() % 5 {
            0 => Mutation::Flip { pos, bit: byte },
            1 => Mutation::Set { pos, byte },
            2 => Mutation::Insert { pos, byte },
            3 => Mutation::Remove { pos },
            _ => Mutation::Truncate { len: pos },
        }
    }

    fn op(&mut self) -> Op {
        match self.byte() % 16 {
            0 | 1 => Op::Tick(self.which()),
            2 | 3 => Op::Ready(self.which()),
            4 | 5 => Op::Deliver {
                drop: false,
                duplicate: false,
            },
            6 => Op::Deliver {
                drop: self.byte() & 1 == 1,
                duplicate: self.byte() & 1 == 1,
            },
            7 | 8 => Op::Step(0, self.hostile()),
            9 => Op::Bytes(self.which(), self.bytes(64)),
            10 => {
                let pick = self.byte() as usize;
                let edits = (0..1 + self.byte() % 3).map(|_| self.edit()).collect();
                Op::Mutate { pick, edits }
            }
            11 => Op::Replay(self.byte() as usize),
            12 => Op::Propose(self.which(), self.bytes(8)),
            13 => match self.byte() % 3 {
                0 => Op::ReadIndex(self.which(), self.u64()),
                1 => Op::Campaign(self.which()),
                _ => Op::Restart(self.which()),
            },
            14 => Op::ReadyThenStep(self.which(), self.hostile()),
            _ => Op::Step(self.which(), self.hostile()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let setup = input.byte();
    let scenario = SCENARIOS[usize::from(setup % 4)];
    let mut c = Cluster::with_target(scenario, u64::from(setup / 4));
    for _ in 0..256 {
        if input.done() {
            break;
        }
        let op = input.op();
        c.apply(&op);
    }
});
