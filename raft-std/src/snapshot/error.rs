//! The snapshot store's one error type.

use std::path::PathBuf;

use raft_core::Index;

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// An operation on a file or the directory failed.
    #[error("snapshot I/O error: cannot {op} {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("write", "sync", "rename", ...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot file (the latest one on disk, or one just received) failed verification. At
    /// [`SnapshotStore::open`](super::SnapshotStore::open) every file was left as it was; a
    /// received file was deleted.
    #[error("snapshot file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// [`SnapshotStore::read_chunk`](super::SnapshotStore::read_chunk) asked for a snapshot
    /// that is no longer the latest: a newer one replaced it (and its file is gone). The
    /// transfer should start over with the latest.
    #[error("snapshot {index} in {dir} was replaced by snapshot {latest}")]
    Replaced {
        /// The store's directory.
        dir: PathBuf,
        /// The index asked for.
        index: Index,
        /// The index of the latest snapshot.
        latest: Index,
    },
    /// There is no snapshot to read.
    #[error("no snapshot in {dir}")]
    NoSnapshot {
        /// The store's directory.
        dir: PathBuf,
    },
    /// A snapshot older than the latest was offered (written or received); keeping it would
    /// move the latest backwards. Nothing changed.
    #[error("snapshot {index} is older than the latest snapshot {latest} in {dir}")]
    Stale {
        /// The store's directory.
        dir: PathBuf,
        /// The index offered.
        index: Index,
        /// The index of the latest snapshot.
        latest: Index,
    },
    /// [`SnapshotStore::write_chunk`](super::SnapshotStore::write_chunk) was given a chunk
    /// that does not continue the bytes received so far (nor restarts at 0). Nothing changed.
    #[error(
        "snapshot chunk for {path} at offset {got} is out of order: expected offset {expected} \
         (or 0 to start over)"
    )]
    OutOfOrder {
        /// The file being received.
        path: PathBuf,
        /// The bytes received so far: the offset the next chunk must have.
        expected: u64,
        /// The offset the chunk had.
        got: u64,
    },
    /// A chunk or the end of a transfer came with no transfer in progress (none was started,
    /// or it was finished, aborted, or dropped after a failed write).
    #[error("no snapshot transfer in progress in {dir}")]
    NotReceiving {
        /// The store's directory.
        dir: PathBuf,
    },
    /// [`SnapshotStore::create`](super::SnapshotStore::create) was given more meta than a
    /// snapshot file may hold (readers refuse more, so as never to allocate from an unchecked
    /// length). Nothing changed.
    #[error("snapshot meta of {len} bytes for {dir} exceeds the limit of {max} bytes")]
    MetaTooLarge {
        /// The store's directory.
        dir: PathBuf,
        /// The meta's length.
        len: usize,
        /// The limit, [`MAX_META_LEN`](super::MAX_META_LEN).
        max: usize,
    },
}
