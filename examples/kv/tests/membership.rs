//! Real processes changing the cluster under load: members joining with `serve --join` and
//! leaving with `RAFT.REMOVE` (the leader among them) while clients write, leadership handed
//! over with `RAFT.TRANSFER`, and snapshots: `RAFT.SNAPSHOT` then kill -9 and restart from the
//! snapshot and the log tail, and a follower that was down while the leader compacted its log
//! catching up by receiving the snapshot. The harness is in `support`.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{connect, try_set, Cluster};

const BIN: &str = env!("CARGO_BIN_EXE_tickraft-kv");

/// Clients writing through chosen members until stopped: per member a SET stream (unique
/// keys) and an INCR stream on one shared counter, recording what was acknowledged.
struct Load {
    stop: Arc<AtomicBool>,
    /// Acknowledged SETs: `(key, value)`.
    acked: Arc<Mutex<Vec<(String, String)>>>,
    incr_ok: Arc<AtomicU64>,
    /// INCRs that may have been applied: every one sent except those refused outright.
    incr_attempted: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn new() -> Load {
        Load {
            stop: Arc::new(AtomicBool::new(false)),
            acked: Arc::new(Mutex::new(Vec::new())),
            incr_ok: Arc::new(AtomicU64::new(0)),
            incr_attempted: Arc::new(AtomicU64::new(0)),
            threads: Vec::new(),
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    /// Waits (30 s at most) until `more` writes beyond those so far are acknowledged.
    fn wait_more(&self, more: usize, why: &str) {
        let target = self.acked() + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acked() < target {
            assert!(Instant::now() < deadline, "writes do not flow {why}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts a SET stream and an INCR stream through the member at `addr`.
    fn through(&mut self, addr: SocketAddr, name: &str) {
        let (stop, acked) = (self.stop.clone(), self.acked.clone());
        let prefix = name.to_string();
        self.threads.push(std::thread::spawn(move || {
            let mut con = connect(addr);
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (key, value) = (format!("{prefix}:{k}"), format!("v{k}"));
                match try_set(&mut con, &key, &value) {
                    Ok(true) => acked.lock().expect("lock").push((key, value)),
                    Ok(false) => {}
                    // Unknown outcome; a dropped connection is replaced.
                    Err(_) => con = reconnect(addr, &stop),
                }
                k += 1;
            }
        }));
        let (stop, ok, attempted) = (
            self.stop.clone(),
            self.incr_ok.clone(),
            self.incr_attempted.clone(),
        );
        self.threads.push(std::thread::spawn(move || {
            let mut con = connect(addr);
            while !stop.load(Ordering::Relaxed) {
                attempted.fetch_add(1, Ordering::SeqCst);
                match redis::cmd("INCR").arg("ctr").query::<i64>(&mut con) {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    // Refused before anything was done.
                    Err(e) if matches!(e.code(), Some("CLUSTERDOWN" | "TRYAGAIN")) => {
                        attempted.fetch_sub(1, Ordering::SeqCst);
                    }
                    Err(_) => con = reconnect(addr, &stop),
                }
            }
        }));
    }

    /// Stops every stream; returns the acknowledged SETs and the INCRs (acknowledged,
    /// attempted).
    fn finish(self) -> (Vec<(String, String)>, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load thread");
        }
        let acked = std::mem::take(&mut *self.acked.lock().expect("lock"));
        (
            acked,
            self.incr_ok.load(Ordering::SeqCst),
            self.incr_attempted.load(Ordering::SeqCst),
        )
    }
}

/// A new connection to `addr` once it accepts one (or at once if the load is stopping).
fn reconnect(addr: SocketAddr, stop: &AtomicBool) -> redis::Connection {
    loop {
        let con = redis::Client::open(format!("redis://{addr}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)));
        if let Ok(con) = con {
            con.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            return con;
        }
        if stop.load(Ordering::Relaxed) {
            return connect(addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every `(key, value)` in `want` is on member `i`, read there (linearizably).
fn assert_has(c: &Cluster, i: usize, want: &[(String, String)]) {
    let mut con = c.conn(i);
    for chunk in want.chunks(500) {
        let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
        let got: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut con).expect("MGET");
        for ((k, v), g) in chunk.iter().zip(got) {
            assert_eq!(g.as_deref(), Some(v.as_str()), "{k} on node {}", i + 1);
        }
    }
}

/// Writes `n` keys `{prefix}{j}` through member `i`, each request answered before the next.
fn write_keys_one_by_one(c: &Cluster, i: usize, prefix: &str, n: usize) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = (0..n)
        .map(|j| (format!("{prefix}{j}"), format!("value-{j}")))
        .collect();
    let mut con = c.conn(i);
    for (k, v) in &pairs {
        let () = redis::cmd("SET")
            .arg(k)
            .arg(v)
            .query(&mut con)
            .expect("SET");
    }
    pairs
}

/// Writes `n` keys `{prefix}{j}` through member `i` in one pipeline (so, usually, one log
/// entry).
fn write_keys(c: &Cluster, i: usize, prefix: &str, n: usize) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = (0..n)
        .map(|j| (format!("{prefix}{j}"), format!("value-{j}")))
        .collect();
    let mut con = c.conn(i);
    let mut pipe = redis::pipe();
    for (k, v) in &pairs {
        pipe.cmd("SET").arg(k).arg(v).ignore();
    }
    let () = pipe.query(&mut con).expect("pipelined SETs");
    pairs
}

#[test]
fn grow_to_five_by_join_then_remove_two_founders_and_the_leader_under_load() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader();
    let keep = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut load = Load::new();
    load.through(c.procs[keep].client, "keep");
    load.wait_more(50, "before the change");

    // Two new members, one joining through a follower and one through the leader.
    let n4 = c.join(keep);
    let n5 = c.join(leader);
    assert_eq!((n4, n5), (3, 4));
    c.wait_voters(keep, &[1, 2, 3, 4, 5]);
    load.through(c.procs[n4].client, "n4");
    load.through(c.procs[n5].client, "n5");
    load.wait_more(100, "with five members");
    for i in 0..5 {
        c.wait_voters(i, &[1, 2, 3, 4, 5]);
    }

    // Remove a founding follower, then the leader, both through the member that stays.
    let removed = [other as u64 + 1, leader as u64 + 1];
    for id in removed {
        let reply = c.admin(keep, &["RAFT.REMOVE", &id.to_string()]);
        assert_eq!(reply, Ok(redis::Value::Okay), "RAFT.REMOVE {id}");
        load.wait_more(50, &format!("after removing {id}"));
    }
    let mut remaining: Vec<u64> = vec![keep as u64 + 1, 4, 5];
    remaining.sort();
    for i in [keep, n4, n5] {
        c.wait_voters(i, &remaining);
    }
    // The removed members are stopped; the rest carry on under a leader of their own.
    c.kill9(other);
    c.kill9(leader);
    let new_leader = c.wait_leader();
    assert!([keep, n4, n5].contains(&new_leader));
    load.wait_more(100, "after the removals");

    let (acked, incr_ok, incr_attempted) = load.finish();
    eprintln!(
        "{} SETs acknowledged; INCR: {incr_ok} acknowledged of {incr_attempted} attempted",
        acked.len()
    );
    let prefixes: BTreeSet<&str> = acked
        .iter()
        .filter_map(|(k, _)| k.split(':').next())
        .collect();
    assert_eq!(prefixes, BTreeSet::from(["keep", "n4", "n5"]));
    for i in [keep, n4, n5] {
        assert_has(&c, i, &acked);
        let mut con = c.conn(i);
        let ctr: u64 = redis::cmd("GET")
            .arg("ctr")
            .query(&mut con)
            .expect("GET ctr");
        assert!(
            (incr_ok..=incr_attempted).contains(&ctr),
            "counter {ctr} on node {}: {incr_ok} acknowledged of {incr_attempted} attempted",
            i + 1
        );
        let members = c.members(i).expect("RAFT.MEMBERS");
        let addrs: Vec<Option<String>> = [keep, n4, n5]
            .iter()
            .map(|&j| Some(c.procs[j].raft.to_string()))
            .collect();
        let mut want: Vec<(u64, Option<String>, String)> = [keep, n4, n5]
            .iter()
            .zip(addrs)
            .map(|(&j, a)| (j as u64 + 1, a, "voter".to_string()))
            .collect();
        want.sort();
        assert_eq!(members, want, "RAFT.MEMBERS on node {}", i + 1);
        let info = c.info(i, "membership").expect("INFO");
        assert_eq!(info["learners"], "");
    }
}

#[test]
fn a_restarted_joiner_recovers_and_asks_nothing() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader();
    let n4 = c.join(leader);
    c.wait_voters(leader, &[1, 2, 3, 4]);
    let before = write_keys(&c, n4, "j", 20);
    c.kill9(n4);
    // Its join target is gone too: the restart must not depend on it.
    let via = (leader + 1) % 3;
    c.procs[n4].join = Some(c.procs[via].client);
    c.kill9(via);
    let first_run = c.log(n4).len();
    c.spawn(n4);
    c.wait_serving(n4);
    let target = c.raft_info(leader).expect("info").commit_index;
    c.wait_applied(n4, target);
    assert_has(&c, n4, &before);
    c.wait_voters(n4, &[1, 2, 3, 4]);
    let log = c.log(n4);
    assert!(
        log[..first_run].contains("asking to be added as a learner"),
        "the first run asked to join:\n{log}"
    );
    assert!(
        !log[first_run..].contains("asking to be"),
        "the restart asked to join again:\n{log}"
    );
}

#[test]
fn joining_with_an_id_already_in_use_is_refused() {
    let mut c = Cluster::start(BIN, 3);
    c.wait_leader();
    let i = c.join(0);
    c.wait_voters(0, &[1, 2, 3, 4]);
    // A second process with id 4 and an empty directory: refused before it starts a node.
    let addrs = support::free_addrs(2);
    let out = std::process::Command::new(BIN)
        .arg("serve")
        .args(["--id", "4", "--join", &c.procs[1].client.to_string()])
        .args(["--raft-addr", &addrs[0].to_string()])
        .args(["--client", &addrs[1].to_string()])
        .arg("--data-dir")
        .arg(c.procs[i].dir.with_file_name("n4-again"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("member id 4 is already in the cluster"),
        "{text}"
    );
}

#[test]
fn transfer_moves_leadership() {
    let c = Cluster::start(BIN, 3);
    let leader = c.wait_leader();
    let to = (leader + 1) % 3;
    let through = (leader + 2) % 3;
    // Sent to a follower, which forwards it.
    let reply = c.admin(through, &["RAFT.TRANSFER", &(to + 1).to_string()]);
    assert_eq!(reply, Ok(redis::Value::Okay));
    assert_eq!(c.wait_leader(), to);
    assert_eq!(c.raft_info(leader).expect("info").role, "follower");
    let mut con = c.conn(leader);
    let () = redis::cmd("SET")
        .arg("after")
        .arg("transfer")
        .query(&mut con)
        .expect("SET");
    // A transfer to a non-member is refused for good.
    let e = c.admin(to, &["RAFT.TRANSFER", "9"]).expect_err("refused");
    assert!(e.contains("9"), "{e}");
}

#[test]
fn a_snapshot_and_the_log_tail_survive_kill_9() {
    // Nothing kept below a snapshot, so the restart must rebuild from the snapshot itself.
    let mut c = Cluster::start_with(BIN, 3, &["--log-keep-entries", "0"]);
    let leader = c.wait_leader();
    let f = (leader + 1) % 3;
    let mut written = write_keys(&c, leader, "s", 300);
    let target = c.raft_info(leader).expect("info").commit_index;
    c.wait_applied(f, target);
    let snapshot = match c.admin(f, &["RAFT.SNAPSHOT"]) {
        Ok(redis::Value::Int(n)) => n as u64,
        other => panic!("RAFT.SNAPSHOT: {other:?}"),
    };
    assert!(
        snapshot >= target,
        "snapshot {snapshot} below applied {target}"
    );
    assert_eq!(c.info_u64(f, "log", "snapshot_index"), snapshot);
    assert_eq!(c.info_u64(f, "log", "first_index"), snapshot + 1);
    written.extend(write_keys(&c, leader, "t", 100));
    let target = c.raft_info(leader).expect("info").commit_index;
    c.wait_applied(f, target);

    c.kill9(f);
    c.spawn(f);
    c.wait_serving(f);
    assert_eq!(c.info_u64(f, "log", "snapshot_index"), snapshot);
    c.wait_applied(f, target);
    assert_eq!(c.info_u64(f, "stats", "snapshots_installed"), 0);
    assert_has(&c, f, &written);
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_snapshot() {
    let mut c = Cluster::start_with(
        BIN,
        3,
        &["--snapshot-entries", "100", "--log-keep-entries", "10"],
    );
    let leader = c.wait_leader();
    let f = (leader + 1) % 3;
    let mut written = write_keys(&c, leader, "a", 50);
    let target = c.raft_info(leader).expect("info").commit_index;
    c.wait_applied(f, target);
    c.kill9(f);
    let behind = target;

    // Enough entries for several snapshots on the leader, each compacting below itself: one
    // request at a time, since writes pipelined together become one entry.
    for round in 0..5 {
        written.extend(write_keys_one_by_one(&c, leader, &format!("b{round}-"), 60));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.info_u64(leader, "log", "first_index") <= behind + 1 {
        assert!(
            Instant::now() < deadline,
            "the leader never compacts past {behind}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    c.spawn(f);
    c.wait_serving(f);
    let target = c.raft_info(leader).expect("info").commit_index;
    c.wait_applied(f, target);
    assert!(c.info_u64(f, "stats", "snapshots_installed") >= 1);
    assert!(c.info_u64(leader, "stats", "snapshots_sent") >= 1);
    assert!(c.info_u64(f, "log", "snapshot_index") > behind);
    assert_has(&c, f, &written);
    // And it keeps up afterwards, from the log.
    let more = write_keys(&c, f, "c", 20);
    assert_has(&c, f, &more);
}
