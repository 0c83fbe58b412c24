//! Several chat cores linked by simulated links: routing, failover, splits
//! and clashes, deterministic (no I/O, simulated time).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use chatdrop_proto::link::{LinkMsg, RoutedBody, ServerId};
use chatdrop_proto::{
    ChatLine, ClientMsg, ErrorCode, FileAnswer, Offer, OfferedFile, RefuseReason, ServerMsg, Target,
};

use crate::net::Identity;
use crate::{Chat, ConnId, Effect, Event, LinkId, Settings, Snapshot, Who};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// When the simulations start: 2026-01-01 in ms since the Unix epoch (the
/// servers refuse bindings and rooms dated before chatdrop existed).
const START_MS: u64 = 1_767_225_600_000;

/// The id of server `i` of a [`Sim`].
fn server_id(i: usize) -> ServerId {
    identity(i).id()
}

/// Server `i` of a [`Sim`]: its key is made from `i`, its id derived from
/// the key.
fn identity(i: usize) -> Identity {
    Identity::new(&[i as u8 + 1; 32], format!("s{i}"), 1)
}

struct Cable {
    ends: [(usize, LinkId); 2],
    up: bool,
}

/// Servers, the cables between them, and what every client received.
struct Sim {
    now: u64,
    chats: Vec<Chat>,
    cables: Vec<Cable>,
    /// Events waiting, with the cable a frame travels on.
    queue: VecDeque<(usize, Event, Option<usize>)>,
    inbox: HashMap<(usize, ConnId), Vec<ServerMsg>>,
    closed: Vec<(usize, ConnId, Option<ServerMsg>)>,
    next_link: u64,
    /// Copies of each numbered message that reached its server:
    /// (server, source server, message id) -> copies.
    numbered: HashMap<(usize, ServerId, u64), usize>,
    /// Servers that gave [`Effect::Shutdown`]: their process is gone, and
    /// with it whatever was still on their cables.
    stopped: Vec<bool>,
    /// The room each (server, connection) last created or joined: where
    /// its lines go.
    rooms: HashMap<(usize, u64), String>,
    /// Relays the servers were asked to open: (server, effect).
    relays: Vec<(usize, Effect)>,
}

impl Sim {
    fn new(n: usize) -> Self {
        let chats = (0..n)
            .map(|i| {
                let settings = Settings {
                    identity: identity(i),
                    ..Settings::default()
                };
                Chat::new(settings, Snapshot::default())
            })
            .collect();
        Sim {
            now: START_MS,
            chats,
            cables: Vec::new(),
            queue: VecDeque::new(),
            inbox: HashMap::new(),
            closed: Vec::new(),
            next_link: 1,
            numbered: HashMap::new(),
            stopped: vec![false; n],
            rooms: HashMap::new(),
            relays: Vec::new(),
        }
    }

    /// Two linked servers in sync, alice (conn 1) at s0 in room `r` she
    /// made, bob (conn 1) at s1 in it too.
    fn room_across_two() -> Self {
        let mut sim = Sim::new(2);
        sim.cable(0, 1);
        sim.run();
        sim.wait(2_000);
        sim.login(0, 1, "alice", 1);
        sim.create(0, 1, "r", "id-r");
        sim.login(1, 1, "bob", 2);
        sim.join(1, 1, "r");
        sim
    }

    /// Links servers `a` and `b`; returns the cable.
    fn cable(&mut self, a: usize, b: usize) -> usize {
        let (la, lb) = (LinkId(self.next_link), LinkId(self.next_link + 1));
        self.next_link += 2;
        self.cables.push(Cable {
            ends: [(a, la), (b, lb)],
            up: true,
        });
        let name = |i: usize| format!("s{i}");
        self.queue.push_back((
            a,
            Event::LinkUp {
                link: la,
                peer: server_id(b),
                name: name(b),
            },
            None,
        ));
        self.queue.push_back((
            b,
            Event::LinkUp {
                link: lb,
                peer: server_id(a),
                name: name(a),
            },
            None,
        ));
        self.cables.len() - 1
    }

    /// Cuts a cable: what is on it is lost; both ends see it go down.
    /// Returns how many numbered messages were on it.
    fn cut(&mut self, c: usize) -> usize {
        self.cables[c].up = false;
        for (server, link) in self.cables[c].ends {
            self.queue
                .push_back((server, Event::LinkDown { link }, None));
        }
        self.on_cable(c)
    }

    /// Numbered messages on cable `c` (sent, not yet taken by the other
    /// end).
    fn on_cable(&self, c: usize) -> usize {
        let numbered = |e: &Event| match e {
            Event::LinkFrame {
                msg: LinkMsg::Routed(r),
                ..
            } => matches!(r.body, RoutedBody::Data(_)),
            _ => false,
        };
        self.queue
            .iter()
            .filter(|(_, e, on)| *on == Some(c) && numbered(e))
            .count()
    }

    /// Numbered messages that reached `server` from `from` more than once.
    fn copies(&self, server: usize, from: usize) -> usize {
        self.numbered
            .iter()
            .filter(|(&(at, src, _), &n)| at == server && src == server_id(from) && n > 1)
            .count()
    }

    fn ev(&mut self, server: usize, event: Event) {
        self.queue.push_back((server, event, None));
        self.run();
    }

    /// Runs until nothing is left to do (bounded).
    fn run(&mut self) {
        for _ in 0..1_000_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the network never settled");
    }

    /// Handles the next event; false if there was none.
    fn step(&mut self) -> bool {
        let Some((server, event, cable)) = self.queue.pop_front() else {
            return false;
        };
        if cable.is_some_and(|c| !self.cables[c].up) || self.stopped[server] {
            return true; // lost with the cable, or the server is gone
        }
        if let Event::LinkFrame {
            msg: LinkMsg::Routed(r),
            ..
        } = &event
        {
            if let (true, RoutedBody::Data(d)) = (r.dst == server_id(server), &r.body) {
                *self.numbered.entry((server, r.src, d.id)).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        self.chats[server].handle(self.now, event, &mut out);
        self.chats[server].handle(self.now, Event::Flush, &mut out);
        for e in out {
            self.effect(server, e);
        }
        true
    }

    fn effect(&mut self, server: usize, e: Effect) {
        match e {
            Effect::Send { to, msg } => self.inbox.entry((server, to)).or_default().push(msg),
            Effect::Broadcast { to, msg } => {
                for c in to {
                    self.inbox.entry((server, c)).or_default().push(msg.clone());
                }
            }
            Effect::Close { conn, last } => self.closed.push((server, conn, last)),
            Effect::Link { link, msg } => {
                let Some(c) = self
                    .cables
                    .iter()
                    .position(|c| c.up && c.ends.contains(&(server, link)))
                else {
                    return;
                };
                let (to, to_link) = if self.cables[c].ends[0] == (server, link) {
                    self.cables[c].ends[1]
                } else {
                    self.cables[c].ends[0]
                };
                self.queue
                    .push_back((to, Event::LinkFrame { link: to_link, msg }, Some(c)));
            }
            Effect::Shutdown => {
                self.stopped[server] = true;
                let cables: Vec<usize> = (0..self.cables.len())
                    .filter(|&c| {
                        self.cables[c].up && self.cables[c].ends.iter().any(|e| e.0 == server)
                    })
                    .collect();
                for c in cables {
                    self.cut(c);
                }
            }
            Effect::CheckPassword { .. }
            | Effect::HashPassword { .. }
            | Effect::Persist(_)
            | Effect::Console(_) => {}
            e @ Effect::OpenRelay { .. } => self.relays.push((server, e)),
        }
    }

    /// Lets `ms` pass in ticks of 100 ms.
    fn wait(&mut self, ms: u64) {
        for _ in 0..ms / 100 {
            self.now += 100;
            for s in 0..self.chats.len() {
                self.queue.push_back((s, Event::Tick, None));
            }
            self.run();
        }
    }

    fn login(&mut self, server: usize, conn: u64, user: &str, key: u8) {
        self.ev(
            server,
            Event::Login {
                conn: ConnId(conn),
                user: user.into(),
                public_key: [key; 32],
                ip: IP,
            },
        );
    }

    /// `conn` at `server` makes public room `room` with id `id`.
    fn create(&mut self, server: usize, conn: u64, room: &str, id: &str) {
        self.rooms.insert((server, conn), room.to_string());
        self.ev(
            server,
            Event::CreateRoom {
                conn: ConnId(conn),
                room: room.into(),
                password: None,
                room_id: id.into(),
            },
        );
    }

    fn join(&mut self, server: usize, conn: u64, room: &str) {
        self.rooms.insert((server, conn), room.to_string());
        self.ev(
            server,
            Event::Request {
                conn: ConnId(conn),
                msg: ClientMsg::JoinRoom {
                    room: room.into(),
                    password: None,
                },
            },
        );
    }

    fn say(&mut self, server: usize, conn: u64, text: &str) {
        let room = self.rooms.get(&(server, conn)).cloned();
        self.ev(
            server,
            Event::Request {
                conn: ConnId(conn),
                msg: ClientMsg::Say {
                    to: Target::All,
                    room,
                    text: text.into(),
                },
            },
        );
    }

    fn lines(&self, server: usize, conn: u64, from: &str) -> Vec<String> {
        self.chat_lines(server, conn, false)
            .filter(|l| l.from == from)
            .map(|l| l.text.clone())
            .collect()
    }

    /// The history `conn` at `server` was shown on joining a room.
    fn history(&self, server: usize, conn: u64) -> Vec<String> {
        self.chat_lines(server, conn, true)
            .map(|l| l.text.clone())
            .collect()
    }

    fn chat_lines(
        &self,
        server: usize,
        conn: u64,
        history: bool,
    ) -> impl Iterator<Item = &ChatLine> {
        self.inbox
            .get(&(server, ConnId(conn)))
            .into_iter()
            .flatten()
            .filter_map(move |m| match m {
                ServerMsg::Message(l) if l.history == history => Some(l),
                _ => None,
            })
    }

    /// The message of the error the last closed connection got, if it was
    /// `conn` at `server` closed with `code`.
    fn closed_with(&self, server: usize, conn: u64, code: ErrorCode) -> Option<String> {
        match self.closed.last() {
            Some((s, c, Some(ServerMsg::Error { code: got, message })))
                if (*s, *c, *got) == (server, ConnId(conn), code) =>
            {
                Some(message.clone())
            }
            _ => None,
        }
    }

    fn got(&self, server: usize, conn: u64, pred: impl Fn(&ServerMsg) -> bool) -> bool {
        self.inbox
            .get(&(server, ConnId(conn)))
            .is_some_and(|m| m.iter().any(pred))
    }
}

/// A ring of four; the cable carrying s0's lines to s2 is cut in the middle
/// of a conversation, with lines on it: those are lost, the resending by
/// the other way round brings s2 copies of lines it already had, and every
/// line arrives once, in order. (Seen failing with a channel that delivers
/// such copies again.)
#[test]
fn a_cut_in_a_ring_loses_and_doubles_nothing() {
    let mut sim = Sim::new(4);
    let c01 = sim.cable(0, 1);
    sim.cable(1, 2);
    sim.cable(2, 3);
    sim.cable(3, 0);
    sim.run();
    sim.wait(2_000);
    sim.login(0, 1, "alice", 1);
    sim.create(0, 1, "ring", "r1");
    sim.login(2, 1, "carol", 2);
    sim.join(2, 1, "ring");
    assert!(sim.got(
        0,
        1,
        |m| matches!(m, ServerMsg::PeerJoined { user, .. } if user == "carol")
    ));
    // Ties go to the smaller id: s0 reaches s2 through s1. Alice speaks
    // while the network carries her earlier lines: each line is followed
    // by a few steps of the network, so lines are on every cable of the
    // path and s2's acknowledgements are on their way back when the cable
    // is cut.
    let mut cut_off = None;
    for i in 0..30 {
        sim.queue.push_back((
            0,
            Event::Request {
                conn: ConnId(1),
                msg: ClientMsg::Say {
                    to: Target::All,
                    room: Some("ring".into()),
                    text: format!("m{i}"),
                },
            },
            None,
        ));
        for _ in 0..4 {
            sim.step();
        }
        if i == 15 {
            cut_off = Some(sim.cut(c01));
        }
    }
    sim.run();
    sim.wait(1_500);
    let cut_off = cut_off.unwrap_or_default();
    assert!(cut_off > 0, "the cut caught no line on the wire");
    // s0 resent, by the new route, what s2 had not acknowledged: lines
    // s2 already had among them.
    assert!(sim.copies(2, 0) > 0, "the resending brought no copies");
    let want: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    assert_eq!(sim.lines(2, 1, "alice"), want);
    assert_eq!(sim.lines(0, 1, "alice"), want, "the sender's own copies");
}

/// Two parts bound the same name to different keys while apart; when they
/// meet, the earlier binding wins and the later user is told why.
#[test]
fn a_name_clash_is_settled_by_the_earlier_binding() {
    let mut sim = Sim::new(2);
    sim.login(0, 1, "ann", 1);
    sim.now += 5_000;
    sim.login(1, 1, "ann", 2);
    sim.cable(0, 1);
    sim.run();
    sim.wait(2_000);
    let why = sim.closed_with(1, 1, ErrorCode::NameTaken);
    assert!(
        why.as_deref().is_some_and(|m| m.contains("bound earlier")),
        "the later binding lost: {:?}",
        sim.closed
    );
    // The name is now s0's ann's everywhere.
    sim.login(1, 2, "ann", 2);
    assert!(sim.closed_with(1, 2, ErrorCode::NameTaken).is_some());
}

/// A user whose client moved to another server before the old one noticed:
/// the new login wins and the old server closes its session.
#[test]
fn the_same_identity_moving_servers_replaces_its_old_session() {
    let mut sim = Sim::new(2);
    sim.cable(0, 1);
    sim.run();
    sim.wait(2_000);
    sim.login(0, 1, "bob", 7);
    sim.now += 10;
    sim.login(1, 1, "bob", 7);
    assert!(sim.got(1, 1, |m| matches!(m, ServerMsg::LoggedIn { .. })));
    let why = sim.closed_with(0, 1, ErrorCode::NameInUse);
    assert!(why.as_deref().is_some_and(|m| m.contains("s1")), "{why:?}");
    // Another key cannot do the same.
    sim.login(0, 2, "bob", 8);
    assert!(sim.closed_with(0, 2, ErrorCode::NameTaken).is_some());
}

/// A split shows the far side's users as lost; the heal brings them back
/// and history written on either side while apart stays where it was.
/// (Seen failing with a heal that clears the history of a room both sides
/// know.)
#[test]
fn a_split_and_heal_show_users_go_and_come_back() {
    let mut sim = Sim::room_across_two();
    let c = 0; // its one cable
    sim.cut(c);
    sim.run();
    assert!(sim.got(0, 1, |m| matches!(m, ServerMsg::PeerLeft { user, reason: chatdrop_proto::LeaveReason::Lost, .. } if user == "bob")));
    sim.say(0, 1, "only alpha hears this");
    sim.say(1, 1, "only beta hears this");
    assert!(sim.lines(1, 1, "alice").is_empty());
    assert!(sim.lines(0, 1, "bob").is_empty());
    sim.cable(0, 1);
    sim.run();
    sim.wait(2_000);
    let joined_again = sim
        .inbox
        .get(&(0, ConnId(1)))
        .into_iter()
        .flatten()
        .filter(|m| matches!(m, ServerMsg::PeerJoined { user, .. } if user == "bob"))
        .count();
    assert_eq!(joined_again, 2, "bob joined, went, and came back");
    sim.say(1, 1, "back");
    assert_eq!(sim.lines(0, 1, "bob"), ["back"]);
    // Each side kept the line written on it while apart, and the heal
    // neither lost it nor copied it over: a newcomer on each side is
    // shown its own side's.
    sim.login(0, 2, "carol", 3);
    sim.join(0, 2, "r");
    assert_eq!(sim.history(0, 2), ["only alpha hears this", "back"]);
    sim.login(1, 2, "dave", 4);
    sim.join(1, 2, "r");
    assert_eq!(sim.history(1, 2), ["only beta hears this", "back"]);
}

/// A server told to exit with lines of its users still unacknowledged by
/// the server of their readers stops only once they are acknowledged, so
/// a line its sender saw echoed reaches every room member; logins are
/// refused meanwhile. (Seen failing with a server that stopped at once:
/// the soak lost the lines still on the link when a server restarted.)
#[test]
fn an_exiting_server_delivers_what_it_echoed_before_it_stops() {
    let mut sim = Sim::room_across_two();
    // Bob's lines and the exit are taken by s1 before any frame moves.
    for n in 0..50 {
        let say = Event::Request {
            conn: ConnId(1),
            msg: ClientMsg::Say {
                to: Target::All,
                room: Some("r".into()),
                text: format!("line {n}"),
            },
        };
        sim.queue.push_back((1, say, None));
    }
    sim.queue
        .push_back((1, Event::Admin(crate::AdminCommand::Exit), None));
    sim.queue.push_back((
        1,
        Event::Login {
            conn: ConnId(2),
            user: "carol".into(),
            public_key: [3; 32],
            ip: IP,
        },
        None,
    ));
    sim.run();
    let echoed: Vec<String> = sim.lines(1, 1, "bob");
    assert_eq!(echoed.len(), 50, "bob saw every line echoed");
    assert_eq!(
        sim.lines(0, 1, "bob"),
        echoed,
        "alice got them all, once, in order"
    );
    assert!(sim.stopped[1], "s1 stopped once they were acknowledged");
    let why = sim.closed_with(1, 2, ErrorCode::ServerFull);
    assert!(
        why.as_deref().is_some_and(|m| m.contains("shutting down")),
        "{why:?}"
    );
}

/// An exiting server whose acknowledgements never come stops at its
/// deadline all the same.
#[test]
fn an_exiting_server_stops_at_its_deadline_without_acknowledgements() {
    let mut sim = Sim::room_across_two();
    // s0 takes nothing more (its process hangs): its frames go nowhere.
    sim.stopped[0] = true;
    sim.say(1, 1, "into the void");
    sim.ev(1, Event::Admin(crate::AdminCommand::Exit));
    assert!(!sim.stopped[1], "s1 waits for s0's acknowledgement");
    sim.wait(crate::admin::EXIT_DRAIN_MS - 100);
    assert!(!sim.stopped[1], "and keeps waiting until its deadline");
    sim.wait(200);
    assert!(sim.stopped[1], "then stops");
}

/// Alice at s0 asks bob at s1 for a file, and he offers it with `session`.
fn offered_across(sim: &mut Sim, session: [u8; 8]) {
    let (alice, bob) = (ConnId(1), ConnId(1));
    sim.ev(
        0,
        Event::Request {
            conn: alice,
            msg: ClientMsg::GetFile {
                owner: "bob".into(),
                file: "f.bin".into(),
                offer: None,
                eph: [2; 32],
                sig: vec![3; 64],
                candidates: Vec::new(),
            },
        },
    );
    let req = sim.inbox[&(1, bob)].iter().find_map(|m| match m {
        ServerMsg::FileRequest { req, .. } => Some(*req),
        _ => None,
    });
    let offer = Offer {
        size: 10,
        blake3: [1; 32],
        port: 4000,
        eph: [5; 32],
        session,
        selective_repeat: true,
        window: 16,
        mss: 1200,
        asker_ip: IP,
        candidates: Vec::new(),
        observed: None,
        sig: vec![1; 64],
    };
    let answer = FileAnswer::Accept(offer);
    let req = req.expect("bob was asked");
    sim.ev(
        1,
        Event::Request {
            conn: bob,
            msg: ClientMsg::FileAnswer { req, answer },
        },
    );
    let offered = sim.got(
        0,
        1,
        |m| matches!(m, ServerMsg::FileOffer { offer, .. } if offer.session == session),
    );
    assert!(offered, "alice got the offer");
}

/// Between users of two servers the asker's server relays: it opens a
/// relay with bob as a side of another server, and once open, bob's
/// server tells bob where to bind his leg, only for a transfer it
/// brokered itself between the same two. (Checked to fail with the
/// record check at bob's server left out: mallory's relay reached bob.)
#[test]
fn a_relay_between_two_servers_is_opened_by_the_askers_and_told_to_the_owner_by_his() {
    let mut sim = Sim::room_across_two();
    offered_across(&mut sim, [6; 8]);
    sim.ev(
        0,
        Event::Request {
            conn: ConnId(1),
            msg: ClientMsg::Relay { session: [6; 8] },
        },
    );
    let [(
        0,
        Effect::OpenRelay {
            session,
            requester,
            sides,
        },
    )] = &sim.relays[..]
    else {
        panic!("{:?}", sim.relays)
    };
    assert_eq!((*session, *requester), ([6; 8], ConnId(1)));
    let want = [
        (Who::Local(ConnId(1)), "alice".to_string(), IP),
        (Who::Remote(server_id(1)), "bob".to_string(), IP),
    ];
    assert_eq!(sides, &want);
    // The hub opened it: bob hears where, through his own server.
    let at: SocketAddr = "203.0.113.9:7000".parse().unwrap();
    let opened = |session: [u8; 8], other: &str, token: u8| Event::RelayOpened {
        session,
        server: server_id(1),
        user: "bob".into(),
        other: other.into(),
        token: [token; 16],
        at,
    };
    sim.ev(0, opened([6; 8], "alice", 5));
    let told = |sim: &Sim, token: u8| {
        sim.inbox[&(1, ConnId(1))]
            .iter()
            .filter(|m| {
                matches!(m, ServerMsg::RelayAt { session: [6, ..], token: t, at: a }
                    if *t == [token; 16] && *a == at)
            })
            .count()
    };
    assert_eq!(told(&sim, 5), 1, "bob told once");
    // Not for a transfer bob's server did not broker, nor for one it
    // brokered with someone else.
    sim.login(0, 2, "mallory", 3);
    sim.ev(0, opened([7; 8], "alice", 8));
    sim.ev(0, opened([6; 8], "mallory", 9));
    let stray = sim.inbox[&(1, ConnId(1))]
        .iter()
        .filter(|m| matches!(m, ServerMsg::RelayAt { token, .. } if *token != [5; 16]))
        .count();
    assert_eq!(stray, 0, "bob told of relays that are not his");
    // Bob may ask at his own server too: s1 relays then, for alice at s0.
    sim.ev(
        1,
        Event::Request {
            conn: ConnId(1),
            msg: ClientMsg::Relay { session: [6; 8] },
        },
    );
    let Some((1, Effect::OpenRelay { sides, .. })) = sim.relays.get(1) else {
        panic!("{:?}", sim.relays)
    };
    assert_eq!(sides[0].0, Who::Remote(server_id(0)));
    assert_eq!(sides[1].0, Who::Local(ConnId(1)));
    // Alice gone from the network: no relay, and bob is told why.
    sim.ev(0, Event::Disconnected { conn: ConnId(1) });
    sim.ev(
        1,
        Event::Request {
            conn: ConnId(1),
            msg: ClientMsg::Relay { session: [6; 8] },
        },
    );
    let refused = sim.got(
        1,
        1,
        |m| matches!(m, ServerMsg::RelayRefused { why, .. } if why.contains("no longer connected")),
    );
    assert!(refused);
    assert_eq!(sim.relays.len(), 2);
}

/// A user of one server in two rooms with members at another: each room
/// there lists it and hears its lines, leaving one room is told in that
/// room only, and logging out is told in both. Direct messages cross the
/// network to users who share no room.
#[test]
fn a_user_in_two_rooms_across_the_network() {
    let mut sim = Sim::room_across_two();
    sim.login(1, 2, "carol", 3);
    sim.create(1, 2, "games", "id-games");
    sim.run();
    sim.join(0, 1, "games");
    sim.run();
    assert!(sim.got(
        1,
        2,
        |m| matches!(m, ServerMsg::PeerJoined { room, user } if room == "games" && user == "alice")
    ));
    assert!(
        !sim.got(1, 1, |m| matches!(m, ServerMsg::PeerLeft { .. })),
        "alice is still in r for bob"
    );
    sim.say(0, 1, "gg");
    sim.run();
    let heard = |sim: &Sim, conn: u64, text: &str| {
        sim.got(
            1,
            conn,
            |m| matches!(m, ServerMsg::Message(l) if l.text == text),
        )
    };
    assert!(heard(&sim, 2, "gg") && !heard(&sim, 1, "gg"), "games only");
    sim.ev(
        0,
        Event::Request {
            conn: ConnId(1),
            msg: ClientMsg::LeaveRoom {
                room: "games".into(),
            },
        },
    );
    sim.run();
    assert!(sim.got(
        1,
        2,
        |m| matches!(m, ServerMsg::PeerLeft { room, .. } if room == "games")
    ));
    assert!(!sim.got(1, 1, |m| matches!(m, ServerMsg::PeerLeft { .. })));
    // carol (only in games) and alice (only in r) share no room now.
    sim.ev(
        1,
        Event::Request {
            conn: ConnId(2),
            msg: ClientMsg::Say {
                to: Target::User("alice".into()),
                room: None,
                text: "psst".into(),
            },
        },
    );
    sim.run();
    assert!(sim.got(
        0,
        1,
        |m| matches!(m, ServerMsg::Message(l) if l.text == "psst" && l.room.is_none())
    ));
    sim.ev(0, Event::Disconnected { conn: ConnId(1) });
    sim.run();
    assert!(sim.got(
        1,
        1,
        |m| matches!(m, ServerMsg::PeerLeft { room, .. } if room == "r")
    ));
}

/// Offers go to a user anywhere in the network, with no room shared:
/// carol at s1 offers alice at s0 a folder, alice declines and carol is
/// told; a request naming the offer reaches carol though she shares no
/// room with alice, and one naming none does not. Offers that would save
/// a file outside the receiver's folder, list no file, or go to oneself
/// are refused with the reason.
#[test]
fn offers_cross_the_network_outside_rooms() {
    let mut sim = Sim::room_across_two();
    sim.login(1, 2, "carol", 3);
    sim.run();
    let file = |name: &str| OfferedFile {
        name: name.into(),
        size: 3,
        blake3: [4; 32],
    };
    let (alice, carol) = (ConnId(1), ConnId(2));
    let offer_files = |to: &str, files: Vec<OfferedFile>| ClientMsg::OfferFiles {
        to: to.into(),
        offer: 77,
        files,
    };
    let photos = vec![file("photos/a.jpg"), file("photos/2024/b.jpg")];
    sim.ev(
        1,
        Event::Request {
            conn: carol,
            msg: offer_files("alice", photos.clone()),
        },
    );
    sim.run();
    assert!(sim.got(0, 1, |m| matches!(
        m,
        ServerMsg::FilesOffered { from, offer: 77, files } if from == "carol" && *files == photos
    )));
    let answer = ClientMsg::OfferAnswer {
        to: "carol".into(),
        offer: 77,
        accept: false,
    };
    sim.ev(
        0,
        Event::Request {
            conn: alice,
            msg: answer,
        },
    );
    sim.run();
    assert!(sim.got(1, 2, |m| matches!(
        m,
        ServerMsg::OfferAnswered { from, offer: 77, accept: false } if from == "alice"
    )));
    let ask = |owner: &str, file: &str, offer| ClientMsg::GetFile {
        owner: owner.into(),
        file: file.into(),
        offer,
        eph: [2; 32],
        sig: vec![3; 64],
        candidates: Vec::new(),
    };
    sim.ev(
        0,
        Event::Request {
            conn: alice,
            msg: ask("carol", "photos/a.jpg", None),
        },
    );
    sim.run();
    assert!(sim.got(0, 1, |m| matches!(
        m,
        ServerMsg::Error { code: ErrorCode::UnknownUser, message } if message.contains("in your rooms")
    )));
    sim.ev(
        0,
        Event::Request {
            conn: alice,
            msg: ask("carol", "photos/a.jpg", Some(77)),
        },
    );
    sim.run();
    assert!(sim.got(1, 2, |m| matches!(
        m,
        ServerMsg::FileRequest { from, offer: Some(77), file, .. }
            if from == "alice" && file == "photos/a.jpg"
    )));
    for (files, why) in [
        (
            vec![file("../.bashrc")],
            "\"../.bashrc\" is not a relative path",
        ),
        (
            vec![file("/etc/passwd")],
            "\"/etc/passwd\" is not a relative path",
        ),
        (Vec::new(), "1 to 100 files (got 0)"),
        (vec![file("a"); 101], "1 to 100 files (got 101)"),
    ] {
        sim.ev(
            1,
            Event::Request {
                conn: carol,
                msg: offer_files("alice", files),
            },
        );
        assert!(
            sim.got(1, 2, |m| matches!(
                m,
                ServerMsg::Error { code: ErrorCode::BadRequest, message } if message.contains(why)
            )),
            "{why}"
        );
    }
    sim.ev(
        1,
        Event::Request {
            conn: carol,
            msg: offer_files("carol", vec![file("a")]),
        },
    );
    assert!(sim.got(1, 2, |m| matches!(
        m,
        ServerMsg::Error { message, .. } if message.contains("not to yourself")
    )));
    sim.ev(
        1,
        Event::Request {
            conn: carol,
            msg: offer_files("dave", vec![file("a")]),
        },
    );
    assert!(sim.got(1, 2, |m| matches!(
        m,
        ServerMsg::Error { code: ErrorCode::UnknownUser, message } if message.contains("dave")
    )));
    // The sender gone, a request for its offer is refused (the asker
    // goes on with the offer's next file).
    sim.ev(
        0,
        Event::Request {
            conn: alice,
            msg: ask("dave", "a", Some(5)),
        },
    );
    assert!(sim.got(0, 1, |m| matches!(
        m,
        ServerMsg::TransferRefused { from, reason: RefuseReason::NotFound, detail, .. }
            if from == "dave" && detail.contains("no longer online")
    )));
}
