//! The ARQ over a simulated link: seeded loss, duplication, reordering,
//! corruption and delay, on a simulated clock. Every case must deliver the
//! data byte-exact.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use chatdrop_arq::congestion::{Controller, Cubic};
use chatdrop_arq::{Ack, ArqError, Config, Frame, Receiver, Scheme, Sender, Transmit, Verdict};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How one direction of the link misbehaves.
#[derive(Debug, Clone, Copy)]
struct Link {
    loss: f64,
    dup: f64,
    /// Chance a packet is held back behind later ones.
    reorder: f64,
    corrupt: f64,
    delay: Duration,
    jitter: Duration,
    /// The jitter is a delay that wanders over time, not per packet: a new
    /// one every [`WANDER_EVERY`], and a packet never arrives before one
    /// sent ahead of it.
    in_order: bool,
    /// Bottleneck rate in bits a second (0: none), with a drop-tail queue of
    /// `queue` bytes in front of it.
    rate: u64,
    queue: u64,
}

impl Link {
    fn clean(delay_ms: u64) -> Link {
        Link {
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::ZERO,
            in_order: false,
            rate: 0,
            queue: 0,
        }
    }
    /// A bottleneck of `mbit` Mbit/s, `delay_ms` each way, and a queue of
    /// one bandwidth-delay product.
    fn bottleneck(mbit: u64, delay_ms: u64) -> Link {
        let rate = mbit * 1_000_000;
        Link {
            rate,
            queue: rate / 8 * 2 * delay_ms / 1000,
            ..Link::clean(delay_ms)
        }
    }
    fn lossy(loss: f64) -> Link {
        Link {
            loss,
            ..Link::clean(10)
        }
    }
    fn nasty(loss: f64) -> Link {
        Link {
            loss,
            dup: 0.05,
            reorder: 0.1,
            corrupt: 0.02,
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            in_order: false,
            rate: 0,
            queue: 0,
        }
    }
}

#[derive(Debug)]
struct Outcome {
    received: Vec<u8>,
    sent: u64,
    retransmissions: u64,
    /// Data packets that reached the receiver when it had them already: on
    /// a link that duplicates nothing, retransmissions that were not
    /// needed (the first copy was late, not lost).
    spurious: u64,
    timeouts: u64,
    sim_time: Duration,
    sender_failure: Option<ArqError>,
    receiver_failure: Option<ArqError>,
}

/// A datagram in flight: `to_receiver` tells the direction, then the flow.
type InFlight = Reverse<(Instant, u64, bool, usize, Vec<u8>)>;

struct Net {
    rng: ChaCha8Rng,
    heap: BinaryHeap<InFlight>,
    tie: u64,
    /// When each direction's bottleneck is free again (to the receiver,
    /// to the sender).
    busy: [Instant; 2],
    /// Packets dropped by a full bottleneck queue.
    overflowed: u64,
    /// When the latest packet each way arrives (for in-order jitter).
    last_at: [Instant; 2],
    /// Each way, the wandering delay of in-order jitter and until when.
    wander: [(Duration, Instant); 2],
}

/// How long a wandering delay (see [`Link::in_order`]) holds.
const WANDER_EVERY: Duration = Duration::from_millis(20);

impl Net {
    /// A link with nothing in flight at `now`, its randomness from `seed`.
    fn new(seed: u64, now: Instant) -> Net {
        Net {
            rng: ChaCha8Rng::seed_from_u64(seed),
            heap: BinaryHeap::new(),
            tie: 0,
            busy: [now; 2],
            overflowed: 0,
            last_at: [now; 2],
            wander: [(Duration::ZERO, now); 2],
        }
    }

    /// Sends `frame` over `link`, sealed with a CRC that stands in for the
    /// AEAD of the real transport (a corrupted datagram fails it).
    fn send(&mut self, now: Instant, link: &Link, to_receiver: bool, frame: &Frame) {
        self.send_flow(now, link, to_receiver, 0, frame)
    }

    /// [`Net::send`] for one of several flows sharing the link.
    fn send_flow(
        &mut self,
        now: Instant,
        link: &Link,
        to_receiver: bool,
        flow: usize,
        frame: &Frame,
    ) {
        let mut bytes = Vec::new();
        frame.encode(&mut bytes);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        if self.rng.gen_bool(link.loss) {
            return;
        }
        let mut now = now;
        if link.rate > 0 {
            let dir = usize::from(!to_receiver);
            let start = self.busy[dir].max(now);
            let backlog = (start - now).as_secs_f64() * link.rate as f64 / 8.0;
            if backlog > link.queue as f64 {
                self.overflowed += 1;
                return; // drop-tail
            }
            let wire = (bytes.len() + 28) as f64 * 8.0 / link.rate as f64;
            self.busy[dir] = start + Duration::from_secs_f64(wire);
            now = self.busy[dir];
        }
        let copies = if self.rng.gen_bool(link.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut b = bytes.clone();
            if self.rng.gen_bool(link.corrupt) {
                let i = self.rng.gen_range(0..b.len());
                b[i] ^= 1 << self.rng.gen_range(0..8);
            }
            let dir = usize::from(!to_receiver);
            let jitter = if link.in_order {
                if now >= self.wander[dir].1 {
                    let d = link.jitter.mul_f64(self.rng.gen::<f64>());
                    self.wander[dir] = (d, now + WANDER_EVERY);
                }
                self.wander[dir].0
            } else {
                link.jitter.mul_f64(self.rng.gen::<f64>())
            };
            let mut at = now + link.delay + jitter;
            if self.rng.gen_bool(link.reorder) {
                at += link.delay * self.rng.gen_range(1..4);
            }
            if link.in_order {
                at = at.max(self.last_at[dir]);
            }
            self.last_at[dir] = self.last_at[dir].max(at);
            self.tie += 1;
            self.heap
                .push(Reverse((at, self.tie, to_receiver, flow, b)));
        }
    }
}

fn open(b: &[u8]) -> Option<&[u8]> {
    let (body, crc) = b.split_at(b.len().checked_sub(4)?);
    (crc32fast::hash(body).to_be_bytes() == crc).then_some(body)
}

/// What a test sees of a transfer as it runs, and which data packets it
/// has the link lose.
trait Watch {
    /// The sender sends `t`; false: the link loses it.
    fn sent(&mut self, _t: &Transmit) -> bool {
        true
    }
    /// An acknowledgement reached the sender.
    fn acked(&mut self, _ack: &Ack) {}
}

impl Watch for () {}

fn transfer(seed: u64, cfg: Config, isn: u32, data: &[u8], fwd: Link, back: Link) -> Outcome {
    watched(seed, cfg, isn, data, fwd, back, &mut ())
}

/// The secret that picks the packets a sender holds back, from a test's
/// seed.
fn check_seed(seed: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s
}

/// [`transfer`], showing `watch` every data packet sent and every
/// acknowledgement that reaches the sender.
fn watched(
    seed: u64,
    cfg: Config,
    isn: u32,
    data: &[u8],
    fwd: Link,
    back: Link,
    watch: &mut dyn Watch,
) -> Outcome {
    let t0 = Instant::now();
    let mut now = t0;
    let mut ends = Pair {
        sender: Sender::new(cfg.clone(), isn, 0, data.len() as u64, now),
        receiver: Receiver::new(cfg, isn, 0, data.len() as u64, now),
    };
    // As the transfer sessions run it: with packets held back against
    // optimistic acknowledgements, which an honest receiver never sees.
    ends.sender.check_acks(check_seed(seed));
    let mut net = Net::new(seed, now);
    let mut out = vec![0u8; data.len()];
    let mut written = vec![false; data.len()];
    let mut spurious = 0;
    for _step in 0..5_000_000 {
        while let Some(t) = ends.sender.poll_transmit(now) {
            if !watch.sent(&t) {
                continue;
            }
            let payload = &data[t.offset as usize..(t.offset + t.len as u64) as usize];
            let frame = Frame::Data {
                seq: t.seq,
                payload,
            };
            net.send(now, &fwd, true, &frame);
        }
        while let Some(ack) = ends.receiver.poll_ack() {
            net.send(now, &back, false, &Frame::Ack(ack));
        }
        let finished = ends.sender.is_done() && ends.receiver.is_complete();
        let failed = ends.sender.failure().is_some() || ends.receiver.failure().is_some();
        if finished || failed {
            break;
        }
        let next = [
            net.heap.peek().map(|Reverse((t, ..))| *t),
            ends.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = now.max(next);
        while net.heap.peek().is_some_and(|Reverse((t, ..))| *t <= now) {
            let Reverse((_, _, to_receiver, _, bytes)) = net.heap.pop().unwrap();
            let Some(body) = open(&bytes) else { continue };
            match (to_receiver, Frame::decode(body)) {
                (true, Ok(Frame::Data { seq, payload })) => {
                    match ends.receiver.on_data(now, seq, payload.len()) {
                        Verdict::Write { offset } => {
                            let at = offset as usize;
                            assert!(!written[at], "the receiver wrote offset {at} twice");
                            written[at] = true;
                            out[at..at + payload.len()].copy_from_slice(payload);
                        }
                        Verdict::Duplicate => spurious += 1,
                        _ => {}
                    }
                }
                (false, Ok(Frame::Ack(ack))) => {
                    watch.acked(&ack);
                    ends.sender.on_ack(now, &ack);
                }
                (_, other) => panic!("unexpected {other:?}"),
            }
        }
        ends.on_timeout(now);
    }
    let (sent, retransmissions) = ends.sender.stats();
    Outcome {
        received: if ends.receiver.is_complete() {
            out
        } else {
            Vec::new()
        },
        sent,
        retransmissions,
        spurious,
        timeouts: ends.sender.timeouts(),
        sim_time: now - t0,
        sender_failure: ends.sender.failure().cloned(),
        receiver_failure: ends.receiver.failure().cloned(),
    }
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut d = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut d);
    d
}

/// The seeds every test of how well the transport does (rather than
/// whether it delivers) runs over. A seed draws the link's random losses
/// and, through the flows' first sequence numbers ([`isn_of`]), where
/// each chatdrop flow starts its probing cycle: these five give five
/// different starts to a flow alone and to the second of two flows. (On a
/// link without random loss the start of the cycle is all a seed changes.)
const SEEDS: [u64; 5] = [1, 3, 5, 8, 9];

/// The first sequence number of flow `i` of a run with `seed`.
fn isn_of(seed: u64, i: usize) -> u32 {
    (seed as u32)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(1000 * i as u32)
}

fn cfg(scheme: Scheme, window: u32) -> Config {
    let mut c = Config::new(scheme, window);
    c.mss = 1000;
    c.idle_timeout = Duration::from_secs(30);
    c
}

#[test]
fn every_scheme_window_and_loss_delivers_byte_exact() {
    let file = data(60_500, 1);
    let mut case = 0;
    for scheme in [Scheme::GoBackN, Scheme::SelectiveRepeat] {
        for window in [1, 2, 3, 8, 16, 64] {
            for loss in [0.0, 0.01, 0.05, 0.1, 0.2, 0.3] {
                case += 1;
                let link = Link::lossy(loss);
                let o = transfer(case, cfg(scheme, window), 1000, &file, link, link);
                assert!(
                    o.received == file,
                    "{scheme:?} w={window} loss={loss}: not delivered ({:?} {:?}) after {:?}",
                    o.sender_failure,
                    o.receiver_failure,
                    o.sim_time
                );
                if loss == 0.0 {
                    assert_eq!(
                        o.retransmissions, 0,
                        "{scheme:?} w={window}: no loss, no resend"
                    );
                }
            }
        }
    }
}

#[test]
fn duplication_reordering_corruption_and_jitter() {
    let file = data(100_000, 2);
    for (i, scheme) in [Scheme::GoBackN, Scheme::SelectiveRepeat]
        .into_iter()
        .enumerate()
    {
        for window in [1, 4, 16, 100] {
            for loss in [0.0, 0.05, 0.2] {
                let seed = 100 + i as u64 * 1000 + window as u64 * 10 + (loss * 100.0) as u64;
                let o = transfer(
                    seed,
                    cfg(scheme, window),
                    7,
                    &file,
                    Link::nasty(loss),
                    Link::nasty(loss),
                );
                assert!(
                    o.received == file,
                    "{scheme:?} w={window} loss={loss}: {:?} {:?}",
                    o.sender_failure,
                    o.receiver_failure
                );
            }
        }
    }
}

#[test]
fn sequence_numbers_wrap() {
    let file = data(200_000, 3);
    for scheme in [Scheme::GoBackN, Scheme::SelectiveRepeat] {
        let o = transfer(
            9,
            cfg(scheme, 32),
            u32::MAX - 50,
            &file,
            Link::nasty(0.1),
            Link::nasty(0.1),
        );
        assert!(o.received == file, "{scheme:?} across the wrap");
    }
}

#[test]
fn odd_sizes() {
    for len in [0usize, 1, 999, 1000, 1001, 64_000] {
        let file = data(len, len as u64);
        for scheme in [Scheme::GoBackN, Scheme::SelectiveRepeat] {
            let o = transfer(
                len as u64,
                cfg(scheme, 4),
                0,
                &file,
                Link::lossy(0.1),
                Link::lossy(0.1),
            );
            assert!(o.received == file, "{scheme:?} len={len}");
        }
    }
}

#[test]
fn go_back_n_resends_more_than_selective_repeat() {
    // The same lossy link: Go-Back-N resends from each loss everything
    // sent after it (a window of 32 lets the flight grow to tens of
    // packets), Selective Repeat only what was lost (about 5% of 500
    // packets, and 5% of those again). A ratio of three is far below what
    // a flight of even four packets behind each loss makes; over the
    // seeds it ran 22-38.
    let file = data(500_000, 4);
    let link = Link::lossy(0.05);
    for seed in SEEDS {
        let isn = isn_of(seed, 0);
        let run = |scheme| transfer(seed, cfg(scheme, 32), isn, &file, link, Link::clean(10));
        let (gbn, sr) = (run(Scheme::GoBackN), run(Scheme::SelectiveRepeat));
        assert!(gbn.received == file && sr.received == file, "seed {seed}");
        assert!(
            gbn.retransmissions > 3 * sr.retransmissions,
            "seed {seed}: gbn {} vs sr {}",
            gbn.retransmissions,
            sr.retransmissions
        );
        assert!(sr.sent < gbn.sent, "seed {seed}");
    }
}

/// Checks, at every packet sent, that no more packets are out (sent and
/// not acknowledged to the sender) than the window allows, and that they
/// all lie within one window of the oldest one out.
struct WindowCap {
    isn: u32,
    window: u64,
    /// Packet indices out.
    out: std::collections::BTreeSet<u64>,
    /// The most out at once.
    most: u64,
}

impl Watch for WindowCap {
    fn sent(&mut self, t: &Transmit) -> bool {
        self.out.insert(u64::from(t.seq.wrapping_sub(self.isn)));
        let (first, last) = (self.out.first(), self.out.last());
        let span = first.zip(last).map_or(0, |(f, l)| l - f + 1);
        let n = self.out.len() as u64;
        assert!(
            n <= self.window && span <= self.window,
            "{n} packets out over {span} numbers, window {}",
            self.window
        );
        self.most = self.most.max(n);
        true
    }

    fn acked(&mut self, ack: &Ack) {
        let idx = |seq: u32| u64::from(seq.wrapping_sub(self.isn));
        self.out = self.out.split_off(&idx(ack.cum));
        for &(start, end) in &ack.ranges {
            for i in idx(start)..idx(end) {
                self.out.remove(&i);
            }
        }
    }
}

/// `-w` is a cap: however fast the controller would go, and whatever the
/// link loses, reorders or doubles, the packets out never exceed the
/// window at any moment. (Seen failing with the sender allowed one packet
/// past the window's end.)
#[test]
fn the_window_caps_the_packets_in_flight() {
    let file = data(200_000, 10);
    for scheme in [Scheme::GoBackN, Scheme::SelectiveRepeat] {
        // 16 is past the initial window: the controller grew into the cap.
        for window in [1, 3, 8, 16] {
            let isn = u32::MAX - 20;
            let mut cap = WindowCap {
                isn,
                window: u64::from(window),
                out: Default::default(),
                most: 0,
            };
            let link = Link::nasty(0.05);
            let o = watched(11, cfg(scheme, window), isn, &file, link, link, &mut cap);
            assert!(o.received == file, "{scheme:?} w={window}");
            // The cap was what held the flight, so the check had teeth.
            assert_eq!(cap.most, u64::from(window), "{scheme:?}: never reached");
        }
    }
}

/// Loses a seeded share of the data packets itself (the link is clean)
/// and records, for each packet sent, whether it was lost and the next
/// packet the Go-Back-N receiver is waiting for (it takes packets in order
/// only, so every packet after a lost one is thrown away).
struct GoBack {
    rng: ChaCha8Rng,
    loss: f64,
    /// The next packet the receiver takes, once everything sent so far
    /// has arrived.
    expected: u32,
    /// (sequence number, resent, lost, `expected` before it was sent).
    sent: Vec<(u32, bool, bool, u32)>,
}

impl Watch for GoBack {
    fn sent(&mut self, t: &Transmit) -> bool {
        let lost = self.rng.gen_bool(self.loss);
        self.sent
            .push((t.seq, t.retransmission, lost, self.expected));
        if !lost && t.seq == self.expected {
            self.expected += 1;
        }
        !lost
    }
}

/// Go-Back-N goes back to the loss: when its timer fires it resends from
/// the oldest packet the receiver lacks (the lost one) and runs on in
/// order over everything sent after it, which the receiver threw away.
/// (Seen failing with a go-back that starts one packet after the loss, and
/// with one that goes back a single packet from the newest sent.)
#[test]
fn go_back_n_goes_back_to_the_loss_and_resends_in_order() {
    let file = data(300_000, 11);
    for seed in SEEDS {
        let mut watch = GoBack {
            rng: ChaCha8Rng::seed_from_u64(seed),
            loss: 0.05,
            expected: 0,
            sent: Vec::new(),
        };
        let link = Link::clean(10);
        let c = cfg(Scheme::GoBackN, 16);
        let o = watched(seed, c, 0, &file, link, link, &mut watch);
        let sent = &watch.sent;
        let mut go_backs = 0;
        let mut highest = 0;
        for i in 1..sent.len() {
            let (prev, (seq, resent, _, expected)) = (sent[i - 1].0, sent[i]);
            highest = highest.max(prev);
            if seq == prev + 1 {
                // On in order: resent exactly while below what was sent.
                assert_eq!(resent, seq <= highest, "seed {seed}: {seq}");
                continue;
            }
            // Anything else is a step back, to the packet the receiver
            // waits for, whose latest sending the link lost.
            go_backs += 1;
            assert!(seq <= prev, "seed {seed}: skipped from {prev} to {seq}");
            assert_eq!(seq, expected, "seed {seed}: went back from {prev}");
            assert!(resent, "seed {seed}: {seq}");
            let before = sent[..i].iter().rev().find(|s| s.0 == seq);
            assert!(
                before.is_some_and(|s| s.2),
                "seed {seed}: {seq} was not lost"
            );
        }
        // Every loss but one in the flight behind an earlier one (thrown
        // away anyway) is a go-back: at 5% of about 300 first sendings,
        // a handful at the very least.
        assert!(go_backs >= 5, "seed {seed}: {go_backs} go-backs");
        assert!(o.received == file, "seed {seed}");
    }
}

#[test]
fn a_dead_link_ends_with_a_clear_error_on_both_sides() {
    let file = data(10_000, 5);
    let dead = Link {
        loss: 1.0,
        ..Link::clean(10)
    };
    let mut c = cfg(Scheme::SelectiveRepeat, 4);
    c.idle_timeout = Duration::from_secs(5);
    let o = transfer(6, c, 0, &file, dead, dead);
    assert!(o.received.is_empty());
    assert_eq!(
        o.sender_failure,
        Some(ArqError::PeerSilent(Duration::from_secs(5)))
    );
    assert_eq!(
        o.receiver_failure,
        Some(ArqError::PeerSilent(Duration::from_secs(5)))
    );
    assert!(o.sim_time <= Duration::from_secs(6));
}

#[test]
fn the_rto_follows_the_path() {
    // 100 ms each way: the RTO settles near the RTT instead of resending
    // early (no loss, so any retransmission is spurious).
    let file = data(300_000, 6);
    let o = transfer(
        7,
        cfg(Scheme::SelectiveRepeat, 16),
        0,
        &file,
        Link::clean(100),
        Link::clean(100),
    );
    assert!(o.received == file);
    assert_eq!(o.retransmissions, 0);
}

#[test]
fn foreign_and_bogus_packets_are_rejected() {
    let now = Instant::now();
    let c = cfg(Scheme::SelectiveRepeat, 8);
    let mut r = Receiver::new(c.clone(), 100, 0, 10_000, now);
    // Wrong length for its sequence number (short, long), past the end.
    assert_eq!(r.on_data(now, 100, 999), Verdict::Invalid);
    assert_eq!(r.on_data(now, 100, 1001), Verdict::Invalid);
    assert_eq!(r.on_data(now, 100 + 10, 0), Verdict::Invalid);
    // Beyond the window.
    assert_eq!(r.on_data(now, 100 + 9, 1000), Verdict::OutOfWindow);
    assert_eq!(r.on_data(now, 100, 1000), Verdict::Write { offset: 0 });
    assert_eq!(r.on_data(now, 100, 1000), Verdict::Duplicate);
    assert_eq!(r.on_data(now, 102, 1000), Verdict::Write { offset: 2000 });
    assert_eq!(
        r.poll_ack(),
        Some(Ack {
            cum: 101,
            ranges: vec![(102, 103)],
            dropped: 0,
        })
    );
    assert_eq!(r.contiguous_bytes(), 1000);

    // An ack for packets never sent moves nothing.
    let mut s = Sender::new(c, 100, 0, 10_000, now);
    let t = s.poll_transmit(now).unwrap();
    assert_eq!((t.seq, t.offset, t.len), (100, 0, 1000));
    s.on_ack(
        now,
        &Ack {
            cum: 5000,
            ranges: vec![(7, 9)],
            dropped: 0,
        },
    );
    assert_eq!(s.acked_bytes(), 0);
    s.on_ack(
        now,
        &Ack {
            cum: 101,
            ranges: vec![],
            dropped: 0,
        },
    );
    assert_eq!(s.acked_bytes(), 1000);
}

#[test]
fn go_back_n_receiver_takes_packets_in_order_only() {
    let now = Instant::now();
    let mut r = Receiver::new(cfg(Scheme::GoBackN, 8), 0, 0, 10_000, now);
    assert_eq!(r.on_data(now, 1, 1000), Verdict::OutOfWindow);
    assert_eq!(r.on_data(now, 0, 1000), Verdict::Write { offset: 0 });
    assert_eq!(r.on_data(now, 1, 1000), Verdict::Write { offset: 1000 });
    assert_eq!(
        r.poll_ack(),
        Some(Ack {
            cum: 2,
            ranges: vec![],
            dropped: 0,
        })
    );
}

#[test]
fn resuming_sends_only_the_rest() {
    let now = Instant::now();
    let c = cfg(Scheme::SelectiveRepeat, 4);
    let mut s = Sender::new(c, 0, 2500, 5000, now);
    let offsets: Vec<u64> = std::iter::from_fn(|| s.poll_transmit(now))
        .map(|t| t.offset)
        .collect();
    assert_eq!(offsets, [2500, 3500, 4500]);
}

#[test]
fn random_bytes_never_panic_the_decoder() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for _ in 0..20_000 {
        let len = rng.gen_range(0..64);
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        if let Some(first) = b.first_mut() {
            *first = rng.gen_range(0..6);
        }
        let _ = Frame::decode(&b);
    }
}

#[test]
fn selective_repeat_repairs_losses_from_acks_not_timeouts() {
    // 2% loss each way, 50 ms each way, a window of 64: acknowledgements of
    // later packets show most losses within about a round trip; the
    // retransmission timeout is the backstop. (How fast the transfer goes
    // under such loss is the congestion controller's business.)
    let file = data(2_000_000, 8);
    let link = Link {
        loss: 0.02,
        ..Link::clean(50)
    };
    for seed in SEEDS {
        let c = cfg(Scheme::SelectiveRepeat, 64);
        let o = transfer(seed, c, isn_of(seed, 0), &file, link, link);
        assert!(o.received == file, "seed {seed}");
        // 2% of 2,000 packets is 40 lost, give or take 6 (binomial): at
        // least 20 is three standard deviations below.
        assert!(
            o.retransmissions >= 20,
            "seed {seed}: {} retransmissions",
            o.retransmissions
        );
        // Most repairs come from acknowledgements; the rest are tail
        // losses (nothing sent after them to show them lost) found by the
        // timeout.
        assert!(
            o.timeouts * 2 < o.retransmissions,
            "seed {seed}: {} timeouts for {} retransmissions",
            o.timeouts,
            o.retransmissions
        );
    }
}

/// Payload rate over the simulated time, as a share of `mbit`.
fn share_of(o: &Outcome, bytes: usize, mbit: u64) -> f64 {
    bytes as f64 * 8.0 / o.sim_time.as_secs_f64() / (mbit as f64 * 1e6)
}

#[test]
fn one_flow_fills_a_bottleneck_without_collapse() {
    // 10 Mbit/s, 20 ms round trip, a queue of one bandwidth-delay product,
    // and a window cap far above it: the controller, not the cap, keeps
    // the queue from overflowing, and the link stays busy.
    let file = data(8_000_000, 12);
    let link = Link::bottleneck(10, 10);
    for seed in SEEDS {
        let c = cfg(Scheme::SelectiveRepeat, 4096);
        let o = transfer(seed, c, isn_of(seed, 0), &file, link, Link::clean(10));
        assert!(o.received == file, "seed {seed}");
        let share = share_of(&o, file.len(), 10);
        // Headers take 37 bytes of each 1,037 on the wire (96.4% is the
        // most); startup and drain take about ten round trips (0.2 s) of
        // the 6.6 s. 95.9% for every seed.
        assert!(
            share > 0.90,
            "seed {seed}: {:.1}% of the link",
            share * 100.0
        );
        // Only startup's overshoot overflows the queue, and startup ends
        // at its first overflow: about a round trip of sending at 2.77
        // times what the link drains, past a full queue, loses 1.77 times
        // a bandwidth-delay product (24 packets), 42, where 1% is 80.
        // (Waiting for three rounds without growth lost 3.2%.) 51 of 8,051
        // for every seed.
        assert!(
            o.retransmissions * 100 < o.sent,
            "seed {seed}: {} of {} resent ({:.1}% of the link, {} timeouts)",
            o.retransmissions,
            o.sent,
            share * 100.0,
            o.timeouts
        );
    }
}

#[test]
fn a_growing_queue_fires_no_timeout_while_acks_flow() {
    // 200 Mbit/s, 20 ms, a queue of one bandwidth-delay product: startup
    // and each bandwidth probe queue packets, and the RTT grows past the
    // timeout measured on the empty path. Acknowledgements keep coming,
    // so no probe timeout may fire: each would shrink the window to a few
    // packets for nothing. (The probe timer runs from the latest packet
    // sent, so none may fire for any seed.)
    let file = data(30_000_000, 18);
    let mut c = cfg(Scheme::SelectiveRepeat, 16_384);
    c.mss = 1426;
    for seed in SEEDS {
        let link = Link::bottleneck(200, 10);
        let o = transfer(
            seed,
            c.clone(),
            isn_of(seed, 0),
            &file,
            link,
            Link::clean(10),
        );
        assert!(o.received == file, "seed {seed}");
        assert_eq!(
            o.timeouts, 0,
            "seed {seed}: probe timeouts while acks flowed"
        );
    }
}

#[test]
fn random_loss_on_a_fast_path_does_not_collapse_the_rate() {
    // 200 Mbit/s, 20 ms, 5% loss each way: about twenty holes in every
    // flight, more after startup overflows the queue. Every hole must be
    // repaired without resending what arrived (acks list the oldest gaps
    // first, and the sender judges only what an ack covered).
    let file = data(20_000_000, 16);
    let link = Link {
        loss: 0.05,
        ..Link::bottleneck(200, 10)
    };
    let back = Link {
        loss: 0.05,
        ..Link::clean(10)
    };
    let mut c = cfg(Scheme::SelectiveRepeat, 16_384);
    c.mss = 1200;
    for seed in SEEDS {
        let o = transfer(seed, c.clone(), isn_of(seed, 0), &file, link, back);
        assert!(o.received == file, "seed {seed}");
        let share = share_of(&o, file.len(), 200);
        // At most 97% (headers); startup and its drain take about a tenth
        // of this short transfer, the benchmark measures longer ones on a
        // real (emulated) link. 81-83% over the seeds.
        assert!(
            share > 0.75,
            "seed {seed}: {:.1}% of the link",
            share * 100.0
        );
        // What is lost is resent, and a twentieth of the resends again:
        // 5.3%; startup's overflow adds a little. 5.7-5.9% over the seeds.
        assert!(
            (o.retransmissions as f64) < o.sent as f64 * 0.08,
            "seed {seed}: {} of {} resent",
            o.retransmissions,
            o.sent
        );
    }
}

#[test]
fn random_loss_does_not_collapse_the_rate() {
    // The same bottleneck, with 1% and then 5% of packets lost at random in
    // both directions: loss that says nothing about congestion. A
    // loss-based controller would halve its window at each; this one
    // keeps the link busy and resends about what was lost.
    let file = data(8_000_000, 14);
    for seed in SEEDS {
        for loss in [0.01, 0.05] {
            let link = Link {
                loss,
                ..Link::bottleneck(10, 10)
            };
            let back = Link {
                loss,
                ..Link::clean(10)
            };
            let c = cfg(Scheme::SelectiveRepeat, 4096);
            let o = transfer(seed, c, isn_of(seed, 0), &file, link, back);
            assert!(o.received == file, "seed {seed}");
            // The bottleneck never carries a packet lost before it, and
            // the pacing rate makes up for the loss: only finding and
            // repairing the holes costs (95-96% over the seeds at either
            // rate; the bound leaves the share lost besides).
            let share = share_of(&o, file.len(), 10);
            assert!(
                share > 0.85 - loss,
                "seed {seed}: {:.1}% of the link at {}% loss",
                share * 100.0,
                loss * 100.0
            );
            // Beyond what was lost (and lost again when resent), a few
            // percent overflow the queue: it holds only 25 packets here,
            // less than the flight's allowance for acks that come in
            // bunches. 1.5-1.6% and 5.9-6.7% over the seeds.
            assert!(
                (o.retransmissions as f64) < o.sent as f64 * (loss + 0.035),
                "seed {seed}: {} of {} resent at {}% loss",
                o.retransmissions,
                o.sent,
                loss * 100.0
            );
        }
    }
}

/// Moves `file` over `link` (a 50 Mbit/s bottleneck) and `back` once per
/// seed with Selective Repeat: each outcome, checked byte-exact, with its
/// share of the link and a line saying what it did.
fn over_jitter(file: &[u8], link: Link, back: Link) -> Vec<(Outcome, f64, String)> {
    let mut c = cfg(Scheme::SelectiveRepeat, 16_384);
    c.mss = 1200;
    SEEDS
        .iter()
        .map(|&seed| {
            let o = transfer(seed, c.clone(), isn_of(seed, 0), file, link, back);
            assert!(o.received == file, "seed {seed}");
            let share = share_of(&o, file.len(), 50);
            let said = format!(
                "seed {seed}: {:.1}% of the link, {} of {} resent, {} spurious, {} timeouts",
                share * 100.0,
                o.retransmissions,
                o.sent,
                o.spurious,
                o.timeouts
            );
            (o, share, said)
        })
        .collect()
}

/// A path that reorders: each packet leaving a 50 Mbit/s bottleneck is
/// delayed by its own random 0-8 ms on the way (as Wi-Fi retries and
/// multipath routing do), so packets overtake each other by dozens, and
/// 2% are lost at random besides. Reordering is not loss: the sender must
/// learn how late a packet may come before it is resent, resend little
/// more than was lost, and keep the rate.
#[test]
fn reordering_and_random_loss_keep_the_rate() {
    let file = data(20_000_000, 21);
    let link = Link {
        loss: 0.02,
        jitter: Duration::from_millis(8),
        ..Link::bottleneck(50, 10)
    };
    let back = Link {
        jitter: Duration::from_millis(2),
        ..Link::clean(10)
    };
    for (o, share, said) in over_jitter(&file, link, back) {
        // With three later packets taken for proof of loss, and the
        // jitter read as a queue overflowing, 24-30% of the link over the
        // seeds, a third of the packets resent, nearly all for nothing.
        // Now 92-94%, 2.3-2.6% resent (2% lost), 7-12 spurious.
        assert!(share > 0.85, "{said}");
        assert!((o.retransmissions as f64) < o.sent as f64 * 0.03, "{said}");
        assert!(o.spurious * 500 < o.sent, "{said}");
    }
}

/// A path whose delay wanders by up to 5 ms over a 20 ms round trip
/// without reordering (a busy radio link's queue that someone else fills),
/// with 1% loss: the RTT varies, and neither the retransmission timer nor
/// the queue judgement may read that as trouble. No timeout fires, little
/// is resent but what the link loses, and the link stays busy (92-94%
/// over the seeds, 1.8-2.1% of the packets resent; the next test has a
/// delay that wanders by the whole RTT).
#[test]
fn jitter_without_reordering_neither_stalls_nor_slows() {
    let file = data(20_000_000, 22);
    let link = Link {
        loss: 0.01,
        jitter: Duration::from_millis(5),
        in_order: true,
        ..Link::bottleneck(50, 10)
    };
    let back = Link {
        jitter: Duration::from_millis(2),
        in_order: true,
        ..Link::clean(10)
    };
    for (o, share, said) in over_jitter(&file, link, back) {
        assert_eq!(o.timeouts, 0, "{said}");
        assert!(share > 0.85, "{said}");
        assert!((o.retransmissions as f64) < o.sent as f64 * 0.025, "{said}");
    }
}

/// A path whose delay wanders by up to 10 ms each way over a 20 ms round
/// trip, packets in order, with 1% loss each way (the suite's "delay
/// wandering" link): the RTT moves between 20 and 40 ms without this
/// flow's queue, and the loss that comes meanwhile is random, not a queue
/// overflowing. The model learnt no random loss on such a path (its round
/// trips never stayed near the smallest RTT), so it took every loss at a
/// high RTT for an overflow and cut: 33-79% of the link over the seeds.
/// Learning the loss told while the RTT is in the lower half of its range:
/// 85-93% (a 20 MB transfer, startup included), one seed with one
/// retransmission timeout and no stall. Judging a round trip's losses
/// against all its packets, not the few told when the losses came: 90-94%
/// (88-95% over 60 MB), no timeout.
#[test]
fn a_delay_wandering_by_the_whole_rtt_is_not_a_queue() {
    let file = data(20_000_000, 23);
    let link = Link {
        loss: 0.01,
        jitter: Duration::from_millis(10),
        in_order: true,
        ..Link::bottleneck(50, 10)
    };
    let back = Link {
        loss: 0.01,
        jitter: Duration::from_millis(10),
        in_order: true,
        ..Link::clean(10)
    };
    for (o, share, said) in over_jitter(&file, link, back) {
        assert!(o.timeouts <= 1, "{said}");
        assert!(share > 0.88, "{said}");
        assert!((o.retransmissions as f64) < o.sent as f64 * 0.025, "{said}");
    }
}

/// Bytes enough for a flow never to finish in [`shared`].
const ENDLESS: u64 = 1 << 40;

/// What shares a bottleneck in [`shared`]: the real sender and receiver,
/// the sender with chatdrop's congestion controller or with TCP CUBIC's
/// (RFC 9438; unpaced, as the kernel's is without the `fq` qdisc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chatdrop,
    Cubic,
}

/// A sender and its receiver on the shared link.
struct Pair<C> {
    sender: Sender<C>,
    receiver: Receiver,
}

/// What [`shared`] does with a flow, whatever its sender's controller.
trait Flow {
    /// Sends what the sender and the receiver have to send at `now`.
    fn send(&mut self, now: Instant, net: &mut Net, links: [&Link; 2], i: usize, payload: &[u8]);
    /// Takes a frame that arrived at `now` (at the receiver or the sender).
    fn deliver(&mut self, now: Instant, to_receiver: bool, frame: Frame);
    /// When either end next needs [`Flow::on_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// Handles the timers of both ends due at `now`.
    fn on_timeout(&mut self, now: Instant);
    /// Bytes the sender has had acknowledged.
    fn acked_bytes(&self) -> u64;
}

impl<C: Controller> Flow for Pair<C> {
    fn send(&mut self, now: Instant, net: &mut Net, links: [&Link; 2], i: usize, payload: &[u8]) {
        while let Some(t) = self.sender.poll_transmit(now) {
            let frame = Frame::Data {
                seq: t.seq,
                payload: &payload[..t.len as usize],
            };
            net.send_flow(now, links[0], true, i, &frame);
        }
        while let Some(ack) = self.receiver.poll_ack() {
            net.send_flow(now, links[1], false, i, &Frame::Ack(ack));
        }
    }

    fn deliver(&mut self, now: Instant, to_receiver: bool, frame: Frame) {
        match (to_receiver, frame) {
            (true, Frame::Data { seq, payload }) => {
                self.receiver.on_data(now, seq, payload.len());
            }
            (false, Frame::Ack(ack)) => self.sender.on_ack(now, &ack),
            (_, other) => panic!("unexpected {other:?}"),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.sender.poll_timeout(), self.receiver.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    fn on_timeout(&mut self, now: Instant) {
        if self.sender.poll_timeout().is_some_and(|t| t <= now) {
            self.sender.on_timeout(now);
        }
        if self.receiver.poll_timeout().is_some_and(|t| t <= now) {
            self.receiver.on_timeout(now);
        }
    }

    fn acked_bytes(&self) -> u64 {
        self.sender.acked_bytes()
    }
}

/// A flow of `kind` moving `bytes` from `at`, numbering packets from `isn`.
fn flow(kind: Kind, cfg: &Config, isn: u32, bytes: u64, at: Instant) -> Box<dyn Flow> {
    let receiver = Receiver::new(cfg.clone(), isn, 0, bytes, at);
    match kind {
        Kind::Chatdrop => {
            let mut sender = Sender::new(cfg.clone(), isn, 0, bytes, at);
            sender.check_acks(check_seed(u64::from(isn)));
            Box::new(Pair { sender, receiver })
        }
        Kind::Cubic => {
            let cc = Cubic::new(cfg.window);
            Box::new(Pair {
                sender: Sender::with_controller(cfg.clone(), isn, 0, bytes, cc, at),
                receiver,
            })
        }
    }
}

/// Flows over one shared bottleneck, flow `i` (of kind `flows[i].0`)
/// starting at `flows[i].1` to move `flows[i].2` bytes; returns each flow's
/// bytes acknowledged at each of `marks`.
fn shared(
    seed: u64,
    fwd: Link,
    back: Link,
    flows: &[(Kind, Duration, u64)],
    marks: &[Duration],
) -> Vec<Vec<u64>> {
    let t0 = Instant::now();
    let mut now = t0;
    let mut net = Net::new(seed, now);
    let cfg = cfg(Scheme::SelectiveRepeat, 8192);
    let starts: Vec<Instant> = flows.iter().map(|&(_, at, _)| t0 + at).collect();
    let mut flows: Vec<Box<dyn Flow>> = flows
        .iter()
        .enumerate()
        .map(|(i, &(kind, at, bytes))| flow(kind, &cfg, isn_of(seed, i), bytes, t0 + at))
        .collect();
    let payload = vec![0u8; cfg.mss as usize];
    let mut seen = vec![Vec::new(); flows.len()];
    let mut mark = 0;
    let end = t0 + *marks.last().expect("marks");
    for _step in 0..50_000_000 {
        while mark < marks.len() && now >= t0 + marks[mark] {
            for (i, f) in flows.iter().enumerate() {
                seen[i].push(f.acked_bytes());
            }
            mark += 1;
        }
        if now >= end {
            break;
        }
        for (i, f) in flows.iter_mut().enumerate() {
            if now >= starts[i] {
                f.send(now, &mut net, [&fwd, &back], i, &payload);
            }
        }
        let timers = flows.iter().enumerate().map(|(i, f)| {
            if now < starts[i] {
                Some(starts[i])
            } else {
                f.poll_timeout()
            }
        });
        let next = timers
            .chain([
                net.heap.peek().map(|Reverse((t, ..))| *t),
                Some(t0 + marks[mark.min(marks.len() - 1)]),
            ])
            .flatten()
            .min();
        let Some(next) = next else { break };
        now = now.max(next);
        while net.heap.peek().is_some_and(|Reverse((t, ..))| *t <= now) {
            let Reverse((_, _, to_receiver, flow, bytes)) = net.heap.pop().unwrap();
            let Some(body) = open(&bytes) else { continue };
            match Frame::decode(body) {
                Ok(frame) => flows[flow].deliver(now, to_receiver, frame),
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        for f in flows.iter_mut() {
            f.on_timeout(now);
        }
    }
    seen
}

/// [`shared`] with each of [`SEEDS`], the runs side by side (they are the
/// slowest here): each seed with what its run returned.
fn shared_over_seeds(
    fwd: Link,
    back: Link,
    flows: &[(Kind, Duration, u64)],
    marks: &[Duration],
) -> Vec<(u64, Vec<Vec<u64>>)> {
    std::thread::scope(|s| {
        let runs = SEEDS.map(|seed| s.spawn(move || shared(seed, fwd, back, flows, marks)));
        let got = runs.map(|run| run.join().expect("a run panicked"));
        SEEDS.into_iter().zip(got).collect()
    })
}

#[test]
fn two_flows_converge_to_fair_shares() {
    // 20 Mbit/s, 20 ms round trip; the second flow starts a second after
    // the first, which holds the whole link by then. Flows that cut their
    // flight to 0.7 at an overflow and grow it back by the same half
    // packet a round trip converge to equal shares (AIMD); each probes
    // for bandwidth at the same gain, and every ten seconds each measures
    // the RTT afresh, giving the link to the other for a moment. Measured
    // from 10 s, after the first flow's first ProbeRtt, to 30 s: neither
    // may take more than about twice what the other gets. (Over 4-10 s,
    // the first flow kept 62-65% for two of ten seeds: convergence takes
    // longer than that.) Seen failing (11.7% for seed 8, 19.6% for seed 9)
    // with ProbeRtt skipped when an expired smallest RTT is replaced by a
    // queued one: that flow no longer saw the queue and the other starved.
    let secs = Duration::from_secs;
    let link = Link::bottleneck(20, 10);
    let marks = [secs(10), secs(30)];
    let flows = [
        (Kind::Chatdrop, secs(0), ENDLESS),
        (Kind::Chatdrop, secs(1), ENDLESS),
    ];
    for (seed, got) in shared_over_seeds(link, Link::clean(10), &flows, &marks) {
        let rates: Vec<f64> = got
            .iter()
            .map(|m| (m[1] - m[0]) as f64 * 8.0 / 20.0 / 1e6)
            .collect();
        let total: f64 = rates.iter().sum();
        // ProbeRtt costs each flow 200 ms at four packets every ten
        // seconds; 94% over the seeds.
        assert!(
            total > 20.0 * 0.9,
            "seed {seed}: the link is used: {rates:?}"
        );
        for r in &rates {
            let share = r / total;
            assert!(
                (0.35..=0.65).contains(&share),
                "seed {seed}: shares {rates:?} Mbit/s"
            );
        }
    }
}

#[test]
fn a_cubic_flow_there_first_keeps_its_share() {
    // TCP CUBIC fills the link and its queue; chatdrop joins a second
    // later. Over the ten seconds from 3 s after it joined, each keeps a
    // fair part of the link: CUBIC must not be pushed out, and chatdrop
    // must not give everything up.
    //
    // The CUBIC flow is the real sender and receiver with the CUBIC
    // controller. Against the separate model these tests had before, it
    // resends what it loses, finds loss as chatdrop's sender does (three
    // packets sent later acknowledged, or 9/8 of an RTT, judged in sending
    // order; the old model: three packet numbers later), does not grow its
    // window until a packet sent after a cut is acknowledged (RFC 9002; the
    // old model grew through recovery), starts its curve when recovery ends
    // with K from RFC 9438's Figure 2 (the old model: at the cut, with K
    // off under fast convergence), and lets Reno's estimate grow at Reno's
    // pace once back at the window before the cut (the old model kept
    // 0.53). Both are unpaced (here a pacing rate the window binds first)
    // and see acknowledgements of every packet. CUBIC's share with one
    // seed: 58% at 50 Mbit/s and 48% at 200 (the old model: 68 and 51%).
    //
    // The bounds say what sharing means here: chatdrop cuts its flight to
    // 0.7 at an overflow, as CUBIC does, and grows it back at CUBIC's
    // Reno-friendly pace, so neither is pushed out; CUBIC's cubic growth
    // may outrun that pace, so it may keep more, up to three quarters.
    // CUBIC keeps 35-75%, the link above 90% used. Over the seeds, with
    // chatdrop's ProbeRtt every ten seconds: CUBIC 67-73% at 50 Mbit/s,
    // 54-60% at 200; the link 93-96% used.
    let secs = Duration::from_secs;
    let flows = [
        (Kind::Cubic, secs(0), ENDLESS),
        (Kind::Chatdrop, secs(1), ENDLESS),
    ];
    let marks = [secs(4), secs(14)];
    for mbit in [50, 200] {
        let link = Link::bottleneck(mbit, 10);
        for (seed, got) in shared_over_seeds(link, Link::clean(10), &flows, &marks) {
            let cubic = (got[0][1] - got[0][0]) as f64;
            let chatdrop = (got[1][1] - got[1][0]) as f64;
            let share = cubic / (cubic + chatdrop);
            let used = (cubic + chatdrop) * 8.0 / 10.0 / (mbit as f64 * 1e6);
            assert!(
                (0.35..=0.75).contains(&share),
                "seed {seed}: CUBIC's share at {mbit} Mbit/s: {share:.2}"
            );
            assert!(
                used > 0.9,
                "seed {seed}: the link is used at {mbit} Mbit/s: {used:.2}"
            );
        }
    }
}

#[test]
fn the_link_is_taken_back_when_the_other_flow_leaves() {
    // CUBIC holds the link first, chatdrop shares it, then CUBIC finishes
    // (its 40 MB at about 5 s): chatdrop must fill the link alone, at
    // least as fast as the model lets it. What can hold it back is the
    // flight cap its last overflow left, which grows by half a packet
    // (4,000 bits) each 20 ms round trip: 0.2 Mbit/s more a round trip,
    // 10 Mbit/s more each second. So from its rate just after CUBIC left
    // (58-69 Mbit/s over the seeds) chatdrop must be above 90% of the link
    // by the time that growth takes, and a second more (the half-second
    // marks, a probing cycle). Where the cap had grown past what the model
    // needs before CUBIC left, the link was back within two seconds; for
    // seed 8 it had not (58 Mbit/s just after CUBIC left, 93 three and a
    // half seconds later: the 3 s this test asked before fails it). Seen
    // failing with the cap growing a quarter packet a round trip.
    let secs = Duration::from_secs;
    let mbit = 100;
    let marks: Vec<Duration> = (0..=40).map(|i| Duration::from_millis(500 * i)).collect();
    let flows = [
        (Kind::Cubic, secs(0), 40_000_000),
        (Kind::Chatdrop, secs(1), ENDLESS),
    ];
    let link = Link::bottleneck(mbit, 10);
    for (seed, got) in shared_over_seeds(link, Link::clean(10), &flows, &marks) {
        // Mbit/s over the half second after mark `w`.
        let rate = |f: usize, w: usize| (got[f][w + 1] - got[f][w]) as f64 * 16.0 / 1e6;
        let gone = (4..marks.len() - 1)
            .find(|&w| rate(0, w) == 0.0)
            .expect("CUBIC finishes");
        let target = mbit as f64 * 0.9;
        let growth = 0.5 * 8_000.0 / 0.020 / 0.020 / 1e6;
        let secs_needed = ((target - rate(1, gone)) / growth).max(0.0);
        let by = gone + (secs_needed * 2.0).ceil() as usize + 2;
        assert!(
            by < marks.len() - 1,
            "seed {seed}: CUBIC left at {:?}",
            marks[gone]
        );
        let back = (gone..=by).find(|&w| rate(1, w) > target);
        assert!(
            back.is_some(),
            "seed {seed}: {:.1} Mbit/s {:?} after CUBIC left at {:?}",
            rate(1, by),
            marks[by] - marks[gone],
            marks[gone]
        );
    }
}
