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

#[derive(Debug, Clone)]
struct Slot {
    sent_at: Instant,
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
}

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
        }
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
                self.sent_packets += 1;
                self.retransmissions += 1;
                return Some(self.transmit(idx, true));
            }
        }
        let window_end = self.base + self.cfg.window as u64;
        if self.next >= window_end || self.next >= self.packets {
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
            self.retransmissions += 1;
        } else {
            self.slots.push_back(Slot {
                sent_at: now,
                resent: false,
                acked: false,
                queued: false,
            });
        }
        if self.gbn_deadline.is_none() {
            self.gbn_deadline = Some(now + self.rtt.rto());
        }
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
        let mut take = |slot: &mut Slot, idx: u64| {
            if !slot.acked {
                slot.acked = true;
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
        if let Some((_, rtt)) = newest_sample {
            self.rtt.sample(rtt);
        }
        let before = self.base;
        while self.slots.front().is_some_and(|s| s.acked) {
            self.slots.pop_front();
            self.base += 1;
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
                self.slots
                    .iter()
                    .filter(|s| !s.acked && !s.queued)
                    .map(|s| s.sent_at + rto)
                    .min()
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
                    self.rtt.back_off();
                    self.gbn_deadline = Some(now + self.rtt.rto());
                }
            }
            Scheme::SelectiveRepeat => {
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
                    self.rtt.back_off();
                }
            }
        }
    }
}
