//! The WAL's one error type.

use std::path::PathBuf;

use raft_core::{Index, Term};

/// Why a WAL operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An operation on a file or the directory failed.
    #[error("WAL I/O error: cannot {op} {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("write", "sync", "create", ...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The log on disk is damaged in a way a crash does not explain; recovery refuses rather
    /// than drop what may be committed data. Every file was left as it was.
    #[error(
        "WAL file {path} is corrupt at offset {offset}: {reason}; refusing to start \
         (committed data would be lost)"
    )]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad record or header in it.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A segment was written in a format version this build does not read.
    #[error("WAL segment {path} has format version {version}, which this build does not read")]
    UnsupportedVersion {
        /// The segment file.
        path: PathBuf,
        /// The version in its header.
        version: u32,
    },
    /// [`Wal::append`](super::Wal::append) was given a first entry beyond `last_index() + 1`.
    /// Nothing changed.
    #[error("append at index {got} leaves a gap (expected at most {expected})")]
    Gap {
        /// The highest index the first entry may have.
        expected: Index,
        /// The index it has.
        got: Index,
    },
    /// [`Wal::append`](super::Wal::append) was given entries whose indices do not follow one
    /// another. Nothing changed.
    #[error("append of index {got} where {expected} should follow")]
    NotContiguous {
        /// The index that should have come next.
        expected: Index,
        /// The index that came.
        got: Index,
    },
    /// [`Wal::append`](super::Wal::append) would overwrite entries below the first index held
    /// (compacted, so committed: a caller bug). Nothing changed.
    #[error("append at index {got} overwrites below the first index {first_index}")]
    Compacted {
        /// The first index held.
        first_index: Index,
        /// The index offered.
        got: Index,
    },
    /// [`Wal::compact`](super::Wal::compact) was given an index beyond the last index held (a
    /// snapshot cannot cover entries the log does not have). Nothing changed.
    #[error("compaction through index {index} is beyond the last index {last_index}")]
    CompactBeyondLog {
        /// The index offered.
        index: Index,
        /// The last index held.
        last_index: Index,
    },
    /// [`Wal::compact`](super::Wal::compact) was given a term other than the one the log holds
    /// at that index: the snapshot is not of this log. Nothing changed.
    #[error(
        "compaction through index {index} at term {term}, but the log holds it at term {held}"
    )]
    CompactTermMismatch {
        /// The index offered.
        index: Index,
        /// The term offered.
        term: Term,
        /// The term of the entry the log holds at `index`.
        held: Term,
    },
    /// An entry is too large for a record, or of a kind this format cannot store. Nothing
    /// changed.
    #[error("entry {index} cannot be stored: {reason}")]
    Unstorable {
        /// The entry's index.
        index: Index,
        /// Why.
        reason: &'static str,
    },
    /// An earlier write or sync failed, so what reached the disk is unknown (a failed fsync
    /// cannot be retried: the kernel may have dropped the dirty pages). The `Wal` accepts
    /// nothing more; reopen it to recover. [`Wal::set_hard_state`](super::Wal::set_hard_state)
    /// still buffers, but no sync will write it.
    #[error("WAL is unusable after a failed {op} of {path}; reopen it to recover")]
    Poisoned {
        /// The file the failed operation was on.
        path: PathBuf,
        /// The operation.
        op: &'static str,
    },
}
