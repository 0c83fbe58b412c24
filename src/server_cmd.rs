//! `chatdrop server`.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chatdrop_chat::{parse_admin, AdminCommand};
use chatdrop_server::{Server, ServerOptions};
use clap::Args;
use tokio::sync::mpsc;

/// Options of `chatdrop server`. Each may also be set in the `--config`
/// file; a flag given on the command line wins.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// A TOML file with any of these options (see docs/CONFIG.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: [::]:50000, every IPv4 and IPv6
    /// address].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory of the database and certificate [default: the platform's
    /// data directory for chatdrop, then `server`].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// PEM certificate chain to use instead of the self-signed one.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Most clients at once; more are refused with `server_full`
    /// [default: 20000].
    #[arg(long)]
    max_clients: Option<usize>,
    /// Worker threads [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// Lines of history each room keeps [default: 1000]; the latest 50
    /// are shown on join, older ones a page at a time (`/history`).
    #[arg(long)]
    history: Option<u32>,
    /// Days a line of history is kept [default: 0, no age limit].
    #[arg(long)]
    history_days: Option<u32>,
    /// Most rooms the server lets its users make [default: 10000].
    #[arg(long)]
    max_rooms: Option<usize>,
    /// Most rooms one user may have made [default: 20].
    #[arg(long)]
    max_rooms_per_user: Option<usize>,
    /// Most members in one room [default: 5000].
    #[arg(long)]
    max_room_members: Option<usize>,
    /// The server's name, shown to clients [default: chatdrop].
    #[arg(long)]
    name: Option<String>,
    /// Do not read admin commands from standard input.
    #[arg(long)]
    no_console: bool,
    /// Refuse to broker files with this extension (repeatable).
    #[arg(long = "block-ext", value_name = "EXT")]
    block_ext: Vec<String>,
    /// Refuse to broker files whose name matches this pattern, e.g.
    /// `*.torrent` (repeatable).
    #[arg(long = "block-name", value_name = "GLOB")]
    block_name: Vec<String>,
    /// Refuse to broker the file with this BLAKE3 hash (repeatable).
    #[arg(long = "block-hash", value_name = "BLAKE3")]
    block_hash: Vec<String>,
    /// Refuse to broker files larger than this many bytes.
    #[arg(long, value_name = "BYTES")]
    max_share_size: Option<u64>,
    /// Link to another server of the network at its client address
    /// (repeatable). Links are redialled when they drop.
    #[arg(long = "link", value_name = "HOST:PORT")]
    link: Vec<String>,
    /// The secret shared by every server of the network; links from servers
    /// without it are refused. Prefer the config file or the
    /// CHATDROP_NETWORK_KEY environment variable, which other users of the
    /// machine cannot read from the process list.
    #[arg(
        long,
        value_name = "KEY",
        env = "CHATDROP_NETWORK_KEY",
        hide_env_values = true
    )]
    network_key: Option<String>,
    /// Turn off every rate and per-address limit (for benchmarks and
    /// private servers whose users are all trusted).
    #[arg(long)]
    no_rate_limits: bool,
    /// The config file's `[limits]` table (boxed: it is large, and rarely
    /// there).
    #[arg(skip)]
    limits: Option<Box<chatdrop_server::quota::Limits>>,
    /// Relay no transfer: peers with no direct path fail to exchange files.
    #[arg(long)]
    no_relay: bool,
    /// The config file's `[relay]` table (boxed, as `limits`).
    #[arg(skip)]
    relay: Option<Box<chatdrop_server::RelayLimits>>,
}

/// Folds the config file into the flags: a flag given wins, lists add up.
fn merge(mut args: ServerArgs) -> anyhow::Result<ServerArgs> {
    let Some(path) = &args.config else {
        return Ok(args);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let c = chatdrop_server::config::parse(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("in {}", path.display()))?;
    args.listen = args.listen.or(c.listen);
    args.data_dir = args.data_dir.or(c.data_dir);
    if args.tls_cert.is_none() && args.tls_key.is_none() {
        args.tls_cert = c.tls_cert;
        args.tls_key = c.tls_key;
    }
    args.max_clients = args.max_clients.or(c.max_clients);
    args.workers = args.workers.or(c.workers);
    args.history = args.history.or(c.history);
    args.history_days = args.history_days.or(c.history_days);
    args.max_rooms = args.max_rooms.or(c.max_rooms);
    args.max_rooms_per_user = args.max_rooms_per_user.or(c.max_rooms_per_user);
    args.max_room_members = args.max_room_members.or(c.max_room_members);
    args.name = args.name.or(c.name);
    args.link.extend(c.links);
    args.network_key = args.network_key.or(c.network_key);
    let p = c.share_policy;
    args.block_ext.extend(p.block_ext);
    args.block_name.extend(p.block_name);
    args.block_hash.extend(p.block_hash);
    args.max_share_size = args.max_share_size.or(p.max_share_size);
    args.limits = c.limits.map(Box::new);
    args.relay = c.relay.map(Box::new);
    Ok(args)
}

pub fn main(args: ServerArgs) -> anyhow::Result<ExitCode> {
    chatdrop_server::raise_fd_limit();
    let args = merge(args)?;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.workers {
        anyhow::ensure!(n > 0, "--workers must be at least 1");
        rt.worker_threads(n);
    }
    let rt = rt.build().context("starting the runtime")?;
    rt.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| crate::paths::default_data_dir("server"));
    let listen = args
        .listen
        .unwrap_or(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 50_000)));
    let mut opts = ServerOptions::new(listen, data_dir.clone());
    anyhow::ensure!(
        args.tls_cert.is_some() == args.tls_key.is_some(),
        "tls_cert and tls_key go together"
    );
    opts.tls_cert = args.tls_cert;
    opts.tls_key = args.tls_key;
    if let Some(n) = args.max_clients {
        opts.max_clients = n;
    }
    if let Some(n) = args.history {
        opts.history_len = n;
    }
    if let Some(n) = args.history_days {
        opts.history_days = n;
    }
    if let Some(n) = args.max_rooms {
        opts.max_rooms = n;
    }
    if let Some(n) = args.max_rooms_per_user {
        opts.max_rooms_per_user = n;
    }
    if let Some(n) = args.max_room_members {
        opts.max_room_members = n;
    }
    if let Some(name) = args.name {
        // Other servers refuse a link from a name outside these rules.
        chatdrop_proto::names::check_room_name(&name)
            .map_err(|why| anyhow::anyhow!("--name: {why}"))?;
        opts.name = name;
    }
    for ext in &args.block_ext {
        opts.policy.block_ext(ext);
    }
    for pattern in &args.block_name {
        opts.policy
            .block_name(pattern)
            .map_err(anyhow::Error::msg)?;
    }
    for hash in &args.block_hash {
        opts.policy.block_hash(hash).map_err(anyhow::Error::msg)?;
    }
    opts.policy.max_size = args.max_share_size;
    if !args.link.is_empty() {
        anyhow::ensure!(
            args.network_key.is_some(),
            "--link needs --network-key (every server of the network shares it)"
        );
    }
    if let Some(key) = &args.network_key {
        anyhow::ensure!(
            key.len() >= 16,
            "the network key must have at least 16 characters (a long random string)"
        );
    }
    if let Some(limits) = args.limits {
        opts.limits = *limits;
    }
    if let Some(relay) = args.relay {
        opts.relay = *relay;
    }
    if args.no_rate_limits {
        opts.limits.enabled = false;
        // The relay's byte rates too; its session counts stay.
        opts.relay.session_bytes_per_sec = 1e12;
        opts.relay.total_bytes_per_sec = 1e12;
    }
    if args.no_relay {
        opts.relay.enabled = false;
    }
    opts.links = args.link;
    opts.network_key = args.network_key;
    let server = Server::bind(opts).await?;
    println!("chatdrop server listening on {}", server.local_addr());
    println!("certificate fingerprint: {}", server.fingerprint());
    println!("data directory: {}", data_dir.display());
    if !args.no_console {
        println!("admin console ready; type `help` for commands");
    }

    let admin = server.admin();
    let (console_tx, mut console_rx) = mpsc::channel::<String>(1024);
    let printer = tokio::spawn(async move {
        while let Some(line) = console_rx.recv().await {
            println!("{line}");
        }
    });
    if !args.no_console {
        let admin = admin.clone();
        // Standard input blocks, so it gets a thread of its own. At its end
        // (EOF) the console stops; the server goes on.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                match parse_admin(&line) {
                    Ok(None) => {}
                    Ok(Some(cmd)) => {
                        if admin.hub_blocking_send(cmd).is_err() {
                            break;
                        }
                    }
                    Err(why) => println!("error: {why}"),
                }
            }
        });
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; shutting down");
        let _ = admin.send(AdminCommand::Exit).await;
    });
    server.run(console_tx).await?;
    let _ = printer.await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServerArgs,
    }

    #[test]
    fn flags_win_over_the_config_file_and_lists_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:4000\"\nname = \"from-file\"\nhistory = 5\n\
             links = [\"10.0.0.1:50000\"]\nnetwork_key = \"from-the-file-0123\"\n\
             [share_policy]\nblock_ext = [\"exe\"]\nmax_share_size = 10\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--name",
            "from-flag",
            "--block-ext",
            "iso",
            "--link",
            "10.0.0.2:50000",
        ]);
        let a = merge(cli.args).unwrap();
        assert_eq!(a.listen, Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(a.name.as_deref(), Some("from-flag"));
        assert_eq!(a.history, Some(5));
        assert_eq!(a.block_ext, ["iso", "exe"]);
        assert_eq!(a.max_share_size, Some(10));
        assert_eq!(a.link, ["10.0.0.2:50000", "10.0.0.1:50000"]);
        assert_eq!(a.network_key.as_deref(), Some("from-the-file-0123"));

        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let cli = Cli::parse_from(["x", "--config", path.to_str().unwrap()]);
        let err = format!("{:#}", merge(cli.args).unwrap_err());
        assert!(
            err.contains("unknown field") && err.contains("lisen"),
            "{err}"
        );
    }
}
