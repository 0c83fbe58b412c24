//! The records the chat core keeps and the store persists.

/// Tunables of the chat core.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lines of history each room keeps (the latest
    /// [`chatdrop_proto::limits::JOIN_REPLAY`] are replayed on join, the
    /// rest come a page at a time).
    pub history_len: u32,
    /// How long (ms) a line of history is kept; 0 keeps lines until
    /// `history_len` newer ones push them out.
    pub history_max_age_ms: u64,
    /// Wrong passwords allowed for one user before attempts are slowed down.
    pub free_password_failures: u32,
    /// Wrong passwords allowed for one room, whoever guesses, before guesses
    /// at it are slowed down.
    pub free_room_password_failures: u32,
    /// Longest lock-out after repeated wrong passwords, in milliseconds.
    pub max_lockout_ms: u64,
    /// Which files the server refuses to broker.
    pub policy: crate::SharePolicy,
    /// File requests one client may have waiting for an answer.
    pub max_pending_requests: usize,
    /// Most rooms this server lets its users make: rooms are kept, stored
    /// and sent to every linked server, so without a bound one client
    /// could make a room list no client can read.
    pub max_rooms: usize,
    /// Most rooms one user may have made (anywhere in the network).
    pub max_rooms_per_user: usize,
    /// Most members in one room (here and at other servers): the lists of
    /// who is in a room go to every member that joins or asks.
    pub max_room_members: usize,
    /// How long (ms) a room with no member anywhere and no history is kept
    /// before it is forgotten; 0 keeps every room.
    pub empty_room_expiry_ms: u64,
    /// New user names one address (or IPv6 /64) may bind in an hour; 0 for
    /// no limit. Names are free, and each is kept and sent to every linked
    /// server, so a script must not make them by the thousand.
    pub new_names_per_hour: u32,
    /// How long (ms) a name bound and never used again is kept; 0 keeps
    /// every name. Its key binds it afresh at its next login.
    pub unused_name_expiry_ms: u64,
    /// This server's identity in the server network.
    pub identity: crate::net::Identity,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            history_len: 1000,
            history_max_age_ms: 0,
            free_password_failures: 3,
            free_room_password_failures: 20,
            max_lockout_ms: 60_000,
            policy: crate::SharePolicy::default(),
            max_pending_requests: 8,
            max_rooms: 10_000,
            max_rooms_per_user: 20,
            max_room_members: 5_000,
            empty_room_expiry_ms: 24 * 3_600_000,
            new_names_per_hour: 60,
            unused_name_expiry_ms: 30 * 24 * 3_600_000,
            // A fixed key, for tests: a server always gives its own.
            identity: crate::net::Identity::new(&[0; 32], "chatdrop".into(), 0),
        }
    }
}

/// A room as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    pub name: String,
    /// Its random ID.
    pub id: String,
    /// The user who created it.
    pub creator: String,
    /// Argon2id PHC string of its password; `None` for a public room.
    pub password_hash: Option<String>,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A line of a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Position in the room's history, increasing from 1.
    pub seq: u64,
    /// Sender.
    pub from: String,
    pub text: String,
    /// Time it was sent, ms since the Unix epoch.
    pub ts: u64,
}

/// A user name bound to an identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub user: String,
    pub public_key: [u8; 32],
    /// When the name was first bound (ms since the Unix epoch).
    pub bound_ms: u64,
    /// Who vouches for it; `None` in a store written before bindings were
    /// vouched for (such a binding is taken as this server's own).
    pub vouch: Option<Vouch>,
    /// Whether the name was used again after the session that bound it
    /// (names never used again expire: see `crate::expiry`).
    pub used_again: bool,
}

/// The server a name was bound at, vouching for the binding with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouch {
    /// The server's id.
    pub home: chatdrop_proto::link::ServerId,
    /// Its public key.
    pub home_key: [u8; 32],
    /// Its signature over the binding (`NetBinding::signed_bytes`), kept
    /// inline: every server holds one for each name of the network.
    pub sig: [u8; 64],
}

/// A banned user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub user: String,
    /// Why.
    pub reason: String,
}

/// Everything the store hands the core at start-up.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Rooms with their history, oldest line first.
    pub rooms: Vec<(RoomRecord, Vec<HistoryEntry>)>,
    /// Name bindings.
    pub bindings: Vec<Binding>,
    /// Bans.
    pub bans: Vec<Ban>,
}
