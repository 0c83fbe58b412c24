//! One connection to a server: TCP, TLS 1.3 with the pinned certificate, and
//! the login proof.

use std::sync::Arc;
use std::time::Duration;

use chatdrop_proto::auth::{login_transcript, BINDING_LEN, EXPORTER_LABEL};
use chatdrop_proto::limits::{MAX_SERVER_FRAME, PROTOCOL_VERSION};
use chatdrop_proto::{decode, encode_frame, ClientMsg, ErrorCode, FrameCodec, ServerMsg};
use ed25519_dalek::{Signer, SigningKey};
use futures::StreamExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::FramedRead;

use crate::trust::PinVerifier;

/// Time allowed to connect and for each login step.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Tls = TlsStream<TcpStream>;

/// A logged-in connection.
pub struct Session {
    /// Frames from the server.
    pub frames: FramedRead<ReadHalf<Tls>, FrameCodec>,
    /// The write half.
    pub writer: WriteHalf<Tls>,
    /// The server's name.
    pub server_name: String,
    /// The fingerprint of the server's certificate.
    pub fingerprint: String,
    /// The server's address: its UDP port, where it observes clients'
    /// transfer sockets, has the same number.
    pub server_addr: std::net::SocketAddr,
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The server showed a certificate other than the pinned one.
    Fingerprint {
        /// Pinned.
        expected: String,
        /// Shown.
        got: String,
    },
    /// The server refused the login.
    Refused {
        code: ErrorCode,
        /// Its words.
        message: String,
    },
    /// Network or protocol failure.
    Io(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Fingerprint { expected, got } => {
                write!(
                    f,
                    "certificate fingerprint {got} is not the pinned {expected}"
                )
            }
            ConnectError::Refused { message, code } => write!(f, "{message} ({})", code.as_str()),
            ConnectError::Io(why) => f.write_str(why),
        }
    }
}

impl Session {
    /// The next message from the server; `None` once it closed.
    pub async fn next(&mut self) -> Option<Result<ServerMsg, String>> {
        let frame = self.frames.next().await?;
        Some(match frame {
            Ok(payload) => decode(&payload).map_err(|e| format!("bad frame from server: {e}")),
            Err(e) => Err(e.to_string()),
        })
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &ClientMsg) -> std::io::Result<()> {
        let frame = encode_frame(msg).map_err(std::io::Error::other)?;
        self.writer.write_all(&frame).await?;
        self.writer.flush().await
    }
}

async fn read_msg(
    frames: &mut FramedRead<ReadHalf<Tls>, FrameCodec>,
) -> Result<ServerMsg, ConnectError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, frames.next()).await {
        Err(_) => Err(ConnectError::Io("the server did not answer in time".into())),
        Ok(None) => Err(ConnectError::Io("the server closed the connection".into())),
        Ok(Some(Err(e))) => Err(ConnectError::Io(e.to_string())),
        Ok(Some(Ok(payload))) => {
            decode(&payload).map_err(|e| ConnectError::Io(format!("bad frame from server: {e}")))
        }
    }
}

/// Opens TCP and TLS to `server`, checking its certificate against
/// `pinned`. Returns the stream and the certificate's fingerprint.
async fn open_tls(server: &str, pinned: Option<String>) -> Result<(Tls, String), ConnectError> {
    let io = |e: std::io::Error| ConnectError::Io(e.to_string());
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server))
        .await
        .map_err(|_| ConnectError::Io("timed out".into()))?
        .map_err(io)?;
    let _ = tcp.set_nodelay(true);
    let (verifier, seen) = PinVerifier::new(pinned.clone());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ConnectError::Io(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // Certificates are checked by fingerprint, not name; any valid name does.
    let name = ServerName::try_from("chatdrop").map_err(|e| ConnectError::Io(e.to_string()))?;
    let handshake = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await;
    let got = seen.lock().ok().and_then(|s| s.clone());
    let tls = match handshake {
        Err(_) => return Err(ConnectError::Io("TLS handshake timed out".into())),
        Ok(Err(e)) => {
            return Err(match (pinned, got) {
                (Some(expected), Some(got)) if expected != got => {
                    ConnectError::Fingerprint { expected, got }
                }
                _ => ConnectError::Io(format!("TLS handshake: {e}")),
            })
        }
        Ok(Ok(tls)) => tls,
    };
    Ok((tls, got.unwrap_or_default()))
}

/// Opens a mailbox connection to `server` (see `code.rs`): TLS with any
/// certificate, and no login.
pub async fn open_mailbox(server: &str) -> Result<Session, ConnectError> {
    let (tls, fingerprint) = open_tls(server, None).await?;
    let server_addr = (tls.get_ref().0.peer_addr()).map_err(|e| ConnectError::Io(e.to_string()))?;
    let (rd, writer) = tokio::io::split(tls);
    Ok(Session {
        frames: FramedRead::new(rd, FrameCodec::new(MAX_SERVER_FRAME)),
        writer,
        server_name: String::new(),
        fingerprint,
        server_addr,
    })
}

/// Times a TCP connection and TLS handshake to `server`: the round-trip
/// measure `--server A,B,C` picks the closest server by.
pub async fn probe(server: &str) -> Result<std::time::Duration, String> {
    let start = std::time::Instant::now();
    let _tls = open_tls(server, None).await.map_err(|e| e.to_string())?;
    Ok(start.elapsed())
}

/// Connects to `server`, checks its certificate against `pinned` (any, when
/// `None`), and logs in as `user` with `key`.
pub async fn connect(
    server: &str,
    user: &str,
    key: &SigningKey,
    pinned: Option<String>,
) -> Result<Session, ConnectError> {
    let io = |e: std::io::Error| ConnectError::Io(e.to_string());
    let (tls, fingerprint) = open_tls(server, pinned).await?;
    let server_addr = tls.get_ref().0.peer_addr().map_err(io)?;
    let mut binding = [0u8; BINDING_LEN];
    tls.get_ref()
        .1
        .export_keying_material(&mut binding, EXPORTER_LABEL, None)
        .map_err(|e| ConnectError::Io(format!("TLS exporter: {e}")))?;
    let (rd, writer) = tokio::io::split(tls);
    let mut session = Session {
        frames: FramedRead::new(rd, FrameCodec::new(MAX_SERVER_FRAME)),
        writer,
        server_name: String::new(),
        fingerprint,
        server_addr,
    };
    let public_key = key.verifying_key().to_bytes();
    session
        .send(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            user: user.to_string(),
            public_key,
        })
        .await
        .map_err(io)?;
    let refused = |code, message| ConnectError::Refused { code, message };
    let (server_name, nonce) = match read_msg(&mut session.frames).await? {
        ServerMsg::Challenge {
            server_name, nonce, ..
        } => (server_name, nonce),
        ServerMsg::Error { code, message } => return Err(refused(code, message)),
        other => {
            return Err(ConnectError::Io(format!(
                "unexpected {other:?} from server"
            )))
        }
    };
    session.server_name = server_name;
    let signature = key.sign(&login_transcript(&binding, &nonce, user, &public_key));
    session
        .send(&ClientMsg::Auth {
            signature: signature.to_bytes().to_vec(),
        })
        .await
        .map_err(io)?;
    match read_msg(&mut session.frames).await? {
        ServerMsg::LoggedIn { .. } => Ok(session),
        ServerMsg::Error { code, message } => Err(refused(code, message)),
        other => Err(ConnectError::Io(format!(
            "unexpected {other:?} from server"
        ))),
    }
}
