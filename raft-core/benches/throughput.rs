//! Committed entries per second of a three-node cluster in one thread, with 1 and with 256
//! proposals in flight (16-byte entries). The cluster and its event loop are in `cluster/`,
//! shared with `tests/alloc.rs`, which proves the same loop allocates nothing per entry.
//!
//! Run with `cargo bench -p raft-core --bench throughput`; criterion reports elements/s, one
//! element being one entry committed and applied at the leader.
#![allow(missing_docs)] // `criterion_group!` defines an undocumented `pub fn`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod cluster;

use cluster::Cluster;

/// Entries committed per measured iteration.
const BATCH: u64 = 10_000;

fn throughput(c: &mut Criterion) {
    for inflight in [1u64, 256] {
        let mut group = c.benchmark_group(format!("inflight_{inflight}"));
        group.throughput(Throughput::Elements(BATCH));
        let mut cluster = Cluster::new();
        cluster.elect();
        cluster.run(10 * BATCH, inflight);
        group.bench_function("commit_16B", |b| b.iter(|| cluster.run(BATCH, inflight)));
        group.finish();
        // The loop is only worth measuring if it replicates correctly.
        cluster.drain();
        let applied = cluster.applied();
        assert!(applied.iter().all(|a| *a == applied[0]), "{applied:?}");
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
