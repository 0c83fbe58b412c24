//! Unit tests of the sender: acknowledgements, losses and timeouts fed by hand.

use super::*;
use crate::congestion::Mode;

/// A Selective Repeat sender with ten packets out at `t0` and an RTT of
/// 100 ms measured on an earlier packet.
fn ten_out(t0: Instant) -> Sender {
    let mut cfg = Config::new(Scheme::SelectiveRepeat, 64);
    cfg.mss = 100;
    let mut s = Sender::new(cfg, 0, 0, 100 * 11, t0);
    let first = s.poll_transmit(t0).expect("a packet");
    assert_eq!(first.seq, 0);
    let t1 = t0 + Duration::from_millis(100);
    s.on_ack(
        t1,
        &Ack {
            cum: 1,
            ranges: vec![],
            dropped: 0,
        },
    );
    for _ in 0..10 {
        assert!(s.poll_transmit(t1).is_some());
    }
    s
}

/// Sequence numbers of the retransmissions `s` sends at `t`.
fn resends(s: &mut Sender, t: Instant) -> Vec<u32> {
    std::iter::from_fn(|| s.poll_transmit(t))
        .filter(|t| t.retransmission)
        .map(|t| t.seq)
        .collect()
}

/// Fires the tail-loss probe of a silent flight (two smoothed RTTs after
/// the latest packet, ahead of the timeout): the newest packet out goes
/// again, alone, and the window stays. Returns when it went.
fn past_tail_probe(s: &mut Sender) -> Instant {
    let at = s.poll_timeout().expect("a timer");
    let cwnd = s.controller().cwnd();
    s.on_timeout(at);
    let probe: Vec<(u32, bool)> = std::iter::from_fn(|| s.poll_transmit(at))
        .map(|t| (t.seq, t.retransmission))
        .collect();
    assert_eq!(probe, [(10, true)], "the newest packet out, once");
    assert_eq!((s.timeouts(), s.tail_probes()), (0, 1));
    assert_eq!(s.controller().cwnd(), cwnd, "a probe is not a timeout");
    at
}

fn sack(cum: u32, ranges: &[(u32, u32)]) -> Ack {
    Ack {
        cum,
        ranges: ranges.to_vec(),
        dropped: 0,
    }
}

#[test]
fn a_packet_overtaken_by_two_is_reordered_not_lost() {
    let t0 = Instant::now();
    let mut s = ten_out(t0);
    let t = t0 + Duration::from_millis(150);
    // 1 is missing, 2 and 3 arrived.
    s.on_ack(t, &sack(1, &[(2, 4)]));
    assert_eq!(s.poll_transmit(t), None, "two later packets are not proof");
    // A third later packet is.
    s.on_ack(t, &sack(1, &[(2, 5)]));
    let again = s.poll_transmit(t).expect("packet 1 resent");
    assert_eq!((again.seq, again.retransmission), (1, true));
    assert_eq!(s.timeouts(), 0);
}

#[test]
fn losses_are_resent_without_shrinking_the_window() {
    let t0 = Instant::now();
    let mut s = ten_out(t0);
    let before = s.controller().cwnd();
    let t = t0 + Duration::from_millis(150);
    // Packets 1 and 2 lost, 3..6 acknowledged.
    s.on_ack(t, &sack(1, &[(3, 7)]));
    assert!(
        s.controller().cwnd() >= before,
        "random loss is not congestion"
    );
    let resent = resends(&mut s, t);
    assert_eq!(resent, [1, 2]);
}

#[test]
fn a_late_ack_of_an_original_does_not_pass_for_its_resend() {
    let t0 = Instant::now();
    let mut s = ten_out(t0);
    // The flight's acks are late: the tail probe, then the timeout
    // resends packets 1 and 2.
    past_tail_probe(&mut s);
    let due = s.poll_timeout().expect("a timer");
    s.on_timeout(due);
    assert_eq!(std::iter::from_fn(|| s.poll_transmit(due)).count(), 2);
    // Moments later the originals' acks come (1..=3). They must not be
    // taken for the resends' (sent after 4..=10, which would make all
    // of those look lost at once).
    let t = due + Duration::from_millis(5);
    s.on_ack(t, &sack(4, &[]));
    let resent = resends(&mut s, t);
    assert_eq!(resent, Vec::<u32>::new(), "nothing else is lost");
}

#[test]
fn a_probe_timeout_sends_two_probes_whose_ack_repairs_the_flight() {
    let t0 = Instant::now();
    let mut s = ten_out(t0);
    // The whole flight (packets 1..=10) is lost, and the tail probe too.
    let probed = past_tail_probe(&mut s);
    let due = s.poll_timeout().expect("a timer");
    assert!(due > probed, "one probe, then the timeout");
    s.on_timeout(due);
    assert_eq!(s.timeouts(), 1);
    let probes: Vec<u32> = std::iter::from_fn(|| s.poll_transmit(due))
        .map(|t| t.seq)
        .collect();
    assert_eq!(probes, [1, 2], "the two oldest, beyond the window");
    // The probes arrive: everything sent before them is shown lost at
    // once, and the window the model had returns.
    let t = due + Duration::from_millis(100);
    s.on_ack(t, &sack(3, &[]));
    assert!(s.controller().cwnd() > crate::congestion::MIN_CWND);
    let resent = resends(&mut s, t);
    assert_eq!(resent, (3..=10).collect::<Vec<u32>>());
    assert_eq!(s.timeouts(), 1, "one timeout for the whole flight");
}

#[test]
fn a_packet_missing_for_nine_eighths_of_a_round_trip_is_lost() {
    let t0 = Instant::now();
    let mut s = ten_out(t0);
    let t = t0 + Duration::from_millis(150);
    s.on_ack(t, &sack(1, &[(2, 4)]));
    assert_eq!(s.poll_transmit(t), None);
    // Sent at 100 ms; lost by time 9/8 of the RTT later (the RTT is
    // about 94 ms now: 100 ms, then a 50 ms sample from packets 2 and 3).
    let due = s.poll_timeout().expect("a loss timer");
    let rtt_ms = 100.0 * 7.0 / 8.0 + 50.0 / 8.0;
    let want =
        t0 + Duration::from_millis(100) + Duration::from_secs_f64(rtt_ms * 9.0 / 8.0 / 1000.0);
    assert!(
        due.max(want) - due.min(want) < Duration::from_micros(10),
        "{due:?} vs {want:?}"
    );
    s.on_timeout(due - Duration::from_micros(10));
    assert_eq!(s.poll_transmit(due), None, "not before its time");
    s.on_timeout(due);
    let again = s.poll_transmit(due).expect("packet 1 resent");
    assert_eq!(again.seq, 1);
    assert_eq!(s.timeouts(), 0, "found lost by time, not by the RTO");
    // Resent, it is judged again from its new sending only.
    s.on_ack(due, &sack(1, &[(2, 11)]));
    assert_eq!(s.poll_transmit(due), None);
}

/// A Selective Repeat sender of `packets` 100-byte packets, holding
/// packets back against optimistic acknowledgements.
fn checking(packets: u64, t0: Instant) -> Sender {
    let mut cfg = Config::new(Scheme::SelectiveRepeat, 1024);
    cfg.mss = 100;
    let mut s = Sender::new(cfg, 0, 0, 100 * packets, t0);
    s.check_acks([7; 32]);
    s
}

#[test]
fn acknowledging_what_was_sent_but_never_arrived_ends_the_transfer() {
    // A receiver that acknowledges every packet as soon as it is sent,
    // without waiting for it to arrive: to make the sender outrun the
    // path. It acknowledges the gap a held packet leaves, as it would any
    // loss it filled in.
    let t0 = Instant::now();
    let mut s = checking(10_000, t0);
    let mut t = t0;
    let mut sent = 0u32;
    for _ in 0..2_000 {
        t += Duration::from_millis(1);
        while let Some(p) = s.poll_transmit(t) {
            sent = sent.max(p.seq + 1);
        }
        s.on_ack(t, &sack(sent, &[]));
        if s.failure().is_some() {
            break;
        }
    }
    assert_eq!(s.failure(), Some(&ArqError::OptimisticAck));
    assert!(
        s.acked_bytes() < 100 * 300,
        "caught within the first few hundred packets, not after {} bytes",
        s.acked_bytes()
    );
}

#[test]
fn an_honest_receiver_gets_the_held_packets_late_and_everything_arrives() {
    // Acknowledging only what was sent, gaps shown as gaps: the held
    // packets go once an acknowledgement shows them missing, as
    // first sendings, not as resends; the transfer ends.
    let t0 = Instant::now();
    let mut s = checking(2_000, t0);
    let mut got = std::collections::BTreeSet::new();
    let mut t = t0;
    let mut in_order = true;
    for _ in 0..10_000 {
        t += Duration::from_millis(1);
        while let Some(p) = s.poll_transmit(t) {
            assert!(!p.retransmission, "nothing is lost: nothing is resent");
            in_order &= got.last().is_none_or(|&l| p.seq > l);
            got.insert(p.seq);
        }
        let cum = (0..).find(|q| !got.contains(q)).unwrap_or(0);
        let above: Vec<u32> = got.range(cum..).copied().collect();
        let ranges: Vec<(u32, u32)> = above
            .chunk_by(|a, b| b == &(a + 1))
            .map(|r| (r[0], r[r.len() - 1] + 1))
            .take(MAX_ACK_RANGES)
            .collect();
        s.on_ack(t, &sack(cum, &ranges));
        if s.is_done() {
            break;
        }
    }
    assert!(s.is_done(), "{:?}", s.failure());
    assert_eq!(got.len(), 2_000);
    assert!(!in_order, "some packets were held back and sent late");
}

/// A tail-loss probe that draws an acknowledgement repairs the tail from
/// it: the packets before the probed one are shown lost by time, with no
/// timeout, and no second probe follows while the first is unanswered.
#[test]
fn a_silent_tail_is_repaired_by_one_probe_without_a_timeout() {
    let t0 = Instant::now();
    let mut s = ten_out(t0);
    let probed = past_tail_probe(&mut s);
    // No second probe: the next timer is the timeout.
    let next = s.poll_timeout().expect("a timer");
    assert!(next >= probed + s.rtt().rto(), "a second probe at once");
    // The probe arrives; 1..=9 were lost.
    let t = probed + Duration::from_millis(100);
    s.on_ack(t, &sack(1, &[(10, 11)]));
    assert_eq!(resends(&mut s, t), (1..=9).collect::<Vec<u32>>());
    assert_eq!(s.timeouts(), 0);
}

/// Once a packet came after one sent after it, the path reorders: three
/// later packets acknowledged no longer make a packet lost, only time
/// does (an RTT and the reordering window, a quarter of the smallest
/// RTT). A resend that loss detection made and that the first copy's
/// acknowledgement beat (too soon for the resend's own) is counted
/// spurious and widens the window.
#[test]
fn a_path_seen_to_reorder_is_judged_by_time_and_learns_from_spurious_resends() {
    let t0 = Instant::now();
    let mut s = ten_out(t0);
    // Every RTT 100 ms: the packets went at 100 ms.
    let t = t0 + Duration::from_millis(200);
    // 2 came before 1: reordering.
    s.on_ack(t, &sack(1, &[(2, 3)]));
    s.on_ack(t, &sack(3, &[]));
    // 3 is missing, 4..=7 came: by count it would be lost; not now.
    s.on_ack(t, &sack(3, &[(4, 8)]));
    assert_eq!(resends(&mut s, t), Vec::<u32>::new());
    // Lost once an RTT (100 ms) and a quarter of the smallest (25 ms)
    // have passed since it went at 100 ms.
    let window = t0 + Duration::from_millis(100 + 100 + 25);
    let early = window - Duration::from_millis(2);
    s.on_timeout(early);
    assert_eq!(resends(&mut s, early), Vec::<u32>::new());
    s.on_timeout(window);
    assert_eq!(resends(&mut s, window), [3]);
    // The first copy's ack comes 1 ms after the resend: spurious.
    let late = window + Duration::from_millis(1);
    s.on_ack(late, &sack(8, &[]));
    assert_eq!(s.spurious_retransmissions(), 1);
    assert_eq!(s.reordering.mult, 2, "the window widened to half the RTT");
}

/// An older acknowledgement that arrives after a newer, full one (one
/// that had to leave ranges out) does not open the ranges left out to
/// loss detection: the packets there that arrived are not resent.
/// (Checked to fail before: the packets in the left-out ranges went again,
/// arrived or not.)
#[test]
fn a_stale_acknowledgement_after_a_full_one_resends_nothing_left_out() {
    let t0 = Instant::now();
    let mut cfg = Config::new(Scheme::SelectiveRepeat, 4_096);
    cfg.mss = 100;
    let mut s = Sender::new(cfg, 0, 0, 100 * 1_000_000, t0);
    // Every packet acknowledged 100 ms after it went, until 600 are out.
    let rtt = Duration::from_millis(100);
    let mut flight: VecDeque<(u32, Instant)> = VecDeque::new();
    let mut t = t0;
    for _ in 0..20_000 {
        t += Duration::from_millis(1);
        while let Some(p) = s.poll_transmit(t) {
            flight.push_back((p.seq, t));
        }
        if flight.len() >= 600 {
            break;
        }
        let mut cum = None;
        while flight.front().is_some_and(|&(_, at)| at + rtt <= t) {
            cum = flight.pop_front().map(|(q, _)| q + 1);
        }
        if let Some(cum) = cum {
            s.on_ack(t, &sack(cum, &[]));
        }
    }
    assert!(flight.len() >= 600, "{} out", flight.len());
    let (b, e) = (flight[0].0, flight[flight.len() - 1].0 + 1);
    // Every other packet of the flight arrived: more ranges than an ack
    // lists. The full ack lists the oldest and the newest.
    let all: Vec<(u32, u32)> = (b + 1..e).step_by(2).map(|i| (i, i + 1)).collect();
    let mut listed: Vec<(u32, u32)> = all[..MAX_ACK_RANGES - 1].to_vec();
    listed.push(all[all.len() - 1]);
    let covered = listed[MAX_ACK_RANGES - 2].1;
    // What goes again over the next `ms` milliseconds (no timer runs).
    let drain = |s: &mut Sender, from: Instant, ms: u64| -> Vec<u32> {
        (0..ms)
            .flat_map(|i| resends(s, from + Duration::from_millis(i)))
            .collect()
    };
    let t2 = t + rtt;
    s.on_ack(t2, &sack(b, &listed));
    let lost = drain(&mut s, t2, 5);
    assert!(!lost.is_empty());
    let arrived = |q: u32| (q - b) % 2 == 1;
    assert!(lost.iter().all(|&q| q < covered && !arrived(q)), "{lost:?}");
    // An ack from when only the first two had come, late.
    let t3 = t2 + Duration::from_millis(5);
    s.on_ack(t3, &sack(b, &[(b + 1, b + 2), (b + 3, b + 4)]));
    let again = drain(&mut s, t3, 300);
    assert!(
        !again.iter().any(|&q| arrived(q)),
        "arrived packets resent: {again:?}"
    );
}

/// Runs `s` from `t0` to `until` over a lossless path of `rate` bytes a
/// second and a 20 ms round trip: each packet is acknowledged (all before
/// it too) once the bottleneck has passed it and 20 ms on. Returns the
/// bytes acknowledged meanwhile.
fn over_a_bottleneck(s: &mut Sender, t0: Instant, rate: f64, until: Instant) -> u64 {
    let first = s.acked_bytes();
    let mut acks: VecDeque<(Instant, u32)> = VecDeque::new();
    let (mut now, mut busy) = (t0, t0);
    for _ in 0..1_000_000 {
        while let Some(t) = s.poll_transmit(now) {
            busy = busy.max(now) + Duration::from_secs_f64(f64::from(t.len) / rate);
            acks.push_back((busy + Duration::from_millis(20), t.seq.wrapping_add(1)));
        }
        let next = [acks.front().map(|a| a.0), s.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(next) if next <= until => now = now.max(next),
            _ => break,
        }
        while let Some(&(at, cum)) = acks.front().filter(|a| a.0 <= now) {
            acks.pop_front();
            s.on_ack(at, &sack(cum, &[]));
        }
        s.on_timeout(now);
    }
    s.acked_bytes() - first
}

#[test]
fn a_sender_carrying_on_with_smaller_packets_keeps_the_paths_rate() {
    // After a change of packet size (a black hole found, or a path healed)
    // the transfer goes on in a new run of the ARQ on the same path. Begun
    // afresh, that run went through startup again: ten packets, doubling
    // each round trip, and its overshoot. Carried on, it keeps the rate:
    // the same bytes a second, in packets an eighth the size.
    let t0 = Instant::now();
    let rate = 12.5e6; // 100 Mbit/s
    let total = 1 << 40;
    let mut big = Config::new(Scheme::SelectiveRepeat, 16_384);
    big.mss = 8_000;
    let mut old = Sender::new(big, 0, 0, total, t0);
    let t1 = t0 + Duration::from_secs(3);
    over_a_bottleneck(&mut old, t0, rate, t1);
    let learnt = old.controller().bandwidth() * 8_000.0;
    assert!(learnt > rate * 0.9, "the old run learnt {learnt} B/s");

    let mut small = Config::new(Scheme::SelectiveRepeat, 16_384);
    small.mss = 1_000;
    let from = old.acked_bytes();
    let mut carried = Sender::carry_on(small.clone(), 1 << 20, from, total, &old, t1);
    let m = carried.controller();
    assert_ne!(m.mode(), Mode::Startup);
    let kept = m.bandwidth() * 1_000.0;
    assert!(
        (kept / learnt - 1.0).abs() < 1e-6,
        "{kept} B/s against {learnt}"
    );
    assert!(m.cwnd() * 1_000 >= old.controller().cwnd() * 8_000);

    // The first 200 ms of each, over the same path: the carried-on run
    // moves what the path carries in that time (less one round trip),
    // the fresh one a fraction of it.
    let t2 = t1 + Duration::from_millis(200);
    let moved = over_a_bottleneck(&mut carried, t1, rate, t2) as f64;
    let mut fresh = Sender::new(small, 1 << 20, from, total, t1);
    let moved_fresh = over_a_bottleneck(&mut fresh, t1, rate, t2) as f64;
    let path = rate * 0.18;
    assert!(moved > path * 0.9, "carried on: {moved} of {path} bytes");
    assert!(
        moved_fresh < path * 0.8,
        "afresh: {moved_fresh} of {path} bytes"
    );
}
