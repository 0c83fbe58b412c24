//! Rate limits that outlive a connection. A client's buckets are kept when
//! it disconnects and handed back when the same name logs in again, so
//! reconnecting does not refill them; a name disconnected for flooding may
//! not log in again for a while, twice as long at each repeat.
//!
//! Without this, a flooder that reconnects at once gets a fresh burst each
//! time: the soak's attacker did so seven times a second, and every burst of
//! 40 chat lines reached a room of a hundred.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chatdrop_proto::names::name_key;

use crate::quota::{Limits, Quota};

/// Most names remembered; past it, records that can go are dropped, and a
/// name that finds no room starts with full buckets as before.
const MAX_RECORDS: usize = 65_536;

/// How long a disconnection for flooding counts towards the next bar (ms).
const KICKS_REMEMBERED_MS: u64 = 3_600_000;

/// Longest bar, whatever the repeats (ms).
const MAX_BAR_MS: u64 = 15 * 60 * 1000;

/// What is kept of one name.
#[derive(Debug)]
struct Record {
    quota: Quota,
    /// Disconnections for flooding within [`KICKS_REMEMBERED_MS`].
    kicks: u32,
    /// No login before this (ms on the table's clock).
    barred_until_ms: u64,
    /// The record may go after this.
    keep_until_ms: u64,
}

/// The table, shared by every connection of a server.
#[derive(Debug)]
pub struct Carried {
    limits: Arc<Limits>,
    start: Instant,
    records: Mutex<HashMap<String, Record>>,
}

impl Carried {
    /// An empty table for `limits`.
    pub fn new(limits: Arc<Limits>) -> Self {
        Carried {
            limits,
            start: Instant::now(),
            records: Mutex::new(HashMap::new()),
        }
    }

    /// The clock buckets run on: ms since the table was made.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// At `user`'s login: the buckets it left with, or full ones; or why it
    /// may not log in yet.
    pub fn resume(&self, user: &str, now_ms: u64) -> Result<Quota, String> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        match records.get(&name_key(user)) {
            Some(r) if r.barred_until_ms > now_ms => {
                let secs = (r.barred_until_ms - now_ms).div_ceil(1000);
                Err(format!(
                    "{user} was disconnected for going over the rate limits; \
                     log in again in {secs} s"
                ))
            }
            Some(r) => Ok(r.quota.clone()),
            None => Ok(Quota::new(self.limits.clone(), now_ms)),
        }
    }

    /// At the end of `user`'s session: keeps its buckets, and bars the
    /// name for a while if it was disconnected for flooding.
    pub fn keep(&self, user: &str, quota: Quota, kicked: bool, now_ms: u64) {
        if !self.limits.enabled {
            return;
        }
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let key = name_key(user);
        let kicks = match records.get(&key) {
            Some(r) if r.keep_until_ms > now_ms => r.kicks,
            _ => 0,
        } + u32::from(kicked);
        let base = self.limits.kick_bar_secs.saturating_mul(1000);
        let barred_until_ms = if kicked && base > 0 {
            let doubled = base.saturating_mul(1 << kicks.saturating_sub(1).min(20));
            now_ms + doubled.min(MAX_BAR_MS.max(base))
        } else {
            records.get(&key).map_or(0, |r| r.barred_until_ms)
        };
        let refilled = now_ms + quota.refill_ms();
        let keep_until_ms = if kicks > 0 {
            refilled.max(barred_until_ms + KICKS_REMEMBERED_MS)
        } else {
            refilled
        };
        if keep_until_ms <= now_ms {
            records.remove(&key); // full buckets: nothing to carry
            return;
        }
        if records.len() >= MAX_RECORDS && !records.contains_key(&key) {
            records.retain(|_, r| r.keep_until_ms > now_ms);
            if records.len() >= MAX_RECORDS {
                return;
            }
        }
        records.insert(
            key,
            Record {
                quota,
                kicks,
                barred_until_ms,
                keep_until_ms,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{say, Verdict};

    fn table() -> Carried {
        Carried::new(Arc::new(Limits::default()))
    }

    /// Spends `q`'s chat-line burst at `now`; how many were allowed.
    fn spend(q: &mut Quota, now: u64) -> usize {
        (0..100)
            .filter(|_| q.check(now, &say(), 10) == Verdict::Allow)
            .count()
    }

    #[test]
    fn reconnecting_does_not_refill_the_buckets() {
        let t = table();
        let mut q = t.resume("mallory", 0).unwrap();
        assert_eq!(spend(&mut q, 0), 40, "the first burst");
        t.keep("mallory", q, false, 0);
        // Back at once, under another spelling of the same name: nothing
        // left; a second later, the 10 lines a second the rate gives.
        let mut q = t.resume("Mallory", 0).unwrap();
        assert_eq!(spend(&mut q, 0), 0);
        assert_eq!(spend(&mut q, 1_000), 10);
        // Someone else is not touched.
        assert_eq!(spend(&mut t.resume("alice", 1_000).unwrap(), 1_000), 40);
    }

    #[test]
    fn a_name_disconnected_for_flooding_waits_twice_as_long_each_time() {
        let t = table();
        let bar = Limits::default().kick_bar_secs * 1000;
        let q = t.resume("mallory", 0).unwrap();
        t.keep("mallory", q, true, 0);
        let why = t.resume("mallory", 1_000).unwrap_err();
        assert!(
            why.contains("disconnected for going over the rate limits")
                && why.contains(&format!("in {} s", bar / 1000 - 1)),
            "{why}"
        );
        let q = t.resume("mallory", bar).unwrap();
        t.keep("mallory", q, true, bar);
        assert!(
            t.resume("mallory", bar + bar).is_err(),
            "the second bar is longer"
        );
        assert!(t.resume("mallory", bar + 2 * bar).is_ok());
        // Bars never pass the longest.
        let mut now = 3 * bar;
        for _ in 0..30 {
            let q = t.resume("mallory", now).unwrap();
            t.keep("mallory", q, true, now);
            now += MAX_BAR_MS;
        }
        assert!(t.resume("mallory", now).is_ok());
    }

    #[test]
    fn a_record_with_full_buckets_is_dropped() {
        let t = table();
        let q = t.resume("alice", 0).unwrap();
        t.keep("alice", q, false, 0);
        assert!(t.records.lock().unwrap().is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let t = table();
        for i in 0..MAX_RECORDS + 10 {
            let name = format!("u{i}");
            let mut q = t.resume(&name, 0).unwrap();
            assert_eq!(q.check(0, &say(), 10), Verdict::Allow);
            t.keep(&name, q, false, 0);
        }
        assert_eq!(t.records.lock().unwrap().len(), MAX_RECORDS);
        // Once the early records may go, there is room again.
        let mut q = t.resume("late", 3_600_000).unwrap();
        spend(&mut q, 3_600_000);
        t.keep("late", q, false, 3_600_000);
        assert_eq!(t.records.lock().unwrap().len(), 1);
    }

    #[test]
    fn nothing_is_kept_with_the_limits_off() {
        let t = Carried::new(Arc::new(Limits::off()));
        let q = t.resume("bench", 0).unwrap();
        t.keep("bench", q, true, 0);
        assert!(t.resume("bench", 0).is_ok());
    }
}
