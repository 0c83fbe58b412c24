//! The admin console: its command language ([`command`]) and what each
//! command does to the chat state (messages from the server, kick, ban,
//! listings, exit).
//!
//! The console acts on this server's users only; a user connected to
//! another server of the network is that server's admin's to kick or ban.

mod command;

use command::ADMIN_HELP;
pub use command::{parse_admin, AdminCommand};

use chatdrop_proto::{LeaveReason, ServerMsg, Target};

use crate::bans::BanTarget;
use crate::chat::Chat;
use crate::event::{ConnId, Effect, Persist};
use crate::room::line;

/// Name shown as the sender of messages typed at the admin console.
pub(crate) const SERVER_SENDER: &str = "server";

/// How long an exiting server waits for the other servers to acknowledge
/// what it sent them (ms).
pub(crate) const EXIT_DRAIN_MS: u64 = 5_000;

impl Chat {
    /// Carries out one console command.
    pub(crate) fn admin(&mut self, now_ms: u64, cmd: AdminCommand, out: &mut Vec<Effect>) {
        let console = |s: String| Effect::Console(s);
        match cmd {
            AdminCommand::Help => out.push(console(ADMIN_HELP.to_string())),
            AdminCommand::Policy => {
                out.extend(self.settings.policy.describe().into_iter().map(console))
            }
            AdminCommand::ToSelf { text } => out.push(console(format!("@server|{text}"))),
            AdminCommand::Links => out.extend(self.net.describe_links().into_iter().map(console)),
            AdminCommand::Network => {
                out.extend(self.net.describe_network().into_iter().map(console))
            }
            // The relays are the server's, outside the core: it answers.
            AdminCommand::Relays => {}
            AdminCommand::ToUser { user, text } => {
                let Some(conn) = self.online.get(&user).copied() else {
                    out.push(console(self.not_here(&user)));
                    return;
                };
                let to = Target::User(user.clone());
                out.push(Effect::Send {
                    to: conn,
                    msg: line(None, SERVER_SENDER.into(), to, text, now_ms),
                });
                out.push(console(format!("sent to {user}")));
            }
            AdminCommand::ToAll { text } => {
                // Outside any room: one frame for everyone.
                let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
                let n = conns.len();
                if n > 0 {
                    out.push(Effect::Broadcast {
                        to: conns,
                        msg: line(None, SERVER_SENDER.into(), Target::All, text, now_ms),
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
                let target = match BanTarget::parse(&user) {
                    Ok(t) => t,
                    Err(why) => return out.push(console(why)),
                };
                let written = target.to_string();
                self.bans.add(&target, reason.clone());
                out.push(Effect::Persist(Persist::Ban {
                    user: written.clone(),
                    reason: reason.clone(),
                }));
                // Everyone here the ban covers goes now.
                let covered: Vec<String> = self
                    .sessions
                    .values()
                    .filter(|s| match &target {
                        BanTarget::User(u) => s.user == *u,
                        BanTarget::Key(k) => s.key == *k,
                        BanTarget::Net(n) => n.contains(&s.ip.to_canonical()),
                    })
                    .map(|s| s.user.clone())
                    .collect();
                for u in &covered {
                    let why = format!("banned: {reason}");
                    self.remove_user(now_ms, u, LeaveReason::Banned, why, out);
                }
                let and = match covered.len() {
                    0 => String::new(),
                    1 => format!(" and disconnected {}", covered[0]),
                    n => format!(" and disconnected {n} users"),
                };
                out.push(console(format!("banned {written}{and}")));
            }
            AdminCommand::Unban { user } => {
                let target = match BanTarget::parse(&user) {
                    Ok(t) => t,
                    Err(why) => return out.push(console(why)),
                };
                let written = target.to_string();
                if self.bans.remove(&target) {
                    out.push(Effect::Persist(Persist::Unban {
                        user: written.clone(),
                    }));
                    out.push(console(format!("unbanned {written}")));
                } else {
                    out.push(console(format!("{written} is not banned")));
                }
            }
            AdminCommand::Bans => {
                let mut any = false;
                for (target, reason) in self.bans.list() {
                    any = true;
                    out.push(console(format!("{target}: {reason}")));
                }
                if !any {
                    out.push(console("no bans".into()));
                }
            }
            AdminCommand::Rooms => {
                if self.rooms.is_empty() {
                    out.push(console("no rooms".into()));
                }
                for room in self.rooms.values() {
                    out.push(console(format!(
                        "{} ({}, id {}, created by {}, {} members): {}",
                        room.name(),
                        if room.is_private() {
                            "private"
                        } else {
                            "public"
                        },
                        room.id(),
                        room.rec.creator,
                        room.member_count(),
                        self.names(room, None).join(", ")
                    )));
                }
            }
            AdminCommand::Peers { room } => {
                match self.find_room(&room).and_then(|n| self.rooms.get(&n)) {
                    Some(r) => out.push(console(format!(
                        "{room}: {}",
                        self.names(r, None).join(", ")
                    ))),
                    None => out.push(console(format!("no room named {room}"))),
                }
            }
            AdminCommand::Exit => self.exit(now_ms, out),
        }
    }

    /// `exit`: every client is told and closed, then the server stops once
    /// the other servers have acknowledged what it owes them (or after
    /// [`EXIT_DRAIN_MS`]): a line a client saw echoed is not lost on the
    /// way out.
    fn exit(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        if self.exit_by_ms.is_some() {
            return;
        }
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
            room.clear_local();
        }
        self.exit_by_ms = Some(now_ms + EXIT_DRAIN_MS);
        let owed = self.net.unacknowledged();
        if owed > 0 {
            out.push(Effect::Console(format!(
                "stopping once other servers acknowledge {owed} messages (at most {} s)",
                EXIT_DRAIN_MS / 1000
            )));
        }
        self.exit_when_drained(now_ms, out);
    }

    /// While exiting: stops the server once nothing is owed to a reachable
    /// server, or at the deadline.
    pub(crate) fn exit_when_drained(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(by) = self.exit_by_ms else {
            return;
        };
        if self.stopped {
            return;
        }
        let owed = self.net.unacknowledged();
        if owed == 0 || now_ms >= by {
            if owed > 0 {
                out.push(Effect::Console(format!(
                    "stopping with {owed} messages not acknowledged by other servers"
                )));
            }
            self.stopped = true;
            out.push(Effect::Shutdown);
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
