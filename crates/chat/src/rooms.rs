//! Rooms: listing, creating, joining (with the password check and its
//! lock-out), leaving, who is in one; and the same across the network:
//! rooms heard of from other servers, their users entering and leaving, and
//! the rule that settles two rooms of one name when two parts of the network
//! merge.
//!
//! Names that differ only in case or in look-alike letters (same
//! [`name_key`]: `Lobby`, `LOBBY`, `1obby`) are one room name: creating
//! one when another exists is refused, and joining by any of them joins
//! the room, which keeps the spelling it was created with.
//!
//! Rooms are known on every server. A clash (one name created in two places
//! while they could not hear of each other) is settled the same way on every
//! server, so all agree without talking it over: the room created earlier
//! keeps the name, ties going to the smaller id; the other is renamed with
//! the start of its id. A room from another server takes the name from one
//! of ours only if it can be news (see [`crate::contact`]); if not, it is
//! the one renamed.

use std::sync::Arc;

use chatdrop_proto::limits::{MAX_ROOMS_JOINED, ROOM_PAGE};
use chatdrop_proto::link::{NetMsg, NetRoom};
use chatdrop_proto::names::{check_room_name, name_key};
use chatdrop_proto::{ErrorCode, LeaveReason, ServerMsg};

use crate::chat::{err, Chat};
use crate::contact::Source;
use crate::event::{ConnId, Effect, Persist};
use crate::login::Session;
use crate::room::{net_room, Room};
use crate::state::RoomRecord;

/// Whether `session` has a password check or hash under way, refusing
/// another if so: they are slow by design, and a client must not queue up
/// unbounded work.
fn password_busy(session: &Session, conn: ConnId, out: &mut Vec<Effect>) -> bool {
    let busy = session.joining.is_some() || session.creating.is_some();
    if busy {
        out.push(err(
            conn,
            ErrorCode::RateLimited,
            "a password is already being checked or hashed; wait for its answer",
        ));
    }
    busy
}

/// The name a room takes when it loses a name clash: its name with the
/// start of its id (or, with `long`, all of it), within the length limit.
fn clash_name(name: &str, id: &str, long: bool) -> String {
    let tag: String = id.chars().take(if long { 32 } else { 6 }).collect();
    let room_max = chatdrop_proto::limits::MAX_ROOM_NAME;
    let keep = room_max.saturating_sub(tag.len() + 1);
    let base: String = name.chars().take(keep).collect();
    format!("{base}-{tag}")
}

impl Chat {
    /// The name of the room meant by `name`: the room of exactly that
    /// name, or else the one whose name is the same by [`name_key`].
    pub(crate) fn find_room(&self, name: &str) -> Option<String> {
        if self.rooms.contains_key(name) {
            return Some(name.to_string());
        }
        self.room_keys.get(&name_key(name)).cloned()
    }

    /// A page of the rooms as a client sees them: [`ROOM_PAGE`] at most,
    /// from the first name after `after`.
    pub(crate) fn room_list(&self, after: Option<&str>) -> ServerMsg {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, |a| Excluded(a.to_string()));
        let mut page = self.rooms.range((from, Unbounded));
        let rooms: Vec<_> = page
            .by_ref()
            .take(ROOM_PAGE)
            .map(|(_, r)| r.info())
            .collect();
        let next = match page.next() {
            Some(_) => rooms.last().map(|r| r.name.clone()),
            None => None,
        };
        ServerMsg::Rooms {
            rooms,
            total: u32::try_from(self.rooms.len()).unwrap_or(u32::MAX),
            next,
        }
    }

    /// `GetPeers`: who is in room `name`, one the asker is in.
    pub(crate) fn peers(&self, conn: ConnId, name: &str, out: &mut Vec<Effect>) {
        let mut refused = Vec::new();
        match self.joined(conn, name, &mut refused) {
            Some(room) => out.push(Effect::Send {
                to: conn,
                msg: ServerMsg::Peers {
                    room: room.name().to_string(),
                    peers: self.names(room, None),
                },
            }),
            None => out.extend(refused),
        }
    }

    /// `CreateRoom`: checked first, then made at once (a public room) or
    /// once its password is hashed off the core's thread. Nothing is hashed
    /// for a request that would be refused anyway.
    pub(crate) fn create(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        name: String,
        password: Option<String>,
        room_id: String,
        out: &mut Vec<Effect>,
    ) {
        if let Err((code, why)) = self.may_create(conn, &name) {
            out.push(err(conn, code, why));
            return;
        }
        let Some(password) = password else {
            self.make_room(now_ms, conn, name, None, room_id, out);
            return;
        };
        if password.is_empty() {
            out.push(err(
                conn,
                ErrorCode::BadRequest,
                "a private room needs a non-empty password",
            ));
            return;
        }
        let attempt = self.next_attempt;
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if password_busy(session, conn, out) {
            return;
        }
        self.next_attempt += 1;
        session.creating = Some((name, attempt, room_id));
        out.push(Effect::HashPassword {
            conn,
            attempt,
            password,
            ip: crate::ip_block(session.ip),
        });
    }

    /// A new private room's password hash is ready: make the room, if it
    /// still may be made (another may have taken the name meanwhile).
    pub(crate) fn password_hashed(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        attempt: u64,
        hash: Option<String>,
        out: &mut Vec<Effect>,
    ) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let Some((name, _, room_id)) = session.creating.take_if(|(_, a, _)| *a == attempt) else {
            return;
        };
        let Some(hash) = hash else {
            out.push(err(
                conn,
                ErrorCode::Internal,
                "could not hash the password",
            ));
            return;
        };
        if let Err((code, why)) = self.may_create(conn, &name) {
            out.push(err(conn, code, why));
            return;
        }
        let creator = self.sessions[&conn].user.clone();
        self.failures.admit(&creator, &room_id, now_ms);
        self.make_room(now_ms, conn, name, Some(hash), room_id, out);
    }

    /// Whether `conn` may make a room named `name`; otherwise the error.
    fn may_create(&self, conn: ConnId, name: &str) -> Result<(), (ErrorCode, String)> {
        check_room_name(name).map_err(|why| (ErrorCode::InvalidName, why))?;
        self.may_join_another(conn)?;
        self.room_allowed(conn)
            .map_err(|why| (ErrorCode::LimitReached, why))?;
        if let Some(existing) = self.find_room(name) {
            let also = if existing == name {
                String::new()
            } else {
                format!(" (names that differ only in case or look alike are one name: {existing})")
            };
            return Err((
                ErrorCode::RoomExists,
                format!("room {name} exists already{also}; join it instead"),
            ));
        }
        Ok(())
    }

    /// Makes a room that [`Chat::may_create`] allowed and puts `conn` in it.
    fn make_room(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        name: String,
        password_hash: Option<String>,
        room_id: String,
        out: &mut Vec<Effect>,
    ) {
        let rec = RoomRecord {
            name: name.clone(),
            id: room_id,
            creator: self.sessions[&conn].user.clone(),
            password_hash,
            created_ms: now_ms,
        };
        out.push(Effect::Persist(Persist::Room(rec.clone())));
        let announce = NetMsg::Room(net_room(&rec));
        self.net.send_all(now_ms, &announce, out);
        self.add_room(rec);
        self.enter_room(now_ms, conn, &name, true, out);
    }

    /// Whether the user of `conn` may make one more room: the server's and
    /// the user's limits (rooms from linked servers count; they are kept
    /// here too). Otherwise why not, naming the limit.
    fn room_allowed(&self, conn: ConnId) -> Result<(), String> {
        let s = &self.settings;
        if self.rooms.len() >= s.max_rooms {
            return Err(format!(
                "this server holds its most rooms ({}, --max-rooms); join one",
                s.max_rooms
            ));
        }
        let user = &self.sessions[&conn].user;
        let made = self.rooms.values().filter(|r| r.creator() == user).count();
        if made >= s.max_rooms_per_user {
            return Err(format!(
                "you have made {made} rooms, the most one user may make here ({}, --max-rooms-per-user)",
                s.max_rooms_per_user
            ));
        }
        Ok(())
    }

    /// Whether `conn` may be in one more room ([`MAX_ROOMS_JOINED`]).
    fn may_join_another(&self, conn: ConnId) -> Result<(), (ErrorCode, String)> {
        let n = self.sessions.get(&conn).map_or(0, |s| s.rooms.len());
        if n >= MAX_ROOMS_JOINED {
            return Err((
                ErrorCode::LimitReached,
                format!("you are in {n} rooms, the most at once; leave one first (/part)"),
            ));
        }
        Ok(())
    }

    /// Adds a room record (not yet persisted by this call) whose name no
    /// room has.
    fn add_room(&mut self, rec: RoomRecord) {
        self.room_ids
            .insert(rec.id.clone(), Arc::from(rec.name.as_str()));
        let name = rec.name.clone();
        self.room_keys.insert(name_key(&name), name.clone());
        self.rooms.insert(name, Room::new(rec, Vec::new(), 0));
    }

    /// `JoinRoom`: a public room at once, a private one after its password
    /// is checked off the core's thread.
    pub(crate) fn join(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        name: String,
        password: Option<String>,
        out: &mut Vec<Effect>,
    ) {
        let Some(room) = self.find_room(&name).and_then(|n| self.rooms.get(&n)) else {
            out.push(err(
                conn,
                ErrorCode::NoSuchRoom,
                format!("no room named {name}"),
            ));
            return;
        };
        // From here on the room's own spelling.
        let name = room.name().to_string();
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let member = session.rooms.contains(&name);
        if !member {
            if let Err((code, why)) = self.may_join_another(conn) {
                out.push(err(conn, code, why));
                return;
            }
        }
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let max = self.settings.max_room_members;
        if !member && room.member_count() >= max {
            out.push(err(
                conn,
                ErrorCode::LimitReached,
                format!("room {name} is full: {max} members, the most a room may have here (--max-room-members)"),
            ));
            return;
        }
        let Some(hash) = &room.rec.password_hash else {
            self.enter_room(now_ms, conn, &name, false, out);
            return;
        };
        if member {
            // Already a member: no password needed to be told again.
            self.enter_room(now_ms, conn, &name, false, out);
            return;
        }
        if password_busy(session, conn, out) {
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
        let refusal = self
            .failures
            .refusal(&session.user, session.ip, room.id(), &name, now_ms);
        if let Some(why) = refusal {
            out.push(err(conn, ErrorCode::RateLimited, why));
            return;
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
            ip: crate::ip_block(session.ip),
        });
    }

    /// The answer of a password check: in, or one more failure.
    pub(crate) fn password_checked(
        &mut self,
        now_ms: u64,
        conn: ConnId,
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
        let Some(room_id) = self.rooms.get(&room).map(|r| r.id().to_string()) else {
            out.push(err(
                conn,
                ErrorCode::NoSuchRoom,
                format!("no room named {room}"),
            ));
            return;
        };
        if ok {
            self.failures.users.clear(&session.user);
            self.failures.admit(&session.user, &room_id, now_ms);
            // Other rooms may have been joined while the password was
            // checked: the limit holds still.
            if let Err((code, why)) = self.may_join_another(conn) {
                out.push(err(conn, code, why));
                return;
            }
            self.enter_room(now_ms, conn, &room, false, out);
            return;
        }
        self.failures
            .fail(&session.user, session.ip, &room_id, now_ms);
        out.push(err(
            conn,
            ErrorCode::WrongPassword,
            format!("wrong password for room {room}"),
        ));
    }

    /// Puts `conn` in room `name` (which exists); it stays in its others.
    fn enter_room(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        name: &str,
        created: bool,
        out: &mut Vec<Effect>,
    ) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        let already = session.rooms.iter().any(|r| r == name);
        if !already {
            session.rooms.push(name.to_string());
        }
        let user = session.user.clone();
        let others: Vec<ConnId> = room.local().to_vec();
        room.add(conn);
        let room = &self.rooms[name];
        out.push(Effect::Send {
            to: conn,
            msg: ServerMsg::Joined {
                room: name.to_string(),
                room_id: room.id().to_string(),
                created,
                peers: self.names(room, Some(conn)),
            },
        });
        out.extend(room.replay().map(|msg| Effect::Send { to: conn, msg }));
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
            room: room.id().to_string(),
        };
        self.net.send_all(now_ms, &enter, out);
    }

    /// `LeaveRoom`: leaves room `name`, one the client is in.
    pub(crate) fn leave(&mut self, now_ms: u64, conn: ConnId, name: &str, out: &mut Vec<Effect>) {
        let Some(room) = self.joined(conn, name, out).map(|r| r.name().to_string()) else {
            return;
        };
        self.leave_room(conn, &room, LeaveReason::Left, true, now_ms, out);
        out.push(Effect::Send {
            to: conn,
            msg: ServerMsg::Left { room },
        });
    }

    /// Takes `conn` out of room `name`, telling the others (and, with
    /// `announce`, the other servers). Returns whether it was in it.
    pub(crate) fn leave_room(
        &mut self,
        conn: ConnId,
        name: &str,
        reason: LeaveReason,
        announce: bool,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return false;
        };
        let Some(at) = session.rooms.iter().position(|r| r == name) else {
            return false;
        };
        session.rooms.remove(at);
        let user = session.user.clone();
        let Some(room) = self.rooms.get_mut(name) else {
            return true;
        };
        room.remove(conn);
        Self::tell_left(room, &user, reason, out);
        if announce {
            let leave = NetMsg::Leave {
                user,
                room: room.id().to_string(),
                reason,
            };
            self.net.send_all(now_ms, &leave, out);
        }
        true
    }

    /// Takes `conn` out of every room it is in (see [`Chat::leave_room`]);
    /// returns their names.
    pub(crate) fn leave_rooms(
        &mut self,
        conn: ConnId,
        reason: LeaveReason,
        announce: bool,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) -> Vec<String> {
        let rooms = self
            .sessions
            .get(&conn)
            .map(|s| s.rooms.clone())
            .unwrap_or_default();
        for room in &rooms {
            self.leave_room(conn, room, reason, announce, now_ms, out);
        }
        rooms
    }

    /// Tells a room's members here that `user` left it.
    fn tell_left(room: &Room, user: &str, reason: LeaveReason, out: &mut Vec<Effect>) {
        if !room.local().is_empty() {
            out.push(Effect::Broadcast {
                to: room.local().to_vec(),
                msg: ServerMsg::PeerLeft {
                    room: room.name().to_string(),
                    user: user.to_string(),
                    reason,
                },
            });
        }
    }

    /// A user of another server left room `room` (by name, as known here).
    pub(crate) fn remote_left_room(
        &mut self,
        user: &str,
        room: &str,
        reason: LeaveReason,
        out: &mut Vec<Effect>,
    ) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.remove_remote(user);
        Self::tell_left(r, user, reason, out);
    }

    /// A user of another server entered the room with id `room_id` (one
    /// not known here yet is remembered until its record comes).
    pub(crate) fn remote_enter(&mut self, user: &str, room_id: &str, out: &mut Vec<Effect>) {
        let name = self.room_ids.get(room_id).cloned();
        // The name as the map holds it, shared with the room's list.
        let Some(user) = self.remote.get_key_value(user).map(|(n, _)| n.clone()) else {
            return;
        };
        let Some(u) = self.remote.get_mut(&user) else {
            return;
        };
        let Some(name) = name else {
            if u.waiting.len() < MAX_ROOMS_JOINED && !u.waiting.iter().any(|w| **w == *room_id) {
                u.waiting.push(Box::from(room_id));
            }
            return;
        };
        u.waiting.retain(|w| **w != *room_id);
        if u.rooms.contains(&name) || u.rooms.len() >= MAX_ROOMS_JOINED {
            return;
        }
        u.rooms.push(name.clone());
        let server = u.server;
        let Some(r) = self.rooms.get_mut(&*name) else {
            return;
        };
        r.add_remote(user.clone(), server);
        if !r.local().is_empty() {
            out.push(Effect::Broadcast {
                to: r.local().to_vec(),
                msg: ServerMsg::PeerJoined {
                    room: name.to_string(),
                    user: user.to_string(),
                },
            });
        }
    }

    /// A user of another server left the room with id `room_id`.
    pub(crate) fn remote_leave(
        &mut self,
        user: &str,
        room_id: &str,
        reason: LeaveReason,
        out: &mut Vec<Effect>,
    ) {
        let name = self.room_ids.get(room_id).cloned();
        let Some(u) = self.remote.get_mut(user) else {
            return;
        };
        u.waiting.retain(|w| **w != *room_id);
        let Some(name) = name else {
            return;
        };
        let Some(at) = u.rooms.iter().position(|r| *r == name) else {
            return;
        };
        u.rooms.remove(at);
        self.remote_left_room(user, &name, reason, out);
    }

    /// Sets the rooms of a user of another server to those with ids
    /// `room_ids` (as its server's `Online` says), entering and leaving
    /// as needed.
    pub(crate) fn remote_rooms(
        &mut self,
        user: &str,
        room_ids: &[String],
        reason: LeaveReason,
        out: &mut Vec<Effect>,
    ) {
        let Some(u) = self.remote.get(user) else {
            return;
        };
        let ids: Vec<String> = u
            .rooms
            .iter()
            .filter_map(|name| self.rooms.get(&**name).map(|r| r.id().to_string()))
            .chain(u.waiting.iter().map(|w| w.to_string()))
            .filter(|id| !room_ids.contains(id))
            .collect();
        for id in ids {
            self.remote_leave(user, &id, reason, out);
        }
        for id in room_ids.iter().take(MAX_ROOMS_JOINED) {
            self.remote_enter(user, id, out);
        }
    }

    /// Takes a room heard of from `source`, settling a name clash.
    pub(crate) fn merge_room(&mut self, r: NetRoom, source: Source, out: &mut Vec<Effect>) {
        if self.room_ids.contains_key(&r.id) {
            return; // known (perhaps under its clash name)
        }
        let mut rec = RoomRecord {
            name: r.name.clone(),
            id: r.id.clone(),
            creator: r.creator,
            password_hash: r.password_hash,
            created_ms: r.created_ms,
        };
        if let Some(existing) = self.find_room(&r.name).and_then(|n| self.rooms.get(&n)) {
            let ours = (existing.rec.created_ms, existing.id().to_string());
            let our_name = existing.name().to_string();
            let older = (rec.created_ms, rec.id.clone()) < ours;
            let news = source.could_be_news(rec.created_ms);
            if older && !news {
                let notice = format!(
                    "room {our_name} keeps its name: server {} says its room {} is older, but it \
                     was in contact with us since then and never said so",
                    self.net.name_of(&source.server),
                    r.name
                );
                out.push(self.network_notice(notice));
            }
            if older && news {
                // The newcomer is older: ours gives way, named (as every
                // server names it) after its own name and id.
                let new_name = self.free_clash_name(&our_name, &ours.1);
                self.rename_room(&our_name, &new_name, out);
            } else {
                rec.name = self.free_clash_name(&r.name, &rec.id);
            }
        }
        let id = rec.id.clone();
        out.push(Effect::Persist(Persist::Room(rec.clone())));
        self.add_room(rec);
        self.attach_waiting(&id, out);
    }

    /// The clash name for room `id`: the short form, or the long one when a
    /// room already has the short one. (Every server picks the same name
    /// unless a user made a room named like a clash name, a rare case where
    /// they may differ.)
    fn free_clash_name(&self, name: &str, id: &str) -> String {
        let short = clash_name(name, id, false);
        if self.find_room(&short).is_some() {
            clash_name(name, id, true)
        } else {
            short
        }
    }

    /// Users of other servers who entered room `id` before this server knew
    /// it: they are in it now.
    fn attach_waiting(&mut self, id: &str, out: &mut Vec<Effect>) {
        let mut waiting: Vec<Arc<str>> = self
            .remote
            .iter()
            .filter(|(_, u)| u.waiting.iter().any(|w| **w == *id))
            .map(|(n, _)| n.clone())
            .collect();
        waiting.sort();
        for user in waiting {
            self.remote_enter(&user, id, out);
        }
    }

    /// Renames a room that lost a clash, telling its members here.
    fn rename_room(&mut self, old: &str, new: &str, out: &mut Vec<Effect>) {
        if self.find_room(new).is_some() {
            return; // never overwrite a room
        }
        let Some(mut room) = self.rooms.remove(old) else {
            return;
        };
        let old_key = name_key(old);
        if self.room_keys.get(&old_key).is_some_and(|n| n == old) {
            self.room_keys.remove(&old_key);
        }
        self.room_keys.insert(name_key(new), new.to_string());
        room.rename(new);
        let shared: Arc<str> = Arc::from(new);
        self.room_ids.insert(room.id().to_string(), shared.clone());
        for conn in room.local() {
            if let Some(s) = self.sessions.get_mut(conn) {
                for r in s.rooms.iter_mut().filter(|r| *r == old) {
                    *r = new.to_string();
                }
            }
        }
        // A password check under way for the old name is for this room.
        for s in self.sessions.values_mut() {
            if let Some((r, _)) = s.joining.as_mut().filter(|(r, _)| r == old) {
                *r = new.to_string();
            }
        }
        for user in room.remote_names() {
            if let Some(u) = self.remote.get_mut(user) {
                for r in u.rooms.iter_mut().filter(|r| &***r == old) {
                    *r = shared.clone();
                }
            }
        }
        let reason = format!(
            "two parts of the server network each had a room named {old}; the one created \
             earlier keeps the name, so this one is now {new}"
        );
        if !room.local().is_empty() {
            out.push(Effect::Broadcast {
                to: room.local().to_vec(),
                msg: ServerMsg::RoomRenamed {
                    old: old.to_string(),
                    new: new.to_string(),
                    reason,
                },
            });
        }
        out.push(Effect::Persist(Persist::RenameRoom {
            old: old.to_string(),
            new: new.to_string(),
        }));
        self.rooms.insert(new.to_string(), room);
    }
}
