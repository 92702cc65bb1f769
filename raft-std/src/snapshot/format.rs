//! The bytes of a snapshot file and its name (the format is described in the
//! [module docs](super)), and the one check that both opening and receiving run.
//!
//! Verification never panics and never trusts a length: the meta length is bounded before
//! anything is allocated from it, and every read is positioned within the file's known size.

use std::fs::File;
use std::io;

use raft_core::{Index, Term};

use crate::wal::parse_hex;
use crate::wal::record::{u32_at, u64_at};

/// The first bytes of every snapshot file.
pub(crate) const MAGIC: [u8; 8] = *b"TKRFSNAP";
/// The format version this build writes and reads.
pub(crate) const VERSION: u16 = 1;
/// Magic, version, reserved, index, term, meta length.
pub(crate) const HEADER_LEN: u64 = 8 + 2 + 2 + 8 + 8 + 4;
/// Data length and CRC.
pub(crate) const TRAILER_LEN: u64 = 8 + 4;
/// The largest meta a snapshot file may hold: 1 MiB.
pub(crate) const MAX_META_LEN: usize = 1 << 20;

const SUFFIX: &str = ".snap";
/// The suffix of every file still being written (by a writer or a transfer).
pub(crate) const TMP_SUFFIX: &str = ".tmp";
/// The file a transfer from the leader is received into.
pub(crate) const INCOMING: &str = "incoming.tmp";

/// `{index:016x}-{term:016x}.snap`: fixed width, so that sorting names sorts snapshots.
pub(crate) fn file_name(index: Index, term: Term) -> String {
    format!("{:016x}-{:016x}{SUFFIX}", index.0, term.0)
}

/// Parses a snapshot file name; `None` if it is not one this module writes.
pub(crate) fn parse_name(name: &str) -> Option<(Index, Term)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (index, term) = stem.split_once('-')?;
    Some((Index(parse_hex(index)?), Term(parse_hex(term)?)))
}

/// The header and meta: the first bytes of a snapshot file. The caller has checked
/// `meta.len() <= MAX_META_LEN`.
pub(crate) fn encode_header(index: Index, term: Term, meta: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN as usize + meta.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&index.0.to_le_bytes());
    out.extend_from_slice(&term.0.to_le_bytes());
    // Lossless: the caller bounds the meta at 1 MiB.
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(meta);
    out
}

/// The trailer: the data length, then the CRC over everything before the CRC field. `crc` is
/// the running CRC of the header, meta and data.
pub(crate) fn encode_trailer(crc: u32, data_len: u64) -> [u8; TRAILER_LEN as usize] {
    let len = data_len.to_le_bytes();
    let crc = crc32c::crc32c_append(crc, &len);
    let mut out = [0; TRAILER_LEN as usize];
    out[..8].copy_from_slice(&len);
    out[8..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// What a verified file holds.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) meta: Vec<u8>,
    pub(crate) data_len: u64,
}

/// Why a file did not verify.
#[derive(Debug)]
pub(crate) enum Invalid {
    /// Reading it failed.
    Io(io::Error),
    /// Its bytes are not a snapshot of the expected index and term.
    Corrupt(String),
}

impl From<io::Error> for Invalid {
    fn from(e: io::Error) -> Self {
        Invalid::Io(e)
    }
}

/// Checks that `file`, `len` bytes long, is a whole snapshot file of index `index` and term
/// `term`: magic, version, reserved field, a meta length within bounds and within the file,
/// the CRC over the whole file, the header's index and term, and a data length that accounts
/// for every byte. Reads the file once, front to back.
pub(crate) fn verify(file: &File, len: u64, index: Index, term: Term) -> Result<Verified, Invalid> {
    let corrupt = |reason: String| Err(Invalid::Corrupt(reason));
    if len < HEADER_LEN + TRAILER_LEN {
        return corrupt(format!(
            "{len} bytes, fewer than a header and a trailer ({} bytes)",
            HEADER_LEN + TRAILER_LEN
        ));
    }
    let mut header = [0; HEADER_LEN as usize];
    read_exact_at(file, &mut header, 0)?;
    if header[..8] != MAGIC {
        return corrupt("the file does not start with the snapshot magic \"TKRFSNAP\"".into());
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != VERSION {
        return corrupt(format!(
            "format version {version}, which this build does not read (it reads {VERSION})"
        ));
    }
    let reserved = u16::from_le_bytes([header[10], header[11]]);
    if reserved != 0 {
        return corrupt(format!("the reserved header field is {reserved}, not 0"));
    }
    let meta_len = u32_at(&header, 28);
    if meta_len as usize > MAX_META_LEN {
        return corrupt(format!(
            "the meta length {meta_len} exceeds the limit of {MAX_META_LEN} bytes"
        ));
    }
    let data_start = HEADER_LEN + u64::from(meta_len);
    let Some(data_len) = len.checked_sub(data_start + TRAILER_LEN) else {
        return corrupt(format!(
            "the meta length {meta_len} runs past the end of the {len}-byte file"
        ));
    };
    let mut meta = vec![0; meta_len as usize];
    read_exact_at(file, &mut meta, HEADER_LEN)?;
    let mut crc = crc32c::crc32c(&header);
    crc = crc32c::crc32c_append(crc, &meta);
    crc = crc_of_range(file, crc, data_start, data_len)?;
    let mut trailer = [0; TRAILER_LEN as usize];
    read_exact_at(file, &mut trailer, data_start + data_len)?;
    crc = crc32c::crc32c_append(crc, &trailer[..8]);
    let stored = u32_at(&trailer, 8);
    if crc != stored {
        return corrupt(format!(
            "CRC mismatch: the trailer says {stored:#010x}, the bytes give {crc:#010x}"
        ));
    }
    // The CRC matched, so what follows is what the writer wrote.
    let (h_index, h_term) = (Index(u64_at(&header, 12)), Term(u64_at(&header, 20)));
    if (h_index, h_term) != (index, term) {
        return corrupt(format!(
            "the header says index {h_index} term {h_term}, expected index {index} term {term}"
        ));
    }
    let stated = u64_at(&trailer, 0);
    if stated != data_len {
        return corrupt(format!(
            "the trailer says {stated} data bytes, but the file holds {data_len}"
        ));
    }
    Ok(Verified { meta, data_len })
}

/// Bytes read per call while computing a CRC.
const CRC_BUF: usize = 64 << 10;

/// Extends `crc` over `len` bytes of `file` from `start`.
fn crc_of_range(file: &File, mut crc: u32, start: u64, len: u64) -> io::Result<u32> {
    let mut buf = vec![0; CRC_BUF.min(usize::try_from(len).unwrap_or(CRC_BUF))];
    let mut done = 0;
    while done < len {
        let n = buf
            .len()
            .min(usize::try_from(len - done).unwrap_or(usize::MAX));
        read_exact_at(file, &mut buf[..n], start + done)?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        done += n as u64;
    }
    Ok(crc)
}

/// Reads from `offset` until `buf` is full or the file ends; returns the bytes read.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_at(file, &mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Fills `buf` from `offset`; the file's known size says the bytes are there, so an early end
/// means the file changed underneath (an I/O error, not corruption).
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    if read_full_at(file, buf, offset)? < buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file is shorter than when it was opened",
        ));
    }
    Ok(())
}

/// One positional read (the file's cursor is not used, so one handle serves any number of
/// readers in turn).
#[cfg(unix)]
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

/// One positional read (on Windows this also moves the cursor, which nothing here uses).
#[cfg(windows)]
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_index_order_and_parse_back() {
        let a = file_name(Index(0x1f4), Term(3));
        assert_eq!(a, "00000000000001f4-0000000000000003.snap");
        assert!(a < file_name(Index(0x1f5), Term(1)));
        assert_eq!(parse_name(&a), Some((Index(0x1f4), Term(3))));
        for odd in [
            "x.snap",
            "00000000000001f4.snap",
            "00000000000001F4-0000000000000003.snap",
            "00000000000001f4-0000000000000003.snap.tmp",
            "00000000000001f4-00000000000000003.snap",
            "incoming.tmp",
        ] {
            assert_eq!(parse_name(odd), None, "{odd}");
        }
    }

    #[test]
    fn header_layout() {
        let h = encode_header(Index(7), Term(9), b"meta");
        assert_eq!(h.len() as u64, HEADER_LEN + 4);
        assert_eq!(&h[..8], b"TKRFSNAP");
        assert_eq!(&h[8..12], &[1, 0, 0, 0]);
        assert_eq!(u64_at(&h, 12), 7);
        assert_eq!(u64_at(&h, 20), 9);
        assert_eq!(u32_at(&h, 28), 4);
        assert_eq!(&h[32..], b"meta");
        let t = encode_trailer(crc32c::crc32c(&h), 0);
        let mut whole = h.clone();
        whole.extend_from_slice(&t[..8]);
        assert_eq!(u32_at(&t, 8), crc32c::crc32c(&whole));
    }
}
