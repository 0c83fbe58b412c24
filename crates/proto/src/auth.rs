//! The login proof: what a client signs to show it holds its identity key.
//!
//! The signed transcript binds the proof to this TLS session (through a TLS
//! exporter), to the server's fresh nonce, and to the name and key asked for,
//! so a signature can be neither replayed nor relayed to another server.

/// TLS exporter label both sides use to derive the channel binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-chatdrop-login";

/// Length of the channel binding taken from the TLS exporter.
pub const BINDING_LEN: usize = 32;

use std::net::{IpAddr, SocketAddr};

const CONTEXT: &[u8] = b"chatdrop login v1\0";

/// The bytes a client signs with its Ed25519 key to log in.
pub fn login_transcript(
    channel_binding: &[u8; BINDING_LEN],
    nonce: &[u8; 32],
    user: &str,
    public_key: &[u8; 32],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(CONTEXT.len() + 32 + 32 + 32 + 2 + user.len());
    t.extend_from_slice(CONTEXT);
    t.extend_from_slice(channel_binding);
    t.extend_from_slice(nonce);
    t.extend_from_slice(public_key);
    // Frames are far below 64 KiB, so the name's length fits two bytes.
    t.extend_from_slice(&(user.len().min(u16::MAX as usize) as u16).to_be_bytes());
    t.extend_from_slice(user.as_bytes());
    t
}

fn put_str(t: &mut Vec<u8>, s: &str) {
    t.extend_from_slice(&(s.len().min(u16::MAX as usize) as u16).to_be_bytes());
    t.extend_from_slice(s.as_bytes());
}

/// The bytes a client signs to ask `owner` for `file` (of the owner's
/// offer `offer`, or of its share folder), binding its ephemeral X25519 key
/// `eph` to its identity.
pub fn request_transcript(
    asker: &str,
    owner: &str,
    file: &str,
    offer: Option<u64>,
    eph: &[u8; 32],
    candidates: &[SocketAddr],
) -> Vec<u8> {
    let mut t = b"chatdrop getfile v3\0".to_vec();
    put_str(&mut t, asker);
    put_str(&mut t, owner);
    put_str(&mut t, file);
    match offer {
        None => t.push(0),
        Some(id) => {
            t.push(1);
            t.extend_from_slice(&id.to_be_bytes());
        }
    }
    t.extend_from_slice(eph);
    put_addrs(&mut t, candidates);
    t
}

fn put_ip(t: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            t.push(4);
            t.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            t.push(6);
            t.extend_from_slice(&ip.octets());
        }
    }
}

/// A count, then each address with its port.
fn put_addrs(t: &mut Vec<u8>, addrs: &[SocketAddr]) {
    t.extend_from_slice(&(addrs.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for a in addrs {
        put_ip(t, a.ip());
        t.extend_from_slice(&a.port().to_be_bytes());
    }
}

/// The bytes an owner signs to accept a request: everything the asker acts
/// on, and the asker's ephemeral key, so the offer answers that request only.
pub fn offer_transcript(
    owner: &str,
    asker: &str,
    file: &str,
    asker_eph: &[u8; 32],
    offer: &crate::Offer,
) -> Vec<u8> {
    let mut t = b"chatdrop offer v3\0".to_vec();
    put_str(&mut t, owner);
    put_str(&mut t, asker);
    put_str(&mut t, file);
    t.extend_from_slice(asker_eph);
    t.extend_from_slice(&offer.size.to_be_bytes());
    t.extend_from_slice(&offer.blake3);
    t.extend_from_slice(&offer.port.to_be_bytes());
    t.extend_from_slice(&offer.eph);
    t.extend_from_slice(&offer.session);
    t.push(offer.selective_repeat as u8);
    t.extend_from_slice(&offer.window.to_be_bytes());
    t.extend_from_slice(&offer.mss.to_be_bytes());
    put_ip(&mut t, offer.asker_ip);
    put_addrs(&mut t, &offer.candidates);
    put_addrs(&mut t, offer.observed.as_slice());
    t
}

/// TLS exporter label both ends of a server link use for the channel binding.
pub const LINK_EXPORTER_LABEL: &[u8] = b"EXPORTER-chatdrop-link";

/// The bytes each side of a link proves: it MACs them with the key both
/// sides derived by SPAKE2 from the network key, and signs them with its own
/// server key. Bound to this TLS session, to both fresh nonces, to the
/// prover's id and public key and to its side of the link (`dialer`), so a
/// proof can be neither replayed, relayed nor reflected back.
///
/// ```text
/// "chatdrop link v2" 0x00 | binding 32 | dialler nonce 32 | answerer nonce 32
/// | prover id 16 | prover key 32 | prover side 1 (1 for the dialler)
/// ```
pub fn link_transcript(
    channel_binding: &[u8; BINDING_LEN],
    dialer_nonce: &[u8; 32],
    acceptor_nonce: &[u8; 32],
    prover: &crate::link::ServerId,
    prover_key: &[u8; 32],
    dialer: bool,
) -> Vec<u8> {
    let mut t = b"chatdrop link v2\0".to_vec();
    t.extend_from_slice(channel_binding);
    t.extend_from_slice(dialer_nonce);
    t.extend_from_slice(acceptor_nonce);
    t.extend_from_slice(prover);
    t.extend_from_slice(prover_key);
    t.push(dialer as u8);
    t
}

/// The SPAKE2 identity string both ends of a link use: the protocol's name
/// and this TLS session's binding, so the derived key belongs to this
/// session alone.
pub fn link_pake_identity(channel_binding: &[u8; BINDING_LEN]) -> Vec<u8> {
    let mut t = b"chatdrop link pake v2\0".to_vec();
    t.extend_from_slice(channel_binding);
    t
}
