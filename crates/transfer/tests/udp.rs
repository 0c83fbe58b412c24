//! Sessions over real UDP sockets on loopback, directly and through the
//! lossy relay.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chatdrop_arq::{Config, Scheme};
use chatdrop_transfer::relay::{Impairment, Relay};
use chatdrop_transfer::{
    fetch, hash_file, serve, Download, FetchOptions, Role, ServeOptions, SessionKeys, Source,
    TransferError, MAX_MSS,
};
use rand::{RngCore, SeedableRng};
use tokio::net::UdpSocket;

fn write_random(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut d = vec![0u8; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut d);
    std::fs::write(path, &d).unwrap();
    d
}

fn cfg(scheme: Scheme, window: u32) -> Config {
    let mut c = Config::new(scheme, window);
    c.idle_timeout = Duration::from_secs(3);
    c
}

struct Run {
    result: Result<std::path::PathBuf, TransferError>,
    sender: Result<chatdrop_transfer::TransferStats, TransferError>,
    /// Datagrams the receiver dropped because they did not authenticate.
    receiver_forged: u64,
    /// Datagrams the relay altered (0 without a relay).
    tampered: u64,
}

/// Serves `file` and fetches it into `out`, through `imp` if given.
async fn run(file: &Path, out: &Path, c: Config, imp: Option<Impairment>, secret: [u8; 32]) -> Run {
    let outline = hash_file(file).unwrap();
    let (size, hash) = (outline.size(), outline.root());
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap();
    let source = Source::open(file, &outline).unwrap();
    let id = [5u8; 8];
    let send_keys = SessionKeys::derive(&secret, id, b"test", Role::Sender);
    let recv_keys = SessionKeys::derive(&secret, id, b"test", Role::Receiver);
    let relay = match imp {
        Some(imp) => Some(Relay::start(target, imp).await.unwrap()),
        None => None,
    };
    let peer = relay.as_ref().map_or(target, |r| r.addr);
    let sopts = ServeOptions {
        cfg: c.clone(),
        wait_for_start: Some(Duration::from_secs(5)),
        peer_ips: Vec::new(),
        punch: Vec::new(),
        later_peer_ips: None,
    };
    let sender =
        tokio::spawn(async move { serve(&server, send_keys, &source, &sopts, |_, _| {}).await });
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dl = Download::open(out, "file.bin", size, hash).unwrap();
    let fetched = fetch(
        &client,
        peer,
        recv_keys,
        &dl,
        &FetchOptions { cfg: c },
        |_, _| {},
    )
    .await;
    let receiver_forged = fetched.as_ref().map_or(0, |st| st.forged);
    let result = fetched.and_then(|_| dl.finish().map(|(p, _)| p));
    let sender = sender.await.unwrap();
    let tampered = relay.map_or(0, |r| r.stats.tampered.load(Ordering::Relaxed));
    Run {
        result,
        sender,
        receiver_forged,
        tampered,
    }
}

#[tokio::test]
async fn byte_exact_over_loopback_both_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let data = write_random(&src, 3_000_001, 1);
    for (i, scheme) in [Scheme::GoBackN, Scheme::SelectiveRepeat]
        .into_iter()
        .enumerate()
    {
        let out = dir.path().join(format!("out{i}"));
        let r = run(&src, &out, cfg(scheme, 64), None, [1; 32]).await;
        let path = r.result.unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data, "{scheme:?}");
        assert!(r.sender.is_ok());
    }
}

#[tokio::test]
async fn packets_are_as_large_as_the_path_carries() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let data = write_random(&src, 2_000_000, 3);
    let mut c = cfg(Scheme::SelectiveRepeat, 256);
    c.mss = MAX_MSS;
    // Loopback carries 64 KiB datagrams.
    let r = run(&src, &dir.path().join("a"), c.clone(), None, [3; 32]).await;
    assert_eq!(std::fs::read(r.result.unwrap()).unwrap(), data);
    assert_eq!(r.sender.unwrap().mss, MAX_MSS);
    // A hop that silently drops anything longer than an Ethernet frame
    // carries (1472 bytes of UDP payload): the probes find 1446-byte
    // payloads, which fill such frames exactly.
    let imp = Impairment {
        max_datagram: 1472,
        ..Default::default()
    };
    let r = run(&src, &dir.path().join("b"), c, Some(imp), [4; 32]).await;
    assert_eq!(std::fs::read(r.result.unwrap()).unwrap(), data);
    assert_eq!(r.sender.unwrap().mss, 1446);
}

#[tokio::test]
async fn through_a_lossy_tampering_relay() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let data = write_random(&src, 1_000_000, 2);
    for (i, scheme) in [Scheme::GoBackN, Scheme::SelectiveRepeat]
        .into_iter()
        .enumerate()
    {
        let out = dir.path().join(format!("out{i}"));
        let imp = Impairment {
            loss: 0.05,
            tamper: 0.02,
            seed: 7 + i as u64,
            ..Default::default()
        };
        let r = run(&src, &out, cfg(scheme, 32), Some(imp), [2; 32]).await;
        let path = r.result.unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
        assert_eq!(std::fs::read(path).unwrap(), data, "{scheme:?}");
        let stats = r.sender.unwrap();
        assert!(stats.retransmissions > 0, "losses were repaired");
        // The relay did alter datagrams, and the ends threw them away
        // (a tampered datagram that arrives after its end finished is
        // never read, so the ends may count fewer).
        let forged = stats.forged + r.receiver_forged;
        assert!(
            r.tampered > 0,
            "{scheme:?}: the relay tampered with nothing"
        );
        assert!(
            (1..=r.tampered).contains(&forged),
            "{scheme:?}: {forged} datagrams refused for {} tampered",
            r.tampered
        );
    }
}

#[tokio::test]
async fn a_receiver_with_the_wrong_keys_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    write_random(&src, 10_000, 3);
    let outline = hash_file(&src).unwrap();
    let size = outline.size();
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap();
    let source = Source::open(&src, &outline).unwrap();
    let keys = SessionKeys::derive(&[1; 32], [1; 8], b"t", Role::Sender);
    let sopts = ServeOptions {
        cfg: cfg(Scheme::SelectiveRepeat, 8),
        wait_for_start: Some(Duration::from_millis(800)),
        peer_ips: Vec::new(),
        punch: Vec::new(),
        later_peer_ips: None,
    };
    let sender =
        tokio::spawn(async move { serve(&server, keys, &source, &sopts, |_, _| {}).await });
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let wrong = SessionKeys::derive(&[9; 32], [1; 8], b"t", Role::Receiver);
    let dl = Download::open(&dir.path().join("out"), "x", size, [0; 32]).unwrap();
    let got = fetch(
        &client,
        target,
        wrong,
        &dl,
        &FetchOptions {
            cfg: cfg(Scheme::SelectiveRepeat, 8),
        },
        |_, _| {},
    )
    .await;
    assert!(matches!(got, Err(TransferError::PeerSilent(_))), "{got:?}");
    let sent = sender.await.unwrap();
    assert!(
        matches!(sent, Err(TransferError::PeerSilent(_))),
        "the sender never started: {sent:?}"
    );
}

/// An asker that takes no data from an owner (others sent it all) tells
/// it so with `decline`: the owner's session ends done at once, with
/// nothing sent, rather than waiting out its minute for a `Start`.
/// (Checked to fail with `Enough` ignored before a `Start`: the owner
/// waited the whole minute, cut short by this test's 20 s bound.)
#[tokio::test]
async fn a_declined_offer_frees_the_owner_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    write_random(&src, 10_000, 4);
    let outline = hash_file(&src).unwrap();
    let owner = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let at = owner.local_addr().unwrap();
    let source = Source::open(&src, &outline).unwrap();
    let keys = SessionKeys::derive(&[2; 32], [3; 8], b"t", Role::Sender);
    let sopts = ServeOptions {
        cfg: cfg(Scheme::SelectiveRepeat, 8),
        wait_for_start: Some(Duration::from_secs(60)),
        peer_ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        punch: Vec::new(),
        later_peer_ips: None,
    };
    let served = tokio::spawn(async move { serve(&owner, keys, &source, &sopts, |_, _| {}).await });
    let asker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mine = SessionKeys::derive(&[2; 32], [3; 8], b"t", Role::Receiver);
    chatdrop_transfer::decline(&asker, mine, &[at]).await;
    let ended = tokio::time::timeout(Duration::from_secs(20), served).await;
    let stats = ended.expect("the owner stopped waiting").unwrap().unwrap();
    assert_eq!(stats.bytes, 0, "nothing was sent");
}

/// A receiver that breaks the rules, holding the session's keys (any room
/// member who asks for a file, or a ticket holder, has them): it speaks
/// the wire format of docs/PROTOCOL.md by hand.
mod hostile {
    use std::net::{SocketAddr, SocketAddrV4};
    use std::time::Instant;

    use socket2::{Domain, Protocol, Socket, Type};

    use super::*;

    const START: u8 = 0x10;
    const PROBE: u8 = 0x11;
    const PROBE_ACK: u8 = 0x12;
    const CHALLENGE: u8 = 0x14;
    const DATA: u8 = 0x01;
    const ACK: u8 = 0x02;
    const ABORT: u8 = 0x04;
    /// Bytes of the envelope around a frame: version, packet number, tag.
    const HEADER: usize = 5;

    fn seal(keys: &mut SessionKeys, frame: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; HEADER];
        d.extend_from_slice(frame);
        keys.seal(&mut d);
        d
    }

    fn start(keys: &mut SessionKeys, token: &[u8]) -> Vec<u8> {
        let mut f = vec![START];
        f.extend_from_slice(&7u32.to_be_bytes());
        // From the start to the end of the file.
        f.extend_from_slice(&0u64.to_be_bytes());
        f.extend_from_slice(&u64::MAX.to_be_bytes());
        f.extend_from_slice(token);
        seal(keys, &f)
    }

    /// A sender of `file` on loopback with the test keys, giving up after
    /// `wait` without a receiver; `peer_ip` as chat mode sets it.
    async fn sender(
        file: &Path,
        secret: [u8; 32],
        mss: u32,
        wait: Duration,
        peer_ip: Option<std::net::IpAddr>,
    ) -> (
        SocketAddr,
        tokio::task::JoinHandle<Result<chatdrop_transfer::TransferStats, TransferError>>,
    ) {
        let outline = hash_file(file).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let source = Source::open(file, &outline).unwrap();
        let keys = SessionKeys::derive(&secret, [5; 8], b"test", Role::Sender);
        let mut c = cfg(Scheme::SelectiveRepeat, 1024);
        c.mss = mss;
        let opts = ServeOptions {
            cfg: c,
            wait_for_start: Some(wait),
            peer_ips: peer_ip.into_iter().collect(),
            punch: Vec::new(),
            later_peer_ips: None,
        };
        let task =
            tokio::spawn(async move { serve(&socket, keys, &source, &opts, |_, _| {}).await });
        (addr, task)
    }

    /// Sends `payload` to `to` in a UDP datagram whose source claims to be
    /// `from`, through a raw socket (the kernel adds the IP header, with
    /// the address the socket is bound to as its source).
    fn send_spoofed(from: SocketAddrV4, to: SocketAddr, payload: &[u8]) {
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))
            .expect("a raw socket (the tests run as root, as CI does)");
        raw.bind(&SocketAddr::V4(SocketAddrV4::new(*from.ip(), 0)).into())
            .unwrap();
        let len = (8 + payload.len()) as u16;
        let mut udp = Vec::with_capacity(len as usize);
        udp.extend_from_slice(&from.port().to_be_bytes());
        udp.extend_from_slice(&to.port().to_be_bytes());
        udp.extend_from_slice(&len.to_be_bytes());
        // No checksum: allowed over IPv4.
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        raw.send_to(&udp, &to.into()).unwrap();
    }

    #[tokio::test]
    async fn a_forged_start_sends_the_third_party_at_most_three_times_what_came_from_it() {
        // A key holder forges `Start`s from a third party's address
        // (127.0.0.2 on loopback, through a raw socket). The third party
        // gets a `Challenge` for each (smaller than the `Start`) and never
        // a probe or data; with chat mode's known asker address it gets
        // nothing. Before address validation the first forged `Start` drew
        // 64 KiB probes and then the file.
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        write_random(&src, 5_000_000, 11);
        let victim = UdpSocket::bind("127.0.0.2:0").await.unwrap();
        let SocketAddr::V4(victim_addr) = victim.local_addr().unwrap() else {
            unreachable!("bound to an IPv4 address");
        };
        for peer_ip in [None, Some("127.0.0.1".parse().unwrap())] {
            let secret = [21; 32];
            let wait = Duration::from_secs(2);
            let (addr, task) = sender(&src, secret, MAX_MSS, wait, peer_ip).await;
            let mut attacker = SessionKeys::derive(&secret, [5; 8], b"test", Role::Receiver);
            let mut forged = 0;
            for _ in 0..20 {
                let d = start(&mut attacker, &[0; 32]);
                forged += d.len();
                send_spoofed(victim_addr, addr, &d);
            }
            // The sender gives up, having had no receiver: then nothing
            // more can come.
            let end = task.await.unwrap();
            assert!(matches!(end, Err(TransferError::PeerSilent(_))), "{end:?}");
            let mut got = 0;
            let mut buf = vec![0u8; 65_536];
            while let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(100), victim.recv_from(&mut buf)).await
            {
                got += n;
            }
            assert!(
                got <= 3 * forged,
                "{got} bytes to the victim for {forged} forged ({peer_ip:?})"
            );
            if peer_ip.is_some() {
                assert_eq!(got, 0, "chat mode answers only the asker's address");
            } else {
                assert!(
                    got > 0,
                    "each forged Start draws a challenge to its address"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_receiver_that_acknowledges_what_it_never_got_is_cut_off() {
        // A receiver proves its own address, then acknowledges everything
        // up to the newest packet it got, gaps included (the optimistic
        // acknowledgements that would make the sender outrun the path).
        // The sender ends the session with an `Abort` saying why, having
        // sent a small part of the file. Checked to fail with the sender's
        // packet holding off (`check_acks` not called): the whole file
        // goes.
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        write_random(&src, 20_000_000, 12);
        let secret = [22; 32];
        let (addr, task) = sender(&src, secret, 1200, Duration::from_secs(5), None).await;
        let mut keys = SessionKeys::derive(&secret, [5; 8], b"test", Role::Receiver);
        let me = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        me.send_to(&start(&mut keys, &[0; 32]), addr).await.unwrap();
        let mut buf = vec![0u8; 65_536];
        let mut received = 0u64;
        let mut newest: Option<u32> = None;
        let mut abort = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && abort.is_none() {
            let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_secs(1), me.recv_from(&mut buf)).await
            else {
                break;
            };
            let Ok(frame) = keys.open(&mut buf[..n]) else {
                continue;
            };
            match frame[0] {
                CHALLENGE => {
                    let token = frame[1..33].to_vec();
                    let d = start(&mut keys, &token);
                    me.send_to(&d, addr).await.unwrap();
                }
                PROBE => {
                    let mut f = vec![PROBE_ACK];
                    f.extend_from_slice(&frame[1..5]);
                    let d = seal(&mut keys, &f);
                    me.send_to(&d, addr).await.unwrap();
                }
                DATA => {
                    received += (n - HEADER - 16 - 5) as u64;
                    let seq = u32::from_be_bytes(frame[1..5].try_into().unwrap());
                    let top = newest.map_or(seq, |t| t.max(seq));
                    newest = Some(top);
                    // Everything up to the newest, as if nothing was lost.
                    let mut f = vec![ACK];
                    f.extend_from_slice(&(top + 1).to_be_bytes());
                    f.extend_from_slice(&0u32.to_be_bytes());
                    f.push(0);
                    let d = seal(&mut keys, &f);
                    me.send_to(&d, addr).await.unwrap();
                }
                ABORT => abort = Some(String::from_utf8_lossy(&frame[1..]).into_owned()),
                _ => {}
            }
        }
        let why = abort.expect("the sender aborts");
        assert!(why.contains("never sent"), "{why}");
        match task.await.unwrap() {
            Err(TransferError::Misbehaved(e)) => assert!(e.contains("optimistic"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(received < 1_000_000, "{received} bytes went before the cut");
    }
}
