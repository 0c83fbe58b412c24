//! A client written frame by frame over TLS, for saying what a `chatdrop
//! client` never would: forged proofs, malformed frames, nothing at all.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;

use chatdrop_proto::auth::{BINDING_LEN, EXPORTER_LABEL};
use chatdrop_proto::limits::PROTOCOL_VERSION;
use chatdrop_proto::{decode, encode_frame, ClientMsg, ServerMsg};

use super::WAIT;

/// A TLS connection to a server, driven by hand.
pub type RawTls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TCP connection to `addr` from the local address `from` (any address
/// of 127.0.0.0/8 works on loopback, so one test can be many hosts).
pub fn tcp_from(addr: &str, from: IpAddr) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let tcp = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        socket.connect(addr).await.unwrap()
    });
    let tcp = tcp.into_std().unwrap();
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp
}

/// Opens a TLS connection to the server that accepts its certificate.
pub fn raw_tls(addr: &str) -> RawTls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tls_over(tcp)
}

/// TLS over an open TCP connection (the handshake happens on first use).
pub fn tls_over(tcp: TcpStream) -> RawTls {
    let (verifier, _) = chatdrop_client::PinVerifier::new(None);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "chatdrop".try_into().unwrap()).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Reads until the server closes; returns what it sent.
pub fn read_to_close(s: &mut RawTls) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends one message as a frame.
pub fn send_frame(s: &mut RawTls, msg: &ClientMsg) {
    s.write_all(&encode_frame(msg).unwrap()).unwrap();
    s.flush().unwrap();
}

/// Reads one frame and decodes it.
pub fn read_frame(s: &mut RawTls) -> ServerMsg {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload).unwrap();
    decode(&payload).unwrap()
}

/// Logs in over a raw connection as `user` claiming the key `public_key`,
/// and answers the challenge with `prove(channel binding, nonce)`. Returns
/// the server's answer to the proof.
pub fn raw_login(
    addr: &str,
    user: &str,
    public_key: [u8; 32],
    prove: impl Fn(&[u8; 32], &[u8; 32]) -> Vec<u8>,
) -> ServerMsg {
    let mut s = raw_tls(addr);
    s.conn.complete_io(&mut s.sock).unwrap();
    let mut binding = [0u8; BINDING_LEN];
    s.conn
        .export_keying_material(&mut binding, EXPORTER_LABEL, None)
        .unwrap();
    send_frame(
        &mut s,
        &ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            user: user.to_string(),
            public_key,
        },
    );
    let ServerMsg::Challenge { nonce, .. } = read_frame(&mut s) else {
        panic!("no challenge");
    };
    let signature = prove(&binding, &nonce);
    send_frame(&mut s, &ClientMsg::Auth { signature });
    read_frame(&mut s)
}
