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
    /// waits for it, unless [`snapshot_view`](StateMachine::snapshot_view) offers a way out: a
    /// state of many megabytes holds the node up for the time it takes to write.
    fn snapshot(&self, out: &mut dyn io::Write) -> io::Result<()>;

    /// A frozen view of the current state that can be written to a snapshot on another thread
    /// while this state machine goes on applying, if the state machine can make one cheaply
    /// (copy-on-write). The node then takes its automatic snapshots without waiting for the
    /// write; `None` (the default) has it call [`snapshot`](StateMachine::snapshot) on its
    /// own thread. The view must write what `snapshot` would have written at this moment.
    fn snapshot_view(&self) -> Option<Box<dyn SnapshotView>> {
        None
    }

    /// Replaces the whole state by what [`snapshot`](StateMachine::snapshot) wrote to `input`
    /// (on this node or another). Refuse input it did not write with an error: the node stops
    /// rather than run with a state it cannot trust.
    fn restore(&mut self, input: &mut dyn io::Read) -> io::Result<()>;
}

/// A frozen state, written to a snapshot off the node thread (see
/// [`StateMachine::snapshot_view`]).
pub trait SnapshotView: Send + 'static {
    /// Writes the state in the form [`StateMachine::restore`] reads.
    fn write_to(&mut self, out: &mut dyn io::Write) -> io::Result<()>;
}
