//! Both session machines over a simulated link, in simulated time: whole
//! transfers, with seeded loss, packet sizes the host refuses and sizes the
//! path loses, checked byte-exact. Also the helpers the machines' own tests
//! share: frames as they cross the wire, and machines run through time with
//! nothing arriving.
//!
//! Time is an `Instant` taken once and advanced by hand: the machines never
//! read the clock, so nothing here sleeps, and a run is the same every time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatdrop_arq::{Config, Frame, Scheme};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Span;
use super::{FetchOptions, RecvSession, SendSession, ServeOptions, MAX_MSS};
use crate::crypto::{HEADER, TAG};
use crate::wire::{Msg, TOKEN_LEN};
use crate::TransferError;

pub(super) const SENDER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    4000,
);
pub(super) const RECEIVER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)),
    5000,
);
/// Someone neither end talks to.
pub(super) const STRANGER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3)),
    6000,
);

/// Payloads of data packets in tests where their bytes do not matter.
static ZEROS: [u8; 1 << 16] = [0; 1 << 16];

/// ARQ settings of both ends: packets of at most `cap` bytes, the default
/// ten-second idle timeout.
pub(super) fn config(scheme: Scheme, cap: u32) -> Config {
    let mut cfg = Config::new(scheme, 64);
    cfg.mss = cap;
    cfg
}

pub(super) fn serving(cap: u32, wait_for_start: Option<Duration>) -> ServeOptions {
    ServeOptions {
        cfg: config(Scheme::SelectiveRepeat, cap),
        wait_for_start,
        peer_ips: Vec::new(),
        punch: Vec::new(),
        later_peer_ips: None,
    }
}

pub(super) fn fetching(cap: u32) -> FetchOptions {
    FetchOptions {
        cfg: config(Scheme::SelectiveRepeat, cap),
    }
}

/// Milliseconds from `t0` to `t`.
pub(super) fn ms(t0: Instant, t: Instant) -> u64 {
    (t - t0).as_millis() as u64
}

/// `t0` plus `ms` milliseconds.
pub(super) fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// A frame as it crosses the link: encoded (as the wire carries it, and
/// owned, so that it can wait in the link's queue).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Wire(Vec<u8>);

impl Wire {
    pub(super) fn of(msg: &Msg<'_>) -> Wire {
        let mut b = Vec::new();
        msg.encode(&mut b);
        Wire(b)
    }

    /// The frame (the machines only make frames that decode).
    pub(super) fn msg(&self) -> Msg<'_> {
        Msg::decode(&self.0).expect("a frame a machine made")
    }

    /// Bytes of the IPv4 packet that would carry it, sealed.
    fn ip_len(&self) -> usize {
        28 + self.sealed_len()
    }

    /// Bytes of the UDP payload that carries it, sealed.
    pub(super) fn sealed_len(&self) -> usize {
        HEADER + self.0.len() + TAG
    }

    /// What it is, in short, for tests to compare.
    pub(super) fn sent(&self) -> Sent {
        match self.msg() {
            Msg::Start {
                isn,
                from: resume_from,
                token,
                ..
            } => Sent::Start {
                isn,
                resume_from,
                proved: token != [0; TOKEN_LEN],
            },
            Msg::Challenge { .. } => Sent::Challenge,
            Msg::Probe { size } => Sent::Probe(size),
            Msg::ProbeAck { size } => Sent::ProbeAck(size),
            Msg::Begin { mss } => Sent::Begin(mss),
            Msg::Arq(Frame::Data { seq, payload }) => Sent::Data {
                seq,
                len: payload.len(),
            },
            Msg::Arq(Frame::Ack(ack)) => Sent::Ack { cum: ack.cum },
            Msg::Arq(Frame::Done) => Sent::Done,
            Msg::Arq(Frame::Abort(why)) => Sent::Abort(why.to_string()),
            Msg::Punch => Sent::Punch,
            Msg::Enough => Sent::Enough,
            Msg::Resize { mss, isn, from } => Sent::Resize { mss, isn, from },
        }
    }
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sent().fmt(f)
    }
}

/// A frame in short: what tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sent {
    /// `proved`: echoing a token.
    Start {
        isn: u32,
        resume_from: u64,
        proved: bool,
    },
    Challenge,
    Enough,
    Probe(u32),
    ProbeAck(u32),
    Begin(u32),
    Resize {
        mss: u32,
        isn: u32,
        from: u64,
    },
    Data {
        seq: u32,
        len: usize,
    },
    Ack {
        cum: u32,
    },
    Done,
    Abort(String),
    Punch,
}

/// Everything `tx` sends at `now` to the receiver, as its driver would:
/// frames first, then data read from `file` (zeros without one). A frame
/// whose IP packet is over `host_mtu` bytes is refused, as the kernel
/// refuses it. Anywhere else, only `Challenge`s may go (to an address an
/// authentic frame came from), and they are left out.
pub(super) fn sender_sends(
    tx: &mut SendSession,
    now: Instant,
    file: Option<&[u8]>,
    host_mtu: usize,
) -> Vec<Wire> {
    let mut out = Vec::new();
    while let Some((to, msg)) = tx.poll_msg(now) {
        let wire = Wire::of(&msg);
        if to != RECEIVER {
            assert_eq!(wire.sent(), Sent::Challenge, "to {to}");
            continue;
        }
        match msg {
            Msg::Probe { size } if wire.ip_len() > host_mtu => tx.on_too_big(now, size),
            _ => out.push(wire),
        }
    }
    while let Some(t) = tx.poll_data(now) {
        let len = t.len as usize;
        let payload = match file {
            Some(file) => &file[t.offset as usize..][..len],
            None => &ZEROS[..len],
        };
        let data = Msg::Arq(Frame::Data {
            seq: t.seq,
            payload,
        });
        out.push(Wire::of(&data));
    }
    out
}

/// Everything `rx` sends at `now`.
pub(super) fn receiver_sends(rx: &mut RecvSession, now: Instant) -> Vec<Wire> {
    let mut out = Vec::new();
    while let Some((to, msg)) = rx.poll_msg(now) {
        assert_eq!(to, SENDER);
        out.push(Wire::of(&msg));
    }
    out
}

/// Hands `wire` from the sender to `rx` at `now`, writing what it says into
/// `file`; returns the offset written at, if any.
pub(super) fn deliver(
    rx: &mut RecvSession,
    now: Instant,
    wire: &Wire,
    file: &mut [u8],
) -> Option<u64> {
    let write = rx.handle(now, SENDER, wire.msg())?;
    file[write.offset as usize..][..write.bytes.len()].copy_from_slice(write.bytes);
    Some(write.offset)
}

/// A session machine as [`quiet`] runs it.
pub(super) trait Machine {
    /// Everything it sends at `now`.
    fn sends(&mut self, now: Instant) -> Vec<Wire>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
}

impl Machine for SendSession {
    fn sends(&mut self, now: Instant) -> Vec<Wire> {
        sender_sends(self, now, None, usize::MAX)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        SendSession::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        SendSession::handle_timeout(self, now)
    }
}

impl Machine for RecvSession {
    fn sends(&mut self, now: Instant) -> Vec<Wire> {
        receiver_sends(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        RecvSession::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        RecvSession::handle_timeout(self, now)
    }
}

/// Runs `m` from `*now` with nothing arriving, until `until` or until it
/// has no timer left (it ended); returns what it sent, each with the
/// milliseconds since `t0` it went at. `*now` is left at the last step.
pub(super) fn quiet(
    m: &mut impl Machine,
    t0: Instant,
    now: &mut Instant,
    until: Instant,
) -> Vec<(u64, Sent)> {
    let mut sent = Vec::new();
    // Bounded, so that a machine that keeps waking at the same instant
    // fails the test rather than hanging it.
    for _ in 0..10_000 {
        sent.extend(m.sends(*now).iter().map(|w| (ms(t0, *now), w.sent())));
        match m.poll_timeout() {
            Some(t) if t <= until => {
                *now = t.max(*now);
                m.handle_timeout(*now);
            }
            _ => return sent,
        }
    }
    panic!(
        "the machine kept waking: {:?}",
        &sent[sent.len().saturating_sub(5)..]
    );
}

/// A path between the two ends.
#[derive(Debug, Clone, Copy)]
struct Path {
    /// One way.
    delay: Duration,
    /// Share of datagrams lost, each way.
    loss: f64,
    /// IP packets over this many bytes the sending host refuses at once.
    host_mtu: usize,
    /// IP packets over this many bytes are lost on the way, silently.
    path_mtu: usize,
    /// Changes of `path_mtu` on the way: this many milliseconds from the
    /// start, this MTU (a route change, a tunnel coming up).
    changes: &'static [(u64, usize)],
}

/// How a simulated transfer went.
struct Run {
    sender: Result<(), TransferError>,
    receiver: Result<(), TransferError>,
    /// The receiver's copy of the file.
    file: Vec<u8>,
    /// The packet size the ends agreed on.
    mss: u32,
    /// The sender's packet sizes, in the order it used them (`Began`,
    /// then each `Resized`), each with the milliseconds from the start it
    /// was taken at.
    sizes: Vec<(u32, u64)>,
    /// The lowest offset the receiver wrote at.
    lowest_write: Option<u64>,
}

/// Moves `data` from a sender to a receiver that already has its first
/// `resume_from` bytes, over `path`, with randomness from `seed`.
fn transfer(scheme: Scheme, data: &[u8], resume_from: u64, path: Path, seed: u64) -> Run {
    let t0 = Instant::now();
    let mut now = t0;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let size = data.len() as u64;
    let tx_opts = ServeOptions {
        cfg: config(scheme, MAX_MSS),
        wait_for_start: Some(Duration::from_secs(5)),
        peer_ips: vec![RECEIVER.ip()],
        punch: Vec::new(),
        later_peer_ips: None,
    };
    let rx_opts = FetchOptions {
        cfg: config(scheme, MAX_MSS),
    };
    let mut tx = SendSession::new(&tx_opts, size, 0, now, rng.gen());
    // Numbers that cross the 32-bit wrap on the way.
    let isn = u32::MAX - 20;
    let mut rx = RecvSession::new(
        SENDER,
        &rx_opts,
        isn,
        Span {
            from: resume_from,
            to: size,
            outline: 0,
        },
        now,
    );
    let mut file = data[..resume_from as usize].to_vec();
    file.resize(data.len(), 0);
    let mut lowest_write = None;
    // Datagrams on the way: (arrival, order sent, to the receiver, frame).
    let mut link = BinaryHeap::new();
    let mut order = 0u64;
    let (mut sender, mut receiver) = (None, None);
    let mut mss = 0;
    let mut sizes = Vec::new();
    while sender.is_none() || receiver.is_none() {
        assert!(
            now - t0 < Duration::from_secs(120),
            "the transfer did not end"
        );
        let path_mtu = (path.changes.iter())
            .rfind(|(after, _)| ms(t0, now) >= *after)
            .map_or(path.path_mtu, |(_, mtu)| *mtu);
        let from_tx = sender_sends(&mut tx, now, Some(data), path.host_mtu);
        let from_rx = receiver_sends(&mut rx, now);
        for (to_rx, wire) in from_tx
            .into_iter()
            .map(|w| (true, w))
            .chain(from_rx.into_iter().map(|w| (false, w)))
        {
            order += 1;
            if wire.ip_len() <= path_mtu && !rng.gen_bool(path.loss) {
                link.push(Reverse((now + path.delay, order, to_rx, wire)));
            }
        }
        while let Some(event) = tx.poll_event() {
            if let super::Event::Began { mss: m } | super::Event::Resized { mss: m } = event {
                mss = m;
                sizes.push((m, ms(t0, now)));
            }
        }
        sender = sender.or_else(|| tx.poll_end());
        receiver = receiver.or_else(|| rx.poll_end());
        let next = [
            link.peek().map(|Reverse(d)| d.0),
            tx.poll_timeout(),
            rx.poll_timeout(),
        ];
        let Some(next) = next.into_iter().flatten().min() else {
            break;
        };
        now = now.max(next);
        while link.peek().is_some_and(|Reverse(d)| d.0 <= now) {
            let Some(Reverse((_, _, to_rx, wire))) = link.pop() else {
                break;
            };
            if to_rx {
                if let Some(offset) = deliver(&mut rx, now, &wire, &mut file) {
                    lowest_write = Some(lowest_write.unwrap_or(offset).min(offset));
                }
            } else {
                tx.handle(now, RECEIVER, wire.msg());
            }
        }
        if tx.poll_timeout().is_some_and(|t| t <= now) {
            tx.handle_timeout(now);
        }
        if rx.poll_timeout().is_some_and(|t| t <= now) {
            rx.handle_timeout(now);
        }
    }
    Run {
        sender: sender.expect("the sender ended"),
        receiver: receiver.expect("the receiver ended"),
        file,
        mss,
        sizes,
        lowest_write,
    }
}

fn random_file(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

#[test]
fn a_small_file_crosses_a_lossy_narrow_path_byte_exact() {
    // A host that takes jumbo frames on a path of Ethernet frames, losing
    // 5% each way: the 64 KiB probe is refused at once, the jumbo one is
    // lost three times, the Ethernet size is found, and the file arrives
    // whole by both schemes. Checked to fail with one packet written a
    // byte early, with every `Start` restarting the sender, with the
    // probe's headers miscounted, and with no linger (a lost last ack
    // then leaves the sender to fail).
    let data = random_file(300_007, 1);
    let path = Path {
        delay: Duration::from_millis(10),
        loss: 0.05,
        host_mtu: 9_000,
        path_mtu: 1_500,
        changes: &[],
    };
    for (seed, scheme) in [Scheme::GoBackN, Scheme::SelectiveRepeat]
        .into_iter()
        .enumerate()
    {
        let run = transfer(scheme, &data, 0, path, seed as u64);
        run.sender
            .unwrap_or_else(|e| panic!("{scheme:?}: the sender failed: {e}"));
        run.receiver
            .unwrap_or_else(|e| panic!("{scheme:?}: the receiver failed: {e}"));
        assert_eq!(run.mss, 1446, "{scheme:?}: Ethernet's payload");
        assert!(run.file == data, "{scheme:?}: the copy differs");
    }
}

#[test]
fn a_resumed_download_fetches_only_the_rest() {
    // Checked to fail with the receiver's `Start` asking for the file from
    // 0 while it expects the rest.
    let data = random_file(250_000, 2);
    let path = Path {
        delay: Duration::from_millis(25),
        loss: 0.02,
        host_mtu: 65_535,
        path_mtu: 65_535,
        changes: &[],
    };
    let run = transfer(Scheme::SelectiveRepeat, &data, 100_001, path, 3);
    run.sender.unwrap();
    run.receiver.unwrap();
    assert_eq!(run.mss, MAX_MSS, "the path carries 64 KiB");
    assert!(run.file == data, "the copy differs");
    assert_eq!(run.lowest_write, Some(100_001));
}

#[test]
fn an_empty_file_and_a_download_resumed_at_its_end_end_well() {
    // Found by fuzzing (the `session` target): with nothing to send, the
    // sender goes from probing straight to `Done`, without a `Begin`, and
    // the receiver, still opening, ignored that `Done` and gave up after
    // its idle timeout. Checked to fail without the receiver taking a
    // `Done` while opening when it has nothing to fetch.
    let path = Path {
        delay: Duration::from_millis(10),
        loss: 0.0,
        host_mtu: 65_535,
        path_mtu: 65_535,
        changes: &[],
    };
    let data = random_file(5_000, 4);
    for scheme in [Scheme::GoBackN, Scheme::SelectiveRepeat] {
        for (file, resume_from) in [(&[][..], 0), (&data[..], data.len() as u64)] {
            let run = transfer(scheme, file, resume_from, path, 5);
            let what = format!("{scheme:?}, {} bytes from {resume_from}", file.len());
            run.sender
                .unwrap_or_else(|e| panic!("{what}: the sender failed: {e}"));
            run.receiver
                .unwrap_or_else(|e| panic!("{what}: the receiver failed: {e}"));
            assert!(run.file == file, "{what}: the copy differs");
            assert_eq!(run.lowest_write, None, "{what}: nothing to write");
        }
    }
}

/// A transfer of `size` bytes over a 10 ms path whose MTU changes at
/// the given times (ms, bytes), lossless: it must end well, byte-exact,
/// in 64 KiB packets, then 1446-byte ones, then 64 KiB ones again. Returns
/// when (ms) the smaller size and the larger one again were taken.
fn through_a_black_hole(size: usize, changes: &'static [(u64, usize)], seed: u64) -> (u64, u64) {
    let data = random_file(size, seed - 1);
    let path = Path {
        delay: Duration::from_millis(10),
        loss: 0.0,
        host_mtu: 65_535,
        path_mtu: 65_535,
        changes,
    };
    let run = transfer(Scheme::SelectiveRepeat, &data, 0, path, seed);
    run.sender.expect("the sender");
    run.receiver.expect("the receiver");
    assert!(run.file == data, "the copy differs");
    let sizes: Vec<u32> = run.sizes.iter().map(|s| s.0).collect();
    assert_eq!(sizes, [MAX_MSS, 1446, MAX_MSS], "{:?}", run.sizes);
    (run.sizes[1].1, run.sizes[2].1)
}

#[test]
fn a_path_that_starts_losing_large_packets_mid_transfer_goes_on_smaller_then_larger_again() {
    // An MTU black hole: 150 ms in (data has flowed for a few round
    // trips) the path silently loses every packet over Ethernet's size (a
    // tunnel came up, its ICMP filtered); two seconds in it carries them
    // again. The
    // sender notices the timeouts, finds the size still carried, goes on
    // in it, and some time later finds the larger size again. Checked to
    // fail with the black-hole watch off (the transfer stalls until the
    // path heals) and with the raise off (the sizes end at 1446).
    let (shrunk, raised) = through_a_black_hole(128 << 20, &[(150, 1_500), (2_000, 65_535)], 7);
    // Simulated time: the stall lasts two timeouts and three probes'
    // waits, well under the idle timeout; the larger size comes back ten
    // seconds after the smaller one was taken.
    assert!((150..2_000).contains(&shrunk), "shrunk at {shrunk} ms");
    assert!(
        (shrunk + 10_000..shrunk + 12_000).contains(&raised),
        "raised at {raised} ms"
    );
}

#[test]
fn a_path_still_narrow_at_the_first_search_is_searched_again_later() {
    // The black hole lasts past the first search for the larger size (10
    // s after the smaller was taken): that search finds none, and the next
    // one, 20 s later, finds the path healed. Checked to fail with the
    // search run once per change (the sizes end at 1446).
    let (shrunk, raised) = through_a_black_hole(1 << 30, &[(150, 1_500), (13_000, 65_535)], 12);
    assert!(
        (shrunk + 30_000..shrunk + 32_000).contains(&raised),
        "raised at {raised} ms, shrunk at {shrunk}"
    );
}

#[test]
fn losses_alone_do_not_shrink_the_packets() {
    // 5% of packets lost both ways makes timeouts in a row now and then:
    // the check of the size in use finds it still carried. Checked to
    // fail with the check starting below the size in use.
    let data = random_file(8 << 20, 8);
    let path = Path {
        delay: Duration::from_millis(10),
        loss: 0.05,
        host_mtu: 65_535,
        path_mtu: 65_535,
        changes: &[],
    };
    for scheme in [Scheme::GoBackN, Scheme::SelectiveRepeat] {
        let run = transfer(scheme, &data, 0, path, 9);
        run.sender.expect("the sender");
        run.receiver.expect("the receiver");
        assert!(run.file == data, "{scheme:?}: the copy differs");
        let sizes: Vec<u32> = run.sizes.iter().map(|s| s.0).collect();
        assert_eq!(sizes, [MAX_MSS], "{scheme:?}");
    }
}
