//! The in-memory copy of the log that [`Storage`](raft_core::Storage) reads.
//!
//! Payloads are packed into arenas (one `Vec<u8>` per chunk) beside a `Vec` of small metadata
//! records, so that appending an entry allocates nothing once the vectors have grown, and
//! [`MemLog::get`] hands out an [`Entry`] that borrows its data from the arena.
//!
//! A new chunk starts whenever the WAL starts a new segment, so chunks normally line up with
//! segment files, which is what makes compaction cheap: [`MemLog::compact`] drops the chunks
//! wholly below the snapshot from the front of the deque, freeing their arenas without moving a
//! byte. The compacted entries of the chunk the snapshot index falls in stay in its arena (no
//! longer readable) until a later compaction drops that chunk as a whole, so memory exceeds
//! [`MemLog::bytes`] by at most about one segment. (An overwrite that reaches back into an
//! earlier chunk truncates that chunk and drops the later ones; entries then continue in the
//! truncated chunk, so the alignment is only approximate, which is all that compaction needs.)

use std::collections::VecDeque;

use raft_core::{Entry, EntryKind, Index, Term};

#[derive(Clone, Copy, Debug)]
struct Meta {
    term: Term,
    kind: EntryKind,
    /// Where the payload starts in the chunk's arena.
    start: usize,
    len: u32,
}

/// Consecutive entries starting at `first`, their payloads in `data` in index order.
#[derive(Debug)]
struct Chunk {
    first: Index,
    metas: Vec<Meta>,
    data: Vec<u8>,
}

impl Chunk {
    fn new(first: Index) -> Chunk {
        Chunk {
            first,
            metas: Vec::new(),
            data: Vec::new(),
        }
    }

    /// The index after the last entry of the chunk.
    fn end(&self) -> Index {
        self.first.plus(self.metas.len() as u64)
    }
}

/// The log held in memory: entries `first_index() ..= last_index()`.
///
/// Invariant: `chunks` is never empty; chunk `k + 1` starts at `chunks[k].end()`; only the last
/// chunk may be empty; `chunks[0].first <= first <= chunks[0].end()`, and `first` equals the
/// front chunk's end only when that chunk is the only one and empty (see [`MemLog::tidy`]).
#[derive(Debug)]
pub(crate) struct MemLog {
    chunks: VecDeque<Chunk>,
    /// The first index held. The front chunk's entries below it are compacted: unreadable, and
    /// freed with the chunk.
    first: Index,
    /// The term of `first_index() - 1` (0 while nothing is compacted).
    prefix_term: Term,
}

impl MemLog {
    /// An empty log whose first entry will be `first`.
    pub(crate) fn new(first: Index, prefix_term: Term) -> MemLog {
        MemLog {
            chunks: VecDeque::from([Chunk::new(first)]),
            first,
            prefix_term,
        }
    }

    fn front(&self) -> &Chunk {
        self.chunks
            .front()
            .expect("MemLog invariant: at least one chunk")
    }

    fn back(&self) -> &Chunk {
        self.chunks
            .back()
            .expect("MemLog invariant: at least one chunk")
    }

    fn back_mut(&mut self) -> &mut Chunk {
        self.chunks
            .back_mut()
            .expect("MemLog invariant: at least one chunk")
    }

    pub(crate) fn first_index(&self) -> Index {
        self.first
    }

    pub(crate) fn last_index(&self) -> Index {
        self.back().end().prev()
    }

    /// Entries held.
    pub(crate) fn len(&self) -> u64 {
        self.back().end().0 - self.first.0
    }

    /// Payload bytes of the entries held (not counting the compacted ones still in the front
    /// chunk's arena).
    pub(crate) fn bytes(&self) -> u64 {
        let total: usize = self.chunks.iter().map(|c| c.data.len()).sum();
        let front = self.front();
        let compacted = usize::try_from(self.first.0 - front.first.0)
            .ok()
            .and_then(|k| front.metas.get(k))
            .map_or(front.data.len(), |m| m.start);
        (total - compacted) as u64
    }

    pub(crate) fn prefix_term(&self) -> Term {
        self.prefix_term
    }

    /// The chunk holding `index` and the entry's position in it.
    fn locate(&self, index: Index) -> Option<(&Chunk, usize)> {
        if index < self.first {
            return None;
        }
        let back = self.back();
        // Reads are mostly of recent entries, which live in the last chunk.
        let chunk = if index >= back.first {
            back
        } else {
            let k = self.chunks.partition_point(|c| c.first <= index);
            self.chunks.get(k.checked_sub(1)?)?
        };
        let pos = usize::try_from(index.0.checked_sub(chunk.first.0)?).ok()?;
        (pos < chunk.metas.len()).then_some((chunk, pos))
    }

    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        self.locate(index).map(|(c, pos)| c.metas[pos].term)
    }

    pub(crate) fn get(&self, index: Index) -> Option<Entry<'_>> {
        let (c, pos) = self.locate(index)?;
        let m = c.metas[pos];
        Some(Entry {
            index,
            term: m.term,
            kind: m.kind,
            data: c.data.get(m.start..m.start + m.len as usize)?,
        })
    }

    /// Appends an entry at `last_index() + 1`. `data` fits in a `u32` (the record format bounds
    /// it).
    pub(crate) fn push(&mut self, term: Term, kind: EntryKind, data: &[u8]) {
        let chunk = self.back_mut();
        let start = chunk.data.len();
        chunk.data.extend_from_slice(data);
        chunk.metas.push(Meta {
            term,
            kind,
            start,
            len: u32::try_from(data.len()).expect("WAL record format bounds entries below 4 GiB"),
        });
    }

    /// Removes the entries from `index` on. An index at or below `first_index()` empties the
    /// log (keeping its first index); callers refuse that case before it gets here.
    pub(crate) fn truncate_from(&mut self, index: Index) {
        let index = index.max(self.first);
        while self.chunks.len() > 1 && self.back().first >= index {
            self.chunks.pop_back();
        }
        let chunk = self.back_mut();
        let keep = index.0.saturating_sub(chunk.first.0);
        if let Ok(keep) = usize::try_from(keep) {
            if keep < chunk.metas.len() {
                chunk.data.truncate(chunk.metas[keep].start);
                chunk.metas.truncate(keep);
            }
        }
        self.tidy();
    }

    /// Drops the entries up to `index`, the last one a snapshot covers, whose term is `term`:
    /// afterwards the log starts at `index + 1`. `index` is in
    /// `first_index() - 1 ..= last_index()` (the caller checks; an index outside is clamped).
    pub(crate) fn compact(&mut self, index: Index, term: Term) {
        self.first = index.next().clamp(self.first, self.back().end());
        self.prefix_term = term;
        self.tidy();
    }

    /// Restores the invariant after `first` moved up or entries were removed: drops front
    /// chunks that hold only compacted entries, and empties a last chunk holding nothing else,
    /// so that its arena is reused from the start.
    fn tidy(&mut self) {
        while self.chunks.len() > 1 && self.front().end() <= self.first {
            self.chunks.pop_front();
        }
        let first = self.first;
        let front = self
            .chunks
            .front_mut()
            .expect("MemLog invariant: at least one chunk");
        if front.end() <= first && front.first != first {
            front.metas.clear();
            front.data.clear();
            front.first = first;
        }
    }

    /// Starts a new chunk for the entries that follow (the WAL started a new segment). An empty
    /// last chunk is reused rather than followed by another.
    pub(crate) fn start_chunk(&mut self) {
        let end = self.back().end();
        if self.back().metas.is_empty() {
            self.back_mut().first = end;
        } else {
            self.chunks.push_back(Chunk::new(end));
        }
    }

    /// Chunks held (for tests).
    #[cfg(test)]
    fn chunks(&self) -> usize {
        self.chunks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(chunks: &[u64]) -> MemLog {
        let mut log = MemLog::new(Index(1), Term(0));
        let mut i = 1;
        for (k, &n) in chunks.iter().enumerate() {
            if k > 0 {
                log.start_chunk();
            }
            for _ in 0..n {
                log.push(Term(i), EntryKind::Normal, format!("e{i}").as_bytes());
                i += 1;
            }
        }
        log
    }

    fn check(log: &MemLog, last: u64) {
        assert_eq!(log.first_index(), Index(1));
        assert_eq!(log.last_index(), Index(last));
        assert_eq!(log.len(), last);
        for i in 1..=last {
            let e = log.get(Index(i)).expect("held");
            assert_eq!(e.index, Index(i));
            assert_eq!(e.term, Term(i));
            assert_eq!(e.data, format!("e{i}").as_bytes());
            assert_eq!(log.term(Index(i)), Some(Term(i)));
        }
        assert_eq!(log.get(Index(0)), None);
        assert_eq!(log.get(Index(last + 1)), None);
        assert_eq!(log.term(Index(last + 1)), None);
    }

    #[test]
    fn reads_across_chunks() {
        let log = filled(&[3, 1, 4]);
        assert_eq!(log.chunks(), 3);
        check(&log, 8);
    }

    #[test]
    fn truncation_drops_later_chunks_and_appends_continue() {
        let mut log = filled(&[3, 3, 3]);
        log.truncate_from(Index(5));
        assert_eq!(log.chunks(), 2);
        check(&log, 4);
        log.truncate_from(Index(4));
        assert_eq!(log.chunks(), 1, "chunk starting at the cut goes");
        check(&log, 3);
        log.push(Term(4), EntryKind::Normal, b"e4");
        check(&log, 4);
        log.truncate_from(Index(1));
        assert_eq!(log.last_index(), Index(0));
        assert_eq!(log.len(), 0);
        log.truncate_from(Index(9));
        assert_eq!(log.len(), 0);
    }

    #[test]
    fn compaction_drops_whole_chunks_and_hides_the_rest() {
        let mut log = filled(&[3, 3, 3]);
        log.compact(Index(0), Term(0));
        check(&log, 9);
        log.compact(Index(4), Term(4));
        assert_eq!(
            log.chunks(),
            2,
            "the chunk of 1..=3 goes, 4 stays behind in its arena"
        );
        assert_eq!((log.first_index(), log.last_index()), (Index(5), Index(9)));
        assert_eq!((log.len(), log.bytes()), (5, 10));
        assert_eq!(log.prefix_term(), Term(4));
        assert_eq!((log.get(Index(4)), log.term(Index(4))), (None, None));
        for i in 5..=9 {
            assert_eq!(log.get(Index(i)).map(|e| e.term), Some(Term(i)));
        }
        // Truncation never reaches below the first index.
        log.truncate_from(Index(2));
        assert_eq!((log.first_index(), log.last_index()), (Index(5), Index(4)));
        assert_eq!((log.len(), log.bytes()), (0, 0));
        assert_eq!(log.chunks(), 1, "an all-compacted chunk is emptied");
        log.push(Term(5), EntryKind::Normal, b"new");
        assert_eq!(log.get(Index(5)).map(|e| e.data), Some(&b"new"[..]));
        assert_eq!(log.bytes(), 3);
    }

    #[test]
    fn compacting_everything_empties_the_arena() {
        let mut log = filled(&[2, 2]);
        log.compact(Index(4), Term(4));
        assert_eq!(log.chunks(), 1);
        assert_eq!(
            (log.first_index(), log.last_index(), log.len()),
            (Index(5), Index(4), 0)
        );
        assert_eq!(log.bytes(), 0);
        log.start_chunk();
        assert_eq!(log.chunks(), 1, "the empty chunk is reused");
        log.push(Term(5), EntryKind::Normal, b"e5");
        log.start_chunk();
        log.push(Term(6), EntryKind::Normal, b"e6");
        assert_eq!(log.chunks(), 2);
        log.compact(Index(5), Term(5));
        assert_eq!(log.chunks(), 1);
        assert_eq!(log.get(Index(6)).map(|e| e.data), Some(&b"e6"[..]));
    }

    #[test]
    fn empty_chunks_are_reused() {
        let mut log = filled(&[2]);
        log.start_chunk();
        log.start_chunk();
        assert_eq!(log.chunks(), 2);
        log.push(Term(3), EntryKind::Normal, b"e3");
        check(&log, 3);
    }
}
