//! The windowed-maximum filter the path model keeps its bandwidth estimate
//! and its largest recent RTT in: the largest value of the last ten round
//! trips, as BBR's bandwidth filter (Cardwell et al., 2016).

use std::collections::VecDeque;

/// Round trips over which the largest delivery rate is the bandwidth.
pub(super) const BW_ROUNDS: u64 = 10;
/// The largest value seen over the last `BW_ROUNDS` rounds (a monotone
/// queue: at most one entry per round).
#[derive(Debug, Clone, Default)]
pub(super) struct WindowedMax {
    entries: VecDeque<(u64, f64)>,
}

impl WindowedMax {
    pub(super) fn update(&mut self, round: u64, value: f64) {
        while self.entries.back().is_some_and(|&(_, v)| v <= value) {
            self.entries.pop_back();
        }
        if self.entries.back().is_none_or(|&(r, _)| r != round) {
            self.entries.push_back((round, value));
        }
        self.expire(round);
    }

    pub(super) fn expire(&mut self, round: u64) {
        while self
            .entries
            .front()
            .is_some_and(|&(r, _)| r + BW_ROUNDS <= round)
        {
            self.entries.pop_front();
        }
    }

    pub(super) fn get(&self) -> f64 {
        self.entries.front().map_or(0.0, |&(_, v)| v)
    }

    /// Multiplies every value by `factor` (a change of unit).
    pub(super) fn scale(&mut self, factor: f64) {
        for (_, v) in &mut self.entries {
            *v *= factor;
        }
    }

    /// Lowers every value above `limit` to it.
    pub(super) fn cap(&mut self, limit: f64) {
        // Values decrease from front to back: those above the limit form a
        // prefix, which collapses into its newest entry at the limit.
        let mut newest_capped = None;
        while self.entries.front().is_some_and(|&(_, v)| v >= limit) {
            newest_capped = self.entries.pop_front().map(|(r, _)| r);
        }
        if let Some(r) = newest_capped {
            self.entries.push_front((r, limit));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_windowed_max_forgets_after_ten_rounds() {
        let mut m = WindowedMax::default();
        m.update(0, 100.0);
        m.update(1, 50.0);
        m.update(5, 80.0);
        assert_eq!(m.get(), 100.0);
        m.update(10, 10.0);
        assert_eq!(m.get(), 80.0, "round 0 is out of the window");
        m.update(15, 10.0);
        assert_eq!(m.get(), 10.0);
        assert!(m.entries.len() <= 2);
    }

    #[test]
    fn capping_the_windowed_max_lowers_what_is_above() {
        let mut m = WindowedMax::default();
        m.update(0, 100.0);
        m.update(1, 90.0);
        m.update(2, 50.0);
        m.cap(80.0);
        assert_eq!(m.get(), 80.0);
        m.update(11, 10.0);
        assert_eq!(m.get(), 50.0, "the capped entry expires with its round");
    }
}
