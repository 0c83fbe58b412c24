//! Events as human text: the original's style, one event to a line or a
//! few. The line mode prints these; the full-screen UI shows them in its
//! windows. Everything from outside is escaped on the way (see [`shown`]).

use std::borrow::Cow;

use crate::ClientEvent;

/// The human text of `event`, for the user named `me` (whose own lines
/// read `#me`).
pub fn describe(event: &ClientEvent, me: &str) -> String {
    match event {
        ClientEvent::Message { .. } => describe_in(event, me, false),
        ClientEvent::Connected {
            server,
            server_name,
            user,
        } => {
            let (server, server_name, user) = (v(server), v(server_name), v(user));
            format!("Connected to {server_name} at {server} as {user}")
        }
        ClientEvent::Rooms { rooms, total, next } => {
            if rooms.is_empty() && *total == 0 {
                return "No chatrooms yet; create one with /create NAME [password]".into();
            }
            let mut s = if next.is_none() && rooms.len() as u32 == *total {
                String::from("Here is a list of chatrooms:")
            } else {
                format!("Here is a page of the {total} chatrooms:")
            };
            for r in rooms {
                let what = match (r.private, r.members) {
                    (true, _) => "private".to_string(),
                    (false, Some(1)) => "public, 1 member".to_string(),
                    (false, Some(n)) => format!("public, {n} members"),
                    (false, None) => "public".to_string(),
                };
                s.push_str(&format!("\n  {} ({what})", v(&r.name)));
            }
            if next.is_some() {
                s.push_str("\n  ... more with /rooms more");
            }
            s
        }
        ClientEvent::Joined {
            room,
            room_id,
            created,
            peers,
        } => {
            let (room, room_id) = (v(room), v(room_id));
            let verb = if *created {
                "created and joined"
            } else {
                "joined"
            };
            let mut s = format!("You have {verb} chatroom - {room} (id {room_id})");
            if peers.is_empty() {
                s.push_str("\nNo other peers in the room yet.");
            } else {
                s.push_str("\nHere is a list of peers in the room:");
                for p in peers {
                    s.push_str(&format!("\n  {}", v(p)));
                }
            }
            s
        }
        ClientEvent::Left { room } => {
            let room = v(room);
            format!("You left {room}")
        }
        ClientEvent::PeerJoined { room, user } => {
            let (room, user) = (v(room), v(user));
            format!("* {user} joined {room}")
        }
        ClientEvent::PeerLeft { room, user, reason } => {
            let (room, user, reason) = (v(room), v(user), v(reason));
            match reason.as_ref() {
                "lost" => format!("* {user} left {room} (connection lost)"),
                "left" => format!("* {user} left {room}"),
                other => format!("* {user} left {room} ({other})"),
            }
        }
        ClientEvent::History { room, lines, more } => {
            let room = v(room);
            let mut s = if lines.is_empty() {
                format!("No earlier lines in {room}")
            } else {
                format!("Earlier in {room}:")
            };
            for l in lines {
                let who = if l.from == me {
                    "#me".to_string()
                } else {
                    format!("@{}", v(&l.from))
                };
                s.push_str(&format!("\n[earlier] {who}|{}", v(&l.text)));
            }
            if *more {
                s.push_str(&format!("\n... more with /history {room}"));
            }
            s
        }
        ClientEvent::Peers { room, peers } => {
            let room = v(room);
            format!(
                "Peers in {room}: {}",
                peers.iter().map(|p| v(p)).collect::<Vec<_>>().join(", ")
            )
        }
        ClientEvent::ServerNotice { text } => {
            let text = v(text);
            format!("[server] {text}")
        }
        ClientEvent::ServerChosen { server, candidates } => {
            let server = v(server);
            let others: Vec<String> = candidates
                .iter()
                .filter(|c| c.server != *server)
                .map(|c| match (c.rtt_ms, &c.error) {
                    (Some(ms), _) => format!("{} {ms:.1} ms", v(&c.server)),
                    (None, Some(e)) => format!("{} unreachable ({})", v(&c.server), v(e)),
                    (None, None) => format!("{} unreachable", v(&c.server)),
                })
                .collect();
            let rtt = candidates
                .iter()
                .find(|c| c.server == *server)
                .and_then(|c| c.rtt_ms)
                .map_or("unmeasured".to_string(), |ms| format!("{ms:.1} ms"));
            format!(
                "Using server {server}, the closest: round-trip time {rtt} (others: {})",
                others.join(", ")
            )
        }
        ClientEvent::RoomRenamed { old, new, reason } => {
            let (old, new, reason) = (v(old), v(new), v(reason));
            format!("Room {old} is now called {new}: {reason}")
        }
        ClientEvent::Kicked { reason } => {
            let reason = v(reason);
            format!("You were removed by the server: {reason}")
        }
        ClientEvent::Error { code, message } => {
            let message = v(message);
            format!("error: {message} ({code})")
        }
        ClientEvent::Disconnected { reason } => {
            let reason = v(reason);
            format!("Disconnected: {reason}")
        }
        ClientEvent::Reconnecting { attempt, delay_ms } => {
            format!(
                "Reconnecting in {:.1} s (attempt {attempt})",
                *delay_ms as f64 / 1000.0
            )
        }
        ClientEvent::Ticket {
            ticket, file, size, ..
        } => {
            let (ticket, file) = (v(ticket), v(file));
            format!(
                "Offering {file} ({}). On the receiving machine run:\n  chatdrop recv {ticket}",
                human_bytes(*size)
            )
        }
        ClientEvent::Code {
            code,
            via,
            file,
            size,
            ..
        } => {
            let (code, via, file) = (v(code), v(via), v(file));
            format!(
                "Offering {file} ({}) with the code {code}. On the receiving machine run\n  \
                 chatdrop recv --via {via}\nand type the code (it works once).",
                human_bytes(*size)
            )
        }
        ClientEvent::TransferStarted {
            file,
            from,
            size,
            resumed_from,
            path,
            ..
        } => {
            let (file, from) = (v(file), v(from));
            // "direct"; "punched": through both sides' NATs; "relay",
            // "tcp": through the server.
            let how = match path.as_str() {
                "punched" => "through NAT (hole punched)",
                "relay" => "through the server's relay (no direct path)",
                "tcp" => "through the server's TLS connection (UDP is blocked here: slow)",
                _ => "directly",
            };
            if *resumed_from > 0 {
                format!(
                    "Fetching {file} ({}) from {from} {how}, resuming at {}",
                    human_bytes(*size),
                    human_bytes(*resumed_from)
                )
            } else {
                format!("Fetching {file} ({}) from {from} {how}", human_bytes(*size))
            }
        }
        ClientEvent::TransferProgress { bytes, total, .. } => {
            format!("{} of {}", human_bytes(*bytes), human_bytes(*total))
        }
        ClientEvent::TransferDone {
            bytes,
            seconds,
            path,
            ..
        } => {
            let path = v(path);
            format!(
                "Completed file transfer in {seconds:.2} seconds. ({} at {}/s, saved as {path})",
                human_bytes(*bytes),
                human_bytes((*bytes as f64 / seconds.max(1e-9)) as u64)
            )
        }
        ClientEvent::TransferFailed {
            file, from, reason, ..
        } => {
            let (file, from, reason) = (v(file), v(from), v(reason));
            format!("Transfer of {file} from {from} failed: {reason}")
        }
        ClientEvent::SourceDropped {
            file, from, reason, ..
        } => {
            let (file, from, reason) = (v(file), v(from), v(reason));
            format!("{from} was dropped as a source of {file}: {reason}")
        }
        ClientEvent::UploadStarted { file, to, .. } => {
            let (file, to) = (v(file), v(to));
            format!("Sending {file} to {to}")
        }
        ClientEvent::WhohasReply {
            file, from, size, ..
        } => {
            let (file, from) = (v(file), v(from));
            format!("{from} has {file} ({})", human_bytes(*size))
        }
        ClientEvent::TransferRefused {
            file,
            from,
            reason,
            detail,
        } => {
            let (file, from, reason, detail) = (v(file), v(from), v(reason), v(detail));
            format!("{from} refused {file} ({reason}): {detail}")
        }
        ClientEvent::ShareStatus { global, files } => {
            let mut s = format!(
                "Sharing every file of the folder: {}",
                if *global { "yes" } else { "no" }
            );
            for f in files {
                let mark = if f.shared { "shared    " } else { "not shared" };
                s.push_str(&format!("\n  {mark}  {}", v(&f.file)));
            }
            s
        }
        ClientEvent::UploadDone {
            file,
            to,
            bytes,
            seconds,
        } => {
            let (file, to) = (v(file), v(to));
            format!(
            "Completed file transfer in {seconds:.2} seconds. (sent {file} to {to}: {} at {}/s)",
            human_bytes(*bytes),
            human_bytes((*bytes as f64 / seconds.max(1e-9)) as u64)
        )
        }
        ClientEvent::OfferSent {
            offer,
            to,
            files,
            bytes,
            skipped,
        } => {
            let to = v(to);
            let mut s = format!(
                "Offered {} ({}) to {to} as offer {offer}; waiting for {to} to accept",
                count(*files, "file"),
                human_bytes(*bytes)
            );
            if *skipped > 0 {
                let left = count(*skipped, "link or special file");
                s.push_str(&format!(" ({left} left out: links are never followed)"));
            }
            s
        }
        ClientEvent::OfferAnswered {
            offer,
            to,
            accepted,
        } => {
            let to = v(to);
            match accepted {
                true => format!("{to} accepted offer {offer}"),
                false => format!("{to} declined offer {offer}"),
            }
        }
        ClientEvent::OfferReceived {
            offer,
            from,
            files,
            bytes,
            auto_accepted,
        } => {
            let from = v(from);
            let mut s = format!(
                "{from} offers you {} ({}):",
                count(files.len(), "file"),
                human_bytes(*bytes)
            );
            for f in files {
                let hash = f.blake3.get(..16).unwrap_or(&f.blake3);
                let (name, size) = (v(&f.name), human_bytes(f.size));
                s.push_str(&format!("\n  {name} ({size}, blake3 {hash}...)"));
            }
            // Files a folder listing hides (`.git/config`, `.envrc`) are
            // said aloud: they may mean something to programs.
            let hidden = files
                .iter()
                .filter(|f| (f.name.split('/')).any(|part| part.starts_with('.')));
            let hidden = hidden.count();
            if hidden > 0 {
                let them = count(hidden, "hidden file");
                s.push_str(&format!(
                    "\nMind: {them} among them (a name starting with '.')"
                ));
            }
            match auto_accepted {
                true => s.push_str(&format!("\nAccepted at once: {from} is in auto_accept")),
                false => s.push_str(&format!(
                    "\nType /accept {offer} to take it, /decline {offer} to refuse"
                )),
            }
            s
        }
        ClientEvent::OfferAccepted { offer, from, into } => {
            let (from, into) = (v(from), v(into));
            format!("Accepted offer {offer} from {from}: fetching into {into}")
        }
        ClientEvent::OfferDeclined { offer, from } => {
            let from = v(from);
            format!("Declined offer {offer} from {from}")
        }
        ClientEvent::OfferFinished {
            offer,
            from,
            received,
            failed,
            into,
        } => {
            let (from, into) = (v(from), v(into));
            let got = count(*received, "file");
            match failed.len() {
                0 => format!("Offer {offer} from {from} is done: {got} in {into}"),
                _ => {
                    let names: Vec<Cow<str>> = failed.iter().map(|f| v(f)).collect();
                    format!(
                        "Offer {offer} from {from} is over: {got} in {into}; failed: {}",
                        names.join(", ")
                    )
                }
            }
        }
    }
}

/// `n` things, in the plural unless one.
fn count(n: usize, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        _ => format!("{n} {thing}s"),
    }
}

/// [`describe`], with a room's line prefixed by its room (`[lobby] @bob|hi`)
/// when `name_room`: the line mode does so while in several rooms, so
/// that one can tell where each line was said.
pub fn describe_in(event: &ClientEvent, me: &str, name_room: bool) -> String {
    let ClientEvent::Message {
        room,
        from,
        to,
        text,
        history,
        ..
    } = event
    else {
        return describe(event, me);
    };
    let (from, to, text) = (v(from), v(to), v(text));
    let who = if *from == *me {
        "#me".to_string()
    } else {
        format!("@{from}")
    };
    let dest = match to.as_ref() {
        "all" => String::new(),
        t if t == me => " (to you)".to_string(),
        t => format!(" (to {t})"),
    };
    let past = if *history { "[earlier] " } else { "" };
    let place = match room {
        Some(room) if name_room => format!("[{}] ", v(room)),
        _ => String::new(),
    };
    format!("{place}{past}{who}{dest}|{text}")
}

/// `s` as it can be shown on a terminal: control characters (escape
/// sequences, line breaks), bidirectional controls and invisible format
/// characters are written as `\u{..}` escapes. Everything a human line
/// shows from outside goes through this, so that nothing the server or a
/// peer sends can forge a line, move the cursor or reorder what is read.
fn v(s: &str) -> Cow<'_, str> {
    shown(s)
}

/// `s` as it can be shown on a terminal (see [`chatdrop_proto::chars::shown`]).
pub fn shown(s: &str) -> Cow<'_, str> {
    chatdrop_proto::chars::shown(s)
}

/// `1.5 MB`-style sizes (decimal units, as transfer rates are usually given).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ev: &ClientEvent) -> String {
        describe(ev, "alice")
    }

    fn msg(from: &str, to: &str) -> ClientEvent {
        ClientEvent::Message {
            room: Some("whatsapp".into()),
            from: from.into(),
            to: to.into(),
            text: "hi".into(),
            ts: 7,
            history: false,
            seq: 0,
        }
    }

    #[test]
    fn human_lines_in_the_original_style() {
        assert_eq!(line(&msg("bob", "all")), "@bob|hi");
        assert_eq!(line(&msg("bob", "alice")), "@bob (to you)|hi");
        assert_eq!(line(&msg("alice", "bob")), "#me (to bob)|hi");
        assert_eq!(
            line(&ClientEvent::PeerJoined {
                room: "whatsapp".into(),
                user: "alice".into()
            }),
            "* alice joined whatsapp"
        );
    }

    /// Nothing from outside reaches the terminal raw: an escape sequence,
    /// a forged second line and a right-to-left override in a message, a
    /// name and a file name are shown escaped. (Seen failing with `v`
    /// returning its input.)
    #[test]
    fn text_from_outside_cannot_drive_the_terminal() {
        let shown = line(&ClientEvent::Message {
            room: None,
            from: "bo\u{1b}[2Jb".into(),
            to: "all".into(),
            text: "hi\n@server|you are banned \u{202E}fdp.exe".into(),
            ts: 1,
            history: false,
            seq: 0,
        });
        assert_eq!(
            shown,
            "@bo\\u{1b}[2Jb|hi\\u{a}@server|you are banned \\u{202e}fdp.exe"
        );
        let shown = line(&ClientEvent::UploadStarted {
            file: "invoice\u{202E}fdp.exe".into(),
            to: "eve".into(),
            arq: "sr".into(),
        });
        assert!(
            !shown.contains('\u{202E}') && shown.contains("\\u{202e}"),
            "{shown}"
        );
        assert_eq!(
            line(&msg("bob", "all")),
            "@bob|hi",
            "plain text is untouched"
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(10_000_000_000), "10.0 GB");
    }

    #[test]
    fn an_offer_lists_every_file_and_says_which_are_hidden() {
        let file = |name: &str, size| crate::OfferFile {
            name: name.into(),
            size,
            blake3: "ab".repeat(32),
        };
        let shown = line(&ClientEvent::OfferReceived {
            offer: 3,
            from: "bob".into(),
            files: vec![file("proj/main.rs", 1_500), file("proj/.git/config", 200)],
            bytes: 1_700,
            auto_accepted: false,
        });
        assert_eq!(
            shown,
            "bob offers you 2 files (1.7 kB):\n  proj/main.rs (1.5 kB, blake3 abababababababab...)\n  \
             proj/.git/config (200 B, blake3 abababababababab...)\n\
             Mind: 1 hidden file among them (a name starting with '.')\n\
             Type /accept 3 to take it, /decline 3 to refuse"
        );
    }
}
