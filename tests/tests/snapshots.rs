//! Snapshots (Raft §7, thesis §5): a follower that was down while the others compacted their
//! logs is caught up by a snapshot sent in chunks, over a lossy network and while it crashes
//! mid-install; whole clusters restart from their snapshots; and with automatic snapshots the
//! log each node holds stays bounded however long the cluster runs. The simulator checks after
//! every event that a state machine restored from a snapshot at `i` is exactly the state every
//! node had after applying through `i`.

use raft_core::{Index, NodeId, Storage};
use raft_sim::{LinkConfig, Sim, SimConfig, SimRng};
use tickraft_tests::{
    check_acked, election_us, ensure, for_seeds, settle, statuses, tail, Outcome,
};

/// Snapshots every 20 entries, of 16 KiB, in chunks of 1 or 2 KiB (8 to 16 chunks).
fn snapshotting(nodes: u64, seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.snapshot_every = Some(20);
    cfg.snapshot_bytes = 16 * 1024;
    cfg.max_snapshot_chunk = if seed.is_multiple_of(2) { 2048 } else { 1024 };
    cfg
}

/// Proposes `count` entries at whoever leads, `batch` at a time, until all are acknowledged.
fn write(sim: &mut Sim, tag: &str, count: u64, batch: u64) -> Outcome {
    let e = election_us(sim);
    let target = sim.acked().len() + count as usize;
    let mut k = 0;
    while sim.acked().len() < target {
        let before = sim.now();
        for _ in 0..batch.min(target as u64 - sim.acked().len() as u64) {
            if sim
                .propose_to_leader(format!("{tag}{k}").as_bytes())
                .is_some()
            {
                k += 1;
            }
        }
        sim.run_for(20_000)?;
        ensure!(
            sim.now() - before < 200 * e,
            "writes stalled\n{}{}",
            statuses(sim),
            tail(sim, 30)
        );
        // Lost proposals (a leader change) are made up for by the next rounds.
        if k > 4 * count + 100 {
            return Err(format!("{k} proposals for {count} acknowledged writes").into());
        }
    }
    Ok(())
}

/// The number of snapshot chunks sent by every live node, and of snapshots installed.
fn snapshot_counts(sim: &Sim) -> (u64, u64) {
    sim.ids()
        .iter()
        .filter_map(|&id| sim.node(id))
        .map(|n| {
            let c = n.counters();
            (c.snapshot_chunks_sent, c.snapshots_installed)
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// A follower is down while 100 entries commit and every other node compacts past what it
/// holds; it restarts on a network losing `loss` of the messages, and crashes `crashes` times
/// in the middle of receiving the snapshot. It ends with exactly the others' state, restored
/// from a snapshot sent in several chunks.
fn follower_catches_up_by_snapshot(seed: u64, loss: f64, crashes: u32) -> Outcome {
    let mut sim = Sim::new(snapshotting(3, seed));
    let e = election_us(&sim);
    let leader = sim.run_until_leader(20 * e)?.ok_or("no leader")?;
    let lagging = sim
        .ids()
        .iter()
        .copied()
        .find(|&i| i != leader)
        .ok_or("no follower")?;
    write(&mut sim, "a", 5, 5)?;
    sim.crash(lagging);
    write(&mut sim, "b", 100, 5)?;
    let held = sim.disk(lagging).map(|d| d.last_index()).ok_or("no disk")?;
    let leader = sim.leader().ok_or("no leader")?;
    let first = sim.disk(leader).map(|d| d.first_index()).ok_or("no disk")?;
    ensure!(
        first > held.next(),
        "the leader did not compact past the follower's log (first {first}, follower at {held})"
    );
    sim.set_network(LinkConfig::unreliable(loss));
    sim.restart(lagging);
    sim.note(format!(
        "n{lagging} restarts; the leader's log starts at {first}"
    ));
    for crash in 0..crashes {
        // Until a snapshot is partly written, then crash: the partial snapshot is lost.
        let partial = |s: &Sim| {
            s.disk(lagging)
                .and_then(|d| d.receiving())
                .is_some_and(|(_, got, len)| got > 0 && got < len)
        };
        let caught = sim.run_until(50 * e, partial)?;
        ensure!(
            caught,
            "crash {crash}: n{lagging} never received part of a snapshot\n{}{}",
            statuses(&sim),
            tail(&sim, 30)
        );
        sim.crash(lagging);
        ensure!(
            sim.disk(lagging).is_some_and(|d| d.receiving().is_none()),
            "a partly received snapshot survived a crash"
        );
        sim.run_for(e / 2)?;
        sim.restart(lagging);
    }
    let ok = sim.run_until(200 * e, |s| {
        s.restored_from(lagging) > Index::ZERO && s.in_agreement()
    })?;
    ensure!(
        ok,
        "n{lagging} did not catch up from a snapshot\n{}{}",
        statuses(&sim),
        tail(&sim, 40)
    );
    let node = sim.node(lagging).ok_or("down")?;
    ensure!(
        node.counters().snapshots_installed > 0,
        "caught up without installing a snapshot"
    );
    let (chunks, _) = snapshot_counts(&sim);
    let per_snapshot = (sim.config().snapshot_bytes / sim.config().max_snapshot_chunk) as u64;
    ensure!(
        chunks >= per_snapshot && per_snapshot > 1,
        "{chunks} chunks sent; one snapshot takes {per_snapshot}"
    );
    let sm = sim.state_machine(lagging).ok_or("down")?;
    ensure!(
        sim.state_at(sm.index) == Some(sm),
        "n{lagging}'s state {sm:?} is not the committed one"
    );
    settle(&mut sim, 100 * e)?;
    write(&mut sim, "c", 5, 5)?;
    ensure!(sim.run_until_agreement(20 * e)?, "no agreement at the end");
    check_acked(&sim)
}

#[test]
fn follower_down_during_compaction_is_sent_the_snapshot() {
    for_seeds("snapshot_to_lagging_follower", 30, |seed| {
        follower_catches_up_by_snapshot(seed, 0.0, 0)
    });
}

#[test]
fn snapshot_install_survives_ten_percent_message_loss() {
    for_seeds("snapshot_with_loss", 30, |seed| {
        follower_catches_up_by_snapshot(seed, 0.1, 0)
    });
}

#[test]
fn follower_crashing_mid_install_starts_over_and_installs() {
    for_seeds("snapshot_with_crashes_mid_install", 30, |seed| {
        follower_catches_up_by_snapshot(seed, if seed.is_multiple_of(3) { 0.05 } else { 0.0 }, 3)
    });
}

/// Every node crashes at once, again and again, with writes going on in between; each
/// restarts from its snapshot and the rest of its log. Across each restart a node's state
/// machine starts at the snapshot it last took or installed (never an older one), its commit
/// index is at least that and at least what it had persisted, and the cluster goes on
/// committing.
#[test]
fn whole_cluster_restarts_from_snapshots_and_keeps_committing() {
    for_seeds("cluster_restarts_from_snapshots", 30, |seed| -> Outcome {
        let size = if seed.is_multiple_of(2) { 3 } else { 5 };
        let mut cfg = snapshotting(size, seed);
        cfg.snapshot_every = Some(10);
        if seed.is_multiple_of(3) {
            cfg.disk_min_us = 1_000;
            cfg.disk_max_us = 5_000;
        }
        let mut sim = Sim::new(cfg);
        let e = election_us(&sim);
        let mut rng = SimRng::new(seed ^ 0x5a4);
        let ids: Vec<NodeId> = sim.ids().to_vec();
        for round in 0..8u64 {
            sim.run_until_leader(50 * e)?.ok_or("no leader")?;
            let before = sim.committed().len();
            write(&mut sim, &format!("r{round}-"), rng.range(5, 40), 4)?;
            ensure!(
                sim.committed().len() > before,
                "round {round} committed nothing"
            );
            // Some time for the snapshots to be taken, or none: crash mid-stream too.
            sim.run_for(rng.range(0, 30_000))?;
            let mut before: Vec<(Index, Index)> = Vec::new();
            for &id in &ids {
                sim.crash(id);
                let disk = sim.disk(id).ok_or("no disk")?;
                let snap = disk.latest_snapshot().map_or(Index::ZERO, |s| s.meta.index);
                before.push((snap, disk.hard_state().commit));
            }
            sim.note(format!("round {round}: everyone crashed"));
            sim.run_for(rng.range(0, 2 * e))?;
            for (k, &id) in ids.iter().enumerate() {
                sim.restart(id);
                let st = sim.status(id).ok_or("did not restart")?;
                let (snap, commit) = before[k];
                ensure!(
                    sim.restored_from(id) == snap,
                    "round {round}: n{id} restored from {} after taking a snapshot at {snap}",
                    sim.restored_from(id)
                );
                ensure!(
                    st.commit >= snap && st.commit >= commit && st.applied >= snap,
                    "round {round}: n{id} restarted with commit {} applied {} (snapshot {snap}, persisted commit {commit})",
                    st.commit,
                    st.applied
                );
            }
        }
        ensure!(
            ids.iter().any(|&id| sim.restored_from(id) > Index::ZERO),
            "no node ever restarted from a snapshot"
        );
        settle(&mut sim, 100 * e)?;
        Ok(())
    });
}

/// A long workload (2000 writes) with a snapshot every 50 entries: no disk ever holds more
/// than `50 + 2 * 32` entries, checked after every event. Why that slack: a node snapshots
/// (and compacts) as soon as a `Ready` leaves it 50 or more entries past its last snapshot, so
/// right after a `Ready` it holds fewer than 50 applied entries past it, plus what that
/// `Ready` applied, plus its entries not yet applied. The client keeps at most 32 writes
/// outstanding, so the entries not yet applied (uncommitted, or committed and not yet handed
/// out) and those applied by one `Ready` are at most 32 each.
#[test]
fn log_stays_bounded_by_snapshot_interval_on_a_long_run() {
    for_seeds("log_stays_bounded", 6, |seed| -> Outcome {
        const EVERY: u64 = 50;
        const WINDOW: u64 = 32;
        let mut cfg = snapshotting(3, seed);
        cfg.snapshot_every = Some(EVERY);
        let mut sim = Sim::new(cfg);
        let e = election_us(&sim);
        sim.run_until_leader(20 * e)?.ok_or("no leader")?;
        let bound = (EVERY + 2 * WINDOW) as usize;
        let mut most = 0usize;
        let mut k = 0u64;
        while sim.acked().len() < 2000 {
            let leader = sim.leader();
            let outstanding = leader
                .and_then(|l| sim.status(l))
                .map_or(WINDOW, |st| st.last_index.0 - sim.committed().len() as u64);
            if outstanding < WINDOW && sim.propose_to_leader(format!("w{k}").as_bytes()).is_some() {
                k += 1;
            }
            let over = sim.run_until(2_000, |s| {
                s.ids()
                    .iter()
                    .any(|&id| s.disk(id).is_some_and(|d| d.len() > bound))
            })?;
            for &id in sim.ids() {
                most = most.max(sim.disk(id).map_or(0, |d| d.len()));
            }
            ensure!(
                !over,
                "a disk holds more than {bound} entries\n{}{}",
                statuses(&sim),
                tail(&sim, 30)
            );
            ensure!(sim.now() < 100_000 * e, "the workload stalled");
        }
        ensure!(
            most > EVERY as usize / 2,
            "at most {most} entries held: the bound was never approached"
        );
        ensure!(sim.run_until_agreement(20 * e)?, "no agreement at the end");
        check_acked(&sim)
    });
}
