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

/// Options of `chatdrop server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:50000")]
    listen: SocketAddr,
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
    /// Most clients at once; more are refused with `server_full`.
    #[arg(long, default_value_t = 20_000)]
    max_clients: usize,
    /// Worker threads [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// Lines of history each room keeps and shows on join.
    #[arg(long, default_value_t = 100)]
    history: u32,
    /// The server's name, shown to clients.
    #[arg(long, default_value = "chatdrop")]
    name: String,
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
}

pub fn main(args: ServerArgs) -> anyhow::Result<ExitCode> {
    chatdrop_server::raise_fd_limit();
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
    let mut opts = ServerOptions::new(args.listen, data_dir.clone());
    opts.tls_cert = args.tls_cert;
    opts.tls_key = args.tls_key;
    opts.max_clients = args.max_clients;
    opts.history_len = args.history;
    opts.name = args.name;
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
