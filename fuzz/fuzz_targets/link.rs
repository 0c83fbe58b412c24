//! The server-to-server link protocol, as an answering server reads it: a
//! byte stream whose first frame (under the client limit) is a
//! `ClientMsg` (a link opens with `LinkHello`), and whose later frames
//! (under the link limit) are `LinkMsg`s, or the other side's refusal as a
//! `ServerMsg`.
//!
//! Every `LinkMsg` that decodes is taken apart as the server and the chat
//! core take it: re-encoded (it must decode to itself), its strings put
//! through the name and text checks, its ids derived from its keys, its
//! signatures checked against the bytes they sign (whose layout is
//! checked), its routed messages classified, and its SPAKE2 message
//! finished against a fixed password.

#![no_main]

use bytes::BytesMut;
use chatdrop_fuzz::check_string;
use chatdrop_proto::limits::{MAX_CLIENT_FRAME, MAX_LINK_FRAME};
use chatdrop_proto::link::{
    server_id_of, LinkHello, LinkMsg, Lsa, NetBinding, NetMsg, NetRoom, NetUser, RoutedBody,
    SIGNATURE_LEN,
};
use chatdrop_proto::{decode, encode, ClientMsg, ServerMsg};
use ed25519_dalek::{Signature, VerifyingKey};
use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use tokio_util::codec::Decoder;

/// Whether `sig` is `key`'s signature of `msg`, as the link code checks
/// one (a signature of the wrong length is no signature).
fn verifies(key: &[u8; 32], msg: &[u8], sig: &[u8]) -> bool {
    let Ok(sig) = <[u8; SIGNATURE_LEN]>::try_from(sig) else {
        return false;
    };
    VerifyingKey::from_bytes(key)
        .and_then(|k| k.verify_strict(msg, &Signature::from_bytes(&sig)))
        .is_ok()
}

fn hello(h: &LinkHello) {
    check_string(&h.name);
}

fn lsa(l: &Lsa) {
    check_string(&l.name);
    let signed = l.signed_bytes();
    if l.name.len() <= usize::from(u16::MAX) {
        let len = 16 + 16 + 32 + 2 + l.name.len() + 8 + 8 + 4 + 20 * l.neighbors.len();
        assert_eq!(signed.len(), len, "the layout of a record's signed bytes");
    }
    let _ = server_id_of(&l.key) == l.origin && verifies(&l.key, &signed, &l.sig);
}

fn binding(b: &NetBinding) {
    check_string(&b.user);
    let signed = b.signed_bytes();
    if b.user.len() <= usize::from(u16::MAX) {
        assert_eq!(signed.len(), 20 + 16 + 2 + b.user.len() + 32 + 8);
    }
    let _ = server_id_of(&b.home_key) == b.home && verifies(&b.home_key, &signed, &b.sig);
}

fn user(u: &NetUser) {
    check_string(&u.user);
    u.rooms.iter().for_each(|r| check_string(r));
}

fn room(r: &NetRoom) {
    for s in [&r.name, &r.id, &r.creator] {
        check_string(s);
    }
    if let Some(hash) = &r.password_hash {
        check_string(hash);
    }
}

fn net_msg(m: &NetMsg) {
    let _ = m.is_state();
    match m {
        NetMsg::Sync {
            users,
            rooms,
            bindings,
            ..
        } => {
            users.iter().for_each(user);
            rooms.iter().for_each(room);
            bindings.iter().for_each(binding);
        }
        NetMsg::Online(u) => user(u),
        NetMsg::Room(r) => room(r),
        NetMsg::Bind(b) => binding(b),
        NetMsg::Offline { user, reason } => {
            check_string(user);
            check_string(reason.as_str());
        }
        NetMsg::Leave { user, room, reason } => {
            check_string(user);
            check_string(room);
            check_string(reason.as_str());
        }
        NetMsg::Enter { user, room } => {
            check_string(user);
            check_string(room);
        }
        NetMsg::Say {
            from,
            room,
            to,
            text,
            ..
        } => [from.as_str(), to.as_str(), text]
            .into_iter()
            .chain(room.as_deref())
            .for_each(check_string),
        NetMsg::WhoHas { from, room, file } => [from.as_str(), room, file]
            .into_iter()
            .for_each(check_string),
        NetMsg::HaveFile { from, to, file, .. } => {
            [from.as_str(), to, file].into_iter().for_each(check_string)
        }
        NetMsg::GetFile {
            from,
            from_key,
            owner,
            file,
            offer,
            eph,
            sig,
            candidates,
        } => {
            [from.as_str(), owner, file]
                .into_iter()
                .for_each(check_string);
            let t = chatdrop_proto::auth::request_transcript(
                from, owner, file, *offer, eph, candidates,
            );
            let _ = verifies(from_key, &t, sig);
        }
        NetMsg::FileOffer { to, from, file, .. } => {
            [to.as_str(), from, file].into_iter().for_each(check_string)
        }
        NetMsg::Refused {
            to,
            from,
            file,
            reason,
            detail,
            ..
        } => [to.as_str(), from, file, reason.as_str(), detail]
            .into_iter()
            .for_each(check_string),
        NetMsg::Relay { user, other, .. } => {
            [user.as_str(), other].into_iter().for_each(check_string)
        }
        NetMsg::OfferFiles {
            from, to, files, ..
        } => {
            [from.as_str(), to].into_iter().for_each(check_string);
            for f in files {
                check_string(&f.name);
                let _ = chatdrop_proto::names::check_offered_name(&f.name);
            }
        }
        NetMsg::OfferAnswer { from, to, .. } => {
            [from.as_str(), to].into_iter().for_each(check_string)
        }
    }
}

fn link_msg(m: &LinkMsg) {
    let bytes = encode(m).expect("a decoded message encodes");
    let again: LinkMsg = decode(&bytes).expect("an encoded message decodes");
    assert_eq!(&again, m);
    match m {
        LinkMsg::Hello(h) => hello(h),
        LinkMsg::Proof { key, sig, .. } => {
            let _ = server_id_of(key);
            let _ = verifies(key, b"a link transcript", sig);
        }
        LinkMsg::Ping(_) | LinkMsg::Pong(_) => {}
        LinkMsg::Lsa(l) => lsa(l),
        LinkMsg::Routed(r) => match &r.body {
            RoutedBody::Data(d) => net_msg(&d.msg),
            RoutedBody::Ack { .. } | RoutedBody::Resync { .. } => {}
        },
        LinkMsg::Pake { msg } => {
            // Seeded, so that a run is the same every time.
            let rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            let (pake, _) = Spake2::<Ed25519Group>::start_symmetric_with_rng(
                &Password::new(b"network key"),
                &Identity::new(b"chatdrop link"),
                rng,
            );
            let _ = pake.finish(msg);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut codec = chatdrop_proto::FrameCodec::new(MAX_CLIENT_FRAME);
    let mut buf = BytesMut::from(data);
    let mut first = true;
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        assert!(
            frame.len()
                <= if first {
                    MAX_CLIENT_FRAME
                } else {
                    MAX_LINK_FRAME
                }
        );
        if first {
            first = false;
            if let Ok(ClientMsg::LinkHello(h)) = decode::<ClientMsg>(&frame) {
                hello(&h);
            }
            codec.set_max(MAX_LINK_FRAME);
            continue;
        }
        match decode::<LinkMsg>(&frame) {
            Ok(m) => link_msg(&m),
            Err(_) => {
                if let Ok(ServerMsg::Error { message, .. }) = decode::<ServerMsg>(&frame) {
                    check_string(&message);
                }
            }
        }
    }
});
