//! The sending side: [`Sender`] owns the packets of one transfer from
//! their first sending to their acknowledgement (the sliding window, loss
//! detection, retransmission, the retransmission timer), and asks its
//! congestion controller and pacer how much may go out and when.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::congestion::{AckEvent, Controller, Model};
use crate::frame::{Ack, MAX_ACK_RANGES};
use crate::pacer::Pacer;
use crate::rate::{DeliveryState, SendState};
use crate::rtt::RttEstimator;
use crate::{ArqError, Config, Scheme};

/// A data packet to send now: the driver reads `len` bytes at `offset` and
/// sends them as `Frame::Data { seq, .. }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The packet's sequence number, for `Frame::Data`.
    pub seq: u32,
    /// Where its bytes start in the file.
    pub offset: u64,
    /// How many bytes it carries: the packet size, less for the last.
    pub len: u32,
    /// Whether this packet was sent before.
    pub retransmission: bool,
}

/// Packets sent after a lost one and acknowledged before it declare it lost
/// (RFC 9002's packet threshold), as long as the path has not been seen
/// to reorder; from then on only time does (see [`Reordering`]).
pub const PACKET_THRESHOLD: u64 = 3;

/// Loss recoveries after which a reordering window widened by spurious
/// retransmissions falls back to its first width (RFC 8985's 16).
const REO_WND_PERSIST: u32 = 16;

/// How late a packet may come before it is taken for lost, learnt from the
/// path as RACK does (RFC 8985). A packet is lost once a packet sent after
/// it was acknowledged and it has been out for an RTT and the reordering
/// window. Until the path is seen to reorder, three later packets
/// acknowledged also make it lost, and the window is an eighth of the RTT
/// (RFC 9002). It is seen to reorder when a packet never resent is
/// acknowledged after one sent after it, or when a resend that loss
/// detection made proves spurious (acknowledged sooner than three
/// quarters of the path's smallest RTT after it went: the first copy had
/// arrived). From then on the window is a quarter of the smallest RTT,
/// widened by a quarter for each round trip with a spurious resend, at
/// most the smoothed RTT; after [`REO_WND_PERSIST`] loss recoveries
/// without a widening it narrows back.
#[derive(Debug, Default, Clone)]
struct Reordering {
    /// The path was seen to reorder (see above).
    seen: bool,
    /// The window, in quarters of the smallest RTT.
    mult: u32,
    /// Loss recoveries left before `mult` falls back to 1.
    persist: u32,
    /// When `mult` last grew: at most once a round trip.
    widened_at: Option<Instant>,
    /// When the latest loss recovery began.
    recovery_at: Option<Instant>,
    /// Retransmissions found spurious.
    spurious: u64,
}

impl Reordering {
    /// A retransmission proved spurious at `now`.
    fn spurious(&mut self, now: Instant, srtt: Duration) {
        self.spurious += 1;
        if self.widened_at.is_none_or(|t| now >= t + srtt) {
            self.widened_at = Some(now);
            self.mult = self.mult.max(1) + 1;
            self.persist = REO_WND_PERSIST;
        }
    }

    /// Packets were found lost at `now`: a new recovery if the last began
    /// more than a round trip ago.
    fn on_loss(&mut self, now: Instant, srtt: Duration) {
        if self.recovery_at.is_some_and(|t| now < t + srtt) {
            return;
        }
        self.recovery_at = Some(now);
        if self.mult > 1 {
            self.persist = self.persist.saturating_sub(1);
            if self.persist == 0 {
                self.mult = 1;
            }
        }
    }

    /// The window past an RTT of `rtt` (the smallest being `min_rtt`, the
    /// smoothed `srtt`).
    fn window(&self, rtt: Duration, min_rtt: Option<Duration>, srtt: Duration) -> Duration {
        match min_rtt {
            Some(min) if self.seen => (min / 4 * self.mult.max(1)).min(srtt),
            _ => rtt / 8,
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    /// Delivery state at its latest sending (with the time it was sent).
    state: SendState,
    /// Number of its latest transmission, counting every packet sent: loss
    /// is judged in sending order, so a retransmission is not taken for
    /// lost again because packets numbered after it were acked long ago.
    tx: u64,
    /// Sent more than once: no RTT sample from it (Karn).
    resent: bool,
    acked: bool,
    /// Selective Repeat: already queued for retransmission.
    queued: bool,
    /// Held back on purpose and not sent yet (see [`AckCheck`]): an
    /// acknowledgement of it is a lie.
    withheld: bool,
    /// Its latest copy was sent because loss detection took the one
    /// before for lost (not a timeout's or a tail-loss probe's, sent with
    /// no such sign): an acknowledgement too early for it proves the path
    /// reordered.
    by_loss: bool,
}

/// The defence against optimistic acknowledgements (a receiver that
/// acknowledges packets it never got, to make the sender outrun the path:
/// Savage et al., 1999). Now and then, at a place the receiver cannot
/// predict, the sender holds a new packet back instead of sending it, and
/// sends it only once an acknowledgement shows it missing beyond a later
/// one. An honest receiver cannot acknowledge a packet that was never
/// sent; a receiver that acknowledges what it did not get (every gap, or
/// everything up to a guess) sooner or later acknowledges the held one,
/// and the transfer ends ([`ArqError::OptimisticAck`]). RFC 9000 (section
/// 21.4) skips packet numbers for the same reason; here a packet's number
/// also places its bytes in the file, so the packet is late rather than
/// skipped, and to the receiver it looks like any packet lost once.
///
/// Selective Repeat only: a Go-Back-N receiver drops everything after a
/// missing packet, so each held packet would cost a window.
#[derive(Debug)]
struct AckCheck {
    rng: rand_chacha::ChaCha8Rng,
    /// The index of the next packet to hold back.
    next_at: u64,
    /// The packet held back and not yet queued for sending.
    held: Option<u64>,
}

impl AckCheck {
    /// The gap to the next held packet, in packets: random in [32, 288),
    /// about one packet in 160, a few per round trip at any rate.
    fn gap(&mut self) -> u64 {
        use rand_chacha::rand_core::RngCore;
        32 + u64::from(self.rng.next_u32() % 256)
    }
}

/// Sends the byte range `[start, total)` reliably. See the crate docs.
///
/// `C` is the congestion controller: chatdrop's [`Model`] unless the
/// sender is made [`Sender::with_controller`].
#[derive(Debug)]
pub struct Sender<C = Model> {
    cfg: Config,
    isn: u32,
    start: u64,
    total: u64,
    packets: u64,
    /// Index of the oldest unacknowledged packet.
    base: u64,
    /// Index of the next packet to send (Go-Back-N may move it back).
    next: u64,
    /// Slots of packets `base .. base + slots.len()` (all sent at least once).
    slots: VecDeque<Slot>,
    /// Selective Repeat: indices to resend.
    resend: VecDeque<u64>,
    /// Indices sent and not acknowledged: SACK ranges touch only these, so
    /// an ack costs what it newly acknowledges, not the window.
    unacked: BTreeSet<u64>,
    /// Selective Repeat: (transmission number, index) in sending order;
    /// entries whose packet was acknowledged, queued or sent again since
    /// are stale and skipped. Loss detection and the timer look at its
    /// front only.
    flight: VecDeque<(u64, u64)>,
    /// Scratch space for the indices one ack acknowledges.
    hits: Vec<u64>,
    /// Loss is judged only below this index: an ack with more gaps than it
    /// can list leaves out those between its oldest ranges and its newest,
    /// and a packet there may well have arrived.
    judge_below: u64,
    /// The highest packet index any acknowledgement has reached (its `cum`
    /// or its highest range's end): an acknowledgement that reaches less
    /// is older than one already taken (acknowledgements reorder too), and
    /// says nothing of what may be judged.
    acked_top: u64,
    rtt: RttEstimator,
    last_heard: Instant,
    /// Go-Back-N: when the oldest unacked packet times out.
    gbn_deadline: Option<Instant>,
    failed: Option<ArqError>,
    sent_packets: u64,
    retransmissions: u64,
    /// Transmission number of the next packet sent.
    next_tx: u64,
    /// Highest transmission number acknowledged.
    largest_acked_tx: Option<u64>,
    /// The receiver's count of datagrams its socket dropped, as last
    /// reported.
    receiver_dropped: u32,
    latest_rtt: Option<Duration>,
    /// Selective Repeat: when a packet sent before the newest acknowledged
    /// one has been out long enough to be declared lost by time.
    loss_time: Option<Instant>,
    /// Retransmission timeouts that fired.
    timeouts: u64,
    /// The congestion controller: how much may be in flight, how fast.
    cc: C,
    pacer: Pacer,
    delivery: DeliveryState,
    /// Acknowledged packets still in `slots` (behind an unacknowledged one).
    acked_in_slots: u64,
    /// Packets queued for resending and not acknowledged meanwhile.
    queued_live: u64,
    /// Packets that may go beyond the congestion window after a timeout.
    probes: u64,
    /// When the latest retransmission timeout fired: a packet sent before
    /// it and acknowledged after it gives no RTT sample, even if it was
    /// never resent, because its own acknowledgements were likely lost and
    /// the one that came was drawn by a retransmission (Karn's reasoning,
    /// carried over to lost acks).
    last_timeout: Option<Instant>,
    /// Selective Repeat: when a data packet last went out. The probe
    /// timer runs from here (RFC 9002), not from the oldest packet out:
    /// while packets go out and acknowledgements come back, losses are
    /// found from the acknowledgements, and a timer on the oldest packet
    /// would fire whenever a queue grows the RTT past the timeout
    /// (startup, each bandwidth probe), each time shrinking the window
    /// for nothing.
    last_sent: Option<Instant>,
    /// Selective Repeat with [`Sender::check_acks`]: the held packets.
    check: Option<AckCheck>,
    /// Selective Repeat: how late packets come on this path.
    reordering: Reordering,
    /// Selective Repeat: a tail-loss probe may go (RFC 8985): armed by
    /// each acknowledgement of new data, spent by the probe.
    tlp_armed: bool,
    /// Tail-loss probes sent.
    tail_probes: u64,
}

/// Packets sent on a probe timeout regardless of the window.
const PROBES: u64 = 2;

impl Sender {
    /// A sender of bytes `[start, total)`, numbering packets from `isn`,
    /// with chatdrop's congestion controller ([`Model`]; `isn` also seeds
    /// where its probing cycle starts).
    pub fn new(cfg: Config, isn: u32, start: u64, total: u64, now: Instant) -> Self {
        let cc = Model::new(cfg.window, u64::from(isn), now);
        Sender::with_controller(cfg, isn, start, total, cc, now)
    }

    /// A sender of bytes `[start, total)`, numbering packets from `isn`,
    /// that carries on a transfer `old` began on the same path with
    /// packets of another size: it keeps what `old` learnt of the path
    /// (the congestion model, in packets of this size, the RTT, how late
    /// packets come) and counts the receiver's silence from when `old`
    /// last heard it, so that a receiver that is gone wins no new idle
    /// timeout.
    pub fn carry_on(
        cfg: Config,
        isn: u32,
        start: u64,
        total: u64,
        old: &Sender,
        now: Instant,
    ) -> Self {
        let factor = f64::from(old.cfg.mss.max(1)) / f64::from(cfg.mss.max(1));
        let cc = old.cc.rescaled(factor);
        let mut s = Sender::with_controller(cfg, isn, start, total, cc, now);
        s.rtt = old.rtt.clone();
        s.reordering = Reordering {
            spurious: 0,
            ..old.reordering.clone()
        };
        s.last_heard = old.last_heard;
        s
    }
}

impl<C: Controller> Sender<C> {
    /// A sender of bytes `[start, total)`, numbering packets from `isn`,
    /// that sends as `cc` allows.
    pub fn with_controller(
        cfg: Config,
        isn: u32,
        start: u64,
        total: u64,
        cc: C,
        now: Instant,
    ) -> Self {
        let start = start.min(total);
        let packets = cfg.packets_for(total - start);
        let rtt = RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto);
        Sender {
            cfg,
            isn,
            start,
            total,
            packets,
            base: 0,
            next: 0,
            slots: VecDeque::new(),
            resend: VecDeque::new(),
            unacked: BTreeSet::new(),
            flight: VecDeque::new(),
            hits: Vec::new(),
            judge_below: u64::MAX,
            acked_top: 0,
            rtt,
            last_heard: now,
            gbn_deadline: None,
            failed: None,
            sent_packets: 0,
            retransmissions: 0,
            next_tx: 0,
            largest_acked_tx: None,
            receiver_dropped: 0,
            latest_rtt: None,
            loss_time: None,
            timeouts: 0,
            cc,
            pacer: Pacer::new(now),
            delivery: DeliveryState::new(now),
            acked_in_slots: 0,
            queued_live: 0,
            probes: 0,
            last_timeout: None,
            last_sent: None,
            check: None,
            reordering: Reordering::default(),
            tlp_armed: false,
            tail_probes: 0,
        }
    }

    /// Turns on the defence against optimistic acknowledgements (see
    /// [`AckCheck`]) for Selective Repeat, with `seed` choosing which
    /// packets are held back: it must be secret from the receiver. The
    /// first is among the first few dozen packets, so startup, where
    /// false acknowledgements would inflate the rate fastest, is covered.
    pub fn check_acks(&mut self, seed: [u8; 32]) {
        use rand_chacha::rand_core::SeedableRng;
        if self.cfg.scheme != Scheme::SelectiveRepeat {
            return;
        }
        let mut check = AckCheck {
            rng: rand_chacha::ChaCha8Rng::from_seed(seed),
            next_at: 0,
            held: None,
        };
        check.next_at = check.gap() / 4;
        self.check = Some(check);
    }

    /// Holds the next new packet back if it is the one chosen: it gets a
    /// slot, counts as queued (not in flight), and waits for an
    /// acknowledgement beyond it (`release_held`). Only with room for
    /// later packets to draw that acknowledgement: a window of at least
    /// eight, and eight more packets to send.
    fn hold_back(&mut self, now: Instant) {
        let Some(check) = &mut self.check else {
            return;
        };
        let idx = self.next;
        if check.held.is_some() || idx < check.next_at {
            return;
        }
        check.next_at = idx + check.gap();
        let room = self.cfg.window >= 8
            && idx + 8 < self.packets
            && idx + 1 < self.base + u64::from(self.cfg.window);
        if !room || idx != self.base + self.slots.len() as u64 {
            return;
        }
        check.held = Some(idx);
        // Never the start of a new flight (`on_send` with nothing in
        // flight would restart the rate sampler's clock); the state is
        // replaced when the packet really goes.
        let state = self.delivery.on_send(now, self.in_flight().max(1));
        self.slots.push_back(Slot {
            state,
            tx: self.next_tx,
            resent: false,
            acked: false,
            queued: true,
            withheld: true,
            by_loss: false,
        });
        self.queued_live += 1;
        self.unacked.insert(idx);
        self.next += 1;
    }

    /// Queues the held packet for sending once an acknowledgement of a
    /// later one shows it missing: the receiver has had its chance to lie.
    fn release_held(&mut self, highest_acked: Option<u64>) {
        let Some(check) = &mut self.check else {
            return;
        };
        if let (Some(held), Some(high)) = (check.held, highest_acked) {
            if high > held {
                check.held = None;
                self.resend.push_back(held);
            }
        }
    }

    /// The congestion controller, for what it tells beyond the trait (the
    /// model's phase, bandwidth estimate and loss rate, for tracing).
    pub fn controller(&self) -> &C {
        &self.cc
    }

    /// Packets sent and neither acknowledged nor declared lost (Go-Back-N:
    /// those between the oldest unacknowledged and the next to send).
    fn in_flight(&self) -> u64 {
        match self.cfg.scheme {
            Scheme::SelectiveRepeat => {
                self.slots.len() as u64 - self.acked_in_slots - self.queued_live
            }
            Scheme::GoBackN => self.next - self.base,
        }
    }

    /// Whether a packet (new or resent) is waiting for the windows only,
    /// not for pacing.
    fn has_sendable(&self) -> bool {
        if self.cfg.scheme == Scheme::SelectiveRepeat && !self.resend.is_empty() {
            return self.probes > 0 || self.in_flight() < self.cc.cwnd();
        }
        if self.in_flight() >= self.cc.cwnd() {
            return false;
        }
        let window_end = self.base + self.cfg.window as u64;
        self.next < window_end && self.next < self.packets
    }

    /// Retransmission timeouts that fired (losses found by acknowledgements
    /// are not counted here).
    pub fn timeouts(&self) -> u64 {
        self.timeouts
    }

    fn seq_of(&self, idx: u64) -> u32 {
        self.isn.wrapping_add(idx as u32)
    }

    fn transmit(&self, idx: u64, retransmission: bool) -> Transmit {
        let offset = self.start + idx * self.cfg.mss as u64;
        let len = (self.total - offset).min(self.cfg.mss as u64) as u32;
        Transmit {
            seq: self.seq_of(idx),
            offset,
            len,
            retransmission,
        }
    }

    /// True once every byte is acknowledged.
    pub fn is_done(&self) -> bool {
        self.base >= self.packets
    }

    /// When the receiver was last heard from (its last acknowledgement, or
    /// the sender's start).
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// Packets the range is cut into: the numbers `isn..isn + packets`
    /// are this sender's.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Why the transfer failed, if it did.
    pub fn failure(&self) -> Option<&ArqError> {
        self.failed.as_ref()
    }

    /// Bytes acknowledged so far (counting from the start of the file).
    pub fn acked_bytes(&self) -> u64 {
        (self.start + self.base * self.cfg.mss as u64).min(self.total)
    }

    /// Packets sent, retransmissions included, and retransmissions alone.
    pub fn stats(&self) -> (u64, u64) {
        (self.sent_packets, self.retransmissions)
    }

    /// Retransmissions found spurious (the first copy had arrived), as far
    /// as the sender can tell: resends that loss detection made and that
    /// were acknowledged sooner than three quarters of the path's smallest
    /// RTT after they went.
    pub fn spurious_retransmissions(&self) -> u64 {
        self.reordering.spurious
    }

    /// Tail-loss probes sent (each also counts as a retransmission).
    pub fn tail_probes(&self) -> u64 {
        self.tail_probes
    }

    /// The smoothed RTT and the retransmission timeout derived from it.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The next packet to send now, if the windows and the pacing allow
    /// one.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.failed.is_some() || self.is_done() {
            return None;
        }
        // Drop resend entries that no longer need it (acknowledged since).
        while let Some(&idx) = self.resend.front() {
            let slot = idx
                .checked_sub(self.base)
                .and_then(|i| self.slots.get_mut(i as usize));
            match slot {
                Some(slot) if !slot.acked => break,
                Some(slot) => slot.queued = false,
                None => {}
            }
            self.resend.pop_front();
        }
        if !self.has_sendable() {
            let window_end = self.base + self.cfg.window as u64;
            if self.resend.is_empty() && (self.next >= self.packets || self.next >= window_end) {
                // Short of data (or held by the cap), not of window: rate
                // samples from now on may understate the path.
                self.delivery.on_app_limited(self.in_flight());
            }
            return None;
        }
        if !self.pacer.try_take(now, self.cc.pacing_rate()) {
            return None;
        }
        let in_flight = self.in_flight();
        let state = self.delivery.on_send(now, in_flight);
        if self.cfg.scheme == Scheme::SelectiveRepeat {
            if let Some(idx) = self.resend.pop_front() {
                self.probes = self.probes.saturating_sub(1);
                let slot = &mut self.slots[(idx - self.base) as usize];
                slot.queued = false;
                self.queued_live -= 1;
                slot.state = state;
                // A held packet goes for the first time: not a resend.
                let resent = !std::mem::replace(&mut slot.withheld, false);
                slot.resent |= resent;
                slot.tx = self.next_tx;
                self.flight.push_back((self.next_tx, idx));
                self.next_tx += 1;
                self.sent_packets += 1;
                self.retransmissions += u64::from(resent);
                self.last_sent = Some(now);
                return Some(self.transmit(idx, resent));
            }
        }
        self.hold_back(now);
        let idx = self.next;
        self.next += 1;
        let pos = (idx - self.base) as usize;
        let resent = pos < self.slots.len();
        if resent {
            // Go-Back-N going back over packets it sent before.
            let slot = &mut self.slots[pos];
            slot.state = state;
            slot.resent = true;
            slot.tx = self.next_tx;
            self.retransmissions += 1;
        } else {
            self.slots.push_back(Slot {
                state,
                tx: self.next_tx,
                resent: false,
                acked: false,
                queued: false,
                withheld: false,
                by_loss: false,
            });
            self.unacked.insert(idx);
        }
        if self.cfg.scheme == Scheme::SelectiveRepeat {
            self.flight.push_back((self.next_tx, idx));
            self.last_sent = Some(now);
        }
        if self.gbn_deadline.is_none() {
            self.gbn_deadline = Some(now + self.rtt.rto());
        }
        self.next_tx += 1;
        self.sent_packets += 1;
        Some(self.transmit(idx, resent))
    }

    /// Maps a sequence number to a packet index among those sent, if it is
    /// one (or one past the last sent, for a cumulative ack).
    fn index_of(&self, seq: u32) -> Option<u64> {
        let diff = seq.wrapping_sub(self.seq_of(self.base)) as u64;
        (diff <= self.slots.len() as u64).then_some(self.base + diff)
    }

    /// Takes an acknowledgement that arrived at `now`: marks what it
    /// acknowledges, finds what it shows lost (Selective Repeat), and tells
    /// the congestion controller.
    pub fn on_ack(&mut self, now: Instant, ack: &Ack) {
        if self.failed.is_some() {
            return;
        }
        self.last_heard = now;
        // The newest acknowledged packet sent once (an RTT sample), and
        // the most recently sent one (the delivery-rate sample).
        let mut newest_sample: Option<(u64, Duration)> = None;
        let mut latest: Option<SendState> = None;
        let mut largest_tx = self.largest_acked_tx;
        let mut newly = 0u64;
        let mut acked_queued = 0u64;
        let last_timeout = self.last_timeout;
        // An acknowledgement that comes back sooner than half the path's
        // RTT after a packet was resent is for an earlier copy: it must not
        // count as the resend arriving, or every packet sent before the
        // resend and not yet acknowledged would be taken for lost at once.
        let min_rtt = self.cc.min_rtt();
        let plausible = min_rtt.map_or(Duration::ZERO, |m| m / 2);
        let mut lied = false;
        let mut highest: Option<u64> = None;
        // Reordering: a packet sent once, acknowledged only after one sent
        // after it was. A spurious retransmission: one acknowledged sooner
        // than any round trip takes after it went.
        let before_largest = self.largest_acked_tx;
        let judged_before = self.judge_below;
        let mut reordered = false;
        let mut spurious = 0u64;
        let mut take = |slot: &mut Slot, idx: u64| {
            lied |= slot.withheld;
            highest = highest.max(Some(idx));
            if !slot.acked {
                slot.acked = true;
                newly += 1;
                acked_queued += u64::from(slot.queued);
                let since = now.saturating_duration_since(slot.state.sent_at);
                // Only what the previous ack covered: one too full to list
                // every range left some out, and their packets come later
                // in order.
                let covered = idx < judged_before;
                if !slot.resent && covered && before_largest.is_some_and(|l| slot.tx < l) {
                    reordered = true;
                }
                // Three quarters: the smallest RTT may have expired and been
                // taken afresh over a queue.
                let by_loss = slot.resent && slot.by_loss && !slot.queued;
                if by_loss && min_rtt.is_some_and(|m| since < m * 3 / 4) {
                    spurious += 1;
                }
                if since >= plausible {
                    largest_tx = largest_tx.max(Some(slot.tx));
                }
                let clean = !slot.resent && last_timeout.is_none_or(|t| slot.state.sent_at > t);
                if clean && newest_sample.is_none_or(|(i, _)| idx > i) {
                    let rtt = now.saturating_duration_since(slot.state.sent_at);
                    newest_sample = Some((idx, rtt));
                }
                if latest.is_none_or(|l| slot.state.sent_at >= l.sent_at) {
                    latest = Some(slot.state);
                }
            }
        };
        // An ack for packets never sent (or from long ago) is ignored.
        let cum_index = self.index_of(ack.cum);
        if let Some(cum) = cum_index {
            for idx in self.base..cum {
                let slot = &mut self.slots[(idx - self.base) as usize];
                take(slot, idx);
            }
        }
        if self.cfg.scheme == Scheme::SelectiveRepeat {
            let mut hits = std::mem::take(&mut self.hits);
            let full = ack.ranges.len() >= MAX_ACK_RANGES;
            // The highest range, and the end of the highest of the others
            // (what a full ack covers below its gap of left-out ranges).
            let mut top: Option<(u64, u64)> = None;
            let mut covered = self.base;
            for &(s, e) in &ack.ranges {
                let (Some(s), Some(e)) = (self.index_of(s), self.index_of(e)) else {
                    continue;
                };
                hits.extend(self.unacked.range(s..e.max(s)));
                match top {
                    Some(t) if t >= (s, e) => covered = covered.max(e),
                    _ => {
                        if let Some((_, te)) = top {
                            covered = covered.max(te);
                        }
                        top = Some((s, e));
                    }
                }
            }
            // Only the newest acknowledgement says what may be judged: an
            // older one that comes late, listing fewer gaps, would open the
            // ranges a full one left out to loss detection.
            let reach = top.map(|(_, e)| e).max(cum_index);
            if let Some(reach) = reach.filter(|&r| r >= self.acked_top) {
                self.acked_top = reach;
                self.judge_below = if full && top.is_some() {
                    covered
                } else {
                    u64::MAX
                };
            }
            for &idx in &hits {
                self.unacked.remove(&idx);
                if let Some(slot) = self.slots.get_mut((idx - self.base) as usize) {
                    take(slot, idx);
                }
            }
            hits.clear();
            self.hits = hits;
        }
        if lied {
            self.failed = Some(ArqError::OptimisticAck);
            return;
        }
        self.release_held(highest);
        self.largest_acked_tx = largest_tx;
        // A resend loss detection made, proved unneeded, is reordering
        // too: one deep enough to be taken for loss before its packet came.
        if reordered || spurious > 0 {
            self.reordering.seen = true;
        }
        let srtt = self.rtt.srtt().unwrap_or(self.cfg.initial_rto);
        for _ in 0..spurious {
            self.reordering.spurious(now, srtt);
        }
        if newly > 0 {
            self.tlp_armed = true;
        }
        self.acked_in_slots += newly;
        self.queued_live -= acked_queued;
        let rtt_sample = newest_sample.map(|(_, rtt)| rtt);
        if let Some(rtt) = rtt_sample {
            self.rtt.sample(rtt);
            self.latest_rtt = Some(rtt);
        }
        let (newly_lost, lost_sent_at) = if self.cfg.scheme == Scheme::SelectiveRepeat {
            self.detect_lost(now)
        } else {
            (0, None)
        };
        // A sample whose packet was acknowledged too soon after it was
        // sent (see `plausible`) neither ends a round nor measures a rate.
        let sample = latest
            .map(|l| self.delivery.on_ack(now, newly, &l))
            .filter(|s| s.since_sent >= plausible);
        let before = self.base;
        while self.slots.front().is_some_and(|s| s.acked) {
            self.slots.pop_front();
            self.base += 1;
            self.acked_in_slots -= 1;
        }
        // Everything below the base is acknowledged; acknowledged packets
        // above it were taken out as they were.
        while self.unacked.first().is_some_and(|&i| i < self.base) {
            self.unacked.pop_first();
        }
        if self.next < self.base {
            self.next = self.base;
        }
        // The count only grows; an older acknowledgement overtaken by a
        // newer one reports less, which is no news.
        let dropped = ack.dropped.wrapping_sub(self.receiver_dropped);
        let receiver_dropped = if dropped <= u32::MAX / 2 {
            self.receiver_dropped = ack.dropped;
            u64::from(dropped)
        } else {
            0
        };
        let event = AckEvent {
            sample,
            newly_acked: newly,
            newly_lost,
            lost_sent_at,
            delivered: self.delivery.delivered(),
            in_flight: self.in_flight(),
            rtt: rtt_sample,
            receiver_dropped,
        };
        self.cc.on_ack(now, &event);
        if self.base != before {
            self.rtt.reset_backoff();
            // Fresh progress: restart the timer for the new oldest packet.
            self.gbn_deadline = (!self.slots.is_empty()).then(|| now + self.rtt.rto());
        }
    }

    /// How long a packet sent before the newest acknowledged one may stay
    /// unacknowledged before it is taken for lost: the larger of the
    /// smoothed and the latest RTT, and the reordering window on top (see
    /// [`Reordering`]), so jitter is not loss.
    fn loss_delay(&self) -> Duration {
        let rtt = match (self.rtt.srtt(), self.latest_rtt) {
            (Some(s), Some(l)) => s.max(l),
            (Some(s), None) => s,
            _ => self.cfg.initial_rto,
        };
        let srtt = self.rtt.srtt().unwrap_or(rtt);
        let window = self.reordering.window(rtt, self.cc.min_rtt(), srtt);
        (rtt + window).max(Duration::from_millis(1))
    }

    /// Selective Repeat: the oldest entry of the flight that is still
    /// out (sent, not acknowledged, not queued, not sent again since),
    /// dropping stale entries before it.
    fn oldest_out(&mut self) -> Option<(u64, u64, Instant)> {
        while let Some(&(tx, idx)) = self.flight.front() {
            let live = idx
                .checked_sub(self.base)
                .and_then(|i| self.slots.get(i as usize))
                .filter(|s| !s.acked && !s.queued && s.tx == tx);
            match live {
                Some(slot) => return Some((tx, idx, slot.state.sent_at)),
                None => {
                    self.flight.pop_front();
                }
            }
        }
        None
    }

    /// Queues the oldest packet out for resending (see `oldest_out`).
    fn queue_oldest(&mut self, idx: u64, by_loss: bool) {
        self.flight.pop_front();
        if let Some(slot) = self.slots.get_mut((idx - self.base) as usize) {
            slot.queued = true;
            slot.by_loss = by_loss;
            self.queued_live += 1;
            self.resend.push_back(idx);
        }
    }

    /// Selective Repeat: queues for resending every packet that the
    /// acknowledgements show lost (by packet or time threshold), and sets
    /// the timer for those that may be lost later. Returns how many, and
    /// when the most recently sent of them was sent.
    ///
    /// Packets are judged in sending order: if the oldest one out is not
    /// lost by either threshold, none sent after it is.
    fn detect_lost(&mut self, now: Instant) -> (u64, Option<Instant>) {
        self.loss_time = None;
        let Some(largest) = self.largest_acked_tx else {
            return (0, None);
        };
        let delay = self.loss_delay();
        let by_count = !self.reordering.seen;
        let mut lost = 0;
        let mut newest_sent = None;
        while let Some((tx, idx, sent_at)) = self.oldest_out() {
            if tx >= largest || idx >= self.judge_below {
                break;
            }
            if (by_count && largest - tx >= PACKET_THRESHOLD) || now >= sent_at + delay {
                self.queue_oldest(idx, true);
                lost += 1;
                newest_sent = Some(sent_at);
            } else {
                self.loss_time = Some(sent_at + delay);
                break;
            }
        }
        if lost > 0 {
            let srtt = self.rtt.srtt().unwrap_or(delay);
            self.reordering.on_loss(now, srtt);
        }
        (lost, newest_sent)
    }

    /// When a tail-loss probe is due (RFC 8985): two smoothed RTTs after
    /// the latest packet went, if new data was acknowledged since the last
    /// probe or timeout, nothing waits to be resent, and that is before
    /// the probe timeout.
    fn tlp_time(&self) -> Option<Instant> {
        if !self.tlp_armed || !self.resend.is_empty() {
            return None;
        }
        let srtt = self.rtt.srtt()?;
        let at = self.last_sent? + (srtt * 2).max(Duration::from_millis(2));
        (at < self.last_sent? + self.rtt.rto()).then_some(at)
    }

    /// Selective Repeat: the newest packet out, if any.
    fn newest_out(&self) -> Option<u64> {
        self.flight.iter().rev().find_map(|&(tx, idx)| {
            let slot = self.slots.get(idx.checked_sub(self.base)? as usize)?;
            (!slot.acked && !slot.queued && slot.tx == tx).then_some(idx)
        })
    }

    /// When the sender next needs [`Sender::on_timeout`] (or
    /// [`Sender::poll_transmit`], when pacing holds a packet back).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed.is_some() || self.is_done() {
            return None;
        }
        let idle = self.last_heard + self.cfg.idle_timeout;
        let rto = match self.cfg.scheme {
            Scheme::GoBackN => self.gbn_deadline,
            Scheme::SelectiveRepeat => {
                let base = self.base;
                let any_out = self.flight.iter().any(|&(tx, idx)| {
                    idx.checked_sub(base)
                        .and_then(|i| self.slots.get(i as usize))
                        .is_some_and(|slot| !slot.acked && !slot.queued && slot.tx == tx)
                });
                let probe = self
                    .last_sent
                    .filter(|_| any_out)
                    .map(|t| self.tlp_time().unwrap_or(t + self.rtt.rto()));
                match (probe, self.loss_time) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        };
        let pace = self
            .has_sendable()
            .then(|| self.pacer.next_token(self.cc.pacing_rate()));
        [Some(idle), rto, pace].into_iter().flatten().min()
    }

    /// Handles the timers due at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.failed.is_some() || self.is_done() {
            return;
        }
        if now >= self.last_heard + self.cfg.idle_timeout {
            self.failed = Some(ArqError::PeerSilent(self.cfg.idle_timeout));
            return;
        }
        match self.cfg.scheme {
            Scheme::GoBackN => {
                if self.gbn_deadline.is_some_and(|d| now >= d) {
                    // Go back: everything from the oldest unacked goes again.
                    self.next = self.base;
                    self.timeouts += 1;
                    self.last_timeout = Some(now);
                    self.cc.on_timeout(now);
                    self.rtt.back_off();
                    self.gbn_deadline = Some(now + self.rtt.rto());
                }
            }
            Scheme::SelectiveRepeat => {
                if self.loss_time.is_some_and(|t| now >= t) {
                    self.detect_lost(now);
                }
                // A tail-loss probe first: the newest packet out goes again,
                // so that its acknowledgement shows what else is missing
                // (the loss detection above then finds it) without the
                // timeout's cut. Not a timeout: the window stays.
                if self.tlp_time().is_some_and(|t| now >= t) {
                    self.tlp_armed = false;
                    if let Some(idx) = self.newest_out() {
                        if let Some(slot) = self.slots.get_mut((idx - self.base) as usize) {
                            slot.queued = true;
                            slot.by_loss = false;
                            self.queued_live += 1;
                            self.resend.push_front(idx);
                            self.probes = self.probes.max(1);
                            self.tail_probes += 1;
                        }
                    }
                    return;
                }
                // A probe timeout (RFC 9002): nothing sent for a timeout
                // with packets out, so acknowledgements have stopped
                // coming. Resend the oldest packets out, beyond the window
                // if need be. Their acknowledgement shows what else was
                // lost (everything sent before and still out), so one
                // timeout repairs a whole lost flight instead of one packet
                // per (doubling) timeout.
                let rto = self.rtt.rto();
                let due = self.last_sent.is_some_and(|t| now >= t + rto);
                if due && self.oldest_out().is_some() {
                    for _ in 0..PROBES {
                        let Some((_, idx, _)) = self.oldest_out() else {
                            break;
                        };
                        self.queue_oldest(idx, false);
                    }
                    self.probes = PROBES;
                    self.tlp_armed = false;
                    self.timeouts += 1;
                    self.last_timeout = Some(now);
                    self.cc.on_timeout(now);
                    self.rtt.back_off();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
