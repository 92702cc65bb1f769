//! The log as the node sees it: the host's persisted entries ([`Storage`]) followed by the
//! unstable entries this node holds until the host persists them.

pub(crate) mod buf;

use buf::{BufFull, EntryBuf};

use crate::message::{Entry, EntryKind};
use crate::storage::Storage;
use crate::types::{Index, Term};

/// Invariant: `unstable.first_index() <= storage.last_index() + 1`; entries at and after
/// `unstable.first_index()` come from `unstable` (and shadow anything the storage still holds
/// there), entries before it from `storage`. `commit <= last_index()`.
pub(crate) struct RaftLog<S, const E: usize, const B: usize> {
    pub(crate) storage: S,
    pub(crate) unstable: EntryBuf<E, B>,
    pub(crate) commit: Index,
    /// The lowest index truncated since the unstable entries were last handed to the host
    /// ([`RaftLog::handed_out`]): from there on, what the host is writing is not what we hold.
    overwritten: Option<Index>,
    /// A received snapshot the host is installing: its index and term. Nothing at or below it
    /// is readable meanwhile but its term.
    installing: Option<(Index, Term)>,
}

impl<S: Storage, const E: usize, const B: usize> RaftLog<S, E, B> {
    pub(crate) fn new(storage: S, commit: Index) -> Self {
        let first = storage.last_index().next();
        RaftLog {
            storage,
            unstable: EntryBuf::new(first),
            commit,
            overwritten: None,
            installing: None,
        }
    }

    pub(crate) fn last_index(&self) -> Index {
        self.unstable.last_index()
    }

    /// Highest index the host has persisted (as far as this node has been told).
    pub(crate) fn stable_index(&self) -> Index {
        self.unstable.first_index().prev()
    }

    /// First index still readable.
    pub(crate) fn first_index(&self) -> Index {
        if let Some((index, _)) = self.installing {
            return index.next();
        }
        self.storage.first_index().min(self.unstable.first_index())
    }

    /// The term at `index`, or `None` if compacted, beyond the log, or unreadable.
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        if index >= self.unstable.first_index() {
            return self.unstable.term(index);
        }
        if let Some((i, t)) = self.installing {
            return (index == i).then_some(t);
        }
        if index == Index::ZERO {
            return Some(Term::ZERO);
        }
        self.storage.term(index).ok()
    }

    pub(crate) fn last_term(&self) -> Term {
        // The last index is always readable: it is in `unstable`, or is the storage's last (or
        // compacted-prefix) entry. `ZERO` would only show up for a broken storage.
        self.term(self.last_index()).unwrap_or(Term::ZERO)
    }

    pub(crate) fn entry(&self, index: Index) -> Option<Entry<'_>> {
        if index >= self.unstable.first_index() {
            return self.unstable.get(index);
        }
        if self.installing.is_some() {
            return None;
        }
        self.storage.entry(index).ok()
    }

    pub(crate) fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Raft §5.4.1: is a log ending at (`last_index`, `last_term`) at least as up-to-date as
    /// ours?
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        let our = self.last_term();
        last_term > our || (last_term == our && last_index >= self.last_index())
    }

    /// Whether an entry of `len` payload bytes fits in the unstable buffer.
    pub(crate) fn can_append(&self, len: usize) -> bool {
        self.unstable.fits(len).is_ok()
    }

    pub(crate) fn append(
        &mut self,
        term: Term,
        kind: EntryKind,
        data: &[u8],
    ) -> Result<Index, BufFull> {
        self.unstable.push(term, kind, data)?;
        Ok(self.last_index())
    }

    /// Appends an entry whose payload is `parts` back to back.
    pub(crate) fn append_parts(
        &mut self,
        term: Term,
        kind: EntryKind,
        parts: &[&[u8]],
    ) -> Result<Index, BufFull> {
        self.unstable.push_parts(term, kind, parts)?;
        Ok(self.last_index())
    }

    /// A snapshot through `index` (of `term`) was received and is being installed by the
    /// host: the log is now empty after it. Until the host reports the install done
    /// ([`RaftLog::installed`]), the storage may still hold the old log; the snapshot's point
    /// shadows it.
    pub(crate) fn install(&mut self, index: Index, term: Term) {
        self.unstable.reset(index.next());
        self.installing = Some((index, term));
        self.overwritten = None;
        if self.commit < index {
            self.commit = index;
        }
    }

    /// The host installed the snapshot: the storage now answers for it.
    pub(crate) fn installed(&mut self) {
        self.installing = None;
    }

    /// Drops the entries at and after `index` (never committed ones: the caller checks).
    pub(crate) fn truncate_from(&mut self, index: Index) {
        debug_assert!(index > self.commit, "committed entries are never truncated");
        self.overwritten = Some(self.overwritten.map_or(index, |o| o.min(index)));
        if index >= self.unstable.first_index() {
            self.unstable.truncate_from(index);
        } else {
            self.unstable.reset(index);
        }
    }

    /// The unstable entries were just handed to the host to persist.
    pub(crate) fn handed_out(&mut self) {
        self.overwritten = None;
    }

    /// The host persisted the entries it was handed, through `index`, the last of which had
    /// `term`.
    pub(crate) fn stable_to(&mut self, index: Index, term: Term) {
        // Entries truncated since they were handed out were replaced, and the host wrote the old
        // ones: only those before the first replaced one are durable. The last entry's term alone
        // does not tell: a leader equivocating within a term can replace earlier entries and end
        // on the same (index, term).
        if let Some(o) = self.overwritten.take() {
            if o <= index {
                self.unstable.pop_through(o.prev());
                return;
            }
        }
        // If the entry was replaced since the Ready was taken, the new one is not yet durable.
        if self.unstable.term(index) == Some(term) {
            self.unstable.pop_through(index);
        }
    }

    pub(crate) fn commit_to(&mut self, index: Index) -> bool {
        let index = index.min(self.last_index());
        if index > self.commit {
            self.commit = index;
            true
        } else {
            false
        }
    }

    /// The first index of the run of entries with the same term as `index`, scanning back no
    /// further than the commit index (everything there matches the leader anyway).
    pub(crate) fn first_of_term(&self, index: Index) -> Index {
        let Some(term) = self.term(index) else {
            return index;
        };
        let floor = self.commit.max(self.first_index());
        let mut i = index;
        while i > floor && self.term(i.prev()) == Some(term) {
            i = i.prev();
        }
        i
    }

    /// The last index at or below `index` whose term is `term`, if any; the leader's side of
    /// conflict hints. Stops early once terms fall below `term`.
    pub(crate) fn last_of_term(&self, term: Term, index: Index) -> Option<Index> {
        let mut i = index.min(self.last_index());
        let floor = self.first_index().prev();
        loop {
            let t = self.term(i)?;
            if t == term {
                return Some(i);
            }
            if t < term || i <= floor {
                return None;
            }
            i = i.prev();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn log() -> RaftLog<MemStorage<8, 64>, 8, 64> {
        RaftLog::new(MemStorage::new(), Index(0))
    }

    #[test]
    fn stable_to_takes_what_was_handed_out() {
        let mut l = log();
        l.append(Term(1), EntryKind::Normal, b"a").expect("room");
        l.append(Term(1), EntryKind::Normal, b"b").expect("room");
        l.handed_out();
        // Appended after the hand-out: not durable yet, but not in the way either.
        l.append(Term(1), EntryKind::Normal, b"c").expect("room");
        l.stable_to(Index(2), Term(1));
        assert_eq!(l.stable_index(), Index(2));
        assert_eq!(l.last_index(), Index(3));
    }

    #[test]
    fn entries_replaced_after_the_hand_out_are_not_durable() {
        let mut l = log();
        for d in [b"a", b"b", b"c"] {
            l.append(Term(2), EntryKind::Normal, d).expect("room");
        }
        l.handed_out();
        // A leader equivocating within term 2 replaces 2 and 3, ending on the same (3, t2).
        l.truncate_from(Index(2));
        l.append(Term(2), EntryKind::Normal, b"x").expect("room");
        l.append(Term(2), EntryKind::Normal, b"y").expect("room");
        l.stable_to(Index(3), Term(2));
        // Only entry 1 is what the host wrote.
        assert_eq!(l.stable_index(), Index(1));
        assert_eq!(l.entry(Index(2)).map(|e| e.data), Some(&b"x"[..]));
        // A truncation past what was handed out changes nothing about it.
        l.handed_out();
        l.append(Term(2), EntryKind::Normal, b"z").expect("room");
        l.truncate_from(Index(4));
        l.stable_to(Index(3), Term(2));
        assert_eq!(l.stable_index(), Index(3));
    }
}
