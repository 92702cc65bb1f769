//! raft-core allocates nothing: a three-node cluster (the benchmark's, `benches/cluster/`)
//! commits entries in steady state without a single heap allocation, on any node, in the
//! network or in the host loop. A counting global allocator checks it.
#![allow(unsafe_code)] // the counting allocator below; raft-core itself forbids unsafe code

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

#[path = "../benches/cluster/mod.rs"]
mod cluster;

use cluster::Cluster;

/// Counts allocations made by threads that have switched counting on, so that the test
/// harness's own threads do not interfere.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // `try_with`: the thread-local may already be gone while a thread shuts down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only an
// atomic and a const-initialised thread-local without destructor, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from this allocator, that is from System, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) made by this thread while `f` runs.
fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

const WARM_UP: u64 = 10_000;
const ENTRIES: u64 = 100_000;

fn steady_state_allocates_nothing(inflight: u64) {
    let mut cluster = Cluster::new();
    cluster.elect();
    cluster.run(WARM_UP, inflight);
    let before = cluster.applied()[0].count;
    let allocations = allocations_during(|| cluster.run(ENTRIES, inflight));
    let committed = cluster.applied()[0].count - before;
    println!(
        "{inflight} in flight: {committed} entries committed, {allocations} allocations, {} \
         allocations/entry",
        allocations as f64 / committed as f64
    );
    assert!(committed >= ENTRIES);
    assert_eq!(
        allocations, 0,
        "heap allocations while committing {committed} entries with {inflight} in flight"
    );
    // And the loop measured is a correct one: every node applied every proposal, the same way.
    cluster.drain();
    let applied = cluster.applied();
    assert_eq!(applied[0].count, cluster.proposals());
    assert!(applied.iter().all(|a| *a == applied[0]), "{applied:?}");
}

#[test]
fn no_allocation_per_entry_with_1_in_flight() {
    steady_state_allocates_nothing(1);
}

#[test]
fn no_allocation_per_entry_with_256_in_flight() {
    steady_state_allocates_nothing(256);
}

/// The counter itself works: a loop that does allocate is caught.
#[test]
fn counter_sees_allocations() {
    let n = allocations_during(|| {
        for i in 0..10 {
            std::hint::black_box(vec![i; 4]);
        }
    });
    assert_eq!(n, 10);
}
