//! Majority arithmetic, kept pure so it can be tested from tables.

/// Outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// Votes needed out of `n` voters.
pub(crate) const fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The largest value that a majority of `values` is at or above (0 for no values). Reorders
/// `values`.
pub(crate) fn majority_value(values: &mut [u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[majority(values.len()) - 1]
}

pub(crate) fn vote_result(granted: usize, rejected: usize, n: usize) -> VoteResult {
    let q = majority(n);
    if granted >= q {
        VoteResult::Won
    } else if rejected > n - q {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_value_table() {
        let cases: &[(&[u64], u64)] = &[
            (&[], 0),
            (&[5], 5),
            (&[5, 3], 3),
            (&[5, 3, 1], 3),
            (&[1, 5, 3, 9], 3),
            (&[2, 2, 8, 8, 1], 2),
            (&[7, 7, 7, 1, 1], 7),
        ];
        for (vals, want) in cases {
            let mut v: heapless::Vec<u64, 8> = vals.iter().copied().collect();
            assert_eq!(majority_value(&mut v), *want, "{vals:?}");
        }
    }

    #[test]
    fn vote_result_table() {
        use VoteResult::*;
        let cases = [
            (1, 0, 1, Won),
            (1, 0, 3, Pending),
            (2, 0, 3, Won),
            (1, 2, 3, Lost),
            (1, 1, 3, Pending),
            (2, 2, 5, Pending),
            (2, 3, 5, Lost),
            (3, 0, 5, Won),
            (2, 2, 4, Lost),
            (1, 2, 4, Lost),
        ];
        for (g, r, n, want) in cases {
            assert_eq!(vote_result(g, r, n), want, "{g} {r} {n}");
        }
    }
}
