//! The client's control loop: one session at a time, keepalive, reconnect
//! with backoff, and rejoining the rooms the user was in. Lines the server
//! had not taken when it said goodbye (it is restarting) are sent again once
//! the client is back in their room.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use chatdrop_proto::limits::{
    HISTORY_PAGE, IDLE_TIMEOUT_SECS, MAX_ROOMS_JOINED, PING_INTERVAL_SECS,
};
use chatdrop_proto::{ClientMsg, ErrorCode, ServerMsg, Target};
use ed25519_dalek::SigningKey;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::event::{ClientEvent, ErrorKind, HistoryLine, RoomEntry, ServerRtt};
use crate::peer::{Peer, TransferOptions};
use crate::session::{connect, ConnectError, Session};
use crate::trust::KnownHosts;
use crate::unechoed::{Said, Unechoed};
use crate::{identity, ClientError, Command};

/// How to run a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `HOST:PORT` of each server to choose from (the closest is used; the
    /// others are where the client goes when its server fails).
    pub servers: Vec<String>,
    /// User name.
    pub user: String,
    /// Where the identity key and known hosts live.
    pub data_dir: PathBuf,
    /// A fingerprint to pin instead of trusting on first use.
    pub fingerprint: Option<String>,
    /// What to send right after the first login: a `Create` or `Join`
    /// command, to enter a room at once.
    pub first: Option<Command>,
    /// File sharing and transfer settings.
    pub transfer: TransferOptions,
}

/// How the client ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The user quit (or closed standard input).
    Quit,
}

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Why a session ended.
enum SessionEnd {
    Quit,
    Lost(String),
}

struct Loop {
    opts: ClientOptions,
    key: SigningKey,
    events: mpsc::Sender<ClientEvent>,
    /// The rooms the client is in, with their passwords (to rejoin them
    /// after a reconnect), in the order joined: the last is where a
    /// command that names no room goes.
    rooms: Vec<(String, Option<String>)>,
    /// The oldest line seen of each room (by `seq`, which is the
    /// server's), where `/history` pages back from.
    oldest: HashMap<String, u64>,
    /// Rooms still to join again after a reconnect, in order.
    rejoin: VecDeque<(String, Option<String>)>,
    /// Whether the answer awaited is to a rejoin.
    rejoining: bool,
    /// Passwords of create/join requests awaiting an answer.
    pending: HashMap<String, Option<String>>,
    /// Where the next page of the room list starts, after a page that was
    /// not the last.
    rooms_next: Option<String>,
    /// File requests and transfers.
    peer: Peer,
    /// The servers, closest first.
    servers: Vec<String>,
    /// Index in `servers` of the current one.
    at: usize,
    /// Lines not echoed yet, to send again after a goodbye.
    unechoed: Unechoed,
}

/// How long a server may take to answer the closeness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the client until the user quits or something ends it for good.
/// Requests come from `commands` (closing it quits); everything that happens
/// goes to `events`.
pub async fn run(
    opts: ClientOptions,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<ClientEvent>,
) -> Result<Exit, ClientError> {
    let key = identity::load_or_create(&opts.data_dir)?;
    let known = KnownHosts::in_dir(&opts.data_dir);
    if opts.servers.is_empty() {
        return Err(ClientError::Local("no server address given".into()));
    }
    if opts.fingerprint.is_some() && opts.servers.len() > 1 {
        return Err(ClientError::Local(
            "--server-fingerprint pins one server; with several, each is pinned on first use \
             (known_hosts)"
                .into(),
        ));
    }
    let fingerprint = match &opts.fingerprint {
        Some(fp) => Some(crate::trust::normalise(fp).ok_or_else(|| {
            ClientError::Local(format!(
                "--server-fingerprint {fp:?} is not 64 hex digits (a SHA-256)"
            ))
        })?),
        None => None,
    };
    // Requests and offers are prepared in tasks of their own (each opens
    // its socket and asks the server where it sees it first); what they
    // send the server comes back through here.
    let (outgoing, mut from_tasks) = mpsc::channel::<ClientMsg>(256);
    let peer = Peer::new(
        opts.transfer.clone(),
        &opts.data_dir,
        events.clone(),
        outgoing,
    )?;
    let mut lp = Loop {
        servers: opts.servers.clone(),
        at: 0,
        opts,
        key,
        events,
        peer,
        rooms: Vec::new(),
        oldest: HashMap::new(),
        rejoin: VecDeque::new(),
        rejoining: false,
        pending: HashMap::new(),
        rooms_next: None,
        unechoed: Unechoed::default(),
    };
    if lp.servers.len() > 1 {
        lp.rank().await;
    }
    let pin = |server: &str| fingerprint.clone().or_else(|| known.get(server));

    // The first connection must work: a wrong address or name is better
    // reported at once than retried forever. With several servers, each is
    // tried in order of closeness.
    let mut session = loop {
        let server = lp.current().to_string();
        match lp.connect(&pin(&server)).await {
            Ok(s) => break s,
            Err(e)
                if lp.at + 1 < lp.servers.len()
                    && !matches!(e, ConnectError::Fingerprint { .. }) =>
            {
                lp.emit(ClientEvent::Error {
                    code: ErrorKind::ConnectFailed,
                    message: format!("{server}: {e}; trying the next closest server"),
                })
                .await;
                lp.at += 1;
            }
            Err(e) => return Err(lp.fatal(e, &known)),
        }
    };
    lp.pin_first_use(&known, &session)?;
    if let Some(cmd) = lp.opts.first.clone() {
        lp.command(&mut session, cmd).await;
    }
    loop {
        let why = match lp
            .session(&mut session, &mut commands, &mut from_tasks)
            .await?
        {
            SessionEnd::Quit => return Ok(Exit::Quit),
            SessionEnd::Lost(why) => {
                // After a goodbye the lines are carried already; otherwise
                // nothing is known of them.
                lp.unechoed.broke();
                why
            }
        };
        lp.emit(ClientEvent::Disconnected { reason: why }).await;
        let mut attempt = 0u32;
        session = loop {
            attempt += 1;
            // With other servers to go to, the first attempt moves to the
            // next closest at once; later ones back off as usual.
            let delay = if lp.servers.len() > 1 && attempt == 1 {
                Duration::ZERO
            } else {
                backoff(attempt)
            };
            lp.at = (lp.at + 1) % lp.servers.len();
            lp.emit(ClientEvent::Reconnecting {
                attempt,
                delay_ms: delay.as_millis() as u64,
            })
            .await;
            if lp.wait_offline(delay, &mut commands).await {
                return Ok(Exit::Quit);
            }
            match lp.connect(&pin(lp.current())).await {
                Ok(s) => break s,
                Err(e @ ConnectError::Fingerprint { .. }) => return Err(lp.fatal(e, &known)),
                Err(ConnectError::Refused { code, message }) if code.is_fatal_at_login() => {
                    return Err(lp.fatal(ConnectError::Refused { code, message }, &known))
                }
                Err(e) => {
                    lp.emit(ClientEvent::Error {
                        code: ErrorKind::ConnectFailed,
                        message: format!("{}: {e}", lp.current()),
                    })
                    .await
                }
            }
        };
        lp.pin_first_use(&known, &session)?;
        // Line numbers are the server's: paging starts afresh.
        lp.oldest.clear();
        // The rooms are joined again one at a time (a server checks one
        // password at a time per connection), each after the answer to
        // the one before; a room's carried lines go once it is joined
        // again, direct ones at once.
        lp.rejoin = std::mem::take(&mut lp.rooms).into();
        lp.rejoin_next(&mut session).await;
        lp.resend_carried(&mut session).await;
    }
}

/// Delay before reconnection attempt `n` (from 1): doubling from 250 ms up to
/// 30 s, with up to 25% random jitter so that many clients of a restarted
/// server do not all return at the same instant.
fn backoff(n: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << n.saturating_sub(1).min(10))
        .min(MAX_BACKOFF);
    let jitter = rand::random::<f64>() * 0.25;
    base.mul_f64(1.0 + jitter)
}

impl Loop {
    async fn emit(&self, e: ClientEvent) {
        let _ = self.events.send(e).await;
    }

    /// The server in use (or being tried).
    fn current(&self) -> &str {
        &self.servers[self.at]
    }

    /// Remembers the certificate of a server met for the first time.
    fn pin_first_use(&self, known: &KnownHosts, session: &Session) -> Result<(), ClientError> {
        if known.get(self.current()).is_none() {
            known.add(self.current(), &session.fingerprint)?;
        }
        Ok(())
    }

    /// Orders the servers by round-trip time (a TCP connection and TLS
    /// handshake each, all at once), unreachable ones last, and says which
    /// was chosen and why.
    async fn rank(&mut self) {
        let probes = self.servers.iter().map(|s| async move {
            let r = match tokio::time::timeout(PROBE_TIMEOUT, crate::session::probe(s)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
            };
            (s.clone(), r)
        });
        let mut results = futures::future::join_all(probes).await;
        // Stable: unreachable servers keep the order they were given in.
        results.sort_by(|a, b| match (&a.1, &b.1) {
            (Ok(x), Ok(y)) => x.cmp(y),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => std::cmp::Ordering::Equal,
        });
        self.servers = results.iter().map(|(s, _)| s.clone()).collect();
        self.at = 0;
        let candidates = results
            .into_iter()
            .map(|(server, r)| ServerRtt {
                server,
                rtt_ms: r.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
                error: r.err(),
            })
            .collect();
        self.emit(ClientEvent::ServerChosen {
            server: self.servers[0].clone(),
            candidates,
        })
        .await;
    }

    fn fatal(&self, e: ConnectError, known: &KnownHosts) -> ClientError {
        match e {
            ConnectError::Fingerprint { expected, got } => ClientError::FingerprintMismatch {
                server: self.current().to_string(),
                expected,
                got,
                known_hosts: known.path().display().to_string(),
            },
            ConnectError::Refused { code, message } => ClientError::Refused { code, message },
            ConnectError::Io(why) => ClientError::Connect {
                server: self.current().to_string(),
                why,
            },
        }
    }

    async fn connect(&self, pinned: &Option<String>) -> Result<Session, ConnectError> {
        let session = connect(self.current(), &self.opts.user, &self.key, pinned.clone()).await?;
        self.emit(ClientEvent::Connected {
            server: self.current().to_string(),
            server_name: session.server_name.clone(),
            user: self.opts.user.clone(),
        })
        .await;
        Ok(session)
    }

    /// Sleeps `delay` while offline. Returns true if the user quit meanwhile.
    async fn wait_offline(&self, delay: Duration, commands: &mut mpsc::Receiver<Command>) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return false,
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Quit) => return true,
                    Some(_) => self.emit(ClientEvent::Error {
                        code: ErrorKind::Offline,
                        message: "not connected; reconnecting to the server".into(),
                    }).await,
                }
            }
        }
    }

    /// Sends what a command asks for. Returns false if the connection failed.
    async fn command(&mut self, s: &mut Session, cmd: Command) -> bool {
        let msg = match cmd {
            Command::Say { to, room, text } => {
                let room = match to {
                    Target::All => match self.room_for(room).await {
                        Some(room) => Some(room),
                        None => return true,
                    },
                    _ => None,
                };
                self.unechoed.sent(Said {
                    to: to.clone(),
                    room: room.clone(),
                    text: text.clone(),
                });
                ClientMsg::Say { to, room, text }
            }
            Command::ListRooms => ClientMsg::ListRooms { after: None },
            Command::MoreRooms => match self.rooms_next.clone() {
                Some(after) => ClientMsg::ListRooms { after: Some(after) },
                None => {
                    self.emit(ClientEvent::Error {
                        code: ErrorKind::BadCommand,
                        message: "no more rooms: the last list was complete (/rooms starts over)"
                            .into(),
                    })
                    .await;
                    return true;
                }
            },
            Command::Peers { room } => match self.room_for(room).await {
                Some(room) => ClientMsg::GetPeers { room },
                None => return true,
            },
            Command::Leave { room } => match self.room_for(room).await {
                Some(room) => ClientMsg::LeaveRoom { room },
                None => return true,
            },
            Command::Quit => ClientMsg::Quit,
            Command::Create { room, password } => {
                self.pending.insert(room.clone(), password.clone());
                ClientMsg::CreateRoom { room, password }
            }
            Command::Join { room, password } => {
                self.pending.insert(room.clone(), password.clone());
                ClientMsg::JoinRoom { room, password }
            }
            Command::Help => return true, // the front end shows help itself
            Command::History { room, before } => match self.room_for(room).await {
                Some(room) => {
                    // Before the oldest line seen, unless told.
                    let before = before.or_else(|| self.oldest.get(&room).copied());
                    ClientMsg::History {
                        room,
                        before,
                        after: None,
                        limit: HISTORY_PAGE as u16,
                    }
                }
                None => return true,
            },
            Command::WhoHas { room, file } => match self.room_for(room).await {
                Some(room) => self.peer.who_has(room, &file),
                None => return true,
            },
            Command::GetFile { owner, file } => {
                self.peer
                    .get_file(&self.opts.user, &self.key, &owner, &file);
                return true;
            }
            Command::Share(cmd) => {
                self.peer.share_command(cmd).await;
                return true;
            }
            Command::Send { to, paths } => {
                self.peer.send_offer(&self.opts.user, to, paths).await;
                return true;
            }
            Command::Accept { offer } => match self.answer_offer(offer, true).await {
                Some(msg) => msg,
                None => return true,
            },
            Command::Decline { offer } => match self.answer_offer(offer, false).await {
                Some(msg) => msg,
                None => return true,
            },
        };
        s.send(&msg).await.is_ok()
    }

    /// `/accept` or `/decline`: the answer to send, if there is an offer.
    async fn answer_offer(&mut self, offer: Option<u32>, accept: bool) -> Option<ClientMsg> {
        let (me, key) = (&self.opts.user, &self.key);
        self.peer.answer_offer(me, key, offer, accept).await
    }

    /// Sends again the lines the last server did not take before its
    /// goodbye. Returns false if the connection failed.
    async fn resend_carried(&mut self, s: &mut Session) -> bool {
        let joined: Vec<String> = self.rooms.iter().map(|(r, _)| r.clone()).collect();
        for Said { to, room, text } in self
            .unechoed
            .take_carried(|r| joined.iter().any(|j| j == r))
        {
            if !self.command(s, Command::Say { to, room, text }).await {
                return false;
            }
        }
        true
    }

    /// Joins the next room of a rejoin; when none is left, the carried
    /// lines of rooms not joined again are given up. Returns false if
    /// the connection failed.
    async fn rejoin_next(&mut self, s: &mut Session) -> bool {
        match self.rejoin.pop_front() {
            Some((room, password)) => {
                self.rejoining = true;
                self.command(s, Command::Join { room, password }).await
            }
            None => {
                if std::mem::take(&mut self.rejoining) {
                    let joined: Vec<String> = self.rooms.iter().map(|(r, _)| r.clone()).collect();
                    self.unechoed
                        .forget_carried(|r| !joined.iter().any(|j| j == r));
                }
                true
            }
        }
    }

    /// Notes line `seq` of `room` as seen: `/history` pages back from
    /// the oldest.
    fn seen_line(&mut self, room: &str, seq: u64) {
        let full = self.oldest.len() >= MAX_ROOMS_JOINED * 4;
        match self.oldest.get_mut(room) {
            Some(oldest) => *oldest = (*oldest).min(seq),
            None if !full => {
                self.oldest.insert(room.to_string(), seq);
            }
            None => {}
        }
    }

    /// The room a command is about: the one it names, or else the room
    /// joined last; `None` (the user told why) if the client is in none.
    async fn room_for(&self, named: Option<String>) -> Option<String> {
        if let Some(room) = named.or_else(|| self.rooms.last().map(|(r, _)| r.clone())) {
            return Some(room);
        }
        self.emit(ClientEvent::Error {
            code: ErrorKind::Server(ErrorCode::NotInRoom),
            message: "join a room first (/rooms lists them, /join NAME enters one)".into(),
        })
        .await;
        None
    }

    /// Runs one logged-in session until it ends.
    async fn session(
        &mut self,
        s: &mut Session,
        commands: &mut mpsc::Receiver<Command>,
        from_tasks: &mut mpsc::Receiver<ClientMsg>,
    ) -> Result<SessionEnd, ClientError> {
        self.peer.set_server(s.server_addr);
        let mut ping = tokio::time::interval(Duration::from_secs(PING_INTERVAL_SECS));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle = Duration::from_secs(IDLE_TIMEOUT_SECS);
        let mut quitting = false;
        // One deadline, pushed back by every frame from the server (a
        // timeout around each read would restart at every ping).
        let silence = tokio::time::sleep(idle);
        tokio::pin!(silence);
        loop {
            tokio::select! {
                _ = &mut silence => {
                    if quitting {
                        return Ok(SessionEnd::Quit);
                    }
                    return Ok(SessionEnd::Lost("the server stopped answering".into()));
                }
                frame = s.frames.next() => {
                    let payload = match frame {
                        // Once we asked to quit, however the connection ends
                        // is a clean end.
                        None | Some(Err(_)) if quitting => return Ok(SessionEnd::Quit),
                        None => return Ok(SessionEnd::Lost("the server closed the connection".into())),
                        Some(Err(e)) => return Ok(SessionEnd::Lost(e.to_string())),
                        Some(Ok(p)) => p,
                    };
                    silence.as_mut().reset(tokio::time::Instant::now() + idle);
                    let msg: ServerMsg = match chatdrop_proto::decode(&payload) {
                        Ok(m) => m,
                        Err(e) => return Ok(SessionEnd::Lost(format!("bad frame from server: {e}"))),
                    };
                    if let Some(end) = self.server_msg(msg, quitting, s).await? {
                        return Ok(end);
                    }
                }
                cmd = commands.recv(), if !quitting => {
                    let cmd = cmd.unwrap_or(Command::Quit);
                    quitting = cmd == Command::Quit;
                    if !self.command(s, cmd).await {
                        if quitting {
                            return Ok(SessionEnd::Quit);
                        }
                        return Ok(SessionEnd::Lost("writing to the server failed".into()));
                    }
                }
                Some(msg) = from_tasks.recv() => {
                    if s.send(&msg).await.is_err() && !quitting {
                        return Ok(SessionEnd::Lost("writing to the server failed".into()));
                    }
                }
                _ = ping.tick() => {
                    if s.send(&ClientMsg::Ping).await.is_err() && !quitting {
                        return Ok(SessionEnd::Lost("writing to the server failed".into()));
                    }
                }
            }
        }
    }

    async fn server_msg(
        &mut self,
        msg: ServerMsg,
        quitting: bool,
        s: &mut Session,
    ) -> Result<Option<SessionEnd>, ClientError> {
        let event = match msg {
            msg @ (ServerMsg::WhoHas { .. }
            | ServerMsg::HaveFile { .. }
            | ServerMsg::FileRequest { .. }
            | ServerMsg::FileOffer { .. }
            | ServerMsg::TransferRefused { .. }
            | ServerMsg::Relay { .. }
            | ServerMsg::RelayAt { .. }
            | ServerMsg::RelayRefused { .. }
            | ServerMsg::Tunnel { .. }
            | ServerMsg::FilesOffered { .. }
            | ServerMsg::OfferAnswered { .. }) => {
                if let Err(e) = self
                    .peer
                    .on_server(msg, &self.opts.user, &self.key, s)
                    .await
                {
                    return Ok(Some(SessionEnd::Lost(format!(
                        "writing to the server failed: {e}"
                    ))));
                }
                return Ok(None);
            }
            ServerMsg::Observed { token, addr } => {
                self.peer.observed(token, addr);
                return Ok(None);
            }
            ServerMsg::Pong
            | ServerMsg::Challenge { .. }
            | ServerMsg::LoggedIn { .. }
            | ServerMsg::Mailbox(_) => return Ok(None),
            ServerMsg::Rooms { rooms, total, next } => ClientEvent::Rooms {
                total,
                next: {
                    self.rooms_next.clone_from(&next);
                    next
                },
                rooms: rooms
                    .into_iter()
                    .map(|r| RoomEntry {
                        name: r.name,
                        private: r.private,
                        members: r.members,
                    })
                    .collect(),
            },
            ServerMsg::Joined {
                room,
                room_id,
                created,
                peers,
            } => {
                let password = self.pending.remove(&room).flatten();
                // The room joined last is where commands without a room go.
                self.rooms.retain(|(r, _)| *r != room);
                self.rooms.push((room.clone(), password));
                // The replay that follows starts the room's paging afresh.
                self.oldest.remove(&room);
                self.emit(ClientEvent::Joined {
                    room,
                    room_id,
                    created,
                    peers,
                })
                .await;
                if !self.resend_carried(s).await || !self.rejoin_next(s).await {
                    return Ok(Some(SessionEnd::Lost(
                        "writing to the server failed".into(),
                    )));
                }
                return Ok(None);
            }
            ServerMsg::Left { room } => {
                self.rooms.retain(|(r, _)| *r != room);
                self.oldest.remove(&room);
                ClientEvent::Left { room }
            }
            ServerMsg::PeerJoined { room, user } => ClientEvent::PeerJoined { room, user },
            ServerMsg::PeerLeft { room, user, reason } => ClientEvent::PeerLeft {
                room,
                user,
                reason: reason.as_str().into(),
            },
            ServerMsg::Message(l) => {
                if !l.history && l.from == self.opts.user {
                    self.unechoed.echoed(&Said {
                        to: l.to.clone(),
                        room: l.room.clone(),
                        text: l.text.clone(),
                    });
                }
                if let (Some(room), true) = (&l.room, l.seq > 0) {
                    self.seen_line(room, l.seq);
                }
                ClientEvent::Message {
                    room: l.room,
                    from: l.from,
                    to: l.to.as_str().to_string(),
                    text: l.text,
                    ts: l.ts,
                    history: l.history,
                    seq: l.seq,
                }
            }
            ServerMsg::Peers { room, peers } => ClientEvent::Peers { room, peers },
            ServerMsg::History { room, lines, more } => {
                if let Some(first) = lines.first() {
                    self.seen_line(&room, first.seq);
                }
                ClientEvent::History {
                    room,
                    lines: lines
                        .into_iter()
                        .map(|l| HistoryLine {
                            from: l.from,
                            text: l.text,
                            ts: l.ts,
                            seq: l.seq,
                        })
                        .collect(),
                    more,
                }
            }
            ServerMsg::Notice { text } => ClientEvent::ServerNotice { text },
            ServerMsg::RoomRenamed { old, new, reason } => {
                // Rejoin under the new name after a reconnect.
                for (room, _) in self.rooms.iter_mut().filter(|(r, _)| *r == old) {
                    *room = new.clone();
                }
                ClientEvent::RoomRenamed { old, new, reason }
            }
            ServerMsg::Kicked { reason } => {
                self.emit(ClientEvent::Kicked {
                    reason: reason.clone(),
                })
                .await;
                return Err(ClientError::Kicked(reason));
            }
            ServerMsg::Error { code, message } => {
                if matches!(
                    code,
                    ErrorCode::WrongPassword
                        | ErrorCode::PasswordRequired
                        | ErrorCode::NoSuchRoom
                        | ErrorCode::RoomExists
                        | ErrorCode::RateLimited
                        | ErrorCode::InvalidName
                        | ErrorCode::LimitReached
                ) {
                    // The create/join it answers failed; forget its password.
                    self.pending.clear();
                    // A room that cannot be joined again is left out.
                    if self.rejoining && !self.rejoin_next(s).await {
                        return Ok(Some(SessionEnd::Lost(
                            "writing to the server failed".into(),
                        )));
                    }
                }
                ClientEvent::Error {
                    code: ErrorKind::Server(code),
                    message,
                }
            }
            ServerMsg::Bye { reason } => {
                if quitting {
                    return Ok(Some(SessionEnd::Quit));
                }
                // Echoes come in the order the server took the lines, and
                // all it took are echoed before its goodbye: a line not
                // echoed now never reached the room, and is sent again once
                // back (with no risk of a second copy).
                self.unechoed.goodbye();
                self.emit(ClientEvent::ServerNotice {
                    text: reason.clone(),
                })
                .await;
                return Ok(Some(SessionEnd::Lost(reason)));
            }
        };
        self.emit(event).await;
        Ok(None)
    }
}
