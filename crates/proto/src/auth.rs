//! The login proof: what a client signs to show it holds its identity key.
//!
//! The signed transcript binds the proof to this TLS session (through a TLS
//! exporter), to the server's fresh nonce, and to the name and key asked for,
//! so a signature can be neither replayed nor relayed to another server.

/// TLS exporter label both sides use to derive the channel binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-chatdrop-login";

/// Length of the channel binding taken from the TLS exporter.
pub const BINDING_LEN: usize = 32;

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
