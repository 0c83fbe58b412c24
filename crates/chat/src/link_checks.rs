//! What a message from another server must satisfy before the chat core
//! acts on it: the same rules as a client's request. The network key only
//! admits a server; it does not make what that server sends harmless, so
//! names, room ids, text and file names from a link are checked exactly as
//! if a client here had sent them (a name with an escape sequence would
//! otherwise reach every client's terminal).

use chatdrop_proto::chars::check_text_chars;
use chatdrop_proto::limits::MAX_TEXT_BYTES;
use chatdrop_proto::link::{NetBinding, NetMsg, NetRoom, NetUser};
use chatdrop_proto::names::{check_file_name, check_room_name, check_user_name};
use chatdrop_proto::Target;

/// The longest room id taken from another server (ours are 32 hex digits).
const MAX_ROOM_ID: usize = 64;
/// The longest stored password hash taken from another server (an
/// Argon2id PHC string with our parameters is under 100 bytes).
const MAX_PASSWORD_HASH: usize = 256;

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

fn text(t: &str) -> Result<(), String> {
    check_text(t).map_err(|(_, why)| why)
}

fn net_user(u: &NetUser) -> Result<(), String> {
    user(&u.user)?;
    u.room.as_deref().map_or(Ok(()), room_id)
}

fn net_room(r: &NetRoom) -> Result<(), String> {
    check_room_name(&r.name)?;
    room_id(&r.id)?;
    user(&r.creator)?;
    match &r.password_hash {
        Some(h) if h.len() > MAX_PASSWORD_HASH || !h.bytes().all(|b| b.is_ascii_graphic()) => Err(
            format!("the password hash of room {:?} is not a PHC string", r.name),
        ),
        _ => Ok(()),
    }
}

fn binding(b: &NetBinding) -> Result<(), String> {
    user(&b.user)
}

/// Checks every name, id, text and file name `msg` carries; the reason for
/// the first that breaks the rules (names quoted with escapes, so the
/// reason itself is safe to print).
pub(crate) fn check(msg: &NetMsg) -> Result<(), String> {
    match msg {
        NetMsg::Sync {
            users,
            rooms,
            bindings,
        } => {
            users.iter().try_for_each(net_user)?;
            rooms.iter().try_for_each(net_room)?;
            bindings.iter().try_for_each(binding)
        }
        NetMsg::Online(u) => net_user(u),
        NetMsg::Offline { user: u, .. } | NetMsg::Leave { user: u, .. } => user(u),
        NetMsg::Enter { user: u, room } => user(u).and(room_id(room)),
        NetMsg::Room(r) => net_room(r),
        NetMsg::Bind(b) => binding(b),
        NetMsg::Say {
            from,
            room,
            to,
            text: t,
            ..
        } => {
            user(from)?;
            room_id(room)?;
            if let Target::User(u) = to {
                user(u)?;
            }
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
            ..
        } => user(from).and(user(owner)).and(file(f)),
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
    }
}
