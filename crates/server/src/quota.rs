//! What one connection may ask for how often: a token bucket per kind of
//! request, checked in the connection's own task before anything reaches the
//! hub, so a flood costs its sender's task and nobody else's.
//!
//! A request over its limit is dropped and answered with a `rate_limited`
//! error naming the limit. Refusals themselves are counted: a client that
//! keeps pushing past them (more than [`Limits::strikes`] in a burst) is told
//! why and disconnected. Time is passed in, in milliseconds, so the rules are
//! tested without a clock.

use std::sync::Arc;

use chatdrop_proto::{ClientMsg, ErrorCode, ServerMsg};
use serde::Deserialize;

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Tokens added each second.
    pub per_second: f64,
    /// Most tokens kept: what may be spent at once after a quiet while.
    pub burst: f64,
}

impl Rate {
    const fn new(per_second: f64, burst: f64) -> Self {
        Rate { per_second, burst }
    }
}

/// Every per-connection limit of a server. The defaults leave a person
/// typing, searching and fetching far below them, and stop a script.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// False turns every rate limit off (benchmarks, private servers).
    pub enabled: bool,
    /// Frames of any kind, pings included.
    pub frames: Rate,
    /// Bytes of frames, of any kind.
    pub bytes: Rate,
    /// Chat lines (`Say`).
    pub say: Rate,
    /// `whohas` questions.
    pub whohas: Rate,
    /// `getfile` requests.
    pub getfile: Rate,
    /// Rooms created.
    pub create_room: Rate,
    /// Room list requests.
    pub list_rooms: Rate,
    /// `@server` commands of every kind (rooms, peers, joins, leaves).
    pub server_commands: Rate,
    /// Refusals tolerated in a burst (refilled at one each
    /// `strike_recovery_secs`) before the client is disconnected.
    pub strikes: u32,
    /// Seconds for one tolerated refusal to come back.
    pub strike_recovery_secs: f64,
    /// Seconds a name disconnected for going over the limits may not log
    /// in again (doubled at each repeat within an hour, at most 15 min);
    /// 0 lets it back at once (its buckets are not refilled either way).
    pub kick_bar_secs: u64,
    /// Connections at once from one IP address (one /64 for IPv6).
    pub connections_per_ip: usize,
    /// Connections from one IP address (or /64) still in TLS or login.
    pub logins_per_ip: usize,
    /// New user names one IP address (or /64) may bind in an hour.
    pub new_names_per_hour: u32,
    /// Seconds a room with no member anywhere and no history is kept; 0
    /// keeps every room.
    pub empty_room_expiry_secs: u64,
    /// Seconds a name bound and never used again is kept; 0 keeps every
    /// name.
    pub unused_name_expiry_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            enabled: true,
            frames: Rate::new(50.0, 200.0),
            bytes: Rate::new(64.0 * 1024.0, 512.0 * 1024.0),
            say: Rate::new(10.0, 40.0),
            whohas: Rate::new(1.0, 10.0),
            getfile: Rate::new(1.0, 10.0),
            create_room: Rate::new(0.1, 5.0),
            list_rooms: Rate::new(1.0, 5.0),
            server_commands: Rate::new(5.0, 20.0),
            strikes: 20,
            strike_recovery_secs: 5.0,
            kick_bar_secs: 30,
            connections_per_ip: 32,
            logins_per_ip: 8,
            new_names_per_hour: 60,
            empty_room_expiry_secs: 24 * 3600,
            unused_name_expiry_secs: 30 * 24 * 3600,
        }
    }
}

impl Limits {
    /// No rate limit at all (the per-IP ones still apply unless raised).
    pub fn off() -> Self {
        Limits {
            enabled: false,
            ..Limits::default()
        }
    }

    /// Says what is wrong with the limits, if anything.
    pub fn check(&self) -> Result<(), String> {
        for (name, r) in self.rates() {
            if !(r.per_second.is_finite() && r.per_second > 0.0) {
                return Err(format!("limits.{name}.per_second must be above 0"));
            }
            if !(r.burst.is_finite() && r.burst >= 1.0) {
                return Err(format!("limits.{name}.burst must be at least 1"));
            }
        }
        if !(self.strike_recovery_secs.is_finite() && self.strike_recovery_secs > 0.0) {
            return Err("limits.strike_recovery_secs must be above 0".into());
        }
        if self.connections_per_ip == 0 || self.logins_per_ip == 0 {
            return Err("limits.connections_per_ip and logins_per_ip must be at least 1".into());
        }
        if self.new_names_per_hour == 0 {
            return Err("limits.new_names_per_hour must be at least 1".into());
        }
        Ok(())
    }

    fn rates(&self) -> [(&'static str, Rate); 8] {
        [
            ("frames", self.frames),
            ("bytes", self.bytes),
            ("say", self.say),
            ("whohas", self.whohas),
            ("getfile", self.getfile),
            ("create_room", self.create_room),
            ("list_rooms", self.list_rooms),
            ("server_commands", self.server_commands),
        ]
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

impl Bucket {
    fn full(rate: Rate, now_ms: u64) -> Self {
        Bucket {
            tokens: rate.burst,
            last_ms: now_ms,
        }
    }

    /// Adds what `rate` gave since the last look; true if `cost` is there.
    fn refill(&mut self, rate: Rate, now_ms: u64, cost: f64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.tokens >= cost
    }

    /// Takes `cost` tokens if there are that many.
    fn take(&mut self, rate: Rate, now_ms: u64, cost: f64) -> bool {
        let there = self.refill(rate, now_ms, cost);
        if there {
            self.tokens -= cost;
        }
        there
    }
}

/// The kinds of request with a bucket of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Frames,
    Bytes,
    Say,
    WhoHas,
    GetFile,
    CreateRoom,
    ListRooms,
    ServerCommands,
}

const KINDS: usize = 8;

/// Every kind, in index order.
const ALL_KINDS: [Kind; KINDS] = [
    Kind::Frames,
    Kind::Bytes,
    Kind::Say,
    Kind::WhoHas,
    Kind::GetFile,
    Kind::CreateRoom,
    Kind::ListRooms,
    Kind::ServerCommands,
];

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn rate(self, l: &Limits) -> Rate {
        match self {
            Kind::Frames => l.frames,
            Kind::Bytes => l.bytes,
            Kind::Say => l.say,
            Kind::WhoHas => l.whohas,
            Kind::GetFile => l.getfile,
            Kind::CreateRoom => l.create_room,
            Kind::ListRooms => l.list_rooms,
            Kind::ServerCommands => l.server_commands,
        }
    }

    /// The limit's name as the config file spells it.
    fn name(self) -> &'static str {
        match self {
            Kind::Frames => "frames",
            Kind::Bytes => "bytes",
            Kind::Say => "say",
            Kind::WhoHas => "whohas",
            Kind::GetFile => "getfile",
            Kind::CreateRoom => "create_room",
            Kind::ListRooms => "list_rooms",
            Kind::ServerCommands => "server_commands",
        }
    }

    /// What is counted, for the error text.
    fn unit(self) -> &'static str {
        match self {
            Kind::Frames => "messages",
            Kind::Bytes => "bytes",
            Kind::Say => "chat lines",
            Kind::WhoHas => "whohas questions",
            Kind::GetFile => "getfile requests",
            Kind::CreateRoom => "new rooms",
            Kind::ListRooms => "room lists",
            Kind::ServerCommands => "@server commands",
        }
    }

    /// The buckets a message draws from besides frames and bytes.
    fn of(msg: &ClientMsg) -> &'static [Kind] {
        match msg {
            // An offer and its answer are direct messages of a kind.
            ClientMsg::Say { .. }
            | ClientMsg::OfferFiles { .. }
            | ClientMsg::OfferAnswer { .. } => &[Kind::Say],
            ClientMsg::WhoHas { .. } => &[Kind::WhoHas],
            ClientMsg::GetFile { .. } => &[Kind::GetFile],
            ClientMsg::CreateRoom { .. } => &[Kind::CreateRoom, Kind::ServerCommands],
            // A history page is as large as a room list's: one bucket.
            ClientMsg::ListRooms { .. } | ClientMsg::History { .. } => {
                &[Kind::ListRooms, Kind::ServerCommands]
            }
            ClientMsg::JoinRoom { .. }
            | ClientMsg::LeaveRoom { .. }
            | ClientMsg::GetPeers { .. } => &[Kind::ServerCommands],
            _ => &[],
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Within every limit: carry it out.
    Allow,
    /// Over a limit: drop it and send this error.
    Refuse(ServerMsg),
    /// Over the limits too often: send this error and disconnect.
    Disconnect(ServerMsg),
}

/// One client's buckets.
#[derive(Debug, Clone)]
pub struct Quota {
    limits: Arc<Limits>,
    buckets: [Bucket; KINDS],
    strikes: Bucket,
}

impl Quota {
    /// Full buckets, at `now_ms`.
    pub fn new(limits: Arc<Limits>, now_ms: u64) -> Self {
        let buckets = ALL_KINDS.map(|k| Bucket::full(k.rate(&limits), now_ms));
        let strikes = Bucket::full(strike_rate(&limits), now_ms);
        Quota {
            limits,
            buckets,
            strikes,
        }
    }

    /// How long until every bucket is full again, at most (ms).
    pub fn refill_ms(&self) -> u64 {
        let secs = ALL_KINDS
            .iter()
            .map(|&k| (k.rate(&self.limits), &self.buckets[k.index()]))
            .chain([(strike_rate(&self.limits), &self.strikes)])
            .map(|(rate, b)| (rate.burst - b.tokens).max(0.0) / rate.per_second)
            .fold(0.0, f64::max);
        (secs * 1000.0).ceil() as u64
    }

    /// Checks a request of `len` bytes that came at `now_ms`.
    pub fn check(&mut self, now_ms: u64, msg: &ClientMsg, len: usize) -> Verdict {
        if !self.limits.enabled || matches!(msg, ClientMsg::Quit) {
            return Verdict::Allow;
        }
        // The most specific limit is looked at first, so the error names
        // it; a refused request takes nothing from any bucket.
        let costs = Kind::of(msg)
            .iter()
            .map(|&k| (k, 1.0))
            .chain([(Kind::Frames, 1.0), (Kind::Bytes, len as f64)]);
        let mut over = None;
        for (kind, cost) in costs.clone() {
            if !self.buckets[kind.index()].refill(kind.rate(&self.limits), now_ms, cost) {
                over = Some(kind);
                break;
            }
        }
        let Some(kind) = over else {
            for (kind, cost) in costs {
                self.buckets[kind.index()].tokens -= cost;
            }
            return Verdict::Allow;
        };
        let rate = kind.rate(&self.limits);
        let limit = format!(
            "at most {} {} a second, {} at once",
            shown(rate.per_second),
            kind.unit(),
            shown(rate.burst)
        );
        if self.strikes.take(strike_rate(&self.limits), now_ms, 1.0) {
            Verdict::Refuse(ServerMsg::error(
                ErrorCode::RateLimited,
                format!("over the {} limit ({limit}); dropped", kind.name()),
            ))
        } else {
            Verdict::Disconnect(ServerMsg::error(
                ErrorCode::RateLimited,
                format!(
                    "disconnected: kept going over the {} limit ({limit})",
                    kind.name()
                ),
            ))
        }
    }
}

fn strike_rate(l: &Limits) -> Rate {
    Rate::new(1.0 / l.strike_recovery_secs, l.strikes.max(1) as f64)
}

/// A rate as a person would write it: `0.1`, `10`, `65536`.
fn shown(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// A short chat line, for tests of the buckets.
#[cfg(test)]
pub(crate) fn say() -> ClientMsg {
    ClientMsg::Say {
        to: chatdrop_proto::Target::All,
        room: Some("r".into()),
        text: "hi".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whohas() -> ClientMsg {
        ClientMsg::WhoHas {
            room: "r".into(),
            file: "a".into(),
        }
    }

    fn error_text(v: &Verdict) -> String {
        match v {
            Verdict::Refuse(ServerMsg::Error { code, message })
            | Verdict::Disconnect(ServerMsg::Error { code, message }) => {
                assert_eq!(*code, ErrorCode::RateLimited);
                message.clone()
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let mut q = Quota::new(Arc::new(Limits::default()), 0);
        // The burst of 10 whohas questions passes at once; the 11th not.
        for i in 0..10 {
            assert_eq!(q.check(0, &whohas(), 10), Verdict::Allow, "question {i}");
        }
        let refused = q.check(0, &whohas(), 10);
        let text = error_text(&refused);
        assert!(matches!(refused, Verdict::Refuse(_)));
        assert!(text.contains("whohas limit"), "{text}");
        assert!(text.contains("at most 1 whohas questions a second, 10 at once"));
        // One second later there is one more token, not two.
        assert_eq!(q.check(1_000, &whohas(), 10), Verdict::Allow);
        assert!(matches!(q.check(1_000, &whohas(), 10), Verdict::Refuse(_)));
        // Other kinds are not touched by the whohas bucket.
        assert_eq!(q.check(1_000, &say(), 10), Verdict::Allow);
    }

    #[test]
    fn the_most_specific_limit_is_named_and_a_refusal_costs_nothing() {
        let mut q = Quota::new(Arc::new(Limits::default()), 0);
        let create = ClientMsg::CreateRoom {
            room: "r".into(),
            password: None,
        };
        for _ in 0..5 {
            assert_eq!(q.check(0, &create, 10), Verdict::Allow);
        }
        for _ in 0..20 {
            let text = error_text(&q.check(0, &create, 10));
            assert!(text.starts_with("over the create_room limit"), "{text}");
        }
        // 5 of the 20 @server commands were spent, the refused ones took
        // nothing: 15 are left.
        for _ in 0..15 {
            assert_eq!(
                q.check(0, &ClientMsg::GetPeers { room: "r".into() }, 10),
                Verdict::Allow
            );
        }
        let q2 = q.check(0, &ClientMsg::GetPeers { room: "r".into() }, 10);
        assert!(error_text(&q2).contains("server_commands"));
    }

    #[test]
    fn bytes_are_counted_whatever_the_message() {
        let mut q = Quota::new(Arc::new(Limits::default()), 0);
        // 512 KiB of burst: 32 frames of 16 KiB, then no more.
        for _ in 0..32 {
            assert_eq!(q.check(0, &ClientMsg::Ping, 16 * 1024), Verdict::Allow);
        }
        let text = error_text(&q.check(0, &ClientMsg::Ping, 16 * 1024));
        assert!(text.contains("over the bytes limit"), "{text}");
        // A quarter second later 16 KiB are back.
        assert_eq!(q.check(250, &ClientMsg::Ping, 16 * 1024), Verdict::Allow);
    }

    #[test]
    fn a_client_that_keeps_pushing_is_disconnected_and_one_that_stops_is_not() {
        let limits = Limits::default();
        let mut q = Quota::new(Arc::new(limits.clone()), 0);
        for _ in 0..40 {
            assert_eq!(q.check(0, &say(), 10), Verdict::Allow);
        }
        // 20 refusals are tolerated, the 21st disconnects.
        for i in 0..limits.strikes {
            assert!(matches!(q.check(0, &say(), 10), Verdict::Refuse(_)), "{i}");
        }
        let last = q.check(0, &say(), 10);
        assert!(matches!(last, Verdict::Disconnect(_)));
        assert!(error_text(&last).starts_with("disconnected: kept going over the say limit"));

        // Someone who goes over now and then is never disconnected: one
        // refusal every 6 s, and one comes back every 5 s.
        let mut q = Quota::new(Arc::new(limits), 0);
        let mut now = 0;
        for _ in 0..200 {
            for _ in 0..41 {
                assert!(!matches!(q.check(now, &say(), 10), Verdict::Disconnect(_)));
            }
            now += 6_000;
        }
    }

    #[test]
    fn off_allows_anything_and_quit_is_always_allowed() {
        let mut q = Quota::new(Arc::new(Limits::off()), 0);
        for _ in 0..10_000 {
            assert_eq!(q.check(0, &whohas(), 16 * 1024), Verdict::Allow);
        }
        let mut q = Quota::new(Arc::new(Limits::default()), 0);
        for _ in 0..200 {
            let _ = q.check(0, &ClientMsg::Ping, 1);
        }
        assert_eq!(q.check(0, &ClientMsg::Quit, 1), Verdict::Allow);
    }

    #[test]
    fn bad_limits_are_refused_with_the_key_named() {
        let mut l = Limits::default();
        l.say.per_second = 0.0;
        assert_eq!(
            l.check().unwrap_err(),
            "limits.say.per_second must be above 0"
        );
        let mut l = Limits::default();
        l.whohas.burst = f64::NAN;
        assert_eq!(
            l.check().unwrap_err(),
            "limits.whohas.burst must be at least 1"
        );
        assert_eq!(Limits::default().check(), Ok(()));
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let mut q = Quota::new(Arc::new(Limits::default()), 10_000);
        for _ in 0..10 {
            assert_eq!(q.check(10_000, &whohas(), 1), Verdict::Allow);
        }
        assert!(matches!(q.check(5_000, &whohas(), 1), Verdict::Refuse(_)));
        assert!(matches!(q.check(10_500, &whohas(), 1), Verdict::Refuse(_)));
        assert_eq!(q.check(11_000, &whohas(), 1), Verdict::Allow);
    }
}
