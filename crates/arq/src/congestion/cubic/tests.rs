//! CUBIC fed acknowledgements directly, on a simulated clock. Each test
//! names the deliberate break of `cubic.rs` it was seen failing against.

use super::*;
use crate::rate::RateSample;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The acknowledgement at `now` of `acked` packets, the newest of them
/// sent at `sent` (an RTT sample of the time between).
fn acked(now: Instant, sent: Instant, acked: u64) -> AckEvent {
    let rtt = now - sent;
    AckEvent {
        sample: Some(RateSample {
            delivered: acked,
            interval: rtt,
            prior_delivered: 0,
            app_limited: false,
            since_sent: rtt,
        }),
        newly_acked: acked,
        newly_lost: 0,
        lost_sent_at: None,
        delivered: 0,
        in_flight: 0,
        rtt: Some(rtt),
        receiver_dropped: 0,
    }
}

/// An acknowledgement that shows the packet sent at `sent` lost.
fn lost(sent: Instant) -> AckEvent {
    AckEvent {
        sample: None,
        newly_acked: 0,
        newly_lost: 1,
        lost_sent_at: Some(sent),
        delivered: 0,
        in_flight: 0,
        rtt: None,
        receiver_dropped: 0,
    }
}

/// A flow that slow-started from 10 to `w` packets over a path of `rtt`
/// (starting at `t0`) and then lost one: cut at the returned time.
fn cut_at(t0: Instant, w: u64, rtt: Duration) -> (Cubic, Instant) {
    let mut c = Cubic::new(100_000);
    let t1 = t0 + rtt;
    c.on_ack(t1, &acked(t1, t0, w - 10));
    assert_eq!(
        c.cwnd(),
        w,
        "slow start adds a packet per packet acknowledged"
    );
    c.on_ack(t1, &lost(t0));
    (c, t1)
}

/// Acknowledges packets one by one from `from` until `until` as a path
/// of `rtt` returns them: a window's worth per round trip, each sent one
/// RTT before its acknowledgement.
fn clocked(c: &mut Cubic, from: Instant, until: Instant, rtt: Duration) -> Instant {
    let mut now = from;
    while now < until {
        now += rtt / c.cwnd() as u32;
        c.on_ack(now, &acked(now, now - rtt, 1));
    }
    now
}

#[test]
fn a_loss_cuts_the_window_to_seven_tenths() {
    // Checked against BETA = 0.5 (Reno's cut).
    let (c, _) = cut_at(Instant::now(), 100, ms(100));
    assert_eq!(c.cwnd(), 70);
    assert_eq!(c.ssthresh, 70.0, "congestion avoidance from here");
    assert_eq!(c.w_max, 100.0, "the curve levels off where the cut came");
}

#[test]
fn the_window_grows_concave_up_to_w_max_then_convex() {
    // Checked against a linear curve (`powi(1)` in `w_cubic`): the window
    // then jumps to W_max within the first seconds and grows evenly after.
    let t0 = Instant::now();
    let rtt = ms(100);
    let (mut c, t1) = cut_at(t0, 1000, rtt);
    // The first round trip after the cut acknowledges packets sent before
    // it; the stage begins with the first one sent after.
    let start = t1 + rtt;
    let mut now = clocked(&mut c, t1, start, rtt);
    let mut w = vec![c.cwnd];
    for s in 1..=5 {
        now = clocked(&mut c, now, start + Duration::from_secs(3 * s), rtt);
        w.push(c.cwnd);
    }
    let inc: Vec<f64> = w.windows(2).map(|p| p[1] - p[0]).collect();
    // K = 9.1 s. 0-3 s, 3-6 s, 6-9 s: quick at first, slower toward W_max.
    assert!(
        inc[0] > 2.0 * inc[1] && inc[1] > 2.0 * inc[2],
        "concave below W_max: {w:?}"
    );
    // 9-12 s, 12-15 s: slow away from W_max, then quicker.
    assert!(inc[4] > 2.0 * inc[3], "convex above W_max: {w:?}");
    // The same flow stopped at K is back at W_max.
    let (mut at_k, t1) = cut_at(t0, 1000, rtt);
    let k = Duration::from_secs_f64((300.0 / C).cbrt());
    clocked(&mut at_k, t1, t1 + rtt + k, rtt);
    assert!(
        (at_k.cwnd - 1000.0).abs() < 10.0,
        "at K: {} packets",
        at_k.cwnd
    );
}

#[test]
fn fast_convergence_levels_off_lower_after_a_cut_below_w_max() {
    // Checked against a W_max always set to the window before the cut.
    let rtt = ms(100);
    let (mut c, t1) = cut_at(Instant::now(), 100, rtt);
    let t2 = clocked(&mut c, t1, t1 + 10 * rtt, rtt);
    let before = c.cwnd;
    assert!(before < 100.0, "still below W_max: {before}");
    c.on_ack(t2, &lost(t2 - rtt));
    assert!((c.w_max - before * 0.85).abs() < 1e-9, "W_max {}", c.w_max);
    assert!((c.cwnd - before * 0.7).abs() < 1e-9, "cwnd {}", c.cwnd);
}

#[test]
fn on_a_short_round_trip_the_window_is_renos() {
    // Checked against no Reno-friendly region (the window then follows
    // the curve, about 75 packets) and against α_cubic kept at 0.53 past
    // the window before the cut (about 175).
    let rtt = ms(1);
    let (mut c, t1) = cut_at(Instant::now(), 100, rtt);
    clocked(&mut c, t1, t1 + ms(200), rtt);
    // The curve is at 74 packets 0.2 s after a cut from 100 (K = 4.2 s);
    // Reno's estimate regains the 30 packets at 0.53 a round trip (57
    // round trips), then grows one a round trip: about 240 by now.
    assert!(
        (225.0..=250.0).contains(&c.cwnd),
        "cwnd {} after 200 round trips",
        c.cwnd
    );
}

#[test]
fn one_loss_episode_cuts_once() {
    // Checked against a cut at every loss (ignoring `lost_sent_at`), and
    // against growth on acknowledgements of packets sent before the cut.
    let (mut c, t1) = cut_at(Instant::now(), 100, ms(100));
    // More of the flight sent before the cut turns out lost: the same
    // episode.
    c.on_ack(t1 + ms(10), &lost(t1 - ms(1)));
    assert_eq!(c.cwnd, 70.0, "a second cut in one episode");
    // Acknowledgements of packets sent before the cut do not grow it.
    c.on_ack(t1 + ms(20), &acked(t1 + ms(20), t1 - ms(5), 10));
    assert_eq!(c.cwnd, 70.0, "grew in recovery");
    // A packet sent after the cut is acknowledged: the episode is over.
    c.on_ack(t1 + ms(120), &acked(t1 + ms(120), t1 + ms(20), 1));
    assert!(c.cwnd > 70.0);
    // A packet sent after the cut is lost: a new episode, a new cut.
    let w = c.cwnd;
    c.on_ack(t1 + ms(130), &lost(t1 + ms(30)));
    assert!((c.cwnd - 0.7 * w).abs() < 1e-9, "cwnd {}", c.cwnd);
}

#[test]
fn a_timeout_falls_to_one_packet_and_slow_starts_back() {
    // Checked against a second timeout cutting the threshold again (from
    // the one-packet window: to 2).
    let rtt = ms(100);
    let t0 = Instant::now();
    let mut c = Cubic::new(100_000);
    c.on_ack(t0 + rtt, &acked(t0 + rtt, t0, 90));
    let t1 = t0 + ms(600);
    c.on_timeout(t1);
    assert_eq!((c.cwnd(), c.ssthresh), (1, 70.0));
    c.on_timeout(t1 + ms(600));
    assert_eq!((c.cwnd(), c.ssthresh), (1, 70.0), "one threshold a run");
    // Slow start back to 70, then the curve from there (K = 0, §4.8).
    let t2 = t1 + ms(600);
    clocked(&mut c, t2, t2 + 12 * rtt, rtt);
    let e = c.epoch.expect("congestion avoidance");
    assert_eq!(e.k, 0.0);
    assert!((70.0..72.0).contains(&c.w_max), "W_max {}", c.w_max);
}
