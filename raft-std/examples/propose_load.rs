//! A load generator for the threaded node alone (no RESP server): three nodes in this process
//! with real TCP on loopback and real logs with fsync, `C` client threads each proposing
//! 100-byte commands back to back through the leader (or a follower) for a few seconds.
//!
//! ```sh
//! [DANGEROUSLY_SKIP_FSYNC=1] cargo run --release -p raft-std --example propose_load -- [clients] [seconds] [leader|follower]
//! ```

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_std::{Index, Node, NodeConfig, NodeId, Role, StateMachine};

struct Sink(u64);

impl StateMachine for Sink {
    fn apply(&mut self, _: Index, _: &[u8]) -> Vec<u8> {
        self.0 += 1;
        Vec::new()
    }
    fn query(&self, _: &[u8]) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn snapshot(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(&self.0.to_le_bytes())
    }
    fn restore(&mut self, input: &mut dyn std::io::Read) -> std::io::Result<()> {
        let mut b = [0u8; 8];
        input.read_exact(&mut b)?;
        self.0 = u64::from_le_bytes(b);
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let target = args
        .get(3)
        .map(String::as_str)
        .unwrap_or("leader")
        .to_string();

    let dir = tempfile::tempdir().expect("tempdir");
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let members: Vec<(NodeId, std::net::SocketAddr)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (NodeId(i as u64 + 1), l.local_addr().expect("addr")))
        .collect();
    drop(listeners);
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            let mut cfg = NodeConfig::new(
                NodeId(i as u64 + 1),
                1,
                members.clone(),
                dir.path().join(format!("n{i}")),
            );
            // To see what the disk costs: the same run without fdatasync.
            cfg.wal.dangerously_skip_fsync = std::env::var_os("DANGEROUSLY_SKIP_FSYNC").is_some();
            Node::start(cfg, Sink(0)).expect("start")
        })
        .collect();
    let leader = loop {
        if let Some(i) = nodes
            .iter()
            .position(|n| n.handle().status().role == Role::Leader)
        {
            break i;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let at = if target == "follower" {
        (leader + 1) % 3
    } else {
        leader
    };
    let h = nodes[at].handle();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (h, stop) = (h.clone(), stop.clone());
            std::thread::spawn(move || {
                let cmd = [7u8; 100];
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if h.propose(&cmd).is_ok() {
                        lat.push(t.elapsed());
                    }
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client"))
        .collect();
    lat.sort();
    let n = lat.len();
    let m = nodes[leader].handle().metrics();
    println!(
        "{clients} clients on the {target}: {:.0} proposals/s, p50 {:?}, p99 {:?}; leader fsyncs {} ({:.1} proposals each, avg {} us)",
        n as f64 / secs as f64,
        lat.get(n / 2).copied().unwrap_or_default(),
        lat.get(n * 99 / 100).copied().unwrap_or_default(),
        m.fsyncs,
        m.proposals as f64 / m.fsyncs.max(1) as f64,
        m.fsync_micros_total / m.fsyncs.max(1),
    );
}
