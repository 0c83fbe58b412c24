//! The messages of a server-to-server link.
//!
//! A server dials another at its client port and opens with
//! [`crate::ClientMsg::LinkHello`] and its [`LinkMsg::Pake`] message; the
//! answering server replies with [`LinkMsg::Hello`] and its own `Pake`. Both
//! derive a key from the network key by SPAKE2 (so neither learns anything
//! it could test guesses of the network key against offline), then prove
//! it, and their own server key, with [`LinkMsg::Proof`] (transcript in
//! [`crate::auth::link_transcript`]). From then on both sides send
//! [`LinkMsg`] frames.
//!
//! Two layers travel over links:
//! - hop by hop: keepalives ([`LinkMsg::Ping`]) and link-state records
//!   ([`Lsa`]), flooded to every server;
//! - end to end: [`Routed`] frames, forwarded along the current shortest path
//!   to one destination server, carrying numbered [`NetMsg`]s that the
//!   destination acknowledges, delivers once and in order.
//!
//! Variant order is part of the wire format: add new variants at the end.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{LeaveReason, Offer, RefuseReason, Target};

/// A server's 128-bit identity: [`server_id_of`] its Ed25519 public key, so
/// that whoever holds the matching secret key, and nobody else, can prove
/// to be that server.
pub type ServerId = [u8; 16];

/// The id of the server whose Ed25519 public key is `key`: the first 16
/// bytes of SHA-256("chatdrop server id v1" 0x00 | key). Ids are
/// self-certifying: a record or a link claiming an id must carry the key
/// that hashes to it, and a signature by that key.
pub fn server_id_of(key: &[u8; 32]) -> ServerId {
    let digest = Sha256::new()
        .chain_update(b"chatdrop server id v1\0")
        .chain_update(key)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// The first frame of each side of a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkHello {
    /// Protocol version the server speaks.
    pub version: u16,
    /// The server's identity.
    pub id: ServerId,
    /// The server's `--name`.
    pub name: String,
    /// When this run of the server started (ms since the Unix epoch): tells a
    /// restarted server from its previous life.
    pub incarnation: u64,
    /// 32 fresh random bytes for the key proof.
    pub nonce: [u8; 32],
}

/// Length of an Ed25519 signature, in [`Lsa::sig`] and [`LinkMsg::Proof`].
pub const SIGNATURE_LEN: usize = 64;

/// A link-state record: one server's links and their costs. Every server
/// floods its own, numbered and signed with its own key; the newest of each
/// origin wins. A record whose `key` does not hash to `origin`
/// ([`server_id_of`]), or whose `sig` does not verify, is dropped: holding
/// the network key does not let a server speak for another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lsa {
    /// The server it describes.
    pub origin: ServerId,
    /// That server's Ed25519 public key.
    pub key: [u8; 32],
    /// That server's `--name`.
    pub name: String,
    /// Its incarnation (see [`LinkHello::incarnation`]).
    pub incarnation: u64,
    /// Increases with every new record of the same incarnation.
    pub seq: u64,
    /// The servers it has a working link to, with the link's cost
    /// (round-trip time in ms, at least 1).
    pub neighbors: Vec<(ServerId, u32)>,
    /// Ed25519 signature by `key` over [`Lsa::signed_bytes`]
    /// ([`SIGNATURE_LEN`] bytes).
    pub sig: Vec<u8>,
}

impl Lsa {
    /// The bytes the origin signs: every field but the signature, each of
    /// fixed length or length-prefixed, after a context string of its own
    /// so that no other message a server signs can pass for a record.
    ///
    /// ```text
    /// "chatdrop lsa v1" 0x00 | origin 16 | key 32 | name: u16 BE length, UTF-8
    /// | incarnation u64 BE | seq u64 BE | neighbour count u32 BE
    /// | each neighbour: id 16, cost u32 BE
    /// ```
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t =
            Vec::with_capacity(16 + 16 + 32 + 2 + self.name.len() + 20 + 20 * self.neighbors.len());
        t.extend_from_slice(b"chatdrop lsa v1\0");
        t.extend_from_slice(&self.origin);
        t.extend_from_slice(&self.key);
        // A record is one frame, far below 64 KiB of name.
        t.extend_from_slice(&(self.name.len().min(u16::MAX as usize) as u16).to_be_bytes());
        t.extend_from_slice(self.name.as_bytes());
        t.extend_from_slice(&self.incarnation.to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&(self.neighbors.len().min(u32::MAX as usize) as u32).to_be_bytes());
        for (id, cost) in &self.neighbors {
            t.extend_from_slice(id);
            t.extend_from_slice(&cost.to_be_bytes());
        }
        t
    }
}

/// A frame on a link, after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkMsg {
    /// The answering server's hello.
    Hello(LinkHello),
    /// Key confirmation and server authentication, after both `Pake`
    /// messages: proves the sender derived the same SPAKE2 key (and so holds
    /// the network key) and holds the secret key of the id in its hello.
    Proof {
        /// HMAC-SHA256, keyed with the SPAKE2 key, over the link transcript.
        mac: [u8; 32],
        /// The sender's Ed25519 public key; it must hash to its id
        /// ([`server_id_of`]).
        key: [u8; 32],
        /// Its Ed25519 signature over the same transcript
        /// ([`SIGNATURE_LEN`] bytes).
        sig: Vec<u8>,
    },
    /// Keepalive and round-trip probe; answered with `Pong` of the same value.
    Ping(u64),
    /// Answer to `Ping`.
    Pong(u64),
    /// A link-state record to store and flood on.
    Lsa(Lsa),
    /// A frame for one server, forwarded hop by hop.
    Routed(Box<Routed>),
    /// The sender's SPAKE2 message (symmetric, Ed25519 group; 33 bytes),
    /// password the network key, identity [`crate::auth::link_pake_identity`].
    /// Handshake only.
    Pake {
        /// The message as the `spake2` crate makes it.
        msg: Vec<u8>,
    },
}

/// A frame routed to one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routed {
    /// The server that sent it.
    pub src: ServerId,
    /// The server it is for.
    pub dst: ServerId,
    /// Hops left; a frame is dropped when it reaches 0, so a routing loop
    /// during convergence cannot keep it forever.
    pub ttl: u8,
    /// What it carries.
    pub body: RoutedBody,
}

/// The end-to-end layer between two servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutedBody {
    /// A numbered message.
    Data(Box<Data>),
    /// Cumulative acknowledgement: every `Data` of `epoch` up to `seq` arrived.
    Ack {
        /// The acknowledging server's incarnation.
        src_inc: u64,
        /// The incarnation of the server acknowledged.
        dst_inc: u64,
        /// The epoch acknowledged.
        epoch: u64,
        /// Highest sequence number received in order.
        seq: u64,
    },
    /// "Send me your state": the sender lost or never had the destination's
    /// state and asks it to open a new epoch, starting with a `Sync`.
    Resync {
        /// The asking server's incarnation.
        src_inc: u64,
    },
}

/// A numbered message of one epoch of the channel from `src` to `dst`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    /// The sender's incarnation.
    pub src_inc: u64,
    /// The incarnation of the destination it was meant for.
    pub dst_inc: u64,
    /// The channel's epoch; a new one starts with a `Sync` at `seq` 1.
    pub epoch: u64,
    /// Position in the epoch, from 1, with no gaps.
    pub seq: u64,
    /// The sender's message number, increasing over all its epochs; 0 for a
    /// `Sync`. The destination delivers each number once.
    pub id: u64,
    pub msg: NetMsg,
}

/// A user online at a server, as the other servers learn of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetUser {
    /// The user's name.
    pub user: String,
    /// Its identity key.
    pub key: [u8; 32],
    /// The address its server sees it at (where its file offers are reached).
    pub ip: IpAddr,
    /// The ids of the rooms it is in (at most
    /// [`crate::limits::MAX_ROOMS_JOINED`]).
    pub rooms: Vec<String>,
    /// When it logged in (ms since the Unix epoch).
    pub since_ms: u64,
}

/// A room, as every server learns of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRoom {
    pub name: String,
    /// Its random id.
    pub id: String,
    /// Who created it.
    pub creator: String,
    /// Argon2id PHC string of its password, for a private room.
    pub password_hash: Option<String>,
    /// Creation time (ms since the Unix epoch).
    pub created_ms: u64,
}

/// A user name bound to an identity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetBinding {
    pub user: String,
    pub key: [u8; 32],
    /// When the name was first bound (ms since the Unix epoch).
    pub bound_ms: u64,
    /// The server the name was bound at: the only one that can vouch for
    /// the binding.
    pub home: ServerId,
    /// Its public key ([`server_id_of`] it is `home`).
    pub home_key: [u8; 32],
    /// Its Ed25519 signature over [`NetBinding::signed_bytes`].
    pub sig: Vec<u8>,
}

impl NetBinding {
    /// What the home server signs:
    ///
    /// ```text
    /// "chatdrop binding v1" 0x00 | home 16 | user length u16 BE | user
    /// | key 32 | bound_ms u64 BE
    /// ```
    pub fn signed_bytes(&self) -> Vec<u8> {
        binding_bytes(&self.home, &self.user, &self.key, self.bound_ms)
    }
}

/// The bytes a home server signs to vouch that `user` was bound to `key`
/// at `bound_ms` there (see [`NetBinding::signed_bytes`]).
pub fn binding_bytes(home: &ServerId, user: &str, key: &[u8; 32], bound_ms: u64) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + 16 + 2 + user.len() + 32 + 8);
    t.extend_from_slice(b"chatdrop binding v1\0");
    t.extend_from_slice(home);
    // A name is far below 64 KiB.
    t.extend_from_slice(&(user.len().min(u16::MAX as usize) as u16).to_be_bytes());
    t.extend_from_slice(user.as_bytes());
    t.extend_from_slice(key);
    t.extend_from_slice(&bound_ms.to_be_bytes());
    t
}

/// What one server tells another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetMsg {
    /// One part of everything the sender knows: its own users (it is their
    /// authority), and every room and name binding. A channel's epoch opens
    /// with part 0 and the parts follow in order, each at most
    /// [`SYNC_PART_ITEMS`] records, so that no state is too large for a frame
    /// and no frame takes long to apply. Once the `last` part is in, the
    /// sender's users are exactly those the parts listed.
    Sync {
        /// 0 for the first part, then 1, 2, ...
        part: u32,
        /// Whether this is the last part.
        last: bool,
        /// The sender's users.
        users: Vec<NetUser>,
        rooms: Vec<NetRoom>,
        /// Name bindings.
        bindings: Vec<NetBinding>,
    },
    /// A user logged in at the sender.
    Online(NetUser),
    /// A user of the sender logged out or was lost.
    Offline {
        user: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A user of the sender entered a room (by id; it stays in the others).
    Enter { user: String, room: String },
    /// A user of the sender left a room (by id).
    Leave {
        user: String,
        room: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A room was created (or is known) at the sender.
    Room(NetRoom),
    /// A name was bound at the sender.
    Bind(NetBinding),
    /// A chat line from a user of the sender.
    Say {
        /// The sender.
        from: String,
        /// The room's id, for a line to the room; `None` for a direct
        /// message (to a user online at the destination).
        room: Option<String>,
        /// `All` or one user.
        to: Target,
        text: String,
        /// When the sender's server accepted it.
        ts: u64,
    },
    /// A `whohas` of a user of the sender, for the destination's members of
    /// the room.
    WhoHas {
        /// The asker.
        from: String,
        room: String,
        file: String,
    },
    /// An owner's answer to a `whohas`, for the asker.
    HaveFile {
        /// The owner.
        from: String,
        /// The asker.
        to: String,
        file: String,
        size: u64,
        /// Its BLAKE3 hash.
        blake3: [u8; 32],
    },
    /// A file request for an owner at the destination.
    GetFile {
        /// The asker.
        from: String,
        /// The asker's identity key.
        from_key: [u8; 32],
        /// The owner.
        owner: String,
        file: String,
        /// The owner's offer it is asked from (`ClientMsg::GetFile`).
        offer: Option<u64>,
        /// The asker's ephemeral X25519 key.
        eph: [u8; 32],
        /// The asker's signature.
        sig: Vec<u8>,
        /// The asker's candidate addresses, as signed.
        candidates: Vec<std::net::SocketAddr>,
    },
    /// An owner accepted a request: the offer, for the asker.
    FileOffer {
        /// The asker.
        to: String,
        /// The owner.
        from: String,
        /// The owner's identity key.
        from_key: [u8; 32],
        file: String,
        /// Where the owner serves it.
        addr: SocketAddr,
        /// The signed offer.
        offer: Offer,
        /// The offer of files the request named, if any.
        offered: Option<u64>,
    },
    /// A request was refused, for the asker.
    Refused {
        /// The asker.
        to: String,
        /// The owner.
        from: String,
        file: String,
        /// Why.
        reason: RefuseReason,
        /// A sentence for the user.
        detail: String,
        /// The offer of files the request named, if any.
        offered: Option<u64>,
    },
    /// The sender opened a relay for the transfer `session`, which it
    /// brokered between one of its users (`other`) and `user`, at the
    /// destination: `user` binds its leg with `token` by UDP at `at`.
    Relay {
        /// The offer's session id.
        session: [u8; 8],
        /// The side at the destination.
        user: String,
        /// The side at the sender.
        other: String,
        /// `user`'s token.
        token: [u8; 16],
        /// The relay's address, as `user` reaches it.
        at: SocketAddr,
    },
    /// A user of the sender offers files to `to`, at the destination.
    OfferFiles {
        /// The sender of the offer.
        from: String,
        /// The receiver.
        to: String,
        /// The offer's id.
        offer: u64,
        files: Vec<crate::OfferedFile>,
    },
    /// The receiver's answer to an offer, for its sender at the
    /// destination.
    OfferAnswer {
        /// The receiver.
        from: String,
        /// The sender of the offer.
        to: String,
        offer: u64,
        accept: bool,
    },
}

/// Records (users, rooms and bindings together) in one part of a `Sync` at
/// most: about 200 KiB, and a few tens of milliseconds of signature checks
/// for a receiver that meets them all for the first time.
pub const SYNC_PART_ITEMS: usize = 1_000;

/// Splits a server's state into the parts of a `Sync`
/// ([`SYNC_PART_ITEMS`] records each; one empty part for no state at all).
/// Bindings come first, then rooms, then users: a receiver then knows each
/// user's name binding and room as the user arrives.
pub fn sync_parts(
    users: Vec<NetUser>,
    rooms: Vec<NetRoom>,
    bindings: Vec<NetBinding>,
) -> Vec<NetMsg> {
    let total = users.len() + rooms.len() + bindings.len();
    let count = total.div_ceil(SYNC_PART_ITEMS).max(1);
    let (mut users, mut rooms, mut bindings) =
        (users.into_iter(), rooms.into_iter(), bindings.into_iter());
    (0..count)
        .map(|i| {
            let b: Vec<NetBinding> = bindings.by_ref().take(SYNC_PART_ITEMS).collect();
            let r: Vec<NetRoom> = rooms.by_ref().take(SYNC_PART_ITEMS - b.len()).collect();
            let u: Vec<NetUser> = users
                .by_ref()
                .take(SYNC_PART_ITEMS - b.len() - r.len())
                .collect();
            NetMsg::Sync {
                part: i as u32,
                last: i + 1 == count,
                users: u,
                rooms: r,
                bindings: b,
            }
        })
        .collect()
}

impl NetMsg {
    /// About how many bytes the message takes on a link: what a channel
    /// counts against its window of bytes in flight. Fixed costs are
    /// rounded up; only what can be large is counted closely.
    pub fn weight(&self) -> usize {
        const RECORD: usize = 256;
        128 + match self {
            NetMsg::Sync {
                users,
                rooms,
                bindings,
                ..
            } => RECORD * (users.len() + rooms.len() + bindings.len()),
            NetMsg::Say { text, .. } => text.len(),
            NetMsg::OfferFiles { files, .. } => {
                files.iter().map(|f| RECORD + f.name.len()).sum::<usize>()
            }
            NetMsg::Refused { detail, .. } => detail.len(),
            NetMsg::WhoHas { file, .. }
            | NetMsg::HaveFile { file, .. }
            | NetMsg::GetFile { file, .. }
            | NetMsg::FileOffer { file, .. } => RECORD + file.len(),
            _ => RECORD,
        }
    }

    /// Whether the message describes state (users, rooms, bindings), which a
    /// newer `Sync` supersedes, rather than traffic that must be delivered.
    pub fn is_state(&self) -> bool {
        matches!(
            self,
            NetMsg::Sync { .. }
                | NetMsg::Online(_)
                | NetMsg::Offline { .. }
                | NetMsg::Enter { .. }
                | NetMsg::Leave { .. }
                | NetMsg::Room(_)
                | NetMsg::Bind(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(n: usize) -> NetBinding {
        NetBinding {
            user: format!("u{n}"),
            key: [1; 32],
            bound_ms: 1,
            home: [2; 16],
            home_key: [3; 32],
            sig: vec![4; 64],
        }
    }

    fn room(n: usize) -> NetRoom {
        NetRoom {
            name: format!("r{n}"),
            id: format!("id{n}"),
            creator: "c".into(),
            password_hash: None,
            created_ms: 1,
        }
    }

    /// A state of any size goes out in parts of at most `SYNC_PART_ITEMS`
    /// records, numbered from 0, the last marked, nothing lost or repeated,
    /// bindings first, and each part well under a link's frame limit.
    #[test]
    fn state_is_split_into_bounded_numbered_parts() {
        let rooms: Vec<NetRoom> = (0..1_500).map(room).collect();
        let bindings: Vec<NetBinding> = (0..2_600).map(binding).collect();
        let parts = sync_parts(Vec::new(), rooms.clone(), bindings.clone());
        assert_eq!(parts.len(), 5, "4,100 records in parts of 1,000");
        let (mut got_rooms, mut got_bindings) = (Vec::new(), Vec::new());
        for (i, p) in parts.iter().enumerate() {
            let NetMsg::Sync {
                part,
                last,
                users,
                rooms,
                bindings,
            } = p
            else {
                panic!("not a Sync part: {p:?}");
            };
            assert_eq!(*part as usize, i);
            assert_eq!(*last, i == 4);
            assert!(users.is_empty());
            assert!(rooms.len() + bindings.len() <= SYNC_PART_ITEMS);
            if !rooms.is_empty() {
                let sent = got_bindings.len() + bindings.len();
                assert_eq!(sent, 2_600, "part {i}: a room before the last binding");
            }
            got_rooms.extend(rooms.iter().cloned());
            got_bindings.extend(bindings.iter().cloned());
            let bytes = crate::codec::encode(p).expect("encodes").len();
            assert!(bytes < crate::limits::MAX_LINK_FRAME / 16, "{bytes} bytes");
            assert!(p.weight() >= bytes, "the weight does not undercount");
        }
        assert_eq!(got_rooms, rooms);
        assert_eq!(got_bindings, bindings);
    }

    #[test]
    fn no_state_is_one_empty_last_part() {
        let parts = sync_parts(Vec::new(), Vec::new(), Vec::new());
        assert!(matches!(
            parts.as_slice(),
            [NetMsg::Sync { part: 0, last: true, users, rooms, bindings }]
                if users.is_empty() && rooms.is_empty() && bindings.is_empty()
        ));
    }
}
