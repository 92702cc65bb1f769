//! Writing a snapshot of the local state machine.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use raft_core::{Index, Term};

use super::format::{self, HEADER_LEN, TRAILER_LEN};
use super::{SnapshotError, SnapshotInfo, SnapshotStore};

/// Buffer between the state machine's writes and the file.
const BUF_LEN: usize = 256 << 10;
/// A snapshot being written is synced every this many bytes.
const SYNC_EVERY: u64 = 4 << 20;

/// A snapshot being written: the state machine's data goes in through [`Write`] (buffered, with
/// a running CRC), and [`SnapshotWriter::finish`] makes the file durable and the store's
/// latest. Made by [`SnapshotStore::create`].
///
/// Dropping it without `finish` (or after `finish` failed) deletes its temporary file; the
/// store's latest snapshot is unchanged. It borrows the store mutably, so while a snapshot is
/// being written the store serves nothing else (no [`SnapshotStore::read_chunk`]); to write
/// it on another thread while the store goes on, [`detach`](SnapshotWriter::detach) it.
#[derive(Debug)]
pub struct SnapshotWriter<'s> {
    store: &'s mut SnapshotStore,
    file: SnapshotFile,
}

/// A snapshot file being written, on its own: what [`SnapshotWriter::detach`] hands out, to be
/// written on any thread, then [`seal`](SnapshotFile::seal)ed, committed
/// ([`Sealed::commit`]) and adopted ([`SnapshotStore::adopt`]). Dropping it unsealed deletes
/// its temporary file.
#[derive(Debug)]
pub struct SnapshotFile {
    /// `None` once sealed.
    out: Option<BufWriter<File>>,
    /// `<dir>/<final name>.tmp`.
    tmp: PathBuf,
    dir: PathBuf,
    index: Index,
    term: Term,
    meta: Vec<u8>,
    /// CRC of every byte written so far, header included.
    crc: u32,
    data_len: u64,
    /// A copy of the first write error: every later write fails, and so does sealing.
    failed: Option<io::Error>,
    /// Bytes written since the file was last synced.
    unsynced: u64,
    /// Set once the temporary file is renamed or handed on; until then `drop` deletes it.
    installed: bool,
}

impl<'s> SnapshotWriter<'s> {
    /// Starts the file at `tmp` with the header and meta. The caller checked the meta length.
    pub(super) fn new(
        store: &'s mut SnapshotStore,
        tmp: PathBuf,
        file: File,
        index: Index,
        term: Term,
        meta: &[u8],
    ) -> SnapshotWriter<'s> {
        let header = format::encode_header(index, term, meta);
        let mut f = SnapshotFile {
            out: Some(BufWriter::with_capacity(BUF_LEN, file)),
            tmp,
            dir: store.dir.clone(),
            index,
            term,
            meta: meta.to_vec(),
            crc: crc32c::crc32c(&header),
            data_len: 0,
            failed: None,
            unsynced: 0,
            installed: false,
        };
        // Into the buffer, which holds it whole: reported with the first data write or
        // `finish` if it fails.
        if let Some(out) = f.out.as_mut() {
            if let Err(e) = out.write_all(&header) {
                f.failed = Some(copy(&e));
            }
        }
        SnapshotWriter { store, file: f }
    }

    /// The snapshot's index.
    pub fn index(&self) -> Index {
        self.file.index
    }

    /// The snapshot's term.
    pub fn term(&self) -> Term {
        self.file.term
    }

    /// Data bytes written so far.
    pub fn data_len(&self) -> u64 {
        self.file.data_len
    }

    /// Writes the trailer, fsyncs the file, renames it to its final name, fsyncs the
    /// directory, makes it the store's latest snapshot and deletes the older ones. Returns the
    /// new latest's description.
    ///
    /// Fails if any write failed before (the file is then deleted). Once this returns `Ok`
    /// the snapshot is durable.
    pub fn finish(mut self) -> Result<SnapshotInfo, SnapshotError> {
        let (file, info) = self.file.write_trailer()?;
        file.sync_all().map_err(|source| SnapshotError::Io {
            path: self.file.tmp.clone(),
            op: "sync",
            source,
        })?;
        let tmp = self.file.tmp.clone();
        self.store
            .install(&tmp, file, info, &mut self.file.installed)
    }

    /// Writes the trailer and flushes the file, without syncing it or making it the store's
    /// latest: the slow part, [`Sealed::commit`], can then run on another thread while the
    /// store goes on serving, and [`SnapshotStore::adopt`] makes it the latest afterwards.
    pub fn seal(self) -> Result<Sealed, SnapshotError> {
        self.file.seal()
    }

    /// Lets go of the store: the file goes on being written (on any thread), and is sealed,
    /// committed and adopted later.
    pub fn detach(self) -> SnapshotFile {
        self.file
    }
}

impl SnapshotFile {
    /// The snapshot's index.
    pub fn index(&self) -> Index {
        self.index
    }

    /// Writes the trailer and flushes the buffer: the file is whole (not yet synced).
    fn write_trailer(&mut self) -> Result<(File, SnapshotInfo), SnapshotError> {
        let io = |op: &'static str, path: &PathBuf| {
            let path = path.clone();
            move |source| SnapshotError::Io { path, op, source }
        };
        if let Some(e) = self.failed.take() {
            return Err(io("write", &self.tmp)(e));
        }
        let Some(mut out) = self.out.take() else {
            return Err(io("write", &self.tmp)(io::Error::other(
                "the writer was finished",
            )));
        };
        let trailer = format::encode_trailer(self.crc, self.data_len);
        out.write_all(&trailer).map_err(io("write", &self.tmp))?;
        let file = out
            .into_inner()
            .map_err(|e| io("write", &self.tmp)(e.into_error()))?;
        let meta = std::mem::take(&mut self.meta);
        let info = SnapshotInfo {
            index: self.index,
            term: self.term,
            file_len: HEADER_LEN + meta.len() as u64 + self.data_len + TRAILER_LEN,
            data_len: self.data_len,
            meta,
            path: self.dir.join(format::file_name(self.index, self.term)),
        };
        Ok((file, info))
    }

    /// [`SnapshotWriter::seal`], for a detached file.
    pub fn seal(mut self) -> Result<Sealed, SnapshotError> {
        let (file, info) = self.write_trailer()?;
        // The sealed file owns the temporary file from here on.
        self.installed = true;
        Ok(Sealed {
            tmp: self.tmp.clone(),
            dir: self.dir.clone(),
            file: Some(file),
            info,
        })
    }
}

/// A snapshot written in full but not yet durable (see [`SnapshotWriter::seal`]). It owns its
/// temporary file and may be sent to another thread; dropping it uncommitted deletes the file.
#[derive(Debug)]
pub struct Sealed {
    tmp: PathBuf,
    dir: PathBuf,
    /// `None` once committed.
    file: Option<File>,
    info: SnapshotInfo,
}

/// A durable snapshot file, for [`SnapshotStore::adopt`].
#[derive(Debug)]
pub struct Committed {
    pub(super) file: File,
    pub(super) info: SnapshotInfo,
}

impl Committed {
    /// The snapshot's description.
    pub fn info(&self) -> &SnapshotInfo {
        &self.info
    }
}

impl Sealed {
    /// The snapshot's description.
    pub fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    /// Fsyncs the file, renames it to its final name and fsyncs the directory: once this
    /// returns the snapshot is durable (a restart finds it), though not yet the store's latest.
    pub fn commit(mut self) -> Result<Committed, SnapshotError> {
        let io = |op: &'static str, path: &PathBuf| {
            let path = path.clone();
            move |source| SnapshotError::Io { path, op, source }
        };
        let Some(file) = self.file.take() else {
            return Err(io("sync", &self.tmp)(io::Error::other("already committed")));
        };
        let result = (|| {
            file.sync_all().map_err(io("sync", &self.tmp))?;
            fs::rename(&self.tmp, &self.info.path).map_err(io("rename", &self.tmp))?;
            Ok(())
        })();
        if let Err(e) = result {
            self.file = Some(file);
            return Err(e);
        }
        super::fsync_dir(&self.dir).map_err(io("sync directory", &self.dir))?;
        Ok(Committed {
            file,
            info: self.info.clone(),
        })
    }
}

impl Drop for Sealed {
    fn drop(&mut self) {
        if self.file.is_none() {
            return;
        }
        if let Err(e) = fs::remove_file(&self.tmp) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.tmp.display(), error = %e, "cannot remove an uncommitted snapshot file");
            }
        }
    }
}

impl Write for SnapshotFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(copy(e));
        }
        let Some(out) = self.out.as_mut() else {
            return Err(io::Error::other("the snapshot writer was finished"));
        };
        match out.write(buf) {
            Ok(n) => {
                self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
                self.data_len += n as u64;
                self.unsynced += n as u64;
                if self.unsynced >= SYNC_EVERY {
                    // Written back a few MiB at a time: a large snapshot never leaves so much
                    // dirty data that the log's next fsync (which a journaling file system may
                    // make wait for it) stalls the node.
                    self.unsynced = 0;
                    if let Err(e) = out.flush().and_then(|()| out.get_ref().sync_data()) {
                        self.failed = Some(copy(&e));
                        return Err(e);
                    }
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed = Some(copy(&e));
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(copy(e));
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        out.flush().inspect_err(|e| self.failed = Some(copy(e)))
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        if self.installed {
            return;
        }
        if let Some(out) = self.out.take() {
            // Not flushed: the file is going.
            drop(out.into_parts());
        }
        match fs::remove_file(&self.tmp) {
            Ok(()) => {
                tracing::debug!(path = %self.tmp.display(), "removed an unfinished snapshot file")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %self.tmp.display(),
                error = %e,
                "cannot remove an unfinished snapshot file (the next open removes it)"
            ),
        }
    }
}

impl Write for SnapshotWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `io::Error` is not `Clone`: a copy with the same kind and message.
fn copy(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}
