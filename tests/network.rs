//! End-to-end tests of the server network with real processes on loopback:
//! servers linked in a line and in a ring, a failing server, a network split
//! and its healing, and clients picking the closest server and failing over.

mod support;

use std::time::Duration;

use rand::{RngCore, SeedableRng};
use serde_json::{json, Value};
use support::*;

/// The texts of the live `message` events `p` got from `from`, in order.
fn texts_from(p: &Proc, from: &str) -> Vec<String> {
    p.events()
        .iter()
        .filter(|v| v["event"] == "message" && v["from"] == from && v["history"] == false)
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect()
}

/// Three servers in a line, clients at both ends: rooms, messages both
/// ways, the peer list, whohas and a getfile across two hops. A kick at one
/// server of a user connected to another is not done: the console says
/// which server to use, and the user stays.
///
/// Seen failing with the kick of a remote user answered "no user".
#[test]
fn three_servers_in_a_line() {
    let dir = tmp();
    let mut a = ServerProc::linked(&dir.path().join("a"), "alpha", &[], &[]);
    let mut b = ServerProc::linked(&dir.path().join("b"), "beta", &[&a.addr], &[]);
    let mut c = ServerProc::linked(&dir.path().join("c"), "gamma", &[&b.addr], &[]);
    for s in [&mut a, &mut b, &mut c] {
        s.wait_in_sync(2);
    }
    assert!(c.route_to("alpha").contains("next hop beta, 2 hop(s)"));
    b.console("links");
    let link = b.proc.wait_line("links answer", |l| {
        l.starts_with("link ") && l.contains("gamma")
    });
    assert!(link.contains(" up, rtt "), "{link}");

    let mut report = vec![0u8; 300_000];
    rand::rngs::StdRng::seed_from_u64(3).fill_bytes(&mut report);
    let mut alice = sharer(
        &a,
        dir.path(),
        "alice",
        "lobby",
        &[("report.pdf", &report)],
        &["--create"],
    );
    c.wait_room("lobby");
    let mut bob = sharer(&c, dir.path(), "bob", "lobby", &[], &[]);
    let joined = bob
        .events()
        .into_iter()
        .find(|v| v["event"] == "joined")
        .unwrap();
    assert_eq!(joined["peers"], serde_json::json!(["alice"]));
    alice.expect("peer_joined", &[("user", "bob".into())]);

    alice.send("@all hello from alpha");
    bob.expect("message", &[("text", "hello from alpha".into())]);
    bob.send("@alice hi back from gamma");
    let m = alice.expect("message", &[("text", "hi back from gamma".into())]);
    assert_eq!(m["from"], "bob");
    assert_eq!(m["to"], "alice");
    bob.send("@server get_peers");
    let peers = bob.expect("peers", &[]);
    let mut names: Vec<&str> = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["alice", "bob"]);

    a.console("kick bob flooding");
    let answer = a.proc.wait_line("kick answer", |l| {
        ["kicked bob", "bob is ", "no user bob"]
            .iter()
            .any(|p| l.starts_with(p))
    });
    assert_eq!(
        answer,
        "bob is connected to server gamma; use that server's console"
    );
    // alpha sends this line after anything the kick could have sent, and
    // gamma delivers alpha's messages in order: bob is still there.
    alice.send("@all still here, bob?");
    bob.expect("message", &[("text", "still here, bob?".into())]);
    assert!(
        !bob.events()
            .iter()
            .any(|v| v["event"] == "kicked" || v["event"] == "disconnected"),
        "bob stays connected"
    );

    alice.send("@me setshare report.pdf");
    alice.expect("share_status", &[]);
    bob.send("@all whohas report.pdf");
    let reply = bob.expect("whohas_reply", &[("from", "alice".into())]);
    assert_eq!(reply["size"], 300_000);
    bob.send("@alice getfile report.pdf");
    let done = bob.expect("transfer_done", &[("from", "alice".into())]);
    assert!(std::fs::read(done["path"].as_str().unwrap()).unwrap() == report);
    alice.expect("upload_done", &[("to", "bob".into())]);

    // Each line arrived exactly once.
    assert_eq!(bob.count_text("hello from alpha"), 1);
    assert_eq!(alice.count_text("hi back from gamma"), 1);
}

/// Four servers in a ring. The server carrying alpha's traffic to gamma
/// freezes, then later crashes, while alice and carol talk: nothing is lost,
/// nothing doubled, nothing reordered. Thawed, and later restarted, it
/// rejoins and its user comes back.
#[test]
fn a_ring_loses_a_server_and_nothing_else() {
    let dir = tmp();
    let mut a = ServerProc::linked(&dir.path().join("a"), "alpha", &[], &[]);
    let mut b = ServerProc::linked(&dir.path().join("b"), "beta", &[&a.addr], &[]);
    let mut c = ServerProc::linked(&dir.path().join("c"), "gamma", &[&b.addr], &[]);
    let mut d = ServerProc::linked(&dir.path().join("d"), "delta", &[&c.addr, &a.addr], &[]);
    for s in [&mut a, &mut b, &mut c, &mut d] {
        s.wait_in_sync(3);
    }
    let mut alice = joined(&a, dir.path(), "alice", "ring", &["--create"]);
    // The path alpha -> gamma goes through beta or delta (two hops either
    // way); the one it takes is the one to kill.
    let route = a.route_to("gamma");
    let (victim, victim_name, victim_links) = if route.contains("next hop beta") {
        (b, "beta", vec![a.addr.clone()])
    } else {
        assert!(route.contains("next hop delta"), "{route}");
        (d, "delta", vec![c.addr.clone(), a.addr.clone()])
    };
    let mut victim = victim;
    for s in [&mut c, &mut victim] {
        s.wait_room("ring");
    }
    let mut carol = joined(&c, dir.path(), "carol", "ring", &[]);
    let mut dave = joined(&victim, dir.path(), "dave", "ring", &[]);
    alice.expect("peer_joined", &[("user", "carol".into())]);
    alice.expect("peer_joined", &[("user", "dave".into())]);

    // First the worst kind of failure: the server freezes, its sockets stay
    // open and silent, lines sit in its buffers.
    for i in 0..10 {
        alice.send(&format!("@all a{i}"));
        carol.send(&format!("@all c{i}"));
    }
    victim.proc.signal(libc::SIGSTOP);
    for i in 10..20 {
        alice.send(&format!("@all a{i}"));
        carol.send(&format!("@all c{i}"));
    }
    carol.expect("message", &[("text", "a19".into())]);
    alice.expect("message", &[("text", "c19".into())]);
    let left = alice.expect_ever("peer_left", &[("user", "dave".into())]);
    assert_eq!(left["reason"], "lost");
    // Thawed, it delivers what it held: late copies, which change nothing.
    victim.proc.signal(libc::SIGCONT);
    alice.expect("peer_joined", &[("user", "dave".into())]);
    dave.send("@all dave thawed");
    carol.expect("message", &[("text", "dave thawed".into())]);
    alice.expect("message", &[("text", "dave thawed".into())]);

    // Then a crash, mid-conversation.
    for i in 20..30 {
        alice.send(&format!("@all a{i}"));
        carol.send(&format!("@all c{i}"));
    }
    victim.proc.signal(libc::SIGKILL);
    for i in 30..40 {
        alice.send(&format!("@all a{i}"));
        carol.send(&format!("@all c{i}"));
    }
    carol.expect("message", &[("text", "a39".into())]);
    alice.expect("message", &[("text", "c39".into())]);
    let want = |p: &str| (0..40).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    assert_eq!(
        texts_from(&carol, "alice"),
        want("a"),
        "carol got every line once, in order"
    );
    assert_eq!(
        texts_from(&alice, "carol"),
        want("c"),
        "alice got every line once, in order"
    );
    let left = alice.expect_nth(2, "peer_left", &[("user", "dave".into())]);
    assert_eq!(left["reason"], "lost");

    // Restarted on its address and data, it rejoins; dave's client comes
    // back with it.
    let links: Vec<&str> = victim_links.iter().map(String::as_str).collect();
    let mut again = ServerProc::linked_on(&victim.addr, &victim.data_dir, victim_name, &links, &[]);
    again.wait_in_sync(3);
    alice.expect_nth(3, "peer_joined", &[("user", "dave".into())]);
    dave.expect_nth(2, "joined", &[("room", "ring".into())]);
    dave.send("@all dave is back");
    alice.expect("message", &[("text", "dave is back".into())]);
    carol.expect("message", &[("text", "dave is back".into())]);
}

/// A network split in two: each side keeps working and sees the other's
/// users go; both create a room of the same name. Healed, the users come
/// back and the later room is renamed, its members told why; the members of
/// the room that kept the name are told nothing and see nothing of the
/// other (seen failing with lines from other servers delivered to every
/// user, and with the rename told to the members of both rooms).
#[test]
fn a_split_heals_and_settles_a_room_clash() {
    let dir = tmp();
    let mut a = ServerProc::linked(&dir.path().join("a"), "alpha", &[], &[]);
    let cable = Proxy::start(&a.addr, Duration::ZERO);
    let mut b = ServerProc::linked(&dir.path().join("b"), "beta", &[&cable.addr], &[]);
    a.wait_in_sync(1);
    b.wait_in_sync(1);
    let mut alice = joined(&a, dir.path(), "alice", "start", &["--create"]);
    b.wait_room("start");
    let mut bob = joined(&b, dir.path(), "bob", "start", &[]);
    alice.expect("peer_joined", &[("user", "bob".into())]);

    cable.cut();
    let gone = alice.expect("peer_left", &[("user", "bob".into())]);
    assert_eq!(gone["reason"], "lost");
    let gone = bob.expect("peer_left", &[("user", "alice".into())]);
    assert_eq!(gone["reason"], "lost");
    // Each side goes on by itself.
    let mut dave = joined(&a, dir.path(), "dave", "plans", &["--create"]);
    let mut erin = joined(&b, dir.path(), "erin", "plans", &["--create"]);
    alice.send("@all alpha side still works");
    alice.expect("message", &[("text", "alpha side still works".into())]);

    cable.heal();
    a.wait_in_sync(1);
    b.wait_in_sync(1);
    alice.expect("peer_joined", &[("user", "bob".into())]);
    bob.expect("peer_joined", &[("user", "alice".into())]);
    // dave's room was made first and keeps its name; erin's is renamed.
    let renamed = erin.expect("room_renamed", &[("old", "plans".into())]);
    assert_documented(&renamed, &["old", "new", "reason"]);
    let new = renamed["new"].as_str().unwrap().to_string();
    assert!(new.starts_with("plans-"), "{renamed}");
    assert!(renamed["reason"]
        .as_str()
        .unwrap()
        .contains("created earlier"));
    erin.send("@all erin here");
    erin.expect(
        "message",
        &[
            ("text", "erin here".into()),
            ("room", Value::from(new.as_str())),
        ],
    );
    dave.send("/rooms");
    let rooms = dave.expect("rooms", &[]);
    let names: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"plans") && names.contains(&new.as_str()),
        "{rooms}"
    );
    // erin then enters dave's room and speaks. beta sends this after
    // "erin here" and after the settling of the clash, and alpha delivers
    // beta's messages in order: had either reached dave, it came first.
    erin.send("/join plans");
    dave.expect("peer_joined", &[("user", "erin".into())]);
    erin.send("@all erin visits");
    dave.expect(
        "message",
        &[("text", "erin visits".into()), ("room", "plans".into())],
    );
    assert!(
        !dave.events().iter().any(|v| v["event"] == "room_renamed"),
        "the older room keeps its name"
    );
    assert_eq!(dave.count_text("erin here"), 0, "the two rooms stay apart");
}

/// A client given three servers measures each, uses the closest, and when
/// that one fails moves to the next closest and rejoins its room; its peers
/// see it leave and come back.
#[test]
fn the_closest_server_and_failover() {
    let dir = tmp();
    let mut near = ServerProc::linked(&dir.path().join("near"), "near", &[], &[]);
    let mut far = ServerProc::linked(&dir.path().join("far"), "far", &[&near.addr], &[]);
    near.wait_in_sync(1);
    far.wait_in_sync(1);
    // "far" is only reachable across an emulated 100 ms each way.
    let distance = Proxy::start(&far.addr, Duration::from_millis(100));
    let mut alice = joined(&far, dir.path(), "alice", "r", &["--create"]);
    near.wait_room("r");

    let servers = format!("{},{},127.0.0.1:1", distance.addr, near.addr);
    let bob_dir = dir.path().join("bob");
    let mut bob = Proc::spawn(
        "bob",
        &[
            "client",
            "--json",
            "--server",
            &servers,
            "--user",
            "bob",
            "--data-dir",
            bob_dir.to_str().unwrap(),
            "--room",
            "r",
        ],
    );
    let chosen = bob.expect("server_chosen", &[]);
    assert_documented(&chosen, &["server", "candidates"]);
    assert_documented_entries(&chosen, "candidates", &["server", "rtt_ms", "error"]);
    assert_eq!(chosen["server"], Value::from(near.addr.as_str()));
    let c = chosen["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 3);
    assert!(c[1]["rtt_ms"].as_f64().unwrap() > 100.0, "{chosen}");
    assert!(
        c[2]["error"].is_string(),
        "an unreachable server is said so"
    );
    bob.expect("connected", &[("server", Value::from(near.addr.as_str()))]);
    bob.expect("joined", &[("room", "r".into())]);
    alice.expect("peer_joined", &[("user", "bob".into())]);

    near.proc.signal(libc::SIGKILL);
    bob.expect("disconnected", &[]);
    bob.expect(
        "connected",
        &[("server", Value::from(distance.addr.as_str()))],
    );
    bob.expect("joined", &[("room", "r".into())]);
    let left = alice.expect("peer_left", &[("user", "bob".into())]);
    assert_eq!(left["reason"], "lost");
    alice.expect("peer_joined", &[("user", "bob".into())]);
    bob.send("@all still here");
    alice.expect("message", &[("text", "still here".into())]);
}

/// A server with another network key cannot link: the server it dials
/// refuses it, both log why (docs/NETWORK.md, Links), no link comes up and
/// no room crosses.
///
/// Seen failing with the key proofs not checked.
#[test]
fn a_wrong_network_key_is_refused() {
    let dir = tmp();
    let mut a = ServerProc::linked(&dir.path().join("a"), "alpha", &[], &[]);
    let _alice = joined(&a, dir.path(), "alice", "inner", &["--create"]);
    let mut m = ServerProc::start(
        &dir.path().join("m"),
        &[
            "--name",
            "mallory",
            "--network-key",
            "not-the-network-key-0123456",
            "--link",
            &a.addr,
        ],
    );
    m.proc.name = "mallory".into();
    a.proc.wait_stderr("refusal", |l| {
        l.contains("refused a link: wrong network key")
    });
    m.proc.wait_stderr("refusal", |l| {
        l.contains(&format!("link to {}: refused: wrong network key", a.addr))
    });
    for s in [&mut a, &mut m] {
        s.console("links");
        let answer = s.proc.wait_line("links answer", |l| {
            l == "no links" || l.starts_with("link ")
        });
        assert_eq!(answer, "no links", "{}", s.proc.name);
    }
    m.console("rooms");
    let answer = m.proc.wait_line("rooms answer", |l| {
        l == "no rooms" || l.starts_with("inner (")
    });
    assert_eq!(answer, "no rooms");
}

/// Two servers linked over IPv6 (loopback `::1`), a client at each: a
/// line said at one reaches the other once, and the file asked for across
/// the link moves over IPv6 too.
#[test]
fn servers_link_and_carry_chat_and_files_over_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let dir = tmp();
    let mut a = ServerProc::linked_on("[::1]:0", &dir.path().join("a"), "alpha", &[], &[]);
    let links = [a.addr.as_str()];
    let mut b = ServerProc::linked_on("[::1]:0", &dir.path().join("b"), "beta", &links, &[]);
    for s in [&mut a, &mut b] {
        s.wait_in_sync(1);
    }
    assert!(b.route_to("alpha").contains("next hop alpha, 1 hop(s)"));
    let mut report = vec![0u8; 200_000];
    rand::rngs::StdRng::seed_from_u64(6).fill_bytes(&mut report);
    let files = [("r.bin", report.as_slice())];
    let mut alice = sharer(&a, dir.path(), "alice", "lobby", &files, &["--create"]);
    alice.send("@me setshare r.bin");
    alice.expect("share_status", &[]);
    b.wait_room("lobby");
    let mut bob = sharer(&b, dir.path(), "bob", "lobby", &[], &[]);
    bob.send("@all hello over six");
    alice.expect(
        "message",
        &[("from", "bob".into()), ("text", "hello over six".into())],
    );
    bob.send("@all whohas r.bin");
    bob.expect("whohas_reply", &[("from", "alice".into())]);
    bob.send("@alice getfile r.bin");
    let started = bob.expect("transfer_started", &[("from", "alice".into())]);
    assert!(
        started["addr"].as_str().unwrap().starts_with("[::1]:"),
        "{started}"
    );
    let done = bob.expect_ever("transfer_done", &[("from", "alice".into())]);
    assert!(std::fs::read(done["path"].as_str().unwrap()).unwrap() == report);
    assert_eq!(texts_from(&alice, "bob"), ["hello over six"]);
}

/// Several rooms at once across two linked servers: alice (at alpha) is in
/// `work` with bob and in `games` with carol (both at beta); each line goes
/// to its own room only; a direct message reaches dave, who shares no room
/// with anyone; leaving one room is seen in that room alone, and
/// logging out in both.
#[test]
fn several_rooms_and_direct_messages_across_linked_servers() {
    let dir = tmp();
    let mut a = ServerProc::linked(&dir.path().join("a"), "alpha", &[], &[]);
    let mut b = ServerProc::linked(&dir.path().join("b"), "beta", &[&a.addr], &[]);
    for s in [&mut a, &mut b] {
        s.wait_in_sync(1);
    }
    let mut bob = joined(&b, dir.path(), "bob", "work", &["--create"]);
    let mut carol = joined(&b, dir.path(), "carol", "games", &["--create"]);
    let mut dave = client(&b, dir.path(), "dave", &[]);
    dave.expect("connected", &[]);
    a.wait_room("work");
    a.wait_room("games");
    let mut alice = joined(&a, dir.path(), "alice", "work", &[]);
    alice.send("/join games");
    alice.expect("joined", &[("room", json!("games"))]);
    bob.expect("peer_joined", &[("user", json!("alice"))]);
    carol.expect("peer_joined", &[("user", json!("alice"))]);
    let of_kind = |p: &Proc, kind: &str| p.events().iter().filter(|v| v["event"] == kind).count();
    assert_eq!(
        of_kind(&bob, "peer_left"),
        0,
        "joining games did not take alice out of work"
    );
    // Lines go to the room joined last; /join of a room one is in makes
    // it the one.
    alice.send("@all who wants a game?");
    carol.expect(
        "message",
        &[
            ("room", json!("games")),
            ("text", json!("who wants a game?")),
        ],
    );
    alice.send("/join work");
    alice.expect_nth(2, "joined", &[("room", json!("work"))]);
    alice.send("@all standup in five");
    bob.expect(
        "message",
        &[("room", json!("work")), ("text", json!("standup in five"))],
    );
    // A direct message goes to anyone online, sharing a room or not.
    alice.send("@dave are you around?");
    let m = dave.expect("message", &[("text", json!("are you around?"))]);
    assert_eq!(
        (m["from"].clone(), m["room"].clone()),
        (json!("alice"), json!(null))
    );
    dave.send("@alice yes");
    alice.expect(
        "message",
        &[("from", json!("dave")), ("text", json!("yes"))],
    );
    // So does an offer of files, and the files follow it from server to
    // server's user, peer to peer.
    let plans = dir.path().join("plans");
    std::fs::create_dir_all(plans.join("v2")).unwrap();
    let (one, two) = (b"first draft\n".repeat(5000), b"second\n".repeat(300));
    std::fs::write(plans.join("draft.txt"), &one).unwrap();
    std::fs::write(plans.join("v2/final.txt"), &two).unwrap();
    alice.send(&format!("/send dave {}", plans.display()));
    alice.expect("offer_sent", &[("to", json!("dave")), ("files", json!(2))]);
    let offer = dave.expect("offer_received", &[("from", json!("alice"))]);
    dave.send(&format!("/accept {}", offer["offer"]));
    dave.expect("offer_finished", &[("received", json!(2))]);
    alice.expect("offer_answered", &[("accepted", json!(true))]);
    let got = dir.path().join("dave/downloads/plans");
    assert!(std::fs::read(got.join("draft.txt")).unwrap() == one);
    assert!(std::fs::read(got.join("v2/final.txt")).unwrap() == two);
    // Nobody heard a room not theirs.
    assert_eq!(bob.count_text("who wants a game?"), 0);
    assert_eq!(carol.count_text("standup in five"), 0);
    assert_eq!(
        dave.count_text("standup in five") + dave.count_text("who wants a game?"),
        0
    );
    // Leaving games is seen in games alone.
    alice.send("/leave games");
    alice.expect("left", &[("room", json!("games"))]);
    carol.expect(
        "peer_left",
        &[("room", json!("games")), ("user", json!("alice"))],
    );
    alice.send("@all still in work");
    bob.expect("message", &[("text", json!("still in work"))]);
    // Quitting is seen in the room left.
    alice.send("/quit");
    bob.expect(
        "peer_left",
        &[("room", json!("work")), ("user", json!("alice"))],
    );
    assert_eq!(of_kind(&bob, "peer_left"), 1);
}

/// A room's history pages back end to end across linked servers: bob, at
/// beta, joins a room alice (at alpha) talked in, gets the latest 50 lines
/// on joining and the earlier ones with `/history`, each once, in order.
#[test]
fn history_pages_back_across_linked_servers() {
    let dir = tmp();
    let quiet = ["--no-rate-limits"];
    let mut a = ServerProc::linked(&dir.path().join("a"), "alpha", &[], &quiet);
    let mut b = ServerProc::linked(&dir.path().join("b"), "beta", &[&a.addr], &quiet);
    for s in [&mut a, &mut b] {
        s.wait_in_sync(1);
    }
    let mut alice = joined(&a, dir.path(), "alice", "log", &["--create"]);
    for i in 1..=120 {
        alice.send(&format!("@all entry {i}"));
    }
    alice.expect("message", &[("text", json!("entry 120"))]);
    b.wait_room("log");
    let mut bob = client(&b, dir.path(), "bob", &[]);
    bob.expect("connected", &[]);
    // The lines reach beta as they are said; bob joins once all are there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let replayed = loop {
        bob.send("/join log");
        let joined = bob.expect_nth(
            bob.events()
                .iter()
                .filter(|v| v["event"] == "joined")
                .count()
                + 1,
            "joined",
            &[],
        );
        assert_eq!(joined["room"], "log");
        let last = bob
            .events()
            .into_iter()
            .filter(|v| v["event"] == "message" && v["history"] == true)
            .map(|v| v["seq"].as_u64().unwrap())
            .max();
        if last == Some(120) || std::time::Instant::now() > deadline {
            break bob
                .events()
                .into_iter()
                .filter(|v| v["event"] == "message" && v["history"] == true)
                .map(|v| v["seq"].as_u64().unwrap())
                .collect::<std::collections::BTreeSet<u64>>();
        }
        bob.send("/leave log");
        bob.expect("left", &[]);
    };
    assert_eq!(replayed, (71..=120).collect(), "the latest 50 on joining");
    bob.send("/history");
    let page = bob.expect("history", &[("room", json!("log"))]);
    assert_documented(&page, &["room", "lines", "more"]);
    assert_documented_entries(&page, "lines", &["from", "text", "ts", "seq"]);
    let seqs: Vec<u64> = page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=70).collect::<Vec<u64>>());
    assert_eq!(page["lines"][0]["text"], "entry 1");
    assert_eq!(page["lines"][0]["from"], "alice");
    assert_eq!(page["more"], false);
}
