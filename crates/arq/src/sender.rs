//! The sending side.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::frame::Ack;
use crate::rtt::RttEstimator;
use crate::{ArqError, Config, Scheme};

/// A data packet to send now: the driver reads `len` bytes at `offset` and
/// sends them as `Frame::Data { seq, offset, .. }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Sequence number.
    pub seq: u32,
    /// Byte offset in the file.
    pub offset: u64,
    /// Bytes to send.
    pub len: u32,
    /// Whether this packet was sent before.
    pub retransmission: bool,
}

/// Packets sent after a lost one and acknowledged before it declare it lost
/// (RFC 9002's packet threshold): fewer would take reordering for loss.
pub const PACKET_THRESHOLD: u64 = 3;

#[derive(Debug, Clone)]
struct Slot {
    sent_at: Instant,
    /// Number of its latest transmission, counting every packet sent: loss
    /// is judged in sending order, so a retransmission is not taken for
    /// lost again because packets numbered after it were acked long ago.
    tx: u64,
    /// Sent more than once: no RTT sample from it (Karn).
    resent: bool,
    acked: bool,
    /// Selective Repeat: already queued for retransmission.
    queued: bool,
}

/// Sends the byte range `[start, total)` reliably. See the crate docs.
#[derive(Debug)]
pub struct Sender {
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
    /// The latest RTT sample.
    latest_rtt: Option<Duration>,
    /// Selective Repeat: when a packet sent before the newest acknowledged
    /// one has been out long enough to be declared lost by time.
    loss_time: Option<Instant>,
    /// Retransmission timeouts that fired.
    timeouts: u64,
    /// Congestion window, packets in flight (NewReno-style: slow start,
    /// then one packet a round trip; halved once per loss event).
    cwnd: f64,
    ssthresh: f64,
    /// Losses of packets sent before this transmission number belong to
    /// the loss event already answered.
    recovery_tx: u64,
    /// Acknowledged packets still in `slots` (behind an unacknowledged one).
    acked_in_slots: u64,
}

/// Congestion window at the start, packets (RFC 9002's 10 datagrams).
pub const INITIAL_CWND: f64 = 10.0;
/// The congestion window never goes below this, packets.
pub const MIN_CWND: f64 = 2.0;

impl Sender {
    /// A sender of bytes `[start, total)`, numbering packets from `isn`.
    pub fn new(cfg: Config, isn: u32, start: u64, total: u64, now: Instant) -> Self {
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
            rtt,
            last_heard: now,
            gbn_deadline: None,
            failed: None,
            sent_packets: 0,
            retransmissions: 0,
            next_tx: 0,
            largest_acked_tx: None,
            latest_rtt: None,
            loss_time: None,
            timeouts: 0,
            cwnd: INITIAL_CWND,
            ssthresh: f64::INFINITY,
            recovery_tx: 0,
            acked_in_slots: 0,
        }
    }

    /// The congestion window, packets.
    pub fn cwnd(&self) -> f64 {
        self.cwnd
    }

    /// Packets sent and neither acknowledged nor declared lost.
    fn in_flight(&self) -> u64 {
        self.slots.len() as u64 - self.acked_in_slots - self.resend.len() as u64
    }

    /// A loss (or a timeout) was found among packets sent at or after
    /// `recovery_tx`: a new loss event, answered once.
    fn on_congestion(&mut self, timeout: bool) {
        self.ssthresh = (self.cwnd / 2.0).max(MIN_CWND);
        self.cwnd = if timeout { MIN_CWND } else { self.ssthresh };
        self.recovery_tx = self.next_tx;
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

    /// The RTT estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The next packet to send now, if the window allows one.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.failed.is_some() || self.is_done() {
            return None;
        }
        if self.cfg.scheme == Scheme::SelectiveRepeat {
            while let Some(idx) = self.resend.pop_front() {
                let Some(slot) = idx
                    .checked_sub(self.base)
                    .and_then(|i| self.slots.get_mut(i as usize))
                else {
                    continue;
                };
                slot.queued = false;
                if slot.acked {
                    continue;
                }
                slot.sent_at = now;
                slot.resent = true;
                slot.tx = self.next_tx;
                self.next_tx += 1;
                self.sent_packets += 1;
                self.retransmissions += 1;
                return Some(self.transmit(idx, true));
            }
        }
        let window_end = self.base + self.cfg.window as u64;
        if self.next >= window_end || self.next >= self.packets {
            return None;
        }
        // The window is a cap; the congestion window decides within it.
        let room = match self.cfg.scheme {
            Scheme::SelectiveRepeat => self.in_flight(),
            Scheme::GoBackN => self.next - self.base,
        };
        if room as f64 >= self.cwnd.floor() {
            return None;
        }
        let idx = self.next;
        self.next += 1;
        let pos = (idx - self.base) as usize;
        let resent = pos < self.slots.len();
        if resent {
            // Go-Back-N going back over packets it sent before.
            let slot = &mut self.slots[pos];
            slot.sent_at = now;
            slot.resent = true;
            slot.tx = self.next_tx;
            self.retransmissions += 1;
        } else {
            self.slots.push_back(Slot {
                sent_at: now,
                tx: self.next_tx,
                resent: false,
                acked: false,
                queued: false,
            });
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

    /// Takes an acknowledgement.
    pub fn on_ack(&mut self, now: Instant, ack: &Ack) {
        if self.failed.is_some() {
            return;
        }
        self.last_heard = now;
        let mut newest_sample: Option<(u64, Duration)> = None;
        let mut largest_tx = self.largest_acked_tx;
        let mut newly = 0u64;
        let mut take = |slot: &mut Slot, idx: u64| {
            if !slot.acked {
                slot.acked = true;
                newly += 1;
                largest_tx = largest_tx.max(Some(slot.tx));
                if !slot.resent && newest_sample.is_none_or(|(i, _)| idx > i) {
                    newest_sample = Some((idx, now.saturating_duration_since(slot.sent_at)));
                }
            }
        };
        // An ack for packets never sent (or from long ago) is ignored.
        if let Some(cum) = self.index_of(ack.cum) {
            for idx in self.base..cum {
                let slot = &mut self.slots[(idx - self.base) as usize];
                take(slot, idx);
            }
        }
        if self.cfg.scheme == Scheme::SelectiveRepeat {
            for &(s, e) in &ack.ranges {
                let (Some(s), Some(e)) = (self.index_of(s), self.index_of(e)) else {
                    continue;
                };
                for idx in s..e.max(s) {
                    if let Some(slot) = self.slots.get_mut((idx - self.base) as usize) {
                        take(slot, idx);
                    }
                }
            }
        }
        self.largest_acked_tx = largest_tx;
        self.acked_in_slots += newly;
        for _ in 0..newly {
            if self.cwnd < self.ssthresh {
                self.cwnd += 1.0;
            } else {
                self.cwnd += 1.0 / self.cwnd;
            }
        }
        self.cwnd = self.cwnd.min(self.cfg.window as f64);
        if let Some((_, rtt)) = newest_sample {
            self.rtt.sample(rtt);
            self.latest_rtt = Some(rtt);
        }
        if self.cfg.scheme == Scheme::SelectiveRepeat {
            self.detect_lost(now);
        }
        let before = self.base;
        while self.slots.front().is_some_and(|s| s.acked) {
            self.slots.pop_front();
            self.base += 1;
            self.acked_in_slots -= 1;
        }
        if self.next < self.base {
            self.next = self.base;
        }
        if self.base != before {
            self.rtt.reset_backoff();
            // Fresh progress: restart the timer for the new oldest packet.
            self.gbn_deadline = (!self.slots.is_empty()).then(|| now + self.rtt.rto());
        }
    }

    /// How long a packet sent before the newest acknowledged one may stay
    /// unacknowledged before it is taken for lost: 9/8 of the larger of the
    /// smoothed and the latest RTT (RFC 9002), so jitter is not loss.
    fn loss_delay(&self) -> Duration {
        let rtt = match (self.rtt.srtt(), self.latest_rtt) {
            (Some(s), Some(l)) => s.max(l),
            (Some(s), None) => s,
            _ => self.cfg.initial_rto,
        };
        (rtt * 9 / 8).max(Duration::from_millis(1))
    }

    /// Selective Repeat: queues for resending every packet that the
    /// acknowledgements show lost (by packet or time threshold), and sets
    /// the timer for those that may be lost later.
    fn detect_lost(&mut self, now: Instant) {
        self.loss_time = None;
        let Some(largest) = self.largest_acked_tx else {
            return;
        };
        let delay = self.loss_delay();
        let mut new_event = false;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.acked || slot.queued || slot.tx >= largest {
                continue;
            }
            if largest - slot.tx >= PACKET_THRESHOLD || now >= slot.sent_at + delay {
                slot.queued = true;
                new_event |= slot.tx >= self.recovery_tx;
                self.resend.push_back(self.base + i as u64);
            } else {
                let at = slot.sent_at + delay;
                self.loss_time = Some(self.loss_time.map_or(at, |t| t.min(at)));
            }
        }
        if new_event {
            self.on_congestion(false);
        }
    }

    /// When the sender next needs [`Sender::on_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed.is_some() || self.is_done() {
            return None;
        }
        let idle = self.last_heard + self.cfg.idle_timeout;
        let rto = match self.cfg.scheme {
            Scheme::GoBackN => self.gbn_deadline,
            Scheme::SelectiveRepeat => {
                let rto = self.rtt.rto();
                let oldest = self
                    .slots
                    .iter()
                    .filter(|s| !s.acked && !s.queued)
                    .map(|s| s.sent_at + rto)
                    .min();
                match (oldest, self.loss_time) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        };
        Some(rto.map_or(idle, |t| t.min(idle)))
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
                    self.on_congestion(true);
                    self.rtt.back_off();
                    self.gbn_deadline = Some(now + self.rtt.rto());
                }
            }
            Scheme::SelectiveRepeat => {
                if self.loss_time.is_some_and(|t| now >= t) {
                    self.detect_lost(now);
                }
                let rto = self.rtt.rto();
                let mut any = false;
                for (i, slot) in self.slots.iter_mut().enumerate() {
                    if !slot.acked && !slot.queued && now >= slot.sent_at + rto {
                        slot.queued = true;
                        self.resend.push_back(self.base + i as u64);
                        any = true;
                    }
                }
                if any {
                    self.timeouts += 1;
                    self.on_congestion(true);
                    self.rtt.back_off();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Selective Repeat sender with ten packets out at `t0` and an RTT of
    /// 100 ms measured on an earlier packet.
    fn ten_out(t0: Instant) -> Sender {
        let mut cfg = Config::new(Scheme::SelectiveRepeat, 64);
        cfg.mss = 100;
        let mut s = Sender::new(cfg, 0, 0, 100 * 11, t0);
        let first = s.poll_transmit(t0).expect("a packet");
        assert_eq!(first.seq, 0);
        let t1 = t0 + Duration::from_millis(100);
        s.on_ack(
            t1,
            &Ack {
                cum: 1,
                ranges: vec![],
            },
        );
        for _ in 0..10 {
            assert!(s.poll_transmit(t1).is_some());
        }
        s
    }

    fn sack(cum: u32, ranges: &[(u32, u32)]) -> Ack {
        Ack {
            cum,
            ranges: ranges.to_vec(),
        }
    }

    #[test]
    fn a_packet_overtaken_by_two_is_reordered_not_lost() {
        let t0 = Instant::now();
        let mut s = ten_out(t0);
        let t = t0 + Duration::from_millis(150);
        // 1 is missing, 2 and 3 arrived.
        s.on_ack(t, &sack(1, &[(2, 4)]));
        assert_eq!(s.poll_transmit(t), None, "two later packets are not proof");
        // A third later packet is.
        s.on_ack(t, &sack(1, &[(2, 5)]));
        let again = s.poll_transmit(t).expect("packet 1 resent");
        assert_eq!((again.seq, again.retransmission), (1, true));
        assert_eq!(s.timeouts(), 0);
    }

    #[test]
    fn one_loss_event_halves_the_congestion_window_once() {
        let t0 = Instant::now();
        let mut s = ten_out(t0);
        // Slow start: 10, plus one for the first packet acknowledged.
        assert_eq!(s.cwnd(), INITIAL_CWND + 1.0);
        let t = t0 + Duration::from_millis(150);
        // Packets 1 and 2 lost, 3..6 acknowledged: one loss event.
        s.on_ack(t, &sack(1, &[(3, 7)]));
        let after = s.cwnd();
        assert_eq!(after, (INITIAL_CWND + 1.0 + 4.0) / 2.0);
        s.on_ack(t, &sack(1, &[(3, 10)]));
        assert!(s.cwnd() >= after, "the same event does not halve it again");
        // Both lost packets go again, and the window limits new ones.
        let resent: Vec<u32> = std::iter::from_fn(|| s.poll_transmit(t))
            .filter(|t| t.retransmission)
            .map(|t| t.seq)
            .collect();
        assert_eq!(resent, [1, 2]);
    }

    #[test]
    fn a_packet_missing_for_nine_eighths_of_a_round_trip_is_lost() {
        let t0 = Instant::now();
        let mut s = ten_out(t0);
        let t = t0 + Duration::from_millis(150);
        s.on_ack(t, &sack(1, &[(2, 4)]));
        assert_eq!(s.poll_transmit(t), None);
        // Sent at 100 ms; lost by time 9/8 of the RTT later (the RTT is
        // about 94 ms now: 100 ms, then a 50 ms sample from packets 2 and 3).
        let due = s.poll_timeout().expect("a loss timer");
        let rtt_ms = 100.0 * 7.0 / 8.0 + 50.0 / 8.0;
        let want =
            t0 + Duration::from_millis(100) + Duration::from_secs_f64(rtt_ms * 9.0 / 8.0 / 1000.0);
        assert!(
            due.max(want) - due.min(want) < Duration::from_micros(10),
            "{due:?} vs {want:?}"
        );
        s.on_timeout(due - Duration::from_micros(10));
        assert_eq!(s.poll_transmit(due), None, "not before its time");
        s.on_timeout(due);
        let again = s.poll_transmit(due).expect("packet 1 resent");
        assert_eq!(again.seq, 1);
        assert_eq!(s.timeouts(), 0, "found lost by time, not by the RTO");
        // Resent, it is judged again from its new sending only.
        s.on_ack(due, &sack(1, &[(2, 11)]));
        assert_eq!(s.poll_transmit(due), None);
    }
}
