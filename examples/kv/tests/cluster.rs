//! Real processes: three `tickraft-kv serve` processes on loopback, each with its own data
//! directory, driven through the `redis` client library. Kill -9 of the leader during a stream
//! of writes, restart from the data directory, hostile connections to the Raft port, and a
//! corrupted log that must refuse to start. The harness is in `support`, which the failover
//! benchmark (`examples/failover.rs`) shares.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{try_set, Cluster};

const BIN: &str = env!("CARGO_BIN_EXE_tickraft-kv");

#[test]
fn writes_through_any_node_survive_kill_9_of_the_leader_and_restart() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader();
    let info = c.raft_info(leader).expect("info");
    assert_eq!(info.members, "1,2,3");
    assert_eq!(info.role, "leader");
    assert!(info.term >= 1);

    // Writes to every node, the leader and the followers; reads from every node.
    for i in 0..3 {
        let mut con = c.conn(i);
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(format!("v{i}"))
            .query(&mut con)
            .expect("SET");
        let n: i64 = redis::cmd("INCR")
            .arg("counter")
            .query(&mut con)
            .expect("INCR");
        assert!(n >= 1);
    }
    for i in 0..3 {
        let mut con = c.conn(i);
        for j in 0..3 {
            let v: String = redis::cmd("GET")
                .arg(format!("k{j}"))
                .query(&mut con)
                .expect("GET");
            assert_eq!(v, format!("v{j}"), "read on node {} is linearizable", i + 1);
        }
        let n: i64 = redis::cmd("GET")
            .arg("counter")
            .query(&mut con)
            .expect("GET");
        assert_eq!(n, 3);
    }

    // A stream of writes through a follower that survives, and INCRs through the other.
    let survivor = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(u64, Instant)>::new()));
    let writer = {
        let mut con = c.conn(survivor);
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut unknown = Vec::new();
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match try_set(&mut con, &format!("w{k}"), &k.to_string()) {
                    Ok(true) => acked.lock().expect("lock").push((k, Instant::now())),
                    Ok(false) => {}
                    Err(e) => unknown.push((k, e)),
                }
                k += 1;
            }
            (k, unknown)
        })
    };
    let incrs = {
        let mut con = c.conn(other);
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut attempted) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                attempted += 1;
                match redis::cmd("INCR").arg("ctr").query::<i64>(&mut con) {
                    Ok(_) => ok += 1,
                    Err(e) if e.code() == Some("CLUSTERDOWN") => attempted -= 1,
                    Err(_) => {}
                }
            }
            (ok, attempted)
        })
    };
    // Let some writes land, then kill the leader with SIGKILL.
    let t0 = Instant::now();
    while acked.lock().expect("lock").len() < 200 {
        assert!(t0.elapsed() < Duration::from_secs(30), "writes do not flow");
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed_at = Instant::now();
    c.kill9(leader);
    // A new leader must serve writes within a generous bound (5 s on a loaded machine; the
    // README gives the typical failover time measured by the benchmark).
    let resumed = loop {
        let first_after = acked
            .lock()
            .expect("lock")
            .iter()
            .find(|(_, t)| *t > killed_at)
            .map(|(_, t)| *t);
        if let Some(at) = first_after {
            break at;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(5),
            "no write acknowledged within 5 s of killing the leader"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    eprintln!(
        "failover: first write acknowledged {:?} after kill -9",
        resumed - killed_at
    );
    let new_leader = c.wait_leader();
    assert_ne!(new_leader, leader);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (attempted, unknown) = writer.join().expect("writer");
    let (incr_ok, incr_attempted) = incrs.join().expect("incrs");
    let acked: Vec<u64> = acked
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, _)| *k)
        .collect();
    eprintln!(
        "{} writes attempted, {} acknowledged, {} unknown: {:?}",
        attempted,
        acked.len(),
        unknown.len(),
        unknown.iter().take(3).collect::<Vec<_>>()
    );

    // Every acknowledged write is there, on both survivors.
    for i in [survivor, other] {
        let mut con = c.conn(i);
        for chunk in acked.chunks(500) {
            let keys: Vec<String> = chunk.iter().map(|k| format!("w{k}")).collect();
            let vals: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query(&mut con).expect("MGET");
            for (k, v) in chunk.iter().zip(vals) {
                assert_eq!(
                    v,
                    Some(k.to_string()),
                    "acknowledged w{k} is on node {}",
                    i + 1
                );
            }
        }
        // The counter: every acknowledged INCR counted, none counted twice.
        let ctr: i64 = redis::cmd("GET")
            .arg("ctr")
            .query(&mut con)
            .expect("GET ctr");
        assert!(
            ctr as u64 >= incr_ok && ctr as u64 <= incr_attempted,
            "counter {ctr}: {incr_ok} acknowledged of {incr_attempted} attempted"
        );
    }

    // The killed node restarts from its data directory and catches up.
    c.spawn(leader);
    c.wait_serving(leader);
    let target = c.raft_info(new_leader).expect("info").commit_index;
    c.wait_applied(leader, target);
    let mut con = c.conn(leader);
    let keys: Vec<String> = acked
        .iter()
        .rev()
        .take(200)
        .map(|k| format!("w{k}"))
        .collect();
    let vals: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut con).expect("MGET");
    assert!(
        vals.iter().all(|v| v.is_some()),
        "the restarted node has the writes"
    );
}

fn hello(cluster: u64, from: u64, to: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"TKRF");
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&cluster.to_le_bytes());
    b.extend_from_slice(&from.to_le_bytes());
    b.extend_from_slice(&to.to_le_bytes());
    b
}

/// Whether the server closed the connection (read returns 0 or an error) within 10 s.
fn closed_by_peer(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // e.g. a hello back before the refusal; keep reading
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn strangers_on_the_raft_port_are_refused_and_the_cluster_carries_on() {
    let c = Cluster::start(BIN, 3);
    c.wait_leader();
    // Node 3 accepts connections from 1 and 2 only.
    let target = c.procs[2].raft;
    let cluster_id = 0x7469_636b_7261_6674u64; // only the magic matters for the foreign one
    let attempts: Vec<(&str, Vec<u8>)> = vec![
        (
            "random bytes",
            (0..64u8).map(|b| b.wrapping_mul(37)).collect(),
        ),
        ("foreign cluster id", hello(cluster_id ^ 0xdead, 1, 3)),
        ("unknown node id", hello(0, 42, 3)),
    ];
    for (what, bytes) in attempts {
        let mut s = TcpStream::connect(target).expect("connect");
        let _ = s.write_all(&bytes);
        assert!(closed_by_peer(s), "{what}: connection not closed");
    }
    // A write between members still works, through every node.
    for i in 0..3 {
        let mut con = c.conn(i);
        let _: () = redis::cmd("SET")
            .arg("after")
            .arg(i)
            .query(&mut con)
            .expect("SET");
    }
    let log = c.log(2);
    assert!(
        log.contains("refused") || log.contains("Refused"),
        "refusals are logged:\n{log}"
    );
}

fn flip_byte(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).expect("read");
    b[offset as usize] ^= 0x10;
    std::fs::write(path, b).expect("write");
}

#[test]
fn a_corrupted_log_refuses_to_start_and_names_the_file() {
    let mut c = Cluster::start(BIN, 3);
    let leader = c.wait_leader();
    let mut con = c.conn(leader);
    for k in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("c{k}"))
            .arg("x".repeat(100))
            .query(&mut con)
            .expect("SET");
    }
    drop(con);
    let victim = (leader + 1) % 3;
    c.kill9(victim);
    let wal = c.procs[victim].dir.join("wal");
    let seg = std::fs::read_dir(&wal)
        .expect("wal dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .max()
        .expect("a segment");
    let len = std::fs::metadata(&seg).expect("meta").len();
    flip_byte(&seg, len / 2);
    let out = c
        .command(victim)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "a node with a corrupt log must not start"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let name = seg.file_name().expect("name").to_string_lossy().to_string();
    assert!(
        text.contains(&name),
        "the error names the file {name}:\n{text}"
    );
    assert!(text.contains("offset"), "and the offset:\n{text}");
}
