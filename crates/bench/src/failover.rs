//! Four servers in a ring; a line every few milliseconds from a user at one
//! server to a user at the opposite one; the server on their path crashes
//! (SIGKILL: its connections close) or freezes (SIGSTOP: they go silent).
//! Measured: how long the lines stop arriving, and whether any is lost or
//! doubled.

use std::path::Path;
use std::time::{Duration, Instant};

use chatdrop_proto::{encode_frame, ClientMsg, ServerMsg, Target};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::net::{enter, login};
use crate::spawn::ServerProc;

const KEY: &str = "chatdrop-load-network-key";

/// Starts the ring a-b-c-d-a and waits until all are in sync.
fn ring(bin: &Path, workers: usize) -> anyhow::Result<Vec<ServerProc>> {
    let start = |name: &str, links: &[&str]| {
        let mut args = vec!["--name", name, "--network-key", KEY, "--history", "0"];
        for l in links {
            args.extend(["--link", l]);
        }
        ServerProc::start(bin, workers, &args)
    };
    let a = start("a", &[])?;
    let b = start("b", &[&a.addr])?;
    let c = start("c", &[&b.addr])?;
    let d = start("d", &[&c.addr, &a.addr])?;
    for s in [&a, &b, &c, &d] {
        s.wait_for("3/3 reachable servers in sync")?;
    }
    Ok(vec![a, b, c, d])
}

fn server_id(s: &ServerProc) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(s.data_dir().join("server-id"))?
        .trim()
        .to_string())
}

/// What one run saw.
pub struct Outcome {
    /// Longest time between two consecutive lines arriving, around the failure.
    pub gap: Duration,
    /// Lines never delivered.
    pub lost: u64,
    /// Lines delivered more than once.
    pub doubled: u64,
    /// Lines delivered out of order.
    pub reordered: u64,
}

async fn run_once(
    bin: &Path,
    workers: usize,
    sig: i32,
    interval: Duration,
) -> anyhow::Result<Outcome> {
    let servers = ring(bin, workers)?;
    // a reaches c through b or d (two hops either way); ties go to the
    // smaller server id, so that is the one on the path.
    let victim = if server_id(&servers[1])? < server_id(&servers[3])? {
        1
    } else {
        3
    };
    let mut sender = login(&servers[0].addr, "sender").await?;
    enter(&mut sender, "ring", true).await?;
    let mut rx = login(&servers[2].addr, "receiver").await?;
    for _ in 0..500 {
        match enter(&mut rx, "ring", false).await {
            Ok(()) => break,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let total_secs = 6.0;
    let lines = (total_secs / interval.as_secs_f64()) as u64;
    let recv = tokio::spawn(async move {
        let mut arrivals: Vec<(u64, Instant)> = Vec::new();
        loop {
            let frame = match tokio::time::timeout(Duration::from_secs(5), rx.frames.next()).await {
                Ok(Some(Ok(f))) => f,
                _ => break,
            };
            if let Ok(ServerMsg::Message(line)) = chatdrop_proto::decode(&frame) {
                if let Some(n) = line.text.strip_prefix('n').and_then(|n| n.parse().ok()) {
                    arrivals.push((n, Instant::now()));
                    if n + 1 == lines {
                        break;
                    }
                }
            }
        }
        arrivals
    });
    let mut w = sender.writer;
    let mut tick = tokio::time::interval(interval);
    let started = Instant::now();
    let mut signalled = false;
    for n in 0..lines {
        tick.tick().await;
        if !signalled && started.elapsed() >= Duration::from_secs(2) {
            servers[victim].signal(sig);
            signalled = true;
        }
        let msg = ClientMsg::Say {
            to: Target::All,
            room: Some("ring".into()),
            text: format!("n{n}"),
        };
        w.write_all(&encode_frame(&msg)?).await?;
        w.flush().await?;
    }
    let arrivals = recv.await?;
    if sig == libc::SIGSTOP {
        servers[victim].signal(libc::SIGCONT);
    }
    let mut seen = vec![0u32; lines as usize];
    let mut reordered = 0;
    let mut last = None;
    let mut gap = Duration::ZERO;
    let mut prev_at: Option<Instant> = None;
    for (n, at) in &arrivals {
        if let Some(c) = seen.get_mut(*n as usize) {
            *c += 1;
        }
        if last.is_some_and(|l| *n < l) {
            reordered += 1;
        }
        last = Some(*n);
        if let Some(p) = prev_at {
            gap = gap.max(at.duration_since(p));
        }
        prev_at = Some(*at);
    }
    Ok(Outcome {
        gap,
        lost: seen.iter().filter(|c| **c == 0).count() as u64,
        doubled: seen.iter().filter(|c| **c > 1).count() as u64,
        reordered,
    })
}

/// Runs each failure `runs` times and prints what each run saw.
pub async fn run(bin: &Path, workers: usize, runs: usize, interval_ms: u64) -> anyhow::Result<()> {
    let interval = Duration::from_millis(interval_ms.max(1));
    println!(
        "failover: ring of 4, one line every {interval_ms} ms from a to c for 6 s, the server on the path fails after 2 s"
    );
    for (label, sig) in [
        ("crash (SIGKILL)", libc::SIGKILL),
        ("freeze (SIGSTOP)", libc::SIGSTOP),
    ] {
        let mut gaps = Vec::new();
        for _ in 0..runs {
            let o = run_once(bin, workers, sig, interval).await?;
            println!(
                "  {label}: longest pause {:.0} ms, lost {}, doubled {}, out of order {}",
                o.gap.as_secs_f64() * 1000.0,
                o.lost,
                o.doubled,
                o.reordered
            );
            gaps.push(o.gap);
        }
        gaps.sort();
        println!(
            "  {label}: median longest pause {:.0} ms",
            gaps[gaps.len() / 2].as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
