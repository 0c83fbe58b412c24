//! The hub: the one task that owns the chat state. Connection tasks send it
//! what their clients asked; it runs the chat core and carries out the
//! effects: frames into each connection's bounded queue, records to the store
//! writer, password checks to the blocking pool, lines to the console.
//!
//! A client whose queue is full is too slow to keep up and is disconnected
//! rather than allowed to grow the server's memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chatdrop_chat::{AdminCommand, Chat, ConnId, Effect, Event, LinkId, Who};
use chatdrop_proto::link::ServerId;
use chatdrop_proto::{encode_frame, ServerMsg};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::outbox::{Outbox, Refused};
use crate::password::Hasher;
use crate::persist::Writer;
use crate::relay::{Opening, Relays};

/// Messages waiting for the hub at most; connection readers wait when full.
pub const HUB_QUEUE: usize = 8_192;

/// Frames queued for one connection at most before it is dropped as too slow
/// (and at most [`crate::outbox::CLIENT_QUEUE_BYTES`] bytes).
pub const CONN_QUEUE: usize = 1_024;

/// What the hub keeps of a connection.
#[derive(Debug)]
pub struct ConnHandle {
    /// The connection's outgoing frames.
    pub tx: Outbox,
    /// Cancelling it makes the connection flush what is queued and close.
    pub close: CancellationToken,
}

/// A message to the hub.
#[derive(Debug)]
pub enum HubMsg {
    /// A connection proved its key and asks to log in.
    Login {
        conn: ConnId,
        handle: ConnHandle,
        /// User name asked for.
        user: String,
        /// Proven public key.
        public_key: [u8; 32],
        /// The address it connects from.
        ip: std::net::IpAddr,
    },
    /// A request of a logged-in connection.
    Chat(Event),
    /// A link's message, holding its share of
    /// [`crate::link::LINK_BACKLOG_BYTES`] until the chat core has taken
    /// it.
    Link(Event, tokio::sync::OwnedSemaphorePermit),
    /// A connection task ended.
    Gone(ConnId),
    /// An admin command.
    Admin(AdminCommand),
    /// A link to another server completed its handshake.
    LinkUp {
        link: LinkId,
        /// The server at the other end.
        peer: ServerId,
        name: String,
        /// Its outgoing frames.
        handle: ConnHandle,
    },
    /// A link task ended.
    LinkGone(LinkId),
}

/// How often the hub lets the chat core resend what other servers have not
/// acknowledged.
const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Messages the hub takes in one go before it flushes acknowledgements and
/// looks at its timer again.
const BATCH: usize = 1_024;

/// The hub's state; see the module docs.
pub struct Hub {
    chat: Chat,
    conns: HashMap<ConnId, ConnHandle>,
    links: HashMap<LinkId, ConnHandle>,
    writer: Writer,
    /// For feeding password-check results back.
    self_tx: mpsc::Sender<HubMsg>,
    shutdown: CancellationToken,
    passwords: Hasher,
    /// The relays, opened here at the core's word.
    relays: Arc<Relays>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Hub {
    /// A hub around `chat`.
    pub fn new(
        chat: Chat,
        writer: Writer,
        self_tx: mpsc::Sender<HubMsg>,
        shutdown: CancellationToken,
        passwords: Hasher,
        relays: Arc<Relays>,
    ) -> Self {
        Hub {
            chat,
            conns: HashMap::new(),
            links: HashMap::new(),
            writer,
            self_tx,
            shutdown,
            passwords,
            relays,
        }
    }

    /// Runs until the chat core asks for shutdown, then flushes the store.
    pub async fn run(mut self, mut rx: mpsc::Receiver<HubMsg>, console: mpsc::Sender<String>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut effects = Vec::new();
        // Connections and links found dead while carrying out effects; they
        // are handled after the current event.
        let mut dead = Dead::default();
        loop {
            let first = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => return,
                },
                _ = tick.tick() => HubMsg::Chat(Event::Tick),
            };
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(msg) = next.take() {
                if self.step(msg, &mut effects, &console, &mut dead).await {
                    return;
                }
                taken += 1;
                if taken < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            // Nothing more queued: acknowledge what other servers sent.
            if self
                .step(
                    HubMsg::Chat(Event::Flush),
                    &mut effects,
                    &console,
                    &mut dead,
                )
                .await
            {
                return;
            }
            // A burst's effects (a `Sync` in parts, a mass login) can number
            // tens of thousands; the buffer is reused, but not kept that large.
            effects.shrink_to(EFFECTS_KEPT);
        }
    }

    /// Handles one message. Returns true when the server stops.
    async fn step(
        &mut self,
        msg: HubMsg,
        effects: &mut Vec<Effect>,
        console: &mpsc::Sender<String>,
        dead: &mut Dead,
    ) -> bool {
        // A link message's share of the backlog, given back once this step
        // is done with it.
        let mut _held = None;
        let event = match msg {
            HubMsg::Login {
                conn,
                handle,
                user,
                public_key,
                ip,
            } => {
                self.conns.insert(conn, handle);
                Event::Login {
                    conn,
                    user,
                    public_key,
                    ip,
                }
            }
            HubMsg::Chat(e) => e,
            HubMsg::Link(e, held) => {
                _held = Some(held);
                e
            }
            HubMsg::Admin(AdminCommand::Relays) => {
                for line in self.relays.describe(std::time::Instant::now()) {
                    if console.try_send(line).is_err() {
                        warn!("console output is backed up; a line was dropped");
                    }
                }
                return false;
            }
            HubMsg::Admin(cmd) => Event::Admin(cmd),
            HubMsg::Gone(conn) => {
                if self.conns.remove(&conn).is_none() {
                    return false; // the hub closed it and has forgotten it
                }
                Event::Disconnected { conn }
            }
            HubMsg::LinkUp {
                link,
                peer,
                name,
                handle,
            } => {
                self.links.insert(link, handle);
                Event::LinkUp { link, peer, name }
            }
            HubMsg::LinkGone(link) => {
                if self.links.remove(&link).is_none() {
                    return false;
                }
                Event::LinkDown { link }
            }
        };
        let mut next = Some(event);
        while let Some(event) = next.take() {
            self.chat.handle(now_ms(), event, effects);
            let stop = self.apply(effects, console, dead).await;
            if stop {
                self.writer.flush().await;
                info!("store flushed; hub stopped");
                return true;
            }
            next = dead
                .conns
                .pop()
                .map(|conn| Event::Disconnected { conn })
                .or_else(|| dead.links.pop().map(|link| Event::LinkDown { link }));
        }
        false
    }

    /// Carries out effects in order. Returns true on shutdown.
    async fn apply(
        &mut self,
        effects: &mut Vec<Effect>,
        console: &mpsc::Sender<String>,
        dead: &mut Dead,
    ) -> bool {
        let mut stop = false;
        // A durable record written and not yet committed.
        let mut uncommitted = false;
        for effect in effects.drain(..) {
            let tells_someone = matches!(
                effect,
                Effect::Send { .. }
                    | Effect::Broadcast { .. }
                    | Effect::Close { .. }
                    | Effect::Link { .. }
                    | Effect::Shutdown
            );
            if uncommitted && tells_someone {
                self.writer.flush().await;
                uncommitted = false;
            }
            match effect {
                Effect::Send { to, msg } => {
                    if let Some(frame) = encode(&msg) {
                        self.deliver(to, frame, dead);
                    }
                }
                Effect::Broadcast { to, msg } => {
                    if let Some(frame) = encode(&msg) {
                        for conn in to {
                            self.deliver(conn, frame.clone(), dead);
                        }
                    }
                }
                Effect::Close { conn, last } => {
                    if let Some(handle) = self.conns.remove(&conn) {
                        if let Some(frame) = last.as_ref().and_then(encode) {
                            let _ = handle.tx.try_send(frame);
                        }
                        handle.close.cancel();
                    }
                }
                Effect::CheckPassword {
                    conn,
                    room,
                    attempt,
                    hash,
                    password,
                    ip,
                } => {
                    let passwords = self.passwords.clone();
                    self.off_core(async move {
                        let ok = passwords.verify(ip, hash, password).await;
                        Event::PasswordChecked {
                            conn,
                            room,
                            attempt,
                            ok,
                        }
                    });
                }
                Effect::HashPassword {
                    conn,
                    attempt,
                    password,
                    ip,
                } => {
                    let passwords = self.passwords.clone();
                    self.off_core(async move {
                        let hash = passwords
                            .hash(ip, password)
                            .await
                            .map_err(|e| warn!("hashing a password failed: {e}"))
                            .ok();
                        Event::PasswordHashed {
                            conn,
                            attempt,
                            hash,
                        }
                    });
                }
                Effect::Persist(p) => {
                    // Rooms, name bindings and bans must never be lost once
                    // a client or another server was told of them: they are
                    // committed before anything that follows is sent (in one
                    // commit when several come together, as in a `Sync`).
                    // History lines are batched.
                    uncommitted |= !matches!(p, chatdrop_chat::Persist::History { .. });
                    self.writer.write(p).await;
                }
                Effect::OpenRelay {
                    session,
                    requester,
                    sides,
                } => self.open_relay(session, requester, sides, dead),
                Effect::Console(line) => {
                    // Users' text and names reach the admin's terminal:
                    // whatever would not show as itself is written out.
                    let line = chatdrop_proto::chars::shown(&line).into_owned();
                    // Chat lines for the admin (`@user|text`) also go to the
                    // log; answers to console commands only to the console.
                    if line.starts_with('@') {
                        info!(target: "chatdrop::console", "{line}");
                    }
                    if console.try_send(line).is_err() {
                        warn!("console output is backed up; a line was dropped");
                    }
                }
                Effect::Link { link, msg } => {
                    let Ok(frame) = encode_frame(&msg) else {
                        warn!("cannot encode a link frame");
                        continue;
                    };
                    // A link too far behind is dropped like a slow client:
                    // it is redialled, and the channels resend what it lost.
                    if !push(&mut self.links, link, frame, "link") {
                        dead.links.push(link);
                    }
                }
                Effect::Shutdown => {
                    self.shutdown.cancel();
                    stop = true;
                }
            }
        }
        if uncommitted {
            self.writer.flush().await;
        }
        stop
    }

    /// Opens the relay [`Effect::OpenRelay`] asks for: each side here is
    /// sent its token, and a side at another server gets it through its
    /// server, with the relay's address as it reaches it
    /// ([`Event::RelayOpened`]); or `requester` is told why not.
    fn open_relay(
        &mut self,
        session: [u8; 8],
        requester: ConnId,
        sides: [(Who, String, IpAddr); 2],
        dead: &mut Dead,
    ) {
        let refuse = |hub: &mut Hub, why: String, dead: &mut Dead| {
            if let Some(frame) = encode(&ServerMsg::RelayRefused { session, why }) {
                hub.deliver(requester, frame, dead);
            }
        };
        let mut openings = Vec::with_capacity(2);
        let mut remote_at = [None; 2];
        for (i, (who, user, ip)) in sides.iter().enumerate() {
            let here = match who {
                Who::Local(conn) => match self.conns.get(conn) {
                    Some(c) => Some((*conn, c.tx.clone())),
                    None => {
                        let why = "the other side is no longer connected".to_string();
                        return refuse(self, why, dead);
                    }
                },
                Who::Remote(_) => {
                    let Some(at) = self.relays.address_for(*ip) else {
                        let why = "this server's relay has no address to give \
                                   the other side's server"
                            .to_string();
                        return refuse(self, why, dead);
                    };
                    remote_at[i] = Some(at);
                    None
                }
            };
            openings.push(Opening {
                user: user.clone(),
                ip: *ip,
                here,
            });
        }
        let Ok(openings) = <[Opening; 2]>::try_from(openings) else {
            return;
        };
        let tokens = match self
            .relays
            .open(session, openings, std::time::Instant::now())
        {
            Ok(tokens) => tokens,
            Err(why) => return refuse(self, why, dead),
        };
        for (i, ((who, user, _), token)) in sides.iter().zip(tokens).enumerate() {
            match (who, remote_at[i]) {
                (Who::Local(conn), _) => {
                    if let Some(frame) = encode(&ServerMsg::Relay { session, token }) {
                        self.deliver(*conn, frame, dead);
                    }
                }
                (Who::Remote(server), Some(at)) => {
                    let event = Event::RelayOpened {
                        session,
                        server: *server,
                        user: user.clone(),
                        other: sides[1 - i].1.clone(),
                        token,
                        at,
                    };
                    self.off_core(async move { event });
                }
                (Who::Remote(_), None) => {}
            }
        }
    }

    /// Runs slow work (password hashing) in a task of its own and feeds
    /// its outcome back to the core as an event.
    fn off_core(&self, work: impl std::future::Future<Output = Event> + Send + 'static) {
        let tx = self.self_tx.clone();
        tokio::spawn(async move {
            let event = work.await;
            let _ = tx.send(HubMsg::Chat(event)).await;
        });
    }

    fn deliver(&mut self, conn: ConnId, frame: Bytes, dead: &mut Dead) {
        if !push(&mut self.conns, conn, frame, "client") {
            dead.conns.push(conn);
        }
    }
}

/// Queues `frame` for a connection or link. One whose queue is full (too
/// slow) is closed and forgotten; returns false then. One whose queue is
/// closed has ended, and its task says so (`Gone`) after every request it
/// read: forgetting it now would drop those still queued for the hub (a
/// client's last lines before it hung up).
fn push<K: std::hash::Hash + Eq + std::fmt::Debug>(
    handles: &mut HashMap<K, ConnHandle>,
    key: K,
    frame: Bytes,
    what: &str,
) -> bool {
    let Some(handle) = handles.get(&key) else {
        return true; // forgotten already
    };
    match handle.tx.try_send(frame) {
        Ok(()) | Err(Refused::Closed) => return true,
        Err(Refused::Full) => {
            let (bytes, frames) = handle.tx.queued();
            warn!(
                ?key,
                "{what} too slow ({bytes} bytes in {frames} frames queued); disconnecting it"
            )
        }
    }
    if let Some(handle) = handles.remove(&key) {
        handle.close.cancel();
    }
    false
}

/// Capacity of the reused effects buffer kept between batches.
const EFFECTS_KEPT: usize = 1024;

/// Connections and links the hub dropped while carrying out effects.
#[derive(Debug, Default)]
struct Dead {
    conns: Vec<ConnId>,
    links: Vec<LinkId>,
}

fn encode(msg: &ServerMsg) -> Option<Bytes> {
    match encode_frame(msg) {
        Ok(frame) => Some(frame),
        Err(e) => {
            warn!("cannot encode {msg:?}: {e}");
            None
        }
    }
}
