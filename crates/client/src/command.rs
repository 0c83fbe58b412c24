//! The commands users type, one per line, in the original's syntax plus a few
//! slash commands.

use chatdrop_proto::Target;

use crate::peer::ShareCommand;

/// One parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `@USER text`, `@all text`, `@server text`.
    Say {
        /// Recipient.
        to: Target,
        /// The room of a line to `All`; `None` for the room joined last.
        room: Option<String>,
        text: String,
    },
    /// `@server get_rooms`, `/rooms`: the first page of the room list.
    ListRooms,
    /// `@server get_rooms more`, `/rooms more`: the next page.
    MoreRooms,
    /// `@server get_peers`, `/peers [ROOM]`: the room's members (`None`:
    /// the room joined last).
    Peers { room: Option<String> },
    /// `/create NAME [password]`.
    Create {
        room: String,
        /// Password of a private room.
        password: Option<String>,
    },
    /// `/join NAME [password]`.
    Join {
        room: String,
        /// Password.
        password: Option<String>,
    },
    /// `/leave [ROOM]`, `/part [ROOM]` (`None`: the room joined last).
    Leave { room: Option<String> },
    /// `/help`.
    Help,
    /// `@server exit`, `/quit`: leave the room, disconnect cleanly and exit.
    Quit,
    /// `@all whohas FILE`: ask a room who shares a file (`None`: the room
    /// joined last).
    WhoHas { room: Option<String>, file: String },
    /// `@USER getfile FILE`: fetch a file from a peer.
    GetFile {
        /// The peer.
        owner: String,
        file: String,
    },
    /// `/history [ROOM]`: the page of a room's history before the oldest
    /// line seen (`None`: the room joined last), or before line `before`.
    History {
        room: Option<String>,
        before: Option<u64>,
    },
    /// `@me ...`: sharing settings.
    Share(ShareCommand),
    /// `/send USER PATH...`, `@USER sendfile PATH`: offer files (or
    /// folders, whole) to a user.
    Send {
        /// The receiver.
        to: String,
        /// Files and folders, as typed (relative to the working folder).
        paths: Vec<String>,
    },
    /// `/accept [N]`: accept offer `N` (`None`: the latest waiting).
    Accept { offer: Option<u32> },
    /// `/decline [N]`: decline offer `N` (`None`: the latest waiting).
    Decline { offer: Option<u32> },
}

/// The help text listing every command.
pub const HELP: &str = "\
commands:
  @USER text            message one user, anywhere in the network
  @all text             message everyone in your room (the last joined)
  @server text          message the server's admin
  @server get_rooms     list the rooms            (also /rooms)
  @server get_peers     list the peers in the room (also /peers [ROOM])
  @server exit          leave and disconnect       (also /quit)
  @all whohas FILE      ask the room who shares FILE
  @USER getfile FILE    fetch FILE from USER, peer to peer
  @USER sendfile PATH   offer a file or folder on disk to USER
  /send USER PATH...    the same, several at once (quote names with spaces)
  /accept [N]           accept an offer (the latest, or number N)
  /decline [N]          decline an offer
  @me setshare FILE     share FILE (a path inside your share folder)
  @me clrshare FILE     stop sharing FILE
  @me setglobalshare    share every file of the folder
  @me clrglobalshare    stop sharing the folder as a whole
  @me getsharestatus    what is shared
  /create NAME [PASS]   create a room (private with a password) and join it
  /join NAME [PASS]     join a room (staying in the others)
  /leave [ROOM]         leave a room (also /part)
  /history [ROOM]       earlier lines of a room, a page at a time
  /help                 this help";

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

fn room_and_password(rest: &str, cmd: &str) -> Result<(String, Option<String>), String> {
    let (room, password) = split_word(rest);
    if room.is_empty() {
        return Err(format!("{cmd} needs a room name: {cmd} NAME [password]"));
    }
    Ok((
        room.to_string(),
        (!password.is_empty()).then(|| password.to_string()),
    ))
}

fn parse_share(rest: &str) -> Result<ShareCommand, String> {
    let (word, file) = split_word(rest);
    let need_file = |cmd: fn(String) -> ShareCommand| {
        if file.is_empty() {
            Err(format!("@me {word} needs a file name"))
        } else {
            Ok(cmd(file.to_string()))
        }
    };
    match word {
        "setshare" => need_file(ShareCommand::Set),
        "clrshare" => need_file(ShareCommand::Clear),
        "setglobalshare" => Ok(ShareCommand::SetGlobal),
        "clrglobalshare" => Ok(ShareCommand::ClearGlobal),
        "getsharestatus" => Ok(ShareCommand::Status),
        other => Err(format!(
            "unknown @me command {other:?}: setshare, clrshare, setglobalshare, clrglobalshare, getsharestatus"
        )),
    }
}

/// The offer number after `/accept` or `/decline`, if one is given.
fn offer_number(rest: &str, cmd: &str) -> Result<Option<u32>, String> {
    if rest.is_empty() {
        return Ok(None);
    }
    let n = rest.trim_start_matches('#');
    n.parse()
        .map(Some)
        .map_err(|_| format!("{cmd} takes an offer's number: {cmd} 2"))
}

/// Parses one line. Blank lines give `Ok(None)`; a line that is not a command
/// gives an error saying what is expected.
pub fn parse_command(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let (word, rest) = split_word(line);
    if let Some(target) = word.strip_prefix('@') {
        let cmd = match (target, rest) {
            ("", _) => return Err("@ needs a user name, `all` or `server`: @bob hello".into()),
            ("server", "get_rooms") => Command::ListRooms,
            ("server", "get_rooms more") => Command::MoreRooms,
            ("server", "get_peers") => Command::Peers { room: None },
            ("server", "exit") => Command::Quit,
            ("me", rest) => Command::Share(parse_share(rest)?),
            (_, "") => return Err(format!("{word} needs a message: {word} hello")),
            ("all", text) if text.starts_with("whohas ") => Command::WhoHas {
                room: None,
                file: text["whohas ".len()..].trim().to_string(),
            },
            ("all", text) => Command::Say {
                to: Target::All,
                room: None,
                text: text.into(),
            },
            ("server", text) => Command::Say {
                to: Target::Server,
                room: None,
                text: text.into(),
            },
            (user, text) if text.starts_with("getfile ") => Command::GetFile {
                owner: user.to_string(),
                file: text["getfile ".len()..].trim().to_string(),
            },
            (user, text) if text.starts_with("sendfile ") => Command::Send {
                to: user.to_string(),
                paths: vec![text["sendfile ".len()..].trim().to_string()],
            },
            (user, text) => Command::Say {
                to: Target::User(user.into()),
                room: None,
                text: text.into(),
            },
        };
        return Ok(Some(cmd));
    }
    let cmd = match word {
        "/rooms" if rest == "more" => Command::MoreRooms,
        "/rooms" => Command::ListRooms,
        "/peers" => Command::Peers {
            room: (!rest.is_empty()).then(|| rest.to_string()),
        },
        "/history" => Command::History {
            room: (!rest.is_empty()).then(|| rest.to_string()),
            before: None,
        },
        "/leave" | "/part" => Command::Leave {
            room: (!rest.is_empty()).then(|| rest.to_string()),
        },
        "/send" => {
            let (to, rest) = split_word(rest);
            let paths = shlex::split(rest).ok_or("/send: a quote is not closed")?;
            if to.is_empty() || paths.is_empty() {
                return Err("/send needs a user and what to offer: /send bob report.pdf".into());
            }
            Command::Send {
                to: to.to_string(),
                paths,
            }
        }
        "/accept" => Command::Accept {
            offer: offer_number(rest, "/accept")?,
        },
        "/decline" => Command::Decline {
            offer: offer_number(rest, "/decline")?,
        },
        "/help" | "/?" => Command::Help,
        "/quit" | "/exit" => Command::Quit,
        "/create" => {
            let (room, password) = room_and_password(rest, "/create")?;
            Command::Create { room, password }
        }
        "/join" => {
            let (room, password) = room_and_password(rest, "/join")?;
            Command::Join { room, password }
        }
        w if w.starts_with('/') => return Err(format!("unknown command {w}; type /help")),
        _ => {
            return Err(
                "messages start with @: @all hello, @bob hi, or /help for the commands".into(),
            )
        }
    };
    Ok(Some(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(to: Target, text: &str) -> Option<Command> {
        Some(Command::Say {
            to,
            room: None,
            text: text.into(),
        })
    }

    #[test]
    fn the_original_commands() {
        assert_eq!(
            parse_command("@bob hi there").unwrap(),
            say(Target::User("bob".into()), "hi there")
        );
        assert_eq!(
            parse_command("@all hello!").unwrap(),
            say(Target::All, "hello!")
        );
        assert_eq!(
            parse_command("@server hi admin").unwrap(),
            say(Target::Server, "hi admin")
        );
        assert_eq!(
            parse_command("@server get_rooms").unwrap(),
            Some(Command::ListRooms)
        );
        assert_eq!(
            parse_command("@server get_peers").unwrap(),
            Some(Command::Peers { room: None })
        );
        assert_eq!(parse_command("@server exit").unwrap(), Some(Command::Quit));
        assert_eq!(parse_command("").unwrap(), None);
    }

    #[test]
    fn file_commands() {
        assert_eq!(
            parse_command("@all whohas my song.mp3").unwrap(),
            Some(Command::WhoHas {
                room: None,
                file: "my song.mp3".into()
            })
        );
        assert_eq!(
            parse_command("@bob getfile docs/a.pdf").unwrap(),
            Some(Command::GetFile {
                owner: "bob".into(),
                file: "docs/a.pdf".into()
            })
        );
        assert_eq!(
            parse_command("@me setshare a.txt").unwrap(),
            Some(Command::Share(ShareCommand::Set("a.txt".into())))
        );
        assert_eq!(
            parse_command("@me getsharestatus").unwrap(),
            Some(Command::Share(ShareCommand::Status))
        );
        assert!(parse_command("@me setshare")
            .unwrap_err()
            .contains("needs a file"));
        assert!(parse_command("@me dance")
            .unwrap_err()
            .contains("unknown @me"));
        assert_eq!(
            parse_command("@bob sendfile my notes.txt").unwrap(),
            Some(Command::Send {
                to: "bob".into(),
                paths: vec!["my notes.txt".into()]
            })
        );
        assert_eq!(
            parse_command("/send bob 'a b.txt' photos").unwrap(),
            Some(Command::Send {
                to: "bob".into(),
                paths: vec!["a b.txt".into(), "photos".into()]
            })
        );
        assert!(parse_command("/send bob")
            .unwrap_err()
            .contains("needs a user"));
        assert!(parse_command("/send bob 'a").unwrap_err().contains("quote"));
        assert_eq!(
            parse_command("/accept").unwrap(),
            Some(Command::Accept { offer: None })
        );
        assert_eq!(
            parse_command("/decline #3").unwrap(),
            Some(Command::Decline { offer: Some(3) })
        );
        assert!(parse_command("/accept x").unwrap_err().contains("number"));
        // Plain messages that merely mention the words stay messages.
        assert_eq!(
            parse_command("@all whohasit").unwrap(),
            say(Target::All, "whohasit")
        );
    }

    #[test]
    fn slash_commands() {
        assert_eq!(
            parse_command("/join whatsapp 1234").unwrap(),
            Some(Command::Join {
                room: "whatsapp".into(),
                password: Some("1234".into())
            })
        );
        assert_eq!(
            parse_command("/create lobby").unwrap(),
            Some(Command::Create {
                room: "lobby".into(),
                password: None
            })
        );
        assert_eq!(parse_command("/quit").unwrap(), Some(Command::Quit));
        assert_eq!(
            parse_command("/part games").unwrap(),
            Some(Command::Leave {
                room: Some("games".into())
            })
        );
        assert_eq!(
            parse_command("/leave").unwrap(),
            Some(Command::Leave { room: None })
        );
        assert!(parse_command("/join")
            .unwrap_err()
            .contains("needs a room name"));
        assert!(parse_command("/dance")
            .unwrap_err()
            .contains("unknown command"));
        assert!(parse_command("hello").unwrap_err().contains("start with @"));
        assert!(parse_command("@bob")
            .unwrap_err()
            .contains("needs a message"));
    }
}
