//! The receiving side: [`Receiver`] owns what has arrived of one transfer
//! (in order, and ahead of a gap for Selective Repeat), judges each data
//! packet, and builds the acknowledgements.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::frame::{Ack, MAX_ACK_RANGES};
use crate::{ArqError, Config, Scheme};

/// What to do with an arriving data packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New data: write the payload at `offset` in the file.
    Write {
        /// Where the packet's bytes go.
        offset: u64,
    },
    /// Already have it (a duplicate or a retransmission): ignore the payload.
    Duplicate,
    /// Not acceptable now (Go-Back-N: out of order; beyond the window): drop.
    OutOfWindow,
    /// Its sequence number and length do not agree: drop.
    Invalid,
}

/// Receives the byte range `[start, total)`. See the crate docs.
#[derive(Debug)]
pub struct Receiver {
    cfg: Config,
    isn: u32,
    start: u64,
    total: u64,
    packets: u64,
    /// Index of the next packet expected in order.
    base: u64,
    /// Selective Repeat: the packets that arrived beyond `base`, as
    /// disjoint ranges `start -> end` (end exclusive, never touching), so
    /// that an arrival and an acknowledgement cost what the gaps cost, not
    /// the window.
    ahead: BTreeMap<u64, u64>,
    need_ack: bool,
    last_heard: Instant,
    failed: Option<ArqError>,
}

impl Receiver {
    /// A receiver of bytes `[start, total)` whose packets are numbered from
    /// `isn`.
    pub fn new(cfg: Config, isn: u32, start: u64, total: u64, now: Instant) -> Self {
        let start = start.min(total);
        let packets = cfg.packets_for(total - start);
        Receiver {
            cfg,
            isn,
            start,
            total,
            packets,
            base: 0,
            ahead: BTreeMap::new(),
            need_ack: false,
            last_heard: now,
            failed: None,
        }
    }

    fn seq_of(&self, idx: u64) -> u32 {
        self.isn.wrapping_add(idx as u32)
    }

    /// Packets the range is cut into: the numbers `isn..isn + packets`
    /// are this receiver's.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// True once every byte arrived.
    pub fn is_complete(&self) -> bool {
        self.base >= self.packets
    }

    /// Bytes received without a gap from the start of the file: what a
    /// resumed transfer need not fetch again.
    pub fn contiguous_bytes(&self) -> u64 {
        (self.start + self.base * self.cfg.mss as u64).min(self.total)
    }

    /// Why the transfer failed, if it did.
    pub fn failure(&self) -> Option<&ArqError> {
        self.failed.as_ref()
    }

    /// Judges a data packet of `len` payload bytes. On [`Verdict::Write`]
    /// the caller must write the payload at its offset before anything
    /// else.
    pub fn on_data(&mut self, now: Instant, seq: u32, len: usize) -> Verdict {
        self.last_heard = now;
        // Every data packet is answered, duplicates too: their ack may be
        // what the sender missed.
        self.need_ack = true;
        let diff = seq.wrapping_sub(self.seq_of(self.base));
        if diff > u32::MAX / 2 {
            // Behind the window: delivered long ago.
            return Verdict::Duplicate;
        }
        let idx = self.base + diff as u64;
        if idx >= self.packets {
            return Verdict::Invalid;
        }
        let offset = self.start + idx * self.cfg.mss as u64;
        let want_len = (self.total - offset).min(self.cfg.mss as u64) as usize;
        if len != want_len {
            return Verdict::Invalid;
        }
        let window = match self.cfg.scheme {
            Scheme::GoBackN => 1,
            Scheme::SelectiveRepeat => self.cfg.window as u64,
        };
        if idx >= self.base + window {
            return Verdict::OutOfWindow;
        }
        if idx == self.base {
            self.base += 1;
            // Slide over what already arrived out of order.
            if let Some(end) = self.ahead.remove(&self.base) {
                self.base = end;
            }
            return Verdict::Write { offset };
        }
        // The range starting at or before `idx`, if any.
        let before = self.ahead.range(..=idx).next_back().map(|(&s, &e)| (s, e));
        if before.is_some_and(|(_, e)| idx < e) {
            return Verdict::Duplicate;
        }
        let mut start = idx;
        let mut end = idx + 1;
        if let Some((s, e)) = before {
            if e == idx {
                start = s;
            }
        }
        if let Some(next_end) = self.ahead.remove(&end) {
            end = next_end;
        }
        self.ahead.insert(start, end);
        Verdict::Write { offset }
    }

    /// Makes the next [`Receiver::poll_ack`] give the acknowledgement
    /// again, though nothing arrived: for a sender that has not heard
    /// from this end for a while (its acknowledgements may have been
    /// lost, or may go where this end no longer is).
    pub fn ack_again(&mut self) {
        self.need_ack = true;
    }

    /// The acknowledgement to send, if one is due.
    pub fn poll_ack(&mut self) -> Option<Ack> {
        if !std::mem::take(&mut self.need_ack) {
            return None;
        }
        // When the gaps are more than an ack can list, the oldest ones
        // and the newest range: the sender repairs the oldest holes first,
        // learns how far the flight got, and judges nothing in between
        // (which it knows this ack left out).
        let seq = |(&s, &e): (&u64, &u64)| (self.seq_of(s), self.seq_of(e));
        let mut ranges: Vec<(u32, u32)> = self
            .ahead
            .iter()
            .take(MAX_ACK_RANGES - 1)
            .map(seq)
            .collect();
        if self.ahead.len() >= MAX_ACK_RANGES {
            ranges.extend(self.ahead.iter().next_back().map(seq));
        }
        Some(Ack {
            cum: self.seq_of(self.base),
            ranges,
            // The driver, which owns the socket, fills this in.
            dropped: 0,
        })
    }

    /// When the receiver next needs [`Receiver::on_timeout`] (its liveness
    /// check), unless complete.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.is_complete() && self.failed.is_none())
            .then(|| self.last_heard + self.cfg.idle_timeout)
    }

    /// Gives up if the sender has been silent for the idle timeout.
    pub fn on_timeout(&mut self, now: Instant) {
        if !self.is_complete() && now >= self.last_heard + self.cfg.idle_timeout {
            self.failed = Some(ArqError::PeerSilent(self.cfg.idle_timeout));
        }
    }
}
