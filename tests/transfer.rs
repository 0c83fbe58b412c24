//! End-to-end tests of file transfer with real processes and real UDP
//! sockets on loopback: `chatdrop send` / `chatdrop recv`, directly and
//! through a lossy, tampering relay; and in chat mode, between clients and
//! a peer the test drives ([`support::peer::RawPeer`]), which can also forge
//! what a client never would. Every file event a process prints is checked
//! against the fields docs/EVENTS.md lists for it.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chatdrop_proto::{ClientMsg, RefuseReason, ServerMsg};
use chatdrop_transfer::relay::{Impairment, Relay};
use chatdrop_transfer::Ticket;
use ed25519_dalek::SigningKey;
use rand::{RngCore, SeedableRng};
use serde_json::{json, Value};
use support::peer::RawPeer;
use support::*;

fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut d = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut d);
    std::fs::write(path, &d).unwrap();
    d
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn hash_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// The fields docs/EVENTS.md lists for each file event (checked against
/// the document by [`the_file_events_checked_are_the_documented_ones`]).
const FILE_EVENTS: &[(&str, &[&str])] = &[
    ("whohas_reply", &["file", "from", "size", "blake3"]),
    (
        "transfer_started",
        &[
            "id",
            "file",
            "from",
            "size",
            "resumed_from",
            "path",
            "addr",
            "arq",
        ],
    ),
    ("transfer_progress", &["id", "bytes", "total", "sources?"]),
    (
        "transfer_done",
        &[
            "id", "file", "from", "bytes", "seconds", "blake3", "path", "sources?",
        ],
    ),
    ("source_dropped", &["id", "file", "from", "reason"]),
    ("transfer_refused", &["file", "from", "reason", "detail"]),
    ("transfer_failed", &["id", "file", "from", "reason"]),
    ("share_status", &["global", "files"]),
    ("upload_started", &["file", "to", "arq"]),
    ("upload_done", &["file", "to", "bytes", "seconds"]),
    ("ticket", &["ticket", "file", "size", "blake3"]),
    ("offer_sent", &["offer", "to", "files", "bytes", "skipped"]),
    ("offer_answered", &["offer", "to", "accepted"]),
    (
        "offer_received",
        &["offer", "from", "files", "bytes", "auto_accepted"],
    ),
    ("offer_accepted", &["offer", "from", "into"]),
    ("offer_declined", &["offer", "from"]),
    (
        "offer_finished",
        &["offer", "from", "received", "failed", "into"],
    ),
];

fn is_hex(v: &Value, bytes: usize) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 2 * bytes && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Asserts that a file event carries exactly the fields docs/EVENTS.md
/// lists for it, each of its kind: counts are whole numbers, `seconds` a
/// number, `blake3` a hash and `id` a session id in hex, `files` a list of
/// `{file, shared}`, names and sentences non-empty strings.
fn assert_file_event(v: &Value) {
    let kind = v["event"].as_str().unwrap_or_default();
    let Some((_, fields)) = FILE_EVENTS.iter().find(|(k, _)| *k == kind) else {
        return;
    };
    // A field ending in `?` may be left out.
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = fields
        .iter()
        .filter(|f| !f.ends_with('?') || keys.contains(f.trim_end_matches('?')))
        .map(|f| f.trim_end_matches('?'))
        .chain(["event"])
        .collect();
    assert_eq!(keys, want, "{v}");
    for f in want.iter().filter(|f| **f != "event") {
        let x = &v[*f];
        let ok = match *f {
            "sources" => x.as_array().is_some_and(|sources| {
                sources.iter().all(|e| {
                    e.as_object().is_some_and(|o| o.len() == 2)
                        && e["from"].as_str().is_some_and(|s| !s.is_empty())
                        && e["bytes"].is_u64()
                })
            }),
            "size" | "bytes" | "total" | "resumed_from" | "offer" | "skipped" | "received" => {
                x.is_u64()
            }
            "accepted" | "auto_accepted" => x.is_boolean(),
            "arq" => x == "sr" || x == "gbn",
            "failed" => x
                .as_array()
                .is_some_and(|names| names.iter().all(|n| n.is_string())),
            "files" if kind == "offer_sent" => x.as_u64().is_some_and(|n| n > 0),
            "files" if kind == "offer_received" => x.as_array().is_some_and(|files| {
                files.iter().all(|e| {
                    e.as_object().is_some_and(|o| o.len() == 3)
                        && e["name"].as_str().is_some_and(|s| !s.is_empty())
                        && e["size"].is_u64()
                        && is_hex(&e["blake3"], 32)
                })
            }),
            "seconds" => x.as_f64().is_some_and(|s| s >= 0.0),
            "global" => x.is_boolean(),
            "files" => x.as_array().is_some_and(|files| {
                files.iter().all(|e| {
                    e.as_object().is_some_and(|o| o.len() == 2)
                        && e["file"].is_string()
                        && e["shared"].is_boolean()
                })
            }),
            "blake3" => is_hex(x, 32),
            "id" => is_hex(x, 8),
            "path" if kind == "transfer_started" => x == "direct" || x == "punched",
            "addr" => x.as_str().is_some_and(|a| a.parse::<SocketAddr>().is_ok()),
            _ => x.as_str().is_some_and(|s| !s.is_empty()),
        };
        assert!(ok, "{kind}.{f} is {x}: {v}");
    }
}

/// [`assert_file_event`] for every event these processes printed.
fn assert_all_documented(procs: &[&Proc]) {
    for p in procs {
        p.events().iter().for_each(assert_file_event);
    }
}

/// The file events checked are the ones docs/EVENTS.md describes: each
/// field checked is in the event's row, and the row names no field of its
/// own that is not checked (names in parentheses are values, or the fields
/// of the second event of a shared row). Seen failing with `id` added to
/// the document's `transfer_refused`, and with `seconds` left out of its
/// `transfer_done`.
#[test]
fn the_file_events_checked_are_the_documented_ones() {
    for (event, fields) in FILE_EVENTS {
        let cell = support::documented(event);
        let (mut all, mut outside, mut depth) = (BTreeSet::new(), BTreeSet::new(), 0i32);
        for (i, piece) in cell.as_str().split('`').enumerate() {
            if i % 2 == 0 {
                depth += piece.matches('(').count() as i32 - piece.matches(')').count() as i32;
            } else if piece
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                all.insert(piece);
                if depth == 0 {
                    outside.insert(piece);
                }
            }
        }
        for f in fields.iter().map(|f| f.trim_end_matches('?')) {
            assert!(all.contains(f), "docs/EVENTS.md lists no {f} for {event}");
        }
        for f in outside {
            assert!(
                fields.iter().any(|x| x.trim_end_matches('?') == f),
                "docs/EVENTS.md lists {f} for {event}, which is not checked"
            );
        }
    }
}

/// Checks a download as `p` printed it: `transfer_started`, its progress
/// and `transfer_done` share one id; the last progress is the whole file;
/// `transfer_done` says what came from whom (bytes after the resume point,
/// the hash, a time) and where it was saved; the saved file is `data`.
fn assert_download(p: &Proc, started: &Value, done: &Value, data: &[u8]) {
    assert_file_event(started);
    assert_file_event(done);
    let (id, size) = (&started["id"], data.len() as u64);
    assert_eq!(&done["id"], id, "{done}");
    assert_eq!(
        (&done["file"], &done["from"]),
        (&started["file"], &started["from"])
    );
    assert_eq!(started["size"], size);
    let resumed = started["resumed_from"].as_u64().unwrap();
    assert_eq!(done["bytes"], size - resumed, "{done}");
    assert!(done["seconds"].as_f64().is_some_and(|s| s > 0.0), "{done}");
    assert_eq!(done["blake3"], hash_hex(data));
    let progress: Vec<Value> = p
        .events()
        .into_iter()
        .filter(|v| v["event"] == "transfer_progress" && &v["id"] == id)
        .collect();
    let last = progress.last().expect("progress of the download");
    assert_eq!(
        (&last["bytes"], &last["total"]),
        (&json!(size), &json!(size))
    );
    assert!(read(done["path"].as_str().unwrap()) == data, "{done}");
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

/// Sends `file` to `out`; returns where it was saved and the ticket the
/// receiver worked from. Checks what both ends printed: the ticket event
/// (name, size, hash, and the ticket itself), the download (see
/// [`assert_download`]; its id is the ticket's session), the sender's
/// `upload_done`, and every field of each.
fn send_and_receive(file: &Path, out: &Path, extra: &[&str]) -> (PathBuf, Ticket) {
    let data = read(file);
    let name = file.file_name().unwrap().to_str().unwrap();
    let (mut s, ticket) = sender(file, extra);
    let t = Ticket::decode(&ticket).unwrap();
    let announced = s.expect_ever("ticket", &[]);
    assert_eq!(
        (&announced["file"], &announced["size"], &announced["blake3"]),
        (&json!(name), &json!(data.len()), &json!(hash_hex(&data)))
    );
    assert_eq!((t.name.as_str(), t.size), (name, data.len() as u64));
    assert_eq!(hex::encode(t.blake3), hash_hex(&data));
    let mut r = receiver(&ticket, out, &[]);
    let started = r.expect("transfer_started", &[]);
    assert_eq!(started["id"], hex::encode(t.session));
    assert_eq!(started["from"], t.addr.to_string());
    assert_eq!(started["resumed_from"], 0);
    let done = r.expect_progressing("transfer_done", &[]);
    assert!(r.wait_exit().success(), "{}", r.stderr());
    assert_download(&r, &started, &done, &data);
    let up = s.expect("upload_done", &[]);
    assert_eq!(
        (&up["file"], &up["to"], &up["bytes"]),
        (&json!(name), &json!("receiver"), &json!(data.len()))
    );
    assert!(s.wait_exit().success(), "{}", s.stderr());
    assert_all_documented(&[&s, &r]);
    (PathBuf::from(done["path"].as_str().unwrap()), t)
}

/// The original's demo: a text file, a PDF-sized and a JPEG-sized binary,
/// with both schemes and two window caps. The receiver runs its session
/// with the scheme and window of the ticket it was given, and the ticket
/// carries the ones asked for. (Seen failing with the ticket's window fixed
/// to the default, and with its scheme fixed to Selective Repeat.)
#[test]
fn the_original_demo_files() {
    let dir = tmp();
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "chatdrop moves files peer to peer.\n".repeat(300)).unwrap();
    let pdf = dir.path().join("report.pdf");
    random_file(&pdf, 480_000, 1);
    let jpg = dir.path().join("photo.jpg");
    random_file(&jpg, 2_300_000, 2);
    for (arq, window) in [("gbn", 16), ("sr", 32)] {
        let w = window.to_string();
        for file in [&txt, &pdf, &jpg] {
            let out = dir.path().join(format!("out-{arq}"));
            let (got, ticket) = send_and_receive(file, &out, &["--arq", arq, "-w", &w]);
            assert_eq!(
                (ticket.selective_repeat, ticket.window),
                (arq == "sr", window),
                "{arq} -w {w}"
            );
            assert_eq!(got.file_name(), file.file_name());
            assert!(read(&got) == read(file), "{arq} {got:?}");
        }
    }
}

/// 100 MB with the default settings. The wait for the end restarts with
/// each progress event that shows more bytes, so other tests running
/// beside it slow it down without failing it, while a stalled transfer
/// still fails within [`WAIT`]. (Seen failing with the receiver dropping
/// every packet past 50 MB, both ends given 60 s before they give up:
/// "the transfer stopped moving at Some(50027484) bytes".)
#[test]
fn a_100_mb_file() {
    let dir = tmp();
    let file = dir.path().join("big.bin");
    let data = random_file(&file, 100_000_000, 3);
    let (got, ticket) = send_and_receive(&file, &dir.path().join("out"), &[]);
    assert_eq!(
        (ticket.selective_repeat, ticket.window, ticket.mss),
        (
            true,
            chatdrop_arq::DEFAULT_WINDOW,
            chatdrop_transfer::MAX_MSS
        )
    );
    assert!(read(got) == data);
}

/// Through a relay that drops 5% and tampers with 2% of the datagrams each
/// way: tampered datagrams are dropped by the AEAD and the file arrives
/// byte-exact, with both schemes. The sender binds its own port (no port
/// is found free and bound again later); the relay is put before it and
/// the receiver given a ticket naming the relay, as `--advertise` would.
#[test]
fn through_a_lossy_tampering_relay() {
    let dir = tmp();
    let file = dir.path().join("data.bin");
    let data = random_file(&file, 1_000_000, 4);
    // `--advertise` is the address the ticket gives receivers.
    let (s, ticket) = sender(&file, &["--advertise", "127.0.0.9:4000"]);
    drop(s);
    let advertised = Ticket::decode(&ticket).unwrap().addr;
    assert_eq!(advertised, "127.0.0.9:4000".parse().unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (i, arq) in ["gbn", "sr"].into_iter().enumerate() {
        // Many small packets, so that the relay has plenty to damage.
        let extra = ["--arq", arq, "-w", "32", "--max-packet", "1200"];
        let (mut s, ticket) = sender(&file, &extra);
        let mut ticket = Ticket::decode(&ticket).unwrap();
        assert_eq!(
            (ticket.selective_repeat, ticket.window, ticket.mss),
            (arq == "sr", 32, 1200)
        );
        let imp = Impairment {
            loss: 0.05,
            tamper: 0.02,
            seed: 10 + i as u64,
            ..Default::default()
        };
        let relay = rt.block_on(Relay::start(ticket.addr, imp)).unwrap();
        ticket.addr = relay.addr;
        let out = dir.path().join(format!("out-{arq}"));
        let mut r = receiver(&ticket.encode(), &out, &[]);
        let done = r.expect_progressing("transfer_done", &[]);
        assert!(read(done["path"].as_str().unwrap()) == data, "{arq}");
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

/// A new `chatdrop send` of `file` and a `recv` into `out`: both
/// processes, and where the download starts (`resumed_from`).
fn fetch_again(file: &Path, out: &Path) -> (Proc, Proc, u64) {
    let (s, ticket) = sender(file, &[]);
    let mut r = receiver(&ticket, out, &[]);
    let started = r.expect("transfer_started", &[]);
    (s, r, started["resumed_from"].as_u64().unwrap())
}

/// The `.part` file and the resume record of an interrupted download in
/// `out`, with their contents.
fn kept_parts(out: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut kept: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".part") || name.ends_with(".part.resume")
        })
        .map(|p| {
            let data = read(&p);
            (p, data)
        })
        .collect();
    kept.sort();
    kept
}

/// The sender dies mid-transfer; the receiver keeps what it has, says why,
/// and a later run (a new `send` of the same file) resumes from there. A
/// `.part` file that no longer agrees with its resume record is not
/// trusted: cut shorter than the record says, the download starts over;
/// changed inside what the record vouches for, the damaged part is found
/// when the outline comes (every recorded part is checked again), the run
/// fails saying so, and the next one fetches that part alone. Each ends
/// byte-exact. (Seen failing with the record's check against the `.part`
/// file's length removed, and with the recorded parts taken unchecked:
/// the changed byte reached the saved file.)
#[test]
fn a_killed_sender_then_a_resumed_download() {
    let dir = tmp();
    let file = dir.path().join("movie.bin");
    let data = random_file(&file, 30_000_000, 5);
    let out = dir.path().join("out");
    let saved = out.join("movie.bin");
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
    assert_all_documented(&[&r]);
    assert!(!saved.exists(), "no unverified file appears");
    let kept = kept_parts(&out);
    let names: Vec<&PathBuf> = kept.iter().map(|(p, _)| p).collect();
    assert_eq!(names.len(), 2, "the .part file and its record: {names:?}");
    let part = &kept
        .iter()
        .find(|(p, _)| p.extension() == Some("part".as_ref()))
        .unwrap()
        .0;
    let restore = || kept.iter().for_each(|(p, d)| std::fs::write(p, d).unwrap());

    // Cut shorter than its record says (more than 2 MB had come): the
    // download starts over.
    let cut = std::fs::OpenOptions::new().write(true).open(part).unwrap();
    cut.set_len(1_000_000).unwrap();
    drop(cut);
    let (_s, mut r, resumed) = fetch_again(&file, &out);
    assert_eq!(resumed, 0, "a .part shorter than its record is not resumed");
    r.expect("transfer_done", &[]);
    assert!(read(&saved) == data);
    std::fs::remove_file(&saved).unwrap();

    // One byte changed inside what the record vouches for: resumed, that
    // part found damaged once the outline came, the run fails saying so,
    // and the next one fetches that part alone.
    restore();
    let mut bytes = read(part);
    bytes[1_000_000] ^= 0x55;
    std::fs::write(part, bytes).unwrap();
    let (_s, mut r, first) = fetch_again(&file, &out);
    assert!(first > 2_000_000, "resumed from {first}");
    let failed = r.expect("transfer_failed", &[]);
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("1 part(s) an earlier attempt left"),
        "{failed}"
    );
    assert_eq!(r.wait_exit().code(), Some(1));
    assert!(!saved.exists(), "nothing unverified appears");
    let (_s, mut r, resumed) = fetch_again(&file, &out);
    assert_eq!(
        resumed,
        data.len() as u64 - (1 << 20),
        "all but the damaged part"
    );
    r.expect("transfer_done", &[]);
    assert!(read(&saved) == data);
    std::fs::remove_file(&saved).unwrap();

    // As it was left: resumed, and only the rest moves.
    restore();
    let (mut s, mut r, resumed) = fetch_again(&file, &out);
    assert!(resumed > 2_000_000, "resumed from {resumed}");
    let done = r.expect("transfer_done", &[]);
    assert_eq!(done["bytes"].as_u64().unwrap(), data.len() as u64 - resumed);
    assert!(read(&saved) == data);
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

/// A server on loopback and a file of `len` random bytes named `name`.
fn code_server(dir: &Path, name: &str, len: usize) -> (ServerProc, PathBuf, Vec<u8>) {
    let server = ServerProc::start(&dir.join("server"), &[]);
    let file = dir.join(name);
    let data = random_file(&file, len, len as u64);
    (server, file, data)
}

/// `chatdrop send FILE --via VIA --json`.
fn code_sender(file: &Path, via: &str) -> Proc {
    let args = ["send", file.to_str().unwrap(), "--via", via, "--json"];
    Proc::spawn("send", &args)
}

/// `send --via` prints a short code; `recv --via` takes it from
/// `CHATDROP_CODE` and fetches the file byte-exact through the server's
/// mailbox, with every event documented. The code works once: a second
/// receiver with it is told no such code exists.
#[test]
fn a_short_code_through_a_server_brings_the_file_once() {
    let dir = tmp();
    let (server, file, data) = code_server(dir.path(), "notes.bin", 700_000);
    let via = server.addr.as_str();
    let mut s = code_sender(&file, via);
    let offered = s.expect("code", &[("via", json!(via))]);
    assert_eq!(
        (&offered["file"], &offered["size"], &offered["blake3"]),
        (
            &json!("notes.bin"),
            &json!(data.len()),
            &json!(hash_hex(&data))
        )
    );
    let code = offered["code"].as_str().unwrap().to_string();
    let out = dir.path().join("out");
    let recv = [
        "recv",
        "--via",
        via,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let mut r = Proc::spawn_env("recv", &recv, &[("CHATDROP_CODE", &code)]);
    let started = r.expect("transfer_started", &[("path", json!("direct"))]);
    let done = r.expect_progressing("transfer_done", &[]);
    assert!(r.wait_exit().success(), "{}", r.stderr());
    assert_download(&r, &started, &done, &data);
    s.expect("upload_done", &[]);
    assert!(s.wait_exit().success(), "{}", s.stderr());
    assert_all_documented(&[&s, &r]);
    let mut again = Proc::spawn_env("recv", &recv, &[("CHATDROP_CODE", &code)]);
    assert_eq!(again.wait_exit().code(), Some(1));
    assert!(
        again.stderr().contains("no code starts with"),
        "{}",
        again.stderr()
    );
}

/// A wrong code gets one try: the receiver is told the code is wrong and
/// gets nothing, the sender that the code is spent, and neither waits
/// for the other. Checked to fail with the PAKE's words left out of the
/// password (the wrong code opened the invitation).
#[test]
fn a_wrong_code_gets_one_try_and_spends_the_code() {
    let dir = tmp();
    let (server, file, _) = code_server(dir.path(), "secret.bin", 10_000);
    let via = server.addr.as_str();
    let mut s = code_sender(&file, via);
    let code = s.expect("code", &[])["code"].as_str().unwrap().to_string();
    let (number, _) = code.split_once('-').unwrap();
    let first = chatdrop_client::code::WORDS[0];
    let wrong = if code.ends_with(&format!("-{first}-{first}")) {
        format!("{number}-{0}-{0}", chatdrop_client::code::WORDS[1])
    } else {
        format!("{number}-{first}-{first}")
    };
    let out = dir.path().join("out");
    let recv = [
        "recv",
        "--via",
        via,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let mut r = Proc::spawn_env("recv", &recv, &[("CHATDROP_CODE", &wrong)]);
    assert_eq!(r.wait_exit().code(), Some(1));
    assert!(r.stderr().contains("the code is wrong"), "{}", r.stderr());
    assert_eq!(s.wait_exit().code(), Some(1));
    assert!(s.stderr().contains("this code is spent"), "{}", s.stderr());
    assert!(!out.join("secret.bin").exists());
}

/// whohas through the server, getfile peer to peer, with what each file
/// event says checked. Bob takes one upload at a time (`--max-uploads 1`):
/// while mallory's download holds his slot, alice's `@bob getfile` is
/// refused as busy, and carol, who announced the same file and is asked
/// with him (a download asks every owner it knows of), sends all of it;
/// the refusal and carol's transfer may come in either order. Once
/// mallory's download has ended, the slot is free again and alice's next
/// request to bob is served. (Seen failing with the slot test letting one
/// more upload through, and with the slot never given back.)
#[test]
fn whohas_getfile_upload_slots_and_next_peer() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut photo = vec![0u8; 2_500_000];
    rand::rngs::StdRng::seed_from_u64(9).fill_bytes(&mut photo);
    let mut bob = sharer(
        &server,
        dir.path(),
        "bob",
        "r",
        &[("photo.jpg", &photo), ("notes.txt", b"notes")],
        &["--create", "--max-uploads", "1"],
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
        let status = p.expect("share_status", &[]);
        assert_eq!(status["global"], false);
        let files = status["files"].as_array().unwrap();
        assert!(files.contains(&json!({"file": "photo.jpg", "shared": true})));
    }
    let status = bob.expect_ever("share_status", &[]);
    let files = status["files"].as_array().unwrap();
    assert!(files.contains(&json!({"file": "notes.txt", "shared": false})));

    // Mallory's request takes bob's one upload slot.
    let mut mallory = RawPeer::join(&server, "mallory", "r");
    let key = mallory.key.clone();
    let asked = mallory.ask("bob", "photo.jpg", &key, "bob");
    let offer = mallory.answer_to(&asked);
    assert!(matches!(offer, ServerMsg::FileOffer { .. }), "{offer:?}");
    let to_mallory = [("file", json!("photo.jpg")), ("to", json!("mallory"))];
    bob.expect("upload_started", &to_mallory);

    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &[]);
    alice.send("@all whohas photo.jpg");
    let mut owners = BTreeSet::new();
    for _ in 0..2 {
        let reply = alice.expect("whohas_reply", &[]);
        assert_eq!(
            (&reply["file"], &reply["size"], &reply["blake3"]),
            (
                &json!("photo.jpg"),
                &json!(2_500_000),
                &json!(hash_hex(&photo))
            )
        );
        owners.insert(reply["from"].as_str().unwrap().to_string());
    }
    assert_eq!(owners, BTreeSet::from(["bob".into(), "carol".into()]));
    alice.send("@bob getfile photo.jpg");
    // Carol may send it in more than one session: the download split the
    // file between the two owners asked, and when bob's refusal comes
    // after her offer she is asked again for his share.
    let (mut refused, mut started, mut done) = (None, None, None);
    while refused.is_none() || done.is_none() {
        let kinds = ["transfer_refused", "transfer_started", "transfer_done"];
        let event = alice.wait_event("bob's refusal and carol's transfer", |v| {
            kinds.iter().any(|k| v["event"] == *k)
        });
        match event["event"].as_str() {
            Some("transfer_refused") => {
                assert!(refused.replace(event.clone()).is_none(), "twice: {event}");
            }
            Some("transfer_started") => {
                assert_eq!(event["from"], "carol", "only carol sends: {event}");
                started.get_or_insert(event);
            }
            _ => assert!(done.replace(event.clone()).is_none(), "twice: {event}"),
        }
    }
    let (refused, started, done) = (refused.unwrap(), started.unwrap(), done.unwrap());
    assert_eq!(
        (&refused["from"], &refused["file"], &refused["reason"]),
        (&json!("bob"), &json!("photo.jpg"), &json!("busy"))
    );
    assert!(refused["detail"].as_str().unwrap().contains("busy"));
    assert_eq!(started["from"], "carol", "the other owner sends it");
    assert_eq!(
        (&started["file"], &started["resumed_from"]),
        (&json!("photo.jpg"), &json!(0))
    );
    assert_download(&alice, &started, &done, &photo);
    let to_alice = [("file", json!("photo.jpg")), ("to", json!("alice"))];
    carol.expect("upload_started", &to_alice);
    // Her sessions' bytes add up to the whole file (a cut session may send
    // a little past its cut): an `upload_done` missing fails the wait.
    let mut sent = 0;
    while sent < photo.len() as u64 {
        let up = carol.expect("upload_done", &to_alice);
        sent += up["bytes"].as_u64().expect("upload_done says its bytes");
    }

    // Mallory's download ends, and with it bob's upload: the slot is free.
    let got = mallory.fetch(&asked, &offer, &dir.path().join("mallory-downloads"));
    assert!(read(got.unwrap()) == photo);
    let up = bob.expect("upload_done", &to_mallory);
    assert_eq!(up["bytes"], photo.len());
    alice.send("@bob getfile photo.jpg");
    let started = alice.expect("transfer_started", &[("from", "bob".into())]);
    let done = alice.expect("transfer_done", &[("from", "bob".into())]);
    assert_download(&alice, &started, &done, &photo);
    assert!(done["path"].as_str().unwrap().ends_with("photo (1).jpg"));
    bob.expect("upload_started", &to_alice);
    bob.expect("upload_done", &to_alice);
    assert_all_documented(&[&alice, &bob, &carol]);
}

/// Bob, who made room `r` and shares `notes.txt` (its bytes returned),
/// started with `extra` options.
fn bob_sharing_notes(server: &ServerProc, dir: &Path, extra: &[&str]) -> (Vec<u8>, Proc) {
    let notes = b"bob's notes\n".repeat(1000);
    let args: Vec<&str> = ["--create"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let mut bob = sharer(server, dir, "bob", "r", &[("notes.txt", &notes)], &args);
    bob.send("@me setshare notes.txt");
    bob.expect("share_status", &[]);
    (notes, bob)
}

/// A server on every address of both families (`[::]`, the default):
/// pairs of clients that came over IPv6, over IPv4, and one of each either
/// way, each pair moving a file. The owner's upload socket takes both
/// families, the server offers an IPv4 client at its plain IPv4 address,
/// and between families the asker reaches the owner at one of the owner's
/// candidate addresses of its own family. (Before, uploads bound IPv4
/// only, and the fetch over IPv6 ran out its time with "peer stopped
/// answering"; then, with both families, a fetch between families did,
/// the owner taking the session only from the address the server saw.)
#[test]
fn files_move_over_ipv6_and_ipv4_at_a_dual_stack_server() {
    let dir = tmp();
    let mut server = ServerProc::start_on("[::]:0", &dir.path().join("server"), &["--no-console"]);
    let port = server.addr.rsplit(':').next().unwrap().to_string();
    let (v6, v4) = (format!("[::1]:{port}"), format!("127.0.0.1:{port}"));
    for (name, owner_at, asker_at) in [
        ("v6", &v6, &v6),
        ("v4", &v4, &v4),
        ("v4v6", &v4, &v6),
        ("v6v4", &v6, &v4),
    ] {
        let data = format!("{name} notes\n").repeat(1000).into_bytes();
        let owner = format!("own{name}");
        let room = format!("r{name}");
        server.addr = owner_at.clone();
        let mut owner_proc = sharer(
            &server,
            dir.path(),
            &owner,
            &room,
            &[("notes.txt", &data)],
            &["--create"],
        );
        owner_proc.send("@me setshare notes.txt");
        owner_proc.expect("share_status", &[]);
        server.addr = asker_at.clone();
        let mut asker = sharer(
            &server,
            dir.path(),
            &format!("ask{name}"),
            &room,
            &[],
            &["--timeout", "5"],
        );
        asker.send(&format!("@{owner} getfile notes.txt"));
        let started = asker.expect("transfer_started", &[("from", owner.clone().into())]);
        assert_eq!(started["path"], "direct", "{name}: {started}");
        let done = asker.expect("transfer_done", &[]);
        assert_download(&asker, &started, &done, &data);
    }
}

/// An asker that is offered a file and never starts the transfer holds the
/// owner's upload slot only for the transfer timeout (`--timeout`), not
/// for 30 s: then the owner reports why the upload failed, and the next
/// request is served. (Seen holding the slot 30 s with the wait fixed.)
#[test]
fn an_asker_that_never_starts_frees_the_upload_slot() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let (notes, mut bob) = bob_sharing_notes(
        &server,
        dir.path(),
        &["--max-uploads", "1", "--timeout", "2"],
    );
    let mut mallory = RawPeer::join(&server, "mallory", "r");
    let key = mallory.key.clone();
    let asked = mallory.ask("bob", "notes.txt", &key, "bob");
    let offer = mallory.answer_to(&asked);
    assert!(matches!(offer, ServerMsg::FileOffer { .. }), "{offer:?}");
    let failed = bob.expect_for(
        Duration::from_secs(10),
        "error",
        &[("code", json!("upload_failed"))],
    );
    let why = failed["message"].as_str().unwrap();
    assert!(
        why.contains("mallory") && why.contains("no receiver came"),
        "{why}"
    );
    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &[]);
    alice.send("@bob getfile notes.txt");
    let started = alice.expect("transfer_started", &[("from", "bob".into())]);
    let done = alice.expect("transfer_done", &[]);
    assert_download(&alice, &started, &done, &notes);
}

/// `whohas` answers nobody asked for (a member sending them by the
/// hundred, as many as the server's `frames` limit lets through at once)
/// are dropped unshown, and remembered nowhere: the answer to the question
/// the client did ask is the first it shows. (Seen showing, and keeping,
/// every one without the check.)
#[test]
fn answers_to_questions_never_asked_are_dropped() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &["--create"]);
    let mut mallory = RawPeer::join(&server, "mallory", "r");
    for i in 0..150 {
        mallory.send(ClientMsg::HaveFile {
            to: "alice".into(),
            file: format!("junk{i}.bin"),
            size: 1,
            blake3: [0; 32],
        });
    }
    alice.send("@all whohas notes.txt");
    mallory.have(5, [1; 32]);
    let reply = alice.expect("whohas_reply", &[]);
    assert_eq!(
        (&reply["file"], &reply["from"]),
        (&json!("notes.txt"), &json!("mallory"))
    );
    let shown = alice
        .events()
        .iter()
        .filter(|e| e["event"] == "whohas_reply")
        .count();
    assert_eq!(shown, 1);
}

/// Requests and offers that were forged are refused, each saying why:
/// - a `getfile` signed with another key than the asker's, or signed for
///   another owner, is refused by the owner (as not shared; it logs why)
///   and starts no upload, while the same request signed as it should be
///   is served;
/// - an offer unsigned, signed with another key, or altered after it was
///   signed fails at the asker ("not signed by the owner's key"), as does
///   a signed offer whose hash or size differs from the owner's `whohas`
///   answer (saying which); no download starts and nothing is written.
///
/// A genuine offer from the same peer is then fetched byte-exact. (Seen
/// failing with each check in crates/client/src/peer.rs left out in turn;
/// the size check was missing, and the download started.)
#[test]
fn forged_requests_and_offers_are_refused() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let (notes, mut bob) = bob_sharing_notes(&server, dir.path(), &[]);
    let mut mallory = RawPeer::join(&server, "mallory", "r");
    let own = mallory.key.clone();
    let stranger = SigningKey::generate(&mut rand::rngs::OsRng);
    for (signer, signed_for) in [(&stranger, "bob"), (&own, "carol")] {
        let asked = mallory.ask("bob", "notes.txt", signer, signed_for);
        match mallory.answer_to(&asked) {
            ServerMsg::TransferRefused { reason, .. } => {
                assert_eq!(reason, RefuseReason::NotShared)
            }
            other => panic!("a forged request was answered with {other:?}"),
        }
        bob.wait_stderr("the refusal logged", |l| {
            l.contains("a file request with a bad signature was refused")
        });
    }
    let asked = mallory.ask("bob", "notes.txt", &own, "bob");
    let offer = mallory.answer_to(&asked);
    let got = mallory.fetch(&asked, &offer, &dir.path().join("mallory-downloads"));
    assert!(read(got.unwrap()) == notes);
    bob.expect("upload_done", &[("to", "mallory".into())]);
    let uploads = bob
        .events()
        .iter()
        .filter(|v| v["event"] == "upload_started")
        .count();
    assert_eq!(uploads, 1, "the forged requests started no upload");

    let file = dir.path().join("m.bin");
    let data = random_file(&file, 300_000, 6);
    let (size, hash) = (data.len() as u64, *blake3::hash(&data).as_bytes());
    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &["--timeout", "2"]);
    alice.send("@all whohas m.bin");
    mallory.have(size, hash);
    alice.expect("whohas_reply", &[("from", "mallory".into())]);
    for (forgery, why) in [
        ("unsigned", "the offer is not signed by the owner's key"),
        (
            "signed with another key",
            "the offer is not signed by the owner's key",
        ),
        (
            "altered after signing",
            "the offer is not signed by the owner's key",
        ),
        (
            "another hash",
            "the offer's hash differs from the one announced",
        ),
        (
            "another size",
            "the offer's size differs from the one announced",
        ),
    ] {
        alice.send("@mallory getfile m.bin");
        let r = mallory.request();
        let mut offer = mallory.deal(&r, size, hash).offer;
        match forgery {
            "unsigned" => offer.sig.clear(),
            "signed with another key" => mallory.sign(&r, &stranger, &mut offer),
            "altered after signing" => offer.port ^= 1,
            "another hash" => {
                offer.blake3 = *blake3::hash(b"something else").as_bytes();
                mallory.sign(&r, &own, &mut offer);
            }
            _ => {
                offer.size += 1;
                mallory.sign(&r, &own, &mut offer);
            }
        }
        let id = hex::encode(offer.session);
        mallory.accept(&r, offer);
        let failed = alice.expect("transfer_failed", &[("id", id.into())]);
        assert_eq!(
            (&failed["file"], &failed["from"], &failed["reason"]),
            (&json!("m.bin"), &json!("mallory"), &json!(why)),
            "{forgery}"
        );
    }
    let downloads = dir.path().join("alice-downloads");
    assert!(
        !downloads.exists() || std::fs::read_dir(&downloads).unwrap().next().is_none(),
        "nothing was written for a forged offer"
    );
    alice.send("@mallory getfile m.bin");
    let r = mallory.request();
    let deal = mallory.deal(&r, size, hash);
    let offer = deal.offer.clone();
    let serving = mallory.serve(deal, &file, None);
    mallory.accept(&r, offer);
    let started = alice.expect("transfer_started", &[]);
    let done = alice.expect("transfer_done", &[]);
    assert_download(&alice, &started, &done, &data);
    mallory.finish(serving).unwrap();
    let starts = alice
        .events()
        .iter()
        .filter(|v| v["event"] == "transfer_started")
        .count();
    assert_eq!(starts, 1, "no download started on a forged offer");
    assert_all_documented(&[&alice, &bob]);
}

/// Resume in chat mode. Mallory's upload dies part way: her session can
/// read only the start of the file, then fails and its socket closes, so
/// that alice hears nothing more, as from an owner whose client was killed.
/// Alice reports `transfer_failed` and keeps what came. Asking mallory
/// again resumes from there (and dies again further on); asking carol,
/// another owner of the same file, resumes from there in turn, and the
/// file is byte-exact. (Seen failing with the progress of a failed
/// download not recorded.)
#[test]
fn chat_mode_resumes_after_an_owner_dies_and_from_another_owner() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let file = dir.path().join("film.bin");
    let data = random_file(&file, 12_000_000, 7);
    let (size, hash) = (data.len() as u64, *blake3::hash(&data).as_bytes());
    let mut carol = sharer(
        &server,
        dir.path(),
        "carol",
        "r",
        &[("film.bin", &data)],
        &["--create"],
    );
    let mut mallory = RawPeer::join(&server, "mallory", "r");
    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &["--timeout", "2"]);
    // Only mallory has it at first (with two owners known, alice would ask
    // both at once).
    alice.send("@all whohas film.bin");
    mallory.have(size, hash);
    alice.expect_ever("whohas_reply", &[("from", "mallory".into())]);
    let saved = dir.path().join("alice-downloads/film.bin");
    // Where each download started: mallory's two, then carol's.
    let mut resumed = Vec::new();
    for cut in [4_000_000, 8_000_000] {
        alice.send("@mallory getfile film.bin");
        let r = mallory.request();
        let deal = mallory.deal(&r, size, hash);
        let offer = deal.offer.clone();
        let serving = mallory.serve(deal, &file, Some(cut));
        mallory.accept(&r, offer);
        let started = alice.expect("transfer_started", &[("from", "mallory".into())]);
        resumed.push(started["resumed_from"].as_u64().unwrap());
        let failed = alice.expect("transfer_failed", &[("id", started["id"].clone())]);
        assert_eq!(
            (&failed["file"], &failed["from"]),
            (&json!("film.bin"), &json!("mallory"))
        );
        let reason = failed["reason"].as_str().unwrap();
        assert!(reason.contains("stopped answering"), "{failed}");
        assert!(mallory.finish(serving).is_err(), "mallory's upload died");
        assert!(!saved.exists(), "no unverified file appears");
    }
    carol.send("@me setshare film.bin");
    carol.expect("share_status", &[]);
    alice.send("@all whohas film.bin");
    alice.expect("whohas_reply", &[("from", "carol".into())]);
    alice.send("@carol getfile film.bin");
    let started = alice.expect("transfer_started", &[("from", "carol".into())]);
    resumed.push(started["resumed_from"].as_u64().unwrap());
    let done = alice.expect("transfer_done", &[("from", "carol".into())]);
    assert_eq!(resumed[0], 0, "{resumed:?}");
    assert!(
        0 < resumed[1] && resumed[1] <= 4_000_000,
        "asking mallory again resumes from what her first upload brought: {resumed:?}"
    );
    assert!(
        resumed[1] < resumed[2] && resumed[2] <= 8_000_000,
        "asking carol resumes from what mallory's second upload brought: {resumed:?}"
    );
    assert_download(&alice, &started, &done, &data);
    assert_all_documented(&[&alice, &carol]);
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
    assert_all_documented(&[&alice, &bob]);
}

/// The server's share policy: files blocked by extension, by name, by
/// hash or by size are neither answered in `whohas` nor brokered for
/// `getfile`, and the asker is told why (`blocked`, and the rule). A name
/// is refused by the server itself; a hash or size, once the owner's
/// answer or offer shows it. (Seen failing with the name check left out of
/// `getfile`, and with the hash check left out of the policy.)
#[test]
fn the_server_share_policy() {
    let dir = tmp();
    let leak = b"a file this server will not broker";
    let leak_hash = hash_hex(leak);
    let mut server = ServerProc::start(
        &dir.path().join("server"),
        &[
            "--block-ext",
            "exe",
            "--block-name",
            "*.torrent",
            "--block-hash",
            &leak_hash,
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
            ("film.torrent", b"d8:announce"),
            ("leak.txt", leak),
            ("big.bin", &[7u8; 5000]),
            ("ok.txt", b"fine"),
        ],
        // Room for every upload asked for, blocked or not.
        &["--create", "--max-uploads", "8"],
    );
    bob.send("@me setglobalshare");
    bob.expect("share_status", &[]);
    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &[]);
    for (file, by_name, rule) in [
        ("setup.exe", true, "files ending in .exe"),
        ("film.torrent", true, "files named like *.torrent"),
        ("leak.txt", false, "this file may not be shared"),
        ("big.bin", false, "files over 1000 bytes"),
    ] {
        // A name is refused by the server before anyone is asked; a hash
        // or size when the owner's answer shows it.
        let whohas_from = if by_name { "server" } else { "bob" };
        alice.send(&format!("@all whohas {file}"));
        alice.send(&format!("@bob getfile {file}"));
        for from in [whohas_from, "bob"] {
            let r = alice.expect("transfer_refused", &[("file", file.into())]);
            assert_eq!(
                (&r["from"], &r["reason"]),
                (&json!(from), &json!("blocked")),
                "{file}: {r}"
            );
            assert!(r["detail"].as_str().unwrap().contains(rule), "{file}: {r}");
        }
    }
    assert!(
        !alice.events().iter().any(|v| v["event"] == "whohas_reply"),
        "no blocked file was announced"
    );
    alice.send("@bob getfile ok.txt");
    alice.expect("transfer_done", &[("file", "ok.txt".into())]);
    bob.expect("upload_done", &[("file", "ok.txt".into())]);
    let files_of = |p: &Proc, kind: &str| -> BTreeSet<String> {
        p.events()
            .iter()
            .filter(|v| v["event"] == kind)
            .map(|v| v["file"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        files_of(&alice, "transfer_started"),
        ["ok.txt".into()].into()
    );
    assert_eq!(
        files_of(&bob, "upload_started"),
        ["leak.txt".into(), "big.bin".into(), "ok.txt".into()].into(),
        "bob was never asked for a file blocked by its name"
    );
    assert_all_documented(&[&alice, &bob]);
    server.console("policy");
    for line in [
        "blocked extensions: .exe",
        "blocked names: *.torrent",
        "blocked hashes: 1",
        "largest shared file: 1000 bytes",
    ] {
        server.proc.wait_line(line, |l| l.contains(line));
    }
}

/// Offers (`/send`): alice offers bob, who is in another room, a file and
/// a folder from anywhere on her disk. Bob sees each name, size and hash;
/// he declines the first offer (alice is told) and accepts the second, and
/// every file arrives byte-exact under its path in his download folder,
/// the folder's links left out (the one leading out of it included) and
/// an empty file kept. Carol accepts alice's offers without asking
/// (`--auto-accept alice`). A user that is not online cannot be offered
/// anything, and a path that is not there is named in the error.
#[test]
fn offered_files_and_folders_arrive_with_their_paths() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &["--create"]);
    let mut bob = sharer(&server, dir.path(), "bob", "s", &[], &["--create"]);
    let outbox = dir.path().join("alice-outbox");
    let photos = outbox.join("photos");
    std::fs::create_dir_all(photos.join("2024")).unwrap();
    let report = random_file(&outbox.join("report.pdf"), 300_000, 1);
    let a = random_file(&photos.join("a.jpg"), 70_000, 2);
    let b = random_file(&photos.join("2024/b.jpg"), 5_000, 3);
    std::fs::write(photos.join("empty.txt"), b"").unwrap();
    std::fs::write(dir.path().join("secret.txt"), b"not offered").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), photos.join("secret.txt")).unwrap();
    let send = format!(
        "/send bob '{}' '{}'",
        outbox.join("report.pdf").display(),
        photos.display()
    );
    let expected = [
        ("report.pdf", &report[..]),
        ("photos/2024/b.jpg", &b[..]),
        ("photos/a.jpg", &a[..]),
        ("photos/empty.txt", &[][..]),
    ];
    let total: usize = expected.iter().map(|(_, d)| d.len()).sum();

    // The first offer is declined, and alice is told.
    alice.send(&send);
    let sent = alice.expect("offer_sent", &[("to", json!("bob"))]);
    assert_eq!((&sent["files"], &sent["bytes"]), (&json!(4), &json!(total)));
    assert_eq!(sent["skipped"], 1, "the link is left out: {sent}");
    let offered = bob.expect("offer_received", &[("from", json!("alice"))]);
    assert_eq!(offered["auto_accepted"], false);
    let files = offered["files"].as_array().unwrap();
    let listed: Vec<(&str, u64, &str)> = files
        .iter()
        .map(|f| {
            let (name, size) = (f["name"].as_str().unwrap(), f["size"].as_u64().unwrap());
            (name, size, f["blake3"].as_str().unwrap())
        })
        .collect();
    let hashes: Vec<String> = expected.iter().map(|(_, d)| hash_hex(d)).collect();
    let want: Vec<(&str, u64, &str)> = expected
        .iter()
        .zip(&hashes)
        .map(|((n, d), h)| (*n, d.len() as u64, h.as_str()))
        .collect();
    assert_eq!(listed, want);
    bob.send("/decline");
    bob.expect("offer_declined", &[("offer", offered["offer"].clone())]);
    let answered = alice.expect("offer_answered", &[("offer", sent["offer"].clone())]);
    assert_eq!(
        (&answered["to"], &answered["accepted"]),
        (&json!("bob"), &json!(false))
    );

    // The second is accepted: every file comes, one after another.
    alice.send(&send);
    let sent = alice.expect("offer_sent", &[("to", json!("bob"))]);
    let offered = bob.expect("offer_received", &[("from", json!("alice"))]);
    let number = offered["offer"].as_u64().unwrap();
    bob.send(&format!("/accept {number}"));
    let downloads = dir.path().join("bob-downloads");
    let accepted = bob.expect("offer_accepted", &[("offer", json!(number))]);
    assert_eq!(accepted["into"], downloads.to_str().unwrap());
    let answered = alice.expect("offer_answered", &[("offer", sent["offer"].clone())]);
    assert_eq!(answered["accepted"], true);
    let finished = bob.expect("offer_finished", &[("offer", json!(number))]);
    let about = |file: &str| -> Vec<Value> {
        let events = bob.events().into_iter();
        events.filter(|e| e["file"] == file).collect()
    };
    assert_eq!(
        (&finished["received"], &finished["failed"]),
        (&json!(4), &json!([])),
        "{:?}",
        about("photos/empty.txt")
    );
    for (name, data) in expected {
        let got = read(downloads.join(name));
        assert!(got == data, "{name} differs from what alice offered");
        let done = bob.expect_ever("transfer_done", &[("file", json!(name))]);
        assert_eq!(done["path"], downloads.join(name).to_str().unwrap());
    }
    let all: Vec<PathBuf> = walk_files(&downloads);
    assert_eq!(all.len(), 4, "only the offered files, no link: {all:?}");
    for (name, _) in expected {
        alice.expect_ever(
            "upload_done",
            &[("file", json!(name)), ("to", json!("bob"))],
        );
    }

    // Carol accepts alice's offers without asking.
    let mut carol = sharer(
        &server,
        dir.path(),
        "carol",
        "s",
        &[],
        &["--auto-accept", "alice"],
    );
    alice.send(&format!(
        "@carol sendfile {}",
        outbox.join("report.pdf").display()
    ));
    let offered = carol.expect("offer_received", &[("from", json!("alice"))]);
    assert_eq!(offered["auto_accepted"], true);
    carol.expect("offer_finished", &[("received", json!(1))]);
    assert!(read(dir.path().join("carol-downloads/report.pdf")) == report);
    // The same file offered again comes again, beside the first.
    alice.send(&format!(
        "@carol sendfile {}",
        outbox.join("report.pdf").display()
    ));
    carol.expect_nth(2, "offer_finished", &[("received", json!(1))]);
    assert!(read(dir.path().join("carol-downloads/report (1).pdf")) == report);

    // Nobody of that name online; nothing at that path.
    alice.send(&format!(
        "/send dave '{}'",
        outbox.join("report.pdf").display()
    ));
    let e = alice.expect("error", &[("code", json!("unknown_user"))]);
    assert!(e["message"].as_str().unwrap().contains("dave"), "{e}");
    alice.send("/send bob /no/such/file");
    let e = alice.expect("error", &[("code", json!("offer"))]);
    assert!(
        e["message"].as_str().unwrap().contains("/no/such/file"),
        "{e}"
    );
    bob.send("/accept");
    let e = bob.expect("error", &[("code", json!("offer"))]);
    assert!(e["message"].as_str().unwrap().contains("no offer"), "{e}");
    assert_all_documented(&[&alice, &bob, &carol]);
}

/// An offer of many small files: they come one after another, paced
/// under the server's `getfile` limit (1 a second, 10 at once), all of
/// them. (Before, the eleventh request ran into the limit, the server
/// answered with an error the client could not tie to the request, and
/// the offer waited for ever.)
#[test]
fn an_offer_of_many_small_files_stays_under_the_servers_limit() {
    let dir = tmp();
    let server = ServerProc::start(&dir.path().join("server"), &["--no-console"]);
    let mut alice = sharer(&server, dir.path(), "alice", "r", &[], &["--create"]);
    let mut bob = sharer(
        &server,
        dir.path(),
        "bob",
        "r",
        &[],
        &["--auto-accept", "alice"],
    );
    let notes = dir.path().join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    let count = 16;
    for i in 0..count {
        std::fs::write(notes.join(format!("{i:02}.txt")), format!("note {i}\n")).unwrap();
    }
    alice.send(&format!("/send bob {}", notes.display()));
    let done = bob.expect_for(
        Duration::from_secs(60),
        "offer_finished",
        &[("from", json!("alice"))],
    );
    assert_eq!(
        (&done["received"], &done["failed"]),
        (&json!(count), &json!([]))
    );
    for i in 0..count {
        let got = read(dir.path().join(format!("bob-downloads/notes/{i:02}.txt")));
        assert_eq!(got, format!("note {i}\n").as_bytes());
    }
    let limited = |p: &Proc| {
        p.events()
            .iter()
            .filter(|e| e["code"] == "rate_limited")
            .count()
    };
    assert_eq!(limited(&bob), 0, "no request ran into the limit");
}

/// Every file under `dir` (links included, not followed).
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(walk_files(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}
