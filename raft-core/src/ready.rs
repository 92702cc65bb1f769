//! What the node asks of its host after inputs: [`Ready`].

use core::fmt;

use crate::error::StorageError;
use crate::log::buf::BufView;
use crate::membership::Membership;
use crate::message::Entry;
use crate::outbox::Messages;
use crate::read_index::ReadState;
use crate::storage::{HardState, SnapshotMeta, Storage};
use crate::types::{Index, Term};

/// Everything the node needs its host to do, in this order (the crate docs give the loop):
///
/// 1. send [`messages`](Ready::messages) — any time, even before persisting;
/// 2. write [`snapshot`](Ready::snapshot)'s chunk if there is one (installing the snapshot
///    when it is the last), then persist [`hard_state`](Ready::hard_state) and
///    [`entries`](Ready::entries) durably;
/// 3. send [`persisted_messages`](Ready::persisted_messages) — only after step 2;
/// 4. apply [`committed_entries`](Ready::committed_entries) and serve
///    [`read_states`](Ready::read_states) once applied through their index;
/// 5. drop the `Ready` and call [`Node::advance`](crate::Node::advance).
///
/// A `Ready` borrows the node: nothing in it is copied out of the node's buffers.
pub struct Ready<'a, S> {
    /// The node's storage, lent so the host can write step 2 into it (or mirror what it writes
    /// elsewhere). Write nothing else here while the node runs.
    pub storage: &'a mut S,
    /// Persist before sending `persisted_messages`, if `Some`: the term, vote or commit changed.
    /// Persisting the term and vote first is what keeps a node from voting twice in a term
    /// after a crash (Raft §5.2).
    pub hard_state: Option<HardState>,
    /// Append to the log before sending `persisted_messages`. The first may overwrite a suffix
    /// of what the storage holds (a follower dropping a conflicting tail): truncate there.
    pub entries: Entries<'a>,
    /// Send now: a leader's appends and heartbeats (a leader may send its appends before its
    /// own write; it counts its own copy only after `advance`).
    pub messages: Messages<'a>,
    /// Send only after `hard_state` and `entries` are durable: votes and acknowledgements,
    /// which promise that state.
    pub persisted_messages: Messages<'a>,
    /// Reads confirmed by ReadIndex: serve each once the state machine applied its `index`.
    pub read_states: &'a [ReadState],
    /// A chunk of a snapshot the leader is sending this node: write it at its offset into the
    /// snapshot being received (offset 0 starts a new one, discarding any other). When it is
    /// the last ([`SnapshotChunk::is_last`]), install the snapshot before persisting
    /// `hard_state`: make it the storage's [`Storage::snapshot`](crate::Storage::snapshot),
    /// discard the whole log (the storage's log is then empty after the snapshot's index,
    /// whose term it answers), and restore the state machine from it. Such a `Ready` has no
    /// entries and no committed entries; the response that follows tells the leader the
    /// snapshot is installed, so it must be durable first.
    pub snapshot: Option<SnapshotChunk<'a>>,
    pub(crate) unstable: BufView<'a>,
    pub(crate) applied: Index,
    pub(crate) commit: Index,
    pub(crate) must_sync: bool,
    pub(crate) hard_state_must_sync: bool,
}

impl<S> fmt::Debug for Ready<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ready")
            .field("hard_state", &self.hard_state)
            .field("entries", &self.entries.len())
            .field("messages", &self.messages.len())
            .field("persisted_messages", &self.persisted_messages.len())
            .field("committed", &(self.applied.next()..=self.commit))
            .field("read_states", &self.read_states)
            .field(
                "snapshot",
                &self.snapshot.map(|c| (c.index, c.offset, c.data.len())),
            )
            .finish()
    }
}

impl<'a, S: Storage> Ready<'a, S> {
    /// Apply after persisting: the entries committed since the last `advance`, in order. Read
    /// from the node's unstable log or from the storage, so step 2 must come first. An `Err`
    /// means the storage lost an entry it was given; stop and report it.
    pub fn committed_entries(&self) -> CommittedEntries<'_, S> {
        CommittedEntries {
            storage: self.storage,
            unstable: self.unstable,
            next: self.applied.next(),
            last: self.commit,
        }
    }

    /// The range of committed entries to apply (empty when `start > end`).
    pub fn committed_range(&self) -> core::ops::RangeInclusive<Index> {
        self.applied.next()..=self.commit
    }

    /// Whether the storage must be synced (fsync) before `persisted_messages` go out: new
    /// entries, or a new term or vote. A change of the commit index alone need not be synced;
    /// a restarted node learns it again from the leader.
    pub fn must_sync(&self) -> bool {
        self.must_sync
    }

    /// Whether the host may finish this `Ready` with
    /// [`Node::advance_unsynced`](crate::Node::advance_unsynced): nothing in it promises
    /// durability to anyone (no `persisted_messages`, no new term or vote), so its entries may
    /// become durable later. Only a leader's own entries are counted by durability alone, and
    /// the leader counts them when the host reports them with
    /// [`Node::persisted`](crate::Node::persisted).
    pub fn can_defer_sync(&self) -> bool {
        self.persisted_messages.is_empty() && !self.hard_state_must_sync
    }
}

/// One chunk of a snapshot received from the leader, for the host to write (see
/// [`Ready::snapshot`]). The bytes are the leader's snapshot as its storage gave them,
/// checked against their CRC on the way.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotChunk<'a> {
    /// The last index the snapshot covers.
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// The snapshot's total size.
    pub len: u64,
    /// Where this chunk goes.
    pub offset: u64,
    /// The bytes.
    pub data: &'a [u8],
    /// The configuration at `index`.
    pub membership: &'a Membership,
}

impl SnapshotChunk<'_> {
    /// Whether this chunk completes the snapshot: install it.
    pub fn is_last(&self) -> bool {
        self.offset + self.data.len() as u64 == self.len
    }

    /// The snapshot's metadata.
    pub fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            index: self.index,
            term: self.term,
            membership: self.membership.clone(),
            len: self.len,
        }
    }
}

/// Entries to persist: a view of the node's unstable log.
#[derive(Clone, Copy)]
pub struct Entries<'a> {
    pub(crate) view: BufView<'a>,
}

impl<'a> Entries<'a> {
    /// How many entries.
    pub fn len(&self) -> usize {
        self.view.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.view.len() == 0
    }

    /// The entries in log order.
    pub fn iter(&self) -> EntriesIter<'a> {
        EntriesIter {
            view: self.view,
            next: self.view.first_index(),
            last: self.view.last_index(),
        }
    }
}

impl fmt::Debug for Entries<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Entries<'a> {
    type Item = Entry<'a>;
    type IntoIter = EntriesIter<'a>;
    fn into_iter(self) -> EntriesIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Entries`].
#[derive(Clone)]
pub struct EntriesIter<'a> {
    view: BufView<'a>,
    next: Index,
    last: Index,
}

impl<'a> Iterator for EntriesIter<'a> {
    type Item = Entry<'a>;
    fn next(&mut self) -> Option<Entry<'a>> {
        if self.next > self.last {
            return None;
        }
        let e = self.view.get(self.next);
        self.next = self.next.next();
        e
    }
}

/// Iterator over the committed entries of a [`Ready`].
pub struct CommittedEntries<'a, S> {
    storage: &'a S,
    unstable: BufView<'a>,
    next: Index,
    last: Index,
}

impl<'a, S: Storage> Iterator for CommittedEntries<'a, S> {
    type Item = Result<Entry<'a>, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next > self.last {
            return None;
        }
        let i = self.next;
        self.next = i.next();
        if i >= self.unstable.first_index() {
            return Some(self.unstable.get(i).ok_or(StorageError::Unavailable));
        }
        Some(self.storage.entry(i))
    }
}
