//! The UI's screens and behaviour, on ratatui's `TestBackend`: events and
//! keys in, the screen's text (and styles where they matter) out.

use std::time::{Duration, Instant};

use chatdrop_client::{ClientEvent, Command, ErrorKind, OfferFile, SourceBytes};
use chatdrop_proto::{ErrorCode, Target};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;

use crate::{draw, Action, App};

/// 12:34 UTC on some day, in ms.
const NOON: u64 = (12 * 3600 + 34 * 60) * 1000;

fn utc(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}", s / 3600 % 24, s / 60 % 60)
}

fn app() -> App {
    let mut app = App::new("alice", utc);
    app.set_time(NOON);
    app.welcome();
    app
}

fn terminal(w: u16, h: u16, app: &App) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, app)).unwrap();
    t
}

/// The screen's text, a row a line, without trailing spaces.
fn screen(app: &App, w: u16, h: u16) -> Vec<String> {
    let t = terminal(w, h, app);
    let buf = t.backend().buffer();
    (0..h)
        .map(|y| {
            let row: String = (0..w).map(|x| buf[(x, y)].symbol()).collect();
            row.trim_end().to_string()
        })
        .collect()
}

/// The screen's text in one line, runs of spaces as one: what it says,
/// wherever rows wrapped.
fn flat(app: &App, w: u16, h: u16) -> String {
    screen(app, w, h)
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn show(rows: &[String]) -> String {
    rows.iter()
        .map(|r| format!("|{r}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_screen(app: &App, w: u16, h: u16, want: &[&str]) {
    let got = screen(app, w, h);
    let want: Vec<String> = want.iter().map(|r| r.trim_end().to_string()).collect();
    assert!(
        got == want,
        "screen differs; got:\n{}\nwant:\n{}",
        show(&got),
        show(&want)
    );
}

fn ev(app: &mut App, e: ClientEvent) {
    app.on_event(&e, NOON, Instant::now());
}

/// `e` at `minute` past [`NOON`].
fn ev_at(app: &mut App, e: ClientEvent, minute: u64) {
    app.on_event(&e, NOON + minute * 60_000, Instant::now());
}

fn key(app: &mut App, code: KeyCode) -> Vec<Action> {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn alt(app: &mut App, c: char) -> Vec<Action> {
    app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::ALT))
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn enter(app: &mut App, text: &str) -> Vec<Action> {
    typed(app, text);
    key(app, KeyCode::Enter)
}

fn said(from: &str, to: &str, text: &str, minute: u64) -> ClientEvent {
    ClientEvent::Message {
        room: Some("lobby".into()),
        from: from.into(),
        to: to.into(),
        text: text.into(),
        ts: NOON + minute * 60_000,
        history: false,
        seq: 0,
    }
}

/// Connected, in `lobby` with bob and carol.
fn in_lobby() -> App {
    let mut app = app();
    ev(
        &mut app,
        ClientEvent::Connected {
            server: "127.0.0.1:50000".into(),
            server_name: "hub".into(),
            user: "alice".into(),
        },
    );
    ev(
        &mut app,
        ClientEvent::Joined {
            room: "lobby".into(),
            room_id: "r1".into(),
            created: false,
            peers: vec!["bob".into(), "carol".into()],
        },
    );
    app
}

/// The lobby's talk of the screens below: two lines, one naming alice,
/// and dave coming in.
fn chatter(app: &mut App) {
    ev(app, said("bob", "all", "hi all, the slides are up", 1));
    ev(app, said("alice", "all", "thanks!", 2));
    ev(
        app,
        said(
            "carol",
            "all",
            "alice: could you share notes.txt as well? It is the one from Tuesday's meeting",
            3,
        ),
    );
    ev_at(
        app,
        ClientEvent::PeerJoined {
            room: "lobby".into(),
            user: "dave".into(),
        },
        4,
    );
}

/// Download `t1` has `bytes` of `total` (from `sources`), at `now_ms` by
/// the wall clock and `now` by the monotonic one.
fn progress(
    app: &mut App,
    (bytes, total): (u64, u64),
    sources: &[(&str, u64)],
    now_ms: u64,
    now: Instant,
) {
    let sources = sources
        .iter()
        .map(|(from, bytes)| SourceBytes {
            from: from.to_string(),
            bytes: *bytes,
        })
        .collect();
    let ev = ClientEvent::TransferProgress {
        id: "t1".into(),
        bytes,
        total,
        sources,
    };
    app.on_event(&ev, now_ms, now);
}

fn send(cmd: Command) -> Vec<Action> {
    vec![Action::Send(cmd)]
}

#[test]
fn a_room_at_80x24() {
    let mut app = in_lobby();
    chatter(&mut app);
    typed(&mut app, "sure, one moment");
    let mut want = vec![
        " chatdrop | alice on hub at 127.0.0.1:50000 | #lobby (4 members)",
        " 1 status",
        " 2 #lobby",
    ];
    want.extend([""; 14]);
    want.extend([
        "                12:34 -- You joined #lobby, with bob, carol",
        "                12:35 <bob> hi all, the slides are up",
        "                12:36 <alice> thanks!",
        "                12:37 <carol>! alice: could you share notes.txt as well? It is",
        "                               the one from Tuesday's meeting",
        "                12:38 -- * dave joined lobby",
        "[#lobby] sure, one moment",
    ]);
    assert_screen(&app, 80, 24, &want);
    // The cursor is where typing goes on: after the text.
    let mut t = terminal(80, 24, &app);
    let at = t.get_cursor_position().unwrap();
    assert_eq!((at.x, at.y), (25, 23));
    // Wide enough, the room's members have a column.
    assert_screen(
        &app,
        104,
        8,
        &[
            " chatdrop | alice on hub at 127.0.0.1:50000 | #lobby (4 members)",
            " 1 status       12:34 -- You joined #lobby, with bob, carol                               4 here",
            " 2 #lobby       12:35 <bob> hi all, the slides are up                                     alice",
            "                12:36 <alice> thanks!                                                     bob",
            "                12:37 <carol>! alice: could you share notes.txt as well? It is the one    carol",
            "                               from Tuesday's meeting                                     dave",
            "                12:38 -- * dave joined lobby",
            "[#lobby] sure, one moment",
        ],
    );
}

#[test]
fn windows_for_rooms_and_direct_messages_with_unread_and_mentions() {
    let mut app = in_lobby();
    ev_at(
        &mut app,
        ClientEvent::Message {
            room: Some("lobby".into()),
            from: "bob".into(),
            to: "alice".into(),
            text: "psst, got a minute?".into(),
            ts: NOON + 60_000,
            history: false,
            seq: 0,
        },
        1,
    );
    assert!(app.take_ring(), "a direct message rings the bell");
    key(&mut app, KeyCode::Char('x'));
    app.on_key(KeyEvent::new(KeyCode::Char('1'), KeyModifiers::ALT));
    ev(&mut app, said("carol", "all", "anyone?", 2));
    ev(&mut app, said("carol", "all", "ALICE, are you there?", 3));
    assert!(app.take_ring(), "a mention rings the bell");
    assert!(!app.take_ring(), "once");
    let rows = screen(&app, 80, 8);
    assert_eq!(
        rows[0],
        " chatdrop | alice on hub at 127.0.0.1:50000 | status"
    );
    let list = |row: &str| {
        row.chars()
            .take(16)
            .collect::<String>()
            .trim_end()
            .to_string()
    };
    assert_eq!(list(&rows[1]), " 1 status");
    assert_eq!(list(&rows[2]), " 2 #lobby 2!", "two unread, one naming us");
    assert_eq!(list(&rows[3]), " 3 @bob 1!");
    assert!(rows[6].ends_with("-- Connected to hub at 127.0.0.1:50000 as alice"));
    assert_eq!(
        rows[7], "[status] x",
        "the typed line follows from window to window"
    );
    alt(&mut app, '3');
    assert_screen(
        &app,
        80,
        5,
        &[
            " chatdrop | alice on hub at 127.0.0.1:50000 | @bob",
            " 1 status",
            " 2 #lobby 2!",
            " 3 @bob         12:35 <bob>! psst, got a minute?",
            "[@bob] x",
        ],
    );
    // Plain text answers in the window shown; our own line comes back
    // there.
    key(&mut app, KeyCode::Backspace);
    assert_eq!(
        enter(&mut app, "sure"),
        send(Command::Say {
            to: Target::User("bob".into()),
            room: None,
            text: "sure".into()
        })
    );
    ev(&mut app, said("alice", "bob", "sure", 4));
    assert_eq!(app.windows.all().len(), 3, "no new window for our own line");
    assert_eq!(screen(&app, 80, 5)[3], " 3 @bob         12:38 <alice> sure");
    app.on_key(KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL));
    assert_eq!(
        screen(&app, 80, 5)[0].trim_end(),
        " chatdrop | alice on hub at 127.0.0.1:50000 | #lobby (3 members)"
    );
}

#[test]
fn plain_text_and_the_original_commands() {
    let mut app = in_lobby();
    assert_eq!(
        enter(&mut app, "hello everyone"),
        send(Command::Say {
            to: Target::All,
            room: Some("lobby".into()),
            text: "hello everyone".into()
        })
    );
    assert_eq!(
        enter(&mut app, "@bob hi"),
        send(Command::Say {
            to: Target::User("bob".into()),
            room: None,
            text: "hi".into()
        })
    );
    assert_eq!(
        enter(&mut app, "@server get_rooms"),
        send(Command::ListRooms)
    );
    assert_eq!(
        enter(&mut app, "@all whohas notes.txt"),
        send(Command::WhoHas {
            room: Some("lobby".into()),
            file: "notes.txt".into()
        })
    );
    assert_eq!(
        enter(&mut app, "/part"),
        send(Command::Leave {
            room: Some("lobby".into())
        })
    );
    assert_eq!(enter(&mut app, "@server exit"), vec![Action::Quit]);
    assert_eq!(enter(&mut app, "/dance"), vec![]);
    assert!(flat(&app, 80, 24).contains("!! unknown command /dance; type /help"));
    // In the status window plain text has nowhere to go, and says so;
    // nor does a line to "all".
    alt(&mut app, '1');
    assert_eq!(enter(&mut app, "@all hi"), vec![]);
    assert!(flat(&app, 80, 24).contains("!! This window is not a room"));
    assert_eq!(enter(&mut app, "hello?"), vec![]);
    assert!(flat(&app, 80, 24)
        .contains("!! This is the status window: /join a room first, or write @user text"));
    // Help lists the keys too, and names the folders.
    app.set_folders(
        std::path::Path::new("/home/alice/share"),
        std::path::Path::new("/home/alice/Downloads"),
    );
    enter(&mut app, "/help");
    assert!(flat(&app, 100, 60).contains(
        "Your share folder is /home/alice/share (put files there, then @me setshare NAME); \
         downloads go to /home/alice/Downloads"
    ));
    let text = screen(&app, 100, 60).join("\n");
    assert!(
        text.contains("@USER getfile FILE") && text.contains("Alt+1..9"),
        "{text}"
    );
}

#[test]
fn a_password_is_asked_for_and_never_drawn() {
    let mut app = in_lobby();
    assert_eq!(
        enter(&mut app, "/join vault"),
        send(Command::Join {
            room: "vault".into(),
            password: None
        })
    );
    ev(
        &mut app,
        ClientEvent::Error {
            code: ErrorKind::Server(ErrorCode::PasswordRequired),
            message: "room vault needs a password".into(),
        },
    );
    assert!(flat(&app, 80, 24).contains(
        "-- vault: it is private. Type its password (it is not shown), or Esc to cancel"
    ));
    typed(&mut app, "hunter2");
    let rows = screen(&app, 80, 24);
    assert_eq!(rows[23], "[password for vault]");
    assert!(!rows.join("").contains("hunter2") && !rows[23].contains('*'));
    let mut t = terminal(80, 24, &app);
    assert_eq!(
        t.get_cursor_position().unwrap().x,
        21,
        "the cursor does not move either"
    );
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        send(Command::Join {
            room: "vault".into(),
            password: Some("hunter2".into())
        })
    );
    // A wrong one asks again.
    ev(
        &mut app,
        ClientEvent::Error {
            code: ErrorKind::Server(ErrorCode::WrongPassword),
            message: "wrong password for room vault".into(),
        },
    );
    assert_eq!(screen(&app, 80, 24)[23], "[password for vault]");
    // Another room joined meanwhile (a rejoin after a reconnect) neither
    // ends the prompt nor shows what is typed.
    typed(&mut app, "hun");
    ev(
        &mut app,
        ClientEvent::Joined {
            room: "games".into(),
            room_id: "r2".into(),
            created: false,
            peers: vec![],
        },
    );
    let rows = screen(&app, 80, 24);
    assert_eq!(rows[23], "[password for vault]");
    assert!(
        rows[0].contains("#lobby"),
        "the window shown stays: {}",
        rows[0]
    );
    key(&mut app, KeyCode::Esc);
    assert_eq!(screen(&app, 80, 24)[23], "[#lobby]");
    key(&mut app, KeyCode::Up);
    assert_eq!(
        screen(&app, 80, 24)[23],
        "[#lobby] /join vault",
        "the password is not in the history"
    );
    // Nor is one typed on the line.
    key(&mut app, KeyCode::Esc);
    app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    assert_eq!(
        enter(&mut app, "/join vault hunter2"),
        send(Command::Join {
            room: "vault".into(),
            password: Some("hunter2".into())
        })
    );
    key(&mut app, KeyCode::Up);
    assert_eq!(screen(&app, 80, 24)[23], "[#lobby] /join vault");
}

#[test]
fn incoming_lines_leave_the_typed_line_alone() {
    let mut app = in_lobby();
    typed(&mut app, "half a thought");
    key(&mut app, KeyCode::Left);
    key(&mut app, KeyCode::Left);
    let before = screen(&app, 80, 24)[23].clone();
    let cursor = terminal(80, 24, &app).get_cursor_position().unwrap();
    for i in 0..50 {
        ev(
            &mut app,
            said("bob", "all", &format!("line {i}\u{1b}[2J"), 1),
        );
    }
    let rows = screen(&app, 80, 24);
    assert_eq!(rows[23], before);
    assert_eq!(
        terminal(80, 24, &app).get_cursor_position().unwrap(),
        cursor
    );
    assert!(
        rows[22].contains("<bob> line 49\\u{1b}[2J"),
        "escaped: {}",
        rows[22]
    );
    typed(&mut app, "!");
    assert_eq!(screen(&app, 80, 24)[23], "[#lobby] half a thoug!ht");
}

#[test]
fn scrolling_back_and_forth() {
    let mut app = in_lobby();
    for i in 0..100 {
        ev(&mut app, said("bob", "all", &format!("line {i}"), 1));
    }
    screen(&app, 80, 12);
    assert_eq!(key(&mut app, KeyCode::PageUp), vec![], "not at the top yet");
    let rows = screen(&app, 80, 12);
    assert!(rows[1].ends_with("<bob> line 81"), "{}", show(&rows));
    assert!(
        rows[10].contains("-- 9 rows below: PgDn --"),
        "{}",
        show(&rows)
    );
    // New lines do not move what is being read.
    ev(&mut app, said("carol", "all", "new", 2));
    assert!(screen(&app, 80, 12)[1].ends_with("<bob> line 81"));
    key(&mut app, KeyCode::PageDown);
    key(&mut app, KeyCode::PageDown);
    assert!(screen(&app, 80, 12)[10].ends_with("<carol> new"));
}

#[test]
fn transfers_and_picking_an_owner() {
    let mut app = in_lobby();
    enter(&mut app, "@all whohas notes.txt");
    for (from, size) in [("bob", 2_000_000), ("carol", 2_000_000)] {
        ev(
            &mut app,
            ClientEvent::WhohasReply {
                file: "notes.txt".into(),
                from: from.into(),
                size,
                blake3: "ab".into(),
            },
        );
    }
    assert!(screen(&app, 80, 24)[22].contains("[2] carol has notes.txt (2.0 MB)  (/get 2 or F2)"));
    key(&mut app, KeyCode::F(2));
    let rows = screen(&app, 80, 24);
    assert_eq!(
        rows[20],
        " whohas answers: Up/Down choose, Enter downloads, Esc returns ------------------"
    );
    assert_eq!(rows[21], " [2] carol has notes.txt (2.0 MB)");
    assert_eq!(rows[22], " [1] bob has notes.txt (2.0 MB)");
    key(&mut app, KeyCode::Up);
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        send(Command::GetFile {
            owner: "bob".into(),
            file: "notes.txt".into()
        })
    );
    let t0 = Instant::now();
    app.on_event(
        &ClientEvent::TransferRefused {
            file: "notes.txt".into(),
            from: "bob".into(),
            reason: "busy".into(),
            detail: "bob is sending 4 files already".into(),
        },
        NOON,
        t0,
    );
    let rows = screen(&app, 100, 24);
    assert_eq!(
        rows[22],
        " v notes.txt from bob [--------------------] waiting: bob refused (busy), trying the next"
    );
    app.on_event(
        &ClientEvent::TransferStarted {
            id: "t1".into(),
            file: "notes.txt".into(),
            from: "carol".into(),
            size: 2_000_000,
            resumed_from: 0,
            path: "punched".into(),
            addr: "198.51.100.7:4000".into(),
            arq: "sr".into(),
        },
        NOON,
        t0,
    );
    progress(
        &mut app,
        (500_000, 2_000_000),
        &[],
        NOON,
        t0 + Duration::from_secs(1),
    );
    let rows = screen(&app, 100, 24);
    assert!(rows[0].ends_with("| 1 transfer"), "{}", rows[0]);
    assert_eq!(rows[21], " transfers: 1 under way (F2 picks a whohas answer) -------------------------------------------------");
    // The end of the row (the ARQ scheme) shows on a wider terminal.
    assert_eq!(
        rows[22],
        " v notes.txt from carol [#####---------------]  25% 500.0 kB/s ETA 0:03 500.0 kB of 2.0 MB punched s"
    );
    assert!(screen(&app, 110, 24)[22].ends_with("2.0 MB punched sr"));
    // From two owners at once: both named, with what each sent.
    progress(
        &mut app,
        (1_000_000, 2_000_000),
        &[("carol", 600_000), ("dave", 400_000)],
        NOON,
        t0 + Duration::from_secs(1),
    );
    let row = &screen(&app, 160, 24)[22];
    assert!(
        row.starts_with(" v notes.txt from carol+dave [##########----------]  50%"),
        "{row}"
    );
    assert!(
        row.ends_with("punched sr (carol 600.0 kB, dave 400.0 kB)"),
        "{row}"
    );
    // Every byte in, not yet told done: the last check and the move.
    progress(
        &mut app,
        (2_000_000, 2_000_000),
        &[],
        NOON,
        t0 + Duration::from_secs(2),
    );
    let row = &screen(&app, 100, 24)[22];
    assert!(
        row.ends_with("[####################] verifying and saving"),
        "{row}"
    );
    app.on_event(
        &ClientEvent::TransferDone {
            id: "t1".into(),
            file: "notes.txt".into(),
            from: "carol".into(),
            bytes: 2_000_000,
            seconds: 2.0,
            blake3: "ab".into(),
            sources: vec![],
            path: "/home/alice/Downloads/notes.txt".into(),
        },
        NOON,
        t0 + Duration::from_secs(2),
    );
    assert!(app.take_ring(), "a finished download rings");
    let rows = screen(&app, 100, 24);
    assert_eq!(
        rows[22],
        " v notes.txt from carol+dave [####################] done, saved as /home/alice/Downloads/notes.txt"
    );
    assert!(flat(&app, 100, 24).contains("-- Completed file transfer in 2.00 seconds"));
}

#[test]
fn tab_completes_names_rooms_and_files() {
    let mut app = in_lobby();
    typed(&mut app, "thanks ca");
    key(&mut app, KeyCode::Tab);
    assert_eq!(screen(&app, 80, 3)[2], "[#lobby] thanks carol");
    app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    typed(&mut app, "/jo");
    key(&mut app, KeyCode::Tab);
    assert_eq!(screen(&app, 80, 3)[2], "[#lobby] /join");
}

#[test]
fn every_size_draws() {
    let mut app = in_lobby();
    for i in 0..30 {
        ev(&mut app, said("bob", "all", &"word ".repeat(i * 7), 1));
    }
    typed(&mut app, &"typed ".repeat(30));
    app.transfers_for_tests();
    for (w, h) in [
        (1, 1),
        (2, 2),
        (10, 3),
        (20, 5),
        (59, 10),
        (60, 10),
        (80, 24),
        (99, 30),
        (100, 30),
        (250, 80),
    ] {
        let rows = screen(&app, w, h);
        assert_eq!(rows.len(), h as usize);
        if w >= 10 {
            assert!(
                rows[h as usize - 1].starts_with('['),
                "{w}x{h}: the input line is last"
            );
        }
        let at = terminal(w, h, &app).get_cursor_position().unwrap();
        assert!(at.x < w && at.y == h - 1, "{w}x{h}: cursor at {at:?}");
    }
}

#[test]
fn without_colour_nothing_is_coloured() {
    let mut app = in_lobby();
    ev(&mut app, said("carol", "all", "alice?", 1));
    ev(
        &mut app,
        ClientEvent::Error {
            code: ErrorKind::BadCommand,
            message: "nope".into(),
        },
    );
    app.transfers_for_tests();
    let coloured = |app: &App| {
        let t = terminal(80, 24, app);
        t.backend()
            .buffer()
            .content()
            .iter()
            .any(|c| c.fg != Color::Reset || c.bg != Color::Reset)
    };
    assert!(coloured(&app), "colours are used by default");
    app.color = false;
    assert!(!coloured(&app), "NO_COLOR: none at all");
    let rows = screen(&app, 80, 24);
    assert!(
        rows.iter().any(|r| r.contains("<carol>! alice?")),
        "the mention is marked in text"
    );
}

/// The README's picture of the UI is this screen, drawn.
#[test]
fn the_readme_shows_the_real_screen() {
    let mut app = in_lobby();
    chatter(&mut app);
    ev(
        &mut app,
        ClientEvent::Message {
            room: None,
            from: "bob".into(),
            to: "alice".into(),
            text: "lunch?".into(),
            ts: NOON + 2 * 60_000,
            history: false,
            seq: 0,
        },
    );
    enter(&mut app, "@all whohas notes.txt");
    ev_at(
        &mut app,
        ClientEvent::WhohasReply {
            file: "notes.txt".into(),
            from: "carol".into(),
            size: 41_200_000,
            blake3: "ab".into(),
        },
        5,
    );
    enter(&mut app, "/get 1");
    let t0 = Instant::now();
    app.on_event(
        &ClientEvent::TransferStarted {
            id: "t1".into(),
            file: "notes.txt".into(),
            from: "carol".into(),
            size: 41_200_000,
            resumed_from: 0,
            path: "direct".into(),
            addr: "10.0.0.3:4000".into(),
            arq: "sr".into(),
        },
        NOON + 5 * 60_000,
        t0,
    );
    progress(
        &mut app,
        (10_300_000, 41_200_000),
        &[],
        NOON + 5 * 60_000,
        t0 + Duration::from_secs(1),
    );
    typed(&mut app, "sure, one moment");
    let rows = screen(&app, 80, 16);
    let picture = format!("```\n{}\n```", rows.join("\n"));
    let readme = include_str!("../../../README.md");
    assert!(
        readme.contains(&picture),
        "README.md does not show the screen as drawn:\n{picture}"
    );
}

/// Two rooms at once, a window each: plain text goes to the room of the
/// window shown, and leaving one keeps the other.
#[test]
fn two_rooms_at_once() {
    let mut app = in_lobby();
    assert_eq!(
        enter(&mut app, "/create games"),
        send(Command::Create {
            room: "games".into(),
            password: None
        })
    );
    ev(
        &mut app,
        ClientEvent::Joined {
            room: "games".into(),
            room_id: "r2".into(),
            created: true,
            peers: vec![],
        },
    );
    let rows = screen(&app, 80, 6);
    assert_eq!(
        rows[0],
        " chatdrop | alice on hub at 127.0.0.1:50000 | #games (1 member)"
    );
    assert!(rows[2].starts_with(" 2 #lobby") && rows[3].starts_with(" 3 #games"));
    let say = |room: &str, text: &str| {
        send(Command::Say {
            to: Target::All,
            room: Some(room.into()),
            text: text.into(),
        })
    };
    assert_eq!(enter(&mut app, "gg"), say("games", "gg"));
    alt(&mut app, '2');
    assert_eq!(enter(&mut app, "hi"), say("lobby", "hi"));
    ev(&mut app, said("bob", "all", "in lobby", 1));
    ev(
        &mut app,
        ClientEvent::Message {
            room: Some("games".into()),
            from: "carol".into(),
            to: "all".into(),
            text: "in games".into(),
            ts: NOON,
            history: false,
            seq: 0,
        },
    );
    let rows = screen(&app, 80, 6);
    assert!(rows[3].starts_with(" 3 #games 1 "), "{}", show(&rows));
    assert!(rows[4].ends_with("<bob> in lobby"), "{}", show(&rows));
    ev(
        &mut app,
        ClientEvent::Left {
            room: "games".into(),
        },
    );
    alt(&mut app, '3');
    assert_eq!(enter(&mut app, "anyone?"), vec![]);
    assert!(flat(&app, 80, 6).contains("You are not in games now: /join games first"));
    assert_eq!(
        screen(&app, 80, 6)[0],
        " chatdrop | alice on hub at 127.0.0.1:50000 | #games (not joined)"
    );
}

/// Paging back through a room's history: PgUp at the top of what the
/// window shows asks for the page before its oldest line (once, until it
/// comes); the page goes above, without the lines shown already; at the
/// beginning of what the room keeps it says so and asks no more.
#[test]
fn paging_back_through_history() {
    let mut app = in_lobby();
    let line = |seq: u64, history: bool| ClientEvent::Message {
        room: Some("lobby".into()),
        from: "bob".into(),
        to: "all".into(),
        text: format!("line {seq}"),
        ts: NOON + seq * 60_000,
        history,
        seq,
    };
    for seq in 8..=10 {
        ev(&mut app, line(seq, true));
    }
    ev(&mut app, line(11, false));
    ev(&mut app, line(10, true));
    screen(&app, 80, 12);
    let asked = send(Command::History {
        room: Some("lobby".into()),
        before: Some(8),
    });
    assert_eq!(key(&mut app, KeyCode::PageUp), asked);
    assert_eq!(
        key(&mut app, KeyCode::PageUp),
        vec![],
        "one request at a time"
    );
    let page = |seqs: std::ops::RangeInclusive<u64>, more: bool| ClientEvent::History {
        room: "lobby".into(),
        lines: seqs
            .map(|seq| chatdrop_client::HistoryLine {
                from: "bob".into(),
                text: format!("line {seq}"),
                ts: NOON + seq * 60_000,
                seq,
            })
            .collect(),
        more,
    };
    ev(&mut app, page(5..=8, false));
    let text = flat(&app, 80, 24);
    let order: Vec<usize> = [
        "line 5", "line 6", "line 7", "line 8", "line 9", "line 10", "line 11",
    ]
    .iter()
    .map(|l| {
        text.find(&format!("<bob> {l}"))
            .unwrap_or_else(|| panic!("{l} missing: {text}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {text}");
    assert_eq!(text.matches("<bob> line 8").count(), 1, "line 8 once");
    assert_eq!(text.matches("<bob> line 10").count(), 1, "line 10 once");
    assert!(text.contains("(the beginning of what the room keeps)"));
    screen(&app, 80, 12);
    key(&mut app, KeyCode::PageUp);
    assert_eq!(
        key(&mut app, KeyCode::PageUp),
        vec![],
        "nothing more to ask"
    );
    assert_eq!(enter(&mut app, "/history"), vec![]);
}

fn offer_of(offer: u32, from: &str, names: &[&str], auto_accepted: bool) -> ClientEvent {
    let files: Vec<OfferFile> = names
        .iter()
        .map(|n| OfferFile {
            name: n.to_string(),
            size: 70_000,
            blake3: "3f2a9c".repeat(10) + "3f2a",
        })
        .collect();
    ClientEvent::OfferReceived {
        offer,
        from: from.into(),
        bytes: 70_000 * files.len() as u64,
        files,
        auto_accepted,
    }
}

#[test]
fn an_offer_of_files_is_answered_with_a_key() {
    let mut app = in_lobby();
    chatter(&mut app);
    typed(&mut app, "half a li");
    let names = ["photos/a.jpg", "photos/2024/b.jpg", "report.pdf"];
    ev_at(&mut app, offer_of(1, "bob", &names, false), 5);
    assert!(app.take_ring(), "an offer rings");
    assert_screen(
        &app,
        80,
        24,
        &[
            " chatdrop | alice on hub at 127.0.0.1:50000 | #lobby (4 members)",
            " 1 status",
            " 2 #lobby",
            " 3 @bob 5!",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "                12:34 -- You joined #lobby, with bob, carol",
            "                12:35 <bob> hi all, the slides are up",
            "                12:36 <alice> thanks!",
            "                12:37 <carol>! alice: could you share notes.txt as well? It is",
            "                               the one from Tuesday's meeting",
            "                12:38 -- * dave joined lobby",
            " offer 1: bob sends photos/a.jpg and 2 more (210.0 kB) | F3 accept | F4 decline",
            "[#lobby] half a li",
        ],
    );
    // Its window lists every file with its size and hash.
    alt(&mut app, '3');
    let text = flat(&app, 80, 24);
    assert!(
        text.contains("bob offers you 3 files (210.0 kB):"),
        "{text}"
    );
    assert!(
        text.contains("photos/2024/b.jpg (70.0 kB, blake3 3f2a9c3f2a9c3f2a...)"),
        "{text}"
    );
    assert!(
        text.contains("Type /accept 1 to take it, /decline 1 to refuse (or F3 / F4)"),
        "{text}"
    );
    // A key pressed the moment an offer comes does not answer it.
    assert!(key(&mut app, KeyCode::F(3)).is_empty());
    assert!(
        flat(&app, 80, 24).contains("A new offer from bob just came: read it, then F3 or F4 again")
    );
    app.set_time(NOON + 5 * 60_000 + 1_500);
    assert_eq!(
        key(&mut app, KeyCode::F(3)),
        send(Command::Accept { offer: Some(1) })
    );
    assert!(
        !flat(&app, 80, 24).contains("F3 accept"),
        "answered, the row goes"
    );
    // Two waiting: the newest is answered first, the other stays.
    ev(&mut app, offer_of(2, "carol", &["a.txt"], false));
    ev(&mut app, offer_of(3, "dave", &["b.txt"], false));
    let text = flat(&app, 80, 24);
    assert!(
        text.contains(
            "offer 3: dave sends b.txt (70.0 kB) | F3 accept | F4 decline (1 more waiting)"
        ),
        "{text}"
    );
    app.set_time(NOON + 1_000);
    assert_eq!(
        key(&mut app, KeyCode::F(4)),
        send(Command::Decline { offer: Some(3) })
    );
    // `/decline 2` typed: the event takes it off the row too.
    ev(
        &mut app,
        ClientEvent::OfferDeclined {
            offer: 2,
            from: "carol".into(),
        },
    );
    assert!(key(&mut app, KeyCode::F(3)).is_empty());
    assert!(flat(&app, 80, 24).contains("No offer of files is waiting"));
    // Accepted without asking: told, nothing to answer.
    ev(&mut app, offer_of(4, "erin", &["c.txt"], true));
    let text = flat(&app, 80, 24);
    assert!(!text.contains("F3 accept"), "{text}");
    assert_eq!(
        app.input.text(),
        "half a li",
        "the typed line was left alone"
    );
}

#[test]
fn a_desktop_notification_only_when_asked_for_and_never_raw() {
    let mut app = in_lobby();
    ev(&mut app, said("bob", "alice", "psst; look", 1));
    assert!(app.take_ring());
    assert_eq!(app.take_notice(), None, "off by default");
    app.notify = true;
    ev(
        &mut app,
        said("bob", "alice", "psst; look \u{1b}]0;pwned\u{7}", 2),
    );
    let notice = app.take_notice().expect("a notice");
    assert_eq!(notice, "bob: psst, look \\u{1b}]0,pwned\\u{7}");
    assert_eq!(app.take_notice(), None, "once");
    ev(&mut app, said("bob", "all", "hello room", 3));
    assert_eq!(app.take_notice(), None, "a line that names nobody");
}
