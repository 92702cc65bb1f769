//! The host's replicated state machine.

use std::io;

use raft_core::Index;

/// What a [`Node`](crate::Node) replicates: a deterministic state machine that every member
/// applies the same committed commands to, in the same order.
///
/// Commands, queries and responses are plain bytes, so that hosts in C or Python fit the same
/// shape; a Rust host encodes its own types (see tickraft-kv).
pub trait StateMachine: Send + 'static {
    /// Applies a committed command and returns the response for whoever proposed it.
    ///
    /// Must be deterministic: the same commands in the same order give the same state on every
    /// member. `index` is the command's position in the log (increasing, with gaps where the
    /// log holds entries that are not commands).
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8>;

    /// Answers a read-only query from the current state. The node calls it only once the state
    /// machine has applied everything committed when the read was confirmed (ReadIndex), so the
    /// answer is linearizable.
    fn query(&self, query: &[u8]) -> Vec<u8>;

    /// Writes the whole current state to `out`, in a form [`restore`](StateMachine::restore)
    /// reads back. The node streams it into a snapshot file (which it checksums, fsyncs and
    /// sends to followers that need it), so it need not fit in memory at once. The node thread
    /// waits for it: a state of many megabytes holds the node up for the time it takes to
    /// write.
    fn snapshot(&self, out: &mut dyn io::Write) -> io::Result<()>;

    /// Replaces the whole state by what [`snapshot`](StateMachine::snapshot) wrote to `input`
    /// (on this node or another). Refuse input it did not write with an error: the node stops
    /// rather than run with a state it cannot trust.
    fn restore(&mut self, input: &mut dyn io::Read) -> io::Result<()>;
}
