//! Fault scenarios: repeated partitions of a 7-node cluster, the "Figure 8" leader-crash
//! torture of MIT 6.824 on three networks, and random churn. Safety is checked by the simulator
//! after every event; these scenarios add liveness (leaders get elected, proposals commit) and
//! durability of what clients were told (`Sim::acked`).

use std::collections::BTreeSet;

use raft_core::NodeId;
use raft_sim::{LinkConfig, Sim, SimConfig, SimRng};
use tickraft_tests::{
    check_acked, election_us, ensure, for_seeds, leader_among, n, run_until_leader_among, settle,
    statuses, tail, Outcome,
};

/// Seven nodes; ten times over, three of them (perhaps the leader) are cut off, together or
/// each alone. The other four always elect or keep a leader and commit; on heal all agree.
#[test]
fn seven_nodes_ten_rounds_of_isolating_three() {
    for_seeds("seven_nodes_isolating_three", 60, |seed| -> Outcome {
        let mut sim = Sim::new(SimConfig::new(7, seed));
        let e = election_us(&sim);
        let mut rng = SimRng::new(seed ^ 0x7777);
        let ids = sim.ids().to_vec();
        for round in 0..10u64 {
            let mut cut = BTreeSet::new();
            while cut.len() < 3 {
                cut.insert(ids[rng.range(0, 6) as usize]);
            }
            let minority: Vec<NodeId> = cut.iter().copied().collect();
            let majority: Vec<NodeId> = ids.iter().copied().filter(|i| !cut.contains(i)).collect();
            if round.is_multiple_of(2) {
                sim.partition(&[&majority, &minority]);
            } else {
                let mut groups: Vec<&[NodeId]> = vec![&majority];
                groups.extend(minority.iter().map(std::slice::from_ref));
                sim.partition(&groups);
            }
            sim.note(format!("round {round}: cut off {minority:?}"));
            let leader = run_until_leader_among(&mut sim, &majority, 10 * e)?;
            let Some(leader) = leader else {
                return Err(format!(
                    "round {round}: the four elected no one\n{}{}",
                    statuses(&sim),
                    tail(&sim, 40)
                )
                .into());
            };
            let want: Vec<Vec<u8>> = (0..3)
                .map(|k| format!("r{round}-{k}").into_bytes())
                .collect();
            for data in &want {
                sim.propose(leader, data)?;
            }
            let committed = sim.run_until(10 * e, |s| {
                want.iter().all(|w| s.acked().iter().any(|a| a.data == *w))
            })?;
            ensure!(
                committed,
                "round {round}: n{leader}'s proposals did not commit\n{}{}",
                statuses(&sim),
                tail(&sim, 40)
            );
            ensure!(
                leader_among(&sim, &minority).is_none_or(|l| {
                    sim.status(l).map(|s| s.term) < sim.status(leader).map(|s| s.term)
                }),
                "round {round}: the three cut off hold a current leader"
            );
        }
        ensure!(
            sim.acked().len() == 30,
            "{} of 30 acknowledged",
            sim.acked().len()
        );
        settle(&mut sim, 20 * e)?;
        Ok(())
    });
}

/// One "Figure 8" run (Raft §5.4.2, and 6.824's TestFigure8 / TestFigure8Unreliable): 1000
/// times, maybe propose at every node that thinks it leads, run a short random while (now and
/// then a long one), crash the leader (sometimes a random node instead), restart crashed nodes
/// now and then and always enough to keep three of five up. Leaders keep dying with entries of
/// their term half-replicated, which is exactly where committing an older term's entry by
/// counting replicas would lose acknowledged writes. Odd seeds get a slow disk (1-10 ms per
/// write), so that many crashes land while a write is under way.
fn figure8(seed: u64, link: LinkConfig, async_persist: bool) -> Outcome {
    let mut cfg = SimConfig::new(5, seed);
    cfg.async_leader_persist = async_persist;
    figure8_with(cfg, link)
}

fn figure8_with(mut cfg: SimConfig, link: LinkConfig) -> Outcome {
    let seed = cfg.seed;
    if seed % 2 == 1 {
        cfg.disk_min_us = 1_000;
        cfg.disk_max_us = 10_000;
    }
    let mut sim = Sim::new(cfg);
    sim.set_network(link);
    let e = election_us(&sim);
    let mut rng = SimRng::new(seed ^ 0xF1_6E8);
    let ids = sim.ids().to_vec();
    let random = |rng: &mut SimRng| ids[rng.range(0, 4) as usize];
    for iter in 0..1000u64 {
        // Like 6.824, the node crashed below is one that led before the pause: a leader that
        // had the time to take proposals and perhaps replicate them part way.
        let propose = rng.chance(0.8);
        let mut leader = None;
        for id in sim.leaders() {
            if propose {
                // A stale leader may refuse (Busy); what matters is what gets acknowledged.
                let _ = sim.propose(id, format!("f{iter}-{id}").as_bytes());
            }
            leader = Some(id);
        }
        let pause = if rng.chance(0.1) {
            rng.range(0, 500_000)
        } else {
            rng.range(0, 13_000)
        };
        sim.run_for(pause)?;
        match leader {
            Some(l) if rng.chance(0.8) => sim.crash(l),
            Some(_) => sim.crash(random(&mut rng)),
            None if rng.chance(0.2) => sim.crash(random(&mut rng)),
            None => {}
        }
        if rng.chance(0.3) {
            sim.restart(random(&mut rng));
        }
        while ids.iter().filter(|&&id| sim.is_up(id)).count() < 3 {
            sim.restart(random(&mut rng));
        }
    }
    let before = sim.acked().len();
    settle(&mut sim, 100 * e)?;
    // Then the cluster still works: one more entry commits everywhere.
    let leader = sim
        .run_until_leader(20 * e)?
        .ok_or("no leader after settling")?;
    sim.propose(leader, b"last")?;
    ensure!(
        sim.run_until_agreement(20 * e)?,
        "no agreement on a last entry\n{}",
        statuses(&sim)
    );
    check_acked(&sim)?;
    ensure!(
        sim.acked().last().is_some_and(|a| a.data == b"last"),
        "the last entry was not acknowledged"
    );
    ensure!(
        before >= 10,
        "only {before} entries were ever acknowledged: the run tested little"
    );
    Ok(())
}

#[test]
fn figure8_leader_crashes_reliable_network() {
    for_seeds("figure8_reliable", 40, |seed| {
        figure8(seed, LinkConfig::default(), false)
    });
}

#[test]
fn figure8_leader_crashes_lossy_network() {
    for_seeds("figure8_lossy", 40, |seed| {
        figure8(seed, LinkConfig::unreliable(0.1), false)
    });
}

#[test]
fn figure8_leader_crashes_lossy_network_long_reordering() {
    for_seeds("figure8_long_reordering", 40, |seed| {
        figure8(
            seed,
            LinkConfig::unreliable(0.1).with_long_delays(0.1, 2_000_000),
            false,
        )
    });
}

/// Figure 8 with leaders that sync their log off the event loop (`advance_unsynced`, then
/// `persisted`, as raft-std does): a leader's entries count for commitment only once durable,
/// and crashes (often during a slow sync, on odd seeds) lose what was written but not synced.
#[test]
fn figure8_leader_crashes_with_deferred_leader_syncs() {
    for_seeds("figure8_deferred_sync", 40, |seed| {
        figure8(seed, LinkConfig::default(), true)
    });
}

#[test]
fn figure8_leader_crashes_lossy_network_with_deferred_leader_syncs() {
    for_seeds("figure8_deferred_sync_lossy", 40, |seed| {
        figure8(seed, LinkConfig::unreliable(0.1), true)
    });
}

/// Random crashes, restarts, partitions into random groups and lossy links, with clients
/// proposing throughout. At the end everything a client saw committed is in the final log and
/// in every node's applied state machine. With `snapshots`, nodes snapshot every few entries
/// and compact their logs, so that returning nodes are caught up by snapshots, on links that
/// also reorder messages by up to half a second.
fn churn(seed: u64, snapshots: bool) -> Outcome {
    let size = if seed.is_multiple_of(2) { 5 } else { 3 };
    let mut cfg = SimConfig::new(size, seed);
    // Every third seed a slow disk, so crashes often land during a write.
    if seed % 3 == 2 {
        cfg.disk_min_us = 1_000;
        cfg.disk_max_us = 10_000;
    }
    if snapshots {
        cfg.snapshot_every = Some(1 + seed % 8);
        cfg.snapshot_bytes = 2048 + (seed % 5) as usize * 1000;
        cfg.max_snapshot_chunk = 512;
    }
    let mut sim = Sim::new(cfg);
    let e = election_us(&sim);
    let mut rng = SimRng::new(seed ^ 0xC4_0A2);
    for round in 0..150u64 {
        for k in 0..rng.range(0, 4) {
            let _ = sim.propose_to_leader(format!("c{round}-{k}").as_bytes());
        }
        let id = n(rng.range(1, size));
        match rng.range(0, 9) {
            0 => sim.crash(id),
            1 | 2 => sim.restart(id),
            3 => sim.isolate(id),
            4 => {
                let mut groups: Vec<Vec<NodeId>> = vec![Vec::new(); 2];
                for &m in sim.ids() {
                    groups[rng.range(0, 1) as usize].push(m);
                }
                let refs: Vec<&[NodeId]> = groups.iter().map(|g| g.as_slice()).collect();
                sim.partition(&refs);
            }
            5 | 6 => sim.heal(),
            7 => {
                let link = LinkConfig::unreliable(rng.range(0, 30) as f64 / 100.0);
                sim.set_network(if snapshots {
                    link.with_long_delays(0.05, 500_000)
                } else {
                    link
                });
            }
            _ => {}
        }
        sim.run_for(rng.range(1_000, 300_000))?;
    }
    settle(&mut sim, 100 * e)?;
    ensure!(
        sim.acked().len() >= 5,
        "only {} entries acknowledged: the schedule tested little",
        sim.acked().len()
    );
    Ok(())
}

/// Figure 8 with snapshots every few entries and compaction: crashed leaders come back behind
/// the others' compacted logs and are caught up by snapshots, some of which a crash
/// interrupts; deferred leader syncs on even seeds.
#[test]
fn figure8_leader_crashes_with_snapshots_and_compaction() {
    for_seeds("figure8_snapshots", 40, |seed| {
        let mut cfg = SimConfig::new(5, seed);
        cfg.async_leader_persist = seed.is_multiple_of(2);
        cfg.snapshot_every = Some(1 + seed % 5);
        cfg.snapshot_bytes = 3000;
        cfg.max_snapshot_chunk = 1024;
        figure8_with(cfg, LinkConfig::unreliable(0.05))
    });
}

#[test]
fn churn_acknowledged_entries_survive() {
    for_seeds("churn_acknowledged_entries_survive", 150, |seed| {
        churn(seed, false)
    });
}

#[test]
fn churn_with_snapshots_and_long_reordering_acknowledged_entries_survive() {
    for_seeds("churn_with_snapshots", 150, |seed| churn(seed, true));
}
