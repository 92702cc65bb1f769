//! A cluster of real `tickraft-kv serve` processes on loopback, each with its own data
//! directory and log file, driven through the `redis` client library.
//!
//! Shared by the integration tests (`mod support;`, with the binary from
//! `env!("CARGO_BIN_EXE_tickraft-kv")`) and by the failover benchmark
//! (`#[path = "../tests/support/mod.rs"] mod support;`, with the release binary), so the binary
//! is a parameter of [`Cluster::start`]. Failures panic with the node's log: the callers are a
//! test and a benchmark, and a panic is what both want.

// Each crate that includes this file uses a different part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `n` loopback addresses with free ports, all bound at once so that they differ. They are
/// released on return; a process started soon after can bind them.
pub(crate) fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    ls.iter().map(|l| l.local_addr().expect("addr")).collect()
}

/// A client connection to the RESP address `addr`, with a 10 s read timeout: longer than the
/// server's request timeout, so that the server, not the client, ends a slow request.
pub(crate) fn connect(addr: SocketAddr) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{addr}/")).expect("url");
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .expect("connect");
    con.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    con
}

/// One member: its addresses, its data directory and, while it runs, its process.
pub(crate) struct Proc {
    /// The running process; `None` before the first spawn and after a kill.
    pub(crate) child: Option<Child>,
    /// Where it serves RESP clients.
    pub(crate) client: SocketAddr,
    /// Its Raft address, as listed in `--peers`.
    pub(crate) raft: SocketAddr,
    /// Its `--data-dir`; kept across restarts.
    pub(crate) dir: PathBuf,
    /// Its stdout and stderr, appended to by every run.
    pub(crate) log: PathBuf,
    /// For a member added with [`Cluster::join`]: the client address it joined through
    /// (`--join`); it has no `--peers`.
    pub(crate) join: Option<SocketAddr>,
}

/// `n` members with ids 1..=n; a member's position in [`Cluster::procs`] is its id minus one.
/// Dropping the cluster kills every process and removes the directories.
pub(crate) struct Cluster {
    _tmp: tempfile::TempDir,
    bin: PathBuf,
    peers: String,
    /// Flags given to every member, after the harness's own.
    extra: Vec<String>,
    /// The members, by position (id - 1).
    pub(crate) procs: Vec<Proc>,
}

impl Cluster {
    /// Starts `n` members of `bin` (a `tickraft-kv` executable) with default flags, and waits
    /// until each answers PING.
    pub(crate) fn start(bin: impl Into<PathBuf>, n: usize) -> Cluster {
        Cluster::start_with(bin, n, &[])
    }

    /// [`Cluster::start`], with `extra` flags for every member (`--snapshot-entries 50`).
    pub(crate) fn start_with(bin: impl Into<PathBuf>, n: usize, extra: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let raft = free_addrs(n);
        let client = free_addrs(n);
        let peers = raft
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let procs = (0..n)
            .map(|i| Proc {
                child: None,
                client: client[i],
                raft: raft[i],
                dir: tmp.path().join(format!("n{}", i + 1)),
                log: tmp.path().join(format!("n{}.log", i + 1)),
                join: None,
            })
            .collect();
        let mut c = Cluster {
            _tmp: tmp,
            bin: bin.into(),
            peers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            procs,
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_serving(i);
        }
        c
    }

    /// Starts a new member with the next id that joins through member `via`'s client address
    /// (`serve --join`), and waits until it answers PING; returns its position. It is a voter
    /// once [`Cluster::members`] says so.
    pub(crate) fn join(&mut self, via: usize) -> usize {
        let i = self.procs.len();
        let tmp = self._tmp.path();
        let raft = free_addrs(1)[0];
        let client = free_addrs(1)[0];
        self.procs.push(Proc {
            child: None,
            client,
            raft,
            dir: tmp.join(format!("n{}", i + 1)),
            log: tmp.join(format!("n{}.log", i + 1)),
            join: Some(self.procs[via].client),
        });
        self.spawn(i);
        self.wait_serving(i);
        i
    }

    /// The `serve` command line of member `i`, for a caller that runs it itself.
    pub(crate) fn command(&self, i: usize) -> Command {
        let p = &self.procs[i];
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve").arg("--id").arg((i + 1).to_string());
        match p.join {
            Some(via) => cmd
                .arg("--join")
                .arg(via.to_string())
                .arg("--raft-addr")
                .arg(p.raft.to_string()),
            None => cmd.arg("--peers").arg(&self.peers),
        };
        cmd.arg("--client")
            .arg(p.client.to_string())
            .arg("--data-dir")
            .arg(&p.dir)
            .args(&self.extra)
            .env("RUST_LOG", "info");
        cmd
    }

    /// Starts member `i`, from its data directory if it ran before; its output goes to its log.
    pub(crate) fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.procs[i].log)
            .expect("log file");
        let child = self
            .command(i)
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn tickraft-kv");
        self.procs[i].child = Some(child);
    }

    /// SIGKILL: no shutdown, no final sync.
    pub(crate) fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    /// A client connection to member `i`: see [`connect`].
    pub(crate) fn conn(&self, i: usize) -> redis::Connection {
        connect(self.procs[i].client)
    }

    /// Waits (30 s at most) until member `i` answers PING.
    pub(crate) fn wait_serving(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = redis::Client::open(format!("redis://{}/", self.procs[i].client))
                .ok()
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)).ok())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok())
                .is_some();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} does not serve; its log:\n{}",
                i + 1,
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything member `i` has written to stdout and stderr, over all its runs.
    pub(crate) fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.procs[i].log).unwrap_or_default()
    }

    /// Member `i`'s `INFO raft`, over a new connection; `None` if it does not answer.
    pub(crate) fn raft_info(&self, i: usize) -> Option<RaftInfo> {
        let mut con = redis::Client::open(format!("redis://{}/", self.procs[i].client))
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        let text: String = redis::cmd("INFO").arg("raft").query(&mut con).ok()?;
        RaftInfo::parse(&text)
    }

    /// Member `i`'s `INFO <section>` as `name -> value`, over a new connection; `None` if it
    /// does not answer.
    pub(crate) fn info(&self, i: usize, section: &str) -> Option<HashMap<String, String>> {
        let mut con = redis::Client::open(format!("redis://{}/", self.procs[i].client))
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        let text: String = redis::cmd("INFO").arg(section).query(&mut con).ok()?;
        Some(
            text.lines()
                .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// One numeric field of member `i`'s `INFO <section>`; panics if it is missing.
    pub(crate) fn info_u64(&self, i: usize, section: &str, name: &str) -> u64 {
        let info = self.info(i, section).expect("INFO answers");
        let v = info
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {info:?}"));
        v.parse().unwrap_or_else(|_| panic!("{name}:{v}"))
    }

    /// Member `i`'s `RAFT.MEMBERS`, as `(id, raft address, role)` sorted by id; `None` if it
    /// does not answer.
    pub(crate) fn members(&self, i: usize) -> Option<Vec<(u64, Option<String>, String)>> {
        let mut con = redis::Client::open(format!("redis://{}/", self.procs[i].client))
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        let mut m: Vec<(u64, Option<String>, String)> =
            redis::cmd("RAFT.MEMBERS").query(&mut con).ok()?;
        m.sort();
        Some(m)
    }

    /// Sends `RAFT.<args>` to member `i` until it answers something other than a retryable
    /// error (`TRYAGAIN`, `CLUSTERDOWN`, `TIMEOUT`, a failed connection), for 30 s at most.
    /// Returns the final answer: `Ok` with the reply, or `Err` with a final error's text.
    pub(crate) fn admin(&self, i: usize, args: &[&str]) -> Result<redis::Value, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reply = redis::Client::open(format!("redis://{}/", self.procs[i].client))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
                .and_then(|mut con| {
                    con.set_read_timeout(Some(Duration::from_secs(10)))?;
                    redis::cmd(args[0])
                        .arg(&args[1..])
                        .query::<redis::Value>(&mut con)
                });
            match reply {
                Ok(v) => return Ok(v),
                Err(e)
                    if !matches!(e.code(), Some("TRYAGAIN" | "CLUSTERDOWN" | "TIMEOUT"))
                        && !e.is_io_error() =>
                {
                    return Err(e.to_string())
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "{args:?} on node {} still fails after 30 s: {e}",
                        i + 1
                    );
                    eprintln!("{args:?} on node {}: {e}; retrying", i + 1);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (60 s at most) until `RAFT.MEMBERS` on member `i` lists exactly `voters`, all
    /// voters.
    pub(crate) fn wait_voters(&self, i: usize, voters: &[u64]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let members = self.members(i);
            if let Some(m) = &members {
                let ids: Vec<u64> = m.iter().map(|(id, _, _)| *id).collect();
                if ids == voters && m.iter().all(|(_, _, role)| role == "voter") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {} never lists exactly the voters {voters:?}: {members:?}\n{}",
                i + 1,
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every running node names the same leader; returns its position.
    pub(crate) fn wait_leader(&self) -> usize {
        self.wait_leader_polling(Duration::from_millis(20))
    }

    /// [`Cluster::wait_leader`], asking every `interval`: a benchmark that times an election
    /// wants a finer one than a test.
    pub(crate) fn wait_leader_polling(&self, interval: Duration) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let infos: Vec<Option<RaftInfo>> = (0..self.procs.len())
                .map(|i| {
                    if self.procs[i].child.is_some() {
                        self.raft_info(i)
                    } else {
                        None
                    }
                })
                .collect();
            let running: Vec<&RaftInfo> = infos.iter().flatten().collect();
            if let Some(l) = running.iter().find(|r| r.role == "leader") {
                if running.iter().all(|r| r.leader_id == l.node_id) {
                    return l.node_id as usize - 1;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {infos:?}");
            std::thread::sleep(interval);
        }
    }

    /// Waits (30 s at most) until member `i` reports `applied_index >= index`.
    pub(crate) fn wait_applied(&self, i: usize, index: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(r) = self.raft_info(i) {
                if r.applied_index >= index {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the restarted node does not catch up:\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill9(i);
        }
    }
}

/// The `# Raft` section of `INFO`, every field of it.
#[derive(Debug, Default)]
pub(crate) struct RaftInfo {
    pub(crate) node_id: u64,
    pub(crate) role: String,
    pub(crate) term: u64,
    pub(crate) leader_id: u64,
    pub(crate) commit_index: u64,
    pub(crate) applied_index: u64,
    /// Member ids, comma-separated.
    pub(crate) members: String,
}

impl RaftInfo {
    /// Parses the `# Raft` section of `INFO` output; `None` unless it holds exactly these seven
    /// fields, so that a renamed or added field is never read as a default.
    pub(crate) fn parse(text: &str) -> Option<RaftInfo> {
        let mut r = RaftInfo::default();
        let mut seen = 0;
        let mut in_raft = false;
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.starts_with('#') {
                in_raft = line == "# Raft";
                continue;
            }
            if !in_raft {
                continue;
            }
            let (k, v) = line.split_once(':')?;
            seen += 1;
            match k {
                "node_id" => r.node_id = v.parse().ok()?,
                "role" => r.role = v.to_string(),
                "term" => r.term = v.parse().ok()?,
                "leader_id" => r.leader_id = v.parse().ok()?,
                "commit_index" => r.commit_index = v.parse().ok()?,
                "applied_index" => r.applied_index = v.parse().ok()?,
                "members" => r.members = v.to_string(),
                _ => return None,
            }
        }
        (seen == 7).then_some(r)
    }
}

/// A SET that reports whether it was acknowledged (`Ok(true)`), refused with a definite
/// "not done" (`Ok(false)`: CLUSTERDOWN), or has an unknown outcome (`Err`).
pub(crate) fn try_set(con: &mut redis::Connection, k: &str, v: &str) -> Result<bool, String> {
    match redis::cmd("SET").arg(k).arg(v).query::<String>(con) {
        Ok(s) if s == "OK" => Ok(true),
        Ok(s) => Err(format!("unexpected reply {s}")),
        Err(e) if e.code() == Some("CLUSTERDOWN") => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}
