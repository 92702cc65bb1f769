//! The event trace: what happened in a simulation, in order.
//!
//! This structure is stable: printers, the visualizer and the Python labs read it. Each event
//! has the virtual time in microseconds and one [`EventKind`]. Its `Display` form is one line,
//! `<time in ms with 3 decimals> <subject> <what>`, for example:
//!
//! ```text
//!   1234.500 n3 role leader term=2
//!   1240.000 n3->n1 send Append term=2 index=5 entries=3 commit=4
//!   1241.200 n3->n1 drop Append (loss)
//!   1250.000 n3->n4 send Snapshot term=2 index=40 offset=4096 bytes=4096
//!   1251.100 n4->n3 send SnapshotResponse term=2 index=40 next=8192
//!   1300.000 n4 install snapshot index=40 term=2
//!   1310.000 n3 snapshot index=60 term=2 len=16384
//!   1400.000 n3 conf-change index=61 term=2 +learner n5
//!   1400.000 n3 config voters=[1,2,3,4] learners=[5]
//!   1500.000 n3 config joint old=[1,2,3,4] new=[2,3,4,5] learners=[]
//!   1600.000 n3 transfer to n2
//!   1700.000 n6 new
//! ```
//!
//! A message's summary shows its kind and term, then what it is about when that is not zero:
//! `index=` (see [`MsgSummary::index`]), `entries=`, `reject`; a snapshot chunk its `offset=`
//! and `bytes=`, a snapshot answer the `next=` offset it wants, a vote request sent on a
//! leadership transfer `transfer`.
//!
//! [`Trace::hash`] folds every event (including ones no longer kept in memory) into one
//! number: the same seed and the same script give the same hash, bit for bit.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};

use raft_core::{Body, ConfChange, Index, Membership, Message, NodeId, Role, Term};

use crate::storage::{hash_bytes, mix, FNV_OFFSET};

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Virtual time, microseconds since the start.
    pub time: u64,
    /// What happened.
    pub kind: EventKind,
}

/// The short form of a message, as traces show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgSummary {
    /// The message kind, as [`Body::name`].
    pub kind: &'static str,
    /// The term it carries.
    pub term: Term,
    /// The index it is about: `prev_index` of an append, the index acknowledged or rejected,
    /// the candidate's last index, a heartbeat's commit; 0 otherwise.
    pub index: Index,
    /// Entries carried (appends).
    pub entries: u32,
    /// Whether it refuses (vote or append rejections).
    pub reject: bool,
    /// A snapshot chunk's offset, or the next offset a snapshot answer asks for.
    pub offset: u64,
    /// A snapshot chunk's data bytes.
    pub bytes: u32,
    /// A vote request sent on a leadership transfer.
    pub transfer: bool,
}

impl MsgSummary {
    /// Summarises a decoded message.
    pub fn of(m: &Message<'_>) -> Self {
        let (offset, bytes, transfer) = match m.body {
            Body::Snapshot { offset, data, .. } => (offset, data.len() as u32, false),
            Body::SnapshotResponse { next, .. } => (next, 0, false),
            Body::Vote { transfer, .. } => (0, 0, transfer),
            _ => (0, 0, false),
        };
        let (index, entries, reject) = match m.body {
            Body::PreVote { last_index, .. } | Body::Vote { last_index, .. } => {
                (last_index, 0, false)
            }
            Body::PreVoteResponse { reject } | Body::VoteResponse { reject } => {
                (Index::ZERO, 0, reject)
            }
            Body::Append {
                prev_index,
                entries,
                ..
            } => (prev_index, entries.len() as u32, false),
            Body::AppendResponse { index, reject } => (index, 0, reject.is_some()),
            Body::Heartbeat { commit, .. } => (commit, 0, false),
            Body::ReadIndexResponse { index, .. } => (index, 0, false),
            Body::Snapshot { index, .. } | Body::SnapshotResponse { index, .. } => {
                (index, 0, false)
            }
            _ => (Index::ZERO, 0, false),
        };
        MsgSummary {
            kind: m.body.name(),
            term: m.term,
            index,
            entries,
            reject,
            offset,
            bytes,
            transfer,
        }
    }
}

/// Why a message did not arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Random loss on the link.
    Loss,
    /// The link is cut by a partition.
    Partition,
    /// The recipient is crashed.
    NodeDown,
    /// The recipient refused it ([`raft_core::StepError`]).
    Refused,
}

impl DropReason {
    fn name(self) -> &'static str {
        match self {
            DropReason::Loss => "loss",
            DropReason::Partition => "partition",
            DropReason::NodeDown => "down",
            DropReason::Refused => "refused",
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A node changed role (or term while keeping its role).
    Role {
        /// The node.
        node: NodeId,
        /// Its new role.
        role: Role,
        /// Its term.
        term: Term,
    },
    /// A node voted (granted a vote or pre-vote).
    Vote {
        /// The voter.
        node: NodeId,
        /// The candidate.
        candidate: NodeId,
        /// The term of the vote.
        term: Term,
        /// A pre-vote.
        pre: bool,
    },
    /// A message went onto the network.
    Send {
        /// Sender.
        from: NodeId,
        /// Recipient.
        to: NodeId,
        /// What it says.
        msg: MsgSummary,
    },
    /// The network delivered an extra copy of a message.
    Duplicate {
        /// Sender.
        from: NodeId,
        /// Recipient.
        to: NodeId,
        /// What it says.
        msg: MsgSummary,
    },
    /// A message was dropped.
    Drop {
        /// Sender.
        from: NodeId,
        /// Recipient.
        to: NodeId,
        /// What it said.
        msg: MsgSummary,
        /// Why.
        reason: DropReason,
    },
    /// A client proposal was accepted by a leader.
    Propose {
        /// The leader.
        node: NodeId,
        /// The index it got.
        index: Index,
        /// In this term.
        term: Term,
    },
    /// A node persisted entries (its log now ends at `last_index`).
    Persist {
        /// The node.
        node: NodeId,
        /// Entries written.
        entries: u32,
        /// Its last persisted index.
        last_index: Index,
    },
    /// A node's commit index advanced.
    Commit {
        /// The node.
        node: NodeId,
        /// Its new commit index.
        index: Index,
    },
    /// A node crashed, losing what it had not persisted.
    Crash {
        /// The node.
        node: NodeId,
    },
    /// A node restarted from its persisted state.
    Restart {
        /// The node.
        node: NodeId,
    },
    /// The network was split into groups (nodes not named are alone).
    Partition {
        /// The groups.
        groups: Vec<Vec<NodeId>>,
    },
    /// Every partition was healed.
    Heal,
    /// A free-form note from the script (scenario steps).
    Note {
        /// The text.
        text: String,
    },
    /// A node took a snapshot of its state machine and compacted its log through it.
    Snapshot {
        /// The node.
        node: NodeId,
        /// The last index it covers.
        index: Index,
        /// That entry's term.
        term: Term,
        /// Its size in bytes.
        len: u64,
    },
    /// A node installed a snapshot received from its leader: its log now starts after it and
    /// its state machine was restored from it.
    Install {
        /// The node.
        node: NodeId,
        /// The last index it covers.
        index: Index,
        /// That entry's term.
        term: Term,
    },
    /// A leader accepted a configuration change.
    ConfChange {
        /// The leader.
        node: NodeId,
        /// The index of its entry.
        index: Index,
        /// In this term.
        term: Term,
        /// The changes.
        changes: Vec<ConfChange>,
    },
    /// The configuration a node uses changed (a config entry appended, truncated, or a
    /// snapshot installed).
    Membership {
        /// The node.
        node: NodeId,
        /// The configuration now in effect there (boxed: it is much larger than any other
        /// event).
        membership: Box<Membership>,
    },
    /// A leader started handing leadership over.
    Transfer {
        /// The leader.
        node: NodeId,
        /// The target.
        to: NodeId,
    },
    /// A new node started, with an empty disk and no configuration, waiting to be added.
    NewNode {
        /// The node.
        node: NodeId,
    },
}

/// Writes ids as `[1,2,3]`.
fn write_ids(f: &mut fmt::Formatter<'_>, ids: impl Iterator<Item = NodeId>) -> fmt::Result {
    f.write_str("[")?;
    for (k, id) in ids.enumerate() {
        write!(f, "{}{id}", if k > 0 { "," } else { "" })?;
    }
    f.write_str("]")
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>10}.{:03} ", self.time / 1000, self.time % 1000)?;
        match &self.kind {
            EventKind::Role { node, role, term } => {
                write!(f, "n{node} role {} term={term}", role.name())
            }
            EventKind::Vote {
                node,
                candidate,
                term,
                pre,
            } => {
                let what = if *pre { "pre-vote" } else { "vote" };
                write!(f, "n{node} {what} for n{candidate} term={term}")
            }
            EventKind::Send { from, to, msg } => write!(f, "n{from}->n{to} send {msg}"),
            EventKind::Duplicate { from, to, msg } => write!(f, "n{from}->n{to} dup {msg}"),
            EventKind::Drop {
                from,
                to,
                msg,
                reason,
            } => {
                write!(f, "n{from}->n{to} drop {} ({})", msg.kind, reason.name())
            }
            EventKind::Propose { node, index, term } => {
                write!(f, "n{node} propose index={index} term={term}")
            }
            EventKind::Persist {
                node,
                entries,
                last_index,
            } => {
                write!(f, "n{node} persist entries={entries} last={last_index}")
            }
            EventKind::Commit { node, index } => write!(f, "n{node} commit {index}"),
            EventKind::Crash { node } => write!(f, "n{node} crash"),
            EventKind::Restart { node } => write!(f, "n{node} restart"),
            EventKind::Partition { groups } => {
                f.write_str("net partition")?;
                for g in groups {
                    f.write_str(" {")?;
                    for (k, n) in g.iter().enumerate() {
                        write!(f, "{}n{n}", if k > 0 { "," } else { "" })?;
                    }
                    f.write_str("}")?;
                }
                Ok(())
            }
            EventKind::Heal => f.write_str("net heal"),
            EventKind::Note { text } => write!(f, "-- {text}"),
            EventKind::Snapshot {
                node,
                index,
                term,
                len,
            } => write!(f, "n{node} snapshot index={index} term={term} len={len}"),
            EventKind::Install { node, index, term } => {
                write!(f, "n{node} install snapshot index={index} term={term}")
            }
            EventKind::ConfChange {
                node,
                index,
                term,
                changes,
            } => {
                write!(f, "n{node} conf-change index={index} term={term}")?;
                for (k, c) in changes.iter().enumerate() {
                    f.write_str(if k > 0 { ", " } else { " " })?;
                    match c {
                        ConfChange::AddLearner(id) => write!(f, "+learner n{id}")?,
                        ConfChange::AddVoter(id) => write!(f, "+voter n{id}")?,
                        ConfChange::Remove(id) => write!(f, "-n{id}")?,
                    }
                }
                Ok(())
            }
            EventKind::Membership { node, membership } => {
                let m = membership;
                write!(f, "n{node} config ")?;
                if m.is_joint() {
                    f.write_str("joint old=")?;
                    write_ids(f, m.members().iter().filter(|x| x.outgoing).map(|x| x.id))?;
                    f.write_str(" new=")?;
                } else {
                    f.write_str("voters=")?;
                }
                write_ids(f, m.voters())?;
                f.write_str(" learners=")?;
                write_ids(f, m.learners())
            }
            EventKind::Transfer { node, to } => write!(f, "n{node} transfer to n{to}"),
            EventKind::NewNode { node } => write!(f, "n{node} new"),
        }
    }
}

impl fmt::Display for MsgSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} term={}", self.kind, self.term)?;
        if self.index != Index::ZERO {
            write!(f, " index={}", self.index)?;
        }
        if self.entries > 0 {
            write!(f, " entries={}", self.entries)?;
        }
        if self.reject {
            f.write_str(" reject")?;
        }
        match self.kind {
            "Snapshot" => write!(f, " offset={} bytes={}", self.offset, self.bytes)?,
            "SnapshotResponse" => write!(f, " next={}", self.offset)?,
            _ => {}
        }
        if self.transfer {
            f.write_str(" transfer")?;
        }
        Ok(())
    }
}

/// The recorded events: the last `keep` in memory, and a hash of all of them.
#[derive(Clone, Debug)]
pub struct Trace {
    events: VecDeque<Event>,
    keep: usize,
    hash: u64,
    total: u64,
    /// Reused for each event's text form while hashing it.
    line: String,
}

impl Trace {
    pub(crate) fn new(keep: usize) -> Self {
        Trace {
            events: VecDeque::new(),
            keep,
            hash: FNV_OFFSET,
            total: 0,
            line: String::new(),
        }
    }

    pub(crate) fn push(&mut self, e: Event) {
        // Hash the stable text form: it names every field, and it is what users compare.
        self.line.clear();
        let _ = write!(self.line, "{e}");
        self.hash = hash_bytes(mix(self.hash, e.time), self.line.as_bytes());
        self.total += 1;
        if self.keep == 0 {
            return;
        }
        if self.events.len() == self.keep {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// The events still kept, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Every event ever recorded, folded into one number.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many events were recorded in all.
    pub fn total(&self) -> u64 {
        self.total
    }
}
