//! Rooms that nobody uses go away. A room is kept, stored and sent to every
//! linked server for as long as it exists, so rooms made and left behind
//! (by a script, or by people long gone) would grow every room list and
//! every `Sync` without end. A room with no member anywhere and no history
//! is forgotten once it has been empty for [`Settings::empty_room_expiry_ms`]
//! by this server's clock.
//!
//! Every server applies the same rule to the same facts (members and
//! history are known network-wide), so each forgets the room by itself: no
//! message is needed. A server whose `Sync` still lists the room brings it
//! back for a while; it goes again once empty for the same time.
//!
//! Names bound and never used again go the same way: a name is free to
//! take, and one taken by a script (or tried once and forgotten) would
//! otherwise be held for ever, in every server's state. A binding whose name
//! was never logged into again an hour or more after it was bound, and that
//! is older than [`Settings::unused_name_expiry_ms`], is forgotten while
//! its name is offline everywhere. Logins are seen network-wide, so every
//! server comes to the same answer. The key that held the name binds it
//! afresh at its next login, if the name is still free.
//!
//! [`Settings::empty_room_expiry_ms`]: crate::Settings::empty_room_expiry_ms
//! [`Settings::unused_name_expiry_ms`]: crate::Settings::unused_name_expiry_ms

use std::sync::Arc;

use chatdrop_proto::names::name_key;

use crate::chat::Chat;
use crate::event::{Effect, Persist};

/// How often (ms) rooms are looked over.
pub const SWEEP_MS: u64 = 10_000;

/// How often (ms) name bindings are looked over: there may be a million.
pub const NAME_SWEEP_MS: u64 = 60_000;

impl Chat {
    /// Looks rooms over, at most every [`SWEEP_MS`]: notes since when each
    /// is empty and forgets those empty for long enough.
    pub(crate) fn sweep_rooms(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let expiry = self.settings.empty_room_expiry_ms;
        let max_age = self.settings.history_max_age_ms;
        if (expiry == 0 && max_age == 0) || now_ms < self.next_room_sweep_ms {
            return;
        }
        self.next_room_sweep_ms = now_ms + SWEEP_MS;
        if max_age > 0 {
            // Lines older than the server keeps go, here and in the store.
            let before = now_ms.saturating_sub(max_age);
            for (name, room) in self.rooms.iter_mut() {
                if let Some(seq) = room.expire_history(before) {
                    out.push(Effect::Persist(Persist::ExpireHistory {
                        room: name.clone(),
                        seq,
                    }));
                }
            }
        }
        if expiry == 0 {
            return;
        }
        let mut gone = Vec::new();
        for (name, room) in self.rooms.iter_mut() {
            if room.member_count() > 0 || room.has_history() {
                room.empty_since_ms = None;
                continue;
            }
            let since = *room.empty_since_ms.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= expiry {
                gone.push(name.clone());
            }
        }
        for name in gone {
            let Some(room) = self.rooms.remove(&name) else {
                continue;
            };
            self.room_ids.remove(room.id());
            let key = name_key(&name);
            if self.room_keys.get(&key) == Some(&name) {
                self.room_keys.remove(&key);
            }
            out.push(Effect::Persist(Persist::DropRoom { name: name.clone() }));
            out.push(Effect::Console(format!(
                "[rooms] room {name} forgotten: nobody in it and nothing said for {} h",
                expiry / 3_600_000
            )));
        }
    }

    /// Looks name bindings over, at most every [`NAME_SWEEP_MS`]: forgets
    /// those bound long enough ago, never used again, and offline.
    pub(crate) fn sweep_names(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        if now_ms < self.next_name_sweep_ms {
            return;
        }
        self.next_name_sweep_ms = now_ms + NAME_SWEEP_MS;
        self.expire_names(now_ms, out);
        // Bindings replaced or expired may have been a server's last.
        self.homes.forget_unused();
    }

    /// Forgets the bindings [`Chat::sweep_names`] describes, unless expiry
    /// is off.
    fn expire_names(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let expiry = self.settings.unused_name_expiry_ms;
        if expiry == 0 {
            return;
        }
        let mut gone: Vec<Arc<str>> = self
            .bindings
            .iter()
            .filter(|(_, b)| {
                !b.used_again
                    && now_ms.saturating_sub(b.bound_ms) >= expiry
                    && !self.online.contains_key(&*b.user)
                    && !self.remote.contains_key(&b.user)
            })
            .map(|(key, _)| key.clone())
            .collect();
        gone.sort();
        for key in gone {
            if let Some(b) = self.bindings.remove(&key) {
                out.push(Effect::Persist(Persist::Unbind {
                    user: b.user.to_string(),
                }));
            }
        }
    }
}
