//! The relay: where two sides of a transfer brokered here find no direct
//! path (a NAT that gives each destination its own port, a firewall), the
//! server passes their datagrams between them. It cannot read them: they
//! are sealed end to end with the transfer's keys.
//!
//! A relay is opened only for a transfer this server brokered, at the
//! request of one of its two sides (`brokered.rs` in the chat core), so
//! the server is never an open proxy. Each side gets a token of its own
//! over TLS (`ServerMsg::Relay`) and binds its leg with it:
//!
//! - a UDP leg: the side sends [`RELAY_MAGIC`] and its token from its
//!   transfer socket to the server's UDP port (the TLS port's number);
//!   the relay then takes that address as the side's, if it is at the
//!   address (for IPv6, in the /64) its TLS connection comes from. A later
//!   bind from another such address moves the leg (a NAT that changed its
//!   mapping). So whoever learns or forges a token can at most move a
//!   side's leg to another port of that side's own address: the relay
//!   never sends to a third party;
//! - a TLS leg, for a side whose UDP does not reach the server (the slow
//!   path): its datagrams come as `Tunnel` over its TLS connection, and
//!   the other side's go back the same way.
//!
//! A datagram from a bound address goes to the other side's leg, and
//! nowhere else; anything from an address no relay knows is dropped. The
//! limits ([`RelayLimits`]) bound the sessions in all and per user, and
//! the bytes per second of each session and of all of them (a datagram
//! over a limit is dropped, and the transfer's congestion control slows
//! down); a relay idle for `idle_secs`, or one side of which disconnected,
//! is closed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chatdrop_chat::{ip_block, ConnId};
use chatdrop_proto::limits::MAX_TUNNELED;
use chatdrop_proto::{encode_frame, ServerMsg, RELAY_MAGIC};
use serde::Deserialize;
use tokio::net::UdpSocket;

use crate::outbox::Outbox;

/// Datagrams held for a side not bound yet (the other side's first
/// `Start`s, which would otherwise wait for their next repeat), each no
/// longer than [`MAX_TUNNELED`].
const HELD: usize = 4;

/// Bytes of a bind datagram: the magic and the token.
pub(crate) const BIND_LEN: usize = RELAY_MAGIC.len() + 16;

/// The relay's limits (the config's `[relay]` table).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayLimits {
    /// False: no relay at all; transfers without a direct path fail.
    pub enabled: bool,
    /// Relayed transfers at once.
    pub max_sessions: usize,
    /// Relayed transfers one user takes part in at once.
    pub max_per_user: usize,
    /// Relayed transfers one address (an IPv6 /64) takes part in at once,
    /// whatever the names: a code's sides have no account, and one person
    /// may be both.
    pub max_per_address: usize,
    /// Bytes per second one relayed transfer may move (both ways).
    pub session_bytes_per_sec: f64,
    /// Bytes per second all relayed transfers together may move.
    pub total_bytes_per_sec: f64,
    /// Seconds without a datagram after which a relay is closed.
    pub idle_secs: u64,
    /// Where users of other servers of the network reach this relay (one
    /// address per family; the first of a user's family is told): for a
    /// server behind a NAT or a load balancer. Empty: the address the
    /// server sends to the user from, at its port.
    pub addresses: Vec<SocketAddr>,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            enabled: true,
            max_sessions: 64,
            max_per_user: 2,
            max_per_address: 4,
            session_bytes_per_sec: 16.0 * 1024.0 * 1024.0,
            total_bytes_per_sec: 64.0 * 1024.0 * 1024.0,
            idle_secs: 30,
            addresses: Vec::new(),
        }
    }
}

impl RelayLimits {
    /// Says what is wrong with the limits, if anything.
    pub fn check(&self) -> Result<(), String> {
        let rates = [
            ("session_bytes_per_sec", self.session_bytes_per_sec),
            ("total_bytes_per_sec", self.total_bytes_per_sec),
        ];
        for (name, rate) in rates {
            if !(rate.is_finite() && rate >= 1024.0) {
                return Err(format!("relay.{name} must be at least 1024"));
            }
        }
        if self.idle_secs == 0 {
            return Err("relay.idle_secs must be at least 1".into());
        }
        for a in &self.addresses {
            if !chatdrop_proto::limits::is_relay_address(a) {
                return Err(format!(
                    "relay.addresses: {a} is not an address and port users can reach"
                ));
            }
        }
        Ok(())
    }
}

/// A token bucket of bytes.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst(rate),
            at: now,
        }
    }

    /// Takes `n` bytes if they are there.
    fn take(&mut self, rate: f64, n: usize, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * rate).min(burst(rate));
        if self.tokens < n as f64 {
            return false;
        }
        self.tokens -= n as f64;
        true
    }
}

/// What a bucket holds at most: a tenth of a second at the rate, and room
/// for a burst of large datagrams at any rate.
fn burst(rate: f64) -> f64 {
    (rate / 10.0).max(256.0 * 1024.0)
}

/// How a side's datagrams come and go.
#[derive(Debug)]
enum Leg {
    /// Not bound yet: what the other side sends is dropped.
    Unbound,
    /// By UDP, from and to this address.
    Udp(SocketAddr),
    /// Over its TLS connection.
    Tls,
}

#[derive(Debug)]
struct Side {
    /// Its connection here and that connection's queue (for `Tunnel`);
    /// `None` for a user of another server, whose leg is UDP only.
    here: Option<(ConnId, Outbox)>,
    user: String,
    /// The address block ([`ip_block`]) its connection comes from: the
    /// only one its UDP leg may be bound at.
    block: IpAddr,
    token: [u8; 16],
    leg: Leg,
    /// Datagrams that came for it before it was bound.
    held: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Relay {
    sides: [Side; 2],
    opened: Instant,
    /// The last datagram passed on (or the opening).
    last: Instant,
    bucket: Bucket,
    /// Bytes and datagrams passed on, and dropped over a limit or for
    /// want of a bound other side.
    bytes: u64,
    datagrams: u64,
    dropped: u64,
}

#[derive(Default)]
struct Inner {
    relays: HashMap<[u8; 8], Relay>,
    /// Sides by token and by bound UDP address.
    by_token: HashMap<[u8; 16], ([u8; 8], usize)>,
    by_addr: HashMap<SocketAddr, ([u8; 8], usize)>,
    total: Option<Bucket>,
}

/// What became of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Not for any relay.
    NotMine,
    /// Taken care of: passed on over TLS, bound a leg, or dropped.
    Done,
    /// To be sent to this address from the server's UDP port.
    SendTo(SocketAddr),
    /// A side bound at this address: these datagrams held for it go
    /// there now.
    Flush(SocketAddr, Vec<Vec<u8>>),
}

/// One side of a relay to open.
pub(crate) struct Opening {
    /// Its user's name (or, for a code, what it is).
    pub(crate) user: String,
    /// The address its connection comes from, here or at its server.
    pub(crate) ip: IpAddr,
    /// Its connection here and that connection's queue; `None` for a user
    /// of another server of the network, whose leg can only be UDP.
    pub(crate) here: Option<(ConnId, Outbox)>,
}

impl Side {
    fn is(&self, conn: ConnId) -> bool {
        self.here.as_ref().is_some_and(|(c, _)| *c == conn)
    }
}

/// Every relay of the server.
pub(crate) struct Relays {
    limits: RelayLimits,
    inner: Mutex<Inner>,
    /// The server's UDP socket, for datagrams that came over TLS.
    socket: OnceLock<Arc<UdpSocket>>,
}

impl Relays {
    /// No relay yet, under `limits`.
    pub(crate) fn new(limits: RelayLimits) -> Relays {
        Relays {
            limits,
            inner: Mutex::default(),
            socket: OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The UDP socket datagrams from TLS legs leave by.
    pub(crate) fn set_socket(&self, socket: Arc<UdpSocket>) {
        let _ = self.socket.set(socket);
    }

    /// Where a user at `ip`, of another server of the network, reaches
    /// this relay: the configured address of `ip`'s family; else the UDP
    /// port's own address, where it is bound to one; else the address
    /// this machine sends to `ip` from, which is where the relay's
    /// datagrams to that side will come from (a NAT in front of it passes
    /// only those), at the port. `None` before the UDP port is open.
    pub(crate) fn address_for(&self, ip: IpAddr) -> Option<SocketAddr> {
        let ip = ip.to_canonical();
        let configured = (self.limits.addresses.iter())
            .find(|a| a.ip().to_canonical().is_ipv4() == ip.is_ipv4());
        if let Some(a) = configured {
            return Some(*a);
        }
        let local = self.socket.get()?.local_addr().ok()?;
        if !local.ip().is_unspecified() {
            return Some(local);
        }
        // Connecting a UDP socket sends nothing: it asks the kernel for
        // the route, and so the source address.
        let any: IpAddr = if ip.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let probe = std::net::UdpSocket::bind((any, 0)).ok()?;
        probe.connect((ip, local.port())).ok()?;
        Some(SocketAddr::new(probe.local_addr().ok()?.ip(), local.port()))
    }

    /// Opens a relay for `session` between `sides` (asker, owner), within
    /// the limits: the tokens to send each, or why not.
    pub(crate) fn open(
        &self,
        session: [u8; 8],
        sides: [Opening; 2],
        now: Instant,
    ) -> Result<[[u8; 16]; 2], String> {
        let l = &self.limits;
        if !l.enabled {
            return Err("this server does not relay transfers".into());
        }
        let mut inner = self.lock();
        inner.close_idle(now, Duration::from_secs(l.idle_secs));
        if inner.relays.contains_key(&session) {
            return Err("that transfer is already relayed".into());
        }
        if inner.relays.len() >= l.max_sessions {
            return Err(format!(
                "the server relays {} transfers already, its limit",
                l.max_sessions
            ));
        }
        for Opening { user, ip, .. } in &sides {
            let taking_part = (inner.relays.values())
                .filter(|r| r.sides.iter().any(|s| &s.user == user))
                .count();
            if taking_part >= l.max_per_user {
                return Err(format!(
                    "{user} has {taking_part} relayed transfers already, the limit per user"
                ));
            }
            let block = ip_block(*ip);
            let from_there = (inner.relays.values())
                .filter(|r| r.sides.iter().any(|s| s.block == block))
                .count();
            if from_there >= l.max_per_address {
                return Err(format!(
                    "{from_there} relayed transfers come from {user}'s address already, the limit per address"
                ));
            }
        }
        let tokens: [[u8; 16]; 2] = [rand::random(), rand::random()];
        let side = |o: Opening, token| Side {
            here: o.here,
            user: o.user,
            block: ip_block(o.ip),
            token,
            leg: Leg::Unbound,
            held: Vec::new(),
        };
        let [s0, s1] = sides;
        let relay = Relay {
            sides: [side(s0, tokens[0]), side(s1, tokens[1])],
            opened: now,
            last: now,
            bucket: Bucket::full(l.session_bytes_per_sec, now),
            bytes: 0,
            datagrams: 0,
            dropped: 0,
        };
        inner.relays.insert(session, relay);
        for (i, token) in tokens.iter().enumerate() {
            inner.by_token.insert(*token, (session, i));
        }
        Ok(tokens)
    }

    /// Datagrams that came to the UDP port `from`: a bind, or a run of
    /// datagrams of `stride` bytes (the last may be shorter; one datagram
    /// is a run of one) to pass on from a bound side.
    pub(crate) fn on_udp(
        &self,
        datagram: &[u8],
        stride: usize,
        from: SocketAddr,
        now: Instant,
    ) -> Pass {
        let mut inner = self.lock();
        if let Some(token) = parse_bind(datagram) {
            let Some(&(session, i)) = inner.by_token.get(&token) else {
                return Pass::NotMine;
            };
            // An address bound to another side stays with it.
            if inner
                .by_addr
                .get(&from)
                .is_some_and(|&held| held != (session, i))
            {
                return Pass::Done;
            }
            let Some(relay) = inner.relays.get_mut(&session) else {
                return Pass::Done;
            };
            // Only at the side's own address: never a third party's.
            if ip_block(from.ip()) != relay.sides[i].block {
                relay.dropped += 1;
                return Pass::Done;
            }
            let old = std::mem::replace(&mut relay.sides[i].leg, Leg::Udp(from));
            let held = std::mem::take(&mut relay.sides[i].held);
            if let Leg::Udp(old) = old {
                inner.by_addr.remove(&old);
            }
            inner.by_addr.insert(from, (session, i));
            return if held.is_empty() {
                Pass::Done
            } else {
                Pass::Flush(from, held)
            };
        }
        let Some(&(session, i)) = inner.by_addr.get(&from) else {
            return Pass::NotMine;
        };
        self.pass(&mut inner, session, 1 - i, (datagram, stride), now)
    }

    /// A `Tunnel` from `conn`: binds its side's TLS leg, and passes a
    /// datagram on. `NotMine` when `conn` is no side of such a relay.
    pub(crate) fn on_tunnel(
        &self,
        conn: ConnId,
        session: [u8; 8],
        data: &[u8],
        now: Instant,
    ) -> Pass {
        let mut inner = self.lock();
        let Some(relay) = inner.relays.get_mut(&session) else {
            return Pass::NotMine;
        };
        let Some(i) = relay.sides.iter().position(|s| s.is(conn)) else {
            return Pass::NotMine;
        };
        let side = &mut relay.sides[i];
        let Some((_, tx)) = &side.here else {
            return Pass::NotMine;
        };
        for held in std::mem::take(&mut side.held) {
            tunnel(tx, session, &held);
        }
        if let Leg::Udp(old) = std::mem::replace(&mut side.leg, Leg::Tls) {
            inner.by_addr.remove(&old);
        }
        if data.is_empty() {
            return Pass::Done;
        }
        if data.len() > MAX_TUNNELED {
            // Longer than a tunnel carries, whichever way it would go on.
            if let Some(r) = inner.relays.get_mut(&session) {
                r.dropped += 1;
            }
            return Pass::Done;
        }
        self.pass(&mut inner, session, 1 - i, (data, data.len()), now)
    }

    /// Passes `datagram` to side `to` of relay `session`, within the
    /// limits.
    fn pass(
        &self,
        inner: &mut Inner,
        session: [u8; 8],
        to: usize,
        (data, stride): (&[u8], usize),
        now: Instant,
    ) -> Pass {
        let stride = stride.max(1);
        let total_rate = self.limits.total_bytes_per_sec;
        let total = inner
            .total
            .get_or_insert_with(|| Bucket::full(total_rate, now));
        let Some(relay) = inner.relays.get_mut(&session) else {
            return Pass::Done;
        };
        relay.last = now;
        let within = relay
            .bucket
            .take(self.limits.session_bytes_per_sec, data.len(), now)
            && total.take(total_rate, data.len(), now);
        let datagrams = data.len().div_ceil(stride) as u64;
        if !within {
            relay.dropped += datagrams;
            return Pass::Done;
        }
        if let Leg::Udp(addr) = relay.sides[to].leg {
            relay.count(data.len(), datagrams);
            return Pass::SendTo(addr);
        }
        // One by one, the datagrams of a run the kernel coalesced.
        for datagram in data.chunks(stride) {
            let side = &mut relay.sides[to];
            let passed = match side.leg {
                Leg::Unbound => {
                    let hold = side.held.len() < HELD && datagram.len() <= MAX_TUNNELED;
                    if hold {
                        side.held.push(datagram.to_vec());
                    }
                    hold
                }
                Leg::Tls => {
                    let tx = side.here.as_ref().map(|(_, tx)| tx);
                    datagram.len() <= MAX_TUNNELED
                        && tx.is_some_and(|tx| tunnel(tx, session, datagram))
                }
                Leg::Udp(_) => false,
            };
            if passed {
                relay.count(datagram.len(), 1);
            } else {
                relay.dropped += 1;
            }
        }
        Pass::Done
    }

    /// Sends a datagram that came over TLS on by UDP.
    pub(crate) fn send_udp(&self, to: SocketAddr, data: &[u8]) {
        if let Some(socket) = self.socket.get() {
            // A full socket buffer drops it, as a router would.
            let _ = socket.try_send_to(data, to);
        }
    }

    /// Closes relay `session` if `conn` is one of its sides: the transfer
    /// is over.
    pub(crate) fn end(&self, conn: ConnId, session: [u8; 8]) {
        let mut inner = self.lock();
        let side = inner
            .relays
            .get(&session)
            .is_some_and(|r| r.sides.iter().any(|s| s.is(conn)));
        if side {
            inner.close(session);
        }
    }

    /// Closes the relays `conn` is a side of: it disconnected.
    pub(crate) fn forget(&self, conn: ConnId) {
        let mut inner = self.lock();
        let gone: Vec<[u8; 8]> = (inner.relays.iter())
            .filter(|(_, r)| r.sides.iter().any(|s| s.is(conn)))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            inner.close(id);
        }
    }

    /// Closes the relays idle for the configured time.
    pub(crate) fn sweep(&self, now: Instant) {
        let idle = Duration::from_secs(self.limits.idle_secs);
        self.lock().close_idle(now, idle);
    }

    /// The console's `relays`: one line per relay.
    pub(crate) fn describe(&self, now: Instant) -> Vec<String> {
        let mut inner = self.lock();
        inner.close_idle(now, Duration::from_secs(self.limits.idle_secs));
        if inner.relays.is_empty() {
            return vec!["no transfer is relayed".into()];
        }
        let mut lines = vec![format!(
            "{} relayed transfers (at most {}, {} per user)",
            inner.relays.len(),
            self.limits.max_sessions,
            self.limits.max_per_user
        )];
        let mut relays: Vec<_> = inner.relays.iter().collect();
        relays.sort_by_key(|(_, r)| r.opened);
        for (id, r) in relays {
            let mut line = format!("{}  ", hex::encode(id));
            for (i, s) in r.sides.iter().enumerate() {
                let leg = match s.leg {
                    Leg::Unbound => "not bound".to_string(),
                    Leg::Udp(a) => {
                        format!("udp {}", SocketAddr::new(a.ip().to_canonical(), a.port()))
                    }
                    Leg::Tls => "tls".to_string(),
                };
                let _ = write!(
                    line,
                    "{}{} ({leg})",
                    if i == 0 { "" } else { " <-> " },
                    s.user
                );
            }
            let _ = write!(
                line,
                "  {} bytes in {} datagrams, {} dropped, {}s open, {}s idle",
                r.bytes,
                r.datagrams,
                r.dropped,
                now.saturating_duration_since(r.opened).as_secs(),
                now.saturating_duration_since(r.last).as_secs()
            );
            lines.push(line);
        }
        lines
    }

    /// Relays open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().relays.len()
    }
}

impl Relay {
    fn count(&mut self, len: usize, datagrams: u64) {
        self.bytes += len as u64;
        self.datagrams += datagrams;
    }
}

impl Inner {
    fn close(&mut self, id: [u8; 8]) {
        let Some(r) = self.relays.remove(&id) else {
            return;
        };
        for s in &r.sides {
            self.by_token.remove(&s.token);
            if let Leg::Udp(a) = s.leg {
                self.by_addr.remove(&a);
            }
        }
    }

    fn close_idle(&mut self, now: Instant, idle: Duration) {
        let stale: Vec<[u8; 8]> = (self.relays.iter())
            .filter(|(_, r)| now.saturating_duration_since(r.last) >= idle)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.close(id);
        }
    }
}

/// Queues a datagram for a side over TLS; false if its queue has no room
/// to spare.
fn tunnel(tx: &Outbox, session: [u8; 8], data: &[u8]) -> bool {
    let msg = ServerMsg::Tunnel {
        session,
        data: data.to_vec(),
    };
    encode_frame(&msg).is_ok_and(|frame| tx.try_send_spare(frame).is_ok())
}

/// The token of a bind datagram, if `datagram` is one.
fn parse_bind(datagram: &[u8]) -> Option<[u8; 16]> {
    if datagram.len() != BIND_LEN || !datagram.starts_with(RELAY_MAGIC) {
        return None;
    }
    datagram[RELAY_MAGIC.len()..].try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{outbox, Inbox};
    use chatdrop_proto::decode;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// One datagram to the UDP port.
    fn one(relays: &Relays, datagram: &[u8], from: SocketAddr, now: Instant) -> Pass {
        relays.on_udp(datagram, datagram.len(), from, now)
    }

    fn bind_datagram(token: [u8; 16]) -> Vec<u8> {
        let mut d = RELAY_MAGIC.to_vec();
        d.extend_from_slice(&token);
        d
    }

    fn local(conn: u64, user: &str, at: &str, tx: Outbox) -> Opening {
        Opening {
            user: user.to_string(),
            ip: ip(at),
            here: Some((ConnId(conn), tx)),
        }
    }

    /// A relay for alice (1) and bob (2), with their queues.
    fn opened(limits: RelayLimits, now: Instant) -> (Relays, [[u8; 16]; 2], [Inbox; 2]) {
        let relays = Relays::new(limits);
        let (a_tx, a_rx) = outbox(64, 1 << 20);
        let (b_tx, b_rx) = outbox(64, 1 << 20);
        let sides = [
            local(1, "alice", "198.51.100.1", a_tx),
            local(2, "bob", "203.0.113.2", b_tx),
        ];
        let tokens = relays.open([6; 8], sides, now).expect("opened");
        (relays, tokens, [a_rx, b_rx])
    }

    /// Bob is a user of another server: his leg binds by UDP at his
    /// address as his server sees it, and only there; he has no
    /// connection here to take it over TLS, and nobody else's `Tunnel`
    /// or `RelayEnd` speaks for him.
    #[tokio::test]
    async fn a_side_at_another_server_binds_by_udp_at_its_own_address_only() {
        let now = Instant::now();
        let relays = Relays::new(RelayLimits::default());
        let (a_tx, _a_rx) = outbox(64, 1 << 20);
        let bob = Opening {
            user: "bob".into(),
            ip: ip("203.0.113.2"),
            here: None,
        };
        let sides = [local(1, "alice", "198.51.100.1", a_tx), bob];
        let [ta, tb] = relays.open([6; 8], sides, now).expect("opened");
        let (a, b) = (addr("198.51.100.1:4000"), addr("203.0.113.2:5000"));
        one(&relays, &bind_datagram(ta), a, now);
        // His token from a third party's address binds nothing.
        let elsewhere = addr("192.0.2.3:6000");
        assert_eq!(one(&relays, &bind_datagram(tb), elsewhere, now), Pass::Done);
        assert_eq!(one(&relays, b"data", elsewhere, now), Pass::NotMine);
        assert_eq!(one(&relays, b"start", a, now), Pass::Done, "held");
        assert_eq!(
            one(&relays, &bind_datagram(tb), b, now),
            Pass::Flush(b, vec![b"start".to_vec()])
        );
        assert_eq!(one(&relays, b"data", a, now), Pass::SendTo(b));
        assert_eq!(one(&relays, b"data", b, now), Pass::SendTo(a));
        // Connection 2 here is not bob.
        assert_eq!(
            relays.on_tunnel(ConnId(2), [6; 8], b"x", now),
            Pass::NotMine
        );
        relays.end(ConnId(2), [6; 8]);
        relays.forget(ConnId(2));
        assert_eq!(one(&relays, b"data", b, now), Pass::SendTo(a), "still open");
        // Alice, whose server this is, ends it.
        relays.end(ConnId(1), [6; 8]);
        assert_eq!(relays.len(), 0);
    }

    /// A user of another server is told the configured address of its
    /// family; else the UDP port's own, where it is bound to one; else
    /// the address this machine would send to the user from.
    #[tokio::test]
    async fn the_address_told_to_another_servers_user_is_where_the_relay_sends_from() {
        let configured = Relays::new(RelayLimits {
            addresses: vec![addr("[2001:db8::7]:7000"), addr("198.51.100.7:7000")],
            ..RelayLimits::default()
        });
        assert_eq!(
            configured.address_for(ip("::ffff:203.0.113.2")),
            Some(addr("198.51.100.7:7000"))
        );
        assert_eq!(
            configured.address_for(ip("2001:db8:1::2")),
            Some(addr("[2001:db8::7]:7000"))
        );
        let bound = Relays::new(RelayLimits::default());
        assert_eq!(bound.address_for(ip("127.0.0.1")), None, "no UDP port yet");
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = socket.local_addr().unwrap();
        bound.set_socket(Arc::new(socket));
        assert_eq!(bound.address_for(ip("127.0.0.1")), Some(at));
        let any = Relays::new(RelayLimits::default());
        let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        any.set_socket(Arc::new(socket));
        let to_loopback = SocketAddr::new(ip("127.0.0.1"), port);
        assert_eq!(any.address_for(ip("127.0.0.1")), Some(to_loopback));
    }

    #[tokio::test]
    async fn datagrams_pass_between_the_two_bound_sides_and_nowhere_else() {
        // Checked to fail with datagrams passed on from any address.
        let now = Instant::now();
        let (relays, [ta, tb], _) = opened(RelayLimits::default(), now);
        let (a, b, eve) = (
            addr("198.51.100.1:4000"),
            addr("203.0.113.2:5000"),
            addr("192.0.2.3:6000"),
        );
        assert_eq!(
            one(&relays, b"data", a, now),
            Pass::NotMine,
            "not bound yet"
        );
        assert_eq!(one(&relays, &bind_datagram(ta), a, now), Pass::Done);
        // Bob is not bound: held for him, a few only.
        for _ in 0..HELD + 2 {
            assert_eq!(one(&relays, b"start", a, now), Pass::Done);
        }
        let held = vec![b"start".to_vec(); HELD];
        assert_eq!(
            one(&relays, &bind_datagram(tb), b, now),
            Pass::Flush(b, held)
        );
        assert_eq!(one(&relays, &bind_datagram(tb), b, now), Pass::Done, "once");
        assert_eq!(one(&relays, b"data", a, now), Pass::SendTo(b));
        assert_eq!(one(&relays, b"data", b, now), Pass::SendTo(a));
        // A stranger, a made-up token, a bind datagram cut short: nothing.
        assert_eq!(one(&relays, b"data", eve, now), Pass::NotMine);
        assert_eq!(
            one(&relays, &bind_datagram([0; 16]), eve, now),
            Pass::NotMine
        );
        assert_eq!(
            one(&relays, &bind_datagram(ta)[1..], eve, now),
            Pass::NotMine
        );
        assert_eq!(one(&relays, b"data", eve, now), Pass::NotMine);
        // Bob's token from alice's address does not take it over.
        assert_eq!(one(&relays, &bind_datagram(tb), a, now), Pass::Done);
        assert_eq!(one(&relays, b"data", a, now), Pass::SendTo(b));
        // Alice's token from another address than hers (a copy seen on the
        // path, a forged source): her leg stays, nothing goes there.
        // Checked to fail without the address check.
        assert_eq!(one(&relays, &bind_datagram(ta), eve, now), Pass::Done);
        assert_eq!(one(&relays, b"data", b, now), Pass::SendTo(a));
        assert_eq!(one(&relays, b"data", eve, now), Pass::NotMine);
        // Alice's NAT gives her a new mapping: her token moves her leg.
        let a2 = addr("198.51.100.1:4444");
        assert_eq!(one(&relays, &bind_datagram(ta), a2, now), Pass::Done);
        assert_eq!(one(&relays, b"data", a, now), Pass::NotMine);
        assert_eq!(one(&relays, b"data", a2, now), Pass::SendTo(b));
        assert_eq!(one(&relays, b"data", b, now), Pass::SendTo(a2));
        // Only a side can end it.
        relays.end(ConnId(3), [6; 8]);
        assert_eq!(one(&relays, b"data", b, now), Pass::SendTo(a2));
        relays.end(ConnId(2), [6; 8]);
        assert_eq!(relays.len(), 0, "bob ended it");
        assert_eq!(one(&relays, b"data", b, now), Pass::NotMine);
        let (relays, [ta, _], _) = opened(RelayLimits::default(), now);
        one(&relays, &bind_datagram(ta), a2, now);
        // Alice disconnects: the relay closes.
        relays.forget(ConnId(1));
        assert_eq!(relays.len(), 0);
        assert_eq!(one(&relays, b"data", a2, now), Pass::NotMine);
    }

    #[tokio::test]
    async fn a_side_without_udp_takes_its_datagrams_over_tls() {
        let now = Instant::now();
        let (relays, [ta, _], [_, mut bob]) = opened(RelayLimits::default(), now);
        let a = addr("198.51.100.1:4000");
        one(&relays, &bind_datagram(ta), a, now);
        // Bob binds his TLS leg; alice's datagrams come to him as Tunnel.
        assert_eq!(relays.on_tunnel(ConnId(2), [6; 8], &[], now), Pass::Done);
        assert_eq!(one(&relays, b"sealed", a, now), Pass::Done);
        let frame = bob.try_recv().expect("a Tunnel for bob");
        let msg: ServerMsg = decode(&frame[4..]).unwrap();
        let want = ServerMsg::Tunnel {
            session: [6; 8],
            data: b"sealed".to_vec(),
        };
        assert_eq!(msg, want);
        // A run of datagrams the kernel coalesced goes to him one by one.
        let run: Vec<u8> = [[1u8; 100], [2; 100], [3; 100]].concat();
        assert_eq!(relays.on_udp(&run[..250], 100, a, now), Pass::Done);
        let tunneled: Vec<Vec<u8>> = std::iter::from_fn(|| bob.try_recv())
            .map(|f| match decode::<ServerMsg>(&f[4..]).unwrap() {
                ServerMsg::Tunnel { data, .. } => data,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(tunneled, [&run[..100], &run[100..200], &run[200..250]]);
        // His go to alice's address; nobody else's Tunnel is taken.
        assert_eq!(
            relays.on_tunnel(ConnId(2), [6; 8], b"ack", now),
            Pass::SendTo(a)
        );
        assert_eq!(
            relays.on_tunnel(ConnId(3), [6; 8], b"x", now),
            Pass::NotMine
        );
        assert_eq!(
            relays.on_tunnel(ConnId(2), [7; 8], b"x", now),
            Pass::NotMine
        );
        // Longer than a tunnel carries, either way: dropped.
        let long = vec![0u8; MAX_TUNNELED + 1];
        assert_eq!(relays.on_tunnel(ConnId(2), [6; 8], &long, now), Pass::Done);
        let long = vec![0u8; MAX_TUNNELED + 1];
        assert_eq!(one(&relays, &long, a, now), Pass::Done);
        assert!(bob.try_recv().is_none());
    }

    #[tokio::test]
    async fn the_limits_hold() {
        let now = Instant::now();
        let limits = RelayLimits {
            max_sessions: 3,
            max_per_user: 2,
            session_bytes_per_sec: 1_000_000.0,
            ..RelayLimits::default()
        };
        let (relays, [ta, tb], _) = opened(limits.clone(), now);
        let side = |conn: u64, user: &str| {
            let at = format!("192.0.2.{conn}");
            local(conn, user, &at, outbox(4, 1024).0)
        };
        // A second for alice; a third is over her limit.
        relays
            .open([7; 8], [side(1, "alice"), side(3, "carol")], now)
            .unwrap();
        let why = relays
            .open([8; 8], [side(4, "dave"), side(1, "alice")], now)
            .unwrap_err();
        assert!(why.contains("alice has 2"), "{why}");
        relays
            .open([8; 8], [side(4, "dave"), side(5, "erin")], now)
            .unwrap();
        let why = relays
            .open([9; 8], [side(6, "fay"), side(7, "gus")], now)
            .unwrap_err();
        assert!(why.contains("3 transfers already"), "{why}");
        // One address, whatever the names: at most `max_per_address` (one
        // here, where both sides of the first share it).
        let at = |conn: u64, user: &str| local(conn, user, "192.0.2.99", outbox(4, 1024).0);
        let crowded = Relays::new(RelayLimits {
            max_per_address: 1,
            ..RelayLimits::default()
        });
        crowded
            .open([1; 8], [at(20, "u1"), at(21, "u2")], now)
            .unwrap();
        let why = crowded
            .open([2; 8], [at(22, "u3"), side(23, "v")], now)
            .unwrap_err();
        assert!(why.contains("limit per address"), "{why}");
        // The same transfer twice: refused.
        assert!(relays
            .open([8; 8], [side(8, "h"), side(9, "i")], now)
            .is_err());
        // Bytes per second: the burst (256 KiB) passes at once, then
        // what a second brings.
        let (a, b) = (addr("198.51.100.1:4000"), addr("203.0.113.2:5000"));
        one(&relays, &bind_datagram(ta), a, now);
        one(&relays, &bind_datagram(tb), b, now);
        let datagram = vec![0u8; 1000];
        let passed = |at: Instant| {
            (0..2_000)
                .filter(|_| one(&relays, &datagram, a, at) == Pass::SendTo(b))
                .count()
        };
        assert_eq!(passed(now), 262);
        // A tenth of a second at 1 MB/s: 100 more.
        assert_eq!(passed(now + Duration::from_millis(100)), 100);
        // Idle for `idle_secs`: closed, the others with it.
        relays.sweep(now + Duration::from_secs(limits.idle_secs + 1));
        assert_eq!(relays.len(), 0);
        assert_eq!(relays.describe(now), ["no transfer is relayed"]);
        // Turned off: nothing is relayed.
        let off = Relays::new(RelayLimits {
            enabled: false,
            ..RelayLimits::default()
        });
        let why = off
            .open([1; 8], [side(1, "a"), side(2, "b")], now)
            .unwrap_err();
        assert!(why.contains("does not relay"), "{why}");
    }

    #[tokio::test]
    async fn the_console_lists_each_relay_with_its_sides_and_traffic() {
        let now = Instant::now();
        let (relays, [ta, _], _queues) = opened(RelayLimits::default(), now);
        one(
            &relays,
            &bind_datagram(ta),
            addr("[::ffff:198.51.100.1]:4000"),
            now,
        );
        relays.on_tunnel(ConnId(2), [6; 8], &[], now);
        one(&relays, b"12345", addr("[::ffff:198.51.100.1]:4000"), now);
        let lines = relays.describe(now);
        assert_eq!(lines[0], "1 relayed transfers (at most 64, 2 per user)");
        assert!(
            lines[1].starts_with(
                "0606060606060606  alice (udp 198.51.100.1:4000) <-> bob (tls)  5 bytes in 1 datagrams, 0 dropped"
            ),
            "{}",
            lines[1]
        );
    }
}
