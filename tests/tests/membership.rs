//! Membership changes (thesis §4.3): learners that catch up and are promoted, joint
//! consensus for every change of voters, a leader replaced in one joint step, clusters grown
//! and shrunk under load, random change schedules with faults, and a removed node that keeps
//! running without disturbing anyone. The simulator checks election safety, log matching,
//! leader completeness, state machine safety and monotonic commit after every event, with the
//! configuration changing under it.

use raft_core::{ConfChange, NodeId, ProgressState, ProposeError, Role, Term};
use raft_sim::{LinkConfig, Sim, SimConfig, SimRng};
use tickraft_tests::{
    change_config, check_acked, config_after, election_us, ensure, for_seeds, n, settle, statuses,
    tail, Outcome,
};

/// Proposes a write at whoever leads, if anyone, named `tag` and a counter.
fn write_one(sim: &mut Sim, tag: &str, k: &mut u64) {
    if sim
        .propose_to_leader(format!("{tag}{k}").as_bytes())
        .is_some()
    {
        *k += 1;
    }
}

/// Adds a new node as a learner and waits until it has caught up (the leader would promote
/// it: it matches the leader's log and replicates normally, not by snapshot), writing
/// meanwhile.
fn add_learner(sim: &mut Sim, k: &mut u64) -> Result<NodeId, Box<dyn std::error::Error>> {
    let e = election_us(sim);
    let id = sim.add_node();
    change_config(sim, &[ConfChange::AddLearner(id)], 50 * e)?;
    write_one(sim, "l", k);
    let caught_up = sim.run_until(50 * e, |s| {
        s.leader().is_some_and(|l| {
            let last = s.status(l).map(|st| st.last_index);
            s.node(l)
                .and_then(|node| node.progress(id))
                .is_some_and(|p| Some(p.matched) == last && p.state == ProgressState::Replicate)
        })
    })?;
    ensure!(
        caught_up,
        "learner n{id} did not catch up\n{}",
        statuses(sim)
    );
    Ok(id)
}

/// 1, 2, 3 → 2, 3, 4 with the leader among the removed: 4 joins as a learner, catches up, and
/// one change adds it as a voter and removes the leader (a joint configuration, then the new
/// one, which the old leader appends by itself). The new configuration commits, the old leader
/// steps down once it has and is no voter of it, and a leader of the new configuration
/// commits writes.
#[test]
fn leader_is_replaced_in_one_joint_change() {
    for_seeds("replace_the_leader", 40, |seed| -> Outcome {
        let mut cfg = SimConfig::new(3, seed);
        // Odd seeds compact their logs, so the new node is caught up by a snapshot.
        if seed % 2 == 1 {
            cfg.snapshot_every = Some(1);
        }
        let mut sim = Sim::new(cfg);
        let e = election_us(&sim);
        let old = sim.run_until_leader(20 * e)?.ok_or("no leader")?;
        let mut k = 0;
        write_one(&mut sim, "w", &mut k);
        let four = add_learner(&mut sim, &mut k)?;
        let old = sim.leader().unwrap_or(old);
        if seed % 2 == 1 {
            let installed = sim.node(four).map(|n| n.counters().snapshots_installed);
            ensure!(
                installed > Some(0),
                "n{four} was not caught up by a snapshot"
            );
        }
        let changes = [ConfChange::AddVoter(four), ConfChange::Remove(old)];
        let from = sim.cluster_membership().clone();
        if let Err(err) = sim.propose_conf_change(old, &changes) {
            return Err(format!(
                "n{old} refused the change: {err}\n{}{}",
                statuses(&sim),
                tail(&sim, 30)
            )
            .into());
        }
        ensure!(
            sim.membership(old).is_some_and(|m| m.is_joint()),
            "the change did not enter a joint configuration"
        );
        let target = config_after(&from, &changes).ok_or("invalid change")?;
        let done = sim.run_until(50 * e, |s| {
            *s.cluster_membership() == target
                && s.status(old).is_some_and(|st| st.role != Role::Leader)
        })?;
        ensure!(
            done,
            "the new configuration did not commit or n{old} still leads\n{}{}",
            statuses(&sim),
            tail(&sim, 40)
        );
        let m = sim.membership(old).ok_or("old leader down")?;
        ensure!(
            !m.is_voter(old) && !m.is_joint(),
            "n{old} is still a voter of its configuration {m:?}"
        );
        let new = sim.run_until_leader(20 * e)?.ok_or("no leader of 2,3,4")?;
        ensure!(new != old, "n{old} leads again");
        let before = sim.acked().len();
        for _ in 0..5 {
            write_one(&mut sim, "after", &mut k);
        }
        let ok = sim.run_until(20 * e, |s| s.acked().len() >= before + 5)?;
        ensure!(
            ok,
            "the new configuration commits nothing\n{}",
            statuses(&sim)
        );
        ensure!(
            sim.status(old).is_some_and(|st| st.role != Role::Leader),
            "n{old} leads again"
        );
        sim.crash(old);
        sim.run_for(e)?;
        sim.note("the removed node is gone; the others go on");
        check_acked(&sim)?;
        Ok(())
    });
}

/// One node grows to three, then five, then shrinks back to three, with writes throughout;
/// every acknowledged write is in every member's state machine at the end.
#[test]
fn one_to_three_to_five_to_three_nodes_under_writes() {
    for_seeds("one_three_five_three", 30, |seed| -> Outcome {
        let mut sim = Sim::new(SimConfig::new(1, seed));
        if seed % 2 == 1 {
            sim.set_network(LinkConfig::unreliable(0.05));
        }
        let e = election_us(&sim);
        sim.run_until_leader(20 * e)?.ok_or("no leader")?;
        let mut k = 0;
        let grow =
            |sim: &mut Sim, k: &mut u64| -> Result<[NodeId; 2], Box<dyn std::error::Error>> {
                let a = add_learner(sim, k)?;
                write_one(sim, "g", k);
                let b = add_learner(sim, k)?;
                write_one(sim, "g", k);
                change_config(
                    sim,
                    &[ConfChange::AddVoter(a), ConfChange::AddVoter(b)],
                    50 * e,
                )?;
                Ok([a, b])
            };
        let [two, three] = grow(&mut sim, &mut k)?;
        ensure!(
            sim.cluster_membership().voters().count() == 3,
            "not three voters: {:?}",
            sim.cluster_membership()
        );
        for _ in 0..10 {
            write_one(&mut sim, "three", &mut k);
            sim.run_ticks(1)?;
        }
        let [four, five] = grow(&mut sim, &mut k)?;
        ensure!(
            sim.cluster_membership().voters().count() == 5,
            "not five voters"
        );
        for _ in 0..10 {
            write_one(&mut sim, "five", &mut k);
            sim.run_ticks(1)?;
        }
        // Back to three: drop the first node (the founder, perhaps the leader) and one of the
        // newest.
        let _ = (two, three, four);
        change_config(
            &mut sim,
            &[ConfChange::Remove(n(1)), ConfChange::Remove(five)],
            100 * e,
        )?;
        ensure!(
            sim.cluster_membership().voters().count() == 3,
            "not three voters"
        );
        for _ in 0..10 {
            write_one(&mut sim, "back", &mut k);
            sim.run_ticks(1)?;
        }
        sim.set_network(LinkConfig::default());
        ensure!(
            sim.run_until(50 * e, |s| s.in_agreement() && s.leader().is_some())?,
            "no agreement\n{}",
            statuses(&sim)
        );
        ensure!(
            sim.acked().len() >= 20,
            "only {} writes acknowledged",
            sim.acked().len()
        );
        check_acked(&sim)
    });
}

/// A change chosen at random from the cluster's configuration: a new learner, a promotion, a
/// removal, or a new voter straight away.
fn random_change(sim: &mut Sim, rng: &mut SimRng) -> Option<Vec<ConfChange>> {
    let m = sim.cluster_membership().clone();
    let members: Vec<NodeId> = m.members().iter().map(|x| x.id).collect();
    let learners: Vec<NodeId> = m.learners().collect();
    let pick = |rng: &mut SimRng, v: &[NodeId]| v[rng.range(0, v.len() as u64 - 1) as usize];
    let change = match rng.range(0, 3) {
        0 if members.len() < 6 => vec![ConfChange::AddLearner(sim.add_node())],
        1 if !learners.is_empty() => vec![ConfChange::AddVoter(pick(rng, &learners))],
        // Removals keep three voters at least, so that one crash does not stop the cluster.
        2 if members.len() > 2 => {
            let a = pick(rng, &members);
            let mut c = vec![ConfChange::Remove(a)];
            if (rng.chance(0.3) || m.voters().count() <= 3) && members.len() < 6 {
                c.push(ConfChange::AddVoter(sim.add_node()));
            }
            c
        }
        3 if members.len() < 6 => vec![ConfChange::AddVoter(sim.add_node())],
        _ => return None,
    };
    let next = m.apply(&change).ok()?;
    (next.voters().count() >= 3).then_some(change)
}

/// Random schedules of membership changes (add learner, promote, remove, add voter; joint
/// whenever voters change) with writes, message loss, partitions and crashes of any node,
/// leaders included. The simulator's checks (one leader per term, log matching, leader
/// completeness, state machine safety) hold throughout; at the end, with everyone up and the
/// network healed, the members agree and every acknowledged write is there.
#[test]
fn random_joint_changes_under_loss_and_crashes_keep_safety() {
    for_seeds("random_joint_changes", 60, |seed| -> Outcome {
        let mut cfg = SimConfig::new(3, seed);
        // Odd seeds snapshot and compact: new members and returning ones are caught up by
        // snapshots, which carry the configuration.
        if seed % 2 == 1 {
            cfg.snapshot_every = Some(15);
            cfg.snapshot_bytes = 4096;
            cfg.max_snapshot_chunk = 1024;
        }
        let mut sim = Sim::new(cfg);
        let e = election_us(&sim);
        let mut rng = SimRng::new(seed ^ 0xC0_4F16);
        let mut k = 0;
        let mut changes = 0;
        for round in 0..100u64 {
            for _ in 0..rng.range(0, 3) {
                write_one(&mut sim, &format!("r{round}-"), &mut k);
            }
            match rng.range(0, 12) {
                0..=4 => {
                    if let Some(l) = sim.leader() {
                        if sim.node(l).is_some_and(|n| n.can_change_config()) {
                            if let Some(c) = random_change(&mut sim, &mut rng) {
                                match sim.propose_conf_change(l, &c) {
                                    Ok(_) => changes += 1,
                                    Err(ProposeError::NotCaughtUp(_))
                                    | Err(ProposeError::ConfChangePending)
                                    | Err(ProposeError::InvalidConfChange(_)) => {}
                                    Err(e) => return Err(format!("{c:?}: {e}").into()),
                                }
                            }
                        }
                    }
                }
                5 => {
                    // Crash a node, the leader half the time.
                    let ids = sim.ids().to_vec();
                    let victim = match sim.leader() {
                        Some(l) if rng.chance(0.5) => l,
                        _ => ids[rng.range(0, ids.len() as u64 - 1) as usize],
                    };
                    sim.crash(victim);
                }
                6 | 7 => {
                    let ids = sim.ids().to_vec();
                    for id in ids {
                        if !sim.is_up(id) && rng.chance(0.5) {
                            sim.restart(id);
                        }
                    }
                }
                8 => {
                    let ids = sim.ids().to_vec();
                    sim.isolate(ids[rng.range(0, ids.len() as u64 - 1) as usize]);
                }
                9 | 11 => sim.heal(),
                10 => sim.set_network(LinkConfig::unreliable(rng.range(0, 20) as f64 / 100.0)),
                _ => {}
            }
            sim.run_for(rng.range(1_000, 200_000))?;
        }
        settle(&mut sim, 200 * e)?;
        // And the cluster still takes writes in whatever configuration it ended.
        let before = sim.acked().len();
        write_one(&mut sim, "last", &mut k);
        let ok = sim.run_until(50 * e, |s| s.acked().len() > before && s.in_agreement())?;
        if !ok {
            write_one(&mut sim, "last", &mut k);
            ensure!(
                sim.run_until(50 * e, |s| s.acked().len() > before && s.in_agreement())?,
                "no write commits after settling\n{}{}",
                statuses(&sim),
                tail(&sim, 30)
            );
        }
        check_acked(&sim)?;
        if changes == 0 {
            // The faults never left room for a change: make one on the settled cluster, so that
            // every seed changes the configuration at least once.
            let id = sim.add_node();
            change_config(&mut sim, &[ConfChange::AddLearner(id)], 200 * e)?;
            settle(&mut sim, 200 * e)?;
            check_acked(&sim)?;
        }
        Ok(())
    });
}

/// A voter is cut off before its removal commits, so it never learns of it; healed, it keeps
/// ticking with its old configuration, in which it is a voter and campaigns. The members
/// refuse everything it sends (it is no member of theirs), so over a long run their terms and
/// their leader do not move. With pre-vote off too, where the removed node raises its own term
/// again and again.
fn removed_node_never_raises_the_term(seed: u64, pre_vote: bool) -> Outcome {
    let mut cfg = SimConfig::new(5, seed);
    cfg.pre_vote = pre_vote;
    let mut sim = Sim::new(cfg);
    let e = election_us(&sim);
    let leader = sim.run_until_leader(20 * e)?.ok_or("no leader")?;
    let mut k = 0;
    write_one(&mut sim, "w", &mut k);
    ensure!(sim.run_until_agreement(20 * e)?, "no agreement");
    let removed = *sim
        .ids()
        .iter()
        .rfind(|&&i| i != leader)
        .ok_or("no follower")?;
    sim.isolate(removed);
    change_config(&mut sim, &[ConfChange::Remove(removed)], 50 * e)?;
    ensure!(
        sim.membership(removed).is_some_and(|m| m.is_voter(removed)),
        "n{removed} learnt of its removal"
    );
    // Cut off for a while, it campaigns (without pre-vote, raising its own term).
    sim.run_for(5 * e)?;
    sim.heal();
    sim.note(format!(
        "healed: n{removed} is back, removed without knowing it"
    ));
    let members: Vec<NodeId> = sim
        .ids()
        .iter()
        .copied()
        .filter(|&i| i != removed)
        .collect();
    let terms = |s: &Sim| -> Vec<Option<Term>> {
        members
            .iter()
            .map(|&id| s.status(id).map(|st| st.term))
            .collect()
    };
    let before = terms(&sim);
    let leader = sim.leader().ok_or("no leader")?;
    let own_before = sim.status(removed).map(|s| s.term);
    for round in 0..50 {
        write_one(&mut sim, "w", &mut k);
        sim.run_for(e)?;
        ensure!(
            terms(&sim) == before && sim.leader() == Some(leader),
            "round {round}: the members' terms went from {before:?} to {:?} (leader n{leader}, now {:?})\n{}{}",
            terms(&sim),
            sim.leader(),
            statuses(&sim),
            tail(&sim, 30)
        );
    }
    ensure!(sim.is_up(removed), "the removed node stopped");
    let own_after = sim.status(removed).map(|s| s.term);
    if !pre_vote {
        ensure!(
            own_after > own_before,
            "without pre-vote the removed node should have campaigned ({own_before:?} -> {own_after:?})"
        );
    }
    let refused = sim
        .node(removed)
        .map(|n| n.counters().campaigns)
        .unwrap_or(0);
    ensure!(refused > 0, "the removed node never campaigned");
    check_acked(&sim)
}

#[test]
fn removed_node_that_keeps_ticking_never_raises_the_term() {
    for_seeds("removed_node_never_raises_the_term", 30, |seed| {
        removed_node_never_raises_the_term(seed, true)
    });
}

#[test]
fn removed_node_without_pre_vote_never_raises_the_term() {
    for_seeds("removed_node_without_pre_vote", 30, |seed| {
        removed_node_never_raises_the_term(seed, false)
    });
}
