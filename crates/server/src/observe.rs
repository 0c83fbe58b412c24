//! Where clients' UDP sockets are seen from, as STUN tells (RFC 8489's
//! binding request, in chatdrop's own few bytes): a client behind a NAT
//! learns the public address its router gave its transfer socket, and
//! offers it to the peer it exchanges a file with.
//!
//! The server listens for UDP on its TLS port. A client registers a random
//! token over TLS (`ClientMsg::Observe`), then sends [`OBSERVE_MAGIC`] and
//! the token from the socket to observe; the server answers over that
//! client's TLS connection (`ServerMsg::Observed`) with the datagram's
//! source address. Nothing is ever sent back by UDP, so the port cannot be
//! used to reflect or amplify traffic towards anyone; a token unknown here
//! costs one lookup; answers to one token are spaced
//! [`MIN_SPACING`] apart, so a client flooding its own token only slows
//! its own answers.
//!
//! The datagram often arrives before the `Observe` it goes with (UDP does
//! not wait for TLS): the last [`EARLY_KEPT`] such datagrams are kept for
//! [`EARLY_FOR`], and a token registered within that time is answered at
//! once. Without that, every observation would cost a client's retry
//! (100 ms) more often than not. Datagrams with made-up tokens only push
//! real ones out of that short list, and their clients then retry.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chatdrop_chat::ConnId;
use chatdrop_proto::{encode_frame, ServerMsg, OBSERVE_MAGIC};

use crate::outbox::Outbox;

/// Bytes of an observation request: the magic and the token.
pub(crate) const REQUEST_LEN: usize = OBSERVE_MAGIC.len() + 16;

/// Least time between two answers to one token.
pub(crate) const MIN_SPACING: Duration = Duration::from_millis(50);

/// Datagrams kept whose token was not registered yet.
pub(crate) const EARLY_KEPT: usize = 256;

/// How long such a datagram waits for its token.
pub(crate) const EARLY_FOR: Duration = Duration::from_secs(2);

/// Tokens one connection may have at once; a new one beyond pushes out
/// its oldest. A download from several owners prepares a socket for each
/// at the same moment, and each socket needs its own observation (a NAT
/// maps each apart): with one token a connection, all but the last
/// registered went unanswered, their requests were sent without the
/// public address, and the owners behind NATs could not be reached
/// directly.
pub(crate) const TOKENS_PER_CONN: usize = 8;

/// A registered token: the connection to answer on.
struct Entry {
    conn: ConnId,
    tx: Outbox,
    last: Option<Instant>,
}

/// The tokens of connected clients, at most [`TOKENS_PER_CONN`] per
/// connection.
#[derive(Default)]
pub(crate) struct Observers {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_token: HashMap<[u8; 16], Entry>,
    /// Each connection's tokens, oldest first.
    by_conn: HashMap<ConnId, VecDeque<[u8; 16]>>,
    /// Datagrams that came before their token was registered, oldest
    /// first: (token, where from, when).
    early: VecDeque<([u8; 16], SocketAddr, Instant)>,
}

impl Observers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `conn` will be told where datagrams carrying `token` come from; its
    /// oldest token is forgotten if it had [`TOKENS_PER_CONN`]. A datagram
    /// with that token that came shortly before is answered now.
    pub(crate) fn register(&self, conn: ConnId, token: [u8; 16], tx: &Outbox) {
        self.register_at(conn, token, tx, Instant::now());
    }

    fn register_at(&self, conn: ConnId, token: [u8; 16], tx: &Outbox, now: Instant) {
        let mut inner = self.lock();
        // A token another connection registered (a copy, or a guess that
        // hit) is theirs until they go: the first comer keeps it.
        match inner.by_token.get(&token) {
            Some(taken) if taken.conn != conn => return,
            Some(_) => {}
            None => {
                let mine = inner.by_conn.entry(conn).or_default();
                mine.push_back(token);
                if mine.len() > TOKENS_PER_CONN {
                    if let Some(old) = mine.pop_front() {
                        inner.by_token.remove(&old);
                    }
                }
            }
        }
        let entry = Entry {
            conn,
            tx: tx.clone(),
            last: None,
        };
        inner.by_token.insert(token, entry);
        let early = inner
            .early
            .iter()
            .rposition(|(t, _, at)| *t == token && now < *at + EARLY_FOR);
        if let Some(i) = early.and_then(|i| inner.early.remove(i)) {
            let (_, from, _) = i;
            if let Some(entry) = inner.by_token.get_mut(&token) {
                entry.send(token, from, now);
            }
        }
    }

    /// Forgets the tokens of a connection that ended.
    pub(crate) fn forget(&self, conn: ConnId) {
        let mut inner = self.lock();
        for token in inner.by_conn.remove(&conn).unwrap_or_default() {
            inner.by_token.remove(&token);
        }
    }

    /// Answers a datagram `from`, if it is a request with a registered
    /// token whose last answer is old enough. Returns whether it answered.
    pub(crate) fn answer(&self, datagram: &[u8], from: SocketAddr, now: Instant) -> bool {
        let Some(token) = parse(datagram) else {
            return false;
        };
        let mut inner = self.lock();
        let Some(entry) = inner.by_token.get_mut(&token) else {
            if inner.early.len() == EARLY_KEPT {
                inner.early.pop_front();
            }
            inner.early.push_back((token, from, now));
            return false;
        };
        if entry.last.is_some_and(|t| now < t + MIN_SPACING) {
            return false;
        }
        entry.send(token, from, now)
    }
}

impl Entry {
    /// Tells the connection where a datagram with `token` came from.
    fn send(&mut self, token: [u8; 16], from: SocketAddr, now: Instant) -> bool {
        self.last = Some(now);
        // An IPv4 client of a dual-stack socket is seen as `::ffff:a.b.c.d`.
        let addr = SocketAddr::new(from.ip().to_canonical(), from.port());
        let msg = ServerMsg::Observed { token, addr };
        match encode_frame(&msg) {
            // A full queue drops the answer: the client asks again.
            Ok(frame) => self.tx.try_send(frame).is_ok(),
            Err(_) => false,
        }
    }
}

/// Whether `datagram` is an observation request.
pub(crate) fn is_request(datagram: &[u8]) -> bool {
    parse(datagram).is_some()
}

/// The token of an observation request, if `datagram` is one.
fn parse(datagram: &[u8]) -> Option<[u8; 16]> {
    if datagram.len() != REQUEST_LEN || !datagram.starts_with(OBSERVE_MAGIC) {
        return None;
    }
    datagram[OBSERVE_MAGIC.len()..].try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::outbox;
    use chatdrop_proto::decode;

    fn request(token: [u8; 16]) -> Vec<u8> {
        let mut d = OBSERVE_MAGIC.to_vec();
        d.extend_from_slice(&token);
        d
    }

    #[tokio::test]
    async fn a_registered_token_is_answered_on_its_connection_only() {
        let obs = Observers::default();
        let (tx, mut rx) = outbox(16, 1 << 20);
        let (other_tx, mut other_rx) = outbox(16, 1 << 20);
        obs.register(ConnId(1), [7; 16], &tx);
        obs.register(ConnId(2), [8; 16], &other_tx);
        let from: SocketAddr = "[::ffff:203.0.113.5]:40000".parse().unwrap();
        let t0 = Instant::now();
        assert!(obs.answer(&request([7; 16]), from, t0));
        let frame = rx.try_recv().expect("an answer on connection 1");
        let msg: ServerMsg = decode(&frame[4..]).unwrap();
        let want: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        assert_eq!(
            msg,
            ServerMsg::Observed {
                token: [7; 16],
                addr: want
            }
        );
        assert!(other_rx.try_recv().is_none(), "nothing on connection 2");
        // Spaced: a flood of its own token slows only its answers.
        assert!(!obs.answer(&request([7; 16]), from, t0 + MIN_SPACING / 2));
        assert!(obs.answer(&request([7; 16]), from, t0 + MIN_SPACING));
        // Unknown tokens, other lengths, other magic: no answer.
        assert!(!obs.answer(&request([9; 16]), from, t0));
        assert!(!obs.answer(&request([8; 16])[1..], from, t0));
        let mut long = request([8; 16]);
        long.push(0);
        assert!(!obs.answer(&long, from, t0));
        // A connection that ended is forgotten.
        obs.register(ConnId(1), [6; 16], &tx);
        obs.forget(ConnId(2));
        assert!(!obs.answer(&request([8; 16]), from, t0));
        // A token another connection holds stays theirs.
        obs.register(ConnId(3), [6; 16], &other_tx);
        assert!(obs.answer(&request([6; 16]), from, t0 + MIN_SPACING * 4));
        assert!(rx.try_recv().is_some(), "connection 1 keeps its token");
    }

    /// Sockets prepared at once for several owners: every one of them is
    /// told where it is seen from (checked to fail with one token a
    /// connection: all but the last went unanswered). Beyond
    /// [`TOKENS_PER_CONN`] the oldest token goes.
    #[tokio::test]
    async fn a_connection_observes_several_sockets_at_once() {
        let obs = Observers::default();
        let (tx, mut rx) = outbox(64, 1 << 20);
        let t0 = Instant::now();
        let tokens: Vec<[u8; 16]> = (0..=TOKENS_PER_CONN as u8).map(|i| [i + 1; 16]).collect();
        for token in &tokens[..3] {
            obs.register(ConnId(1), *token, &tx);
        }
        for (i, token) in tokens[..3].iter().enumerate() {
            let from = SocketAddr::from(([198, 51, 100, 4], 40_000 + i as u16));
            assert!(obs.answer(&request(*token), from, t0), "socket {i}");
            let frame = rx.try_recv().expect("an answer");
            let msg: ServerMsg = decode(&frame[4..]).unwrap();
            let want = ServerMsg::Observed {
                token: *token,
                addr: from,
            };
            assert_eq!(msg, want);
        }
        for token in &tokens[3..] {
            obs.register(ConnId(1), *token, &tx);
        }
        let from = SocketAddr::from(([198, 51, 100, 4], 40_000));
        let later = t0 + MIN_SPACING;
        assert!(!obs.answer(&request(tokens[0]), from, later), "pushed out");
        assert!(obs.answer(&request(tokens[1]), from, later));
        assert!(obs.answer(&request(tokens[TOKENS_PER_CONN]), from, later));
        obs.forget(ConnId(1));
        assert!(!obs.answer(&request(tokens[1]), from, later + MIN_SPACING));
        let inner = obs.lock();
        assert!(inner.by_token.is_empty() && inner.by_conn.is_empty());
    }

    #[tokio::test]
    async fn a_datagram_ahead_of_its_token_is_answered_when_the_token_comes() {
        // Checked to fail without the early datagrams kept (no answer
        // until the client asks again).
        let obs = Observers::default();
        let (tx, mut rx) = outbox(16, 1 << 20);
        let from: SocketAddr = "198.51.100.4:40000".parse().unwrap();
        let t0 = Instant::now();
        assert!(
            !obs.answer(&request([5; 16]), from, t0),
            "not registered yet"
        );
        obs.register_at(ConnId(1), [5; 16], &tx, t0 + EARLY_FOR / 2);
        let frame = rx.try_recv().expect("answered at registration");
        let msg: ServerMsg = decode(&frame[4..]).unwrap();
        let want = ServerMsg::Observed {
            token: [5; 16],
            addr: from,
        };
        assert_eq!(msg, want);
        // Too late, or pushed out by made-up tokens: not answered.
        assert!(!obs.answer(&request([6; 16]), from, t0));
        obs.register_at(ConnId(2), [6; 16], &tx, t0 + EARLY_FOR);
        assert!(rx.try_recv().is_none(), "kept only for a while");
        assert!(!obs.answer(&request([7; 16]), from, t0));
        for i in 0..EARLY_KEPT {
            let mut made_up = [0u8; 16];
            made_up[..8].copy_from_slice(&(i as u64).to_le_bytes());
            made_up[15] = 1;
            obs.answer(&request(made_up), from, t0);
        }
        obs.register_at(ConnId(3), [7; 16], &tx, t0);
        assert!(rx.try_recv().is_none(), "at most {EARLY_KEPT} kept");
    }
}
