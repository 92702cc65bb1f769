//! The RESP server: one thread accepts, one thread per client connection serves.
//!
//! A connection thread reads every request that has arrived, answers each in order into a
//! buffered writer, and flushes only when no more input is buffered, so a pipeline of requests
//! costs one write. Requests that need the node (every data command) block that thread in
//! [`Backend::propose`] or [`Backend::read`]; other clients are unaffected, and the node
//! batches what all of them propose into one log write.

use std::collections::HashMap;
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::limits::DEFAULT_MAX_CLIENTS;
use crate::resp::{printable, ReadError, RequestReader};
use crate::session::{Flow, Session};

/// How to run a [`Server`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Connections served at once; one more is refused with
    /// `-ERR max number of clients reached`. Default [`DEFAULT_MAX_CLIENTS`].
    pub max_clients: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// Counters for `INFO stats`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections_received: AtomicU64,
    pub(crate) rejected_connections: AtomicU64,
    pub(crate) commands_processed: AtomicU64,
}

/// A connected client, as `CLIENT LIST` shows it.
#[derive(Debug)]
struct Client {
    /// A clone of the connection's socket, so that shutdown can close it.
    stream: TcpStream,
    addr: Option<SocketAddr>,
    name: Vec<u8>,
    since: Instant,
}

#[derive(Debug, Default)]
struct Clients {
    next_id: u64,
    /// Invariant: `live.len() <= config.max_clients`; an entry is added before its thread
    /// starts and removed when the thread ends.
    live: HashMap<u64, Client>,
    threads: Vec<JoinHandle<()>>,
}

/// What the accept loop and the connection threads share.
pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) config: ServerConfig,
    pub(crate) addr: SocketAddr,
    pub(crate) started: Instant,
    pub(crate) stats: Stats,
    stopping: AtomicBool,
    clients: Mutex<Clients>,
}

impl Shared {
    fn clients(&self) -> MutexGuard<'_, Clients> {
        // Nothing panics while holding this lock; if something did, the registry is still a
        // consistent map, so carry on with it.
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Clients connected now.
    pub(crate) fn connected_clients(&self) -> usize {
        self.clients().live.len()
    }

    pub(crate) fn set_client_name(&self, id: u64, name: Vec<u8>) {
        if let Some(c) = self.clients().live.get_mut(&id) {
            c.name = name;
        }
    }

    /// `CLIENT LIST` lines for every client, or for `only` one.
    pub(crate) fn client_lines(&self, only: Option<u64>) -> String {
        let clients = self.clients();
        let mut ids: Vec<u64> = clients
            .live
            .keys()
            .copied()
            .filter(|&id| only.is_none_or(|o| o == id))
            .collect();
        ids.sort_unstable();
        let mut out = String::new();
        for id in ids {
            let Some(c) = clients.live.get(&id) else {
                continue;
            };
            let addr = c.addr.map_or_else(|| "?".to_string(), |a| a.to_string());
            out.push_str(&format!(
                "id={id} addr={addr} laddr={} name={} age={} db=0\n",
                self.addr,
                printable(&c.name),
                c.since.elapsed().as_secs()
            ));
        }
        out
    }
}

/// A running RESP server. Dropping it shuts it down (as [`Server::shutdown`] does).
pub struct Server {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves RESP on `listener` with `backend`, from a new accept thread.
    pub fn start(
        listener: TcpListener,
        backend: Arc<dyn Backend>,
        config: ServerConfig,
    ) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            backend,
            config,
            addr,
            started: Instant::now(),
            stats: Stats::default(),
            stopping: AtomicBool::new(false),
            clients: Mutex::new(Clients {
                next_id: 1,
                ..Clients::default()
            }),
        });
        let accept_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("kv-accept-{}", addr.port()))
            .spawn(move || accept_loop(&accept_shared, &listener))?;
        Ok(Server {
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Stops accepting, closes every connection, and waits for the threads. A request already
    /// handed to the node finishes (or times out) first.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop with a connection of our own; it sees `stopping` and returns.
        let mut wake = self.shared.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if let Err(e) = TcpStream::connect_timeout(&wake, Duration::from_secs(1)) {
            tracing::warn!(addr = %wake, error = %e, "cannot wake the accept loop");
        }
        if acceptor.join().is_err() {
            tracing::error!("the accept thread panicked");
        }
        let threads = {
            let mut clients = self.shared.clients();
            for c in clients.live.values() {
                // Ends the connection thread's blocking read; its error is not interesting.
                let _ = c.stream.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut clients.threads)
        };
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a connection thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match conn {
            Ok(stream) => admit(shared, stream),
            Err(e) => {
                // Out of file descriptors, usually: back off instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Registers a connection and starts its thread, or refuses it when the server is full.
fn admit(shared: &Arc<Shared>, stream: TcpStream) {
    shared
        .stats
        .connections_received
        .fetch_add(1, Ordering::Relaxed);
    let addr = stream.peer_addr().ok();
    let mut clients = shared.clients();
    clients.threads.retain(|t| !t.is_finished());
    if clients.live.len() >= shared.config.max_clients {
        drop(clients);
        shared
            .stats
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(?addr, "refused: max number of clients reached");
        refuse(stream);
        return;
    }
    let Ok(registered) = stream.try_clone() else {
        return;
    };
    let id = clients.next_id;
    clients.next_id += 1;
    clients.live.insert(
        id,
        Client {
            stream: registered,
            addr,
            name: Vec::new(),
            since: Instant::now(),
        },
    );
    let conn_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name(format!("kv-client-{id}"))
        .spawn(move || {
            serve_connection(&conn_shared, stream, id);
            conn_shared.clients().live.remove(&id);
        });
    match spawned {
        Ok(t) => clients.threads.push(t),
        Err(e) => {
            tracing::warn!(error = %e, "cannot spawn a connection thread");
            if let Some(c) = clients.live.remove(&id) {
                refuse(c.stream);
            }
        }
    }
}

/// Tells a client the server is full, without holding up the accept loop.
fn refuse(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
    let _ = stream.shutdown(Shutdown::Write);
    // Discard what the client already sent, without waiting for more: closing a socket with
    // unread input resets the connection, which could destroy the error before it is read.
    if stream.set_nonblocking(true).is_ok() {
        let mut scratch = [0u8; 4096];
        while matches!(stream.read(&mut scratch), Ok(n) if n > 0) {}
    }
}

fn serve_connection(shared: &Arc<Shared>, stream: TcpStream, id: u64) {
    // Replies are flushed once per batch of requests, so Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let read_half = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot clone a client socket");
            return;
        }
    };
    let mut reader = RequestReader::new(read_half);
    let mut writer = BufWriter::with_capacity(64 * 1024, stream);
    let mut session = Session::new(Arc::clone(shared), id);
    let mut out = Vec::new();
    loop {
        match reader.next_request(|| writer.flush()) {
            Ok(Some(args)) => {
                shared
                    .stats
                    .commands_processed
                    .fetch_add(1, Ordering::Relaxed);
                let flow = session.handle(args, &mut out);
                if writer.write_all(&out).is_err() {
                    return;
                }
                out.clear();
                if out.capacity() > 1024 * 1024 {
                    // One huge reply should not pin its buffer for the connection's lifetime.
                    out = Vec::new();
                }
                if flow == Flow::Close {
                    let _ = writer.flush();
                    break;
                }
            }
            Ok(None) => return,
            Err(ReadError::Protocol(e)) => {
                tracing::debug!(client = id, error = %e, "protocol error; closing");
                let _ = write!(writer, "-ERR Protocol error: {e}\r\n");
                let _ = writer.flush();
                break;
            }
            Err(ReadError::Io(e)) => {
                tracing::debug!(client = id, error = %e, "connection failed");
                return;
            }
        }
    }
    // Closing with unread input would reset the connection and could lose the last reply;
    // shut down our side, then read (briefly, boundedly) until the client closes too.
    let stream = writer.get_ref();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut scratch = [0u8; 4096];
    let mut drained = 0;
    let mut s = stream;
    while drained < 1024 * 1024 {
        match s.read(&mut scratch) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}
