//! Delivery-rate sampling: how fast the path delivered packets, measured
//! from the acknowledgements themselves (the method of the IETF draft
//! "Delivery Rate Estimation" that BBR is built on).
//!
//! Each packet remembers, when it is sent, how many packets had been
//! delivered and when; when it is acknowledged, the packets delivered since
//! divided by the time between give one sample. The interval is the longer
//! of the send and the ack intervals, so neither a burst of sends nor a
//! burst of (compressed) acks inflates the rate.

use std::time::{Duration, Instant};

/// What a packet remembers of the delivery state at its sending.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendState {
    /// Packets delivered when it was sent.
    pub delivered: u64,
    /// When the last of those was delivered.
    pub delivered_time: Instant,
    /// When the first packet of the current flight was sent.
    pub first_sent_time: Instant,
    /// Whether the sender was short of data (not of window) then.
    pub app_limited: bool,
    /// Its latest sending, which RTT samples and loss by time are measured
    /// from.
    pub sent_at: Instant,
}

/// One measurement of the delivery rate.
#[derive(Debug, Clone, Copy)]
pub struct RateSample {
    /// Packets delivered over `interval`.
    pub delivered: u64,
    /// How long `delivered` took: the longer of the send and the ack
    /// intervals (see the module docs).
    pub interval: Duration,
    /// Delivered count when the packet that gave the sample was sent: a
    /// sample whose `prior_delivered` passes a round's mark ends the round.
    pub prior_delivered: u64,
    /// Taken while the sender had too little to send to fill the path: it
    /// may understate the path.
    pub app_limited: bool,
    /// Time from the sending of the packet that gave the sample to its
    /// acknowledgement. Far below the path's RTT, the acknowledgement was
    /// for an earlier transmission of a packet resent since (spuriously):
    /// the sample says nothing about this flight.
    pub since_sent: Duration,
}

impl RateSample {
    /// Packets a second, if the interval is long enough to mean anything.
    pub fn rate(&self) -> Option<f64> {
        let secs = self.interval.as_secs_f64();
        (secs > 0.0 && self.delivered > 0).then(|| self.delivered as f64 / secs)
    }
}

/// The sender's running delivery state.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryState {
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    /// Non-zero while the flow is application-limited: the delivered count
    /// at which that stretch ends.
    app_limited_until: u64,
}

impl DeliveryState {
    pub fn new(now: Instant) -> Self {
        DeliveryState {
            delivered: 0,
            delivered_time: now,
            first_sent_time: now,
            app_limited_until: 0,
        }
    }

    /// Packets delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The state to store with a packet sent now, `in_flight` packets
    /// being out before it.
    pub fn on_send(&mut self, now: Instant, in_flight: u64) -> SendState {
        if in_flight == 0 {
            // A new flight: do not count the idle time before it.
            self.first_sent_time = now;
            self.delivered_time = now;
        }
        SendState {
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
            app_limited: self.app_limited_until != 0,
            sent_at: now,
        }
    }

    /// The sender has nothing to send although the window would allow it.
    pub fn on_app_limited(&mut self, in_flight: u64) {
        self.app_limited_until = (self.delivered + in_flight).max(1);
    }

    /// `newly` packets were acknowledged at `now`, the most recently sent
    /// of them with `latest`: the sample they give.
    pub fn on_ack(&mut self, now: Instant, newly: u64, latest: &SendState) -> RateSample {
        self.delivered += newly;
        self.delivered_time = now;
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        let send_elapsed = latest
            .sent_at
            .saturating_duration_since(latest.first_sent_time);
        let ack_elapsed = now.saturating_duration_since(latest.delivered_time);
        self.first_sent_time = latest.sent_at;
        RateSample {
            delivered: self.delivered - latest.delivered,
            interval: send_elapsed.max(ack_elapsed),
            prior_delivered: latest.delivered,
            app_limited: latest.app_limited,
            since_sent: now.saturating_duration_since(latest.sent_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_flow_measures_its_rate() {
        // One packet sent every millisecond, each acked 50 ms later.
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut st = DeliveryState::new(t0);
        let mut sent = Vec::new();
        let mut last = None;
        for i in 0..200u32 {
            let now = t0 + ms * i;
            let in_flight = sent.len() as u64;
            sent.push(st.on_send(now, in_flight));
            if i >= 50 {
                let p = sent.remove(0);
                last = Some(st.on_ack(now, 1, &p));
            }
        }
        let rate = last.and_then(|s| s.rate()).expect("a sample");
        assert!((rate - 1000.0).abs() < 30.0, "{rate} packets/s");
    }

    #[test]
    fn a_burst_of_acks_does_not_inflate_the_rate() {
        // Ten packets sent over 10 ms; all ten acks arrive at once.
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut st = DeliveryState::new(t0);
        let sent: Vec<_> = (0..10u32)
            .map(|i| st.on_send(t0 + ms * i, u64::from(i)))
            .collect();
        let s = st.on_ack(t0 + ms * 60, 10, &sent[9]);
        // 10 packets over the 60 ms since the flight began being delivered
        // (the ack interval), not over the 9 ms it took to send them:
        // 167 packets a second, not 1,111. Within 1%, so that a sample
        // off by a fifth (or taken over the send interval) fails.
        let expected = 10.0 / 0.060;
        let rate = s.rate().expect("a sample");
        assert!((rate - expected).abs() < expected * 0.01, "{rate}");
        assert!(!s.app_limited);
    }

    #[test]
    fn samples_taken_short_of_data_are_marked() {
        let t0 = Instant::now();
        let mut st = DeliveryState::new(t0);
        let a = st.on_send(t0, 0);
        st.on_app_limited(1);
        let b = st.on_send(t0, 1);
        assert!(!a.app_limited);
        assert!(b.app_limited);
        st.on_ack(t0 + Duration::from_millis(10), 2, &b);
        let c = st.on_send(t0 + Duration::from_millis(10), 0);
        assert!(!c.app_limited, "the stretch ends once its packets are in");
    }
}
