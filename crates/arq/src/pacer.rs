//! Pacing: spreads packets over time at the congestion controller's rate,
//! so a window does not leave as one burst that overflows the bottleneck's
//! queue.
//!
//! A token bucket: tokens (packets) accrue at the pacing rate up to a burst
//! of about two milliseconds' worth. Two milliseconds because a driver on a
//! general-purpose timer wakes about a millisecond late at times, and what
//! the bucket cannot hold is rate lost; and because batched sends (GSO)
//! want a few dozen packets at once. At least ten packets, so a slow flow
//! still batches; at most 256.

use std::time::{Duration, Instant};

/// The burst the bucket holds, as time at the pacing rate.
const BURST_TIME: Duration = Duration::from_millis(2);
/// Smallest and largest burst, packets.
const MIN_BURST: f64 = 10.0;
const MAX_BURST: f64 = 256.0;

/// A token bucket of packets. See the module docs.
#[derive(Debug, Clone)]
pub struct Pacer {
    tokens: f64,
    last: Instant,
}

fn burst(rate: f64) -> f64 {
    (rate * BURST_TIME.as_secs_f64()).clamp(MIN_BURST, MAX_BURST)
}

impl Pacer {
    /// A full bucket at `now`.
    pub fn new(now: Instant) -> Self {
        Pacer {
            tokens: MIN_BURST,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst(rate));
        self.last = now;
    }

    /// Takes one packet's token if there is one at `now`.
    pub fn try_take(&mut self, now: Instant, rate: f64) -> bool {
        self.refill(now, rate);
        // A hair of slack: rounding must not leave a token at 0.999...
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token is due (after a failed [`Pacer::try_take`]).
    pub fn next_token(&self, rate: f64) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        let wait = if rate > 0.0 { missing / rate } else { 1.0 };
        // Rounded up to the nanosecond, so the token is really there then.
        let nanos = (wait.min(1.0) * 1e9).ceil().max(1.0) as u64;
        self.last + Duration::from_nanos(nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_at_the_rate_after_a_first_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        let rate = 10_000.0; // packets a second
        let mut now = t0;
        let mut sent = 0u32;
        while now < t0 + Duration::from_millis(100) {
            if p.try_take(now, rate) {
                sent += 1;
            } else {
                now = p.next_token(rate);
            }
        }
        // 10 at once, then one every 100 µs for 100 ms.
        assert!((1005..=1012).contains(&sent), "{sent}");
    }

    #[test]
    fn an_idle_bucket_holds_only_a_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        let rate = 50_000.0;
        let later = t0 + Duration::from_secs(1);
        let burst = std::iter::from_fn(|| p.try_take(later, rate).then_some(()))
            .take(1000)
            .count();
        assert_eq!(burst, 100, "two milliseconds at 50,000 packets/s");
    }
}
