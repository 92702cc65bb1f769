//! The simulated state machine, and its snapshot bytes.
//!
//! The state is what applying the log produced: the index and term of the last entry applied,
//! and the hash chain of every entry applied (the same chain as the disks' prefix hashes, so a
//! state machine at `i` has the hash the log has at `i`). A snapshot holds exactly that, padded
//! with bytes derived from the state to [`SimConfig::snapshot_bytes`](crate::SimConfig) so that
//! sending it takes several chunks; restoring checks every byte, so a chunk written at the wrong
//! offset or lost on the way is caught.

use raft_core::{EntryKind, Index, Term};

use crate::rng::SimRng;
use crate::storage::{chain, FNV_OFFSET};

const MAGIC: &[u8; 4] = b"TRSM";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 4 * 8;

/// A node's state machine: every committed entry applied, folded into a hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateMachine {
    /// The last index applied (0: nothing yet).
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// The hash chain of entries `1 ..= index` (kind, term and payload of each).
    pub hash: u64,
}

impl Default for StateMachine {
    fn default() -> Self {
        StateMachine {
            index: Index::ZERO,
            term: Term::ZERO,
            hash: FNV_OFFSET,
        }
    }
}

impl StateMachine {
    /// Applies the entry at `index`, which must be the next one.
    pub(crate) fn apply(&mut self, index: Index, term: Term, kind: EntryKind, data: &[u8]) {
        debug_assert_eq!(index, self.index.next());
        self.index = index;
        self.term = term;
        self.hash = chain(self.hash, term, kind, data);
    }

    /// The snapshot bytes: a header with the total length and the state, then filler derived from it, `size` bytes
    /// in all (or just the header if `size` is smaller).
    pub fn encode(&self, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size.max(HEADER));
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(size.max(HEADER) as u64).to_le_bytes());
        out.extend_from_slice(&self.index.0.to_le_bytes());
        out.extend_from_slice(&self.term.0.to_le_bytes());
        out.extend_from_slice(&self.hash.to_le_bytes());
        let mut rng = SimRng::new(self.hash ^ self.index.0);
        while out.len() < size {
            let need = (size - out.len()).min(8);
            out.extend_from_slice(&rng.next_u64().to_le_bytes()[..need]);
        }
        out
    }

    /// Reads snapshot bytes back, checking every byte against what [`StateMachine::encode`]
    /// writes for the state they name.
    pub fn decode(bytes: &[u8]) -> Result<StateMachine, String> {
        if bytes.len() < HEADER || &bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err(format!("not a snapshot ({} bytes)", bytes.len()));
        }
        let word = |k: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[5 + 8 * k..13 + 8 * k]);
            u64::from_le_bytes(b)
        };
        let sm = StateMachine {
            index: Index(word(1)),
            term: Term(word(2)),
            hash: word(3),
        };
        if word(0) != bytes.len() as u64 || sm.encode(bytes.len()) != bytes {
            return Err(format!(
                "snapshot of {} bytes at index {} is damaged or misassembled",
                bytes.len(),
                sm.index
            ));
        }
        Ok(sm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_bytes_roundtrip_and_catch_damage() {
        let mut sm = StateMachine::default();
        sm.apply(Index(1), Term(1), EntryKind::Noop, b"");
        sm.apply(Index(2), Term(1), EntryKind::Normal, b"x");
        let bytes = sm.encode(1000);
        assert_eq!(bytes.len(), 1000);
        assert_eq!(StateMachine::decode(&bytes), Ok(sm));
        for pos in [0, 7, 40, 999] {
            let mut bad = bytes.clone();
            bad[pos] ^= 1;
            assert!(StateMachine::decode(&bad).is_err(), "flip at {pos}");
        }
        assert!(StateMachine::decode(&bytes[..500]).is_err());
        assert_eq!(StateMachine::decode(&sm.encode(0)), Ok(sm));
    }
}
