//! The client's command parser (`parse_command`): any line a user may
//! type, as UTF-8 (lossily, so that every input is a line).
//!
//! Checked: a blank line is no command and only a blank line is; what the
//! parser takes apart keeps to its syntax (names and words have no
//! spaces, texts and file names are trimmed and not empty); and the
//! names and texts it yields go through the checks the client and the
//! server make on them.

#![no_main]

use chatdrop_client::{parse_command, Command};
use chatdrop_fuzz::check_string;
use chatdrop_proto::Target;
use libfuzzer_sys::fuzz_target;

/// A word of the syntax: not empty, no whitespace.
fn word(s: &str) {
    assert!(
        !s.is_empty() && !s.contains(char::is_whitespace),
        "word {s:?}"
    );
    check_string(s);
}

/// A text or file name: trimmed, not empty.
fn text(s: &str) {
    assert!(!s.is_empty() && s.trim() == s, "text {s:?}");
    check_string(s);
}

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let parsed = parse_command(&line);
    if line.trim().is_empty() {
        assert_eq!(parsed, Ok(None), "a blank line");
        return;
    }
    let cmd = match parsed {
        Ok(Some(cmd)) => cmd,
        Ok(None) => panic!("{line:?} is not blank, yet no command and no error"),
        Err(why) => {
            assert!(!why.is_empty());
            return;
        }
    };
    match cmd {
        Command::Say { to, room, text: t } => {
            if let Target::User(user) = &to {
                word(user);
            }
            assert!(room.is_none(), "a typed line names no room");
            text(&t);
        }
        Command::Create { room, password } | Command::Join { room, password } => {
            word(&room);
            if let Some(p) = password {
                text(&p);
            }
        }
        Command::WhoHas { room, file } => {
            assert!(room.is_none(), "a typed line names no room");
            text(&file);
        }
        Command::Peers { room }
        | Command::Leave { room }
        | Command::History { room, before: None } => {
            if let Some(room) = room {
                text(&room);
            }
        }
        Command::GetFile { owner, file } => {
            word(&owner);
            text(&file);
        }
        Command::Send { to, paths } => {
            word(&to);
            paths.iter().for_each(|p| text(p));
        }
        Command::Accept { .. } | Command::Decline { .. } => {}
        Command::Share(_)
        | Command::ListRooms
        | Command::MoreRooms
        | Command::History {
            before: Some(_), ..
        }
        | Command::Help
        | Command::Quit => {}
    }
});
