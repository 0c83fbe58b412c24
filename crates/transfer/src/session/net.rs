//! What both drivers do with their socket: seal and send one frame, wait
//! for a datagram or a time, take the datagrams already there.

use std::net::SocketAddr;
use std::time::Instant;

use crate::batch::BatchSocket;
use crate::crypto::{SessionKeys, HEADER};
use crate::wire::Msg;
use crate::TransferError;

/// Datagrams taken from the socket before answering: the receiver sends
/// one acknowledgement per batch of arrivals, the sender reacts to a batch
/// of acknowledgements at once.
pub(super) const BATCH: usize = 64;

pub(super) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> TransferError {
    TransferError::io(what)
}

/// Seals `msg` in `buf` and sends it to `to`.
pub(super) async fn send_msg(
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

/// Waits until a datagram is there (`true`) or `wake` passes (`false`);
/// without a `wake`, for a datagram only.
pub(super) async fn wait(
    net: &mut BatchSocket<'_>,
    wake: Option<Instant>,
) -> Result<bool, TransferError> {
    let Some(wake) = wake else {
        net.ready().await.map_err(io("receiving"))?;
        return Ok(true);
    };
    tokio::select! {
        r = net.ready() => { r.map_err(io("receiving"))?; Ok(true) }
        _ = tokio::time::sleep_until(wake.into()) => Ok(false),
    }
}

/// What one datagram taken from the socket came to.
pub(super) enum Next<'n> {
    /// Nothing more is there now.
    Empty,
    /// A datagram that is not for the session, forged or malformed.
    Dropped,
    /// An authentic frame, and where it came from.
    Frame(SocketAddr, Msg<'n>),
    /// A direct-mode `Hello` (unsealed: it makes the keys), and where it
    /// came from.
    Hello(SocketAddr, &'n [u8]),
}

/// Datagrams from an address other than the peer's that are opened all
/// the same: large enough for an acknowledgement (with its 128 ranges) or
/// a `Start` of a peer that moved (see `SendSession::on_other_address`),
/// small enough that opening them costs little, unlike a data datagram of
/// up to 64 KiB.
const MAX_FOREIGN: usize = 1280;

/// Larger datagrams from other addresses opened all the same, a second:
/// a sender that moved sends nothing but data, and the first fresh data
/// datagram from its new address shows where it went (see
/// `RecvSession::handle`). A few a second cost little whoever sends them.
const FOREIGN_PER_SEC: f64 = 8.0;

/// The budget of [`FOREIGN_PER_SEC`].
pub(super) struct Foreign {
    tokens: f64,
    at: Instant,
}

impl Foreign {
    pub(super) fn new() -> Foreign {
        Foreign {
            tokens: FOREIGN_PER_SEC,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * FOREIGN_PER_SEC).min(FOREIGN_PER_SEC);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Takes the datagram pending on `net`, or the next the kernel already
/// holds, without waiting, and opens it. A datagram from anywhere but
/// `peer` (when there is one) is dropped unopened unless it is small:
/// opening costs as much as the data is long. A direct-mode `Hello` is
/// handed over as it came. One that fails to open is counted in `forged`
/// (a copy of one opened before is dropped, not counted).
pub(super) fn next_frame<'n>(
    net: &'n mut BatchSocket<'_>,
    keys: Option<&mut SessionKeys>,
    peer: Option<SocketAddr>,
    (forged, foreign): (&mut u64, &mut Foreign),
) -> Result<Next<'n>, TransferError> {
    if !net.try_recv().map_err(io("receiving"))? {
        return Ok(Next::Empty);
    }
    let Some((from, datagram)) = net.next_datagram() else {
        return Ok(Next::Empty);
    };
    let other = peer.is_some_and(|peer| peer != from);
    if other && datagram.len() > MAX_FOREIGN && !foreign.take() {
        return Ok(Next::Dropped);
    }
    if datagram.first() == Some(&crate::direct::HELLO) {
        return Ok(Next::Hello(from, datagram));
    }
    // Before direct mode's handshake there is nothing to open with.
    let Some(keys) = keys else {
        return Ok(Next::Dropped);
    };
    let body = match keys.open(datagram) {
        Ok(body) => body,
        Err(e) => {
            // A copy is no forgery: networks duplicate datagrams.
            *forged += u64::from(e == crate::crypto::OpenError::Forged);
            return Ok(Next::Dropped);
        }
    };
    Ok(Msg::decode(body).map_or(Next::Dropped, |msg| Next::Frame(from, msg)))
}
