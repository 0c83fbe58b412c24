//! The chat core: one place that decides who is where and who receives what.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use chatdrop_proto::limits::{MAX_FILE_NAME, MAX_TEXT_BYTES};
use chatdrop_proto::names::{check_room_name, check_user_name};
use chatdrop_proto::{
    ChatLine, ErrorCode, FileAnswer, LeaveReason, RefuseReason, RoomInfo, ServerMsg, Target,
};

use chatdrop_proto::link::{NetMsg, ServerId};

use crate::admin::{AdminCommand, ADMIN_HELP};
use crate::event::{ConnId, Effect, Event, Persist};
use crate::net::Network;
use crate::state::{HistoryEntry, RoomRecord, Settings, Snapshot};

mod remote;

/// Name shown as the sender of messages typed at the admin console.
pub const SERVER_SENDER: &str = "server";

#[derive(Debug)]
struct Room {
    rec: RoomRecord,
    /// Members connected here, in the order they joined.
    members: Vec<ConnId>,
    /// Members connected to other servers, and their server.
    remote: BTreeMap<String, ServerId>,
    history: VecDeque<HistoryEntry>,
    next_seq: u64,
}

#[derive(Debug)]
struct Session {
    user: String,
    key: [u8; 32],
    ip: IpAddr,
    room: Option<String>,
    /// When it logged in (ms since the Unix epoch).
    since_ms: u64,
    /// Room whose password is being checked for this connection, and the
    /// check's attempt number.
    joining: Option<(String, u64)>,
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    locked_until_ms: u64,
}

/// The chat state of one server. See the crate docs.
#[derive(Debug)]
pub struct Chat {
    settings: Settings,
    rooms: BTreeMap<String, Room>,
    sessions: HashMap<ConnId, Session>,
    online: HashMap<String, ConnId>,
    /// Users online at other servers.
    remote: HashMap<String, RemoteUser>,
    /// Name bindings: key and when it was bound.
    bindings: HashMap<String, ([u8; 32], u64)>,
    /// Room names by room id.
    room_ids: HashMap<String, String>,
    /// Links, routes and channels to the other servers.
    net: Network,
    bans: HashMap<String, String>,
    /// Wrong-password counts per user name.
    failures: HashMap<String, Failures>,
    /// Numbers password checks.
    next_attempt: u64,
    /// File requests waiting for the owner's answer.
    requests: HashMap<u64, Request>,
    next_request: u64,
}

/// A file request brokered between two members.
#[derive(Debug)]
struct Request {
    asker: Who,
    asker_name: String,
    owner: ConnId,
    file: String,
}

/// Where a user is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Local(ConnId),
    Remote(ServerId),
}

/// A user online at another server.
#[derive(Debug, Clone)]
struct RemoteUser {
    server: ServerId,
    key: [u8; 32],
    ip: IpAddr,
    /// Name of its room, as known here.
    room: Option<String>,
    /// Id of the room its server says it is in; kept while that room is not
    /// known here yet (its record may come from a third server, later).
    room_id: Option<String>,
    since_ms: u64,
}

fn err(conn: ConnId, code: ErrorCode, message: impl Into<String>) -> Effect {
    Effect::Send {
        to: conn,
        msg: ServerMsg::error(code, message),
    }
}

impl Chat {
    /// A chat core holding what the store saved.
    pub fn new(settings: Settings, snapshot: Snapshot) -> Self {
        let keep = settings.history_len as usize;
        let rooms: BTreeMap<String, Room> = snapshot
            .rooms
            .into_iter()
            .map(|(rec, history)| {
                let next_seq = history.last().map_or(1, |h| h.seq + 1);
                let skip = history.len().saturating_sub(keep);
                let history = history.into_iter().skip(skip).collect();
                let room = Room {
                    rec,
                    members: Vec::new(),
                    remote: BTreeMap::new(),
                    history,
                    next_seq,
                };
                (room.rec.name.clone(), room)
            })
            .collect();
        let room_ids = rooms
            .values()
            .map(|r: &Room| (r.rec.id.clone(), r.rec.name.clone()))
            .collect();
        Chat {
            net: Network::new(settings.identity.clone()),
            settings,
            room_ids,
            remote: HashMap::new(),
            rooms,
            sessions: HashMap::new(),
            online: HashMap::new(),
            bindings: snapshot
                .bindings
                .into_iter()
                .map(|b| (b.user, (b.public_key, b.bound_ms)))
                .collect(),
            bans: snapshot
                .bans
                .into_iter()
                .map(|b| (b.user, b.reason))
                .collect(),
            failures: HashMap::new(),
            next_attempt: 1,
            requests: HashMap::new(),
            next_request: 1,
        }
    }

    /// Number of logged-in users.
    pub fn online_count(&self) -> usize {
        self.sessions.len()
    }

    /// Applies one event at time `now_ms` (ms since the Unix epoch) and
    /// appends what must happen to `out`, in order.
    pub fn handle(&mut self, now_ms: u64, event: Event, out: &mut Vec<Effect>) {
        match event {
            Event::Login {
                conn,
                user,
                public_key,
                ip,
            } => self.login(now_ms, conn, user, public_key, ip, out),
            Event::Admin(cmd) => self.admin(now_ms, cmd, out),
            Event::Disconnected { conn } => {
                if self.sessions.contains_key(&conn) {
                    self.logout(now_ms, conn, LeaveReason::Lost, out);
                }
            }
            Event::Quit { conn } => {
                if self.sessions.contains_key(&conn) {
                    self.logout(now_ms, conn, LeaveReason::Left, out);
                    out.push(Effect::Close {
                        conn,
                        last: Some(ServerMsg::Bye {
                            reason: "logged out".into(),
                        }),
                    });
                }
            }
            Event::ListRooms { conn } => {
                if self.sessions.contains_key(&conn) {
                    out.push(Effect::Send {
                        to: conn,
                        msg: self.room_list(),
                    });
                }
            }
            Event::CreateRoom {
                conn,
                room,
                password_hash,
                room_id,
            } => self.create(now_ms, conn, room, password_hash, room_id, out),
            Event::JoinRoom {
                conn,
                room,
                password,
            } => self.join(now_ms, conn, room, password, out),
            Event::PasswordChecked {
                conn,
                room,
                attempt,
                ok,
            } => self.password_checked(now_ms, conn, room, attempt, ok, out),
            Event::LeaveRoom { conn } => {
                if !self.sessions.contains_key(&conn) {
                    return;
                }
                match self.leave_room(conn, LeaveReason::Left, true, now_ms, out) {
                    Some(room) => out.push(Effect::Send {
                        to: conn,
                        msg: ServerMsg::Left { room },
                    }),
                    None => out.push(err(conn, ErrorCode::NotInRoom, "you are not in a room")),
                }
            }
            Event::GetPeers { conn } => {
                let Some(session) = self.sessions.get(&conn) else {
                    return;
                };
                match session.room.as_ref().and_then(|r| self.rooms.get(r)) {
                    Some(room) => out.push(Effect::Send {
                        to: conn,
                        msg: ServerMsg::Peers {
                            room: room.rec.name.clone(),
                            peers: self.names(room, None),
                        },
                    }),
                    None => out.push(err(conn, ErrorCode::NotInRoom, "you are not in a room")),
                }
            }
            Event::Say { conn, to, text } => self.say(now_ms, conn, to, text, out),
            Event::WhoHas { conn, file } => self.who_has(now_ms, conn, file, out),
            Event::HaveFile {
                conn,
                to,
                file,
                size,
                blake3,
            } => self.have_file(now_ms, conn, to, file, size, blake3, out),
            Event::GetFile {
                conn,
                owner,
                file,
                eph,
                sig,
            } => self.get_file(now_ms, conn, owner, file, eph, sig, out),
            Event::FileAnswer { conn, req, answer } => {
                self.file_answer(now_ms, conn, req, answer, out)
            }
            Event::LinkUp { link, peer, name } => {
                let events = self.net.link_up(now_ms, link, peer, name, out);
                self.net_events(now_ms, events, out);
            }
            Event::LinkDown { link } => {
                let events = self.net.link_down(now_ms, link, out);
                self.net_events(now_ms, events, out);
            }
            Event::LinkRtt { link, rtt_us } => {
                let events = self.net.link_rtt(now_ms, link, rtt_us, out);
                self.net_events(now_ms, events, out);
            }
            Event::LinkFrame { link, msg } => {
                let events = self.net.link_msg(now_ms, link, msg, out);
                self.net_events(now_ms, events, out);
            }
            Event::Tick => {
                let events = self.net.tick(now_ms, out);
                self.net_events(now_ms, events, out);
            }
            Event::Flush => self.net.flush(out),
        }
    }

    /// The room of a logged-in connection, or an error to it.
    fn room_of(&self, conn: ConnId, out: &mut Vec<Effect>) -> Option<&Room> {
        let session = self.sessions.get(&conn)?;
        let room = session.room.as_ref().and_then(|r| self.rooms.get(r));
        if room.is_none() {
            out.push(err(
                conn,
                ErrorCode::NotInRoom,
                "join a room first (/rooms, /join NAME)",
            ));
        }
        room
    }

    /// A member of `conn`'s room by name, or an error to `conn`.
    fn member(&self, conn: ConnId, name: &str, out: &mut Vec<Effect>) -> Option<Who> {
        let room = self.room_of(conn, out)?;
        let found = match self.online.get(name) {
            Some(c) if room.members.contains(c) => Some(Who::Local(*c)),
            _ => room.remote.get(name).map(|s| Who::Remote(*s)),
        };
        if found.is_none() {
            out.push(err(
                conn,
                ErrorCode::UnknownUser,
                format!("no user {name} in room {}", room.rec.name),
            ));
        }
        found
    }

    fn refused(to: ConnId, from: &str, file: &str, reason: RefuseReason, detail: String) -> Effect {
        Effect::Send {
            to,
            msg: ServerMsg::TransferRefused {
                from: from.to_string(),
                file: file.to_string(),
                reason,
                detail,
            },
        }
    }

    /// Whether a file name may be passed on: short, no control characters.
    fn check_file_name(conn: ConnId, file: &str, out: &mut Vec<Effect>) -> bool {
        let ok =
            !file.is_empty() && file.len() <= MAX_FILE_NAME && !file.chars().any(char::is_control);
        if !ok {
            out.push(err(
                conn,
                ErrorCode::BadRequest,
                format!("a file name has 1 to {MAX_FILE_NAME} bytes and no control characters"),
            ));
        }
        ok
    }

    fn who_has(&mut self, now_ms: u64, conn: ConnId, file: String, out: &mut Vec<Effect>) {
        if !Self::check_file_name(conn, &file, out) {
            return;
        }
        let Some(room) = self.room_of(conn, out) else {
            return;
        };
        if let Err(why) = self.settings.policy.check_name(&file) {
            out.push(Self::refused(
                conn,
                SERVER_SENDER,
                &file,
                RefuseReason::Blocked,
                why,
            ));
            return;
        }
        let others: Vec<ConnId> = room
            .members
            .iter()
            .copied()
            .filter(|c| *c != conn)
            .collect();
        let servers = Self::servers_of(room);
        let room_id = room.rec.id.clone();
        let from = self.sessions[&conn].user.clone();
        for server in servers {
            let msg = NetMsg::WhoHas {
                from: from.clone(),
                room: room_id.clone(),
                file: file.clone(),
            };
            self.net.send(now_ms, server, msg, out);
        }
        if !others.is_empty() {
            out.push(Effect::Broadcast {
                to: others,
                msg: ServerMsg::WhoHas { from, file },
            });
        }
    }

    /// The other servers hosting members of `room`.
    fn servers_of(room: &Room) -> Vec<ServerId> {
        let mut servers: Vec<ServerId> = room.remote.values().copied().collect();
        servers.sort();
        servers.dedup();
        servers
    }

    #[allow(clippy::too_many_arguments)]
    fn have_file(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        to: String,
        file: String,
        size: u64,
        blake3: [u8; 32],
        out: &mut Vec<Effect>,
    ) {
        if !Self::check_file_name(conn, &file, out) {
            return;
        }
        let Some(asker) = self.member(conn, &to, out) else {
            return;
        };
        let from = self.sessions[&conn].user.clone();
        if let Err(why) = self.settings.policy.check_file(&file, size, &blake3) {
            // The answer is not passed on; the asker learns why.
            self.refuse_to(
                now_ms,
                asker,
                &to,
                &from,
                &file,
                RefuseReason::Blocked,
                why,
                out,
            );
            return;
        }
        match asker {
            Who::Local(asker) => out.push(Effect::Send {
                to: asker,
                msg: ServerMsg::HaveFile {
                    from,
                    file,
                    size,
                    blake3,
                },
            }),
            Who::Remote(server) => {
                let msg = NetMsg::HaveFile {
                    from,
                    to,
                    file,
                    size,
                    blake3,
                };
                self.net.send(now_ms, server, msg, out);
            }
        }
    }

    /// Tells an asker, here or at another server, that a request was refused.
    #[allow(clippy::too_many_arguments)]
    fn refuse_to(
        &mut self,
        now_ms: u64,
        asker: Who,
        asker_name: &str,
        owner: &str,
        file: &str,
        reason: RefuseReason,
        detail: String,
        out: &mut Vec<Effect>,
    ) {
        match asker {
            Who::Local(conn) => out.push(Self::refused(conn, owner, file, reason, detail)),
            Who::Remote(server) => {
                let msg = NetMsg::Refused {
                    to: asker_name.to_string(),
                    from: owner.to_string(),
                    file: file.to_string(),
                    reason,
                    detail,
                };
                self.net.send(now_ms, server, msg, out);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn get_file(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        owner: String,
        file: String,
        eph: [u8; 32],
        sig: Vec<u8>,
        out: &mut Vec<Effect>,
    ) {
        if !Self::check_file_name(conn, &file, out) {
            return;
        }
        let Some(owner_at) = self.member(conn, &owner, out) else {
            return;
        };
        if let Err(why) = self.settings.policy.check_name(&file) {
            out.push(Self::refused(
                conn,
                &owner,
                &file,
                RefuseReason::Blocked,
                why,
            ));
            return;
        }
        let asker = &self.sessions[&conn];
        let (from, from_key) = (asker.user.clone(), asker.key);
        match owner_at {
            Who::Local(owner_conn) => self.request(
                now_ms,
                Who::Local(conn),
                from,
                from_key,
                owner_conn,
                file,
                eph,
                sig,
                out,
            ),
            Who::Remote(server) => {
                let msg = NetMsg::GetFile {
                    from,
                    from_key,
                    owner,
                    file,
                    eph,
                    sig,
                };
                self.net.send(now_ms, server, msg, out);
            }
        }
    }

    /// Passes a file request to an owner connected here.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        now_ms: u64,
        asker: Who,
        asker_name: String,
        asker_key: [u8; 32],
        owner: ConnId,
        file: String,
        eph: [u8; 32],
        sig: Vec<u8>,
        out: &mut Vec<Effect>,
    ) {
        let waiting = self
            .requests
            .values()
            .filter(|r| r.asker_name == asker_name)
            .count();
        if waiting >= self.settings.max_pending_requests {
            let why = "too many file requests waiting for an answer";
            match asker {
                Who::Local(conn) => out.push(err(conn, ErrorCode::RateLimited, why)),
                Who::Remote(_) => {
                    let owner_name = self.sessions.get(&owner).map(|s| s.user.clone());
                    self.refuse_to(
                        now_ms,
                        asker,
                        &asker_name,
                        owner_name.as_deref().unwrap_or(SERVER_SENDER),
                        &file,
                        RefuseReason::Blocked,
                        why.to_string(),
                        out,
                    );
                }
            }
            return;
        }
        let req = self.next_request;
        self.next_request += 1;
        self.requests.insert(
            req,
            Request {
                asker,
                asker_name: asker_name.clone(),
                owner,
                file: file.clone(),
            },
        );
        out.push(Effect::Send {
            to: owner,
            msg: ServerMsg::FileRequest {
                req,
                from: asker_name,
                from_key: asker_key,
                file,
                eph,
                sig,
            },
        });
    }

    fn file_answer(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: u64,
        answer: FileAnswer,
        out: &mut Vec<Effect>,
    ) {
        // Only the owner asked can answer, and only once.
        if self.requests.get(&req).is_none_or(|r| r.owner != conn) {
            out.push(err(
                conn,
                ErrorCode::BadRequest,
                format!("no file request {req} for you"),
            ));
            return;
        }
        let Some(r) = self.requests.remove(&req) else {
            return;
        };
        let Some(owner) = self.sessions.get(&conn) else {
            return;
        };
        let asker_here = match r.asker {
            Who::Local(c) => self.sessions.contains_key(&c),
            Who::Remote(s) => self
                .remote
                .get(&r.asker_name)
                .is_some_and(|u| u.server == s),
        };
        if !asker_here {
            return; // the asker is gone
        }
        let (owner_name, owner_key, owner_ip) = (owner.user.clone(), owner.key, owner.ip);
        match answer {
            FileAnswer::Refuse(reason) => {
                let detail = match reason {
                    RefuseReason::Busy => format!("{owner_name} is busy with other uploads"),
                    RefuseReason::NotFound => format!("{owner_name} has no file {}", r.file),
                    RefuseReason::NotShared => format!("{owner_name} does not share {}", r.file),
                    RefuseReason::BadName => format!("{:?} is not a shareable file name", r.file),
                    RefuseReason::Blocked => "blocked by the owner".to_string(),
                };
                self.refuse_to(
                    now_ms,
                    r.asker,
                    &r.asker_name,
                    &owner_name,
                    &r.file,
                    reason,
                    detail,
                    out,
                );
            }
            FileAnswer::Accept(offer) => {
                if let Err(why) =
                    self.settings
                        .policy
                        .check_file(&r.file, offer.size, &offer.blake3)
                {
                    self.refuse_to(
                        now_ms,
                        r.asker,
                        &r.asker_name,
                        &owner_name,
                        &r.file,
                        RefuseReason::Blocked,
                        why,
                        out,
                    );
                    return;
                }
                let addr = SocketAddr::new(owner_ip, offer.port);
                match r.asker {
                    Who::Local(asker) => out.push(Effect::Send {
                        to: asker,
                        msg: ServerMsg::FileOffer {
                            from: owner_name,
                            from_key: owner_key,
                            file: r.file,
                            addr,
                            offer,
                        },
                    }),
                    Who::Remote(server) => {
                        let msg = NetMsg::FileOffer {
                            to: r.asker_name,
                            from: owner_name,
                            from_key: owner_key,
                            file: r.file,
                            addr,
                            offer,
                        };
                        self.net.send(now_ms, server, msg, out);
                    }
                }
            }
        }
    }

    fn login(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        user: String,
        key: [u8; 32],
        ip: IpAddr,
        out: &mut Vec<Effect>,
    ) {
        let refuse = |code, message: String| Effect::Close {
            conn,
            last: Some(ServerMsg::error(code, message)),
        };
        if self.sessions.contains_key(&conn) {
            out.push(err(conn, ErrorCode::BadRequest, "already logged in"));
            return;
        }
        if let Err(why) = check_user_name(&user) {
            out.push(refuse(ErrorCode::InvalidName, why));
            return;
        }
        if let Some(reason) = self.bans.get(&user) {
            out.push(refuse(
                ErrorCode::Banned,
                format!("user {user} is banned from this server: {reason}"),
            ));
            return;
        }
        match self.bindings.get(&user) {
            Some((bound, _)) if *bound != key => {
                out.push(refuse(
                    ErrorCode::NameTaken,
                    format!("user name {user} belongs to another identity key in this network"),
                ));
                return;
            }
            Some(_) => {}
            None => {
                self.bindings.insert(user.clone(), (key, now_ms));
                out.push(Effect::Persist(Persist::Bind {
                    user: user.clone(),
                    public_key: key,
                    bound_ms: now_ms,
                }));
                let bind = NetMsg::Bind(chatdrop_proto::link::NetBinding {
                    user: user.clone(),
                    key,
                    bound_ms: now_ms,
                });
                self.net.send_all(now_ms, &bind, out);
            }
        }
        if self.online.contains_key(&user) {
            out.push(refuse(
                ErrorCode::NameInUse,
                format!("user {user} is already connected"),
            ));
            return;
        }
        if let Some(other) = self.remote.get(&user) {
            if other.key != key {
                out.push(refuse(
                    ErrorCode::NameInUse,
                    format!(
                        "user {user} is connected to server {}",
                        self.net.name_of(&other.server)
                    ),
                ));
                return;
            }
            // The same identity moved here (its server failed, or it picked
            // a closer one): this login replaces the one over there, which
            // that server closes when it hears of this one.
            self.remove_remote(&user, LeaveReason::Left, out);
        }
        self.online.insert(user.clone(), conn);
        self.sessions.insert(
            conn,
            Session {
                user: user.clone(),
                key,
                ip,
                room: None,
                since_ms: now_ms,
                joining: None,
            },
        );
        let online = NetMsg::Online(self.net_user(conn));
        self.net.send_all(now_ms, &online, out);
        out.push(Effect::Send {
            to: conn,
            msg: ServerMsg::LoggedIn { user },
        });
    }

    fn room_list(&self) -> ServerMsg {
        ServerMsg::Rooms {
            rooms: self
                .rooms
                .values()
                .map(|r| {
                    let private = r.rec.password_hash.is_some();
                    RoomInfo {
                        name: r.rec.name.clone(),
                        private,
                        members: (!private).then_some((r.members.len() + r.remote.len()) as u32),
                    }
                })
                .collect(),
        }
    }

    fn create(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        name: String,
        password_hash: Option<String>,
        room_id: String,
        out: &mut Vec<Effect>,
    ) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        if let Err(why) = check_room_name(&name) {
            out.push(err(conn, ErrorCode::InvalidName, why));
            return;
        }
        if self.rooms.contains_key(&name) {
            out.push(err(
                conn,
                ErrorCode::RoomExists,
                format!("room {name} exists already; join it instead"),
            ));
            return;
        }
        let rec = RoomRecord {
            name: name.clone(),
            id: room_id,
            creator: session.user.clone(),
            password_hash,
            created_ms: now_ms,
        };
        out.push(Effect::Persist(Persist::Room(rec.clone())));
        let announce = NetMsg::Room(remote::net_room(&rec));
        self.net.send_all(now_ms, &announce, out);
        self.add_room(rec);
        self.enter_room(now_ms, conn, &name, true, out);
    }

    /// Adds a room record (not yet persisted by this call).
    fn add_room(&mut self, rec: RoomRecord) {
        self.room_ids.insert(rec.id.clone(), rec.name.clone());
        self.rooms.insert(
            rec.name.clone(),
            Room {
                rec,
                members: Vec::new(),
                remote: BTreeMap::new(),
                history: VecDeque::new(),
                next_seq: 1,
            },
        );
    }

    fn join(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        name: String,
        password: Option<String>,
        out: &mut Vec<Effect>,
    ) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let Some(room) = self.rooms.get(&name) else {
            out.push(err(
                conn,
                ErrorCode::NoSuchRoom,
                format!("no room named {name}"),
            ));
            return;
        };
        let Some(hash) = &room.rec.password_hash else {
            self.enter_room(now_ms, conn, &name, false, out);
            return;
        };
        if session.room.as_deref() == Some(name.as_str()) {
            // Already a member: no password needed to be told again.
            self.enter_room(now_ms, conn, &name, false, out);
            return;
        }
        if session.joining.is_some() {
            // One password check per connection at a time: checks are slow
            // by design, and a client must not queue up unbounded work.
            out.push(err(
                conn,
                ErrorCode::RateLimited,
                "a password check is already under way; wait for its answer",
            ));
            return;
        }
        let Some(password) = password else {
            out.push(err(
                conn,
                ErrorCode::PasswordRequired,
                format!("room {name} is private; give its password"),
            ));
            return;
        };
        if let Some(f) = self.failures.get(&session.user) {
            if f.locked_until_ms > now_ms {
                let secs = (f.locked_until_ms - now_ms).div_ceil(1000);
                out.push(err(
                    conn,
                    ErrorCode::RateLimited,
                    format!("too many wrong passwords; try again in {secs} s"),
                ));
                return;
            }
        }
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        session.joining = Some((name.clone(), attempt));
        out.push(Effect::CheckPassword {
            conn,
            room: name,
            attempt,
            hash: hash.clone(),
            password,
        });
    }

    fn password_checked(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        _room: String,
        attempt: u64,
        ok: bool,
        out: &mut Vec<Effect>,
    ) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        // The attempt number says which request this answers; the room is
        // the session's, which follows a rename during the check.
        let Some((room, _)) = session.joining.clone().filter(|(_, a)| *a == attempt) else {
            return; // a newer request replaced this one
        };
        session.joining = None;
        if !self.rooms.contains_key(&room) {
            out.push(err(
                conn,
                ErrorCode::NoSuchRoom,
                format!("no room named {room}"),
            ));
            return;
        }
        if ok {
            self.failures.remove(&session.user);
            self.enter_room(now_ms, conn, &room, false, out);
            return;
        }
        let f = self.failures.entry(session.user.clone()).or_default();
        f.count += 1;
        if f.count >= self.settings.free_password_failures {
            let doublings = (f.count - self.settings.free_password_failures).min(16);
            let wait = (1000u64 << doublings).min(self.settings.max_lockout_ms);
            f.locked_until_ms = now_ms + wait;
        }
        out.push(err(
            conn,
            ErrorCode::WrongPassword,
            format!("wrong password for room {room}"),
        ));
    }

    /// Puts `conn` in room `name` (which exists), leaving its current room.
    fn enter_room(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        name: &str,
        created: bool,
        out: &mut Vec<Effect>,
    ) {
        let already = self
            .sessions
            .get(&conn)
            .is_some_and(|s| s.room.as_deref() == Some(name));
        if !already {
            // The other servers learn of the move from the `Enter` below.
            if let Some(old) = self.leave_room(conn, LeaveReason::Left, false, now_ms, out) {
                out.push(Effect::Send {
                    to: conn,
                    msg: ServerMsg::Left { room: old },
                });
            }
        }
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        session.room = Some(name.to_string());
        let user = session.user.clone();
        let others: Vec<ConnId> = room.members.clone();
        if !already {
            room.members.push(conn);
        }
        let room = &self.rooms[name];
        let room_id = room.rec.id.clone();
        out.push(Effect::Send {
            to: conn,
            msg: ServerMsg::Joined {
                room: name.to_string(),
                room_id: room_id.clone(),
                created,
                peers: self.names(room, Some(conn)),
            },
        });
        for h in &room.history {
            out.push(Effect::Send {
                to: conn,
                msg: ServerMsg::Message(ChatLine {
                    room: Some(name.to_string()),
                    from: h.from.clone(),
                    to: Target::All,
                    text: h.text.clone(),
                    ts: h.ts,
                    history: true,
                }),
            });
        }
        if already {
            return;
        }
        if !others.is_empty() {
            out.push(Effect::Broadcast {
                to: others,
                msg: ServerMsg::PeerJoined {
                    room: name.to_string(),
                    user: user.clone(),
                },
            });
        }
        let enter = NetMsg::Enter {
            user,
            room: room_id,
        };
        self.net.send_all(now_ms, &enter, out);
    }

    /// Takes `conn` out of its room, telling the others (and, with
    /// `announce`, the other servers). Returns the room.
    fn leave_room(
        &mut self,
        conn: ConnId,
        reason: LeaveReason,
        announce: bool,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) -> Option<String> {
        let session = self.sessions.get_mut(&conn)?;
        let name = session.room.take()?;
        let user = session.user.clone();
        if let Some(room) = self.rooms.get_mut(&name) {
            room.members.retain(|c| *c != conn);
            if !room.members.is_empty() {
                out.push(Effect::Broadcast {
                    to: room.members.clone(),
                    msg: ServerMsg::PeerLeft {
                        room: name.clone(),
                        user: user.clone(),
                        reason,
                    },
                });
            }
        }
        if announce {
            let leave = NetMsg::Leave { user, reason };
            self.net.send_all(now_ms, &leave, out);
        }
        Some(name)
    }

    /// Forgets a logged-in connection, telling its room and the network.
    fn logout(&mut self, now_ms: u64, conn: ConnId, reason: LeaveReason, out: &mut Vec<Effect>) {
        self.leave_room(conn, reason, false, now_ms, out);
        self.requests
            .retain(|_, r| r.asker != Who::Local(conn) && r.owner != conn);
        if let Some(session) = self.sessions.remove(&conn) {
            self.online.remove(&session.user);
            let offline = NetMsg::Offline {
                user: session.user,
                reason,
            };
            self.net.send_all(now_ms, &offline, out);
        }
    }

    /// Names of a room's members: those connected here in the order they
    /// joined, then those at other servers.
    fn names(&self, room: &Room, except: Option<ConnId>) -> Vec<String> {
        room.members
            .iter()
            .filter(|c| Some(**c) != except)
            .filter_map(|c| self.sessions.get(c).map(|s| s.user.clone()))
            .chain(room.remote.keys().cloned())
            .collect()
    }

    fn say(&mut self, now_ms: u64, conn: ConnId, to: Target, text: String, out: &mut Vec<Effect>) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        if text.trim().is_empty() {
            out.push(err(conn, ErrorCode::BadRequest, "empty message"));
            return;
        }
        if text.chars().any(char::is_control) {
            // Escape sequences and line breaks would let a sender forge lines
            // or take over its peers' terminals.
            out.push(err(
                conn,
                ErrorCode::BadRequest,
                "messages may not contain control characters",
            ));
            return;
        }
        if text.len() > MAX_TEXT_BYTES {
            out.push(err(
                conn,
                ErrorCode::TooLong,
                format!(
                    "message of {} bytes is over the {MAX_TEXT_BYTES}-byte limit",
                    text.len()
                ),
            ));
            return;
        }
        let from = session.user.clone();
        let line = |room: Option<String>, to: Target, text: String| {
            ServerMsg::Message(ChatLine {
                room,
                from: from.clone(),
                to,
                text,
                ts: now_ms,
                history: false,
            })
        };
        if to == Target::Server {
            out.push(Effect::Console(format!("@{from}|{text}")));
            out.push(Effect::Send {
                to: conn,
                msg: line(session.room.clone(), Target::Server, text),
            });
            return;
        }
        let Some(room_name) = session.room.clone() else {
            out.push(err(
                conn,
                ErrorCode::NotInRoom,
                "join a room first (/rooms, /join NAME)",
            ));
            return;
        };
        let Some(room) = self.rooms.get(&room_name) else {
            return;
        };
        match to {
            Target::All => {
                let servers: Vec<ServerId> = self.net.reachable().copied().collect();
                let room_id = room.rec.id.clone();
                self.room_line(&room_name, &from, &text, now_ms, out);
                // Every server keeps the room's history, so the line goes to
                // all of them, not only to those hosting members.
                for server in servers {
                    let msg = NetMsg::Say {
                        from: from.clone(),
                        room: room_id.clone(),
                        to: Target::All,
                        text: text.clone(),
                        ts: now_ms,
                    };
                    self.net.send(now_ms, server, msg, out);
                }
            }
            Target::User(name) => {
                let local = self
                    .online
                    .get(&name)
                    .copied()
                    .filter(|c| room.members.contains(c));
                let remote = room.remote.get(&name).copied();
                let room_id = room.rec.id.clone();
                let msg = line(
                    Some(room_name.clone()),
                    Target::User(name.clone()),
                    text.clone(),
                );
                match (local, remote) {
                    (Some(target), _) if target != conn => {
                        // The sender gets the line back as its receipt.
                        out.push(Effect::Broadcast {
                            to: vec![target, conn],
                            msg,
                        });
                    }
                    (Some(_), _) => out.push(Effect::Send { to: conn, msg }),
                    (None, Some(server)) => {
                        let net = NetMsg::Say {
                            from: from.clone(),
                            room: room_id,
                            to: Target::User(name),
                            text,
                            ts: now_ms,
                        };
                        self.net.send(now_ms, server, net, out);
                        out.push(Effect::Send { to: conn, msg });
                    }
                    (None, None) => out.push(err(
                        conn,
                        ErrorCode::UnknownUser,
                        format!("no user {name} in room {room_name}"),
                    )),
                }
            }
            Target::Server => unreachable!("handled above"),
        }
    }

    /// Adds a line to a room's history and delivers it to the room's
    /// members connected here.
    fn room_line(
        &mut self,
        room_name: &str,
        from: &str,
        text: &str,
        ts: u64,
        out: &mut Vec<Effect>,
    ) {
        let keep = self.settings.history_len;
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        let entry = HistoryEntry {
            seq: room.next_seq,
            from: from.to_string(),
            text: text.to_string(),
            ts,
        };
        room.next_seq += 1;
        if keep > 0 {
            if room.history.len() >= keep as usize {
                room.history.pop_front();
            }
            room.history.push_back(entry.clone());
            out.push(Effect::Persist(Persist::History {
                room: room_name.to_string(),
                entry,
                keep,
            }));
        }
        if !room.members.is_empty() {
            out.push(Effect::Broadcast {
                to: room.members.clone(),
                msg: ServerMsg::Message(ChatLine {
                    room: Some(room_name.to_string()),
                    from: from.to_string(),
                    to: Target::All,
                    text: text.to_string(),
                    ts,
                    history: false,
                }),
            });
        }
    }

    fn admin(&mut self, now_ms: u64, cmd: AdminCommand, out: &mut Vec<Effect>) {
        let console = |s: String| Effect::Console(s);
        match cmd {
            AdminCommand::Help => out.push(console(ADMIN_HELP.to_string())),
            AdminCommand::Policy => {
                for line in self.settings.policy.describe() {
                    out.push(console(line));
                }
            }
            AdminCommand::ToSelf { text } => out.push(console(format!("@server|{text}"))),
            AdminCommand::Links => {
                for line in self.net.describe_links() {
                    out.push(console(line));
                }
            }
            AdminCommand::Network => {
                for line in self.net.describe_network() {
                    out.push(console(line));
                }
            }
            AdminCommand::ToUser { user, text } => {
                let Some(conn) = self.online.get(&user).copied() else {
                    out.push(console(self.not_here(&user)));
                    return;
                };
                let room = self.sessions.get(&conn).and_then(|s| s.room.clone());
                out.push(Effect::Send {
                    to: conn,
                    msg: ServerMsg::Message(ChatLine {
                        room,
                        from: SERVER_SENDER.into(),
                        to: Target::User(user.clone()),
                        text,
                        ts: now_ms,
                        history: false,
                    }),
                });
                out.push(console(format!("sent to {user}")));
            }
            AdminCommand::ToAll { text } => {
                // One frame per room, since each carries its room's name.
                let mut by_room: BTreeMap<Option<String>, Vec<ConnId>> = BTreeMap::new();
                for (conn, s) in &self.sessions {
                    by_room.entry(s.room.clone()).or_default().push(*conn);
                }
                let n = self.sessions.len();
                for (room, conns) in by_room {
                    out.push(Effect::Broadcast {
                        to: conns,
                        msg: ServerMsg::Message(ChatLine {
                            room,
                            from: SERVER_SENDER.into(),
                            to: Target::All,
                            text: text.clone(),
                            ts: now_ms,
                            history: false,
                        }),
                    });
                }
                out.push(console(format!("sent to {n} users")));
            }
            AdminCommand::Kick { user, reason } => {
                if self.remove_user(now_ms, &user, LeaveReason::Kicked, reason, out) {
                    out.push(console(format!("kicked {user}")));
                } else {
                    out.push(console(self.not_here(&user)));
                }
            }
            AdminCommand::Ban { user, reason } => {
                self.bans.insert(user.clone(), reason.clone());
                out.push(Effect::Persist(Persist::Ban {
                    user: user.clone(),
                    reason: reason.clone(),
                }));
                let was_online = self.remove_user(
                    now_ms,
                    &user,
                    LeaveReason::Banned,
                    format!("banned: {reason}"),
                    out,
                );
                out.push(console(format!(
                    "banned {user}{}",
                    if was_online {
                        " and disconnected it"
                    } else {
                        ""
                    }
                )));
            }
            AdminCommand::Unban { user } => {
                if self.bans.remove(&user).is_some() {
                    out.push(Effect::Persist(Persist::Unban { user: user.clone() }));
                    out.push(console(format!("unbanned {user}")));
                } else {
                    out.push(console(format!("{user} is not banned")));
                }
            }
            AdminCommand::Rooms => {
                if self.rooms.is_empty() {
                    out.push(console("no rooms".into()));
                }
                for room in self.rooms.values() {
                    out.push(console(format!(
                        "{} ({}, id {}, created by {}, {} members): {}",
                        room.rec.name,
                        if room.rec.password_hash.is_some() {
                            "private"
                        } else {
                            "public"
                        },
                        room.rec.id,
                        room.rec.creator,
                        room.members.len() + room.remote.len(),
                        self.names(room, None).join(", ")
                    )));
                }
            }
            AdminCommand::Peers { room } => match self.rooms.get(&room) {
                Some(r) => out.push(console(format!(
                    "{room}: {}",
                    self.names(r, None).join(", ")
                ))),
                None => out.push(console(format!("no room named {room}"))),
            },
            AdminCommand::Exit => {
                let mut conns: Vec<ConnId> = self.sessions.keys().copied().collect();
                conns.sort();
                for conn in conns {
                    out.push(Effect::Close {
                        conn,
                        last: Some(ServerMsg::Bye {
                            reason: "the server is shutting down".into(),
                        }),
                    });
                }
                // The other servers see these users go when the links drop.
                self.sessions.clear();
                self.online.clear();
                for room in self.rooms.values_mut() {
                    room.members.clear();
                }
                out.push(Effect::Shutdown);
            }
        }
    }

    /// Why the console cannot reach `user` here.
    fn not_here(&self, user: &str) -> String {
        match self.remote.get(user) {
            Some(u) => format!(
                "{user} is connected to server {}; use that server's console",
                self.net.name_of(&u.server)
            ),
            None => format!("no user {user} is online"),
        }
    }

    /// Disconnects an online user by admin decision. Returns whether it was
    /// online.
    fn remove_user(
        &mut self,
        now_ms: u64,
        user: &str,
        why: LeaveReason,
        reason: String,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(conn) = self.online.get(user).copied() else {
            return false;
        };
        self.logout(now_ms, conn, why, out);
        out.push(Effect::Close {
            conn,
            last: Some(ServerMsg::Kicked { reason }),
        });
        true
    }
}
