//! chatdrop's reliable transfer, free of I/O.
//!
//! A [`Sender`] and a [`Receiver`] move one byte range (a file, or the rest
//! of one) over an unreliable datagram path with Go-Back-N or Selective
//! Repeat ([`Scheme`]). They never touch sockets, files or clocks: the
//! driver passes in the time and the frames that arrived, and asks what to
//! send and when to wake up. The sender does not even hold the data: it says
//! which range to send ([`Transmit`]) and the driver reads it from the file,
//! so memory stays bounded by the window whatever the file's size.
//!
//! Selective Repeat finds losses from acknowledgements (three later packets
//! acknowledged first, or one acknowledged and 9/8 of an RTT passed, judged in
//! sending order as RFC 9002 does), with the retransmission timeout as the
//! backstop; Go-Back-N goes back on its timeout, as the textbook has it. Both
//! send as a congestion controller allows ([`congestion`]: by default a
//! model of the path's bandwidth and RTT, after BBR), paced by a token
//! bucket, with the configured window as a cap.
//!
//! This crate exposes what the transfer driver and the command line use
//! (the two ends, their frames and settings) and the congestion-control
//! interface; the pacer, the delivery-rate sampler and the RTT estimator's
//! workings stay inside.
//!
//! Sequence numbers are 32 bits on the wire and wrap; both sides keep 64-bit
//! packet indices and map sequence numbers into their window with serial
//! arithmetic, so a transfer may cross the wrap any number of times.

pub mod congestion;
mod frame;
mod pacer;
mod rate;
mod receiver;
mod rtt;
mod sender;

pub use frame::{Ack, DecodeError, Frame};
pub use receiver::{Receiver, Verdict};
pub use rtt::RttEstimator;
pub use sender::{Sender, Transmit};

use std::time::Duration;

/// How the receiver takes packets and the sender resends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Go-Back-N: cumulative acks; the receiver takes packets in order only;
    /// on a timeout the sender resends everything from the oldest unacked.
    GoBackN,
    /// Selective Repeat: the receiver keeps out-of-order packets of its
    /// window and acks each (cumulative ack plus SACK ranges); the sender
    /// resends only what the acknowledgements (or a timeout) show lost.
    SelectiveRepeat,
}

impl std::str::FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gbn" | "go-back-n" => Ok(Scheme::GoBackN),
            "sr" | "selective-repeat" => Ok(Scheme::SelectiveRepeat),
            other => Err(format!("unknown ARQ scheme {other:?}: use gbn or sr")),
        }
    }
}

impl Scheme {
    /// Short name: `gbn` or `sr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::GoBackN => "gbn",
            Scheme::SelectiveRepeat => "sr",
        }
    }
}

/// The default window cap, packets: enough to fill 1 Gbit/s at 100 ms RTT
/// with 1200-byte packets (about 10,400). The congestion controller keeps
/// the flight near what the path needs; the cap only bounds it.
pub const DEFAULT_WINDOW: u32 = 16_384;
/// The largest window either side accepts, packets (the receiver's
/// bookkeeping and the sender's grow with it).
pub const MAX_WINDOW: u32 = 1 << 20;

/// Settings shared by both ends of a transfer.
#[derive(Debug, Clone)]
pub struct Config {
    /// Go-Back-N or Selective Repeat (both ends use the same).
    pub scheme: Scheme,
    /// Window in packets (at least 1).
    pub window: u32,
    /// Payload bytes per data packet (at least 1).
    pub mss: u32,
    /// Retransmission timeout before any RTT sample.
    pub initial_rto: Duration,
    /// Lower bound of the retransmission timeout.
    pub min_rto: Duration,
    /// Upper bound of the retransmission timeout (after backoff too).
    pub max_rto: Duration,
    /// A side that hears nothing from its peer for this long gives up.
    pub idle_timeout: Duration,
}

impl Config {
    /// Defaults for `scheme` with a window of `window` packets.
    pub fn new(scheme: Scheme, window: u32) -> Self {
        Config {
            scheme,
            window: window.max(1),
            mss: 1200,
            initial_rto: Duration::from_millis(500),
            min_rto: Duration::from_millis(50),
            max_rto: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
        }
    }

    /// The receiving end's settings for what the sender announced: its
    /// scheme (`selective_repeat` or Go-Back-N), window and packet size.
    pub fn announced(
        selective_repeat: bool,
        window: u32,
        mss: u32,
        idle_timeout: Duration,
    ) -> Self {
        let scheme = if selective_repeat {
            Scheme::SelectiveRepeat
        } else {
            Scheme::GoBackN
        };
        let mut cfg = Config::new(scheme, window);
        cfg.mss = mss.max(1);
        cfg.idle_timeout = idle_timeout;
        cfg
    }

    /// Number of packets needed for `len` bytes.
    pub fn packets_for(&self, len: u64) -> u64 {
        len.div_ceil(self.mss as u64)
    }
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArqError {
    /// Nothing came from the peer for the idle timeout.
    #[error("no answer from the peer for {0:?}")]
    PeerSilent(Duration),
    /// The receiver acknowledged a packet that was never sent: it lies
    /// about what arrives, to make the sender outrun the path.
    #[error(
        "the receiver acknowledged a packet that was never sent (optimistic acknowledgements)"
    )]
    OptimisticAck,
}
