//! The transfer benchmark suite: every protocol over every link of the
//! suite in one run (medians of `runs`), Go-Back-N beside its textbook
//! efficiency, receive-buffer drops, CPU per GB, fairness, and a plot of
//! throughput against loss. Needs root for the emulated links.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatdrop_arq::Scheme;
use rand::RngCore;

use crate::emu::{Emulator, LinkSpec};
use crate::flows::{self, Flow, Path, QuicCc};

/// A protocol of the suite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Proto {
    /// chatdrop's transfer with an ARQ scheme.
    Chatdrop(Scheme),
    /// Kernel TCP with a congestion control.
    Tcp(&'static str),
    /// quinn with a congestion controller.
    Quic(QuicCc),
}

impl Proto {
    /// Its short name, for `--protocols`.
    pub fn key(self) -> &'static str {
        match self {
            Proto::Chatdrop(Scheme::SelectiveRepeat) => "sr",
            Proto::Chatdrop(Scheme::GoBackN) => "gbn",
            Proto::Tcp(cc) => cc,
            Proto::Quic(QuicCc::Cubic) => "quinn-cubic",
            Proto::Quic(QuicCc::Bbr) => "quinn-bbr",
        }
    }

    /// Its name in tables and the plot.
    pub fn label(self) -> String {
        match self {
            Proto::Chatdrop(s) => format!("chatdrop {}", s.as_str()),
            Proto::Tcp(cc) => format!("TCP {cc}"),
            Proto::Quic(QuicCc::Cubic) => "quinn (CUBIC)".into(),
            Proto::Quic(QuicCc::Bbr) => "quinn (BBR)".into(),
        }
    }
}

/// Every protocol, in table order.
pub const PROTOS: [Proto; 6] = [
    Proto::Chatdrop(Scheme::SelectiveRepeat),
    Proto::Chatdrop(Scheme::GoBackN),
    Proto::Tcp("cubic"),
    Proto::Tcp("bbr"),
    Proto::Quic(QuicCc::Cubic),
    Proto::Quic(QuicCc::Bbr),
];

/// A link of the suite (`mbit` 0: loopback, no emulator).
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Rate, Mbit/s.
    pub mbit: u64,
    /// Round trip, ms.
    pub rtt_ms: u64,
    /// Random loss each way.
    pub loss: f64,
    /// Per-packet jitter each way, ms (packets overtake each other).
    pub jitter_ms: u64,
    /// A delay wandering by up to this each way, ms, packets in order
    /// (see [`crate::emu::LinkSpec::wander`]).
    pub wander_ms: u64,
}

impl Link {
    fn name(&self) -> String {
        if self.mbit == 0 {
            return "loopback".into();
        }
        let mut name = format!(
            "{} Mbit/s, {} ms, {}% loss",
            self.mbit,
            self.rtt_ms,
            self.loss * 100.0
        );
        if self.jitter_ms > 0 {
            name += &format!(", {} ms jitter", self.jitter_ms);
        }
        if self.wander_ms > 0 {
            name += &format!(", delay wandering by {} ms", self.wander_ms);
        }
        name
    }
}

/// The links.
pub const LINKS: [Link; 9] = [
    Link {
        mbit: 0,
        rtt_ms: 0,
        loss: 0.0,
        jitter_ms: 0,
        wander_ms: 0,
    },
    Link {
        mbit: 200,
        rtt_ms: 20,
        loss: 0.0,
        jitter_ms: 0,
        wander_ms: 0,
    },
    Link {
        mbit: 200,
        rtt_ms: 20,
        loss: 0.01,
        jitter_ms: 0,
        wander_ms: 0,
    },
    Link {
        mbit: 200,
        rtt_ms: 20,
        loss: 0.05,
        jitter_ms: 0,
        wander_ms: 0,
    },
    Link {
        mbit: 100,
        rtt_ms: 100,
        loss: 0.01,
        jitter_ms: 0,
        wander_ms: 0,
    },
    Link {
        mbit: 1000,
        rtt_ms: 2,
        loss: 0.0,
        jitter_ms: 0,
        wander_ms: 0,
    },
    // Packets that overtake each other (Wi-Fi retries, multipath), with
    // random loss and without.
    Link {
        mbit: 100,
        rtt_ms: 20,
        loss: 0.02,
        jitter_ms: 8,
        wander_ms: 0,
    },
    Link {
        mbit: 50,
        rtt_ms: 40,
        loss: 0.0,
        jitter_ms: 4,
        wander_ms: 0,
    },
    // A delay that moves by half the RTT and back, packets in order (a
    // radio link's queue that other traffic fills), with random loss: the
    // RTT rises and falls without this flow's queue.
    Link {
        mbit: 50,
        rtt_ms: 20,
        loss: 0.01,
        jitter_ms: 0,
        wander_ms: 10,
    },
];

/// How long a TCP or QUIC flow may run (those that collapse under loss
/// are measured on what they move in this time).
const LIMIT: Duration = Duration::from_secs(20);

/// Median of a non-empty list.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median of counts, if there are any.
fn median_u64(v: impl Iterator<Item = u64>) -> Option<u64> {
    let mut v: Vec<u64> = v.collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// The UDP receive-buffer drops counted in the namespace of `path`'s side 0.
fn rcvbuf_errors(path: Path) -> u64 {
    let read = || -> u64 {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return 0;
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "RcvbufErrors")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    match path.emu {
        Some(emu) => emu.in_ns(0, read).unwrap_or(0),
        None => read(),
    }
}

/// Go-Back-N's textbook efficiency: `p / (p + m (1 - p))`, with `p` the
/// chance a packet arrives and `m` the round trip in packets.
pub fn gbn_textbook(link: &Link, packet_bytes: f64) -> f64 {
    let p = 1.0 - link.loss;
    let m = link.mbit as f64 * 1e6 * link.rtt_ms as f64 / 1000.0 / (packet_bytes * 8.0);
    p / (p + m * (1.0 - p))
}

/// One row of results.
#[derive(Debug, Clone)]
struct Row {
    proto: Proto,
    mbit: f64,
    send_cpu_gb: f64,
    recv_cpu_gb: f64,
    retransmissions: Option<u64>,
    spurious: Option<u64>,
    peak_mb: Option<f64>,
}

fn write_file(path: &std::path::Path, size: u64) -> anyhow::Result<()> {
    let mut data = vec![0u8; size as usize];
    rand::thread_rng().fill_bytes(&mut data);
    std::fs::write(path, &data)?;
    Ok(())
}

/// Runs one protocol once over `path`; TCP's and QUIC's receivers write
/// into `sink` if given.
fn once(
    path: Path,
    proto: Proto,
    file: &std::path::Path,
    out: &std::path::Path,
    size: u64,
    sink: Option<std::path::PathBuf>,
) -> anyhow::Result<(Flow, Option<f64>)> {
    let got = Arc::new(AtomicU64::new(0));
    let memory = flows::PeakMemory::start();
    let flow = match proto {
        Proto::Chatdrop(scheme) => {
            flows::chatdrop(path, file, out, scheme, chatdrop_arq::DEFAULT_WINDOW, got)
        }
        Proto::Tcp(cc) => flows::tcp(path, cc, size, LIMIT, got, sink),
        Proto::Quic(cc) => flows::quic(path, cc, size, LIMIT, got, sink),
    }?;
    Ok((flow, memory.and_then(|m| m.mb())))
}

/// Options of a suite run (also its command line).
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Bytes moved by each flow (Go-Back-N on lossy links moves a
    /// twentieth); by default ten seconds of the link's rate (iperf3's
    /// default duration, so startup weighs as it does there), 1 GB on
    /// loopback.
    #[arg(long)]
    pub size: Option<u64>,
    /// Runs per protocol and link (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Where to write the throughput-against-loss plot (SVG).
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// Only the links whose name contains this (e.g. `loopback`).
    #[arg(long)]
    pub only: Option<String>,
    /// Skip the fairness runs.
    #[arg(long)]
    pub no_fairness: bool,
    /// Only these protocols: sr, gbn, cubic, bbr, quinn-cubic, quinn-bbr
    /// (all when not given).
    #[arg(long, value_delimiter = ',')]
    pub protocols: Vec<String>,
    /// The folder the suite's files are written in (a temporary folder
    /// inside it); by default `/dev/shm` where there is one.
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// TCP's and QUIC's receivers write what they get into a file in the
    /// same folder, as chatdrop's receiver writes the file it receives.
    /// By default they discard it, and where CPU is the limit (loopback,
    /// 1 Gbit/s) they are measured doing less than a file transfer does.
    #[arg(long)]
    pub baselines_write: bool,
}

/// Runs the suite over `links` and prints Markdown tables.
pub fn run(links: &[Link], opts: &Options) -> anyhow::Result<()> {
    // Files live in memory (tmpfs) where there is one: on the machine of
    // docs/BENCHMARKS.md, writing to the disk's page cache runs at about
    // 290 MB/s (dd), which would cap every receiver that writes a file at
    // 2.3 Gbit/s and measure the disk, not the transport.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if let Some(dir) = &opts.dir {
        tempfile::tempdir_in(dir)?
    } else if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    };
    let file = dir.path().join("file.bin");
    let small = dir.path().join("small.bin");
    let mut written = 0;
    let out = dir.path().join("out");
    let mut lossy: Vec<(f64, Vec<(Proto, f64)>)> = Vec::new();
    println!(
        "TCP and QUIC flows stop after {} s; medians of {} runs.\n",
        LIMIT.as_secs(),
        opts.runs
    );
    for &link in links {
        if opts
            .only
            .as_ref()
            .is_some_and(|o| !link.name().contains(o.as_str()))
        {
            continue;
        }
        let emu = if link.mbit == 0 {
            None
        } else {
            let spec = LinkSpec::new(link.mbit, link.rtt_ms, link.loss)
                .with_jitter(link.jitter_ms)
                .with_wander(link.wander_ms);
            Some(Emulator::start(spec, spec, 1)?)
        };
        let path = Path { emu: emu.as_ref() };
        let size = opts.size.unwrap_or(if link.mbit == 0 {
            1_000_000_000
        } else {
            link.mbit * 1_000_000 / 8 * 10
        });
        let small_size = (size / 20).max(2_000_000);
        if written != size {
            write_file(&file, size)?;
            write_file(&small, small_size)?;
            written = size;
        }
        println!("### {}\n", link.name());
        println!(
            "{} MB per flow ({} MB for Go-Back-N on lossy links).\n",
            size / 1_000_000,
            small_size / 1_000_000
        );
        if let Some(e) = &emu {
            println!(
                "Queue {} KB each way (one bandwidth-delay product, at least 64 KB).\n",
                e.spec.queue_bytes / 1000
            );
        }
        println!("| protocol | Mbit/s | % of link | sender CPU s/GB | receiver CPU s/GB | retransmitted packets | peak memory MB (both ends) | receive-buffer drops (all runs) |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        let drops_before = rcvbuf_errors(path);
        let mut rows = Vec::new();
        for proto in PROTOS {
            if !opts.protocols.is_empty() && !opts.protocols.iter().any(|p| p == proto.key()) {
                continue;
            }
            let gbn_lossy = proto == Proto::Chatdrop(Scheme::GoBackN) && link.loss > 0.0;
            let (f, size) = if gbn_lossy {
                (&small, small_size)
            } else {
                (&file, size)
            };
            let mut flows = Vec::new();
            let mut peaks = Vec::new();
            let proto_drops_before = rcvbuf_errors(path);
            for _ in 0..opts.runs {
                let sink = opts
                    .baselines_write
                    .then(|| dir.path().join("baseline.bin"));
                match once(path, proto, f, &out, size, sink) {
                    Ok((flow, peak)) => {
                        flows.push(flow);
                        peaks.extend(peak);
                    }
                    Err(e) => eprintln!("{} over {}: {e:#}", proto.label(), link.name()),
                }
            }
            let proto_drops = rcvbuf_errors(path).saturating_sub(proto_drops_before);
            if flows.is_empty() {
                println!("| {} | failed | | | | | | |", proto.label());
                continue;
            }
            let gb = |f: &Flow| f.bytes as f64 / 1e9;
            let row = Row {
                proto,
                mbit: median(flows.iter().map(Flow::mbit).collect()),
                send_cpu_gb: median(flows.iter().map(|f| f.send_cpu / gb(f)).collect()),
                recv_cpu_gb: median(flows.iter().map(|f| f.recv_cpu / gb(f)).collect()),
                retransmissions: median_u64(flows.iter().filter_map(|f| f.retransmissions)),
                spurious: median_u64(flows.iter().filter_map(|f| f.spurious)),
                peak_mb: (!peaks.is_empty()).then(|| median(peaks)),
            };
            let share = if link.mbit > 0 {
                format!("{:.1}%", 100.0 * row.mbit / link.mbit as f64)
            } else {
                String::new()
            };
            println!(
                "| {} | {:.1} | {share} | {:.2} | {:.2} | {} | {} | {proto_drops} |",
                proto.label(),
                row.mbit,
                row.send_cpu_gb,
                row.recv_cpu_gb,
                match (row.retransmissions, row.spurious) {
                    (Some(r), Some(s)) => format!("{r} ({s} spurious)"),
                    (Some(r), None) => r.to_string(),
                    _ => String::new(),
                },
                row.peak_mb.map_or(String::new(), |m| format!("{m:.0}"))
            );
            rows.push(row);
        }
        let drops = rcvbuf_errors(path).saturating_sub(drops_before);
        println!("\nUDP receive-buffer drops on the receiving side during these runs (RcvbufErrors): {drops}.");
        if link.mbit == 0 {
            // Writing a file costs what the machine and its file system
            // make it cost (tmpfs allocates a 4 KiB page at a time); TCP's
            // and QUIC's receivers here discard what they get, chatdrop's
            // writes it.
            let cpu: Vec<f64> = (0..opts.runs.max(1))
                .map(|_| flows::write_alone(path, dir.path(), size))
                .collect::<anyhow::Result<_>>()?;
            let gb = size as f64 / 1e9;
            println!(
                "Writing the file alone on the receiving core (1 MiB writes and a sync into the same folder, no network, no hashing): {:.2} CPU s/GB (runs: {}).",
                median(cpu.iter().map(|c| c / gb).collect()),
                cpu.iter()
                    .map(|c| format!("{:.2}", c / gb))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if link.mbit > 0 {
            if let Some(g) = rows
                .iter()
                .find(|r| r.proto == Proto::Chatdrop(Scheme::GoBackN))
            {
                println!(
                    "Go-Back-N: {:.1}% of the link; textbook p/(p+m(1-p)) with 1500-byte packets: {:.1}%.",
                    100.0 * g.mbit / link.mbit as f64,
                    100.0 * gbn_textbook(&link, 1500.0)
                );
            }
            let e = emu.as_ref().map(|e| &e.stats[0][1]);
            if let Some(s) = e {
                println!(
                    "Emulator, sending direction: forwarded {}, lost at random {}, queue drops {}.",
                    s.forwarded.load(Ordering::Relaxed),
                    s.lost.load(Ordering::Relaxed),
                    s.overflowed.load(Ordering::Relaxed)
                );
            }
        }
        println!();
        if link.mbit == 200 && link.rtt_ms == 20 {
            lossy.push((link.loss, rows.iter().map(|r| (r.proto, r.mbit)).collect()));
        }
        if link.mbit == 200 && link.loss == 0.0 && !opts.no_fairness {
            fairness(path, dir.path(), size, opts.runs)?;
        }
    }
    if let Some(p) = &opts.plot {
        if !lossy.is_empty() {
            crate::plot::throughput_vs_loss(p, 200.0, &lossy)?;
            println!("Plot written to {}.", p.display());
        }
    }
    Ok(())
}

/// Two flows at once over `path`, the second already running when the
/// first (chatdrop) joins, sampled between 3 s and 13 s after it joins:
/// two chatdrop flows, then chatdrop beside TCP CUBIC; `runs` times each,
/// with a row per run and the median of the first flow's share.
fn fairness(path: Path, dir: &std::path::Path, size: u64, runs: usize) -> anyhow::Result<()> {
    let big = dir.join("fair.bin");
    let fair_size = size.max(200_000_000);
    write_file(&big, fair_size)?;
    println!(
        "Fairness: the second flow runs alone for {} s, then chatdrop joins; shares of what both moved between 3 s and 13 s after it joined.\n",
        JOIN_AFTER.as_secs()
    );
    println!("| flows | run | first | second | first's share | second's share |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, second_tcp) in [
        ("chatdrop + chatdrop", false),
        ("chatdrop + TCP CUBIC", true),
    ] {
        let second = if second_tcp { "TCP CUBIC" } else { "chatdrop" };
        let mut shares = Vec::new();
        for run in 1..=runs.max(1) {
            let (ra, rb) = fair_pair(path, &big, dir, fair_size, second_tcp)?;
            let share = ra / (ra + rb).max(1e-9);
            shares.push(share);
            println!(
                "| {name} | {run} | chatdrop {ra:.1} Mbit/s | {second} {rb:.1} Mbit/s | {:.0}% | {:.0}% |",
                100.0 * share,
                100.0 * (1.0 - share)
            );
        }
        let m = median(shares);
        println!(
            "| {name} | median | | | {:.0}% | {:.0}% |",
            100.0 * m,
            100.0 * (1.0 - m)
        );
    }
    println!();
    Ok(())
}

/// How long the second flow of a fairness run has the link to itself: long
/// enough to fill it (and its queue) before chatdrop joins. Started
/// together, which flow filled the queue first was chance, and so was the
/// outcome: a flow whose smallest RTT was measured over the other's queue
/// overstates the path (see the controller's `overflowing`).
const JOIN_AFTER: Duration = Duration::from_secs(1);

/// One fairness run: a second flow (chatdrop, or TCP CUBIC) alone for
/// [`JOIN_AFTER`], then a chatdrop flow beside it; their rates between 3 s
/// and 13 s after chatdrop joined, Mbit/s.
fn fair_pair(
    path: Path,
    big: &std::path::Path,
    dir: &std::path::Path,
    fair_size: u64,
    second_tcp: bool,
) -> anyhow::Result<(f64, f64)> {
    let a = Arc::new(AtomicU64::new(0));
    let b = Arc::new(AtomicU64::new(0));
    let (rates, result_a, result_b) = std::thread::scope(|s| {
        let (ga, gb) = (a.clone(), b.clone());
        let (out_a, out_b) = (dir.join("fa"), dir.join("fb"));
        let ha = s.spawn(move || {
            std::thread::sleep(JOIN_AFTER);
            flows::chatdrop(
                path,
                big,
                &out_a,
                Scheme::SelectiveRepeat,
                chatdrop_arq::DEFAULT_WINDOW,
                ga,
            )
        });
        let hb = s.spawn(move || {
            if second_tcp {
                flows::tcp(
                    path,
                    "cubic",
                    2 * fair_size,
                    Duration::from_secs(17),
                    gb,
                    None,
                )
            } else {
                flows::chatdrop(
                    path,
                    big,
                    &out_b,
                    Scheme::SelectiveRepeat,
                    chatdrop_arq::DEFAULT_WINDOW,
                    gb,
                )
            }
        });
        let start = Instant::now() + JOIN_AFTER;
        std::thread::sleep(
            (start + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
        );
        let (a0, b0) = (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
        std::thread::sleep(
            (start + Duration::from_secs(13)).saturating_duration_since(Instant::now()),
        );
        let (a1, b1) = (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
        let ra = (a1 - a0) as f64 * 8.0 / 10.0 / 1e6;
        let rb = (b1 - b0) as f64 * 8.0 / 10.0 / 1e6;
        ((ra, rb), ha.join(), hb.join())
    });
    for r in [result_a, result_b] {
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("a fairness flow failed: {e:#}"),
            Err(_) => eprintln!("a fairness flow panicked"),
        }
    }
    Ok(rates)
}
