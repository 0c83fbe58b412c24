//! Congestion control: how much the sender may have in flight, and how
//! fast it sends.
//!
//! This module owns the interface between the [`Sender`](crate::Sender)
//! and a congestion controller: the [`Controller`] trait and what one
//! acknowledgement tells a controller ([`AckEvent`]). Behind it:
//!
//! - [`Model`] (`model.rs`), chatdrop's controller and the sender's default:
//!   a model of the path (bottleneck bandwidth and propagation RTT), after
//!   BBR;
//! - [`Cubic`] (`cubic.rs`), TCP's loss-based CUBIC (RFC 9438), so that the
//!   simulated tests run the real sender as the loss-based flow a chatdrop
//!   transfer shares a bottleneck with.
//!
//! The trait is narrow, as quinn-proto's `congestion::Controller` is: what
//! the sender reads (the window and pacing rate before it sends, and the
//! path's RTT floor, which its guard against early acknowledgements of
//! resent packets needs) and the two events it reports. What
//! only tracing and the benchmarks read (the model's phase, bandwidth,
//! overflows, loss rate) stays on the concrete type, which
//! [`Sender::controller`](crate::Sender::controller) hands out. The sender
//! is generic over its controller, so every per-packet call is a direct
//! (inlinable) one.

mod cubic;
mod model;
mod windowed_max;

pub use crate::rate::RateSample;
pub use cubic::Cubic;
#[cfg(test)]
pub(crate) use model::MIN_CWND;
pub use model::{Mode, Model};

use std::time::{Duration, Instant};

/// The window before anything is measured, packets: RFC 9002's initial
/// window (ten packets, §7.2), which RFC 6928 also gives TCP.
pub(crate) const INITIAL_CWND: u64 = 10;

/// A congestion controller, as the [`Sender`](crate::Sender) drives it.
///
/// The sender asks [`Controller::cwnd`] before each packet (new or resent)
/// and paces at [`Controller::pacing_rate`]; it reports each
/// acknowledgement ([`Controller::on_ack`], losses found from it included)
/// and each retransmission timeout ([`Controller::on_timeout`]). Losses
/// the loss timer finds between acknowledgements are resent without being
/// reported: a controller hears of loss from acknowledgements and
/// timeouts only.
///
/// There is no send quantum here: the sender's bursts are its pacer's
/// (2 ms at the pacing rate), whatever the controller.
pub trait Controller {
    /// Packets allowed in flight (sent, not acknowledged, not found lost).
    fn cwnd(&self) -> u64;

    /// Packets a second to send at. The sender's token bucket spreads
    /// packets at this rate, so it must be positive; a controller that
    /// wants no pacing returns a rate the window binds first.
    fn pacing_rate(&self) -> f64;

    /// The path's round-trip propagation time as the controller estimates
    /// it, once measured. The sender takes an acknowledgement that comes
    /// back sooner than half of it after a packet was resent for one of an
    /// earlier copy.
    fn min_rtt(&self) -> Option<Duration>;

    /// Takes what one acknowledgement tells, at `now`.
    fn on_ack(&mut self, now: Instant, ev: &AckEvent);

    /// A retransmission timeout fired at `now`: packets are out and no
    /// acknowledgement has come for a timeout.
    fn on_timeout(&mut self, now: Instant);
}

/// What one acknowledgement tells the controller.
#[derive(Debug, Clone, Copy)]
pub struct AckEvent {
    /// The delivery-rate sample, if a packet was newly acknowledged and the
    /// acknowledgement can be for its latest sending.
    pub sample: Option<RateSample>,
    /// Packets newly acknowledged.
    pub newly_acked: u64,
    /// Packets newly found lost.
    pub newly_lost: u64,
    /// When the most recently sent of the packets newly found lost was
    /// sent (its latest sending): a controller that cuts once per loss
    /// episode tells from it whether the losses are new (RFC 9002,
    /// §7.3.2). `None` when nothing was found lost.
    pub lost_sent_at: Option<Instant>,
    /// Packets delivered in all.
    pub delivered: u64,
    /// Packets in flight after this acknowledgement.
    pub in_flight: u64,
    /// An RTT sample, if one was taken.
    pub rtt: Option<Duration>,
    /// Datagrams the receiver newly reports its socket dropped (it could
    /// not keep up): losses that are not the path's.
    pub receiver_dropped: u64,
}
