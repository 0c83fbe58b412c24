//! What comes to the server's UDP port (the number of its TLS port):
//! observation requests (`observe.rs`) and the datagrams of relayed
//! transfers (`relay.rs`). Nothing else is answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::observe::{self, Observers};
use crate::relay::{Pass, Relays};

/// How often idle relays are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Reads the UDP port until shutdown.
pub(crate) async fn run(
    socket: Arc<UdpSocket>,
    observers: Arc<Observers>,
    relays: Arc<Relays>,
    shutdown: CancellationToken,
) {
    relays.set_socket(socket.clone());
    // The largest UDP datagram: a relayed transfer's may be that long.
    let mut buf = vec![0u8; 65_536];
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sweep.tick() => {
                relays.sweep(Instant::now());
                continue;
            }
            r = socket.recv_from(&mut buf) => r,
        };
        let (len, from) = match received {
            Ok(r) => r,
            Err(e) => {
                // An ICMP error from an earlier datagram passed on says
                // nothing of this one; anything else: wait a moment rather
                // than spin.
                debug!("UDP port: {e}");
                if !matches!(e.kind(), std::io::ErrorKind::ConnectionRefused) {
                    warn!("UDP port: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let datagram = &buf[..len];
        let now = Instant::now();
        if observe::is_request(datagram) {
            if !observers.answer(datagram, from, now) {
                debug!(%from, "observation request not answered");
            }
            continue;
        }
        match relays.on_udp(datagram, from, now) {
            Pass::SendTo(to) => {
                // Waits for room in the socket's buffer rather than drop:
                // the relay's own limits decide what is dropped.
                if let Err(e) = socket.send_to(datagram, to).await {
                    debug!(%to, "relaying a datagram: {e}");
                }
            }
            Pass::Flush(to, held) => {
                for datagram in held {
                    let _ = socket.send_to(&datagram, to).await;
                }
            }
            Pass::Done => {}
            Pass::NotMine => debug!(%from, len, "UDP datagram for nothing here"),
        }
    }
}
