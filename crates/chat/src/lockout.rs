//! Wrong-password slowdowns. Failures are counted per user name, per
//! address block and per room: names are free and addresses are cheap, so
//! counting by name alone would let a guesser rename itself between tries,
//! and by address alone would let one with many addresses go on; the room's
//! own count caps the guessing speed against it whoever guesses.
//!
//! After a few free failures each further one doubles the wait, up to a
//! maximum. Counts are forgotten after a quiet while, and the table is
//! bounded: it forgets the oldest entries first.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};

/// A failure count this long after the last failure is forgotten (ms).
const FORGET_MS: u64 = 15 * 60 * 1000;

/// Entries one table keeps at most.
const MAX_ENTRIES: usize = 16_384;

/// The block an address is counted in: an IPv4 address, or an IPv6 /64
/// (what one home or host is usually given). An IPv4-mapped IPv6 address is
/// its IPv4 address.
pub fn ip_block(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    locked_until_ms: u64,
    last_ms: u64,
}

/// Failure counts by key (a name, an address block, a room).
#[derive(Debug)]
pub(crate) struct Lockouts<K> {
    entries: HashMap<K, Failures>,
    /// Failures allowed before waits start.
    free: u32,
    /// Longest wait (ms).
    max_ms: u64,
}

impl<K: Hash + Eq + Clone> Lockouts<K> {
    pub(crate) fn new(free: u32, max_ms: u64) -> Self {
        Lockouts {
            entries: HashMap::new(),
            free,
            max_ms,
        }
    }

    /// Seconds `key` must still wait, if it must.
    pub(crate) fn wait_secs(&self, key: &K, now_ms: u64) -> Option<u64> {
        let f = self.entries.get(key)?;
        (f.locked_until_ms > now_ms).then(|| (f.locked_until_ms - now_ms).div_ceil(1000))
    }

    /// One more failure of `key`.
    pub(crate) fn fail(&mut self, key: &K, now_ms: u64) {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(key) {
            self.prune(now_ms);
        }
        let f = self.entries.entry(key.clone()).or_default();
        if now_ms.saturating_sub(f.last_ms) > FORGET_MS {
            *f = Failures::default();
        }
        f.count += 1;
        f.last_ms = now_ms;
        if f.count >= self.free {
            let doublings = (f.count - self.free).min(16);
            let wait = (1000u64 << doublings).min(self.max_ms);
            f.locked_until_ms = now_ms + wait;
        }
    }

    /// Forgets `key`'s failures (it got in).
    pub(crate) fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Makes room: drops what is forgotten anyway, then, if that is not
    /// enough, the half with the oldest last failure.
    fn prune(&mut self, now_ms: u64) {
        self.entries
            .retain(|_, f| now_ms.saturating_sub(f.last_ms) <= FORGET_MS);
        if self.entries.len() >= MAX_ENTRIES {
            let mut lasts: Vec<u64> = self.entries.values().map(|f| f.last_ms).collect();
            let mid = lasts.len() / 2;
            let (_, median, _) = lasts.select_nth_unstable(mid);
            let median = *median;
            self.entries.retain(|_, f| f.last_ms > median);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Wrong-password counts by user name, address block and room id.
#[derive(Debug)]
pub(crate) struct PasswordFailures {
    pub(crate) users: Lockouts<String>,
    pub(crate) ips: Lockouts<IpAddr>,
    pub(crate) rooms: Lockouts<String>,
    /// (room id, user name) of those who got into a room with its password
    /// (or made it) on this server since it started, with when they last
    /// did: the room's own count, which caps the guesses of strangers with
    /// many names and addresses, does not keep them out. (A name is bound
    /// to its key, so nobody else can pass for them.) At most
    /// [`MAX_ENTRIES`], the least recent dropped first.
    admitted: HashMap<(String, String), u64>,
}

impl PasswordFailures {
    pub(crate) fn new(s: &crate::Settings) -> Self {
        PasswordFailures {
            users: Lockouts::new(s.free_password_failures, s.max_lockout_ms),
            ips: Lockouts::new(s.free_password_failures, s.max_lockout_ms),
            rooms: Lockouts::new(s.free_room_password_failures, s.max_lockout_ms),
            admitted: HashMap::new(),
        }
    }

    /// `user` got into room `room_id` with its password, or made it.
    pub(crate) fn admit(&mut self, user: &str, room_id: &str, now_ms: u64) {
        let key = (room_id.to_string(), user.to_string());
        if self.admitted.len() >= MAX_ENTRIES && !self.admitted.contains_key(&key) {
            let mut lasts: Vec<u64> = self.admitted.values().copied().collect();
            let mid = lasts.len() / 2;
            let (_, median, _) = lasts.select_nth_unstable(mid);
            let median = *median;
            self.admitted.retain(|_, last| *last > median);
        }
        self.admitted.insert(key, now_ms);
    }

    /// Why a guess by `user` from `ip` at room `room_id` (named `room`)
    /// must wait, if it must.
    pub(crate) fn refusal(
        &self,
        user: &str,
        ip: IpAddr,
        room_id: &str,
        room: &str,
        now_ms: u64,
    ) -> Option<String> {
        if let Some(s) = self.users.wait_secs(&user.to_string(), now_ms) {
            return Some(format!("too many wrong passwords; try again in {s} s"));
        }
        if let Some(s) = self.ips.wait_secs(&ip_block(ip), now_ms) {
            return Some(format!(
                "too many wrong passwords from your address; try again in {s} s"
            ));
        }
        // Someone who got in before is no stranger guessing.
        if self
            .admitted
            .contains_key(&(room_id.to_string(), user.to_string()))
        {
            return None;
        }
        self.rooms
            .wait_secs(&room_id.to_string(), now_ms)
            .map(|s| format!("too many wrong passwords for room {room} lately; try again in {s} s"))
    }

    /// A wrong guess, counted against all three.
    pub(crate) fn fail(&mut self, user: &str, ip: IpAddr, room_id: &str, now_ms: u64) {
        self.users.fail(&user.to_string(), now_ms);
        self.ips.fail(&ip_block(ip), now_ms);
        self.rooms.fail(&room_id.to_string(), now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_and_are_forgotten_later() {
        let mut l = Lockouts::new(3, 60_000);
        let k = "mallory".to_string();
        l.fail(&k, 0);
        l.fail(&k, 0);
        assert_eq!(l.wait_secs(&k, 0), None);
        l.fail(&k, 0);
        assert_eq!(l.wait_secs(&k, 0), Some(1));
        l.fail(&k, 1_000);
        assert_eq!(l.wait_secs(&k, 1_000), Some(2));
        for _ in 0..20 {
            l.fail(&k, 2_000);
        }
        assert_eq!(l.wait_secs(&k, 2_000), Some(60), "capped at the maximum");
        // A quarter of an hour after the last failure it starts over.
        let later = 2_000 + FORGET_MS + 1;
        l.fail(&k, later);
        assert_eq!(l.wait_secs(&k, later), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut l = Lockouts::new(3, 60_000);
        for i in 0..(MAX_ENTRIES as u64 * 3) {
            l.fail(&i, i);
        }
        assert!(l.len() <= MAX_ENTRIES);
        // The newest are kept.
        let newest = MAX_ENTRIES as u64 * 3 - 1;
        l.fail(&newest, newest);
        l.fail(&newest, newest);
        assert_eq!(l.wait_secs(&newest, newest), Some(1));
    }

    /// A room locked by strangers' guesses stays open to those who got in
    /// before (its own count is for strangers), but not their own or their
    /// address's count. (Seen failing without the exemption: after twenty
    /// strangers' guesses a member with the right password was refused for
    /// up to a minute at a time, as long as the guessing went on.)
    #[test]
    fn a_room_locked_by_strangers_stays_open_to_its_members() {
        let mut f = PasswordFailures::new(&crate::Settings::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        f.admit("alice", "room1", 0);
        for i in 0..20u8 {
            let guesser: IpAddr = [198, 51, 100, i].into();
            f.fail(&format!("m{i}"), guesser, "room1", 0);
        }
        let stranger = f.refusal("carol", ip, "room1", "vault", 0);
        assert_eq!(
            stranger.as_deref(),
            Some("too many wrong passwords for room vault lately; try again in 1 s")
        );
        assert_eq!(f.refusal("alice", ip, "room1", "vault", 0), None);
        // Only for that room.
        f.fail("x", [203, 0, 113, 1].into(), "room2", 0);
        for i in 0..20u8 {
            f.fail(&format!("n{i}"), [198, 51, 101, i].into(), "room2", 0);
        }
        assert!(f.refusal("alice", ip, "room2", "other", 0).is_some());
        // Her own wrong guesses still count.
        for _ in 0..3 {
            f.fail("alice", ip, "room1", 0);
        }
        assert_eq!(
            f.refusal("alice", ip, "room1", "vault", 0).as_deref(),
            Some("too many wrong passwords; try again in 1 s")
        );
    }

    #[test]
    fn an_ipv6_64_is_one_block() {
        let a: IpAddr = "2001:db8:0:1::5".parse().unwrap();
        let b: IpAddr = "2001:db8:0:1:8000::9".parse().unwrap();
        assert_eq!(ip_block(a), ip_block(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ip_block(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
