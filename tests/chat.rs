//! End-to-end tests of the chat core: real `chatdrop` server and client
//! processes on loopback, with temporary data directories.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use chatdrop_proto::auth::{login_transcript, BINDING_LEN};
use chatdrop_proto::{ErrorCode, ServerMsg};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use support::raw::*;
use support::*;

/// The original's demo: bob creates private room `whatsapp` with password
/// 1234; alice lists rooms, fails with a wrong password, joins with the right
/// one; messages reach exactly the right people exactly once.
#[test]
fn the_original_scenario() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut bob = joined(
        &server,
        dir.path(),
        "bob",
        "whatsapp",
        &["--create", "--password", "1234"],
    );
    let mut carol = joined(&server, dir.path(), "carol", "lobby", &["--create"]);

    let mut alice = client(&server, dir.path(), "alice", &[]);
    alice.expect("connected", &[("user", json!("alice"))]);
    alice.send("@server get_rooms");
    let rooms = alice.expect("rooms", &[]);
    assert_eq!(
        rooms["rooms"],
        json!([
            {"name": "lobby", "private": false, "members": 1},
            {"name": "whatsapp", "private": true, "members": null},
        ])
    );
    alice.send("/join whatsapp");
    alice.expect("error", &[("code", json!("password_required"))]);
    alice.send("/join whatsapp 4321");
    alice.expect("error", &[("code", json!("wrong_password"))]);
    alice.send("/join whatsapp 1234");
    let entered = alice.expect("joined", &[("room", json!("whatsapp"))]);
    assert_eq!(entered["peers"], json!(["bob"]));
    assert_eq!(entered["room_id"].as_str().unwrap().len(), 32);
    bob.expect(
        "peer_joined",
        &[("user", json!("alice")), ("room", json!("whatsapp"))],
    );

    // A direct message, and messages to all, both ways.
    alice.send("@bob hi");
    bob.expect(
        "message",
        &[
            ("from", json!("alice")),
            ("to", json!("bob")),
            ("text", json!("hi")),
        ],
    );
    bob.send("@all hello!");
    alice.expect(
        "message",
        &[
            ("from", json!("bob")),
            ("to", json!("all")),
            ("text", json!("hello!")),
        ],
    );
    alice.send("@all hello bob");
    bob.expect("message", &[("text", json!("hello bob"))]);
    // carol, in another room, hears none of it: her own line comes back and
    // nothing of whatsapp came before it.
    carol.send("@all carol here");
    carol.expect("message", &[("text", json!("carol here"))]);
    // A last marker so that everything sent before has been delivered.
    bob.send("@all marker");
    alice.expect("message", &[("text", json!("marker"))]);
    bob.expect("message", &[("text", json!("marker"))]);

    assert_eq!(bob.count_text("hi"), 1, "bob gets the DM once");
    assert_eq!(alice.count_text("hi"), 1, "alice gets her receipt once");
    assert_eq!(alice.count_text("hello!"), 1);
    assert_eq!(
        bob.count_text("hello!"),
        1,
        "the sender sees its own line once"
    );
    assert_eq!(bob.count_text("hello bob"), 1);
    // carol's next line is the barrier for her: the server delivers to one
    // connection in order and handled every line above before this one, so
    // any of them sent to her would have come first. (Seen failing on
    // "marker" with room lines delivered to every user of the server.)
    carol.send("@all carol again");
    carol.expect("message", &[("text", json!("carol again"))]);
    for t in ["hi", "hello!", "hello bob", "marker"] {
        assert_eq!(carol.count_text(t), 0, "carol must not see {t:?}");
    }
    assert_eq!(alice.count_text("carol here"), 0);

    alice.send("@server get_peers");
    let peers = alice.expect("peers", &[]);
    assert_eq!(peers["peers"], json!(["bob", "alice"]));

    // Bad input gets a clear error and breaks nothing.
    alice.send("@nobody hi");
    alice.expect("error", &[("code", json!("unknown_user"))]);
    alice.send(&format!("@all {}", "x".repeat(5000)));
    let e = alice.expect("error", &[("code", json!("too_long"))]);
    assert!(e["message"].as_str().unwrap().contains("4096"));
    alice.send("what is this");
    alice.expect("error", &[("code", json!("bad_command"))]);
    alice.send("/dance");
    alice.expect("error", &[("code", json!("bad_command"))]);

    // alice leaves cleanly; bob is told.
    alice.send("@server exit");
    assert!(alice.wait_exit().success(), "{}", alice.stderr());
    bob.expect(
        "peer_left",
        &[("user", json!("alice")), ("reason", json!("left"))],
    );
}

/// The human output is the original's style.
#[test]
fn human_output() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut bob = joined(&server, dir.path(), "bob", "room", &["--create"]);
    let d = dir.path().join("alice");
    let mut alice = Proc::spawn(
        "alice",
        &[
            "client",
            "--server",
            &server.addr,
            "--user",
            "alice",
            "--room",
            "room",
            "--data-dir",
            d.to_str().unwrap(),
        ],
    );
    alice.wait_line("join line", |l| {
        l.starts_with("You have joined chatroom - room")
    });
    bob.expect("peer_joined", &[]);
    bob.send("@all hi alice");
    alice.wait_line("bob's line", |l| l == "@bob|hi alice");
    alice.send("@all hi bob");
    alice.wait_line("own line", |l| l == "#me|hi bob");
}

/// The `history` lines `p` was shown on entering its room: every line after
/// its last `joined`, up to the answer to a later request (the server sends
/// a room's history right after `joined`, on the same connection).
fn history_shown(p: &mut Proc) -> Vec<String> {
    p.send("/peers");
    p.expect("peers", &[]);
    let events = p.events();
    let from = events.iter().rposition(|v| v["event"] == "joined").unwrap();
    let lines: Vec<&Value> = events[from..]
        .iter()
        .filter(|v| v["event"] == "message")
        .collect();
    assert!(
        lines.iter().all(|v| v["history"] == json!(true)),
        "{}: only history before the answer: {lines:?}",
        p.name
    );
    lines
        .iter()
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect()
}

/// A restart keeps rooms, passwords and history; so does kill -9 after the
/// client was told the room exists: its password is still needed (a wrong
/// one is refused) and the right one still works. With `--history 3`, a
/// joiner is shown the last 3 of 5 lines, live and after the kill -9. A
/// line is durable once a record after it was committed (docs/ARCHITECTURE.md,
/// Persistence): here a new user's name binding, committed before that user
/// is told it is logged in, is the last thing before the kill.
///
/// Seen failing with the store saving rooms without their password hash
/// (the wrong password got in), with a room keeping one line more than
/// `--history` (live), and with the history loaded newest first (after the
/// kill -9).
#[test]
fn restart_keeps_rooms_passwords_and_history() {
    let dir = tmp();
    let sdir = dir.path().join("server");
    let mut server = ServerProc::start(&sdir, &[]);
    let mut bob = joined(
        &server,
        dir.path(),
        "bob",
        "whatsapp",
        &["--create", "--password", "1234"],
    );
    let id = bob.events().last().unwrap()["room_id"].clone();
    bob.send("@all remember me");
    bob.expect("message", &[("text", json!("remember me"))]);
    server.console("exit");
    bob.expect("disconnected", &[]);
    assert!(
        server.proc.wait_exit().success(),
        "{}",
        server.proc.stderr()
    );
    drop(bob);

    let history = ["--no-console", "--history", "3"];
    let server = ServerProc::start(&sdir, &history);
    let mut alice = client(&server, dir.path(), "alice", &[]);
    alice.expect("connected", &[]);
    alice.send("/join whatsapp 0000");
    alice.expect("error", &[("code", json!("wrong_password"))]);
    alice.send("/join whatsapp 1234");
    let entered = alice.expect("joined", &[("room", json!("whatsapp"))]);
    assert_eq!(entered["room_id"], id, "same room, same ID");
    let old = alice.expect("message", &[("text", json!("remember me"))]);
    assert_eq!(old["history"], json!(true));
    assert_eq!(old["from"], json!("bob"));

    // kill -9 right after a room was created and written to: the room, its
    // password and its last 3 lines are there after restart.
    let mut carol = joined(
        &server,
        dir.path(),
        "carol",
        "vault",
        &["--create", "--password", "s3cret"],
    );
    for i in 1..=5 {
        carol.send(&format!("@all v{i}"));
    }
    carol.expect("message", &[("text", json!("v5"))]);
    // frank logs in for the first time: his binding is committed, and the
    // lines queued before it with it, before he is told.
    let vault = ["--password", "s3cret"];
    let mut frank = joined(&server, dir.path(), "frank", "vault", &vault);
    assert_eq!(history_shown(&mut frank), ["v3", "v4", "v5"], "live");
    server.proc.signal(libc::SIGKILL);
    carol.expect("disconnected", &[]);
    drop(server);
    let server = ServerProc::start(&sdir, &history);
    let mut dave = client(&server, dir.path(), "dave", &[]);
    dave.expect("connected", &[]);
    dave.send("/join vault");
    dave.expect("error", &[("code", json!("password_required"))]);
    dave.send("/join vault secret");
    dave.expect("error", &[("code", json!("wrong_password"))]);
    dave.send("/join vault s3cret");
    dave.expect("joined", &[("room", json!("vault"))]);
    assert_eq!(
        history_shown(&mut dave),
        ["v3", "v4", "v5"],
        "after kill -9"
    );
}

/// kick, ban and unban from the admin console. Kicked or banned, a client
/// exits with code 3; a ban is committed before it is carried out, so it
/// holds after a kill -9 and a restart: the banned user's login is refused
/// with `banned` (exit code 1, as any refused login).
///
/// Seen failing with bans not loaded from the store at start-up.
#[test]
fn kick_and_ban_from_the_console() {
    let dir = tmp();
    let sdir = dir.path().join("server");
    let mut server = ServerProc::start(&sdir, &[]);
    let mut bob = joined(&server, dir.path(), "bob", "r", &["--create"]);
    let mut alice = joined(&server, dir.path(), "alice", "r", &[]);
    bob.expect("peer_joined", &[("user", json!("alice"))]);

    server.console("kick alice be nice");
    alice.expect("kicked", &[("reason", json!("be nice"))]);
    assert_eq!(alice.wait_exit().code(), Some(3));
    bob.expect(
        "peer_left",
        &[("user", json!("alice")), ("reason", json!("kicked"))],
    );
    server
        .proc
        .wait_line("kick answer", |l| l == "kicked alice");

    // A kicked user may come back.
    let mut alice = joined(&server, dir.path(), "alice", "r", &[]);
    server.console("ban alice spamming");
    alice.expect("kicked", &[("reason", json!("banned: spamming"))]);
    assert_eq!(alice.wait_exit().code(), Some(3));
    bob.expect("peer_left", &[("reason", json!("banned"))]);
    let answer = server
        .proc
        .wait_line("ban answer", |l| l.starts_with("banned alice"));
    assert_eq!(answer, "banned alice and disconnected alice");

    server.proc.signal(libc::SIGKILL);
    bob.expect("disconnected", &[]);
    drop((server, bob));
    let mut server = ServerProc::start(&sdir, &[]);
    let mut bob = joined(&server, dir.path(), "bob", "r", &[]);
    let mut alice = client(&server, dir.path(), "alice", &[]);
    let e = alice.wait_event("login answer", |v| {
        v["event"] == "connected" || v["event"] == "error"
    });
    assert_eq!(e["code"], json!("banned"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("spamming"));
    assert_eq!(alice.wait_exit().code(), Some(1));

    server.console("unban alice");
    server
        .proc
        .wait_line("unban answer", |l| l == "unbanned alice");
    let _alice = joined(&server, dir.path(), "alice", "r", &[]);
    server.console("peers r");
    server
        .proc
        .wait_line("peers answer", |l| l == "r: bob, alice");
    server.console("@bob from the admin");
    bob.expect(
        "message",
        &[("from", json!("server")), ("text", json!("from the admin"))],
    );
    server.console("@all maintenance soon");
    bob.expect(
        "message",
        &[("from", json!("server")), ("to", json!("all"))],
    );
    server.console("frobnicate");
    server
        .proc
        .wait_line("console error", |l| l.contains("unknown command"));
    // Text may hold invisible characters (writing needs some); the
    // console writes them out instead of printing them raw.
    bob.send("@server look\u{200B}alike");
    let line = server
        .proc
        .wait_line("bob's line", |l| l.starts_with("@bob|"));
    assert_eq!(line, "@bob|look\\u{200b}alike");
}

/// Nobody can take a name that another key holds or that is in use.
#[test]
fn names_cannot_be_taken() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut alice = client(&server, dir.path(), "alice", &[]);
    alice.expect("connected", &[]);

    // Another key asking for alice.
    let mut thief = client_in(&server, &dir.path().join("thief"), "alice", &[]);
    let e = thief.expect("error", &[("code", json!("name_taken"))]);
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("another identity key"));
    assert_eq!(thief.wait_exit().code(), Some(1));

    // alice's own key, while alice is connected.
    let mut twin = client(&server, dir.path(), "alice", &[]);
    twin.expect("error", &[("code", json!("name_in_use"))]);
    assert_eq!(twin.wait_exit().code(), Some(1));

    // Still bound after alice leaves.
    alice.send("/quit");
    assert!(alice.wait_exit().success());
    let mut thief = client_in(&server, &dir.path().join("thief"), "alice", &[]);
    thief.expect("error", &[("code", json!("name_taken"))]);
    let mut alice = client(&server, dir.path(), "alice", &[]);
    alice.expect("connected", &[]);
}

/// A server whose certificate changed is refused, showing both fingerprints.
#[test]
fn a_changed_certificate_is_refused() {
    let dir = tmp();
    let mut first = ServerProc::start(&dir.path().join("s1"), &[]);
    let mut alice = client(&first, dir.path(), "alice", &[]);
    alice.expect("connected", &[]);
    alice.send("/quit");
    assert!(alice.wait_exit().success());
    first.console("exit");
    assert!(first.proc.wait_exit().success());

    // Another server (another certificate) at the same address.
    let listen = first.addr.clone();
    let second = ServerProc::start_on(&listen, &dir.path().join("s2"), &["--no-console"]);
    assert_ne!(first.fingerprint, second.fingerprint);
    let mut alice = client(&second, dir.path(), "alice", &[]);
    let e = alice.expect("error", &[("code", json!("fingerprint_mismatch"))]);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains(&first.fingerprint) && msg.contains(&second.fingerprint),
        "{msg}"
    );
    assert_eq!(alice.wait_exit().code(), Some(1));

    // A wrong fingerprint pinned up front is refused too; the right one works.
    let mut bob = client(
        &second,
        dir.path(),
        "bob",
        &["--server-fingerprint", &first.fingerprint],
    );
    bob.expect("error", &[("code", json!("fingerprint_mismatch"))]);
    let upper = second.fingerprint.to_uppercase();
    let mut bob = client(
        &second,
        dir.path(),
        "bob",
        &["--server-fingerprint", &upper],
    );
    bob.expect("connected", &[]);
}

/// A login proof that does not verify is refused with `auth_failed`: one
/// signed by another key than the one claimed (mallory posing as alice with
/// her public key), and alice's own signature over another session's
/// transcript (a proof replayed or relayed from another TLS connection).
/// The same raw client with the right proof logs in, so the refusals are
/// the proofs' doing.
///
/// Seen failing with the server accepting any signature, and with a login
/// transcript without the channel binding (the relayed proof got in).
#[test]
fn a_forged_login_proof_is_refused() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let alice = SigningKey::from_bytes(&[1; 32]);
    let mallory = SigningKey::from_bytes(&[2; 32]);
    let public = alice.verifying_key().to_bytes();
    let sign = |key: &SigningKey, binding: &[u8; 32], nonce: &[u8; 32]| {
        let t = login_transcript(binding, nonce, "alice", &public);
        key.sign(&t).to_bytes().to_vec()
    };
    let refused = |answer: ServerMsg, what: &str| match answer {
        ServerMsg::Error { code, message } => {
            assert_eq!(code, ErrorCode::AuthFailed, "{what}: {message}");
            assert!(message.contains("signature"), "{what}: {message}");
        }
        other => panic!("{what} was let in: {other:?}"),
    };

    let answer = raw_login(&server.addr, "alice", public, |b, n| sign(&mallory, b, n));
    refused(answer, "another key's proof");
    let elsewhere = [0x5a; BINDING_LEN];
    let answer = raw_login(&server.addr, "alice", public, |_, n| {
        sign(&alice, &elsewhere, n)
    });
    refused(answer, "a proof for another session");
    let answer = raw_login(&server.addr, "alice", public, |b, n| sign(&alice, b, n));
    assert_eq!(
        answer,
        ServerMsg::LoggedIn {
            user: "alice".into()
        }
    );
}

/// A client sending malformed or oversized frames is dropped; everyone else
/// carries on.
#[test]
fn a_hostile_client_is_dropped() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut bob = joined(&server, dir.path(), "bob", "r", &["--create"]);
    let mut alice = joined(&server, dir.path(), "alice", "r", &[]);

    // Claims a 4 GiB frame.
    let mut s = raw_tls(&server.addr);
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    s.flush().unwrap();
    let got = read_to_close(&mut s);
    assert!(
        String::from_utf8_lossy(&got).contains("over the"),
        "got {got:?}"
    );

    // A well-sized frame of garbage.
    let mut s = raw_tls(&server.addr);
    s.write_all(&[0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef]).unwrap();
    s.flush().unwrap();
    let got = read_to_close(&mut s);
    assert!(
        String::from_utf8_lossy(&got).contains("malformed"),
        "got {got:?}"
    );

    // Plain text instead of TLS.
    let mut t = TcpStream::connect(&server.addr).unwrap();
    t.set_read_timeout(Some(WAIT)).unwrap();
    let _ = t.write_all(b"GET / HTTP/1.1\r\n\r\n");
    let mut sink = Vec::new();
    let _ = t.read_to_end(&mut sink);

    alice.send("@all still here");
    bob.expect("message", &[("text", json!("still here"))]);
}

/// A peer whose connection silently dies is shown as gone within the
/// keepalive timeout: 15 s after it froze (README), and not before the 10 s
/// that its last ping (sent at most 5 s before) leaves, so it is the
/// keepalive that noticed. The server's 15 s count from alice's last frame,
/// which came before the freeze; beyond the 15 s only the notice's way to
/// bob's screen is allowed, at most 1 s on a loaded machine. The wait for
/// the notice is longer than the bound, so a drift past it is measured and
/// reported rather than taken for a missing event.
///
/// Seen failing with the server's idle timeout at 17 s.
#[test]
fn a_dead_peer_is_noticed() {
    // The promise (README): a peer silent for 15 s is dropped and its room
    // told; its last frame came at or before the freeze, and the notice
    // may take a moment more to reach bob's screen.
    let promised = std::time::Duration::from_secs(15);
    let delivery = std::time::Duration::from_secs(1);
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut bob = joined(&server, dir.path(), "bob", "r", &["--create"]);
    let alice = joined(&server, dir.path(), "alice", "r", &[]);
    bob.expect("peer_joined", &[]);
    // Frozen, alice sends nothing, not even TCP resets.
    alice.signal(libc::SIGSTOP);
    let frozen = std::time::Instant::now();
    let left = bob.expect_for(4 * promised, "peer_left", &[("user", json!("alice"))]);
    let took = frozen.elapsed();
    assert_eq!(left["reason"], json!("lost"));
    assert!(
        took <= promised + delivery,
        "alice was shown as gone {took:?} after she froze"
    );
    assert!(
        took >= promised - std::time::Duration::from_secs(5),
        "alice was shown as gone {took:?} after she froze, before her pings were due"
    );
    alice.signal(libc::SIGCONT);
}

/// A dropped connection is retried with backoff and the client rejoins its
/// room by itself: after the server exits (and says so), and after a
/// kill -9 (no word, the connections just end). A line then arrives once.
///
/// Seen failing with a connection that ends without TLS's close_notify (as
/// after a kill -9) taken by the client as a fatal error.
#[test]
fn clients_reconnect_and_rejoin() {
    let dir = tmp();
    let sdir = dir.path().join("server");
    let mut server = ServerProc::start(&sdir, &[]);
    let mut bob = joined(
        &server,
        dir.path(),
        "bob",
        "whatsapp",
        &["--create", "--password", "1234"],
    );
    let listen = server.addr.clone();
    server.console("exit");
    bob.expect("server_notice", &[]);
    bob.expect("reconnecting", &[]);
    assert!(server.proc.wait_exit().success());

    let server = ServerProc::start_on(&listen, &sdir, &["--no-console"]);
    bob.expect("connected", &[]);
    bob.expect("joined", &[("room", json!("whatsapp"))]);
    let mut alice = joined(
        &server,
        dir.path(),
        "alice",
        "whatsapp",
        &["--password", "1234"],
    );
    bob.send("@all welcome back");
    alice.expect("message", &[("text", json!("welcome back"))]);
    // A second private room: both are joined again after the crash (one
    // password is checked at a time, so the rejoins go one by one).
    bob.send("/create vault abcd");
    bob.expect("joined", &[("room", json!("vault"))]);

    server.proc.signal(libc::SIGKILL);
    bob.expect_nth(2, "disconnected", &[]);
    alice.expect("disconnected", &[]);
    for p in [&mut bob, &mut alice] {
        p.expect("reconnecting", &[("attempt", json!(1))]);
    }
    drop(server);
    let _server = ServerProc::start_on(&listen, &sdir, &["--no-console"]);
    bob.expect_nth(3, "joined", &[("room", json!("whatsapp"))]);
    bob.expect_nth(2, "joined", &[("room", json!("vault"))]);
    alice.expect_nth(2, "joined", &[("room", json!("whatsapp"))]);
    // bob's lines go to the room he joined last (vault) until he joins
    // whatsapp again, which makes it his.
    bob.send("/join whatsapp");
    bob.expect_nth(4, "joined", &[("room", json!("whatsapp"))]);
    bob.send("@all after the crash");
    alice.expect("message", &[("text", json!("after the crash"))]);
    // The last line: everything before it has arrived.
    bob.send("@all over");
    alice.expect("message", &[("text", json!("over"))]);
    bob.expect("message", &[("text", json!("over"))]);
    assert_eq!(alice.count_text("after the crash"), 1);
    assert_eq!(bob.count_text("after the crash"), 1);
}

/// --max-clients: one more gets a clear refusal.
#[test]
fn a_full_server_refuses_clearly() {
    let dir = tmp();
    let server = ServerProc::start(
        &dir.path().join("server"),
        &["--no-console", "--max-clients", "1"],
    );
    let mut bob = client(&server, dir.path(), "bob", &[]);
    bob.expect("connected", &[]);
    let mut alice = client(&server, dir.path(), "alice", &[]);
    let e: Value = alice.expect("error", &[("code", json!("server_full"))]);
    assert!(e["message"].as_str().unwrap().contains("full"));
    assert_eq!(alice.wait_exit().code(), Some(1));
}

/// A pseudo-terminal: the master side to type on, the slave side to hand to a
/// process as its standard input.
fn pty() -> (std::fs::File, std::process::Stdio) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors we then own.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    // SAFETY: both descriptors are fresh and owned by us alone.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::process::Stdio::from(std::os::fd::OwnedFd::from_raw_fd(slave)),
        )
    }
}

/// Without --user and --room, on a terminal, the client asks as the original
/// does: user name, create or join, the room, the password.
#[test]
fn the_original_dialogue_on_a_terminal() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut bob = joined(
        &server,
        dir.path(),
        "bob",
        "whatsapp",
        &["--create", "--password", "1234"],
    );
    let (mut tty, stdin) = pty();
    let d = dir.path().join("alice");
    let mut alice = Proc::spawn_with_stdin(
        "alice",
        &[
            "client",
            "--json",
            "--server",
            &server.addr,
            "--data-dir",
            d.to_str().unwrap(),
        ],
        stdin,
    );
    // Keep the terminal's echo from filling up.
    let mut echo = tty.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut sink = [0u8; 1024];
        while matches!(echo.read(&mut sink), Ok(n) if n > 0) {}
    });
    let mut type_line = |s: &str| {
        tty.write_all(format!("{s}\n").as_bytes()).unwrap();
        tty.flush().unwrap();
    };
    alice.wait_stderr("user name prompt", |l| {
        l.contains("Please enter your username")
    });
    type_line("alice");
    alice.expect("connected", &[("user", json!("alice"))]);
    alice.wait_stderr("create/join prompt", |l| l.contains("create/join"));
    type_line("join");
    alice.expect("rooms", &[]);
    alice.wait_stderr("room prompt", |l| l.contains("Which chatroom"));
    type_line("whatsapp");
    alice.expect("error", &[("code", json!("password_required"))]);
    alice.wait_stderr("password prompt", |l| l.contains("is private"));
    type_line("4321");
    alice.expect("error", &[("code", json!("wrong_password"))]);
    alice.wait_stderr("password prompt again", |l| l.contains("is private"));
    type_line("1234");
    alice.expect("joined", &[("room", json!("whatsapp"))]);
    bob.expect("peer_joined", &[("user", json!("alice"))]);
    type_line("@bob hi from a terminal");
    bob.expect("message", &[("text", json!("hi from a terminal"))]);
}

/// SIGTERM does what `exit` does: clients are told, the server exits 0.
#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tmp();
    let mut server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut bob = joined(&server, dir.path(), "bob", "r", &["--create"]);
    server.proc.signal(libc::SIGTERM);
    let notice = bob.expect("server_notice", &[]);
    assert!(notice["text"].as_str().unwrap().contains("shutting down"));
    assert!(
        server.proc.wait_exit().success(),
        "{}",
        server.proc.stderr()
    );
}

/// A server that cannot start says why in one line, the cause once: here
/// its port is taken. (Seen failing with "Address in use" printed twice,
/// once in the message and again as its cause.)
#[test]
fn a_server_that_cannot_start_says_why_once() {
    let dir = tmp();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(bin())
        .args(["server", "--no-console", "--listen", &addr, "--data-dir"])
        .arg(dir.path().join("server"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(line.contains(&format!("cannot listen on {addr}")), "{line}");
    assert_eq!(line.matches("in use").count(), 1, "{line}");
}

/// --tls-cert and --tls-key serve a certificate of the operator's choosing.
#[test]
fn a_certificate_from_files() {
    let dir = tmp();
    // A certificate made by another server's first start, used from files.
    let mut maker = ServerProc::start(&dir.path().join("maker"), &[]);
    maker.console("exit");
    assert!(maker.proc.wait_exit().success());
    let cert = dir.path().join("maker/server-cert.pem");
    let key = dir.path().join("maker/server-key.pem");
    let server = ServerProc::start(
        &dir.path().join("server"),
        &[
            "--no-console",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(server.fingerprint, maker.fingerprint);
    assert!(
        !dir.path().join("server/server-cert.pem").exists(),
        "no self-signed one made"
    );
    let mut alice = client(
        &server,
        dir.path(),
        "alice",
        &["--server-fingerprint", &maker.fingerprint],
    );
    alice.expect("connected", &[]);

    // A missing key file is a clear start-up error.
    let mut bad = Proc::spawn(
        "bad",
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--no-console",
            "--data-dir",
            dir.path().join("bad").to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            "/nonexistent/key.pem",
        ],
    );
    assert!(!bad.wait_exit().success());
    assert!(
        bad.stderr().contains("/nonexistent/key.pem"),
        "{}",
        bad.stderr()
    );
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as u64
}

/// The `--json` contract of the chat events: each carries exactly the
/// fields docs/EVENTS.md lists for it, with the values it describes.
/// (`server_chosen` and `room_renamed` are checked in tests/network.rs, the
/// file events in tests/transfer.rs.)
///
/// Seen failing with `left` printed without its room, and with a message's
/// `ts` in seconds.
#[test]
fn chat_events_carry_their_documented_fields() {
    let dir = tmp();
    let sdir = dir.path().join("server");
    let mut server = ServerProc::start(&sdir, &["--name", "hall"]);
    let mut bob = client(&server, dir.path(), "bob", &[]);
    let ev = bob.expect("connected", &[]);
    assert_documented(&ev, &["server", "server_name", "user"]);
    assert_eq!(ev["server"], json!(server.addr));
    assert_eq!(ev["server_name"], json!("hall"));
    assert_eq!(ev["user"], json!("bob"));

    bob.send("/create r");
    let ev = bob.expect("joined", &[]);
    assert_documented(&ev, &["room", "room_id", "created", "peers"]);
    let id = ev["room_id"].as_str().unwrap().to_string();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{ev}"
    );
    assert_eq!((&ev["room"], &ev["created"]), (&json!("r"), &json!(true)));
    assert_eq!(ev["peers"], json!([]));
    let mut alice = client(&server, dir.path(), "alice", &["--room", "r"]);
    let ev = alice.expect("joined", &[]);
    assert_eq!(ev["room_id"], json!(id), "the same room");
    assert_eq!(
        (&ev["created"], &ev["peers"]),
        (&json!(false), &json!(["bob"]))
    );
    let ev = bob.expect("peer_joined", &[]);
    assert_documented(&ev, &["room", "user"]);
    assert_eq!((&ev["room"], &ev["user"]), (&json!("r"), &json!("alice")));

    alice.send("/rooms");
    let ev = alice.expect("rooms", &[]);
    assert_documented(&ev, &["rooms", "total", "next"]);
    assert_documented_entries(&ev, "rooms", &["name", "private", "members"]);
    assert_eq!(
        (&ev["rooms"], &ev["total"], &ev["next"]),
        (
            &json!([{"name": "r", "private": false, "members": 2}]),
            &json!(1),
            &json!(null)
        )
    );

    let before = now_ms();
    alice.send("@all hi");
    let ev = bob.expect("message", &[("text", json!("hi"))]);
    let after = now_ms();
    assert_documented(&ev, &["room", "from", "to", "text", "ts", "history", "seq"]);
    assert_eq!(
        (
            &ev["room"],
            &ev["from"],
            &ev["to"],
            &ev["history"],
            &ev["seq"]
        ),
        (
            &json!("r"),
            &json!("alice"),
            &json!("all"),
            &json!(false),
            &json!(1)
        )
    );
    // A page of history, with its documented fields (nothing is older
    // than the first line; tests/network.rs checks a page's lines).
    bob.send("/history");
    let page = bob.expect("history", &[]);
    assert_documented(&page, &["room", "lines", "more"]);
    assert_eq!((&page["lines"], &page["more"]), (&json!([]), &json!(false)));
    let ts = ev["ts"].as_u64().unwrap();
    assert!(
        (before..=after).contains(&ts),
        "{ts} not in {before}..={after}"
    );

    alice.send("/peers");
    let ev = alice.expect("peers", &[]);
    assert_documented(&ev, &["room", "peers"]);
    assert_eq!(
        (&ev["room"], &ev["peers"]),
        (&json!("r"), &json!(["bob", "alice"]))
    );

    alice.send("/dance");
    let ev = alice.expect("error", &[]);
    assert_documented(&ev, &["code", "message"]);
    assert_eq!(ev["code"], json!("bad_command"));
    assert!(ev["message"].as_str().unwrap().contains("/dance"), "{ev}");

    alice.send("/leave");
    let ev = alice.expect("left", &[]);
    assert_documented(&ev, &["room"]);
    assert_eq!(ev["room"], json!("r"));
    let ev = bob.expect("peer_left", &[]);
    assert_documented(&ev, &["room", "user", "reason"]);
    assert_eq!(
        (&ev["room"], &ev["user"], &ev["reason"]),
        (&json!("r"), &json!("alice"), &json!("left"))
    );

    // An admin broadcast reaches alice outside any room: `room` is null.
    server.console("@all hello all");
    let ev = alice.expect("message", &[("text", json!("hello all"))]);
    assert_documented(&ev, &["room", "from", "to", "text", "ts", "history", "seq"]);
    assert_eq!(
        (&ev["room"], &ev["from"], &ev["to"]),
        (&Value::Null, &json!("server"), &json!("all"))
    );

    server.console("kick alice be nice");
    let ev = alice.expect("kicked", &[]);
    assert_documented(&ev, &["reason"]);
    assert_eq!(ev["reason"], json!("be nice"));
    assert_eq!(alice.wait_exit().code(), Some(3));

    server.proc.signal(libc::SIGTERM);
    let ev = bob.expect("server_notice", &[]);
    assert_documented(&ev, &["text"]);
    assert!(
        ev["text"].as_str().unwrap().contains("shutting down"),
        "{ev}"
    );
    let ev = bob.expect("disconnected", &[]);
    assert_documented(&ev, &["reason"]);
    assert!(!ev["reason"].as_str().unwrap().is_empty(), "{ev}");
    // No server comes back: the attempts go on, each after a longer wait.
    let first = bob.expect("reconnecting", &[]);
    assert_documented(&first, &["attempt", "delay_ms"]);
    assert_eq!(first["attempt"], json!(1));
    let second = bob.expect("reconnecting", &[]);
    assert_eq!(second["attempt"], json!(2));
    assert!(
        second["delay_ms"].as_u64().unwrap() > first["delay_ms"].as_u64().unwrap(),
        "{first} then {second}"
    );
}

/// A server, and carol in the private room `vault` (password `s3cret`).
fn carol_in_vault() -> (tempfile::TempDir, ServerProc, Proc) {
    let root = tmp();
    let server = ServerProc::start(&root.path().join("srv"), &[]);
    let carol = joined(
        &server,
        root.path(),
        "carol",
        "vault",
        &["--create", "--password", "s3cret"],
    );
    (root, server, carol)
}

/// The full-screen UI in a real terminal (tmux): an incoming line does
/// not disturb a half-typed one, a room's password is not echoed, and
/// Ctrl-C leaves the terminal as it was (normal screen, echo and line
/// editing back on).
#[test]
fn the_full_screen_ui_in_a_real_terminal() {
    let (root, server, mut carol) = carol_in_vault();
    let line = format!(
        "{} client --server {} --user alice --data-dir {} --room lobby --create; \
         stty -a; echo ENDED; sleep 60",
        bin(),
        server.addr,
        root.path().join("alice").display()
    );
    let Some(term) = support::tmux::Tmux::start(80, 24, &line) else {
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    };
    term.wait_screen("alice in lobby", |s| {
        s.iter()
            .any(|r| r.contains("You created and joined #lobby"))
    });
    let mut bob = joined(&server, root.path(), "bob", "lobby", &[]);
    term.type_text("half typed");
    bob.send("@all hello alice");
    let screen = term.wait_screen("bob's line", |s| {
        s.iter().any(|r| r.contains("<bob>! hello alice"))
    });
    assert_eq!(
        screen[23], "[#lobby] half typed",
        "the typed line is untouched"
    );
    // The line typed goes on where it was, and goes to the room.
    term.type_text(" and sent");
    term.press(&["Enter"]);
    bob.expect(
        "message",
        &[
            ("from", json!("alice")),
            ("text", json!("half typed and sent")),
        ],
    );
    // A private room: the password is asked, and never shown.
    term.type_text("/join vault");
    term.press(&["Enter"]);
    term.wait_screen("the password prompt", |s| s[23] == "[password for vault]");
    term.type_text("s3cret");
    let screen = term.screen();
    assert!(
        !screen.iter().any(|r| r.contains("s3cret")),
        "the password is on the screen:\n{}",
        screen.join("\n")
    );
    assert_eq!(screen[23], "[password for vault]");
    term.press(&["Enter"]);
    term.wait_screen("alice in vault", |s| {
        s.iter()
            .any(|r| r.contains("You joined #vault, with carol"))
    });
    carol.expect("peer_joined", &[("user", json!("alice"))]);
    // Ctrl-C: the client says goodbye and the terminal is as it was.
    term.press(&["C-c"]);
    let screen = term.wait_screen("the client's end", |s| s.iter().any(|r| r == "ENDED"));
    carol.expect("peer_left", &[("user", json!("alice"))]);
    assert!(!term.alternate_screen(), "still on the alternate screen");
    let modes: Vec<&str> = screen.iter().flat_map(|r| r.split_whitespace()).collect();
    for mode in ["icanon", "echo", "isig"] {
        assert!(
            modes.contains(&mode),
            "{mode} is not back on:\n{}",
            screen.join("\n")
        );
    }
}

/// alice's line-mode client in a real terminal (tmux), through the
/// original's dialogue up to vault's password question; the shell runs
/// `before` it and `after` it (then waits). `None`, saying so, without tmux.
fn line_mode_at_the_password(
    root: &std::path::Path,
    server: &ServerProc,
    before: &str,
    after: &str,
) -> Option<support::tmux::Tmux> {
    let line = format!(
        "{before} {} client --plain --server {} --user alice --data-dir {}; {after}; sleep 60",
        bin(),
        server.addr,
        root.join("alice").display()
    );
    let Some(term) = support::tmux::Tmux::start(100, 30, &line) else {
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return None;
    };
    let has = |text: &'static str| move |s: &[String]| s.iter().any(|r| r.contains(text));
    term.wait_screen("the first question", has("create/join a chatroom"));
    term.type_text("join");
    term.press(&["Enter"]);
    term.wait_screen("which room", has("Which chatroom?"));
    term.type_text("vault");
    term.press(&["Enter"]);
    term.wait_screen("the password question", has("Please enter password:"));
    Some(term)
}

/// The line mode in a real terminal asks a private room's password without
/// echoing it, as the original's dialogue goes, and echoes again after.
#[test]
fn the_line_mode_does_not_echo_a_password() {
    let (root, server, mut carol) = carol_in_vault();
    let Some(term) = line_mode_at_the_password(root.path(), &server, "", "echo ENDED") else {
        return;
    };
    let has = |text: &'static str| move |s: &[String]| s.iter().any(|r| r.contains(text));
    term.type_text("s3cret");
    term.press(&["Enter"]);
    let screen = term.wait_screen("alice in vault", has("You have joined chatroom - vault"));
    assert!(
        !screen.iter().any(|r| r.contains("s3cret")),
        "the password was echoed:\n{}",
        screen.join("\n")
    );
    carol.expect("peer_joined", &[("user", json!("alice"))]);
    term.type_text("@all typed after");
    term.wait_screen("echo back on", has("@all typed after"));
    term.press(&["Enter"]);
    carol.expect("message", &[("text", json!("typed after"))]);
}

/// The client's config file sets its options; a flag given wins; a key
/// the file cannot have is refused, naming it.
#[test]
fn a_config_file_sets_the_clients_options() {
    let root = tmp();
    let server = ServerProc::start(&root.path().join("srv"), &[]);
    let conf = root.path().join("client.toml");
    std::fs::write(
        &conf,
        format!(
            "servers = [\"{}\"]\nuser = \"fromfile\"\ndata_dir = \"{}\"\n",
            server.addr,
            root.path().join("cfg").display()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let mut c = Proc::spawn("cfg", &["client", "--json", "--config", conf]);
    c.expect("connected", &[("user", json!("fromfile"))]);
    assert!(
        root.path().join("cfg").exists(),
        "the data directory of the file"
    );
    let mut c2 = Proc::spawn(
        "flag",
        &["client", "--json", "--config", conf, "--user", "fromflag"],
    );
    c2.expect("connected", &[("user", json!("fromflag"))]);
    let bad = root.path().join("bad.toml");
    std::fs::write(&bad, "sever = [\"x:1\"]\n").unwrap();
    let mut b = Proc::spawn(
        "bad",
        &["client", "--json", "--config", bad.to_str().unwrap()],
    );
    assert_eq!(b.wait_exit().code(), Some(1));
    let err = b.stderr();
    assert!(err.contains("bad.toml") && err.contains("sever"), "{err}");
}

/// `chatdrop demo` plays the original's scenario on this machine and
/// cleans up: without a terminal it prints alice's side as the line mode
/// does; the password is asked, the busy owner refuses, the next one
/// sends, the file is verified, and the temporary folder is gone.
#[test]
fn the_demo_plays_the_scenario_and_cleans_up() {
    let mut demo = Proc::spawn("demo", &["demo"]);
    assert!(demo.wait_exit().success(), "{}", demo.stderr());
    let out = demo.seen.join("\n");
    for step in [
        "whatsapp (private)",
        "room whatsapp is private; give its password",
        "You have joined chatroom - whatsapp",
        "#me|hello everyone!",
        "@bob|hi alice! I have the song you wanted",
        "carol has song.mp3",
        "carol refused song.mp3 (busy)",
        "Fetching song.mp3 (67.1 MB) from bob",
        "Completed file transfer",
    ] {
        assert!(out.contains(step), "no {step:?} in:\n{out}");
    }
    let dir = std::env::temp_dir().join(format!("chatdrop-demo-{}", demo.pid()));
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

/// Ctrl-C at the line mode's password question (echo off) ends the
/// client with the terminal's echo back on.
#[test]
fn ctrl_c_at_the_password_question_gives_the_echo_back() {
    let (root, server, _carol) = carol_in_vault();
    // The shell outlives the Ctrl-C (a trap with a command; the client
    // gets the default action back, as from an interactive shell).
    let before = "trap true INT;";
    let Some(term) = line_mode_at_the_password(root.path(), &server, before, "stty -a; echo ENDED")
    else {
        return;
    };
    term.type_text("s3c");
    term.press(&["C-c"]);
    let screen = term.wait_screen("the client's end", |s| s.iter().any(|r| r == "ENDED"));
    let modes: Vec<&str> = screen.iter().flat_map(|r| r.split_whitespace()).collect();
    assert!(
        modes.contains(&"echo"),
        "echo is off:\n{}",
        screen.join("\n")
    );
    assert!(
        !screen.iter().any(|r| r.contains("s3c")),
        "{}",
        screen.join("\n")
    );
}
