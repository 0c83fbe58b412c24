//! The receiving end's driver: it gives a [`RecvSession`] a socket, the
//! session keys and the download. It owns what the machine leaves out on
//! purpose: opening and sealing, the receive buffers, writing the file,
//! hashing it as it fills, recording progress for a resume, the drop count
//! in each acknowledgement, and the progress.

use std::net::SocketAddr;
use std::time::Instant;

use chatdrop_arq::Frame;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::net::{io, next_frame, send_msg, wait, Foreign, Next, BATCH};
use super::{Event, FetchOptions, Progress, RecvSession, TransferStats};
use crate::batch::BatchSocket;
use crate::crypto::SessionKeys;
use crate::files::Download;
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

/// Fetches a file from `peer` into `download` with `keys`.
pub async fn fetch(
    socket: &UdpSocket,
    peer: SocketAddr,
    keys: SessionKeys,
    download: &mut Download,
    size: u64,
    opts: &FetchOptions,
    progress: impl Progress,
) -> Result<TransferStats, TransferError> {
    let at = [peer];
    let from = Candidates {
        at: &at,
        opened: |_| {},
        more: None,
    };
    fetch_from(socket, from, keys, download, size, opts, progress).await
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

/// Like [`fetch`], from the first of `from.at` that answers.
pub async fn fetch_from(
    socket: &UdpSocket,
    from: Candidates<'_, impl FnOnce(SocketAddr)>,
    mut keys: SessionKeys,
    download: &mut Download,
    size: u64,
    opts: &FetchOptions,
    mut progress: impl Progress,
) -> Result<TransferStats, TransferError> {
    let mut opened = Some(from.opened);
    let mut more = from.more;
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
    let at: Vec<SocketAddr> = from
        .at
        .iter()
        .map(|a| socket::for_socket(socket, *a))
        .collect();
    let mut session = RecvSession::with_candidates(&at, opts, isn, resume_from, size, started);
    let mut foreign = Foreign::new();
    let mut saved = resume_from;
    // Datagrams came since the file was last brought up to date.
    let mut arrived = false;
    let result = loop {
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
                Event::Moved { .. } => {}
            }
        }
        if arrived && session.began() {
            let contiguous = session.contiguous_bytes();
            download.hash_up_to(contiguous)?;
            if contiguous >= saved + SAVE_EVERY {
                download.save_progress(contiguous)?;
                saved = contiguous;
            }
            progress(contiguous, size);
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
            if let Some(write) = session.handle(Instant::now(), from, msg) {
                download.write_at(write.offset, write.bytes)?;
            }
        }
    };
    if let Err(e) = result {
        if session.began() {
            // Keep what arrived for the next attempt.
            let contiguous = session.contiguous_bytes();
            let _ = download.hash_up_to(contiguous);
            let _ = download.save_progress(contiguous);
        }
        download.give_back_room();
        return Err(e);
    }
    stats.packets = session.packets();
    stats.bytes = size - resume_from;
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
