//! Writes the seed corpus of every fuzz target: valid encodings of every
//! message, frame and datagram kind, ticket and command, and scripts that
//! run the transfer machines through whole transfers (clean, lossy,
//! resumed, empty, lied to). Each seed is a file named for what it holds,
//! in `corpus/<target>/`; files of other names there (crash inputs kept
//! as regressions) are left alone.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds [CORPUS_DIR]
//! ```
//!
//! `CORPUS_DIR` defaults to the `corpus` folder beside this crate's
//! manifest. The output is the same on every run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use chatdrop_arq::{Ack, Frame};
use chatdrop_fuzz::{keys, Script};
use chatdrop_proto::link::{
    server_id_of, Data, LinkHello, LinkMsg, Lsa, NetBinding, NetMsg, NetRoom, NetUser, Routed,
    RoutedBody,
};
use chatdrop_proto::{
    encode_frame, ChatLine, ClientMsg, ErrorCode, FileAnswer, LeaveReason, Offer, OfferedFile,
    RefuseReason, RoomInfo, ServerMsg, Target,
};
use chatdrop_transfer::{Msg, Role, Ticket, ENVELOPE_HEADER, MAX_MSS, TOKEN_LEN};
use ed25519_dalek::{Signer, SigningKey};
use rand_chacha::rand_core::SeedableRng;
use spake2::{Ed25519Group, Identity, Password, Spake2};

/// Writes the seeds of one target.
struct Seeds {
    dir: PathBuf,
    count: usize,
    bytes: usize,
}

impl Seeds {
    fn new(root: &Path, target: &str) -> Seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("the corpus folder can be made");
        Seeds {
            dir,
            count: 0,
            bytes: 0,
        }
    }

    fn add(&mut self, name: &str, bytes: &[u8]) {
        std::fs::write(self.dir.join(name), bytes).expect("a seed can be written");
        self.count += 1;
        self.bytes += bytes.len();
    }

    fn done(self) {
        println!(
            "{}: {} seeds, {} bytes",
            self.dir.display(),
            self.count,
            self.bytes
        );
    }
}

fn frame<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    encode_frame(msg).expect("a message encodes").to_vec()
}

fn offer() -> Offer {
    Offer {
        size: 1_048_576,
        blake3: [3; 32],
        port: 40_000,
        eph: [4; 32],
        session: [5; 8],
        selective_repeat: true,
        window: 16_384,
        mss: 1_200,
        asker_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        candidates: vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)),
            40_000,
        )],
        observed: Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            61_000,
        )),
        sig: vec![6; 64],
    }
}

fn client_msgs() -> Vec<(&'static str, ClientMsg)> {
    vec![
        (
            "hello",
            ClientMsg::Hello {
                version: 1,
                user: "alice".into(),
                public_key: [7; 32],
            },
        ),
        (
            "auth",
            ClientMsg::Auth {
                signature: vec![9; 64],
            },
        ),
        ("ping", ClientMsg::Ping),
        ("list-rooms", ClientMsg::ListRooms { after: None }),
        (
            "list-rooms-after",
            ClientMsg::ListRooms {
                after: Some("Lobby".into()),
            },
        ),
        (
            "create-room",
            ClientMsg::CreateRoom {
                room: "vault".into(),
                password: Some("s3cret".into()),
            },
        ),
        (
            "join-room",
            ClientMsg::JoinRoom {
                room: "Lobby".into(),
                password: None,
            },
        ),
        (
            "leave-room",
            ClientMsg::LeaveRoom {
                room: "Lobby".into(),
            },
        ),
        (
            "get-peers",
            ClientMsg::GetPeers {
                room: "Lobby".into(),
            },
        ),
        (
            "say-user",
            ClientMsg::Say {
                to: Target::User("bob".into()),
                room: None,
                text: "hi bob, ça va? 東京".into(),
            },
        ),
        (
            "say-all",
            ClientMsg::Say {
                to: Target::All,
                room: Some("Lobby".into()),
                text: "hello \u{1F468}\u{200D}\u{1F469}".into(),
            },
        ),
        (
            "say-server",
            ClientMsg::Say {
                to: Target::Server,
                room: None,
                text: "look \u{202E}txt.exe".into(),
            },
        ),
        ("quit", ClientMsg::Quit),
        (
            "offer-files",
            ClientMsg::OfferFiles {
                to: "bob".into(),
                offer: 0x0123_4567_89ab_cdef,
                files: offered_files(),
            },
        ),
        (
            "offer-answer",
            ClientMsg::OfferAnswer {
                to: "alice".into(),
                offer: 0x0123_4567_89ab_cdef,
                accept: true,
            },
        ),
        (
            "history",
            ClientMsg::History {
                room: "Lobby".into(),
                before: Some(120),
                after: None,
                limit: 100,
            },
        ),
        (
            "whohas",
            ClientMsg::WhoHas {
                room: "Lobby".into(),
                file: "music/song.mp3".into(),
            },
        ),
        (
            "havefile",
            ClientMsg::HaveFile {
                to: "bob".into(),
                file: "music/song.mp3".into(),
                size: 4_000_000,
                blake3: [1; 32],
            },
        ),
        (
            "getfile",
            ClientMsg::GetFile {
                owner: "bob".into(),
                file: "docs/a.pdf".into(),
                offer: Some(0x0123_4567_89ab_cdef),
                eph: [2; 32],
                sig: vec![3; 64],
                candidates: vec![SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                    5000,
                )],
            },
        ),
        ("observe", ClientMsg::Observe { token: [8; 16] }),
        (
            "answer-accept",
            ClientMsg::FileAnswer {
                req: 42,
                answer: FileAnswer::Accept(offer()),
            },
        ),
        (
            "answer-refuse",
            ClientMsg::FileAnswer {
                req: 43,
                answer: FileAnswer::Refuse(RefuseReason::Busy),
            },
        ),
        ("link-hello", ClientMsg::LinkHello(link_hello())),
    ]
}

fn server_msgs() -> Vec<(&'static str, ServerMsg)> {
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 40_001);
    vec![
        (
            "challenge",
            ServerMsg::Challenge {
                version: 1,
                server_name: "hub-1".into(),
                nonce: [8; 32],
            },
        ),
        (
            "logged-in",
            ServerMsg::LoggedIn {
                user: "alice".into(),
            },
        ),
        ("pong", ServerMsg::Pong),
        (
            "rooms",
            ServerMsg::Rooms {
                rooms: vec![
                    RoomInfo {
                        name: "Lobby".into(),
                        private: false,
                        members: Some(3),
                    },
                    RoomInfo {
                        name: "vault".into(),
                        private: true,
                        members: None,
                    },
                ],
                total: 150,
                next: Some("vault".into()),
            },
        ),
        (
            "joined",
            ServerMsg::Joined {
                room: "Lobby".into(),
                room_id: "0123456789abcdef0123456789abcdef".into(),
                created: false,
                peers: vec!["bob".into(), "carol".into()],
            },
        ),
        (
            "left",
            ServerMsg::Left {
                room: "Lobby".into(),
            },
        ),
        (
            "peer-joined",
            ServerMsg::PeerJoined {
                room: "Lobby".into(),
                user: "dave".into(),
            },
        ),
        (
            "peer-left",
            ServerMsg::PeerLeft {
                room: "Lobby".into(),
                user: "dave".into(),
                reason: LeaveReason::Lost,
            },
        ),
        (
            "message",
            ServerMsg::Message(ChatLine {
                room: Some("Lobby".into()),
                from: "bob".into(),
                to: Target::All,
                text: "hello everyone".into(),
                ts: 1_764_547_200_000,
                history: true,
                seq: 7,
            }),
        ),
        (
            "files-offered",
            ServerMsg::FilesOffered {
                from: "alice".into(),
                offer: 0x0123_4567_89ab_cdef,
                files: offered_files(),
            },
        ),
        (
            "offer-answered",
            ServerMsg::OfferAnswered {
                from: "bob".into(),
                offer: 0x0123_4567_89ab_cdef,
                accept: false,
            },
        ),
        (
            "history-page",
            ServerMsg::History {
                room: "Lobby".into(),
                lines: vec![ChatLine {
                    room: Some("Lobby".into()),
                    from: "bob".into(),
                    to: Target::All,
                    text: "earlier".into(),
                    ts: 1_764_547_100_000,
                    history: true,
                    seq: 3,
                }],
                more: true,
            },
        ),
        (
            "peers",
            ServerMsg::Peers {
                room: "Lobby".into(),
                peers: vec!["alice".into(), "bob".into()],
            },
        ),
        (
            "notice",
            ServerMsg::Notice {
                text: "maintenance at noon".into(),
            },
        ),
        (
            "kicked",
            ServerMsg::Kicked {
                reason: "spam".into(),
            },
        ),
        (
            "error",
            ServerMsg::error(ErrorCode::LimitReached, "at most 20 rooms per user"),
        ),
        (
            "bye",
            ServerMsg::Bye {
                reason: "shutting down".into(),
            },
        ),
        (
            "whohas",
            ServerMsg::WhoHas {
                from: "bob".into(),
                file: "music/song.mp3".into(),
            },
        ),
        (
            "havefile",
            ServerMsg::HaveFile {
                from: "carol".into(),
                file: "music/song.mp3".into(),
                size: 4_000_000,
                blake3: [1; 32],
            },
        ),
        (
            "file-request",
            ServerMsg::FileRequest {
                req: 42,
                from: "alice".into(),
                from_key: [7; 32],
                file: "docs/a.pdf".into(),
                offer: None,
                eph: [2; 32],
                sig: vec![3; 64],
                from_ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                candidates: vec![SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
                    5000,
                )],
            },
        ),
        (
            "observed",
            ServerMsg::Observed {
                token: [8; 16],
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)), 61_000),
            },
        ),
        (
            "file-offer",
            ServerMsg::FileOffer {
                from: "bob".into(),
                from_key: [9; 32],
                file: "docs/a.pdf".into(),
                addr: v6,
                offer: offer(),
                offered: Some(0x0123_4567_89ab_cdef),
            },
        ),
        (
            "transfer-refused",
            ServerMsg::TransferRefused {
                from: "bob".into(),
                file: "secret.txt".into(),
                reason: RefuseReason::Blocked,
                detail: "the server's policy forbids it".into(),
                offered: None,
            },
        ),
        (
            "room-renamed",
            ServerMsg::RoomRenamed {
                old: "Lobby".into(),
                new: "Lobby-2".into(),
                reason: "two networks merged".into(),
            },
        ),
    ]
}

/// The frame target: a byte of settings (limit, piece size), then a
/// stream.
fn frame_seeds(root: &Path) {
    let mut s = Seeds::new(root, "frame");
    // Settings: the client limit (limit index 0) or the server's (1), the
    // stream whole (piece index 0).
    for (name, m) in client_msgs() {
        s.add(
            &format!("client-{name}"),
            &[&[0x00][..], &frame(&m)].concat(),
        );
    }
    for (name, m) in server_msgs() {
        s.add(
            &format!("server-{name}"),
            &[&[0x08][..], &frame(&m)].concat(),
        );
    }
    let all: Vec<u8> = client_msgs().iter().flat_map(|(_, m)| frame(m)).collect();
    // The client's messages in one stream, in pieces of 3 bytes.
    s.add("stream-in-pieces", &[&[0x03][..], &all].concat());
    // A frame over a 64-byte limit after one under it.
    let say = client_msgs()
        .into_iter()
        .find(|(name, _)| *name == "say-user")
        .map(|(_, m)| frame(&m))
        .expect("a say-user message");
    s.add(
        "over-the-limit",
        &[&[0x28][..], &frame(&ClientMsg::Ping), &say].concat(),
    );
    // A header claiming 4 GiB.
    s.add("four-gib", &[0x00, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    s.done();
}

fn link_hello() -> LinkHello {
    LinkHello {
        version: 2,
        id: server_id_of(&signing(1).verifying_key().to_bytes()),
        name: "hub-1".into(),
        incarnation: 1_764_547_200_000,
        nonce: [5; 32],
    }
}

/// A server's key, `n` picking which.
fn signing(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn binding() -> NetBinding {
    let home = signing(2);
    let mut b = NetBinding {
        user: "alice".into(),
        key: [7; 32],
        bound_ms: 1_764_547_200_000,
        home: server_id_of(&home.verifying_key().to_bytes()),
        home_key: home.verifying_key().to_bytes(),
        sig: Vec::new(),
    };
    b.sig = home.sign(&b.signed_bytes()).to_bytes().to_vec();
    b
}

fn net_user() -> NetUser {
    NetUser {
        user: "alice".into(),
        key: [7; 32],
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        rooms: vec!["Lobby".into()],
        since_ms: 1_764_547_200_000,
    }
}

fn net_room() -> NetRoom {
    NetRoom {
        name: "vault".into(),
        id: "00112233445566778899aabbccddeeff".into(),
        creator: "alice".into(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        created_ms: 1_764_547_200_000,
    }
}

fn net_msgs() -> Vec<(&'static str, NetMsg)> {
    let user = || "alice".to_string();
    vec![
        (
            "sync",
            NetMsg::Sync {
                part: 0,
                last: true,
                users: vec![net_user()],
                rooms: vec![net_room()],
                bindings: vec![binding()],
            },
        ),
        ("online", NetMsg::Online(net_user())),
        (
            "offline",
            NetMsg::Offline {
                user: user(),
                reason: LeaveReason::Kicked,
            },
        ),
        (
            "enter",
            NetMsg::Enter {
                user: user(),
                room: "Lobby".into(),
            },
        ),
        (
            "leave",
            NetMsg::Leave {
                user: user(),
                room: "Lobby".into(),
                reason: LeaveReason::Left,
            },
        ),
        ("room", NetMsg::Room(net_room())),
        ("bind", NetMsg::Bind(binding())),
        (
            "say",
            NetMsg::Say {
                from: user(),
                room: None,
                to: Target::User("bob".into()),
                text: "psst".into(),
                ts: 1_764_547_200_000,
            },
        ),
        (
            "whohas",
            NetMsg::WhoHas {
                from: user(),
                room: "Lobby".into(),
                file: "music/song.mp3".into(),
            },
        ),
        (
            "havefile",
            NetMsg::HaveFile {
                from: "bob".into(),
                to: user(),
                file: "music/song.mp3".into(),
                size: 4_000_000,
                blake3: [1; 32],
            },
        ),
        (
            "getfile",
            NetMsg::GetFile {
                from: user(),
                from_key: [7; 32],
                owner: "bob".into(),
                file: "docs/a.pdf".into(),
                offer: None,
                eph: [2; 32],
                sig: vec![3; 64],
                candidates: Vec::new(),
            },
        ),
        (
            "offer-files",
            NetMsg::OfferFiles {
                from: user(),
                to: "bob".into(),
                offer: 7,
                files: offered_files(),
            },
        ),
        (
            "offer-answer",
            NetMsg::OfferAnswer {
                from: "bob".into(),
                to: user(),
                offer: 7,
                accept: true,
            },
        ),
        (
            "fileoffer",
            NetMsg::FileOffer {
                to: user(),
                from: "bob".into(),
                from_key: [9; 32],
                file: "docs/a.pdf".into(),
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), 40_000),
                offer: offer(),
                offered: Some(0x0123_4567_89ab_cdef),
            },
        ),
        (
            "refused",
            NetMsg::Refused {
                to: user(),
                from: "bob".into(),
                file: "docs/a.pdf".into(),
                reason: RefuseReason::NotFound,
                detail: "no such file".into(),
                offered: None,
            },
        ),
    ]
}

/// A folder's files, as an offer lists them.
fn offered_files() -> Vec<OfferedFile> {
    ["photos/a.jpg", "photos/2024/b.jpg"]
        .into_iter()
        .map(|name| OfferedFile {
            name: name.into(),
            size: 4_000,
            blake3: [5; 32],
        })
        .collect()
}

fn routed(body: RoutedBody) -> LinkMsg {
    LinkMsg::Routed(Box::new(Routed {
        src: link_hello().id,
        dst: [9; 16],
        ttl: 16,
        body,
    }))
}

fn link_msgs() -> Vec<(String, LinkMsg)> {
    let key = signing(1);
    let public = key.verifying_key().to_bytes();
    let mut lsa = Lsa {
        origin: server_id_of(&public),
        key: public,
        name: "hub-1".into(),
        incarnation: 1_764_547_200_000,
        seq: 7,
        neighbors: vec![([9; 16], 12), ([8; 16], 1)],
        sig: Vec::new(),
    };
    lsa.sig = key.sign(&lsa.signed_bytes()).to_bytes().to_vec();
    let (_, pake) = Spake2::<Ed25519Group>::start_symmetric_with_rng(
        &Password::new(b"another key"),
        &Identity::new(b"chatdrop link"),
        rand_chacha::ChaCha8Rng::seed_from_u64(1),
    );
    let mut msgs = vec![
        ("hello".to_string(), LinkMsg::Hello(link_hello())),
        (
            "proof".to_string(),
            LinkMsg::Proof {
                mac: [4; 32],
                key: public,
                sig: key.sign(b"a link transcript").to_bytes().to_vec(),
            },
        ),
        ("ping".to_string(), LinkMsg::Ping(1)),
        ("pong".to_string(), LinkMsg::Pong(1)),
        ("lsa".to_string(), LinkMsg::Lsa(lsa)),
        ("pake".to_string(), LinkMsg::Pake { msg: pake }),
        (
            "routed-ack".to_string(),
            routed(RoutedBody::Ack {
                src_inc: 1,
                dst_inc: 2,
                epoch: 3,
                seq: 4,
            }),
        ),
        (
            "routed-resync".to_string(),
            routed(RoutedBody::Resync { src_inc: 1 }),
        ),
    ];
    for (name, msg) in net_msgs() {
        let data = Data {
            src_inc: 1,
            dst_inc: 2,
            epoch: 3,
            seq: 4,
            id: 5,
            msg,
        };
        msgs.push((
            format!("routed-{name}"),
            routed(RoutedBody::Data(Box::new(data))),
        ));
    }
    msgs
}

/// The link target: a stream, the dialler's hello first.
fn link_seeds(root: &Path) {
    let mut s = Seeds::new(root, "link");
    let hello = frame(&ClientMsg::LinkHello(link_hello()));
    for (name, m) in link_msgs() {
        s.add(&name, &[&hello[..], &frame(&m)].concat());
    }
    let refusal = frame(&ServerMsg::error(
        ErrorCode::AuthFailed,
        "wrong network key",
    ));
    s.add("refused", &[&hello[..], &refusal].concat());
    s.done();
}

fn session_frames() -> Vec<(&'static str, Vec<u8>)> {
    let ack = Ack {
        cum: 7,
        ranges: vec![(9, 12), (u32::MAX, 2)],
        dropped: 3,
    };
    let frames = [
        (
            "start",
            Msg::Start {
                isn: u32::MAX - 3,
                from: 12_345,
                to: 1 << 40,
                token: [9; TOKEN_LEN],
            },
        ),
        (
            "challenge",
            Msg::Challenge {
                token: [7; TOKEN_LEN],
            },
        ),
        ("probe", Msg::Probe { size: 40 }),
        ("probe-ack", Msg::ProbeAck { size: 1_446 }),
        ("begin", Msg::Begin { mss: 1_446 }),
        ("punch", Msg::Punch),
        (
            "data",
            Msg::Arq(Frame::Data {
                seq: 77,
                payload: b"sixteen bytes!!!",
            }),
        ),
        ("ack", Msg::Arq(Frame::Ack(ack))),
        ("done", Msg::Arq(Frame::Done)),
        ("abort", Msg::Arq(Frame::Abort("the file changed"))),
    ];
    frames
        .into_iter()
        .map(|(name, m)| {
            let mut b = Vec::new();
            m.encode(&mut b);
            (name, b)
        })
        .collect()
}

/// The datagram target: sealed datagrams, opened frames, scripts.
fn datagram_seeds(root: &Path) {
    let mut s = Seeds::new(root, "datagram");
    for (name, plain) in session_frames() {
        s.add(&format!("plain-{name}"), &plain);
        // Each with fresh keys: packet number 0, which fresh keys open.
        let mut buf = vec![0u8; ENVELOPE_HEADER];
        buf.extend_from_slice(&plain);
        keys(Role::Sender).seal(&mut buf);
        s.add(&format!("sealed-{name}"), &buf);
    }
    // Scripts: operations 0 seal (length, frame), 1 skip (count), 2
    // deliver (index), 3 tamper (index, flip?, at, bit), 4 raw (length,
    // bytes).
    let seal = |sc: &mut Script, frame: &[u8]| {
        sc.byte(0).int(0..=24, frame.len() as u64).raw(frame);
    };
    let mut sc = Script::new();
    for f in [&b"\x03"[..], b"\x04late", b"\x02\0\0\0\x07\0\0\0\0\0"] {
        seal(&mut sc, f);
    }
    // Out of order, a copy, tampered and cut short, a forgery.
    for i in [2, 0, 0, 1, 2] {
        sc.byte(2).byte(i);
    }
    sc.byte(3).byte(1).flag(true).byte(9).int(0..=7, 3);
    sc.byte(3).byte(0).flag(false).byte(4).int(0..=7, 0);
    sc.byte(4)
        .int(0..=64, 22)
        .raw(&[6, 0, 0, 0, 3])
        .raw(&[0xaa; 17]);
    s.add("script-reorder-replay-tamper", sc.bytes());
    // Beyond the replay window: a datagram, 20,000 lost, one more, then
    // the first (too old) and a copy of the newest.
    let mut sc = Script::new();
    seal(&mut sc, b"\x03");
    for _ in 0..5 {
        sc.byte(1).int(1..=4_096, 4_000);
    }
    seal(&mut sc, b"\x04far");
    for i in [1, 0, 1] {
        sc.byte(2).byte(i);
    }
    s.add("script-beyond-the-window", sc.bytes());
    s.done();
}

/// Steps of the `arq` target's scripts.
mod arq {
    pub const SEND: u8 = 0;
    pub const DELIVER: u8 = 1;
    pub const ACK: u8 = 2;
    pub const DELIVER_ACK: u8 = 3;
    pub const DROP: u8 = 4;
    pub const WAIT: u8 = 6;
    pub const TIMER: u8 = 7;
    pub const FORGE_DATA: u8 = 8;
    pub const FORGE_ACK: u8 = 9;
}

/// An `arq` script's settings: Selective Repeat or Go-Back-N, window,
/// packet size, bytes `start..total`, first sequence number, and the
/// controller (the model, with or without the check against optimistic
/// acknowledgements, or CUBIC).
#[derive(Clone, Copy)]
struct ArqSettings {
    sr: bool,
    window: u64,
    mss: u64,
    total: u64,
    start: u64,
    isn: u32,
    /// `None`: CUBIC; `Some(check)`: the model.
    model: Option<bool>,
}

impl ArqSettings {
    fn script(self) -> Script {
        let mut sc = Script::new();
        sc.flag(self.sr)
            .int(1..=64, self.window)
            .int(1..=1_500, self.mss)
            .int(0..=self.mss * 300, self.total)
            .int(0..=self.total + self.mss, self.start)
            .u32(self.isn);
        match self.model {
            Some(check) => {
                sc.flag(true).flag(check);
                if check {
                    sc.raw(&[0x5a; 32]);
                }
            }
            None => {
                sc.flag(false);
            }
        }
        sc
    }
}

/// The arq target: settings, then steps; the rest of each transfer runs
/// on the perfect link the target ends with.
fn arq_seeds(root: &Path) {
    use arq::*;
    let mut s = Seeds::new(root, "arq");
    let sr = ArqSettings {
        sr: true,
        window: 16,
        mss: 1_000,
        total: 40_000,
        start: 0,
        isn: u32::MAX - 5,
        model: Some(true),
    };
    let gbn = ArqSettings {
        sr: false,
        window: 8,
        mss: 700,
        total: 20_000,
        start: 1_500,
        isn: 17,
        model: None,
    };
    // Delivering the packet at index `i` of those on the way.
    let deliver = |sc: &mut Script, i: u8| {
        sc.byte(DELIVER).byte(i).byte(1);
    };
    let ack = |sc: &mut Script| {
        sc.byte(ACK).byte(DELIVER_ACK).byte(0).byte(1);
    };
    for (name, settings) in [("sr-clean", sr), ("gbn-clean", gbn)] {
        let mut sc = settings.script();
        for _ in 0..4 {
            sc.byte(SEND);
            for _ in 0..8 {
                deliver(&mut sc, 0);
            }
            ack(&mut sc);
        }
        s.add(name, sc.bytes());
    }
    for (name, settings) in [("sr-lossy", sr), ("gbn-lossy", gbn)] {
        let mut sc = settings.script();
        for round in 0..6u8 {
            sc.byte(SEND);
            // The second of those on the way lost; the rest arrive out
            // of order, one twice.
            sc.byte(DROP).byte(1);
            sc.byte(DELIVER).byte(round % 3).byte(0);
            for i in [2, 0, 1, 0, 0] {
                deliver(&mut sc, i);
            }
            ack(&mut sc);
            sc.byte(WAIT).int(0..=3_000, 120);
            sc.byte(TIMER);
        }
        s.add(name, sc.bytes());
    }
    // Timeouts: nothing comes back for long.
    let mut sc = sr.script();
    sc.byte(SEND);
    for _ in 0..5 {
        sc.byte(WAIT).int(0..=3_000, 2_500).byte(TIMER).byte(SEND);
    }
    s.add("sr-silence", sc.bytes());
    // A range resumed at its end, and an empty one.
    for (name, start, total) in [("resumed-at-end", 9_000, 9_000), ("empty", 0, 0)] {
        let mut sc = ArqSettings { start, total, ..sr }.script();
        sc.byte(SEND).byte(DELIVER).byte(0).byte(1);
        s.add(name, sc.bytes());
    }
    // A receiver that acknowledges everything up to a guess.
    let mut sc = sr.script();
    sc.byte(SEND).byte(FORGE_ACK);
    // `cum`: near (byte 1: not one in 8), 30 packets in; no ranges.
    sc.byte(1).int(0..=42, 30).int(0..=128, 0).u32(0);
    s.add("optimistic-ack", sc.bytes());
    // Forged data: a packet of the range, of its length; then any.
    let mut sc = gbn.script();
    sc.byte(FORGE_DATA).flag(true).int(0..=29, 0).flag(true);
    sc.byte(FORGE_DATA)
        .flag(false)
        .u32(12_345)
        .flag(false)
        .int(0..=1_400, 9);
    s.add("forged-data", sc.bytes());
    s.done();
}

/// Steps of the `session` target's scripts.
mod session {
    pub const TX_POLLS: u8 = 0;
    pub const RX_POLLS: u8 = 1;
    pub const TO_RX: u8 = 2;
    pub const TO_TX: u8 = 3;
    pub const DROP_TO_RX: u8 = 4;
    pub const WAIT: u8 = 6;
    pub const TIMER: u8 = 7;
    pub const FORGE_TO_RX: u8 = 8;
    pub const FORGE_TO_TX: u8 = 9;
    pub const TOO_BIG: u8 = 10;
}

/// A `session` script's settings.
#[derive(Clone, Copy)]
struct SessionSettings {
    sr: bool,
    window: u64,
    /// The cap on the packet size: an index into the target's list
    /// (`MAX_MSS`, 9,000, 1,446, 1,200, 500) or a size.
    cap: Result<u8, u64>,
    size: u64,
    resume_from: u64,
    isn: u32,
    wait_ms: Option<u64>,
    chat_mode: bool,
}

impl SessionSettings {
    fn script(self) -> Script {
        const CAPS: [u64; 5] = [MAX_MSS as u64, 9_000, 1_446, 1_200, 500];
        let mut sc = Script::new();
        sc.flag(self.sr).int(1..=64, self.window);
        let cap = match self.cap {
            Ok(i) => {
                sc.flag(true).byte(i);
                CAPS[usize::from(i)]
            }
            Err(cap) => {
                sc.flag(false).int(1..=u64::from(MAX_MSS), cap);
                cap
            }
        };
        sc.int(0..=100 * cap.min(1_200), self.size)
            .int(0..=self.size + 10, self.resume_from)
            .u32(self.isn);
        match self.wait_ms {
            Some(ms) => sc.flag(true).int(0..=30_000, ms),
            None => sc.flag(false),
        };
        sc.flag(self.chat_mode).raw(&[0x33; 32]);
        sc
    }
}

/// The session target: settings, then steps; the rest of each transfer
/// runs on the perfect link the target ends with.
fn session_seeds(root: &Path) {
    use session::*;
    let mut s = Seeds::new(root, "session");
    let base = SessionSettings {
        sr: true,
        window: 32,
        cap: Ok(2),
        size: 50_000,
        resume_from: 0,
        isn: u32::MAX - 10,
        wait_ms: Some(5_000),
        chat_mode: true,
    };
    // Frame `i` of those on the way to the receiver, from the sender, and
    // to the sender, from the receiver.
    let to_rx = |sc: &mut Script, i: u8| {
        sc.byte(TO_RX).byte(i).byte(1).byte(1);
    };
    let to_tx = |sc: &mut Script, i: u8| {
        sc.byte(TO_TX).byte(i).byte(1).byte(1);
    };
    // The opening: `Start`, `Challenge`, `Start` with the token, one
    // probe and its answer.
    let opening = |sc: &mut Script| {
        sc.byte(RX_POLLS);
        to_tx(sc, 0);
        sc.byte(TX_POLLS);
        to_rx(sc, 0);
        sc.byte(RX_POLLS);
        to_tx(sc, 0);
        sc.byte(TX_POLLS);
        to_rx(sc, 0);
        sc.byte(RX_POLLS);
        to_tx(sc, 0);
    };
    let data_rounds = |sc: &mut Script, rounds: usize, lossy: bool| {
        for _ in 0..rounds {
            sc.byte(TX_POLLS);
            if lossy {
                sc.byte(DROP_TO_RX).byte(2);
            }
            for _ in 0..6 {
                to_rx(sc, 0);
            }
            sc.byte(RX_POLLS);
            to_tx(sc, 0);
            if lossy {
                sc.byte(WAIT).int(0..=3_000, 200).byte(TIMER);
            }
        }
    };
    let variants = [
        ("clean", base, false),
        ("lossy", base, true),
        (
            "gbn-direct-mode",
            SessionSettings {
                sr: false,
                cap: Ok(3),
                wait_ms: None,
                chat_mode: false,
                ..base
            },
            true,
        ),
        (
            "resumed",
            SessionSettings {
                resume_from: 20_001,
                ..base
            },
            false,
        ),
        (
            "resumed-at-end",
            SessionSettings {
                resume_from: 50_000,
                ..base
            },
            false,
        ),
        ("empty", SessionSettings { size: 0, ..base }, false),
        (
            "small-cap",
            SessionSettings {
                cap: Err(700),
                size: 30_000,
                ..base
            },
            false,
        ),
    ];
    for (name, settings, lossy) in variants {
        let mut sc = settings.script();
        opening(&mut sc);
        data_rounds(&mut sc, 4, lossy);
        s.add(name, sc.bytes());
    }
    // The host refuses the 64 KiB probe, the jumbo one is lost three times.
    let mut sc = SessionSettings { cap: Ok(0), ..base }.script();
    sc.byte(RX_POLLS);
    to_tx(&mut sc, 0);
    sc.byte(TX_POLLS);
    to_rx(&mut sc, 0);
    sc.byte(RX_POLLS);
    to_tx(&mut sc, 0);
    sc.byte(TX_POLLS).byte(TOO_BIG).flag(false).byte(1);
    for _ in 0..3 {
        sc.byte(TX_POLLS).byte(DROP_TO_RX).byte(0).byte(TIMER);
    }
    s.add("probes-refused-and-lost", sc.bytes());
    // The receiver starts from its IPv6-mapped address (index 1).
    let mut sc = base.script();
    sc.byte(RX_POLLS)
        .byte(TO_TX)
        .byte(0)
        .byte(1)
        .byte(0)
        .byte(1);
    sc.byte(TX_POLLS);
    to_rx(&mut sc, 0);
    s.add("mapped-address", sc.bytes());
    // A forged `Abort` to each end, and forged data.
    let mut abort = Vec::new();
    Msg::Arq(Frame::Abort("no")).encode(&mut abort);
    let mut sc = base.script();
    opening(&mut sc);
    data_rounds(&mut sc, 1, false);
    sc.byte(FORGE_TO_RX)
        .int(0..=64, 9)
        .raw(&[1, 0xff, 0xff, 0xff, 0xf6, 1, 2, 3, 4])
        .byte(0);
    sc.byte(FORGE_TO_TX)
        .int(0..=64, abort.len() as u64)
        .raw(&abort)
        .byte(0);
    s.add("forged", sc.bytes());
    // Time passes with nothing delivered: each end gives up.
    let mut sc = base.script();
    for _ in 0..6 {
        sc.byte(RX_POLLS)
            .byte(WAIT)
            .int(0..=3_000, 2_999)
            .byte(TIMER);
    }
    s.add("silence", sc.bytes());
    s.done();
}

fn command_seeds(root: &Path) {
    let mut s = Seeds::new(root, "command");
    let lines = [
        ("say-user", "@bob hi there"),
        ("say-all", "@all hello!"),
        ("say-server", "@server hi admin"),
        ("get-rooms", "@server get_rooms"),
        ("get-peers", "@server get_peers"),
        ("exit", "@server exit"),
        ("whohas", "@all whohas my song.mp3"),
        ("getfile", "@bob getfile docs/a.pdf"),
        ("setshare", "@me setshare a.txt"),
        ("clrshare", "@me clrshare a.txt"),
        ("setglobalshare", "@me setglobalshare"),
        ("clrglobalshare", "@me clrglobalshare"),
        ("getsharestatus", "@me getsharestatus"),
        ("setshare-no-file", "@me setshare"),
        ("create", "/create lobby"),
        ("create-private", "/create vault  s3cret pass "),
        ("join", "/join whatsapp 1234"),
        ("join-no-room", "/join"),
        ("leave", "/leave"),
        ("rooms", "/rooms"),
        ("rooms-more", "/rooms more"),
        ("get-rooms-more", "@server get_rooms more"),
        ("peers", "/peers"),
        ("help", "/help"),
        ("quit", "/quit"),
        ("unknown", "/dance"),
        ("not-a-command", "hello"),
        ("blank", " \t "),
        ("bare-at", "@ hi"),
        ("no-message", "@bob"),
        (
            "unicode",
            "@\u{e9}lodie \u{e7}a va\u{2009}? \u{6771}\u{4eac}",
        ),
        ("hidden", "@bob look \u{202e}txt.exe\u{200b}"),
    ];
    for (name, line) in lines {
        s.add(name, line.as_bytes());
    }
    s.done();
}

fn ticket_seeds(root: &Path) {
    let mut s = Seeds::new(root, "ticket");
    let t = Ticket {
        addr: "192.0.2.7:40000".parse().expect("an address"),
        session: [1; 8],
        secret: [2; 32],
        name: "report.pdf".into(),
        size: 1_234_567,
        blake3: [3; 32],
        selective_repeat: true,
        window: 16_384,
        mss: 1_200,
    };
    let v6 = Ticket {
        addr: "[2001:db8::1]:40000".parse().expect("an address"),
        name: "\u{6771}\u{4eac}.tar".into(),
        selective_repeat: false,
        window: 1,
        mss: MAX_MSS,
        ..t.clone()
    };
    for (name, ticket) in [("v4", &t), ("v6", &v6)] {
        let text = ticket.encode();
        s.add(&format!("text-{name}"), text.as_bytes());
        // The bytes behind the prefix: the target prints them as hex.
        let bytes = hex::decode(&text["chatdrop1-".len()..]).expect("hex");
        s.add(&format!("bytes-{name}"), &bytes);
    }
    let text = t.encode();
    s.add("text-spaced", format!("  {text}\n").as_bytes());
    s.add("text-cut", &text.as_bytes()[..text.len() - 10]);
    s.add("text-not-hex", b"chatdrop1-zz");
    s.done();
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    frame_seeds(&root);
    link_seeds(&root);
    datagram_seeds(&root);
    arq_seeds(&root);
    session_seeds(&root);
    command_seeds(&root);
    ticket_seeds(&root);
    config_seeds(&root);
}

/// Configuration files: the documented example, each table alone, and
/// values an operator gets wrong.
fn config_seeds(root: &Path) {
    let mut s = Seeds::new(root, "config");
    let full = r#"listen = "0.0.0.0:7777"
data_dir = "/var/lib/chatdrop"
max_clients = 20000
workers = 2
history = 100
max_rooms = 10000
max_rooms_per_user = 20
max_room_members = 5000
name = "hub-1"
links = ["hub-2.example.org:7777"]
network_key = "a long random secret"

[share_policy]
block_ext = ["exe", "scr"]
block_name = ["*.key"]

[limits]
enabled = true
frames = { per_second = 50, burst = 200 }
say = { per_second = 10, burst = 40 }
strikes = 20
strike_recovery_secs = 5
connections_per_ip = 32
logins_per_ip = 8
new_names_per_hour = 60
empty_room_expiry_secs = 86400
unused_name_expiry_secs = 2592000
"#;
    s.add("full", full.as_bytes());
    s.add(
        "limits-only",
        b"[limits]\nsay = { per_second = 0.5, burst = 2 }\n",
    );
    s.add("unknown-key", b"listn = \"0.0.0.0:7777\"\n");
    s.add(
        "bad-rate",
        b"[limits]\nsay = { per_second = -1, burst = 0 }\n",
    );
    s.add("bad-type", b"max_rooms = \"many\"\n");
    s.add("empty", b"");
    s.done();
}
