//! The sending end's driver: it gives a [`SendSession`] a socket, the
//! session keys and the file. It owns what the machine leaves out on
//! purpose: sealing, sending data datagrams in batches the kernel cuts
//! apart (see [`crate::batch`]), reading the file, the numbers, the logs
//! and the progress.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatdrop_arq::{Frame, Sender};
use tokio::net::UdpSocket;
use tracing::{debug, trace};

use super::net::{io, next_frame, send_msg, wait, Foreign, Next, BATCH};
use super::send::PUNCH_TTL;
use super::{Event, Progress, SendSession, ServeOptions, Span, TransferStats};
use crate::batch::{BatchSocket, MAX_SEND_BYTES};
use crate::crypto::{SessionKeys, HEADER, TAG};
use crate::direct::{Answer, Responder};
use crate::files::Source;
use crate::socket;
use crate::ticket::Ticket;
use crate::wire::Msg;
use crate::TransferError;

/// How often the sender traces its congestion controller's state.
const TRACE_EVERY: Duration = Duration::from_millis(100);
/// Receive buffers of the sending end: it receives only acknowledgements.
const SENDER_BUFFERS: usize = 8;

/// How the sending end gets its session keys.
pub enum ServeKeys {
    /// Agreed before the session (chat mode: the key exchange the offer
    /// signs).
    Agreed(Box<SessionKeys>),
    /// Agreed afresh with a receiver that proves it holds this ticket
    /// (direct mode: see [`crate::direct`]).
    Ticket(Box<Ticket>),
}

impl From<SessionKeys> for ServeKeys {
    fn from(keys: SessionKeys) -> ServeKeys {
        ServeKeys::Agreed(Box::new(keys))
    }
}

/// Serves `source` to the one receiver that starts the session with
/// `keys` (or, in direct mode, with keys agreed with it).
pub async fn serve(
    socket: &UdpSocket,
    keys: impl Into<ServeKeys>,
    source: &Source,
    opts: &ServeOptions,
    mut progress: impl Progress,
) -> Result<TransferStats, TransferError> {
    let (mut keys, mut responder) = match keys.into() {
        ServeKeys::Agreed(keys) => (Some(*keys), None),
        ServeKeys::Ticket(ticket) => (None, Some(Responder::new(&ticket))),
    };
    let mut net = BatchSocket::new(socket, SENDER_BUFFERS).map_err(io("preparing the socket"))?;
    let mut sbuf = Vec::with_capacity(65_536);
    let mut stats = TransferStats::default();
    let size = source.size();
    let mut opts = opts.clone();
    opts.punch = (opts.punch.iter())
        .map(|a| socket::for_socket(socket, *a))
        .collect();
    let outline = source.outline_len();
    let mut session = SendSession::new(&opts, size, outline, Instant::now(), rand::random());
    // What the receiver asked for, once it started.
    let mut span = Span {
        from: 0,
        to: size,
        outline,
    };
    let mut ttl = socket::Ttl::of(socket);
    let mut foreign = Foreign::new();
    let mut started = Instant::now();
    // Each data packet is read into this, then sealed into `out`: sized
    // once the packet size is known.
    let mut chunk = Vec::new();
    let mut out = Outgoing::new(net.max_segments());
    let mut next_trace = Instant::now();
    loop {
        let now = Instant::now();
        let session_low_ttl = session.low_ttl_punches();
        while let Some((to, msg)) = session.poll_msg(now) {
            let probe = match msg {
                Msg::Probe { size } => Some(size),
                _ => None,
            };
            let abort = matches!(msg, Msg::Arq(Frame::Abort(_)));
            let punch = matches!(msg, Msg::Punch);
            // The first punches go only as far as this side's own NAT (see
            // `PUNCH_TTL`); anything else, as far as it must.
            let low = punch && session_low_ttl;
            ttl.set(low.then_some(PUNCH_TTL));
            // A frame goes only after a `Start` opened, so with keys; but
            // for the punches of a direct-mode sender that has none yet.
            let Some(keys) = keys.as_mut() else {
                if punch {
                    let _ = net.send(to, &[crate::direct::BARE_PUNCH], 1).await;
                    continue;
                }
                break;
            };
            match (send_msg(&net, keys, to, &msg, &mut sbuf).await, probe) {
                (Err(TransferError::Io { source, .. }), Some(size)) if socket::too_big(&source) => {
                    session.on_too_big(now, size);
                }
                // Failing anyway: a receiver that misses the reason stops
                // by itself after a moment of silence.
                (Err(_), _) if abort => {}
                // A candidate this host cannot reach is just not the path.
                (Err(_), _) if punch => {}
                (sent, _) => sent?,
            }
        }
        while let Some(event) = session.poll_event() {
            match event {
                Event::Started {
                    peer,
                    isn,
                    resume_from,
                    to,
                } => {
                    debug!(%peer, isn, resume_from, to, "session started");
                    started = Instant::now();
                    stats.resumed_from = resume_from;
                    span.from = resume_from;
                    span.to = to;
                }
                Event::Moved { peer } => debug!(%peer, "the receiver moved"),
                Event::Began { mss } => {
                    if let Some(peer) = session.peer() {
                        let segments = net.max_segments();
                        debug!(%peer, mss, segments, "packet size");
                    }
                    stats.mss = mss;
                    chunk = vec![0u8; mss as usize];
                }
                Event::Resized { mss } => {
                    debug!(mss, "the path's packet size changed");
                    stats.mss = mss;
                    chunk = vec![0u8; mss as usize];
                }
            }
        }
        if let (Some(peer), Some(keys)) = (session.peer(), keys.as_mut()) {
            if now >= next_trace && tracing::enabled!(tracing::Level::TRACE) {
                next_trace = now + TRACE_EVERY;
                trace_sender(session.arq(), stats.mss);
            }
            while let Some(t) = session.poll_data(now) {
                let len = HEADER + Frame::DATA_HEADER + t.len as usize + TAG;
                if !out.fits(len) {
                    let sent = out.flush(&net, peer).await;
                    too_big_is_loss(sent, &mut session, now, stats.mss)?;
                }
                let data = &mut chunk[..t.len as usize];
                source.read_stream(&span, t.offset, data)?;
                let frame = Msg::Arq(Frame::Data {
                    seq: t.seq,
                    payload: data,
                });
                out.push(keys, &frame);
            }
            let sent = out.flush(&net, peer).await;
            too_big_is_loss(sent, &mut session, now, stats.mss)?;
        }
        if let Some(end) = session.poll_end() {
            end?;
            let (packets, retransmissions) = session.arq().map_or((0, 0), Sender::stats);
            stats.packets = packets;
            stats.retransmissions = retransmissions;
            stats.spurious = session.arq().map_or(0, Sender::spurious_retransmissions);
            // Of the file's bytes asked for, those acknowledged (all of
            // them, unless the receiver had enough before).
            let acked = session.arq().map_or(span.from, Sender::acked_bytes);
            stats.bytes = acked.saturating_sub(span.from + span.outline);
            stats.seconds = started.elapsed().as_secs_f64();
            progress(size, size);
            return Ok(stats);
        }
        if !wait(&mut net, session.poll_timeout()).await? {
            session.handle_timeout(Instant::now());
            continue;
        }
        // Addresses learnt meanwhile are allowed before what came is read.
        if let (None, Some(later)) = (session.peer(), &opts.later_peer_ips) {
            let later = std::mem::take(&mut *later.lock().unwrap_or_else(|p| p.into_inner()));
            for ip in later {
                session.allow_peer_ip(ip);
            }
        }
        for _ in 0..BATCH {
            let budget = (&mut stats.forged, &mut foreign);
            match next_frame(&mut net, keys.as_mut(), session.peer(), budget)? {
                Next::Frame(from, msg) => session.handle(Instant::now(), from, msg),
                Next::Hello(from, hello) => {
                    let Some(responder) = responder.as_mut() else {
                        continue;
                    };
                    // A new run only while no receiver has started one.
                    let reply = match responder.on_hello(hello, session.peer().is_none()) {
                        Some(Answer::Repeat(reply)) => reply,
                        Some(Answer::New(reply, fresh)) => {
                            debug!(%from, "direct-mode keys agreed");
                            keys = Some(*fresh);
                            reply
                        }
                        None => continue,
                    };
                    // A lost reply is asked for again by the next Hello.
                    let _ = net.send(from, &reply, reply.len()).await;
                }
                Next::Dropped => {}
                Next::Empty => break,
            }
        }
        if let Some(arq) = session.arq() {
            progress(arq.acked_bytes(), size);
        }
    }
}

/// Data the host refused as too big for its route (`EMSGSIZE`: the
/// route's MTU went down mid-session) is lost data, which the ARQ sends
/// again, and a sign for the session to check the packet size; any other
/// failure to send ends the transfer.
fn too_big_is_loss(
    sent: Result<(), TransferError>,
    session: &mut SendSession,
    now: Instant,
    mss: u32,
) -> Result<(), TransferError> {
    match sent {
        Err(TransferError::Io { source, .. }) if socket::too_big(&source) => {
            session.on_too_big(now, mss);
            Ok(())
        }
        other => other,
    }
}

/// Traces the congestion controller's state, with rates in Mbit/s of
/// `mss`-byte payloads.
fn trace_sender(arq: Option<&Sender>, mss: u32) {
    let Some(arq) = arq else {
        return;
    };
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
        let sent = if self.count > 0 {
            net.send(to, &self.buf, self.segment)
                .await
                .map_err(io("sending data"))
        } else {
            Ok(())
        };
        self.buf.clear();
        self.count = 0;
        self.closed = false;
        sent
    }
}
