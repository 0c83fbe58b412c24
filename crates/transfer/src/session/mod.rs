//! The two ends of a transfer session over one UDP socket each.
//!
//! The receiver speaks first (`Start`, repeated until the sender begins),
//! so the sender learns its address from an authenticated datagram: only
//! the holder of the session keys can start a session, and only once. The
//! address must also prove itself before the sender sends more than a
//! small `Challenge` there: the `Start` must echo the token the
//! `Challenge` carried to it, so no key holder can aim the file at a
//! third party by forging the source of a `Start`.
//!
//! The sender then finds the largest packet the path carries: it tries
//! IP packet sizes from the largest down (loopback's 64 KiB, jumbo frames,
//! Ethernet), each with a `Probe` as long as such a data datagram; a size
//! the host already knows too big fails at once, one the path loses goes
//! unanswered; the first `ProbeAck` fixes the size, sent in `Begin` (and
//! repeated until the first acknowledgement). Bigger packets mean fewer of
//! them, and less header per byte: 1446 payload bytes fill a 1500-byte
//! Ethernet frame where the 1200-byte floor would take 6% more packets.
//!
//! Each end is split as quinn-proto splits a connection from its endpoint,
//! so that the protocol can be tested without sockets or clocks:
//!
//! - the machines, free of I/O: [`SendSession`] (`send.rs`) and
//!   [`RecvSession`] (`recv.rs`) hold the whole protocol of their end
//!   (the opening, the ARQ they wrap, the closing). They take decoded
//!   frames and the time, and say what to send and when to wake them.
//!   The search for the packet size is a machine of its own inside the
//!   sending session (`probe.rs`, after quinn-proto's `mtud.rs`).
//! - the drivers, [`serve()`] (`serve.rs`) and [`fetch()`] (`fetch.rs`): they
//!   own the socket, the keys, the file, the hash, the resume record, the
//!   logs and the progress; they read datagrams, open them, hand the
//!   frames over, seal and send what the machines say, and sleep until
//!   they say. What both drivers share is in `net.rs`.
//!
//! This module owns what the two ends and their callers share: the options,
//! the numbers of a finished transfer, the packet size bounds and the
//! events the machines report.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chatdrop_arq::{Config, Frame};

use crate::crypto::{HEADER, TAG};

mod fetch;
mod net;
mod probe;
mod recv;
mod send;
mod serve;
#[cfg(test)]
mod sim;

pub use fetch::{decline, fetch, fetch_from, Candidates};
pub use recv::RecvSession;
pub use send::{SendSession, MAX_PUNCHED};
pub use serve::{serve, ServeKeys};

/// Payload bytes of a data packet when no larger size is confirmed: fits
/// any path that carries IPv6's minimum of 1280-byte packets over IPv4.
pub const MIN_MSS: u32 = 1200;
/// The largest payload a data packet may carry (a 64 KiB IPv4 datagram).
pub const MAX_MSS: u32 = (65_507 - HEADER - TAG - Frame::DATA_HEADER) as u32;

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
    /// Of those, the ones the sender found needless: acknowledged too soon
    /// after they went for the resend to have arrived (sender only).
    pub spurious: u64,
    /// Datagrams dropped because they did not authenticate.
    pub forged: u64,
    /// Where the download resumed from.
    pub resumed_from: u64,
    /// Payload bytes per data packet (the largest the path carried; the
    /// last in use, after a change).
    pub mss: u32,
}

/// What one session moves: the file's outline (`outline` bytes, see
/// [`crate::outline`]), then the file's bytes `from..to`.
///
/// The ARQ numbers them as one stream of offsets `from..to + outline`:
/// the outline at `from..from + outline`, the file's byte `f` at
/// `f + outline`. Both ends know all three numbers (the outline's length
/// follows from the file's size), so nothing about the layout travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The first byte of the file asked for.
    pub from: u64,
    /// The byte after the last one asked for.
    pub to: u64,
    /// Bytes of the outline sent ahead of them.
    pub outline: u64,
}

/// Where a stream offset of a [`Span`] lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// In the outline, this many bytes from its start.
    Outline(u64),
    /// In the file, at this byte.
    File(u64),
}

impl Span {
    /// The stream's end: the ARQ's last offset plus one.
    pub fn end(&self) -> u64 {
        self.to + self.outline
    }

    /// Where the stream's offset `at` lies.
    pub fn locate(&self, at: u64) -> Piece {
        if at < self.from + self.outline {
            Piece::Outline(at.saturating_sub(self.from))
        } else {
            Piece::File(at - self.outline)
        }
    }

    /// Cuts the stream bytes `data` at offset `at` into the outline's
    /// part and the file's, each with where it goes.
    pub fn split<'a>(&self, at: u64, data: &'a [u8]) -> [(Piece, &'a [u8]); 2] {
        let outline_end = self.from + self.outline;
        let n = outline_end.saturating_sub(at).min(data.len() as u64) as usize;
        let (head, tail) = data.split_at(n);
        [(self.locate(at), head), (self.locate(at + n as u64), tail)]
    }
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
    /// The only IP addresses a receiver may start from, when they are
    /// known (chat mode: the asker's, as its server sees it, and those of
    /// its candidates); empty takes any that proves it gets what is sent
    /// there.
    pub peer_ips: Vec<IpAddr>,
    /// The receiver's candidate addresses (chat mode), punched towards
    /// while no `Start` came: at most [`MAX_PUNCHED`] of them, every
    /// 200 ms for two seconds. Nothing larger than a `Punch` goes to an
    /// address before it proves it is the receiver's.
    pub punch: Vec<SocketAddr>,
    /// IP addresses that join `peer_ips` while no receiver started, as
    /// they become known (chat mode: a relay at another server, told of
    /// after the offer went).
    pub later_peer_ips: Option<LaterIps>,
}

/// IP addresses handed to a running sending end (see
/// [`ServeOptions::later_peer_ips`]).
pub type LaterIps = std::sync::Arc<std::sync::Mutex<Vec<IpAddr>>>;

/// Options of the receiving end.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// ARQ settings; must match the sender's scheme, window and packet size.
    pub cfg: Config,
}

/// What a session machine tells its driver once, besides what to send:
/// for the driver's logs and for what it sets up when data is about to
/// flow (buffers sized to the packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The sender took a receiver's `Start`; or the receiver heard from
    /// the sender (at one of its candidate addresses) for the first time.
    Started {
        /// The other end's address: the session's only peer from now on.
        peer: SocketAddr,
        /// The receiver's choice of the first data packet's number.
        isn: u32,
        /// The byte offset the receiver asked to start from (what an
        /// earlier attempt left it).
        resume_from: u64,
        /// The byte offset it asked to stop at.
        to: u64,
    },
    /// The packet size is fixed and data may flow: the sender's probing
    /// ended, or the receiver accepted the sender's `Begin`.
    Began {
        /// Payload bytes of every data packet but the last.
        mss: u32,
    },
    /// The packet size changed mid-session: the path stopped carrying
    /// the old one (a black hole), or carries a larger one again. The
    /// data goes on from what was acknowledged, in packets of this size.
    Resized {
        /// Payload bytes of every data packet but the last, from now on.
        mss: u32,
    },
    /// The sender moved the session to the receiver's new address (its
    /// NAT gave it another mapping, or it changed networks), proved as
    /// the first one was.
    Moved {
        /// The receiver's address from now on.
        peer: SocketAddr,
    },
}
