//! Direct mode's key exchange: fresh session keys for every run, agreed
//! by the receiver and the sender with the ticket's secret as the proof.
//!
//! A ticket holds a 32-byte secret. Keys taken straight from it would be
//! the same in every session of that ticket, and since every session
//! numbers its datagrams from zero, two runs (a second `recv`, or two
//! holders of the ticket) would seal different datagrams under one key
//! and nonce, which breaks AES-GCM. So each run starts with a Noise
//! handshake, `Noise_NNpsk0_25519_AESGCM_SHA256` (the `snow` crate): both
//! ends contribute a fresh X25519 key, and the ticket's secret is the
//! pre-shared key, so only a holder of the ticket can take part. The
//! ticket itself is the prologue: both ends must agree on every field but
//! the address.
//! The handshake's two keys then seal the session's datagrams
//! ([`SessionKeys::from_keys`]), one per direction.
//!
//! ```text
//! Hello:      0xd1 | Noise message 1 (e, 48 bytes)    receiver -> sender, every 250 ms until answered
//! HelloReply: 0xd2 | Noise message 2 (e, ee, 48 bytes) sender -> receiver, once per Hello
//! ```
//!
//! Both first bytes differ from the session envelope's version, so the
//! sender tells a `Hello` from a sealed datagram by its first byte. A
//! reply is exactly as long as the `Hello` it answers: it cannot be used
//! to amplify a flood at a forged address. The sender answers a repeated
//! `Hello` (its reply was lost) with the same reply; until a receiver has
//! started the session it takes a new `Hello` as a new run (the receiver
//! was restarted), and after that it answers only the run it serves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use snow::params::NoiseParams;
use tokio::net::UdpSocket;

use crate::crypto::{Role, SessionKeys};
use crate::ticket::Ticket;
use crate::TransferError;

/// First byte of a `Hello`.
pub(crate) const HELLO: u8 = 0xd1;
/// First byte of a `HelloReply`.
const HELLO_REPLY: u8 = 0xd2;
/// The one byte a sender sends to a receiver's candidates before any
/// `Hello` came (a code's transfer): it opens this side's NAT for the
/// receiver's `Hello`s, as a `Punch` does once there are keys to seal one.
pub(crate) const BARE_PUNCH: u8 = 0xd3;
/// Bytes of each handshake datagram: the tag, an X25519 key, an AEAD tag
/// over the empty payload.
const HANDSHAKE_LEN: usize = 1 + 32 + 16;
/// How often the receiver repeats its `Hello` until the reply comes.
const HELLO_REPEAT: Duration = Duration::from_millis(250);
const PATTERN: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";

fn params() -> NoiseParams {
    // A constant pattern that snow supports with the features enabled.
    PATTERN.parse().expect("a valid Noise pattern")
}

/// What both ends must agree on: the whole ticket but its address (the
/// receiver may reach the sender at another one: a forwarded port, a
/// relay).
fn prologue(ticket: &Ticket) -> Vec<u8> {
    let mut p = b"chatdrop direct v5\0".to_vec();
    let unaddressed = Ticket {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        ..ticket.clone()
    };
    p.extend_from_slice(unaddressed.encode().as_bytes());
    p
}

fn handshake_error(e: snow::Error) -> TransferError {
    TransferError::Invalid(format!("the direct-mode key exchange failed: {e}"))
}

fn builder<'a>(ticket: &'a Ticket, prologue: &'a [u8]) -> Result<snow::Builder<'a>, TransferError> {
    snow::Builder::new(params())
        .psk(0, &ticket.secret)
        .and_then(|b| b.prologue(prologue))
        .map_err(handshake_error)
}

/// The session keys a finished handshake gives `role`.
fn keys(hs: &mut snow::HandshakeState, id: [u8; 8], role: Role) -> SessionKeys {
    // The first key seals what the initiator (the receiver) sends.
    let (to_sender, to_receiver) = hs.dangerously_get_raw_split();
    SessionKeys::from_keys(id, &to_receiver, &to_sender, role)
}

/// The sender's half of the handshake.
pub(crate) struct Responder {
    ticket: Ticket,
    prologue: Vec<u8>,
    /// The run answered last: its `Hello` and the reply.
    answered: Option<([u8; HANDSHAKE_LEN], Vec<u8>)>,
}

/// What the sender does with a `Hello`.
pub(crate) enum Answer {
    /// Send this reply (again) to where the `Hello` came from.
    Repeat(Vec<u8>),
    /// A new run: send this reply, and use these keys from now on.
    New(Vec<u8>, Box<SessionKeys>),
}

impl Responder {
    /// The sender's side for `ticket`.
    pub(crate) fn new(ticket: &Ticket) -> Responder {
        Responder {
            prologue: prologue(ticket),
            ticket: ticket.clone(),
            answered: None,
        }
    }

    /// Takes a datagram starting with [`HELLO`]. A new run is taken only
    /// `if fresh_allowed` (no receiver has started the session yet). A
    /// `Hello` that does not prove the ticket's secret gets nothing.
    pub(crate) fn on_hello(&mut self, datagram: &[u8], fresh_allowed: bool) -> Option<Answer> {
        let hello: [u8; HANDSHAKE_LEN] = datagram.try_into().ok()?;
        if let Some((last, reply)) = &self.answered {
            if *last == hello {
                return Some(Answer::Repeat(reply.clone()));
            }
        }
        if !fresh_allowed {
            return None;
        }
        let mut hs = builder(&self.ticket, &self.prologue)
            .and_then(|b| b.build_responder().map_err(handshake_error))
            .ok()?;
        let mut payload = [0u8; HANDSHAKE_LEN];
        hs.read_message(&hello[1..], &mut payload).ok()?;
        let mut reply = vec![0u8; HANDSHAKE_LEN];
        reply[0] = HELLO_REPLY;
        let len = hs.write_message(&[], &mut reply[1..]).ok()?;
        reply.truncate(1 + len);
        let keys = keys(&mut hs, self.ticket.session, Role::Sender);
        self.answered = Some((hello, reply.clone()));
        Some(Answer::New(reply, Box::new(keys)))
    }
}

/// The receiver's half: sends `Hello` to the ticket's address from
/// `socket` until the sender's reply comes, and returns the session's
/// keys. Gives up after `timeout` without a reply.
pub async fn direct_keys(
    socket: &UdpSocket,
    ticket: &Ticket,
    timeout: Duration,
) -> Result<SessionKeys, TransferError> {
    let at = [ticket.addr];
    direct_keys_at(socket, ticket, &at, None, timeout)
        .await
        .map(|(keys, _)| keys)
}

/// Like [`direct_keys`], with the sender at any of `at` (a code's
/// candidates), or of those `more` brings meanwhile (a relay's): `Hello`
/// goes to each, and the first to answer is the sender's address,
/// returned with the keys.
pub async fn direct_keys_at(
    socket: &UdpSocket,
    ticket: &Ticket,
    at: &[SocketAddr],
    mut more: Option<&mut tokio::sync::mpsc::Receiver<SocketAddr>>,
    timeout: Duration,
) -> Result<(SessionKeys, SocketAddr), TransferError> {
    let mut at: Vec<SocketAddr> = at
        .iter()
        .map(|a| crate::socket::for_socket(socket, *a))
        .collect();
    let prologue = prologue(ticket);
    let mut hs = builder(ticket, &prologue)?
        .build_initiator()
        .map_err(handshake_error)?;
    let mut hello = vec![0u8; HANDSHAKE_LEN];
    hello[0] = HELLO;
    let len = hs
        .write_message(&[], &mut hello[1..])
        .map_err(handshake_error)?;
    hello.truncate(1 + len);
    let give_up = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= give_up {
            let tried: Vec<String> = at.iter().map(|a| a.to_string()).collect();
            let why = format!(
                "no answer from the sender at {} for {timeout:?}",
                tried.join(" or ")
            );
            return Err(TransferError::PeerSilent(why));
        }
        while let Some(addr) = more.as_mut().and_then(|rx| rx.try_recv().ok()) {
            at.insert(0, crate::socket::for_socket(socket, addr));
        }
        let mut sent = false;
        for to in &at {
            // An address this host cannot send to is just not the path.
            sent |= socket.send_to(&hello, to).await.is_ok();
        }
        // With addresses still to come (a relay's), nothing sent yet is
        // no reason to stop waiting.
        if !sent && more.is_none() {
            let why = "no address of the sender can be sent to from here";
            return Err(TransferError::PeerSilent(why.into()));
        }
        let next = (now + HELLO_REPEAT).min(give_up);
        while let Ok(got) = tokio::time::timeout_at(next.into(), socket.recv_from(&mut buf)).await {
            let (n, from): (usize, SocketAddr) =
                got.map_err(TransferError::io("receiving the key exchange"))?;
            let reply = &buf[..n];
            if !at.contains(&from) || reply.first() != Some(&HELLO_REPLY) {
                continue;
            }
            let mut payload = [0u8; HANDSHAKE_LEN];
            // A reply that does not read is someone else's: keep waiting
            // for the sender's.
            if hs.read_message(&reply[1..], &mut payload).is_ok() {
                return Ok((keys(&mut hs, ticket.session, Role::Receiver), from));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(secret: [u8; 32]) -> Ticket {
        Ticket {
            addr: "127.0.0.1:4000".parse().unwrap(),
            session: [1; 8],
            secret,
            name: "a.bin".into(),
            size: 10,
            blake3: [2; 32],
            selective_repeat: true,
            window: 64,
            mss: 1200,
        }
    }

    /// A receiver's `Hello` and its handshake, for `t`.
    fn hello(t: &Ticket) -> (Vec<u8>, snow::HandshakeState) {
        let p = prologue(t);
        let mut hs = builder(t, &p).unwrap().build_initiator().unwrap();
        let mut m = vec![HELLO; HANDSHAKE_LEN];
        let len = hs.write_message(&[], &mut m[1..]).unwrap();
        assert_eq!(1 + len, HANDSHAKE_LEN);
        (m, hs)
    }

    fn sealed(k: &mut SessionKeys, msg: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; crate::crypto::HEADER];
        buf.extend_from_slice(msg);
        k.seal(&mut buf);
        buf
    }

    #[test]
    fn two_runs_of_one_ticket_seal_under_different_keys() {
        // The finding: keys were a function of the ticket alone, so two
        // runs sealed their first datagrams under one key and nonce, and
        // the XOR of the ciphertexts was the XOR of the plaintexts.
        // Checked to fail with keys derived from the ticket's secret only.
        let t = ticket([9; 32]);
        let mut sender = Responder::new(&t);
        let mut ciphertexts = Vec::new();
        for _ in 0..2 {
            let (m, mut hs) = hello(&t);
            let Some(Answer::New(reply, mut sender_keys)) = sender.on_hello(&m, true) else {
                panic!("a fresh Hello starts a run");
            };
            assert_eq!(reply.len(), m.len(), "no amplification");
            let mut payload = [0u8; 64];
            hs.read_message(&reply[1..], &mut payload).unwrap();
            let mut mine = keys(&mut hs, t.session, Role::Receiver);
            let d = sealed(&mut mine, b"the same first frame");
            assert_eq!(
                sender_keys.open(&mut d.clone()).unwrap(),
                b"the same first frame"
            );
            ciphertexts.push(d);
        }
        assert_ne!(ciphertexts[0][5..], ciphertexts[1][5..]);
    }

    #[test]
    fn a_hello_without_the_ticket_secret_gets_nothing() {
        // Someone without the secret (another ticket's) gets no reply and
        // no keys; a damaged Hello neither. A repeated Hello gets the same
        // reply, and once the session has started a new one gets nothing.
        let t = ticket([9; 32]);
        let mut sender = Responder::new(&t);
        let (wrong, _) = hello(&ticket([8; 32]));
        assert!(sender.on_hello(&wrong, true).is_none());
        let (m, _) = hello(&t);
        let mut damaged = m.clone();
        damaged[HANDSHAKE_LEN - 1] ^= 1;
        assert!(sender.on_hello(&damaged, true).is_none());
        assert!(sender.on_hello(&m[..20], true).is_none());
        let Some(Answer::New(reply, _)) = sender.on_hello(&m, true) else {
            panic!("the right Hello starts a run");
        };
        match sender.on_hello(&m, false) {
            Some(Answer::Repeat(again)) => assert_eq!(again, reply),
            _ => panic!("a repeated Hello gets the same reply"),
        }
        let (other, _) = hello(&t);
        assert!(sender.on_hello(&other, false).is_none());
    }
}
