//! Snapshots, log compaction, membership changes and leadership transfer on real nodes: real
//! TCP on loopback, real logs and snapshot files in a temp dir.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, free_addrs, Cluster, Counter};
use raft_std::{AdminError, MemberRole, NodeConfig, NodeId, Role};

/// The position of the node the nodes at `among` agree leads.
fn leader_among(c: &Cluster, among: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leaders: Vec<usize> = among
            .iter()
            .copied()
            .filter(|&i| c.handle(i).status().role == Role::Leader)
            .collect();
        if let [l] = leaders[..] {
            let id = NodeId(l as u64 + 1);
            if among
                .iter()
                .all(|&i| c.handle(i).status().leader == Some(id))
            {
                return l;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader agreed on among {among:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn snapshotting(c: &Cluster, i: usize, every: u64) -> NodeConfig {
    let mut cfg = c.config(i);
    cfg.snapshot_entries = every;
    cfg.log_keep_entries = 10;
    // Small chunks, so that a transfer takes many.
    cfg.snapshot_chunk_bytes = 512;
    cfg
}

fn write(c: &Cluster, via: usize, from: u64, to: u64) {
    let h = c.handle(via);
    for k in from..to {
        h.propose(format!("w{k}").as_bytes()).expect("write");
    }
}

fn log_of(c: &Cluster, i: usize) -> Vec<u8> {
    c.handle(i).read(b"log").expect("read")
}

fn expected_log(to: u64) -> Vec<u8> {
    (0..to)
        .map(|k| format!("w{k}"))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

#[test]
fn restart_recovers_the_snapshot_and_the_log_tail() {
    let mut c = Cluster::new(3);
    for i in 0..3 {
        c.stop(i);
        let cfg = snapshotting(&c, i, 50);
        c.start_with(i, cfg);
    }
    let l = c.wait_leader();
    write(&c, l, 0, 130);
    eventually("every node snapshotted and compacted", || {
        (0..3).all(|i| {
            let s = c.handle(i).status();
            s.snapshot_index.0 >= 100 && s.first_index.0 > 50
        })
    });
    let snap_dir = c.data_dir(0).join("snap");
    let snaps = std::fs::read_dir(&snap_dir)
        .expect("snap dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        })
        .count();
    assert_eq!(snaps, 1, "only the newest snapshot is kept");
    // A forced snapshot covers everything applied.
    let forced = c.handle(l).snapshot().expect("snapshot");
    assert!(forced.0 >= 130, "{forced:?}");
    write(&c, l, 130, 140);
    for i in 0..3 {
        c.stop(i);
    }
    for i in 0..3 {
        let cfg = snapshotting(&c, i, 50);
        c.start_with(i, cfg);
    }
    let l = c.wait_leader();
    for i in 0..3 {
        let s = c.handle(i).status();
        assert!(s.snapshot_index.0 >= 100, "{s:?}");
    }
    write(&c, l, 140, 150);
    for i in 0..3 {
        assert_eq!(log_of(&c, i), expected_log(150), "node {}", i + 1);
    }
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_snapshot() {
    let mut c = Cluster::new(3);
    for i in 0..3 {
        c.stop(i);
        let cfg = snapshotting(&c, i, 40);
        c.start_with(i, cfg);
    }
    let l = c.wait_leader();
    let down = (l + 1) % 3;
    write(&c, l, 0, 10);
    c.stop(down);
    write(&c, l, 10, 200);
    eventually("the leader compacted past the stopped follower", || {
        c.handle(l).status().first_index.0 > 20
    });
    let cfg = snapshotting(&c, down, 40);
    c.start_with(down, cfg);
    eventually("the follower caught up", || {
        c.handle(down).status().applied_index.0 >= 200
    });
    assert!(c.handle(down).metrics().snapshots_installed >= 1);
    assert!(c.handle(l).metrics().snapshots_sent >= 1);
    assert_eq!(log_of(&c, down), expected_log(200));
    // It goes on from the snapshot like any follower.
    write(&c, l, 200, 210);
    eventually("the follower applied the new writes", || {
        c.handle(down).status().applied_index.0 >= 210
    });
    assert_eq!(log_of(&c, down), expected_log(210));
}

#[test]
fn a_node_joins_is_promoted_and_the_leader_is_removed() {
    let mut c = Cluster::new(3);
    let l = c.wait_leader();
    write(&c, l, 0, 20);
    // Node 4 starts empty, knowing the members, and waits to be added.
    let addr4 = free_addrs(1)[0];
    c.nodes.push(None);
    let mut members = c.members.clone();
    members.push((NodeId(4), addr4));
    let mut cfg = NodeConfig::new(NodeId(4), 0x7e57, members, c.data_dir(3));
    cfg.tick = Duration::from_millis(10);
    cfg.request_timeout = Duration::from_secs(5);
    cfg.join = true;
    c.start_with(3, cfg);
    assert_eq!(c.handle(3).status().role, Role::Follower);
    // Asked through a follower: forwarded to the leader.
    let follower = (l + 1) % 3;
    c.handle(follower)
        .add_learner(NodeId(4), addr4)
        .expect("add learner");
    // Asking again is harmless; asking with another address is refused.
    c.handle(l).add_learner(NodeId(4), addr4).expect("again");
    let elsewhere = free_addrs(1)[0];
    assert!(matches!(
        c.handle(follower).add_learner(NodeId(4), elsewhere),
        Err(AdminError::Invalid(_))
    ));
    eventually("the learner caught up", || {
        c.handle(3).status().applied_index.0 >= 20
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.handle(follower).promote(NodeId(4)) {
            Ok(_) => break,
            Err(AdminError::Retry(why)) if Instant::now() < deadline => {
                eprintln!("promote: {why}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("promote: {e}"),
        }
    }
    eventually("node 4 is a voter everywhere", || {
        (0..4).all(|i| {
            let s = c.handle(i).status();
            s.membership
                .iter()
                .any(|m| m.id == NodeId(4) && m.role == MemberRole::Voter)
                && s.membership.len() == 4
        })
    });
    write(&c, l, 20, 30);
    // Remove the leader: it steps down once that commits, and hands over.
    let old = NodeId(l as u64 + 1);
    let rest: Vec<usize> = (0..4).filter(|&i| i != l).collect();
    c.handle(l).remove(old).expect("remove the leader");
    let new = leader_among(&c, &rest);
    assert_ne!(new, l);
    eventually("the old leader is gone from the configuration", || {
        rest.iter().all(|&i| {
            let s = c.handle(i).status();
            s.membership.len() == 3 && s.membership.iter().all(|m| m.id != old)
        })
    });
    eventually("the removed leader stepped down", || {
        c.handle(l).status().role != Role::Leader
    });
    write(&c, new, 30, 40);
    for &i in &rest {
        eventually("every remaining node applied everything", || {
            c.handle(i).status().applied_index >= c.handle(new).status().applied_index
        });
        assert_eq!(log_of(&c, i), expected_log(40), "node {}", i + 1);
    }
    // The configuration survives a restart of the new member.
    c.stop(3);
    let mut members = c.members.clone();
    members.push((NodeId(4), addr4));
    let mut cfg = NodeConfig::new(NodeId(4), 0x7e57, members, c.data_dir(3));
    cfg.tick = Duration::from_millis(10);
    cfg.join = true;
    c.start_with(3, cfg);
    eventually("node 4 knows its configuration after a restart", || {
        let s = c.handle(3).status();
        s.membership.len() == 3 && s.leader.is_some()
    });
    write(&c, new, 40, 45);
    assert_eq!(log_of(&c, 3), expected_log(45));
}

#[test]
fn leadership_moves_on_request() {
    let c = Cluster::new(3);
    let l = c.wait_leader();
    write(&c, l, 0, 5);
    let to = (l + 2) % 3;
    let target = NodeId(to as u64 + 1);
    // Asked through the third node: forwarded.
    let via = (l + 1) % 3;
    c.handle(via).transfer_leadership(target).expect("transfer");
    assert_eq!(leader_among(&c, &[0, 1, 2]), to);
    write(&c, to, 5, 10);
    assert_eq!(log_of(&c, l), expected_log(10));
    assert!(matches!(
        c.handle(to).transfer_leadership(NodeId(9)),
        Err(AdminError::Invalid(_))
    ));
    let _ = Counter::default();
}
