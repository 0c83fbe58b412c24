//! The two ends of a transfer session over one UDP socket each.
//!
//! The receiver speaks first (`Start`, repeated until the sender begins),
//! so the sender learns its address from an authenticated datagram: only
//! the holder of the session keys can start a session, and only once.
//!
//! The sender then finds the largest packet the path carries: it tries
//! IP packet sizes from the largest down (loopback's 64 KiB, jumbo frames,
//! Ethernet), each with a `Probe` as long as such a data datagram; a size
//! the host already knows too big fails at once, one the path loses goes
//! unanswered; the first `ProbeAck` fixes the size, sent in `Begin` (and
//! repeated until the first acknowledgement). Bigger packets mean fewer of
//! them, and less header per byte: 1446 payload bytes fill a 1500-byte
//! Ethernet frame where the 1200-byte floor would take 6% more packets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatdrop_arq::{Config, Frame, Receiver, Sender, Verdict};
use tokio::net::UdpSocket;
use tracing::{debug, trace};

use crate::batch::{BatchSocket, MAX_SEND_BYTES};
use crate::crypto::{SessionKeys, HEADER, TAG};
use crate::files::{Download, Source};
use crate::socket;
use crate::wire::Msg;
use crate::TransferError;

/// How often the receiver repeats `Start` until the sender answers.
const START_REPEAT: Duration = Duration::from_millis(250);
/// IP packet sizes tried for data, largest first: loopback's limit, jumbo
/// frames, Ethernet.
const PATH_SIZES: [usize; 3] = [65_535, 9_000, 1_500];
/// Payload bytes of a data packet when no larger size is confirmed: fits
/// any path that carries IPv6's minimum of 1280-byte packets over IPv4.
pub const MIN_MSS: u32 = 1200;
/// The largest payload a data packet may carry (a 64 KiB IPv4 datagram).
pub const MAX_MSS: u32 = (65_507 - HEADER - TAG - Frame::DATA_HEADER) as u32;
/// How long the sender waits for a probe's answer before trying again, and
/// how many times it tries one size.
const PROBE_WAIT: Duration = Duration::from_millis(150);
const PROBE_TRIES: u32 = 3;
/// How often the sender repeats `Begin` until the first acknowledgement.
const BEGIN_REPEAT: Duration = Duration::from_millis(100);
/// How long a finished receiver stays to answer a sender that missed its
/// last ack, when the sender's `Done` does not come.
const LINGER: Duration = Duration::from_secs(1);
/// How often the sender traces its congestion controller's state.
const TRACE_EVERY: Duration = Duration::from_millis(100);
/// How often a receiver records its progress for resuming.
const SAVE_EVERY: u64 = 64 << 20;
/// Datagrams taken from the socket before answering: the receiver sends
/// one acknowledgement per batch of arrivals, the sender reacts to a batch
/// of acknowledgements at once.
const BATCH: usize = 64;
/// Receive buffers of the sending end (it receives only acknowledgements)
/// and of the receiving end (fewer for packets over 16 KiB: see
/// [`BatchSocket::set_buffers`]).
const SENDER_BUFFERS: usize = 8;
const RECEIVER_BUFFERS: usize = 32;
const RECEIVER_BUFFERS_LARGE: usize = 4;

/// Numbers of one finished transfer.
#[derive(Debug, Clone, Default)]
pub struct TransferStats {
    /// Bytes moved in this session (a resumed one moves only the rest).
    pub bytes: u64,
    /// Wall time from the first datagram to the last.
    pub seconds: f64,
    /// Data packets sent (sender) or received (receiver).
    pub packets: u64,
    /// Retransmitted data packets (sender only).
    pub retransmissions: u64,
    /// Datagrams dropped because they did not authenticate.
    pub forged: u64,
    /// Where the download resumed from.
    pub resumed_from: u64,
    /// Payload bytes per data packet (the largest the path carried).
    pub mss: u32,
}

/// Receives progress: bytes done out of the total.
pub trait Progress: FnMut(u64, u64) {}
impl<F: FnMut(u64, u64)> Progress for F {}

/// Options of the sending end.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// ARQ settings (scheme, window, packet size, timeouts).
    pub cfg: Config,
    /// How long to wait for the receiver's `Start`; `None` waits for ever.
    pub wait_for_start: Option<Duration>,
}

/// Options of the receiving end.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// ARQ settings; must match the sender's scheme, window and packet size.
    pub cfg: Config,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> TransferError {
    TransferError::io(what)
}

async fn send_msg(
    net: &BatchSocket<'_>,
    keys: &mut SessionKeys,
    to: SocketAddr,
    msg: &Msg<'_>,
    buf: &mut Vec<u8>,
) -> Result<(), TransferError> {
    buf.clear();
    buf.resize(HEADER, 0);
    msg.encode(buf);
    keys.seal(buf);
    net.send(to, buf, buf.len())
        .await
        .map_err(io("sending a datagram"))
}

/// Data datagrams sealed end to end in one buffer, to go to the kernel in
/// one call (see [`crate::batch`]): all of one size but the last.
struct Outgoing {
    buf: Vec<u8>,
    /// The size of the first datagram, which all others match.
    segment: usize,
    count: usize,
    max_segments: usize,
    /// A shorter datagram went in: it must be the last.
    closed: bool,
}

impl Outgoing {
    fn new(max_segments: usize) -> Outgoing {
        Outgoing {
            buf: Vec::with_capacity(MAX_SEND_BYTES + 65_536),
            segment: 0,
            count: 0,
            max_segments,
            closed: false,
        }
    }

    /// Whether a datagram of `len` bytes can join the batch.
    fn fits(&self, len: usize) -> bool {
        self.count == 0
            || !self.closed
                && self.count < self.max_segments
                && len <= self.segment
                && self.buf.len() + len <= MAX_SEND_BYTES
    }

    /// Seals `msg` onto the end of the batch.
    fn push(&mut self, keys: &mut SessionKeys, msg: &Msg<'_>) {
        let start = self.buf.len();
        self.buf.resize(start + HEADER, 0);
        msg.encode(&mut self.buf);
        keys.seal_from(&mut self.buf, start);
        let len = self.buf.len() - start;
        if self.count == 0 {
            self.segment = len;
        } else if len < self.segment {
            self.closed = true;
        }
        self.count += 1;
    }

    /// Sends the batch, if any.
    async fn flush(&mut self, net: &BatchSocket<'_>, to: SocketAddr) -> Result<(), TransferError> {
        if self.count > 0 {
            net.send(to, &self.buf, self.segment)
                .await
                .map_err(io("sending data"))?;
        }
        self.buf.clear();
        self.count = 0;
        self.closed = false;
        Ok(())
    }
}

/// Takes the datagram pending on `net`, or the next the kernel already
/// holds, without waiting.
fn next_ready<'n>(
    net: &'n mut BatchSocket<'_>,
) -> Result<Option<(SocketAddr, &'n mut [u8])>, TransferError> {
    if !net.try_recv().map_err(io("receiving"))? {
        return Ok(None);
    }
    Ok(net.next_datagram())
}

/// Payload bytes of a data packet that makes an IP packet of `ip_size`.
fn payload_for(ip_size: usize, v6: bool) -> u32 {
    let ip_udp = if v6 { 48 } else { 28 };
    (ip_size.saturating_sub(ip_udp + HEADER + TAG + Frame::DATA_HEADER) as u32).min(MAX_MSS)
}

/// Finds the largest data payload, at most `cap`, that reaches `peer`
/// (see the module docs); [`MIN_MSS`] (or `cap`, if smaller) when no
/// larger probe is answered.
async fn probe_path(
    net: &mut BatchSocket<'_>,
    keys: &mut SessionKeys,
    peer: SocketAddr,
    cap: u32,
    sbuf: &mut Vec<u8>,
) -> Result<u32, TransferError> {
    let floor = MIN_MSS.min(cap);
    let mut sizes: Vec<u32> = PATH_SIZES
        .iter()
        .map(|&ip| payload_for(ip, peer.is_ipv6()).min(cap))
        .filter(|&s| s > floor)
        .collect();
    // Largest first; a cap below several sizes makes them one.
    sizes.dedup();
    for size in sizes {
        'tries: for _ in 0..PROBE_TRIES {
            match send_msg(net, keys, peer, &Msg::Probe { size }, sbuf).await {
                Err(TransferError::Io { source, .. }) if socket::too_big(&source) => break,
                other => other?,
            }
            let until = tokio::time::Instant::now() + PROBE_WAIT;
            loop {
                let Ok(got) = tokio::time::timeout_at(until, net.recv()).await else {
                    continue 'tries;
                };
                let (from, datagram) = got.map_err(io("receiving"))?;
                if from != peer {
                    continue;
                }
                let Ok(body) = keys.open(datagram) else {
                    continue;
                };
                if Msg::decode(body) == Ok(Msg::ProbeAck { size }) {
                    return Ok(size);
                }
            }
        }
    }
    Ok(floor)
}

/// Serves `source` to the one receiver that starts the session with `keys`.
pub async fn serve(
    socket: &UdpSocket,
    mut keys: SessionKeys,
    source: &Source,
    opts: &ServeOptions,
    mut progress: impl Progress,
) -> Result<TransferStats, TransferError> {
    let mut net = BatchSocket::new(socket, SENDER_BUFFERS).map_err(io("preparing the socket"))?;
    let mut sbuf = Vec::with_capacity(65_536);
    let mut stats = TransferStats::default();
    // Wait for an authentic Start.
    let deadline = opts.wait_for_start.map(|d| Instant::now() + d);
    let (peer, isn, resume_from) = loop {
        let recv = net.recv();
        let (from, datagram) = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), recv)
                .await
                .map_err(|_| TransferError::PeerSilent("no receiver came".into()))?,
            None => recv.await,
        }
        .map_err(io("receiving"))?;
        let Ok(body) = keys.open(datagram) else {
            stats.forged += 1;
            continue;
        };
        if let Ok(Msg::Start { isn, resume_from }) = Msg::decode(body) {
            break (from, isn, resume_from);
        }
    };
    debug!(%peer, isn, resume_from, "session started");
    let started = Instant::now();
    let size = source.size();
    stats.resumed_from = resume_from.min(size);
    let mss = probe_path(&mut net, &mut keys, peer, opts.cfg.mss, &mut sbuf).await?;
    debug!(%peer, mss, segments = net.max_segments(), "packet size");
    let mut cfg = opts.cfg.clone();
    cfg.mss = mss;
    stats.mss = mss;
    let mut chunk = vec![0u8; mss as usize];
    let mut out = Outgoing::new(net.max_segments());
    let mut arq = Sender::new(cfg, isn, resume_from, size, Instant::now());
    let mut next_begin = Instant::now();
    let mut next_trace = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_trace && tracing::enabled!(tracing::Level::TRACE) {
            next_trace = now + TRACE_EVERY;
            let c = arq.controller();
            let (sent, resent) = arq.stats();
            trace!(
                mode = ?c.mode(),
                bw_mbit = c.bandwidth() * f64::from(mss) * 8e-6,
                pacing_mbit = c.pacing_rate() * f64::from(mss) * 8e-6,
                cwnd = c.cwnd(),
                srtt = ?arq.rtt().srtt(),
                min_rtt = ?c.min_rtt(),
                acked = arq.acked_bytes(),
                sent,
                resent,
                timeouts = arq.timeouts(),
                overflows = c.overflows(),
                loss_rate = c.loss_rate(),
                "sender"
            );
        }
        if arq.acked_bytes() == stats.resumed_from && now >= next_begin && !arq.is_done() {
            // Until the receiver acknowledges something, it may not know
            // the packet size yet.
            send_msg(&net, &mut keys, peer, &Msg::Begin { mss }, &mut sbuf).await?;
            next_begin = now + BEGIN_REPEAT;
        }
        while let Some(t) = arq.poll_transmit(now) {
            let len = HEADER + Frame::DATA_HEADER + t.len as usize + TAG;
            if !out.fits(len) {
                out.flush(&net, peer).await?;
            }
            let data = &mut chunk[..t.len as usize];
            source.read_at(t.offset, data)?;
            let frame = Msg::Arq(Frame::Data {
                seq: t.seq,
                payload: data,
            });
            out.push(&mut keys, &frame);
        }
        out.flush(&net, peer).await?;
        if arq.is_done() {
            // Tell the receiver it may stop; if this is lost it stops by
            // itself after a moment of silence.
            send_msg(&net, &mut keys, peer, &Msg::Arq(Frame::Done), &mut sbuf).await?;
            let (packets, retransmissions) = arq.stats();
            stats.packets = packets;
            stats.retransmissions = retransmissions;
            stats.bytes = size - stats.resumed_from;
            stats.seconds = started.elapsed().as_secs_f64();
            progress(size, size);
            return Ok(stats);
        }
        if let Some(e) = arq.failure() {
            let why = e.to_string();
            let abort = Msg::Arq(Frame::Abort(&why));
            let _ = send_msg(&net, &mut keys, peer, &abort, &mut sbuf).await;
            return Err(TransferError::PeerSilent(why));
        }
        let mut wake = arq.poll_timeout().unwrap_or(now + opts.cfg.idle_timeout);
        if arq.acked_bytes() == stats.resumed_from {
            wake = wake.min(next_begin);
        }
        let arrived = tokio::select! {
            r = net.ready() => { r.map_err(io("receiving"))?; true }
            _ = tokio::time::sleep_until(wake.into()) => false,
        };
        if !arrived {
            arq.on_timeout(Instant::now());
            continue;
        }
        for _ in 0..BATCH {
            let Some((from, datagram)) = next_ready(&mut net)? else {
                break;
            };
            if from != peer {
                // Not our receiver's.
            } else if let Ok(body) = keys.open(datagram) {
                match Msg::decode(body) {
                    Ok(Msg::Arq(Frame::Ack(ack))) => arq.on_ack(Instant::now(), &ack),
                    Ok(Msg::Arq(Frame::Abort(why))) => {
                        return Err(TransferError::Aborted(why.to_string()))
                    }
                    _ => {}
                }
            } else {
                stats.forged += 1;
            }
        }
        progress(arq.acked_bytes(), size);
    }
}

/// Fetches a file from `peer` into `download` with `keys`.
pub async fn fetch(
    socket: &UdpSocket,
    peer: SocketAddr,
    mut keys: SessionKeys,
    download: &mut Download,
    size: u64,
    opts: &FetchOptions,
    mut progress: impl Progress,
) -> Result<TransferStats, TransferError> {
    // Before asking: a file that cannot fit is refused before it comes.
    download.reserve()?;
    let mut net = BatchSocket::new(socket, RECEIVER_BUFFERS).map_err(io("preparing the socket"))?;
    let mut sbuf = Vec::with_capacity(256);
    let isn: u32 = rand::random();
    let resume_from = download.resume_from();
    let mut stats = TransferStats {
        resumed_from: resume_from,
        ..TransferStats::default()
    };
    let started = Instant::now();
    let start = Msg::Start { isn, resume_from };
    let opening = OpenReceiver {
        peer,
        start: &start,
        cap: opts.cfg.mss,
        idle_timeout: opts.cfg.idle_timeout,
    };
    let mss = opening
        .wait_for_begin(&mut net, &mut keys, &mut sbuf, &mut stats)
        .await?;
    stats.mss = mss;
    if mss > 16 << 10 {
        net.set_buffers(RECEIVER_BUFFERS_LARGE);
    }
    let mut cfg = opts.cfg.clone();
    cfg.mss = mss;
    let mut arq = Receiver::new(cfg, isn, resume_from, size, Instant::now());
    let mut saved = resume_from;
    let mut done_at: Option<Instant> = None;
    let result = loop {
        let now = Instant::now();
        if let Some(at) = done_at {
            if now >= at + LINGER {
                break Ok(());
            }
        } else if arq.is_complete() {
            done_at = Some(now);
        }
        if let Some(e) = arq.failure() {
            break Err(TransferError::PeerSilent(e.to_string()));
        }
        let wake = done_at
            .map(|t| t + LINGER)
            .or_else(|| arq.poll_timeout())
            .unwrap_or(now + opts.cfg.idle_timeout);
        let arrived = tokio::select! {
            r = net.ready() => { r.map_err(io("receiving"))?; true }
            _ = tokio::time::sleep_until(wake.into()) => false,
        };
        if !arrived {
            arq.on_timeout(Instant::now());
            continue;
        }
        // Take what has arrived, then acknowledge it all at once.
        let mut outcome = None;
        for _ in 0..BATCH {
            let Some((from, datagram)) = next_ready(&mut net)? else {
                break;
            };
            if from != peer {
                continue;
            }
            let Ok(body) = keys.open(datagram) else {
                stats.forged += 1;
                continue;
            };
            match Msg::decode(body) {
                Ok(Msg::Arq(Frame::Data { seq, payload })) => {
                    stats.packets += 1;
                    if let Verdict::Write { offset } =
                        arq.on_data(Instant::now(), seq, payload.len())
                    {
                        download.write_at(offset, payload)?;
                    }
                }
                Ok(Msg::Arq(Frame::Done)) if arq.is_complete() => {
                    outcome = Some(Ok(()));
                    break;
                }
                Ok(Msg::Arq(Frame::Abort(why))) => {
                    outcome = Some(Err(TransferError::Aborted(why.to_string())));
                    break;
                }
                _ => {}
            }
        }
        if let Some(outcome) = outcome {
            break outcome;
        }
        if let Some(mut ack) = arq.poll_ack() {
            ack.dropped = socket::receive_drops(socket);
            let ack = Msg::Arq(Frame::Ack(ack));
            send_msg(&net, &mut keys, peer, &ack, &mut sbuf).await?;
        }
        let contiguous = arq.contiguous_bytes();
        download.hash_up_to(contiguous)?;
        if contiguous >= saved + SAVE_EVERY {
            download.save_progress(contiguous)?;
            saved = contiguous;
        }
        progress(contiguous, size);
    };
    let contiguous = arq.contiguous_bytes();
    if let Err(e) = result {
        // Keep what arrived for the next attempt.
        let _ = download.hash_up_to(contiguous);
        let _ = download.save_progress(contiguous);
        return Err(e);
    }
    stats.bytes = size - resume_from;
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// The receiver's side of the opening: `Start` until the sender's `Begin`.
struct OpenReceiver<'a> {
    peer: SocketAddr,
    start: &'a Msg<'a>,
    /// The largest payload accepted (the offer's).
    cap: u32,
    idle_timeout: Duration,
}

/// What the receiver does with a datagram of the opening.
enum Opening {
    Ignore,
    AnswerProbe(u32),
    Begin(u32),
    Fail(TransferError),
}

impl OpenReceiver<'_> {
    /// Sends `Start` (again every [`START_REPEAT`]), answers the sender's
    /// probes, and returns the packet size its `Begin` fixes.
    async fn wait_for_begin(
        &self,
        net: &mut BatchSocket<'_>,
        keys: &mut SessionKeys,
        sbuf: &mut Vec<u8>,
        stats: &mut TransferStats,
    ) -> Result<u32, TransferError> {
        let give_up = Instant::now() + self.idle_timeout;
        let mut next_start = Instant::now();
        loop {
            let now = Instant::now();
            if now >= give_up {
                return Err(TransferError::PeerSilent(format!(
                    "no answer from the peer for {:?}",
                    self.idle_timeout
                )));
            }
            if now >= next_start {
                send_msg(net, keys, self.peer, self.start, sbuf).await?;
                next_start = now + START_REPEAT;
            }
            let wake = next_start.min(give_up);
            let step = tokio::select! {
                r = net.recv() => {
                    let (from, datagram) = r.map_err(io("receiving"))?;
                    self.judge(keys, from, datagram, stats)
                }
                _ = tokio::time::sleep_until(wake.into()) => continue,
            };
            match step {
                Opening::Ignore => {}
                Opening::AnswerProbe(size) => {
                    let ack = Msg::ProbeAck { size };
                    send_msg(net, keys, self.peer, &ack, sbuf).await?;
                }
                Opening::Begin(mss) => return Ok(mss),
                Opening::Fail(e) => return Err(e),
            }
        }
    }

    /// What to do with `datagram` from `from` during the opening.
    fn judge(
        &self,
        keys: &mut SessionKeys,
        from: SocketAddr,
        datagram: &mut [u8],
        stats: &mut TransferStats,
    ) -> Opening {
        if from != self.peer {
            return Opening::Ignore;
        }
        let Ok(body) = keys.open(datagram) else {
            stats.forged += 1;
            return Opening::Ignore;
        };
        match Msg::decode(body) {
            Ok(Msg::Probe { size }) if size <= self.cap => Opening::AnswerProbe(size),
            Ok(Msg::Begin { mss }) if (1..=self.cap).contains(&mss) => Opening::Begin(mss),
            Ok(Msg::Begin { mss }) => Opening::Fail(TransferError::Invalid(format!(
                "the sender chose {mss}-byte packets, outside 1..={}",
                self.cap
            ))),
            Ok(Msg::Arq(Frame::Abort(why))) => {
                Opening::Fail(TransferError::Aborted(why.to_string()))
            }
            // Data before `Begin` is dropped: it will come again.
            _ => Opening::Ignore,
        }
    }
}
