//! What the chat core does with the rest of the network: users at other
//! servers, rooms and names learnt from them, their messages for users here,
//! and the one rule that settles clashes when two parts of a network merge.
//!
//! Each server is the authority for its own users; rooms and name bindings
//! are known everywhere. Clashes (the same room name or user name created in
//! two places while they could not hear of each other) are settled the same
//! way on every server, so all agree without talking it over: the record
//! made earlier wins, ties going to the smaller room id or key.

use chatdrop_proto::link::{NetBinding, NetMsg, NetRoom, NetUser, ServerId};
use chatdrop_proto::{ChatLine, ErrorCode, LeaveReason, RefuseReason, ServerMsg, Target};

use super::{Chat, RemoteUser, Who};
use crate::event::{ConnId, Effect, Persist};
use crate::net::NetEvent;
use crate::state::RoomRecord;

/// A room record as the network carries it.
pub(super) fn net_room(rec: &RoomRecord) -> NetRoom {
    NetRoom {
        name: rec.name.clone(),
        id: rec.id.clone(),
        creator: rec.creator.clone(),
        password_hash: rec.password_hash.clone(),
        created_ms: rec.created_ms,
    }
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
    /// How another server sees one of this server's users.
    pub(super) fn net_user(&self, conn: ConnId) -> NetUser {
        let s = &self.sessions[&conn];
        NetUser {
            user: s.user.clone(),
            key: s.key,
            ip: s.ip,
            room: s
                .room
                .as_ref()
                .and_then(|r| self.rooms.get(r))
                .map(|r| r.rec.id.clone()),
            since_ms: s.since_ms,
        }
    }

    /// Acts on what the network layer reports.
    pub(super) fn net_events(&mut self, now_ms: u64, events: Vec<NetEvent>, out: &mut Vec<Effect>) {
        for event in events {
            match event {
                NetEvent::Lost { server } => {
                    self.server_lost(server, out);
                    out.push(self.network_notice(format!(
                        "lost sight of server {}",
                        self.net.name_of(&server)
                    )));
                }
                NetEvent::Resync { from, inc } => {
                    let sync = self.sync_msg();
                    self.net.open(now_ms, from, inc, sync, out);
                }
                NetEvent::Deliver { from, msg } => self.net_msg(now_ms, from, msg, out),
            }
        }
    }

    /// A console line on a change in the network, with how much of it this
    /// server is in sync with.
    fn network_notice(&self, what: String) -> Effect {
        let (synced, reachable) = self.net.sync_counts();
        Effect::Console(format!(
            "[network] {what}; {synced}/{reachable} reachable servers in sync"
        ))
    }

    fn sync_msg(&self) -> NetMsg {
        let mut conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        conns.sort();
        NetMsg::Sync {
            users: conns.into_iter().map(|c| self.net_user(c)).collect(),
            rooms: self.rooms.values().map(|r| net_room(&r.rec)).collect(),
            bindings: self
                .bindings
                .iter()
                .map(|(user, (key, bound_ms))| NetBinding {
                    user: user.clone(),
                    key: *key,
                    bound_ms: *bound_ms,
                })
                .collect(),
        }
    }

    /// A server went out of reach: its users are gone for everyone here.
    fn server_lost(&mut self, server: ServerId, out: &mut Vec<Effect>) {
        let mut gone: Vec<String> = self
            .remote
            .iter()
            .filter(|(_, u)| u.server == server)
            .map(|(name, _)| name.clone())
            .collect();
        gone.sort();
        for user in gone {
            self.remove_remote(&user, LeaveReason::Lost, out);
        }
        self.requests.retain(|_, r| r.asker != Who::Remote(server));
    }

    /// Forgets a user of another server, telling its room here.
    pub(super) fn remove_remote(&mut self, user: &str, reason: LeaveReason, out: &mut Vec<Effect>) {
        if let Some(u) = self.remote.remove(user) {
            if let Some(room) = u.room {
                self.remote_left_room(user, &room, reason, out);
            }
        }
    }

    fn remote_left_room(
        &mut self,
        user: &str,
        room: &str,
        reason: LeaveReason,
        out: &mut Vec<Effect>,
    ) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.remote.remove(user);
        if !r.members.is_empty() {
            out.push(Effect::Broadcast {
                to: r.members.clone(),
                msg: ServerMsg::PeerLeft {
                    room: room.to_string(),
                    user: user.to_string(),
                    reason,
                },
            });
        }
    }

    /// Moves a user of another server to the room with id `room_id` (or out
    /// of any room), telling the rooms here.
    fn move_remote(
        &mut self,
        user: &str,
        room_id: Option<&str>,
        reason: LeaveReason,
        out: &mut Vec<Effect>,
    ) {
        let new = room_id.and_then(|id| self.room_ids.get(id)).cloned();
        let Some(u) = self.remote.get_mut(user) else {
            return;
        };
        u.room_id = room_id.map(str::to_string);
        if u.room == new {
            return;
        }
        let (old, server) = (std::mem::replace(&mut u.room, new.clone()), u.server);
        if let Some(old) = old {
            self.remote_left_room(user, &old, reason, out);
        }
        let Some(name) = new else {
            return;
        };
        let Some(r) = self.rooms.get_mut(&name) else {
            return;
        };
        r.remote.insert(user.to_string(), server);
        if !r.members.is_empty() {
            out.push(Effect::Broadcast {
                to: r.members.clone(),
                msg: ServerMsg::PeerJoined {
                    room: name,
                    user: user.to_string(),
                },
            });
        }
    }

    /// A user is online at `server`.
    fn remote_online(&mut self, now_ms: u64, server: ServerId, u: NetUser, out: &mut Vec<Effect>) {
        if self.bindings.get(&u.user).is_some_and(|(k, _)| *k != u.key) {
            // Its name lost a clash; its server disconnects it.
            return;
        }
        if let Some(conn) = self.online.get(&u.user).copied() {
            // The same name here too: the later login wins (ties: the smaller
            // server id), and each server closes its own loser.
            let here = &self.sessions[&conn];
            let theirs_wins = (u.since_ms, server) > (here.since_ms, self.net.id());
            if !theirs_wins {
                // Tell that server ours is the later login, so that it
                // closes its own session by the same rule.
                let ours = NetMsg::Online(self.net_user(conn));
                self.net.send(now_ms, server, ours, out);
                return;
            }
            let text = format!(
                "user {} logged in at server {}",
                u.user,
                self.net.name_of(&server)
            );
            let now_ms = u.since_ms;
            self.logout(now_ms, conn, LeaveReason::Left, out);
            out.push(Effect::Close {
                conn,
                last: Some(ServerMsg::error(ErrorCode::NameInUse, text)),
            });
        }
        if let Some(old) = self.remote.get(&u.user) {
            if old.server != server {
                if (u.since_ms, server) < (old.since_ms, old.server) {
                    return; // the other login is the later one
                }
                self.remove_remote(&u.user.clone(), LeaveReason::Left, out);
            }
        }
        let name = u.user.clone();
        let fresh = !self.remote.contains_key(&name);
        if fresh {
            self.remote.insert(
                name.clone(),
                RemoteUser {
                    server,
                    key: u.key,
                    ip: u.ip,
                    room: None,
                    room_id: None,
                    since_ms: u.since_ms,
                },
            );
        } else if let Some(r) = self.remote.get_mut(&name) {
            (r.key, r.ip, r.since_ms) = (u.key, u.ip, u.since_ms);
        }
        self.move_remote(&name, u.room.as_deref(), LeaveReason::Left, out);
    }

    /// The remote user `user` if it is `server`'s.
    fn of_server(&self, user: &str, server: ServerId) -> bool {
        self.remote.get(user).is_some_and(|u| u.server == server)
    }

    /// Local connection of `user` if it is in room `room_id`.
    fn local_in(&self, user: &str, room_id: Option<&str>) -> Option<ConnId> {
        let conn = self.online.get(user).copied()?;
        match room_id {
            None => Some(conn),
            Some(id) => {
                let name = self.room_ids.get(id)?;
                let s = self.sessions.get(&conn)?;
                (s.room.as_deref() == Some(name.as_str())).then_some(conn)
            }
        }
    }

    fn net_msg(&mut self, now_ms: u64, from: ServerId, msg: NetMsg, out: &mut Vec<Effect>) {
        match msg {
            NetMsg::Sync {
                users,
                rooms,
                bindings,
            } => {
                for r in rooms {
                    self.merge_room(r, out);
                }
                for b in bindings {
                    self.merge_binding(b, out);
                }
                let names: std::collections::HashSet<&str> =
                    users.iter().map(|u| u.user.as_str()).collect();
                let mut gone: Vec<String> = self
                    .remote
                    .iter()
                    .filter(|(n, u)| u.server == from && !names.contains(n.as_str()))
                    .map(|(n, _)| n.clone())
                    .collect();
                gone.sort();
                for user in gone {
                    self.remove_remote(&user, LeaveReason::Lost, out);
                }
                for u in users {
                    self.remote_online(now_ms, from, u, out);
                }
                out.push(
                    self.network_notice(format!("in sync with server {}", self.net.name_of(&from))),
                );
            }
            NetMsg::Online(u) => self.remote_online(now_ms, from, u, out),
            NetMsg::Offline { user, reason } => {
                if self.of_server(&user, from) {
                    self.remove_remote(&user, reason, out);
                }
            }
            NetMsg::Enter { user, room } => {
                if self.of_server(&user, from) {
                    self.move_remote(&user, Some(&room), LeaveReason::Left, out);
                }
            }
            NetMsg::Leave { user, reason } => {
                if self.of_server(&user, from) {
                    self.move_remote(&user, None, reason, out);
                }
            }
            NetMsg::Room(r) => self.merge_room(r, out),
            NetMsg::Bind(b) => self.merge_binding(b, out),
            NetMsg::Say {
                from: sender,
                room,
                to,
                text,
                ts,
            } => {
                let Some(name) = self.room_ids.get(&room).cloned() else {
                    return;
                };
                if !self.of_server(&sender, from) {
                    return; // a server speaks only for its own users
                }
                match to {
                    Target::All => self.room_line(&name, &sender, &text, ts, out),
                    Target::User(user) => {
                        if let Some(conn) = self.local_in(&user, Some(&room)) {
                            out.push(Effect::Send {
                                to: conn,
                                msg: ServerMsg::Message(ChatLine {
                                    room: Some(name),
                                    from: sender,
                                    to: Target::User(user),
                                    text,
                                    ts,
                                    history: false,
                                }),
                            });
                        }
                    }
                    Target::Server => {}
                }
            }
            NetMsg::WhoHas {
                from: asker,
                room,
                file,
            } => {
                let Some(r) = self.room_ids.get(&room).and_then(|n| self.rooms.get(n)) else {
                    return;
                };
                if !self.of_server(&asker, from) {
                    return;
                }
                if !r.members.is_empty() {
                    out.push(Effect::Broadcast {
                        to: r.members.clone(),
                        msg: ServerMsg::WhoHas { from: asker, file },
                    });
                }
            }
            NetMsg::HaveFile {
                from: owner,
                to,
                file,
                size,
                blake3,
            } => {
                if !self.of_server(&owner, from) {
                    return;
                }
                if let Some(conn) = self.local_in(&to, None) {
                    out.push(Effect::Send {
                        to: conn,
                        msg: ServerMsg::HaveFile {
                            from: owner,
                            file,
                            size,
                            blake3,
                        },
                    });
                }
            }
            NetMsg::GetFile {
                from: asker,
                from_key,
                owner,
                file,
                eph,
                sig,
            } => {
                let Some(owner_conn) = self.online.get(&owner).copied() else {
                    let detail = format!("{owner} is no longer connected");
                    self.refuse_to(
                        now_ms,
                        Who::Remote(from),
                        &asker,
                        &owner,
                        &file,
                        RefuseReason::NotFound,
                        detail,
                        out,
                    );
                    return;
                };
                // The asker is that server's, with the key this server knows
                // for its name.
                if !self.of_server(&asker, from)
                    || self
                        .bindings
                        .get(&asker)
                        .is_some_and(|(k, _)| *k != from_key)
                {
                    return;
                }
                self.request(
                    now_ms,
                    Who::Remote(from),
                    asker,
                    from_key,
                    owner_conn,
                    file,
                    eph,
                    sig,
                    out,
                );
            }
            NetMsg::FileOffer {
                to,
                from: owner,
                from_key,
                file,
                addr,
                offer,
            } => {
                let owner_ok = self
                    .remote
                    .get(&owner)
                    .is_some_and(|u| u.server == from && u.key == from_key);
                if !owner_ok {
                    return;
                }
                if let Some(conn) = self.local_in(&to, None) {
                    out.push(Effect::Send {
                        to: conn,
                        msg: ServerMsg::FileOffer {
                            from: owner,
                            from_key,
                            file,
                            addr,
                            offer,
                        },
                    });
                }
            }
            NetMsg::Refused {
                to,
                from: owner,
                file,
                reason,
                detail,
            } => {
                if let Some(conn) = self.local_in(&to, None) {
                    out.push(Self::refused(conn, &owner, &file, reason, detail));
                }
            }
        }
    }

    /// Takes a room heard of from another server, settling a name clash.
    fn merge_room(&mut self, r: NetRoom, out: &mut Vec<Effect>) {
        if self.room_ids.contains_key(&r.id) {
            return; // known (perhaps under its clash name)
        }
        let rec = RoomRecord {
            name: r.name.clone(),
            id: r.id.clone(),
            creator: r.creator,
            password_hash: r.password_hash,
            created_ms: r.created_ms,
        };
        let Some(existing) = self.rooms.get(&r.name) else {
            let id = rec.id.clone();
            out.push(Effect::Persist(Persist::Room(rec.clone())));
            self.add_room(rec);
            self.attach_waiting(&id, out);
            return;
        };
        let ours = (existing.rec.created_ms, existing.rec.id.clone());
        let mut rec = rec;
        if (rec.created_ms, rec.id.clone()) < ours {
            // The newcomer is older: ours gives way.
            let loser_id = existing.rec.id.clone();
            let new_name = self.free_clash_name(&r.name, &loser_id);
            self.rename_room(&r.name, &new_name, out);
        } else {
            rec.name = self.free_clash_name(&r.name, &rec.id);
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
        if self.rooms.contains_key(&short) {
            clash_name(name, id, true)
        } else {
            short
        }
    }

    /// Users of other servers who entered room `id` before this server knew
    /// it: they are in it now.
    fn attach_waiting(&mut self, id: &str, out: &mut Vec<Effect>) {
        let mut waiting: Vec<String> = self
            .remote
            .iter()
            .filter(|(_, u)| u.room.is_none() && u.room_id.as_deref() == Some(id))
            .map(|(n, _)| n.clone())
            .collect();
        waiting.sort();
        for user in waiting {
            self.move_remote(&user, Some(id), LeaveReason::Left, out);
        }
    }

    /// Renames a room that lost a clash, telling its members here.
    fn rename_room(&mut self, old: &str, new: &str, out: &mut Vec<Effect>) {
        if self.rooms.contains_key(new) {
            return; // never overwrite a room
        }
        let Some(mut room) = self.rooms.remove(old) else {
            return;
        };
        room.rec.name = new.to_string();
        self.room_ids.insert(room.rec.id.clone(), new.to_string());
        for conn in &room.members {
            if let Some(s) = self.sessions.get_mut(conn) {
                s.room = Some(new.to_string());
            }
        }
        // A password check under way for the old name is for this room.
        for s in self.sessions.values_mut() {
            if let Some((r, _)) = s.joining.as_mut().filter(|(r, _)| r == old) {
                *r = new.to_string();
            }
        }
        for user in room.remote.keys() {
            if let Some(u) = self.remote.get_mut(user) {
                u.room = Some(new.to_string());
            }
        }
        let reason = format!(
            "two parts of the server network each had a room named {old}; the one created \
             earlier keeps the name, so this one is now {new}"
        );
        if !room.members.is_empty() {
            out.push(Effect::Broadcast {
                to: room.members.clone(),
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

    /// Takes a name binding heard of from another server, settling a clash.
    fn merge_binding(&mut self, b: NetBinding, out: &mut Vec<Effect>) {
        match self.bindings.get(&b.user) {
            Some((key, _)) if *key == b.key => return,
            Some((key, bound_ms)) if (*bound_ms, *key) < (b.bound_ms, b.key) => return,
            _ => {}
        }
        self.bindings.insert(b.user.clone(), (b.key, b.bound_ms));
        out.push(Effect::Persist(Persist::Bind {
            user: b.user.clone(),
            public_key: b.key,
            bound_ms: b.bound_ms,
        }));
        // A user here holding the name under the losing key must go.
        if let Some(conn) = self.online.get(&b.user).copied() {
            if self.sessions.get(&conn).is_some_and(|s| s.key != b.key) {
                let text = format!(
                    "user name {} was bound earlier to another identity key elsewhere in the \
                     server network; pick another name",
                    b.user
                );
                self.logout(b.bound_ms, conn, LeaveReason::Left, out);
                out.push(Effect::Close {
                    conn,
                    last: Some(ServerMsg::error(ErrorCode::NameTaken, text)),
                });
            }
        }
    }
}
