//! What goes into the chat core and what comes out of it.

use std::net::IpAddr;

use chatdrop_proto::link::{LinkMsg, ServerId};
use chatdrop_proto::{ClientMsg, ServerMsg};

use crate::admin::AdminCommand;
use crate::chat::Who;
use crate::state::{HistoryEntry, RoomRecord};

/// Identifies one client connection for the lifetime of the server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Identifies one server link for the lifetime of the server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// An input to [`crate::Chat::handle`].
#[derive(Debug, Clone)]
pub enum Event {
    /// A connection proved it holds `public_key` and asks for `user`.
    Login {
        conn: ConnId,
        /// Requested user name (not yet validated).
        user: String,
        /// Its Ed25519 public key, signature already verified.
        public_key: [u8; 32],
        /// The IP address the connection comes from (where its peers reach
        /// its file offers).
        ip: IpAddr,
    },
    /// A request from a logged-in client, as it came. (The server answers
    /// `Ping` itself and refuses login frames after the login; a
    /// `CreateRoom` comes as [`Event::CreateRoom`], with a room ID.)
    Request { conn: ConnId, msg: ClientMsg },
    /// `CreateRoom`, with a random ID for the room. A private room's
    /// password is hashed off the core's thread ([`Effect::HashPassword`])
    /// once the request is found valid.
    CreateRoom {
        conn: ConnId,
        /// Requested room name.
        room: String,
        /// The password of a private room, as typed.
        password: Option<String>,
        /// A fresh random ID the room gets if it is created.
        room_id: String,
    },
    /// Result of an [`Effect::HashPassword`].
    PasswordHashed {
        /// The connection that asked to make the room.
        conn: ConnId,
        /// The `attempt` of the request.
        attempt: u64,
        /// The Argon2id PHC string, or `None` if hashing failed.
        hash: Option<String>,
    },
    /// Result of an [`Effect::CheckPassword`].
    PasswordChecked {
        /// The connection that asked to join.
        conn: ConnId,
        room: String,
        /// The `attempt` of the check.
        attempt: u64,
        /// Whether the password matched.
        ok: bool,
    },
    /// The hub opened a relay asked for by [`Effect::OpenRelay`] whose
    /// side `user` is a user of `server`: that server is told where and
    /// with which token `user` binds its leg (`NetMsg::Relay`).
    RelayOpened {
        session: [u8; 8],
        /// The other side's server.
        server: ServerId,
        /// The side there.
        user: String,
        /// The side here.
        other: String,
        /// `user`'s token.
        token: [u8; 16],
        /// The relay's address as `user` reaches it.
        at: std::net::SocketAddr,
    },
    /// The connection is gone without a `Quit` (error, keepalive timeout, or
    /// closed by the server).
    Disconnected { conn: ConnId },
    /// A command typed at the admin console.
    Admin(AdminCommand),
    /// A link to another server completed its handshake.
    LinkUp {
        link: LinkId,
        /// The server at the other end.
        peer: ServerId,
        name: String,
    },
    /// A link went down.
    LinkDown { link: LinkId },
    /// A link's round-trip time was measured.
    LinkRtt {
        link: LinkId,
        /// The round-trip time in microseconds.
        rtt_us: u64,
    },
    /// A frame arrived on a link.
    LinkFrame { link: LinkId, msg: LinkMsg },
    /// Time passed: resend what other servers did not acknowledge. The
    /// server sends one every 100 ms.
    Tick,
    /// The server has no more events queued: send the acknowledgements owed
    /// to other servers (batched, rather than one per message).
    Flush,
}

/// A record the server must write to its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// A new room.
    Room(RoomRecord),
    /// A user name bound to a key at its first login (here or anywhere in
    /// the network), or rebound when networks merged.
    Bind {
        user: String,
        public_key: [u8; 32],
        /// When it was first bound (ms since the Unix epoch).
        bound_ms: u64,
        /// The server it was bound at, vouching for it.
        vouch: crate::state::Vouch,
    },
    /// A room renamed (it lost a name clash when networks merged).
    RenameRoom {
        /// Its old name.
        old: String,
        /// Its new name.
        new: String,
    },
    /// A room forgotten: nobody used it for long (see `crate::expiry`).
    DropRoom { name: String },
    /// A name used again after the session that bound it.
    NameUsed { user: String },
    /// A name binding forgotten: never used again (see `crate::expiry`).
    Unbind { user: String },
    /// A ban.
    Ban { user: String, reason: String },
    /// A ban lifted.
    Unban { user: String },
    /// A line of a room's history; lines of the same room up to
    /// `entry.seq - keep` may be forgotten.
    History {
        room: String,
        /// The line.
        entry: HistoryEntry,
        /// How many lines of history the room keeps.
        keep: u32,
    },
    /// Lines of `room`'s history up to `seq` may be forgotten: they are
    /// older than the server keeps.
    ExpireHistory { room: String, seq: u64 },
}

/// An output of [`crate::Chat::handle`], carried out by the server in order.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Send a message to one connection.
    Send { to: ConnId, msg: ServerMsg },
    /// Send the same message to many connections (encode it once).
    Broadcast { to: Vec<ConnId>, msg: ServerMsg },
    /// Send a last message (if any), then close the connection. The core has
    /// already forgotten the connection; no `Disconnected` is needed.
    Close {
        conn: ConnId,
        /// A last message.
        last: Option<ServerMsg>,
    },
    /// Verify `password` against the Argon2 PHC string `hash` off the core's
    /// thread, then feed back [`Event::PasswordChecked`].
    CheckPassword {
        conn: ConnId,
        room: String,
        /// Identifies this check, so that a late answer to an older
        /// request is not taken for the answer to a newer one.
        attempt: u64,
        /// The stored hash.
        hash: String,
        /// The password typed.
        password: String,
        /// The asker's address block ([`crate::ip_block`]), for sharing
        /// the hashing slots fairly between addresses.
        ip: std::net::IpAddr,
    },
    /// Hash a new private room's password off the core's thread, then feed
    /// back [`Event::PasswordHashed`].
    HashPassword {
        conn: ConnId,
        /// Identifies the request.
        attempt: u64,
        /// The password typed.
        password: String,
        /// The asker's address block, as for `CheckPassword`.
        ip: std::net::IpAddr,
    },
    /// Open a relay for the transfer `session` between its two sides (see
    /// `brokered.rs`): send each side here its `Relay`, and for a side at
    /// another server feed back [`Event::RelayOpened`]; or send
    /// `requester` a `RelayRefused` when the server's relay limits say no.
    OpenRelay {
        session: [u8; 8],
        requester: ConnId,
        /// The asker's and the owner's places (a connection here, or
        /// another server), names and addresses (a side's UDP leg must
        /// come from its connection's address).
        sides: [(Who, String, std::net::IpAddr); 2],
    },
    /// Write a record to the store.
    Persist(Persist),
    /// Send a frame on a server link.
    Link { link: LinkId, msg: LinkMsg },
    /// A line for the admin console (answers to admin commands, `@server`
    /// messages from users).
    Console(String),
    /// The admin asked the server to exit: every client has been sent a `Bye`
    /// and closed; flush the store and stop.
    Shutdown,
}
