//! One client connection: TLS, the login proof, then frames both ways.
//!
//! The reader half decodes frames (checking each length before reserving
//! anything) and forwards requests to the hub; the writer half drains the
//! connection's bounded queue, writing everything queued in one go.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatdrop_chat::{ConnId, Event};
use chatdrop_proto::auth::{login_transcript, BINDING_LEN, EXPORTER_LABEL, LINK_EXPORTER_LABEL};
use chatdrop_proto::limits::{IDLE_TIMEOUT_SECS, MAX_CLIENT_FRAME, MAX_PASSWORD, PROTOCOL_VERSION};
use chatdrop_proto::{
    decode, encode_frame, ClientMsg, ErrorCode, FrameCodec, ProtoError, ServerMsg,
};
use ed25519_dalek::{Signature, VerifyingKey};
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::hub::{ConnHandle, HubMsg, CONN_QUEUE};
use crate::outbox::{outbox, Inbox, Outbox, CLIENT_QUEUE_BYTES};
use crate::per_ip::IpGuard;
use crate::quota::Verdict;
use crate::relay::Pass;
use crate::Shared;

/// Time allowed from the TCP connection to a completed login, all steps
/// together: a client that dribbles its login out one step at a time
/// (slowloris) holds its place no longer than this.
const LOGIN_DEADLINE: Duration = Duration::from_secs(10);

/// Time allowed for the TLS handshake of a connection that is only told
/// why it is refused.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) type Tls = TlsStream<TcpStream>;
pub(crate) type Reader = FramedRead<ReadHalf<Tls>, FrameCodec>;

/// Why a connection ended, for the log.
#[derive(Debug)]
pub(crate) enum End {
    Closed,
    /// The connection broke (reset, EOF inside TLS...): nothing to answer.
    Lost(String),
    Idle,
    Error(String),
    Refused(String),
}

/// Serves one accepted TCP connection to its end.
///
/// `guard` counts the connection against its address's limits for as long
/// as it is open, and against the logins in progress until it logs in.
pub(crate) async fn serve(
    id: u64,
    tcp: TcpStream,
    addr: SocketAddr,
    mut guard: IpGuard,
    shared: Arc<Shared>,
) {
    let span = info_span!("conn", id, %addr, user = tracing::field::Empty);
    async move {
        let end = run(ConnId(id), tcp, addr, &mut guard, &shared).await;
        match &end {
            End::Error(why) | End::Refused(why) | End::Lost(why) => {
                debug!("connection ended: {why}")
            }
            other => debug!("connection ended: {other:?}"),
        }
        let _ = shared.hub.send(HubMsg::Gone(ConnId(id))).await;
    }
    .instrument(span)
    .await
}

/// Completes TLS only to tell the client why it is refused (the server is
/// full, or its address has too many connections).
pub(crate) async fn refuse_conn(
    tcp: TcpStream,
    addr: SocketAddr,
    code: ErrorCode,
    why: String,
    shared: Arc<Shared>,
) {
    let Ok(Ok(mut tls)) = tokio::time::timeout(REFUSAL_TIMEOUT, shared.acceptor.accept(tcp)).await
    else {
        return;
    };
    info!(%addr, "refused: {why}");
    let msg = ServerMsg::error(code, why);
    let _ = write_msg(&mut tls, &msg).await;
    let _ = tls.shutdown().await;
}

async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &ServerMsg) -> std::io::Result<()> {
    let frame = encode_frame(msg).map_err(std::io::Error::other)?;
    w.write_all(&frame).await?;
    w.flush().await
}

/// Reads the next message, within `limit`, with its size in bytes.
pub(crate) async fn next_msg(
    frames: &mut Reader,
    limit: Duration,
) -> Result<(ClientMsg, usize), End> {
    tokio::time::timeout(limit, read_msg(frames))
        .await
        .unwrap_or(Err(End::Idle))
}

/// Reads and decodes one frame, however long it takes: the caller bounds
/// the wait.
async fn read_msg(frames: &mut Reader) -> Result<(ClientMsg, usize), End> {
    match frames.next().await {
        None => Err(End::Closed),
        Some(Err(ProtoError::Io(e))) => Err(End::Lost(e.to_string())),
        Some(Err(e)) => Err(End::Error(e.to_string())),
        Some(Ok(payload)) => decode::<ClientMsg>(&payload)
            .map(|m| (m, payload.len()))
            .map_err(|e| End::Error(e.to_string())),
    }
}

/// Runs `step`, unless the server shuts down first.
async fn or_shutdown<T>(
    shared: &Shared,
    step: impl std::future::Future<Output = Result<T, End>>,
) -> Result<T, End> {
    tokio::select! {
        _ = shared.shutdown.cancelled() => Err(End::Closed),
        r = step => r,
    }
}

/// The TLS handshake, and the keying material bound to this TLS session
/// for a client's login proof and a server's link proof.
async fn accept_tls(
    tcp: TcpStream,
    deadline: tokio::time::Instant,
    shared: &Shared,
) -> Result<(Tls, [u8; BINDING_LEN], [u8; BINDING_LEN]), End> {
    let tls = match tokio::time::timeout_at(deadline, shared.acceptor.accept(tcp)).await {
        Err(_) => return Err(End::Error("TLS handshake timed out".into())),
        Ok(Err(e)) => return Err(End::Error(format!("TLS handshake: {e}"))),
        Ok(Ok(tls)) => tls,
    };
    let export = |label: &[u8]| {
        let mut out = [0u8; BINDING_LEN];
        tls.get_ref()
            .1
            .export_keying_material(&mut out, label, None)
            .map_err(|e| End::Error(format!("TLS exporter: {e}")))?;
        Ok(out)
    };
    let binding = export(EXPORTER_LABEL)?;
    let link_binding = export(LINK_EXPORTER_LABEL)?;
    Ok((tls, binding, link_binding))
}

/// A connection from TLS to its end: a client's login and session, or a
/// server's link.
async fn run(
    conn: ConnId,
    tcp: TcpStream,
    addr: SocketAddr,
    guard: &mut IpGuard,
    shared: &Arc<Shared>,
) -> End {
    let deadline = tokio::time::Instant::now() + LOGIN_DEADLINE;
    let opening = async {
        let (tls, binding, link_binding) = accept_tls(tcp, deadline, shared).await?;
        let (rd, mut wr) = tokio::io::split(tls);
        let mut frames = FramedRead::with_capacity(rd, FrameCodec::new(MAX_CLIENT_FRAME), 512);
        let steps = tokio::time::timeout_at(
            deadline,
            first_steps(&mut frames, &mut wr, &binding, shared),
        )
        .await;
        match steps {
            Ok(Ok(Step::Link(hello))) => Ok(Opened::Link(frames, wr, hello, link_binding)),
            Ok(Ok(Step::Mailbox(first))) => Ok(Opened::Mailbox(frames, wr, first)),
            Ok(Ok(Step::Client(who))) => Ok(Opened::Client(frames, wr, who)),
            Ok(Err(end)) => Err(end),
            // Said, so a client on a slow path knows why it was closed
            // (within a second: a peer that reads nothing gets no longer).
            Err(_) => {
                let why = format!(
                    "the login took too long: it must be done within {} s of connecting",
                    LOGIN_DEADLINE.as_secs()
                );
                let said = refuse(&mut wr, ErrorCode::BadRequest, why.clone());
                let _ = tokio::time::timeout(Duration::from_secs(1), said).await;
                Err(End::Refused(why))
            }
        }
    };
    // Boxed: the TLS handshake and login are the largest state a
    // connection's task goes through, and inline they would size the task
    // for its whole life; boxed, they are freed once the login is done.
    let opened = or_shutdown(shared, Box::pin(opening));
    let (frames, wr, (user, public_key)) = match opened.await {
        Ok(Opened::Link(frames, wr, hello, link_binding)) => {
            guard.logged_in();
            // Boxed: inline, a link's state would size every client's task
            // too.
            Box::pin(crate::link::accept(
                frames,
                wr,
                hello,
                link_binding,
                addr,
                shared.clone(),
            ))
            .await;
            return End::Closed;
        }
        Ok(Opened::Client(frames, wr, who)) => (frames, wr, who),
        Ok(Opened::Mailbox(frames, wr, first)) => {
            guard.logged_in();
            let serve = crate::mailbox::serve((conn, addr.ip()), first, frames, wr, shared);
            return Box::pin(serve).await;
        }
        Err(end) => return end,
    };
    guard.logged_in();
    tracing::Span::current().record("user", user.as_str());
    let client = Client {
        conn,
        user,
        public_key,
        ip: addr.ip(),
    };
    // Boxed too, for the same reason as the opening: the compiler does not
    // overlap the states of this function's awaits well. Inline, the
    // session made every connection's task 4.2 KB; boxed, the task is
    // 0.9 KB and the session 1.7 KB.
    Box::pin(session(client, frames, wr, shared)).await
}

/// What the first frames made of a connection.
enum Step {
    Link(chatdrop_proto::link::LinkHello),
    Mailbox(chatdrop_proto::MailboxMsg),
    Client((String, [u8; 32])),
}

/// The first frame tells a client (`Hello`) from another server
/// (`LinkHello`); a client then logs in: Hello -> Challenge -> Auth.
async fn first_steps(
    frames: &mut Reader,
    wr: &mut WriteHalf<Tls>,
    binding: &[u8; BINDING_LEN],
    shared: &Shared,
) -> Result<Step, End> {
    let first = login_msg(frames, wr).await?;
    match first {
        ClientMsg::LinkHello(hello) => return Ok(Step::Link(hello)),
        ClientMsg::Mailbox(m) => return Ok(Step::Mailbox(m)),
        _ => {}
    }
    login(first, frames, wr, binding, shared)
        .await
        .map(Step::Client)
}

/// A connection that completed TLS and its first steps.
enum Opened {
    /// Another server, which sent a `LinkHello`.
    Link(
        Reader,
        WriteHalf<Tls>,
        chatdrop_proto::link::LinkHello,
        [u8; BINDING_LEN],
    ),
    /// A client that proved its name and key.
    Client(Reader, WriteHalf<Tls>, (String, [u8; 32])),
    /// A mailbox connection (`send --via`, `recv --via`), and its first
    /// request.
    Mailbox(Reader, WriteHalf<Tls>, chatdrop_proto::MailboxMsg),
}

/// A client that proved its identity.
struct Client {
    conn: ConnId,
    user: String,
    public_key: [u8; 32],
    ip: std::net::IpAddr,
}

/// A logged-in client's session: its requests to the hub, the hub's frames
/// to it, until either side ends it.
async fn session(
    client: Client,
    mut frames: Reader,
    mut wr: WriteHalf<Tls>,
    shared: &Shared,
) -> End {
    let Client {
        conn,
        user,
        public_key,
        ip,
    } = client;
    // The buckets this name left with: reconnecting does not refill them.
    let mut quota = match shared.carried.resume(&user, shared.carried.now_ms()) {
        Ok(q) => q,
        Err(why) => return refuse(&mut wr, ErrorCode::RateLimited, why).await,
    };
    let name = user.clone();
    let (tx, rx) = outbox(CONN_QUEUE, CLIENT_QUEUE_BYTES);
    let close = CancellationToken::new();
    let writer = tokio::spawn(write_loop(wr, rx, close.clone()));
    let handle = ConnHandle {
        tx: tx.clone(),
        close: close.clone(),
    };
    if shared
        .hub
        .send(HubMsg::Login {
            conn,
            handle,
            user,
            public_key,
            ip,
        })
        .await
        .is_err()
    {
        close.cancel();
        return End::Closed;
    }

    let idle = Duration::from_secs(IDLE_TIMEOUT_SECS);
    let end = loop {
        let msg = tokio::select! {
            _ = close.cancelled() => break End::Closed,
            m = next_msg(&mut frames, idle) => m,
        };
        // A datagram of a relayed transfer has the relay's limits, not
        // the chat's; one for no relay of this client's counts as any
        // frame.
        if let Ok((ClientMsg::Tunnel { session, data }, _)) = &msg {
            match shared
                .relays
                .on_tunnel(conn, *session, data, Instant::now())
            {
                Pass::SendTo(to) => {
                    shared.relays.send_udp(to, data);
                    continue;
                }
                // Only a UDP bind flushes.
                Pass::Done | Pass::Flush(..) => continue,
                Pass::NotMine => {}
            }
        }
        let msg = match msg {
            Ok((m, len)) => match quota.check(shared.carried.now_ms(), &m, len) {
                Verdict::Allow => m,
                Verdict::Refuse(why) => {
                    if let Ok(frame) = encode_frame(&why) {
                        let _ = tx.try_send(frame);
                    }
                    continue;
                }
                Verdict::Disconnect(why) => {
                    warn!("dropping client: {why:?}");
                    if let Ok(frame) = encode_frame(&why) {
                        let _ = tx.try_send(frame);
                    }
                    break End::Refused("over its rate limits".into());
                }
            },
            Err(End::Error(e)) => {
                // Malformed or oversized: say why, then drop the client.
                warn!("dropping client: {e}");
                if let Ok(frame) = encode_frame(&ServerMsg::error(ErrorCode::BadRequest, e.clone()))
                {
                    let _ = tx.try_send(frame);
                }
                break End::Error(e);
            }
            Err(end) => break end,
        };
        if let Err(end) = forward(conn, msg, &tx, shared).await {
            break end;
        }
    };
    // Kept before the connection closes, so a login that follows the
    // close finds them.
    let kicked = matches!(end, End::Refused(_));
    shared
        .carried
        .keep(&name, quota, kicked, shared.carried.now_ms());
    shared.observers.forget(conn);
    shared.relays.forget(conn);
    close.cancel();
    drop(tx);
    let _ = writer.await;
    if matches!(end, End::Refused(_) | End::Error(_)) {
        // Gone first, so the room sees the client leave now rather than
        // after the linger (the `Gone` that follows is ignored).
        let _ = shared.hub.send(HubMsg::Gone(conn)).await;
        linger(&mut frames).await;
    }
    end
}

/// Reads and discards what a dropped client still sends, for a moment,
/// after the reason was written: closing a socket with unread data makes
/// the kernel reset the connection, and a reset can destroy the reason
/// before the client reads it.
async fn linger(frames: &mut Reader) {
    let drain = async { while let Some(Ok(_)) = frames.next().await {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Tells the client why its login is refused and closes the connection.
async fn refuse(wr: &mut WriteHalf<Tls>, code: ErrorCode, why: String) -> End {
    let _ = write_msg(wr, &ServerMsg::error(code, why.clone())).await;
    let _ = wr.shutdown().await;
    End::Refused(why)
}

/// Reads a login step; a malformed or oversized frame is answered with the
/// reason before the connection is dropped.
async fn login_msg(frames: &mut Reader, wr: &mut WriteHalf<Tls>) -> Result<ClientMsg, End> {
    // No timeout of its own: the login deadline bounds every step, and a
    // second timer ending with it could win the tie and close the
    // connection without saying why.
    match read_msg(frames).await {
        Err(End::Error(why)) => Err(refuse(wr, ErrorCode::BadRequest, why).await),
        other => other.map(|(msg, _)| msg),
    }
}

async fn login(
    first: ClientMsg,
    frames: &mut Reader,
    wr: &mut WriteHalf<Tls>,
    binding: &[u8; BINDING_LEN],
    shared: &Shared,
) -> Result<(String, [u8; 32]), End> {
    let (version, user, public_key) = match first {
        ClientMsg::Hello {
            version,
            user,
            public_key,
        } => (version, user, public_key),
        other => {
            return Err(refuse(
                wr,
                ErrorCode::BadRequest,
                format!("expected Hello, got {}", msg_name(&other)),
            )
            .await)
        }
    };
    if version != PROTOCOL_VERSION {
        return Err(refuse(
            wr,
            ErrorCode::UnsupportedVersion,
            format!("this server speaks protocol version {PROTOCOL_VERSION}, the client {version}"),
        )
        .await);
    }
    let nonce: [u8; 32] = rand::random();
    let challenge = ServerMsg::Challenge {
        version: PROTOCOL_VERSION,
        server_name: shared.name.clone(),
        nonce,
    };
    write_msg(wr, &challenge)
        .await
        .map_err(|e| End::Error(e.to_string()))?;
    let signature = match login_msg(frames, wr).await? {
        ClientMsg::Auth { signature } => signature,
        other => {
            return Err(refuse(
                wr,
                ErrorCode::BadRequest,
                format!("expected Auth, got {}", msg_name(&other)),
            )
            .await)
        }
    };
    let verified = VerifyingKey::from_bytes(&public_key).ok().and_then(|key| {
        let sig = Signature::from_slice(&signature).ok()?;
        let transcript = login_transcript(binding, &nonce, &user, &public_key);
        key.verify_strict(&transcript, &sig).ok()
    });
    if verified.is_none() {
        return Err(refuse(
            wr,
            ErrorCode::AuthFailed,
            "the login signature does not verify".into(),
        )
        .await);
    }
    Ok((user, public_key))
}

fn msg_name(m: &ClientMsg) -> &'static str {
    match m {
        ClientMsg::Hello { .. } => "Hello",
        ClientMsg::Auth { .. } => "Auth",
        ClientMsg::Ping => "Ping",
        ClientMsg::ListRooms { .. } => "ListRooms",
        ClientMsg::CreateRoom { .. } => "CreateRoom",
        ClientMsg::JoinRoom { .. } => "JoinRoom",
        ClientMsg::LeaveRoom { .. } => "LeaveRoom",
        ClientMsg::GetPeers { .. } => "GetPeers",
        ClientMsg::History { .. } => "History",
        ClientMsg::Say { .. } => "Say",
        ClientMsg::Quit => "Quit",
        ClientMsg::WhoHas { .. } => "WhoHas",
        ClientMsg::HaveFile { .. } => "HaveFile",
        ClientMsg::GetFile { .. } => "GetFile",
        ClientMsg::FileAnswer { .. } => "FileAnswer",
        ClientMsg::LinkHello(_) => "LinkHello",
        ClientMsg::Observe { .. } => "Observe",
        ClientMsg::Relay { .. } => "Relay",
        ClientMsg::Tunnel { .. } => "Tunnel",
        ClientMsg::RelayEnd { .. } => "RelayEnd",
        ClientMsg::Mailbox(_) => "Mailbox",
        ClientMsg::OfferFiles { .. } => "OfferFiles",
        ClientMsg::OfferAnswer { .. } => "OfferAnswer",
    }
}

/// Passes one request to the hub as it came, or answers it here: `Ping`,
/// frames that belong to the login, and passwords over the limit.
async fn forward(conn: ConnId, msg: ClientMsg, tx: &Outbox, shared: &Shared) -> Result<(), End> {
    let reply = |msg: ServerMsg| {
        if let Ok(frame) = encode_frame(&msg) {
            let _ = tx.try_send(frame);
        }
    };
    let too_long = |p: &Option<String>| p.as_ref().is_some_and(|p| p.len() > MAX_PASSWORD);
    let event = match msg {
        ClientMsg::Ping => {
            reply(ServerMsg::Pong);
            return Ok(());
        }
        ClientMsg::Observe { token } => {
            shared.observers.register(conn, token, tx);
            return Ok(());
        }
        // For no relay of this client's (see `session`): dropped.
        ClientMsg::Tunnel { .. } => return Ok(()),
        ClientMsg::RelayEnd { session } => {
            shared.relays.end(conn, session);
            return Ok(());
        }
        ClientMsg::Hello { .. }
        | ClientMsg::Auth { .. }
        | ClientMsg::LinkHello(_)
        | ClientMsg::Mailbox(_) => {
            reply(ServerMsg::error(ErrorCode::BadRequest, "already logged in"));
            return Ok(());
        }
        ClientMsg::JoinRoom { ref password, .. } | ClientMsg::CreateRoom { ref password, .. }
            if too_long(password) =>
        {
            reply(ServerMsg::error(
                ErrorCode::TooLong,
                format!("a password has at most {MAX_PASSWORD} bytes"),
            ));
            return Ok(());
        }
        // The core checks the request, then asks the hub to hash a
        // private room's password.
        ClientMsg::CreateRoom { room, password } => Event::CreateRoom {
            conn,
            room,
            password,
            room_id: hex::encode(rand::random::<[u8; 16]>()),
        },
        msg => Event::Request { conn, msg },
    };
    shared
        .hub
        .send(HubMsg::Chat(event))
        .await
        .map_err(|_| End::Closed)
}

/// Writes queued frames until the queue closes or `close` is cancelled; then
/// writes what is left and closes TLS cleanly.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: Inbox,
    close: CancellationToken,
) {
    let mut buf = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            f = rx.recv() => f,
            _ = close.cancelled() => None,
        };
        let closing = first.is_none();
        if let Some(f) = first {
            buf.extend_from_slice(&f);
        }
        // Take everything already queued so one write (and few TLS records)
        // carries a burst of messages.
        while let Some(f) = rx.try_recv() {
            buf.extend_from_slice(&f);
            if buf.len() > 256 * 1024 {
                break;
            }
        }
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                close.cancel();
                return;
            }
            // Kept while more is queued (a busy link reuses it); given back
            // once the queue is empty, so an idle connection holds no
            // buffer at all (with thousands idle, that is most of them).
            if rx.is_empty() {
                buf = Vec::new();
            } else {
                buf.clear();
            }
        }
        if closing && rx.is_empty() {
            let _ = wr.shutdown().await;
            close.cancel();
            return;
        }
    }
}
