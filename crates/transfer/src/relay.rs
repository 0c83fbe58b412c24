//! A lossy UDP relay, for tests and benchmarks: it forwards datagrams
//! between one client and a target, dropping and tampering with a seeded
//! share of them in each direction, so a transfer can be tried over a bad
//! path with real sockets. (The kernel here has no netem.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::UdpSocket;

/// How the relay misbehaves (the same in both directions).
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Share of datagrams dropped.
    pub loss: f64,
    /// Share of datagrams with one bit flipped.
    pub tamper: f64,
    /// Seed of the relay's randomness.
    pub seed: u64,
    /// Datagrams longer than this are dropped silently, as a hop with a
    /// small MTU and no error reports would (0: no limit).
    pub max_datagram: usize,
}

/// Counters of a running relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams forwarded unchanged.
    pub forwarded: AtomicU64,
    /// Datagrams dropped.
    pub dropped: AtomicU64,
    /// Datagrams forwarded with a flipped bit.
    pub tampered: AtomicU64,
}

/// A running relay; it stops when dropped.
#[derive(Debug)]
pub struct Relay {
    /// Where clients send to.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<RelayStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Starts a relay on a free loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr, imp: Impairment) -> std::io::Result<Relay> {
        let front = UdpSocket::bind("127.0.0.1:0").await?;
        let back = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = front.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let st = stats.clone();
        let task = tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(imp.seed);
            let mut client: Option<SocketAddr> = None;
            let mut a = vec![0u8; 65_536];
            let mut b = vec![0u8; 65_536];
            loop {
                let (buf, n, to_target) = tokio::select! {
                    r = front.recv_from(&mut a) => match r {
                        Ok((n, from)) => { client = Some(from); (&mut a, n, true) }
                        Err(_) => continue,
                    },
                    r = back.recv_from(&mut b) => match r {
                        Ok((n, from)) if from == target => (&mut b, n, false),
                        _ => continue,
                    },
                };
                let too_long = imp.max_datagram > 0 && n > imp.max_datagram;
                if too_long || rng.gen_bool(imp.loss.clamp(0.0, 1.0)) {
                    st.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if n > 0 && rng.gen_bool(imp.tamper.clamp(0.0, 1.0)) {
                    let i = rng.gen_range(0..n);
                    buf[i] ^= 1 << rng.gen_range(0..8);
                    st.tampered.fetch_add(1, Ordering::Relaxed);
                } else {
                    st.forwarded.fetch_add(1, Ordering::Relaxed);
                }
                let _ = if to_target {
                    back.send_to(&buf[..n], target).await
                } else if let Some(c) = client {
                    front.send_to(&buf[..n], c).await
                } else {
                    continue;
                };
            }
        });
        Ok(Relay { addr, stats, task })
    }
}
