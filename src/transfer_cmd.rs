//! `chatdrop send` and `chatdrop recv`: one file, peer to peer, without a
//! server. The sender prints a ticket; the receiver fetches with it.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chatdrop_arq::{Config, Scheme};
use chatdrop_client::ClientEvent;
use chatdrop_transfer::{
    direct_keys, fetch, hash_file, serve, Download, FetchOptions, ServeKeys, ServeOptions, Source,
    Ticket,
};
use clap::Args;

use crate::printer::Printer;
use crate::progress::Meter;

/// Key-derivation context of direct-mode sessions.
/// Options of `chatdrop send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The file to send.
    file: PathBuf,
    /// Local UDP address to send from [default: any port, IPv4 and IPv6].
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Address to put in the ticket, when the receiver must use another one
    /// than the bound address (port forwarding, a relay).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// ARQ scheme: `sr` (Selective Repeat) or `gbn` (Go-Back-N).
    #[arg(long, default_value = "sr")]
    arq: Scheme,
    /// Window cap in packets: the most ever in flight (the congestion
    /// controller decides how many below it).
    #[arg(short = 'w', long = "window", default_value_t = chatdrop_arq::DEFAULT_WINDOW)]
    window: u32,
    /// Largest payload per data packet, bytes (at least 1200). By default
    /// the session finds the largest the path carries, up to 64 KiB.
    #[arg(long, default_value_t = chatdrop_transfer::MAX_MSS)]
    max_packet: u32,
    /// Seconds of silence from the receiver after which the transfer fails.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// One JSON object per event instead of text.
    #[arg(long)]
    json: bool,
}

/// Options of `chatdrop recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    /// The ticket `chatdrop send` printed.
    ticket: String,
    /// Folder to save the file in.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Seconds of silence from the sender after which the transfer fails
    /// (what arrived is kept, and a new run resumes from it).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// One JSON object per event instead of text.
    #[arg(long)]
    json: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn emit(printer: &Printer, event: &ClientEvent) {
    println!("{}", printer.line(event));
}

/// The address a receiver can reach when we are bound to `bound`: the bound
/// IP itself, or, for the wildcard, the address the kernel would use to
/// route outwards (asked with a UDP `connect`, which sends nothing), or
/// loopback when there is no route.
fn reachable(bound: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let ip = StdUdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    SocketAddr::new(ip, bound.port())
}

pub fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let printer = Printer {
        json: args.json,
        me: String::new(),
    };
    anyhow::ensure!(
        (chatdrop_transfer::MIN_MSS..=chatdrop_transfer::MAX_MSS).contains(&args.max_packet),
        "--max-packet must be between {} and {} bytes",
        chatdrop_transfer::MIN_MSS,
        chatdrop_transfer::MAX_MSS
    );
    anyhow::ensure!(
        (1..=chatdrop_arq::MAX_WINDOW).contains(&args.window),
        "-w must be between 1 and {} packets",
        chatdrop_arq::MAX_WINDOW
    );
    let name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .context("the file needs a UTF-8 name")?
        .to_string();
    let (size, hash) = hash_file(&args.file)?;
    let source = Source::open(&args.file, size)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let socket = match args.bind {
            Some(addr) => {
                chatdrop_transfer::bind(addr).with_context(|| format!("binding {addr}"))?
            }
            None => chatdrop_transfer::bind_dual(0).context("binding a UDP socket")?,
        };
        let bound = socket.local_addr()?;
        let mut cfg = Config::new(args.arq, args.window);
        cfg.idle_timeout = Duration::from_secs(args.timeout.max(1));
        // The largest packet offered; the session finds what the path carries.
        cfg.mss = args.max_packet;
        let ticket = Ticket {
            addr: args.advertise.unwrap_or_else(|| reachable(bound)),
            session: rand::random(),
            secret: rand::random(),
            name: name.clone(),
            size,
            blake3: hash,
            selective_repeat: args.arq == Scheme::SelectiveRepeat,
            window: args.window,
            mss: cfg.mss,
        };
        emit(
            &printer,
            &ClientEvent::Ticket {
                ticket: ticket.encode(),
                file: name.clone(),
                size,
                blake3: hex::encode(hash),
            },
        );
        // Each receiver that proves the ticket agrees fresh keys with us.
        let id = hex::encode(ticket.session);
        let keys = ServeKeys::Ticket(Box::new(ticket));
        let opts = ServeOptions {
            cfg,
            wait_for_start: None,
            peer_ips: Vec::new(),
            punch: Vec::new(),
        };
        let mut meter = Meter::new(&printer, &id, size);
        let result = serve(&socket, keys, &source, &opts, |d, t| meter.update(d, t)).await;
        meter.finish();
        let stats = result?;
        emit(
            &printer,
            &ClientEvent::UploadDone {
                file: name,
                to: "receiver".into(),
                bytes: stats.bytes,
                seconds: stats.seconds,
            },
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub fn recv(args: RecvArgs) -> anyhow::Result<ExitCode> {
    let printer = Printer {
        json: args.json,
        me: String::new(),
    };
    let ticket = Ticket::decode(&args.ticket)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let bind: SocketAddr = if ticket.addr.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let socket = chatdrop_transfer::bind(bind).context("binding a UDP socket")?;
        let cfg = Config::announced(
            ticket.selective_repeat,
            ticket.window,
            ticket.mss,
            Duration::from_secs(args.timeout.max(1)),
        );
        let mut download = Download::open(&args.out, &ticket.name, ticket.size, ticket.blake3)?;
        let id = hex::encode(ticket.session);
        let from = ticket.addr.to_string();
        emit(
            &printer,
            &ClientEvent::TransferStarted {
                id: id.clone(),
                file: ticket.name.clone(),
                from: from.clone(),
                size: ticket.size,
                resumed_from: download.resume_from(),
                path: "direct".into(),
                addr: ticket.addr.to_string(),
            },
        );
        let timeout = Duration::from_secs(args.timeout.max(1));
        let keys = direct_keys(&socket, &ticket, timeout).await?;
        let mut meter = Meter::new(&printer, &id, ticket.size);
        let result = fetch(
            &socket,
            ticket.addr,
            keys,
            &mut download,
            ticket.size,
            &FetchOptions { cfg },
            |d, t| meter.update(d, t),
        )
        .await
        .and_then(|stats| download.finish().map(|done| (stats, done)));
        meter.finish();
        match result {
            Ok((stats, (path, hash))) => {
                emit(
                    &printer,
                    &ClientEvent::TransferDone {
                        id,
                        file: ticket.name,
                        from,
                        bytes: stats.bytes,
                        seconds: stats.seconds,
                        blake3: hex::encode(hash),
                        path: path.display().to_string(),
                    },
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                emit(
                    &printer,
                    &ClientEvent::TransferFailed {
                        id,
                        file: ticket.name,
                        from,
                        reason: e.to_string(),
                    },
                );
                eprintln!("chatdrop: {e}");
                Ok(ExitCode::FAILURE)
            }
        }
    })
}
