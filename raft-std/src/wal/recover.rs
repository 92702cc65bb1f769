//! Opening a WAL directory: replaying its segments and repairing what a crash can leave.
//!
//! Recovery first reads and checks everything without touching a file, so that a refusal
//! ([`WalError::Corrupt`]) leaves the directory exactly as it found it for an operator to
//! inspect. Only once the whole log has replayed does it repair what a crash explains: it
//! removes temporary files, removes a last segment whose header never became durable, cuts a
//! torn tail off the last segment, and records a commit index clamped to the recovered log.
//! With a snapshot it also removes the segments the snapshot covers, or, if the log does not
//! continue the snapshot, starts a fresh segment after it and removes every other.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use raft_core::{HardState, Index, Term};

use super::log::MemLog;
use super::record::{self, HeaderError, Record, SegmentHeader};
use super::segment::{self, io_error, OpenSegment, SegmentName};
use super::{Recovery, TornTail, WalError, WalOptions};

/// What [`recover`] hands to the `Wal`.
pub(crate) struct Recovered {
    pub(crate) log: MemLog,
    pub(crate) hard_state: HardState,
    /// Every segment on disk, oldest first; the last is `current`.
    pub(crate) segments: VecDeque<SegmentName>,
    pub(crate) current: OpenSegment,
    pub(crate) report: Recovery,
}

fn corrupt(path: &Path, offset: usize, reason: String) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    }
}

/// The replay so far.
struct Replay {
    log: MemLog,
    hard_state: HardState,
    /// Whether the log may restart below its first index (recovering with a snapshot, when the
    /// segments before the first one replayed are not read; see [`Replay::apply`]).
    rebase: bool,
}

impl Replay {
    /// Applies one record, as [`Wal::append`](super::Wal::append) and
    /// [`Wal::set_hard_state`](super::Wal::set_hard_state) did when it was written.
    fn apply(&mut self, record: Record<'_>) -> Result<(), String> {
        match record {
            Record::HardState(hs) => self.hard_state = hs,
            Record::Entry(e) => {
                let next = self.log.last_index().next();
                if e.index > next {
                    return Err(format!(
                        "entry {} leaves a gap after the log's last index {}",
                        e.index,
                        next.prev()
                    ));
                }
                if e.index < self.log.first_index() {
                    if !self.rebase || e.index == Index::ZERO {
                        return Err(format!(
                            "entry {} overwrites below the log's first index {}",
                            e.index,
                            self.log.first_index()
                        ));
                    }
                    // An overwrite reaching back into a segment that was not read (it lies
                    // below the snapshot): a full replay would truncate there too, and what it
                    // keeps below this index the snapshot covers.
                    self.log = MemLog::new(e.index, Term::ZERO);
                }
                if e.index < next {
                    self.log.truncate_from(e.index);
                }
                self.log.push(e.term, e.kind, e.data);
            }
        }
        Ok(())
    }

    /// Replays the records of one segment (`buf` is the whole file, header checked). Returns
    /// the torn tail found, if `last` allows one.
    fn segment(
        &mut self,
        path: &Path,
        buf: &[u8],
        last: bool,
    ) -> Result<Option<TornTail>, WalError> {
        let mut off = record::HEADER_LEN;
        while off < buf.len() {
            match record::decode(buf, off) {
                Ok((rec, next)) => {
                    self.apply(rec)
                        .map_err(|reason| corrupt(path, off, reason))?;
                    off = next;
                }
                Err(bad) => {
                    let follower = record::next_valid(buf, off + 1);
                    if last && bad.may_be_torn() && follower.is_none() {
                        return Ok(Some(TornTail {
                            path: path.to_path_buf(),
                            offset: off as u64,
                            bytes_dropped: (buf.len() - off) as u64,
                        }));
                    }
                    let mut reason = bad.describe();
                    if let Some(at) = follower {
                        reason.push_str(&format!(", and a valid record follows at offset {at}"));
                    } else if !last {
                        reason.push_str(" in a segment that is not the last");
                    }
                    return Err(corrupt(path, off, reason));
                }
            }
        }
        Ok(None)
    }
}

/// Whether a last segment with a bad header is what a crash while creating it leaves: no more
/// bytes than creation writes. (Creation writes under a temporary name and renames only once
/// synced, so this takes a file system that reorders a rename before the data; a longer file
/// with a bad header is damage, not a crash.)
fn is_unfinished_creation(err: HeaderError, len: usize) -> bool {
    !matches!(err, HeaderError::Version(_))
        && len <= record::HEADER_LEN + record::HARD_STATE_RECORD_LEN
}

/// Whether the last segment is one whose creation never finished (see
/// [`is_unfinished_creation`]). Only a file short enough to be one is read.
fn is_unfinished(path: &Path) -> Result<bool, WalError> {
    let len = fs::metadata(path).map_err(io_error(path, "stat"))?.len();
    if len > (record::HEADER_LEN + record::HARD_STATE_RECORD_LEN) as u64 {
        return Ok(false);
    }
    let buf = fs::read(path).map_err(io_error(path, "read"))?;
    Ok(SegmentHeader::decode(&buf).is_err_and(|e| is_unfinished_creation(e, buf.len())))
}

/// Where replay starts in `segments` (sorted by sequence number), checking sequence numbers on
/// the way; `usable` of them count (the last may be an unfinished creation, to be removed).
///
/// Without a snapshot the log starts at segment 0 and sequence numbers have no gaps: anything
/// else means segments went missing. With a snapshot at `i`, the segments before the last one
/// that starts at or below `i + 1` hold only entries the snapshot covers (when a segment
/// starts at `f`, the entries before it were final below `f`), so replay starts at the last
/// segment starting at or below `i`, which holds entry `i` if the log has it (so that its term
/// can be checked), or failing that at the last starting at `i + 1`. The segments before it
/// may have gaps, left by removals (compaction, a reset) that only partly reached the disk;
/// replay starts after the last gap, and refuses if nothing after it starts at or below
/// `i + 1`.
fn replay_start(
    segments: &[(SegmentName, PathBuf)],
    usable: usize,
    snapshot: Option<(Index, Term)>,
) -> Result<usize, WalError> {
    for (k, pair) in segments.windows(2).enumerate() {
        let ((a, _), (b, path)) = (&pair[0], &pair[1]);
        if b.seq == a.seq {
            return Err(corrupt(
                path,
                0,
                format!("a second segment with sequence number {:#x}", b.seq),
            ));
        }
        if b.seq != a.seq + 1 && (snapshot.is_none() || k + 1 >= usable) {
            return Err(missing_before(a.seq + 1, path));
        }
    }
    let Some((index, _)) = snapshot else {
        return match segments.first() {
            Some((name, path)) if name.seq != 0 => Err(corrupt(
                path,
                0,
                format!(
                    "the first segment has sequence number {:#x}, not 0: segments before it are \
                     missing (a log that was compacted or reset opens only with its snapshot)",
                    name.seq
                ),
            )),
            _ => Ok(0),
        };
    };
    let after_gap = segments[..usable]
        .windows(2)
        .rposition(|pair| pair[1].0.seq != pair[0].0.seq + 1)
        .map_or(0, |k| k + 1);
    let candidates = &segments[after_gap..usable];
    let start = candidates
        .iter()
        .rposition(|(name, _)| name.first_index <= index)
        .or_else(|| {
            candidates
                .iter()
                .rposition(|(name, _)| name.first_index <= index.next())
        });
    match start {
        Some(k) => Ok(after_gap + k),
        None if after_gap == 0 => Ok(0),
        None => {
            let (name, path) = &segments[after_gap];
            Err(missing_before(name.seq - 1, path))
        }
    }
}

fn missing_before(seq: u64, path: &Path) -> WalError {
    corrupt(
        path,
        0,
        format!("segment {seq:#x} is missing before this one"),
    )
}

/// Checks a decoded header against the file name.
fn check_header(header: SegmentHeader, name: SegmentName) -> Result<(), String> {
    if header.seq != name.seq || header.first_index != name.first_index {
        return Err(format!(
            "header says segment {:#x} from index {}, the file name says {:#x} from {}",
            header.seq, header.first_index, name.seq, name.first_index
        ));
    }
    Ok(())
}

/// Appends a hard-state record to the open segment.
fn append_hard_state(seg: &mut OpenSegment, hs: &HardState, sync: bool) -> Result<(), WalError> {
    let mut buf = Vec::with_capacity(record::HARD_STATE_RECORD_LEN);
    record::encode_hard_state(&mut buf, hs);
    seg.file
        .write_all(&buf)
        .map_err(io_error(&seg.path, "write"))?;
    if sync {
        seg.file.sync_data().map_err(io_error(&seg.path, "sync"))?;
    }
    seg.len += buf.len() as u64;
    Ok(())
}

/// Why a log replayed with a snapshot at `index` (term `term`) does not continue it, if it
/// does not.
fn snapshot_mismatch(log: &MemLog, index: Index, term: Term) -> Option<String> {
    let (first, last) = (log.first_index(), log.last_index());
    if first == index.next() {
        // The segment holding `index` is gone (compacted, or reset to this snapshot).
        return None;
    }
    if first > index.next() {
        return Some(format!(
            "the log starts at index {first}, leaving a gap after the snapshot index {index}"
        ));
    }
    if last < index {
        return Some(format!(
            "the log ends at index {last}, before the snapshot index {index}"
        ));
    }
    match log.term(index) {
        Some(held) if held == term => None,
        Some(held) => Some(format!(
            "the log holds index {index} at term {held}, the snapshot at term {term}"
        )),
        None => Some(format!("the log does not hold the snapshot index {index}")),
    }
}

/// Opens `dir` (creating it if missing) and replays its log, which continues `snapshot` if
/// one is given.
pub(crate) fn recover(
    dir: &Path,
    options: &WalOptions,
    snapshot: Option<(Index, Term)>,
) -> Result<Recovered, WalError> {
    let sync = !options.dangerously_skip_fsync;
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_error(dir, "create directory"))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            if sync {
                segment::sync_dir(parent)?;
            }
        }
    }
    let listing = segment::list(dir)?;
    let count = listing.segments.len();
    let unfinished = match listing.segments.last() {
        Some((_, path)) if is_unfinished(path)? => Some(path.clone()),
        _ => None,
    };
    let usable = count - usize::from(unfinished.is_some());
    let start = replay_start(&listing.segments, usable, snapshot)?;

    // Read and check everything first; change nothing on disk until the whole log replayed.
    let first = match listing.segments[..usable].get(start) {
        Some((name, _)) => name.first_index,
        None => snapshot.map_or(Index(1), |(index, _)| index.next()),
    };
    let mut replay = Replay {
        log: MemLog::new(first, Term::ZERO),
        hard_state: HardState::default(),
        rebase: snapshot.is_some(),
    };
    let mut torn = None;
    let mut buf = Vec::new();
    for (k, (name, path)) in listing.segments[..usable].iter().enumerate().skip(start) {
        let last = k + 1 == count;
        buf.clear();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(io_error(path, "read"))?;
        let header = match SegmentHeader::decode(&buf) {
            Ok(h) => h,
            Err(HeaderError::Version(version)) => {
                return Err(WalError::UnsupportedVersion {
                    path: path.clone(),
                    version,
                })
            }
            Err(e) => return Err(corrupt(path, 0, e.describe())),
        };
        check_header(header, *name).map_err(|r| corrupt(path, 0, r))?;
        let continues = replay.log.last_index().next();
        if header.first_index != continues {
            if snapshot.is_none() {
                return Err(corrupt(
                    path,
                    0,
                    format!(
                        "segment starts at index {} but the log before it ends at {}",
                        header.first_index,
                        continues.prev()
                    ),
                ));
            }
            // Only a reset after a snapshot starts a segment that does not continue the log
            // before it, and a reset removes every earlier segment once this one is durable: a
            // crash came in between. The segments before it are void.
            tracing::warn!(
                path = %path.display(),
                first_index = header.first_index.0,
                "WAL: a segment starts the log over after a snapshot (a reset the crash \
                 interrupted); the segments before it are void"
            );
            replay.log = MemLog::new(header.first_index, Term::ZERO);
        }
        replay.log.start_chunk();
        torn = replay.segment(path, &buf, last)?;
    }
    drop(buf);

    let mut log = replay.log;
    let mut log_discarded = false;
    if let Some((index, term)) = snapshot {
        match snapshot_mismatch(&log, index, term) {
            None => log.compact(index, term),
            Some(reason) => {
                tracing::warn!(
                    snapshot_index = index.0,
                    snapshot_term = term.0,
                    entries = log.len(),
                    "WAL: {reason}; the snapshot is committed state, so every entry is discarded \
                     and the log continues empty after it"
                );
                log = MemLog::new(index.next(), term);
                log_discarded = true;
            }
        }
    }
    let mut hard_state = replay.hard_state;
    let last_index = log.last_index();
    let clamped = hard_state.commit > last_index;
    if clamped {
        tracing::warn!(
            commit = hard_state.commit.0,
            last_index = last_index.0,
            "WAL: the recovered commit index is beyond the recovered log (its tail was lost); \
             clamping it to the last index"
        );
        hard_state.commit = last_index;
    }

    // Everything checked: now repair what a crash left.
    let mut dir_changed = false;
    for tmp in &listing.temporary {
        tracing::debug!(path = %tmp.display(), "removing an unfinished segment file");
        fs::remove_file(tmp).map_err(io_error(tmp, "remove"))?;
        dir_changed = true;
    }
    if let Some(path) = &unfinished {
        tracing::warn!(
            path = %path.display(),
            "removing the last WAL segment: its header is incomplete (a crash while creating it)"
        );
        fs::remove_file(path).map_err(io_error(path, "remove"))?;
        dir_changed = true;
    }
    let names: Vec<SegmentName> = listing.segments[..usable]
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let (segments, current) = if log_discarded {
        // As `Wal::reset` does: the fresh segment first (it carries the hard state), then the
        // rest, so that a crash in between leaves a directory that recovers the same way.
        let name = SegmentName {
            seq: names.last().map_or(0, |n| n.seq + 1),
            first_index: log.first_index(),
        };
        let seg = segment::create(dir, name, &hard_state, sync)?;
        for old in &names {
            segment::remove(dir, *old)?;
            dir_changed = true;
        }
        (VecDeque::from([name]), seg)
    } else {
        // Segments before the last one starting at or below the snapshot index + 1 hold only
        // what the snapshot covers (see `replay_start`).
        let covered = snapshot.map_or(0, |(index, _)| {
            names
                .iter()
                .rposition(|n| n.first_index <= index.next())
                .unwrap_or(0)
        });
        for old in &names[..covered] {
            segment::remove(dir, *old)?;
            dir_changed = true;
        }
        let mut segments: VecDeque<SegmentName> = names[covered..].iter().copied().collect();
        let current = match segments.back() {
            None => {
                let name = SegmentName {
                    seq: 0,
                    first_index: log.first_index(),
                };
                let seg = segment::create(dir, name, &hard_state, sync)?;
                segments.push_back(name);
                seg
            }
            Some(&name) => {
                let mut seg = open_last(dir, name, torn.as_ref(), sync)?;
                if clamped {
                    // Otherwise the stale commit index would come back on the next open, and
                    // could then cover entries appended since.
                    append_hard_state(&mut seg, &hard_state, sync)?;
                }
                seg
            }
        };
        (segments, current)
    };
    if dir_changed && sync {
        segment::sync_dir(dir)?;
    }

    let report = Recovery {
        segments: usable - start.min(usable),
        entries: log.len(),
        hard_state,
        torn_tail: torn,
        log_discarded,
    };
    Ok(Recovered {
        log,
        hard_state,
        segments,
        current,
        report,
    })
}

/// Opens the last segment for appending, first cutting off its torn tail if it has one.
fn open_last(
    dir: &Path,
    name: SegmentName,
    torn: Option<&TornTail>,
    sync: bool,
) -> Result<OpenSegment, WalError> {
    let path: PathBuf = name.path(dir);
    let mut file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io_error(&path, "open"))?;
    if let Some(t) = torn {
        tracing::warn!(
            path = %t.path.display(),
            offset = t.offset,
            bytes_dropped = t.bytes_dropped,
            "WAL: truncating a torn tail (a write cut short by a crash; it was never synced)"
        );
        file.set_len(t.offset)
            .map_err(io_error(&path, "truncate"))?;
        if sync {
            file.sync_all().map_err(io_error(&path, "sync"))?;
        }
    }
    let len = file
        .seek(SeekFrom::End(0))
        .map_err(io_error(&path, "seek"))?;
    Ok(OpenSegment {
        name,
        path,
        file,
        len,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use raft_core::{Entry, EntryKind, Storage};

    use super::*;
    use crate::wal::Wal;

    fn fast() -> WalOptions {
        WalOptions {
            dangerously_skip_fsync: true,
            ..WalOptions::default()
        }
    }

    /// A log of entries 1..=3 in segment 0; returns the segment's path.
    fn three_entries(dir: &Path) -> PathBuf {
        let (mut wal, _) = Wal::open(dir, fast(), None).expect("open");
        for i in 1..=3 {
            let e = Entry {
                index: Index(i),
                term: Term(1),
                kind: EntryKind::Normal,
                data: b"abc",
            };
            wal.append([e]).expect("append");
        }
        wal.sync().expect("sync");
        wal.current.path.clone()
    }

    fn append_bytes(path: &Path, bytes: &[u8]) {
        let mut all = fs::read(path).expect("read");
        all.extend_from_slice(bytes);
        fs::write(path, all).expect("write");
    }

    fn expect_corrupt(dir: &Path, at: &Path) -> (u64, String) {
        match Wal::open(dir, fast(), None) {
            Err(WalError::Corrupt {
                path,
                offset,
                reason,
            }) => {
                assert_eq!(path, at);
                (offset, reason)
            }
            Err(other) => panic!("expected Corrupt, got {other}"),
            Ok(_) => panic!("opened a damaged log"),
        }
    }

    #[test]
    fn segment_that_does_not_continue_the_log_refuses() {
        let tmp = tempfile::tempdir().expect("tempdir");
        three_entries(tmp.path());
        let name = SegmentName {
            seq: 1,
            first_index: Index(7),
        };
        let seg = segment::create(tmp.path(), name, &HardState::default(), false).expect("create");
        let (offset, reason) = expect_corrupt(tmp.path(), &seg.path);
        assert_eq!(offset, 0);
        assert!(reason.contains("starts at index 7"), "{reason}");
    }

    #[test]
    fn header_that_contradicts_the_file_name_refuses() {
        let tmp = tempfile::tempdir().expect("tempdir");
        three_entries(tmp.path());
        let name = SegmentName {
            seq: 1,
            first_index: Index(4),
        };
        let seg = segment::create(tmp.path(), name, &HardState::default(), false).expect("create");
        let renamed = SegmentName {
            seq: 1,
            first_index: Index(5),
        }
        .path(tmp.path());
        fs::rename(&seg.path, &renamed).expect("rename");
        let (_, reason) = expect_corrupt(tmp.path(), &renamed);
        assert!(reason.contains("file name says"), "{reason}");
    }

    #[test]
    fn whole_record_of_unknown_type_at_the_tail_refuses() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = three_entries(tmp.path());
        let len = fs::metadata(&path).expect("stat").len();
        let body = [9u8, 1, 2, 3];
        let mut rec = (body.len() as u32).to_le_bytes().to_vec();
        rec.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        rec.extend_from_slice(&body);
        append_bytes(&path, &rec);
        let (offset, reason) = expect_corrupt(tmp.path(), &path);
        assert_eq!(offset, len);
        assert!(reason.contains("unknown record type 9"), "{reason}");
        assert_eq!(
            fs::metadata(&path).expect("stat").len(),
            len + 12,
            "untouched"
        );
    }

    #[test]
    fn gap_in_entry_indices_refuses() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = three_entries(tmp.path());
        let len = fs::metadata(&path).expect("stat").len();
        let mut rec = Vec::new();
        record::encode_entry(&mut rec, Index(5), Term(1), 0, b"x");
        append_bytes(&path, &rec);
        let (offset, reason) = expect_corrupt(tmp.path(), &path);
        assert_eq!(offset, len);
        assert!(reason.contains("gap"), "{reason}");
    }

    #[test]
    fn other_format_version_refuses() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = three_entries(tmp.path());
        let mut bytes = fs::read(&path).expect("read");
        bytes[8] = 2;
        let crc = crc32c::crc32c(&bytes[..record::HEADER_LEN - 4]);
        bytes[record::HEADER_LEN - 4..record::HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, &bytes).expect("write");
        match Wal::open(tmp.path(), fast(), None) {
            Err(WalError::UnsupportedVersion { path: p, version }) => {
                assert_eq!((p, version), (path, 2));
            }
            Err(other) => panic!("expected UnsupportedVersion, got {other}"),
            Ok(_) => panic!("opened a log of another version"),
        }
    }

    #[test]
    fn overwrite_replays_in_the_middle_of_a_segment() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = three_entries(tmp.path());
        let mut recs = Vec::new();
        record::encode_entry(&mut recs, Index(2), Term(2), 0, b"new");
        record::encode_hard_state(
            &mut recs,
            &HardState {
                term: Term(2),
                vote: raft_core::NodeId(1),
                commit: Index(2),
            },
        );
        append_bytes(&path, &recs);
        let (wal, rec) = Wal::open(tmp.path(), fast(), None).expect("open");
        assert_eq!(rec.entries, 2);
        assert_eq!(
            wal.entry(Index(2)).map(|e| (e.term, e.data)),
            Ok((Term(2), &b"new"[..]))
        );
        assert_eq!(wal.hard_state().commit, Index(2));
    }
}
