//! One client connection's state and command dispatch: transactions, the client's name, and
//! the mapping of node errors onto RESP errors.

use std::sync::Arc;

use raft_std::{AdminError, RequestError};

use crate::backend::Member;
use crate::codec::Transaction;
use crate::command::{
    Admin, ClientCommand, Command, CommandError, CommandsQuery, Op, COMMAND_NAMES,
};
use crate::info;
use crate::resp::{write_array_len, write_bulk, write_error, write_integer, write_nil};
use crate::server::Shared;

/// Whether the connection stays open after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Read the next request.
    Continue,
    /// Flush the reply and close (`QUIT`, or the node has shut down).
    Close,
}

/// A `MULTI` in progress.
#[derive(Debug, Default)]
struct Multi {
    queued: Transaction,
    /// A command was refused while queueing, so `EXEC` must fail (as in Redis).
    aborted: bool,
}

/// The state of one connection.
pub(crate) struct Session {
    shared: Arc<Shared>,
    id: u64,
    name: Vec<u8>,
    multi: Option<Multi>,
    /// Writes pipelined back to back, not yet sent: they go to the log as one entry.
    pipeline: Transaction,
}

/// What [`Session::offer`] did with a request.
pub(crate) enum Offered {
    /// Queued with the writes before it; answered by [`Session::flush`].
    Queued,
    /// Not a write that can join the batch: flush, then [`Session::handle_command`] it.
    Handle(Result<Command, CommandError>),
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, id: u64) -> Self {
        Session {
            shared,
            id,
            name: Vec::new(),
            multi: None,
            pipeline: Transaction::new(),
        }
    }

    /// Pipelined writes (requests that arrived together, each a write, outside `MULTI`) are
    /// batched: queued here, they become one log entry when the batch is flushed, so a
    /// pipeline of N writes costs one commit instead of N sequential ones. They are applied
    /// in order with nothing between them, which is what the connection asked for (its
    /// commands run in order) and more (no other client's command runs between them). Any
    /// other request, the end of what has arrived, or a full batch ([`Transaction`]'s
    /// limits) flushes the batch first, so replies stay in order.
    pub(crate) fn offer(&mut self, command: Result<Command, CommandError>) -> Offered {
        if self.multi.is_none() {
            if let Ok(Command::Op(op)) = &command {
                if op.is_write() && self.pipeline.push(op).is_ok() {
                    return Offered::Queued;
                }
            }
        }
        Offered::Handle(command)
    }

    /// Sends the batched writes, if any, and writes their replies, one per write, in order.
    pub(crate) async fn flush(&mut self, out: &mut Vec<u8>) -> Flow {
        let n = self.pipeline.len();
        if n == 0 {
            return Flow::Continue;
        }
        let batch = std::mem::take(&mut self.pipeline);
        if let Some(lone) = batch.encode_lone() {
            return self.forward(out, lone, true).await;
        }
        match self.shared.backend.propose(&batch.encode()).await {
            Ok(reply) => {
                // The store answers a batch with an array of the replies: the pipeline's
                // replies are its elements, back to back.
                let header = format!("*{n}\r\n");
                match reply.strip_prefix(header.as_bytes()) {
                    Some(replies) => out.extend_from_slice(replies),
                    // One error for the whole entry (none arises for writes): one per write.
                    None => (0..n).for_each(|_| out.extend_from_slice(&reply)),
                }
                Flow::Continue
            }
            Err(e) => {
                let mut flow = Flow::Continue;
                for _ in 0..n {
                    flow = write_request_error(out, e, true);
                }
                flow
            }
        }
    }

    /// Answers one request, appending the reply to `out`. Only requests that need the node
    /// wait (for its answer); the rest complete on the first poll.
    pub(crate) async fn handle_command(
        &mut self,
        command: Result<Command, CommandError>,
        out: &mut Vec<u8>,
    ) -> Flow {
        if let Some(multi) = &mut self.multi {
            return match command {
                Ok(Command::Exec) => self.exec(out).await,
                Ok(Command::Discard) => {
                    self.multi = None;
                    ok(out)
                }
                Ok(Command::Multi) => {
                    write_error(out, "ERR MULTI calls can not be nested");
                    Flow::Continue
                }
                Ok(Command::Quit) => {
                    ok(out);
                    Flow::Close
                }
                Ok(Command::Op(op)) => {
                    match multi.queued.push(&op) {
                        Ok(()) => out.extend_from_slice(b"+QUEUED\r\n"),
                        Err(full) => {
                            multi.aborted = true;
                            write_error(out, &full.to_string());
                        }
                    }
                    Flow::Continue
                }
                Ok(_) => {
                    multi.aborted = true;
                    write_error(out, "ERR Command not allowed inside a transaction");
                    Flow::Continue
                }
                Err(e) => {
                    multi.aborted = true;
                    e.write(out);
                    Flow::Continue
                }
            };
        }
        match command {
            Ok(c) => self.execute(c, out).await,
            Err(e) => {
                e.write(out);
                Flow::Continue
            }
        }
    }

    async fn execute(&mut self, command: Command, out: &mut Vec<u8>) -> Flow {
        match command {
            Command::Op(Op::Ping(None)) => out.extend_from_slice(b"+PONG\r\n"),
            Command::Op(Op::Ping(Some(msg)) | Op::Echo(msg)) => write_bulk(out, &msg),
            Command::Op(op) => {
                let write = op.is_write();
                return self.forward(out, op.encode(), write).await;
            }
            Command::Multi => {
                self.multi = Some(Multi::default());
                ok(out);
            }
            Command::Exec => write_error(out, "ERR EXEC without MULTI"),
            Command::Discard => write_error(out, "ERR DISCARD without MULTI"),
            Command::Quit => {
                ok(out);
                return Flow::Close;
            }
            Command::Select => {
                ok(out);
            }
            Command::Hello { setname } => {
                if let Some(name) = setname {
                    self.set_name(name);
                }
                self.hello(out);
            }
            Command::Info(sections) => {
                write_bulk(out, info::info(&self.shared, &sections).as_bytes())
            }
            Command::Client(c) => self.client(c, out),
            Command::Admin(request) => return self.admin(request, out).await,
            Command::Members => write_members(out, &self.shared.backend.status().membership),
            Command::ConfigGet(patterns) => info::config_get(&self.shared, &patterns, out),
            Command::Commands(q) => match q {
                CommandsQuery::Empty => write_array_len(out, 0),
                CommandsQuery::Count => write_integer(out, COMMAND_NAMES.len() as i64),
                CommandsQuery::List => {
                    write_array_len(out, COMMAND_NAMES.len());
                    for name in COMMAND_NAMES {
                        write_bulk(out, name.as_bytes());
                    }
                }
                CommandsQuery::Info(n) => {
                    write_array_len(out, n);
                    (0..n).for_each(|_| write_nil(out));
                }
            },
        }
        Flow::Continue
    }

    async fn exec(&mut self, out: &mut Vec<u8>) -> Flow {
        let Some(multi) = self.multi.take() else {
            write_error(out, "ERR EXEC without MULTI");
            return Flow::Continue;
        };
        if multi.aborted {
            write_error(
                out,
                "EXECABORT Transaction discarded because of previous errors.",
            );
            return Flow::Continue;
        }
        if multi.queued.is_empty() {
            write_array_len(out, 0);
            return Flow::Continue;
        }
        // A transaction without writes changes nothing, so a linearizable read of the whole
        // batch gives the same answer as a log entry, without one.
        let write = multi.queued.has_writes();
        self.forward(out, multi.queued.encode(), write).await
    }

    /// Sends an encoded command (or query) to the node and writes its reply.
    async fn forward(&self, out: &mut Vec<u8>, encoded: Vec<u8>, write: bool) -> Flow {
        let result = if write {
            self.shared.backend.propose(&encoded).await
        } else {
            self.shared.backend.read(&encoded).await
        };
        match result {
            Ok(reply) => {
                out.extend_from_slice(&reply);
                Flow::Continue
            }
            Err(e) => write_request_error(out, e, write),
        }
    }

    /// Hands a `RAFT.*` request to the node and writes its outcome. The connection's later
    /// requests wait for it, so replies stay in order.
    async fn admin(&self, request: Admin, out: &mut Vec<u8>) -> Flow {
        match self.shared.backend.admin(request).await {
            Ok(Some(index)) if request == Admin::Snapshot => {
                // Indexes stay far below i64::MAX: one per entry ever written.
                write_integer(out, index.get() as i64);
                Flow::Continue
            }
            Ok(_) => ok(out),
            Err(e) => write_admin_error(out, e),
        }
    }

    fn set_name(&mut self, name: Vec<u8>) {
        self.shared.set_client_name(self.id, name.clone());
        self.name = name;
    }

    fn client(&mut self, c: ClientCommand, out: &mut Vec<u8>) {
        match c {
            ClientCommand::SetName(name) => {
                self.set_name(name);
                ok(out);
            }
            ClientCommand::GetName if self.name.is_empty() => write_nil(out),
            ClientCommand::GetName => write_bulk(out, &self.name),
            ClientCommand::Id => write_integer(out, self.id as i64),
            ClientCommand::List => write_bulk(out, self.shared.client_lines(None).as_bytes()),
            ClientCommand::Info => {
                write_bulk(out, self.shared.client_lines(Some(self.id)).as_bytes());
            }
            ClientCommand::Ignored => {
                ok(out);
            }
        }
    }

    /// `HELLO`'s reply in RESP2: a flat array of field names and values.
    fn hello(&self, out: &mut Vec<u8>) {
        let leader = self.shared.backend.status().role == "leader";
        write_array_len(out, 14);
        for (k, v) in [("server", "redis"), ("version", info::REDIS_VERSION)] {
            write_bulk(out, k.as_bytes());
            write_bulk(out, v.as_bytes());
        }
        write_bulk(out, b"proto");
        write_integer(out, 2);
        write_bulk(out, b"id");
        write_integer(out, self.id as i64);
        write_bulk(out, b"mode");
        write_bulk(out, b"standalone");
        write_bulk(out, b"role");
        write_bulk(out, if leader { b"master" } else { b"replica" });
        write_bulk(out, b"modules");
        write_array_len(out, 0);
    }
}

fn ok(out: &mut Vec<u8>) -> Flow {
    out.extend_from_slice(b"+OK\r\n");
    Flow::Continue
}

/// The RESP error for a request the node did not complete.
fn write_request_error(out: &mut Vec<u8>, e: RequestError, write: bool) -> Flow {
    match e {
        RequestError::NoLeader => write_error(out, "CLUSTERDOWN no leader could be reached"),
        RequestError::Timeout if write => {
            write_error(out, "TIMEOUT the outcome of the write is unknown");
        }
        RequestError::Timeout => write_error(out, "TIMEOUT the read timed out"),
        RequestError::Busy => write_error(out, "TRYAGAIN node is busy, retry"),
        RequestError::TooLarge { len, max } => write_error(
            out,
            &format!("ERR command of {len} bytes is larger than the maximum of {max}"),
        ),
        RequestError::Shutdown => {
            write_error(out, "ERR shutting down");
            return Flow::Close;
        }
        other => write_error(out, &format!("ERR {other}")),
    }
    Flow::Continue
}

/// `RAFT.MEMBERS`: one `[id, raft-addr or nil, role]` array per member.
fn write_members(out: &mut Vec<u8>, members: &[Member]) {
    write_array_len(out, members.len());
    for m in members {
        write_array_len(out, 3);
        // Ids are at most i64::MAX: `serve --id` and `RAFT.*` accept no more.
        write_integer(out, m.id as i64);
        match m.addr {
            Some(addr) => write_bulk(out, addr.to_string().as_bytes()),
            None => write_nil(out),
        }
        write_bulk(out, m.role.as_bytes());
    }
}

/// The RESP error for an admin request the node did not carry out. `-TRYAGAIN` means nothing
/// was done and the same request may succeed later; `-ERR` that it never will as it stands.
fn write_admin_error(out: &mut Vec<u8>, e: AdminError) -> Flow {
    match e {
        AdminError::NoLeader => write_error(out, "CLUSTERDOWN no leader could be reached"),
        AdminError::Timeout => write_error(out, "TIMEOUT the outcome of the request is unknown"),
        AdminError::Retry(why) => write_error(out, &format!("TRYAGAIN {why}")),
        AdminError::Busy => write_error(out, "TRYAGAIN node is busy, retry"),
        AdminError::Invalid(why) => write_error(out, &format!("ERR {why}")),
        AdminError::Shutdown => {
            write_error(out, "ERR shutting down");
            return Flow::Close;
        }
        other => write_error(out, &format!("ERR {other}")),
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_errors_map_to_resp_errors() {
        let cases = [
            (
                AdminError::NoLeader,
                "-CLUSTERDOWN no leader could be reached\r\n",
            ),
            (
                AdminError::Timeout,
                "-TIMEOUT the outcome of the request is unknown\r\n",
            ),
            (
                AdminError::Retry("a change is in flight".into()),
                "-TRYAGAIN a change is in flight\r\n",
            ),
            (AdminError::Busy, "-TRYAGAIN node is busy, retry\r\n"),
            (
                AdminError::Invalid("4 is already a member\nreally".into()),
                "-ERR 4 is already a member really\r\n",
            ),
        ];
        for (e, want) in cases {
            let mut out = Vec::new();
            assert_eq!(write_admin_error(&mut out, e), Flow::Continue);
            assert_eq!(String::from_utf8(out).expect("ASCII"), want);
        }
        let mut out = Vec::new();
        assert_eq!(
            write_admin_error(&mut out, AdminError::Shutdown),
            Flow::Close
        );
        assert_eq!(out, b"-ERR shutting down\r\n");
    }

    #[test]
    fn members_are_arrays_of_id_address_and_role() {
        let mut out = Vec::new();
        write_members(
            &mut out,
            &[
                Member {
                    id: 1,
                    addr: Some("127.0.0.1:7001".parse().expect("addr")),
                    role: "voter",
                },
                Member {
                    id: 4,
                    addr: None,
                    role: "learner",
                },
            ],
        );
        assert_eq!(
            String::from_utf8(out).expect("ASCII"),
            "*2\r\n*3\r\n:1\r\n$14\r\n127.0.0.1:7001\r\n$5\r\nvoter\r\n\
             *3\r\n:4\r\n$-1\r\n$7\r\nlearner\r\n"
        );
    }

    #[test]
    fn node_errors_map_to_resp_errors() {
        let cases = [
            (
                RequestError::NoLeader,
                true,
                "-CLUSTERDOWN no leader could be reached\r\n",
            ),
            (
                RequestError::Timeout,
                true,
                "-TIMEOUT the outcome of the write is unknown\r\n",
            ),
            (
                RequestError::Timeout,
                false,
                "-TIMEOUT the read timed out\r\n",
            ),
            (
                RequestError::Busy,
                true,
                "-TRYAGAIN node is busy, retry\r\n",
            ),
            (
                RequestError::TooLarge { len: 10, max: 5 },
                true,
                "-ERR command of 10 bytes is larger than the maximum of 5\r\n",
            ),
        ];
        for (e, write, want) in cases {
            let mut out = Vec::new();
            assert_eq!(write_request_error(&mut out, e, write), Flow::Continue);
            assert_eq!(String::from_utf8(out).expect("ASCII"), want);
        }
        let mut out = Vec::new();
        assert_eq!(
            write_request_error(&mut out, RequestError::Shutdown, true),
            Flow::Close
        );
        assert_eq!(out, b"-ERR shutting down\r\n");
    }
}
