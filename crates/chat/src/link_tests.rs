//! A linked server that sends what no client here could: names, text and
//! file names that break the rules. The chat core drops such a message
//! whole and says so on the console; nothing of it reaches a member.

use std::net::{IpAddr, Ipv4Addr};

use chatdrop_proto::link::{NetMsg, NetRoom, NetUser, ServerId};
use chatdrop_proto::{ClientMsg, ServerMsg, Target};

use crate::{Chat, ConnId, Effect, Event, Settings, Snapshot};

const BOB: ConnId = ConnId(1);
/// The other server.
const THEM: ServerId = [9; 16];

/// A chat core with bob in room `r` (id `r1`), and what its last event
/// produced.
struct Here {
    chat: Chat,
    out: Vec<Effect>,
}

impl Here {
    fn new() -> Here {
        let mut here = Here {
            chat: Chat::new(Settings::default(), Snapshot::default()),
            out: Vec::new(),
        };
        here.ev(Event::Login {
            conn: BOB,
            user: "bob".into(),
            public_key: [1; 32],
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        });
        here.ev(Event::CreateRoom {
            conn: BOB,
            room: "r".into(),
            password_hash: None,
            room_id: "r1".into(),
        });
        here
    }

    fn ev(&mut self, event: Event) {
        self.out.clear();
        self.chat.handle(1_000_000, event, &mut self.out);
    }

    /// `msg` as the network layer delivers it from the other server.
    fn hear(&mut self, msg: NetMsg) {
        self.out.clear();
        self.chat.net_msg(1_000_000, THEM, msg, &mut self.out);
    }

    /// What bob was sent by the last event.
    fn to_bob(&self) -> Vec<&ServerMsg> {
        self.out
            .iter()
            .flat_map(|e| match e {
                Effect::Send { to, msg } if *to == BOB => vec![msg],
                Effect::Broadcast { to, msg } if to.contains(&BOB) => vec![msg],
                _ => vec![],
            })
            .collect()
    }

    /// Whether the last event was dropped with a console notice.
    fn dropped(&self) -> bool {
        self.out
            .iter()
            .any(|e| matches!(e, Effect::Console(l) if l.contains("dropped a message")))
    }

    fn room_names(&mut self) -> Vec<String> {
        self.ev(Event::Request {
            conn: BOB,
            msg: ClientMsg::ListRooms,
        });
        match self.to_bob().first() {
            Some(ServerMsg::Rooms { rooms }) => rooms.iter().map(|r| r.name.clone()).collect(),
            other => panic!("no room list: {other:?}"),
        }
    }
}

fn online(user: &str) -> NetMsg {
    NetMsg::Online(NetUser {
        user: user.into(),
        key: [7; 32],
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        room: Some("r1".into()),
        since_ms: 1,
    })
}

fn say(text: &str) -> NetMsg {
    NetMsg::Say {
        from: "eve".into(),
        room: "r1".into(),
        to: Target::All,
        text: text.into(),
        ts: 2,
    }
}

fn room(name: &str, id: &str) -> NetRoom {
    NetRoom {
        name: name.into(),
        id: id.into(),
        creator: "eve".into(),
        password_hash: None,
        created_ms: 1,
    }
}

/// Each was seen reaching bob (or the room list) with the checks of
/// `link_checks::check` switched off.
#[test]
fn a_linked_server_cannot_send_what_a_client_could_not() {
    let mut here = Here::new();
    // What follows the rules gets through: the checks are not a wall.
    here.hear(online("eve"));
    assert!(matches!(here.to_bob()[..], [ServerMsg::PeerJoined { user, .. }] if user == "eve"));
    here.hear(say("hello"));
    assert!(matches!(here.to_bob()[..], [ServerMsg::Message(l)] if l.text == "hello"));

    // A name with an escape sequence (it would clear bob's screen).
    here.hear(online("ev\u{1b}[2Je"));
    assert!(here.to_bob().is_empty() && here.dropped());
    // Text with a terminal title escape, or a forged second line.
    for text in ["\u{1b}]0;pwned\u{7}", "hi\nserver: you were banned"] {
        here.hear(say(text));
        assert!(here.to_bob().is_empty() && here.dropped(), "{text:?}");
    }
    // A file name with a bell, in an answer to bob.
    here.hear(NetMsg::HaveFile {
        from: "eve".into(),
        to: "bob".into(),
        file: "a\u{7}.txt".into(),
        size: 1,
        blake3: [0; 32],
    });
    assert!(here.to_bob().is_empty() && here.dropped());
    // Rooms named against the rules, alone or inside a Sync.
    here.hear(NetMsg::Room(room("bad\u{1b}name", "r2")));
    assert!(here.dropped());
    here.hear(NetMsg::Sync {
        users: vec![],
        rooms: vec![room("fine", "r3"), room("", "r4")],
        bindings: vec![],
    });
    assert!(here.dropped());
    assert_eq!(here.room_names(), ["r"], "no room of theirs was taken");
}

/// A file name with a right-to-left override (`invoice\u{202E}fdp.exe`
/// shows as `invoiceexe.pdf`) from a link is dropped like one from a
/// client. (Seen reaching bob without the check.)
#[test]
fn a_linked_server_cannot_pass_on_a_file_name_that_shows_reversed() {
    let mut here = Here::new();
    here.hear(online("eve"));
    let bidi = "invoice\u{202E}fdp.exe";
    here.hear(NetMsg::WhoHas {
        from: "eve".into(),
        room: "r1".into(),
        file: bidi.into(),
    });
    assert!(here.to_bob().is_empty() && here.dropped());
    here.hear(NetMsg::HaveFile {
        from: "eve".into(),
        to: "bob".into(),
        file: bidi.into(),
        size: 1,
        blake3: [0; 32],
    });
    assert!(here.to_bob().is_empty() && here.dropped());
}

/// A room from another server named like ours in another case is the same
/// name: the clash rule settles it (theirs is older, so ours is renamed)
/// instead of leaving `R` and `r` side by side. (Seen side by side without
/// the name key.)
#[test]
fn a_room_named_like_ours_in_another_case_is_a_clash() {
    let mut here = Here::new();
    here.hear(NetMsg::Room(room("R", "r7")));
    assert!(!here.dropped());
    assert!(here.to_bob().iter().any(
        |m| matches!(m, ServerMsg::RoomRenamed { old, new, .. } if old == "r" && new == "r-r1")
    ));
    assert_eq!(here.room_names(), ["R", "r-r1"]);
}
