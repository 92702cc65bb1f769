//! The threaded node with real TCP and real logs: proposals, forwarding, linearizable reads on
//! followers, failover, recovery from the data directory, backpressure and shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Cluster};
use raft_std::{NodeId, RequestError};

#[test]
fn proposals_on_leader_and_followers_apply_everywhere_in_one_order() {
    let c = Cluster::new(3);
    let leader = c.wait_leader();
    // Every node accepts writes: a follower forwards to the leader.
    for round in 0..10 {
        for i in 0..3 {
            let cmd = format!("{round}-{i}");
            let r = c.handle(i).propose(cmd.as_bytes()).expect("write");
            assert!(!r.is_empty(), "the state machine's response comes back");
        }
    }
    let follower = (leader + 1) % 3;
    // A read on a follower is linearizable: it sees every write acknowledged before it.
    let count = c.handle(follower).read(b"count").expect("read");
    assert_eq!(count, b"30");
    let logs: Vec<Vec<u8>> = (0..3)
        .map(|i| c.handle(i).read(b"log").expect("read"))
        .collect();
    assert_eq!(logs[0], logs[1]);
    assert_eq!(logs[1], logs[2]);
    let m = c.handle(follower).metrics();
    assert!(
        m.forwarded >= 10,
        "the follower forwarded its writes: {m:?}"
    );
    assert!(c.handle(leader).metrics().fsyncs > 0);
}

#[test]
fn many_threads_share_batches() {
    let c = Cluster::new(3);
    let leader = c.wait_leader();
    let h = c.handle(leader);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for k in 0..50 {
                    h.propose(format!("{t}:{k}").as_bytes()).expect("write");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    assert_eq!(h.read(b"count").expect("read"), b"800");
    let m = h.metrics();
    // Group commit: far fewer log syncs than writes.
    assert!(m.fsyncs < 800, "{m:?}");
}

#[test]
fn leader_failover_keeps_every_acknowledged_write_and_restart_catches_up() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader();
    let mut acked = Vec::new();
    for k in 0..20 {
        let cmd = format!("w{k}");
        c.handle(leader).propose(cmd.as_bytes()).expect("write");
        acked.push(cmd);
    }
    c.stop(leader);
    let new_leader = c.wait_leader();
    assert_ne!(new_leader, leader);
    for k in 20..40 {
        let cmd = format!("w{k}");
        c.handle(new_leader)
            .propose(cmd.as_bytes())
            .expect("write after failover");
        acked.push(cmd);
    }
    // The old leader comes back from its data directory and catches up.
    c.start(leader);
    let expected = acked.join("\n").into_bytes();
    eventually("the restarted node catches up", || {
        c.handle(leader).status().applied_index >= c.handle(new_leader).status().commit_index
    });
    for i in 0..3 {
        assert_eq!(
            c.handle(i).read(b"log").expect("read"),
            expected,
            "node {}",
            i + 1
        );
    }
}

#[test]
fn whole_cluster_restart_recovers_from_disk() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader();
    for k in 0..25 {
        c.handle(leader)
            .propose(format!("{k}").as_bytes())
            .expect("write");
    }
    for i in 0..3 {
        c.stop(i);
    }
    for i in 0..3 {
        c.start(i);
    }
    let leader = c.wait_leader();
    assert_eq!(c.handle(leader).read(b"count").expect("read"), b"25");
    let term = c.handle(leader).status().term;
    assert!(term.0 >= 2, "a new term after restart");
}

#[test]
fn no_quorum_means_no_leader_and_bounded_waits() {
    let mut c = Cluster::new(3);
    c.wait_leader();
    c.stop(1);
    c.stop(2);
    let mut cfg_timeout = c.config(0);
    cfg_timeout.request_timeout = Duration::from_millis(600);
    c.stop(0);
    c.start_with(0, cfg_timeout);
    let h = c.handle(0);
    let started = std::time::Instant::now();
    assert_eq!(h.propose(b"x"), Err(RequestError::NoLeader));
    assert_eq!(h.read(b"count"), Err(RequestError::NoLeader));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn oversized_commands_are_refused() {
    let c = Cluster::new(1);
    c.wait_leader();
    let h = c.handle(0);
    let big = vec![0u8; 600 * 1024];
    assert!(matches!(
        h.propose(&big),
        Err(RequestError::TooLarge { .. })
    ));
    assert_eq!(h.propose(b"small").expect("write"), b"1");
}

#[test]
fn a_full_inbox_answers_busy_not_unbounded_memory() {
    let mut c = Cluster::new(1);
    let mut cfg = c.config(0);
    cfg.max_queued_requests = 4;
    cfg.max_pending_requests = 4;
    c.stop(0);
    c.start_with(0, cfg);
    c.wait_leader();
    let h = c.handle(0);
    let busy = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let h = h.clone();
            let busy = busy.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    match h.propose(b"x") {
                        Ok(_) => {}
                        Err(RequestError::Busy) => {
                            busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    assert!(
        busy.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "some were refused"
    );
    // Everything that was accepted was applied; nothing else.
    let count: u64 = String::from_utf8(h.read(b"count").expect("read"))
        .expect("utf8")
        .parse()
        .expect("number");
    assert_eq!(count, 640 - busy.load(std::sync::atomic::Ordering::Relaxed));
}

#[test]
fn shutdown_fails_waiting_requests_and_later_ones() {
    let mut c = Cluster::new(3);
    c.wait_leader();
    // Only node 1 left: its proposals wait for a leader until shut down.
    c.stop(1);
    c.stop(2);
    let h = c.handle(0);
    let waiter = {
        let h = h.clone();
        std::thread::spawn(move || h.propose(b"x"))
    };
    std::thread::sleep(Duration::from_millis(100));
    c.stop(0);
    let r = waiter.join().expect("waiter");
    assert!(
        matches!(
            r,
            Err(RequestError::Shutdown | RequestError::Timeout | RequestError::NoLeader)
        ),
        "{r:?}"
    );
    assert_eq!(h.propose(b"y"), Err(RequestError::Shutdown));
}

#[test]
fn a_data_dir_is_never_recovered_as_another_node() {
    let mut c = Cluster::new(1);
    c.wait_leader();
    c.stop(0);
    let mut cfg = c.config(0);
    cfg.id = NodeId(2);
    cfg.members = vec![(NodeId(2), c.members[0].1)];
    let err = raft_std::Node::start(cfg, common::Counter::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("belongs to node 1"), "{err}");
}

#[test]
fn a_running_node_holds_its_data_dir() {
    let c = Cluster::new(1);
    c.wait_leader();
    let mut cfg = c.config(0);
    // Another process (here: another node) cannot open the same directory meanwhile.
    cfg.members = vec![(NodeId(1), common::free_addrs(1)[0])];
    let err = raft_std::Node::start(cfg, common::Counter::default())
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_api_proposes_and_reads() {
    let c = Cluster::new(3);
    let leader = tokio::task::spawn_blocking({
        let handles: Vec<_> = (0..3).map(|i| c.handle(i)).collect();
        move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(i) = handles
                    .iter()
                    .position(|h| h.status().role == raft_std::Role::Leader)
                {
                    return i;
                }
                assert!(std::time::Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    })
    .await
    .expect("join");
    let follower = c.handle((leader + 1) % 3);
    let tasks: Vec<_> = (0..20)
        .map(|k| {
            let h = follower.clone();
            tokio::spawn(async move { h.propose_async(format!("a{k}").as_bytes()).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("join").expect("write");
    }
    assert_eq!(follower.read_async(b"count").await.expect("read"), b"20");
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_async_runs_a_node_from_async_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = common::free_addrs(1)[0];
    let mut cfg = raft_std::NodeConfig::new(NodeId(1), 1, vec![(NodeId(1), addr)], dir.path());
    cfg.tick = Duration::from_millis(10);
    let node = raft_std::Node::start_async(cfg, common::Counter::default())
        .await
        .expect("start");
    let h = node.handle();
    let mut reply = Err(RequestError::NoLeader);
    for _ in 0..200 {
        reply = h.propose_async(b"x").await;
        if reply.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reply.expect("write"), b"1");
    tokio::task::spawn_blocking(move || node.shutdown())
        .await
        .expect("shutdown");
}
