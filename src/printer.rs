//! Turns client events into output lines: the original's human style, or one
//! JSON object per line with `--json`.

use chatdrop_client::ClientEvent;

/// How events are printed.
#[derive(Debug, Clone)]
pub struct Printer {
    /// One JSON object per line instead of human text.
    pub json: bool,
    /// Our own user name, to show our lines as `#me`.
    pub me: String,
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
        chatdrop_client::describe(event, &self.me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(json: bool) -> Printer {
        Printer {
            json,
            me: "alice".into(),
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
