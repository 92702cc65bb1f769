//! Exponential backoff with jitter between redials of one peer.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// After the `n`th failure in a row the wait is uniform in `[min, min(max, min * 2^(n+1))]`:
/// never shorter than `min` nor longer than `max`, growing on average, and spread out so that the
/// members of a cluster that all lost the same peer do not redial it in lockstep.
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    rng: u64,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Backoff {
        // std's per-process random hash keys are the only entropy std offers; that is plenty
        // for jitter. The seed must not be zero for xorshift.
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
            rng: h.finish() | 1,
        }
    }

    /// The connection worked: the next failure waits about `min` again.
    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }

    /// How many failures in a row so far.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub(super) fn next_delay(&mut self) -> Duration {
        let doublings = self.failures.saturating_add(1).min(30);
        self.failures = self.failures.saturating_add(1);
        let upper = self
            .min
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max));
        let span = (upper - self.min).as_nanos();
        let jitter = if span == 0 {
            0
        } else {
            u128::from(self.next_u64()) % (span + 1)
        };
        // jitter <= span, so min + jitter <= upper <= max; saturate rather than trust that.
        let jitter = Duration::from_nanos(u64::try_from(jitter).unwrap_or(u64::MAX));
        self.min.saturating_add(jitter).min(self.max)
    }

    /// xorshift64*: fast and good enough to spread redials.
    fn next_u64(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_bounds_and_grow() {
        let min = Duration::from_millis(20);
        let max = Duration::from_secs(1);
        let mut b = Backoff::new(min, max);
        let mut first = Vec::new();
        for _ in 0..3 {
            first.push(b.next_delay());
        }
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(d >= min && d <= max, "{d:?}");
        }
        // The first waits are bounded by min * 2, * 4, * 8.
        for (i, d) in first.iter().enumerate() {
            assert!(*d >= min && *d <= min * (2 << i), "attempt {i}: {d:?}");
        }
        assert_eq!(b.failures(), 103);
        b.reset();
        assert!(b.next_delay() <= min * 2);
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut b = Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
        for _ in 0..10 {
            b.next_delay();
        }
        let waits: std::collections::HashSet<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(waits.len() > 10, "{waits:?}");
    }

    #[test]
    fn equal_bounds_and_huge_counts_do_not_overflow() {
        let d = Duration::from_millis(5);
        let mut b = Backoff::new(d, d);
        for _ in 0..100 {
            assert_eq!(b.next_delay(), d);
        }
        let mut b = Backoff::new(Duration::from_secs(1 << 40), Duration::MAX);
        for _ in 0..40 {
            b.next_delay();
        }
    }
}
