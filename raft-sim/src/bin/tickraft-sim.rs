//! Plays a simulated cluster through elections, partitions, crashes and a lossy network, then
//! log compaction with a snapshot install, a membership change that replaces the leader, and a
//! leadership transfer, and prints what happens. Every run is determined by its seed.
//!
//! ```text
//! tickraft-sim [--nodes N] [--seed S] [--trace]
//! ```

use std::error::Error;
use std::process::ExitCode;

use raft_core::{
    ConfChange, Index, Membership, NodeId, ProposeError, Role, Storage, TransferError,
};
use raft_sim::{Event, EventKind, LinkConfig, Sim, SimConfig, Violation};

/// Every node snapshots its state machine, and compacts its log through it, each time it has
/// applied this many entries since its last snapshot.
const SNAPSHOT_EVERY: u64 = 20;

/// Members a simulated node has room for (the capacity of [`raft_sim::SimNode`]).
const MEMBER_ROOM: usize = 9;

/// How long a scene waits, in virtual microseconds, for what a healthy cluster does in well
/// under a second before it gives up and says so (with the seed).
const PATIENCE_US: u64 = 60_000_000;

struct Args {
    nodes: u64,
    seed: u64,
    trace: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        nodes: 5,
        seed: 1,
        trace: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match flag.as_str() {
            "--nodes" => a.nodes = num("--nodes")?,
            "--seed" => a.seed = num("--seed")?,
            "--trace" => a.trace = true,
            "-h" | "--help" => {
                return Err(
                    "usage: tickraft-sim [--nodes N (3..=9, default 5)] [--seed S] \
                            [--trace (print every event)]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}; try --help")),
        }
    }
    if !(3..=9).contains(&a.nodes) {
        return Err("--nodes must be between 3 and 9".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match play(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "replay: cargo run --release -p raft-sim --bin tickraft-sim -- \
                 --seed {} --nodes {}",
                args.seed, args.nodes
            );
            ExitCode::FAILURE
        }
    }
}

/// The trace events recorded since event number `from` that are still kept in memory.
fn since(sim: &Sim, from: u64) -> impl Iterator<Item = &Event> {
    let fresh = (sim.trace().total() - from) as usize;
    let kept = sim.trace().events().count();
    sim.trace().events().skip(kept.saturating_sub(fresh))
}

/// Prints the trace events since `from` that tell the story: roles, faults, notes.
fn show(sim: &Sim, from: &mut u64, all: bool) {
    for e in since(sim, *from) {
        let interesting = matches!(
            e.kind,
            EventKind::Role {
                role: Role::Leader | Role::Candidate,
                ..
            } | EventKind::Crash { .. }
                | EventKind::Restart { .. }
                | EventKind::Partition { .. }
                | EventKind::Heal
                | EventKind::Note { .. }
                | EventKind::Install { .. }
                | EventKind::ConfChange { .. }
                | EventKind::Transfer { .. }
                | EventKind::NewNode { .. }
        );
        if all || interesting {
            println!("{e}");
        }
    }
    *from = sim.trace().total();
}

fn say(sim: &mut Sim, cursor: &mut u64, all: bool, text: String) {
    sim.note(text);
    show(sim, cursor, all);
}

fn leader(sim: &mut Sim) -> Result<NodeId, Violation> {
    loop {
        if let Some(l) = sim.run_until_leader(10_000_000)? {
            return Ok(l);
        }
    }
}

/// A scene that did not complete in [`PATIENCE_US`]: what was expected, the seed, and the last
/// events.
fn stuck(sim: &Sim, what: String) -> Box<dyn Error> {
    let events: Vec<String> = sim.trace().events().map(|e| e.to_string()).collect();
    let mut text = format!(
        "seed {}: {what} within {} s of virtual time\nlast events:",
        sim.seed(),
        PATIENCE_US / 1_000_000
    );
    for e in &events[events.len().saturating_sub(30)..] {
        text.push_str("\n  ");
        text.push_str(e);
    }
    text.into()
}

/// Ids as the trace writes them: `[1,2,3]`.
fn id_list(ids: impl Iterator<Item = NodeId>) -> String {
    let ids: Vec<String> = ids.map(|i| i.to_string()).collect();
    format!("[{}]", ids.join(","))
}

/// A configuration as the trace writes it: `voters=[1,2,3] learners=[4]`, or during a change
/// of voters `joint old=[1,2,3] new=[2,3,4] learners=[]`.
fn show_config(m: &Membership) -> String {
    let learners = id_list(m.learners());
    if m.is_joint() {
        let old = id_list(m.members().iter().filter(|x| x.outgoing).map(|x| x.id));
        format!(
            "joint old={old} new={} learners={learners}",
            id_list(m.voters())
        )
    } else {
        format!("voters={} learners={learners}", id_list(m.voters()))
    }
}

/// Snapshot chunks sent to `to` since event number `from`, and the bytes they carried.
fn chunks_to(sim: &Sim, from: u64, to: NodeId) -> (u64, u64) {
    since(sim, from)
        .filter_map(|e| match &e.kind {
            EventKind::Send { to: t, msg, .. } if *t == to && msg.kind == "Snapshot" => {
                Some(u64::from(msg.bytes))
            }
            _ => None,
        })
        .fold((0, 0), |(n, bytes), b| (n + 1, bytes + b))
}

/// Proposes `count` entries named after `tag` at whoever leads, one a millisecond (a tick
/// later when the leader pushes back), and runs until every member has applied them.
fn write(sim: &mut Sim, tag: &str, count: u64) -> Result<(), Box<dyn Error>> {
    let deadline = sim.now() + PATIENCE_US;
    let mut i = 0;
    while i < count {
        if sim
            .propose_to_leader(format!("set {tag}{i}").as_bytes())
            .is_some()
        {
            i += 1;
            sim.run_for(1_000)?;
        } else if sim.now() < deadline {
            sim.run_ticks(1)?;
        } else {
            return Err(stuck(sim, format!("no leader took write {tag}{i}")));
        }
    }
    if !sim.run_until_agreement(PATIENCE_US)? {
        return Err(stuck(
            sim,
            format!("{count} writes did not reach every member"),
        ));
    }
    Ok(())
}

/// Proposes the configuration change `changes(leader)` at whoever leads, again a tick later
/// while the leader answers that a change is still in flight, that the learner to promote
/// lags, or that leadership is moving. Returns the leader that took it and the configuration it
/// leads to (once the joint step, if any, is left).
fn propose_change(
    sim: &mut Sim,
    changes: impl Fn(NodeId) -> Vec<ConfChange>,
) -> Result<(NodeId, Membership), Box<dyn Error>> {
    let deadline = sim.now() + PATIENCE_US;
    loop {
        let l = leader(sim)?;
        let cs = changes(l);
        match sim.propose_conf_change(l, &cs) {
            Ok(_) => {
                // The change is in effect at the leader as soon as it is in its log.
                let next = sim.membership(l).cloned().unwrap_or_default();
                let target = if next.is_joint() {
                    next.leave_joint()
                } else {
                    next
                };
                return Ok((l, target));
            }
            Err(
                ProposeError::ConfChangePending
                | ProposeError::NotCaughtUp(_)
                | ProposeError::Busy
                | ProposeError::Transferring
                | ProposeError::NotLeader { .. },
            ) if sim.now() < deadline => sim.run_ticks(1)?,
            Err(e) => return Err(stuck(sim, format!("n{l} did not take {cs:?}: {e}"))),
        }
    }
}

/// Runs until the cluster's configuration is `target`.
fn commit_config(sim: &mut Sim, target: &Membership) -> Result<(), Box<dyn Error>> {
    if !sim.run_until(PATIENCE_US, |s| s.cluster_membership() == target)? {
        let want = show_config(target);
        return Err(stuck(
            sim,
            format!("the configuration {want} did not commit"),
        ));
    }
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}

fn play(a: &Args) -> Result<(), Box<dyn Error>> {
    let mut cfg = SimConfig::new(a.nodes, a.seed);
    cfg.snapshot_every = Some(SNAPSHOT_EVERY);
    let mut sim = Sim::new(cfg);
    let ids: Vec<NodeId> = sim.ids().to_vec();
    let mut cur = 0u64;
    let all = a.trace;
    println!(
        "tickraft-sim: {} nodes, seed {}, 10 ms ticks, elections after 100-200 ms, \
         snapshots every {SNAPSHOT_EVERY} entries ({} KiB, sent in {} KiB chunks)",
        a.nodes,
        a.seed,
        sim.config().snapshot_bytes / 1024,
        sim.config().max_snapshot_chunk / 1024
    );
    println!("   time (ms) event");

    let l = leader(&mut sim)?;
    let term = sim.status(l).map(|s| s.term).unwrap_or_default();
    {
        let t = format!("n{l} leads term {term}; proposing 20 entries");
        say(&mut sim, &mut cur, all, t)
    };
    for i in 0..20 {
        sim.propose(l, format!("set k{i}").as_bytes()).ok();
    }
    sim.run_until_agreement(5_000_000)?;
    {
        let t = format!("all nodes applied {} entries", sim.committed().len());
        say(&mut sim, &mut cur, all, t)
    };

    {
        let t = format!("isolating leader n{l}; it accepts 3 entries it can never commit");
        say(&mut sim, &mut cur, all, t)
    };
    sim.isolate(l);
    for i in 0..3 {
        sim.propose(l, format!("lost {i}").as_bytes()).ok();
    }
    sim.run_until(10_000_000, |s| s.leader().is_some_and(|x| x != l))?;
    let l2 = leader(&mut sim)?;
    {
        let t = format!("majority elected n{l2}; proposing 10 entries there");
        say(&mut sim, &mut cur, all, t)
    };
    for i in 0..10 {
        sim.propose(l2, format!("set j{i}").as_bytes()).ok();
    }
    sim.run_for(1_000_000)?;
    sim.heal();
    sim.run_until_agreement(5_000_000)?;
    let old_role = sim.status(l).map(|s| s.role.name()).unwrap_or("down");
    {
        let t = format!(
            "healed: n{l} is {old_role}, its 3 uncommitted entries were replaced; {} committed everywhere",
            sim.committed().len()
        );
        say(&mut sim, &mut cur, all, t)
    };

    let l = leader(&mut sim)?;
    let followers: Vec<NodeId> = ids.iter().copied().filter(|&i| i != l).collect();
    let minority = (a.nodes as usize - 1) / 2;
    for &f in &followers[..minority] {
        sim.crash(f);
    }
    {
        let t = format!("crashed {minority} followers: a bare majority remains");
        say(&mut sim, &mut cur, all, t)
    };
    let before = sim.committed().len();
    for i in 0..5 {
        sim.propose(l, format!("set m{i}").as_bytes()).ok();
    }
    sim.run_for(500_000)?;
    {
        let t = format!(
            "{} entries committed with a bare majority",
            sim.committed().len() - before
        );
        say(&mut sim, &mut cur, all, t)
    };
    sim.crash(followers[minority]);
    let before = sim.committed().len();
    for i in 0..5 {
        sim.propose(l, format!("set w{i}").as_bytes()).ok();
    }
    sim.run_for(500_000)?;
    {
        let t = format!(
            "crashed one more: no quorum, {} entries committed; restarting everyone",
            sim.committed().len() - before
        );
        say(&mut sim, &mut cur, all, t)
    };
    for &i in &ids {
        sim.restart(i);
    }
    sim.run_until_agreement(10_000_000)?;
    {
        let t = format!(
            "back to full strength: {} entries committed everywhere",
            sim.committed().len()
        );
        say(&mut sim, &mut cur, all, t)
    };

    {
        let t = "network turns bad: 20% loss, duplicates, long reordering; the leader crashes every 2 s".into();
        say(&mut sim, &mut cur, all, t)
    };
    sim.set_network(LinkConfig::unreliable(0.2).with_long_delays(0.05, 500_000));
    for round in 0..4 {
        for i in 0..10 {
            sim.propose_to_leader(format!("set r{round}.{i}").as_bytes());
            sim.run_for(20_000)?;
        }
        sim.run_for(1_500_000)?;
        if let Some(l) = sim.leader() {
            sim.crash(l);
            sim.run_for(300_000)?;
            sim.restart(l);
        }
    }
    sim.set_network(LinkConfig::default());
    leader(&mut sim)?;
    sim.run_until_agreement(20_000_000)?;
    {
        let t = "network repaired".into();
        say(&mut sim, &mut cur, all, t)
    };

    compaction(&mut sim, &mut cur, all)?;
    let joined = membership(&mut sim, &mut cur, all)?;
    transfer(&mut sim, &mut cur, all, joined)?;

    println!();
    println!(
        "final state after {:.1} s of virtual time:",
        sim.now() as f64 / 1e6
    );
    // Wide enough for the longest name, once nodes joined past n9.
    let width = sim.ids().last().map_or(0, |i| format!("n{i}:").len());
    for &i in sim.ids() {
        let name = format!("n{i}:");
        if !sim.is_member(i) {
            println!("  {name:<width$} removed");
        } else if let Some(s) = sim.status(i) {
            let applied = sim.state_machine(i).map_or(Index::ZERO, |m| m.index);
            println!(
                "  {name:<width$} {:<9} term {:<3} commit {:<4} applied {:<4} log from {}",
                s.role.name(),
                s.term,
                s.commit,
                applied,
                s.first_index
            );
        }
    }
    let acked = sim.acked().len();
    let kept = sim
        .acked()
        .iter()
        .filter(|e| sim.committed().contains(e))
        .count();
    println!(
        "  client-acknowledged entries: {acked}, all present in the final log: {}",
        kept == acked
    );
    println!(
        "  messages sent: {} ({} snapshot chunks); events: {}",
        sim.total_messages(),
        sim.messages_sent().get("Snapshot").copied().unwrap_or(0),
        sim.trace().total()
    );
    println!("  safety invariants checked after every event: no violation");
    println!(
        "  trace hash {:016x} (the same seed replays this run exactly)",
        sim.trace().hash()
    );
    Ok(())
}

/// Log compaction and a snapshot install: a follower is down while the others write and
/// compact their logs past it, so that only a snapshot can bring it back.
fn compaction(sim: &mut Sim, cur: &mut u64, all: bool) -> Result<(), Box<dyn Error>> {
    let l = leader(sim)?;
    let f = sim
        .ids()
        .iter()
        .copied()
        .find(|&i| i != l && sim.is_member(i) && sim.is_up(i))
        .ok_or_else(|| stuck(sim, "a follower to crash".into()))?;
    sim.crash(f);
    let stopped = sim.disk(f).map_or(Index::ZERO, |d| d.last_index());
    let t = format!(
        "compaction: each node snapshots its state every {SNAPSHOT_EVERY} entries and drops \
         its log up to there; follower n{f} is down with its log at {stopped}"
    );
    say(sim, cur, all, t);
    // Write until the leader has compacted past the entry n{f} needs next.
    let mut written = 0;
    while written < 3 * SNAPSHOT_EVERY
        || sim
            .leader()
            .and_then(|l| sim.status(l))
            .is_none_or(|s| s.first_index.0 <= stopped.0 + 1)
    {
        if written >= 20 * SNAPSHOT_EVERY {
            return Err(stuck(
                sim,
                format!("the leader compacted nothing past {stopped}"),
            ));
        }
        write(sim, "s", SNAPSHOT_EVERY)?;
        written += SNAPSHOT_EVERY;
    }
    let l = leader(sim)?;
    let first = sim.status(l).map_or(Index::ZERO, |s| s.first_index);
    let t = format!(
        "{written} entries committed without n{f}; leader n{l} compacted its log, which now \
         starts at {first}"
    );
    say(sim, cur, all, t);

    let mark = sim.trace().total();
    sim.restart(f);
    let caught_up = sim.run_until(PATIENCE_US, |s| {
        s.restored_from(f) > stopped && s.in_agreement()
    })?;
    if !caught_up {
        return Err(stuck(sim, format!("n{f} did not catch up by a snapshot")));
    }
    let (chunks, bytes) = chunks_to(sim, mark, f);
    let at = sim.restored_from(f);
    let mine = sim.state_machine(f);
    let same = sim
        .ids()
        .iter()
        .filter(|&&i| sim.is_member(i) && sim.is_up(i))
        .all(|&i| sim.state_machine(i) == mine);
    let Some(sm) = mine.filter(|sm| same && sim.state_at(sm.index) == Some(*sm)) else {
        return Err(stuck(
            sim,
            format!("n{f}'s state machine to match the others'"),
        ));
    };
    let tail = match sim.applied(f).len() {
        0 => String::new(),
        1 => ", then 1 entry from the log".to_string(),
        n => format!(", then {n} entries from the log"),
    };
    let t = format!(
        "n{f} caught up by snapshot: {chunks} chunks ({bytes} bytes) sent, installed at \
         {at}{tail}; its state machine matches every node's at {} (hash {:016x})",
        sm.index, sm.hash
    );
    say(sim, cur, all, t);
    Ok(())
}

/// Membership: a new node joins as a learner, then one change promotes it and removes the
/// leader; the leader steps down once the new configuration commits. Returns the new node.
fn membership(sim: &mut Sim, cur: &mut u64, all: bool) -> Result<NodeId, Box<dyn Error>> {
    if sim.cluster_membership().len() >= MEMBER_ROOM {
        let l = leader(sim)?;
        let gone = sim
            .cluster_membership()
            .voters()
            .filter(|&i| i != l)
            .last()
            .ok_or_else(|| stuck(sim, "a follower to remove".into()))?;
        let t = format!(
            "membership: {MEMBER_ROOM} members fill a node's table; removing follower n{gone} \
             to make room"
        );
        say(sim, cur, all, t);
        let (_, target) = propose_change(sim, |_| vec![ConfChange::Remove(gone)])?;
        commit_config(sim, &target)?;
        sim.crash(gone);
        let t = format!("n{gone} is out and shut down: {}", show_config(&target));
        say(sim, cur, all, t);
    }

    let new = sim.add_node();
    let mark = sim.trace().total();
    let t = format!("membership: n{new} starts with an empty disk and waits to be added");
    say(sim, cur, all, t);
    let (_, target) = propose_change(sim, |_| vec![ConfChange::AddLearner(new)])?;
    commit_config(sim, &target)?;
    if !sim.run_until_agreement(PATIENCE_US)? {
        return Err(stuck(sim, format!("learner n{new} did not catch up")));
    }
    let how = match sim.restored_from(new) {
        Index::ZERO => "from the log".to_string(),
        at => {
            let (chunks, _) = chunks_to(sim, mark, new);
            format!("by a snapshot at {at} ({chunks} chunks), then the log")
        }
    };
    let applied = sim.state_machine(new).map_or(Index::ZERO, |m| m.index);
    let t = format!(
        "n{new} is a learner ({}) and caught up {how}: it has applied {applied}, as every \
         member has",
        show_config(&target)
    );
    say(sim, cur, all, t);

    let (old, target) = propose_change(sim, |l| {
        vec![ConfChange::AddVoter(new), ConfChange::Remove(l)]
    })?;
    let joint = sim.membership(old).map(show_config).unwrap_or_default();
    let t = format!(
        "one change promotes n{new} and removes leader n{old}; n{old} leads on under {joint}"
    );
    say(sim, cur, all, t);
    let start = sim.now();
    let stepped_down = sim.run_until(PATIENCE_US, |s| {
        s.cluster_membership() == &target && s.status(old).is_some_and(|st| st.role != Role::Leader)
    })?;
    if !stepped_down {
        return Err(stuck(
            sim,
            format!(
                "n{old} did not commit {} and step down",
                show_config(&target)
            ),
        ));
    }
    let role = sim.status(old).map_or("down", |s| s.role.name());
    let t = format!(
        "the new configuration {} committed {:.1} ms later; n{old}, not a voter of it, \
         stepped down ({role})",
        show_config(&target),
        ms(sim.now() - start)
    );
    say(sim, cur, all, t);
    write(sim, "c", 5)?;
    let l = leader(sim)?;
    let term = sim.status(l).map(|s| s.term).unwrap_or_default();
    sim.crash(old);
    let t = format!(
        "n{l} leads term {term} in the new configuration and committed 5 entries; the removed \
         n{old} is shut down"
    );
    say(sim, cur, all, t);
    Ok(new)
}

/// Leadership transfer to a named voter (`to` if it can take it, else the first other voter),
/// timed in virtual time from the request to the target leading.
fn transfer(sim: &mut Sim, cur: &mut u64, all: bool, to: NodeId) -> Result<(), Box<dyn Error>> {
    let l = leader(sim)?;
    let voters: Vec<NodeId> = sim.cluster_membership().voters().collect();
    let to = if to != l && voters.contains(&to) {
        to
    } else {
        voters
            .iter()
            .copied()
            .find(|&i| i != l && sim.is_up(i))
            .ok_or_else(|| stuck(sim, "a voter to hand leadership to".into()))?
    };
    let t = format!("leadership transfer: asking n{l} to hand over to n{to}");
    say(sim, cur, all, t);
    let start = sim.now();
    let deadline = start + PATIENCE_US;
    let election = u64::from(sim.config().election_ticks) * sim.config().tick_us;
    let mut refused = None;
    let mut from = l;
    // Asked again if the transfer aborted (the target did not win within an election timeout)
    // or leadership moved elsewhere meanwhile.
    while sim.leader() != Some(to) {
        if sim.now() >= deadline {
            return Err(stuck(sim, format!("n{to} did not take over")));
        }
        let l = leader(sim)?;
        if l == to {
            break;
        }
        match sim.transfer_leadership(l, to) {
            Ok(()) => {
                from = l;
                if refused.is_none() {
                    refused = sim.propose(l, b"set during-transfer").err().map(|e| (l, e));
                }
                sim.run_until(3 * election, |s| s.leader() == Some(to))?;
            }
            Err(TransferError::InProgress) => sim.run_ticks(1)?,
            Err(e) => return Err(stuck(sim, format!("n{l} did not hand over to n{to}: {e}"))),
        }
    }
    let took = sim.now() - start;
    // Until the old leader hears of the new term it still believes it leads.
    sim.run_until(PATIENCE_US, |s| {
        s.status(from).is_none_or(|st| st.role != Role::Leader)
    })?;
    let term = sim.status(to).map(|s| s.term).unwrap_or_default();
    let meanwhile = match refused {
        Some((l, e)) => format!("; n{l} refused proposals meanwhile ({e})"),
        None => String::new(),
    };
    let t = format!(
        "n{to} leads term {term}, {:.1} ms of virtual time after the request (an election \
         timeout is 100-200 ms){meanwhile}",
        ms(took)
    );
    say(sim, cur, all, t);
    Ok(())
}
