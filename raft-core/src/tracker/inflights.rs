//! The bounded window of append messages sent to one peer and not yet acknowledged.

use crate::types::Index;

/// Last indices of up to `W` in-flight appends, oldest first.
///
/// Invariant: the indices are strictly increasing from oldest to newest.
#[derive(Clone, Debug)]
pub(crate) struct Inflights<const W: usize> {
    last: [Index; W],
    head: usize,
    len: usize,
}

impl<const W: usize> Inflights<W> {
    pub(crate) const fn new() -> Self {
        Inflights {
            last: [Index(0); W],
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn full(&self) -> bool {
        self.len == W
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Records an append whose last entry is `index`. The caller checks `full()` first.
    pub(crate) fn add(&mut self, index: Index) {
        debug_assert!(!self.full(), "caller checks the window");
        if self.full() {
            return;
        }
        self.last[(self.head + self.len) % W] = index;
        self.len += 1;
    }

    /// Frees every append whose last index is at or below `index` (acknowledged).
    pub(crate) fn free_le(&mut self, index: Index) {
        while self.len > 0 && self.last[self.head] <= index {
            self.head = (self.head + 1) % W;
            self.len -= 1;
        }
    }

    /// Frees the oldest append: used when a heartbeat response shows the peer is alive but an
    /// acknowledgement may have been lost, so a full window does not stall forever.
    pub(crate) fn free_first(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % W;
            self.len -= 1;
        }
    }

    pub(crate) fn reset(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_fills_and_frees() {
        let mut w = Inflights::<3>::new();
        for i in [5, 9, 12] {
            w.add(Index(i));
        }
        assert!(w.full());
        w.free_le(Index(9));
        assert_eq!(w.len(), 1);
        w.add(Index(15));
        w.add(Index(20));
        assert!(w.full());
        w.free_first();
        assert_eq!(w.len(), 2);
        w.free_le(Index(100));
        assert_eq!(w.len(), 0);
    }
}
