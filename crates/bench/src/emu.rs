//! A link emulator for benchmarks: two network namespaces joined by TUN
//! devices, with a user-space forwarder in this process applying, in each
//! direction, a one-way delay, random loss, a rate limit with a bounded
//! drop-tail queue, and per-packet jitter after the bottleneck, which
//! reorders packets as Wi-Fi retries and multipath routing do. (This
//! machine's kernel has no netem.) Linux only, needs root.
//!
//! Side A has 10.77.0.1, side B 10.77.0.2; both addresses exist only inside
//! the namespaces made here, which are deleted on drop. Sockets are opened
//! in a namespace by a thread that joins it ([`Emulator::in_ns`]).
//!
//! Ceiling: every packet crosses user space twice (a read and a write on a
//! TUN device) on the same two cores as the endpoints; see
//! docs/BENCHMARKS.md for what it carries.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};

/// Address of side A.
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Address of side B.
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

/// One direction's impairment.
#[derive(Debug, Clone, Copy)]
pub struct LinkSpec {
    /// Bits a second; 0 for no limit.
    pub rate_bps: u64,
    /// One-way delay.
    pub delay: Duration,
    /// Chance each packet is dropped.
    pub loss: f64,
    /// Bytes the queue before the rate limit holds; more are dropped.
    pub queue_bytes: u64,
    /// Each packet is delayed by a random further share of this after the
    /// bottleneck (uniform, packet by packet): packets closer together
    /// than it may overtake each other.
    pub jitter: Duration,
}

impl LinkSpec {
    /// A link of `mbit` Mbit/s, `rtt_ms` round trip (half each way), `loss`
    /// each way, and a queue of one bandwidth-delay product.
    pub fn new(mbit: u64, rtt_ms: u64, loss: f64) -> Self {
        let rate_bps = mbit * 1_000_000;
        let bdp = rate_bps / 8 * rtt_ms.max(1) / 1000;
        LinkSpec {
            rate_bps,
            delay: Duration::from_micros(rtt_ms * 500),
            loss,
            queue_bytes: bdp.max(64 * 1024),
            jitter: Duration::ZERO,
        }
    }

    /// This link with per-packet jitter of up to `ms` milliseconds.
    pub fn with_jitter(self, ms: u64) -> Self {
        LinkSpec {
            jitter: Duration::from_millis(ms),
            ..self
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Default)]
pub struct DirStats {
    /// Packets forwarded.
    pub forwarded: AtomicU64,
    /// Packets dropped at random.
    pub lost: AtomicU64,
    /// Packets dropped because the queue was full.
    pub overflowed: AtomicU64,
}

/// A running emulated link. See the module docs.
pub struct Emulator {
    ns: [String; 2],
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// A to B, then B to A.
    pub stats: [Arc<DirStats>; 2],
    /// The link from A to B.
    pub spec: LinkSpec,
}

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Opens a TUN device named `name` (no packet information header).
fn tun(name: &str) -> anyhow::Result<File> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        pad: [u8; 22],
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun (root needed)")?;
    let mut req = IfReq {
        name: [0; 16],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which IfReq
    // lays out (16-byte name, flags, padding to 40 bytes).
    let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
    if r < 0 {
        bail!("TUNSETIFF {name}: {}", std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Waits until `fd` is readable or `ms` pass.
fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Packets with the time each is due, and a signal for new ones.
/// Packets waiting for their delivery time, the earliest first (with a
/// number that keeps packets due at once in their order).
type DelayLine = (Mutex<BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>>, Condvar);

/// Moves packets from `from` to `to` with the impairment of `spec`.
fn forward(
    mut from: File,
    to: File,
    spec: LinkSpec,
    seed: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<DirStats>,
) -> [std::thread::JoinHandle<()>; 2] {
    let queue: Arc<DelayLine> = Arc::default();
    let (q, st) = (queue.clone(), stop.clone());
    let reader = std::thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut buf = vec![0u8; 65_536];
        // When the link finishes sending what is queued.
        let mut busy_until = Instant::now();
        let mut number = 0u64;
        while !st.load(Ordering::Relaxed) {
            if !readable(from.as_raw_fd(), 100) {
                continue;
            }
            let Ok(n) = from.read(&mut buf) else { break };
            if spec.loss > 0.0 && rng.gen_bool(spec.loss) {
                stats.lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let now = Instant::now();
            let departs = if spec.rate_bps == 0 {
                now
            } else {
                let start = busy_until.max(now);
                let backlog = (start - now).as_secs_f64() * spec.rate_bps as f64 / 8.0;
                if backlog > spec.queue_bytes as f64 {
                    stats.overflowed.fetch_add(1, Ordering::Relaxed);
                    continue; // drop-tail
                }
                busy_until = start + Duration::from_secs_f64(n as f64 * 8.0 / spec.rate_bps as f64);
                busy_until
            };
            stats.forwarded.fetch_add(1, Ordering::Relaxed);
            let jitter = if spec.jitter.is_zero() {
                Duration::ZERO
            } else {
                spec.jitter.mul_f64(rng.gen::<f64>())
            };
            number += 1;
            let (lock, cv) = &*q;
            if let Ok(mut g) = lock.lock() {
                let due = departs + spec.delay + jitter;
                g.push(Reverse((due, number, buf[..n].to_vec())));
            }
            cv.notify_one();
        }
    });
    let writer = std::thread::spawn(move || {
        let mut to = to;
        let (lock, cv) = &*queue;
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut g) = lock.lock() else { break };
            let due = match g.peek() {
                None => {
                    let _ = cv.wait_timeout(g, Duration::from_millis(100));
                    continue;
                }
                Some(Reverse((at, ..))) => *at,
            };
            let now = Instant::now();
            if due > now {
                // Short waits spin on the condvar timeout; it is precise
                // enough (tens of microseconds) for millisecond delays.
                let _ = cv.wait_timeout(g, due - now);
                continue;
            }
            let mut ready = Vec::new();
            while g.peek().is_some_and(|Reverse((at, ..))| *at <= now) {
                if let Some(Reverse((_, _, p))) = g.pop() {
                    ready.push(p);
                }
            }
            drop(g);
            for p in ready {
                let _ = to.write(&p);
            }
        }
    });
    [reader, writer]
}

impl Emulator {
    /// Makes the namespaces and devices and starts forwarding: `ab` applies
    /// from A to B, `ba` from B to A.
    pub fn start(ab: LinkSpec, ba: LinkSpec, seed: u64) -> anyhow::Result<Emulator> {
        let tag = std::process::id();
        let ns = [format!("cdemu{tag}a"), format!("cdemu{tag}b")];
        let devs = [format!("cdt{tag}a"), format!("cdt{tag}b")];
        let addrs = [ADDR_A, ADDR_B];
        let mut fds = Vec::new();
        for i in 0..2 {
            sh(&["netns", "add", &ns[i]])?;
            let fd = tun(&devs[i])?;
            sh(&["link", "set", &devs[i], "netns", &ns[i]])?;
            let (me, peer) = (addrs[i].to_string(), addrs[1 - i].to_string());
            sh(&["-n", &ns[i], "link", "set", "lo", "up"])?;
            sh(&[
                "-n", &ns[i], "addr", "add", &me, "peer", &peer, "dev", &devs[i],
            ])?;
            sh(&["-n", &ns[i], "link", "set", &devs[i], "up"])?;
            fds.push(fd);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = [Arc::new(DirStats::default()), Arc::new(DirStats::default())];
        let (a, b) = (fds.remove(0), fds.remove(0));
        let mut threads = Vec::new();
        threads.extend(forward(
            a.try_clone()?,
            b.try_clone()?,
            ab,
            seed,
            stop.clone(),
            stats[0].clone(),
        ));
        threads.extend(forward(
            b,
            a,
            ba,
            seed ^ 0x5eed,
            stop.clone(),
            stats[1].clone(),
        ));
        Ok(Emulator {
            ns,
            stop,
            threads,
            stats,
            spec: ab,
        })
    }

    /// The name of side `side`'s namespace (0: A, 1: B), for processes
    /// started in it (`ip netns exec`).
    pub fn ns_name(&self, side: usize) -> &str {
        &self.ns[side]
    }

    /// Runs `f` on a thread that has joined side `side`'s namespace (0: A,
    /// 1: B): sockets it opens live there.
    pub fn in_ns<T: Send + 'static>(
        &self,
        side: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let path = format!("/var/run/netns/{}", self.ns[side]);
        std::thread::spawn(move || -> anyhow::Result<T> {
            let ns = File::open(&path).with_context(|| format!("opening {path}"))?;
            // SAFETY: setns on this thread only, with a valid namespace fd.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns: {}", std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("a namespace thread panicked"))?
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for ns in &self.ns {
            let _ = sh(&["netns", "del", ns]);
        }
    }
}
