//! # tickraft-kv: a replicated key-value and counter server speaking RESP2
//!
//! Each member runs a [`raft_std::Node`] whose state machine is a [`store::KvStore`], and a
//! [`server::Server`] that speaks the Redis protocol to clients (`redis-cli`, `redis-benchmark`,
//! the `redis` libraries). Any member serves any command: writes are proposed (raft-std
//! forwards them to the leader), reads outside a transaction are linearizable reads (ReadIndex,
//! on followers too).
//!
//! The pieces, in the order a request meets them:
//!
//! - [`resp`]: the incremental RESP2 parser (multibulk and inline) and the reply writers;
//! - [`command`]: what the arguments mean;
//! - [`codec`]: the versioned binary encoding of data operations for the log;
//! - [`server`] (tokio tasks) and its per-connection session: dispatch, `MULTI`/`EXEC`, `INFO`,
//!   errors;
//! - [`backend`]: the node as the server needs it, so that the server is testable without Raft
//!   ([`backend::LocalBackend`]);
//! - [`store`]: the state machine, whose replies are the RESP bytes sent to the client, and
//!   [`snapshot`], its whole state as one stream for Raft snapshots;
//! - [`limits`]: every size limit, chosen so that an accepted request fits in a command;
//! - [`cli`]: `serve` (founding a cluster with `--peers`, or joining one with `--join`, which
//!   asks a member through [`client`], a minimal blocking RESP client), `demo`, `serve-local`.
//!
//! ## Commands
//!
//! `PING [msg]`, `ECHO`, `GET`, `SET key value [NX|XX|IFEQ expected] [KEEPTTL]`,
//! `DEL key...`, `EXISTS key...`, `INCR`, `DECR`, `INCRBY`, `DECRBY`, `MGET`, `MSET` (one log
//! entry), `DBSIZE`, `MULTI`/`EXEC`/`DISCARD` (one log entry per `EXEC`; a transaction without
//! writes is one linearizable read), `INFO [section...]` (with a `# Raft` section), and for
//! client tools `CONFIG GET`, `CLIENT SETNAME|GETNAME|ID|LIST|INFO|SETINFO`, `COMMAND
//! [COUNT|DOCS|INFO|LIST]`, `SELECT 0`, `HELLO [2]` (`HELLO 3` is `-NOPROTO`), `QUIT`.
//!
//! For operators, the cluster itself: `RAFT.ADDLEARNER id ip:port`, `RAFT.PROMOTE id`,
//! `RAFT.REMOVE id`, `RAFT.TRANSFER id` (each `+OK` once done), `RAFT.SNAPSHOT` (the snapshot's
//! index) and `RAFT.MEMBERS` (one `[id, raft-addr or nil, role]` per member, role `voter`,
//! `learner`, `joining` or `leaving`). Any member takes them; changes go to the leader. A change
//! that cannot happen now (another in flight, a learner still catching up) is `-TRYAGAIN`, one
//! that never can `-ERR`. `INFO` adds `# Membership` (ids by role) and `# Log` (first, last and
//! snapshot index).
//!
//! Errors from the node: no leader reachable is `-CLUSTERDOWN`, an unknown outcome
//! `-TIMEOUT`, a full queue `-TRYAGAIN`; a protocol error is `-ERR Protocol error: ...` and the
//! connection is closed.
//!
//! Differences from Redis worth knowing: there are no expiries, no other data types, one
//! database, no `WATCH`; a transaction's commands are checked fully when queued, so
//! `INCRBY k x` inside `MULTI` aborts the `EXEC` (Redis would fail only that command).

pub mod backend;
pub mod cli;
pub mod client;
pub mod codec;
pub mod command;
mod info;
mod join;
pub mod limits;
pub mod resp;
pub mod server;
mod session;
pub mod shards;
pub mod snapshot;
pub mod store;
