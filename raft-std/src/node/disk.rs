//! The node's storage as the core reads it: the write-ahead log and the snapshot files.

use raft_core::{Entry, HardState, Index, SnapshotMeta, Storage, StorageError, Term};

use crate::snapshot::{SnapshotError, SnapshotStore};
use crate::wal::Wal;

/// The log and the snapshots of one node.
pub(crate) struct Disk {
    pub(crate) wal: Wal,
    pub(crate) snaps: SnapshotStore,
    /// The latest snapshot as the core knows it (its configuration decoded from the file's
    /// meta).
    pub(crate) meta: Option<SnapshotMeta>,
}

impl Storage for Disk {
    fn hard_state(&self) -> HardState {
        self.wal.hard_state()
    }
    fn first_index(&self) -> Index {
        self.wal.first_index()
    }
    fn last_index(&self) -> Index {
        self.wal.last_index()
    }
    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.wal.term(index)
    }
    fn entry(&self, index: Index) -> Result<Entry<'_>, StorageError> {
        self.wal.entry(index)
    }
    fn snapshot(&self) -> Option<SnapshotMeta> {
        self.meta.clone()
    }
    fn read_snapshot(
        &self,
        index: Index,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StorageError> {
        match self.snaps.read_chunk(index, offset, buf) {
            Ok(n) => Ok(n),
            Err(SnapshotError::Replaced { .. }) => Err(StorageError::SnapshotReplaced),
            Err(e) => {
                tracing::warn!(error = %e, "reading a snapshot chunk failed");
                Err(StorageError::Backend(1))
            }
        }
    }
}
