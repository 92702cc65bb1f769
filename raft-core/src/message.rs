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

use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, EncodeError};
use crate::types::{Index, NodeId, Term};

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
        }
    }
}

/// The entries of an append: either still encoded (as received) or a slice of entries (as a
/// test or host builds them). Iterating yields entries at consecutive indices from `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryList<'a> {
    repr: Repr<'a>,
    first: Index,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repr<'a> {
    Wire { bytes: &'a [u8], count: u32 },
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

    /// The entries, numbered from the append's `prev_index + 1`.
    pub fn iter(&self) -> EntryListIter<'a> {
        EntryListIter {
            list: *self,
            pos: 0,
            offset: 0,
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
    offset: usize,
}

impl<'a> Iterator for EntryListIter<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        if self.pos >= self.list.len() {
            return None;
        }
        let index = self.list.first.plus(self.pos as u64);
        self.pos += 1;
        match self.list.repr {
            Repr::Slice(s) => {
                let e = s[self.pos - 1];
                Some(Entry { index, ..e })
            }
            Repr::Wire { bytes, .. } => {
                // Validated when the message was decoded: every entry parses and nothing
                // trails, so a failure here would be a codec bug, and ending the iteration early
                // is the safe answer.
                let (w, rest) =
                    postcard::take_from_bytes::<WireEntry<'a>>(&bytes[self.offset..]).ok()?;
                self.offset = bytes.len() - rest.len();
                Some(Entry {
                    index,
                    term: Term(w.term),
                    kind: w.kind,
                    data: w.data,
                })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.list.len() - self.pos;
        (n, Some(n))
    }
}

impl ExactSizeIterator for EntryListIter<'_> {}

#[derive(Serialize, Deserialize)]
struct Header {
    from: u64,
    to: u64,
    term: u64,
    body: WireBody,
}

#[derive(Serialize, Deserialize)]
enum WireBody {
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
}

#[derive(Serialize, Deserialize)]
struct WireEntry<'a> {
    term: u64,
    kind: EntryKind,
    #[serde(borrow)]
    data: &'a [u8],
}

/// Writes the envelope header for `msg` into `buf`, with `count` as the entry count of an
/// append, and returns the bytes written.
pub(crate) fn encode_header(
    msg: &Message<'_>,
    count: u32,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let body = match msg.body {
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
        } => WireBody::Vote {
            last_index: last_index.0,
            last_term: last_term.0,
        },
        Body::VoteResponse { reject } => WireBody::VoteResponse { reject },
        Body::Append {
            prev_index,
            prev_term,
            commit,
            ..
        } => WireBody::Append {
            prev_index: prev_index.0,
            prev_term: prev_term.0,
            commit: commit.0,
            count,
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
    };
    let header = Header {
        from: msg.from.0,
        to: msg.to.0,
        term: msg.term.0,
        body,
    };
    let (first, rest) = buf.split_first_mut().ok_or(EncodeError::BufferFull)?;
    *first = WIRE_VERSION;
    let used = postcard::to_slice(&header, rest)
        .map_err(|_| EncodeError::BufferFull)?
        .len();
    Ok(1 + used)
}

/// Writes one entry of an append into `buf` and returns the bytes written.
pub(crate) fn encode_entry(e: &Entry<'_>, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let w = WireEntry {
        term: e.term.0,
        kind: e.kind,
        data: e.data,
    };
    postcard::to_slice(&w, buf)
        .map(|s| s.len())
        .map_err(|_| EncodeError::BufferFull)
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
                n += encode_entry(&e, &mut buf[n..])?;
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
        let (h, rest) =
            postcard::take_from_bytes::<Header>(rest).map_err(|_| DecodeError::Malformed)?;
        let body = match h.body {
            WireBody::PreVote {
                last_index,
                last_term,
            } => Body::PreVote {
                last_index: Index(last_index),
                last_term: Term(last_term),
            },
            WireBody::PreVoteResponse { reject } => Body::PreVoteResponse { reject },
            WireBody::Vote {
                last_index,
                last_term,
            } => Body::Vote {
                last_index: Index(last_index),
                last_term: Term(last_term),
            },
            WireBody::VoteResponse { reject } => Body::VoteResponse { reject },
            WireBody::Append {
                prev_index,
                prev_term,
                commit,
                count,
            } => {
                // Every entry takes at least three bytes, so `count` cannot make this loop run
                // longer than the input.
                let mut cursor = rest;
                for _ in 0..count {
                    let (_, r) = postcard::take_from_bytes::<WireEntry<'_>>(cursor)
                        .map_err(|_| DecodeError::Malformed)?;
                    cursor = r;
                }
                if !cursor.is_empty() {
                    return Err(DecodeError::TrailingBytes);
                }
                let entries = EntryList {
                    repr: Repr::Wire { bytes: rest, count },
                    first: Index(1),
                }
                .with_first(Index(prev_index).next());
                Body::Append {
                    prev_index: Index(prev_index),
                    prev_term: Term(prev_term),
                    commit: Index(commit),
                    entries,
                }
            }
            WireBody::AppendResponse { index, reject } => Body::AppendResponse {
                index: Index(index),
                reject,
            },
            WireBody::Heartbeat { commit, round } => Body::Heartbeat {
                commit: Index(commit),
                round,
            },
            WireBody::HeartbeatResponse { round } => Body::HeartbeatResponse { round },
            WireBody::ReadIndex { context } => Body::ReadIndex { context },
            WireBody::ReadIndexResponse { context, index } => Body::ReadIndexResponse {
                context,
                index: Index(index),
            },
        };
        if !matches!(body, Body::Append { .. }) && !rest.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Message {
            from: NodeId(h.from),
            to: NodeId(h.to),
            term: Term(h.term),
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
}
