//! Segment files: their names, listing them, and creating one durably.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use raft_core::{HardState, Index};

use super::record::{self, SegmentHeader};
use super::WalError;

/// The suffix of a segment file.
const SUFFIX: &str = ".wal";
/// The suffix of a segment being created; renamed to [`SUFFIX`] once its header is durable.
const TMP_SUFFIX: &str = ".wal.tmp";
const HEX: usize = 16;

/// Builds the error for a failed I/O operation on `path`.
pub(crate) fn io_error<'p>(
    path: &'p Path,
    op: &'static str,
) -> impl FnOnce(io::Error) -> WalError + 'p {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// What a segment's file name says; the header must say the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentName {
    pub(crate) seq: u64,
    pub(crate) first_index: Index,
}

impl SegmentName {
    /// `{seq:016x}-{first_index:016x}.wal`: fixed width, so that sorting names sorts segments.
    pub(crate) fn file_name(self) -> String {
        format!("{:016x}-{:016x}{SUFFIX}", self.seq, self.first_index.0)
    }

    pub(crate) fn path(self, dir: &Path) -> PathBuf {
        dir.join(self.file_name())
    }

    /// Parses a file name ending in `.wal`; `None` if it is not one this module writes.
    fn parse(name: &str) -> Option<SegmentName> {
        let stem = name.strip_suffix(SUFFIX)?;
        let (seq, first) = stem.split_once('-')?;
        Some(SegmentName {
            seq: parse_hex(seq)?,
            first_index: Index(parse_hex(first)?),
        })
    }
}

/// Exactly 16 lowercase hex digits (`from_str_radix` alone would accept `+`, case and width
/// variations, and two spellings of one segment would then sort apart). Snapshot file names
/// use the same spelling.
pub(crate) fn parse_hex(s: &str) -> Option<u64> {
    let well_formed = s.len() == HEX && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    well_formed
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

/// The files of a WAL directory that matter.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segments, sorted by sequence number.
    pub(crate) segments: Vec<(SegmentName, PathBuf)>,
    /// Segments whose creation did not finish (left by a crash); to be removed.
    pub(crate) temporary: Vec<PathBuf>,
}

/// Lists `dir`. A `*.wal` file whose name is not a segment name is refused rather than
/// ignored: it may be a segment someone renamed, and skipping it could skip committed data.
pub(crate) fn list(dir: &Path) -> Result<Listing, WalError> {
    let mut listing = Listing::default();
    for item in fs::read_dir(dir).map_err(io_error(dir, "list directory"))? {
        let item = item.map_err(io_error(dir, "list directory"))?;
        let name = item.file_name();
        // Names that are not UTF-8 are not ours.
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            listing.temporary.push(item.path());
        } else if name.ends_with(SUFFIX) {
            let Some(seg) = SegmentName::parse(name) else {
                return Err(WalError::Corrupt {
                    path: item.path(),
                    offset: 0,
                    reason: "a .wal file whose name is not {seq:016x}-{first_index:016x}.wal"
                        .to_owned(),
                });
            };
            listing.segments.push((seg, item.path()));
        }
    }
    listing.segments.sort_by_key(|(seg, _)| seg.seq);
    Ok(listing)
}

/// Makes the directory's entries (files created, renamed, removed) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    fsync_dir(dir).map_err(io_error(dir, "sync directory"))
}

/// [`sync_dir`] with the bare `io::Error`, for the snapshot store's own error type.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// Removes segment `name` (compaction, or a reset after a snapshot). A file already gone is
/// not an error: the point is that it is not there.
pub(crate) fn remove(dir: &Path, name: SegmentName) -> Result<(), WalError> {
    let path = name.path(dir);
    match fs::remove_file(&path) {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "WAL: removed a segment");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(&path, "remove")(e)),
    }
}

/// A segment file open for appending.
#[derive(Debug)]
pub(crate) struct OpenSegment {
    pub(crate) name: SegmentName,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// Bytes in the file; new records go here.
    pub(crate) len: u64,
}

/// Creates segment `name` holding its header and `hs` as its first record, so that the hard
/// state survives the removal of every earlier segment.
///
/// The file is written under a temporary name, synced, renamed into place, and the directory
/// synced: a crash leaves either no segment or a complete one (plus perhaps a temporary file,
/// which the next open removes). With `sync` false every fsync is skipped.
pub(crate) fn create(
    dir: &Path,
    name: SegmentName,
    hs: &HardState,
    sync: bool,
) -> Result<OpenSegment, WalError> {
    let path = name.path(dir);
    let tmp = dir.join(format!("{}.tmp", name.file_name()));
    let mut buf = Vec::with_capacity(record::HEADER_LEN + record::HARD_STATE_RECORD_LEN);
    SegmentHeader {
        seq: name.seq,
        first_index: name.first_index,
    }
    .encode(&mut buf);
    record::encode_hard_state(&mut buf, hs);

    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_error(&tmp, "create"))?;
    file.write_all(&buf)
        .map_err(io_error(&tmp, "write header"))?;
    if sync {
        file.sync_all().map_err(io_error(&tmp, "sync"))?;
    }
    fs::rename(&tmp, &path).map_err(io_error(&tmp, "rename"))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(OpenSegment {
        name,
        path,
        file,
        len: buf.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_segment_order_and_parse_back() {
        let a = SegmentName {
            seq: 9,
            first_index: Index(500),
        };
        let b = SegmentName {
            seq: 10,
            first_index: Index(7),
        };
        assert_eq!(a.file_name(), "0000000000000009-00000000000001f4.wal");
        assert!(a.file_name() < b.file_name());
        assert_eq!(SegmentName::parse(&a.file_name()), Some(a));
        assert_eq!(SegmentName::parse(&b.file_name()), Some(b));
    }

    #[test]
    fn odd_names_are_not_segments() {
        for name in [
            "x.wal",
            "0000000000000009.wal",
            "000000000000000A-0000000000000001.wal",
            "+00000000000000a-0000000000000001.wal",
            "0000000000000009-00000000000000001.wal",
            "0000000000000009-0000000000000001.wal.tmp",
        ] {
            assert_eq!(SegmentName::parse(name), None, "{name}");
        }
    }
}
