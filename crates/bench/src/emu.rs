//! A link emulator for benchmarks: two network namespaces joined by TUN
//! devices, with a user-space forwarder in this process applying, in each
//! direction, a one-way delay, random loss, a rate limit with a bounded
//! drop-tail queue, per-packet jitter after the bottleneck, which
//! reorders packets as Wi-Fi retries and multipath routing do, and a delay
//! that wanders without reordering, as a radio link's queue that other
//! traffic fills does. (This
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
    /// A further delay that wanders: every [`WANDER_EVERY`] a new one,
    /// uniform up to this, and no packet arrives before one sent ahead of
    /// it (the RTT moves, packets keep their order).
    pub wander: Duration,
}

/// How long a wandering delay (see [`LinkSpec::wander`]) holds.
pub const WANDER_EVERY: Duration = Duration::from_millis(20);

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
            wander: Duration::ZERO,
        }
    }

    /// This link with a delay wandering by up to `ms` milliseconds (see
    /// [`LinkSpec::wander`]).
    pub fn with_wander(self, ms: u64) -> Self {
        LinkSpec {
            wander: Duration::from_millis(ms),
            ..self
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
    /// A_0, B, then A_1... of a star.
    ns: Vec<String>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// For each link, A to B, then B to A.
    pub stats: Vec<[Arc<DirStats>; 2]>,
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
        // The wandering delay, until when it holds, and the latest
        // delivery time given (no packet is due before it on such a link).
        let (mut wander, mut wander_until, mut last_due) = (Duration::ZERO, busy_until, busy_until);
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
            if !spec.wander.is_zero() && now >= wander_until {
                wander = spec.wander.mul_f64(rng.gen::<f64>());
                wander_until = now + WANDER_EVERY;
            }
            number += 1;
            let (lock, cv) = &*q;
            if let Ok(mut g) = lock.lock() {
                let mut due = departs + spec.delay + jitter + wander;
                if !spec.wander.is_zero() {
                    due = due.max(last_due);
                    last_due = due;
                }
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
        Emulator::star(&[(ab, ba)], seed)
    }

    /// Like [`start`](Self::start), with several A sides, each on a link
    /// of its own to the one B side: `links[i]` is (A_i to B, B to A_i).
    /// A_i has 10.77.i.1 and reaches everything through its link; B has
    /// 10.77.i.2 on link i. (A_0 and B are [`ADDR_A`] and [`ADDR_B`].)
    /// Three homes, each behind its own uplink, and the one they send to.
    pub fn star(links: &[(LinkSpec, LinkSpec)], seed: u64) -> anyhow::Result<Emulator> {
        if links.is_empty() || links.len() > 200 {
            bail!("from 1 to 200 links");
        }
        let tag = std::process::id();
        // B first in the list of namespaces made, so that A_0 and B are
        // sides 0 and 1 as with one link.
        let mut ns = vec![format!("cdemu{tag}a"), format!("cdemu{tag}b")];
        ns.extend((1..links.len()).map(|i| format!("cdemu{tag}a{i}")));
        let mut emu = Emulator {
            ns: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            stats: Vec::new(),
            spec: links[0].0,
        };
        for name in &ns {
            sh(&["netns", "add", name])?;
            // Recorded at once: dropping `emu` on a later failure
            // deletes what was made.
            emu.ns.push(name.clone());
            sh(&["-n", name, "link", "set", "lo", "up"])?;
        }
        let b = ns[1].clone();
        for (i, (ab, ba)) in links.iter().enumerate() {
            let a_ns = if i == 0 {
                ns[0].clone()
            } else {
                ns[i + 1].clone()
            };
            let a_addr = Ipv4Addr::new(10, 77, i as u8, 1).to_string();
            let b_addr = Ipv4Addr::new(10, 77, i as u8, 2).to_string();
            let (a_dev, b_dev) = (format!("cdt{tag}a{i}"), format!("cdt{tag}b{i}"));
            let mut fds = Vec::new();
            for (name, dev, me, peer) in [
                (&a_ns, &a_dev, &a_addr, &b_addr),
                (&b, &b_dev, &b_addr, &a_addr),
            ] {
                let fd = tun(dev)?;
                sh(&["link", "set", dev, "netns", name])?;
                sh(&["-n", name, "addr", "add", me, "peer", peer, "dev", dev])?;
                sh(&["-n", name, "link", "set", dev, "up"])?;
                fds.push(fd);
            }
            // A_i reaches B's other addresses (where the server and the
            // asker are) through its own link.
            sh(&["-n", &a_ns, "route", "add", "default", "dev", &a_dev])?;
            let (a, b_fd) = (fds.remove(0), fds.remove(0));
            let stats = [Arc::new(DirStats::default()), Arc::new(DirStats::default())];
            let link_seed = seed ^ (i as u64).wrapping_mul(0x9e37_79b9);
            emu.threads.extend(forward(
                a.try_clone()?,
                b_fd.try_clone()?,
                *ab,
                link_seed,
                emu.stop.clone(),
                stats[0].clone(),
            ));
            emu.threads.extend(forward(
                b_fd,
                a,
                *ba,
                link_seed ^ 0x5eed,
                emu.stop.clone(),
                stats[1].clone(),
            ));
            emu.stats.push(stats);
        }
        Ok(emu)
    }

    /// The namespace of A side `i` of a [`star`](Self::star) (`i` = 0 is
    /// side A of one link).
    pub fn a_side(&self, i: usize) -> &str {
        if i == 0 {
            &self.ns[0]
        } else {
            &self.ns[i + 1]
        }
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
