//! The server network, free of I/O: links to neighbours, link-state routing
//! ([`topology`]) and the end-to-end channels ([`channel`]) that carry the
//! chat between servers.
//!
//! The chat core owns one [`Network`]. Link events go in; frames for links
//! come out as [`Effect::Link`]; what the chat core must act on comes back as
//! [`NetEvent`]s. Frames for other servers are forwarded here and never reach
//! the chat core.

pub mod channel;
pub mod topology;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chatdrop_proto::link::{
    server_id_of, Data, LinkMsg, Lsa, NetMsg, Routed, RoutedBody, ServerId, SIGNATURE_LEN,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::event::{Effect, LinkId};
use channel::Channels;
use topology::Topology;

/// Hops a routed frame may take at most.
pub const MAX_HOPS: u8 = 32;

/// How long (ms) messages for a server out of reach are kept for it. Views
/// of reachability differ for a moment while routes converge; a server gone
/// longer than this has lost sight of this one too and will ask for its
/// state when it is back.
pub const KEEP_FOR_LOST_MS: u64 = 60_000;

/// Who this server is in the network: its own key pair, the id derived from
/// it, its name and this run's incarnation.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Signs this server's link-state records (its `Debug` shows only the
    /// public half).
    key: SigningKey,
    /// [`server_id_of`] the public key.
    id: ServerId,
    /// Its `--name`.
    pub name: String,
    /// When this run started (ms since the Unix epoch).
    pub incarnation: u64,
}

impl Identity {
    /// The identity of the server whose Ed25519 secret key (seed) is
    /// `secret`; its id is derived from the public key.
    pub fn new(secret: &[u8; 32], name: String, incarnation: u64) -> Self {
        let key = SigningKey::from_bytes(secret);
        let id = server_id_of(key.verifying_key().as_bytes());
        Identity {
            key,
            id,
            name,
            incarnation,
        }
    }

    /// This server's id.
    pub fn id(&self) -> ServerId {
        self.id
    }

    /// This server's Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// This server's vouch that `user` was bound to `key` here at
    /// `bound_ms`.
    pub fn vouch(&self, user: &str, key: &[u8; 32], bound_ms: u64) -> crate::state::Vouch {
        let bytes = chatdrop_proto::link::binding_bytes(&self.id, user, key, bound_ms);
        crate::state::Vouch {
            home: self.id,
            home_key: self.public_key(),
            sig: self.key.sign(&bytes).to_bytes(),
        }
    }

    /// This server's record with `seq` and `neighbors`, signed.
    fn record(&self, seq: u64, neighbors: Vec<(ServerId, u32)>) -> Lsa {
        let mut lsa = Lsa {
            origin: self.id,
            key: self.public_key(),
            name: self.name.clone(),
            incarnation: self.incarnation,
            seq,
            neighbors,
            sig: Vec::new(),
        };
        lsa.sig = self.key.sign(&lsa.signed_bytes()).to_bytes().to_vec();
        lsa
    }
}

/// Whether `lsa` was made by the server it describes (its key hashes to
/// its origin and its signature verifies) and names it as a link's hello
/// must (the room-name rules: it is shown in routes and console lines).
/// Otherwise why not.
pub fn check_record(lsa: &Lsa) -> Result<(), &'static str> {
    if chatdrop_proto::names::check_room_name(&lsa.name).is_err() {
        return Err("its server name breaks the naming rules");
    }
    if server_id_of(&lsa.key) != lsa.origin {
        return Err("its key is not that server's");
    }
    let sig: [u8; SIGNATURE_LEN] = lsa
        .sig
        .as_slice()
        .try_into()
        .map_err(|_| "its signature is not 64 bytes")?;
    let key = VerifyingKey::from_bytes(&lsa.key).map_err(|_| "its key is not a valid key")?;
    // Strict: no small-order keys, no malleable signatures.
    key.verify_strict(&lsa.signed_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| "its signature does not verify")
}

/// What the chat core must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // short-lived, almost all are `Deliver`
pub enum NetEvent {
    /// A message from another server, in that server's order.
    Deliver { from: ServerId, msg: NetMsg },
    /// A server asks for this server's state: answer with [`Network::open`].
    Resync {
        from: ServerId,
        /// Its incarnation.
        inc: u64,
    },
    /// A server is out of reach (or restarted): its users are gone.
    Lost { server: ServerId },
}

#[derive(Debug)]
struct Link {
    peer: ServerId,
    name: String,
    rtt_us: Option<u64>,
}

/// This server's view of the network. See the module docs.
#[derive(Debug)]
pub struct Network {
    me: Identity,
    links: BTreeMap<LinkId, Link>,
    topo: Topology,
    chans: Channels,
    /// Reachable servers and their incarnations.
    reachable: BTreeMap<ServerId, u64>,
    /// Servers out of reach that were reachable: their last incarnation and
    /// since when they are out of reach.
    lost: BTreeMap<ServerId, (u64, u64)>,
}

/// Link cost from a round-trip time: milliseconds, at least 1, so that on a
/// LAN paths are counted in hops.
fn cost(rtt_us: Option<u64>) -> u32 {
    rtt_us.map_or(1, |us| (us / 1000).clamp(1, u32::MAX as u64) as u32)
}

impl Network {
    /// A server with no links yet.
    /// This server's identity.
    pub fn me(&self) -> &Identity {
        &self.me
    }

    pub fn new(me: Identity) -> Self {
        let own = me.record(1, Vec::new());
        Network {
            chans: Channels::new(me.incarnation),
            topo: Topology::new(own),
            links: BTreeMap::new(),
            reachable: BTreeMap::new(),
            lost: BTreeMap::new(),
            me,
        }
    }

    /// This server's id.
    pub fn id(&self) -> ServerId {
        self.me.id()
    }

    /// Reachable servers (this one excluded).
    pub fn reachable(&self) -> impl Iterator<Item = &ServerId> {
        self.reachable.keys()
    }

    /// A server's name, as its record gives it.
    pub fn name_of(&self, server: &ServerId) -> String {
        if *server == self.me.id() {
            return self.me.name.clone();
        }
        self.topo
            .record(server)
            .map_or_else(|| hex(server), |l| l.name.clone())
    }

    /// The link to a neighbour; the newest when there are several (an old
    /// one may be on its way out).
    fn link_to(&self, server: &ServerId) -> Option<LinkId> {
        self.links
            .iter()
            .rev()
            .find(|(_, l)| l.peer == *server)
            .map(|(id, _)| *id)
    }

    /// Rewrites and floods this server's own record from its links.
    fn advertise(&mut self, out: &mut Vec<Effect>) {
        let mut neighbors: BTreeMap<ServerId, u32> = BTreeMap::new();
        for l in self.links.values() {
            let c = cost(l.rtt_us);
            neighbors
                .entry(l.peer)
                .and_modify(|old| *old = (*old).min(c))
                .or_insert(c);
        }
        let seq = self.topo.own().seq + 1;
        let lsa = self.me.record(seq, neighbors.into_iter().collect());
        self.topo.set_own(lsa.clone());
        for link in self.links.keys() {
            out.push(Effect::Link {
                link: *link,
                msg: LinkMsg::Lsa(lsa.clone()),
            });
        }
    }

    /// Recomputes routes; resends along changed routes; reports servers
    /// lost or restarted.
    fn reroute(&mut self, now: u64, out: &mut Vec<Effect>, events: &mut Vec<NetEvent>) {
        let before: BTreeMap<ServerId, ServerId> = self
            .topo
            .routes()
            .iter()
            .map(|(d, r)| (*d, r.next))
            .collect();
        self.topo.recompute();
        let mut now_reachable = BTreeMap::new();
        for dst in self.topo.routes().keys() {
            let inc = self.topo.record(dst).map_or(0, |l| l.incarnation);
            now_reachable.insert(*dst, inc);
        }
        for (dst, inc) in &self.reachable {
            match now_reachable.get(dst) {
                None => {
                    self.chans.lost(dst);
                    self.lost.insert(*dst, (*inc, now));
                    events.push(NetEvent::Lost { server: *dst });
                }
                Some(new) if new != inc => {
                    self.chans.lost(dst);
                    events.push(NetEvent::Lost { server: *dst });
                }
                _ => {}
            }
        }
        for dst in now_reachable.keys() {
            self.lost.remove(dst);
        }
        self.reachable = now_reachable;
        let changed: Vec<ServerId> = self
            .topo
            .routes()
            .iter()
            .filter(|(d, r)| before.get(*d) != Some(&r.next))
            .map(|(d, _)| *d)
            .collect();
        for dst in changed {
            for data in self.chans.resend_all(&dst, now) {
                self.route(dst, RoutedBody::Data(Box::new(data)), out);
            }
        }
        self.ask_state(now, out);
    }

    fn ask_state(&mut self, now: u64, out: &mut Vec<Effect>) {
        let reachable: Vec<(ServerId, u64)> =
            self.reachable.iter().map(|(d, i)| (*d, *i)).collect();
        for (dst, body) in self
            .chans
            .resyncs(now, reachable.iter().map(|(d, i)| (d, *i)))
        {
            self.route(dst, body, out);
        }
    }

    /// Hands a frame for `dst` to the next hop, if there is a route.
    fn route(&self, dst: ServerId, body: RoutedBody, out: &mut Vec<Effect>) {
        self.forward(
            Box::new(Routed {
                src: self.me.id(),
                dst,
                ttl: MAX_HOPS,
                body,
            }),
            out,
        );
    }

    fn forward(&self, routed: Box<Routed>, out: &mut Vec<Effect>) {
        let Some(link) = self
            .topo
            .route(&routed.dst)
            .and_then(|r| self.link_to(&r.next))
        else {
            return; // unreachable: kept in the channel, resent when it is back
        };
        out.push(Effect::Link {
            link,
            msg: LinkMsg::Routed(routed),
        });
    }

    /// A link to `peer` completed its handshake.
    pub fn link_up(
        &mut self,
        now: u64,
        link: LinkId,
        peer: ServerId,
        name: String,
        out: &mut Vec<Effect>,
    ) -> Vec<NetEvent> {
        self.links.insert(
            link,
            Link {
                peer,
                name,
                rtt_us: None,
            },
        );
        // The newcomer gets every record held; ours follows from advertise.
        for lsa in self.topo.records() {
            if lsa.origin != self.me.id() {
                out.push(Effect::Link {
                    link,
                    msg: LinkMsg::Lsa(lsa.clone()),
                });
            }
        }
        self.advertise(out);
        let mut events = Vec::new();
        self.reroute(now, out, &mut events);
        events
    }

    /// A link went down.
    pub fn link_down(&mut self, now: u64, link: LinkId, out: &mut Vec<Effect>) -> Vec<NetEvent> {
        let mut events = Vec::new();
        if self.links.remove(&link).is_some() {
            self.advertise(out);
            self.reroute(now, out, &mut events);
        }
        events
    }

    /// A link's measured round-trip time. A cost change worth rerouting for
    /// is advertised.
    pub fn link_rtt(
        &mut self,
        now: u64,
        link: LinkId,
        rtt_us: u64,
        out: &mut Vec<Effect>,
    ) -> Vec<NetEvent> {
        let mut events = Vec::new();
        let Some(l) = self.links.get_mut(&link) else {
            return events;
        };
        let (old, new) = (cost(l.rtt_us), cost(Some(rtt_us)));
        l.rtt_us = Some(rtt_us);
        // Small wobbles are not worth a flood and a route change.
        let diff = old.abs_diff(new);
        if diff >= 2 && diff * 4 >= old.max(new) {
            self.advertise(out);
            self.reroute(now, out, &mut events);
        }
        events
    }

    /// A frame from a link.
    pub fn link_msg(
        &mut self,
        now: u64,
        link: LinkId,
        msg: LinkMsg,
        out: &mut Vec<Effect>,
    ) -> Vec<NetEvent> {
        let mut events = Vec::new();
        if !self.links.contains_key(&link) {
            return events;
        }
        match msg {
            LinkMsg::Lsa(lsa) => {
                // Copies and old records are common and harmless: only a
                // record that would be taken costs a signature check.
                if !self.topo.is_newer(&lsa) {
                    return events;
                }
                if let Err(why) = check_record(&lsa) {
                    let from = self.links.get(&link).map_or("?", |l| l.name.as_str());
                    out.push(Effect::Console(format!(
                        "[network] dropped a link-state record for server {} from the link to {from}: {why}",
                        hex(&lsa.origin)
                    )));
                    return events;
                }
                if self.topo.offer(lsa.clone()) {
                    for other in self.links.keys().filter(|l| **l != link) {
                        out.push(Effect::Link {
                            link: *other,
                            msg: LinkMsg::Lsa(lsa.clone()),
                        });
                    }
                    self.reroute(now, out, &mut events);
                }
            }
            LinkMsg::Routed(mut routed) => {
                if routed.dst != self.me.id() {
                    routed.ttl = routed.ttl.saturating_sub(1);
                    if routed.ttl > 0 {
                        self.forward(routed, out);
                    }
                    return events;
                }
                let Routed { src, body, .. } = *routed;
                self.arrived(now, src, body, out, &mut events);
            }
            // Handshake and keepalive frames are the link task's business.
            LinkMsg::Hello(_)
            | LinkMsg::Pake { .. }
            | LinkMsg::Proof { .. }
            | LinkMsg::Ping(_)
            | LinkMsg::Pong(_) => {}
        }
        events
    }

    fn arrived(
        &mut self,
        now: u64,
        src: ServerId,
        body: RoutedBody,
        out: &mut Vec<Effect>,
        events: &mut Vec<NetEvent>,
    ) {
        match body {
            RoutedBody::Data(data) => {
                if !self.reachable.contains_key(&src) {
                    return; // its users are gone here; it will resync
                }
                for msg in self.chans.on_data(src, *data) {
                    events.push(NetEvent::Deliver { from: src, msg });
                }
            }
            RoutedBody::Ack {
                src_inc,
                dst_inc,
                epoch,
                seq,
            } => {
                self.chans.on_ack(src, src_inc, dst_inc, epoch, seq, now);
                // The window has room again.
                for data in self.chans.pump(&src, now) {
                    self.route(src, RoutedBody::Data(Box::new(data)), out);
                }
            }
            RoutedBody::Resync { src_inc } => {
                if self.reachable.get(&src).is_some_and(|i| *i <= src_inc) {
                    events.push(NetEvent::Resync {
                        from: src,
                        inc: src_inc,
                    });
                }
            }
        }
    }

    /// Sends `msg` to `dst`, reliably and in order. For a server out of
    /// reach for a moment it is kept, and sent when the server is back.
    pub fn send(&mut self, now: u64, dst: ServerId, msg: NetMsg, out: &mut Vec<Effect>) {
        let inc = match self.reachable.get(&dst) {
            Some(inc) => *inc,
            None => match self.lost.get(&dst) {
                Some((inc, _)) => *inc,
                None => return,
            },
        };
        for data in self.chans.send(dst, inc, msg, now) {
            self.route(dst, RoutedBody::Data(Box::new(data)), out);
        }
    }

    /// Sends `msg` to every server: those reachable, and those out of reach
    /// for a moment (see [`KEEP_FOR_LOST_MS`]).
    pub fn send_all(&mut self, now: u64, msg: &NetMsg, out: &mut Vec<Effect>) {
        let all: Vec<ServerId> = self
            .reachable
            .keys()
            .chain(self.lost.keys())
            .copied()
            .collect();
        for dst in all {
            self.send(now, dst, msg.clone(), out);
        }
    }

    /// Answers a [`NetEvent::Resync`]: opens a new epoch to `dst` with this
    /// server's state, in parts ([`chatdrop_proto::link::sync_parts`]).
    pub fn open(
        &mut self,
        now: u64,
        dst: ServerId,
        inc: u64,
        sync: Vec<NetMsg>,
        out: &mut Vec<Effect>,
    ) {
        let frames: Vec<Data> = self.chans.open(dst, inc, sync, now);
        for data in frames {
            self.route(dst, RoutedBody::Data(Box::new(data)), out);
        }
    }

    /// Resends what is overdue, asks again for missing state, forgets
    /// servers gone for long; call every 100 ms or so. Channels that
    /// overflowed come back as [`NetEvent::Resync`]s to answer.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Effect>) -> Vec<NetEvent> {
        let gone: Vec<ServerId> = self
            .lost
            .iter()
            .filter(|(_, (_, since))| since + KEEP_FOR_LOST_MS <= now)
            .map(|(d, _)| *d)
            .collect();
        for dst in gone {
            self.lost.remove(&dst);
            self.chans.forget(&dst);
        }
        for (dst, data) in self.chans.due(now) {
            self.route(dst, RoutedBody::Data(Box::new(data)), out);
        }
        self.ask_state(now, out);
        self.chans
            .take_reopens()
            .into_iter()
            .map(|(from, inc)| NetEvent::Resync { from, inc })
            .collect()
    }

    /// Messages to reachable servers not yet acknowledged: what this server
    /// would take with it if it stopped now.
    pub fn unacknowledged(&self) -> usize {
        self.reachable.keys().map(|d| self.chans.unacked(d)).sum()
    }

    /// Sends the acknowledgements owed; call when a batch of work is done.
    pub fn flush(&mut self, out: &mut Vec<Effect>) {
        for (dst, body) in self.chans.take_acks() {
            self.route(dst, body, out);
        }
    }

    /// Lines for the console's `links` command.
    pub fn describe_links(&self) -> Vec<String> {
        if self.links.is_empty() {
            return vec!["no links".into()];
        }
        self.links
            .iter()
            .map(|(id, l)| {
                let rtt = l.rtt_us.map_or("rtt unknown".to_string(), |us| {
                    format!("rtt {:.2} ms", us as f64 / 1000.0)
                });
                format!("link {}: {} ({}) up, {rtt}", id.0, l.name, hex(&l.peer))
            })
            .collect()
    }

    /// How many reachable servers there are, and how many of them this
    /// server holds the state of.
    pub fn sync_counts(&self) -> (usize, usize) {
        let synced = self
            .reachable
            .keys()
            .filter(|s| self.chans.synced(s))
            .count();
        (synced, self.reachable.len())
    }

    /// Lines for the console's `network` command.
    pub fn describe_network(&self) -> Vec<String> {
        let (synced, _) = self.sync_counts();
        let mut lines = vec![format!(
            "this server: {} ({}), {} other server(s) reachable, {synced} in sync",
            self.me.name,
            hex(&self.me.id()),
            self.reachable.len()
        )];
        for (dst, r) in self.topo.routes() {
            lines.push(format!(
                "{} ({}): next hop {}, {} hop(s), cost {}, {} message(s) unacknowledged",
                self.name_of(dst),
                hex(dst),
                self.name_of(&r.next),
                r.hops,
                r.cost,
                self.chans.unacked(dst)
            ));
        }
        lines
    }
}

/// The first bytes of a server id, as shown to people.
pub fn hex(id: &ServerId) -> String {
    id[..4].iter().map(|b| format!("{b:02x}")).collect()
}
