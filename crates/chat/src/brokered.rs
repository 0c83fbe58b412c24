//! Transfers this server brokered, remembered for a while so that their
//! two sides, and only they, may ask for a relay (`ClientMsg::Relay`):
//! the server never relays for anyone else, so it is no open proxy.
//!
//! A record is made when an owner's offer passes through here on its way
//! to the asker, keyed by the offer's session id; either side may ask for
//! a relay for it while it is kept (the relay refuses a second one while
//! the first is open). Records are kept [`BROKERED_FOR_MS`], at most
//! [`MAX_BROKERED`] (the oldest go first).
//!
//! Between users of two servers, both servers keep a record as the offer
//! passes, and the server of the side that asks relays: it tells the other
//! server (`NetMsg::Relay`), which passes the other side its token and the
//! relay's address (`ServerMsg::RelayAt`) only if it brokered the same
//! transfer between the same two users.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use chatdrop_proto::link::ServerId;
use chatdrop_proto::ServerMsg;

use crate::chat::{Chat, Who};
use crate::event::{ConnId, Effect};

/// How long a brokered transfer may ask for a relay (ms): the asker asks
/// after two seconds without a direct path.
pub const BROKERED_FOR_MS: u64 = 60_000;

/// Brokered transfers remembered at once.
pub const MAX_BROKERED: usize = 65_536;

/// One side of a brokered transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Side {
    pub(crate) at: Who,
    pub(crate) user: String,
}

/// A transfer brokered here.
#[derive(Debug)]
struct Brokered {
    asker: Side,
    owner: Side,
    at_ms: u64,
}

/// The transfers brokered here lately, by session id.
#[derive(Debug, Default)]
pub(crate) struct BrokeredTransfers {
    by_session: HashMap<[u8; 8], Brokered>,
    /// Session ids, oldest first, with when they were brokered.
    order: VecDeque<([u8; 8], u64)>,
}

impl BrokeredTransfers {
    /// Remembers that `session` was brokered between `asker` and `owner`.
    /// An id already remembered keeps its first record: an owner cannot
    /// take over another pair's relay by reusing their id.
    pub(crate) fn record(&mut self, now_ms: u64, session: [u8; 8], asker: Side, owner: Side) {
        self.expire(now_ms);
        if self.by_session.contains_key(&session) {
            return;
        }
        if self.order.len() >= MAX_BROKERED {
            if let Some((old, _)) = self.order.pop_front() {
                self.by_session.remove(&old);
            }
        }
        let at_ms = now_ms;
        self.by_session.insert(
            session,
            Brokered {
                asker,
                owner,
                at_ms,
            },
        );
        self.order.push_back((session, at_ms));
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some(&(session, at)) = self.order.front() {
            if now_ms < at + BROKERED_FOR_MS {
                break;
            }
            self.order.pop_front();
            if self.by_session.get(&session).is_some_and(|b| b.at_ms == at) {
                self.by_session.remove(&session);
            }
        }
    }
}

impl Chat {
    /// `Relay`: a side of a transfer brokered here asks for a relay. Both
    /// sides must still be connected, here or at the other side's server;
    /// the hub then opens it ([`Effect::OpenRelay`]) within its limits.
    pub(crate) fn relay(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        session: [u8; 8],
        out: &mut Vec<Effect>,
    ) {
        let refuse = |why: String| Effect::Send {
            to: conn,
            msg: ServerMsg::RelayRefused { session, why },
        };
        let brokered = &mut self.brokered;
        brokered.expire(now_ms);
        let me = Who::Local(conn);
        let Some(b) = brokered.by_session.get(&session) else {
            out.push(refuse(
                "no transfer with that id was brokered here lately".into(),
            ));
            return;
        };
        if b.asker.at != me && b.owner.at != me {
            // Someone else's transfer: said as if it did not exist.
            out.push(refuse(
                "no transfer with that id was brokered here lately".into(),
            ));
            return;
        }
        let sides = [b.asker.clone(), b.owner.clone()];
        // The record stays: a request refused for a limit full for a
        // moment may come again (the server's relay refuses a second one
        // while the first is open).
        let ip = |side: &Side| match side.at {
            Who::Local(c) => self.sessions.get(&c).map(|s| s.ip),
            // A user of another server: still online there, at the
            // address that server sees it at.
            Who::Remote(server) => (self.remote.get(side.user.as_str()))
                .filter(|u| u.server == server)
                .map(|u| u.ip),
        };
        let (Some(a_ip), Some(o_ip)) = (ip(&sides[0]), ip(&sides[1])) else {
            out.push(refuse("the other side is no longer connected".into()));
            return;
        };
        let [asker, owner] = sides;
        out.push(Effect::OpenRelay {
            session,
            requester: conn,
            sides: [(asker.at, asker.user, a_ip), (owner.at, owner.user, o_ip)],
        });
    }

    /// `NetMsg::Relay` from `server`: it opened a relay for a transfer it
    /// brokered between its user `other` and `user` here. `user` is told
    /// where to bind its leg, if this server brokered that same transfer
    /// between the same two: a server can send a user of another only
    /// relays for that user's own transfers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn remote_relay(
        &mut self,
        now_ms: u64,
        server: ServerId,
        session: [u8; 8],
        (user, other): (String, String),
        token: [u8; 16],
        at: SocketAddr,
        out: &mut Vec<Effect>,
    ) {
        self.brokered.expire(now_ms);
        let Some(conn) = self.online.get(user.as_str()).copied() else {
            return;
        };
        let Some(b) = self.brokered.by_session.get(&session) else {
            return;
        };
        let here = Side {
            at: Who::Local(conn),
            user,
        };
        let there = Side {
            at: Who::Remote(server),
            user: other,
        };
        let same = (b.asker == here && b.owner == there) || (b.owner == here && b.asker == there);
        if same {
            out.push(Effect::Send {
                to: conn,
                msg: ServerMsg::RelayAt { session, token, at },
            });
        }
    }
}
