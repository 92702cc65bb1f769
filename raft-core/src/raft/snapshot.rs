//! Snapshots (Raft §7, thesis §5): the leader streams its storage's snapshot, one chunk at a
//! time, to a follower that needs entries it has compacted; the follower hands each chunk to
//! its host through a `Ready` and installs the snapshot once the last one arrives.
//!
//! Flow control is stop-and-wait per follower: one chunk is outstanding, answered by a
//! [`Body::SnapshotResponse`] naming the next offset the follower wants (which also resumes a
//! transfer the follower lost by crashing: it asks for offset 0). A chunk or answer lost on the
//! way is sent again once a heartbeat answer finds the same chunk still outstanding one heartbeat
//! later. A chunk is at most `Config::max_snapshot_chunk` bytes, so neither side ever holds
//! more than one chunk of a snapshot of any size.

use super::{ConfigState, Raft, Role};
use crate::crc::crc32c;
use crate::error::EncodeError;
use crate::membership::Membership;
use crate::message::{encode_snapshot_prefix, finish_snapshot_chunk, Body, Message};
use crate::outbox::Class;
use crate::storage::Storage;
use crate::tracker::ProgressState;
use crate::types::{Index, NodeId, Term};

/// The most bytes of a snapshot chunk message besides its data: the envelope, five numbers,
/// the encoded membership, the data's length prefix and the CRC.
pub(crate) const MAX_CHUNK_HEADER: usize =
    1 + 3 * 10 + 1 + 4 * 10 + 2 + Membership::MAX_ENCODED_LEN + 5 + 4;

/// A snapshot chunk as received.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Incoming<'a> {
    pub(crate) index: Index,
    pub(crate) term: Term,
    pub(crate) len: u64,
    pub(crate) offset: u64,
    pub(crate) membership: &'a [u8],
    pub(crate) crc: u32,
    pub(crate) data: &'a [u8],
}

/// The snapshot a follower is receiving.
#[derive(Clone, Debug)]
pub(crate) struct Receiving {
    pub(crate) index: Index,
    pub(crate) term: Term,
    pub(crate) len: u64,
    /// The next offset it takes.
    pub(crate) next: u64,
    pub(crate) membership: Membership,
}

/// A received chunk waiting in the outbox for the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub(crate) index: Index,
    pub(crate) term: Term,
    pub(crate) len: u64,
    pub(crate) offset: u64,
}

impl<
        S: Storage,
        const P: usize,
        const W: usize,
        const E: usize,
        const B: usize,
        const O: usize,
        const R: usize,
    > Raft<S, P, W, E, B, O, R>
{
    // ----- follower side -----

    pub(crate) fn handle_snapshot(&mut self, from: NodeId, c: Incoming<'_>) {
        // `step` refused, before changing anything, a chunk of a term later than its
        // message's, and a first chunk whose configuration does not decode or fit `P`.
        if c.index <= self.log.commit {
            // Everything it covers is committed here already: say so, and the leader probes
            // from there.
            let index = self.log.commit;
            self.send(
                from,
                Body::AppendResponse {
                    index,
                    reject: None,
                },
            );
            return;
        }
        if self.chunk_queued.is_some() || self.install_queued {
            // The host has not taken the previous chunk yet; the leader sends this one again.
            self.counters.snapshot_chunks_refused += 1;
            return;
        }
        let expected = match &self.snap_recv {
            Some(r) if (r.index, r.term, r.len) == (c.index, c.term, c.len) => r.next,
            _ => 0,
        };
        if crc32c(c.data) != c.crc || (c.offset != 0 && c.offset != expected) {
            self.counters.snapshot_chunks_refused += 1;
            let index = c.index;
            self.send(
                from,
                Body::SnapshotResponse {
                    index,
                    next: expected,
                },
            );
            return;
        }
        if c.offset == 0 {
            let Ok((membership, _)) = Membership::decode(c.membership) else {
                debug_assert!(false, "step checks a first chunk's configuration");
                return;
            };
            self.snap_recv = Some(Receiving {
                index: c.index,
                term: c.term,
                len: c.len,
                next: 0,
                membership,
            });
        }
        let data = c.data;
        let held = self.outbox.push(self.id, Class::Chunk, |buf| {
            let dst = buf.get_mut(..data.len()).ok_or(EncodeError::BufferFull)?;
            dst.copy_from_slice(data);
            Ok(data.len())
        });
        if held.is_err() {
            self.counters.snapshot_chunks_refused += 1;
            return;
        }
        self.chunk_queued = Some(Chunk {
            index: c.index,
            term: c.term,
            len: c.len,
            offset: c.offset,
        });
        let next = c.offset + data.len() as u64;
        if next == c.len {
            // The last chunk: once the host has written it, it installs the snapshot, and the
            // log is empty after it.
            if let Some(r) = self.snap_recv.take() {
                self.install_snapshot(r);
            }
        } else if let Some(r) = self.snap_recv.as_mut() {
            r.next = next;
        }
        let index = c.index;
        self.send(from, Body::SnapshotResponse { index, next });
    }

    fn install_snapshot(&mut self, r: Receiving) {
        self.truncate_configs(r.index.next());
        self.log.install(r.index, r.term);
        self.config = ConfigState::new(r.index, r.membership);
        self.apply_membership();
        self.install_queued = true;
    }

    // ----- leader side -----

    /// Sends `to` the next chunk of the snapshot, if one is due. Returns whether it sent.
    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId) -> bool {
        let Some(p) = self.tracker.get(to) else {
            return false;
        };
        if p.state != ProgressState::Snapshot || p.probe_sent {
            return false;
        }
        let Some(meta) = self.log.storage.snapshot() else {
            // Compacted without a snapshot to send: wait a heartbeat and look again.
            self.counters.compacted_peers += 1;
            if let Some(p) = self.tracker.get_mut(to) {
                p.probe_sent = true;
            }
            return false;
        };
        let (mut offset, mut index) = (p.snap_offset, p.snap_index);
        if meta.index != index || p.snap_len != meta.len {
            // A new transfer, or the storage took a newer snapshot meanwhile: start over.
            if let Some(p) = self.tracker.get_mut(to) {
                p.become_snapshot(meta.index, meta.len);
            }
            (offset, index) = (0, meta.index);
        }
        let mut members = [0u8; Membership::MAX_ENCODED_LEN];
        let Ok(members_len) = meta.membership.encode(&mut members) else {
            return false;
        };
        let remaining = meta.len.saturating_sub(offset);
        let room = self.outbox.room().saturating_sub(MAX_CHUNK_HEADER);
        let n = (self.max_snapshot_chunk as u64)
            .min(remaining)
            .min(room as u64) as usize;
        if n == 0 && remaining > 0 {
            self.counters.appends_deferred += 1;
            return false;
        }
        let header = Message {
            from: self.id,
            to,
            term: self.term,
            body: Body::Snapshot {
                index,
                term: meta.term,
                len: meta.len,
                offset,
                membership: &members[..members_len],
                data: &[],
                crc: 0,
            },
        };
        let storage = &self.log.storage;
        let mut replaced = false;
        let sent = self.outbox.push(to, Class::Now, |buf| {
            let k = encode_snapshot_prefix(&header, n, buf)?;
            let data = buf.get_mut(k..k + n).ok_or(EncodeError::BufferFull)?;
            match storage.read_snapshot(index, offset, data) {
                Ok(read) if read == n => {}
                Err(crate::StorageError::SnapshotReplaced) => {
                    replaced = true;
                    return Err(EncodeError::BufferFull);
                }
                // A short read or a failure: nothing is sent, and the transfer is retried
                // after a heartbeat.
                _ => return Err(EncodeError::BufferFull),
            }
            let crc = crc32c(data);
            let tail = buf.get_mut(k + n..).ok_or(EncodeError::BufferFull)?;
            Ok(k + n + finish_snapshot_chunk(crc, tail)?)
        });
        let Some(p) = self.tracker.get_mut(to) else {
            return false;
        };
        if replaced {
            p.snap_len = u64::MAX;
        }
        match sent {
            Ok(()) => {
                p.probe_sent = true;
                p.snap_stall = None;
                self.counters.snapshot_chunks_sent += 1;
                true
            }
            Err(_) => {
                // Paused until the heartbeat answers find it stalled.
                p.probe_sent = true;
                false
            }
        }
    }

    pub(crate) fn handle_snapshot_response(&mut self, from: NodeId, index: Index, next: u64) {
        let Some(p) = self.tracker.get_mut(from) else {
            return;
        };
        p.recent_active = true;
        if p.state != ProgressState::Snapshot || index != p.snap_index {
            return;
        }
        if next >= p.snap_len {
            // Installed: the follower's log ends at the snapshot now.
            if index > p.matched {
                p.matched = index;
            }
            p.become_probe();
            p.next = p.matched.next();
            self.counters.snapshots_sent += 1;
            if self.maybe_commit() {
                self.on_commit_advanced();
            }
            self.maybe_send_append(from);
            self.maybe_send_timeout_now(from);
            return;
        }
        p.snap_offset = next;
        p.probe_sent = false;
        p.snap_stall = None;
        self.send_snapshot_chunk(from);
    }

    /// A heartbeat answer from a follower receiving a snapshot: a chunk outstanding since the
    /// previous answer is sent again.
    pub(crate) fn snapshot_heartbeat(&mut self, from: NodeId) {
        let Some(p) = self.tracker.get_mut(from) else {
            return;
        };
        if !p.probe_sent {
            self.send_snapshot_chunk(from);
            return;
        }
        if p.snap_stall == Some(p.snap_offset) {
            p.probe_sent = false;
            p.snap_stall = None;
            self.send_snapshot_chunk(from);
        } else {
            p.snap_stall = Some(p.snap_offset);
        }
    }

    /// Whether a follower's next entry is compacted, so that it needs the snapshot.
    pub(crate) fn needs_snapshot(&self, next: Index) -> bool {
        next < self.log.first_index() && self.role == Role::Leader
    }
}
