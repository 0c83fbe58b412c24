//! What the client reports, one event at a time. The `chatdrop` binary prints
//! each as a human line or, with `--json`, as one JSON object with an `event`
//! field (docs/EVENTS.md lists them all).

use chatdrop_proto::ErrorCode;
use serde::{Serialize, Serializer};

/// What went wrong, as an `error` event's `code`: the server's codes and
/// the client's own. In JSON it is the code's snake_case name
/// (docs/EVENTS.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The server refused a request, with its own code.
    Server(ErrorCode),
    /// A typed line is not a command.
    BadCommand,
    /// A command while the client is reconnecting.
    Offline,
    /// An `@me` command could not be done.
    Share,
    /// An offer (`/send`, `/accept`, `/decline`) could not be made or
    /// answered.
    Offer,
    /// Every peer that announced a file refused it.
    NoPeerLeft,
    /// Serving a file to a peer failed.
    UploadFailed,
    /// A server could not be reached.
    ConnectFailed,
    /// The server's certificate is not the one pinned for its address.
    FingerprintMismatch,
    /// The admin removed this client.
    Kicked,
    /// The data directory (identity, known hosts) cannot be used.
    Local,
}

impl ErrorKind {
    /// The code's name, as the JSON carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Server(code) => code.as_str(),
            ErrorKind::BadCommand => "bad_command",
            ErrorKind::Offline => "offline",
            ErrorKind::Share => "share",
            ErrorKind::Offer => "offer",
            ErrorKind::NoPeerLeft => "no_peer_left",
            ErrorKind::UploadFailed => "upload_failed",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::FingerprintMismatch => "fingerprint_mismatch",
            ErrorKind::Kicked => "kicked",
            ErrorKind::Local => "local",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A room in a `rooms` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomEntry {
    pub name: String,
    /// Whether it needs a password.
    pub private: bool,
    /// Member count, `null` for private rooms.
    pub members: Option<u32>,
}

/// The name of an ARQ scheme in events: `sr` (Selective Repeat) or `gbn`
/// (Go-Back-N).
pub fn arq_name(selective_repeat: bool) -> &'static str {
    if selective_repeat {
        "sr"
    } else {
        "gbn"
    }
}

/// What one owner sent of a download from several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceBytes {
    /// The owner.
    pub from: String,
    /// Bytes it sent that were verified (and, in progress, those on
    /// their way).
    pub bytes: u64,
}

/// One file of an offer, as `offer_received` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfferFile {
    /// Its path, under which it is saved in the download folder.
    pub name: String,
    pub size: u64,
    /// Its BLAKE3 hash, hex.
    pub blake3: String,
}

/// An event of the client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Logged in.
    Connected {
        /// Server address.
        server: String,
        /// Server's name.
        server_name: String,
        /// Our user name.
        user: String,
    },
    /// Of several servers, the closest was chosen.
    ServerChosen {
        /// The server chosen.
        server: String,
        /// Every server, closest first, with its measured round-trip time
        /// (TCP connection and TLS handshake) or why it could not be
        /// reached.
        candidates: Vec<ServerRtt>,
    },
    /// A page of the room list.
    Rooms {
        rooms: Vec<RoomEntry>,
        /// Rooms on the server in all.
        total: u32,
        /// Where the next page starts (`/rooms more` asks for it); `null`
        /// on the last page.
        next: Option<String>,
    },
    /// Joined (or created) a room.
    Joined {
        room: String,
        /// Its random ID.
        room_id: String,
        /// Whether we created it.
        created: bool,
        /// The other members.
        peers: Vec<String>,
    },
    /// Left a room.
    Left { room: String },
    /// A peer joined our room.
    PeerJoined {
        room: String,
        /// Peer.
        user: String,
    },
    /// A peer left our room.
    PeerLeft {
        room: String,
        /// Peer.
        user: String,
        /// `left`, `lost`, `kicked` or `banned`.
        reason: String,
    },
    /// A chat line.
    Message {
        /// Room, `null` for a server broadcast outside any room.
        room: Option<String>,
        /// Sender (`server` for the admin).
        from: String,
        /// `all`, `server` or the recipient's name.
        to: String,
        text: String,
        /// Server time, ms since the Unix epoch.
        ts: u64,
        /// True when replayed from the room's history.
        history: bool,
        /// Its place in the room's history (from 1), for paging back; 0
        /// for lines no history keeps (direct messages).
        seq: u64,
    },
    /// A page of a room's history (`/history`), oldest first.
    History {
        room: String,
        /// The lines.
        lines: Vec<HistoryLine>,
        /// Whether older lines are left (`/history` again fetches them).
        more: bool,
    },
    /// Members of our room.
    Peers {
        room: String,
        /// Members, us included.
        peers: Vec<String>,
    },
    /// Our room was renamed: two parts of the server network merged and each
    /// had a room of this name; the one created earlier kept it.
    RoomRenamed {
        /// The old name.
        old: String,
        /// The new name.
        new: String,
        /// Why, for the user.
        reason: String,
    },
    /// A notice from the server.
    ServerNotice { text: String },
    /// The admin removed us.
    Kicked { reason: String },
    /// A request failed, or a command was not understood.
    Error {
        /// What kind of error (`wrong_password`, `unknown_user`,
        /// `bad_command`...).
        code: ErrorKind,
        /// A sentence for the user.
        message: String,
    },
    /// The connection to the server ended.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// About to reconnect.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
        /// Wait before this attempt, in ms.
        delay_ms: u64,
    },
    /// A file is offered in direct mode (`chatdrop send`).
    Ticket {
        /// The ticket to give to `chatdrop recv`.
        ticket: String,
        /// The file's name.
        file: String,
        size: u64,
        /// Its BLAKE3 hash, hex.
        blake3: String,
    },
    /// A file is offered through a server with a short code (`chatdrop
    /// send --via`).
    Code {
        /// The code to give to `chatdrop recv --via`.
        code: String,
        /// The server both sides use.
        via: String,
        /// The file's name.
        file: String,
        size: u64,
        /// Its BLAKE3 hash, hex.
        blake3: String,
    },
    /// A download started.
    TransferStarted {
        /// Transfer id.
        id: String,
        /// File name.
        file: String,
        /// The peer sending it.
        from: String,
        /// Size in bytes.
        size: u64,
        /// Bytes already there from an earlier attempt.
        resumed_from: u64,
        /// How the file comes: `direct` (the owner answered at an address
        /// of its own) or `punched` (at its NAT's, opened by both sides
        /// sending at once).
        path: String,
        /// The owner's address the session runs with.
        addr: String,
        /// How the owner sends it: `sr` (Selective Repeat) or `gbn`
        /// (Go-Back-N).
        arq: String,
    },
    /// Progress of a download or upload (at most 4 a second).
    TransferProgress {
        /// Transfer id.
        id: String,
        /// Bytes done.
        bytes: u64,
        /// Bytes in all.
        total: u64,
        /// A download's owners and what each sent so far (absent where
        /// there is no choice of owners: direct mode).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        sources: Vec<SourceBytes>,
    },
    /// A download finished and was verified.
    TransferDone {
        /// Transfer id.
        id: String,
        /// File name.
        file: String,
        /// The peer that sent it.
        from: String,
        /// Bytes moved in this run.
        bytes: u64,
        /// Seconds it took.
        seconds: f64,
        /// BLAKE3 hash, hex (verified).
        blake3: String,
        /// Every owner that sent some of it, and how much (absent in
        /// direct mode).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        sources: Vec<SourceBytes>,
        /// Where it was saved.
        path: String,
    },
    /// A download failed.
    TransferFailed {
        /// Transfer id.
        id: String,
        /// File name.
        file: String,
        /// The peer.
        from: String,
        /// Why.
        reason: String,
    },
    /// An owner stopped sending its share of a download, which goes on
    /// with the others: it sent data that is not the file (`reason` says
    /// so), failed, or went silent.
    SourceDropped {
        /// Transfer id.
        id: String,
        /// File name.
        file: String,
        /// The owner dropped.
        from: String,
        /// Why.
        reason: String,
    },
    /// An upload to a peer started.
    UploadStarted {
        /// File name.
        file: String,
        /// The peer receiving it.
        to: String,
        /// How this client sends it: `sr` or `gbn` (`--arq`).
        arq: String,
    },
    /// An upload finished.
    UploadDone {
        /// File name.
        file: String,
        /// The peer.
        to: String,
        /// Bytes sent in this run.
        bytes: u64,
        /// Seconds it took.
        seconds: f64,
    },
    /// A peer shares a file asked about with `whohas`.
    WhohasReply {
        file: String,
        /// The peer.
        from: String,
        size: u64,
        /// Its BLAKE3 hash, hex.
        blake3: String,
    },
    /// A file request was refused, by the owner or the server's policy.
    TransferRefused {
        file: String,
        /// The owner asked (`server` when the policy refused it).
        from: String,
        /// `not_found`, `not_shared`, `busy`, `blocked` or `bad_name`.
        reason: String,
        /// A sentence for the user.
        detail: String,
    },
    /// The share settings (after any `@me` command).
    ShareStatus {
        /// Whether every file of the folder is shared.
        global: bool,
        /// Each file of the share folder and whether it is shared.
        files: Vec<crate::shares::FileShare>,
    },
    /// This client offered files (`/send`); the receiver is asked.
    OfferSent {
        /// The offer's number.
        offer: u32,
        /// The receiver.
        to: String,
        /// How many files, and their bytes in all.
        files: usize,
        bytes: u64,
        /// Links and special files left out of the folders offered.
        skipped: usize,
    },
    /// The receiver of this client's offer answered it.
    OfferAnswered {
        /// The offer's number.
        offer: u32,
        /// The receiver.
        to: String,
        /// Accepted (its requests follow) or declined.
        accepted: bool,
    },
    /// A user offers files; answer with `/accept N` or `/decline N`
    /// (unless it was accepted at once: `auto_accepted`).
    OfferReceived {
        /// The offer's number, for `/accept` and `/decline`.
        offer: u32,
        /// The sender.
        from: String,
        files: Vec<OfferFile>,
        /// Their bytes in all.
        bytes: u64,
        /// Accepted without asking (the sender is in `auto_accept`).
        auto_accepted: bool,
    },
    /// This client accepted an offer: its files are fetched one after
    /// another into `into`.
    OfferAccepted {
        offer: u32,
        from: String,
        /// The download folder they go into.
        into: String,
    },
    /// This client declined an offer.
    OfferDeclined { offer: u32, from: String },
    /// Every file of an accepted offer was fetched or failed.
    OfferFinished {
        offer: u32,
        from: String,
        /// How many were fetched and verified.
        received: usize,
        /// Those that failed (each had its `transfer_failed` or
        /// `transfer_refused`).
        failed: Vec<String>,
        /// The download folder.
        into: String,
    },
}

/// A line of a `history` page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryLine {
    /// Sender.
    pub from: String,
    pub text: String,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
    /// Its place in the room's history.
    pub seq: u64,
}

/// One server's round-trip time, measured to pick the closest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerRtt {
    /// Its address.
    pub server: String,
    /// Round-trip time of a TCP connection and TLS handshake, in ms.
    pub rtt_ms: Option<f64>,
    /// Why it could not be measured.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code the client can report, its own and the server's. The
    /// server's are read off the wire format (a variant's number is its
    /// encoding), so a code added to the protocol is covered here too.
    fn every_kind() -> Vec<ErrorKind> {
        let server = (0u8..=127).map_while(|i| chatdrop_proto::decode::<ErrorCode>(&[i]).ok());
        let own = [
            ErrorKind::BadCommand,
            ErrorKind::Offline,
            ErrorKind::Share,
            ErrorKind::Offer,
            ErrorKind::NoPeerLeft,
            ErrorKind::UploadFailed,
            ErrorKind::ConnectFailed,
            ErrorKind::FingerprintMismatch,
            ErrorKind::Kicked,
            ErrorKind::Local,
        ];
        server.map(ErrorKind::Server).chain(own).collect()
    }

    /// The JSON of an `error` event carries the code as a plain string, as
    /// before the codes were typed. (Fails if `ErrorKind` derives
    /// `Serialize`: the server's codes would come out as `{"Server":...}`.)
    #[test]
    fn an_error_event_carries_its_code_as_a_string() {
        let ev = ClientEvent::Error {
            code: ErrorKind::Server(ErrorCode::WrongPassword),
            message: "wrong password for room vault".into(),
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"event":"error","code":"wrong_password","message":"wrong password for room vault"}"#
        );
        let ev = ClientEvent::Error {
            code: ErrorKind::NoPeerLeft,
            message: String::new(),
        };
        assert!(serde_json::to_string(&ev)
            .unwrap()
            .contains(r#""code":"no_peer_left""#));
    }

    /// Each code is distinct, and docs/EVENTS.md names every one.
    #[test]
    fn every_code_is_distinct_and_documented() {
        let docs = include_str!("../../../docs/EVENTS.md");
        let mut seen = std::collections::HashSet::new();
        let kinds = every_kind();
        assert!(kinds.contains(&ErrorKind::Server(ErrorCode::Internal)));
        for kind in kinds {
            let code = kind.as_str();
            assert!(seen.insert(code), "{code} is used twice");
            assert!(
                docs.contains(&format!("`{code}`")),
                "docs/EVENTS.md does not list the error code {code}"
            );
        }
    }
}
