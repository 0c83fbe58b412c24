//! File brokering: `whohas` to the room, owners' answers back to the asker,
//! `getfile` requests to the owner and its offer or refusal back, here or
//! across the network. The server checks names and its share policy and
//! passes keys and addresses along; it never sees a file's bytes.

use std::net::SocketAddr;

use chatdrop_proto::limits::MAX_CANDIDATES;
use chatdrop_proto::link::{NetMsg, ServerId};
use chatdrop_proto::names;
use chatdrop_proto::{ErrorCode, FileAnswer, Offer, RefuseReason, ServerMsg};

use crate::admin::SERVER_SENDER;
use crate::brokered::Side;
use crate::chat::{err, Chat, Who};
use crate::event::{ConnId, Effect};

/// A file request brokered between two members, waiting for the owner.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) asker: Who,
    asker_name: String,
    pub(crate) owner: ConnId,
    file: String,
    /// The offer of files the request named, if any.
    offer: Option<u64>,
}

/// A file request on its way to the owner: who asks, with which key, for
/// what, and the asker's signed ephemeral key for the session.
pub(crate) struct Ask {
    pub(crate) from: String,
    pub(crate) from_key: [u8; 32],
    pub(crate) file: String,
    /// The owner's offer it is asked from, if any.
    pub(crate) offer: Option<u64>,
    pub(crate) eph: [u8; 32],
    pub(crate) sig: Vec<u8>,
    pub(crate) candidates: Vec<SocketAddr>,
}

/// At most [`MAX_CANDIDATES`] candidate addresses, in a request or an
/// offer.
pub(crate) fn check_candidates(candidates: &[SocketAddr]) -> Result<(), String> {
    if candidates.len() > MAX_CANDIDATES {
        return Err(format!(
            "{} candidate addresses; at most {MAX_CANDIDATES} are allowed",
            candidates.len()
        ));
    }
    Ok(())
}

/// A refusal as the asker receives it, of `file` (of the offer of files
/// `offered`, if the request named one).
fn refusal(
    from: &str,
    (file, offered): (&str, Option<u64>),
    reason: RefuseReason,
    detail: &str,
) -> ServerMsg {
    ServerMsg::TransferRefused {
        from: from.to_string(),
        file: file.to_string(),
        reason,
        detail: detail.to_string(),
        offered,
    }
}

/// A refusal sent to an asker here.
fn refused(
    to: ConnId,
    from: &str,
    asked: (&str, Option<u64>),
    reason: RefuseReason,
    detail: &str,
) -> Effect {
    Effect::Send {
        to,
        msg: refusal(from, asked, reason, detail),
    }
}

/// Whether a file name may be passed on (see
/// [`chatdrop_proto::names::check_file_name`]); if not, `conn` is told why.
fn check_file_name(conn: ConnId, file: &str, out: &mut Vec<Effect>) -> bool {
    match names::check_file_name(file) {
        Ok(()) => true,
        Err(why) => {
            out.push(err(conn, ErrorCode::BadRequest, why));
            false
        }
    }
}

/// What the asker is told when the owner refuses.
fn refusal_detail(owner: &str, file: &str, reason: RefuseReason) -> String {
    match reason {
        RefuseReason::Busy => format!("{owner} is busy with other uploads"),
        RefuseReason::NotFound => format!("{owner} has no file {file}"),
        RefuseReason::NotShared => format!("{owner} does not share {file}"),
        RefuseReason::BadName => format!("{file:?} is not a shareable file name"),
        RefuseReason::Blocked => "blocked by the owner".to_string(),
    }
}

impl Chat {
    /// `WhoHas`: the question goes to the room, here and at the servers
    /// hosting its other members.
    pub(crate) fn who_has(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        room: &str,
        file: String,
        out: &mut Vec<Effect>,
    ) {
        if !check_file_name(conn, &file, out) {
            return;
        }
        let Some(room) = self.joined(conn, room, out) else {
            return;
        };
        if let Err(why) = self.settings.policy.check_name(&file) {
            out.push(refused(
                conn,
                SERVER_SENDER,
                (&file, None),
                RefuseReason::Blocked,
                &why,
            ));
            return;
        }
        let others: Vec<ConnId> = room
            .local()
            .iter()
            .copied()
            .filter(|c| *c != conn)
            .collect();
        let servers = room.servers();
        let room_id = room.id().to_string();
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

    /// `HaveFile`: an owner's answer goes back to the asker, unless the
    /// share policy blocks the file (the asker is told why instead).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn have_file(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        to: String,
        file: String,
        size: u64,
        blake3: [u8; 32],
        out: &mut Vec<Effect>,
    ) {
        if !check_file_name(conn, &file, out) {
            return;
        }
        let Some(asker) = self.fellow(conn, &to, out) else {
            return;
        };
        let from = self.sessions[&conn].user.clone();
        if let Err(why) = self.settings.policy.check_file(&file, size, &blake3) {
            let reason = RefuseReason::Blocked;
            self.refuse_to(now_ms, asker, &to, &from, (&file, None), reason, why, out);
            return;
        }
        self.send_to_member(
            now_ms,
            asker,
            || ServerMsg::HaveFile {
                from: from.clone(),
                file: file.clone(),
                size,
                blake3,
            },
            || NetMsg::HaveFile {
                from: from.clone(),
                to: to.clone(),
                file: file.clone(),
                size,
                blake3,
            },
            out,
        );
    }

    /// Tells an asker, here or at another server, that a request was refused.
    #[allow(clippy::too_many_arguments)]
    fn refuse_to(
        &mut self,
        now_ms: u64,
        asker: Who,
        asker_name: &str,
        owner: &str,
        (file, offered): (&str, Option<u64>),
        reason: RefuseReason,
        detail: String,
        out: &mut Vec<Effect>,
    ) {
        self.send_to_member(
            now_ms,
            asker,
            || refusal(owner, (file, offered), reason, &detail),
            || NetMsg::Refused {
                to: asker_name.to_string(),
                from: owner.to_string(),
                file: file.to_string(),
                reason,
                detail: detail.clone(),
                offered,
            },
            out,
        );
    }

    /// `GetFile`: the request goes to the owner, here or at its server: a
    /// member of one of the asker's rooms, or, for a file the owner offered
    /// (`offer`), the owner wherever it is online.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn get_file(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        owner: String,
        (file, offer, eph, sig, candidates): (
            String,
            Option<u64>,
            [u8; 32],
            Vec<u8>,
            Vec<SocketAddr>,
        ),
        out: &mut Vec<Effect>,
    ) {
        if !check_file_name(conn, &file, out) {
            return;
        }
        if let Err(why) = check_candidates(&candidates) {
            out.push(err(conn, ErrorCode::BadRequest, why));
            return;
        }
        // A file of an offer whose sender left is refused, so that the
        // asker goes on with the offer's next file.
        let owner_at = match offer {
            None => self.fellow(conn, &owner, out),
            Some(_) => {
                let at = self.where_online(&owner);
                if at.is_none() {
                    let why = format!("{owner} is no longer online");
                    let asked = (file.as_str(), offer);
                    out.push(refused(conn, &owner, asked, RefuseReason::NotFound, &why));
                }
                at
            }
        };
        let Some(owner_at) = owner_at else {
            return;
        };
        if let Err(why) = self.settings.policy.check_name(&file) {
            let asked = (file.as_str(), offer);
            out.push(refused(conn, &owner, asked, RefuseReason::Blocked, &why));
            return;
        }
        let asker = &self.sessions[&conn];
        let (from, from_key) = (asker.user.clone(), asker.key);
        match owner_at {
            Who::Local(owner_conn) => {
                let ask = Ask {
                    from,
                    from_key,
                    file,
                    offer,
                    eph,
                    sig,
                    candidates,
                };
                self.pass_request(now_ms, Who::Local(conn), ask, owner_conn, out)
            }
            Who::Remote(server) => {
                let msg = NetMsg::GetFile {
                    from,
                    from_key,
                    owner,
                    file,
                    offer,
                    eph,
                    sig,
                    candidates,
                };
                self.net.send(now_ms, server, msg, out);
            }
        }
    }

    /// Passes a file request to an owner connected here.
    fn pass_request(
        &mut self,
        now_ms: u64,
        asker: Who,
        ask: Ask,
        owner: ConnId,
        out: &mut Vec<Effect>,
    ) {
        let Ask {
            from: asker_name,
            from_key: asker_key,
            file,
            offer,
            eph,
            sig,
            candidates,
        } = ask;
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
                    let owner_name = owner_name.as_deref().unwrap_or(SERVER_SENDER);
                    let (reason, why) = (RefuseReason::Blocked, why.to_string());
                    self.refuse_to(
                        now_ms,
                        asker,
                        &asker_name,
                        owner_name,
                        (&file, offer),
                        reason,
                        why,
                        out,
                    );
                }
            }
            return;
        }
        // Where the asker is, for the owner to take the transfer from
        // there only; an asker gone meanwhile needs no answer.
        let from_ip = match asker {
            Who::Local(conn) => self.sessions.get(&conn).map(|s| s.ip),
            Who::Remote(_) => self.remote.get(asker_name.as_str()).map(|r| r.ip),
        };
        let Some(from_ip) = from_ip else {
            return;
        };
        let req = self.next_request;
        self.next_request += 1;
        self.requests.insert(
            req,
            Request {
                asker,
                asker_name: asker_name.clone(),
                owner,
                file: file.clone(),
                offer,
            },
        );
        out.push(Effect::Send {
            to: owner,
            msg: ServerMsg::FileRequest {
                req,
                from: asker_name,
                from_key: asker_key,
                file,
                offer,
                eph,
                sig,
                from_ip,
                candidates,
            },
        });
    }

    /// `FileAnswer`: the owner's offer (checked against the share policy)
    /// or refusal goes back to the asker, if it is still there.
    pub(crate) fn file_answer(
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
        let owner = &self.sessions[&conn];
        let asker_here = match r.asker {
            Who::Local(c) => self.sessions.contains_key(&c),
            Who::Remote(s) => self.of_server(&r.asker_name, s),
        };
        if !asker_here {
            return; // the asker is gone
        }
        let (owner_name, owner_key, owner_ip) = (owner.user.clone(), owner.key, owner.ip);
        let verdict = match answer {
            FileAnswer::Refuse(reason) => {
                Err((reason, refusal_detail(&owner_name, &r.file, reason)))
            }
            FileAnswer::Accept(offer) => {
                let policy = &self.settings.policy;
                let checked = check_candidates(&offer.candidates)
                    .and_then(|()| policy.check_file(&r.file, offer.size, &offer.blake3));
                match checked {
                    Ok(()) => Ok(offer),
                    Err(why) => Err((RefuseReason::Blocked, why)),
                }
            }
        };
        let offer = match verdict {
            Ok(offer) => offer,
            Err((reason, detail)) => {
                let (asker, asked) = (r.asker, (r.file.as_str(), r.offer));
                let to = &r.asker_name;
                self.refuse_to(now_ms, asker, to, &owner_name, asked, reason, detail, out);
                return;
            }
        };
        let addr = SocketAddr::new(owner_ip, offer.port);
        let asker = Side {
            at: r.asker,
            user: r.asker_name.clone(),
        };
        let owner = Side {
            at: Who::Local(conn),
            user: owner_name.clone(),
        };
        self.brokered.record(now_ms, offer.session, asker, owner);
        self.send_to_member(
            now_ms,
            r.asker,
            || ServerMsg::FileOffer {
                from: owner_name.clone(),
                from_key: owner_key,
                file: r.file.clone(),
                addr,
                offer: offer.clone(),
                offered: r.offer,
            },
            || NetMsg::FileOffer {
                to: r.asker_name.clone(),
                from: owner_name.clone(),
                from_key: owner_key,
                file: r.file.clone(),
                addr,
                offer: offer.clone(),
                offered: r.offer,
            },
            out,
        );
    }

    /// A `WhoHas` from a user of `server`, for the room's members here.
    pub(crate) fn remote_who_has(
        &mut self,
        server: ServerId,
        asker: String,
        room_id: String,
        file: String,
        out: &mut Vec<Effect>,
    ) {
        let Some(r) = self
            .room_ids
            .get(&room_id)
            .and_then(|n| self.rooms.get(&**n))
        else {
            return;
        };
        if !self.of_server(&asker, server) {
            return;
        }
        if !r.local().is_empty() {
            out.push(Effect::Broadcast {
                to: r.local().to_vec(),
                msg: ServerMsg::WhoHas { from: asker, file },
            });
        }
    }

    /// A `HaveFile` from an owner at `server`, for an asker here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn remote_have_file(
        &mut self,
        server: ServerId,
        owner: String,
        to: String,
        file: String,
        size: u64,
        blake3: [u8; 32],
        out: &mut Vec<Effect>,
    ) {
        if !self.of_server(&owner, server) {
            return;
        }
        let msg = ServerMsg::HaveFile {
            from: owner,
            file,
            size,
            blake3,
        };
        self.send_to_online(&to, msg, out);
    }

    /// A `GetFile` from an asker at `server`, for an owner here.
    pub(crate) fn remote_get_file(
        &mut self,
        now_ms: u64,
        server: ServerId,
        owner: String,
        ask: Ask,
        out: &mut Vec<Effect>,
    ) {
        let Some(owner_conn) = self.online.get(&owner).copied() else {
            let detail = format!("{owner} is no longer connected");
            let (at, reason) = (Who::Remote(server), RefuseReason::NotFound);
            let asked = (ask.file.as_str(), ask.offer);
            self.refuse_to(now_ms, at, &ask.from, &owner, asked, reason, detail, out);
            return;
        };
        // The asker is that server's, with the key this server knows for
        // its name.
        if !self.of_server(&ask.from, server) || self.bound_otherwise(&ask.from, &ask.from_key) {
            return;
        }
        self.pass_request(now_ms, Who::Remote(server), ask, owner_conn, out);
    }

    /// An owner's offer from `server`, for an asker here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn remote_offer(
        &mut self,
        now_ms: u64,
        server: ServerId,
        to: String,
        owner: String,
        from_key: [u8; 32],
        file: String,
        addr: SocketAddr,
        (offer, offered): (Offer, Option<u64>),
        out: &mut Vec<Effect>,
    ) {
        let owner_ok = self.of_server(&owner, server) && self.remote_key(&owner) == Some(from_key);
        if !owner_ok {
            return;
        }
        if let Some(conn) = self.online.get(&to).copied() {
            let asker = Side {
                at: Who::Local(conn),
                user: to.clone(),
            };
            let owner = Side {
                at: Who::Remote(server),
                user: owner.clone(),
            };
            self.brokered.record(now_ms, offer.session, asker, owner);
        }
        let msg = ServerMsg::FileOffer {
            from: owner,
            from_key,
            file,
            addr,
            offer,
            offered,
        };
        self.send_to_online(&to, msg, out);
    }

    /// A refusal from another server, for an asker here.
    pub(crate) fn remote_refused(
        &mut self,
        to: String,
        owner: String,
        (file, offered): (String, Option<u64>),
        reason: RefuseReason,
        detail: String,
        out: &mut Vec<Effect>,
    ) {
        let msg = refusal(&owner, (&file, offered), reason, &detail);
        self.send_to_online(&to, msg, out);
    }
}
