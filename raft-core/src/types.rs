//! Newtypes for the three numbers Raft is made of.

use core::fmt;

use serde::{Deserialize, Serialize};

macro_rules! newtype {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw number.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                $name(v)
            }
        }
    };
}

newtype!(
    /// Identifies one member of the cluster. `NodeId(0)` is reserved to mean "nobody" on the
    /// wire and in [`HardState::vote`](crate::HardState); configurations reject it.
    NodeId,
    "n"
);
newtype!(
    /// A Raft term: a logical clock that increases with every election (Raft §5.1).
    Term,
    "t"
);
newtype!(
    /// The position of an entry in the replicated log. The first entry has index 1; index 0 is
    /// the empty prefix, whose term is 0.
    Index,
    "i"
);

impl NodeId {
    /// "Nobody": no vote cast, no leader known.
    pub const NONE: NodeId = NodeId(0);

    /// Whether this is [`NodeId::NONE`].
    #[inline]
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl Term {
    /// The term before any election.
    pub const ZERO: Term = Term(0);
}

impl Index {
    /// The empty prefix of every log.
    pub const ZERO: Index = Index(0);

    /// The next index. Saturates rather than wraps: a log of 2^64 entries is not reachable.
    #[inline]
    pub const fn next(self) -> Index {
        Index(self.0.saturating_add(1))
    }

    /// The previous index, or 0.
    #[inline]
    pub const fn prev(self) -> Index {
        Index(self.0.saturating_sub(1))
    }

    /// `self + n`, saturating.
    #[inline]
    pub const fn plus(self, n: u64) -> Index {
        Index(self.0.saturating_add(n))
    }
}
