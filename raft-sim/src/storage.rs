//! The simulated disk: a growable in-memory log that survives a node's crash.

use raft_core::{Entry, EntryKind, HardState, Index, Storage, StorageError, Term};

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

/// What a simulated node has on disk. Growable, so long simulations never fill it.
#[derive(Clone, Debug, Default)]
pub struct SimStorage {
    hard_state: HardState,
    entries: Vec<StoredEntry>,
    /// What a crash keeps: entries written but not yet synced (a leader's, with
    /// `SimConfig::async_leader_persist`) are lost, and so is a hard state written since.
    durable_len: usize,
    durable_hard_state: HardState,
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

impl SimStorage {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Appends entries, overwriting from the first one's index. Returns the new entries with
    /// their prefix hashes, for the invariant checker.
    pub fn append<'e>(
        &mut self,
        entries: impl IntoIterator<Item = Entry<'e>>,
    ) -> Result<(), StorageError> {
        for e in entries {
            let pos = e.index.0 as usize - 1;
            if pos > self.entries.len() {
                return Err(StorageError::Gap {
                    expected: Index(self.entries.len() as u64 + 1),
                    got: e.index,
                });
            }
            self.entries.truncate(pos);
            self.durable_len = self.durable_len.min(pos);
            let prev = self.entries.last().map_or(FNV_OFFSET, |p| p.prefix_hash);
            let h = hash_bytes(mix(mix(prev, e.term.0), e.kind as u64), e.data);
            self.entries.push(StoredEntry {
                term: e.term,
                kind: e.kind,
                data: e.data.to_vec(),
                prefix_hash: h,
            });
        }
        Ok(())
    }

    /// Everything written so far is durable (a sync covers every earlier write).
    pub fn mark_durable(&mut self) {
        self.durable_len = self.entries.len();
        self.durable_hard_state = self.hard_state;
    }

    /// Entries through `index` are durable, if the entry there still has `term` (a stale
    /// report about a replaced entry changes nothing).
    pub fn mark_durable_through(&mut self, index: Index, term: Term) {
        let n = index.0 as usize;
        if n > self.durable_len && self.get(index).is_some_and(|e| e.term == term) {
            self.durable_len = n;
        }
    }

    /// What survives a crash: the durable prefix and hard state.
    pub fn lose_unsynced(&mut self) {
        self.entries.truncate(self.durable_len);
        self.hard_state = self.durable_hard_state;
    }

    /// The persisted entries, index 1 first.
    pub fn entries(&self) -> &[StoredEntry] {
        &self.entries
    }

    /// The persisted entry at `index`.
    pub fn get(&self, index: Index) -> Option<&StoredEntry> {
        index
            .0
            .checked_sub(1)
            .and_then(|i| self.entries.get(i as usize))
    }
}

impl Storage for SimStorage {
    fn hard_state(&self) -> HardState {
        self.hard_state
    }
    fn first_index(&self) -> Index {
        Index(1)
    }
    fn last_index(&self) -> Index {
        Index(self.entries.len() as u64)
    }
    fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index == Index::ZERO {
            return Ok(Term::ZERO);
        }
        self.get(index)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }
    fn entry(&self, index: Index) -> Result<Entry<'_>, StorageError> {
        let e = self.get(index).ok_or(StorageError::Unavailable)?;
        Ok(Entry {
            index,
            term: e.term,
            kind: e.kind,
            data: &e.data,
        })
    }
}
