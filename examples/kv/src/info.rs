//! `INFO` and `CONFIG GET`: what operators and client tools ask about the server.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::resp::{write_array_len, write_bulk};
use crate::server::Shared;

/// The Redis version this server claims, for tools that check it: the commands it serves
/// behave as in Redis 7.0 (plus `SET ... IFEQ` from Valkey 8.1).
pub(crate) const REDIS_VERSION: &str = "7.0.0";

/// The sections in the order `INFO` prints them.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "stats",
    "keyspace",
    "raft",
    "membership",
    "log",
];

/// The text of `INFO [section ...]`: every section when none (or `all`, `everything`,
/// `default`) is named; unknown names are ignored, as Redis does.
pub(crate) fn info(shared: &Shared, requested: &[String]) -> String {
    let all = requested.is_empty()
        || requested
            .iter()
            .any(|s| matches!(s.as_str(), "all" | "everything" | "default"));
    let mut out = String::new();
    for &section in SECTIONS {
        if !all && !requested.iter().any(|s| s == section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        // Writing into a String cannot fail.
        let _ = write_section(&mut out, shared, section);
    }
    out
}

fn write_section(out: &mut String, shared: &Shared, section: &str) -> std::fmt::Result {
    match section {
        "server" => {
            writeln_crlf(out, "# Server")?;
            field(out, "redis_version", REDIS_VERSION)?;
            field(out, "redis_mode", "standalone")?;
            field(out, "tickraft_version", env!("CARGO_PKG_VERSION"))?;
            field(
                out,
                "os",
                format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            )?;
            field(out, "arch_bits", usize::BITS)?;
            field(out, "process_id", std::process::id())?;
            field(out, "tcp_port", shared.addr.port())?;
            field(out, "uptime_in_seconds", shared.started.elapsed().as_secs())?;
        }
        "clients" => {
            writeln_crlf(out, "# Clients")?;
            field(out, "connected_clients", shared.connected_clients())?;
            field(out, "maxclients", shared.config.max_clients)?;
        }
        "stats" => {
            let s = &shared.stats;
            let m = shared.backend.metrics();
            writeln_crlf(out, "# Stats")?;
            field(
                out,
                "total_connections_received",
                s.connections_received.load(Ordering::Relaxed),
            )?;
            field(
                out,
                "total_commands_processed",
                s.commands_processed.load(Ordering::Relaxed),
            )?;
            field(
                out,
                "rejected_connections",
                s.rejected_connections.load(Ordering::Relaxed),
            )?;
            // The node's counters (`raft_std::Metrics`); `applied` counts the commits this node
            // has applied.
            field(out, "proposals", m.proposals)?;
            field(out, "forwarded", m.forwarded)?;
            field(out, "applied", m.applied)?;
            field(out, "reads", m.reads)?;
            field(out, "fsyncs", m.fsyncs)?;
            let avg = m.fsync_micros_total.checked_div(m.fsyncs).unwrap_or(0);
            field(out, "fsync_avg_us", avg)?;
            field(out, "fsync_max_us", m.fsync_micros_max)?;
            field(out, "wal_bytes", m.wal_bytes)?;
            field(out, "elections", m.elections)?;
            field(out, "became_leader", m.became_leader)?;
            field(out, "messages_dropped", m.messages_dropped)?;
            field(out, "messages_refused", m.messages_refused)?;
            field(out, "timeouts", m.timeouts)?;
            field(out, "snapshots_taken", m.snapshots_taken)?;
            field(out, "snapshots_installed", m.snapshots_installed)?;
            field(out, "snapshots_sent", m.snapshots_sent)?;
            field(out, "lease_reads", m.lease_reads)?;
        }
        "keyspace" => {
            writeln_crlf(out, "# Keyspace")?;
            let keys = shared.backend.key_count();
            if keys > 0 {
                field(out, "db0", format!("keys={keys},expires=0,avg_ttl=0"))?;
            }
        }
        "raft" => {
            let s = shared.backend.status();
            writeln_crlf(out, "# Raft")?;
            field(out, "node_id", s.node_id)?;
            field(out, "role", s.role)?;
            field(out, "term", s.term)?;
            field(out, "leader_id", s.leader_id)?;
            field(out, "commit_index", s.commit_index)?;
            field(out, "applied_index", s.applied_index)?;
            let members: Vec<String> = s.members.iter().map(u64::to_string).collect();
            field(out, "members", members.join(","))?;
        }
        "membership" => {
            // The configuration in effect on this node, by role; `RAFT.MEMBERS` has the
            // addresses too.
            let s = shared.backend.status();
            writeln_crlf(out, "# Membership")?;
            for (name, role) in [
                ("voters", "voter"),
                ("learners", "learner"),
                ("joining", "joining"),
                ("leaving", "leaving"),
            ] {
                let ids: Vec<String> = s
                    .membership
                    .iter()
                    .filter(|m| m.role == role)
                    .map(|m| m.id.to_string())
                    .collect();
                field(out, name, ids.join(","))?;
            }
        }
        "log" => {
            let s = shared.backend.status();
            writeln_crlf(out, "# Log")?;
            field(out, "first_index", s.first_index)?;
            field(out, "last_index", s.last_index)?;
            field(out, "snapshot_index", s.snapshot_index)?;
        }
        _ => {}
    }
    Ok(())
}

fn writeln_crlf(out: &mut String, line: &str) -> std::fmt::Result {
    write!(out, "{line}\r\n")
}

fn field(out: &mut String, name: &str, value: impl std::fmt::Display) -> std::fmt::Result {
    write!(out, "{name}:{value}\r\n")
}

/// `CONFIG GET pattern ...`: the few parameters that mean something here, matched by glob,
/// each at most once, as a flat array of names and values. `redis-benchmark` asks for `save`
/// and `appendonly`.
pub(crate) fn config_get(shared: &Shared, patterns: &[Vec<u8>], out: &mut Vec<u8>) {
    let port = shared.addr.port().to_string();
    let bind = shared.addr.ip().to_string();
    let max_clients = shared.config.max_clients.to_string();
    let params: [(&str, &str); 9] = [
        // The log is the persistence: there are no RDB snapshots and no AOF.
        ("save", ""),
        ("appendonly", "no"),
        ("appendfsync", "no"),
        ("databases", "1"),
        ("maxmemory", "0"),
        ("maxclients", &max_clients),
        ("port", &port),
        ("bind", &bind),
        ("timeout", "0"),
    ];
    let matched: Vec<_> = params
        .iter()
        .filter(|(name, _)| patterns.iter().any(|p| glob_match(p, name.as_bytes())))
        .collect();
    write_array_len(out, matched.len() * 2);
    for (name, value) in matched {
        write_bulk(out, name.as_bytes());
        write_bulk(out, value.as_bytes());
    }
}

/// Case-insensitive glob with `*` and `?`; every other byte matches itself.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative with one backtrack point: linear in practice and never recursive, so a
    // client's pattern of many stars cannot exhaust the stack.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&name[n]) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match(b"save", b"save"));
        assert!(glob_match(b"SAVE", b"save"));
        assert!(glob_match(b"*", b"appendonly"));
        assert!(glob_match(b"append*", b"appendonly"));
        assert!(glob_match(b"*only", b"appendonly"));
        assert!(glob_match(b"a?pend*y", b"appendonly"));
        assert!(glob_match(b"**", b""));
        assert!(!glob_match(b"save", b"saves"));
        assert!(!glob_match(b"s?", b"save"));
        assert!(!glob_match(b"", b"save"));
    }
}
