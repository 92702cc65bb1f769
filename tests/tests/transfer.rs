//! Leadership transfer (thesis §3.10): to an up-to-date voter it completes within one
//! election timeout, with proposals refused meanwhile; to a lagging voter the leader first
//! catches it up; a transfer that cannot complete (the target is cut off) is aborted within an
//! election timeout, and the leader takes proposals again.

use raft_core::{NodeId, ProposeError, Role};
use raft_sim::{Sim, SimConfig};
use tickraft_tests::{check_acked, election_us, ensure, for_seeds, statuses, tail, Outcome};

/// A settled cluster of `size`, its leader, and a follower to hand over to.
fn settled(size: u64, seed: u64) -> Result<(Sim, NodeId, NodeId), Box<dyn std::error::Error>> {
    let mut sim = Sim::new(SimConfig::new(size, seed));
    let e = election_us(&sim);
    let leader = sim.run_until_leader(20 * e)?.ok_or("no leader")?;
    sim.propose(leader, b"w")?;
    ensure!(sim.run_until_agreement(20 * e)?, "no agreement");
    let leader = sim.leader().ok_or("no leader")?;
    let others: Vec<NodeId> = sim.ids().iter().copied().filter(|&i| i != leader).collect();
    let target = others[seed as usize % others.len()];
    Ok((sim, leader, target))
}

#[test]
fn transfer_to_an_up_to_date_voter_completes_within_an_election_timeout() {
    for_seeds("transfer_up_to_date", 50, |seed| -> Outcome {
        let (mut sim, leader, target) = settled(if seed.is_multiple_of(2) { 3 } else { 5 }, seed)?;
        let e = election_us(&sim);
        let t0 = sim.now();
        sim.transfer_leadership(leader, target)?;
        ensure!(
            sim.status(leader).and_then(|s| s.transferee) == Some(target),
            "the leader does not report the transfer"
        );
        ensure!(
            sim.propose(leader, b"during") == Err(ProposeError::Transferring),
            "a proposal during the transfer was not refused with Transferring"
        );
        let done = sim.run_until(e, |s| s.leader() == Some(target))?;
        ensure!(
            done,
            "n{target} did not take over within an election timeout\n{}{}",
            statuses(&sim),
            tail(&sim, 30)
        );
        let took = sim.now() - t0;
        // The old leader hears of the new term with the target's vote request or its first
        // heartbeat, whichever arrives first.
        let stepped_down = sim.run_until(e, |s| {
            s.status(leader).is_some_and(|st| st.role == Role::Follower)
        })?;
        let old = sim.status(leader).ok_or("old leader down")?;
        ensure!(stepped_down, "n{leader} is {:?}", old.role);
        let c = sim.node(leader).map(|n| n.counters()).ok_or("down")?;
        ensure!(
            c.transfers_started == 1 && c.transfers_aborted == 0,
            "{c:?}"
        );
        // The new leader serves, promptly: no election timeout was waited out.
        ensure!(took < e, "the transfer took {took}us");
        sim.propose(target, b"after")?;
        ensure!(sim.run_until_agreement(20 * e)?, "no agreement after");
        ensure!(
            sim.acked().last().is_some_and(|a| a.data == b"after"),
            "the new leader's write was not acknowledged"
        );
        check_acked(&sim)
    });
}

/// The target misses 20 entries (its link from the leader is cut); the transfer starts, the
/// link heals, and the leader catches the target up before handing over, all within an
/// election timeout of the start.
#[test]
fn transfer_to_a_lagging_voter_catches_it_up_first() {
    for_seeds("transfer_lagging", 50, |seed| -> Outcome {
        let (mut sim, leader, target) = settled(3, seed)?;
        let e = election_us(&sim);
        sim.cut(leader, target);
        for k in 0..20 {
            sim.propose(leader, format!("lag{k}").as_bytes())?;
        }
        let n = sim.acked().len();
        ensure!(
            sim.run_until(20 * e, |s| s.acked().len() == n + 20)?,
            "the writes did not commit without the target"
        );
        let lag = sim.status(leader).map(|s| s.last_index).ok_or("down")?;
        ensure!(
            sim.status(target).is_some_and(|s| s.last_index < lag),
            "the target is not behind"
        );
        let t0 = sim.now();
        sim.transfer_leadership(leader, target)?;
        ensure!(
            sim.propose(leader, b"during") == Err(ProposeError::Transferring),
            "a proposal during the transfer was not refused"
        );
        sim.run_ticks(1)?;
        sim.heal();
        let done = sim.run_until(e, |s| s.leader() == Some(target))?;
        ensure!(
            done,
            "n{target} did not take over within an election timeout of the start\n{}{}",
            statuses(&sim),
            tail(&sim, 40)
        );
        ensure!(sim.now() - t0 <= e, "took {}us", sim.now() - t0);
        let aborted = sim.node(leader).map(|n| n.counters().transfers_aborted);
        ensure!(aborted == Some(0), "the transfer was aborted");
        sim.propose(target, b"after")?;
        ensure!(sim.run_until_agreement(20 * e)?, "no agreement after");
        check_acked(&sim)
    });
}

/// The target is cut off: no TimeoutNow reaches it. Within an election timeout the leader
/// gives up, still leads, and takes proposals again; the cluster never changed leader.
#[test]
fn transfer_to_an_isolated_voter_aborts_within_an_election_timeout() {
    for_seeds("transfer_aborts", 50, |seed| -> Outcome {
        let (mut sim, leader, target) = settled(if seed.is_multiple_of(2) { 3 } else { 5 }, seed)?;
        let e = election_us(&sim);
        let term = sim.status(leader).map(|s| s.term);
        sim.isolate(target);
        sim.transfer_leadership(leader, target)?;
        // Proposals are refused until the abort, and accepted right after it.
        let t0 = sim.now();
        let aborted = sim.run_until(e + sim.config().tick_us, |s| {
            s.status(leader).is_some_and(|st| st.transferee.is_none())
        })?;
        ensure!(
            aborted,
            "the transfer was not aborted within an election timeout\n{}",
            statuses(&sim)
        );
        ensure!(
            sim.now() - t0 >= e - sim.config().tick_us,
            "aborted after only {}us",
            sim.now() - t0
        );
        let st = sim.status(leader).ok_or("down")?;
        ensure!(
            st.role == Role::Leader && Some(st.term) == term,
            "n{leader} lost leadership: {st:?}"
        );
        let c = sim.node(leader).map(|n| n.counters()).ok_or("down")?;
        ensure!(c.transfers_aborted == 1, "{c:?}");
        sim.propose(leader, b"after abort")?;
        sim.heal();
        ensure!(sim.run_until_agreement(20 * e)?, "no agreement after");
        ensure!(
            sim.acked().last().is_some_and(|a| a.data == b"after abort"),
            "the write after the abort was not acknowledged"
        );
        ensure!(
            sim.leaders_by_term().len() == 1,
            "leadership changed: {:?}",
            sim.leaders_by_term()
        );
        check_acked(&sim)
    });
}
