//! The typed messages of the client <-> server control connection.
//!
//! Frames are postcard-encoded, so the order of enum variants is part of the
//! wire format: add new variants at the end only, and bump
//! [`crate::limits::PROTOCOL_VERSION`] for anything else.

use serde::{Deserialize, Serialize};

/// The recipient of a chat line: everyone in the room, the server's admin, or
/// one user of the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Every member of the sender's room (`@all`).
    All,
    /// The server's admin console (`@server`).
    Server,
    /// One member of the sender's room (`@name`).
    User(String),
}

impl Target {
    /// The target as users write it and as JSON events show it: `all`,
    /// `server` or the user's name.
    pub fn as_str(&self) -> &str {
        match self {
            Target::All => "all",
            Target::Server => "server",
            Target::User(name) => name,
        }
    }
}

/// A message from a client to its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First frame of a connection: protocol version, the user name asked for
    /// and the client's Ed25519 identity public key.
    Hello {
        /// Protocol version the client speaks.
        version: u16,
        /// The user name to log in as.
        user: String,
        /// Ed25519 public key of the client's identity.
        public_key: [u8; 32],
    },
    /// Answer to [`ServerMsg::Challenge`]: an Ed25519 signature over the login
    /// transcript (see docs/PROTOCOL.md), proving the client holds the key.
    Auth {
        /// 64-byte Ed25519 signature.
        signature: Vec<u8>,
    },
    /// Keepalive; the server answers [`ServerMsg::Pong`].
    Ping,
    /// Ask for a page of the room list (`@server get_rooms`), in name
    /// order: the first page, or the one after the room named `after`.
    ListRooms {
        /// The `next` of the page before, or `None` for the first page.
        after: Option<String>,
    },
    /// Create a room and join it. With a password the room is private.
    CreateRoom {
        /// Name of the new room.
        room: String,
        /// Password of a private room; `None` for a public room.
        password: Option<String>,
    },
    /// Join a room, staying in the others (at most
    /// [`crate::limits::MAX_ROOMS_JOINED`] at once).
    JoinRoom {
        /// Name of the room.
        room: String,
        /// Password, for a private room.
        password: Option<String>,
    },
    /// Leave a room.
    LeaveRoom {
        /// Its name.
        room: String,
    },
    /// Ask for the peers of a room the client is in (`@server get_peers`).
    GetPeers {
        /// Its name.
        room: String,
    },
    /// Send a chat line.
    Say {
        /// Who receives it: `All`, the members of `room`; a user, that
        /// user wherever it is online in the network (a direct message);
        /// `Server`, the admin console.
        to: Target,
        /// The room of a line to `All` (one the client is in); `None` for
        /// the others.
        room: Option<String>,
        /// The text, at most [`crate::limits::MAX_TEXT_BYTES`] bytes.
        text: String,
    },
    /// Leave every room and log out cleanly (`@server exit`).
    Quit,
    /// Ask a room the client is in who shares a file (`@all whohas FILE`).
    WhoHas {
        /// The room asked.
        room: String,
        /// The file's name, relative to the owners' share folders.
        file: String,
    },
    /// Answer a `WhoHas`: this client shares the file.
    HaveFile {
        /// Who asked.
        to: String,
        /// The file's name.
        file: String,
        /// Its size in bytes.
        size: u64,
        /// Its BLAKE3 hash.
        blake3: [u8; 32],
    },
    /// Ask a peer for a file (`@USER getfile FILE`), opening the key
    /// exchange: an ephemeral X25519 key signed by the asker's identity.
    GetFile {
        /// The peer that shares it.
        owner: String,
        /// The file's name.
        file: String,
        /// The owner's offer (`OfferFiles`) the file is one of, or `None`
        /// for a file of the owner's share folder. A request for an offered
        /// file may go to the owner wherever it is online, as a direct
        /// message does; the owner serves it only to the user it offered
        /// it to. Signed with the rest.
        offer: Option<u64>,
        /// The asker's ephemeral X25519 public key.
        eph: [u8; 32],
        /// Ed25519 signature over the request (docs/PROTOCOL.md).
        sig: Vec<u8>,
        /// Addresses of the asker's UDP socket for this request, which the
        /// owner punches towards: its own interfaces' and the one the
        /// server observed (`Observe`); at most
        /// [`crate::limits::MAX_CANDIDATES`]. Signed with the rest.
        candidates: Vec<std::net::SocketAddr>,
    },
    /// The owner's answer to a `FileRequest`.
    FileAnswer {
        /// The request it answers.
        req: u64,
        /// Accepted with an offer, or refused.
        answer: FileAnswer,
    },
    /// First frame of a server dialling another server: this connection is a
    /// link, not a client (see [`crate::link`]).
    LinkHello(crate::link::LinkHello),
    /// Asks the server which address it sees a UDP socket of this client
    /// at: the client then sends `token` from that socket to the server's
    /// UDP port (the same number as its TLS port), as one datagram of
    /// [`OBSERVE_MAGIC`] and the token, and the server answers
    /// `Observed` here, over TLS, never by UDP. A new token replaces the
    /// connection's last one.
    Observe {
        /// Random, this client's secret: it ties the datagram to this
        /// connection.
        token: [u8; 16],
    },
    /// Asks the server to relay the transfer `session` (the `session` of an
    /// offer it brokered between this client and another of its users):
    /// sent by the asker when no direct path opened within a moment. Both
    /// sides are then sent `Relay` with a token each, or the asker
    /// `RelayRefused`. Only the two sides of that brokered request may ask.
    Relay {
        /// The offer's session id.
        session: [u8; 8],
    },
    /// The transfer `session` is over: its relay may close (either side
    /// may say so; the relay also closes when idle).
    RelayEnd {
        /// The offer's session id.
        session: [u8; 8],
    },
    /// A datagram of the transfer `session` for the relay to pass on, sent
    /// over TLS by a side whose UDP does not reach the server (the slow
    /// path); empty, it only says that this side's datagrams come this
    /// way. At most [`crate::limits::MAX_TUNNELED`] bytes.
    Tunnel {
        /// The offer's session id.
        session: [u8; 8],
        /// The datagram, sealed end to end as it was.
        data: Vec<u8>,
    },
    /// A mailbox request (`send --via`, `recv --via`): as the first frame
    /// of a connection it makes it a mailbox connection, which never logs
    /// in (see [`MailboxMsg`]).
    Mailbox(MailboxMsg),
    /// Asks for a page of a room's history (the client must be in it), as
    /// IRCv3's `chathistory` does: the latest lines (neither bound), those
    /// before line `before`, or those after line `after` (by `seq`).
    /// Answered with [`ServerMsg::History`].
    History {
        room: String,
        /// Lines older than this `seq`.
        before: Option<u64>,
        /// Lines newer than this `seq`.
        after: Option<u64>,
        /// Lines wanted, at most [`crate::limits::HISTORY_PAGE`].
        limit: u16,
    },
    /// Offers files to a user (`/send USER FILE...`), online anywhere in
    /// the network: it is shown them, with their sizes and hashes, and
    /// accepts (then fetches each with `GetFile` naming `offer`) or
    /// declines. At most [`crate::limits::MAX_OFFER_FILES`] files, each
    /// named by a relative path
    /// ([`crate::names::check_offered_name`]).
    OfferFiles {
        /// The receiver.
        to: String,
        /// The offer's id, random, chosen by the sender.
        offer: u64,
        /// What is offered.
        files: Vec<OfferedFile>,
    },
    /// The receiver's answer to `FilesOffered`, for the sender.
    OfferAnswer {
        /// The sender of the offer.
        to: String,
        /// The offer's id.
        offer: u64,
        /// Accepted (the requests follow) or declined.
        accept: bool,
    },
}

/// One file of an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedFile {
    /// Its path relative to what was offered, which the receiver keeps
    /// under its download folder
    /// ([`crate::names::check_offered_name`]).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its BLAKE3 hash.
    pub blake3: [u8; 32],
}

/// What a mailbox connection asks for: the server pairs two strangers by a
/// short number (the nameplate, the first part of a code such as
/// `7-sunlit-harbor`) and passes a few small messages between them; the
/// rest of the code never reaches it. The two sides run a PAKE over those
/// messages, so the server learns nothing it could use to read or change
/// what they then exchange. `Ping` and `Observe` are taken on such a
/// connection too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailboxMsg {
    /// The sending side: allocate a nameplate, answered by `Opened`.
    Open {
        /// [`crate::limits::PROTOCOL_VERSION`].
        version: u16,
    },
    /// The receiving side: take the nameplate's other place, answered by
    /// `Joined` to both sides (or `Closed` with why). One try: a nameplate
    /// is never joined twice.
    Join {
        /// [`crate::limits::PROTOCOL_VERSION`].
        version: u16,
        /// The nameplate.
        nameplate: u32,
    },
    /// A message for the other side, at most
    /// [`crate::limits::MAX_MAILBOX_BODY`] bytes and
    /// [`crate::limits::MAX_MAILBOX_MESSAGES`] per side.
    Send {
        /// Opaque to the server.
        body: Vec<u8>,
    },
}

/// What the server says on a mailbox connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailboxEvent {
    /// A nameplate was allocated for this side.
    Opened {
        /// The nameplate.
        nameplate: u32,
    },
    /// The other side is here.
    Joined,
    /// The other side's message.
    Message {
        /// As it was sent.
        body: Vec<u8>,
    },
    /// The mailbox is closed, and why (the other side left, the nameplate
    /// does not exist or was taken, a limit).
    Closed {
        /// Why, for the user.
        why: String,
    },
}

/// What a UDP datagram to a server's port starts with to be an
/// observation request (`ClientMsg::Observe`): then the token, 24 bytes in
/// all.
pub const OBSERVE_MAGIC: &[u8; 8] = b"cdrop-ob";

/// What a UDP datagram to a server's port starts with to bind a side of a
/// relay (`ServerMsg::Relay`) to the address it comes from: then that
/// side's token, 24 bytes in all.
pub const RELAY_MAGIC: &[u8; 8] = b"cdrop-rl";

/// Why a peer (or the server) refused a file request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseReason {
    /// No such file in the owner's share folder.
    NotFound,
    /// The file exists but is not shared.
    NotShared,
    /// The owner runs as many uploads as it allows.
    Busy,
    /// The server's share policy forbids this file.
    Blocked,
    /// The name is not a valid shared-file name (e.g. it leaves the folder).
    BadName,
}

impl RefuseReason {
    /// The reason as a snake_case word.
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseReason::NotFound => "not_found",
            RefuseReason::NotShared => "not_shared",
            RefuseReason::Busy => "busy",
            RefuseReason::Blocked => "blocked",
            RefuseReason::BadName => "bad_name",
        }
    }
}

/// An owner's acceptance of a file request: what the asker needs to fetch
/// the file over UDP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// File size in bytes.
    pub size: u64,
    /// BLAKE3 hash of the file.
    pub blake3: [u8; 32],
    /// UDP port the owner serves on (at the address the server sees it at).
    pub port: u16,
    /// The owner's ephemeral X25519 public key.
    pub eph: [u8; 32],
    /// Session id.
    pub session: [u8; 8],
    /// ARQ scheme: Selective Repeat (`true`) or Go-Back-N.
    pub selective_repeat: bool,
    /// The owner's window, in packets.
    pub window: u32,
    /// Payload bytes per packet.
    pub mss: u32,
    /// The only IP address the owner serves this offer to: the asker's,
    /// as the server told it (`FileRequest::from_ip`), or one of its
    /// candidates' (`FileRequest::candidates`).
    pub asker_ip: std::net::IpAddr,
    /// Addresses of the owner's UDP socket on its own interfaces, which
    /// the asker tries besides the one the server sees; at most
    /// [`crate::limits::MAX_CANDIDATES`]. An answer at one of these is a
    /// `direct` path.
    pub candidates: Vec<std::net::SocketAddr>,
    /// Where the server saw that socket (`Observe`), when that is not one
    /// of `candidates`: the owner is behind a NAT, and an answer there is
    /// a `punched` path.
    pub observed: Option<std::net::SocketAddr>,
    /// Ed25519 signature of the owner over the offer (docs/PROTOCOL.md).
    pub sig: Vec<u8>,
}

/// Accept or refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileAnswer {
    /// The owner will serve the file.
    Accept(Offer),
    /// The owner will not.
    Refuse(RefuseReason),
}

/// One entry of the room list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room's name.
    pub name: String,
    /// Whether the room needs a password.
    pub private: bool,
    /// Number of members; `None` for private rooms, whose membership is not
    /// shown to outsiders.
    pub members: Option<u32>,
}

/// One chat line as delivered to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLine {
    /// Room it was sent in; `None` for a server broadcast to a user outside
    /// any room.
    pub room: Option<String>,
    /// Sender: a user name, or `server` for the admin console.
    pub from: String,
    /// Recipient.
    pub to: Target,
    pub text: String,
    /// Server time it was accepted, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// True when replayed from the room's history (on join, or a page).
    pub history: bool,
    /// The line's place in its room's history, from 1; 0 for lines no
    /// history keeps (direct messages, the admin's).
    pub seq: u64,
}

/// Why a peer left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaveReason {
    /// It left the room or logged out.
    Left,
    /// Its connection was lost (no keepalive, network error).
    Lost,
    /// The admin kicked it.
    Kicked,
    /// The admin banned it.
    Banned,
}

impl LeaveReason {
    /// The reason as a short word, for events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Lost => "lost",
            LeaveReason::Kicked => "kicked",
            LeaveReason::Banned => "banned",
        }
    }
}

/// Error codes a server sends in [`ServerMsg::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame was valid but the request makes no sense in this state.
    BadRequest,
    /// The server does not speak the client's protocol version.
    UnsupportedVersion,
    /// A user or room name breaks the naming rules.
    InvalidName,
    /// The user name is held by a connected client.
    NameInUse,
    /// The user name is bound to another identity key.
    NameTaken,
    /// The login signature did not verify.
    AuthFailed,
    /// The user is banned from this server.
    Banned,
    /// The server has reached `--max-clients`.
    ServerFull,
    /// No room of that name.
    NoSuchRoom,
    /// A room of that name exists already.
    RoomExists,
    /// The room is private and no password was given.
    PasswordRequired,
    /// The password is wrong.
    WrongPassword,
    /// Too many wrong passwords; try again later.
    RateLimited,
    /// The request needs the client to be in a room.
    NotInRoom,
    /// No such user in the room.
    UnknownUser,
    /// A message or password is over its size limit.
    TooLong,
    /// Something failed inside the server.
    Internal,
    /// A limit of the server was reached (the message names it).
    LimitReached,
}

impl ErrorCode {
    /// The code as a snake_case word, as JSON events and docs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::NameInUse => "name_in_use",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::Banned => "banned",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::NoSuchRoom => "no_such_room",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::PasswordRequired => "password_required",
            ErrorCode::WrongPassword => "wrong_password",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::TooLong => "too_long",
            ErrorCode::Internal => "internal",
            ErrorCode::LimitReached => "limit_reached",
        }
    }

    /// Whether a client should give up rather than reconnect after this error
    /// ended its login.
    pub fn is_fatal_at_login(self) -> bool {
        matches!(
            self,
            ErrorCode::UnsupportedVersion
                | ErrorCode::InvalidName
                | ErrorCode::NameTaken
                | ErrorCode::AuthFailed
                | ErrorCode::Banned
        )
    }
}

/// A message from a server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// Answer to `Hello`: the server's version and name, and a fresh random
    /// nonce the client signs.
    Challenge {
        /// Protocol version the server speaks.
        version: u16,
        /// The server's name.
        server_name: String,
        /// 32 random bytes, new for every connection.
        nonce: [u8; 32],
    },
    /// The login succeeded.
    LoggedIn {
        /// The user name now held by this connection.
        user: String,
    },
    /// Answer to `Ping`.
    Pong,
    /// A page of the room list, at most [`crate::limits::ROOM_PAGE`] rooms
    /// in name order, so that no answer grows with the number of rooms.
    Rooms {
        /// The page: public rooms with their member count, private ones only
        /// as private.
        rooms: Vec<RoomInfo>,
        /// How many rooms there are in all.
        total: u32,
        /// Where the next page starts (pass it as `after`); `None` on the
        /// last page.
        next: Option<String>,
    },
    /// The client joined (or created) a room. The room's recent history
    /// follows as `Message` frames with `history` set.
    Joined {
        /// The room's name.
        room: String,
        /// The room's random ID, shown to members only.
        room_id: String,
        /// True when this request created the room.
        created: bool,
        /// The other members.
        peers: Vec<String>,
    },
    /// The client left its room.
    Left {
        /// The room it left.
        room: String,
    },
    /// A peer joined the client's room.
    PeerJoined {
        room: String,
        /// The peer.
        user: String,
    },
    /// A peer left the client's room.
    PeerLeft {
        room: String,
        /// The peer.
        user: String,
        /// Why it left.
        reason: LeaveReason,
    },
    /// A chat line.
    Message(ChatLine),
    /// The members of the client's room, the client included.
    Peers {
        room: String,
        /// Its members.
        peers: Vec<String>,
    },
    /// A notice from the server (its admin, or the server itself).
    Notice { text: String },
    /// The admin removed this client; the connection closes after this frame.
    Kicked {
        /// The reason the admin gave.
        reason: String,
    },
    /// A request failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A sentence for the user.
        message: String,
    },
    /// The server closes the connection (shutdown or logout); nothing follows.
    Bye {
        /// Why.
        reason: String,
    },
    /// A peer of the room asks who shares a file.
    WhoHas {
        /// The asker.
        from: String,
        file: String,
    },
    /// A peer shares the file this client asked about.
    HaveFile {
        /// The peer.
        from: String,
        file: String,
        size: u64,
        /// Its BLAKE3 hash.
        blake3: [u8; 32],
    },
    /// A peer asks this client for a file; answer with `FileAnswer`.
    FileRequest {
        /// Request id, for the answer.
        req: u64,
        /// The asker.
        from: String,
        /// The asker's identity key (as bound on this server).
        from_key: [u8; 32],
        file: String,
        /// The offer the file is asked from, as the asker named it (see
        /// `ClientMsg::GetFile`).
        offer: Option<u64>,
        /// The asker's ephemeral X25519 key.
        eph: [u8; 32],
        /// The asker's signature over its request.
        sig: Vec<u8>,
        /// The asker's IP address as its server sees it: with the
        /// candidates', the only ones the owner takes the transfer's
        /// `Start` from.
        from_ip: std::net::IpAddr,
        /// The asker's candidate addresses, as signed in its request.
        candidates: Vec<std::net::SocketAddr>,
    },
    /// The owner accepted: fetch the file over UDP.
    FileOffer {
        /// The owner.
        from: String,
        /// The owner's identity key (as bound on this server).
        from_key: [u8; 32],
        file: String,
        /// Where the owner serves it.
        addr: std::net::SocketAddr,
        offer: Offer,
        /// The offer of files (`OfferFiles`) the request named, if any.
        offered: Option<u64>,
    },
    /// A file request was refused, by the owner or by the server's policy.
    TransferRefused {
        /// The owner asked.
        from: String,
        file: String,
        /// Why.
        reason: RefuseReason,
        /// A sentence for the user.
        detail: String,
        /// The offer of files (`OfferFiles`) the request named, if any.
        offered: Option<u64>,
    },
    /// The client's room was renamed: when two parts of a server network
    /// merge and each had a room of the same name, the later one is renamed.
    RoomRenamed {
        /// The old name.
        old: String,
        /// The new name.
        new: String,
        /// Why, for the user.
        reason: String,
    },
    /// The address a UDP datagram carrying this connection's `Observe`
    /// token came from: where the server sees that socket of the client
    /// (its NAT's mapping, for a client behind one).
    Observed {
        /// The token it carried.
        token: [u8; 16],
        /// Where it came from.
        addr: std::net::SocketAddr,
    },
    /// A relay for the transfer `session` is open at the server's UDP port
    /// (the number of its TLS port): this side binds it by sending
    /// [`RELAY_MAGIC`] and `token` from its transfer socket (or, without
    /// UDP, any `Tunnel`), and the relay then passes datagrams between the
    /// two sides' bound addresses, and only those.
    Relay {
        /// The offer's session id.
        session: [u8; 8],
        /// This side's token; the other side has its own.
        token: [u8; 16],
    },
    /// The relay asked for `session` cannot be had, and why.
    RelayRefused {
        /// The offer's session id.
        session: [u8; 8],
        /// Why, for the user.
        why: String,
    },
    /// A datagram of the transfer `session` from the other side, through
    /// the relay, for a side that takes its datagrams over TLS.
    Tunnel {
        /// The offer's session id.
        session: [u8; 8],
        /// The datagram as the other side sent it.
        data: Vec<u8>,
    },
    /// On a mailbox connection (see [`MailboxMsg`]).
    Mailbox(MailboxEvent),
    /// A relay for the transfer `session` is open at another server of
    /// the network, the other side's, at `at` (its UDP port): this side
    /// binds it as for [`ServerMsg::Relay`], by UDP only, sending to `at`
    /// instead of to its own server.
    RelayAt {
        /// The offer's session id.
        session: [u8; 8],
        /// This side's token; the other side has its own.
        token: [u8; 16],
        /// Where the relaying server is reached from this side.
        at: std::net::SocketAddr,
    },
    /// A page of a room's history, oldest first, answering
    /// [`ClientMsg::History`].
    History {
        room: String,
        lines: Vec<ChatLine>,
        /// Whether the room keeps more lines in the direction asked.
        more: bool,
    },
    /// A user offers this client files (its `OfferFiles`).
    FilesOffered {
        /// The sender.
        from: String,
        /// The offer's id, for `OfferAnswer` and `GetFile`.
        offer: u64,
        /// What is offered.
        files: Vec<OfferedFile>,
    },
    /// The receiver of this client's offer accepted or declined it.
    OfferAnswered {
        /// The receiver.
        from: String,
        /// The offer's id.
        offer: u64,
        /// Whether it accepted.
        accept: bool,
    },
}

impl ServerMsg {
    /// Shorthand for an [`ServerMsg::Error`].
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMsg::Error {
            code,
            message: message.into(),
        }
    }
}
