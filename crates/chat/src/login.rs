//! Logins and who is online where: sessions here, users at other servers,
//! and the binding of each user name to one identity key, network-wide.
//!
//! Each server is the authority for its own users; name bindings are known
//! everywhere. Names that look alike (same [`name_key`]: `paypa1`,
//! `paypal`) are one name: one binding holds them all. A clash (one name
//! bound to two keys, or two look-alike names bound, while two parts of the
//! network could not hear of each other) is settled the same way on every
//! server, so all agree without talking it over: the binding made earlier
//! wins, ties going to the smaller key, then the smaller name. A binding
//! from another server takes a name from its holder only if it can be news
//! (see [`crate::contact`]). Two logins of one identity at two servers: the
//! later one wins.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use chatdrop_proto::link::{NetBinding, NetMsg, NetRoom, NetUser, ServerId};
use chatdrop_proto::names::{check_user_name, name_key};
use chatdrop_proto::{ErrorCode, LeaveReason, ServerMsg};

use crate::chat::{err, Chat, Who};
use crate::contact::Source;
use crate::event::{ConnId, Effect, Persist};
use crate::state::Vouch;

/// A user name bound to an identity key, network-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bound {
    /// The name as it was bound (shared with the name's key and its entry
    /// among the users of other servers, where they are spelled alike).
    pub(crate) user: Arc<str>,
    pub(crate) key: [u8; 32],
    /// When it was bound (ms since the Unix epoch, by the binding server's
    /// clock).
    pub(crate) bound_ms: u64,
    /// The server it was bound at, vouching for it: only that server can
    /// speak for the binding, so a server of the network cannot pass off
    /// a claim as another's. Shared by every binding it vouched for.
    pub(crate) home: Arc<Home>,
    /// The home server's signature over the binding
    /// (`NetBinding::signed_bytes`).
    pub(crate) sig: [u8; 64],
    /// Whether the name was used again after the session that bound it.
    pub(crate) used_again: bool,
}

/// A server that vouches for name bindings: its id and its public key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Home {
    pub(crate) id: ServerId,
    pub(crate) key: [u8; 32],
}

/// The home servers of the bindings held, each kept once: a network has a
/// handful of servers, and every server holds a binding for each of its
/// names, so 48 bytes a binding would be 48 bytes a user of the network.
#[derive(Debug, Default)]
pub(crate) struct Homes(HashMap<ServerId, Arc<Home>>);

impl Homes {
    /// The shared record of the server `id` with the key `key`.
    pub(crate) fn get(&mut self, id: ServerId, key: [u8; 32]) -> Arc<Home> {
        match self.0.get(&id) {
            Some(home) if home.key == key => home.clone(),
            _ => {
                let home = Arc::new(Home { id, key });
                self.0.insert(id, home.clone());
                home
            }
        }
    }

    /// How many servers are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Forgets the servers no binding names any more.
    pub(crate) fn forget_unused(&mut self) {
        self.0.retain(|_, home| Arc::strong_count(home) > 1);
    }
}

/// A login this long (ms) after a name was bound uses it again: the name
/// is someone's, not a throwaway, and does not expire.
pub(crate) const USED_AGAIN_AFTER_MS: u64 = 3_600_000;

impl Bound {
    /// A binding of `user` to `key`, vouched for by `vouch`.
    pub(crate) fn new(
        user: Arc<str>,
        key: [u8; 32],
        bound_ms: u64,
        vouch: Vouch,
        used_again: bool,
        homes: &mut Homes,
    ) -> Bound {
        Bound {
            user,
            key,
            bound_ms,
            home: homes.get(vouch.home, vouch.home_key),
            sig: vouch.sig,
            used_again,
        }
    }

    /// The home server's vouch, as the store keeps it.
    pub(crate) fn vouch(&self) -> Vouch {
        Vouch {
            home: self.home.id,
            home_key: self.home.key,
            sig: self.sig,
        }
    }

    /// Whether this binding wins a clash with `other`: the earlier one,
    /// then the smaller key, then the smaller name.
    pub(crate) fn precedes(&self, other: &Bound) -> bool {
        (self.bound_ms, self.key, &self.user) < (other.bound_ms, other.key, &other.user)
    }

    fn net(&self) -> NetBinding {
        NetBinding {
            user: self.user.to_string(),
            key: self.key,
            bound_ms: self.bound_ms,
            home: self.home.id,
            home_key: self.home.key,
            sig: self.sig.to_vec(),
        }
    }

    /// What the store keeps of it.
    fn persist(&self) -> Persist {
        Persist::Bind {
            user: self.user.to_string(),
            public_key: self.key,
            bound_ms: self.bound_ms,
            vouch: self.vouch(),
        }
    }
}

/// A client logged in here.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) user: String,
    pub(crate) key: [u8; 32],
    pub(crate) ip: IpAddr,
    /// The rooms it is in, in the order it joined them (at most
    /// [`chatdrop_proto::limits::MAX_ROOMS_JOINED`]).
    pub(crate) rooms: Vec<String>,
    /// When it logged in (ms since the Unix epoch).
    pub(crate) since_ms: u64,
    /// Room whose password is being checked for this connection, and the
    /// check's attempt number.
    pub(crate) joining: Option<(String, u64)>,
    /// A private room this connection is making, waiting for its password
    /// hash: the name, the attempt number and the room's ID.
    pub(crate) creating: Option<(String, u64, String)>,
}

/// A user online at another server. A user whose name another key holds,
/// or a look-alike name, is not listed.
#[derive(Debug, Clone)]
pub(crate) struct RemoteUser {
    pub(crate) server: ServerId,
    /// Its identity key, where this server holds no binding for its name;
    /// otherwise the binding's (see [`Chat::remote_key`]).
    pub(crate) key: Option<Box<[u8; 32]>>,
    pub(crate) ip: IpAddr,
    /// Names of its rooms, as known here (shared with the rooms).
    pub(crate) rooms: Vec<Arc<str>>,
    /// Ids of rooms its server says it is in, while they are not known
    /// here yet (their records may come from a third server, later).
    pub(crate) waiting: Vec<Box<str>>,
    pub(crate) since_ms: u64,
}

/// Holds `bound` as its name's binding. The key shares the name's memory
/// where the two are spelled alike (most names are): every server holds a
/// binding for each name of the network.
pub(crate) fn hold(bindings: &mut HashMap<Arc<str>, Bound>, bound: Bound) {
    let key = name_key(&bound.user);
    let key = if *key == *bound.user {
        bound.user.clone()
    } else {
        Arc::from(key)
    };
    bindings.insert(key, bound);
}

impl Chat {
    pub(crate) fn login(
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
        if self.exit_by_ms.is_some() {
            out.push(refuse(
                ErrorCode::ServerFull,
                "the server is shutting down; try again in a moment".into(),
            ));
            return;
        }
        if let Err(why) = check_user_name(&user) {
            out.push(refuse(ErrorCode::InvalidName, why));
            return;
        }
        if let Some(why) = self.bans.check(&user, &key, ip) {
            out.push(refuse(ErrorCode::Banned, why));
            return;
        }
        let user_key = name_key(&user);
        match self.bindings.get(user_key.as_str()) {
            Some(bound) if *bound.user != *user => {
                out.push(refuse(
                    ErrorCode::NameTaken,
                    format!(
                        "user name {user} looks like {}, which is taken in this network",
                        bound.user
                    ),
                ));
                return;
            }
            Some(bound) if bound.key != key => {
                out.push(refuse(
                    ErrorCode::NameTaken,
                    format!("user name {user} belongs to another identity key in this network"),
                ));
                return;
            }
            Some(_) => self.name_used(&user, now_ms, out),
            None => {
                let per_hour = self.settings.new_names_per_hour;
                if let Err(minutes) = self.new_names.take(ip, per_hour, now_ms) {
                    out.push(refuse(
                        ErrorCode::RateLimited,
                        format!(
                            "user name {user} is new, and your address made {per_hour} new names \
                             in the last hour (the limit); log in with a name you have, \
                             or try again in {minutes} min"
                        ),
                    ));
                    return;
                }
                let bound = Bound::new(
                    user.as_str().into(),
                    key,
                    now_ms,
                    self.net.me().vouch(&user, &key, now_ms),
                    false,
                    &mut self.homes,
                );
                out.push(Effect::Persist(bound.persist()));
                self.net.send_all(now_ms, &NetMsg::Bind(bound.net()), out);
                hold(&mut self.bindings, bound);
            }
        }
        if self.online.contains_key(&user) {
            out.push(refuse(
                ErrorCode::NameInUse,
                format!("user {user} is already connected"),
            ));
            return;
        }
        if let Some(other) = self.remote.get(user.as_str()) {
            // Under another key only while the name's binding has not come
            // here yet (then this login just bound it here, and the clash
            // rule settles which binding stands once it comes).
            if self.remote_key(&user) != Some(key) {
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
                rooms: Vec::new(),
                since_ms: now_ms,
                joining: None,
                creating: None,
            },
        );
        let online = NetMsg::Online(self.net_user(conn));
        self.net.send_all(now_ms, &online, out);
        out.push(Effect::Send {
            to: conn,
            msg: ServerMsg::LoggedIn { user },
        });
    }

    /// `Quit`: the client logs out cleanly.
    pub(crate) fn quit(&mut self, now_ms: u64, conn: ConnId, out: &mut Vec<Effect>) {
        self.logout(now_ms, conn, LeaveReason::Left, out);
        out.push(Effect::Close {
            conn,
            last: Some(ServerMsg::Bye {
                reason: "logged out".into(),
            }),
        });
    }

    /// Forgets a logged-in connection, telling its room and the network.
    pub(crate) fn logout(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        reason: LeaveReason,
        out: &mut Vec<Effect>,
    ) {
        // The other servers learn of it from the `Offline` below.
        self.leave_rooms(conn, reason, false, now_ms, out);
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

    /// How another server sees one of this server's users.
    pub(crate) fn net_user(&self, conn: ConnId) -> NetUser {
        let s = &self.sessions[&conn];
        NetUser {
            user: s.user.clone(),
            key: s.key,
            ip: s.ip,
            rooms: s
                .rooms
                .iter()
                .filter_map(|r| self.rooms.get(r))
                .map(|r| r.id().to_string())
                .collect(),
            since_ms: s.since_ms,
        }
    }

    /// Everything this server tells a server it (re)connects with: its
    /// users, and the rooms and bindings it knows, in parts.
    pub(crate) fn sync_parts(&self) -> Vec<NetMsg> {
        let mut conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        conns.sort();
        chatdrop_proto::link::sync_parts(
            conns.into_iter().map(|c| self.net_user(c)).collect(),
            self.rooms.values().map(|r| r.net_record()).collect(),
            self.bindings.values().map(Bound::net).collect(),
        )
    }

    /// A login of `user` at `login_ms` (here or elsewhere): a name logged
    /// into well after it was bound is used again, and kept for good.
    pub(crate) fn name_used(&mut self, user: &str, login_ms: u64, out: &mut Vec<Effect>) {
        let Some(b) = self.bindings.get_mut(name_key(user).as_str()) else {
            return;
        };
        if b.used_again || &*b.user != user || login_ms < b.bound_ms + USED_AGAIN_AFTER_MS {
            return;
        }
        b.used_again = true;
        out.push(Effect::Persist(Persist::NameUsed {
            user: user.to_string(),
        }));
    }

    /// Whether `b` is exactly the binding held for its name, so already
    /// checked (its signature need not be verified again).
    pub(crate) fn holds(&self, b: &NetBinding) -> bool {
        self.bindings
            .get(name_key(&b.user).as_str())
            .is_some_and(|ours| {
                *ours.user == *b.user
                    && ours.key == b.key
                    && ours.bound_ms == b.bound_ms
                    && ours.home.id == b.home
                    && ours.home.key == b.home_key
                    && ours.sig[..] == b.sig[..]
            })
    }

    /// A part of another server's state: its rooms and bindings are
    /// merged, its users listed are online; once the last part is in, its
    /// users are exactly those the parts listed.
    pub(crate) fn remote_sync(
        &mut self,
        now_ms: u64,
        from: ServerId,
        state: SyncPart,
        out: &mut Vec<Effect>,
    ) {
        if state.part == 0 {
            let source = self.contacts.synced(from, now_ms);
            self.syncing.insert(
                from,
                SyncInProgress {
                    source,
                    users: HashSet::new(),
                },
            );
        }
        // Parts come in order after part 0 (the channel sees to it).
        let Some(source) = self.syncing.get(&from).map(|s| s.source) else {
            return;
        };
        for r in state.rooms {
            self.merge_room(r, source, out);
        }
        for b in state.bindings {
            self.merge_binding(b, source, out);
        }
        if let Some(s) = self.syncing.get_mut(&from) {
            s.users.extend(state.users.iter().map(|u| u.user.clone()));
        }
        for u in state.users {
            self.remote_online(now_ms, from, u, out);
        }
        if !state.last {
            return;
        }
        let listed = self
            .syncing
            .remove(&from)
            .map(|s| s.users)
            .unwrap_or_default();
        let mut gone: Vec<Arc<str>> = self
            .remote
            .iter()
            .filter(|(n, u)| u.server == from && !listed.contains(&***n))
            .map(|(n, _)| n.clone())
            .collect();
        gone.sort();
        for user in gone {
            self.remove_remote(&user, LeaveReason::Lost, out);
        }
        out.push(self.network_notice(format!("in sync with server {}", self.net.name_of(&from))));
    }

    /// A server went out of reach: its users are gone for everyone here.
    pub(crate) fn server_lost(&mut self, server: ServerId, out: &mut Vec<Effect>) {
        let mut gone: Vec<Arc<str>> = self
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
        self.syncing.remove(&server);
    }

    /// Forgets a user of another server, telling its room here.
    pub(crate) fn remove_remote(&mut self, user: &str, reason: LeaveReason, out: &mut Vec<Effect>) {
        if let Some(u) = self.remote.remove(user) {
            for room in u.rooms {
                self.remote_left_room(user, &room, reason, out);
            }
        }
    }

    /// A user is online at `server`.
    pub(crate) fn remote_online(
        &mut self,
        now_ms: u64,
        server: ServerId,
        u: NetUser,
        out: &mut Vec<Effect>,
    ) {
        if self.bound_otherwise(&u.user, &u.key) {
            // Its name lost a clash; its server disconnects it.
            return;
        }
        self.name_used(&u.user, u.since_ms, out);
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
            self.close_session(u.since_ms, conn, ErrorCode::NameInUse, text, out);
        }
        if let Some(old) = self.remote.get(u.user.as_str()) {
            if old.server != server {
                if (u.since_ms, server) < (old.since_ms, old.server) {
                    return; // the other login is the later one
                }
                self.remove_remote(&u.user.clone(), LeaveReason::Left, out);
            }
        }
        // The key is the binding's, kept apart only for a name with no
        // binding here (its record comes later, or expired here only).
        let bound = self.shared_name(&u.user);
        let key = bound.is_none().then(|| Box::new(u.key));
        match self.remote.get_mut(u.user.as_str()) {
            Some(r) => (r.key, r.ip, r.since_ms) = (key, u.ip, u.since_ms),
            None => {
                let name = bound.unwrap_or_else(|| Arc::from(u.user.as_str()));
                self.remote.insert(
                    name,
                    RemoteUser {
                        server,
                        key,
                        ip: u.ip,
                        rooms: Vec::new(),
                        waiting: Vec::new(),
                        since_ms: u.since_ms,
                    },
                );
            }
        }
        self.remote_rooms(&u.user, &u.rooms, LeaveReason::Left, out);
    }

    /// The name `user` as its binding holds it (to share its memory), if
    /// this server holds a binding for exactly that name.
    pub(crate) fn shared_name(&self, user: &str) -> Option<Arc<str>> {
        self.bindings
            .get(name_key(user).as_str())
            .filter(|b| &*b.user == user)
            .map(|b| b.user.clone())
    }

    /// The identity key of `user`, online at another server.
    pub(crate) fn remote_key(&self, user: &str) -> Option<[u8; 32]> {
        let u = self.remote.get(user)?;
        match &u.key {
            Some(key) => Some(**key),
            None => self.bindings.get(name_key(user).as_str()).map(|b| b.key),
        }
    }

    /// Logs a session here out because the network settled against it, and
    /// closes it with the reason.
    fn close_session(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        code: ErrorCode,
        text: String,
        out: &mut Vec<Effect>,
    ) {
        self.logout(now_ms, conn, LeaveReason::Left, out);
        out.push(Effect::Close {
            conn,
            last: Some(ServerMsg::error(code, text)),
        });
    }

    /// Whether the binding on record for `user`'s name, if any, is not
    /// `user` with `key`: another key holds the name, or a look-alike name
    /// holds it.
    pub(crate) fn bound_otherwise(&self, user: &str, key: &[u8; 32]) -> bool {
        self.bindings
            .get(name_key(user).as_str())
            .is_some_and(|b| b.key != *key || &*b.user != user)
    }

    /// Takes a name binding heard of from `source`, settling a clash: the
    /// earlier binding wins, if it can be news (see [`crate::contact`]).
    pub(crate) fn merge_binding(&mut self, b: NetBinding, source: Source, out: &mut Vec<Effect>) {
        // Checked on arrival (`crate::link_checks`); a binding held already
        // is not checked again, but then it is not news either.
        let Ok(sig) = b.sig.as_slice().try_into() else {
            return;
        };
        let theirs = Bound::new(
            b.user.into(),
            b.key,
            b.bound_ms,
            Vouch {
                home: b.home,
                home_key: b.home_key,
                sig,
            },
            false,
            &mut self.homes,
        );
        let user_key = name_key(&theirs.user);
        let ours = self.bindings.get(user_key.as_str());
        if let Some(ours) = ours {
            if ours.key == theirs.key && ours.user == theirs.user || !theirs.precedes(ours) {
                return;
            }
            if !source.could_be_news(theirs.bound_ms) {
                let notice = format!(
                    "kept user name {} bound as it is: server {} says {} was bound earlier, \
                     but it was in contact with us since then and never said so",
                    ours.user,
                    self.net.name_of(&source.server),
                    theirs.user
                );
                out.push(self.network_notice(notice));
                return;
            }
        }
        let losing = ours.map(|o| (o.user.clone(), o.key));
        out.push(Effect::Persist(theirs.persist()));
        hold(&mut self.bindings, theirs.clone());
        // A user of another server listed under the losing binding is gone
        // (its server closes it by the same rule); one listed before its
        // binding came keeps no key of its own now.
        let mut names = vec![theirs.user.clone()];
        names.extend(losing.iter().map(|(n, _)| n.clone()));
        names.dedup();
        for name in names {
            let Some(u) = self.remote.get_mut(&*name) else {
                continue;
            };
            let losing_key = losing.as_ref().filter(|(n, _)| *n == name).map(|(_, k)| *k);
            let key = u.key.as_deref().copied().or(losing_key);
            if name == theirs.user && key == Some(theirs.key) {
                u.key = None;
            } else {
                self.remove_remote(&name, LeaveReason::Left, out);
            }
        }
        // A user here holding the name (or a look-alike) under the losing
        // binding must go.
        for name in losing
            .map(|(n, _)| n)
            .into_iter()
            .chain([theirs.user.clone()])
        {
            let Some(conn) = self.online.get(&*name).copied() else {
                continue;
            };
            let lost = self
                .sessions
                .get(&conn)
                .is_some_and(|s| s.key != theirs.key || *s.user != *theirs.user);
            if lost {
                let text = if name == theirs.user {
                    format!(
                        "user name {name} was bound earlier to another identity key elsewhere \
                         in the server network; pick another name"
                    )
                } else {
                    format!(
                        "user name {name} looks like {}, which was bound earlier elsewhere in \
                         the server network; pick another name",
                        theirs.user
                    )
                };
                self.close_session(theirs.bound_ms, conn, ErrorCode::NameTaken, text, out);
            }
        }
    }
}

/// One part of another server's state (a `Sync`).
#[derive(Debug)]
pub(crate) struct SyncPart {
    pub(crate) part: u32,
    pub(crate) last: bool,
    pub(crate) users: Vec<NetUser>,
    pub(crate) rooms: Vec<NetRoom>,
    pub(crate) bindings: Vec<NetBinding>,
}

/// Another server's state, while its parts come in.
#[derive(Debug)]
pub(crate) struct SyncInProgress {
    /// Who could have told us what (see [`crate::contact`]), from part 0.
    source: Source,
    /// The users the parts so far listed.
    users: HashSet<String>,
}
