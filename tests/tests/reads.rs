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
/// applied anywhere (so acknowledged) before the read was requested. With `lease`, leaders
/// answer from their lease (thesis §6.4.1) whenever it holds.
fn reads_cover_acknowledged_writes(seed: u64, lease: bool) -> Outcome {
    let mut cfg = SimConfig::new(5, seed);
    cfg.read_lease = lease;
    let mut sim = Sim::new(cfg);
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
            5 => {
                let (a, b) = (n(rng.range(1, 5)), n(rng.range(1, 5)));
                let groups: Vec<NodeId> = (1..=5).map(n).filter(|&i| i != a && i != b).collect();
                sim.partition(&[&[a, b], &groups]);
            }
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
    // Healed, a read is confirmed (the faults alone may leave no quorum for a whole run).
    ctx += 1;
    let at = n(1 + seed % 5);
    let mut tries = 0;
    while sim.read_index(at, ctx).is_err() {
        // Agreed on the log, the node may not know the leader yet (the leader may even change).
        tries += 1;
        ensure!(tries < 1000, "n{at} never knew a leader to read through");
        sim.run_ticks(1)?;
    }
    asked.insert(ctx, sim.committed().len() as u64);
    let done = sim.run_until(5_000_000, |s| {
        s.reads().iter().any(|(_, r)| r.context == ctx)
    })?;
    ensure!(done, "a read on the healed cluster was not confirmed");
    check_reads(&sim, &asked)
}

/// Every confirmed read asked for in `asked` (context -> entries committed when it began) has
/// an index covering those entries; and some read was confirmed.
fn check_reads(sim: &Sim, asked: &BTreeMap<u64, u64>) -> Outcome {
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
}

#[test]
fn confirmed_reads_cover_every_write_acknowledged_before_them() {
    for_seeds("reads_under_faults", 60, |seed| {
        reads_cover_acknowledged_writes(seed, false)
    });
}

// ----- lease reads (thesis §6.4.1) -----

/// A 3-node cluster with leases on, settled, with a leader whose lease holds.
fn settled_with_lease(seed: u64) -> Result<(Sim, NodeId), Box<dyn std::error::Error>> {
    let mut cfg = SimConfig::new(3, seed);
    cfg.read_lease = true;
    let mut sim = Sim::new(cfg);
    let leader = sim.run_until_leader(5_000_000)?.ok_or("no leader")?;
    ensure_agreement(&mut sim)?;
    // A few heartbeat rounds answered: the lease is established.
    sim.run_ticks(3)?;
    let leader = sim.leader().unwrap_or(leader);
    Ok((sim, leader))
}

#[test]
fn lease_reads_are_served_at_once_without_a_heartbeat_round() {
    for_seeds("lease_reads_at_once", 50, |seed| -> Outcome {
        let (mut sim, leader) = settled_with_lease(seed)?;
        for k in 0..3 {
            sim.propose(leader, format!("w{k}").as_bytes())?;
        }
        ensure_agreement(&mut sim)?;
        let committed = sim.committed().len() as u64;
        let heartbeats = |s: &Sim| s.messages_sent().get("Heartbeat").copied().unwrap_or(0);
        let leases = |s: &Sim| s.node(leader).map_or(0, |n| n.counters().lease_reads);
        let (h0, l0, t0) = (heartbeats(&sim), leases(&sim), sim.now());
        for ctx in 0..20 {
            sim.read_index(leader, ctx)?;
        }
        ensure!(
            leases(&sim) == l0 + 20,
            "{} of 20 reads were served from the lease",
            leases(&sim) - l0
        );
        // Confirmed as soon as the leader's Ready is handled: no message round trip.
        // (Two disk writes at most: one may be under way when the reads come.)
        let done = sim.run_until(2 * sim.config().disk_max_us + 1, |s| {
            (0..20).all(|c| read_of(s, c).is_some())
        })?;
        ensure!(
            done,
            "lease reads not confirmed by the next Ready
{}",
            tail(&sim, 20)
        );
        ensure!(
            heartbeats(&sim) - h0 <= 2 * ((sim.now() - t0) / sim.config().tick_us + 1),
            "lease reads took extra heartbeat rounds"
        );
        for ctx in 0..20 {
            let (node, index) = read_of(&sim, ctx).ok_or("read vanished")?;
            ensure!(node == leader, "answered at n{node}");
            ensure!(
                index.0 >= committed,
                "lease read index {index} below {committed}"
            );
        }
        // A follower's read is forwarded and answered from the lease too, without a round.
        let follower = sim
            .ids()
            .iter()
            .copied()
            .find(|&i| i != leader)
            .ok_or("no follower")?;
        sim.read_index(follower, 100)?;
        let done = sim.run_until(100_000, |s| read_of(s, 100).is_some())?;
        ensure!(done, "forwarded lease read never answered");
        ensure!(
            leases(&sim) == l0 + 21,
            "the forwarded read did not use the lease"
        );
        Ok(())
    });
}

/// A leader whose lease lapses (its followers are cut off) stops serving lease reads: the
/// read waits for a quorum round, which never comes while it is cut off.
#[test]
fn expired_lease_serves_no_reads() {
    for_seeds("expired_lease", 50, |seed| -> Outcome {
        let (mut sim, leader) = settled_with_lease(seed)?;
        sim.isolate(leader);
        let e = u64::from(sim.config().election_ticks) * sim.config().tick_us;
        sim.run_for(e)?;
        let before = sim.node(leader).map_or(0, |n| n.counters().lease_reads);
        if sim.status(leader).is_some_and(|s| s.role == Role::Leader) {
            sim.read_index(leader, 5)?;
        }
        sim.run_for(e)?;
        ensure!(
            read_of(&sim, 5).is_none(),
            "an isolated leader served a read after its lease lapsed"
        );
        ensure!(
            sim.node(leader).map_or(0, |n| n.counters().lease_reads) == before,
            "served from an expired lease"
        );
        Ok(())
    });
}

#[test]
fn lease_reads_stay_linearizable_under_partitions_and_crashes() {
    for_seeds("lease_reads_under_faults", 60, |seed| {
        reads_cover_acknowledged_writes(seed, true)
    });
}

/// A transfer whose TimeoutNow is delayed past the transfer's abort: the target still
/// campaigns when it arrives, and the voters grant a transfer's votes whatever lease they
/// keep for the old leader. So once a leader has sent TimeoutNow its lease proves nothing for
/// the rest of its term: a read served from it could miss a write the new leader committed.
/// The link to the target takes 150 ms (more than the 100 ms election timeout after which the
/// transfer aborts), the link back is cut, and news of the new term takes 40 ms to come back
/// to the old leader through the third node.
#[test]
fn no_lease_read_after_a_transfer_timeout_now_was_sent() {
    for_seeds("lease_after_transfer", 30, |seed| -> Outcome {
        let (mut sim, leader) = settled_with_lease(seed)?;
        let others: Vec<NodeId> = sim.ids().iter().copied().filter(|&i| i != leader).collect();
        let (target, other) = (others[seed as usize % 2], others[1 - seed as usize % 2]);
        let slow = |us| LinkConfig {
            min_delay: us,
            max_delay: us,
            ..LinkConfig::default()
        };
        sim.set_link(leader, target, slow(150_000));
        sim.set_link(other, leader, slow(40_000));
        // Long enough for the target to have everything and the lease to hold with the delays.
        sim.run_for(400_000)?;
        // And the target's vote request must not reach the old leader directly.
        sim.cut(target, leader);
        sim.transfer_leadership(leader, target)?;
        let elected = sim.run_until(1_000_000, |s| {
            s.status(target).is_some_and(|st| st.role == Role::Leader)
        })?;
        ensure!(elected, "the target never campaigned\n{}", tail(&sim, 30));
        let n0 = sim.acked().len();
        sim.propose(target, b"new leader's write")?;
        let acked = sim.run_until(200_000, |s| s.acked().len() > n0)?;
        ensure!(acked, "the new leader's write did not commit");
        let mut asked = BTreeMap::new();
        let committed = sim.committed().len() as u64;
        if sim.read_index(leader, 77).is_ok() {
            asked.insert(77, committed);
        }
        sim.run_for(300_000)?;
        sim.set_network(LinkConfig::default());
        for (node, r) in sim.reads() {
            if r.context == 77 {
                ensure!(
                    r.index.0 >= committed,
                    "n{node} served a read at index {} after n{target}'s write at {committed} was acknowledged",
                    r.index
                );
            }
        }
        Ok(())
    });
}
