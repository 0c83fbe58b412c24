//! Idle clients: what each costs the server in memory. One server with its
//! clients in this process, or (`idle-network`) several linked servers with
//! a load process per server, since one process holds at most as many
//! connections as it may have open files.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::net::{enter, login};
use crate::spawn::ServerProc;

/// Idle clients held open until dropped.
pub struct Held {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Seconds from the first connection to the last login.
    pub connect_secs: f64,
}

impl Held {
    /// Disconnects every client.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Connects `clients` clients named `{prefix}{i}` to `addr`, the first
/// `rooms` of them each making a room (`{prefix}room{k}`), the others
/// joining those; each then idles as a real client does (keepalive pings,
/// reading whatever comes).
pub async fn connect_idle(
    addr: &str,
    prefix: &str,
    clients: usize,
    rooms: usize,
) -> anyhow::Result<Held> {
    let rooms = rooms.clamp(1, clients.max(1));
    let addr = Arc::new(addr.to_string());
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(128));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(1024);
    // Room creators first, then everyone else.
    for phase in [0..rooms.min(clients), rooms.min(clients)..clients] {
        let mut waiting = 0;
        for i in phase {
            let (addr, gate, ready, mut stop) = (
                addr.clone(),
                gate.clone(),
                ready_tx.clone(),
                stop_rx.clone(),
            );
            let (user, room) = (format!("{prefix}{i}"), format!("{prefix}room{}", i % rooms));
            waiting += 1;
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                let session = async {
                    let mut s = login(&addr, &user).await?;
                    enter(&mut s, &room, i < rooms).await?;
                    anyhow::Ok(s)
                }
                .await;
                drop(permit);
                let mut s = match session {
                    Ok(s) => {
                        let _ = ready.send(Ok(())).await;
                        s
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e)).await;
                        return;
                    }
                };
                let mut ping = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        f = s.frames.next() => if f.is_none() { return },
                        _ = ping.tick() => {
                            if s.send(&chatdrop_proto::ClientMsg::Ping).await.is_err() { return }
                        }
                    }
                }
            }));
        }
        for _ in 0..waiting {
            match ready_rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => anyhow::bail!("a client failed: {e:#}"),
                None => anyhow::bail!("clients vanished"),
            }
        }
    }
    Ok(Held {
        stop: stop_tx,
        tasks,
        connect_secs: started.elapsed().as_secs_f64(),
    })
}

/// Readings of resident memory looked at together to call it settled.
const SETTLE_READINGS: usize = 5;

/// Settled when the last [`SETTLE_READINGS`] (a second apart) are within
/// this fraction of each other.
const SETTLE_SPREAD: f64 = 0.01;

/// Longest wait for memory to settle.
const SETTLE_MAX: Duration = Duration::from_secs(120);

/// Each server's memory once it is idle: read every second until the last
/// few readings of every server agree within 1% (a server may still be
/// draining what the logins queued, at itself or towards the others), at
/// most two minutes. For each, the median of its last readings and the
/// seconds it took.
async fn settled_rss(servers: &[&ServerProc]) -> anyhow::Result<Vec<(u64, f64)>> {
    let started = Instant::now();
    let mut readings: Vec<Vec<u64>> = vec![Vec::new(); servers.len()];
    let mut settled_at: Vec<Option<f64>> = vec![None; servers.len()];
    loop {
        for (i, s) in servers.iter().enumerate() {
            readings[i].push(s.rss_kib()?);
            let last = &readings[i][readings[i].len().saturating_sub(SETTLE_READINGS)..];
            let (lo, hi) = (last.iter().min(), last.iter().max());
            if let (Some(&lo), Some(&hi), None) = (lo, hi, settled_at[i]) {
                if last.len() == SETTLE_READINGS && (hi - lo) as f64 <= hi as f64 * SETTLE_SPREAD {
                    settled_at[i] = Some(started.elapsed().as_secs_f64());
                }
            }
        }
        if settled_at.iter().all(Option::is_some) || started.elapsed() >= SETTLE_MAX {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(readings
        .into_iter()
        .zip(settled_at)
        .map(|(r, at)| {
            let mut last = r[r.len().saturating_sub(SETTLE_READINGS)..].to_vec();
            last.sort_unstable();
            let at = at.unwrap_or_else(|| started.elapsed().as_secs_f64());
            (last[last.len() / 2], at)
        })
        .collect())
}

pub async fn run(bin: &Path, workers: usize, clients: usize, rooms: usize) -> anyhow::Result<()> {
    let max = (clients + 100).to_string();
    let server = ServerProc::start(bin, workers, &["--max-clients", &max])?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = server.rss_kib()?;
    let held = connect_idle(&server.addr, "idle", clients, rooms).await?;
    let connect_secs = held.connect_secs;
    let rss = settled_rss(&[&server]).await?[0].0;
    let per = (rss.saturating_sub(base)) as f64 / clients as f64;
    println!(
        "idle clients: {clients} in {rooms} rooms, connected in {connect_secs:.1} s ({:.0}/s)",
        clients as f64 / connect_secs
    );
    println!("server RSS: {base} KiB at start, {rss} KiB with the clients");
    println!("server memory per idle client: {per:.1} KiB (target: at most 16 KiB)");
    held.release().await;
    Ok(())
}

/// `idle-worker`: the load process of `idle-network`. Connects its clients,
/// prints `ready SECONDS`, and holds them until its standard input closes.
pub async fn worker(addr: &str, prefix: &str, clients: usize, rooms: usize) -> anyhow::Result<()> {
    let held = connect_idle(addr, prefix, clients, rooms).await?;
    println!("ready {:.3}", held.connect_secs);
    std::io::stdout().flush()?;
    // Standard input closing is the signal to let go.
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await?;
    held.release().await;
    Ok(())
}

/// `idle-network`: `servers` linked servers (a chain), `per_server` idle
/// clients at each from a load process of its own; each server's memory per
/// client, and the connect rate of all together.
pub async fn network(
    bench_bin: &Path,
    bin: &Path,
    workers: usize,
    servers: usize,
    per_server: usize,
    rooms: usize,
) -> anyhow::Result<()> {
    let max = (per_server + 50).to_string();
    let chain = crate::hops::chain(
        bin,
        workers,
        servers.saturating_sub(1),
        &["--max-clients", &max],
    )?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bases: Vec<u64> = chain
        .iter()
        .map(|s| s.rss_kib())
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut loads = Vec::new();
    for (i, s) in chain.iter().enumerate() {
        let child = Command::new(bench_bin)
            .args(["idle-worker", "--addr", &s.addr, "--prefix"])
            .arg(format!("s{i}u"))
            .args(["--clients", &per_server.to_string()])
            .args(["--rooms", &rooms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        loads.push(child);
    }
    for (i, child) in loads.iter_mut().enumerate() {
        let out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("worker stdout"))?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        anyhow::ensure!(
            line.starts_with("ready"),
            "load process {i} failed before its clients were ready"
        );
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let total = servers * per_server;
    println!(
        "idle clients: {total} across {servers} linked servers ({per_server} each, {rooms} rooms each, one load process per server), connected in {connect_secs:.1} s ({:.0}/s)",
        total as f64 / connect_secs
    );
    let all: Vec<&ServerProc> = chain.iter().collect();
    let mut pers = Vec::new();
    for (i, ((rss, secs), base)) in settled_rss(&all).await?.into_iter().zip(&bases).enumerate() {
        let per = rss.saturating_sub(*base) as f64 / per_server as f64;
        println!(
            "server s{i}: RSS {base} KiB at start, {rss} KiB with its clients (settled after {secs:.0} s): {per:.1} KiB per client"
        );
        pers.push(per);
    }
    let worst = pers.iter().cloned().fold(0.0, f64::max);
    println!("worst server memory per idle client: {worst:.1} KiB (target: at most 16 KiB)");
    for mut child in loads {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    Ok(())
}
