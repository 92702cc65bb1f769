//! The durable write-ahead log: Raft's hard state and log entries on disk.
//!
//! [`Wal`] is both the log the host writes each [`Ready`](raft_core::Ready) into and the
//! [`Storage`] the core reads it back through. Writes are buffered: [`Wal::set_hard_state`] and
//! [`Wal::append`] change the in-memory view at once and encode records into a pending buffer;
//! [`Wal::sync`] writes the whole buffer with one `write` and makes it durable with one
//! `fdatasync`. Batching a whole `Ready` (or several) into one sync is the group commit.
//!
//! The whole log held is also kept in memory, payloads packed into a few large arenas (one per
//! segment), so that [`Storage::entry`] borrows from memory and never reads the disk; memory
//! is bounded by compacting the log behind snapshots ([`Wal::compact`]). Reads answer as
//! [`MemStorage`](raft_core::MemStorage)'s do.
//!
//! # Directory layout
//!
//! ```text
//! <dir>/0000000000000000-0000000000000001.wal    segment 0, started when the log was empty
//! <dir>/0000000000000001-00000000000a3f21.wal    segment 1, started at index 0xa3f21
//! <dir>/...
//! ```
//!
//! A segment's name is `{seq:016x}-{first_index:016x}.wal`: its sequence number (0, 1, 2, ...
//! without gaps, starting later once compaction deleted the first segments) and the index the
//! log would continue at when it was started. The width is
//! fixed so that sorting the names sorts the segments. Records are only ever appended to the
//! last segment; once it holds [`WalOptions::segment_bytes`] a new one is started. A segment
//! is created as `<name>.wal.tmp` and renamed into place once its first bytes are durable.
//! Other files in the directory are ignored, so the host may keep its own files beside the log.
//!
//! # Format
//!
//! All integers are little-endian. A segment starts with a 32-byte header:
//!
//! ```text
//! [magic: 8 = "TKRFTWAL"][version: u32 = 1][seq: u64][first_index: u64][crc32c: u32]
//! ```
//!
//! where the CRC covers the 28 bytes before it, and seq and first index repeat the file name.
//! Records follow back to back, each framed as
//!
//! ```text
//! [len: u32][crc32c: u32][type: u8][payload: len - 1 bytes]
//! ```
//!
//! where `len` counts the type byte and the payload, and the CRC (CRC32C, Castagnoli) covers
//! the same bytes. The record types are:
//!
//! | type | record     | payload                                                                     |
//! |------|------------|-----------------------------------------------------------------------------|
//! | 1    | entry      | `[index: u64][term: u64][kind: u8 (0 normal, 1 no-op, 2 config)][data ...]` |
//! | 2    | hard state | `[term: u64][vote: u64][commit: u64]`                                       |
//!
//! The first record of every segment is the hard state current when the segment was started,
//! so that deleting earlier segments (compaction) never loses it.
//!
//! # Compaction
//!
//! The log does not hold snapshots; the host keeps them (see [`crate::snapshot`]) and tells
//! the WAL about them:
//!
//! - [`Wal::compact`]`(i, t)` once a snapshot through index `i` is durable: entries up to `i`
//!   leave memory, and every segment holding only such entries is deleted. A segment holds only
//!   entries up to `i` when a later segment starts at or below `i + 1`: the entries before a
//!   segment's first index were final when it was started (until overwritten by a later
//!   record, and entries up to a snapshot are committed, so never overwritten).
//! - [`Wal::reset`]`(i, t)` once a snapshot received from the leader is durable: every entry
//!   goes, and the log starts over with one fresh segment whose first index is `i + 1`.
//! - [`Wal::open`]`(dir, options, Some((i, t)))` on restart from the snapshot at `(i, t)`:
//!   entries up to `i` are not part of the log, and segments holding only those are deleted.
//!   If the log holds entry `i` at term `t`, or starts right after it at `i + 1` (its segment
//!   was compacted or reset away), the entries after `i` are the log; otherwise (the log lacks
//!   `i`, holds it at another term, or starts beyond `i + 1`) every entry is discarded, with a
//!   warning and [`Recovery::log_discarded`], and the log continues empty after `i`, in a
//!   fresh segment as after a reset: the snapshot is committed state, so it wins. The hard
//!   state is kept as it is (the caller takes the larger of its commit index and `i`).
//!
//! Either way [`Storage::first_index`] is then `i + 1` and [`Storage::term`] answers `t` at `i`.
//! Replay with a snapshot reads only the segments from the last one starting at or below `i`
//! (the one that holds entry `i`, whose term it checks), or failing that the last one starting
//! at `i + 1`. A record there overwriting below the segment's first index restarts the replayed
//! log at that record (what a full replay keeps below it the snapshot covers). A segment that
//! does not continue the log before it is what a crash in the middle of a reset leaves (the
//! fresh segment is written first, then the old ones deleted): the log starts over there.
//! Segments before the replay's start may have gaps in their sequence numbers, left by
//! deletions that only partly reached the disk.
//!
//! # Recovery
//!
//! [`Wal::open`] replays the segments in order (from a later one when given a snapshot, see
//! [Compaction](#compaction)). An entry whose index is at or below the last index replayed
//! first truncates the log there (that is how an overwritten suffix replays); an index beyond
//! the last + 1 is a gap (corruption). The last hard-state record wins; a
//! commit index beyond the recovered log (whose tail was lost) is clamped to its last index,
//! with a warning, and the clamped hard state is appended to the log at once so that the stale
//! commit index cannot come back.
//!
//! What a crash can leave is repaired, with a `tracing` warning:
//!
//! - a bad record (cut short, a zero or overlong length, a CRC mismatch) in the **last**
//!   segment with no valid record anywhere after it is a **torn tail**, a write the crash cut
//!   short before its `fdatasync` returned, so never acknowledged: the file is truncated there
//!   and the cut is reported in [`Recovery::torn_tail`];
//! - a last segment with an incomplete header (at most as long as a new segment's first write)
//!   is removed;
//! - `*.wal.tmp` files are removed; a missing or empty directory is a new, empty log.
//!
//! Anything else is damage that would lose committed data if skipped, and [`Wal::open`]
//! refuses with [`WalError::Corrupt`] (naming the file and offset), leaving every file as it
//! was: a bad record in an earlier segment, or in the last one with a valid record after it; a
//! bad header on a segment that is not the last; a missing segment (a gap in sequence
//! numbers, or a first segment other than 0 without a snapshot); a segment whose first index
//! does not continue the log before it (without a snapshot); a gap in entry indices; a record
//! whose CRC matches but whose type or kind is unknown (written whole by something else, never
//! torn); a `*.wal` file whose name is not a segment name. A header of
//! another format version is [`WalError::UnsupportedVersion`].
//!
//! Segment files are never reused, so no stale record from an earlier life of a file can pass
//! for a valid one after a bad record. The torn-tail rule takes writes to reach the disk as a
//! prefix. A crash before `fdatasync` returns can, on some devices, persist later sectors of a
//! batch and not earlier ones; that looks like damage with valid records after it, and the WAL
//! refuses to start rather than guess (the batch was never acknowledged, so an operator may
//! truncate it by hand). So does a torn entry whose own payload holds the bytes of a valid
//! record: refusing is the safe side of that ambiguity.

mod error;
mod log;
pub(crate) mod record;
mod recover;
mod segment;

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raft_core::{Entry, EntryKind, HardState, Index, Storage, StorageError, Term};

pub use self::error::WalError;
use self::log::MemLog;
pub(crate) use self::segment::{fsync_dir, parse_hex};
use self::segment::{OpenSegment, SegmentName};

/// How a [`Wal`] writes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WalOptions {
    /// A segment is closed and a new one started once it holds this many bytes. Default 64 MiB.
    pub segment_bytes: u64,
    /// Skips every `fdatasync` (of records, new segments and the directory). Data acknowledged
    /// to clients can be lost on power failure or a kernel crash. Default false. For tests and
    /// benchmarks; [`Wal::open`] logs a warning when it is set.
    pub dangerously_skip_fsync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            dangerously_skip_fsync: false,
        }
    }
}

/// What [`Wal::open`] found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Recovery {
    /// Segment files replayed (0 for a new log).
    pub segments: usize,
    /// Entries in the recovered log.
    pub entries: u64,
    /// The recovered hard state (its commit clamped to the last index if the tail was lost).
    pub hard_state: HardState,
    /// The torn tail cut off the last segment, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Whether the log did not continue the snapshot [`Wal::open`] was given (it lacked the
    /// snapshot's index, held it at another term, or started after it), so that every entry
    /// was discarded and the log continues empty after the snapshot. Logged as a warning.
    pub log_discarded: bool,
}

/// A torn write at the end of the log, truncated by recovery.
#[derive(Clone, Debug)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Where the file was cut: the offset of the first bad record.
    pub offset: u64,
    /// Bytes removed from there to the end of the file.
    pub bytes_dropped: u64,
}

/// What one [`Wal::sync`] did.
#[derive(Clone, Copy, Debug)]
pub struct SyncStats {
    /// Bytes written (0 if nothing was buffered).
    pub bytes: u64,
    /// Whether an `fdatasync` was issued (false if nothing was buffered or fsync is skipped).
    pub synced: bool,
    /// How long the `fdatasync` took (zero when none was issued).
    pub duration: Duration,
}

/// An entry encoded into the pending buffer by [`Wal::append`], to be added to the in-memory
/// log once the whole batch is known to be valid.
#[derive(Clone, Copy, Debug)]
struct Staged {
    term: Term,
    kind: EntryKind,
    /// Where the payload lies in `Wal::pending`.
    data_at: usize,
    len: usize,
}

/// Pending-buffer capacity kept across syncs; a larger one, grown by an unusual batch, is
/// given back.
const PENDING_KEEP: usize = 8 << 20;

/// A segmented write-ahead log on disk, readable as [`Storage`].
///
/// Writes take `&mut self`: one thread (the node's) owns the log.
///
/// ```
/// use raft_core::{Entry, EntryKind, HardState, Index, NodeId, Storage, Term};
/// use raft_std::wal::{Wal, WalOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let (mut wal, _) = Wal::open(dir.path(), WalOptions::default(), None)?;
/// wal.set_hard_state(HardState { term: Term(1), vote: NodeId(1), commit: Index(0) });
/// let entry = Entry { index: Index(1), term: Term(1), kind: EntryKind::Normal, data: b"x=1" };
/// wal.append([entry])?;
/// wal.sync()?; // one write, one fdatasync
/// drop(wal);
///
/// let (wal, recovery) = Wal::open(dir.path(), WalOptions::default(), None)?;
/// assert_eq!(recovery.entries, 1);
/// assert_eq!(wal.entry(Index(1))?.data, b"x=1");
/// assert_eq!(wal.hard_state().term, Term(1));
/// # Ok(())
/// # }
/// ```
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    log: MemLog,
    hard_state: HardState,
    /// Encoded records not yet written.
    pending: Vec<u8>,
    /// Scratch for [`Wal::append`], kept to reuse its allocation.
    staged: Vec<Staged>,
    /// Every segment on disk, oldest first. Compaction deletes segments from the front: a
    /// segment can go once a later one starts at or below the snapshot index + 1, as the
    /// entries before a segment's first index were final when it started, and entries up to the
    /// snapshot are committed, so no later record overwrites them.
    ///
    /// Invariant: the last one is `current`.
    segments: VecDeque<SegmentName>,
    current: OpenSegment,
    /// Set by the first failed I/O operation; every later call fails.
    poisoned: Option<(PathBuf, &'static str)>,
    /// Records written by [`Wal::write`] and not yet synced by [`Wal::sync`].
    unsynced: bool,
    /// A second handle on the current segment, for [`SyncHandle`]s (made on first use, per
    /// segment).
    sync_file: Option<(u64, std::sync::Arc<std::fs::File>)>,
}

/// Makes durable what [`Wal::write`] wrote, from any thread: an `fdatasync` of the segment it
/// went to. Syncing the file covers every write to it before, so a later handle's sync also
/// covers an earlier one's.
#[derive(Clone, Debug)]
pub struct SyncHandle {
    file: std::sync::Arc<std::fs::File>,
    skip: bool,
}

impl SyncHandle {
    /// Runs the `fdatasync` (nothing with `dangerously_skip_fsync`); returns how long it took.
    pub fn sync(&self) -> std::io::Result<Duration> {
        if self.skip {
            return Ok(Duration::ZERO);
        }
        let start = Instant::now();
        self.file.sync_data()?;
        Ok(start.elapsed())
    }

    /// Whether two handles sync the same file.
    pub fn same_file(&self, other: &SyncHandle) -> bool {
        std::sync::Arc::ptr_eq(&self.file, &other.file)
    }
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("first_index", &self.log.first_index())
            .field("last_index", &self.log.last_index())
            .field("hard_state", &self.hard_state)
            .field("segment", &self.current.path)
            .field("pending_bytes", &self.pending.len())
            .field("poisoned", &self.poisoned.is_some())
            .finish()
    }
}

impl Wal {
    /// Opens the log in `dir` (creating the directory if missing) and recovers it, following the
    /// rules in the [module docs](self).
    ///
    /// `snapshot` is the index and term of the snapshot the caller restored its state machine
    /// from, if any: the log then continues it ([`Storage::first_index`] is its index + 1, and
    /// [`Storage::term`] answers its term at its index), as described under
    /// [Compaction](self#compaction). A log that was compacted or reset must be opened with
    /// its snapshot; without one it refuses ([`WalError::Corrupt`]: its first segments are
    /// missing).
    pub fn open(
        dir: &Path,
        options: WalOptions,
        snapshot: Option<(Index, Term)>,
    ) -> Result<(Wal, Recovery), WalError> {
        if options.dangerously_skip_fsync {
            tracing::warn!(
                dir = %dir.display(),
                "WAL opened with dangerously_skip_fsync: acknowledged writes can be lost on \
                 power failure or a kernel crash"
            );
        }
        let rec = recover::recover(dir, &options, snapshot)?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            options,
            log: rec.log,
            hard_state: rec.hard_state,
            pending: Vec::new(),
            staged: Vec::new(),
            segments: rec.segments,
            current: rec.current,
            poisoned: None,
            unsynced: false,
            sync_file: None,
        };
        Ok((wal, rec.report))
    }

    /// Buffers a hard-state record; the in-memory view ([`Storage::hard_state`]) changes at
    /// once. The same hard state as the current one writes nothing.
    pub fn set_hard_state(&mut self, hs: HardState) {
        if hs == self.hard_state {
            return;
        }
        self.hard_state = hs;
        record::encode_hard_state(&mut self.pending, &hs);
    }

    /// Buffers entries. The first may overwrite a suffix of the log (which is truncated there);
    /// the rest must follow it contiguously. The in-memory view changes at once, so the core
    /// can read the entries back before they are synced.
    ///
    /// All or nothing: a first entry beyond `last_index() + 1` ([`WalError::Gap`]) or below
    /// `first_index()` ([`WalError::Compacted`]), a break in the run of indices, or an entry
    /// that cannot be stored changes nothing.
    pub fn append<'e, I: IntoIterator<Item = Entry<'e>>>(
        &mut self,
        entries: I,
    ) -> Result<(), WalError> {
        self.check_poisoned()?;
        let mut entries = entries.into_iter();
        let Some(first) = entries.next() else {
            return Ok(());
        };
        let next = self.log.last_index().next();
        if first.index > next {
            return Err(WalError::Gap {
                expected: next,
                got: first.index,
            });
        }
        if first.index < self.log.first_index() {
            return Err(WalError::Compacted {
                first_index: self.log.first_index(),
                got: first.index,
            });
        }
        // Encode the whole batch before touching the log: the iterator can only be walked
        // once, and a bad entry late in it must leave everything as it was.
        let rollback = self.pending.len();
        self.staged.clear();
        let mut expected = first.index;
        for e in std::iter::once(first).chain(entries) {
            if let Err(err) = self.stage(e, expected) {
                self.pending.truncate(rollback);
                return Err(err);
            }
            expected = expected.next();
        }
        if first.index < next {
            self.log.truncate_from(first.index);
        }
        for s in &self.staged {
            let data = &self.pending[s.data_at..s.data_at + s.len];
            self.log.push(s.term, s.kind, data);
        }
        Ok(())
    }

    /// Encodes one entry of an append into the pending buffer.
    fn stage(&mut self, e: Entry<'_>, expected: Index) -> Result<(), WalError> {
        if e.index != expected {
            return Err(WalError::NotContiguous {
                expected,
                got: e.index,
            });
        }
        let Some(kind) = record::kind_byte(e.kind) else {
            return Err(WalError::Unstorable {
                index: e.index,
                reason: "entry kind unknown to the WAL format",
            });
        };
        if e.data.len() > record::MAX_ENTRY_DATA {
            return Err(WalError::Unstorable {
                index: e.index,
                reason: "payload larger than a WAL record can hold (4 GiB)",
            });
        }
        let data_at = record::encode_entry(&mut self.pending, e.index, e.term, kind, e.data);
        self.staged.push(Staged {
            term: e.term,
            kind: e.kind,
            data_at,
            len: e.data.len(),
        });
        Ok(())
    }

    /// Writes every buffered record with one `write` and makes it durable with one
    /// `fdatasync` (unless [`WalOptions::dangerously_skip_fsync`]), then starts a new segment
    /// if the current one holds [`WalOptions::segment_bytes`] or more. With nothing buffered
    /// it does nothing and returns zero stats.
    ///
    /// After any I/O error the `Wal` is poisoned and every later call fails with
    /// [`WalError::Poisoned`]: once an fsync has failed, retrying it could report success for
    /// data the kernel already dropped. Reopening recovers what reached the disk. (If only
    /// starting the next segment fails, the records are durable but the error is still
    /// returned: the caller then acknowledges less than it could, never more.)
    pub fn sync(&mut self) -> Result<SyncStats, WalError> {
        self.check_poisoned()?;
        if self.pending.is_empty() && !self.unsynced {
            return Ok(SyncStats {
                bytes: 0,
                synced: false,
                duration: Duration::ZERO,
            });
        }
        let bytes = self.write_pending()?;
        let duration = self.sync_current()?;
        if self.current.len >= self.options.segment_bytes {
            self.rotate()?;
        }
        Ok(SyncStats {
            bytes,
            synced: !self.options.dangerously_skip_fsync,
            duration,
        })
    }

    /// Writes every buffered record (one `write`) without syncing, and returns a handle that
    /// makes it durable from another thread; `None` if nothing was buffered, or if the write
    /// filled the segment, which is then synced and rotated here. The next
    /// [`Wal::sync`] syncs it too. Segments rotate only after a sync, so that a handle's file
    /// holds everything written since the last one.
    pub fn write(&mut self) -> Result<Option<SyncHandle>, WalError> {
        self.check_poisoned()?;
        if self.pending.is_empty() {
            return Ok(None);
        }
        self.write_pending()?;
        if self.current.len >= self.options.segment_bytes {
            // A full segment is synced and closed here, so that a log written only through
            // `write` still rotates; the caller finds nothing left to sync.
            self.sync_current()?;
            self.rotate()?;
            return Ok(None);
        }
        let seq = self.current.name.seq;
        let file = match &self.sync_file {
            Some((s, f)) if *s == seq => f.clone(),
            _ => match self.current.file.try_clone() {
                Ok(f) => {
                    let f = std::sync::Arc::new(f);
                    self.sync_file = Some((seq, f.clone()));
                    f
                }
                Err(e) => return Err(self.poison("dup", e)),
            },
        };
        Ok(Some(SyncHandle {
            file,
            skip: self.options.dangerously_skip_fsync,
        }))
    }

    /// Writes the pending records to the current segment (one `write`); returns their size.
    fn write_pending(&mut self) -> Result<u64, WalError> {
        let bytes = self.pending.len() as u64;
        if let Err(e) = self.current.file.write_all(&self.pending) {
            return Err(self.poison("write", e));
        }
        self.current.len += bytes;
        self.pending.clear();
        self.pending.shrink_to(PENDING_KEEP);
        self.unsynced = true;
        Ok(bytes)
    }

    /// `fdatasync`s the current segment (unless syncing is dangerously off); returns how long
    /// it took.
    fn sync_current(&mut self) -> Result<Duration, WalError> {
        let mut duration = Duration::ZERO;
        if !self.options.dangerously_skip_fsync {
            let start = Instant::now();
            if let Err(e) = self.current.file.sync_data() {
                return Err(self.poison("sync", e));
            }
            duration = start.elapsed();
        }
        self.unsynced = false;
        Ok(duration)
    }

    /// Starts the next segment. Everything is synced, so the hard state it begins with is
    /// durable already.
    fn rotate(&mut self) -> Result<(), WalError> {
        let name = SegmentName {
            seq: self.current.name.seq + 1,
            first_index: self.log.last_index().next(),
        };
        let sync = !self.options.dangerously_skip_fsync;
        let seg = segment::create(&self.dir, name, &self.hard_state, sync)
            .map_err(|e| self.poison_with(e))?;
        tracing::debug!(path = %seg.path.display(), "WAL: started a new segment");
        self.current = seg;
        self.segments.push_back(name);
        self.log.start_chunk();
        Ok(())
    }

    /// Drops the entries up to `index`, which a durable snapshot covers, and deletes every
    /// segment file holding only such entries (never the one being written). `term` is the
    /// term of the entry at `index`. Afterwards [`Storage::first_index`] is `index + 1` and
    /// [`Storage::term`] answers `term` at `index`, even once the entry's segment is gone.
    ///
    /// An index below [`Storage::first_index`] (already compacted) does nothing. An index
    /// beyond [`Storage::last_index`] ([`WalError::CompactBeyondLog`]), or a term other than
    /// the entry's ([`WalError::CompactTermMismatch`]), changes nothing.
    ///
    /// Deletions are not synced: one that a crash undoes is done again when [`Wal::open`] is
    /// given the snapshot. Memory is freed a chunk at a time, in step with the segments (see
    /// [`Wal::bytes_held`]). A failed deletion poisons the `Wal`, as any failed I/O does.
    pub fn compact(&mut self, index: Index, term: Term) -> Result<(), WalError> {
        self.check_poisoned()?;
        if index < self.log.first_index() {
            return Ok(());
        }
        let last_index = self.log.last_index();
        if index > last_index {
            return Err(WalError::CompactBeyondLog { index, last_index });
        }
        match self.log.term(index) {
            Some(held) if held == term => {}
            Some(held) => return Err(WalError::CompactTermMismatch { index, term, held }),
            // The index lies in `first_index() ..= last_index()`, so the entry is held.
            None => return Err(WalError::CompactBeyondLog { index, last_index }),
        }
        self.log.compact(index, term);
        let covered = self
            .segments
            .iter()
            .rposition(|s| s.first_index <= index.next())
            .unwrap_or(0);
        for _ in 0..covered {
            let Some(&name) = self.segments.front() else {
                break;
            };
            segment::remove(&self.dir, name).map_err(|e| self.poison_with(e))?;
            self.segments.pop_front();
        }
        Ok(())
    }

    /// Replaces the whole log by the snapshot at `index` (term `term`), after the caller
    /// installed it from the leader and made it durable: discards every entry (written or
    /// still buffered), starts a fresh segment whose first index is `index + 1` holding the
    /// current hard state, and deletes every other segment. Durable (fsynced, directory
    /// fsynced) before it returns. Afterwards [`Storage::last_index`] is `index`,
    /// [`Storage::first_index`] is `index + 1` and [`Storage::term`] answers `term` at `index`.
    ///
    /// A crash part way leaves the fresh segment beside some old ones; [`Wal::open`] with the
    /// snapshot recognises it (it starts after the snapshot and does not continue the log
    /// before it) and finishes the job. Any failed I/O poisons the `Wal`.
    pub fn reset(&mut self, index: Index, term: Term) -> Result<(), WalError> {
        self.check_poisoned()?;
        let name = SegmentName {
            seq: self.current.name.seq + 1,
            first_index: index.next(),
        };
        let sync = !self.options.dangerously_skip_fsync;
        let seg = segment::create(&self.dir, name, &self.hard_state, sync)
            .map_err(|e| self.poison_with(e))?;
        tracing::debug!(
            path = %seg.path.display(),
            index = index.0,
            "WAL: reset to a snapshot; started a fresh segment"
        );
        let old = std::mem::replace(&mut self.segments, VecDeque::from([name]));
        self.current = seg;
        self.log = MemLog::new(index.next(), term);
        self.pending.clear();
        self.pending.shrink_to(PENDING_KEEP);
        self.staged.clear();
        self.unsynced = false;
        self.sync_file = None;
        // Oldest first, so that a crash part way leaves a run of segments without gaps.
        for old in old {
            segment::remove(&self.dir, old).map_err(|e| self.poison_with(e))?;
        }
        if sync {
            segment::sync_dir(&self.dir).map_err(|e| self.poison_with(e))?;
        }
        Ok(())
    }

    /// Entries held after `index`: how many a snapshot at `index` would leave in the log
    /// (those that would replay on a restart from it). For deciding when to snapshot.
    pub fn entries_since(&self, index: Index) -> u64 {
        let after = index.max(self.log.first_index().prev());
        self.log.last_index().0.saturating_sub(after.0)
    }

    /// Payload bytes of the entries held (`first_index() ..= last_index()`), not counting
    /// record framing. For deciding when to snapshot. Memory held can exceed it by up to about
    /// one segment: compacted entries stay in memory until every entry sharing their segment's
    /// arena is compacted too.
    pub fn bytes_held(&self) -> u64 {
        self.log.bytes()
    }

    /// Records a failed operation returned by a helper as the `Wal`'s poison (only I/O errors
    /// poison); returns the error.
    fn poison_with(&mut self, e: WalError) -> WalError {
        if let WalError::Io { path, op, source } = &e {
            tracing::error!(path = %path.display(), op, error = %source, "WAL I/O failed; poisoned");
            self.poisoned = Some((path.clone(), op));
        }
        e
    }

    fn poison(&mut self, op: &'static str, source: std::io::Error) -> WalError {
        let path = self.current.path.clone();
        tracing::error!(path = %path.display(), op, error = %source, "WAL I/O failed; poisoned");
        self.poisoned = Some((path.clone(), op));
        WalError::Io { path, op, source }
    }

    fn check_poisoned(&self) -> Result<(), WalError> {
        match &self.poisoned {
            None => Ok(()),
            Some((path, op)) => Err(WalError::Poisoned {
                path: path.clone(),
                op,
            }),
        }
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether records are buffered that [`Wal::sync`] has not yet written.
    pub fn has_unsynced(&self) -> bool {
        !self.pending.is_empty() || self.unsynced
    }
}

impl Storage for Wal {
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
        let first = self.log.first_index();
        if index == first.prev() {
            return Ok(self.log.prefix_term());
        }
        if index < first {
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
    use std::fs::{self, File};

    use raft_core::NodeId;

    use super::record::{Record, SegmentHeader, HEADER_LEN};
    use super::*;

    fn e(index: u64, data: &[u8]) -> Entry<'_> {
        Entry {
            index: Index(index),
            term: Term(1),
            kind: EntryKind::Normal,
            data,
        }
    }

    #[test]
    fn a_failed_write_poisons_the_wal() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = Wal::open(tmp.path(), WalOptions::default(), None).expect("open");
        wal.append([e(1, b"x")]).expect("append");
        wal.sync().expect("sync");
        // A read-only handle makes the next write fail as a full or failing disk would.
        wal.current.file = File::open(&wal.current.path).expect("reopen read-only");
        wal.append([e(2, b"y")]).expect("append");
        match wal.sync() {
            Err(WalError::Io {
                op: "write", path, ..
            }) => assert_eq!(path, wal.current.path),
            other => panic!("expected a write error, got {other:?}"),
        }
        assert!(matches!(
            wal.sync(),
            Err(WalError::Poisoned { op: "write", .. })
        ));
        assert!(matches!(
            wal.append([e(3, b"z")]),
            Err(WalError::Poisoned { .. })
        ));
        drop(wal);
        let (wal, rec) = Wal::open(tmp.path(), WalOptions::default(), None).expect("reopen");
        assert_eq!(rec.entries, 1);
        assert_eq!(wal.last_index(), Index(1));
    }

    #[test]
    fn every_segment_starts_with_the_current_hard_state() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let options = WalOptions {
            segment_bytes: 150,
            dangerously_skip_fsync: true,
        };
        let (mut wal, _) = Wal::open(tmp.path(), options, None).expect("open");
        for i in 1..=30u64 {
            if i % 3 == 0 {
                wal.set_hard_state(HardState {
                    term: Term(i),
                    vote: NodeId(i % 5),
                    commit: Index(i - 1),
                });
            }
            wal.append([e(i, b"0123456789")]).expect("append");
            wal.sync().expect("sync");
        }
        let segments = wal.segments.clone();
        assert!(segments.len() > 5);
        let mut latest = HardState::default();
        for name in segments {
            let buf = fs::read(name.path(tmp.path())).expect("read");
            let header = SegmentHeader::decode(&buf).expect("header");
            assert_eq!(
                (header.seq, header.first_index),
                (name.seq, name.first_index)
            );
            let mut off = HEADER_LEN;
            let mut first = true;
            while off < buf.len() {
                let (rec, next) = record::decode(&buf, off).expect("record");
                match rec {
                    Record::HardState(hs) if first => assert_eq!(hs, latest, "{name:?}"),
                    Record::HardState(hs) => latest = hs,
                    Record::Entry(_) => assert!(!first, "{name:?} starts with an entry"),
                }
                first = false;
                off = next;
            }
        }
        assert_eq!(latest, wal.hard_state());
    }
}
