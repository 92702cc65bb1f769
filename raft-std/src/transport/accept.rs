//! The accepting side: the accept loop, the limit on connections in their handshake, and the
//! acceptor's side of the handshake, after which the same thread reads the connection.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::handshake::{self, Hello, Refusal};
use super::peer::{self, Peer};
use super::{deadline_after, lock, Inner};

/// How long to wait after `accept` fails before trying again: failures such as running out of
/// file descriptors would otherwise spin the thread.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

pub(super) fn run(inner: &Arc<Inner>, listener: &TcpListener) {
    loop {
        let accepted = listener.accept();
        if inner.is_stopping() {
            // Most likely `stop`'s own wake-up connection; whatever it is, it is dropped.
            return;
        }
        match accepted {
            Ok((stream, remote)) => admit(inner, stream, remote),
            Err(e) => {
                tracing::warn!(node = inner.id.0, error = %e, "transport: accept failed");
                if !inner.pause(ACCEPT_RETRY) {
                    return;
                }
            }
        }
    }
}

/// Takes a handshake slot for a new connection and starts its thread, or refuses it at once
/// if every slot is taken: the accept loop itself never waits for a stranger.
fn admit(inner: &Arc<Inner>, stream: TcpStream, remote: SocketAddr) {
    let stream = Arc::new(stream);
    let slot = {
        let mut p = lock(&inner.pending);
        // Checked under the lock `stop` closes pending sockets with, so none is left open.
        if inner.is_stopping() {
            return;
        }
        if p.streams.len() >= inner.options.max_unauthenticated {
            drop(p);
            let _ = stream.shutdown(Shutdown::Both);
            inner.refuse(remote, &"too many connections in their handshake");
            return;
        }
        p.last_slot += 1;
        let slot = p.last_slot;
        p.streams.insert(slot, stream.clone());
        slot
    };
    let i = inner.clone();
    let name = format!("tickraft-conn-{}", inner.id);
    if let Err(e) = inner.spawn_conn_thread(name, move || serve(&i, stream, remote, slot)) {
        release(inner, slot);
        inner.refuse(remote, &format_args!("cannot spawn a thread: {e}"));
    }
}

fn release(inner: &Inner, slot: u64) {
    lock(&inner.pending).streams.remove(&slot);
}

/// The thread of one accepted connection: handshake, then (if authenticated) its reader.
fn serve(inner: &Arc<Inner>, stream: Arc<TcpStream>, remote: SocketAddr, slot: u64) {
    let shaken = handshake(inner, &stream);
    release(inner, slot);
    match shaken {
        Ok(peer) => match peer.install(inner, stream, remote) {
            Some(conn) => peer::read_loop(inner, &peer, conn),
            // Removed (or moved) while its hello was checked: refused as it would be now.
            None if !inner.is_stopping() => inner.refuse(remote, &Refusal::UnknownPeer(peer.id)),
            None => {}
        },
        Err(reason) => {
            let _ = stream.shutdown(Shutdown::Both);
            // During shutdown every pending handshake fails; that is not a refusal.
            if !inner.is_stopping() {
                inner.refuse(remote, &reason);
            }
        }
    }
}

/// The acceptor's side: read and check the dialer's hello, answer with ours.
fn handshake(inner: &Inner, stream: &TcpStream) -> Result<Arc<Peer>, Refusal> {
    let deadline = deadline_after(inner.options.handshake_timeout);
    super::tune(stream).map_err(Refusal::Io)?;
    let hello = handshake::read_hello(stream, deadline)?;
    // The peers now: one added a moment ago is let in, one removed is a stranger.
    let from = hello.check_dialer(inner.cluster_id, inner.id, |id| inner.peer(id).is_some())?;
    let peer = inner.peer(from).ok_or(Refusal::UnknownPeer(from))?;
    handshake::write_hello(
        stream,
        &Hello::new(inner.cluster_id, inner.id, from),
        deadline,
    )?;
    stream.set_read_timeout(None).map_err(Refusal::Io)?;
    stream.set_write_timeout(None).map_err(Refusal::Io)?;
    Ok(peer)
}
