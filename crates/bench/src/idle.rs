//! Idle clients: what each costs the server in memory.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{watch, Semaphore};

use crate::net::{enter, login};
use crate::spawn::ServerProc;

pub async fn run(bin: &Path, workers: usize, clients: usize, rooms: usize) -> anyhow::Result<()> {
    let max = (clients + 100).to_string();
    let server = ServerProc::start(bin, workers, &["--max-clients", &max])?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = server.rss_kib()?;
    let addr = Arc::new(server.addr.clone());
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
            waiting += 1;
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                let session = async {
                    let mut s = login(&addr, &format!("idle{i}")).await?;
                    enter(&mut s, &format!("room{}", i % rooms), i < rooms).await?;
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
                // Idle, as a real client: keepalive pings, drain whatever comes.
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
    let connect_secs = started.elapsed().as_secs_f64();
    // Let the server settle, then take the median of three readings.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut readings = Vec::new();
    for _ in 0..3 {
        readings.push(server.rss_kib()?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    readings.sort();
    let rss = readings[1];
    let per = (rss.saturating_sub(base)) as f64 / clients as f64;
    println!(
        "idle clients: {clients} in {rooms} rooms, connected in {connect_secs:.1} s ({:.0}/s)",
        clients as f64 / connect_secs
    );
    println!("server RSS: {base} KiB at start, {rss} KiB with the clients");
    println!("server memory per idle client: {per:.1} KiB (target: at most 32 KiB)");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
