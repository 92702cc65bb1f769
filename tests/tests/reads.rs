//! ReadIndex reads (thesis §6.4): confirmed only by a quorum of the leader's term, never below
//! what was committed when the read began, shared by every read of a round, and never served
//! by a deposed leader.

use std::collections::BTreeMap;

use raft_core::{Index, NodeId, Role};
use raft_sim::{LinkConfig, Sim, SimConfig, SimRng};
use tickraft_tests::{ensure, for_seeds, n, tail, Outcome};

/// A 3-node cluster with a leader whose no-op is applied everywhere.
fn settled(seed: u64) -> Result<(Sim, NodeId), Box<dyn std::error::Error>> {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    let leader = sim.run_until_leader(5_000_000)?.ok_or("no leader")?;
    ensure_agreement(&mut sim)?;
    Ok((sim, leader))
}

fn ensure_agreement(sim: &mut Sim) -> Outcome {
    if !sim.run_until_agreement(10_000_000)? {
        return Err(format!("no agreement\n{}", tail(sim, 30)).into());
    }
    Ok(())
}

fn read_of(sim: &Sim, context: u64) -> Option<(NodeId, Index)> {
    sim.reads()
        .iter()
        .find(|(_, r)| r.context == context)
        .map(|&(node, r)| (node, r.index))
}

#[test]
fn leader_read_waits_for_a_quorum_round_and_covers_the_last_write() {
    for_seeds("leader_read", 50, |seed| -> Outcome {
        let (mut sim, leader) = settled(seed)?;
        for k in 0..5 {
            sim.propose(leader, format!("w{k}").as_bytes())?;
        }
        ensure_agreement(&mut sim)?;
        let committed = sim.committed().len() as u64;
        sim.read_index(leader, 7)?;
        // Not confirmed on the spot: the leader must first hear from a follower.
        ensure!(
            read_of(&sim, 7).is_none(),
            "read confirmed without a heartbeat round"
        );
        let done = sim.run_until(1_000_000, |s| read_of(s, 7).is_some())?;
        ensure!(done, "read never confirmed\n{}", tail(&sim, 30));
        let (node, index) = read_of(&sim, 7).ok_or("read vanished")?;
        ensure!(
            node == leader,
            "read confirmed at n{node}, asked at n{leader}"
        );
        ensure!(
            index.0 >= committed,
            "read index {index} is below the {committed} entries committed before it began"
        );
        Ok(())
    });
}

#[test]
fn follower_read_is_forwarded_and_answered_with_the_leaders_index() {
    for_seeds("follower_read", 50, |seed| -> Outcome {
        let (mut sim, leader) = settled(seed)?;
        let follower = sim
            .ids()
            .iter()
            .copied()
            .find(|&i| i != leader)
            .ok_or("no follower")?;
        sim.propose(leader, b"w")?;
        ensure_agreement(&mut sim)?;
        let committed = sim.committed().len() as u64;
        sim.read_index(follower, 11)?;
        let done = sim.run_until(1_000_000, |s| read_of(s, 11).is_some())?;
        ensure!(done, "forwarded read never answered\n{}", tail(&sim, 30));
        let (node, index) = read_of(&sim, 11).ok_or("read vanished")?;
        ensure!(
            node == follower,
            "the answer reached n{node}, not the asking n{follower}"
        );
        ensure!(
            index.0 >= committed,
            "read index {index} below {committed} committed"
        );
        Ok(())
    });
}

#[test]
fn reads_issued_together_share_one_heartbeat_round() {
    for_seeds("reads_share_a_round", 50, |seed| -> Outcome {
        let (mut sim, leader) = settled(seed)?;
        let heartbeats = |s: &Sim| s.messages_sent().get("Heartbeat").copied().unwrap_or(0);
        // Start just after a tick so that no periodic heartbeat falls inside the round.
        let before = heartbeats(&sim);
        sim.run_until(1_000_000, |s| heartbeats(s) > before)?;
        let (start, t0) = (heartbeats(&sim), sim.now());
        for ctx in 0..20 {
            sim.read_index(leader, ctx)?;
        }
        let done = sim.run_until(50_000, |s| (0..20).all(|c| read_of(s, c).is_some()))?;
        ensure!(
            done,
            "20 reads not confirmed within 50 ms\n{}",
            tail(&sim, 30)
        );
        let used = heartbeats(&sim) - start;
        // One round to the two followers for all 20 reads, plus the periodic heartbeats of the
        // ticks that passed meanwhile (one round per tick). A round per read would be 40.
        let ticks = (sim.now() - t0) / sim.config().tick_us + 1;
        ensure!(
            used <= 2 + 2 * ticks,
            "20 reads took {used} heartbeats over {ticks} ticks"
        );
        Ok(())
    });
}

#[test]
fn isolated_leader_serves_no_reads() {
    for_seeds("isolated_leader_no_reads", 50, |seed| -> Outcome {
        let mut sim = Sim::new(SimConfig::new(5, seed));
        let old = sim.run_until_leader(5_000_000)?.ok_or("no leader")?;
        ensure_agreement(&mut sim)?;
        sim.isolate(old);
        sim.read_index(old, 99)?;
        // The majority elects a new leader and commits a write the old one never sees.
        let new = sim
            .run_until(5_000_000, |s| s.leader().is_some_and(|l| l != old))?
            .then(|| sim.leader())
            .flatten()
            .ok_or("the majority elected no leader")?;
        sim.propose(new, b"after")?;
        sim.run_for(1_000_000)?;
        ensure!(
            read_of(&sim, 99).is_none(),
            "the isolated old leader confirmed a read: it could miss the write at n{new}"
        );
        sim.heal();
        ensure_agreement(&mut sim)?;
        ensure!(
            read_of(&sim, 99).is_none(),
            "a read of a deposed leader was served after heal"
        );
        let st = sim.status(old).ok_or("old leader down")?;
        ensure!(st.role != Role::Leader, "the old leader still leads");
        Ok(())
    });
}

/// Linearizable reads under faults: every confirmed read's index covers every write that was
/// applied anywhere (so acknowledged) before the read was requested.
#[test]
fn confirmed_reads_cover_every_write_acknowledged_before_them() {
    for_seeds("reads_under_faults", 60, |seed| -> Outcome {
        let mut sim = Sim::new(SimConfig::new(5, seed));
        sim.set_network(LinkConfig::unreliable(0.1).with_long_delays(0.05, 200_000));
        let mut rng = SimRng::new(seed ^ 0x5eed);
        let mut asked: BTreeMap<u64, u64> = BTreeMap::new();
        let mut ctx = 0u64;
        for step in 0..300u64 {
            let _ = sim.propose_to_leader(format!("s{step}").as_bytes());
            let at = n(rng.range(1, 5));
            if sim.is_up(at) {
                ctx += 1;
                if sim.read_index(at, ctx).is_ok() {
                    asked.insert(ctx, sim.committed().len() as u64);
                }
            }
            match rng.range(0, 20) {
                0 => sim.crash(n(rng.range(1, 5))),
                1 | 2 => sim.restart(n(rng.range(1, 5))),
                3 => sim.isolate(n(rng.range(1, 5))),
                4 => sim.heal(),
                _ => {}
            }
            sim.run_for(rng.range(1_000, 40_000))?;
        }
        sim.heal();
        for id in 1..=5 {
            sim.restart(n(id));
        }
        sim.set_network(LinkConfig::default());
        ensure_agreement(&mut sim)?;
        let mut confirmed = 0;
        for (node, r) in sim.reads() {
            let Some(&before) = asked.get(&r.context) else {
                continue;
            };
            confirmed += 1;
            ensure!(
                r.index.0 >= before,
                "read {} at n{node} got index {} but {before} entries were committed when it began",
                r.context,
                r.index
            );
        }
        ensure!(confirmed > 0, "no read was confirmed in the whole run");
        Ok(())
    });
}
