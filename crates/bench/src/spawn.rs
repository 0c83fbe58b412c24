//! Starting the server under test as its own process, and reading its memory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

/// A server process, killed on drop.
pub struct ServerProc {
    child: Child,
    pub addr: String,
    /// Its standard output after the address line (console lines, network
    /// notices).
    lines: std::sync::mpsc::Receiver<String>,
    /// How it was started, to start it again.
    bin: std::path::PathBuf,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl ServerProc {
    /// Starts `bin server` on a free loopback port with a fresh data dir,
    /// without rate limits (the load is the point).
    pub fn start(bin: &Path, workers: usize, extra: &[&str]) -> anyhow::Result<ServerProc> {
        let mut args = vec!["--no-rate-limits"];
        args.extend_from_slice(extra);
        Self::start_limited(bin, workers, &args)
    }

    /// Like [`ServerProc::start`], with the server's own limits unless
    /// `extra` says otherwise.
    pub fn start_limited(bin: &Path, workers: usize, extra: &[&str]) -> anyhow::Result<ServerProc> {
        let dir = tempfile::tempdir()?;
        let mut args: Vec<String> = ["server", "--no-console", "--workers"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(workers.to_string());
        args.push("--data-dir".into());
        args.push(dir.path().display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        let (child, addr, lines) = spawn(bin, &args, "127.0.0.1:0")?;
        Ok(ServerProc {
            child,
            addr,
            lines,
            bin: bin.to_path_buf(),
            args,
            _dir: dir,
        })
    }

    /// Stops the server (SIGTERM, as an operator would) and starts it again
    /// on the same address with the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
        if std::env::var_os("SOAK_DEBUG").is_some() {
            // What it said on its way out: the reader thread ends, and the
            // channel with it, once the pipe is closed (1 s at most).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            let left = || deadline.saturating_duration_since(std::time::Instant::now());
            while let Ok(line) = self.lines.recv_timeout(left()) {
                eprintln!("{}: {line}", self.addr);
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            // The port may be held for a moment by connections closing.
            match spawn(&self.bin, &self.args, &self.addr) {
                Ok((child, _, lines)) => {
                    self.child = child;
                    self.lines = lines;
                    return Ok(());
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("restart: {e:#}; trying again");
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits (up to 30 s) for an output line containing `what`.
    pub fn wait_for(&self, what: &str) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return Ok(()),
                Ok(_) => {}
                Err(_) => bail!("the server never said {what:?}"),
            }
        }
    }

    /// Resident memory of the server, in KiB (from /proc).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmRSS in /proc status")
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin ARGS --listen LISTEN`; returns it with the address it says it
/// listens on and its further output.
fn spawn(
    bin: &Path,
    args: &[String],
    listen: &str,
) -> anyhow::Result<(Child, String, std::sync::mpsc::Receiver<String>)> {
    let mut child = Command::new(bin)
        .args(args)
        .args(["--listen", listen])
        // Warnings only, unless asked: the load is not the server's news.
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let out = child.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(out).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("listening on") => {
                break l.rsplit(' ').next().unwrap_or_default().to_string()
            }
            Some(Ok(_)) => continue,
            _ => {
                let _ = child.wait();
                bail!("the server ended before saying where it listens")
            }
        }
    };
    // Keep draining its stdout so it never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Ok((child, addr, rx))
}
