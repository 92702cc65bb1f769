//! Small `Copy` error enums, one per operation.
//!
//! Caller mistakes and hostile input come back as one of these; none of them carries a string or
//! allocates, so a C or Python host can map each to a stable code.

use core::fmt;

use crate::membership::MembershipError;
use crate::types::{Index, NodeId};

/// Why a [`Config`](crate::Config) was refused by [`Node::new`](crate::Node::new).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `id` is 0, which is reserved for "nobody".
    ZeroId,
    /// The voter list names `id` 0 or names the same node twice.
    InvalidVoter(NodeId),
    /// The voter list does not include this node's own id.
    SelfNotVoter,
    /// More members than the node's `PEERS` capacity.
    TooManyPeers {
        /// Members requested.
        requested: usize,
        /// The compile-time capacity.
        capacity: usize,
    },
    /// `heartbeat_ticks` is 0, `election_ticks` is not greater than `heartbeat_ticks`, or
    /// `election_ticks` exceeds `u32::MAX / 2` (twice it must still count in ticks).
    InvalidTicks,
    /// `max_entry_bytes` does not fit in one append message or in the unstable log.
    EntryLimitTooLarge,
    /// `max_append_bytes` is larger than the outbox, or too small to carry one entry.
    AppendLimitInvalid,
    /// The storage's persisted state is inconsistent (commit beyond its last index, an
    /// unreadable term, a snapshot that does not match the log, or a configuration entry that
    /// does not decode or does not fit `PEERS`).
    InvalidStorage,
    /// `max_snapshot_chunk` is 0, or a chunk with its header does not fit the outbox.
    SnapshotChunkInvalid,
    /// `read_lease` needs `check_quorum`.
    LeaseNeedsCheckQuorum,
}

/// Why [`Node::propose`](crate::Node::propose) refused a proposal. Nothing was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProposeError {
    /// Only the leader accepts proposals; `leader` is the one this node knows, if any.
    NotLeader {
        /// The current leader, if known; a host may forward the proposal there.
        leader: Option<NodeId>,
    },
    /// The payload is larger than `Config::max_entry_bytes`.
    TooLarge {
        /// Bytes offered.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The unstable log (entries not yet persisted) is full, or too many entries are not yet
    /// committed. Persist, `advance`, and retry: this is backpressure, not failure.
    Busy,
    /// A leadership transfer is under way (it completes or aborts within an election timeout);
    /// retry, at the new leader if there is one.
    Transferring,
    /// A configuration change is still in flight (not yet committed, or a joint configuration
    /// not yet left), or this leader has not yet committed an entry of its term. Retry.
    ConfChangePending,
    /// The configuration change is not valid for the current membership.
    InvalidConfChange(MembershipError),
    /// The learner to promote has not caught up with the leader's log yet (it lags by more
    /// than `Config::max_learner_lag` entries, or is still receiving a snapshot). Retry.
    NotCaughtUp(NodeId),
}

/// Why [`Node::transfer_leadership`](crate::Node::transfer_leadership) did not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferError {
    /// Only the leader can hand over; `leader` is the one this node knows, if any.
    NotLeader {
        /// The current leader, if known.
        leader: Option<NodeId>,
    },
    /// The target is not a voter of the current configuration (or is this node).
    NotVoter(NodeId),
    /// Another transfer is under way.
    InProgress,
}

/// Why [`Node::campaign`](crate::Node::campaign) did not start an election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CampaignError {
    /// This node already leads.
    AlreadyLeader,
    /// This node is not a voter.
    NotVoter,
    /// The term is the largest there is, so no election can follow it. Only a hostile or broken
    /// peer can bring a node here (by sending that term); the node refuses to campaign rather
    /// than wrap its term back to 0.
    TermExhausted,
}

/// Why [`Node::read_index`](crate::Node::read_index) did not start a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// No leader is known to forward the read to.
    NoLeader,
    /// The queue of pending reads is full (`READS` capacity). Retry after a `Ready`.
    Busy,
}

/// Why [`Node::step`](crate::Node::step) refused a message. The node's state is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepError {
    /// The bytes are not a message.
    Decode(DecodeError),
    /// The message is addressed to another node.
    WrongRecipient(NodeId),
    /// The sender is not a member of this cluster (or claims to be this node).
    UnknownSender(NodeId),
    /// The message decodes but breaks the protocol's own rules (entries out of term order, an
    /// index that would overflow, ...). Counted in [`Counters::malformed`](crate::Counters).
    Malformed,
}

impl From<DecodeError> for StepError {
    fn from(e: DecodeError) -> Self {
        StepError::Decode(e)
    }
}

/// Why bytes failed to decode as a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is empty.
    Empty,
    /// The version byte is one this build does not speak.
    UnsupportedVersion(u8),
    /// The header or an entry is not valid postcard for its type, or is cut short.
    Malformed,
    /// Bytes remain after the last entry.
    TrailingBytes,
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferFull,
}

/// Why a [`Storage`](crate::Storage) read or a [`MemStorage`](crate::MemStorage) write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageError {
    /// The entry was discarded by log compaction.
    Compacted,
    /// The entry is beyond the last index.
    Unavailable,
    /// A write would exceed the storage's capacity.
    Full,
    /// A write does not continue the log (a gap before the first new entry).
    Gap {
        /// The index the storage expected next (at most).
        expected: Index,
        /// The index offered.
        got: Index,
    },
    /// The snapshot asked for is no longer the storage's latest (a newer one replaced it).
    SnapshotReplaced,
    /// The host's backend failed; the code is the host's own.
    Backend(u32),
}

macro_rules! display {
    ($t:ty, |$s:ident, $f:ident| $body:expr) => {
        impl fmt::Display for $t {
            fn fmt(&self, $f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $s = self;
                $body
            }
        }
        impl core::error::Error for $t {}
    };
}

display!(ConfigError, |s, f| match s {
    ConfigError::ZeroId => f.write_str("node id 0 is reserved"),
    ConfigError::InvalidVoter(id) => write!(f, "invalid or duplicate voter {id}"),
    ConfigError::SelfNotVoter => f.write_str("the voter list does not contain this node"),
    ConfigError::TooManyPeers {
        requested,
        capacity,
    } => {
        write!(f, "{requested} members exceed the capacity of {capacity}")
    }
    ConfigError::InvalidTicks => {
        f.write_str("need 0 < heartbeat_ticks < election_ticks <= u32::MAX / 2")
    }
    ConfigError::EntryLimitTooLarge => {
        f.write_str("max_entry_bytes exceeds the append message or unstable log capacity")
    }
    ConfigError::AppendLimitInvalid => f.write_str("max_append_bytes does not fit the outbox"),
    ConfigError::InvalidStorage => f.write_str("storage holds an inconsistent persisted state"),
    ConfigError::SnapshotChunkInvalid => {
        f.write_str("max_snapshot_chunk is 0 or does not fit the outbox")
    }
    ConfigError::LeaseNeedsCheckQuorum => f.write_str("read_lease needs check_quorum"),
});

display!(ProposeError, |s, f| match s {
    ProposeError::NotLeader { leader: Some(l) } => write!(f, "not the leader; leader is {l}"),
    ProposeError::NotLeader { leader: None } => f.write_str("not the leader; no leader known"),
    ProposeError::TooLarge { len, max } => write!(f, "entry of {len} bytes exceeds {max}"),
    ProposeError::Busy => f.write_str("log buffer full; persist, advance and retry"),
    ProposeError::Transferring => f.write_str("leadership transfer in progress; retry"),
    ProposeError::ConfChangePending => f.write_str("a configuration change is in flight; retry"),
    ProposeError::InvalidConfChange(e) => write!(f, "invalid configuration change: {e}"),
    ProposeError::NotCaughtUp(id) => write!(f, "learner {id} has not caught up yet; retry"),
});

display!(TransferError, |s, f| match s {
    TransferError::NotLeader { leader: Some(l) } => write!(f, "not the leader; leader is {l}"),
    TransferError::NotLeader { leader: None } => f.write_str("not the leader; no leader known"),
    TransferError::NotVoter(id) => write!(f, "{id} is not another voter"),
    TransferError::InProgress => f.write_str("a leadership transfer is already under way"),
});

display!(MembershipError, |s, f| match s {
    MembershipError::TooMany => f.write_str("too many members"),
    MembershipError::InvalidId(id) => write!(f, "invalid or repeated member id {id}"),
    MembershipError::NoEffect(id) => write!(f, "the change of {id} has no effect"),
    MembershipError::NoVoters => f.write_str("the change would leave no voter"),
    MembershipError::Joint => f.write_str("a joint configuration must be left first"),
});

display!(CampaignError, |s, f| match s {
    CampaignError::AlreadyLeader => f.write_str("already the leader"),
    CampaignError::NotVoter => f.write_str("not a voter"),
    CampaignError::TermExhausted => f.write_str("the term cannot be raised any further"),
});

display!(ReadError, |s, f| match s {
    ReadError::NoLeader => f.write_str("no leader known"),
    ReadError::Busy => f.write_str("too many pending reads"),
});

display!(StepError, |s, f| match s {
    StepError::Decode(e) => write!(f, "undecodable message: {e}"),
    StepError::WrongRecipient(to) => write!(f, "message addressed to {to}"),
    StepError::UnknownSender(from) => write!(f, "message from non-member {from}"),
    StepError::Malformed => f.write_str("message violates the protocol"),
});

display!(DecodeError, |s, f| match s {
    DecodeError::Empty => f.write_str("empty input"),
    DecodeError::UnsupportedVersion(v) => write!(f, "unsupported wire version {v}"),
    DecodeError::Malformed => f.write_str("malformed or truncated message"),
    DecodeError::TrailingBytes => f.write_str("trailing bytes after message"),
});

display!(EncodeError, |s, f| match s {
    EncodeError::BufferFull => f.write_str("output buffer too small"),
});

display!(StorageError, |s, f| match s {
    StorageError::Compacted => f.write_str("entry compacted"),
    StorageError::Unavailable => f.write_str("entry not yet in the log"),
    StorageError::Full => f.write_str("storage full"),
    StorageError::Gap { expected, got } => {
        write!(
            f,
            "append at index {got} leaves a gap (expected at most {expected})"
        )
    }
    StorageError::SnapshotReplaced => f.write_str("snapshot replaced by a newer one"),
    StorageError::Backend(code) => write!(f, "storage backend error {code}"),
});
