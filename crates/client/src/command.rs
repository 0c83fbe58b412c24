//! The commands users type, one per line, in the original's syntax plus a few
//! slash commands.

use chatdrop_proto::Target;

/// One parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `@USER text`, `@all text`, `@server text`.
    Say {
        /// Recipient.
        to: Target,
        /// Text.
        text: String,
    },
    /// `@server get_rooms`, `/rooms`.
    ListRooms,
    /// `@server get_peers`, `/peers`.
    Peers,
    /// `/create NAME [password]`.
    Create {
        /// Room.
        room: String,
        /// Password of a private room.
        password: Option<String>,
    },
    /// `/join NAME [password]`.
    Join {
        /// Room.
        room: String,
        /// Password.
        password: Option<String>,
    },
    /// `/leave`.
    Leave,
    /// `/help`.
    Help,
    /// `@server exit`, `/quit`: leave the room, disconnect cleanly and exit.
    Quit,
}

/// The help text listing every command.
pub const HELP: &str = "\
commands:
  @USER text            message one user in your room
  @all text             message everyone in your room
  @server text          message the server's admin
  @server get_rooms     list the rooms            (also /rooms)
  @server get_peers     list the peers in the room (also /peers)
  @server exit          leave and disconnect       (also /quit)
  /create NAME [PASS]   create a room (private with a password) and join it
  /join NAME [PASS]     join a room
  /leave                leave the room
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
            ("server", "get_peers") => Command::Peers,
            ("server", "exit") => Command::Quit,
            (_, "") => return Err(format!("{word} needs a message: {word} hello")),
            ("all", text) => Command::Say {
                to: Target::All,
                text: text.into(),
            },
            ("server", text) => Command::Say {
                to: Target::Server,
                text: text.into(),
            },
            ("me", _) => {
                return Err(
                    "@me commands manage file sharing, which this client does not offer".into(),
                )
            }
            (user, text) => Command::Say {
                to: Target::User(user.into()),
                text: text.into(),
            },
        };
        return Ok(Some(cmd));
    }
    let cmd = match word {
        "/rooms" => Command::ListRooms,
        "/peers" => Command::Peers,
        "/leave" => Command::Leave,
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
            Some(Command::Peers)
        );
        assert_eq!(parse_command("@server exit").unwrap(), Some(Command::Quit));
        assert_eq!(parse_command("").unwrap(), None);
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
