//! The simulated network: how links behave, and sending, dropping and delivering messages.

use raft_core::{Body, Message, NodeId};

use crate::sim::{Action, Sim};
use crate::trace::{DropReason, EventKind, MsgSummary};

/// How one direction of a link behaves. Times are virtual microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Fastest delivery.
    pub min_delay: u64,
    /// Slowest ordinary delivery; delays are uniform in between, which reorders messages.
    pub max_delay: u64,
    /// Probability that a message is held back much longer (long reordering).
    pub long_delay_chance: f64,
    /// Longest such delay.
    pub long_delay_max: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            min_delay: 500,
            max_delay: 2_000,
            long_delay_chance: 0.0,
            long_delay_max: 0,
        }
    }
}

impl LinkConfig {
    /// A lossy, reordering, duplicating link: the "unreliable network" of a Raft lab.
    pub fn unreliable(loss: f64) -> Self {
        LinkConfig {
            loss,
            duplicate: 0.02,
            min_delay: 200,
            max_delay: 5_000,
            long_delay_chance: 0.0,
            long_delay_max: 0,
        }
    }

    /// Adds long reordering: a message in `chance` is delayed up to `max` microseconds.
    pub fn with_long_delays(mut self, chance: f64, max: u64) -> Self {
        self.long_delay_chance = chance;
        self.long_delay_max = max;
        self
    }
}

impl Sim {
    fn link(&self, from: NodeId, to: NodeId) -> &LinkConfig {
        self.links.get(&(from, to)).unwrap_or(&self.cfg.link)
    }

    pub(crate) fn send(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        let msg = match Message::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                self.fail(format!("n{from} emitted an undecodable message: {e}"));
                return;
            }
        };
        let summary = MsgSummary::of(&msg);
        *self.sent.entry(summary.kind).or_insert(0) += 1;
        match msg.body {
            Body::VoteResponse { reject: false } | Body::PreVoteResponse { reject: false } => {
                let pre = matches!(msg.body, Body::PreVoteResponse { .. });
                self.record(EventKind::Vote {
                    node: from,
                    candidate: to,
                    term: msg.term,
                    pre,
                });
            }
            _ => {}
        }
        self.record(EventKind::Send {
            from,
            to,
            msg: summary,
        });
        if self.dropped_by_partition(from, to, summary) {
            return;
        }
        let link = self.link(from, to).clone();
        if self.rng.chance(link.loss) {
            self.record(EventKind::Drop {
                from,
                to,
                msg: summary,
                reason: DropReason::Loss,
            });
            return;
        }
        let copies = if self.rng.chance(link.duplicate) {
            2
        } else {
            1
        };
        let mut bytes = bytes;
        for c in 0..copies {
            let mut delay = self.rng.range(link.min_delay, link.max_delay);
            if self.rng.chance(link.long_delay_chance) {
                delay = self
                    .rng
                    .range(link.max_delay, link.long_delay_max.max(link.max_delay));
            }
            if c == 1 {
                self.record(EventKind::Duplicate {
                    from,
                    to,
                    msg: summary,
                });
            }
            let payload = if c + 1 == copies {
                std::mem::take(&mut bytes)
            } else {
                bytes.clone()
            };
            self.schedule(
                delay,
                Action::Deliver {
                    from,
                    to,
                    bytes: payload,
                    msg: summary,
                },
            );
        }
    }

    /// Whether a partition cuts `from -> to`; if so, records the drop.
    fn dropped_by_partition(&mut self, from: NodeId, to: NodeId, msg: MsgSummary) -> bool {
        let cut = self.blocked.contains(&(from, to));
        if cut {
            let reason = DropReason::Partition;
            self.record(EventKind::Drop {
                from,
                to,
                msg,
                reason,
            });
        }
        cut
    }

    pub(crate) fn deliver(&mut self, from: NodeId, to: NodeId, bytes: &[u8], summary: MsgSummary) {
        if self.dropped_by_partition(from, to, summary) {
            return;
        }
        // A configuration may name a node the simulation never started: nobody is there.
        let node = if self.has_host(to) {
            let k = self.slot(to);
            self.hosts[k].node.as_mut()
        } else {
            None
        };
        let Some(node) = node else {
            self.record(EventKind::Drop {
                from,
                to,
                msg: summary,
                reason: DropReason::NodeDown,
            });
            return;
        };
        if node.step(bytes).is_err() {
            self.record(EventKind::Drop {
                from,
                to,
                msg: summary,
                reason: DropReason::Refused,
            });
        }
        self.after_input(to);
    }

    /// Delivers raw bytes to a node as if `from` sent them, now, bypassing the network: for
    /// tests of hostile input. Returns the node's answer.
    pub fn inject(&mut self, to: NodeId, bytes: &[u8]) -> Option<Result<(), raft_core::StepError>> {
        let k = self.slot(to);
        let r = self.hosts[k].node.as_mut()?.step(bytes);
        self.after_input(to);
        Some(r)
    }

    /// Splits the network: nodes in different groups cannot reach each other; a node in no
    /// group is cut off from all. Replaces any earlier partition.
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        self.blocked.clear();
        let group_of = |n: NodeId| groups.iter().position(|g| g.contains(&n));
        for &a in &self.ids {
            for &b in &self.ids {
                if a != b && (group_of(a).is_none() || group_of(a) != group_of(b)) {
                    self.blocked.insert((a, b));
                }
            }
        }
        let groups = groups.iter().map(|g| g.to_vec()).collect();
        self.record(EventKind::Partition { groups });
    }

    /// Cuts node `id` off from everyone (keeping other cuts).
    pub fn isolate(&mut self, id: NodeId) {
        for &b in &self.ids {
            if b != id {
                self.blocked.insert((id, b));
                self.blocked.insert((b, id));
            }
        }
        self.record(EventKind::Partition {
            groups: vec![vec![id]],
        });
    }

    /// Cuts one direction of one link.
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// Heals every partition and cut.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.record(EventKind::Heal);
    }

    /// Sets how the link `from -> to` behaves.
    pub fn set_link(&mut self, from: NodeId, to: NodeId, link: LinkConfig) {
        self.links.insert((from, to), link);
    }

    /// Sets how every link behaves (dropping per-link settings).
    pub fn set_network(&mut self, link: LinkConfig) {
        self.links.clear();
        self.cfg.link = link;
    }
}
