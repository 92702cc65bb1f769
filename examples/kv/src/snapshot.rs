//! The binary encoding of the whole store, for Raft snapshots
//! ([`raft_std::StateMachine::snapshot`] and [`raft_std::StateMachine::restore`]).
//!
//! # The snapshot encoding (version 1)
//!
//! ```text
//! snapshot := magic:"TKKVSNAP" version:u16=1 reserved:u16=0  record*  end
//! record   := 0x01 key_len:u32 value_len:u32 key value
//! end      := 0x00 count:u64 crc:u32        then the end of the stream
//! ```
//!
//! Integers are little-endian. `count` is the number of records and `crc` the CRC32C of every
//! byte before it, so that a stream cut anywhere, or changed anywhere, is refused: a cut inside
//! a record or before `end` is a short read, a cut inside `end` too, and bytes after `end` are
//! refused as trailing garbage. Records come in the map's order, which differs between members
//! (and runs); the state they restore is the same.
//!
//! Reading checks every length against [`MAX_BULK_BYTES`] (no key or value the server accepts
//! is longer) before it reads the data, and grows each buffer as bytes arrive rather than from
//! the declared length, so a hostile stream costs at most what it actually sends. A key twice
//! is refused. Every refusal is an [`io::ErrorKind::InvalidData`] error; errors of the
//! underlying reader or writer pass through unchanged.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};

use crate::limits::MAX_BULK_BYTES;

/// The first bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"TKKVSNAP";

/// The version this build writes and reads.
pub const SNAPSHOT_VERSION: u16 = 1;

const TAG_RECORD: u8 = 0x01;
const TAG_END: u8 = 0x00;

/// Buffer size on both sides: the node may hand over an unbuffered file or socket, and a
/// record is three small writes.
const BUFFER_BYTES: usize = 64 * 1024;

/// Writes the `count` records of `records` to `out` in the encoding above.
pub(crate) fn write<'a>(
    count: usize,
    records: impl IntoIterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut w = CrcWriter {
        inner: BufWriter::with_capacity(BUFFER_BYTES, out),
        crc: 0,
    };
    w.put(&MAGIC)?;
    w.put(&SNAPSHOT_VERSION.to_le_bytes())?;
    w.put(&0u16.to_le_bytes())?;
    let mut written = 0u64;
    for (key, value) in records {
        written += 1;
        let mut head = [0u8; 9];
        head[0] = TAG_RECORD;
        head[1..5].copy_from_slice(&len_u32(key)?.to_le_bytes());
        head[5..9].copy_from_slice(&len_u32(value)?.to_le_bytes());
        w.put(&head)?;
        w.put(key)?;
        w.put(value)?;
    }
    if written != count as u64 {
        return Err(io::Error::other("the map changed while it was written"));
    }
    w.put(&[TAG_END])?;
    w.put(&written.to_le_bytes())?;
    let crc = w.crc;
    w.put(&crc.to_le_bytes())?;
    w.inner.flush()
}

/// A map a snapshot can be read into.
pub(crate) trait Records: Default {
    /// Stores a record; the value that was there, if any.
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Vec<u8>>;
    /// Records held.
    fn len(&self) -> usize;
}

impl Records for HashMap<Vec<u8>, Vec<u8>> {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Vec<u8>> {
        HashMap::insert(self, key, value)
    }
    fn len(&self) -> usize {
        HashMap::len(self)
    }
}

impl Records for crate::shards::ShardedMap {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Vec<u8>> {
        crate::shards::ShardedMap::insert(self, key, value)
    }
    fn len(&self) -> usize {
        crate::shards::ShardedMap::len(self)
    }
}

/// Reads a snapshot [`write`] wrote, to its end; the map it holds.
pub(crate) fn read<M: Records>(input: &mut dyn Read) -> io::Result<M> {
    let mut r = CrcReader {
        inner: BufReader::with_capacity(BUFFER_BYTES, input),
        crc: 0,
    };
    let header: [u8; 12] = r.array()?;
    if header[..8] != MAGIC {
        return Err(invalid("not a tickraft-kv snapshot (bad magic)"));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != SNAPSHOT_VERSION {
        return Err(invalid(format!(
            "snapshot version {version}; this build reads version {SNAPSHOT_VERSION}"
        )));
    }
    if header[10..] != [0, 0] {
        return Err(invalid("reserved header bytes are not zero"));
    }
    let mut map = M::default();
    loop {
        let [tag] = r.array()?;
        match tag {
            TAG_RECORD => {
                let head: [u8; 8] = r.array()?;
                let key_len = checked_len(&head[..4], "key")?;
                let value_len = checked_len(&head[4..], "value")?;
                let key = r.bytes(key_len)?;
                let value = r.bytes(value_len)?;
                if map.insert(key, value).is_some() {
                    return Err(invalid("a key appears twice"));
                }
            }
            TAG_END => break,
            other => return Err(invalid(format!("unknown record tag {other:#04x}"))),
        }
    }
    let count = u64::from_le_bytes(r.array()?);
    let expected_crc = r.crc;
    let crc = u32::from_le_bytes(r.array()?);
    if crc != expected_crc {
        return Err(invalid(format!(
            "checksum mismatch: stored {crc:#010x}, computed {expected_crc:#010x}"
        )));
    }
    if count != map.len() as u64 {
        return Err(invalid(format!(
            "the trailer counts {count} records, the snapshot holds {}",
            map.len()
        )));
    }
    let mut probe = [0u8; 1];
    loop {
        match r.inner.read(&mut probe) {
            Ok(0) => return Ok(map),
            Ok(_) => return Err(invalid("bytes after the end of the snapshot")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn truncated() -> io::Error {
    invalid("snapshot truncated")
}

/// A key's or value's length for the header. The server never stores anything near 4 GiB, so
/// an error here means the store holds what no request could have put there.
fn len_u32(data: &[u8]) -> io::Result<u32> {
    u32::try_from(data.len()).map_err(|_| invalid("a key or value is 4 GiB or more"))
}

/// A declared length, refused past what the server accepts.
fn checked_len(le: &[u8], what: &str) -> io::Result<usize> {
    let mut b = [0u8; 4];
    b.copy_from_slice(le);
    let len = u32::from_le_bytes(b) as usize;
    if len > MAX_BULK_BYTES {
        return Err(invalid(format!(
            "a {what} of {len} bytes is longer than the maximum of {MAX_BULK_BYTES}"
        )));
    }
    Ok(len)
}

struct CrcWriter<'a> {
    inner: BufWriter<&'a mut dyn Write>,
    crc: u32,
}

impl CrcWriter<'_> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.inner.write_all(bytes)
    }
}

struct CrcReader<'a> {
    inner: BufReader<&'a mut dyn Read>,
    crc: u32,
}

impl CrcReader<'_> {
    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                truncated()
            } else {
                e
            }
        })?;
        self.crc = crc32c::crc32c_append(self.crc, &b);
        Ok(b)
    }

    /// `len` bytes (already checked against the limit), in a buffer grown as they arrive.
    fn bytes(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(len.min(BUFFER_BYTES));
        (&mut self.inner).take(len as u64).read_to_end(&mut v)?;
        if v.len() != len {
            return Err(truncated());
        }
        self.crc = crc32c::crc32c_append(self.crc, &v);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(map: &HashMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
        let mut out = Vec::new();
        write(map.len(), map, &mut out).expect("writes to memory");
        out
    }

    fn decode(mut bytes: &[u8]) -> io::Result<HashMap<Vec<u8>, Vec<u8>>> {
        read(&mut bytes)
    }

    fn small() -> HashMap<Vec<u8>, Vec<u8>> {
        [(&b"a"[..], &b"1"[..]), (b"key", b""), (b"", b"empty key")]
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    fn kind(r: io::Result<HashMap<Vec<u8>, Vec<u8>>>) -> io::ErrorKind {
        r.expect_err("refused").kind()
    }

    #[test]
    fn roundtrip_and_empty() {
        let map = small();
        assert_eq!(decode(&encode(&map)).expect("valid"), map);
        let empty = HashMap::new();
        let bytes = encode(&empty);
        assert_eq!(bytes.len(), 12 + 1 + 8 + 4);
        assert_eq!(decode(&bytes).expect("valid"), empty);
    }

    #[test]
    fn the_largest_values_roundtrip() {
        let mut map = HashMap::new();
        map.insert(vec![b'k'; MAX_BULK_BYTES], vec![b'v'; MAX_BULK_BYTES]);
        for i in 0..100u32 {
            map.insert(i.to_le_bytes().to_vec(), vec![i as u8; 100 * 1024]);
        }
        assert_eq!(decode(&encode(&map)).expect("valid"), map);
    }

    #[test]
    fn a_cut_anywhere_is_refused() {
        let bytes = encode(&small());
        for cut in 0..bytes.len() {
            let got = decode(&bytes[..cut]);
            assert_eq!(kind(got), io::ErrorKind::InvalidData, "cut at {cut}");
        }
    }

    #[test]
    fn a_change_anywhere_is_refused() {
        let bytes = encode(&small());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert_eq!(kind(decode(&b)), io::ErrorKind::InvalidData, "byte {i}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(kind(decode(&longer)), io::ErrorKind::InvalidData);
    }

    /// Rebuilds a snapshot's trailer so that only the property under test is wrong.
    fn with_valid_crc(mut body: Vec<u8>, count: u64) -> Vec<u8> {
        body.push(TAG_END);
        body.extend_from_slice(&count.to_le_bytes());
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    fn header(version: u16) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&[0, 0]);
        b
    }

    fn record(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut b = vec![TAG_RECORD];
        b.extend_from_slice(&(key.len() as u32).to_le_bytes());
        b.extend_from_slice(&(value.len() as u32).to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(value);
        b
    }

    #[test]
    fn well_checksummed_lies_are_refused() {
        let ok = with_valid_crc([header(1), record(b"k", b"v")].concat(), 1);
        assert_eq!(decode(&ok).expect("valid").len(), 1);
        for (what, bytes) in [
            ("version 2", with_valid_crc(header(2), 0)),
            (
                "count",
                with_valid_crc([header(1), record(b"k", b"v")].concat(), 2),
            ),
            (
                "duplicate",
                with_valid_crc(
                    [header(1), record(b"k", b"v"), record(b"k", b"w")].concat(),
                    2,
                ),
            ),
            ("tag", with_valid_crc([header(1), vec![7]].concat(), 0)),
        ] {
            let e = decode(&bytes).expect_err(what);
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
        }
    }

    #[test]
    fn a_huge_declared_length_is_refused_before_reading() {
        let mut b = header(1);
        b.push(TAG_RECORD);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        let e = decode(&b).expect_err("refused");
        assert!(e.to_string().contains("longer than the maximum"), "{e}");
        // Within the limit but never sent: a short read, not an allocation of the length.
        let mut b = header(1);
        b.extend_from_slice(&[TAG_RECORD]);
        b.extend_from_slice(&(MAX_BULK_BYTES as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(b"abc");
        assert_eq!(
            decode(&b).expect_err("short").to_string(),
            "snapshot truncated"
        );
    }

    #[test]
    fn reader_errors_pass_through() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone"))
            }
        }
        assert_eq!(
            read::<HashMap<Vec<u8>, Vec<u8>>>(&mut Broken)
                .expect_err("fails")
                .kind(),
            io::ErrorKind::ConnectionReset
        );
    }
}
