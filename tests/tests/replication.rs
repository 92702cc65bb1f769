//! Log replication scenarios (Raft §5.3, §5.4): commitment needs a majority, a deposed
//! leader's uncommitted entries are overwritten, and divergent logs are repaired quickly.

use std::collections::BTreeSet;

use raft_core::{Entry, EntryKind, HardState, Index, NodeId, Role, Term};
use raft_sim::{EventKind, Sim, SimConfig, SimStorage};
use tickraft_tests::{
    check_acked, election_us, ensure, for_seeds, n, run_until_leader_among, statuses, tail, Outcome,
};

type Failure = Box<dyn std::error::Error>;

fn elect(sim: &mut Sim) -> Result<NodeId, Failure> {
    let limit = 10 * election_us(sim);
    sim.run_until_leader(limit)?
        .ok_or_else(|| format!("no leader within {limit}us\n{}", statuses(sim)).into())
}

/// Runs until `count` acknowledged entries, failing after `max_us`.
fn run_until_acked(sim: &mut Sim, count: usize, max_us: u64) -> Outcome {
    let done = sim.run_until(max_us, |s| s.acked().len() >= count)?;
    ensure!(
        done,
        "only {} of {count} proposals committed within {max_us}us\n{}{}",
        sim.acked().len(),
        statuses(sim),
        tail(sim, 30)
    );
    Ok(())
}

fn payloads(sim: &Sim) -> BTreeSet<Vec<u8>> {
    sim.committed().iter().map(|e| e.data.clone()).collect()
}

#[test]
fn agreement_with_one_follower_down() {
    for_seeds("agreement_with_one_follower_down", 60, |seed| -> Outcome {
        for size in [3u64, 5] {
            let mut sim = Sim::new(SimConfig::new(size, seed));
            let e = election_us(&sim);
            let leader = elect(&mut sim)?;
            let down = sim
                .ids()
                .iter()
                .copied()
                .find(|&id| id != leader)
                .ok_or("no follower")?;
            sim.crash(down);
            for k in 0..10 {
                sim.propose(leader, format!("e{k}").as_bytes())?;
                sim.run_ticks(1)?;
            }
            run_until_acked(&mut sim, 10, 5 * e)?;
            ensure!(
                sim.leader() == Some(leader),
                "{size} nodes: leadership changed with only one follower down"
            );
            // The crashed follower catches up on restart.
            sim.restart(down);
            ensure!(
                sim.run_until_agreement(20 * e)?,
                "{size} nodes: no agreement after restart\n{}",
                statuses(&sim)
            );
            check_acked(&sim)?;
            ensure!(
                sim.applied(down).len() == sim.committed().len(),
                "restarted follower did not catch up"
            );
        }
        Ok(())
    });
}

#[test]
fn no_agreement_with_majority_down() {
    let (mut committed_later, mut overwritten) = (0, 0);
    for_seeds("no_agreement_with_majority_down", 60, |seed| -> Outcome {
        let mut sim = Sim::new(SimConfig::new(5, seed));
        let e = election_us(&sim);
        let leader = elect(&mut sim)?;
        sim.propose(leader, b"before")?;
        run_until_acked(&mut sim, 1, 5 * e)?;
        ensure!(sim.run_until_agreement(5 * e)?, "no agreement");
        let followers: Vec<NodeId> = sim.ids().iter().copied().filter(|&i| i != leader).collect();
        let down = &followers[..3];
        for &id in down {
            sim.crash(id);
        }
        let term = sim.status(leader).map(|s| s.term).unwrap_or_default();
        let mut proposed = Vec::new();
        for k in 0..5 {
            let data = format!("x{k}").into_bytes();
            let index = sim.propose(leader, &data)?;
            proposed.push((index, data));
        }
        let commit = sim.status(leader).map(|s| s.commit).unwrap_or_default();
        sim.run_for(2_000_000)?;
        ensure!(
            sim.acked().len() == 1,
            "{} proposals committed with only 2 of 5 up",
            sim.acked().len() - 1
        );
        let st = sim.status(leader).ok_or("leader vanished")?;
        ensure!(
            st.commit == commit,
            "leader advanced its commit to {} without a majority",
            st.commit
        );
        ensure!(
            st.role != Role::Leader,
            "leader without a quorum did not step down"
        );
        for &id in down {
            sim.restart(id);
        }
        let leader = elect(&mut sim)?;
        sim.propose(leader, b"after")?;
        ensure!(
            sim.run_until_agreement(20 * e)?,
            "no agreement once the majority is back\n{}",
            statuses(&sim)
        );
        check_acked(&sim)?;
        // Each proposal made without a majority is now either committed where it was
        // proposed, and acknowledged, or gone: overwritten by a later leader's entry, or cut
        // off the end of a log that a leader without it decided (all logs now agree).
        for (index, data) in &proposed {
            let at = sim.committed().get(index.0 as usize - 1);
            let acked = sim
                .acked()
                .iter()
                .any(|a| a.index == *index && a.term == term && a.data == *data);
            if at.is_some_and(|at| at.term == term && at.data == *data) {
                ensure!(acked, "committed proposal {index} not acknowledged");
                committed_later += 1;
            } else {
                ensure!(
                    at.is_none_or(|at| at.term > term),
                    "entry {index} replaced by an older term"
                );
                ensure!(!acked, "overwritten proposal {index} acknowledged");
                ensure!(
                    sim.committed().iter().all(|e| e.data != *data),
                    "lost proposal {index} committed elsewhere"
                );
                overwritten += 1;
            }
        }
        ensure!(
            sim.acked().iter().any(|a| a.data == b"after"),
            "new leader's proposal not committed"
        );
        Ok(())
    });
    eprintln!(
        "no_agreement_with_majority_down: {committed_later} proposals committed on return, \
         {overwritten} overwritten"
    );
    // Over many seeds both outcomes happen: the two nodes holding the entries can win the
    // next election, or three restarted nodes without them can.
    assert!(tickraft_tests::seeds(60).len() == 1 || (committed_later > 0 && overwritten > 0));
}

#[test]
fn partitioned_leader_uncommitted_entries_overwritten_on_rejoin() {
    for_seeds("partitioned_leader_overwritten", 60, |seed| -> Outcome {
        let mut sim = Sim::new(SimConfig::new(5, seed));
        let e = election_us(&sim);
        let old = elect(&mut sim)?;
        sim.propose(old, b"common")?;
        run_until_acked(&mut sim, 1, 5 * e)?;
        ensure!(sim.run_until_agreement(5 * e)?, "no agreement");

        sim.isolate(old);
        for k in 0..5 {
            sim.propose(old, format!("old{k}").as_bytes())?;
        }
        let rest: Vec<NodeId> = sim.ids().iter().copied().filter(|&i| i != old).collect();
        let new = run_until_leader_among(&mut sim, &rest, 10 * e)?
            .ok_or("the majority elected no one")?;
        for k in 0..5 {
            sim.propose(new, format!("new{k}").as_bytes())?;
        }
        run_until_acked(&mut sim, 6, 5 * e)?;
        // The old leader still holds its five entries, unreplicated.
        let held = (1..=20u64)
            .filter_map(|i| sim.node(old)?.log_entry(raft_core::Index(i)))
            .filter(|e| e.data.starts_with(b"old"))
            .count();
        ensure!(held == 5, "isolated leader holds {held} of its 5 proposals");

        sim.heal();
        ensure!(
            sim.run_until_agreement(20 * e)?,
            "no agreement after heal\n{}",
            statuses(&sim)
        );
        check_acked(&sim)?;
        let disk = sim.disk(old).ok_or("no disk")?;
        ensure!(
            disk.entries().iter().all(|e| !e.data.starts_with(b"old")),
            "the old leader kept its uncommitted entries"
        );
        ensure!(
            sim.applied(old) == sim.committed(),
            "the old leader's log is not the committed log"
        );
        let data = payloads(&sim);
        for k in 0..5 {
            ensure!(
                data.contains(format!("new{k}").as_bytes()),
                "the majority's entry new{k} is missing"
            );
            ensure!(
                !data.contains(format!("old{k}").as_bytes()),
                "the old leader's entry old{k} was committed"
            );
        }
        ensure!(
            sim.acked().iter().all(|a| !a.data.starts_with(b"old")),
            "an overwritten entry was acknowledged"
        );
        Ok(())
    });
}

/// Counts append rejections sent so far.
fn rejections(sim: &Sim) -> usize {
    sim.trace()
        .events()
        .filter(|e| {
            matches!(e.kind, EventKind::Send { msg, .. } if msg.kind == "AppendResponse" && msg.reject)
        })
        .count()
}

/// Proposes `count` entries at `leader` right away (before it can notice a lost quorum).
fn propose_burst(sim: &mut Sim, leader: NodeId, tag: &str, count: usize) -> Outcome {
    for k in 0..count {
        sim.propose(leader, format!("{tag}{k}").as_bytes())?;
    }
    Ok(())
}

/// The MIT 6.824 "backup" test: leaders are partitioned with 50 uncommitted entries each,
/// several times over, so that logs diverge by whole terms of 50 entries. Fast backtracking
/// (the follower's hint names the first index of the conflicting term) must repair each in a
/// few round trips, not one per entry.
#[test]
fn fast_backtracking_over_divergent_logs() {
    for_seeds("fast_backtracking", 30, |seed| -> Outcome {
        let mut cfg = SimConfig::new(5, seed);
        cfg.trace_keep = usize::MAX;
        let mut sim = Sim::new(cfg);
        let e = election_us(&sim);
        let l1 = elect(&mut sim)?;
        sim.propose(l1, b"start")?;
        ensure!(sim.run_until_agreement(10 * e)?, "no start agreement");
        let ids = sim.ids().to_vec();
        let others: Vec<NodeId> = ids.iter().copied().filter(|&i| i != l1).collect();

        // Leader 1 and one follower, cut off with 50 uncommitted entries.
        let (f1, rest) = (others[0], others[1..].to_vec());
        sim.partition(&[&[l1, f1], &rest]);
        propose_burst(&mut sim, l1, "a", 50)?;
        // The other three elect a leader and commit 50 entries of their own.
        let l2 =
            run_until_leader_among(&mut sim, &rest, 10 * e)?.ok_or("three nodes elected no one")?;
        let base = sim.acked().len();
        propose_burst(&mut sim, l2, "b", 50)?;
        run_until_acked(&mut sim, base + 50, 10 * e)?;

        // Leader 2 and one of its followers cut off with 50 uncommitted entries; the other
        // follower joins leader 1's old pair: a majority whose only up-to-date member must win.
        let other = rest
            .iter()
            .copied()
            .find(|&i| i != l2)
            .ok_or("no follower")?;
        let keep = rest
            .iter()
            .copied()
            .find(|&i| i != l2 && i != other)
            .ok_or("no follower")?;
        sim.partition(&[&[l2, keep], &[l1, f1, other]]);
        propose_burst(&mut sim, l2, "c", 50)?;
        let group = [l1, f1, other];
        let l3 = run_until_leader_among(&mut sim, &group, 10 * e)?
            .ok_or("the new majority elected no one")?;
        ensure!(l3 == other, "n{l3} won without the most up-to-date log");
        let base = sim.acked().len();
        propose_burst(&mut sim, l3, "d", 50)?;
        run_until_acked(&mut sim, base + 50, 10 * e)?;

        // Everyone back; one more entry through whoever leads.
        sim.heal();
        let l4 = elect(&mut sim)?;
        let base = sim.acked().len();
        sim.propose(l4, b"end")?;
        run_until_acked(&mut sim, base + 1, 10 * e)?;
        ensure!(
            sim.run_until_agreement(10 * e)?,
            "no agreement at the end\n{}",
            statuses(&sim)
        );
        check_acked(&sim)?;
        let data = payloads(&sim);
        for k in 0..50 {
            for (tag, want) in [("a", false), ("b", true), ("c", false), ("d", true)] {
                let has = data.contains(format!("{tag}{k}").as_bytes());
                ensure!(
                    has == want,
                    "entry {tag}{k}: committed={has}, expected {want}"
                );
            }
        }
        // Each repair of a follower costs about one rejection per divergent term; a
        // one-entry-at-a-time backtrack would need ~50 per repair and over 100 in all (4 to 8
        // were seen over seeds 0..30).
        let rejected = rejections(&sim);
        ensure!(
            rejected <= 20,
            "{rejected} append rejections: backtracking is not skipping terms"
        );
        Ok(())
    });
}

/// A disk holding `log` (terms of entries 1, 2, ...; entries after the first carry `big`
/// payloads) and the given hard state.
fn disk(term: u64, vote: u64, log: &[u64], big: &[u8]) -> Result<SimStorage, Failure> {
    let mut d = SimStorage::new();
    d.set_hard_state(HardState {
        term: Term(term),
        vote: NodeId(vote),
        commit: Index(1),
    });
    let entries = log.iter().enumerate().map(|(i, &t)| Entry {
        index: Index(i as u64 + 1),
        term: Term(t),
        kind: EntryKind::Normal,
        data: if i == 0 { b"one" } else { big },
    });
    d.append(entries)?;
    Ok(d)
}

/// Figure 8 of the Raft paper, played exactly (§5.4.2): S1 leads term 4 holding entries 2..4
/// of term 2, and brings S3 up to entry 3, so that entries of term 2 sit on a majority (S1, S2,
/// S3) while its own term-4 no-op does not. It must not count those replicas as commitment:
/// once S1 and S2 crash, S5 (whose entry 2 is of term 3) wins S3's and S4's votes and
/// overwrites them. Entries are 3000 bytes so that one append carries only two of them and
/// never the no-op alongside, which would otherwise mask a wrong commit rule.
#[test]
fn figure8_old_term_entries_not_committed_by_counting_replicas() {
    for_seeds("figure8_scripted", 30, |seed| -> Outcome {
        let big = vec![b'o'; 3000];
        let disks = vec![
            disk(3, 0, &[1, 2, 2, 2], &big)?,
            disk(3, 0, &[1, 2, 2, 2], &big)?,
            disk(3, 5, &[1], &big)?,
            disk(3, 5, &[1], &big)?,
            disk(3, 5, &[1, 3], &big)?,
        ];
        let mut sim = Sim::with_disks(SimConfig::new(5, seed), disks);
        let e = election_us(&sim);
        let (s1, s2, s3, s4, s5) = (n(1), n(2), n(3), n(4), n(5));
        sim.crash(s5);
        // S4 never hears from S1, so it cannot pick up the no-op either.
        sim.cut(s1, s4);
        sim.cut(s4, s1);
        sim.campaign(s1)?;
        let led = sim.run_until(5 * e, |s| {
            s.status(s1).is_some_and(|st| st.role == Role::Leader)
        })?;
        ensure!(led, "S1 did not win term 4\n{}", statuses(&sim));
        let term = sim.status(s1).map(|s| s.term).unwrap_or_default();
        ensure!(term == Term(4), "S1 leads term {term}, expected 4");
        // Stop S1's appends to S3 as soon as S3 has written entries 2..=3: its
        // acknowledgement still reaches S1, the append carrying the no-op does not.
        let reached = sim.run_until(5 * e, |s| {
            s.disk(s3).is_some_and(|d| d.entries().len() >= 3)
        })?;
        ensure!(reached, "S3 never got entries 2..=3\n{}", statuses(&sim));
        sim.cut(s1, s3);
        ensure!(
            sim.disk(s3).is_some_and(|d| d.entries().len() == 3),
            "S3 got more than entries 2..=3 in one append"
        );
        sim.run_for(e)?;
        let st = sim.status(s1).ok_or("S1 down")?;
        ensure!(
            st.commit == Index(1),
            "S1 committed up to {} by counting replicas of term-2 entries",
            st.commit
        );
        // S1 and S2 crash; S5 returns and wins with S3 and S4: entry 2 becomes term 3.
        sim.crash(s1);
        sim.crash(s2);
        sim.restart(s5);
        sim.heal();
        let l = run_until_leader_among(&mut sim, &[s3, s4, s5], 20 * e)?
            .ok_or("S3, S4, S5 elected no one")?;
        ensure!(
            l == s5,
            "n{l} won, but only S5's log is up to date among S3-S5"
        );
        sim.restart(s1);
        sim.restart(s2);
        let leader = sim.run_until_leader(20 * e)?.ok_or("no leader")?;
        sim.propose(leader, b"after")?;
        ensure!(
            sim.run_until_agreement(20 * e)?,
            "no agreement\n{}",
            statuses(&sim)
        );
        check_acked(&sim)?;
        let second = sim.committed().get(1).ok_or("log too short")?;
        ensure!(
            second.term == Term(3),
            "entry 2 is of term {}, expected S5's term 3",
            second.term
        );
        Ok(())
    });
}
