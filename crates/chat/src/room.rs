//! A room as the chat core holds it (its record, its members here and at
//! other servers, its recent history), and the one place a chat line is
//! built for delivery.
//!
//! A `Room` knows nothing of sessions or the network: it adds and removes
//! members, records lines, and says who is in it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chatdrop_proto::limits::JOIN_REPLAY;
use chatdrop_proto::link::{NetRoom, ServerId};
use chatdrop_proto::{ChatLine, RoomInfo, ServerMsg, Target};

use crate::event::ConnId;
use crate::state::{HistoryEntry, RoomRecord};

/// A chat line as its recipients receive it. Every live line a member sees is
/// built here; history is replayed by [`Room::replay`].
pub(crate) fn line(
    room: Option<String>,
    from: String,
    to: Target,
    text: String,
    ts: u64,
) -> ServerMsg {
    ServerMsg::Message(ChatLine {
        room,
        from,
        to,
        text,
        ts,
        history: false,
        seq: 0,
    })
}

/// A line of the history as it is replayed (on join, or in a page).
fn replayed(room: &str, h: &HistoryEntry) -> ChatLine {
    ChatLine {
        room: Some(room.to_string()),
        from: h.from.clone(),
        to: Target::All,
        text: h.text.clone(),
        ts: h.ts,
        history: true,
        seq: h.seq,
    }
}

#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) rec: RoomRecord,
    /// Members connected here, in the order they joined.
    members: Vec<ConnId>,
    /// Members connected to other servers, and their server.
    remote: BTreeMap<Arc<str>, ServerId>,
    history: VecDeque<HistoryEntry>,
    next_seq: u64,
    /// Since when (ms) the room has had no member anywhere, as the room
    /// sweep saw it (see `crate::expiry`).
    pub(crate) empty_since_ms: Option<u64>,
}

impl Room {
    /// A room with the history the store kept, of which the last `keep`
    /// lines are held.
    pub(crate) fn new(rec: RoomRecord, history: Vec<HistoryEntry>, keep: usize) -> Room {
        let next_seq = history.last().map_or(1, |h| h.seq + 1);
        let skip = history.len().saturating_sub(keep);
        Room {
            rec,
            members: Vec::new(),
            remote: BTreeMap::new(),
            history: history.into_iter().skip(skip).collect(),
            next_seq,
            empty_since_ms: None,
        }
    }

    /// The room's name.
    pub(crate) fn name(&self) -> &str {
        &self.rec.name
    }

    /// Who made it.
    pub(crate) fn creator(&self) -> &str {
        &self.rec.creator
    }

    /// The room's network-wide id.
    pub(crate) fn id(&self) -> &str {
        &self.rec.id
    }

    /// Whether a password guards it.
    pub(crate) fn is_private(&self) -> bool {
        self.rec.password_hash.is_some()
    }

    /// Members connected here, in the order they joined.
    pub(crate) fn local(&self) -> &[ConnId] {
        &self.members
    }

    /// Whether `conn` is a member.
    pub(crate) fn has(&self, conn: ConnId) -> bool {
        self.members.contains(&conn)
    }

    /// The server of a member connected elsewhere.
    pub(crate) fn remote_server(&self, user: &str) -> Option<ServerId> {
        self.remote.get(user).copied()
    }

    /// Names of the members connected elsewhere, in name order.
    pub(crate) fn remote_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.remote.keys()
    }

    /// Members here and elsewhere.
    pub(crate) fn member_count(&self) -> usize {
        self.members.len() + self.remote.len()
    }

    /// Whether any line of history is kept.
    pub(crate) fn has_history(&self) -> bool {
        !self.history.is_empty()
    }

    /// Adds a member connected here (once).
    pub(crate) fn add(&mut self, conn: ConnId) {
        self.empty_since_ms = None;
        if !self.members.contains(&conn) {
            self.members.push(conn);
        }
    }

    /// Removes a member connected here.
    pub(crate) fn remove(&mut self, conn: ConnId) {
        self.members.retain(|c| *c != conn);
    }

    /// Adds a member connected to `server`.
    pub(crate) fn add_remote(&mut self, user: Arc<str>, server: ServerId) {
        self.empty_since_ms = None;
        self.remote.insert(user, server);
    }

    /// Removes a member connected elsewhere.
    pub(crate) fn remove_remote(&mut self, user: &str) {
        self.remote.remove(user);
    }

    /// Forgets every member connected here (the server is shutting down).
    pub(crate) fn clear_local(&mut self) {
        self.members.clear();
    }

    /// The other servers hosting members, each once, in order.
    pub(crate) fn servers(&self) -> Vec<ServerId> {
        let mut servers: Vec<ServerId> = self.remote.values().copied().collect();
        servers.sort();
        servers.dedup();
        servers
    }

    /// Records a line in the history (when the room keeps `keep` > 0 lines)
    /// and returns its `seq`, with the entry to persist.
    pub(crate) fn record(
        &mut self,
        from: &str,
        text: &str,
        ts: u64,
        keep: u32,
    ) -> (u64, Option<HistoryEntry>) {
        let entry = HistoryEntry {
            seq: self.next_seq,
            from: from.to_string(),
            text: text.to_string(),
            ts,
        };
        self.next_seq += 1;
        if keep == 0 {
            return (entry.seq, None);
        }
        if self.history.len() >= keep as usize {
            self.history.pop_front();
        }
        self.history.push_back(entry.clone());
        (entry.seq, Some(entry))
    }

    /// The latest lines of the history ([`JOIN_REPLAY`] at most), replayed
    /// to a member who joins, oldest first.
    pub(crate) fn replay(&self) -> impl Iterator<Item = ServerMsg> + '_ {
        let skip = self.history.len().saturating_sub(JOIN_REPLAY);
        self.history
            .iter()
            .skip(skip)
            .map(|h| ServerMsg::Message(replayed(&self.rec.name, h)))
    }

    /// A page of at most `limit` lines of the history, oldest first: the
    /// latest, those before line `before`, or those after line `after`;
    /// and whether more lie beyond in that direction.
    pub(crate) fn page(
        &self,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> (Vec<ChatLine>, bool) {
        let h = &self.history;
        // The kept lines are in `seq` order: the bounds are found by
        // bisection.
        let (from, to) = match (before, after) {
            (_, Some(after)) => {
                let from = h.partition_point(|e| e.seq <= after);
                (from, (from + limit).min(h.len()))
            }
            (Some(before), None) => {
                let to = h.partition_point(|e| e.seq < before);
                (to.saturating_sub(limit), to)
            }
            (None, None) => (h.len().saturating_sub(limit), h.len()),
        };
        let more = if after.is_some() {
            to < h.len()
        } else {
            from > 0
        };
        let lines = h
            .range(from..to)
            .map(|e| replayed(&self.rec.name, e))
            .collect();
        (lines, more)
    }

    /// Drops the lines up to the last one sent before `ts` (ms since the
    /// epoch); returns the `seq` of the last dropped. (Times are nearly in
    /// order: a line from another server carries that server's time, within
    /// minutes; cutting at a `seq` keeps the history whole, and lets the
    /// store cut the same lines by its key.)
    pub(crate) fn expire_history(&mut self, ts: u64) -> Option<u64> {
        let last = self.history.iter().rposition(|e| e.ts < ts)?;
        let seq = self.history[last].seq;
        self.history.drain(..=last);
        Some(seq)
    }

    /// How the room shows in a room list: a private room's size is not told.
    pub(crate) fn info(&self) -> RoomInfo {
        let private = self.is_private();
        RoomInfo {
            name: self.rec.name.clone(),
            private,
            members: (!private).then_some(self.member_count() as u32),
        }
    }

    /// The room's record as the network carries it.
    pub(crate) fn net_record(&self) -> NetRoom {
        net_room(&self.rec)
    }

    /// Takes the room's new name after it lost a clash.
    pub(crate) fn rename(&mut self, name: &str) {
        self.rec.name = name.to_string();
    }
}

/// A room record as the network carries it.
pub(crate) fn net_room(rec: &RoomRecord) -> NetRoom {
    NetRoom {
        name: rec.name.clone(),
        id: rec.id.clone(),
        creator: rec.creator.clone(),
        password_hash: rec.password_hash.clone(),
        created_ms: rec.created_ms,
    }
}
