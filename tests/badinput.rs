//! Bad input, end to end: garbage on a server-to-server link, forged and
//! replayed datagrams at a live transfer, file names no peer can be served
//! under, a peer that lies about what it serves, and a password guesser
//! with many names and addresses. Each case asserts its exact outcome (a
//! clear error, or a silent drop), and that the server and everybody else
//! carry on. Real processes, real TLS, real sockets, on loopback only; all
//! randomness is seeded.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatdrop_proto::auth::{
    link_pake_identity, link_transcript, login_transcript, BINDING_LEN, EXPORTER_LABEL,
    LINK_EXPORTER_LABEL,
};
use chatdrop_proto::limits::{LINK_PROTOCOL_VERSION, MAX_LINK_FRAME, PROTOCOL_VERSION};
use chatdrop_proto::link::{server_id_of, LinkHello, LinkMsg, Lsa, Routed, RoutedBody};
use chatdrop_proto::{decode, encode_frame, ClientMsg, ErrorCode, ServerMsg, Target};
use chatdrop_transfer::Ticket;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{json, Value};
use sha2::Sha256;
use spake2::{Ed25519Group, Spake2};
use support::peer::RawPeer;
use support::raw::*;
use support::*;

fn write_raw(s: &mut RawTls, bytes: &[u8]) {
    s.write_all(bytes).unwrap();
    s.flush().unwrap();
}

/// The next frame's payload, or `None` once the other side closed.
fn read_payload(s: &mut RawTls) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let len = u32::from_be_bytes(len) as usize;
    assert!(
        len <= MAX_LINK_FRAME,
        "a frame of {len} bytes from the server"
    );
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some(payload)
}

/// Every frame until the server closes; the last must be the refusal it
/// sends a dialler (a client-protocol error), whose message is returned.
fn link_refusal(s: &mut RawTls) -> String {
    let mut last = None;
    while let Some(p) = read_payload(s) {
        last = Some(p);
    }
    let last = last.expect("a refusal before the server closed");
    match decode::<ServerMsg>(&last) {
        Ok(ServerMsg::Error {
            code: ErrorCode::AuthFailed,
            message,
        }) => message,
        other => panic!("not a refusal: {other:?}"),
    }
}

/// A connection to a server's port that says it is a server of the test
/// network: TLS, its `LinkHello` (as `hello` leaves it) and nothing more.
struct Dialling {
    s: RawTls,
    binding: [u8; BINDING_LEN],
    mine: LinkHello,
    key: SigningKey,
}

fn link_hello(addr: &str, name: &str, seed: u64, hello: impl FnOnce(&mut LinkHello)) -> Dialling {
    let key = SigningKey::from_bytes(&random_bytes(32, seed).try_into().unwrap());
    let mut s = raw_tls(addr);
    s.conn.complete_io(&mut s.sock).unwrap();
    let mut binding = [0u8; BINDING_LEN];
    s.conn
        .export_keying_material(&mut binding, LINK_EXPORTER_LABEL, None)
        .unwrap();
    let mut mine = LinkHello {
        version: LINK_PROTOCOL_VERSION,
        id: server_id_of(&key.verifying_key().to_bytes()),
        name: name.to_string(),
        incarnation: 1,
        nonce: random_bytes(32, seed + 1).try_into().unwrap(),
    };
    hello(&mut mine);
    write_raw(
        &mut s,
        &encode_frame(&ClientMsg::LinkHello(mine.clone())).unwrap(),
    );
    Dialling {
        s,
        binding,
        mine,
        key,
    }
}

impl Dialling {
    fn pake(&self) -> (Spake2<Ed25519Group>, Vec<u8>) {
        Spake2::<Ed25519Group>::start_symmetric(
            &spake2::Password::new(NETWORK_KEY.as_bytes()),
            &spake2::Identity::new(&link_pake_identity(&self.binding)),
        )
    }

    /// Completes the handshake as a genuine server of the network would:
    /// its `Pake`, the answerer's hello and `Pake`, its proof, the
    /// answerer's proof. The link is up at the answerer from then on.
    fn complete(mut self) -> Dialling {
        let (pake, msg) = self.pake();
        write_raw(&mut self.s, &encode_frame(&LinkMsg::Pake { msg }).unwrap());
        let peer = match decode::<LinkMsg>(&read_payload(&mut self.s).unwrap()) {
            Ok(LinkMsg::Hello(h)) => h,
            other => panic!("no hello: {other:?}"),
        };
        let Ok(LinkMsg::Pake { msg }) = decode::<LinkMsg>(&read_payload(&mut self.s).unwrap())
        else {
            panic!("no key exchange");
        };
        let shared = pake.finish(&msg).unwrap();
        let public = self.key.verifying_key().to_bytes();
        let t = link_transcript(
            &self.binding,
            &self.mine.nonce,
            &peer.nonce,
            &self.mine.id,
            &public,
            true,
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&shared).unwrap();
        mac.update(&t);
        let proof = LinkMsg::Proof {
            mac: mac.finalize().into_bytes().into(),
            key: public,
            sig: self.key.sign(&t).to_bytes().to_vec(),
        };
        write_raw(&mut self.s, &encode_frame(&proof).unwrap());
        match decode::<LinkMsg>(&read_payload(&mut self.s).unwrap()) {
            Ok(LinkMsg::Proof { .. }) => self,
            other => panic!("no proof from the answerer: {other:?}"),
        }
    }

    /// Sends `Ping(n)` and reads (past the server's own traffic) until its
    /// `Pong(n)`: the link is up and read.
    fn ping(&mut self, n: u64) {
        write_raw(&mut self.s, &encode_frame(&LinkMsg::Ping(n)).unwrap());
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no pong {n}");
            let p = read_payload(&mut self.s).expect("the link is still up");
            if decode::<LinkMsg>(&p).ok() == Some(LinkMsg::Pong(n)) {
                return;
            }
        }
    }
}

/// Waits for the server's log line about link peer `name` that contains
/// `what`, and returns it.
fn logged(server: &mut ServerProc, name: &str, what: &str) -> String {
    let tag = [format!("peer={name} "), format!("server={name}")];
    server.proc.wait_stderr(what, |l| {
        tag.iter().any(|t| l.contains(t.as_str())) && l.contains(what)
    })
}

/// Garbage on a link, live. A test dials server alpha (linked to beta,
/// with alice on alpha and bob on beta in one room) as a server of the
/// network would, and then says what no server would:
/// - during the handshake (before its proof): garbage, an oversized frame,
///   a truncated frame, a proof before the key exchange, a malformed key
///   exchange, another protocol version, a name with an escape sequence:
///   alpha refuses each, telling the dialler and logging the same reason;
/// - after a complete handshake (the link up): a garbage frame, a length
///   over the link limit, a truncated frame, handshake frames again: alpha
///   drops that link, logging why ("link down: ...");
/// - well-formed nonsense (a record with a bad signature, a frame routed
///   to no server): dropped unseen, the link stays up and answers a ping.
///
/// Through all of it the alpha-beta link stays up and alice and bob chat
/// across it, every line once.
#[test]
fn garbage_on_a_link_drops_that_link_only() {
    let dir = tmp();
    let mut alpha = ServerProc::linked(&dir.path().join("a"), "alpha", &[], &[]);
    let mut beta = ServerProc::linked(&dir.path().join("b"), "beta", &[&alpha.addr], &[]);
    alpha.wait_in_sync(1);
    beta.wait_in_sync(1);
    let mut alice = joined(&alpha, dir.path(), "alice", "lobby", &["--create"]);
    beta.wait_room("lobby");
    let mut bob = joined(&beta, dir.path(), "bob", "lobby", &[]);
    let mut round = 0;
    let mut chat = |alice: &mut Proc, bob: &mut Proc| {
        round += 1;
        let line = format!("still linked {round}");
        alice.send(&format!("@all {line}"));
        bob.expect("message", &[("text", json!(line))]);
    };
    chat(&mut alice, &mut bob);

    // During the handshake, each on its own connection.
    let frame = |m: &LinkMsg| encode_frame(m).unwrap().to_vec();
    let mut oversized = vec![0, 1, 0, 0];
    oversized.extend_from_slice(&[7; 100]);
    let proof = LinkMsg::Proof {
        mac: [1; 32],
        key: [2; 32],
        sig: vec![3; 64],
    };
    let during: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "hs-garbage",
            vec![0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef],
            "the other side does not speak the link protocol",
        ),
        (
            "hs-oversized",
            oversized,
            "frame of 65536 bytes is over the 16384-byte limit",
        ),
        (
            "hs-proof-first",
            frame(&proof),
            "expected the other server's key exchange",
        ),
        (
            "hs-bad-pake",
            frame(&LinkMsg::Pake { msg: vec![0xff; 5] }),
            "malformed key exchange: ",
        ),
    ];
    for (i, (name, bytes, why)) in during.iter().enumerate() {
        let mut d = link_hello(&alpha.addr, name, 100 + i as u64, |_| {});
        write_raw(&mut d.s, bytes);
        let told = link_refusal(&mut d.s);
        assert!(told.starts_with(why), "{name}: told {told:?}");
        logged(&mut alpha, name, &format!("refused a link: {why}"));
    }
    // A truncated frame, then nothing: the handshake's deadline.
    let mut d = link_hello(&alpha.addr, "hs-truncated", 110, |_| {});
    write_raw(&mut d.s, &[0, 0, 0, 100, 1, 2, 3, 4, 5]);
    assert_eq!(link_refusal(&mut d.s), "the handshake timed out");
    logged(
        &mut alpha,
        "hs-truncated",
        "refused a link: the handshake timed out",
    );
    // Hellos no server of this network sends.
    type HelloEdit = Box<dyn Fn(&mut LinkHello)>;
    let bad_hellos: Vec<(&str, HelloEdit, String)> = vec![
        (
            "hs-version",
            Box::new(|h: &mut LinkHello| h.version = 999),
            format!("link protocol version 999 (this server speaks {LINK_PROTOCOL_VERSION})"),
        ),
        (
            "hs-name",
            Box::new(|h: &mut LinkHello| h.name = "evil\u{1b}[2J".into()),
            "server name refused: ".into(),
        ),
    ];
    for (i, (tag, hello, why)) in bad_hellos.iter().enumerate() {
        let mut d = link_hello(&alpha.addr, tag, 120 + i as u64, hello);
        let told = link_refusal(&mut d.s);
        assert!(told.starts_with(why.as_str()), "{tag}: told {told:?}");
        alpha
            .proc
            .wait_stderr(why, |l| l.contains(&format!("refused a link: {why}")));
    }
    chat(&mut alice, &mut bob);

    // After a complete handshake: the link is up, then broken.
    let after: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "up-garbage",
            vec![0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef],
            "link down: bad frame: ",
        ),
        (
            "up-oversized",
            vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            "link down: frame of 4294967295 bytes is over the 16777216-byte limit",
        ),
        (
            "up-truncated",
            vec![0, 0, 0x03, 0xe8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            "link down: silent for 1000 ms",
        ),
        (
            "up-hello-again",
            encode_frame(&LinkMsg::Hello(LinkHello {
                version: LINK_PROTOCOL_VERSION,
                id: [9; 16],
                name: "again".into(),
                incarnation: 1,
                nonce: [0; 32],
            }))
            .unwrap()
            .to_vec(),
            "link down: unexpected handshake frame",
        ),
        (
            "up-pake-again",
            encode_frame(&LinkMsg::Pake { msg: vec![1; 33] })
                .unwrap()
                .to_vec(),
            "link down: unexpected handshake frame",
        ),
    ];
    for (i, (name, bytes, why)) in after.iter().enumerate() {
        let mut d = link_hello(&alpha.addr, name, 200 + i as u64, |_| {}).complete();
        write_raw(&mut d.s, bytes);
        let line = logged(&mut alpha, name, "link down: ");
        assert!(line.contains(why), "{name}: {line}");
        // Alpha closed it: whatever it still sent, then the end.
        let deadline = Instant::now() + WAIT;
        while read_payload(&mut d.s).is_some() {
            assert!(Instant::now() < deadline, "{name}: still open");
        }
    }
    chat(&mut alice, &mut bob);

    // Well-formed nonsense: dropped, and the link carries on.
    let mut d = link_hello(&alpha.addr, "up-nonsense", 300, |_| {}).complete();
    let forged = Lsa {
        origin: d.mine.id,
        key: d.key.verifying_key().to_bytes(),
        name: "up-nonsense".into(),
        incarnation: 1,
        seq: 1,
        neighbors: vec![([5; 16], 1)],
        sig: vec![0; 64],
    };
    let nowhere = Routed {
        src: d.mine.id,
        dst: [0xee; 16],
        ttl: 3,
        body: RoutedBody::Resync { src_inc: 1 },
    };
    write_raw(&mut d.s, &frame(&LinkMsg::Lsa(forged)));
    write_raw(&mut d.s, &frame(&LinkMsg::Routed(Box::new(nowhere))));
    d.ping(42);
    d.ping(43);
    drop(d);
    let line = logged(&mut alpha, "up-nonsense", "link down: ");
    assert!(!line.contains("bad frame"), "{line}");

    // Beta is still linked, alice and bob still chat, every line once.
    chat(&mut alice, &mut bob);
    alpha.console("links");
    let link = alpha.proc.wait_line("links answer", |l| {
        l.starts_with("link ") && l.contains("beta")
    });
    assert!(link.contains(" up, "), "{link}");
    for i in 1..=4 {
        assert_eq!(bob.count_text(&format!("still linked {i}")), 1);
    }
}

/// A UDP relay between `chatdrop recv` and `chatdrop send` that forwards
/// everything and adds, from the receiver's own address, replays of
/// earlier datagrams, truncated copies and copies with a bit flipped; a
/// stranger's socket meanwhile sends garbage, fake hellos and replays of
/// the receiver's datagrams straight to the sender's port. Counts what it
/// added, and what the stranger got back.
struct Mischief {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    added: Arc<AtomicU64>,
    stranger_sent: Arc<AtomicU64>,
    stranger_got: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Most datagrams each thread adds.
const MISCHIEF_MAX: u64 = 20_000;

impl Mischief {
    fn start(sender: SocketAddr, seed: u64) -> Mischief {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&front, &back, &stranger] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let added = Arc::new(AtomicU64::new(0));
        let stranger_sent = Arc::new(AtomicU64::new(0));
        let stranger_got = Arc::new(AtomicU64::new(0));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        // Datagrams from the receiver, kept for replays.
        let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let mut threads = Vec::new();

        // What a damaged copy of `d` may be.
        fn damaged(rng: &mut rand::rngs::StdRng, d: &[u8]) -> Vec<u8> {
            let mut c = d.to_vec();
            if rng.gen_bool(0.5) && !c.is_empty() {
                c.truncate(rng.gen_range(0..c.len()));
            } else if !c.is_empty() {
                let i = rng.gen_range(0..c.len());
                c[i] ^= 1 << rng.gen_range(0..8);
            }
            c
        }

        // Receiver -> sender, with replays and damaged copies.
        {
            let (front, back) = (front.try_clone().unwrap(), back.try_clone().unwrap());
            let (stop, added, client, seen) =
                (stop.clone(), added.clone(), client.clone(), seen.clone());
            threads.push(std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    *client.lock().unwrap() = Some(from);
                    let d = buf[..n].to_vec();
                    let _ = back.send_to(&d, sender);
                    let mut seen = seen.lock().unwrap();
                    if seen.len() < 4096 {
                        seen.push(d.clone());
                    }
                    if added.load(Ordering::Relaxed) < MISCHIEF_MAX {
                        let old = seen[rng.gen_range(0..seen.len())].clone();
                        let _ = back.send_to(&old, sender);
                        let _ = back.send_to(&damaged(&mut rng, &d), sender);
                        added.fetch_add(2, Ordering::Relaxed);
                    }
                }
            }));
        }
        // Sender -> receiver, with replays and damaged copies.
        {
            let (front, back) = (front.try_clone().unwrap(), back.try_clone().unwrap());
            let (stop, added, client) = (stop.clone(), added.clone(), client.clone());
            threads.push(std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 1);
                let mut buf = vec![0u8; 65_536];
                let mut kept: Vec<Vec<u8>> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = back.recv_from(&mut buf) else {
                        continue;
                    };
                    let Some(c) = *client.lock().unwrap() else {
                        continue;
                    };
                    if from != sender {
                        continue;
                    }
                    let d = buf[..n].to_vec();
                    let _ = front.send_to(&d, c);
                    if kept.len() < 4096 {
                        kept.push(d.clone());
                    }
                    if added.load(Ordering::Relaxed) < MISCHIEF_MAX && rng.gen_bool(0.2) {
                        let old = kept[rng.gen_range(0..kept.len())].clone();
                        let _ = front.send_to(&old, c);
                        let _ = front.send_to(&damaged(&mut rng, &d), c);
                        added.fetch_add(2, Ordering::Relaxed);
                    }
                }
            }));
        }
        // A stranger, straight at the sender's port.
        {
            let (stop, sent, got, seen) = (
                stop.clone(),
                stranger_sent.clone(),
                stranger_got.clone(),
                seen.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 2);
                let mut buf = vec![0u8; 65_536];
                let lens = [0usize, 1, 2, 13, 45, 49, 100, 1200, 1500, 9000, 65_507];
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) && count < MISCHIEF_MAX {
                    count += 1;
                    let d = match count % 4 {
                        // Noise of every length, up to the largest datagram.
                        0 => {
                            let mut d = vec![0u8; lens[rng.gen_range(0..lens.len())]];
                            rng.fill_bytes(&mut d);
                            d
                        }
                        // A hello without the ticket's secret.
                        1 => {
                            let mut d = vec![0u8; 49];
                            rng.fill_bytes(&mut d);
                            d[0] = 0xd1;
                            d
                        }
                        // The receiver's own datagrams, from elsewhere.
                        _ => {
                            let seen = seen.lock().unwrap();
                            if seen.is_empty() {
                                continue;
                            }
                            seen[rng.gen_range(0..seen.len())].clone()
                        }
                    };
                    if stranger.send_to(&d, sender).is_ok() {
                        sent.fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                    // Whatever comes back (a repeated hello's reply at most).
                    stranger.set_nonblocking(true).unwrap();
                    while let Ok((n, _)) = stranger.recv_from(&mut buf) {
                        got.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    stranger.set_nonblocking(false).unwrap();
                    if count.is_multiple_of(64) {
                        // Pace it: the sender is to be pestered, not starved.
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }));
        }
        Mischief {
            addr,
            stop,
            added,
            stranger_sent,
            stranger_got,
            threads,
        }
    }
}

impl Drop for Mischief {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Forged, replayed, truncated and unsolicited datagrams at a live
/// transfer: between `chatdrop recv` and `chatdrop send`, copies of earlier
/// datagrams are replayed and damaged copies (cut short, a bit flipped)
/// added, both ways, from the very addresses of the two ends; a stranger
/// sends noise of every length up to 65,507 bytes, hellos without the
/// ticket's secret and the receiver's own datagrams to the sender's port.
/// The file arrives byte-exact, the sender finishes its upload and exits
/// cleanly, neither end panics, and the stranger gets back no more than it
/// sent (a repeated hello's reply at most).
#[test]
fn forged_and_replayed_datagrams_at_a_live_transfer_are_dropped() {
    let dir = tmp();
    let file = dir.path().join("data.bin");
    let data = random_bytes(2_000_000, 31);
    std::fs::write(&file, &data).unwrap();
    let extra = ["-w", "32", "--max-packet", "1200"];
    let mut args = vec![
        "send",
        file.to_str().unwrap(),
        "--bind",
        "127.0.0.1:0",
        "--json",
    ];
    args.extend_from_slice(&extra);
    let mut s = Proc::spawn("send", &args);
    let t = s.expect("ticket", &[]);
    let mut ticket = Ticket::decode(t["ticket"].as_str().unwrap()).unwrap();
    let mischief = Mischief::start(ticket.addr, 77);
    ticket.addr = mischief.addr;
    let out = dir.path().join("out");
    let mut r = Proc::spawn(
        "recv",
        &[
            "recv",
            &ticket.encode(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    let done = r.expect_progressing("transfer_done", &[]);
    assert!(r.wait_exit().success(), "{}", r.stderr());
    assert!(std::fs::read(done["path"].as_str().unwrap()).unwrap() == data);
    let up = s.expect("upload_done", &[]);
    assert_eq!(up["bytes"], json!(data.len()));
    assert!(s.wait_exit().success(), "{}", s.stderr());
    let added = mischief.added.load(Ordering::Relaxed);
    drop(mischief);
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["data.bin"], "only the file, under its name");
    assert!(added > 100, "the relay did its worst: {added} added");
}

/// The stranger of [`forged_and_replayed_datagrams_at_a_live_transfer_are_dropped`]
/// (noise, hellos without the ticket's secret, the receiver's datagrams
/// from another address) at a smaller transfer, counted: whatever the
/// sender answers it (a repeated hello's reply at most) is no more than it
/// sent, so the port cannot amplify a flood; the transfer still completes
/// byte-exact and the sender exits cleanly.
#[test]
fn a_stranger_at_a_transfer_port_gets_back_no_more_than_it_sent() {
    let dir = tmp();
    let file = dir.path().join("small.bin");
    let data = random_bytes(300_000, 32);
    std::fs::write(&file, &data).unwrap();
    let mut s = Proc::spawn(
        "send",
        &[
            "send",
            file.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
            "--json",
        ],
    );
    let t = s.expect("ticket", &[]);
    let mut ticket = Ticket::decode(t["ticket"].as_str().unwrap()).unwrap();
    let mischief = Mischief::start(ticket.addr, 78);
    ticket.addr = mischief.addr;
    let out = dir.path().join("out");
    let mut r = Proc::spawn(
        "recv",
        &[
            "recv",
            &ticket.encode(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    let done = r.expect_progressing("transfer_done", &[]);
    assert!(std::fs::read(done["path"].as_str().unwrap()).unwrap() == data);
    assert!(s.wait_exit().success(), "{}", s.stderr());
    let sent = mischief.stranger_sent.load(Ordering::Relaxed);
    let got = mischief.stranger_got.load(Ordering::Relaxed);
    drop(mischief);
    assert!(sent > 0);
    assert!(got <= sent, "the stranger sent {sent} bytes and got {got}");
}

/// The `share_status` files of `p`'s last answer.
fn listed(p: &mut Proc) -> Vec<String> {
    p.send("@me getsharestatus");
    let n = p
        .events()
        .iter()
        .filter(|v| v["event"] == "share_status")
        .count();
    let v = p.expect_nth(n + 1, "share_status", &[]);
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap().to_string())
        .collect()
}

/// Names no peer can be served under, in a share folder shared whole
/// (`setglobalshare`): a name that is not UTF-8 on disk, names with a
/// newline or a backslash, and a path of 3,000 bytes (over the 1,024 a
/// file name may have on the wire). The client lists none of them in
/// `share_status` (before: the first as its lossy spelling, the backslash
/// as a `/`, all as shared) and does not crash; the other files, a
/// 250-byte name among them, are listed and served byte-exact. Names a
/// peer sends that no file can have, NUL, a newline or 4,096 bytes, are
/// refused by the server (`bad_request`, saying why) before the owner
/// hears of them; `..` and absolute names in `whohas` go unanswered.
#[test]
fn unservable_file_names_are_not_offered_and_the_rest_are_served() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
    let long = format!("{}.txt", "l".repeat(246));
    let good = random_bytes(50_000, 41);
    let mut bob = sharer(
        &server,
        dir.path(),
        "bob",
        "r",
        &[
            ("good.bin", &good),
            (&long, b"long name"),
            ("sub/ok.txt", b"ok"),
            ("line\nbreak.txt", b"nl"),
            ("back\\slash.txt", b"bs"),
        ],
        &["--create"],
    );
    let share = dir.path().join("bob-share");
    let not_utf8 = std::ffi::OsStr::from_bytes(b"bad\xff\xfe.bin");
    std::fs::write(share.join(not_utf8), b"not utf-8").unwrap();
    std::fs::create_dir_all(share.join(std::ffi::OsStr::from_bytes(b"dir\xff"))).unwrap();
    std::fs::write(
        share.join(std::ffi::OsStr::from_bytes(b"dir\xff/inner.txt")),
        b"inner",
    )
    .unwrap();
    let mut deep = share.clone();
    for _ in 0..14 {
        deep.push("d".repeat(200));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("deep.txt"), b"deep").unwrap();
    bob.send("@me setglobalshare");
    bob.expect("share_status", &[("global", true.into())]);
    let mut want = vec!["good.bin".to_string(), long.clone(), "sub/ok.txt".into()];
    want.sort();
    assert_eq!(listed(&mut bob), want, "only the names a peer can ask for");

    let mut mallory = RawPeer::join(&server, "mallory", "r");
    let four_k = "x".repeat(4096);
    for (file, why) in [
        ("a\0b.txt", "file name"),
        ("line\nbreak.txt", "file name"),
        (
            four_k.as_str(),
            "a file name has 1 to 1024 bytes (got 4096)",
        ),
    ] {
        for msg in [
            ClientMsg::WhoHas {
                room: "r".into(),
                file: file.into(),
            },
            ClientMsg::GetFile {
                owner: "bob".into(),
                file: file.into(),
                offer: None,
                eph: [1; 32],
                sig: vec![0; 64],
                candidates: Vec::new(),
            },
        ] {
            mallory.send(msg);
            let e = mallory.expect("the refusal", |m| matches!(m, ServerMsg::Error { .. }));
            let ServerMsg::Error { code, message } = e else {
                unreachable!()
            };
            assert_eq!(code, ErrorCode::BadRequest, "{file:?}");
            assert!(message.contains(why), "{file:?}: {message}");
        }
    }
    // Unanswered: names outside the folder, the lossy spelling of the name
    // that is not UTF-8; then one that is answered, and is the first.
    for file in [
        "../secret.txt",
        "/etc/passwd",
        "bad\u{fffd}\u{fffd}.bin",
        "back/slash.txt",
        "good.bin",
    ] {
        mallory.send(ClientMsg::WhoHas {
            room: "r".into(),
            file: file.into(),
        });
    }
    let answer = mallory.expect("an answer", |m| matches!(m, ServerMsg::HaveFile { .. }));
    let ServerMsg::HaveFile {
        file, size, blake3, ..
    } = answer
    else {
        unreachable!()
    };
    assert_eq!(
        (file.as_str(), size, blake3),
        (
            "good.bin",
            good.len() as u64,
            *blake3::hash(&good).as_bytes()
        )
    );

    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &[]);
    for (file, data) in [("good.bin", &good[..]), (long.as_str(), b"long name")] {
        alice.send(&format!("@bob getfile {file}"));
        let done = alice.expect("transfer_done", &[("file", json!(file))]);
        assert!(std::fs::read(done["path"].as_str().unwrap()).unwrap() == data);
    }
    alice.send("@bob getfile back/slash.txt");
    let r = alice.expect("transfer_refused", &[("file", "back/slash.txt".into())]);
    assert_eq!(r["reason"], "not_found");
    let mut saved: Vec<String> = std::fs::read_dir(dir.path().join("alice-downloads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    saved.sort();
    let mut want = vec!["good.bin".to_string(), long.clone()];
    want.sort();
    assert_eq!(saved, want, "nothing else was written");
    // Bob is still there, and heard of none of the refused names.
    assert_eq!(listed(&mut bob).len(), 3);
    let uploads: Vec<Value> = bob
        .events()
        .into_iter()
        .filter(|v| v["event"] == "upload_started")
        .map(|v| v["file"].clone())
        .collect();
    assert_eq!(uploads, [json!("good.bin"), json!(long)]);
}

/// The `transfer_failed` of `p` for download `id`.
fn failed(p: &mut Proc, id: &Value) -> Value {
    p.expect("transfer_failed", &[("id", id.clone())])
}

/// A peer that announces (in `whohas`) and offers one size and hash and
/// serves other bytes: the hash of other content of the same size; the
/// right hash with the size cut short (it serves the start of the file);
/// the right hash with a longer size (it serves the file padded). In each
/// case the download fails at its end saying the file does not match its
/// hash and that nothing was kept, and nothing is left in the download
/// folder, neither under the file's name nor as a `.part`. The honest
/// owner's copy is then fetched byte-exact.
#[test]
fn a_peer_lying_about_size_or_hash_leaves_no_wrong_file() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let data = random_bytes(300_000, 51);
    let mut carol = sharer(
        &server,
        dir.path(),
        "carol",
        "r",
        &[("m.bin", &data)],
        &["--create"],
    );
    carol.send("@me setshare m.bin");
    carol.expect("share_status", &[]);
    let mut mallory = RawPeer::join(&server, "mallory", "r");
    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &["--timeout", "3"]);
    let downloads = dir.path().join("alice-downloads");
    let hash = *blake3::hash(&data).as_bytes();
    let other = random_bytes(data.len(), 52);
    let mut padded = data.clone();
    padded.extend_from_slice(&[0; 1000]);
    // (lie, what it announces and offers: size, hash; what it serves)
    let lies: [(&str, u64, [u8; 32], &[u8]); 3] = [
        (
            "the hash of other bytes",
            data.len() as u64,
            *blake3::hash(&other).as_bytes(),
            &data,
        ),
        (
            "a size cut short",
            data.len() as u64 - 1000,
            hash,
            &data[..data.len() - 1000],
        ),
        ("a longer size", padded.len() as u64, hash, &padded),
    ];
    for (round, (lie, size, blake3, served)) in lies.iter().enumerate() {
        let served_file = dir.path().join(format!("served-{round}"));
        std::fs::write(&served_file, served).unwrap();
        alice.send("@all whohas m.bin");
        mallory.have(*size, *blake3);
        alice.expect_nth(round + 1, "whohas_reply", &[("from", "mallory".into())]);
        // Carol's answer too: one that came only after the next round's
        // `whohas` would count for that round, and hers would be dropped
        // there as a repeat.
        alice.expect_nth(round + 1, "whohas_reply", &[("from", "carol".into())]);
        alice.send("@mallory getfile m.bin");
        let r = mallory.request();
        let deal = mallory.deal(&r, *size, *blake3);
        let offer = deal.offer.clone();
        let serving = mallory.serve(deal, &served_file, None);
        mallory.accept(&r, offer);
        let started = alice.expect("transfer_started", &[("from", "mallory".into())]);
        let f = failed(&mut alice, &started["id"]);
        // Its one part is checked against the hash announced the moment
        // its last byte is in.
        let want = format!(
            "the owner sent data that does not match the file's hash: part 0 (bytes 0..{size}) is not the file's"
        );
        assert_eq!(f["reason"], json!(want), "{lie}");
        let _ = mallory.finish(serving);
        let left: Vec<_> = std::fs::read_dir(&downloads)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{lie}: left {left:?}");
    }
    alice.send("@all whohas m.bin");
    alice.expect_nth(4, "whohas_reply", &[("from", "carol".into())]);
    alice.send("@carol getfile m.bin");
    let done = alice.expect("transfer_done", &[("from", "carol".into())]);
    assert!(done["path"].as_str().unwrap().ends_with("/m.bin"), "{done}");
    assert!(std::fs::read(downloads.join("m.bin")).unwrap() == data);
}

/// Logs in as `user` from the local address `from` with a key made from
/// `seed`, and returns the connection.
fn login_from(addr: &str, from: IpAddr, user: &str, seed: u64) -> RawTls {
    let key = SigningKey::from_bytes(&random_bytes(32, seed).try_into().unwrap());
    let public = key.verifying_key().to_bytes();
    let mut s = tls_over(tcp_from(addr, from));
    s.conn.complete_io(&mut s.sock).unwrap();
    let mut binding = [0u8; BINDING_LEN];
    s.conn
        .export_keying_material(&mut binding, EXPORTER_LABEL, None)
        .unwrap();
    send_frame(
        &mut s,
        &ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            user: user.into(),
            public_key: public,
        },
    );
    let ServerMsg::Challenge { nonce, .. } = read_frame(&mut s) else {
        panic!("{user}: no challenge");
    };
    let t = login_transcript(&binding, &nonce, user, &public);
    send_frame(
        &mut s,
        &ClientMsg::Auth {
            signature: key.sign(&t).to_bytes().to_vec(),
        },
    );
    match read_frame(&mut s) {
        ServerMsg::LoggedIn { .. } => s,
        other => panic!("{user} from {from}: {other:?}"),
    }
}

/// Asks to join `room` with `password` and returns the answer: `Joined` or
/// the error, passing over anything else.
fn join_answer(s: &mut RawTls, room: &str, password: &str) -> ServerMsg {
    send_frame(
        s,
        &ClientMsg::JoinRoom {
            room: room.into(),
            password: Some(password.into()),
        },
    );
    loop {
        let m = read_frame(s);
        if matches!(m, ServerMsg::Joined { .. } | ServerMsg::Error { .. }) {
            return m;
        }
    }
}

/// Wrong passwords in a loop from 24 names on 6 addresses (127.0.0.20-25),
/// bounded in count and time: every answer is `wrong_password` or
/// `rate_limited` with the wait ("try again in N s"), never `Joined`; the
/// guesses actually checked stay few (the room's own count caps them); and
/// meanwhile the server answers pings at once, a public room chats on, and
/// alice, a member who got in before, joins again with the right password
/// in well under a second of server time.
#[test]
fn a_password_guesser_is_slowed_and_an_honest_member_still_joins() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut owner = RawPeer::login(&server, "owner");
    owner.send(ClientMsg::CreateRoom {
        room: "vault".into(),
        password: Some("right horse".into()),
    });
    owner.expect("joined", |m| matches!(m, ServerMsg::Joined { .. }));
    let mut alice = login_from(&server.addr, IpAddr::from([127, 0, 0, 1]), "alice", 1);
    assert!(matches!(
        join_answer(&mut alice, "vault", "right horse"),
        ServerMsg::Joined { .. }
    ));
    send_frame(
        &mut alice,
        &ClientMsg::LeaveRoom {
            room: "vault".into(),
        },
    );
    let mut carl = RawPeer::create(&server, "carl", "lobby");
    let mut dana = RawPeer::join(&server, "dana", "lobby");

    let mut guessers: Vec<RawTls> = Vec::new();
    for a in 0..6u8 {
        for n in 0..4 {
            let from = IpAddr::from([127, 0, 0, 20 + a]);
            let name = format!("m{a}x{n}");
            guessers.push(login_from(
                &server.addr,
                from,
                &name,
                1000 + u64::from(a) * 10 + n,
            ));
        }
    }
    let waits = regex_free_waits();
    let (mut wrong, mut slowed) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut tries = 0;
    'guessing: for round in 0..6 {
        for (i, g) in guessers.iter_mut().enumerate() {
            if Instant::now() > deadline {
                break 'guessing;
            }
            tries += 1;
            match join_answer(g, "vault", &format!("guess {round} {i}")) {
                ServerMsg::Error {
                    code: ErrorCode::WrongPassword,
                    message,
                } => {
                    assert_eq!(message, "wrong password for room vault");
                    wrong += 1;
                }
                ServerMsg::Error {
                    code: ErrorCode::RateLimited,
                    message,
                } => {
                    assert!(waits(&message), "{message}");
                    slowed += 1;
                }
                other => panic!("guess {tries}: {other:?}"),
            }
        }
    }
    assert!(slowed > 0 && wrong > 0, "{wrong} checked, {slowed} slowed");
    assert!(wrong <= 24, "{wrong} of {tries} guesses were checked");

    // The server is responsive, and everybody else carries on.
    let t = Instant::now();
    carl.send(ClientMsg::Ping);
    carl.expect("pong", |m| matches!(m, ServerMsg::Pong));
    carl.send(ClientMsg::Say {
        to: Target::All,
        room: Some("lobby".into()),
        text: "still here".into(),
    });
    dana.expect(
        "carl's line",
        |m| matches!(m, ServerMsg::Message(l) if l.text == "still here"),
    );
    // The member gets in at once, locked room or not.
    let answer = join_answer(&mut alice, "vault", "right horse");
    assert!(
        matches!(answer, ServerMsg::Joined { .. }),
        "alice: {answer:?}"
    );
    assert!(t.elapsed() < WAIT, "slow: {:?}", t.elapsed());
    let _ = owner;
}

/// Whether `m` is one of the three lock-out refusals, with its wait.
fn regex_free_waits() -> impl Fn(&str) -> bool {
    |m: &str| {
        let Some(rest) = [
            "too many wrong passwords; try again in ",
            "too many wrong passwords from your address; try again in ",
            "too many wrong passwords for room vault lately; try again in ",
        ]
        .iter()
        .find_map(|p| m.strip_prefix(p)) else {
            return false;
        };
        rest.strip_suffix(" s")
            .is_some_and(|n| n.parse::<u64>().is_ok_and(|n| (1..=60).contains(&n)))
    }
}
