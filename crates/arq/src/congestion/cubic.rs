//! TCP CUBIC (RFC 9438) as a [`Controller`]: the loss-based window most
//! TCP flows a transfer meets are sent with.
//!
//! This module owns the CUBIC window: its growth along a cubic curve in the
//! time since the last cut, its Reno-friendly floor, its cuts on loss and
//! its fall to one packet on a timeout. It is here so that the simulated
//! tests can run the real sender as the loss-based flow a chatdrop
//! transfer shares a bottleneck with; chatdrop sends with
//! [`Model`](super::Model).
//!
//! Windows are in packets (the RFC's segments: one packet is one segment)
//! and times in seconds, as in the RFC's equations. Where the RFC leaves a
//! choice:
//!
//! - Slow start is RFC 5681's (one packet more per packet acknowledged),
//!   not HyStart++; §4.10 allows either.
//! - The slow-start threshold is cut from the window, not from the flight;
//!   §4.6 allows it where the window does not grow while the flight is
//!   short of it, and here it does not grow on acknowledgements the sender
//!   marks as sent short of data (§5.8).
//! - One cut per loss episode, as RFC 9002 (§7.3.2) has it: a loss of a
//!   packet sent before the last cut is that cut's, and the window does not
//!   grow until a packet sent after it is acknowledged.
//! - A spurious cut is not undone (§4.9): the sender cannot tell one.
//! - No pacing. The RFC does not pace, and Linux paces a CUBIC flow only
//!   under the `fq` queueing discipline: elsewhere acknowledgements clock
//!   it, and they clock this one. The pacing rate is one at which the
//!   sender's pacer never holds a packet back for longer than a
//!   microsecond.

use std::time::{Duration, Instant};

use super::{AckEvent, Controller, INITIAL_CWND};

/// C: how fast the window moves away from `W_max`, packets a second cubed
/// (§4.1.1: 0.4).
const C: f64 = 0.4;
/// β_cubic: what a cut leaves of the window (§4.1.1: 0.7).
const BETA: f64 = 0.7;
/// α_cubic: how fast the Reno-friendly estimate grows, packets a round
/// trip, so that with cuts to β_cubic it averages what Reno's window does
/// with its cuts to half (§4.1.1, §4.3: 3(1 - β)/(1 + β)).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);
/// The smallest window after a cut, packets (§4.6: at least two
/// segments).
const MIN_WINDOW: f64 = 2.0;
/// The window after a retransmission timeout, packets: RFC 5681's loss
/// window (§3.1), which §4.8 keeps.
const LOSS_WINDOW: f64 = 1.0;
/// The concave and convex regions aim at most this many windows ahead
/// (§4.2, Figure 3).
const MAX_TARGET: f64 = 1.5;
/// Packets a second: a pacing rate the window always binds first (the
/// pacer's bucket of at most 256 packets refills in a quarter of a
/// microsecond at it).
const UNPACED: f64 = 1e9;

/// TCP CUBIC's window (RFC 9438). See the module docs.
#[derive(Debug, Clone)]
pub struct Cubic {
    /// The configured window cap, packets.
    cap: f64,
    /// Packets allowed in flight; fractional, so that growth by a fraction
    /// of a packet per acknowledgement adds up.
    cwnd: f64,
    /// Slow start below it; infinite until the first cut.
    ssthresh: f64,
    /// `W_max`: where the cubic curve levels off, the window before the
    /// last cut (less after fast convergence, §4.7).
    w_max: f64,
    /// `cwnd_prior`: the window before the last cut. The Reno-friendly
    /// estimate grows at Reno's pace once it is back there (§4.3).
    cwnd_prior: f64,
    /// The congestion-avoidance stage under way, once begun.
    epoch: Option<Epoch>,
    /// When the last cut (or timeout) came: losses of packets sent before
    /// it are its own, and the window does not grow until a packet sent
    /// after it is acknowledged.
    recovery_start: Option<Instant>,
    /// A timeout fired and nothing sent after it has been acknowledged: a
    /// second timeout keeps the slow-start threshold the first one set.
    timed_out: bool,
    /// The smoothed RTT (RFC 6298's weights): the RTT of §4.2's target.
    srtt: Option<Duration>,
    min_rtt: Option<Duration>,
}

/// One congestion-avoidance stage (§4.1.2's variables that start with it).
#[derive(Debug, Clone, Copy)]
struct Epoch {
    /// `t_epoch`: when it began.
    start: Instant,
    /// `K`, seconds: when the curve is back at `W_max` (§4.2, Figure 2).
    k: f64,
    /// `W_est`: the window Reno would have (§4.3, Figure 4).
    w_est: f64,
}

impl Cubic {
    /// CUBIC for a flow allowed at most `cap` packets in flight (the
    /// configured window), in slow start from RFC 9002's initial window.
    pub fn new(cap: u32) -> Self {
        let cap = f64::from(cap.max(1));
        Cubic {
            cap,
            cwnd: (INITIAL_CWND as f64).min(cap),
            ssthresh: f64::INFINITY,
            w_max: 0.0,
            cwnd_prior: 0.0,
            epoch: None,
            recovery_start: None,
            timed_out: false,
            srtt: None,
            min_rtt: None,
        }
    }

    /// `W_cubic(t) = C (t - K)^3 + W_max`, `t` seconds into the stage: the
    /// window's curve, concave up to `W_max` and convex beyond (§4.2,
    /// Figure 1).
    fn w_cubic(&self, k: f64, t: f64) -> f64 {
        C * (t - k).powi(3) + self.w_max
    }

    /// `K = cubic_root((W_max - cwnd_epoch) / C)`: how long the curve takes
    /// from the window a stage begins with back to `W_max` (§4.2,
    /// Figure 2).
    fn k(&self, cwnd_epoch: f64) -> f64 {
        ((self.w_max - cwnd_epoch) / C).cbrt()
    }

    /// Begins a congestion-avoidance stage at `now` with the window as it
    /// is (`cwnd_epoch`), and `W_est` there (§4.3). With no cut to climb
    /// back to (after a timeout, §4.8), `W_max` is that window and `K` is
    /// 0.
    fn start_epoch(&mut self, now: Instant) -> Epoch {
        self.w_max = self.w_max.max(self.cwnd);
        Epoch {
            start: now,
            k: self.k(self.cwnd),
            w_est: self.cwnd,
        }
    }

    /// `W_est = W_est + α_cubic · segments_acked / cwnd` for `acked`
    /// packets (§4.3, Figure 4): Reno's window, grown from the same cut.
    /// α_cubic becomes Reno's 1 once `W_est` is back at the window before
    /// the cut.
    fn reno_estimate(&self, w_est: f64, acked: f64) -> f64 {
        let alpha = if w_est >= self.cwnd_prior { 1.0 } else { ALPHA };
        w_est + alpha * acked / self.cwnd
    }

    /// Congestion avoidance: `acked` packets acknowledged at `now`.
    ///
    /// Where the curve is below Reno's estimate (short RTTs, small
    /// windows) the window is Reno's (§4.3). Elsewhere, concave below
    /// `W_max` (§4.4) or convex above it (§4.5), it grows toward the
    /// curve one RTT ahead, held between the window and 1.5 times it
    /// (Figure 3), by `(target - cwnd) / cwnd` per packet acknowledged.
    fn avoid(&mut self, now: Instant, acked: f64) {
        let mut epoch = match self.epoch {
            Some(e) => e,
            None => self.start_epoch(now),
        };
        let t = now.saturating_duration_since(epoch.start).as_secs_f64();
        let rtt = self.srtt.unwrap_or_default().as_secs_f64();
        epoch.w_est = self.reno_estimate(epoch.w_est, acked);
        if self.w_cubic(epoch.k, t) < epoch.w_est {
            self.cwnd = self.cwnd.max(epoch.w_est);
        } else {
            let target = self
                .w_cubic(epoch.k, t + rtt)
                .clamp(self.cwnd, MAX_TARGET * self.cwnd);
            self.cwnd += (target - self.cwnd) / self.cwnd * acked;
        }
        self.epoch = Some(epoch);
    }

    /// A loss of a packet sent after the last cut, found at `now`: the
    /// multiplicative decrease (§4.6) to β_cubic of the window, with fast
    /// convergence (§4.7): a flow cut below its last `W_max` has lost
    /// share to a newcomer, and levels off lower, at the middle of the
    /// window and its cut, to give up more.
    fn cut(&mut self, now: Instant) {
        self.w_max = if self.cwnd < self.w_max {
            self.cwnd * (1.0 + BETA) / 2.0
        } else {
            self.cwnd
        };
        self.cwnd_prior = self.cwnd;
        self.ssthresh = (self.cwnd * BETA).max(MIN_WINDOW);
        self.cwnd = self.ssthresh;
        self.epoch = None;
        self.recovery_start = Some(now);
    }

    /// Whether a packet sent at `sent` went out before the last cut or
    /// timeout (it belongs to that loss episode).
    fn before_cut(&self, sent: Instant) -> bool {
        self.recovery_start.is_some_and(|r| sent <= r)
    }
}

impl Controller for Cubic {
    fn cwnd(&self) -> u64 {
        (self.cwnd as u64).max(1)
    }

    fn pacing_rate(&self) -> f64 {
        UNPACED
    }

    /// The smallest RTT sampled (the sender's guard against taking an
    /// early acknowledgement for a resend's; CUBIC itself does not use it).
    fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// A loss of a packet sent after the last cut cuts (§4.6); otherwise an
    /// acknowledgement of a packet sent after it grows the window: by the
    /// packets acknowledged in slow start (RFC 5681 §3.1, §4.10), along
    /// the curve in congestion avoidance (§4.2-§4.5). Not while the sender
    /// is short of data (§5.8), nor beyond the configured cap.
    fn on_ack(&mut self, now: Instant, ev: &AckEvent) {
        if let Some(rtt) = ev.rtt {
            self.srtt = Some(self.srtt.map_or(rtt, |s| s * 7 / 8 + rtt / 8));
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        if ev.newly_lost > 0 && ev.lost_sent_at.is_some_and(|t| !self.before_cut(t)) {
            self.cut(now);
            return;
        }
        // The most recently sent packet this acknowledges.
        let Some(s) = ev.sample.filter(|_| ev.newly_acked > 0) else {
            return;
        };
        let sent = now.checked_sub(s.since_sent).unwrap_or(now);
        if self.before_cut(sent) {
            return;
        }
        self.timed_out = false;
        if s.app_limited {
            return;
        }
        let acked = ev.newly_acked as f64;
        if self.cwnd < self.ssthresh {
            self.cwnd += acked;
        } else {
            self.avoid(now, acked);
        }
        self.cwnd = self.cwnd.min(self.cap);
    }

    /// A retransmission timeout (§4.8): the window falls to RFC 5681's
    /// loss window and slow start climbs back to a threshold set as a cut
    /// sets it (once per run of timeouts: a second one before anything
    /// sent after the first is acknowledged keeps it). The stage that
    /// follows starts its curve at the window it begins with (`K` = 0).
    fn on_timeout(&mut self, now: Instant) {
        if !self.timed_out {
            self.cwnd_prior = self.cwnd;
            self.ssthresh = (self.cwnd * BETA).max(MIN_WINDOW);
            self.timed_out = true;
        }
        self.cwnd = LOSS_WINDOW;
        self.w_max = 0.0;
        self.epoch = None;
        self.recovery_start = Some(now);
    }
}

#[cfg(test)]
mod tests;
