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
    _dir: tempfile::TempDir,
}

impl ServerProc {
    /// Starts `bin server` on a free loopback port with a fresh data dir.
    pub fn start(bin: &Path, workers: usize, extra: &[&str]) -> anyhow::Result<ServerProc> {
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(bin)
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--no-console",
                // The load is the point: no rate or per-address limits.
                "--no-rate-limits",
                "--workers",
            ])
            .arg(workers.to_string())
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
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
                _ => bail!("the server ended before saying where it listens"),
            }
        };
        // Keep draining its stdout so it never blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Ok(ServerProc {
            child,
            addr,
            lines: rx,
            _dir: dir,
        })
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
