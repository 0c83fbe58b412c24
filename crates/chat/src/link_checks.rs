//! What a message from another server must satisfy before the chat core
//! acts on it: the same rules as a client's request. The network key only
//! admits a server; it does not make what that server sends harmless, so
//! names, room ids, text and file names from a link are checked exactly as
//! if a client here had sent them (a name with an escape sequence would
//! otherwise reach every client's terminal).
//!
//! The times a link gives for a name binding, a room's creation and a login
//! decide who keeps a name and which login wins, so they must be times that
//! can be true: not before [`EARLIEST_MS`] and not more than
//! [`CLOCK_SLACK_MS`] ahead of our clock. (A binding dated 0 would
//! otherwise win every name in the network, and a room dated 0 every room
//! name.)

use chatdrop_proto::chars::check_text_chars;
use chatdrop_proto::limits::{MAX_ROOMS_JOINED, MAX_TEXT_BYTES};
use chatdrop_proto::link::{NetBinding, NetMsg, NetRoom, NetUser};
use chatdrop_proto::names::{check_file_name, check_room_name, check_user_name};
use chatdrop_proto::Target;

/// The longest room id taken from another server (ours are 32 hex digits).
const MAX_ROOM_ID: usize = 64;
/// The longest stored password hash taken from another server (an
/// Argon2id PHC string with our parameters is under 100 bytes).
const MAX_PASSWORD_HASH: usize = 256;

/// 2024-01-01T00:00:00Z in ms since the Unix epoch: no chatdrop server
/// bound a name or made a room before then.
pub(crate) const EARLIEST_MS: u64 = 1_704_067_200_000;

/// How far the clocks of two servers may be apart: a time up to this much
/// ahead of ours is taken, and a record is weighed against what we know
/// with this much leeway (see `crate::contact`).
pub(crate) const CLOCK_SLACK_MS: u64 = 5 * 60 * 1000;

/// Why a chat line may not be sent, if it may not: empty, control
/// characters (escape sequences and line breaks would let a sender forge
/// lines or take over its peers' terminals), bidirectional controls and
/// line separators (they would reorder or break what others see around
/// the line), or too long.
pub(crate) fn check_text(text: &str) -> Result<(), (chatdrop_proto::ErrorCode, String)> {
    use chatdrop_proto::ErrorCode;
    if text.trim().is_empty() {
        return Err((ErrorCode::BadRequest, "empty message".into()));
    }
    if let Err(why) = check_text_chars(text) {
        return Err((ErrorCode::BadRequest, why));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err((
            ErrorCode::TooLong,
            format!(
                "message of {} bytes is over the {MAX_TEXT_BYTES}-byte limit",
                text.len()
            ),
        ));
    }
    Ok(())
}

fn user(name: &str) -> Result<(), String> {
    check_user_name(name)
}

fn room_id(id: &str) -> Result<(), String> {
    let id_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if id.is_empty() || id.len() > MAX_ROOM_ID || !id.bytes().all(id_char) {
        return Err(format!(
            "room id {id:?} is not 1 to {MAX_ROOM_ID} letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

fn file(name: &str) -> Result<(), String> {
    check_file_name(name)
}

/// Checks that `ms`, the time a link gives for `what`, can be true now.
fn plausible(what: &str, ms: u64, now_ms: u64) -> Result<(), String> {
    if ms < EARLIEST_MS {
        return Err(format!(
            "{what} is dated {ms} ms since 1970, before chatdrop existed"
        ));
    }
    if ms > now_ms.saturating_add(CLOCK_SLACK_MS) {
        return Err(format!(
            "{what} is dated {} s in the future",
            (ms - now_ms) / 1000
        ));
    }
    Ok(())
}

fn text(t: &str) -> Result<(), String> {
    check_text(t).map_err(|(_, why)| why)
}

fn net_user(u: &NetUser, now_ms: u64) -> Result<(), String> {
    user(&u.user)?;
    // The later of two logins of one name wins: a login from the future
    // would always win.
    plausible(&format!("the login of {:?}", u.user), u.since_ms, now_ms)?;
    if u.rooms.len() > MAX_ROOMS_JOINED {
        return Err(format!(
            "{:?} is in {} rooms, more than {MAX_ROOMS_JOINED}",
            u.user,
            u.rooms.len()
        ));
    }
    u.rooms.iter().try_for_each(|r| room_id(r))
}

fn net_room(r: &NetRoom, now_ms: u64) -> Result<(), String> {
    check_room_name(&r.name)?;
    room_id(&r.id)?;
    user(&r.creator)?;
    plausible(&format!("room {:?}", r.name), r.created_ms, now_ms)?;
    match &r.password_hash {
        Some(h) if h.len() > MAX_PASSWORD_HASH || !h.bytes().all(|b| b.is_ascii_graphic()) => Err(
            format!("the password hash of room {:?} is not a PHC string", r.name),
        ),
        _ => Ok(()),
    }
}

/// `held` says whether a binding is exactly one this server holds: its
/// signature was checked when it came, and is not checked again (a state
/// of a million bindings comes again at every reconnection).
fn binding(b: &NetBinding, now_ms: u64, held: &impl Fn(&NetBinding) -> bool) -> Result<(), String> {
    user(&b.user)?;
    plausible(&format!("the binding of {:?}", b.user), b.bound_ms, now_ms)?;
    if held(b) {
        return Ok(());
    }
    vouched(b)
}

/// Whether the server `b` names as its home vouches for it: the key hashes
/// to that server's id and signed the binding. A server of the network can
/// then speak only for the names bound at itself, not pass a claim off as
/// another server's.
fn vouched(b: &NetBinding) -> Result<(), String> {
    use ed25519_dalek::{Signature, VerifyingKey};
    let why = |what: &str| format!("the binding of {:?} {what}", b.user);
    if chatdrop_proto::link::server_id_of(&b.home_key) != b.home {
        return Err(why("names a home server whose key it does not carry"));
    }
    let sig: [u8; 64] = b
        .sig
        .as_slice()
        .try_into()
        .map_err(|_| why("has no signature of its home server"))?;
    VerifyingKey::from_bytes(&b.home_key)
        .and_then(|k| k.verify_strict(&b.signed_bytes(), &Signature::from_bytes(&sig)))
        .map_err(|_| why("is not signed by its home server"))
}

/// Keeps the records of a part of a `Sync` that pass [`check`]; with how
/// many were dropped and why the first was, if any was. (Any other message
/// comes back as it is.)
pub(crate) fn keep_good(
    msg: NetMsg,
    now_ms: u64,
    held: impl Fn(&NetBinding) -> bool,
) -> (NetMsg, Option<(usize, String)>) {
    let NetMsg::Sync {
        part,
        last,
        users,
        rooms,
        bindings,
    } = msg
    else {
        return (msg, None);
    };
    let mut dropped = 0;
    let mut first = None;
    let mut keep = |r: Result<(), String>| match r {
        Ok(()) => true,
        Err(why) => {
            dropped += 1;
            first.get_or_insert(why);
            false
        }
    };
    let users = users
        .into_iter()
        .filter(|u| keep(net_user(u, now_ms)))
        .collect();
    let rooms = rooms
        .into_iter()
        .filter(|r| keep(net_room(r, now_ms)))
        .collect();
    let bindings = bindings
        .into_iter()
        .filter(|b| keep(binding(b, now_ms, &held)))
        .collect();
    let msg = NetMsg::Sync {
        part,
        last,
        users,
        rooms,
        bindings,
    };
    (msg, first.map(|why| (dropped, why)))
}

/// Checks every name, id, text, file name and time `msg` carries, at
/// `now_ms` by our clock; the reason for the first that breaks the rules
/// (names quoted with escapes, so the reason itself is safe to print).
/// `held` is as for [`binding`].
pub(crate) fn check(
    msg: &NetMsg,
    now_ms: u64,
    held: impl Fn(&NetBinding) -> bool,
) -> Result<(), String> {
    match msg {
        NetMsg::Sync {
            users,
            rooms,
            bindings,
            ..
        } => {
            users.iter().try_for_each(|u| net_user(u, now_ms))?;
            rooms.iter().try_for_each(|r| net_room(r, now_ms))?;
            bindings.iter().try_for_each(|b| binding(b, now_ms, &held))
        }
        NetMsg::Online(u) => net_user(u, now_ms),
        NetMsg::Offline { user: u, .. } => user(u),
        NetMsg::Enter { user: u, room } | NetMsg::Leave { user: u, room, .. } => {
            user(u).and(room_id(room))
        }
        NetMsg::Room(r) => net_room(r, now_ms),
        NetMsg::Bind(b) => binding(b, now_ms, &held),
        NetMsg::Say {
            from,
            room,
            to,
            text: t,
            ts,
        } => {
            user(from)?;
            // A line to a room names it; a direct message names none.
            match (to, room) {
                (Target::All, Some(r)) => room_id(r)?,
                (Target::User(u), None) => user(u)?,
                _ => return Err("a line to a room names the room, a direct message none".into()),
            }
            // Shown beside the line, and kept in history.
            plausible("a chat line", *ts, now_ms)?;
            text(t)
        }
        NetMsg::WhoHas {
            from,
            room,
            file: f,
        } => user(from).and(room_id(room)).and(file(f)),
        NetMsg::HaveFile {
            from, to, file: f, ..
        }
        | NetMsg::FileOffer {
            from, to, file: f, ..
        } => user(from).and(user(to)).and(file(f)),
        NetMsg::GetFile {
            from,
            owner,
            file: f,
            candidates,
            ..
        } => user(from)
            .and(user(owner))
            .and(file(f))
            .and(crate::files::check_candidates(candidates)),
        NetMsg::Refused {
            to,
            from,
            file: f,
            detail,
            ..
        } => {
            // The share policy refuses as the server itself.
            if from != crate::admin::SERVER_SENDER {
                user(from)?;
            }
            user(to).and(file(f)).and(text(detail))
        }
        NetMsg::Relay {
            user: u, other, at, ..
        } => user(u).and(user(other)).and(relay_address(at)),
        NetMsg::OfferFiles {
            from, to, files, ..
        } => user(from)
            .and(user(to))
            .and(crate::offers::check_offer(files)),
        NetMsg::OfferAnswer { from, to, .. } => user(from).and(user(to)),
    }
}

/// Whether `at` can be a relay's address: a unicast address and a port.
fn relay_address(at: &std::net::SocketAddr) -> Result<(), String> {
    if !chatdrop_proto::limits::is_relay_address(at) {
        return Err(format!("{at} cannot be a relay's address"));
    }
    Ok(())
}
