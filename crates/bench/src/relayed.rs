//! A file through the server's relay against the same file directly, over
//! one emulated link (see `emu.rs`), with real processes: the server and
//! the asker on side B, the owner on side A. The relay runs add a filter
//! on side B that drops the owner's UDP to anything but the server's port
//! (a firewall no punching gets through), so the file goes owner -> link
//! -> relay -> asker; the direct runs go owner -> link -> asker. Both
//! cross the link once. Throughput is timed from `transfer_started` (the
//! path open) to `transfer_done`; the server's CPU time during the relayed
//! file gives the relay's CPU per GB.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{RngCore, SeedableRng};
use serde_json::Value;

use crate::emu::{Emulator, LinkSpec, ADDR_B};

/// A `chatdrop` process in a namespace, killed on drop.
pub(crate) struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Proc {
    /// Starts `bin` with `args` in namespace `ns`. With `CHATDROP_BENCH_LOGS`
    /// set to a directory, its debug log goes to a file there named after
    /// its `--user` (or `server`), to see where a run's time went.
    pub(crate) fn spawn(bin: &Path, ns: &str, args: &[&str]) -> anyhow::Result<Proc> {
        let (level, stderr) = match std::env::var_os("CHATDROP_BENCH_LOGS") {
            Some(dir) => {
                let user = args.iter().position(|a| *a == "--user");
                let name = user.and_then(|i| args.get(i + 1)).unwrap_or(&"server");
                let file = std::fs::File::create(Path::new(&dir).join(format!("{name}.log")))
                    .context("creating a log file")?;
                ("info,chatdrop=debug", Stdio::from(file))
            }
            None => ("warn", Stdio::null()),
        };
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(bin)
            .args(args)
            .env("RUST_LOG", level)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("starting chatdrop")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Proc {
            child,
            stdin,
            lines,
        })
    }

    pub(crate) fn send(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{line}")?;
        Ok(())
    }

    /// The next line containing `what`, within `limit`.
    pub(crate) fn line(&self, what: &str, limit: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return Ok(l),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => bail!("no {what:?} within {limit:?}"),
                Err(RecvTimeoutError::Disconnected) => bail!("the process ended before {what:?}"),
            }
        }
    }

    /// The next JSON event of kind `kind`; a failure event ends the wait.
    pub(crate) fn event(&self, kind: &str, limit: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.line("\"event\"", left)?;
            let v: Value = serde_json::from_str(&line)?;
            if v["event"] == kind {
                return Ok(v);
            }
            if v["event"] == "transfer_failed" || v["event"] == "error" {
                bail!("waiting for {kind}: {line}");
            }
        }
    }

    /// User and system CPU time of the process so far.
    fn cpu(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command's closing parenthesis; utime and stime
        // are the 14th and 15th of the whole line.
        let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_millis(ticks * 1000 / hz))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nft(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .status()?;
    if !status.success() {
        bail!("nft {args:?} failed");
    }
    Ok(())
}

/// One transfer of `file` from the owner (side A) to the asker (side B):
/// Mbit/s from path open to the whole file, the path's name, and the
/// server's CPU time meanwhile.
fn once(
    bin: &Path,
    emu: &Emulator,
    dir: &Path,
    port: &str,
    server: &Proc,
    run: usize,
) -> anyhow::Result<(f64, String, Duration)> {
    let to = format!("{ADDR_B}:{port}");
    let room = format!("r{run}");
    let (bob, alice) = (format!("bob{run}"), format!("alice{run}"));
    let data = |who: &str| dir.join(who).display().to_string();
    let share = dir.join("share").display().to_string();
    let downloads = dir.join(format!("down{run}")).display().to_string();
    let common = ["client", "--json", "--server", &to, "--room", &room];
    let mut owner_args = common.to_vec();
    owner_args.extend(["--user", &bob, "--create", "--share-dir", &share]);
    let owner_data = data(&bob);
    owner_args.extend(["--data-dir", &owner_data]);
    let mut owner = Proc::spawn(bin, emu.ns_name(0), &owner_args)?;
    let wait = Duration::from_secs(30);
    owner.event("joined", wait)?;
    owner.send("@me setshare f.bin")?;
    owner.event("share_status", wait)?;
    let mut asker_args = common.to_vec();
    let asker_data = data(&alice);
    asker_args.extend(["--user", &alice, "--data-dir", &asker_data]);
    asker_args.extend(["--download-dir", &downloads]);
    let mut asker = Proc::spawn(bin, emu.ns_name(1), &asker_args)?;
    asker.event("joined", wait)?;
    asker.send("@all whohas f.bin")?;
    asker.event("whohas_reply", wait)?;
    asker.send(&format!("@{bob} getfile f.bin"))?;
    let started = asker.event("transfer_started", wait)?;
    let (t0, cpu0) = (Instant::now(), server.cpu()?);
    let done = asker.event("transfer_done", Duration::from_secs(300))?;
    let (seconds, cpu) = (t0.elapsed().as_secs_f64(), server.cpu()? - cpu0);
    let bytes = done["bytes"].as_f64().unwrap_or(0.0);
    if let Some(p) = done["path"].as_str() {
        let _ = std::fs::remove_file(p);
    }
    let path = started["path"].as_str().unwrap_or("?").to_string();
    Ok((bytes * 8.0 / seconds / 1e6, path, cpu))
}

/// Runs `runs` direct and `runs` relayed transfers of `size` bytes over a
/// link of `mbit` Mbit/s, `rtt_ms` and `loss`, and prints the medians.
pub fn run(
    bin: &Path,
    mbit: u64,
    rtt_ms: u64,
    loss: f64,
    size: u64,
    runs: usize,
) -> anyhow::Result<()> {
    let spec = LinkSpec::new(mbit, rtt_ms, loss);
    let emu = Emulator::start(spec, spec, 7)?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("share"))?;
    let mut bytes = vec![0u8; size as usize];
    rand_chacha::ChaCha8Rng::seed_from_u64(5).fill_bytes(&mut bytes);
    std::fs::write(dir.path().join("share/f.bin"), &bytes)?;
    drop(bytes);
    let server_data = dir.path().join("server");
    let (server, port) = server_in(bin, emu.ns_name(1), &format!("{ADDR_B}:0"), &server_data)?;
    println!(
        "{runs} runs of {} MB each way over {mbit} Mbit/s, {rtt_ms} ms, {}% loss",
        size / 1_000_000,
        loss * 100.0
    );
    let mut results = Vec::new();
    for relayed in [false, true] {
        if relayed {
            // Side B takes nothing by UDP from side A but at the server's
            // port: the owner's punches and data cannot reach the asker.
            let ns = emu.ns_name(1);
            nft(ns, &["add", "table", "inet", "cdbench"])?;
            nft(
                ns,
                &[
                    "add", "chain", "inet", "cdbench", "in", "{", "type", "filter", "hook",
                    "input", "priority", "0", ";", "}",
                ],
            )?;
            let rule = [
                "add",
                "rule",
                "inet",
                "cdbench",
                "in",
                "ip",
                "saddr",
                "10.77.0.1",
                "udp",
                "dport",
                "!=",
                &port,
                "drop",
            ];
            nft(ns, &rule)?;
        }
        let (mut rates, mut cpus) = (Vec::new(), Vec::new());
        for i in 0..runs {
            let run = usize::from(relayed) * runs + i;
            let (rate, path, cpu) = once(bin, &emu, dir.path(), &port, &server, run)?;
            let gb = size as f64 / 1e9;
            println!(
                "  {path}: {rate:.1} Mbit/s; server CPU {:.2} s/GB",
                cpu.as_secs_f64() / gb
            );
            rates.push(rate);
            cpus.push(cpu.as_secs_f64() / gb);
        }
        results.push((relayed, median(&mut rates), median(&mut cpus)));
    }
    for (relayed, rate, cpu) in &results {
        let name = if *relayed { "relay" } else { "direct" };
        println!("{name}: median {rate:.1} Mbit/s; server CPU {cpu:.2} s/GB");
    }
    if let [(_, direct, _), (_, relay, _)] = results[..] {
        println!("relay/direct: {:.1}%", relay / direct * 100.0);
    }
    Ok(())
}

/// A server in namespace `ns` listening on `listen` (without rate limits:
/// the benchmark is the only user), its data in `data`, and its port.
pub(crate) fn server_in(
    bin: &Path,
    ns: &str,
    listen: &str,
    data: &Path,
) -> anyhow::Result<(Proc, String)> {
    let data = data.display().to_string();
    let args = [
        "server",
        "--no-console",
        "--no-rate-limits",
        "--listen",
        listen,
        "--data-dir",
        &data,
    ];
    let server = Proc::spawn(bin, ns, &args)?;
    let line = server.line("listening on", Duration::from_secs(30))?;
    let port = line.rsplit(':').next().context("no port")?.trim();
    Ok((server, port.to_string()))
}

pub(crate) fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}
