//! Cluster membership: who votes, who learns, and how the set changes (thesis §4.3).
//!
//! A [`Membership`] is the configuration in effect: voters, learners (members that receive the
//! log but neither vote nor count towards a quorum), and, during a change, the *joint*
//! configuration in which decisions need a majority of the old voters and a majority of the new.
//!
//! Every change is one log entry of kind [`EntryKind::Config`](crate::EntryKind::Config) whose
//! payload is the whole new configuration ([`ConfigEntry`]) followed by opaque context bytes for
//! the host (raft-std keeps the members' addresses there). A node uses the latest configuration
//! in its log, committed or not (thesis §4.1); a truncation that removes a configuration entry
//! reverts to the one before. Changing voters always goes through the joint configuration:
//! the leader appends `C_old,new`, and once that is committed appends `C_new` by itself; adding
//! or removing a learner needs no joint step. Only one change is in flight at a time.

use crate::error::{DecodeError, EncodeError};
use crate::types::NodeId;
use crate::wire::{Reader, Writer};

/// The most members (voters and learners, old and new during a change) any configuration
/// holds. A node's `PEERS` capacity may not exceed it.
pub const MAX_MEMBERS: usize = 16;

/// The version byte that starts a [`ConfigEntry`] payload.
pub const CONFIG_ENTRY_VERSION: u8 = 1;

/// One member and its part in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// A voter of the (incoming) configuration.
    pub voter: bool,
    /// During a joint change: a voter of the outgoing configuration.
    pub outgoing: bool,
}

impl Member {
    /// Neither votes nor counts towards a quorum.
    pub const fn is_learner(&self) -> bool {
        !self.voter && !self.outgoing
    }
}

/// A configuration: members in ascending id order, at most [`MAX_MEMBERS`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    members: heapless::Vec<Member, MAX_MEMBERS>,
    joint: bool,
}

/// One change asked of the leader. Voter changes go through the joint configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfChange {
    /// Add a new member as a learner.
    AddLearner(NodeId),
    /// Make a member a voter: a learner is promoted, an unknown node is added as a voter.
    AddVoter(NodeId),
    /// Remove a member, voter or learner.
    Remove(NodeId),
}

impl ConfChange {
    /// The member it changes.
    pub const fn id(&self) -> NodeId {
        match *self {
            ConfChange::AddLearner(id) | ConfChange::AddVoter(id) | ConfChange::Remove(id) => id,
        }
    }
}

/// Why a configuration change cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembershipError {
    /// More members than [`MAX_MEMBERS`] (or than the node's `PEERS` capacity).
    TooMany,
    /// Id 0, or the same node named twice in one change.
    InvalidId(NodeId),
    /// `AddLearner` of a member, or `Remove` of a node that is not one.
    NoEffect(NodeId),
    /// The change would leave no voter.
    NoVoters,
    /// A joint configuration cannot be changed further until it is left.
    Joint,
}

impl Membership {
    /// No members: a node that waits to be added to a cluster.
    pub const fn empty() -> Self {
        Membership {
            members: heapless::Vec::new(),
            joint: false,
        }
    }

    /// A configuration of `voters` (no learners, not joint).
    pub fn with_voters(voters: &[NodeId]) -> Result<Self, MembershipError> {
        let mut m = Membership::empty();
        for &id in voters {
            m.insert(Member {
                id,
                voter: true,
                outgoing: false,
            })?;
        }
        Ok(m)
    }

    /// Adds a member in id order.
    fn insert(&mut self, member: Member) -> Result<(), MembershipError> {
        if member.id.is_none() || self.get(member.id).is_some() {
            return Err(MembershipError::InvalidId(member.id));
        }
        let at = self
            .members
            .iter()
            .position(|m| m.id > member.id)
            .unwrap_or(self.members.len());
        self.members
            .insert(at, member)
            .map_err(|_| MembershipError::TooMany)
    }

    /// The members in ascending id order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether this is a joint configuration (a voter change in progress).
    pub fn is_joint(&self) -> bool {
        self.joint
    }

    /// The member `id`, if any.
    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Whether `id` is a member (voter or learner).
    pub fn contains(&self, id: NodeId) -> bool {
        self.get(id).is_some()
    }

    /// Whether `id` votes, in the incoming or (during a change) the outgoing configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.get(id).is_some_and(|m| m.voter || m.outgoing)
    }

    /// Voters of the incoming configuration.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().filter(|m| m.voter).map(|m| m.id)
    }

    /// Learners.
    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().filter(|m| m.is_learner()).map(|m| m.id)
    }

    /// The configuration after `changes`: a joint one if any voter comes or goes, a simple one
    /// if only learners do.
    pub fn apply(&self, changes: &[ConfChange]) -> Result<Membership, MembershipError> {
        if self.joint {
            return Err(MembershipError::Joint);
        }
        let mut next = self.clone();
        let mut voters_change = false;
        for (k, c) in changes.iter().enumerate() {
            let id = c.id();
            if id.is_none() || changes[..k].iter().any(|d| d.id() == id) {
                return Err(MembershipError::InvalidId(id));
            }
            match *c {
                ConfChange::AddLearner(id) => {
                    if next.contains(id) {
                        return Err(MembershipError::NoEffect(id));
                    }
                    next.insert(Member {
                        id,
                        voter: false,
                        outgoing: false,
                    })?;
                }
                ConfChange::AddVoter(id) => {
                    voters_change = true;
                    match next.members.iter_mut().find(|m| m.id == id) {
                        Some(m) if m.voter => return Err(MembershipError::NoEffect(id)),
                        Some(m) => m.voter = true,
                        None => next.insert(Member {
                            id,
                            voter: true,
                            outgoing: false,
                        })?,
                    }
                }
                ConfChange::Remove(id) => {
                    let Some(at) = next.members.iter().position(|m| m.id == id) else {
                        return Err(MembershipError::NoEffect(id));
                    };
                    if next.members[at].voter {
                        voters_change = true;
                        next.members[at].voter = false;
                    } else {
                        next.members.remove(at);
                    }
                }
            }
        }
        if next.voters().next().is_none() {
            return Err(MembershipError::NoVoters);
        }
        if voters_change {
            // Old voters vote in the outgoing half; members removed entirely stay until the
            // joint configuration is left (they are outgoing voters).
            for m in next.members.iter_mut() {
                m.outgoing = self.get(m.id).is_some_and(|o| o.voter);
            }
            next.joint = true;
        }
        Ok(next)
    }

    /// The configuration that leaves a joint one: the incoming voters, and the learners; the
    /// outgoing-only voters are gone.
    pub fn leave_joint(&self) -> Membership {
        let mut next = Membership::empty();
        for m in self.members.iter() {
            if m.voter || m.is_learner() {
                // Fewer members than before: always fits.
                let _ = next.members.push(Member {
                    outgoing: false,
                    ..*m
                });
            }
        }
        next
    }

    /// Encodes as `[joint: bool][count: varint]([id: varint][flags: u8])*`, flags bit 0 voter,
    /// bit 1 outgoing. Returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let mut w = Writer::new(buf);
        self.encode_into(&mut w)?;
        Ok(w.len())
    }

    pub(crate) fn encode_into(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.bool(self.joint)?;
        w.varint(self.members.len() as u64)?;
        for m in self.members.iter() {
            w.varint(m.id.0)?;
            w.byte(u8::from(m.voter) | (u8::from(m.outgoing) << 1))?;
        }
        Ok(())
    }

    /// The most bytes [`Membership::encode`] takes.
    pub const MAX_ENCODED_LEN: usize = 1 + 1 + MAX_MEMBERS * 11;

    /// Decodes what [`Membership::encode`] wrote, returning the rest of the input. Refuses
    /// more than [`MAX_MEMBERS`] members, ids out of order or 0, unknown flags, a joint
    /// configuration flag on a configuration with no outgoing voter, and one with no voter at
    /// all unless it is empty.
    pub fn decode(bytes: &[u8]) -> Result<(Membership, &[u8]), DecodeError> {
        let mut r = Reader::new(bytes);
        let m = Self::decode_from(&mut r)?;
        Ok((m, r.rest()))
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Membership, DecodeError> {
        let joint = r.bool()?;
        let count = r.varint()?;
        if count > MAX_MEMBERS as u64 {
            return Err(DecodeError::Malformed);
        }
        let mut m = Membership {
            members: heapless::Vec::new(),
            joint,
        };
        for _ in 0..count {
            let id = NodeId(r.varint()?);
            let flags = r.byte()?;
            if flags > 3 || id.is_none() || m.members.last().is_some_and(|l| l.id >= id) {
                return Err(DecodeError::Malformed);
            }
            let member = Member {
                id,
                voter: flags & 1 != 0,
                outgoing: flags & 2 != 0,
            };
            if member.outgoing && !joint {
                return Err(DecodeError::Malformed);
            }
            // Room: count checked above.
            let _ = m.members.push(member);
        }
        let voters = m.members.iter().any(|x| x.voter);
        let outgoing = m.members.iter().any(|x| x.outgoing);
        if (joint && !outgoing) || (!m.members.is_empty() && !voters) {
            return Err(DecodeError::Malformed);
        }
        Ok(m)
    }
}

/// The payload of a [`EntryKind::Config`](crate::EntryKind::Config) entry:
/// `[version = 1][membership][context...]`, where the context is the host's, opaque to the
/// node, and runs to the end of the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry<'a> {
    /// The configuration the entry puts in effect.
    pub membership: Membership,
    /// The host's bytes given with the change.
    pub context: &'a [u8],
}

impl<'a> ConfigEntry<'a> {
    /// Decodes a config entry's payload.
    pub fn decode(data: &'a [u8]) -> Result<Self, DecodeError> {
        let (&v, rest) = data.split_first().ok_or(DecodeError::Empty)?;
        if v != CONFIG_ENTRY_VERSION {
            return Err(DecodeError::UnsupportedVersion(v));
        }
        let (membership, context) = Membership::decode(rest)?;
        Ok(ConfigEntry {
            membership,
            context,
        })
    }

    /// Encodes into `buf`, returning the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let mut w = Writer::new(buf);
        w.byte(CONFIG_ENTRY_VERSION)?;
        self.membership.encode_into(&mut w)?;
        let n = w.len();
        let end = n + self.context.len();
        buf.get_mut(n..end)
            .ok_or(EncodeError::BufferFull)?
            .copy_from_slice(self.context);
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> heapless::Vec<NodeId, 16> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn voter_change_goes_joint_and_leaves() {
        let m = Membership::with_voters(&ids(&[1, 2, 3])).expect("valid");
        let j = m
            .apply(&[
                ConfChange::AddVoter(NodeId(4)),
                ConfChange::Remove(NodeId(1)),
            ])
            .expect("valid");
        assert!(j.is_joint());
        let one = j.get(NodeId(1)).expect("still there");
        assert!(!one.voter && one.outgoing);
        let four = j.get(NodeId(4)).expect("added");
        assert!(four.voter && !four.outgoing);
        assert_eq!(j.apply(&[]), Err(MembershipError::Joint));
        let n = j.leave_joint();
        assert!(!n.is_joint());
        let v: heapless::Vec<NodeId, 16> = n.voters().collect();
        assert_eq!(v, ids(&[2, 3, 4]));
        assert!(!n.contains(NodeId(1)));
    }

    #[test]
    fn learner_changes_are_simple() {
        let m = Membership::with_voters(&ids(&[1])).expect("valid");
        let l = m
            .apply(&[ConfChange::AddLearner(NodeId(2))])
            .expect("valid");
        assert!(!l.is_joint());
        assert!(l.get(NodeId(2)).is_some_and(Member::is_learner));
        assert_eq!(
            l.apply(&[ConfChange::AddLearner(NodeId(2))]),
            Err(MembershipError::NoEffect(NodeId(2)))
        );
        let p = l
            .apply(&[ConfChange::AddVoter(NodeId(2))])
            .expect("promote");
        assert!(p.is_joint());
        let r = l.apply(&[ConfChange::Remove(NodeId(2))]).expect("valid");
        assert_eq!(r, m);
        assert_eq!(
            m.apply(&[ConfChange::Remove(NodeId(1))]).map(|_| ()),
            Err(MembershipError::NoVoters)
        );
        assert_eq!(
            m.apply(&[
                ConfChange::AddLearner(NodeId(5)),
                ConfChange::Remove(NodeId(5))
            ]),
            Err(MembershipError::InvalidId(NodeId(5)))
        );
    }

    #[test]
    fn encoding_roundtrips_and_refuses_garbage() {
        let m = Membership::with_voters(&ids(&[1, 2, 300]))
            .expect("valid")
            .apply(&[
                ConfChange::AddVoter(NodeId(9)),
                ConfChange::Remove(NodeId(2)),
            ])
            .expect("valid");
        let entry = ConfigEntry {
            membership: m.clone(),
            context: b"ctx",
        };
        let mut buf = [0u8; 128];
        let n = entry.encode(&mut buf).expect("fits");
        assert_eq!(ConfigEntry::decode(&buf[..n]), Ok(entry));
        for cut in 0..n - 3 {
            assert!(ConfigEntry::decode(&buf[..cut]).is_err(), "cut {cut}");
        }
        // Out of order ids, unknown flags, outgoing without joint.
        assert!(Membership::decode(&[0, 2, 2, 1, 1, 1]).is_err());
        assert!(Membership::decode(&[0, 1, 1, 4]).is_err());
        assert!(Membership::decode(&[0, 1, 1, 3]).is_err());
        assert!(Membership::decode(&[1, 1, 1, 1]).is_err());
        assert!(Membership::decode(&[0, 1, 1, 0]).is_err());
        assert!(Membership::decode(&[0, 17]).is_err());
        assert_eq!(
            Membership::decode(&[0, 0]).map(|(m, _)| m),
            Ok(Membership::empty())
        );
        assert!(m.encode(&mut [0u8; Membership::MAX_ENCODED_LEN]).is_ok());
    }
}
