//! What comes to the server's UDP port (the number of its TLS port):
//! observation requests (`observe.rs`) and the datagrams of relayed
//! transfers (`relay.rs`). Nothing else is answered.
//!
//! The port is read and written in batches ([`BatchSocket`]): the kernel
//! coalesces a relayed transfer's datagrams from one sender (GRO), and
//! they are passed on whole, as one segmented send (GSO). One system call
//! each way then carries dozens of datagrams, where one datagram each was
//! the relay's main cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatdrop_transfer::batch::BatchSocket;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::observe::{self, Observers};
use crate::relay::{Pass, Relays};

/// How often idle relays are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Receive buffers per system call (each holds up to 64 KiB).
const BUFFERS: usize = 16;

/// A run of datagrams of `stride` bytes, and apart from it a last datagram
/// as long as a bind or an observation request, which the kernel may glue
/// to the end of a run of data from the same socket (a bind sent while the
/// transfer flows): it is looked at on its own.
fn split_request(run: &[u8], stride: usize) -> (&[u8], &[u8]) {
    let tail = run.len() % stride.max(1);
    if run.len() > stride && tail == observe::REQUEST_LEN {
        run.split_at(run.len() - tail)
    } else {
        (run, &[])
    }
}

/// Reads the UDP port until shutdown.
pub(crate) async fn run(
    socket: Arc<UdpSocket>,
    observers: Arc<Observers>,
    relays: Arc<Relays>,
    shutdown: CancellationToken,
) {
    relays.set_socket(socket.clone());
    let mut net = match BatchSocket::new(&socket, BUFFERS) {
        Ok(net) => net,
        Err(e) => {
            warn!("the UDP port cannot be read: {e}");
            return;
        }
    };
    // A run is copied out before it is sent on: the socket's buffers are
    // borrowed while it is read.
    let mut out = Vec::with_capacity(1 << 16);
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sweep.tick() => {
                relays.sweep(Instant::now());
                continue;
            }
            r = net.ready() => if let Err(e) = r {
                // An ICMP error from an earlier datagram passed on says
                // nothing of the next; anything else: wait a moment
                // rather than spin.
                if e.kind() != std::io::ErrorKind::ConnectionRefused {
                    warn!("UDP port: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            },
        }
        let now = Instant::now();
        while let Some((from, run, stride)) = net.next_run() {
            // A run of small datagrams may be requests; one datagram may
            // be anything: those are looked at one by one.
            let (run, last) = split_request(run, stride);
            let mut sends = if run.len() <= stride || stride <= observe::REQUEST_LEN {
                let mut sends = Vec::new();
                for datagram in run.chunks(stride) {
                    if observe::is_request(datagram) {
                        if !observers.answer(datagram, from, now) {
                            debug!(%from, "observation request not answered");
                        }
                        continue;
                    }
                    let pass = relays.on_udp(datagram, datagram.len(), from, now);
                    sends.push((pass, datagram.to_vec(), datagram.len()));
                }
                sends
            } else {
                let pass = relays.on_udp(run, stride, from, now);
                out.clear();
                out.extend_from_slice(run);
                vec![(pass, std::mem::take(&mut out), stride)]
            };
            if !last.is_empty() {
                if observe::is_request(last) {
                    observers.answer(last, from, now);
                } else {
                    let pass = relays.on_udp(last, last.len(), from, now);
                    sends.push((pass, last.to_vec(), last.len()));
                }
            }
            for (pass, data, stride) in sends {
                match pass {
                    // Waits for room in the socket's buffer rather than
                    // drop: the relay's own limits decide what is dropped.
                    Pass::SendTo(to) => {
                        if let Err(e) = net.send(to, &data, stride).await {
                            debug!(%to, "relaying: {e}");
                        }
                        if data.capacity() >= 1 << 16 {
                            out = data;
                        }
                    }
                    Pass::Flush(to, held) => {
                        for datagram in held {
                            let _ = net.send(to, &datagram, datagram.len()).await;
                        }
                    }
                    Pass::Done => {}
                    Pass::NotMine => {
                        debug!(%from, len = data.len(), "UDP datagram for nothing here")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_glued_to_a_run_of_data_is_taken_apart() {
        let data = vec![7u8; 3 * 1000];
        let mut glued = data.clone();
        glued.extend_from_slice(&[1u8; observe::REQUEST_LEN]);
        let (run, last) = split_request(&glued, 1000);
        assert_eq!((run, last.len()), (&data[..], observe::REQUEST_LEN));
        // A run alone, a single datagram, a shorter last one of another
        // length: nothing taken apart.
        assert_eq!(split_request(&data, 1000), (&data[..], &[][..]));
        assert_eq!(split_request(&data[..24], 1000), (&data[..24], &[][..]));
        assert_eq!(split_request(&data[..2500], 1000), (&data[..2500], &[][..]));
    }
}
