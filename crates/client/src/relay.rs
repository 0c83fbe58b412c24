//! The relay, from a client's side: when no direct path opened within
//! [`RELAY_AFTER`], the asker asks its server to relay the transfer
//! (`ClientMsg::Relay`); both sides get a token (`ServerMsg::Relay`) and
//! bind their leg of the relay with it (see the server's `relay.rs`):
//!
//! - by UDP when the server answered this socket's observation: the bind
//!   datagram goes from the transfer socket, now and again while the
//!   transfer lasts (a NAT that changes its mapping is followed), and the
//!   relay is the server's UDP port;
//! - over TLS otherwise (the slow path): a local socket on loopback stands
//!   in for the relay, and what the transfer sends to it goes to the
//!   server as `Tunnel`, and back the same way.
//!
//! Between users of two servers, the asker's server relays, and the owner
//! is told the relay's address through its own server
//! (`ServerMsg::RelayAt`): its leg is then UDP to that address.
//!
//! Either way the transfer itself does not change: its sessions see the
//! other side at one more address, and open and validate it as any other.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatdrop_proto::limits::MAX_TUNNELED;
use chatdrop_proto::{ClientMsg, RELAY_MAGIC};
use chatdrop_transfer::LaterIps;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::paths::Outgoing;

/// How long an asker waits for a direct path before it asks for the relay.
pub(crate) const RELAY_AFTER: Duration = Duration::from_secs(2);

/// Bind datagrams sent at first, [`BIND_FIRST`] apart; then one every
/// [`BIND_EVERY`] while the transfer lasts.
const BIND_FIRST_COUNT: u32 = 10;
const BIND_FIRST: Duration = Duration::from_millis(100);
const BIND_EVERY: Duration = Duration::from_secs(1);

/// Datagrams from the server for a slow path, waiting for its local socket.
const TUNNEL_QUEUE: usize = 256;

/// How a session was relayed, for `transfer_started`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leg {
    /// Through the server's UDP port.
    Udp,
    /// Through the server's TLS connection.
    Tls,
}

impl Leg {
    /// The path's name in `transfer_started`.
    pub(crate) fn path_name(self) -> &'static str {
        match self {
            Leg::Udp => "relay",
            Leg::Tls => "tcp",
        }
    }
}

/// Where a transfer's relay is, once it is bound: the address the session
/// sees the other side at through it, and how.
pub(crate) type RelayedAt = Arc<Mutex<Option<(SocketAddr, Leg)>>>;

/// A transfer that may be relayed.
pub(crate) struct Hook {
    /// Its socket.
    pub(crate) socket: Arc<UdpSocket>,
    /// This socket's UDP reaches the server.
    pub(crate) udp: bool,
    /// The asker's session, told of the relay's address.
    pub(crate) more: Option<mpsc::Sender<SocketAddr>>,
    /// The asker, told when the server refuses to relay.
    pub(crate) refused: Option<oneshot::Sender<String>>,
    /// Filled in when the relay is bound.
    pub(crate) at: RelayedAt,
    /// The owner's session, told the relay's address: a receiver may
    /// start from there.
    pub(crate) allow: Option<LaterIps>,
}

/// Where a relay is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RelayPlace {
    /// At this client's server (`ServerMsg::Relay`), reached at this
    /// address: by UDP if this socket's datagrams reach the server, else
    /// over TLS.
    Own(SocketAddr),
    /// At the other side's server (`ServerMsg::RelayAt`), at this address:
    /// by UDP only.
    Other(SocketAddr),
}

/// A hook's running parts, stopped when the transfer ends.
struct Running {
    hook: Hook,
    /// The binder or the slow path's pump.
    task: Option<JoinHandle<()>>,
    /// Datagrams for the slow path's local socket.
    tunnel: Option<mpsc::Sender<Vec<u8>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // A UDP leg's binder stops now. The slow path's pump stops by
        // itself once `tunnel` is gone: it first sends on what the
        // transfer's last moment left on its socket (a receiver's
        // `Enough` or `Abort`), then tells the server the relay may close.
        if let (Some(task), None) = (self.task.take(), &self.tunnel) {
            task.abort();
        }
    }
}

/// The transfers of this client that may be relayed, by session id.
#[derive(Clone, Default)]
pub(crate) struct Relays {
    inner: Arc<Mutex<HashMap<[u8; 8], Running>>>,
}

impl Relays {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 8], Running>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `session` may be relayed; its hook stays until [`end`](Self::end).
    pub(crate) fn add(&self, session: [u8; 8], hook: Hook) {
        let running = Running {
            hook,
            task: None,
            tunnel: None,
        };
        self.lock().insert(session, running);
    }

    /// `session` is over: its binder or slow path stops, and the server
    /// is told, through `outgoing`, that a relay it opened may close.
    pub(crate) fn end(&self, session: [u8; 8], outgoing: &Outgoing) {
        let Some(running) = self.lock().remove(&session) else {
            return;
        };
        // The slow path's pump says it itself, after the last datagrams.
        let by_udp = running.task.is_some() && running.tunnel.is_none();
        drop(running);
        if by_udp {
            // A full queue leaves it to the relay's idle timeout.
            let _ = outgoing.try_send(ClientMsg::RelayEnd { session });
        }
    }

    /// The server's `Relay` or `RelayAt`: binds this side's leg, by UDP
    /// to the relay or over TLS through `outgoing`, and tells the asker's
    /// session where the other side now is (the owner's, where a receiver
    /// may start from).
    pub(crate) fn open(
        &self,
        session: [u8; 8],
        token: [u8; 16],
        relay: RelayPlace,
        outgoing: &Outgoing,
    ) {
        let mut all = self.lock();
        let Some(r) = all.get_mut(&session) else {
            // Over already (a direct path won meanwhile): the server may
            // close it now rather than when it is idle.
            let _ = outgoing.try_send(ClientMsg::RelayEnd { session });
            return;
        };
        if r.task.is_some() {
            return; // bound already
        }
        let socket = r.hook.socket.clone();
        let by_udp = match relay {
            RelayPlace::Own(server) => r.hook.udp.then_some(server),
            RelayPlace::Other(at) => Some(at),
        };
        let (at, leg, task, tunnel) = if let Some(relay) = by_udp {
            let at = chatdrop_transfer::for_socket(&socket, relay);
            // The first bind goes now, ahead of the session's first
            // datagram to the relay, which would be dropped unbound.
            let _ = socket.try_send_to(&bind_datagram(token), at);
            (at, Leg::Udp, tokio::spawn(bind(socket, at, token)), None)
        } else {
            let Ok((shim, target)) = slow_path_socket(&socket) else {
                return;
            };
            let Ok(at) = shim.local_addr() else {
                return;
            };
            let at = chatdrop_transfer::for_socket(&socket, at);
            let (tx, rx) = mpsc::channel(TUNNEL_QUEUE);
            let pump = pump(shim, target, session, outgoing.clone(), rx);
            (at, Leg::Tls, tokio::spawn(pump), Some(tx))
        };
        r.task = Some(task);
        r.tunnel = tunnel;
        *r.hook.at.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, leg));
        if let Some(allow) = &r.hook.allow {
            allow
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(at.ip());
        }
        if let Some(more) = &r.hook.more {
            let _ = more.try_send(at);
        }
    }

    /// The server's `RelayRefused`: the asker gives up with the reason.
    pub(crate) fn refused(&self, session: [u8; 8], why: String) {
        if let Some(tx) = self
            .lock()
            .get_mut(&session)
            .and_then(|r| r.hook.refused.take())
        {
            let _ = tx.send(why);
        }
    }

    /// The server's `Tunnel`: a datagram for the slow path's local socket
    /// (dropped when it is behind, as a router would).
    pub(crate) fn tunnel(&self, session: [u8; 8], data: Vec<u8>) {
        if let Some(tx) = self.lock().get(&session).and_then(|r| r.tunnel.clone()) {
            let _ = tx.try_send(data);
        }
    }
}

/// Sends the bind datagram from `socket` to the relay at `to`, often at
/// first, then now and again.
async fn bind(socket: Arc<UdpSocket>, to: SocketAddr, token: [u8; 16]) {
    let datagram = bind_datagram(token);
    for i in 1.. {
        tokio::time::sleep(BIND_FIRST).await;
        // A lost or refused datagram is sent again at the next turn.
        let _ = socket.send_to(&datagram, to).await;
        if i >= BIND_FIRST_COUNT {
            tokio::time::sleep(BIND_EVERY - BIND_FIRST).await;
        }
    }
}

/// What binds a leg: the magic and the token.
fn bind_datagram(token: [u8; 16]) -> Vec<u8> {
    let mut datagram = RELAY_MAGIC.to_vec();
    datagram.extend_from_slice(&token);
    datagram
}

/// The local socket that stands in for the relay on the slow path, and
/// the transfer socket's address as it sees it.
fn slow_path_socket(transfer: &UdpSocket) -> std::io::Result<(UdpSocket, SocketAddr)> {
    let port = transfer.local_addr()?.port();
    let std = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    std.set_nonblocking(true)?;
    Ok((
        UdpSocket::from_std(std)?,
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
    ))
}

/// The slow path: what the transfer socket sends to `shim` goes to the
/// server as `Tunnel`, and what the server sends comes out of `shim`.
/// It ends when `from_server` closes (the transfer ended), having sent on
/// what was left on `shim` and then `RelayEnd`.
async fn pump(
    shim: UdpSocket,
    target: SocketAddr,
    session: [u8; 8],
    outgoing: Outgoing,
    mut from_server: mpsc::Receiver<Vec<u8>>,
) {
    // This side's leg is TLS from now on, even before it has sent anything.
    let bind = ClientMsg::Tunnel {
        session,
        data: Vec::new(),
    };
    if outgoing.send(bind).await.is_err() {
        return;
    }
    // What the transfer socket sent, to the server: only from the
    // transfer's own socket, and no more than a tunnel carries (the
    // transfer then finds a smaller size). A full queue to the server
    // drops it, as a router would.
    let up = |data: &[u8], from: SocketAddr| {
        if from.port() == target.port() && data.len() <= MAX_TUNNELED {
            let msg = ClientMsg::Tunnel {
                session,
                data: data.to_vec(),
            };
            let _ = outgoing.try_send(msg);
        }
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            r = shim.recv_from(&mut buf) => {
                if let Ok((len, from)) = r {
                    up(&buf[..len], from);
                }
            }
            data = from_server.recv() => {
                let Some(data) = data else { break };
                let _ = shim.send_to(&data, target).await;
            }
        }
    }
    // The transfer is over: what it sent last is on the socket already
    // (sent on loopback before it ended), and goes before `RelayEnd`.
    while let Ok((len, from)) = shim.try_recv_from(&mut buf) {
        up(&buf[..len], from);
    }
    let _ = outgoing.try_send(ClientMsg::RelayEnd { session });
}
