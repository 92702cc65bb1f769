//! What the node puts inside a transport frame: a kind byte, then the kind's body.
//!
//! ```text
//! [0] raft-core message bytes                       a Raft message (raft_core::message)
//! [1] request id: u64 LE, command bytes             a follower forwards a proposal to the leader
//! [2] request id: u64 LE, outcome: u8, response     the leader's answer to a forwarded request
//! [3] request id: u64 LE, op: u8, member: u64 LE, address (UTF-8, may be empty)
//!                                                    a follower forwards a membership change or
//!                                                    a leadership transfer to the leader
//! ```
//!
//! Outcomes: 0 applied (the state machine's response follows, or for an admin request the
//! entry's index as u64 LE), 1 not committed and safe to retry (lost to a leader change, or
//! the receiver is not the leader), 2 busy (retry later), 3 too large (final), 4 refused for
//! now, retry later (a reason follows, UTF-8), 5 refused for good (a reason follows).
//! Admin ops: 1 add learner, 2 promote, 3 remove, 4 transfer leadership.

pub(crate) const RAFT: u8 = 0;
pub(crate) const FORWARD: u8 = 1;
pub(crate) const FORWARD_REPLY: u8 = 2;
pub(crate) const ADMIN: u8 = 3;

/// A membership change or transfer, as forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AdminOp {
    AddLearner(raft_core::NodeId, std::net::SocketAddr),
    Promote(raft_core::NodeId),
    Remove(raft_core::NodeId),
    Transfer(raft_core::NodeId),
}

/// How a forwarded proposal ended, as the leader reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied,
    Retry,
    Busy,
    TooLarge,
    TryLater,
    Invalid,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Outcome::Applied => 0,
            Outcome::Retry => 1,
            Outcome::Busy => 2,
            Outcome::TooLarge => 3,
            Outcome::TryLater => 4,
            Outcome::Invalid => 5,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Outcome::Applied,
            1 => Outcome::Retry,
            2 => Outcome::Busy,
            3 => Outcome::TooLarge,
            4 => Outcome::TryLater,
            5 => Outcome::Invalid,
            _ => return None,
        })
    }
}

/// A decoded frame, borrowing from the received bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    Raft(&'a [u8]),
    Forward {
        id: u64,
        command: &'a [u8],
    },
    ForwardReply {
        id: u64,
        outcome: Outcome,
        response: &'a [u8],
    },
    Admin {
        id: u64,
        op: AdminOp,
    },
}

/// The frame is not one this node understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadFrame;

impl<'a> Frame<'a> {
    pub(crate) fn decode(b: &'a [u8]) -> Result<Self, BadFrame> {
        let (&kind, rest) = b.split_first().ok_or(BadFrame)?;
        match kind {
            RAFT => Ok(Frame::Raft(rest)),
            FORWARD => {
                let (id, command) = split_u64(rest)?;
                Ok(Frame::Forward { id, command })
            }
            FORWARD_REPLY => {
                let (id, rest) = split_u64(rest)?;
                let (&code, response) = rest.split_first().ok_or(BadFrame)?;
                let outcome = Outcome::from_code(code).ok_or(BadFrame)?;
                Ok(Frame::ForwardReply {
                    id,
                    outcome,
                    response,
                })
            }
            ADMIN => {
                let (id, rest) = split_u64(rest)?;
                let (&op, rest) = rest.split_first().ok_or(BadFrame)?;
                let (member, addr) = split_u64(rest)?;
                let member = raft_core::NodeId(member);
                let op = match op {
                    1 => {
                        let addr = std::str::from_utf8(addr)
                            .ok()
                            .and_then(|a| a.parse().ok())
                            .ok_or(BadFrame)?;
                        AdminOp::AddLearner(member, addr)
                    }
                    2 => AdminOp::Promote(member),
                    3 => AdminOp::Remove(member),
                    4 => AdminOp::Transfer(member),
                    _ => return Err(BadFrame),
                };
                if !matches!(op, AdminOp::AddLearner(..)) && !addr.is_empty() {
                    return Err(BadFrame);
                }
                Ok(Frame::Admin { id, op })
            }
            _ => Err(BadFrame),
        }
    }
}

fn split_u64(b: &[u8]) -> Result<(u64, &[u8]), BadFrame> {
    if b.len() < 8 {
        return Err(BadFrame);
    }
    let (head, rest) = b.split_at(8);
    let mut a = [0u8; 8];
    a.copy_from_slice(head);
    Ok((u64::from_le_bytes(a), rest))
}

/// Each encoder builds a fresh frame of exactly its size, which the transport queues as it is.
pub(crate) fn encode_raft(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + message.len());
    out.push(RAFT);
    out.extend_from_slice(message);
    out
}

pub(crate) fn encode_forward(id: u64, command: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + command.len());
    out.push(FORWARD);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(command);
    out
}

pub(crate) fn encode_reply(id: u64, outcome: Outcome, response: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + response.len());
    out.push(FORWARD_REPLY);
    out.extend_from_slice(&id.to_le_bytes());
    out.push(outcome.code());
    out.extend_from_slice(response);
    out
}

pub(crate) fn encode_admin(id: u64, op: &AdminOp) -> Vec<u8> {
    let (code, member, addr) = match op {
        AdminOp::AddLearner(m, a) => (1, *m, a.to_string()),
        AdminOp::Promote(m) => (2, *m, String::new()),
        AdminOp::Remove(m) => (3, *m, String::new()),
        AdminOp::Transfer(m) => (4, *m, String::new()),
    };
    let mut out = Vec::with_capacity(18 + addr.len());
    out.push(ADMIN);
    out.extend_from_slice(&id.to_le_bytes());
    out.push(code);
    out.extend_from_slice(&member.0.to_le_bytes());
    out.extend_from_slice(addr.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = encode_raft(b"msg");
        assert_eq!(Frame::decode(&b), Ok(Frame::Raft(b"msg")));
        let b = encode_forward(7, b"cmd");
        assert_eq!(
            Frame::decode(&b),
            Ok(Frame::Forward {
                id: 7,
                command: b"cmd"
            })
        );
        for outcome in [
            Outcome::Applied,
            Outcome::Retry,
            Outcome::Busy,
            Outcome::TooLarge,
            Outcome::TryLater,
            Outcome::Invalid,
        ] {
            let b = encode_reply(u64::MAX, outcome, b"r");
            assert_eq!(
                Frame::decode(&b),
                Ok(Frame::ForwardReply {
                    id: u64::MAX,
                    outcome,
                    response: b"r"
                })
            );
        }
    }

    #[test]
    fn admin_round_trip() {
        use raft_core::NodeId;
        for op in [
            AdminOp::AddLearner(NodeId(4), "127.0.0.1:9".parse().expect("addr")),
            AdminOp::Promote(NodeId(4)),
            AdminOp::Remove(NodeId(1)),
            AdminOp::Transfer(NodeId(2)),
        ] {
            let b = encode_admin(3, &op);
            assert_eq!(
                Frame::decode(&b),
                Ok(Frame::Admin {
                    id: 3,
                    op: op.clone()
                })
            );
            for cut in 0..18 {
                assert_eq!(Frame::decode(&b[..cut]), Err(BadFrame), "{op:?} cut {cut}");
            }
        }
        let mut b = encode_admin(3, &AdminOp::Promote(NodeId(4)));
        b.push(b'x');
        assert_eq!(Frame::decode(&b), Err(BadFrame));
        let mut b = encode_admin(3, &AdminOp::Promote(NodeId(4)));
        b[9] = 9;
        assert_eq!(Frame::decode(&b), Err(BadFrame));
        let mut b = encode_admin(
            3,
            &AdminOp::AddLearner(NodeId(4), "127.0.0.1:9".parse().expect("addr")),
        );
        b.truncate(b.len() - 2);
        b.push(b'z');
        assert_eq!(Frame::decode(&b), Err(BadFrame));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert_eq!(Frame::decode(b""), Err(BadFrame));
        assert_eq!(Frame::decode(&[9, 1, 2]), Err(BadFrame));
        assert_eq!(Frame::decode(&[FORWARD, 1, 2, 3]), Err(BadFrame));
        let mut b = encode_reply(1, Outcome::Applied, b"");
        b[9] = 200;
        assert_eq!(Frame::decode(&b), Err(BadFrame));
        b.truncate(9);
        assert_eq!(Frame::decode(&b), Err(BadFrame));
    }
}
