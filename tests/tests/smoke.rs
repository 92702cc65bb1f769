//! Quick randomized churn used while developing; the full suites live beside it.

use raft_sim::{LinkConfig, Sim, SimConfig};
use tickraft_tests::{for_seeds, n};

#[test]
fn churn_smoke() {
    for_seeds("churn_smoke", 40, |seed| -> Result<(), String> {
        let mut sim = Sim::new(SimConfig::new(5, seed));
        sim.set_network(LinkConfig::unreliable(0.1).with_long_delays(0.05, 300_000));
        let mut rng = raft_sim::SimRng::new(seed);
        for round in 0..60u64 {
            for _ in 0..rng.range(0, 5) {
                let _ = sim.propose_to_leader(format!("r{round}").as_bytes());
            }
            match rng.range(0, 6) {
                0 => sim.crash(n(rng.range(1, 5))),
                1 => sim.restart(n(rng.range(1, 5))),
                2 => {
                    let a = n(rng.range(1, 5));
                    sim.isolate(a);
                }
                3 => sim.heal(),
                _ => {}
            }
            sim.run_for(rng.range(10_000, 400_000))
                .map_err(|v| v.to_string())?;
        }
        sim.heal();
        sim.set_network(LinkConfig::default());
        for id in 1..=5 {
            sim.restart(n(id));
        }
        let ok = sim
            .run_until_agreement(30_000_000)
            .map_err(|v| v.to_string())?;
        if !ok {
            return Err(format!(
                "no agreement; statuses: {:?}",
                (1..=5).map(|i| sim.status(n(i))).collect::<Vec<_>>()
            ));
        }
        for a in sim.acked() {
            if !sim.committed().contains(a) {
                return Err(format!("acked entry {a:?} lost"));
            }
        }
        Ok(())
    });
}
