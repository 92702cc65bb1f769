//! A small in-process cluster of real nodes (real TCP on loopback, real logs in a temp dir).
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use raft_std::{Index, Node, NodeConfig, NodeHandle, NodeId, Role, SnapshotView, StateMachine};

/// A counter and an append-only record of commands: `apply` returns the new count as text, and
/// `query` returns the count, or with query `b"log"` every command applied, in order.
#[derive(Default)]
pub struct Counter {
    pub count: u64,
    pub log: Vec<Vec<u8>>,
}

impl StateMachine for Counter {
    fn apply(&mut self, _index: Index, command: &[u8]) -> Vec<u8> {
        self.count += 1;
        self.log.push(command.to_vec());
        self.count.to_string().into_bytes()
    }
    fn query(&self, query: &[u8]) -> Vec<u8> {
        if query == b"log" {
            self.log.join(&b'\n')
        } else {
            self.count.to_string().into_bytes()
        }
    }
    fn snapshot(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        write_counter(self.count, &self.log, out)
    }
    /// A copy, written on the node's snapshot thread (the node's automatic snapshots take
    /// this path; `NodeHandle::snapshot` the one above).
    fn snapshot_view(&self) -> Option<Box<dyn SnapshotView>> {
        Some(Box::new(Counter {
            count: self.count,
            log: self.log.clone(),
        }))
    }
    fn restore(&mut self, input: &mut dyn std::io::Read) -> std::io::Result<()> {
        let u64_at = |input: &mut dyn std::io::Read| -> std::io::Result<u64> {
            let mut b = [0u8; 8];
            input.read_exact(&mut b)?;
            Ok(u64::from_le_bytes(b))
        };
        let count = u64_at(input)?;
        let n = u64_at(input)?;
        let mut log = Vec::new();
        for _ in 0..n {
            let mut l = [0u8; 4];
            input.read_exact(&mut l)?;
            let len = u32::from_le_bytes(l) as usize;
            if len > 1 << 20 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "too long",
                ));
            }
            let mut c = vec![0u8; len];
            input.read_exact(&mut c)?;
            log.push(c);
        }
        let mut rest = Vec::new();
        input.read_to_end(&mut rest)?;
        if !rest.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "trailing bytes",
            ));
        }
        *self = Counter { count, log };
        Ok(())
    }
}

impl SnapshotView for Counter {
    fn write_to(&mut self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        write_counter(self.count, &self.log, out)
    }
}

/// `[count u64][n u64]([len u32][command])*`, little-endian.
fn write_counter(count: u64, log: &[Vec<u8>], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    out.write_all(&count.to_le_bytes())?;
    out.write_all(&(log.len() as u64).to_le_bytes())?;
    for c in log {
        out.write_all(&(c.len() as u32).to_le_bytes())?;
        out.write_all(c)?;
    }
    Ok(())
}

pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr"))
        .collect()
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<(NodeId, SocketAddr)>,
    pub nodes: Vec<Option<Node>>,
}

impl Cluster {
    pub fn new(n: usize) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let addrs = free_addrs(n);
        let members = (1..=n as u64).map(NodeId).zip(addrs).collect();
        let mut c = Cluster {
            dir: tempfile::tempdir().expect("tempdir"),
            members,
            nodes: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            c.start(i);
        }
        c
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    pub fn config(&self, i: usize) -> NodeConfig {
        let mut cfg = NodeConfig::new(
            NodeId(i as u64 + 1),
            0x7e57,
            self.members.clone(),
            self.data_dir(i),
        );
        cfg.tick = Duration::from_millis(10);
        cfg.request_timeout = Duration::from_secs(5);
        cfg
    }

    pub fn start(&mut self, i: usize) {
        self.start_with(i, self.config(i));
    }

    pub fn start_with(&mut self, i: usize, cfg: NodeConfig) {
        // The port may still be held by the previous incarnation's lingering socket for a
        // moment; retry briefly.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Node::start(cfg.clone(), Counter::default()) {
                Ok(n) => {
                    self.nodes[i] = Some(n);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("start {i}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("node {} does not start: {e}", i + 1),
            }
        }
    }

    pub fn stop(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown();
        }
    }

    pub fn handle(&self, i: usize) -> NodeHandle {
        self.nodes[i].as_ref().expect("node is running").handle()
    }

    /// Waits until the running nodes agree on one leader; returns its position.
    pub fn wait_leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let running: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].is_some())
                .collect();
            let leaders: Vec<usize> = running
                .iter()
                .copied()
                .filter(|&i| self.handle(i).status().role == Role::Leader)
                .collect();
            if let [l] = leaders[..] {
                let id = NodeId(l as u64 + 1);
                if running
                    .iter()
                    .all(|&i| self.handle(i).status().leader == Some(id))
                {
                    return l;
                }
            }
            assert!(Instant::now() < deadline, "no leader agreed on in 20 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Polls `f` until it returns true (up to 20 s).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
