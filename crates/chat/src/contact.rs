//! What a linked server could have told us already, and so which of its
//! records may take a name from its holder.
//!
//! Two parts of the network that could not hear of each other may each bind
//! one user name, or create one room name; when they meet, the earlier
//! binding or room keeps the name everywhere (see [`crate::login`] and
//! [`crate::rooms`]). The date that decides is the sender's word, and a
//! server could date a record early to take any name. A date can be checked
//! against what we saw ourselves, though: a server that was in contact with
//! us at some moment told us then of every binding and room it had, so a
//! record it dates before that moment and tells us only now is not news
//! from the other side of a split: it is refused where it would take a
//! name, whether its sender lies or only passes on what it heard from a
//! third server (which, reachable through it, tells us itself).
//!
//! "In contact" begins when a server's `Sync` arrives and ends when it goes
//! out of reach (or sends a new `Sync`, having restarted). A `Bind` or
//! `Room` on its own comes from a server in contact now, so it must be news
//! of now: honest servers send one only when a user logs in or creates a
//! room. What we remember starts when we start: a server first met since
//! then (or met again after our restart) is held only to plausible dates
//! (see [`crate::link_checks`]).

use std::collections::{HashMap, HashSet};

use chatdrop_proto::link::ServerId;

use crate::link_checks::CLOCK_SLACK_MS;

/// Who sent a record, and the last moment (ms by our clock) before it that
/// the sender was in contact with us, if ever since we started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    pub(crate) server: ServerId,
    last_contact_ms: Option<u64>,
}

impl Source {
    /// A record sent on its own, over a channel open now: its sender is in
    /// contact with us now.
    pub(crate) fn live(server: ServerId, now_ms: u64) -> Source {
        Source {
            server,
            last_contact_ms: Some(now_ms),
        }
    }

    /// Whether a record dated `ms` (by the sender's clock) may be news to
    /// us: dated after the sender was last in contact with us, with leeway
    /// for the two clocks.
    pub(crate) fn could_be_news(&self, ms: u64) -> bool {
        self.last_contact_ms
            .is_none_or(|seen| ms.saturating_add(CLOCK_SLACK_MS) >= seen)
    }
}

/// Which servers are in contact with us, and when contact with the others
/// last ended.
#[derive(Debug, Default)]
pub(crate) struct Contacts {
    current: HashSet<ServerId>,
    ended_ms: HashMap<ServerId, u64>,
}

impl Contacts {
    /// `server`'s `Sync` arrived at `now_ms`: the source of the records in
    /// it. From now on `server` is in contact.
    pub(crate) fn synced(&mut self, server: ServerId, now_ms: u64) -> Source {
        // A `Sync` while in contact means the sender started over: what it
        // had before, it had while in contact until now.
        let last_contact_ms = if self.current.insert(server) {
            self.ended_ms.get(&server).copied()
        } else {
            Some(now_ms)
        };
        Source {
            server,
            last_contact_ms,
        }
    }

    /// `server` went out of reach at `now_ms`.
    pub(crate) fn lost(&mut self, server: ServerId, now_ms: u64) {
        self.current.remove(&server);
        self.ended_ms.insert(server, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: ServerId = [3; 16];
    const MIN: u64 = 60_000;

    #[test]
    fn only_what_was_made_out_of_contact_is_news() {
        let mut c = Contacts::default();
        // Never met: anything may be news.
        assert!(c.synced(S, 1000 * MIN).could_be_news(0));
        // In contact until 2000 min; met again at 3000 min: what it made
        // while apart is news, what it made while in contact is not.
        c.lost(S, 2000 * MIN);
        let src = c.synced(S, 3000 * MIN);
        assert!(src.could_be_news(2500 * MIN));
        assert!(src.could_be_news(1998 * MIN), "clock leeway");
        assert!(!src.could_be_news(1500 * MIN));
        // A second Sync without a loss: contact lasted until now.
        assert!(!c.synced(S, 3100 * MIN).could_be_news(3050 * MIN));
        // A lone record must be of now.
        let live = Source::live(S, 3200 * MIN);
        assert!(live.could_be_news(3199 * MIN));
        assert!(!live.could_be_news(3100 * MIN));
    }
}
