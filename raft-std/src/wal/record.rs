//! The bytes on disk: segment headers and framed records (the format is described in the
//! [module docs](super)).
//!
//! Decoding never panics and never trusts a length: every read is checked against the buffer.

use raft_core::{Entry, EntryKind, HardState, Index, NodeId, Term};

/// The first bytes of every segment file.
pub(crate) const MAGIC: [u8; 8] = *b"TKRFTWAL";
/// The format version this build writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Magic, version, seq, first index, CRC.
pub(crate) const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 4;
/// The length and CRC fields in front of every record.
pub(crate) const FRAME_LEN: usize = 4 + 4;

/// Record type: one log entry.
pub(crate) const TYPE_ENTRY: u8 = 1;
/// Record type: the hard state (term, vote, commit).
pub(crate) const TYPE_HARD_STATE: u8 = 2;

/// An entry's payload before its data: index, term, kind.
const ENTRY_FIXED: usize = 8 + 8 + 1;
const HARD_STATE_PAYLOAD: usize = 8 + 8 + 8;
/// Bytes of a whole hard-state record, frame included.
pub(crate) const HARD_STATE_RECORD_LEN: usize = FRAME_LEN + 1 + HARD_STATE_PAYLOAD;
/// The largest entry payload: the record's length field (type + payload) must fit in a `u32`.
pub(crate) const MAX_ENTRY_DATA: usize = u32::MAX as usize - 1 - ENTRY_FIXED;

const KIND_NORMAL: u8 = 0;
const KIND_NOOP: u8 = 1;
const KIND_CONFIG: u8 = 2;

/// The on-disk byte of an entry kind, or `None` for a kind this format cannot store (the enum
/// is `#[non_exhaustive]`; a kind added to the core needs a format change here first).
pub(crate) fn kind_byte(kind: EntryKind) -> Option<u8> {
    match kind {
        EntryKind::Normal => Some(KIND_NORMAL),
        EntryKind::Noop => Some(KIND_NOOP),
        EntryKind::Config => Some(KIND_CONFIG),
        _ => None,
    }
}

fn kind_from_byte(b: u8) -> Option<EntryKind> {
    match b {
        KIND_NORMAL => Some(EntryKind::Normal),
        KIND_NOOP => Some(EntryKind::Noop),
        KIND_CONFIG => Some(EntryKind::Config),
        _ => None,
    }
}

/// What a segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// Position of the segment in the directory (0, 1, 2, ...).
    pub(crate) seq: u64,
    /// The log's last index + 1 when the segment was started.
    pub(crate) first_index: Index,
}

/// Why a segment header did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Short,
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// The header's CRC does not match.
    BadCrc,
    /// A well-formed header of a format version this build does not read.
    Version(u32),
}

impl HeaderError {
    pub(crate) fn describe(self) -> String {
        match self {
            HeaderError::Short => format!("segment header shorter than {HEADER_LEN} bytes"),
            HeaderError::BadMagic => "segment header has the wrong magic".to_owned(),
            HeaderError::BadCrc => "segment header CRC mismatch".to_owned(),
            HeaderError::Version(v) => format!("unsupported format version {v}"),
        }
    }
}

impl SegmentHeader {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.first_index.0.to_le_bytes());
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// Decodes the header at the start of `buf`. The CRC is checked before the version, so that
    /// [`HeaderError::Version`] means a complete header of another version, never a torn one.
    pub(crate) fn decode(buf: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let h = buf.get(..HEADER_LEN).ok_or(HeaderError::Short)?;
        if h[..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        if crc32c::crc32c(&h[..HEADER_LEN - 4]) != u32_at(h, HEADER_LEN - 4) {
            return Err(HeaderError::BadCrc);
        }
        let version = u32_at(h, 8);
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        Ok(SegmentHeader {
            seq: u64_at(h, 12),
            first_index: Index(u64_at(h, 20)),
        })
    }
}

/// One decoded record, borrowing an entry's data from the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    Entry(Entry<'a>),
    HardState(HardState),
}

/// Why the bytes at an offset are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadRecord {
    /// The file ends inside the frame or inside the bytes the length field announces.
    Short { len: Option<u32>, available: usize },
    /// The length field is 0 (there is always a type byte).
    ZeroLength,
    /// The CRC does not match the type and payload.
    Crc,
    /// The CRC matches but the type is not one this build knows.
    UnknownType(u8),
    /// The CRC matches but the length does not fit the type.
    BadLength { kind: u8, len: u32 },
    /// The CRC matches but an entry's kind byte is unknown.
    UnknownKind(u8),
}

impl BadRecord {
    /// Whether a crash in the middle of a write could have produced this: the bytes are cut
    /// short, zero, or fail their CRC. A record whose CRC matches but whose content is unknown
    /// was written whole by something else (another version, a bug), never torn.
    pub(crate) fn may_be_torn(self) -> bool {
        matches!(
            self,
            BadRecord::Short { .. } | BadRecord::ZeroLength | BadRecord::Crc
        )
    }

    pub(crate) fn describe(self) -> String {
        match self {
            BadRecord::Short {
                len: None,
                available,
            } => {
                format!("only {available} bytes left, fewer than a record frame")
            }
            BadRecord::Short {
                len: Some(len),
                available,
            } => format!("length field says {len} bytes but only {available} follow"),
            BadRecord::ZeroLength => "length field is 0".to_owned(),
            BadRecord::Crc => "CRC mismatch".to_owned(),
            BadRecord::UnknownType(t) => format!("unknown record type {t}"),
            BadRecord::BadLength { kind, len } => {
                format!("length {len} does not fit record type {kind}")
            }
            BadRecord::UnknownKind(k) => format!("unknown entry kind {k}"),
        }
    }
}

/// Appends an entry record to `out` and returns where its data starts in `out`. The caller has
/// checked `data.len() <= MAX_ENTRY_DATA` and obtained `kind` from [`kind_byte`].
pub(crate) fn encode_entry(
    out: &mut Vec<u8>,
    index: Index,
    term: Term,
    kind: u8,
    data: &[u8],
) -> usize {
    debug_assert!(data.len() <= MAX_ENTRY_DATA);
    let start = out.len();
    // Lossless: the caller bounds the data so that the length fits.
    let len = (1 + ENTRY_FIXED + data.len()) as u32;
    out.reserve(FRAME_LEN + len as usize);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(TYPE_ENTRY);
    out.extend_from_slice(&index.0.to_le_bytes());
    out.extend_from_slice(&term.0.to_le_bytes());
    out.push(kind);
    let data_at = out.len();
    out.extend_from_slice(data);
    seal(out, start);
    data_at
}

/// Appends a hard-state record to `out`.
pub(crate) fn encode_hard_state(out: &mut Vec<u8>, hs: &HardState) {
    let start = out.len();
    out.extend_from_slice(&((1 + HARD_STATE_PAYLOAD) as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(TYPE_HARD_STATE);
    out.extend_from_slice(&hs.term.0.to_le_bytes());
    out.extend_from_slice(&hs.vote.0.to_le_bytes());
    out.extend_from_slice(&hs.commit.0.to_le_bytes());
    seal(out, start);
}

/// Fills in the CRC of the record that starts at `start` and runs to the end of `out`.
fn seal(out: &mut [u8], start: usize) {
    let crc = crc32c::crc32c(&out[start + FRAME_LEN..]);
    out[start + 4..start + FRAME_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the record at `buf[off..]`, returning it and the offset just past it.
pub(crate) fn decode(buf: &[u8], off: usize) -> Result<(Record<'_>, usize), BadRecord> {
    let rest = buf.get(off..).unwrap_or_default();
    let Some(frame) = rest.get(..FRAME_LEN) else {
        return Err(BadRecord::Short {
            len: None,
            available: rest.len(),
        });
    };
    let len = u32_at(frame, 0);
    if len == 0 {
        return Err(BadRecord::ZeroLength);
    }
    let Some(body) = rest.get(FRAME_LEN..FRAME_LEN.saturating_add(len as usize)) else {
        return Err(BadRecord::Short {
            len: Some(len),
            available: rest.len() - FRAME_LEN,
        });
    };
    if crc32c::crc32c(body) != u32_at(frame, 4) {
        return Err(BadRecord::Crc);
    }
    let record = decode_body(body, len)?;
    Ok((record, off + FRAME_LEN + len as usize))
}

/// Decodes the type byte and payload of a record whose CRC matched (`body` is not empty).
fn decode_body(body: &[u8], len: u32) -> Result<Record<'_>, BadRecord> {
    let (kind, payload) = body.split_first().ok_or(BadRecord::ZeroLength)?;
    match *kind {
        TYPE_ENTRY => {
            if payload.len() < ENTRY_FIXED {
                return Err(BadRecord::BadLength { kind: *kind, len });
            }
            let entry_kind =
                kind_from_byte(payload[16]).ok_or(BadRecord::UnknownKind(payload[16]))?;
            Ok(Record::Entry(Entry {
                index: Index(u64_at(payload, 0)),
                term: Term(u64_at(payload, 8)),
                kind: entry_kind,
                data: &payload[ENTRY_FIXED..],
            }))
        }
        TYPE_HARD_STATE => {
            if payload.len() != HARD_STATE_PAYLOAD {
                return Err(BadRecord::BadLength { kind: *kind, len });
            }
            Ok(Record::HardState(HardState {
                term: Term(u64_at(payload, 0)),
                vote: NodeId(u64_at(payload, 8)),
                commit: Index(u64_at(payload, 16)),
            }))
        }
        other => Err(BadRecord::UnknownType(other)),
    }
}

/// The first offset at or after `from` where a complete record with a matching CRC and a known
/// type starts, if any. Recovery uses it to tell a torn tail (nothing valid after the bad
/// record) from damage in the middle of the log.
///
/// Cheap checks (type byte, length for the type, entry kind) come before the CRC, so that most
/// offsets cost a few comparisons; an offset whose length field points past the end is
/// rejected without reading further.
pub(crate) fn next_valid(buf: &[u8], from: usize) -> Option<usize> {
    let last_start = buf.len().checked_sub(FRAME_LEN + 1)?;
    (from..=last_start).find(|&off| plausible(buf, off) && decode(buf, off).is_ok())
}

fn plausible(buf: &[u8], off: usize) -> bool {
    let Some(head) = buf.get(off..off + FRAME_LEN + 1) else {
        return false;
    };
    let len = u32_at(head, 0) as usize;
    let fits = buf.len() - off - FRAME_LEN >= len;
    fits && match head[FRAME_LEN] {
        TYPE_HARD_STATE => len == 1 + HARD_STATE_PAYLOAD,
        TYPE_ENTRY => {
            len > ENTRY_FIXED
                && buf
                    .get(off + FRAME_LEN + ENTRY_FIXED)
                    .is_some_and(|&k| kind_from_byte(k).is_some())
        }
        _ => false,
    }
}

/// Reads a little-endian `u32` at `at`; callers have checked that `buf` holds 4 bytes there.
pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Reads a little-endian `u64` at `at`; callers have checked that `buf` holds 8 bytes there.
pub(crate) fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, kind: EntryKind, data: &[u8]) -> Entry<'_> {
        Entry {
            index: Index(index),
            term: Term(term),
            kind,
            data,
        }
    }

    fn encoded(e: Entry<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        let kind = kind_byte(e.kind).expect("the core's kinds are all storable");
        let at = encode_entry(&mut out, e.index, e.term, kind, e.data);
        assert_eq!(&out[at..], e.data);
        out
    }

    #[test]
    fn header_round_trips_and_checks_crc_before_version() {
        let h = SegmentHeader {
            seq: 7,
            first_index: Index(1234),
        };
        let mut buf = Vec::new();
        h.encode(&mut buf);
        assert_eq!(buf.len(), HEADER_LEN);
        assert_eq!(SegmentHeader::decode(&buf), Ok(h));
        assert_eq!(
            SegmentHeader::decode(&buf[..HEADER_LEN - 1]),
            Err(HeaderError::Short)
        );
        let mut torn = buf.clone();
        torn[9] ^= 1;
        assert_eq!(SegmentHeader::decode(&torn), Err(HeaderError::BadCrc));
        torn[0] ^= 1;
        assert_eq!(SegmentHeader::decode(&torn), Err(HeaderError::BadMagic));

        let mut v2 = buf[..HEADER_LEN - 4].to_vec();
        v2[8] = 2;
        let crc = crc32c::crc32c(&v2);
        v2.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&v2), Err(HeaderError::Version(2)));
    }

    #[test]
    fn records_round_trip() {
        let hs = HardState {
            term: Term(3),
            vote: NodeId(2),
            commit: Index(9),
        };
        let mut buf = encoded(entry(5, 3, EntryKind::Normal, b"hello"));
        let first_len = buf.len();
        assert_eq!(first_len, FRAME_LEN + 1 + ENTRY_FIXED + 5);
        encode_hard_state(&mut buf, &hs);
        assert_eq!(buf.len(), first_len + HARD_STATE_RECORD_LEN);
        buf.extend(encoded(entry(6, 3, EntryKind::Noop, b"")));

        let (r, off) = decode(&buf, 0).expect("valid");
        assert_eq!(r, Record::Entry(entry(5, 3, EntryKind::Normal, b"hello")));
        let (r, off) = decode(&buf, off).expect("valid");
        assert_eq!(r, Record::HardState(hs));
        let (r, off) = decode(&buf, off).expect("valid");
        assert_eq!(r, Record::Entry(entry(6, 3, EntryKind::Noop, b"")));
        assert_eq!(off, buf.len());
    }

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        let buf = encoded(entry(1, 1, EntryKind::Normal, b"some payload"));
        for cut in 0..buf.len() {
            let err = decode(&buf[..cut], 0).expect_err("truncated");
            assert!(err.may_be_torn(), "cut {cut}: {err:?}");
        }
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let err = decode(&b, 0).expect_err("flipped");
            assert!(err.may_be_torn(), "bit {bit}: {err:?}");
        }
    }

    #[test]
    fn crc_valid_records_of_unknown_content_are_not_torn() {
        let mut buf = encoded(entry(1, 1, EntryKind::Normal, b"x"));
        buf[FRAME_LEN] = 9;
        let crc = crc32c::crc32c(&buf[FRAME_LEN..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let err = decode(&buf, 0).expect_err("unknown type");
        assert_eq!(err, BadRecord::UnknownType(9));
        assert!(!err.may_be_torn());
        assert_eq!(next_valid(&buf, 0), None);
    }

    #[test]
    fn next_valid_skips_garbage() {
        let mut buf = vec![0xa5; 13];
        let at = buf.len();
        buf.extend(encoded(entry(1, 1, EntryKind::Normal, b"abc")));
        assert_eq!(next_valid(&buf, 0), Some(at));
        assert_eq!(next_valid(&buf, at + 1), None);
        assert_eq!(next_valid(&[], 0), None);
        assert_eq!(next_valid(&buf, buf.len() + 5), None);
    }

    #[test]
    fn decode_never_panics_on_short_or_odd_input() {
        for len in 0..40 {
            for fill in [0u8, 1, 2, 0xff] {
                let buf = vec![fill; len];
                let _ = decode(&buf, 0);
                let _ = decode(&buf, len + 3);
                let _ = next_valid(&buf, 0);
                let _ = SegmentHeader::decode(&buf);
            }
        }
    }
}
