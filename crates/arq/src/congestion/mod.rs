//! Congestion control: how much the sender may have in flight, and how
//! fast it sends.
//!
//! This module owns what one acknowledgement tells a controller
//! ([`AckEvent`]) and the controller chatdrop sends with, [`Model`]: a
//! model of the path after BBR ([`model`]).

mod model;
mod windowed_max;

pub use model::{Mode, Model, INITIAL_CWND, MIN_CWND};

use std::time::Duration;

use crate::rate::RateSample;

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
