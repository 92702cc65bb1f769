//! The hello each side sends once, before any frame, and the rules for refusing one.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use raft_core::NodeId;

/// The first four bytes of every connection.
pub(super) const MAGIC: [u8; 4] = *b"TKRF";
/// The only version spoken; any other is refused (there is no negotiation yet).
pub(super) const VERSION: u16 = 1;
/// `magic | version u16 | cluster_id u64 | from u64 | to u64`, integers little-endian.
pub(super) const HELLO_LEN: usize = 4 + 2 + 8 + 8 + 8;

/// One side's introduction. The dialer sends it first; the acceptor answers with its own, from
/// and to swapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hello {
    pub(super) version: u16,
    pub(super) cluster_id: u64,
    pub(super) from: NodeId,
    pub(super) to: NodeId,
}

/// Why a connection was refused during the handshake.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error("not a tickraft connection (first bytes {0:02x?})")]
    BadMagic([u8; 4]),
    #[error("protocol version {0}, this node speaks {VERSION}")]
    Version(u16),
    #[error("cluster id {theirs:#x}, this cluster is {ours:#x}")]
    ForeignCluster { ours: u64, theirs: u64 },
    #[error("addressed to node {to}, this is node {me}")]
    NotForMe { to: NodeId, me: NodeId },
    #[error("node {0} is not a member")]
    UnknownPeer(NodeId),
    #[error("node {from} dialed node {me}, but the lower id dials")]
    WrongDirection { from: NodeId, me: NodeId },
    #[error("the answer came from node {got}, expected node {expected} (addresses swapped?)")]
    WrongPeer { expected: NodeId, got: NodeId },
    #[error("no hello within the handshake timeout")]
    Timeout,
    #[error("closed during the handshake")]
    Closed,
    #[error("{0}")]
    Io(io::Error),
}

impl Hello {
    pub(super) fn new(cluster_id: u64, from: NodeId, to: NodeId) -> Hello {
        Hello {
            version: VERSION,
            cluster_id,
            from,
            to,
        }
    }

    pub(super) fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..14].copy_from_slice(&self.cluster_id.to_le_bytes());
        b[14..22].copy_from_slice(&self.from.0.to_le_bytes());
        b[22..30].copy_from_slice(&self.to.0.to_le_bytes());
        b
    }

    /// Decodes a hello; only the magic is checked here, the rest by [`Hello::check_dialer`]
    /// and [`Hello::check_answer`].
    pub(super) fn decode(b: &[u8; HELLO_LEN]) -> Result<Hello, Refusal> {
        check_magic(&b[0..4])?;
        let u64_at = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        Ok(Hello {
            version: u16::from_le_bytes([b[4], b[5]]),
            cluster_id: u64_at(6),
            from: NodeId(u64_at(14)),
            to: NodeId(u64_at(22)),
        })
    }

    /// The acceptor's check of the dialer's hello: same version and cluster, addressed to
    /// `me`, from a member (`is_peer`) with a lower id. Returns the dialer's id.
    pub(super) fn check_dialer(
        &self,
        cluster_id: u64,
        me: NodeId,
        is_peer: impl Fn(NodeId) -> bool,
    ) -> Result<NodeId, Refusal> {
        self.check_common(cluster_id, me)?;
        if !is_peer(self.from) {
            return Err(Refusal::UnknownPeer(self.from));
        }
        if self.from >= me {
            return Err(Refusal::WrongDirection {
                from: self.from,
                me,
            });
        }
        Ok(self.from)
    }

    /// The dialer's check of the acceptor's answer: the node it meant to reach, in its cluster.
    pub(super) fn check_answer(
        &self,
        cluster_id: u64,
        me: NodeId,
        expected: NodeId,
    ) -> Result<(), Refusal> {
        self.check_common(cluster_id, me)?;
        if self.from != expected {
            return Err(Refusal::WrongPeer {
                expected,
                got: self.from,
            });
        }
        Ok(())
    }

    fn check_common(&self, cluster_id: u64, me: NodeId) -> Result<(), Refusal> {
        if self.version != VERSION {
            return Err(Refusal::Version(self.version));
        }
        if self.cluster_id != cluster_id {
            return Err(Refusal::ForeignCluster {
                ours: cluster_id,
                theirs: self.cluster_id,
            });
        }
        if self.to != me {
            return Err(Refusal::NotForMe { to: self.to, me });
        }
        Ok(())
    }
}

fn check_magic(b: &[u8]) -> Result<(), Refusal> {
    if b == MAGIC {
        Ok(())
    } else {
        let mut got = [0u8; 4];
        got.copy_from_slice(&b[..4]);
        Err(Refusal::BadMagic(got))
    }
}

/// Reads a hello before `deadline`. The magic is read and checked first, so that garbage (an
/// HTTP request, a port scanner) is refused without waiting for 30 bytes that never come.
pub(super) fn read_hello(stream: &TcpStream, deadline: Instant) -> Result<Hello, Refusal> {
    let mut b = [0u8; HELLO_LEN];
    read_before(stream, &mut b[..4], deadline)?;
    check_magic(&b[..4])?;
    read_before(stream, &mut b[4..], deadline)?;
    Hello::decode(&b)
}

/// Writes a hello before `deadline` (30 bytes fit any socket buffer; the deadline only guards
/// against a peer that stopped reading with its window closed).
pub(super) fn write_hello(
    stream: &TcpStream,
    hello: &Hello,
    deadline: Instant,
) -> Result<(), Refusal> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(Refusal::Timeout);
    }
    stream
        .set_write_timeout(Some(remaining))
        .map_err(Refusal::Io)?;
    let mut s = stream;
    s.write_all(&hello.encode()).map_err(timeout_or_io)
}

/// `read_exact` with one deadline for the whole buffer: a per-read timeout alone would let a
/// stranger that trickles one byte at a time hold a handshake slot for ever.
fn read_before(stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> Result<(), Refusal> {
    let mut s = stream;
    let mut got = 0;
    while got < buf.len() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Refusal::Timeout);
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(Refusal::Io)?;
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(Refusal::Closed),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(timeout_or_io(e)),
        }
    }
    Ok(())
}

fn timeout_or_io(e: io::Error) -> Refusal {
    // A socket timeout shows as WouldBlock on Unix and TimedOut on Windows.
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Refusal::Timeout,
        _ => Refusal::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: u64 = 0xC0FFEE;

    #[test]
    fn layout_is_magic_version_cluster_from_to() {
        let b = Hello::new(CLUSTER, NodeId(1), NodeId(2)).encode();
        let mut want = Vec::new();
        want.extend_from_slice(b"TKRF");
        want.extend_from_slice(&1u16.to_le_bytes());
        want.extend_from_slice(&CLUSTER.to_le_bytes());
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&2u64.to_le_bytes());
        assert_eq!(b.len(), 30);
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn round_trip() {
        let h = Hello::new(u64::MAX, NodeId(7), NodeId(u64::MAX));
        assert_eq!(Hello::decode(&h.encode()).expect("valid hello"), h);
    }

    #[test]
    fn garbage_is_bad_magic() {
        let mut b = Hello::new(CLUSTER, NodeId(1), NodeId(2)).encode();
        b[0] = b'G';
        assert!(matches!(Hello::decode(&b), Err(Refusal::BadMagic(m)) if m == *b"GKRF"));
    }

    fn dialer_check(h: Hello) -> Result<NodeId, Refusal> {
        // This node is 2 of {1, 2, 3}.
        h.check_dialer(CLUSTER, NodeId(2), |id| id == NodeId(1) || id == NodeId(3))
    }

    #[test]
    fn acceptor_takes_a_lower_member_of_its_cluster() {
        let h = Hello::new(CLUSTER, NodeId(1), NodeId(2));
        assert_eq!(dialer_check(h).expect("valid"), NodeId(1));
    }

    #[test]
    fn acceptor_refusals() {
        let ok = Hello::new(CLUSTER, NodeId(1), NodeId(2));
        let refused = |h: Hello| dialer_check(h).expect_err("must be refused");
        assert!(matches!(
            refused(Hello { version: 2, ..ok }),
            Refusal::Version(2)
        ));
        assert!(matches!(
            refused(Hello {
                cluster_id: 9,
                ..ok
            }),
            Refusal::ForeignCluster { theirs: 9, .. }
        ));
        assert!(matches!(
            refused(Hello {
                to: NodeId(3),
                ..ok
            }),
            Refusal::NotForMe { to: NodeId(3), .. }
        ));
        assert!(matches!(
            refused(Hello {
                from: NodeId(9),
                ..ok
            }),
            Refusal::UnknownPeer(NodeId(9))
        ));
        assert!(matches!(
            refused(Hello {
                from: NodeId(3),
                ..ok
            }),
            Refusal::WrongDirection {
                from: NodeId(3),
                ..
            }
        ));
        // Itself: not a configured peer.
        assert!(matches!(
            refused(Hello {
                from: NodeId(2),
                ..ok
            }),
            Refusal::UnknownPeer(NodeId(2))
        ));
    }

    #[test]
    fn dialer_checks_the_answer_came_from_the_node_it_dialed() {
        let answer = Hello::new(CLUSTER, NodeId(3), NodeId(1));
        answer
            .check_answer(CLUSTER, NodeId(1), NodeId(3))
            .expect("right node");
        assert!(matches!(
            answer.check_answer(CLUSTER, NodeId(1), NodeId(2)),
            Err(Refusal::WrongPeer {
                expected: NodeId(2),
                got: NodeId(3)
            })
        ));
        assert!(matches!(
            answer.check_answer(CLUSTER + 1, NodeId(1), NodeId(3)),
            Err(Refusal::ForeignCluster { .. })
        ));
        assert!(matches!(
            answer.check_answer(CLUSTER, NodeId(4), NodeId(3)),
            Err(Refusal::NotForMe { .. })
        ));
    }
}
