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
//! - [`store`]: the state machine, whose replies are the RESP bytes sent to the client;
//! - [`limits`]: every size limit, chosen so that an accepted request fits in a command;
//! - [`cli`]: `serve`, `demo`, `serve-local`.
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
//! Errors from the node: no leader reachable is `-CLUSTERDOWN`, an unknown outcome
//! `-TIMEOUT`, a full queue `-TRYAGAIN`; a protocol error is `-ERR Protocol error: ...` and the
//! connection is closed.
//!
//! Differences from Redis worth knowing: there are no expiries, no other data types, one
//! database, no `WATCH`; a transaction's commands are checked fully when queued, so
//! `INCRBY k x` inside `MULTI` aborts the `EXEC` (Redis would fail only that command).

pub mod backend;
pub mod cli;
pub mod codec;
pub mod command;
mod info;
pub mod limits;
pub mod resp;
pub mod server;
mod session;
pub mod store;
