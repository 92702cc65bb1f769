//! Opening a WAL directory: replaying its segments and repairing what a crash can leave.
//!
//! Recovery first reads and checks everything without touching a file, so that a refusal
//! ([`WalError::Corrupt`]) leaves the directory exactly as it found it for an operator to
//! inspect. Only once the whole log has replayed does it repair what a crash explains: it
//! removes temporary files, removes a last segment whose header never became durable, cuts a
//! torn tail off the last segment, and records a commit index clamped to the recovered log.

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
                    return Err(format!(
                        "entry {} overwrites below the log's first index {}",
                        e.index,
                        self.log.first_index()
                    ));
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

/// Checks that segment number `i` (counting from 0 in the sorted listing) has sequence number
/// `i`. Compaction will let the first segment start later; until then the log starts at
/// segment 0, and anything else means segments went missing.
fn check_seq(i: usize, name: SegmentName, path: &Path) -> Result<(), WalError> {
    let expected = i as u64;
    if name.seq == expected {
        return Ok(());
    }
    let reason = if name.seq < expected {
        format!("a second segment with sequence number {:#x}", name.seq)
    } else if i == 0 {
        format!(
            "the first segment has sequence number {:#x}, not 0: segments before it are missing",
            name.seq
        )
    } else {
        format!("segment {expected:#x} is missing before this one")
    };
    Err(corrupt(path, 0, reason))
}

/// Checks a decoded header against the file name and the log replayed so far.
fn check_header(header: SegmentHeader, name: SegmentName, last: Index) -> Result<(), String> {
    if header.seq != name.seq || header.first_index != name.first_index {
        return Err(format!(
            "header says segment {:#x} from index {}, the file name says {:#x} from {}",
            header.seq, header.first_index, name.seq, name.first_index
        ));
    }
    if header.first_index != last.next() {
        return Err(format!(
            "segment starts at index {} but the log before it ends at {last}",
            header.first_index
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

/// Opens `dir` (creating it if missing) and replays its log.
pub(crate) fn recover(dir: &Path, options: &WalOptions) -> Result<Recovered, WalError> {
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

    // Read and check everything first; change nothing on disk until the whole log replayed.
    let mut replay = Replay {
        log: MemLog::new(Index(1), Term(0)),
        hard_state: HardState::default(),
    };
    let mut torn = None;
    let mut unfinished = None;
    let mut buf = Vec::new();
    let count = listing.segments.len();
    for (i, (name, path)) in listing.segments.iter().enumerate() {
        let last = i + 1 == count;
        check_seq(i, *name, path)?;
        buf.clear();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(io_error(path, "read"))?;
        let header = match SegmentHeader::decode(&buf) {
            Ok(h) => h,
            Err(e) if last && is_unfinished_creation(e, buf.len()) => {
                unfinished = Some(path.clone());
                break;
            }
            Err(HeaderError::Version(version)) => {
                return Err(WalError::UnsupportedVersion {
                    path: path.clone(),
                    version,
                })
            }
            Err(e) => return Err(corrupt(path, 0, e.describe())),
        };
        check_header(header, *name, replay.log.last_index()).map_err(|r| corrupt(path, 0, r))?;
        replay.log.start_chunk();
        torn = replay.segment(path, &buf, last)?;
    }
    drop(buf);

    // Everything checked: now repair what a crash left.
    let mut dir_changed = false;
    for tmp in &listing.temporary {
        tracing::debug!(path = %tmp.display(), "removing an unfinished segment file");
        fs::remove_file(tmp).map_err(io_error(tmp, "remove"))?;
        dir_changed = true;
    }
    let mut segments: VecDeque<SegmentName> =
        listing.segments.iter().map(|(name, _)| *name).collect();
    if let Some(path) = &unfinished {
        tracing::warn!(
            path = %path.display(),
            "removing the last WAL segment: its header is incomplete (a crash while creating it)"
        );
        fs::remove_file(path).map_err(io_error(path, "remove"))?;
        segments.pop_back();
        dir_changed = true;
    }
    if dir_changed && sync {
        segment::sync_dir(dir)?;
    }

    let mut hard_state = replay.hard_state;
    let last_index = replay.log.last_index();
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

    let current = match segments.back() {
        None => {
            let name = SegmentName {
                seq: 0,
                first_index: Index(1),
            };
            let seg = segment::create(dir, name, &hard_state, sync)?;
            segments.push_back(name);
            seg
        }
        Some(&name) => {
            let mut seg = open_last(dir, name, torn.as_ref(), sync)?;
            if clamped {
                // Otherwise the stale commit index would come back on the next open, and could
                // then cover entries appended since.
                append_hard_state(&mut seg, &hard_state, sync)?;
            }
            seg
        }
    };
    let report = Recovery {
        segments: count - usize::from(unfinished.is_some()),
        entries: replay.log.len(),
        hard_state,
        torn_tail: torn,
    };
    Ok(Recovered {
        log: replay.log,
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
        let (mut wal, _) = Wal::open(dir, fast()).expect("open");
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
        match Wal::open(dir, fast()) {
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
        match Wal::open(tmp.path(), fast()) {
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
        let (wal, rec) = Wal::open(tmp.path(), fast()).expect("open");
        assert_eq!(rec.entries, 2);
        assert_eq!(
            wal.entry(Index(2)).map(|e| (e.term, e.data)),
            Ok((Term(2), &b"new"[..]))
        );
        assert_eq!(wal.hard_state().commit, Index(2));
    }
}
