//! Property tests over random fault schedules: proptest generates a cluster size, a seed and a
//! list of faults (crash, restart, isolate, partition, heal, propose, set loss, run) applied to
//! a simulated cluster; the simulator checks safety after every event. After the schedule the
//! network heals and every node restarts: the cluster must agree, and every entry a client saw
//! committed must have survived, in every node's state machine.
//!
//! A failing case is shrunk to a short schedule and printed (with its size and seed), and
//! proptest saves it in a `proptest-regressions` file that replays it first on the next run.
//! 256 cases run by default, from a fixed seed; set `PROPTEST_CASES=<n>` for a given number,
//! `TICKRAFT_SOAK=<k>` for 256 * k, and `PROPTEST_RNG_SEED=<n>` to explore other cases.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use raft_core::NodeId;
use raft_sim::{LinkConfig, Sim, SimConfig};
use tickraft_tests::{election_us, n, settle, soak, Outcome};

/// One step of a schedule. Node numbers are taken modulo the cluster size.
#[derive(Clone, Debug)]
enum Op {
    Crash(u64),
    Restart(u64),
    Isolate(u64),
    /// The group of each node, by id order: nodes with the same number can talk.
    Partition(Vec<u8>),
    Heal,
    /// Propose this many entries at the leader, if there is one.
    Propose(u8),
    /// Set every link to lose this percentage of messages (with the unreliable profile's
    /// duplication and reordering).
    SetLoss(u8),
    /// Run this many milliseconds of virtual time.
    Run(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..9u64).prop_map(Op::Crash),
        2 => (0..9u64).prop_map(Op::Restart),
        1 => (0..9u64).prop_map(Op::Isolate),
        1 => prop::collection::vec(0..3u8, 5).prop_map(Op::Partition),
        2 => Just(Op::Heal),
        3 => (1..6u8).prop_map(Op::Propose),
        1 => (0..40u8).prop_map(Op::SetLoss),
        6 => (1..800u32).prop_map(Op::Run),
    ]
}

fn run_schedule(size: u64, seed: u64, disk_max_us: u64, ops: &[Op]) -> Outcome {
    let mut cfg = SimConfig::new(size, seed);
    cfg.disk_max_us = disk_max_us;
    let mut sim = Sim::new(cfg);
    let node = |k: u64| n(k % size + 1);
    let mut proposed = 0u64;
    for (step, o) in ops.iter().enumerate() {
        sim.note(format!("step {step}: {o:?}"));
        match o {
            Op::Crash(k) => sim.crash(node(*k)),
            Op::Restart(k) => sim.restart(node(*k)),
            Op::Isolate(k) => sim.isolate(node(*k)),
            Op::Partition(groups) => {
                let mut split: Vec<Vec<NodeId>> = vec![Vec::new(); 3];
                for (&id, &g) in sim.ids().iter().zip(groups) {
                    split[usize::from(g)].push(id);
                }
                let refs: Vec<&[NodeId]> = split.iter().map(|g| g.as_slice()).collect();
                sim.partition(&refs);
            }
            Op::Heal => sim.heal(),
            Op::Propose(count) => {
                for _ in 0..*count {
                    proposed += 1;
                    let _ = sim.propose_to_leader(format!("p{proposed}").as_bytes());
                }
            }
            Op::SetLoss(pct) => sim.set_network(LinkConfig::unreliable(f64::from(*pct) / 100.0)),
            Op::Run(ms) => sim.run_for(u64::from(*ms) * 1000)?,
        }
    }
    let e = election_us(&sim);
    settle(&mut sim, 100 * e)?;
    // And it still serves: a last proposal commits everywhere.
    let leader = sim
        .run_until_leader(20 * e)?
        .ok_or("no leader after settling")?;
    sim.propose(leader, b"last")?;
    let ok = sim.run_until(20 * e, |s| {
        s.in_agreement() && s.acked().last().is_some_and(|a| a.data == b"last")
    })?;
    if !ok {
        return Err("a last proposal did not commit everywhere".into());
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let mut cfg = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        cfg.cases = 256 * soak() as u32;
    }
    // The same cases every run unless `PROPTEST_RNG_SEED` names another seed (for soaks).
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        cfg.rng_seed = proptest::test_runner::RngSeed::Fixed(0x5c4e_d01e);
    }
    cfg
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_fault_schedules_keep_acknowledged_entries(
        size in prop_oneof![Just(3u64), Just(5u64)],
        seed in any::<u64>(),
        // Up to 10 ms per disk write: slow disks make crashes land during writes.
        disk_max_us in prop_oneof![Just(1_000u64), Just(10_000u64)],
        ops in prop::collection::vec(op(), 1..50),
    ) {
        run_schedule(size, seed, disk_max_us, &ops).map_err(|e| {
            TestCaseError::fail(format!("size {size}, seed {seed}, disk {disk_max_us}us: {e}"))
        })?;
    }
}
