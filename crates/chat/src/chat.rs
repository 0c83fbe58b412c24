//! The chat core's state and its one entry point, [`Chat::handle`]: it checks
//! what every request needs (a logged-in connection) once, then hands each
//! event to the feature that owns it.
//!
//! Each feature is one module holding both its local handler and its network
//! counterpart: [`crate::login`] (logins, names, who is online where),
//! [`crate::rooms`] (rooms, passwords, joining and leaving), [`crate::say`]
//! (chat lines), [`crate::files`] (`whohas` and `getfile` brokering) and
//! [`crate::admin`] (the console). This module keeps what they share: the
//! maps, finding a member, and sending to a member wherever it is connected.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chatdrop_proto::link::{NetMsg, ServerId};
use chatdrop_proto::names::name_key;
use chatdrop_proto::{ClientMsg, ErrorCode, LeaveReason, ServerMsg};

use crate::contact::{Contacts, Source};
use crate::event::{ConnId, Effect, Event};
use crate::files::{Ask, Request};
use crate::link_checks;
use crate::lockout::PasswordFailures;
use crate::login::{Bound, RemoteUser, Session};
use crate::net::{NetEvent, Network};
use crate::room::Room;
use crate::state::{Settings, Snapshot};

/// The chat state of one server. See the crate docs.
#[derive(Debug)]
pub struct Chat {
    pub(crate) settings: Settings,
    pub(crate) rooms: BTreeMap<String, Room>,
    pub(crate) sessions: HashMap<ConnId, Session>,
    pub(crate) online: HashMap<String, ConnId>,
    /// Users online at other servers. Each name shares its binding's
    /// memory (see [`Chat::shared_name`]): a server holds every user of the
    /// network, so each copy of a name counts.
    pub(crate) remote: HashMap<Arc<str>, RemoteUser>,
    /// Name bindings by [`name_key`]: one binding for all the names that
    /// look alike. Kept with [`crate::login::hold`].
    pub(crate) bindings: HashMap<Arc<str>, Bound>,
    /// The servers the bindings name as their homes, each once.
    pub(crate) homes: crate::login::Homes,
    /// Room names by room id (shared with the users of other servers in
    /// each room).
    pub(crate) room_ids: HashMap<String, Arc<str>>,
    /// Room names by [`name_key`], so that a room is found under any case
    /// or look-alike spelling of its name.
    pub(crate) room_keys: HashMap<String, String>,
    /// Which servers could have told us what, and when.
    pub(crate) contacts: Contacts,
    /// Links, routes and channels to the other servers.
    pub(crate) net: Network,
    pub(crate) bans: crate::bans::Bans,
    /// Wrong-password counts per user name, address and room.
    pub(crate) failures: PasswordFailures,
    /// Numbers password checks.
    pub(crate) next_attempt: u64,
    /// File requests waiting for the owner's answer.
    pub(crate) requests: HashMap<u64, Request>,
    pub(crate) next_request: u64,
    /// Transfers brokered lately, whose sides may ask for a relay.
    pub(crate) brokered: crate::brokered::BrokeredTransfers,
    /// When rooms are next looked over for expiry (ms).
    pub(crate) next_room_sweep_ms: u64,
    /// When name bindings are next looked over for expiry (ms).
    pub(crate) next_name_sweep_ms: u64,
    /// New names bound per address block, against
    /// [`Settings::new_names_per_hour`].
    pub(crate) new_names: crate::new_names::NewNames,
    /// Other servers' states coming in parts: the users listed so far.
    pub(crate) syncing: HashMap<ServerId, crate::login::SyncInProgress>,
    /// Set by `exit`: the deadline for the other servers to acknowledge
    /// what they are owed. New logins are refused meanwhile.
    pub(crate) exit_by_ms: Option<u64>,
    /// Whether [`Effect::Shutdown`] was given.
    pub(crate) stopped: bool,
}

/// Where a user is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// At this server, on this connection.
    Local(ConnId),
    /// At another server of the network.
    Remote(ServerId),
}

/// An error answer to one connection.
pub(crate) fn err(conn: ConnId, code: ErrorCode, message: impl Into<String>) -> Effect {
    Effect::Send {
        to: conn,
        msg: ServerMsg::error(code, message),
    }
}

/// The answer to a request about room `room` from a client not in it.
pub(crate) fn not_in_room(conn: ConnId, room: &str) -> Effect {
    err(
        conn,
        ErrorCode::NotInRoom,
        format!("you are not in room {room} (/rooms lists them, /join {room} enters it)"),
    )
}

impl Chat {
    /// A chat core holding what the store saved.
    pub fn new(settings: Settings, snapshot: Snapshot) -> Self {
        let keep = settings.history_len as usize;
        let rooms: BTreeMap<String, Room> = snapshot
            .rooms
            .into_iter()
            .map(|(rec, history)| (rec.name.clone(), Room::new(rec, history, keep)))
            .collect();
        let room_ids = rooms
            .values()
            .map(|r| (r.id().to_string(), Arc::from(r.name())))
            .collect();
        // Rooms or bindings stored before look-alike names counted as the
        // same name may clash: the oldest holds the name, as in a merge
        // (the others keep their exact names).
        let mut by_age: Vec<&Room> = rooms.values().collect();
        by_age.sort_by_key(|r| (r.rec.created_ms, r.id().to_string()));
        let mut room_keys = HashMap::new();
        for r in by_age {
            let name = r.name().to_string();
            room_keys.entry(name_key(&name)).or_insert(name);
        }
        let mut bindings: HashMap<Arc<str>, Bound> = HashMap::new();
        let mut homes = crate::login::Homes::default();
        for b in snapshot.bindings {
            // A binding stored before bindings were vouched for is taken
            // as this server's own, and vouched for now.
            let vouch = b
                .vouch
                .unwrap_or_else(|| settings.identity.vouch(&b.user, &b.public_key, b.bound_ms));
            let bound = Bound::new(
                b.user.into(),
                b.public_key,
                b.bound_ms,
                vouch,
                b.used_again,
                &mut homes,
            );
            let wins = bindings
                .get(name_key(&bound.user).as_str())
                .is_none_or(|held| bound.precedes(held));
            if wins {
                crate::login::hold(&mut bindings, bound);
            }
        }
        let failures = PasswordFailures::new(&settings);
        Chat {
            net: Network::new(settings.identity.clone()),
            settings,
            room_ids,
            room_keys,
            contacts: Contacts::default(),
            remote: HashMap::new(),
            rooms,
            sessions: HashMap::new(),
            online: HashMap::new(),
            bindings,
            homes,
            bans: crate::bans::Bans::load(snapshot.bans.into_iter().map(|b| (b.user, b.reason))),
            failures,
            next_attempt: 1,
            syncing: HashMap::new(),
            exit_by_ms: None,
            stopped: false,
            next_room_sweep_ms: 0,
            next_name_sweep_ms: 0,
            new_names: crate::new_names::NewNames::default(),
            requests: HashMap::new(),
            next_request: 1,
            brokered: Default::default(),
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
            // Everything else a client sends needs a logged-in connection;
            // anything from one that is not (it was closed meanwhile) is
            // dropped here, once for all requests.
            Event::Request { conn, msg } if self.sessions.contains_key(&conn) => {
                self.client_request(now_ms, conn, msg, out)
            }
            Event::CreateRoom {
                conn,
                room,
                password,
                room_id,
            } if self.sessions.contains_key(&conn) => {
                self.create(now_ms, conn, room, password, room_id, out)
            }
            Event::Request { .. } | Event::CreateRoom { .. } => {}
            Event::PasswordHashed {
                conn,
                attempt,
                hash,
            } => self.password_hashed(now_ms, conn, attempt, hash, out),
            Event::PasswordChecked {
                conn, attempt, ok, ..
            } => self.password_checked(now_ms, conn, attempt, ok, out),
            Event::RelayOpened {
                session,
                server,
                user,
                other,
                token,
                at,
            } => {
                let msg = NetMsg::Relay {
                    session,
                    user,
                    other,
                    token,
                    at,
                };
                self.net.send(now_ms, server, msg, out);
            }
            Event::Disconnected { conn } => {
                if self.sessions.contains_key(&conn) {
                    self.logout(now_ms, conn, LeaveReason::Lost, out);
                }
            }
            Event::Admin(cmd) => self.admin(now_ms, cmd, out),
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
                self.sweep_rooms(now_ms, out);
                self.sweep_names(now_ms, out);
            }
            Event::Flush => self.net.flush(out),
        }
        self.exit_when_drained(now_ms, out);
    }

    /// A logged-in client's request, to the feature that owns it.
    fn client_request(&mut self, now_ms: u64, conn: ConnId, msg: ClientMsg, out: &mut Vec<Effect>) {
        match msg {
            ClientMsg::Quit => self.quit(now_ms, conn, out),
            ClientMsg::ListRooms { after } => out.push(Effect::Send {
                to: conn,
                msg: self.room_list(after.as_deref()),
            }),
            ClientMsg::JoinRoom { room, password } => self.join(now_ms, conn, room, password, out),
            ClientMsg::LeaveRoom { room } => self.leave(now_ms, conn, &room, out),
            ClientMsg::GetPeers { room } => self.peers(conn, &room, out),
            ClientMsg::Say { to, room, text } => self.say(now_ms, conn, to, room, text, out),
            ClientMsg::WhoHas { room, file } => self.who_has(now_ms, conn, &room, file, out),
            ClientMsg::History {
                room,
                before,
                after,
                limit,
            } => self.history(conn, &room, before, after, limit, out),
            ClientMsg::HaveFile {
                to,
                file,
                size,
                blake3,
            } => self.have_file(now_ms, conn, to, file, size, blake3, out),
            ClientMsg::GetFile {
                owner,
                file,
                offer,
                eph,
                sig,
                candidates,
            } => {
                let ask = (file, offer, eph, sig, candidates);
                self.get_file(now_ms, conn, owner, ask, out)
            }
            ClientMsg::OfferFiles { to, offer, files } => {
                self.offer_files(now_ms, conn, to, offer, files, out)
            }
            ClientMsg::OfferAnswer { to, offer, accept } => {
                self.offer_answer(now_ms, conn, to, offer, accept, out)
            }
            ClientMsg::FileAnswer { req, answer } => {
                self.file_answer(now_ms, conn, req, answer, out)
            }
            // The connection registers it (see the server's `observe.rs`):
            // it never reaches the core.
            // The same for the datagrams of the relay's slow path.
            ClientMsg::Observe { .. } | ClientMsg::Tunnel { .. } | ClientMsg::RelayEnd { .. } => {}
            ClientMsg::Relay { session } => self.relay(now_ms, conn, session, out),
            ClientMsg::Ping => out.push(Effect::Send {
                to: conn,
                msg: ServerMsg::Pong,
            }),
            ClientMsg::Hello { .. }
            | ClientMsg::Auth { .. }
            | ClientMsg::LinkHello(_)
            | ClientMsg::Mailbox(_) => {
                out.push(err(conn, ErrorCode::BadRequest, "already logged in"))
            }
            // The server gives the room an ID and sends `Event::CreateRoom`;
            // a raw one never reaches the core.
            ClientMsg::CreateRoom { .. } => out.push(err(
                conn,
                ErrorCode::Internal,
                "a room needs an ID before it is created",
            )),
        }
    }

    /// Room `name` (by any spelling of its name), if `conn` is in it;
    /// otherwise an error to `conn`.
    pub(crate) fn joined(&self, conn: ConnId, name: &str, out: &mut Vec<Effect>) -> Option<&Room> {
        let session = self.sessions.get(&conn)?;
        let room = self
            .find_room(name)
            .filter(|n| session.rooms.contains(n))
            .and_then(|n| self.rooms.get(&n));
        if room.is_none() {
            out.push(not_in_room(conn, name));
        }
        room
    }

    /// The user `name` if it shares a room with `conn` (where it is
    /// connected), or an error to `conn`.
    pub(crate) fn fellow(&self, conn: ConnId, name: &str, out: &mut Vec<Effect>) -> Option<Who> {
        let session = self.sessions.get(&conn)?;
        let rooms = session.rooms.iter().filter_map(|r| self.rooms.get(r));
        let found = match self.online.get(name) {
            Some(c) => rooms
                .into_iter()
                .any(|r| r.has(*c))
                .then_some(Who::Local(*c)),
            None => rooms
                .into_iter()
                .find_map(|r| r.remote_server(name))
                .map(Who::Remote),
        };
        if found.is_none() {
            out.push(err(
                conn,
                ErrorCode::UnknownUser,
                format!("no user {name} in your rooms"),
            ));
        }
        found
    }

    /// Sends to a user wherever it is connected: `here` as a frame to its
    /// connection, or `there` through the network to its server. Only the
    /// one needed is built.
    pub(crate) fn send_to_member(
        &mut self,
        now_ms: u64,
        who: Who,
        here: impl FnOnce() -> ServerMsg,
        there: impl FnOnce() -> NetMsg,
        out: &mut Vec<Effect>,
    ) {
        match who {
            Who::Local(conn) => out.push(Effect::Send {
                to: conn,
                msg: here(),
            }),
            Who::Remote(server) => self.net.send(now_ms, server, there(), out),
        }
    }

    /// Sends to `user` if it is online here (a message another server
    /// routed to it, which may have left meanwhile).
    pub(crate) fn send_to_online(&self, user: &str, msg: ServerMsg, out: &mut Vec<Effect>) {
        if let Some(conn) = self.online.get(user).copied() {
            out.push(Effect::Send { to: conn, msg });
        }
    }

    /// Names of a room's members: those connected here in the order they
    /// joined, then those at other servers.
    pub(crate) fn names(&self, room: &Room, except: Option<ConnId>) -> Vec<String> {
        room.local()
            .iter()
            .filter(|c| Some(**c) != except)
            .filter_map(|c| self.sessions.get(c).map(|s| s.user.clone()))
            .chain(room.remote_names().map(|n| n.to_string()))
            .collect()
    }

    /// Acts on what the network layer reports.
    fn net_events(&mut self, now_ms: u64, events: Vec<NetEvent>, out: &mut Vec<Effect>) {
        for event in events {
            match event {
                NetEvent::Lost { server } => {
                    self.contacts.lost(server, now_ms);
                    self.server_lost(server, out);
                    out.push(self.network_notice(format!(
                        "lost sight of server {}",
                        self.net.name_of(&server)
                    )));
                }
                NetEvent::Resync { from, inc } => {
                    let sync = self.sync_parts();
                    self.net.open(now_ms, from, inc, sync, out);
                }
                NetEvent::Deliver { from, msg } => self.net_msg(now_ms, from, msg, out),
            }
        }
    }

    /// A console line on a change in the network, with how much of it this
    /// server is in sync with.
    pub(crate) fn network_notice(&self, what: String) -> Effect {
        let (synced, reachable) = self.net.sync_counts();
        Effect::Console(format!(
            "[network] {what}; {synced}/{reachable} reachable servers in sync"
        ))
    }

    /// A message from another server, to the feature that owns it.
    pub(crate) fn net_msg(
        &mut self,
        now_ms: u64,
        from: ServerId,
        msg: NetMsg,
        out: &mut Vec<Effect>,
    ) {
        let msg = if let NetMsg::Sync { .. } = msg {
            // A bad record costs only itself, not the rest of the state.
            let (msg, dropped) = link_checks::keep_good(msg, now_ms, |b| self.holds(b));
            if let Some((count, why)) = dropped {
                out.push(self.network_notice(format!(
                    "dropped {count} record(s) of the state of server {}; the first: {why}",
                    self.net.name_of(&from)
                )));
            }
            msg
        } else {
            if let Err(why) = link_checks::check(&msg, now_ms, |b| self.holds(b)) {
                out.push(self.network_notice(format!(
                    "dropped a message from server {}: {why}",
                    self.net.name_of(&from)
                )));
                return;
            }
            msg
        };
        match msg {
            NetMsg::Sync {
                part,
                last,
                users,
                rooms,
                bindings,
            } => {
                let state = crate::login::SyncPart {
                    part,
                    last,
                    users,
                    rooms,
                    bindings,
                };
                self.remote_sync(now_ms, from, state, out)
            }
            NetMsg::Online(u) => self.remote_online(now_ms, from, u, out),
            NetMsg::Offline { user, reason } => {
                if self.of_server(&user, from) {
                    self.remove_remote(&user, reason, out);
                }
            }
            NetMsg::Bind(b) => self.merge_binding(b, Source::live(from, now_ms), out),
            NetMsg::Room(r) => self.merge_room(r, Source::live(from, now_ms), out),
            NetMsg::Enter { user, room } => {
                if self.of_server(&user, from) {
                    self.remote_enter(&user, &room, out);
                }
            }
            NetMsg::Leave { user, room, reason } => {
                if self.of_server(&user, from) {
                    self.remote_leave(&user, &room, reason, out);
                }
            }
            NetMsg::Say {
                from: sender,
                room,
                to,
                text,
                ts,
            } => self.remote_say(from, sender, room, to, text, ts, out),
            NetMsg::WhoHas {
                from: asker,
                room,
                file,
            } => self.remote_who_has(from, asker, room, file, out),
            NetMsg::HaveFile {
                from: owner,
                to,
                file,
                size,
                blake3,
            } => self.remote_have_file(from, owner, to, file, size, blake3, out),
            NetMsg::GetFile {
                from: asker,
                from_key,
                owner,
                file,
                offer,
                eph,
                sig,
                candidates,
            } => {
                let ask = Ask {
                    from: asker,
                    from_key,
                    file,
                    offer,
                    eph,
                    sig,
                    candidates,
                };
                self.remote_get_file(now_ms, from, owner, ask, out)
            }
            NetMsg::FileOffer {
                to,
                from: owner,
                from_key,
                file,
                addr,
                offer,
                offered,
            } => {
                let offer = (offer, offered);
                self.remote_offer(now_ms, from, to, owner, from_key, file, addr, offer, out)
            }
            NetMsg::Refused {
                to,
                from: owner,
                file,
                reason,
                detail,
                offered,
            } => self.remote_refused(to, owner, (file, offered), reason, detail, out),
            NetMsg::Relay {
                session,
                user,
                other,
                token,
                at,
            } => self.remote_relay(now_ms, from, session, (user, other), token, at, out),
            NetMsg::OfferFiles {
                from: sender,
                to,
                offer,
                files,
            } => self.remote_offer_files(from, sender, to, offer, files, out),
            NetMsg::OfferAnswer {
                from: receiver,
                to,
                offer,
                accept,
            } => self.remote_offer_answer(from, receiver, to, offer, accept, out),
        }
    }

    /// Whether the remote user `user` is `server`'s: a server speaks only
    /// for its own users.
    pub(crate) fn of_server(&self, user: &str, server: ServerId) -> bool {
        self.remote.get(user).is_some_and(|u| u.server == server)
    }
}
