//! End-to-end tests of file transfer with real processes and real UDP
//! sockets on loopback: `chatdrop send` / `chatdrop recv`, directly and
//! through a lossy, tampering relay.

mod support;

use std::path::{Path, PathBuf};

use chatdrop_transfer::relay::{Impairment, Relay};
use rand::{RngCore, SeedableRng};
use support::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut d = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut d);
    std::fs::write(path, &d).unwrap();
    d
}

/// Starts `chatdrop send FILE` on loopback and returns it with its ticket.
fn sender(file: &Path, extra: &[&str]) -> (Proc, String) {
    let mut args = vec![
        "send",
        file.to_str().unwrap(),
        "--bind",
        "127.0.0.1:0",
        "--json",
    ];
    args.extend_from_slice(extra);
    let mut p = Proc::spawn("send", &args);
    let t = p.expect("ticket", &[]);
    let ticket = t["ticket"].as_str().unwrap().to_string();
    (p, ticket)
}

fn receiver(ticket: &str, out: &Path, extra: &[&str]) -> Proc {
    let mut args = vec!["recv", ticket, "--out", out.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    Proc::spawn("recv", &args)
}

/// Sends `file` to `out` and returns where it was saved.
fn send_and_receive(file: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    let (mut s, ticket) = sender(file, extra);
    let mut r = receiver(&ticket, out, &[]);
    let done = r.expect("transfer_done", &[]);
    assert!(r.wait_exit().success(), "{}", r.stderr());
    s.expect("upload_done", &[]);
    assert!(s.wait_exit().success(), "{}", s.stderr());
    PathBuf::from(done["path"].as_str().unwrap())
}

/// The original's demo: a text file, a PDF-sized and a JPEG-sized binary,
/// with both schemes.
#[test]
fn the_original_demo_files() {
    let dir = tmp();
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "chatdrop moves files peer to peer.\n".repeat(300)).unwrap();
    let pdf = dir.path().join("report.pdf");
    random_file(&pdf, 480_000, 1);
    let jpg = dir.path().join("photo.jpg");
    random_file(&jpg, 2_300_000, 2);
    for (i, arq) in ["gbn", "sr"].into_iter().enumerate() {
        for file in [&txt, &pdf, &jpg] {
            let out = dir.path().join(format!("out-{i}"));
            let got = send_and_receive(file, &out, &["--arq", arq, "-w", "16"]);
            assert_eq!(got.file_name(), file.file_name());
            assert!(
                std::fs::read(&got).unwrap() == std::fs::read(file).unwrap(),
                "{arq} {got:?}"
            );
        }
    }
}

#[test]
fn a_100_mb_file() {
    let dir = tmp();
    let file = dir.path().join("big.bin");
    let data = random_file(&file, 100_000_000, 3);
    let got = send_and_receive(&file, &dir.path().join("out"), &[]);
    assert!(std::fs::read(got).unwrap() == data);
}

/// Through a relay that drops 5% and tampers with 2% of the datagrams each
/// way: tampered datagrams are dropped by the AEAD and the file arrives
/// byte-exact, with both schemes.
#[test]
fn through_a_lossy_tampering_relay() {
    let dir = tmp();
    let file = dir.path().join("data.bin");
    let data = random_file(&file, 1_000_000, 4);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (i, arq) in ["gbn", "sr"].into_iter().enumerate() {
        // The sender's port is chosen first, then the relay put before it.
        let port = free_udp_port();
        let target = format!("127.0.0.1:{port}").parse().unwrap();
        let imp = Impairment {
            loss: 0.05,
            tamper: 0.02,
            seed: 10 + i as u64,
            ..Default::default()
        };
        let relay = rt.block_on(Relay::start(target, imp)).unwrap();
        let relay_addr = relay.addr.to_string();
        let mut args = vec![
            "send",
            file.to_str().unwrap(),
            "--json",
            "--arq",
            arq,
            "-w",
            "32",
            // Many small packets, so that the relay has plenty to damage.
            "--max-packet",
            "1200",
        ];
        let bind = format!("127.0.0.1:{port}");
        args.extend_from_slice(&["--bind", &bind, "--advertise", &relay_addr]);
        let mut s = Proc::spawn("send", &args);
        let ticket = s.expect("ticket", &[])["ticket"]
            .as_str()
            .unwrap()
            .to_string();
        let mut r = receiver(&ticket, &dir.path().join(format!("out-{arq}")), &[]);
        let done = r.expect("transfer_done", &[]);
        assert!(
            std::fs::read(done["path"].as_str().unwrap()).unwrap() == data,
            "{arq}"
        );
        assert!(s.wait_exit().success());
        let tampered = relay
            .stats
            .tampered
            .load(std::sync::atomic::Ordering::Relaxed);
        let dropped = relay
            .stats
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            tampered > 0 && dropped > 0,
            "the relay did its worst: {tampered} {dropped}"
        );
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The sender dies mid-transfer; the receiver keeps what it has, says why,
/// and a later run (a new `send` of the same file) resumes from there.
#[test]
fn a_killed_sender_then_a_resumed_download() {
    let dir = tmp();
    let file = dir.path().join("movie.bin");
    let data = random_file(&file, 30_000_000, 5);
    let out = dir.path().join("out");
    // Go-Back-N with a window of one small packet is slow enough to
    // interrupt.
    let (s, ticket) = sender(&file, &["--arq", "gbn", "-w", "1", "--max-packet", "1200"]);
    let mut r = receiver(&ticket, &out, &["--timeout", "2"]);
    r.wait_event("some progress", |v| {
        v["event"] == "transfer_progress" && v["bytes"].as_u64().unwrap() > 2_000_000
    });
    s.signal(libc::SIGKILL);
    let failed = r.expect("transfer_failed", &[]);
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("stopped answering"),
        "{failed}"
    );
    assert_eq!(r.wait_exit().code(), Some(1));
    assert!(
        !out.join("movie.bin").exists(),
        "no unverified file appears"
    );

    let (mut s, ticket) = sender(&file, &[]);
    let mut r = receiver(&ticket, &out, &[]);
    let started = r.expect("transfer_started", &[]);
    let resumed = started["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0, "resumed from {resumed}");
    let done = r.expect("transfer_done", &[]);
    assert_eq!(done["bytes"].as_u64().unwrap(), data.len() as u64 - resumed);
    assert!(std::fs::read(out.join("movie.bin")).unwrap() == data);
    assert!(s.wait_exit().success());
}

/// A bad ticket gets a clear error.
#[test]
fn a_bad_ticket_is_refused_clearly() {
    let dir = tmp();
    let mut r = receiver("chatdrop1-00ff", dir.path(), &[]);
    assert_eq!(r.wait_exit().code(), Some(1));
    assert!(
        r.stderr().contains("not a chatdrop ticket"),
        "{}",
        r.stderr()
    );
}

/// whohas through the server, getfile peer to peer; a busy owner refuses
/// and the asker moves on to the next peer with the same file by itself.
#[test]
fn whohas_getfile_busy_and_next_peer() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut photo = vec![0u8; 2_500_000];
    rand::rngs::StdRng::seed_from_u64(9).fill_bytes(&mut photo);
    let mut bob = sharer(
        &server,
        dir.path(),
        "bob",
        "r",
        &[("photo.jpg", &photo)],
        &["--create", "--max-uploads", "0"],
    );
    let mut carol = sharer(
        &server,
        dir.path(),
        "carol",
        "r",
        &[("photo.jpg", &photo)],
        &["--arq", "gbn", "-w", "8"],
    );
    for p in [&mut bob, &mut carol] {
        p.send("@me setshare photo.jpg");
        p.expect("share_status", &[]);
    }
    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &[]);
    alice.send("@all whohas photo.jpg");
    let a = alice.expect("whohas_reply", &[]);
    let b = alice.expect("whohas_reply", &[]);
    assert_eq!(a["blake3"], b["blake3"]);
    assert_eq!(a["size"], 2_500_000);
    alice.send("@bob getfile photo.jpg");
    let refused = alice.expect("transfer_refused", &[("from", "bob".into())]);
    assert_eq!(refused["reason"], "busy");
    let started = alice.expect("transfer_started", &[]);
    assert_eq!(
        started["from"], "carol",
        "moved on to the next peer by itself"
    );
    let done = alice.expect("transfer_done", &[]);
    assert_eq!(done["from"], "carol");
    assert!(std::fs::read(done["path"].as_str().unwrap()).unwrap() == photo);
    carol.expect("upload_done", &[("to", "alice".into())]);
}

/// Unshared files, names leaving the share folder and missing files are
/// refused with their reason; nothing outside the folder is read.
#[test]
fn unshared_traversal_and_missing_files_are_refused() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
    let mut bob = sharer(
        &server,
        dir.path(),
        "bob",
        "r",
        &[("notes.txt", b"notes"), ("sub/a.txt", b"a")],
        &["--create"],
    );
    let link = dir.path().join("bob-share/escape.txt");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), &link).unwrap();
    bob.send("@me setglobalshare");
    bob.expect("share_status", &[("global", true.into())]);
    bob.send("@me clrglobalshare");
    bob.expect("share_status", &[("global", false.into())]);
    bob.send("@me setshare ../secret.txt");
    let e = bob.expect("error", &[("code", "share".into())]);
    assert!(e["message"].as_str().unwrap().contains("not inside"));

    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &[]);
    for (file, reason) in [
        ("notes.txt", "not_shared"),
        ("../secret.txt", "bad_name"),
        ("/etc/passwd", "bad_name"),
        ("escape.txt", "bad_name"),
        ("nothing.txt", "not_found"),
    ] {
        alice.send(&format!("@bob getfile {file}"));
        let r = alice.expect("transfer_refused", &[("file", file.into())]);
        assert_eq!(r["reason"], reason, "{file}");
    }
    // Shared after all, inside a sub-folder: it comes.
    bob.send("@me setshare sub/a.txt");
    bob.expect("share_status", &[]);
    alice.send("@bob getfile sub/a.txt");
    let done = alice.expect("transfer_done", &[]);
    assert_eq!(std::fs::read(done["path"].as_str().unwrap()).unwrap(), b"a");
    assert!(!dir.path().join("alice-downloads/secret.txt").exists());
}

/// The server's share policy: blocked files are neither asked for nor
/// brokered, and the user is told why.
#[test]
fn the_server_share_policy() {
    let dir = tmp();
    let mut server = ServerProc::start(
        &dir.path().join("server"),
        &[
            "--block-ext",
            "exe",
            "--block-name",
            "*.torrent",
            "--max-share-size",
            "1000",
        ],
    );
    let mut bob = sharer(
        &server,
        dir.path(),
        "bob",
        "r",
        &[
            ("setup.exe", b"MZ"),
            ("big.bin", &[7u8; 5000]),
            ("ok.txt", b"fine"),
        ],
        &["--create"],
    );
    bob.send("@me setglobalshare");
    bob.expect("share_status", &[]);
    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &[]);
    alice.send("@all whohas setup.exe");
    let r = alice.expect("transfer_refused", &[("file", "setup.exe".into())]);
    assert_eq!(r["reason"], "blocked");
    assert!(r["detail"].as_str().unwrap().contains(".exe"));
    alice.send("@bob getfile big.bin");
    let r = alice.expect("transfer_refused", &[("file", "big.bin".into())]);
    assert_eq!(r["reason"], "blocked");
    assert!(r["detail"].as_str().unwrap().contains("1000 bytes"));
    alice.send("@bob getfile ok.txt");
    alice.expect("transfer_done", &[("file", "ok.txt".into())]);
    server.console("policy");
    server
        .proc
        .wait_line("policy line", |l| l.contains("blocked extensions: .exe"));
}
