//! The chatdrop server: tokio I/O around the chat core.
//!
//! - [`tls`] makes or loads the certificate and the TLS 1.3 configuration.
//! - [`conn`] runs one task per client connection: TLS, login proof, frames in
//!   and out, keepalive.
//! - [`hub`] owns the [`chatdrop_chat::Chat`] state and carries out its effects.
//! - [`persist`] writes the chat core's records to SQLite in batches.
//! - `trim` gives the heap's free memory back after a burst.
//! - `mailbox` pairs the two sides of a short code (`send --via`).
//! - `udp` reads the UDP port: observations (`observe`) and relayed
//!   transfers (`relay`).
//! - [`link`] dials and accepts links to other servers (network key
//!   handshake, keepalive); the chat core's network layer routes over them.
//!
//! Nothing here decides who may do what; the chat core does.

mod carried;
pub mod config;
mod conn;
mod hub;
mod link;
mod mailbox;
mod observe;
mod outbox;
mod password;
mod per_ip;
mod persist;
pub mod quota;
mod relay;
mod tls;
mod trim;
mod udp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chatdrop_chat::{AdminCommand, Chat, Settings};
use chatdrop_proto::ErrorCode;
use chatdrop_store::Store;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::hub::{Hub, HubMsg};
pub use crate::relay::RelayLimits;

/// Errors that stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the listen address failed.
    // The causes are part of the message and not given as `source`, so
    // a report that walks the chain does not print them twice.
    #[error("cannot listen on {addr}: {why}")]
    Listen {
        addr: SocketAddr,
        /// Why.
        why: std::io::Error,
    },
    /// The data directory cannot be used.
    #[error("data directory {path}: {why}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        why: std::io::Error,
    },
    /// TLS set-up failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// A task of the server failed.
    #[error("internal: {0}")]
    Internal(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(chatdrop_store::StoreError),
}

impl From<chatdrop_store::StoreError> for ServerError {
    fn from(e: chatdrop_store::StoreError) -> Self {
        ServerError::Store(e)
    }
}

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the database, certificate and key live.
    pub data_dir: PathBuf,
    /// A PEM certificate chain to use instead of the self-signed one.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Most clients connected at once; more are refused with `server_full`.
    pub max_clients: usize,
    /// Lines of history each room keeps.
    pub history_len: u32,
    /// Days a line of history is kept; 0 for no age limit.
    pub history_days: u32,
    /// Most rooms the server lets its users make.
    pub max_rooms: usize,
    /// Most rooms one user may have made.
    pub max_rooms_per_user: usize,
    /// Most members in one room.
    pub max_room_members: usize,
    /// The server's name, sent to clients.
    pub name: String,
    /// Which files the server refuses to broker.
    pub policy: chatdrop_chat::SharePolicy,
    /// Other servers to link to (`HOST:PORT`, their client address).
    pub links: Vec<String>,
    /// The secret every server of the network shares; links are refused
    /// without it.
    pub network_key: Option<String>,
    /// What one connection, and one address, may ask for how often.
    pub limits: quota::Limits,
    /// What the relay may carry.
    pub relay: RelayLimits,
}

impl ServerOptions {
    /// Defaults for a server listening on `listen` with data in `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let chat = Settings::default();
        ServerOptions {
            listen,
            data_dir,
            tls_cert: None,
            tls_key: None,
            max_clients: 20_000,
            history_len: 1000,
            history_days: 0,
            max_rooms: chat.max_rooms,
            max_rooms_per_user: chat.max_rooms_per_user,
            max_room_members: chat.max_room_members,
            name: "chatdrop".into(),
            policy: chatdrop_chat::SharePolicy::default(),
            links: Vec::new(),
            network_key: None,
            limits: quota::Limits::default(),
            relay: RelayLimits::default(),
        }
    }
}

/// State every connection task shares.
pub(crate) struct Shared {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub hub: mpsc::Sender<HubMsg>,
    pub name: String,
    pub shutdown: CancellationToken,
    pub link: link::LinkConfig,
    pub limits: Arc<quota::Limits>,
    /// Clients' buckets kept between their connections.
    pub carried: carried::Carried,
    /// Tokens of clients asking where their UDP sockets are seen from.
    pub observers: Arc<observe::Observers>,
    /// Transfers relayed between clients.
    pub relays: Arc<relay::Relays>,
    /// Mailboxes of `send --via` and `recv --via`.
    pub mailboxes: mailbox::Mailboxes,
}

/// Sends admin commands to a running server.
#[derive(Debug, Clone)]
pub struct AdminHandle {
    hub: mpsc::Sender<HubMsg>,
}

impl AdminHandle {
    /// Delivers one command; fails only if the server has stopped.
    pub async fn send(&self, cmd: AdminCommand) -> Result<(), AdminCommand> {
        self.hub
            .send(HubMsg::Admin(cmd))
            .await
            .map_err(|e| match e.0 {
                HubMsg::Admin(cmd) => cmd,
                _ => unreachable!("sent an admin message"),
            })
    }
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    /// Where clients learn their UDP sockets' public addresses (the TLS
    /// port's number); `None` where it could not be bound.
    observe: Option<tokio::net::UdpSocket>,
    shared: Arc<Shared>,
    hub: Hub,
    hub_rx: mpsc::Receiver<HubMsg>,
    fingerprint: String,
    max_clients: usize,
    links: Vec<String>,
}

/// File in the data directory holding the server's id in the network (hex),
/// for operators and tools: the id is derived from the key in
/// [`SERVER_KEY_FILE`], and this file is rewritten when it says otherwise
/// (as it does when it holds a random id from before server keys).
pub const SERVER_ID_FILE: &str = "server-id";

/// File in the data directory holding the server's own Ed25519 secret key
/// (hex of the 32-byte seed, mode 0600). It signs the server's link-state
/// records and its side of each link handshake; the server's id is derived
/// from its public key.
pub const SERVER_KEY_FILE: &str = "server-id.key";

/// Reads the server's own key, making one on first start, and keeps
/// [`SERVER_ID_FILE`] in step with it.
fn server_key(dir: &std::path::Path) -> Result<ed25519_dalek::SigningKey, ServerError> {
    use std::io::Write;
    let path = dir.join(SERVER_KEY_FILE);
    let err = |path: &std::path::Path, why| ServerError::DataDir {
        path: path.to_path_buf(),
        why,
    };
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| err(&path, std::io::Error::other("not a 64-digit hex key")))?;
            ed25519_dalek::SigningKey::from_bytes(&seed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path).map_err(|e| err(&path, e))?;
            f.write_all(hex::encode(key.to_bytes()).as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| err(&path, e))?;
            key
        }
        Err(e) => return Err(err(&path, e)),
    };
    let id = hex::encode(chatdrop_proto::link::server_id_of(
        key.verifying_key().as_bytes(),
    ));
    let id_path = dir.join(SERVER_ID_FILE);
    match std::fs::read_to_string(&id_path) {
        Ok(old) if old.trim() == id => {}
        Ok(old) => {
            // A random id from before ids were derived from keys: the other
            // servers will take this one for a new server.
            info!(
                "server id {} replaced by {id}, derived from the server's key",
                old.trim()
            );
            std::fs::write(&id_path, &id).map_err(|e| err(&id_path, e))?;
        }
        Err(_) => std::fs::write(&id_path, &id).map_err(|e| err(&id_path, e))?,
    }
    Ok(key)
}

impl Server {
    /// Opens the store, prepares TLS and binds the listen address.
    pub async fn bind(opts: ServerOptions) -> Result<Server, ServerError> {
        std::fs::create_dir_all(&opts.data_dir).map_err(|why| ServerError::DataDir {
            path: opts.data_dir.clone(),
            why,
        })?;
        let (tls_config, fingerprint) = tls::server_config(&opts)?;
        let store = Store::open(&opts.data_dir.join("chatdrop.db"))?;
        let server_key = server_key(&opts.data_dir)?;
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let identity =
            chatdrop_chat::Identity::new(&server_key.to_bytes(), opts.name.clone(), incarnation);
        let link = link::LinkConfig::new(
            server_key,
            opts.name.clone(),
            incarnation,
            opts.network_key.as_ref().map(|k| k.as_bytes().to_vec()),
        );
        let settings = Settings {
            history_len: opts.history_len,
            history_max_age_ms: u64::from(opts.history_days) * 86_400_000,
            max_rooms: opts.max_rooms,
            max_rooms_per_user: opts.max_rooms_per_user,
            max_room_members: opts.max_room_members,
            // Benchmarks and private servers turn the rate limits off.
            new_names_per_hour: if opts.limits.enabled {
                opts.limits.new_names_per_hour
            } else {
                0
            },
            empty_room_expiry_ms: opts.limits.empty_room_expiry_secs.saturating_mul(1000),
            unused_name_expiry_ms: opts.limits.unused_name_expiry_secs.saturating_mul(1000),
            policy: opts.policy.clone(),
            identity,
            ..Settings::default()
        };
        let snapshot = store.load(settings.history_len)?;
        let chat = Chat::new(settings, snapshot);
        let writer = persist::Writer::start(store);
        let listener = listen(opts.listen).map_err(|why| ServerError::Listen {
            addr: opts.listen,
            why,
        })?;
        // The same address and port as TLS, so that clients know it.
        let observe = match listener.local_addr().and_then(bind_udp) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("no UDP observation port (clients behind NAT will rely on the relay): {e}");
                None
            }
        };
        let (hub_tx, hub_rx) = mpsc::channel(hub::HUB_QUEUE);
        let shutdown = CancellationToken::new();
        let passwords = password::Hasher::new();
        let relays = Arc::new(relay::Relays::new(opts.relay.clone()));
        let hub = Hub::new(
            chat,
            writer,
            hub_tx.clone(),
            shutdown.clone(),
            passwords.clone(),
            relays.clone(),
        );
        let limits = Arc::new(opts.limits.clone());
        let shared = Arc::new(Shared {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls_config)),
            hub: hub_tx,
            name: opts.name.clone(),
            shutdown,
            link,
            carried: carried::Carried::new(limits.clone()),
            limits,
            observers: Arc::default(),
            relays,
            mailboxes: mailbox::Mailboxes::default(),
        });
        Ok(Server {
            listener,
            observe,
            shared,
            hub,
            hub_rx,
            fingerprint,
            max_clients: opts.max_clients,
            links: opts.links.clone(),
        })
    }

    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// SHA-256 fingerprint of the server's certificate, in hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A handle for admin commands (the console, signals).
    pub fn admin(&self) -> AdminHandle {
        AdminHandle {
            hub: self.shared.hub.clone(),
        }
    }

    /// Runs until an `exit` command. Lines for the admin console (answers to
    /// commands, `@server` messages) go to `console`.
    pub async fn run(self, console: mpsc::Sender<String>) -> Result<(), ServerError> {
        let Server {
            listener,
            observe,
            shared,
            hub,
            hub_rx,
            max_clients,
            links,
            ..
        } = self;
        let tracker = TaskTracker::new();
        let hub_task = tokio::spawn(hub.run(hub_rx, console));
        tokio::spawn(trim::run(shared.shutdown.clone()));
        if let Some(socket) = observe {
            let (observers, stop) = (shared.observers.clone(), shared.shutdown.clone());
            let relays = shared.relays.clone();
            tokio::spawn(udp::run(Arc::new(socket), observers, relays, stop));
        }
        for target in links {
            tracker.spawn(link::dial_forever(target, shared.clone()));
        }
        let slots = Arc::new(Semaphore::new(max_clients));
        let per_ip = if shared.limits.enabled {
            per_ip::PerIp::new(
                shared.limits.connections_per_ip,
                shared.limits.logins_per_ip,
            )
        } else {
            per_ip::PerIp::new(usize::MAX, usize::MAX)
        };
        // Refusals ("server full") also cost a TLS handshake; cap them too.
        let refusals = Arc::new(Semaphore::new(64));
        let mut next_id = 1u64;
        loop {
            let accepted = tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (tcp, addr) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment
                    // rather than spin.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // An IPv4 client of a dual-stack listener is seen as
            // `::ffff:a.b.c.d`; it is told apart, limited and offered to
            // askers by its IPv4 address.
            let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
            let _ = tcp.set_nodelay(true);
            let id = next_id;
            next_id += 1;
            let admitted = slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| {
                    (
                        ErrorCode::ServerFull,
                        "the server is full; try again later".to_string(),
                    )
                })
                .and_then(|permit| {
                    per_ip
                        .admit(addr.ip())
                        .map(|guard| (permit, guard))
                        .map_err(|why| (ErrorCode::LimitReached, why.message()))
                });
            match admitted {
                Ok((permit, guard)) => {
                    let shared = shared.clone();
                    tracker.spawn(async move {
                        conn::serve(id, tcp, addr, guard, shared).await;
                        drop(permit);
                    });
                }
                Err((code, why)) => {
                    if let Ok(permit) = refusals.clone().try_acquire_owned() {
                        let shared = shared.clone();
                        tracker.spawn(async move {
                            conn::refuse_conn(tcp, addr, code, why, shared).await;
                            drop(permit);
                        });
                    }
                }
            }
        }
        drop(listener);
        info!("stopped accepting; closing connections");
        tracker.close();
        if tokio::time::timeout(std::time::Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            warn!("some connections did not close within 10 s");
        }
        drop(shared);
        match hub_task.await {
            Ok(()) => Ok(()),
            Err(e) => Err(ServerError::Internal(format!("hub task failed: {e}"))),
        }
    }
}

impl AdminHandle {
    /// Like [`AdminHandle::send`], for threads outside the runtime (a console
    /// reading standard input).
    pub fn hub_blocking_send(&self, cmd: AdminCommand) -> Result<(), AdminCommand> {
        self.hub
            .blocking_send(HubMsg::Admin(cmd))
            .map_err(|e| match e.0 {
                HubMsg::Admin(cmd) => cmd,
                _ => unreachable!("sent an admin message"),
            })
    }
}

/// Listens at `addr`. At `[::]` (the default) that is every address of
/// both families: one IPv6 socket that takes IPv4 clients too, whatever the
/// system's default for such sockets; where the host has no IPv6, every
/// IPv4 address instead.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = open_socket(addr, socket2::Type::STREAM)?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A UDP socket at `addr`, of both families at `[::]` as [`listen`]'s.
fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = open_socket(addr, socket2::Type::DGRAM)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// A non-blocking socket of `kind` bound at `addr`: at the unspecified
/// IPv6 address, one that takes IPv4 too, or, where the host has no IPv6,
/// one at every IPv4 address instead.
fn open_socket(addr: SocketAddr, kind: socket2::Type) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket};
    let open = |addr: SocketAddr| -> std::io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), kind, None)?;
        if addr.is_ipv6() && addr.ip().is_unspecified() {
            socket.set_only_v6(false)?;
        }
        // As `TcpListener::bind` does: a restarted server gets its port
        // back while the last one's connections wait out TIME_WAIT.
        #[cfg(unix)]
        if kind == socket2::Type::STREAM {
            socket.set_reuse_address(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        Ok(socket)
    };
    match open(addr) {
        Err(e) if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED && no_ipv6(&e) => {
            open(SocketAddr::from(([0, 0, 0, 0], addr.port())))
        }
        result => result,
    }
}

/// Whether `e` says the host has no IPv6.
fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
    )
}

/// Raises the process's open-file limit to its hard maximum: every client is
/// a socket, and the usual soft limit (1024) would cap a server far below its
/// `--max-clients`.
pub fn raise_fd_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key is made once and kept; the id file says the id derived from
    /// it, also when it held a random id from before server keys.
    #[test]
    fn the_server_id_is_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(SERVER_ID_FILE),
            "00112233445566778899aabbccddeeff",
        )
        .unwrap();
        let key = server_key(dir.path()).unwrap();
        let id = chatdrop_proto::link::server_id_of(key.verifying_key().as_bytes());
        let written = std::fs::read_to_string(dir.path().join(SERVER_ID_FILE)).unwrap();
        assert_eq!(written, hex::encode(id));
        let again = server_key(dir.path()).unwrap();
        assert_eq!(again.to_bytes(), key.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.path().join(SERVER_KEY_FILE)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(SERVER_KEY_FILE), "zz").unwrap();
        let err = server_key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a 64-digit hex key"), "{err}");
    }
}
