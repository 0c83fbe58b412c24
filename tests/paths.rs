//! How a file finds its way between two clients on networks like the
//! internet's: real processes in network namespaces this test builds, with
//! home routers doing NAT (nftables masquerade). Each test says why it is
//! skipped where the machine cannot make namespaces (not root, no nft).
//!
//! The topology: an "internet" namespace holding the server, linked to
//! each router's outside (10.0.1.0/24, 10.0.2.0/24); each router masquerades
//! its home (192.168.1.0/24, 192.168.2.0/24) behind its outside address.
//! The homes cannot reach each other's addresses; only the routers'
//! outside addresses are routed.

mod support;

use std::path::Path;

use serde_json::Value;
use support::netns::Net;
use support::*;

/// Namespaces for one test, or `None` with the reason printed (the test
/// is then skipped).
fn fresh() -> Option<Net> {
    match Net::new() {
        Ok(net) => Some(net),
        Err(why) => {
            eprintln!("skipped: this machine cannot build the test's networks: {why}");
            None
        }
    }
}

/// The internet, the two routers (masquerading, each socket keeping its
/// port where it can) and the homes behind them; `None` where the machine
/// cannot make them.
fn network() -> Option<Net> {
    network_with(|net, router| net.nat(router, "out"))
}

/// Like [`network`], with `nat` making each router what it is.
fn network_with(nat: impl Fn(&Net, &str) -> Result<(), String>) -> Option<Net> {
    let mut net = fresh()?;
    let setup = |net: &mut Net| -> Result<(), String> {
        for ns in ["inet", "ra", "ha", "rb", "hb"] {
            net.add(ns)?;
        }
        net.link(("inet", "ia", "10.0.1.1/24"), ("ra", "out", "10.0.1.2/24"))?;
        net.link(("inet", "ib", "10.0.2.1/24"), ("rb", "out", "10.0.2.2/24"))?;
        net.link(
            ("ra", "in", "192.168.1.1/24"),
            ("ha", "eth", "192.168.1.2/24"),
        )?;
        net.link(
            ("rb", "in", "192.168.2.1/24"),
            ("hb", "eth", "192.168.2.2/24"),
        )?;
        net.forward("inet")?;
        net.ip("ra", &["route", "add", "default", "via", "10.0.1.1"])?;
        net.ip("rb", &["route", "add", "default", "via", "10.0.2.1"])?;
        net.ip("ha", &["route", "add", "default", "via", "192.168.1.1"])?;
        net.ip("hb", &["route", "add", "default", "via", "192.168.2.1"])?;
        nat(net, "ra")?;
        nat(net, "rb")
    };
    setup(&mut net).unwrap_or_else(|e| panic!("building the namespaces: {e}"));
    Some(net)
}

/// A client in namespace `ns` reaching the server at `server`, in room
/// `room`, sharing `files`.
fn client_at(
    ns: &str,
    server: &str,
    root: &Path,
    user: &str,
    room: &str,
    files: &[(&str, &[u8])],
    extra: &[&str],
) -> Proc {
    let (share, downloads) = folders(root, user, files);
    let dir = root.join(user);
    let (share, dir, downloads) = (share.as_str(), dir.to_str().unwrap(), downloads.as_str());
    let mut args = vec![
        "client",
        "--json",
        "--server",
        server,
        "--user",
        user,
        "--data-dir",
        dir,
        "--room",
        room,
        "--share-dir",
        share,
        "--download-dir",
        downloads,
    ];
    args.extend_from_slice(extra);
    let mut c = Proc::spawn_in(ns, user, &args);
    c.expect("joined", &[("room", Value::from(room))]);
    c
}

/// Where a client lives: its namespace (short name) and the server's
/// address as it reaches it (the port is added).
type At<'a> = (&'a str, &'a str);

/// A server in the internet namespace, listening on `listen`, with its
/// data under `dir`.
fn server_in(net: &Net, listen: &str, dir: &Path) -> ServerProc {
    server_with(net, listen, dir, "")
}

/// Like [`server_in`], with `config` as its configuration file.
fn server_with(net: &Net, listen: &str, dir: &Path, config: &str) -> ServerProc {
    let data = dir.join("server");
    let file = dir.join("server.toml");
    std::fs::write(&file, config).unwrap();
    // The console on: a test may ask it (`relays`).
    let args = ["--config", file.to_str().unwrap()];
    ServerProc::start_in(Some(&net.ns("inet")), listen, &data, &args)
}

/// Bob (at `owner`) shares `data`, the asker (named `asker`, at `at`)
/// asks for it and fetches it; `during` runs once a fifth of the file has
/// arrived. Returns the asker's `transfer_started` and `transfer_done`,
/// having checked the file byte-exact and bob's upload done.
fn fetch(
    net: &Net,
    server: &mut ServerProc,
    dir: &Path,
    owner: At,
    (asker, at): (&str, At),
    data: &[u8],
    during: impl FnOnce(&mut ServerProc),
) -> (Value, Value) {
    let port = server.port().to_string();
    let to_owner = format!("{}:{port}", owner.1);
    let to_asker = format!("{}:{port}", at.1);
    let owner = (owner.0, to_owner.as_str());
    let at = (at.0, to_asker.as_str());
    fetch_via(net, dir, owner, (asker, at), data, || {}, || during(server))
}

/// Like [`fetch`], with each side's server's full address (`At`'s second
/// half with its port): the two may be different servers of a network.
/// `ready` runs once bob is in his room, before the asker comes.
fn fetch_via(
    net: &Net,
    dir: &Path,
    owner: At,
    (asker, at): (&str, At),
    data: &[u8],
    ready: impl FnOnce(),
    during: impl FnOnce(),
) -> (Value, Value) {
    let (owner_ns, asker_ns) = (net.ns(owner.0), net.ns(at.0));
    let files = [("f.bin", data)];
    let mut bob = client_at(&owner_ns, owner.1, dir, "bob", "r", &files, &["--create"]);
    bob.send("@me setshare f.bin");
    bob.expect("share_status", &[]);
    ready();
    let wait = ["--timeout", "5"];
    let mut who = client_at(&asker_ns, at.1, dir, asker, "r", &[], &wait);
    who.send("@all whohas f.bin");
    who.expect("whohas_reply", &[("from", "bob".into())]);
    who.send("@bob getfile f.bin");
    let started = who.expect("transfer_started", &[("from", "bob".into())]);
    let opened = std::time::Instant::now();
    let fifth = data.len() as u64 / 5;
    who.wait_event("a fifth of the file", |v| {
        v["event"] == "transfer_done"
            || v["event"] == "transfer_progress" && v["bytes"].as_u64().unwrap_or(0) > fifth
    });
    during();
    let mut done = who.expect_ever("transfer_done", &[("from", "bob".into())]);
    // How long the file took once its path was open, as seen here.
    done["since_started"] = opened.elapsed().as_secs_f64().into();
    assert_eq!(
        done["id"], started["id"],
        "the same transfer, not a new one"
    );
    let path = done["path"].as_str().unwrap();
    assert!(std::fs::read(path).unwrap() == data, "byte-exact");
    bob.expect("upload_done", &[("to", asker.into())]);
    (started, done)
}

/// Whether `server`'s relays all closed, asking its console a bounded
/// number of times (a `RelayEnd` may still be on its way).
fn relays_closed(server: &mut ServerProc) -> bool {
    (0..50).any(|_| {
        server.console("relays");
        let line = server.proc.wait_line("an answer to relays", |l| {
            l.contains("no transfer is relayed") || l.contains("relayed transfers (")
        });
        let done = line.contains("no transfer is relayed");
        if !done {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        done
    })
}

/// Both routers keep a socket's port whatever the destination (Linux
/// masquerade's usual behaviour): the owner's punches open its router, the
/// asker's `Start`s open hers, and the file moves peer to peer through
/// both, at the owner's router's address. Checked to fail with the
/// owner's punches turned off: "no answer from the peer".
#[test]
fn behind_two_home_routers_the_file_moves_through_punched_holes() {
    let Some(net) = network() else {
        return;
    };
    let dir = tmp();
    let mut server = server_in(&net, "0.0.0.0:0", dir.path());
    let data = random_bytes(3_000_000, 71);
    let alice = ("alice", ("ha", "10.0.1.1"));
    let (started, _) = fetch(
        &net,
        &mut server,
        dir.path(),
        ("hb", "10.0.2.1"),
        alice,
        &data,
        |_| {},
    );
    assert_eq!(started["path"], "punched", "{started}");
    let addr = started["addr"].as_str().unwrap();
    assert!(addr.starts_with("10.0.2.2:"), "bob's router: {started}");
}

/// Two clients behind one router: the server sees both at the router's
/// address, which a router does not loop back to its own home; the
/// owner's own address on the home network, one of its candidates, is.
/// Checked to fail without host candidates (the download waited on the
/// router's address).
#[test]
fn two_clients_behind_one_router_meet_at_their_home_addresses() {
    let Some(mut net) = network() else {
        return;
    };
    // Carol is at home with bob, on a network of her own behind the same
    // router.
    net.add("hc").unwrap();
    net.link(
        ("rb", "in2", "192.168.3.1/24"),
        ("hc", "eth", "192.168.3.2/24"),
    )
    .unwrap();
    net.ip("hc", &["route", "add", "default", "via", "192.168.3.1"])
        .unwrap();
    let dir = tmp();
    let mut server = server_in(&net, "0.0.0.0:0", dir.path());
    let data = random_bytes(1_000_000, 72);
    let carol = ("carol", ("hc", "10.0.2.1"));
    let (started, _) = fetch(
        &net,
        &mut server,
        dir.path(),
        ("hb", "10.0.2.1"),
        carol,
        &data,
        |_| {},
    );
    assert_eq!(started["path"], "direct", "{started}");
    let addr = started["addr"].as_str().unwrap();
    assert!(
        !addr.starts_with("10.0.2.2:"),
        "not the router's address: {started}"
    );
}

/// Two homes with IPv6 only (no IPv4 address anywhere on their side), at
/// a server reached over IPv6: the request, the offer and the file all go
/// over IPv6, and the file arrives byte-exact at the owner's own address.
#[test]
fn over_ipv6_only_the_file_moves_directly() {
    let Some(mut net) = fresh() else {
        return;
    };
    for ns in ["inet", "ha", "hb"] {
        net.add(ns).unwrap();
    }
    net.link(
        ("inet", "ia", "2001:db8:1::1/64"),
        ("ha", "eth", "2001:db8:1::2/64"),
    )
    .unwrap();
    net.link(
        ("inet", "ib", "2001:db8:2::1/64"),
        ("hb", "eth", "2001:db8:2::2/64"),
    )
    .unwrap();
    net.forward("inet").unwrap();
    net.ip(
        "ha",
        &["-6", "route", "add", "default", "via", "2001:db8:1::1"],
    )
    .unwrap();
    net.ip(
        "hb",
        &["-6", "route", "add", "default", "via", "2001:db8:2::1"],
    )
    .unwrap();
    let dir = tmp();
    let mut server = server_in(&net, "[::]:0", dir.path());
    let data = random_bytes(2_000_000, 73);
    let alice = ("alice", ("ha", "[2001:db8:1::1]"));
    let bob = ("hb", "[2001:db8:2::1]");
    let (started, _) = fetch(&net, &mut server, dir.path(), bob, alice, &data, |_| {});
    assert_eq!(started["path"], "direct", "{started}");
    assert!(
        started["addr"]
            .as_str()
            .unwrap()
            .starts_with("[2001:db8:2::2]:"),
        "{started}"
    );
}

/// A home `ns` on a public address, 10.0.3.2, straight on the internet.
fn public_home(net: &mut Net, ns: &str) {
    net.add(ns).unwrap();
    net.link(("inet", "ic", "10.0.3.1/24"), (ns, "eth", "10.0.3.2/24"))
        .unwrap();
    net.ip(ns, &["route", "add", "default", "via", "10.0.3.1"])
        .unwrap();
}

/// What renumbers home `ns` on `net` (`PREFIX.0/24`) from `.2` to `.3`,
/// keeping its routes.
fn renumbering<'n>(net: &'n Net, ns: &'n str, prefix: &'n str) -> impl FnOnce() + 'n {
    for setting in ["all", "eth"] {
        let sysctl = format!("net.ipv4.conf.{setting}.promote_secondaries=1");
        net.sysctl(ns, &sysctl).unwrap();
    }
    move || {
        net.addr(ns, "eth", &format!("{prefix}.3/24")).unwrap();
        let old = format!("{prefix}.2/24");
        net.ip(ns, &["addr", "del", &old, "dev", "eth"]).unwrap();
    }
}

/// Alice's home network renumbers her mid-transfer (her router then maps
/// her socket to another port, since the old mapping is still held, and
/// her old address is gone): bob, on a public address, sees her
/// acknowledgements from the new mapping, proves it with a `Challenge`,
/// moves the session there, and the file arrives byte-exact without
/// starting over. Bob's upload is held to 40 Mbit/s so that the change
/// falls mid-transfer. Checked to fail with frames from other addresses
/// dropped unopened ("the peer stopped answering").
#[test]
fn a_changed_nat_mapping_mid_transfer_moves_the_session() {
    let Some(mut net) = network() else {
        return;
    };
    public_home(&mut net, "pb");
    net.shape("pb", "eth", "40mbit").unwrap();
    let renumber = renumbering(&net, "ha", "192.168.1");
    let dir = tmp();
    let mut server = server_in(&net, "0.0.0.0:0", dir.path());
    let data = random_bytes(16_000_000, 74);
    let alice = ("alice", ("ha", "10.0.1.1"));
    let (started, _) = fetch(
        &net,
        &mut server,
        dir.path(),
        ("pb", "10.0.3.1"),
        alice,
        &data,
        |_| renumber(),
    );
    assert_eq!(started["path"], "direct", "{started}");
}

/// Mid-transfer, the internet starts losing every packet over 1,300
/// bytes towards alice's router, silently (a tunnel on the way whose ICMP
/// is filtered: an MTU black hole), while bob's 1,426-byte packets are on
/// the way. His session
/// notices the timeouts, finds that only the smallest size still gets
/// through, and goes on in it from what alice acknowledged: the file
/// arrives byte-exact, in the same transfer, and the hole did drop
/// packets. Bob's upload is held to 40 Mbit/s so that the hole opens
/// mid-transfer. Checked to fail with the black-hole watch off (alice's
/// download fails: "no answer from the peer").
#[test]
fn a_path_that_starts_losing_large_packets_mid_transfer_still_delivers() {
    let Some(mut net) = network() else {
        return;
    };
    public_home(&mut net, "pb");
    net.shape("pb", "eth", "40mbit").unwrap();
    let dir = tmp();
    let mut server = server_in(&net, "0.0.0.0:0", dir.path());
    let data = random_bytes(16_000_000, 80);
    let alice = ("alice", ("ha", "10.0.1.1"));
    let owner = ("pb", "10.0.3.1");
    let (started, _) = fetch(&net, &mut server, dir.path(), owner, alice, &data, |_| {
        net.black_hole("inet", "ia", 1_300).unwrap()
    });
    assert_eq!(started["path"], "direct", "{started}");
    let drops = net.black_hole_drops("inet").unwrap();
    assert!(drops > 0, "the hole lost nothing: it opened too late");
}

/// Both routers give each destination a port of its own (masquerade
/// `fully-random`): what the server observes is no use to the other side,
/// and no punched hole opens for it. After two seconds without a path the
/// asker asks for the relay, both sides bind it from their transfer
/// sockets, and the file moves through the server's UDP port, byte-exact.
/// The relay's limit of 2 MiB/s per transfer holds: 6 MB take at least
/// (6 MB - its 256 KiB burst) / 2 MiB/s. Checked to fail with the relay
/// turned off ("the server does not relay it").
#[test]
fn behind_routers_that_map_per_destination_the_file_goes_through_the_relay() {
    let Some(net) = network_with(|net, router| net.nat_per_destination(router, "out")) else {
        return;
    };
    let dir = tmp();
    let rate = 2 * 1024 * 1024;
    let config = format!("[relay]\nsession_bytes_per_sec = {rate}\n");
    let mut server = server_with(&net, "0.0.0.0:0", dir.path(), &config);
    let data = random_bytes(6_000_000, 75);
    let alice = ("alice", ("ha", "10.0.1.1"));
    let bob = ("hb", "10.0.2.1");
    // While the file moves, the console's `relays` lists it: both sides
    // bound by UDP, the bytes passed on.
    let relays = |server: &mut ServerProc| {
        server.console("relays");
        let line = server
            .proc
            .wait_line("the relay listed", |l| l.contains(" <-> "));
        assert!(line.contains("alice (udp 10.0.1.2:"), "{line}");
        assert!(line.contains("bob (udp 10.0.2.2:"), "{line}");
    };
    let (started, done) = fetch(&net, &mut server, dir.path(), bob, alice, &data, relays);
    assert_eq!(started["path"], "relay", "{started}");
    assert!(
        started["addr"].as_str().unwrap().starts_with("10.0.1.1:"),
        "the server's address as alice reaches it: {started}"
    );
    let least = (data.len() - 256 * 1024) as f64 / f64::from(rate);
    let seconds = done["since_started"].as_f64().unwrap();
    assert!(
        seconds >= least * 0.95,
        "{seconds} s: faster than the relay allows"
    );
    // Both sides ended it with the transfer.
    assert!(
        relays_closed(&mut server),
        "the relay outlived its transfer"
    );
}

/// Alice and bob are users of two linked servers, alpha and beta, behind
/// routers that map per destination: no hole opens, and alice's server
/// relays. Bob learns where through his own server (`RelayAt`): alpha's
/// address as seen from bob's router, which is not beta's (beta listens
/// on an address of its own), so bob's session must let alice start from
/// there. The file arrives byte-exact through alpha, which lists both
/// legs by UDP while it moves and closes the relay when alice is done.
/// Checked to fail with the relay's address left out of bob's allowed
/// peers (his session refused alice's `Start`s from alpha's address, and
/// the transfer never started).
#[test]
fn between_users_of_two_linked_servers_the_askers_server_relays() {
    let Some(net) = network_with(|net, router| net.nat_per_destination(router, "out")) else {
        return;
    };
    net.addr("inet", "ib", "10.0.2.100/24").unwrap();
    let dir = tmp();
    let linked = |name: &str, listen: &str, links: &[&str]| {
        let mut args = vec!["--name", name, "--network-key", NETWORK_KEY];
        for l in links {
            args.extend(["--link", l]);
        }
        let data = dir.path().join(name);
        let mut s = ServerProc::start_in(Some(&net.ns("inet")), listen, &data, &args);
        s.proc.name = name.to_string();
        s
    };
    let mut alpha = linked("alpha", "0.0.0.0:0", &[]);
    let to_alpha = format!("10.0.1.1:{}", alpha.port());
    let mut beta = linked("beta", "10.0.2.100:0", &[&to_alpha]);
    alpha.wait_in_sync(1);
    beta.wait_in_sync(1);
    let data = random_bytes(3_000_000, 76);
    let to_beta = beta.addr.clone();
    let bob = ("hb", to_beta.as_str());
    let alice = ("alice", ("ha", to_alpha.as_str()));
    let alpha = std::cell::RefCell::new(alpha);
    let relays = || {
        let mut alpha = alpha.borrow_mut();
        alpha.console("relays");
        let line = alpha
            .proc
            .wait_line("the relay listed", |l| l.contains(" <-> "));
        assert!(line.contains("alice (udp 10.0.1.2:"), "{line}");
        assert!(line.contains("bob (udp 10.0.2.2:"), "{line}");
    };
    let ready = || alpha.borrow_mut().wait_room("r");
    let (started, _) = fetch_via(&net, dir.path(), bob, alice, &data, ready, relays);
    let mut alpha = alpha.into_inner();
    assert_eq!(started["path"], "relay", "{started}");
    assert!(
        started["addr"].as_str().unwrap().starts_with("10.0.1.1:"),
        "alpha's address as alice reaches it: {started}"
    );
    assert!(relays_closed(&mut alpha), "the relay outlived its transfer");
}

/// Alice's router drops UDP altogether: her client learns that the
/// server's UDP port does not answer, and once the relay is granted her
/// side of it goes over her TLS connection to the server (the slow path),
/// while bob's goes by UDP. The file arrives byte-exact, and alice is told
/// the path (`tcp`). Checked to fail with both legs taken by UDP.
#[test]
fn with_udp_blocked_at_one_home_the_file_goes_over_tls() {
    let Some(net) = network() else {
        return;
    };
    net.drop_udp("ra").unwrap();
    let dir = tmp();
    let mut server = server_in(&net, "0.0.0.0:0", dir.path());
    let data = random_bytes(1_000_000, 76);
    let alice = ("alice", ("ha", "10.0.1.1"));
    let bob = ("hb", "10.0.2.1");
    let (started, _) = fetch(&net, &mut server, dir.path(), bob, alice, &data, |_| {});
    assert_eq!(started["path"], "tcp", "{started}");
}

/// `send --via` at home behind one router, `recv --via` behind another,
/// the code typed at the prompt: the server's mailbox pairs them, each
/// learns the other's addresses, the sender's punches open its router for
/// the receiver's key exchange, and the file arrives byte-exact at the
/// sender's router's address. Checked to fail without the sender's bare
/// punches ("no answer from the sender").
#[test]
fn a_short_code_brings_a_file_through_two_home_routers() {
    let Some(net) = network() else {
        return;
    };
    let started = by_code(&net, 77);
    assert_eq!(started["path"], "punched", "{started}");
    assert!(
        started["addr"].as_str().unwrap().starts_with("10.0.2.2:"),
        "bob's router: {started}"
    );
}

/// The same through two routers that map per destination: no punched
/// path opens, the receiver asks for the relay over its mailbox
/// connection, and the file moves through the server's UDP port.
/// Checked to fail without the relay on mailbox connections ("the peer
/// stopped answering").
#[test]
fn a_short_code_goes_through_the_relay_where_no_hole_can_be_punched() {
    let Some(net) = network_with(|net, router| net.nat_per_destination(router, "out")) else {
        return;
    };
    let started = by_code(&net, 79);
    assert_eq!(started["path"], "relay", "{started}");
}

/// Bob (behind `rb`) sends 2 MB with `send --via`; alice (behind `ra`)
/// types the code at `recv --via`'s prompt. Returns alice's
/// `transfer_started`, having checked the file byte-exact and bob done.
fn by_code(net: &Net, seed: u64) -> Value {
    let dir = tmp();
    let server = server_in(net, "0.0.0.0:0", dir.path());
    let port = server.port();
    let data = random_bytes(2_000_000, seed);
    let file = dir.path().join("f.bin");
    std::fs::write(&file, &data).unwrap();
    let to_bob = format!("10.0.2.1:{port}");
    let send = ["send", file.to_str().unwrap(), "--via", &to_bob, "--json"];
    let mut bob = Proc::spawn_in(&net.ns("hb"), "send", &send);
    let code = bob.expect("code", &[])["code"]
        .as_str()
        .unwrap()
        .to_string();
    let out = dir.path().join("out");
    let to_alice = format!("10.0.1.1:{port}");
    let recv = [
        "recv",
        "--via",
        &to_alice,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let mut alice = Proc::spawn_in(&net.ns("ha"), "recv", &recv);
    alice.send(&code);
    let started = alice.expect("transfer_started", &[]);
    let done = alice.expect_ever("transfer_done", &[]);
    assert!(std::fs::read(done["path"].as_str().unwrap()).unwrap() == data);
    bob.expect("upload_done", &[]);
    started
}

/// Bob, the owner, at home behind his router; alice on a public address.
/// Bob's home network renumbers him mid-transfer: his router maps his
/// socket to another port (the old mapping is still held), so his data
/// comes to alice from a new address. Her session follows it there with
/// its acknowledgements, and the file arrives byte-exact without starting
/// over. Bob's upload is held to 40 Mbit/s so that the change falls
/// mid-transfer. Checked to fail with data from other addresses dropped
/// unopened ("the peer stopped answering").
#[test]
fn an_owner_whose_nat_mapping_changes_mid_transfer_is_followed() {
    let Some(mut net) = network() else {
        return;
    };
    public_home(&mut net, "pa");
    net.shape("hb", "eth", "40mbit").unwrap();
    let renumber = renumbering(&net, "hb", "192.168.2");
    let dir = tmp();
    let mut server = server_in(&net, "0.0.0.0:0", dir.path());
    let data = random_bytes(16_000_000, 78);
    let alice = ("alice", ("pa", "10.0.3.1"));
    let bob = ("hb", "10.0.2.1");
    let (started, _) = fetch(&net, &mut server, dir.path(), bob, alice, &data, |_| {
        renumber()
    });
    assert_eq!(started["path"], "punched", "{started}");
}

/// The same with UDP dropped at alice's router: her client asks for the
/// relay at once and takes her side of it over her mailbox's TLS
/// connection (`tcp`), bob's by UDP.
#[test]
fn a_short_code_goes_over_tls_where_udp_is_blocked() {
    let Some(net) = network() else {
        return;
    };
    net.drop_udp("ra").unwrap();
    let started = by_code(&net, 80);
    assert_eq!(started["path"], "tcp", "{started}");
}

/// A download from three owners at once, one of whom lies. Bob, carol and
/// dave share one file at home behind one router, whose uplink is held to
/// 20 Mbit/s so that no owner can send the whole file before the others'
/// offers come. Dave's copy changes on disk after he hashed it (same size,
/// same modification time): he offers the announced hash and outline and
/// sends other bytes, sealed as genuine. Every part is checked as it
/// lands: dave is dropped at his first bad part and named in
/// `source_dropped`, his range is fetched from bob and carol, and the file
/// arrives byte-exact with `transfer_done` listing what each sent.
/// (Checked to fail with the part check removed: no `source_dropped`, and
/// dave's bytes in the file.)
#[test]
fn a_download_from_three_owners_survives_a_liar_and_names_him() {
    let Some(net) = network() else {
        return;
    };
    net.shape("hb", "eth", "20mbit").unwrap();
    let dir = tmp();
    let server = server_in(&net, "0.0.0.0:0", dir.path());
    let to_owners = format!("10.0.2.1:{}", server.port());
    let to_alice = format!("10.0.1.1:{}", server.port());
    let film = random_bytes(20 << 20, 80);
    let files = [("film.mkv", &film[..])];
    let mut owners = Vec::new();
    for (i, name) in ["bob", "carol", "dave"].into_iter().enumerate() {
        let extra: &[&str] = if i == 0 { &["--create"] } else { &[] };
        let mut p = client_at(
            &net.ns("hb"),
            &to_owners,
            dir.path(),
            name,
            "r",
            &files,
            extra,
        );
        p.send("@me setshare film.mkv");
        p.expect("share_status", &[]);
        owners.push(p);
    }
    let mut alice = client_at(&net.ns("ha"), &to_alice, dir.path(), "alice", "r", &[], &[]);
    alice.send("@all whohas film.mkv");
    let hash = blake3::hash(&film).to_hex().to_string();
    for _ in 0..3 {
        alice.expect("whohas_reply", &[("blake3", hash.as_str().into())]);
    }
    // Each owner hashed its copy to answer. Dave's now changes under him.
    let copy = dir.path().join("dave-share/film.mkv");
    let modified = std::fs::metadata(&copy).unwrap().modified().unwrap();
    let lie: Vec<u8> = film.iter().map(|b| b ^ 0x5a).collect();
    std::fs::write(&copy, &lie).unwrap();
    let f = std::fs::File::options().write(true).open(&copy).unwrap();
    f.set_modified(modified).unwrap();
    drop(f);

    alice.send("@bob getfile film.mkv");
    let wait = std::time::Duration::from_secs(60);
    let dropped = alice.expect_for(wait, "source_dropped", &[]);
    assert_documented(&dropped, &["id", "file", "from", "reason"]);
    assert_eq!(dropped["from"], "dave", "{dropped}");
    assert_eq!(dropped["file"], "film.mkv", "{dropped}");
    let why = dropped["reason"].as_str().unwrap();
    assert!(why.contains("does not match the file's hash"), "{why}");
    let done = alice.expect_for(wait, "transfer_done", &[]);
    assert!(
        std::fs::read(done["path"].as_str().unwrap()).unwrap() == film,
        "byte-exact"
    );
    assert_eq!(done["blake3"], hash.as_str());
    let sources = done["sources"].as_array().unwrap();
    let sent: u64 = sources.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert_eq!(sent, film.len() as u64, "{done}");
    let mut names: Vec<&str> = sources
        .iter()
        .map(|s| s["from"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["bob", "carol"], "nothing of dave's is kept: {done}");
    // Every owner was reached straight through the router (and again when
    // asked for more): the three requests, prepared at once, each carried
    // its socket's public address. (With one observation token a
    // connection at the server, two of the three could go without it and
    // take the relay, whose slow path sometimes lost dave's `Abort`: a
    // race, seen in the swarm benchmark's logs, that this test catches
    // only when it happens; `observe.rs` tests the cause.)
    let paths: Vec<String> = alice
        .events()
        .iter()
        .filter(|e| e["event"] == "transfer_started")
        .map(|e| format!("{} {}", e["from"], e["path"]))
        .collect();
    for owner in ["bob", "carol", "dave"] {
        let started = format!("\"{owner}\" ");
        assert!(paths.iter().any(|p| p.starts_with(&started)), "{paths:?}");
    }
    assert!(
        paths.iter().all(|p| p.ends_with("\"punched\"")),
        "{paths:?}"
    );
    // Dave's upload ends failed, not done, and he is told why by the
    // receiver's `Abort`.
    let failed = owners[2].expect("error", &[("code", "upload_failed".into())]);
    let why = failed["message"].as_str().unwrap_or_default();
    assert!(why.contains("did not match the file's hash"), "{failed}");
    assert!(
        !owners[2]
            .events()
            .iter()
            .any(|e| e["event"] == "upload_done"),
        "{failed}"
    );
}
