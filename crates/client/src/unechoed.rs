//! Lines sent and not yet echoed. The server echoes each line it takes to
//! its sender, in the order it took them, and a server that says goodbye
//! (it is stopping) has echoed every line it took before the goodbye. So a
//! line not echoed at the goodbye never reached anyone, and the client
//! sends it again once it is back: no line is lost to a
//! server's restart, and none arrives twice. A line to a room goes again
//! once the client is back in that room. A connection that breaks
//! without a goodbye says nothing of what the server took, so nothing is
//! sent again then (a line might arrive twice).

use std::collections::VecDeque;

use chatdrop_proto::Target;

/// Lines kept at most; older ones are given up.
pub const MAX_UNECHOED: usize = 256;

/// A line the user sent: to whom, in which room (lines to `All`), what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub to: Target,
    pub room: Option<String>,
    pub text: String,
}

/// The lines of one session not echoed yet, oldest first, and those carried
/// over from the last session to send again.
#[derive(Debug, Default)]
pub struct Unechoed {
    waiting: VecDeque<Said>,
    carried: Vec<Said>,
}

impl Unechoed {
    /// A line was sent.
    pub fn sent(&mut self, line: Said) {
        if self.waiting.len() >= MAX_UNECHOED {
            self.waiting.pop_front();
        }
        self.waiting.push_back(line);
    }

    /// Our line came back: it, and any line sent before it that was
    /// refused (and so never echoed), are settled.
    pub fn echoed(&mut self, line: &Said) {
        if let Some(i) = self.waiting.iter().position(|l| l == line) {
            self.waiting.drain(..=i);
        }
    }

    /// The server said goodbye: what is not echoed is carried over (the
    /// newest [`MAX_UNECHOED`] at most).
    pub fn goodbye(&mut self) {
        self.carried.extend(self.waiting.drain(..));
        let over = self.carried.len().saturating_sub(MAX_UNECHOED);
        self.carried.drain(..over);
    }

    /// Gives up the carried lines of the rooms `gone` says were not
    /// joined again.
    pub fn forget_carried(&mut self, gone: impl Fn(&str) -> bool) {
        self.carried
            .retain(|l| l.room.as_deref().is_none_or(|r| !gone(r)));
    }

    /// The connection broke without a goodbye: nothing is known.
    pub fn broke(&mut self) {
        self.waiting.clear();
    }

    /// The lines to send again now that the client is back, those whose
    /// room `ready` says it is in again (direct lines always); the others
    /// wait for their room.
    pub fn take_carried(&mut self, ready: impl Fn(&str) -> bool) -> Vec<Said> {
        let (now, later) = std::mem::take(&mut self.carried)
            .into_iter()
            .partition(|l| l.room.as_deref().is_none_or(&ready));
        self.carried = later;
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u32) -> Said {
        Said {
            to: Target::All,
            room: Some("lobby".into()),
            text: format!("line {n}"),
        }
    }

    /// Lines 1 to 5 sent; the server took 1 and 2 (echoed), refused 3
    /// (over a limit) and took 4, then said goodbye before taking 5: only 5
    /// is sent again. (Before, 5 was lost: 120 deliveries in a 10-minute
    /// soak whose server restarted once.)
    #[test]
    fn only_lines_not_echoed_at_a_goodbye_are_sent_again() {
        let mut u = Unechoed::default();
        for n in 1..=5 {
            u.sent(line(n));
        }
        u.echoed(&line(1));
        u.echoed(&line(2));
        u.echoed(&line(4));
        u.goodbye();
        assert_eq!(u.take_carried(|_| true), [line(5)]);
        assert!(u.take_carried(|_| true).is_empty(), "sent again once");
    }

    #[test]
    fn nothing_is_sent_again_after_a_broken_connection() {
        let mut u = Unechoed::default();
        u.sent(line(1));
        u.broke();
        u.goodbye();
        assert!(u.take_carried(|_| true).is_empty());
    }

    /// A direct line is told from a room line with the same text, and an
    /// echo of a line never sent (typed in another client of the same
    /// user) settles nothing.
    #[test]
    fn echoes_match_target_and_text() {
        let mut u = Unechoed::default();
        let direct = Said {
            to: Target::User("bob".into()),
            room: None,
            text: "hi".into(),
        };
        let room = Said {
            to: Target::All,
            room: Some("lobby".into()),
            text: "hi".into(),
        };
        u.sent(direct.clone());
        u.sent(room.clone());
        u.echoed(&Said {
            text: "other".into(),
            ..room.clone()
        });
        u.echoed(&direct);
        u.goodbye();
        assert_eq!(u.take_carried(|_| true), [room]);
    }

    /// A room's line waits until the client is back in that room; a
    /// direct line goes at once.
    #[test]
    fn a_rooms_line_waits_for_its_room() {
        let mut u = Unechoed::default();
        let direct = Said {
            to: Target::User("bob".into()),
            room: None,
            text: "hi".into(),
        };
        u.sent(line(1));
        u.sent(direct.clone());
        u.goodbye();
        assert_eq!(u.take_carried(|_| false), [direct]);
        assert_eq!(u.take_carried(|r| r == "lobby"), [line(1)]);
    }

    #[test]
    fn at_most_so_many_are_kept() {
        let mut u = Unechoed::default();
        for n in 0..(MAX_UNECHOED as u32 + 10) {
            u.sent(line(n));
        }
        u.goodbye();
        let carried = u.take_carried(|_| true);
        assert_eq!(carried.len(), MAX_UNECHOED);
        assert_eq!(carried[0], line(10), "the oldest given up");
    }
}
