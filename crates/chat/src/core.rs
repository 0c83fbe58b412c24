//! The chat core: one place that decides who is where and who receives what.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use chatdrop_proto::limits::{MAX_FILE_NAME, MAX_TEXT_BYTES};
use chatdrop_proto::names::{check_room_name, check_user_name};
use chatdrop_proto::{
    ChatLine, ErrorCode, FileAnswer, LeaveReason, RefuseReason, RoomInfo, ServerMsg, Target,
};

use crate::admin::{AdminCommand, ADMIN_HELP};
use crate::event::{ConnId, Effect, Event, Persist};
use crate::state::{HistoryEntry, RoomRecord, Settings, Snapshot};

/// Name shown as the sender of messages typed at the admin console.
pub const SERVER_SENDER: &str = "server";

#[derive(Debug)]
struct Room {
    rec: RoomRecord,
    /// Members in the order they joined.
    members: Vec<ConnId>,
    history: VecDeque<HistoryEntry>,
    next_seq: u64,
}

#[derive(Debug)]
struct Session {
    user: String,
    key: [u8; 32],
    ip: IpAddr,
    room: Option<String>,
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
    bindings: HashMap<String, [u8; 32]>,
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
    asker: ConnId,
    owner: ConnId,
    file: String,
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
        let rooms = snapshot
            .rooms
            .into_iter()
            .map(|(rec, history)| {
                let next_seq = history.last().map_or(1, |h| h.seq + 1);
                let skip = history.len().saturating_sub(keep);
                let history = history.into_iter().skip(skip).collect();
                let room = Room {
                    rec,
                    members: Vec::new(),
                    history,
                    next_seq,
                };
                (room.rec.name.clone(), room)
            })
            .collect();
        Chat {
            settings,
            rooms,
            sessions: HashMap::new(),
            online: HashMap::new(),
            bindings: snapshot
                .bindings
                .into_iter()
                .map(|b| (b.user, b.public_key))
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
            } => self.login(conn, user, public_key, ip, out),
            Event::Admin(cmd) => self.admin(now_ms, cmd, out),
            Event::Disconnected { conn } => {
                if self.sessions.contains_key(&conn) {
                    self.logout(conn, LeaveReason::Lost, out);
                }
            }
            Event::Quit { conn } => {
                if self.sessions.contains_key(&conn) {
                    self.logout(conn, LeaveReason::Left, out);
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
                match self.leave_room(conn, LeaveReason::Left, out) {
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
                            peers: self.names(&room.members, None),
                        },
                    }),
                    None => out.push(err(conn, ErrorCode::NotInRoom, "you are not in a room")),
                }
            }
            Event::Say { conn, to, text } => self.say(now_ms, conn, to, text, out),
            Event::WhoHas { conn, file } => self.who_has(conn, file, out),
            Event::HaveFile {
                conn,
                to,
                file,
                size,
                blake3,
            } => self.have_file(conn, to, file, size, blake3, out),
            Event::GetFile {
                conn,
                owner,
                file,
                eph,
                sig,
            } => self.get_file(conn, owner, file, eph, sig, out),
            Event::FileAnswer { conn, req, answer } => self.file_answer(conn, req, answer, out),
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
    fn member(&self, conn: ConnId, name: &str, out: &mut Vec<Effect>) -> Option<ConnId> {
        let room = self.room_of(conn, out)?;
        let found = self
            .online
            .get(name)
            .copied()
            .filter(|c| room.members.contains(c));
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

    fn who_has(&mut self, conn: ConnId, file: String, out: &mut Vec<Effect>) {
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
        let from = self.sessions[&conn].user.clone();
        if !others.is_empty() {
            out.push(Effect::Broadcast {
                to: others,
                msg: ServerMsg::WhoHas { from, file },
            });
        }
    }

    fn have_file(
        &mut self,
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
            out.push(Self::refused(
                asker,
                &from,
                &file,
                RefuseReason::Blocked,
                why,
            ));
            return;
        }
        out.push(Effect::Send {
            to: asker,
            msg: ServerMsg::HaveFile {
                from,
                file,
                size,
                blake3,
            },
        });
    }

    fn get_file(
        &mut self,
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
        let Some(owner_conn) = self.member(conn, &owner, out) else {
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
        let waiting = self.requests.values().filter(|r| r.asker == conn).count();
        if waiting >= self.settings.max_pending_requests {
            out.push(err(
                conn,
                ErrorCode::RateLimited,
                "too many file requests waiting for an answer",
            ));
            return;
        }
        let req = self.next_request;
        self.next_request += 1;
        self.requests.insert(
            req,
            Request {
                asker: conn,
                owner: owner_conn,
                file: file.clone(),
            },
        );
        let asker = &self.sessions[&conn];
        out.push(Effect::Send {
            to: owner_conn,
            msg: ServerMsg::FileRequest {
                req,
                from: asker.user.clone(),
                from_key: asker.key,
                file,
                eph,
                sig,
            },
        });
    }

    fn file_answer(&mut self, conn: ConnId, req: u64, answer: FileAnswer, out: &mut Vec<Effect>) {
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
        if !self.sessions.contains_key(&r.asker) {
            return; // the asker is gone
        }
        match answer {
            FileAnswer::Refuse(reason) => {
                let detail = match reason {
                    RefuseReason::Busy => format!("{} is busy with other uploads", owner.user),
                    RefuseReason::NotFound => format!("{} has no file {}", owner.user, r.file),
                    RefuseReason::NotShared => format!("{} does not share {}", owner.user, r.file),
                    RefuseReason::BadName => format!("{:?} is not a shareable file name", r.file),
                    RefuseReason::Blocked => "blocked by the owner".to_string(),
                };
                out.push(Self::refused(r.asker, &owner.user, &r.file, reason, detail));
            }
            FileAnswer::Accept(offer) => {
                if let Err(why) =
                    self.settings
                        .policy
                        .check_file(&r.file, offer.size, &offer.blake3)
                {
                    out.push(Self::refused(
                        r.asker,
                        &owner.user,
                        &r.file,
                        RefuseReason::Blocked,
                        why,
                    ));
                    return;
                }
                out.push(Effect::Send {
                    to: r.asker,
                    msg: ServerMsg::FileOffer {
                        from: owner.user.clone(),
                        from_key: owner.key,
                        file: r.file,
                        addr: SocketAddr::new(owner.ip, offer.port),
                        offer,
                    },
                });
            }
        }
    }

    fn login(
        &mut self,
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
            Some(bound) if *bound != key => {
                out.push(refuse(
                    ErrorCode::NameTaken,
                    format!("user name {user} belongs to another identity key on this server"),
                ));
                return;
            }
            Some(_) => {}
            None => {
                self.bindings.insert(user.clone(), key);
                out.push(Effect::Persist(Persist::Bind {
                    user: user.clone(),
                    public_key: key,
                }));
            }
        }
        if self.online.contains_key(&user) {
            out.push(refuse(
                ErrorCode::NameInUse,
                format!("user {user} is already connected"),
            ));
            return;
        }
        self.online.insert(user.clone(), conn);
        self.sessions.insert(
            conn,
            Session {
                user: user.clone(),
                key,
                ip,
                room: None,
                joining: None,
            },
        );
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
                        members: (!private).then_some(r.members.len() as u32),
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
        self.rooms.insert(
            name.clone(),
            Room {
                rec,
                members: Vec::new(),
                history: VecDeque::new(),
                next_seq: 1,
            },
        );
        self.enter_room(conn, &name, true, out);
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
            self.enter_room(conn, &name, false, out);
            return;
        };
        if session.room.as_deref() == Some(name.as_str()) {
            // Already a member: no password needed to be told again.
            self.enter_room(conn, &name, false, out);
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
        room: String,
        attempt: u64,
        ok: bool,
        out: &mut Vec<Effect>,
    ) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.joining.as_ref() != Some(&(room.clone(), attempt)) {
            return; // a newer request replaced this one
        }
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
            self.enter_room(conn, &room, false, out);
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
    fn enter_room(&mut self, conn: ConnId, name: &str, created: bool, out: &mut Vec<Effect>) {
        let already = self
            .sessions
            .get(&conn)
            .is_some_and(|s| s.room.as_deref() == Some(name));
        if !already {
            if let Some(old) = self.leave_room(conn, LeaveReason::Left, out) {
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
        out.push(Effect::Send {
            to: conn,
            msg: ServerMsg::Joined {
                room: name.to_string(),
                room_id: room.rec.id.clone(),
                created,
                peers: self.names(&room.members, Some(conn)),
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
        if !already && !others.is_empty() {
            out.push(Effect::Broadcast {
                to: others,
                msg: ServerMsg::PeerJoined {
                    room: name.to_string(),
                    user,
                },
            });
        }
    }

    /// Takes `conn` out of its room, telling the others. Returns the room.
    fn leave_room(
        &mut self,
        conn: ConnId,
        reason: LeaveReason,
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
                        user,
                        reason,
                    },
                });
            }
        }
        Some(name)
    }

    /// Forgets a logged-in connection, telling its room.
    fn logout(&mut self, conn: ConnId, reason: LeaveReason, out: &mut Vec<Effect>) {
        self.leave_room(conn, reason, out);
        self.requests
            .retain(|_, r| r.asker != conn && r.owner != conn);
        if let Some(session) = self.sessions.remove(&conn) {
            self.online.remove(&session.user);
        }
    }

    fn names(&self, members: &[ConnId], except: Option<ConnId>) -> Vec<String> {
        members
            .iter()
            .filter(|c| Some(**c) != except)
            .filter_map(|c| self.sessions.get(c).map(|s| s.user.clone()))
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
        let keep = self.settings.history_len;
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return;
        };
        match to {
            Target::All => {
                let entry = HistoryEntry {
                    seq: room.next_seq,
                    from: from.clone(),
                    text: text.clone(),
                    ts: now_ms,
                };
                room.next_seq += 1;
                if keep > 0 {
                    if room.history.len() >= keep as usize {
                        room.history.pop_front();
                    }
                    room.history.push_back(entry.clone());
                    out.push(Effect::Persist(Persist::History {
                        room: room_name.clone(),
                        entry,
                        keep,
                    }));
                }
                out.push(Effect::Broadcast {
                    to: room.members.clone(),
                    msg: line(Some(room_name), Target::All, text),
                });
            }
            Target::User(name) => {
                let target = self
                    .online
                    .get(&name)
                    .copied()
                    .filter(|c| room.members.contains(c));
                let Some(target) = target else {
                    out.push(err(
                        conn,
                        ErrorCode::UnknownUser,
                        format!("no user {name} in room {room_name}"),
                    ));
                    return;
                };
                let msg = line(Some(room_name), Target::User(name), text);
                if target != conn {
                    // The sender gets the line back as its receipt.
                    out.push(Effect::Broadcast {
                        to: vec![target, conn],
                        msg,
                    });
                } else {
                    out.push(Effect::Send { to: conn, msg });
                }
            }
            Target::Server => unreachable!("handled above"),
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
            AdminCommand::ToUser { user, text } => {
                let Some(conn) = self.online.get(&user).copied() else {
                    out.push(console(format!("no user {user} is online")));
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
                if self.remove_user(&user, LeaveReason::Kicked, reason, out) {
                    out.push(console(format!("kicked {user}")));
                } else {
                    out.push(console(format!("no user {user} is online")));
                }
            }
            AdminCommand::Ban { user, reason } => {
                self.bans.insert(user.clone(), reason.clone());
                out.push(Effect::Persist(Persist::Ban {
                    user: user.clone(),
                    reason: reason.clone(),
                }));
                let was_online =
                    self.remove_user(&user, LeaveReason::Banned, format!("banned: {reason}"), out);
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
                        room.members.len(),
                        self.names(&room.members, None).join(", ")
                    )));
                }
            }
            AdminCommand::Peers { room } => match self.rooms.get(&room) {
                Some(r) => out.push(console(format!(
                    "{room}: {}",
                    self.names(&r.members, None).join(", ")
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
                self.sessions.clear();
                self.online.clear();
                for room in self.rooms.values_mut() {
                    room.members.clear();
                }
                out.push(Effect::Shutdown);
            }
        }
    }

    /// Disconnects an online user by admin decision. Returns whether it was
    /// online.
    fn remove_user(
        &mut self,
        user: &str,
        why: LeaveReason,
        reason: String,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(conn) = self.online.get(user).copied() else {
            return false;
        };
        self.logout(conn, why, out);
        out.push(Effect::Close {
            conn,
            last: Some(ServerMsg::Kicked { reason }),
        });
        true
    }
}
