//! Turns client events into output lines: the original's human style, or one
//! JSON object per line with `--json`.

use chatdrop_client::ClientEvent;

/// How events are printed.
#[derive(Debug, Clone, Default)]
pub struct Printer {
    /// One JSON object per line instead of human text.
    pub json: bool,
    /// Our own user name, to show our lines as `#me`.
    pub me: String,
    /// The rooms joined (followed from the events): in several, a room's
    /// line names its room.
    pub rooms: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Printer {
    /// The line for `event`.
    pub fn line(&self, event: &ClientEvent) -> String {
        if self.json {
            return serde_json::to_string(event).unwrap_or_else(|e| {
                format!(r#"{{"event":"error","code":"internal","message":"{e}"}}"#)
            });
        }
        self.human(event)
    }

    fn human(&self, event: &ClientEvent) -> String {
        let mut rooms = self.rooms.borrow_mut();
        match event {
            ClientEvent::Joined { room, .. } => {
                rooms.insert(room.clone());
            }
            ClientEvent::Left { room } => {
                rooms.remove(room);
            }
            _ => {}
        }
        chatdrop_client::describe_in(event, &self.me, rooms.len() > 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(json: bool) -> Printer {
        Printer {
            json,
            me: "alice".into(),
            ..Printer::default()
        }
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
    fn human_lines_are_the_descriptions() {
        assert_eq!(p(false).line(&msg("bob", "all")), "@bob|hi");
        assert_eq!(p(false).line(&msg("alice", "bob")), "#me (to bob)|hi");
    }

    /// In two rooms, a room's line names its room; back in one, not.
    #[test]
    fn in_several_rooms_lines_name_their_room() {
        let p = p(false);
        let joined = |room: &str| ClientEvent::Joined {
            room: room.into(),
            room_id: "x".into(),
            created: false,
            peers: vec![],
        };
        p.line(&joined("whatsapp"));
        assert_eq!(p.line(&msg("bob", "all")), "@bob|hi");
        p.line(&joined("games"));
        assert_eq!(p.line(&msg("bob", "all")), "[whatsapp] @bob|hi");
        p.line(&ClientEvent::Left {
            room: "games".into(),
        });
        assert_eq!(p.line(&msg("bob", "all")), "@bob|hi");
    }

    #[test]
    fn json_lines_carry_an_event_field() {
        let v: serde_json::Value = serde_json::from_str(&p(true).line(&msg("bob", "all"))).unwrap();
        assert_eq!(v["event"], "message");
        assert_eq!(v["from"], "bob");
        assert_eq!(v["to"], "all");
        assert_eq!(v["ts"], 7);
        assert_eq!(v["history"], false);
    }
}
