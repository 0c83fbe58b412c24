//! Links to other servers: dialling (with backoff), the network-key
//! handshake, keepalive and round-trip measurement. Everything a link
//! carries after the handshake goes to the hub, which hands it to the chat
//! core's network layer; nothing here decides routes.
//!
//! A link is TLS like a client connection. The dialler accepts any
//! certificate: the servers authenticate each other with the network key,
//! by MACs over a transcript bound to this TLS session (its exporter), so a
//! party without the key can neither join nor sit in the middle.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatdrop_chat::{Event, LinkId};
use chatdrop_proto::auth::{link_transcript, BINDING_LEN, LINK_EXPORTER_LABEL};
use chatdrop_proto::limits::{LINK_DEAD_MS, LINK_PING_MS, MAX_LINK_FRAME, PROTOCOL_VERSION};
use chatdrop_proto::link::{LinkHello, LinkMsg, ServerId};
use chatdrop_proto::{
    decode, encode_frame, ClientMsg, ErrorCode, FrameCodec, ProtoError, ServerMsg,
};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use crate::hub::{ConnHandle, HubMsg};
use crate::Shared;

/// Frames queued for one link at most; a link that falls this far behind
/// is dropped (and redialled), and the end-to-end layer resends.
pub const LINK_QUEUE: usize = 65_536;

/// Time allowed to connect and complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// This server's side of the network.
#[derive(Debug)]
pub struct LinkConfig {
    pub id: ServerId,
    pub name: String,
    /// When this run started (ms since the Unix epoch).
    pub incarnation: u64,
    /// The network key; without one the server neither dials nor accepts.
    pub key: Option<Vec<u8>>,
    next_link: AtomicU64,
}

impl LinkConfig {
    /// The configuration of a server.
    pub fn new(id: ServerId, name: String, incarnation: u64, key: Option<Vec<u8>>) -> Self {
        LinkConfig {
            id,
            name,
            incarnation,
            key,
            next_link: AtomicU64::new(1),
        }
    }

    fn hello(&self) -> LinkHello {
        LinkHello {
            version: PROTOCOL_VERSION,
            id: self.id,
            name: self.name.clone(),
            incarnation: self.incarnation,
            nonce: rand::random(),
        }
    }

    fn mac(&self, transcript: &[u8]) -> Option<[u8; 32]> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_ref()?).ok()?;
        mac.update(transcript);
        Some(mac.finalize().into_bytes().into())
    }

    fn verify(&self, transcript: &[u8], tag: &[u8; 32]) -> bool {
        let Some(key) = self.key.as_ref() else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return false;
        };
        mac.update(transcript);
        mac.verify_slice(tag).is_ok() // constant time
    }
}

type Frames<R> = FramedRead<R, FrameCodec>;

/// Why a link could not be made, or its handshake failed.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("connecting timed out")]
    ConnectTimeout,
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake timed out")]
    TlsTimeout,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the handshake timed out")]
    HandshakeTimeout,
    #[error("the other server closed the connection")]
    Closed,
    /// A frame could not be read or written.
    #[error("{0}")]
    Frame(#[from] ProtoError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The other side refused, with its reason.
    #[error("refused: {0}")]
    Refused(String),
    #[error("the other side does not speak the link protocol")]
    NotLinkProtocol,
    #[error("protocol version {0} (this server speaks {PROTOCOL_VERSION})")]
    Version(u16),
    #[error("a server cannot link to itself")]
    ToSelf,
    /// The other server's name breaks the naming rules.
    #[error("server name refused: {0}")]
    BadName(String),
    /// A valid frame, but not the handshake's next step.
    #[error("expected {0}")]
    Unexpected(&'static str),
    #[error("this server has no network key (--network-key)")]
    NoKey,
    /// The other server's proof does not verify.
    #[error("server {0} does not hold the network key; link refused")]
    WrongKey(String),
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, msg: &LinkMsg) -> Result<(), LinkError> {
    let frame = encode_frame(msg)?;
    w.write_all(&frame).await?;
    Ok(w.flush().await?)
}

async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, why: &str) {
    if let Ok(frame) = encode_frame(&ServerMsg::error(ErrorCode::AuthFailed, why)) {
        let _ = w.write_all(&frame).await;
        let _ = w.shutdown().await;
    }
}

/// Reads one handshake frame. A refusal from the other side arrives as a
/// client-protocol error, which is shown as such.
async fn recv<R: AsyncRead + Unpin>(frames: &mut Frames<R>) -> Result<LinkMsg, LinkError> {
    let payload = match tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.next()).await {
        Err(_) => return Err(LinkError::HandshakeTimeout),
        Ok(None) => return Err(LinkError::Closed),
        Ok(Some(Err(e))) => return Err(e.into()),
        Ok(Some(Ok(p))) => p,
    };
    if let Ok(msg) = decode::<LinkMsg>(&payload) {
        return Ok(msg);
    }
    match decode::<ServerMsg>(&payload) {
        Ok(ServerMsg::Error { message, .. }) => Err(LinkError::Refused(message)),
        _ => Err(LinkError::NotLinkProtocol),
    }
}

fn check_hello(cfg: &LinkConfig, peer: &LinkHello) -> Result<(), LinkError> {
    if peer.version != PROTOCOL_VERSION {
        return Err(LinkError::Version(peer.version));
    }
    if peer.id == cfg.id {
        return Err(LinkError::ToSelf);
    }
    // Its name is shown to users and on the console: the room-name rules
    // keep escape sequences out.
    chatdrop_proto::names::check_room_name(&peer.name).map_err(LinkError::BadName)?;
    Ok(())
}

/// Serves a connection whose first frame was a [`LinkHello`]: the answering
/// side of the handshake, then the link.
pub(crate) async fn accept<R, W>(
    mut frames: Frames<R>,
    mut wr: W,
    peer: LinkHello,
    binding: [u8; BINDING_LEN],
    addr: SocketAddr,
    shared: Arc<Shared>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &shared.link;
    if cfg.key.is_none() {
        warn!(%addr, server = %peer.name, "refused a link: this server has no --network-key");
        refuse(
            &mut wr,
            "this server takes no links (it has no network key)",
        )
        .await;
        return;
    }
    if let Err(why) = check_hello(cfg, &peer) {
        warn!(%addr, server = %peer.name, "refused a link: {why}");
        refuse(&mut wr, &why.to_string()).await;
        return;
    }
    let mine = cfg.hello();
    if send(&mut wr, &LinkMsg::Hello(mine.clone())).await.is_err() {
        return;
    }
    let their_proof = match recv(&mut frames).await {
        Ok(LinkMsg::Proof { mac }) => mac,
        Ok(_) => {
            warn!(%addr, "refused a link: expected its key proof");
            return;
        }
        Err(why) => {
            warn!(%addr, "link handshake failed: {why}");
            return;
        }
    };
    let theirs = link_transcript(&binding, &peer.nonce, &mine.nonce, &peer.id, true);
    if !cfg.verify(&theirs, &their_proof) {
        warn!(%addr, server = %peer.name, "refused a link: wrong network key");
        refuse(&mut wr, "wrong network key").await;
        return;
    }
    // Only a proven server may send the large frames of a link.
    frames.decoder_mut().set_max(MAX_LINK_FRAME);
    let ours = link_transcript(&binding, &peer.nonce, &mine.nonce, &cfg.id, false);
    let Some(mac) = cfg.mac(&ours) else {
        return;
    };
    if send(&mut wr, &LinkMsg::Proof { mac }).await.is_err() {
        return;
    }
    run(frames, wr, peer, addr, shared).await;
}

/// Dials `target` for as long as the server runs, redialling with jittered
/// backoff whenever the link drops or cannot be made.
pub(crate) async fn dial_forever(target: String, shared: Arc<Shared>) {
    let span = info_span!("link", to = %target);
    async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                r = dial(&target, &shared) => r,
            };
            if let Err(why) = outcome {
                warn!("link to {target}: {why}");
            }
            if started.elapsed() > Duration::from_secs(10) {
                backoff = Duration::from_millis(100); // it was up a while
            }
            let jitter = rand::random::<f64>() * 0.5 + 0.75;
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff.mul_f64(jitter)) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
    .instrument(span)
    .await
}

async fn dial(target: &str, shared: &Arc<Shared>) -> Result<(), LinkError> {
    let cfg = &shared.link;
    let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| LinkError::ConnectTimeout)?
        .map_err(LinkError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let addr = tcp.peer_addr()?;
    let tls_err = |e: &dyn std::fmt::Display| LinkError::Tls(e.to_string());
    let (verifier, _) = chatdrop_proto::tls::PinVerifier::new(None);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(&e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("chatdrop").map_err(|e| tls_err(&e))?;
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| LinkError::TlsTimeout)?
        .map_err(|e| tls_err(&e))?;
    let mut binding = [0u8; BINDING_LEN];
    tls.get_ref()
        .1
        .export_keying_material(&mut binding, LINK_EXPORTER_LABEL, None)
        .map_err(|e| LinkError::Tls(format!("exporter: {e}")))?;
    let (rd, mut wr) = tokio::io::split(tls);
    let mut frames = FramedRead::with_capacity(rd, FrameCodec::new(MAX_LINK_FRAME), 64 * 1024);
    let mine = cfg.hello();
    let hello = encode_frame(&ClientMsg::LinkHello(mine.clone()))?;
    wr.write_all(&hello).await?;
    let peer = match recv(&mut frames).await? {
        LinkMsg::Hello(h) => h,
        _ => return Err(LinkError::Unexpected("the other server's hello")),
    };
    check_hello(cfg, &peer)?;
    let ours = link_transcript(&binding, &mine.nonce, &peer.nonce, &cfg.id, true);
    let mac = cfg.mac(&ours).ok_or(LinkError::NoKey)?;
    send(&mut wr, &LinkMsg::Proof { mac }).await?;
    let their_proof = match recv(&mut frames).await? {
        LinkMsg::Proof { mac } => mac,
        _ => return Err(LinkError::Unexpected("the other server's key proof")),
    };
    let theirs = link_transcript(&binding, &mine.nonce, &peer.nonce, &peer.id, false);
    if !cfg.verify(&theirs, &their_proof) {
        return Err(LinkError::WrongKey(peer.name));
    }
    // `run` logs why the link ended; the caller redials.
    run(frames, wr, peer, addr, shared.clone()).await;
    Ok(())
}

/// Carries a link after its handshake until it drops: frames to the hub,
/// keepalives both ways, round-trip times to the hub.
async fn run<R, W>(
    mut frames: Frames<R>,
    wr: W,
    peer: LinkHello,
    addr: SocketAddr,
    shared: Arc<Shared>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let link = LinkId(shared.link.next_link.fetch_add(1, Ordering::Relaxed));
    let span = info_span!("link", id = link.0, peer = %peer.name, %addr);
    async move {
        let (tx, rx) = mpsc::channel::<Bytes>(LINK_QUEUE);
        let close = CancellationToken::new();
        let writer = tokio::spawn(crate::conn::write_loop(wr, rx, close.clone()));
        let handle = ConnHandle {
            tx: tx.clone(),
            close: close.clone(),
        };
        let up = HubMsg::LinkUp {
            link,
            peer: peer.id,
            name: peer.name.clone(),
            handle,
        };
        if shared.hub.send(up).await.is_err() {
            close.cancel();
            return;
        }
        info!("link up");
        let epoch = Instant::now();
        let mut ping = tokio::time::interval(Duration::from_millis(LINK_PING_MS));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let dead = Duration::from_millis(LINK_DEAD_MS);
        let mut last_rtt_report = None::<Instant>;
        // One deadline, pushed back by every frame that arrives (a timeout
        // around each read would restart at every ping and never fire).
        let silence = tokio::time::sleep(dead);
        tokio::pin!(silence);
        let why = loop {
            tokio::select! {
                _ = close.cancelled() => break "closed by this server".to_string(),
                _ = shared.shutdown.cancelled() => break "shutting down".to_string(),
                _ = ping.tick() => {
                    let t = epoch.elapsed().as_micros() as u64;
                    if let Ok(frame) = encode_frame(&LinkMsg::Ping(t)) {
                        let _ = tx.try_send(frame);
                    }
                }
                _ = &mut silence => break format!("silent for {LINK_DEAD_MS} ms"),
                frame = frames.next() => {
                    let payload = match frame {
                        None => break "closed by the other server".to_string(),
                        Some(Err(e)) => break e.to_string(),
                        Some(Ok(p)) => p,
                    };
                    silence.as_mut().reset(tokio::time::Instant::now() + dead);
                    let msg = match decode::<LinkMsg>(&payload) {
                        Ok(m) => m,
                        Err(e) => break format!("bad frame: {e}"),
                    };
                    match msg {
                        LinkMsg::Ping(t) => {
                            if let Ok(frame) = encode_frame(&LinkMsg::Pong(t)) {
                                let _ = tx.try_send(frame);
                            }
                        }
                        LinkMsg::Pong(t) => {
                            let rtt_us = (epoch.elapsed().as_micros() as u64).saturating_sub(t);
                            // Once a second is plenty for costs and the console.
                            if last_rtt_report.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                                last_rtt_report = Some(Instant::now());
                                let _ = shared.hub.send(HubMsg::Chat(Event::LinkRtt { link, rtt_us })).await;
                            }
                        }
                        LinkMsg::Hello(_) | LinkMsg::Proof { .. } => break "unexpected handshake frame".to_string(),
                        msg => {
                            if shared.hub.send(HubMsg::Chat(Event::LinkFrame { link, msg })).await.is_err() {
                                break "the server is stopping".to_string();
                            }
                        }
                    }
                }
            }
        };
        info!("link down: {why}");
        // Routes move first; the writer may be stuck on a dead socket.
        let _ = shared.hub.send(HubMsg::LinkGone(link)).await;
        close.cancel();
        drop(tx);
        let abort = writer.abort_handle();
        if tokio::time::timeout(Duration::from_secs(1), writer).await.is_err() {
            abort.abort();
        }
    }
    .instrument(span)
    .await
}
