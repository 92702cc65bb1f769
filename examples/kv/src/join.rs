//! `serve --join`: a new member asks a running one for the configuration, starts its node
//! with none of its own, and asks to be added, first as a learner and then as a voter.
//!
//! Everything goes through the member's RESP port, with the same `RAFT.*` commands an operator
//! would type, so the member asked need not be the leader (raft-std forwards the changes). The
//! asking is idempotent and driven by what `RAFT.MEMBERS` shows: not listed, `RAFT.ADDLEARNER`;
//! a learner, `RAFT.PROMOTE`; a voter, done. A restarted node that recovered a configuration
//! from its data directory therefore asks nothing if it is already a voter, finishes an
//! interrupted join if it was one, and never asks to come back once it has been removed.

use std::net::{SocketAddr, ToSocketAddrs};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft_std::{NodeHandle, NodeId};

use crate::backend::Member;
use crate::client::{Client, Value};
use crate::command::parse_member_id;

/// How long one call to the member may take: more than the node's request timeout, so that
/// the member, not this client, ends a slow change.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Between attempts that were told to retry (`-TRYAGAIN`, no leader, a failed connection).
const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// Between attempts after a final-sounding refusal (`-ERR`), which the next configuration
/// may resolve (for example, one the member had not seen yet).
const REFUSED_INTERVAL: Duration = Duration::from_secs(1);

/// How long a new member keeps asking to be added before it gives up.
pub(crate) const JOIN_DEADLINE: Duration = Duration::from_secs(300);

/// Asks the member at `via` (its RESP address, `HOST:PORT`) for `RAFT.MEMBERS`, retrying until
/// `deadline`. The error of the last attempt if none answered.
pub(crate) fn fetch_members(via: &str, deadline: Instant) -> Result<Vec<Member>, String> {
    loop {
        let err = match call(via, &[b"RAFT.MEMBERS"]) {
            Ok(reply) => match parse_members(&reply) {
                Ok(members) => return Ok(members),
                Err(e) => format!("{via} answered RAFT.MEMBERS with {reply}: {e}"),
            },
            Err(e) => e,
        };
        if Instant::now() + RETRY_INTERVAL >= deadline {
            return Err(err);
        }
        tracing::debug!(%via, error = %err, "RAFT.MEMBERS failed; retrying");
        std::thread::sleep(RETRY_INTERVAL);
    }
}

/// Runs the join in a thread of its own: see the module docs. It logs its progress and ends
/// once this node is a voter, or after [`JOIN_DEADLINE`] with an error in the log. It holds
/// only a handle, so it does not keep the node from shutting down.
pub(crate) fn spawn(
    handle: NodeHandle,
    via: String,
    raft_addr: SocketAddr,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("kv-join".into())
        .spawn(move || {
            let id = handle.id();
            match join(&handle, &via, raft_addr, Instant::now() + JOIN_DEADLINE) {
                Ok(()) => tracing::info!(id = id.get(), %via, "joined the cluster as a voter"),
                Err(e) => tracing::error!(id = id.get(), %via, error = %e, "gave up joining"),
            }
        })
}

/// What this node is in the configuration, as `members` shows it.
fn role_of(members: &[Member], id: NodeId) -> Option<&'static str> {
    members.iter().find(|m| m.id == id.get()).map(|m| m.role)
}

fn join(
    handle: &NodeHandle,
    via: &str,
    raft_addr: SocketAddr,
    deadline: Instant,
) -> Result<(), String> {
    let id = handle.id();
    // A configuration recovered from the data directory that no longer lists this node means
    // it was removed: coming back is for an operator to decide, not a restart.
    let local = handle.status().membership;
    if !local.is_empty() && !local.iter().any(|m| m.id == id) {
        return Err(
            "this node's recovered configuration does not list it (it was removed); \
                    not asking to join again. To rejoin, start with a new --id and an empty \
                    --data-dir"
                .into(),
        );
    }
    let id_arg = id.get().to_string();
    let addr_arg = raft_addr.to_string();
    loop {
        if Instant::now() >= deadline {
            return Err(format!("not a voter after {JOIN_DEADLINE:?}"));
        }
        let members = match call(via, &[b"RAFT.MEMBERS"])
            .and_then(|r| parse_members(&r).map_err(|e| format!("RAFT.MEMBERS answered {r}: {e}")))
        {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%via, error = %e, "RAFT.MEMBERS failed; retrying");
                std::thread::sleep(RETRY_INTERVAL);
                continue;
            }
        };
        let request: &[&[u8]] = match role_of(&members, id) {
            Some("voter") => return Ok(()),
            None => {
                tracing::info!(id = id.get(), raft = %raft_addr, %via, "asking to be added as a learner");
                &[b"RAFT.ADDLEARNER", id_arg.as_bytes(), addr_arg.as_bytes()]
            }
            Some("learner") => {
                tracing::debug!(id = id.get(), %via, "asking to be promoted to voter");
                &[b"RAFT.PROMOTE", id_arg.as_bytes()]
            }
            Some("leaving") => {
                return Err("this node is being removed from the cluster".into());
            }
            // `joining`: the promotion is under way; the configuration settles by itself.
            Some(_) => {
                std::thread::sleep(RETRY_INTERVAL);
                continue;
            }
        };
        match call(via, request) {
            Ok(Value::Error(e)) if e.starts_with("ERR ") => {
                tracing::info!(%via, error = %e, "the join request was refused; retrying");
                std::thread::sleep(REFUSED_INTERVAL);
            }
            Ok(Value::Error(e)) => {
                // TRYAGAIN (a change in flight, the learner still catching up), CLUSTERDOWN,
                // TIMEOUT: the same request may succeed later.
                tracing::debug!(%via, reply = %e, "not yet; retrying");
                std::thread::sleep(RETRY_INTERVAL);
            }
            Ok(reply) => tracing::debug!(%via, %reply, "accepted"),
            Err(e) => {
                tracing::debug!(%via, error = %e, "request failed; retrying");
                std::thread::sleep(RETRY_INTERVAL);
            }
        }
    }
}

/// One command on a new connection to `via`, resolved each time (a name may change address).
fn call(via: &str, args: &[&[u8]]) -> Result<Value, String> {
    let addrs: Vec<SocketAddr> = via
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {via}: {e}"))?
        .collect();
    let mut last = format!("{via} resolves to no address");
    for addr in addrs {
        match Client::connect(addr, CALL_TIMEOUT).and_then(|mut c| c.call(args)) {
            Ok(v) => return Ok(v),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// `RAFT.MEMBERS`'s reply: an array of `[id, raft-addr or nil, role]`.
pub(crate) fn parse_members(reply: &Value) -> Result<Vec<Member>, String> {
    let Value::Array(Some(items)) = reply else {
        return Err("not an array".into());
    };
    items
        .iter()
        .map(|item| {
            let Value::Array(Some(fields)) = item else {
                return Err("a member that is not an array".to_string());
            };
            let [id, addr, role] = fields.as_slice() else {
                return Err("a member that is not [id, address, role]".into());
            };
            let id = match id {
                Value::Integer(n) => parse_member_id(n.to_string().as_bytes())
                    .map_err(|_| format!("member id {n}"))?,
                _ => return Err("a member id that is not an integer".into()),
            };
            let addr = match addr {
                Value::Bulk(None) => None,
                Value::Bulk(Some(a)) => Some(
                    std::str::from_utf8(a)
                        .ok()
                        .and_then(|a| a.parse().ok())
                        .ok_or_else(|| format!("member {id}: a bad address"))?,
                ),
                _ => return Err(format!("member {id}: an address that is not a bulk string")),
            };
            let role = match role {
                Value::Bulk(Some(r)) => match r.as_slice() {
                    b"voter" => "voter",
                    b"learner" => "learner",
                    b"joining" => "joining",
                    b"leaving" => "leaving",
                    _ => return Err(format!("member {id}: an unknown role")),
                },
                _ => return Err(format!("member {id}: a role that is not a bulk string")),
            };
            Ok(Member {
                id: id.get(),
                addr,
                role,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: i64, addr: Option<&str>, role: &str) -> Value {
        Value::Array(Some(vec![
            Value::Integer(id),
            Value::Bulk(addr.map(|a| a.as_bytes().to_vec())),
            Value::Bulk(Some(role.as_bytes().to_vec())),
        ]))
    }

    #[test]
    fn members_replies_parse_and_garbage_is_refused() {
        let reply = Value::Array(Some(vec![
            member(1, Some("127.0.0.1:7001"), "voter"),
            member(4, None, "learner"),
        ]));
        let got = parse_members(&reply).expect("valid");
        assert_eq!(
            got,
            vec![
                Member {
                    id: 1,
                    addr: Some("127.0.0.1:7001".parse().expect("addr")),
                    role: "voter"
                },
                Member {
                    id: 4,
                    addr: None,
                    role: "learner"
                },
            ]
        );
        assert_eq!(role_of(&got, NodeId(4)), Some("learner"));
        assert_eq!(role_of(&got, NodeId(5)), None);
        for bad in [
            Value::Simple("OK".into()),
            Value::Error("ERR no".into()),
            Value::Array(Some(vec![Value::Integer(1)])),
            Value::Array(Some(vec![member(0, None, "voter")])),
            Value::Array(Some(vec![member(1, Some("nowhere"), "voter")])),
            Value::Array(Some(vec![member(1, None, "boss")])),
        ] {
            assert!(parse_members(&bad).is_err(), "{bad}");
        }
    }
}
