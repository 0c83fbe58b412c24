//! The search for the largest data packet the path carries, free of I/O
//! (the part of the sending session that quinn-proto keeps in `mtud.rs`):
//! which `Probe` to send and when, what its answer or its loss means, and
//! the payload size the search ends on.
//!
//! It tries a short list of sizes paths really have, largest first, rather
//! than a binary search between the floor and 64 KiB: every probe that goes
//! unanswered holds the whole session back by [`PROBE_WAIT`], and a path's
//! limit is nearly always one of these (loopback, jumbo frames, Ethernet),
//! so a few tries find it where a search would take a dozen.

use std::time::{Duration, Instant};

use chatdrop_arq::Frame;

use super::{MAX_MSS, MIN_MSS};
use crate::crypto::{HEADER, TAG};

/// IP packet sizes tried for data, largest first: loopback's limit, jumbo
/// frames, Ethernet.
const PATH_SIZES: [usize; 3] = [65_535, 9_000, 1_500];
/// How long a probe's answer is waited for: a few round trips of a path
/// across a continent, and short enough that giving up on every size
/// costs the session about a second.
const PROBE_WAIT: Duration = Duration::from_millis(150);
/// Probes of one size before it is taken as too big for the path: one
/// lost probe (or its answer) must not cost a size the path carries.
const PROBE_TRIES: u32 = 3;

/// Payload bytes of a data packet that makes an IP packet of `ip_size`.
fn payload_for(ip_size: usize, v6: bool) -> u32 {
    let ip_udp = if v6 { 48 } else { 28 };
    (ip_size.saturating_sub(ip_udp + HEADER + TAG + Frame::DATA_HEADER) as u32).min(MAX_MSS)
}

/// One search for the packet size of a path (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct PathProbe {
    /// Payload sizes to try, largest first: `sizes[..count]`.
    sizes: [u32; PATH_SIZES.len()],
    count: usize,
    /// Index in `sizes` of the size being tried.
    at: usize,
    /// Probes of that size sent so far.
    tries: u32,
    /// When the probe out is given up for lost, while one is out.
    deadline: Option<Instant>,
    /// The size a `ProbeAck` confirmed.
    found: Option<u32>,
    /// The size used when none larger is confirmed.
    floor: u32,
    /// How long each probe's answer is waited for.
    wait: Duration,
}

impl PathProbe {
    /// A search for payloads of at most `cap` bytes towards an IPv6 peer
    /// (`v6`) or an IPv4 one: the headers below the payload differ.
    pub(super) fn new(cap: u32, v6: bool) -> PathProbe {
        let floor = MIN_MSS.min(cap);
        let mut sizes = [0; PATH_SIZES.len()];
        let mut count = 0;
        for ip_size in PATH_SIZES {
            let size = payload_for(ip_size, v6).min(cap);
            // A cap below several sizes makes them one: try it once.
            if size > floor && (count == 0 || sizes[count - 1] != size) {
                sizes[count] = size;
                count += 1;
            }
        }
        PathProbe {
            sizes,
            count,
            at: 0,
            tries: 0,
            deadline: None,
            found: None,
            floor,
            wait: PROBE_WAIT,
        }
    }

    /// The same search, waiting `wait` (at least the usual 150 ms) for each
    /// answer: a check made mid-session knows the path's round trip, and a
    /// long path must not lose its packet size to a slow answer.
    pub(super) fn waiting(mut self, wait: Duration) -> PathProbe {
        self.wait = wait.max(PROBE_WAIT);
        self
    }

    /// The largest size the search tries first, if any is above the floor.
    pub(super) fn largest(&self) -> Option<u32> {
        self.sizes[..self.count].first().copied()
    }

    /// The size being tried, while the search goes on.
    fn current(&self) -> Option<u32> {
        match self.found {
            Some(_) => None,
            None => self.sizes[..self.count].get(self.at).copied(),
        }
    }

    /// The payload size the search ended on, once it has: the first size
    /// answered, or the floor (at most the cap) when none was.
    pub(super) fn result(&self) -> Option<u32> {
        self.found
            .or_else(|| (self.at >= self.count).then_some(self.floor))
    }

    /// The payload size of the `Probe` to send now, if one is due: none
    /// while a probe is out and its wait has not run out.
    pub(super) fn poll_probe(&mut self, now: Instant) -> Option<u32> {
        if self.deadline.is_some() {
            return None;
        }
        let size = self.current()?;
        self.tries += 1;
        self.deadline = Some(now + self.wait);
        Some(size)
    }

    /// A `ProbeAck` for `size` came back. Only the size being tried counts:
    /// an answer to a size given up on may be late, but the search has
    /// already moved on, and a size never probed proves nothing.
    pub(super) fn on_ack(&mut self, size: u32) {
        if self.tries > 0 && self.current() == Some(size) {
            self.found = Some(size);
            self.deadline = None;
        }
    }

    /// The host refused to send the probe of `size` (`EMSGSIZE`): it
    /// already knows the path is narrower, so waiting for an answer would
    /// only hold the session back.
    pub(super) fn on_too_big(&mut self, size: u32) {
        if self.current() == Some(size) {
            self.next_size();
        }
    }

    /// When the probe out is given up for lost, if one is out.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Gives the probe out up if its wait ran out by `now`; the size too
    /// after [`PROBE_TRIES`] probes.
    pub(super) fn on_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) {
            self.deadline = None;
            if self.tries >= PROBE_TRIES {
                self.next_size();
            }
        }
    }

    fn next_size(&mut self) {
        self.at += 1;
        self.tries = 0;
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `probe` until it ends, answering nothing, and returns each
    /// probe's size with the milliseconds since the start it went at;
    /// `refused` sizes fail to send, as with `EMSGSIZE`. Bounded: a search
    /// that never ends fails the test instead of hanging it.
    fn unanswered(mut probe: PathProbe, refused: &[u32]) -> (Vec<(u32, u128)>, u32) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut sent = Vec::new();
        for _ in 0..100 {
            if let Some(mss) = probe.result() {
                return (sent, mss);
            }
            while let Some(size) = probe.poll_probe(now) {
                sent.push((size, (now - t0).as_millis()));
                if refused.contains(&size) {
                    probe.on_too_big(size);
                }
            }
            if let Some(t) = probe.poll_timeout() {
                now = now.max(t);
                probe.on_timeout(now);
            }
        }
        panic!("the search did not end: {sent:?}");
    }

    #[test]
    fn sizes_are_the_paths_largest_first_below_the_cap() {
        // 1446 payload bytes fill an Ethernet frame; a cap below several
        // sizes makes them one. Checked to fail with the IP and UDP headers
        // left out of `payload_for`, and with the duplicate kept.
        let v4 = PathProbe::new(MAX_MSS, false);
        assert_eq!(&v4.sizes[..v4.count], &[MAX_MSS, 8946, 1446]);
        let v6 = PathProbe::new(MAX_MSS, true);
        assert_eq!(&v6.sizes[..v6.count], &[65_461, 8926, 1426]);
        let capped = PathProbe::new(4000, false);
        assert_eq!(&capped.sizes[..capped.count], &[4000, 1446]);
        // A cap at the floor or below leaves nothing to try.
        assert_eq!(PathProbe::new(MIN_MSS, false).result(), Some(MIN_MSS));
        assert_eq!(PathProbe::new(500, false).result(), Some(500));
    }

    #[test]
    fn each_size_unanswered_is_tried_three_times_then_the_floor_is_used() {
        // Checked to fail with a size given up after two tries, with one
        // never given up, and with `result` never falling to the floor.
        let (sent, mss) = unanswered(PathProbe::new(MAX_MSS, false), &[]);
        let at = |size, from: u128| [(size, from), (size, from + 150), (size, from + 300)];
        let expected: Vec<_> = [at(MAX_MSS, 0), at(8946, 450), at(1446, 900)].concat();
        assert_eq!(sent, expected);
        assert_eq!(mss, MIN_MSS);
    }

    #[test]
    fn a_size_the_host_refuses_is_left_at_once() {
        // Checked to fail with `on_too_big` doing nothing (the next size
        // would wait out the refused probe's three waits).
        let (sent, mss) = unanswered(PathProbe::new(MAX_MSS, false), &[MAX_MSS, 8946]);
        assert_eq!(&sent[..3], &[(MAX_MSS, 0), (8946, 0), (1446, 0)]);
        assert_eq!(mss, MIN_MSS);
    }

    #[test]
    fn only_an_answer_to_the_size_being_tried_ends_the_search() {
        // Checked to fail with `on_ack` taking any size (the path would be
        // credited with a size it was never shown to carry).
        let now = Instant::now();
        let mut probe = PathProbe::new(MAX_MSS, false);
        probe.on_ack(MAX_MSS);
        assert_eq!(probe.result(), None, "nothing was probed yet");
        assert_eq!(probe.poll_probe(now), Some(MAX_MSS));
        probe.on_ack(1446);
        probe.on_ack(8946);
        assert_eq!(probe.result(), None);
        assert_eq!(probe.poll_probe(now), None, "the probe out is waited for");
        probe.on_ack(MAX_MSS);
        assert_eq!(probe.result(), Some(MAX_MSS));
        assert_eq!(probe.poll_probe(now), None);
        assert_eq!(probe.poll_timeout(), None);
    }
}
