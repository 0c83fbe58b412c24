//! The control connection's framing and messages: a byte stream, cut into
//! pieces as TCP may deliver it, goes through `FrameCodec` with a limit,
//! and every frame it yields is decoded as each message type of the
//! client <-> server protocol (`ClientMsg`, `ServerMsg`).
//!
//! Input: one byte choosing the frame limit and the size of the pieces,
//! then the stream. Checked: the codec yields exactly the frames a
//! reference reading of the stream finds, fails exactly at the first
//! frame over the limit, and never yields one over it; a message that
//! decodes encodes to something that decodes to the same message; every
//! string a message carries goes through the name and text checks.

#![no_main]

use bytes::BytesMut;
use chatdrop_fuzz::check_string;
use chatdrop_proto::limits::{MAX_CLIENT_FRAME, MAX_SERVER_FRAME};
use chatdrop_proto::{
    decode, encode, ChatLine, ClientMsg, FileAnswer, MailboxEvent, ProtoError, RoomInfo, ServerMsg,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use tokio_util::codec::Decoder;

const LIMITS: [usize; 8] = [MAX_CLIENT_FRAME, MAX_SERVER_FRAME, 0, 1, 8, 64, 1024, 4096];
const PIECES: [usize; 8] = [usize::MAX, 1, 2, 3, 5, 7, 64, 1000];

/// What a reference reading of `stream` finds: its complete frames, and
/// whether it runs into one over `max` (after them).
fn reference(mut stream: &[u8], max: usize) -> (Vec<&[u8]>, bool) {
    let mut frames = Vec::new();
    while stream.len() >= 4 {
        let len = u32::from_be_bytes([stream[0], stream[1], stream[2], stream[3]]) as usize;
        if len > max {
            return (frames, true);
        }
        let Some(payload) = stream.get(4..4 + len) else {
            break;
        };
        frames.push(payload);
        stream = &stream[4 + len..];
    }
    (frames, false)
}

/// `msg` survives encoding: it decodes back to itself.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(msg: &T) {
    let bytes = encode(msg).expect("a decoded message encodes");
    let again: T = decode(&bytes).expect("an encoded message decodes");
    assert_eq!(&again, msg);
}

fn client_strings(m: &ClientMsg) -> Vec<&str> {
    let mut out = Vec::new();
    match m {
        ClientMsg::Hello { user, .. } => out.push(user.as_str()),
        ClientMsg::CreateRoom { room, password } | ClientMsg::JoinRoom { room, password } => {
            out.push(room);
            out.extend(password.as_deref());
        }
        ClientMsg::Say { to, room, text } => {
            out.extend([to.as_str(), text]);
            out.extend(room.as_deref());
        }
        ClientMsg::WhoHas { room, file } => out.extend([room.as_str(), file]),
        ClientMsg::LeaveRoom { room }
        | ClientMsg::GetPeers { room }
        | ClientMsg::History { room, .. } => out.push(room),
        ClientMsg::HaveFile { to, file, .. } => out.extend([to.as_str(), file]),
        ClientMsg::GetFile { owner, file, .. } => out.extend([owner.as_str(), file]),
        ClientMsg::OfferFiles { to, files, .. } => {
            out.push(to);
            out.extend(files.iter().map(|f| f.name.as_str()));
        }
        ClientMsg::OfferAnswer { to, .. } => out.push(to),
        ClientMsg::FileAnswer { answer, .. } => match answer {
            FileAnswer::Accept(_) => {}
            FileAnswer::Refuse(r) => out.push(r.as_str()),
        },
        ClientMsg::LinkHello(h) => out.push(&h.name),
        ClientMsg::ListRooms { after } => out.extend(after.as_deref()),
        ClientMsg::Auth { .. }
        | ClientMsg::Ping
        | ClientMsg::Quit
        | ClientMsg::Observe { .. }
        | ClientMsg::Relay { .. }
        | ClientMsg::RelayEnd { .. }
        | ClientMsg::Tunnel { .. }
        | ClientMsg::Mailbox(_) => {}
    }
    out
}

fn server_strings(m: &ServerMsg) -> Vec<&str> {
    let mut out = Vec::new();
    match m {
        ServerMsg::Challenge { server_name, .. } => out.push(server_name.as_str()),
        ServerMsg::LoggedIn { user } => out.push(user),
        ServerMsg::Pong
        | ServerMsg::Observed { .. }
        | ServerMsg::Relay { .. }
        | ServerMsg::RelayAt { .. }
        | ServerMsg::Tunnel { .. } => {}
        ServerMsg::RelayRefused { why, .. } => out.push(why),
        ServerMsg::Mailbox(MailboxEvent::Closed { why }) => out.push(why),
        ServerMsg::Mailbox(_) => {}
        ServerMsg::Rooms { rooms, next, .. } => {
            out.extend(rooms.iter().map(|r: &RoomInfo| r.name.as_str()));
            out.extend(next.as_deref());
        }
        ServerMsg::Joined {
            room,
            room_id,
            peers,
            ..
        } => {
            out.extend([room.as_str(), room_id]);
            out.extend(peers.iter().map(String::as_str));
        }
        ServerMsg::Left { room } => out.push(room),
        ServerMsg::PeerJoined { room, user } => out.extend([room.as_str(), user]),
        ServerMsg::PeerLeft { room, user, reason } => {
            out.extend([room.as_str(), user, reason.as_str()])
        }
        ServerMsg::Message(ChatLine {
            room,
            from,
            to,
            text,
            ..
        }) => {
            out.extend(room.as_deref());
            out.extend([from.as_str(), to.as_str(), text]);
        }
        ServerMsg::Peers { room, peers } => {
            out.push(room);
            out.extend(peers.iter().map(String::as_str));
        }
        ServerMsg::History { room, lines, .. } => {
            out.push(room);
            for l in lines {
                out.extend(l.room.as_deref());
                out.extend([l.from.as_str(), l.to.as_str(), &l.text]);
            }
        }
        ServerMsg::Notice { text } => out.push(text),
        ServerMsg::Kicked { reason } | ServerMsg::Bye { reason } => out.push(reason),
        ServerMsg::Error { code, message } => {
            let _ = code.is_fatal_at_login();
            out.extend([code.as_str(), message]);
        }
        ServerMsg::WhoHas { from, file }
        | ServerMsg::HaveFile { from, file, .. }
        | ServerMsg::FileRequest { from, file, .. }
        | ServerMsg::FileOffer { from, file, .. } => out.extend([from.as_str(), file]),
        ServerMsg::TransferRefused {
            from,
            file,
            reason,
            detail,
            ..
        } => out.extend([from.as_str(), file, reason.as_str(), detail]),
        ServerMsg::RoomRenamed { old, new, reason } => out.extend([old.as_str(), new, reason]),
        ServerMsg::FilesOffered { from, files, .. } => {
            out.push(from);
            out.extend(files.iter().map(|f| f.name.as_str()));
        }
        ServerMsg::OfferAnswered { from, .. } => out.push(from),
    }
    out
}

/// Decodes one frame's payload as each message type.
fn payload(p: &[u8]) {
    if let Ok(m) = decode::<ClientMsg>(p) {
        round_trip(&m);
        client_strings(&m).into_iter().for_each(check_string);
    }
    if let Ok(m) = decode::<ServerMsg>(p) {
        round_trip(&m);
        server_strings(&m).into_iter().for_each(check_string);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, stream)) = data.split_first() else {
        return;
    };
    let max = LIMITS[usize::from(knobs >> 3) % LIMITS.len()];
    let piece = PIECES[usize::from(knobs) % PIECES.len()];
    let (expected, too_large) = reference(stream, max);

    let mut codec = chatdrop_proto::FrameCodec::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut failed = false;
    'read: for chunk in stream.chunks(piece.min(stream.len().max(1))) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "a frame over the limit was yielded");
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(ProtoError::FrameTooLarge { len, max: m }) => {
                    assert!(
                        len > m && m == max,
                        "refused {len} bytes under the {m} limit"
                    );
                    failed = true;
                    break 'read;
                }
                Err(e) => panic!("framing can only fail on size, not with {e}"),
            }
        }
    }
    assert_eq!(
        failed, too_large,
        "the codec and the reference disagree on failing"
    );
    assert_eq!(frames.len(), expected.len(), "frames yielded");
    for (got, want) in frames.iter().zip(&expected) {
        assert_eq!(&got[..], *want);
    }
    for frame in &frames {
        payload(frame);
    }
});
