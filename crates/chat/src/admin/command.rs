//! The admin console's command language: parsing a typed line into an [`AdminCommand`].

/// A command typed at the server's admin console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// `@USER text`: a message from the server to one user.
    ToUser { user: String, text: String },
    /// `@all text`: a message to every user in every room.
    ToAll { text: String },
    /// `@server text`: a line for the server's own log.
    ToSelf { text: String },
    /// `kick USER [reason]`.
    Kick {
        user: String,
        /// The reason shown to the user.
        reason: String,
    },
    /// `ban TARGET [reason]`: kick now and refuse later logins. The target
    /// is a user name, `key:HEX` or `ip:ADDR[/LEN]` ([`crate::BanTarget`]).
    Ban { user: String, reason: String },
    /// `unban TARGET`.
    Unban { user: String },
    /// `bans`: list the bans in force.
    Bans,
    /// `rooms`: list the rooms with their members.
    Rooms,
    /// `peers ROOM`: list a room's members.
    Peers { room: String },
    /// `policy`: show the share policy in force.
    Policy,
    /// `links`: each server link, its state and round-trip time.
    Links,
    /// `network`: the servers this one knows and the next hop to each.
    Network,
    /// `relays`: the transfers the server relays, with their traffic.
    Relays,
    /// `help`.
    Help,
    /// `exit`: tell every client, close every connection, flush, exit.
    Exit,
}

/// The console's help text.
pub const ADMIN_HELP: &str = "\
commands:
  @USER text          message one user
  @all text           message every user in every room
  @server text        write a line to the server log
  kick USER [reason]  disconnect a user
  ban USER [reason]   disconnect a user and refuse its logins
  ban key:HEX [reason]  the same for an identity key, whatever its name
  ban ip:ADDR[/LEN] [reason]  the same for an address or range
  unban TARGET        lift a ban (USER, key:HEX or ip:RANGE)
  bans                list the bans in force
  rooms               list rooms and members
  peers ROOM          list a room's members
  policy              show the share policy in force
  links               show the links to other servers and their round-trip times
  network             show the servers of the network and the next hop to each
  relays              show the transfers relayed now, their users and traffic
  exit                tell every client, close every connection and exit";

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// Parses one console line. Blank lines give `Ok(None)`; anything else that is
/// not a command gives an error saying what was expected.
pub fn parse_admin(line: &str) -> Result<Option<AdminCommand>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let (word, rest) = split_word(line);
    let need = |what: &str| {
        if rest.is_empty() {
            Err(format!("{word} needs {what}"))
        } else {
            Ok(())
        }
    };
    let cmd = if let Some(target) = word.strip_prefix('@') {
        need("a message")?;
        let text = rest.to_string();
        match target {
            "all" => AdminCommand::ToAll { text },
            "server" => AdminCommand::ToSelf { text },
            "" => return Err("@ needs a user name, `all` or `server`".into()),
            user => AdminCommand::ToUser {
                user: user.to_string(),
                text,
            },
        }
    } else {
        match word {
            "kick" | "ban" => {
                need("a user name")?;
                let (user, reason) = split_word(rest);
                let user = user.to_string();
                let reason = if reason.is_empty() {
                    format!("{word}ed by the server admin").replace("baned", "banned")
                } else {
                    reason.to_string()
                };
                if word == "kick" {
                    AdminCommand::Kick { user, reason }
                } else {
                    AdminCommand::Ban { user, reason }
                }
            }
            "unban" => {
                need("a user name")?;
                AdminCommand::Unban {
                    user: rest.to_string(),
                }
            }
            "rooms" => AdminCommand::Rooms,
            "bans" => AdminCommand::Bans,
            "peers" => {
                need("a room name")?;
                AdminCommand::Peers {
                    room: rest.to_string(),
                }
            }
            "links" => AdminCommand::Links,
            "network" => AdminCommand::Network,
            "relays" => AdminCommand::Relays,
            "help" => AdminCommand::Help,
            "policy" => AdminCommand::Policy,
            "exit" | "quit" => AdminCommand::Exit,
            other => return Err(format!("unknown command {other:?}; type `help`")),
        }
    };
    Ok(Some(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_console_language() {
        assert_eq!(parse_admin("  ").unwrap(), None);
        assert_eq!(
            parse_admin("@bob hello there").unwrap(),
            Some(AdminCommand::ToUser {
                user: "bob".into(),
                text: "hello there".into()
            })
        );
        assert_eq!(
            parse_admin("@all hi").unwrap(),
            Some(AdminCommand::ToAll { text: "hi".into() })
        );
        assert_eq!(
            parse_admin("kick eve spamming links").unwrap(),
            Some(AdminCommand::Kick {
                user: "eve".into(),
                reason: "spamming links".into()
            })
        );
        assert_eq!(
            parse_admin("ban eve").unwrap(),
            Some(AdminCommand::Ban {
                user: "eve".into(),
                reason: "banned by the server admin".into()
            })
        );
        assert_eq!(parse_admin("exit").unwrap(), Some(AdminCommand::Exit));
        assert_eq!(parse_admin("links").unwrap(), Some(AdminCommand::Links));
        assert_eq!(parse_admin("network").unwrap(), Some(AdminCommand::Network));
        assert_eq!(parse_admin("relays").unwrap(), Some(AdminCommand::Relays));
        assert!(parse_admin("kick")
            .unwrap_err()
            .contains("needs a user name"));
        assert!(parse_admin("@bob").unwrap_err().contains("needs a message"));
        assert!(parse_admin("dance")
            .unwrap_err()
            .contains("unknown command"));
    }
}
