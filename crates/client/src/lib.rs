//! The chatdrop client library: everything a user-facing program needs to
//! talk to a chatdrop server.
//!
//! - [`identity`]: the client's Ed25519 key pair, made on first run.
//! - [`trust`]: pinning of server certificates by fingerprint (known hosts).
//! - [`command`]: the line syntax users type (`@bob hi`, `/join room`...).
//! - [`describe`]: events as human text.
//! - [`session`]: one TLS connection and its login.
//! - [`shares`]: the share folder and what of it is shared.
//! - [`peer`]: whohas, getfile, uploads and downloads.
//! - [`run`]: the control loop: requests in, [`ClientEvent`]s out, keepalive,
//!   reconnect with backoff and rejoin.
//!
//! Printing is not done here: the `chatdrop` binary turns events into human
//! text or JSON.

pub mod code;
mod command;
mod describe;
mod event;
mod identity;
mod offers;
mod paths;
mod peer;
mod relay;
mod run;
mod session;
mod shares;
mod swarm;
mod trust;
mod unechoed;

use chatdrop_proto::ErrorCode;

pub use command::{parse_command, Command, HELP};
pub use describe::{describe, describe_in, human_bytes, shown};
pub use event::{arq_name, ClientEvent, ErrorKind, HistoryLine, OfferFile, SourceBytes};
pub use peer::{ShareCommand, TransferOptions};
pub use run::{run, ClientOptions, Exit};
pub use session::{connect, ConnectError, Session};
pub use trust::PinVerifier;

/// Errors that end a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server's certificate is not the one pinned for its address.
    #[error(
        "the certificate of {server} has changed: expected fingerprint {expected}, got {got}. \
         If the server was reinstalled on purpose, remove its line from {known_hosts} \
         or pass --server-fingerprint {got}"
    )]
    FingerprintMismatch {
        /// The server address.
        server: String,
        /// The pinned fingerprint.
        expected: String,
        /// The one presented.
        got: String,
        /// The known-hosts file.
        known_hosts: String,
    },
    /// The server refused the login or a request for good.
    #[error("{message} ({})", code.as_str())]
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's words.
        message: String,
    },
    /// The admin removed this client.
    #[error("kicked by the server: {0}")]
    Kicked(String),
    /// Connecting failed.
    #[error("cannot connect to {server}: {why}")]
    Connect {
        server: String,
        /// Why.
        why: String,
    },
    /// A local file (identity, known hosts) cannot be used.
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// The code an `error` event reports for this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::FingerprintMismatch { .. } => ErrorKind::FingerprintMismatch,
            ClientError::Refused { code, .. } => ErrorKind::Server(*code),
            ClientError::Kicked(_) => ErrorKind::Kicked,
            ClientError::Connect { .. } => ErrorKind::ConnectFailed,
            ClientError::Local(_) => ErrorKind::Local,
        }
    }
}
