//! chatdrop's peer-to-peer file transfer: one UDP session per file, sealed
//! end to end, driving the sans-IO ARQ of `chatdrop-arq`.
//!
//! - [`crypto`]: session keys and the AEAD envelope of every datagram.
//! - [`wire`]: the frames of a session (the ARQ's plus `Start`).
//! - [`ticket`]: what a receiver needs to fetch a file in direct mode.
//! - [`direct`]: direct mode's key exchange, fresh keys for every run.
//! - [`outline`]: the BLAKE3 chaining values of a file's parts, which
//!   check each part as it arrives, from whichever owner.
//! - [`files`]: reading the shared file; safe names in the download folder.
//! - `download`, `region`: the download's `.part` file, filled by one
//!   session or several at once ([`Region`]), each part checked as it
//!   completes, and its resume record of verified parts.
//! - [`session`]: the two ends of a session: I/O-free machines
//!   ([`session::SendSession`], [`session::RecvSession`]) and the drivers
//!   that give them a socket and a file, [`session::serve`] and
//!   [`session::fetch`].
//! - [`socket`]: UDP sockets with buffers sized for bursts.
//! - [`batch`]: many datagrams per system call (GSO and GRO), for the
//!   sessions and for the server's relay.
//! - `relay` (feature `relay`): a lossy UDP relay, for tests and
//!   benchmarks.
//!
//! The machines, the session frames ([`Msg`]) and the envelope
//! ([`SessionKeys::open`]) are public so that they can be driven without
//! sockets or clocks: by the tests, and by the fuzz targets (`fuzz/`),
//! which feed them arbitrary datagrams.

pub mod batch;
mod crypto;
mod direct;
mod download;
mod files;
pub mod outline;
mod region;
#[cfg(feature = "relay")]
pub mod relay;
mod session;
mod socket;
mod ticket;
mod wire;

pub use crypto::{OpenError, Role, SessionKeys, HEADER as ENVELOPE_HEADER, TAG as ENVELOPE_TAG};
pub use direct::{direct_keys, direct_keys_at};
pub use download::{Download, Region};
pub use files::{hash_file, Source};
pub use session::{
    decline, fetch, fetch_from, serve, Candidates, Event as SessionEvent, FetchOptions, LaterIps,
    Piece, Progress, RecvSession, SendSession, ServeKeys, ServeOptions, Span, TransferStats,
    MAX_MSS, MAX_PUNCHED, MIN_MSS,
};
pub use socket::{bind, bind_dual, bind_dual_std, bind_std, for_socket};
pub use ticket::Ticket;
pub use wire::{Msg, TOKEN_LEN};

/// Errors of a transfer.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Socket or file I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        source: std::io::Error,
    },
    /// The peer stopped answering.
    #[error("the peer stopped answering ({0})")]
    PeerSilent(String),
    /// The peer gave up and said why.
    #[error("the peer aborted: {0}")]
    Aborted(String),
    /// The file received does not match the announced hash.
    #[error("the file received does not match its BLAKE3 hash (expected {expected}, got {got}); nothing was kept")]
    HashMismatch {
        /// Announced.
        expected: String,
        /// Computed.
        got: String,
    },
    /// The owner sent data that is not the file it announced (a part, or
    /// the outline, does not match the file's BLAKE3 hash): it lied, or
    /// its copy changed on disk. What it sent was not kept.
    #[error("the owner sent data that does not match the file's hash: {0}")]
    BadData(String),
    /// A ticket or name that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The peer broke the protocol in a way only an attacker would (it
    /// acknowledged data it never received).
    #[error("the peer broke the protocol: {0}")]
    Misbehaved(String),
}

impl TransferError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TransferError {
        let what = what.into();
        move |source| TransferError::Io { what, source }
    }
}
