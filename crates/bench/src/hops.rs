//! Servers linked in a chain: how long a line takes across 0 to N hops at a
//! light rate, and how many lines a second a chain carries to a room at its
//! far end compared with one server.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatdrop_client::Session;
use chatdrop_proto::{encode_frame, ClientMsg, ServerMsg, Target};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::net::{enter, login};
use crate::spawn::ServerProc;

const KEY: &str = "chatdrop-load-network-key";

/// Starts `hops + 1` servers, each linked to the one before, and waits until
/// every one is in sync with all the others. `extra` goes to each server.
pub fn chain(
    bin: &Path,
    workers: usize,
    hops: usize,
    extra: &[&str],
) -> anyhow::Result<Vec<ServerProc>> {
    let mut servers: Vec<ServerProc> = Vec::new();
    for i in 0..=hops {
        let name = format!("s{i}");
        let mut args = vec!["--name", &name, "--network-key", KEY, "--history", "0"];
        args.extend_from_slice(extra);
        let prev = servers.last().map(|s| s.addr.clone());
        if let Some(prev) = &prev {
            args.extend(["--link", prev]);
        }
        servers.push(ServerProc::start(bin, workers, &args)?);
    }
    if hops > 0 {
        let want = format!("{hops}/{hops} reachable servers in sync");
        for s in &servers {
            s.wait_for(&want)?;
        }
    }
    Ok(servers)
}

/// Joins `room` at a server that may not have heard of it yet.
pub async fn join_when_known(s: &mut Session, room: &str) -> anyhow::Result<()> {
    for _ in 0..120 {
        match enter(s, room, false).await {
            Ok(()) => return Ok(()),
            // Not heard of yet: ask again soon, but not so often that a
            // server with its rate limits on refuses the asking.
            Err(e) if e.to_string().contains("no room") => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(e) => return Err(e),
        }
    }
    anyhow::bail!("room {room} never reached the far server")
}

fn stamp(t0: Instant) -> String {
    format!("h{:016x}", t0.elapsed().as_nanos() as u64)
}

fn parse_stamp(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix('h')?, 16).ok()
}

/// A sender at the first server and `receivers` members at the last, in one
/// room.
async fn room_across(
    servers: &[ServerProc],
    receivers: usize,
) -> anyhow::Result<(Session, Vec<Session>)> {
    let first = &servers[0].addr;
    let last = &servers[servers.len() - 1].addr;
    let mut sender = login(first, "sender").await?;
    enter(&mut sender, "bench", true).await?;
    let mut rx = Vec::new();
    for i in 0..receivers {
        let mut s = login(last, &format!("r{i}")).await?;
        join_when_known(&mut s, "bench").await?;
        rx.push(s);
    }
    Ok((sender, rx))
}

/// Sends `count` stamped lines at `rate` a second; returns the latency
/// histogram (µs) the receiver saw.
async fn latency(servers: &[ServerProc], count: u64, rate: u64) -> anyhow::Result<Histogram<u64>> {
    let (sender, mut rx) = room_across(servers, 1).await?;
    let mut r = rx.pop().expect("one receiver");
    let t0 = Instant::now();
    let recv = tokio::spawn(async move {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        while hist.len() < count {
            let frame = tokio::time::timeout(Duration::from_secs(10), r.frames.next())
                .await
                .map_err(|_| anyhow::anyhow!("lines stopped arriving"))?
                .ok_or_else(|| anyhow::anyhow!("receiver closed"))??;
            if let Ok(ServerMsg::Message(line)) = chatdrop_proto::decode(&frame) {
                if let Some(sent) = parse_stamp(&line.text) {
                    let now = t0.elapsed().as_nanos() as u64;
                    hist.record((now.saturating_sub(sent) / 1000).max(1))?;
                }
            }
        }
        anyhow::Ok(hist)
    });
    let mut w = sender.writer;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    for _ in 0..count {
        tick.tick().await;
        let msg = ClientMsg::Say {
            to: Target::All,
            room: Some("bench".into()),
            text: stamp(t0),
        };
        w.write_all(&encode_frame(&msg)?).await?;
        w.flush().await?;
    }
    let hist = recv.await??;
    drop(w);
    Ok(hist)
}

/// Lines a second the room at the far end gets while one sender sends as
/// fast as the chain takes them (at most `window` lines not yet seen at the
/// far end).
async fn throughput(servers: &[ServerProc], receivers: usize, secs: u64) -> anyhow::Result<f64> {
    const WINDOW: u64 = 256;
    let (sender, rx) = room_across(servers, receivers).await?;
    // Lines each receiver got; the sender keeps the slowest within WINDOW,
    // so that no receiver is dropped for being too slow.
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..receivers).map(|_| AtomicU64::new(0)).collect());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (i, mut s) in rx.into_iter().enumerate() {
        let (counts, mut stop) = (counts.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    _ = stop.changed() => break,
                    f = s.frames.next() => f,
                };
                let Some(Ok(frame)) = frame else { break };
                if let Ok(ServerMsg::Message(_)) = chatdrop_proto::decode(&frame) {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                }
            }
            s
        }));
    }
    let slowest = |c: &[AtomicU64]| {
        c.iter()
            .map(|n| n.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    };
    let seen = counts.clone();
    let stop = stop_rx.clone();
    let send = tokio::spawn(async move {
        let mut w = sender.writer;
        let mut sent = 0u64;
        let mut buf = Vec::new();
        let frame = encode_frame(&ClientMsg::Say {
            to: Target::All,
            room: Some("bench".into()),
            text: "x".repeat(64),
        })?;
        loop {
            if *stop.borrow() {
                break;
            }
            let room = WINDOW.saturating_sub(sent - slowest(&seen).min(sent));
            if room == 0 {
                tokio::task::yield_now().await;
                continue;
            }
            buf.clear();
            for _ in 0..room {
                buf.extend_from_slice(&frame);
            }
            sent += room;
            w.write_all(&buf).await?;
            w.flush().await?;
        }
        anyhow::Ok(w)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total = |c: &[AtomicU64]| c.iter().map(|n| n.load(Ordering::Relaxed)).sum::<u64>();
    let start = total(&counts);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let lines = (total(&counts) - start) / receivers.max(1) as u64;
    let rate = lines as f64 / t.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let _w = send.await??;
    for t in tasks {
        let _ = t.await;
    }
    Ok(rate)
}

/// Runs the latency ladder (0..=max_hops) and the throughput comparison.
pub async fn run(
    bin: &Path,
    workers: usize,
    max_hops: usize,
    count: u64,
    rate: u64,
    receivers: usize,
    secs: u64,
) -> anyhow::Result<()> {
    println!(
        "latency: {count} lines at {rate}/s, sender at the first server, receiver at the last"
    );
    let mut base: Option<(f64, f64)> = None;
    for hops in 0..=max_hops {
        let servers = chain(bin, workers, hops, &[])?;
        let hist = latency(&servers, count, rate).await?;
        let (p50, p99) = (
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
        );
        match base {
            None => {
                println!("  0 hops (one server): p50 {p50:.3} ms, p99 {p99:.3} ms");
                base = Some((p50, p99));
            }
            Some((b50, b99)) => println!(
                "  {hops} hop(s): p50 {p50:.3} ms, p99 {p99:.3} ms; per hop over one server: p50 {:.3} ms, p99 {:.3} ms",
                (p50 - b50) / hops as f64,
                (p99 - b99) / hops as f64
            ),
        }
    }
    println!("throughput: one sender, {receivers} receivers at the far end, {secs} s measured");
    let one = throughput(&chain(bin, workers, 0, &[])?, receivers, secs).await?;
    println!(
        "  one server: {one:.0} lines/s into the room ({:.0} deliveries/s)",
        one * receivers as f64
    );
    let three = throughput(&chain(bin, workers, 3, &[])?, receivers, secs).await?;
    println!(
        "  3 hops:     {three:.0} lines/s into the room ({:.0} deliveries/s), {:.0}% of one server",
        three * receivers as f64,
        100.0 * three / one
    );
    Ok(())
}
