//! Every size limit of the server, in one place.
//!
//! The limits are chosen so that any request the parser accepts encodes to a command the node
//! accepts: a multibulk argument costs at least 6 bytes of framing on the wire (`$0\r\n` and
//! `\r\n`) and at most 3 bytes of length prefix in the log encoding (a varint of a length below
//! 2^21), and an encoded command adds at most [`COMMAND_OVERHEAD`] bytes of header, so an
//! accepted request of at most [`MAX_REQUEST_BYTES`] always fits in [`MAX_COMMAND_BYTES`]. A
//! transaction (`MULTI` ... `EXEC`) is checked against [`MAX_COMMAND_BYTES`] as it is queued.
//! An inline line is at most [`MAX_INLINE_BYTES`], and its encoding at most twice that (a
//! one-byte argument costs two bytes either way; longer ones cost less than double).
//!
//! What one connection can hold at once: its read buffer ([`MAX_READ_BUFFER_BYTES`]), one
//! partial request ([`MAX_REQUEST_BYTES`], grown as its bytes arrive, not from declared
//! lengths), one queued transaction ([`MAX_COMMAND_BYTES`]) and one reply ([`MAX_REPLY_BYTES`]),
//! so about 17 MiB at worst and a few KiB when idle; the server holds at most `--max-clients`
//! connections. The store itself is not bounded: keys are kept until deleted.

/// The largest command proposed to the node: `raft_std::NodeConfig`'s default
/// `max_command_bytes`, which `serve` and `demo` set explicitly to this value.
pub const MAX_COMMAND_BYTES: usize = 512 * 1024;

/// The most bytes a command's encoding adds to its arguments: version, kind, opcode, flags,
/// counts. Generous; the real figure is below 16.
pub const COMMAND_OVERHEAD: usize = 64;

/// The most bytes of one request as it arrives on the wire (headers, lengths and data of a
/// multibulk request). Checked from the declared lengths before any data is buffered.
pub const MAX_REQUEST_BYTES: usize = MAX_COMMAND_BYTES - 1024;

/// The longest bulk string (one argument, so one key or value).
pub const MAX_BULK_BYTES: usize = MAX_REQUEST_BYTES - 1024;

/// The most arguments of one multibulk request.
pub const MAX_ARRAY_LEN: usize = 65536;

/// The longest inline command line (`PING\r\n` typed into telnet), terminator excluded.
pub const MAX_INLINE_BYTES: usize = 64 * 1024;

/// The longest `*<count>\r\n` or `$<len>\r\n` header line, terminator included: room for a
/// sign and 20 digits. Anything longer is not a number the parser would accept.
pub const MAX_HEADER_LINE_BYTES: usize = 32;

/// The most bytes a connection's read buffer grows to: one whole inline line with its
/// terminator. Bulk data is copied out of the buffer as it arrives, so it needs no more.
pub const MAX_READ_BUFFER_BYTES: usize = MAX_INLINE_BYTES + 2;

/// The most commands queued by one `MULTI`.
pub const MAX_MULTI_COMMANDS: usize = 1000;

/// The largest reply the state machine builds (for `MGET`, or an `EXEC` of many reads of large
/// values). Past it the reply is an error instead; the writes of a transaction still apply.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// The most `RAFT.*` changes and snapshots a server has with its node at once. Each waits on a
/// thread of the runtime's blocking pool for up to the request timeout; one more is answered
/// `-TRYAGAIN`. The node carries out one membership change at a time anyway.
pub const MAX_ADMIN_IN_FLIGHT: usize = 8;

/// Default for `--max-clients`: connections served at once. One more is told
/// `-ERR max number of clients reached` and closed.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;

// The arithmetic the module docs rely on.
const _: () = assert!(MAX_REQUEST_BYTES + COMMAND_OVERHEAD <= MAX_COMMAND_BYTES);
const _: () = assert!(MAX_BULK_BYTES < MAX_REQUEST_BYTES);
const _: () = assert!(MAX_REQUEST_BYTES < 1 << 21);
const _: () = assert!(MAX_INLINE_BYTES + COMMAND_OVERHEAD <= MAX_COMMAND_BYTES / 2);
