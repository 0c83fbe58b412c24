//! One download from three owners at once against the same download from
//! one of them, with real processes: each owner at a home of its own
//! behind an emulated uplink (see `emu.rs`, [`Emulator::star`]), the
//! server and the asker on the other side of all three. Throughput is
//! timed from `transfer_started` to `transfer_done`, as the asker sees
//! them; `transfer_done`'s `sources` says what each owner sent.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use serde_json::Value;

use crate::emu::{Emulator, LinkSpec, ADDR_B};
use crate::relayed::{median, server_in, Proc};

/// Owners in the swarm runs.
const OWNERS: usize = 3;

/// What one benchmark measures: the owners' uplink, the path's round trip,
/// the loss rates to try, the file's size and the runs of each case.
pub struct Options {
    /// Each owner's uplink, Mbit/s.
    pub uplink_mbit: u64,
    /// Round-trip time of every path, ms.
    pub rtt_ms: u64,
    /// Random loss each way on every link, one case per rate.
    pub losses: Vec<f64>,
    /// Bytes of the file.
    pub size: u64,
    /// Runs of each case (the median is reported).
    pub runs: usize,
}

/// One download of the shared file by a fresh asker, from owners
/// `bob{run}-0..n` (fresh processes too): Mbit/s from the path open to
/// the whole file, and what each owner sent.
fn once(
    bin: &Path,
    emu: &Emulator,
    dir: &Path,
    port: &str,
    owners: usize,
    run: usize,
) -> anyhow::Result<(f64, String)> {
    let room = format!("r{run}");
    let share = dir.join("share").display().to_string();
    let wait = Duration::from_secs(30);
    let mut procs = Vec::new();
    for i in 0..owners {
        let name = format!("bob{run}-{i}");
        let data = dir.join(&name).display().to_string();
        // Each owner reaches the server at B's end of its own link.
        let to = format!("10.77.{i}.2:{port}");
        let mut args = vec!["client", "--json", "--server", &to, "--room", &room];
        args.extend(["--user", &name, "--share-dir", &share, "--data-dir", &data]);
        if i == 0 {
            args.push("--create");
        }
        let mut owner = Proc::spawn(bin, emu.a_side(i), &args)?;
        owner.event("joined", wait)?;
        owner.send("@me setshare f.bin")?;
        owner.event("share_status", wait)?;
        procs.push(owner);
    }
    let to = format!("{ADDR_B}:{port}");
    let alice = format!("alice{run}");
    let data = dir.join(&alice).display().to_string();
    let downloads = dir.join(format!("down{run}")).display().to_string();
    let mut args = vec!["client", "--json", "--server", &to, "--room", &room];
    args.extend(["--user", &alice, "--data-dir", &data]);
    args.extend(["--download-dir", &downloads]);
    let mut asker = Proc::spawn(bin, emu.ns_name(1), &args)?;
    asker.event("joined", wait)?;
    asker.send("@all whohas f.bin")?;
    // Every owner's answer first: the download asks all it knows of.
    for _ in 0..owners {
        asker.event("whohas_reply", wait)?;
    }
    asker.send(&format!("@bob{run}-0 getfile f.bin"))?;
    asker.event("transfer_started", wait)?;
    let t0 = Instant::now();
    let done = asker.event("transfer_done", Duration::from_secs(600))?;
    let seconds = t0.elapsed().as_secs_f64();
    let bytes = done["bytes"].as_f64().unwrap_or(0.0);
    if let Some(p) = done["path"].as_str() {
        let _ = std::fs::remove_file(p);
    }
    let sources = match &done["sources"] {
        Value::Array(s) => s
            .iter()
            .map(|s| {
                let mb = s["bytes"].as_f64().unwrap_or(0.0) / 1e6;
                format!("{} {mb:.0} MB", s["from"].as_str().unwrap_or("?"))
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    drop(procs);
    Ok((bytes * 8.0 / seconds / 1e6, sources))
}

/// Runs the cases of `opts` and prints each run and the medians.
pub fn run(bin: &Path, opts: &Options) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("share"))?;
    let mut bytes = vec![0u8; opts.size as usize];
    rand_chacha::ChaCha8Rng::seed_from_u64(11).fill_bytes(&mut bytes);
    std::fs::write(dir.path().join("share/f.bin"), &bytes)?;
    drop(bytes);
    let sum = (OWNERS as u64 * opts.uplink_mbit) as f64;
    println!(
        "{} runs of {} MB; each owner behind a {} Mbit/s uplink, {} ms RTT; target {:.0} Mbit/s from {OWNERS} (90% of {sum:.0})",
        opts.runs,
        opts.size / 1_000_000,
        opts.uplink_mbit,
        opts.rtt_ms,
        sum * 0.9
    );
    let mut summary = Vec::new();
    for &loss in &opts.losses {
        let up = LinkSpec::new(opts.uplink_mbit, opts.rtt_ms, loss);
        // The asker's side is not the bottleneck: a gigabit towards the
        // owners (acknowledgements, the chat).
        let down = LinkSpec::new(1_000, opts.rtt_ms, loss);
        let emu = Emulator::star(&[(up, down); OWNERS], 13)?;
        let server_data = dir.path().join(format!("server{loss}"));
        let (_server, port) = server_in(bin, emu.ns_name(1), "0.0.0.0:0", &server_data)?;
        println!("{}% loss each way:", loss * 100.0);
        let mut medians = Vec::new();
        for owners in [1, OWNERS] {
            let mut rates = Vec::new();
            for i in 0..opts.runs {
                let run = summary.len() * 100 + owners * 10 + i;
                let (rate, sources) = once(bin, &emu, dir.path(), &port, owners, run)?;
                println!("  {owners} owner(s): {rate:.1} Mbit/s ({sources})");
                rates.push(rate);
            }
            medians.push(median(&mut rates));
        }
        let (one, three) = (medians[0], medians[1]);
        println!(
            "  median: 1 owner {one:.1} Mbit/s, {OWNERS} owners {three:.1} Mbit/s ({:.1}x; {:.0}% of the target)",
            three / one,
            three / (sum * 0.9) * 100.0
        );
        summary.push((loss, one, three));
    }
    println!("loss | 1 owner | {OWNERS} owners | x | of {:.0}", sum * 0.9);
    for (loss, one, three) in summary {
        println!(
            "{}% | {one:.1} | {three:.1} | {:.2} | {:.0}%",
            loss * 100.0,
            three / one,
            three / (sum * 0.9) * 100.0
        );
    }
    Ok(())
}
