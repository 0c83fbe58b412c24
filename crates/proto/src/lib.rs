//! chatdrop's wire types and codecs.
//!
//! This crate owns what travels between a client and a server: the typed
//! messages ([`ClientMsg`], [`ServerMsg`]), the length-prefixed framing
//! ([`FrameCodec`]) and the limits every peer enforces ([`limits`]).
//! It does no I/O and keeps no state; docs/PROTOCOL.md describes the same
//! format for anyone writing another implementation.

pub mod auth;
pub mod chars;
mod codec;
pub mod limits;
pub mod link;
mod msg;
pub mod names;
pub mod tls;

pub use codec::{decode, encode, encode_frame, FrameCodec, ProtoError};
pub use msg::*;
