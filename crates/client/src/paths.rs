//! How a transfer finds its way between two clients: each side's candidate
//! addresses (its own interfaces' and the one its server observes for its
//! UDP socket, as STUN tells; see the server's `observe.rs`), and the name
//! of the path that answered.
//!
//! Both sides then try each other's candidates at once (the owner punches,
//! the asker sends `Start`s; see `chatdrop_transfer`'s `wire.rs`): the
//! first pair that answers carries the session.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatdrop_proto::limits::MAX_CANDIDATES;
use chatdrop_proto::{ClientMsg, Offer, OBSERVE_MAGIC};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// How often an observation request is sent until the answer comes.
const OBSERVE_EVERY: Duration = Duration::from_millis(100);
/// Requests sent at most: an answer that has not come after this long
/// (a server without its UDP port, UDP blocked) is not waited for.
const OBSERVE_TRIES: u32 = 6;

/// Messages for the server from tasks that run beside the control loop.
pub(crate) type Outgoing = mpsc::Sender<ClientMsg>;

/// Observations waiting for the server's answer, by token.
#[derive(Clone, Default)]
pub(crate) struct Observations {
    waiting: Arc<Mutex<HashMap<[u8; 16], oneshot::Sender<SocketAddr>>>>,
}

impl Observations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], oneshot::Sender<SocketAddr>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server's `Observed`: wakes the observation that sent `token`.
    pub(crate) fn answered(&self, token: [u8; 16], addr: SocketAddr) {
        if let Some(tx) = self.lock().remove(&token) {
            let _ = tx.send(addr);
        }
    }

    /// Where the server sees `socket`, asked through `outgoing` and the
    /// server's UDP port at `server`; `None` when no answer came within
    /// about 600 ms.
    pub(crate) async fn observe(
        &self,
        socket: &UdpSocket,
        server: SocketAddr,
        outgoing: &Outgoing,
    ) -> Option<SocketAddr> {
        let token: [u8; 16] = rand::random();
        let (tx, mut rx) = oneshot::channel();
        self.lock().insert(token, tx);
        let observed = async {
            outgoing.send(ClientMsg::Observe { token }).await.ok()?;
            let mut request = OBSERVE_MAGIC.to_vec();
            request.extend_from_slice(&token);
            let to = chatdrop_transfer::for_socket(socket, server);
            for _ in 0..OBSERVE_TRIES {
                // A lost request is sent again; an unreachable server is
                // no path, not an error.
                let _ = socket.send_to(&request, to).await;
                if let Ok(Ok(addr)) = tokio::time::timeout(OBSERVE_EVERY, &mut rx).await {
                    return Some(addr);
                }
            }
            None
        }
        .await;
        self.lock().remove(&token);
        observed
    }
}

/// Whether `ip` can be a host candidate: not unspecified, not link-local
/// (it needs an interface to go with it), and not loopback unless the
/// server is on this host too (then everything is).
fn usable(ip: IpAddr, loopback: bool) -> bool {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    !ip.is_unspecified() && !link_local && (loopback || !ip.is_loopback())
}

/// This host's addresses a socket bound to every address at `port` is
/// reachable at, of the families `socket_v6` allows (an IPv6 socket takes
/// both); loopback ones only when `loopback`.
pub(crate) fn host_candidates(port: u16, socket_v6: bool, loopback: bool) -> Vec<SocketAddr> {
    let Ok(interfaces) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    let mut out: Vec<SocketAddr> = Vec::new();
    for ip in interfaces.iter().map(|i| i.ip()) {
        let family_ok = socket_v6 || ip.is_ipv4();
        let addr = SocketAddr::new(ip, port);
        if family_ok && usable(ip, loopback) && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// Where a side's transfer socket can be reached: the host's own
/// addresses (at most [`MAX_CANDIDATES`]) and where its server observed
/// it, when that is none of them (a NAT's mapping).
pub(crate) struct Own {
    pub(crate) hosts: Vec<SocketAddr>,
    pub(crate) observed: Option<SocketAddr>,
    /// The server answered the observation: this socket's UDP reaches it
    /// (a relay's leg can be UDP rather than TLS).
    pub(crate) reached: bool,
}

impl Own {
    /// Asks the server at `server` (none: no candidates) where it sees
    /// `socket`, through `observations` and `outgoing`, and lists the
    /// host's addresses at the socket's port.
    pub(crate) async fn learn(
        socket: &UdpSocket,
        server: Option<SocketAddr>,
        observations: &Observations,
        outgoing: &Outgoing,
    ) -> Own {
        let Some(server) = server else {
            return Own {
                hosts: Vec::new(),
                observed: None,
                reached: false,
            };
        };
        let observed = observations.observe(socket, server, outgoing).await;
        let local = socket.local_addr().ok();
        let port = local.map_or(0, |a| a.port());
        let v6 = local.is_some_and(|a| a.is_ipv6());
        let mut hosts = host_candidates(port, v6, server.ip().is_loopback());
        let reached = observed.is_some();
        let observed = observed.filter(|o| !hosts.contains(o));
        hosts.truncate(MAX_CANDIDATES);
        Own {
            hosts,
            observed,
            reached,
        }
    }

    /// The list a request carries: the observed address first, then the
    /// host's, at most [`MAX_CANDIDATES`] in all.
    pub(crate) fn candidates(&self) -> Vec<SocketAddr> {
        candidates(&self.hosts, self.observed)
    }
}

/// A side's candidates: the observed address first when it is not one of
/// the host's own (a NAT's mapping), then the host's, at most
/// [`MAX_CANDIDATES`] in all.
pub(crate) fn candidates(hosts: &[SocketAddr], observed: Option<SocketAddr>) -> Vec<SocketAddr> {
    let mut out = Vec::with_capacity(MAX_CANDIDATES);
    if let Some(o) = observed.filter(|o| !hosts.contains(o)) {
        out.push(o);
    }
    for h in hosts {
        if out.len() < MAX_CANDIDATES {
            out.push(*h);
        }
    }
    out
}

/// Where an asker tries the owner: the address its server sees (its
/// socket's port at the address of its TLS connection), its interfaces'
/// (from the offer) and where the server observed it, without repeats and
/// at most [`MAX_CANDIDATES`] of the offer's.
pub(crate) fn owner_candidates(seen: SocketAddr, offer: &Offer) -> Vec<SocketAddr> {
    let mut out = vec![seen];
    let listed = offer.candidates.iter().take(MAX_CANDIDATES);
    for c in offer.observed.iter().chain(listed) {
        if !out.contains(c) {
            out.push(*c);
        }
    }
    out
}

/// The name of the path a session opened on, as `transfer_started` says
/// it: `direct` when the owner answered at one of its own interfaces'
/// addresses, or at the address its server sees while it reported no NAT;
/// `punched` when it answered anywhere else (its NAT's mapping, which
/// only its punches opened).
pub(crate) fn path_name(opened: SocketAddr, seen: SocketAddr, offer: &Offer) -> &'static str {
    let opened = SocketAddr::new(opened.ip().to_canonical(), opened.port());
    let own = offer.candidates.contains(&opened);
    let public = offer.observed.is_none() && opened == seen;
    if own || public {
        "direct"
    } else {
        "punched"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_observed_address_leads_unless_it_is_the_host_s_own() {
        let hosts = [a("192.168.1.5:4000"), a("[2001:db8::5]:4000")];
        let behind = candidates(&hosts, Some(a("203.0.113.9:61000")));
        assert_eq!(behind[0], a("203.0.113.9:61000"));
        assert_eq!(&behind[1..], hosts);
        let public = candidates(&hosts, Some(a("192.168.1.5:4000")));
        assert_eq!(public, hosts, "no repeat of a host address");
        let many: Vec<_> = (0..20).map(|i| a(&format!("10.0.0.{i}:1"))).collect();
        assert_eq!(candidates(&many, None).len(), MAX_CANDIDATES);
    }

    #[test]
    fn loopback_and_link_local_are_no_candidates_for_a_remote_server() {
        assert!(!usable("127.0.0.1".parse().unwrap(), false));
        assert!(usable("127.0.0.1".parse().unwrap(), true));
        assert!(!usable("fe80::1".parse().unwrap(), true));
        assert!(!usable("169.254.3.4".parse().unwrap(), true));
        assert!(usable("10.1.2.3".parse().unwrap(), false));
        for c in host_candidates(4000, true, false) {
            assert!(!c.ip().is_loopback(), "{c}");
        }
    }

    fn offer(candidates: Vec<SocketAddr>, observed: Option<SocketAddr>) -> Offer {
        Offer {
            size: 1,
            blake3: [0; 32],
            port: 4000,
            eph: [0; 32],
            session: [0; 8],
            selective_repeat: true,
            window: 64,
            mss: 1200,
            asker_ip: "10.0.0.2".parse().unwrap(),
            candidates,
            observed,
            sig: Vec::new(),
        }
    }

    #[test]
    fn a_path_is_direct_at_the_owner_s_own_address_and_punched_at_its_nat_s() {
        let seen = a("198.51.100.7:4000");
        let lan = a("192.168.1.5:4000");
        let nat = a("198.51.100.7:61000");
        let behind = offer(vec![lan], Some(nat));
        assert_eq!(path_name(lan, seen, &behind), "direct");
        assert_eq!(path_name(nat, seen, &behind), "punched");
        assert_eq!(path_name(seen, seen, &behind), "punched");
        let mapped = a("[::ffff:192.168.1.5]:4000");
        assert_eq!(path_name(mapped, seen, &behind), "direct");
        let public = offer(vec![], None);
        assert_eq!(path_name(seen, seen, &public), "direct");
        let all = owner_candidates(seen, &behind);
        assert_eq!(all, [seen, nat, lan]);
    }
}
