//! The ARQ: a `Sender` and a `Receiver` of one byte range, joined by a
//! link the input controls (what is delivered, in which order, copied or
//! lost, and when time passes), with forged data packets and forged
//! acknowledgements mixed in. Settings (scheme, window, packet size,
//! range, first sequence number, controller, the check against
//! optimistic acknowledgements) come from the input too.
//!
//! Checked, as the crate documents its two ends:
//! - the sender asks for packets inside the range, each of the packet
//!   size (the last may be shorter), numbered from `isn`;
//! - the receiver writes each packet of the range once, at its place,
//!   only with the length it must have, and only what the sender sent
//!   (unless data was forged); Go-Back-N writes in order; its count of
//!   contiguous bytes is exactly what was written without a gap;
//! - the sender's acknowledged bytes only grow, and, while no
//!   acknowledgement was forged, never pass what the receiver has; it
//!   never takes an honest receiver for a liar; when it is done, the
//!   receiver is complete;
//! - with nothing forged and neither end failed, a perfect link then
//!   finishes the transfer.

#![no_main]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use arbitrary::{Result, Unstructured};
use chatdrop_arq::congestion::{Controller, Cubic, Model};
use chatdrop_arq::{Ack, ArqError, Config, Receiver, Scheme, Sender, Transmit, Verdict};
use chatdrop_fuzz::{one_in, pick, trace};
use libfuzzer_sys::fuzz_target;

/// Most steps taken from one input.
const MAX_STEPS: usize = 2_000;
/// The one-way delay of the perfect link the target ends with: short, but
/// not zero (over a link without delay a delivery-rate sample has no
/// interval to measure over, and the congestion controller learns
/// nothing).
const ONE_WAY: Duration = Duration::from_millis(5);
/// Most packets asked for in one go: more than any window here allows.
const MAX_BURST: usize = 4_096;

/// Most ranges in an acknowledgement that decodes (`frame.rs`).
const MAX_ACK_RANGES: usize = 128;

/// A sequence number near those of the range's `packets` packets from
/// `isn`, mostly, or any.
fn near(u: &mut Unstructured, packets: u64, isn: u32) -> Result<u32> {
    Ok(if !one_in(u, 8)? {
        isn.wrapping_add(u.int_in_range(0..=packets as u32 + 2)?)
    } else {
        u.arbitrary()?
    })
}

/// Takes the `i`th of `queue` off it, or a copy of it, if there is one.
fn take<T: Clone>(queue: &mut Vec<T>, i: usize, copy: bool) -> Option<T> {
    match queue.get(i) {
        Some(x) if copy => Some(x.clone()),
        Some(_) => Some(queue.remove(i)),
        None => None,
    }
}

struct Sim<C: Controller> {
    cfg: Config,
    isn: u32,
    start: u64,
    total: u64,
    packets: u64,
    t0: Instant,
    now: Instant,
    tx: Sender<C>,
    rx: Receiver,
    /// Data packets on the way: (seq, len).
    to_rx: Vec<(u32, usize)>,
    acks: Vec<Ack>,
    /// The offset of every sequence number the sender sent.
    sent: HashMap<u32, u64>,
    /// Offsets the receiver wrote.
    written: HashSet<u64>,
    acked: u64,
    forged_data: bool,
    forged_ack: bool,
}

impl<C: Controller> Sim<C> {
    fn mss(&self) -> u64 {
        u64::from(self.cfg.mss)
    }

    /// The place of `seq` in the range, if it numbers a packet of it.
    fn place(&self, seq: u32) -> Option<(u64, usize)> {
        let idx = u64::from(seq.wrapping_sub(self.isn));
        (idx < self.packets).then(|| {
            let offset = self.start + idx * self.mss();
            (offset, (self.total - offset).min(self.mss()) as usize)
        })
    }

    /// The contiguous bytes of what was written.
    fn contiguous(&self) -> u64 {
        let mut at = self.start;
        while at < self.total && self.written.contains(&at) {
            at = (at + self.mss()).min(self.total);
        }
        at
    }

    fn check_transmit(&mut self, t: Transmit) {
        let mss = self.mss();
        assert!(
            t.offset >= self.start && t.offset < self.total,
            "{t:?} outside the range"
        );
        assert_eq!(
            (t.offset - self.start) % mss,
            0,
            "{t:?} not at a packet's place"
        );
        let len = (self.total - t.offset).min(mss);
        assert_eq!(u64::from(t.len), len, "{t:?} of the wrong length");
        let idx = (t.offset - self.start) / mss;
        assert_eq!(
            t.seq,
            self.isn.wrapping_add(idx as u32),
            "{t:?} misnumbered"
        );
        self.sent.insert(t.seq, t.offset);
    }

    fn send(&mut self) -> bool {
        let mut any = false;
        for _ in 0..MAX_BURST {
            let Some(t) = self.tx.poll_transmit(self.now) else {
                return any;
            };
            let rate = self.tx.controller().pacing_rate();
            trace!("{} ms: sent {t:?}, pacing {rate:.3}/s", self.ms());
            self.check_transmit(t);
            self.to_rx.push((t.seq, t.len as usize));
            any = true;
        }
        panic!("the sender kept sending beyond any window");
    }

    fn deliver(&mut self, seq: u32, len: usize) {
        let before = self.rx.contiguous_bytes();
        let verdict = self.rx.on_data(self.now, seq, len);
        trace!("{} ms: data {seq} of {len} bytes: {verdict:?}", self.ms());
        let place = self.place(seq);
        match verdict {
            Verdict::Write { offset } => {
                assert_eq!(
                    place,
                    Some((offset, len)),
                    "wrote {seq} of {len} bytes at {offset}"
                );
                assert!(self.written.insert(offset), "wrote {offset} twice");
                if !self.forged_data {
                    assert_eq!(
                        self.sent.get(&seq),
                        Some(&offset),
                        "wrote {seq}, never sent"
                    );
                }
                if self.cfg.scheme == Scheme::GoBackN {
                    assert_eq!(offset, before, "Go-Back-N wrote out of order");
                }
            }
            Verdict::Duplicate => {
                if let Some((offset, _)) = place {
                    assert!(
                        self.written.contains(&offset),
                        "{seq} taken for a copy, never written"
                    );
                }
            }
            Verdict::OutOfWindow => {
                let (offset, want) = place.expect("out of window, yet outside the range");
                assert_eq!(want, len, "a packet of the wrong length is invalid");
                assert!(
                    !self.written.contains(&offset),
                    "a written packet is a copy"
                );
            }
            Verdict::Invalid => {
                assert!(place.is_none_or(|(_, want)| want != len), "{seq} refused");
            }
        }
        let after = self.rx.contiguous_bytes();
        assert!(after >= before && after <= self.total);
        assert_eq!(after, self.contiguous(), "contiguous bytes");
    }

    fn take_ack(&mut self, ack: &Ack) {
        trace!("{} ms: {ack:?}", self.ms());
        self.tx.on_ack(self.now, ack);
        self.check_sender();
    }

    fn check_sender(&mut self) {
        let acked = self.tx.acked_bytes();
        assert!(acked >= self.acked, "acknowledged bytes went back");
        assert!(acked <= self.total);
        self.acked = acked;
        let (sent, resent) = self.tx.stats();
        assert!(resent <= sent);
        if !self.forged_ack {
            assert!(
                acked <= self.rx.contiguous_bytes(),
                "the sender counts {acked} bytes acknowledged, the receiver has {}",
                self.rx.contiguous_bytes()
            );
            if !self.forged_data {
                assert_ne!(
                    self.tx.failure(),
                    Some(&ArqError::OptimisticAck),
                    "an honest receiver taken for a liar"
                );
            }
            if self.tx.is_done() {
                assert!(
                    self.rx.is_complete(),
                    "the sender is done before the receiver"
                );
            }
        }
    }

    fn timers(&mut self) {
        if self.tx.poll_timeout().is_some_and(|t| t <= self.now) {
            self.tx.on_timeout(self.now);
        }
        if self.rx.poll_timeout().is_some_and(|t| t <= self.now) {
            self.rx.on_timeout(self.now);
        }
        self.check_sender();
    }

    /// Milliseconds since the start, for traces.
    fn ms(&self) -> u128 {
        (self.now - self.t0).as_millis()
    }

    fn step(&mut self, u: &mut Unstructured) -> Result<()> {
        let op = u.int_in_range(0..=9)?;
        trace!(
            "{} ms: op {op}; acked {}, contiguous {}; pacing {:.3}/s, window {}; timers {:?} {:?}",
            self.ms(),
            self.tx.acked_bytes(),
            self.rx.contiguous_bytes(),
            self.tx.controller().pacing_rate(),
            self.tx.controller().cwnd(),
            self.tx.poll_timeout().map(|t| (t - self.t0).as_millis()),
            self.rx.poll_timeout().map(|t| (t - self.t0).as_millis()),
        );
        match op {
            0 => {
                self.send();
            }
            1 => {
                let (i, copy) = (pick(u, self.to_rx.len())?, one_in(u, 8)?);
                if let Some((seq, len)) = take(&mut self.to_rx, i, copy) {
                    self.deliver(seq, len);
                }
            }
            2 => self.acks.extend(self.rx.poll_ack()),
            3 => {
                let (i, copy) = (pick(u, self.acks.len())?, one_in(u, 8)?);
                if let Some(ack) = take(&mut self.acks, i, copy) {
                    self.take_ack(&ack);
                }
            }
            4 => {
                let i = pick(u, self.to_rx.len())?;
                take(&mut self.to_rx, i, false);
            }
            5 => {
                let i = pick(u, self.acks.len())?;
                take(&mut self.acks, i, false);
            }
            6 => {
                self.now += Duration::from_millis(u.int_in_range(0..=3_000)?);
                self.timers();
            }
            7 => {
                let next = [self.tx.poll_timeout(), self.rx.poll_timeout()];
                if let Some(t) = next.into_iter().flatten().min() {
                    self.now = self.now.max(t);
                }
                self.timers();
            }
            8 => {
                self.forged_data = true;
                let seq = if u.arbitrary()? {
                    self.isn
                        .wrapping_add(u.int_in_range(0..=self.packets as u32 + 2)?)
                } else {
                    u.arbitrary()?
                };
                let len = if u.arbitrary()? {
                    self.place(seq).map_or(0, |(_, len)| len)
                } else {
                    u.int_in_range(0..=2 * self.cfg.mss as usize)?
                };
                self.deliver(seq, len);
            }
            9 => {
                self.forged_ack = true;
                let cum = near(u, self.packets, self.isn)?;
                let n = u.int_in_range(0..=MAX_ACK_RANGES)?;
                let mut ranges = Vec::with_capacity(n);
                for _ in 0..n {
                    ranges.push((
                        near(u, self.packets, self.isn)?,
                        near(u, self.packets, self.isn)?,
                    ));
                }
                let ack = Ack {
                    cum,
                    ranges,
                    dropped: u.arbitrary()?,
                };
                self.take_ack(&ack);
            }
            _ => {}
        }
        Ok(())
    }

    /// A perfect link from here on: the transfer must end. Except in its
    /// first idle timeout, in which either end may still fail for what
    /// happened before (a peer silent for most of one); after that, on a
    /// perfect link, no silence lasts that long.
    fn finish(&mut self) {
        if self.forged_ack || self.forged_data {
            return;
        }
        if self.tx.failure().is_some() || self.rx.failure().is_some() {
            return;
        }
        trace!("{} ms: a perfect link from here", self.ms());
        let grace = self.now + self.cfg.idle_timeout;
        let give_up = self.now + Duration::from_secs(600);
        for _ in 0..200_000 {
            if self.tx.is_done() {
                assert!(self.rx.is_complete());
                return;
            }
            let sent = self.send();
            if sent || !self.to_rx.is_empty() || !self.acks.is_empty() {
                // Everything on the way arrives, a one-way delay later.
                self.now += ONE_WAY;
                self.timers();
                for (seq, len) in std::mem::take(&mut self.to_rx) {
                    self.deliver(seq, len);
                }
                self.acks.extend(self.rx.poll_ack());
                self.now += ONE_WAY;
                self.timers();
                for ack in std::mem::take(&mut self.acks) {
                    self.take_ack(&ack);
                }
            } else if !self.tx.is_done() {
                let next = [self.tx.poll_timeout(), self.rx.poll_timeout()];
                let Some(t) = next.into_iter().flatten().min() else {
                    panic!("the transfer stalled with no timer left");
                };
                self.now = self.now.max(t);
                self.timers();
            }
            assert!(
                self.now < give_up,
                "the transfer did not end on a perfect link"
            );
            if let Some(e) = self.tx.failure().or(self.rx.failure()) {
                assert!(self.now <= grace, "an end failed on a perfect link: {e}");
                return;
            }
        }
        panic!("the transfer did not end on a perfect link");
    }
}

fn run<C: Controller>(
    u: &mut Unstructured,
    cfg: Config,
    range: (u32, u64, u64),
    tx: Sender<C>,
) -> Result<()> {
    let (isn, start, total) = range;
    let now = Instant::now();
    let rx = Receiver::new(cfg.clone(), isn, start, total, now);
    let start = start.min(total);
    let mut sim = Sim {
        packets: cfg.packets_for(total - start),
        cfg,
        isn,
        start,
        total,
        t0: now,
        now,
        tx,
        rx,
        to_rx: Vec::new(),
        acks: Vec::new(),
        sent: HashMap::new(),
        written: HashSet::new(),
        acked: start,
        forged_data: false,
        forged_ack: false,
    };
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        sim.step(u)?;
    }
    sim.finish();
    Ok(())
}

fn setup(u: &mut Unstructured) -> Result<()> {
    let scheme = if u.arbitrary()? {
        Scheme::SelectiveRepeat
    } else {
        Scheme::GoBackN
    };
    let mut cfg = Config::new(scheme, u.int_in_range(1..=64)?);
    cfg.mss = u.int_in_range(1..=1_500)?;
    let total = u.int_in_range(0..=u64::from(cfg.mss) * 300)?;
    let start = u.int_in_range(0..=total + u64::from(cfg.mss))?;
    let isn: u32 = u.arbitrary()?;
    let now = Instant::now();
    let range = (isn, start, total);
    trace!("{cfg:?}, isn {isn}, bytes {start}..{total}");
    if u.arbitrary()? {
        let mut tx = Sender::new(cfg.clone(), isn, start, total, now);
        if u.arbitrary()? {
            tx.check_acks(u.arbitrary()?);
        }
        run::<Model>(u, cfg, range, tx)
    } else {
        let cc = Cubic::new(cfg.window);
        let tx = Sender::with_controller(cfg.clone(), isn, start, total, cc, now);
        run::<Cubic>(u, cfg, range, tx)
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = setup(&mut Unstructured::new(data));
});
