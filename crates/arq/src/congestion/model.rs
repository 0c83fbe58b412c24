//! chatdrop's congestion controller, [`Model`]: a model of the path, after
//! BBR. This module owns the model (its estimates of the path, its phases)
//! and the window and pacing rate it derives from them.
//!
//! It is named for what it is rather than `Bbr`: it keeps BBR v1's
//! estimates and phases but departs from it where docs/TRANSPORT.md says
//! why (loss with a queue, the flight cap after an overflow, random loss
//! made up for, startup's exits), so it should not be read against the BBR
//! drafts as one of them.
//!
//! A transfer must fill the path, keep its queue short, share it with
//! other flows, and not read random (non-congestive) loss as congestion:
//! loss-based controllers (Reno, CUBIC) halve their window at every loss
//! and move a few percent of a lossy link. This controller instead keeps a
//! model of the path, as BBR (Cardwell et al., 2016) does:
//!
//! - the bottleneck bandwidth: the largest delivery rate measured over the
//!   last ten round trips ([`RateSample`](super::RateSample));
//! - the round-trip propagation time: the smallest RTT seen in ten seconds;
//!
//! and sends at the bandwidth (pacing) with about two bandwidth-delay
//! products in flight at most. It finds the bandwidth by doubling the rate
//! each round trip (startup) until three rounds bring less than a quarter
//! more or a queue overflows, drains the queue that built, then
//! cycles its pacing gain around 1 (1.25 one round trip to probe for more,
//! 0.75 the next to drain what that queued, then six at 1). Flows sharing
//! a bottleneck converge because each probe takes from the others' measured
//! share; every ten seconds without a new smallest RTT it cuts its flight
//! to four packets for 200 ms, so that flows sharing a path measure the
//! empty-queue RTT together.
//!
//! Random losses do not shrink the model; the pacing rate makes up for
//! them (their rate, measured where no queue could have caused the losses
//! and away from drops at the receiver, is sent on top). Losses with a queue, beyond what
//! the random rate explains, do: the queue overflows, so the estimate comes
//! down 5% and the flight is capped (to 0.7 of it, growing back half a
//! packet a round trip, as CUBIC's window does); that is also how the flow
//! yields to a loss-based one holding the queue. A retransmission
//! timeout holds the window to a few packets until the path acknowledges
//! again.

use std::time::{Duration, Instant};

use super::windowed_max::WindowedMax;
use super::{AckEvent, Controller, INITIAL_CWND};

/// Startup's pacing gain: doubles the delivery rate each round trip
/// (2/ln 2, rounded down slightly as in BBR v2).
const STARTUP_GAIN: f64 = 2.77;
/// Drain's pacing gain: undoes startup's queue in about one round trip.
const DRAIN_GAIN: f64 = 1.0 / 2.885;
/// The flight allowed, in bandwidth-delay products.
const CWND_GAIN: f64 = 2.0;
/// Pacing gains of the bandwidth-probing cycle, one round trip each.
const PROBE_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// How long a smallest RTT stays valid without being seen again.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// How long the flight stays small to measure the RTT afresh.
const PROBE_RTT_TIME: Duration = Duration::from_millis(200);
/// The flight while measuring the RTT, and the smallest window, packets.
pub(crate) const MIN_CWND: u64 = 4;
/// Startup ends when three round trips each raise the bandwidth by less
/// than this factor.
const FULL_BW_GROWTH: f64 = 1.25;
const FULL_BW_ROUNDS: u32 = 3;
/// An RTT this many times the smallest means a queue has built: a loss
/// then is taken for the queue overflowing, not for noise on the path.
const QUEUE_RTT_FACTOR: f64 = 1.5;
/// When the smallest RTT was first seen over another flow's standing
/// queue, it overstates the path and [`QUEUE_RTT_FACTOR`] is out of reach
/// even when the queue overflows. The queue is then read from how the RTT
/// moved: if the largest RTT of the last round trips is this many times
/// the smallest, a queue comes and goes ...
const QUEUE_RANGE_FACTOR: f64 = 1.3;
/// ... and an RTT within this share of that largest one is the queue at
/// its fullest, where a drop-tail queue drops.
const QUEUE_TOP: f64 = 0.9;
/// What a round trip with overflow losses leaves of the bandwidth
/// estimate: the estimate was above what the bottleneck drains (or a
/// competing flow holds the queue), so the flow yields a little each such
/// round until the losses stop.
const OVERFLOW_BACKOFF: f64 = 0.95;
/// What a round trip with overflow losses leaves of the flight: the flight
/// is capped at this share of what was in flight, and the cap then grows
/// back by [`HI_STEP`] each round trip without such losses. Flows sharing a
/// full queue thus cut in proportion to their size and grow back by the
/// same amount, which (as for Reno's window) brings them to equal shares,
/// and a loss-based flow beside this one keeps room to grow.
const OVERFLOW_BETA: f64 = 0.7;
/// How much the flight cap grows each round trip (packets) after an
/// overflow: what TCP CUBIC grows by in its Reno-friendly region,
/// 3(1 - 0.7)/(1 + 0.7) = 0.53 packets a round trip for the same cut to
/// 0.7 (RFC 9438, §4.3), so that a CUBIC flow beside this one keeps its
/// share; at Reno's one packet this flow outgrows it. The same pace
/// whether the flow overshot on its own or another flow filled the queue:
/// the two cannot be told apart when the smallest RTT was measured over
/// that flow's queue, and a flow alone loses nothing by it, since the cap
/// never falls below what sending at the estimate needs.
const HI_STEP: f64 = 0.5;
/// The most random loss the pacing rate makes up for (see
/// [`Model::loss_rate`]).
const MAX_LOSS_MAKEUP: f64 = 0.1;
/// Startup ends after a round trip that lost more than this share of its
/// packets, with or without a queue in sight: random loss that high is
/// past what the pacing rate makes up for ([`MAX_LOSS_MAKEUP`]), while a
/// flow joining a queue another flow filled first (its smallest RTT
/// measured over that queue, so it never sees one) loses what it adds once
/// the queue is full.
const STARTUP_LOSS_EXIT: f64 = 0.2;
/// Weight of one round trip's loss rate in the running estimate.
const LOSS_RATE_WEIGHT: f64 = 1.0 / 8.0;
/// Round trips after one in which the receiver reported drops that say
/// nothing of the path's random loss.
const RECEIVER_DROP_ROUNDS: u64 = 10;
/// Fewer packets than this in a round trip say too little about loss.
const LOSS_SAMPLE_MIN: u64 = 20;
/// A round trip whose largest RTT stays under this many times the
/// smallest had no queue: its losses were random, not overflow.
const NO_QUEUE_RTT_FACTOR: f64 = 1.2;

/// How far back [`RecentMin`] looks, as a share of the path's smallest
/// RTT: the queue is judged from the smallest sample of that span.
const JITTER_SPAN: f64 = 0.5;
/// Samples [`RecentMin`] keeps at most, whatever the rate.
const JITTER_SAMPLES: usize = 4096;

/// The smallest of the RTT samples of a recent span of time. A queue
/// raises every sample for as long as it stands; jitter (a path whose
/// delay varies from packet to packet: Wi-Fi retries, multipath routing)
/// raises some and not others, and the smallest of the span takes it out.
/// Judged on single samples, jitter of a few milliseconds on a 20 ms path
/// looks like a queue coming and going, and random loss with it like the
/// queue overflowing.
#[derive(Debug, Clone, Default)]
struct RecentMin {
    /// (when, sample), the samples rising from the front: each is the
    /// smallest of those after it (a sliding-window minimum).
    samples: std::collections::VecDeque<(Instant, Duration)>,
}

impl RecentMin {
    /// Takes `rtt` at `now` and returns the smallest sample of the last
    /// `span` (this one at least).
    fn push(&mut self, now: Instant, rtt: Duration, span: Duration) -> Duration {
        while self.samples.back().is_some_and(|&(_, r)| r >= rtt) {
            self.samples.pop_back();
        }
        if self.samples.len() >= JITTER_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, rtt));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) > span)
        {
            self.samples.pop_front();
        }
        self.samples.front().map_or(rtt, |&(_, r)| r)
    }
}

/// The controller's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Doubling the rate each round trip to find the bandwidth.
    Startup,
    /// Emptying the queue startup built.
    Drain,
    /// Sending at the bandwidth, probing for more now and then.
    ProbeBw,
    /// A small flight for a moment, to see the RTT without a queue.
    ProbeRtt,
}

/// The model-based congestion controller. See the module docs.
#[derive(Debug, Clone)]
pub struct Model {
    mode: Mode,
    /// The window cap (`-w`), packets.
    cap: u64,
    bw: WindowedMax,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Instant,
    round: u64,
    next_round_delivered: u64,
    full_bw: f64,
    full_bw_rounds: u32,
    full_bw_reached: bool,
    cycle: usize,
    cycle_stamp: Instant,
    probe_rtt_until: Option<Instant>,
    probe_rtt_round: Option<u64>,
    /// The window when ProbeRtt began, restored when it ends.
    probe_rtt_prior_cwnd: u64,
    /// The round in which ProbeRtt last ended.
    probe_rtt_done_round: Option<u64>,
    /// The round trips the bandwidth filter counts: all but those of
    /// ProbeRtt and the one after it (see `on_ack`).
    bw_rounds: u64,
    pacing_gain: f64,
    cwnd_gain: f64,
    cwnd: u64,
    /// After a retransmission timeout: the window to restore once the
    /// path acknowledges again.
    restore_cwnd: Option<u64>,
    pacing_rate: f64,
    /// The latest RTT with jitter taken out (see [`RecentMin`]).
    latest_rtt: Option<Duration>,
    recent: RecentMin,
    /// The smallest RTT sample of the round trip under way.
    round_min_rtt: Option<Duration>,
    /// The round in which the estimate last yielded to overflow losses.
    backed_off_round: Option<u64>,
    /// The flight cap set by overflow losses (see [`OVERFLOW_BETA`]),
    /// packets; `None` once it grew past the model's window.
    inflight_hi: Option<u64>,
    /// Packets found lost and acknowledged, and the largest RTT, in the
    /// round trip under way.
    round_lost: u64,
    round_acked: u64,
    /// Of those, the ones told by acknowledgements whose RTT was in the
    /// lower half of the RTT's recent range (see [`Model::low_rtt`]).
    round_low_lost: u64,
    round_low_acked: u64,
    /// Packets told lost or acknowledged in the round trip before: what
    /// the random loss of the one under way is judged against until it
    /// has told as many (see [`Model::losses_beyond_random`]).
    last_round_packets: u64,
    round_max_rtt: Option<Duration>,
    /// The largest RTT of the last ten round trips, seconds.
    rtt_hi: WindowedMax,
    /// Datagrams the receiver dropped in the round trip under way.
    round_receiver_dropped: u64,
    /// The latest round in which the receiver reported drops.
    receiver_dropped_round: Option<u64>,
    /// Random loss rate: a running average over round trips without a
    /// queue, or over what a round trip told while the RTT was low in a
    /// wide range (see `sample_loss_rate`).
    loss_rate: f64,
    /// The part of a packet `inflight_hi` has grown by but not yet taken.
    hi_carry: f64,
    /// Round trips with overflow losses so far.
    overflows: u64,
    /// The round in which ProbeBw last began.
    probe_bw_round: u64,
    /// Deterministic randomness for where the probing cycle starts.
    seed: u64,
}

impl Model {
    /// A controller for a flow allowed at most `cap` packets in flight;
    /// `seed` varies where its probing cycle starts.
    pub fn new(cap: u32, seed: u64, now: Instant) -> Self {
        let cap = u64::from(cap.max(1));
        let mut c = Model {
            mode: Mode::Startup,
            cap,
            bw: WindowedMax::default(),
            min_rtt: None,
            min_rtt_stamp: now,
            round: 0,
            next_round_delivered: 0,
            full_bw: 0.0,
            full_bw_rounds: 0,
            full_bw_reached: false,
            cycle: 0,
            cycle_stamp: now,
            probe_rtt_until: None,
            probe_rtt_round: None,
            probe_rtt_prior_cwnd: 0,
            probe_rtt_done_round: None,
            bw_rounds: 0,
            pacing_gain: STARTUP_GAIN,
            cwnd_gain: CWND_GAIN,
            cwnd: INITIAL_CWND.min(cap),
            restore_cwnd: None,
            pacing_rate: 0.0,
            latest_rtt: None,
            recent: RecentMin::default(),
            round_min_rtt: None,
            backed_off_round: None,
            inflight_hi: None,
            round_lost: 0,
            round_acked: 0,
            round_low_lost: 0,
            round_low_acked: 0,
            last_round_packets: 0,
            round_max_rtt: None,
            rtt_hi: WindowedMax::default(),
            round_receiver_dropped: 0,
            receiver_dropped_round: None,
            loss_rate: 0.0,
            hi_carry: 0.0,
            overflows: 0,
            probe_bw_round: 0,
            seed: seed | 1,
        };
        c.set_pacing_rate();
        c
    }

    /// The phase the model is in: finding the bandwidth, draining,
    /// probing for bandwidth or measuring the RTT afresh.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Packets allowed in flight.
    pub fn cwnd(&self) -> u64 {
        self.cwnd
    }

    /// Packets a second to pace at.
    pub fn pacing_rate(&self) -> f64 {
        self.pacing_rate
    }

    /// The bottleneck bandwidth estimate, packets a second.
    pub fn bandwidth(&self) -> f64 {
        self.bw.get()
    }

    /// Round trips in which losses met a standing queue (the flow
    /// yielded).
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// This model for a sender whose packets are `factor` times as many
    /// for the same bytes (its packet size divided by `factor`), counting
    /// delivered packets afresh: what it learnt of the path (bandwidth,
    /// RTTs, random loss, phase, the flight cap after overflows) carries
    /// over, in the new unit. After a change of packet size the path is
    /// the same one, and starting afresh would cost a startup (its
    /// overshoot included) each time.
    pub fn rescaled(&self, factor: f64) -> Model {
        let factor = if factor.is_finite() && factor > 0.0 {
            factor
        } else {
            1.0
        };
        let packets = |n: u64| ((n as f64 * factor).ceil() as u64).max(MIN_CWND);
        let mut m = self.clone();
        m.bw.scale(factor);
        m.full_bw *= factor;
        m.pacing_rate *= factor;
        m.cwnd = packets(self.cwnd).min(self.cap);
        m.restore_cwnd = self.restore_cwnd.map(packets);
        m.inflight_hi = self.inflight_hi.map(packets);
        m.hi_carry = 0.0;
        // The new sender counts delivered packets from zero: a round trip
        // starts with its first sample.
        m.next_round_delivered = 0;
        m.probe_rtt_prior_cwnd = packets(self.probe_rtt_prior_cwnd);
        m.round_lost = 0;
        m.round_acked = 0;
        m.round_low_lost = 0;
        m.round_low_acked = 0;
        m.last_round_packets = (self.last_round_packets as f64 * factor) as u64;
        m.round_receiver_dropped = 0;
        m
    }

    /// The round-trip propagation time estimate: the smallest RTT of the
    /// last ten seconds.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    fn random(&mut self) -> u64 {
        // xorshift64: enough to spread flows over the cycle, reproducible.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    /// `gain` bandwidth-delay products, packets (the initial window until
    /// both are measured).
    fn bdp(&self, gain: f64) -> u64 {
        match self.min_rtt {
            Some(rtt) if self.bw.get() > 0.0 => {
                (self.bw.get() * rtt.as_secs_f64() * gain).ceil() as u64
            }
            _ => INITIAL_CWND,
        }
    }

    /// About a millisecond at the pacing rate, 2 to 64 packets (BBR's send
    /// quantum). It sizes the extra flight the window allows for
    /// acknowledgements that arrive in bunches (three of it); the sender's
    /// bursts are its pacer's.
    fn send_quantum(&self) -> u64 {
        ((self.pacing_rate / 1000.0) as u64).clamp(2, 64)
    }

    /// The share of packets lost at random (measured where no queue could
    /// have caused the losses).
    pub fn loss_rate(&self) -> f64 {
        self.loss_rate
    }

    fn set_pacing_rate(&mut self) {
        let bw = self.bw.get();
        let rate = if bw > 0.0 {
            // The bandwidth estimate counts what arrived. Where packets are
            // lost at random before the bottleneck (a lossy access link),
            // sending at it leaves the bottleneck idle for the share lost:
            // send that share on top. Where they are lost after it, the
            // surplus queues, and overflow losses with a queue lower the
            // estimate again.
            let makeup = match self.mode {
                Mode::ProbeBw => 1.0 / (1.0 - self.loss_rate.min(MAX_LOSS_MAKEUP)),
                _ => 1.0,
            };
            self.pacing_gain * bw * makeup
        } else {
            // Nothing measured yet: the initial window over the RTT (or
            // over a millisecond, unpaced in effect, before any RTT).
            let rtt = self.min_rtt.unwrap_or(Duration::from_millis(1));
            self.pacing_gain * self.cwnd as f64 / rtt.as_secs_f64().max(1e-6)
        };
        // During startup the rate only grows: a low early sample must not
        // slow the search for the bandwidth.
        if self.full_bw_reached || rate > self.pacing_rate {
            self.pacing_rate = rate;
        }
    }

    /// Whether `rtt` shows a queue on the path.
    fn queued(&self, rtt: Option<Duration>) -> bool {
        match (rtt, self.min_rtt) {
            (Some(l), Some(m)) => l.as_secs_f64() > m.as_secs_f64() * QUEUE_RTT_FACTOR,
            _ => false,
        }
    }

    /// Whether `rtt` is in the lower half of how far the RTT has moved
    /// lately, that range being wide (see [`QUEUE_RANGE_FACTOR`]).
    fn low_rtt(&self, rtt: Duration) -> bool {
        let Some(m) = self.min_rtt else {
            return false;
        };
        let (m, hi) = (m.as_secs_f64(), self.rtt_hi.get());
        hi > m * QUEUE_RANGE_FACTOR && rtt.as_secs_f64() < (m + hi) / 2.0
    }

    /// Whether an RTT of `rtt` means the queue is full: it shows a queue
    /// over the smallest RTT, or (that smallest one measured over someone
    /// else's queue) it is at the top of how far the RTT has moved lately.
    /// Random loss on a path without a queue meets neither: the RTT stays
    /// near the smallest, and this flow's own probing raises it by a
    /// quarter at most.
    fn overflowing(&self, rtt: Option<Duration>) -> bool {
        if self.queued(rtt) {
            return true;
        }
        let (Some(l), Some(m)) = (rtt, self.min_rtt) else {
            return false;
        };
        let hi = self.rtt_hi.get();
        hi > m.as_secs_f64() * QUEUE_RANGE_FACTOR && l.as_secs_f64() >= hi * QUEUE_TOP
    }

    /// Whether the round trip under way has lost more than the path's
    /// random loss explains: more than the expected count plus three
    /// standard deviations (a Poisson count's) and one. On a lossy path
    /// some random loss comes in nearly every round trip, also in those in
    /// which probing has queued half a bandwidth-delay product; taken for
    /// overflow, it would hold the flight near one bandwidth-delay product,
    /// below the link. A queue that overflows loses far more: the whole
    /// surplus of a probe once the buffer is full. On a path without random
    /// loss any loss counts.
    ///
    /// The count is judged against the round trip's packets, the whole
    /// of the one before until this one has told as many: early in a
    /// round trip a few told packets would make two random losses (those
    /// a loss timer found, or that came together by chance) look like
    /// half of them lost. Judged so, on a path whose delay wanders with 1%
    /// random loss, most of the round trips taken for overflow had lost
    /// nothing at the queue, and each cut the flight.
    fn losses_beyond_random(&self) -> bool {
        if self.loss_rate <= 0.0 {
            return true;
        }
        let packets = (self.round_lost + self.round_acked).max(self.last_round_packets) as f64;
        let expected = self.loss_rate * packets;
        self.round_lost as f64 > expected + 3.0 * expected.sqrt() + 1.0
    }

    /// At the end of a round trip: takes its loss rate into the running
    /// estimate if no queue could have caused the losses (its largest RTT
    /// stayed near the path's; or else, the RTT's range being wide, what
    /// it told while the RTT was in the lower half of that range), in
    /// probing only (startup's losses are its queue's).
    fn sample_loss_rate(&mut self) {
        let packets = self.round_lost + self.round_acked;
        let no_queue = match (self.round_max_rtt, self.min_rtt) {
            (Some(max), Some(min)) => max.as_secs_f64() < min.as_secs_f64() * NO_QUEUE_RTT_FACTOR,
            _ => false,
        };
        // Where the RTT moves widely without a queue of this flow's (a
        // delay that wanders: a radio link's queue that other traffic
        // fills), few round trips stay near the smallest RTT and the
        // random loss would never be learnt: every loss would then read as
        // the queue overflowing. What was told while the RTT was in the
        // lower half of its range is sampled instead: random loss comes
        // there as often as anywhere, and a drop-tail queue drops only at
        // the top.
        let (lost, sampled) = if no_queue {
            (self.round_lost, packets)
        } else {
            (
                self.round_low_lost,
                self.round_low_lost + self.round_low_acked,
            )
        };
        // A receiver that drops datagrams cannot keep up: its losses grow
        // with the rate, and making up for them would overflow it more.
        // Its reports come with acknowledgements, not with the losses they
        // explain, so a round trip near one that reported drops says
        // nothing of the path either (on loopback, where the receiver is
        // the bottleneck and the RTT's range is wide, sampling those took
        // the throughput down by a third).
        if self.round_receiver_dropped > 0 {
            self.receiver_dropped_round = Some(self.round);
        }
        let receiver_kept_up = self
            .receiver_dropped_round
            .is_none_or(|r| r + RECEIVER_DROP_ROUNDS <= self.round);
        // The round trip just ended lost too much to be random: see
        // [`STARTUP_LOSS_EXIT`].
        if self.mode == Mode::Startup
            && packets >= LOSS_SAMPLE_MIN
            && self.round_lost as f64 > packets as f64 * STARTUP_LOSS_EXIT
            && self.bw.get() > 0.0
        {
            self.full_bw_reached = true;
        }
        if self.mode == Mode::ProbeBw && receiver_kept_up && sampled >= LOSS_SAMPLE_MIN {
            let p = lost as f64 / sampled as f64;
            self.loss_rate += LOSS_RATE_WEIGHT * (p - self.loss_rate);
        }
        self.last_round_packets = packets;
        self.round_lost = 0;
        self.round_acked = 0;
        self.round_low_lost = 0;
        self.round_low_acked = 0;
        self.round_max_rtt = None;
        self.round_receiver_dropped = 0;
    }

    fn enter_probe_bw(&mut self, now: Instant) {
        self.mode = Mode::ProbeBw;
        self.probe_bw_round = self.round;
        // Start anywhere but in the draining phase.
        let len = PROBE_GAINS.len() as u64;
        self.cycle = ((2 + self.random() % (len - 1)) % len) as usize;
        self.cycle_stamp = now;
        self.pacing_gain = PROBE_GAINS[self.cycle];
        self.cwnd_gain = CWND_GAIN;
    }

    fn update_mode(&mut self, now: Instant, ev: &AckEvent, min_rtt_expired: bool) {
        if self.mode == Mode::Startup && self.full_bw_reached {
            self.mode = Mode::Drain;
            self.pacing_gain = DRAIN_GAIN;
            self.cwnd_gain = CWND_GAIN;
        }
        if self.mode == Mode::Drain && ev.in_flight <= self.bdp(1.0) {
            self.enter_probe_bw(now);
        }
        if self.mode == Mode::ProbeBw {
            let full_length = self.min_rtt.is_some_and(|m| now - self.cycle_stamp > m);
            let gain = PROBE_GAINS[self.cycle];
            let prior_in_flight = ev.in_flight + ev.newly_acked;
            let next = if gain > 1.0 {
                full_length && (ev.newly_lost > 0 || prior_in_flight >= self.bdp(gain))
            } else if gain < 1.0 {
                full_length || prior_in_flight <= self.bdp(1.0)
            } else {
                full_length
            };
            if next {
                self.cycle = (self.cycle + 1) % PROBE_GAINS.len();
                self.cycle_stamp = now;
                self.pacing_gain = PROBE_GAINS[self.cycle];
            }
        }
        // Measure the RTT afresh when the smallest one is old.
        if min_rtt_expired && self.mode != Mode::ProbeRtt && self.min_rtt.is_some() {
            self.mode = Mode::ProbeRtt;
            self.pacing_gain = 1.0;
            self.cwnd_gain = 1.0;
            self.probe_rtt_prior_cwnd = self.cwnd;
            self.probe_rtt_until = None;
            self.probe_rtt_round = None;
        }
        if self.mode == Mode::ProbeRtt {
            if self.probe_rtt_until.is_none() && ev.in_flight <= MIN_CWND {
                self.probe_rtt_until = Some(now + PROBE_RTT_TIME);
                self.probe_rtt_round = Some(self.round + 1);
            }
            let time_done = self.probe_rtt_until.is_some_and(|t| now >= t);
            let round_done = self.probe_rtt_round.is_some_and(|r| self.round >= r);
            if time_done && round_done {
                self.min_rtt_stamp = now;
                self.probe_rtt_done_round = Some(self.round);
                // The window returns at once, as BBR's does: growing back
                // from four packets a round trip at a time would cost
                // another half-dozen round trips below the path.
                self.cwnd = self.cwnd.max(self.probe_rtt_prior_cwnd);
                if self.full_bw_reached {
                    self.enter_probe_bw(now);
                } else {
                    self.mode = Mode::Startup;
                    self.pacing_gain = STARTUP_GAIN;
                    self.cwnd_gain = CWND_GAIN;
                }
            }
        }
    }

    fn update_cwnd(&mut self, ev: &AckEvent) {
        if let (Some(restore), true) = (self.restore_cwnd, ev.newly_acked > 0) {
            self.cwnd = self.cwnd.max(restore);
            self.restore_cwnd = None;
        }
        if self.restore_cwnd.is_some() {
            return;
        }
        let mut target = self.bdp(self.cwnd_gain) + 3 * self.send_quantum();
        if let Some(hi) = self.inflight_hi {
            target = target.min(hi);
        }
        if self.full_bw_reached {
            self.cwnd = (self.cwnd + ev.newly_acked).min(target);
        } else if self.cwnd < target || ev.delivered < INITIAL_CWND {
            self.cwnd += ev.newly_acked;
        }
        self.cwnd = self.cwnd.max(MIN_CWND);
        if self.mode == Mode::ProbeRtt {
            self.cwnd = self.cwnd.min(MIN_CWND);
        }
        self.cwnd = self.cwnd.min(self.cap);
    }
}

impl Controller for Model {
    fn cwnd(&self) -> u64 {
        Model::cwnd(self)
    }

    fn pacing_rate(&self) -> f64 {
        Model::pacing_rate(self)
    }

    fn min_rtt(&self) -> Option<Duration> {
        Model::min_rtt(self)
    }

    /// A retransmission timeout fired: hold the flight to a few packets
    /// until an acknowledgement shows the path delivers again.
    fn on_timeout(&mut self, _now: Instant) {
        if self.restore_cwnd.is_none() {
            self.restore_cwnd = Some(self.cwnd);
        }
        self.cwnd = MIN_CWND.min(self.cap);
    }

    /// Takes what an acknowledgement tells.
    fn on_ack(&mut self, now: Instant, ev: &AckEvent) {
        let mut round_start = false;
        let sample = ev.sample;
        if let Some(s) = sample {
            if s.prior_delivered >= self.next_round_delivered {
                self.next_round_delivered = ev.delivered;
                self.round += 1;
                round_start = true;
                // ProbeRtt's round trips (200 ms and one more: ten or more
                // of a path under 20 ms, the filter's whole span), and the
                // one after it in which the flight grows back from four
                // packets, measure the small flight: the bandwidth
                // filter's clock stands still, so that their samples sit
                // below the estimate without outliving it (BBR's later
                // versions count its window in probing cycles for this).
                let rtt_probe = self.mode == Mode::ProbeRtt
                    || self
                        .probe_rtt_done_round
                        .is_some_and(|r| self.round <= r + 1);
                if !rtt_probe {
                    self.bw_rounds += 1;
                }
                self.round_min_rtt = None;
                self.sample_loss_rate();
            }
        }
        self.round_lost += ev.newly_lost;
        self.round_acked += ev.newly_acked;
        self.round_receiver_dropped += ev.receiver_dropped;
        // Judged before this acknowledgement's RTT replaces the expired
        // smallest one: that RTT may be a standing queue's (another flow's),
        // and only ProbeRtt shows what the path's is.
        let min_rtt_expired = now > self.min_rtt_stamp + MIN_RTT_WINDOW;
        if let Some(rtt) = ev.rtt {
            // Where a queue is read from the RTT, jitter is taken out first.
            let span = self.min_rtt.unwrap_or(rtt).mul_f64(JITTER_SPAN);
            let steady = self.recent.push(now, rtt, span);
            self.round_max_rtt = Some(self.round_max_rtt.map_or(steady, |m| m.max(steady)));
            self.rtt_hi.update(self.round, steady.as_secs_f64());
            self.latest_rtt = Some(steady);
            self.round_min_rtt = Some(self.round_min_rtt.map_or(rtt, |m| m.min(rtt)));
            if self.min_rtt.is_none_or(|m| rtt <= m) || min_rtt_expired {
                self.min_rtt = Some(rtt);
                self.min_rtt_stamp = now;
            }
        }
        // Random loss takes packets one at a time; a queue that overflows
        // takes the several that arrive while it is full, which one
        // acknowledgement then finds lost together: such an
        // acknowledgement says nothing of random loss. (Counted, they read
        // as random loss on a 1 Gbit/s, 2 ms path with none, where the
        // RTT's range is wide from the host's own jitter: half as many
        // packets again were resent.)
        if ev.newly_lost <= 1 && self.latest_rtt.is_some_and(|r| self.low_rtt(r)) {
            self.round_low_lost += ev.newly_lost;
            self.round_low_acked += ev.newly_acked;
        }
        if let Some(s) = sample {
            // A sample over less than the RTT comes from a burst of acks
            // and overstates the path.
            let short = self.min_rtt.is_some_and(|m| s.interval < m);
            // A flight held at the cap an overflow set (or a sender short
            // of data) delivers what it holds, not what the path carries:
            // its samples may raise the estimate, not lower it, and the
            // estimate does not expire meanwhile (as the kernel's BBR
            // keeps its filter). Taken as the bandwidth, the estimate
            // falls to the cap's rate, the cap's floor (one product of
            // the estimate) with it, and the next overflow cuts from
            // there: where the delay wanders, the flow chased itself down
            // to half the link. (ProbeRtt's small flight is kept out by
            // the filter's clock standing still, above.)
            let prior_in_flight = ev.in_flight + ev.newly_acked + ev.newly_lost;
            let hi_limited = self
                .inflight_hi
                .is_some_and(|hi| prior_in_flight + self.send_quantum() >= hi);
            if let Some(rate) = s.rate().filter(|_| !short) {
                if !(s.app_limited || hi_limited) || rate >= self.bw.get() {
                    self.bw.update(self.bw_rounds, rate);
                }
            }
            self.rtt_hi.expire(self.round);
            if round_start && !self.full_bw_reached && !s.app_limited {
                let bw = self.bw.get();
                if bw >= self.full_bw * FULL_BW_GROWTH {
                    self.full_bw = bw;
                    self.full_bw_rounds = 0;
                } else {
                    self.full_bw_rounds += 1;
                    self.full_bw_reached = self.full_bw_rounds >= FULL_BW_ROUNDS;
                }
            }
        }
        // Startup ignores losses on a path without a queue: random loss
        // would end it long before the bandwidth is found. Losses while
        // the RTT shows a queue are its own overshoot overflowing the
        // bottleneck's buffer: the rate is already above what the
        // bottleneck drains (the queue builds only then, and the acks of
        // queued packets come at the bottleneck's rate), so the bandwidth
        // is found; waiting three more rounds for the plateau would only
        // lose more (up to a few bandwidth-delay products).
        if self.mode == Mode::Startup
            && ev.newly_lost > 0
            && self.bw.get() > 0.0
            && self.queued(self.round_min_rtt)
        {
            self.full_bw_reached = true;
        }
        // RTTs measured in ProbeBw's first two rounds are of packets sent
        // before it (draining startup's queue): they show a queue that is
        // gone.
        let judged = ev.newly_lost > 0
            && self.mode == Mode::ProbeBw
            && self.round >= self.probe_bw_round + 2
            && self.backed_off_round != Some(self.round);
        if judged && self.overflowing(self.latest_rtt) && self.losses_beyond_random() {
            // Losses with a queue: the queue overflows, so the flow sends
            // faster than its share drains. Delivery-rate samples run a few
            // percent high when acknowledgements are handled in bunches,
            // and the windowed maximum keeps the highest; without this the
            // flow would hold the queue full.
            self.backed_off_round = Some(self.round);
            self.overflows += 1;
            let bw = self.bw.get();
            self.bw.cap(bw * OVERFLOW_BACKOFF);
            // Never below one bandwidth-delay product of the estimate, and
            // the few quanta the window allows on top for acknowledgements
            // that come in bunches: a flow held under it cannot send at its
            // estimate, its samples fall, and the estimate and the cap would
            // chase each other down (Go-Back-N's resends, with little in
            // flight, are most exposed); at exactly one product, bunched
            // acknowledgements leave the link idle now and then. It yields
            // below that through the estimate, 5% a round.
            let before = (ev.in_flight + ev.newly_lost + ev.newly_acked) as f64;
            let floor = (self.bdp(1.0) + 3 * self.send_quantum()).max(MIN_CWND);
            self.inflight_hi = Some(((before * OVERFLOW_BETA) as u64).max(floor));
            self.hi_carry = 0.0;
        } else if round_start && self.backed_off_round.is_none_or(|r| r < self.round) {
            if let Some(hi) = self.inflight_hi {
                self.hi_carry += HI_STEP;
                let whole = self.hi_carry.floor();
                self.hi_carry -= whole;
                let hi = hi + whole as u64;
                self.inflight_hi = (hi < self.bdp(self.cwnd_gain)).then_some(hi);
            }
        }
        self.update_mode(now, ev, min_rtt_expired);
        self.set_pacing_rate();
        self.update_cwnd(ev);
    }
}

#[cfg(test)]
mod tests;
