//! Message economy in a 3-node cluster on the default simulated network (after MIT 6.824's
//! TestCount). Counts are of messages put on the network, each direction separately
//! ([`Sim::total_messages`]); 6.824 counts RPCs, a request and its reply together.

use raft_core::NodeId;
use raft_sim::{Sim, SimConfig};
use tickraft_tests::{ensure, for_seeds, statuses, Outcome};

type Failure = Box<dyn std::error::Error>;

/// Runs until every node follows `leader` (the election is over for everyone).
fn until_all_follow(sim: &mut Sim, leader: NodeId) -> Outcome {
    let known = sim.run_until(10_000_000, |s| {
        s.ids()
            .iter()
            .all(|&id| s.status(id).is_some_and(|st| st.leader == Some(leader)))
    })?;
    ensure!(known, "not everyone learned the leader\n{}", statuses(sim));
    Ok(())
}

/// Elects a leader and lets its no-op commit everywhere; returns the leader.
fn settled_cluster(seed: u64) -> Result<(Sim, NodeId), Failure> {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    let leader = sim.run_until_leader(10_000_000)?.ok_or("no leader")?;
    until_all_follow(&mut sim, leader)?;
    ensure!(
        sim.run_until_agreement(10_000_000)?,
        "no agreement on the no-op"
    );
    Ok((sim, leader))
}

/// Electing costs a pre-vote and a vote round: 2 requests and 2 answers each, plus the new
/// leader's first append to each follower, which is how they learn who leads (about 10). The
/// count stops once every follower knows the leader. A split vote repeats the rounds for every
/// campaigner (at most 3 x 8 messages per split term); the 30 budget is checked for elections
/// that did not split, and splits are counted.
#[test]
fn election_takes_at_most_30_messages() {
    let (mut runs, mut splits) = (0u64, 0u64);
    for_seeds("election_messages", 200, |seed| -> Outcome {
        let mut sim = Sim::new(SimConfig::new(3, seed));
        let leader = sim.run_until_leader(10_000_000)?.ok_or("no leader")?;
        until_all_follow(&mut sim, leader)?;
        let total = sim.total_messages();
        let split_terms = sim.status(leader).map_or(0, |s| s.term.0 - 1);
        let budget = 30 + 24 * split_terms;
        ensure!(
            total <= budget,
            "{total} messages to elect n{leader} ({split_terms} split terms, budget {budget}): {:?}",
            sim.messages_sent()
        );
        runs += 1;
        splits += u64::from(split_terms > 0);
        Ok(())
    });
    eprintln!("election_messages: {splits} of {runs} elections split");
}

/// Ten entries proposed together at the leader go out in one or two appends per follower
/// (the first proposal starts a disk write, the other nine follow in the next `Ready`); the
/// count runs until every node has applied all ten, so it includes telling followers the
/// commit index. Typically 12 messages; reordered appends cost a few more.
#[test]
fn ten_entries_proposed_together_commit_in_at_most_42_messages() {
    for_seeds("batch_commit_messages", 200, |seed| -> Outcome {
        let (mut sim, leader) = settled_cluster(seed)?;
        let start = sim.total_messages();
        let before = sim.committed().len();
        for k in 0..10 {
            sim.propose(leader, format!("e{k}").as_bytes())?;
        }
        let done = sim.run_until(10_000_000, |s| {
            s.in_agreement() && s.committed().len() == before + 10
        })?;
        ensure!(
            done,
            "ten entries not applied everywhere\n{}",
            statuses(&sim)
        );
        ensure!(
            sim.acked().len() == 10,
            "only {} acknowledged",
            sim.acked().len()
        );
        let used = sim.total_messages() - start;
        ensure!(
            used <= 42,
            "{used} messages to commit 10 entries proposed together: {:?}",
            sim.messages_sent()
        );
        Ok(())
    });
}

/// One entry at a time, each proposed once the previous one is applied on every node. Each
/// costs an append and its answer per follower to commit (4), and then one more exchange per
/// follower (a heartbeat or append and its answer, 4) to tell the followers it is committed,
/// since nothing else would: 8 per entry, 80 for ten. That is over 42 messages, but within
/// 6.824's 42 RPCs (84 messages, counting a request and its reply as one RPC as 6.824 does),
/// and it is not heartbeat overhead: with heartbeats every tick or every fifth the count is the
/// same, because an entry commits in a few milliseconds, well within one 10 ms tick.
#[test]
fn ten_entries_one_at_a_time_commit_in_at_most_42_round_trips() {
    for_seeds("one_at_a_time_commit_messages", 100, |seed| -> Outcome {
        for heartbeat_ticks in [1, 5] {
            let mut cfg = SimConfig::new(3, seed);
            cfg.heartbeat_ticks = heartbeat_ticks;
            let mut sim = Sim::new(cfg);
            let leader = sim.run_until_leader(10_000_000)?.ok_or("no leader")?;
            until_all_follow(&mut sim, leader)?;
            ensure!(
                sim.run_until_agreement(10_000_000)?,
                "no agreement on the no-op"
            );
            let start = sim.total_messages();
            for k in 0..10 {
                let want = sim.committed().len() + 1;
                sim.propose(leader, format!("e{k}").as_bytes())?;
                let done = sim.run_until(10_000_000, |s| {
                    s.in_agreement() && s.committed().len() == want
                })?;
                ensure!(done, "entry {k} not applied everywhere\n{}", statuses(&sim));
            }
            let used = sim.total_messages() - start;
            ensure!(
                used <= 84,
                "heartbeat every {heartbeat_ticks} ticks: {used} messages (over 42 round trips) \
                 to commit 10 entries one at a time: {:?}",
                sim.messages_sent()
            );
        }
        Ok(())
    });
}
