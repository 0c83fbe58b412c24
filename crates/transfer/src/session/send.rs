//! The sending end of a session, free of I/O: it waits for the receiver's
//! `Start`, searches for the packet size, announces it with `Begin`, runs
//! the ARQ's [`Sender`] and ends with `Done` or `Abort`. While data flows
//! it keeps the packet size right for the path, as DPLPMTUD does (RFC
//! 8899): timeouts in a row with nothing acknowledged make it probe the
//! size in use, and if the path no longer carries it (a black hole: a
//! tunnel or a route change on the way, with the ICMP that would say so
//! filtered), the largest smaller size the path answers; some time after
//! a smaller size it searches for a larger one again. A new size starts a
//! new run of the ARQ from what the receiver acknowledged, announced with
//! `Resize`. The driver
//! ([`super::serve()`]) feeds it the frames that arrive and the time, and
//! sends what it says; the data itself it never holds (the driver reads
//! each [`Transmit`] from the file).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatdrop_arq::{ArqError, Frame, Sender, Transmit};
use ring::hmac;

use super::probe::PathProbe;
use super::{Event, ServeOptions};
use crate::wire::{Msg, TOKEN_LEN};
use crate::TransferError;

/// Challenges waiting to be sent. Each answers one `Start`, so a flood of
/// them (copies, or from many addresses) costs at most this much memory;
/// the oldest make room for the newest.
const MAX_CHALLENGES: usize = 8;

/// How often `Begin` is repeated until the first acknowledgement: the
/// receiver drops data until a `Begin` reaches it, so a lost one would
/// otherwise cost a whole retransmission timeout of data.
const BEGIN_REPEAT: Duration = Duration::from_millis(100);

/// Retransmission timeouts in a row, with nothing acknowledged between
/// them, after which the path is checked for still carrying the packet
/// size in use: one timeout is ordinary loss (a whole flight lost in a
/// queue's overflow), and the check costs little, so two are enough.
const BLACK_HOLE_TIMEOUTS: u64 = 2;
/// How long after a change to a smaller packet size a larger one is
/// tried again: the black hole may have been a route that came back. RFC
/// 8899 suggests ten minutes between such searches; a transfer is
/// shorter than that and a larger size is worth much to its speed, and
/// the search costs a few probes alongside the data.
const RAISE_AFTER: Duration = Duration::from_secs(10);
/// The longest wait between searches for a larger size while each finds
/// the path still narrow: the waits double from twice [`RAISE_AFTER`] up
/// to this, RFC 8899's ten minutes.
const RAISE_MAX: Duration = Duration::from_secs(600);

/// How often the waiting sender punches towards the receiver's candidates.
pub(crate) const PUNCH_EVERY: Duration = Duration::from_millis(200);
/// Rounds of punches at most: two seconds' worth, after which a path
/// that did not open is not going to (and the receiver's own `Start`s,
/// if they get through, still start the session).
pub(crate) const PUNCH_ROUNDS: u32 = 10;
/// Candidate addresses punched at most.
pub const MAX_PUNCHED: usize = 8;
/// Rounds of punches with the small TTL of [`PUNCH_TTL`] (the first
/// ones); the rest go with the system's.
pub(crate) const LOW_TTL_ROUNDS: u32 = PUNCH_ROUNDS / 2;
/// Hops a punch of the first rounds may take: enough to open this side's
/// own NAT (the home router, one hop away), too few to reach the other
/// side's. A punch that reached the other side's NAT before that side
/// sent anything would be refused there, and some NATs (Linux's among
/// them) then keep a record of it that stops the other side's own
/// `Start` from keeping its port: the path would not open. The receiver's
/// `Start`s, sent once the offer reaches it (later than the first
/// punches, by a trip through the server), open its side; the later
/// rounds go further, for NATs deeper in the network.
pub const PUNCH_TTL: u32 = 2;

/// The sending end of one session (see the module docs).
///
/// The driver's loop: [`poll_msg`](Self::poll_msg) and
/// [`poll_data`](Self::poll_data) until both are empty, sending what they
/// give; [`poll_end`](Self::poll_end) to learn whether the session is over;
/// otherwise sleep until [`poll_timeout`](Self::poll_timeout) or a
/// datagram, and pass on either ([`handle_timeout`](Self::handle_timeout),
/// [`handle`](Self::handle)).
#[derive(Debug)]
pub struct SendSession {
    opts: ServeOptions,
    /// Bytes of the file.
    size: u64,
    /// Bytes of its outline, sent ahead of the range asked for.
    outline: u64,
    /// The receiver, once its `Start` came: nothing from anywhere else
    /// counts after that.
    peer: Option<SocketAddr>,
    isn: u32,
    /// The stream's first offset: where the receiver asked to start, at
    /// most the file's size (see [`super::Span`]).
    resume_from: u64,
    /// The stream's end: where it asked to stop, plus the outline.
    end: u64,
    phase: Phase,
    /// The ARQ, from the end of the probing on.
    arq: Option<Sender>,
    /// Events for the driver; each kind is pushed at most once, so this
    /// never holds more than two.
    events: VecDeque<Event>,
    /// Makes the address tokens, and the secret choice of the packets
    /// the ARQ holds back against optimistic acknowledgements.
    key: hmac::Key,
    /// `Challenge`s to send: (to, token), at most [`MAX_CHALLENGES`].
    challenges: VecDeque<(SocketAddr, [u8; TOKEN_LEN])>,
    /// Punches of this round still to send.
    punches: VecDeque<SocketAddr>,
    /// After a change of packet size: the `cum` with which the run before
    /// acknowledges the whole stream.
    previous_end: Option<u32>,
    /// How long after a search for a larger size that found none the next
    /// one starts (see [`RAISE_MAX`]).
    raise_wait: Duration,
}

#[derive(Debug)]
enum Phase {
    /// No authentic `Start` yet; the session gives up at the deadline.
    /// Meanwhile it punches towards the receiver's candidates at
    /// `next_punch`, `rounds` more times.
    Waiting {
        deadline: Option<Instant>,
        next_punch: Instant,
        rounds: u32,
    },
    Probing(PathProbe),
    /// Data flows; `Begin` (or `Resize`, after a change of size) is
    /// repeated at `next_begin` until the receiver acknowledges data of
    /// this run (then it surely knows the size).
    Sending {
        mss: u32,
        next_begin: Instant,
        /// The stream offset this run of the ARQ started at.
        from: u64,
        /// This run followed a change of size: announced by `Resize`.
        resized: bool,
        /// A search for the path's packet size under way (see the module
        /// docs).
        check: Option<PathProbe>,
        /// The ARQ's timeout count when it last had something newly
        /// acknowledged (or a check last ended).
        timeouts_then: u64,
        /// The bytes acknowledged then.
        acked_then: u64,
        /// When to search for a larger size, after a smaller one.
        raise_at: Option<Instant>,
    },
    /// Over: `last` is still to be sent, unless `sent`; then `result` is
    /// for the driver.
    Over {
        last: Option<Last>,
        sent: bool,
        result: Option<Result<(), TransferError>>,
    },
}

/// What the token of an address signs: the address, bound to its purpose.
/// (The token is the whole HMAC-SHA256, so checking it is
/// `hmac::verify`'s constant-time comparison.)
fn token_input(addr: SocketAddr) -> Vec<u8> {
    let mut input = b"chatdrop address token\0".to_vec();
    match addr.ip() {
        std::net::IpAddr::V4(ip) => input.extend_from_slice(&ip.octets()),
        std::net::IpAddr::V6(ip) => input.extend_from_slice(&ip.octets()),
    }
    input.extend_from_slice(&addr.port().to_be_bytes());
    input
}

/// The frame that ends a session.
#[derive(Debug)]
enum Last {
    Done,
    Abort(String),
}

impl SendSession {
    /// A session serving a file of `size` bytes whose outline is
    /// `outline` bytes long with `opts`, waiting from `now` for
    /// a receiver to start it. `secret` is random and this session's own:
    /// the receiver must not know it (it makes the address tokens and
    /// chooses the packets held back to catch a lying receiver).
    pub fn new(
        opts: &ServeOptions,
        size: u64,
        outline: u64,
        now: Instant,
        secret: [u8; 32],
    ) -> SendSession {
        SendSession {
            opts: opts.clone(),
            size,
            outline,
            end: 0,
            peer: None,
            isn: 0,
            resume_from: 0,
            phase: Phase::Waiting {
                deadline: opts.wait_for_start.map(|d| now + d),
                next_punch: now,
                rounds: if opts.punch.is_empty() {
                    0
                } else {
                    PUNCH_ROUNDS
                },
            },
            arq: None,
            events: VecDeque::new(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            challenges: VecDeque::with_capacity(MAX_CHALLENGES),
            punches: VecDeque::new(),
            previous_end: None,
            raise_wait: RAISE_AFTER * 2,
        }
    }

    /// Takes a `Start` from `from` before the session has its receiver.
    ///
    /// The receiver's address is proved before anything larger than a
    /// `Challenge` goes there: a `Start` is authentic (only a holder of
    /// the keys can make one), but its source address can be forged, and
    /// whoever holds the keys could otherwise point the probes and the
    /// file at a third party. So a `Start` without this address's token
    /// is answered with a `Challenge` carrying it, smaller than the
    /// `Start` (no amplification: RFC 9000, section 8, allows three
    /// times); only a `Start` that echoes it, which only a receiver that
    /// gets datagrams at that address can send, starts the session. In
    /// chat mode a `Start` from an IP that is neither the asker's as its
    /// server knows it nor one of the asker's candidates is not even
    /// answered. An `Enough` from an allowed IP ends the wait, done: the
    /// asker took no data from this offer.
    fn on_start(&mut self, now: Instant, from: SocketAddr, msg: Msg<'_>) {
        // A server listening on both IPv4 and IPv6 sees an IPv4 client as
        // `::ffff:a.b.c.d`: the same address as `a.b.c.d`.
        let ip = from.ip().to_canonical();
        let allowed = &self.opts.peer_ips;
        if !allowed.is_empty() && !allowed.iter().any(|a| a.to_canonical() == ip) {
            return;
        }
        let Msg::Start {
            isn,
            from: from_byte,
            to,
            token,
        } = msg
        else {
            // The receiver needs nothing after all (others sent it all):
            // done, without waiting out the deadline. Only the receiver
            // can seal it, so no address needs proving.
            if let Msg::Enough = msg {
                self.end(None, Ok(()));
            }
            return;
        };
        if hmac::verify(&self.key, &token_input(from), &token).is_ok() {
            self.challenges.clear();
            self.start(now, from, isn, (from_byte, to));
            return;
        }
        self.challenge(from);
    }

    /// A frame of the session from an address that is not the receiver's,
    /// once the session runs: the receiver moved (its NAT gave its socket
    /// another mapping, or it changed networks). As at the start, nothing
    /// larger than a `Challenge` goes there until a `Start` from there
    /// echoes that address's token; then the session moves there, and
    /// carries on from where it was. The frame itself is taken for what
    /// it says only then: an on-path attacker that sends a receiver's
    /// datagram on from elsewhere first gets a `Challenge` there.
    fn on_other_address(&mut self, from: SocketAddr, msg: Msg<'_>) {
        if !matches!(self.phase, Phase::Probing(_) | Phase::Sending { .. }) {
            return;
        }
        if let Msg::Start { token, .. } = msg {
            if hmac::verify(&self.key, &token_input(from), &token).is_ok() {
                self.peer = Some(from);
                self.challenges.retain(|(to, _)| *to != from);
                self.events.push_back(Event::Moved { peer: from });
                return;
            }
        }
        if self.challenges.iter().any(|(to, _)| *to == from) {
            return;
        }
        self.challenge(from);
    }

    /// Queues a `Challenge` carrying `from`'s token (the oldest waiting
    /// one makes room, past [`MAX_CHALLENGES`]).
    fn challenge(&mut self, from: SocketAddr) {
        let mut fresh = [0u8; TOKEN_LEN];
        fresh.copy_from_slice(hmac::sign(&self.key, &token_input(from)).as_ref());
        if self.challenges.len() == MAX_CHALLENGES {
            self.challenges.pop_front();
        }
        self.challenges.push_back((from, fresh));
    }

    /// Whether the punches [`poll_msg`](Self::poll_msg) gives next go
    /// with the small [`PUNCH_TTL`]: those of the first
    /// [`LOW_TTL_ROUNDS`] rounds.
    pub fn low_ttl_punches(&self) -> bool {
        matches!(self.phase, Phase::Waiting { rounds, .. } if rounds > PUNCH_ROUNDS - LOW_TTL_ROUNDS)
    }

    /// A receiver may also start from `ip` (where `peer_ips` limits where
    /// it may start from at all).
    pub fn allow_peer_ip(&mut self, ip: std::net::IpAddr) {
        let ips = &mut self.opts.peer_ips;
        let ip = ip.to_canonical();
        if !ips.is_empty() && !ips.iter().any(|a| a.to_canonical() == ip) {
            ips.push(ip);
        }
    }

    /// The receiver, once a `Start` fixed it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The ARQ, from the end of the probing on: for its numbers
    /// (acknowledged bytes, packets sent, the congestion controller's
    /// state).
    pub fn arq(&self) -> Option<&Sender> {
        self.arq.as_ref()
    }

    /// Takes a frame that arrived authentic from `from` at `now`.
    ///
    /// The first `Start` that proves its address (see `on_start`) fixes
    /// the receiver, the first packet number and where to start; every
    /// later one is that receiver repeating itself (or a copy), and
    /// changes nothing.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, msg: Msg<'_>) {
        if let Phase::Waiting { .. } = self.phase {
            self.on_start(now, from, msg);
            return;
        }
        if self.peer != Some(from) {
            self.on_other_address(from, msg);
            return;
        }
        match (&mut self.phase, msg) {
            (Phase::Probing(probe), Msg::ProbeAck { size }) => probe.on_ack(size),
            (
                Phase::Sending {
                    check: Some(probe), ..
                },
                Msg::ProbeAck { size },
            ) => probe.on_ack(size),
            // The whole stream acknowledged by the run before a change of
            // size (its last acknowledgement was late): done.
            (Phase::Sending { .. }, Msg::Arq(Frame::Ack(ack)))
                if self.previous_end == Some(ack.cum) =>
            {
                self.end(Some(Last::Done), Ok(()));
                return;
            }
            (Phase::Sending { .. }, Msg::Arq(Frame::Ack(ack))) => {
                if let Some(arq) = &mut self.arq {
                    arq.on_ack(now, &ack);
                }
            }
            (Phase::Probing(_) | Phase::Sending { .. }, Msg::Arq(Frame::Abort(why))) => {
                self.end(None, Err(TransferError::Aborted(why.to_string())));
            }
            // The receiver has what it needs (another owner sends the
            // rest): done, without a `Done` of our own.
            (Phase::Probing(_) | Phase::Sending { .. }, Msg::Enough) => {
                self.end(None, Ok(()));
                return;
            }
            _ => {}
        }
        self.advance(now);
    }

    /// The host refused to send a datagram of `size` payload bytes at
    /// once, as too big for the path (`EMSGSIZE`): a `Probe`, or data
    /// (its route's MTU went down mid-session), which starts a check of
    /// the packet size at once.
    pub fn on_too_big(&mut self, now: Instant, size: u32) {
        match &mut self.phase {
            Phase::Probing(probe) => probe.on_too_big(size),
            Phase::Sending {
                check: Some(probe), ..
            } => probe.on_too_big(size),
            Phase::Sending { mss, .. } if *mss == size => self.check_path(false),
            _ => {}
        }
        self.advance(now);
    }

    /// Starts a search for the path's packet size while data flows: from
    /// the size in use down (`raise` false: is it still carried?), or from
    /// the largest size allowed (after a smaller one was taken).
    fn check_path(&mut self, raise: bool) {
        let v6 = self.peer_is_v6();
        // Twice the smoothed round trip, plus a margin for the queue the
        // probe waits in behind the data.
        let srtt = self.arq.as_ref().and_then(|a| a.rtt().srtt());
        let wait = srtt.map_or(Duration::ZERO, |r| r * 2 + Duration::from_millis(50));
        let cap = self.opts.cfg.mss;
        if let Phase::Sending {
            mss,
            check,
            raise_at,
            ..
        } = &mut self.phase
        {
            if check.is_some() {
                return;
            }
            let top = if raise { cap } else { *mss };
            let probe = PathProbe::new(top, v6).waiting(wait);
            // Nothing above the floor to try: the floor is all there is.
            if probe.largest().is_none() {
                return;
            }
            if raise {
                *raise_at = None;
            }
            *check = Some(probe);
        }
    }

    /// Whether the receiver is reached over IPv6: the headers below a
    /// payload, and so the payload sizes the path sizes give, differ.
    fn peer_is_v6(&self) -> bool {
        self.peer.is_some_and(|p| p.is_ipv6())
    }

    /// The ARQ's state, for the black-hole watch: a check is due once
    /// [`BLACK_HOLE_TIMEOUTS`] timeouts fired with nothing acknowledged
    /// between them.
    fn watch_timeouts(&mut self) {
        let Some(arq) = &self.arq else {
            return;
        };
        let (acked, timeouts) = (arq.acked_bytes(), arq.timeouts());
        let due = match &mut self.phase {
            Phase::Sending {
                timeouts_then,
                acked_then,
                check,
                ..
            } => {
                if acked != *acked_then {
                    (*acked_then, *timeouts_then) = (acked, timeouts);
                }
                check.is_none() && timeouts >= *timeouts_then + BLACK_HOLE_TIMEOUTS
            }
            _ => false,
        };
        if due {
            self.check_path(false);
        }
    }

    /// A frame to seal and send now to its address (`Probe`, `Begin`,
    /// `Done`, `Abort`), if one is due.
    pub fn poll_msg(&mut self, now: Instant) -> Option<(SocketAddr, Msg<'_>)> {
        if let Some((to, token)) = self.challenges.pop_front() {
            return Some((to, Msg::Challenge { token }));
        }
        if let Phase::Waiting {
            next_punch, rounds, ..
        } = &mut self.phase
        {
            if self.punches.is_empty() && *rounds > 0 && now >= *next_punch {
                *rounds -= 1;
                *next_punch = now + PUNCH_EVERY;
                let to = self.opts.punch.iter().take(MAX_PUNCHED);
                self.punches.extend(to);
            }
            return self.punches.pop_front().map(|to| (to, Msg::Punch));
        }
        let peer = self.peer?;
        let msg = match &mut self.phase {
            Phase::Waiting { .. } => None,
            Phase::Probing(probe) => probe.poll_probe(now).map(|size| Msg::Probe { size }),
            Phase::Sending {
                mss,
                next_begin,
                from,
                resized,
                check,
                ..
            } => {
                if let Some(size) = check.as_mut().and_then(|c| c.poll_probe(now)) {
                    return Some((peer, Msg::Probe { size }));
                }
                let acked = self.arq.as_ref().map(Sender::acked_bytes);
                (now >= *next_begin && acked == Some(*from)).then(|| {
                    *next_begin = now + BEGIN_REPEAT;
                    if *resized {
                        Msg::Resize {
                            mss: *mss,
                            isn: self.isn,
                            from: *from,
                        }
                    } else {
                        Msg::Begin { mss: *mss }
                    }
                })
            }
            Phase::Over { last, sent, .. } => {
                let first = !std::mem::replace(sent, true);
                match last {
                    Some(Last::Done) if first => Some(Msg::Arq(Frame::Done)),
                    Some(Last::Abort(why)) if first => Some(Msg::Arq(Frame::Abort(why))),
                    _ => None,
                }
            }
        };
        msg.map(|m| (peer, m))
    }

    /// The next data packet to send now, if the ARQ's windows and pacing
    /// allow one: the driver reads its bytes from the file and sends them
    /// as `Frame::Data` to [`peer`](Self::peer).
    pub fn poll_data(&mut self, now: Instant) -> Option<Transmit> {
        match self.phase {
            Phase::Sending { .. } => self.arq.as_mut()?.poll_transmit(now),
            _ => None,
        }
    }

    /// Something for the driver's logs or set-up, if anything happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// How the session ended, once it has and its last frame was polled:
    /// `Ok` when every byte was acknowledged. Given once.
    pub fn poll_end(&mut self) -> Option<Result<(), TransferError>> {
        match &mut self.phase {
            Phase::Over { sent, result, .. } if *sent => result.take(),
            _ => None,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due, once
    /// nothing is left to poll; `None` when only a datagram can move the
    /// session on.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Waiting {
                deadline,
                next_punch,
                rounds,
            } => {
                let punch = (*rounds > 0).then_some(*next_punch);
                match (*deadline, punch) {
                    (Some(d), Some(p)) => Some(d.min(p)),
                    (d, p) => d.or(p),
                }
            }
            Phase::Probing(probe) => probe.poll_timeout(),
            Phase::Sending {
                next_begin,
                from,
                check,
                raise_at,
                ..
            } => {
                let arq = self.arq.as_ref()?;
                let begin = (arq.acked_bytes() == *from).then_some(*next_begin);
                let check = check.as_ref().and_then(PathProbe::poll_timeout);
                [arq.poll_timeout(), begin, check, *raise_at]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Phase::Over { .. } => None,
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Waiting { deadline, .. } if deadline.is_some_and(|d| now >= d) => {
                let silent = TransferError::PeerSilent("no receiver came".into());
                self.end(None, Err(silent));
            }
            Phase::Probing(probe) => probe.on_timeout(now),
            Phase::Sending {
                check, raise_at, ..
            } => {
                if let Some(probe) = check {
                    probe.on_timeout(now);
                }
                let raise = check.is_none() && raise_at.is_some_and(|t| now >= t);
                if let Some(arq) = &mut self.arq {
                    arq.on_timeout(now);
                }
                if raise {
                    self.check_path(true);
                }
                self.watch_timeouts();
            }
            _ => {}
        }
        self.advance(now);
    }

    /// The receiver at `from` starts the session, asking for the file's
    /// bytes `range` (cut to the file).
    fn start(&mut self, now: Instant, from: SocketAddr, isn: u32, range: (u64, u64)) {
        self.peer = Some(from);
        self.punches.clear();
        self.isn = isn;
        let to = range.1.min(self.size);
        self.resume_from = range.0.min(to);
        self.end = to + self.outline;
        self.events.push_back(Event::Started {
            peer: from,
            isn,
            resume_from: self.resume_from,
            to,
        });
        let probe = PathProbe::new(self.opts.cfg.mss, from.is_ipv6());
        self.phase = Phase::Probing(probe);
        self.advance(now);
    }

    /// Moves to the next phase when this one is over: from probing to data
    /// once the size is known, from data to the end once the ARQ is done
    /// or has failed.
    fn advance(&mut self, now: Instant) {
        if let Phase::Probing(probe) = &self.phase {
            if let Some(mss) = probe.result() {
                self.run(now, mss, self.resume_from, false);
                self.events.push_back(Event::Began { mss });
            }
        }
        let found = match &self.phase {
            Phase::Sending {
                mss,
                check: Some(probe),
                ..
            } => probe.result().map(|size| (*mss, size)),
            _ => None,
        };
        if let Some((mss, size)) = found {
            self.checked(now, mss, size);
        }
        if let (Phase::Sending { .. }, Some(arq)) = (&self.phase, &self.arq) {
            if arq.is_done() {
                // Tell the receiver it may stop; if this is lost it stops
                // by itself after a moment of silence.
                self.end(Some(Last::Done), Ok(()));
            } else if let Some(e) = arq.failure() {
                let why = e.to_string();
                let abort = Last::Abort(why.clone());
                let err = match e {
                    ArqError::PeerSilent(_) => TransferError::PeerSilent(why),
                    ArqError::OptimisticAck => TransferError::Misbehaved(why),
                };
                self.end(Some(abort), Err(err));
            }
        }
    }

    /// Starts a run of the ARQ with packets of `mss` bytes from stream
    /// offset `from` (the session's first run, or the next after a
    /// `Resize`).
    fn run(&mut self, now: Instant, mss: u32, from: u64, resized: bool) {
        let mut cfg = self.opts.cfg.clone();
        cfg.mss = mss;
        let mut arq = match (&self.arq, resized) {
            (Some(old), true) => Sender::carry_on(cfg, self.isn, from, self.end, old, now),
            _ => Sender::new(cfg, self.isn, from, self.end, now),
        };
        let seed = hmac::sign(&self.key, b"chatdrop held packets\0");
        let mut check = [0u8; 32];
        check.copy_from_slice(seed.as_ref());
        arq.check_acks(check);
        self.phase = Phase::Sending {
            mss,
            next_begin: now,
            from,
            resized,
            check: None,
            timeouts_then: 0,
            acked_then: from,
            raise_at: None,
        };
        self.arq = Some(arq);
    }

    /// A search for the packet size ended on `size` while `mss` is in
    /// use: a different size starts a new run from what the receiver
    /// acknowledged, numbered after every packet of this one.
    fn checked(&mut self, now: Instant, mss: u32, size: u32) {
        let Some(arq) = &self.arq else {
            return;
        };
        let (from, packets, timeouts) = (arq.acked_bytes(), arq.packets(), arq.timeouts());
        let top = PathProbe::new(self.opts.cfg.mss, self.peer_is_v6()).largest();
        let below_top = |size: u32| top.is_some_and(|top| size < top);
        if size == mss {
            let wait = self.raise_wait;
            if let Phase::Sending {
                check,
                timeouts_then,
                acked_then,
                raise_at,
                ..
            } = &mut self.phase
            {
                *check = None;
                (*timeouts_then, *acked_then) = (timeouts, from);
                // A search ended on a size below the largest with none
                // planned (one for a larger size found none): searched
                // again later, less and less often, as RFC 8899 does, so
                // that a path that heals late is still used.
                if raise_at.is_none() && below_top(size) {
                    *raise_at = Some(now + wait);
                    self.raise_wait = (wait * 2).min(RAISE_MAX);
                }
            }
            return;
        }
        // One number is left out between the runs: an acknowledgement of
        // the old run's last packet (`cum` = that number) still says the
        // receiver has the whole stream, and no acknowledgement of the new
        // run can say the same.
        let old_end = self.isn.wrapping_add(packets as u32);
        self.previous_end = Some(old_end);
        self.isn = old_end.wrapping_add(1);
        // The new run keeps what the old one learnt of the path, and the
        // receiver's silence goes on counting across the change.
        self.run(now, size, from, true);
        if let Phase::Sending { raise_at, .. } = &mut self.phase {
            if below_top(size) {
                *raise_at = Some(now + RAISE_AFTER);
            }
        }
        self.raise_wait = RAISE_AFTER * 2;
        self.events.push_back(Event::Resized { mss: size });
    }

    fn end(&mut self, last: Option<Last>, result: Result<(), TransferError>) {
        self.phase = Phase::Over {
            sent: last.is_none(),
            last,
            result: Some(result),
        };
    }
}

#[cfg(test)]
mod tests;
