//! What the client reports, one event at a time. The `chatdrop` binary prints
//! each as a human line or, with `--json`, as one JSON object with an `event`
//! field (docs/EVENTS.md lists them all).

use serde::Serialize;

/// A room in a `rooms` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomEntry {
    /// Name.
    pub name: String,
    /// Whether it needs a password.
    pub private: bool,
    /// Member count, `null` for private rooms.
    pub members: Option<u32>,
}

/// An event of the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Logged in.
    Connected {
        /// Server address.
        server: String,
        /// Server's name.
        server_name: String,
        /// Our user name.
        user: String,
    },
    /// The room list.
    Rooms {
        /// The rooms.
        rooms: Vec<RoomEntry>,
    },
    /// Joined (or created) a room.
    Joined {
        /// Room.
        room: String,
        /// Its random ID.
        room_id: String,
        /// Whether we created it.
        created: bool,
        /// The other members.
        peers: Vec<String>,
    },
    /// Left a room.
    Left {
        /// Room.
        room: String,
    },
    /// A peer joined our room.
    PeerJoined {
        /// Room.
        room: String,
        /// Peer.
        user: String,
    },
    /// A peer left our room.
    PeerLeft {
        /// Room.
        room: String,
        /// Peer.
        user: String,
        /// `left`, `lost`, `kicked` or `banned`.
        reason: String,
    },
    /// A chat line.
    Message {
        /// Room, `null` for a server broadcast outside any room.
        room: Option<String>,
        /// Sender (`server` for the admin).
        from: String,
        /// `all`, `server` or the recipient's name.
        to: String,
        /// Text.
        text: String,
        /// Server time, ms since the Unix epoch.
        ts: u64,
        /// True when replayed from the room's history.
        history: bool,
    },
    /// Members of our room.
    Peers {
        /// Room.
        room: String,
        /// Members, us included.
        peers: Vec<String>,
    },
    /// A notice from the server.
    ServerNotice {
        /// Text.
        text: String,
    },
    /// The admin removed us.
    Kicked {
        /// Reason.
        reason: String,
    },
    /// A request failed, or a command was not understood.
    Error {
        /// Error code (`wrong_password`, `unknown_user`, `bad_command`...).
        code: String,
        /// A sentence for the user.
        message: String,
    },
    /// The connection to the server ended.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// About to reconnect.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
        /// Wait before this attempt, in ms.
        delay_ms: u64,
    },
}
