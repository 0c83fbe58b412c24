//! The receiving end's driver: it gives a [`RecvSession`] a socket, the
//! session keys and a range of the download ([`Region`]). It owns what
//! the machine leaves out on purpose: opening and sealing, the receive
//! buffers, taking the outline, writing the file and checking its parts as
//! they fill, recording progress for a resume, the drop count in each
//! acknowledgement, and the progress.

use std::net::SocketAddr;
use std::time::Instant;

use chatdrop_arq::Frame;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::net::{io, next_frame, send_msg, wait, Foreign, Next, BATCH};
use super::{Event, FetchOptions, Piece, Progress, RecvSession, Span, TransferStats};
use crate::batch::BatchSocket;
use crate::crypto::SessionKeys;
use crate::download::{Download, Region};
use crate::socket;
use crate::wire::Msg;
use crate::TransferError;

/// How often a receiver records its progress for resuming: each record
/// syncs the file, which a loop at gigabits cannot afford often.
const SAVE_EVERY: u64 = 64 << 20;
/// Receive buffers of the receiving end (fewer for packets over 16 KiB:
/// see [`BatchSocket::set_buffers`]).
const RECEIVER_BUFFERS: usize = 32;
const RECEIVER_BUFFERS_LARGE: usize = 4;

/// Fetches what `download` lacks from `peer` with `keys`, in one
/// session: from its first missing byte to its last (parts verified in
/// between are neither written nor checked again). Progress counts the
/// whole file. A failed attempt keeps its verified parts for the next.
pub async fn fetch(
    socket: &UdpSocket,
    peer: SocketAddr,
    keys: SessionKeys,
    download: &Download,
    opts: &FetchOptions,
    mut progress: impl Progress,
) -> Result<TransferStats, TransferError> {
    let missing = download.missing();
    let size = download.size();
    let (from, to) = match (missing.first(), missing.last()) {
        (Some(first), Some(last)) => (first.0, last.1),
        _ => (size, size),
    };
    // Before asking: a file that cannot fit is refused before it comes.
    download.reserve()?;
    let mut region = download.region(from, to);
    let at = [peer];
    let candidates = Candidates {
        at: &at,
        opened: |_| {},
        more: None,
    };
    let before = size - (to - from);
    let whole = move |done: u64, _: u64| progress(before + done, size);
    let mut fetched = fetch_from(socket, candidates, keys, &mut region, opts, whole).await;
    let damaged = download.damaged_parts();
    if fetched.is_ok() && !download.is_complete() && damaged > 0 {
        // Outside the range this session fetched: the next attempt does.
        let _ = download.save_progress();
        fetched = Err(TransferError::Invalid(format!(
            "{damaged} part(s) an earlier attempt left in the .part file were damaged; \
             the next attempt fetches them again"
        )));
    }
    if fetched.is_err() {
        download.give_back_room();
    }
    fetched
}

/// Tells an owner whose offer is not taken (the download has every byte
/// it needs from others) that nothing is needed: `Enough`, sealed with the
/// session's `keys`, to each of its candidate addresses `at`, three
/// rounds 100 ms apart (the owner's punches open its router to this
/// socket meanwhile). Its session then ends at once instead of holding an
/// upload slot until it gives up waiting. Best effort: what cannot be sent
/// is skipped.
pub async fn decline(socket: &UdpSocket, mut keys: SessionKeys, at: &[SocketAddr]) {
    let Ok(net) = BatchSocket::new(socket, 1) else {
        return;
    };
    let mut buf = Vec::with_capacity(64);
    for round in 0..3 {
        if round > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        for to in at {
            let to = socket::for_socket(socket, *to);
            let _ = send_msg(&net, &mut keys, to, &Msg::Enough, &mut buf).await;
        }
    }
}

/// Where the sender may be, and what to call once it answered at one of
/// those addresses (or at one its punches came from), with that address.
pub struct Candidates<'a, F: FnOnce(SocketAddr)> {
    /// The sender's candidate addresses, the likeliest first.
    pub at: &'a [SocketAddr],
    /// Called once, when the sender is heard from.
    pub opened: F,
    /// Addresses learned while the session opens (a relay's), each tried
    /// first from then on.
    pub more: Option<&'a mut mpsc::Receiver<SocketAddr>>,
}

/// Fetches `region` of a download from the first of `from.at` that
/// answers: the outline first, checked against the file's hash, then the
/// region's bytes, each part checked as it completes. The session ends
/// when the region is verified up to its stop (which another owner may
/// lower meanwhile: see [`Region::stop_handle`]). Progress is the
/// region's bytes in, out of its length.
///
/// A part or an outline that does not match ends it with
/// [`TransferError::BadData`] (the owner is told with `Abort`); whatever
/// ends it, the parts verified stay verified and recorded.
pub async fn fetch_from(
    socket: &UdpSocket,
    from: Candidates<'_, impl FnOnce(SocketAddr)>,
    mut keys: SessionKeys,
    region: &mut Region,
    opts: &FetchOptions,
    mut progress: impl Progress,
) -> Result<TransferStats, TransferError> {
    let mut opened = Some(from.opened);
    let mut more = from.more;
    let download = region.download().clone();
    let span = Span {
        from: region.from(),
        to: region.to(),
        outline: download.outline_len(),
    };
    let mut net = BatchSocket::new(socket, RECEIVER_BUFFERS).map_err(io("preparing the socket"))?;
    let mut sbuf = Vec::with_capacity(256);
    let isn: u32 = rand::random();
    let mut stats = TransferStats {
        resumed_from: span.from,
        ..TransferStats::default()
    };
    let started = Instant::now();
    let at: Vec<SocketAddr> = from
        .at
        .iter()
        .map(|a| socket::for_socket(socket, *a))
        .collect();
    let mut session = RecvSession::with_candidates(&at, opts, isn, span, started);
    let mut foreign = Foreign::new();
    // The outline as it comes (at most `MAX_PARTS` entries), until it is
    // complete and checked.
    let mut outline = vec![0u8; span.outline as usize];
    let mut outline_checked = span.outline == 0;
    let mut saved = region.verified_to();
    // Datagrams came since the file was last brought up to date.
    let mut arrived = false;
    let result = 'session: loop {
        // The acknowledgement of what just arrived goes before the file's
        // slower work (hashing, recording), which would delay it.
        while let Some((to, mut msg)) = session.poll_msg(Instant::now()) {
            if let Msg::Arq(Frame::Ack(ack)) = &mut msg {
                ack.dropped = socket::receive_drops(socket);
            }
            let sent = send_msg(&net, &mut keys, to, &msg, &mut sbuf).await;
            // A candidate this host cannot send to (another family, no
            // route) is just not the path; only the sender's own address,
            // once known, must take what is sent.
            if session.peer().is_some() {
                sent?;
            }
        }
        if let Some(end) = session.poll_end() {
            break end;
        }
        while let Some(event) = session.poll_event() {
            match event {
                Event::Began { mss } => {
                    stats.mss = mss;
                    if mss > 16 << 10 {
                        net.set_buffers(RECEIVER_BUFFERS_LARGE);
                    }
                }
                Event::Started { peer, .. } => {
                    if let Some(opened) = opened.take() {
                        opened(peer);
                    }
                }
                Event::Resized { mss } => stats.mss = mss,
                Event::Moved { .. } => {}
            }
        }
        if arrived && session.began() {
            let stream = session.contiguous_bytes();
            if !outline_checked && stream >= span.from + span.outline {
                if let Err(e) = download.set_outline(&outline) {
                    break Err(e);
                }
                outline_checked = true;
            }
            let contiguous = match span.locate(stream) {
                Piece::File(at) if outline_checked => at,
                _ => span.from,
            };
            if let Err(e) = region.hash_up_to(contiguous) {
                break Err(e);
            }
            if region.verified_to() >= saved + SAVE_EVERY {
                download.save_progress()?;
                saved = region.verified_to();
            }
            let stop = region.stop();
            progress(contiguous.min(stop) - span.from, stop - span.from);
            if region.is_done() && stop < span.to {
                // Verified up to a cut: the rest is another owner's. (A
                // range done to its end closes as always, with the last
                // acknowledgements and the sender's `Done`.)
                session.enough();
                continue;
            }
        }
        arrived = tokio::select! {
            r = wait(&mut net, session.poll_timeout()) => r?,
            Some(addr) = later(&mut more) => {
                session.add_candidate(Instant::now(), socket::for_socket(socket, addr));
                continue;
            }
        };
        if !arrived {
            session.handle_timeout(Instant::now());
            continue;
        }
        for _ in 0..BATCH {
            let peer = session.peer();
            let budget = (&mut stats.forged, &mut foreign);
            let next = next_frame(&mut net, Some(&mut keys), peer, budget)?;
            let (from, msg) = match next {
                Next::Frame(from, msg) => (from, msg),
                Next::Dropped | Next::Hello(..) => continue,
                Next::Empty => break,
            };
            let Some(write) = session.handle(Instant::now(), from, msg) else {
                continue;
            };
            for (piece, bytes) in span.split(write.offset, write.bytes) {
                match piece {
                    _ if bytes.is_empty() => {}
                    Piece::Outline(at) => {
                        let at = at as usize;
                        if let Some(to) = outline.get_mut(at..at + bytes.len()) {
                            to.copy_from_slice(bytes);
                        }
                    }
                    Piece::File(at) => {
                        if let Err(e) = region.write_at(at, bytes) {
                            break 'session Err(e);
                        }
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        if let (TransferError::BadData(why), Some(peer)) = (&e, session.peer()) {
            // An owner whose copy changed on disk learns why it was left:
            // three times, as for `Enough`, since nothing answers it.
            let why = format!("the data did not match the file's hash: {why}");
            let abort = Msg::Arq(Frame::Abort(&why));
            for _ in 0..3 {
                let _ = send_msg(&net, &mut keys, peer, &abort, &mut sbuf).await;
            }
        } else if session.began() {
            // Keep what arrived for the next attempt.
            let stream = session.contiguous_bytes();
            if let (true, Piece::File(at)) = (outline_checked, span.locate(stream)) {
                let _ = region.hash_up_to(at);
            }
        }
        let _ = region.flush();
        let _ = download.save_progress();
        return Err(e);
    }
    region.flush()?;
    stats.packets = session.packets();
    stats.bytes = region.verified_to() - span.from;
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// The next address of `more`; pending forever without one, or once its
/// sender is gone.
async fn later(more: &mut Option<&mut mpsc::Receiver<SocketAddr>>) -> Option<SocketAddr> {
    match more {
        Some(rx) => match rx.recv().await {
            Some(addr) => Some(addr),
            None => {
                *more = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}
