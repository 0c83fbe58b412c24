//! Chat lines: to a room, to one user anywhere in the network (a direct
//! message), or to the admin console; lines from users of other servers;
//! and each room's history.
//!
//! A line to the room goes to every server, not only to those hosting
//! members, since every server keeps every room's history.

use chatdrop_proto::limits::HISTORY_PAGE;
use chatdrop_proto::link::{NetMsg, ServerId};
use chatdrop_proto::{ErrorCode, ServerMsg, Target};

use crate::chat::{err, Chat, Who};
use crate::event::{ConnId, Effect, Persist};
use crate::link_checks::check_text;
use crate::room::line;

impl Chat {
    /// `Say` from a client here: to a room it is in, to a user online
    /// anywhere in the network, or to the admin console.
    pub(crate) fn say(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        to: Target,
        room: Option<String>,
        text: String,
        out: &mut Vec<Effect>,
    ) {
        if let Err((code, why)) = check_text(&text) {
            out.push(err(conn, code, why));
            return;
        }
        let from = self.sessions[&conn].user.clone();
        let name = match to {
            Target::Server => {
                out.push(Effect::Console(format!("@{from}|{text}")));
                out.push(Effect::Send {
                    to: conn,
                    msg: line(None, from, Target::Server, text, now_ms),
                });
                return;
            }
            Target::User(name) => name,
            Target::All => {
                let Some(room) = room else {
                    out.push(err(
                        conn,
                        ErrorCode::BadRequest,
                        "a line to the room names the room",
                    ));
                    return;
                };
                let Some(room) = self.joined(conn, &room, out) else {
                    return;
                };
                let (room_name, room_id) = (room.name().to_string(), room.id().to_string());
                self.room_line(&room_name, &from, &text, now_ms, out);
                let servers: Vec<ServerId> = self.net.reachable().copied().collect();
                for server in servers {
                    let msg = NetMsg::Say {
                        from: from.clone(),
                        room: Some(room_id.clone()),
                        to: Target::All,
                        text: text.clone(),
                        ts: now_ms,
                    };
                    self.net.send(now_ms, server, msg, out);
                }
                return;
            }
        };
        // A direct message: to the user wherever it is online.
        let Some(at) = self.online_anywhere(conn, &name, out) else {
            return;
        };
        let receipt = line(
            None,
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
                    room: None,
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

    /// Where the user `name` is online in the network, if it is.
    pub(crate) fn where_online(&self, name: &str) -> Option<Who> {
        match self.online.get(name).copied() {
            Some(c) => Some(Who::Local(c)),
            None => self.remote.get(name).map(|u| Who::Remote(u.server)),
        }
    }

    /// Where the user `name` is online in the network, or an error to
    /// `conn`.
    pub(crate) fn online_anywhere(
        &self,
        conn: ConnId,
        name: &str,
        out: &mut Vec<Effect>,
    ) -> Option<Who> {
        let at = self.where_online(name);
        if at.is_none() {
            out.push(err(
                conn,
                ErrorCode::UnknownUser,
                format!("no user {name} is online in the network"),
            ));
        }
        at
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
        let (seq, entry) = room.record(from, text, ts, keep);
        if let Some(entry) = entry {
            out.push(Effect::Persist(Persist::History {
                room: room_name.to_string(),
                entry,
                keep,
            }));
        }
        if !room.local().is_empty() {
            let ServerMsg::Message(mut l) = line(
                Some(room_name.to_string()),
                from.to_string(),
                Target::All,
                text.to_string(),
                ts,
            ) else {
                return;
            };
            l.seq = seq;
            out.push(Effect::Broadcast {
                to: room.local().to_vec(),
                msg: ServerMsg::Message(l),
            });
        }
    }

    /// A line from a user of server `server`: to a room (by id), or a
    /// direct message to a user here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn remote_say(
        &mut self,
        server: ServerId,
        sender: String,
        room_id: Option<String>,
        to: Target,
        text: String,
        ts: u64,
        out: &mut Vec<Effect>,
    ) {
        if !self.of_server(&sender, server) {
            return;
        }
        match (to, room_id) {
            (Target::All, Some(room_id)) => {
                if let Some(name) = self.room_ids.get(&room_id).cloned() {
                    self.room_line(&name, &sender, &text, ts, out);
                }
            }
            (Target::User(user), None) => {
                if let Some(conn) = self.online.get(&user).copied() {
                    out.push(Effect::Send {
                        to: conn,
                        msg: line(None, sender, Target::User(user), text, ts),
                    });
                }
            }
            _ => {}
        }
    }

    /// `History`: a page of room `room`'s history, for a member.
    pub(crate) fn history(
        &self,
        conn: ConnId,
        room: &str,
        before: Option<u64>,
        after: Option<u64>,
        limit: u16,
        out: &mut Vec<Effect>,
    ) {
        let Some(r) = self.joined(conn, room, out) else {
            return;
        };
        let limit = usize::from(limit).clamp(1, HISTORY_PAGE);
        let (lines, more) = r.page(before, after, limit);
        out.push(Effect::Send {
            to: conn,
            msg: ServerMsg::History {
                room: r.name().to_string(),
                lines,
                more,
            },
        });
    }
}
