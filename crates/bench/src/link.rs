//! Protocols side by side over one emulated link ([`crate::emu`]): TCP with
//! each congestion control the kernel offers, and chatdrop's transfer with
//! each ARQ scheme, moving the same number of bytes from side B to side A.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use chatdrop_arq::Scheme;
use rand::RngCore;

use crate::emu::{Emulator, LinkSpec, ADDR_A, ADDR_B};

/// Sets a socket's TCP congestion control by name (`cubic`, `bbr`...).
fn set_cc(s: &TcpStream, cc: &str) -> anyhow::Result<()> {
    // SAFETY: setsockopt with a byte string of the given length.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            cc.as_ptr().cast(),
            cc.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        anyhow::bail!("TCP_CONGESTION {cc}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `bytes` over TCP from B to A with congestion control `cc`;
/// returns Mbit/s measured at the receiver.
fn tcp(emu: &Emulator, cc: &str, bytes: u64) -> anyhow::Result<f64> {
    let listener = emu.in_ns(0, || TcpListener::bind((ADDR_A, 0)))??;
    let addr = listener.local_addr()?;
    let cc_name = cc.to_string();
    let sender = emu.in_ns(1, move || -> anyhow::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        set_cc(&s, &cc_name)?;
        Ok(s)
    })??;
    let (mut conn, _) = listener.accept()?;
    let started = Instant::now();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut s = sender;
        let chunk = vec![7u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            s.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the TCP sender panicked"))??;
    anyhow::ensure!(got == bytes, "TCP delivered {got} of {bytes} bytes");
    Ok(bytes as f64 * 8.0 / secs / 1e6)
}

/// Sends the file at `path` with chatdrop from B to A; returns Mbit/s and
/// retransmitted packets.
async fn chatdrop(
    emu: &Emulator,
    path: &std::path::Path,
    out: &std::path::Path,
    scheme: Scheme,
    window: u32,
) -> anyhow::Result<(f64, u64)> {
    let h = tokio::runtime::Handle::current();
    let h2 = h.clone();
    let server = emu.in_ns(1, move || {
        let _g = h.enter();
        chatdrop_transfer::socket::bind(SocketAddr::from((ADDR_B, 0)))
    })??;
    let client = emu.in_ns(0, move || {
        let _g = h2.enter();
        chatdrop_transfer::socket::bind(SocketAddr::from((ADDR_A, 0)))
    })??;
    let peer = server.local_addr()?;
    let size = std::fs::metadata(path)?.len();
    let (secs, resent) =
        crate::transfer::between(path, out, scheme, window, server, client, peer).await?;
    Ok((size as f64 * 8.0 / secs / 1e6, resent))
}

/// Runs every protocol over a link of `mbit` Mbit/s, `rtt_ms`, `loss` each
/// way, and prints one row each.
pub async fn run(mbit: u64, rtt_ms: u64, loss: f64, size: u64, window: u32) -> anyhow::Result<()> {
    let spec = LinkSpec::new(mbit, rtt_ms, loss);
    let emu = Emulator::start(spec, spec, 1)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("file.bin");
    let mut data = vec![0u8; size as usize];
    rand::thread_rng().fill_bytes(&mut data);
    std::fs::write(&path, &data)?;
    println!(
        "link: {mbit} Mbit/s, {rtt_ms} ms RTT, {:.1}% loss each way, queue {} KB; {} MB per run",
        loss * 100.0,
        spec.queue_bytes / 1000,
        size / 1_000_000
    );
    println!("| protocol | Mbit/s | % of link | retransmitted packets |");
    println!("| --- | --- | --- | --- |");
    let available = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
        .unwrap_or_default();
    for cc in ["cubic", "bbr"] {
        if !available.split_whitespace().any(|c| c == cc) {
            println!("| tcp {cc} | not available in this kernel | | |");
            continue;
        }
        let rate = tcp(&emu, cc, size)?;
        println!(
            "| tcp {cc} | {rate:.1} | {:.0}% | |",
            100.0 * rate / mbit as f64
        );
    }
    for scheme in [Scheme::SelectiveRepeat, Scheme::GoBackN] {
        let out = dir.path().join(format!("out-{}", scheme.as_str()));
        let (rate, resent) = chatdrop(&emu, &path, &out, scheme, window).await?;
        println!(
            "| chatdrop {} w={window} | {rate:.1} | {:.0}% | {resent} |",
            scheme.as_str(),
            100.0 * rate / mbit as f64
        );
    }
    let s = &emu.stats;
    println!(
        "emulator: B->A forwarded {}, lost {}, queue drops {}",
        s[1].forwarded.load(std::sync::atomic::Ordering::Relaxed),
        s[1].lost.load(std::sync::atomic::Ordering::Relaxed),
        s[1].overflowed.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
