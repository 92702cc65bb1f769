//! The RESP server on tokio: one task accepts, one task per client connection serves.
//!
//! A connection task reads whatever has arrived, answers every complete request in order into
//! one buffer, and writes the buffer once no complete request is left, so a pipeline of requests
//! costs one write. A request that needs the node (every data command) awaits the node's answer
//! ([`Backend::propose`], [`Backend::read`]); the node thread answers a whole batch of them at
//! once, and the runtime serves every connection it woke in one pass, so under load many
//! requests share each wake-up instead of costing a thread switch each.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::command::Command;
use crate::limits::DEFAULT_MAX_CLIENTS;
use crate::resp::{printable, write_error, RequestReader};
use crate::session::{Flow, Offered, Session};

/// How to run a [`Server`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Connections served at once; one more is refused with
    /// `-ERR max number of clients reached`. Default [`DEFAULT_MAX_CLIENTS`].
    pub max_clients: usize,
    /// Worker threads of the server's tokio runtime: 1 is a current-thread runtime, more a
    /// multi-thread runtime with that many workers. Default [`DEFAULT_SERVER_THREADS`].
    pub threads: usize,
}

/// Default for [`ServerConfig::threads`]. On two cores, two workers beat one current-thread
/// runtime beside the node's threads: the node thread wakes a busy multi-thread runtime without a
/// system call, while each wake of a current-thread runtime from outside writes its eventfd.
pub const DEFAULT_SERVER_THREADS: usize = 2;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_clients: DEFAULT_MAX_CLIENTS,
            threads: DEFAULT_SERVER_THREADS,
        }
    }
}

/// Replies are written out once this many bytes are waiting, even if more requests are
/// buffered, so that a client that pipelines without reading is held back by its socket rather
/// than buffered for.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// A reply buffer grown past this (by one huge reply) is given back once written, so that it
/// does not stay pinned for the connection's lifetime.
const KEPT_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

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
    /// Tells the connection's task to stop; taken when the server shuts down.
    stop: Option<oneshot::Sender<()>>,
    addr: SocketAddr,
    name: Vec<u8>,
    since: Instant,
}

#[derive(Debug, Default)]
struct Clients {
    next_id: u64,
    /// Invariant: `live.len() <= config.max_clients`; an entry is added before its task is
    /// spawned and removed when the task ends (by [`Registered`], so also if it panics).
    live: HashMap<u64, Client>,
}

/// What the accept loop and the connection tasks share.
pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) config: ServerConfig,
    pub(crate) addr: SocketAddr,
    pub(crate) started: Instant,
    pub(crate) stats: Stats,
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
            out.push_str(&format!(
                "id={id} addr={} laddr={} name={} age={} db=0\n",
                c.addr,
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
    /// Tells the accept loop to stop.
    stop: Option<oneshot::Sender<()>>,
    /// Runs the server's tokio runtime until the accept loop has stopped and every connection
    /// has closed.
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves RESP on `listener` with `backend`, on a tokio runtime of its own (see
    /// [`ServerConfig::threads`]) driven by a new thread.
    pub fn start(
        listener: std::net::TcpListener,
        backend: Arc<dyn Backend>,
        config: ServerConfig,
    ) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let name = format!("kv-server-{}", addr.port());
        let runtime = if config.threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(config.threads);
            b
        }
        .enable_io()
        .enable_time()
        .thread_name(&name)
        .build()?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared {
            backend,
            config,
            addr,
            started: Instant::now(),
            stats: Stats::default(),
            clients: Mutex::new(Clients {
                next_id: 1,
                ..Clients::default()
            }),
        });
        let (stop, stopped) = oneshot::channel();
        let serve_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || runtime.block_on(accept_loop(serve_shared, listener, stopped)))?;
        Ok(Server {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Stops accepting, closes every connection, and waits for them. A request already handed
    /// to the node finishes (or times out) first. Blocks, so call it outside the runtime.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // An error means the accept loop has ended already, which is what is wanted.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(addr = %self.shared.addr, "the server thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts connections until told to stop, then stops every connection and waits for them.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Whether sent or dropped with the server, it means stop.
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => admit(&shared, &mut connections, stream, addr),
                Err(e) => {
                    // Out of file descriptors, usually: back off instead of spinning on it.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                report_failure(ended);
            }
        }
    }
    drop(listener);
    for client in shared.clients().live.values_mut() {
        if let Some(stop) = client.stop.take() {
            let _ = stop.send(());
        }
    }
    while let Some(ended) = connections.join_next().await {
        report_failure(ended);
    }
}

fn report_failure(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        tracing::error!(error = %e, "a connection task failed");
    }
}

/// Registers a connection and spawns its task, or refuses it when the server is full.
fn admit(shared: &Arc<Shared>, connections: &mut JoinSet<()>, stream: TcpStream, addr: SocketAddr) {
    shared
        .stats
        .connections_received
        .fetch_add(1, Ordering::Relaxed);
    let mut clients = shared.clients();
    if clients.live.len() >= shared.config.max_clients {
        drop(clients);
        shared
            .stats
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%addr, "refused: max number of clients reached");
        refuse(stream);
        return;
    }
    let id = clients.next_id;
    clients.next_id += 1;
    let (stop, stopped) = oneshot::channel();
    clients.live.insert(
        id,
        Client {
            stop: Some(stop),
            addr,
            name: Vec::new(),
            since: Instant::now(),
        },
    );
    drop(clients);
    let registered = Registered {
        shared: Arc::clone(shared),
        id,
    };
    connections.spawn(serve_connection(registered, stream, stopped));
}

/// Tells a client the server is full, without waiting for anything: the socket is
/// non-blocking, and a new connection's send buffer has room for the one line.
fn refuse(stream: TcpStream) {
    let Ok(mut stream) = stream.into_std() else {
        return;
    };
    let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
    let _ = stream.shutdown(Shutdown::Write);
    // Discard what the client already sent, without waiting for more: closing a socket with
    // unread input resets the connection, which could destroy the error before it is read.
    let mut scratch = [0u8; 4096];
    while matches!(stream.read(&mut scratch), Ok(n) if n > 0) {}
}

/// A connection's entry in the registry, removed when its task ends however it ends.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.clients().live.remove(&self.id);
    }
}

async fn serve_connection(
    registered: Registered,
    mut stream: TcpStream,
    mut stopped: oneshot::Receiver<()>,
) {
    let shared = &registered.shared;
    let id = registered.id;
    // Replies are written once per batch of requests, so Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let mut reader = RequestReader::new();
    let mut session = Session::new(Arc::clone(shared), id);
    let mut out = Vec::with_capacity(16 * 1024);
    // `stopped` is polled only until it first completes: each branch that sees it returns.
    let refused = loop {
        match reader.next_request() {
            Ok(Some(args)) => {
                shared
                    .stats
                    .commands_processed
                    .fetch_add(1, Ordering::Relaxed);
                // Writes that arrive together wait here to go to the log as one entry.
                let command = match session.offer(Command::parse(args)) {
                    Offered::Queued => continue,
                    Offered::Handle(command) => command,
                };
                if session.flush(&mut out).await == Flow::Close {
                    break None;
                }
                // After the flush the batch is empty: a write that did not fit starts the next.
                let command = match session.offer(command) {
                    Offered::Queued => continue,
                    Offered::Handle(command) => command,
                };
                if session.handle_command(command, &mut out).await == Flow::Close {
                    break None;
                }
                if out.len() >= WRITE_BUFFER_BYTES
                    && !send(&mut stream, &mut out, &mut stopped).await
                {
                    return;
                }
            }
            Ok(None) => {
                if session.flush(&mut out).await == Flow::Close {
                    break None;
                }
                // Every request that has arrived is answered: send the replies, then wait.
                if !send(&mut stream, &mut out, &mut stopped).await {
                    return;
                }
                let buf = match reader.read_buf() {
                    Ok(buf) => buf,
                    Err(e) => break Some(e),
                };
                let read = tokio::select! {
                    biased;
                    // Stopping takes no new requests.
                    _ = &mut stopped => return,
                    read = stream.read(buf) => read,
                };
                match read {
                    Ok(0) => return,
                    Ok(n) => reader.filled(n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(client = id, error = %e, "connection failed");
                        return;
                    }
                }
            }
            Err(e) => break Some(e),
        }
    };
    if let Some(e) = refused {
        tracing::debug!(client = id, error = %e, "protocol error; closing");
        write_error(&mut out, &format!("ERR Protocol error: {e}"));
    }
    if send(&mut stream, &mut out, &mut stopped).await {
        close(stream, &mut stopped).await;
    }
}

/// Writes the replies in `out` and empties it. False if the connection failed, or the server
/// is stopping and the socket would not take the replies at once.
async fn send(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    stopped: &mut oneshot::Receiver<()>,
) -> bool {
    if out.is_empty() {
        return true;
    }
    let written = tokio::select! {
        biased;
        written = stream.write_all(out) => written.is_ok(),
        _ = &mut *stopped => false,
    };
    out.clear();
    if out.capacity() > KEPT_WRITE_BUFFER_BYTES {
        *out = Vec::with_capacity(16 * 1024);
    }
    written
}

/// Closes after the last reply without resetting the connection: closing with unread input
/// would reset it and could lose that reply, so shut down our side, then read (briefly,
/// boundedly) until the client closes too.
async fn close(mut stream: TcpStream, stopped: &mut oneshot::Receiver<()>) {
    let _ = stream.shutdown().await;
    let mut scratch = vec![0u8; 4096];
    let mut drained = 0;
    while drained < 1024 * 1024 {
        let read = tokio::select! {
            biased;
            _ = &mut *stopped => return,
            read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut scratch)) => read,
        };
        match read {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}
