//! A linked server that sends what no client here could: names, text and
//! file names that break the rules. The chat core drops such a message
//! whole and says so on the console; nothing of it reaches a member.

use std::net::{IpAddr, Ipv4Addr};

use chatdrop_proto::link::{NetBinding, NetMsg, NetRoom, NetUser, ServerId};
use chatdrop_proto::{ClientMsg, ErrorCode, ServerMsg, Target};

use crate::{Chat, ConnId, Effect, Event, Settings, Snapshot};

const BOB: ConnId = ConnId(1);
/// The other server.
const THEM: ServerId = [9; 16];
/// When bob logs in and makes his room: 2026-01-01 in ms since the epoch.
const T0: u64 = 1_767_225_600_000;
const MINUTE: u64 = 60_000;

/// A chat core with bob in room `r` (id `r1`), the time by its clock, and
/// what its last event produced.
struct Here {
    chat: Chat,
    now: u64,
    out: Vec<Effect>,
}

impl Here {
    fn new() -> Here {
        let mut here = Here {
            chat: Chat::new(Settings::default(), Snapshot::default()),
            now: T0,
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
            password: None,
            room_id: "r1".into(),
        });
        here
    }

    fn ev(&mut self, event: Event) {
        self.out.clear();
        self.chat.handle(self.now, event, &mut self.out);
    }

    /// `msg` as the network layer delivers it from the other server.
    fn hear(&mut self, msg: NetMsg) {
        self.out.clear();
        self.chat.net_msg(self.now, THEM, msg, &mut self.out);
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

    /// Whether the last event closed bob's connection.
    fn bob_closed(&self) -> bool {
        self.out
            .iter()
            .any(|e| matches!(e, Effect::Close { conn, .. } if *conn == BOB))
    }

    /// Whether a new login of `user` with `key` would be refused as taken.
    fn taken(&mut self, user: &str, key: [u8; 32]) -> bool {
        let conn = ConnId(99);
        self.ev(Event::Login {
            conn,
            user: user.into(),
            public_key: key,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        });
        let taken = self.out.iter().any(|e| {
            matches!(e, Effect::Close { conn: c, last: Some(ServerMsg::Error { code, .. }) }
                if *c == conn && *code == ErrorCode::NameTaken)
        });
        self.ev(Event::Disconnected { conn });
        taken
    }

    /// Whether the last event told the console something containing `what`.
    fn noted(&self, what: &str) -> bool {
        self.out
            .iter()
            .any(|e| matches!(e, Effect::Console(l) if l.contains(what)))
    }

    /// Whether the last event was dropped with a console notice.
    fn dropped(&self) -> bool {
        self.out
            .iter()
            .any(|e| matches!(e, Effect::Console(l) if l.contains("dropped")))
    }

    fn room_names(&mut self) -> Vec<String> {
        self.ev(Event::Request {
            conn: BOB,
            msg: ClientMsg::ListRooms { after: None },
        });
        match self.to_bob().first() {
            Some(ServerMsg::Rooms { rooms, .. }) => rooms.iter().map(|r| r.name.clone()).collect(),
            other => panic!("no room list: {other:?}"),
        }
    }
}

fn online(user: &str) -> NetMsg {
    NetMsg::Online(NetUser {
        user: user.into(),
        key: [7; 32],
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rooms: vec!["r1".into()],
        since_ms: T0 + 1,
    })
}

fn say(text: &str) -> NetMsg {
    NetMsg::Say {
        from: "eve".into(),
        room: Some("r1".into()),
        to: Target::All,
        text: text.into(),
        ts: T0 + 2,
    }
}

/// The other server's own key (its records are vouched for with it).
fn them() -> crate::Identity {
    crate::Identity::new(&[9; 32], "them".into(), 1)
}

/// A binding of `user` to the key `[7; 32]`, dated `bound_ms`, vouched for
/// by the other server as its home.
fn bind(user: &str, bound_ms: u64) -> NetBinding {
    let key = [7; 32];
    let vouch = them().vouch(user, &key, bound_ms);
    NetBinding {
        user: user.into(),
        key,
        bound_ms,
        home: vouch.home,
        home_key: vouch.home_key,
        sig: vouch.sig.to_vec(),
    }
}

fn room(name: &str, id: &str) -> NetRoom {
    NetRoom {
        name: name.into(),
        id: id.into(),
        creator: "eve".into(),
        password_hash: None,
        created_ms: T0 + 1,
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
        part: 0,
        last: true,
        users: vec![],
        rooms: vec![room("fine", "r3"), room("", "r4")],
        bindings: vec![],
    });
    assert!(here.dropped());
    // A bad record in a state costs only itself: the good room is taken.
    assert_eq!(here.room_names(), ["fine", "r"], "only the good room");
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

/// A relay's address a linked server passes on must be one a client can
/// send to: none of nowhere (0.0.0.0), everyone (broadcast, multicast)
/// or port 0. Such a `Relay` is dropped with a notice before anything
/// looks at it. (Seen accepted with the check left out.)
#[test]
fn a_linked_server_cannot_aim_a_relay_at_no_address_or_at_everyone() {
    let mut here = Here::new();
    here.hear(online("eve"));
    here.to_bob();
    for at in [
        "0.0.0.0:7000",
        "[::]:7000",
        "255.255.255.255:7000",
        "224.0.0.1:7000",
        "[ff02::1]:7000",
        "198.51.100.7:0",
    ] {
        here.hear(NetMsg::Relay {
            session: [6; 8],
            user: "bob".into(),
            other: "eve".into(),
            token: [1; 16],
            at: at.parse().unwrap(),
        });
        assert!(here.dropped(), "{at} taken");
    }
    assert!(here.to_bob().is_empty());
}

/// A binding dated 0 is the earliest there can be: taken, it would win
/// bob's name everywhere and close his connection. It is dropped.
/// (Seen closing bob without the check.)
#[test]
fn a_binding_dated_0_takes_no_name() {
    let mut here = Here::new();
    here.hear(NetMsg::Bind(bind("bob", 0)));
    assert!(here.dropped() && !here.bob_closed());
    here.hear(NetMsg::Sync {
        part: 0,
        last: true,
        users: vec![],
        rooms: vec![],
        bindings: vec![bind("bob", 0)],
    });
    assert!(here.dropped() && !here.bob_closed());
    assert!(
        here.taken("bob", [7; 32]),
        "bob's name is still bob's key's"
    );
}

/// A room dated 0 would be older than every room and take its name: `r`
/// would be renamed. It is dropped. (Seen renaming `r` without the check.)
#[test]
fn a_room_dated_0_renames_no_room() {
    let mut here = Here::new();
    let mut old = room("r", "r0");
    old.created_ms = 0;
    here.hear(NetMsg::Room(old));
    assert!(here.dropped());
    assert!(!here
        .to_bob()
        .iter()
        .any(|m| matches!(m, ServerMsg::RoomRenamed { .. })));
    assert_eq!(here.room_names(), ["r"]);
}

/// Times ahead of our clock by more than clocks drift apart are refused:
/// a login from the future would always be "the later login", a binding or
/// room from the future is no record of anything. (Seen taken without the
/// check.)
#[test]
fn a_record_from_the_future_is_refused() {
    let mut here = Here::new();
    let later = here.now + 10 * MINUTE;
    here.hear(NetMsg::Bind(bind("carol", later)));
    assert!(here.dropped());
    let mut future = room("soon", "r5");
    future.created_ms = later;
    here.hear(NetMsg::Room(future));
    assert!(here.dropped());
    let NetMsg::Online(mut eve) = online("eve") else {
        unreachable!()
    };
    eve.since_ms = later;
    here.hear(NetMsg::Online(eve));
    assert!(here.dropped() && here.to_bob().is_empty());
    assert_eq!(here.room_names(), ["r"]);
    assert!(!here.taken("carol", [8; 32]), "carol is free");
    // A chat line dated in the future (or at 0) would show a false time
    // beside it and in the room's history.
    for ts in [later, 0] {
        let NetMsg::Say {
            from,
            room,
            to,
            text,
            ..
        } = say("hello")
        else {
            unreachable!()
        };
        here.hear(NetMsg::Say {
            from,
            room,
            to,
            text,
            ts,
        });
        assert!(here.dropped() && here.to_bob().is_empty(), "dated {ts}");
    }
    // A clock a little ahead is a clock, not a lie.
    here.hear(NetMsg::Bind(bind("dave", here.now + MINUTE)));
    assert!(!here.dropped());
}

/// The honest merge still works: a server never in contact with us (the
/// other side of a split) bound bob's name and made room `r` before bob did
/// here; its binding and room win, bob is told why, his room is renamed.
#[test]
fn an_earlier_binding_from_the_other_side_of_a_split_still_wins() {
    let mut here = Here::new();
    here.now += MINUTE;
    let mut theirs = room("r", "r0");
    theirs.created_ms = T0 - 10 * MINUTE;
    here.hear(NetMsg::Sync {
        part: 0,
        last: true,
        users: vec![],
        rooms: vec![theirs],
        bindings: vec![bind("bob", T0 - 10 * MINUTE)],
    });
    assert!(!here.dropped());
    assert!(here.to_bob().iter().any(
        |m| matches!(m, ServerMsg::RoomRenamed { old, new, .. } if old == "r" && new == "r-r1")
    ));
    assert!(here.out.iter().any(|e| matches!(e,
        Effect::Close { conn, last: Some(ServerMsg::Error { code: ErrorCode::NameTaken, message }) }
            if *conn == BOB && message.contains("bound earlier"))));
}

/// A server in contact with us when bob bound his name and made his room
/// would have told us of an earlier binding or room then: one it shows us
/// later, dated back, does not take bob's name nor rename his room (its
/// room gets the clash name instead). (Seen closing bob and renaming `r`
/// without the rule.)
#[test]
fn a_server_in_contact_cannot_date_a_claim_back() {
    let mut here = Here::new();
    here.hear(NetMsg::Sync {
        part: 0,
        last: true,
        users: vec![],
        rooms: vec![],
        bindings: vec![],
    });
    here.now += 30 * MINUTE;
    // On its own, dated before bob's binding.
    here.hear(NetMsg::Bind(bind("bob", T0 - MINUTE)));
    assert!(!here.dropped() && !here.bob_closed());
    assert!(here.noted("kept user name bob"));
    // In a new Sync (it says it restarted), the same, and a room named
    // like bob's (in another case) dated back.
    let mut theirs = room("R", "r7");
    theirs.created_ms = T0 - MINUTE;
    here.hear(NetMsg::Sync {
        part: 0,
        last: true,
        users: vec![],
        rooms: vec![theirs],
        bindings: vec![bind("bob", T0 - MINUTE)],
    });
    assert!(!here.bob_closed());
    assert!(here.noted("room r keeps its name"));
    assert!(
        here.taken("bob", [7; 32]),
        "bob's name is still bob's key's"
    );
    assert_eq!(here.room_names(), ["R-r7", "r"]);
}

/// A room from another server named like ours in another case is the same
/// name: the clash rule settles it (theirs is older, so ours is renamed)
/// instead of leaving `R` and `r` side by side. (Seen side by side without
/// the name key.)
#[test]
fn a_room_named_like_ours_in_another_case_is_a_clash() {
    let mut here = Here::new();
    let mut theirs = room("R", "r7");
    theirs.created_ms = T0 - MINUTE;
    here.hear(NetMsg::Room(theirs));
    assert!(!here.dropped());
    assert!(here.to_bob().iter().any(
        |m| matches!(m, ServerMsg::RoomRenamed { old, new, .. } if old == "r" && new == "r-r1")
    ));
    assert_eq!(here.room_names(), ["R", "r-r1"]);
}

/// A binding must be vouched for by the server it names as its home: one
/// claiming another server as home (that server's id with this one's key,
/// or that server's key with this one's signature) or with no signature is
/// dropped, and takes no name. (Seen taking carol's name without the check.)
#[test]
fn a_binding_not_vouched_for_by_its_home_server_is_dropped() {
    let other = crate::Identity::new(&[5; 32], "other".into(), 1);
    let mut here = Here::new();
    let t = here.now;
    let mut forgeries = Vec::new();
    // The other server's id, this server's key and signature.
    let mut b = bind("carol", t);
    b.home = other.id();
    forgeries.push(b);
    // The other server's id and key, this server's signature.
    let mut b = bind("carol", t);
    b.home = other.id();
    b.home_key = other.public_key();
    forgeries.push(b);
    // No signature.
    let mut b = bind("carol", t);
    b.sig.clear();
    forgeries.push(b);
    // Signed for another date.
    let mut b = bind("carol", t);
    b.sig = bind("carol", t - 1).sig;
    forgeries.push(b);
    for forged in forgeries {
        here.hear(NetMsg::Bind(forged.clone()));
        assert!(here.dropped(), "{forged:?} taken");
    }
    assert!(!here.taken("carol", [1; 32]), "carol's name is free");
    // Vouched for by its home, it is taken.
    here.hear(NetMsg::Bind(bind("dave", t)));
    assert!(!here.dropped());
    assert!(here.taken("dave", [1; 32]));
}

/// Another server's state in parts: the users each part lists arrive as it
/// comes, and only once the last part is in are the users it did not list
/// gone (a user listed in a later part is not dropped and joined again).
#[test]
fn a_state_in_parts_replaces_the_users_only_when_complete() {
    let mut here = Here::new();
    here.hear(online("old"));
    here.hear(online("zed"));
    let user = |name: &str| match online(name) {
        NetMsg::Online(u) => u,
        _ => unreachable!(),
    };
    let part = |part: u32, last: bool, users: Vec<NetUser>| NetMsg::Sync {
        part,
        last,
        users,
        rooms: vec![],
        bindings: vec![],
    };
    here.hear(part(0, false, vec![user("eve")]));
    assert!(
        matches!(here.to_bob()[..], [ServerMsg::PeerJoined { user, .. }] if user == "eve"),
        "{:?}",
        here.to_bob()
    );
    assert!(!here.noted("in sync"));
    here.hear(part(1, true, vec![user("zed")]));
    let left: Vec<&str> = here
        .to_bob()
        .iter()
        .filter_map(|m| match m {
            ServerMsg::PeerLeft { user, .. } => Some(user.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(left, ["old"], "only the user no part listed");
    assert!(here.noted("in sync with server"));
}

/// A user of another server listed before its name's binding came (or
/// where the binding expired here only) keeps its key until the binding
/// comes; then a binding to another key takes the name and the user is
/// gone from the room here, and one to its own key keeps it. (Seen kept,
/// with the losing key, before users were checked against bindings.)
#[test]
fn a_user_of_another_server_under_another_key_s_binding_is_gone() {
    let mut here = Here::new();
    here.hear(online("carol"));
    here.hear(online("eve"));
    let left = |here: &Here| -> Vec<String> {
        here.to_bob()
            .iter()
            .filter_map(|m| match m {
                ServerMsg::PeerLeft { user, .. } => Some(user.clone()),
                _ => None,
            })
            .collect()
    };
    // carol's binding is to the key she came with: she stays.
    here.hear(NetMsg::Bind(bind("carol", T0)));
    assert!(!here.dropped());
    assert_eq!(left(&here), Vec::<String>::new());
    // eve's is to another key: she goes.
    let mut other = bind("eve", T0);
    let vouch = them().vouch("eve", &[8; 32], T0);
    (other.key, other.sig) = ([8; 32], vouch.sig.to_vec());
    here.hear(NetMsg::Bind(other));
    assert!(!here.dropped());
    assert_eq!(left(&here), ["eve"]);
    // carol is still online (bob's line to her is echoed to him), eve
    // is not (refused).
    let to = |here: &mut Here, user: &str| {
        here.ev(Event::Request {
            conn: BOB,
            msg: ClientMsg::Say {
                to: Target::User(user.into()),
                room: None,
                text: "hi".into(),
            },
        });
        here.to_bob()
            .into_iter()
            .cloned()
            .collect::<Vec<ServerMsg>>()
    };
    let echoed = to(&mut here, "carol");
    assert!(
        matches!(&echoed[..], [ServerMsg::Message(l)] if l.to == Target::User("carol".into())),
        "{echoed:?}"
    );
    let refused = to(&mut here, "eve");
    assert!(
        matches!(
            &refused[..],
            [ServerMsg::Error {
                code: ErrorCode::UnknownUser,
                ..
            }]
        ),
        "{refused:?}"
    );
}

/// A user of another server whose name's binding has not come here yet
/// keeps its name against a login here under another key: the login is
/// refused as the name in use, not taken for the same identity moving
/// here. (Seen taking the name over once the online map had no key of its
/// own for such a user.)
#[test]
fn a_login_under_another_key_does_not_displace_a_user_whose_binding_is_on_its_way() {
    let mut here = Here::new();
    here.hear(online("eve"));
    let conn = ConnId(99);
    here.ev(Event::Login {
        conn,
        user: "eve".into(),
        public_key: [2; 32],
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    });
    assert!(
        here.out.iter().any(|e| matches!(e,
            Effect::Close { conn: c, last: Some(ServerMsg::Error { code: ErrorCode::NameInUse, message }) }
                if *c == conn && message.contains("connected to server"))),
        "{:?}",
        here.out
    );
    assert!(!here
        .to_bob()
        .iter()
        .any(|m| matches!(m, ServerMsg::PeerLeft { user, .. } if user == "eve")));
}

/// Every binding a server vouched for shares one record of that server,
/// here and after a restart from the store; a server no binding names any
/// more is forgotten at the next sweep of names.
#[test]
fn the_bindings_of_one_server_share_its_record() {
    let mut here = Here::new();
    for user in ["ann", "cat", "dan"] {
        here.hear(NetMsg::Bind(bind(user, T0 + 1)));
    }
    let home = |here: &Here, user: &str| here.chat.bindings[user].home.clone();
    let ann = home(&here, "ann");
    assert_eq!(
        ann.key,
        them().public_key(),
        "ann's home is the other server"
    );
    assert!(std::sync::Arc::ptr_eq(&ann, &home(&here, "cat")));
    assert!(std::sync::Arc::ptr_eq(&ann, &home(&here, "dan")));
    assert!(
        !std::sync::Arc::ptr_eq(&ann, &home(&here, "bob")),
        "bob's home is this one"
    );
    drop(ann);
    // What the store keeps is the vouch as it came, and comes back shared.
    let bindings = here
        .chat
        .bindings
        .values()
        .map(|b| crate::state::Binding {
            user: b.user.to_string(),
            public_key: b.key,
            bound_ms: b.bound_ms,
            vouch: Some(b.vouch()),
            used_again: b.used_again,
        })
        .collect();
    let restarted = Chat::new(
        Settings::default(),
        Snapshot {
            bindings,
            ..Snapshot::default()
        },
    );
    let ann = &restarted.bindings["ann"].home;
    assert!(std::sync::Arc::ptr_eq(ann, &restarted.bindings["dan"].home));
    assert_eq!(ann.key, them().public_key());
    // Gone from every binding, the record goes at the next sweep.
    for user in ["ann", "cat", "dan"] {
        here.chat.bindings.remove(user);
    }
    assert_eq!(here.chat.homes.len(), 2);
    here.ev(Event::Tick);
    here.now += 24 * 60 * MINUTE;
    here.ev(Event::Tick);
    assert_eq!(
        here.chat.homes.len(),
        1,
        "only this server's record is left"
    );
}
