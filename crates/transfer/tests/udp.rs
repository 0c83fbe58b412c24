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
    let (size, hash) = hash_file(file).unwrap();
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap();
    let source = Source::open(file, size).unwrap();
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
        peer_ip: None,
    };
    let sender =
        tokio::spawn(async move { serve(&server, send_keys, &source, &sopts, |_, _| {}).await });
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut dl = Download::open(out, "file.bin", size, hash).unwrap();
    let fetched = fetch(
        &client,
        peer,
        recv_keys,
        &mut dl,
        size,
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
    let (size, _) = hash_file(&src).unwrap();
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap();
    let source = Source::open(&src, size).unwrap();
    let keys = SessionKeys::derive(&[1; 32], [1; 8], b"t", Role::Sender);
    let sopts = ServeOptions {
        cfg: cfg(Scheme::SelectiveRepeat, 8),
        wait_for_start: Some(Duration::from_millis(800)),
        peer_ip: None,
    };
    let sender =
        tokio::spawn(async move { serve(&server, keys, &source, &sopts, |_, _| {}).await });
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let wrong = SessionKeys::derive(&[9; 32], [1; 8], b"t", Role::Receiver);
    let mut dl = Download::open(&dir.path().join("out"), "x", size, [0; 32]).unwrap();
    let got = fetch(
        &client,
        target,
        wrong,
        &mut dl,
        size,
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
