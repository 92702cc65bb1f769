//! A fixed-capacity run of consecutive log entries: the one container behind both the unstable
//! log and [`MemStorage`](crate::MemStorage).
//!
//! Entries are appended at the back, removed from the front (persisted or compacted) and cut
//! from the back (conflicts). Payloads are packed into one byte array; the front is freed by
//! moving a cursor and the live bytes are slid down only when an append would not fit, so each
//! byte moves at most once per pass through the buffer.

use crate::message::{Entry, EntryKind};
use crate::types::{Index, Term};

#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    term: Term,
    kind: EntryKind,
    off: u32,
    len: u32,
}

const EMPTY_META: Meta = Meta {
    term: Term(0),
    kind: EntryKind::Noop,
    off: 0,
    len: 0,
};

/// `i % cap` for `i < 2 * cap`, which is all a ring position can be (`head < cap`, offset
/// `<= len <= cap`): a compare instead of a division, which for a capacity not known at compile
/// time (a [`BufView`]) was the costliest instruction of a log lookup.
#[inline]
fn wrap(i: usize, cap: usize) -> usize {
    debug_assert!(i < 2 * cap.max(1));
    if i >= cap {
        i - cap
    } else {
        i
    }
}

/// Why an entry could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BufFull {
    /// All `E` entry slots are taken.
    Entries,
    /// The payload bytes do not fit in `B`.
    Bytes,
}

/// Up to `E` consecutive entries holding up to `B` payload bytes in all.
///
/// Invariant: entries occupy indices `first ..= first + len - 1`; metas live in a ring starting
/// at `head`; payloads lie in `data[data_head..data_tail]` in index order.
#[derive(Clone)]
pub(crate) struct EntryBuf<const E: usize, const B: usize> {
    metas: [Meta; E],
    head: usize,
    len: usize,
    first: Index,
    data: [u8; B],
    data_head: usize,
    data_tail: usize,
}

impl<const E: usize, const B: usize> EntryBuf<E, B> {
    /// An empty buffer whose first entry will be `first`.
    pub(crate) const fn new(first: Index) -> Self {
        EntryBuf {
            metas: [EMPTY_META; E],
            head: 0,
            len: 0,
            first,
            data: [0; B],
            data_head: 0,
            data_tail: 0,
        }
    }

    /// Index of the first entry (or of the next one pushed, when empty).
    pub(crate) fn first_index(&self) -> Index {
        self.first
    }

    /// Index of the last entry, or `first_index() - 1` when empty.
    pub(crate) fn last_index(&self) -> Index {
        self.first.plus(self.len as u64).prev()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Payload bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.data_tail - self.data_head
    }

    fn slot(&self, index: Index) -> Option<usize> {
        let k = index.0.checked_sub(self.first.0)?;
        if k >= self.len as u64 {
            return None;
        }
        Some(wrap(self.head + k as usize, E))
    }

    /// The term of `index`, if held.
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        self.slot(index).map(|s| self.metas[s].term)
    }

    /// The entry at `index`, if held.
    pub(crate) fn get(&self, index: Index) -> Option<Entry<'_>> {
        let m = self.metas[self.slot(index)?];
        let (off, len) = (m.off as usize, m.len as usize);
        Some(Entry {
            index,
            term: m.term,
            kind: m.kind,
            data: &self.data[off..off + len],
        })
    }

    /// Whether an entry with `len` payload bytes would fit now.
    pub(crate) fn fits(&self, len: usize) -> Result<(), BufFull> {
        if self.len == E {
            return Err(BufFull::Entries);
        }
        if self.bytes() + len > B {
            return Err(BufFull::Bytes);
        }
        Ok(())
    }

    /// Appends an entry at `last_index() + 1`.
    pub(crate) fn push(&mut self, term: Term, kind: EntryKind, data: &[u8]) -> Result<(), BufFull> {
        self.push_parts(term, kind, &[data])
    }

    /// Appends an entry whose payload is `parts` back to back.
    pub(crate) fn push_parts(
        &mut self,
        term: Term,
        kind: EntryKind,
        parts: &[&[u8]],
    ) -> Result<(), BufFull> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.fits(len)?;
        if self.data_tail + len > B {
            self.data.copy_within(self.data_head..self.data_tail, 0);
            let shift = self.data_head as u32;
            for k in 0..self.len {
                self.metas[wrap(self.head + k, E)].off -= shift;
            }
            self.data_tail -= self.data_head;
            self.data_head = 0;
        }
        let off = self.data_tail;
        for part in parts {
            self.data[self.data_tail..self.data_tail + part.len()].copy_from_slice(part);
            self.data_tail += part.len();
        }
        let slot = wrap(self.head + self.len, E);
        self.metas[slot] = Meta {
            term,
            kind,
            off: off as u32,
            len: len as u32,
        };
        self.len += 1;
        Ok(())
    }

    /// Removes every entry at or after `index`.
    pub(crate) fn truncate_from(&mut self, index: Index) {
        while self.len > 0 && self.last_index() >= index {
            self.len -= 1;
            let m = self.metas[wrap(self.head + self.len, E)];
            self.data_tail = m.off as usize;
        }
        if self.len == 0 {
            self.data_head = 0;
            self.data_tail = 0;
        }
    }

    /// Removes every entry at or before `index`.
    pub(crate) fn pop_through(&mut self, index: Index) {
        while self.len > 0 && self.first <= index {
            let m = self.metas[self.head];
            self.data_head = (m.off + m.len) as usize;
            self.head = wrap(self.head + 1, E);
            self.len -= 1;
            self.first = self.first.next();
        }
        if self.len == 0 {
            self.head = 0;
            self.data_head = 0;
            self.data_tail = 0;
        }
    }

    /// A view of the entries that does not carry the capacities in its type.
    pub(crate) fn view(&self) -> BufView<'_> {
        BufView {
            metas: &self.metas,
            head: self.head,
            len: self.len,
            first: self.first,
            data: &self.data,
        }
    }

    /// Drops everything; the next entry pushed will be `first`.
    pub(crate) fn reset(&mut self, first: Index) {
        self.head = 0;
        self.len = 0;
        self.first = first;
        self.data_head = 0;
        self.data_tail = 0;
    }
}

/// Borrowed, capacity-erased view of an [`EntryBuf`].
#[derive(Clone, Copy)]
pub(crate) struct BufView<'a> {
    metas: &'a [Meta],
    head: usize,
    len: usize,
    first: Index,
    data: &'a [u8],
}

impl<'a> BufView<'a> {
    pub(crate) fn first_index(&self) -> Index {
        self.first
    }

    pub(crate) fn last_index(&self) -> Index {
        self.first.plus(self.len as u64).prev()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, index: Index) -> Option<Entry<'a>> {
        let k = index.0.checked_sub(self.first.0)?;
        if k >= self.len as u64 {
            return None;
        }
        let m = self.metas[wrap(self.head + k as usize, self.metas.len())];
        let (off, len) = (m.off as usize, m.len as usize);
        Some(Entry {
            index,
            term: m.term,
            kind: m.kind,
            data: &self.data[off..off + len],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_pop_truncate() {
        let mut b = EntryBuf::<4, 10>::new(Index(5));
        assert_eq!(b.last_index(), Index(4));
        b.push(Term(1), EntryKind::Normal, b"abc").expect("fits");
        b.push(Term(1), EntryKind::Noop, b"").expect("fits");
        b.push(Term(2), EntryKind::Normal, b"defg").expect("fits");
        assert_eq!(b.last_index(), Index(7));
        assert_eq!(b.get(Index(7)).map(|e| e.data), Some(&b"defg"[..]));
        assert_eq!(
            b.push(Term(2), EntryKind::Normal, b"xyzw"),
            Err(BufFull::Bytes)
        );
        b.pop_through(Index(5));
        assert_eq!(b.first_index(), Index(6));
        // Fits after sliding the live bytes down.
        b.push(Term(2), EntryKind::Normal, b"xyzw").expect("fits");
        assert_eq!(b.get(Index(8)).map(|e| e.data), Some(&b"xyzw"[..]));
        assert_eq!(b.get(Index(7)).map(|e| e.data), Some(&b"defg"[..]));
        assert_eq!(b.push(Term(2), EntryKind::Noop, b""), Ok(()));
        assert_eq!(b.push(Term(2), EntryKind::Noop, b""), Err(BufFull::Entries));
        b.truncate_from(Index(8));
        assert_eq!(b.last_index(), Index(7));
        assert_eq!(b.bytes(), 4);
        b.pop_through(Index(100));
        assert!(b.is_empty());
        assert_eq!(b.first_index(), Index(8));
        assert_eq!(b.last_index(), Index(7));
    }

    #[test]
    fn ring_wraps_many_times() {
        let mut b = EntryBuf::<3, 8>::new(Index(1));
        for i in 1..200u64 {
            let d = [i as u8; 3];
            b.push(Term(i), EntryKind::Normal, &d).expect("fits");
            if b.len() == 2 {
                b.pop_through(b.first_index());
            }
            let e = b.get(Index(i)).expect("held");
            assert_eq!(e.data, &d);
            assert_eq!(e.term, Term(i));
        }
    }
}
