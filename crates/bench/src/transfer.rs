//! File transfer throughput over loopback UDP, with the library code that
//! `chatdrop send` and `chatdrop recv` run, directly or through the lossy
//! relay.

use std::time::{Duration, Instant};

use chatdrop_arq::{Config, Scheme};
use chatdrop_transfer::relay::{Impairment, Relay};
use chatdrop_transfer::{
    fetch, hash_file, serve, Download, FetchOptions, Role, ServeOptions, SessionKeys, Source,
};
use rand::RngCore;

/// One transfer; returns (seconds, retransmissions).
async fn once(
    path: &std::path::Path,
    out: &std::path::Path,
    scheme: Scheme,
    window: u32,
    loss: f64,
    seed: u64,
) -> anyhow::Result<(f64, u64)> {
    let server = chatdrop_transfer::bind(([127, 0, 0, 1], 0).into())?;
    let target = server.local_addr()?;
    let relay = if loss > 0.0 {
        Some(
            Relay::start(
                target,
                Impairment {
                    loss,
                    tamper: 0.0,
                    seed,
                    ..Default::default()
                },
            )
            .await?,
        )
    } else {
        None
    };
    let peer = relay.as_ref().map_or(target, |r| r.addr);
    let client = chatdrop_transfer::bind(([127, 0, 0, 1], 0).into())?;
    between(path, out, scheme, window, server, client, peer).await
}

/// What both ends of a benchmark transfer share: the file's size and hash,
/// the session secret and id, and the ARQ settings.
pub struct BenchSession {
    /// Bytes of the file.
    pub size: u64,
    /// Its BLAKE3 hash.
    pub hash: [u8; 32],
    secret: [u8; 32],
    id: [u8; 8],
    /// The file's outline (its size, hash and parts).
    pub outline: chatdrop_transfer::outline::Outline,
    /// ARQ settings (the largest packets; a 30 s idle timeout).
    pub cfg: Config,
}

impl BenchSession {
    /// A fresh session for sending `file` with `scheme` and `window`.
    pub fn new(file: &std::path::Path, scheme: Scheme, window: u32) -> anyhow::Result<Self> {
        let outline = hash_file(file)?;
        let (size, hash) = (outline.size(), outline.root());
        let mut cfg = Config::new(scheme, window);
        cfg.idle_timeout = Duration::from_secs(30);
        cfg.mss = chatdrop_transfer::MAX_MSS;
        Ok(BenchSession {
            outline,
            size,
            hash,
            secret: rand::random(),
            id: rand::random(),
            cfg,
        })
    }

    /// The keys of the end `role`.
    pub fn keys(&self, role: Role) -> SessionKeys {
        SessionKeys::derive(&self.secret, self.id, b"bench", role)
    }

    /// The sending end's options.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            cfg: self.cfg.clone(),
            wait_for_start: Some(Duration::from_secs(10)),
            peer_ips: Vec::new(),
            punch: Vec::new(),
            later_peer_ips: None,
        }
    }
}

/// One transfer from `server` to `client`, which reaches the server at
/// `peer`; returns (seconds, retransmissions).
pub async fn between(
    path: &std::path::Path,
    out: &std::path::Path,
    scheme: Scheme,
    window: u32,
    server: tokio::net::UdpSocket,
    client: tokio::net::UdpSocket,
    peer: std::net::SocketAddr,
) -> anyhow::Result<(f64, u64)> {
    let session = BenchSession::new(path, scheme, window)?;
    let (size, hash, cfg) = (session.size, session.hash, session.cfg.clone());
    let source = Source::open(path, &session.outline)?;
    let (opts, keys) = (session.serve_options(), session.keys(Role::Sender));
    let sender = tokio::spawn(async move { serve(&server, keys, &source, &opts, |_, _| {}).await });
    let _ = std::fs::remove_dir_all(out);
    let dl = Download::open(out, "bench.bin", size, hash)?;
    let keys = session.keys(Role::Receiver);
    let started = Instant::now();
    fetch(&client, peer, keys, &dl, &FetchOptions { cfg }, |_, _| {}).await?;
    dl.finish()?;
    let secs = started.elapsed().as_secs_f64();
    let stats = sender.await??;
    Ok((secs, stats.retransmissions))
}

pub async fn run(size: u64, windows: &[u32], losses: &[f64], runs: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.bin");
    let mut data = vec![0u8; size as usize];
    rand::thread_rng().fill_bytes(&mut data);
    std::fs::write(&path, &data)?;
    drop(data);
    println!(
        "| scheme | window | loss | MB/s (median of {runs}) | Mbit/s | retransmitted packets |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for &loss in losses {
        for scheme in [Scheme::GoBackN, Scheme::SelectiveRepeat] {
            for &window in windows {
                let mut results = Vec::new();
                for r in 0..runs {
                    let out = dir.path().join("out");
                    results.push(once(&path, &out, scheme, window, loss, r as u64).await?);
                }
                results.sort_by(|a, b| a.0.total_cmp(&b.0));
                let (secs, retx) = results[results.len() / 2];
                let mbps = size as f64 / secs / 1e6;
                println!(
                    "| {} | {window} | {}% | {mbps:.1} | {:.0} | {retx} |",
                    scheme.as_str(),
                    loss * 100.0,
                    mbps * 8.0
                );
            }
        }
    }
    Ok(())
}
