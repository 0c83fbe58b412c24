//! Limits every chatdrop peer enforces. They are part of the protocol: a peer
//! that exceeds them is dropped. Each is checked before anything is allocated
//! for the data it bounds.

/// The protocol version spoken by this implementation. The `Hello` frame
/// carries it; a server refuses a version it does not speak. Version 2: the
/// room list comes in pages. Version 3: candidate addresses in file
/// requests and offers, and `Observe`. Version 4: the relay (`Relay`,
/// `RelayEnd`, `RelayRefused`, `Tunnel`), and the mailboxes of short codes
/// (`Mailbox`). Version 5: a relay at another server of the network
/// (`RelayAt`). Version 6: several rooms at once (`JoinRoom` no longer
/// leaves the others; `LeaveRoom`, `GetPeers` and `WhoHas` name their
/// room, `Say` to the room names it) and direct messages to anyone online
/// in the network; chat lines carry their `seq`, and `History` pages
/// through a room's history. Version 7: offering files to a user
/// (`OfferFiles`, `OfferAnswer`, `FilesOffered`, `OfferAnswered`), and a
/// file request may name the offer it fetches from (`GetFile::offer`).
pub const PROTOCOL_VERSION: u16 = 7;

/// The version of the server-to-server link protocol, in
/// [`crate::link::LinkHello`]. Version 2: SPAKE2 instead of a MAC under the
/// network key, server keys, signed link-state records. Version 3: a
/// server's state in parts (`Sync` with `part` and `last`). Version 4: a
/// file request carries the asker's candidate addresses. Version 5: relays
/// between users of two servers (`Relay`). Version 6: a user in several
/// rooms (`NetUser::rooms`, `Leave` names its room), and direct messages
/// outside rooms (`Say` without a room). Version 7: offers of files between
/// users of two servers (`OfferFiles`, `OfferAnswer`, `GetFile::offer`).
pub const LINK_PROTOCOL_VERSION: u16 = 7;

/// Files one offer lists at most (`/send`): the offer is one frame, shown
/// whole to its receiver before it accepts.
pub const MAX_OFFER_FILES: usize = 100;

/// Rooms one client may be in at once: each costs its server a member
/// entry, and every join and leave goes to every server of the network.
pub const MAX_ROOMS_JOINED: usize = 20;

/// Whether `at` can be a relay's address (`RelayAt`, `[relay] addresses`):
/// a unicast address (not unspecified, multicast or broadcast) and a port.
pub fn is_relay_address(at: &std::net::SocketAddr) -> bool {
    let ip = at.ip().to_canonical();
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    !(ip.is_unspecified() || ip.is_multicast() || broadcast || at.port() == 0)
}

/// Candidate addresses a file request or offer may carry.
pub const MAX_CANDIDATES: usize = 8;

/// Longest datagram a `Tunnel` carries: a full Ethernet frame's UDP
/// payload. The transfer finds the packet size its path carries, so a
/// longer one is dropped as a hop with a small MTU would drop it.
pub const MAX_TUNNELED: usize = 1472;

/// Longest mailbox message (`MailboxMsg::Send`).
pub const MAX_MAILBOX_BODY: usize = 4096;

/// Mailbox messages one side may send.
pub const MAX_MAILBOX_MESSAGES: u32 = 8;

/// Largest frame a client may send to a server (payload bytes, without the
/// 4-byte length prefix).
pub const MAX_CLIENT_FRAME: usize = 16 * 1024;

/// Largest frame a server may send to a client. A `peers` list of a large
/// room is the biggest message, so this is larger than the client's limit.
pub const MAX_SERVER_FRAME: usize = 1024 * 1024;

/// Rooms in one page of the room list.
pub const ROOM_PAGE: usize = 100;

/// Lines in one page of a room's history (`History`): 100 of the longest
/// lines fit well within [`MAX_SERVER_FRAME`].
pub const HISTORY_PAGE: usize = 100;

/// Lines of a room's history replayed to a member who joins; older ones
/// come a page at a time on request.
pub const JOIN_REPLAY: usize = 50;

/// Longest chat message text, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Longest file name in `whohas` and `getfile`, in bytes.
pub const MAX_FILE_NAME: usize = 1024;

/// Longest user name, in bytes.
pub const MAX_USER_NAME: usize = 32;

/// Longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 64;

/// Longest room password, in bytes.
pub const MAX_PASSWORD: usize = 256;

/// Seconds without any frame from the other side after which a connection is
/// taken for dead. Clients send a `Ping` every [`PING_INTERVAL_SECS`].
pub const IDLE_TIMEOUT_SECS: u64 = 15;

/// How often a client pings its server when it has nothing else to send.
pub const PING_INTERVAL_SECS: u64 = 5;

/// Largest frame on a server-to-server link. A `Sync` carrying every user of
/// a full server is the biggest message. Only allowed once the other side
/// has completed the handshake: until then both sides hold it to
/// [`MAX_CLIENT_FRAME`].
pub const MAX_LINK_FRAME: usize = 16 * 1024 * 1024;

/// How often a server pings each link, in milliseconds.
pub const LINK_PING_MS: u64 = 200;

/// A link silent for this long (ms) is taken for down: with
/// [`LINK_PING_MS`] this is what lets traffic move to another path within
/// two seconds of a failure.
pub const LINK_DEAD_MS: u64 = 1_000;
