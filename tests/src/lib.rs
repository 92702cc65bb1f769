//! Shared helpers for the simulation suites in `tests/tests/`.
//!
//! Every randomised test runs over a range of seeds; a failure names its seed, and
//! `TICKRAFT_SEED=<seed>` runs that one seed alone, replaying the failure exactly.
//! `TICKRAFT_SOAK=<n>` multiplies the number of seeds, for long runs.

use std::fmt::Display;

use raft_core::{ConfChange, Membership, NodeId, ProposeError, Role, Term};
use raft_sim::{LinkConfig, Sim};

/// What a scenario returns: a [`raft_sim::Violation`] or a failed expectation, either printed
/// with the seed by [`for_seeds`]. `?` works on both.
pub type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Fails the scenario with a formatted message unless `cond` holds (an `assert!` that returns
/// an [`Outcome`] error, so [`for_seeds`] can name the seed).
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+).into());
        }
    };
}

/// The seeds to run: `TICKRAFT_SEED` alone if set, else `0..count * TICKRAFT_SOAK`.
pub fn seeds(count: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("TICKRAFT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    (0..count * soak()).collect()
}

/// The `TICKRAFT_SOAK` multiplier (1 when unset).
pub fn soak() -> u64 {
    std::env::var("TICKRAFT_SOAK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1u64)
        .max(1)
}

/// Runs `f` for each of [`seeds`]`(count)`; on the first failure, panics with the seed and the
/// command that replays it.
pub fn for_seeds<E: Display>(test: &str, count: u64, mut f: impl FnMut(u64) -> Result<(), E>) {
    for seed in seeds(count) {
        if let Err(e) = f(seed) {
            panic!(
                "{test} failed with seed {seed}:\n{e}\nreplay: TICKRAFT_SEED={seed} cargo test -p tickraft-tests {test}"
            );
        }
    }
}

/// `NodeId(n)`, shorter.
pub fn n(id: u64) -> raft_core::NodeId {
    raft_core::NodeId(id)
}

/// Virtual microseconds in one (minimum) election timeout: `election_ticks * tick_us`. Scenario
/// bounds are written in these units.
pub fn election_us(sim: &Sim) -> u64 {
    u64::from(sim.config().election_ticks) * sim.config().tick_us
}

/// The last `count` trace events, one per line: context for a liveness failure, where there is
/// no [`raft_sim::Violation`] to carry it.
pub fn tail(sim: &Sim, count: usize) -> String {
    let events: Vec<String> = sim.trace().events().map(|e| e.to_string()).collect();
    let mut out = String::new();
    for line in &events[events.len().saturating_sub(count)..] {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// One line per node: role, term, commit and last index, or "down".
pub fn statuses(sim: &Sim) -> String {
    let mut out = String::new();
    for &id in sim.ids() {
        match sim.status(id) {
            Some(s) => out.push_str(&format!(
                "  n{id}: {} term={} commit={} last={} leader={:?}\n",
                s.role.name(),
                s.term,
                s.commit,
                s.last_index,
                s.leader
            )),
            None => out.push_str(&format!("  n{id}: down\n")),
        }
    }
    out
}

/// The leader among `group`: a node of `group` that leads with no node of `group` in a higher
/// term, so a deposed leader elsewhere (or a stale one inside) is not taken for it.
pub fn leader_among(sim: &Sim, group: &[NodeId]) -> Option<NodeId> {
    let live: Vec<_> = group.iter().filter_map(|&id| sim.status(id)).collect();
    let top = live.iter().map(|s| s.term).max()?;
    live.iter()
        .find(|s| s.role == Role::Leader && s.term == top)
        .map(|s| s.id)
}

/// Runs until `group` has a leader (see [`leader_among`]), for at most `max_us`.
pub fn run_until_leader_among(
    sim: &mut Sim,
    group: &[NodeId],
    max_us: u64,
) -> Result<Option<NodeId>, raft_sim::Violation> {
    sim.run_until(max_us, |s| leader_among(s, group).is_some())?;
    Ok(leader_among(sim, group))
}

/// The highest term any live node holds.
pub fn max_term(sim: &Sim) -> Term {
    sim.ids()
        .iter()
        .filter_map(|&id| sim.status(id))
        .map(|s| s.term)
        .max()
        .unwrap_or(Term::ZERO)
}

/// Ends a fault schedule: heals the network, makes it reliable, restarts every node and runs
/// until all agree (at most `max_us`); then checks that the clients' view holds up (see
/// [`check_acked`]).
pub fn settle(sim: &mut Sim, max_us: u64) -> Outcome {
    sim.heal();
    sim.set_network(LinkConfig::default());
    for id in sim.ids().to_vec() {
        sim.restart(id);
    }
    sim.note("settle: healed, reliable, all up");
    let agreed = sim.run_until_agreement(max_us)?;
    ensure!(
        agreed,
        "no agreement within {max_us}us of healing\n{}last events:\n{}",
        statuses(sim),
        tail(sim, 40)
    );
    check_acked(sim)
}

/// Every entry a client saw committed ([`Sim::acked`]) is in the committed log at its index,
/// in every live member's state machine and on its disk (or in the snapshot its disk
/// compacted it into); and every live member's state machine is exactly the committed log
/// (restored from a snapshot of it, then applying the rest). Nodes outside the cluster's
/// configuration (removed ones) are not asked.
pub fn check_acked(sim: &Sim) -> Outcome {
    let committed = sim.committed();
    for a in sim.acked() {
        let at = committed.get(a.index.0 as usize - 1);
        ensure!(
            at == Some(a),
            "acknowledged entry {a:?} is not in the committed log (found {at:?})"
        );
    }
    for &id in sim.ids() {
        if !sim.is_up(id) || !sim.is_member(id) {
            continue;
        }
        let base = sim.restored_from(id).0 as usize;
        let applied = sim.applied(id);
        ensure!(
            committed.get(base..) == Some(applied),
            "n{id} applied {} entries after a snapshot at {base}, the committed log has {} (or they differ)",
            applied.len(),
            committed.len()
        );
        let sm = sim.state_machine(id).ok_or("up but no state machine")?;
        ensure!(
            sm.index.0 as usize == committed.len() && sim.state_at(sm.index) == Some(sm),
            "n{id}'s state machine {sm:?} is not the committed log's ({} entries)",
            committed.len()
        );
        let disk = sim.disk(id).ok_or("up but no disk")?;
        let compacted = disk.compacted();
        if compacted > raft_core::Index::ZERO {
            ensure!(
                disk.prefix_hash(compacted) == sim.state_at(compacted).map(|s| s.hash),
                "n{id}'s disk compacted through {compacted} a history other than the committed one"
            );
        }
        for a in sim.acked() {
            if a.index <= compacted {
                continue;
            }
            let e = disk.get(a.index);
            ensure!(
                e.is_some_and(|e| e.term == a.term && e.data == a.data),
                "n{id}'s disk lacks acknowledged entry {a:?}"
            );
        }
    }
    Ok(())
}

/// The configuration `changes` lead to from `from`, once any joint step is left.
pub fn config_after(from: &Membership, changes: &[ConfChange]) -> Option<Membership> {
    let next = from.apply(changes).ok()?;
    Some(if next.is_joint() {
        next.leave_joint()
    } else {
        next
    })
}

/// Makes the configuration change `changes` from the cluster's current configuration: proposes
/// it at whoever leads (again after a leader change lost it), and runs until the cluster's
/// configuration ([`Sim::cluster_membership`]) is the one it leads to, joint step left, for at
/// most `max_us`. Errors if the change is invalid, or does not complete in time.
pub fn change_config(sim: &mut Sim, changes: &[ConfChange], max_us: u64) -> Outcome {
    let from = sim.cluster_membership().clone();
    let target = config_after(&from, changes)
        .ok_or_else(|| format!("{changes:?} is not a valid change of {from:?}"))?;
    sim.note(format!("change {changes:?}"));
    let deadline = sim.now() + max_us;
    while *sim.cluster_membership() != target {
        ensure!(
            sim.now() < deadline,
            "{changes:?} did not complete within {max_us}us\n{}last events:\n{}",
            statuses(sim),
            tail(sim, 40)
        );
        if let Some(l) = sim.leader() {
            // Propose unless the change is already in the leader's log.
            let current = sim.membership(l).cloned().unwrap_or_default();
            let ready = sim.node(l).is_some_and(|n| n.can_change_config());
            if ready && current == from {
                match sim.propose_conf_change(l, changes) {
                    Ok(_) | Err(ProposeError::NotCaughtUp(_)) | Err(ProposeError::Busy) => {}
                    Err(e) => return Err(format!("n{l} refused {changes:?}: {e}").into()),
                }
            }
        }
        sim.run_ticks(1)?;
    }
    Ok(())
}
