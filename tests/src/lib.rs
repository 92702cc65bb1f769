//! Shared helpers for the simulation suites in `tests/tests/`.
//!
//! Every randomised test runs over a range of seeds; a failure names its seed, and
//! `TICKRAFT_SEED=<seed>` runs that one seed alone, replaying the failure exactly.
//! `TICKRAFT_SOAK=<n>` multiplies the number of seeds, for long runs.

use std::fmt::Display;

/// The seeds to run: `TICKRAFT_SEED` alone if set, else `0..count * TICKRAFT_SOAK`.
pub fn seeds(count: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("TICKRAFT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let soak: u64 = std::env::var("TICKRAFT_SOAK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    (0..count * soak.max(1)).collect()
}

/// Runs `f` for each of [`seeds`]`(count)`; on the first failure, panics with the seed and the
/// command that replays it.
pub fn for_seeds<E: Display>(test: &str, count: u64, mut f: impl FnMut(u64) -> Result<(), E>) {
    for seed in seeds(count) {
        if let Err(e) = f(seed) {
            panic!(
                "{test} failed with seed {seed}:\n{e}\nreplay: TICKRAFT_SEED={seed} cargo test -p tickraft-tests {test}"
            );
        }
    }
}

/// `NodeId(n)`, shorter.
pub fn n(id: u64) -> raft_core::NodeId {
    raft_core::NodeId(id)
}
