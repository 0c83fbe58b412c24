//! `chatdrop-load`: load generator for the chatdrop server. It starts a real
//! server process, connects many real clients (TLS, login proof) and
//! measures. Results and the exact commands are kept in docs/BENCHMARKS.md.

mod emu;
mod failover;
mod fanout;
mod flows;
mod hops;
mod idle;
mod net;
mod plot;
mod relayed;
mod soak;
mod soak_attacker;
mod spawn;
mod store;
mod suite;
mod swarm;
mod transfer;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Load generator and benchmarks for chatdrop.
#[derive(Debug, Parser)]
#[command(name = "chatdrop-load")]
struct Cli {
    /// The `chatdrop` binary to start the server from [default: next to this
    /// program].
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
    /// Server worker threads.
    #[arg(long, global = true, default_value_t = 2)]
    workers: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// N idle clients across rooms: server memory per client.
    Idle {
        /// Clients.
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Rooms they are spread over.
        #[arg(long, default_value_t = 100)]
        rooms: usize,
    },
    /// Idle clients across linked servers, one load process per server
    /// (each process may hold 20,000 open files at most): each server's
    /// memory per client and the connect rate.
    IdleNetwork {
        /// Linked servers (a chain).
        #[arg(long, default_value_t = 5)]
        servers: usize,
        /// Clients at each server (under 20,000: a server process may
        /// hold 20,000 open files, sockets and its own files together).
        #[arg(long, default_value_t = 19_900)]
        per_server: usize,
        /// Rooms at each server.
        #[arg(long, default_value_t = 100)]
        rooms: usize,
    },
    /// The load process of `idle-network` (started by it).
    #[command(hide = true)]
    IdleWorker {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        clients: usize,
        #[arg(long)]
        rooms: usize,
    },
    /// One room, many members, a few senders: deliveries per second and
    /// delivery latency.
    Fanout {
        /// Members of the room.
        #[arg(long, default_value_t = 2_000)]
        members: usize,
        /// How many of them send.
        #[arg(long, default_value_t = 4)]
        senders: usize,
        /// Messages per second, all senders together; 0 for as fast as the
        /// server takes them.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Seconds to measure.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Lines of history the server keeps per room (0: none, so that
        /// only delivery is measured; more: every line is also stored).
        #[arg(long, default_value_t = 0)]
        history: u32,
    },
    /// File transfer over loopback UDP (the code of `chatdrop send`/`recv`),
    /// directly and through the lossy relay: throughput per scheme, window
    /// and loss.
    Transfer {
        /// Bytes of the file.
        #[arg(long, default_value_t = 100_000_000)]
        size: u64,
        /// Windows to try, in packets.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16,64,256")]
        windows: Vec<u32>,
        /// Loss rates to try (0 = direct, no relay).
        #[arg(long, value_delimiter = ',', default_value = "0,0.01,0.05")]
        loss: Vec<f64>,
        /// Runs of each case (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Servers linked in a chain: latency across 0 to N hops, and lines a
    /// second across 3 hops against one server.
    Hops {
        /// Longest chain, in hops.
        #[arg(long, default_value_t = 5)]
        max_hops: usize,
        /// Lines sent for each latency measurement.
        #[arg(long, default_value_t = 2_000)]
        count: u64,
        /// Their rate, lines a second (light load).
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Members at the far end for the throughput run.
        #[arg(long, default_value_t = 100)]
        receivers: usize,
        /// Seconds each throughput run is measured.
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// Four servers in a ring; the server on a conversation's path crashes
    /// or freezes: how long lines stop, and whether any is lost or doubled.
    Failover {
        /// Runs of each kind of failure.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Milliseconds between lines.
        #[arg(long, default_value_t = 5)]
        interval_ms: u64,
    },
    /// Every protocol (chatdrop SR and GBN, TCP CUBIC and BBR, quinn with
    /// CUBIC and BBR) over one emulated link (two network namespaces and a
    /// user-space forwarder; needs root).
    Link {
        /// Link rate, Mbit/s.
        #[arg(long, default_value_t = 200)]
        mbit: u64,
        /// Round-trip time, ms.
        #[arg(long, default_value_t = 20)]
        rtt_ms: u64,
        /// Random loss each way (0.01 = 1%).
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Per-packet jitter each way, ms: packets closer together than
        /// this overtake each other.
        #[arg(long, default_value_t = 0)]
        jitter_ms: u64,
        /// A delay wandering by up to this each way, ms, a new one every
        /// 20 ms, packets kept in order.
        #[arg(long, default_value_t = 0)]
        wander_ms: u64,
        /// Bytes moved by each flow (default: ten seconds of the link).
        #[arg(long)]
        size: Option<u64>,
        /// Runs per protocol.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Only these protocols: sr, gbn, cubic, bbr, quinn-cubic, quinn-bbr.
        #[arg(long, value_delimiter = ',')]
        protocols: Vec<String>,
        /// TCP's and QUIC's receivers write what they get into a file, as
        /// chatdrop's does (see the suite's option).
        #[arg(long)]
        baselines_write: bool,
    },
    /// The transfer suite: every protocol over loopback and the emulated
    /// links (200 Mbit/s 20 ms at 0, 1 and 5% loss; 100 Mbit/s 100 ms at
    /// 1%; 1 Gbit/s 2 ms; two with per-packet jitter that reorders; one
    /// whose delay wanders), fairness, CPU per GB, receive drops, and a
    /// plot (needs root).
    Suite(suite::Options),
    /// Linked servers and thousands of clients chatting for minutes, one
    /// server restarted half-way, optionally with an attacker: every line
    /// checked, latency over time, memory slope.
    Soak(soak::Options),
    /// A file through the server's relay against the same file directly,
    /// over one emulated link, with real processes: throughput and the
    /// relay's CPU per GB (needs root and nftables).
    Relay {
        /// Link rate, Mbit/s.
        #[arg(long, default_value_t = 200)]
        mbit: u64,
        /// Round-trip time, ms.
        #[arg(long, default_value_t = 20)]
        rtt_ms: u64,
        /// Random loss each way (0.01 = 1%).
        #[arg(long, default_value_t = 0.01)]
        loss: f64,
        /// Bytes of the file (default: ten seconds of the link).
        #[arg(long)]
        size: Option<u64>,
        /// Runs of each path.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// One download from three owners at once, each behind an emulated
    /// uplink of its own, against the same download from one of them,
    /// with real processes (needs root).
    Swarm {
        /// Each owner's uplink, Mbit/s.
        #[arg(long, default_value_t = 50)]
        uplink: u64,
        /// Round-trip time of every path, ms.
        #[arg(long, default_value_t = 20)]
        rtt_ms: u64,
        /// Loss rates each way to try (0.01 = 1%).
        #[arg(long, value_delimiter = ',', default_values_t = [0.0, 0.01])]
        loss: Vec<f64>,
        /// Bytes of the file.
        #[arg(long, default_value_t = 100_000_000)]
        size: u64,
        /// Runs of each case.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The store alone: history lines committed per second in batches.
    Store {
        /// Lines to write.
        #[arg(long, default_value_t = 200_000)]
        lines: usize,
        /// Lines per transaction.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
    },
}

fn main() -> anyhow::Result<()> {
    // Quiet unless asked (RUST_LOG=chatdrop_transfer=trace shows the
    // congestion controller's state during transfers).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let server_bin = match cli.server_bin {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("chatdrop"))
            .ok_or_else(|| anyhow::anyhow!("cannot find the chatdrop binary; pass --server-bin"))?,
    };
    // Each client is a socket.
    chatdrop_server::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Idle { clients, rooms } => {
            rt.block_on(idle::run(&server_bin, cli.workers, clients, rooms))
        }
        Cmd::IdleNetwork {
            servers,
            per_server,
            rooms,
        } => rt.block_on(idle::network(
            &std::env::current_exe()?,
            &server_bin,
            cli.workers,
            servers,
            per_server,
            rooms,
        )),
        Cmd::IdleWorker {
            addr,
            prefix,
            clients,
            rooms,
        } => rt.block_on(idle::worker(&addr, &prefix, clients, rooms)),
        Cmd::Fanout {
            members,
            senders,
            rate,
            secs,
            history,
        } => rt.block_on(fanout::run(
            &server_bin,
            cli.workers,
            fanout::Load {
                members,
                senders,
                rate,
                secs,
                history,
            },
        )),
        Cmd::Store { lines, batch } => store::run(lines, batch),
        Cmd::Relay {
            mbit,
            rtt_ms,
            loss,
            size,
            runs,
        } => {
            let size = size.unwrap_or(mbit * 1_000_000 / 8 * 10);
            relayed::run(&server_bin, mbit, rtt_ms, loss, size, runs)
        }
        Cmd::Soak(o) => rt.block_on(soak::run(&server_bin, cli.workers, o)),
        Cmd::Swarm {
            uplink,
            rtt_ms,
            loss,
            size,
            runs,
        } => swarm::run(
            &server_bin,
            &swarm::Options {
                uplink_mbit: uplink,
                rtt_ms,
                losses: loss,
                size,
                runs,
            },
        ),
        Cmd::Link {
            mbit,
            rtt_ms,
            loss,
            jitter_ms,
            wander_ms,
            size,
            runs,
            protocols,
            baselines_write,
        } => suite::run(
            &[suite::Link {
                mbit,
                rtt_ms,
                loss,
                jitter_ms,
                wander_ms,
            }],
            &suite::Options {
                size,
                runs,
                plot: None,
                only: None,
                no_fairness: true,
                protocols,
                dir: None,
                baselines_write,
            },
        ),
        Cmd::Suite(opts) => suite::run(&suite::LINKS, &opts),
        Cmd::Failover { runs, interval_ms } => {
            rt.block_on(failover::run(&server_bin, cli.workers, runs, interval_ms))
        }
        Cmd::Hops {
            max_hops,
            count,
            rate,
            receivers,
            secs,
        } => rt.block_on(hops::run(
            &server_bin,
            cli.workers,
            max_hops,
            count,
            rate,
            receivers,
            secs,
        )),
        Cmd::Transfer {
            size,
            windows,
            loss,
            runs,
        } => rt.block_on(transfer::run(size, &windows, &loss, runs)),
    }
}
