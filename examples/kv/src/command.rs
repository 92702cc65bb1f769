//! Commands: what a request's arguments mean. Data operations ([`Op`]) go into the log in
//! the encoding of [`crate::codec`].

use std::fmt;
use std::net::SocketAddr;

use raft_std::NodeId;

use crate::resp::{printable, write_error, Args};

/// When `SET` sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetCondition<B> {
    /// Always.
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
    /// `IFEQ expected` (Valkey 8.1): only if the key holds exactly `expected`.
    IfEqual(B),
}

/// A data operation, over owned arguments (`B = Vec<u8>`, as parsed from a request) or over
/// slices of an encoded command (`B = &[u8]`, as decoded from the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op<B> {
    /// `PING [msg]`: `+PONG`, or `msg` as a bulk string.
    Ping(Option<B>),
    /// `ECHO msg`.
    Echo(B),
    /// `GET key`.
    Get(B),
    /// `MGET key [key ...]`.
    MGet(Vec<B>),
    /// `EXISTS key [key ...]`: how many of the keys exist, counting repeats.
    Exists(Vec<B>),
    /// `DBSIZE`.
    DbSize,
    /// `SET key value [NX|XX|IFEQ expected]`.
    Set {
        /// The key.
        key: B,
        /// The new value.
        value: B,
        /// When to set.
        condition: SetCondition<B>,
    },
    /// `DEL key [key ...]`: how many keys were removed.
    Del(Vec<B>),
    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`: add `delta` to the integer at `key` (0 if absent).
    IncrBy {
        /// The key.
        key: B,
        /// What to add (negative for a decrement).
        delta: i64,
    },
    /// `MSET key value [key value ...]`, applied atomically.
    MSet(Vec<(B, B)>),
}

impl<B: AsRef<[u8]>> Op<B> {
    /// Whether the operation changes the store, so must be proposed rather than read.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Set { .. } | Op::Del(_) | Op::IncrBy { .. } | Op::MSet(_)
        )
    }

    /// Whether the server answers it itself, without the store (outside a transaction).
    pub fn is_local(&self) -> bool {
        matches!(self, Op::Ping(_) | Op::Echo(_))
    }
}

/// What `CLIENT` was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCommand {
    /// `CLIENT SETNAME name`.
    SetName(Vec<u8>),
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT ID`.
    Id,
    /// `CLIENT LIST [...]` (filters are ignored: every client is listed).
    List,
    /// `CLIENT INFO`.
    Info,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`, and `CLIENT NO-EVICT|NO-TOUCH ON|OFF`:
    /// accepted and ignored.
    Ignored,
}

/// What `COMMAND` was asked. The answers are minimal: enough for `redis-cli` to connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandsQuery {
    /// Bare `COMMAND` and `COMMAND DOCS`: an empty array.
    Empty,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND LIST`: the supported command names.
    List,
    /// `COMMAND INFO name ...`: one nil per name.
    Info(usize),
}

/// A request to change the cluster or this node's log (`RAFT.*`), which the node carries out
/// (on the leader, forwarded there from a follower).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin {
    /// `RAFT.ADDLEARNER id raft-addr`: add a member that receives the log but does not vote.
    AddLearner {
        /// The new member.
        id: NodeId,
        /// Where its Raft transport listens.
        addr: SocketAddr,
    },
    /// `RAFT.PROMOTE id`: make a learner a voter, once it has caught up.
    Promote(NodeId),
    /// `RAFT.REMOVE id`: remove a member (the leader too: it hands over first).
    Remove(NodeId),
    /// `RAFT.TRANSFER id`: hand leadership to a voter.
    Transfer(NodeId),
    /// `RAFT.SNAPSHOT`: take a snapshot on this node now and compact its log.
    Snapshot,
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A data operation (or `PING`/`ECHO`).
    Op(Op<Vec<u8>>),
    /// `MULTI`.
    Multi,
    /// `EXEC`.
    Exec,
    /// `DISCARD`.
    Discard,
    /// `QUIT`.
    Quit,
    /// `SELECT 0` (the only database).
    Select,
    /// `HELLO [2 [SETNAME name]]`: RESP2 only.
    Hello {
        /// A client name to set.
        setname: Option<Vec<u8>>,
    },
    /// `INFO [section ...]`, sections lower-cased.
    Info(Vec<String>),
    /// `CLIENT ...`.
    Client(ClientCommand),
    /// `CONFIG GET pattern [pattern ...]`.
    ConfigGet(Vec<Vec<u8>>),
    /// `COMMAND ...`.
    Commands(CommandsQuery),
    /// `RAFT.ADDLEARNER`, `RAFT.PROMOTE`, `RAFT.REMOVE`, `RAFT.TRANSFER`, `RAFT.SNAPSHOT`.
    Admin(Admin),
    /// `RAFT.MEMBERS`: the configuration as this node knows it.
    Members,
}

/// The commands this server knows, for `COMMAND LIST` and `COMMAND COUNT`.
pub const COMMAND_NAMES: &[&str] = &[
    "ping",
    "echo",
    "get",
    "set",
    "del",
    "exists",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "mget",
    "mset",
    "dbsize",
    "multi",
    "exec",
    "discard",
    "info",
    "config",
    "client",
    "command",
    "select",
    "hello",
    "quit",
    "raft.addlearner",
    "raft.promote",
    "raft.remove",
    "raft.transfer",
    "raft.snapshot",
    "raft.members",
];

/// Why a request is refused; the connection stays open.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// A command this server does not know (its name, made printable).
    Unknown(String),
    /// Wrong number of arguments for the named (lower-case) command.
    Arity(&'static str),
    /// Options that do not parse.
    Syntax,
    /// An argument (or a stored value) that is not a 64-bit integer.
    NotInteger,
    /// An unknown subcommand of `CLIENT`, `CONFIG` or `COMMAND`.
    UnknownSubcommand {
        /// The command, upper-case.
        command: &'static str,
        /// The subcommand, made printable.
        sub: String,
    },
    /// `SELECT` of a database other than 0.
    DbIndexOutOfRange,
    /// `DECRBY key -9223372036854775808`.
    DecrementOverflow,
    /// A client name with spaces or control characters.
    InvalidClientName,
    /// `HELLO` asked for a protocol other than RESP2.
    NoProto,
    /// `HELLO` with `AUTH`: this server has no users.
    NoAuth,
    /// A member id that is not a positive integer (the argument, made printable).
    InvalidMemberId(String),
    /// A Raft address that is not `IP:PORT` (the argument, made printable).
    InvalidAddress(String),
}

impl fmt::Display for CommandError {
    /// The error line without its `-` and `\r\n`, code first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(name) => write!(f, "ERR unknown command '{name}'"),
            CommandError::Arity(name) => {
                write!(f, "ERR wrong number of arguments for '{name}' command")
            }
            CommandError::Syntax => f.write_str("ERR syntax error"),
            CommandError::NotInteger => f.write_str("ERR value is not an integer or out of range"),
            CommandError::UnknownSubcommand { command, sub } => {
                write!(f, "ERR unknown subcommand '{sub}'. Try {command} HELP.")
            }
            CommandError::DbIndexOutOfRange => f.write_str("ERR DB index is out of range"),
            CommandError::DecrementOverflow => f.write_str("ERR decrement would overflow"),
            CommandError::InvalidClientName => f.write_str(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ),
            CommandError::NoProto => f.write_str("NOPROTO unsupported protocol version"),
            CommandError::NoAuth => {
                f.write_str("ERR AUTH called without any password configured for the default user")
            }
            CommandError::InvalidMemberId(id) => {
                write!(
                    f,
                    "ERR invalid member id '{id}': expected an integer from 1"
                )
            }
            CommandError::InvalidAddress(addr) => {
                write!(f, "ERR invalid Raft address '{addr}': expected IP:PORT")
            }
        }
    }
}

impl CommandError {
    /// Appends the error reply.
    pub fn write(&self, out: &mut Vec<u8>) {
        write_error(out, &self.to_string());
    }
}

/// A signed 64-bit integer written as Redis's `string2ll` accepts it: an optional `-`, then
/// digits without leading zeros; no `+`, no spaces.
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    match digits {
        [] => return None,
        [b'0'] if !neg => return Some(0),
        [b'0', ..] => return None,
        _ if digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) => return None,
        _ => {}
    }
    // Accumulate negatively so that i64::MIN, whose magnitude i64 cannot hold, parses too.
    let mut n: i64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if neg {
        Some(n)
    } else {
        n.checked_neg()
    }
}

impl Command {
    /// Parses a request. `args` is never empty (the parser drops empty requests), but an empty
    /// one is an unknown command rather than a panic.
    pub fn parse(args: Args) -> Result<Command, CommandError> {
        let Some(first) = args.first() else {
            return Err(CommandError::Unknown(String::new()));
        };
        let name = first.to_ascii_lowercase();
        let argc = args.len();
        let mut it = args.into_iter();
        it.next();
        let check = |name: &'static str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(CommandError::Arity(name))
            }
        };
        // Every arm below has checked the count before taking from `it`, so `next()` returns
        // `Some`; the `unwrap_or_default` keeps a mistake there from becoming a panic.
        let mut arg = move || it.next().unwrap_or_default();
        let op = |op| Ok(Command::Op(op));
        match name.as_slice() {
            b"get" => {
                check("get", argc == 2)?;
                op(Op::Get(arg()))
            }
            b"set" => {
                check("set", argc >= 3)?;
                let key = arg();
                let value = arg();
                let mut condition = SetCondition::Always;
                let mut rest = argc - 3;
                while rest > 0 {
                    let opt = arg().to_ascii_uppercase();
                    rest -= 1;
                    let next = match opt.as_slice() {
                        b"NX" => SetCondition::IfAbsent,
                        b"XX" => SetCondition::IfPresent,
                        b"IFEQ" if rest > 0 => {
                            rest -= 1;
                            SetCondition::IfEqual(arg())
                        }
                        // No key has a time to live, so keeping it is already what happens.
                        b"KEEPTTL" => continue,
                        _ => return Err(CommandError::Syntax),
                    };
                    // As in Redis and Valkey: NX and XX may repeat, but not mix, and IFEQ
                    // goes with neither and appears once.
                    let repeat = condition == next && !matches!(next, SetCondition::IfEqual(_));
                    if condition != SetCondition::Always && !repeat {
                        return Err(CommandError::Syntax);
                    }
                    condition = next;
                }
                op(Op::Set {
                    key,
                    value,
                    condition,
                })
            }
            b"del" => {
                check("del", argc >= 2)?;
                op(Op::Del((1..argc).map(|_| arg()).collect()))
            }
            b"exists" => {
                check("exists", argc >= 2)?;
                op(Op::Exists((1..argc).map(|_| arg()).collect()))
            }
            b"mget" => {
                check("mget", argc >= 2)?;
                op(Op::MGet((1..argc).map(|_| arg()).collect()))
            }
            b"mset" => {
                check("mset", argc >= 3 && argc % 2 == 1)?;
                op(Op::MSet((0..argc / 2).map(|_| (arg(), arg())).collect()))
            }
            b"incr" | b"decr" => {
                let (n, delta) = if name == b"incr" {
                    ("incr", 1)
                } else {
                    ("decr", -1)
                };
                check(n, argc == 2)?;
                op(Op::IncrBy { key: arg(), delta })
            }
            b"incrby" | b"decrby" => {
                let decr = name == b"decrby";
                check(if decr { "decrby" } else { "incrby" }, argc == 3)?;
                let key = arg();
                let n = parse_i64(&arg()).ok_or(CommandError::NotInteger)?;
                let delta = if decr {
                    n.checked_neg().ok_or(CommandError::DecrementOverflow)?
                } else {
                    n
                };
                op(Op::IncrBy { key, delta })
            }
            b"dbsize" => {
                check("dbsize", argc == 1)?;
                op(Op::DbSize)
            }
            b"ping" => {
                check("ping", argc <= 2)?;
                op(Op::Ping((argc == 2).then(arg)))
            }
            b"echo" => {
                check("echo", argc == 2)?;
                op(Op::Echo(arg()))
            }
            b"multi" => check("multi", argc == 1).map(|()| Command::Multi),
            b"exec" => check("exec", argc == 1).map(|()| Command::Exec),
            b"discard" => check("discard", argc == 1).map(|()| Command::Discard),
            b"quit" => Ok(Command::Quit),
            b"select" => {
                check("select", argc == 2)?;
                match parse_i64(&arg()) {
                    Some(0) => Ok(Command::Select),
                    Some(_) => Err(CommandError::DbIndexOutOfRange),
                    None => Err(CommandError::NotInteger),
                }
            }
            b"hello" => parse_hello(argc, arg),
            b"info" => Ok(Command::Info(
                (1..argc)
                    .map(|_| printable(&arg()).to_ascii_lowercase())
                    .collect(),
            )),
            b"client" => {
                check("client", argc >= 2)?;
                parse_client(argc, arg).map(Command::Client)
            }
            b"config" => {
                check("config", argc >= 2)?;
                let sub = arg();
                if !sub.eq_ignore_ascii_case(b"get") {
                    return Err(CommandError::UnknownSubcommand {
                        command: "CONFIG",
                        sub: printable(&sub),
                    });
                }
                check("config|get", argc >= 3)?;
                Ok(Command::ConfigGet((2..argc).map(|_| arg()).collect()))
            }
            b"command" => {
                if argc == 1 {
                    return Ok(Command::Commands(CommandsQuery::Empty));
                }
                let sub = arg().to_ascii_lowercase();
                let query = match sub.as_slice() {
                    b"docs" => CommandsQuery::Empty,
                    b"count" => CommandsQuery::Count,
                    b"list" => CommandsQuery::List,
                    b"info" => CommandsQuery::Info(argc - 2),
                    _ => {
                        return Err(CommandError::UnknownSubcommand {
                            command: "COMMAND",
                            sub: printable(&sub),
                        })
                    }
                };
                Ok(Command::Commands(query))
            }
            b"raft.addlearner" => {
                check("raft.addlearner", argc == 3)?;
                let id = parse_member_id(&arg())?;
                let addr = parse_raft_addr(&arg())?;
                Ok(Command::Admin(Admin::AddLearner { id, addr }))
            }
            b"raft.promote" => {
                check("raft.promote", argc == 2)?;
                Ok(Command::Admin(Admin::Promote(parse_member_id(&arg())?)))
            }
            b"raft.remove" => {
                check("raft.remove", argc == 2)?;
                Ok(Command::Admin(Admin::Remove(parse_member_id(&arg())?)))
            }
            b"raft.transfer" => {
                check("raft.transfer", argc == 2)?;
                Ok(Command::Admin(Admin::Transfer(parse_member_id(&arg())?)))
            }
            b"raft.snapshot" => {
                check("raft.snapshot", argc == 1).map(|()| Command::Admin(Admin::Snapshot))
            }
            b"raft.members" => check("raft.members", argc == 1).map(|()| Command::Members),
            _ => Err(CommandError::Unknown(printable(&name))),
        }
    }
}

/// A member id: an integer from 1, written as [`parse_i64`] reads it, so at most `i64::MAX`
/// (`RAFT.MEMBERS` answers ids as RESP integers, which are signed).
pub fn parse_member_id(b: &[u8]) -> Result<NodeId, CommandError> {
    match parse_i64(b) {
        Some(id) if id > 0 => Ok(NodeId(id as u64)),
        _ => Err(CommandError::InvalidMemberId(printable(b))),
    }
}

/// A Raft address: a literal `IP:PORT` (`[v6]:PORT` for IPv6), never a host name, so that the
/// server never waits on DNS while it answers.
fn parse_raft_addr(b: &[u8]) -> Result<SocketAddr, CommandError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CommandError::InvalidAddress(printable(b)))
}

fn parse_hello(argc: usize, mut arg: impl FnMut() -> Vec<u8>) -> Result<Command, CommandError> {
    if argc == 1 {
        return Ok(Command::Hello { setname: None });
    }
    match parse_i64(&arg()) {
        Some(2) => {}
        Some(_) => return Err(CommandError::NoProto),
        None => return Err(CommandError::NoProto),
    }
    let mut setname = None;
    let mut rest = argc - 2;
    while rest > 0 {
        let opt = arg().to_ascii_uppercase();
        rest -= 1;
        match opt.as_slice() {
            b"AUTH" if rest >= 2 => return Err(CommandError::NoAuth),
            b"SETNAME" if rest >= 1 => {
                rest -= 1;
                setname = Some(valid_client_name(arg())?);
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(Command::Hello { setname })
}

fn parse_client(
    argc: usize,
    mut arg: impl FnMut() -> Vec<u8>,
) -> Result<ClientCommand, CommandError> {
    let sub = arg().to_ascii_lowercase();
    let arity = |name, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(CommandError::Arity(name))
        }
    };
    match sub.as_slice() {
        b"setname" => {
            arity("client|setname", argc == 3)?;
            valid_client_name(arg()).map(ClientCommand::SetName)
        }
        b"getname" => arity("client|getname", argc == 2).map(|()| ClientCommand::GetName),
        b"id" => arity("client|id", argc == 2).map(|()| ClientCommand::Id),
        b"info" => arity("client|info", argc == 2).map(|()| ClientCommand::Info),
        b"list" => Ok(ClientCommand::List),
        b"setinfo" => {
            arity("client|setinfo", argc == 4)?;
            let attr = arg().to_ascii_uppercase();
            if attr != b"LIB-NAME" && attr != b"LIB-VER" {
                return Err(CommandError::Syntax);
            }
            Ok(ClientCommand::Ignored)
        }
        b"no-evict" | b"no-touch" => {
            arity("client", argc == 3)?;
            let v = arg().to_ascii_uppercase();
            if v != b"ON" && v != b"OFF" {
                return Err(CommandError::Syntax);
            }
            Ok(ClientCommand::Ignored)
        }
        _ => Err(CommandError::UnknownSubcommand {
            command: "CLIENT",
            sub: printable(&sub),
        }),
    }
}

/// Redis's rule for client names: printable ASCII without spaces.
fn valid_client_name(name: Vec<u8>) -> Result<Vec<u8>, CommandError> {
    if name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        Ok(name)
    } else {
        Err(CommandError::InvalidClientName)
    }
}

#[cfg(test)]
/// Test helpers shared by the modules that turn commands into log entries and replies.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{Command, CommandError, Op};

    /// Parses a command written as space-separated words.
    pub(crate) fn parse(words: &str) -> Result<Command, CommandError> {
        Command::parse(words.split(' ').map(|w| w.as_bytes().to_vec()).collect())
    }

    /// The data operation `words` parse to (panics on anything else).
    pub(crate) fn op(words: &str) -> Op<Vec<u8>> {
        match parse(words) {
            Ok(Command::Op(op)) => op,
            other => panic!("{words}: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{op, parse};
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(op("gEt k"), Op::Get(b("k")));
        assert_eq!(parse("MuLtI"), Ok(Command::Multi));
    }

    #[test]
    fn arity_errors_name_the_command() {
        for (words, name) in [
            ("GET", "get"),
            ("GET a b", "get"),
            ("SET k", "set"),
            ("DEL", "del"),
            ("EXISTS", "exists"),
            ("INCR", "incr"),
            ("DECR a b", "decr"),
            ("INCRBY k", "incrby"),
            ("DECRBY k 1 2", "decrby"),
            ("MGET", "mget"),
            ("MSET k", "mset"),
            ("MSET k v k2", "mset"),
            ("PING a b", "ping"),
            ("ECHO", "echo"),
            ("DBSIZE x", "dbsize"),
            ("MULTI x", "multi"),
            ("SELECT", "select"),
        ] {
            assert_eq!(parse(words), Err(CommandError::Arity(name)), "{words}");
        }
        assert_eq!(
            parse("GET").expect_err("refused").to_string(),
            "ERR wrong number of arguments for 'get' command"
        );
    }

    #[test]
    fn unknown_commands_are_named_printably() {
        assert_eq!(
            parse("FLUSHALL").expect_err("refused").to_string(),
            "ERR unknown command 'flushall'"
        );
        let e = Command::parse(vec![b"a\r\nb".to_vec()])
            .expect_err("refused")
            .to_string();
        assert_eq!(e, "ERR unknown command 'a\\x0d\\x0ab'");
    }

    #[test]
    fn set_options() {
        let set = |condition| Op::Set {
            key: b("k"),
            value: b("v"),
            condition,
        };
        assert_eq!(op("SET k v"), set(SetCondition::Always));
        assert_eq!(op("SET k v nx"), set(SetCondition::IfAbsent));
        assert_eq!(op("SET k v XX"), set(SetCondition::IfPresent));
        assert_eq!(op("SET k v IFEQ old"), set(SetCondition::IfEqual(b("old"))));
        assert_eq!(op("SET k v KEEPTTL NX"), set(SetCondition::IfAbsent));
        assert_eq!(op("SET k v NX nx"), set(SetCondition::IfAbsent));
        for bad in [
            "SET k v NX XX",
            "SET k v IFEQ a IFEQ a",
            "SET k v IFEQ",
            "SET k v IFEQ a NX",
            "SET k v XX IFEQ a",
            "SET k v EX 10",
            "SET k v GET",
            "SET k v bogus",
        ] {
            assert_eq!(parse(bad), Err(CommandError::Syntax), "{bad}");
        }
    }

    #[test]
    fn counters_parse_their_increments() {
        assert_eq!(
            op("INCR k"),
            Op::IncrBy {
                key: b("k"),
                delta: 1
            }
        );
        assert_eq!(
            op("DECR k"),
            Op::IncrBy {
                key: b("k"),
                delta: -1
            }
        );
        assert_eq!(
            op("INCRBY k -5"),
            Op::IncrBy {
                key: b("k"),
                delta: -5
            }
        );
        assert_eq!(
            op("DECRBY k 5"),
            Op::IncrBy {
                key: b("k"),
                delta: -5
            }
        );
        assert_eq!(
            op("DECRBY k 9223372036854775807"),
            Op::IncrBy {
                key: b("k"),
                delta: -i64::MAX
            }
        );
        assert_eq!(
            parse("DECRBY k -9223372036854775808"),
            Err(CommandError::DecrementOverflow)
        );
        for bad in ["INCRBY k x", "INCRBY k 1.5", "INCRBY k +1", "INCRBY k 01"] {
            assert_eq!(parse(bad), Err(CommandError::NotInteger), "{bad}");
        }
        let spaced = vec![b("INCRBY"), b("k"), b(" 1")];
        assert_eq!(Command::parse(spaced), Err(CommandError::NotInteger));
    }

    #[test]
    fn integers_parse_like_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
            b"1e3",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn multi_key_commands() {
        assert_eq!(op("DEL a b a"), Op::Del(vec![b("a"), b("b"), b("a")]));
        assert_eq!(op("EXISTS a"), Op::Exists(vec![b("a")]));
        assert_eq!(op("MGET a b"), Op::MGet(vec![b("a"), b("b")]));
        assert_eq!(
            op("MSET a 1 b 2"),
            Op::MSet(vec![(b("a"), b("1")), (b("b"), b("2"))])
        );
    }

    #[test]
    fn connection_commands() {
        assert_eq!(op("PING"), Op::Ping(None));
        assert_eq!(op("PING hi"), Op::Ping(Some(b("hi"))));
        assert_eq!(parse("SELECT 0"), Ok(Command::Select));
        assert_eq!(parse("SELECT 1"), Err(CommandError::DbIndexOutOfRange));
        assert_eq!(parse("SELECT x"), Err(CommandError::NotInteger));
        assert_eq!(parse("HELLO"), Ok(Command::Hello { setname: None }));
        assert_eq!(
            parse("HELLO 2 SETNAME me"),
            Ok(Command::Hello {
                setname: Some(b("me"))
            })
        );
        assert_eq!(parse("HELLO 3"), Err(CommandError::NoProto));
        assert_eq!(parse("HELLO 2 AUTH u p"), Err(CommandError::NoAuth));
        assert!(parse("HELLO 3")
            .expect_err("refused")
            .to_string()
            .starts_with("NOPROTO "));
        assert_eq!(
            parse("INFO Raft server"),
            Ok(Command::Info(vec![b_s("raft"), b_s("server")]))
        );
        assert_eq!(
            parse("CONFIG GET save"),
            Ok(Command::ConfigGet(vec![b("save")]))
        );
        assert!(matches!(
            parse("CONFIG SET a b"),
            Err(CommandError::UnknownSubcommand { .. })
        ));
        assert_eq!(
            parse("COMMAND"),
            Ok(Command::Commands(CommandsQuery::Empty))
        );
        assert_eq!(
            parse("COMMAND DOCS"),
            Ok(Command::Commands(CommandsQuery::Empty))
        );
        assert_eq!(
            parse("COMMAND COUNT"),
            Ok(Command::Commands(CommandsQuery::Count))
        );
        assert_eq!(
            parse("command info get set"),
            Ok(Command::Commands(CommandsQuery::Info(2)))
        );
        assert_eq!(
            parse("CLIENT SETNAME me"),
            Ok(Command::Client(ClientCommand::SetName(b("me"))))
        );
        assert_eq!(
            Command::parse(vec![b("CLIENT"), b("SETNAME"), b("a b")]),
            Err(CommandError::InvalidClientName)
        );
        assert_eq!(
            parse("CLIENT SETINFO LIB-NAME redis-py"),
            Ok(Command::Client(ClientCommand::Ignored))
        );
        assert_eq!(parse("CLIENT SETINFO x y"), Err(CommandError::Syntax));
        assert_eq!(
            parse("CLIENT GETNAME"),
            Ok(Command::Client(ClientCommand::GetName))
        );
        assert_eq!(
            parse("CLIENT LIST TYPE normal"),
            Ok(Command::Client(ClientCommand::List))
        );
        assert!(matches!(
            parse("CLIENT KILL x"),
            Err(CommandError::UnknownSubcommand { .. })
        ));
        assert_eq!(parse("QUIT"), Ok(Command::Quit));
    }

    #[test]
    fn raft_commands() {
        let addr: SocketAddr = "127.0.0.1:7004".parse().expect("addr");
        assert_eq!(
            parse("RAFT.ADDLEARNER 4 127.0.0.1:7004"),
            Ok(Command::Admin(Admin::AddLearner {
                id: NodeId(4),
                addr
            }))
        );
        assert_eq!(
            parse("raft.addlearner 9223372036854775807 [::1]:1"),
            Ok(Command::Admin(Admin::AddLearner {
                id: NodeId(i64::MAX as u64),
                addr: "[::1]:1".parse().expect("addr"),
            }))
        );
        assert_eq!(
            parse("RAFT.PROMOTE 4"),
            Ok(Command::Admin(Admin::Promote(NodeId(4))))
        );
        assert_eq!(
            parse("Raft.Remove 1"),
            Ok(Command::Admin(Admin::Remove(NodeId(1))))
        );
        assert_eq!(
            parse("RAFT.TRANSFER 2"),
            Ok(Command::Admin(Admin::Transfer(NodeId(2))))
        );
        assert_eq!(parse("RAFT.SNAPSHOT"), Ok(Command::Admin(Admin::Snapshot)));
        assert_eq!(parse("RAFT.MEMBERS"), Ok(Command::Members));
    }

    #[test]
    fn raft_commands_check_arity_ids_and_addresses() {
        for (words, name) in [
            ("RAFT.ADDLEARNER", "raft.addlearner"),
            ("RAFT.ADDLEARNER 4", "raft.addlearner"),
            ("RAFT.ADDLEARNER 4 127.0.0.1:1 x", "raft.addlearner"),
            ("RAFT.PROMOTE", "raft.promote"),
            ("RAFT.PROMOTE 1 2", "raft.promote"),
            ("RAFT.REMOVE", "raft.remove"),
            ("RAFT.TRANSFER 1 2", "raft.transfer"),
            ("RAFT.SNAPSHOT now", "raft.snapshot"),
            ("RAFT.MEMBERS x", "raft.members"),
        ] {
            assert_eq!(parse(words), Err(CommandError::Arity(name)), "{words}");
        }
        for bad in ["0", "-1", "x", "1.5", "+1", "01", "9223372036854775808", ""] {
            for cmd in ["RAFT.PROMOTE", "RAFT.REMOVE", "RAFT.TRANSFER"] {
                let words = vec![b(cmd), b(bad)];
                assert_eq!(
                    Command::parse(words),
                    Err(CommandError::InvalidMemberId(bad.to_string())),
                    "{cmd} {bad}"
                );
            }
            let words = vec![b("RAFT.ADDLEARNER"), b(bad), b("127.0.0.1:1")];
            assert!(
                matches!(Command::parse(words), Err(CommandError::InvalidMemberId(_))),
                "{bad}"
            );
        }
        for bad in [
            "127.0.0.1",
            "localhost:7001",
            "127.0.0.1:99999",
            "::1:7001",
            ":7001",
            "127.0.0.1:",
            "",
            "host:port",
        ] {
            let words = vec![b("RAFT.ADDLEARNER"), b("4"), b(bad)];
            assert_eq!(
                Command::parse(words),
                Err(CommandError::InvalidAddress(printable(bad.as_bytes()))),
                "{bad}"
            );
        }
        let words = vec![b("RAFT.ADDLEARNER"), b("4"), vec![0xff, b':', b'1']];
        assert_eq!(
            Command::parse(words).expect_err("refused").to_string(),
            "ERR invalid Raft address '\\xff:1': expected IP:PORT"
        );
        assert_eq!(
            parse("RAFT.PROMOTE x").expect_err("refused").to_string(),
            "ERR invalid member id 'x': expected an integer from 1"
        );
    }

    fn b_s(s: &str) -> String {
        s.to_string()
    }
}
