//! The simulated disk: a growable in-memory log that survives a node's crash, the latest
//! snapshot of the node's state machine, and the buffer a snapshot being received is written
//! into.
//!
//! Crash semantics: entries and hard state are durable once synced (`mark_durable`); a snapshot
//! the host took or installed is durable at once (written to a temporary file, synced, renamed);
//! a snapshot still being received is lost (its temporary file is discarded on restart).

use raft_core::{Entry, EntryKind, HardState, Index, SnapshotMeta, Storage, StorageError, Term};

/// One persisted entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// Its term.
    pub term: Term,
    /// Its kind.
    pub kind: EntryKind,
    /// Its payload.
    pub data: Vec<u8>,
    /// Hash of this entry and every entry before it: two logs agree up to here if and only if
    /// these are equal (up to hash collisions). This is how log matching is checked.
    pub prefix_hash: u64,
}

/// A snapshot on the simulated disk: what it covers, and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimSnapshot {
    /// Index, term and configuration it covers; `len` is `data.len()`.
    pub meta: SnapshotMeta,
    /// The state machine's bytes ([`crate::StateMachine::encode`]).
    pub data: Vec<u8>,
}

/// A snapshot being received from the leader, chunk by chunk.
#[derive(Clone, Debug, Default)]
struct Incoming {
    index: Index,
    term: Term,
    len: u64,
    data: Vec<u8>,
}

/// What a simulated node has on disk. Growable, so long simulations never fill it.
///
/// Invariant: `entries[k]` is the entry at `offset + 1 + k`; the entry at `offset` (the last
/// compacted one, or index 0) is described by `prefix_term` and `prefix_hash`.
#[derive(Clone, Debug)]
pub struct SimStorage {
    hard_state: HardState,
    entries: Vec<StoredEntry>,
    offset: u64,
    prefix_term: Term,
    prefix_hash: u64,
    snapshot: Option<SimSnapshot>,
    incoming: Option<Incoming>,
    /// What a crash keeps: entries written but not yet synced (a leader's, with
    /// `SimConfig::async_leader_persist`) are lost, and so is a hard state written since.
    /// The absolute index of the last durable entry.
    durable_last: u64,
    durable_hard_state: HardState,
}

impl Default for SimStorage {
    fn default() -> Self {
        SimStorage {
            hard_state: HardState::default(),
            entries: Vec::new(),
            offset: 0,
            prefix_term: Term::ZERO,
            prefix_hash: FNV_OFFSET,
            snapshot: None,
            incoming: None,
            durable_last: 0,
            durable_hard_state: HardState::default(),
        }
    }
}

pub(crate) fn mix(h: u64, v: u64) -> u64 {
    // FNV-1a over the 8 bytes of `v`, then a final avalanche.
    let mut h = h;
    for b in v.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

pub(crate) fn hash_bytes(h: u64, data: &[u8]) -> u64 {
    let mut h = mix(h, data.len() as u64);
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

pub(crate) const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;

/// The prefix hash after `prev` extended by one entry: the same chain on every disk and in
/// every state machine, so a state machine's hash through `i` equals the log's prefix hash
/// at `i`.
pub(crate) fn chain(prev: u64, term: Term, kind: EntryKind, data: &[u8]) -> u64 {
    hash_bytes(mix(mix(prev, term.0), kind as u64), data)
}

impl SimStorage {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Appends entries, overwriting from the first one's index. Writing at or below the
    /// compacted point is refused ([`StorageError::Compacted`]): those entries are committed.
    pub fn append<'e>(
        &mut self,
        entries: impl IntoIterator<Item = Entry<'e>>,
    ) -> Result<(), StorageError> {
        for e in entries {
            if e.index.0 <= self.offset {
                return Err(StorageError::Compacted);
            }
            let pos = (e.index.0 - self.offset - 1) as usize;
            if pos > self.entries.len() {
                return Err(StorageError::Gap {
                    expected: self.last_index().next(),
                    got: e.index,
                });
            }
            self.entries.truncate(pos);
            self.durable_last = self.durable_last.min(e.index.0 - 1);
            let prev = self
                .entries
                .last()
                .map_or(self.prefix_hash, |p| p.prefix_hash);
            self.entries.push(StoredEntry {
                term: e.term,
                kind: e.kind,
                data: e.data.to_vec(),
                prefix_hash: chain(prev, e.term, e.kind, e.data),
            });
        }
        Ok(())
    }

    /// Everything written so far is durable (a sync covers every earlier write).
    pub fn mark_durable(&mut self) {
        self.durable_last = self.last_index().0;
        self.durable_hard_state = self.hard_state;
    }

    /// Entries through `index` are durable, if the entry there still has `term` (a stale
    /// report about a replaced entry changes nothing). Compacted entries are in the snapshot,
    /// durable already.
    pub fn mark_durable_through(&mut self, index: Index, term: Term) {
        let n = index.0;
        if n > self.durable_last && self.get(index).is_some_and(|e| e.term == term) {
            self.durable_last = n;
        }
    }

    /// What survives a crash: the durable prefix and hard state, and the snapshot; a snapshot
    /// being received is lost.
    pub fn lose_unsynced(&mut self) {
        let keep = self.durable_last.max(self.offset) - self.offset;
        self.entries.truncate(keep as usize);
        self.hard_state = self.durable_hard_state;
        self.incoming = None;
    }

    /// The persisted entries from [`Storage::first_index`] on.
    pub fn entries(&self) -> &[StoredEntry] {
        &self.entries
    }

    /// How many entries the log holds (compacted ones are not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log holds no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The persisted entry at `index`, if held (not compacted, not beyond the log).
    pub fn get(&self, index: Index) -> Option<&StoredEntry> {
        index
            .0
            .checked_sub(self.offset + 1)
            .and_then(|i| self.entries.get(i as usize))
    }

    /// The prefix hash at `index` (see [`StoredEntry::prefix_hash`]), for the compacted point
    /// and every entry held.
    pub fn prefix_hash(&self, index: Index) -> Option<u64> {
        if index.0 == self.offset {
            return Some(self.prefix_hash);
        }
        self.get(index).map(|e| e.prefix_hash)
    }

    /// The last compacted index (0 if nothing was compacted).
    pub fn compacted(&self) -> Index {
        Index(self.offset)
    }

    /// The latest snapshot, with its bytes.
    pub fn latest_snapshot(&self) -> Option<&SimSnapshot> {
        self.snapshot.as_ref()
    }

    /// Makes `snap` the latest snapshot (durable at once). Its index must be held (or be the
    /// compacted point) with its term.
    pub fn save_snapshot(&mut self, snap: SimSnapshot) -> Result<(), StorageError> {
        if self.term(snap.meta.index)? != snap.meta.term {
            return Err(StorageError::Unavailable);
        }
        self.snapshot = Some(snap);
        Ok(())
    }

    /// Discards entries through `index`, which the latest snapshot must cover. `term(index)`
    /// and the prefix hash there keep answering.
    pub fn compact(&mut self, index: Index) -> Result<(), StorageError> {
        if index.0 <= self.offset {
            return Ok(());
        }
        if self.snapshot.as_ref().is_none_or(|s| s.meta.index < index) {
            return Err(StorageError::Unavailable);
        }
        let e = self.get(index).ok_or(StorageError::Unavailable)?;
        let (term, hash) = (e.term, e.prefix_hash);
        let n = (index.0 - self.offset) as usize;
        self.entries.drain(..n);
        self.offset = index.0;
        self.prefix_term = term;
        self.prefix_hash = hash;
        Ok(())
    }

    /// Writes a chunk of a snapshot being received at `offset` (0 starts over). Chunks come in
    /// order; one that does not continue what was written is refused.
    pub fn write_chunk(
        &mut self,
        index: Index,
        term: Term,
        len: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StorageError> {
        if offset == 0 {
            self.incoming = Some(Incoming {
                index,
                term,
                len,
                data: Vec::new(),
            });
        }
        match self.incoming.as_mut() {
            Some(inc)
                if (inc.index, inc.term, inc.len) == (index, term, len)
                    && inc.data.len() as u64 == offset =>
            {
                inc.data.extend_from_slice(data);
                Ok(())
            }
            _ => Err(StorageError::Unavailable),
        }
    }

    /// The snapshot being received, if any: its index, the bytes written so far, and its
    /// size.
    pub fn receiving(&self) -> Option<(Index, u64, u64)> {
        self.incoming
            .as_ref()
            .map(|i| (i.index, i.data.len() as u64, i.len))
    }

    /// The bytes of the snapshot being received, once complete.
    pub fn received(&self) -> Option<&[u8]> {
        self.incoming
            .as_ref()
            .filter(|i| i.data.len() as u64 == i.len)
            .map(|i| &i.data[..])
    }

    /// Installs the snapshot received: it becomes the latest, the whole log is discarded, and
    /// the log continues at `meta.index + 1`, whose prefix hash is `prefix_hash` (the state
    /// machine's hash in the snapshot). Durable at once.
    pub fn install(&mut self, meta: SnapshotMeta, prefix_hash: u64) -> Result<(), StorageError> {
        let inc = self.incoming.take().ok_or(StorageError::Unavailable)?;
        if (inc.index, inc.term, inc.len) != (meta.index, meta.term, meta.len)
            || inc.data.len() as u64 != inc.len
        {
            return Err(StorageError::Unavailable);
        }
        self.entries.clear();
        self.offset = meta.index.0;
        self.prefix_term = meta.term;
        self.prefix_hash = prefix_hash;
        self.durable_last = meta.index.0;
        self.snapshot = Some(SimSnapshot {
            meta,
            data: inc.data,
        });
        Ok(())
    }
}

impl Storage for SimStorage {
    fn hard_state(&self) -> HardState {
        self.hard_state
    }
    fn first_index(&self) -> Index {
        Index(self.offset + 1)
    }
    fn last_index(&self) -> Index {
        Index(self.offset + self.entries.len() as u64)
    }
    fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index.0 == self.offset {
            return Ok(self.prefix_term);
        }
        if index.0 < self.offset {
            return Err(StorageError::Compacted);
        }
        self.get(index)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }
    fn entry(&self, index: Index) -> Result<Entry<'_>, StorageError> {
        if index.0 <= self.offset {
            return Err(StorageError::Compacted);
        }
        let e = self.get(index).ok_or(StorageError::Unavailable)?;
        Ok(Entry {
            index,
            term: e.term,
            kind: e.kind,
            data: &e.data,
        })
    }
    fn snapshot(&self) -> Option<SnapshotMeta> {
        self.snapshot.as_ref().map(|s| s.meta.clone())
    }
    fn read_snapshot(
        &self,
        index: Index,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StorageError> {
        let s = self.snapshot.as_ref().ok_or(StorageError::Unavailable)?;
        if s.meta.index != index {
            return Err(StorageError::SnapshotReplaced);
        }
        let start = usize::try_from(offset).map_err(|_| StorageError::Unavailable)?;
        let rest = s.data.get(start..).ok_or(StorageError::Unavailable)?;
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::Membership;

    fn e(index: u64, term: u64, data: &'static [u8]) -> Entry<'static> {
        Entry {
            index: Index(index),
            term: Term(term),
            kind: EntryKind::Normal,
            data,
        }
    }

    fn meta(index: u64, term: u64, len: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: Index(index),
            term: Term(term),
            membership: Membership::empty(),
            len,
        }
    }

    #[test]
    fn compaction_keeps_the_prefix_hash_and_term_of_the_compacted_point() {
        let mut s = SimStorage::new();
        s.append([e(1, 1, b"a"), e(2, 1, b"b"), e(3, 2, b"c")])
            .expect("appends");
        let h2 = s.prefix_hash(Index(2));
        assert_eq!(s.compact(Index(2)), Err(StorageError::Unavailable));
        s.save_snapshot(SimSnapshot {
            meta: meta(2, 1, 3),
            data: b"xyz".to_vec(),
        })
        .expect("held");
        s.compact(Index(2)).expect("covered by the snapshot");
        assert_eq!((s.first_index(), s.last_index()), (Index(3), Index(3)));
        assert_eq!(s.term(Index(2)), Ok(Term(1)));
        assert_eq!(s.term(Index(1)), Err(StorageError::Compacted));
        assert_eq!(s.prefix_hash(Index(2)), h2);
        assert_eq!(s.append([e(2, 1, b"b")]), Err(StorageError::Compacted));
        // The chain goes on from the compacted point as it did before.
        let mut t = SimStorage::new();
        t.append([e(1, 1, b"a"), e(2, 1, b"b"), e(3, 2, b"c"), e(4, 2, b"d")])
            .expect("appends");
        s.append([e(4, 2, b"d")]).expect("appends");
        assert_eq!(s.prefix_hash(Index(4)), t.prefix_hash(Index(4)));
        let mut buf = [0u8; 2];
        assert_eq!(s.read_snapshot(Index(2), 1, &mut buf), Ok(2));
        assert_eq!(&buf, b"yz");
        assert_eq!(
            s.read_snapshot(Index(1), 0, &mut buf),
            Err(StorageError::SnapshotReplaced)
        );
    }

    #[test]
    fn crash_keeps_installed_snapshots_and_loses_partial_ones() {
        let mut s = SimStorage::new();
        s.append([e(1, 1, b"a")]).expect("appends");
        s.mark_durable();
        s.write_chunk(Index(9), Term(3), 4, 0, b"ab")
            .expect("first chunk");
        assert!(s.write_chunk(Index(9), Term(3), 4, 3, b"c").is_err());
        s.lose_unsynced();
        assert!(s.received().is_none());
        assert!(s.write_chunk(Index(9), Term(3), 4, 2, b"cd").is_err());
        s.write_chunk(Index(9), Term(3), 4, 0, b"ab")
            .expect("starts over");
        s.write_chunk(Index(9), Term(3), 4, 2, b"cd")
            .expect("continues");
        assert_eq!(s.received(), Some(&b"abcd"[..]));
        s.install(meta(9, 3, 4), 77).expect("complete");
        s.lose_unsynced();
        assert_eq!((s.first_index(), s.last_index()), (Index(10), Index(9)));
        assert_eq!(s.term(Index(9)), Ok(Term(3)));
        assert_eq!(s.prefix_hash(Index(9)), Some(77));
        assert_eq!(s.snapshot().map(|m| m.index), Some(Index(9)));
    }
}
