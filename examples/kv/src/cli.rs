//! The command line: `serve` (one member of a cluster), `demo` (three members in one process),
//! and the hidden test aid `serve-local` (the RESP layer over an in-process store, no Raft).

use std::error::Error;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use raft_std::{Node, NodeConfig, NodeId};

use crate::backend::{LocalBackend, RaftBackend};
use crate::join;
use crate::limits::{DEFAULT_MAX_CLIENTS, MAX_COMMAND_BYTES};
use crate::server::{Server, ServerConfig};
use crate::store::KvStore;

/// The cluster id used when `--cluster-id` is not given: "tickraft" in ASCII.
pub const DEFAULT_CLUSTER_ID: u64 = 0x7469_636b_7261_6674;

/// Errors of the command line's glue: messages for a person, printed once by `main`.
pub type CliError = Box<dyn Error + Send + Sync>;

/// A replicated key-value and counter server on tickraft, speaking the Redis protocol (RESP2).
#[derive(Debug, Parser)]
#[command(name = "tickraft-kv", version, max_term_width = 100)]
pub struct Cli {
    /// Log filter in RUST_LOG syntax (`debug`, `info,raft_std=debug`). Default: RUST_LOG if
    /// set, else `info`. Logs go to stderr.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one member of a cluster: its Raft node and its RESP server.
    Serve(ServeArgs),
    /// Run a 3-node cluster on loopback in this process, with a RESP server per node.
    Demo(DemoArgs),
    /// Test aid: the RESP server over a store in this process, without Raft (every write
    /// applies at once). For trying client tools against the protocol layer.
    #[command(hide = true)]
    ServeLocal(LocalArgs),
}

/// How long a new member (`--join` with an empty data directory) keeps trying to reach the
/// member it was given before it gives up.
const JOIN_CONNECT_DEADLINE: Duration = Duration::from_secs(60);

/// How long a restarted member that joined once waits for that member: not long, since it
/// recovers the configuration from its own data directory anyway.
const REJOIN_CONNECT_DEADLINE: Duration = Duration::from_secs(3);

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// This member's id, from 1 to 2^63-1; with --peers it must be listed there.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
    pub id: u64,

    /// The founding members' Raft addresses, this node's included: ID=HOST:PORT,... Once the
    /// cluster's membership has changed, the configuration in the log wins and this list only
    /// supplies addresses.
    #[arg(long, value_name = "ID=ADDR,...", value_delimiter = ',',
          required_unless_present = "join", conflicts_with = "join", value_parser = parse_peer)]
    pub peers: Vec<(u64, SocketAddr)>,

    /// Join a running cluster instead of founding one: ADDR is the client (RESP) address of
    /// any member. This node asks it for RAFT.MEMBERS (retrying for a minute), starts with no
    /// configuration, and asks to be added as a learner (RAFT.ADDLEARNER) and then promoted to
    /// voter (RAFT.PROMOTE), retrying for five minutes. Restarting with the same --data-dir
    /// recovers the configuration and asks nothing more once this node is a voter. Needs
    /// --raft-addr; conflicts with --peers.
    #[arg(long, value_name = "ADDR", requires = "raft_addr")]
    pub join: Option<String>,

    /// With --join: this node's Raft address (IP:PORT), which it listens on and gives to the
    /// cluster.
    #[arg(long, value_name = "ADDR", requires = "join")]
    pub raft_addr: Option<SocketAddr>,

    /// Where to serve RESP clients (HOST:PORT).
    #[arg(long, value_name = "ADDR")]
    pub client: String,

    /// The write-ahead log's directory. Restarting with the same directory recovers the node.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Connections served at once; more are refused.
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS)]
    pub max_clients: usize,

    /// Raft timing and durability.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Options of a Raft node, shared by `serve` and `demo`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Shared by every member and checked when they connect, so that a node of another
    /// cluster is refused (decimal, or hexadecimal with 0x). The default is "tickraft" in ASCII.
    #[arg(long, value_parser = parse_u64, default_value = "0x7469636b72616674")]
    pub cluster_id: u64,

    /// The tick interval, in milliseconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub tick_ms: u64,

    /// A follower without a leader campaigns after between this many and twice this many
    /// ticks.
    #[arg(long, default_value_t = 10)]
    pub election_ticks: u32,

    /// A leader heartbeats every this many ticks.
    #[arg(long, default_value_t = 2)]
    pub heartbeat_ticks: u32,

    /// A request not completed in this time fails (CLUSTERDOWN if no leader was reached,
    /// TIMEOUT if a write's outcome is unknown), in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub request_timeout_ms: u64,

    /// Snapshot the store and compact the log once this many entries were applied since the
    /// last snapshot; 0: never by count. RAFT.SNAPSHOT takes one at any time.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub snapshot_entries: u64,

    /// Snapshot once the log holds this many bytes; 0: never by size.
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    pub snapshot_bytes: u64,

    /// Entries kept in the log below a snapshot, so that a follower a little behind catches
    /// up from the log rather than by receiving the whole snapshot.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub log_keep_entries: u64,

    /// Serve linearizable reads from the leader's lease, without a round of heartbeats per
    /// read. This assumes every member's clock runs at the same rate, within one tick per
    /// election timeout: a paused process or a slow clock can then serve a stale read. Off,
    /// reads use ReadIndex, which assumes nothing about clocks.
    #[arg(long)]
    pub read_lease: bool,

    /// DANGER: never fsync the log. Acknowledged writes can be lost, and a member that
    /// forgets its vote or log can break Raft's safety. Only for benchmarks of everything
    /// else.
    #[arg(long)]
    pub dangerously_skip_fsync: bool,
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The first RESP port; the nodes serve on this port and the next two.
    #[arg(long, default_value_t = 6381)]
    pub base_port: u16,

    /// The first Raft port; the nodes talk to each other on this port and the next two.
    #[arg(long, default_value_t = 7001)]
    pub raft_base_port: u16,

    /// Keep the logs here (in node1/, node2/, node3/) instead of a temporary directory that is
    /// removed on exit; running again with the same directory recovers the data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Connections each RESP server serves at once.
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS)]
    pub max_clients: usize,

    /// Raft timing and durability.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `serve-local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Where to serve RESP clients (HOST:PORT).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6381")]
    pub client: String,

    /// Connections served at once; more are refused.
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS)]
    pub max_clients: usize,
}

/// `ID=HOST:PORT`.
fn parse_peer(s: &str) -> Result<(u64, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not ID=HOST:PORT"))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("`{id}` is not a member id"))?;
    if id == 0 {
        return Err("member ids start at 1".into());
    }
    let addr = addr
        .trim()
        .to_socket_addrs()
        .map_err(|e| format!("`{addr}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{addr}` resolves to no address"))?;
    Ok((id, addr))
}

/// A u64 in decimal or (with `0x`) hexadecimal.
fn parse_u64(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => s.replace('_', "").parse(),
    };
    parsed.map_err(|e| format!("`{s}`: {e}"))
}

/// Checks a member list: no id twice, no address twice, and `id` among them.
pub fn check_members(id: u64, peers: &[(u64, SocketAddr)]) -> Result<(), String> {
    for (i, (a, addr)) in peers.iter().enumerate() {
        for (b, other) in &peers[i + 1..] {
            if a == b {
                return Err(format!("member {a} is listed twice in --peers"));
            }
            if addr == other {
                return Err(format!("members {a} and {b} share the address {addr}"));
            }
        }
    }
    if !peers.iter().any(|(p, _)| *p == id) {
        return Err(format!("--peers does not list this node's id {id}"));
    }
    Ok(())
}

/// The node configuration for these options.
pub fn node_config(
    id: u64,
    peers: &[(u64, SocketAddr)],
    data_dir: &Path,
    args: &NodeArgs,
) -> NodeConfig {
    let members = peers.iter().map(|&(i, a)| (NodeId(i), a)).collect();
    let mut c = NodeConfig::new(NodeId(id), args.cluster_id, members, data_dir);
    c.tick = Duration::from_millis(args.tick_ms);
    c.election_ticks = args.election_ticks;
    c.heartbeat_ticks = args.heartbeat_ticks;
    c.request_timeout = Duration::from_millis(args.request_timeout_ms);
    // The RESP limits are derived from this figure; keep the node's in step with them.
    c.max_command_bytes = MAX_COMMAND_BYTES;
    c.wal.dangerously_skip_fsync = args.dangerously_skip_fsync;
    c.snapshot_entries = args.snapshot_entries;
    c.snapshot_bytes = args.snapshot_bytes;
    c.log_keep_entries = args.log_keep_entries;
    c.read_lease = args.read_lease;
    c
}

/// Whether `dir` holds nothing yet (or does not exist): a node that has never run there.
fn is_new_dir(dir: &Path) -> Result<bool, CliError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(format!("data directory {}: {e}", dir.display()).into()),
    }
}

/// The member list for a node that joins through `via`: the members it lists with their
/// addresses, and this node at `raft_addr`.
fn join_peers(
    id: u64,
    raft_addr: SocketAddr,
    via: &str,
    data_dir: &Path,
) -> Result<Vec<(u64, SocketAddr)>, CliError> {
    let new = is_new_dir(data_dir)?;
    let wait = if new {
        JOIN_CONNECT_DEADLINE
    } else {
        REJOIN_CONNECT_DEADLINE
    };
    let members = match join::fetch_members(via, Instant::now() + wait) {
        Ok(m) => m,
        Err(e) if !new => {
            tracing::warn!(%via, error = %e, "cannot ask for the members; starting from the \
                configuration in the data directory");
            Vec::new()
        }
        Err(e) => return Err(format!("cannot ask {via} for the cluster's members: {e}").into()),
    };
    if new {
        if let Some(m) = members.iter().find(|m| m.id == id) {
            return Err(format!(
                "member id {id} is already in the cluster (a {}); a new member needs an id of \
                 its own, and a member that lost its data directory must be removed \
                 (RAFT.REMOVE {id}) before it joins again",
                m.role
            )
            .into());
        }
    }
    let mut peers: Vec<(u64, SocketAddr)> = members
        .iter()
        .filter(|m| m.id != id)
        .filter_map(|m| m.addr.map(|a| (m.id, a)))
        .collect();
    peers.push((id, raft_addr));
    check_members(id, &peers)?;
    Ok(peers)
}

/// Sets up logging to stderr from `--log-level`, else RUST_LOG, else `info`.
pub fn init_logging(log_level: Option<&str>) -> Result<(), CliError> {
    use tracing_subscriber::EnvFilter;
    let filter = match log_level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|e| format!("--log-level `{level}`: {e}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a test's or a service's log.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()?;
    Ok(())
}

/// Runs the chosen subcommand until Ctrl-C (or SIGTERM).
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Demo(args) => demo(args),
        Command::ServeLocal(args) => serve_local(args),
    }
}

fn warn_if_unsafe(args: &NodeArgs) {
    if args.dangerously_skip_fsync {
        tracing::warn!(
            "!!! --dangerously-skip-fsync: the log is never synced to disk. A crash or power \
             loss can lose acknowledged writes and break Raft's safety. Never use this for \
             data you care about. !!!"
        );
    }
}

/// Binds a RESP listener, naming the address in the error.
fn bind(addr: &str) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr).map_err(|e| format!("cannot listen for clients on {addr}: {e}").into())
}

/// The RESP server's configuration: the given client limit, the default runtime.
fn server_config(max_clients: usize) -> ServerConfig {
    ServerConfig {
        max_clients,
        ..ServerConfig::default()
    }
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> Result<(), CliError> {
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    // An error means the handler (the only sender) is gone, which ends the wait just the same.
    let _ = rx.recv();
    tracing::info!("signal received; shutting down");
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), CliError> {
    warn_if_unsafe(&args.node);
    // clap makes --join and --raft-addr go together and exclude --peers.
    let joining = args.join.as_deref().zip(args.raft_addr);
    let peers = match joining {
        Some((via, raft_addr)) => join_peers(args.id, raft_addr, via, &args.data_dir)?,
        None => {
            check_members(args.id, &args.peers)?;
            args.peers.clone()
        }
    };
    let listener = bind(&args.client)?;
    let mut config = node_config(args.id, &peers, &args.data_dir, &args.node);
    config.join = joining.is_some();
    let store = KvStore::new();
    let keys = store.key_count();
    let node =
        Node::start(config, store).map_err(|e| format!("node {} cannot start: {e}", args.id))?;
    let backend = Arc::new(RaftBackend::new(node.handle(), keys));
    let server = Server::start(listener, backend, server_config(args.max_clients))?;
    if let Some((via, raft_addr)) = joining {
        // Detached: it ends by itself, and the process exits without waiting for it.
        join::spawn(node.handle(), via.to_string(), raft_addr)
            .map_err(|e| format!("cannot spawn the join thread: {e}"))?;
    }
    tracing::info!(
        id = args.id,
        client = %server.local_addr(),
        raft = %node.raft_addr(),
        data_dir = %args.data_dir.display(),
        "serving"
    );
    wait_for_signal()?;
    server.shutdown();
    node.shutdown();
    Ok(())
}

fn demo(args: DemoArgs) -> Result<(), CliError> {
    warn_if_unsafe(&args.node);
    let port = |base: u16, i: u16| {
        base.checked_add(i)
            .ok_or_else(|| format!("port {base} + {i} is past 65535"))
    };
    let mut peers = Vec::new();
    for i in 0..3u16 {
        let addr = SocketAddr::from(([127, 0, 0, 1], port(args.raft_base_port, i)?));
        peers.push((u64::from(i) + 1, addr));
    }
    // Kept alive until the end of the function, which removes the directory.
    let temp;
    let base_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("tickraft-kv-demo-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for &(id, _) in &peers {
        let client = format!("127.0.0.1:{}", port(args.base_port, (id - 1) as u16)?);
        let listener = bind(&client)?;
        let config = node_config(id, &peers, &base_dir.join(format!("node{id}")), &args.node);
        let store = KvStore::new();
        let keys = store.key_count();
        let node =
            Node::start(config, store).map_err(|e| format!("node {id} cannot start: {e}"))?;
        let backend = Arc::new(RaftBackend::new(node.handle(), keys));
        servers.push(Server::start(
            listener,
            backend,
            server_config(args.max_clients),
        )?);
        nodes.push(node);
    }
    println!("tickraft-kv demo: a 3-node Raft cluster in this process");
    println!("  logs in {}", base_dir.display());
    for (server, node) in servers.iter().zip(&nodes) {
        println!(
            "  node {}: clients on {}  (raft on {})",
            node.handle().id(),
            server.local_addr(),
            node.raft_addr()
        );
    }
    let first = args.base_port;
    println!("try:");
    println!("  redis-cli -p {first} SET counter 1");
    println!("  redis-cli -p {} INCR counter", first + 1);
    println!("  redis-cli -p {} GET counter", first + 2);
    println!("  redis-cli -p {} INFO raft", first + 1);
    println!("  redis-cli -p {first} RAFT.MEMBERS");
    println!("Ctrl-C stops the cluster.");
    wait_for_signal()?;
    // Clients first, so that no request reaches a node that is shutting down.
    for server in servers {
        server.shutdown();
    }
    for node in nodes {
        node.shutdown();
    }
    Ok(())
}

fn serve_local(args: LocalArgs) -> Result<(), CliError> {
    let listener = bind(&args.client)?;
    let server = Server::start(
        listener,
        Arc::new(LocalBackend::new()),
        server_config(args.max_clients),
    )?;
    tracing::warn!(
        client = %server.local_addr(),
        "serve-local: an in-process store without Raft, for testing clients; nothing is \
         replicated or persisted"
    );
    wait_for_signal()?;
    server.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_command_line_parses() {
        let cli = Cli::try_parse_from([
            "tickraft-kv",
            "serve",
            "--id",
            "1",
            "--peers",
            "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003",
            "--client",
            "127.0.0.1:6381",
            "--data-dir",
            "/tmp/x",
            "--cluster-id",
            "0x10",
            "--tick-ms",
            "5",
            "--dangerously-skip-fsync",
            "--log-level",
            "debug",
        ])
        .expect("the README's command line");
        assert_eq!(cli.log_level.as_deref(), Some("debug"));
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.id, 1);
        assert_eq!(args.peers.len(), 3);
        assert_eq!(args.peers[2], (3, "127.0.0.1:7003".parse().expect("addr")));
        check_members(args.id, &args.peers).expect("valid members");
        let c = node_config(args.id, &args.peers, &args.data_dir, &args.node);
        assert_eq!(c.cluster_id, 16);
        assert_eq!(c.tick, Duration::from_millis(5));
        assert_eq!(c.election_ticks, 10);
        assert_eq!(c.heartbeat_ticks, 2);
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(c.max_command_bytes, MAX_COMMAND_BYTES);
        assert!(c.wal.dangerously_skip_fsync);
        assert_eq!(args.max_clients, DEFAULT_MAX_CLIENTS);
    }

    #[test]
    fn defaults_and_bad_members() {
        let cli = Cli::try_parse_from(["tickraft-kv", "demo"]).expect("bare demo");
        let Command::Demo(d) = cli.command else {
            panic!("not demo");
        };
        assert_eq!((d.base_port, d.raft_base_port), (6381, 7001));
        assert_eq!(d.node.cluster_id, DEFAULT_CLUSTER_ID);
        assert!(!d.node.dangerously_skip_fsync);
        assert!(parse_peer("0=127.0.0.1:1").is_err());
        assert!(parse_peer("1:127.0.0.1:1").is_err());
        assert!(parse_peer("x=127.0.0.1:1").is_err());
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let b: SocketAddr = "127.0.0.1:2".parse().expect("addr");
        assert!(check_members(1, &[(1, a), (1, b)]).is_err());
        assert!(check_members(1, &[(1, a), (2, a)]).is_err());
        assert!(check_members(3, &[(1, a), (2, b)]).is_err());
        assert!(Cli::try_parse_from(["tickraft-kv", "serve", "--id", "0"]).is_err());
    }

    fn serve_args(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut argv = vec![
            "tickraft-kv",
            "serve",
            "--id",
            "4",
            "--client",
            "127.0.0.1:6384",
            "--data-dir",
            "/tmp/x",
        ];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(args) => Ok(args),
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn join_flags() {
        let args = serve_args(&["--join", "127.0.0.1:6381", "--raft-addr", "127.0.0.1:7004"])
            .expect("join");
        assert_eq!(args.join.as_deref(), Some("127.0.0.1:6381"));
        assert_eq!(
            args.raft_addr,
            Some("127.0.0.1:7004".parse().expect("addr"))
        );
        assert!(args.peers.is_empty());
        // --join needs --raft-addr and excludes --peers; one of --join and --peers is needed.
        assert!(serve_args(&["--join", "127.0.0.1:6381"]).is_err());
        assert!(serve_args(&["--raft-addr", "127.0.0.1:7004"]).is_err());
        assert!(serve_args(&[
            "--join",
            "127.0.0.1:6381",
            "--raft-addr",
            "127.0.0.1:7004",
            "--peers",
            "4=127.0.0.1:7004"
        ])
        .is_err());
        assert!(serve_args(&[]).is_err());
        assert!(
            serve_args(&["--peers", "4=127.0.0.1:7004", "--id", "9223372036854775808"]).is_err()
        );
    }

    #[test]
    fn snapshot_and_lease_flags_reach_the_node_config() {
        let args = serve_args(&["--peers", "4=127.0.0.1:7004"]).expect("defaults");
        let c = node_config(args.id, &args.peers, &args.data_dir, &args.node);
        assert_eq!((c.snapshot_entries, c.snapshot_bytes), (100_000, 256 << 20));
        assert_eq!(c.log_keep_entries, 1000);
        assert!(!c.read_lease);
        assert!(!c.join);
        let args = serve_args(&[
            "--peers",
            "4=127.0.0.1:7004",
            "--snapshot-entries",
            "50",
            "--snapshot-bytes",
            "0",
            "--log-keep-entries",
            "7",
            "--read-lease",
        ])
        .expect("set");
        let c = node_config(args.id, &args.peers, &args.data_dir, &args.node);
        assert_eq!((c.snapshot_entries, c.snapshot_bytes), (50, 0));
        assert_eq!(c.log_keep_entries, 7);
        assert!(c.read_lease);
    }

    #[test]
    fn only_an_empty_or_missing_directory_is_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(is_new_dir(&dir.path().join("missing")).expect("ok"));
        assert!(is_new_dir(dir.path()).expect("ok"));
        std::fs::write(dir.path().join("f"), b"x").expect("write");
        assert!(!is_new_dir(dir.path()).expect("ok"));
    }
}
