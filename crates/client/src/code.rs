//! Short codes for `chatdrop send --via SERVER` and `chatdrop recv --via
//! SERVER`: a code such as `7-sunlit-harbor` that can be read aloud, as
//! croc and magic-wormhole have them.
//!
//! The number (the nameplate) is the server's: it pairs the two sides
//! (the server's `mailbox.rs`). The two words are the sender's own, 16
//! bits from [`WORDS`], and never reach the server. The whole code is the
//! password of a SPAKE2 exchange (the `spake2` crate) over the mailbox:
//! both sides get the same key only if they typed the same code, and a
//! guess gets one try (the server never pairs a nameplate twice), so a
//! stranger guessing wins with odds of 1 in 65,536 and is seen failing.
//! The server passes the exchange on and learns nothing it could use.
//!
//! With the key, each side seals one message to the other
//! (ChaCha20-Poly1305 under a key of its direction, from HKDF-SHA256):
//! the sender an [`Invite`] (the direct-mode ticket, whose secret then
//! authenticates the transfer's own key exchange, and its candidate
//! addresses), the receiver an [`Accept`] (its candidate addresses). A
//! wrong code fails to open the invite; the receiver then leaves, and the
//! sender is told that the code was tried and is spent.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use chatdrop_proto::limits::{PING_INTERVAL_SECS, PROTOCOL_VERSION};
use chatdrop_proto::{ClientMsg, MailboxEvent, MailboxMsg, ServerMsg, OBSERVE_MAGIC};
use chatdrop_transfer::Ticket;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use serde::{Deserialize, Serialize};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::paths::Outgoing;
use crate::relay::{Hook, RelayPlace, RelayedAt, Relays};
use crate::session::{open_mailbox, Session};

/// The words of the codes: 256, so each carries 8 bits.
pub const WORDS: [&str; 256] = [
    "acorn", "amber", "anchor", "apple", "arrow", "aspen", "atlas", "autumn", "badge", "bamboo",
    "banjo", "barley", "basil", "basin", "beacon", "beetle", "berry", "birch", "biscuit", "bison",
    "blossom", "bonfire", "bramble", "breeze", "brook", "bucket", "butter", "button", "cabin",
    "cactus", "camel", "candle", "canoe", "canyon", "carbon", "cargo", "carrot", "castle", "cedar",
    "cello", "chalk", "cherry", "chestnut", "cider", "cinder", "citrus", "cliff", "cloud",
    "clover", "cobalt", "cobble", "cobra", "comet", "copper", "coral", "cotton", "cougar", "crane",
    "crayon", "cricket", "crystal", "dahlia", "daisy", "delta", "denim", "desert", "dolphin",
    "domino", "dove", "dragon", "drum", "dune", "eagle", "echo", "ember", "emerald", "fable",
    "falcon", "feather", "fern", "ferry", "fiddle", "fig", "flint", "forest", "fossil", "fox",
    "galaxy", "garden", "garlic", "gecko", "ginger", "glacier", "glade", "goblet", "granite",
    "grape", "gravel", "grove", "harbor", "harvest", "hazel", "heath", "heron", "hickory", "hill",
    "hollow", "honey", "horizon", "husky", "ibis", "iceberg", "igloo", "indigo", "iris", "island",
    "ivory", "jade", "jasmine", "jelly", "jigsaw", "juniper", "kayak", "kernel", "kettle", "kiwi",
    "koala", "ladder", "lagoon", "lake", "lantern", "lark", "lemon", "lilac", "linen", "lizard",
    "lotus", "lumber", "lynx", "magnet", "mango", "maple", "marble", "marsh", "meadow", "melon",
    "mesa", "meteor", "mint", "mitten", "mosaic", "moss", "moth", "muffin", "nectar", "needle",
    "nest", "newt", "nickel", "nutmeg", "oasis", "ocean", "olive", "onyx", "orbit", "orchid",
    "otter", "owl", "paddle", "panda", "paper", "parrot", "peach", "pebble", "pepper", "pilot",
    "pine", "planet", "plum", "pocket", "pollen", "pond", "poppy", "prairie", "pretzel", "puffin",
    "pumpkin", "quarry", "quartz", "quill", "rabbit", "radish", "rainbow", "raven", "reef",
    "ribbon", "ridge", "river", "robin", "rocket", "saddle", "saffron", "sage", "salmon",
    "sapphire", "satin", "sequoia", "shadow", "shell", "sierra", "silver", "spark", "sparrow",
    "spruce", "squash", "starling", "stone", "summit", "sunlit", "swan", "tango", "tapir",
    "teapot", "thistle", "thunder", "thyme", "tiger", "timber", "tomato", "topaz", "toucan",
    "trail", "tulip", "tundra", "turnip", "valley", "velvet", "vine", "violet", "viper", "voyage",
    "walnut", "walrus", "wander", "willow", "window", "winter", "wizard", "wombat", "wren", "yak",
    "yarrow", "yew", "zebra", "zephyr", "zinnia",
];

/// What the sender tells the receiver, sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invite {
    /// The direct-mode ticket of the file.
    pub ticket: Ticket,
    /// Where the sender's socket may be reached.
    pub candidates: Vec<SocketAddr>,
    /// Which of them the server observed, if one did (a NAT's mapping,
    /// which only punching opens).
    pub observed: Option<SocketAddr>,
}

/// What the receiver answers, sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accept {
    /// Where the receiver's socket may be reached.
    pub candidates: Vec<SocketAddr>,
}

/// The sender's last message: it is punching (its content is not
/// sealed: a false one only costs the receiver a failed first try).
const GO: &[u8] = b"go";

/// Candidate addresses a side may give.
const MAX_CANDIDATES: usize = chatdrop_proto::limits::MAX_CANDIDATES;

/// Where `socket` can be reached: the address the server at `server`
/// observed (`observed`), then the host's own at the socket's port; and
/// the observed address again when it is none of the host's (a NAT's
/// mapping).
pub fn candidates(
    socket: &UdpSocket,
    server: SocketAddr,
    observed: Option<SocketAddr>,
) -> (Vec<SocketAddr>, Option<SocketAddr>) {
    let local = socket.local_addr().ok();
    let (port, v6) = (
        local.map_or(0, |a| a.port()),
        local.is_some_and(|a| a.is_ipv6()),
    );
    let hosts = crate::paths::host_candidates(port, v6, server.ip().is_loopback());
    let nat = observed.filter(|o| !hosts.contains(o));
    (crate::paths::candidates(&hosts, observed), nat)
}

/// A code for `nameplate`, with two words drawn at random.
pub fn new_code(nameplate: u32) -> String {
    let [a, b]: [u8; 2] = rand::random();
    format!("{nameplate}-{}-{}", WORDS[a as usize], WORDS[b as usize])
}

/// The nameplate of a code as typed and the code as both sides spell it
/// (trimmed, lower case, words joined by `-` whatever separated them).
pub fn parse_code(typed: &str) -> Result<(u32, String), String> {
    let parts: Vec<String> = typed
        .trim()
        .split(|c: char| c == '-' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::to_lowercase)
        .collect();
    let bad = || format!("{typed:?} is not a code: it looks like 7-sunlit-harbor");
    let [number, first, second] = &parts[..] else {
        return Err(bad());
    };
    let nameplate: u32 = number.parse().map_err(|_| bad())?;
    for word in [first, second] {
        if !WORDS.contains(&word.as_str()) {
            return Err(format!(
                "{word:?} is not one of the code words; check the code"
            ));
        }
    }
    Ok((nameplate, format!("{nameplate}-{first}-{second}")))
}

/// A mailbox connection to a server.
pub struct Mailbox {
    session: Session,
    /// Mailbox events read while waiting for something else.
    pending: VecDeque<MailboxEvent>,
}

impl Mailbox {
    /// Opens a mailbox at `server`: the connection and the nameplate.
    pub async fn open(server: &str) -> Result<(Mailbox, u32), String> {
        let mut mb = Mailbox::connect(server).await?;
        mb.say(MailboxMsg::Open {
            version: PROTOCOL_VERSION,
        })
        .await?;
        match mb.next().await? {
            MailboxEvent::Opened { nameplate } => Ok((mb, nameplate)),
            other => Err(unexpected(&other)),
        }
    }

    /// Joins `nameplate` at `server`.
    pub async fn join(server: &str, nameplate: u32) -> Result<Mailbox, String> {
        let mut mb = Mailbox::connect(server).await?;
        mb.say(MailboxMsg::Join {
            version: PROTOCOL_VERSION,
            nameplate,
        })
        .await?;
        match mb.next().await? {
            MailboxEvent::Joined => Ok(mb),
            other => Err(unexpected(&other)),
        }
    }

    async fn connect(server: &str) -> Result<Mailbox, String> {
        // Any certificate: the code, not the server, authenticates what
        // the two sides exchange.
        let session = open_mailbox(server).await.map_err(|e| e.to_string())?;
        Ok(Mailbox {
            session,
            pending: VecDeque::new(),
        })
    }

    /// The server's address (its UDP port has the same number).
    pub fn server_addr(&self) -> SocketAddr {
        self.session.server_addr
    }

    async fn say(&mut self, msg: MailboxMsg) -> Result<(), String> {
        let msg = ClientMsg::Mailbox(msg);
        self.session
            .send(&msg)
            .await
            .map_err(|e| format!("writing to the server: {e}"))
    }

    /// The next server message, pinging while none comes.
    async fn read(&mut self) -> Result<ServerMsg, String> {
        loop {
            let ping = Duration::from_secs(PING_INTERVAL_SECS);
            match tokio::time::timeout(ping, self.session.next()).await {
                Ok(Some(Ok(msg))) => return Ok(msg),
                Ok(Some(Err(e))) => return Err(format!("reading from the server: {e}")),
                Ok(None) => return Err("the server closed the connection".into()),
                Err(_) => {
                    let _ = self.session.send(&ClientMsg::Ping).await;
                }
            }
        }
    }

    /// The next mailbox event; `Closed` is an error with its reason.
    async fn next(&mut self) -> Result<MailboxEvent, String> {
        let event = match self.pending.pop_front() {
            Some(e) => e,
            None => loop {
                match self.read().await? {
                    ServerMsg::Mailbox(e) => break e,
                    ServerMsg::Error { message, .. } => return Err(message),
                    _ => {}
                }
            },
        };
        match event {
            MailboxEvent::Closed { why } => Err(why),
            e => Ok(e),
        }
    }

    /// Waits for the receiver to join.
    pub async fn joined(&mut self) -> Result<(), String> {
        match self.next().await? {
            MailboxEvent::Joined => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn message(&mut self) -> Result<Vec<u8>, String> {
        match self.next().await? {
            MailboxEvent::Message { body } => Ok(body),
            other => Err(unexpected(&other)),
        }
    }

    /// Where the server sees `socket`: asked over this connection, sent
    /// from the socket to the server's UDP port; `None` when no answer
    /// came within about 600 ms.
    pub async fn observe(&mut self, socket: &UdpSocket) -> Option<SocketAddr> {
        let token: [u8; 16] = rand::random();
        self.session
            .send(&ClientMsg::Observe { token })
            .await
            .ok()?;
        let mut request = OBSERVE_MAGIC.to_vec();
        request.extend_from_slice(&token);
        let to = chatdrop_transfer::for_socket(socket, self.server_addr());
        for _ in 0..6 {
            let _ = socket.send_to(&request, to).await;
            let wait = tokio::time::sleep(Duration::from_millis(100));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    msg = self.session.next() => match msg {
                        Some(Ok(ServerMsg::Observed { token: t, addr })) if t == token => {
                            return Some(addr);
                        }
                        Some(Ok(ServerMsg::Mailbox(e))) => self.pending.push_back(e),
                        Some(Ok(_)) => {}
                        _ => return None,
                    },
                }
            }
        }
        None
    }

    /// The sender's side of the exchange, once the receiver joined: the
    /// PAKE with `code`, then `invite` out and the receiver's [`Accept`]
    /// in.
    pub async fn send_invite(&mut self, code: &str, invite: &Invite) -> Result<Accept, String> {
        let key = self.pake(code).await?;
        let body = postcard::to_stdvec(invite).map_err(|e| e.to_string())?;
        self.say(MailboxMsg::Send {
            body: seal(&key, Direction::ToReceiver, code, body)?,
        })
        .await?;
        let sealed = match self.message().await {
            Ok(m) => m,
            Err(why) if why.contains("left") => {
                return Err(
                    "the receiver left without accepting: the code was wrong, or \
                     someone else tried it; this code is spent, start again for a new one"
                        .into(),
                )
            }
            Err(why) => return Err(why),
        };
        let body = open(&key, Direction::ToSender, code, sealed)
            .ok_or("the answer did not come from the holder of the code; this code is spent")?;
        let accept: Accept = postcard::from_bytes(&body).map_err(|_| "a damaged answer")?;
        let mut accept = accept;
        accept.candidates.truncate(MAX_CANDIDATES);
        Ok(accept)
    }

    /// The receiver's side: the PAKE with `code`, the sender's [`Invite`]
    /// in, and `accept` out.
    pub async fn take_invite(&mut self, code: &str, accept: &Accept) -> Result<Invite, String> {
        let key = self.pake(code).await?;
        let sealed = self.message().await?;
        let body = open(&key, Direction::ToReceiver, code, sealed).ok_or(
            "the code is wrong (or it was someone else's): nothing was received, and this \
             code is spent; ask the sender for a new one",
        )?;
        let mut invite: Invite = postcard::from_bytes(&body).map_err(|_| "a damaged invitation")?;
        invite.ticket.check().map_err(|e| e.to_string())?;
        invite.candidates.truncate(MAX_CANDIDATES);
        let body = postcard::to_stdvec(accept).map_err(|e| e.to_string())?;
        self.say(MailboxMsg::Send {
            body: seal(&key, Direction::ToSender, code, body)?,
        })
        .await?;
        Ok(invite)
    }

    /// Keeps the mailbox open for the transfer, driven by a task of its
    /// own: it carries the relay's messages (`Relay`, `Tunnel`, ...) if the
    /// two sides find no direct path.
    pub fn into_relaying(self) -> Relaying {
        let (outgoing, rx) = mpsc::channel(256);
        let relays = Relays::default();
        let server = self.server_addr();
        let drive = drive(self.session, rx, relays.clone(), outgoing.clone(), server);
        Relaying {
            relays,
            outgoing,
            task: tokio::spawn(drive),
        }
    }

    /// The receiver: waits for the sender's [`Relaying::go`].
    pub async fn wait_go(&mut self) -> Result<(), String> {
        self.message().await.map(|_| ())
    }

    /// Both sides: SPAKE2 with the code as the password.
    async fn pake(&mut self, code: &str) -> Result<Vec<u8>, String> {
        let (state, outbound) = Spake2::<Ed25519Group>::start_symmetric(
            &Password::new(code.as_bytes()),
            &Identity::new(b"chatdrop code v1"),
        );
        self.say(MailboxMsg::Send { body: outbound }).await?;
        let inbound = self.message().await?;
        state
            .finish(&inbound)
            .map_err(|e| format!("the key exchange failed: {e:?}"))
    }
}

/// A mailbox kept open for a transfer ([`Mailbox::into_relaying`]).
pub struct Relaying {
    relays: Relays,
    outgoing: Outgoing,
    task: tokio::task::JoinHandle<()>,
}

/// What a transfer learns of its relay ([`Relaying::watch`]).
pub struct Watch {
    /// The relay's address, once bound, for the session to try.
    pub more: mpsc::Receiver<SocketAddr>,
    /// Why the server will not relay, if it will not.
    pub refused: oneshot::Receiver<String>,
    at: RelayedAt,
}

impl Watch {
    /// `relay` or `tcp` when the session opened at `addr` through the
    /// relay.
    pub fn path(&self, addr: SocketAddr) -> Option<&'static str> {
        let at = *self.at.lock().unwrap_or_else(|p| p.into_inner());
        let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        at.filter(|(relay, _)| canonical(*relay) == canonical(addr))
            .map(|(_, leg)| leg.path_name())
    }
}

impl Relaying {
    /// The transfer `session` on `socket` may be relayed; `udp`: the
    /// socket's UDP reaches the server.
    pub fn watch(&self, session: [u8; 8], socket: Arc<UdpSocket>, udp: bool) -> Watch {
        let (more_tx, more) = mpsc::channel(4);
        let (refused_tx, refused) = oneshot::channel();
        let at = RelayedAt::default();
        let hook = Hook {
            socket,
            udp,
            more: Some(more_tx),
            refused: Some(refused_tx),
            at: at.clone(),
            allow: None,
        };
        self.relays.add(session, hook);
        Watch { more, refused, at }
    }

    /// Asks the server to relay `session`.
    pub async fn ask(&self, session: [u8; 8]) {
        let _ = self.outgoing.send(ClientMsg::Relay { session }).await;
    }

    /// The sender, serving, once its first punches left: the receiver may
    /// begin. Its key exchange must not reach the sender's NAT before those
    /// punches have (a Linux NAT would then give the punches another port,
    /// and the exchange would go to the wrong one).
    pub async fn go(&self) {
        let msg = ClientMsg::Mailbox(MailboxMsg::Send { body: GO.to_vec() });
        let _ = self.outgoing.send(msg).await;
    }

    /// The transfer `session` is over.
    pub fn end(&self, session: [u8; 8]) {
        self.relays.end(session, &self.outgoing);
    }
}

impl Drop for Relaying {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Drives a mailbox kept open: what is sent goes out, the relay's messages
/// come in, and a ping goes every few seconds.
async fn drive(
    mut session: Session,
    mut rx: mpsc::Receiver<ClientMsg>,
    relays: Relays,
    outgoing: Outgoing,
    server: SocketAddr,
) {
    let mut ping = tokio::time::interval(Duration::from_secs(PING_INTERVAL_SECS));
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => {
                    if session.send(&msg).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            msg = session.next() => match msg {
                Some(Ok(ServerMsg::Relay { session, token })) => {
                    relays.open(session, token, RelayPlace::Own(server), &outgoing);
                }
                Some(Ok(ServerMsg::RelayRefused { session, why })) => relays.refused(session, why),
                Some(Ok(ServerMsg::Tunnel { session, data })) => relays.tunnel(session, data),
                Some(Ok(_)) => {}
                _ => return,
            },
            _ = ping.tick() => {
                if session.send(&ClientMsg::Ping).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn unexpected(e: &MailboxEvent) -> String {
    format!("the server sent {e:?} out of turn")
}

/// Which way a sealed message goes: each has its own key.
#[derive(Clone, Copy)]
enum Direction {
    ToReceiver,
    ToSender,
}

fn direction_key(pake: &[u8], dir: Direction) -> LessSafeKey {
    let label: &[u8] = match dir {
        Direction::ToReceiver => b"chatdrop code: to the receiver",
        Direction::ToSender => b"chatdrop code: to the sender",
    };
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, pake);
    let mut key = [0u8; 32];
    // 32 bytes is a valid HKDF-SHA256 output length.
    let _ = hk.expand(label, &mut key);
    // 32 bytes is ChaCha20-Poly1305's key length.
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key"))
}

/// Seals `body` for `dir`: each key seals one message only, so a zero
/// nonce is never reused. The code is the associated data.
fn seal(pake: &[u8], dir: Direction, code: &str, mut body: Vec<u8>) -> Result<Vec<u8>, String> {
    direction_key(pake, dir)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(code.as_bytes()),
            &mut body,
        )
        .map_err(|_| "sealing failed".to_string())?;
    Ok(body)
}

fn open(pake: &[u8], dir: Direction, code: &str, mut sealed: Vec<u8>) -> Option<Vec<u8>> {
    let len = direction_key(pake, dir)
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(code.as_bytes()),
            &mut sealed,
        )
        .ok()?
        .len();
    sealed.truncate(len);
    Some(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_a_number_and_two_words_and_read_back_however_typed() {
        let code = new_code(7);
        let (n, same) = parse_code(&code).unwrap();
        assert_eq!((n, same.as_str()), (7, code.as_str()));
        assert_eq!(
            parse_code("  12 Sunlit  HARBOR ").unwrap(),
            (12, "12-sunlit-harbor".to_string())
        );
        assert!(parse_code("sunlit-harbor")
            .unwrap_err()
            .contains("not a code"));
        assert!(parse_code("7-sunlit").is_err());
        assert!(parse_code("7-sunlit-harbour")
            .unwrap_err()
            .contains("harbour"));
        assert!(parse_code("x-sunlit-harbor").is_err());
    }

    #[test]
    fn only_the_same_code_opens_what_the_other_side_sealed() {
        let run = |a: &str, b: &str| {
            let id = Identity::new(b"chatdrop code v1");
            let (sa, ma) =
                Spake2::<Ed25519Group>::start_symmetric(&Password::new(a.as_bytes()), &id);
            let (sb, mb) =
                Spake2::<Ed25519Group>::start_symmetric(&Password::new(b.as_bytes()), &id);
            let (ka, kb) = (sa.finish(&mb).unwrap(), sb.finish(&ma).unwrap());
            let sealed = seal(&ka, Direction::ToReceiver, a, b"ticket".to_vec()).unwrap();
            open(&kb, Direction::ToReceiver, b, sealed)
        };
        assert_eq!(
            run("7-sunlit-harbor", "7-sunlit-harbor").as_deref(),
            Some(&b"ticket"[..])
        );
        assert_eq!(run("7-sunlit-harbor", "7-sunlit-hazel"), None);
        // Each direction has its own key.
        let k = [9u8; 32];
        let sealed = seal(&k, Direction::ToReceiver, "c", b"x".to_vec()).unwrap();
        assert_eq!(open(&k, Direction::ToSender, "c", sealed), None);
    }
}
