//! Failover after kill -9 of the leader, measured on three real `tickraft-kv serve` processes
//! on loopback (fsync on, default flags). Each round, a client streams SETs through a follower,
//! the leader gets SIGKILL, and two times are taken from the kill:
//!
//! - *new leader*: until `INFO raft` on both survivors names the same new leader (polled every
//!   2 ms);
//! - *first SET*: until the first acknowledgement of a SET sent after the kill. A SET sent
//!   before is left out: its reply may have left the old leader before it died.
//!
//! The killed node then restarts from its data directory and must apply everything the new
//! leader has committed before the next round. At the end, every acknowledged SET is read back
//! with MGET from every node. A benchmark, not a test: the figures depend on the machine.
//!
//! ```text
//! cargo build --release -p tickraft-kv
//! cargo run --release -p tickraft-kv --example failover [-- PATH/TO/tickraft-kv]
//! ```
//!
//! `scripts/bench-kv.sh` runs it. Without a path it runs `target/release/tickraft-kv` of this
//! workspace (under `CARGO_TARGET_DIR` if that is set), which it does not build.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{connect, try_set, Cluster};

const ROUNDS: usize = 5;
/// Acknowledged SETs before each kill, so that the stream is in its steady state.
const WARMUP_ACKS: usize = 200;
/// How long the stream goes on after it has resumed, so that the new leader takes writes too.
const AFTER_RESUME: Duration = Duration::from_millis(200);
/// How often the survivors are asked for their leader.
const POLL: Duration = Duration::from_millis(2);

fn main() {
    let bin = binary();
    if !bin.is_file() {
        eprintln!(
            "no {}: build it with `cargo build --release -p tickraft-kv`, or pass its path",
            bin.display()
        );
        std::process::exit(2);
    }
    let mut c = Cluster::start(&bin, 3);
    println!(
        "3 nodes on loopback, fsync on, default flags; a client streams SETs through a \
         follower; times are from the kill"
    );
    let mut rounds = Vec::new();
    let mut written = Vec::new(); // (round, key numbers acknowledged)
    let (mut refused, mut unknown) = (0, 0);
    for round in 1..=ROUNDS {
        let leader = c.wait_leader();
        let through = (leader + 1) % 3;
        let writer = Writer::start(c.procs[through].client, round);
        writer.wait_acks(WARMUP_ACKS);

        let killed_at = Instant::now();
        c.kill9(leader);
        let new_leader = c.wait_leader_polling(POLL);
        let elected = killed_at.elapsed();
        let resumed = writer.wait_first_ack_sent_after(killed_at) - killed_at;
        std::thread::sleep(AFTER_RESUME);
        let (acked, tally) = writer.stop();
        refused += tally.refused;
        unknown += tally.unknown;
        written.push((round, acked));

        let restarted_at = Instant::now();
        c.spawn(leader);
        c.wait_serving(leader);
        let target = c.raft_info(new_leader).expect("INFO raft").commit_index;
        c.wait_applied(leader, target);
        let caught_up = restarted_at.elapsed();

        println!(
            "round {round}: killed n{}, new leader n{} after {:>4} ms, first SET acked after \
             {:>4} ms; n{} restarted, caught up in {} ms",
            leader + 1,
            new_leader + 1,
            elected.as_millis(),
            resumed.as_millis(),
            leader + 1,
            caught_up.as_millis(),
        );
        rounds.push((elected, resumed));
    }

    let (mut elected, mut resumed): (Vec<Duration>, Vec<Duration>) = rounds.into_iter().unzip();
    elected.sort();
    resumed.sort();
    let mid = ROUNDS / 2;
    for (what, times) in [("new leader", &elected), ("first SET acked", &resumed)] {
        println!(
            "{what:<15}  median {:>4} ms  max {:>4} ms",
            times[mid].as_millis(),
            times[ROUNDS - 1].as_millis(),
        );
    }

    let total: usize = written.iter().map(|(_, acked)| acked.len()).sum();
    let lost = lost_writes(&c, &written);
    drop(c); // `exit` below would skip the kill of the processes
    let others = format!("{unknown} more had an unknown outcome, {refused} were refused");
    if lost.is_empty() {
        println!("{total} SETs acknowledged, all read back from every node ({others})");
    } else {
        println!(
            "LOST: {} of {total} acknowledged SETs ({others}):",
            lost.len()
        );
        for line in lost.iter().take(10) {
            println!("  {line}");
        }
        std::process::exit(1);
    }
}

/// The server binary: the first argument, else this workspace's release build.
fn binary() -> PathBuf {
    if let Some(path) = std::env::args_os().nth(1) {
        return path.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .nth(2)
                .expect("the package is examples/kv in the workspace")
                .join("target")
        });
    target.join("release").join("tickraft-kv")
}

/// Every acknowledged SET that some node does not return, as "key on node: value".
fn lost_writes(c: &Cluster, written: &[(usize, Vec<u64>)]) -> Vec<String> {
    let mut lost = Vec::new();
    for i in 0..c.procs.len() {
        let mut con = c.conn(i);
        for (round, acked) in written {
            for chunk in acked.chunks(500) {
                let keys: Vec<String> = chunk.iter().map(|k| key(*round, *k)).collect();
                let vals: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&keys).query(&mut con).expect("MGET");
                for ((k, key), v) in chunk.iter().zip(keys).zip(vals) {
                    if v != Some(k.to_string()) {
                        lost.push(format!("{key} on n{}: {v:?}", i + 1));
                    }
                }
            }
        }
    }
    lost
}

/// Round `round`'s `k`th SET sets this key to `k`.
fn key(round: usize, k: u64) -> String {
    format!("f{round}:{k}")
}

/// A SET the cluster acknowledged.
struct Ack {
    k: u64,
    sent: Instant,
    acked: Instant,
}

/// SETs that were not acknowledged.
#[derive(Debug, Default)]
struct Tally {
    /// Refused with CLUSTERDOWN: not done.
    refused: u64,
    /// Failed with TIMEOUT or another error: maybe done, maybe not.
    unknown: u64,
}

/// One client on its own thread, sending SETs one after the other through one node.
struct Writer {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    thread: JoinHandle<Tally>,
}

impl Writer {
    fn start(addr: SocketAddr, round: usize) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, acks) = (stop.clone(), acks.clone());
            std::thread::spawn(move || {
                let mut con = connect(addr);
                let mut tally = Tally::default();
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    match try_set(&mut con, &key(round, k), &k.to_string()) {
                        Ok(true) => acks.lock().expect("lock").push(Ack {
                            k,
                            sent,
                            acked: Instant::now(),
                        }),
                        Ok(false) => {
                            tally.refused += 1;
                            // No leader yet: try again soon, as a client would, without
                            // spinning on a node that is busy electing one.
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(_) => {
                            tally.unknown += 1;
                            if !redis::ConnectionLike::is_open(&con) {
                                con = connect(addr);
                            }
                        }
                    }
                    k += 1;
                }
                tally
            })
        };
        Writer { stop, acks, thread }
    }

    /// Waits (30 s at most) until `n` SETs have been acknowledged.
    fn wait_acks(&self, n: usize) {
        self.wait_for("writes do not flow", |acks| (acks.len() >= n).then_some(()));
    }

    /// Waits (30 s at most) for the acknowledgement of a SET sent after `t`; returns when it
    /// came.
    fn wait_first_ack_sent_after(&self, t: Instant) -> Instant {
        self.wait_for("no SET acknowledged within 30 s of the kill", |acks| {
            acks.iter().find(|a| a.sent > t).map(|a| a.acked)
        })
    }

    fn wait_for<T>(&self, what: &str, mut f: impl FnMut(&[Ack]) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = f(&self.acks.lock().expect("lock")) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the stream; returns the key numbers acknowledged and what was not.
    fn stop(self) -> (Vec<u64>, Tally) {
        self.stop.store(true, Ordering::Relaxed);
        let tally = self.thread.join().expect("writer");
        let acks = self.acks.lock().expect("lock");
        (acks.iter().map(|a| a.k).collect(), tally)
    }
}
