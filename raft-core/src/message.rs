//! Messages between nodes and their wire format.
//!
//! Every message travels in one versioned envelope:
//!
//! ```text
//! [version: u8 = 1] [postcard(Header)] [postcard(WireEntry)] * header.count
//! ```
//!
//! The header carries sender, recipient, term and the body; entries of an append follow the
//! header back to back, so that the leader encodes them straight from its log and a follower
//! decodes them without copying: [`Entry::data`] borrows from the received bytes. Entry indices
//! are not sent: they follow from `prev_index`.
//!
//! Decoding any byte string returns a message or a [`DecodeError`], never a panic, and looks at
//! each input byte a bounded number of times.
//!
//! The format is postcard's, byte for byte; the few wire types are encoded and decoded by hand
//! (through serde, the codec cost more than the rest of the replication path), and the tests
//! check every message and any input against postcard itself.

use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, EncodeError};
use crate::types::{Index, NodeId, Term};
use crate::wire::{Reader, Writer};

/// The wire version this build writes and reads.
pub const WIRE_VERSION: u8 = 1;

/// The most bytes a header can take on the wire (version byte included). Together with
/// [`ENTRY_OVERHEAD`] this bounds the encoded size of any append.
pub const MAX_HEADER_LEN: usize = 1 + 3 * 10 + 1 + 4 * 10 + 5 + 2;

/// The most bytes an entry takes on the wire besides its payload.
pub const ENTRY_OVERHEAD: usize = 10 + 1 + 5;

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EntryKind {
    /// A host proposal: opaque bytes for the state machine.
    Normal,
    /// The empty entry a new leader appends to commit entries of earlier terms (Raft §5.4.2,
    /// §8). Hosts skip it when applying.
    Noop,
    /// A configuration change: the payload is a [`ConfigEntry`](crate::ConfigEntry). The node
    /// acts on it; hosts skip it when applying, or read their context from it.
    Config,
}

/// One log entry. The payload is opaque bytes, borrowed from wherever the entry lives (the
/// node's unstable log, the host's storage, or a received message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry<'a> {
    /// Position in the log.
    pub index: Index,
    /// Term of the leader that created it.
    pub term: Term,
    /// What the entry carries.
    pub kind: EntryKind,
    /// The payload (empty for [`EntryKind::Noop`]).
    pub data: &'a [u8],
}

/// A rejection's hint for fast log backtracking (Raft §5.3, the optimisation the paper sketches
/// and the thesis §3.5 details): where the follower's log diverges from the leader's probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectHint {
    /// The first index of `term` in the follower's log, or the follower's last index + 1 when
    /// its log is shorter than the probe.
    pub index: Index,
    /// The follower's term at the probed index, or 0 when its log is shorter.
    pub term: Term,
}

/// A decoded or to-be-encoded message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in; for a granted
    /// pre-vote: the term of the request).
    pub term: Term,
    /// What the message says.
    pub body: Body<'a>,
}

/// The kinds of message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body<'a> {
    /// "Would you vote for me?" without disrupting anyone (thesis §9.6).
    PreVote {
        /// Candidate's last log index.
        last_index: Index,
        /// Candidate's last log term.
        last_term: Term,
    },
    /// Answer to [`Body::PreVote`].
    PreVoteResponse {
        /// Whether the vote is refused.
        reject: bool,
    },
    /// RequestVote (Raft §5.2).
    Vote {
        /// Candidate's last log index.
        last_index: Index,
        /// Candidate's last log term.
        last_term: Term,
        /// The candidate campaigns because the leader handed over to it (thesis §3.10), so
        /// voters grant it even within a leader's lease.
        transfer: bool,
    },
    /// Answer to [`Body::Vote`].
    VoteResponse {
        /// Whether the vote is refused.
        reject: bool,
    },
    /// AppendEntries (Raft §5.3).
    Append {
        /// Index of the entry before the new ones.
        prev_index: Index,
        /// Its term.
        prev_term: Term,
        /// The leader's commit index.
        commit: Index,
        /// New entries, at `prev_index + 1 ..`.
        entries: EntryList<'a>,
    },
    /// Answer to [`Body::Append`].
    AppendResponse {
        /// On success, the last index now known to match the leader's log; on rejection, the
        /// `prev_index` that did not match.
        index: Index,
        /// Set when the append was rejected.
        reject: Option<RejectHint>,
    },
    /// The leader's heartbeat, carrying its commit index (capped at what the recipient matches)
    /// and the newest read-index round it wants acknowledged (thesis §6.4).
    Heartbeat {
        /// Commit index the recipient may adopt.
        commit: Index,
        /// Read round (0: none).
        round: u64,
    },
    /// Answer to [`Body::Heartbeat`].
    HeartbeatResponse {
        /// Echo of the heartbeat's read round.
        round: u64,
    },
    /// A follower asks the leader for a read index on behalf of a client.
    ReadIndex {
        /// The host's request id, echoed back.
        context: u64,
    },
    /// The leader's answer to [`Body::ReadIndex`].
    ReadIndexResponse {
        /// The host's request id.
        context: u64,
        /// The index the read must wait to be applied.
        index: Index,
    },
    /// One chunk of a snapshot, for a follower whose next entry the leader has compacted. The
    /// chunk is the snapshot's bytes at `offset .. offset + data.len()`; the last chunk ends at
    /// `len`.
    Snapshot {
        /// The last index the snapshot covers.
        index: Index,
        /// Its term.
        term: Term,
        /// The snapshot's total size in bytes.
        len: u64,
        /// Where this chunk starts.
        offset: u64,
        /// The configuration at `index`, encoded
        /// ([`Membership::encode`](crate::Membership::encode)); checked at decode.
        membership: &'a [u8],
        /// The chunk.
        data: &'a [u8],
        /// CRC-32C of `data` (on the wire as 4 bytes, little-endian): a chunk damaged on the
        /// way is refused.
        crc: u32,
    },
    /// Answer to [`Body::Snapshot`]: the follower expects the snapshot at `index` to go on
    /// from `next`. `next == len` acknowledges the whole snapshot, installed; `next == 0`
    /// asks to start over.
    SnapshotResponse {
        /// The snapshot's index.
        index: Index,
        /// The next offset the follower will take.
        next: u64,
    },
    /// The leader hands over (thesis §3.10): the recipient, whose log is up to date, starts an
    /// election at once.
    TimeoutNow,
}

impl Body<'_> {
    /// A short stable name, for traces and counters.
    pub fn name(&self) -> &'static str {
        match self {
            Body::PreVote { .. } => "PreVote",
            Body::PreVoteResponse { .. } => "PreVoteResponse",
            Body::Vote { .. } => "Vote",
            Body::VoteResponse { .. } => "VoteResponse",
            Body::Append { .. } => "Append",
            Body::AppendResponse { .. } => "AppendResponse",
            Body::Heartbeat { .. } => "Heartbeat",
            Body::HeartbeatResponse { .. } => "HeartbeatResponse",
            Body::ReadIndex { .. } => "ReadIndex",
            Body::ReadIndexResponse { .. } => "ReadIndexResponse",
            Body::Snapshot { .. } => "Snapshot",
            Body::SnapshotResponse { .. } => "SnapshotResponse",
            Body::TimeoutNow => "TimeoutNow",
        }
    }
}

/// The entries of an append: either still encoded (as received) or a slice of entries (as a
/// test or host builds them). Iterating yields entries at consecutive indices from `first`.
///
/// Two lists are equal when they hold the same entries (term, kind, payload) in the same order,
/// however each is held: a built message equals its decoding, and a decoded message equals its
/// re-encoding even when the input spelled a number in more bytes than needed. Numbering is not
/// compared, as it belongs to the append that carries the list (its `prev_index`).
#[derive(Clone, Copy, Debug)]
pub struct EntryList<'a> {
    repr: Repr<'a>,
    first: Index,
}

impl PartialEq for EntryList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|(a, b)| (a.term, a.kind, a.data) == (b.term, b.kind, b.data))
    }
}

impl Eq for EntryList<'_> {}

#[derive(Clone, Copy, Debug)]
enum Repr<'a> {
    Wire {
        bytes: &'a [u8],
        count: u32,
        /// The first and last entries' terms, as decoding saw them, if the terms never
        /// decrease along the list; `None` if they do.
        terms: Option<(Term, Term)>,
    },
    Slice(&'a [Entry<'a>]),
}

impl<'a> EntryList<'a> {
    /// No entries.
    pub const EMPTY: EntryList<'static> = EntryList {
        repr: Repr::Slice(&[]),
        first: Index(1),
    };

    /// Entries from a slice. Their `index` fields are ignored: the list numbers them from
    /// `prev_index + 1` of the append that carries it.
    pub fn from_slice(entries: &'a [Entry<'a>]) -> Self {
        EntryList {
            repr: Repr::Slice(entries),
            first: Index(1),
        }
    }

    pub(crate) fn with_first(mut self, first: Index) -> Self {
        self.first = first;
        self
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        match self.repr {
            Repr::Wire { count, .. } => count as usize,
            Repr::Slice(s) => s.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the entries' terms never decrease along the list and all lie in `lo ..= hi`.
    /// For a received list this is read from what decoding saw, without parsing the entries
    /// again.
    pub(crate) fn terms_within(&self, lo: Term, hi: Term) -> bool {
        if self.is_empty() {
            return true;
        }
        match self.repr {
            Repr::Wire { terms, .. } => {
                terms.is_some_and(|(first, last)| lo <= first && last <= hi)
            }
            Repr::Slice(s) => {
                let mut last = lo;
                for e in s {
                    if e.term < last || e.term > hi {
                        return false;
                    }
                    last = e.term;
                }
                true
            }
        }
    }

    /// The entries, numbered from the append's `prev_index + 1`.
    pub fn iter(&self) -> EntryListIter<'a> {
        EntryListIter {
            list: *self,
            pos: 0,
            len: self.len(),
            rest: match self.repr {
                Repr::Wire { bytes, .. } => bytes,
                Repr::Slice(_) => &[],
            },
        }
    }
}

impl<'a> IntoIterator for EntryList<'a> {
    type Item = Entry<'a>;
    type IntoIter = EntryListIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over an [`EntryList`].
#[derive(Clone, Debug)]
pub struct EntryListIter<'a> {
    list: EntryList<'a>,
    pos: usize,
    len: usize,
    /// Of a received list: the encoded entries not yet read.
    rest: &'a [u8],
}

impl<'a> Iterator for EntryListIter<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        if self.pos >= self.len {
            return None;
        }
        let index = self.list.first.plus(self.pos as u64);
        self.pos += 1;
        match self.list.repr {
            Repr::Slice(s) => s.get(self.pos - 1).map(|e| Entry { index, ..*e }),
            Repr::Wire { .. } => {
                // Validated when the message was decoded: every entry parses and nothing
                // trails, so a failure here would be a codec bug, and ending the iteration early
                // is the safe answer.
                let mut r = Reader::new(self.rest);
                let (term, kind, data) = decode_entry(&mut r).ok()?;
                self.rest = r.rest();
                Some(Entry {
                    index,
                    term,
                    kind,
                    data,
                })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.len - self.pos;
        (n, Some(n))
    }
}

impl ExactSizeIterator for EntryListIter<'_> {}

// Variant numbers on the wire. Postcard numbers an enum's variants in declaration order; these
// are `Body`'s (and `EntryKind`'s) as of wire version 1 and never change within a version.
const PRE_VOTE: u64 = 0;
const PRE_VOTE_RESPONSE: u64 = 1;
const VOTE: u64 = 2;
const VOTE_RESPONSE: u64 = 3;
const APPEND: u64 = 4;
const APPEND_RESPONSE: u64 = 5;
const HEARTBEAT: u64 = 6;
const HEARTBEAT_RESPONSE: u64 = 7;
const READ_INDEX: u64 = 8;
const READ_INDEX_RESPONSE: u64 = 9;
const SNAPSHOT: u64 = 10;
const SNAPSHOT_RESPONSE: u64 = 11;
const TIMEOUT_NOW: u64 = 12;
const KIND_NORMAL: u64 = 0;
const KIND_NOOP: u64 = 1;
const KIND_CONFIG: u64 = 2;

/// Writes the envelope header for `msg` into `buf`, with `count` as the entry count of an
/// append, and returns the bytes written.
///
/// The header is postcard's encoding of `{ from: u64, to: u64, term: u64, body: WireBody }`,
/// where `WireBody` has one variant per [`Body`] variant, with its fields in the order
/// declared there (the entries of an append replaced by their `count: u32`), numbers as
/// varints and a [`RejectHint`] as `Option<{ index: u64, term: u64 }>`. See [`crate::wire`].
pub(crate) fn encode_header(
    msg: &Message<'_>,
    count: u32,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let mut w = Writer::new(buf);
    w.byte(WIRE_VERSION)?;
    w.varint(msg.from.0)?;
    w.varint(msg.to.0)?;
    w.varint(msg.term.0)?;
    match msg.body {
        Body::PreVote {
            last_index,
            last_term,
        } => {
            w.varint(PRE_VOTE)?;
            w.varint(last_index.0)?;
            w.varint(last_term.0)?;
        }
        Body::PreVoteResponse { reject } => {
            w.varint(PRE_VOTE_RESPONSE)?;
            w.bool(reject)?;
        }
        Body::Vote {
            last_index,
            last_term,
            transfer,
        } => {
            w.varint(VOTE)?;
            w.varint(last_index.0)?;
            w.varint(last_term.0)?;
            w.bool(transfer)?;
        }
        Body::VoteResponse { reject } => {
            w.varint(VOTE_RESPONSE)?;
            w.bool(reject)?;
        }
        Body::Append {
            prev_index,
            prev_term,
            commit,
            ..
        } => {
            w.varint(APPEND)?;
            w.varint(prev_index.0)?;
            w.varint(prev_term.0)?;
            w.varint(commit.0)?;
            w.varint(u64::from(count))?;
        }
        Body::AppendResponse { index, reject } => {
            w.varint(APPEND_RESPONSE)?;
            w.varint(index.0)?;
            match reject {
                None => w.bool(false)?,
                Some(hint) => {
                    w.bool(true)?;
                    w.varint(hint.index.0)?;
                    w.varint(hint.term.0)?;
                }
            }
        }
        Body::Heartbeat { commit, round } => {
            w.varint(HEARTBEAT)?;
            w.varint(commit.0)?;
            w.varint(round)?;
        }
        Body::HeartbeatResponse { round } => {
            w.varint(HEARTBEAT_RESPONSE)?;
            w.varint(round)?;
        }
        Body::ReadIndex { context } => {
            w.varint(READ_INDEX)?;
            w.varint(context)?;
        }
        Body::ReadIndexResponse { context, index } => {
            w.varint(READ_INDEX_RESPONSE)?;
            w.varint(context)?;
            w.varint(index.0)?;
        }
        Body::Snapshot {
            index,
            term,
            len,
            offset,
            membership,
            crc,
            data,
        } => {
            w.varint(SNAPSHOT)?;
            w.varint(index.0)?;
            w.varint(term.0)?;
            w.varint(len)?;
            w.varint(offset)?;
            w.bytes(membership)?;
            w.bytes(data)?;
            w.fixed_u32(crc)?;
        }
        Body::SnapshotResponse { index, next } => {
            w.varint(SNAPSHOT_RESPONSE)?;
            w.varint(index.0)?;
            w.varint(next)?;
        }
        Body::TimeoutNow => w.varint(TIMEOUT_NOW)?,
    }
    Ok(w.len())
}

/// Writes one entry of an append into `buf` and returns the bytes written: postcard's encoding
/// of `{ term: u64, kind: EntryKind, data: &[u8] }`.
#[inline]
pub(crate) fn encode_entry(e: &Entry<'_>, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = Writer::new(buf);
    w.varint(e.term.0)?;
    w.varint(match e.kind {
        EntryKind::Normal => KIND_NORMAL,
        EntryKind::Noop => KIND_NOOP,
        EntryKind::Config => KIND_CONFIG,
    })?;
    w.bytes(e.data)?;
    Ok(w.len())
}

/// Writes a snapshot chunk message up to and including its data's length prefix, for a chunk
/// of `data_len` bytes: the caller reads the data into place right after, then appends the
/// CRC with [`finish_snapshot_chunk`]. Returns the bytes written.
pub(crate) fn encode_snapshot_prefix(
    msg: &Message<'_>,
    data_len: usize,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let Body::Snapshot {
        index,
        term,
        len,
        offset,
        membership,
        ..
    } = msg.body
    else {
        return Err(EncodeError::BufferFull);
    };
    let mut w = Writer::new(buf);
    w.byte(WIRE_VERSION)?;
    w.varint(msg.from.0)?;
    w.varint(msg.to.0)?;
    w.varint(msg.term.0)?;
    w.varint(SNAPSHOT)?;
    w.varint(index.0)?;
    w.varint(term.0)?;
    w.varint(len)?;
    w.varint(offset)?;
    w.bytes(membership)?;
    w.varint(data_len as u64)?;
    Ok(w.len())
}

/// Writes the CRC that ends a snapshot chunk message into `buf` (4 bytes).
pub(crate) fn finish_snapshot_chunk(crc: u32, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = Writer::new(buf);
    w.fixed_u32(crc)?;
    Ok(w.len())
}

/// Reads one entry written by [`encode_entry`]: its term, kind and payload.
#[inline]
fn decode_entry<'a>(r: &mut Reader<'a>) -> Result<(Term, EntryKind, &'a [u8]), DecodeError> {
    let term = Term(r.varint()?);
    let kind = match u64::from(r.varint_u32()?) {
        KIND_NORMAL => EntryKind::Normal,
        KIND_NOOP => EntryKind::Noop,
        KIND_CONFIG => EntryKind::Config,
        _ => return Err(DecodeError::Malformed),
    };
    Ok((term, kind, r.bytes()?))
}

/// Upper bound of the encoded size of an entry with `data_len` payload bytes.
pub(crate) const fn entry_wire_len(data_len: usize) -> usize {
    ENTRY_OVERHEAD + data_len
}

impl<'a> Message<'a> {
    /// Encodes the message into `buf` and returns how many bytes it took.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let entries = match self.body {
            Body::Append { entries, .. } => Some(entries),
            _ => None,
        };
        let count = entries.map_or(0, |e| e.len());
        let count = u32::try_from(count).map_err(|_| EncodeError::BufferFull)?;
        let mut n = encode_header(self, count, buf)?;
        if let Some(entries) = entries {
            for e in entries.iter() {
                n += encode_entry(&e, buf.get_mut(n..).ok_or(EncodeError::BufferFull)?)?;
            }
        }
        Ok(n)
    }

    /// Decodes one message from `bytes`. Entry payloads borrow from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != WIRE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let mut r = Reader::new(rest);
        let from = NodeId(r.varint()?);
        let to = NodeId(r.varint()?);
        let term = Term(r.varint()?);
        let body = match u64::from(r.varint_u32()?) {
            PRE_VOTE => {
                let last_index = Index(r.varint()?);
                let last_term = Term(r.varint()?);
                Body::PreVote {
                    last_index,
                    last_term,
                }
            }
            PRE_VOTE_RESPONSE => Body::PreVoteResponse { reject: r.bool()? },
            VOTE => {
                let last_index = Index(r.varint()?);
                let last_term = Term(r.varint()?);
                let transfer = r.bool()?;
                Body::Vote {
                    last_index,
                    last_term,
                    transfer,
                }
            }
            VOTE_RESPONSE => Body::VoteResponse { reject: r.bool()? },
            APPEND => {
                let prev_index = Index(r.varint()?);
                let prev_term = Term(r.varint()?);
                let commit = Index(r.varint()?);
                let count = r.varint_u32()?;
                // Every entry takes at least three bytes, so `count` cannot make this loop run
                // longer than the input.
                let bytes = r.rest();
                let (mut first, mut last, mut ordered) = (Term::ZERO, Term::ZERO, true);
                for k in 0..count {
                    let (t, _, _) = decode_entry(&mut r)?;
                    if k == 0 {
                        first = t;
                    } else if t < last {
                        ordered = false;
                    }
                    last = t;
                }
                if !r.rest().is_empty() {
                    return Err(DecodeError::TrailingBytes);
                }
                let entries = EntryList {
                    repr: Repr::Wire {
                        bytes,
                        count,
                        terms: ordered.then_some((first, last)),
                    },
                    first: prev_index.next(),
                };
                Body::Append {
                    prev_index,
                    prev_term,
                    commit,
                    entries,
                }
            }
            APPEND_RESPONSE => {
                let index = Index(r.varint()?);
                let reject = if r.bool()? {
                    let index = Index(r.varint()?);
                    let term = Term(r.varint()?);
                    Some(RejectHint { index, term })
                } else {
                    None
                };
                Body::AppendResponse { index, reject }
            }
            HEARTBEAT => {
                let commit = Index(r.varint()?);
                let round = r.varint()?;
                Body::Heartbeat { commit, round }
            }
            HEARTBEAT_RESPONSE => Body::HeartbeatResponse { round: r.varint()? },
            READ_INDEX => Body::ReadIndex {
                context: r.varint()?,
            },
            READ_INDEX_RESPONSE => {
                let context = r.varint()?;
                let index = Index(r.varint()?);
                Body::ReadIndexResponse { context, index }
            }
            SNAPSHOT => {
                let index = Index(r.varint()?);
                let term = Term(r.varint()?);
                let len = r.varint()?;
                let offset = r.varint()?;
                let membership = r.bytes()?;
                let data = r.bytes()?;
                let crc = r.fixed_u32()?;
                // A membership that does not decode, or a chunk beyond the snapshot's end,
                // is no snapshot at all.
                let end = offset.checked_add(data.len() as u64);
                if crate::Membership::decode(membership).map(|(_, rest)| rest.is_empty())
                    != Ok(true)
                    || end.is_none_or(|e| e > len)
                    || index == Index::ZERO
                    || term == Term::ZERO
                {
                    return Err(DecodeError::Malformed);
                }
                Body::Snapshot {
                    index,
                    term,
                    len,
                    offset,
                    membership,
                    crc,
                    data,
                }
            }
            SNAPSHOT_RESPONSE => {
                let index = Index(r.varint()?);
                let next = r.varint()?;
                Body::SnapshotResponse { index, next }
            }
            TIMEOUT_NOW => Body::TimeoutNow,
            _ => return Err(DecodeError::Malformed),
        };
        if !r.rest().is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Message {
            from,
            to,
            term,
            body,
        })
    }

    /// The entries of an append numbered from its `prev_index + 1`, or an empty list.
    pub fn entries(&self) -> EntryList<'a> {
        match self.body {
            Body::Append {
                prev_index,
                entries,
                ..
            } => entries.with_first(prev_index.next()),
            _ => EntryList::EMPTY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(m: Message<'_>) {
        let mut buf = [0u8; 512];
        let n = m.encode(&mut buf).expect("fits");
        let d = Message::decode(&buf[..n]).expect("decodes");
        assert_eq!(d.from, m.from);
        assert_eq!(d.to, m.to);
        assert_eq!(d.term, m.term);
        assert_eq!(d.body.name(), m.body.name());
        let a: heapless::Vec<Entry<'_>, 8> = m.entries().iter().collect();
        let b: heapless::Vec<Entry<'_>, 8> = d.entries().iter().collect();
        assert_eq!(a, b);
        // Any strict prefix is rejected, never mis-read.
        for cut in 0..n {
            assert!(
                Message::decode(&buf[..cut]).is_err(),
                "prefix {cut} of {n} decoded"
            );
        }
    }

    #[test]
    fn every_body_roundtrips() {
        let e = [
            Entry {
                index: Index(0),
                term: Term(2),
                kind: EntryKind::Noop,
                data: &[],
            },
            Entry {
                index: Index(0),
                term: Term(3),
                kind: EntryKind::Normal,
                data: b"hello",
            },
        ];
        let bodies = [
            Body::PreVote {
                last_index: Index(7),
                last_term: Term(3),
            },
            Body::PreVoteResponse { reject: true },
            Body::Vote {
                last_index: Index(7),
                last_term: Term(3),
                transfer: true,
            },
            Body::VoteResponse { reject: false },
            Body::Append {
                prev_index: Index(5),
                prev_term: Term(1),
                commit: Index(4),
                entries: EntryList::from_slice(&e),
            },
            Body::AppendResponse {
                index: Index(9),
                reject: Some(RejectHint {
                    index: Index(3),
                    term: Term(1),
                }),
            },
            Body::Heartbeat {
                commit: Index(u64::MAX),
                round: u64::MAX,
            },
            Body::HeartbeatResponse { round: 1 },
            Body::ReadIndex { context: 42 },
            Body::ReadIndexResponse {
                context: 42,
                index: Index(8),
            },
            Body::Snapshot {
                index: Index(9),
                term: Term(2),
                len: 100,
                offset: 97,
                membership: &[0, 1, 1, 1],
                crc: 7,
                data: b"end",
            },
            Body::SnapshotResponse {
                index: Index(9),
                next: 100,
            },
            Body::TimeoutNow,
        ];
        for body in bodies {
            roundtrip(Message {
                from: NodeId(u64::MAX),
                to: NodeId(2),
                term: Term(u64::MAX),
                body,
            });
        }
    }

    #[test]
    fn decoded_entries_are_numbered_from_prev_index() {
        let e = [Entry {
            index: Index(99),
            term: Term(3),
            kind: EntryKind::Normal,
            data: b"x",
        }; 3];
        let m = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: Body::Append {
                prev_index: Index(10),
                prev_term: Term(2),
                commit: Index(0),
                entries: EntryList::from_slice(&e),
            },
        };
        let mut buf = [0u8; 128];
        let n = m.encode(&mut buf).expect("fits");
        let d = Message::decode(&buf[..n]).expect("decodes");
        let idx: heapless::Vec<u64, 4> = d.entries().iter().map(|e| e.index.0).collect();
        assert_eq!(&idx[..], &[11, 12, 13]);
    }

    #[test]
    fn header_bound_holds_for_extreme_values() {
        let m = Message {
            from: NodeId(u64::MAX),
            to: NodeId(u64::MAX),
            term: Term(u64::MAX),
            body: Body::Append {
                prev_index: Index(u64::MAX),
                prev_term: Term(u64::MAX),
                commit: Index(u64::MAX),
                entries: EntryList::EMPTY,
            },
        };
        let mut buf = [0u8; 256];
        let n = m.encode(&mut buf).expect("fits");
        assert!(n <= MAX_HEADER_LEN, "{n} > {MAX_HEADER_LEN}");
        let mut buf = [0u8; 64];
        let big = [0xAB; 40];
        let e = Entry {
            index: Index(1),
            term: Term(u64::MAX),
            kind: EntryKind::Normal,
            data: &big,
        };
        let n = encode_entry(&e, &mut buf).expect("fits");
        assert!(n <= entry_wire_len(big.len()));
    }

    #[test]
    fn rejects_bad_version_empty_and_trailing() {
        assert_eq!(Message::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(
            Message::decode(&[9, 0, 0]),
            Err(DecodeError::UnsupportedVersion(9))
        );
        let m = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: Body::VoteResponse { reject: false },
        };
        let mut buf = [0u8; 64];
        let n = m.encode(&mut buf).expect("fits");
        assert_eq!(
            Message::decode(&buf[..n + 1]),
            Err(DecodeError::TrailingBytes)
        );
    }

    #[test]
    fn decoded_and_built_lists_agree_on_term_order() {
        let e = |t| Entry {
            index: Index(0),
            term: Term(t),
            kind: EntryKind::Normal,
            data: b"x",
        };
        let cases: &[(&[u64], u64, u64, bool)] = &[
            (&[], 5, 5, true),
            (&[2, 2, 3], 2, 3, true),
            (&[2, 2, 3], 3, 3, false),
            (&[2, 2, 3], 1, 2, false),
            (&[3, 2], 1, 9, false),
            (&[0], 0, 9, true),
            (&[0], 1, 9, false),
        ];
        for &(terms, lo, hi, want) in cases {
            let list: heapless::Vec<Entry<'_>, 4> = terms.iter().map(|&t| e(t)).collect();
            let m = Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(9),
                body: Body::Append {
                    prev_index: Index(0),
                    prev_term: Term(0),
                    commit: Index(0),
                    entries: EntryList::from_slice(&list),
                },
            };
            let mut buf = [0u8; 64];
            let n = m.encode(&mut buf).expect("fits");
            let d = Message::decode(&buf[..n]).expect("decodes");
            let (lo, hi) = (Term(lo), Term(hi));
            assert_eq!(m.entries().terms_within(lo, hi), want, "{terms:?}");
            assert_eq!(d.entries().terms_within(lo, hi), want, "{terms:?}");
        }
    }

    // ----- the hand-written codec is postcard's -----

    /// The wire types as serde sees them: what the format is defined by. The codec above must
    /// produce and accept exactly what postcard does with these.
    mod reference {
        use serde::{Deserialize, Serialize};

        use super::super::{EntryKind, RejectHint};

        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        pub(super) struct Header<'a> {
            pub(super) from: u64,
            pub(super) to: u64,
            pub(super) term: u64,
            #[serde(borrow)]
            pub(super) body: WireBody<'a>,
        }

        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        pub(super) enum WireBody<'a> {
            PreVote {
                last_index: u64,
                last_term: u64,
            },
            PreVoteResponse {
                reject: bool,
            },
            Vote {
                last_index: u64,
                last_term: u64,
                transfer: bool,
            },
            VoteResponse {
                reject: bool,
            },
            Append {
                prev_index: u64,
                prev_term: u64,
                commit: u64,
                count: u32,
            },
            AppendResponse {
                index: u64,
                reject: Option<RejectHint>,
            },
            Heartbeat {
                commit: u64,
                round: u64,
            },
            HeartbeatResponse {
                round: u64,
            },
            ReadIndex {
                context: u64,
            },
            ReadIndexResponse {
                context: u64,
                index: u64,
            },
            Snapshot {
                index: u64,
                term: u64,
                len: u64,
                offset: u64,
                #[serde(borrow)]
                membership: &'a [u8],
                #[serde(borrow)]
                data: &'a [u8],
                crc: [u8; 4],
            },
            SnapshotResponse {
                index: u64,
                next: u64,
            },
            TimeoutNow,
        }

        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        pub(super) struct WireEntry<'a> {
            pub(super) term: u64,
            pub(super) kind: EntryKind,
            #[serde(borrow)]
            pub(super) data: &'a [u8],
        }
    }

    use proptest::prelude::*;
    use reference::{Header, WireBody, WireEntry};

    /// What postcard makes of `bytes`: the header and the entries, or the error `decode` must
    /// give.
    fn postcard_decode(
        bytes: &[u8],
    ) -> Result<(Header<'_>, heapless::Vec<WireEntry<'_>, 64>), DecodeError> {
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != WIRE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let (h, mut rest) =
            postcard::take_from_bytes::<Header<'_>>(rest).map_err(|_| DecodeError::Malformed)?;
        // The checks postcard cannot make, as `Message::decode` makes them.
        if let WireBody::Snapshot {
            index,
            term,
            len,
            offset,
            membership,
            data,
            ..
        } = h.body
        {
            let members_ok = crate::Membership::decode(membership)
                .map(|(_, r)| r.is_empty())
                .unwrap_or(false);
            let end = offset.checked_add(data.len() as u64);
            if !members_ok || end.is_none_or(|e| e > len) || index == 0 || term == 0 {
                return Err(DecodeError::Malformed);
            }
        }
        let mut entries = heapless::Vec::new();
        if let WireBody::Append { count, .. } = h.body {
            for _ in 0..count {
                let (e, r) = postcard::take_from_bytes::<WireEntry<'_>>(rest)
                    .map_err(|_| DecodeError::Malformed)?;
                entries.push(e).map_err(|_| DecodeError::Malformed)?;
                rest = r;
            }
        }
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok((h, entries))
    }

    fn to_reference<'m>(m: &Message<'m>) -> (Header<'m>, heapless::Vec<WireEntry<'m>, 64>) {
        let body = match m.body {
            Body::PreVote {
                last_index,
                last_term,
            } => WireBody::PreVote {
                last_index: last_index.0,
                last_term: last_term.0,
            },
            Body::PreVoteResponse { reject } => WireBody::PreVoteResponse { reject },
            Body::Vote {
                last_index,
                last_term,
                transfer,
            } => WireBody::Vote {
                last_index: last_index.0,
                last_term: last_term.0,
                transfer,
            },
            Body::VoteResponse { reject } => WireBody::VoteResponse { reject },
            Body::Append {
                prev_index,
                prev_term,
                commit,
                entries,
            } => WireBody::Append {
                prev_index: prev_index.0,
                prev_term: prev_term.0,
                commit: commit.0,
                count: entries.len() as u32,
            },
            Body::AppendResponse { index, reject } => WireBody::AppendResponse {
                index: index.0,
                reject,
            },
            Body::Heartbeat { commit, round } => WireBody::Heartbeat {
                commit: commit.0,
                round,
            },
            Body::HeartbeatResponse { round } => WireBody::HeartbeatResponse { round },
            Body::ReadIndex { context } => WireBody::ReadIndex { context },
            Body::ReadIndexResponse { context, index } => WireBody::ReadIndexResponse {
                context,
                index: index.0,
            },
            Body::Snapshot {
                index,
                term,
                len,
                offset,
                membership,
                crc,
                data,
            } => WireBody::Snapshot {
                index: index.0,
                term: term.0,
                len,
                offset,
                membership,
                data,
                crc: crc.to_le_bytes(),
            },
            Body::SnapshotResponse { index, next } => WireBody::SnapshotResponse {
                index: index.0,
                next,
            },
            Body::TimeoutNow => WireBody::TimeoutNow,
        };
        let header = Header {
            from: m.from.0,
            to: m.to.0,
            term: m.term.0,
            body,
        };
        let entries = m
            .entries()
            .iter()
            .map(|e| WireEntry {
                term: e.term.0,
                kind: e.kind,
                data: e.data,
            })
            .collect();
        (header, entries)
    }

    fn postcard_encode(m: &Message<'_>, buf: &mut [u8]) -> usize {
        let (header, entries) = to_reference(m);
        buf[0] = WIRE_VERSION;
        let mut n = 1 + postcard::to_slice(&header, &mut buf[1..])
            .expect("fits")
            .len();
        for e in &entries {
            n += postcard::to_slice(e, &mut buf[n..]).expect("fits").len();
        }
        n
    }

    fn any_u64() -> impl Strategy<Value = u64> {
        prop_oneof![0..300u64, any::<u64>(), Just(u64::MAX)]
    }

    prop_compose! {
        fn any_message()(
            from in any_u64(), to in any_u64(), term in any_u64(), a in any_u64(),
            b in any_u64(), c in any_u64(), flag in any::<bool>(), kind in 0..13u8,
            entries in proptest::collection::vec(
                (any_u64(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)),
                0..5),
        ) -> (u64, u64, u64, u8, u64, u64, u64, bool, Vec<(u64, bool, Vec<u8>)>) {
            (from, to, term, kind, a, b, c, flag, entries)
        }
    }

    extern crate std;
    use std::vec::Vec;

    proptest! {
        /// Every message encodes to postcard's bytes, and decodes back from them.
        #[test]
        fn encoding_is_postcards(
            (from, to, term, kind, a, b, c, flag, entries) in any_message()
        ) {
            // A valid encoded membership of voters 1..=n (for snapshot chunks).
            let mut members = [0u8; crate::Membership::MAX_ENCODED_LEN];
            let voters: Vec<NodeId> = (1..=(a % 5) + 1).map(NodeId).collect();
            let members = {
                let n = crate::Membership::with_voters(&voters)
                    .expect("valid")
                    .encode(&mut members)
                    .expect("fits");
                &members[..n]
            };
            let list: Vec<Entry<'_>> = entries
                .iter()
                .map(|(t, noop, d)| Entry {
                    index: Index(0),
                    term: Term(*t),
                    kind: if *noop { EntryKind::Noop } else { EntryKind::Normal },
                    data: d,
                })
                .collect();
            let body = match kind {
                0 => Body::PreVote { last_index: Index(a), last_term: Term(b) },
                1 => Body::PreVoteResponse { reject: flag },
                2 => Body::Vote { last_index: Index(a), last_term: Term(b), transfer: flag },
                3 => Body::VoteResponse { reject: flag },
                4 => Body::Append {
                    prev_index: Index(a),
                    prev_term: Term(b),
                    commit: Index(c),
                    entries: EntryList::from_slice(&list),
                },
                5 => Body::AppendResponse {
                    index: Index(a),
                    reject: flag.then_some(RejectHint { index: Index(b), term: Term(c) }),
                },
                6 => Body::Heartbeat { commit: Index(a), round: b },
                7 => Body::HeartbeatResponse { round: a },
                8 => Body::ReadIndex { context: a },
                9 => Body::ReadIndexResponse { context: a, index: Index(b) },
                10 => Body::Snapshot {
                    index: Index(a.max(1)),
                    term: Term(b.max(1)),
                    len: c.max(members.len() as u64 + 7),
                    offset: 7,
                    membership: members,
                    crc: a as u32,
                    data: members,
                },
                11 => Body::SnapshotResponse { index: Index(a), next: b },
                _ => Body::TimeoutNow,
            };
            let m = Message { from: NodeId(from), to: NodeId(to), term: Term(term), body };
            let mut ours = [0u8; 2048];
            let mut theirs = [0u8; 2048];
            let n = m.encode(&mut ours).expect("fits");
            let k = postcard_encode(&m, &mut theirs);
            prop_assert_eq!(&ours[..n], &theirs[..k]);
            let d = Message::decode(&ours[..n]).expect("decodes");
            prop_assert_eq!(to_reference(&d), to_reference(&m));
            // A buffer one byte short is refused, never overrun.
            prop_assert!(m.encode(&mut ours[..n - 1]).is_err());
        }

        /// On any bytes, and on valid encodings with bytes changed, `decode` agrees with
        /// postcard: the same message, or the same error.
        #[test]
        fn decoding_agrees_with_postcard(
            (from, to, term, kind, a, b, c, flag, entries) in any_message(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
            raw in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let list: Vec<Entry<'_>> = entries
                .iter()
                .map(|(t, noop, d)| Entry {
                    index: Index(0),
                    term: Term(*t),
                    kind: if *noop { EntryKind::Noop } else { EntryKind::Normal },
                    data: d,
                })
                .collect();
            let body = match kind % 3 {
                0 => Body::Append {
                    prev_index: Index(a),
                    prev_term: Term(b),
                    commit: Index(c),
                    entries: EntryList::from_slice(&list),
                },
                1 => Body::AppendResponse {
                    index: Index(a),
                    reject: flag.then_some(RejectHint { index: Index(b), term: Term(c) }),
                },
                _ => Body::Heartbeat { commit: Index(a), round: b },
            };
            let m = Message { from: NodeId(from), to: NodeId(to), term: Term(term), body };
            let mut buf = [0u8; 2048];
            let n = m.encode(&mut buf).expect("fits");
            for (at, byte) in edits {
                buf[at % n] = byte;
            }
            let n = if cut % 4 == 0 { cut % (n + 1) } else { n };
            let mut versioned = [0u8; 65];
            versioned[0] = WIRE_VERSION;
            versioned[1..=raw.len()].copy_from_slice(&raw);
            for input in [&buf[..n], &raw[..], &versioned[..=raw.len()]] {
                let ours = Message::decode(input).map(|d| to_reference(&d));
                prop_assert_eq!(ours, postcard_decode(input));
            }
        }
    }
}
