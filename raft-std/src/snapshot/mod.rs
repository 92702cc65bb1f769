//! Snapshots on disk: the state machine's state through a log index, in one self-checking file.
//!
//! A snapshot lets the log forget its prefix: once the state through index `i` is in a durable
//! snapshot, [`Wal::compact`](crate::wal::Wal::compact) drops the entries up to `i`. A node that
//! restarts restores its state machine from the latest snapshot and replays the log after it; a
//! follower too far behind receives the leader's snapshot file in chunks.
//!
//! [`SnapshotStore`] keeps one node's latest snapshot in a directory of its own (the node uses
//! `<data-dir>/snap`):
//!
//! - **taking** one: [`SnapshotStore::create`] hands out a [`SnapshotWriter`], the state machine
//!   writes its data into it, and [`SnapshotWriter::finish`] makes the file durable and the
//!   latest;
//! - **restoring**: [`SnapshotStore::open`] finds the latest and verifies it in full, and
//!   [`SnapshotStore::read_data`] reads its data back;
//! - **sending**: [`SnapshotStore::read_chunk`] reads the latest file's raw bytes at an offset;
//! - **receiving**: [`SnapshotStore::receive`], then [`SnapshotStore::write_chunk`] for each
//!   chunk in order, then [`SnapshotStore::finish_receive`], which verifies the file end to end
//!   and makes it the latest.
//!
//! What travels is the sender's file byte for byte, so the receiver checks the sender's CRC
//! over everything it received, and keeps exactly the file it checked.
//!
//! ```
//! use std::io::{Read, Write};
//! use raft_core::{Index, Term};
//! use raft_std::snapshot::SnapshotStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let (mut store, latest) = SnapshotStore::open(dir.path())?;
//! assert!(latest.is_none());
//! let mut w = store.create(Index(42), Term(3), b"members: 1, 2, 3")?;
//! w.write_all(b"the state machine's bytes")?;
//! let info = w.finish()?; // fsynced, renamed into place, directory fsynced
//! assert_eq!((info.index, info.data_len), (Index(42), 25));
//!
//! // After a restart: the latest snapshot, verified, and its data.
//! drop(store);
//! let (store, latest) = SnapshotStore::open(dir.path())?;
//! assert_eq!(latest.map(|l| l.meta), Some(b"members: 1, 2, 3".to_vec()));
//! let mut data = Vec::new();
//! store.read_data()?.read_to_end(&mut data)?;
//! assert_eq!(data, b"the state machine's bytes");
//! # Ok(())
//! # }
//! ```
//!
//! # Directory layout
//!
//! ```text
//! <dir>/00000000000a3f21-0000000000000007.snap        the latest: index 0xa3f21, term 7
//! <dir>/00000000000a4000-0000000000000007.snap.tmp    a snapshot being written
//! <dir>/incoming.tmp                                  a snapshot being received
//! ```
//!
//! A snapshot's name is `{index:016x}-{term:016x}.snap` (fixed width, so that names sort by
//! index). Only the latest is kept. A file is written under a temporary name, fsynced, renamed
//! into place and the directory fsynced before any older snapshot is deleted, so a crash leaves
//! the old latest or the new one, plus perhaps temporary files and older snapshots that the
//! next [`SnapshotStore::open`] deletes. Files whose names are not snapshot names are ignored,
//! with a warning.
//!
//! # Format
//!
//! All integers are little-endian:
//!
//! ```text
//! [magic: 8 = "TKRFSNAP"][version: u16 = 1][reserved: u16 = 0][index: u64][term: u64]
//! [meta_len: u32][meta: meta_len bytes]
//! [data: data_len bytes]
//! [data_len: u64][crc32c: u32]
//! ```
//!
//! The 32-byte header names the snapshot (the file name repeats index and term). The meta is
//! the caller's and opaque here (the node keeps the membership and an address book in it), at
//! most [`MAX_META_LEN`] (1 MiB). The data is the state machine's, streamed, of any length. The
//! CRC (CRC32C, Castagnoli) covers every byte of the file before it.
//!
//! A file verifies when it is at least 44 bytes long, starts with the magic, has version 1 and
//! a zero reserved field, a meta length within the limit and within the file, a CRC that
//! matches, the index and term expected (from its name, or announced by the transfer), and a
//! data length that accounts for every byte between the meta and the trailer. Anything else is
//! [`SnapshotError::Corrupt`], naming the file and what is wrong. Reading never allocates from
//! a length before checking it, and never panics on any bytes.
//!
//! # Opening
//!
//! [`SnapshotStore::open`] creates the directory if missing, picks the newest snapshot by file
//! name (index, then term) and verifies all of it. If it is damaged, `open` refuses with
//! [`SnapshotError::Corrupt`] and leaves every file as it was, older snapshots included: the
//! log may already be compacted behind the damaged one, so falling back silently could lose
//! committed state. Otherwise it deletes the older snapshots and the temporary files.

mod error;
mod format;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use raft_core::{Index, Term};

pub use self::error::SnapshotError;
pub use self::writer::{Committed, Sealed, SnapshotFile, SnapshotWriter};
use crate::wal::fsync_dir;

/// The largest meta a snapshot may hold: 1 MiB.
pub const MAX_META_LEN: usize = format::MAX_META_LEN;

/// A snapshot on disk, as verified by [`SnapshotStore::open`] or written or received since.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The last log index the snapshot covers.
    pub index: Index,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The caller's meta (the node's membership and address book).
    pub meta: Vec<u8>,
    /// Bytes in the whole file: what a transfer sends.
    pub file_len: u64,
    /// Bytes of state machine data.
    pub data_len: u64,
    /// The file.
    pub path: PathBuf,
}

/// The latest snapshot, its file kept open for [`SnapshotStore::read_chunk`] (a transfer in
/// progress keeps reading the file it started on until a newer one replaces it).
#[derive(Debug)]
struct Latest {
    info: SnapshotInfo,
    file: File,
}

/// A transfer being received into [`format::INCOMING`].
#[derive(Debug)]
struct Incoming {
    index: Index,
    term: Term,
    file: File,
    /// Bytes written so far: the offset the next chunk must have.
    received: u64,
}

/// A transfer in progress, as [`SnapshotStore::receiving`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receiving {
    /// The index announced for the snapshot.
    pub index: Index,
    /// The term announced for it.
    pub term: Term,
    /// Bytes received so far: the offset the next chunk must have.
    pub received: u64,
}

/// A node's snapshots in one directory: the latest, one being written, one being received.
///
/// Writes take `&mut self`: one thread (the node's) owns the store. The latest snapshot only
/// moves forward: one older than it is refused ([`SnapshotError::Stale`]); one at the same
/// index replaces it.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    latest: Option<Latest>,
    incoming: Option<Incoming>,
}

/// Builds the error for a failed I/O operation on `path`.
fn io_error<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(io::Error) -> SnapshotError + 'p {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Removes `path`; a file already gone is not an error.
fn remove(path: &Path) -> Result<(), SnapshotError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, "remove")(e)),
    }
}

/// The files of a snapshot directory that matter.
#[derive(Debug, Default)]
struct Listing {
    snapshots: Vec<(Index, Term, PathBuf)>,
    temporary: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Listing, SnapshotError> {
    let mut listing = Listing::default();
    for item in fs::read_dir(dir).map_err(io_error(dir, "list directory"))? {
        let item = item.map_err(io_error(dir, "list directory"))?;
        let path = item.path();
        match item.file_name().to_str() {
            Some(name) if name.ends_with(format::TMP_SUFFIX) => listing.temporary.push(path),
            Some(name) => match format::parse_name(name) {
                Some((index, term)) => listing.snapshots.push((index, term, path)),
                None => tracing::warn!(
                    path = %path.display(),
                    "ignoring a file in the snapshot directory whose name is not \
                     {{index:016x}}-{{term:016x}}.snap"
                ),
            },
            None => tracing::warn!(
                path = %path.display(),
                "ignoring a file in the snapshot directory whose name is not UTF-8"
            ),
        }
    }
    listing
        .snapshots
        .sort_by_key(|(index, term, _)| (*index, *term));
    Ok(listing)
}

impl SnapshotStore {
    /// Opens the store in `dir` (creating the directory if missing) and returns it with its
    /// latest snapshot, verified in full; see [Opening](self#opening).
    pub fn open(dir: &Path) -> Result<(SnapshotStore, Option<SnapshotInfo>), SnapshotError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(io_error(dir, "create directory"))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent).map_err(io_error(parent, "sync directory"))?;
            }
        }
        let listing = list(dir)?;
        let latest = match listing.snapshots.last() {
            None => None,
            Some((index, term, path)) => Some(Self::load(path, *index, *term)?),
        };

        // Verified: now tidy up.
        let mut removed = false;
        for tmp in &listing.temporary {
            tracing::debug!(path = %tmp.display(), "removing an unfinished snapshot file");
            remove(tmp)?;
            removed = true;
        }
        let older = listing.snapshots.len().saturating_sub(1);
        for (_, _, path) in &listing.snapshots[..older] {
            tracing::debug!(path = %path.display(), "removing an older snapshot");
            remove(path)?;
            removed = true;
        }
        if removed {
            fsync_dir(dir).map_err(io_error(dir, "sync directory"))?;
        }
        let info = latest.as_ref().map(|l| l.info.clone());
        let store = SnapshotStore {
            dir: dir.to_path_buf(),
            latest,
            incoming: None,
        };
        Ok((store, info))
    }

    /// Opens and verifies the snapshot file `path`, named for `index` and `term`.
    fn load(path: &Path, index: Index, term: Term) -> Result<Latest, SnapshotError> {
        let file = File::open(path).map_err(io_error(path, "open"))?;
        let len = file.metadata().map_err(io_error(path, "stat"))?.len();
        let verified = Self::verify(path, &file, len, index, term)?;
        let info = SnapshotInfo {
            index,
            term,
            meta: verified.meta,
            file_len: len,
            data_len: verified.data_len,
            path: path.to_path_buf(),
        };
        Ok(Latest { info, file })
    }

    fn verify(
        path: &Path,
        file: &File,
        len: u64,
        index: Index,
        term: Term,
    ) -> Result<format::Verified, SnapshotError> {
        format::verify(file, len, index, term).map_err(|e| match e {
            format::Invalid::Io(source) => io_error(path, "read")(source),
            format::Invalid::Corrupt(reason) => SnapshotError::Corrupt {
                path: path.to_path_buf(),
                reason,
            },
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest snapshot, if there is one.
    pub fn latest(&self) -> Option<&SnapshotInfo> {
        self.latest.as_ref().map(|l| &l.info)
    }

    /// Refuses a snapshot at `index` if the latest is newer.
    fn check_not_stale(&self, index: Index) -> Result<(), SnapshotError> {
        match self.latest() {
            Some(l) if l.index > index => Err(SnapshotError::Stale {
                dir: self.dir.clone(),
                index,
                latest: l.index,
            }),
            _ => Ok(()),
        }
    }

    /// Starts writing a snapshot of the state through `index` (whose entry has term `term`),
    /// with the caller's `meta` (at most [`MAX_META_LEN`] bytes). The state machine writes its
    /// data into the returned writer; see [`SnapshotWriter::finish`].
    ///
    /// Refuses an index below the latest snapshot's ([`SnapshotError::Stale`]) and meta over
    /// the limit ([`SnapshotError::MetaTooLarge`]); neither changes anything.
    pub fn create(
        &mut self,
        index: Index,
        term: Term,
        meta: &[u8],
    ) -> Result<SnapshotWriter<'_>, SnapshotError> {
        if meta.len() > MAX_META_LEN {
            return Err(SnapshotError::MetaTooLarge {
                dir: self.dir.clone(),
                len: meta.len(),
                max: MAX_META_LEN,
            });
        }
        self.check_not_stale(index)?;
        let tmp = self.dir.join(format!(
            "{}{}",
            format::file_name(index, term),
            format::TMP_SUFFIX
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_error(&tmp, "create"))?;
        Ok(SnapshotWriter::new(self, tmp, file, index, term, meta))
    }

    /// Makes the synced, verified or freshly written file at `tmp` the latest snapshot:
    /// renames it to `info.path`, fsyncs the directory, then deletes every other snapshot.
    /// Sets `renamed` once the temporary file is gone, so that the caller does not delete it.
    fn install(
        &mut self,
        tmp: &Path,
        file: File,
        info: SnapshotInfo,
        renamed: &mut bool,
    ) -> Result<SnapshotInfo, SnapshotError> {
        fs::rename(tmp, &info.path).map_err(io_error(tmp, "rename"))?;
        *renamed = true;
        fsync_dir(&self.dir).map_err(io_error(&self.dir, "sync directory"))?;
        Ok(self.make_latest(file, info))
    }

    /// Makes the durable snapshot `info` (open as `file`) the latest, and deletes the others.
    fn make_latest(&mut self, file: File, info: SnapshotInfo) -> SnapshotInfo {
        tracing::info!(
            path = %info.path.display(),
            index = info.index.0,
            term = info.term.0,
            bytes = info.file_len,
            "new latest snapshot"
        );
        self.latest = Some(Latest {
            info: info.clone(),
            file,
        });
        self.remove_others(&info.path);
        info
    }

    /// Makes a snapshot committed off the store's thread ([`Sealed::commit`]) the latest and
    /// deletes the older ones. One older than the latest (a snapshot received from the leader
    /// overtook it) is deleted instead, and the answer is [`SnapshotError::Stale`].
    pub fn adopt(&mut self, committed: Committed) -> Result<SnapshotInfo, SnapshotError> {
        let Committed { file, info } = committed;
        if let Err(e) = self.check_not_stale(info.index) {
            drop(file);
            if let Err(e) = remove(&info.path) {
                tracing::warn!(error = %e, "cannot remove a stale snapshot");
            }
            return Err(e);
        }
        Ok(self.make_latest(file, info))
    }

    /// Deletes every snapshot but `keep`. The kept one is durable, so this is tidying: a file
    /// left behind is deleted by the next open, and failing here would report a durable
    /// snapshot as lost.
    fn remove_others(&self, keep: &Path) {
        match list(&self.dir) {
            Ok(listing) => {
                for (_, _, path) in listing.snapshots {
                    if path != keep {
                        if let Err(e) = remove(&path) {
                            tracing::warn!(error = %e, "cannot remove an older snapshot");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the older snapshots to remove"),
        }
    }

    /// A reader over the data section of the latest snapshot (for restoring a state machine).
    /// It reads through its own handle on the file, so it stays valid while the store goes on
    /// (even once a newer snapshot replaces the file), and yields exactly `data_len` bytes.
    pub fn read_data(&self) -> Result<SnapshotData, SnapshotError> {
        let latest = self
            .latest
            .as_ref()
            .ok_or_else(|| SnapshotError::NoSnapshot {
                dir: self.dir.clone(),
            })?;
        let file = latest
            .file
            .try_clone()
            .map_err(io_error(&latest.info.path, "duplicate handle"))?;
        let start = format::HEADER_LEN + latest.info.meta.len() as u64;
        Ok(SnapshotData {
            file,
            pos: start,
            end: start + latest.info.data_len,
        })
    }

    /// Reads raw bytes of the latest snapshot's file from `offset` into `buf`, for sending it
    /// to a follower in chunks; returns how many were read, which is `buf.len()` except at the
    /// end of the file, and 0 from the end on.
    ///
    /// `index` names the snapshot being sent: if the latest is another one (a newer one
    /// replaced it), this fails with [`SnapshotError::Replaced`], and the transfer should
    /// start over with the latest. (A snapshot replaced by one at the same index is not
    /// noticed here; the receiver's CRC check fails instead.)
    pub fn read_chunk(
        &self,
        index: Index,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, SnapshotError> {
        let latest = match &self.latest {
            None => {
                return Err(SnapshotError::NoSnapshot {
                    dir: self.dir.clone(),
                })
            }
            Some(l) if l.info.index != index => {
                return Err(SnapshotError::Replaced {
                    dir: self.dir.clone(),
                    index,
                    latest: l.info.index,
                })
            }
            Some(l) => l,
        };
        let left = latest.info.file_len.saturating_sub(offset);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        format::read_full_at(&latest.file, &mut buf[..want], offset)
            .map_err(io_error(&latest.info.path, "read"))
    }

    /// Starts receiving the snapshot at `index` (term `term`) from the leader, into a
    /// temporary file; any transfer in progress is discarded first. Chunks follow through
    /// [`SnapshotStore::write_chunk`], and [`SnapshotStore::finish_receive`] ends it.
    ///
    /// Refuses an index below the latest snapshot's ([`SnapshotError::Stale`], after
    /// discarding the transfer in progress).
    pub fn receive(&mut self, index: Index, term: Term) -> Result<(), SnapshotError> {
        self.abort_receive();
        self.check_not_stale(index)?;
        let path = self.incoming_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_error(&path, "create"))?;
        self.incoming = Some(Incoming {
            index,
            term,
            file,
            received: 0,
        });
        Ok(())
    }

    fn incoming_path(&self) -> PathBuf {
        self.dir.join(format::INCOMING)
    }

    /// The transfer in progress, if any.
    pub fn receiving(&self) -> Option<Receiving> {
        self.incoming.as_ref().map(|i| Receiving {
            index: i.index,
            term: i.term,
            received: i.received,
        })
    }

    /// Appends a chunk of the file being received. `offset` must be the number of bytes
    /// received so far, or 0 to start the file over (a sender that restarted); anything else
    /// is [`SnapshotError::OutOfOrder`] and changes nothing.
    ///
    /// Without a transfer in progress: [`SnapshotError::NotReceiving`]. A failed write
    /// discards the transfer (it has to start over with [`SnapshotStore::receive`]).
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<(), SnapshotError> {
        let path = self.incoming_path();
        let Some(incoming) = self.incoming.as_mut() else {
            return Err(SnapshotError::NotReceiving {
                dir: self.dir.clone(),
            });
        };
        if offset != incoming.received && offset != 0 {
            return Err(SnapshotError::OutOfOrder {
                path,
                expected: incoming.received,
                got: offset,
            });
        }
        let result = (|| {
            if offset == 0 && incoming.received != 0 {
                incoming
                    .file
                    .set_len(0)
                    .map_err(io_error(&path, "truncate"))?;
                incoming
                    .file
                    .seek(SeekFrom::Start(0))
                    .map_err(io_error(&path, "seek"))?;
                incoming.received = 0;
            }
            incoming
                .file
                .write_all(data)
                .map_err(io_error(&path, "write"))?;
            incoming.received += data.len() as u64;
            Ok(())
        })();
        if result.is_err() {
            self.abort_receive();
        }
        result
    }

    /// Ends the transfer in progress: verifies the file received end to end (magic, version,
    /// the index and term announced to [`SnapshotStore::receive`], the meta length, the CRC,
    /// the data length), fsyncs it, renames it to its final name, fsyncs the directory,
    /// deletes the older snapshots, and returns the new latest's description.
    ///
    /// A file that fails verification is deleted, and the error is
    /// [`SnapshotError::Corrupt`] with the reason. Without a transfer in progress:
    /// [`SnapshotError::NotReceiving`]. Either way no transfer is in progress afterwards.
    pub fn finish_receive(&mut self) -> Result<SnapshotInfo, SnapshotError> {
        let Some(incoming) = self.incoming.take() else {
            return Err(SnapshotError::NotReceiving {
                dir: self.dir.clone(),
            });
        };
        let tmp = self.incoming_path();
        let mut renamed = false;
        let result = self.install_incoming(&tmp, incoming, &mut renamed);
        if !renamed {
            if let Err(e) = remove(&tmp) {
                tracing::warn!(error = %e, "cannot remove a failed snapshot transfer");
            }
        }
        if let Err(e) = &result {
            tracing::warn!(error = %e, "snapshot transfer refused");
        }
        result
    }

    fn install_incoming(
        &mut self,
        tmp: &Path,
        incoming: Incoming,
        renamed: &mut bool,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let Incoming {
            index,
            term,
            file,
            received,
        } = incoming;
        let verified = Self::verify(tmp, &file, received, index, term)?;
        file.sync_all().map_err(io_error(tmp, "sync"))?;
        // A snapshot written locally while this one arrived may have overtaken it.
        self.check_not_stale(index)?;
        let info = SnapshotInfo {
            index,
            term,
            meta: verified.meta,
            file_len: received,
            data_len: verified.data_len,
            path: self.dir.join(format::file_name(index, term)),
        };
        self.install(tmp, file, info, renamed)
    }

    /// Discards the transfer in progress, if any, and deletes its file.
    pub fn abort_receive(&mut self) {
        if self.incoming.take().is_some() {
            if let Err(e) = remove(&self.incoming_path()) {
                tracing::warn!(error = %e, "cannot remove an abandoned snapshot transfer");
            }
        }
    }
}

impl Drop for SnapshotStore {
    fn drop(&mut self) {
        self.abort_receive();
    }
}

/// The data section of a snapshot, from [`SnapshotStore::read_data`]: reads exactly
/// `data_len` bytes, then reports the end.
#[derive(Debug)]
pub struct SnapshotData {
    file: File,
    /// The file offset of the next byte to read.
    pos: u64,
    /// The file offset just past the data.
    end: u64,
}

impl SnapshotData {
    /// Data bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }
}

impl Read for SnapshotData {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.remaining()).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = format::read_at(&self.file, &mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the snapshot file is shorter than when it was verified",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}
