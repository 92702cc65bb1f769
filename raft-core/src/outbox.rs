//! Encoded outgoing messages, held until the host takes them from a `Ready`.
//!
//! Messages are encoded when the node decides to send them, into one fixed byte array, as
//! records `[to: u64 LE][class: u8][len: u32 LE][bytes]`. A message that does not fit is not
//! sent, and the caller decides what that means (a leader retries later; anything else is
//! counted as dropped, which Raft tolerates).

use crate::error::EncodeError;
use crate::types::NodeId;

const RECORD_HEADER: usize = 8 + 1 + 4;

/// When the host may send a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Right away, before persisting the `Ready` (a leader's appends and heartbeats).
    Now,
    /// Only after the `Ready`'s hard state and entries are durable (votes, acknowledgements).
    AfterPersist,
    /// Not a message: a received snapshot chunk held for the host to write.
    Chunk,
}

#[derive(Clone)]
pub(crate) struct Outbox<const O: usize> {
    buf: [u8; O],
    len: usize,
    count: usize,
}

impl<const O: usize> Outbox<O> {
    pub(crate) const fn new() -> Self {
        Outbox {
            buf: [0; O],
            len: 0,
            count: 0,
        }
    }

    /// Bytes a message body could still take.
    pub(crate) fn room(&self) -> usize {
        O.saturating_sub(self.len + RECORD_HEADER)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Encodes a message with `encode`, which gets the free space and returns the bytes used.
    /// On `Err` nothing is recorded.
    pub(crate) fn push(
        &mut self,
        to: NodeId,
        class: Class,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>,
    ) -> Result<(), EncodeError> {
        if self.len + RECORD_HEADER > O {
            return Err(EncodeError::BufferFull);
        }
        let body = self.len + RECORD_HEADER;
        let n = encode(&mut self.buf[body..])?;
        let n32 = u32::try_from(n).map_err(|_| EncodeError::BufferFull)?;
        let h = &mut self.buf[self.len..body];
        h[..8].copy_from_slice(&to.0.to_le_bytes());
        h[8] = class as u8;
        h[9..].copy_from_slice(&n32.to_le_bytes());
        self.len = body + n;
        self.count += 1;
        Ok(())
    }

    /// Messages of `class` among the first `upto` bytes.
    pub(crate) fn iter(&self, upto: usize, class: Class) -> Messages<'_> {
        Messages {
            buf: &self.buf[..upto.min(self.len)],
            class: class as u8,
        }
    }

    /// Forgets the first `n` bytes (the messages a `Ready` handed out) and the `count` messages
    /// in them.
    pub(crate) fn drain(&mut self, n: usize, count: usize) {
        let n = n.min(self.len);
        if n < self.len {
            // Messages queued after the `Ready` was taken: keep them, at the front.
            self.buf.copy_within(n..self.len, 0);
        }
        self.len -= n;
        self.count -= count.min(self.count);
    }
}

/// A message for the host to send: opaque bytes for one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The recipient.
    pub to: NodeId,
    /// The encoded message; feed it to the recipient's [`Node::step`](crate::Node::step).
    pub bytes: &'a [u8],
}

/// The messages of one send class in a [`Ready`](crate::Ready): a cheap copyable view;
/// iterate it (or call [`Messages::iter`]) to get each [`Outgoing`].
#[derive(Clone, Copy, Debug)]
pub struct Messages<'a> {
    buf: &'a [u8],
    class: u8,
}

impl<'a> Messages<'a> {
    /// The messages, in the order the node queued them.
    pub fn iter(&self) -> MessageIter<'a> {
        MessageIter {
            buf: self.buf,
            class: self.class,
        }
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl<'a> IntoIterator for Messages<'a> {
    type Item = Outgoing<'a>;
    type IntoIter = MessageIter<'a>;
    fn into_iter(self) -> MessageIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Messages`].
#[derive(Clone, Debug)]
pub struct MessageIter<'a> {
    buf: &'a [u8],
    class: u8,
}

impl<'a> Iterator for MessageIter<'a> {
    type Item = Outgoing<'a>;

    fn next(&mut self) -> Option<Outgoing<'a>> {
        loop {
            if self.buf.len() < RECORD_HEADER {
                return None;
            }
            let (h, rest) = self.buf.split_at(RECORD_HEADER);
            let mut to = [0u8; 8];
            to.copy_from_slice(&h[..8]);
            let mut len = [0u8; 4];
            len.copy_from_slice(&h[9..]);
            let len = (u32::from_le_bytes(len) as usize).min(rest.len());
            let (bytes, rest) = rest.split_at(len);
            self.buf = rest;
            if h[8] == self.class {
                return Some(Outgoing {
                    to: NodeId(u64::from_le_bytes(to)),
                    bytes,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_separated_and_drain_keeps_the_rest() {
        let mut o = Outbox::<64>::new();
        o.push(NodeId(2), Class::Now, |b| {
            b[..3].copy_from_slice(b"abc");
            Ok(3)
        })
        .expect("fits");
        o.push(NodeId(3), Class::AfterPersist, |b| {
            b[0] = 9;
            Ok(1)
        })
        .expect("fits");
        let mark = o.len();
        o.push(NodeId(4), Class::Now, |b| {
            b[0] = 7;
            Ok(1)
        })
        .expect("fits");
        let now: heapless::Vec<Outgoing<'_>, 4> = o.iter(mark, Class::Now).iter().collect();
        assert_eq!(
            &now[..],
            &[Outgoing {
                to: NodeId(2),
                bytes: b"abc"
            }]
        );
        let later: heapless::Vec<Outgoing<'_>, 4> =
            o.iter(mark, Class::AfterPersist).iter().collect();
        assert_eq!(
            &later[..],
            &[Outgoing {
                to: NodeId(3),
                bytes: &[9]
            }]
        );
        drop((now, later));
        o.drain(mark, 2);
        let rest: heapless::Vec<Outgoing<'_>, 4> = o.iter(o.len(), Class::Now).iter().collect();
        assert_eq!(
            &rest[..],
            &[Outgoing {
                to: NodeId(4),
                bytes: &[7]
            }]
        );
        assert_eq!(o.count(), 1);
    }

    #[test]
    fn full_outbox_refuses_without_recording() {
        let mut o = Outbox::<20>::new();
        assert!(o
            .push(NodeId(2), Class::Now, |b| if b.len() >= 10 {
                Ok(10)
            } else {
                Err(EncodeError::BufferFull)
            })
            .is_err());
        assert_eq!(o.len(), 0);
        assert_eq!(o.count(), 0);
    }
}
