//! One room with many members and a few senders: deliveries a second and
//! how long a line takes from its sender to every member.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatdrop_proto::{encode_frame, ClientMsg, ServerMsg, Target};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Semaphore};

use crate::net::{enter, login};
use crate::spawn::ServerProc;

/// Lines a sender may have in flight (sent, not yet seen coming back) when
/// sending as fast as the server takes them.
const IN_FLIGHT: usize = 32;

/// Text of a bench line: the send time, ns since the run's start, in hex.
fn stamp(t0: Instant) -> String {
    format!("b{:016x}", t0.elapsed().as_nanos() as u64)
}

fn parse_stamp(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix('b')?, 16).ok()
}

/// The shape of a fan-out run.
pub struct Load {
    pub members: usize,
    pub senders: usize,
    pub rate: u64,
    pub secs: u64,
    pub history: u32,
}

pub async fn run(bin: &Path, workers: usize, load: Load) -> anyhow::Result<()> {
    let Load {
        members,
        senders,
        rate,
        secs,
        history,
    } = load;
    anyhow::ensure!(
        senders >= 1 && senders <= members,
        "need 1 <= senders <= members"
    );
    let max = (members + 100).to_string();
    let history = history.to_string();
    let server = ServerProc::start(
        bin,
        workers,
        &["--max-clients", &max, "--history", &history],
    )?;
    let addr = Arc::new(server.addr.clone());

    let joining = Instant::now();
    let mut sessions = Vec::with_capacity(members);
    let mut first = login(&addr, "m0").await?;
    enter(&mut first, "bench", true).await?;
    sessions.push(first);
    let gate = Arc::new(Semaphore::new(128));
    let mut joins = Vec::new();
    for i in 1..members {
        let (addr, gate) = (addr.clone(), gate.clone());
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let mut s = login(&addr, &format!("m{i}")).await?;
            enter(&mut s, "bench", false).await?;
            anyhow::Ok(s)
        }));
    }
    for j in joins {
        sessions.push(j.await??);
    }
    eprintln!(
        "{members} members joined in {:.1} s",
        joining.elapsed().as_secs_f64()
    );

    let t0 = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut receivers = Vec::new();
    let mut writers = Vec::new();
    for (i, s) in sessions.into_iter().enumerate() {
        let mut frames = s.frames;
        if i < senders {
            writers.push(s.writer);
        }
        let echo = Arc::new(Semaphore::new(IN_FLIGHT));
        let me = format!("m{i}");
        let (delivered, lost, mut stop) = (delivered.clone(), lost.clone(), stop_rx.clone());
        let echo_for_sender = echo.clone();
        receivers.push((
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .expect("histogram bounds are valid");
                loop {
                    let frame = tokio::select! {
                        _ = stop.changed() => break,
                        f = frames.next() => f,
                    };
                    let Some(Ok(payload)) = frame else {
                        lost.fetch_add(1, Ordering::Relaxed);
                        break;
                    };
                    if let Ok(ServerMsg::Message(line)) = chatdrop_proto::decode(&payload) {
                        if let Some(sent) = parse_stamp(&line.text) {
                            let now = t0.elapsed().as_nanos() as u64;
                            let _ = hist.record((now.saturating_sub(sent) / 1000).max(1));
                            delivered.fetch_add(1, Ordering::Relaxed);
                            if line.from == me {
                                echo.add_permits(1);
                            }
                        }
                    }
                }
                hist
            }),
            echo_for_sender,
        ));
    }

    // Senders.
    let per_sender = rate as f64 / senders as f64;
    let mut send_tasks = Vec::new();
    for (i, mut w) in writers.into_iter().enumerate() {
        let echo = receivers[i].1.clone();
        let mut stop = stop_rx.clone();
        send_tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut buf = Vec::new();
            loop {
                if rate == 0 {
                    let permit = tokio::select! {
                        _ = stop.changed() => break,
                        p = echo.acquire() => p,
                    };
                    let Ok(permit) = permit else { break };
                    permit.forget();
                    buf.clear();
                    let msg = ClientMsg::Say {
                        to: Target::All,
                        room: Some("bench".into()),
                        text: stamp(t0),
                    };
                    buf.extend_from_slice(&encode_frame(&msg).expect("encodes"));
                    // Take what else the window allows, in one write.
                    while let Ok(p) = echo.try_acquire() {
                        p.forget();
                        let msg = ClientMsg::Say {
                            to: Target::All,
                            room: Some("bench".into()),
                            text: stamp(t0),
                        };
                        buf.extend_from_slice(&encode_frame(&msg).expect("encodes"));
                    }
                } else {
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tick.tick() => {}
                    }
                    let due = (started.elapsed().as_secs_f64() * per_sender) as u64;
                    buf.clear();
                    while sent < due {
                        let msg = ClientMsg::Say {
                            to: Target::All,
                            room: Some("bench".into()),
                            text: stamp(t0),
                        };
                        buf.extend_from_slice(&encode_frame(&msg).expect("encodes"));
                        sent += 1;
                    }
                    if buf.is_empty() {
                        continue;
                    }
                }
                if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
                    break;
                }
            }
            w
        }));
    }

    // One second of warm-up, then the measured window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_count = delivered.load(Ordering::Relaxed);
    let window = Instant::now();
    let rss_before = server.rss_kib()?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let end_count = delivered.load(Ordering::Relaxed);
    let elapsed = window.elapsed().as_secs_f64();
    let rss = server.rss_kib()?;
    let _ = stop_tx.send(true);
    let mut writers = Vec::new();
    for t in send_tasks {
        writers.push(t.await?);
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for (r, _) in receivers {
        hist.add(r.await?)?;
    }
    let rate_label = if rate == 0 {
        "as fast as accepted".to_string()
    } else {
        format!("{rate} msgs/s")
    };
    println!(
        "fanout: {members} members, {senders} senders, {rate_label}, history {history}, {secs} s measured"
    );
    println!(
        "deliveries: {:.0}/s ({:.0} messages/s into the room)",
        (end_count - start_count) as f64 / elapsed,
        (end_count - start_count) as f64 / elapsed / members as f64
    );
    println!(
        "latency (send to delivery, whole run): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );
    println!("server RSS: {rss_before} KiB at the window's start, {rss} KiB at its end");
    let dropped = lost.load(Ordering::Relaxed);
    if dropped > 0 {
        println!("connections dropped by the server (too slow): {dropped}");
    }
    drop(writers);
    Ok(())
}
