//! One bulk flow of each protocol, from the sending side (1) to the
//! receiving side (0) of a [`Path`]: TCP with a chosen congestion control,
//! chatdrop's transfer (the library `chatdrop send`/`recv` run), and QUIC
//! (quinn). Each side runs on its own thread (with its own runtime), so
//! the CPU time of each side can be read from its thread's clock.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chatdrop_arq::Scheme;
use chatdrop_transfer::{fetch, serve, Download, FetchOptions, Role, Source};

use crate::emu::{Emulator, ADDR_A, ADDR_B};
use crate::transfer::BenchSession;

/// Where flows run: loopback, or the two namespaces of an emulated link.
#[derive(Clone, Copy)]
pub struct Path<'a> {
    /// The emulator, or `None` for loopback.
    pub emu: Option<&'a Emulator>,
}

impl Path<'_> {
    /// Runs `f` in side `side`'s network namespace (0 receives, 1 sends).
    fn on<T: Send + 'static>(
        &self,
        side: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        match self.emu {
            Some(emu) => emu.in_ns(side, f),
            None => Ok(f()),
        }
    }

    fn ip(&self, side: usize) -> IpAddr {
        match (self.emu, side) {
            (None, _) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (Some(_), 0) => IpAddr::V4(ADDR_A),
            (Some(_), _) => IpAddr::V4(ADDR_B),
        }
    }

    /// Runs one end of a flow over this path on a thread of its own (see
    /// [`on_thread`]). On loopback, with at least two cores, the sender is
    /// pinned to the first and the receiver to the second, for every
    /// protocol alike (as `iperf3 -A` does): left to the scheduler, the two
    /// ends sometimes shared a core and one protocol's rate varied between
    /// 3.8 and 7.8 Gbit/s from run to run. On an emulated link the
    /// forwarders need the cores too, and nothing is pinned.
    fn spawn<T: Send + 'static>(
        &self,
        end: End,
        name: &str,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> std::thread::JoinHandle<anyhow::Result<(T, f64)>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pin = (self.emu.is_none() && cores >= 2).then_some(match end {
            End::Send => 0,
            End::Receive => 1,
        });
        on_thread(name, pin, f)
    }

    /// A transfer socket bound in side `side`'s namespace.
    fn udp(&self, side: usize) -> anyhow::Result<std::net::UdpSocket> {
        let ip = self.ip(side);
        Ok(self.on(side, move || {
            chatdrop_transfer::bind_std(SocketAddr::new(ip, 0))
        })??)
    }
}

/// What one flow measured.
#[derive(Debug, Clone, Default)]
pub struct Flow {
    /// Payload bytes delivered.
    pub bytes: u64,
    /// Seconds from the receiver's start to its end.
    pub secs: f64,
    /// CPU seconds of the sending and the receiving side.
    pub send_cpu: f64,
    /// See `send_cpu`.
    pub recv_cpu: f64,
    /// Retransmitted packets, where the protocol reports them.
    pub retransmissions: Option<u64>,
    /// Of those, the ones found needless, where the protocol reports them.
    pub spurious: Option<u64>,
}

impl Flow {
    /// Payload Mbit/s.
    pub fn mbit(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs.max(1e-9) / 1e6
    }
}

/// CPU time of the calling thread, seconds (user and system).
pub fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The resident memory this process has added since [`PeakMemory::start`]
/// at its highest: both ends of a flow run in this process, so this is
/// what one flow's two ends took together (their buffers, windows and
/// queues, and their runtimes and threads), the idle process not counted.
pub struct PeakMemory {
    base: u64,
}

impl PeakMemory {
    /// Resets the kernel's high-water mark to the present size (Linux:
    /// `/proc/self/clear_refs`); `None` where that is not possible.
    pub fn start() -> Option<PeakMemory> {
        // Return freed heap to the kernel first, so that a flow reusing
        // it counts as growth.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe {
            libc::malloc_trim(0);
        }
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        Some(PeakMemory {
            base: status_kb("VmRSS:")?,
        })
    }

    /// Megabytes above the start at the highest point since.
    pub fn mb(&self) -> Option<f64> {
        let peak = status_kb("VmHWM:")?;
        Some(peak.saturating_sub(self.base) as f64 / 1000.0)
    }
}

/// A `kB` field of `/proc/self/status`.
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Which end of a flow a thread runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Send,
    Receive,
}

/// Runs one end of a flow on a thread of its own, named `name` (so that
/// profilers can tell the ends apart), pinned to core `pin` if given; returns
/// what `f` returns with the CPU seconds the thread used.
fn on_thread<T: Send + 'static>(
    name: &str,
    pin: Option<usize>,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<anyhow::Result<(T, f64)>> {
    let body = move || {
        if let Some(cpu) = pin {
            pin_to(cpu);
        }
        let out = f()?;
        Ok((out, thread_cpu()))
    };
    match std::thread::Builder::new().name(name.into()).spawn(body) {
        Ok(h) => h,
        // Spawning fails only when the system is out of threads; the
        // standard spawn panics with the reason.
        Err(e) => panic!("cannot start the {name} thread: {e}"),
    }
}

/// CPU seconds a thread placed as a receiving end of `path` is (see
/// [`Path::spawn`]) spends writing `size` bytes into a new file in `dir`
/// in 1 MiB writes and syncing it, as a receiver's file is written: the
/// file system's share of a receiver's CPU, with no network or hashing.
/// The file is removed after.
pub fn write_alone(path: Path, dir: &std::path::Path, size: u64) -> anyhow::Result<f64> {
    let file_path = dir.join("write-alone.bin");
    let target = file_path.clone();
    let writer = path.spawn(End::Receive, "write-alone", move || {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::create(&target)?;
        let block = vec![0x5a_u8; 1 << 20];
        let mut at = 0;
        while at < size {
            let n = (size - at).min(block.len() as u64) as usize;
            file.write_all_at(&block[..n], at)?;
            at += n as u64;
        }
        file.sync_all()?;
        Ok(())
    });
    let result = join(writer);
    let _ = std::fs::remove_file(&file_path);
    Ok(result?.1)
}

/// Keeps the calling thread on core `cpu` (best effort: where it cannot,
/// the thread runs unpinned).
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside
    // it for any cpu below its capacity (checked), and sched_setaffinity
    // reads exactly its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < 8 * std::mem::size_of::<libc::cpu_set_t>() {
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn join<T>(h: std::thread::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    h.join()
        .map_err(|_| anyhow::anyhow!("a flow thread panicked"))?
}

/// Waits for both sides of a byte-stream flow (TCP, QUIC): the receiver
/// gives bytes and seconds, the sender nothing.
fn stream_flow(
    receiver: std::thread::JoinHandle<anyhow::Result<((u64, f64), f64)>>,
    sender: std::thread::JoinHandle<anyhow::Result<((), f64)>>,
) -> anyhow::Result<Flow> {
    let ((bytes, secs), recv_cpu) = join(receiver)?;
    let ((), send_cpu) = join(sender)?;
    Ok(Flow {
        bytes,
        secs,
        send_cpu,
        recv_cpu,
        retransmissions: None,
        spurious: None,
    })
}

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
    anyhow::ensure!(
        r == 0,
        "TCP_CONGESTION {cc}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// A file the received bytes are appended to, as a file transfer's
/// receiver writes them; removed when dropped.
struct Sink {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl Sink {
    fn create(path: std::path::PathBuf) -> anyhow::Result<Sink> {
        let file = std::fs::File::create(&path)?;
        Ok(Sink { path, file })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// TCP with congestion control `cc`: `bytes` (or as many as fit in
/// `limit`); `got` counts what arrived as it arrives, written into the
/// file `sink` if given.
pub fn tcp(
    path: Path,
    cc: &str,
    bytes: u64,
    limit: Duration,
    got: Arc<AtomicU64>,
    sink: Option<std::path::PathBuf>,
) -> anyhow::Result<Flow> {
    let ip = path.ip(0);
    let listener = path.on(0, move || TcpListener::bind((ip, 0)))??;
    let addr = listener.local_addr()?;
    let cc_name = cc.to_string();
    let stream = path.on(1, move || -> anyhow::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        set_cc(&s, &cc_name)?;
        Ok(s)
    })??;
    let (mut conn, _) = listener.accept()?;
    let deadline = Instant::now() + limit;
    let writer = path.spawn(End::Send, "tcp-send", move || {
        let mut s = stream;
        let chunk = vec![7u8; 128 * 1024];
        let mut left = bytes;
        while left > 0 && Instant::now() < deadline {
            let n = left.min(chunk.len() as u64) as usize;
            s.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    });
    let reader = path.spawn(End::Receive, "tcp-recv", move || {
        // From the first byte received (the connection is already open).
        let mut started = None;
        let mut buf = vec![0u8; 256 * 1024];
        let mut sink = sink.map(Sink::create).transpose()?;
        conn.set_read_timeout(Some(limit + Duration::from_secs(30)))?;
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                break;
            }
            started.get_or_insert_with(Instant::now);
            if let Some(s) = &mut sink {
                s.file.write_all(&buf[..n])?;
            }
            got.fetch_add(n as u64, Ordering::Relaxed);
        }
        if let Some(s) = &sink {
            s.file.sync_all()?;
        }
        let secs = started.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64());
        Ok((got.load(Ordering::Relaxed), secs))
    });
    stream_flow(reader, writer)
}

/// chatdrop's transfer of the file at `file` with `scheme`; `got` follows
/// the bytes received in order.
pub fn chatdrop(
    path: Path,
    file: &std::path::Path,
    out: &std::path::Path,
    scheme: Scheme,
    window: u32,
    got: Arc<AtomicU64>,
) -> anyhow::Result<Flow> {
    let server = path.udp(1)?;
    let client = path.udp(0)?;
    let peer = server.local_addr()?;
    let session = BenchSession::new(file, scheme, window)?;
    let source = Source::open(file, &session.outline)?;
    let (size, hash) = (session.size, session.hash);
    let (serve_opts, keys) = (session.serve_options(), session.keys(Role::Sender));
    let sender = path.spawn(End::Send, "chatdrop-send", move || {
        runtime()?.block_on(async move {
            let socket = tokio::net::UdpSocket::from_std(server)?;
            Ok(serve(&socket, keys, &source, &serve_opts, |_, _| {}).await?)
        })
    });
    let _ = std::fs::remove_dir_all(out);
    let out_dir = out.to_path_buf();
    let receiver = path.spawn(End::Receive, "chatdrop-recv", move || {
        runtime()?.block_on(async move {
            let socket = tokio::net::UdpSocket::from_std(client)?;
            let dl = Download::open(&out_dir, "bench.bin", size, hash)?;
            let keys = session.keys(Role::Receiver);
            // The clock runs from the first bytes received to the last, as
            // for TCP and QUIC: the session's opening (its request and path
            // probe) is their handshake, and its close (the sender's `Done`,
            // a round trip after the last acknowledgement) their teardown,
            // both of which their clocks leave out too. (The first bytes, a
            // batch of tens of KB, count; against hundreds of MB that is
            // noise.)
            let mut started = None;
            let mut finished = None;
            let progress = |done: u64, _| {
                let now = Instant::now();
                if done > 0 {
                    started.get_or_insert(now);
                }
                if done >= size {
                    finished.get_or_insert(now);
                }
                got.store(done, Ordering::Relaxed);
            };
            let opts = FetchOptions { cfg: session.cfg };
            fetch(&socket, peer, keys, &dl, &opts, progress).await?;
            let secs = match (started, finished) {
                (Some(s), Some(f)) => (f - s).as_secs_f64(),
                _ => anyhow::bail!("the transfer ended without reporting all {size} bytes"),
            };
            dl.finish()?;
            Ok(secs)
        })
    });
    let (secs, recv_cpu) = join(receiver)?;
    let (stats, send_cpu) = join(sender)?;
    // Not on the receiver's clock: deleting the file is not receiving it.
    let _ = std::fs::remove_dir_all(out);
    Ok(Flow {
        bytes: size,
        secs,
        send_cpu,
        recv_cpu,
        retransmissions: Some(stats.retransmissions),
        spurious: Some(stats.spurious),
    })
}

/// quinn's congestion controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuicCc {
    /// quinn's default.
    Cubic,
    /// quinn's (experimental) BBR.
    Bbr,
}

fn quic_transport(cc: QuicCc) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // Flow control out of the way: windows for 1 Gbit/s at 100 ms.
    let window = 32u32 << 20;
    t.stream_receive_window(window.into());
    t.receive_window(window.into());
    t.send_window(u64::from(window));
    // Let path MTU discovery go as high as chatdrop's probing does.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(65_527);
    t.mtu_discovery_config(Some(mtu));
    if cc == QuicCc::Bbr {
        t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    }
    Arc::new(t)
}

/// QUIC (quinn) with controller `cc`: one stream of `bytes` (or as many
/// as fit in `limit`), written into the file `sink` if given.
pub fn quic(
    path: Path,
    cc: QuicCc,
    bytes: u64,
    limit: Duration,
    got: Arc<AtomicU64>,
    sink: Option<std::path::PathBuf>,
) -> anyhow::Result<Flow> {
    use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["bench".into()])?;
    let cert_der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)?;
    let mut server_cfg =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server_tls)?));
    server_cfg.transport_config(quic_transport(cc));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client_cfg =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client_tls)?));
    client_cfg.transport_config(quic_transport(cc));

    let server_sock = path.udp(0)?;
    let client_sock = path.udp(1)?;
    let server_addr = server_sock.local_addr()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let receiver = path.spawn(End::Receive, "quic-recv", move || {
        runtime()?.block_on(async move {
            let ep = quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                Some(server_cfg),
                server_sock,
                Arc::new(quinn::TokioRuntime),
            )?;
            let _ = ready_tx.send(());
            let conn = ep
                .accept()
                .await
                .context("no QUIC connection came")?
                .await?;
            // The stream is accepted when its first bytes arrive: the
            // clock runs from the first byte received, as for the others.
            let mut stream = conn.accept_uni().await?;
            let started = Instant::now();
            let mut sink = sink.map(Sink::create).transpose()?;
            while let Some(chunk) = stream.read_chunk(1 << 20, true).await? {
                if let Some(s) = &mut sink {
                    s.file.write_all(&chunk.bytes)?;
                }
                got.fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
            }
            if let Some(s) = &sink {
                s.file.sync_all()?;
            }
            let secs = started.elapsed().as_secs_f64();
            conn.close(0u32.into(), b"done");
            ep.wait_idle().await;
            Ok((got.load(Ordering::Relaxed), secs))
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the QUIC receiver did not start")?;
    let sender = path.spawn(End::Send, "quic-send", move || {
        runtime()?.block_on(async move {
            let mut ep = quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                None,
                client_sock,
                Arc::new(quinn::TokioRuntime),
            )?;
            ep.set_default_client_config(client_cfg);
            let conn = ep.connect(server_addr, "bench")?.await?;
            let mut stream = conn.open_uni().await?;
            let chunk = bytes::Bytes::from(vec![7u8; 256 * 1024]);
            let deadline = Instant::now() + limit;
            let mut left = bytes;
            while left > 0 && Instant::now() < deadline {
                let n = left.min(chunk.len() as u64) as usize;
                stream.write_chunk(chunk.slice(..n)).await?;
                left -= n as u64;
            }
            stream.finish()?;
            // Until the receiver has read it all (then it closes).
            let _ = tokio::time::timeout(Duration::from_secs(60), conn.closed()).await;
            Ok(())
        })
    });
    stream_flow(receiver, sender)
}
