//! The RESP server over real TCP, with the in-process backend (no Raft): a real client library
//! (the `redis` crate) runs the commands; hostile and excess clients are refused while others
//! keep working; node errors reach clients as the documented RESP errors.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use raft_std::{AdminError, Index, Metrics, RequestError};
use redis::{Commands, RedisResult, Value};
use tickraft_kv::backend::{AdminReply, Backend, LocalBackend, RaftStatus, Reply};
use tickraft_kv::command::Admin;
use tickraft_kv::server::{Server, ServerConfig};

fn start(backend: Arc<dyn Backend>, max_clients: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut config = ServerConfig::default();
    config.max_clients = max_clients;
    Server::start(listener, backend, config).expect("start")
}

fn local() -> Server {
    start(Arc::new(LocalBackend::new()), 64)
}

fn client(addr: SocketAddr) -> redis::Connection {
    let con = redis::Client::open(format!("redis://{addr}/"))
        .expect("url")
        .get_connection_with_timeout(Duration::from_secs(5))
        .expect("connect");
    con.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    con
}

/// A raw connection, for bytes no client library would send.
fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Everything the server sends until it closes the connection.
fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads exactly `n` bytes.
fn read_n(s: &mut TcpStream, n: usize) -> String {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

fn code(r: RedisResult<Value>) -> String {
    match r {
        Ok(v) => format!("ok: {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn strings_counters_and_multi_key_commands() {
    let server = local();
    let mut con = client(server.local_addr());
    let () = con.set("k", "v").expect("SET");
    assert_eq!(con.get::<_, String>("k").expect("GET"), "v");
    assert_eq!(con.get::<_, Option<String>>("missing").expect("GET"), None);
    assert_eq!(con.incr::<_, _, i64>("n", 1).expect("INCR"), 1);
    assert_eq!(con.incr::<_, _, i64>("n", 41).expect("INCRBY"), 42);
    assert_eq!(con.decr::<_, _, i64>("n", 2).expect("DECRBY"), 40);
    let decr: i64 = redis::cmd("DECR").arg("n").query(&mut con).expect("DECR");
    assert_eq!(decr, 39);
    let e = con.incr::<_, _, i64>("k", 1).expect_err("INCR of a string");
    assert!(
        e.to_string()
            .contains("value is not an integer or out of range"),
        "{e}"
    );
    let () = con.set("max", i64::MAX).expect("SET");
    let e = con.incr::<_, _, i64>("max", 1).expect_err("overflow");
    assert!(
        e.to_string()
            .contains("increment or decrement would overflow"),
        "{e}"
    );

    let () = con.mset(&[("a", "1"), ("b", "2")]).expect("MSET");
    let got: Vec<Option<String>> = con.mget(&["a", "b", "zz"]).expect("MGET");
    assert_eq!(got, vec![Some("1".into()), Some("2".into()), None]);
    assert_eq!(
        con.exists::<_, i64>(&["a", "b", "zz", "a"])
            .expect("EXISTS"),
        3
    );
    assert_eq!(con.del::<_, i64>(&["a", "zz", "a"]).expect("DEL"), 1);
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
    assert_eq!(size, 4); // k, n, max, b

    // NX / XX / IFEQ reply OK or nil.
    let set = |con: &mut redis::Connection, args: &[&str]| -> Option<String> {
        redis::cmd("SET").arg(args).query(con).expect("SET")
    };
    assert_eq!(set(&mut con, &["k", "w", "NX"]), None);
    assert_eq!(set(&mut con, &["new", "w", "NX"]), Some("OK".into()));
    assert_eq!(set(&mut con, &["absent", "w", "XX"]), None);
    assert_eq!(set(&mut con, &["k", "w", "IFEQ", "nope"]), None);
    assert_eq!(set(&mut con, &["k", "w", "IFEQ", "v"]), Some("OK".into()));
    assert_eq!(con.get::<_, String>("k").expect("GET"), "w");
    let e = redis::cmd("SET")
        .arg(&["k", "w", "NX", "XX"])
        .query::<Value>(&mut con);
    assert!(code(e).contains("syntax error"));
}

#[test]
fn transactions_through_a_client_library() {
    let server = local();
    let mut con = client(server.local_addr());
    let () = con.set("x", "1").expect("SET");
    // `atomic()` wraps the pipeline in MULTI ... EXEC.
    let (a, b, c): (i64, i64, String) = redis::pipe()
        .atomic()
        .incr("x", 1)
        .incr("x", 10)
        .get("x")
        .query(&mut con)
        .expect("EXEC");
    assert_eq!((a, b, c.as_str()), (2, 12, "12"));

    // A command refused while queueing aborts the EXEC; nothing is applied.
    let mut s = raw(server.local_addr());
    s.write_all(b"MULTI\r\nINCR x\r\nINCR\r\nEXEC\r\nGET x\r\n")
        .expect("write");
    let want = "+OK\r\n+QUEUED\r\n-ERR wrong number of arguments for 'incr' command\r\n\
                -EXECABORT Transaction discarded because of previous errors.\r\n$2\r\n12\r\n";
    assert_eq!(read_n(&mut s, want.len()), want);
    s.write_all(b"EXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nSET y 1\r\nDISCARD\r\nEXISTS y\r\n")
        .expect("write");
    let want = "-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n\
                -ERR MULTI calls can not be nested\r\n+QUEUED\r\n+OK\r\n:0\r\n";
    assert_eq!(read_n(&mut s, want.len()), want);
    // An empty transaction, and a runtime error inside one that does not stop the rest.
    s.write_all(b"MULTI\r\nEXEC\r\nMULTI\r\nSET s str\r\nINCR s\r\nINCR t\r\nEXEC\r\n")
        .expect("write");
    let want = "+OK\r\n*0\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n\
                -ERR value is not an integer or out of range\r\n:1\r\n";
    assert_eq!(read_n(&mut s, want.len()), want);
}

#[test]
fn info_config_client_and_connection_commands() {
    let server = local();
    let mut con = client(server.local_addr());
    let info: String = redis::cmd("INFO").query(&mut con).expect("INFO");
    for section in ["# Server", "# Clients", "# Stats", "# Keyspace", "# Raft"] {
        assert!(info.contains(section), "{section} in:\n{info}");
    }
    assert!(info.contains("redis_version:7."), "{info}");
    assert!(info.contains(&format!("tcp_port:{}", server.local_addr().port())));
    let raft: String = redis::cmd("INFO")
        .arg("raft")
        .query(&mut con)
        .expect("INFO raft");
    let fields: Vec<&str> = raft
        .lines()
        .skip(1)
        .map(|l| l.split(':').next().unwrap_or(""))
        .collect();
    assert!(raft.starts_with("# Raft\r\n"), "{raft}");
    assert_eq!(
        fields,
        [
            "node_id",
            "role",
            "term",
            "leader_id",
            "commit_index",
            "applied_index",
            "members"
        ]
    );
    assert!(raft.contains("role:leader\r\n"), "{raft}");
    let () = con.set("a", "b").expect("SET");
    let keyspace: String = redis::cmd("INFO")
        .arg("keyspace")
        .query(&mut con)
        .expect("INFO");
    assert!(keyspace.contains("db0:keys=1,"), "{keyspace}");
    let stats: String = redis::cmd("INFO")
        .arg("STATS")
        .query(&mut con)
        .expect("INFO");
    assert!(
        stats.contains("\r\nproposals:1\r\nforwarded:0\r\napplied:1\r\n"),
        "{stats}"
    );
    assert!(!stats.contains("# Raft"));

    let save: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query(&mut con)
        .expect("CONFIG");
    assert_eq!(save, ["save", ""]);
    let aof: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query(&mut con)
        .expect("CONFIG");
    assert_eq!(aof, ["appendonly", "no"]);
    let none: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("nothing*")
        .query(&mut con)
        .expect("CONFIG");
    assert!(none.is_empty());

    let () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tester")
        .query(&mut con)
        .expect("SETNAME");
    let name: String = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query(&mut con)
        .expect("GETNAME");
    assert_eq!(name, "tester");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut con)
        .expect("LIST");
    assert!(list.contains("name=tester"), "{list}");
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut con).expect("ID");
    assert!(id >= 1);
    let () = redis::cmd("SELECT")
        .arg(0)
        .query(&mut con)
        .expect("SELECT 0");
    let e = redis::cmd("SELECT").arg(1).query::<Value>(&mut con);
    assert!(code(e).contains("DB index is out of range"));
    let count: i64 = redis::cmd("COMMAND")
        .arg("COUNT")
        .query(&mut con)
        .expect("COUNT");
    assert!(count > 10);
    let docs: Vec<Value> = redis::cmd("COMMAND")
        .arg("DOCS")
        .query(&mut con)
        .expect("DOCS");
    assert!(docs.is_empty());
    let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
    assert_eq!(pong, "PONG");
    let echo: String = redis::cmd("ECHO").arg("hi").query(&mut con).expect("ECHO");
    assert_eq!(echo, "hi");
    let e = redis::cmd("FLUSHALL").query::<Value>(&mut con);
    assert!(code(e).contains("unknown command 'flushall'"));
    let e = redis::cmd("GET").query::<Value>(&mut con);
    assert!(code(e).contains("wrong number of arguments for 'get' command"));

    // HELLO 3 is refused so that clients fall back to RESP2; QUIT closes.
    let mut s = raw(server.local_addr());
    s.write_all(b"HELLO 3\r\nPING\r\nQUIT\r\n").expect("write");
    let got = read_to_close(&mut s);
    assert!(got.starts_with("-NOPROTO "), "{got}");
    assert!(got.ends_with("+PONG\r\n+OK\r\n"), "{got}");
}

#[test]
fn pipelines_and_inline_commands_are_answered_in_order() {
    let server = local();
    let mut s = raw(server.local_addr());
    let mut batch = Vec::new();
    let mut want = String::new();
    for i in 0..500 {
        batch.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{i}\r\n",
                i.to_string().len()
            )
            .as_bytes(),
        );
        batch.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n");
        want.push_str(&format!("+OK\r\n:{}\r\n", i + 1));
    }
    batch.extend_from_slice(b"GET k\r\nping\r\n");
    want.push_str("$3\r\n499\r\n+PONG\r\n");
    s.write_all(&batch).expect("write");
    assert_eq!(read_n(&mut s, want.len()), want);
}

#[test]
fn a_garbage_or_oversized_client_is_disconnected_and_others_carry_on() {
    let server = local();
    let mut good = client(server.local_addr());
    let () = good.set("k", "v").expect("SET");
    for (garbage, error) in [
        (
            &b"*x\r\n"[..],
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n+PING\r\n",
            "-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"*2\r\n$3\r\nSET\r\n$999999999\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*99999999\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"SET \"unbalanced\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ] {
        let mut s = raw(server.local_addr());
        s.write_all(garbage).expect("write");
        assert_eq!(read_to_close(&mut s), error);
        assert_eq!(good.get::<_, String>("k").expect("GET"), "v");
    }
    // A bulk within the limit but a request past the total limit, declared up front.
    let mut s = raw(server.local_addr());
    let bulk = tickraft_kv::limits::MAX_BULK_BYTES;
    let mut req = format!("*3\r\n$3\r\nSET\r\n${bulk}\r\n").into_bytes();
    req.resize(req.len() + bulk, b'k');
    req.extend_from_slice(format!("\r\n${bulk}\r\n").as_bytes());
    s.write_all(&req).expect("write");
    let got = read_to_close(&mut s);
    assert!(
        got.starts_with("-ERR Protocol error: request larger than"),
        "{got}"
    );
    // An inline line that never ends.
    let mut s = raw(server.local_addr());
    let line = vec![b'a'; tickraft_kv::limits::MAX_INLINE_BYTES + 10];
    // The server may close before taking everything; the error is what matters.
    let _ = s.write_all(&line);
    assert_eq!(
        read_to_close(&mut s),
        "-ERR Protocol error: too big inline request\r\n"
    );
    assert_eq!(good.get::<_, String>("k").expect("GET"), "v");
    // The largest value accepted round-trips.
    let big = vec![b'x'; bulk];
    let () = good.set("big", &big).expect("SET big");
    assert_eq!(good.get::<_, Vec<u8>>("big").expect("GET big"), big);
}

#[test]
fn max_clients_is_enforced() {
    let server = start(Arc::new(LocalBackend::new()), 2);
    let mut a = client(server.local_addr());
    let mut b = client(server.local_addr());
    let _: String = redis::cmd("PING").query(&mut a).expect("PING");
    let _: String = redis::cmd("PING").query(&mut b).expect("PING");
    let mut third = raw(server.local_addr());
    assert_eq!(
        read_to_close(&mut third),
        "-ERR max number of clients reached\r\n"
    );
    // Even a client that speaks first gets the error, not a reset.
    let mut fourth = raw(server.local_addr());
    fourth.write_all(b"PING\r\n").expect("write");
    assert_eq!(
        read_to_close(&mut fourth),
        "-ERR max number of clients reached\r\n"
    );
    let _: String = redis::cmd("PING")
        .query(&mut a)
        .expect("the admitted clients still work");
    drop(b);
    // The slot frees once the server has seen the close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = raw(server.local_addr());
        s.write_all(b"PING\r\n").expect("write");
        let mut buf = [0u8; 7];
        if s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot is never reused");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn concurrent_increments_all_count() {
    // On the default multi-thread runtime and on a current-thread one.
    for threads in [ServerConfig::default().threads, 1] {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut config = ServerConfig::default();
        config.threads = threads;
        let server = Server::start(listener, Arc::new(LocalBackend::new()), config).expect("start");
        let addr = server.local_addr();
        let clients: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut con = client(addr);
                    for _ in 0..200 {
                        let _: i64 = con.incr("ctr", 1).expect("INCR");
                    }
                })
            })
            .collect();
        for t in clients {
            t.join().expect("thread");
        }
        let mut con = client(addr);
        assert_eq!(
            con.get::<_, i64>("ctr").expect("GET"),
            1600,
            "{threads} threads"
        );
    }
}

/// A counter that answers each request from another thread after `delay`, as a node does: the
/// connection's task really waits for its wake-up.
struct Slow {
    delay: Duration,
    count: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

impl Slow {
    fn new(delay: Duration) -> Self {
        Slow {
            delay,
            count: Arc::new(AtomicUsize::new(0)),
            answered: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn answer_later(&self, n: usize) -> Reply<'static> {
        let answer = Arc::new(std::sync::Mutex::new(None));
        let (delay, answered) = (self.delay, Arc::clone(&self.answered));
        let mut started = false;
        Box::pin(std::future::poll_fn(move |cx| {
            if let Some(reply) = answer.lock().expect("lock").take() {
                answered.fetch_add(1, Ordering::SeqCst);
                return Poll::Ready(Ok(reply));
            }
            if !started {
                started = true;
                let (answer, waker) = (Arc::clone(&answer), cx.waker().clone());
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    *answer.lock().expect("lock") = Some(format!(":{n}\r\n").into_bytes());
                    waker.wake();
                });
            }
            Poll::Pending
        }))
    }
}

impl Backend for Slow {
    fn propose<'a>(&'a self, _: &'a [u8]) -> Reply<'a> {
        self.answer_later(self.count.fetch_add(1, Ordering::SeqCst) + 1)
    }
    fn read<'a>(&'a self, _: &'a [u8]) -> Reply<'a> {
        self.answer_later(self.count.load(Ordering::SeqCst))
    }
    fn status(&self) -> RaftStatus {
        LocalBackend::new().status()
    }
    fn metrics(&self) -> Metrics {
        Metrics::default()
    }
    fn key_count(&self) -> u64 {
        0
    }
    /// Answers after `delay` with the next count as the index, so a client can tell the order.
    fn admin(&self, _: Admin) -> AdminReply<'_> {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(Some(Index(n as u64)))
        })
    }
}

#[test]
fn requests_that_wait_for_the_node_are_answered_in_order() {
    let server = start(Arc::new(Slow::new(Duration::from_millis(2))), 8);
    let mut s = raw(server.local_addr());
    s.write_all(&b"INCR c\r\nPING\r\n".repeat(20))
        .expect("write");
    let want: String = (1..=20).map(|i| format!(":{i}\r\n+PONG\r\n")).collect();
    assert_eq!(read_n(&mut s, want.len()), want);
    // Admin requests too wait their turn, and the requests behind them wait for them.
    s.write_all(b"RAFT.SNAPSHOT\r\nINCR c\r\nRAFT.PROMOTE 2\r\nPING\r\nRAFT.SNAPSHOT\r\n")
        .expect("write");
    let want = ":21\r\n:22\r\n+OK\r\n+PONG\r\n:24\r\n";
    assert_eq!(read_n(&mut s, want.len()), want);
}

#[test]
fn shutdown_lets_a_request_with_the_node_finish() {
    let backend = Arc::new(Slow::new(Duration::from_millis(300)));
    let (count, answered) = (Arc::clone(&backend.count), Arc::clone(&backend.answered));
    let server = start(backend, 8);
    let mut s = raw(server.local_addr());
    s.write_all(b"INCR c\r\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the node"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.shutdown();
    assert_eq!(answered.load(Ordering::SeqCst), 1);
    // The reply still goes out (the socket has room for it), then the connection closes.
    assert_eq!(read_to_close(&mut s), ":1\r\n");
}

/// A node that fails every request with one error.
struct Failing(RequestError, AtomicUsize);

impl Backend for Failing {
    fn propose<'a>(&'a self, _: &'a [u8]) -> Reply<'a> {
        self.1.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::ready(Err(self.0)))
    }
    fn read<'a>(&'a self, _: &'a [u8]) -> Reply<'a> {
        self.1.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::ready(Err(self.0)))
    }
    fn status(&self) -> RaftStatus {
        RaftStatus {
            node_id: 2,
            role: "candidate",
            term: 7,
            leader_id: 0,
            commit_index: 3,
            applied_index: 3,
            members: vec![1, 2, 3],
            membership: Vec::new(),
            first_index: 1,
            last_index: 3,
            snapshot_index: 0,
        }
    }
    fn metrics(&self) -> Metrics {
        Metrics::default()
    }
    fn key_count(&self) -> u64 {
        0
    }
    fn admin(&self, _: Admin) -> AdminReply<'_> {
        self.1.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::ready(Err(AdminError::from(self.0))))
    }
}

#[test]
fn node_errors_reach_clients_as_resp_errors() {
    for (err, write_reply, read_reply, admin_reply) in [
        (
            RequestError::NoLeader,
            "-CLUSTERDOWN no leader could be reached\r\n",
            "-CLUSTERDOWN no leader could be reached\r\n",
            "-CLUSTERDOWN no leader could be reached\r\n",
        ),
        (
            RequestError::Timeout,
            "-TIMEOUT the outcome of the write is unknown\r\n",
            "-TIMEOUT the read timed out\r\n",
            "-TIMEOUT the outcome of the request is unknown\r\n",
        ),
        (
            RequestError::Busy,
            "-TRYAGAIN node is busy, retry\r\n",
            "-TRYAGAIN node is busy, retry\r\n",
            "-TRYAGAIN node is busy, retry\r\n",
        ),
    ] {
        let server = start(Arc::new(Failing(err, AtomicUsize::new(0))), 8);
        let mut s = raw(server.local_addr());
        // PING, INFO and the rest need no node, so they still work.
        s.write_all(b"SET k v\r\nGET k\r\nRAFT.REMOVE 3\r\nPING\r\nINFO raft\r\n")
            .expect("write");
        let want = format!("{write_reply}{read_reply}{admin_reply}+PONG\r\n");
        assert_eq!(read_n(&mut s, want.len()), want);
        let mut info = String::new();
        while !info.ends_with("members:1,2,3\r\n\r\n") {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).expect("INFO");
            info.push(char::from(b[0]));
        }
        assert!(
            info.contains("role:candidate\r\nterm:7\r\nleader_id:0\r\n"),
            "{info}"
        );
    }
    let server = start(
        Arc::new(Failing(RequestError::Shutdown, AtomicUsize::new(0))),
        8,
    );
    let mut s = raw(server.local_addr());
    s.write_all(b"INCR k\r\nPING\r\n").expect("write");
    assert_eq!(read_to_close(&mut s), "-ERR shutting down\r\n");
}

#[test]
fn raft_commands_without_raft() {
    let server = local();
    let mut s = raw(server.local_addr());
    // Parsed before anything reaches the backend; the local store has one member and no log
    // to change.
    s.write_all(
        b"RAFT.MEMBERS\r\nRAFT.PROMOTE x\r\nRAFT.ADDLEARNER 4 nowhere\r\nRAFT.REMOVE\r\n\
          RAFT.SNAPSHOT\r\nMULTI\r\nRAFT.SNAPSHOT\r\nEXEC\r\nPING\r\n",
    )
    .expect("write");
    let want = "*1\r\n*3\r\n:1\r\n$-1\r\n$5\r\nvoter\r\n\
                -ERR invalid member id 'x': expected an integer from 1\r\n\
                -ERR invalid Raft address 'nowhere': expected IP:PORT\r\n\
                -ERR wrong number of arguments for 'raft.remove' command\r\n\
                -ERR this server is not replicated (serve-local): it has no Raft members or \
                log\r\n\
                +OK\r\n-ERR Command not allowed inside a transaction\r\n\
                -EXECABORT Transaction discarded because of previous errors.\r\n+PONG\r\n";
    assert_eq!(read_n(&mut s, want.len()), want);
    let mut con = client(server.local_addr());
    let info: String = redis::cmd("INFO")
        .arg("membership")
        .arg("log")
        .query(&mut con)
        .expect("INFO");
    assert_eq!(
        info,
        "# Membership\r\nvoters:1\r\nlearners:\r\njoining:\r\nleaving:\r\n\r\n\
         # Log\r\nfirst_index:1\r\nlast_index:0\r\nsnapshot_index:0\r\n"
    );
}

#[test]
fn shutdown_closes_connections() {
    let server = local();
    let mut s = raw(server.local_addr());
    s.write_all(b"PING\r\n").expect("write");
    assert_eq!(read_n(&mut s, 7), "+PONG\r\n");
    server.shutdown();
    assert_eq!(read_to_close(&mut s), "");
}

/// [`LocalBackend`] that counts the proposals reaching it.
struct Counting {
    inner: LocalBackend,
    proposals: Arc<AtomicUsize>,
}

impl Backend for Counting {
    fn propose<'a>(&'a self, command: &'a [u8]) -> Reply<'a> {
        self.proposals.fetch_add(1, Ordering::SeqCst);
        self.inner.propose(command)
    }
    fn read<'a>(&'a self, query: &'a [u8]) -> Reply<'a> {
        self.inner.read(query)
    }
    fn status(&self) -> RaftStatus {
        self.inner.status()
    }
    fn metrics(&self) -> Metrics {
        self.inner.metrics()
    }
    fn key_count(&self) -> u64 {
        self.inner.key_count()
    }
    fn admin(&self, request: Admin) -> AdminReply<'_> {
        self.inner.admin(request)
    }
}

#[test]
fn pipelined_writes_share_log_entries_and_keep_their_replies_in_order() {
    let proposals = Arc::new(AtomicUsize::new(0));
    let backend = Counting {
        inner: LocalBackend::new(),
        proposals: Arc::clone(&proposals),
    };
    let server = start(Arc::new(backend), 8);
    let mut s = raw(server.local_addr());
    // 3,000 writes in one go (more than one batch holds), with a failing INCR among them, a
    // read in the middle that must see the writes before it, and a MULTI that stays a MULTI.
    let mut batch = String::new();
    let mut want = String::new();
    for i in 0..1500 {
        batch.push_str(&format!("SET k{i} {i}\r\nINCR c\r\n"));
        want.push_str(&format!("+OK\r\n:{}\r\n", i + 1));
        if i == 700 {
            batch.push_str("INCR k5\r\nSET s text\r\nINCR s\r\nGET c\r\n");
            want.push_str(
                ":6\r\n+OK\r\n-ERR value is not an integer or out of range\r\n$3\r\n701\r\n",
            );
        }
    }
    batch.push_str("MULTI\r\nINCR c\r\nEXEC\r\nGET k1499\r\n");
    want.push_str("+OK\r\n+QUEUED\r\n*1\r\n:1501\r\n$4\r\n1499\r\n");
    s.write_all(batch.as_bytes()).expect("write");
    assert_eq!(read_n(&mut s, want.len()), want);
    let n = proposals.load(Ordering::SeqCst);
    // Each batch ends at a read, at the end of what has arrived, or at 1,000 commands: a few
    // dozen at most for 3,000 writes (how many depends on how the bytes arrive).
    assert!(n < 100, "{n} proposals for 3,004 writes");
    // A lone write is still a write of its own.
    let before = proposals.load(Ordering::SeqCst);
    let mut con = client(server.local_addr());
    let () = con.set("alone", "1").expect("SET");
    assert_eq!(proposals.load(Ordering::SeqCst), before + 1);
}
