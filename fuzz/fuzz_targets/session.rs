//! The transfer session's two machines (`SendSession`, `RecvSession`),
//! free of I/O as the drivers run them, joined by a link the input
//! controls, with arbitrary frames (decoded from the input, from any
//! address) mixed in: what an attacker holding the session keys, or a
//! broken peer, could send. The frames the machines send cross the link
//! encoded, as the wire carries them.
//!
//! Checked:
//! - every poll ends (no machine asks to send for ever);
//! - the receiver writes inside the file, each place once per run of
//!   packets of one size (a change of size sends again what arrived
//!   ahead of a gap), and, while
//!   nothing was forged towards it, exactly the file's bytes;
//! - the packet size either end begins with is within its cap;
//! - each end reports its end once; a receiver that ends well has the
//!   whole file; a sender that ends well while nothing was forged has
//!   had every byte reach the receiver;
//! - with nothing forged and both ends still running, a perfect link
//!   then finishes the transfer, byte-exact.

#![no_main]

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::{Result, Unstructured};
use chatdrop_arq::{Config, Frame, Scheme};
use chatdrop_fuzz::{one_in, pick, trace};
use chatdrop_transfer::{
    FetchOptions, Msg, RecvSession, SendSession, ServeOptions, SessionEvent, Span, TransferError,
    MAX_MSS, MIN_MSS,
};
use libfuzzer_sys::fuzz_target;

const SENDER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4000);
const RECEIVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 5000);
/// The receiver's address as a dual-stack socket sees it.
const RECEIVER_V6: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0002)),
    5000,
);
const STRANGER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)), 6000);
const FROM: [SocketAddr; 4] = [RECEIVER, RECEIVER_V6, STRANGER, SENDER];

/// The one-way delay of the perfect link the target ends with: short, but
/// not zero (over a link without delay a delivery-rate sample has no
/// interval to measure over, and the congestion controller learns
/// nothing).
const ONE_WAY: Duration = Duration::from_millis(5);
/// Most steps taken from one input.
const MAX_STEPS: usize = 1_000;
/// More frames than any one poll can rightly give.
const MAX_POLL: usize = 10_000;

/// The file's byte at `offset`.
fn byte(offset: u64) -> u8 {
    (offset.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

fn is_receiver(addr: SocketAddr) -> bool {
    addr == RECEIVER || addr == RECEIVER_V6
}

/// Takes the `i`th of `queue` off it, or a copy of it, if there is one.
fn take<T: Clone>(queue: &mut Vec<T>, i: usize, copy: bool) -> Option<T> {
    match queue.get(i) {
        Some(x) if copy => Some(x.clone()),
        Some(_) => Some(queue.remove(i)),
        None => None,
    }
}

struct Sim {
    t0: Instant,
    now: Instant,
    /// Both ends give up after this long without a word from the other.
    idle_timeout: Duration,
    cap: u32,
    size: u64,
    resume_from: u64,
    tx: SendSession,
    rx: RecvSession,
    /// Encoded frames on the way to the receiver.
    to_rx: Vec<Vec<u8>>,
    /// Encoded frames on the way to the sender.
    to_tx: Vec<Vec<u8>>,
    /// Offsets written, each with the receiver's count of packet-size
    /// changes then: a change sends again what arrived ahead of a gap.
    written: HashSet<(u32, u64)>,
    /// Where a `Punch` came from while the receiver had no sender yet: the
    /// sender is reachable there too, and a `Start` may go there.
    punched: HashSet<SocketAddr>,
    tx_end: Option<std::result::Result<(), String>>,
    rx_end: Option<std::result::Result<(), String>>,
    forged_to_rx: bool,
    forged_to_tx: bool,
    chunk: Vec<u8>,
}

/// The receiver's request: the file from `from` on, no outline (a file
/// of one part).
fn whole_from(from: u64, size: u64) -> Span {
    Span {
        from,
        to: size,
        outline: 0,
    }
}

fn encode(msg: &Msg<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode(&mut out);
    out
}

/// A frame for traces: data without its bytes.
fn short(msg: &Msg<'_>) -> String {
    match msg {
        Msg::Arq(Frame::Data { seq, payload }) => format!("Data {seq}, {} bytes", payload.len()),
        Msg::Start {
            isn,
            from,
            to,
            token,
        } => {
            format!("Start {isn} of {from}..{to}, token {:02x?}", &token[..2])
        }
        Msg::Challenge { token } => format!("Challenge {:02x?}", &token[..2]),
        other => format!("{other:?}"),
    }
}

fn ended(r: std::result::Result<(), TransferError>) -> std::result::Result<(), String> {
    r.map_err(|e| e.to_string())
}

impl Sim {
    fn tx_polls(&mut self) {
        let peer = self.tx.peer();
        for n in 0.. {
            assert!(n < MAX_POLL, "the sender kept sending frames");
            let Some((to, msg)) = self.tx.poll_msg(self.now) else {
                break;
            };
            if !matches!(msg, Msg::Challenge { .. }) {
                assert_eq!(Some(to), peer, "{msg:?} to another than the peer");
            }
            if is_receiver(to) {
                self.to_rx.push(encode(&msg));
            }
        }
        for n in 0.. {
            assert!(n < MAX_POLL, "the sender kept sending");
            let Some(t) = self.tx.poll_data(self.now) else {
                break;
            };
            assert!(
                t.offset + u64::from(t.len) <= self.size,
                "{t:?} beyond the file"
            );
            self.chunk.clear();
            self.chunk
                .extend((t.offset..t.offset + u64::from(t.len)).map(byte));
            let frame = Msg::Arq(Frame::Data {
                seq: t.seq,
                payload: &self.chunk,
            });
            if self.tx.peer().is_some_and(is_receiver) {
                self.to_rx.push(encode(&frame));
            }
        }
        // The session may start and then move (or move twice) between two
        // polls: the last address it reports is where it is.
        let mut reported = None;
        while let Some(event) = self.tx.poll_event() {
            match event {
                SessionEvent::Began { mss } | SessionEvent::Resized { mss } => {
                    assert!((1..=self.cap).contains(&mss), "the sender took {mss}")
                }
                SessionEvent::Started { peer, .. } | SessionEvent::Moved { peer } => {
                    reported = Some(peer);
                }
            }
        }
        if let Some(peer) = reported {
            assert_eq!(self.tx.peer(), Some(peer), "the sender is where it said");
        }
        if let Some(end) = self.tx.poll_end() {
            assert!(self.tx_end.is_none(), "the sender ended twice");
            let end = ended(end);
            if end.is_ok() && !self.forged_to_tx && !self.forged_to_rx {
                assert_eq!(
                    self.rx.contiguous_bytes(),
                    self.size,
                    "the sender ended well before the receiver had the file"
                );
            }
            self.tx_end = Some(end);
        }
    }

    fn rx_polls(&mut self) {
        for n in 0.. {
            assert!(n < MAX_POLL, "the receiver kept sending");
            let Some((to, msg)) = self.rx.poll_msg(self.now) else {
                break;
            };
            // Where the sender is: where it was asked, or where its fresh
            // data came from last (it moved). The driver drops copies
            // before the machine sees them; here a copy from elsewhere
            // stands for the sender having moved there. Before it answers,
            // an address a `Punch` came from is tried too.
            match self.rx.peer() {
                Some(peer) => assert_eq!(to, peer, "{msg:?} to another than the sender"),
                None => assert!(
                    to == SENDER || self.punched.contains(&to),
                    "{msg:?} to {to}, neither asked nor punched from"
                ),
            }
            self.to_tx.push(encode(&msg));
        }
        while let Some(event) = self.rx.poll_event() {
            if let SessionEvent::Began { mss } | SessionEvent::Resized { mss } = event {
                assert!(
                    (1..=self.cap).contains(&mss),
                    "the receiver began with {mss}"
                );
            }
        }
        if let Some(end) = self.rx.poll_end() {
            assert!(self.rx_end.is_none(), "the receiver ended twice");
            let end = ended(end);
            if end.is_ok() {
                assert_eq!(
                    self.rx.contiguous_bytes(),
                    self.size,
                    "ended well, file incomplete"
                );
            }
            self.rx_end = Some(end);
        }
    }

    fn hand_to_receiver(&mut self, frame: &[u8], from: SocketAddr) {
        let Ok(msg) = Msg::decode(frame) else {
            return;
        };
        trace!(
            "{} ms: to the receiver from {from}: {}",
            self.ms(),
            short(&msg)
        );
        if matches!(msg, Msg::Punch) && self.rx.peer().is_none() {
            self.punched.insert(from);
        }
        if let Some(w) = self.rx.handle(self.now, from, msg) {
            let end = w.offset + w.bytes.len() as u64;
            assert!(
                w.offset >= self.resume_from.min(self.size),
                "wrote before the resume point"
            );
            assert!(
                end <= self.size,
                "wrote {}..{end} of {} bytes",
                w.offset,
                self.size
            );
            let run = self.rx.resizes();
            assert!(
                self.written.insert((run, w.offset)),
                "wrote {} twice",
                w.offset
            );
            if !self.forged_to_rx {
                let good = w.bytes.iter().zip(w.offset..).all(|(&b, at)| b == byte(at));
                assert!(good, "wrote other bytes than the file's at {}", w.offset);
            }
        }
    }

    fn hand_to_sender(&mut self, frame: &[u8], from: SocketAddr) {
        if let Ok(msg) = Msg::decode(frame) {
            trace!(
                "{} ms: to the sender from {from}: {}",
                self.ms(),
                short(&msg)
            );
            self.tx.handle(self.now, from, msg);
        }
    }

    fn timers(&mut self) {
        if self.tx.poll_timeout().is_some_and(|t| t <= self.now) {
            self.tx.handle_timeout(self.now);
        }
        if self.rx.poll_timeout().is_some_and(|t| t <= self.now) {
            self.rx.handle_timeout(self.now);
        }
    }

    /// Milliseconds since the start, for traces.
    fn ms(&self) -> u128 {
        (self.now - self.t0).as_millis()
    }

    fn step(&mut self, u: &mut Unstructured) -> Result<()> {
        let op = u.int_in_range(0..=10)?;
        trace!(
            "{} ms: op {op}; on the way {} and {}; timers {:?} {:?}",
            self.ms(),
            self.to_rx.len(),
            self.to_tx.len(),
            self.tx.poll_timeout().map(|t| (t - self.t0).as_millis()),
            self.rx.poll_timeout().map(|t| (t - self.t0).as_millis()),
        );
        match op {
            0 => self.tx_polls(),
            1 => self.rx_polls(),
            2 => {
                let (i, copy) = (pick(u, self.to_rx.len())?, one_in(u, 8)?);
                // Mostly from the sender; now and then from anywhere.
                let from = if one_in(u, 16)? {
                    FROM[pick(u, FROM.len())?]
                } else {
                    SENDER
                };
                if let Some(frame) = take(&mut self.to_rx, i, copy) {
                    self.hand_to_receiver(&frame, from);
                }
            }
            3 => {
                let (i, copy) = (pick(u, self.to_tx.len())?, one_in(u, 8)?);
                let from = if one_in(u, 4)? {
                    FROM[pick(u, FROM.len())?]
                } else {
                    RECEIVER
                };
                if let Some(frame) = take(&mut self.to_tx, i, copy) {
                    self.hand_to_sender(&frame, from);
                }
            }
            4 => {
                let i = pick(u, self.to_rx.len())?;
                take(&mut self.to_rx, i, false);
            }
            5 => {
                let i = pick(u, self.to_tx.len())?;
                take(&mut self.to_tx, i, false);
            }
            6 => {
                self.now += Duration::from_millis(u.int_in_range(0..=3_000)?);
                self.timers();
            }
            7 => {
                let next = [self.tx.poll_timeout(), self.rx.poll_timeout()];
                if let Some(t) = next.into_iter().flatten().min() {
                    self.now = self.now.max(t);
                }
                self.timers();
            }
            8 => {
                self.forged_to_rx = true;
                let len = u.int_in_range(0..=64)?;
                let frame = u.bytes(len)?;
                let from = [SENDER, SENDER, SENDER, STRANGER][pick(u, 4)?];
                self.hand_to_receiver(frame, from);
            }
            9 => {
                self.forged_to_tx = true;
                let len = u.int_in_range(0..=64)?;
                let frame = u.bytes(len)?;
                let from = FROM[pick(u, FROM.len())?];
                self.hand_to_sender(frame, from);
            }
            10 => {
                // The host refuses a probe as too big (`EMSGSIZE`).
                const SIZES: [u32; 6] = [65_461, 65_481, 8_946, 8_926, 1_446, 1_426];
                let size = if u.arbitrary()? {
                    u.arbitrary()?
                } else {
                    SIZES[pick(u, SIZES.len())?]
                };
                self.tx.on_too_big(self.now, size);
            }
            _ => {}
        }
        Ok(())
    }

    /// A perfect link from here on: the transfer must end well. Except
    /// in its first idle timeout, in which either end may still fail for
    /// what happened before (a peer silent for most of one, a `Done`
    /// lost); after that, on a perfect link, no silence lasts that long.
    fn finish(&mut self) {
        // An end already due (a timer ran out) is taken first.
        self.tx_polls();
        self.rx_polls();
        if self.forged_to_rx || self.forged_to_tx || self.tx_end.is_some() || self.rx_end.is_some()
        {
            return;
        }
        trace!("{} ms: a perfect link from here", self.ms());
        // What was on the way when the link became perfect arrives a
        // one-way delay later, and may restart a silence that began before
        // (a receiver's acknowledgement sent again while data had stopped);
        // a sender notices its silence at its next timer, which may be a
        // `Begin` repeat, 100 ms apart.
        let grace = self.now + self.idle_timeout + ONE_WAY + Duration::from_millis(100);
        let give_up = self.now + Duration::from_secs(600);
        for _ in 0..100_000 {
            self.tx_polls();
            self.rx_polls();
            for end in [&self.tx_end, &self.rx_end].into_iter().flatten() {
                if let Err(e) = end {
                    assert!(self.now <= grace, "an end failed on a perfect link: {e}");
                    return;
                }
            }
            if self.tx_end.is_some() && self.rx_end.is_some() {
                return;
            }
            if self.to_rx.is_empty() && self.to_tx.is_empty() {
                let next = [self.tx.poll_timeout(), self.rx.poll_timeout()];
                let Some(t) = next.into_iter().flatten().min() else {
                    panic!(
                        "stalled with no timer: sender {:?}, receiver {:?}",
                        self.tx_end, self.rx_end
                    );
                };
                self.now = self.now.max(t);
                assert!(
                    self.now < give_up,
                    "the transfer did not end on a perfect link"
                );
                self.timers();
                continue;
            }
            // Everything on the way arrives, a one-way delay later.
            self.now += ONE_WAY;
            self.timers();
            let from = self.tx.peer().unwrap_or(RECEIVER);
            for frame in std::mem::take(&mut self.to_tx) {
                self.hand_to_sender(&frame, from);
            }
            for frame in std::mem::take(&mut self.to_rx) {
                self.hand_to_receiver(&frame, SENDER);
            }
        }
        panic!("the transfer did not end on a perfect link");
    }
}

fn setup(u: &mut Unstructured) -> Result<()> {
    let scheme = if u.arbitrary()? {
        Scheme::SelectiveRepeat
    } else {
        Scheme::GoBackN
    };
    let mut cfg = Config::new(scheme, u.int_in_range(1..=64)?);
    cfg.mss = if u.arbitrary()? {
        {
            const CAPS: [u32; 5] = [MAX_MSS, 9_000, 1_446, 1_200, 500];
            CAPS[pick(u, CAPS.len())?]
        }
    } else {
        u.int_in_range(1..=MAX_MSS)?
    };
    // At most 100 packets of the smallest size the session can settle on,
    // so that a run stays short.
    let size = u.int_in_range(0..=100 * u64::from(cfg.mss.min(MIN_MSS)))?;
    let resume_from = u.int_in_range(0..=size + 10)?;
    let isn: u32 = u.arbitrary()?;
    let wait_for_start = if u.arbitrary()? {
        Some(Duration::from_millis(u.int_in_range(0..=30_000)?))
    } else {
        None
    };
    let peer_ip = if u.arbitrary()? {
        Some(RECEIVER.ip())
    } else {
        None
    };
    let now = Instant::now();
    trace!("{cfg:?}, {size} bytes from {resume_from}, isn {isn}, {wait_for_start:?}, {peer_ip:?}");
    let serve = ServeOptions {
        cfg: cfg.clone(),
        wait_for_start,
        peer_ips: peer_ip.into_iter().collect(),
        punch: Vec::new(),
        later_peer_ips: None,
    };
    let fetch = FetchOptions { cfg: cfg.clone() };
    let mut sim = Sim {
        t0: now,
        now,
        idle_timeout: cfg.idle_timeout,
        cap: cfg.mss,
        size,
        resume_from,
        tx: SendSession::new(&serve, size, 0, now, u.arbitrary()?),
        rx: RecvSession::new(SENDER, &fetch, isn, whole_from(resume_from, size), now),
        to_rx: Vec::new(),
        to_tx: Vec::new(),
        written: HashSet::new(),
        punched: HashSet::new(),
        tx_end: None,
        rx_end: None,
        forged_to_rx: false,
        forged_to_tx: false,
        chunk: Vec::new(),
    };
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        sim.step(u)?;
    }
    sim.finish();
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = setup(&mut Unstructured::new(data));
});
