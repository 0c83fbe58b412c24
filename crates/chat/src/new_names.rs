//! How many new user names one address may bind. A name is free to take,
//! and once bound it is kept, stored and sent to every linked server, so
//! each address block (an IPv4 address, an IPv6 /64) gets a bucket of
//! [`crate::Settings::new_names_per_hour`] new names, refilled evenly over
//! the hour. Logging in with a name already bound costs nothing.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::lockout::ip_block;

/// Address blocks tracked at most: when full, those whose bucket has
/// refilled are forgotten first (they are as if never seen), then the
/// longest quiet.
const MAX_ENTRIES: usize = 16_384;

const HOUR_MS: f64 = 3_600_000.0;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Names left.
    tokens: f64,
    last_ms: u64,
}

/// The buckets, by address block.
#[derive(Debug, Default)]
pub(crate) struct NewNames {
    buckets: HashMap<IpAddr, Bucket>,
}

impl NewNames {
    /// Takes one new name for `ip` at `now_ms` out of `per_hour` an hour
    /// (0: no limit). When none is left, the minutes until one is.
    pub(crate) fn take(&mut self, ip: IpAddr, per_hour: u32, now_ms: u64) -> Result<(), u64> {
        if per_hour == 0 {
            return Ok(());
        }
        let full = f64::from(per_hour);
        let per_ms = full / HOUR_MS;
        let block = ip_block(ip);
        if !self.buckets.contains_key(&block) && self.buckets.len() >= MAX_ENTRIES {
            self.make_room(full, per_ms, now_ms);
        }
        let b = self.buckets.entry(block).or_insert(Bucket {
            tokens: full,
            last_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(b.last_ms) as f64;
        b.tokens = (b.tokens + elapsed * per_ms).min(full);
        b.last_ms = now_ms;
        if b.tokens < 1.0 {
            let wait_ms = (1.0 - b.tokens) / per_ms;
            return Err((wait_ms / 60_000.0).ceil().max(1.0) as u64);
        }
        b.tokens -= 1.0;
        Ok(())
    }

    fn make_room(&mut self, full: f64, per_ms: f64, now_ms: u64) {
        self.buckets
            .retain(|_, b| b.tokens + now_ms.saturating_sub(b.last_ms) as f64 * per_ms < full);
        if self.buckets.len() >= MAX_ENTRIES {
            let mut quiet: Vec<(u64, IpAddr)> = self
                .buckets
                .iter()
                .map(|(ip, b)| (b.last_ms, *ip))
                .collect();
            quiet.sort_unstable();
            for (_, ip) in quiet.into_iter().take(MAX_ENTRIES / 4) {
                self.buckets.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MIN: u64 = 60_000;

    #[test]
    fn an_address_gets_its_names_an_hour_then_waits() {
        let mut n = NewNames::default();
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        for _ in 0..60 {
            assert_eq!(n.take(ip, 60, 0), Ok(()));
        }
        assert_eq!(n.take(ip, 60, 0), Err(1), "one a minute comes back");
        assert_eq!(n.take(ip, 60, MIN), Ok(()));
        assert_eq!(n.take(ip, 60, MIN), Err(1));
        // Another address is not affected; an IPv6 /64 is one address.
        assert_eq!(
            n.take(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 60, 0),
            Ok(())
        );
        let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1));
        let b = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9));
        for _ in 0..60 {
            assert_eq!(n.take(a, 60, 0), Ok(()));
        }
        assert!(n.take(b, 60, 0).is_err(), "the same /64");
        // 0: no limit.
        assert_eq!(n.take(ip, 0, MIN), Ok(()));
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut n = NewNames::default();
        for i in 0..(MAX_ENTRIES as u32 + 1000) {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(n.take(ip, 10, u64::from(i)), Ok(()));
        }
        assert!(n.buckets.len() <= MAX_ENTRIES);
    }
}
