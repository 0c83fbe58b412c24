//! `chatdrop send` and `chatdrop recv`: one file, peer to peer. Without a
//! server, the sender prints a ticket and the receiver fetches with it;
//! with `--via SERVER`, the sender prints a short code and the receiver
//! types it (`chatdrop_client::code`), and both learn each other's
//! addresses through the server.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chatdrop_arq::{Config, Scheme};
use chatdrop_client::{code, ClientEvent};
use chatdrop_transfer::{
    direct_keys_at, fetch, hash_file, serve, Download, FetchOptions, ServeKeys, ServeOptions,
    Source, Ticket,
};
use clap::Args;

use crate::printer::Printer;
use crate::progress::Meter;

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
    /// Offer the file through this chatdrop server (`HOST:PORT`) with a
    /// short code instead of a ticket.
    #[arg(long, value_name = "SERVER")]
    via: Option<String>,
}

/// Where `chatdrop recv --via` reads the code from, when it is set (so
/// that the code appears in no process list); otherwise it asks.
pub const CODE_ENV: &str = "CHATDROP_CODE";

/// Options of `chatdrop recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    /// The ticket `chatdrop send` printed (not with `--via`).
    #[arg(required_unless_present = "via", conflicts_with = "via")]
    ticket: Option<String>,
    /// Fetch with a short code through this chatdrop server (`HOST:PORT`):
    /// the code is asked for, or taken from `CHATDROP_CODE`.
    #[arg(long, value_name = "SERVER")]
    via: Option<String>,
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
        ..Printer::default()
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
    let outline = hash_file(&args.file)?;
    let (size, hash) = (outline.size(), outline.root());
    let source = Source::open(&args.file, &outline)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let socket = Arc::new(match args.bind {
            Some(addr) => {
                chatdrop_transfer::bind(addr).with_context(|| format!("binding {addr}"))?
            }
            None => chatdrop_transfer::bind_dual(0).context("binding a UDP socket")?,
        });
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
        let mut punch = Vec::new();
        let mut relaying = None;
        let mut ticket = ticket;
        match &args.via {
            None => emit(
                &printer,
                &ClientEvent::Ticket {
                    ticket: ticket.encode(),
                    file: name.clone(),
                    size,
                    blake3: hex::encode(hash),
                },
            ),
            Some(via) => {
                let (accept, addr, mailbox, reached) =
                    offer_with_code(via, &socket, &ticket, args.advertise, &printer).await?;
                punch = accept.candidates;
                ticket.addr = addr;
                // Kept open: the relay, if the receiver finds no path.
                let r = mailbox.into_relaying();
                let watch = r.watch(ticket.session, socket.clone(), reached);
                relaying = Some((r, watch));
            }
        }
        // Each receiver that proves the ticket agrees fresh keys with us.
        let session = ticket.session;
        let id = hex::encode(ticket.session);
        let keys = ServeKeys::Ticket(Box::new(ticket));
        let opts = ServeOptions {
            cfg,
            wait_for_start: None,
            peer_ips: Vec::new(),
            punch,
            later_peer_ips: None,
        };
        let mut meter = Meter::new(&printer, &id, size);
        let serving = serve(&socket, keys, &source, &opts, |d, t| meter.update(d, t));
        let result = match &relaying {
            None => serving.await,
            // The receiver of a code begins once told: after the session's
            // first punches, which the first poll of `serving` sends, have
            // opened this side's NAT (a key exchange there first would
            // make a Linux NAT give the punches another port).
            Some((relaying, _)) => {
                let served = tokio::join!(serving, relaying.go()).0;
                relaying.end(session);
                served
            }
        };
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

/// `send --via`: opens a mailbox at `via`, says the code, and once the
/// receiver joined and proved it, gives it the ticket and this socket's
/// candidates. Returns the receiver's answer and this side's likeliest
/// address.
async fn offer_with_code(
    via: &str,
    socket: &tokio::net::UdpSocket,
    ticket: &Ticket,
    advertise: Option<SocketAddr>,
    printer: &Printer,
) -> anyhow::Result<(code::Accept, SocketAddr, code::Mailbox, bool)> {
    let fail = |why: String| anyhow::anyhow!("{why}");
    let (mut mailbox, nameplate) = code::Mailbox::open(via).await.map_err(fail)?;
    let code = code::new_code(nameplate);
    emit(
        printer,
        &ClientEvent::Code {
            code: code.clone(),
            via: via.to_string(),
            file: ticket.name.clone(),
            size: ticket.size,
            blake3: hex::encode(ticket.blake3),
        },
    );
    let observed = mailbox.observe(socket).await;
    let reached = observed.is_some();
    let (mut candidates, observed) = code::candidates(socket, mailbox.server_addr(), observed);
    // An address given with `--advertise` leads.
    if let Some(advertised) = advertise {
        candidates.retain(|c| *c != advertised);
        candidates.insert(0, advertised);
        candidates.truncate(chatdrop_proto::limits::MAX_CANDIDATES);
    }
    let addr = candidates.first().copied().unwrap_or(ticket.addr);
    mailbox.joined().await.map_err(fail)?;
    let invite = code::Invite {
        ticket: Ticket {
            addr,
            ..ticket.clone()
        },
        candidates,
        observed,
    };
    let accept = mailbox.send_invite(&code, &invite).await.map_err(fail)?;
    Ok((accept, addr, mailbox, reached))
}

/// `recv --via`: the code (from [`CODE_ENV`] or typed), the mailbox, and
/// the sender's invitation: its ticket, and where to try it, with the
/// address its server observed.
async fn take_with_code(
    via: &str,
    socket: &tokio::net::UdpSocket,
) -> anyhow::Result<(code::Invite, code::Mailbox, bool)> {
    let typed = match std::env::var(CODE_ENV) {
        Ok(code) => code,
        Err(_) => {
            eprint!("Code: ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the code")?;
            line
        }
    };
    let fail = |why: String| anyhow::anyhow!("{why}");
    let (nameplate, code) = code::parse_code(&typed).map_err(fail)?;
    let mut mailbox = code::Mailbox::join(via, nameplate).await.map_err(fail)?;
    let observed = mailbox.observe(socket).await;
    let reached = observed.is_some();
    let (candidates, _) = code::candidates(socket, mailbox.server_addr(), observed);
    let accept = code::Accept { candidates };
    let invite = mailbox.take_invite(&code, &accept).await.map_err(fail)?;
    mailbox.wait_go().await.map_err(fail)?;
    Ok((invite, mailbox, reached))
}

pub fn recv(args: RecvArgs) -> anyhow::Result<ExitCode> {
    let printer = Printer {
        json: args.json,
        me: String::new(),
        ..Printer::default()
    };
    let given = match &args.ticket {
        Some(t) => Some(Ticket::decode(t)?),
        None => None,
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let (socket, ticket, at, observed, mut relaying) = match (given, &args.via) {
            (Some(ticket), _) => {
                let bind: SocketAddr = if ticket.addr.is_ipv4() {
                    "0.0.0.0:0".parse()?
                } else {
                    "[::]:0".parse()?
                };
                let socket = chatdrop_transfer::bind(bind).context("binding a UDP socket")?;
                let at = vec![ticket.addr];
                (Arc::new(socket), ticket, at, None, None)
            }
            (None, Some(via)) => {
                let socket = chatdrop_transfer::bind_dual(0).context("binding a UDP socket")?;
                let socket = Arc::new(socket);
                let (invite, mailbox, reached) = take_with_code(via, &socket).await?;
                let mut at = invite.candidates;
                if !at.contains(&invite.ticket.addr) {
                    at.insert(0, invite.ticket.addr);
                }
                // Kept open: the relay, if no direct path opens.
                let relaying = mailbox.into_relaying();
                let watch = relaying.watch(invite.ticket.session, socket.clone(), reached);
                let via = Some((relaying, watch, reached));
                (socket, invite.ticket, at, invite.observed, via)
            }
            (None, None) => anyhow::bail!("a ticket, or --via SERVER for a code"),
        };
        let cfg = Config::announced(
            ticket.selective_repeat,
            ticket.window,
            ticket.mss,
            Duration::from_secs(args.timeout.max(1)),
        );
        let download = Download::open(&args.out, &ticket.name, ticket.size, ticket.blake3)?;
        let id = hex::encode(ticket.session);
        let from = ticket.addr.to_string();
        let timeout = Duration::from_secs(args.timeout.max(1));
        let (keys, addr) = match relaying {
            None => direct_keys_at(&socket, &ticket, &at, None, timeout).await?,
            Some((ref relaying, ref mut watch, reached)) => {
                // Where no direct path opens within a moment (at once,
                // without UDP to the server), the relay is asked for.
                let wait = if reached {
                    Duration::from_secs(2)
                } else {
                    Duration::ZERO
                };
                let ask = async {
                    tokio::time::sleep(wait).await;
                    relaying.ask(ticket.session).await;
                    std::future::pending::<()>().await
                };
                let more = Some(&mut watch.more);
                let keys = tokio::select! {
                    r = direct_keys_at(&socket, &ticket, &at, more, timeout) => r,
                    () = ask => unreachable!("it never ends"),
                };
                match (keys, watch.refused.try_recv()) {
                    (Ok(k), _) => k,
                    (Err(e), Ok(why)) => {
                        anyhow::bail!("{e}; the server does not relay it either: {why}")
                    }
                    (Err(e), Err(_)) => return Err(e.into()),
                }
            }
        };
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        // At the address the sender's server saw, it came through the
        // sender's NAT, which its punches opened; at the relay's, through
        // the relay.
        let relayed = relaying.as_ref().and_then(|(_, w, _)| w.path(addr));
        let path = match relayed {
            Some(path) => path,
            None if observed == Some(addr) => "punched",
            None => "direct",
        };
        emit(
            &printer,
            &ClientEvent::TransferStarted {
                id: id.clone(),
                file: ticket.name.clone(),
                from: from.clone(),
                size: ticket.size,
                resumed_from: download.resume_from(),
                path: path.into(),
                addr: addr.to_string(),
                arq: chatdrop_client::arq_name(ticket.selective_repeat).into(),
            },
        );
        let mut meter = Meter::new(&printer, &id, ticket.size);
        let result = fetch(
            &socket,
            chatdrop_transfer::for_socket(&socket, addr),
            keys,
            &download,
            &FetchOptions { cfg },
            |d, t| meter.update(d, t),
        )
        .await
        .and_then(|stats| download.finish().map(|done| (stats, done)));
        meter.finish();
        if let Some((relaying, _, _)) = &relaying {
            relaying.end(ticket.session);
        }
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
                        sources: Vec::new(),
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
