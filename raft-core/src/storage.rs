//! The storage the host implements (read side), and a fixed-capacity in-memory one.
//!
//! The node reads the persisted log through [`Storage`]; it never writes. The host writes what
//! each [`Ready`](crate::Ready) hands it (hard state, then entries), in whatever durable form it
//! likes, and makes the same state readable here. [`MemStorage`] is that storage for tests,
//! simulations and firmware that keeps its log in RAM (or mirrors flash in RAM).

use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::log::buf::{BufFull, EntryBuf};
use crate::membership::Membership;
use crate::message::Entry;
use crate::types::{Index, NodeId, Term};

/// The part of a node's state that must be durable before it acts on it (Raft Figure 2:
/// `currentTerm`, `votedFor`; plus the commit index, so a restart can re-apply quickly).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// Who this node voted for in `term` ([`NodeId::NONE`] if nobody).
    pub vote: NodeId,
    /// The highest index this node knows to be committed.
    pub commit: Index,
}

/// Read access to the persisted log, implemented by the host.
///
/// The log visible here is `first_index() ..= last_index()`; entries before `first_index()`
/// were compacted, and `term(first_index() - 1)` must still answer (the term of the last
/// compacted entry, or 0 for index 0). The node reads only what the host has persisted through
/// a `Ready`, and never reads an index it has since asked the host to overwrite.
pub trait Storage {
    /// The persisted hard state (all zero for a new node).
    fn hard_state(&self) -> HardState;
    /// The first index still held (1 if nothing was compacted).
    fn first_index(&self) -> Index;
    /// The last index held (`first_index() - 1` if the log is empty).
    fn last_index(&self) -> Index;
    /// The term of the entry at `index`, for `first_index() - 1 ..= last_index()`.
    fn term(&self, index: Index) -> Result<Term, StorageError>;
    /// The entry at `index`, for `first_index() ..= last_index()`. The payload may borrow from
    /// the storage.
    fn entry(&self, index: Index) -> Result<Entry<'_>, StorageError>;

    /// The latest snapshot the host holds, if any: the state machine through
    /// [`SnapshotMeta::index`], which the host may have compacted the log up to. A leader sends
    /// it to followers that need entries it no longer holds. The default: none.
    fn snapshot(&self) -> Option<SnapshotMeta> {
        None
    }

    /// Reads the bytes of the snapshot at `index` from `offset` into `buf`, returning how many
    /// were read (fewer than `buf.len()` only at its end). If the latest snapshot is no longer
    /// the one at `index`, [`StorageError::SnapshotReplaced`]: the leader starts over with the
    /// new one. The default: no snapshots.
    fn read_snapshot(
        &self,
        index: Index,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StorageError> {
        let _ = (index, offset, buf);
        Err(StorageError::Unavailable)
    }
}

/// What describes a snapshot: the point in the log it covers, and the configuration there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    /// The last log index the snapshot includes.
    pub index: Index,
    /// That entry's term.
    pub term: Term,
    /// The configuration in effect at `index`.
    pub membership: Membership,
    /// The snapshot's size in bytes (as sent to a follower: the host's whole snapshot file,
    /// framing included).
    pub len: u64,
}

impl<T: Storage + ?Sized> Storage for &mut T {
    fn hard_state(&self) -> HardState {
        (**self).hard_state()
    }
    fn first_index(&self) -> Index {
        (**self).first_index()
    }
    fn last_index(&self) -> Index {
        (**self).last_index()
    }
    fn term(&self, index: Index) -> Result<Term, StorageError> {
        (**self).term(index)
    }
    fn entry(&self, index: Index) -> Result<Entry<'_>, StorageError> {
        (**self).entry(index)
    }
    fn snapshot(&self) -> Option<SnapshotMeta> {
        (**self).snapshot()
    }
    fn read_snapshot(
        &self,
        index: Index,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StorageError> {
        (**self).read_snapshot(index, offset, buf)
    }
}

/// A fixed-capacity in-memory log: up to `ENTRIES` entries holding up to `BYTES` payload bytes.
///
/// Writes that would exceed a capacity fail with [`StorageError::Full`] and change nothing; the
/// host then compacts ([`MemStorage::compact`]) the applied prefix, or stops advancing the node,
/// which makes proposals fail with `Busy`: backpressure all the way to the client.
#[derive(Clone)]
pub struct MemStorage<const ENTRIES: usize = 1024, const BYTES: usize = { 64 * 1024 }> {
    hard_state: HardState,
    log: EntryBuf<ENTRIES, BYTES>,
    /// Term of `log.first_index() - 1`.
    prefix_term: Term,
}

impl<const E: usize, const B: usize> Default for MemStorage<E, B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const E: usize, const B: usize> MemStorage<E, B> {
    /// An empty log with a zero hard state.
    pub const fn new() -> Self {
        MemStorage {
            hard_state: HardState {
                term: Term(0),
                vote: NodeId(0),
                commit: Index(0),
            },
            log: EntryBuf::new(Index(1)),
            prefix_term: Term(0),
        }
    }

    /// Records the hard state from a `Ready`.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Writes entries from a `Ready`: the first one may overwrite a suffix of the log (a
    /// follower resolving a conflict), the rest follow it. All or nothing: on error the log is
    /// unchanged.
    pub fn append<'e, I>(&mut self, entries: I) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<'e>>,
        I::IntoIter: Clone,
    {
        let mut rest = entries.into_iter();
        let it = rest.clone();
        let Some(first) = rest.next() else {
            return Ok(());
        };
        let next = self.log.last_index().next();
        if first.index > next {
            return Err(StorageError::Gap {
                expected: next,
                got: first.index,
            });
        }
        if first.index < self.log.first_index() {
            // Overwriting compacted entries: they were committed, so this is a host bug.
            return Err(StorageError::Compacted);
        }
        if first.index == next {
            // Nothing is overwritten (the usual case): push, and if the buffer fills, take back
            // what was pushed, which leaves the log as it was.
            for e in core::iter::once(first).chain(rest) {
                if self.log.push(e.term, e.kind, e.data).is_err() {
                    self.log.truncate_from(next);
                    return Err(StorageError::Full);
                }
            }
            return Ok(());
        }
        // Check capacity first so that a failed append changes nothing.
        let (mut n, mut bytes) = (self.log.len(), self.log.bytes());
        for i in first.index.0..=self.log.last_index().0 {
            if let Some(old) = self.log.get(Index(i)) {
                n -= 1;
                bytes -= old.data.len();
            }
        }
        for e in it.clone() {
            n += 1;
            bytes += e.data.len();
        }
        if n > E || bytes > B {
            return Err(StorageError::Full);
        }
        self.log.truncate_from(first.index);
        for e in it {
            match self.log.push(e.term, e.kind, e.data) {
                Ok(()) => {}
                Err(BufFull::Entries | BufFull::Bytes) => {
                    debug_assert!(false, "capacity was checked");
                    return Err(StorageError::Full);
                }
            }
        }
        Ok(())
    }

    /// Discards entries up to and including `index`, which must be applied by the host. Their
    /// space is reused; `term(index)` keeps answering.
    pub fn compact(&mut self, index: Index) -> Result<(), StorageError> {
        if index < self.log.first_index() {
            return Ok(());
        }
        let term = self.log.term(index).ok_or(StorageError::Unavailable)?;
        self.log.pop_through(index);
        self.prefix_term = term;
        Ok(())
    }

    /// Installs a snapshot through `index` (of `term`) received from the leader: every entry
    /// is discarded, and the log continues at `index + 1`. (The snapshot's bytes are the
    /// host's to keep; `MemStorage` holds only the log.)
    pub fn install(&mut self, index: Index, term: Term) {
        self.log.reset(index.next());
        self.prefix_term = term;
        if self.hard_state.commit < index {
            self.hard_state.commit = index;
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.log.len()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.log.bytes()
    }
}

impl<const E: usize, const B: usize> Storage for MemStorage<E, B> {
    fn hard_state(&self) -> HardState {
        self.hard_state
    }
    fn first_index(&self) -> Index {
        self.log.first_index()
    }
    fn last_index(&self) -> Index {
        self.log.last_index()
    }
    fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index == self.log.first_index().prev() {
            return Ok(self.prefix_term);
        }
        if index < self.log.first_index() {
            return Err(StorageError::Compacted);
        }
        self.log.term(index).ok_or(StorageError::Unavailable)
    }
    fn entry(&self, index: Index) -> Result<Entry<'_>, StorageError> {
        if index < self.log.first_index() {
            return Err(StorageError::Compacted);
        }
        self.log.get(index).ok_or(StorageError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::EntryKind;

    fn e(index: u64, term: u64, data: &'static [u8]) -> Entry<'static> {
        Entry {
            index: Index(index),
            term: Term(term),
            kind: EntryKind::Normal,
            data,
        }
    }

    #[test]
    fn append_overwrites_suffix_and_refuses_gaps() {
        let mut s = MemStorage::<8, 64>::new();
        s.append([e(1, 1, b"a"), e(2, 1, b"b"), e(3, 1, b"c")])
            .expect("fits");
        s.append([e(2, 2, b"B")]).expect("fits");
        assert_eq!(s.last_index(), Index(2));
        assert_eq!(s.term(Index(2)), Ok(Term(2)));
        assert_eq!(s.entry(Index(2)).map(|e| e.data), Ok(&b"B"[..]));
        assert_eq!(
            s.append([e(5, 2, b"x")]),
            Err(StorageError::Gap {
                expected: Index(3),
                got: Index(5)
            })
        );
    }

    #[test]
    fn full_append_changes_nothing() {
        let mut s = MemStorage::<2, 64>::new();
        s.append([e(1, 1, b"a")]).expect("fits");
        assert_eq!(
            s.append([e(2, 1, b"b"), e(3, 1, b"c")]),
            Err(StorageError::Full)
        );
        assert_eq!(s.last_index(), Index(1));
    }

    #[test]
    fn compact_keeps_prefix_term() {
        let mut s = MemStorage::<4, 64>::new();
        s.append([e(1, 1, b"a"), e(2, 3, b"b"), e(3, 3, b"c")])
            .expect("fits");
        s.compact(Index(2)).expect("held");
        assert_eq!(s.first_index(), Index(3));
        assert_eq!(s.term(Index(2)), Ok(Term(3)));
        assert_eq!(s.term(Index(1)), Err(StorageError::Compacted));
        assert_eq!(s.entry(Index(2)), Err(StorageError::Compacted));
        s.append([e(4, 3, b"d"), e(5, 4, b"e"), e(6, 4, b"f")])
            .expect("room after compaction");
    }
}
