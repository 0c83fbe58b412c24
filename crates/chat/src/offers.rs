//! Offers of files (`/send`): a user offers files to another, online
//! anywhere in the network, which accepts or declines. The offer and its
//! answer travel as direct messages do; the files then move as any other,
//! each asked for with a `GetFile` naming the offer (see `files.rs`).

use chatdrop_proto::limits::MAX_OFFER_FILES;
use chatdrop_proto::link::{NetMsg, ServerId};
use chatdrop_proto::names::check_offered_name;
use chatdrop_proto::{ErrorCode, OfferedFile, ServerMsg};

use crate::chat::{err, Chat, Who};
use crate::event::{ConnId, Effect};

/// Whether an offer's list of files may pass: 1 to [`MAX_OFFER_FILES`]
/// files, each named by a relative path. The reason names the first file
/// that may not.
pub(crate) fn check_offer(files: &[OfferedFile]) -> Result<(), String> {
    if files.is_empty() || files.len() > MAX_OFFER_FILES {
        return Err(format!(
            "an offer lists 1 to {MAX_OFFER_FILES} files (got {})",
            files.len()
        ));
    }
    files.iter().try_for_each(|f| check_offered_name(&f.name))
}

impl Chat {
    /// `OfferFiles` from a client here: checked (names, the share policy)
    /// and passed to the receiver wherever it is online.
    pub(crate) fn offer_files(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        to: String,
        offer: u64,
        files: Vec<OfferedFile>,
        out: &mut Vec<Effect>,
    ) {
        if let Err(why) = check_offer(&files) {
            out.push(err(conn, ErrorCode::BadRequest, why));
            return;
        }
        let policy = &self.settings.policy;
        let blocked = files.iter().find_map(|f| {
            let checked = policy.check_file(&f.name, f.size, &f.blake3);
            checked.err().map(|why| format!("{}: {why}", f.name))
        });
        if let Some(why) = blocked {
            let why = format!("the server's share policy refuses the offer: {why}");
            out.push(err(conn, ErrorCode::BadRequest, why));
            return;
        }
        let from = self.sessions[&conn].user.clone();
        if from == to {
            let why = "an offer goes to another user, not to yourself";
            out.push(err(conn, ErrorCode::BadRequest, why));
            return;
        }
        let Some(at) = self.online_anywhere(conn, &to, out) else {
            return;
        };
        self.send_to_member(
            now_ms,
            at,
            || ServerMsg::FilesOffered {
                from: from.clone(),
                offer,
                files: files.clone(),
            },
            || NetMsg::OfferFiles {
                from: from.clone(),
                to: to.clone(),
                offer,
                files: files.clone(),
            },
            out,
        );
    }

    /// `OfferAnswer` from a client here, for the offer's sender wherever
    /// it is online. (The sender's client knows which offers it made: an
    /// answer to none is dropped there.)
    pub(crate) fn offer_answer(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        to: String,
        offer: u64,
        accept: bool,
        out: &mut Vec<Effect>,
    ) {
        let Some(at) = self.online_anywhere(conn, &to, out) else {
            return;
        };
        let from = self.sessions[&conn].user.clone();
        if let Who::Local(c) = at {
            if c == conn {
                return;
            }
        }
        self.send_to_member(
            now_ms,
            at,
            || ServerMsg::OfferAnswered {
                from: from.clone(),
                offer,
                accept,
            },
            || NetMsg::OfferAnswer {
                from: from.clone(),
                to: to.clone(),
                offer,
                accept,
            },
            out,
        );
    }

    /// An offer from a user of `server` (checked by the link), for a
    /// receiver here.
    pub(crate) fn remote_offer_files(
        &mut self,
        server: ServerId,
        from: String,
        to: String,
        offer: u64,
        files: Vec<OfferedFile>,
        out: &mut Vec<Effect>,
    ) {
        if !self.of_server(&from, server) {
            return;
        }
        let msg = ServerMsg::FilesOffered { from, offer, files };
        self.send_to_online(&to, msg, out);
    }

    /// An answer to an offer from a user of `server`, for the sender here.
    pub(crate) fn remote_offer_answer(
        &mut self,
        server: ServerId,
        from: String,
        to: String,
        offer: u64,
        accept: bool,
        out: &mut Vec<Effect>,
    ) {
        if !self.of_server(&from, server) {
            return;
        }
        let msg = ServerMsg::OfferAnswered {
            from,
            offer,
            accept,
        };
        self.send_to_online(&to, msg, out);
    }
}
