//! The soak: linked servers, thousands of clients chatting for minutes, one
//! server restarted in the middle, optionally an attacker flooding at full
//! speed. Every line is numbered by its sender and checked by every
//! receiver: lost, duplicated and out-of-order lines are counted, delivery
//! latency is kept per 10-second window, and each server's memory is
//! sampled to give its slope after warm-up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatdrop_client::Session;
use chatdrop_proto::{ClientMsg, ServerMsg, Target};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::hops::join_when_known;
use crate::net::{enter, fixed_key, login_key};
use crate::spawn::ServerProc;

const KEY: &str = "chatdrop-load-network-key";

/// Seconds per latency window.
const WINDOW_SECS: u64 = 10;

/// The shape of a soak.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Linked servers (a chain).
    #[arg(long, default_value_t = 3)]
    pub servers: usize,
    /// Clients, spread evenly over the servers.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Rooms, each with members at every server.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Seconds of chatting.
    #[arg(long, default_value_t = 600)]
    pub secs: u64,
    /// Lines a second, all clients together.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Do not restart the last server half-way.
    #[arg(long)]
    pub no_restart: bool,
    /// Run an attacker too: connections flooding every kind of request at
    /// full speed, reconnecting whenever they are dropped.
    #[arg(long)]
    pub attacker: bool,
    /// Where to write the latency plot (SVG).
    #[arg(long, default_value = "soak.svg")]
    pub plot: PathBuf,
}

/// What every client adds to.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    delivered: AtomicU64,
    lost: AtomicU64,
    /// Of `lost`, lines from senders at the restarted server.
    lost_restarted: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    reconnects: AtomicU64,
    /// Latency (µs) per window since sending started.
    windows: Mutex<Vec<Histogram<u64>>>,
}

impl Tally {
    fn record(&self, window: usize, micros: u64) {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        while w.len() <= window {
            match Histogram::new_with_bounds(1, 600_000_000, 3) {
                Ok(h) => w.push(h),
                Err(_) => return,
            }
        }
        let _ = w[window].record(micros.clamp(1, 600_000_000));
    }
}

/// One client's line: `k{sender}:{seq}:{ns since start}`.
fn line_text(sender: usize, seq: u64, t0: Instant) -> String {
    format!("k{sender}:{seq}:{}", t0.elapsed().as_nanos())
}

fn parse_line(text: &str) -> Option<(usize, u64, u64)> {
    let mut it = text.strip_prefix('k')?.split(':');
    let s = it.next()?.parse().ok()?;
    let q = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    Some((s, q, t))
}

/// What a receiver has seen of each sender in its current stay (a
/// reconnection starts a new stay: what was sent meanwhile is not its).
#[derive(Default)]
struct Seen {
    last: HashMap<usize, u64>,
    /// The first stay: it was there before the first line, so each
    /// sender's first line must be its number 1.
    from_start: bool,
}

struct Shared {
    t0: Instant,
    /// When sending starts (after every client is in its room).
    go: tokio::sync::watch::Receiver<bool>,
    stop_sending: AtomicBool,
    stop: AtomicBool,
    tally: Tally,
    /// Servers, and which one is restarted (if any), to say whose lines
    /// were lost.
    servers: usize,
    restarted: Option<usize>,
    /// Each sender's last sequence number sent.
    finals: Vec<AtomicU64>,
    rate_per_client: f64,
}

/// Runs a soak and prints its report.
pub async fn run(bin: &Path, workers: usize, o: Options) -> anyhow::Result<()> {
    anyhow::ensure!(o.servers >= 1 && o.clients >= o.rooms && o.rooms >= 1);
    // The servers' own rate limits stay on; only the per-address ones
    // (connections, logins, new names) are raised, since every client here
    // comes from 127.0.0.1.
    let conf_dir = tempfile::tempdir()?;
    let conf = conf_dir.path().join("server.toml");
    let per_ip = o.clients + 1_000;
    std::fs::write(
        &conf,
        format!(
            "[limits]\nconnections_per_ip = {per_ip}\nlogins_per_ip = {per_ip}\n\
             new_names_per_hour = {per_ip}\n"
        ),
    )?;
    let conf = conf.display().to_string();
    let max = (o.clients / o.servers + 500).to_string();
    let mut servers: Vec<ServerProc> = Vec::new();
    for i in 0..o.servers {
        let name = format!("s{i}");
        let mut args = vec![
            "--config",
            &conf,
            "--name",
            &name,
            "--network-key",
            KEY,
            "--max-clients",
            &max,
        ];
        let prev = servers.last().map(|s| s.addr.clone());
        if let Some(prev) = &prev {
            args.extend(["--link", prev]);
        }
        servers.push(ServerProc::start_limited(bin, workers, &args)?);
    }
    if o.servers > 1 {
        let want = format!("{0}/{0} reachable servers in sync", o.servers - 1);
        for s in &servers {
            s.wait_for(&want)?;
        }
    }
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        go: go_rx,
        stop_sending: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        tally: Tally::default(),
        servers: o.servers,
        restarted: (!o.no_restart && o.servers > 1).then_some(o.servers - 1),
        finals: (0..o.clients).map(|_| AtomicU64::new(0)).collect(),
        rate_per_client: o.rate / o.clients as f64,
    });

    // Connect: room makers first, then everyone else.
    let connect_start = Instant::now();
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(1024);
    for phase in [0..o.rooms, o.rooms..o.clients] {
        let mut waiting = 0;
        for i in phase {
            let addr = addrs[i % o.servers].clone();
            let (gate, ready, shared) = (gate.clone(), ready_tx.clone(), shared.clone());
            let rooms = o.rooms;
            waiting += 1;
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                let session = open(&addr, i, rooms, true).await;
                drop(permit);
                match session {
                    Ok(s) => {
                        let _ = ready.send(Ok(())).await;
                        client(i, addr, rooms, s, shared).await;
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e)).await;
                    }
                }
            }));
        }
        for _ in 0..waiting {
            match ready_rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => anyhow::bail!("a client failed to join: {e:#}"),
                None => anyhow::bail!("clients vanished"),
            }
        }
    }
    println!(
        "soak: {} clients at {} linked servers in {} rooms, connected in {:.1} s",
        o.clients,
        o.servers,
        o.rooms,
        connect_start.elapsed().as_secs_f64()
    );

    let attacker = if o.attacker {
        Some(crate::soak_attacker::start(addrs[0].clone()))
    } else {
        None
    };

    // Chat for `secs`, sampling memory; restart the last server half-way.
    let send_start = Instant::now();
    let _ = go_tx.send(true);
    let mut memory: Vec<(f64, Vec<u64>)> = Vec::new();
    let mut restarted_at = None;
    let mut sample = tokio::time::interval(Duration::from_secs(5));
    while send_start.elapsed() < Duration::from_secs(o.secs) {
        sample.tick().await;
        let t = send_start.elapsed().as_secs_f64();
        let rss = servers.iter().map(|s| s.rss_kib().unwrap_or(0)).collect();
        memory.push((t, rss));
        if !o.no_restart && o.servers > 1 && restarted_at.is_none() && t >= o.secs as f64 / 2.0 {
            let last = servers.len() - 1;
            let at = send_start.elapsed().as_secs_f64();
            servers[last].restart()?;
            println!("restarted server s{last} at {at:.0} s");
            restarted_at = Some(at);
        }
    }
    shared.stop_sending.store(true, Ordering::SeqCst);
    if let Some(a) = attacker {
        a.stop();
    }
    // What is in flight arrives, then every receiver checks its tail.
    tokio::time::sleep(Duration::from_secs(10)).await;
    shared.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    report(&o, &shared, &memory, restarted_at)
}

/// Logs in client `i` and puts it in its room, making the room the first
/// time if `i` is its maker.
async fn open(addr: &str, i: usize, rooms: usize, first: bool) -> anyhow::Result<Session> {
    let mut s = login_key(addr, &format!("c{i}"), &fixed_key(0xc1, i)).await?;
    let room = format!("soak{}", i % rooms);
    if first && i < rooms {
        enter(&mut s, &room, true).await?;
    } else {
        join_when_known(&mut s, &room).await?;
    }
    Ok(s)
}

/// One client: sends its numbered lines at its share of the rate, checks
/// every line it receives, and reconnects (to the same server) when its
/// connection ends.
async fn client(i: usize, addr: String, rooms: usize, mut s: Session, shared: Arc<Shared>) {
    // Until every client is in, this one reads and pings like any other
    // (a client that does neither is dropped, and would be counted as a
    // reconnection), but sends nothing.
    let go = shared.go.clone();
    let mut seen = Seen {
        from_start: true,
        ..Seen::default()
    };
    let mut seq = 0u64;
    // Each client sends about every 1/rate_per_client seconds, the first
    // at a random point of that period so the load is even.
    let period = Duration::from_secs_f64(1.0 / shared.rate_per_client.max(1e-6));
    let first = period.mul_f64(rand::random::<f64>());
    let mut next_send = None;
    let mut last_sent = tokio::time::Instant::now();
    let mut keepalive = tokio::time::interval(Duration::from_secs(1));
    // As chatdrop's client does: lines not echoed when the server says
    // goodbye were never taken, and are sent again once back in the room.
    let mut unechoed: std::collections::VecDeque<(u64, String)> = Default::default();
    let mut bye = false;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if next_send.is_none() && *go.borrow() {
            next_send = Some(tokio::time::Instant::now() + first);
        }
        let sending = next_send.unwrap_or_else(|| tokio::time::Instant::now() + period);
        tokio::select! {
            _ = tokio::time::sleep_until(sending), if next_send.is_some() => {
                next_send = Some(sending + period);
                if shared.stop_sending.load(Ordering::Relaxed) {
                    continue;
                }
                let text = line_text(i, seq + 1, shared.t0);
                let msg = ClientMsg::Say { to: Target::All, room: Some(format!("soak{}", i % rooms)), text: text.clone() };
                if s.send(&msg).await.is_ok() {
                    if unechoed.len() >= 256 {
                        unechoed.pop_front();
                    }
                    unechoed.push_back((seq + 1, text));
                    last_sent = tokio::time::Instant::now();
                    seq += 1;
                    shared.finals[i].store(seq, Ordering::Relaxed);
                    shared.tally.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Keepalive, as a real client: a ping when nothing was sent
            // for a while (the server drops a connection silent for 15 s).
            _ = keepalive.tick() => {
                if last_sent.elapsed() > Duration::from_secs(5) {
                    let _ = s.send(&ClientMsg::Ping).await;
                    last_sent = tokio::time::Instant::now();
                }
            }
            frame = s.frames.next() => {
                match frame {
                    Some(Ok(payload)) => {
                        // History replayed on a (re)join is not a delivery.
                        match chatdrop_proto::decode::<ServerMsg>(&payload) {
                            Ok(ServerMsg::Message(l)) if !l.history => {
                                if let Some((sender, n, _)) = parse_line(&l.text) {
                                    if sender == i {
                                        while unechoed.front().is_some_and(|(k, _)| *k <= n) {
                                            unechoed.pop_front();
                                        }
                                    }
                                }
                                check(i, &l.text, &mut seen, &shared);
                            }
                            Ok(ServerMsg::Bye { reason }) => {
                                debug_note(&shared, || format!("c{i}: bye: {reason}"));
                                bye = true;
                            }
                            _ => {}
                        }
                    }
                    other => {
                        debug_note(&shared, || format!("c{i}: connection ended: {other:?}"));
                        // Dropped (the server restarted): back in, a new stay.
                        shared.tally.reconnects.fetch_add(1, Ordering::Relaxed);
                        seen = Seen::default();
                        let carried: Vec<(u64, String)> = if std::mem::take(&mut bye) {
                            unechoed.drain(..).collect()
                        } else {
                            unechoed.clear();
                            Vec::new()
                        };
                        s = loop {
                            if shared.stop.load(Ordering::Relaxed) {
                                return;
                            }
                            match open(&addr, i, rooms, false).await {
                                Ok(s) => break s,
                                Err(e) => {
                                    debug_note(&shared, || format!("c{i}: rejoin failed: {e:#}"));
                                    tokio::time::sleep(Duration::from_millis(500)).await
                                }
                            }
                        };
                        for (n, text) in carried {
                            let msg = ClientMsg::Say { to: Target::All, room: Some(format!("soak{}", i % rooms)), text: text.clone() };
                            if s.send(&msg).await.is_ok() {
                                unechoed.push_back((n, text));
                            }
                        }
                    }
                }
            }
        }
    }
    // The tail: lines a sender sent last that never came show no gap.
    for (sender, last) in seen.last {
        let sent = shared.finals[sender].load(Ordering::Relaxed);
        if sent > last {
            lose(&shared, i, sender, sent - last, "tail");
        }
    }
}

/// With `SOAK_DEBUG` in the environment, prints `what` with the time.
fn debug_note(shared: &Shared, what: impl FnOnce() -> String) {
    if std::env::var_os("SOAK_DEBUG").is_some() {
        eprintln!("{:.1} s: {}", shared.t0.elapsed().as_secs_f64(), what());
    }
}

/// Counts `n` lines of `sender` as lost to receiver `me`; `SOAK_DEBUG`
/// in the environment says where and how each loss was seen.
fn lose(shared: &Shared, me: usize, sender: usize, n: u64, how: &str) {
    if n == 0 {
        return;
    }
    shared.tally.lost.fetch_add(n, Ordering::Relaxed);
    if std::env::var_os("SOAK_DEBUG").is_some() {
        let at = |c: usize| c % shared.servers;
        eprintln!(
            "lost {n} ({how}): from c{sender} at s{} to c{me} at s{}, {:.1} s",
            at(sender),
            at(me),
            shared.t0.elapsed().as_secs_f64()
        );
    }
    if shared.restarted == Some(sender % shared.servers) {
        shared.tally.lost_restarted.fetch_add(n, Ordering::Relaxed);
    }
}

fn check(me: usize, text: &str, seen: &mut Seen, shared: &Shared) {
    let Some((sender, seq, sent_ns)) = parse_line(text) else {
        return; // not a soak line (the attacker's)
    };
    let t = &shared.tally;
    t.delivered.fetch_add(1, Ordering::Relaxed);
    let now = shared.t0.elapsed().as_nanos() as u64;
    let window = (sent_ns / 1_000_000_000 / WINDOW_SECS) as usize;
    t.record(window, now.saturating_sub(sent_ns) / 1_000);
    match seen.last.get(&sender).copied() {
        // The first line of a sender in a later stay sets where it is.
        None if !seen.from_start => {
            seen.last.insert(sender, seq);
        }
        None => {
            lose(shared, me, sender, seq.saturating_sub(1), "start");
            seen.last.insert(sender, seq);
        }
        Some(last) if seq == last + 1 => {
            seen.last.insert(sender, seq);
        }
        Some(last) if seq > last + 1 => {
            lose(shared, me, sender, seq - last - 1, "gap");
            seen.last.insert(sender, seq);
        }
        Some(last) if seq == last => {
            t.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        Some(_) => {
            t.reordered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Least-squares slope of `ys` against `xs`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

fn report(
    o: &Options,
    shared: &Shared,
    memory: &[(f64, Vec<u64>)],
    restarted_at: Option<f64>,
) -> anyhow::Result<()> {
    let t = &shared.tally;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "lines sent: {}, deliveries: {}, lost: {} ({} of them sent at the restarted server), duplicated: {}, out of order: {}, reconnections: {}",
        g(&t.sent),
        g(&t.delivered),
        g(&t.lost),
        g(&t.lost_restarted),
        g(&t.duplicated),
        g(&t.reordered),
        g(&t.reconnects)
    );
    let windows = t.windows.lock().unwrap_or_else(|p| p.into_inner());
    let mut all = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    println!("window (s)  deliveries  p50 (ms)  p99 (ms)");
    let mut series = Vec::new();
    for (i, h) in windows.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        all.add(h)?;
        let (p50, p99) = (
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
        );
        let from = i as u64 * WINDOW_SECS;
        println!(
            "{from:>5}-{:<5} {:>10} {p50:>9.2} {p99:>9.2}",
            from + WINDOW_SECS,
            h.len()
        );
        series.push((from as f64 + WINDOW_SECS as f64 / 2.0, p50, p99));
    }
    if !all.is_empty() {
        println!(
            "whole run: p50 {:.2} ms, p99 {:.2} ms",
            all.value_at_quantile(0.5) as f64 / 1000.0,
            all.value_at_quantile(0.99) as f64 / 1000.0
        );
    }
    // Memory after warm-up (the first fifth), each server on its own; the
    // restarted one only after its restart.
    for s in 0..o.servers {
        let from = match restarted_at {
            Some(at) if s == o.servers - 1 => at + 30.0,
            _ => o.secs as f64 / 5.0,
        };
        let pts: Vec<(f64, f64)> = memory
            .iter()
            .filter(|(t, _)| *t >= from)
            .map(|(t, rss)| (*t / 60.0, rss[s] as f64))
            .collect();
        let (first, last) = (
            pts.first().map(|p| p.1).unwrap_or(0.0),
            pts.last().map(|p| p.1).unwrap_or(0.0),
        );
        // The last half on its own: a high-water mark still being
        // reached flattens, a leak does not.
        let late = &pts[pts.len() / 2..];
        println!(
            "server s{s}: RSS {first:.0} KiB to {last:.0} KiB after warm-up, slope {:+.1} KiB/min ({:+.1} KiB/min over the last half)",
            slope(&pts),
            slope(late)
        );
    }
    crate::plot::latency_over_time(&o.plot, &series, restarted_at)?;
    println!("plot: {}", o.plot.display());
    Ok(())
}
