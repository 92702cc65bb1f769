//! Client histories checked for linearizability (DESIGN.md, testing layer 5): six clients, two
//! on each of three real `tickraft-kv serve` processes, read and write three registers
//! concurrently while the leader is killed with SIGKILL. Every key's history of invocations and
//! completions (as the clients saw them) must be explainable by some order of the operations
//! that respects real time, a register's semantics, and each operation's outcome: the check a
//! reader on a follower would fail if ReadIndex were skipped, or a write acknowledged before it
//! committed.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_tickraft-kv");
const KEYS: usize = 3;

#[derive(Clone, Debug)]
enum Kind {
    /// `SET key value`; values are unique per history, so a read names the write it saw.
    Write(u64),
    /// `GET key` returned this (`None`: the key did not exist).
    Read(Option<u64>),
}

#[derive(Clone, Debug)]
struct Op {
    kind: Kind,
    start: Instant,
    /// `None`: the outcome is unknown (`-TIMEOUT` or a dropped connection). Such a write may
    /// take effect at any point after its start, or never.
    end: Option<Instant>,
}

/// Whether `ops` (one register, initially absent) is linearizable: a depth-first search over
/// which pending operation takes effect next (Wing and Gong's algorithm), remembering the
/// (operations done, value) states already explored, as Lowe's refinement does.
fn linearizable(ops: &[Op]) -> bool {
    let n = ops.len();
    let words = n.div_ceil(64);
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    // (done set, register value), explored depth first.
    let mut stack = vec![(vec![0u64; words], None::<u64>)];
    let is_done = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
    while let Some((done, value)) = stack.pop() {
        // Everything that completed has taken effect: a valid order exists. (Writes with an
        // unknown outcome left over simply never took effect.)
        let earliest_end = (0..n)
            .filter(|&i| !is_done(&done, i))
            .filter_map(|i| ops[i].end)
            .min();
        let Some(earliest_end) = earliest_end else {
            return true;
        };
        // The next to take effect must have started before every pending operation that has
        // completed ended (otherwise that one came strictly first in real time).
        for i in 0..n {
            if is_done(&done, i) || ops[i].start > earliest_end {
                continue;
            }
            let next_value = match ops[i].kind {
                Kind::Write(v) => Some(v),
                Kind::Read(r) if r == value => value,
                Kind::Read(_) => continue,
            };
            let mut next = done.clone();
            next[i / 64] |= 1 << (i % 64);
            if seen.insert((next.clone(), next_value)) {
                stack.push((next, next_value));
            }
        }
    }
    false
}

#[test]
fn checker_accepts_and_refuses_what_it_should() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let op = |kind, s, e: Option<u64>| Op {
        kind,
        start: at(s),
        end: e.map(at),
    };
    // Sequential write then read of it: fine; a read of a value never written: not.
    assert!(linearizable(&[
        op(Kind::Write(1), 0, Some(1)),
        op(Kind::Read(Some(1)), 2, Some(3)),
    ]));
    assert!(!linearizable(&[
        op(Kind::Write(1), 0, Some(1)),
        op(Kind::Read(Some(2)), 2, Some(3)),
    ]));
    // A stale read after a completed write: refused (what a follower serving reads from its
    // own state without ReadIndex could return).
    assert!(!linearizable(&[
        op(Kind::Write(1), 0, Some(1)),
        op(Kind::Write(2), 2, Some(3)),
        op(Kind::Read(Some(1)), 4, Some(5)),
    ]));
    // Concurrent write and read: either value may be read.
    assert!(linearizable(&[
        op(Kind::Write(1), 0, Some(1)),
        op(Kind::Write(2), 2, Some(6)),
        op(Kind::Read(Some(1)), 3, Some(4)),
        op(Kind::Read(Some(2)), 5, Some(7)),
    ]));
    // Once a newer value was read, an older one cannot be read again.
    assert!(!linearizable(&[
        op(Kind::Write(1), 0, Some(1)),
        op(Kind::Write(2), 2, Some(10)),
        op(Kind::Read(Some(2)), 3, Some(4)),
        op(Kind::Read(Some(1)), 5, Some(6)),
    ]));
    // A write with an unknown outcome may have happened, late, or not at all.
    assert!(linearizable(&[
        op(Kind::Write(1), 0, None),
        op(Kind::Read(None), 2, Some(3)),
        op(Kind::Read(Some(1)), 4, Some(5)),
    ]));
    assert!(linearizable(&[
        op(Kind::Write(1), 0, None),
        op(Kind::Read(None), 2, Some(3))
    ]));
    // But not before it started.
    assert!(!linearizable(&[
        op(Kind::Read(Some(1)), 0, Some(1)),
        op(Kind::Write(1), 2, None),
    ]));
}

/// One client's loop: random reads and writes of random keys through one node.
fn client(
    c: &Cluster,
    node: usize,
    id: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(usize, Op)>> {
    let addr = c.procs[node].client;
    std::thread::spawn(move || {
        let mut history = Vec::new();
        let mut con = support::connect(addr);
        let mut rng = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Independent bits for the key and the kind of operation.
            let key = ((rng >> 8) % KEYS as u64) as usize;
            let start = Instant::now();
            if (rng >> 24).is_multiple_of(3) {
                let r: redis::RedisResult<Option<String>> =
                    redis::cmd("GET").arg(format!("lin{key}")).query(&mut con);
                if let Ok(v) = r {
                    let v = v.map(|s| s.parse::<u64>().expect("values are numbers"));
                    history.push((
                        key,
                        Op {
                            kind: Kind::Read(v),
                            start,
                            end: Some(Instant::now()),
                        },
                    ));
                }
                // A failed read constrains nothing.
            } else {
                seq += 1;
                let value = id * 1_000_000 + seq;
                let r: redis::RedisResult<String> = redis::cmd("SET")
                    .arg(format!("lin{key}"))
                    .arg(value)
                    .query(&mut con);
                let end = match &r {
                    Ok(_) => Some(Instant::now()),
                    // CLUSTERDOWN: nothing was done.
                    Err(e) if e.code() == Some("CLUSTERDOWN") => continue,
                    Err(_) => None,
                };
                history.push((
                    key,
                    Op {
                        kind: Kind::Write(value),
                        start,
                        end,
                    },
                ));
                if r.is_err() && !matches!(&r, Err(e) if e.code().is_some()) {
                    // The connection broke (its node was killed): reconnect elsewhere is not
                    // this client's job; it stops.
                    break;
                }
            }
        }
        history
    })
}

#[test]
fn histories_through_every_node_are_linearizable_across_a_leader_kill() {
    check_across_a_leader_kill(Cluster::start(BIN, 3));
}

/// The same with `--read-lease`: the leader answers reads from its lease, with no round,
/// while followers' reads still go through it.
#[test]
fn histories_with_lease_reads_are_linearizable_across_a_leader_kill() {
    let c = check_across_a_leader_kill(Cluster::start_with(BIN, 3, &["--read-lease"]));
    let lease_reads: u64 = (0..3)
        .filter(|&i| c.procs[i].child.is_some())
        .map(|i| c.info_u64(i, "stats", "lease_reads"))
        .sum();
    assert!(lease_reads > 0, "no read was served from a lease");
}

fn check_across_a_leader_kill(mut c: Cluster) -> Cluster {
    let leader = c.wait_leader();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6u64)
        .map(|id| client(&c, id as usize % 3, id + 1, stop.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    c.kill9(leader);
    c.wait_leader();
    std::thread::sleep(Duration::from_millis(1200));
    stop.store(true, Ordering::Relaxed);
    let mut per_key: Vec<Vec<Op>> = vec![Vec::new(); KEYS];
    for h in clients {
        for (key, op) in h.join().expect("client") {
            per_key[key].push(op);
        }
    }
    for (key, ops) in per_key.iter().enumerate() {
        let reads = ops
            .iter()
            .filter(|o| matches!(o.kind, Kind::Read(_)))
            .count();
        let unknown = ops.iter().filter(|o| o.end.is_none()).count();
        eprintln!(
            "lin{key}: {} operations, {reads} reads, {unknown} unknown",
            ops.len()
        );
        assert!(reads > 10 && ops.len() > 30, "too little happened to check");
        assert!(
            linearizable(ops),
            "the history of lin{key} is not linearizable"
        );
    }
    c
}
