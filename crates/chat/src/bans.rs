//! Bans: by user name, by identity key, or by address range, each with the
//! reason the banned client is shown. Names are free and addresses change,
//! so an admin can ban whichever the abuser cannot shed: the key a client
//! logs in with, or the range it connects from.
//!
//! A ban's target is written `NAME`, `key:HEX` (the 64 hex digits of an
//! identity key) or `ip:ADDR[/LEN]`; stored that way, names cannot contain
//! `:`, so the three never mix.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// What a ban is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanTarget {
    /// A user name.
    User(String),
    /// An identity key, whatever name it logs in with.
    Key([u8; 32]),
    /// An address range (one address is a /32 or /128).
    Net(IpNet),
}

impl BanTarget {
    /// Reads a target as the console writes it.
    pub fn parse(s: &str) -> Result<BanTarget, String> {
        if let Some(h) = s.strip_prefix("key:") {
            let mut key = [0u8; 32];
            hex::decode_to_slice(h, &mut key)
                .map_err(|_| format!("{s:?}: a key is 64 hex digits"))?;
            return Ok(BanTarget::Key(key));
        }
        if let Some(a) = s.strip_prefix("ip:") {
            let net = match a.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => a
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("{s:?}: not an address or range (ip:203.0.113.0/24)"))?,
            };
            return Ok(BanTarget::Net(net));
        }
        if s.contains(':') {
            return Err(format!("{s:?}: a ban is on NAME, key:HEX or ip:RANGE"));
        }
        Ok(BanTarget::User(s.to_string()))
    }
}

impl std::fmt::Display for BanTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BanTarget::User(u) => write!(f, "{u}"),
            BanTarget::Key(k) => write!(f, "key:{}", hex::encode(k)),
            BanTarget::Net(n) => write!(f, "ip:{n}"),
        }
    }
}

/// The bans in force, by target, with their reasons.
#[derive(Debug, Default)]
pub(crate) struct Bans {
    /// Every ban by its written target, for listing and storing.
    all: BTreeMap<String, String>,
    /// The address ranges, to test an address against.
    nets: Vec<(IpNet, String)>,
}

impl Bans {
    /// Bans as stored (`(target, reason)`); a target that no longer reads
    /// is skipped.
    pub(crate) fn load(stored: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut bans = Bans::default();
        for (target, reason) in stored {
            if let Ok(t) = BanTarget::parse(&target) {
                bans.add(&t, reason);
            }
        }
        bans
    }

    pub(crate) fn add(&mut self, target: &BanTarget, reason: String) {
        if let BanTarget::Net(net) = target {
            self.nets.retain(|(n, _)| n != net);
            self.nets.push((*net, reason.clone()));
        }
        self.all.insert(target.to_string(), reason);
    }

    /// Lifts a ban; false if there was none.
    pub(crate) fn remove(&mut self, target: &BanTarget) -> bool {
        if let BanTarget::Net(net) = target {
            self.nets.retain(|(n, _)| n != net);
        }
        self.all.remove(&target.to_string()).is_some()
    }

    /// Why a login as `user` with `key` from `ip` is banned, if it is: the
    /// sentence for the client.
    pub(crate) fn check(&self, user: &str, key: &[u8; 32], ip: IpAddr) -> Option<String> {
        if let Some(r) = self.all.get(user) {
            return Some(format!("user {user} is banned from this server: {r}"));
        }
        if let Some(r) = self.all.get(&BanTarget::Key(*key).to_string()) {
            return Some(format!("your key is banned from this server: {r}"));
        }
        let ip = ip.to_canonical();
        self.nets
            .iter()
            .find(|(n, _)| n.contains(&ip))
            .map(|(_, r)| format!("your address is banned from this server: {r}"))
    }

    /// Every ban, as `target: reason`.
    pub(crate) fn list(&self) -> impl Iterator<Item = (&String, &String)> {
        self.all.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_and_write_back() {
        let key = format!("key:{}", "ab".repeat(32));
        for s in ["eve", key.as_str(), "ip:203.0.113.0/24", "ip:2001:db8::/32"] {
            assert_eq!(BanTarget::parse(s).unwrap().to_string(), s);
        }
        // A range is kept by its network; one address is a /32.
        assert_eq!(
            BanTarget::parse("ip:203.0.113.77/24").unwrap().to_string(),
            "ip:203.0.113.0/24"
        );
        assert_eq!(
            BanTarget::parse("ip:198.51.100.1").unwrap().to_string(),
            "ip:198.51.100.1/32"
        );
        for bad in ["key:abc", "ip:300.1.1.1", "ip:nonsense", "a:b"] {
            assert!(BanTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_login_is_banned_by_name_key_or_range() {
        let mut b = Bans::default();
        b.add(&BanTarget::parse("eve").unwrap(), "spam".into());
        b.add(&BanTarget::Key([7; 32]), "bots".into());
        b.add(
            &BanTarget::parse("ip:203.0.113.0/24").unwrap(),
            "flood".into(),
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let ok = ip("192.0.2.1");
        assert_eq!(
            b.check("eve", &[1; 32], ok).unwrap(),
            "user eve is banned from this server: spam"
        );
        assert_eq!(
            b.check("newname", &[7; 32], ok).unwrap(),
            "your key is banned from this server: bots"
        );
        assert_eq!(
            b.check("newname", &[1; 32], ip("::ffff:203.0.113.9"))
                .unwrap(),
            "your address is banned from this server: flood"
        );
        assert_eq!(b.check("newname", &[1; 32], ok), None);
        assert!(b.remove(&BanTarget::parse("ip:203.0.113.0/24").unwrap()));
        assert_eq!(b.check("newname", &[1; 32], ip("203.0.113.9")), None);
        // Stored and loaded again.
        let stored: Vec<(String, String)> = b.list().map(|(t, r)| (t.clone(), r.clone())).collect();
        let again = Bans::load(stored);
        assert!(again.check("x", &[7; 32], ok).is_some());
    }
}
