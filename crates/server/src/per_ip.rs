//! Connections counted by where they come from: at most so many at once
//! from one address, and fewer still that have not finished logging in, so
//! one machine cannot take every slot or hold thousands of half-open logins.
//!
//! IPv6 addresses are counted by their /64, the block one home or host is
//! usually given: an attacker gets a whole /64 as easily as one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The unit addresses are counted in: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(IpAddr);

impl IpKey {
    /// The key of `ip` (an IPv4-mapped IPv6 address counts as the IPv4 one).
    pub fn of(ip: IpAddr) -> Self {
        IpKey(chatdrop_chat::ip_block(ip))
    }
}

impl std::fmt::Display for IpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    open: usize,
    logging_in: usize,
}

/// Why a connection is not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The address has `connections_per_ip` connections already.
    Connections(usize),
    /// The address has `logins_per_ip` connections still logging in.
    Logins(usize),
}

impl Refusal {
    /// The sentence for the refused client.
    pub fn message(&self) -> String {
        match self {
            Refusal::Connections(n) => format!(
                "too many connections from your address (the connections_per_ip limit is {n})"
            ),
            Refusal::Logins(n) => format!(
                "too many logins in progress from your address (the logins_per_ip limit is {n})"
            ),
        }
    }
}

/// The counts of every address with a connection open.
#[derive(Debug, Clone)]
pub struct PerIp {
    counts: Arc<Mutex<HashMap<IpKey, Counts>>>,
    max_open: usize,
    max_logging_in: usize,
}

impl PerIp {
    /// A table allowing `max_open` connections per address, `max_logging_in`
    /// of them before their login completes.
    pub fn new(max_open: usize, max_logging_in: usize) -> Self {
        PerIp {
            counts: Arc::default(),
            max_open,
            max_logging_in,
        }
    }

    /// Counts a new connection from `ip` as open and logging in, unless
    /// that is over a limit. Dropping the guard uncounts it.
    pub fn admit(&self, ip: IpAddr) -> Result<IpGuard, Refusal> {
        let key = IpKey::of(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let c = counts.entry(key).or_default();
        if c.open >= self.max_open {
            return Err(Refusal::Connections(self.max_open));
        }
        if c.logging_in >= self.max_logging_in {
            return Err(Refusal::Logins(self.max_logging_in));
        }
        c.open += 1;
        c.logging_in += 1;
        Ok(IpGuard {
            table: self.clone(),
            key,
            logging_in: true,
        })
    }

    /// Addresses with a connection open.
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// One counted connection; see [`PerIp::admit`].
#[derive(Debug)]
pub struct IpGuard {
    table: PerIp,
    key: IpKey,
    logging_in: bool,
}

impl IpGuard {
    /// The connection finished its login (or became a server link): it no
    /// longer counts against the logins in progress.
    pub fn logged_in(&mut self) {
        if std::mem::take(&mut self.logging_in) {
            let mut counts = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = counts.get_mut(&self.key) {
                c.logging_in = c.logging_in.saturating_sub(1);
            }
        }
    }
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = counts.get_mut(&self.key) {
            c.open = c.open.saturating_sub(1);
            if self.logging_in {
                c.logging_in = c.logging_in.saturating_sub(1);
            }
            if c.open == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn logins_in_progress_are_capped_then_freed_by_logging_in() {
        let t = PerIp::new(4, 2);
        let mut a = t.admit(ip("192.0.2.1")).unwrap();
        let _b = t.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(t.admit(ip("192.0.2.1")).unwrap_err(), Refusal::Logins(2));
        // Another address is not affected.
        let _other = t.admit(ip("192.0.2.2")).unwrap();
        a.logged_in();
        a.logged_in(); // twice changes nothing
        let _c = t.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(t.admit(ip("192.0.2.1")).unwrap_err(), Refusal::Logins(2));
    }

    #[test]
    fn open_connections_are_capped_and_freed_on_drop() {
        let t = PerIp::new(2, 2);
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut g = t.admit(ip("192.0.2.7")).unwrap();
            g.logged_in();
            held.push(g);
        }
        let refused = t.admit(ip("192.0.2.7")).unwrap_err();
        assert_eq!(refused, Refusal::Connections(2));
        assert!(refused.message().contains("connections_per_ip limit is 2"));
        held.pop();
        assert!(t.admit(ip("192.0.2.7")).is_ok());
        drop(held);
        assert_eq!(t.addresses(), 0, "nothing is kept for a gone address");
    }

    #[test]
    fn an_ipv6_64_counts_as_one_and_mapped_ipv4_as_ipv4() {
        let t = PerIp::new(1, 1);
        let _g = t.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(t.admit(ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(t.admit(ip("2001:db8:1:3::1")).is_ok());
        let _v4 = t.admit(ip("198.51.100.4")).unwrap();
        assert!(t.admit(ip("::ffff:198.51.100.4")).is_err());
        assert_eq!(
            IpKey::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }
}
