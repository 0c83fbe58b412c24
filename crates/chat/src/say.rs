//! Chat lines: to the room, to one member, or to the admin console; lines
//! from users of other servers; and each room's history.
//!
//! A line to the room goes to every server, not only to those hosting
//! members, since every server keeps every room's history.

use chatdrop_proto::link::{NetMsg, ServerId};
use chatdrop_proto::{ErrorCode, Target};

use crate::chat::{err, not_in_room, Chat, Who};
use crate::event::{ConnId, Effect, Persist};
use crate::link_checks::check_text;
use crate::room::line;

impl Chat {
    /// `Say` from a client here.
    pub(crate) fn say(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        to: Target,
        text: String,
        out: &mut Vec<Effect>,
    ) {
        if let Err((code, why)) = check_text(&text) {
            out.push(err(conn, code, why));
            return;
        }
        let session = &self.sessions[&conn];
        let from = session.user.clone();
        if to == Target::Server {
            out.push(Effect::Console(format!("@{from}|{text}")));
            out.push(Effect::Send {
                to: conn,
                msg: line(session.room.clone(), from, Target::Server, text, now_ms),
            });
            return;
        }
        let Some(room_name) = &session.room else {
            out.push(not_in_room(conn));
            return;
        };
        let Some(room) = self.rooms.get(room_name) else {
            return;
        };
        let (room_name, room_id) = (room.name().to_string(), room.id().to_string());
        let name = match to {
            Target::User(name) => name,
            _ => {
                self.room_line(&room_name, &from, &text, now_ms, out);
                let servers: Vec<ServerId> = self.net.reachable().copied().collect();
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
                return;
            }
        };
        let at = match self.online.get(&name).copied() {
            Some(c) if room.has(c) => Some(Who::Local(c)),
            _ => room.remote_server(&name).map(Who::Remote),
        };
        let Some(at) = at else {
            out.push(err(
                conn,
                ErrorCode::UnknownUser,
                format!("no user {name} in room {room_name}"),
            ));
            return;
        };
        let receipt = line(
            Some(room_name),
            from.clone(),
            Target::User(name.clone()),
            text.clone(),
            now_ms,
        );
        match at {
            // The sender gets the line back as its receipt: one frame for
            // both when both are here.
            Who::Local(target) if target != conn => out.push(Effect::Broadcast {
                to: vec![target, conn],
                msg: receipt,
            }),
            Who::Local(_) => out.push(Effect::Send {
                to: conn,
                msg: receipt,
            }),
            Who::Remote(server) => {
                let msg = NetMsg::Say {
                    from,
                    room: room_id,
                    to: Target::User(name),
                    text,
                    ts: now_ms,
                };
                self.net.send(now_ms, server, msg, out);
                out.push(Effect::Send {
                    to: conn,
                    msg: receipt,
                });
            }
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
        if let Some(entry) = room.record(from, text, ts, keep) {
            out.push(Effect::Persist(Persist::History {
                room: room_name.to_string(),
                entry,
                keep,
            }));
        }
        if !room.local().is_empty() {
            out.push(Effect::Broadcast {
                to: room.local().to_vec(),
                msg: line(
                    Some(room_name.to_string()),
                    from.to_string(),
                    Target::All,
                    text.to_string(),
                    ts,
                ),
            });
        }
    }

    /// A line from a user of server `server`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn remote_say(
        &mut self,
        server: ServerId,
        sender: String,
        room_id: String,
        to: Target,
        text: String,
        ts: u64,
        out: &mut Vec<Effect>,
    ) {
        let Some(name) = self.room_ids.get(&room_id).cloned() else {
            return;
        };
        if !self.of_server(&sender, server) {
            return;
        }
        match to {
            Target::All => self.room_line(&name, &sender, &text, ts, out),
            Target::User(user) => {
                if let Some(conn) = self.local_in(&user, &room_id) {
                    out.push(Effect::Send {
                        to: conn,
                        msg: line(Some(name.to_string()), sender, Target::User(user), text, ts),
                    });
                }
            }
            Target::Server => {}
        }
    }
}
