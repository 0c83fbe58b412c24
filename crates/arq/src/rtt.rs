//! Round-trip time estimation and the retransmission timeout (RFC 6298).

use std::time::Duration;

/// Smoothed RTT, its variation, and the RTO derived from them.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
    /// Multiplier from backoff (1, 2, 4...), reset by a new sample.
    backoff: u32,
}

impl RttEstimator {
    /// An estimator with no sample yet.
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: initial_rto.clamp(min_rto, max_rto),
            min_rto,
            max_rto,
            backoff: 1,
        }
    }

    /// Takes one RTT measurement (of a packet sent once: Karn's rule is the
    /// caller's).
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                // RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|; SRTT <- 7/8 SRTT + 1/8 R'
                let diff = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(srtt * 7 / 8 + rtt / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        // The 1 ms floor stands in for RFC 6298's clock granularity G.
        self.rto = (srtt + (self.rttvar * 4).max(Duration::from_millis(1)))
            .clamp(self.min_rto, self.max_rto);
        self.backoff = 1;
    }

    /// Doubles the timeout after a retransmission timeout (up to the max).
    pub fn back_off(&mut self) {
        self.backoff = (self.backoff * 2).min(64);
    }

    /// Forgets the backoff: the path delivers again. (TCP stacks and QUIC
    /// reset it on any ack of new data, not only on a clean RTT sample,
    /// which under steady loss may not come for a long time.)
    pub fn reset_backoff(&mut self) {
        self.backoff = 1;
    }

    /// The current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        (self.rto * self.backoff).min(self.max_rto)
    }

    /// The smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn follows_rfc_6298() {
        let mut r = RttEstimator::new(ms(1000), ms(10), ms(60_000));
        assert_eq!(r.rto(), ms(1000));
        r.sample(ms(100));
        // SRTT = 100, RTTVAR = 50, RTO = 100 + 4*50 = 300.
        assert_eq!(r.srtt(), Some(ms(100)));
        assert_eq!(r.rto(), ms(300));
        r.sample(ms(100));
        // RTTVAR = 37.5, SRTT = 100, RTO = 250.
        assert_eq!(r.rto(), ms(250));
        r.back_off();
        assert_eq!(r.rto(), ms(500));
        r.back_off();
        assert_eq!(r.rto(), ms(1000));
        r.sample(ms(100));
        assert!(r.rto() < ms(300), "a sample resets the backoff");
    }

    #[test]
    fn clamped() {
        let mut r = RttEstimator::new(ms(1000), ms(200), ms(2000));
        r.sample(ms(1));
        assert_eq!(r.rto(), ms(200));
        for _ in 0..10 {
            r.back_off();
        }
        assert_eq!(r.rto(), ms(2000));
    }
}
